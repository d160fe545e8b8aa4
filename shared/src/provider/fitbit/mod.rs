//! The legacy Fitbit Web API client (`api.fitbit.com`), for participants linked before the move
//! to Google Health. The API and its OAuth endpoints were turned off on 2026-11-02; this client
//! exists to keep syncing until then, and to turn the shutdown into a clear per-participant
//! reason ("provider retired": consent through Google Health) instead of a stream of failures.
//!
//! Calls used per job: the OAuth token endpoint (refresh; the refresh token is single-use and
//! always rotated), `devices.json` (latest sync) and `profile.json` (time zone), two calls per
//! local day for daily summaries (`activities/date/{date}.json` and
//! `activities/heart/date/{date}/1d.json`), one call per range family (sleep logs, HRV, SpO2,
//! breathing rate, skin temperature, active zone minutes) per range no longer than its
//! endpoint's maximum ([`families`]), and two calls per slice for intraday heart rate and
//! steps, always with `timezone=UTC`.
//!
//! This module sends the requests; every answer it gets back is read by [`parse`], which turns
//! it into rows or a classified [`SyncError`] without I/O.
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
//! - **Each daily family has its own scope** (`sleep`, `oxygen_saturation`, ...), which a
//!   participant may leave ungranted. A 403 on one family's data denies that family in the
//!   [`Session`] and the others go on; it is reported in [`DailyFamilies::not_permitted`].
//! - **Error bodies echo tokens** ("Access token expired: <token>"): every body is redacted
//!   before any of it reaches a reason string.

mod families;
pub mod parse;
mod refusal;
mod sleep;
mod time;
mod wire;

use std::ops::Range;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::http::{self, transport_error, with_quick_retries_when};
use super::{
    AccessGrant, DailyFamilies, Family, HealthProvider, Intraday, PairedDevice, RequestBudget,
    Session,
};
use crate::config::{FitbitArgs, HeartRateDetail};
use crate::domain::{ParticipantState, Slice, format_instant};
use crate::errors::SyncError;
use crate::families::Dated;
use crate::secret::Secret;
use parse::*;

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

    /// A path is under `/1/user/-/`, unless it names its own API version (`/1.2/user/-/...`).
    fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("{}{path}", self.api_base)
        } else {
            format!("{}/1/user/-/{path}", self.api_base)
        }
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
    /// returns the body of the successful answer, for a [`parse`] function to read.
    async fn get(
        &self,
        session: &Session,
        what: &str,
        path: &str,
        kind: PathKind,
    ) -> Result<String, Refusal> {
        let token = session.access_token.expose().as_str();
        with_quick_retries_when(
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
                let text = http::provider_text(what, response)
                    .await
                    .map_err(|error| Attempt {
                        // A broken connection is worth another try here; a body over the cap
                        // would be over it again.
                        retry_in_place: error.is_transient(),
                        refusal: Refusal::Error(error),
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
        .map_err(|attempt| attempt.refusal)
    }

    /// A data-API GET whose refusals are all errors.
    async fn get_data(
        &self,
        session: &Session,
        what: &str,
        path: &str,
    ) -> Result<String, SyncError> {
        self.get(session, what, path, PathKind::Data)
            .await
            .map_err(Refusal::into_error)
    }

    /// The zone `lastSyncTime` is in: the session's (set by the worker), else the profile's.
    async fn local_zone(&self, session: &Session) -> Result<LocalZone, SyncError> {
        if let Some(tz) = session.time_zone {
            return Ok(LocalZone::Named(tz));
        }
        self.profile(session).await?.local_zone()
    }

    async fn profile(&self, session: &Session) -> Result<ProfileZone, SyncError> {
        let body = self
            .get_data(session, "get profile", "profile.json")
            .await?;
        parse_profile(&body)
    }

    /// A GET of one or more daily families' data (the heart day serves two). `Ok(None)` when
    /// one of them is already denied in the session (nothing is sent), or when the provider
    /// refuses them now (403): then they are denied, and the job goes on without them.
    async fn get_daily(
        &self,
        session: &Session,
        families: &[Family],
        what: &str,
        path: &str,
    ) -> Result<Option<String>, SyncError> {
        if families.iter().any(|f| session.family_denied(*f)) {
            return Ok(None);
        }
        match self.get(session, what, path, PathKind::Daily).await {
            Ok(body) => Ok(Some(body)),
            Err(Refusal::FamilyDenied(reason)) => {
                tracing::info!(reason = %reason, ?families, "Fitbit refused a daily family; keeping the others.");
                for family in families {
                    session.deny_family(*family, reason.clone());
                }
                Ok(None)
            }
            Err(other) => Err(other.into_error()),
        }
    }

    async fn day(
        &self,
        session: &Session,
        date: NaiveDate,
        out: &mut DailyFamilies,
    ) -> Result<(), SyncError> {
        if let Some(body) = self
            .get_daily(
                session,
                &[Family::Activity],
                &format!("get daily activity summary {date}"),
                &format!("activities/date/{date}.json"),
            )
            .await?
        {
            out.activity.push(parse_daily_summary(&body, date)?);
        }

        if let Some(body) = self
            .get_daily(
                session,
                &[Family::HeartRateZones, Family::RestingHeartRate],
                &format!("get heart rate {date}"),
                &format!("activities/heart/date/{date}/1d.json"),
            )
            .await?
        {
            let (zones, resting) = parse_heart_day(&body, date)?;
            out.heart_rate_zones.extend(zones);
            out.resting_heart_rate.extend(resting);
        }
        Ok(())
    }

    /// One range family over `days`: one request per [`DayRange`] the endpoint accepts, rows
    /// ordered by day (stable, so sessions of one day keep their order by start). Empty when
    /// the family is denied, even if an earlier range was read: the family is reported as not
    /// permitted, not as partly there.
    async fn range_family<T: Dated>(
        &self,
        session: &Session,
        family: RangeFamily,
        days: &Range<NaiveDate>,
        parse: impl Fn(&str, DayRange) -> Result<Vec<T>, SyncError>,
    ) -> Result<Vec<T>, SyncError> {
        let mut rows = Vec::new();
        for range in DayRange::chunks(days, family.max_days()) {
            let Some(body) = self
                .get_daily(
                    session,
                    &[family.family()],
                    &family.what(range),
                    &family.path(range),
                )
                .await?
            else {
                return Ok(Vec::new());
            };
            rows.extend(parse(&body, range)?);
        }
        rows.sort_by_key(Dated::date);
        Ok(rows)
    }

    /// One intraday series for one window; `Ok(None)` when intraday access is refused.
    async fn series(
        &self,
        session: &Session,
        series: IntradaySeries,
        window: &Window,
        slice: Slice,
    ) -> Result<Option<Vec<crate::messages::IntradayPoint>>, SyncError> {
        let what = series.what(window);
        match self
            .get(session, &what, &series.path(window), PathKind::Intraday)
            .await
        {
            Ok(body) => {
                parse_intraday_dataset(&body, series, window, slice, session.time_zone).map(Some)
            }
            Err(Refusal::IntradayDenied(reason)) => {
                tracing::info!(reason = %reason, "Fitbit refused intraday data; keeping daily summaries only.");
                session.deny_intraday(reason);
                Ok(None)
            }
            Err(other) => Err(other.into_error()),
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
        let text = http::provider_text(what, response).await?;
        if !status.is_success() {
            return Err(classify_token_error(
                status,
                &headers,
                &redact(&text, &[old, self.client_secret.expose()]),
            ));
        }
        parse_token_response(&text, old, Utc::now())
    }

    /// Every device, its `lastSyncTime` read in the participant's zone: [`Session::time_zone`]
    /// if the worker set it, else the profile's (one more request; call `time_zone` first and
    /// set it to save it).
    async fn paired_devices(&self, session: &Session) -> Result<Vec<PairedDevice>, SyncError> {
        let body = self
            .get_data(session, "get devices", "devices.json")
            .await?;
        let devices = parse_devices(&body)?;
        if devices.is_empty() {
            return devices.read(LocalZone::Named(chrono_tz::UTC));
        }
        devices.read(self.local_zone(session).await?)
    }

    /// The profile's `timezone`, checked to be an IANA zone.
    async fn time_zone(&self, session: &Session) -> Result<Option<String>, SyncError> {
        let profile = self.profile(session).await?;
        Ok(profile.time_zone.map(|tz| tz.name().to_owned()))
    }

    /// Two requests per local day, then one per range family per range (six for up to 30
    /// days): the quota allows about 70 days an hour. Sleep logs' local times are read in
    /// [`Session::time_zone`] (UTC without one). A family the participant did not grant is
    /// left empty and named in [`DailyFamilies::not_permitted`]; any other failure fails the
    /// call.
    async fn daily_families(
        &self,
        session: &Session,
        days: Range<NaiveDate>,
    ) -> Result<DailyFamilies, SyncError> {
        let mut out = DailyFamilies::default();
        for date in days.start.iter_days().take_while(|d| *d < days.end) {
            self.day(session, date, &mut out).await?;
        }
        let zone = session.time_zone.unwrap_or(Tz::UTC);
        out.sleep = self
            .range_family(session, RangeFamily::Sleep, &days, |body, range| {
                parse_sleep_logs(body, range, zone)
            })
            .await?;
        out.heart_rate_variability = self
            .range_family(
                session,
                RangeFamily::HeartRateVariability,
                &days,
                parse_heart_rate_variability,
            )
            .await?;
        out.oxygen_saturation = self
            .range_family(
                session,
                RangeFamily::OxygenSaturation,
                &days,
                parse_oxygen_saturation,
            )
            .await?;
        out.breathing_rate = self
            .range_family(
                session,
                RangeFamily::BreathingRate,
                &days,
                parse_breathing_rate,
            )
            .await?;
        out.skin_temperature = self
            .range_family(
                session,
                RangeFamily::SkinTemperature,
                &days,
                parse_skin_temperature,
            )
            .await?;
        out.active_zone_minutes = self
            .range_family(
                session,
                RangeFamily::ActiveZoneMinutes,
                &days,
                parse_active_zone_minutes,
            )
            .await?;
        out.not_permitted = session.denied_families();
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
        let heart = IntradaySeries::HeartRate(self.heart_rate_detail);
        for window in Window::cover(slice) {
            if session.intraday_denied().is_some() {
                return Ok(Intraday::default());
            }
            let Some(points) = self.series(session, heart, &window, slice).await? else {
                return Ok(Intraday::default());
            };
            out.heart_rate.extend(points);
            let Some(points) = self
                .series(session, IntradaySeries::Steps, &window, slice)
                .await?
            else {
                return Ok(Intraday::default());
            };
            out.steps.extend(points);
        }
        Ok(out)
    }
}

/// Records what a response says about the participant's quota in the session: spent (a 429, or
/// `Remaining: 0`) until `Reset` seconds from now, else not spent. No quota headers: unchanged.
fn note_quota(session: &Session, status: StatusCode, headers: &HeaderMap) {
    match parse_quota(status, headers) {
        Quota::SpentFor(resets_in) => session.set_quota_spent(Some(resets_in)),
        Quota::Left => session.set_quota_spent(None),
        Quota::Unknown => {}
    }
}

fn count_response(status: StatusCode) {
    metrics::counter!("fitlink_provider_requests_total", "provider" => "fitbit", "status" => status.as_u16().to_string()).increment(1);
}

#[cfg(test)]
mod families_tests;
#[cfg(test)]
pub(super) mod tests;
