//! The completeness ledger's contract, on a real SQLite file and a real PostgreSQL database:
//! each day and family gets the status and the one reason `docs/coverage.md` gives, in the
//! transaction of the command that changed it.

use chrono::NaiveDate;
use fitlink_shared::domain::{Provider, UtcInstant};
use fitlink_shared::families::{ActivityDay, DailyFamilies, Family};
use fitlink_shared::fetch;
use fitlink_shared::messages::*;
use fitlink_shared::store::Backend;
use uuid::Uuid;

use super::tests::{at, finish, grant, pid, request, slice, with_p1};
use super::{Effect, Store};

fitlink_shared::on_both_backends!(
    a_fetched_day_is_complete_and_its_wear_is_the_minutes_with_heart_rate,
    days_the_tracker_has_not_synced_reach_the_writers_today,
    a_dead_letter_leaves_its_days_provider_error_until_its_replay_is_stored,
    a_refused_family_and_a_lost_consent_are_not_permitted,
    a_purge_keeps_the_days_as_withdrawn_with_nothing_received,
    a_provider_deletion_takes_its_minutes_out_of_the_wear,
    a_dst_day_is_due_25_hours_and_a_slice_ahead_of_a_gap_is_not_fetched,
    history_older_than_the_ledger_is_filled_in_by_job_outcomes,
);

const NEW_YORK: &str = "America/New_York";

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

/// One ledger row: `(expected, received, worn_minutes, status, reason, dead_letter_id)`.
type Row = (i64, i64, Option<i64>, String, String, Option<String>);

async fn ledger(store: &Store, date: &str, family: Family) -> Row {
    fetch!(
        store.database().exec(),
        sqlx::query_as(
            "SELECT expected, received, worn_minutes, status, reason, dead_letter_id \
             FROM coverage_daily WHERE participant_id = 'p1' AND date = $1 AND family = $2",
        )
        .bind(day(date))
        .bind(family.as_str()),
        optional
    )
    .unwrap()
    .unwrap_or_else(|| panic!("no ledger row for {date} {family}"))
}

async fn reason_of(store: &Store, date: &str, family: Family) -> String {
    ledger(store, date, family).await.4
}

/// Each `(date, family)` has `reason`.
async fn assert_reasons(store: &Store, expected: &[(&str, Family, &str)]) {
    for (date, family, reason) in expected {
        assert_eq!(
            reason_of(store, date, *family).await,
            *reason,
            "{date} {family}"
        );
    }
}

async fn reasons(store: &Store, date: &str) -> Vec<(String, String)> {
    fetch!(
        store.database().exec(),
        sqlx::query_as(
            "SELECT family, reason FROM coverage_daily WHERE participant_id = 'p1' AND date = $1 \
             ORDER BY family",
        )
        .bind(day(date)),
        all
    )
    .unwrap()
}

/// `minutes` of heart rate and steps from `start` (p1's sync_from is 2026-10-01T00:00Z, which
/// is 20:00 on 2026-09-30 in New York), with the activity of `activity_days` and the daily
/// families complete for `complete`. Heart rate is kept only where `worn` says.
fn ny_slice(
    job: Uuid,
    start: &str,
    minutes: i64,
    worn: impl Fn(UtcInstant) -> bool,
    activity_days: &[&str],
    complete: (&str, &str),
) -> SliceResult {
    let mut s = slice(job, "p1", start, minutes);
    s.heart_rate.retain(|p| worn(p.datetime));
    s.steps.retain(|p| worn(p.datetime));
    s.time_zone = Some(NEW_YORK.into());
    s.daily = DailyFamilies {
        activity: activity_days
            .iter()
            .map(|d| ActivityDay {
                date: day(d),
                steps: Some(1000),
                ..Default::default()
            })
            .collect(),
        complete_days: Some(day(complete.0)..day(complete.1)),
        ..Default::default()
    };
    s
}

/// The first 28 hours: local 2026-09-30 (4 h since sync_from) and all of 2026-10-01, worn
/// until 10:00 local (14:00Z) on the 1st: 600 minutes that day.
fn first_slice(job: Uuid) -> SliceResult {
    let off_from = at("2026-10-01T14:00:00Z");
    ny_slice(
        job,
        "2026-10-01T00:00:00Z",
        28 * 60,
        move |t| t < off_from || t >= at("2026-10-02T04:00:00Z"),
        &["2026-09-30", "2026-10-01"],
        ("2026-09-30", "2026-10-02"),
    )
}

fn completed_to(synced_to: &str, latest_device_sync: &str) -> Outcome {
    Outcome::Completed {
        synced_to: at(synced_to),
        latest_device_sync: Some(at(latest_device_sync)),
        time_zone: Some(NEW_YORK.into()),
        slices: 1,
        intraday_denied: false,
        provider_user_id: None,
        identity: None,
    }
}

async fn apply(store: &mut Store, commands: Vec<WriterCommand>) {
    store.apply(&commands).await.unwrap();
}

/// A first job: [`first_slice`], completed to the end of local 2026-10-01 with the tracker's
/// latest sync at `latest_device_sync`.
async fn first_job(store: &mut Store, latest_device_sync: &str) {
    let job = Uuid::new_v4();
    apply(
        store,
        vec![
            WriterCommand::StoreSlice(first_slice(job)),
            finish(
                job,
                "p1",
                completed_to("2026-10-02T04:00:00Z", latest_device_sync),
            ),
        ],
    )
    .await;
}

async fn a_fetched_day_is_complete_and_its_wear_is_the_minutes_with_heart_rate(backend: Backend) {
    let (_db, mut store) = with_p1(backend).await;
    apply(
        &mut store,
        vec![WriterCommand::StoreSlice(first_slice(Uuid::new_v4()))],
    )
    .await;

    let hr = |e, r, w| (e, r, Some(w), "complete".to_owned(), "ok".to_owned(), None);
    assert_eq!(
        ledger(&store, "2026-09-30", Family::HeartRateIntraday).await,
        hr(240, 240, 240)
    );
    assert_eq!(
        ledger(&store, "2026-10-01", Family::HeartRateIntraday).await,
        hr(1440, 600, 600)
    );
    let (expected, received, worn, status, reason, _) =
        ledger(&store, "2026-10-01", Family::Activity).await;
    assert_eq!(
        (expected, received, worn, status.as_str(), reason.as_str()),
        (1, 1, Some(600), "complete", "ok")
    );
    // Fetched to the day's end and nothing there: the tracker recorded none of it.
    for family in [
        Family::Sleep,
        Family::RestingHeartRate,
        Family::OxygenSaturation,
    ] {
        let (_, received, _, status, reason, _) = ledger(&store, "2026-10-01", family).await;
        assert_eq!(
            (received, status.as_str(), reason.as_str()),
            (0, "missing", "not_worn"),
            "{family}"
        );
    }
    assert_eq!(
        reasons(&store, "2026-10-01").await.len(),
        Family::LEDGER.len()
    );

    // The same slice again (a redelivery) changes no row of the ledger.
    let again = store
        .apply(&[WriterCommand::StoreSlice(first_slice(Uuid::new_v4()))])
        .await
        .unwrap();
    assert_eq!(again.rows.get("coverage_daily"), None, "{:?}", again.rows);
}

async fn days_the_tracker_has_not_synced_reach_the_writers_today(backend: Backend) {
    let (_db, mut store) = with_p1(backend).await;
    // The tracker synced at 08:00 local on the 2nd; the job fetched to its end.
    first_job(&mut store, "2026-10-02T12:00:00Z").await;
    let (_, _, _, status, reason, _) = ledger(&store, "2026-10-02", Family::Activity).await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("missing", "device_not_synced")
    );
    let today = chrono::Utc::now()
        .with_timezone(&NEW_YORK.parse::<chrono_tz::Tz>().unwrap())
        .date_naive();
    let last: Option<NaiveDate> = fetch!(
        store.database().exec(),
        sqlx::query_scalar("SELECT max(date) FROM coverage_daily WHERE participant_id = 'p1'"),
        one
    )
    .unwrap();
    assert_eq!(last, Some(today));
    let days: i64 = fetch!(
        store.database().exec(),
        sqlx::query_scalar(
            "SELECT count(DISTINCT date) FROM coverage_daily WHERE participant_id = 'p1'"
        ),
        one
    )
    .unwrap();
    assert_eq!(
        days,
        (today - day("2026-09-30")).num_days() + 1,
        "no day skipped"
    );
}

async fn a_dead_letter_leaves_its_days_provider_error_until_its_replay_is_stored(backend: Backend) {
    let (_db, mut store) = with_p1(backend).await;
    first_job(&mut store, "2026-10-02T04:00:00Z").await;
    let dead = Uuid::new_v4();
    assert!(matches!(
        grant(&mut store, request(dead, "p1")).await,
        Effect::Granted(_)
    ));
    apply(
        &mut store,
        vec![finish(
            dead,
            "p1",
            Outcome::DeadLettered {
                reason: "HTTP 500 five times".into(),
            },
        )],
    )
    .await;
    let (_, received, _, status, reason, dead_letter) =
        ledger(&store, "2026-10-02", Family::HeartRateIntraday).await;
    assert_eq!(
        (received, status.as_str(), reason.as_str()),
        (0, "missing", "provider_error")
    );
    assert_eq!(dead_letter, Some(dead.hyphenated().to_string()));
    // Days fetched before the dead letter keep their own reasons.
    assert_eq!(
        reason_of(&store, "2026-10-01", Family::HeartRateIntraday).await,
        "ok"
    );

    // `fitlink dlq replay`: a forced request naming the dead job, then the job's data.
    let replay = Uuid::new_v4();
    let granted = grant(
        &mut store,
        SyncRequest {
            trigger: SyncTrigger::Replay,
            force: true,
            replaces: Some(dead),
            ..request(replay, "p1")
        },
    )
    .await;
    assert!(matches!(granted, Effect::Granted(_)), "{granted:?}");
    // The replay is fetching it; the tracker's last known sync is the day's start.
    let (_, _, _, _, reason, _) = ledger(&store, "2026-10-02", Family::HeartRateIntraday).await;
    assert_eq!(reason, "device_not_synced");
    apply(
        &mut store,
        vec![
            WriterCommand::StoreSlice(ny_slice(
                replay,
                "2026-10-02T04:00:00Z",
                24 * 60,
                |_| true,
                &["2026-10-02"],
                ("2026-10-02", "2026-10-03"),
            )),
            finish(
                replay,
                "p1",
                completed_to("2026-10-03T04:00:00Z", "2026-10-03T04:00:00Z"),
            ),
        ],
    )
    .await;
    assert_eq!(
        ledger(&store, "2026-10-02", Family::HeartRateIntraday).await,
        (1440, 1440, Some(1440), "complete".into(), "ok".into(), None)
    );
    assert_reasons(
        &store,
        &[
            ("2026-10-02", Family::Sleep, "not_worn"),
            ("2026-10-03", Family::HeartRateIntraday, "device_not_synced"),
        ],
    )
    .await;
}

async fn a_refused_family_and_a_lost_consent_are_not_permitted(backend: Backend) {
    let (_db, mut store) = with_p1(backend).await;
    let mut s = first_slice(Uuid::new_v4());
    s.daily
        .not_permitted
        .insert(Family::Sleep, "HTTP 403: sleep scope not granted".into());
    apply(&mut store, vec![WriterCommand::StoreSlice(s)]).await;
    assert_reasons(
        &store,
        &[
            ("2026-10-01", Family::Sleep, "not_permitted"),
            ("2026-10-01", Family::Activity, "ok"),
        ],
    )
    .await;

    apply(
        &mut store,
        vec![WriterCommand::ConsentLost(ConsentLoss {
            participant_id: pid("p1"),
            provider: Provider::GoogleHealth,
            reason: "userRevokedAccess".into(),
            at: at("2026-10-02T06:00:00Z"),
        })],
    )
    .await;
    // Not fetched, and no consent to fetch it with; fetched days keep their reasons.
    assert_reasons(
        &store,
        &[
            ("2026-10-02", Family::Activity, "not_permitted"),
            ("2026-10-01", Family::RestingHeartRate, "not_worn"),
        ],
    )
    .await;
}

async fn a_purge_keeps_the_days_as_withdrawn_with_nothing_received(backend: Backend) {
    let (_db, mut store) = with_p1(backend).await;
    apply(
        &mut store,
        vec![WriterCommand::StoreSlice(first_slice(Uuid::new_v4()))],
    )
    .await;
    apply(
        &mut store,
        vec![WriterCommand::Withdraw(Withdrawal {
            request_id: Uuid::new_v4(),
            participant_id: pid("p1"),
            purge: true,
            requested_by: "coordinator-ann".into(),
            provider_revocation: "revoked".into(),
            at: at("2026-10-07T08:00:00Z"),
            reply_to: None,
        })],
    )
    .await;
    assert_eq!(
        ledger(&store, "2026-10-01", Family::HeartRateIntraday).await,
        (1440, 0, None, "missing".into(), "withdrawn".into(), None)
    );
    let left: Vec<(String, String)> = reasons(&store, "2026-09-30").await;
    assert!(left.iter().all(|(_, r)| r == "withdrawn"), "{left:?}");
}

async fn a_provider_deletion_takes_its_minutes_out_of_the_wear(backend: Backend) {
    let (_db, mut store) = with_p1(backend).await;
    apply(
        &mut store,
        vec![WriterCommand::StoreSlice(first_slice(Uuid::new_v4()))],
    )
    .await;
    apply(
        &mut store,
        vec![WriterCommand::DeleteProviderData(ProviderDeletion {
            notification_id: "n-1".into(),
            participant_id: pid("p1"),
            provider: Provider::GoogleHealth,
            data_type: "heart-rate".into(),
            intervals: vec![NotifiedInterval {
                start: at("2026-10-01T05:00:00Z"),
                end: at("2026-10-01T06:00:00Z"),
            }],
            received_at: at("2026-10-03T00:00:00Z"),
        })],
    )
    .await;
    let (_, received, worn, status, ..) =
        ledger(&store, "2026-10-01", Family::HeartRateIntraday).await;
    assert_eq!(
        (received, worn, status.as_str()),
        (540, Some(540), "complete")
    );
    // Steps were not deleted: still 600 minutes of them.
    assert_eq!(
        ledger(&store, "2026-10-01", Family::StepsIntraday).await.1,
        600
    );
}

async fn a_dst_day_is_due_25_hours_and_a_slice_ahead_of_a_gap_is_not_fetched(backend: Backend) {
    let (_db, mut store) = with_p1(backend).await;
    // New York falls back on 2026-11-01: local midnight to midnight is 04:00Z to 05:00Z next day.
    apply(
        &mut store,
        vec![WriterCommand::StoreSlice(ny_slice(
            Uuid::new_v4(),
            "2026-11-01T04:00:00Z",
            25 * 60,
            |_| true,
            &[],
            ("2026-11-01", "2026-11-02"),
        ))],
    )
    .await;
    let (expected, received, _, status, reason, _) =
        ledger(&store, "2026-11-01", Family::HeartRateIntraday).await;
    assert_eq!(
        (expected, received, status.as_str()),
        (1500, 1500, "partial")
    );
    // The cursor is still at sync_from and no tracker sync is known yet.
    assert_eq!(reason, "device_not_synced");
}

async fn history_older_than_the_ledger_is_filled_in_by_job_outcomes(backend: Backend) {
    let (_db, mut store) = with_p1(backend).await;
    first_job(&mut store, "2026-10-02T04:00:00Z").await;
    // A database made before the ledger: its first days have no rows.
    fitlink_shared::execute!(
        store.database().exec(),
        sqlx::query("DELETE FROM coverage_daily WHERE participant_id = 'p1' AND date < $1")
            .bind(day("2026-10-02"))
    )
    .unwrap();
    let job = Uuid::new_v4();
    apply(
        &mut store,
        vec![finish(
            job,
            "p1",
            completed_to("2026-10-02T04:00:00Z", "2026-10-02T04:00:00Z"),
        )],
    )
    .await;
    assert_eq!(
        ledger(&store, "2026-10-01", Family::HeartRateIntraday).await,
        (1440, 600, Some(600), "complete".into(), "ok".into(), None)
    );
    assert_eq!(
        reason_of(&store, "2026-09-30", Family::Sleep).await,
        "not_worn",
        "back to sync_from's day"
    );
}
