//! Several active writers: results partitioned by participant, each partition active on one
//! writer, on PostgreSQL; SQLite refuses a writer that would share the database.

use std::collections::BTreeMap;

use fitlink_shared::fetch;
use fitlink_shared::store::Backend;

use crate::harness::{BIN, Options, TestFleet};

/// How many batches a writer's log says it applied (it was active on some partition).
fn applied_batches(log: &std::path::Path) -> usize {
    let log = std::fs::read_to_string(log).unwrap_or_default();
    log.lines().filter(|l| l.contains("batch applied")).count()
}

/// Waits until the fleet has stored its first heart-rate rows (work is under way).
async fn wait_first_rows(t: &mut TestFleet) {
    t.wait_until("the first rows to be stored", 60, |db| async move {
        fetch!(
            db.exec(),
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM heart_rate_intraday"),
            one
        )
        .unwrap()
            > 0
    })
    .await;
}

async fn intraday_rows(t: &TestFleet) -> i64 {
    fetch!(
        t.db.exec(),
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM heart_rate_intraday"),
        one
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_active_writers_on_postgres_share_the_participants_and_a_standby_takes_over() {
    // Four partitions: the first writer takes 0 and 1, the second 2 and 3, both active at once;
    // a third on every partition stands by.
    let mut t = TestFleet::start(Options {
        participants: 8,
        days: 3,
        backend: Backend::Postgres,
        results_partitions: 4,
        writer_partitions: "0,1",
        more_writers: vec![("writer-b", "2,3"), ("writer-standby", "all")],
        sim_args: vec![
            "--latency-ms".into(),
            "20".into(),
            "--fine-hr-every".into(),
            "4".into(),
        ],
        env: vec![("FITLINK_SLICE_HOURS", "6".into())],
        ..Options::default()
    })
    .await;
    let ids = t.participant_ids();
    // The roster spreads over every partition (what makes both writers active).
    let partitions: std::collections::BTreeSet<usize> = ids
        .iter()
        .map(|id| fitlink_shared::broker::partition_of(id, 4))
        .collect();
    assert!(
        partitions.contains(&0) || partitions.contains(&1),
        "{partitions:?}"
    );
    assert!(
        partitions.contains(&2) || partitions.contains(&3),
        "{partitions:?}"
    );

    wait_first_rows(&mut t).await;
    // The first writer dies mid-stream; the standby takes its partitions over.
    let before = intraday_rows(&t).await;
    let logs: Vec<std::path::PathBuf> = ["writer", "writer-b", "writer-standby"]
        .map(|name| t.fleet.get(name).log.clone())
        .into();
    t.fleet.get("writer").kill().await.unwrap();
    t.fleet.forget("writer");
    t.wait_synced(&ids, 240).await;
    assert!(intraday_rows(&t).await > before);
    for id in &ids {
        t.assert_matches_truth(id, &BTreeMap::new()).await;
    }
    // Each partition had one active writer at a time, and two were active at once.
    assert!(applied_batches(&logs[0]) > 0, "the first writer was active");
    assert!(
        applied_batches(&logs[1]) > 0,
        "the second writer was active"
    );
    assert!(
        applied_batches(&logs[2]) > 0,
        "the standby took over the first writer's partitions"
    );
    t.finish().await;
}

/// On SQLite one writer process consumes every partition: a writer given only some of them is
/// refused at once, with an error that says what to do.
#[tokio::test]
async fn sqlite_refuses_a_writer_on_some_partitions_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(BIN)
        .args(["writer", "--partitions", "0,1"])
        .env(
            "FITLINK_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("fitlink.db").display()),
        )
        .env("FITLINK_RESULTS_PARTITIONS", "4")
        .env("FITLINK_OPS_ADDR", "127.0.0.1:0")
        .env("FITLINK_NAMESPACE", "t-sqlite-refusal")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("on SQLite one writer process consumes every results partition"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("fitlink.db").exists(),
        "a refused writer creates nothing"
    );
    let out = std::process::Command::new(BIN)
        .args(["writer", "--partitions", "0,9"])
        .env("FITLINK_RESULTS_PARTITIONS", "4")
        .env("FITLINK_OPS_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("partition 9"), "{stderr}");
}

async fn completed_jobs(t: &TestFleet) -> i64 {
    fetch!(
        t.db.exec(),
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sync_jobs WHERE outcome = 'completed'"),
        one
    )
    .unwrap()
}

/// The README's re-partitioning procedure: stop what produces results, let the writer drain
/// them, stop it, restart every role with the new partition count. Nothing is lost, and the
/// fleet syncs on the new partitions with two active writers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_partition_count_drains_redeclares_and_loses_nothing() {
    let mut t = TestFleet::start(Options {
        participants: 6,
        days: 3,
        backend: Backend::Postgres,
        sim_args: vec![
            "--latency-ms".into(),
            "20".into(),
            "--fine-hr-every".into(),
            "3".into(),
        ],
        env: vec![("FITLINK_SLICE_HOURS", "6".into())],
        ..Options::default()
    })
    .await;
    let ids = t.participant_ids();
    wait_first_rows(&mut t).await;

    // 1. Stop what publishes results: the dispatcher and the workers (SIGTERM: a job in hand
    //    goes back to the jobs queue, which is not partitioned).
    for name in ["dispatcher", "worker-0", "worker-1"] {
        assert!(
            t.fleet
                .get(name)
                .terminate(std::time::Duration::from_secs(30))
                .await
                .unwrap(),
            "{name} stops cleanly"
        );
        t.fleet.forget(name);
    }
    // 2. The writer drains the results queue; 3. it stops.
    let old_results = t.topology.results[0].clone();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while t.queue_depth(&old_results).await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "results drained");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        t.fleet
            .get("writer")
            .terminate(std::time::Duration::from_secs(30))
            .await
            .unwrap()
    );
    t.fleet.forget("writer");

    // 4. Every role with four partitions: two writers, the workers, the dispatcher.
    for (k, v) in &mut t.fleet.env.extra {
        if k == "FITLINK_RESULTS_PARTITIONS" {
            *v = "4".to_owned();
        }
    }
    t.fleet
        .spawn("writer-a", &["writer", "--partitions", "0,1"])
        .unwrap();
    t.fleet
        .spawn("writer-b", &["writer", "--partitions", "2,3"])
        .unwrap();
    t.start_workers(2);
    t.fleet.spawn("dispatcher", &["dispatcher"]).unwrap();

    // New data after the change, and everyone asked to sync it.
    let before = completed_jobs(&t).await;
    t.sim_control("/_sim/advance", serde_json::json!({ "minutes": 120 }))
        .await;
    t.advance_truth(120);
    t.enqueue(&ids);
    let want = before + ids.len() as i64;
    t.wait_until(
        "everyone to sync on the new partitions",
        240,
        move |db| async move {
            let (done, in_flight): (i64, i64) = fetch!(
                db.exec(),
                sqlx::query_as(
                    "SELECT (SELECT count(*) FROM sync_jobs WHERE outcome = 'completed'), \
                        (SELECT count(*) FROM participants WHERE in_flight_job_id IS NOT NULL)",
                ),
                one
            )
            .unwrap();
            done >= want && in_flight == 0
        },
    )
    .await;
    for id in &ids {
        t.assert_matches_truth(id, &BTreeMap::new()).await;
    }
    assert_eq!(t.queue_depth(&old_results).await, 0, "nothing left behind");
    t.finish().await;
}
