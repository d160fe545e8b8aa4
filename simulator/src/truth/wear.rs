//! Ground truth of wear time and of the tracker's latest sync: what the completeness ledger
//! (`docs/coverage.md`) computes from the stored data, and the plan it comes from.
//!
//! Wear time is the usual proxy, minutes with at least one heart-rate sample, and counts what
//! the API serves: provider-side deletions of heart rate take minutes out, and only samples
//! before the latest sync count (it moves with the clock's advance and stops at a battery
//! death). The plan ([`WearDay`]) says why a day has little or none
//! (`simulator/src/generator/wear.rs`).

use chrono::{DateTime, NaiveDate, Utc};

use super::{dates, heart_rate, local_day_bounds_utc, profile};
use crate::clock::from_unix;
use crate::config::SimConfig;
use crate::generator::DayWear;

/// How the participant wore the tracker on one local day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WearDay {
    pub date: NaiveDate,
    /// [`worn_minutes`] of the day.
    pub worn_minutes: i64,
    /// The tracker was not worn at all that day (nor the night ending it, nor the night
    /// starting on it): no heart rate, steps, sleep or nightly metrics.
    pub not_worn: bool,
    /// The tracker spent most of the waking day on the charger: from the planned wake time
    /// for 8–16 hours, or (low adherence) until 30 minutes before bedtime.
    pub on_charger: bool,
    /// The night ending that day was spent without the tracker: no main sleep and no
    /// nightly metrics for the day, and no heart rate in [`Self::planned_night`].
    pub night_without_device: bool,
    /// `[start, end)` of the night ending that day as planned: from the previous day's
    /// bedtime to the wake time (a session's own start and end vary around them).
    pub planned_night: (DateTime<Utc>, DateTime<Utc>),
}

/// Minutes of local day `date` with at least one heart-rate sample as the Google Health API
/// serves them: the distinct UTC minutes of [`heart_rate`] within the day's bounds (after
/// deletions, before the latest sync). 0 for an unknown participant.
pub fn worn_minutes(config: &SimConfig, participant_id: &str, date: NaiveDate) -> i64 {
    let Some((start, end)) = local_day_bounds_utc(config, participant_id, date) else {
        return 0;
    };
    let samples = heart_rate(config, participant_id, start, end, 0);
    let mut minutes = samples.iter().map(|s| s.time.timestamp().div_euclid(60));
    let Some(mut last) = minutes.next() else {
        return 0;
    };
    // Samples come oldest first, so a new minute is one that differs from the previous.
    let mut count = 1;
    for minute in minutes {
        if minute != last {
            count += 1;
            last = minute;
        }
    }
    count
}

/// The tracker's latest sync at the current synthetic clock (`advance_minutes` included,
/// never after a battery death): the `lastSyncTime` both paired-devices endpoints report for
/// the tracker, and the end of every family's data. `None` for an unknown participant.
pub fn latest_sync(config: &SimConfig, participant_id: &str) -> Option<DateTime<Utc>> {
    profile(config, participant_id).map(|(_, window)| from_unix(window.to))
}

/// The wear of every local date that has daily values ([`dates`]), oldest first; the first
/// and last are usually partial days. Empty for an unknown participant.
pub fn wear_days(config: &SimConfig, participant_id: &str) -> Vec<WearDay> {
    let Some((p, _)) = profile(config, participant_id) else {
        return Vec::new();
    };
    dates(config, participant_id)
        .into_iter()
        .map(|date| {
            let wear = p.wear(date);
            let (start, end) = p.planned_night(date);
            WearDay {
                date,
                worn_minutes: worn_minutes(config, participant_id, date),
                not_worn: wear == DayWear::NotWorn,
                on_charger: matches!(wear, DayWear::Charger { .. }),
                night_without_device: p.night_without_device(date),
                planned_night: (from_unix(start), from_unix(end)),
            }
        })
        .collect()
}
