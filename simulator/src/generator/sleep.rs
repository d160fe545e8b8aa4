//! Sleep sessions, keyed by the local date on which they **end** (the All of Us
//! `sleep_date`, Fitbit's `dateOfSleep`).
//!
//! Per participant and night:
//! * a main sleep on every night spent with the tracker (`wear.rs`: about 1 in 10 nights
//!   is a "night without a device", and the two nights around a day not worn at all have
//!   none either), starting near the previous day's planned bedtime (21:30–00:30 local; a
//!   start that would fall in a DST fall-back or spring-forward hour moves 30 minutes on
//!   until it is unambiguous) and lasting 6–9 hours, but ending by the time the tracker
//!   comes off in the morning, so sessions cross midnight and, on DST nights, the change of
//!   offset; about 1 night in 12 is cut short (2–3 hours);
//! * a nap on about 1 in 5 days (13:00–16:00 local, 20–90 minutes), not on a day not worn
//!   and not while the tracker is on the charger;
//! * mostly STAGES sessions (deep/light/rem/wake); about 1 in 7 main sleeps, and every
//!   nap, are CLASSIC (asleep/restless/awake).
//!
//! Levels tile the session exactly in whole minutes (the first starts at the session start,
//! each next one where the previous ended, the last ends at the session end), so every
//! summary minute count is an exact sum of level durations:
//! * in bed = session minutes; after wake-up and to fall asleep = 0;
//! * STAGES: asleep = deep + light + rem, awake = wake;
//! * CLASSIC: asleep = asleep, awake = awake + restless, restless = restless;
//! * a level the session does not have has no minutes at all (not 0) and is absent from
//!   the summaries.
//!
//! A restatement (version n > 0) of the end date lengthens the main sleep's last level by
//! `min(10·n, 120)` minutes (the session keeps its id and its date). The session id is a
//! number built from the participant index and the start minute, the same on both
//! providers and well below 2^53.

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};

use super::{Profile, Tag, Window};
use crate::clock::{from_unix, local, offset_secs, resolve_local};

/// Stage sequence of STAGES sessions: (level, min minutes, max minutes), cycled.
const STAGES: [(&str, i64, i64); 5] = [
    ("light", 10, 40),
    ("deep", 10, 30),
    ("light", 5, 25),
    ("rem", 5, 25),
    ("wake", 1, 8),
];

/// CLASSIC sessions open with a short `awake`, then cycle through these.
const CLASSIC: [(&str, i64, i64); 4] = [
    ("asleep", 5, 40),
    ("restless", 1, 4),
    ("asleep", 10, 60),
    ("awake", 1, 3),
];

/// Longest restatement extension of a main sleep, in minutes.
const MAX_RESTATE_MINUTES: i64 = 120;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SleepKind {
    Stages,
    Classic,
}

/// One level of a session: `start` in Unix seconds, `secs` long.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SleepStage {
    pub level: &'static str,
    pub start: i64,
    pub secs: i64,
}

/// One generated session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SleepSession {
    pub id: u64,
    pub date: NaiveDate,
    pub main: bool,
    pub kind: SleepKind,
    /// Unix seconds.
    pub start: i64,
    pub end: i64,
    pub stages: Vec<SleepStage>,
}

impl SleepSession {
    /// Whole minutes of `level`, `None` when the session has no such level.
    pub(crate) fn level_minutes(&self, level: &str) -> Option<i64> {
        let mut found = false;
        let secs: i64 = self
            .stages
            .iter()
            .filter(|s| s.level == level)
            .inspect(|_| found = true)
            .map(|s| s.secs)
            .sum();
        found.then_some(secs / 60)
    }

    /// How many levels of `level` the session has.
    pub(crate) fn level_count(&self, level: &str) -> i64 {
        self.stages.iter().filter(|s| s.level == level).count() as i64
    }

    pub(crate) fn minutes_in_bed(&self) -> i64 {
        (self.end - self.start) / 60
    }

    pub(crate) fn minutes_asleep(&self) -> i64 {
        let m = |l| self.level_minutes(l).unwrap_or(0);
        match self.kind {
            SleepKind::Stages => m("deep") + m("light") + m("rem"),
            SleepKind::Classic => m("asleep"),
        }
    }

    pub(crate) fn minutes_awake(&self) -> i64 {
        let m = |l| self.level_minutes(l).unwrap_or(0);
        match self.kind {
            SleepKind::Stages => m("wake"),
            SleepKind::Classic => m("awake") + m("restless"),
        }
    }

    /// The level names of this kind of session, in summary order.
    pub(crate) fn level_names(&self) -> &'static [&'static str] {
        match self.kind {
            SleepKind::Stages => &["deep", "light", "rem", "wake"],
            SleepKind::Classic => &["asleep", "restless", "awake"],
        }
    }

    /// Restatement `version` of a main sleep: the last level (and the session) ends later.
    fn restated(mut self, version: u32) -> Self {
        if version == 0 || !self.main {
            return self;
        }
        let extra = (10 * i64::from(version)).min(MAX_RESTATE_MINUTES) * 60;
        if let Some(last) = self.stages.last_mut() {
            last.secs += extra;
            self.end += extra;
        }
        self
    }
}

/// `wall` in `tz`, moved on by 30 minutes until it names exactly one instant.
fn unambiguous(tz: chrono_tz::Tz, mut wall: NaiveDateTime) -> i64 {
    for _ in 0..12 {
        if let chrono::LocalResult::Single(t) = tz.from_local_datetime(&wall) {
            return t.timestamp();
        }
        wall += Duration::minutes(30);
    }
    resolve_local(tz, wall, false).timestamp()
}

impl Profile {
    pub(super) fn sleep_unit(&self, date: NaiveDate, k: i64) -> f64 {
        self.noise
            .unit(Tag::Sleep, i64::from(date.num_days_from_ce()) * 16 + k)
    }

    fn sleep_pick(&self, date: NaiveDate, k: i64, lo: i64, hi: i64) -> i64 {
        self.noise.pick(
            Tag::Sleep,
            i64::from(date.num_days_from_ce()) * 16 + k,
            lo,
            hi,
        )
    }

    fn session_id(&self, start: i64) -> u64 {
        26_000_000_000_000 + self.index as u64 * 1_000_000_000 + start.div_euclid(60) as u64
    }

    /// Levels tiling `[start, start + minutes·60)`.
    fn tile(&self, kind: SleepKind, start: i64, minutes: i64) -> Vec<SleepStage> {
        let mut out = Vec::new();
        let mut t = 0i64;
        let mut k = 0usize;
        let end = minutes;
        if kind == SleepKind::Classic {
            let first = self.noise.pick(Tag::Stage, start * 1024, 1, 3).min(end);
            out.push(("awake", first));
            t = first;
        }
        while t < end {
            let (level, lo, hi) = match kind {
                SleepKind::Stages => STAGES[k % STAGES.len()],
                SleepKind::Classic => CLASSIC[k % CLASSIC.len()],
            };
            let len = self
                .noise
                .pick(Tag::Stage, start * 1024 + 1 + k as i64, lo, hi)
                .min(end - t);
            out.push((level, len));
            t += len;
            k += 1;
        }
        let mut at = start;
        out.into_iter()
            .map(|(level, len)| {
                let stage = SleepStage {
                    level,
                    start: at,
                    secs: len * 60,
                };
                at += len * 60;
                stage
            })
            .collect()
    }

    fn session(
        &self,
        date: NaiveDate,
        main: bool,
        kind: SleepKind,
        start: i64,
        minutes: i64,
    ) -> SleepSession {
        SleepSession {
            id: self.session_id(start),
            date,
            main,
            kind,
            start,
            end: start + minutes * 60,
            stages: self.tile(kind, start, minutes),
        }
    }

    /// The main sleep ending on local `date`, unrestated and ignoring the data window.
    fn main_sleep(&self, date: NaiveDate) -> Option<SleepSession> {
        if self.night_without_device(date) {
            return None;
        }
        let prev = date.pred_opt()?;
        let bed = self.day_plan(prev).bed + self.sleep_pick(date, 1, -30, 30);
        let start = unambiguous(
            self.tz,
            prev.and_time(NaiveTime::MIN) + Duration::minutes(bed),
        );
        let wake = self.day_plan(date).wake + self.sleep_pick(date, 2, -20, 20);
        let wake = resolve_local(
            self.tz,
            date.and_time(NaiveTime::MIN) + Duration::minutes(wake),
            false,
        )
        .timestamp();
        // About 1 night in 12 is cut short (under 3 hours asleep: no HRV or SpO2).
        let minutes = if self.sleep_unit(date, 7) < 0.08 {
            self.sleep_pick(date, 8, 120, 190)
        } else {
            ((wake - start) / 60).clamp(6 * 60, 9 * 60)
        };
        // The tracker comes off after waking: the session ends by then.
        let minutes = minutes.min((self.off_wrist_from(date) - start) / 60);
        let kind = if self.sleep_unit(date, 3) < 0.15 {
            SleepKind::Classic
        } else {
            SleepKind::Stages
        };
        Some(self.session(date, true, kind, start, minutes))
    }

    /// The afternoon nap of local `date`, if any.
    fn nap(&self, date: NaiveDate) -> Option<SleepSession> {
        if self.sleep_unit(date, 4) >= 0.2 {
            return None;
        }
        let from = 13 * 60 + self.sleep_pick(date, 5, 0, 180);
        let minutes = self.sleep_pick(date, 6, 20, 90);
        // No nap is recorded while the tracker is on the charger (or not worn that day).
        let (off_from, off_to) = self.daytime_off_wrist_of(date);
        if from < off_to && off_from < from + minutes {
            return None;
        }
        let start = unambiguous(
            self.tz,
            date.and_time(NaiveTime::MIN) + Duration::minutes(from),
        );
        Some(self.session(date, false, SleepKind::Classic, start, minutes))
    }

    /// Sessions ending on local `date` at restatement `version`, oldest first, ignoring the
    /// data window and deletions.
    pub(crate) fn sleep_night(&self, date: NaiveDate, version: u32) -> Vec<SleepSession> {
        let mut out: Vec<SleepSession> = self
            .main_sleep(date)
            .map(|s| s.restated(version))
            .into_iter()
            .chain(self.nap(date))
            .collect();
        out.sort_by_key(|s| s.start);
        out
    }

    /// Whether a session has synced: it ended inside `[sync_from, latest_sync]`.
    pub(crate) fn session_synced(window: Window, session: &SleepSession) -> bool {
        window.from <= session.end && session.end <= window.to
    }

    /// The sessions of local `date` the provider serves: synced and not deleted
    /// (`deleted` gets the session's end), oldest first.
    pub(crate) fn sleep_sessions(
        &self,
        window: Window,
        date: NaiveDate,
        version: u32,
        deleted: &dyn Fn(i64) -> bool,
    ) -> Vec<SleepSession> {
        self.sleep_night(date, version)
            .into_iter()
            .filter(|s| Self::session_synced(window, s) && !deleted(s.end))
            .collect()
    }

    /// The local dates whose sessions can have synced: from the date of `sync_from` to the
    /// date of the latest sync.
    pub(crate) fn sleep_dates(&self, window: Window) -> Vec<NaiveDate> {
        if window.to < window.from {
            return Vec::new();
        }
        let first = local(self.tz, from_unix(window.from)).date();
        let last = local(self.tz, from_unix(window.to)).date();
        first.iter_days().take_while(|d| *d <= last).collect()
    }

    /// UTC offset at Unix second `t`, in seconds.
    pub(crate) fn offset_at(&self, t: i64) -> i32 {
        offset_secs(self.tz, from_unix(t))
    }

    /// Local wall time at Unix second `t`.
    pub(crate) fn wall_at(&self, t: i64) -> NaiveDateTime {
        local(self.tz, from_unix(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;

    #[test]
    fn levels_tile_and_summaries_add_up() {
        let c = SimConfig::default();
        let (mut nights, mut naps, mut missing, mut classic) = (0, 0, 0, 0);
        for i in 1..=10 {
            let p = Profile::new(&c, i);
            let first = NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
            for date in first.iter_days().take(60) {
                let sessions = p.sleep_night(date, 0);
                if !sessions.iter().any(|s| s.main) {
                    missing += 1;
                }
                for s in &sessions {
                    assert_eq!(p.wall_at(s.end).date(), date, "{} {date}", p.id);
                    assert_eq!(s.stages[0].start, s.start);
                    for w in s.stages.windows(2) {
                        assert_eq!(w[0].start + w[0].secs, w[1].start);
                        assert_ne!(w[0].level, w[1].level);
                    }
                    let last = s.stages.last().unwrap();
                    assert_eq!(last.start + last.secs, s.end);
                    let levels: i64 = s
                        .level_names()
                        .iter()
                        .filter_map(|l| s.level_minutes(l))
                        .sum();
                    assert_eq!(levels, s.minutes_in_bed());
                    if s.main {
                        nights += 1;
                        assert!((120..=540).contains(&s.minutes_in_bed()));
                        let bed = p.wall_at(s.start).time();
                        let (lo, hi) = (
                            NaiveTime::from_hms_opt(21, 30, 0).unwrap(),
                            NaiveTime::from_hms_opt(1, 0, 0).unwrap(),
                        );
                        assert!(bed >= lo || bed < hi, "{bed}");
                        classic += i32::from(s.kind == SleepKind::Classic);
                    } else {
                        naps += 1;
                        assert!((20..=90).contains(&s.minutes_in_bed()));
                    }
                }
            }
        }
        // 1 night in 10 without a device, and the two nights around each day not worn at
        // all (`wear.rs`): about a quarter of the nights.
        assert!(missing > 100 && missing < 230, "{missing}");
        assert!(naps > 70 && naps < 180, "{naps}");
        assert!(classic > 40 && classic < nights / 3, "{classic}");
    }

    #[test]
    fn restatement_lengthens_the_main_sleep_and_keeps_its_id() {
        let c = SimConfig::default();
        let p = Profile::new(&c, 1);
        let date = NaiveDate::from_ymd_opt(2026, 11, 2).unwrap();
        let a = p.sleep_night(date, 0);
        let b = p.sleep_night(date, 2);
        let (ma, mb) = (
            a.iter().find(|s| s.main).unwrap(),
            b.iter().find(|s| s.main).unwrap(),
        );
        assert_eq!(ma.id, mb.id);
        assert_eq!(mb.end - ma.end, 20 * 60);
        assert_eq!(mb.minutes_in_bed(), ma.minutes_in_bed() + 20);
    }
}
