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

#[tokio::test]
async fn the_due_query_picks_exactly_the_due_participants() {
    let db = TestDb::new().await;
    let h = TimeDelta::hours;
    let m = TimeDelta::minutes;
    for row in [
        active("due-never-synced"),
        Row {
            last_success: Some(-h(2)),
            ..active("due-synced-long-ago")
        },
        Row {
            last_success: Some(-m(5)),
            ..active("not-synced-recently")
        },
        Row {
            in_flight: Some(Uuid::now_v7()),
            in_flight_since: Some(-m(10)),
            ..active("not-in-flight")
        },
        Row {
            in_flight: Some(Uuid::now_v7()),
            in_flight_since: Some(-h(4)),
            last_success: Some(-h(5)),
            ..active("due-claim-lost")
        },
        Row {
            retry_at: Some(m(10)),
            ..active("not-rate-limited")
        },
        Row {
            retry_at: Some(-m(1)),
            ..active("due-retry-passed")
        },
        Row {
            state: "revoked",
            ..active("not-revoked")
        },
        Row {
            state: "dead_lettered",
            ..active("not-dead-lettered")
        },
        Row {
            state: "needs_reconsent",
            last_success: Some(-h(48)),
            ..active("not-needs-reconsent")
        },
    ] {
        db.participant(row).await;
    }
    let reader = db.args.open_for_reading("dispatcher").await.unwrap();
    let due = due_participants(
        &reader,
        Utc::now(),
        Duration::from_secs(900),
        Duration::from_secs(3 * 3600),
    )
    .await
    .unwrap();
    let mut ids: Vec<&str> = due.iter().map(|d| d.participant_id.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "due-claim-lost",
            "due-never-synced",
            "due-retry-passed",
            "due-synced-long-ago"
        ]
    );
}

#[tokio::test]
async fn the_schedule_requests_the_due_participants_and_stops_on_shutdown() {
    in_namespace(|broker| async move {
        let db = TestDb::new().await;
        db.participant(active("due")).await;
        db.participant(Row {
            last_success: Some(-TimeDelta::minutes(1)),
            ..active("fresh")
        })
        .await;
        let peek = Peek::open(&broker).await;
        let shutdown = CancellationToken::new();
        let args = dispatcher_args(broker.clone(), db.args.clone());
        let role = tokio::spawn(fitlink_dispatcher::run(args, shutdown.clone()));
        peek.wait_depth(&peek.topology.results[0], 1).await;
        shutdown.cancel();
        role.await.unwrap().unwrap();
        let request = request(peek.take_command().await);
        assert_eq!(request.participant_id.as_str(), "due");
        assert_eq!(request.trigger, SyncTrigger::Schedule);
        assert!(!request.force);
        assert_eq!((request.from, request.replaces), (None, None));
    })
    .await;
}

/// A rate-limited participant is asked for again at each reset, also when the writer's grant
/// and the next rate-limited outcome land in the second of the request: `updated_at` (whole
/// seconds) is then unchanged, and only the new reset says the request was answered. Here the
/// test plays that writer: it moves `retry_at` and nothing else.
#[tokio::test]
async fn each_rate_limit_reset_is_asked_for_even_within_one_second() {
    in_namespace(|broker| async move {
        let db = TestDb::new().await;
        db.participant(Row {
            last_success: Some(-TimeDelta::minutes(5)),
            retry_at: Some(-TimeDelta::seconds(1)),
            ..active("limited")
        })
        .await;
        let peek = Peek::open(&broker).await;
        let shutdown = CancellationToken::new();
        let args = dispatcher_args(broker.clone(), db.args.clone());
        let role = tokio::spawn(fitlink_dispatcher::run(args, shutdown.clone()));
        let first = request(peek.take_command().await);
        assert_eq!(first.participant_id.as_str(), "limited");

        let reset = UtcInstant::new(Utc::now() + TimeDelta::seconds(2));
        on_backend!(db.db.exec(), |e| {
            sqlx::query("UPDATE participants SET retry_at = $1 WHERE participant_id = 'limited'")
                .bind(reset)
                .execute(e)
                .await
                .map(|done| done.rows_affected())
        })
        .unwrap();
        // The schedule's own round is an hour away: only the reset can bring this request.
        let second = request(peek.take_command().await);
        assert_eq!(second.participant_id.as_str(), "limited");
        assert_ne!(second.job_id, first.job_id);
        assert!(
            second.requested_at >= reset,
            "asked at {}, before the reset at {}",
            second.requested_at.to_text(),
            reset.to_text()
        );
        shutdown.cancel();
        role.await.unwrap().unwrap();
        assert_eq!(
            peek.depth(&peek.topology.results[0]).await,
            Some(0),
            "asked once per reset"
        );
    })
    .await;
}

#[tokio::test]
async fn the_schedule_waits_for_a_database_that_does_not_exist_yet() {
    in_namespace(|broker| async move {
        let dir = tempfile::tempdir().unwrap();
        let shutdown = CancellationToken::new();
        let args = dispatcher_args(
            broker,
            DatabaseArgs::url(format!("sqlite://{}", dir.path().join("none.db").display())),
        );
        let role = tokio::spawn(fitlink_dispatcher::run(args, shutdown.clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            !role.is_finished(),
            "the dispatcher exited without a database"
        );
        shutdown.cancel();
        role.await.unwrap().unwrap();
        assert!(
            !dir.path().join("none.db").exists(),
            "a reader created the database"
        );
    })
    .await;
}

#[tokio::test]
async fn enqueue_checks_every_id_before_publishing_anything() {
    in_namespace(|broker| async move {
        let db = TestDb::new().await;
        db.participant(active("p1")).await;
        db.participant(active("p2")).await;
        let peek = Peek::open(&broker).await;

        let ids = ["p1", "ghost", "p2", "bad id!"].map(String::from);
        let error = enqueue(&broker, &db.args, &ids, None).await.unwrap_err();
        let unknown = error
            .downcast_ref::<UnknownParticipants>()
            .expect("typed error");
        assert_eq!(unknown.0, ["ghost", "bad id!"]);
        assert!(error.to_string().contains("ghost, bad id!"), "{error}");
        assert_eq!(peek.depth(&peek.topology.results[0]).await, Some(0));

        let from = UtcInstant::parse("2026-03-01T00:00:00Z").unwrap();
        let ids = ["p2", "p1", "p2"].map(String::from);
        let report = enqueue(&broker, &db.args, &ids, Some(from.get()))
            .await
            .unwrap();
        let asked: Vec<&str> = report
            .jobs
            .iter()
            .map(|j| j.participant_id.as_str())
            .collect();
        assert_eq!(asked, ["p2", "p1"]);
        peek.wait_depth(&peek.topology.results[0], 2).await;
        let first = request(peek.take_command().await);
        assert_eq!(first.job_id, report.jobs[0].job_id);
        assert_eq!(first.trigger, SyncTrigger::Manual);
        assert!(first.force);
        assert_eq!(first.from, Some(from));
        assert_eq!(first.replaces, None);
    })
    .await;
}

#[tokio::test]
async fn dead_letters_are_listed_and_replayed_from_the_current_state() {
    in_namespace(|broker| async move {
        let db = TestDb::new().await;
        let dead_job = Uuid::now_v7();
        db.participant(Row {
            state: "dead_lettered",
            in_flight: Some(dead_job),
            in_flight_since: Some(-TimeDelta::hours(1)),
            ..active("p1")
        })
        .await;
        db.participant(active("p2")).await;
        let peek = Peek::open(&broker).await;
        let publisher = peek.publisher().await;
        let t = &peek.topology;

        // 1. A job the worker gave up on, with our headers.
        let headers: Headers = vec![
            (REASON_HEADER, long_string("provider kept answering 503")),
            (PARTICIPANT_HEADER, long_string("p1")),
            (JOB_HEADER, long_string(&dead_job.to_string())),
            (ATTEMPT_HEADER, AMQPValue::LongInt(5)),
        ];
        publisher
            .publish_json(&t.jobs_dead, &sync_job(dead_job, "p1"), headers)
            .await
            .unwrap();
        // 2. A job RabbitMQ dead-lettered itself (rejected without requeue): only x-death.
        let rejected_job = Uuid::now_v7();
        publisher
            .publish_json(&t.jobs, &sync_job(rejected_job, "p2"), Vec::new())
            .await
            .unwrap();
        let channel = peek.conn.create_channel().await.unwrap();
        let job = channel
            .basic_get(t.jobs.as_str().into(), BasicGetOptions { no_ack: false })
            .await
            .unwrap()
            .unwrap();
        job.delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
        // 3. A job of a participant the database does not know.
        let ghost_job = Uuid::now_v7();
        publisher
            .publish_json(&t.jobs_dead, &sync_job(ghost_job, "ghost"), Vec::new())
            .await
            .unwrap();
        // 4. A poison result.
        publisher
            .publish(&t.results_dead, b"{not json", Vec::new())
            .await
            .unwrap();
        peek.wait_depth(&t.jobs_dead, 3).await;

        let letters = dlq_list(&broker).await.unwrap();
        assert_eq!(letters.len(), 4, "{letters:#?}");
        let by_job = |job: Uuid| letters.iter().find(|l| l.job_id == Some(job)).unwrap();
        let ours = by_job(dead_job);
        assert_eq!(ours.queue, t.jobs_dead);
        assert_eq!(ours.reason, "provider kept answering 503");
        assert_eq!(ours.participant_id.as_deref(), Some("p1"));
        assert_eq!(ours.attempts, Some(5));
        let rabbit = by_job(rejected_job);
        assert_eq!(rabbit.reason, "rejected");
        assert_eq!(rabbit.participant_id.as_deref(), Some("p2"));
        assert!(rabbit.dead_lettered_at.is_some());
        assert_eq!(by_job(ghost_job).reason, "unknown");
        let poison = letters.iter().find(|l| l.queue == t.results_dead).unwrap();
        assert_eq!((poison.job_id, poison.reason.as_str()), (None, "unknown"));
        let rendered = fitlink_dispatcher::render_dead_letters(&letters);
        assert!(
            rendered.contains("provider kept answering 503"),
            "{rendered}"
        );
        assert!(
            !rendered.contains("c2VhbGVk"),
            "a body was printed: {rendered}"
        );
        // Listing left everything in place.
        peek.wait_depth(&t.jobs_dead, 3).await;
        peek.wait_depth(&t.results_dead, 1).await;

        // Replay one job by id, and one that is not there.
        let missing = Uuid::now_v7();
        let report = dlq_replay(
            &broker,
            &db.args,
            ReplaySelection::Jobs(vec![dead_job, missing]),
        )
        .await
        .unwrap();
        assert_eq!(report.replayed.len(), 1, "{report}");
        assert_eq!(report.replayed[0].replaces, dead_job);
        assert_eq!(report.not_found, [missing]);
        assert!(report.skipped.is_empty(), "{report}");
        peek.wait_depth(&t.results[0], 1).await;
        let replay = request(peek.take_command().await);
        assert_eq!(replay.participant_id.as_str(), "p1");
        assert_eq!(replay.job_id, report.replayed[0].job_id);
        assert_eq!(replay.trigger, SyncTrigger::Replay);
        assert!(replay.force);
        assert_eq!(replay.replaces, Some(dead_job));
        assert_eq!(replay.from, None);
        peek.wait_depth(&t.jobs_dead, 2).await;

        // Replay the rest: the known participant's job goes, the ghost's stays and is reported.
        let report = dlq_replay(&broker, &db.args, ReplaySelection::All)
            .await
            .unwrap();
        assert_eq!(report.replayed.len(), 1, "{report}");
        assert_eq!(report.replayed[0].replaces, rejected_job);
        assert_eq!(report.skipped.len(), 1, "{report}");
        assert_eq!(report.skipped[0].job_id, Some(ghost_job));
        assert!(report.skipped[0].why.contains("not in the database"));
        peek.wait_depth(&t.jobs_dead, 1).await;
        peek.wait_depth(&t.results_dead, 1).await;
        let left = dlq_list(&broker).await.unwrap();
        assert!(left.iter().any(|l| l.job_id == Some(ghost_job)));
        assert!(left.iter().all(|l| l.job_id != Some(dead_job)));
    })
    .await;
}

const GOOD_FILE: &str = "participant_id,provider,refresh_token,sync_from\n\
                         p1,google-health,tok-1,2026-10-01\n\
                         p2,fitbit,tok-2,2026-10-01T00:00:00Z\n";

#[tokio::test]
async fn an_import_is_one_message_and_wait_sees_the_writer_apply_it() {
    in_namespace(|broker| async move {
        let db = TestDb::new().await;
        db.participant(active("p1")).await;
        let peek = Peek::open(&broker).await;
        let key = TokenKeys::parse(&fitlink_shared::secret::TokenKey::generate()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("consents.csv");

        // A bad file publishes nothing.
        std::fs::write(
            &path,
            "participant_id,provider,refresh_token,sync_from\np1,x,t,y\n",
        )
        .unwrap();
        let error = import_participants(&broker, &db.args, &key, &path, ImportWait::Queued, None)
            .await
            .unwrap_err();
        assert!(matches!(error, ImportError::Invalid(_)), "{error}");
        assert_eq!(peek.depth(&peek.topology.results[0]).await, Some(0));

        // No writer: queued, and --wait says so.
        std::fs::write(&path, GOOD_FILE).unwrap();
        let error = import_participants(
            &broker,
            &db.args,
            &key,
            &path,
            ImportWait::Applied {
                timeout: Some(Duration::from_millis(300)),
            },
            None,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, ImportError::NotAppliedYet { .. }),
            "{error}"
        );
        assert!(
            error
                .to_string()
                .contains("will be applied when a writer runs")
        );
        let WriterCommand::ImportParticipants(batch) = peek.take_command().await else {
            panic!("expected an import");
        };
        assert_eq!(batch.source, "consents.csv");
        assert_eq!(batch.participants.len(), 2);
        let json = serde_json::to_string(&batch).unwrap();
        assert!(!json.contains("tok-1") && !json.contains("tok-2"), "{json}");

        // A "writer" that applies the import: --wait returns once the audit row exists.
        let writer_db = db.db.clone();
        let writer_peek = Peek::open(&broker).await;
        let writer = tokio::spawn(async move {
            writer_peek
                .wait_depth(&writer_peek.topology.results[0], 1)
                .await;
            let WriterCommand::ImportParticipants(batch) = writer_peek.take_command().await else {
                panic!("expected an import");
            };
            let imported_at = UtcInstant::parse("2026-01-01T00:00:00Z").unwrap();
            on_backend!(writer_db.exec(), |e| {
                sqlx::query(
                    "INSERT INTO imports (import_id, source, participants, imported_at)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(batch.import_id.to_string())
                .bind(batch.source)
                .bind(batch.participants.len() as i64)
                .bind(imported_at)
                .execute(e)
                .await
                .map(|done| done.rows_affected())
            })
            .unwrap();
            batch.import_id
        });
        let report = import_participants(
            &broker,
            &db.args,
            &key,
            &path,
            // No timeout: waits as long as it takes the writer to start and apply it.
            ImportWait::Applied { timeout: None },
            None,
        )
        .await
        .unwrap();
        assert_eq!(writer.await.unwrap(), report.import_id);
        assert!(report.applied);
        assert_eq!(
            (report.participants, report.new, report.already_known),
            (2, 1, 1)
        );
        assert!(report.compared_with_database);
    })
    .await;
}

/// Every check a webhook request must pass, in the dispatcher as it runs: the verification
/// handshake both ways, then requests that are unsigned, badly signed, oversized, malformed or
/// carry the wrong secret are refused with the right status and counted, and none of them reaches
/// the writer; the one good notification does.
#[tokio::test]
async fn webhook_requests_failing_a_check_are_refused_counted_and_create_no_work() {
    use fitlink_shared::linkage::webhook::{fitbit as fitbit_hooks, google as google_hooks};

    in_namespace(|broker| async move {
        let db = TestDb::new().await;
        // Parked, so the schedule's first round asks nothing for it.
        db.participant(Row {
            state: "dead_lettered",
            ..active("p1")
        })
        .await;
        on_backend!(db.db.exec(), |e| {
            sqlx::query("UPDATE participants SET health_user_id = 'hu-1', fitbit_user_id = 'FB1' WHERE participant_id = 'p1'")
                .execute(e)
                .await
                .map(|done| done.rows_affected())
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let signing = p256::ecdsa::SigningKey::from_slice(&rand::random::<[u8; 32]>()).unwrap();
        let forger = p256::ecdsa::SigningKey::from_slice(&rand::random::<[u8; 32]>()).unwrap();
        let keyset = dir.path().join("keyset.json");
        std::fs::write(
            &keyset,
            google_hooks::PublicKeyset::tink_json_for(&[(7, *signing.verifying_key())], 7),
        )
        .unwrap();

        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut args = dispatcher_args(broker.clone(), db.args.clone());
        args.portal.portal_addr = Some(format!("127.0.0.1:{port}").parse().unwrap());
        args.portal.token_key = fitlink_shared::config::TokenKeyArgs::one(fitlink_shared::secret::TokenKey::generate());
        args.portal.google_webhook_secret = Secret::new("Bearer s3cret".into());
        args.portal.google_webhook_keyset = keyset.display().to_string();
        args.portal.fitbit_verification_code = Secret::new("verify-me".into());
        args.portal.webhook_coalesce_ms = 50;
        args.portal.webhook_max_body_bytes = 64 * 1024;
        args.fitbit.client_secret = Secret::new("fitbit-secret".into());
        let peek = Peek::open(&broker).await;
        let shutdown = CancellationToken::new();
        let role = tokio::spawn(fitlink_dispatcher::run(args, shutdown.clone()));
        let http = fitlink_shared::provider::http_client();
        let base = format!("http://127.0.0.1:{port}");
        let google = format!("{base}/webhooks/google");
        let fitbit = format!("{base}/webhooks/fitbit");
        for _ in 0..100 {
            if http.get(&base).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let post = |url: &str, body: Vec<u8>, headers: Vec<(&'static str, String)>| {
            let mut request = http.post(url).header("content-type", "application/json").body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            async move { request.send().await.unwrap().status().as_u16() }
        };

        // The handshakes.
        let verification = br#"{"type":"verification"}"#.to_vec();
        let auth = ("authorization", "Bearer s3cret".to_owned());
        assert_eq!(post(&google, verification.clone(), vec![auth.clone()]).await, 201);
        assert_eq!(post(&google, verification.clone(), vec![]).await, 401);
        assert_eq!(
            post(&google, verification, vec![("authorization", "Bearer guess".into())]).await,
            401
        );
        let verify = |code: &str| http.get(format!("{fitbit}?verify={code}")).send();
        assert_eq!(verify("verify-me").await.unwrap().status().as_u16(), 204);
        assert_eq!(verify("wrong").await.unwrap().status().as_u16(), 404);

        let body = |user: &str| {
            format!(
                r#"{{"data":{{"version":"1","clientProvidedSubscriptionName":"s","healthUserId":"{user}","operation":"UPSERT","dataType":"steps","intervals":[{{"physicalTimeInterval":{{"startTime":"2026-11-02T10:00:00Z","endTime":"2026-11-02T10:05:00Z"}}}}]}}}}"#
            )
            .into_bytes()
        };
        let signed = |key: &p256::ecdsa::SigningKey, body: &[u8]| {
            ("x-healthapi-signature", google_hooks::sign_notification(key, 7, body))
        };
        let good = body("hu-1");
        // Unsigned, forged, wrong secret, oversized, malformed: refused.
        assert_eq!(post(&google, good.clone(), vec![]).await, 401, "unsigned");
        assert_eq!(
            post(&google, good.clone(), vec![signed(&forger, &good)]).await,
            401,
            "forged"
        );
        assert_eq!(
            post(
                &google,
                good.clone(),
                vec![signed(&signing, &good), ("authorization", "Bearer guess".into())]
            )
            .await,
            401,
            "wrong secret"
        );
        let huge = vec![b' '; 100 * 1024];
        assert_eq!(post(&google, huge.clone(), vec![signed(&signing, &huge)]).await, 413);
        let malformed = br#"{"data":{"operation":"UPSERT"}}"#.to_vec();
        assert_eq!(
            post(&google, malformed.clone(), vec![signed(&signing, &malformed)]).await,
            400
        );
        let fitbit_body =
            br#"[{"collectionType":"activities","date":"2026-11-02","ownerId":"FB1","ownerType":"user","subscriptionId":"1"}]"#
                .to_vec();
        assert_eq!(post(&fitbit, fitbit_body.clone(), vec![]).await, 404, "unsigned");
        assert_eq!(
            post(
                &fitbit,
                fitbit_body.clone(),
                vec![("x-fitbit-signature", fitbit_hooks::sign("other-secret", &fitbit_body))]
            )
            .await,
            404,
            "forged"
        );
        let not_json = b"collectionType=activities".to_vec();
        assert_eq!(
            post(
                &fitbit,
                not_json.clone(),
                vec![("x-fitbit-signature", fitbit_hooks::sign("fitbit-secret", &not_json))]
            )
            .await,
            400
        );

        // The one good notification, the second time with the other documented header name.
        assert_eq!(post(&google, good.clone(), vec![signed(&signing, &good)]).await, 204);
        let (_, signature) = signed(&signing, &good);
        assert_eq!(
            post(&google, good.clone(), vec![("google-health-api-signature", signature)]).await,
            204
        );
        peek.wait_depth(&peek.topology.results[0], 1).await;
        match peek.take_command().await {
            WriterCommand::ProviderNotified(n) => {
                assert_eq!(n.participant_id.as_str(), "p1");
                assert_eq!(n.notification_ids.len(), 1, "the same notification twice is one");
                assert_eq!(n.intervals.len(), 1);
            }
            other => panic!("expected the notification, got {}", other.kind()),
        }
        assert_eq!(peek.depth(&peek.topology.results[0]).await, Some(0));

        let metrics = fitlink_shared::telemetry::metrics_handle().render();
        for outcome in ["unsigned", "bad_signature", "unauthorized", "oversized", "malformed", "accepted"] {
            assert!(
                metrics.lines().any(|l| l.starts_with("fitlink_webhook_requests_total")
                    && l.contains(&format!("outcome=\"{outcome}\""))),
                "{outcome} is counted:\n{metrics}"
            );
        }
        shutdown.cancel();
        role.await.unwrap().unwrap();
    })
    .await;
}
