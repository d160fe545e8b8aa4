//! The `fitlink` command line: one subcommand per role and per operator action. Parsing and
//! wiring only; each subcommand calls one library function.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use fitlink_dispatcher::{
    ConsoleArgs, DispatcherArgs, ImportError, ImportWait, InviteArgs, ReplaySelection, WithdrawArgs,
};
use fitlink_shared::config::{BrokerArgs, BrokerTlsArgs, DatabaseArgs, GoogleArgs, TokenKeyArgs};
use fitlink_shared::domain::parse_date_or_instant;
use fitlink_shared::provider::google::GoogleHealthClient;
use fitlink_shared::secret::TokenKey;
use fitlink_shared::telemetry::{self, LogFormat};
use fitlink_simulator::SimConfig;
use fitlink_worker::WorkerArgs;
use fitlink_writer::WriterArgs;

use crate::{bench, chaos, coverage, demo, status, store_copy};

#[derive(Parser, Debug)]
#[command(
    name = "fitlink",
    version,
    about = "Links research participants' Fitbit / Google Health accounts and keeps their wearable data flowing into a research database.",
    after_help = "Every flag has a FITLINK_* environment variable (shown in each subcommand's --help)."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, env = "FITLINK_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// TLS to the broker (amqps://): global, because every command that talks to the broker
    /// connects through one function, whichever subcommand's flags it has.
    #[command(flatten)]
    pub broker_tls: BrokerTlsArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the dispatcher: publishes sync requests for due participants on a schedule.
    Dispatcher(DispatcherArgs),
    /// Run a worker: syncs participants from the provider (run as many as you like).
    Worker(WorkerArgs),
    /// Run the writer: the only process that writes the database (a second one is a hot standby).
    Writer(WriterArgs),
    /// Run the coordinators' console: a web view of the cohort (sign-in required) whose actions
    /// go through the writer like the commands below.
    Console(Box<ConsoleArgs>),
    /// Run or inspect the local provider simulator (Google Health API v4 + OAuth).
    Simulator {
        #[command(subcommand)]
        action: SimulatorAction,
    },
    /// Register participants and their refresh tokens.
    Participants {
        #[command(subcommand)]
        action: ParticipantsAction,
    },
    /// Print consent links (signed, single-use, expiring) for coordinators to send.
    Invite(InviteArgs),
    /// Sync these participants now (sync requests go to the writer, which grants one job each).
    Enqueue {
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        database: DatabaseArgs,
        /// Re-fetch from this date or instant instead of the cursor (the cursor never moves back).
        #[arg(long, value_parser = parse_date_or_instant)]
        from: Option<DateTime<Utc>>,
        /// Participant ids.
        #[arg(required = true)]
        participants: Vec<String>,
    },
    /// Stored credentials: seal them again with the current token key (key rotation).
    Credentials {
        #[command(subcommand)]
        action: CredentialsAction,
    },
    /// Dead-lettered jobs: list them, or put them back.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Per-participant sync state, queue depths, and cohort wear compliance.
    Status {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        compliance: status::compliance::ComplianceArgs,
        /// Print the stable JSON form (documented in the README) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The completeness ledger: per participant, local day and family, what is stored, the
    /// wear, and why a day is not complete (docs/coverage.md).
    Coverage(coverage::CoverageArgs),
    /// Print a new random token key (for FITLINK_TOKEN_KEYS or FITLINK_TOKEN_KEY); its key id on
    /// stderr.
    Keygen,
    /// Run the whole fleet locally against the simulator and print what was stored.
    Demo(demo::DemoArgs),
    /// Break the fleet on purpose (kills, broker restart, provider storms), heal, and count what
    /// was lost, duplicated or wrong against the simulator's ground truth.
    Chaos(chaos::ChaosArgs),
    /// Measure throughput (writer rows/s, fleet participant-days/s).
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
    /// The database as a whole: copy it to another (a SQLite pilot to PostgreSQL).
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum StoreAction {
    /// Copy every table into another database (stop the writer first): resumable after an
    /// interruption, verified by row counts and per-participant checksums at the end.
    Copy(store_copy::CopyArgs),
}

#[derive(Subcommand, Debug)]
pub enum SimulatorAction {
    /// Serve the simulator (prints `simulator listening on URL` first).
    Serve(SimConfig),
    /// Print the synthetic participants as an import CSV.
    Roster(SimConfig),
}

#[derive(Subcommand, Debug)]
pub enum ParticipantsAction {
    /// Import participants from a CSV file: participant_id,provider,refresh_token,sync_from.
    Import {
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        token_key: TokenKeyArgs,
        /// Google Health, to check the account of participants moving from Fitbit.
        #[command(flatten)]
        google: GoogleArgs,
        /// Print the import id once it is queued, and exit 0 without waiting for a writer.
        #[arg(long, conflicts_with = "timeout")]
        no_wait: bool,
        /// Stop waiting for a writer after this many seconds and exit 3 (the import stays
        /// queued and is applied when a writer runs). Default: wait until it is applied.
        #[arg(long, alias = "wait-secs", env = "FITLINK_IMPORT_TIMEOUT_SECS")]
        timeout: Option<u64>,
        file: PathBuf,
    },
    /// A participant leaves the study: revoke the provider grant, stop syncing, delete the
    /// credential, and with --purge their stored data; an audit row records it.
    Withdraw(WithdrawArgs),
}

#[derive(Subcommand, Debug)]
pub enum CredentialsAction {
    /// Seal every stored credential not sealed with the current key (the first of
    /// FITLINK_TOKEN_KEYS) again with it, through the writer, in batches; resumable. Exits 1
    /// while some credential still needs an older key.
    Rekey(fitlink_dispatcher::RekeyArgs),
}

#[derive(Subcommand, Debug)]
pub enum DlqAction {
    /// List dead letters with their reasons (no bodies, no tokens).
    List {
        #[command(flatten)]
        broker: BrokerArgs,
    },
    /// Put dead-lettered jobs back: the writer re-grants them from the current cursor.
    Replay {
        #[command(flatten)]
        broker: BrokerArgs,
        #[command(flatten)]
        database: DatabaseArgs,
        /// Replay every dead-lettered job.
        #[arg(long, conflicts_with = "jobs")]
        all: bool,
        /// Job ids to replay.
        #[arg(required_unless_present = "all")]
        jobs: Vec<Uuid>,
    },
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        // `status` probes queues that may not exist; the broker answers by closing the channel,
        // which lapin logs as an error. The report says which queues are missing instead.
        let default_filter = match self.command {
            Command::Status { .. } | Command::Store { .. } => "info,lapin=off",
            // Its output is the data: stderr stays for errors.
            Command::Coverage(_) => "warn",
            _ => "info",
        };
        telemetry::init_logging(self.log_format, default_filter);
        // A misspelt fault point would make a crash test pass without crashing anything.
        fitlink_shared::faults::arm_from_env()?;
        fitlink_shared::broker::use_tls(self.broker_tls);
        match self.command {
            Command::Dispatcher(args) => {
                supervise("dispatcher", |shutdown| {
                    fitlink_dispatcher::run(args.clone(), shutdown)
                })
                .await
            }
            Command::Worker(args) => {
                args.token_key.keys()?;
                supervise("worker", |shutdown| {
                    fitlink_worker::run(args.clone(), shutdown)
                })
                .await
            }
            Command::Writer(args) => {
                // A wrong setting is not healed by restarting: say so and stop.
                args.check()?;
                supervise("writer", |shutdown| {
                    fitlink_writer::run(args.clone(), shutdown)
                })
                .await
            }
            Command::Console(args) => {
                args.token_key.keys()?;
                supervise("console", |shutdown| {
                    fitlink_dispatcher::console::run((*args).clone(), shutdown)
                })
                .await
            }
            Command::Simulator { action } => match action {
                SimulatorAction::Serve(config) => fitlink_simulator::serve(config).await,
                SimulatorAction::Roster(config) => {
                    print!("{}", fitlink_simulator::roster_csv(&config));
                    Ok(())
                }
            },
            Command::Participants {
                action:
                    ParticipantsAction::Import {
                        broker,
                        database,
                        token_key,
                        google,
                        no_wait,
                        timeout,
                        file,
                    },
            } => {
                let key = token_key.keys()?;
                let wait = if no_wait {
                    ImportWait::Queued
                } else {
                    ImportWait::Applied {
                        timeout: timeout.map(Duration::from_secs),
                    }
                };
                let report = fitlink_dispatcher::import_participants(
                    &broker,
                    &database,
                    &key,
                    &file,
                    wait,
                    Some(&GoogleHealthClient::new(&google)),
                )
                .await?;
                println!("{report}");
                Ok(())
            }
            Command::Participants {
                action: ParticipantsAction::Withdraw(args),
            } => {
                let report = fitlink_dispatcher::withdraw(&args).await?;
                print!("{report}");
                Ok(())
            }
            Command::Invite(args) => {
                let report = fitlink_dispatcher::invite(&args).await?;
                print!("{report}");
                Ok(())
            }
            Command::Enqueue {
                broker,
                database,
                from,
                participants,
            } => {
                let report =
                    fitlink_dispatcher::enqueue(&broker, &database, &participants, from).await?;
                println!("{report}");
                Ok(())
            }
            Command::Credentials {
                action: CredentialsAction::Rekey(args),
            } => {
                let report = fitlink_dispatcher::rekey(&args).await?;
                print!("{report}");
                anyhow::ensure!(
                    report.complete(),
                    "not every stored credential is sealed with key {} yet; keep the older keys",
                    report.current_key
                );
                Ok(())
            }
            Command::Dlq { action } => match action {
                DlqAction::List { broker } => {
                    let letters = fitlink_dispatcher::dlq_list(&broker).await?;
                    print!("{}", fitlink_dispatcher::render_dead_letters(&letters));
                    Ok(())
                }
                DlqAction::Replay {
                    broker,
                    database,
                    all,
                    jobs,
                } => {
                    let selection = if all {
                        ReplaySelection::All
                    } else {
                        ReplaySelection::Jobs(jobs)
                    };
                    let report =
                        fitlink_dispatcher::dlq_replay(&broker, &database, selection).await?;
                    println!("{report}");
                    Ok(())
                }
            },
            Command::Status {
                database,
                broker,
                compliance,
                json,
            } => {
                let report = status::status(&database, &broker, &compliance).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print!("{}", status::render_text(&report));
                }
                Ok(())
            }
            Command::Coverage(args) => coverage::run(args).await,
            Command::Keygen => {
                let key = TokenKey::generate();
                let id = TokenKey::parse(&key)?.id();
                println!("{}", key.expose());
                eprintln!("key id {id}");
                Ok(())
            }
            Command::Demo(args) => demo::run(args).await,
            Command::Chaos(args) => chaos::run(args).await,
            Command::Bench { what } => bench::run(what).await,
            Command::Store {
                action: StoreAction::Copy(args),
            } => store_copy::run(args).await,
        }
    }
}

/// Runs a long-lived role until SIGTERM/Ctrl-C, restarting it with backoff when it fails (a
/// broker restart, a database that is not there yet), so a fleet heals without an orchestrator.
async fn supervise<F, Fut>(role: &str, mut start: F) -> anyhow::Result<()>
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let shutdown = telemetry::shutdown_on_signals();
    let mut delay = Duration::from_secs(1);
    loop {
        let started = std::time::Instant::now();
        // Each run gets its own token so what it started (its ops server) stops before a restart.
        let this_run = shutdown.child_token();
        let result = start(this_run.clone()).await;
        this_run.cancel();
        match result {
            Ok(()) => return Ok(()),
            Err(e) if shutdown.is_cancelled() => {
                tracing::warn!(
                    role,
                    error = format!("{e:#}"),
                    "stopped with an error during shutdown"
                );
                return Ok(());
            }
            // Keys that open no stored credential stay wrong after a restart: stop and say so.
            Err(e) if fitlink_shared::secret::canary::is_refusal(&e) => return Err(e),
            // Nor are a wrong broker URL, TLS file or certificate, or a refused login.
            Err(e) if fitlink_shared::broker::is_permanent_connect_error(&e) => return Err(e),
            Err(e) => {
                if started.elapsed() > Duration::from_secs(60) {
                    delay = Duration::from_secs(1);
                }
                tracing::error!(
                    role,
                    error = format!("{e:#}"),
                    retry_in_secs = delay.as_secs(),
                    "role failed; restarting"
                );
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// The exit code for a command that failed: 3 for an import that is queued but was not applied
/// within `--timeout` (nothing failed; a writer applies it when it runs), 1 for anything else.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    match error.downcast_ref::<ImportError>() {
        Some(ImportError::NotAppliedYet { .. }) => 3,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Catches what clap only checks at run time: duplicate flags or ids across flattened
    /// argument groups (e.g. two providers' `client_id`).
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
