//! The legacy Fitbit Web API: the original flow without its faults, its shutdown, and moving
//! participants to Google Health consent with no gap and nothing stored twice.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use fitlink_shared::fetch;

use crate::harness::{Options, TestFleet};

fn legacy(participants: usize, days: u32) -> Options {
    Options {
        participants,
        days,
        provider: "fitbit",
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fitbit_participants_sync_exactly_once_across_zones_dst_and_midnight() {
    // 7 participants over 7 zones (New York's DST end inside the window); 12-hour slices in
    // UTC cross local and UTC midnights.
    let mut t = TestFleet::start(legacy(7, 3)).await;
    let ids = t.participant_ids();
    t.wait_synced(&ids, 180).await;
    for id in &ids {
        t.assert_matches_legacy_truth(id).await;
    }
    let (not_fitbit,): (i64,) = fetch!(
        t.db.exec(),
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM heart_rate_intraday WHERE provider <> 'fitbit')
              + (SELECT count(*) FROM steps_intraday WHERE provider <> 'fitbit')
              + (SELECT count(*) FROM activity_summary WHERE provider <> 'fitbit')",
        ),
        one
    )
    .unwrap();
    assert_eq!(not_fitbit, 0, "every row records its provider");

    let stats = t.sim_stats().await;
    let per_hour = stats["legacy_requests_by_participant_per_hour_max"]
        .as_u64()
        .unwrap();
    assert!(
        per_hour <= 150,
        "the hourly quota is never exceeded: {per_hour}"
    );
    // Every refresh rotated the token, and the stored one is the newest: it still works.
    assert!(stats["legacy_token_refreshes"].as_u64().unwrap() >= ids.len() as u64);
    for id in &ids {
        let stored = t.stored_refresh_token(id).await;
        let initial = t.roster_token(id, "fitbit");
        assert_ne!(stored, initial, "{id}: the rotated token was stored");
        assert!(
            t.legacy_refresh_works(&stored).await,
            "{id}: the stored token is the live one"
        );
    }
    t.finish().await;
}

/// A worker that aborts (no cleanup, like SIGKILL) at `point` around its first token
/// rotation, then a healthy worker: every participant syncs exactly, and the stored refresh
/// token is the provider's live one.
async fn crash_around_rotation(point: &str, sim_args: Vec<String>) -> TestFleet {
    let mut t = TestFleet::start(Options {
        workers: 0,
        sim_args,
        ..legacy(3, 2)
    })
    .await;
    t.fleet
        .spawn_with_env(
            "doomed-worker",
            &["worker"],
            // One job at a time, so that only the struck job is in a rotation window when the
            // process dies (without a grace window, a second job between its refresh and its
            // store would lose its token with the process).
            &[
                (fitlink_shared::faults::FAULT_POINT_ENV, point),
                ("FITLINK_WORKER_CONCURRENCY", "1"),
            ],
        )
        .unwrap();
    t.wait_process_exit("doomed-worker", 60).await;
    t.start_workers(1);
    let ids = t.participant_ids();
    t.wait_synced(&ids, 120).await;
    for id in &ids {
        assert_eq!(t.participant(id).await.state, "active");
        t.assert_matches_legacy_truth(id).await;
        let stored = t.stored_refresh_token(id).await;
        assert!(
            t.legacy_refresh_works(&stored).await,
            "{id}: credential not lost"
        );
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_right_after_a_refresh_loses_no_credential() {
    // Killed before the rotated token was stored: the redelivered job refreshes with the old
    // token within the provider's grace window and gets the same new pair.
    let grace = vec!["--legacy-refresh-grace-secs".into(), "120".into()];
    crash_around_rotation("refresh-before-store", grace)
        .await
        .finish()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_storing_a_rotation_is_retried_with_the_stored_token() {
    // Killed after the writer committed the rotated token: the redelivered job still carries
    // the old one, which the provider refuses (no grace window); the writer sees a newer token
    // is stored and retries once with it.
    let t = crash_around_rotation("store-before-use", vec![]).await;
    let (retries,): (i64,) = fetch!(
        t.db.exec(),
        sqlx::query_as("SELECT count(*) FROM sync_jobs WHERE requested_by = 'credential_retry'"),
        one
    )
    .unwrap();
    assert!(retries >= 1, "the writer retried with the stored token");
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_at_the_hourly_quota_waits_for_the_reset_and_resumes() {
    // A tiny quota that resets every 20 s stands in for 150 per clock hour. It must still hold
    // one job's daily requests (2 per local day and 6 range requests), which are sent in one
    // go: 20, where the whole sync needs more than one window.
    let mut t = TestFleet::start(Options {
        sim_args: vec![
            "--legacy-rate-limit-per-hour".into(),
            "20".into(),
            "--legacy-rate-limit-window-secs".into(),
            "20".into(),
        ],
        ..legacy(2, 2)
    })
    .await;
    let ids = t.participant_ids();
    t.wait_synced(&ids, 240).await;
    for id in &ids {
        t.assert_matches_legacy_truth(id).await;
    }
    let stats = t.sim_stats().await;
    let per_window = stats["legacy_requests_by_participant_per_hour_max"]
        .as_u64()
        .unwrap();
    assert!(per_window <= 20, "the quota is never exceeded: {stats}");
    // Each participant needed more requests than one window allows, yet none was refused:
    // the worker stopped at `Fitbit-Rate-Limit-Remaining: 0` and resumed after the reset.
    for id in &ids {
        let sent = stats["by_participant"][id.as_str()].as_u64().unwrap_or(0);
        assert!(sent > 20, "{id} needed more than one quota window: {sent}");
    }
    assert_eq!(
        stats["status_counts"]["429"].as_u64().unwrap_or(0),
        0,
        "{stats}"
    );
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_turn_off_moves_everyone_to_reconsent_and_half_migrate_to_google_without_a_gap() {
    let mut t = TestFleet::start(legacy(4, 2)).await;
    let ids = t.participant_ids();
    t.wait_synced(&ids, 120).await;
    let before = fitlink::fleet::table_counts(&t.db).await.unwrap();
    let mut fitbit_cursors = BTreeMap::new();
    for id in &ids {
        fitbit_cursors.insert(id.clone(), t.participant(id).await.sync_cursor);
    }

    // 2026-11-02: the legacy API answers 410 Gone everywhere.
    t.sim_control("/_sim/legacy", serde_json::json!({ "turned_off": true }))
        .await;
    t.sim_control("/_sim/advance", serde_json::json!({ "minutes": 180 }))
        .await;
    t.advance_truth(180);
    t.enqueue(&ids);
    let n = ids.len() as i64;
    t.wait_until("everyone to need re-consent", 90, move |db| async move {
        let (k,): (i64,) = fetch!(db.exec(), sqlx::query_as(
            "SELECT count(*) FROM participants WHERE state = 'needs_reconsent' AND in_flight_job_id IS NULL",
        ), one)
        .unwrap();
        k == n
    })
    .await;
    for id in &ids {
        let p = t.participant(id).await;
        assert!(
            p.state_reason.as_deref().unwrap_or("").contains("410"),
            "{p:?}"
        );
        assert_eq!(p.sync_cursor, fitbit_cursors[id], "the cursor is kept");
    }
    assert_eq!(
        fitlink::fleet::table_counts(&t.db).await.unwrap(),
        before,
        "nothing deleted"
    );

    // A wrong Google account (its legacy id is another Fitbit user) is refused at import.
    t.sim_control(
        "/_sim/participants/sim-0001/identity",
        serde_json::json!({ "legacy_user_id": "ZZZZZZ" }),
    )
    .await;
    let wrong = t.write_roster_subset("google-health", &["sim-0001"]);
    let out = t.cli(&["participants", "import", wrong.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("sim-0001") && stderr.contains("wrong account"),
        "{stderr}"
    );
    assert_eq!(t.participant("sim-0001").await.state, "needs_reconsent");

    // Half of them consent through Google Health: same participant ids, their history kept.
    let migrated = ["sim-0003", "sim-0004"];
    let csv = t.write_roster_subset("google-health", &migrated);
    let out = t.cli(&["participants", "import", csv.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let migrated_ids: Vec<String> = migrated.iter().map(|s| s.to_string()).collect();
    let cursors = fitbit_cursors.clone();
    let waiting = migrated_ids.clone();
    t.wait_until("the migrated participants to sync on through Google", 120, move |db| {
        let (cursors, waiting) = (cursors.clone(), waiting.clone());
        async move {
            for id in &waiting {
                let row: (String, String, Option<String>) = fetch!(db.exec(), sqlx::query_as(
                    "SELECT provider, sync_cursor, in_flight_job_id FROM participants WHERE participant_id = ?",
                )
                .bind(id), one)
                .unwrap();
                if row.0 != "google-health" || row.1 <= cursors[id] || row.2.is_some() {
                    return false;
                }
            }
            true
        }
    })
    .await;
    for id in migrated {
        let switch: DateTime<Utc> = fitbit_cursors[id].parse().unwrap();
        t.assert_migrated_matches_truth(id, switch).await;
        let p = t.participant(id).await;
        assert!(
            p.sync_cursor > fitbit_cursors[id],
            "{id} moved on through Google"
        );
    }
    let out = t.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let by = &status["totals"]["by_provider_and_state"];
    assert_eq!(by["google-health"]["active"], 2, "{by}");
    assert_eq!(by["fitbit"]["needs_reconsent"], 2, "{by}");
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_legacy_input_fails_the_job_clearly_and_keeps_the_cursor() {
    let mut t = TestFleet::start(Options {
        start_sync: false,
        env: vec![("FITLINK_MAX_ATTEMPTS", "2".into())],
        ..legacy(4, 2)
    })
    .await;
    t.sim_control(
        "/_sim/faults",
        serde_json::json!({ "participants": {
            "sim-0001": { "legacy_bad_last_sync": true },
            "sim-0002": { "legacy_point_outside_range": true },
            "sim-0003": { "fail_5xx": true, "malformed_json": true },
        }}),
    )
    .await;
    t.import_roster().await;
    t.start_workers(2);
    t.fleet.spawn("dispatcher", &["dispatcher"]).unwrap();
    t.wait_synced(&["sim-0004".into()], 90).await;
    t.wait_until("the three bad participants to stop with a reason", 120, |db| async move {
        let (k,): (i64,) = fetch!(db.exec(), sqlx::query_as(
            "SELECT count(*) FROM participants WHERE participant_id IN ('sim-0001','sim-0002','sim-0003')
               AND state IN ('provider_data_invalid', 'dead_lettered') AND in_flight_job_id IS NULL",
        ), one)
        .unwrap();
        k == 3
    })
    .await;
    for (id, says) in [
        ("sim-0001", "lastSyncTime"),
        ("sim-0002", "outside"),
        ("sim-0003", "502"),
    ] {
        let p = t.participant(id).await;
        assert_eq!(p.sync_cursor, p.sync_from, "{id}: the cursor stays");
        let reason = p.state_reason.unwrap_or_default();
        assert!(reason.contains(says), "{id}: {reason}");
    }
    let (rows,): (i64,) = fetch!(t.db.exec(), sqlx::query_as(
        "SELECT count(*) FROM heart_rate_intraday WHERE participant_id IN ('sim-0001','sim-0002','sim-0003')",
    ), one)
    .unwrap();
    assert_eq!(rows, 0, "nothing half-written");
    t.assert_matches_legacy_truth("sim-0004").await;
    t.finish().await;
}
