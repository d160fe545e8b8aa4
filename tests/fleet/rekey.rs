//! Token key rotation as an operator does it: credentials sealed with key A, key B put first,
//! `fitlink credentials rekey`, key A dropped, and every participant syncs. A role given only a
//! wrong key refuses, and changes nothing.

use std::collections::BTreeMap;

use fitlink_shared::fetch;
use fitlink_shared::on_backend;
use fitlink_shared::secret::{SealedToken, Secret, TokenKey};
use fitlink_shared::store::Database;
use sqlx::Row as _;

use crate::harness::{Options, TestFleet};

/// Every column of every credential and participant row, as text (SQLite stores them so).
async fn rows(db: &Database) -> Vec<Vec<Option<String>>> {
    let mut all = Vec::new();
    for sql in [
        "SELECT * FROM credentials ORDER BY participant_id",
        "SELECT * FROM participants ORDER BY participant_id",
    ] {
        let rows: Vec<Vec<Option<String>>> = on_backend!(db.exec(), |e| {
            sqlx::query(sql)
                .fetch_all(e)
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.try_get::<Option<String>, _>(i).unwrap())
                        .collect()
                })
                .collect()
        });
        all.extend(rows);
    }
    all
}

async fn stored_key_ids(db: &Database) -> Vec<Option<String>> {
    let sealed: Vec<SealedToken> = fetch!(
        db.exec(),
        sqlx::query_scalar("SELECT sealed_refresh_token FROM credentials ORDER BY participant_id"),
        all
    )
    .unwrap();
    sealed
        .iter()
        .map(|s| s.key_id().map(|id| id.to_string()))
        .collect()
}

/// Spawns `fitlink <args>` with only `key`, waits for it to exit with an error, and returns its
/// log.
async fn refused(t: &mut TestFleet, name: &str, args: &[&str], key: &Secret<String>) -> String {
    t.fleet
        .spawn_with_env(name, args, &[("FITLINK_TOKEN_KEY", key.expose())])
        .unwrap();
    let log = t.fleet.get(name).log.clone();
    t.wait_process_exit(name, 90).await;
    std::fs::read_to_string(log).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_rekeyed_to_a_new_key_sync_after_the_old_key_is_dropped() {
    let mut t = TestFleet::start(Options {
        participants: 4,
        days: 2,
        start_sync: false,
        ..Options::default()
    })
    .await;
    let ids = t.participant_ids();
    t.import_roster().await;
    let key_a = t.fleet.env.token_key.clone();
    let id_a = TokenKey::parse(&key_a).unwrap().id().to_string();
    assert_eq!(
        stored_key_ids(&t.db).await,
        vec![Some(id_a.clone()); ids.len()]
    );

    // The import asked for a first sync of everyone: wait until the writer granted them (the
    // jobs wait in the queue, no worker runs yet), so the database stands still.
    let n = ids.len() as i64;
    t.wait_until("first jobs granted", 60, move |db| async move {
        let granted: i64 = fetch!(
            db.exec(),
            sqlx::query_scalar(
                "SELECT count(*) FROM participants WHERE in_flight_job_id IS NOT NULL"
            ),
            one
        )
        .unwrap();
        granted == n
    })
    .await;

    // Only a wrong key: the dispatcher refuses to start, saying which keys are involved, and
    // the database is exactly as it was.
    let wrong = TokenKey::generate();
    let id_wrong = TokenKey::parse(&wrong).unwrap().id().to_string();
    let before = rows(&t.db).await;
    let log = refused(&mut t, "dispatcher-wrong-key", &["dispatcher"], &wrong).await;
    assert!(log.contains("dispatcher refuses to start"), "{log}");
    assert!(
        log.contains(&id_wrong) && log.contains(&id_a),
        "names both keys: {log}"
    );
    assert_eq!(rows(&t.db).await, before, "a refusing role changes nothing");

    // A worker with only a wrong key takes a job: it hands the job back and stops, and no
    // participant is blamed (no job ended, nothing changed).
    let log = refused(&mut t, "worker-wrong-key", &["worker"], &wrong).await;
    assert!(log.contains("worker refuses to work"), "{log}");
    assert!(log.contains(&id_a), "names the key it lacks: {log}");
    assert_eq!(
        rows(&t.db).await,
        before,
        "a refusing worker changes nothing"
    );
    let failed: i64 = fetch!(
        t.db.exec(),
        sqlx::query_scalar("SELECT count(*) FROM sync_jobs WHERE outcome IS NOT NULL"),
        one
    )
    .unwrap();
    assert_eq!(failed, 0, "the refused job did not end");

    // Key B put first, A kept: rekey seals every credential with B, through the writer.
    let key_b = TokenKey::generate();
    let id_b = TokenKey::parse(&key_b).unwrap().id().to_string();
    t.fleet.env.token_key = Secret::new(format!("{},{}", key_b.expose(), key_a.expose()));
    let out = t.cli(&["credentials", "rekey", "--batch", "3"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("{} resealed with key {id_b}", ids.len())),
        "{stdout}"
    );
    assert!(
        stderr.contains("rekey: 3 of 4 checked"),
        "progress on stderr: {stderr}"
    );
    assert_eq!(
        stored_key_ids(&t.db).await,
        vec![Some(id_b.clone()); ids.len()]
    );
    // Run again: nothing left to do.
    let out = t.cli(&["credentials", "rekey"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("0 resealed"), "{stdout}");

    // The roles run with B first and A still held: the jobs granted before the rekey carry
    // tokens sealed with A (the refused one too), and they sync.
    t.start_workers(2);
    t.fleet.spawn("dispatcher", &["dispatcher"]).unwrap();
    t.wait_synced(&ids, 180).await;

    // A dropped from every role: everyone syncs again with B alone.
    for name in ["worker-0", "worker-1", "dispatcher"] {
        assert!(
            t.fleet
                .get(name)
                .terminate(std::time::Duration::from_secs(30))
                .await
                .unwrap()
        );
        t.fleet.forget(name);
    }
    t.fleet.env.token_key = key_b;
    t.start_workers(2);
    t.fleet.spawn("dispatcher", &["dispatcher"]).unwrap();
    t.enqueue(&ids);
    let expected = 2 * n;
    t.wait_until(
        "everyone's job with key B alone",
        180,
        move |db| async move {
            let completed: i64 = fetch!(
                db.exec(),
                sqlx::query_scalar("SELECT count(*) FROM sync_jobs WHERE outcome = 'completed'"),
                one
            )
            .unwrap();
            completed >= expected
        },
    )
    .await;
    t.wait_synced(&ids, 60).await;
    for id in &ids {
        t.assert_matches_truth(id, &BTreeMap::new()).await;
        assert_eq!(t.participant(id).await.state, "active");
    }
    t.finish().await;
}
