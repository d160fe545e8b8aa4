//! When the tracker is on the wrist.
//!
//! Wear time (minutes with heart-rate samples) is what the completeness ledger and cohort
//! compliance (≥ 10 h on ≥ 4 of 7 days, `docs/coverage.md`) are computed from, so the
//! simulator plants days that fail it. Every rule is keyed by the participant and the
//! **local** date, like the daily plan:
//! * **the morning off-wrist window**: on an ordinary day the tracker comes off 20–60 minutes
//!   after waking for 15–40 minutes (a shower);
//! * **nights without a device** (about 1 in 10, chosen in `sleep.rs`): the tracker is off
//!   from the previous day's planned bedtime to the planned wake time, exactly the minutes
//!   the minute model would call asleep, so the night has neither a main sleep nor heart
//!   rate;
//! * **charger days**: the tracker goes on the charger at the planned wake time and back on
//!   8–16 hours later, at the latest 30 minutes before bedtime (the earliest a main sleep
//!   starts), so a charger day has between 8 and 16 hours of wear with the night: below
//!   10 hours on about a quarter of them;
//! * **days not worn at all**: off from the previous day's planned bedtime to the next day's
//!   planned wake time, so the local day has no minute of wear and neither the night that
//!   ends it nor the one that starts on it has a session (it would overlap the day);
//! * **ordinary participants** have at most one charger or not-worn day a week (weeks are
//!   7-day blocks with a per-participant phase): 9 weeks in 10 have one, a not-worn day 2
//!   times in 3, so about 1 day in 12 is not worn and 1 in 22 is a charger day. Only those
//!   days can fall below 10 hours (any other keeps more than 12, even between two nights
//!   without the tracker), and 7 consecutive days touch at most two weeks, so an ordinary
//!   participant is compliant in every 7-day window with at most one partial day (the
//!   history's first or last), until a battery dies;
//! * **low-adherence participants** (index 4 modulo 5: sim-0004, sim-0009, sim-0014, …)
//!   wear the tracker normally on 3 fixed days of their week; on the other 4 it is not worn
//!   at all (1 in 4), or on the charger from waking until 30 minutes before bedtime, or not
//!   worn at all when the night alone would still make 10 hours of wear. Any 7 consecutive
//!   days then hold at most 3 days with 10 hours: they are never compliant.
//!
//! A minute off the wrist has no steps and no heart rate and is sedentary, so daily values,
//! zones, resting heart rate (none on a day without wear), sleep and the nightly metrics
//! follow from the same decision. No session overlaps a span off the wrist: a main sleep
//! ends by the time the tracker comes off in the morning, the charger is left 30 minutes
//! before bedtime and a nap that would fall on the charger is not recorded. (A restated main
//! sleep, up to 2 hours longer, may reach into the morning window: restatements rewrite
//! summaries, not samples.)

use chrono::{Datelike, Duration, NaiveDate, NaiveTime};

use super::{DayPlan, Profile, Tag};
use crate::clock::{local_day_bounds, resolve_local};

/// Participants whose index leaves remainder [`LOW_ADHERENCE_REMAINDER`] modulo this have
/// low adherence.
const LOW_ADHERENCE_EVERY: usize = 5;
const LOW_ADHERENCE_REMAINDER: usize = 4;

/// The days of a low-adherence participant's week (`0..7`, after the phase) worn normally.
const LOW_ADHERENCE_WORN: [i64; 3] = [0, 2, 4];

/// Share of a low-adherence participant's other days not worn at all (the rest are charger
/// days).
const LOW_ADHERENCE_NOT_WORN: f64 = 0.25;

/// Share of an ordinary participant's weeks with one charger or not-worn day.
const DISRUPTED_WEEKS: f64 = 0.9;

/// Share of those days on which the tracker is not worn at all (the rest are charger days).
const NOT_WORN_SHARE: f64 = 0.65;

/// How long an ordinary charger day keeps the tracker off the wrist (minutes): below
/// 10 hours of wear when it is more than 14 hours.
const CHARGER_MINUTES: (i64, i64) = (8 * 60, 16 * 60);

/// Latest a charger day's tracker is put back on, before the planned bedtime (minutes): the
/// earliest a main sleep starts.
const BACK_BEFORE_BED: i64 = 30;

/// Cohort compliance needs 10 hours of wear on a day (`docs/coverage.md`).
const COMPLIANT_MINUTES: i64 = 10 * 60;

/// How the tracker is worn on one local day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DayWear {
    /// On the wrist except for the morning off-wrist window.
    Worn,
    /// On the charger from the planned wake time until the wall minute `until`.
    Charger { until: i64 },
    /// Not worn from the previous day's bedtime to the next day's wake time.
    NotWorn,
}

impl Profile {
    /// Whether the participant is one of the low-adherence subset.
    pub(crate) fn low_adherence(&self) -> bool {
        self.index % LOW_ADHERENCE_EVERY == LOW_ADHERENCE_REMAINDER
    }

    /// `(week, day of the week)` of local `date` in the participant's own weeks.
    fn wear_week(&self, date: NaiveDate) -> (i64, i64) {
        let phase = self.noise.pick(Tag::Wear, -1, 0, 6);
        let n = i64::from(date.num_days_from_ce()) + phase;
        (n.div_euclid(7), n.rem_euclid(7))
    }

    /// How the tracker is worn on local `date`, whose plan is `plan`.
    pub(super) fn day_wear(&self, date: NaiveDate, plan: &DayPlan) -> DayWear {
        let (week, day) = self.wear_week(date);
        let back_on = plan.bed - BACK_BEFORE_BED;
        if self.low_adherence() {
            if LOW_ADHERENCE_WORN.contains(&day) {
                return DayWear::Worn;
            }
            let key = i64::from(date.num_days_from_ce());
            if self.noise.unit(Tag::Wear, key * 8 + 4) < LOW_ADHERENCE_NOT_WORN {
                return DayWear::NotWorn;
            }
            // Worn until waking and from 30 minutes before bed: the night's wear alone, with
            // a 25-hour day's extra hour, may leave no room below 10 hours.
            let (start, end) = local_day_bounds(self.tz, date);
            let extra = (end - start).num_minutes() - 24 * 60;
            let worn = plan.wake + extra + 24 * 60 - back_on;
            return if worn < COMPLIANT_MINUTES {
                DayWear::Charger { until: back_on }
            } else {
                DayWear::NotWorn
            };
        }
        let key = |k: i64| week * 8 + k;
        if self.noise.unit(Tag::Wear, key(0)) >= DISRUPTED_WEEKS
            || self.noise.pick(Tag::Wear, key(1), 0, 6) != day
        {
            return DayWear::Worn;
        }
        if self.noise.unit(Tag::Wear, key(2)) < NOT_WORN_SHARE {
            return DayWear::NotWorn;
        }
        let (lo, hi) = CHARGER_MINUTES;
        let minutes = self.noise.pick(Tag::Wear, key(3), lo, hi);
        DayWear::Charger {
            until: (plan.wake + minutes).min(back_on),
        }
    }

    /// [`Self::day_wear`] of local `date`.
    pub(crate) fn wear(&self, date: NaiveDate) -> DayWear {
        self.day_wear(date, &self.day_plan(date))
    }

    /// Whether the night ending on local `date` is spent without the tracker: one of the
    /// ~1 in 10 nights without a device, or a night next to a day not worn at all.
    pub(crate) fn night_without_device(&self, date: NaiveDate) -> bool {
        self.sleep_unit(date, 0) < 0.1
            || self.wear(date) == DayWear::NotWorn
            || date
                .pred_opt()
                .is_some_and(|prev| self.wear(prev) == DayWear::NotWorn)
    }

    /// The daytime span off the wrist of a day worn `wear`, in wall minutes `[from, to)`: the
    /// morning window, the time on the charger, or the whole day.
    pub(super) fn daytime_off_wrist(plan: &DayPlan, wear: DayWear) -> (i64, i64) {
        match wear {
            DayWear::Worn => (plan.off_wrist_start, plan.off_wrist_end),
            DayWear::Charger { until } => (plan.wake, until),
            DayWear::NotWorn => (0, 25 * 60),
        }
    }

    /// [`Self::daytime_off_wrist`] of local `date`.
    pub(super) fn daytime_off_wrist_of(&self, date: NaiveDate) -> (i64, i64) {
        let plan = self.day_plan(date);
        Self::daytime_off_wrist(&plan, self.day_wear(date, &plan))
    }

    /// Whether the tracker is on the wrist at wall minute `minute_of_day` of local `date`
    /// (`plan` and `wear` are that day's).
    pub(super) fn worn_at(
        &self,
        date: NaiveDate,
        minute_of_day: i64,
        plan: &DayPlan,
        wear: DayWear,
    ) -> bool {
        if wear == DayWear::NotWorn {
            return false;
        }
        if minute_of_day < plan.wake {
            return !self.night_without_device(date);
        }
        if minute_of_day >= plan.bed {
            return date
                .succ_opt()
                .is_some_and(|next| !self.night_without_device(next));
        }
        let (from, to) = Self::daytime_off_wrist(plan, wear);
        !(from..to).contains(&minute_of_day)
    }

    /// The planned sleep span of the night ending on local `date` as Unix seconds
    /// `[previous day's bedtime, wake time)`: the minutes the minute model calls asleep, off
    /// the wrist on a night without a device.
    pub(crate) fn planned_night(&self, date: NaiveDate) -> (i64, i64) {
        let prev = date.pred_opt().unwrap_or(date);
        let at = |day: NaiveDate, minutes: i64| {
            resolve_local(
                self.tz,
                day.and_time(NaiveTime::MIN) + Duration::minutes(minutes),
                false,
            )
            .timestamp()
        };
        (
            at(prev, self.day_plan(prev).bed),
            at(date, self.day_plan(date).wake),
        )
    }

    /// When the tracker comes off the wrist in the morning of local `date`, in Unix seconds:
    /// the morning off-wrist start, or the wake time of a charger day. A main sleep ending on
    /// `date` ends by then.
    pub(super) fn off_wrist_from(&self, date: NaiveDate) -> i64 {
        let (from, _) = self.daytime_off_wrist_of(date);
        resolve_local(
            self.tz,
            date.and_time(NaiveTime::MIN) + Duration::minutes(from),
            false,
        )
        .timestamp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;

    #[test]
    fn low_adherence_is_every_fifth_from_the_fourth() {
        let c = SimConfig::default();
        let low: Vec<usize> = (1..=10)
            .filter(|&i| Profile::new(&c, i).low_adherence())
            .collect();
        assert_eq!(low, [4, 9]);
    }

    #[test]
    fn ordinary_weeks_have_at_most_one_disrupted_day_and_low_adherence_four() {
        for seed in [42, 7, 2026] {
            let c = SimConfig {
                seed,
                ..SimConfig::default()
            };
            let first = NaiveDate::from_ymd_opt(2026, 6, 1).unwrap();
            let (mut not_worn, mut charger, mut days) = (0, 0, 0);
            for i in 1..=10 {
                let p = Profile::new(&c, i);
                let wear: Vec<DayWear> = first.iter_days().take(364).map(|d| p.wear(d)).collect();
                for week in wear.windows(7) {
                    let off = week.iter().filter(|w| **w != DayWear::Worn).count();
                    if p.low_adherence() {
                        assert_eq!(off, 4, "{} seed {seed}", p.id);
                    } else {
                        assert!(off <= 2, "{} seed {seed}", p.id);
                    }
                }
                if !p.low_adherence() {
                    days += wear.len();
                    not_worn += wear.iter().filter(|w| **w == DayWear::NotWorn).count();
                    charger += wear
                        .iter()
                        .filter(|w| matches!(w, DayWear::Charger { .. }))
                        .count();
                }
            }
            // About 1 day in 12 not worn, 1 in 22 on the charger.
            let share = |n: usize| n as f64 / days as f64;
            assert!((0.06..0.11).contains(&share(not_worn)), "{not_worn}/{days}");
            assert!((0.025..0.07).contains(&share(charger)), "{charger}/{days}");
        }
    }

    /// Minutes of local `date` on the wrist, ignoring the data window.
    fn worn_minutes(p: &Profile, date: NaiveDate) -> i64 {
        let (start, end) = local_day_bounds(p.tz, date);
        let (first, end) = (start.timestamp() / 60, end.timestamp() / 60);
        p.minutes(first, end).filter(|m| m.worn).count() as i64
    }

    #[test]
    fn wear_hours_of_each_kind_of_day() {
        let (mut low, mut charger) = (0, 0);
        for seed in [42, 7] {
            let c = SimConfig {
                seed,
                ..SimConfig::default()
            };
            // Eight weeks across the US DST end.
            let first = NaiveDate::from_ymd_opt(2026, 10, 5).unwrap();
            for i in 1..=10 {
                let p = Profile::new(&c, i);
                for date in first.iter_days().take(56) {
                    let worn = worn_minutes(&p, date);
                    if p.low_adherence() {
                        if p.wear(date) != DayWear::Worn {
                            assert!(worn < COMPLIANT_MINUTES, "{} {date}: {worn}", p.id);
                        }
                        continue;
                    }
                    // Both nights touching the day worn.
                    let nights = !p.night_without_device(date)
                        && !p.night_without_device(date.succ_opt().unwrap());
                    match p.wear(date) {
                        DayWear::Worn => assert!(worn > 12 * 60, "{} {date}: {worn}", p.id),
                        DayWear::NotWorn => assert_eq!(worn, 0, "{} {date}", p.id),
                        DayWear::Charger { .. } if nights => {
                            let hours = 8 * 60..=17 * 60;
                            assert!(hours.contains(&worn), "{} {date}: {worn}", p.id);
                            charger += 1;
                            low += i32::from(worn < COMPLIANT_MINUTES);
                        }
                        DayWear::Charger { .. } => {}
                    }
                }
            }
        }
        assert!(low > 0 && low < charger, "{low} of {charger}");
    }
}
