//! Legacy Fitbit responses, parsed: a body's text (and headers) in, normalised rows or a
//! classified [`SyncError`] out. No I/O: [`FitbitClient`](super::FitbitClient)
//! sends the requests and hands every answer here, and the bad-input tests feed these same
//! functions malformed answers directly.
//!
//! A successful body of the wrong shape, or holding a value that cannot be stored, is
//! [`SyncError::Permanent`] with [`ParticipantState::ProviderDataInvalid`]; the token endpoint's
//! answer can also be `ScopeMissing`. Failed requests are classified by [`classify_data_error`]
//! and [`classify_token_error`] (whose callers [`redact`] the body first), the quota headers read
//! by [`parse_quota`]. serde's messages quote values, so they are redacted too.

use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::de::DeserializeOwned;

use super::REQUIRED_SCOPES;
pub use super::families::{
    DayRange, RangeFamily, parse_active_zone_minutes, parse_breathing_rate,
    parse_heart_rate_variability, parse_oxygen_saturation, parse_skin_temperature,
};
pub use super::refusal::*;
pub use super::sleep::parse_sleep_logs;
pub use super::time::{LocalZone, Window};
use super::time::{last_sync_instant, offset_seconds};
use super::wire::*;
use crate::config::HeartRateDetail;
use crate::domain::{ParticipantState, Slice, UtcInstant};
use crate::errors::SyncError;
use crate::families::PairedDevice;
use crate::messages::{ActivityDay, HeartRateZoneDay, IntradayPoint, RestingHeartRateDay};
use crate::provider::http::unparsable_body;
use crate::provider::{AccessGrant, expires_at};
use crate::secret::Secret;

/// Access tokens of the code flow live 8 hours; the only value Fitbit supports.
const DEFAULT_EXPIRES_IN: i64 = 28_800;

/// Fitbit's legacy heart-rate zone names, lower-cased: what `heart_rate_summary.zone_name` holds
/// for legacy rows (Google's rows say light, moderate, vigorous, peak).
const ZONE_NAMES: [&str; 4] = ["out of range", "fat burn", "cardio", "peak"];

/// Parses a body as `T`; a body of another shape is invalid provider data.
pub(super) fn json<T: DeserializeOwned>(what: &str, body: &str) -> Result<T, SyncError> {
    serde_json::from_str(body).map_err(|e| {
        unparsable_body(
            &e,
            format!(
                "{what}: response is not the documented JSON shape: {}",
                redact(&e.to_string(), &[])
            ),
        )
    })
}

/// `devices.json`: every paired device, its `lastSyncTime` still in local time.
pub fn parse_devices(body: &str) -> Result<LocalDevices, SyncError> {
    let devices: Vec<Device> = json("get devices", body)?;
    Ok(LocalDevices(devices))
}

/// The paired devices with local sync times: reading those needs the participant's zone,
/// which may cost a request, so they are read apart from the body.
#[derive(Debug)]
pub struct LocalDevices(Vec<Device>);

impl LocalDevices {
    /// No device has synced (or none is paired): no zone is needed.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|d| d.last_sync_time.is_none())
    }

    /// Every device, its sync time read in `zone`.
    pub fn read(self, zone: LocalZone) -> Result<Vec<PairedDevice>, SyncError> {
        self.0
            .into_iter()
            .map(|d| {
                let last_sync_time = d
                    .last_sync_time
                    .map(|text| last_sync_instant(&text, zone).map(UtcInstant::new))
                    .transpose()?;
                Ok(PairedDevice {
                    device_id: d.id.unwrap_or_default(),
                    battery: d.battery,
                    battery_level: d.battery_level,
                    device_version: d.device_version,
                    device_type: d.device_type,
                    last_sync_time,
                })
            })
            .collect()
    }

    /// The latest sync of all devices (not the first device's: the prototype's fault), read in
    /// `zone`; `None` when no device has synced.
    pub fn latest(self, zone: LocalZone) -> Result<Option<DateTime<Utc>>, SyncError> {
        Ok(self
            .read(zone)?
            .into_iter()
            .filter_map(|d| d.last_sync_time.map(UtcInstant::get))
            .max())
    }
}

/// `profile.json`: where the participant is.
pub fn parse_profile(body: &str) -> Result<ProfileZone, SyncError> {
    let response: ProfileResponse = json("get profile", body)?;
    let profile = response.user;
    let time_zone = match profile.timezone.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) => Some(name.parse::<Tz>().map_err(|_| {
            SyncError::invalid_data(format!(
                "get profile: timezone {name:?} is not an IANA time zone"
            ))
        })?),
    };
    let fixed_offset = profile.offset_from_utc_millis.and_then(|ms| {
        let seconds = ms.0 / 1000.0;
        (seconds.fract() == 0.0 && seconds.abs() <= 18.0 * 3600.0)
            .then(|| FixedOffset::east_opt(seconds as i32))
            .flatten()
    });
    Ok(ProfileZone {
        time_zone,
        fixed_offset,
    })
}

/// What a profile says about the participant's zone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProfileZone {
    /// `timezone`, an IANA zone; `None` when the profile names none.
    pub time_zone: Option<Tz>,
    /// `offsetFromUTCMillis`, when it is a whole number of seconds within ±18 hours.
    pub fixed_offset: Option<FixedOffset>,
}

impl ProfileZone {
    /// The zone `lastSyncTime` is in: the IANA zone, else the fixed offset.
    pub fn local_zone(&self) -> Result<LocalZone, SyncError> {
        self.time_zone
            .map(LocalZone::Named)
            .or(self.fixed_offset.map(LocalZone::Fixed))
            .ok_or_else(|| {
                SyncError::invalid_data(
                    "get profile: the profile has neither a timezone nor a usable offsetFromUTCMillis, so lastSyncTime cannot be placed in time",
                )
            })
    }
}

/// `activities/date/{date}.json`: the day's activity row.
pub fn parse_daily_summary(body: &str, date: NaiveDate) -> Result<ActivityDay, SyncError> {
    let what = format!("get daily activity summary {date}");
    let day: DailyActivityResponse = json(&what, body)?;
    activity_day(&what, date, &day.summary)
}

/// `activities/heart/date/{date}/1d.json`: the day's zone rows (zones fitlink does not know are
/// skipped) and its resting heart rate. A day other than `date` is invalid data.
pub fn parse_heart_day(
    body: &str,
    date: NaiveDate,
) -> Result<(Vec<HeartRateZoneDay>, Vec<RestingHeartRateDay>), SyncError> {
    let what = format!("get heart rate {date}");
    let heart: HeartDailyResponse = json(&what, body)?;
    let mut zones = Vec::new();
    let mut resting = Vec::new();
    for day in heart.days {
        if day.date_time != date {
            return Err(SyncError::invalid_data(format!(
                "{what}: the response is for {}, not {date}",
                day.date_time
            )));
        }
        for zone in day.value.heart_rate_zones.unwrap_or_default() {
            if let Some(row) = zone_day(&what, date, &zone)? {
                zones.push(row);
            }
        }
        if let Some(bpm) = count(&what, "restingHeartRate", day.value.resting_heart_rate)? {
            resting.push(RestingHeartRateDay {
                date,
                resting_heart_rate: bpm,
            });
        }
    }
    Ok((zones, resting))
}

/// An intraday series and its resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntradaySeries {
    /// Heart rate at the configured detail (`1min` or `1sec`).
    HeartRate(HeartRateDetail),
    /// Steps per minute.
    Steps,
}

impl IntradaySeries {
    fn detail(self) -> &'static str {
        match self {
            IntradaySeries::HeartRate(detail) => detail.as_str(),
            IntradaySeries::Steps => "1min",
        }
    }

    /// The request path (under `/1/user/-/`) for one window.
    pub fn path(self, window: &Window) -> String {
        let resource = match self {
            IntradaySeries::HeartRate(_) => "heart",
            IntradaySeries::Steps => "steps",
        };
        format!("activities/{resource}/date/{}", window.path(self.detail()))
    }

    /// What a reason calls the request for one window.
    pub fn what(self, window: &Window) -> String {
        let name = match self {
            IntradaySeries::HeartRate(_) => "heart rate",
            IntradaySeries::Steps => "steps",
        };
        format!(
            "get {name} intraday {}",
            window.path(self.detail()).trim_end_matches(".json")
        )
    }

    /// The `datasetType` a dataset of this series must have.
    fn dataset_type(self) -> &'static str {
        match self {
            IntradaySeries::HeartRate(HeartRateDetail::OneSecond) => "second",
            IntradaySeries::HeartRate(HeartRateDetail::OneMinute) | IntradaySeries::Steps => {
                "minute"
            }
        }
    }
}

/// One intraday response for `window` (asked in UTC): every point dated, checked, and given the
/// offset of `zone` at its instant (0 without a zone). Only points inside `slice` are kept (an
/// unaligned slice's edge minutes belong to its neighbours), and step minutes of 0 are skipped
/// (Fitbit zero-fills; fitlink stores only minutes with steps, as Google serves them).
pub fn parse_intraday_dataset(
    body: &str,
    series: IntradaySeries,
    window: &Window,
    slice: Slice,
    zone: Option<Tz>,
) -> Result<Vec<IntradayPoint>, SyncError> {
    let what = series.what(window);
    let (dataset, field) = match series {
        IntradaySeries::HeartRate(_) => (
            json::<HeartIntradayResponse>(&what, body)?.intraday,
            "heart rate",
        ),
        IntradaySeries::Steps => (
            json::<StepsIntradayResponse>(&what, body)?.intraday,
            "steps",
        ),
    };
    check_dataset(&what, &dataset, series.dataset_type())?;
    let samples = dataset.dataset.iter().map(|s| (s.time.as_str(), s.value));
    let mut points = Vec::new();
    for (at, value) in window.date_times(&what, samples)? {
        let value = whole(&what, field, value)?;
        let instant = UtcInstant::new(at);
        let in_slice = slice.start <= instant && instant < slice.end;
        if in_slice && (value > 0 || series != IntradaySeries::Steps) {
            points.push(IntradayPoint {
                datetime: instant,
                utc_offset_seconds: offset_seconds(zone, at),
                value,
            });
        }
    }
    Ok(points)
}

/// A successful token-endpoint answer to a refresh with `sent_refresh_token`, at `now`.
///
/// Fitbit refresh tokens are single-use: once this answer exists, the sent token is spent and
/// the rotated one in it is the participant's only credential. So only what cannot be done
/// without is strict (`access_token`, `refresh_token`); the other fields read as absent when they
/// have the wrong shape (the default lifetime, no scope check, no user id).
pub fn parse_token_response(
    body: &str,
    sent_refresh_token: &str,
    now: DateTime<Utc>,
) -> Result<AccessGrant, SyncError> {
    let what = "token refresh";
    let token: TokenResponse = serde_json::from_str(body).map_err(|e| {
        unparsable_body(
            &e,
            format!(
                "{what}: response is not an OAuth token: {}",
                redact(&e.to_string(), &[sent_refresh_token])
            ),
        )
    })?;
    let scopes: Vec<String> = token
        .scope
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let missing: Vec<&str> = REQUIRED_SCOPES
        .iter()
        .copied()
        .filter(|needed| !scopes.iter().any(|s| s == needed))
        .collect();
    // A response that names no scopes is not taken as granting none (like Google's); a
    // missing scope then shows as a 403 on the data call that needs it.
    if token.scope.is_some() && !missing.is_empty() {
        return Err(SyncError::permanent(
            ParticipantState::ScopeMissing,
            format!(
                "the participant did not grant the Fitbit scope(s) {}",
                missing.join(", ")
            ),
        ));
    }
    let rotated = token.refresh_token.ok_or_else(|| {
        SyncError::invalid_data(format!(
            "{what}: the response has no refresh_token (Fitbit rotates it on every refresh)"
        ))
    })?;
    Ok(AccessGrant {
        access_token: Secret::new(token.access_token),
        expires_at: expires_at(now, token.expires_in, DEFAULT_EXPIRES_IN),
        // The same token back would be a replay within a grace window: nothing to store.
        rotated_refresh_token: (rotated != sent_refresh_token).then(|| Secret::new(rotated)),
        scopes,
        provider_user_id: token.user_id,
    })
}

/// A dataset must be at the resolution we asked for (a 15-minute dataset stored as minutes
/// would be wrong by a factor of 15). Absent fields are accepted.
pub(super) fn check_dataset(
    what: &str,
    dataset: &Dataset,
    expected_type: &str,
) -> Result<(), SyncError> {
    let type_ok = dataset
        .dataset_type
        .as_deref()
        .is_none_or(|t| t == expected_type);
    let interval_ok = dataset.dataset_interval.is_none_or(|i| i.0 == 1.0);
    if type_ok && interval_ok {
        Ok(())
    } else {
        Err(SyncError::invalid_data(format!(
            "{what}: dataset is {:?} every {:?}, not one {expected_type}",
            dataset.dataset_type,
            dataset.dataset_interval.map(|i| i.0)
        )))
    }
}

/// A count (steps, minutes, bpm): a non-negative number, rounded to a whole one.
pub(super) fn whole(what: &str, field: &str, value: Num) -> Result<i64, SyncError> {
    if value.0 >= 0.0 && value.0 < 1e15 {
        Ok(value.0.round() as i64)
    } else {
        Err(SyncError::invalid_data(format!(
            "{what}: {field} is {}, not a non-negative count",
            value.0
        )))
    }
}

pub(super) fn count(what: &str, field: &str, value: Option<Num>) -> Result<Option<i64>, SyncError> {
    value.map(|v| whole(what, field, v)).transpose()
}

/// An amount (distance, calories, minutes): a non-negative number.
pub(super) fn amount(
    what: &str,
    field: &str,
    value: Option<Num>,
) -> Result<Option<f64>, SyncError> {
    value.map(|v| non_negative(what, field, v)).transpose()
}

pub(super) fn non_negative(what: &str, field: &str, value: Num) -> Result<f64, SyncError> {
    if value.0 < 0.0 {
        Err(SyncError::invalid_data(format!(
            "{what}: {field} is {}, not a non-negative amount",
            value.0
        )))
    } else {
        Ok(value.0)
    }
}

pub(super) fn activity_day(
    what: &str,
    date: NaiveDate,
    s: &ActivitySummary,
) -> Result<ActivityDay, SyncError> {
    Ok(ActivityDay {
        date,
        steps: count(what, "summary.steps", s.steps)?,
        distance: amount(what, "summary.distances[total]", s.total_distance())?,
        floors: count(what, "summary.floors", s.floors)?,
        elevation: amount(what, "summary.elevation", s.elevation)?,
        calories_out: amount(what, "summary.caloriesOut", s.calories_out)?,
        activity_calories: amount(what, "summary.activityCalories", s.activity_calories)?,
        sedentary_minutes: amount(what, "summary.sedentaryMinutes", s.sedentary_minutes)?,
        lightly_active_minutes: amount(
            what,
            "summary.lightlyActiveMinutes",
            s.lightly_active_minutes,
        )?,
        fairly_active_minutes: amount(
            what,
            "summary.fairlyActiveMinutes",
            s.fairly_active_minutes,
        )?,
        very_active_minutes: amount(what, "summary.veryActiveMinutes", s.very_active_minutes)?,
    })
}

/// A zone row, `None` for a zone name fitlink does not know (logged, like Google's unknown zones).
pub(super) fn zone_day(
    what: &str,
    date: NaiveDate,
    zone: &HeartRateZone,
) -> Result<Option<HeartRateZoneDay>, SyncError> {
    let name = zone.name.trim().to_lowercase();
    if !ZONE_NAMES.contains(&name.as_str()) {
        tracing::warn!(zone = %zone.name, %date, "Skipping a Fitbit heart-rate zone fitlink does not know.");
        return Ok(None);
    }
    Ok(Some(HeartRateZoneDay {
        date,
        min_heart_rate: count(what, "heartRateZones.min", zone.min)?,
        max_heart_rate: count(what, "heartRateZones.max", zone.max)?,
        minute_in_zone: count(what, "heartRateZones.minutes", zone.minutes)?,
        calorie_count: amount(what, "heartRateZones.caloriesOut", zone.calories_out)?,
        zone_name: name,
    }))
}
