//! `ImportParticipants`: a whole file of participants in the one transaction.
//!
//! Idempotent by `import_id`, so a redelivered or re-run import does nothing. An existing
//! participant gets the new credential (a new consent) but keeps their cursor and `sync_from`:
//! re-importing must never make the fleet fetch history again or skip any. A withdrawn
//! participant is never brought back by an import: their row is skipped and counted as refused.

use fitlink_shared::domain::ParticipantState;
use fitlink_shared::messages::ImportBatch;
use fitlink_shared::{execute, fetch};

use super::{CommandResult, Effect, Tx};

/// States a new consent resolves: the participant is synced again.
const RESOLVED_BY_CONSENT: [ParticipantState; 6] = [
    ParticipantState::Revoked,
    ParticipantState::ScopeMissing,
    ParticipantState::NeedsReconsent,
    ParticipantState::DeadLettered,
    ParticipantState::Invited,
    ParticipantState::ConsentExpired,
];

impl Tx<'_> {
    pub(super) async fn import(&mut self, batch: &ImportBatch) -> CommandResult<Effect> {
        let import_id = super::job_text(&batch.import_id);
        let seen: Option<(i32,)> = fetch!(
            self.conn.exec(),
            sqlx::query_as("SELECT 1 FROM imports WHERE import_id = $1").bind(&import_id),
            optional
        )?;
        if seen.is_some() {
            tracing::debug!(import_id = %batch.import_id, source = %batch.source, "import already applied; nothing to do");
            return Ok(Effect::ImportAlreadyApplied);
        }

        let (mut created, mut updated, mut reactivated, mut refused) = (0, 0, 0, 0);
        for p in &batch.participants {
            let id = p.participant_id.as_str();
            let state: Option<(String,)> = fetch!(
                self.conn.exec(),
                sqlx::query_as("SELECT state FROM participants WHERE participant_id = $1").bind(id),
                optional
            )?;
            match state {
                None => {
                    execute!(
                        self.conn.exec(),
                        sqlx::query(
                            "INSERT INTO participants (participant_id, provider, state, sync_from, \
                                             sync_cursor, created_at, updated_at) \
                                             VALUES ($1, $2, 'active', $3, $3, $4, $4)",
                        )
                        .bind(id)
                        .bind(p.provider.as_str())
                        .bind(p.sync_from)
                        .bind(self.now)
                    )?;
                    created += 1;
                }
                Some((state,)) if state == ParticipantState::Withdrawn.as_str() => {
                    tracing::debug!(participant_id = %p.participant_id, "participant withdrew; import row refused");
                    refused += 1;
                    continue;
                }
                Some((state,)) => {
                    let resolves = RESOLVED_BY_CONSENT.iter().any(|s| s.as_str() == state);
                    // Cursor and sync_from stay as they are: the data already stored is still
                    // the participant's, and what is missing is still missing.
                    execute!(self.conn.exec(), sqlx::query(
                                            "UPDATE participants SET provider = $2, updated_at = $3, \
                                             state = CASE WHEN $4 THEN 'active' ELSE state END, \
                                             state_reason = CASE WHEN $4 THEN NULL ELSE state_reason END \
                                             WHERE participant_id = $1",
                                        )
                                        .bind(id)
                                        .bind(p.provider.as_str())
                                        .bind(self.now)
                                        .bind(resolves))?;
                    updated += 1;
                    if resolves {
                        reactivated += 1;
                        tracing::debug!(participant_id = %p.participant_id, previous_state = %state, "new consent imported; participant active again");
                    }
                }
            }
            if let Some(identity) = &p.identity {
                // The Google account's identity, checked by the import against the Fitbit user
                // the participant was linked through.
                execute!(self.conn.exec(), sqlx::query(
                                    "UPDATE participants SET health_user_id = $2, \
                                     legacy_user_id = coalesce($3, legacy_user_id) WHERE participant_id = $1",
                                )
                                .bind(id)
                                .bind(&identity.health_user_id)
                                .bind(identity.legacy_user_id.as_deref()))?;
            }
            execute!(self.conn.exec(), sqlx::query(
                            "INSERT INTO credentials (participant_id, provider, sealed_refresh_token, updated_at) \
                             VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (participant_id) DO UPDATE SET provider = excluded.provider, \
                             sealed_refresh_token = excluded.sealed_refresh_token, updated_at = excluded.updated_at",
                        )
                        .bind(id)
                        .bind(p.provider.as_str())
                        .bind(&p.sealed_refresh_token)
                        .bind(self.now))?;
        }

        execute!(self.conn.exec(), sqlx::query(
                    "INSERT INTO imports (import_id, source, participants, imported_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(&import_id)
                .bind(&batch.source)
                .bind(batch.participants.len() as i64)
                .bind(self.now))?;
        tracing::debug!(
            import_id = %batch.import_id,
            source = %batch.source,
            created,
            updated,
            reactivated,
            refused,
            "participants imported"
        );
        Ok(Effect::Imported {
            created,
            updated,
            reactivated,
            refused,
        })
    }
}
