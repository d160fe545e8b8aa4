//! The writer: the only process that writes the research database (invariant 5, one writer).
//!
//! It consumes [`WriterCommand`]s from the results queue, applies many of them per SQLite
//! transaction, and acks them only after the commit. It is also the arbiter of "one job in
//! flight per participant" (invariant 6): sync requests are granted here, and a granted
//! [`SyncJob`](fitlink_shared::messages::SyncJob) is published to the jobs queue only after the
//! grant is committed.
//!
//! Code map:
//! - [`store`]: the database side alone ([`Store`]), one transaction per [`Store::apply`]; knows
//!   nothing of the broker, so tests and benchmarks drive it directly.
//! - `consumer`: the batching loop: decode, apply, publish granted jobs, ack / dead-letter /
//!   requeue. Knows nothing of SQL.
//!
//! The results queue is a quorum queue with single-active-consumer: a second writer started
//! against the same namespace is a hot standby that receives nothing until the active one dies.

use std::time::Duration;

use fitlink_shared::config::{BrokerArgs, DatabaseArgs, OpsArgs};
use tokio_util::sync::CancellationToken;

mod consumer;
pub mod store;

pub use fitlink_shared::messages::WriterCommand;
pub use store::{Applied, Effect, NotGranted, Notified, Rejection, Store, StoreError};

/// Settings of `fitlink writer`.
#[derive(clap::Args, Clone, Debug)]
pub struct WriterArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub ops: OpsArgs,
    /// Most messages per transaction: larger batches amortise the commit, smaller ones ack sooner.
    #[arg(long, env = "FITLINK_WRITER_BATCH_MESSAGES", default_value_t = 256)]
    pub batch_messages: usize,
    /// How long to wait for more messages before committing a partial batch (milliseconds).
    #[arg(long, env = "FITLINK_WRITER_LINGER_MS", default_value_t = 25)]
    pub linger_ms: u64,
    /// An in-flight claim older than this (seconds) is considered lost and may be re-granted.
    #[arg(long, env = "FITLINK_JOB_LEASE_SECS", default_value_t = 10800)]
    pub job_lease_secs: u64,
}

impl WriterArgs {
    pub fn job_lease(&self) -> Duration {
        Duration::from_secs(self.job_lease_secs)
    }

    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }
}

/// Runs the writer until `shutdown` is cancelled (then it stops consuming, commits and acks what
/// it holds, and returns `Ok`), or until the broker or database fails (then it returns the
/// error, and the binary restarts the role; unacked messages go back to the queue).
pub async fn run(args: WriterArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    consumer::run(args, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        writer: WriterArgs,
    }

    #[test]
    fn flags_parse_with_their_defaults() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "writer",
            "--namespace",
            "t1",
            "--database-url",
            "sqlite://x.db",
            "--batch-messages",
            "64",
        ])
        .unwrap();
        assert_eq!(cli.writer.broker.namespace, "t1");
        assert_eq!(cli.writer.batch_messages, 64);
        assert_eq!(cli.writer.linger(), Duration::from_millis(25));
        assert_eq!(cli.writer.job_lease(), Duration::from_secs(10_800));
    }
}
