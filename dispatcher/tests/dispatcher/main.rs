//! The dispatcher against a real RabbitMQ (127.0.0.1:5672, guest/guest) and a real SQLite file.
//!
//! Each test uses its own namespace (`t-<uuid>`), so tests run in parallel without seeing each
//! other's messages, and deletes its queues at the end. Tests write the database directly to set
//! up state; the dispatcher itself only reads it.

use std::future::Future;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use fitlink_dispatcher::{
    DispatcherArgs, ImportError, ImportWait, ReplaySelection, UnknownParticipants, dlq_list,
    dlq_replay, due_participants, enqueue, import_participants,
};
use fitlink_shared::broker::{self, Headers, Publisher, Topology, long_string};
use fitlink_shared::config::{BrokerArgs, DatabaseArgs, OpsArgs};
use fitlink_shared::domain::{ParticipantId, Provider, UtcInstant};
use fitlink_shared::messages::{
    ATTEMPT_HEADER, JOB_HEADER, PARTICIPANT_HEADER, REASON_HEADER, SyncJob, SyncTrigger,
    WriterCommand,
};
use fitlink_shared::on_backend;
use fitlink_shared::secret::{SealedToken, Secret, TokenKeys};
use fitlink_shared::store::{Database, StoreSettings};
use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicRejectOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn broker_args(namespace: &str) -> BrokerArgs {
    BrokerArgs {
        amqp_url: Secret::new(AMQP_URL.to_owned()),
        namespace: namespace.to_owned(),
        results_partitions: 1,
    }
}

/// A fresh database in a temporary directory, created and migrated as the writer would.
struct TestDb {
    _dir: tempfile::TempDir,
    args: DatabaseArgs,
    db: Database,
}

impl TestDb {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("fitlink.db").display());
        let db = Database::open_for_writing(&url, &StoreSettings::for_role("writer"))
            .await
            .unwrap();
        Self {
            _dir: dir,
            args: DatabaseArgs::url(url),
            db,
        }
    }

    async fn participant(&self, p: Row<'_>) {
        let at = |d: Option<TimeDelta>| d.map(|d| UtcInstant::new(Utc::now() + d));
        let start = UtcInstant::parse("2026-01-01T00:00:00Z").unwrap();
        on_backend!(self.db.exec(), |e| {
            sqlx::query(
                "INSERT INTO participants (participant_id, provider, state, sync_from, sync_cursor,
                    last_success_at, in_flight_job_id, in_flight_since, retry_at, created_at, updated_at)
                 VALUES ($1, 'google-health', $2, $7, $7, $3, $4, $5, $6, $7, $7)",
            )
            .bind(p.id.to_owned())
            .bind(p.state.to_owned())
            .bind(at(p.last_success))
            .bind(p.in_flight.map(|j| j.to_string()))
            .bind(at(p.in_flight_since))
            .bind(at(p.retry_at))
            .bind(start)
            .execute(e)
            .await
            .map(|done| done.rows_affected())
        })
        .unwrap();
    }
}

/// A participant row for a test; instants are offsets from now.
#[derive(Clone, Copy)]
struct Row<'a> {
    id: &'a str,
    state: &'a str,
    last_success: Option<TimeDelta>,
    in_flight: Option<Uuid>,
    in_flight_since: Option<TimeDelta>,
    retry_at: Option<TimeDelta>,
}

fn active(id: &str) -> Row<'_> {
    Row {
        id,
        state: "active",
        last_success: None,
        in_flight: None,
        in_flight_since: None,
        retry_at: None,
    }
}

/// Runs `body` in a fresh namespace and deletes that namespace's queues afterwards, even if the
/// body panicked.
async fn in_namespace<F, Fut>(body: F)
where
    F: FnOnce(BrokerArgs) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let namespace = format!("t-{}", Uuid::new_v4());
    let args = broker_args(&namespace);
    let outcome = tokio::spawn(body(args.clone())).await;
    let conn = broker::connect(&args, "test-cleanup").await.unwrap();
    for queue in Topology::new(&namespace).all_queues() {
        let channel = conn.create_channel().await.unwrap();
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "OK".into()).await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// A test's own view of the broker.
struct Peek {
    conn: lapin::Connection,
    topology: Topology,
}

impl Peek {
    async fn open(args: &BrokerArgs) -> Self {
        let conn = broker::connect(args, "test").await.unwrap();
        let topology = Topology::new(&args.namespace);
        let channel = conn.create_channel().await.unwrap();
        topology.declare(&channel).await.unwrap();
        Self { conn, topology }
    }

    async fn depth(&self, queue: &str) -> Option<u32> {
        broker::queue_depth_on_fresh_channel(&self.conn, queue)
            .await
            .unwrap()
    }

    /// Waits (up to 10 s) for a queue to reach a depth; broker-side requeues and dead-lettering
    /// are asynchronous.
    async fn wait_depth(&self, queue: &str, expected: u32) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let depth = self.depth(queue).await;
            if depth == Some(expected) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{queue}: depth {depth:?}, expected {expected}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Takes the next writer command off the results queue (consuming, because the queue has a
    /// single active consumer and so refuses `basic.get`).
    async fn take_command(&self) -> WriterCommand {
        let channel = broker::consumer_channel(&self.conn, 1).await.unwrap();
        let mut consumer = channel
            .basic_consume(
                self.topology.results[0].as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("a message on the results queue within 10 s")
            .expect("the consumer is open")
            .unwrap();
        delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
        let _ = channel.close(200, "OK".into()).await;
        serde_json::from_slice(&delivery.data).unwrap()
    }

    async fn publisher(&self) -> Publisher {
        Publisher::open(&self.conn).await.unwrap()
    }
}

fn request(command: WriterCommand) -> fitlink_shared::messages::SyncRequest {
    match command {
        WriterCommand::RequestSync(request) => request,
        other => panic!("expected a sync request, got {}", other.kind()),
    }
}

/// The dispatcher's settings as their defaults give them, with this broker and database, an
/// hourly schedule and no portal.
fn dispatcher_args(broker: BrokerArgs, database: DatabaseArgs) -> DispatcherArgs {
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: DispatcherArgs,
    }
    let mut args =
        <Cli as clap::Parser>::parse_from(["dispatcher", "--interval-secs", "3600"]).args;
    args.broker = broker;
    args.database = database;
    args.ops = OpsArgs {
        ops_addr: "127.0.0.1:0".parse().unwrap(),
    };
    args
}

fn sync_job(job_id: Uuid, participant: &str) -> SyncJob {
    SyncJob {
        job_id,
        participant_id: ParticipantId::new(participant).unwrap(),
        provider: Provider::GoogleHealth,
        sealed_refresh_token: SealedToken::from_stored("c2VhbGVk".into()),
        from: UtcInstant::parse("2026-01-01T00:00:00Z").unwrap(),
        sync_from: None,
        time_zone: None,
        touch_only: false,
        identity_unknown: false,
        granted_at: UtcInstant::parse("2026-01-01T00:00:00Z").unwrap(),
    }
}

mod commands;
mod schedule;
mod webhooks;
