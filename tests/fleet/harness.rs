//! A fleet under test: the simulator, a writer, workers and a dispatcher as real processes of
//! the `fitlink` binary, a real RabbitMQ (its own namespace per test) and a real database: a
//! SQLite file, or a PostgreSQL database of the test's own (`Options::backend`).
//! Plus the checker that compares the database with the simulator's ground truth.

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use fitlink_shared::domain::UtcInstant;
use fitlink_shared::fetch;
use fitlink_shared::store::testing::TestDatabase;
use fitlink_shared::store::{Backend, Database};

use fitlink::checker::{self, History};
use fitlink::fleet::{self, Fleet, FleetEnv, SimulatorProcess};
use fitlink_shared::broker::{self, Topology};
use fitlink_shared::secret::TokenKeys;
use fitlink_simulator::SimConfig;

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
    /// Which provider the roster is imported through: "google-health" or "fitbit".
    pub provider: &'static str,
    /// Serve the participant portal and webhooks from the dispatcher, and point the simulator's
    /// webhooks at it.
    pub portal: bool,
    /// Which database the fleet writes.
    pub backend: Backend,
    /// Results partitions (`FITLINK_RESULTS_PARTITIONS`), and the ones the first writer
    /// consumes (`--partitions`).
    pub results_partitions: u16,
    pub writer_partitions: &'static str,
    /// More writer processes, started after the first: (name, `--partitions`).
    pub more_writers: Vec<(&'static str, &'static str)>,
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
            provider: "google-health",
            portal: false,
            backend: Backend::Sqlite,
            results_partitions: 1,
            writer_partitions: "all",
            more_writers: vec![],
        }
    }
}

pub struct TestFleet {
    pub provider: &'static str,
    pub dir: tempfile::TempDir,
    pub sim: SimulatorProcess,
    pub sim_config: SimConfig,
    pub fleet: Fleet,
    pub db: Database,
    /// The test's own database, kept for its `Drop`, which deletes it.
    _database: TestDatabase,
    pub http: reqwest::Client,
    pub key: TokenKeys,
    pub topology: Topology,
    /// The portal's base URL (`Options::portal`).
    pub portal_url: Option<String>,
}

/// The Google webhook secret test fleets configure on both sides.
pub const GOOGLE_WEBHOOK_SECRET: &str = "Bearer sim-webhook-secret";
/// The legacy Fitbit subscriber verification code of test fleets.
pub const FITBIT_VERIFICATION_CODE: &str = "sim-verify-code";

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
        let sim_config = SimConfig::from_flags(&sim_args).unwrap();
        let sim =
            fleet::start_simulator(BIN.as_ref(), &sim_args, &dir.path().join("simulator.log"))
                .await
                .unwrap();
        let namespace = format!("t-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let test_db = TestDatabase::new(options.backend).await;
        let mut env = FleetEnv::simulated(
            &std::env::var("FITLINK_AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            namespace.clone(),
            test_db.url().to_owned(),
            &sim.base_url,
        );
        env.extra.extend(
            [
                ("FITLINK_WORKER_CONCURRENCY", "4"),
                ("FITLINK_SHUTDOWN_GRACE_SECS", "5"),
                ("RUST_LOG", "info,fitlink=debug"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        env.extra.extend(
            options
                .env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone())),
        );
        env.extra.push((
            "FITLINK_RESULTS_PARTITIONS".to_owned(),
            options.results_partitions.to_string(),
        ));
        let portal_url = options.portal.then(|| {
            let port = fleet::free_port().unwrap();
            let url = format!("http://127.0.0.1:{port}");
            env.extra.extend(
                [
                    ("FITLINK_PORTAL_ADDR", format!("127.0.0.1:{port}")),
                    ("FITLINK_PUBLIC_URL", url.clone()),
                    (
                        "FITLINK_PROGRAM_NAME",
                        "the Example Health Study".to_owned(),
                    ),
                    (
                        "FITLINK_GOOGLE_WEBHOOK_SECRET",
                        GOOGLE_WEBHOOK_SECRET.to_owned(),
                    ),
                    (
                        "FITLINK_GOOGLE_WEBHOOK_KEYSET",
                        format!("{}/_sim/webhooks/keyset.json", sim.base_url),
                    ),
                    (
                        "FITLINK_FITBIT_WEBHOOK_VERIFICATION_CODE",
                        FITBIT_VERIFICATION_CODE.to_owned(),
                    ),
                    ("FITLINK_WEBHOOK_COALESCE_MS", "300".to_owned()),
                ]
                .map(|(k, v)| (k.to_owned(), v)),
            );
            url
        });
        let token_key = env.token_key.clone();
        let mut fleet = Fleet::new(BIN.into(), env.clone(), &dir.path().join("logs")).unwrap();
        fleet
            .spawn(
                "writer",
                &["writer", "--partitions", options.writer_partitions],
            )
            .unwrap();
        let db = fleet::wait_for_database(&env.database_url, Duration::from_secs(30))
            .await
            .unwrap();
        // In order, each consuming before the next starts: single-active-consumer makes the
        // first subscriber of a partition its active writer, so the roles are as the test says.
        if !options.more_writers.is_empty() {
            wait_consuming(&mut fleet, "writer").await;
        }
        for (name, partitions) in &options.more_writers {
            fleet
                .spawn(name, &["writer", "--partitions", partitions])
                .unwrap();
            wait_consuming(&mut fleet, name).await;
        }
        if options.standby_writer {
            fleet.spawn("writer-standby", &["writer"]).unwrap();
        }
        let mut this = Self {
            provider: options.provider,
            dir,
            sim,
            sim_config,
            fleet,
            db,
            _database: test_db,
            http: fitlink_shared::provider::http_client(),
            key: TokenKeys::parse(&token_key).unwrap(),
            topology: Topology::new(&namespace),
            portal_url,
        };
        if let Some(portal) = &this.portal_url {
            this.sim_control(
                "/_sim/webhooks",
                serde_json::json!({
                    "google_webhook_url": format!("{portal}/webhooks/google"),
                    "google_webhook_secret": GOOGLE_WEBHOOK_SECRET,
                    "fitbit_webhook_url": format!("{portal}/webhooks/fitbit"),
                    "fitbit_verification_code": FITBIT_VERIFICATION_CODE,
                }),
            )
            .await;
        }
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
        std::fs::write(
            &csv,
            fitlink_simulator::roster_csv_for(&self.sim_config, self.provider),
        )
        .unwrap();
        self.fleet.env.import(&csv).await.unwrap();
    }

    /// Writes an import CSV with some participants of the roster, through `provider`.
    pub fn write_roster_subset(&self, provider: &str, ids: &[&str]) -> std::path::PathBuf {
        let all = fitlink_simulator::roster_csv_for(&self.sim_config, provider);
        let mut lines = all.lines();
        let mut text = format!("{}\n", lines.next().unwrap());
        for line in lines {
            if ids.iter().any(|id| line.starts_with(&format!("{id},"))) {
                text.push_str(line);
                text.push('\n');
            }
        }
        let path = self
            .dir
            .path()
            .join(format!("{provider}-{}.csv", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The refresh token the roster started a participant with.
    pub fn roster_token(&self, id: &str, provider: &str) -> String {
        let p = fitlink_simulator::roster(&self.sim_config)
            .into_iter()
            .find(|p| p.participant_id == id)
            .unwrap();
        if provider == "fitbit" {
            p.legacy_refresh_token
        } else {
            p.refresh_token
        }
    }

    /// The participant's stored refresh token, unsealed.
    pub async fn stored_refresh_token(&self, id: &str) -> String {
        let (sealed,): (fitlink_shared::secret::SealedToken,) = fetch!(
            self.db.exec(),
            sqlx::query_as(
                "SELECT sealed_refresh_token FROM credentials WHERE participant_id = $1"
            )
            .bind(id),
            one
        )
        .unwrap();
        let participant = fitlink_shared::domain::ParticipantId::new(id).unwrap();
        self.key
            .open(&participant, &sealed)
            .unwrap()
            .expose()
            .clone()
    }

    /// Whether the simulator's legacy token endpoint accepts this refresh token (it rotates it:
    /// call this last).
    pub async fn legacy_refresh_works(&self, refresh_token: &str) -> bool {
        self.http
            .post(format!("{}/oauth2/token", self.sim.base_url))
            .basic_auth("sim-client", Some("sim-secret"))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    }

    /// Tells the truth functions that the simulator's clock moved (`/_sim/advance`).
    pub fn advance_truth(&mut self, minutes: u64) {
        self.sim_config.advance_minutes += minutes;
    }

    /// Makes the truth exclude what participants deleted at the provider so far
    /// (`GET /_sim/deletions`).
    pub async fn learn_deletions(&mut self) {
        self.sim_config.deletions = self.sim_get("/_sim/deletions").await;
    }

    /// Waits for a fleet process to exit by itself (a chaos abort), then forgets it.
    pub async fn wait_process_exit(&mut self, name: &str, secs: u64) {
        let process = self.fleet.get(name);
        let Ok(status) =
            tokio::time::timeout(Duration::from_secs(secs), process.child.wait()).await
        else {
            self.dump_logs();
            panic!("{name} did not exit within {secs} s");
        };
        let status = status.unwrap();
        assert!(
            !status.success(),
            "{name} was expected to die, it exited {status}"
        );
        self.fleet.forget(name);
    }

    pub fn participant_ids(&self) -> Vec<String> {
        fitlink_simulator::roster(&self.sim_config)
            .into_iter()
            .map(|p| p.participant_id)
            .collect()
    }

    /// Runs `fitlink <args>` with the fleet's environment and returns its output.
    /// `fitlink status --json`, which must succeed, parsed.
    pub fn status_json(&self) -> serde_json::Value {
        let out = self.cli(&["status", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Waits (30 s at most) until `url` answers anything: a web role `what` is serving.
    pub async fn wait_answering(&self, what: &str, url: &str) {
        let http = self.http.clone();
        fitlink::fleet::wait_for(what, std::time::Duration::from_secs(30), || {
            let (http, url) = (http.clone(), url.to_owned());
            async move { Ok(http.get(url).send().await.ok().map(|_| ())) }
        })
        .await
        .unwrap();
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        std::process::Command::new(BIN)
            .args(args)
            .envs(self.fleet.env.vars())
            .output()
            .unwrap()
    }

    /// `fitlink enqueue` of these participants (an operator's "sync now"); fails the test if
    /// the command fails.
    pub fn enqueue(&self, ids: &[String]) {
        let mut args = vec!["enqueue"];
        args.extend(ids.iter().map(String::as_str));
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// POSTs JSON to the simulator's control API (fails the test on an error answer).
    pub async fn sim_control(&self, path: &str, body: serde_json::Value) {
        self.sim_post(path, body).await;
    }

    pub async fn sim_stats(&self) -> serde_json::Value {
        self.sim_get("/_sim/stats").await
    }

    /// GETs JSON from the simulator's control API.
    pub async fn sim_get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.http
            .get(format!("{}{path}", self.sim.base_url))
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
        F: FnMut(Database) -> Fut,
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
    /// Waits (`secs` at most) until every participant has synced, then checks each one's rows
    /// against the simulator's truth (no extra provider restatements).
    pub async fn wait_all_synced_as_truth(&mut self, secs: u64) {
        let ids = self.participant_ids();
        self.wait_synced(&ids, secs).await;
        for id in &ids {
            self.assert_matches_truth(id, &BTreeMap::new()).await;
        }
    }

    pub async fn wait_synced(&mut self, participants: &[String], secs: u64) {
        let ids = participants.to_vec();
        self.wait_until("participants to sync", secs, move |db| {
            let ids = ids.clone();
            async move {
                let mut done = 0;
                for id in &ids {
                    let row: Option<(Option<UtcInstant>, Option<String>)> = fetch!(
                        db.exec(),
                        sqlx::query_as(
                            "SELECT last_success_at, in_flight_job_id FROM participants \
                                 WHERE participant_id = $1",
                        )
                        .bind(id),
                        optional
                    )
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

    /// Makes the provider answer 503 to everything about `id` (`None`: to nobody).
    pub async fn fail_provider_for(&self, id: Option<&str>) {
        let faults = match id {
            Some(id) => serde_json::json!({ "participants": { id: { "fail_5xx": true } } }),
            None => serde_json::json!({}),
        };
        self.sim_control("/_sim/faults", faults).await;
    }

    /// Waits until participant `id` is in `state`.
    pub async fn wait_state(&mut self, id: &str, state: &'static str, secs: u64) {
        let id = id.to_owned();
        let what = format!("{id} to be {state}");
        self.wait_until(&what, secs, move |db| {
            let id = id.clone();
            async move {
                let row: Option<(String,)> = fetch!(
                    db.exec(),
                    sqlx::query_as("SELECT state FROM participants WHERE participant_id = $1")
                        .bind(id),
                    optional
                )
                .unwrap();
                row.is_some_and(|(s,)| s == state)
            }
        })
        .await;
    }

    pub async fn participant(&self, id: &str) -> ParticipantRow {
        let (state, state_reason, sync_from, sync_cursor): (
            String,
            Option<String>,
            UtcInstant,
            UtcInstant,
        ) = fetch!(
            self.db.exec(),
            sqlx::query_as(
                "SELECT state, state_reason, sync_from, sync_cursor FROM participants \
                 WHERE participant_id = $1",
            )
            .bind(id),
            one
        )
        .unwrap();
        ParticipantRow {
            state,
            state_reason,
            sync_from: sync_from.to_text(),
            sync_cursor: sync_cursor.to_text(),
        }
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
    /// `[sync_from, cursor)` (see `fitlink::checker`): every point once, nothing else, every
    /// summary as served.
    pub async fn assert_matches_truth(&self, id: &str, restatements: &BTreeMap<NaiveDate, u32>) {
        self.assert_checked(id, History::Google, restatements).await;
    }

    /// The same for a participant synced through the legacy Fitbit API.
    pub async fn assert_matches_legacy_truth(&self, id: &str) {
        self.assert_checked(id, History::Fitbit, &BTreeMap::new())
            .await;
    }

    /// A participant that moved from Fitbit to Google Health at `switch` (its Fitbit cursor):
    /// legacy points before, Google points after, each once, each row naming its provider.
    pub async fn assert_migrated_matches_truth(&self, id: &str, switch: DateTime<Utc>) {
        self.assert_checked(id, History::Migrated { switch }, &BTreeMap::new())
            .await;
        let switch = UtcInstant::new(switch);
        for table in ["heart_rate_intraday", "steps_intraday"] {
            let (wrong,): (i64,) = fetch!(
                self.db.exec(),
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT count(*) FROM {table} WHERE participant_id = $1
                       AND ((datetime < $2 AND provider <> 'fitbit')
                         OR (datetime >= $2 AND provider <> 'google-health'))"
                )))
                .bind(id)
                .bind(switch),
                one
            )
            .unwrap();
            assert_eq!(
                wrong, 0,
                "{id} {table}: rows record the provider that served them"
            );
        }
    }

    async fn assert_checked(
        &self,
        id: &str,
        history: History,
        restatements: &BTreeMap<NaiveDate, u32>,
    ) {
        let check =
            checker::check_participant(&self.db, &self.sim_config, id, history, restatements)
                .await
                .unwrap();
        let heart_rate = &check.tables["heart_rate_intraday"];
        assert!(
            heart_rate.expected > 0,
            "{id}: the truth has heart rate to compare"
        );
        // A participant judged here synced up to the device's latest sync, so its device
        // snapshot is judged too (the checker skips it only for a participant stopped earlier).
        assert!(
            check.tables.get("device").is_some_and(|d| d.expected > 0),
            "{id}: the device snapshot was not judged (latest_device_sync differs from the truth)"
        );
        assert!(check.is_clean(), "{id} differs from the truth:\n{check}");
    }

    /// Stops every process with SIGTERM (each must exit 0) and removes the test's queues.
    pub async fn finish(mut self) {
        let unclean = self.fleet.terminate_all().await;
        assert!(
            unclean.is_empty(),
            "processes that did not stop cleanly on SIGTERM: {unclean:?}"
        );
    }
}

/// Waits until the writer `name` has subscribed to its partitions (its log says so).
async fn wait_consuming(fleet: &mut Fleet, name: &str) {
    let log = fleet.get(name).log.clone();
    fleet::wait_for(
        &format!("{name} to consume its partitions"),
        Duration::from_secs(30),
        || {
            let log = log.clone();
            async move {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                Ok(text.contains("writer consuming").then_some(()))
            }
        },
    )
    .await
    .unwrap();
}

impl Drop for TestFleet {
    /// A test that passed or panicked leaves nothing on the shared broker: its processes are
    /// killed (`kill_on_drop`) and its queues deleted, from a thread of its own because the
    /// test's runtime may be gone.
    fn drop(&mut self) {
        for p in &mut self.fleet.processes {
            let _ = p.child.start_kill();
        }
        let broker = self.fleet.env.broker();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup");
            let _ = runtime.block_on(fleet::delete_queues(&broker));
        })
        .join();
    }
}

/// A participant's state and range, instants in their canonical text.
#[derive(Debug)]
pub struct ParticipantRow {
    pub state: String,
    pub state_reason: Option<String>,
    pub sync_from: String,
    pub sync_cursor: String,
}
