//! The fleet as gauges: the dispatcher's `/metrics` says how many participants are in each
//! state, how far behind their cursors are, and each queue's depth and consumers, with the help
//! text of every metric (`shared/src/telemetry/catalog.rs`).

use std::time::{Duration, Instant};

use crate::harness::{Options, TestFleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dispatcher_exports_the_cohort_and_the_queues() {
    let mut t = TestFleet::start(Options {
        participants: 3,
        days: 2,
        start_sync: false,
        env: vec![("FITLINK_SYNC_INTERVAL_SECS", "1".into())],
        ..Options::default()
    })
    .await;
    t.import_roster().await;
    t.start_workers(1);
    let port = fitlink::fleet::free_port().unwrap();
    let ops = format!("127.0.0.1:{port}");
    t.fleet
        .spawn_with_env("dispatcher", &["dispatcher"], &[("FITLINK_OPS_ADDR", &ops)])
        .unwrap();
    let ids = t.participant_ids();
    t.wait_synced(&ids, 90).await;

    // A schedule tick after the sync reads the synced cohort.
    let results = t.topology.results_default().to_owned();
    let wanted = [
        "fitlink_participants{state=\"active\"} 3".to_owned(),
        format!("fitlink_queue_consumers{{queue=\"{results}\"}} 1"),
        format!(
            "fitlink_queue_messages{{queue=\"{}\"}} 0",
            t.topology.jobs_dead
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        let page = t
            .http
            .get(format!("http://{ops}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if wanted.iter().all(|w| page.contains(w.as_str())) {
            break page;
        }
        assert!(
            Instant::now() < deadline,
            "never exported {wanted:?}:\n{page}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Synced to the tracker's latest sync (whole minutes): under a minute behind.
    let lag: f64 = page
        .lines()
        .find_map(|l| l.strip_prefix("fitlink_sync_lag_seconds{quantile=\"1\"} "))
        .expect("the lag's maximum is exported")
        .parse()
        .unwrap();
    assert!((0.0..60.0).contains(&lag), "lag {lag}");
    assert!(
        page.contains("fitlink_participants{state=\"revoked\"} 0"),
        "{page}"
    );
    assert!(page.contains("# HELP fitlink_participants "), "{page}");
    t.finish().await;
}
