//! A fleet under test: the simulator, a writer, workers and a dispatcher as real processes of
//! the `fitlink` binary, a real RabbitMQ (its own namespace per test) and a real SQLite file.
//! Plus the checker that compares the database with the simulator's ground truth.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::SqlitePool;

use fitlink::fleet::{self, Fleet, FleetEnv, SimulatorProcess};
use fitlink_shared::broker::{self, Topology};
use fitlink_shared::config::DatabaseArgs;
use fitlink_shared::secret::TokenKey;
use fitlink_simulator::{SimConfig, truth};

pub const BIN: &str = env!("CARGO_BIN_EXE_fitlink");

/// How to start a test fleet.
pub struct Options {
    pub participants: usize,
    pub days: u32,
    pub workers: usize,
    /// Extra simulator flags.
    pub sim_args: Vec<String>,
    /// Extra `FITLINK_*` settings for every role.
    pub env: Vec<(&'static str, String)>,
    /// Start a second (standby) writer.
    pub standby_writer: bool,
    /// Import and start workers + dispatcher right away.
    pub start_sync: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            participants: 4,
            days: 3,
            workers: 2,
            sim_args: vec![],
            env: vec![],
            standby_writer: false,
            start_sync: true,
        }
    }
}

pub struct TestFleet {
    pub dir: tempfile::TempDir,
    pub sim: SimulatorProcess,
    pub sim_config: SimConfig,
    pub fleet: Fleet,
    pub db: SqlitePool,
    pub http: reqwest::Client,
    pub key: TokenKey,
    pub topology: Topology,
}

fn sim_config(args: &[String]) -> SimConfig {
    use clap::Parser;
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        sim: SimConfig,
    }
    let mut argv = vec!["sim".to_owned()];
    argv.extend(args.iter().cloned());
    Wrapper::parse_from(argv).sim
}

impl TestFleet {
    pub async fn start(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut sim_args = vec![
            "--participants".to_owned(),
            options.participants.to_string(),
            "--days".to_owned(),
            options.days.to_string(),
        ];
        sim_args.extend(options.sim_args.iter().cloned());
        let sim_config = sim_config(&sim_args);
        let sim =
            fleet::start_simulator(BIN.as_ref(), &sim_args, &dir.path().join("simulator.log"))
                .await
                .unwrap();
        let namespace = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let token_key = TokenKey::generate();
        let mut extra: Vec<(String, String)> = vec![
            ("FITLINK_WORKER_CONCURRENCY".into(), "4".into()),
            ("FITLINK_SHUTDOWN_GRACE_SECS".into(), "5".into()),
            ("RUST_LOG".into(), "info,fitlink=debug".into()),
        ];
        extra.extend(
            options
                .env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone())),
        );
        let env = FleetEnv {
            amqp_url: std::env::var("FITLINK_AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            namespace: namespace.clone(),
            database_url: format!("sqlite://{}", dir.path().join("fitlink.db").display()),
            token_key: token_key.clone(),
            google_api_base: sim.base_url.clone(),
            google_token_url: format!("{}/token", sim.base_url),
            client_id: "sim-client".into(),
            client_secret: "sim-secret".into(),
            extra,
        };
        let mut fleet = Fleet::new(BIN.into(), env.clone(), &dir.path().join("logs")).unwrap();
        fleet.spawn("writer", &["writer"]).unwrap();
        let db = fleet::wait_for_database(&env.database_url, Duration::from_secs(30))
            .await
            .unwrap();
        if options.standby_writer {
            fleet.spawn("writer-standby", &["writer"]).unwrap();
        }
        let mut this = Self {
            dir,
            sim,
            sim_config,
            fleet,
            db,
            http: fitlink_shared::provider::http_client(),
            key: TokenKey::parse(&token_key).unwrap(),
            topology: Topology::new(&namespace),
        };
        if options.start_sync {
            this.import_roster().await;
            this.start_workers(options.workers);
            this.fleet.spawn("dispatcher", &["dispatcher"]).unwrap();
        }
        this
    }

    pub fn start_workers(&mut self, n: usize) {
        for i in 0..n {
            self.fleet
                .spawn(&format!("worker-{i}"), &["worker"])
                .unwrap();
        }
    }

    /// Imports the simulator's roster (in process, as `fitlink participants import` does).
    pub async fn import_roster(&self) {
        let csv = self.dir.path().join("participants.csv");
        std::fs::write(&csv, fitlink_simulator::roster_csv(&self.sim_config)).unwrap();
        fitlink_dispatcher::import_participants(
            &self.fleet.env.broker(),
            &DatabaseArgs {
                database_url: self.fleet.env.database_url.clone(),
            },
            &self.key,
            &csv,
            Some(Duration::from_secs(30)),
        )
        .await
        .unwrap();
    }

    pub fn participant_ids(&self) -> Vec<String> {
        fitlink_simulator::roster(&self.sim_config)
            .into_iter()
            .map(|p| p.participant_id)
            .collect()
    }

    /// Runs `fitlink <args>` with the fleet's environment and returns its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        std::process::Command::new(BIN)
            .args(args)
            .envs(self.fleet.env.vars())
            .output()
            .unwrap()
    }

    /// POSTs JSON to the simulator's control API.
    pub async fn sim_control(&self, path: &str, body: serde_json::Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.sim.base_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }

    pub async fn sim_stats(&self) -> serde_json::Value {
        self.http
            .get(format!("{}/_sim/stats", self.sim.base_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until `check` holds, failing (with the fleet's logs) after `secs`. Fails early if a
    /// fleet process died.
    pub async fn wait_until<F, Fut>(&mut self, what: &str, secs: u64, mut check: F)
    where
        F: FnMut(SqlitePool) -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Err(e) = self.fleet.check_alive() {
                panic!("while waiting for {what}: {e}");
            }
            if check(self.db.clone()).await {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                self.dump_logs();
                panic!("timed out after {secs} s waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn dump_logs(&self) {
        for p in &self.fleet.processes {
            eprintln!("----- {} -----\n{}", p.name, p.log_tail(40));
        }
    }

    /// Waits until every participant named has completed a job and has nothing in flight.
    pub async fn wait_synced(&mut self, participants: &[String], secs: u64) {
        let ids = participants.to_vec();
        self.wait_until("participants to sync", secs, move |db| {
            let ids = ids.clone();
            async move {
                let mut done = 0;
                for id in &ids {
                    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
                        "SELECT last_success_at, in_flight_job_id FROM participants WHERE participant_id = ?",
                    )
                    .bind(id)
                    .fetch_optional(&db)
                    .await
                    .unwrap();
                    if matches!(row, Some((Some(_), None))) {
                        done += 1;
                    }
                }
                done == ids.len()
            }
        })
        .await;
    }

    pub async fn participant(&self, id: &str) -> ParticipantRow {
        sqlx::query_as(
            "SELECT state, state_reason, sync_from, sync_cursor FROM participants WHERE participant_id = ?",
        )
        .bind(id)
        .fetch_one(&self.db)
        .await
        .unwrap()
    }

    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let conn = broker::connect(&self.fleet.env.broker(), "test")
            .await
            .unwrap();
        let channel = conn.create_channel().await.unwrap();
        let depth = broker::queue_depth(&channel, queue).await.unwrap_or(0);
        let _ = conn.close(200, "done".into()).await;
        depth
    }

    /// Compares everything stored for a participant with the simulator's ground truth for
    /// `[sync_from, cursor)`: every point once, nothing else, every summary as served.
    pub async fn assert_matches_truth(&self, id: &str, restatements: &BTreeMap<NaiveDate, u32>) {
        let p = self.participant(id).await;
        let from: DateTime<Utc> = p.sync_from.parse().unwrap();
        let cursor: DateTime<Utc> = p.sync_cursor.parse().unwrap();
        let version = |d: &NaiveDate| restatements.get(d).copied().unwrap_or(0);

        let expected_hr: Vec<(String, i64, i64)> =
            truth::heart_rate(&self.sim_config, id, from, cursor, 0)
                .into_iter()
                .map(|s| (text(s.time), i64::from(s.utc_offset_seconds), s.bpm))
                .collect();
        let stored_hr: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT datetime, utc_offset_seconds, heart_rate_value FROM heart_rate_intraday WHERE participant_id = ? ORDER BY datetime",
        )
        .bind(id)
        .fetch_all(&self.db)
        .await
        .unwrap();
        assert!(
            !expected_hr.is_empty(),
            "{id}: the truth has heart rate in [{from}, {cursor})"
        );
        assert_same(id, "heart_rate_intraday", &expected_hr, &stored_hr);

        let expected_steps: Vec<(String, i64, i64)> =
            truth::steps(&self.sim_config, id, from, cursor, 0)
                .into_iter()
                .map(|s| (text(s.start), i64::from(s.utc_offset_seconds), s.steps))
                .collect();
        let stored_steps: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT datetime, utc_offset_seconds, steps FROM steps_intraday WHERE participant_id = ? ORDER BY datetime",
        )
        .bind(id)
        .fetch_all(&self.db)
        .await
        .unwrap();
        assert_same(id, "steps_intraday", &expected_steps, &stored_steps);

        // Summaries: every day the simulator has data for is stored with the served values.
        let days: BTreeSet<NaiveDate> = truth::dates(&self.sim_config, id).into_iter().collect();
        let stored_days: Vec<DayRow> = sqlx::query_as(
            "SELECT date, steps, distance, calories_out, very_active_minutes FROM activity_summary WHERE participant_id = ? ORDER BY date",
        )
        .bind(id)
        .fetch_all(&self.db)
        .await
        .unwrap();
        let expected_days: Vec<DayRow> = days
            .iter()
            .filter_map(|d| truth::activity_day(&self.sim_config, id, *d, version(d)))
            .map(|a| {
                (
                    a.date.to_string(),
                    Some(a.steps),
                    Some(a.distance_km),
                    Some(a.calories_out),
                    Some(a.very_active_minutes),
                )
            })
            .collect();
        assert_same_approx(id, &expected_days, &stored_days);

        let expected_zones: Vec<(String, String, Option<i64>, Option<i64>)> = days
            .iter()
            .flat_map(|d| truth::heart_rate_zones(&self.sim_config, id, *d, version(d)))
            .map(|z| {
                (
                    z.date.to_string(),
                    z.zone_name,
                    Some(z.min_heart_rate),
                    Some(z.minute_in_zone),
                )
            })
            .collect();
        let mut stored_zones: Vec<(String, String, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT date, zone_name, min_heart_rate, minute_in_zone FROM heart_rate_summary WHERE participant_id = ?",
        )
        .bind(id)
        .fetch_all(&self.db)
        .await
        .unwrap();
        let mut expected_zones = expected_zones;
        expected_zones.sort();
        stored_zones.sort();
        assert_same(id, "heart_rate_summary", &expected_zones, &stored_zones);

        let expected_resting: Vec<(String, i64)> = days
            .iter()
            .filter_map(|d| {
                truth::resting_heart_rate(&self.sim_config, id, *d, version(d))
                    .map(|r| (d.to_string(), r))
            })
            .collect();
        let stored_resting: Vec<(String, i64)> = sqlx::query_as(
            "SELECT date, resting_heart_rate FROM resting_heart_rate WHERE participant_id = ? ORDER BY date",
        )
        .bind(id)
        .fetch_all(&self.db)
        .await
        .unwrap();
        assert_same(id, "resting_heart_rate", &expected_resting, &stored_resting);
    }

    /// Stops every process with SIGTERM (each must exit 0) and removes the test's queues.
    pub async fn finish(mut self) {
        let unclean = self.fleet.terminate_all().await;
        let _ = fleet::delete_queues(&self.fleet.env.broker()).await;
        assert!(
            unclean.is_empty(),
            "processes that did not stop cleanly on SIGTERM: {unclean:?}"
        );
    }
}

#[derive(sqlx::FromRow, Debug)]
pub struct ParticipantRow {
    pub state: String,
    pub state_reason: Option<String>,
    pub sync_from: String,
    pub sync_cursor: String,
}

fn text(at: DateTime<Utc>) -> String {
    fitlink_shared::domain::format_instant(at)
}

/// Equal lists, with a message that counts what is lost, duplicated or wrong.
fn assert_same<T: PartialEq + std::fmt::Debug + Ord + Clone>(
    id: &str,
    table: &str,
    expected: &[T],
    stored: &[T],
) {
    if expected == stored {
        return;
    }
    let e: BTreeSet<T> = expected.iter().cloned().collect();
    let s: BTreeSet<T> = stored.iter().cloned().collect();
    let lost: Vec<&T> = e.difference(&s).take(5).collect();
    let extra: Vec<&T> = s.difference(&e).take(5).collect();
    panic!(
        "{id} {table}: expected {} rows, stored {}; missing (first 5) {lost:?}; unexpected (first 5) {extra:?}",
        expected.len(),
        stored.len()
    );
}

type DayRow = (String, Option<i64>, Option<f64>, Option<f64>, Option<f64>);

fn assert_same_approx(id: &str, expected: &[DayRow], stored: &[DayRow]) {
    let close = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => (a - b).abs() < 1e-6,
        (a, b) => a == b,
    };
    let same = expected.len() == stored.len()
        && expected.iter().zip(stored).all(|(e, s)| {
            e.0 == s.0 && e.1 == s.1 && close(e.2, s.2) && close(e.3, s.3) && close(e.4, s.4)
        });
    assert!(
        same,
        "{id} activity_summary:\nexpected {expected:?}\nstored   {stored:?}"
    );
}
