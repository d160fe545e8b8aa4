//! The provider seam: what a worker needs from a wearable-data provider, whatever its wire format.
//!
//! A provider turns a refresh token into an access grant, tells the latest device sync and the
//! participant's time zone, and returns normalised rows for local days and for time slices.
//! Each implementation classifies its own failures into [`SyncError`]s where they are born.
//!
//! Two implementations: [`google::GoogleHealthClient`] (Google Health API v4) and
//! [`fitbit::FitbitClient`] (the legacy Fitbit Web API, turned off on 2026-11-02).

pub mod fitbit;
pub mod google;
pub(crate) mod http;

pub use http::client as http_client;
pub use http::{
    BodyError, CONNECT_TIMEOUT, MAX_RESPONSE_BYTES, REQUEST_TIMEOUT, error_chain, read_capped,
    read_text_capped,
};

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::ops::Range;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use tokio::sync::Mutex;

use crate::domain::Slice;
use crate::errors::SyncError;
pub use crate::families::{DailyFamilies, Family, PairedDevice};
use crate::messages::IntradayPoint;
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
    /// The provider's own id for the participant, when the token response names it (legacy
    /// Fitbit's `user_id`; Google: `None`). Lets the program keep a participant's identity
    /// across the move from the legacy API to Google Health.
    pub provider_user_id: Option<String>,
}

/// When an access token granted at `now` for `expires_in` seconds (`None`: the provider did not
/// say, `default` then) expires. A lifetime too large for a date (`9223372036854775807`) used to
/// panic in `TimeDelta::seconds`; it reads as `default` now: the time only decides how long the
/// worker caches the access token, and a token that expires sooner gets a 401 and a refresh.
pub(crate) fn expires_at(
    now: DateTime<Utc>,
    expires_in: Option<i64>,
    default: i64,
) -> DateTime<Utc> {
    let at = |seconds| {
        TimeDelta::try_seconds(seconds).and_then(|lifetime| now.checked_add_signed(lifetime))
    };
    expires_in
        .and_then(at)
        .or_else(|| at(default))
        .unwrap_or(now)
}

/// Intraday rows for one slice.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Intraday {
    pub heart_rate: Vec<IntradayPoint>,
    pub steps: Vec<IntradayPoint>,
}

/// One participant's calls during one job: the access token, the participant's request budget,
/// and what the provider told us about this participant along the way.
///
/// Built with [`Session::new`]; the worker sets [`Session::time_zone`] once it knows the zone.
/// Two signals flow back to the worker through it:
/// - [`Session::quota_resets_in`]: the provider said this participant's quota is spent; every
///   further call in this session is refused without being sent (as
///   [`SyncError::RateLimited`]) until then.
/// - [`Session::intraday_denied`]: the provider refuses intraday data for this participant or
///   app; `intraday` returns empty slices from then on and the worker records the reason.
pub struct Session {
    pub access_token: Secret<String>,
    pub budget: RequestBudget,
    /// The participant's zone, set by the worker after [`HealthProvider::time_zone`] (or from
    /// the job). Legacy Fitbit needs it to give intraday points their UTC offset and to read its
    /// zone-less local times; `None` means offset 0 (UTC). Google reads offsets from its data
    /// and ignores it.
    pub time_zone: Option<chrono_tz::Tz>,
    /// When the provider's quota for this participant resets, once a response said it is spent
    /// (legacy Fitbit: `Fitbit-Rate-Limit-Remaining: 0`, or a 429). A later response with quota
    /// left clears it.
    quota_resets_at: std::sync::Mutex<Option<tokio::time::Instant>>,
    /// Why the provider refuses intraday data (first refusal wins).
    intraday_denied: OnceLock<String>,
    /// Daily families the provider refused (403 on that family's data), with the reason.
    families_denied: std::sync::Mutex<BTreeMap<Family, String>>,
}

impl Session {
    pub fn new(access_token: Secret<String>, budget: RequestBudget) -> Self {
        Self {
            access_token,
            budget,
            time_zone: None,
            quota_resets_at: std::sync::Mutex::new(None),
            intraday_denied: OnceLock::new(),
            families_denied: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// How long until the provider's quota for this participant resets, if a response said it
    /// is spent and that time has not come yet.
    pub fn quota_resets_in(&self) -> Option<Duration> {
        let mut resets_at = self.quota_resets_at.lock().expect("quota lock");
        let now = tokio::time::Instant::now();
        match *resets_at {
            Some(at) if at > now => Some(at - now),
            Some(_) => {
                *resets_at = None;
                None
            }
            None => None,
        }
    }

    /// Records what a response said about the quota: spent until `now + resets_in`, or (with
    /// `None`) not spent.
    pub fn set_quota_spent(&self, resets_in: Option<Duration>) {
        *self.quota_resets_at.lock().expect("quota lock") =
            resets_in.map(|d| tokio::time::Instant::now() + d);
    }

    /// Why the provider refuses intraday data for this participant, if it did in this session.
    pub fn intraday_denied(&self) -> Option<&str> {
        self.intraday_denied.get().map(String::as_str)
    }

    /// Records that the provider refuses intraday data (keeps the first reason).
    pub fn deny_intraday(&self, reason: impl Into<String>) {
        let _ = self.intraday_denied.set(reason.into());
    }

    /// Records that the provider refuses one daily family for this participant (a 403 on its
    /// data: the scope was not granted). The client sends no further request for it in this
    /// session and reports it in [`DailyFamilies::not_permitted`]; every other family goes on.
    pub fn deny_family(&self, family: Family, reason: impl Into<String>) {
        self.families_denied
            .lock()
            .expect("families lock")
            .entry(family)
            .or_insert_with(|| reason.into());
    }

    /// Whether [`deny_family`](Self::deny_family) was called for `family` in this session.
    pub fn family_denied(&self, family: Family) -> bool {
        self.families_denied
            .lock()
            .expect("families lock")
            .contains_key(&family)
    }

    /// Every family refused in this session, with its reason.
    pub fn denied_families(&self) -> BTreeMap<Family, String> {
        self.families_denied.lock().expect("families lock").clone()
    }
}

/// A wearable-data provider. Implementations must be cheap to share between concurrent jobs.
pub trait HealthProvider: Send + Sync {
    /// A fresh budget holding the provider's per-participant rate limit (Google: 300 per
    /// minute; legacy Fitbit: 150 per hour). One per [`Session`].
    fn request_budget(&self) -> RequestBudget;

    fn refresh(
        &self,
        refresh_token: &Secret<String>,
    ) -> impl Future<Output = Result<AccessGrant, SyncError>> + Send;

    /// Every paired device with its battery and latest sync (the latest of these is how far a
    /// job syncs; empty if no device is paired). Legacy Fitbit reports sync times in local
    /// time and reads them in [`Session::time_zone`] when set (else it fetches the profile:
    /// call [`time_zone`](Self::time_zone) first to save that).
    fn paired_devices(
        &self,
        session: &Session,
    ) -> impl Future<Output = Result<Vec<PairedDevice>, SyncError>> + Send;

    /// Who the account is (Google Health `users/me/identity`), for providers whose token
    /// response does not say. `None` where the provider has no such call (legacy Fitbit names
    /// the user in its token response: [`AccessGrant::provider_user_id`]).
    fn account_identity(
        &self,
        _session: &Session,
    ) -> impl Future<Output = Result<Option<crate::messages::ProviderIdentity>, SyncError>> + Send
    {
        async { Ok(None) }
    }

    /// The participant's IANA time zone, `None` if the provider does not say.
    fn time_zone(
        &self,
        session: &Session,
    ) -> impl Future<Output = Result<Option<String>, SyncError>> + Send;

    /// Every daily family (summaries, sleep sessions ending on these days, nightly metrics) for
    /// local days `days.start..days.end`.
    fn daily_families(
        &self,
        session: &Session,
        days: Range<NaiveDate>,
    ) -> impl Future<Output = Result<DailyFamilies, SyncError>> + Send;

    /// Every intraday point in the slice, all pages. When the provider refuses intraday data
    /// for this participant or app (legacy Fitbit: 403), this is `Ok` with empty vectors and
    /// [`Session::intraday_denied`] says why.
    fn intraday(
        &self,
        session: &Session,
        slice: Slice,
    ) -> impl Future<Output = Result<Intraday, SyncError>> + Send;
}

/// A per-participant sliding-window request budget, so one job never exceeds the provider's
/// per-user rate limit on its own (a 429 then means someone else spent it, and we back off).
pub struct RequestBudget {
    limit: usize,
    window: Duration,
    sent: Mutex<VecDeque<tokio::time::Instant>>,
}

impl RequestBudget {
    /// At most `limit` requests in any `window` (a zero limit or window is raised to 1 / 1 s).
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1) as usize,
            window: window.max(Duration::from_secs(1)),
            sent: Mutex::new(VecDeque::new()),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit as u32
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Waits until one more request fits in the window, then records it.
    pub async fn acquire(&self) {
        // Cannot fail: no wait is longer than Duration::MAX.
        let _ = self.acquire_within(Duration::MAX).await;
    }

    /// Like [`acquire`](Self::acquire), but refuses to wait longer than `max_wait`: then it
    /// records nothing and returns how long until a request would fit. For hour-long windows,
    /// where waiting would hold a worker slot past the broker's consumer timeout.
    pub async fn acquire_within(&self, max_wait: Duration) -> Result<(), Duration> {
        loop {
            let wait = {
                let mut sent = self.sent.lock().await;
                let now = tokio::time::Instant::now();
                while sent
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    sent.pop_front();
                }
                if sent.len() < self.limit {
                    sent.push_back(now);
                    return Ok(());
                }
                self.window - now.duration_since(*sent.front().expect("non-empty when full"))
            };
            if wait > max_wait {
                return Err(wait);
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod bounds_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_budget_holds_the_per_minute_limit() {
        let budget = RequestBudget::new(3, Duration::from_secs(60));
        let start = tokio::time::Instant::now();
        for _ in 0..3 {
            budget.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        budget.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(60));
    }

    /// The window's timestamps are the budget's only memory: never more than its limit.
    #[tokio::test(start_paused = true)]
    async fn the_budget_remembers_at_most_its_limit_of_requests() {
        let budget = RequestBudget::new(5, Duration::from_secs(1));
        for _ in 0..1000 {
            budget.acquire().await;
        }
        assert_eq!(budget.sent.lock().await.len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn an_hourly_budget_refuses_a_long_wait_instead_of_sleeping() {
        let budget = RequestBudget::new(2, Duration::from_secs(3600));
        assert_eq!(
            (budget.limit(), budget.window()),
            (2, Duration::from_secs(3600))
        );
        budget.acquire_within(Duration::ZERO).await.unwrap();
        tokio::time::advance(Duration::from_secs(600)).await;
        budget.acquire_within(Duration::ZERO).await.unwrap();
        let start = tokio::time::Instant::now();
        let wait = budget
            .acquire_within(Duration::from_secs(60))
            .await
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(3000));
        assert_eq!(start.elapsed(), Duration::ZERO, "it did not sleep");
        // A refusal records nothing: once the first request leaves the window, one fits.
        tokio::time::advance(wait).await;
        budget.acquire_within(Duration::ZERO).await.unwrap();
        assert!(budget.acquire_within(Duration::ZERO).await.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_quota_is_remembered_until_it_resets() {
        let session = Session::new(
            Secret::new("t".to_owned()),
            RequestBudget::new(1, Duration::from_secs(1)),
        );
        assert_eq!(session.quota_resets_in(), None);
        session.set_quota_spent(Some(Duration::from_secs(90)));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(session.quota_resets_in(), Some(Duration::from_secs(60)));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(session.quota_resets_in(), None);
        session.set_quota_spent(Some(Duration::from_secs(90)));
        session.set_quota_spent(None);
        assert_eq!(session.quota_resets_in(), None);
        assert_eq!(session.intraday_denied(), None);
        session.deny_intraday("first");
        session.deny_intraday("second");
        assert_eq!(session.intraday_denied(), Some("first"));
    }
}
