//! The legacy range endpoints of the daily families (`docs/data-families.md`): which path
//! serves each, how long a range it accepts, and the parsers of the nightly metrics and active
//! zone minutes (sleep logs are in [`super::sleep`]).
//!
//! Every range endpoint takes `{start}/{end}` as **inclusive** local dates and answers 400 for
//! a range longer than its maximum, so a job's days are cut into [`DayRange`]s no longer than
//! that; each is one request, which matters under a quota of 150 requests an hour.

use std::collections::BTreeSet;
use std::ops::Range;

use chrono::{NaiveDate, TimeDelta};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::parse::{amount, json, non_negative, whole};
use super::wire::{Num, object};
use crate::errors::SyncError;
use crate::families::{
    ActiveZoneMinutesDay, BreathingRateDay, Dated, Family, HeartRateVariabilityDay,
    OxygenSaturationDay, SkinTemperatureDay,
};

/// Local days `first..=last`, as a range endpoint names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub first: NaiveDate,
    pub last: NaiveDate,
}

impl DayRange {
    /// The ranges covering `days` (end exclusive) in order, each at most `max_days` long.
    pub fn chunks(days: &Range<NaiveDate>, max_days: i64) -> Vec<DayRange> {
        let mut out = Vec::new();
        let mut first = days.start;
        while first < days.end {
            let next = (first + TimeDelta::days(max_days.max(1))).min(days.end);
            out.push(DayRange {
                first,
                last: next - TimeDelta::days(1),
            });
            first = next;
        }
        out
    }

    pub fn contains(&self, date: NaiveDate) -> bool {
        self.first <= date && date <= self.last
    }

    /// `{start}/{end}`, both inclusive.
    fn path(&self) -> String {
        format!("{}/{}", self.first, self.last)
    }
}

impl std::fmt::Display for DayRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..={}", self.first, self.last)
    }
}

/// A daily family the legacy API serves over a range of days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeFamily {
    Sleep,
    HeartRateVariability,
    OxygenSaturation,
    BreathingRate,
    SkinTemperature,
    ActiveZoneMinutes,
}

impl RangeFamily {
    pub fn family(self) -> Family {
        match self {
            RangeFamily::Sleep => Family::Sleep,
            RangeFamily::HeartRateVariability => Family::HeartRateVariability,
            RangeFamily::OxygenSaturation => Family::OxygenSaturation,
            RangeFamily::BreathingRate => Family::BreathingRate,
            RangeFamily::SkinTemperature => Family::SkinTemperature,
            RangeFamily::ActiveZoneMinutes => Family::ActiveZoneMinutes,
        }
    }

    /// The longest range the endpoint accepts, in days.
    pub fn max_days(self) -> i64 {
        match self {
            RangeFamily::Sleep => 100,
            RangeFamily::ActiveZoneMinutes => 1095,
            _ => 30,
        }
    }

    /// The request path for `range`. Sleep logs are v1.2 (the only version with stages), so
    /// that path names its version; the others are under `/1/user/-/`.
    pub fn path(self, range: DayRange) -> String {
        let resource = match self {
            RangeFamily::Sleep => return format!("/1.2/user/-/sleep/date/{}.json", range.path()),
            RangeFamily::HeartRateVariability => "hrv",
            RangeFamily::OxygenSaturation => "spo2",
            RangeFamily::BreathingRate => "br",
            RangeFamily::SkinTemperature => "temp/skin",
            RangeFamily::ActiveZoneMinutes => "activities/active-zone-minutes",
        };
        format!("{resource}/date/{}.json", range.path())
    }

    /// What a reason calls the request for `range`.
    pub fn what(self, range: DayRange) -> String {
        let name = match self {
            RangeFamily::Sleep => "sleep logs",
            RangeFamily::HeartRateVariability => "heart rate variability",
            RangeFamily::OxygenSaturation => "oxygen saturation",
            RangeFamily::BreathingRate => "breathing rate",
            RangeFamily::SkinTemperature => "skin temperature",
            RangeFamily::ActiveZoneMinutes => "active zone minutes",
        };
        format!("get {name} {range}")
    }
}

/// Rows of a range response must be days of the range, each at most once: a day outside it
/// would be stored as if it had been asked for, and two rows of one day would fight over one
/// primary key.
pub(super) fn check_days<T: Dated>(
    what: &str,
    range: DayRange,
    rows: &[T],
) -> Result<(), SyncError> {
    let mut seen = BTreeSet::new();
    for date in rows.iter().map(Dated::date) {
        if !range.contains(date) {
            return Err(SyncError::invalid_data(format!(
                "{what}: the response has a day {date} outside the requested {range}"
            )));
        }
        if !seen.insert(date) {
            return Err(SyncError::invalid_data(format!(
                "{what}: the response has the day {date} twice"
            )));
        }
    }
    Ok(())
}

/// One day of a nightly metric: `{"dateTime": "yyyy-MM-dd", "value": {...}}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", bound = "V: DeserializeOwned")]
struct Day<V> {
    date_time: NaiveDate,
    #[serde(deserialize_with = "object")]
    value: V,
}

/// Parses the days of a response, maps each, and checks the rows are the range's days.
fn days<V, T: Dated>(
    what: &str,
    range: DayRange,
    items: Vec<Day<V>>,
    row: impl Fn(&str, NaiveDate, V) -> Result<T, SyncError>,
) -> Result<Vec<T>, SyncError> {
    let rows = items
        .into_iter()
        .map(|d| row(what, d.date_time, d.value))
        .collect::<Result<Vec<_>, _>>()?;
    check_days(what, range, &rows)?;
    Ok(rows)
}

#[derive(Debug, Deserialize)]
struct HrvResponse {
    hrv: Vec<Day<HrvValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HrvValue {
    #[serde(default)]
    daily_rmssd: Option<Num>,
    #[serde(default)]
    deep_rmssd: Option<Num>,
}

/// `hrv/date/{start}/{end}.json`.
pub fn parse_heart_rate_variability(
    body: &str,
    range: DayRange,
) -> Result<Vec<HeartRateVariabilityDay>, SyncError> {
    let what = RangeFamily::HeartRateVariability.what(range);
    let response: HrvResponse = json(&what, body)?;
    days(&what, range, response.hrv, |what, date, v| {
        Ok(HeartRateVariabilityDay {
            date,
            daily_rmssd: amount(what, "value.dailyRmssd", v.daily_rmssd)?,
            deep_rmssd: amount(what, "value.deepRmssd", v.deep_rmssd)?,
        })
    })
}

/// A range answers with a bare array; a single day (also `{start}/{end}` of one day, on some
/// accounts) with the item itself, or `{}` when the night has no reading.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Spo2Response {
    Days(Vec<Day<Spo2Value>>),
    Day(Day<Spo2Value>),
    Nothing(NoDay),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoDay {}

#[derive(Debug, Deserialize)]
struct Spo2Value {
    #[serde(default)]
    avg: Option<Num>,
    #[serde(default)]
    min: Option<Num>,
    #[serde(default)]
    max: Option<Num>,
}

/// `spo2/date/{start}/{end}.json`.
pub fn parse_oxygen_saturation(
    body: &str,
    range: DayRange,
) -> Result<Vec<OxygenSaturationDay>, SyncError> {
    let what = RangeFamily::OxygenSaturation.what(range);
    let items = match json::<Spo2Response>(&what, body)? {
        Spo2Response::Days(items) => items,
        Spo2Response::Day(item) => vec![item],
        Spo2Response::Nothing(_) => Vec::new(),
    };
    days(&what, range, items, |what, date, v| {
        Ok(OxygenSaturationDay {
            date,
            average: amount(what, "value.avg", v.avg)?,
            lower_bound: amount(what, "value.min", v.min)?,
            upper_bound: amount(what, "value.max", v.max)?,
        })
    })
}

#[derive(Debug, Deserialize)]
struct BreathingRateResponse {
    br: Vec<Day<BreathingRateValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BreathingRateValue {
    breathing_rate: Num,
}

/// `br/date/{start}/{end}.json`.
pub fn parse_breathing_rate(
    body: &str,
    range: DayRange,
) -> Result<Vec<BreathingRateDay>, SyncError> {
    let what = RangeFamily::BreathingRate.what(range);
    let response: BreathingRateResponse = json(&what, body)?;
    days(&what, range, response.br, |what, date, v| {
        Ok(BreathingRateDay {
            date,
            breathing_rate: non_negative(what, "value.breathingRate", v.breathing_rate)?,
        })
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SkinTemperatureResponse {
    temp_skin: Vec<Day<SkinTemperatureValue>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SkinTemperatureValue {
    /// Degrees Celsius from the participant's baseline: negative as often as not.
    nightly_relative: Num,
}

/// `temp/skin/date/{start}/{end}.json`.
pub fn parse_skin_temperature(
    body: &str,
    range: DayRange,
) -> Result<Vec<SkinTemperatureDay>, SyncError> {
    let what = RangeFamily::SkinTemperature.what(range);
    let response: SkinTemperatureResponse = json(&what, body)?;
    days(&what, range, response.temp_skin, |_, date, v| {
        Ok(SkinTemperatureDay {
            date,
            nightly_relative: v.nightly_relative.0,
        })
    })
}

#[derive(Debug, Deserialize)]
struct ActiveZoneMinutesResponse {
    #[serde(rename = "activities-active-zone-minutes")]
    days: Vec<Day<ActiveZoneMinutesValue>>,
}

/// Members are left out when they are 0.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActiveZoneMinutesValue {
    #[serde(default)]
    active_zone_minutes: Option<Num>,
    #[serde(default)]
    fat_burn_active_zone_minutes: Option<Num>,
    #[serde(default)]
    cardio_active_zone_minutes: Option<Num>,
    #[serde(default)]
    peak_active_zone_minutes: Option<Num>,
}

/// `activities/active-zone-minutes/date/{start}/{end}.json`. The values are already earned
/// minutes (a cardio or peak minute counts twice), as `active_zone_minutes_daily` stores them.
pub fn parse_active_zone_minutes(
    body: &str,
    range: DayRange,
) -> Result<Vec<ActiveZoneMinutesDay>, SyncError> {
    let what = RangeFamily::ActiveZoneMinutes.what(range);
    let response: ActiveZoneMinutesResponse = json(&what, body)?;
    days(&what, range, response.days, |what, date, v| {
        let earned = |field: &str, value: Option<Num>| {
            Ok::<_, SyncError>(
                value
                    .map(|v| whole(what, field, v))
                    .transpose()?
                    .unwrap_or(0),
            )
        };
        Ok(ActiveZoneMinutesDay {
            date,
            fat_burn: earned(
                "value.fatBurnActiveZoneMinutes",
                v.fat_burn_active_zone_minutes,
            )?,
            cardio: earned(
                "value.cardioActiveZoneMinutes",
                v.cardio_active_zone_minutes,
            )?,
            peak: earned("value.peakActiveZoneMinutes", v.peak_active_zone_minutes)?,
            total: earned("value.activeZoneMinutes", v.active_zone_minutes)?,
        })
    })
}
