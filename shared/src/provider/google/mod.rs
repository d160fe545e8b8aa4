//! The Google Health API v4 client (`health.googleapis.com`), the live successor of the Fitbit
//! Web API.
//!
//! Calls used per job: the OAuth token endpoint (refresh), `pairedDevices` (latest sync),
//! `settings` (time zone), for the days a job covers (in windows of at most 14 days, the API's
//! cap for some roll-ups) `dailyRollUp` on the [`ROLL_UP_TYPES`] plus `list` on `sleep` and six
//! daily types ([`daily`]), and `list` on `heart-rate` and `steps` for each slice, every page.
//!
//! This module sends the requests; every body it gets back is read by [`parse`], which turns it
//! into rows or a classified [`SyncError`] without I/O.

mod daily;
mod nightly;
pub mod parse;
mod sleep;
mod summaries;
mod wire;

use std::ops::Range;

use chrono::{NaiveDate, Utc};
use reqwest::Method;

use super::http::{self, common_status_error, transport_error, with_quick_retries};
use super::{
    AccessGrant, DailyFamilies, HealthProvider, Intraday, PairedDevice, RequestBudget, Session,
};
use crate::config::GoogleArgs;
use crate::domain::Slice;
use crate::errors::SyncError;
use crate::messages::ProviderIdentity;
use crate::secret::Secret;
use parse::*;

/// Scopes fitlink needs; a grant without one of them cannot deliver the four data families.
pub const REQUIRED_SCOPES: [&str; 3] = [
    "https://www.googleapis.com/auth/googlehealth.activity_and_fitness.readonly",
    "https://www.googleapis.com/auth/googlehealth.health_metrics_and_measurements.readonly",
    "https://www.googleapis.com/auth/googlehealth.settings.readonly",
];

/// The types whose `dailyRollUp` makes up a day's activity summary, heart-rate zones and active
/// zone minutes.
pub const ROLL_UP_TYPES: [&str; 11] = [
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
    "active-zone-minutes",
];

/// `list` page size: the documented maximum, fewest requests.
const PAGE_SIZE: &str = "10000";
/// The most pages one `list` chain may take. The longest real chain is a day's one-second heart
/// rate (86,400 points: 9 pages at [`PAGE_SIZE`], 60 at the API's default 1,440), so a chain
/// longer than this is a provider that never ends (a bug, or an answer that is not Google's):
/// the call fails as invalid provider data naming the cap, and nothing of it is stored (the
/// cursor stays, so no gap; a truncated list would be silent data loss). It also bounds what
/// one list holds in memory (pages × [`PAGE_SIZE`] points).
pub(crate) const MAX_PAGES: usize = 200;

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
        let body = self
            .fetch(session, "get identity", Method::GET, "identity", &[], None)
            .await?;
        parse_identity(&body)
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

    /// Sends one data-API request (with quick in-place retries) and returns the body of the
    /// successful answer, for a [`parse`] function to read.
    async fn fetch(
        &self,
        session: &Session,
        what: &str,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
    ) -> Result<String, SyncError> {
        with_quick_retries(|| async {
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
            let text = http::provider_text(what, response).await?;
            metrics::counter!("fitlink_provider_requests_total", "provider" => "google-health", "status" => status.as_u16().to_string()).increment(1);
            if status.is_success() {
                Ok(text)
            } else {
                Err(common_status_error(what, status, &headers, &text)
                    .unwrap_or_else(|| classify_api_error(what, status, &text)))
            }
        })
        .await
    }

    /// Every page of a `list` call over a filter, each body read by `parse`.
    async fn list_all<T>(
        &self,
        session: &Session,
        data_type: &str,
        filter: &str,
        page_size: &str,
        parse: impl Fn(&str) -> Result<Page<T>, SyncError>,
    ) -> Result<Vec<T>, SyncError> {
        let path = format!("dataTypes/{data_type}/dataPoints");
        let what = format!("list {data_type}");
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("filter", filter), ("pageSize", page_size)];
            if let Some(t) = token.as_deref() {
                query.push(("pageToken", t));
            }
            let body = self
                .fetch(session, &what, Method::GET, &path, &query, None)
                .await?;
            let page = parse(&body)?;
            items.extend(page.items);
            match page.next_page_token {
                Some(next) if Some(&next) == token.as_ref() => {
                    return Err(SyncError::invalid_data(format!(
                        "{what}: the provider repeated a page token"
                    )));
                }
                Some(next) => token = Some(next),
                None => return Ok(items),
            }
        }
        Err(SyncError::invalid_data(format!(
            "{what}: more than {MAX_PAGES} pages (MAX_PAGES)"
        )))
    }
}

impl HealthProvider for GoogleHealthClient {
    /// 300 requests per minute per user.
    fn request_budget(&self) -> RequestBudget {
        RequestBudget::new(300, std::time::Duration::from_secs(60))
    }

    async fn account_identity(
        &self,
        session: &Session,
    ) -> Result<Option<ProviderIdentity>, SyncError> {
        GoogleHealthClient::identity(self, session).await.map(Some)
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
            let text = http::provider_text(what, response).await?;
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
        parse_token_response(&text, refresh_token.expose(), Utc::now())
    }

    async fn paired_devices(&self, session: &Session) -> Result<Vec<PairedDevice>, SyncError> {
        let mut devices = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![("pageSize", "100")];
            if let Some(t) = token.as_deref() {
                query.push(("pageToken", t));
            }
            let body = self
                .fetch(
                    session,
                    "list pairedDevices",
                    Method::GET,
                    "pairedDevices",
                    &query,
                    None,
                )
                .await?;
            let page = parse_paired_devices_page(&body)?;
            devices.extend(page.items);
            match page.next_page_token {
                Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                _ => return Ok(devices),
            }
        }
        Err(SyncError::invalid_data(format!(
            "list pairedDevices: more than {MAX_PAGES} pages (MAX_PAGES)"
        )))
    }

    async fn time_zone(&self, session: &Session) -> Result<Option<String>, SyncError> {
        let body = self
            .fetch(session, "get settings", Method::GET, "settings", &[], None)
            .await?;
        parse_settings(&body)
    }

    async fn daily_families(
        &self,
        session: &Session,
        days: Range<NaiveDate>,
    ) -> Result<DailyFamilies, SyncError> {
        self.read_daily_families(session, days).await
    }

    async fn intraday(&self, session: &Session, slice: Slice) -> Result<Intraday, SyncError> {
        let range_filter = |member: &str| {
            format!(
                "{member} >= \"{}\" AND {member} < \"{}\"",
                slice.start, slice.end
            )
        };
        // Heart rate and steps at once: two independent page chains.
        let (hr_filter, steps_filter) = (
            range_filter("heart_rate.sample_time.physical_time"),
            range_filter("steps.interval.start_time"),
        );
        let (heart_rate, steps) = tokio::try_join!(
            self.list_all(session, "heart-rate", &hr_filter, PAGE_SIZE, |body| {
                parse_heart_rate_page(body, slice)
            }),
            self.list_all(session, "steps", &steps_filter, PAGE_SIZE, |body| {
                parse_steps_page(body, slice)
            }),
        )?;
        let mut out = Intraday { heart_rate, steps };
        out.heart_rate.sort_by_key(|p| p.datetime);
        out.steps.sort_by_key(|p| p.datetime);
        Ok(out)
    }
}
