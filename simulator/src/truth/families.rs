//! Ground truth of the sleep, device, nightly-metric and active-zone-minute families
//! (`docs/data-families.md`), as a client stores them after parsing the Google Health
//! API. The legacy API serves the same values except skin temperature on nights whose
//! Google baseline is `"NaN"` ([`super::legacy::skin_temperature`]).
//!
//! Sessions honour `config.deletions` of type `sleep` (a deletion whose interval contains
//! the session's end removes it); the nightly metrics do not depend on those deletions.
//! Everything honours the latest sync (`advance_minutes`, battery death).

use chrono::{DateTime, NaiveDate, Utc};

use super::{deleted, profile, restated_day};
use crate::clock::from_unix;
use crate::config::{IntradayType, SimConfig};
use crate::generator::{SleepKind, SleepSession as Generated, battery_status};

/// One level of a session (`sleep_level`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SleepLevel {
    /// `deep`, `light`, `rem`, `wake` (STAGES) or `asleep`, `restless`, `awake` (CLASSIC).
    pub level: String,
    pub start: DateTime<Utc>,
    pub utc_offset_seconds: i32,
    pub duration_seconds: i64,
}

/// One session (`sleep_daily_summary` plus its levels).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SleepSession {
    pub session_id: String,
    /// The local date on which the session ended.
    pub sleep_date: NaiveDate,
    pub is_main_sleep: bool,
    pub start: DateTime<Utc>,
    pub start_utc_offset_seconds: i32,
    pub end: DateTime<Utc>,
    pub end_utc_offset_seconds: i32,
    pub minute_in_bed: i64,
    pub minute_asleep: i64,
    pub minute_after_wakeup: i64,
    /// STAGES: wake minutes; CLASSIC: awake + restless minutes.
    pub minute_awake: i64,
    /// CLASSIC only.
    pub minute_restless: Option<i64>,
    /// STAGES only (each `None` when the session has no such level).
    pub minute_deep: Option<i64>,
    pub minute_light: Option<i64>,
    pub minute_rem: Option<i64>,
    pub minute_wake: Option<i64>,
    pub levels: Vec<SleepLevel>,
}

/// `heart_rate_variability_daily`.
#[derive(Clone, Debug, PartialEq)]
pub struct HeartRateVariabilityDay {
    pub date: NaiveDate,
    pub daily_rmssd: f64,
    pub deep_rmssd: f64,
}

/// `oxygen_saturation_daily`.
#[derive(Clone, Debug, PartialEq)]
pub struct OxygenSaturationDay {
    pub date: NaiveDate,
    pub average: f64,
    pub lower_bound: f64,
    pub upper_bound: f64,
}

/// `active_zone_minutes_daily`: earned minutes (cardio and peak count twice).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActiveZoneMinutesDay {
    pub date: NaiveDate,
    pub fat_burn: i64,
    pub cardio: i64,
    pub peak: i64,
    pub total: i64,
}

/// `device`: one paired device at the current synthetic clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairedDevice {
    pub device_id: String,
    /// `High`, `Medium`, `Low` or `Empty`.
    pub battery: String,
    pub battery_level: i64,
    pub device_version: String,
    /// `TRACKER` or `SCALE`.
    pub device_type: String,
    pub last_sync_time: DateTime<Utc>,
}

pub(crate) fn session_truth(p: &crate::generator::Profile, s: &Generated) -> SleepSession {
    let stages = s.kind == SleepKind::Stages;
    let m = |level: &str| s.level_minutes(level);
    SleepSession {
        session_id: s.id.to_string(),
        sleep_date: s.date,
        is_main_sleep: s.main,
        start: from_unix(s.start),
        start_utc_offset_seconds: p.offset_at(s.start),
        end: from_unix(s.end),
        end_utc_offset_seconds: p.offset_at(s.end),
        minute_in_bed: s.minutes_in_bed(),
        minute_asleep: s.minutes_asleep(),
        minute_after_wakeup: 0,
        minute_awake: s.minutes_awake(),
        minute_restless: if stages { None } else { m("restless") },
        minute_deep: if stages { m("deep") } else { None },
        minute_light: if stages { m("light") } else { None },
        minute_rem: if stages { m("rem") } else { None },
        minute_wake: if stages { m("wake") } else { None },
        levels: s
            .stages
            .iter()
            .map(|l| SleepLevel {
                level: l.level.to_owned(),
                start: from_unix(l.start),
                utc_offset_seconds: p.offset_at(l.start),
                duration_seconds: l.secs,
            })
            .collect(),
    }
}

/// The sessions ending on local `date` (main sleep and nap), oldest first, as served.
pub fn sleep_sessions(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
    restate_version: u32,
) -> Vec<SleepSession> {
    let Some((p, window)) = profile(config, participant_id) else {
        return Vec::new();
    };
    let gone = |end: i64| deleted(config, participant_id, IntradayType::Sleep, end);
    p.sleep_sessions(window, date, restate_version, &gone)
        .iter()
        .map(|s| session_truth(&p, s))
        .collect()
}

/// Local dates that can have sessions and nightly metrics: from the date of `sync_from` to
/// the date of the latest sync.
pub fn sleep_dates(config: &SimConfig, participant_id: &str) -> Vec<NaiveDate> {
    profile(config, participant_id)
        .map(|(p, w)| p.sleep_dates(w))
        .unwrap_or_default()
}

fn nightly(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
    restate_version: u32,
) -> Option<crate::generator::Nightly> {
    let (p, window) = profile(config, participant_id)?;
    p.nightly(window, date, restate_version)
}

/// HRV of the night ending on `date` (only after ≥ 3 h asleep).
pub fn heart_rate_variability(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
    restate_version: u32,
) -> Option<HeartRateVariabilityDay> {
    let (daily, deep) = nightly(config, participant_id, date, restate_version)?.hrv?;
    Some(HeartRateVariabilityDay {
        date,
        daily_rmssd: daily,
        deep_rmssd: deep,
    })
}

/// SpO2 of the night ending on `date` (only after ≥ 3 h asleep).
pub fn oxygen_saturation(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
    restate_version: u32,
) -> Option<OxygenSaturationDay> {
    let s = nightly(config, participant_id, date, restate_version)?.spo2?;
    Some(OxygenSaturationDay {
        date,
        average: s.average,
        lower_bound: s.lower,
        upper_bound: s.upper,
    })
}

/// Breaths per minute of the night ending on `date`.
pub fn breathing_rate(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
    restate_version: u32,
) -> Option<f64> {
    nightly(config, participant_id, date, restate_version)?.breathing
}

/// Skin temperature relative to the baseline (°C) as a Google client computes it:
/// `nightlyTemperatureCelsius − baselineTemperatureCelsius` in `f64` (within 1e-13 of the
/// one-decimal legacy `nightlyRelative`); `None` without a sensor or with a `"NaN"`
/// baseline.
pub fn skin_temperature(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
    restate_version: u32,
) -> Option<f64> {
    let t = nightly(config, participant_id, date, restate_version)?.skin?;
    Some(t.nightly - t.baseline?)
}

/// Legacy `nightlyRelative` (one decimal), also on nights whose Google baseline is NaN.
pub(crate) fn skin_temperature_relative(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
    restate_version: u32,
) -> Option<f64> {
    Some(
        nightly(config, participant_id, date, restate_version)?
            .skin?
            .relative,
    )
}

/// Active zone minutes of local day `date`; `None` when the day has no data or no minute
/// in any zone.
pub fn active_zone_minutes(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
    restate_version: u32,
) -> Option<ActiveZoneMinutesDay> {
    let [fat, cardio, peak] =
        restated_day(config, participant_id, date, restate_version)?.zone_minutes_azm()?;
    Some(ActiveZoneMinutesDay {
        date,
        fat_burn: fat,
        cardio: 2 * cardio,
        peak: 2 * peak,
        total: fat + 2 * cardio + 2 * peak,
    })
}

/// The participant's paired devices at the current synthetic clock, as
/// `pairedDevices.list` serves them.
pub fn paired_devices(config: &SimConfig, participant_id: &str) -> Vec<PairedDevice> {
    let Some((p, window)) = profile(config, participant_id) else {
        return Vec::new();
    };
    p.devices(from_unix(window.to))
        .into_iter()
        .map(|d| PairedDevice {
            device_id: d.id.to_string(),
            battery: battery_status(d.battery_level).to_owned(),
            battery_level: i64::from(d.battery_level),
            device_version: d.version.to_owned(),
            device_type: d.device_type.to_owned(),
            last_sync_time: d.last_sync,
        })
        .collect()
}
