//! The schedule (`fitlink dispatcher`): every interval, ask the writer to sync each participant
//! that is due.
//!
//! The dispatcher only *asks*. The writer decides (it owns the in-flight claims), so a request
//! for a participant whose job is already running is refused there, not here. That keeps this
//! loop stateless enough to restart at any moment: after a restart it simply asks again.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use std::sync::Arc;

use fitlink_shared::config::{BrokerArgs, DatabaseArgs, FitbitArgs, GoogleArgs, OpsArgs};
use fitlink_shared::domain::{ParticipantId, ParticipantState, UtcInstant};
use fitlink_shared::fetch;
use fitlink_shared::messages::SyncTrigger;
use fitlink_shared::store::{Database, DbError};
use fitlink_shared::telemetry::{self, Readiness};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

use crate::outbox::{Outbox, RequestShape};
use crate::portal::{self, PortalArgs};

/// Settings of the `fitlink dispatcher` role.
#[derive(clap::Args, Clone, Debug)]
pub struct DispatcherArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub ops: OpsArgs,
    /// How often to look for due participants (seconds); a participant is due again this long
    /// after its last successful sync.
    #[arg(long, env = "FITLINK_SYNC_INTERVAL_SECS", default_value_t = 900)]
    pub interval_secs: u64,
    /// An in-flight claim older than this (seconds) is considered lost, so the participant is
    /// due again (must match the writer's lease).
    #[arg(long, env = "FITLINK_JOB_LEASE_SECS", default_value_t = 10800)]
    pub job_lease_secs: u64,
    /// A linked participant whose refresh token has not been used for this long (seconds) gets a
    /// keep-alive token touch, whatever their state: Google drops grants unused for ~6 months.
    #[arg(long, env = "FITLINK_TOKEN_TOUCH_AFTER_SECS", default_value_t = 30 * 86_400)]
    pub token_touch_after_secs: u64,
    /// The participant portal and provider webhooks (served when `--portal-addr` is set).
    #[command(flatten)]
    pub portal: PortalArgs,
    /// Google OAuth client for the consent flow (and identity checks).
    #[command(flatten)]
    pub google: GoogleArgs,
    /// Legacy Fitbit OAuth client (consent flow, webhook signatures).
    #[command(flatten)]
    pub fitbit: FitbitArgs,
}

/// How many sync requests are awaiting their broker confirm at once. Confirms are what make a
/// request durable; waiting for each in turn would make a tick of thousands of participants
/// take as many round trips.
const PUBLISH_CONCURRENCY: usize = 64;

/// How often the dispatcher looks for rate limits that have reset: a participant is asked for
/// within about this long of the reset the provider gave.
pub const RESET_POLL: Duration = Duration::from_secs(1);

/// Runs the schedule until `shutdown` is cancelled (then returns `Ok`), or until the broker
/// connection is lost (then returns the error, and the binary restarts the role).
pub async fn run(args: DispatcherArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let ready = Readiness::default();
    telemetry::serve_ops(args.ops.ops_addr, ready.clone(), shutdown.clone())
        .await
        .with_context(|| format!("cannot serve the ops endpoints on {}", args.ops.ops_addr))?;

    // A key set that opens none of the stored credentials stops the dispatcher before it asks
    // for a single sync (each would fail at a worker): the canary.
    if let Some(keys) = args.portal.token_key.keys_if_given()? {
        crate::keycheck::check_keys(&args.database, &keys, "dispatcher").await?;
    }
    let outbox = Arc::new(Outbox::open(&args.broker, "dispatcher").await?);
    let mut broker_events = outbox.conn.events_listener();
    // The portal stops with the dispatcher (and with it when the broker connection is lost).
    let portal_shutdown = shutdown.child_token();
    portal::start(
        &args.portal,
        &args.broker,
        &args.google,
        &args.fitbit,
        &args.database,
        outbox.clone(),
        portal_shutdown.clone(),
    )
    .await?;
    ready.set(true);

    let interval = Duration::from_secs(args.interval_secs.max(1));
    let lease = Duration::from_secs(args.job_lease_secs);
    tracing::info!(
        interval_secs = interval.as_secs(),
        job_lease_secs = lease.as_secs(),
        namespace = %args.broker.namespace,
        "dispatcher started; looking for due participants now and then every interval"
    );
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut resets = tokio::time::interval(RESET_POLL);
    resets.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut schedule = Schedule {
        database: args.database.clone(),
        pool: None,
        requested: HashMap::new(),
        interval,
        lease,
        touch_after: Duration::from_secs(args.token_touch_after_secs.max(1)),
    };

    let result = loop {
        let round = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            event = broker_events.next() => match event {
                Some(lapin::Event::Error(error)) => {
                    break Err(anyhow::Error::new(error).context("the broker connection was lost"));
                }
                Some(_) => continue,
                None => break Err(anyhow::anyhow!("the broker connection was closed")),
            },
            _ = ticker.tick() => Round::Schedule,
            _ = resets.tick() => Round::Resets,
        };
        let done = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            done = async {
                match round {
                    Round::Schedule => schedule.tick(&outbox).await,
                    Round::Resets => schedule.ask_resets(&outbox).await,
                }
            } => done,
        };
        if let Err(error) = done {
            if !outbox.conn.status().connected() {
                break Err(error.context("the broker connection was lost"));
            }
            // A broker refusal or a slow confirm: the participants are still due and are asked
            // for again next round.
            tracing::warn!(
                ?round,
                error = format!("{error:#}"),
                "scheduling round failed; retrying next round"
            );
        }
    };
    ready.set(false);
    portal_shutdown.cancel();
    if let Some(pool) = schedule.pool.take() {
        pool.close().await;
    }
    outbox.close().await;
    match &result {
        Ok(()) => tracing::info!("dispatcher stopped"),
        Err(error) => tracing::error!(error = format!("{error:#}"), "dispatcher stopping"),
    }
    result
}

/// What woke the dispatcher: its round over every participant, or the look for rate limits that
/// have reset.
#[derive(Clone, Copy, Debug)]
enum Round {
    Schedule,
    Resets,
}

/// The state the schedule keeps between ticks.
struct Schedule {
    database: DatabaseArgs,
    /// Opened on the first tick that finds the database (the writer creates it).
    pool: Option<Database>,
    /// What this process asked for in the last interval: participant → (the row's
    /// [`RowVersion`] when asked, when asked). While the writer is down or behind, a participant stays due;
    /// asking every tick would pile duplicate requests onto the results queue. A participant is
    /// asked at most once per interval: a participant that synced is not due again before an
    /// interval anyway, and a lost request is retried one interval later. (Watching `updated_at`
    /// alone is not enough: it has one-second precision, so a fast sync can leave it unchanged.)
    requested: HashMap<ParticipantId, (RowVersion, DateTime<Utc>)>,
    interval: Duration,
    lease: Duration,
    /// Touch a linked participant's token when it has not been used for this long.
    touch_after: Duration,
}

impl Schedule {
    async fn tick(&mut self, outbox: &Outbox) -> anyhow::Result<()> {
        let Some(pool) = self.pool().await? else {
            return Ok(());
        };
        let now = Utc::now();
        let due = due_participants(&pool, now, self.interval, self.lease)
            .await
            .context("cannot read due participants")?;
        metrics::gauge!("fitlink_dispatcher_due_participants").set(due.len() as f64);

        let lease = TimeDelta::from_std(self.lease).unwrap_or(TimeDelta::MAX);
        // Forget what is no longer due (the writer acted) or was asked for a lease ago.
        let due_ids: HashMap<&ParticipantId, RowVersion> =
            due.iter().map(|d| (&d.participant_id, d.version)).collect();
        let interval = TimeDelta::from_std(self.interval).unwrap_or(TimeDelta::MAX);
        self.requested
            .retain(|id, (_, at)| due_ids.contains_key(id) && now - *at < interval.min(lease));
        let to_ask: Vec<DueParticipant> = due
            .iter()
            .filter(|d| !self.requested.contains_key(&d.participant_id))
            .cloned()
            .collect();
        let awaiting_writer = due.len() - to_ask.len();
        let requested = self.ask(outbox, to_ask, now).await?;
        let touched = self.touch_idle_grants(&pool, outbox, now).await?;
        // The gauges are a view: failing to read them never stops the schedule.
        if let Err(error) = crate::observe::cohort(&pool, now).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "cannot read the cohort's gauges"
            );
        }
        if let Err(error) = crate::observe::queues(&outbox.conn, &outbox.topology).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "cannot read the queues' gauges"
            );
        }
        tracing::info!(
            due = due.len(),
            requested,
            awaiting_writer,
            touched,
            "scheduling round done"
        );
        Ok(())
    }

    /// Asks the writer for a scheduled sync of each of `due`, a window of publishes at a time,
    /// and remembers whom it asked (see [`Schedule::requested`]).
    async fn ask(
        &mut self,
        outbox: &Outbox,
        due: Vec<DueParticipant>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<usize> {
        let mut to_ask = due.into_iter();
        // A window of publishes awaiting their confirms.
        let mut pending = FuturesUnordered::new();
        let mut requested = 0usize;
        loop {
            while pending.len() < PUBLISH_CONCURRENCY {
                let Some(d) = to_ask.next() else { break };
                pending.push(async move {
                    let shape = RequestShape::default();
                    let result = outbox
                        .request_sync(&d.participant_id, SyncTrigger::Schedule, shape)
                        .await;
                    (d, result)
                });
            }
            let Some((d, result)) = pending.next().await else {
                break;
            };
            let job_id = result.with_context(|| {
                format!(
                    "cannot publish a sync request for participant {}",
                    d.participant_id
                )
            })?;
            tracing::debug!(participant_id = %d.participant_id, %job_id, "requested a scheduled sync");
            self.requested.insert(d.participant_id, (d.version, now));
            requested += 1;
        }
        Ok(requested)
    }

    /// Asks for the participants whose provider rate limit has just reset (`retry_at` passed,
    /// no job in flight), so they sync at the reset the provider gave rather than at the next
    /// round. Runs every [`RESET_POLL`]; a participant is asked once per reset (the row's
    /// [`RowVersion`] changes when the writer records another).
    async fn ask_resets(&mut self, outbox: &Outbox) -> anyhow::Result<()> {
        let Some(pool) = self.pool().await? else {
            return Ok(());
        };
        let now = Utc::now();
        let reset = rate_limit_resets(&pool, now)
            .await
            .context("cannot read rate-limit resets")?;
        let to_ask: Vec<DueParticipant> = reset
            .into_iter()
            .filter(|d| {
                self.requested
                    .get(&d.participant_id)
                    .is_none_or(|(version, _)| *version != d.version)
            })
            .collect();
        if !to_ask.is_empty() {
            let requested = self.ask(outbox, to_ask, now).await?;
            tracing::info!(
                requested,
                "asked for participants whose rate limit has reset"
            );
        }
        Ok(())
    }

    /// Asks for a keep-alive token touch of every linked participant whose token has been idle
    /// for `touch_after` (e.g. parked as dead-lettered for months): a refresh now keeps the grant
    /// from expiring unused. Each is asked at most once per interval, like syncs.
    async fn touch_idle_grants(
        &mut self,
        pool: &Database,
        outbox: &Outbox,
        now: DateTime<Utc>,
    ) -> anyhow::Result<usize> {
        let idle = idle_grants(pool, now, self.touch_after, self.lease)
            .await
            .context("cannot read idle grants")?;
        let interval = TimeDelta::from_std(self.interval).unwrap_or(TimeDelta::MAX);
        let mut touched = 0;
        for d in idle {
            if let Some((_, at)) = self.requested.get(&d.participant_id)
                && now - *at < interval
            {
                continue;
            }
            let job_id = outbox
                .request_sync(
                    &d.participant_id,
                    SyncTrigger::KeepAlive,
                    RequestShape::default(),
                )
                .await
                .with_context(|| {
                    format!("cannot publish a token touch for {}", d.participant_id)
                })?;
            tracing::info!(participant_id = %d.participant_id, %job_id, "asked for a keep-alive token touch");
            self.requested.insert(d.participant_id, (d.version, now));
            touched += 1;
        }
        Ok(touched)
    }

    /// The read-only pool, opened once the writer has created the database.
    async fn pool(&mut self) -> anyhow::Result<Option<Database>> {
        if let Some(pool) = &self.pool {
            return Ok(Some(pool.clone()));
        }
        match self.database.open_for_reading("dispatcher").await {
            Ok(pool) => {
                self.pool = Some(pool.clone());
                Ok(Some(pool))
            }
            Err(error @ DbError::NotInitialised(_)) => {
                tracing::warn!(
                    error = %error,
                    retry_in_secs = self.interval.as_secs(),
                    "no database yet, so no participants to schedule; looking again next interval"
                );
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Linked participants (a credential, a state with a live grant) whose refresh token was last
/// used `touch_after` or longer ago, with no live job.
pub async fn idle_grants(
    db: &Database,
    now: DateTime<Utc>,
    touch_after: Duration,
    lease: Duration,
) -> anyhow::Result<Vec<DueParticipant>> {
    let before = |d: Duration| instant_before(now, d);
    let rows: Vec<VersionedRow> = fetch!(db.exec(), sqlx::query_as(
            "SELECT p.participant_id, p.updated_at, p.retry_at FROM participants p
             JOIN credentials c ON c.participant_id = p.participant_id
             WHERE p.state NOT IN ('withdrawn', 'invited', 'revoked', 'consent_expired', 'needs_reconsent')
               AND (p.in_flight_job_id IS NULL OR p.in_flight_since IS NULL OR p.in_flight_since <= $2)
               AND coalesce(p.credential_used_at, p.last_success_at, p.consented_at, p.created_at) <= $1
             ORDER BY p.participant_id",
        )
        .bind(before(touch_after))
        .bind(before(lease)), all)?;
    Ok(due_rows(rows))
}

/// What the writer last did to a participant's row: when it changes, the writer has acted on
/// the participant. `updated_at` alone is not enough, as it keeps whole seconds: a grant and
/// its rate-limited outcome within the second of the request leave it as it was, and only the
/// new reset (`retry_at`) says that the request was answered and the participant is owed
/// another at that reset (a storm of `Retry-After: 1` found this).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowVersion {
    pub updated_at: UtcInstant,
    pub retry_at: Option<UtcInstant>,
}

/// A participant the schedule should ask a sync for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueParticipant {
    pub participant_id: ParticipantId,
    /// What the writer last did to the row, as far as the schedule can tell.
    pub version: RowVersion,
}

/// The participants due for a scheduled sync at `now`, most overdue first:
/// - `active` (every other state waits for a person, see [`ParticipantState`]);
/// - no job in flight, or the in-flight claim is older than `lease` (the job was lost);
/// - not waiting out a rate limit or retry (`retry_at` passed or unset);
/// - never synced, or last synced at least `interval` ago, or owed a sync that waited out a
///   rate limit (`retry_at` passed).
///
/// Never-synced participants (no `last_success_at`) come first.
pub async fn due_participants(
    db: &Database,
    now: DateTime<Utc>,
    interval: Duration,
    lease: Duration,
) -> anyhow::Result<Vec<DueParticipant>> {
    let before = |d: Duration| instant_before(now, d);
    let rows: Vec<VersionedRow> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT participant_id, updated_at, retry_at FROM participants
             WHERE state IN ($1, $5)
               AND (in_flight_job_id IS NULL OR in_flight_since IS NULL OR in_flight_since <= $2)
               AND (retry_at IS NULL OR retry_at <= $3)
               AND (last_success_at IS NULL OR last_success_at <= $4 OR retry_at IS NOT NULL)
             ORDER BY last_success_at NULLS FIRST, participant_id",
        )
        .bind(ParticipantState::Active.as_str())
        .bind(before(lease))
        .bind(UtcInstant::new(now))
        .bind(before(interval))
        .bind(ParticipantState::IntradayNotPermitted.as_str()),
        all
    )?;
    Ok(due_rows(rows))
}

/// The participants whose provider rate limit reset by `now` and that no job holds: the writer
/// released them with `retry_at` at the reset ([`Outcome::RateLimited`]). Served by the partial
/// index `participants_retry_at`.
///
/// [`Outcome::RateLimited`]: fitlink_shared::messages::Outcome::RateLimited
pub async fn rate_limit_resets(
    db: &Database,
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<DueParticipant>> {
    let rows: Vec<VersionedRow> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT participant_id, updated_at, retry_at FROM participants
             WHERE retry_at IS NOT NULL AND retry_at <= $1 AND in_flight_job_id IS NULL
               AND state IN ($2, $3)
             ORDER BY retry_at, participant_id",
        )
        .bind(UtcInstant::new(now))
        .bind(ParticipantState::Active.as_str())
        .bind(ParticipantState::IntradayNotPermitted.as_str()),
        all
    )?;
    Ok(due_rows(rows))
}

/// The instant `d` before `now` (the earliest instant the database stores, the start of year
/// 0000, if that is before it: every stored instant is at or after it).
fn instant_before(now: DateTime<Utc>, d: Duration) -> UtcInstant {
    let d = TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX);
    now.checked_sub_signed(d)
        .and_then(|at| UtcInstant::checked(at).ok())
        .unwrap_or_else(earliest_instant)
}

/// The earliest instant with a canonical text ([`UtcInstant::checked`]): 0000-01-01T00:00:00Z.
fn earliest_instant() -> UtcInstant {
    let midnight = chrono::NaiveDate::from_ymd_opt(0, 1, 1)
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .expect("0000-01-01 is a date");
    UtcInstant::new(midnight.and_utc())
}

/// A participant row as the schedule reads it: `(participant_id, updated_at, retry_at)`.
type VersionedRow = (String, UtcInstant, Option<UtcInstant>);

/// [`VersionedRow`]s as [`DueParticipant`]s, skipping (and logging) an id that is not valid.
fn due_rows(rows: Vec<VersionedRow>) -> Vec<DueParticipant> {
    rows.into_iter()
        .filter_map(|(id, updated_at, retry_at)| match ParticipantId::new(id) {
            Ok(participant_id) => Some(DueParticipant {
                participant_id,
                version: RowVersion {
                    updated_at,
                    retry_at,
                },
            }),
            Err(error) => {
                tracing::warn!(error = %error, "skipping a participant row with an invalid id");
                None
            }
        })
        .collect()
}
