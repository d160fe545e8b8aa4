//! Provider webhooks: `ProviderNotified` (new or changed data) and `DeleteProviderData` (the
//! provider removed points).
//!
//! Notifications are coalesced: each one's digest is kept for a week (the providers' redelivery
//! horizon) and a digest seen before does nothing, so a thousand redeliveries make one job. A
//! notification for a participant whose job is in flight is noted on the participant
//! (`notified_at`, `notified_from`), and that job's end grants ONE follow-up job for all of them
//! (see [`Tx::follow_up_notifications`]). A job re-reads from the earliest notified start when it
//! is before the cursor (never before `sync_from`); the cursor never moves back (slices behind
//! it are stored without moving it, see `slices.rs`).

use std::time::{Duration, Instant};

use chrono::TimeDelta;
use fitlink_shared::domain::{ParticipantId, ParticipantState, UtcInstant};
use fitlink_shared::messages::{
    JobOutcome, NotifiedInterval, ProviderDeletion, ProviderNotification, SyncRequest, SyncTrigger,
};
use fitlink_shared::{execute, fetch};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use fitlink_shared::store::IntradayTable as Intraday;

use super::{CommandResult, Effect, NotGranted, Notified, Rejection, Tx, job_text};

/// How long notification digests are kept: the providers redeliver for up to a week.
const KEEP_NOTIFICATIONS: TimeDelta = TimeDelta::days(8);
/// Pruning old digests is an indexed range delete; once an hour is plenty.
pub(super) const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The participant's row as a notification needs it.
#[derive(sqlx::FromRow)]
struct Notifiable {
    state: String,
    sync_from: UtcInstant,
    sync_cursor: UtcInstant,
}

impl Tx<'_> {
    pub(super) async fn provider_notified(
        &mut self,
        notification: &ProviderNotification,
    ) -> CommandResult<Effect> {
        let notified = self
            .notified(
                &notification.participant_id,
                &notification.notification_ids,
                &notification.intervals,
                notification.received_at,
            )
            .await?;
        tracing::debug!(participant_id = %notification.participant_id, data_types = ?notification.data_types, ?notified, "provider notification recorded");
        Ok(Effect::Notified(notified))
    }

    /// Records the notifications and decides what they call for: nothing (all seen before, or
    /// the participant is not syncing), a note for the job in flight, or a job.
    async fn notified(
        &mut self,
        participant: &ParticipantId,
        notification_ids: &[String],
        intervals: &[NotifiedInterval],
        received_at: UtcInstant,
    ) -> CommandResult<Notified> {
        self.prune_notifications().await?;
        let mut new = 0;
        for id in notification_ids {
            new += execute!(self.conn.exec(), sqlx::query(
                "INSERT INTO provider_notifications (notification_id, participant_id, received_at) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(participant.as_str())
            .bind(received_at))?;
        }
        let row: Option<Notifiable> = fetch!(
            self.conn.exec(),
            sqlx::query_as(
                "SELECT state, sync_from, sync_cursor FROM participants \
                     WHERE participant_id = $1",
            )
            .bind(participant.as_str()),
            optional
        )?;
        let Some(row) = row else {
            return Err(Rejection::UnknownParticipant(participant.clone()).into());
        };
        // A duplicate is never acted on, not even to publish a job again: providers redeliver
        // often, and a redelivered command looks the same. (If the writer dies between granting
        // a job and publishing it, the claim's lease, or the next notification, recovers it.)
        if new == 0 {
            return Ok(Notified::Duplicate);
        }
        if !row
            .state
            .parse::<ParticipantState>()
            .is_ok_and(ParticipantState::is_syncing)
        {
            return Ok(Notified::NotSyncing { state: row.state });
        }

        let (sync_from, cursor) = (row.sync_from, row.sync_cursor);
        let want_from = intervals
            .iter()
            .map(|i| i.start)
            .min()
            .map(|start| start.max(sync_from));
        let from = want_from.map_or(cursor, |want| want.min(cursor));

        let request = self.webhook_request(participant, Some(from));
        match self.request_sync(&request).await? {
            Effect::Granted(job) | Effect::Regranted(job) => Ok(Notified::Job(job)),
            Effect::NotGranted(
                why @ (NotGranted::InFlight { .. } | NotGranted::RateLimited { .. }),
            ) => {
                // Noted for the job in flight's follow-up, or for the job granted when the rate
                // limit resets (which starts early enough to cover it).
                // Text order is time order, so min/max over the canonical texts are time's.
                execute!(self.conn.exec(), sqlx::query(
                                    "UPDATE participants SET \
                                     notified_at = CASE WHEN notified_at IS NULL OR notified_at < $2 \
                                         THEN $2 ELSE notified_at END, \
                                     notified_from = CASE WHEN notified_from IS NULL OR notified_from > $3 \
                                         THEN $3 ELSE notified_from END, \
                                     updated_at = $4 WHERE participant_id = $1",
                                )
                                .bind(participant.as_str())
                                .bind(received_at)
                                .bind(from)
                                .bind(self.now))?;
                Ok(match why {
                    NotGranted::InFlight { job_id } => Notified::Coalesced { in_flight: job_id },
                    _ => Notified::Deferred,
                })
            }
            Effect::NotGranted(
                NotGranted::NotActive { state } | NotGranted::NoGrant { state, .. },
            ) => Ok(Notified::NotSyncing { state }),
            _ => Ok(Notified::Duplicate),
        }
    }

    fn webhook_request(
        &self,
        participant: &ParticipantId,
        from: Option<UtcInstant>,
    ) -> SyncRequest {
        SyncRequest {
            job_id: Uuid::now_v7(),
            participant_id: participant.clone(),
            trigger: SyncTrigger::Webhook,
            force: false,
            from,
            replaces: None,
            requested_at: self.now,
        }
    }

    /// Drops digests past the redelivery horizon, at most once per [`PRUNE_EVERY`].
    async fn prune_notifications(&mut self) -> CommandResult<()> {
        let due = self
            .housekeeping
            .notifications_pruned_at
            .is_none_or(|at| at.elapsed() >= PRUNE_EVERY);
        if !due {
            return Ok(());
        }
        let horizon = UtcInstant::new(self.now.get() - KEEP_NOTIFICATIONS);
        let pruned = execute!(
            self.conn.exec(),
            sqlx::query("DELETE FROM provider_notifications WHERE received_at < $1").bind(horizon)
        )?;
        self.housekeeping.notifications_pruned_at = Some(Instant::now());
        tracing::debug!(pruned, horizon = %horizon, "old provider notification digests pruned");
        Ok(())
    }

    /// A job that released its claim: if notifications arrived while it ran, grant one job for
    /// all of them, from the earliest notified start if that is before the cursor. The note is
    /// cleared either way (a job granted after the notification covered it).
    pub(super) async fn follow_up_notifications(
        &mut self,
        outcome: &JobOutcome,
    ) -> CommandResult<Option<fitlink_shared::messages::SyncJob>> {
        let participant = &outcome.participant_id;
        let noted: Option<(Option<UtcInstant>, Option<UtcInstant>, Option<UtcInstant>)> = fetch!(
            self.conn.exec(),
            sqlx::query_as(
                "SELECT p.notified_at, p.notified_from, j.granted_at FROM participants p \
                     LEFT JOIN sync_jobs j ON j.job_id = $2 \
                     WHERE p.participant_id = $1 AND p.notified_at IS NOT NULL",
            )
            .bind(participant.as_str())
            .bind(job_text(&outcome.job_id)),
            optional
        )?;
        let Some((Some(notified_at), notified_from, granted_at)) = noted else {
            return Ok(None);
        };
        execute!(
            self.conn.exec(),
            sqlx::query(
                "UPDATE participants SET notified_at = NULL, notified_from = NULL, updated_at = $2 \
                     WHERE participant_id = $1",
            )
            .bind(participant.as_str())
            .bind(self.now)
        )?;
        // Whole seconds: a notification in the second of the grant may not be covered, so it
        // gets its follow-up (an extra job costs less than a missed change).
        if granted_at.is_some_and(|granted| notified_at < granted) {
            return Ok(None);
        }
        let cursor: UtcInstant = fetch!(
            self.conn.exec(),
            sqlx::query_scalar("SELECT sync_cursor FROM participants WHERE participant_id = $1")
                .bind(participant.as_str()),
            one
        )?;
        let from = [Some(cursor), notified_from].into_iter().flatten().min();
        let request = self.webhook_request(participant, from);
        let job = match self.request_sync(&request).await? {
            Effect::Granted(job) => Some(job),
            _ => None,
        };
        tracing::debug!(participant_id = %participant, job_id = %outcome.job_id, follow_up = ?job.as_ref().map(|j| j.job_id), "notifications arrived while the job ran");
        Ok(job)
    }

    /// Deletes the participant's sleep sessions ending in `[start, end)` with their levels; the
    /// rows deleted.
    async fn delete_sessions_ending(
        &mut self,
        participant: &str,
        start: UtcInstant,
        end: UtcInstant,
    ) -> CommandResult<u64> {
        let sessions: Vec<(String, String)> = fetch!(
            self.conn.exec(),
            sqlx::query_as(
                "SELECT provider, session_id FROM sleep_daily_summary \
                 WHERE participant_id = $1 AND end_datetime >= $2 AND end_datetime < $3",
            )
            .bind(participant)
            .bind(start)
            .bind(end),
            all
        )?;
        let mut deleted = 0;
        for (provider, session_id) in sessions {
            let (s, l) = self
                .delete_session(participant, &provider, &session_id)
                .await?;
            deleted += s + l;
        }
        Ok(deleted)
    }

    pub(super) async fn delete_provider_data(
        &mut self,
        deletion: &ProviderDeletion,
    ) -> CommandResult<Effect> {
        let participant = &deletion.participant_id;
        let state = self.participant_state(participant).await?;
        let Some(state) = state else {
            return Err(Rejection::UnknownParticipant(participant.clone()).into());
        };
        let table = deleted_table(&deletion.data_type);
        let mut rows_deleted = 0;
        for interval in &deletion.intervals {
            let (start, end) = (interval.start, interval.end);
            let seen: Option<i32> = fetch!(self.conn.exec(), sqlx::query_scalar(
                            "SELECT 1 FROM provider_deletions \
                             WHERE notification_id = $1 AND interval_start = $2 AND interval_end = $3",
                        )
                        .bind(&deletion.notification_id)
                        .bind(start)
                        .bind(end), optional)?;
            if seen.is_some() {
                continue;
            }
            let deleted = match table {
                Some(Deleted::Intraday(table)) => execute!(
                    self.conn.exec(),
                    sqlx::query(AssertSqlSafe(format!(
                        "DELETE FROM {} WHERE participant_id = $1 AND datetime >= $2 \
                         AND datetime < $3",
                        table.table()
                    )))
                    .bind(participant.as_str())
                    .bind(start)
                    .bind(end)
                )?,
                Some(Deleted::SleepSessions) => {
                    self.delete_sessions_ending(participant.as_str(), start, end)
                        .await?
                }
                None => 0,
            };
            execute!(
                self.conn.exec(),
                sqlx::query(
                    "INSERT INTO provider_deletions (notification_id, participant_id, provider, \
                             data_type, interval_start, interval_end, rows_deleted, received_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&deletion.notification_id)
                .bind(participant.as_str())
                .bind(deletion.provider.as_str())
                .bind(&deletion.data_type)
                .bind(start)
                .bind(end)
                .bind(deleted as i64)
                .bind(deletion.received_at)
            )?;
            rows_deleted += deleted;
        }
        // A re-read of the days the deletion touched restates their daily summaries; the
        // provider no longer has the deleted points, so it does not bring them back.
        let syncing = state
            .parse::<ParticipantState>()
            .is_ok_and(ParticipantState::is_syncing);
        let notified = if syncing {
            let earliest: Vec<NotifiedInterval> = deletion
                .intervals
                .iter()
                .min_by_key(|i| i.start)
                .cloned()
                .into_iter()
                .collect();
            self.notified(
                participant,
                std::slice::from_ref(&deletion.notification_id),
                &earliest,
                deletion.received_at,
            )
            .await?
        } else {
            Notified::NotSyncing { state }
        };
        tracing::debug!(participant_id = %participant, data_type = %deletion.data_type, rows_deleted, ?notified, "provider deletion applied");
        Ok(Effect::ProviderDataDeleted {
            rows_deleted,
            notified,
        })
    }
}

/// Where a Google data type's deleted points are stored.
enum Deleted {
    /// Points by their instant.
    Intraday(Intraday),
    /// Sleep sessions by their end (a deleted `sleep` point is a session; its levels go with
    /// it).
    SleepSessions,
}

/// Where a Google data type's points are stored; other types have no stored points to delete
/// (their deletion is recorded with 0 rows).
fn deleted_table(data_type: &str) -> Option<Deleted> {
    match data_type {
        "heart-rate" => Some(Deleted::Intraday(Intraday::HeartRate)),
        "steps" => Some(Deleted::Intraday(Intraday::Steps)),
        "sleep" => Some(Deleted::SleepSessions),
        _ => None,
    }
}
