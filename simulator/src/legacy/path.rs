//! The legacy path grammar below `/1/user/{user}/` and the wall clock its dates and times
//! are read in.
//!
//! Dates are `yyyy-MM-dd` or `today`, times `HH:mm`. They are the participant's local
//! wall clock, or UTC with `?timezone=UTC`. An intraday range runs from the start
//! date+time to the end date+time **inclusive of the end minute** (`time/08:00/08:15` is
//! 16 minutes) and may span at most 24 hours of wall-clock time (`00:00` to `00:00` of the
//! next day is the longest). On a fall-back day a local range covers both passes through
//! the repeated hour (a full `1d` day has 25 hours of minutes, with repeated times); on a
//! spring-forward day the skipped times simply have no points.

use chrono::{Duration, NaiveDate, NaiveDateTime, NaiveTime};
use chrono_tz::Tz;

use crate::clock::{from_unix, local, resolve_local};
use crate::legacy::wire::FitbitError;

/// Intraday resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resource {
    Heart,
    Steps,
}

impl Resource {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Resource::Heart => "heart",
            Resource::Steps => "steps",
        }
    }
}

/// The nightly and daily range resources of `docs/data-families.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// `/1.2/user/-/sleep/date/{start}/{end}.json`.
    Sleep,
    Hrv,
    Spo2,
    BreathingRate,
    SkinTemperature,
    ActiveZoneMinutes,
}

impl Family {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Family::Sleep => "sleep",
            Family::Hrv => "hrv",
            Family::Spo2 => "spo2",
            Family::BreathingRate => "br",
            Family::SkinTemperature => "temp-skin",
            Family::ActiveZoneMinutes => "active-zone-minutes",
        }
    }

    /// The scope a token needs for it.
    pub(crate) fn scope(self) -> &'static str {
        match self {
            Family::Sleep => "sleep",
            Family::Hrv => "heartrate",
            Family::Spo2 => "oxygen_saturation",
            Family::BreathingRate => "respiratory_rate",
            Family::SkinTemperature => "temperature",
            Family::ActiveZoneMinutes => "activity",
        }
    }

    /// Longest range in days (both ends inclusive).
    pub(crate) fn max_days(self) -> i64 {
        match self {
            Family::Sleep => 100,
            Family::ActiveZoneMinutes => 1095,
            _ => 30,
        }
    }
}

/// A parsed legacy data path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    Profile,
    Devices,
    /// A [`Family`] over `{start}/{end}` (inclusive).
    Family {
        family: Family,
        start: &'a str,
        end: &'a str,
    },
    /// `activities/date/{date}.json`.
    DailySummary {
        date: &'a str,
    },
    /// `activities/{heart|steps}/date/{date}/{period}.json` or `.../{start}/{end}.json`.
    Series {
        resource: Resource,
        start: &'a str,
        end: &'a str,
    },
    /// `activities/{heart|steps}/date/{start}/{end|1d}/{detail}[/time/{HH:mm}/{HH:mm}].json`.
    Intraday {
        resource: Resource,
        start: &'a str,
        end: &'a str,
        detail: &'a str,
        time: Option<(&'a str, &'a str)>,
    },
}

/// Parses the part of the path after `/1/user/{user}/`; `None` is a 404.
pub(crate) fn parse(rest: &str) -> Option<Route<'_>> {
    let rest = rest.strip_suffix(".json")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let resource = |r: &str| match r {
        "heart" => Some(Resource::Heart),
        "steps" => Some(Resource::Steps),
        _ => None,
    };
    let family = |family, start, end| Route::Family { family, start, end };
    Some(match parts.as_slice() {
        ["profile"] => Route::Profile,
        ["devices"] => Route::Devices,
        ["hrv", "date", s, e] => family(Family::Hrv, s, e),
        ["spo2", "date", s, e] => family(Family::Spo2, s, e),
        ["br", "date", s, e] => family(Family::BreathingRate, s, e),
        ["temp", "skin", "date", s, e] => family(Family::SkinTemperature, s, e),
        ["activities", "active-zone-minutes", "date", s, e] => {
            family(Family::ActiveZoneMinutes, s, e)
        }
        ["activities", "date", date] => Route::DailySummary { date },
        ["activities", r, "date", start, end] => Route::Series {
            resource: resource(r)?,
            start,
            end,
        },
        ["activities", r, "date", start, end, detail] => Route::Intraday {
            resource: resource(r)?,
            start,
            end,
            detail,
            time: None,
        },
        [
            "activities",
            r,
            "date",
            start,
            end,
            detail,
            "time",
            from,
            to,
        ] => Route::Intraday {
            resource: resource(r)?,
            start,
            end,
            detail,
            time: Some((from, to)),
        },
        _ => return None,
    })
}

/// Parses the part of a `/1.2/user/{user}/` path (only sleep lives there); `None` is a 404.
pub(crate) fn parse_v12(rest: &str) -> Option<Route<'_>> {
    let rest = rest.strip_suffix(".json")?;
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["sleep", "date", start, end] => Some(Route::Family {
            family: Family::Sleep,
            start,
            end,
        }),
        _ => None,
    }
}

/// The dates `{start}..={end}` of a family range, at most `max_days` of them.
pub(crate) fn family_dates(
    start: &str,
    end: &str,
    today: NaiveDate,
    max_days: i64,
) -> Result<Vec<NaiveDate>, FitbitError> {
    let first = date(start, today)?;
    let last = date(end, today)?;
    if last < first {
        return Err(FitbitError::validation(
            "The end date must not be before the start date.",
        ));
    }
    if (last - first).num_days() + 1 > max_days {
        return Err(FitbitError::validation(format!(
            "The date range must not exceed {max_days} days."
        )));
    }
    Ok(first.iter_days().take_while(|d| *d <= last).collect())
}

/// The wall clock of a request: the participant's zone, or UTC (`?timezone=UTC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Clock {
    Local(Tz),
    Utc,
}

impl Clock {
    /// Wall-clock time at Unix second `t`.
    pub(crate) fn wall(self, t: i64) -> NaiveDateTime {
        match self {
            Clock::Local(tz) => local(tz, from_unix(t)),
            Clock::Utc => from_unix(t).naive_utc(),
        }
    }

    /// The first instant showing `wall` (or the first after it, in a gap).
    fn earliest(self, wall: NaiveDateTime) -> i64 {
        match self {
            Clock::Local(tz) => resolve_local(tz, wall, false).timestamp(),
            Clock::Utc => wall.and_utc().timestamp(),
        }
    }

    /// The last instant showing `wall` (or the first after it, in a gap).
    fn latest(self, wall: NaiveDateTime) -> i64 {
        match self {
            Clock::Local(tz) => resolve_local(tz, wall, true).timestamp(),
            Clock::Utc => wall.and_utc().timestamp(),
        }
    }
}

/// Parses a path date: `yyyy-MM-dd` or `today` (the date of `today` on the request clock).
pub(crate) fn date(s: &str, today: NaiveDate) -> Result<NaiveDate, FitbitError> {
    if s == "today" {
        return Ok(today);
    }
    if s.len() != 10 {
        return Err(FitbitError::validation(format!(
            "Invalid date: {s}. The date must be in the format yyyy-MM-dd or today."
        )));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
        FitbitError::validation(format!(
            "Invalid date: {s}. The date must be in the format yyyy-MM-dd or today."
        ))
    })
}

fn time(s: &str) -> Result<NaiveTime, FitbitError> {
    if s.len() == 5
        && let Ok(t) = NaiveTime::parse_from_str(s, "%H:%M")
    {
        return Ok(t);
    }
    Err(FitbitError::validation(format!(
        "Invalid time: {s}. The time must be in the format HH:mm."
    )))
}

/// The dates of a daily time series: `{date}/{period}` (the period ends on `date`) or
/// `{start}/{end}` (at most a year).
pub(crate) fn series_dates(
    start: &str,
    end: &str,
    today: NaiveDate,
) -> Result<Vec<NaiveDate>, FitbitError> {
    let base = date(start, today)?;
    let days = match end {
        "1d" => Some(1),
        "7d" | "1w" => Some(7),
        "30d" | "1m" => Some(30),
        "3m" => Some(91),
        "6m" => Some(183),
        "1y" => Some(365),
        _ => None,
    };
    let (first, last) = match days {
        Some(n) => (base - Duration::days(n - 1), base),
        None => {
            let last = date(end, today)?;
            if last < base {
                return Err(FitbitError::validation(
                    "The end date must not be before the start date.",
                ));
            }
            if (last - base).num_days() >= 366 {
                return Err(FitbitError::validation("The maximum date range is 1 year."));
            }
            (base, last)
        }
    };
    Ok(first.iter_days().take_while(|d| *d <= last).collect())
}

/// A resolved intraday request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Range {
    pub clock: Clock,
    /// Wall-clock `[start, end)` (the end minute of the request is included).
    pub wall_start: NaiveDateTime,
    pub wall_end: NaiveDateTime,
    /// A physical superset `[lo, hi)` in Unix seconds; points are kept when their wall
    /// time is in `[wall_start, wall_end)`.
    pub lo: i64,
    pub hi: i64,
    /// Every date of the request, for the daily part of the response.
    pub dates: Vec<NaiveDate>,
    /// Aggregation in minutes (0 = every raw sample, `1sec`).
    pub minutes: u32,
}

impl Range {
    pub(crate) fn contains(&self, wall: NaiveDateTime) -> bool {
        (self.wall_start..self.wall_end).contains(&wall)
    }
}

/// Resolves the date/period/detail/time segments of an intraday path.
pub(crate) fn intraday(
    resource: Resource,
    clock: Clock,
    today: NaiveDate,
    start: &str,
    end: &str,
    detail: &str,
    times: Option<(&str, &str)>,
) -> Result<Range, FitbitError> {
    let minutes = match (resource, detail) {
        (Resource::Heart, "1sec") => 0,
        (_, "1min") => 1,
        (_, "5min") => 5,
        (_, "15min") => 15,
        _ => {
            return Err(FitbitError::validation(format!(
                "Invalid detail level {detail} for {}. Allowed: {}.",
                resource.name(),
                if resource == Resource::Heart {
                    "1sec, 1min, 5min, 15min"
                } else {
                    "1min, 5min, 15min"
                }
            )));
        }
    };
    let first = date(start, today)?;
    let last = if end == "1d" {
        first
    } else if end.ends_with(['d', 'w', 'm', 'y']) {
        return Err(FitbitError::validation(format!(
            "Invalid period {end} for intraday data. Only 1d is supported."
        )));
    } else {
        date(end, today)?
    };
    let (t0, t1) = match times {
        Some((a, b)) => (time(a)?, time(b)?),
        None => (
            NaiveTime::MIN,
            NaiveTime::from_hms_opt(23, 59, 0).unwrap_or(NaiveTime::MIN),
        ),
    };
    let wall_start = first.and_time(t0);
    let end_minute = last.and_time(t1);
    if end_minute < wall_start {
        return Err(FitbitError::validation(
            "The end of the range must not be before its start.",
        ));
    }
    if end_minute - wall_start > Duration::hours(24) {
        return Err(FitbitError::validation(
            "The requested time range exceeds the maximum of 24 hours.",
        ));
    }
    let wall_end = end_minute + Duration::minutes(1);
    Ok(Range {
        clock,
        wall_start,
        wall_end,
        lo: clock.earliest(wall_start),
        hi: clock.latest(wall_end),
        dates: first.iter_days().take_while(|d| *d <= last).collect(),
        minutes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn grammar() {
        assert_eq!(parse("profile.json"), Some(Route::Profile));
        assert_eq!(parse("profile"), None);
        assert_eq!(
            parse("activities/date/2026-11-03.json"),
            Some(Route::DailySummary { date: "2026-11-03" })
        );
        assert_eq!(
            parse("activities/heart/date/today/1d/1sec/time/00:00/01:00.json"),
            Some(Route::Intraday {
                resource: Resource::Heart,
                start: "today",
                end: "1d",
                detail: "1sec",
                time: Some(("00:00", "01:00")),
            })
        );
        assert_eq!(parse("activities/calories/date/today/1d.json"), None);
        assert_eq!(
            parse("temp/skin/date/2026-11-01/2026-11-03.json"),
            Some(Route::Family {
                family: Family::SkinTemperature,
                start: "2026-11-01",
                end: "2026-11-03",
            })
        );
        assert!(matches!(
            parse("activities/active-zone-minutes/date/today/today.json"),
            Some(Route::Family {
                family: Family::ActiveZoneMinutes,
                ..
            })
        ));
        assert_eq!(parse("sleep/date/2026-11-01/2026-11-03.json"), None);
        assert!(parse_v12("sleep/date/2026-11-01/2026-11-03.json").is_some());
        let today = d("2026-11-03");
        assert_eq!(
            family_dates("2026-10-05", "today", today, 30)
                .unwrap()
                .len(),
            30
        );
        assert!(family_dates("2026-10-04", "today", today, 30).is_err());
    }

    #[test]
    fn ranges() {
        let today = d("2026-11-03");
        let r = intraday(
            Resource::Steps,
            Clock::Utc,
            today,
            "today",
            "1d",
            "1min",
            None,
        )
        .unwrap();
        assert_eq!(r.hi - r.lo, 86_400);
        // 24 hours exactly is allowed, one more minute is not.
        let ok = intraday(
            Resource::Heart,
            Clock::Utc,
            today,
            "2026-11-02",
            "2026-11-03",
            "1min",
            Some(("06:00", "06:00")),
        );
        assert_eq!(
            ok.unwrap().hi - 86_400 - 60,
            d("2026-11-02")
                .and_hms_opt(6, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp()
        );
        for (a, b, t) in [
            ("2026-11-02", "2026-11-03", Some(("06:00", "06:01"))),
            ("2026-11-02", "2026-11-03", None),
            ("2026-11-03", "2026-11-02", None),
        ] {
            let e = intraday(Resource::Heart, Clock::Utc, today, a, b, "1min", t).unwrap_err();
            assert_eq!((e.code.as_u16(), e.error_type), (400, "validation"));
        }
        assert!(
            intraday(
                Resource::Steps,
                Clock::Utc,
                today,
                "today",
                "1d",
                "1sec",
                None
            )
            .is_err()
        );
        assert!(
            intraday(
                Resource::Steps,
                Clock::Utc,
                today,
                "today",
                "7d",
                "1min",
                None
            )
            .is_err()
        );
        assert!(
            intraday(
                Resource::Steps,
                Clock::Utc,
                today,
                "2026-1-3",
                "1d",
                "1min",
                None
            )
            .is_err()
        );

        // The New York fall-back day has 25 hours.
        let ny = Clock::Local(Tz::America__New_York);
        let r = intraday(Resource::Steps, ny, today, "2026-11-01", "1d", "1min", None).unwrap();
        assert_eq!(r.hi - r.lo, 25 * 3600);
    }

    #[test]
    fn series() {
        let today = d("2026-11-03");
        assert_eq!(series_dates("today", "7d", today).unwrap().len(), 7);
        assert_eq!(
            series_dates("2026-11-01", "2026-11-03", today).unwrap(),
            vec![d("2026-11-01"), d("2026-11-02"), d("2026-11-03")]
        );
        assert!(series_dates("2025-11-01", "2026-11-03", today).is_err());
    }
}
