//! `RotateCredential`: a refresh token the provider rotated (legacy Fitbit rotates on every
//! refresh). The transaction that carries it commits with `synchronous=FULL` (see
//! [`Store::apply`](super::Store::apply)): losing it would lock the participant out.
//!
//! A withdrawn participant's credential is never stored again (a job in flight at the
//! withdrawal may still rotate the token): the rotation is refused and its worker is not told,
//! so it stops using the token.

use fitlink_shared::domain::ParticipantState;
use fitlink_shared::execute;
use fitlink_shared::messages::{CredentialRotation, CredentialStored};

use super::{CommandResult, Effect, Rejection, Tx};

impl Tx<'_> {
    pub(super) async fn rotate_credential(
        &mut self,
        rotation: &CredentialRotation,
    ) -> CommandResult<Effect> {
        let participant = &rotation.participant_id;
        let state = self.participant_state(participant).await?;
        if state.as_deref() == Some(ParticipantState::Withdrawn.as_str()) {
            return Ok(Effect::Refused {
                reason: format!(
                    "participant {participant} has withdrawn: a rotated credential is not stored"
                ),
            });
        }
        if state.is_none() {
            return Err(Rejection::UnknownParticipant(participant.clone()).into());
        }
        // Upsert from the participant row: a participant always has a credential, but if one
        // went missing, the rotated token is the one that works now. An existing one is
        // replaced only while it is still the token the worker refreshed with (see
        // `CredentialRotation::replaces`).
        let written = execute!(self.conn.exec(), sqlx::query(
            "INSERT INTO credentials (participant_id, provider, sealed_refresh_token, updated_at) \
             SELECT participant_id, provider, $2, $3 FROM participants WHERE participant_id = $1 \
             ON CONFLICT (participant_id) DO UPDATE SET \
             sealed_refresh_token = excluded.sealed_refresh_token, updated_at = excluded.updated_at \
             WHERE $4 IS NULL OR credentials.sealed_refresh_token = $4",
        )
        .bind(participant.as_str())
        .bind(&rotation.sealed_refresh_token)
        .bind(self.now)
        .bind(rotation.replaces.as_ref()))?;
        if written == 0 {
            // A newer credential is stored already. The worker may still use its access token
            // (the provider issued it), and the answer lets it go on.
            tracing::debug!(participant_id = %participant, job_id = %rotation.job_id, "rotated credential superseded by a newer one; kept the stored one");
        } else {
            tracing::debug!(participant_id = %participant, job_id = %rotation.job_id, "rotated credential stored");
        }
        Ok(Effect::CredentialRotated {
            reply_to: rotation.reply_to.clone(),
            stored: CredentialStored {
                job_id: rotation.job_id,
                participant_id: participant.clone(),
            },
        })
    }
}
