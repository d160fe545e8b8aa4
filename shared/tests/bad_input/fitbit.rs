//! Legacy Fitbit responses: every parse function of `provider::fitbit::parse`, fed mutations of
//! the documented payloads in `tests/corpus/fitbit/ok/`, plus generated local times, intraday
//! time sequences and quota headers.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use fitlink_shared::config::HeartRateDetail;
use fitlink_shared::domain::{ParticipantState, Slice, UtcInstant};
use fitlink_shared::errors::SyncError;
use fitlink_shared::provider::fitbit::parse::*;
use fitlink_shared::provider::fitbit::{
    INTRADAY_DENIED_REASON, RATE_LIMIT_REMAINING, RATE_LIMIT_RESET,
};
use fitlink_shared::provider::{RequestBudget, Session};
use fitlink_shared::secret::Secret;
use proptest::prelude::*;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde_json::{Value, json};

use crate::mutate::{body, body_with, hostile_value};
use crate::{assert_invalid_data, config, is_truncated, permanent_state};

const DEVICES: &str = include_str!("../../../tests/corpus/fitbit/ok/devices.documented.json");
const PROFILE: &str = include_str!("../../../tests/corpus/fitbit/ok/profile.documented.json");
const SUMMARY: &str = include_str!("../../../tests/corpus/fitbit/ok/daily-summary.documented.json");
const HEART_DAY: &str = include_str!("../../../tests/corpus/fitbit/ok/heart-day.documented.json");
const HEART_1SEC: &str =
    include_str!("../../../tests/corpus/fitbit/ok/heart-intraday-1sec.across-midnight.json");
const HEART_1MIN: &str =
    include_str!("../../../tests/corpus/fitbit/ok/heart-intraday-1min.documented.json");
const STEPS: &str = include_str!("../../../tests/corpus/fitbit/ok/steps-intraday.zero-filled.json");
const TOKEN: &str = include_str!("../../../tests/corpus/fitbit/ok/token.documented.json");
const SLEEP: &str = include_str!("../../../tests/corpus/fitbit/ok/sleep.documented.json");
const SLEEP_FALL_BACK: &str =
    include_str!("../../../tests/corpus/fitbit/ok/sleep.fall-back-night.json");
const HRV: &str = include_str!("../../../tests/corpus/fitbit/ok/hrv.documented.json");
const SPO2: &str = include_str!("../../../tests/corpus/fitbit/ok/spo2.documented.json");
const BR: &str = include_str!("../../../tests/corpus/fitbit/ok/br.documented.json");
const TEMP: &str = include_str!("../../../tests/corpus/fitbit/ok/temp-skin.documented.json");
const AZM: &str = include_str!("../../../tests/corpus/fitbit/ok/azm.documented.json");

/// The refresh token the corpus's token answers reply to, and the tokens in them.
pub const SENT_REFRESH_TOKEN: &str =
    "0d9c5a1b7f3e2d4c6b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c";
const ACCESS_TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIyNkZXRkwifQ.c2lnbmF0dXJl";

/// The day the corpus's daily payloads are for.
pub fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()
}

/// The slice the corpus's intraday payloads are for: two hours across midnight UTC.
pub fn slice() -> Slice {
    Slice {
        start: UtcInstant::parse("2026-11-01T23:00:00Z").unwrap(),
        end: UtcInstant::parse("2026-11-02T01:00:00Z").unwrap(),
    }
}

pub fn window() -> Window {
    let windows = Window::cover(slice());
    assert_eq!(windows.len(), 1);
    windows[0]
}

/// The participant's zone for offsets and local times.
pub const ZONE: Tz = chrono_tz::America::New_York;

pub fn now() -> DateTime<Utc> {
    UtcInstant::parse("2026-11-01T12:00:00Z").unwrap().get()
}

/// Which series a corpus file of intraday data is, by its name's first part.
pub fn series(parser: &str) -> Option<IntradaySeries> {
    match parser {
        "heart-intraday-1sec" => Some(IntradaySeries::HeartRate(HeartRateDetail::OneSecond)),
        "heart-intraday-1min" => Some(IntradaySeries::HeartRate(HeartRateDetail::OneMinute)),
        "steps-intraday" => Some(IntradaySeries::Steps),
        _ => None,
    }
}

/// The days the corpus's range payloads are asked for: 100 days (the sleep maximum) from
/// 2026-08-01, so they hold the documented August nights and the fall-back night of 2026-11-01.
pub fn days() -> DayRange {
    DayRange {
        first: NaiveDate::from_ymd_opt(2026, 8, 1).unwrap(),
        last: NaiveDate::from_ymd_opt(2026, 11, 8).unwrap(),
    }
}

/// The range-family parser a corpus file's name starts with, run on `text` (sleep logs read in
/// [`ZONE`]): `None` for another parser. Accepted rows are checked to be what a writer can
/// store.
pub fn range_family(parser: &str, text: &str) -> Option<Result<String, SyncError>> {
    fn rows<T: std::fmt::Debug>(result: Result<Vec<T>, SyncError>) -> Result<String, SyncError> {
        result.map(|rows| format!("{} rows", rows.len()))
    }
    Some(match parser {
        "sleep" => parse_sleep_logs(text, days(), ZONE).map(|sessions| {
            sessions.iter().for_each(check_session);
            format!("{} sessions", sessions.len())
        }),
        "hrv" => rows(parse_heart_rate_variability(text, days())),
        "spo2" => rows(parse_oxygen_saturation(text, days())),
        "br" => rows(parse_breathing_rate(text, days())),
        "temp-skin" => rows(parse_skin_temperature(text, days())),
        "azm" => rows(parse_active_zone_minutes(text, days())),
        _ => return None,
    })
}

/// An accepted session: of a requested day, its levels tiling it from start to end, every
/// offset the zone's at that instant.
fn check_session(s: &fitlink_shared::families::SleepSession) {
    assert!(days().contains(s.sleep_date), "{s:?}");
    assert!(s.start <= s.end, "{s:?}");
    let offset = |at: UtcInstant| {
        use chrono::{Offset, TimeZone};
        ZONE.offset_from_utc_datetime(&at.get().naive_utc())
            .fix()
            .local_minus_utc()
    };
    assert_eq!(s.start_utc_offset_seconds, offset(s.start), "{s:?}");
    assert_eq!(s.end_utc_offset_seconds, offset(s.end), "{s:?}");
    let mut at = s.start.get();
    for level in &s.levels {
        assert_eq!(level.utc_offset_seconds, offset(level.start), "{level:?}");
        assert!(level.duration_seconds >= 0, "{level:?}");
        at = level.start.get() + chrono::TimeDelta::seconds(level.duration_seconds);
    }
    if !s.levels.is_empty() {
        assert_eq!(
            UtcInstant::new(at),
            s.end,
            "the levels end where the session ends"
        );
    }
}

fn doc(text: &str) -> Value {
    serde_json::from_str(text).expect("the seed is JSON")
}

fn zones() -> impl Strategy<Value = LocalZone> {
    prop_oneof![
        Just(LocalZone::Named(ZONE)),
        Just(LocalZone::Named(chrono_tz::Pacific::Kiritimati)),
        Just(LocalZone::Named(chrono_tz::UTC)),
        Just(LocalZone::Fixed(FixedOffset::west_opt(12 * 3600).unwrap())),
        Just(LocalZone::Fixed(FixedOffset::east_opt(14 * 3600).unwrap())),
    ]
}

/// What an accepted set of device sync times must be: one instant with a canonical text.
pub fn check_latest(result: Result<Option<DateTime<Utc>>, SyncError>) {
    match result {
        Ok(Some(at)) => assert!(UtcInstant::checked(at).is_ok(), "{at:?}"),
        Ok(None) => {}
        Err(e) => assert_invalid_data(&e),
    }
}

/// What accepted intraday points must be: inside the slice, counted, with the zone's offset.
pub fn check_points(
    series: IntradaySeries,
    result: Result<Vec<fitlink_shared::messages::IntradayPoint>, SyncError>,
) {
    match result {
        Ok(points) => {
            for p in points {
                assert!(
                    slice().start <= p.datetime && p.datetime < slice().end,
                    "{p:?}"
                );
                assert!(
                    p.value >= 0 && (series != IntradaySeries::Steps || p.value > 0),
                    "{p:?}"
                );
                assert_eq!(p.utc_offset_seconds, -5 * 3600, "{p:?}");
            }
        }
        Err(e) => assert_invalid_data(&e),
    }
}

/// A response's headers: any of the quota headers, with values from numbers to nonsense.
fn quota_headers() -> impl Strategy<Value = HeaderMap> {
    let value = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        (0u64..4000).prop_map(|n| n.to_string()),
        Just("18446744073709551615".to_owned()),
        Just("99999999999999999999".to_owned()),
        Just("-1".to_owned()),
        Just("+5".to_owned()),
        Just(" 0 ".to_owned()),
        Just(String::new()),
        Just("soon".to_owned()),
        Just("Wed, 21 Oct 2026 07:28:00 GMT".to_owned()),
    ];
    let name = prop_oneof![
        Just(HeaderName::from_static(RATE_LIMIT_REMAINING)),
        Just(HeaderName::from_static(RATE_LIMIT_RESET)),
        Just(RETRY_AFTER),
    ];
    prop::collection::vec((name, value), 0..4).prop_map(|pairs| {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(name, HeaderValue::from_str(&value).unwrap());
        }
        headers
    })
}

/// An error status, weighted toward the ones with their own meaning.
fn error_status() -> impl Strategy<Value = StatusCode> {
    prop_oneof![
        prop::sample::select(vec![
            400u16, 401, 403, 404, 408, 409, 410, 429, 500, 502, 503
        ]),
        400u16..600,
    ]
    .prop_map(|s| StatusCode::from_u16(s).unwrap())
}

/// An error body: Fitbit's form, the OAuth form, or HTML, mutated, holding the access token
/// somewhere at times (Fitbit quotes it: "Access token expired: <token>").
fn error_body() -> BoxedStrategy<String> {
    let values = prop_oneof![
        3 => hostile_value(),
        1 => Just(json!(ACCESS_TOKEN)),
        1 => Just(json!(format!("Access token expired: {ACCESS_TOKEN}"))),
        1 => Just(json!(SENT_REFRESH_TOKEN)),
        1 => prop::sample::select(vec!["expired_token", "invalid_token", "invalid_grant",
            "invalid_client", "insufficient_permissions", "insufficient_scope", "system"])
            .prop_map(|t| json!(t)),
    ]
    .boxed();
    prop_oneof![
        body_with(
            json!({"errors": [{"errorType": "expired_token", "message": "Access token expired: x"}], "success": false}),
            values.clone(),
        ),
        body_with(json!({"error": "invalid_grant", "error_description": "Refresh token invalid"}), values),
        Just(format!("<html><body>Access token expired: {ACCESS_TOKEN}</body></html>")),
    ]
    .boxed()
}

#[test]
fn the_seeds_are_accepted() {
    check_latest(
        parse_devices(DEVICES)
            .unwrap()
            .latest(LocalZone::Named(ZONE)),
    );
    parse_profile(PROFILE).unwrap().local_zone().unwrap();
    parse_daily_summary(SUMMARY, date()).unwrap();
    assert_eq!(parse_heart_day(HEART_DAY, date()).unwrap().0.len(), 4);
    for (seed, parser, count) in [
        (HEART_1SEC, "heart-intraday-1sec", 6),
        (HEART_1MIN, "heart-intraday-1min", 3),
        (STEPS, "steps-intraday", 2),
    ] {
        let series = series(parser).unwrap();
        let points = parse_intraday_dataset(seed, series, &window(), slice(), Some(ZONE)).unwrap();
        assert_eq!(points.len(), count, "{parser}");
    }
    parse_token_response(TOKEN, SENT_REFRESH_TOKEN, now()).unwrap();
    for (seed, parser, count) in [
        (SLEEP, "sleep", "1 sessions"),
        (SLEEP_FALL_BACK, "sleep", "1 sessions"),
        (HRV, "hrv", "2 rows"),
        (SPO2, "spo2", "2 rows"),
        (BR, "br", "2 rows"),
        (TEMP, "temp-skin", "2 rows"),
        (AZM, "azm", "2 rows"),
    ] {
        assert_eq!(
            range_family(parser, seed).unwrap().unwrap(),
            count,
            "{parser}"
        );
    }
}

proptest! {
    #![proptest_config(config(256))]

    /// Every range family's documented payload, mutated: rows a writer can store, or invalid
    /// data (never a panic, never a session whose levels do not tile it).
    #[test]
    fn range_families_are_storable_rows_or_invalid_data(
        (parser, body) in prop_oneof![
            body(doc(SLEEP)).prop_map(|b| ("sleep", b)),
            body(doc(SLEEP_FALL_BACK)).prop_map(|b| ("sleep", b)),
            body(doc(HRV)).prop_map(|b| ("hrv", b)),
            body(doc(SPO2)).prop_map(|b| ("spo2", b)),
            body(doc(BR)).prop_map(|b| ("br", b)),
            body(doc(TEMP)).prop_map(|b| ("temp-skin", b)),
            body(doc(AZM)).prop_map(|b| ("azm", b)),
        ],
    ) {
        if let Err(e) = range_family(parser, &body).unwrap() {
            assert_invalid_data(&e);
        }
    }

    #[test]
    fn device_sync_times_are_canonical_instants_or_invalid_data(
        body in body(doc(DEVICES)),
        zone in zones(),
    ) {
        check_latest(parse_devices(&body).and_then(|times| times.latest(zone)));
    }

    /// Any local time chrono can hold, in the form Fitbit sends, in any zone (this found the
    /// overflow near the end of chrono's range).
    #[test]
    fn any_local_sync_time_is_a_canonical_instant_or_invalid_data(
        seconds in NaiveDateTime::MIN.and_utc().timestamp()..=NaiveDateTime::MAX.and_utc().timestamp(),
        millis in 0u32..1000,
        zone in zones(),
    ) {
        let local = DateTime::from_timestamp(seconds, millis * 1_000_000).unwrap().naive_utc();
        let body = json!([{"lastSyncTime": local.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()}]);
        check_latest(parse_devices(&body.to_string()).unwrap().latest(zone));
    }

    #[test]
    fn profiles_place_local_times_or_are_invalid_data(body in body(doc(PROFILE))) {
        match parse_profile(&body) {
            Ok(profile) => {
                if let Err(e) = profile.local_zone() {
                    assert_invalid_data(&e);
                }
            }
            Err(e) => assert_invalid_data(&e),
        }
    }

    #[test]
    fn daily_summaries_are_non_negative_rows_or_invalid_data(body in body(doc(SUMMARY))) {
        match parse_daily_summary(&body, date()) {
            Ok(day) => {
                prop_assert_eq!(day.date, date());
                for v in [day.steps, day.floors].into_iter().flatten() {
                    prop_assert!(v >= 0);
                }
                for v in [day.distance, day.elevation, day.calories_out, day.activity_calories,
                    day.sedentary_minutes, day.lightly_active_minutes, day.fairly_active_minutes,
                    day.very_active_minutes].into_iter().flatten() {
                    prop_assert!(v >= 0.0 && v.is_finite());
                }
            }
            Err(e) => assert_invalid_data(&e),
        }
    }

    #[test]
    fn heart_days_are_known_zones_of_the_day_or_invalid_data(body in body(doc(HEART_DAY))) {
        match parse_heart_day(&body, date()) {
            Ok((zones, resting)) => {
                for z in zones {
                    prop_assert_eq!(z.date, date());
                    prop_assert!(["out of range", "fat burn", "cardio", "peak"].contains(&z.zone_name.as_str()));
                }
                for r in resting {
                    prop_assert!(r.date == date() && r.resting_heart_rate >= 0);
                }
            }
            Err(e) => assert_invalid_data(&e),
        }
    }

    #[test]
    fn intraday_datasets_are_points_in_the_slice_or_invalid_data(
        (seed, parser) in prop::sample::select(vec![
            (HEART_1SEC, "heart-intraday-1sec"),
            (HEART_1MIN, "heart-intraday-1min"),
            (STEPS, "steps-intraday"),
        ]).prop_flat_map(|(seed, parser)| (body(doc(seed)), Just(parser))),
    ) {
        let series = series(parser).unwrap();
        check_points(series, parse_intraday_dataset(&seed, series, &window(), slice(), Some(ZONE)));
    }

    /// Times of day in any order (backwards once across midnight is fine, twice is not).
    #[test]
    fn any_sequence_of_times_is_points_in_the_slice_or_invalid_data(
        times in prop::collection::vec((0u32..25, 0u32..61, 0u32..61), 0..20),
    ) {
        let dataset: Vec<Value> = times
            .iter()
            .map(|(h, m, s)| json!({"time": format!("{h:02}:{m:02}:{s:02}"), "value": 60}))
            .collect();
        let body = json!({"activities-heart-intraday": {"dataset": dataset, "datasetType": "second"}});
        let series = IntradaySeries::HeartRate(HeartRateDetail::OneSecond);
        check_points(series, parse_intraday_dataset(&body.to_string(), series, &window(), slice(), Some(ZONE)));
    }

    /// A refresh token that reaches an answer is spent: the answer must give the rotated one
    /// unless it truly lacks it, and never quote the spent one.
    #[test]
    fn token_answers_are_grants_or_classified_and_never_quote_the_sent_token(
        body in body_with(doc(TOKEN), prop_oneof![
            4 => hostile_value(),
            1 => Just(json!(SENT_REFRESH_TOKEN)),
        ].boxed()),
    ) {
        match parse_token_response(&body, SENT_REFRESH_TOKEN, now()) {
            Ok(grant) => prop_assert!(grant.rotated_refresh_token.is_none_or(|t| t.expose() != SENT_REFRESH_TOKEN)),
            Err(e) => {
                prop_assert!(!e.to_string().contains(SENT_REFRESH_TOKEN), "{e}");
                prop_assert!(is_truncated(&e) || matches!(
                    permanent_state(&e),
                    Some(ParticipantState::ProviderDataInvalid | ParticipantState::ScopeMissing)
                ), "{e:?}");
            }
        }
    }

    /// The status decides the class, the body only adds (redacted) detail.
    #[test]
    fn data_errors_are_classified_by_status_and_never_quote_the_token(
        status in error_status(),
        headers in quota_headers(),
        body in error_body(),
        kind in prop_oneof![Just(PathKind::Data), Just(PathKind::Daily), Just(PathKind::Intraday)],
    ) {
        let refusal = classify_data_error("get devices", status, &headers, &redact(&body, &[ACCESS_TOKEN]), kind);
        let text = format!("{refusal:?}");
        prop_assert!(!text.contains(ACCESS_TOKEN), "{text}");
        match (status.as_u16(), refusal) {
            (403, Refusal::IntradayDenied(reason)) if kind == PathKind::Intraday => {
                prop_assert!(reason.starts_with(INTRADAY_DENIED_REASON));
            }
            // Only that family is lost: the reason says which request was refused.
            (403, Refusal::FamilyDenied(reason)) if kind == PathKind::Daily => {
                prop_assert!(reason.starts_with("get devices: HTTP 403"), "{reason}");
            }
            (_, Refusal::IntradayDenied(reason) | Refusal::FamilyDenied(reason)) => {
                prop_assert!(false, "{status} on {kind:?}: {reason}")
            }
            (status, Refusal::Error(e)) => check_status_class(status, &e, |e| match status {
                401 => e.is_transient() || permanent_state(e) == Some(ParticipantState::Revoked),
                403 => permanent_state(e) == Some(ParticipantState::ScopeMissing),
                _ => permanent_state(e) == Some(ParticipantState::ProviderDataInvalid),
            }),
        }
    }

    #[test]
    fn token_errors_are_classified_by_status_and_never_quote_the_tokens(
        status in error_status(),
        headers in quota_headers(),
        body in error_body(),
    ) {
        let error = classify_token_error(status, &headers, &redact(&body, &[SENT_REFRESH_TOKEN]));
        prop_assert!(!error.to_string().contains(SENT_REFRESH_TOKEN), "{error}");
        check_status_class(status.as_u16(), &error, |e| {
            e.is_transient() || permanent_state(e) == Some(ParticipantState::NeedsReconsent)
        });
    }

    /// A spent quota resets within the hour, whatever the headers say, and the session can
    /// hold it (a huge `Fitbit-Rate-Limit-Reset` panicked there).
    #[test]
    fn quota_headers_give_a_reset_within_the_hour(
        status in error_status(),
        headers in quota_headers(),
    ) {
        let session = Session::new(Secret::new(String::new()), RequestBudget::new(1, Duration::from_secs(1)));
        match parse_quota(status, &headers) {
            Quota::SpentFor(wait) => {
                prop_assert!(wait <= Duration::from_secs(3600));
                session.set_quota_spent(Some(wait));
            }
            Quota::Left => prop_assert!(status != StatusCode::TOO_MANY_REQUESTS),
            Quota::Unknown => {}
        }
    }

    /// Known secrets never survive redaction, wherever they sit in the text.
    #[test]
    fn redaction_removes_every_known_secret(
        secret in "[A-Za-z0-9._-]{3,40}[0-9]",
        before in ".{0,40}",
        after in ".{0,40}",
    ) {
        let text = format!("{before}{secret}{after}{secret}");
        prop_assert!(!redact(&text, &[&secret]).contains(&secret));
    }
}

/// The classes a failed request's status gives on both paths: 410 retired, 429 rate limited
/// until within the hour, 5xx and 408 transient; other statuses what `other_ok` accepts.
fn check_status_class(status: u16, error: &SyncError, other_ok: impl Fn(&SyncError) -> bool) {
    match status {
        410 => assert_eq!(
            permanent_state(error),
            Some(ParticipantState::NeedsReconsent)
        ),
        429 => match error {
            SyncError::RateLimited { retry_after, .. } => {
                assert!(
                    retry_after.is_some_and(|d| d <= Duration::from_secs(3600)),
                    "{error:?}"
                );
            }
            other => panic!("429: {other:?}"),
        },
        408 | 500..=599 => assert!(error.is_transient(), "{status}: {error:?}"),
        _ => assert!(other_ok(error), "{status}: {error:?}"),
    }
}
