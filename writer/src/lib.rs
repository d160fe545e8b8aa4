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
//! The results are split into partitions by participant (`FITLINK_RESULTS_PARTITIONS`), each a
//! quorum queue with single-active-consumer: a writer consumes the partitions it is given
//! (`--partitions`), and a second writer on the same partitions is a hot standby that receives
//! nothing until the active one dies. On PostgreSQL writers with different partitions are active
//! at once; on SQLite one writer process consumes every partition and holds the database's
//! writer lock, so a second one waits as the standby.

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
    /// The results partitions this writer consumes: `all`, or a list such as `0,3`. Each
    /// partition is active on one writer at a time; on PostgreSQL writers with different
    /// partitions write at once. On SQLite one writer process consumes them all.
    #[arg(long, env = "FITLINK_WRITER_PARTITIONS", default_value = "all", value_parser = parse_partitions)]
    pub partitions: Partitions,
}

/// Which results partitions a writer consumes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Partitions {
    All,
    Only(Vec<usize>),
}

fn parse_partitions(text: &str) -> Result<Partitions, String> {
    if text.trim() == "all" {
        return Ok(Partitions::All);
    }
    let mut list = text
        .split(',')
        .map(|p| {
            p.trim().parse::<usize>().map_err(|_| {
                format!("{p:?} is not a partition number: give `all` or a list such as 0,3")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    list.sort_unstable();
    list.dedup();
    Ok(Partitions::Only(list))
}

impl Partitions {
    /// The partition numbers, checked against the fleet's `count`.
    pub fn resolve(&self, count: usize) -> anyhow::Result<Vec<usize>> {
        match self {
            Partitions::All => Ok((0..count).collect()),
            Partitions::Only(list) => {
                if let Some(bad) = list.iter().find(|p| **p >= count) {
                    anyhow::bail!(
                        "--partitions names partition {bad}, but the fleet has {count} \
                         (FITLINK_RESULTS_PARTITIONS): partitions are 0 to {}",
                        count - 1
                    );
                }
                Ok(list.clone())
            }
        }
    }
}

impl WriterArgs {
    pub fn job_lease(&self) -> Duration {
        Duration::from_secs(self.job_lease_secs)
    }

    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.linger_ms)
    }

    /// The results partitions this writer consumes, checked against the fleet's partition count
    /// and the database: SQLite takes one writer process, which must consume every partition.
    pub fn partitions_to_consume(&self) -> anyhow::Result<Vec<usize>> {
        let count = usize::from(self.broker.results_partitions.max(1));
        let partitions = self.partitions.resolve(count)?;
        let backend = fitlink_shared::store::Backend::of_url(&self.database.database_url)?;
        if !backend.allows_concurrent_writers() && partitions.len() < count {
            anyhow::bail!(
                "on SQLite one writer process consumes every results partition (the database \
                 takes one writer at a time): start this writer with --partitions all, or move \
                 to PostgreSQL (`fitlink store copy`) for several active writers"
            );
        }
        Ok(partitions)
    }

    /// Settings that no restart can fix, checked before the writer starts.
    pub fn check(&self) -> anyhow::Result<()> {
        self.partitions_to_consume().map(|_| ())
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
        assert_eq!(cli.writer.partitions, Partitions::All);
    }

    #[test]
    fn partitions_are_all_or_a_list_within_the_fleet() {
        assert_eq!(parse_partitions("all"), Ok(Partitions::All));
        assert_eq!(parse_partitions("3, 0,3"), Ok(Partitions::Only(vec![0, 3])));
        assert!(parse_partitions("0,x").unwrap_err().contains("\"x\""));
        assert_eq!(Partitions::All.resolve(4).unwrap(), [0, 1, 2, 3]);
        assert_eq!(Partitions::Only(vec![1, 3]).resolve(4).unwrap(), [1, 3]);
        let err = Partitions::Only(vec![4])
            .resolve(4)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("partition 4") && err.contains("0 to 3"),
            "{err}"
        );
    }
}
