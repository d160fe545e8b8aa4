//! `fitlink bench writer`: how fast the writer commits intraday rows, beside what the database
//! itself allows on the same rows in the same run.
//!
//! Every measurement gets a fresh database of its own beside `--database-url` (`…_ceiling`,
//! `…_store`, `…_writer_p2`, …), dropped and re-created first, so none pays for another's rows:
//!
//! 1. the database's loads with no writer around them ([`LoadMethod`]): the writer's own insert,
//!    the alternatives it was measured against, and the ceiling (no conflict handling);
//! 2. the writer's store in process: whole `StoreSlice` commands (cursor, slice ledger), no
//!    broker;
//! 3. writer processes draining pre-filled results queues, for each `--partitions` count, with
//!    as many writers as partitions where the database takes several (one otherwise).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use clap::Args;
use uuid::Uuid;

use fitlink_shared::broker::{self, Publisher, Topology};
use fitlink_shared::config::{BrokerArgs, DatabaseArgs};
use fitlink_shared::domain::{ParticipantId, Provider, Slice, UtcInstant};
use fitlink_shared::messages::{
    ImportBatch, ImportedParticipant, IntradayPoint, SliceResult, WriterCommand,
};
use fitlink_shared::secret::{Secret, TokenKeys};
use fitlink_shared::store::admin::{drop_database, recreate_database, sibling_url};
use fitlink_shared::store::bulk::{IntradayRows, LoadMethod};
use fitlink_shared::store::{Backend, IntradayTable};

use super::daily_mix;
use crate::demo;
use crate::fleet::{self, Fleet, FleetEnv};

/// Slices per transaction, as the writer batches them under load.
const SLICES_PER_TRANSACTION: usize = 256;

/// The completeness ledger's table: derived from the rows the writer stores, not part of the
/// workload's count.
const LEDGER: &str = "coverage_daily";

#[derive(Args, Debug)]
pub struct WriterBench {
    /// Slice messages to queue.
    #[arg(long, default_value_t = 400)]
    pub slices: usize,
    /// Intraday points per slice (half heart rate, half steps).
    #[arg(long, default_value_t = 1440)]
    pub points: usize,
    /// Participants the slices are spread over.
    #[arg(long, default_value_t = 20)]
    pub participants: usize,
    /// Where logs (and the SQLite files) go.
    #[arg(long, default_value = "fitlink-bench")]
    pub dir: PathBuf,
    /// The bench's databases are made beside this one (its name plus `_ceiling`, `_store`,
    /// `_writer_pN`), dropped and re-created first: never point it at a study's database
    /// server without a name of its own. Default: `sqlite://DIR/bench.db`.
    #[arg(long)]
    pub database_url: Option<String>,
    /// Results partitions to run the writer processes with, one run each (comma-separated), with
    /// as many writers as partitions where the database takes several writers (PostgreSQL).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub partitions: Vec<u16>,
    /// Mix one day of every daily family (sleep with its levels, the nightly metrics, AZM,
    /// activity, zones, a device) into each slice that starts a UTC day, as a real sync does;
    /// `false` times intraday points alone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub daily_families: bool,
    #[command(flatten)]
    pub broker: BrokerArgs,
}

pub async fn run(args: WriterBench) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let base = match &args.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", args.dir.join("bench.db").display()),
    };
    let backend = Backend::of_url(&base)?;
    if let Some(bad) = args.partitions.iter().find(|p| !(1..=64).contains(*p)) {
        anyhow::bail!("--partitions {bad}: a partition count is 1 to 64");
    }
    let start: DateTime<Utc> = "2026-10-01T00:00:00Z".parse()?;
    let workload = Workload::new(&args, start);
    let rows = workload.rows();
    let daily_rows = workload.daily_rows();
    println!(
        "writer bench on {}: {} slices × {} points = {rows} intraday rows over {} participants, \
         {SLICES_PER_TRANSACTION} slices a transaction",
        backend.as_str(),
        args.slices,
        args.points,
        args.participants
    );
    if daily_rows > 0 {
        println!(
            "  plus {daily_rows} rows of daily families in the writer's runs (every family of a \
             day in each slice that starts one)"
        );
    }
    println!(
        "  rows/s below count intraday rows only: the writer's share of the ceiling includes \
         the daily families and keeping the completeness ledger (every day a slice touches)"
    );

    // 1. The database's own loads, the ceiling last.
    let mut ceiling = None;
    for &method in LoadMethod::available(backend) {
        let url = sibling_url(&base, method.name())?;
        let took = workload.time_load(&url, method).await?;
        report(method.describe(backend), rows, took, None);
        if method == LoadMethod::Bare {
            ceiling = Some(took);
        }
        drop_database(&url).await?;
    }
    let ceiling = ceiling.context("every backend has a ceiling")?;

    // 2. The writer's store in process.
    let url = sibling_url(&base, "store")?;
    let took = workload.time_store(&url).await?;
    report("writer's store in process", rows, took, Some(ceiling));
    drop_database(&url).await?;

    // 3. Writer processes through the broker.
    for &partitions in &args.partitions {
        let url = sibling_url(&base, &format!("writer_p{partitions}"))?;
        let (writers, took) = workload
            .time_writer_processes(&args, &url, partitions)
            .await
            .with_context(|| format!("writer processes with {partitions} partitions"))?;
        report(
            &format!("{writers} writer process(es), {partitions} partition(s), queue → commit"),
            rows,
            took,
            Some(ceiling),
        );
        drop_database(&url).await?;
    }
    Ok(())
}

fn report(what: &str, rows: usize, took: Duration, ceiling: Option<Duration>) {
    let share = ceiling
        .map(|c| {
            format!(
                "  {:>4.0} % of ceiling",
                100.0 * c.as_secs_f64() / took.as_secs_f64()
            )
        })
        .unwrap_or_default();
    println!(
        "  {what:<58} {:>10.0} rows/s ({:>6.2} s){share}",
        rows as f64 / took.as_secs_f64(),
        took.as_secs_f64()
    );
}

/// The bench's rows: consecutive slices for each participant.
pub(super) struct Workload {
    start: DateTime<Utc>,
    participants: Vec<ParticipantId>,
    commands: Vec<WriterCommand>,
    key_text: Secret<String>,
}

impl Workload {
    pub(super) fn new(args: &WriterBench, start: DateTime<Utc>) -> Workload {
        let participants: Vec<ParticipantId> = (0..args.participants.max(1))
            .map(|i| ParticipantId::new(format!("bench-{i:05}")).expect("valid id"))
            .collect();
        let half = args.points / 2;
        let commands = (0..args.slices)
            .map(|i| {
                let participant = &participants[i % participants.len()];
                let index = (i / participants.len()) as i64;
                let slice_start = start + TimeDelta::minutes(index * half as i64);
                let point = |m: usize, value: i64| IntradayPoint {
                    datetime: UtcInstant::new(slice_start + TimeDelta::minutes(m as i64)),
                    utc_offset_seconds: -18_000,
                    value,
                };
                let starts_a_day = slice_start.time() == chrono::NaiveTime::MIN;
                let (daily, devices) = if args.daily_families && starts_a_day {
                    let (daily, devices) = daily_mix::day(slice_start.date_naive(), i as i64);
                    (daily, Some(devices))
                } else {
                    (Default::default(), None)
                };
                WriterCommand::StoreSlice(SliceResult {
                    job_id: Uuid::nil(),
                    participant_id: participant.clone(),
                    provider: Provider::GoogleHealth,
                    slice: Slice {
                        start: slice_start.into(),
                        end: (slice_start + TimeDelta::minutes(half as i64)).into(),
                    },
                    daily,
                    devices,
                    time_zone: None,
                    heart_rate: (0..half).map(|m| point(m, 60 + (m % 40) as i64)).collect(),
                    steps: (0..half).map(|m| point(m, (m % 90) as i64)).collect(),
                })
            })
            .collect();
        Workload {
            start,
            participants,
            commands,
            key_text: fitlink_shared::secret::TokenKey::generate(),
        }
    }

    fn slices(&self) -> impl Iterator<Item = &SliceResult> {
        self.commands.iter().filter_map(|c| match c {
            WriterCommand::StoreSlice(s) => Some(s),
            _ => None,
        })
    }

    /// Intraday rows, the ones every load method writes.
    pub(super) fn rows(&self) -> usize {
        self.slices()
            .map(|s| s.heart_rate.len() + s.steps.len())
            .sum()
    }

    /// Rows of the daily families and device snapshots mixed in (the store writes them; the
    /// bare loads do not).
    fn daily_rows(&self) -> usize {
        self.slices()
            .map(|s| s.daily.rows() + s.devices.as_ref().map_or(0, |d| d.devices.len()))
            .sum()
    }

    /// Each participant's cursor once every slice is committed.
    fn final_cursors(&self) -> HashMap<String, UtcInstant> {
        let mut cursors = HashMap::new();
        for s in self.slices() {
            let end = cursors
                .entry(s.participant_id.as_str().to_owned())
                .or_insert(s.slice.end);
            *end = (*end).max(s.slice.end);
        }
        cursors
    }

    fn import(&self) -> ImportBatch {
        let key = TokenKeys::parse(&self.key_text).expect("a generated key parses");
        ImportBatch {
            import_id: Uuid::now_v7(),
            source: "bench".into(),
            participants: self
                .participants
                .iter()
                .map(|p| ImportedParticipant {
                    sealed_refresh_token: key.seal(p, &Secret::new("bench-token".into())),
                    participant_id: p.clone(),
                    provider: Provider::GoogleHealth,
                    sync_from: self.start.into(),
                    identity: None,
                })
                .collect(),
        }
    }

    /// Loads every slice's rows by `method` into a fresh database, in transactions of
    /// [`SLICES_PER_TRANSACTION`] slices.
    async fn time_load(&self, url: &str, method: LoadMethod) -> anyhow::Result<Duration> {
        recreate_database(url).await?;
        let db = DatabaseArgs::url(url).open_for_writing().await?;
        db.prepare_intraday(self.slices().flat_map(|s| [s.slice.start, s.slice.end]))
            .await?;
        let slices: Vec<&SliceResult> = self.slices().collect();
        let started = Instant::now();
        let mut written = 0;
        for batch in slices.chunks(SLICES_PER_TRANSACTION) {
            let rows: Vec<IntradayRows> = batch
                .iter()
                .flat_map(|s| {
                    [
                        (IntradayTable::HeartRate, &s.heart_rate),
                        (IntradayTable::Steps, &s.steps),
                    ]
                    .map(|(table, points)| IntradayRows {
                        table,
                        participant: s.participant_id.as_str(),
                        provider: s.provider.as_str(),
                        points,
                    })
                })
                .collect();
            written += db.load_intraday(method, &rows).await?;
        }
        let took = started.elapsed();
        db.close().await;
        self.check_written(&format!("{method:?} load"), written)?;
        Ok(took)
    }

    /// Applies the commands through the writer's store in process.
    async fn time_store(&self, url: &str) -> anyhow::Result<Duration> {
        recreate_database(url).await?;
        self.apply_through_store(url).await
    }

    /// Imports the workload's participants into the database at `url` (which may hold others)
    /// and applies every command through the writer's store; returns how long the commands
    /// took.
    pub(super) async fn apply_through_store(&self, url: &str) -> anyhow::Result<Duration> {
        let mut store =
            fitlink_writer::Store::open(&DatabaseArgs::url(url), Duration::from_secs(3600)).await?;
        store
            .apply(&[WriterCommand::ImportParticipants(self.import())])
            .await?;
        let started = Instant::now();
        let (mut written, mut daily) = (0, 0);
        for batch in self.commands.chunks(SLICES_PER_TRANSACTION) {
            let applied = store.apply(batch).await?;
            written += IntradayTable::ALL
                .iter()
                .filter_map(|t| applied.rows.get(t.table()))
                .sum::<u64>();
            // The completeness ledger is derived from the rows, not part of the workload.
            daily += applied
                .rows
                .iter()
                .filter(|(t, _)| IntradayTable::ALL.iter().all(|i| i.table() != **t))
                .filter(|(t, _)| **t != LEDGER)
                .map(|(_, n)| n)
                .sum::<u64>();
        }
        let took = started.elapsed();
        drop(store);
        self.check_written("the writer's store", written)?;
        anyhow::ensure!(
            daily == self.daily_rows() as u64,
            "the writer's store wrote {daily} daily-family rows, not the workload's {}",
            self.daily_rows()
        );
        Ok(took)
    }

    /// A figure counts only if every row went in exactly once.
    fn check_written(&self, what: &str, written: u64) -> anyhow::Result<()> {
        anyhow::ensure!(
            written == self.rows() as u64,
            "{what} wrote {written} intraday rows, not the workload's {}",
            self.rows()
        );
        Ok(())
    }

    /// Pre-fills `partitions` results queues, starts the writers and times until every
    /// participant's cursor covers all its slices (the cursor moves in the transaction that
    /// stores the slice). Returns the number of writer processes.
    async fn time_writer_processes(
        &self,
        args: &WriterBench,
        url: &str,
        partitions: u16,
    ) -> anyhow::Result<(u16, Duration)> {
        drop_database(url).await?;
        let backend = Backend::of_url(url)?;
        let env = FleetEnv {
            amqp_url: args.broker.amqp_url.expose().clone(),
            namespace: demo::run_namespace(&args.broker, "bench"),
            database_url: url.to_owned(),
            token_key: self.key_text.clone(),
            google_api_base: "http://127.0.0.1:9".into(),
            google_token_url: "http://127.0.0.1:9/token".into(),
            client_id: String::new(),
            client_secret: String::new(),
            extra: vec![("FITLINK_RESULTS_PARTITIONS".into(), partitions.to_string())],
        };
        let conn = broker::connect(&env.broker(), "bench").await?;
        let topology = Topology::partitioned(&env.namespace, partitions);
        topology.declare(&conn.create_channel().await?).await?;
        let publisher = Publisher::open(&conn).await?;
        for (partition, part) in self.import().split_by_partition(partitions.into()) {
            let import = WriterCommand::ImportParticipants(part);
            publisher
                .publish_json(&topology.results[partition], &import, vec![])
                .await?;
        }
        for command in &self.commands {
            let WriterCommand::StoreSlice(slice) = command else {
                continue;
            };
            let queue = topology.results_for(slice.participant_id.as_str());
            publisher.publish_json(queue, command, vec![]).await?;
        }
        let _ = conn.close(200, "queued".into()).await;

        let mut fleet = Fleet::new(
            std::env::current_exe()?,
            env.clone(),
            &args.dir.join("logs"),
        )?;
        let writers = if backend.allows_concurrent_writers() {
            partitions
        } else {
            1
        };
        let started = Instant::now();
        if writers == 1 {
            fleet.spawn("writer", &["writer"])?;
        } else {
            for p in 0..writers {
                let partition = p.to_string();
                fleet.spawn(
                    &format!("writer-{p}"),
                    &["writer", "--partitions", &partition],
                )?;
            }
        }
        let outcome = self
            .wait_until_committed(&env.database_url, &mut fleet)
            .await;
        let took = started.elapsed();
        fleet.terminate_all().await;
        fleet.delete_queues().await?;
        outcome?;
        Ok((writers, took))
    }

    /// Polls the cursors (committed by other processes: only observable by looking), failing
    /// early if a writer exits.
    async fn wait_until_committed(&self, url: &str, fleet: &mut Fleet) -> anyhow::Result<()> {
        let expected = self.final_cursors();
        let db = fleet::wait_for_database(url, Duration::from_secs(60)).await?;
        let deadline = Instant::now() + Duration::from_secs(900);
        loop {
            fleet.check_alive()?;
            let cursors: Vec<(String, UtcInstant)> = fitlink_shared::fetch!(
                db.exec(),
                sqlx::query_as("SELECT participant_id, sync_cursor FROM participants"),
                all
            )?;
            let done = cursors
                .iter()
                .filter(|(p, c)| expected.get(p).is_some_and(|e| c >= e))
                .count();
            if done == expected.len() {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "timed out waiting for every queued slice to be committed ({done} of {} participants)",
                expected.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        db.close().await;
        Ok(())
    }
}
