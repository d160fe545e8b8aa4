//! The broker's own account of a queue, for tests of the bounds on what a consumer holds: how
//! many messages wait, how many are delivered and not acknowledged, and the prefetch each
//! consumer was given. A passive declare tells only the first; the rest come from `rabbitmqctl`
//! (RabbitMQ's CLI, which the tests' machine has next to its broker), in the vhost of
//! `FITLINK_AMQP_URL` (default `/`).
//!
//! RabbitMQ refreshes a quorum queue's counts on a timer (every few seconds), so a test waits
//! for the state it expects ([`wait_for_queue_state`]) rather than reading it once.

use std::time::Duration;

/// How long [`wait_for_queue_state`] waits: a few of RabbitMQ's statistics intervals.
const WAIT: Duration = Duration::from_secs(30);

/// A queue's messages and consumers, as the broker reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueState {
    /// Waiting for a consumer: the broker holds them back.
    pub ready: u64,
    /// Delivered and not yet acknowledged: what the consumers hold.
    pub unacknowledged: u64,
    /// The prefetch of each consumer of the queue (0: none, the broker sends everything).
    pub prefetch: Vec<u64>,
}

/// The state of `queue` now (as of the broker's last statistics); a queue that does not exist
/// has no messages and no consumers.
async fn queue_state(queue: &str) -> QueueState {
    let counts = rabbitmqctl(&[
        "list_queues",
        "name",
        "messages_ready",
        "messages_unacknowledged",
    ])
    .await;
    let counts = rows_of(&counts, queue).next().unwrap_or_default();
    let consumers = rabbitmqctl(&["list_consumers", "queue_name", "prefetch_count"]).await;
    QueueState {
        ready: counts.first().copied().unwrap_or(0),
        unacknowledged: counts.get(1).copied().unwrap_or(0),
        prefetch: rows_of(&consumers, queue)
            .map(|row| row.first().copied().unwrap_or(0))
            .collect(),
    }
}

/// Waits until the broker reports `expected` for `queue`, and panics with the last state it
/// reported if that does not happen within 30 s.
pub async fn wait_for_queue_state(queue: &str, expected: &QueueState) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = queue_state(queue).await;
        if now == *expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue}: the broker reports {now:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The numbers after the name, on each row of `table` about `queue`.
fn rows_of<'a>(table: &'a str, queue: &'a str) -> impl Iterator<Item = Vec<u64>> + 'a {
    table.lines().filter_map(move |line| {
        let mut fields = line.split('\t');
        (fields.next() == Some(queue))
            .then(|| fields.filter_map(|f| f.trim().parse().ok()).collect())
    })
}

async fn rabbitmqctl(command: &[&str]) -> String {
    let vhost = std::env::var("FITLINK_AMQP_URL")
        .ok()
        .and_then(|url| url.parse::<lapin::uri::AMQPUri>().ok())
        .map_or_else(|| "/".to_owned(), |uri| uri.vhost);
    let out = tokio::process::Command::new("rabbitmqctl")
        .args(["--quiet", "--no-table-headers", "-p", &vhost])
        .args(command)
        .output()
        .await
        .expect("rabbitmqctl (RabbitMQ's CLI) must be installed");
    assert!(
        out.status.success(),
        "rabbitmqctl {}: {}",
        command.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
