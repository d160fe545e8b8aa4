//! `list` of the session and nightly families (`docs/data-families.md`): `sleep` and the
//! `daily-*` nightly metrics. Their points are identifiable (`name`), unlike the intraday
//! ones, and generated per local date, so a page is built from every date of the data
//! window, filtered, newest first.
//!
//! Page cursors: sleep pages continue below the start (Unix seconds) of the last session
//! returned, daily pages below the last date (days from the common era).

use chrono::{Datelike, NaiveDate, NaiveTime};
use serde_json::{Map, Value, json};

use crate::catalog::DataType;
use crate::clock::{ceil_secs, duration_secs, from_unix, rfc3339};
use crate::config::IntradayType;
use crate::filter::Bounds;
use crate::generator::{Nightly, Profile, SleepKind, SleepSession, Window};
use crate::state::Snapshot;
use crate::wire::{DataSource, Date, ObservationTimeInterval};

/// A page request of one of these families.
pub(super) struct Page<'a> {
    pub profile: &'a Profile,
    pub window: Window,
    pub snap: &'a Snapshot,
    pub bounds: &'a Bounds,
    pub cursor: Option<i64>,
    pub size: usize,
}

/// The page of `dt` as `(points, cursor of the next page)`, or `None` when `dt` is not
/// one of these families.
pub(super) fn list(dt: &DataType, page: &Page<'_>) -> Option<(Vec<Value>, Option<i64>)> {
    match dt.kebab {
        "sleep" => Some(sleep(page)),
        "daily-heart-rate-variability"
        | "daily-oxygen-saturation"
        | "daily-respiratory-rate"
        | "daily-sleep-temperature-derivations" => Some(nightly(dt, page)),
        _ => None,
    }
}

/// Keeps the first `size` of `items` (newest first) and the cursor of the next page.
fn paginate<T>(items: Vec<T>, size: usize, key: impl Fn(&T) -> i64) -> (Vec<T>, Option<i64>) {
    let more = items.len() > size;
    let mut items = items;
    items.truncate(size);
    let next = if more { items.last().map(key) } else { None };
    (items, next)
}

fn wire_type(kind: SleepKind, level: &str) -> &'static str {
    match (kind, level) {
        (_, "deep") => "DEEP",
        (_, "light") => "LIGHT",
        (_, "rem") => "REM",
        (_, "asleep") => "ASLEEP",
        (_, "restless") => "RESTLESS",
        _ => "AWAKE",
    }
}

fn sleep(page: &Page<'_>) -> (Vec<Value>, Option<i64>) {
    let p = page.profile;
    let b = page.bounds;
    let lo = b.physical_lo.map(ceil_secs);
    let hi = b.physical_hi.map(ceil_secs);
    let gone = |end: i64| page.snap.deleted(IntradayType::Sleep, end);
    let mut sessions: Vec<SleepSession> = p
        .sleep_dates(page.window)
        .into_iter()
        .flat_map(|d| p.sleep_sessions(page.window, d, page.snap.restate_version(d), &gone))
        .filter(|s| {
            b.civil_ok(p.wall_at(s.end))
                && lo.is_none_or(|lo| s.end >= lo)
                && hi.is_none_or(|hi| s.end < hi)
                && page.cursor.is_none_or(|c| s.start < c)
        })
        .collect();
    sessions.sort_by_key(|s| std::cmp::Reverse(s.start));
    let (sessions, next) = paginate(sessions, page.size, |s| s.start);
    (sessions.iter().map(|s| sleep_point(p, s)).collect(), next)
}

/// One `sleep` data point.
pub(crate) fn sleep_point(p: &Profile, s: &SleepSession) -> Value {
    let interval = |a: i64, z: i64| {
        ObservationTimeInterval::new(
            from_unix(a),
            p.offset_at(a),
            from_unix(z),
            p.offset_at(z),
            p.wall_at(a),
            p.wall_at(z),
        )
    };
    let stages: Vec<Value> = s
        .stages
        .iter()
        .map(|l| {
            let end = l.start + l.secs;
            json!({
                "startTime": rfc3339(from_unix(l.start)),
                "startUtcOffset": duration_secs(i64::from(p.offset_at(l.start))),
                "endTime": rfc3339(from_unix(end)),
                "endUtcOffset": duration_secs(i64::from(p.offset_at(end))),
                "type": wire_type(s.kind, l.level),
            })
        })
        .collect();
    let summary: Vec<Value> = s
        .level_names()
        .iter()
        .filter_map(|l| {
            s.level_minutes(l).map(|m| {
                json!({
                    "type": wire_type(s.kind, l),
                    "minutes": m.to_string(),
                    "count": s.level_count(l).to_string(),
                })
            })
        })
        .collect();
    let mut metadata = json!({"processed": true, "nap": !s.main, "manuallyEdited": false});
    if s.kind == SleepKind::Stages {
        metadata["stagesStatus"] = json!("SUCCEEDED");
    }
    json!({
        "name": format!("users/me/dataTypes/sleep/dataPoints/{}", s.id),
        "dataSource": DataSource::fitbit("DERIVED", p.tracker),
        "sleep": {
            "interval": interval(s.start, s.end),
            "type": if s.kind == SleepKind::Stages { "STAGES" } else { "CLASSIC" },
            "stages": stages,
            "metadata": metadata,
            "summary": {
                "minutesInSleepPeriod": s.minutes_in_bed().to_string(),
                "minutesAsleep": s.minutes_asleep().to_string(),
                "minutesAwake": s.minutes_awake().to_string(),
                "minutesToFallAsleep": "0",
                "minutesAfterWakeUp": "0",
                "stagesSummary": summary,
            },
        },
    })
}

/// The union value of a nightly type for one night, `None` when the night lacks it.
fn nightly_value(kebab: &str, n: &Nightly) -> Option<Map<String, Value>> {
    let mut m = Map::new();
    m.insert("date".into(), json!(Date::from(n.date)));
    match kebab {
        "daily-heart-rate-variability" => {
            let (daily, deep) = n.hrv?;
            m.insert(
                "averageHeartRateVariabilityMilliseconds".into(),
                json!(daily),
            );
            m.insert(
                "deepSleepRootMeanSquareOfSuccessiveDifferencesMilliseconds".into(),
                json!(deep),
            );
        }
        "daily-oxygen-saturation" => {
            let s = n.spo2?;
            m.insert("averagePercentage".into(), json!(s.average));
            m.insert("lowerBoundPercentage".into(), json!(s.lower));
            m.insert("upperBoundPercentage".into(), json!(s.upper));
            m.insert("standardDeviationPercentage".into(), json!(s.stddev));
        }
        "daily-respiratory-rate" => {
            m.insert("breathsPerMinute".into(), json!(n.breathing?));
        }
        _ => {
            let t = n.skin?;
            m.insert("nightlyTemperatureCelsius".into(), json!(t.nightly));
            // proto3 JSON writes a NaN double as the string "NaN".
            let baseline = t.baseline.map_or(json!("NaN"), |b| json!(b));
            m.insert("baselineTemperatureCelsius".into(), baseline);
            m.insert("relativeNightlyStddev30dCelsius".into(), json!(t.stddev));
        }
    }
    Some(m)
}

fn nightly(dt: &DataType, page: &Page<'_>) -> (Vec<Value>, Option<i64>) {
    let p = page.profile;
    let day_key = |d: &NaiveDate| i64::from(d.num_days_from_ce());
    let mut nights: Vec<(NaiveDate, Map<String, Value>)> = p
        .sleep_dates(page.window)
        .into_iter()
        .filter(|d| {
            page.bounds.civil_ok(d.and_time(NaiveTime::MIN))
                && page.cursor.is_none_or(|c| day_key(d) < c)
        })
        .filter_map(|d| {
            let n = p.nightly(page.window, d, page.snap.restate_version(d))?;
            Some((d, nightly_value(dt.kebab, &n)?))
        })
        .collect();
    nights.reverse();
    let (nights, next) = paginate(nights, page.size, |(d, _)| day_key(d));
    let points = nights
        .into_iter()
        .map(|(d, value)| {
            let mut point = Map::new();
            point.insert(
                "name".into(),
                json!(format!(
                    "users/me/dataTypes/{}/dataPoints/{}",
                    dt.kebab,
                    d.format("%Y%m%d")
                )),
            );
            point.insert(
                "dataSource".into(),
                json!(DataSource::fitbit("DERIVED", p.tracker)),
            );
            point.insert(dt.camel(), Value::Object(value));
            Value::Object(point)
        })
        .collect();
    (points, next)
}
