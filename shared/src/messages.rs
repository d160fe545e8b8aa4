//! What travels on the queues. JSON bodies, versioned by shape: add optional fields, never
//! repurpose one.
//!
//! Two queues carry work:
//! - the **jobs** queue carries [`SyncJob`]s from the writer (which grants them, see
//!   [`WriterCommand::RequestSync`]) to the workers;
//! - the **results** queue carries [`WriterCommand`]s from everyone to the one active writer,
//!   which is the only process that writes the database.
//!
//! No message carries a plaintext token: refresh tokens travel as [`SealedToken`]s.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{ParticipantId, ParticipantState, Provider, Slice, UtcInstant};
pub use crate::families::{
    ActivityDay, DailyFamilies, DeviceSnapshot, HeartRateZoneDay, RestingHeartRateDay,
};
use crate::secret::SealedToken;

/// Sync one participant from `from` up to their device's latest sync.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncJob {
    /// Unique per grant; every result names it so the writer can tie results to the job ledger.
    pub job_id: Uuid,
    pub participant_id: ParticipantId,
    pub provider: Provider,
    pub sealed_refresh_token: SealedToken,
    /// Where to start: the participant's cursor when the job was granted, or later when a
    /// retry resumes after slices that were already published.
    pub from: UtcInstant,
    /// The first instant the program wants for this participant: no day before it is fetched,
    /// not even when re-reading recent summaries.
    #[serde(default)]
    pub sync_from: Option<UtcInstant>,
    /// A keep-alive: refresh the token (storing a rotated one as usual) and nothing else, then
    /// report [`Outcome::Touched`]. Keeps an idle participant's grant from expiring.
    #[serde(default)]
    pub touch_only: bool,
    /// The participant's account identity is not on record (a Google participant imported from
    /// a file): ask the provider once and report it, so its webhooks can name the participant.
    #[serde(default)]
    pub identity_unknown: bool,
    /// The participant's IANA time zone if known (the worker asks the provider otherwise).
    #[serde(default)]
    pub time_zone: Option<String>,
    pub granted_at: UtcInstant,
}

/// Who asked for a sync. Kept in the job ledger for operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncTrigger {
    Schedule,
    Manual,
    Replay,
    /// Participants just imported (new, or back after a new consent) sync right away.
    Import,
    /// The provider refused a refresh token that had since been rotated (a worker died between
    /// rotating it and finishing): the writer retries once with the stored token.
    CredentialRetry,
    /// A participant completed the consent flow (first link or re-consent).
    Consent,
    /// A provider webhook said the participant's device synced (or data changed).
    Webhook,
    /// A token touch: keeps an idle participant's refresh token from expiring.
    KeepAlive,
}

impl SyncTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncTrigger::Schedule => "schedule",
            SyncTrigger::Manual => "manual",
            SyncTrigger::Replay => "replay",
            SyncTrigger::Import => "import",
            SyncTrigger::CredentialRetry => "credential_retry",
            SyncTrigger::Consent => "consent",
            SyncTrigger::Webhook => "webhook",
            SyncTrigger::KeepAlive => "keep_alive",
        }
    }
}

/// Everything the writer consumes. One queue, one consumer, one ordered stream of changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WriterCommand {
    ImportParticipants(ImportBatch),
    RequestSync(SyncRequest),
    StoreSlice(SliceResult),
    RotateCredential(CredentialRotation),
    FinishJob(JobOutcome),
    RecordInvitation(Invitation),
    LinkParticipant(ConsentGrant),
    RecordConsentProblem(ConsentProblem),
    ProviderNotified(ProviderNotification),
    DeleteProviderData(ProviderDeletion),
    ConsentLost(ConsentLoss),
    Withdraw(Withdrawal),
    RecordOperatorAction(OperatorAction),
    ResealCredentials(ResealBatch),
}

impl WriterCommand {
    /// The participant a command is about, for logs and dead-letter headers.
    pub fn participant(&self) -> Option<&ParticipantId> {
        match self {
            WriterCommand::ImportParticipants(_) => None,
            WriterCommand::RequestSync(r) => Some(&r.participant_id),
            WriterCommand::StoreSlice(s) => Some(&s.participant_id),
            WriterCommand::RotateCredential(c) => Some(&c.participant_id),
            WriterCommand::FinishJob(o) => Some(&o.participant_id),
            WriterCommand::RecordInvitation(i) => Some(&i.participant_id),
            WriterCommand::LinkParticipant(g) => Some(&g.participant_id),
            WriterCommand::RecordConsentProblem(p) => Some(&p.participant_id),
            WriterCommand::ProviderNotified(n) => Some(&n.participant_id),
            WriterCommand::DeleteProviderData(d) => Some(&d.participant_id),
            WriterCommand::ConsentLost(l) => Some(&l.participant_id),
            WriterCommand::Withdraw(w) => Some(&w.participant_id),
            WriterCommand::RecordOperatorAction(a) => a.participant_id.as_ref(),
            WriterCommand::ResealCredentials(_) => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            WriterCommand::ImportParticipants(_) => "import_participants",
            WriterCommand::RequestSync(_) => "request_sync",
            WriterCommand::StoreSlice(_) => "store_slice",
            WriterCommand::RotateCredential(_) => "rotate_credential",
            WriterCommand::FinishJob(_) => "finish_job",
            WriterCommand::RecordInvitation(_) => "record_invitation",
            WriterCommand::LinkParticipant(_) => "link_participant",
            WriterCommand::RecordConsentProblem(_) => "record_consent_problem",
            WriterCommand::ProviderNotified(_) => "provider_notified",
            WriterCommand::DeleteProviderData(_) => "delete_provider_data",
            WriterCommand::ConsentLost(_) => "consent_lost",
            WriterCommand::Withdraw(_) => "withdraw",
            WriterCommand::RecordOperatorAction(_) => "record_operator_action",
            WriterCommand::ResealCredentials(_) => "reseal_credentials",
        }
    }

    /// The queue a process waits on for this command's [`WriterReply`], if it waits.
    pub fn reply_to(&self) -> Option<&str> {
        match self {
            WriterCommand::LinkParticipant(g) => g.reply_to.as_deref(),
            WriterCommand::Withdraw(w) => w.reply_to.as_deref(),
            _ => None,
        }
    }
}

/// A whole CSV file of participants, applied in one transaction so a file is never half-imported.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportBatch {
    pub import_id: Uuid,
    /// The file it came from, for the audit row.
    pub source: String,
    pub participants: Vec<ImportedParticipant>,
}

impl ImportBatch {
    /// The batch as the writers take it: one part per results partition that has participants
    /// in it, each for the partition's writer alone. With one partition, the batch itself. With
    /// several, each part has an import id of its own (the `imports` row each writer keeps) and
    /// names its partition in `source`.
    pub fn split_by_partition(self, partitions: usize) -> Vec<(usize, ImportBatch)> {
        if partitions <= 1 {
            return vec![(0, self)];
        }
        by_partition(self.participants, partitions, |p| &p.participant_id)
            .into_iter()
            .map(|(i, participants)| {
                (
                    i,
                    ImportBatch {
                        import_id: Uuid::now_v7(),
                        source: format!("{} (partition {i} of {partitions})", self.source),
                        participants,
                    },
                )
            })
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImportedParticipant {
    pub participant_id: ParticipantId,
    pub provider: Provider,
    pub sealed_refresh_token: SealedToken,
    pub sync_from: UtcInstant,
    /// The Google Health identity of the consenting account, when the import checked it
    /// (a participant moving from the legacy Fitbit API to Google Health).
    #[serde(default)]
    pub identity: Option<ProviderIdentity>,
}

/// `users/me/identity`: the Google Health user id and the legacy Fitbit user id it maps to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderIdentity {
    pub health_user_id: String,
    #[serde(default)]
    pub legacy_user_id: Option<String>,
}

/// Ask the writer to grant a sync job. The writer is the single place that knows whether a job is
/// already in flight for the participant, so only it can keep "one job in flight" true.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub job_id: Uuid,
    pub participant_id: ParticipantId,
    pub trigger: SyncTrigger,
    /// Operator intent: sync even if the participant's state says otherwise (the state goes back
    /// to `active`). The schedule never sets it.
    #[serde(default)]
    pub force: bool,
    /// Refetch from here instead of the cursor (an operator's re-sync); never moves the cursor back.
    #[serde(default)]
    pub from: Option<UtcInstant>,
    /// A replay names the dead-lettered job it replaces, so the writer may take over that job's
    /// in-flight claim (RabbitMQ dead-letters a job past its delivery limit without telling us).
    #[serde(default)]
    pub replaces: Option<Uuid>,
    pub requested_at: UtcInstant,
}

/// One slice of one participant's data, normalised. The writer stores all of it and advances the
/// cursor over it in one transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SliceResult {
    pub job_id: Uuid,
    pub participant_id: ParticipantId,
    pub provider: Provider,
    pub slice: Slice,
    /// The daily families of the local days the slice touches (the first slice of a job also
    /// the look-back days), complete for [`DailyFamilies::complete_days`].
    #[serde(flatten)]
    pub daily: DailyFamilies,
    /// The paired devices as the job found them (first slice of a job only).
    #[serde(default)]
    pub devices: Option<DeviceSnapshot>,
    /// The participant's IANA zone the slice's local days were cut in: the completeness
    /// ledger counts the same local days (`None` in older messages: the stored zone is used).
    #[serde(default)]
    pub time_zone: Option<String>,
    #[serde(default)]
    pub heart_rate: Vec<IntradayPoint>,
    #[serde(default)]
    pub steps: Vec<IntradayPoint>,
}

impl SliceResult {
    pub fn intraday_rows(&self) -> usize {
        self.heart_rate.len() + self.steps.len()
    }
}

/// One intraday sample (heart rate in bpm, or steps in the minute starting at `datetime`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntradayPoint {
    pub datetime: UtcInstant,
    /// The participant's UTC offset at that instant, as the provider reported it.
    pub utc_offset_seconds: i32,
    pub value: i64,
}

/// A refresh token the provider rotated; made durable before the new access token is used.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CredentialRotation {
    pub job_id: Uuid,
    pub participant_id: ParticipantId,
    pub sealed_refresh_token: SealedToken,
    /// The sealed token the worker refreshed with. The writer stores the rotation only while
    /// that is still the stored one: a rotation that arrives after a newer credential (a later
    /// rotation, a new consent, an import) must not put an older token back. `None` (messages
    /// from before this field) stores unconditionally.
    #[serde(default)]
    pub replaces: Option<SealedToken>,
    /// Queue on which the worker waits for [`CredentialStored`]: it uses the new access token
    /// only once the rotated refresh token is committed.
    #[serde(default)]
    pub reply_to: Option<String>,
}

/// The writer's answer to a [`CredentialRotation`] with `reply_to`: committed with `FULL` sync.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CredentialStored {
    pub job_id: Uuid,
    pub participant_id: ParticipantId,
}

/// How a job ended (or paused). Releases the participant's in-flight claim unless it is
/// `Deferred` (a retry copy is on its way, the claim stays).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    pub job_id: Uuid,
    pub participant_id: ParticipantId,
    pub outcome: Outcome,
    pub at: UtcInstant,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Every slice up to `synced_to` was published.
    Completed {
        synced_to: UtcInstant,
        latest_device_sync: Option<UtcInstant>,
        time_zone: Option<String>,
        slices: u32,
        /// The provider refused intraday data (daily summaries were stored).
        #[serde(default)]
        intraday_denied: bool,
        /// The provider's own id for the participant (legacy Fitbit `user_id`), if it told us.
        #[serde(default)]
        provider_user_id: Option<String>,
        /// The account's identity, when the job was asked to learn it
        /// ([`SyncJob::identity_unknown`]).
        #[serde(default)]
        identity: Option<ProviderIdentity>,
    },
    /// A retry was scheduled; the participant stays in flight.
    Deferred {
        until: UtcInstant,
        rate_limited: bool,
        reason: String,
    },
    /// The participant cannot be synced until someone acts; the state says why.
    Failed {
        state: ParticipantState,
        reason: String,
        /// Set when the failure is the provider refusing this (sealed) refresh token: if the
        /// stored credential has been rotated since, the writer retries with it instead.
        #[serde(default)]
        rejected_token: Option<SealedToken>,
    },
    /// The provider refused for its rate limit and said when it resets. No retry copy was
    /// published: the writer releases the participant's claim and records `until`, and the
    /// dispatcher asks for a new job at `until` (to the second, not at the next delay tier, and
    /// without a worker slot waiting). The new job starts from the cursor, which every slice
    /// published before this outcome has already moved (they share the results partition).
    RateLimited {
        until: UtcInstant,
        reason: String,
        /// Where the job would have resumed: the new job starts here if it is before the cursor
        /// (a restatement or a requested `--from`), so the wait loses none of it.
        resume_from: UtcInstant,
    },
    /// Retries are exhausted; the job is in the dead-letter queue.
    DeadLettered { reason: String },
    /// A keep-alive job ([`SyncJob::touch_only`]) refreshed the token and did nothing else. The
    /// participant's state does not change; `credential_used_at` does.
    Touched,
}

// ---------------------------------------------------------------------------------------------
// Linkage: invitations, consent, provider webhooks, withdrawal.
// ---------------------------------------------------------------------------------------------

/// A consent invitation (`fitlink invite`). The same fields, signed, are the invitation link's
/// token, so the portal can check an invitation without the database; the writer records it so
/// `fitlink status` shows who was invited and so an invitation is used at most once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Invitation {
    pub invitation_id: Uuid,
    pub participant_id: ParticipantId,
    pub provider: Provider,
    /// For a participant fitlink does not know yet: the first instant the program wants
    /// (the new participant's cursor starts here). Ignored for known participants.
    pub sync_from: UtcInstant,
    pub issued_at: UtcInstant,
    pub expires_at: UtcInstant,
}

/// A completed consent: the portal exchanged the code and checked the identity; the writer stores
/// the credential (with `synchronous=FULL`), uses up the invitation, and grants a sync job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsentGrant {
    /// Correlates the writer's [`WriterReply`].
    pub request_id: Uuid,
    pub invitation: Invitation,
    pub participant_id: ParticipantId,
    pub provider: Provider,
    pub sealed_refresh_token: SealedToken,
    /// When the provider said the refresh token stops working (Google testing-mode grants:
    /// `refresh_token_expires_in`, 7 days); `None` for grants that do not expire on a date.
    #[serde(default)]
    pub refresh_token_expires_at: Option<UtcInstant>,
    /// The scopes the participant granted (all the program needs: a grant missing one is a
    /// [`ConsentProblem`] instead).
    pub granted_scopes: Vec<String>,
    /// Google Health `users/me/identity`.
    #[serde(default)]
    pub identity: Option<ProviderIdentity>,
    /// Legacy Fitbit: the token response's `user_id`.
    #[serde(default)]
    pub fitbit_user_id: Option<String>,
    pub consented_at: UtcInstant,
    /// Queue the portal waits on: the confirmation page is shown only after the commit.
    #[serde(default)]
    pub reply_to: Option<String>,
}

/// A consent flow that ended without a usable grant. Recorded so the coordinator sees it in
/// `fitlink status`; the invitation stays usable, so the participant can try again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsentProblem {
    pub invitation_id: Uuid,
    pub participant_id: ParticipantId,
    pub provider: Provider,
    pub problem: ConsentProblemKind,
    pub at: UtcInstant,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum ConsentProblemKind {
    /// The participant pressed "deny" (`error=access_denied`) or the provider refused.
    Declined { error: String },
    /// The participant unticked scopes the program needs.
    ScopeMissing { missing: Vec<String> },
}

/// A time interval a provider notification names, `[start, end)`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NotifiedInterval {
    pub start: UtcInstant,
    pub end: UtcInstant,
}

/// Provider webhooks said the participant has new or changed data (Google `UPSERT`, a legacy
/// Fitbit collection notification). Many notifications are coalesced into one command by the
/// dispatcher; the writer grants at most one job for them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderNotification {
    /// A digest of each notification's content. The writer keeps them for a week (the
    /// providers' redelivery horizon) and ignores one it has seen: duplicates create no work.
    pub notification_ids: Vec<String>,
    pub participant_id: ParticipantId,
    pub provider: Provider,
    /// Kebab-case data types (Google) or collection types (Fitbit), for the ledger.
    pub data_types: Vec<String>,
    /// What changed. The job re-reads from the earliest start if that is before the cursor
    /// (never before `sync_from`).
    pub intervals: Vec<NotifiedInterval>,
    pub received_at: UtcInstant,
}

/// A Google `DELETE` notification: the provider removed these points (the participant deleted
/// them, or revoked permission). The writer deletes exactly the stored points of `data_type` in
/// the intervals and records the deletion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProviderDeletion {
    pub notification_id: String,
    pub participant_id: ParticipantId,
    pub provider: Provider,
    /// Kebab-case Google data type (`heart-rate`, `steps`, …).
    pub data_type: String,
    pub intervals: Vec<NotifiedInterval>,
    pub received_at: UtcInstant,
}

/// The provider told us the participant took their consent back (legacy Fitbit
/// `userRevokedAccess`). Their data stays; they need a new consent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConsentLoss {
    pub participant_id: ParticipantId,
    pub provider: Provider,
    pub reason: String,
    pub at: UtcInstant,
}

/// `fitlink participants withdraw`: the participant leaves the study. The grant has been
/// revoked at the provider (or that was attempted: `provider_revocation` says how it went).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Withdrawal {
    pub request_id: Uuid,
    pub participant_id: ParticipantId,
    /// Delete every stored row of the participant in the same transaction.
    pub purge: bool,
    /// Who asked (operator name), for the audit row.
    pub requested_by: String,
    /// `revoked`, `already_invalid`, `no_credential`, or `not_attempted` (`--no-revoke`).
    pub provider_revocation: String,
    pub at: UtcInstant,
    #[serde(default)]
    pub reply_to: Option<String>,
}

/// Something a person did in the console, for the `operator_actions` audit table: who, when,
/// what. Published *before* the action it describes, so no action happens unrecorded (a failed
/// action leaves a row saying it was asked for). Never holds a token or health data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OperatorAction {
    /// Makes a redelivered record land once.
    pub action_id: Uuid,
    pub at: UtcInstant,
    /// Who: the console login (the identity provider's email or subject, or the admin name).
    pub actor: String,
    /// The actor's console role when they acted (`operator`).
    pub role: String,
    /// `sync_now`, `consent_link`, `consent_links_needing`, `dead_letters_retry`,
    /// `dead_letters_discard`.
    pub action: String,
    /// The participant acted on, when it is one (routes the record to their writer).
    pub participant_id: Option<ParticipantId>,
    /// What was asked, as JSON: job ids, a dead-letter group's reason, why letters were discarded.
    pub detail: serde_json::Value,
}

/// The writer's answer, after commit, to a command that carried `reply_to`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WriterReply {
    pub request_id: Uuid,
    pub reply: ReplyBody,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReplyBody {
    /// The participant is linked; syncing continues from `cursor` (a re-consent keeps it).
    Linked {
        participant_id: ParticipantId,
        cursor: UtcInstant,
        new_participant: bool,
    },
    /// Nothing was stored, and why (invitation already used, participant withdrawn, a
    /// different account than the one linked before, …). `code` is stable, `reason` is for people.
    Refused { code: String, reason: String },
    /// The participant is withdrawn; rows deleted per table (empty without purge).
    Withdrawn {
        participant_id: ParticipantId,
        purged: bool,
        rows_deleted: std::collections::BTreeMap<String, u64>,
    },
}

/// The header that carries our own attempt counter (RabbitMQ 4 ignores client-set `x-` headers).
pub const ATTEMPT_HEADER: &str = "fitlink-attempt";
/// Headers a dead letter carries so `fitlink dlq list` can say why without opening the body.
pub const REASON_HEADER: &str = "fitlink-reason";
pub const PARTICIPANT_HEADER: &str = "fitlink-participant";
pub const JOB_HEADER: &str = "fitlink-job";

pub fn now_instant() -> UtcInstant {
    UtcInstant::new(Utc::now())
}

pub fn instant(at: DateTime<Utc>) -> UtcInstant {
    UtcInstant::new(at)
}

/// `fitlink credentials rekey`: stored credentials sealed again under the current token key.
/// Each replaces the stored value only if it is still the one the command read (`expected`):
/// a token rotated or re-consented meanwhile is newer than the reseal, and wins.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResealBatch {
    /// Correlates the writer's [`ResealApplied`].
    pub request_id: Uuid,
    pub credentials: Vec<Reseal>,
    #[serde(default)]
    pub reply_to: Option<String>,
}

/// One credential to seal again: the same refresh token, under another key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reseal {
    pub participant_id: ParticipantId,
    /// The sealed value as read from the database.
    pub expected: SealedToken,
    /// The same token sealed with the current key.
    pub sealed: SealedToken,
}

impl ResealBatch {
    /// The batch as the writers take it: one part per results partition that has credentials in
    /// it (each with a request id of its own, to wait for each writer's answer).
    pub fn split_by_partition(self, partitions: usize) -> Vec<(usize, ResealBatch)> {
        if partitions <= 1 {
            return vec![(0, self)];
        }
        by_partition(self.credentials, partitions, |r| &r.participant_id)
            .into_iter()
            .map(|(i, credentials)| {
                (
                    i,
                    ResealBatch {
                        request_id: Uuid::now_v7(),
                        credentials,
                        reply_to: self.reply_to.clone(),
                    },
                )
            })
            .collect()
    }
}

/// `items` grouped by the results partition of their participant; partitions without any are
/// left out.
fn by_partition<T>(
    items: Vec<T>,
    partitions: usize,
    participant: impl Fn(&T) -> &ParticipantId,
) -> Vec<(usize, Vec<T>)> {
    let mut parts: Vec<Vec<T>> = (0..partitions).map(|_| Vec::new()).collect();
    for item in items {
        parts[crate::broker::partition_of(participant(&item).as_str(), partitions)].push(item);
    }
    parts
        .into_iter()
        .enumerate()
        .filter(|(_, part)| !part.is_empty())
        .collect()
}

/// The writer's answer, after commit, to a [`ResealBatch`] with `reply_to`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResealApplied {
    pub request_id: Uuid,
    /// Credentials now sealed with the new value.
    pub replaced: u32,
    /// Credentials whose stored value was no longer the one read (rotated, re-consented or
    /// deleted meanwhile): left as they are.
    pub changed_since_read: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_commands_round_trip_with_a_kind_tag() {
        let cmd = WriterCommand::FinishJob(JobOutcome {
            job_id: Uuid::nil(),
            participant_id: ParticipantId::new("p1").unwrap(),
            outcome: Outcome::Failed {
                state: ParticipantState::Revoked,
                reason: "invalid_grant".into(),
                rejected_token: None,
            },
            at: UtcInstant::parse("2026-11-01T00:00:00Z").unwrap(),
        });
        let json = serde_json::to_string(&cmd).unwrap();
        assert!(json.contains(r#""kind":"finish_job""#), "{json}");
        assert!(json.contains(r#""status":"failed""#), "{json}");
        assert_eq!(serde_json::from_str::<WriterCommand>(&json).unwrap(), cmd);
    }

    #[test]
    fn a_bad_instant_or_participant_is_a_decode_error() {
        let bad = r#"{"kind":"rotate_credential","job_id":"00000000-0000-0000-0000-000000000000","participant_id":"no spaces allowed","sealed_refresh_token":"x"}"#;
        assert!(serde_json::from_str::<WriterCommand>(bad).is_err());
    }
}
