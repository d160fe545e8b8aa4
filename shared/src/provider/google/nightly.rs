//! The nightly metrics, parsed: pages of `list daily-heart-rate-variability`,
//! `daily-oxygen-saturation`, `daily-respiratory-rate` and
//! `daily-sleep-temperature-derivations` in, one row per local date out
//! (`docs/data-families.md`, "Nightly and daily metrics").
//!
//! A `"NaN"` is Google's "not computed" (a new participant's temperature baseline): the value
//! is absent, and a row that needs it is not written. An infinity is no measurement at all
//! and is refused.

use chrono::NaiveDate;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::parse::{Page, civil_date, json, next_page};
use super::wire::{Date, Double, ListResponse};
use crate::errors::SyncError;
use crate::families::{
    BreathingRateDay, HeartRateVariabilityDay, OxygenSaturationDay, SkinTemperatureDay,
};

/// The value of a nightly type's union member, the date it belongs to first.
trait Nightly: DeserializeOwned {
    type Row;
    /// `list {type}`, for errors.
    const WHAT: &'static str;
    /// The data point's union member holding the value (`dailyOxygenSaturation`).
    const MEMBER: &'static str;
    fn date(&self) -> Date;
    /// The row of `date`, `None` when the night has no storable value.
    fn row(self, date: NaiveDate) -> Result<Option<Self::Row>, SyncError>;
}

/// One page of a nightly type, every point checked before any row is returned. A point
/// without the type's own member (another type's value) is refused, not read as empty.
fn parse_nightly_page<N: Nightly>(body: &str) -> Result<Page<N::Row>, SyncError> {
    let page: ListResponse<Map<String, Value>> = json(N::WHAT, body)?;
    let mut items = Vec::with_capacity(page.data_points.len());
    for (index, mut point) in page.data_points.into_iter().enumerate() {
        let value = point.remove(N::MEMBER).ok_or_else(|| {
            SyncError::invalid_data(format!(
                "{}: dataPoints[{index}] has no {}",
                N::WHAT,
                N::MEMBER
            ))
        })?;
        let value: N = serde_json::from_value(value).map_err(|e| {
            SyncError::invalid_data(format!(
                "{}: dataPoints[{index}].{} is not the documented shape: {e}",
                N::WHAT,
                N::MEMBER
            ))
        })?;
        let date = civil_date(N::WHAT, value.date())?;
        items.extend(value.row(date)?);
    }
    Ok(Page {
        items,
        next_page_token: next_page(page.next_page_token),
    })
}

/// A measured value: `None` when absent or `"NaN"`, refused when infinite.
fn measured(
    what: &str,
    date: NaiveDate,
    member: &str,
    value: Option<Double>,
) -> Result<Option<f64>, SyncError> {
    match value {
        Some(Double(v)) if v.is_infinite() => Err(SyncError::invalid_data(format!(
            "{what}: {date}: {member} is {v}"
        ))),
        Some(Double(v)) if v.is_nan() => Ok(None),
        other => Ok(other.map(|d| d.0)),
    }
}

/// A member the row cannot be written without (the API documents it as required).
fn required(
    what: &str,
    date: NaiveDate,
    member: &str,
    value: Option<Double>,
) -> Result<Double, SyncError> {
    value.ok_or_else(|| SyncError::invalid_data(format!("{what}: {date}: {member} is missing")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DailyHeartRateVariability {
    date: Date,
    #[serde(default)]
    average_heart_rate_variability_milliseconds: Option<Double>,
    #[serde(default)]
    deep_sleep_root_mean_square_of_successive_differences_milliseconds: Option<Double>,
}

impl Nightly for DailyHeartRateVariability {
    type Row = HeartRateVariabilityDay;
    const WHAT: &'static str = "list daily-heart-rate-variability";
    const MEMBER: &'static str = "dailyHeartRateVariability";
    fn date(&self) -> Date {
        self.date
    }
    fn row(self, date: NaiveDate) -> Result<Option<Self::Row>, SyncError> {
        let m = |member, value| measured(Self::WHAT, date, member, value);
        Ok(Some(HeartRateVariabilityDay {
            date,
            daily_rmssd: m(
                "averageHeartRateVariabilityMilliseconds",
                self.average_heart_rate_variability_milliseconds,
            )?,
            deep_rmssd: m(
                "deepSleepRootMeanSquareOfSuccessiveDifferencesMilliseconds",
                self.deep_sleep_root_mean_square_of_successive_differences_milliseconds,
            )?,
        }))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DailyOxygenSaturation {
    date: Date,
    #[serde(default)]
    average_percentage: Option<Double>,
    #[serde(default)]
    lower_bound_percentage: Option<Double>,
    #[serde(default)]
    upper_bound_percentage: Option<Double>,
}

impl Nightly for DailyOxygenSaturation {
    type Row = OxygenSaturationDay;
    const WHAT: &'static str = "list daily-oxygen-saturation";
    const MEMBER: &'static str = "dailyOxygenSaturation";
    fn date(&self) -> Date {
        self.date
    }
    fn row(self, date: NaiveDate) -> Result<Option<Self::Row>, SyncError> {
        let m = |member, value| measured(Self::WHAT, date, member, value);
        Ok(Some(OxygenSaturationDay {
            date,
            average: m("averagePercentage", self.average_percentage)?,
            lower_bound: m("lowerBoundPercentage", self.lower_bound_percentage)?,
            upper_bound: m("upperBoundPercentage", self.upper_bound_percentage)?,
        }))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DailyRespiratoryRate {
    date: Date,
    #[serde(default)]
    breaths_per_minute: Option<Double>,
}

impl Nightly for DailyRespiratoryRate {
    type Row = BreathingRateDay;
    const WHAT: &'static str = "list daily-respiratory-rate";
    const MEMBER: &'static str = "dailyRespiratoryRate";
    fn date(&self) -> Date {
        self.date
    }
    fn row(self, date: NaiveDate) -> Result<Option<Self::Row>, SyncError> {
        let member = "breathsPerMinute";
        let rate = measured(
            Self::WHAT,
            date,
            member,
            Some(required(Self::WHAT, date, member, self.breaths_per_minute)?),
        )?;
        Ok(rate.map(|breathing_rate| BreathingRateDay {
            date,
            breathing_rate,
        }))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DailySleepTemperatureDerivations {
    date: Date,
    #[serde(default)]
    nightly_temperature_celsius: Option<Double>,
    /// Absent or `"NaN"` until the participant has enough nights for a baseline.
    #[serde(default)]
    baseline_temperature_celsius: Option<Double>,
}

impl Nightly for DailySleepTemperatureDerivations {
    type Row = SkinTemperatureDay;
    const WHAT: &'static str = "list daily-sleep-temperature-derivations";
    const MEMBER: &'static str = "dailySleepTemperatureDerivations";
    fn date(&self) -> Date {
        self.date
    }
    /// The deviation from the participant's baseline, what the legacy API calls
    /// `nightlyRelative` and All of Us stores; without a baseline there is none.
    fn row(self, date: NaiveDate) -> Result<Option<Self::Row>, SyncError> {
        let m = |member, value| measured(Self::WHAT, date, member, value);
        let member = "nightlyTemperatureCelsius";
        let nightly = required(Self::WHAT, date, member, self.nightly_temperature_celsius)?;
        let nightly = m(member, Some(nightly))?;
        let baseline = m(
            "baselineTemperatureCelsius",
            self.baseline_temperature_celsius,
        )?;
        Ok(nightly
            .zip(baseline)
            .map(|(nightly, baseline)| SkinTemperatureDay {
                date,
                nightly_relative: nightly - baseline,
            }))
    }
}

/// One page of `list daily-heart-rate-variability`.
pub fn parse_heart_rate_variability_page(
    body: &str,
) -> Result<Page<HeartRateVariabilityDay>, SyncError> {
    parse_nightly_page::<DailyHeartRateVariability>(body)
}

/// One page of `list daily-oxygen-saturation`.
pub fn parse_oxygen_saturation_page(body: &str) -> Result<Page<OxygenSaturationDay>, SyncError> {
    parse_nightly_page::<DailyOxygenSaturation>(body)
}

/// One page of `list daily-respiratory-rate`.
pub fn parse_breathing_rate_page(body: &str) -> Result<Page<BreathingRateDay>, SyncError> {
    parse_nightly_page::<DailyRespiratoryRate>(body)
}

/// One page of `list daily-sleep-temperature-derivations`: nightly minus baseline, no row for
/// a night without a baseline.
pub fn parse_skin_temperature_page(body: &str) -> Result<Page<SkinTemperatureDay>, SyncError> {
    parse_nightly_page::<DailySleepTemperatureDerivations>(body)
}

#[cfg(test)]
#[path = "nightly_tests.rs"]
mod tests;
