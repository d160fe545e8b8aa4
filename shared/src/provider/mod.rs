//! The provider seam: what a worker needs from a wearable-data provider, whatever its wire format.
//!
//! A provider turns a refresh token into an access grant, tells the latest device sync and the
//! participant's time zone, and returns normalised rows for local days and for time slices.
//! Each implementation classifies its own failures into [`SyncError`]s where they are born.

pub mod google;
mod http;

pub use http::client as http_client;

use std::collections::VecDeque;
use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::Mutex;

use crate::domain::Slice;
use crate::errors::SyncError;
use crate::messages::{ActivityDay, HeartRateZoneDay, IntradayPoint, RestingHeartRateDay};
use crate::secret::Secret;

/// What a token refresh gave us.
#[derive(Debug)]
pub struct AccessGrant {
    pub access_token: Secret<String>,
    pub expires_at: DateTime<Utc>,
    /// Set when the provider rotated the refresh token: it must be made durable before the new
    /// access token is used (legacy Fitbit rotates on every refresh; Google may).
    pub rotated_refresh_token: Option<Secret<String>>,
    pub scopes: Vec<String>,
}

/// Daily rows for a range of local days.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct DailySummaries {
    pub activity: Vec<ActivityDay>,
    pub heart_rate_zones: Vec<HeartRateZoneDay>,
    pub resting_heart_rate: Vec<RestingHeartRateDay>,
}

/// Intraday rows for one slice.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Intraday {
    pub heart_rate: Vec<IntradayPoint>,
    pub steps: Vec<IntradayPoint>,
}

/// One participant's calls during one job: the access token and the participant's request budget.
pub struct Session {
    pub access_token: Secret<String>,
    pub budget: RequestBudget,
}

/// A wearable-data provider. Implementations must be cheap to share between concurrent jobs.
pub trait HealthProvider: Send + Sync {
    /// Requests one participant may make per minute (Google: 300).
    fn requests_per_minute(&self) -> u32;

    fn refresh(
        &self,
        refresh_token: &Secret<String>,
    ) -> impl Future<Output = Result<AccessGrant, SyncError>> + Send;

    /// The latest time any of the participant's devices synced, `None` if no device is paired.
    fn latest_device_sync(
        &self,
        session: &Session,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, SyncError>> + Send;

    /// The participant's IANA time zone, `None` if the provider does not say.
    fn time_zone(
        &self,
        session: &Session,
    ) -> impl Future<Output = Result<Option<String>, SyncError>> + Send;

    /// Daily summaries for local days `days.start..days.end`.
    fn daily_summaries(
        &self,
        session: &Session,
        days: Range<NaiveDate>,
    ) -> impl Future<Output = Result<DailySummaries, SyncError>> + Send;

    /// Every intraday point in the slice, all pages.
    fn intraday(
        &self,
        session: &Session,
        slice: Slice,
    ) -> impl Future<Output = Result<Intraday, SyncError>> + Send;
}

/// A per-participant sliding-window request budget, so one job never exceeds the provider's
/// per-user rate limit on its own (a 429 then means someone else spent it, and we back off).
pub struct RequestBudget {
    per_minute: usize,
    sent: Mutex<VecDeque<tokio::time::Instant>>,
}

impl RequestBudget {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1) as usize,
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// Waits until one more request fits in the last minute, then records it.
    pub async fn acquire(&self) {
        const WINDOW: Duration = Duration::from_secs(60);
        loop {
            let wait = {
                let mut sent = self.sent.lock().await;
                let now = tokio::time::Instant::now();
                while sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= WINDOW)
                {
                    sent.pop_front();
                }
                if sent.len() < self.per_minute {
                    sent.push_back(now);
                    return;
                }
                WINDOW - now.duration_since(*sent.front().expect("non-empty when full"))
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_holds_the_per_minute_limit() {
        let budget = RequestBudget::new(3);
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            budget.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        budget.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(60));
    }
}
