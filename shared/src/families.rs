//! The data families fitlink stores, as rows: one type per table, whatever the provider.
//!
//! A provider client turns its wire format into these rows; the worker cuts them per slice
//! ([`DailyFamilies::for_days`]); the writer stores them (`writer/src/store/families.rs`). A new
//! daily family is a new vector here, one parse per provider and one statement in the writer.
//!
//! Daily families are keyed by the participant's **local** day, as the providers report them;
//! a sleep session belongs to the local day on which it **ends** (the All of Us `sleep_date`).

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::UtcInstant;

/// A row of `activity_summary`: one participant's local day.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct ActivityDay {
    pub date: NaiveDate,
    pub steps: Option<i64>,
    /// Kilometres.
    pub distance: Option<f64>,
    pub floors: Option<i64>,
    /// Metres climbed.
    pub elevation: Option<f64>,
    pub calories_out: Option<f64>,
    pub activity_calories: Option<f64>,
    pub sedentary_minutes: Option<f64>,
    pub lightly_active_minutes: Option<f64>,
    pub fairly_active_minutes: Option<f64>,
    pub very_active_minutes: Option<f64>,
}

/// A row of `heart_rate_summary`: one participant's local day and heart-rate zone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeartRateZoneDay {
    pub date: NaiveDate,
    /// Google Health's zone names, lower case: light, moderate, vigorous, peak.
    pub zone_name: String,
    pub min_heart_rate: Option<i64>,
    pub max_heart_rate: Option<i64>,
    pub minute_in_zone: Option<i64>,
    pub calorie_count: Option<f64>,
}

/// A row of `resting_heart_rate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RestingHeartRateDay {
    pub date: NaiveDate,
    pub resting_heart_rate: i64,
}

/// One sleep session: a row of `sleep_daily_summary` and its stages, the rows of `sleep_level`.
///
/// Keyed by the provider's own id for the session, so a session the provider edits or merges
/// later replaces the stored one (levels and all) instead of standing beside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SleepSession {
    /// Google Health: the last segment of the data point's `name`; legacy Fitbit: `logId`.
    pub session_id: String,
    /// The local day on which the session ended.
    pub sleep_date: NaiveDate,
    pub is_main_sleep: bool,
    pub start: UtcInstant,
    pub start_utc_offset_seconds: i32,
    pub end: UtcInstant,
    pub end_utc_offset_seconds: i32,
    pub minute_in_bed: Option<i64>,
    pub minute_asleep: Option<i64>,
    pub minute_after_wakeup: Option<i64>,
    pub minute_awake: Option<i64>,
    /// Minutes per level, as the provider summarises them (classic: asleep / restless / awake;
    /// stages: deep / light / rem / wake). `None` where the session has no such level.
    pub minute_restless: Option<i64>,
    pub minute_deep: Option<i64>,
    pub minute_light: Option<i64>,
    pub minute_rem: Option<i64>,
    pub minute_wake: Option<i64>,
    pub levels: Vec<SleepLevel>,
}

/// One stage of a sleep session (a row of `sleep_level`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SleepLevel {
    /// Lower case, as All of Us stores them: `deep`, `light`, `rem`, `wake` (stages) or
    /// `asleep`, `restless`, `awake` (classic); anything else is `unknown`.
    pub level: String,
    pub start: UtcInstant,
    pub utc_offset_seconds: i32,
    pub duration_seconds: i64,
}

/// A paired device as the provider reports it at sync time (a row of `device` once the worker
/// names the local day of the snapshot).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairedDevice {
    /// Empty when the provider names no id: such a device still says how far data reaches but
    /// has no `device` row.
    pub device_id: String,
    /// `High`, `Medium`, `Low` or `Empty`, as the provider says it.
    pub battery: Option<String>,
    pub battery_level: Option<i64>,
    pub device_version: Option<String>,
    /// `TRACKER` or `SCALE`.
    pub device_type: Option<String>,
    pub last_sync_time: Option<UtcInstant>,
}

/// The paired devices at one sync: the rows of `device` for the participant's local day
/// `date` (one per device per day, replaced by a later sync the same day).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceSnapshot {
    pub date: NaiveDate,
    pub devices: Vec<PairedDevice>,
}

/// Daily heart-rate variability (`heart_rate_variability_daily`), RMSSD in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeartRateVariabilityDay {
    pub date: NaiveDate,
    pub daily_rmssd: Option<f64>,
    pub deep_rmssd: Option<f64>,
}

/// Nightly oxygen saturation (`oxygen_saturation_daily`), percent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OxygenSaturationDay {
    pub date: NaiveDate,
    pub average: Option<f64>,
    pub lower_bound: Option<f64>,
    pub upper_bound: Option<f64>,
}

/// Nightly breathing rate (`breathing_rate_daily`), breaths per minute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BreathingRateDay {
    pub date: NaiveDate,
    pub breathing_rate: f64,
}

/// Nightly skin temperature (`skin_temperature_daily`): the deviation from the participant's
/// own baseline, in °C (legacy `nightlyRelative`; Google: nightly minus baseline).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SkinTemperatureDay {
    pub date: NaiveDate,
    pub nightly_relative: f64,
}

/// Active zone minutes earned (`active_zone_minutes_daily`), as Fitbit counts them: a fat-burn
/// minute earns 1, a cardio or peak minute 2; `total` is their sum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveZoneMinutesDay {
    pub date: NaiveDate,
    pub fat_burn: i64,
    pub cardio: i64,
    pub peak: i64,
    pub total: i64,
}

/// A family of data, as the completeness ledger, permissions and metrics name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Activity,
    HeartRateZones,
    RestingHeartRate,
    HeartRateIntraday,
    StepsIntraday,
    Sleep,
    Devices,
    HeartRateVariability,
    OxygenSaturation,
    BreathingRate,
    SkinTemperature,
    ActiveZoneMinutes,
}

impl Family {
    pub const ALL: [Family; 12] = [
        Family::Activity,
        Family::HeartRateZones,
        Family::RestingHeartRate,
        Family::HeartRateIntraday,
        Family::StepsIntraday,
        Family::Sleep,
        Family::Devices,
        Family::HeartRateVariability,
        Family::OxygenSaturation,
        Family::BreathingRate,
        Family::SkinTemperature,
        Family::ActiveZoneMinutes,
    ];

    /// The families of the completeness ledger (`coverage_daily`, `docs/coverage.md`): data
    /// a tracker records on a day. Devices are snapshots taken at each sync, not in it.
    pub const LEDGER: [Family; 11] = [
        Family::Activity,
        Family::HeartRateZones,
        Family::RestingHeartRate,
        Family::HeartRateIntraday,
        Family::StepsIntraday,
        Family::Sleep,
        Family::HeartRateVariability,
        Family::OxygenSaturation,
        Family::BreathingRate,
        Family::SkinTemperature,
        Family::ActiveZoneMinutes,
    ];

    /// Whether the ledger counts the family in minutes (an intraday series) or in values a day.
    pub fn is_intraday(self) -> bool {
        matches!(self, Family::HeartRateIntraday | Family::StepsIntraday)
    }

    /// The family named `name` (its [`as_str`](Self::as_str)).
    pub fn parse(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Family::Activity => "activity",
            Family::HeartRateZones => "heart_rate_zones",
            Family::RestingHeartRate => "resting_heart_rate",
            Family::HeartRateIntraday => "heart_rate_intraday",
            Family::StepsIntraday => "steps_intraday",
            Family::Sleep => "sleep",
            Family::Devices => "devices",
            Family::HeartRateVariability => "heart_rate_variability",
            Family::OxygenSaturation => "oxygen_saturation",
            Family::BreathingRate => "breathing_rate",
            Family::SkinTemperature => "skin_temperature",
            Family::ActiveZoneMinutes => "active_zone_minutes",
        }
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything keyed by a local day that a provider returns for a range of days.
///
/// Travels flattened inside a `SliceResult` (older messages without the newer families read
/// as empty vectors).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyFamilies {
    #[serde(default)]
    pub activity: Vec<ActivityDay>,
    #[serde(default)]
    pub heart_rate_zones: Vec<HeartRateZoneDay>,
    #[serde(default)]
    pub resting_heart_rate: Vec<RestingHeartRateDay>,
    #[serde(default)]
    pub sleep: Vec<SleepSession>,
    #[serde(default)]
    pub heart_rate_variability: Vec<HeartRateVariabilityDay>,
    #[serde(default)]
    pub oxygen_saturation: Vec<OxygenSaturationDay>,
    #[serde(default)]
    pub breathing_rate: Vec<BreathingRateDay>,
    #[serde(default)]
    pub skin_temperature: Vec<SkinTemperatureDay>,
    #[serde(default)]
    pub active_zone_minutes: Vec<ActiveZoneMinutesDay>,
    /// The local days these rows are the whole truth for: a stored sleep session of one of
    /// these days that is not among [`sleep`](Self::sleep) was deleted at the provider. `None`
    /// (older messages) deletes nothing.
    #[serde(default)]
    pub complete_days: Option<Range<NaiveDate>>,
    /// Families the provider refused for this participant (a 403 on that family's data: its
    /// scope was not granted), with the provider's reason. Their vectors are empty because
    /// nothing was read, not because there was nothing: the writer records them as not
    /// permitted and deletes nothing of theirs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub not_permitted: BTreeMap<Family, String>,
}

/// A row keyed by a local day.
pub trait Dated {
    fn date(&self) -> NaiveDate;
}

macro_rules! dated {
    ($($row:ty => $field:ident),* $(,)?) => {
        $(impl Dated for $row {
            fn date(&self) -> NaiveDate {
                self.$field
            }
        })*
    };
}

dated!(
    ActivityDay => date,
    HeartRateZoneDay => date,
    RestingHeartRateDay => date,
    SleepSession => sleep_date,
    HeartRateVariabilityDay => date,
    OxygenSaturationDay => date,
    BreathingRateDay => date,
    SkinTemperatureDay => date,
    ActiveZoneMinutesDay => date,
);

fn within<T: Dated + Clone>(rows: &[T], days: &Range<NaiveDate>) -> Vec<T> {
    rows.iter()
        .filter(|row| days.contains(&row.date()))
        .cloned()
        .collect()
}

impl DailyFamilies {
    /// The rows of `days` only, complete for those days.
    pub fn for_days(&self, days: &Range<NaiveDate>) -> DailyFamilies {
        DailyFamilies {
            activity: within(&self.activity, days),
            heart_rate_zones: within(&self.heart_rate_zones, days),
            resting_heart_rate: within(&self.resting_heart_rate, days),
            sleep: within(&self.sleep, days),
            heart_rate_variability: within(&self.heart_rate_variability, days),
            oxygen_saturation: within(&self.oxygen_saturation, days),
            breathing_rate: within(&self.breathing_rate, days),
            skin_temperature: within(&self.skin_temperature, days),
            active_zone_minutes: within(&self.active_zone_minutes, days),
            complete_days: Some(days.clone()),
            not_permitted: self.not_permitted.clone(),
        }
    }

    /// Rows of every daily family together.
    pub fn rows(&self) -> usize {
        self.activity.len()
            + self.heart_rate_zones.len()
            + self.resting_heart_rate.len()
            + self.sleep.iter().map(|s| 1 + s.levels.len()).sum::<usize>()
            + self.heart_rate_variability.len()
            + self.oxygen_saturation.len()
            + self.breathing_rate.len()
            + self.skin_temperature.len()
            + self.active_zone_minutes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
    }

    #[test]
    fn a_slice_carries_the_rows_of_its_days_and_says_they_are_complete() {
        let all = DailyFamilies {
            resting_heart_rate: (1..=5)
                .map(|d| RestingHeartRateDay {
                    date: day(d),
                    resting_heart_rate: 60,
                })
                .collect(),
            breathing_rate: vec![BreathingRateDay {
                date: day(2),
                breathing_rate: 15.5,
            }],
            ..Default::default()
        };
        let part = all.for_days(&(day(2)..day(4)));
        assert_eq!(
            part.resting_heart_rate
                .iter()
                .map(|r| r.date)
                .collect::<Vec<_>>(),
            vec![day(2), day(3)]
        );
        assert_eq!(part.breathing_rate.len(), 1);
        assert_eq!(part.complete_days, Some(day(2)..day(4)));
        assert_eq!(part.rows(), 3);
    }

    #[test]
    fn a_message_without_the_newer_families_reads_as_empty() {
        let old = r#"{"activity":[],"resting_heart_rate":[{"date":"2026-03-01","resting_heart_rate":61}]}"#;
        let read: DailyFamilies = serde_json::from_str(old).unwrap();
        assert_eq!(read.resting_heart_rate.len(), 1);
        assert!(read.sleep.is_empty() && read.complete_days.is_none());
    }
}
