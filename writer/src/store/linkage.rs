//! Linkage: invitations, completed consents, consent flows that ended without a grant, and the
//! provider saying a participant took their consent back.
//!
//! A consent ([`ConsentGrant`]) is decided here, in order: an invitation is used at most once; a
//! withdrawn participant is never linked again; a participant linked before must bring the same
//! provider account (the ids the provider gave us never change hands). A consent that passes
//! stores the sealed credential (the transaction commits with `synchronous=FULL`, see
//! [`Store::apply`](super::Store::apply)), makes the participant `active`, and grants a sync job
//! from their cursor: a re-consent continues where the participant stopped, with no gap and
//! nothing fetched twice. The portal waits for the answer ([`ReplyBody`]) after the commit.

use fitlink_shared::domain::{ParticipantState, Provider, UtcInstant};
use fitlink_shared::messages::{
    ConsentGrant, ConsentLoss, ConsentProblem, ConsentProblemKind, Invitation, ReplyBody,
    SyncRequest, SyncTrigger, WriterReply,
};
use fitlink_shared::{execute, fetch};

use super::{CommandResult, Effect, Rejection, Tx, capped, date_of, job_text};

/// The participant's row as a consent needs it.
#[derive(sqlx::FromRow)]
struct Linked {
    state: String,
    sync_from: UtcInstant,
    sync_cursor: UtcInstant,
    consented_at: Option<UtcInstant>,
    health_user_id: Option<String>,
    legacy_user_id: Option<String>,
    fitbit_user_id: Option<String>,
    has_credential: bool,
}

impl Linked {
    /// Never linked: no credential, no consent, nothing stored. Such a row was made by an
    /// invitation or a failed consent flow; its first consent starts it as a new participant.
    fn never_linked(&self) -> bool {
        !self.has_credential && self.consented_at.is_none() && self.sync_cursor == self.sync_from
    }

    /// Why the grant's account is not the one this participant linked before, if it is not.
    fn different_account(&self, grant: &ConsentGrant) -> Option<String> {
        let identity = grant.identity.as_ref();
        if let Some((stored, given)) = differs(
            &self.health_user_id,
            identity.map(|i| i.health_user_id.as_str()),
        ) {
            return Some(format!(
                "this Google account (health user id {given}) is not the one linked before \
                 (health user id {stored})"
            ));
        }
        let given_fitbit = match grant.provider {
            Provider::Fitbit => grant.fitbit_user_id.as_deref(),
            Provider::GoogleHealth => identity.and_then(|i| i.legacy_user_id.as_deref()),
        };
        // The legacy Fitbit id is known from a Fitbit link, or from a Google link's identity.
        let stored_fitbit = if self.fitbit_user_id.is_some() {
            &self.fitbit_user_id
        } else {
            &self.legacy_user_id
        };
        differs(stored_fitbit, given_fitbit).map(|(stored, given)| {
            format!(
                "this account's Fitbit user id {given} is not the one linked before \
                 (Fitbit user id {stored})"
            )
        })
    }
}

/// The stored id and the given one, if both are known and they differ.
fn differs<'a>(stored: &'a Option<String>, given: Option<&'a str>) -> Option<(&'a str, &'a str)> {
    match (stored.as_deref(), given) {
        (Some(stored), Some(given)) if stored != given => Some((stored, given)),
        _ => None,
    }
}

impl Tx<'_> {
    pub(super) async fn record_invitation(
        &mut self,
        invitation: &Invitation,
    ) -> CommandResult<Effect> {
        let participant = &invitation.participant_id;
        let state = self.participant_state(participant).await?;
        if state.as_deref() == Some(ParticipantState::Withdrawn.as_str()) {
            return Ok(Effect::Refused {
                reason: format!(
                    "participant {participant} withdrew from the study and is never invited again"
                ),
            });
        }
        let new = self.insert_invitation(invitation).await?;
        let created = state.is_none();
        if created {
            execute!(
                self.conn.exec(),
                sqlx::query(
                    "INSERT INTO participants (participant_id, provider, state, state_reason, \
                             sync_from, sync_cursor, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $5, $6, $6)",
                )
                .bind(participant.as_str())
                .bind(invitation.provider.as_str())
                .bind(ParticipantState::Invited.as_str())
                .bind(format!(
                    "invited {}, waiting for consent",
                    date_of(invitation.issued_at)
                ))
                .bind(invitation.sync_from)
                .bind(self.now)
            )?;
        }
        tracing::debug!(participant_id = %participant, invitation_id = %invitation.invitation_id, new, created, "invitation recorded");
        Ok(Effect::InvitationRecorded { new, created })
    }

    /// Inserts the invitation (or fills in what a row made from a consent problem did not
    /// know). Returns true if the invitation was not recorded before.
    async fn insert_invitation(&mut self, invitation: &Invitation) -> CommandResult<bool> {
        let id = job_text(&invitation.invitation_id);
        let known: Option<i32> = fetch!(
            self.conn.exec(),
            sqlx::query_scalar("SELECT 1 FROM invitations WHERE invitation_id = $1").bind(&id),
            optional
        )?;
        execute!(
            self.conn.exec(),
            sqlx::query(
                "INSERT INTO invitations (invitation_id, participant_id, provider, issued_at, \
                     expires_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (invitation_id) DO UPDATE SET \
                     issued_at = coalesce(invitations.issued_at, excluded.issued_at), \
                     expires_at = coalesce(invitations.expires_at, excluded.expires_at)",
            )
            .bind(&id)
            .bind(invitation.participant_id.as_str())
            .bind(invitation.provider.as_str())
            .bind(invitation.issued_at)
            .bind(invitation.expires_at)
        )?;
        Ok(known.is_none())
    }

    pub(super) async fn link_participant(&mut self, grant: &ConsentGrant) -> CommandResult<Effect> {
        let participant = &grant.participant_id;
        if grant.invitation.participant_id != *participant {
            return Ok(self.refused(
                grant,
                "wrong_participant",
                format!(
                    "the invitation is for participant {}, not {participant}",
                    grant.invitation.participant_id
                ),
            ));
        }
        self.insert_invitation(&grant.invitation).await?;
        let invitation_id = job_text(&grant.invitation.invitation_id);
        let request_id = job_text(&grant.request_id);
        let (used_at, used_by, used_new): (Option<UtcInstant>, Option<String>, Option<bool>) = fetch!(
            self.conn.exec(),
            sqlx::query_as(
                "SELECT used_at, used_by_request, used_new_participant FROM invitations \
                         WHERE invitation_id = $1",
            )
            .bind(&invitation_id),
            one
        )?;
        if used_by.as_deref() == Some(request_id.as_str()) {
            // This very consent, redelivered after its commit: the same answer, and its job
            // published again if it still holds the claim.
            return self
                .linked(grant, used_new.unwrap_or(false), "consent redelivered")
                .await;
        }
        if let Some(used_at) = used_at {
            return Ok(self.refused(
                grant,
                "invitation_used",
                format!("this invitation was already used on {used_at}"),
            ));
        }

        let row: Option<Linked> = fetch!(self.conn.exec(), sqlx::query_as(
                    "SELECT state, sync_from, sync_cursor, consented_at, health_user_id, legacy_user_id, \
                     fitbit_user_id, EXISTS (SELECT 1 FROM credentials c \
                         WHERE c.participant_id = participants.participant_id) AS has_credential \
                     FROM participants WHERE participant_id = $1",
                )
                .bind(participant.as_str()), optional)?;
        if let Some(row) = &row {
            if row.state == ParticipantState::Withdrawn.as_str() {
                return Ok(self.refused(
                    grant,
                    "withdrawn",
                    format!("participant {participant} withdrew from the study"),
                ));
            }
            if let Some(reason) = row.different_account(grant) {
                return Ok(self.refused(grant, "different_account", reason));
            }
        }

        let new_participant = row.as_ref().is_none_or(Linked::never_linked);
        let sync_from = grant.invitation.sync_from;
        if row.is_none() {
            execute!(
                self.conn.exec(),
                sqlx::query(
                    "INSERT INTO participants (participant_id, provider, sync_from, sync_cursor, \
                             created_at, updated_at) VALUES ($1, $2, $3, $3, $4, $4)",
                )
                .bind(participant.as_str())
                .bind(grant.provider.as_str())
                .bind(sync_from)
                .bind(self.now)
            )?;
        }
        let identity = grant.identity.as_ref();
        let consented_at = grant.consented_at;
        // An existing participant keeps sync_from and the cursor (a re-consent continues where
        // it stopped); one never linked starts where this invitation says. Provider ids are
        // filled in, never overwritten with NULL.
        execute!(
            self.conn.exec(),
            sqlx::query(
                "UPDATE participants SET provider = $2, state = 'active', state_reason = NULL, \
                     last_error = NULL, last_error_at = NULL, retry_at = NULL, \
                     sync_from = CASE WHEN $3 THEN $4 ELSE sync_from END, \
                     sync_cursor = CASE WHEN $3 THEN $4 ELSE sync_cursor END, \
                     health_user_id = coalesce($5, health_user_id), \
                     legacy_user_id = coalesce($6, legacy_user_id), \
                     fitbit_user_id = coalesce($7, fitbit_user_id), \
                     granted_scopes = $8, consented_at = $9, refresh_token_expires_at = $10, \
                     credential_used_at = $9, updated_at = $11 WHERE participant_id = $1",
            )
            .bind(participant.as_str())
            .bind(grant.provider.as_str())
            .bind(new_participant)
            .bind(sync_from)
            .bind(identity.map(|i| i.health_user_id.as_str()))
            .bind(identity.and_then(|i| i.legacy_user_id.as_deref()))
            .bind(match grant.provider {
                Provider::Fitbit => grant.fitbit_user_id.as_deref(),
                Provider::GoogleHealth => None,
            })
            .bind(grant.granted_scopes.join(" "))
            .bind(consented_at)
            .bind(grant.refresh_token_expires_at)
            .bind(self.now)
        )?;
        execute!(self.conn.exec(), sqlx::query(
                    "INSERT INTO credentials (participant_id, provider, sealed_refresh_token, updated_at) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (participant_id) DO UPDATE SET provider = excluded.provider, \
                     sealed_refresh_token = excluded.sealed_refresh_token, updated_at = excluded.updated_at",
                )
                .bind(participant.as_str())
                .bind(grant.provider.as_str())
                .bind(&grant.sealed_refresh_token)
                .bind(self.now))?;
        execute!(self.conn.exec(), sqlx::query(
                    "UPDATE invitations SET used_at = $2, used_by_request = $3, used_new_participant = $4 \
                     WHERE invitation_id = $1",
                )
                .bind(&invitation_id)
                .bind(consented_at)
                .bind(&request_id)
                .bind(new_participant))?;
        self.linked(grant, new_participant, "participant linked")
            .await
    }

    /// The answer to a consent that was stored: a sync job (unless one is in flight: its end,
    /// or the next schedule tick, covers the participant) and the `Linked` reply.
    async fn linked(
        &mut self,
        grant: &ConsentGrant,
        new_participant: bool,
        what: &'static str,
    ) -> CommandResult<Effect> {
        let participant = &grant.participant_id;
        // The request id names the job, so a redelivered consent finds the job it granted.
        let request = SyncRequest {
            job_id: grant.request_id,
            participant_id: participant.clone(),
            trigger: SyncTrigger::Consent,
            force: false,
            from: None,
            replaces: None,
            requested_at: grant.consented_at,
        };
        let job = match self.request_sync(&request).await? {
            Effect::Granted(job) | Effect::Regranted(job) => Some(job),
            _ => None,
        };
        let cursor: UtcInstant = fetch!(
            self.conn.exec(),
            sqlx::query_scalar("SELECT sync_cursor FROM participants WHERE participant_id = $1")
                .bind(participant.as_str()),
            one
        )?;
        tracing::debug!(participant_id = %participant, provider = %grant.provider, new_participant, %cursor, job = job.is_some(), "{what}");
        Ok(Effect::Replied {
            reply_to: grant.reply_to.clone(),
            reply: WriterReply {
                request_id: grant.request_id,
                reply: ReplyBody::Linked {
                    participant_id: participant.clone(),
                    cursor,
                    new_participant,
                },
            },
            job,
        })
    }

    fn refused(&self, grant: &ConsentGrant, code: &str, reason: String) -> Effect {
        tracing::debug!(participant_id = %grant.participant_id, code, %reason, "consent refused");
        Effect::Replied {
            reply_to: grant.reply_to.clone(),
            reply: WriterReply {
                request_id: grant.request_id,
                reply: ReplyBody::Refused {
                    code: code.to_owned(),
                    reason,
                },
            },
            job: None,
        }
    }

    /// A consent flow that ended without a usable grant. The problem shows on the invitation;
    /// a participant who has no working grant also shows it in their state. An `active`
    /// participant is never touched: one who re-consents with fewer scopes keeps syncing with
    /// their old grant.
    ///
    /// A participant fitlink does not know (the invitation's `RecordInvitation` was lost) is
    /// created with what is known: the command's provider, `sync_from` = cursor = `at` (their
    /// first completed consent, with the invitation's `sync_from`, resets both, see
    /// [`Linked::never_linked`]), and the problem as their state.
    pub(super) async fn record_consent_problem(
        &mut self,
        problem: &ConsentProblem,
    ) -> CommandResult<Effect> {
        let participant = &problem.participant_id;
        let at = problem.at;
        let text = match &problem.problem {
            ConsentProblemKind::Declined { error } => format!("declined: {}", capped(error)),
            ConsentProblemKind::ScopeMissing { missing } => {
                format!("scope missing: {}", missing.join(" "))
            }
        };
        // Issued/expires stay unknown (NULL) until the invitation itself is recorded.
        execute!(self.conn.exec(), sqlx::query(
                    "INSERT INTO invitations (invitation_id, participant_id, provider, last_problem, \
                     last_problem_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (invitation_id) DO UPDATE SET last_problem = excluded.last_problem, \
                     last_problem_at = excluded.last_problem_at",
                )
                .bind(job_text(&problem.invitation_id))
                .bind(participant.as_str())
                .bind(problem.provider.as_str())
                .bind(capped(&text))
                .bind(at))?;

        let state = self.participant_state(participant).await?;
        let (new_state, reason) = match &problem.problem {
            ConsentProblemKind::ScopeMissing { missing } => (
                ParticipantState::ScopeMissing,
                format!("consent given without: {}", missing.join(" ")),
            ),
            ConsentProblemKind::Declined { .. } => (
                ParticipantState::Invited,
                format!("declined consent on {}", date_of(problem.at)),
            ),
        };
        let Some(state) = state else {
            execute!(
                self.conn.exec(),
                sqlx::query(
                    "INSERT INTO participants (participant_id, provider, state, state_reason, \
                             sync_from, sync_cursor, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $5, $6, $6)",
                )
                .bind(participant.as_str())
                .bind(problem.provider.as_str())
                .bind(new_state.as_str())
                .bind(capped(&reason))
                .bind(at)
                .bind(self.now)
            )?;
            return Ok(Effect::ConsentProblemRecorded {
                state: new_state.as_str().to_owned(),
            });
        };
        let parsed = state.parse::<ParticipantState>().ok();
        let changes = match &problem.problem {
            // Any state waiting for a consent now says what the consent lacked.
            ConsentProblemKind::ScopeMissing { .. } => {
                parsed.is_some_and(|s| ParticipantState::NEEDING_CONSENT.contains(&s))
            }
            // A declined re-consent leaves the reason the participant needed it.
            ConsentProblemKind::Declined { .. } => parsed == Some(ParticipantState::Invited),
        };
        if !changes {
            return Ok(Effect::ConsentProblemRecorded { state });
        }
        execute!(
            self.conn.exec(),
            sqlx::query(
                "UPDATE participants SET state = $2, state_reason = $3, updated_at = $4 \
                     WHERE participant_id = $1",
            )
            .bind(participant.as_str())
            .bind(new_state.as_str())
            .bind(capped(&reason))
            .bind(self.now)
        )?;
        tracing::debug!(participant_id = %participant, previous_state = %state, state = %new_state, "consent problem recorded");
        Ok(Effect::ConsentProblemRecorded {
            state: new_state.as_str().to_owned(),
        })
    }

    /// The provider says the participant took their consent back (legacy Fitbit
    /// `userRevokedAccess`): `revoked` with the provider's reason; data and cursor stay, so a
    /// new consent continues from there. A withdrawn participant stays withdrawn.
    pub(super) async fn consent_lost(&mut self, loss: &ConsentLoss) -> CommandResult<Effect> {
        let participant = &loss.participant_id;
        let state = self.participant_state(participant).await?;
        let Some(previous_state) = state else {
            return Err(Rejection::UnknownParticipant(participant.clone()).into());
        };
        if previous_state != ParticipantState::Withdrawn.as_str() {
            execute!(
                self.conn.exec(),
                sqlx::query(
                    "UPDATE participants SET state = $2, state_reason = $3, last_error = $3, \
                             last_error_at = $4, updated_at = $5 WHERE participant_id = $1",
                )
                .bind(participant.as_str())
                .bind(ParticipantState::Revoked.as_str())
                .bind(capped(&loss.reason))
                .bind(loss.at)
                .bind(self.now)
            )?;
        }
        tracing::debug!(participant_id = %participant, %previous_state, "consent lost");
        Ok(Effect::ConsentLost { previous_state })
    }
}
