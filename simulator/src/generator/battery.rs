//! The tracker's battery: it drains linearly from 100 % to just above empty over a
//! participant-specific number of days and is recharged at the end of each period, so the
//! level a device reports moves with the synthetic clock. Every 13th participant's battery
//! dies for good inside the data window; from then on the tracker never syncs again
//! ([`super::Profile::latest_sync`] is capped at the death), so every family stops there.

use chrono::{DateTime, Duration, Utc};

use super::{Noise, Profile, Tag};

/// Every participant whose index is a multiple of this has a battery that dies.
pub(crate) const DYING_EVERY: usize = 13;

/// The instant the battery of participant `index` dies, if it does: between 45 % and 80 %
/// of the way through the history `[sync_from, sync_from + days)`, on a whole second, so it
/// lies inside the data window whatever the sync lag.
pub(super) fn death(
    noise: Noise,
    index: usize,
    sync_from: DateTime<Utc>,
    days: u32,
) -> Option<DateTime<Utc>> {
    if !index.is_multiple_of(DYING_EVERY) {
        return None;
    }
    let history = i64::from(days) * 86_400;
    let permille = noise.pick(Tag::Battery, 2, 450, 800);
    Some(sync_from + Duration::seconds(history * permille / 1000))
}

impl Profile {
    /// Length of one charge in seconds (3 to 6 days).
    fn charge_secs(&self) -> i64 {
        self.noise.pick(Tag::Battery, 0, 3, 6) * 86_400
    }

    /// Battery level (0–100) of the tracker at instant `at`. A live battery never reads 0
    /// (it is recharged first); a dying one drains towards its death and reads 0 from then.
    pub(crate) fn tracker_battery(&self, at: DateTime<Utc>) -> i32 {
        let charge = self.charge_secs();
        let t = at.timestamp();
        let level = match self.battery_death {
            Some(death) => {
                let left = (death.timestamp() - t).max(0);
                // Rounded up: only the death itself reads empty.
                ((left * 100 + charge - 1) / charge).min(100)
            }
            None => {
                let phase = self.noise.pick(Tag::Battery, 1, 0, charge - 1);
                let used = (t - phase).rem_euclid(charge);
                100 - used * 100 / charge
            }
        };
        level as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;

    #[test]
    fn thirteenth_participant_dies_inside_the_window() {
        let c = SimConfig {
            participants: 26,
            ..SimConfig::default()
        };
        for i in 1..=26 {
            let p = Profile::new(&c, i);
            let latest = p.latest_sync(c.until, 0);
            let level = p.tracker_battery(latest);
            if i % 13 == 0 {
                let death = p.battery_death.unwrap();
                assert!(p.sync_from < death && death < c.until - Duration::hours(1));
                assert_eq!(latest, death);
                assert_eq!(p.latest_sync(c.until, 10_000), death);
                assert_eq!(level, 0);
                assert!(p.tracker_battery(death - Duration::hours(1)) > 0);
            } else {
                assert!(p.battery_death.is_none());
                assert!((1..=100).contains(&level), "{level}");
                // It drains as time passes (unless a recharge happened in between).
                let later = p.tracker_battery(latest + Duration::hours(12));
                assert!(later < level || later > 80, "{level} -> {later}");
            }
        }
    }
}
