//! Provider faults: revoked grants and missing scopes become participant states, a 429 storm
//! slows the fleet but loses nothing, a job that keeps failing is dead-lettered and replayed.

use std::collections::BTreeMap;

use fitlink_shared::fetch;

use crate::harness::{Options, TestFleet};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_and_scope_missing_participants_are_marked_and_no_longer_dispatched() {
    let mut t = TestFleet::start(Options {
        participants: 4,
        days: 2,
        start_sync: false,
        // Re-sync active participants every second, so "no longer dispatched" is observable.
        env: vec![("FITLINK_SYNC_INTERVAL_SECS", "1".into())],
        ..Options::default()
    })
    .await;
    t.sim_control("/_sim/participants/sim-0002/revoke", serde_json::json!({}))
        .await;
    t.sim_control(
        "/_sim/participants/sim-0003/scopes",
        serde_json::json!({ "granted": ["activity_and_fitness.readonly", "settings.readonly"] }),
    )
    .await;
    t.import_roster().await;
    t.start_workers(2);
    t.fleet.spawn("dispatcher", &["dispatcher"]).unwrap();

    t.wait_until("sim-0002 revoked and sim-0003 scope_missing", 90, |db| async move {
        let states: Vec<(String, String)> = fetch!(db.exec(), sqlx::query_as(
            "SELECT participant_id, state FROM participants WHERE participant_id IN ('sim-0002', 'sim-0003') ORDER BY participant_id",
        ), all)
        .unwrap();
        states
            == vec![
                ("sim-0002".to_owned(), "revoked".to_owned()),
                ("sim-0003".to_owned(), "scope_missing".to_owned()),
            ]
    })
    .await;
    let revoked = t.participant("sim-0002").await;
    assert!(
        revoked
            .state_reason
            .as_deref()
            .unwrap_or("")
            .contains("invalid_grant"),
        "{revoked:?}"
    );
    assert_eq!(
        revoked.sync_cursor, revoked.sync_from,
        "nothing stored, cursor stays"
    );
    let scope = t.participant("sim-0003").await;
    assert!(
        scope
            .state_reason
            .as_deref()
            .unwrap_or("")
            .contains("health_metrics_and_measurements"),
        "the reason names the missing scope: {scope:?}"
    );

    // The healthy participants are re-synced every tick; the marked ones never again.
    t.wait_until("healthy participants to be synced three times", 90, |db| async move {
        let (n,): (i64,) = fetch!(db.exec(), sqlx::query_as(
            "SELECT min(c) FROM (SELECT count(*) AS c FROM sync_jobs WHERE outcome = 'completed' AND participant_id IN ('sim-0001', 'sim-0004') GROUP BY participant_id)",
        ), one)
        .unwrap_or((0,));
        n >= 3
    })
    .await;
    let (marked_jobs,): (i64,) = fetch!(
        t.db.exec(),
        sqlx::query_as(
            "SELECT count(*) FROM sync_jobs WHERE participant_id IN ('sim-0002', 'sim-0003')",
        ),
        one
    )
    .unwrap();
    assert_eq!(marked_jobs, 2, "one job each, then never dispatched again");
    for id in ["sim-0001", "sim-0004"] {
        t.assert_matches_truth(id, &BTreeMap::new()).await;
    }
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_slows_the_fleet_but_loses_nothing() {
    let mut t = TestFleet::start(Options {
        participants: 4,
        days: 2,
        start_sync: false,
        ..Options::default()
    })
    .await;
    // Every data call is refused with 429 (Retry-After: 1) until the storm is lifted.
    t.sim_control(
        "/_sim/faults",
        serde_json::json!({ "rate_limit_rate": 1.0, "retry_after_secs": 1 }),
    )
    .await;
    t.import_roster().await;
    t.start_workers(2);
    t.fleet.spawn("dispatcher", &["dispatcher"]).unwrap();
    let ids = t.participant_ids();

    // Every participant is deferred (rate limited), none is lost or marked failed.
    let n = ids.len() as i64;
    t.wait_until("every participant to be deferred by the storm", 60, move |db| async move {
        let (deferred,): (i64,) = fetch!(db.exec(), sqlx::query_as(
            "SELECT count(*) FROM participants WHERE state = 'active' AND retry_at IS NOT NULL AND last_error LIKE '%429%'",
        ), one)
        .unwrap();
        deferred == n
    })
    .await;
    let stats = t.sim_stats().await;
    assert!(stats["status_counts"]["429"].as_u64().unwrap_or(0) >= ids.len() as u64);

    t.fail_provider_for(None).await;
    t.wait_synced(&ids, 120).await;
    for id in &ids {
        let p = t.participant(id).await;
        assert_eq!(p.state, "active");
        t.assert_matches_truth(id, &BTreeMap::new()).await;
    }
    let stats = t.sim_stats().await;
    assert!(
        stats["max_requests_per_participant_per_minute"]
            .as_u64()
            .unwrap()
            <= 300,
        "the per-user quota is respected: {stats}"
    );
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_failing_is_dead_lettered_and_replay_recovers_it() {
    let mut t = TestFleet::start(Options {
        participants: 3,
        days: 2,
        start_sync: false,
        env: vec![("FITLINK_MAX_ATTEMPTS", "2".into())],
        ..Options::default()
    })
    .await;
    t.fail_provider_for(Some("sim-0002")).await;
    t.import_roster().await;
    t.start_workers(2);
    t.fleet.spawn("dispatcher", &["dispatcher"]).unwrap();

    t.wait_state("sim-0002", "dead_lettered", 90).await;
    t.wait_synced(&["sim-0001".into(), "sim-0003".into()], 60)
        .await;
    let p = t.participant("sim-0002").await;
    assert!(
        p.state_reason.as_deref().unwrap_or("").contains("503"),
        "{p:?}"
    );
    assert_eq!(t.queue_depth(&t.topology.jobs_dead).await, 1);

    let out = t.cli(&["dlq", "list"]);
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        listing.contains("sim-0002") && listing.contains("503"),
        "{listing}"
    );
    assert!(
        !listing.contains("simrt_"),
        "no token in a listing: {listing}"
    );

    // The ledger says why sim-0002's days are missing, naming the dead letter.
    let (dead_job,): (String,) = fetch!(
        t.db.exec(),
        sqlx::query_as(
            "SELECT job_id FROM sync_jobs WHERE participant_id = 'sim-0002' \
             AND outcome = 'dead_lettered'"
        ),
        one
    )
    .unwrap();
    let dead_days = ledger_rows(&t, "provider_error");
    assert!(
        !dead_days.is_empty(),
        "the dead-lettered days are in the ledger"
    );
    assert!(
        dead_days.iter().all(|r| r.dead_letter_id == dead_job),
        "every provider_error names the dead letter {dead_job}: {:?}",
        dead_days.first()
    );

    // Fault removed: the replay syncs the participant from its cursor.
    t.fail_provider_for(None).await;
    let out = t.cli(&["dlq", "replay", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.wait_synced(&["sim-0002".into()], 60).await;
    assert_eq!(t.participant("sim-0002").await.state, "active");
    assert_eq!(t.queue_depth(&t.topology.jobs_dead).await, 0);
    // Stored, the replayed days turned ok by themselves (or not_worn where the truth has no
    // data); the checker below compares every ledger row with the truth.
    assert!(ledger_rows(&t, "provider_error").is_empty());
    let ok = ledger_rows(&t, "ok");
    let turned_ok: Vec<&LedgerRow> = dead_days
        .iter()
        .filter(|d| ok.iter().any(|o| o.date == d.date && o.family == d.family))
        .collect();
    assert!(
        turned_ok.iter().any(|d| d.family == "heart_rate_intraday")
            && turned_ok.iter().any(|d| d.family == "activity"),
        "replayed days turned ok: {} of {} dead-lettered rows",
        turned_ok.len(),
        dead_days.len()
    );
    for id in t.participant_ids() {
        t.assert_matches_truth(&id, &BTreeMap::new()).await;
    }
    t.finish().await;
}

/// One row of `fitlink coverage --csv`.
#[derive(Debug)]
struct LedgerRow {
    date: String,
    family: String,
    dead_letter_id: String,
}

/// sim-0002's ledger rows with `reason`, as `fitlink coverage --csv` prints them.
fn ledger_rows(t: &TestFleet, reason: &str) -> Vec<LedgerRow> {
    let out = t.cli(&["coverage", "sim-0002", "--csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some(
            "participant_id,date,family,expected,received,worn_minutes,status,reason,dead_letter_id"
        )
    );
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f[7] == reason)
        .map(|f| LedgerRow {
            date: f[1].to_owned(),
            family: f[2].to_owned(),
            dead_letter_id: f[8].to_owned(),
        })
        .collect()
}
