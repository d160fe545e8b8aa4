//! `RequestSync`: the writer is the one place that grants sync jobs, so it alone keeps "one job
//! in flight per participant" (invariant 6) true.
//!
//! A grant is a row change (the participant's claim, a job-ledger row) committed before the job
//! is published. If the writer crashes between the commit and the publish, the request comes back
//! (it was never acked) and finds its own job holding the claim: it publishes the same job again.
//!
//! Nothing is granted to a participant without a live grant (withdrawn, only invited, or without
//! a stored credential), not even when forced. A keep-alive ([`SyncTrigger::KeepAlive`]) is the
//! other way round: it is granted in any state whose grant may still work — a participant parked
//! in `dead_lettered` for months must not lose their grant too — and its job only touches the
//! token ([`SyncJob::touch_only`]).

use chrono::TimeDelta;
use fitlink_shared::domain::{ParticipantState, Provider, UtcInstant};
use fitlink_shared::messages::{SyncJob, SyncRequest, SyncTrigger};
use fitlink_shared::secret::SealedToken;
use fitlink_shared::{execute, fetch};

use super::{CommandResult, Effect, NotGranted, Rejection, Tx, job_text};

/// The participant's row as a grant needs it.
#[derive(sqlx::FromRow)]
struct Claimable {
    state: String,
    provider: String,
    sync_from: UtcInstant,
    sync_cursor: UtcInstant,
    time_zone: Option<String>,
    in_flight_job_id: Option<String>,
    in_flight_since: Option<UtcInstant>,
    has_credential: bool,
    /// Google Health's id for the account (webhooks name participants by it).
    health_user_id: Option<String>,
    /// Until when the provider's rate limit is spent (or a retry waits).
    retry_at: Option<UtcInstant>,
    /// Notifications (or a rate-limited job's remainder) waiting for the next job: the earliest
    /// instant they need.
    notified_at: Option<UtcInstant>,
    notified_from: Option<UtcInstant>,
}

/// States with no grant to use: never granted, whatever the trigger.
const WITHOUT_GRANT: [ParticipantState; 2] =
    [ParticipantState::Withdrawn, ParticipantState::Invited];

/// States whose grant the provider has already refused (or that ran out): a keep-alive would
/// only be refused again.
const GRANT_REFUSED: [ParticipantState; 3] = [
    ParticipantState::Revoked,
    ParticipantState::ConsentExpired,
    ParticipantState::NeedsReconsent,
];

impl Tx<'_> {
    pub(super) async fn request_sync(&mut self, request: &SyncRequest) -> CommandResult<Effect> {
        let participant = &request.participant_id;
        let job_id = job_text(&request.job_id);
        let row: Option<Claimable> = fetch!(
            self.conn.exec(),
            sqlx::query_as(
                "SELECT state, provider, sync_from, sync_cursor, time_zone, in_flight_job_id, \
                     in_flight_since, EXISTS (SELECT 1 FROM credentials c \
                         WHERE c.participant_id = participants.participant_id) AS has_credential, \
                     health_user_id, retry_at, notified_at, notified_from \
                     FROM participants WHERE participant_id = $1",
            )
            .bind(participant.as_str()),
            optional
        )?;
        let Some(row) = row else {
            return Err(Rejection::UnknownParticipant(participant.clone()).into());
        };

        // Redelivered after its grant was committed: the same job, published again.
        if row.in_flight_job_id.as_deref() == Some(job_id.as_str()) {
            let granted: Option<(UtcInstant,)> = fetch!(
                self.conn.exec(),
                sqlx::query_as("SELECT granted_at FROM sync_jobs WHERE job_id = $1").bind(&job_id),
                optional
            )?;
            let granted_at = granted.map(|(g,)| g).unwrap_or(self.now);
            let job = self.build_job(request, &row, granted_at).await?;
            tracing::debug!(participant_id = %participant, job_id = %request.job_id, "request redelivered after its grant; publishing the same job again");
            return Ok(Effect::Regranted(job));
        }

        let seen: Option<(i32,)> = fetch!(
            self.conn.exec(),
            sqlx::query_as("SELECT 1 FROM sync_jobs WHERE job_id = $1").bind(&job_id),
            optional
        )?;
        if seen.is_some() {
            tracing::debug!(participant_id = %participant, job_id = %request.job_id, "job was granted before and is no longer in flight; not granted again");
            return Ok(Effect::NotGranted(NotGranted::AlreadyGranted));
        }

        let state = row.state.parse::<ParticipantState>().ok();
        let keep_alive = request.trigger == SyncTrigger::KeepAlive;
        let no_grant = if state.is_some_and(|s| WITHOUT_GRANT.contains(&s)) {
            Some("the participant has no grant (withdrawn, or invited and not consented yet)")
        } else if !row.has_credential {
            Some("no stored credential")
        } else if keep_alive && state.is_some_and(|s| GRANT_REFUSED.contains(&s)) {
            Some("the provider already refused this grant; a keep-alive cannot revive it")
        } else {
            None
        };
        if let Some(why) = no_grant {
            tracing::debug!(participant_id = %participant, job_id = %request.job_id, state = %row.state, why, "participant has no live grant; not granted");
            return Ok(Effect::NotGranted(NotGranted::NoGrant {
                state: row.state,
                why,
            }));
        }
        // A keep-alive never changes the state, so it needs no force to pass a parked one.
        let force = request.force && !keep_alive;
        let syncing = state.is_some_and(ParticipantState::is_syncing);
        if !syncing && !force && !keep_alive {
            tracing::debug!(participant_id = %participant, job_id = %request.job_id, state = %row.state, "participant is not active; not granted");
            return Ok(Effect::NotGranted(NotGranted::NotActive {
                state: row.state,
            }));
        }

        // The provider said when its rate limit resets: nothing is granted before (it would
        // only be refused again); the dispatcher asks at `retry_at`. A retry copy in flight
        // holds the claim and is not this case; a keep-alive only reaches the token endpoint.
        if let Some(until) = row.retry_at
            && row.in_flight_job_id.is_none()
            && until > self.now
            && !force
            && !keep_alive
        {
            tracing::debug!(participant_id = %participant, job_id = %request.job_id, %until, "rate limited; not granted before the reset");
            return Ok(Effect::NotGranted(NotGranted::RateLimited { until }));
        }

        let mut taken_over = None;
        if let Some(holder) = &row.in_flight_job_id {
            let replaced = request.replaces.map(|r| job_text(&r)).as_ref() == Some(holder);
            let expired = self.lease_expired(row.in_flight_since);
            if !replaced && !expired {
                tracing::debug!(participant_id = %participant, job_id = %request.job_id, in_flight = %holder, "a job is already in flight; not granted");
                return Ok(Effect::NotGranted(NotGranted::InFlight {
                    job_id: holder.clone(),
                }));
            }
            let why = if replaced {
                "replayed"
            } else {
                "lease expired"
            };
            tracing::debug!(participant_id = %participant, job_id = %request.job_id, previous_job_id = %holder, why, "taking over the in-flight claim");
            taken_over = Some((holder.clone(), why));
        }

        // What waits for a job (notifications coalesced while none could run, a rate-limited
        // job's remainder) is this job's to cover: it starts early enough, and the wait ends.
        let pending_from = row.notified_at.and(row.notified_from);
        let covering;
        let request = match pending_from {
            Some(pending) if pending < request.from.unwrap_or(row.sync_cursor) => {
                covering = SyncRequest {
                    from: Some(pending),
                    ..request.clone()
                };
                &covering
            }
            _ => request,
        };
        let job = self.build_job(request, &row, self.now).await?;
        execute!(self.conn.exec(), sqlx::query(
                    "UPDATE participants SET in_flight_job_id = $2, in_flight_since = $3, retry_at = NULL, \
                     notified_at = NULL, notified_from = NULL, \
                     state = CASE WHEN $4 THEN 'active' ELSE state END, \
                     state_reason = CASE WHEN $4 THEN NULL ELSE state_reason END, \
                     updated_at = $3 \
                     WHERE participant_id = $1",
                )
                .bind(participant.as_str())
                .bind(&job_id)
                .bind(self.now)
                .bind(force))?;
        execute!(
            self.conn.exec(),
            sqlx::query(
                "INSERT INTO sync_jobs (job_id, participant_id, requested_by, granted_at) \
                     VALUES ($1, $2, $3, $4)",
            )
            .bind(&job_id)
            .bind(participant.as_str())
            .bind(request.trigger.as_str())
            .bind(self.now)
        )?;
        if let Some((previous, why)) = taken_over {
            // The previous job's worker is gone (or its job is dead-lettered); say so in the
            // ledger for operators. If it reports after all, its outcome overwrites this.
            execute!(
                self.conn.exec(),
                sqlx::query(
                    "UPDATE sync_jobs SET detail = $2 WHERE job_id = $1 AND finished_at IS NULL",
                )
                .bind(&previous)
                .bind(format!("claim taken over by job {job_id} ({why})"))
            )?;
        }
        tracing::debug!(participant_id = %participant, job_id = %request.job_id, from = %job.from, "sync granted");
        Ok(Effect::Granted(job))
    }

    /// True if a claim taken at `since` is older than the lease (or has no readable time).
    fn lease_expired(&self, since: Option<UtcInstant>) -> bool {
        let Some(since) = since else {
            return true;
        };
        let lease = TimeDelta::from_std(self.job_lease).unwrap_or(TimeDelta::MAX);
        match since.get().checked_add_signed(lease) {
            Some(until) => until <= self.now.get(),
            None => false,
        }
    }

    async fn build_job(
        &mut self,
        request: &SyncRequest,
        row: &Claimable,
        granted_at: UtcInstant,
    ) -> CommandResult<SyncJob> {
        let participant = &request.participant_id;
        let corrupt = |what: &'static str, value: &str| Rejection::CorruptRow {
            participant: participant.clone(),
            what,
            value: value.chars().take(40).collect(),
        };
        let provider: Provider = row
            .provider
            .parse()
            .map_err(|_| corrupt("provider", &row.provider))?;
        let cursor = row.sync_cursor;
        let sealed: Option<(SealedToken,)> = fetch!(
            self.conn.exec(),
            sqlx::query_as(
                "SELECT sealed_refresh_token FROM credentials WHERE participant_id = $1"
            )
            .bind(participant.as_str()),
            optional
        )?;
        let Some((sealed,)) = sealed else {
            return Err(Rejection::NoCredential(participant.clone()).into());
        };
        Ok(SyncJob {
            job_id: request.job_id,
            participant_id: participant.clone(),
            provider,
            sealed_refresh_token: sealed,
            from: request.from.unwrap_or(cursor),
            sync_from: Some(row.sync_from),
            time_zone: row.time_zone.clone(),
            touch_only: request.trigger == SyncTrigger::KeepAlive,
            identity_unknown: provider == Provider::GoogleHealth && row.health_user_id.is_none(),
            granted_at,
        })
    }
}
