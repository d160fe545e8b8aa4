//! Time helpers shared by the generator, the wire layer and the truth API.
//!
//! Everything the simulator serves is keyed by *physical* time (UTC instants) while
//! daily values and civil timestamps are keyed by the participant's *local* wall clock.
//! Keeping the conversions in one place is what makes the served data and the ground
//! truth agree on DST days (23- or 25-hour local days).

use chrono::{
    DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, SecondsFormat, TimeZone, Utc,
};
use chrono_tz::Tz;

/// UTC offset (seconds east of UTC) in `tz` at instant `t`.
pub(crate) fn offset_secs(tz: Tz, t: DateTime<Utc>) -> i32 {
    tz.offset_from_utc_datetime(&t.naive_utc())
        .fix()
        .local_minus_utc()
}

/// Local wall-clock time in `tz` at instant `t`.
pub(crate) fn local(tz: Tz, t: DateTime<Utc>) -> NaiveDateTime {
    t.naive_utc() + Duration::seconds(i64::from(offset_secs(tz, t)))
}

/// Unix seconds to a UTC instant (saturating to the epoch for impossible values, which
/// cannot occur for the ranges the simulator works with).
pub(crate) fn from_unix(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::UNIX_EPOCH)
}

/// Smallest whole Unix second at or after `t`. All generated points sit on whole
/// seconds, so `[ceil(a), ceil(b))` selects exactly the points in `[a, b)`.
pub(crate) fn ceil_secs(t: DateTime<Utc>) -> i64 {
    t.timestamp() + i64::from(t.timestamp_subsec_nanos() > 0)
}

/// The first instant of the local calendar day `date` in `tz`.
///
/// If local midnight does not exist (a DST gap at midnight, as in some zones), the day
/// starts at the first local minute that does exist. On a fall-back at midnight the
/// earlier instant is used, so consecutive days never overlap.
pub(crate) fn local_day_start(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut wall = date.and_time(NaiveTime::MIN);
    for _ in 0..(3 * 60) {
        if let Some(t) = tz.from_local_datetime(&wall).earliest() {
            return t.with_timezone(&Utc);
        }
        wall += Duration::minutes(1);
    }
    // Unreachable for real zones (no gap is longer than a few hours); fall back to UTC.
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
}

/// The instant at which the wall clock of `tz` shows `wall`. In a fall-back overlap the
/// earlier or (`latest`) the later of the two instants; in a spring-forward gap the first
/// existing minute after it.
pub(crate) fn resolve_local(tz: Tz, wall: NaiveDateTime, latest: bool) -> DateTime<Utc> {
    let mut wall = wall;
    for _ in 0..(3 * 60) {
        match tz.from_local_datetime(&wall) {
            chrono::LocalResult::Single(t) => return t.with_timezone(&Utc),
            chrono::LocalResult::Ambiguous(a, b) => {
                return if latest { b } else { a }.with_timezone(&Utc);
            }
            chrono::LocalResult::None => wall += Duration::minutes(1),
        }
    }
    Utc.from_utc_datetime(&wall)
}

/// `[start, end)` of the local calendar day `date` in `tz`, as UTC instants.
pub(crate) fn local_day_bounds(tz: Tz, date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let next = date.succ_opt().unwrap_or(date);
    (local_day_start(tz, date), local_day_start(tz, next))
}

/// RFC 3339 with a `Z` suffix and only as many fractional digits as needed, the form
/// Google uses for `google-datetime` fields.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A `google-duration` string: whole seconds with an `s` suffix (`"-18000s"`).
pub(crate) fn duration_secs(secs: i64) -> String {
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_york_fall_back_day_is_25_hours() {
        let date = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let (start, end) = local_day_bounds(Tz::America__New_York, date);
        assert_eq!(end - start, Duration::hours(25));
        assert_eq!(rfc3339(start), "2026-11-01T04:00:00Z");
    }

    #[test]
    fn spring_forward_day_is_23_hours() {
        let date = NaiveDate::from_ymd_opt(2026, 3, 8).unwrap();
        let (start, end) = local_day_bounds(Tz::America__New_York, date);
        assert_eq!(end - start, Duration::hours(23));
    }

    #[test]
    fn resolve_local_handles_overlap_and_gap() {
        let ny = Tz::America__New_York;
        let wall = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        let early = resolve_local(ny, wall("2026-11-01 01:30"), false);
        let late = resolve_local(ny, wall("2026-11-01 01:30"), true);
        assert_eq!(late - early, Duration::hours(1));
        assert_eq!(rfc3339(early), "2026-11-01T05:30:00Z");
        let gap = resolve_local(ny, wall("2026-03-08 02:30"), false);
        assert_eq!(rfc3339(gap), "2026-03-08T07:00:00Z");
    }

    #[test]
    fn offsets_and_formats() {
        let t = from_unix(1_793_000_000);
        assert_eq!(offset_secs(Tz::Asia__Kolkata, t), 19_800);
        assert_eq!(duration_secs(-18_000), "-18000s");
        assert!(rfc3339(t).ends_with('Z'));
    }
}
