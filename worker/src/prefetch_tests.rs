//! The bound on the jobs a worker holds: `FITLINK_WORKER_CONCURRENCY`, its consumer channel's
//! prefetch. A worker whose provider never answers holds its jobs until their requests time
//! out; the jobs past its concurrency must stay on the broker meanwhile, ready for another
//! worker, instead of waiting in this one's memory. A whole worker ([`crate::run`]) against the
//! real broker (RabbitMQ on 127.0.0.1:5672, or `FITLINK_AMQP_URL`), in a namespace of its own
//! whose queues are deleted at the end.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use chrono::Utc;
use fitlink_shared::broker::testing::{QueueState, wait_for_queue_state};
use fitlink_shared::domain::ParticipantId;
use fitlink_shared::secret::{Secret, TokenKey};
use futures_util::FutureExt as _;
use lapin::options::QueueDeleteOptions;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::*;

/// Longest the worker may take to start and take its jobs.
const GUARD: Duration = Duration::from_secs(30);

fn amqp_url() -> String {
    std::env::var("FITLINK_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A provider (token endpoint and API alike) that accepts every connection and never answers:
/// its base URL, and each connection as it arrives, kept open by whoever receives it.
async fn provider_that_never_answers() -> (String, mpsc::UnboundedReceiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (arrived, requests) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            if arrived.send(connection).is_err() {
                return;
            }
        }
    });
    (base, requests)
}

fn worker_args(broker: BrokerArgs, provider: &str, key: Secret<String>) -> WorkerArgs {
    WorkerArgs {
        broker,
        google: GoogleArgs::on_one_host(provider, "client", "secret"),
        fitbit: FitbitArgs::on_one_host(provider, "23ABCD", "secret"),
        token_key: TokenKeyArgs::one(key),
        ops: OpsArgs {
            ops_addr: "127.0.0.1:0".parse().unwrap(),
        },
        concurrency: 2,
        slice_hours: 12,
        summary_lookback_days: 2,
        max_job_days: 7,
        max_attempts: 6,
        // Jobs still waiting on the provider at the end are handed back at once.
        shutdown_grace_secs: 0,
    }
}

/// A sync job of its own participant, its token sealed with `key` (so the worker runs it).
fn sync_job(n: u64, key: &TokenKeys) -> SyncJob {
    let participant = ParticipantId::new(format!("p{n}")).unwrap();
    SyncJob {
        job_id: Uuid::now_v7(),
        sealed_refresh_token: key.seal(&participant, &Secret::new(format!("refresh-{n}"))),
        participant_id: participant,
        provider: Provider::Fitbit,
        from: UtcInstant::new(Utc::now() - TimeDelta::days(1)),
        sync_from: None,
        touch_only: false,
        identity_unknown: false,
        time_zone: None,
        granted_at: now_instant(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_holds_no_more_jobs_than_its_concurrency_while_the_provider_hangs() {
    const JOBS: u64 = 6;
    let broker_args = BrokerArgs::new(
        amqp_url(),
        format!("t-prefetch-{}", Uuid::new_v4().simple()),
    );
    let topology = broker_args.topology();
    let conn = broker::connect(&broker_args, "worker-prefetch-test")
        .await
        .expect("RabbitMQ must be running on 127.0.0.1:5672 (or set FITLINK_AMQP_URL)");
    let channel = conn.create_channel().await.unwrap();
    topology.declare(&channel).await.unwrap();

    let outcome = AssertUnwindSafe(async {
        let key = TokenKey::generate();
        let keys = TokenKeys::parse(&key).unwrap();
        let publisher = Publisher::open(&conn).await.unwrap();
        for n in 0..JOBS {
            let job = sync_job(n, &keys);
            publisher
                .publish_json(&topology.jobs, &job, job_headers(&job, 1, None))
                .await
                .unwrap();
        }
        let (provider, mut requests) = provider_that_never_answers().await;
        let args = worker_args(broker_args.clone(), &provider, key);
        let concurrency = u64::from(args.concurrency);
        let shutdown = CancellationToken::new();
        let worker = tokio::spawn(run(args, shutdown.clone()));

        // The worker has started as many jobs as it may: each is waiting on the provider.
        let mut waiting = Vec::new();
        for _ in 0..concurrency {
            let request = tokio::time::timeout(GUARD, requests.recv())
                .await
                .expect("the worker never asked the provider");
            waiting.push(request.expect("the provider is listening"));
        }
        // It holds those and no more; the broker keeps the rest.
        wait_for_queue_state(
            &topology.jobs,
            &QueueState {
                ready: JOBS - concurrency,
                unacknowledged: concurrency,
                prefetch: vec![concurrency],
            },
        )
        .await;

        shutdown.cancel();
        tokio::time::timeout(GUARD, worker)
            .await
            .expect("the worker stops on shutdown")
            .unwrap()
            .expect("the worker stops cleanly");
        // Handed back, nothing lost.
        wait_for_queue_state(
            &topology.jobs,
            &QueueState {
                ready: JOBS,
                ..QueueState::default()
            },
        )
        .await;
    })
    .catch_unwind()
    .await;

    for queue in topology.all_queues() {
        let _ = channel
            .queue_delete(queue.into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = conn.close(200, "test done".into()).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
