//! The legacy Fitbit Web API client (`api.fitbit.com`), for participants linked before the move
//! to Google Health. The API and its OAuth endpoints were turned off on 2026-11-02; this client
//! exists to keep syncing until then, and to turn the shutdown into a clear per-participant
//! reason ("provider retired": consent through Google Health) instead of a stream of failures.
//!
//! Calls used per job: the OAuth token endpoint (refresh; the refresh token is single-use and
//! always rotated), `devices.json` (latest sync) and `profile.json` (time zone), two calls per
//! local day for daily summaries (`activities/date/{date}.json` and
//! `activities/heart/date/{date}/1d.json`), and two calls per slice for intraday heart rate and
//! steps, always with `timezone=UTC`.
//!
//! What this module knows that the worker does not:
//! - **The 150-requests-per-hour quota.** Every response's `Fitbit-Rate-Limit-Remaining` and
//!   `Fitbit-Rate-Limit-Reset` are read; once the remainder reaches 0 (or a 429 arrives) the
//!   reset deadline is stored in the [`Session`] and every further call of that session is
//!   answered with [`SyncError::RateLimited`] without being sent. The session's own
//!   [`RequestBudget`] (150 per hour) refuses rather than sleeps when full.
//! - **Intraday access is a per-app approval.** A 403 on an intraday path leaves daily summaries
//!   working: `intraday` returns empty vectors and records the refusal in
//!   [`Session::intraday_denied`], and sends no further intraday request in that session.
//! - **Error bodies echo tokens** ("Access token expired: <token>"): every body is redacted
//!   before any of it reaches a reason string.

mod time;
mod wire;

use std::ops::Range;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;

use super::http::{
    self, common_status_error, header_seconds, header_u64, retry_after, transport_error,
    with_quick_retries_when,
};
use super::{AccessGrant, DailySummaries, HealthProvider, Intraday, RequestBudget, Session};
use crate::config::{FitbitArgs, HeartRateDetail};
use crate::domain::{ParticipantState, Slice, UtcInstant, format_instant};
use crate::errors::SyncError;
use crate::messages::{ActivityDay, HeartRateZoneDay, IntradayPoint, RestingHeartRateDay};
use crate::secret::Secret;
use time::{LocalZone, Window, last_sync_instant, offset_seconds};
use wire::*;

/// Scopes fitlink needs (activity: summaries and steps; heartrate; settings: devices; profile:
/// the time zone). A grant without one of them cannot deliver the four data families.
pub const REQUIRED_SCOPES: [&str; 4] = ["activity", "heartrate", "settings", "profile"];

/// The reason recorded for a participant once the legacy API answers 410 Gone.
pub const RETIRED_REASON: &str = "provider retired: the legacy Fitbit Web API answered 410 Gone; the participant must consent through Google Health";

/// The start of the reason [`Session::intraday_denied`] holds after a 403 on an intraday path.
pub const INTRADAY_DENIED_REASON: &str = "intraday not permitted for this app/participant";

/// Fitbit's per-user quota: 150 requests per hour, reset at the top of the hour.
pub const REQUESTS_PER_HOUR: u32 = 150;

/// Response headers carrying the quota (case-insensitive in HTTP).
pub const RATE_LIMIT_REMAINING: &str = "fitbit-rate-limit-remaining";
pub const RATE_LIMIT_RESET: &str = "fitbit-rate-limit-reset";

/// The longest a call waits for the session's own budget; beyond it the call is rate-limited
/// (an hourly window would otherwise hold a worker slot past the broker's consumer timeout).
const MAX_BUDGET_WAIT: Duration = Duration::from_secs(30);

/// Access tokens of the code flow live 8 hours; the only value Fitbit supports.
const DEFAULT_EXPIRES_IN: i64 = 28_800;

/// Fitbit's legacy heart-rate zone names, lower-cased: what `heart_rate_summary.zone_name` holds
/// for legacy rows (Google's rows say light, moderate, vigorous, peak).
const ZONE_NAMES: [&str; 4] = ["out of range", "fat burn", "cardio", "peak"];

pub struct FitbitClient {
    http: reqwest::Client,
    api_base: String,
    token_url: String,
    client_id: String,
    client_secret: Secret<String>,
    heart_rate_detail: HeartRateDetail,
    /// The configured turn-off: from then on nothing is sent.
    retired_after: Option<DateTime<Utc>>,
}

/// What kind of path a request goes to: a 403 means different things on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PathKind {
    Data,
    Intraday,
}

/// A classified failed request.
#[derive(Debug, Clone, PartialEq)]
enum Refusal {
    Error(SyncError),
    /// A 403 on an intraday path: the app or the participant has no intraday access.
    IntradayDenied(String),
}

impl Refusal {
    /// For paths where an intraday refusal cannot happen; if it somehow does, it is a scope
    /// problem like any other 403.
    fn into_error(self) -> SyncError {
        match self {
            Refusal::Error(e) => e,
            Refusal::IntradayDenied(reason) => {
                SyncError::permanent(ParticipantState::ScopeMissing, reason)
            }
        }
    }
}

/// A failed attempt, and whether sending the same request again at once can help.
struct Attempt {
    refusal: Refusal,
    retry_in_place: bool,
}

impl Attempt {
    fn last(error: SyncError) -> Self {
        Self {
            refusal: Refusal::Error(error),
            retry_in_place: false,
        }
    }
}

impl FitbitClient {
    pub fn new(args: &FitbitArgs) -> Self {
        Self {
            http: http::client(),
            api_base: args.api_base.trim_end_matches('/').to_owned(),
            token_url: args.token_url.clone(),
            client_id: args.client_id.clone(),
            client_secret: args.client_secret.clone(),
            heart_rate_detail: args.heart_rate_detail,
            retired_after: args.retired_after,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/1/user/-/{path}", self.api_base)
    }

    /// `Permanent(NeedsReconsent)` once the configured turn-off has passed.
    fn check_retired(&self) -> Result<(), SyncError> {
        match self.retired_after {
            Some(at) if Utc::now() >= at => Err(SyncError::permanent(
                ParticipantState::NeedsReconsent,
                format!(
                    "provider retired: the legacy Fitbit Web API was turned off at {} (FITLINK_FITBIT_RETIRED_AFTER); the participant must consent through Google Health",
                    format_instant(at)
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Whether a request may be sent now: not retired, quota not known to be spent, and the
    /// session's own budget has room (waiting briefly for it at most).
    async fn admit(&self, session: &Session, what: &str) -> Result<(), SyncError> {
        self.check_retired()?;
        if let Some(wait) = session.quota_resets_in() {
            return Err(SyncError::RateLimited {
                reason: format!(
                    "{what}: not sent: the participant's Fitbit quota is spent until it resets in {} s",
                    wait.as_secs()
                ),
                retry_after: Some(wait),
            });
        }
        session
            .budget
            .acquire_within(MAX_BUDGET_WAIT)
            .await
            .map_err(|wait| SyncError::RateLimited {
                reason: format!(
                    "{what}: not sent: this job already made {} requests in the last {} s",
                    session.budget.limit(),
                    session.budget.window().as_secs()
                ),
                retry_after: Some(wait),
            })
    }

    /// Sends one data-API GET (quick in-place retries for 5xx and transport failures only) and
    /// parses the JSON body.
    async fn get<T: DeserializeOwned>(
        &self,
        session: &Session,
        what: &str,
        path: &str,
        kind: PathKind,
    ) -> Result<T, Refusal> {
        let token = session.access_token.expose().as_str();
        let text = with_quick_retries_when(
            || async {
                self.admit(session, what).await.map_err(Attempt::last)?;
                let mut request = self.http.get(self.url(path)).bearer_auth(token);
                if kind == PathKind::Intraday {
                    // Times in UTC: no local time to misread across a DST change.
                    request = request.query(&[("timezone", "UTC")]);
                }
                let response = request.send().await.map_err(|e| Attempt {
                    refusal: Refusal::Error(transport_error(what, &e)),
                    retry_in_place: true,
                })?;
                let status = response.status();
                let headers = response.headers().clone();
                note_quota(session, status, &headers);
                count_response(status);
                let text = response.text().await.map_err(|e| Attempt {
                    refusal: Refusal::Error(transport_error(what, &e)),
                    retry_in_place: true,
                })?;
                if status.is_success() {
                    return Ok(text);
                }
                Err(Attempt {
                    refusal: classify_data_error(
                        what,
                        status,
                        &headers,
                        &redact(&text, &[token]),
                        kind,
                    ),
                    retry_in_place: status.is_server_error()
                        || status == StatusCode::REQUEST_TIMEOUT,
                })
            },
            |attempt: &Attempt| attempt.retry_in_place,
        )
        .await
        .map_err(|attempt| attempt.refusal)?;
        serde_json::from_str(&text).map_err(|e| {
            Refusal::Error(SyncError::invalid_data(format!(
                "{what}: response is not the documented JSON shape: {}",
                redact(&e.to_string(), &[token])
            )))
        })
    }

    /// The zone `lastSyncTime` is in: the session's (set by the worker), else the profile's.
    async fn local_zone(&self, session: &Session) -> Result<LocalZone, SyncError> {
        if let Some(tz) = session.time_zone {
            return Ok(LocalZone::Named(tz));
        }
        let profile = self.profile(session).await?;
        if let Some(tz) = profile_zone(&profile)? {
            return Ok(LocalZone::Named(tz));
        }
        profile
            .offset_from_utc_millis
            .and_then(|ms| {
                let seconds = ms.0 / 1000.0;
                (seconds.fract() == 0.0 && seconds.abs() <= 18.0 * 3600.0)
                    .then(|| FixedOffset::east_opt(seconds as i32))
                    .flatten()
            })
            .map(LocalZone::Fixed)
            .ok_or_else(|| {
                SyncError::invalid_data(
                    "get profile: the profile has neither a timezone nor a usable offsetFromUTCMillis, so lastSyncTime cannot be placed in time",
                )
            })
    }

    async fn profile(&self, session: &Session) -> Result<Profile, SyncError> {
        let response: ProfileResponse = self
            .get(session, "get profile", "profile.json", PathKind::Data)
            .await
            .map_err(Refusal::into_error)?;
        Ok(response.user)
    }

    async fn day(
        &self,
        session: &Session,
        date: NaiveDate,
        out: &mut DailySummaries,
    ) -> Result<(), SyncError> {
        let what = format!("get daily activity summary {date}");
        let day: DailyActivityResponse = self
            .get(
                session,
                &what,
                &format!("activities/date/{date}.json"),
                PathKind::Data,
            )
            .await
            .map_err(Refusal::into_error)?;
        out.activity.push(activity_day(&what, date, &day.summary)?);

        let what = format!("get heart rate {date}");
        let heart: HeartDailyResponse = self
            .get(
                session,
                &what,
                &format!("activities/heart/date/{date}/1d.json"),
                PathKind::Data,
            )
            .await
            .map_err(Refusal::into_error)?;
        for day in heart.days {
            if day.date_time != date {
                return Err(SyncError::invalid_data(format!(
                    "{what}: the response is for {}, not {date}",
                    day.date_time
                )));
            }
            for zone in day.value.heart_rate_zones.unwrap_or_default() {
                if let Some(row) = zone_day(&what, date, &zone)? {
                    out.heart_rate_zones.push(row);
                }
            }
            if let Some(bpm) = count(&what, "restingHeartRate", day.value.resting_heart_rate)? {
                out.resting_heart_rate.push(RestingHeartRateDay {
                    date,
                    resting_heart_rate: bpm,
                });
            }
        }
        Ok(())
    }

    /// One intraday series for one window; `Ok(None)` when intraday access is refused.
    async fn series<R: DeserializeOwned>(
        &self,
        session: &Session,
        what: &str,
        path: &str,
    ) -> Result<Option<R>, SyncError> {
        match self.get(session, what, path, PathKind::Intraday).await {
            Ok(response) => Ok(Some(response)),
            Err(Refusal::IntradayDenied(reason)) => {
                tracing::info!(reason = %reason, "Fitbit refused intraday data; keeping daily summaries only.");
                session.deny_intraday(reason);
                Ok(None)
            }
            Err(Refusal::Error(e)) => Err(e),
        }
    }
}

impl HealthProvider for FitbitClient {
    /// 150 requests per hour per user.
    fn request_budget(&self) -> RequestBudget {
        RequestBudget::new(REQUESTS_PER_HOUR, Duration::from_secs(3600))
    }

    /// Never retried in place: the refresh token is single-use, so a request whose answer was
    /// lost may already have consumed it, and resending it would turn that into a false
    /// `invalid_grant`. Failures go back to the worker, whose retry policy and the writer's
    /// credential bookkeeping handle them.
    async fn refresh(&self, refresh_token: &Secret<String>) -> Result<AccessGrant, SyncError> {
        self.check_retired()?;
        let what = "token refresh";
        let old = refresh_token.expose().as_str();
        let response = self
            .http
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose()))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", old)])
            .send()
            .await
            .map_err(|e| transport_error(what, &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        count_response(status);
        let text = response
            .text()
            .await
            .map_err(|e| transport_error(what, &e))?;
        if !status.is_success() {
            return Err(classify_token_error(
                status,
                &headers,
                &redact(&text, &[old, self.client_secret.expose()]),
            ));
        }
        let token: TokenResponse = serde_json::from_str(&text).map_err(|e| {
            SyncError::invalid_data(format!(
                "{what}: response is not an OAuth token: {}",
                redact(&e.to_string(), &[old])
            ))
        })?;
        let scopes: Vec<String> = token
            .scope
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        let missing: Vec<&str> = REQUIRED_SCOPES
            .iter()
            .copied()
            .filter(|needed| !scopes.iter().any(|s| s == needed))
            .collect();
        // A response that names no scopes is not taken as granting none (like Google's); a
        // missing scope then shows as a 403 on the data call that needs it.
        if token.scope.is_some() && !missing.is_empty() {
            return Err(SyncError::permanent(
                ParticipantState::ScopeMissing,
                format!(
                    "the participant did not grant the Fitbit scope(s) {}",
                    missing.join(", ")
                ),
            ));
        }
        let rotated = token.refresh_token.ok_or_else(|| {
            SyncError::invalid_data(format!(
                "{what}: the response has no refresh_token (Fitbit rotates it on every refresh)"
            ))
        })?;
        Ok(AccessGrant {
            access_token: Secret::new(token.access_token),
            expires_at: Utc::now()
                + TimeDelta::seconds(token.expires_in.unwrap_or(DEFAULT_EXPIRES_IN)),
            // The same token back would be a replay within a grace window: nothing to store.
            rotated_refresh_token: (rotated != old).then(|| Secret::new(rotated)),
            scopes,
            provider_user_id: token.user_id,
        })
    }

    /// The latest `lastSyncTime` of all devices (not the first device's: the prototype's fault),
    /// read in the participant's zone: [`Session::time_zone`] if the worker set it, else the
    /// profile's (one more request; call `time_zone` first and set it to save it).
    async fn latest_device_sync(
        &self,
        session: &Session,
    ) -> Result<Option<DateTime<Utc>>, SyncError> {
        let devices: Vec<Device> = self
            .get(session, "get devices", "devices.json", PathKind::Data)
            .await
            .map_err(Refusal::into_error)?;
        let times: Vec<String> = devices
            .into_iter()
            .filter_map(|d| d.last_sync_time)
            .collect();
        if times.is_empty() {
            return Ok(None);
        }
        let zone = self.local_zone(session).await?;
        let mut latest = None;
        for text in &times {
            let at = last_sync_instant(text, zone)?;
            latest = latest.max(Some(at));
        }
        Ok(latest)
    }

    /// The profile's `timezone`, checked to be an IANA zone.
    async fn time_zone(&self, session: &Session) -> Result<Option<String>, SyncError> {
        let profile = self.profile(session).await?;
        Ok(profile_zone(&profile)?.map(|tz| tz.name().to_owned()))
    }

    /// Two requests per local day; the quota allows about 70 days an hour.
    async fn daily_summaries(
        &self,
        session: &Session,
        days: Range<NaiveDate>,
    ) -> Result<DailySummaries, SyncError> {
        let mut out = DailySummaries::default();
        for date in days.start.iter_days().take_while(|d| *d < days.end) {
            self.day(session, date, &mut out).await?;
        }
        Ok(out)
    }

    /// Heart rate (at the configured detail) and steps for the slice, requested in UTC so that no
    /// point's time is ambiguous. Each point's offset is [`Session::time_zone`]'s at that instant
    /// (0 without a zone). Step minutes of 0 are skipped: Fitbit zero-fills, fitlink stores only
    /// minutes with steps, as Google serves them.
    ///
    /// A 403 (no intraday approval) gives empty vectors and sets [`Session::intraday_denied`];
    /// once set, no intraday request is sent in this session.
    async fn intraday(&self, session: &Session, slice: Slice) -> Result<Intraday, SyncError> {
        let mut out = Intraday::default();
        let detail = self.heart_rate_detail;
        let in_slice = |at: &DateTime<Utc>| {
            let at = UtcInstant::new(*at);
            slice.start <= at && at < slice.end
        };
        for window in Window::cover(slice) {
            if session.intraday_denied().is_some() {
                return Ok(Intraday::default());
            }
            let what = format!(
                "get heart rate intraday {}",
                window.path(detail.as_str()).trim_end_matches(".json")
            );
            let path = format!("activities/heart/date/{}", window.path(detail.as_str()));
            let Some(heart) = self
                .series::<HeartIntradayResponse>(session, &what, &path)
                .await?
            else {
                return Ok(Intraday::default());
            };
            let expected = match detail {
                HeartRateDetail::OneMinute => "minute",
                HeartRateDetail::OneSecond => "second",
            };
            check_dataset(&what, &heart.intraday, expected)?;
            let samples = heart
                .intraday
                .dataset
                .iter()
                .map(|s| (s.time.as_str(), s.value));
            for (at, value) in window.date_times(&what, samples)? {
                let bpm = whole(&what, "heart rate", value)?;
                if in_slice(&at) {
                    out.heart_rate.push(point(session, at, bpm));
                }
            }

            let what = format!(
                "get steps intraday {}",
                window.path("1min").trim_end_matches(".json")
            );
            let path = format!("activities/steps/date/{}", window.path("1min"));
            let Some(steps) = self
                .series::<StepsIntradayResponse>(session, &what, &path)
                .await?
            else {
                return Ok(Intraday::default());
            };
            check_dataset(&what, &steps.intraday, "minute")?;
            let samples = steps
                .intraday
                .dataset
                .iter()
                .map(|s| (s.time.as_str(), s.value));
            for (at, value) in window.date_times(&what, samples)? {
                let count = whole(&what, "steps", value)?;
                if count > 0 && in_slice(&at) {
                    out.steps.push(point(session, at, count));
                }
            }
        }
        Ok(out)
    }
}

fn point(session: &Session, at: DateTime<Utc>, value: i64) -> IntradayPoint {
    IntradayPoint {
        datetime: UtcInstant::new(at),
        utc_offset_seconds: offset_seconds(session.time_zone, at),
        value,
    }
}

/// A dataset must be at the resolution we asked for (a 15-minute dataset stored as minutes
/// would be wrong by a factor of 15). Absent fields are accepted.
fn check_dataset(what: &str, dataset: &Dataset, expected_type: &str) -> Result<(), SyncError> {
    let type_ok = dataset
        .dataset_type
        .as_deref()
        .is_none_or(|t| t == expected_type);
    let interval_ok = dataset.dataset_interval.is_none_or(|i| i.0 == 1.0);
    if type_ok && interval_ok {
        Ok(())
    } else {
        Err(SyncError::invalid_data(format!(
            "{what}: dataset is {:?} every {:?}, not one {expected_type}",
            dataset.dataset_type,
            dataset.dataset_interval.map(|i| i.0)
        )))
    }
}

/// The profile's zone, `None` when it names none; not an IANA name is invalid data.
fn profile_zone(profile: &Profile) -> Result<Option<Tz>, SyncError> {
    match profile.timezone.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(name) => name.parse::<Tz>().map(Some).map_err(|_| {
            SyncError::invalid_data(format!(
                "get profile: timezone {name:?} is not an IANA time zone"
            ))
        }),
    }
}

/// A count (steps, minutes, bpm): a non-negative number, rounded to a whole one.
fn whole(what: &str, field: &str, value: Num) -> Result<i64, SyncError> {
    if value.0 >= 0.0 && value.0 < 1e15 {
        Ok(value.0.round() as i64)
    } else {
        Err(SyncError::invalid_data(format!(
            "{what}: {field} is {}, not a non-negative count",
            value.0
        )))
    }
}

fn count(what: &str, field: &str, value: Option<Num>) -> Result<Option<i64>, SyncError> {
    value.map(|v| whole(what, field, v)).transpose()
}

/// An amount (distance, calories, minutes): a non-negative number.
fn amount(what: &str, field: &str, value: Option<Num>) -> Result<Option<f64>, SyncError> {
    match value {
        Some(v) if v.0 < 0.0 => Err(SyncError::invalid_data(format!(
            "{what}: {field} is {}, not a non-negative amount",
            v.0
        ))),
        other => Ok(other.map(|v| v.0)),
    }
}

fn activity_day(
    what: &str,
    date: NaiveDate,
    s: &ActivitySummary,
) -> Result<ActivityDay, SyncError> {
    Ok(ActivityDay {
        date,
        steps: count(what, "summary.steps", s.steps)?,
        distance: amount(what, "summary.distances[total]", s.total_distance())?,
        floors: count(what, "summary.floors", s.floors)?,
        elevation: amount(what, "summary.elevation", s.elevation)?,
        calories_out: amount(what, "summary.caloriesOut", s.calories_out)?,
        activity_calories: amount(what, "summary.activityCalories", s.activity_calories)?,
        sedentary_minutes: amount(what, "summary.sedentaryMinutes", s.sedentary_minutes)?,
        lightly_active_minutes: amount(
            what,
            "summary.lightlyActiveMinutes",
            s.lightly_active_minutes,
        )?,
        fairly_active_minutes: amount(
            what,
            "summary.fairlyActiveMinutes",
            s.fairly_active_minutes,
        )?,
        very_active_minutes: amount(what, "summary.veryActiveMinutes", s.very_active_minutes)?,
    })
}

/// A zone row, `None` for a zone name fitlink does not know (logged, like Google's unknown zones).
fn zone_day(
    what: &str,
    date: NaiveDate,
    zone: &HeartRateZone,
) -> Result<Option<HeartRateZoneDay>, SyncError> {
    let name = zone.name.trim().to_lowercase();
    if !ZONE_NAMES.contains(&name.as_str()) {
        tracing::warn!(zone = %zone.name, %date, "Skipping a Fitbit heart-rate zone fitlink does not know.");
        return Ok(None);
    }
    Ok(Some(HeartRateZoneDay {
        date,
        min_heart_rate: count(what, "heartRateZones.min", zone.min)?,
        max_heart_rate: count(what, "heartRateZones.max", zone.max)?,
        minute_in_zone: count(what, "heartRateZones.minutes", zone.minutes)?,
        calorie_count: amount(what, "heartRateZones.caloriesOut", zone.calories_out)?,
        zone_name: name,
    }))
}

/// Records what a response says about the participant's quota in the session: spent (a 429, or
/// `Remaining: 0`) until `Reset` seconds from now, else not spent. No quota headers: unchanged.
fn note_quota(session: &Session, status: StatusCode, headers: &HeaderMap) {
    let remaining = header_u64(headers, RATE_LIMIT_REMAINING);
    if status == StatusCode::TOO_MANY_REQUESTS || remaining == Some(0) {
        session.set_quota_spent(Some(quota_reset(headers)));
    } else if remaining.is_some() {
        session.set_quota_spent(None);
    }
}

/// When a spent quota resets: `Fitbit-Rate-Limit-Reset`, else `Retry-After` (reported to be
/// inaccurate, so second choice), else the top of the hour (when Fitbit resets the counter).
fn quota_reset(headers: &HeaderMap) -> Duration {
    header_seconds(headers, RATE_LIMIT_RESET)
        .or_else(|| retry_after(headers))
        .unwrap_or_else(|| until_top_of_hour(Utc::now()))
}

fn until_top_of_hour(now: DateTime<Utc>) -> Duration {
    Duration::from_secs(3600 - now.timestamp().rem_euclid(3600) as u64)
}

fn count_response(status: StatusCode) {
    metrics::counter!("fitlink_provider_requests_total", "provider" => "fitbit", "status" => status.as_u16().to_string()).increment(1);
}

/// What went wrong, from the Fitbit error body if there is one.
fn detail(what: &str, status: StatusCode, body: &str) -> String {
    match ErrorBody::parse(body) {
        Some(e) => format!(
            "{what}: HTTP {} {}: {}",
            status.as_u16(),
            e.error_type(),
            e.message()
        ),
        None => format!(
            "{what}: HTTP {} (the body is not a Fitbit error, classified by status alone): {}",
            status.as_u16(),
            body.chars().take(200).collect::<String>()
        ),
    }
}

/// Classifies a data-API failure. `body` must already be redacted.
fn classify_data_error(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    kind: PathKind,
) -> Refusal {
    if status == StatusCode::GONE {
        return Refusal::Error(SyncError::permanent(
            ParticipantState::NeedsReconsent,
            RETIRED_REASON,
        ));
    }
    if let Some(error) = common_status_error(what, status, headers, body) {
        return Refusal::Error(with_quota_reset(error, headers));
    }
    let error_type = ErrorBody::parse(body)
        .map(|e| e.error_type().to_owned())
        .unwrap_or_default();
    let detail = detail(what, status, body);
    Refusal::Error(match status {
        StatusCode::UNAUTHORIZED if error_type == "invalid_token" => {
            SyncError::permanent(ParticipantState::Revoked, detail)
        }
        // expired_token (and a 401 we cannot read): the worker refreshes on its retry; a revoked
        // grant then shows up as invalid_grant at the refresh.
        StatusCode::UNAUTHORIZED => SyncError::transient(detail),
        StatusCode::FORBIDDEN if kind == PathKind::Intraday => {
            return Refusal::IntradayDenied(format!("{INTRADAY_DENIED_REASON}: {detail}"));
        }
        StatusCode::FORBIDDEN => SyncError::permanent(ParticipantState::ScopeMissing, detail),
        _ => SyncError::invalid_data(detail),
    })
}

/// Classifies a token-endpoint failure. `body` must already be redacted.
fn classify_token_error(status: StatusCode, headers: &HeaderMap, body: &str) -> SyncError {
    let what = "token refresh";
    if status == StatusCode::GONE {
        return SyncError::permanent(ParticipantState::NeedsReconsent, RETIRED_REASON);
    }
    if let Some(error) = common_status_error(what, status, headers, body) {
        return with_quota_reset(error, headers);
    }
    let error_type = ErrorBody::parse(body)
        .map(|e| e.error_type().to_owned())
        .unwrap_or_default();
    let detail = detail(what, status, body);
    match (status, error_type.as_str()) {
        (StatusCode::CONFLICT, _) => SyncError::transient(format!(
            "{detail} (another client is refreshing this participant's token at the same time)"
        )),
        // A refused single-use token: revoked by the participant, or consumed by a refresh whose
        // rotated token was lost. Either way the participant must consent again (through Google
        // Health, now that the legacy API is retired) — unless the writer finds a newer token
        // was stored since, and retries once with it.
        (_, "invalid_grant") => SyncError::permanent(
            ParticipantState::NeedsReconsent,
            format!(
                "{detail} (Fitbit refresh tokens are single-use: the participant revoked access, or this token was already used)"
            ),
        ),
        // A fleet configuration problem, not the participant's: retry (and dead-letter with a
        // reason that says what to fix) rather than mark every participant revoked.
        (_, "invalid_client" | "unauthorized_client") | (StatusCode::UNAUTHORIZED, _) => {
            SyncError::transient(format!(
                "{detail}; the OAuth client was rejected: check FITLINK_FITBIT_CLIENT_ID and FITLINK_FITBIT_CLIENT_SECRET"
            ))
        }
        _ => SyncError::transient(detail),
    }
}

/// A 429 retries when Fitbit's quota resets (`Fitbit-Rate-Limit-Reset`), not at a blind short
/// delay.
fn with_quota_reset(error: SyncError, headers: &HeaderMap) -> SyncError {
    match error {
        SyncError::RateLimited { reason, .. } => SyncError::RateLimited {
            reason,
            retry_after: Some(quota_reset(headers)),
        },
        other => other,
    }
}

/// Removes tokens from text that will reach a reason: the known secrets, and any run of 24 or
/// more token characters holding a digit (Fitbit's messages quote the token: "Access token
/// expired: eyJ..."; error types like `insufficient_permissions` have no digit and stay).
fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret, "[redacted]");
    }
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 24 && run.chars().any(|c| c.is_ascii_digit()) {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_token_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests;
