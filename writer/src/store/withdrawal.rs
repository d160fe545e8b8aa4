//! `Withdraw`: the participant leaves the study. In one transaction (committed with
//! `synchronous=FULL`): the state becomes `withdrawn` with who and when, the credential is
//! deleted, the in-flight claim and notification notes are cleared, with `purge` every stored row
//! of the participant is deleted (counted per table), and an audit row records it all — never a
//! token. What comes after is refused: new consents, invitations, imports, sync requests, and
//! slices of a job that was in flight.

use std::collections::BTreeMap;

use fitlink_shared::domain::ParticipantState;
use fitlink_shared::messages::{ReplyBody, Withdrawal, WriterReply};
use fitlink_shared::store::DATA_TABLES;
use fitlink_shared::{execute, fetch};
use sqlx::AssertSqlSafe;

use super::{CommandResult, Effect, Tx, capped, date_of, job_text};

/// Every table holding a participant's data or sync bookkeeping, deleted by a purge, each
/// counted in its own audit column (`{table}_rows`).
fn purged_tables() -> impl Iterator<Item = &'static str> {
    DATA_TABLES.into_iter().chain(BOOKKEEPING)
}

/// The participant's rows besides its data: refused families and sync bookkeeping.
const BOOKKEEPING: [&str; 3] = [
    "family_permissions",
    "sync_slices",
    "provider_notifications",
];

/// The audit columns, one per purged table, in [`purged_tables`] order.
fn audit_columns() -> String {
    purged_tables()
        .map(|t| format!("{t}_rows"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Tx<'_> {
    pub(super) async fn withdraw(&mut self, withdrawal: &Withdrawal) -> CommandResult<Effect> {
        let participant = &withdrawal.participant_id;
        let request_id = job_text(&withdrawal.request_id);
        let audit: Option<bool> = fetch!(
            self.conn.exec(),
            sqlx::query_scalar(
                "SELECT purged FROM withdrawals WHERE participant_id = $1 AND request_id = $2",
            )
            .bind(participant.as_str())
            .bind(&request_id),
            optional
        )?;
        if let Some(purged) = audit {
            // This very withdrawal, redelivered after its commit: the same answer again.
            let rows_deleted = self
                .audited_counts(participant.as_str(), &request_id, purged)
                .await?;
            return Ok(self.withdrawal_reply(withdrawal, purged, rows_deleted));
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
            for table in purged_tables() {
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
        let params: Vec<String> = (7..7 + purged_tables().count())
            .map(|n| format!("${n}"))
            .collect();
        let insert = format!(
            "INSERT INTO withdrawals (participant_id, withdrawn_at, withdrawn_by, purged, \
             provider_revocation, request_id, {}) VALUES ($1, $2, $3, $4, $5, $6, {})",
            audit_columns(),
            params.join(", ")
        );
        execute!(self.conn.exec(), {
            let mut query = sqlx::query(AssertSqlSafe(insert.as_str()))
                .bind(participant.as_str())
                .bind(withdrawal.at)
                .bind(capped(&withdrawal.requested_by))
                .bind(withdrawal.purge)
                .bind(capped(&withdrawal.provider_revocation))
                .bind(&request_id);
            for table in purged_tables() {
                query = query.bind(count(table));
            }
            query
        })?;
        tracing::debug!(participant_id = %participant, purge = withdrawal.purge, ?rows_deleted, "participant withdrawn");
        Ok(self.withdrawal_reply(withdrawal, withdrawal.purge, rows_deleted))
    }

    /// The per-table counts an earlier commit of this withdrawal recorded; empty without a
    /// purge.
    async fn audited_counts(
        &mut self,
        participant: &str,
        request_id: &str,
        purged: bool,
    ) -> CommandResult<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::new();
        if !purged {
            return Ok(counts);
        }
        for table in purged_tables() {
            let n: i64 = fetch!(
                self.conn.exec(),
                sqlx::query_scalar(AssertSqlSafe(format!(
                    "SELECT {table}_rows FROM withdrawals \
                     WHERE participant_id = $1 AND request_id = $2"
                )))
                .bind(participant)
                .bind(request_id),
                one
            )?;
            counts.insert(table.to_owned(), n.max(0) as u64);
        }
        Ok(counts)
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
