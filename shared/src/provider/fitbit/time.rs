//! The legacy API's times: zone-less local timestamps (`lastSyncTime`), and intraday datasets
//! that carry a time of day but no date.
//!
//! Intraday requests always ask for `timezone=UTC`, so a dataset's times are UTC times of day
//! and no DST question arises there; only `lastSyncTime` is local.

use chrono::{
    DateTime, Datelike, DurationRound, FixedOffset, NaiveDateTime, NaiveTime, Offset, TimeDelta,
    TimeZone, Utc,
};
use chrono_tz::Tz;

use crate::domain::{Slice, UtcInstant};
use crate::errors::SyncError;

/// The zone Fitbit's local times are in: the profile's IANA zone, or (when a profile names
/// none) its fixed `offsetFromUTCMillis`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LocalZone {
    Named(Tz),
    Fixed(FixedOffset),
}

/// Reads a `lastSyncTime` (`yyyy-MM-ddTHH:mm:ss.SSS`, or without the millis; no offset) as an
/// instant in the participant's zone.
///
/// A local time the zone's clocks show twice (the hour after a fall-back change) or never (the
/// hour skipped when clocks spring forward) reads as the **earliest** instant it can denote.
/// The worker syncs up to this instant and moves the cursor there, so reading it too late would
/// move the cursor past minutes the device has not uploaded yet, and they would never be
/// fetched (a gap); reading it too early costs nothing but fetching those minutes in the next
/// job. (This deliberately departs from "take the later instant"; see [`resolve`].)
///
/// The instant must be in the years 0000 to 9999, the ones with a canonical text
/// ([`UtcInstant::checked`]): it travels in the job's outcome. The local time is checked to be
/// in them first, because chrono reads signed years of any length and the zone arithmetic
/// overflowed (a panic) near the end of its range (`+262142-12-31T23:59:59.999`).
pub fn last_sync_instant(text: &str, zone: LocalZone) -> Result<DateTime<Utc>, SyncError> {
    let local = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f").map_err(|_| {
        SyncError::invalid_data(format!(
            "get devices: lastSyncTime {text:?} is not a local time like 2019-11-07T12:00:58.000"
        ))
    })?;
    let out_of_range = || {
        SyncError::invalid_data(format!(
            "get devices: lastSyncTime {text:?} is outside the years 0000-9999"
        ))
    };
    if !(0..=9999).contains(&local.year()) {
        return Err(out_of_range());
    }
    let at = match zone {
        LocalZone::Fixed(offset) => (local - offset).and_utc(),
        LocalZone::Named(tz) => resolve(tz, local),
    };
    UtcInstant::checked(at)
        .map(|_| at)
        .map_err(|_| out_of_range())
}

/// Every instant a local time can denote in `tz`, and the earliest of them.
fn resolve(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    use chrono::LocalResult;
    match tz.from_local_datetime(&local) {
        LocalResult::Single(at) => at.with_timezone(&Utc),
        // Both instants are real; the earlier is the one that cannot create a gap.
        LocalResult::Ambiguous(earlier, later) => {
            earlier.with_timezone(&Utc).min(later.with_timezone(&Utc))
        }
        // A time the clocks skipped (a device clock not yet moved forward): read it with the
        // offsets in force around the change, and take the earliest result.
        LocalResult::None => [local - TimeDelta::days(1), local + TimeDelta::days(1)]
            .into_iter()
            .map(|probe| {
                let offset = tz.offset_from_utc_datetime(&probe).fix();
                (local - offset).and_utc()
            })
            .min()
            .expect("two candidates"),
    }
}

/// The participant's UTC offset at an instant (0 without a zone: the worker had none).
pub fn offset_seconds(zone: Option<Tz>, at: DateTime<Utc>) -> i32 {
    zone.map(|tz| {
        tz.offset_from_utc_datetime(&at.naive_utc())
            .fix()
            .local_minus_utc()
    })
    .unwrap_or(0)
}

/// One intraday request's range: whole UTC minutes `[first, end)`, at most 24 hours (the API's
/// cap). The API's end time is inclusive, so the request names `end - 1 min` as its last minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub first: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

const MINUTE: TimeDelta = TimeDelta::minutes(1);
const MAX_WINDOW: TimeDelta = TimeDelta::hours(24);

impl Window {
    /// The windows that cover a slice: from the minute holding `slice.start` to the minute
    /// holding its last second. They equal the slice when it is minute-aligned (the worker's
    /// slices are); otherwise the edge minutes hold a few points outside the slice, which the
    /// caller drops because the neighbouring slice owns them.
    pub fn cover(slice: Slice) -> Vec<Window> {
        let (start, end) = (slice.start.get(), slice.end.get());
        if end <= start {
            return Vec::new();
        }
        let first = floor_minute(start);
        let end = floor_minute(end - TimeDelta::seconds(1)) + MINUTE;
        let mut windows = Vec::new();
        let mut at = first;
        while at < end {
            let next = (at + MAX_WINDOW).min(end);
            windows.push(Window {
                first: at,
                end: next,
            });
            at = next;
        }
        windows
    }

    /// The last minute, inclusive, as the API's range wants it.
    pub fn last(&self) -> DateTime<Utc> {
        self.end - MINUTE
    }

    /// `{startDate}/{endDate}/{detail}/time/{HH:mm}/{HH:mm}.json` for this window.
    pub fn path(&self, detail: &str) -> String {
        let last = self.last();
        format!(
            "{}/{}/{detail}/time/{}/{}.json",
            self.first.format("%Y-%m-%d"),
            last.format("%Y-%m-%d"),
            self.first.format("%H:%M"),
            last.format("%H:%M"),
        )
    }

    /// Gives each time of a dataset its date. Walks the times in order from the window's first
    /// date, moving to the next date when a time goes backwards (the dataset has no dates: a
    /// window that crosses midnight continues on the next day). The walk starts at the window's
    /// first time of day, so a dataset whose first point is already past midnight is dated on
    /// the second day. A time that then falls outside the window (or out of order, which the walk
    /// dates a day late) is invalid data naming the time.
    pub fn date_times<'a, T>(
        &self,
        what: &str,
        samples: impl IntoIterator<Item = (&'a str, T)>,
    ) -> Result<Vec<(DateTime<Utc>, T)>, SyncError> {
        let mut day = self.first.date_naive();
        let mut previous = self.first.time();
        let mut dated = Vec::new();
        for (text, value) in samples {
            let time = NaiveTime::parse_from_str(text, "%H:%M:%S")
                .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
                .map_err(|_| {
                    SyncError::invalid_data(format!(
                        "{what}: dataset time {text:?} is not a time like 13:05:00"
                    ))
                })?;
            if time < previous {
                day = day.succ_opt().ok_or_else(|| {
                    SyncError::invalid_data(format!("{what}: dataset runs past the calendar"))
                })?;
            }
            previous = time;
            let at = day.and_time(time).and_utc();
            if at < self.first || at >= self.end {
                return Err(SyncError::invalid_data(format!(
                    "{what}: dataset time {text:?} (read as {}) is outside the requested range [{}, {}) or out of order",
                    at.format("%Y-%m-%dT%H:%M:%SZ"),
                    self.first.format("%Y-%m-%dT%H:%M:%SZ"),
                    self.end.format("%Y-%m-%dT%H:%M:%SZ"),
                )));
            }
            dated.push((at, value));
        }
        Ok(dated)
    }
}

fn floor_minute(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(MINUTE).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ParticipantState, UtcInstant};

    fn utc(text: &str) -> DateTime<Utc> {
        crate::domain::parse_instant(text).unwrap()
    }

    fn slice(start: &str, end: &str) -> Slice {
        Slice {
            start: UtcInstant::parse(start).unwrap(),
            end: UtcInstant::parse(end).unwrap(),
        }
    }

    const NEW_YORK: LocalZone = LocalZone::Named(chrono_tz::America::New_York);

    #[test]
    fn last_sync_times_follow_the_zone_across_the_fall_back_change() {
        // 2026-11-01 02:00 EDT -> 01:00 EST in New York: 01:00-01:59 happens twice.
        let cases = [
            ("2026-10-31T23:30:00.000", "2026-11-01T03:30:00Z"), // EDT
            ("2026-11-01T00:59:59", "2026-11-01T04:59:59Z"),     // EDT, no millis
            ("2026-11-01T01:30:00.000", "2026-11-01T05:30:00Z"), // ambiguous: the earlier (EDT)
            ("2026-11-01T01:59:59.999", "2026-11-01T05:59:59Z"), // ambiguous: the earlier (EDT)
            ("2026-11-01T02:00:00.000", "2026-11-01T07:00:00Z"), // EST
            ("2026-11-01T12:00:58.313", "2026-11-01T17:00:58Z"), // EST, non-zero millis
        ];
        for (local, expected) in cases {
            let at = last_sync_instant(local, NEW_YORK).unwrap();
            assert_eq!(UtcInstant::new(at).to_text(), expected, "{local}");
        }
    }

    #[test]
    fn a_skipped_local_time_reads_as_the_earliest_instant_it_can_mean() {
        // 2026-03-08 02:00 EST -> 03:00 EDT: 02:30 never happens; 02:30 EDT = 06:30Z.
        let at = last_sync_instant("2026-03-08T02:30:00.000", NEW_YORK).unwrap();
        assert_eq!(at, utc("2026-03-08T06:30:00Z"));
    }

    #[test]
    fn a_fixed_offset_is_used_when_the_profile_names_no_zone() {
        let pdt = LocalZone::Fixed(FixedOffset::west_opt(7 * 3600).unwrap());
        let at = last_sync_instant("2019-11-07T12:00:58.000", pdt).unwrap();
        assert_eq!(at, utc("2019-11-07T19:00:58Z"));
    }

    #[test]
    fn an_unexpected_last_sync_format_is_invalid_data_naming_the_value() {
        for bad in [
            "2019-11-07T12:00:58.000Z",
            "2019-11-07T12:00:58+01:00",
            "2019-11-07 12:00:58",
            "07/11/2019 12:00",
            "",
        ] {
            match last_sync_instant(bad, NEW_YORK).unwrap_err() {
                SyncError::Permanent { state, reason } => {
                    assert_eq!(state, ParticipantState::ProviderDataInvalid);
                    assert!(reason.contains(&format!("{bad:?}")), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn offsets_come_from_the_zone_at_each_instant() {
        let ny = Some(chrono_tz::America::New_York);
        assert_eq!(offset_seconds(ny, utc("2026-11-01T05:59:00Z")), -4 * 3600);
        assert_eq!(offset_seconds(ny, utc("2026-11-01T06:00:00Z")), -5 * 3600);
        assert_eq!(offset_seconds(None, utc("2026-11-01T06:00:00Z")), 0);
    }

    #[test]
    fn windows_name_the_last_minute_inclusive_and_cross_midnight() {
        let w = Window::cover(slice("2026-11-01T22:00:00Z", "2026-11-02T04:00:00Z"));
        assert_eq!(w.len(), 1);
        assert_eq!(
            w[0].path("1min"),
            "2026-11-01/2026-11-02/1min/time/22:00/03:59.json"
        );
        let w = Window::cover(slice("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"));
        assert_eq!(
            w[0].path("1sec"),
            "2026-11-01/2026-11-01/1sec/time/00:00/23:59.json"
        );
        assert!(Window::cover(slice("2026-11-01T00:00:00Z", "2026-11-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn windows_cover_unaligned_and_long_slices_in_whole_minutes_of_at_most_a_day() {
        let w = Window::cover(slice("2026-11-01T10:00:30Z", "2026-11-01T10:05:30Z"));
        assert_eq!(
            w,
            vec![Window {
                first: utc("2026-11-01T10:00:00Z"),
                end: utc("2026-11-01T10:06:00Z")
            }]
        );
        let w = Window::cover(slice("2026-11-01T12:00:00Z", "2026-11-03T00:00:00Z"));
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].end - w[0].first, MAX_WINDOW);
        assert_eq!(w[0].end, w[1].first);
        assert_eq!(w[1].end, utc("2026-11-03T00:00:00Z"));
    }

    #[test]
    fn a_dataset_crossing_midnight_dates_each_point_on_its_own_day() {
        let w = Window::cover(slice("2026-11-01T23:58:00Z", "2026-11-02T00:02:00Z"))[0];
        let times = ["23:58:00", "23:59:00", "00:00:00", "00:01:00"];
        let dated = w
            .date_times("steps", times.iter().map(|t| (*t, ())))
            .unwrap();
        let instants: Vec<String> = dated
            .iter()
            .map(|(at, _)| UtcInstant::new(*at).to_text())
            .collect();
        assert_eq!(
            instants,
            [
                "2026-11-01T23:58:00Z",
                "2026-11-01T23:59:00Z",
                "2026-11-02T00:00:00Z",
                "2026-11-02T00:01:00Z"
            ]
        );
        // Nothing before midnight (e.g. the device was off): the first point is on day two.
        let dated = w.date_times("steps", [("00:01:00", ())]).unwrap();
        assert_eq!(dated[0].0, utc("2026-11-02T00:01:00Z"));
    }

    #[test]
    fn irregular_second_level_times_are_dated_too() {
        let w = Window::cover(slice("2026-11-01T23:59:00Z", "2026-11-02T00:01:00Z"))[0];
        let dated = w
            .date_times("hr", [("23:59:15", 1), ("23:59:58", 2), ("00:00:07", 3)])
            .unwrap();
        assert_eq!(dated[2], (utc("2026-11-02T00:00:07Z"), 3));
    }

    #[test]
    fn points_outside_the_window_or_out_of_order_are_refused_naming_the_time() {
        let w = Window::cover(slice("2026-11-01T12:00:00Z", "2026-11-01T13:00:00Z"))[0];
        for (times, named) in [
            (vec!["12:00:00", "13:00:00"], "13:00:00"),
            (vec!["11:59:00"], "11:59:00"),
            (vec!["12:10:00", "12:05:00"], "12:05:00"),
            (vec!["12:00:00", "noon"], "noon"),
        ] {
            let err = w
                .date_times("heart", times.iter().map(|t| (*t, ())))
                .unwrap_err();
            match err {
                SyncError::Permanent { state, reason } => {
                    assert_eq!(state, ParticipantState::ProviderDataInvalid);
                    assert!(reason.contains(named), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
