//! Sleep logs (`/1.2/user/-/sleep/date/{start}/{end}.json`): sessions and their levels.
//!
//! The legacy API gives every time as a **local** time without an offset, so a session is read
//! in the participant's zone. A night that crosses a DST change is the hard case: in the
//! fall-back hour every local time denotes two instants. The levels tile the session (each
//! starts where the previous one ended), so they are read as a chain: an ambiguous level start
//! is the instant where the previous level ended, and the session's end is where its last
//! level ends, checked against the local `endTime`. A local time the clocks skipped
//! (spring-forward) denotes no instant and is refused as invalid provider data.

use chrono::{DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer};

use super::families::{DayRange, RangeFamily};
use super::parse::{count, json, whole};
use super::time::offset_seconds;
use super::wire::Num;
use crate::domain::UtcInstant;
use crate::errors::SyncError;
use crate::families::{SleepLevel, SleepSession};

/// The level names All of Us keeps (`sleep_level.level`); anything else is `unknown`.
const LEVELS: [&str; 7] = [
    "deep", "light", "rem", "wake", "asleep", "restless", "awake",
];

#[derive(Debug, Deserialize)]
struct SleepResponse {
    sleep: Vec<SleepLog>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SleepLog {
    date_of_sleep: NaiveDate,
    log_id: LogId,
    is_main_sleep: bool,
    start_time: String,
    end_time: String,
    /// Milliseconds.
    #[serde(default)]
    duration: Option<Num>,
    #[serde(default)]
    minutes_asleep: Option<Num>,
    #[serde(default)]
    minutes_awake: Option<Num>,
    #[serde(default)]
    minutes_after_wakeup: Option<Num>,
    #[serde(default)]
    time_in_bed: Option<Num>,
    #[serde(default)]
    levels: Option<Levels>,
}

/// `logId`, a JSON integer (read exactly: ids pass 2^53 in principle) or a string of digits.
#[derive(Debug)]
struct LogId(u64);

impl<'de> Deserialize<'de> for LogId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("logId must be a whole number"))?
        {
            Raw::Number(n) => Ok(LogId(n)),
            Raw::Text(t) => t
                .parse()
                .map(LogId)
                .map_err(|_| serde::de::Error::custom("logId must be a whole number")),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Levels {
    #[serde(default)]
    summary: LevelSummaries,
    /// The stages; `shortData` (short wakes inside them) is not a level of `sleep_level`.
    #[serde(default)]
    data: Vec<LevelItem>,
}

/// Only the levels the session has are listed; the classic `asleep` and `awake` minutes are
/// already `minutesAsleep` and `minutesAwake`.
#[derive(Debug, Default, Deserialize)]
struct LevelSummaries {
    #[serde(default)]
    deep: Option<LevelSummary>,
    #[serde(default)]
    light: Option<LevelSummary>,
    #[serde(default)]
    rem: Option<LevelSummary>,
    #[serde(default)]
    wake: Option<LevelSummary>,
    #[serde(default)]
    restless: Option<LevelSummary>,
}

#[derive(Debug, Deserialize)]
struct LevelSummary {
    minutes: Num,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LevelItem {
    date_time: String,
    level: String,
    seconds: Num,
}

/// The sleep logs of `range`, their local times read in `zone`, ordered by `sleep_date` and
/// start (the API lists the newest first).
pub fn parse_sleep_logs(
    body: &str,
    range: DayRange,
    zone: Tz,
) -> Result<Vec<SleepSession>, SyncError> {
    let what = RangeFamily::Sleep.what(range);
    let response: SleepResponse = json(&what, body)?;
    let mut sessions = response
        .sleep
        .into_iter()
        .map(|log| session(&what, log, zone))
        .collect::<Result<Vec<_>, _>>()?;
    sessions.sort_by_key(|s| (s.sleep_date, s.start));
    for s in &sessions {
        if !range.contains(s.sleep_date) {
            return Err(SyncError::invalid_data(format!(
                "{what}: log {} is of {}, outside the requested {range}",
                s.session_id, s.sleep_date
            )));
        }
    }
    let mut ids: Vec<&str> = sessions.iter().map(|s| s.session_id.as_str()).collect();
    ids.sort_unstable();
    if let Some(twice) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(SyncError::invalid_data(format!(
            "{what}: log {} is listed twice",
            twice[0]
        )));
    }
    Ok(sessions)
}

fn session(what: &str, log: SleepLog, zone: Tz) -> Result<SleepSession, SyncError> {
    let id = log.log_id.0.to_string();
    let what = &format!("{what}: log {id}");
    let start_local = local_time(what, "startTime", &log.start_time)?;
    let end_local = local_time(what, "endTime", &log.end_time)?;
    // Clocks show the session's first minute twice only on a fall-back night; the earlier
    // instant is the one a night that began before the change has.
    let start = instants(what, "startTime", zone, start_local)?[0];

    let levels = log.levels.unwrap_or(Levels {
        summary: LevelSummaries::default(),
        data: Vec::new(),
    });
    let mut chained = Vec::with_capacity(levels.data.len());
    let mut previous_end = start;
    for item in &levels.data {
        let local = local_time(what, "levels.data.dateTime", &item.date_time)?;
        let at = chain(
            instants(what, "levels.data.dateTime", zone, local)?,
            previous_end,
        );
        let seconds = whole(what, "levels.data.seconds", item.seconds)?;
        previous_end = later(what, at, TimeDelta::seconds(seconds))?;
        chained.push(SleepLevel {
            level: level_name(&item.level),
            start: UtcInstant::new(at),
            utc_offset_seconds: offset_seconds(Some(zone), at),
            duration_seconds: seconds,
        });
    }
    let end = if chained.is_empty() {
        let ms = log.duration.ok_or_else(|| {
            SyncError::invalid_data(format!(
                "{what}: the log has neither levels nor a duration, so its end cannot be placed in time"
            ))
        })?;
        later(
            what,
            start,
            TimeDelta::milliseconds(whole(what, "duration", ms)?),
        )?
    } else {
        previous_end
    };
    let end_wall = end.with_timezone(&zone).naive_local();
    if end_wall != end_local {
        return Err(SyncError::invalid_data(format!(
            "{what}: the levels (or duration) end at local {end_wall}, not at endTime {:?}",
            log.end_time
        )));
    }
    let summary = &levels.summary;
    let minutes = |field: &str, level: &Option<LevelSummary>| {
        level
            .as_ref()
            .map(|l| whole(what, &format!("levels.summary.{field}.minutes"), l.minutes))
            .transpose()
    };
    Ok(SleepSession {
        session_id: id,
        sleep_date: log.date_of_sleep,
        is_main_sleep: log.is_main_sleep,
        start: checked(what, start)?,
        start_utc_offset_seconds: offset_seconds(Some(zone), start),
        end: checked(what, end)?,
        end_utc_offset_seconds: offset_seconds(Some(zone), end),
        minute_in_bed: count(what, "timeInBed", log.time_in_bed)?,
        minute_asleep: count(what, "minutesAsleep", log.minutes_asleep)?,
        minute_after_wakeup: count(what, "minutesAfterWakeup", log.minutes_after_wakeup)?,
        minute_awake: count(what, "minutesAwake", log.minutes_awake)?,
        minute_restless: minutes("restless", &summary.restless)?,
        minute_deep: minutes("deep", &summary.deep)?,
        minute_light: minutes("light", &summary.light)?,
        minute_rem: minutes("rem", &summary.rem)?,
        minute_wake: minutes("wake", &summary.wake)?,
        levels: chained,
    })
}

/// A level's start among the instants its local time denotes: where the previous level ended
/// if that is one of them (levels are contiguous), else the first not before it, else the
/// earliest.
fn chain(candidates: Vec<DateTime<Utc>>, previous_end: DateTime<Utc>) -> DateTime<Utc> {
    candidates
        .iter()
        .copied()
        .find(|at| *at == previous_end)
        .or_else(|| candidates.iter().copied().find(|at| *at >= previous_end))
        .unwrap_or(candidates[0])
}

/// Every instant `local` denotes in `zone`, earliest first (one, or two in a fall-back hour).
fn instants(
    what: &str,
    field: &str,
    zone: Tz,
    local: NaiveDateTime,
) -> Result<Vec<DateTime<Utc>>, SyncError> {
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) => Ok(vec![at.with_timezone(&Utc)]),
        LocalResult::Ambiguous(a, b) => {
            let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
            Ok(vec![a.min(b), a.max(b)])
        }
        LocalResult::None => Err(SyncError::invalid_data(format!(
            "{what}: {field} {local} does not exist in {} (the clocks skipped it)",
            zone.name()
        ))),
    }
}

/// A local time `yyyy-MM-ddTHH:mm:ss.SSS` (the millis optional), in the years 0000-9999.
fn local_time(what: &str, field: &str, text: &str) -> Result<NaiveDateTime, SyncError> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .filter(|t| (0..=9999).contains(&t.year()))
        .ok_or_else(|| {
            SyncError::invalid_data(format!(
                "{what}: {field} {text:?} is not a local time like 2026-08-05T21:30:00.000"
            ))
        })
}

/// `at + length`; a length past the calendar is invalid data, not a panic.
fn later(what: &str, at: DateTime<Utc>, length: TimeDelta) -> Result<DateTime<Utc>, SyncError> {
    at.checked_add_signed(length).ok_or_else(|| {
        SyncError::invalid_data(format!(
            "{what}: a level or duration runs past the calendar"
        ))
    })
}

fn checked(what: &str, at: DateTime<Utc>) -> Result<UtcInstant, SyncError> {
    UtcInstant::checked(at).map_err(|e| SyncError::invalid_data(format!("{what}: {e}")))
}

fn level_name(given: &str) -> String {
    let name = given.trim().to_lowercase();
    if LEVELS.contains(&name.as_str()) {
        name
    } else {
        "unknown".to_owned()
    }
}
