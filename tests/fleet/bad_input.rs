//! Bad input gets a clear error and changes nothing else: a malformed CSV, an unknown
//! participant, provider JSON of the wrong shape, a poison message on the results queue.

use std::collections::BTreeMap;
use std::time::Duration;

use fitlink_shared::fetch;

use crate::harness::{Options, TestFleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_changes_nothing_else() {
    let mut t = TestFleet::start(Options {
        participants: 3,
        days: 2,
        start_sync: false,
        ..Options::default()
    })
    .await;

    // 1. A CSV with bad rows: every bad line is named, nothing is imported.
    let bad_csv = t.dir.path().join("bad.csv");
    std::fs::write(
        &bad_csv,
        "participant_id,provider,refresh_token,sync_from\n\
         ok-1,google-health,tok-aaa,2026-10-01\n\
         bad id,google-health,tok-bbb,2026-10-01\n\
         ok-2,myspace,tok-ccc,2026-10-01\n\
         ok-3,google-health,tok-ddd,yesterday\n",
    )
    .unwrap();
    let out = t.cli(&["participants", "import", bad_csv.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for line in ["line 3", "line 4", "line 5"] {
        assert!(stderr.contains(line), "names {line}: {stderr}");
    }
    assert!(!stderr.contains("tok-"), "never echoes a token: {stderr}");
    let (n,): (i64,) = fetch!(
        t.db.exec(),
        sqlx::query_as("SELECT count(*) FROM participants"),
        one
    )
    .unwrap();
    assert_eq!(n, 0, "a file with a bad row imports nothing");

    // 2. An unknown participant on enqueue: named, nothing published. (The writer is stopped so
    //    that anything published would stay visible on the results queue.)
    t.import_roster().await;
    assert!(
        t.fleet
            .get("writer")
            .terminate(Duration::from_secs(30))
            .await
            .unwrap()
    );
    t.fleet.forget("writer");
    let before = t.queue_depth(&t.topology.results[0]).await;
    let out = t.cli(&["enqueue", "sim-0001", "nobody-42"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("nobody-42"), "{stderr}");
    assert_eq!(
        t.queue_depth(&t.topology.results[0]).await,
        before,
        "nothing published"
    );
    t.fleet.spawn("writer", &["writer"]).unwrap();

    // 3. Provider JSON of the wrong shape for sim-0002: the job fails with the reason, the
    //    participant's cursor stays where it was.
    t.sim_control(
        "/_sim/faults",
        serde_json::json!({ "participants": { "sim-0002": { "malformed_json": true } } }),
    )
    .await;
    // 4. A poison message on the results queue: dead-lettered, the writer keeps going.
    let conn = fitlink_shared::broker::connect(&t.fleet.env.broker(), "test")
        .await
        .unwrap();
    let publisher = fitlink_shared::broker::Publisher::open(&conn)
        .await
        .unwrap();
    publisher
        .publish(
            &t.topology.results[0],
            b"{\"kind\":\"store_slice\",\"garbage\":",
            vec![],
        )
        .await
        .unwrap();

    t.start_workers(2);
    t.fleet.spawn("dispatcher", &["dispatcher"]).unwrap();
    t.wait_synced(&["sim-0001".into(), "sim-0003".into()], 90)
        .await;
    t.wait_until(
        "sim-0002 to be marked provider_data_invalid",
        60,
        |db| async move {
            let (state,): (String,) = fetch!(
                db.exec(),
                sqlx::query_as("SELECT state FROM participants WHERE participant_id = 'sim-0002'"),
                one
            )
            .unwrap();
            state == "provider_data_invalid"
        },
    )
    .await;
    let p = t.participant("sim-0002").await;
    assert_eq!(p.sync_cursor, p.sync_from, "the cursor stays");
    assert!(
        p.state_reason
            .as_deref()
            .unwrap_or("")
            .contains("documented JSON shape"),
        "{p:?}"
    );
    assert_eq!(
        t.queue_depth(&t.topology.results_dead).await,
        1,
        "the poison message"
    );
    for id in ["sim-0001", "sim-0003"] {
        t.assert_matches_truth(id, &BTreeMap::new()).await;
    }
    let _ = conn.close(200, "done".into()).await;
    t.finish().await;
}
