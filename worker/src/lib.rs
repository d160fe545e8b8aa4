//! The worker: takes sync jobs from the jobs queue, runs them against the provider, publishes
//! results for the writer, and settles each job (ack after every consequence is confirmed by
//! the broker). Stateless and horizontally scalable: it needs the broker, the provider and the
//! token key, never the database.

mod credentials;
mod job;
#[cfg(test)]
mod prefetch_tests;
mod retry;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{TimeDelta, Utc};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use fitlink_shared::broker::{
    self, Headers, PublishError, Publisher, Topology, header_int, long_string,
};
use fitlink_shared::config::{BrokerArgs, FitbitArgs, GoogleArgs, OpsArgs, TokenKeyArgs};
use fitlink_shared::domain::{Provider, UtcInstant};
use fitlink_shared::faults::FaultPoint;
use fitlink_shared::messages::{
    ATTEMPT_HEADER, JOB_HEADER, JobOutcome, Outcome, PARTICIPANT_HEADER, REASON_HEADER, SyncJob,
    WriterCommand, now_instant,
};
use fitlink_shared::provider::HealthProvider;
use fitlink_shared::provider::fitbit::FitbitClient;
use fitlink_shared::provider::google::GoogleHealthClient;
use fitlink_shared::secret::canary::KeySetRefused;
use fitlink_shared::secret::{SealError, TokenKeys};
use fitlink_shared::telemetry::{Readiness, serve_ops};

pub use credentials::{AccessTokens, RotationCommits};
pub use job::JobShape;
pub use retry::{Decision, RetryPolicy};

#[derive(clap::Args, Clone, Debug)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub google: GoogleArgs,
    #[command(flatten)]
    pub fitbit: FitbitArgs,
    #[command(flatten)]
    pub token_key: TokenKeyArgs,
    #[command(flatten)]
    pub ops: OpsArgs,
    /// Jobs this process runs at once (provider latency is hidden by concurrency).
    #[arg(long, env = "FITLINK_WORKER_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,
    /// Longest slice in hours (1–23).
    #[arg(long, env = "FITLINK_SLICE_HOURS", default_value_t = 12,
          value_parser = clap::value_parser!(u16).range(1..=23))]
    pub slice_hours: u16,
    /// Days before the cursor whose daily summaries are re-read (providers restate recent days).
    #[arg(long, env = "FITLINK_SUMMARY_LOOKBACK_DAYS", default_value_t = 2)]
    pub summary_lookback_days: u16,
    /// Longest window one job syncs, in days; longer backfills continue in follow-up jobs.
    #[arg(long, env = "FITLINK_MAX_JOB_DAYS", default_value_t = 7,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub max_job_days: u16,
    /// Attempts for transient failures before a job is dead-lettered.
    #[arg(long, env = "FITLINK_MAX_ATTEMPTS", default_value_t = 6)]
    pub max_attempts: u32,
    /// On shutdown, how long running jobs may take to finish before they are handed back.
    #[arg(long, env = "FITLINK_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,
}

struct Worker {
    google: GoogleHealthClient,
    fitbit: FitbitClient,
    key: TokenKeys,
    /// Set once a token without a key id (sealed before keys had ids, all with the one key of
    /// that time) opened: from then on such a token that does not open is its own fault, not a
    /// key missing from this worker.
    opened_without_id: AtomicBool,
    /// Where a job whose token needs a key this worker lacks says so: the worker stops. Room
    /// for one: the first refusal stops the worker, and later ones (their jobs were handed back
    /// too) are dropped rather than queued without a bound.
    refusals: mpsc::Sender<String>,
    tokens: AccessTokens,
    commits: RotationCommits,
    publisher: Publisher,
    topology: Topology,
    shape: JobShape,
    policy: RetryPolicy,
}

/// Runs a worker until `shutdown` is cancelled (then it stops taking jobs, lets running ones
/// finish for a grace period, and hands back the rest unacknowledged) or the broker goes away.
pub async fn run(args: WorkerArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let key = args.token_key.keys()?;
    let ready = Readiness::default();
    serve_ops(args.ops.ops_addr, ready.clone(), shutdown.clone()).await?;

    let consume_conn = broker::connect(&args.broker, "worker-consume")
        .await
        .context("connecting to RabbitMQ")?;
    let publish_conn = broker::connect(&args.broker, "worker-publish")
        .await
        .context("connecting to RabbitMQ")?;
    let topology = args.broker.topology();
    let channel = broker::consumer_channel(&consume_conn, args.concurrency).await?;
    topology.declare(&channel).await?;
    let publisher = Publisher::open(&publish_conn).await?;
    let commits = RotationCommits::start(&consume_conn).await?;
    let (refusals, mut refused) = mpsc::channel(1);

    let worker = Arc::new(Worker {
        google: GoogleHealthClient::new(&args.google),
        fitbit: FitbitClient::new(&args.fitbit),
        key,
        opened_without_id: AtomicBool::new(false),
        refusals,
        tokens: AccessTokens::default(),
        commits,
        publisher,
        topology: topology.clone(),
        shape: JobShape {
            slice: TimeDelta::hours(i64::from(args.slice_hours)),
            summary_lookback_days: i64::from(args.summary_lookback_days),
            max_window: TimeDelta::days(i64::from(args.max_job_days)),
        },
        policy: RetryPolicy {
            max_attempts: args.max_attempts,
        },
    });

    let consumer_tag = format!("worker-{}", uuid::Uuid::now_v7());
    let mut deliveries = channel
        .basic_consume(
            topology.jobs.as_str().into(),
            consumer_tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    ready.set(true);
    tracing::info!(queue = %topology.jobs, concurrency = args.concurrency, "worker consuming");

    let slots = Arc::new(Semaphore::new(usize::from(args.concurrency)));
    let mut running = tokio::task::JoinSet::new();
    let outcome = loop {
        tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            Some(reason) = refused.recv() => break Err(KeySetRefused(reason).into()),
            Some(done) = running.join_next(), if !running.is_empty() => {
                if let Err(e) = done { tracing::error!(error = %e, "a job task panicked"); }
            }
            next = deliveries.next() => match next {
                Some(Ok(delivery)) => {
                    let permit = slots.clone().acquire_owned().await.expect("semaphore open");
                    let worker = worker.clone();
                    running.spawn(async move {
                        worker.handle(delivery).await;
                        drop(permit);
                    });
                }
                Some(Err(e)) => break Err(anyhow::Error::new(e).context("consuming jobs")),
                None => break Err(anyhow::anyhow!("the jobs consumer was cancelled by the broker")),
            },
        }
    };
    ready.set(false);
    let _ = channel
        .basic_cancel(consumer_tag.as_str().into(), BasicCancelOptions::default())
        .await;
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    if tokio::time::timeout(grace, async {
        while running.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!(
            jobs = running.len(),
            "jobs still running after the grace period are handed back to the queue"
        );
        running.shutdown().await;
    }
    let _ = consume_conn.close(200, "worker stopping".into()).await;
    let _ = publish_conn.close(200, "worker stopping".into()).await;
    outcome
}

impl Worker {
    /// Why this worker must not run `job`: its token needs a key this worker lacks. Failing the
    /// job would blame the participant (a dead letter, or worse a re-consent) for the worker's
    /// configuration; the job goes back instead, for a worker that has the key. A token that
    /// names a key this worker holds and does not open is the token's fault, and the job takes
    /// its usual course (dead-lettered with the reason).
    ///
    /// A token that names a key this worker holds is let through unopened (the job opens it
    /// when it needs the refresh token, and a cached access token may spare even that); only a
    /// token without a key id, or naming an unknown one, is opened here to tell which it is.
    fn missing_key(&self, job: &SyncJob) -> Option<String> {
        let sealed = &job.sealed_refresh_token;
        if sealed.key_id().is_some_and(|id| self.key.holds(id)) {
            return None;
        }
        match self
            .key
            .open(&job.participant_id, &job.sealed_refresh_token)
        {
            Ok(_) => {
                if job.sealed_refresh_token.key_id().is_none() {
                    self.opened_without_id.store(true, Ordering::Relaxed);
                }
                None
            }
            Err(e @ SealError::UnknownKey { .. }) => Some(e.to_string()),
            Err(e) if e.may_be_missing_key() && !self.opened_without_id.load(Ordering::Relaxed) => {
                Some(e.to_string())
            }
            Err(_) => None,
        }
    }

    /// Runs one delivery to its end: every consequence (results, retry copy, dead letter,
    /// outcome) is confirmed by the broker before the job is acked. If the broker cannot take
    /// them, the job is handed back (nack with requeue) and nothing is lost.
    async fn handle(&self, delivery: Delivery) {
        let headers = delivery.properties.headers().as_ref();
        let attempt = header_int(headers, ATTEMPT_HEADER).unwrap_or(1).max(1) as u32;
        let job: SyncJob = match serde_json::from_slice(&delivery.data) {
            Ok(job) => job,
            Err(e) => {
                let reason = format!("undecodable sync job: {e}");
                tracing::error!(%reason, "dead-lettering a job that cannot be read");
                let settled = self
                    .publisher
                    .publish(
                        &self.topology.jobs_dead,
                        &delivery.data,
                        vec![(REASON_HEADER, long_string(&reason))],
                    )
                    .await;
                return settle(&delivery, settled).await;
            }
        };
        let span = tracing::info_span!("job", participant_id = %job.participant_id, job_id = %job.job_id, attempt);
        if let Some(reason) = self.missing_key(&job) {
            span.in_scope(|| tracing::error!(%reason, "this worker lacks the key of the job's token; handing the job back and stopping"));
            let requeue = BasicNackOptions {
                requeue: true,
                multiple: false,
            };
            if let Err(e) = delivery.nack(requeue).await {
                tracing::error!(error = %e, "could not hand the job back; the broker redelivers it when this worker's connection closes");
            }
            let _ = self.refusals.try_send(format!(
                "worker refuses to work: {reason}. The job was handed back to the queue for a worker with the right keys; nothing about the participant was changed"
            ));
            return;
        }
        let arrival = if delivery.redelivered || attempt > 1 {
            job::Arrival::Again
        } else {
            job::Arrival::First
        };
        let settled = self.run_job(job, arrival, attempt).instrument(span).await;
        settle(&delivery, settled).await;
    }

    async fn run_job(
        &self,
        job: SyncJob,
        arrival: job::Arrival,
        attempt: u32,
    ) -> Result<(), PublishError> {
        let started = std::time::Instant::now();
        let result = match job.provider {
            Provider::GoogleHealth => self.context(&self.google).run(&job, arrival).await,
            Provider::Fitbit => self.context(&self.fitbit).run(&job, arrival).await,
        };
        metrics::histogram!("fitlink_worker_job_seconds").record(started.elapsed().as_secs_f64());
        match result {
            Ok(job::Ran::Touched) => {
                tracing::info!("token touched (keep-alive)");
                metrics::counter!("fitlink_worker_jobs_total", "outcome" => "touched").increment(1);
                self.outcome(&job, Outcome::Touched).await
            }
            Ok(job::Ran::Synced(synced)) if synced.continues => {
                tracing::info!(synced_to = %synced.synced_to, "backfill continues in a follow-up job");
                let next = SyncJob {
                    from: synced.synced_to,
                    sealed_refresh_token: synced.progress.token.clone(),
                    ..job.clone()
                };
                self.publisher
                    .publish_json(&self.topology.jobs, &next, job_headers(&next, 1, None))
                    .await?;
                self.outcome(
                    &job,
                    Outcome::Deferred {
                        until: now_instant(),
                        rate_limited: false,
                        reason: format!("backfill continues from {}", synced.synced_to),
                    },
                )
                .await?;
                metrics::counter!("fitlink_worker_jobs_total", "outcome" => "continued")
                    .increment(1);
                Ok(())
            }
            Ok(job::Ran::Synced(synced)) => {
                tracing::info!(synced_to = %synced.synced_to, slices = synced.slices, "job completed");
                metrics::counter!("fitlink_worker_jobs_total", "outcome" => "completed")
                    .increment(1);
                self.outcome(
                    &job,
                    Outcome::Completed {
                        synced_to: synced.synced_to,
                        latest_device_sync: synced.latest_device_sync,
                        time_zone: synced.time_zone,
                        slices: synced.slices,
                        intraday_denied: synced.intraday_denied,
                        provider_user_id: synced.progress.provider_user_id,
                        identity: synced.identity,
                    },
                )
                .await
            }
            Err(failed) => {
                tracing::warn!(class = failed.error.class(), error = %failed.error, "job failed");
                self.settle_failure(job, failed, attempt).await
            }
        }
    }

    fn context<'a, P: HealthProvider>(&'a self, provider: &'a P) -> job::JobContext<'a, P> {
        job::JobContext {
            provider,
            key: &self.key,
            tokens: &self.tokens,
            commits: &self.commits,
            publisher: &self.publisher,
            topology: &self.topology,
            shape: self.shape,
        }
    }

    async fn settle_failure(
        &self,
        job: SyncJob,
        failed: job::Failed,
        attempt: u32,
    ) -> Result<(), PublishError> {
        let class = failed.error.class();
        match self.policy.decide(failed.error, attempt) {
            Decision::Retry {
                delay,
                next_attempt,
                reason,
            } => {
                let (tier, queue) = self.topology.retry_queue_for(delay);
                let retry = SyncJob {
                    from: failed.progress.resume_from,
                    sealed_refresh_token: failed.progress.token.clone(),
                    ..job.clone()
                };
                self.publisher
                    .publish_json(queue, &retry, job_headers(&retry, next_attempt, None))
                    .await?;
                // The retry copy is queued and the original still held: a crash now leaves both.
                FaultPoint::RetryBeforeAck.strike();
                let until =
                    UtcInstant::new(Utc::now() + TimeDelta::from_std(tier).unwrap_or_default());
                tracing::info!(
                    retry_in_secs = tier.as_secs(),
                    next_attempt,
                    "job will be retried"
                );
                metrics::counter!("fitlink_worker_jobs_total", "outcome" => "retried").increment(1);
                self.outcome(
                    &job,
                    Outcome::Deferred {
                        until,
                        rate_limited: false,
                        reason,
                    },
                )
                .await
            }
            Decision::WaitForReset { wait, reason } => {
                let until =
                    UtcInstant::new(Utc::now() + TimeDelta::from_std(wait).unwrap_or_default());
                tracing::info!(wait_secs = wait.as_secs(), %until, "rate limited; the dispatcher grants a new job when the limit resets");
                metrics::counter!("fitlink_worker_jobs_total", "outcome" => "rate_limited")
                    .increment(1);
                self.outcome(
                    &job,
                    Outcome::RateLimited {
                        until,
                        reason,
                        resume_from: failed.progress.resume_from,
                    },
                )
                .await
            }
            Decision::Fail { state, reason } => {
                metrics::counter!("fitlink_worker_jobs_total", "outcome" => "failed", "class" => class).increment(1);
                self.outcome(
                    &job,
                    Outcome::Failed {
                        state,
                        reason,
                        rejected_token: failed.progress.rejected_token,
                    },
                )
                .await
            }
            Decision::DeadLetter { reason } => {
                tracing::error!(%reason, "job dead-lettered");
                self.publisher
                    .publish_json(
                        &self.topology.jobs_dead,
                        &job,
                        job_headers(&job, attempt, Some(&reason)),
                    )
                    .await?;
                metrics::counter!("fitlink_worker_jobs_total", "outcome" => "dead_lettered")
                    .increment(1);
                self.outcome(&job, Outcome::DeadLettered { reason }).await
            }
        }
    }

    async fn outcome(&self, job: &SyncJob, outcome: Outcome) -> Result<(), PublishError> {
        let command = WriterCommand::FinishJob(JobOutcome {
            job_id: job.job_id,
            participant_id: job.participant_id.clone(),
            outcome,
            at: now_instant(),
        });
        self.publisher
            .publish_json(
                self.topology.results_for(job.participant_id.as_str()),
                &command,
                vec![(PARTICIPANT_HEADER, long_string(job.participant_id.as_str()))],
            )
            .await
    }
}

/// The headers a job copy carries: who, which job, our own attempt counter, and
/// for a dead letter the reason (never a token).
fn job_headers(job: &SyncJob, attempt: u32, reason: Option<&str>) -> Headers {
    let mut headers = vec![
        (PARTICIPANT_HEADER, long_string(job.participant_id.as_str())),
        (JOB_HEADER, long_string(&job.job_id.to_string())),
        (ATTEMPT_HEADER, AMQPValue::LongInt(attempt as i32)),
    ];
    if let Some(reason) = reason {
        headers.push((REASON_HEADER, long_string(reason)));
    }
    headers
}

/// Acks a job whose consequences are all durable; otherwise hands it back to the queue.
async fn settle(delivery: &Delivery, consequences: Result<(), PublishError>) {
    let settled = match consequences {
        Ok(()) => delivery.ack(BasicAckOptions::default()).await,
        Err(e) => {
            tracing::error!(error = %e, "could not publish a job's consequences; handing the job back");
            delivery
                .nack(BasicNackOptions {
                    requeue: true,
                    multiple: false,
                })
                .await
        }
    };
    if let Err(e) = settled {
        // The channel is gone: the broker redelivers the job to another worker.
        tracing::warn!(error = %e, "could not settle a job; the broker will redeliver it");
    }
}
