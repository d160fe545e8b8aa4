//! A provider's rate limit is waited out to the reset it gave, on both APIs: the worker reports
//! it and lets go, the writer records "rate limited until T", and the dispatcher asks for the
//! participant at T, while everyone else keeps syncing.

use std::collections::BTreeMap;

use fitlink_shared::domain::UtcInstant;
use fitlink_shared::fetch;
use serde_json::{Value, json};

use crate::harness::{Options, TestFleet};

/// How long the simulator holds the participant at the rate limit (the reset the provider
/// announces counts down to its end).
const HOLD_SECS: u64 = 20;
/// How soon after the reset the participant must be asked for again.
const BACK_WITHIN_SECS: f64 = 5.0;

/// `id`'s cursor and whether a job holds it.
async fn cursor(db: &fitlink_shared::store::Database, id: &str) -> (UtcInstant, bool) {
    let (cursor, in_flight): (UtcInstant, Option<String>) = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT sync_cursor, in_flight_job_id FROM participants WHERE participant_id = $1"
        )
        .bind(id),
        one
    )
    .unwrap();
    (cursor, in_flight.is_some())
}

/// Whether every one of `ids` synced past its cursor in `before` and is at rest.
async fn synced_past(
    db: &fitlink_shared::store::Database,
    ids: &[String],
    before: &BTreeMap<String, UtcInstant>,
) -> bool {
    for id in ids {
        let (now, busy) = cursor(db, id).await;
        if busy || now <= before[id] {
            return false;
        }
    }
    true
}

/// Syncs everyone, holds the first participant at the rate limit for [`HOLD_SECS`], brings new
/// data and asks for everyone: the others sync during the hold, the held one is released with
/// `retry_at` at the reset, and its next request comes within [`BACK_WITHIN_SECS`] of the reset.
async fn a_rate_limited_participant_comes_back_at_the_reset(options: Options) -> TestFleet {
    let mut t = TestFleet::start(options).await;
    let ids = t.participant_ids();
    t.wait_synced(&ids, 120).await;
    let (held, others) = (ids[0].clone(), ids[1..].to_vec());
    let hold_path = format!("/_sim/participants/{held}/rate-limit");

    t.sim_control(&hold_path, json!({ "secs": HOLD_SECS }))
        .await;
    // Ten minutes: the simulated week ends just before Europe's clocks go back, and a
    // device sync time in the repeated hour reads as its first pass (`last_sync_instant`).
    t.sim_control("/_sim/advance", json!({ "minutes": 10 }))
        .await;
    t.advance_truth(10);
    let mut before = BTreeMap::new();
    for id in &ids {
        before.insert(id.clone(), cursor(&t.db, id).await.0);
    }
    t.enqueue(&ids);

    // The others are not held up by the one waiting.
    let (waiting, mark) = (others.clone(), before.clone());
    t.wait_until("the others to sync during the hold", 60, move |db| {
        let (waiting, mark) = (waiting.clone(), mark.clone());
        async move { synced_past(&db, &waiting, &mark).await }
    })
    .await;
    let hold: Value = t.sim_get(&hold_path).await;
    assert!(
        hold["secs_left"].as_u64().unwrap() > 0,
        "the others synced while {held} was still held: {hold}"
    );
    assert!(hold["refused"].as_u64().unwrap() >= 1, "{hold}");

    // Waiting, the participant holds no claim (no worker slot, no retry copy) and says why.
    let (retry_at, in_flight, last_error): (Option<UtcInstant>, Option<String>, Option<String>) = fetch!(
        t.db.exec(),
        sqlx::query_as(
            "SELECT retry_at, in_flight_job_id, last_error FROM participants WHERE participant_id = $1"
        )
        .bind(&held),
        one
    )
    .unwrap();
    assert!(retry_at.is_some(), "{held} waits for the reset");
    assert_eq!(in_flight, None, "{held} is released while it waits");
    assert!(
        last_error.as_deref().is_some_and(|e| e.contains("429")),
        "{last_error:?}"
    );

    let waiting = vec![held.clone()];
    t.wait_until(
        "the held participant to sync after the reset",
        60,
        move |db| {
            let (waiting, mark) = (waiting.clone(), before.clone());
            async move { synced_past(&db, &waiting, &mark).await }
        },
    )
    .await;
    let hold: Value = t.sim_get(&hold_path).await;
    let back = hold["first_request_after_secs"].as_f64().unwrap();
    assert!(
        back <= BACK_WITHIN_SECS,
        "{held} asked again {back:.1} s after the reset, not within {BACK_WITHIN_SECS} s: {hold}"
    );
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_google_retry_after_is_waited_out_to_the_second() {
    let t = a_rate_limited_participant_comes_back_at_the_reset(Options {
        participants: 3,
        days: 2,
        ..Options::default()
    })
    .await;
    for id in t.participant_ids() {
        t.assert_matches_truth(&id, &BTreeMap::new()).await;
    }
    t.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fitbit_rate_limit_reset_is_waited_out_to_the_second() {
    let t = a_rate_limited_participant_comes_back_at_the_reset(Options {
        participants: 3,
        days: 2,
        provider: "fitbit",
        ..Options::default()
    })
    .await;
    for id in t.participant_ids() {
        t.assert_matches_legacy_truth(&id).await;
    }
    t.finish().await;
}
