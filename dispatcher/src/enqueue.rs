//! `fitlink enqueue PARTICIPANT... [--from INSTANT]`: an operator asks for a sync now.
//!
//! All or nothing: every id is checked against the database before anything is published, so a
//! typo in one id of fifty does not leave the operator guessing which forty-nine went out.

use std::fmt;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use fitlink_shared::config::{BrokerArgs, DatabaseArgs};
use fitlink_shared::domain::{ParticipantId, UtcInstant};
use fitlink_shared::fetch;
use fitlink_shared::messages::SyncTrigger;
use serde::Serialize;
use uuid::Uuid;

use crate::outbox::{Outbox, RequestShape};

/// What `fitlink enqueue` did.
#[derive(Clone, Debug, Serialize)]
pub struct EnqueueReport {
    /// The re-fetch start the operator asked for (`--from`), if any.
    pub from: Option<UtcInstant>,
    /// One requested job per participant, in the order given (duplicates asked once).
    pub jobs: Vec<EnqueuedJob>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EnqueuedJob {
    pub participant_id: ParticipantId,
    /// The job id the writer will grant under (it appears in the job ledger and in logs).
    pub job_id: Uuid,
}

impl fmt::Display for EnqueueReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let from = match self.from {
            Some(from) => format!(" from {from}"),
            None => String::new(),
        };
        write!(
            f,
            "requested {} sync job(s){from}; the writer grants each unless one is already in flight:",
            self.jobs.len()
        )?;
        for job in &self.jobs {
            write!(f, "\n  {}  job {}", job.participant_id, job.job_id)?;
        }
        Ok(())
    }
}

/// Ids that are not participants of this program (malformed or not in the database). Nothing was
/// published.
#[derive(Clone, Debug, thiserror::Error)]
#[error("unknown participant(s): {}; nothing was enqueued", .0.join(", "))]
pub struct UnknownParticipants(pub Vec<String>);

/// Asks the writer to sync each participant now (`force`: even if its state says otherwise),
/// re-fetching from `from` if given. Every id must be a known participant, or nothing is
/// published and the error ([`UnknownParticipants`]) names every unknown one.
pub async fn enqueue(
    broker: &BrokerArgs,
    database: &DatabaseArgs,
    participants: &[String],
    from: Option<DateTime<Utc>>,
) -> anyhow::Result<EnqueueReport> {
    anyhow::ensure!(
        !participants.is_empty(),
        "name at least one participant to enqueue"
    );
    let db = database.open_for_reading("enqueue").await?;
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    for raw in participants {
        let Ok(id) = ParticipantId::new(raw.trim()) else {
            unknown.push(raw.clone());
            continue;
        };
        let exists: Option<(i32,)> = fetch!(
            db.exec(),
            sqlx::query_as("SELECT 1 FROM participants WHERE participant_id = $1")
                .bind(id.as_str().to_owned()),
            optional
        )
        .context("cannot read participants")?;
        if exists.is_none() {
            unknown.push(raw.clone());
        } else if !known.contains(&id) {
            known.push(id);
        }
    }
    db.close().await;
    if !unknown.is_empty() {
        unknown.dedup();
        return Err(UnknownParticipants(unknown).into());
    }

    let from = from.map(UtcInstant::new);
    let outbox = Outbox::open(broker, "enqueue").await?;
    let shape = RequestShape {
        force: true,
        from,
        replaces: None,
    };
    let mut jobs = Vec::with_capacity(known.len());
    for participant_id in known {
        let job_id = outbox
            .request_sync(&participant_id, SyncTrigger::Manual, shape)
            .await
            .with_context(|| {
                format!(
                    "cannot publish the sync request for {participant_id} (requested before it: {})",
                    jobs.len()
                )
            })?;
        tracing::info!(%participant_id, %job_id, "requested a manual sync");
        jobs.push(EnqueuedJob {
            participant_id,
            job_id,
        });
    }
    outbox.close().await;
    Ok(EnqueueReport { from, jobs })
}
