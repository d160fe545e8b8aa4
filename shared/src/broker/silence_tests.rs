//! The bounds on waiting for the broker, each fed a broker that falls silent mid-conversation
//! ([`SilentBroker`]): a publish ends at its confirm timeout, every other call at the missing
//! heartbeat. Neither may hang the role that made it. Against the real RabbitMQ (127.0.0.1:5672,
//! or `FITLINK_AMQP_URL`); each test declares only queues of its own namespace and deletes them.

use std::time::Duration;

use futures_util::FutureExt as _;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ErrorKind};

use super::silent_broker::SilentBroker;
use super::*;
use crate::config::BrokerTlsArgs;

/// Longest any of these tests may take: past it the bound under test is not working, and the
/// test fails instead of hanging.
const GUARD: Duration = Duration::from_secs(60);

async fn connect_to(url: String, namespace: &str) -> Connection {
    let args = BrokerArgs::new(url, namespace);
    connect_with(&args, &BrokerTlsArgs::default(), "silence-test")
        .await
        .expect("RabbitMQ must be running on 127.0.0.1:5672 (or set FITLINK_AMQP_URL)")
}

/// A connection straight to the broker, past the proxy: what the test uses to set up and clean
/// up while the proxied connection is frozen.
async fn direct(namespace: &str) -> Connection {
    let url = std::env::var("FITLINK_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    connect_to(url, namespace).await
}

/// Runs `test` within [`GUARD`] with a queue of its own namespace, which is deleted afterwards
/// whatever happened.
async fn with_queue(test: impl AsyncFnOnce(&str)) {
    let namespace = format!("t-silent-{}", uuid::Uuid::new_v4().simple());
    let queue = format!("{namespace}.jobs");
    let conn = direct(&namespace).await;
    let channel = conn.create_channel().await.unwrap();
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::durable(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let outcome = std::panic::AssertUnwindSafe(tokio::time::timeout(GUARD, test(&queue)))
        .catch_unwind()
        .await;
    let _ = channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = conn.close(200, "test done".into()).await;
    match outcome {
        Ok(finished) => finished.expect("the bound did not end the wait within the guard"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_to_a_broker_that_falls_silent_fails_at_its_confirm_timeout() {
    with_queue(async |queue| {
        let silent = SilentBroker::start().await;
        let conn = connect_to(silent.url(None), "t-silent").await;
        let confirm_timeout = Duration::from_secs(1);
        let publisher = Publisher::open(&conn)
            .await
            .unwrap()
            .with_confirm_timeout(confirm_timeout);
        // Published and confirmed while the broker still answers: the queue and the publisher
        // work, so what fails below is the silence.
        publisher.publish(queue, b"{}", vec![]).await.unwrap();

        silent.freeze();
        let refused = publisher.publish(queue, b"{}", vec![]).await;
        assert!(
            matches!(refused, Err(PublishError::Timeout(d)) if d == confirm_timeout),
            "{refused:?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_calls_to_a_broker_that_falls_silent_fail_at_the_missing_heartbeat() {
    with_queue(async |queue| {
        let silent = SilentBroker::start().await;
        let conn = connect_to(silent.url(Some("heartbeat=1")), "t-silent").await;
        assert_eq!(
            conn.configuration().heartbeat(),
            1,
            "the URL's heartbeat was not negotiated"
        );
        let channel = conn.create_channel().await.unwrap();

        silent.freeze();
        let declare = channel.queue_declare(
            queue.into(),
            QueueDeclareOptions::durable().passive(),
            FieldTable::default(),
        );
        let (declared, opened) = tokio::join!(declare, conn.create_channel());
        for failed in [declared.map(drop), opened.map(drop)] {
            let e = failed.expect_err("a call to a silent broker succeeded");
            assert!(
                matches!(e.kind(), ErrorKind::MissingHeartbeatError),
                "{e:?}"
            );
        }
        assert!(!conn.status().connected());
    })
    .await;
}

/// The heartbeat bound holds only if a connection has a heartbeat: the broker's (RabbitMQ's
/// default is 60 s), since the roles' URLs do not set one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_to_the_broker_has_a_heartbeat_by_default() {
    let conn = direct("t-silent").await;
    let heartbeat = conn.configuration().heartbeat();
    let _ = conn.close(200, "test done".into()).await;
    assert!(
        heartbeat > 0,
        "no heartbeat: a silent broker would hang every call"
    );
}
