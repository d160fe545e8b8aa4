//! `fitlink chaos`: run real work, break things on purpose, heal, drain, and count what was lost,
//! duplicated or wrong — the evidence that a program can leave fitlink running for years.
//!
//! The fleet runs as real processes (simulator, `--writers` active writers sharing
//! `--partitions` results partitions plus one hot standby on all of them, a dispatcher,
//! workers) against the local RabbitMQ and a SQLite or PostgreSQL database. A fault schedule
//! drawn from the seed SIGKILLs and restarts workers, active writers and the dispatcher, starts
//! processes armed at a named fault point (`fitlink_shared::faults`: they abort exactly there,
//! e.g. between a token refresh and its storage, or after a commit and before its ack), optionally restarts the broker, and raises simulator storms (5xx,
//! 429 with and without `Retry-After`, slow and truncated responses). Devices sync on the way,
//! and the simulator's webhooks reach the dispatcher's portal: signed notifications (that drive
//! syncs), floods of one notification, and forged ones. Then it heals, replays the
//! dead-letter queue, waits until every participant is synced or stopped with a reason, and
//! checks every row against the simulator's ground truth. The seed is printed so a failure can be
//! replayed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use fitlink_shared::config::BrokerArgs;
use fitlink_shared::domain::UtcInstant;
use fitlink_shared::fetch;
use fitlink_shared::secret::TokenKeys;
use fitlink_simulator::SimConfig;

use crate::demo::run_namespace;
use crate::fleet::{self, Fleet, FleetEnv};

/// The Google webhook secret both sides of a chaos run use.
const WEBHOOK_SECRET: &str = "Bearer chaos-webhook-secret";

#[derive(Args, Debug, Clone)]
pub struct ChaosArgs {
    /// Synthetic participants.
    #[arg(long, default_value_t = 200)]
    pub participants: usize,
    /// Days of history each.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// The fault schedule's seed (random if not given; always printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Fault events in the schedule.
    #[arg(long, default_value_t = 12)]
    pub faults: usize,
    /// Seconds over which the faults are spread.
    #[arg(long, default_value_t = 40)]
    pub fault_window_secs: u64,
    /// Every Nth participant is linked through the legacy Fitbit API (rotating tokens).
    #[arg(long, default_value_t = 4)]
    pub fitbit_every: usize,
    /// Every Nth participant has 1-second heart rate.
    #[arg(long, default_value_t = 10)]
    pub fine_hr_every: usize,
    /// Also restart the broker (`rabbitmqctl stop_app` / `start_app`). Only where nothing else
    /// uses this RabbitMQ: every client of it is disconnected.
    #[arg(long)]
    pub broker_restart: bool,
    /// Give up healing after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
    #[arg(long, default_value = "fitlink-chaos")]
    pub dir: PathBuf,
    /// The database: a new SQLite file in `--dir` by default, or an empty (or not yet
    /// existing) PostgreSQL database (`postgres://…`).
    #[arg(long = "database-url")]
    pub database_url: Option<String>,
    /// Active writer processes (each with its share of the partitions; PostgreSQL only for
    /// more than one). One more writer on every partition stands by.
    #[arg(long, default_value_t = 1)]
    pub writers: usize,
    /// Results partitions (`FITLINK_RESULTS_PARTITIONS`).
    #[arg(long, default_value_t = 1)]
    pub partitions: u16,
    #[command(flatten)]
    pub broker: BrokerArgs,
}

mod cast;
mod check;
mod fault;

use cast::Cast;
use fault::{Fault, Target};

/// The simulator's control API (`/_sim/...`).
struct SimControl {
    http: reqwest::Client,
    base: String,
}

impl SimControl {
    /// POSTs `body` to `path`; an answer that is not a success is an error.
    async fn post(&self, path: &str, body: serde_json::Value) -> anyhow::Result<()> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "simulator {}",
            response.status()
        );
        Ok(())
    }
}

/// The `--partitions` of each of `writers` active writers: partition p goes to writer
/// p mod writers.
fn writer_shares(writers: usize, partitions: u16) -> Vec<String> {
    let writers = writers.clamp(1, usize::from(partitions.max(1)));
    (0..writers)
        .map(|w| {
            (0..usize::from(partitions.max(1)))
                .filter(|p| p % writers == w)
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(rand::random);
    println!(
        "fitlink chaos: seed {seed} — {} participants × {} days, {} workers, {} faults{}",
        args.participants,
        args.days,
        args.workers,
        args.faults,
        if args.broker_restart {
            ", broker restarts"
        } else {
            ""
        }
    );
    println!(
        "replay with: fitlink chaos --seed {seed} --participants {} --days {} --workers {} --faults {} --writers {} --partitions {}{}{}",
        args.participants,
        args.days,
        args.workers,
        args.faults,
        args.writers,
        args.partitions,
        args.database_url
            .as_deref()
            .map(|url| format!(" --database-url {}", fitlink_shared::store::redact_url(url)))
            .unwrap_or_default(),
        if args.broker_restart {
            " --broker-restart"
        } else {
            ""
        }
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let failures = drive(&args, &mut rng).await?;
    if failures.is_empty() {
        println!("\nPASS (seed {seed})");
        Ok(())
    } else {
        for f in &failures {
            println!("FAIL: {f}");
        }
        bail!(
            "chaos run failed (seed {seed}): {} problem(s)",
            failures.len()
        )
    }
}

/// Runs the whole scenario; returns the problems found (empty: pass).
async fn drive(args: &ChaosArgs, rng: &mut StdRng) -> anyhow::Result<Vec<String>> {
    let bin = std::env::current_exe()?;
    std::fs::create_dir_all(&args.dir)?;
    let database_url = crate::demo::fresh_database(&args.dir, args.database_url.as_deref()).await?;
    if args.writers > 1
        && !fitlink_shared::store::Backend::of_url(&database_url)?.allows_concurrent_writers()
    {
        bail!(
            "--writers {} needs a database that takes several writers: give --database-url \
             postgres://… (SQLite takes one writer process)",
            args.writers
        );
    }
    if args.writers > usize::from(args.partitions) {
        bail!(
            "--writers {} is more than --partitions {}: each active writer needs a partition",
            args.writers,
            args.partitions
        );
    }
    let sim_args: Vec<String> = [
        "--participants",
        &args.participants.to_string(),
        "--days",
        &args.days.to_string(),
        "--fine-hr-every",
        &args.fine_hr_every.to_string(),
        "--legacy-refresh-grace-secs",
        "600",
        // A legacy 429 defers the participant until the quota window resets (as Fitbit's
        // `Fitbit-Rate-Limit-Reset` says). With the real clock hour as the window, a run's
        // length would depend on the minute it starts; a one-minute window keeps the same
        // mechanics and lets the run heal in minutes.
        "--legacy-rate-limit-window-secs",
        "60",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut sim_config = SimConfig::from_flags(&sim_args)?;
    let sim = fleet::start_simulator(&bin, &sim_args, &args.dir.join("simulator.log")).await?;
    let http = fitlink_shared::provider::http_client();
    let control = SimControl {
        http: http.clone(),
        base: sim.base_url.clone(),
    };

    let mut env = FleetEnv::simulated(
        args.broker.amqp_url.expose(),
        run_namespace(&args.broker, "chaos"),
        database_url,
        &sim.base_url,
    );
    env.extra.extend(
        [
            ("FITLINK_SYNC_INTERVAL_SECS", "20"),
            ("FITLINK_MAX_ATTEMPTS", "8"),
            ("FITLINK_SHUTDOWN_GRACE_SECS", "5"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    env.extra.push((
        "FITLINK_RESULTS_PARTITIONS".to_owned(),
        args.partitions.to_string(),
    ));
    // The dispatcher serves the webhooks; the simulator's devices notify it.
    let portal_port = fleet::free_port()?;
    let portal = format!("http://127.0.0.1:{portal_port}");
    env.extra.extend([
        (
            "FITLINK_PORTAL_ADDR".to_owned(),
            format!("127.0.0.1:{portal_port}"),
        ),
        (
            "FITLINK_GOOGLE_WEBHOOK_SECRET".to_owned(),
            WEBHOOK_SECRET.to_owned(),
        ),
        (
            "FITLINK_GOOGLE_WEBHOOK_KEYSET".to_owned(),
            format!("{}/_sim/webhooks/keyset.json", sim.base_url),
        ),
        ("FITLINK_WEBHOOK_COALESCE_MS".to_owned(), "300".to_owned()),
    ]);
    control
        .post(
            "/_sim/webhooks",
            json!({
                "google_webhook_url": format!("{portal}/webhooks/google"),
                "google_webhook_secret": WEBHOOK_SECRET,
                "fitbit_webhook_url": format!("{portal}/webhooks/fitbit"),
            }),
        )
        .await?;
    let token_key = env.token_key.clone();
    let mut cast = Cast {
        fleet: Fleet::new(bin, env.clone(), &args.dir.join("logs"))?,
        next: 0,
        workers: Vec::new(),
        writers: Vec::new(),
        doomed: Vec::new(),
        dispatcher: String::new(),
    };
    // `--writers` active writers share the partitions round-robin; one more on every partition
    // stands by.
    let shares = writer_shares(args.writers, args.partitions);
    cast.spawn_writer(&shares[0])?;
    let db = fleet::wait_for_database(&env.database_url, Duration::from_secs(30)).await?;
    for share in &shares[1..] {
        cast.spawn_writer(share)?;
    }
    cast.spawn_writer("all")?;

    // A few participants revoke access before the run: they must end `revoked`, with a reason.
    let roster = fitlink_simulator::roster(&sim_config);
    let revoked: Vec<String> = roster
        .iter()
        .filter(|_| rng.random_bool(0.03))
        .map(|p| p.participant_id.clone())
        .collect();
    for id in &revoked {
        control
            .post(&format!("/_sim/participants/{id}/revoke"), json!({}))
            .await?;
    }
    let fitbit_ids: Vec<String> = roster
        .iter()
        .enumerate()
        .filter(|(i, _)| args.fitbit_every > 0 && i % args.fitbit_every == args.fitbit_every - 1)
        .map(|(_, p)| p.participant_id.clone())
        .collect();
    let csv = mixed_roster(&sim_config, &fitbit_ids);
    let csv_path = args.dir.join("participants.csv");
    std::fs::write(&csv_path, csv)?;
    env.import(&csv_path).await?;
    let key = TokenKeys::parse(&token_key)?;
    let database = env.database();

    for _ in 0..args.workers {
        let w = cast.spawn("worker", &[])?;
        cast.workers.push(w);
    }
    cast.replace_dispatcher(&[]).await?;

    // The fault schedule.
    let started = Instant::now();
    let mut at: Vec<u64> = (0..args.faults)
        .map(|_| rng.random_range(0..args.fault_window_secs.max(1) * 1000))
        .collect();
    at.sort_unstable();
    for ms in at {
        let due = started + Duration::from_millis(ms);
        tokio::time::sleep_until(due.into()).await;
        let fault = Fault::draw(rng, args.broker_restart);
        println!("{:>6.1}s  {fault:?}", started.elapsed().as_secs_f64());
        fault
            .strike(
                &mut Target {
                    cast: &mut cast,
                    sim: &control,
                    roster: &roster,
                    sim_config: &mut sim_config,
                    active_writers: args.writers,
                },
                rng,
            )
            .await?;
    }

    // Heal: faults off, a full cast, the dead letters replayed.
    println!("{:>6.1}s  healing", started.elapsed().as_secs_f64());
    control.post("/_sim/faults", json!({})).await?;
    cast.disarm(args.workers).await?;
    let heal_deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    // The devices' latest syncs as the simulator's clock now has them.
    let latest: BTreeMap<String, String> = fitlink_simulator::roster(&sim_config)
        .iter()
        .map(|p| {
            let minute = p.latest_sync.timestamp() / 60 * 60;
            let floor = chrono::DateTime::from_timestamp(minute, 0).unwrap_or(p.latest_sync);
            (
                p.participant_id.clone(),
                fitlink_shared::domain::format_instant(floor),
            )
        })
        .collect();
    let mut replayed_at = Instant::now() - Duration::from_secs(3600);
    loop {
        if replayed_at.elapsed() > Duration::from_secs(15) {
            fitlink_dispatcher::dlq_replay(
                &env.broker(),
                &database,
                fitlink_dispatcher::ReplaySelection::All,
            )
            .await
            .context("replaying the dead letters")?;
            replayed_at = Instant::now();
        }
        let rows: Vec<(String, String, UtcInstant, Option<String>)> = fetch!(
            db.exec(),
            sqlx::query_as(
                "SELECT participant_id, state, sync_cursor, in_flight_job_id FROM participants",
            ),
            all
        )?;
        // The simulator's latest syncs are canonical text, whose order is time order.
        let rows: Vec<(String, String, String, Option<String>)> = rows
            .into_iter()
            .map(|(id, state, cursor, in_flight)| (id, state, cursor.to_text(), in_flight))
            .collect();
        let pending = rows
            .iter()
            .filter(|(id, state, cursor, in_flight)| {
                let syncing = state == "active" || state == "intraday_not_permitted";
                in_flight.is_some() || (syncing && latest.get(id).is_some_and(|l| cursor < l))
            })
            .count();
        if pending == 0 {
            break;
        }
        if Instant::now() >= heal_deadline {
            println!("{pending} participants still syncing at the deadline");
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!(
        "{:>6.1}s  drained; checking",
        started.elapsed().as_secs_f64()
    );

    let problems = check::check(
        &db,
        &sim_config,
        &http,
        &sim.base_url,
        &key,
        &fitbit_ids,
        &revoked,
        &latest,
    )
    .await?;
    let unclean = cast.fleet.terminate_all().await;
    let _ = fleet::delete_queues(&env.broker()).await;
    if !unclean.is_empty() {
        println!("note: processes that did not stop cleanly on SIGTERM: {unclean:?}");
    }
    Ok(problems)
}

/// The roster as one import file: Google Health for most, legacy Fitbit for `fitbit_ids`.
fn mixed_roster(config: &SimConfig, fitbit_ids: &[String]) -> String {
    let google = fitlink_simulator::roster_csv_for(config, "google-health");
    let fitbit = fitlink_simulator::roster_csv_for(config, "fitbit");
    let is_fitbit = |line: &str| {
        fitbit_ids
            .iter()
            .any(|id| line.starts_with(&format!("{id},")))
    };
    let mut lines = google.lines();
    let mut out = format!("{}\n", lines.next().unwrap_or_default());
    for line in lines.filter(|l| !is_fitbit(l)) {
        out.push_str(line);
        out.push('\n');
    }
    for line in fitbit.lines().skip(1).filter(|l| is_fitbit(l)) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// `rabbitmqctl stop_app` then `start_app`: every connection drops; roles reconnect.
async fn restart_broker() -> anyhow::Result<()> {
    for step in [&["stop_app"][..], &["start_app"], &["await_startup"]] {
        let status = tokio::process::Command::new("rabbitmqctl")
            .args(step)
            .stdout(std::process::Stdio::null())
            .status()
            .await
            .context("running rabbitmqctl")?;
        anyhow::ensure!(status.success(), "rabbitmqctl {step:?} failed");
        if step == ["stop_app"] {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    Ok(())
}
