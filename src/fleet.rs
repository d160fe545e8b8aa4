//! Running a whole fleet on one machine as real OS processes: the simulator, a writer, workers,
//! a dispatcher. Used by `fitlink demo`, `fitlink bench` and the integration tests, so what the
//! tests prove is what an operator runs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use fitlink_shared::fetch;
use fitlink_shared::store::Database;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use fitlink_shared::broker;
use fitlink_shared::config::BrokerArgs;
use fitlink_shared::secret::Secret;

/// How a fleet's processes are configured: the environment every role reads.
#[derive(Clone, Debug)]
pub struct FleetEnv {
    pub amqp_url: String,
    pub namespace: String,
    pub database_url: String,
    /// One token key (passed as `FITLINK_TOKEN_KEY`), or several comma-separated, the current
    /// one first (passed as `FITLINK_TOKEN_KEYS`).
    pub token_key: Secret<String>,
    pub google_api_base: String,
    pub google_token_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// Anything else (`FITLINK_*` tunables) for every process.
    pub extra: Vec<(String, String)>,
}

impl FleetEnv {
    /// A fleet whose providers (Google Health and legacy Fitbit) are the simulator at
    /// `sim_base`, with a fresh token key.
    pub fn simulated(
        amqp_url: &str,
        namespace: String,
        database_url: String,
        sim_base: &str,
    ) -> Self {
        Self {
            amqp_url: amqp_url.to_owned(),
            namespace,
            database_url,
            token_key: fitlink_shared::secret::TokenKey::generate(),
            google_api_base: sim_base.to_owned(),
            google_token_url: format!("{sim_base}/token"),
            client_id: "sim-client".into(),
            client_secret: "sim-secret".into(),
            extra: vec![
                (
                    "FITLINK_GOOGLE_AUTHORIZE_URL".into(),
                    format!("{sim_base}/o/oauth2/v2/auth"),
                ),
                (
                    "FITLINK_GOOGLE_REVOKE_URL".into(),
                    format!("{sim_base}/revoke"),
                ),
                (
                    "FITLINK_FITBIT_AUTHORIZE_URL".into(),
                    format!("{sim_base}/oauth2/authorize"),
                ),
                (
                    "FITLINK_FITBIT_REVOKE_URL".into(),
                    format!("{sim_base}/oauth2/revoke"),
                ),
                ("FITLINK_FITBIT_API_BASE".into(), sim_base.to_owned()),
                (
                    "FITLINK_FITBIT_TOKEN_URL".into(),
                    format!("{sim_base}/oauth2/token"),
                ),
                ("FITLINK_FITBIT_CLIENT_ID".into(), "sim-client".into()),
                ("FITLINK_FITBIT_CLIENT_SECRET".into(), "sim-secret".into()),
            ],
        }
    }

    pub fn vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = [
            ("FITLINK_AMQP_URL", self.amqp_url.as_str()),
            ("FITLINK_NAMESPACE", &self.namespace),
            ("FITLINK_DATABASE_URL", &self.database_url),
            (
                if self.token_key.expose().contains(',') {
                    "FITLINK_TOKEN_KEYS"
                } else {
                    "FITLINK_TOKEN_KEY"
                },
                self.token_key.expose(),
            ),
            ("FITLINK_GOOGLE_API_BASE", &self.google_api_base),
            ("FITLINK_GOOGLE_TOKEN_URL", &self.google_token_url),
            ("FITLINK_GOOGLE_CLIENT_ID", &self.client_id),
            ("FITLINK_GOOGLE_CLIENT_SECRET", &self.client_secret),
            ("FITLINK_OPS_ADDR", "127.0.0.1:0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        vars.extend(self.extra.iter().cloned());
        vars
    }

    pub fn database(&self) -> fitlink_shared::config::DatabaseArgs {
        fitlink_shared::config::DatabaseArgs::url(self.database_url.clone())
    }

    /// Imports a participants CSV as `fitlink participants import` does, waiting for the writer.
    pub async fn import(
        &self,
        csv: &Path,
    ) -> Result<fitlink_dispatcher::ImportReport, fitlink_dispatcher::ImportError> {
        let key = fitlink_shared::secret::TokenKeys::parse(&self.token_key)
            .expect("the fleet's token key is generated valid");
        fitlink_dispatcher::import_participants(
            &self.broker(),
            &self.database(),
            &key,
            csv,
            fitlink_dispatcher::ImportWait::Applied {
                timeout: Some(Duration::from_secs(60)),
            },
            None,
        )
        .await
    }

    pub fn broker(&self) -> BrokerArgs {
        BrokerArgs {
            amqp_url: Secret::new(self.amqp_url.clone()),
            namespace: self.namespace.clone(),
            results_partitions: self
                .extra
                .iter()
                .find(|(k, _)| k == "FITLINK_RESULTS_PARTITIONS")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(1),
        }
    }
}

/// A running process of the fleet, logging to a file.
pub struct RoleProcess {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl RoleProcess {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: the crash case. Nothing is flushed, nothing acked.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await.context("killing a fleet process")
    }

    /// SIGTERM, then wait for a graceful exit; returns whether it exited 0.
    pub async fn terminate(&mut self, within: Duration) -> anyhow::Result<bool> {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => Ok(status?.success()),
            Err(_) => {
                self.child.kill().await?;
                Ok(false)
            }
        }
    }

    /// Peak resident memory (`VmHWM` in /proc), in KiB; `None` where /proc does not tell.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// The processes of one fleet. Dropping it kills them all.
pub struct Fleet {
    pub bin: PathBuf,
    pub env: FleetEnv,
    pub log_dir: PathBuf,
    pub processes: Vec<RoleProcess>,
}

impl Fleet {
    pub fn new(bin: PathBuf, env: FleetEnv, log_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(log_dir)?;
        Ok(Self {
            bin,
            env,
            log_dir: log_dir.to_owned(),
            processes: Vec::new(),
        })
    }

    /// Starts `fitlink <args>` with the fleet's environment; `name` must be unique.
    pub fn spawn(&mut self, name: &str, args: &[&str]) -> anyhow::Result<()> {
        self.spawn_with_env(name, args, &[])
    }

    /// Like [`Fleet::spawn`], with extra environment for this process only.
    pub fn spawn_with_env(
        &mut self,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let log = self.log_dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(&self.bin)
            .args(args)
            .envs(self.env.vars())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {}", self.bin.display(), args.join(" ")))?;
        self.processes.push(RoleProcess {
            name: name.to_owned(),
            child,
            log,
        });
        Ok(())
    }

    pub fn get(&mut self, name: &str) -> &mut RoleProcess {
        self.processes
            .iter_mut()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no fleet process named {name}"))
    }

    /// Removes a process from the fleet (after it was killed or terminated).
    pub fn forget(&mut self, name: &str) {
        self.processes.retain(|p| p.name != name);
    }

    /// Fails if any process has exited unexpectedly, with the tail of its log.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for p in &mut self.processes {
            if let Some(status) = p.child.try_wait()? {
                bail!(
                    "{} exited with {status}; last log lines:\n{}",
                    p.name,
                    p.log_tail(30)
                );
            }
        }
        Ok(())
    }

    /// SIGTERM to every process; returns the names of those that did not exit 0.
    pub async fn terminate_all(&mut self) -> Vec<String> {
        let mut unclean = Vec::new();
        for p in &mut self.processes {
            if !p.terminate(Duration::from_secs(30)).await.unwrap_or(false) {
                unclean.push(p.name.clone());
            }
        }
        self.processes.clear();
        unclean
    }

    /// Deletes the fleet's queues (a demo or test leaves nothing on the broker).
    pub async fn delete_queues(&self) -> anyhow::Result<()> {
        delete_queues(&self.env.broker()).await
    }
}

/// Deletes the run's queues (with a single results queue as well as partitioned ones: a run may
/// have changed its partition count).
pub async fn delete_queues(broker: &BrokerArgs) -> anyhow::Result<()> {
    let conn = broker::connect(broker, "cleanup").await?;
    let channel = conn.create_channel().await?;
    let mut queues: Vec<String> = broker
        .topology()
        .all_queues()
        .into_iter()
        .map(str::to_owned)
        .collect();
    queues.extend(broker::Topology::new(&broker.namespace).results);
    queues.sort();
    queues.dedup();
    for queue in queues {
        channel
            .queue_delete(queue.as_str().into(), Default::default())
            .await?;
    }
    let _ = conn.close(200, "done".into()).await;
    Ok(())
}

/// A running simulator and its base URL.
pub struct SimulatorProcess {
    pub child: Child,
    pub base_url: String,
}

/// Starts `fitlink simulator serve <args>` on a free loopback port and waits for its
/// `simulator listening on URL` line.
pub async fn start_simulator(
    bin: &Path,
    args: &[String],
    log: &Path,
) -> anyhow::Result<SimulatorProcess> {
    let mut child = Command::new(bin)
        .args(["simulator", "serve", "--port", "0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .kill_on_drop(true)
        .spawn()
        .context("starting the simulator")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("the simulator did not start within 30 s")??
        .context("the simulator exited before it was listening")?;
    let base_url = first
        .strip_prefix("simulator listening on ")
        .with_context(|| format!("unexpected first simulator line {first:?}"))?
        .trim()
        .to_owned();
    // Keep draining stdout so the simulator never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(SimulatorProcess { child, base_url })
}

/// Polls `check` until it returns `Some`, or fails after `timeout` saying what was awaited.
/// For conditions only observable by looking (rows committed by another process).
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Opens the database read-only once the writer has created it.
pub async fn wait_for_database(url: &str, timeout: Duration) -> anyhow::Result<Database> {
    wait_for("the writer to create the database", timeout, || async {
        Ok(Database::reader(url, "fleet").await.ok())
    })
    .await
}

/// Where a fleet run stands: participants synced (a completed job, nothing in flight), stopped
/// with a reason (not active, nothing in flight), and all.
pub struct Progress {
    pub synced: i64,
    pub stopped: i64,
    pub total: i64,
}

impl Progress {
    /// Every participant is either synced or has a reason not to be.
    pub fn settled(&self) -> bool {
        self.synced + self.stopped >= self.total
    }
}

pub async fn progress(db: &Database) -> anyhow::Result<Progress> {
    let (synced, stopped, total): (i64, i64, i64) = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state IN ('active', 'intraday_not_permitted')
                        AND last_success_at IS NOT NULL AND in_flight_job_id IS NULL),
                    count(*) FILTER (WHERE state NOT IN ('active', 'intraday_not_permitted')
                        AND in_flight_job_id IS NULL),
                    count(*)
             FROM participants",
        ),
        one
    )?;
    Ok(Progress {
        synced,
        stopped,
        total,
    })
}

/// Rows per data table.
pub async fn table_counts(db: &Database) -> anyhow::Result<Vec<(&'static str, i64)>> {
    let mut counts = Vec::new();
    for table in fitlink_shared::store::DATA_TABLES {
        // Table names come from a constant list, never from input.
        let (n,): (i64,) = fetch!(
            db.exec(),
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))),
            one
        )?;
        counts.push((table, n));
    }
    Ok(counts)
}

/// A loopback port nobody listens on right now (for a role that must be told its port).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
