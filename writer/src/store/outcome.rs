//! `FinishJob`: how a job ended (or paused), in the job ledger and on the participant.
//!
//! Only the job that holds the participant's in-flight claim releases it: a late outcome of a
//! job whose claim was taken over (a replay, an expired lease) must not free the participant
//! while its successor is still running.
//!
//! A job that releases the claim while provider notifications wait (`notified_at` later than
//! its grant) is followed by ONE job covering all of them. A withdrawn participant's outcome is
//! only written to the ledger.

use fitlink_shared::domain::{ParticipantState, UtcInstant};
use fitlink_shared::messages::{JobOutcome, Outcome, SyncRequest, SyncTrigger};
use fitlink_shared::secret::SealedToken;
use fitlink_shared::{execute, fetch};
use uuid::Uuid;

use super::{CommandResult, Effect, Rejection, Tx, capped, job_text};

/// Why a participant syncs daily summaries only.
const INTRADAY_DENIED_REASON: &str = "the provider does not permit intraday data for this participant or app (HTTP 403); daily summaries are still synced";

impl Tx<'_> {
    pub(super) async fn finish_job(&mut self, outcome: &JobOutcome) -> CommandResult<Effect> {
        let participant = &outcome.participant_id;
        let job_id = job_text(&outcome.job_id);
        let row: Option<(Option<String>, String, Option<UtcInstant>)> = fetch!(
            self.conn.exec(),
            sqlx::query_as(
                "SELECT in_flight_job_id, state, refresh_token_expires_at FROM participants \
                     WHERE participant_id = $1",
            )
            .bind(participant.as_str()),
            optional
        )?;
        let Some((holder, state, grant_expires_at)) = row else {
            return Err(Rejection::UnknownParticipant(participant.clone()).into());
        };
        let holds_claim = holder.as_deref() == Some(job_id.as_str());
        let at = outcome.at;

        let (label, detail) = match &outcome.outcome {
            Outcome::Completed {
                synced_to, slices, ..
            } => (
                "completed",
                format!("synced to {synced_to} in {slices} slices"),
            ),
            Outcome::Deferred {
                until,
                rate_limited,
                reason,
            } => (
                "deferred",
                format!(
                    "{} until {until}: {reason}",
                    if *rate_limited {
                        "rate limited"
                    } else {
                        "retrying"
                    }
                ),
            ),
            Outcome::RateLimited { until, reason, .. } => (
                "rate_limited",
                format!("rate limited until {until}: {reason}"),
            ),
            Outcome::Failed { state, reason, .. } => ("failed", format!("{state}: {reason}")),
            Outcome::DeadLettered { reason } => ("dead_lettered", reason.clone()),
            Outcome::Touched => ("touched", "refresh token used (keep-alive)".to_owned()),
        };
        execute!(self.conn.exec(), sqlx::query(
                    "UPDATE sync_jobs SET finished_at = $2, outcome = $3, detail = $4 WHERE job_id = $1",
                )
                .bind(&job_id)
                .bind(at)
                .bind(label)
                .bind(capped(&detail)))?;

        if state == ParticipantState::Withdrawn.as_str() {
            // The participant left while this job ran: nothing about them changes any more.
            tracing::debug!(participant_id = %participant, job_id = %outcome.job_id, outcome = label, "outcome of a withdrawn participant's job; ledger only");
            return Ok(Effect::JobFinished {
                released: false,
                follow_up: None,
            });
        }

        if let Outcome::Failed {
            rejected_token: Some(rejected),
            ..
        } = &outcome.outcome
            && holds_claim
            && self.credential_rotated_since(outcome, rejected).await?
            && let Some(retry) = self.retry_with_stored_credential(outcome, &detail).await?
        {
            return Ok(retry);
        }

        let released = match &outcome.outcome {
            Outcome::Completed {
                synced_to,
                latest_device_sync,
                time_zone,
                intraday_denied,
                provider_user_id,
                identity,
                ..
            } => {
                execute!(self.conn.exec(), sqlx::query(
                                    "UPDATE participants SET \
                                     in_flight_job_id = CASE WHEN $2 THEN NULL ELSE in_flight_job_id END, \
                                     in_flight_since = CASE WHEN $2 THEN NULL ELSE in_flight_since END, \
                                     last_success_at = $3, latest_device_sync = coalesce($4, latest_device_sync), \
                                     time_zone = coalesce($5, time_zone), retry_at = NULL, last_error = NULL, \
                                     credential_used_at = $3, \
                                     fitbit_user_id = CASE WHEN provider = 'fitbit' \
                                         THEN coalesce($7, fitbit_user_id) ELSE fitbit_user_id END, \
                                     health_user_id = coalesce(health_user_id, $10), \
                                     legacy_user_id = coalesce(legacy_user_id, $11), \
                                     state = CASE WHEN state NOT IN ('active', 'intraday_not_permitted') THEN state \
                                         WHEN $8 THEN 'intraday_not_permitted' ELSE 'active' END, \
                                     state_reason = CASE WHEN state NOT IN ('active', 'intraday_not_permitted') \
                                         THEN state_reason WHEN $8 THEN $9 ELSE NULL END, \
                                     updated_at = $6 WHERE participant_id = $1",
                                )
                                .bind(participant.as_str())
                                .bind(holds_claim)
                                .bind(at)
                                .bind(latest_device_sync)
                                .bind(time_zone.as_deref())
                                .bind(self.now)
                                .bind(provider_user_id.as_deref())
                                .bind(intraday_denied)
                                .bind(INTRADAY_DENIED_REASON)
                                .bind(identity.as_ref().map(|i| i.health_user_id.as_str()))
                                .bind(identity.as_ref().and_then(|i| i.legacy_user_id.as_deref())))?;
                let cursor: (UtcInstant,) = fetch!(
                    self.conn.exec(),
                    sqlx::query_as(
                        "SELECT sync_cursor FROM participants WHERE participant_id = $1"
                    )
                    .bind(participant.as_str()),
                    one
                )?;
                if cursor.0 < *synced_to {
                    // A slice of this job is missing (dead-lettered, or still queued behind):
                    // the cursor stays before the gap and the next sync fetches it again.
                    tracing::warn!(participant_id = %participant, job_id = %outcome.job_id, cursor = %cursor.0, synced_to = %synced_to, "job completed but the cursor is behind what it synced");
                }
                holds_claim
            }
            Outcome::Deferred { until, reason, .. } => {
                // The claim stays (a retry copy of the job is on its way). A deferral is a sign
                // of life, so it renews the lease: a job waiting out long retry delays is not lost.
                execute!(self.conn.exec(), sqlx::query(
                                    "UPDATE participants SET retry_at = $3, last_error = $4, last_error_at = $5, \
                                     in_flight_since = CASE WHEN $2 THEN $6 ELSE in_flight_since END, \
                                     updated_at = $6 WHERE participant_id = $1",
                                )
                                .bind(participant.as_str())
                                .bind(holds_claim)
                                .bind(until)
                                .bind(capped(reason))
                                .bind(at)
                                .bind(self.now))?;
                false
            }
            Outcome::RateLimited {
                until,
                reason,
                resume_from,
            } => {
                // No retry copy exists: the claim is released, and `retry_at` keeps the
                // participant from being granted (by the schedule, a notification or a request)
                // before the provider's limit resets; the dispatcher asks for it then. What the
                // job had left before the cursor waits as a notification does, and the next
                // grant starts there (see `request_sync`).
                execute!(self.conn.exec(), sqlx::query(
                                    "UPDATE participants SET retry_at = $3, last_error = $4, last_error_at = $5, \
                                     in_flight_job_id = CASE WHEN $2 THEN NULL ELSE in_flight_job_id END, \
                                     in_flight_since = CASE WHEN $2 THEN NULL ELSE in_flight_since END, \
                                     notified_at = CASE WHEN $2 AND $7 < sync_cursor \
                                         THEN coalesce(notified_at, $5) ELSE notified_at END, \
                                     notified_from = CASE WHEN $2 AND $7 < sync_cursor \
                                         AND (notified_from IS NULL OR notified_from > $7) \
                                         THEN $7 ELSE notified_from END, \
                                     updated_at = $6 WHERE participant_id = $1",
                                )
                                .bind(participant.as_str())
                                .bind(holds_claim)
                                .bind(until)
                                .bind(capped(reason))
                                .bind(at)
                                .bind(self.now)
                                .bind(resume_from))?;
                holds_claim
            }
            Outcome::Failed { state, reason, .. } => {
                match expired_grant(*state, grant_expires_at, outcome.at) {
                    Some(expired) => {
                        self.set_state(
                            outcome,
                            ParticipantState::ConsentExpired,
                            &expired,
                            holds_claim,
                        )
                        .await?
                    }
                    None => self.set_state(outcome, *state, reason, holds_claim).await?,
                }
                holds_claim
            }
            Outcome::DeadLettered { reason } => {
                self.set_state(outcome, ParticipantState::DeadLettered, reason, holds_claim)
                    .await?;
                holds_claim
            }
            Outcome::Touched => {
                // The provider accepted the refresh token: the idle-expiry clock restarts. The
                // state is not touched (a parked participant stays parked, with its reason).
                execute!(self.conn.exec(), sqlx::query(
                                    "UPDATE participants SET credential_used_at = $3, \
                                     in_flight_job_id = CASE WHEN $2 THEN NULL ELSE in_flight_job_id END, \
                                     in_flight_since = CASE WHEN $2 THEN NULL ELSE in_flight_since END, \
                                     updated_at = $4 WHERE participant_id = $1",
                                )
                                .bind(participant.as_str())
                                .bind(holds_claim)
                                .bind(at)
                                .bind(self.now))?;
                holds_claim
            }
        };
        // Notifications that arrived meanwhile wait for the rate limit's reset like the rest.
        let waits_for_reset = matches!(outcome.outcome, Outcome::RateLimited { .. });
        let follow_up = if released && !waits_for_reset {
            self.follow_up_notifications(outcome).await?
        } else {
            None
        };
        tracing::debug!(
            participant_id = %participant,
            job_id = %outcome.job_id,
            outcome = label,
            released,
            detail = %capped(&detail),
            "job outcome recorded"
        );
        Ok(Effect::JobFinished {
            released,
            follow_up,
        })
    }

    /// Whether the participant's stored refresh token differs from the one the provider refused
    /// (a worker rotated it, stored it, and died before finishing: the job's copy is stale).
    async fn credential_rotated_since(
        &mut self,
        outcome: &JobOutcome,
        rejected: &SealedToken,
    ) -> CommandResult<bool> {
        let stored: Option<(SealedToken,)> = fetch!(
            self.conn.exec(),
            sqlx::query_as(
                "SELECT sealed_refresh_token FROM credentials WHERE participant_id = $1"
            )
            .bind(outcome.participant_id.as_str()),
            optional
        )?;
        Ok(stored.is_some_and(|(s,)| s != *rejected))
    }

    /// Grants a new job, taking over this one's claim, with the stored credential. Once only: the
    /// new job carries the stored token, so if that one is refused too the state is recorded.
    /// A keep-alive is retried as a keep-alive (a parked participant's touch must not become a
    /// sync). `None` if nothing was granted (the participant is not syncing): then the refusal
    /// is recorded as usual and the claim released.
    async fn retry_with_stored_credential(
        &mut self,
        outcome: &JobOutcome,
        detail: &str,
    ) -> CommandResult<Option<Effect>> {
        let requested_by: Option<String> = fetch!(
            self.conn.exec(),
            sqlx::query_scalar("SELECT requested_by FROM sync_jobs WHERE job_id = $1")
                .bind(job_text(&outcome.job_id)),
            optional
        )?;
        let trigger = if requested_by.as_deref() == Some(SyncTrigger::KeepAlive.as_str()) {
            SyncTrigger::KeepAlive
        } else {
            SyncTrigger::CredentialRetry
        };
        let request = SyncRequest {
            job_id: Uuid::now_v7(),
            participant_id: outcome.participant_id.clone(),
            trigger,
            force: false,
            from: None,
            replaces: Some(outcome.job_id),
            requested_at: self.now,
        };
        let Effect::Granted(retry) = self.request_sync(&request).await? else {
            return Ok(None);
        };
        tracing::debug!(participant_id = %outcome.participant_id, job_id = %outcome.job_id, retry_job_id = %retry.job_id, %detail, "refresh token refused but rotated since the grant; retrying with the stored one");
        Ok(Some(Effect::JobFinished {
            released: true,
            follow_up: Some(retry),
        }))
    }

    /// The participant cannot be synced until someone acts: record the state and why.
    async fn set_state(
        &mut self,
        outcome: &JobOutcome,
        state: ParticipantState,
        reason: &str,
        holds_claim: bool,
    ) -> CommandResult<()> {
        execute!(
            self.conn.exec(),
            sqlx::query(
                "UPDATE participants SET state = $2, state_reason = $3, last_error = $3, \
                     last_error_at = $4, \
                     in_flight_job_id = CASE WHEN $5 THEN NULL ELSE in_flight_job_id END, \
                     in_flight_since = CASE WHEN $5 THEN NULL ELSE in_flight_since END, \
                     updated_at = $6 WHERE participant_id = $1",
            )
            .bind(outcome.participant_id.as_str())
            .bind(state.as_str())
            .bind(capped(reason))
            .bind(outcome.at)
            .bind(holds_claim)
            .bind(self.now)
        )?;
        Ok(())
    }
}

/// The reason to store when a refused refresh token had a known expiry that has passed: the
/// grant ran out (Google's 7-day testing-mode grants), it was not taken back, so it is
/// `consent_expired` rather than `revoked`.
fn expired_grant(
    state: ParticipantState,
    grant_expires_at: Option<UtcInstant>,
    at: UtcInstant,
) -> Option<String> {
    if state != ParticipantState::Revoked {
        return None;
    }
    let expires = grant_expires_at?;
    (expires <= at).then(|| {
        format!(
            "the time-limited grant expired on {}; needs a new consent",
            super::date_of(expires)
        )
    })
}
