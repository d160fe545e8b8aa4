//! Crashes: SIGKILL a worker mid-job and the active writer mid-batch; the standby writer takes
//! over and nothing is lost or stored twice.

use fitlink_shared::fetch;
use fitlink_shared::store::Backend;

use crate::harness::{Options, TestFleet};

async fn intraday_rows(db: &fitlink_shared::store::Database) -> i64 {
    let (n,): (i64,) = fetch!(db.exec(), sqlx::query_as(
        "SELECT (SELECT count(*) FROM heart_rate_intraday) + (SELECT count(*) FROM steps_intraday)",
    ), one)
    .unwrap();
    n
}

async fn killing_a_worker_mid_job_and_the_writer_mid_batch_loses_and_duplicates_nothing(
    backend: Backend,
) {
    // Slow provider and 1-second heart rate for some: jobs are long, slices are big.
    let mut t = TestFleet::start(Options {
        participants: 6,
        days: 3,
        workers: 2,
        standby_writer: true,
        sim_args: vec![
            "--latency-ms".into(),
            "40".into(),
            "--fine-hr-every".into(),
            "3".into(),
        ],
        env: vec![("FITLINK_SLICE_HOURS", "3".into())],
        backend,
        ..Options::default()
    })
    .await;
    t.wait_until("the first rows to be stored", 60, |db| async move {
        intraday_rows(&db).await > 0
    })
    .await;
    t.fleet.get("worker-0").kill().await.unwrap();
    t.fleet.forget("worker-0");
    t.fleet.spawn("worker-2", &["worker"]).unwrap();

    let stored = intraday_rows(&t.db).await;
    t.wait_until(
        "more rows after the worker crash",
        60,
        move |db| async move { intraday_rows(&db).await > stored },
    )
    .await;
    // The active writer (the first one started) dies mid-stream; the standby takes over.
    t.fleet.get("writer").kill().await.unwrap();
    t.fleet.forget("writer");

    t.wait_all_synced_as_truth(240).await;
    t.finish().await;
}

fitlink_shared::on_both_backends!(
    multi_thread: killing_a_worker_mid_job_and_the_writer_mid_batch_loses_and_duplicates_nothing
);
