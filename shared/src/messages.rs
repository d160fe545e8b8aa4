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

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{ParticipantId, ParticipantState, Provider, Slice, UtcInstant};
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
}

impl SyncTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncTrigger::Schedule => "schedule",
            SyncTrigger::Manual => "manual",
            SyncTrigger::Replay => "replay",
            SyncTrigger::Import => "import",
            SyncTrigger::CredentialRetry => "credential_retry",
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
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            WriterCommand::ImportParticipants(_) => "import_participants",
            WriterCommand::RequestSync(_) => "request_sync",
            WriterCommand::StoreSlice(_) => "store_slice",
            WriterCommand::RotateCredential(_) => "rotate_credential",
            WriterCommand::FinishJob(_) => "finish_job",
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
    #[serde(default)]
    pub activity: Vec<ActivityDay>,
    #[serde(default)]
    pub heart_rate_zones: Vec<HeartRateZoneDay>,
    #[serde(default)]
    pub resting_heart_rate: Vec<RestingHeartRateDay>,
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

/// A row of `activity_summary`: one participant's local day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct ActivityDay {
    pub date: NaiveDate,
    pub steps: Option<i64>,
    /// Kilometres.
    pub distance: Option<f64>,
    pub floors: Option<i64>,
    /// Metres climbed.
    pub elevation: Option<f64>,
    pub calories_out: Option<f64>,
    pub activity_calories: Option<f64>,
    pub sedentary_minutes: Option<f64>,
    pub lightly_active_minutes: Option<f64>,
    pub fairly_active_minutes: Option<f64>,
    pub very_active_minutes: Option<f64>,
}

/// A row of `heart_rate_summary`: one participant's local day and heart-rate zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeartRateZoneDay {
    pub date: NaiveDate,
    /// Google Health's zone names, lower case: light, moderate, vigorous, peak.
    pub zone_name: String,
    pub min_heart_rate: Option<i64>,
    pub max_heart_rate: Option<i64>,
    pub minute_in_zone: Option<i64>,
    pub calorie_count: Option<f64>,
}

/// A row of `resting_heart_rate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestingHeartRateDay {
    pub date: NaiveDate,
    pub resting_heart_rate: i64,
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
    /// Retries are exhausted; the job is in the dead-letter queue.
    DeadLettered { reason: String },
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
