//! The writer's loop: take a batch of results, apply it in one transaction, publish the jobs it
//! granted, then settle every delivery.
//!
//! Settling happens only after the commit (and, for grants, after the broker confirmed the job),
//! so a crash at any point leaves the messages in the queue to be applied again, which every
//! command tolerates. One bad message never stops the writer: undecodable ones and commands that
//! can never apply are dead-lettered (`reject` without requeue, the results queue's dead-letter
//! exchange takes them to `results.dead`); a command that fails unexpectedly is requeued, and
//! the queue's delivery limit dead-letters it if it keeps failing.
//!
//! This module knows nothing of SQL.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use fitlink_shared::broker::{self, Publisher, Topology, header_text, long_string};
use fitlink_shared::faults::FaultPoint;
use fitlink_shared::messages::{
    ATTEMPT_HEADER, JOB_HEADER, Outcome, PARTICIPANT_HEADER, SyncJob, WriterCommand,
};
use fitlink_shared::telemetry::{Readiness, serve_ops};
use futures_util::StreamExt as _;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicRejectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, Consumer};
use tokio_util::sync::CancellationToken;

use crate::WriterArgs;
use crate::store::{Applied, Effect, Store};

/// How long to wait for the broker to hand back prefetched messages after a cancel at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a batch in which a command failed unexpectedly, so a database hiccup is not
/// turned into a burst of redeliveries that exhausts the delivery limit in milliseconds.
const FAILURE_PAUSE: Duration = Duration::from_secs(1);
/// Longest a batch is held (unacked) while the database cannot write anything, before its
/// messages are requeued after all. Well inside RabbitMQ's 30-minute consumer timeout.
const DATABASE_HOLD: Duration = Duration::from_secs(120);

pub(crate) async fn run(args: WriterArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    // The ops endpoints live as long as this role does, whether it stops cleanly or fails.
    let ops_shutdown = shutdown.child_token();
    let _stop_ops = ops_shutdown.clone().drop_guard();
    let ready = Readiness::default();
    serve_ops(args.ops.ops_addr, ready.clone(), ops_shutdown)
        .await
        .context("cannot serve the ops endpoints")?;

    let store = Store::open(&args.database, args.job_lease())
        .await
        .context("cannot open the database")?;
    let topology = args.broker.topology();
    let partitions = args.partitions_to_consume()?;
    // SQLite: one writer process at a time; a second one stands by here.
    let Some(_writer_lock) = store.database().writer_lock(&shutdown).await? else {
        tracing::info!("writer stopped while standing by");
        store.close().await;
        return Ok(());
    };
    let consume_conn = broker::connect(&args.broker, "writer-consume")
        .await
        .context("cannot connect to the broker (consume)")?;
    let publish_conn = broker::connect(&args.broker, "writer-publish")
        .await
        .context("cannot connect to the broker (publish)")?;
    let batch_messages = args.batch_messages.max(1);
    let prefetch = u16::try_from(batch_messages.saturating_mul(2)).unwrap_or(u16::MAX);
    let channel = broker::consumer_channel(&consume_conn, prefetch).await?;
    topology
        .declare(&channel)
        .await
        .context("cannot declare the queues")?;
    let publisher = Publisher::open(&publish_conn).await?;
    let writer_id = uuid::Uuid::new_v4().simple().to_string();
    let mut consumers = Vec::with_capacity(partitions.len());
    for &partition in &partitions {
        let queue = &topology.results[partition];
        consumers.push(
            channel
                .basic_consume(
                    queue.as_str().into(),
                    format!("fitlink-writer-{writer_id}-p{partition}").into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .with_context(|| format!("cannot consume the results queue {queue}"))?,
        );
    }
    let tags: Vec<String> = consumers.iter().map(|c| c.tag().to_string()).collect();
    let mut stream = futures_util::stream::select_all(consumers);
    ready.set(true);
    tracing::info!(
        queues = %partitions.iter().map(|p| topology.results[*p].as_str()).collect::<Vec<_>>().join(","),
        batch_messages,
        linger_ms = args.linger_ms,
        "writer consuming (single active consumer per partition: a standby until the active writer goes away)"
    );

    let mut writer = Writer {
        store,
        publisher,
        // One consumer per channel acks "everything up to here" at once; deliveries of several
        // consumers interleave on the channel, so each is acked on its own.
        ack_multiple: partitions.len() == 1,
        topology,
        ready: ready.clone(),
        shutdown: shutdown.clone(),
    };
    let result = writer
        .consume(&mut stream, batch_messages, args.linger(), &shutdown)
        .await;
    ready.set(false);
    let result = match result {
        Ok(()) => writer.drain(&channel, &tags, stream, batch_messages).await,
        Err(e) => Err(e),
    };
    close(&consume_conn, &publish_conn).await;
    writer.store.close().await;
    if result.is_ok() {
        tracing::info!("writer stopped");
    }
    result
}

async fn close(consume: &Connection, publish: &Connection) {
    for conn in [consume, publish] {
        if conn.status().connected() {
            let _ = conn.close(200, "writer stopping".into()).await;
        }
    }
}

/// The deliveries of every partition this writer consumes, as they come.
type Results = futures_util::stream::SelectAll<Consumer>;

/// What to tell the broker about one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settle {
    /// Applied and committed (and its job published).
    Ack,
    /// Can never apply: to the dead-letter queue.
    DeadLetter,
    /// Failed unexpectedly, or its job could not be published: try again later.
    Requeue,
}

struct Writer {
    store: Store,
    publisher: Publisher,
    /// Settle a fully acked batch with one `ack(multiple)` (only with one consumer).
    ack_multiple: bool,
    topology: Topology,
    /// Cleared while the database is failing, so `/readyz` tells the operator.
    ready: Readiness,
    shutdown: CancellationToken,
}

/// How a batch went, for the loop.
#[derive(Default)]
struct BatchReport {
    /// Some command failed unexpectedly: pause before the next batch.
    failed: bool,
}

impl Writer {
    /// Consumes until `shutdown`; returns `Err` if the broker goes away.
    async fn consume(
        &mut self,
        consumer: &mut Results,
        batch_messages: usize,
        linger: Duration,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        loop {
            let first = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Ok(()),
                next = consumer.next() => next,
            };
            let first = match first {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => return Err(e).context("lost the broker while consuming"),
                None => anyhow::bail!("the broker cancelled the results consumer"),
            };
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + linger;
            let mut ended = false;
            while batch.len() < batch_messages {
                let next = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break,
                    next = tokio::time::timeout_at(deadline, consumer.next()) => next,
                };
                match next {
                    Err(_) => break, // lingered long enough
                    Ok(Some(Ok(delivery))) => batch.push(delivery),
                    Ok(Some(Err(e))) => {
                        // The batch in hand cannot be acked on a dead channel; the broker
                        // requeues it.
                        return Err(e).context("lost the broker while consuming");
                    }
                    Ok(None) => {
                        ended = true;
                        break;
                    }
                }
            }
            let report = self.process(batch).await?;
            if ended {
                anyhow::bail!("the broker cancelled the results consumer");
            }
            if report.failed {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(FAILURE_PAUSE) => {}
                }
            }
        }
    }

    /// At shutdown: stop the broker sending more, then apply and ack what it already sent
    /// (handing prefetched messages back would count against their delivery limit).
    async fn drain(
        &mut self,
        channel: &lapin::Channel,
        tags: &[String],
        mut consumer: Results,
        batch_messages: usize,
    ) -> anyhow::Result<()> {
        for tag in tags {
            channel
                .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                .await
                .context("cannot cancel the results consumer")?;
        }
        let mut batch = Vec::new();
        loop {
            match tokio::time::timeout(DRAIN_TIMEOUT, consumer.next()).await {
                Ok(Some(Ok(delivery))) => {
                    batch.push(delivery);
                    if batch.len() >= batch_messages {
                        self.process(std::mem::take(&mut batch)).await?;
                    }
                }
                Ok(Some(Err(e))) => return Err(e).context("lost the broker while stopping"),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!("the broker did not confirm the cancel in time");
                    break;
                }
            }
        }
        if !batch.is_empty() {
            self.process(batch).await?;
        }
        Ok(())
    }

    /// Why a command must not be applied by the writer of the queue it came from: it names a
    /// participant of another partition (a role that runs with another
    /// `FITLINK_RESULTS_PARTITIONS`). Applying it could put two writers on one participant.
    fn misrouted(&self, delivery: &Delivery, command: &WriterCommand) -> Option<String> {
        let queue = delivery.routing_key.as_str();
        let stray = match command {
            WriterCommand::ImportParticipants(batch) => batch
                .participants
                .iter()
                .map(|p| p.participant_id.as_str())
                .find(|p| self.topology.results_for(p) != queue),
            WriterCommand::ResealCredentials(batch) => batch
                .credentials
                .iter()
                .map(|r| r.participant_id.as_str())
                .find(|p| self.topology.results_for(p) != queue),
            other => other
                .participant()
                .map(|p| p.as_str())
                .filter(|p| self.topology.results_for(p) != queue),
        }?;
        Some(format!(
            "participant {stray} belongs to {} but arrived on {queue}: every role of the fleet must \
             run with the same FITLINK_RESULTS_PARTITIONS ({})",
            self.topology.results_for(stray),
            self.topology.partitions()
        ))
    }

    /// Applies one batch and settles every delivery in it. `Err` only if the broker failed.
    async fn process(&mut self, deliveries: Vec<Delivery>) -> anyhow::Result<BatchReport> {
        let started = Instant::now();
        let mut report = BatchReport::default();
        let mut kept = Vec::with_capacity(deliveries.len());
        let mut commands = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match serde_json::from_slice::<WriterCommand>(&delivery.data) {
                Ok(command) => {
                    if let Some(problem) = self.misrouted(&delivery, &command) {
                        tracing::warn!(kind = command.kind(), problem = %problem, "result on the wrong partition; dead-lettering it");
                        metrics::counter!("fitlink_writer_dead_lettered_total").increment(1);
                        settle(&delivery, Settle::DeadLetter).await?;
                        continue;
                    }
                    kept.push(delivery);
                    commands.push(command);
                }
                Err(e) => {
                    // Never the body: it may be large, and it may hold sealed tokens.
                    let headers = delivery.properties.headers().as_ref();
                    tracing::warn!(
                        participant_id = header_text(headers, PARTICIPANT_HEADER).as_deref().unwrap_or("-"),
                        job_id = header_text(headers, JOB_HEADER).as_deref().unwrap_or("-"),
                        bytes = delivery.data.len(),
                        error = %short(&e.to_string()),
                        "undecodable result; dead-lettering it"
                    );
                    metrics::counter!("fitlink_writer_dead_lettered_total").increment(1);
                    settle(&delivery, Settle::DeadLetter).await?;
                }
            }
        }
        if commands.is_empty() {
            return Ok(report);
        }

        let mut settles = vec![Settle::Ack; commands.len()];
        let mut fatal = None;
        match self.store.apply(&commands).await {
            Ok(applied) => {
                record(&commands, &applied);
                fatal = self.publish(&applied, &commands, 0, &mut settles).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, commands = commands.len(), "batch rolled back; applying its commands one by one");
                let failed = self
                    .apply_one_by_one(&commands, &mut settles, &mut fatal)
                    .await;
                report.failed = failed;
            }
        }

        // Committed, jobs published, waiters answered; the results are still unacked.
        FaultPoint::CommitBeforeAck.strike();
        if self.ack_multiple && settles.iter().all(|s| *s == Settle::Ack) {
            // Everything before these deliveries on this channel is settled already.
            if let Some(last) = kept.iter().max_by_key(|d| d.delivery_tag) {
                last.acker
                    .ack(BasicAckOptions { multiple: true })
                    .await
                    .context("cannot ack results")?;
            }
        } else {
            for (delivery, how) in kept.iter().zip(&settles) {
                settle(delivery, *how).await?;
            }
        }
        metrics::counter!("fitlink_writer_batches_total").increment(1);
        metrics::histogram!("fitlink_writer_batch_seconds").record(started.elapsed().as_secs_f64());
        tracing::debug!(
            messages = kept.len(),
            seconds = started.elapsed().as_secs_f64(),
            "batch applied"
        );
        match fatal {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// After a batch rolled back: each command in its own transaction, so one that can never
    /// apply is dead-lettered and one that fails unexpectedly is requeued, while the rest are
    /// applied. Returns true if some command was requeued.
    ///
    /// If nothing at all can be written (every command fails with a database error: a full
    /// disk, an I/O error), the database is failing, not the messages: requeueing them would
    /// spend their delivery limit in seconds and dead-letter good results. So the batch is held
    /// (unacked, the role not ready) and retried with backoff for up to [`DATABASE_HOLD`], and
    /// only then requeued.
    async fn apply_one_by_one(
        &mut self,
        commands: &[WriterCommand],
        settles: &mut [Settle],
        fatal: &mut Option<anyhow::Error>,
    ) -> bool {
        let held_since = Instant::now();
        let mut backoff = FAILURE_PAUSE;
        let mut todo: Vec<usize> = (0..commands.len()).collect();
        let mut held = false;
        loop {
            let mut failed = Vec::new();
            let mut applied_any = false;
            for i in todo {
                let command = &commands[i];
                match self.store.apply(std::slice::from_ref(command)).await {
                    Ok(applied) => {
                        applied_any = true;
                        settles[i] = Settle::Ack;
                        record(std::slice::from_ref(command), &applied);
                        if let Some(e) = self
                            .publish(&applied, std::slice::from_ref(command), i, settles)
                            .await
                        {
                            fatal.get_or_insert(e);
                        }
                    }
                    Err(e) if e.is_dead_letter() => {
                        tracing::warn!(participant_id = command.participant().map_or("-", |p| p.as_str()), kind = command.kind(), error = %e, "command can never apply; dead-lettering it");
                        metrics::counter!("fitlink_writer_dead_lettered_total").increment(1);
                        settles[i] = Settle::DeadLetter;
                    }
                    Err(e) => {
                        tracing::error!(participant_id = command.participant().map_or("-", |p| p.as_str()), kind = command.kind(), error = %e, "command failed");
                        settles[i] = Settle::Requeue;
                        failed.push(i);
                    }
                }
            }
            if held {
                self.ready.set(true);
            }
            if failed.is_empty() {
                return false;
            }
            let outage = !applied_any
                && held_since.elapsed() < DATABASE_HOLD
                && !self.shutdown.is_cancelled();
            if !outage {
                tracing::warn!(
                    commands = failed.len(),
                    "requeueing the commands that failed"
                );
                return true;
            }
            held = true;
            self.ready.set(false);
            tracing::error!(commands = failed.len(), retry_in = ?backoff, "nothing could be written: holding the batch until the database recovers");
            tokio::select! {
                _ = self.shutdown.cancelled() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
            todo = failed;
        }
    }

    /// Publishes the jobs `applied` granted (the command at index `i` of `applied` is delivery
    /// `offset + i`). A job that could not be published leaves its request unacked-to-requeue,
    /// so its redelivery publishes it again. Returns an error if the broker connection failed.
    async fn publish(
        &self,
        applied: &Applied,
        commands: &[WriterCommand],
        offset: usize,
        settles: &mut [Settle],
    ) -> Option<anyhow::Error> {
        let jobs: Vec<(usize, &SyncJob)> = applied.jobs().collect();
        if !jobs.is_empty() {
            // The grants are committed; their jobs exist nowhere else yet.
            FaultPoint::GrantBeforePublish.strike();
        }
        let results = futures_util::future::join_all(jobs.iter().map(|(_, job)| {
            self.publisher
                .publish_json(&self.topology.jobs, *job, job_headers(job))
        }))
        .await;
        // Processes waiting for a decision to be committed: tell them. Best effort: a waiter
        // that is gone has nobody to tell (a worker's job is redelivered with the old token and
        // the writer retries it with the stored one; a portal or CLI that gave up says so, and
        // the decision stands).
        for (queue, stored) in applied.effects.iter().filter_map(|e| e.credential_reply()) {
            self.reply(queue, stored, stored.participant_id.as_str())
                .await;
        }
        for (queue, resealed) in applied.effects.iter().filter_map(|e| e.reseal_reply()) {
            self.reply(queue, resealed, "-").await;
        }
        for ((queue, reply), command) in applied
            .effects
            .iter()
            .zip(commands)
            .filter_map(|(e, c)| e.writer_reply().map(|r| (r, c)))
        {
            let participant = command.participant().map_or("-", |p| p.as_str());
            self.reply(queue, reply, participant).await;
        }
        let mut fatal = None;
        for ((i, job), result) in jobs.into_iter().zip(results) {
            if let Err(e) = result {
                tracing::error!(participant_id = %job.participant_id, job_id = %job.job_id, error = %e, "granted job not published; requeueing its request");
                settles[offset + i] = Settle::Requeue;
                if matches!(
                    e,
                    broker::PublishError::Broker(_) | broker::PublishError::Timeout(_)
                ) {
                    fatal.get_or_insert(anyhow::Error::new(e).context("cannot publish jobs"));
                }
            }
        }
        fatal
    }

    /// Answers a process waiting on its own reply queue, after the commit. A reply that cannot
    /// be routed (the waiter is gone and its exclusive queue with it) is not an error.
    async fn reply<T: serde::Serialize>(&self, queue: &str, body: &T, participant: &str) {
        if let Err(e) = self.publisher.publish_json(queue, body, vec![]).await {
            tracing::debug!(participant_id = participant, queue, error = %e, "could not deliver a reply; the waiter is gone");
        }
    }
}

fn job_headers(job: &SyncJob) -> broker::Headers {
    vec![
        (PARTICIPANT_HEADER, long_string(job.participant_id.as_str())),
        (JOB_HEADER, long_string(&job.job_id.to_string())),
        (ATTEMPT_HEADER, AMQPValue::LongInt(1)),
    ]
}

async fn settle(delivery: &Delivery, how: Settle) -> anyhow::Result<()> {
    let acker = &delivery.acker;
    match how {
        Settle::Ack => acker.ack(BasicAckOptions { multiple: false }).await,
        Settle::DeadLetter => acker.reject(BasicRejectOptions { requeue: false }).await,
        Settle::Requeue => {
            acker
                .nack(BasicNackOptions {
                    multiple: false,
                    requeue: true,
                })
                .await
        }
    }
    .context("cannot settle a result with the broker")?;
    Ok(())
}

/// Metrics of a committed transaction.
fn record(commands: &[WriterCommand], applied: &Applied) {
    for command in commands {
        metrics::counter!("fitlink_writer_commands_total", "kind" => command.kind()).increment(1);
    }
    for (table, rows) in &applied.rows {
        metrics::counter!("fitlink_writer_rows_total", "table" => *table).increment(*rows);
    }
    for (command, effect) in commands.iter().zip(&applied.effects) {
        let result = match (command, effect) {
            (
                WriterCommand::ImportParticipants(batch),
                Effect::Imported {
                    created,
                    updated,
                    reactivated,
                    refused,
                },
            ) => {
                tracing::info!(import_id = %batch.import_id, source = %batch.source, created, updated, reactivated, refused, "participants imported");
                if *refused > 0 {
                    tracing::warn!(import_id = %batch.import_id, refused, "import rows of withdrawn participants were refused");
                }
                continue;
            }
            (WriterCommand::ImportParticipants(batch), Effect::ImportAlreadyApplied) => {
                tracing::info!(import_id = %batch.import_id, source = %batch.source, "import applied before; nothing to do");
                continue;
            }
            (WriterCommand::FinishJob(outcome), Effect::JobFinished { released, .. }) => {
                if let Outcome::Failed { state, reason, .. } = &outcome.outcome {
                    tracing::info!(participant_id = %outcome.participant_id, job_id = %outcome.job_id, %state, reason = %reason, released, "participant stopped syncing");
                }
                continue;
            }
            (_, Effect::Granted(_)) => "granted",
            (_, Effect::Regranted(job)) => {
                tracing::info!(participant_id = %job.participant_id, job_id = %job.job_id, "request redelivered after its grant; publishing the same job again");
                "republished"
            }
            (_, Effect::NotGranted(why)) => why.label(),
            (command, Effect::Refused { reason }) => {
                tracing::warn!(participant_id = command.participant().map_or("-", |p| p.as_str()), kind = command.kind(), %reason, "command refused");
                continue;
            }
            (WriterCommand::StoreSlice(slice), Effect::SliceDropped { state }) => {
                tracing::info!(participant_id = %slice.participant_id, job_id = %slice.job_id, %state, "slice for a withdrawn participant dropped");
                continue;
            }
            (command, Effect::Replied { reply, .. }) => {
                tracing::info!(participant_id = command.participant().map_or("-", |p| p.as_str()), kind = command.kind(), request_id = %reply.request_id, reply = ?reply.reply, "decided");
                continue;
            }
            (WriterCommand::ConsentLost(loss), Effect::ConsentLost { previous_state }) => {
                tracing::info!(participant_id = %loss.participant_id, %previous_state, reason = %loss.reason, "participant took their consent back");
                continue;
            }
            (
                WriterCommand::RecordConsentProblem(problem),
                Effect::ConsentProblemRecorded { state },
            ) => {
                tracing::info!(participant_id = %problem.participant_id, invitation_id = %problem.invitation_id, problem = ?problem.problem, %state, "consent flow ended without a grant");
                continue;
            }
            (
                WriterCommand::DeleteProviderData(deletion),
                Effect::ProviderDataDeleted { rows_deleted, .. },
            ) => {
                tracing::info!(participant_id = %deletion.participant_id, data_type = %deletion.data_type, rows_deleted, "provider deletion applied");
                metrics::counter!("fitlink_writer_provider_rows_deleted_total")
                    .increment(*rows_deleted);
                continue;
            }
            (_, Effect::Notified(notified)) => notified.label(),
            _ => continue,
        };
        metrics::counter!("fitlink_writer_grants_total", "result" => result).increment(1);
    }
}

/// Keeps a decode error short: serde quotes pieces of the input.
fn short(text: &str) -> String {
    const MAX: usize = 200;
    let mut out: String = text.chars().take(MAX).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}
