//! The database side of the writer: applies [`WriterCommand`]s, many per transaction.
//!
//! Everything a command changes (data rows, the cursor that covers them, the job ledger, the
//! in-flight claim) changes in the same transaction, so a crash leaves either all of a batch or
//! none of it (invariant 3: the cursor never passes uncommitted data). What must happen outside
//! the database after the commit (publishing granted jobs, answering a process that waits for a
//! decision) is returned in [`Applied`] for the caller to do.
//!
//! One module per concern: `import`, `grant` (sync requests and keep-alives), `slices` (with
//! `families`: each data family into its table),
//! `credential`, `outcome` (job ends), `linkage` (invitations, consents, consent problems and
//! losses), `notification` (provider webhooks: new data and deletions), `withdrawal`, `reseal`
//! (credentials sealed again under a new token key).
//!
//! This module knows nothing of the broker. It logs at debug level only: whatever it logs may
//! still be rolled back; the caller reports what was committed.

use std::collections::BTreeMap;
use std::time::Duration;

use fitlink_shared::config::DatabaseArgs;
use fitlink_shared::domain::{ParticipantId, UtcInstant};
use fitlink_shared::messages::{
    CredentialStored, ResealApplied, SyncJob, WriterCommand, WriterReply, now_instant,
};
use fitlink_shared::on_backend;
use fitlink_shared::store::{Conn, Database, Durability, WriteConnection};
use uuid::Uuid;

mod audit;
mod coverage;
mod credential;
mod families;
mod grant;
mod import;
mod linkage;
mod notification;
mod outcome;
mod reseal;
mod slices;
mod withdrawal;

#[cfg(test)]
mod audit_tests;
#[cfg(test)]
mod coverage_tests;
#[cfg(test)]
mod families_tests;
#[cfg(test)]
mod linkage_tests;
#[cfg(test)]
mod rate_limit_tests;
#[cfg(test)]
mod reseal_tests;
#[cfg(test)]
mod tests;

/// The writer's handle on the database. One connection, one transaction at a time.
pub struct Store {
    db: Database,
    /// An in-flight claim older than this is considered lost (the worker died and the jobs queue
    /// dead-lettered the job without telling us) and may be re-granted.
    job_lease: Duration,
    /// Chores done now and then, not in every transaction.
    housekeeping: Housekeeping,
}

/// When the writer last did its periodic chores. Kept in memory: after a restart they are simply
/// done once more, which is harmless.
#[derive(Debug, Default)]
struct Housekeeping {
    /// Provider notification digests older than the redelivery horizon are pruned at most once
    /// per [`notification::PRUNE_EVERY`].
    notifications_pruned_at: Option<std::time::Instant>,
}

/// What one [`Store::apply`] did, command by command.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// One effect per command, in the order of the commands.
    pub effects: Vec<Effect>,
    /// Rows written (inserted or changed) per table; unchanged summaries and duplicate points
    /// are not counted.
    pub rows: BTreeMap<&'static str, u64>,
}

impl Applied {
    /// The jobs to publish now that the transaction is committed, with the index of the command
    /// that produced each.
    pub fn jobs(&self) -> impl Iterator<Item = (usize, &SyncJob)> {
        self.effects
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.job_to_publish().map(|job| (i, job)))
    }

    pub fn rows_written(&self) -> u64 {
        self.rows.values().sum()
    }

    fn add_rows(&mut self, table: &'static str, rows: u64) {
        if rows > 0 {
            *self.rows.entry(table).or_default() += rows;
        }
    }
}

/// The effect of one command.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// An import file applied: participants created, existing ones given new credentials (and
    /// `reactivated` of those brought back to `active` by the new consent), and `refused` rows
    /// skipped (withdrawn participants are never brought back by an import).
    Imported {
        created: u32,
        updated: u32,
        reactivated: u32,
        refused: u32,
    },
    /// The import id was applied before (a redelivery or a second run of the same file).
    ImportAlreadyApplied,
    /// A new grant: publish this job.
    Granted(SyncJob),
    /// The request's own job already holds the claim (redelivered after a crash between the
    /// commit and the publish): publish the same job again.
    Regranted(SyncJob),
    /// The request was not granted, and why.
    NotGranted(NotGranted),
    /// A slice was stored. `cursor` is the participant's cursor after it.
    SliceStored {
        rows_written: u64,
        cursor: UtcInstant,
    },
    /// A rotated refresh token was stored; the worker waiting on `reply_to` is told after commit.
    CredentialRotated {
        reply_to: Option<String>,
        stored: CredentialStored,
    },
    /// A slice for a withdrawn participant (its job was in flight when they withdrew): nothing
    /// stored, so withdrawal is final.
    SliceDropped { state: String },
    /// A job's outcome was recorded; `released` says whether it released the in-flight claim.
    JobFinished {
        released: bool,
        /// A job that takes over, to publish: the provider refused a refresh token that has been
        /// rotated since the grant (a retry with the stored token), or provider notifications
        /// arrived while the job ran (one follow-up job covering all of them).
        follow_up: Option<SyncJob>,
    },
    /// An invitation recorded (`new` is false if it was recorded before); `created` says
    /// whether it created the participant (in `invited`).
    InvitationRecorded { new: bool, created: bool },
    /// The command breaks a rule (an invitation for a withdrawn participant): nothing changed.
    /// Acked, not dead-lettered: the message is fine, the request is not.
    Refused { reason: String },
    /// A command someone waits on was decided (a consent, a withdrawal): `reply` goes to
    /// `reply_to` after the commit. A consent may grant a first sync job.
    Replied {
        reply_to: Option<String>,
        reply: WriterReply,
        job: Option<SyncJob>,
    },
    /// A consent flow that ended without a grant was recorded; `state` is the participant's state
    /// after it.
    ConsentProblemRecorded { state: String },
    /// Provider notifications were recorded, and what came of them.
    Notified(Notified),
    /// A provider deletion was applied: `rows_deleted` stored rows removed (0 for a repeated
    /// notification), then the re-read it calls for.
    ProviderDataDeleted {
        rows_deleted: u64,
        notified: Notified,
    },
    /// The provider said the participant took their consent back; `previous_state` before it.
    ConsentLost { previous_state: String },
    /// A console action was written to the audit (`operator_actions`).
    ActionRecorded,
    /// Credentials sealed again under a new key; the `rekey` waiting on `reply_to` is told after
    /// commit.
    Resealed {
        reply_to: Option<String>,
        applied: ResealApplied,
    },
}

/// What became of provider notifications (a webhook `UPSERT`, or the re-read after a `DELETE`).
#[derive(Clone, Debug, PartialEq)]
pub enum Notified {
    /// Every notification was seen before: nothing to do (1,000 duplicates make one job).
    Duplicate,
    /// Recorded, but the participant is not syncing: no job.
    NotSyncing { state: String },
    /// A job is in flight: recorded, and that job's end grants one follow-up job for all of them.
    Coalesced { in_flight: String },
    /// The provider's rate limit is spent: recorded, and the job granted at its reset covers it.
    Deferred,
    /// A job to publish, granted now.
    Job(SyncJob),
}

impl Notified {
    /// A short stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Notified::Duplicate => "notification_duplicate",
            Notified::NotSyncing { .. } => "notification_not_syncing",
            Notified::Coalesced { .. } => "notification_coalesced",
            Notified::Deferred => "notification_deferred",
            Notified::Job(_) => "granted",
        }
    }
}

impl Effect {
    pub fn job_to_publish(&self) -> Option<&SyncJob> {
        match self {
            Effect::Granted(job) | Effect::Regranted(job) => Some(job),
            Effect::JobFinished {
                follow_up: Some(job),
                ..
            }
            | Effect::Replied { job: Some(job), .. }
            | Effect::Notified(Notified::Job(job))
            | Effect::ProviderDataDeleted {
                notified: Notified::Job(job),
                ..
            } => Some(job),
            _ => None,
        }
    }

    /// A process waiting for this command's decision, and what to tell it.
    pub fn writer_reply(&self) -> Option<(&str, &WriterReply)> {
        match self {
            Effect::Replied {
                reply_to: Some(queue),
                reply,
                ..
            } => Some((queue.as_str(), reply)),
            _ => None,
        }
    }

    /// A `credentials rekey` waiting for its batch to be committed, and what to tell it.
    pub fn reseal_reply(&self) -> Option<(&str, &ResealApplied)> {
        match self {
            Effect::Resealed {
                reply_to: Some(queue),
                applied,
            } => Some((queue.as_str(), applied)),
            _ => None,
        }
    }

    /// A worker waiting for this credential to be committed, and what to tell it.
    pub fn credential_reply(&self) -> Option<(&str, &CredentialStored)> {
        match self {
            Effect::CredentialRotated {
                reply_to: Some(queue),
                stored,
            } => Some((queue.as_str(), stored)),
            _ => None,
        }
    }
}

/// Why a sync request was not granted (none of these is an error: the request is acked).
#[derive(Clone, Debug, PartialEq)]
pub enum NotGranted {
    /// The participant's state is not `active` and the request did not force it.
    NotActive { state: String },
    /// The participant has no live grant to sync with (withdrawn, only invited, no stored
    /// credential, or — for a keep-alive — a grant the provider already refused): not even a
    /// forced request is granted.
    NoGrant { state: String, why: &'static str },
    /// Another job holds a live claim (invariant 6: one job in flight).
    InFlight { job_id: String },
    /// This job id was granted before and is no longer in flight (it finished or was replaced):
    /// a late redelivery, nothing to do.
    AlreadyGranted,
    /// The provider's rate limit is spent until `until`; the dispatcher asks again then.
    RateLimited { until: UtcInstant },
}

impl NotGranted {
    /// A short stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            NotGranted::NotActive { .. } => "not_active",
            NotGranted::NoGrant { .. } => "no_grant",
            NotGranted::InFlight { .. } => "in_flight",
            NotGranted::AlreadyGranted => "already_granted",
            NotGranted::RateLimited { .. } => "rate_limited",
        }
    }
}

/// Why a command can never be applied: the message is dead-lettered instead of retried.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Rejection {
    #[error("participant {0} is unknown")]
    UnknownParticipant(ParticipantId),
    #[error("participant {0} has no stored credential")]
    NoCredential(ParticipantId),
    /// An empty slice is fine (it carries the re-read summaries of a job that found no new
    /// device data); one that ends before it starts is a bug in its sender.
    #[error("slice [{start}, {end}) ends before it starts")]
    InvertedSlice { start: UtcInstant, end: UtcInstant },
    #[error("participant {participant}: stored {what} {value:?} is not valid")]
    CorruptRow {
        participant: ParticipantId,
        what: &'static str,
        value: String,
    },
}

/// Why [`Store::apply`] rolled back.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Command number `index` can never apply (dead-letter it); the others may be fine.
    #[error("command #{index} ({kind}) rejected: {rejection}")]
    Rejected {
        index: usize,
        kind: &'static str,
        rejection: Rejection,
    },
    /// The database failed; retrying may help.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// True if the command should be dead-lettered rather than retried.
    pub fn is_dead_letter(&self) -> bool {
        matches!(self, StoreError::Rejected { .. })
    }
}

/// What a command's handler returns: a rejection is per command, a database error is per batch.
enum CommandError {
    Rejected(Rejection),
    Database(sqlx::Error),
}

impl From<sqlx::Error> for CommandError {
    fn from(e: sqlx::Error) -> Self {
        CommandError::Database(e)
    }
}

impl From<Rejection> for CommandError {
    fn from(r: Rejection) -> Self {
        CommandError::Rejected(r)
    }
}

type CommandResult<T> = Result<T, CommandError>;

/// The time and settings one transaction works with: every row it writes carries the same `now`.
struct Tx<'a> {
    conn: Conn<'a>,
    now: UtcInstant,
    job_lease: Duration,
    housekeeping: &'a mut Housekeeping,
}

impl Store {
    /// Opens (creating and migrating if needed) the database for writing.
    pub async fn open(database: &DatabaseArgs, job_lease: Duration) -> anyhow::Result<Store> {
        Ok(Store::new(database.open_for_writing().await?, job_lease))
    }

    /// A store on a database already opened for writing.
    pub fn new(db: Database, job_lease: Duration) -> Store {
        Store {
            db,
            job_lease,
            housekeeping: Housekeeping::default(),
        }
    }

    /// The database this store writes.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Applies `commands` in ONE transaction, in order; on any error the whole transaction
    /// rolls back and nothing of it is visible.
    ///
    /// A transaction that imports participants, rotates a credential, links a participant,
    /// withdraws one or reseals credentials commits durably ([`Durability::Durable`]): credentials (and their deletion)
    /// must survive a power loss (invariant 4), and so must a decision someone was told about,
    /// while data may roll back with its cursor and be fetched again.
    pub async fn apply(&mut self, commands: &[WriterCommand]) -> Result<Applied, StoreError> {
        let durable = commands.iter().any(|c| {
            matches!(
                c,
                WriterCommand::ImportParticipants(_)
                    | WriterCommand::RotateCredential(_)
                    | WriterCommand::LinkParticipant(_)
                    | WriterCommand::Withdraw(_)
                    | WriterCommand::ResealCredentials(_)
            )
        });
        let durability = if durable {
            Durability::Durable
        } else {
            Durability::Data
        };
        // Partitions the slices need are made before the data's transaction (PostgreSQL).
        self.db
            .prepare_intraday(commands.iter().flat_map(intraday_instants))
            .await?;
        let mut conn = self.db.acquire_for_writing().await?;
        let result = self
            .apply_in_transaction(&mut conn, durability, commands)
            .await;
        conn.finish(durability).await;
        result
    }

    async fn apply_in_transaction(
        &mut self,
        conn: &mut WriteConnection,
        durability: Durability,
        commands: &[WriterCommand],
    ) -> Result<Applied, StoreError> {
        let mut tx = conn.begin(durability).await?;
        let now = now_instant();
        let mut t = Tx {
            conn: tx.conn(),
            now,
            job_lease: self.job_lease,
            housekeeping: &mut self.housekeeping,
        };
        let mut applied = Applied {
            effects: Vec::with_capacity(commands.len()),
            rows: BTreeMap::new(),
        };
        for (index, command) in commands.iter().enumerate() {
            match t.apply_one(command, &mut applied).await {
                Ok(effect) => applied.effects.push(effect),
                Err(e) => {
                    // Dropping the transaction would roll back too; saying it makes the order of
                    // events explicit and surfaces a failed rollback.
                    let rollback = tx.rollback().await;
                    return Err(match (e, rollback) {
                        (CommandError::Database(e), _) => StoreError::Database(e),
                        (CommandError::Rejected(_), Err(rollback)) => rollback.into(),
                        (CommandError::Rejected(rejection), Ok(())) => StoreError::Rejected {
                            index,
                            kind: command.kind(),
                            rejection,
                        },
                    });
                }
            }
        }
        tx.commit().await?;
        Ok(applied)
    }

    /// Closes the database cleanly (SQLite checkpoints the WAL).
    pub async fn close(self) {
        self.db.close().await;
    }
}

/// The instants of a command's intraday points (what partitions it needs).
fn intraday_instants(command: &WriterCommand) -> impl Iterator<Item = UtcInstant> + '_ {
    let points = match command {
        WriterCommand::StoreSlice(slice) => Some(slice.heart_rate.iter().chain(&slice.steps)),
        _ => None,
    };
    points.into_iter().flatten().map(|p| p.datetime)
}

impl Tx<'_> {
    /// The participant's state as stored, `None` for a participant the database does not know.
    async fn participant_state(
        &mut self,
        participant: &ParticipantId,
    ) -> Result<Option<String>, sqlx::Error> {
        on_backend!(self.conn.exec(), c => {
            sqlx::query_scalar("SELECT state FROM participants WHERE participant_id = $1")
                .bind(participant.as_str())
                .fetch_optional(c)
                .await
        })
    }

    async fn apply_one(
        &mut self,
        command: &WriterCommand,
        applied: &mut Applied,
    ) -> CommandResult<Effect> {
        let effect = match command {
            WriterCommand::ImportParticipants(batch) => self.import(batch).await,
            WriterCommand::RequestSync(request) => self.request_sync(request).await,
            WriterCommand::StoreSlice(slice) => self.store_slice(slice, applied).await,
            WriterCommand::RotateCredential(rotation) => self.rotate_credential(rotation).await,
            WriterCommand::FinishJob(outcome) => self.finish_job(outcome).await,
            WriterCommand::RecordInvitation(invitation) => self.record_invitation(invitation).await,
            WriterCommand::LinkParticipant(grant) => self.link_participant(grant).await,
            WriterCommand::RecordConsentProblem(problem) => {
                self.record_consent_problem(problem).await
            }
            WriterCommand::ProviderNotified(notification) => {
                self.provider_notified(notification).await
            }
            WriterCommand::DeleteProviderData(deletion) => {
                self.delete_provider_data(deletion).await
            }
            WriterCommand::ConsentLost(loss) => self.consent_lost(loss).await,
            WriterCommand::Withdraw(withdrawal) => self.withdraw(withdrawal).await,
            WriterCommand::RecordOperatorAction(action) => {
                self.record_operator_action(action).await
            }
            WriterCommand::ResealCredentials(batch) => self.reseal_credentials(batch).await,
        }?;
        if let Some((participant, days)) = coverage::changed_days(command, &effect) {
            self.refresh_coverage(participant, days, applied).await?;
        }
        Ok(effect)
    }
}

/// The text a job id is stored as (hyphenated lower case, as `Uuid` prints).
fn job_text(id: &Uuid) -> String {
    id.hyphenated().to_string()
}

/// The UTC date of an instant, for reasons people read ("declined consent on 2026-10-02").
fn date_of(at: UtcInstant) -> String {
    at.get().date_naive().to_string()
}

/// Caps free text from outside (provider error bodies, reasons) before it goes in a row.
fn capped(text: &str) -> &str {
    const MAX: usize = 1024;
    if text.len() <= MAX {
        return text;
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
