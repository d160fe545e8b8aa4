//! The words of the domain: participants, providers, participant states, instants and slices.
//!
//! Everything here is plain data with validation at construction, so that a value of these types
//! that exists is a value the rest of the fleet may trust.

use std::fmt;
use std::str::FromStr;

use std::ops::Range;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A research participant's id, as the program knows them (never the provider's user id).
///
/// Restricted to a conservative alphabet so that ids are safe in file names, log fields, queue
/// headers and CSV cells without quoting.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ParticipantId(String);

impl ParticipantId {
    pub fn new(id: impl Into<String>) -> Result<Self, InvalidValue> {
        let id = id.into();
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if id.is_empty() || id.len() > 64 || !id.chars().all(ok_char) {
            return Err(InvalidValue::new(
                "participant id",
                &id,
                "1 to 64 characters from A-Z a-z 0-9 - _ .",
            ));
        }
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ParticipantId {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ParticipantId> for String {
    fn from(value: ParticipantId) -> Self {
        value.0
    }
}

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A local day flag (`--since`, `--until`, `status --as-of`): `YYYY-MM-DD`, years 0000–9999
/// (the dates both stores hold).
pub fn parse_local_date(text: &str) -> Result<NaiveDate, InvalidValue> {
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .ok()
        .filter(|d| (0..=9999).contains(&d.year()))
        .ok_or_else(|| {
            InvalidValue::new("date", text, "a local day as YYYY-MM-DD, e.g. 2026-11-01")
        })
}

/// A value from outside (a CSV cell, a CLI argument, a message field) that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: expected {expected}")]
pub struct InvalidValue {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl InvalidValue {
    pub fn new(what: &'static str, value: &str, expected: &'static str) -> Self {
        // Cap what we echo back: the value may be a whole malformed line.
        let value: String = value.chars().take(80).collect();
        Self {
            what,
            value,
            expected,
        }
    }
}

/// Where a participant's data comes from. Stored with every row so analysts can tell sources
/// apart after a participant moves from the legacy Fitbit API to Google Health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Provider {
    /// Google Health API v4, the live successor of the Fitbit Web API.
    #[serde(rename = "google-health")]
    GoogleHealth,
    /// The legacy Fitbit Web API (turned off on 2026-11-02).
    #[serde(rename = "fitbit")]
    Fitbit,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GoogleHealth => "google-health",
            Provider::Fitbit => "fitbit",
        }
    }
}

impl FromStr for Provider {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "google-health" => Ok(Provider::GoogleHealth),
            "fitbit" => Ok(Provider::Fitbit),
            other => Err(InvalidValue::new(
                "provider",
                other,
                "google-health or fitbit",
            )),
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a participant is, or is not, being synced. Every state but `Active` is a reason a
/// coordinator can act on; `fitlink status` shows it with the detail text stored beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantState {
    /// Synced on the schedule.
    Active,
    /// The provider refused the grant (`invalid_grant`): the participant revoked access or the
    /// grant expired. Needs a new consent.
    Revoked,
    /// The participant did not grant a scope the program needs.
    ScopeMissing,
    /// The provider sent data fitlink could not understand; a bug report, not a retry.
    ProviderDataInvalid,
    /// A job for this participant exhausted its retries and sits in the dead-letter queue.
    DeadLettered,
    /// The participant must consent again (e.g. their provider was retired).
    NeedsReconsent,
    /// Synced, but the provider refuses intraday data for this participant or app (legacy
    /// Fitbit without intraday approval): daily summaries only.
    IntradayNotPermitted,
    /// Invited (`fitlink invite`) but has not completed the consent flow yet: no credential.
    Invited,
    /// The grant ran out: a time-limited grant (Google's 7-day testing-mode tokens) passed its
    /// expiry, or the provider refused a refresh token after its known expiry. Needs a new consent.
    ConsentExpired,
    /// The participant left the study (`fitlink participants withdraw`): the grant is revoked, the
    /// credential deleted, nothing is synced again, and a new consent is refused.
    Withdrawn,
}

impl ParticipantState {
    pub const ALL: [ParticipantState; 10] = [
        ParticipantState::Active,
        ParticipantState::Revoked,
        ParticipantState::ScopeMissing,
        ParticipantState::ProviderDataInvalid,
        ParticipantState::DeadLettered,
        ParticipantState::NeedsReconsent,
        ParticipantState::IntradayNotPermitted,
        ParticipantState::Invited,
        ParticipantState::ConsentExpired,
        ParticipantState::Withdrawn,
    ];

    /// States whose participants need a (new) consent: `fitlink invite --needing-consent`
    /// invites them.
    pub const NEEDING_CONSENT: [ParticipantState; 5] = [
        ParticipantState::Revoked,
        ParticipantState::ScopeMissing,
        ParticipantState::NeedsReconsent,
        ParticipantState::Invited,
        ParticipantState::ConsentExpired,
    ];

    /// States whose participants are dispatched on the schedule.
    pub const SYNCING: [ParticipantState; 2] = [
        ParticipantState::Active,
        ParticipantState::IntradayNotPermitted,
    ];

    pub fn is_syncing(self) -> bool {
        Self::SYNCING.contains(&self)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantState::Active => "active",
            ParticipantState::Revoked => "revoked",
            ParticipantState::ScopeMissing => "scope_missing",
            ParticipantState::ProviderDataInvalid => "provider_data_invalid",
            ParticipantState::DeadLettered => "dead_lettered",
            ParticipantState::NeedsReconsent => "needs_reconsent",
            ParticipantState::IntradayNotPermitted => "intraday_not_permitted",
            ParticipantState::Invited => "invited",
            ParticipantState::ConsentExpired => "consent_expired",
            ParticipantState::Withdrawn => "withdrawn",
        }
    }
}

impl FromStr for ParticipantState {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| InvalidValue::new("participant state", s, "a known state"))
    }
}

impl fmt::Display for ParticipantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A UTC instant with whole-second precision, written as `YYYY-MM-DDTHH:MM:SSZ`.
///
/// This one text form is what the database stores and keys on, so two spellings of one instant
/// can never become two rows, and text order is time order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UtcInstant(DateTime<Utc>);

impl UtcInstant {
    /// Truncates to the second (providers' intraday samples are whole seconds).
    pub fn new(at: DateTime<Utc>) -> Self {
        Self(at.with_nanosecond(0).unwrap_or(at))
    }

    /// Like [`new`](Self::new), for an instant from outside: only years 0000 to 9999 have a
    /// canonical text (RFC 3339 has four-digit years), and an instant without one could not be
    /// read back from a message or the database.
    pub fn checked(at: DateTime<Utc>) -> Result<Self, InvalidValue> {
        if (0..=9999).contains(&at.year()) {
            Ok(Self::new(at))
        } else {
            Err(InvalidValue::new(
                "instant",
                &format_instant(at),
                "an instant in the years 0000 to 9999",
            ))
        }
    }

    pub fn get(self) -> DateTime<Utc> {
        self.0
    }

    pub fn to_text(self) -> String {
        format_instant(self.0)
    }

    pub fn parse(text: &str) -> Result<Self, InvalidValue> {
        parse_instant(text).map(Self::new)
    }
}

impl From<DateTime<Utc>> for UtcInstant {
    fn from(value: DateTime<Utc>) -> Self {
        Self::new(value)
    }
}

impl fmt::Display for UtcInstant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl Serialize for UtcInstant {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_text())
    }
}

impl<'de> Deserialize<'de> for UtcInstant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        UtcInstant::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The canonical text of an instant (see [`UtcInstant`]).
pub fn format_instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses an RFC 3339 instant with any offset into UTC.
///
/// The instant must have a canonical text ([`UtcInstant::checked`]): `9999-12-31T23:00:00-05:00`
/// is in the year 10000 in UTC, and was accepted here although [`format_instant`] then wrote a
/// text (`+10000-...`) this function refuses, so a message holding it was not decodable.
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, InvalidValue> {
    DateTime::parse_from_rfc3339(text.trim())
        .ok()
        .map(|at| at.with_timezone(&Utc))
        .filter(|at| UtcInstant::checked(*at).is_ok())
        .ok_or_else(|| {
            InvalidValue::new(
                "instant",
                text,
                "an RFC 3339 instant such as 2026-11-01T00:00:00Z",
            )
        })
}

/// Parses a `sync_from` cell: an ISO date (midnight UTC of that day) or an RFC 3339 instant.
///
/// Dates too must be in the years 0000 to 9999: chrono reads a signed year (`+12345-01-01`,
/// `-0001-01-01`), which an import accepted and the writer then could not decode.
pub fn parse_date_or_instant(text: &str) -> Result<DateTime<Utc>, InvalidValue> {
    let text = text.trim();
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        && (0..=9999).contains(&date.year())
    {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    parse_instant(text).map_err(|_| {
        InvalidValue::new(
            "date or instant",
            text,
            "an ISO date (2026-11-01) or an RFC 3339 instant (2026-11-01T00:00:00Z)",
        )
    })
}

/// A half-open time range `[start, end)` of one participant's data that a worker fetches and
/// the writer stores as one unit; the cursor advances over stored slices only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slice {
    pub start: UtcInstant,
    pub end: UtcInstant,
}

impl Slice {
    /// Splits `[from, to)` into consecutive slices no longer than `max_len` (which must be
    /// positive). An empty or inverted range gives no slices.
    pub fn split(from: DateTime<Utc>, to: DateTime<Utc>, max_len: TimeDelta) -> Vec<Slice> {
        assert!(max_len > TimeDelta::zero(), "slice length must be positive");
        let (from, to) = (UtcInstant::new(from).get(), UtcInstant::new(to).get());
        let mut slices = Vec::new();
        let mut start = from;
        while start < to {
            let end = (start + max_len).min(to);
            slices.push(Slice {
                start: start.into(),
                end: end.into(),
            });
            start = end;
        }
        slices
    }
}

/// A participant's zone by its IANA name; UTC when it is not known (or not a zone), the same
/// rule for the worker cutting local days and the writer counting them.
pub fn zone_or_utc(zone: Option<&str>) -> chrono_tz::Tz {
    zone.and_then(|z| z.parse().ok()).unwrap_or(chrono_tz::UTC)
}

/// `[start, end)` of local day `date` in `tz`: 23 or 25 hours on a DST day. A midnight the zone
/// skips (a change at 00:00) starts the day at its first instant that exists.
pub fn local_day_span(date: NaiveDate, tz: chrono_tz::Tz) -> (DateTime<Utc>, DateTime<Utc>) {
    let midnight = |d: NaiveDate| {
        use chrono::TimeZone;
        let mut local = d.and_time(chrono::NaiveTime::MIN);
        // Offsets change by at most a few hours; a skipped midnight resolves within them.
        for _ in 0..(24 * 60) {
            if let Some(at) = tz.from_local_datetime(&local).earliest() {
                return at.with_timezone(&Utc);
            }
            local += TimeDelta::minutes(1);
        }
        local.and_utc()
    };
    let next = date.succ_opt().unwrap_or(date);
    (midnight(date), midnight(next))
}

/// The local dates a UTC range touches in a time zone (`None` zone: UTC).
pub fn local_days(from: DateTime<Utc>, to: DateTime<Utc>, zone: Option<&str>) -> Range<NaiveDate> {
    let tz = zone_or_utc(zone);
    let first = from.with_timezone(&tz).date_naive();
    let last = (to - TimeDelta::seconds(1))
        .max(from)
        .with_timezone(&tz)
        .date_naive();
    first..last.succ_opt().unwrap_or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participant_ids_are_validated() {
        assert!(ParticipantId::new("P-0001_a.b").is_ok());
        for bad in ["", "has space", "semi;colon", &"x".repeat(65)] {
            let err = ParticipantId::new(bad).unwrap_err();
            assert_eq!(err.what, "participant id");
        }
    }

    #[test]
    fn instants_have_one_canonical_text() {
        let a = UtcInstant::parse("2026-11-01T01:30:00.750-04:00").unwrap();
        let b = UtcInstant::parse("2026-11-01T05:30:00Z").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_text(), "2026-11-01T05:30:00Z");
        assert!(UtcInstant::parse("2026-11-01 05:30").is_err());
    }

    #[test]
    fn sync_from_accepts_dates_and_instants() {
        assert_eq!(
            format_instant(parse_date_or_instant("2026-10-01").unwrap()),
            "2026-10-01T00:00:00Z"
        );
        assert_eq!(
            format_instant(parse_date_or_instant("2026-10-01T12:00:00+02:00").unwrap()),
            "2026-10-01T10:00:00Z"
        );
        assert!(parse_date_or_instant("yesterday").is_err());
    }

    #[test]
    fn a_local_day_is_23_or_25_hours_on_dst_days() {
        let ny: chrono_tz::Tz = "America/New_York".parse().unwrap();
        let hours = |d: &str| {
            let (start, end) = local_day_span(d.parse().unwrap(), ny);
            (start.to_rfc3339(), (end - start).num_hours())
        };
        assert_eq!(
            hours("2026-11-01"),
            ("2026-11-01T04:00:00+00:00".into(), 25)
        );
        assert_eq!(
            hours("2026-03-08"),
            ("2026-03-08T05:00:00+00:00".into(), 23)
        );
        assert_eq!(hours("2026-11-02").1, 24);
        // Havana skips midnight itself on its spring change (00:00 becomes 01:00).
        let havana: chrono_tz::Tz = "America/Havana".parse().unwrap();
        let (start, end) = local_day_span("2026-03-08".parse().unwrap(), havana);
        assert_eq!(start.to_rfc3339(), "2026-03-08T05:00:00+00:00");
        assert_eq!((end - start).num_hours(), 23);
    }

    #[test]
    fn local_days_follow_the_zone() {
        let from = parse_instant("2026-11-01T03:00:00Z").unwrap();
        let to = parse_instant("2026-11-02T03:00:00Z").unwrap();
        let ny = local_days(from, to, Some("America/New_York"));
        assert_eq!(ny.start.to_string(), "2026-10-31");
        assert_eq!(ny.end.to_string(), "2026-11-02");
        let utc = local_days(from, to, None);
        assert_eq!(utc.start.to_string(), "2026-11-01");
        assert_eq!(utc.end.to_string(), "2026-11-03");
    }

    #[test]
    fn slices_cover_the_range_contiguously_and_are_short() {
        let from = parse_instant("2026-11-01T00:00:30Z").unwrap();
        let to = parse_instant("2026-11-03T05:00:00Z").unwrap();
        let slices = Slice::split(from, to, TimeDelta::hours(12));
        assert_eq!(slices.first().unwrap().start.get(), from);
        assert_eq!(slices.last().unwrap().end.get(), to);
        for pair in slices.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        assert!(
            slices
                .iter()
                .all(|s| s.end.get() - s.start.get() <= TimeDelta::hours(12))
        );
        assert!(Slice::split(to, from, TimeDelta::hours(12)).is_empty());
    }
}
