//! `fitlink participants import` while no writer runs: it says at once that it waits for a
//! writer, `--timeout` ends the wait with exit code 3 (queued, nothing failed), `--no-wait`
//! exits 0 with the import id, and a plain import exits 0 once a writer starts and applies it.
//! `status` says what waits for a writer. Every queued import is applied in the end: nothing is
//! lost.

use std::process::Stdio;
use std::time::Duration;

use fitlink_shared::fetch;

use fitlink_shared::faults::{FAULT_POINT_ENV, FaultPoint};

use crate::harness::{BIN, Options, TestFleet};

#[tokio::test]
async fn an_import_waits_for_a_writer_says_so_and_exits_0_once_applied() {
    let mut t = TestFleet::start(Options {
        participants: 4,
        days: 1,
        start_sync: false,
        ..Options::default()
    })
    .await;
    // The writer made the database; now none runs.
    assert!(
        t.fleet
            .get("writer")
            .terminate(Duration::from_secs(30))
            .await
            .unwrap()
    );
    t.fleet.forget("writer");
    let results = t.topology.results[0].clone();

    let first = t.write_roster_subset("google-health", &["sim-0001"]);
    let out = t.cli(&[
        "participants",
        "import",
        "--timeout",
        "1",
        first.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("no writer is running"),
        "said at once: {stderr}"
    );
    assert!(
        stderr.contains("is queued, but no writer applied it"),
        "{stderr}"
    );

    let second = t.write_roster_subset("google-health", &["sim-0002"]);
    let out = t.cli(&[
        "participants",
        "import",
        "--no-wait",
        second.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("queued for the writer") && stdout.contains("import "),
        "{stdout}"
    );
    assert_eq!(
        t.queue_depth(&results).await,
        2,
        "both imports wait on the queue"
    );

    // An import whose process dies after the broker confirmed its publish and before it knew
    // (the `publish-before-confirm` fault point) is queued all the same: the point sits after
    // the confirm, where a crash leaves an indeterminate publish.
    let fourth = t.write_roster_subset("google-health", &["sim-0004"]);
    let out = std::process::Command::new(BIN)
        .args(["participants", "import", "--no-wait"])
        .arg(&fourth)
        .envs(t.fleet.env.vars())
        .env(FAULT_POINT_ENV, FaultPoint::PublishBeforeConfirm.name())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the process aborted: {stderr}");
    assert!(
        stderr.contains("fault point: aborting the process now"),
        "{stderr}"
    );
    assert_eq!(
        t.queue_depth(&results).await,
        3,
        "the broker has the import its publisher never saw confirmed"
    );
    let status = t.status_json();
    let warnings = status["warnings"].to_string();
    assert!(
        warnings.contains(&format!(
            "3 message(s) wait on {results} and no writer consumes it"
        )),
        "status shows what waits for a writer: {warnings}"
    );

    // Without a timeout the import waits; a writer that starts applies it, and it exits 0.
    let third = t.write_roster_subset("google-health", &["sim-0003"]);
    let waiting = tokio::process::Command::new(BIN)
        .args(["participants", "import", third.to_str().unwrap()])
        .envs(t.fleet.env.vars())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let queue = results.clone();
    let broker = t.fleet.env.broker();
    fitlink::fleet::wait_for(
        "the third import to be queued",
        Duration::from_secs(30),
        || {
            let (queue, broker) = (queue.clone(), broker.clone());
            async move {
                let conn = fitlink_shared::broker::connect(&broker, "test").await?;
                let depth =
                    fitlink_shared::broker::queue_depth_on_fresh_channel(&conn, &queue).await?;
                let _ = conn.close(200, "done".into()).await;
                Ok((depth == Some(4)).then_some(()))
            }
        },
    )
    .await
    .unwrap();
    t.fleet.spawn("writer", &["writer"]).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(60), waiting.wait_with_output())
        .await
        .expect("the import ends once a writer applied it")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("imported: 1 participant(s)"), "{stdout}");

    // Every import was applied: the timed-out one, the one that did not wait and the one whose
    // publisher died included.
    t.wait_until("all four imports to be applied", 30, |db| async move {
        let (n,): (i64,) = fetch!(
            db.exec(),
            sqlx::query_as("SELECT count(*) FROM imports"),
            one
        )
        .unwrap();
        n == 4
    })
    .await;
    let (participants,): (i64,) = fetch!(
        t.db.exec(),
        sqlx::query_as("SELECT count(*) FROM participants"),
        one
    )
    .unwrap();
    assert_eq!(participants, 4);
    t.finish().await;
}
