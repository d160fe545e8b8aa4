//! `fitlink dlq list` and `fitlink dlq replay`: the jobs that exhausted their retries, and the
//! results the writer could not apply.
//!
//! Both read the dead-letter queues with `basic_get` and no auto-ack: a message is removed only
//! by an explicit ack after its replacement is durably published, and everything else goes back
//! untouched (requeued) when we are done or if we die half way. Listing therefore never loses a
//! dead letter, and a replay interrupted at any point at worst replays a job twice, which the
//! writer's one-job-in-flight rule absorbs.
//!
//! A replay does not republish the old job: the writer rebuilds it from the participant's
//! *current* cursor and token (the dead letter's are stale: data may have been stored since, and
//! the legacy provider rotates refresh tokens on every use).

use std::collections::HashSet;
use std::fmt;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use fitlink_shared::broker::{header_int, header_text, queue_depth};
use fitlink_shared::config::{BrokerArgs, DatabaseArgs};
use fitlink_shared::domain::{ParticipantId, UtcInstant};
use fitlink_shared::fetch;
use fitlink_shared::messages::{
    ATTEMPT_HEADER, JOB_HEADER, PARTICIPANT_HEADER, REASON_HEADER, SyncJob, SyncTrigger,
    WriterCommand,
};
use fitlink_shared::store::Database;
use indicatif::ProgressBar;
use lapin::Channel;
use lapin::message::{BasicGetMessage, Delivery};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde::Serialize;
use uuid::Uuid;

use crate::outbox::{Outbox, RequestShape};
use crate::progress;

mod discard;
pub use discard::{DiscardReport, dlq_discard};

/// Dead-letter queues smaller than this are read too fast for a progress bar to matter.
const PROGRESS_MIN: u64 = 200;

/// One dead letter, described from its headers (and, where a header is missing, its body). It
/// carries no body: bodies hold sealed tokens only, but an operator's terminal is no place for
/// them either.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeadLetter {
    /// The queue it sits in (`<namespace>.jobs.dead` or `<namespace>.results.dead`).
    pub queue: String,
    /// What it is: `sync_job`, or the writer command's kind for a dead result.
    pub kind: Option<String>,
    pub job_id: Option<Uuid>,
    pub participant_id: Option<String>,
    /// Our `fitlink-reason` header; else RabbitMQ's dead-letter reason (`delivery_limit`,
    /// `rejected`, `expired`); else `unknown`.
    pub reason: String,
    /// Our attempt counter, if the message carries one.
    pub attempts: Option<i64>,
    /// When it was dead-lettered, if known (RabbitMQ's `x-death` time, else the message
    /// timestamp).
    pub dead_lettered_at: Option<UtcInstant>,
}

/// Which dead jobs to replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplaySelection {
    All,
    Jobs(Vec<Uuid>),
}

/// What `fitlink dlq replay` did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReplayReport {
    /// One new sync request per participant; its dead letters were removed.
    pub replayed: Vec<Replayed>,
    /// Selected job ids that are not in the jobs dead-letter queue.
    pub not_found: Vec<Uuid>,
    /// Selected dead letters left in the queue, with why.
    pub skipped: Vec<SkippedDeadLetter>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Replayed {
    pub participant_id: ParticipantId,
    /// The new job's id.
    pub job_id: Uuid,
    /// The dead job the request names in `replaces` (so the writer may take over its claim).
    pub replaces: Uuid,
    /// Other selected dead jobs of the same participant, removed as well: one sync from the
    /// current cursor covers them all.
    pub also_removed: Vec<Uuid>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SkippedDeadLetter {
    pub job_id: Option<Uuid>,
    pub participant_id: Option<String>,
    pub why: String,
}

impl fmt::Display for ReplayReport {
    /// Lines without a trailing newline (print with `println!`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "replayed {} participant(s)", self.replayed.len())?;
        for r in &self.replayed {
            write!(
                f,
                "\n  {}  new job {} (replaces {}",
                r.participant_id, r.job_id, r.replaces
            )?;
            for other in &r.also_removed {
                write!(f, ", {other}")?;
            }
            write!(f, ")")?;
        }
        for job in &self.not_found {
            write!(f, "\nnot found in the dead-letter queue: job {job}")?;
        }
        for s in &self.skipped {
            write!(
                f,
                "\nleft in the dead-letter queue: job {} participant {}: {}",
                s.job_id.map_or_else(|| "?".into(), |j| j.to_string()),
                s.participant_id.as_deref().unwrap_or("?"),
                s.why
            )?;
        }
        Ok(())
    }
}

/// A table of dead letters for a terminal.
pub fn render_dead_letters(letters: &[DeadLetter]) -> String {
    if letters.is_empty() {
        return "no dead letters\n".into();
    }
    let rows: Vec<[String; 7]> = letters
        .iter()
        .map(|d| {
            [
                d.queue.clone(),
                d.kind.clone().unwrap_or_else(|| "-".into()),
                d.job_id.map_or_else(|| "-".into(), |j| j.to_string()),
                d.participant_id.clone().unwrap_or_else(|| "-".into()),
                d.attempts.map_or_else(|| "-".into(), |a| a.to_string()),
                d.dead_lettered_at
                    .map_or_else(|| "-".into(), |t| t.to_text()),
                d.reason.clone(),
            ]
        })
        .collect();
    let header = [
        "QUEUE",
        "KIND",
        "JOB",
        "PARTICIPANT",
        "ATTEMPTS",
        "DEAD-LETTERED AT",
        "REASON",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let last = cells.len() - 1;
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.push('\n');
    };
    line(&header);
    for row in &rows {
        line(&row.each_ref().map(String::as_str));
    }
    out
}

/// Every dead letter of both dead-letter queues, oldest first per queue; all stay in place.
pub async fn dlq_list(broker: &BrokerArgs) -> anyhow::Result<Vec<DeadLetter>> {
    let outbox = Outbox::open(broker, "dlq-list").await?;
    let mut letters = Vec::new();
    let queues = [
        outbox.topology.jobs_dead.clone(),
        outbox.topology.results_dead.clone(),
    ];
    for queue in &queues {
        let channel = outbox
            .conn
            .create_channel()
            .await
            .context("cannot open a broker channel")?;
        let messages = take_all(&channel, queue).await?;
        letters.extend(messages.iter().map(|m| describe(queue, &m.delivery)));
        // Closing the channel hands every unacked message back to the queue as it was.
        let _ = channel.close(200, "OK".into()).await;
    }
    outbox.close().await;
    Ok(letters)
}

/// How many messages wait in the jobs and the results dead-letter queues.
pub async fn dlq_depths(broker: &BrokerArgs) -> anyhow::Result<(u32, u32)> {
    let outbox = Outbox::open(broker, "dlq-depths").await?;
    let channel = outbox
        .conn
        .create_channel()
        .await
        .context("cannot open a broker channel")?;
    let jobs = queue_depth(&channel, &outbox.topology.jobs_dead).await;
    let results = queue_depth(&channel, &outbox.topology.results_dead).await;
    let _ = channel.close(200, "OK".into()).await;
    outbox.close().await;
    Ok((
        jobs.context("cannot read the jobs dead-letter queue")?,
        results.context("cannot read the results dead-letter queue")?,
    ))
}

/// Replays the selected dead jobs: for each participant, one new sync request (`force`, naming a
/// dead job in `replaces`), confirmed before that participant's dead letters are acked. Jobs of
/// participants the database does not know stay in the queue and are reported.
pub async fn dlq_replay(
    broker: &BrokerArgs,
    database: &DatabaseArgs,
    selection: ReplaySelection,
) -> anyhow::Result<ReplayReport> {
    dlq_replay_watched(broker, database, selection, None).await
}

/// [`dlq_replay`], counting the participants replayed on `watch` (its length is set to how many
/// there are) for someone watching elsewhere: the console's progress page.
pub async fn dlq_replay_watched(
    broker: &BrokerArgs,
    database: &DatabaseArgs,
    selection: ReplaySelection,
    watch: Option<&ProgressBar>,
) -> anyhow::Result<ReplayReport> {
    let db = database.open_for_reading("dlq-replay").await?;
    let (outbox, channel, queue, messages) = take_dead_jobs(broker, "dlq-replay").await?;

    let mut report = ReplayReport::default();
    let selected: Option<HashSet<Uuid>> = match &selection {
        ReplaySelection::All => None,
        ReplaySelection::Jobs(ids) => Some(ids.iter().copied().collect()),
    };
    // Selected dead letters by participant, in queue order (oldest first).
    let mut by_participant: Vec<Group<'_>> = Vec::new();
    let mut seen_jobs = HashSet::new();
    for message in &messages {
        let letter = describe(&queue, &message.delivery);
        let Some(job_id) = letter.job_id else {
            if selected.is_none() {
                report.skipped.push(SkippedDeadLetter {
                    job_id: None,
                    participant_id: letter.participant_id,
                    why: "it names no job id (no fitlink-job header, body not a sync job)".into(),
                });
            }
            continue;
        };
        if selected.as_ref().is_some_and(|s| !s.contains(&job_id)) {
            continue;
        }
        seen_jobs.insert(job_id);
        let participant = letter
            .participant_id
            .as_deref()
            .and_then(|p| ParticipantId::new(p).ok());
        let Some(participant) = participant else {
            report.skipped.push(SkippedDeadLetter {
                job_id: Some(job_id),
                participant_id: letter.participant_id,
                why: "it names no valid participant".into(),
            });
            continue;
        };
        match by_participant.iter_mut().find(|(p, _)| *p == participant) {
            Some((_, jobs)) => jobs.push((job_id, message)),
            None => by_participant.push((participant, vec![(job_id, message)])),
        }
    }
    if let ReplaySelection::Jobs(ids) = &selection {
        let mut reported = HashSet::new();
        report.not_found = ids
            .iter()
            .filter(|id| !seen_jobs.contains(*id) && reported.insert(**id))
            .copied()
            .collect();
    }

    let bar = match watch {
        Some(watch) => {
            watch.set_length(by_participant.len() as u64);
            watch.clone()
        }
        None => progress::bar(by_participant.len() as u64, "replaying", PROGRESS_MIN),
    };
    let mut acked: HashSet<u64> = HashSet::new();
    let outcome = replay_groups(&outbox, &db, by_participant, &bar, &mut report, &mut acked).await;
    bar.finish_and_clear();

    // Everything not replayed goes back as it was, whatever happened above.
    for message in messages
        .iter()
        .filter(|m| !acked.contains(&m.delivery.delivery_tag))
    {
        let requeue = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        if message.delivery.acker.nack(requeue).await.is_err() {
            break; // the channel is gone, which requeues them all anyway
        }
    }
    let _ = channel.close(200, "OK".into()).await;
    outbox.close().await;
    db.close().await;
    let replayed = report.replayed.len();
    outcome.map(|()| report).map_err(|error| {
        error.context(format!(
            "replay stopped after {replayed} participant(s); the dead letters not replayed stay in the queue"
        ))
    })
}

/// Dead letters of one participant, in queue order.
type Group<'a> = (ParticipantId, Vec<(Uuid, &'a BasicGetMessage)>);

/// For each participant: one confirmed sync request, then acks of its dead letters (recorded in
/// `acked`). Participants the database does not know are skipped (reported, left in place).
async fn replay_groups(
    outbox: &Outbox,
    db: &Database,
    groups: Vec<Group<'_>>,
    bar: &ProgressBar,
    report: &mut ReplayReport,
    acked: &mut HashSet<u64>,
) -> anyhow::Result<()> {
    for (participant, jobs) in groups {
        bar.inc(1);
        let row: Option<(Option<String>,)> = fetch!(
            db.exec(),
            sqlx::query_as("SELECT in_flight_job_id FROM participants WHERE participant_id = $1")
                .bind(participant.as_str().to_owned()),
            optional
        )
        .context("cannot read participants")?;
        let Some((in_flight,)) = row else {
            report
                .skipped
                .extend(jobs.iter().map(|(job_id, _)| SkippedDeadLetter {
                    job_id: Some(*job_id),
                    participant_id: Some(participant.to_string()),
                    why: "the participant is not in the database".into(),
                }));
            continue;
        };
        // Name the job that holds the participant's claim if it is among these, so the writer
        // can take the claim over; else the newest.
        let in_flight = in_flight.and_then(|j| Uuid::parse_str(&j).ok());
        let replaces = jobs
            .iter()
            .map(|(job_id, _)| *job_id)
            .find(|job_id| Some(*job_id) == in_flight)
            .unwrap_or_else(|| jobs.last().expect("a group has a job").0);
        let shape = RequestShape {
            force: true,
            from: None,
            replaces: Some(replaces),
        };
        let job_id = outbox
            .request_sync(&participant, SyncTrigger::Replay, shape)
            .await
            .with_context(|| format!("cannot publish the replay of participant {participant}"))?;
        for (_, message) in &jobs {
            message
                .delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .with_context(|| format!("replayed {participant} as job {job_id}, but cannot remove its dead letter (it will show up again; replaying it twice is harmless)"))?;
            acked.insert(message.delivery.delivery_tag);
        }
        tracing::info!(%participant, %job_id, %replaces, "replayed a dead-lettered job");
        report.replayed.push(Replayed {
            participant_id: participant,
            job_id,
            replaces,
            also_removed: jobs
                .iter()
                .map(|(j, _)| *j)
                .filter(|j| *j != replaces)
                .collect(),
        });
    }
    Ok(())
}

/// A broker session with every message of the jobs dead-letter queue taken (unacked) on its
/// channel, to settle one by one: what a replay and a discard start from.
async fn take_dead_jobs(
    broker: &BrokerArgs,
    purpose: &str,
) -> anyhow::Result<(Outbox, Channel, String, Vec<BasicGetMessage>)> {
    let outbox = Outbox::open(broker, purpose).await?;
    let queue = outbox.topology.jobs_dead.clone();
    let channel = outbox
        .conn
        .create_channel()
        .await
        .context("cannot open a broker channel")?;
    let messages = take_all(&channel, &queue).await?;
    Ok((outbox, channel, queue, messages))
}

/// Takes (without acking) every message that was in `queue` when we started. Later arrivals are
/// left for next time, so a busy queue cannot keep us reading forever.
async fn take_all(channel: &Channel, queue: &str) -> anyhow::Result<Vec<BasicGetMessage>> {
    let depth = queue_depth(channel, queue)
        .await
        .with_context(|| format!("queue {queue} does not exist"))?;
    let bar = progress::bar(u64::from(depth), "reading", PROGRESS_MIN);
    let mut messages = Vec::with_capacity(depth as usize);
    while messages.len() < depth as usize {
        let got = channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await
            .with_context(|| format!("cannot read {queue}"))?;
        let Some(message) = got else { break };
        messages.push(message);
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(messages)
}

/// Describes a dead letter from its headers, falling back to its body for ids.
fn describe(queue: &str, delivery: &Delivery) -> DeadLetter {
    let headers = delivery.properties.headers().as_ref();
    let from_body = BodyFacts::read(&delivery.data);
    let death = first_death(headers);
    let reason = header_text(headers, REASON_HEADER)
        .or_else(|| death.and_then(|d| header_text(Some(d), "reason")))
        .or_else(|| header_text(headers, "x-first-death-reason"))
        .unwrap_or_else(|| "unknown".into());
    let dead_lettered_at = death
        .and_then(|d| match d.inner().get("time") {
            Some(AMQPValue::Timestamp(secs)) => i64::try_from(*secs).ok(),
            _ => None,
        })
        .or_else(|| {
            delivery
                .properties
                .timestamp()
                .and_then(|secs| i64::try_from(secs).ok())
        })
        .and_then(|secs| DateTime::<Utc>::from_timestamp(secs, 0))
        .map(UtcInstant::new);
    DeadLetter {
        queue: queue.to_owned(),
        kind: from_body.kind,
        job_id: header_text(headers, JOB_HEADER)
            .and_then(|j| Uuid::parse_str(&j).ok())
            .or(from_body.job_id),
        participant_id: header_text(headers, PARTICIPANT_HEADER).or(from_body.participant_id),
        reason,
        attempts: header_int(headers, ATTEMPT_HEADER)
            .or_else(|| header_text(headers, ATTEMPT_HEADER).and_then(|a| a.parse().ok())),
        dead_lettered_at,
    }
}

/// The first (most recent) entry of RabbitMQ's `x-death` header.
fn first_death(headers: Option<&FieldTable>) -> Option<&FieldTable> {
    match headers?.inner().get("x-death")? {
        AMQPValue::FieldArray(deaths) => match deaths.as_slice().first()? {
            AMQPValue::FieldTable(death) => Some(death),
            _ => None,
        },
        _ => None,
    }
}

/// What a body says about itself: a sync job (jobs.dead) or a writer command (results.dead).
#[derive(Default)]
struct BodyFacts {
    kind: Option<String>,
    job_id: Option<Uuid>,
    participant_id: Option<String>,
}

impl BodyFacts {
    fn read(body: &[u8]) -> Self {
        if let Ok(job) = serde_json::from_slice::<SyncJob>(body) {
            return Self {
                kind: Some("sync_job".into()),
                job_id: Some(job.job_id),
                participant_id: Some(job.participant_id.to_string()),
            };
        }
        if let Ok(command) = serde_json::from_slice::<WriterCommand>(body) {
            let job_id = match &command {
                WriterCommand::ImportParticipants(_) => None,
                WriterCommand::RequestSync(r) => Some(r.job_id),
                WriterCommand::StoreSlice(s) => Some(s.job_id),
                WriterCommand::RotateCredential(c) => Some(c.job_id),
                WriterCommand::FinishJob(o) => Some(o.job_id),
                WriterCommand::LinkParticipant(g) => Some(g.request_id),
                WriterCommand::Withdraw(w) => Some(w.request_id),
                WriterCommand::ResealCredentials(r) => Some(r.request_id),
                WriterCommand::RecordInvitation(_)
                | WriterCommand::RecordConsentProblem(_)
                | WriterCommand::ProviderNotified(_)
                | WriterCommand::DeleteProviderData(_)
                | WriterCommand::ConsentLost(_)
                | WriterCommand::RecordOperatorAction(_) => None,
            };
            return Self {
                kind: Some(command.kind().into()),
                job_id,
                participant_id: command.participant().map(ToString::to_string),
            };
        }
        Self::default()
    }
}

/// Parses JOB_IDs given on the command line, naming every one that is not a UUID.
pub fn parse_job_ids(ids: &[String]) -> anyhow::Result<Vec<Uuid>> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for id in ids {
        match Uuid::parse_str(id.trim()) {
            Ok(id) => good.push(id),
            Err(_) => bad.push(id.as_str()),
        }
    }
    anyhow::ensure!(bad.is_empty(), "not job ids (UUIDs): {}", bad.join(", "));
    Ok(good)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fitlink_shared::broker::long_string;
    use lapin::BasicProperties;
    use lapin::types::FieldArray;

    fn delivery(headers: FieldTable, body: &[u8]) -> Delivery {
        let mut d = Delivery::mock(1, "".into(), "q".into(), false, body.to_vec());
        d.properties = BasicProperties::default().with_headers(headers);
        d
    }

    #[test]
    fn our_headers_win_and_rabbitmq_x_death_fills_in() {
        let mut ours = FieldTable::default();
        ours.insert(
            REASON_HEADER.into(),
            long_string("token refresh failed 5 times"),
        );
        ours.insert(PARTICIPANT_HEADER.into(), long_string("p1"));
        let job = Uuid::now_v7();
        ours.insert(JOB_HEADER.into(), long_string(&job.to_string()));
        ours.insert(ATTEMPT_HEADER.into(), AMQPValue::LongInt(6));
        let d = describe("t.jobs.dead", &delivery(ours, b"not json"));
        assert_eq!(d.reason, "token refresh failed 5 times");
        assert_eq!(d.job_id, Some(job));
        assert_eq!(d.participant_id.as_deref(), Some("p1"));
        assert_eq!(d.attempts, Some(6));

        let mut death = FieldTable::default();
        death.insert("reason".into(), long_string("delivery_limit"));
        death.insert("time".into(), AMQPValue::Timestamp(1_790_000_000));
        let mut deaths = FieldArray::default();
        deaths.push(AMQPValue::FieldTable(death));
        let mut theirs = FieldTable::default();
        theirs.insert("x-death".into(), AMQPValue::FieldArray(deaths));
        let d = describe("t.jobs.dead", &delivery(theirs, b"{}"));
        assert_eq!(d.reason, "delivery_limit");
        assert_eq!(
            d.dead_lettered_at.map(UtcInstant::to_text).as_deref(),
            Some("2026-09-21T14:13:20Z")
        );
        assert_eq!(d.job_id, None);

        let d = describe("t.results.dead", &delivery(FieldTable::default(), b"{"));
        assert_eq!(d.reason, "unknown");
    }

    #[test]
    fn job_ids_are_checked_together() {
        let id = Uuid::now_v7().to_string();
        assert_eq!(parse_job_ids(std::slice::from_ref(&id)).unwrap().len(), 1);
        let err = parse_job_ids(&[id, "nope".into(), "x".into()]).unwrap_err();
        assert!(err.to_string().contains("nope, x"), "{err}");
    }
}
