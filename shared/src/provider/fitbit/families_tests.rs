//! The range families (sleep logs, nightly metrics, active zone minutes): the documented
//! payloads of `docs/data-families.md` (kept in `tests/corpus/fitbit/ok/`), DST nights, refused
//! shapes, and on the wire (an in-test server): paths, inclusive ranges, chunks and per-family
//! refusals.

use chrono::TimeDelta;
use chrono_tz::Tz;

use super::parse::*;
use super::tests::{Reply, Seen, args, assert_permanent, date, serve, session};
use super::*;
use crate::domain::UtcInstant;
use crate::families::{
    ActiveZoneMinutesDay, BreathingRateDay, HeartRateVariabilityDay, OxygenSaturationDay,
    SkinTemperatureDay, SleepLevel, SleepSession,
};

macro_rules! corpus {
    ($name:literal) => {
        include_str!(concat!("../../../../tests/corpus/fitbit/", $name))
    };
}

const SLEEP: &str = corpus!("ok/sleep.documented.json");
const NAP: &str = corpus!("ok/sleep.classic-nap.json");
const FALL_BACK: &str = corpus!("ok/sleep.fall-back-night.json");
const SPRING_GAP: &str = corpus!("families/sleep.spring-forward-gap.json");
const HRV: &str = corpus!("ok/hrv.documented.json");
const SPO2: &str = corpus!("ok/spo2.documented.json");
const BR: &str = corpus!("ok/br.documented.json");
const TEMP: &str = corpus!("ok/temp-skin.documented.json");
const AZM: &str = corpus!("ok/azm.documented.json");

const NEW_YORK: Tz = chrono_tz::America::New_York;

fn range(first: &str, last: &str) -> DayRange {
    DayRange {
        first: date(first),
        last: date(last),
    }
}

fn august() -> DayRange {
    range("2026-08-01", "2026-08-30")
}

fn at(text: &str) -> UtcInstant {
    UtcInstant::parse(text).unwrap()
}

/// (level, start, offset, seconds) of each level.
fn levels(session: &SleepSession) -> Vec<(&str, String, i32, i64)> {
    session
        .levels
        .iter()
        .map(|l: &SleepLevel| {
            (
                l.level.as_str(),
                l.start.to_text(),
                l.utc_offset_seconds,
                l.duration_seconds,
            )
        })
        .collect()
}

#[track_caller]
fn invalid(result: Result<impl std::fmt::Debug, SyncError>, named: &str) {
    let reason = assert_permanent(&result.unwrap_err(), ParticipantState::ProviderDataInvalid);
    assert!(reason.contains(named), "{reason:?} should name {named:?}");
}

#[test]
fn the_documented_sleep_log_crosses_midnight_in_the_participants_zone() {
    let sessions = parse_sleep_logs(SLEEP, august(), NEW_YORK).unwrap();
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(s.session_id, "26013218219");
    assert_eq!(s.sleep_date, date("2026-08-06"));
    assert!(s.is_main_sleep);
    // 21:30 EDT on the 5th is 01:30Z on the 6th, as the Google example says.
    assert_eq!(s.start, at("2026-08-06T01:30:00Z"));
    assert_eq!(s.end, at("2026-08-06T11:07:00Z"));
    assert_eq!(
        (s.start_utc_offset_seconds, s.end_utc_offset_seconds),
        (-14400, -14400)
    );
    assert_eq!(
        (
            s.minute_in_bed,
            s.minute_asleep,
            s.minute_awake,
            s.minute_after_wakeup
        ),
        (Some(577), Some(421), Some(53), Some(0))
    );
    assert_eq!(
        (s.minute_deep, s.minute_light, s.minute_rem, s.minute_wake),
        (Some(104), Some(243), Some(74), Some(53))
    );
    assert_eq!(s.minute_restless, None, "a stages session has no restless");
    // The stages, not the short wakes.
    assert_eq!(s.levels.len(), 11);
    assert_eq!(
        levels(s)[..2],
        [
            ("wake", "2026-08-06T01:30:00Z".to_owned(), -14400, 150),
            ("light", "2026-08-06T01:32:30Z".to_owned(), -14400, 1800),
        ]
    );
    assert_eq!(
        levels(s)[5],
        ("light", "2026-08-06T04:22:30Z".to_owned(), -14400, 7200),
        "the level after midnight is on the next day"
    );
}

#[test]
fn a_classic_nap_keeps_its_level_names_and_has_no_stage_minutes() {
    let s = &parse_sleep_logs(NAP, august(), NEW_YORK).unwrap()[0];
    assert!(!s.is_main_sleep);
    assert_eq!(s.session_id, "26013218220");
    assert_eq!(
        (s.start, s.end),
        (at("2026-08-06T18:10:00Z"), at("2026-08-06T18:55:00Z"))
    );
    assert_eq!(
        s.levels
            .iter()
            .map(|l| l.level.as_str())
            .collect::<Vec<_>>(),
        ["awake", "asleep", "restless", "asleep", "awake"]
    );
    assert_eq!(s.minute_restless, Some(2));
    assert_eq!(
        (s.minute_deep, s.minute_light, s.minute_rem, s.minute_wake),
        (None, None, None, None)
    );
    assert_eq!((s.minute_asleep, s.minute_awake), (Some(41), Some(4)));
}

#[test]
fn a_fall_back_night_chains_its_levels_through_the_repeated_hour() {
    // New York, 2026-11-01: 01:00-01:59 EDT, then 01:00-01:59 EST. "01:16" is a level start in
    // both: first where the restless level ended (EDT), then an hour later (EST).
    let s = &parse_sleep_logs(FALL_BACK, range("2026-11-01", "2026-11-01"), NEW_YORK).unwrap()[0];
    assert_eq!(s.start, at("2026-11-01T03:40:00Z"));
    assert_eq!(s.end, at("2026-11-01T11:10:00Z"));
    assert_eq!(
        (s.start_utc_offset_seconds, s.end_utc_offset_seconds),
        (-14400, -18000)
    );
    let edt = -14400;
    let est = -18000;
    assert_eq!(
        levels(s),
        [
            ("awake", "2026-11-01T03:40:00Z".to_owned(), edt, 120),
            ("asleep", "2026-11-01T03:42:00Z".to_owned(), edt, 5400),
            ("restless", "2026-11-01T05:12:00Z".to_owned(), edt, 240),
            ("asleep", "2026-11-01T05:16:00Z".to_owned(), edt, 3600),
            ("awake", "2026-11-01T06:16:00Z".to_owned(), est, 180),
            ("asleep", "2026-11-01T06:19:00Z".to_owned(), est, 17460),
        ]
    );
    // Levels tile the session: each starts where the previous one ended.
    for pair in s.levels.windows(2) {
        let end = pair[0].start.get() + TimeDelta::seconds(pair[0].duration_seconds);
        assert_eq!(end, pair[1].start.get());
    }
}

#[test]
fn a_local_time_the_clocks_skipped_is_refused() {
    invalid(
        parse_sleep_logs(SPRING_GAP, range("2026-03-08", "2026-03-08"), NEW_YORK),
        "2026-03-08 02:30:00 does not exist in America/New_York",
    );
}

#[test]
fn a_log_without_levels_ends_after_its_duration_checked_against_its_end_time() {
    let mut log: serde_json::Value = serde_json::from_str(NAP).unwrap();
    log["sleep"][0]["levels"] = serde_json::Value::Null;
    let s = &parse_sleep_logs(&log.to_string(), august(), NEW_YORK).unwrap()[0];
    assert_eq!(s.end, at("2026-08-06T18:55:00Z"));
    assert!(s.levels.is_empty() && s.minute_restless.is_none());
    log["sleep"][0]["duration"] = serde_json::json!(2_760_000);
    invalid(
        parse_sleep_logs(&log.to_string(), august(), NEW_YORK),
        "endTime \"2026-08-06T14:55:00.000\"",
    );
}

#[test]
fn sleep_logs_of_the_wrong_shape_are_refused_naming_the_problem() {
    let doc: serde_json::Value = serde_json::from_str(SLEEP).unwrap();
    let with = |pointer: &str, value: serde_json::Value| {
        let mut d = doc.clone();
        *d.pointer_mut(pointer).unwrap() = value;
        d.to_string()
    };
    use serde_json::json;
    for (body, named) in [
        (
            with("/sleep/0/endTime", json!("2026-08-06T08:07:00.000")),
            "not at endTime",
        ),
        (
            with("/sleep/0/startTime", json!("2026-08-05T21:30:00Z")),
            "startTime",
        ),
        (
            with("/sleep/0/levels/data/3/seconds", json!(-1)),
            "levels.data.seconds",
        ),
        (
            with("/sleep/0/levels/data/3/dateTime", json!("23:02")),
            "levels.data.dateTime",
        ),
        (
            with("/sleep/0/logId", json!("log-1")),
            "documented JSON shape",
        ),
        (
            with("/sleep/0/dateOfSleep", json!("2026-09-06")),
            "outside the requested",
        ),
        (with("/sleep/0/minutesAsleep", json!(-5)), "minutesAsleep"),
        (with("/sleep", json!({})), "documented JSON shape"),
        ("[]".to_owned(), "documented JSON shape"),
    ] {
        invalid(parse_sleep_logs(&body, august(), NEW_YORK), named);
    }
    let mut twice = doc.clone();
    twice["sleep"]
        .as_array_mut()
        .unwrap()
        .push(doc["sleep"][0].clone());
    invalid(
        parse_sleep_logs(&twice.to_string(), august(), NEW_YORK),
        "26013218219 is listed twice",
    );
}

#[test]
fn unknown_level_names_are_unknown_and_sessions_come_oldest_first() {
    let mut nap: serde_json::Value = serde_json::from_str(NAP).unwrap();
    nap["sleep"][0]["levels"]["data"][2]["level"] = serde_json::json!("Snoring");
    let main: serde_json::Value = serde_json::from_str(SLEEP).unwrap();
    // The API lists the newest first.
    let both = serde_json::json!({"sleep": [nap["sleep"][0], main["sleep"][0]]});
    let sessions = parse_sleep_logs(&both.to_string(), august(), NEW_YORK).unwrap();
    assert_eq!(
        sessions
            .iter()
            .map(|s| s.session_id.as_str())
            .collect::<Vec<_>>(),
        ["26013218219", "26013218220"]
    );
    assert_eq!(sessions[1].levels[2].level, "unknown");
}

#[test]
fn the_documented_nightly_metrics_become_rows() {
    assert_eq!(
        parse_heart_rate_variability(HRV, august()).unwrap(),
        [
            HeartRateVariabilityDay {
                date: date("2026-08-06"),
                daily_rmssd: Some(34.9),
                deep_rmssd: Some(31.6)
            },
            HeartRateVariabilityDay {
                date: date("2026-08-07"),
                daily_rmssd: Some(62.887),
                deep_rmssd: Some(64.887)
            },
        ]
    );
    assert_eq!(
        parse_oxygen_saturation(SPO2, august()).unwrap()[0],
        OxygenSaturationDay {
            date: date("2026-08-06"),
            average: Some(96.4),
            lower_bound: Some(92.0),
            upper_bound: Some(99.0)
        }
    );
    assert_eq!(
        parse_breathing_rate(BR, august()).unwrap()[0],
        BreathingRateDay {
            date: date("2026-08-06"),
            breathing_rate: 15.8
        }
    );
    assert_eq!(
        parse_skin_temperature(TEMP, august()).unwrap()[0],
        SkinTemperatureDay {
            date: date("2026-08-06"),
            nightly_relative: -0.3
        }
    );
    assert_eq!(
        parse_active_zone_minutes(AZM, august()).unwrap(),
        [
            // Members of 0 are absent.
            ActiveZoneMinutesDay {
                date: date("2026-08-06"),
                fat_burn: 41,
                cardio: 10,
                peak: 0,
                total: 51
            },
            ActiveZoneMinutesDay {
                date: date("2026-08-07"),
                fat_burn: 20,
                cardio: 60,
                peak: 32,
                total: 112
            },
        ]
    );
}

#[test]
fn spo2_of_a_single_day_may_be_an_object_or_empty() {
    let one = r#"{"dateTime":"2026-08-06","value":{"avg":96.4,"min":92.0,"max":99.0}}"#;
    assert_eq!(parse_oxygen_saturation(one, august()).unwrap().len(), 1);
    assert!(parse_oxygen_saturation("{}", august()).unwrap().is_empty());
    invalid(
        parse_oxygen_saturation(r#"{"dateTime":"2026-08-06"}"#, august()),
        "documented JSON shape",
    );
}

#[test]
fn nightly_metrics_of_the_wrong_shape_or_day_are_refused() {
    invalid(
        parse_heart_rate_variability(
            r#"{"hrv":[{"dateTime":"2026-07-31","value":{}}]}"#,
            august(),
        ),
        "2026-07-31 outside the requested 2026-08-01..=2026-08-30",
    );
    invalid(
        parse_breathing_rate(r#"{"br":[{"dateTime":"2026-08-06","value":{}}]}"#, august()),
        "documented JSON shape",
    );
    invalid(
        parse_breathing_rate(
            r#"{"br":[{"dateTime":"2026-08-06","value":[15.8]}]}"#,
            august(),
        ),
        "documented JSON shape",
    );
    invalid(
        parse_skin_temperature(r#"{"temp":[]}"#, august()),
        "documented JSON shape",
    );
    invalid(
        parse_oxygen_saturation(
            r#"[{"dateTime":"2026-08-06","value":{"avg":-96.4}}]"#,
            august(),
        ),
        "value.avg",
    );
    invalid(
        parse_active_zone_minutes(
            r#"{"activities-active-zone-minutes":[{"dateTime":"2026-08-06","value":{"activeZoneMinutes":1}},{"dateTime":"2026-08-06","value":{}}]}"#,
            august(),
        ),
        "2026-08-06 twice",
    );
    invalid(
        parse_active_zone_minutes(
            r#"{"activities-active-zone-minutes":[{"dateTime":"2026-08-06","value":{"peakActiveZoneMinutes":-2}}]}"#,
            august(),
        ),
        "value.peakActiveZoneMinutes",
    );
}

#[test]
fn ranges_are_inclusive_and_no_longer_than_the_endpoint_allows() {
    let days = date("2026-08-01")..date("2026-09-15"); // 45 days
    assert_eq!(
        DayRange::chunks(&days, 30),
        [
            range("2026-08-01", "2026-08-30"),
            range("2026-08-31", "2026-09-14")
        ]
    );
    assert_eq!(
        DayRange::chunks(&days, 100),
        [range("2026-08-01", "2026-09-14")]
    );
    assert!(DayRange::chunks(&(date("2026-08-01")..date("2026-08-01")), 30).is_empty());
    assert_eq!(
        RangeFamily::Sleep.path(range("2026-08-01", "2026-08-07")),
        "/1.2/user/-/sleep/date/2026-08-01/2026-08-07.json"
    );
    assert_eq!(
        RangeFamily::SkinTemperature.path(range("2026-08-01", "2026-08-07")),
        "temp/skin/date/2026-08-01/2026-08-07.json"
    );
}

// ---------------------------------------------------------------------------------------------
// On the wire.

/// A day's activity and heart answers, and empty range answers: a participant with nothing.
pub(super) fn empty(seen: &Seen) -> Reply {
    let path = seen.path.as_str();
    let body = if path.contains("/sleep/") {
        r#"{"sleep":[],"summary":{"totalMinutesAsleep":0,"totalSleepRecords":0,"totalTimeInBed":0}}"#
    } else if path.contains("/hrv/") {
        r#"{"hrv":[]}"#
    } else if path.contains("/spo2/") {
        "[]"
    } else if path.contains("/br/") {
        r#"{"br":[]}"#
    } else if path.contains("/temp/skin/") {
        r#"{"tempSkin":[]}"#
    } else if path.contains("/active-zone-minutes/") {
        r#"{"activities-active-zone-minutes":[]}"#
    } else if path.contains("/activities/heart/") {
        let day = path.split('/').nth(7).unwrap_or_default();
        return Reply::ok(format!(
            r#"{{"activities-heart":[{{"dateTime":"{day}","value":{{}}}}]}}"#
        ));
    } else if path.contains("/activities/date/") {
        r#"{"summary":{"steps":0}}"#
    } else {
        return Reply::new(404, format!("unexpected {path}"));
    };
    Reply::ok(body)
}

fn insufficient_scope(scope: &str) -> Reply {
    Reply::new(
        403,
        super::tests::fitbit_error(
            "insufficient_scope",
            &format!("This application does not have permission to access {scope} data."),
        ),
    )
}

#[tokio::test]
async fn every_range_family_is_one_request_per_inclusive_range_within_its_maximum() {
    let (base, mock) = serve(|seen| match seen.path.as_str() {
        "/1.2/user/-/sleep/date/2026-08-01/2026-09-14.json" => Reply::ok(SLEEP),
        "/1/user/-/hrv/date/2026-08-01/2026-08-30.json" => Reply::ok(HRV),
        "/1/user/-/spo2/date/2026-08-01/2026-08-30.json" => Reply::ok(SPO2),
        "/1/user/-/br/date/2026-08-01/2026-08-30.json" => Reply::ok(BR),
        "/1/user/-/temp/skin/date/2026-08-01/2026-08-30.json" => Reply::ok(TEMP),
        "/1/user/-/activities/active-zone-minutes/date/2026-08-01/2026-09-14.json" => {
            Reply::ok(AZM)
        }
        _ => empty(seen),
    })
    .await;
    let days = date("2026-08-01")..date("2026-09-15");
    let out = FitbitClient::new(&args(&base))
        .daily_families(&session(Some(NEW_YORK)), days)
        .await
        .unwrap();
    let paths = mock.paths();
    assert_eq!(paths.len(), 45 * 2 + 1 + 2 * 4 + 1, "{paths:#?}");
    let ranges: Vec<&str> = paths[90..].iter().map(String::as_str).collect();
    assert_eq!(
        ranges,
        [
            "/1.2/user/-/sleep/date/2026-08-01/2026-09-14.json",
            "/1/user/-/hrv/date/2026-08-01/2026-08-30.json",
            "/1/user/-/hrv/date/2026-08-31/2026-09-14.json",
            "/1/user/-/spo2/date/2026-08-01/2026-08-30.json",
            "/1/user/-/spo2/date/2026-08-31/2026-09-14.json",
            "/1/user/-/br/date/2026-08-01/2026-08-30.json",
            "/1/user/-/br/date/2026-08-31/2026-09-14.json",
            "/1/user/-/temp/skin/date/2026-08-01/2026-08-30.json",
            "/1/user/-/temp/skin/date/2026-08-31/2026-09-14.json",
            "/1/user/-/activities/active-zone-minutes/date/2026-08-01/2026-09-14.json",
        ]
    );
    assert!(mock.seen().iter().all(|s| s.query.is_empty()));
    assert_eq!(out.activity.len(), 45);
    assert_eq!(out.sleep.len(), 1);
    assert_eq!(out.sleep[0].start, at("2026-08-06T01:30:00Z"));
    assert_eq!(out.heart_rate_variability.len(), 2);
    assert_eq!(out.oxygen_saturation.len(), 2);
    assert_eq!(out.breathing_rate.len(), 2);
    assert_eq!(out.skin_temperature.len(), 2);
    assert_eq!(out.active_zone_minutes[1].total, 112);
    assert!(out.not_permitted.is_empty());
}

#[tokio::test]
async fn a_family_without_its_scope_is_not_permitted_and_the_others_go_on() {
    let (base, mock) = serve(|seen| {
        if seen.path.contains("/sleep/") {
            insufficient_scope("sleep")
        } else if seen.path.contains("/activities/heart/") {
            insufficient_scope("heartrate")
        } else if seen.path.contains("/hrv/date/2026-08-05/") {
            Reply::ok(HRV)
        } else {
            empty(seen)
        }
    })
    .await;
    let client = FitbitClient::new(&args(&base));
    let session = session(Some(NEW_YORK));
    let out = client
        .daily_families(&session, date("2026-08-05")..date("2026-08-08"))
        .await
        .unwrap();
    assert!(out.sleep.is_empty() && out.heart_rate_zones.is_empty());
    assert_eq!(out.activity.len(), 3);
    assert_eq!(out.heart_rate_variability.len(), 2);
    assert_eq!(
        out.not_permitted.keys().copied().collect::<Vec<_>>(),
        [
            Family::HeartRateZones,
            Family::RestingHeartRate,
            Family::Sleep
        ]
    );
    assert!(out.not_permitted[&Family::Sleep].contains("insufficient_scope"));
    let heart_requests = |mock: &super::tests::Mock| {
        mock.paths()
            .iter()
            .filter(|p| p.contains("/activities/heart/"))
            .count()
    };
    assert_eq!(
        heart_requests(&mock),
        1,
        "a denied family is not asked again"
    );
    // Nor in the next call of the same session.
    let again = client
        .daily_families(&session, date("2026-08-08")..date("2026-08-09"))
        .await
        .unwrap();
    assert_eq!(heart_requests(&mock), 1);
    assert!(
        !mock
            .paths()
            .iter()
            .any(|p| p.contains("sleep/date/2026-08-08"))
    );
    assert!(again.not_permitted.contains_key(&Family::Sleep));
}

#[tokio::test]
async fn other_failures_of_a_range_family_still_fail_the_call() {
    let (base, _mock) = serve(|seen| {
        if seen.path.contains("/br/") {
            Reply::new(
                400,
                super::tests::fitbit_error("validation", "The date range must not exceed 30 days."),
            )
        } else {
            empty(seen)
        }
    })
    .await;
    let err = FitbitClient::new(&args(&base))
        .daily_families(&session(None), date("2026-08-05")..date("2026-08-06"))
        .await
        .unwrap_err();
    assert!(
        assert_permanent(&err, ParticipantState::ProviderDataInvalid)
            .contains("get breathing rate 2026-08-05..=2026-08-05")
    );
}
