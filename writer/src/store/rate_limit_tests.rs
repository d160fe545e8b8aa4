//! A rate-limited job (`Outcome::RateLimited`) against a real SQLite file and a real
//! PostgreSQL database: the claim is let go with `retry_at` at the provider's reset, nothing is
//! granted before it, what the job had left and what was notified meanwhile wait for the job
//! granted after it, which starts early enough to cover them.

use chrono::{TimeDelta, Utc};
use fitlink_shared::domain::{Provider, UtcInstant};
use fitlink_shared::messages::*;
use fitlink_shared::store::Backend;
use fitlink_shared::store::testing::TestDatabase;
use uuid::Uuid;

use super::tests::{at, column, completed, finish, grant, request, slice, with_p1};
use super::*;

/// p1 synced 2026-10-01 00:00–01:00 (the cursor), then a job from 00:30 (a restatement)
/// rate limited until `until`, with the claim released.
async fn p1_rate_limited_until(
    backend: Backend,
    until: UtcInstant,
) -> (TestDatabase, Store, Vec<Effect>) {
    let (dir, mut store) = with_p1(backend).await;
    let first = Uuid::new_v4();
    grant(&mut store, request(first, "p1")).await;
    store
        .apply(&[
            WriterCommand::StoreSlice(slice(first, "p1", "2026-10-01T00:00:00Z", 60)),
            finish(first, "p1", completed()),
        ])
        .await
        .unwrap();
    let limited = Uuid::new_v4();
    grant(&mut store, request(limited, "p1")).await;
    let applied = store
        .apply(&[finish(
            limited,
            "p1",
            Outcome::RateLimited {
                until,
                reason: "HTTP 429 (Fitbit-Rate-Limit-Reset: 1740 s)".into(),
                resume_from: at("2026-10-01T00:30:00Z"),
            },
        )])
        .await
        .unwrap();
    (dir, store, applied.effects)
}

fn in_an_hour() -> UtcInstant {
    UtcInstant::new(Utc::now() + TimeDelta::hours(1))
}

async fn a_rate_limited_job_lets_go_and_nothing_is_granted_before_the_reset(backend: Backend) {
    let until = in_an_hour();
    let (_dir, mut store, effects) = p1_rate_limited_until(backend, until).await;
    // Released, and no follow-up job: it would only be refused again.
    assert_eq!(
        effects,
        vec![Effect::JobFinished {
            released: true,
            follow_up: None
        }]
    );
    assert_eq!(column(&store, "in_flight_job_id", "p1").await, None);
    assert_eq!(
        column(&store, "retry_at", "p1").await,
        Some(until.to_text())
    );
    assert!(
        column(&store, "last_error", "p1")
            .await
            .is_some_and(|e| e.contains("429")),
        "the reason is shown"
    );
    assert_eq!(
        column(&store, "state", "p1").await.as_deref(),
        Some("active")
    );
    // Not a schedule's request, not a notification's.
    assert_eq!(
        grant(&mut store, request(Uuid::new_v4(), "p1")).await,
        Effect::NotGranted(NotGranted::RateLimited { until })
    );
    let notified = store
        .apply(&[WriterCommand::ProviderNotified(ProviderNotification {
            notification_ids: vec!["n1".into()],
            participant_id: super::tests::pid("p1"),
            provider: Provider::GoogleHealth,
            data_types: vec!["steps".into()],
            intervals: vec![NotifiedInterval {
                start: at("2026-10-01T00:10:00Z"),
                end: at("2026-10-01T00:20:00Z"),
            }],
            received_at: now_instant(),
        })])
        .await
        .unwrap();
    assert_eq!(notified.effects, vec![Effect::Notified(Notified::Deferred)]);
    // An operator's forced request goes through.
    let forced = SyncRequest {
        force: true,
        ..request(Uuid::new_v4(), "p1")
    };
    assert!(matches!(
        grant(&mut store, forced).await,
        Effect::Granted(_)
    ));
}

async fn the_job_after_the_reset_covers_what_waited(backend: Backend) {
    // The reset has passed (the dispatcher asks at `retry_at`).
    let until = UtcInstant::new(Utc::now() - TimeDelta::seconds(1));
    let (_dir, mut store, _) = p1_rate_limited_until(backend, until).await;
    assert_eq!(
        column(&store, "notified_from", "p1").await.as_deref(),
        Some("2026-10-01T00:30:00Z"),
        "the job's remainder before the cursor waits"
    );
    let Effect::Granted(job) = grant(&mut store, request(Uuid::new_v4(), "p1")).await else {
        panic!("granted after the reset")
    };
    assert_eq!(
        job.from,
        at("2026-10-01T00:30:00Z"),
        "starts where the limited job was"
    );
    assert_eq!(column(&store, "retry_at", "p1").await, None);
    assert_eq!(column(&store, "notified_at", "p1").await, None);
    assert_eq!(column(&store, "notified_from", "p1").await, None);
}

fitlink_shared::on_both_backends!(
    a_rate_limited_job_lets_go_and_nothing_is_granted_before_the_reset,
    the_job_after_the_reset_covers_what_waited,
);
