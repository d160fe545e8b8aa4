use chrono::NaiveDate;

use super::*;
use crate::domain::ParticipantState;

const DOCUMENTED: &str =
    include_str!("../../../../tests/corpus/google/ok/sleep.documented-page.json");
const CLASSIC_NAP: &str =
    include_str!("../../../../tests/corpus/google/ok/sleep.classic-nap-omitted-zeros.json");

fn at(text: &str) -> UtcInstant {
    UtcInstant::parse(text).unwrap()
}

fn level(level: &str, start: &str, offset: i32, seconds: i64) -> SleepLevel {
    SleepLevel {
        level: level.to_owned(),
        start: at(start),
        utc_offset_seconds: offset,
        duration_seconds: seconds,
    }
}

/// The reason of an invalid-data refusal.
fn refusal(body: &str) -> String {
    match parse_sleep_page(body) {
        Err(SyncError::Permanent {
            state: ParticipantState::ProviderDataInvalid,
            reason,
        }) => reason,
        other => panic!("not refused as invalid data: {other:?}"),
    }
}

#[test]
fn the_documented_session_maps_every_field() {
    let page = parse_sleep_page(DOCUMENTED).unwrap();
    assert_eq!(
        page.next_page_token.as_deref(),
        Some("CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA0YmQ")
    );
    assert_eq!(
        page.items,
        vec![SleepSession {
            session_id: "7821966286120953736".to_owned(),
            sleep_date: NaiveDate::from_ymd_opt(2026, 8, 6).unwrap(),
            is_main_sleep: true,
            start: at("2026-08-06T01:30:00Z"),
            start_utc_offset_seconds: -14400,
            end: at("2026-08-06T11:07:00Z"),
            end_utc_offset_seconds: -14400,
            minute_in_bed: Some(577),
            minute_asleep: Some(421),
            minute_after_wakeup: Some(0),
            minute_awake: Some(53),
            minute_restless: None,
            minute_deep: None,
            minute_light: Some(243),
            minute_rem: None,
            minute_wake: None,
            levels: vec![level("wake", "2026-08-06T01:30:00Z", -14400, 150)],
        }]
    );
}

#[test]
fn a_classic_nap_has_classic_levels_in_order_and_omitted_zeros_read_as_zero() {
    let page = parse_sleep_page(CLASSIC_NAP).unwrap();
    assert_eq!(page.next_page_token, None, "an empty token ends the list");
    let nap = &page.items[0];
    assert!(!nap.is_main_sleep, "metadata.nap");
    assert_eq!(
        nap.levels,
        vec![
            level("awake", "2026-11-01T19:40:00Z", -18000, 120),
            level("asleep", "2026-11-01T19:42:00Z", -18000, 1200),
            level("restless", "2026-11-01T20:02:00Z", -18000, 180),
        ]
    );
    // Classic `awake` and `asleep` are already minutesAwake / minutesAsleep; only restless has
    // a column of its own, and the stages columns stay NULL.
    assert_eq!(
        (nap.minute_asleep, nap.minute_awake, nap.minute_restless),
        (Some(20), Some(5), Some(3))
    );
    assert_eq!(
        (nap.minute_wake, nap.minute_deep, nap.minute_light),
        (None, None, None)
    );
    assert_eq!(nap.minute_after_wakeup, Some(0), "omitted: zero");
}

#[test]
fn a_night_across_the_change_of_offset_keeps_each_stages_offset() {
    let night = &parse_sleep_page(CLASSIC_NAP).unwrap().items[1];
    assert!(night.is_main_sleep, "mainSleep wins over nap");
    assert_eq!(
        night.sleep_date,
        NaiveDate::from_ymd_opt(2026, 11, 1).unwrap()
    );
    assert_eq!(
        (night.start_utc_offset_seconds, night.end_utc_offset_seconds),
        (-14400, -18000)
    );
    assert_eq!(
        night.levels,
        vec![
            level("deep", "2026-11-01T04:00:00Z", -14400, 9000),
            level("rem", "2026-11-01T06:30:00Z", -18000, 19800),
        ]
    );
    // No summary at all: nothing is known about the minutes.
    assert_eq!((night.minute_in_bed, night.minute_deep), (None, None));
}

#[test]
fn stage_types_outside_the_sessions_kind_are_unknown() {
    let body = r#"{"dataPoints":[{"name":"users/me/dataTypes/sleep/dataPoints/9",
        "sleep":{"interval":{"startTime":"2026-08-06T01:00:00Z","startUtcOffset":"0s",
        "endTime":"2026-08-06T02:00:00Z","endUtcOffset":"0s",
        "civilEndTime":{"date":{"year":2026,"month":8,"day":6}}},
        "stages":[{"startTime":"2026-08-06T01:00:00Z","startUtcOffset":"0s",
        "endTime":"2026-08-06T02:00:00Z","endUtcOffset":"0s","type":"AWAKE"}],
        "summary":{"stagesSummary":[{"type":"AWAKE","minutes":"60"}]}}}]}"#;
    let session = &parse_sleep_page(body).unwrap().items[0];
    assert_eq!(session.levels[0].level, "unknown");
    assert!(session.is_main_sleep, "no metadata: not a nap");
    assert_eq!(session.minute_wake, None);
}

#[test]
fn sessions_of_the_wrong_shape_are_refused_naming_the_problem() {
    let session = |interval: &str, stages: &str| {
        format!(
            r#"{{"dataPoints":[{{"name":"users/me/dataTypes/sleep/dataPoints/42",
            "sleep":{{"interval":{interval},"type":"STAGES","stages":{stages},
            "summary":{{"minutesAsleep":"-5"}}}}}}]}}"#
        )
    };
    let interval = r#"{"startTime":"2026-08-06T01:30:00Z","startUtcOffset":"-14400s",
        "endTime":"2026-08-06T11:07:00Z","endUtcOffset":"-14400s",
        "civilEndTime":{"date":{"year":2026,"month":8,"day":6}}}"#;
    let backwards = r#"[{"startTime":"2026-08-06T01:32:30Z","startUtcOffset":"-14400s",
        "endTime":"2026-08-06T01:30:00Z","endUtcOffset":"-14400s","type":"AWAKE"}]"#;
    let reason = refusal(&session(interval, backwards));
    assert!(
        reason.contains("session 42") && reason.contains("before it starts"),
        "{reason}"
    );
    let reason = refusal(&session(interval, "[]"));
    assert!(reason.contains("minutesAsleep is -5"), "{reason}");
    let no_offsets = r#"{"startTime":"2026-08-06T01:30:00Z","endTime":"2026-08-06T11:07:00Z",
        "civilEndTime":{"date":{"year":2026,"month":8,"day":6}}}"#;
    assert!(refusal(&session(no_offsets, "[]")).contains("startUtcOffset"));
    let far = interval.replacen("-14400s", "-86400s", 1);
    assert!(refusal(&session(&far, "[]")).contains("not a UTC offset"));
    let month_13 = interval.replace("\"month\":8", "\"month\":13");
    assert!(refusal(&session(&month_13, "[]")).contains("not a calendar date"));
    assert!(refusal(r#"{"dataPoints":{"name":"x"}}"#).contains("documented JSON shape"));
    let nameless = DOCUMENTED.replace("dataPoints/7821966286120953736", "dataPoints/");
    assert!(refusal(&nameless).contains("names no session"));
}
