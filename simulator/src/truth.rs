//! Ground truth: exactly what the HTTP API serves, computed from the same deterministic
//! generator without a server.
//!
//! Values are given in the units a client ends up with after the documented
//! conversions: distance km = `millimetersSum / 1e6`, elevation m =
//! `gainMillimetersSum / 1000`, minutes = `"NNNs"` / 60. A member the API omits because it
//! is zero (proto3 JSON) is `0` here.
//!
//! Every function takes the restatement version of the day (from
//! `GET /_sim/restatements`, 0 when never restated) and reads the synthetic clock's
//! advance from [`SimConfig::advance_minutes`] (set it to `advance_minutes` from
//! `GET /_sim/clock` after calling `POST /_sim/advance`). Unknown participants yield
//! empty results.
//!
//! Provider-side deletions ([`SimConfig::deletions`], from `GET /_sim/deletions`) remove
//! intraday points only: [`heart_rate`], [`steps`] and [`legacy::heart_rate_minutes`]
//! exclude them (the legacy steps intraday serves them as zero minutes); daily values are
//! aggregated from the generator and do not change.
//!
//! The legacy Fitbit Web API serves the same participants; [`legacy`] has what differs
//! there (1-minute heart rate, the legacy zone model, skin temperature on nights with a
//! `"NaN"` Google baseline).
//!
//! The families of `docs/data-families.md` (sleep sessions, paired devices, HRV, SpO2,
//! breathing rate, skin temperature, active zone minutes) are in `families`, re-exported
//! here.
//!
//! Wear time and the latest sync, what the completeness ledger (`docs/coverage.md`) and
//! cohort compliance are computed from, are in `wear`, re-exported here: [`worn_minutes`]
//! (minutes of a local day with a served heart-rate sample; [`legacy::worn_minutes`] on
//! the legacy API), [`latest_sync`] and [`wear_days`] (each day's wear with the plan behind
//! it: not worn, on the charger, a night without the tracker).

use chrono::{DateTime, NaiveDate, Utc};

use crate::clock::{ceil_secs, from_unix, local_day_bounds};
use crate::config::{IntradayType, SimConfig};
use crate::generator::{DaySummary, Profile, Window};

mod families;
pub mod legacy;
mod wear;

pub use families::{
    ActiveZoneMinutesDay, HeartRateVariabilityDay, OxygenSaturationDay, PairedDevice, SleepLevel,
    SleepSession, active_zone_minutes, breathing_rate, heart_rate_variability, oxygen_saturation,
    paired_devices, skin_temperature, sleep_dates, sleep_sessions,
};
pub use wear::{WearDay, latest_sync, wear_days, worn_minutes};

/// One heart-rate sample (`heartRate.sampleTime.physicalTime`, `utcOffset`, `beatsPerMinute`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartRateSample {
    pub time: DateTime<Utc>,
    pub utc_offset_seconds: i32,
    pub bpm: i64,
}

/// One 1-minute steps interval with steps > 0 (`steps.interval.startTime`,
/// `startUtcOffset`, `count`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepsMinute {
    pub start: DateTime<Utc>,
    pub utc_offset_seconds: i32,
    pub steps: i64,
}

/// Daily activity summary of one local day, assembled from the `dailyRollUp` of
/// steps, distance, floors, altitude, total-calories, active-energy-burned,
/// sedentary-period and active-minutes (LIGHT → lightly, MODERATE → fairly,
/// VIGOROUS → very).
#[derive(Clone, Debug, PartialEq)]
pub struct ActivityDay {
    pub date: NaiveDate,
    pub steps: i64,
    pub distance_km: f64,
    pub floors: i64,
    pub elevation_m: f64,
    pub calories_out: f64,
    pub activity_calories: f64,
    pub sedentary_minutes: f64,
    pub lightly_active_minutes: f64,
    pub fairly_active_minutes: f64,
    pub very_active_minutes: f64,
}

/// One heart-rate zone of one local day: thresholds from `daily-heart-rate-zones`,
/// minutes from the `time-in-heart-rate-zone` rollup, kcal from the
/// `calories-in-heart-rate-zone` rollup.
#[derive(Clone, Debug, PartialEq)]
pub struct HeartRateZoneDay {
    pub date: NaiveDate,
    /// `"light"`, `"moderate"`, `"vigorous"` or `"peak"`.
    pub zone_name: String,
    pub min_heart_rate: i64,
    pub max_heart_rate: i64,
    pub minute_in_zone: i64,
    pub calorie_count: f64,
}

fn profile(config: &SimConfig, participant_id: &str) -> Option<(Profile, Window)> {
    let index: usize = participant_id.strip_prefix("sim-")?.parse().ok()?;
    if index == 0 || index > config.participants || participant_id != format!("sim-{index:04}") {
        return None;
    }
    let p = Profile::new(config, index);
    let window = p.window(p.latest_sync(config.until, config.advance_minutes));
    Some((p, window))
}

/// Whether the point of `data_type` at Unix second `t` is one of `config.deletions`.
fn deleted(config: &SimConfig, participant_id: &str, data_type: IntradayType, t: i64) -> bool {
    config
        .deletions
        .iter()
        .any(|d| d.participant == participant_id && d.covers(data_type, t))
}

/// Heart-rate samples with `start <= time < end`, oldest first. Intraday data is never
/// restated; `_restate_version` exists for a uniform signature.
pub fn heart_rate(
    config: &SimConfig,
    participant_id: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    _restate_version: u32,
) -> Vec<HeartRateSample> {
    let Some((p, window)) = profile(config, participant_id) else {
        return Vec::new();
    };
    let keep = |s: &crate::generator::HrSample| {
        !deleted(config, participant_id, IntradayType::HeartRate, s.t)
    };
    let (mut samples, _) = p.hr_desc(window, ceil_secs(start), ceil_secs(end), &keep, usize::MAX);
    samples.reverse();
    samples
        .into_iter()
        .map(|s| HeartRateSample {
            time: from_unix(s.t),
            utc_offset_seconds: s.offset_secs,
            bpm: s.bpm,
        })
        .collect()
}

/// Steps intervals (only those with steps > 0) whose start is in `[start, end)`, oldest
/// first. Intraday data is never restated; `_restate_version` exists for a uniform
/// signature.
pub fn steps(
    config: &SimConfig,
    participant_id: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    _restate_version: u32,
) -> Vec<StepsMinute> {
    let Some((p, window)) = profile(config, participant_id) else {
        return Vec::new();
    };
    let keep = |m: &crate::generator::Minute| {
        !deleted(config, participant_id, IntradayType::Steps, m.index * 60)
    };
    let (mut minutes, _) =
        p.steps_desc(window, ceil_secs(start), ceil_secs(end), &keep, usize::MAX);
    minutes.reverse();
    minutes
        .into_iter()
        .map(|m| StepsMinute {
            start: from_unix(m.index * 60),
            utc_offset_seconds: m.offset_secs,
            steps: m.steps,
        })
        .collect()
}

/// Local day `date`'s daily values at restate version `version`, if the day has data: what
/// every daily truth below is read from.
fn restated_day(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
    version: u32,
) -> Option<DaySummary> {
    let (p, window) = profile(config, participant_id)?;
    Some(p.day_summary(window, date)?.restated(version))
}

/// The activity summary of local day `date`, or `None` when the API serves no rollup
/// point for that day (no complete minute of it lies in `[sync_from, latest_sync)`).
pub fn activity_day(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
    restate_version: u32,
) -> Option<ActivityDay> {
    let s = restated_day(config, participant_id, date, restate_version)?;
    Some(ActivityDay {
        date,
        steps: s.steps,
        distance_km: s.distance_mm as f64 / 1e6,
        floors: s.floors,
        elevation_m: s.elevation_mm as f64 / 1000.0,
        calories_out: s.calories_kcal,
        activity_calories: s.active_kcal,
        sedentary_minutes: (s.sedentary_min * 60) as f64 / 60.0,
        lightly_active_minutes: s.light_min as f64,
        fairly_active_minutes: s.moderate_min as f64,
        very_active_minutes: s.vigorous_min as f64,
    })
}

/// The four heart-rate zones of local day `date` (light, moderate, vigorous, peak), or
/// empty when the day has no data.
pub fn heart_rate_zones(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
    restate_version: u32,
) -> Vec<HeartRateZoneDay> {
    let Some(s) = restated_day(config, participant_id, date, restate_version) else {
        return Vec::new();
    };
    ["light", "moderate", "vigorous", "peak"]
        .iter()
        .enumerate()
        .map(|(z, name)| HeartRateZoneDay {
            date,
            zone_name: (*name).to_owned(),
            min_heart_rate: s.zones[z],
            max_heart_rate: s.zones[z + 1],
            minute_in_zone: s.zone_min[z],
            calorie_count: s.zone_kcal[z],
        })
        .collect()
}

/// The resting heart rate of local day `date` (`daily-resting-heart-rate`), if any.
pub fn resting_heart_rate(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
    restate_version: u32,
) -> Option<i64> {
    restated_day(config, participant_id, date, restate_version)?
        .resting
        .map(|(bpm, _)| bpm)
}

/// Local dates that have daily values (rollup points, resting heart rate, zones),
/// oldest first. The first and last are usually partial days.
pub fn dates(config: &SimConfig, participant_id: &str) -> Vec<NaiveDate> {
    profile(config, participant_id)
        .map(|(p, w)| p.data_dates(w))
        .unwrap_or_default()
}

/// `[start, end)` of local day `date` for the participant (25 hours on a fall-back day).
pub fn local_day_bounds_utc(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    profile(config, participant_id).map(|(p, _)| local_day_bounds(p.tz, date))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restate_changes_daily_values_only() {
        let c = SimConfig::default();
        let date = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        let a = activity_day(&c, "sim-0002", date, 0).unwrap();
        let b = activity_day(&c, "sim-0002", date, 2).unwrap();
        assert_eq!(b.steps, a.steps + 200);
        assert!(b.calories_out > a.calories_out);
        let (start, end) = local_day_bounds_utc(&c, "sim-0002", date).unwrap();
        assert_eq!(
            heart_rate(&c, "sim-0002", start, end, 0),
            heart_rate(&c, "sim-0002", start, end, 2)
        );
        let steps_sum: i64 = steps(&c, "sim-0002", start, end, 0)
            .iter()
            .map(|m| m.steps)
            .sum();
        assert_eq!(steps_sum, a.steps);
    }

    #[test]
    fn unknown_participant_is_empty() {
        let c = SimConfig::default();
        assert!(dates(&c, "sim-0011").is_empty());
        assert!(dates(&c, "sim-1").is_empty());
        assert!(activity_day(&c, "nobody", NaiveDate::MIN, 0).is_none());
    }

    #[test]
    fn advance_extends_data() {
        let mut c = SimConfig::default();
        let before = dates(&c, "sim-0001");
        c.advance_minutes = 24 * 60;
        let after = dates(&c, "sim-0001");
        assert_eq!(after.len(), before.len() + 1);
    }
}
