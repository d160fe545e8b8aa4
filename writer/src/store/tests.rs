//! The store's contract, against a real SQLite file and a real PostgreSQL database (one test
//! body, two stores): each test proves one rule of the writer.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{NaiveDate, TimeDelta};
use fitlink_shared::config::DatabaseArgs;
use fitlink_shared::domain::{ParticipantId, ParticipantState, Provider, Slice, UtcInstant};
use fitlink_shared::messages::*;
use fitlink_shared::secret::SealedToken;
use fitlink_shared::store::testing::TestDatabase;
use fitlink_shared::store::{Backend, ByBackend};
use fitlink_shared::{execute, fetch, on_backend};
use uuid::Uuid;

use super::*;

pub(super) const LEASE: Duration = Duration::from_secs(3 * 3600);

pub(super) async fn open(backend: Backend) -> (TestDatabase, Store) {
    let db = TestDatabase::new(backend).await;
    let store = Store::open(&DatabaseArgs::url(db.url()), LEASE)
        .await
        .unwrap();
    (db, store)
}

pub(super) fn pid(id: &str) -> ParticipantId {
    ParticipantId::new(id).unwrap()
}

pub(super) fn at(text: &str) -> UtcInstant {
    UtcInstant::parse(text).unwrap()
}

/// A stand-in sealed token: base64 like a real one (PostgreSQL stores the bytes), and tests
/// tell them apart by their text.
pub(super) fn sealed(text: &str) -> SealedToken {
    SealedToken::from_stored(BASE64.encode(text))
}

/// The participant's stored credential, as the text [`sealed`] was given.
pub(super) async fn stored_token(store: &Store, participant: &str) -> Option<String> {
    let token: Option<SealedToken> = fetch!(
        store.database().exec(),
        sqlx::query_scalar(
            "SELECT sealed_refresh_token FROM credentials WHERE participant_id = $1"
        )
        .bind(participant),
        optional
    )
    .unwrap();
    token.map(|t| String::from_utf8(BASE64.decode(t.as_str()).unwrap()).unwrap())
}

pub(super) fn import(import_id: Uuid, people: &[(&str, &str)]) -> WriterCommand {
    WriterCommand::ImportParticipants(ImportBatch {
        import_id,
        source: "participants.csv".into(),
        participants: people
            .iter()
            .map(|(id, token)| ImportedParticipant {
                participant_id: pid(id),
                provider: Provider::GoogleHealth,
                sealed_refresh_token: sealed(token),
                sync_from: at("2026-10-01T00:00:00Z"),
                identity: None,
            })
            .collect(),
    })
}

pub(super) fn request(job_id: Uuid, participant: &str) -> SyncRequest {
    SyncRequest {
        job_id,
        participant_id: pid(participant),
        trigger: SyncTrigger::Schedule,
        force: false,
        from: None,
        replaces: None,
        requested_at: at("2026-10-02T00:00:00Z"),
    }
}

/// A slice of `minutes` one-minute points of heart rate and steps from `start`.
pub(super) fn slice(job_id: Uuid, participant: &str, start: &str, minutes: i64) -> SliceResult {
    let start = at(start);
    let end = UtcInstant::new(start.get() + TimeDelta::minutes(minutes));
    let points: Vec<IntradayPoint> = (0..minutes)
        .map(|m| IntradayPoint {
            datetime: UtcInstant::new(start.get() + TimeDelta::minutes(m)),
            utc_offset_seconds: -14_400,
            value: 60 + m % 40,
        })
        .collect();
    SliceResult {
        job_id,
        participant_id: pid(participant),
        provider: Provider::GoogleHealth,
        slice: Slice { start, end },
        daily: Default::default(),
        devices: None,
        time_zone: None,
        heart_rate: points.clone(),
        steps: points,
    }
}

pub(super) fn finish(job_id: Uuid, participant: &str, outcome: Outcome) -> WriterCommand {
    WriterCommand::FinishJob(JobOutcome {
        job_id,
        participant_id: pid(participant),
        outcome,
        at: at("2026-10-02T01:00:00Z"),
    })
}

pub(super) fn completed() -> Outcome {
    Outcome::Completed {
        synced_to: at("2026-10-01T00:00:00Z"),
        latest_device_sync: Some(at("2026-10-02T00:30:00Z")),
        time_zone: Some("America/New_York".into()),
        slices: 1,
        intraday_denied: false,
        provider_user_id: None,
        identity: None,
    }
}

/// One participant `p1`, imported.
pub(super) async fn with_p1(backend: Backend) -> (TestDatabase, Store) {
    let (dir, mut store) = open(backend).await;
    store
        .apply(&[import(Uuid::new_v4(), &[("p1", "sealed-1")])])
        .await
        .unwrap();
    (dir, store)
}

pub(super) async fn grant(store: &mut Store, req: SyncRequest) -> Effect {
    let mut applied = store
        .apply(&[WriterCommand::RequestSync(req)])
        .await
        .unwrap();
    applied.effects.remove(0)
}

pub(super) async fn count(store: &Store, table: &str) -> i64 {
    fetch!(
        store.database().exec(),
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}"))),
        one
    )
    .unwrap()
}

/// A column of the participant's row, as SQLite text (instants in their canonical form).
pub(super) async fn column(store: &Store, column: &str, participant: &str) -> Option<String> {
    on_backend!(store.database().exec(), |e| {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {column} FROM participants WHERE participant_id = $1"
        )))
        .bind(participant)
        .fetch_one(e)
        .await
        .unwrap();
        fitlink_shared::column_text!(row, 0)
    })
}

use sqlx::AssertSqlSafe;

async fn import_is_idempotent_and_a_new_consent_reactivates_without_moving_the_cursor(
    backend: Backend,
) {
    let (_dir, mut store) = open(backend).await;
    let first = Uuid::new_v4();
    let applied = store
        .apply(&[import(first, &[("p1", "sealed-1"), ("p2", "sealed-2")])])
        .await
        .unwrap();
    assert_eq!(
        applied.effects,
        vec![Effect::Imported {
            created: 2,
            updated: 0,
            reactivated: 0,
            refused: 0
        }]
    );
    assert_eq!(
        column(&store, "sync_cursor", "p1").await.as_deref(),
        Some("2026-10-01T00:00:00Z")
    );
    assert_eq!(
        column(&store, "state", "p1").await.as_deref(),
        Some("active")
    );

    // The same file again (a redelivery, or an operator running it twice): nothing happens.
    let again = store
        .apply(&[import(first, &[("p1", "other"), ("p3", "sealed-3")])])
        .await
        .unwrap();
    assert_eq!(again.effects, vec![Effect::ImportAlreadyApplied]);
    assert_eq!(count(&store, "participants").await, 2);
    assert_eq!(count(&store, "imports").await, 1);
    assert_eq!(
        stored_token(&store, "p1").await.as_deref(),
        Some("sealed-1")
    );

    // p1 syncs a bit, then revokes access.
    let job = Uuid::new_v4();
    grant(&mut store, request(job, "p1")).await;
    store
        .apply(&[
            WriterCommand::StoreSlice(slice(job, "p1", "2026-10-01T00:00:00Z", 60)),
            finish(
                job,
                "p1",
                Outcome::Failed {
                    state: ParticipantState::Revoked,
                    reason: "invalid_grant".into(),
                    rejected_token: None,
                },
            ),
        ])
        .await
        .unwrap();
    assert_eq!(
        column(&store, "state", "p1").await.as_deref(),
        Some("revoked")
    );

    // A new consent arrives in a new file, with a later sync_from: state back to active, the
    // token replaced, the cursor and sync_from untouched.
    let WriterCommand::ImportParticipants(mut batch) =
        import(Uuid::new_v4(), &[("p1", "sealed-1-new")])
    else {
        unreachable!()
    };
    batch.participants[0].sync_from = at("2026-12-01T00:00:00Z");
    let applied = store
        .apply(&[WriterCommand::ImportParticipants(batch)])
        .await
        .unwrap();
    assert_eq!(
        applied.effects,
        vec![Effect::Imported {
            created: 0,
            updated: 1,
            reactivated: 1,
            refused: 0
        }]
    );
    assert_eq!(
        column(&store, "state", "p1").await.as_deref(),
        Some("active")
    );
    assert_eq!(column(&store, "state_reason", "p1").await, None);
    assert_eq!(
        column(&store, "sync_cursor", "p1").await.as_deref(),
        Some("2026-10-01T01:00:00Z")
    );
    assert_eq!(
        column(&store, "sync_from", "p1").await.as_deref(),
        Some("2026-10-01T00:00:00Z")
    );
    assert_eq!(
        stored_token(&store, "p1").await.as_deref(),
        Some("sealed-1-new")
    );
    assert_eq!(count(&store, "imports").await, 2);

    // SQLite: credentials are committed with synchronous=FULL; the connection is back to
    // NORMAL after.
    if let ByBackend::Sqlite(pool) = store.database().exec() {
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(synchronous, 1, "synchronous=NORMAL");
    }
}

async fn a_grant_claims_the_participant_and_carries_what_the_worker_needs(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let job_id = Uuid::new_v4();
    let Effect::Granted(job) = grant(&mut store, request(job_id, "p1")).await else {
        panic!("not granted")
    };
    assert_eq!(job.job_id, job_id);
    assert_eq!(job.participant_id, pid("p1"));
    assert_eq!(job.provider, Provider::GoogleHealth);
    assert_eq!(job.sealed_refresh_token, sealed("sealed-1"));
    assert_eq!(job.from, at("2026-10-01T00:00:00Z"));
    assert_eq!(job.time_zone, None);
    assert_eq!(
        column(&store, "in_flight_job_id", "p1").await,
        Some(job_id.to_string())
    );
    assert_eq!(
        column(&store, "in_flight_since", "p1").await,
        Some(job.granted_at.to_text())
    );
    let (requested_by, granted_at): (String, UtcInstant) = fetch!(
        store.database().exec(),
        sqlx::query_as("SELECT requested_by, granted_at FROM sync_jobs WHERE job_id = $1")
            .bind(job_id.to_string()),
        one
    )
    .unwrap();
    assert_eq!(requested_by, "schedule");
    assert_eq!(granted_at, job.granted_at);
}

async fn a_second_request_while_one_is_in_flight_is_not_granted(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let first = Uuid::new_v4();
    assert!(matches!(
        grant(&mut store, request(first, "p1")).await,
        Effect::Granted(_)
    ));
    // Two requests in one batch see each other too.
    let applied = store
        .apply(&[
            WriterCommand::RequestSync(request(Uuid::new_v4(), "p1")),
            WriterCommand::RequestSync(request(Uuid::new_v4(), "p1")),
        ])
        .await
        .unwrap();
    for effect in &applied.effects {
        assert_eq!(
            *effect,
            Effect::NotGranted(NotGranted::InFlight {
                job_id: first.to_string()
            })
        );
    }
    assert_eq!(applied.rows_written(), 0);
    assert_eq!(count(&store, "sync_jobs").await, 1);
    assert_eq!(
        column(&store, "in_flight_job_id", "p1").await,
        Some(first.to_string())
    );

    // Two fresh requests in one batch for an idle participant: the first wins.
    let (_dir, mut store) = with_p1(backend).await;
    let applied = store
        .apply(&[
            WriterCommand::RequestSync(request(Uuid::new_v4(), "p1")),
            WriterCommand::RequestSync(request(Uuid::new_v4(), "p1")),
        ])
        .await
        .unwrap();
    assert!(matches!(applied.effects[0], Effect::Granted(_)));
    assert!(matches!(
        applied.effects[1],
        Effect::NotGranted(NotGranted::InFlight { .. })
    ));
    assert_eq!(applied.jobs().count(), 1);
}

async fn a_replay_that_names_the_job_in_flight_takes_over_its_claim(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let lost = Uuid::new_v4();
    grant(&mut store, request(lost, "p1")).await;
    let replay = Uuid::new_v4();
    let mut req = request(replay, "p1");
    req.trigger = SyncTrigger::Replay;
    req.replaces = Some(lost);
    assert!(matches!(grant(&mut store, req).await, Effect::Granted(_)));
    assert_eq!(
        column(&store, "in_flight_job_id", "p1").await,
        Some(replay.to_string())
    );
    let detail: Option<String> = fetch!(
        store.database().exec(),
        sqlx::query_scalar("SELECT detail FROM sync_jobs WHERE job_id = $1").bind(lost.to_string()),
        one
    )
    .unwrap();
    assert!(detail.unwrap().contains(&replay.to_string()));

    // A replay naming some other job does not.
    let mut req = request(Uuid::new_v4(), "p1");
    req.replaces = Some(lost);
    assert!(matches!(
        grant(&mut store, req).await,
        Effect::NotGranted(NotGranted::InFlight { .. })
    ));
}

async fn an_expired_lease_is_granted_again(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let old = Uuid::new_v4();
    grant(&mut store, request(old, "p1")).await;
    let four_hours_ago = UtcInstant::new(chrono::Utc::now() - TimeDelta::hours(4));
    execute!(
        store.database().exec(),
        sqlx::query("UPDATE participants SET in_flight_since = $1").bind(four_hours_ago)
    )
    .unwrap();
    let new = Uuid::new_v4();
    assert!(matches!(
        grant(&mut store, request(new, "p1")).await,
        Effect::Granted(_)
    ));
    assert_eq!(
        column(&store, "in_flight_job_id", "p1").await,
        Some(new.to_string())
    );

    // Within the lease (2 h old), it is still held.
    let two_hours_ago = UtcInstant::new(chrono::Utc::now() - TimeDelta::hours(2));
    execute!(
        store.database().exec(),
        sqlx::query("UPDATE participants SET in_flight_since = $1").bind(two_hours_ago)
    )
    .unwrap();
    assert!(matches!(
        grant(&mut store, request(Uuid::new_v4(), "p1")).await,
        Effect::NotGranted(NotGranted::InFlight { .. })
    ));
}

async fn a_redelivered_granted_request_publishes_the_same_job_again(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let job_id = Uuid::new_v4();
    let Effect::Granted(job) = grant(&mut store, request(job_id, "p1")).await else {
        panic!("not granted")
    };
    let Effect::Regranted(again) = grant(&mut store, request(job_id, "p1")).await else {
        panic!("not re-granted")
    };
    assert_eq!(again, job);
    assert_eq!(count(&store, "sync_jobs").await, 1);

    // Once the job finished, a late redelivery grants nothing.
    store
        .apply(&[finish(job_id, "p1", completed())])
        .await
        .unwrap();
    assert_eq!(
        grant(&mut store, request(job_id, "p1")).await,
        Effect::NotGranted(NotGranted::AlreadyGranted)
    );
    assert_eq!(column(&store, "in_flight_job_id", "p1").await, None);
}

async fn a_participant_who_is_not_active_is_granted_only_when_forced(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let job = Uuid::new_v4();
    grant(&mut store, request(job, "p1")).await;
    store
        .apply(&[finish(
            job,
            "p1",
            Outcome::Failed {
                state: ParticipantState::ScopeMissing,
                reason: "heart rate scope not granted".into(),
                rejected_token: None,
            },
        )])
        .await
        .unwrap();
    assert_eq!(
        grant(&mut store, request(Uuid::new_v4(), "p1")).await,
        Effect::NotGranted(NotGranted::NotActive {
            state: "scope_missing".into()
        })
    );
    let mut forced = request(Uuid::new_v4(), "p1");
    forced.force = true;
    forced.trigger = SyncTrigger::Manual;
    forced.from = Some(at("2026-09-01T00:00:00Z"));
    let Effect::Granted(job) = grant(&mut store, forced).await else {
        panic!("forced request not granted")
    };
    assert_eq!(job.from, at("2026-09-01T00:00:00Z"));
    assert_eq!(
        column(&store, "state", "p1").await.as_deref(),
        Some("active")
    );
    assert_eq!(column(&store, "state_reason", "p1").await, None);
    // An operator's re-sync from earlier never moves the cursor back.
    assert_eq!(
        column(&store, "sync_cursor", "p1").await.as_deref(),
        Some("2026-10-01T00:00:00Z")
    );
}

async fn a_slice_stored_twice_is_stored_once(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let job = Uuid::new_v4();
    grant(&mut store, request(job, "p1")).await;
    let s = WriterCommand::StoreSlice(slice(job, "p1", "2026-10-01T00:00:00Z", 300));
    let first = store.apply(std::slice::from_ref(&s)).await.unwrap();
    assert_eq!(first.rows.get("heart_rate_intraday"), Some(&300));
    assert_eq!(first.rows.get("steps_intraday"), Some(&300));
    let second = store.apply(&[s.clone(), s]).await.unwrap();
    assert_eq!(second.rows_written(), 0);
    assert_eq!(count(&store, "heart_rate_intraday").await, 300);
    assert_eq!(count(&store, "steps_intraday").await, 300);
    let (slices, rows): (i64, i64) = fetch!(
        store.database().exec(),
        sqlx::query_as("SELECT slices_stored, rows_stored FROM sync_jobs WHERE job_id = $1")
            .bind(job.to_string()),
        one
    )
    .unwrap();
    assert_eq!((slices, rows), (3, 600));

    // Every row carries its participant, provider, UTC instant and offset.
    let row: (String, UtcInstant, i64, i64, String) = fetch!(
        store.database().exec(),
        sqlx::query_as(
            "SELECT participant_id, datetime, CAST(utc_offset_seconds AS BIGINT), \
             CAST(heart_rate_value AS BIGINT), provider \
         FROM heart_rate_intraday ORDER BY datetime LIMIT 1",
        ),
        one
    )
    .unwrap();
    assert_eq!(
        row,
        (
            "p1".into(),
            at("2026-10-01T00:00:00Z"),
            -14_400,
            60,
            "google-health".into()
        )
    );
}

async fn summaries_are_replaced_when_changed_and_untouched_when_not(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let job = Uuid::new_v4();
    let day = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
    let mut s = slice(job, "p1", "2026-10-01T00:00:00Z", 0);
    s.slice.end = at("2026-10-02T00:00:00Z");
    s.daily.activity = vec![ActivityDay {
        date: day,
        steps: Some(8000),
        distance: Some(6.1),
        ..Default::default()
    }];
    s.daily.heart_rate_zones = ["light", "moderate"]
        .iter()
        .map(|zone| HeartRateZoneDay {
            date: day,
            zone_name: (*zone).into(),
            min_heart_rate: Some(90),
            max_heart_rate: Some(120),
            minute_in_zone: Some(30),
            calorie_count: Some(150.5),
        })
        .collect();
    s.daily.resting_heart_rate = vec![RestingHeartRateDay {
        date: day,
        resting_heart_rate: 58,
    }];
    let applied = store
        .apply(&[WriterCommand::StoreSlice(s.clone())])
        .await
        .unwrap();
    assert_eq!(applied.rows.get("activity_summary"), Some(&1));
    assert_eq!(applied.rows.get("heart_rate_summary"), Some(&2));
    assert_eq!(applied.rows.get("resting_heart_rate"), Some(&1));

    // Mark the rows as written long ago, so an update would show.
    for table in [
        "activity_summary",
        "heart_rate_summary",
        "resting_heart_rate",
    ] {
        execute!(
            store.database().exec(),
            sqlx::query(AssertSqlSafe(format!(
                "UPDATE {table} SET updated_at = '2000-01-01T00:00:00Z'"
            )))
        )
        .unwrap();
    }
    let unchanged = store
        .apply(&[WriterCommand::StoreSlice(s.clone())])
        .await
        .unwrap();
    assert_eq!(unchanged.rows_written(), 0);
    for table in [
        "activity_summary",
        "heart_rate_summary",
        "resting_heart_rate",
    ] {
        let stale: i64 = fetch!(
            store.database().exec(),
            sqlx::query_scalar(AssertSqlSafe(format!(
                "SELECT count(*) FROM {table} WHERE updated_at = '2000-01-01T00:00:00Z'"
            ))),
            one
        )
        .unwrap();
        assert!(stale >= 1, "{table} was rewritten although unchanged");
    }

    // The day changes (more steps later that day; a zone's minutes): replaced.
    s.daily.activity[0].steps = Some(9500);
    s.daily.heart_rate_zones[1].minute_in_zone = Some(45);
    s.daily.resting_heart_rate[0].resting_heart_rate = 57;
    let changed = store.apply(&[WriterCommand::StoreSlice(s)]).await.unwrap();
    assert_eq!(changed.rows.get("activity_summary"), Some(&1));
    assert_eq!(changed.rows.get("heart_rate_summary"), Some(&1));
    assert_eq!(changed.rows.get("resting_heart_rate"), Some(&1));
    let (steps, distance, updated_at): (i64, f64, UtcInstant) = fetch!(store.database().exec(), sqlx::query_as(
        "SELECT steps, distance, updated_at FROM activity_summary WHERE participant_id = 'p1' AND date = '2026-10-01'",
    ), one)
    .unwrap();
    assert_eq!((steps, distance), (9500, 6.1));
    assert_ne!(updated_at, at("2000-01-01T00:00:00Z"));
    let light_untouched: UtcInstant = fetch!(
        store.database().exec(),
        sqlx::query_scalar("SELECT updated_at FROM heart_rate_summary WHERE zone_name = 'light'"),
        one
    )
    .unwrap();
    assert_eq!(light_untouched, at("2000-01-01T00:00:00Z"));
    assert_eq!(count(&store, "activity_summary").await, 1);
    assert_eq!(count(&store, "heart_rate_summary").await, 2);
}

async fn the_cursor_advances_contiguously_and_waits_at_a_gap(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let job = Uuid::new_v4();
    async fn cursor(store: &Store) -> String {
        column(store, "sync_cursor", "p1").await.unwrap()
    }
    let hour = |h: u32| {
        WriterCommand::StoreSlice(slice(job, "p1", &format!("2026-10-01T{h:02}:00:00Z"), 60))
    };

    store.apply(&[hour(0)]).await.unwrap();
    assert_eq!(cursor(&store).await, "2026-10-01T01:00:00Z");
    assert_eq!(count(&store, "sync_slices").await, 0);

    // 02:00 and 03:00 arrive before 01:00: stored, but the cursor waits at the gap.
    let applied = store.apply(&[hour(3), hour(2)]).await.unwrap();
    assert_eq!(
        applied.effects[1],
        Effect::SliceStored {
            rows_written: 120,
            cursor: at("2026-10-01T01:00:00Z")
        }
    );
    assert_eq!(cursor(&store).await, "2026-10-01T01:00:00Z");
    assert_eq!(count(&store, "sync_slices").await, 2);
    assert_eq!(count(&store, "heart_rate_intraday").await, 180);

    // The gap is filled: the cursor jumps over everything contiguous.
    store.apply(&[hour(1)]).await.unwrap();
    assert_eq!(cursor(&store).await, "2026-10-01T04:00:00Z");
    assert_eq!(count(&store, "sync_slices").await, 0);

    // A re-sync of old data stores (nothing new here) and leaves the cursor alone.
    store.apply(&[hour(0)]).await.unwrap();
    assert_eq!(cursor(&store).await, "2026-10-01T04:00:00Z");
    assert_eq!(count(&store, "sync_slices").await, 0);

    // A slice overlapping the cursor moves it to the slice's end.
    let mut overlapping = slice(job, "p1", "2026-10-01T03:30:00Z", 60);
    overlapping.heart_rate.clear();
    store
        .apply(&[WriterCommand::StoreSlice(overlapping)])
        .await
        .unwrap();
    assert_eq!(cursor(&store).await, "2026-10-01T04:30:00Z");
}

async fn a_rotated_credential_is_stored(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let applied = store
        .apply(&[WriterCommand::RotateCredential(CredentialRotation {
            job_id: Uuid::new_v4(),
            participant_id: pid("p1"),
            sealed_refresh_token: sealed("sealed-rotated"),
            replaces: None,
            reply_to: None,
        })])
        .await
        .unwrap();
    assert!(matches!(
        applied.effects[..],
        [Effect::CredentialRotated { .. }]
    ));
    assert_eq!(
        stored_token(&store, "p1").await.as_deref(),
        Some("sealed-rotated")
    );
    // And the next grant carries it.
    let Effect::Granted(job) = grant(&mut store, request(Uuid::new_v4(), "p1")).await else {
        panic!("not granted")
    };
    assert_eq!(job.sealed_refresh_token, sealed("sealed-rotated"));

    let err = store
        .apply(&[WriterCommand::RotateCredential(CredentialRotation {
            job_id: Uuid::new_v4(),
            participant_id: pid("nobody"),
            sealed_refresh_token: sealed("x"),
            replaces: None,
            reply_to: None,
        })])
        .await
        .unwrap_err();
    assert!(err.is_dead_letter(), "{err}");
}

/// Rotations that arrive out of order (a worker stalled between its refresh and its publish
/// while another rotated again): the older one must not put its token back.
async fn a_rotation_from_a_replaced_token_keeps_the_newer_one(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let rotation = |from: &str, to: &str| {
        WriterCommand::RotateCredential(CredentialRotation {
            job_id: Uuid::new_v4(),
            participant_id: pid("p1"),
            sealed_refresh_token: sealed(to),
            replaces: Some(sealed(from)),
            reply_to: Some("amq.gen-worker".into()),
        })
    };
    store
        .apply(&[rotation("sealed-1", "sealed-2")])
        .await
        .unwrap();
    store
        .apply(&[rotation("sealed-2", "sealed-3")])
        .await
        .unwrap();
    assert_eq!(
        stored_token(&store, "p1").await.as_deref(),
        Some("sealed-3")
    );
    // The late one from sealed-1 is answered (its worker goes on) but changes nothing.
    let late = store
        .apply(&[rotation("sealed-1", "sealed-2")])
        .await
        .unwrap();
    assert!(
        matches!(
            &late.effects[..],
            [Effect::CredentialRotated {
                reply_to: Some(_),
                ..
            }]
        ),
        "{:?}",
        late.effects
    );
    assert_eq!(
        stored_token(&store, "p1").await.as_deref(),
        Some("sealed-3")
    );
}

async fn a_completed_job_releases_the_claim_and_records_the_sync(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let job = Uuid::new_v4();
    grant(&mut store, request(job, "p1")).await;
    execute!(
        store.database().exec(),
        sqlx::query(
            "UPDATE participants SET last_error = 'earlier 503', retry_at = '2026-10-02T00:00:00Z'",
        )
    )
    .unwrap();
    let applied = store
        .apply(&[finish(job, "p1", completed())])
        .await
        .unwrap();
    assert_eq!(
        applied.effects,
        vec![Effect::JobFinished {
            released: true,
            follow_up: None
        }]
    );
    assert_eq!(column(&store, "in_flight_job_id", "p1").await, None);
    assert_eq!(column(&store, "in_flight_since", "p1").await, None);
    assert_eq!(
        column(&store, "last_success_at", "p1").await.as_deref(),
        Some("2026-10-02T01:00:00Z")
    );
    assert_eq!(
        column(&store, "latest_device_sync", "p1").await.as_deref(),
        Some("2026-10-02T00:30:00Z")
    );
    assert_eq!(
        column(&store, "time_zone", "p1").await.as_deref(),
        Some("America/New_York")
    );
    assert_eq!(column(&store, "retry_at", "p1").await, None);
    assert_eq!(column(&store, "last_error", "p1").await, None);
    let (finished_at, outcome): (UtcInstant, String) = fetch!(
        store.database().exec(),
        sqlx::query_as("SELECT finished_at, outcome FROM sync_jobs WHERE job_id = $1")
            .bind(job.to_string()),
        one
    )
    .unwrap();
    assert_eq!(
        (finished_at, outcome.as_str()),
        (at("2026-10-02T01:00:00Z"), "completed")
    );

    // The next grant carries the time zone learned.
    let Effect::Granted(next) = grant(&mut store, request(Uuid::new_v4(), "p1")).await else {
        panic!("not granted")
    };
    assert_eq!(next.time_zone.as_deref(), Some("America/New_York"));
}

async fn a_deferred_job_keeps_the_claim_and_says_until_when(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let job = Uuid::new_v4();
    grant(&mut store, request(job, "p1")).await;
    let applied = store
        .apply(&[finish(
            job,
            "p1",
            Outcome::Deferred {
                until: at("2026-10-02T02:00:00Z"),
                rate_limited: true,
                reason: "429 from provider".into(),
            },
        )])
        .await
        .unwrap();
    assert_eq!(
        applied.effects,
        vec![Effect::JobFinished {
            released: false,
            follow_up: None
        }]
    );
    assert_eq!(
        column(&store, "in_flight_job_id", "p1").await,
        Some(job.to_string())
    );
    assert_eq!(
        column(&store, "retry_at", "p1").await.as_deref(),
        Some("2026-10-02T02:00:00Z")
    );
    assert_eq!(
        column(&store, "last_error", "p1").await.as_deref(),
        Some("429 from provider")
    );
    assert_eq!(
        column(&store, "last_error_at", "p1").await.as_deref(),
        Some("2026-10-02T01:00:00Z")
    );
    assert_eq!(
        column(&store, "state", "p1").await.as_deref(),
        Some("active")
    );
    assert!(matches!(
        grant(&mut store, request(Uuid::new_v4(), "p1")).await,
        Effect::NotGranted(NotGranted::InFlight { .. })
    ));
}

async fn failed_and_dead_lettered_jobs_set_the_reason_and_release_the_claim(backend: Backend) {
    for (outcome, state, reason) in [
        (
            Outcome::Failed {
                state: ParticipantState::Revoked,
                reason: "invalid_grant".into(),
                rejected_token: None,
            },
            "revoked",
            "invalid_grant",
        ),
        (
            Outcome::DeadLettered {
                reason: "retries exhausted: 503".into(),
            },
            "dead_lettered",
            "retries exhausted: 503",
        ),
    ] {
        let (_dir, mut store) = with_p1(backend).await;
        let job = Uuid::new_v4();
        grant(&mut store, request(job, "p1")).await;
        let applied = store.apply(&[finish(job, "p1", outcome)]).await.unwrap();
        assert_eq!(
            applied.effects,
            vec![Effect::JobFinished {
                released: true,
                follow_up: None
            }]
        );
        assert_eq!(column(&store, "state", "p1").await.as_deref(), Some(state));
        assert_eq!(
            column(&store, "state_reason", "p1").await.as_deref(),
            Some(reason)
        );
        assert_eq!(
            column(&store, "last_error", "p1").await.as_deref(),
            Some(reason)
        );
        assert_eq!(column(&store, "in_flight_job_id", "p1").await, None);
        let outcome: String = fetch!(
            store.database().exec(),
            sqlx::query_scalar("SELECT outcome FROM sync_jobs WHERE job_id = $1")
                .bind(job.to_string()),
            one
        )
        .unwrap();
        assert_eq!(
            outcome,
            if state == "revoked" {
                "failed"
            } else {
                "dead_lettered"
            }
        );
    }
}

async fn a_late_outcome_of_a_replaced_job_does_not_release_its_successor(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let lost = Uuid::new_v4();
    grant(&mut store, request(lost, "p1")).await;
    let mut replay = request(Uuid::new_v4(), "p1");
    replay.replaces = Some(lost);
    let successor = replay.job_id;
    grant(&mut store, replay).await;
    let applied = store
        .apply(&[finish(lost, "p1", completed())])
        .await
        .unwrap();
    assert_eq!(
        applied.effects,
        vec![Effect::JobFinished {
            released: false,
            follow_up: None
        }]
    );
    assert_eq!(
        column(&store, "in_flight_job_id", "p1").await,
        Some(successor.to_string())
    );
}

async fn an_unknown_participants_slice_is_a_dead_letter_that_changes_nothing(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let job = Uuid::new_v4();
    let before = (
        count(&store, "heart_rate_intraday").await,
        count(&store, "sync_jobs").await,
        column(&store, "sync_cursor", "p1").await,
    );
    // A good command before it in the same batch rolls back with it.
    let err = store
        .apply(&[
            WriterCommand::RequestSync(request(job, "p1")),
            WriterCommand::StoreSlice(slice(job, "p1", "2026-10-01T00:00:00Z", 60)),
            WriterCommand::StoreSlice(slice(job, "ghost", "2026-10-01T00:00:00Z", 60)),
        ])
        .await
        .unwrap_err();
    match &err {
        StoreError::Rejected {
            index,
            kind,
            rejection: Rejection::UnknownParticipant(p),
        } => {
            assert_eq!((*index, *kind, p.as_str()), (2, "store_slice", "ghost"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.is_dead_letter());
    let after = (
        count(&store, "heart_rate_intraday").await,
        count(&store, "sync_jobs").await,
        column(&store, "sync_cursor", "p1").await,
    );
    assert_eq!(before, after);
    assert_eq!(count(&store, "sync_slices").await, 0);
    assert_eq!(column(&store, "in_flight_job_id", "p1").await, None);

    // The other commands, alone, apply (what the consumer does after a batch fails).
    assert!(matches!(
        grant(&mut store, request(job, "p1")).await,
        Effect::Granted(_)
    ));
    for command in [
        WriterCommand::RequestSync(request(Uuid::new_v4(), "ghost")),
        finish(job, "ghost", completed()),
    ] {
        assert!(store.apply(&[command]).await.unwrap_err().is_dead_letter());
    }
    let mut inverted = slice(job, "p1", "2026-10-01T06:00:00Z", 0);
    inverted.slice.end = UtcInstant::parse("2026-10-01T05:00:00Z").unwrap();
    assert!(matches!(
        store.apply(&[WriterCommand::StoreSlice(inverted)]).await,
        Err(StoreError::Rejected {
            rejection: Rejection::InvertedSlice { .. },
            ..
        })
    ));
}

/// Throughput of `Store::apply` for intraday data: batches of slices of ~1000 points.
/// `cargo test -p fitlink-writer --release -- --ignored --nocapture intraday_throughput`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test: run it on purpose"]
async fn intraday_throughput() {
    let (_dir, mut store) = open(Backend::Sqlite).await;
    let participants: Vec<String> = (0..32).map(|i| format!("p{i}")).collect();
    let people: Vec<(&str, &str)> = participants
        .iter()
        .map(|p| (p.as_str(), "sealed"))
        .collect();
    store
        .apply(&[import(Uuid::new_v4(), &people)])
        .await
        .unwrap();

    // 500 heart-rate + 500 steps points per slice, 64 slices per batch.
    let job = Uuid::new_v4();
    let mut batches = Vec::new();
    for b in 0..40 {
        let batch: Vec<WriterCommand> = (0..64)
            .map(|i| {
                let p = &participants[i % participants.len()];
                let start = at("2026-10-01T00:00:00Z").get()
                    + TimeDelta::minutes(500 * (b * 2 + i as i64 / 32));
                WriterCommand::StoreSlice(slice(job, p, &UtcInstant::new(start).to_text(), 500))
            })
            .collect();
        batches.push(batch);
    }
    let started = Instant::now();
    let mut rows = 0;
    for batch in &batches {
        rows += store.apply(batch).await.unwrap().rows_written();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{rows} intraday rows in {secs:.2} s: {:.0} rows/s ({} batches of 64 slices of 1000 points)",
        rows as f64 / secs,
        batches.len()
    );
}

/// A job that found no new device data still sends the re-read summaries of recent days, in an
/// empty slice at the cursor: they are stored, the cursor stays.
async fn an_empty_slice_stores_its_summaries_and_leaves_the_cursor(backend: Backend) {
    let (_dir, mut store) = open(backend).await;
    store
        .apply(&[import(Uuid::new_v4(), &[("p1", "sealed")])])
        .await
        .unwrap();
    let mut empty = slice(Uuid::new_v4(), "p1", "2026-10-01T00:00:00Z", 0);
    empty.daily.activity = vec![ActivityDay {
        date: NaiveDate::from_ymd_opt(2026, 9, 30).unwrap(),
        steps: Some(1234),
        ..Default::default()
    }];
    store
        .apply(&[WriterCommand::StoreSlice(empty)])
        .await
        .unwrap();
    assert_eq!(count(&store, "activity_summary").await, 1);
    assert_eq!(count(&store, "sync_slices").await, 0);
    assert_eq!(
        column(&store, "sync_cursor", "p1").await.as_deref(),
        Some("2026-10-01T00:00:00Z")
    );
}

/// A worker rotated the refresh token, the rotation was committed, and the worker died: the
/// redelivered job still carries the old token, which the provider refuses. The writer sees the
/// stored token is newer and grants one retry with it instead of marking the participant.
async fn a_refused_token_that_was_rotated_since_is_retried_once_with_the_stored_one(
    backend: Backend,
) {
    let (_dir, mut store) = with_p1(backend).await;
    let job = Uuid::new_v4();
    grant(&mut store, request(job, "p1")).await;
    store
        .apply(&[WriterCommand::RotateCredential(CredentialRotation {
            job_id: job,
            participant_id: pid("p1"),
            sealed_refresh_token: sealed("sealed-2"),
            replaces: None,
            reply_to: None,
        })])
        .await
        .unwrap();
    let refused = |job_id, token: &str| {
        finish(
            job_id,
            "p1",
            Outcome::Failed {
                state: ParticipantState::NeedsReconsent,
                reason: "invalid_grant".into(),
                rejected_token: Some(sealed(token)),
            },
        )
    };
    let applied = store.apply(&[refused(job, "sealed-1")]).await.unwrap();
    let Effect::JobFinished {
        follow_up: Some(retry),
        ..
    } = &applied.effects[0]
    else {
        panic!("no retry: {:?}", applied.effects)
    };
    assert_eq!(retry.sealed_refresh_token, sealed("sealed-2"));
    assert_eq!(
        column(&store, "state", "p1").await.as_deref(),
        Some("active")
    );
    let holder = column(&store, "in_flight_job_id", "p1").await;
    assert_eq!(holder, Some(retry.job_id.to_string()));

    // The stored token is refused too: now the state is recorded, no second retry.
    let applied = store
        .apply(&[refused(retry.job_id, "sealed-2")])
        .await
        .unwrap();
    assert!(matches!(
        applied.effects[..],
        [Effect::JobFinished {
            follow_up: None,
            ..
        }]
    ));
    assert_eq!(
        column(&store, "state", "p1").await.as_deref(),
        Some("needs_reconsent")
    );
}

async fn intraday_denied_keeps_the_participant_syncing_with_a_reason(backend: Backend) {
    let (_dir, mut store) = with_p1(backend).await;
    let job = Uuid::new_v4();
    grant(&mut store, request(job, "p1")).await;
    let mut outcome = completed();
    if let Outcome::Completed {
        intraday_denied, ..
    } = &mut outcome
    {
        *intraday_denied = true;
    }
    store.apply(&[finish(job, "p1", outcome)]).await.unwrap();
    assert_eq!(
        column(&store, "state", "p1").await.as_deref(),
        Some("intraday_not_permitted")
    );
    // Still dispatched: the next request is granted.
    assert!(matches!(
        grant(&mut store, request(Uuid::new_v4(), "p1")).await,
        Effect::Granted(_)
    ));
}

/// A job's first slice carries the paired devices: one row per device and local day, replaced
/// by a later sync that day, a new row the next day, nothing written when nothing changed.
async fn device_snapshots_are_one_row_per_device_and_day(backend: Backend) {
    use fitlink_shared::families::PairedDevice;
    let (_dir, mut store) = with_p1(backend).await;
    let device = |level: i64, synced: &str| PairedDevice {
        device_id: "816713257".into(),
        battery: Some(if level > 25 { "High" } else { "Low" }.into()),
        battery_level: Some(level),
        device_version: Some("Charge 6".into()),
        device_type: Some("TRACKER".into()),
        last_sync_time: Some(at(synced)),
    };
    let day = |d: u32| NaiveDate::from_ymd_opt(2026, 10, d).unwrap();
    let mut s = slice(Uuid::new_v4(), "p1", "2026-10-01T00:00:00Z", 0);
    s.devices = Some(DeviceSnapshot {
        date: day(1),
        devices: vec![device(80, "2026-10-01T08:00:00Z")],
    });
    let first = store
        .apply(&[WriterCommand::StoreSlice(s.clone())])
        .await
        .unwrap();
    assert_eq!(first.rows.get("device"), Some(&1));
    let again = store
        .apply(&[WriterCommand::StoreSlice(s.clone())])
        .await
        .unwrap();
    assert_eq!(
        again.rows.get("device").copied().unwrap_or(0),
        0,
        "unchanged: nothing written"
    );

    // Later the same day the battery is lower: the day's row is replaced.
    s.devices = Some(DeviceSnapshot {
        date: day(1),
        devices: vec![device(20, "2026-10-01T20:00:00Z")],
    });
    store
        .apply(&[WriterCommand::StoreSlice(s.clone())])
        .await
        .unwrap();
    // The next day: a row of its own.
    s.devices = Some(DeviceSnapshot {
        date: day(2),
        devices: vec![device(5, "2026-10-01T20:00:00Z")],
    });
    store.apply(&[WriterCommand::StoreSlice(s)]).await.unwrap();

    let rows: Vec<(NaiveDate, String, i64, UtcInstant)> = fetch!(
        store.database().exec(),
        sqlx::query_as(
            "SELECT device_date, battery, battery_level, last_sync_time FROM device \
             WHERE participant_id = 'p1' AND device_id = '816713257' ORDER BY device_date",
        ),
        all
    )
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (day(1), "Low".into(), 20, at("2026-10-01T20:00:00Z")),
            (day(2), "Low".into(), 5, at("2026-10-01T20:00:00Z")),
        ]
    );
}

fitlink_shared::on_both_backends!(
    import_is_idempotent_and_a_new_consent_reactivates_without_moving_the_cursor,
    a_grant_claims_the_participant_and_carries_what_the_worker_needs,
    a_second_request_while_one_is_in_flight_is_not_granted,
    a_replay_that_names_the_job_in_flight_takes_over_its_claim,
    an_expired_lease_is_granted_again,
    a_redelivered_granted_request_publishes_the_same_job_again,
    a_participant_who_is_not_active_is_granted_only_when_forced,
    a_slice_stored_twice_is_stored_once,
    summaries_are_replaced_when_changed_and_untouched_when_not,
    device_snapshots_are_one_row_per_device_and_day,
    the_cursor_advances_contiguously_and_waits_at_a_gap,
    a_rotated_credential_is_stored,
    a_rotation_from_a_replaced_token_keeps_the_newer_one,
    a_completed_job_releases_the_claim_and_records_the_sync,
    a_deferred_job_keeps_the_claim_and_says_until_when,
    failed_and_dead_lettered_jobs_set_the_reason_and_release_the_claim,
    a_late_outcome_of_a_replaced_job_does_not_release_its_successor,
    an_unknown_participants_slice_is_a_dead_letter_that_changes_nothing,
    an_empty_slice_stores_its_summaries_and_leaves_the_cursor,
    a_refused_token_that_was_rotated_since_is_retried_once_with_the_stored_one,
    intraday_denied_keeps_the_participant_syncing_with_a_reason,
);
