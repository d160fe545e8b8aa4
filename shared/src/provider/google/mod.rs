//! The Google Health API v4 client (`health.googleapis.com`), the live successor of the Fitbit
//! Web API.
//!
//! Calls used per job: the OAuth token endpoint (refresh), `pairedDevices` (latest sync),
//! `settings` (time zone), `dailyRollUp` on nine types plus `list` on two daily types for the
//! days a job covers (in chunks of at most 14 days, the API's cap for some types), and `list` on
//! `heart-rate` and `steps` for each slice, every page.

mod wire;

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use super::http::{self, common_status_error, transport_error, with_quick_retries};
use super::{AccessGrant, DailySummaries, HealthProvider, Intraday, RequestBudget, Session};
use crate::config::GoogleArgs;
use crate::domain::{ParticipantState, Slice, UtcInstant};
use crate::errors::SyncError;
use crate::messages::{
    ActivityDay, HeartRateZoneDay, IntradayPoint, ProviderIdentity, RestingHeartRateDay,
};
use crate::secret::Secret;
use wire::*;

/// Scopes fitlink needs; a grant without one of them cannot deliver the four data families.
pub const REQUIRED_SCOPES: [&str; 3] = [
    "https://www.googleapis.com/auth/googlehealth.activity_and_fitness.readonly",
    "https://www.googleapis.com/auth/googlehealth.health_metrics_and_measurements.readonly",
    "https://www.googleapis.com/auth/googlehealth.settings.readonly",
];

/// The longest `dailyRollUp` range every type we read accepts (total-calories, active-minutes
/// and calories-in-heart-rate-zone are capped at 14 days; the others at 90).
const ROLLUP_CHUNK_DAYS: i64 = 14;
/// `list` page size: the documented maximum, fewest requests.
const PAGE_SIZE: &str = "10000";
/// A runaway pagination (a provider bug repeating tokens) stops here instead of looping forever.
const MAX_PAGES: usize = 10_000;

pub struct GoogleHealthClient {
    http: reqwest::Client,
    api_base: String,
    token_url: String,
    client_id: String,
    client_secret: Secret<String>,
}

impl GoogleHealthClient {
    /// `users/me/identity`: the consenting account's Google Health user id and the legacy
    /// Fitbit user id it maps to (stable; Google says it never changes).
    pub async fn identity(&self, session: &Session) -> Result<ProviderIdentity, SyncError> {
        let identity: Identity = self
            .call(session, "get identity", Method::GET, "identity", &[], None)
            .await?;
        Ok(ProviderIdentity {
            health_user_id: identity.health_user_id,
            legacy_user_id: identity.legacy_user_id.filter(|id| !id.is_empty()),
        })
    }

    pub fn new(args: &GoogleArgs) -> Self {
        Self {
            http: http::client(),
            api_base: args.api_base.trim_end_matches('/').to_owned(),
            token_url: args.token_url.clone(),
            client_id: args.client_id.clone(),
            client_secret: args.client_secret.clone(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v4/users/me/{path}", self.api_base)
    }

    /// Sends one data-API request (with quick in-place retries) and parses the JSON body.
    async fn call<T: DeserializeOwned>(
        &self,
        session: &Session,
        what: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<T, SyncError> {
        let text = with_quick_retries(|| async {
            session.budget.acquire().await;
            let mut request = self
                .http
                .request(method.clone(), self.url(path))
                .bearer_auth(session.access_token.expose())
                .query(query);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await.map_err(|e| transport_error(what, &e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let text = response.text().await.map_err(|e| transport_error(what, &e))?;
            metrics::counter!("fitlink_provider_requests_total", "provider" => "google-health", "status" => status.as_u16().to_string()).increment(1);
            if status.is_success() {
                Ok(text)
            } else {
                Err(common_status_error(what, status, &headers, &text)
                    .unwrap_or_else(|| classify_api_error(what, status, &text)))
            }
        })
        .await?;
        serde_json::from_str(&text).map_err(|e| {
            SyncError::invalid_data(format!(
                "{what}: response is not the documented JSON shape: {e}"
            ))
        })
    }

    /// Every page of a `list` call over a filter.
    async fn list_all<P: DeserializeOwned>(
        &self,
        session: &Session,
        data_type: &str,
        filter: &str,
    ) -> Result<Vec<P>, SyncError> {
        let path = format!("dataTypes/{data_type}/dataPoints");
        let what = format!("list {data_type}");
        let mut points = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("filter", filter), ("pageSize", PAGE_SIZE)];
            if let Some(t) = token.as_deref() {
                query.push(("pageToken", t));
            }
            let page: ListResponse<P> = self
                .call(session, &what, Method::GET, &path, &query, None)
                .await?;
            points.extend(page.data_points);
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) if Some(&next) == token.as_ref() => {
                    return Err(SyncError::invalid_data(format!(
                        "{what}: the provider repeated a page token"
                    )));
                }
                Some(next) => token = Some(next),
                None => return Ok(points),
            }
        }
        Err(SyncError::invalid_data(format!(
            "{what}: more than {MAX_PAGES} pages"
        )))
    }

    async fn daily_roll_up(
        &self,
        session: &Session,
        data_type: &str,
        days: &Range<NaiveDate>,
    ) -> Result<Vec<(NaiveDate, DailyRollupDataPoint)>, SyncError> {
        let body = serde_json::json!({
            "range": {
                "start": {"date": Date::from_naive(days.start)},
                "end": {"date": Date::from_naive(days.end)},
            },
            "windowSizeDays": 1,
        });
        let what = format!("dailyRollUp {data_type}");
        let path = format!("dataTypes/{data_type}/dataPoints:dailyRollUp");
        let response: DailyRollUpResponse = self
            .call(session, &what, Method::POST, &path, &[], Some(&body))
            .await?;
        response
            .rollup_data_points
            .into_iter()
            .map(|p| Ok((civil_date(&what, p.civil_start_time.date)?, p)))
            .collect()
    }

    async fn summaries_chunk(
        &self,
        session: &Session,
        days: Range<NaiveDate>,
        out: &mut SummaryMerge,
    ) -> Result<(), SyncError> {
        for data_type in [
            "steps",
            "distance",
            "floors",
            "altitude",
            "total-calories",
            "active-energy-burned",
            "active-minutes",
            "sedentary-period",
            "time-in-heart-rate-zone",
            "calories-in-heart-rate-zone",
        ] {
            for (date, point) in self.daily_roll_up(session, data_type, &days).await? {
                out.add_rollup(date, point);
            }
        }
        let date_filter = |t: &str| {
            format!(
                "{t}.date >= \"{}\" AND {t}.date < \"{}\"",
                days.start.format("%Y-%m-%d"),
                days.end.format("%Y-%m-%d")
            )
        };
        let zones: Vec<DailyHeartRateZonesPoint> = self
            .list_all(
                session,
                "daily-heart-rate-zones",
                &date_filter("daily_heart_rate_zones"),
            )
            .await?;
        for point in zones {
            let z = point.daily_heart_rate_zones;
            let date = civil_date("list daily-heart-rate-zones", z.date)?;
            for zone in z.heart_rate_zones {
                if let Some(row) = out.zone(date, &zone.heart_rate_zone_type) {
                    row.min_heart_rate = zone.min_beats_per_minute.map(|v| v.0);
                    row.max_heart_rate = zone.max_beats_per_minute.map(|v| v.0);
                }
            }
        }
        let resting: Vec<DailyRestingHeartRatePoint> = self
            .list_all(
                session,
                "daily-resting-heart-rate",
                &date_filter("daily_resting_heart_rate"),
            )
            .await?;
        for point in resting {
            let r = point.daily_resting_heart_rate;
            out.resting.insert(
                civil_date("list daily-resting-heart-rate", r.date)?,
                r.beats_per_minute.0,
            );
        }
        Ok(())
    }
}

impl HealthProvider for GoogleHealthClient {
    /// 300 requests per minute per user.
    fn request_budget(&self) -> RequestBudget {
        RequestBudget::new(300, std::time::Duration::from_secs(60))
    }

    async fn refresh(&self, refresh_token: &Secret<String>) -> Result<AccessGrant, SyncError> {
        let what = "token refresh";
        let text = with_quick_retries(|| async {
            let response = self
                .http
                .post(&self.token_url)
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token.expose().as_str()),
                    ("client_id", self.client_id.as_str()),
                    ("client_secret", self.client_secret.expose().as_str()),
                ])
                .send()
                .await
                .map_err(|e| transport_error(what, &e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let text = response.text().await.map_err(|e| transport_error(what, &e))?;
            metrics::counter!("fitlink_provider_requests_total", "provider" => "google-health", "status" => status.as_u16().to_string()).increment(1);
            if status.is_success() {
                return Ok(text);
            }
            if let Some(err) = common_status_error(what, status, &headers, "") {
                return Err(err);
            }
            Err(classify_oauth_error(status, &text))
        })
        .await?;
        let token: TokenResponse = serde_json::from_str(&text).map_err(|e| {
            SyncError::invalid_data(format!("{what}: response is not an OAuth token: {e}"))
        })?;
        let scopes: Vec<String> = token
            .scope
            .as_deref()
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        if token.scope.is_some() {
            let missing: Vec<&str> = REQUIRED_SCOPES
                .iter()
                .copied()
                .filter(|needed| !scopes.iter().any(|s| s == needed))
                .collect();
            if !missing.is_empty() {
                return Err(SyncError::permanent(
                    ParticipantState::ScopeMissing,
                    format!("the participant did not grant {}", missing.join(", ")),
                ));
            }
        }
        Ok(AccessGrant {
            access_token: Secret::new(token.access_token),
            expires_at: Utc::now() + TimeDelta::seconds(token.expires_in.unwrap_or(3600)),
            rotated_refresh_token: token
                .refresh_token
                .filter(|t| t != refresh_token.expose())
                .map(Secret::new),
            scopes,
            provider_user_id: None,
        })
    }

    async fn latest_device_sync(
        &self,
        session: &Session,
    ) -> Result<Option<DateTime<Utc>>, SyncError> {
        let mut latest: Option<DateTime<Utc>> = None;
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("pageSize", "100")];
            if let Some(t) = token.as_deref() {
                query.push(("pageToken", t));
            }
            let page: PairedDevicesResponse = self
                .call(
                    session,
                    "list pairedDevices",
                    Method::GET,
                    "pairedDevices",
                    &query,
                    None,
                )
                .await?;
            // The latest of all devices, not the first (the prototype's fault).
            latest = page
                .paired_devices
                .iter()
                .filter_map(|d| d.last_sync_time)
                .chain(latest)
                .max();
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                _ => return Ok(latest),
            }
        }
        Ok(latest)
    }

    async fn time_zone(&self, session: &Session) -> Result<Option<String>, SyncError> {
        let settings: Settings = self
            .call(session, "get settings", Method::GET, "settings", &[], None)
            .await?;
        match settings.time_zone {
            Some(zone) if zone.parse::<chrono_tz::Tz>().is_err() => Err(SyncError::invalid_data(
                format!("get settings: {zone:?} is not an IANA time zone"),
            )),
            other => Ok(other),
        }
    }

    async fn daily_summaries(
        &self,
        session: &Session,
        days: Range<NaiveDate>,
    ) -> Result<DailySummaries, SyncError> {
        let mut merge = SummaryMerge::default();
        let mut start = days.start;
        while start < days.end {
            let end = (start + TimeDelta::days(ROLLUP_CHUNK_DAYS)).min(days.end);
            self.summaries_chunk(session, start..end, &mut merge)
                .await?;
            start = end;
        }
        Ok(merge.finish())
    }

    async fn intraday(&self, session: &Session, slice: Slice) -> Result<Intraday, SyncError> {
        let range_filter = |member: &str| {
            format!(
                "{member} >= \"{}\" AND {member} < \"{}\"",
                slice.start, slice.end
            )
        };
        let hr: Vec<HeartRatePoint> = self
            .list_all(
                session,
                "heart-rate",
                &range_filter("heart_rate.sample_time.physical_time"),
            )
            .await?;
        let mut heart_rate = hr
            .into_iter()
            .map(|p| {
                let t = p.heart_rate.sample_time;
                intraday_point(
                    "heart-rate",
                    slice,
                    t.physical_time,
                    t.utc_offset,
                    p.heart_rate.beats_per_minute,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let steps: Vec<StepsPoint> = self
            .list_all(session, "steps", &range_filter("steps.interval.start_time"))
            .await?;
        let mut steps = steps
            .into_iter()
            .map(|p| {
                let i = p.steps.interval;
                intraday_point(
                    "steps",
                    slice,
                    i.start_time,
                    i.start_utc_offset,
                    p.steps.count,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        heart_rate.sort_by_key(|p| p.datetime);
        steps.sort_by_key(|p| p.datetime);
        Ok(Intraday { heart_rate, steps })
    }
}

/// Checks and normalises one intraday point: inside the slice, with an offset, a sane value.
fn intraday_point(
    data_type: &str,
    slice: Slice,
    at: DateTime<Utc>,
    offset: Option<GoogleDuration>,
    value: Int64,
) -> Result<IntradayPoint, SyncError> {
    let datetime = UtcInstant::new(at);
    if datetime < slice.start || datetime >= slice.end {
        return Err(SyncError::invalid_data(format!(
            "list {data_type}: point at {datetime} is outside the requested slice [{}, {})",
            slice.start, slice.end
        )));
    }
    let offset = offset.ok_or_else(|| {
        SyncError::invalid_data(format!(
            "list {data_type}: point at {datetime} has no UTC offset"
        ))
    })?;
    if offset.0.abs() > 18.0 * 3600.0 || value.0 < 0 {
        return Err(SyncError::invalid_data(format!(
            "list {data_type}: point at {datetime} has an impossible offset or value"
        )));
    }
    Ok(IntradayPoint {
        datetime,
        utc_offset_seconds: offset.whole_seconds(),
        value: value.0,
    })
}

fn civil_date(what: &str, date: Date) -> Result<NaiveDate, SyncError> {
    date.to_naive()
        .ok_or_else(|| SyncError::invalid_data(format!("{what}: {date:?} is not a calendar date")))
}

/// Classifies a data-API failure that is neither 429 nor 5xx.
fn classify_api_error(what: &str, status: StatusCode, body: &str) -> SyncError {
    let parsed = serde_json::from_str::<ApiErrorEnvelope>(body).ok();
    let (api_status, reason, message) = parsed
        .as_ref()
        .map(|e| {
            (
                e.error.status.as_str(),
                e.error.reason().unwrap_or(""),
                e.error.message.as_str(),
            )
        })
        .unwrap_or(("", "", ""));
    let detail = format!(
        "{what}: HTTP {} {api_status} {reason} {message}",
        status.as_u16()
    );
    match status {
        // The access token expired or was revoked mid-job: retry with a fresh one; a revoked
        // grant then shows up as invalid_grant at the refresh.
        StatusCode::UNAUTHORIZED => SyncError::transient(detail),
        StatusCode::FORBIDDEN => SyncError::permanent(ParticipantState::ScopeMissing, detail),
        StatusCode::BAD_REQUEST if api_status == "FAILED_PRECONDITION" => {
            SyncError::permanent(ParticipantState::NeedsReconsent, detail)
        }
        _ => SyncError::invalid_data(detail),
    }
}

/// Classifies a token-endpoint failure that is neither 429 nor 5xx.
fn classify_oauth_error(status: StatusCode, body: &str) -> SyncError {
    let parsed = serde_json::from_str::<OAuthError>(body).ok();
    let error = parsed.as_ref().map(|e| e.error.as_str()).unwrap_or("");
    let description = parsed
        .as_ref()
        .and_then(|e| e.error_description.as_deref())
        .unwrap_or("");
    match error {
        "invalid_grant" => SyncError::permanent(
            ParticipantState::Revoked,
            format!("token refresh: invalid_grant: {description}"),
        ),
        // A fleet configuration problem, not the participant's: retry (and dead-letter with a
        // reason that says what to fix) rather than mark every participant revoked.
        "invalid_client" | "unauthorized_client" => SyncError::transient(format!(
            "token refresh: the OAuth client was rejected ({error}); check FITLINK_GOOGLE_CLIENT_ID and FITLINK_GOOGLE_CLIENT_SECRET"
        )),
        _ => SyncError::transient(format!(
            "token refresh: HTTP {} {error} {description}",
            status.as_u16()
        )),
    }
}

/// Collects the per-type rollups of a range of days into rows.
#[derive(Default)]
struct SummaryMerge {
    activity: BTreeMap<NaiveDate, ActivityDay>,
    zones: BTreeMap<(NaiveDate, &'static str), HeartRateZoneDay>,
    resting: BTreeMap<NaiveDate, i64>,
}

impl SummaryMerge {
    fn day(&mut self, date: NaiveDate) -> &mut ActivityDay {
        self.activity.entry(date).or_insert_with(|| ActivityDay {
            date,
            ..Default::default()
        })
    }

    /// The row for a zone, `None` for zones fitlink does not store (unspecified, unknown).
    fn zone(&mut self, date: NaiveDate, zone: &str) -> Option<&mut HeartRateZoneDay> {
        let name = match zone {
            "LIGHT" => "light",
            "MODERATE" => "moderate",
            "VIGOROUS" => "vigorous",
            "PEAK" => "peak",
            _ => return None,
        };
        Some(
            self.zones
                .entry((date, name))
                .or_insert_with(|| HeartRateZoneDay {
                    date,
                    zone_name: name.to_owned(),
                    min_heart_rate: None,
                    max_heart_rate: None,
                    minute_in_zone: None,
                    calorie_count: None,
                }),
        )
    }

    fn add_rollup(&mut self, date: NaiveDate, p: DailyRollupDataPoint) {
        if let Some(v) = p.steps {
            self.day(date).steps = Some(v.count_sum.0);
        }
        if let Some(v) = p.floors {
            self.day(date).floors = Some(v.count_sum.0);
        }
        if let Some(v) = p.distance {
            self.day(date).distance = Some(v.millimeters_sum.0 as f64 / 1e6);
        }
        if let Some(v) = p.altitude {
            self.day(date).elevation = Some(v.gain_millimeters_sum.0 as f64 / 1e3);
        }
        if let Some(v) = p.total_calories {
            self.day(date).calories_out = Some(v.kcal_sum);
        }
        if let Some(v) = p.active_energy_burned {
            self.day(date).activity_calories = Some(v.kcal_sum);
        }
        if let Some(v) = p.sedentary_period {
            self.day(date).sedentary_minutes = Some(v.duration_sum.0 / 60.0);
        }
        if let Some(v) = p.active_minutes {
            let day = self.day(date);
            for level in v.active_minutes_rollup_by_activity_level {
                let minutes = Some(level.active_minutes_sum.0 as f64);
                match level.activity_level.as_str() {
                    "LIGHT" => day.lightly_active_minutes = minutes,
                    "MODERATE" => day.fairly_active_minutes = minutes,
                    "VIGOROUS" => day.very_active_minutes = minutes,
                    _ => {}
                }
            }
        }
        if let Some(v) = p.time_in_heart_rate_zone {
            for z in v.time_in_heart_rate_zones {
                if let Some(row) = self.zone(date, &z.heart_rate_zone) {
                    row.minute_in_zone = Some((z.duration.0 / 60.0).round() as i64);
                }
            }
        }
        if let Some(v) = p.calories_in_heart_rate_zone {
            for z in v.calories_in_heart_rate_zones {
                if let Some(row) = self.zone(date, &z.heart_rate_zone) {
                    row.calorie_count = Some(z.kcal);
                }
            }
        }
    }

    fn finish(self) -> DailySummaries {
        DailySummaries {
            activity: self.activity.into_values().collect(),
            heart_rate_zones: self.zones.into_values().collect(),
            resting_heart_rate: self
                .resting
                .into_iter()
                .map(|(date, bpm)| RestingHeartRateDay {
                    date,
                    resting_heart_rate: bpm,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_errors_are_classified_by_what_to_do() {
        let revoked = classify_oauth_error(
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        );
        assert!(matches!(
            revoked,
            SyncError::Permanent {
                state: ParticipantState::Revoked,
                ..
            }
        ));
        assert!(
            classify_oauth_error(StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#)
                .is_transient()
        );
        assert!(classify_oauth_error(StatusCode::BAD_REQUEST, "<html>").is_transient());
    }

    #[test]
    fn api_errors_are_classified_by_what_to_do() {
        let scope = classify_api_error(
            "list steps",
            StatusCode::FORBIDDEN,
            r#"{"error":{"code":403,"status":"PERMISSION_DENIED","message":"Request had insufficient authentication scopes.","details":[{"reason":"ACCESS_TOKEN_SCOPE_INSUFFICIENT"}]}}"#,
        );
        match scope {
            SyncError::Permanent { state, reason } => {
                assert_eq!(state, ParticipantState::ScopeMissing);
                assert!(
                    reason.contains("ACCESS_TOKEN_SCOPE_INSUFFICIENT"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(classify_api_error("x", StatusCode::UNAUTHORIZED, "").is_transient());
    }
}
