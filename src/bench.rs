//! `fitlink bench`: throughput figures, measured on the real parts (RabbitMQ, SQLite, the
//! simulator over HTTP), never asserted in tests.

mod webhooks;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use clap::{Args, Subcommand};
use uuid::Uuid;

use fitlink_shared::broker::{self, Publisher, Topology};
use fitlink_shared::config::BrokerArgs;
use fitlink_shared::domain::{ParticipantId, Provider, Slice, UtcInstant};
use fitlink_shared::messages::{
    ImportBatch, ImportedParticipant, IntradayPoint, SliceResult, WriterCommand,
};
use fitlink_shared::secret::{Secret, TokenKey};

use crate::demo::{self, DemoArgs};
use crate::fleet::{self, Fleet, FleetEnv};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Writer throughput: a pre-filled results queue drained into SQLite by the writer process,
    /// beside the same batches applied in-process without the broker.
    Writer(WriterBench),
    /// Fleet throughput in participant-days/s against the simulator.
    Fleet(DemoArgs),
    /// Push-driven sync: device sync → data stored, through the provider's webhooks.
    Webhooks(webhooks::WebhookBench),
}

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
    #[arg(long, default_value = "fitlink-bench")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub broker: BrokerArgs,
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Writer(args) => writer(args).await,
        BenchCommand::Webhooks(args) => webhooks::run(args).await,
        BenchCommand::Fleet(args) => {
            let run = demo::run_fleet(&args).await?;
            println!(
                "fleet: {} × {} participants × {} days, {} workers × {} jobs, latency {} ms: {:.1} participant-days/s ({:.1} s); {:.1} provider requests per participant-day; worker peak RSS {} MiB",
                args.provider,
                args.participants,
                args.days,
                args.workers,
                args.concurrency,
                args.latency_ms,
                run.participant_days / run.elapsed.as_secs_f64(),
                run.elapsed.as_secs_f64(),
                run.provider_requests as f64 / run.participant_days.max(1.0),
                run.worker_peak_rss_kib
                    .iter()
                    .map(|k| (k / 1024).to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            );
            Ok(())
        }
    }
}

fn participants(n: usize) -> Vec<ParticipantId> {
    (0..n)
        .map(|i| ParticipantId::new(format!("bench-{i:05}")).expect("valid id"))
        .collect()
}

/// Synthetic slices: consecutive for each participant, `points` rows each.
fn slices(args: &WriterBench, start: DateTime<Utc>) -> Vec<WriterCommand> {
    let people = participants(args.participants);
    let half = args.points / 2;
    (0..args.slices)
        .map(|i| {
            let participant = &people[i % people.len()];
            let index = (i / people.len()) as i64;
            let slice_start = start + TimeDelta::minutes(index * half as i64);
            let slice_end = slice_start + TimeDelta::minutes(half as i64);
            let point = |m: usize, value: i64| IntradayPoint {
                datetime: UtcInstant::new(slice_start + TimeDelta::minutes(m as i64)),
                utc_offset_seconds: -18_000,
                value,
            };
            WriterCommand::StoreSlice(SliceResult {
                job_id: Uuid::nil(),
                participant_id: participant.clone(),
                provider: Provider::GoogleHealth,
                slice: Slice {
                    start: slice_start.into(),
                    end: slice_end.into(),
                },
                activity: vec![],
                heart_rate_zones: vec![],
                resting_heart_rate: vec![],
                heart_rate: (0..half).map(|m| point(m, 60 + (m % 40) as i64)).collect(),
                steps: (0..half).map(|m| point(m, (m % 90) as i64)).collect(),
            })
        })
        .collect()
}

fn import(key: &TokenKey, n: usize, start: DateTime<Utc>) -> WriterCommand {
    WriterCommand::ImportParticipants(ImportBatch {
        import_id: Uuid::now_v7(),
        source: "bench".into(),
        participants: participants(n)
            .into_iter()
            .map(|p| ImportedParticipant {
                sealed_refresh_token: key.seal(&p, &Secret::new("bench-token".into())),
                participant_id: p,
                provider: Provider::GoogleHealth,
                sync_from: start.into(),
                identity: None,
            })
            .collect(),
    })
}

async fn writer(args: WriterBench) -> anyhow::Result<()> {
    let start: DateTime<Utc> = "2026-10-01T00:00:00Z".parse()?;
    let key_text = TokenKey::generate();
    let key = TokenKey::parse(&key_text)?;
    let expected_rows = (args.slices * (args.points / 2) * 2) as i64;
    std::fs::create_dir_all(&args.dir)?;
    let commands = slices(&args, start);
    println!(
        "writer bench: {} slices × {} points = {expected_rows} intraday rows over {} participants",
        args.slices, args.points, args.participants
    );

    // 0. The ceiling: the same rows, bare multi-row INSERTs (128 rows a statement, 256 slices a
    //    transaction) into a fresh file with the same schema — what SQLite itself allows here.
    let ceiling = raw_ceiling(&args.dir.join("ceiling.db"), &commands).await?;
    println!(
        "  raw ceiling (bare batched INSERT):          {:>10.0} rows/s ({:.2} s)",
        expected_rows as f64 / ceiling.as_secs_f64(),
        ceiling.as_secs_f64()
    );

    // 1. In-process: the same batches through the writer's store, no broker.
    let path = args.dir.join("store.db");
    remove_db(&path);
    let mut store = fitlink_writer::Store::open(
        &fitlink_shared::config::DatabaseArgs::url(format!("sqlite://{}", path.display())),
        Duration::from_secs(3600),
    )
    .await?;
    store
        .apply(&[import(&key, args.participants, start)])
        .await?;
    let t = Instant::now();
    for batch in commands.chunks(256) {
        store.apply(batch).await?;
    }
    let in_process = t.elapsed();
    drop(store);
    println!(
        "  store (in process, 256 slices/transaction): {:>10.0} rows/s ({:.2} s)",
        expected_rows as f64 / in_process.as_secs_f64(),
        in_process.as_secs_f64()
    );

    // 2. Through the broker: pre-fill the results queue, then start a writer process and time
    //    until every row is committed.
    let path = args.dir.join("fitlink.db");
    remove_db(&path);
    let env = FleetEnv {
        amqp_url: args.broker.amqp_url.expose().clone(),
        namespace: demo::run_namespace(&args.broker, "bench"),
        database_url: format!("sqlite://{}", path.display()),
        token_key: key_text,
        google_api_base: "http://127.0.0.1:9".into(),
        google_token_url: "http://127.0.0.1:9/token".into(),
        client_id: String::new(),
        client_secret: String::new(),
        extra: vec![],
    };
    let broker_args = env.broker();
    let conn = broker::connect(&broker_args, "bench").await?;
    let topology = Topology::new(&env.namespace);
    topology.declare(&conn.create_channel().await?).await?;
    let publisher = Publisher::open(&conn).await?;
    publisher
        .publish_json(
            &topology.results[0],
            &import(&key, args.participants, start),
            vec![],
        )
        .await?;
    for command in &commands {
        publisher
            .publish_json(&topology.results[0], command, vec![])
            .await?;
    }
    let bin = std::env::current_exe()?;
    let mut fleet = Fleet::new(bin, env.clone(), &args.dir.join("logs"))?;
    let t = Instant::now();
    fleet.spawn("writer", &["writer"])?;
    let db = fleet::wait_for_database(&env.database_url, Duration::from_secs(30)).await?;
    fleet::wait_for(
        "every queued row to be committed",
        Duration::from_secs(600),
        || async {
            let counts = fleet::table_counts(&db).await?;
            let rows: i64 = counts
                .iter()
                .filter(|(t, _)| t.ends_with("_intraday"))
                .map(|(_, n)| n)
                .sum();
            Ok((rows >= expected_rows).then_some(()))
        },
    )
    .await
    .context("draining the results queue")?;
    let through_broker = t.elapsed();
    fleet.terminate_all().await;
    fleet.delete_queues().await?;
    let _ = conn.close(200, "done".into()).await;
    println!(
        "  writer process (queue → committed):       {:>10.0} rows/s ({:.2} s, includes start-up)",
        expected_rows as f64 / through_broker.as_secs_f64(),
        through_broker.as_secs_f64()
    );
    println!(
        "  writer process / raw ceiling:              {:>9.0} %",
        100.0 * ceiling.as_secs_f64() / through_broker.as_secs_f64()
    );
    Ok(())
}

/// Times bare batched inserts of the slices' intraday rows into a fresh database.
async fn raw_ceiling(
    path: &std::path::Path,
    commands: &[WriterCommand],
) -> anyhow::Result<Duration> {
    const ROWS_PER_STATEMENT: usize = 128;
    remove_db(path);
    let db = fitlink_shared::config::DatabaseArgs::url(format!("sqlite://{}", path.display()))
        .open_for_writing()
        .await?;
    let fitlink_shared::store::ByBackend::Sqlite(pool) = db.exec() else {
        anyhow::bail!("the SQLite ceiling needs a SQLite database");
    };
    let started = Instant::now();
    for batch in commands.chunks(256) {
        let mut tx = pool.begin().await?;
        for command in batch {
            let WriterCommand::StoreSlice(slice) = command else {
                continue;
            };
            for (table, value, points) in [
                ("heart_rate_intraday", "heart_rate_value", &slice.heart_rate),
                ("steps_intraday", "steps", &slice.steps),
            ] {
                for chunk in points.chunks(ROWS_PER_STATEMENT) {
                    let mut sql = format!(
                        "INSERT INTO {table} (participant_id, datetime, utc_offset_seconds, {value}, provider) VALUES "
                    );
                    sql.push_str(&vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", "));
                    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                    for p in chunk {
                        query = query
                            .bind(slice.participant_id.as_str())
                            .bind(p.datetime.to_text())
                            .bind(p.utc_offset_seconds)
                            .bind(p.value)
                            .bind("google-health");
                    }
                    query.execute(&mut *tx).await?;
                }
            }
        }
        tx.commit().await?;
    }
    let elapsed = started.elapsed();
    pool.close().await;
    Ok(elapsed)
}

fn remove_db(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}
