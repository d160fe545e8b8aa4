//! The writer's loop against the real broker (RabbitMQ on 127.0.0.1:5672, guest/guest, or
//! `FITLINK_AMQP_URL`). Each test uses its own namespace and deletes its queues at the end.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use fitlink_shared::broker::testing::{QueueState, wait_for_queue_state};
use fitlink_shared::broker::{self, Publisher, Topology, header_int, header_text, queue_depth};
use fitlink_shared::config::{BrokerArgs, DatabaseArgs, OpsArgs};
use fitlink_shared::domain::{ParticipantId, Provider, Slice, UtcInstant};
use fitlink_shared::messages::*;
use fitlink_shared::replies::ReplyQueue;
use fitlink_shared::secret::{SealedToken, Secret};
use fitlink_writer::WriterArgs;
use futures_util::FutureExt as _;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeleteOptions};
use sqlx::Connection as _;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

fn amqp_url() -> String {
    std::env::var("FITLINK_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn at(text: &str) -> UtcInstant {
    UtcInstant::parse(text).unwrap()
}

async fn wait_for_depth(channel: &lapin::Channel, queue: &str, depth: u32) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = queue_depth(channel, queue).await;
        if now == Some(depth) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue} has {now:?} messages, expected {depth}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One test's broker namespace and database, cleaned up by [`Fleet::finish`].
struct Fleet {
    args: WriterArgs,
    topology: Topology,
    conn: lapin::Connection,
    channel: lapin::Channel,
    _dir: tempfile::TempDir,
}

impl Fleet {
    async fn new(batch_messages: usize, linger_ms: u64) -> Fleet {
        // Logs go to stderr past the test harness's capture: only when asked for.
        if std::env::var_os("RUST_LOG").is_some() {
            fitlink_shared::telemetry::init_logging(Default::default(), "info");
        }
        let namespace = format!("t-{}", Uuid::new_v4().simple());
        let dir = tempfile::tempdir().unwrap();
        let database_url = format!("sqlite://{}", dir.path().join("fitlink.db").display());
        let args = WriterArgs {
            broker: BrokerArgs {
                amqp_url: Secret::new(amqp_url()),
                namespace: namespace.clone(),
                results_partitions: 1,
            },
            database: DatabaseArgs::url(database_url),
            ops: OpsArgs {
                ops_addr: "127.0.0.1:0".parse().unwrap(),
            },
            batch_messages,
            linger_ms,
            job_lease_secs: 10_800,
            partitions: fitlink_writer::Partitions::All,
        };
        let topology = Topology::new(&namespace);
        let conn = broker::connect(&args.broker, "writer-test")
            .await
            .expect("RabbitMQ must be running on 127.0.0.1:5672 (or set FITLINK_AMQP_URL)");
        let channel = conn.create_channel().await.unwrap();
        topology.declare(&channel).await.unwrap();
        Fleet {
            args,
            topology,
            conn,
            channel,
            _dir: dir,
        }
    }

    /// Deletes the test's queues whatever happened, then re-raises a failure.
    async fn finish(self, outcome: std::thread::Result<()>) {
        for queue in self.topology.all_queues() {
            let _ = self
                .channel
                .queue_delete(queue.into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = self.conn.close(200, "test done".into()).await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Heart-rate points in the (SQLite) database at `url`: the results that were applied.
async fn heart_rate_stored(url: &str) -> i64 {
    let db = fitlink_shared::store::Database::reader(url, "test")
        .await
        .unwrap();
    let db = match db.exec() {
        fitlink_shared::store::ByBackend::Sqlite(pool) => pool.clone(),
        _ => unreachable!("this test's database is a SQLite file"),
    };
    let stored = sqlx::query_scalar("SELECT count(*) FROM heart_rate_intraday")
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    stored
}

fn import_p1(token: &str) -> WriterCommand {
    WriterCommand::ImportParticipants(ImportBatch {
        import_id: Uuid::new_v4(),
        source: "test.csv".into(),
        participants: vec![ImportedParticipant {
            participant_id: ParticipantId::new("p1").unwrap(),
            provider: Provider::GoogleHealth,
            sealed_refresh_token: SealedToken::from_stored(token.into()),
            sync_from: at("2026-10-01T00:00:00Z"),
            identity: None,
        }],
    })
}

/// A one-minute slice with one heart-rate point at `start`.
fn minute(job_id: Uuid, participant: &str, start: UtcInstant) -> WriterCommand {
    WriterCommand::StoreSlice(SliceResult {
        job_id,
        participant_id: ParticipantId::new(participant).unwrap(),
        provider: Provider::GoogleHealth,
        slice: Slice {
            start,
            end: UtcInstant::new(start.get() + chrono::TimeDelta::minutes(1)),
        },
        daily: Default::default(),
        devices: None,
        time_zone: None,
        heart_rate: vec![IntradayPoint {
            datetime: start,
            utc_offset_seconds: 0,
            value: 61,
        }],
        steps: vec![],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_while_good_results_are_applied_and_jobs_published() {
    let fleet = Fleet::new(16, 50).await;
    let (args, topology, channel) = (&fleet.args, &fleet.topology, &fleet.channel);
    let database_url = &args.database.database_url;
    let outcome = AssertUnwindSafe(async {
        let publisher = Publisher::open(&fleet.conn).await.unwrap();
        let shutdown = CancellationToken::new();
        let writer = tokio::spawn(fitlink_writer::run(args.clone(), shutdown.clone()));

        let p1 = ParticipantId::new("p1").unwrap();
        let job_id = Uuid::new_v4();
        let start = at("2026-10-01T00:00:00Z");
        let request = WriterCommand::RequestSync(SyncRequest {
            job_id,
            participant_id: p1.clone(),
            trigger: SyncTrigger::Schedule,
            force: false,
            from: None,
            replaces: None,
            requested_at: at("2026-10-02T00:00:00Z"),
        });

        publisher
            .publish_json(&topology.results[0], &import_p1("sealed-p1"), vec![])
            .await
            .unwrap();
        publisher
            .publish(
                &topology.results[0],
                b"{\"kind\":\"no_such_command\"}",
                vec![],
            )
            .await
            .unwrap();
        publisher
            .publish_json(&topology.results[0], &request, vec![])
            .await
            .unwrap();
        // A result for a participant nobody imported: can never apply, so dead-lettered, and
        // the good slice in the same batch is still stored.
        publisher
            .publish_json(
                &topology.results[0],
                &minute(job_id, "ghost", start),
                vec![],
            )
            .await
            .unwrap();
        publisher
            .publish_json(&topology.results[0], &minute(job_id, "p1", start), vec![])
            .await
            .unwrap();

        wait_for_depth(channel, &topology.results_dead, 2).await;
        wait_for_depth(channel, &topology.jobs, 1).await;
        wait_for_depth(channel, &topology.results[0], 0).await;

        let granted = channel
            .basic_get(topology.jobs.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
            .expect("a granted job");
        let headers = granted.delivery.properties.headers().as_ref();
        assert_eq!(
            header_text(headers, PARTICIPANT_HEADER).as_deref(),
            Some("p1")
        );
        assert_eq!(header_text(headers, JOB_HEADER), Some(job_id.to_string()));
        assert_eq!(header_int(headers, ATTEMPT_HEADER), Some(1));
        let job: SyncJob = serde_json::from_slice(&granted.delivery.data).unwrap();
        assert_eq!(job.job_id, job_id);
        assert_eq!(job.participant_id, p1);
        assert_eq!(job.from, at("2026-10-01T00:00:00Z"));
        assert_eq!(job.sealed_refresh_token.as_str(), "sealed-p1");
        granted
            .delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();

        stop(&shutdown, writer).await;

        let db = fitlink_shared::store::Database::reader(database_url, "test")
            .await
            .unwrap();
        let db = match db.exec() {
            fitlink_shared::store::ByBackend::Sqlite(pool) => pool.clone(),
            _ => unreachable!("this test's database is a SQLite file"),
        };
        let (cursor, in_flight): (String, Option<String>) = sqlx::query_as(
            "SELECT sync_cursor, in_flight_job_id FROM participants WHERE participant_id = 'p1'",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        assert_eq!(cursor, "2026-10-01T00:01:00Z");
        assert_eq!(in_flight, Some(job_id.to_string()));
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM heart_rate_intraday")
            .fetch_one(&db)
            .await
            .unwrap();
        assert_eq!(rows, 1);
        db.close().await;
    })
    .catch_unwind()
    .await;

    fleet.finish(outcome).await;
}

/// SIGTERM with messages prefetched: the writer stops consuming, applies and acks what it holds,
/// and leaves the rest in the queue: every result is either stored or still queued, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_and_acks_what_the_writer_holds() {
    const RESULTS: u32 = 300;
    let fleet = Fleet::new(8, 20).await;
    let (args, topology, channel) = (&fleet.args, &fleet.topology, &fleet.channel);
    let outcome = AssertUnwindSafe(async {
        let publisher = Publisher::open(&fleet.conn).await.unwrap();
        publisher
            .publish_json(&topology.results[0], &import_p1("sealed-p1"), vec![])
            .await
            .unwrap();
        let job_id = Uuid::new_v4();
        let start = at("2026-10-01T00:00:00Z").get();
        let publishes = (0..RESULTS).map(|i| {
            let slice = minute(
                job_id,
                "p1",
                UtcInstant::new(start + chrono::TimeDelta::minutes(i64::from(i))),
            );
            let publisher = publisher.clone();
            let queue = topology.results[0].clone();
            async move { publisher.publish_json(&queue, &slice, vec![]).await }
        });
        for published in futures_util::future::join_all(publishes).await {
            published.unwrap();
        }

        let shutdown = CancellationToken::new();
        let writer = tokio::spawn(fitlink_writer::run(args.clone(), shutdown.clone()));
        // Stop once the writer holds the import and some slices.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while queue_depth(channel, &topology.results[0])
            .await
            .is_none_or(|depth| depth > RESULTS - 1)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the writer never started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop(&shutdown, writer).await;

        let left = queue_depth(channel, &topology.results[0]).await.unwrap();
        let stored = heart_rate_stored(&args.database.database_url).await;
        eprintln!("at shutdown: {stored} results stored, {left} left in the queue");
        assert!(stored > 0, "nothing was applied before the shutdown");
        // Applied-and-acked plus still-queued is everything, once: nothing applied was handed
        // back, nothing handed back was lost.
        assert_eq!(
            stored as u32 + left,
            RESULTS,
            "stored {stored}, left {left}"
        );
        wait_for_depth(channel, &topology.results_dead, 0).await;
    })
    .catch_unwind()
    .await;
    fleet.finish(outcome).await;
}

/// The bound on the results a writer holds: twice its batch. A writer that cannot commit (the
/// database is locked by someone else) holds one batch in its transaction and one more
/// prefetched, and the broker keeps everything after; once the database frees up, everything is
/// applied and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_cannot_commit_holds_twice_its_batch_and_the_broker_keeps_the_rest() {
    const BATCH: u64 = 4;
    const SLICES: u64 = 2 * BATCH + 3;
    let fleet = Fleet::new(BATCH as usize, 20).await;
    let (args, topology, channel) = (&fleet.args, &fleet.topology, &fleet.channel);
    let results = &topology.results[0];
    let outcome = AssertUnwindSafe(async {
        let shutdown = CancellationToken::new();
        let writer = tokio::spawn(fitlink_writer::run(args.clone(), shutdown.clone()));
        let holding = |ready, unacknowledged| QueueState {
            ready,
            unacknowledged,
            prefetch: vec![2 * BATCH],
        };
        // Consuming (it has created the database), with nothing to hold yet.
        wait_for_queue_state(results, &holding(0, 0)).await;

        let mut lock = sqlx::SqliteConnection::connect(&args.database.database_url)
            .await
            .unwrap();
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut lock)
            .await
            .unwrap();
        let publisher = Publisher::open(&fleet.conn).await.unwrap();
        publisher
            .publish_json(results, &import_p1("sealed-p1"), vec![])
            .await
            .unwrap();
        let (job_id, start) = (Uuid::new_v4(), at("2026-10-01T00:00:00Z").get());
        for i in 0..SLICES {
            let start = UtcInstant::new(start + chrono::TimeDelta::minutes(i as i64));
            publisher
                .publish_json(results, &minute(job_id, "p1", start), vec![])
                .await
                .unwrap();
        }
        let queued = SLICES + 1;
        wait_for_queue_state(results, &holding(queued - 2 * BATCH, 2 * BATCH)).await;

        sqlx::query("COMMIT").execute(&mut lock).await.unwrap();
        lock.close().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while heart_rate_stored(&args.database.database_url).await < SLICES as i64 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the results were not applied after the database was free"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_for_queue_state(results, &holding(0, 0)).await;
        wait_for_depth(channel, &topology.results_dead, 0).await;

        stop(&shutdown, writer).await;
        assert_eq!(
            heart_rate_stored(&args.database.database_url).await,
            SLICES as i64
        );
    })
    .catch_unwind()
    .await;
    fleet.finish(outcome).await;
}

/// A consent and a withdrawal are answered on the waiter's own reply queue after the commit; a
/// reply whose waiter is gone (its queue no longer exists) does not stop the writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consents_and_withdrawals_are_answered_after_the_commit() {
    let fleet = Fleet::new(16, 20).await;
    let (args, topology, channel) = (&fleet.args, &fleet.topology, &fleet.channel);
    let outcome = AssertUnwindSafe(async {
        let publisher = Publisher::open(&fleet.conn).await.unwrap();
        // The waiter's side, as the portal and `fitlink participants withdraw` wait.
        let replies = ReplyQueue::<WriterReply>::start(&fleet.conn).await.unwrap();
        let reply_queue = replies.queue().to_owned();
        let shutdown = CancellationToken::new();
        let writer = tokio::spawn(fitlink_writer::run(args.clone(), shutdown.clone()));

        let p9 = ParticipantId::new("p9").unwrap();
        let invitation = Invitation {
            invitation_id: Uuid::new_v4(),
            participant_id: p9.clone(),
            provider: Provider::GoogleHealth,
            sync_from: at("2026-09-01T00:00:00Z"),
            issued_at: at("2026-10-05T00:00:00Z"),
            expires_at: at("2026-10-12T00:00:00Z"),
        };
        let consent = ConsentGrant {
            request_id: Uuid::new_v4(),
            invitation: invitation.clone(),
            participant_id: p9.clone(),
            provider: Provider::GoogleHealth,
            sealed_refresh_token: SealedToken::from_stored("sealed-p9".into()),
            refresh_token_expires_at: None,
            granted_scopes: vec!["activity".into()],
            identity: None,
            fitbit_user_id: None,
            consented_at: at("2026-10-06T00:00:00Z"),
            reply_to: Some(reply_queue.clone()),
        };
        // A waiter that gave up: its queue is gone. Then the consent that is waited for.
        let gone = Withdrawal {
            request_id: Uuid::new_v4(),
            participant_id: ParticipantId::new("nobody").unwrap(),
            purge: false,
            requested_by: "test".into(),
            provider_revocation: "no_credential".into(),
            at: at("2026-10-06T00:00:00Z"),
            reply_to: Some(format!("{}.gone", topology.results[0])),
        };
        let linked = replies.expect(consent.request_id);
        for command in [
            WriterCommand::Withdraw(gone),
            WriterCommand::LinkParticipant(consent.clone()),
        ] {
            publisher
                .publish_json(&topology.results[0], &command, vec![])
                .await
                .unwrap();
        }
        let reply = answered(linked).await;
        assert_eq!(reply.request_id, consent.request_id);
        assert_eq!(
            reply.reply,
            ReplyBody::Linked {
                participant_id: p9.clone(),
                cursor: at("2026-09-01T00:00:00Z"),
                new_participant: true,
            }
        );
        wait_for_depth(channel, &topology.jobs, 1).await;

        let withdrawal = Withdrawal {
            request_id: Uuid::new_v4(),
            participant_id: p9.clone(),
            purge: true,
            requested_by: "test".into(),
            provider_revocation: "revoked".into(),
            at: at("2026-10-07T00:00:00Z"),
            reply_to: Some(reply_queue.clone()),
        };
        let withdrawn = replies.expect(withdrawal.request_id);
        publisher
            .publish_json(
                &topology.results[0],
                &WriterCommand::Withdraw(withdrawal.clone()),
                vec![],
            )
            .await
            .unwrap();
        let reply = answered(withdrawn).await;
        assert_eq!(reply.request_id, withdrawal.request_id);
        assert!(
            matches!(reply.reply, ReplyBody::Withdrawn { purged: true, .. }),
            "{:?}",
            reply.reply
        );
        wait_for_depth(channel, &topology.results[0], 0).await;
        wait_for_depth(channel, &topology.results_dead, 0).await;

        stop(&shutdown, writer).await;
    })
    .catch_unwind()
    .await;
    fleet.finish(outcome).await;
}

/// Stops a writer as SIGTERM does; it must stop within 30 s, cleanly.
async fn stop(shutdown: &CancellationToken, writer: tokio::task::JoinHandle<anyhow::Result<()>>) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the writer stops on shutdown")
        .unwrap()
        .expect("the writer stops cleanly");
}

/// The writer's answer to one request (an event awaited, with a deadline).
async fn answered(reply: fitlink_shared::replies::Pending<WriterReply>) -> WriterReply {
    reply
        .answer_within(Duration::from_secs(30))
        .await
        .expect("a reply within 30 s")
}
