//! The happy path and its repeat: every point exactly once, a second sync adds nothing, a
//! restated day replaces its summary.

use std::collections::BTreeMap;

use fitlink_shared::domain::UtcInstant;
use fitlink_shared::store::Backend;
use fitlink_shared::{fetch, on_backend};

use chrono::NaiveDate;

use crate::harness::{Options, TestFleet};

async fn every_point_is_stored_once_and_a_second_sync_adds_nothing_but_restatements(
    backend: Backend,
) {
    // 7 participants round-robin over 7 zones (New York's DST end on 2026-11-01 is inside the
    // default window), 4 days of history, one of them with 1-second heart rate.
    let mut t = TestFleet::start(Options {
        participants: 7,
        days: 4,
        sim_args: vec!["--fine-hr-every".into(), "7".into()],
        backend,
        ..Options::default()
    })
    .await;
    t.wait_all_synced_as_truth(180).await;
    let ids = t.participant_ids();

    let before = snapshot(&t).await;

    // The provider restates the last full day of sim-0001 (inside the summary look-back).
    let cursor: chrono::DateTime<chrono::Utc> =
        t.participant("sim-0001").await.sync_cursor.parse().unwrap();
    let tz = fitlink_simulator::roster(&t.sim_config)[0].time_zone;
    let restated: NaiveDate = cursor.with_timezone(&tz).date_naive().pred_opt().unwrap();
    t.sim_control(
        "/_sim/participants/sim-0001/restate",
        serde_json::json!({ "date": restated.to_string() }),
    )
    .await;

    // Sync everyone again (an operator's enqueue; the simulator's clock has not moved).
    t.enqueue(&ids);
    let expected_jobs = 2 * ids.len() as i64;
    t.wait_until(
        "every participant's second job to complete",
        120,
        move |db| async move {
            let (n,): (i64,) = fetch!(
                db.exec(),
                sqlx::query_as("SELECT count(*) FROM sync_jobs WHERE outcome = 'completed'"),
                one
            )
            .unwrap();
            n >= expected_jobs
        },
    )
    .await;

    let after = snapshot(&t).await;
    assert_eq!(before.counts, after.counts, "a second sync must add no row");
    // Only the restated day's summary rows were rewritten.
    let changed: Vec<&String> = after
        .summary_versions
        .iter()
        .filter(|(k, v)| before.summary_versions.get(*k) != Some(*v))
        .map(|(k, _)| k)
        .collect();
    let restated_text = restated.to_string();
    assert!(!changed.is_empty(), "the restated day must be rewritten");
    assert!(
        changed
            .iter()
            .all(|k| k.starts_with("sim-0001|") && k.contains(&restated_text)),
        "only sim-0001's {restated} may change, changed: {changed:?}"
    );
    let mut restatements = BTreeMap::new();
    restatements.insert(restated, 1);
    t.assert_matches_truth("sim-0001", &restatements).await;
    for id in ids.iter().skip(1) {
        t.assert_matches_truth(id, &BTreeMap::new()).await;
    }

    // The status report sees everyone active and synced.
    let status = t.status_json();
    assert_eq!(status["participants"].as_array().unwrap().len(), ids.len());
    assert!(
        status["participants"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "active")
    );
    t.finish().await;
}

struct Snapshot {
    counts: Vec<(&'static str, i64)>,
    /// "participant|date|zone" → updated_at, for every summary row.
    summary_versions: BTreeMap<String, String>,
}

async fn snapshot(t: &TestFleet) -> Snapshot {
    let counts = fitlink::fleet::table_counts(&t.db).await.unwrap();
    let mut summary_versions = BTreeMap::new();
    for (sql, label) in [
        (
            "SELECT participant_id || '|' || date, updated_at FROM activity_summary",
            "activity",
        ),
        (
            "SELECT participant_id || '|' || date || '|' || zone_name, updated_at FROM heart_rate_summary",
            "zones",
        ),
        (
            "SELECT participant_id || '|' || date, updated_at FROM resting_heart_rate",
            "resting",
        ),
    ] {
        let rows: Vec<(String, UtcInstant)> =
            on_backend!(t.db.exec(), |e| sqlx::query_as(sql).fetch_all(e).await).unwrap();
        for (k, v) in rows {
            summary_versions.insert(format!("{k}|{label}"), v.to_text());
        }
    }
    Snapshot {
        counts,
        summary_versions,
    }
}

fitlink_shared::on_both_backends!(
    multi_thread: every_point_is_stored_once_and_a_second_sync_adds_nothing_but_restatements
);
