//! RabbitMQ: the fleet's queue topology and a confirmed publisher.
//!
//! Every queue is a durable quorum queue. Messages reach queues through the default exchange
//! (routing key = queue name), which keeps the topology small and makes `mandatory` publishing
//! meaningful: a publish to a queue that does not exist comes back instead of vanishing.
//!
//! ```text
//!  results ──(writer)──► jobs ──(worker)──► results
//!                         │  ▲
//!          retry copy ◄───┘  └── TTL expiry: jobs.retry.{5,30,120,600,3600}s
//!  delivery limit / our own attempt limit ──► jobs.dead      (dead letters, reason attached)
//!  results delivery limit / undecodable   ──► results.dead
//! ```
//!
//! Dead-lettering is `at-least-once` (needs `x-overflow: reject-publish` on the source queue),
//! otherwise RabbitMQ dead-letters at most once and a broker hiccup could drop a job.

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection};

use crate::config::BrokerArgs;

mod connect;
#[cfg(test)]
mod silence_tests;
#[cfg(test)]
mod silent_broker;
pub mod testing;
pub use connect::{
    CONNECT_TIMEOUT, ConnectError, connect_with, is_permanent_connect_error, tls_in_use, use_tls,
};

/// How long a publish may wait for the broker's confirm before we call it failed. A resource
/// alarm blocks publishers; we would rather fail the job (and retry) than hang forever.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// The fixed retry delays. Each is a queue with a queue-level TTL that dead-letters back to the
/// jobs queue; per-message TTLs in one queue would block behind the head.
pub const RETRY_TIERS: [Duration; 5] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(3600),
];

/// Redeliveries of a job (worker crashes while holding it) before RabbitMQ dead-letters it.
pub const JOBS_DELIVERY_LIMIT: i32 = 20;
/// Redeliveries of a result before it is treated as poison and dead-lettered.
pub const RESULTS_DELIVERY_LIMIT: i32 = 5;

/// Most results partitions a fleet may have (each is a quorum queue with its own writer).
pub const MAX_RESULTS_PARTITIONS: u16 = 64;

/// Queue names for one fleet (one namespace).
#[derive(Clone, Debug)]
pub struct Topology {
    pub jobs: String,
    pub jobs_dead: String,
    /// The results queues, one per partition: `<namespace>.results` when there is one,
    /// `<namespace>.results.p0` … when there are several. Every command about a participant goes
    /// to the partition of [`partition_of`] its id, so one writer (the partition's single active
    /// consumer) decides everything about that participant.
    pub results: Vec<String>,
    pub results_dead: String,
    pub retry: Vec<(Duration, String)>,
}

/// The results partition of a participant: a stable hash of the id (the first eight bytes of
/// its SHA-256) modulo the partition count. Stable across processes, machines and releases.
pub fn partition_of(participant: &str, partitions: usize) -> usize {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(participant.as_bytes());
    let head = u64::from_be_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"));
    (head % partitions.max(1) as u64) as usize
}

impl Topology {
    /// The topology with one results queue (`<namespace>.results`).
    pub fn new(namespace: &str) -> Self {
        Self::partitioned(namespace, 1)
    }

    /// The topology with `partitions` results queues (at least one).
    pub fn partitioned(namespace: &str, partitions: u16) -> Self {
        let results = match partitions.max(1) {
            1 => vec![format!("{namespace}.results")],
            n => (0..n)
                .map(|i| format!("{namespace}.results.p{i}"))
                .collect(),
        };
        Self {
            jobs: format!("{namespace}.jobs"),
            jobs_dead: format!("{namespace}.jobs.dead"),
            results,
            results_dead: format!("{namespace}.results.dead"),
            retry: RETRY_TIERS
                .iter()
                .map(|d| (*d, format!("{namespace}.jobs.retry.{}s", d.as_secs())))
                .collect(),
        }
    }

    /// How many results partitions there are.
    pub fn partitions(&self) -> usize {
        self.results.len()
    }

    /// The results queue that takes commands about `participant`.
    pub fn results_for(&self, participant: &str) -> &str {
        &self.results[partition_of(participant, self.results.len())]
    }

    /// The results queue of commands that name no participant (none do today but an import,
    /// which is split by participant before it is sent): partition 0.
    pub fn results_default(&self) -> &str {
        &self.results[0]
    }

    /// The shortest retry tier at least as long as `delay` (the longest if none is).
    pub fn retry_queue_for(&self, delay: Duration) -> (Duration, &str) {
        let (d, q) = self
            .retry
            .iter()
            .find(|(d, _)| *d >= delay)
            .unwrap_or_else(|| self.retry.last().expect("at least one retry tier"));
        (*d, q.as_str())
    }

    /// Every queue, in declaration order (dead-letter targets first).
    pub fn all_queues(&self) -> Vec<&str> {
        let mut queues = vec![
            self.jobs_dead.as_str(),
            self.results_dead.as_str(),
            self.jobs.as_str(),
        ];
        queues.extend(self.results.iter().map(String::as_str));
        queues.extend(self.retry.iter().map(|(_, q)| q.as_str()));
        queues
    }

    /// Declares every queue. Idempotent; the arguments must match `deploy/definitions.json`.
    pub async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        for (name, args) in self.queue_arguments() {
            channel
                .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
                .await?;
        }
        Ok(())
    }

    /// The arguments of each queue, in declaration order.
    pub fn queue_arguments(&self) -> Vec<(&str, FieldTable)> {
        let mut out = vec![
            (self.jobs_dead.as_str(), quorum()),
            (self.results_dead.as_str(), quorum()),
            (self.jobs.as_str(), {
                let mut t = dead_lettering_to(&self.jobs_dead);
                t.insert(
                    "x-delivery-limit".into(),
                    AMQPValue::LongInt(JOBS_DELIVERY_LIMIT),
                );
                t
            }),
        ];
        for results in &self.results {
            let mut t = dead_lettering_to(&self.results_dead);
            t.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongInt(RESULTS_DELIVERY_LIMIT),
            );
            t.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
            out.push((results.as_str(), t));
        }
        for (delay, name) in &self.retry {
            let mut t = dead_lettering_to(&self.jobs);
            t.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(delay.as_millis() as i64),
            );
            out.push((name.as_str(), t));
        }
        out
    }
}

fn quorum() -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-queue-type".into(), long_string("quorum"));
    t
}

/// A quorum queue that dead-letters, at least once, to `target` through the default exchange.
fn dead_lettering_to(target: &str) -> FieldTable {
    let mut t = quorum();
    t.insert("x-dead-letter-exchange".into(), long_string(""));
    t.insert("x-dead-letter-routing-key".into(), long_string(target));
    t.insert(
        "x-dead-letter-strategy".into(),
        long_string("at-least-once"),
    );
    t.insert("x-overflow".into(), long_string("reject-publish"));
    t
}

pub fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// Connects to the broker, over TLS for an `amqps://` URL with the process's TLS files
/// ([`use_tls`]), within [`CONNECT_TIMEOUT`]. Roles open two connections: one to consume, one to
/// publish, because a resource alarm blocks a publishing connection and must not stall acks on
/// the consuming one.
pub async fn connect(args: &BrokerArgs, purpose: &str) -> Result<Connection, ConnectError> {
    connect_with(args, &tls_in_use(), purpose).await
}

/// A consuming channel with a prefetch window.
pub async fn consumer_channel(conn: &Connection, prefetch: u16) -> lapin::Result<Channel> {
    let channel = conn.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    Ok(channel)
}

/// Why a publish did not become durable on the broker.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("broker did not confirm within {0:?}")]
    Timeout(Duration),
    #[error("broker refused the message (nack) for queue {0}")]
    Nacked(String),
    #[error("queue {0} does not exist (message returned as unroutable)")]
    Unroutable(String),
}

/// Publishes persistent messages with `mandatory` and waits for the broker's confirm, so that
/// "published" means "durably queued". Cheap to clone; safe to share between tasks.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    /// How long a publish may wait for its confirm: [`CONFIRM_TIMEOUT`], shorter in tests that
    /// prove the bound without waiting 30 s for it.
    confirm_timeout: Duration,
}

/// Headers to put on a message.
pub type Headers = Vec<(&'static str, AMQPValue)>;

impl Publisher {
    pub async fn open(conn: &Connection) -> lapin::Result<Self> {
        let channel = conn.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            confirm_timeout: CONFIRM_TIMEOUT,
        })
    }

    /// The same publisher with another bound on the wait for a confirm (every role keeps
    /// [`CONFIRM_TIMEOUT`]; a test of the bound should not take 30 s).
    #[cfg(test)]
    pub(crate) fn with_confirm_timeout(self, confirm_timeout: Duration) -> Self {
        Self {
            confirm_timeout,
            ..self
        }
    }

    pub async fn publish(
        &self,
        queue: &str,
        body: &[u8],
        headers: Headers,
    ) -> Result<(), PublishError> {
        let mut table = FieldTable::default();
        for (k, v) in headers {
            table.insert(k.into(), v);
        }
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_headers(table);
        let confirm = async {
            let pending = self
                .channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..Default::default()
                    },
                    body,
                    props,
                )
                .await?;
            pending.await
        };
        let confirmation = tokio::time::timeout(self.confirm_timeout, confirm)
            .await
            .map_err(|_| PublishError::Timeout(self.confirm_timeout))??;
        // The broker has the message and said so; the publisher dies before it knows.
        crate::faults::FaultPoint::PublishBeforeConfirm.strike();
        if confirmation.is_nack() {
            return Err(PublishError::Nacked(queue.to_owned()));
        }
        if confirmation.take_message().is_some() {
            return Err(PublishError::Unroutable(queue.to_owned()));
        }
        Ok(())
    }

    pub async fn publish_json<T: serde::Serialize>(
        &self,
        queue: &str,
        message: &T,
        headers: Headers,
    ) -> Result<(), PublishError> {
        let body = serde_json::to_vec(message).expect("messages always serialise");
        self.publish(queue, &body, headers).await
    }
}

/// Reads a header as text, whatever AMQP string type the sender used.
pub fn header_text(table: Option<&FieldTable>, key: &str) -> Option<String> {
    let value = table?.inner().get(key)?;
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        other => header_int_of(other).map(|n| n.to_string()),
    }
}

/// Reads a header as an integer, whatever AMQP integer type the sender used.
pub fn header_int(table: Option<&FieldTable>, key: &str) -> Option<i64> {
    header_int_of(table?.inner().get(key)?)
}

fn header_int_of(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        _ => None,
    }
}

/// Depth of a queue (messages ready), by passive declare; `None` if it does not exist.
pub async fn queue_depth(channel: &Channel, queue: &str) -> Option<u32> {
    passive_declare(channel, queue)
        .await
        .map(|q| q.message_count())
}

async fn passive_declare(channel: &Channel, queue: &str) -> Option<lapin::Queue> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::durable().passive(),
            FieldTable::default(),
        )
        .await
        .ok()
}

/// A queue's state by passive declare on a channel of its own; `Ok(None)` if the queue does not
/// exist.
///
/// A passive declare of a missing queue makes the broker close the channel it ran on, so each
/// check gets a fresh channel and one missing queue cannot spoil the checks after it. An error
/// means the connection itself failed.
async fn passive_declare_on_fresh_channel(
    conn: &Connection,
    queue: &str,
) -> lapin::Result<Option<lapin::Queue>> {
    let channel = conn.create_channel().await?;
    let declared = passive_declare(&channel, queue).await;
    if channel.status().connected() {
        let _ = channel.close(200, "OK".into()).await;
    }
    Ok(declared)
}

/// Depth of a queue (messages ready) on a channel of its own; `Ok(None)` if the queue does not
/// exist, an error if the connection failed.
pub async fn queue_depth_on_fresh_channel(
    conn: &Connection,
    queue: &str,
) -> lapin::Result<Option<u32>> {
    let declared = passive_declare_on_fresh_channel(conn, queue).await?;
    Ok(declared.map(|q| q.message_count()))
}

/// Consumers of a queue (a writer on a results queue, say) on a channel of its own; `Ok(None)`
/// if the queue does not exist, an error if the connection failed.
pub async fn queue_consumers_on_fresh_channel(
    conn: &Connection,
    queue: &str,
) -> lapin::Result<Option<u32>> {
    let declared = passive_declare_on_fresh_channel(conn, queue).await?;
    Ok(declared.map(|q| q.consumer_count()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `deploy/definitions.json` is what operators import into a broker; it must declare the
    /// same queues with the same arguments, or the roles' declarations fail with
    /// PRECONDITION_FAILED.
    #[test]
    fn deploy_definitions_match_the_topology() {
        let defs: serde_json::Value =
            serde_json::from_str(include_str!("../../deploy/definitions.json")).unwrap();
        let mut declared: Vec<(String, serde_json::Value)> = defs["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| {
                (
                    q["name"].as_str().unwrap().to_owned(),
                    q["arguments"].clone(),
                )
            })
            .collect();
        let mut expected: Vec<(String, serde_json::Value)> = Topology::new("fitlink")
            .queue_arguments()
            .into_iter()
            .map(|(name, table)| {
                let args = table
                    .inner()
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            AMQPValue::LongString(s) => {
                                serde_json::json!(String::from_utf8_lossy(s.as_bytes()))
                            }
                            AMQPValue::Boolean(b) => serde_json::json!(b),
                            other => serde_json::json!(header_int_of(other).unwrap()),
                        };
                        (k.as_str().to_owned(), v)
                    })
                    .collect::<serde_json::Map<_, _>>();
                (name.to_owned(), serde_json::Value::Object(args))
            })
            .collect();
        declared.sort_by(|a, b| a.0.cmp(&b.0));
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(declared, expected);
    }

    #[test]
    fn participants_keep_their_partition_and_spread_over_all() {
        let t = Topology::partitioned("t", 4);
        assert_eq!(
            t.results,
            [
                "t.results.p0",
                "t.results.p1",
                "t.results.p2",
                "t.results.p3"
            ]
        );
        assert_eq!(Topology::new("t").results, ["t.results"]);
        // Stable: the same id, the same partition, whoever computes it (pinned values).
        assert_eq!(partition_of("sim-0001", 4), partition_of("sim-0001", 4));
        let pinned: Vec<usize> = ["p1", "p2", "sim-0001", "sim-0002"]
            .iter()
            .map(|p| partition_of(p, 4))
            .collect();
        assert_eq!(pinned, PINNED_PARTITIONS);
        let mut used = [0usize; 4];
        for i in 0..1000 {
            used[partition_of(&format!("participant-{i}"), 4)] += 1;
        }
        assert!(used.iter().all(|n| (200..300).contains(n)), "{used:?}");
        assert_eq!(partition_of("anyone", 1), 0);
    }

    /// `partition_of` of "p1", "p2", "sim-0001", "sim-0002" over 4 partitions (checked by hand:
    /// the first 8 bytes of SHA-256, big-endian, mod 4). A change here
    /// moves existing participants to other partitions: only with the re-partitioning procedure.
    const PINNED_PARTITIONS: [usize; 4] = [3, 0, 0, 1];

    #[test]
    fn retry_tiers_round_up() {
        let t = Topology::new("t");
        assert_eq!(
            t.retry_queue_for(Duration::from_secs(1)).1,
            "t.jobs.retry.5s"
        );
        assert_eq!(
            t.retry_queue_for(Duration::from_secs(11)).1,
            "t.jobs.retry.30s"
        );
        assert_eq!(
            t.retry_queue_for(Duration::from_secs(86_400)).1,
            "t.jobs.retry.3600s"
        );
    }
}
