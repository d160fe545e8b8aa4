//! The contract of the new daily families in the store, against a real SQLite file and a real
//! PostgreSQL database: sleep sessions keyed by the provider's id with their levels replaced
//! in the same transaction, deleted sessions gone, metrics restated in place, refused
//! families recorded and nothing of theirs deleted.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use fitlink_shared::domain::{Provider, UtcInstant};
use fitlink_shared::families::{
    BreathingRateDay, DailyFamilies, Family, SkinTemperatureDay, SleepLevel, SleepSession,
};
use fitlink_shared::fetch;
use fitlink_shared::messages::{NotifiedInterval, ProviderDeletion, SliceResult, WriterCommand};
use fitlink_shared::store::Backend;
use uuid::Uuid;

use super::tests::{at, count, pid, slice, with_p1};

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, d).unwrap()
}

/// A main sleep ending on `date` at 06:00Z, `levels` of 30 minutes each from 22:00Z before.
fn session(id: &str, date: u32, levels: &[&str]) -> SleepSession {
    let start = at(&format!("2026-10-{:02}T22:00:00Z", date - 1));
    let level = |i: usize, name: &str| SleepLevel {
        level: name.to_owned(),
        start: UtcInstant::new(start.get() + chrono::TimeDelta::minutes(30 * i as i64)),
        utc_offset_seconds: -14_400,
        duration_seconds: 1800,
    };
    SleepSession {
        session_id: id.to_owned(),
        sleep_date: day(date),
        is_main_sleep: true,
        start,
        start_utc_offset_seconds: -14_400,
        end: UtcInstant::new(start.get() + chrono::TimeDelta::minutes(30 * levels.len() as i64)),
        end_utc_offset_seconds: -14_400,
        minute_in_bed: Some(30 * levels.len() as i64),
        minute_asleep: Some(30 * levels.iter().filter(|l| **l != "wake").count() as i64),
        minute_after_wakeup: Some(0),
        minute_awake: Some(30 * levels.iter().filter(|l| **l == "wake").count() as i64),
        minute_restless: None,
        minute_deep: Some(30 * levels.iter().filter(|l| **l == "deep").count() as i64),
        minute_light: Some(30 * levels.iter().filter(|l| **l == "light").count() as i64),
        minute_rem: None,
        minute_wake: Some(30 * levels.iter().filter(|l| **l == "wake").count() as i64),
        levels: levels
            .iter()
            .enumerate()
            .map(|(i, l)| level(i, l))
            .collect(),
    }
}

/// A slice whose daily families are complete for October `days`.
fn families_slice(days: std::ops::Range<u32>, daily: DailyFamilies) -> SliceResult {
    let mut s = slice(Uuid::new_v4(), "p1", "2026-10-01T00:00:00Z", 0);
    s.daily = DailyFamilies {
        complete_days: Some(day(days.start)..day(days.end)),
        ..daily
    };
    s
}

async fn levels(store: &super::Store, session_id: &str) -> Vec<String> {
    fetch!(
        store.database().exec(),
        sqlx::query_scalar(
            "SELECT level FROM sleep_level WHERE participant_id = 'p1' AND session_id = $1 \
             ORDER BY start_datetime",
        )
        .bind(session_id),
        all
    )
    .unwrap()
}

async fn sessions(store: &super::Store) -> Vec<(String, NaiveDate)> {
    fetch!(
        store.database().exec(),
        sqlx::query_as(
            "SELECT session_id, sleep_date FROM sleep_daily_summary \
             WHERE participant_id = 'p1' ORDER BY session_id",
        ),
        all
    )
    .unwrap()
}

async fn store(store: &mut super::Store, s: SliceResult) -> BTreeMap<&'static str, u64> {
    store
        .apply(&[WriterCommand::StoreSlice(s)])
        .await
        .unwrap()
        .rows
}

async fn an_edited_session_replaces_the_old_one_with_its_levels(backend: Backend) {
    let (_db, mut st) = with_p1(backend).await;
    let night = |levels: &[&str]| DailyFamilies {
        sleep: vec![session("s1", 2, levels)],
        ..Default::default()
    };
    let first = store(
        &mut st,
        families_slice(1..3, night(&["wake", "light", "deep"])),
    )
    .await;
    assert_eq!(first.get("sleep_daily_summary"), Some(&1));
    assert_eq!(first.get("sleep_level"), Some(&3));
    let again = store(
        &mut st,
        families_slice(1..3, night(&["wake", "light", "deep"])),
    )
    .await;
    assert_eq!(
        again.get("sleep_level").copied().unwrap_or(0)
            + again.get("sleep_daily_summary").copied().unwrap_or(0),
        0,
        "the same session again writes nothing"
    );
    // The provider merged a later wake-up into the session: one id, new levels.
    store(
        &mut st,
        families_slice(1..3, night(&["light", "light", "deep", "wake"])),
    )
    .await;
    assert_eq!(sessions(&st).await, vec![("s1".to_owned(), day(2))]);
    assert_eq!(levels(&st, "s1").await, ["light", "light", "deep", "wake"]);
    let minutes: i64 = fetch!(
        st.database().exec(),
        sqlx::query_scalar("SELECT minute_in_bed FROM sleep_daily_summary WHERE session_id = 's1'"),
        one
    )
    .unwrap();
    assert_eq!(minutes, 120);
}

async fn a_session_the_provider_no_longer_has_is_deleted_unless_sleep_was_refused(
    backend: Backend,
) {
    let (_db, mut st) = with_p1(backend).await;
    let both = DailyFamilies {
        sleep: vec![session("s2", 2, &["light"]), session("s3", 3, &["deep"])],
        ..Default::default()
    };
    store(&mut st, families_slice(1..4, both)).await;
    // Sleep refused for the participant: nothing read, nothing deleted, the refusal recorded.
    let refused = DailyFamilies {
        not_permitted: [(Family::Sleep, "HTTP 403 sleep scope not granted".to_owned())].into(),
        ..Default::default()
    };
    store(&mut st, families_slice(1..4, refused)).await;
    assert_eq!(sessions(&st).await.len(), 2);
    let reason: String = fetch!(
        st.database().exec(),
        sqlx::query_scalar(
            "SELECT reason FROM family_permissions WHERE participant_id = 'p1' AND family = 'sleep'"
        ),
        one
    )
    .unwrap();
    assert!(reason.contains("403"), "{reason}");

    // Permitted again, and the session of the 2nd is gone at the provider: the re-read of
    // the 2nd deletes it with its levels; the 3rd is outside the complete days and stays.
    let rows = store(&mut st, families_slice(2..3, DailyFamilies::default())).await;
    assert_eq!(rows.get("sleep_daily_summary"), Some(&1));
    assert_eq!(sessions(&st).await, vec![("s3".to_owned(), day(3))]);
    assert!(levels(&st, "s2").await.is_empty());
    assert_eq!(
        count(&st, "family_permissions").await,
        0,
        "sleep permitted again"
    );
}

async fn a_deleted_sleep_point_deletes_the_session_ending_in_its_interval(backend: Backend) {
    let (_db, mut st) = with_p1(backend).await;
    let two = DailyFamilies {
        sleep: vec![
            session("s4", 2, &["light", "deep"]),
            session("s5", 3, &["rem"]),
        ],
        ..Default::default()
    };
    store(&mut st, families_slice(1..4, two)).await;
    st.apply(&[WriterCommand::DeleteProviderData(ProviderDeletion {
        notification_id: "n-sleep-1".into(),
        participant_id: pid("p1"),
        provider: Provider::GoogleHealth,
        data_type: "sleep".into(),
        intervals: vec![NotifiedInterval {
            start: at("2026-10-01T22:00:00Z"),
            end: at("2026-10-01T23:00:01Z"),
        }],
        received_at: at("2026-10-04T00:00:00Z"),
    })])
    .await
    .unwrap();
    assert_eq!(sessions(&st).await, vec![("s5".to_owned(), day(3))]);
    assert!(levels(&st, "s4").await.is_empty());
    assert_eq!(levels(&st, "s5").await, ["rem"]);
}

async fn nightly_metrics_are_restated_in_place(backend: Backend) {
    let (_db, mut st) = with_p1(backend).await;
    let metrics = |rate: f64| DailyFamilies {
        breathing_rate: vec![BreathingRateDay {
            date: day(2),
            breathing_rate: rate,
        }],
        skin_temperature: vec![SkinTemperatureDay {
            date: day(2),
            nightly_relative: -0.3,
        }],
        ..Default::default()
    };
    let first = store(&mut st, families_slice(1..3, metrics(15.5))).await;
    assert_eq!(first.get("breathing_rate_daily"), Some(&1));
    let unchanged = store(&mut st, families_slice(1..3, metrics(15.5))).await;
    assert_eq!(
        unchanged.get("breathing_rate_daily").copied().unwrap_or(0),
        0
    );
    store(&mut st, families_slice(1..3, metrics(16.25))).await;
    let rate: f64 = fetch!(
        st.database().exec(),
        sqlx::query_scalar(
            "SELECT breathing_rate FROM breathing_rate_daily WHERE participant_id = 'p1'"
        ),
        one
    )
    .unwrap();
    assert_eq!(rate, 16.25);
    assert_eq!(count(&st, "breathing_rate_daily").await, 1);
    assert_eq!(count(&st, "skin_temperature_daily").await, 1);
}

fitlink_shared::on_both_backends!(
    an_edited_session_replaces_the_old_one_with_its_levels,
    a_session_the_provider_no_longer_has_is_deleted_unless_sleep_was_refused,
    a_deleted_sleep_point_deletes_the_session_ending_in_its_interval,
    nightly_metrics_are_restated_in_place,
);
