//! `fitlink participants import FILE.csv`: newly consented participants, with their refresh tokens.
//!
//! The file is checked whole before anything leaves this process: every bad row is reported with
//! its line, and one bad row means nothing is imported, so a coordinator fixes the file and runs
//! the same command again instead of working out which half went in. A good file becomes ONE
//! [`WriterCommand::ImportParticipants`] message, which the writer applies in one transaction.
//!
//! Refresh tokens are sealed here, before they are put in a message, and no error message ever
//! repeats a cell's value: a coordinator's misaligned file can put a token in any column.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fitlink_shared::broker;
use fitlink_shared::config::{BrokerArgs, DatabaseArgs};
use fitlink_shared::domain::ParticipantId;
use fitlink_shared::fetch;
use fitlink_shared::messages::{ImportBatch, SyncTrigger};
use fitlink_shared::provider::google::GoogleHealthClient;
use fitlink_shared::secret::TokenKeys;
use fitlink_shared::store::{Database, DbError};
use serde::Serialize;
use uuid::Uuid;

use crate::identity;
use crate::outbox::{Outbox, RequestShape};
use crate::progress;

mod roster;

pub use roster::{COLUMNS, MAX_IMPORT_BYTES, RowProblem, parse_import, read_roster};
use roster::{PROGRESS_MIN_ROWS, parse_with_progress};

/// How often `--wait` looks for the writer's audit row of the import.
const WAIT_POLL: Duration = Duration::from_millis(250);

/// How often a long wait for a writer says it is still waiting.
const STILL_WAITING_EVERY: Duration = Duration::from_secs(15);

/// Whether `fitlink participants import` waits for the writers to apply the import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImportWait {
    /// Return once the import is durably queued (`--no-wait`).
    Queued,
    /// Return once every writer applied its part; with a timeout, fail with
    /// [`ImportError::NotAppliedYet`] after it (the import stays queued).
    Applied { timeout: Option<Duration> },
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_IMPORT_BYTES`]; nothing was published.
    #[error(
        "{} is larger than {} MiB, the most one import takes (MAX_IMPORT_BYTES); nothing was imported: split it into several files and import each",
        path.display(),
        MAX_IMPORT_BYTES / (1024 * 1024)
    )]
    TooLarge { path: PathBuf },
    /// The file has problems; nothing was published.
    #[error("{}", describe_problems(.0))]
    Invalid(Vec<RowProblem>),
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("cannot read participants from the database: {0}")]
    Query(#[from] sqlx::Error),
    /// Nothing was imported: the broker was unreachable or did not confirm the message.
    #[error("cannot queue the import on the broker; nothing was imported: {0:#}")]
    Broker(anyhow::Error),
    /// Rows that move a participant from Fitbit to Google Health whose Google account is not
    /// (or could not be shown to be) the one linked through Fitbit; nothing was published.
    #[error("nothing was imported:\n{}", .0.join("\n"))]
    WrongAccount(Vec<String>),
    /// The import is durably queued, but no writer applied it within `--timeout`.
    #[error(
        "import {import_id} ({participants} participant(s)) is queued, but no writer applied it within the {}s of --timeout; nothing failed, and it will be applied when a writer runs (check with `fitlink status`)",
        waited.as_secs()
    )]
    NotAppliedYet {
        import_id: Uuid,
        participants: usize,
        waited: Duration,
    },
}

fn describe_problems(problems: &[RowProblem]) -> String {
    let mut text = format!(
        "the file has {} problem(s); nothing was imported:",
        problems.len()
    );
    for problem in problems {
        text.push_str("\n  ");
        text.push_str(&problem.to_string());
    }
    text
}

/// What `fitlink participants import` did.
#[derive(Clone, Debug, Serialize)]
pub struct ImportReport {
    /// The id of the one message (and of the writer's `imports` audit row).
    pub import_id: Uuid,
    /// The file name, as recorded in the audit row.
    pub source: String,
    /// Participants in the file (all of them: a file is imported whole or not at all).
    pub participants: usize,
    /// Participants the database did not know before this import.
    pub new: usize,
    /// Participants the database already knew (the writer updates their provider and token).
    pub already_known: usize,
    /// False if there was no database yet to compare with (then every participant counts as new).
    pub compared_with_database: bool,
    /// True when `--wait` saw the writer apply the import; false when it was only queued.
    pub applied: bool,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = if self.applied {
            "imported"
        } else {
            "queued for the writer"
        };
        write!(
            f,
            "{status}: {} participant(s) from {} ({} new, {} already known{}), import {}",
            self.participants,
            self.source,
            self.new,
            self.already_known,
            if self.compared_with_database {
                ""
            } else {
                "; no database yet to compare with"
            },
            self.import_id
        )
    }
}

/// Checks `path` whole, seals its tokens, and publishes it as one import for the writer.
///
/// With [`ImportWait::Applied`], returns once the writers have applied it, or fails with
/// [`ImportError::NotAppliedYet`] after its timeout (the import stays queued and is applied
/// when a writer runs); it says at once when no writer is consuming, and every
/// [`STILL_WAITING_EVERY`] that it still waits.
pub async fn import_participants(
    broker: &BrokerArgs,
    database: &DatabaseArgs,
    key: &TokenKeys,
    path: &Path,
    wait: ImportWait,
    google: Option<&GoogleHealthClient>,
) -> Result<ImportReport, ImportError> {
    let text = read_roster(path).await?;
    let source = path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    let rows = text.lines().count().saturating_sub(1) as u64;
    let bar = progress::bar(rows, "checking", PROGRESS_MIN_ROWS);
    let key = key.clone();
    // Sealing thousands of tokens is CPU work: keep it off the async workers.
    let parse_key = key.clone();
    let mut participants =
        match tokio::task::spawn_blocking(move || parse_with_progress(&text, &parse_key, &bar))
            .await
        {
            Ok(result) => result?,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        };
    // Participants moving from Fitbit to Google Health: the right Google account?
    match database.open_for_reading("import").await {
        Ok(db) => {
            let problems = identity::check_migrations(&db, &mut participants, google, &key).await?;
            db.close().await;
            if !problems.is_empty() {
                return Err(ImportError::WrongAccount(problems));
            }
        }
        Err(DbError::NotInitialised(_)) => {}
        Err(error) => return Err(error.into()),
    }

    let known = known_participants(database).await?;
    let already_known = known.as_ref().map_or(0, |known| {
        participants
            .iter()
            .filter(|p| known.contains(p.participant_id.as_str()))
            .count()
    });
    let report = ImportReport {
        import_id: Uuid::now_v7(),
        source,
        participants: participants.len(),
        new: participants.len() - already_known,
        already_known,
        compared_with_database: known.is_some(),
        applied: false,
    };
    let imported: Vec<ParticipantId> = participants
        .iter()
        .map(|p| p.participant_id.clone())
        .collect();
    let batch = ImportBatch {
        import_id: report.import_id,
        source: report.source.clone(),
        participants,
    };
    let outbox = Outbox::open(broker, "import")
        .await
        .map_err(ImportError::Broker)?;
    // One part per results partition (each writer records its own); all are waited for.
    let parts = match outbox.send_import(batch).await {
        Ok(parts) => parts,
        Err(error) => {
            outbox.close().await;
            return Err(ImportError::Broker(error.into()));
        }
    };
    tracing::info!(
        import_id = %report.import_id,
        source = %report.source,
        participants = report.participants,
        "import queued for the writer"
    );

    let ImportWait::Applied { timeout } = wait else {
        outbox.close().await;
        return Ok(report);
    };
    say_who_applies(&outbox, report.import_id).await;
    if wait_until_applied(database, &parts, timeout, report.import_id).await? {
        // Applied: sync everyone in the file now rather than at the next schedule round (a
        // participant back after a new consent synced recently, so the schedule would wait).
        // The writer grants none that already has a job in flight.
        for participant in &imported {
            if let Err(e) = outbox
                .request_sync(participant, SyncTrigger::Import, RequestShape::default())
                .await
            {
                tracing::warn!(participant_id = %participant, error = %e, "imported, but could not ask for a first sync; the schedule will");
            }
        }
        outbox.close().await;
        Ok(ImportReport {
            applied: true,
            ..report
        })
    } else {
        outbox.close().await;
        Err(ImportError::NotAppliedYet {
            import_id: report.import_id,
            participants: report.participants,
            waited: timeout.unwrap_or_default(),
        })
    }
}

/// The ids the database knows, or `None` if there is no database yet (the writer has never run;
/// the import waits on the queue for it).
async fn known_participants(
    database: &DatabaseArgs,
) -> Result<Option<HashSet<String>>, ImportError> {
    let db = match database.open_for_reading("import").await {
        Ok(db) => db,
        Err(DbError::NotInitialised(_)) => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let ids: Vec<(String,)> = fetch!(
        db.exec(),
        sqlx::query_as("SELECT participant_id FROM participants"),
        all
    )?;
    db.close().await;
    Ok(Some(ids.into_iter().map(|(id,)| id).collect()))
}

/// Says at once whether a writer is there to apply the import: an operator who started the
/// import before the writer learns why it waits, and that nothing is wrong.
async fn say_who_applies(outbox: &Outbox, import_id: Uuid) {
    let mut idle = Vec::new();
    for queue in &outbox.topology.results {
        if let Ok(Some(0)) = broker::queue_consumers_on_fresh_channel(&outbox.conn, queue).await {
            idle.push(queue.as_str());
        }
    }
    if idle.is_empty() {
        tracing::info!(%import_id, "import queued; waiting for the writer to apply it");
    } else {
        tracing::warn!(
            %import_id,
            queues = idle.join(", "),
            "import queued, but no writer is running for these results queues: waiting for one to start and apply it (Ctrl-C stops waiting; the import stays queued)"
        );
    }
}

/// Polls (read-only) for the writers' `imports` rows of `parts` until all appear (true) or
/// `timeout` passes (false), saying now and then that it still waits.
async fn wait_until_applied(
    database: &DatabaseArgs,
    parts: &[Uuid],
    timeout: Option<Duration>,
    import_id: Uuid,
) -> Result<bool, ImportError> {
    let started = tokio::time::Instant::now();
    let deadline = timeout.map(|t| started + t);
    let mut next_word = started + STILL_WAITING_EVERY;
    let mut db: Option<Database> = None;
    let applied = loop {
        if db.is_none() {
            match database.open_for_reading("import").await {
                Ok(opened) => db = Some(opened),
                Err(DbError::NotInitialised(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        if let Some(db) = &db {
            let mut applied = 0;
            for import_id in parts {
                let row: Option<(i32,)> = fetch!(
                    db.exec(),
                    sqlx::query_as("SELECT 1 FROM imports WHERE import_id = $1")
                        .bind(import_id.to_string()),
                    optional
                )?;
                applied += usize::from(row.is_some());
            }
            if applied == parts.len() {
                break true;
            }
        }
        let now = tokio::time::Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break false;
        }
        if now >= next_word {
            tracing::info!(%import_id, waited_secs = (now - started).as_secs(), "still waiting for a writer to apply the import");
            next_word = now + STILL_WAITING_EVERY;
        }
        let pause = deadline.map_or(WAIT_POLL, |d| WAIT_POLL.min(d - now));
        tokio::time::sleep(pause).await;
    };
    if let Some(db) = db {
        db.close().await;
    }
    Ok(applied)
}
