//! `list sleep`, parsed: a page of sessions in, [`SleepSession`]s with their levels out
//! (`docs/data-families.md`, "Sleep").
//!
//! A session keeps the provider's id (the last segment of its `name`), so a session Google
//! restates later replaces the stored one instead of standing beside it.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::parse::{Page, civil_date, json, next_page};
use super::wire::{CivilDateTime, GoogleDuration, Int64, ListResponse};
use crate::domain::UtcInstant;
use crate::errors::SyncError;
use crate::families::{SleepLevel, SleepSession};

const WHAT: &str = "list sleep";

/// The widest UTC offset a zone has ever had is 14 h; 18 h is what RFC 3339 allows.
const MAX_OFFSET_SECONDS: f64 = 18.0 * 3600.0;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SleepPoint {
    /// `users/me/dataTypes/sleep/dataPoints/{id}`.
    name: String,
    sleep: Sleep,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Sleep {
    interval: SessionInterval,
    /// `STAGES`, `CLASSIC` or `SLEEP_TYPE_UNSPECIFIED` (also when absent).
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    stages: Vec<Stage>,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    summary: Option<Summary>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SessionInterval {
    start_time: DateTime<Utc>,
    start_utc_offset: GoogleDuration,
    end_time: DateTime<Utc>,
    end_utc_offset: GoogleDuration,
    civil_end_time: CivilDateTime,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stage {
    start_time: DateTime<Utc>,
    start_utc_offset: GoogleDuration,
    end_time: DateTime<Utc>,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    nap: bool,
    /// v4beta only; the v4 schema says `nap` alone.
    #[serde(default)]
    main_sleep: Option<bool>,
}

/// Proto3-JSON omits a zero member, so a member missing from a summary that is there is 0.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    #[serde(default)]
    minutes_in_sleep_period: Int64,
    #[serde(default)]
    minutes_asleep: Int64,
    #[serde(default)]
    minutes_awake: Int64,
    #[serde(default)]
    minutes_after_wake_up: Int64,
    #[serde(default)]
    stages_summary: Vec<StageSummary>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StageSummary {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    minutes: Int64,
}

/// The `sleep_level` name of a stage: what `AWAKE` means depends on the kind of session
/// (a STAGES session's `wake`, a CLASSIC session's `awake`).
fn level(session_kind: &str, stage_kind: &str) -> &'static str {
    match (session_kind, stage_kind) {
        ("STAGES", "AWAKE") => "wake",
        ("STAGES", "LIGHT") => "light",
        ("STAGES", "DEEP") => "deep",
        ("STAGES", "REM") => "rem",
        ("CLASSIC", "AWAKE") => "awake",
        ("CLASSIC", "RESTLESS") => "restless",
        ("CLASSIC", "ASLEEP") => "asleep",
        _ => "unknown",
    }
}

fn instant(id: &str, member: &str, at: DateTime<Utc>) -> Result<UtcInstant, SyncError> {
    UtcInstant::checked(at).map_err(|_| {
        SyncError::invalid_data(format!(
            "{WHAT}: session {id}: {member} {at:?} is outside the years 0000-9999"
        ))
    })
}

fn offset(id: &str, member: &str, offset: GoogleDuration) -> Result<i32, SyncError> {
    if offset.0.abs() > MAX_OFFSET_SECONDS {
        return Err(SyncError::invalid_data(format!(
            "{WHAT}: session {id}: {member} {}s is not a UTC offset",
            offset.0
        )));
    }
    Ok(offset.whole_seconds())
}

fn minutes(id: &str, member: &str, value: Int64) -> Result<i64, SyncError> {
    if value.0 < 0 {
        return Err(SyncError::invalid_data(format!(
            "{WHAT}: session {id}: {member} is {} minutes",
            value.0
        )));
    }
    Ok(value.0)
}

/// Seconds from `start` to `end`, refused when the interval runs backwards.
fn duration(id: &str, member: &str, start: UtcInstant, end: UtcInstant) -> Result<i64, SyncError> {
    let seconds = (end.get() - start.get()).num_seconds();
    if seconds < 0 {
        return Err(SyncError::invalid_data(format!(
            "{WHAT}: session {id}: {member} ends at {end} before it starts at {start}"
        )));
    }
    Ok(seconds)
}

fn sleep_level(id: &str, session_kind: &str, stage: Stage) -> Result<SleepLevel, SyncError> {
    let start = instant(id, "stage startTime", stage.start_time)?;
    let end = instant(id, "stage endTime", stage.end_time)?;
    Ok(SleepLevel {
        level: level(session_kind, &stage.kind).to_owned(),
        start,
        utc_offset_seconds: offset(id, "stage startUtcOffset", stage.start_utc_offset)?,
        duration_seconds: duration(id, "a stage", start, end)?,
    })
}

fn session(point: SleepPoint) -> Result<SleepSession, SyncError> {
    let id = point
        .name
        .rsplit('/')
        .next()
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            SyncError::invalid_data(format!(
                "{WHAT}: data point name {:?} names no session",
                point.name
            ))
        })?
        .to_owned();
    let sleep = point.sleep;
    let interval = sleep.interval;
    let start = instant(&id, "startTime", interval.start_time)?;
    let end = instant(&id, "endTime", interval.end_time)?;
    duration(&id, "the session", start, end)?;
    let mut levels = sleep
        .stages
        .into_iter()
        .map(|stage| sleep_level(&id, &sleep.kind, stage))
        .collect::<Result<Vec<_>, _>>()?;
    levels.sort_by_key(|l| l.start);
    let mut row = SleepSession {
        sleep_date: civil_date(WHAT, interval.civil_end_time.date)?,
        is_main_sleep: sleep
            .metadata
            .as_ref()
            .is_none_or(|m| m.main_sleep.unwrap_or(!m.nap)),
        start,
        start_utc_offset_seconds: offset(&id, "startUtcOffset", interval.start_utc_offset)?,
        end,
        end_utc_offset_seconds: offset(&id, "endUtcOffset", interval.end_utc_offset)?,
        minute_in_bed: None,
        minute_asleep: None,
        minute_after_wakeup: None,
        minute_awake: None,
        minute_restless: None,
        minute_deep: None,
        minute_light: None,
        minute_rem: None,
        minute_wake: None,
        levels,
        session_id: id,
    };
    if let Some(summary) = sleep.summary {
        add_summary(&mut row, &sleep.kind, summary)?;
    }
    Ok(row)
}

/// The summary's minutes into `row`'s columns; a level the summary does not list stays
/// `None` (the session has no such level), unlike a zero the provider left out.
fn add_summary(row: &mut SleepSession, kind: &str, summary: Summary) -> Result<(), SyncError> {
    let id = row.session_id.clone();
    row.minute_in_bed = Some(minutes(
        &id,
        "minutesInSleepPeriod",
        summary.minutes_in_sleep_period,
    )?);
    row.minute_asleep = Some(minutes(&id, "minutesAsleep", summary.minutes_asleep)?);
    row.minute_awake = Some(minutes(&id, "minutesAwake", summary.minutes_awake)?);
    row.minute_after_wakeup = Some(minutes(
        &id,
        "minutesAfterWakeUp",
        summary.minutes_after_wake_up,
    )?);
    for stage in summary.stages_summary {
        let column = match (kind, stage.kind.as_str()) {
            (_, "DEEP") => &mut row.minute_deep,
            (_, "LIGHT") => &mut row.minute_light,
            (_, "REM") => &mut row.minute_rem,
            ("STAGES", "AWAKE") => &mut row.minute_wake,
            (_, "RESTLESS") => &mut row.minute_restless,
            _ => continue,
        };
        let more = minutes(&id, &format!("{} minutes", stage.kind), stage.minutes)?;
        *column = Some(column.unwrap_or(0).checked_add(more).ok_or_else(|| {
            SyncError::invalid_data(format!(
                "{WHAT}: session {id}: {} minutes overflow",
                stage.kind
            ))
        })?);
    }
    Ok(())
}

/// One page of `list sleep`: every session with its levels in order of start.
pub fn parse_sleep_page(body: &str) -> Result<Page<SleepSession>, SyncError> {
    let page: ListResponse<SleepPoint> = json(WHAT, body)?;
    let items = page
        .data_points
        .into_iter()
        .map(session)
        .collect::<Result<_, _>>()?;
    Ok(Page {
        items,
        next_page_token: next_page(page.next_page_token),
    })
}

#[cfg(test)]
#[path = "sleep_tests.rs"]
mod tests;
