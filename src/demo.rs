//! `fitlink demo`: the whole fleet on this machine against the simulator — writer, workers,
//! dispatcher as separate processes — then a summary of what was stored.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;

use fitlink_shared::config::BrokerArgs;
use fitlink_simulator::SimConfig;

use crate::fleet::{self, Fleet, FleetEnv};

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Synthetic participants.
    #[arg(long, default_value_t = 50)]
    pub participants: usize,
    /// Days of history each.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Worker processes.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Concurrent jobs per worker.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u16,
    /// Simulated provider latency per request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Where the database and the process logs go (kept afterwards for inspection).
    #[arg(long, default_value = "fitlink-demo")]
    pub dir: PathBuf,
    /// The broker; the run uses its own namespace under `--namespace` and deletes its queues.
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Link the participants through `google-health` or the legacy `fitbit` API.
    #[arg(long, default_value = "google-health", value_parser = ["google-health", "fitbit"])]
    pub provider: String,
    /// Every Nth participant has 1-second heart rate (0: none).
    #[arg(long, default_value_t = 0)]
    pub fine_hr_every: usize,
    /// The simulator's clock: the trackers' latest sync (RFC 3339). `fitlink demo` uses now,
    /// so the completeness ledger and cohort compliance read like a study running today;
    /// benchmarks keep the simulator's default week, which crosses a DST change.
    #[arg(long)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Give up if the fleet has not synced everyone within this many seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout_secs: u64,
    /// The database to fill: a new SQLite file in `--dir` by default, or a PostgreSQL database
    /// (`postgres://…`) that must be empty or not exist yet (the writer creates it).
    #[arg(long = "database-url")]
    pub database_url: Option<String>,
    /// Keep the fleet running afterwards with the participant portal and the coordinators'
    /// console on the demo's data, and print how to sign in; Ctrl-C stops everything.
    #[arg(long)]
    pub console: bool,
}

impl DemoArgs {
    /// The run's database URL.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| default_database(&self.dir))
    }
}

fn default_database(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("fitlink.db").display())
}

/// The URL of an empty database for a run (demo, bench, chaos): the SQLite file in `dir`,
/// removed first, or the given database once it is known to hold no participants.
pub async fn fresh_database(dir: &std::path::Path, url: Option<&str>) -> anyhow::Result<String> {
    match url {
        None => {
            let db_path = dir.join("fitlink.db");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", db_path.display()));
            }
            Ok(default_database(dir))
        }
        Some(url) => {
            refuse_a_used_database(url).await?;
            Ok(url.to_owned())
        }
    }
}

/// What a demo (or a fleet benchmark) run measured.
pub struct FleetRun {
    pub participants: i64,
    /// Participants that stopped with a reason instead of syncing (see `fitlink status`).
    pub stopped: i64,
    pub participant_days: f64,
    pub elapsed: Duration,
    pub table_counts: Vec<(&'static str, i64)>,
    /// Rows of the completeness ledger.
    pub ledger_rows: i64,
    /// Requests the simulated provider answered (token endpoints included).
    pub provider_requests: u64,
    /// Each worker's peak resident memory (VmHWM), in KiB, where the OS tells.
    pub worker_peak_rss_kib: Vec<u64>,
}

pub async fn run(mut args: DemoArgs) -> anyhow::Result<()> {
    args.until.get_or_insert_with(chrono::Utc::now);
    println!(
        "fitlink demo: {} participants × {} days, {} workers × {} jobs, simulator latency {} ms",
        args.participants, args.days, args.workers, args.concurrency, args.latency_ms
    );
    if args.console {
        return run_with_console(&args).await;
    }
    let outcome = run_fleet(&args).await?;
    println!(
        "\nsynced {} participants ({:.0} participant-days) in {:.1} s: {:.1} participant-days/s",
        outcome.participants,
        outcome.participant_days,
        outcome.elapsed.as_secs_f64(),
        outcome.participant_days / outcome.elapsed.as_secs_f64()
    );
    if outcome.stopped > 0 {
        println!(
            "{} participants stopped with a reason; see `fitlink status`",
            outcome.stopped
        );
    }
    println!("rows stored:");
    for (table, n) in &outcome.table_counts {
        println!("  {table:<28} {n:>10}");
    }
    println!(
        "  {:<28} {:>10}  (participant-days × families; fitlink coverage)",
        "coverage_daily", outcome.ledger_rows
    );
    let url = fitlink_shared::store::redact_url(&args.database_url());
    println!(
        "\ndatabase: {url}  (try: FITLINK_DATABASE_URL={url} fitlink status, or fitlink coverage --csv)"
    );
    Ok(())
}

/// The demo with the console: the fleet (with its portal) syncs everyone, then the console
/// serves the demo's data until Ctrl-C, signed in with a printed one-off admin password or as
/// the simulator's staff through its identity provider.
async fn run_with_console(args: &DemoArgs) -> anyhow::Result<()> {
    let portal = format!("127.0.0.1:{}", fleet::free_port()?);
    let console = format!("127.0.0.1:{}", fleet::free_port()?);
    let portal_env = portal.clone();
    let mut running = start_fleet(args, move |sim| {
        vec![
            ("FITLINK_PUBLIC_URL".into(), format!("http://{portal_env}")),
            ("FITLINK_PORTAL_ADDR".into(), portal_env),
            ("FITLINK_OIDC_ISSUER".into(), format!("{sim}/oidc")),
            (
                "FITLINK_OIDC_CLIENT_SECRET".into(),
                "sim-console-secret".into(),
            ),
        ]
    })
    .await?;
    let settled = running.wait_settled(args).await;
    if let Err(error) = settled {
        running.stop().await;
        return Err(error);
    }
    let password = format!("demo-{}", uuid::Uuid::new_v4().simple());
    running.fleet.spawn_with_env(
        "console",
        &["console"],
        &[
            ("FITLINK_CONSOLE_ADDR", &console),
            ("FITLINK_CONSOLE_ADMIN_USER", "admin"),
            ("FITLINK_CONSOLE_ADMIN_PASSWORD", &password),
        ],
    )?;
    let login = format!("http://{console}/login");
    let http = fitlink_shared::provider::http_client();
    fleet::wait_for("the console", Duration::from_secs(30), || {
        let (http, login) = (http.clone(), login.clone());
        async move { Ok(http.get(login).send().await.ok().map(|_| ())) }
    })
    .await?;
    println!(
        "\nthe fleet keeps syncing; the console is at http://{console}/\n  \
         sign in as admin / {password}\n  \
         or \"Sign in with your organisation\" as the simulator's coordinator@example.org (operator) \
         or viewer@example.org (viewer)\n  \
         consent links point at the portal on http://{portal}/\n\
         Ctrl-C stops everything (the data stays in {})",
        args.dir.display()
    );
    let stopped = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        dead = wait_for_a_death(&mut running) => dead,
    };
    running.stop().await;
    stopped
}

/// Returns when a fleet process has died.
async fn wait_for_a_death(running: &mut RunningFleet) -> anyhow::Result<()> {
    loop {
        running.fleet.check_alive()?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A run counts and checks what it stored, so it needs a database nobody else filled.
async fn refuse_a_used_database(url: &str) -> anyhow::Result<()> {
    let Ok(db) = fitlink_shared::store::Database::reader(url, "demo").await else {
        return Ok(()); // not created yet: the writer makes it
    };
    let participants: i64 = fitlink_shared::fetch!(
        db.exec(),
        sqlx::query_scalar("SELECT count(*) FROM participants"),
        one
    )?;
    db.close().await;
    if participants > 0 {
        anyhow::bail!(
            "database {} already holds {participants} participants: a demo, bench or chaos run \
             needs an empty database (or one that does not exist yet)",
            fitlink_shared::store::redact_url(url)
        );
    }
    Ok(())
}

/// A simulator and a fleet (writer, workers, dispatcher) running, the roster imported.
pub struct RunningFleet {
    pub sim: fleet::SimulatorProcess,
    pub fleet: Fleet,
    pub db: fitlink_shared::store::Database,
    /// The simulator's configuration, for its roster and ground truth.
    pub sim_config: SimConfig,
    /// When the workers and the dispatcher were started.
    pub started: Instant,
}

/// Starts a simulator and a fleet, imports the simulator's roster, and starts the workers and
/// the dispatcher. `extra_env(simulator base URL)` gives more settings for every role.
pub async fn start_fleet(
    args: &DemoArgs,
    extra_env: impl FnOnce(&str) -> Vec<(String, String)>,
) -> anyhow::Result<RunningFleet> {
    let bin = std::env::current_exe().context("locating the fitlink binary")?;
    std::fs::create_dir_all(&args.dir)?;
    let database_url = fresh_database(&args.dir, args.database_url.as_deref()).await?;
    let sim_args: Vec<String> = vec![
        "--participants".into(),
        args.participants.to_string(),
        "--days".into(),
        args.days.to_string(),
        "--latency-ms".into(),
        args.latency_ms.to_string(),
        "--fine-hr-every".into(),
        args.fine_hr_every.to_string(),
    ];
    let mut sim_args = sim_args;
    if let Some(until) = args.until {
        sim_args.extend([
            "--until".into(),
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ]);
    }
    let sim = fleet::start_simulator(&bin, &sim_args, &args.dir.join("simulator.log")).await?;
    let mut env = FleetEnv::simulated(
        args.broker.amqp_url.expose(),
        run_namespace(&args.broker, "demo"),
        database_url,
        &sim.base_url,
    );
    env.extra.push((
        "FITLINK_WORKER_CONCURRENCY".into(),
        args.concurrency.to_string(),
    ));
    env.extra.extend(extra_env(&sim.base_url));
    let mut fleet = Fleet::new(bin, env.clone(), &args.dir.join("logs"))?;
    fleet.spawn("writer", &["writer"])?;
    let db = fleet::wait_for_database(&env.database_url, Duration::from_secs(30)).await?;

    let sim_config = SimConfig::from_flags(&sim_args)?;
    let csv_path = args.dir.join("participants.csv");
    std::fs::write(
        &csv_path,
        fitlink_simulator::roster_csv_for(&sim_config, &args.provider),
    )?;
    let report = env.import(&csv_path).await?;
    println!("{report}");

    let started = Instant::now();
    for i in 0..args.workers {
        fleet.spawn(&format!("worker-{i}"), &["worker"])?;
    }
    fleet.spawn("dispatcher", &["dispatcher"])?;
    Ok(RunningFleet {
        sim,
        fleet,
        db,
        sim_config,
        started,
    })
}

impl RunningFleet {
    /// Waits until every participant has synced or stopped with a reason (progress on a
    /// terminal), for at most `args.timeout_secs` from the start.
    pub async fn wait_settled(&mut self, args: &DemoArgs) -> anyhow::Result<()> {
        let show_progress = std::io::stderr().is_terminal();
        let total = args.participants as i64;
        let deadline = self.started + Duration::from_secs(args.timeout_secs);
        let wait = loop {
            if let Err(e) = self.fleet.check_alive() {
                break Err(e);
            }
            let progress = fleet::progress(&self.db).await?;
            if show_progress {
                eprint!(
                    "\rsynced {}/{total} participants ({} stopped with a reason)",
                    progress.synced, progress.stopped
                );
            }
            if progress.settled() && progress.total >= total {
                break Ok(());
            }
            if Instant::now() >= deadline {
                break Err(anyhow::anyhow!(
                    "participants still syncing after {} s; logs are in {}",
                    args.timeout_secs,
                    args.dir.join("logs").display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if show_progress {
            eprintln!();
        }
        wait
    }

    /// The simulator's request statistics (`/_sim/stats`).
    pub async fn sim_stats(&self) -> anyhow::Result<serde_json::Value> {
        Ok(fitlink_shared::provider::http_client()
            .get(format!("{}/_sim/stats", self.sim.base_url))
            .send()
            .await?
            .json::<serde_json::Value>()
            .await?)
    }

    /// Stops every process and removes the run's queues.
    pub async fn stop(mut self) {
        let unclean = self.fleet.terminate_all().await;
        let _ = self.fleet.delete_queues().await;
        if !unclean.is_empty() {
            eprintln!("warning: these processes did not stop cleanly: {unclean:?}");
        }
    }
}

/// Starts a simulator and a fleet, imports the simulator's roster, waits until every
/// participant has synced, stops everything, and reports.
pub async fn run_fleet(args: &DemoArgs) -> anyhow::Result<FleetRun> {
    let mut running = start_fleet(args, |_| Vec::new()).await?;
    let wait = running.wait_settled(args).await;
    let elapsed = running.started.elapsed();
    let total = args.participants as i64;
    let stopped = fleet::progress(&running.db).await?.stopped;
    let table_counts = fleet::table_counts(&running.db).await?;
    let ledger_rows: i64 = fitlink_shared::fetch!(
        running.db.exec(),
        sqlx::query_scalar("SELECT count(*) FROM coverage_daily"),
        one
    )?;
    let worker_peak_rss_kib = running
        .fleet
        .processes
        .iter()
        .filter(|p| p.name.starts_with("worker"))
        .filter_map(|p| p.peak_rss_kib())
        .collect();
    let provider_requests = running.sim_stats().await?["requests_total"]
        .as_u64()
        .unwrap_or(0);
    running.stop().await;
    wait?;
    let participant_days = ((total - stopped) as f64) * f64::from(args.days);
    Ok(FleetRun {
        participants: total - stopped,
        stopped,
        participant_days,
        elapsed,
        table_counts,
        ledger_rows,
        provider_requests,
        worker_peak_rss_kib,
    })
}

/// A namespace of its own for one demo or benchmark run, under the configured one.
pub fn run_namespace(broker: &BrokerArgs, what: &str) -> String {
    let run = uuid::Uuid::new_v4().simple().to_string();
    format!("{}-{what}-{}", broker.namespace, &run[..8])
}
