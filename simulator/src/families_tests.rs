//! End-to-end tests of the families of `docs/data-families.md` on both providers: what a
//! client parses from the served JSON equals [`crate::truth`].

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::tests::{Sim, date, start};
use crate::truth::{self, SleepLevel, SleepSession};
use crate::{SimConfig, roster};

/// 13 participants (sim-0013's battery dies) over two weeks containing the US DST end.
fn config() -> SimConfig {
    SimConfig {
        participants: 13,
        days: 14,
        ..SimConfig::default()
    }
}

fn zone(config: &SimConfig, id: &str) -> Tz {
    roster(config)
        .into_iter()
        .find(|p| p.participant_id == id)
        .unwrap()
        .time_zone
}

fn int(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        other => other.as_i64().unwrap(),
    }
}

fn instant(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn offset(v: &Value) -> i32 {
    v.as_str().unwrap().trim_end_matches('s').parse().unwrap()
}

fn civil_date(v: &Value) -> NaiveDate {
    let d = &v["date"];
    NaiveDate::from_ymd_opt(
        d["year"].as_i64().unwrap() as i32,
        d["month"].as_u64().unwrap() as u32,
        d["day"].as_u64().unwrap() as u32,
    )
    .unwrap()
}

/// A Google `sleep` point as the client reads it (docs/data-families.md).
fn google_session(point: &Value) -> SleepSession {
    let sleep = &point["sleep"];
    let stages = sleep["type"] == "STAGES";
    let level = |t: &str| match (stages, t) {
        (true, "AWAKE") => "wake",
        (false, "AWAKE") => "awake",
        (_, other) => match other {
            "LIGHT" => "light",
            "DEEP" => "deep",
            "REM" => "rem",
            "ASLEEP" => "asleep",
            "RESTLESS" => "restless",
            _ => "unknown",
        },
    };
    let summary = &sleep["summary"];
    let minutes = |t: &str| {
        summary["stagesSummary"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["type"] == t)
            .map(|s| int(&s["minutes"]))
    };
    let i = &sleep["interval"];
    SleepSession {
        session_id: point["name"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned(),
        sleep_date: civil_date(&i["civilEndTime"]),
        is_main_sleep: !sleep["metadata"]["nap"].as_bool().unwrap(),
        start: instant(&i["startTime"]),
        start_utc_offset_seconds: offset(&i["startUtcOffset"]),
        end: instant(&i["endTime"]),
        end_utc_offset_seconds: offset(&i["endUtcOffset"]),
        minute_in_bed: int(&summary["minutesInSleepPeriod"]),
        minute_asleep: int(&summary["minutesAsleep"]),
        minute_after_wakeup: int(&summary["minutesAfterWakeUp"]),
        minute_awake: int(&summary["minutesAwake"]),
        minute_restless: minutes("RESTLESS"),
        minute_deep: minutes("DEEP"),
        minute_light: minutes("LIGHT"),
        minute_rem: minutes("REM"),
        minute_wake: if stages { minutes("AWAKE") } else { None },
        levels: sleep["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| SleepLevel {
                level: level(s["type"].as_str().unwrap()).to_owned(),
                start: instant(&s["startTime"]),
                utc_offset_seconds: offset(&s["startUtcOffset"]),
                duration_seconds: (instant(&s["endTime"]) - instant(&s["startTime"])).num_seconds(),
            })
            .collect(),
    }
}

fn local_time(v: &Value) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(v.as_str().unwrap(), "%Y-%m-%dT%H:%M:%S%.3f").unwrap()
}

/// A local time in `tz`: the earlier instant of an ambiguous one unless the later keeps
/// the levels contiguous (`after` is where the previous level ended).
fn resolve(tz: Tz, wall: NaiveDateTime, after: Option<DateTime<Utc>>) -> DateTime<Utc> {
    match tz.from_local_datetime(&wall) {
        chrono::LocalResult::Single(t) => t.with_timezone(&Utc),
        chrono::LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
            if after == Some(b) { b } else { a }
        }
        chrono::LocalResult::None => panic!("non-existent local time {wall}"),
    }
}

fn utc_offset(tz: Tz, t: DateTime<Utc>) -> i32 {
    use chrono::Offset;
    tz.offset_from_utc_datetime(&t.naive_utc())
        .fix()
        .local_minus_utc()
}

/// A legacy sleep log as the client reads it.
fn legacy_session(tz: Tz, log: &Value) -> SleepSession {
    let summary = &log["levels"]["summary"];
    let minutes = |k: &str| summary.get(k).map(|s| s["minutes"].as_i64().unwrap());
    let stages = log["type"] == "stages";
    let mut levels: Vec<SleepLevel> = Vec::new();
    for d in log["levels"]["data"].as_array().unwrap() {
        let after = levels
            .last()
            .map(|l| l.start + Duration::seconds(l.duration_seconds));
        let start = resolve(tz, local_time(&d["dateTime"]), after);
        levels.push(SleepLevel {
            level: d["level"].as_str().unwrap().to_owned(),
            start,
            utc_offset_seconds: utc_offset(tz, start),
            duration_seconds: d["seconds"].as_i64().unwrap(),
        });
    }
    let start = resolve(tz, local_time(&log["startTime"]), None);
    let end = resolve(tz, local_time(&log["endTime"]), None);
    assert_eq!(
        log["duration"].as_i64().unwrap(),
        (end - start).num_milliseconds()
    );
    SleepSession {
        session_id: log["logId"].as_u64().unwrap().to_string(),
        sleep_date: log["dateOfSleep"].as_str().unwrap().parse().unwrap(),
        is_main_sleep: log["isMainSleep"].as_bool().unwrap(),
        start,
        start_utc_offset_seconds: utc_offset(tz, start),
        end,
        end_utc_offset_seconds: utc_offset(tz, end),
        minute_in_bed: log["timeInBed"].as_i64().unwrap(),
        minute_asleep: log["minutesAsleep"].as_i64().unwrap(),
        minute_after_wakeup: log["minutesAfterWakeup"].as_i64().unwrap(),
        minute_awake: log["minutesAwake"].as_i64().unwrap(),
        minute_restless: if stages { None } else { minutes("restless") },
        minute_deep: minutes("deep"),
        minute_light: minutes("light"),
        minute_rem: minutes("rem"),
        minute_wake: minutes("wake"),
        levels,
    }
}

/// Truth sessions over `dates`, newest first (the providers' order).
fn truth_sessions(
    config: &SimConfig,
    id: &str,
    dates: &[NaiveDate],
    restated: &[(NaiveDate, u32)],
) -> Vec<SleepSession> {
    let version = |d: NaiveDate| {
        restated
            .iter()
            .find(|(r, _)| *r == d)
            .map_or(0, |(_, v)| *v)
    };
    let mut out: Vec<SleepSession> = dates
        .iter()
        .flat_map(|d| truth::sleep_sessions(config, id, *d, version(*d)))
        .collect();
    out.sort_by_key(|s| std::cmp::Reverse(s.start));
    out
}

fn sleep_filter(first: NaiveDate, end: NaiveDate) -> String {
    format!(
        "sleep.interval.civil_end_time >= \"{first}T00:00:00\" AND sleep.interval.civil_end_time < \"{end}T00:00:00\""
    )
}

impl Sim {
    async fn google_sleep(
        &self,
        token: &str,
        first: NaiveDate,
        last: NaiveDate,
        size: usize,
    ) -> (Vec<SleepSession>, usize) {
        let filter = sleep_filter(first, last.succ_opt().unwrap());
        let (points, pages) = self.list_all(token, "sleep", &filter, size).await;
        (points.iter().map(google_session).collect(), pages)
    }

    async fn legacy_sleep(
        &self,
        token: &str,
        tz: Tz,
        first: NaiveDate,
        last: NaiveDate,
    ) -> Vec<SleepSession> {
        let r = self
            .fitbit(
                &format!("/1.2/user/-/sleep/date/{first}/{last}.json"),
                token,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let logs = r.body["sleep"].as_array().unwrap();
        assert_eq!(r.body["summary"]["totalSleepRecords"], logs.len());
        logs.iter().map(|l| legacy_session(tz, l)).collect()
    }
}

#[tokio::test]
async fn sleep_on_both_providers_equals_truth() {
    let c = config();
    let sim = start(c.clone()).await;
    // New York; its fall-back night (2026-11-01) is a classic one.
    let id = "sim-0008";
    let tz = zone(&c, id);
    let dates = truth::sleep_dates(&c, id);
    let (first, last) = (dates[0], *dates.last().unwrap());
    let expected = truth_sessions(&c, id, &dates, &[]);
    assert!(expected.len() > 10);

    let token = sim.access(id).await;
    let (google, pages) = sim.google_sleep(&token, first, last, 4).await;
    assert!(pages > 3, "{pages}");
    assert_eq!(google, expected);
    let fitbit = sim.fitbit_access(id).await;
    assert_eq!(sim.legacy_sleep(&fitbit, tz, first, last).await, expected);

    // Levels tile every session.
    for s in &expected {
        assert_eq!(s.levels[0].start, s.start);
        let mut at = s.start;
        for l in &s.levels {
            assert_eq!(l.start, at);
            at += Duration::seconds(l.duration_seconds);
        }
        assert_eq!(at, s.end);
    }
    // The New York fall-back night crosses midnight and the DST change.
    let dst = expected
        .iter()
        .find(|s| s.sleep_date == date("2026-11-01") && s.is_main_sleep)
        .unwrap();
    assert_eq!(
        (dst.start_utc_offset_seconds, dst.end_utc_offset_seconds),
        (-14_400, -18_000)
    );
    assert!(dst.levels.iter().any(|l| l.utc_offset_seconds == -14_400));
    assert!(dst.levels.iter().any(|l| l.utc_offset_seconds == -18_000));
    assert!(expected.iter().any(|s| s.is_main_sleep
        && (s.start + Duration::seconds(i64::from(s.start_utc_offset_seconds))).date_naive()
            < s.sleep_date));
}

#[tokio::test]
async fn naps_missing_nights_restatement_and_deletion() {
    let c = config();
    let sim = start(c.clone()).await;
    // A participant with a nap beside a main sleep and a night without a session.
    let mut found = None;
    'search: for i in 1..=12 {
        let id = format!("sim-{i:04}");
        let dates = truth::sleep_dates(&c, &id);
        for d in &dates[1..dates.len() - 1] {
            let s = truth::sleep_sessions(&c, &id, *d, 0);
            if s.len() == 2
                && dates
                    .iter()
                    .any(|d| truth::sleep_sessions(&c, &id, *d, 0).is_empty())
            {
                found = Some((id, *d));
                break 'search;
            }
        }
    }
    let (id, nap_date) = found.expect("a nap beside a main sleep");
    let tz = zone(&c, &id);
    let token = sim.access(&id).await;
    let fitbit = sim.fitbit_access(&id).await;
    let (google, _) = sim.google_sleep(&token, nap_date, nap_date, 25).await;
    assert_eq!(google.len(), 2);
    assert_eq!(google.iter().filter(|s| s.is_main_sleep).count(), 1);
    let nap = google.iter().find(|s| !s.is_main_sleep).unwrap();
    assert!(nap.minute_restless.is_some() && nap.minute_deep.is_none());

    // Restating the day lengthens the main sleep and keeps its id.
    let main = google.iter().find(|s| s.is_main_sleep).unwrap().clone();
    let v = sim
        .control(
            &format!("participants/{id}/restate"),
            &json!({"date": nap_date}),
        )
        .await;
    assert_eq!(v["version"], 1);
    let (after, _) = sim.google_sleep(&token, nap_date, nap_date, 25).await;
    let restated = after.iter().find(|s| s.is_main_sleep).unwrap();
    assert_eq!(restated.session_id, main.session_id);
    assert_eq!(restated.end - main.end, Duration::minutes(10));
    assert_eq!(restated.minute_in_bed, main.minute_in_bed + 10);
    assert_eq!(
        after,
        truth_sessions(&c, &id, &[nap_date], &[(nap_date, 1)])
    );
    let legacy = sim.legacy_sleep(&fitbit, tz, nap_date, nap_date).await;
    assert_eq!(legacy, after);

    // Deleting the nap at the provider removes it from both APIs and from the truth.
    let at = nap.end;
    let reply = sim
        .control(
            &format!("participants/{id}/delete-data"),
            &json!({"data_type": "sleep", "start": at - Duration::minutes(1), "end": at + Duration::minutes(1)}),
        )
        .await;
    assert_eq!(reply["data_type"], "sleep");
    let mut c2 = c.clone();
    c2.deletions = serde_json::from_value(sim.control_get("deletions").await).unwrap();
    let expected = truth_sessions(&c2, &id, &[nap_date], &[(nap_date, 1)]);
    assert_eq!(expected.len(), 1);
    assert!(expected[0].is_main_sleep);
    let (google, _) = sim.google_sleep(&token, nap_date, nap_date, 25).await;
    assert_eq!(google, expected);
    assert_eq!(
        sim.legacy_sleep(&fitbit, tz, nap_date, nap_date).await,
        expected
    );
    // Nightly metrics do not depend on sleep deletions.
    assert!(truth::breathing_rate(&c2, &id, nap_date, 1).is_some());
}

mod metrics;
