//! `Withdraw`: the participant leaves the study. In one transaction (committed with
//! `synchronous=FULL`): the state becomes `withdrawn` with who and when, the credential is
//! deleted, the in-flight claim and notification notes are cleared, with `purge` every stored row
//! of the participant is deleted (counted per table), and an audit row records it all — never a
//! token. What comes after is refused: new consents, invitations, imports, sync requests, and
//! slices of a job that was in flight.

use std::collections::BTreeMap;

use fitlink_shared::domain::ParticipantState;
use fitlink_shared::messages::{ReplyBody, Withdrawal, WriterReply};
use fitlink_shared::{execute, fetch};
use sqlx::AssertSqlSafe;

use super::{CommandResult, Effect, Tx, capped, date_of, job_text};

/// Every table holding a participant's data or sync bookkeeping, deleted by a purge, each
/// counted in its own audit column (`{table}_rows`).
const PURGED: [&str; 8] = [
    "activity_summary",
    "heart_rate_summary",
    "resting_heart_rate",
    "heart_rate_intraday",
    "steps_intraday",
    "device",
    "sync_slices",
    "provider_notifications",
];

impl Tx<'_> {
    pub(super) async fn withdraw(&mut self, withdrawal: &Withdrawal) -> CommandResult<Effect> {
        let participant = &withdrawal.participant_id;
        let request_id = job_text(&withdrawal.request_id);
        let audit: Option<AuditCounts> = fetch!(
            self.conn.exec(),
            sqlx::query_as(
                "SELECT purged, activity_summary_rows, heart_rate_summary_rows, \
                     resting_heart_rate_rows, heart_rate_intraday_rows, steps_intraday_rows, \
                     device_rows, sync_slices_rows, provider_notifications_rows \
                     FROM withdrawals WHERE participant_id = $1 AND request_id = $2",
            )
            .bind(participant.as_str())
            .bind(&request_id),
            optional
        )?;
        if let Some(audit) = audit {
            // This very withdrawal, redelivered after its commit: the same answer again.
            return Ok(self.withdrawal_reply(withdrawal, audit.purged, audit.rows_deleted()));
        }
        let state = self.participant_state(participant).await?;
        let refusal = match state.as_deref() {
            None => Some((
                "unknown_participant",
                format!("participant {participant} is unknown"),
            )),
            Some(s) if s == ParticipantState::Withdrawn.as_str() => Some((
                "already_withdrawn",
                format!("participant {participant} has already withdrawn"),
            )),
            Some(_) => None,
        };
        if let Some((code, reason)) = refusal {
            return Ok(Effect::Replied {
                reply_to: withdrawal.reply_to.clone(),
                reply: WriterReply {
                    request_id: withdrawal.request_id,
                    reply: ReplyBody::Refused {
                        code: code.to_owned(),
                        reason,
                    },
                },
                job: None,
            });
        }

        execute!(self.conn.exec(), sqlx::query(
                    "UPDATE participants SET state = $2, state_reason = $3, in_flight_job_id = NULL, \
                     in_flight_since = NULL, notified_at = NULL, notified_from = NULL, retry_at = NULL, \
                     updated_at = $4 WHERE participant_id = $1",
                )
                .bind(participant.as_str())
                .bind(ParticipantState::Withdrawn.as_str())
                .bind(capped(&format!(
                    "withdrawn by {} on {}",
                    withdrawal.requested_by,
                    date_of(withdrawal.at)
                )))
                .bind(self.now))?;
        execute!(
            self.conn.exec(),
            sqlx::query("DELETE FROM credentials WHERE participant_id = $1")
                .bind(participant.as_str())
        )?;
        let mut rows_deleted = BTreeMap::new();
        if withdrawal.purge {
            for table in PURGED {
                let deleted = execute!(
                    self.conn.exec(),
                    sqlx::query(AssertSqlSafe(format!(
                        "DELETE FROM {table} WHERE participant_id = $1"
                    )))
                    .bind(participant.as_str())
                )?;
                rows_deleted.insert(table.to_owned(), deleted);
            }
        }
        let count = |table: &str| rows_deleted.get(table).copied().unwrap_or(0) as i64;
        execute!(
            self.conn.exec(),
            sqlx::query(
                "INSERT INTO withdrawals (participant_id, withdrawn_at, withdrawn_by, purged, \
                     provider_revocation, activity_summary_rows, heart_rate_summary_rows, \
                     resting_heart_rate_rows, heart_rate_intraday_rows, steps_intraday_rows, \
                     device_rows, sync_slices_rows, provider_notifications_rows, request_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(participant.as_str())
            .bind(withdrawal.at)
            .bind(capped(&withdrawal.requested_by))
            .bind(withdrawal.purge)
            .bind(capped(&withdrawal.provider_revocation))
            .bind(count("activity_summary"))
            .bind(count("heart_rate_summary"))
            .bind(count("resting_heart_rate"))
            .bind(count("heart_rate_intraday"))
            .bind(count("steps_intraday"))
            .bind(count("device"))
            .bind(count("sync_slices"))
            .bind(count("provider_notifications"))
            .bind(&request_id)
        )?;
        tracing::debug!(participant_id = %participant, purge = withdrawal.purge, ?rows_deleted, "participant withdrawn");
        Ok(self.withdrawal_reply(withdrawal, withdrawal.purge, rows_deleted))
    }

    fn withdrawal_reply(
        &self,
        withdrawal: &Withdrawal,
        purged: bool,
        rows_deleted: BTreeMap<String, u64>,
    ) -> Effect {
        Effect::Replied {
            reply_to: withdrawal.reply_to.clone(),
            reply: WriterReply {
                request_id: withdrawal.request_id,
                reply: ReplyBody::Withdrawn {
                    participant_id: withdrawal.participant_id.clone(),
                    purged,
                    rows_deleted,
                },
            },
            job: None,
        }
    }
}

/// A withdrawal's audit row, as its reply needs it.
#[derive(sqlx::FromRow)]
struct AuditCounts {
    purged: bool,
    activity_summary_rows: i64,
    heart_rate_summary_rows: i64,
    resting_heart_rate_rows: i64,
    heart_rate_intraday_rows: i64,
    steps_intraday_rows: i64,
    device_rows: i64,
    sync_slices_rows: i64,
    provider_notifications_rows: i64,
}

impl AuditCounts {
    /// The per-table counts in [`PURGED`] order; empty without a purge.
    fn rows_deleted(&self) -> BTreeMap<String, u64> {
        if !self.purged {
            return BTreeMap::new();
        }
        let counts = [
            self.activity_summary_rows,
            self.heart_rate_summary_rows,
            self.resting_heart_rate_rows,
            self.heart_rate_intraday_rows,
            self.steps_intraday_rows,
            self.device_rows,
            self.sync_slices_rows,
            self.provider_notifications_rows,
        ];
        PURGED
            .iter()
            .zip(counts)
            .map(|(table, n)| ((*table).to_owned(), n.max(0) as u64))
            .collect()
    }
}
