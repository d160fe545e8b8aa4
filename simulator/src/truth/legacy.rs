//! Ground truth of the legacy Fitbit Web API mode.
//!
//! The legacy API serves the same participants from the same generator, so most of its
//! values are the Google truth:
//! * the daily activity summary (`activities/date/{date}.json`) is
//!   [`activity_day`](super::activity_day) of the local date (kcal rounded to integers
//!   half away from zero; distance km and elevation m exactly);
//! * steps intraday is [`steps`](super::steps) (the minutes with steps > 0; the served
//!   dataset also has zero minutes);
//! * `1sec` heart rate is [`heart_rate`](super::heart_rate) (every raw sample);
//! * resting heart rate is [`resting_heart_rate`](super::resting_heart_rate).
//!
//! * sleep sessions are [`sleep_sessions`](super::sleep_sessions) (the same ids, levels,
//!   seconds and summary minutes; the API sends local times without offset);
//! * HRV, SpO2, breathing rate, active zone minutes and devices are the Google truth.
//!
//! What differs: `1min` heart rate ([`heart_rate_minutes`]) and the wear time counted from
//! it ([`worn_minutes`], equal to the Google one), the legacy zone model
//! ([`heart_rate_zones`]) and skin temperature ([`skin_temperature`]). The encodedId is
//! [`crate::SimParticipant::encoded_id`].

use chrono::{DateTime, NaiveDate, Utc};

use super::{HeartRateSample, HeartRateZoneDay, profile, restated_day};
use crate::clock::{ceil_secs, from_unix};
use crate::config::{IntradayType, SimConfig};
use crate::legacy::wire::legacy_zone;

/// The legacy `1min` heart rate for minutes whose start is in `[start, end)`, oldest
/// first: one point per minute that has samples inside `[sync_from, latest_sync)`,
/// `time` = the minute's start, `bpm` = the rounded (half away from zero) mean of those
/// samples. The API labels each point with the minute's wall-clock `HH:mm:00` (local, or
/// UTC with `timezone=UTC`).
pub fn heart_rate_minutes(
    config: &SimConfig,
    participant_id: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<HeartRateSample> {
    let Some((p, window)) = profile(config, participant_id) else {
        return Vec::new();
    };
    let keep = |t: i64| !super::deleted(config, participant_id, IntradayType::HeartRate, t);
    p.hr_minute_means(window, ceil_secs(start), ceil_secs(end), &keep)
        .into_iter()
        .map(|(m, bpm)| HeartRateSample {
            time: from_unix(m.index * 60),
            utc_offset_seconds: m.offset_secs,
            bpm,
        })
        .collect()
}

/// Minutes of local day `date` with a point in the legacy `1min` heart rate
/// ([`heart_rate_minutes`] over the day's bounds): the legacy API's wear time, equal to the
/// Google [`super::worn_minutes`]. 0 for an unknown participant.
pub fn worn_minutes(config: &SimConfig, participant_id: &str, date: NaiveDate) -> i64 {
    super::local_day_bounds_utc(config, participant_id, date).map_or(0, |(start, end)| {
        heart_rate_minutes(config, participant_id, start, end).len() as i64
    })
}

/// The four legacy zones of local day `date` (`"out of range"`, `"fat burn"`,
/// `"cardio"`, `"peak"`), or empty when the day has no data.
///
/// Mapping from the Google zones of [`super::heart_rate_zones`]: Out of Range = worn
/// minutes below the MODERATE threshold (below LIGHT plus LIGHT; min 30, max the MODERATE
/// minimum), Fat Burn = MODERATE, Cardio = VIGOROUS, Peak = PEAK (max 220). Restatements
/// move each zone by +1 minute / +5 kcal and each threshold by +1 bpm, as on the Google
/// side (Out of Range's 30 and Peak's 220 stay).
pub fn heart_rate_zones(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
    restate_version: u32,
) -> Vec<HeartRateZoneDay> {
    let Some(day) = restated_day(config, participant_id, date, restate_version) else {
        return Vec::new();
    };
    ["out of range", "fat burn", "cardio", "peak"]
        .iter()
        .enumerate()
        .map(|(z, name)| {
            let (min, max, minutes, kcal) = legacy_zone(&day, z);
            HeartRateZoneDay {
                date,
                zone_name: (*name).to_owned(),
                min_heart_rate: min,
                max_heart_rate: max,
                minute_in_zone: minutes,
                calorie_count: kcal,
            }
        })
        .collect()
}

/// The resting heart rate of local day `date` (`restingHeartRate`), if any: the same as
/// the Google [`super::resting_heart_rate`].
pub fn resting_heart_rate(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
    restate_version: u32,
) -> Option<i64> {
    super::resting_heart_rate(config, participant_id, date, restate_version)
}

/// The legacy `nightlyRelative` of the night ending on `date` (one decimal): the Google
/// [`super::skin_temperature`] up to 1e-13, and also on nights whose Google baseline is
/// `"NaN"` (Google serves no usable value there, the legacy API does).
pub fn skin_temperature(
    config: &SimConfig,
    participant_id: &str,
    date: NaiveDate,
    restate_version: u32,
) -> Option<f64> {
    super::families::skin_temperature_relative(config, participant_id, date, restate_version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::truth;

    #[test]
    fn minutes_are_sample_means_and_zones_partition_worn_minutes() {
        let c = SimConfig {
            participants: 2,
            days: 2,
            fine_hr_every: 2,
            ..SimConfig::default()
        };
        // Days that lie completely inside the data window.
        for (id, day) in [("sim-0001", 3), ("sim-0002", 2)] {
            let date = NaiveDate::from_ymd_opt(2026, 11, day).unwrap();
            let (start, end) = truth::local_day_bounds_utc(&c, id, date).unwrap();
            let minutes = heart_rate_minutes(&c, id, start, end);
            let samples = truth::heart_rate(&c, id, start, end, 0);
            assert!(minutes.len() > 1000, "{}", minutes.len());
            for m in minutes.iter().step_by(97) {
                let inside: Vec<i64> = samples
                    .iter()
                    .filter(|s| s.time >= m.time && s.time < m.time + chrono::Duration::minutes(1))
                    .map(|s| s.bpm)
                    .collect();
                let mean = inside.iter().sum::<i64>() as f64 / inside.len() as f64;
                assert_eq!(m.bpm, mean.round() as i64);
            }
            let legacy = heart_rate_zones(&c, id, date, 0);
            let google = truth::heart_rate_zones(&c, id, date, 0);
            assert_eq!(legacy[1].minute_in_zone, google[1].minute_in_zone);
            assert_eq!(legacy[3].max_heart_rate, 220);
            assert_eq!(legacy[0].max_heart_rate, legacy[1].min_heart_rate);
            assert!(legacy[0].minute_in_zone >= google[0].minute_in_zone);
            // Every minute with heart rate is in exactly one legacy zone.
            let total: i64 = legacy.iter().map(|z| z.minute_in_zone).sum();
            assert_eq!(total as usize, minutes.len());
        }
    }
}
