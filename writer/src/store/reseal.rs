//! `ResealCredentials` (`fitlink credentials rekey`): stored refresh tokens sealed again under
//! the current token key. The writer never holds a key: the command brings each credential
//! already sealed, with the value it replaces.
//!
//! Compare-and-swap: a credential is replaced only where the stored value is still `expected`.
//! A worker's rotation or a re-consent committed since the rekey read it stored a newer token
//! (sealed with whatever key that process had as current), and replacing it with the older
//! token would lock the participant out (legacy Fitbit tokens are single-use): it wins, and a
//! later `rekey` run picks it up if it still needs resealing.
//!
//! `updated_at` is left alone: it says when the token last changed, and a reseal changes its
//! sealing, not the token. The transaction commits durably ([`Store::apply`](super::Store::apply)):
//! the operator drops the old key once `rekey` is done, so a reseal that rolled back after a
//! power loss would leave tokens that no key opens.

use fitlink_shared::execute;
use fitlink_shared::messages::{ResealApplied, ResealBatch};

use super::{CommandResult, Effect, Tx};

impl Tx<'_> {
    pub(super) async fn reseal_credentials(
        &mut self,
        batch: &ResealBatch,
    ) -> CommandResult<Effect> {
        let mut replaced = 0u32;
        for reseal in &batch.credentials {
            let written = execute!(
                self.conn.exec(),
                sqlx::query(
                    "UPDATE credentials SET sealed_refresh_token = $2 \
                     WHERE participant_id = $1 AND sealed_refresh_token = $3",
                )
                .bind(reseal.participant_id.as_str())
                .bind(&reseal.sealed)
                .bind(&reseal.expected)
            )?;
            replaced += u32::from(written > 0);
        }
        let applied = ResealApplied {
            request_id: batch.request_id,
            replaced,
            changed_since_read: batch.credentials.len() as u32 - replaced,
        };
        tracing::debug!(request_id = %batch.request_id, replaced, changed_since_read = applied.changed_since_read, "credentials resealed");
        Ok(Effect::Resealed {
            reply_to: batch.reply_to.clone(),
            applied,
        })
    }
}
