//! Shared runtime state: issued access tokens, grants, restatements, the synthetic
//! clock's advance, rate-limit windows and request statistics, plus the legacy Fitbit
//! side ([`LegacyRuntime`]: rotating refresh tokens, hourly quotas, switches).
//!
//! One `std::sync::Mutex` guards all mutable state. It is only held for bookkeeping
//! (never across an `.await` or while generating data), so contention is negligible at
//! the request rates a test fleet produces.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::catalog::default_scopes;
use crate::config::{Deletion, IntradayType, SimConfig};
use crate::consent::ConsentState;
use crate::faults::{Faults, ParticipantFaults};
use crate::generator::{Profile, Window, profiles};
use crate::legacy::LEGACY_SCOPE;
use crate::webhooks::{Signer, Webhooks};

/// Lifetime of an access token, as Google's `expires_in`.
pub(crate) const ACCESS_TOKEN_TTL_SECS: u64 = 3599;

/// Lifetime of a legacy Fitbit access token (`expires_in`, the only supported value).
pub(crate) const LEGACY_ACCESS_TOKEN_TTL_SECS: u64 = 28_800;

/// Attached to a response by a handler once it knows whose request it was, so the
/// statistics middleware can count per participant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attribution {
    pub participant: usize,
    /// A data request (not a token refresh): a Health API request counts towards the
    /// per-minute figure, a legacy one towards the per-hour figure.
    pub data: bool,
    /// A legacy Fitbit Web API request.
    pub legacy: bool,
}

/// An issued access token.
#[derive(Clone, Debug)]
pub(crate) struct AccessToken {
    pub participant: usize,
    pub scopes: Vec<String>,
    pub expires: Instant,
}

/// `GET /_sim/stats`.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct StatsSnapshot {
    pub requests_total: u64,
    pub by_endpoint: BTreeMap<String, u64>,
    pub by_participant: BTreeMap<String, u64>,
    pub status_counts: BTreeMap<String, u64>,
    pub max_requests_per_participant_per_minute: u64,
    pub token_refreshes: u64,
    /// Successful legacy `/oauth2/token` refreshes (grace-window replays included).
    pub legacy_token_refreshes: u64,
    /// The most legacy data requests one participant made within one clock hour (one
    /// quota window, see `--legacy-rate-limit-window-secs`): every attempt that reached
    /// authentication, 429s included.
    pub legacy_requests_by_participant_per_hour_max: u64,
    /// Successful authorization-code exchanges (Google `/token`).
    pub code_exchanges: u64,
    /// Successful authorization-code exchanges (legacy `/oauth2/token`).
    pub legacy_code_exchanges: u64,
    /// Grants revoked through Google's `POST /revoke`.
    pub revocations: u64,
    /// Grants revoked through Fitbit's `POST /oauth2/revoke`.
    pub legacy_revocations: u64,
    /// Webhook delivery attempts the receiver answered with a 2xx.
    pub webhook_deliveries: u64,
    /// Webhook delivery attempts that failed (non-2xx status or no response).
    pub webhook_failures: u64,
}

/// The pair a legacy refresh returned, kept for the grace window.
#[derive(Clone, Debug)]
pub(crate) struct Rotation {
    /// The refresh token that was used (and is now invalid outside the grace window).
    pub used: String,
    pub at: Instant,
    /// The exact success body returned, replayed within the grace window.
    pub body: Value,
}

/// The legacy Fitbit Web API side of the runtime.
pub(crate) struct LegacyRuntime {
    /// `POST /_sim/legacy {"turned_off": true}`: every legacy path answers 410.
    pub turned_off: bool,
    /// The Fitbit grant is revoked (independent of the Google grant).
    pub revoked: Vec<bool>,
    pub intraday_permitted: Vec<bool>,
    /// `legacyUserId` the Google identity reports instead of the encodedId.
    pub identity_override: Vec<Option<String>>,
    /// The one active refresh token of each participant.
    pub refresh: Vec<String>,
    /// Scopes (short names) of each participant's grant, as the token response reports
    /// them; a consent replaces them.
    pub scopes: Vec<String>,
    pub by_refresh: HashMap<String, usize>,
    /// The latest rotation of each participant (grace window).
    pub previous: Vec<Option<Rotation>>,
    pub tokens: HashMap<String, AccessToken>,
    /// Admitted requests in the current quota window: `(window, count)` per participant.
    pub quota: Vec<(i64, u32)>,
    /// All attributed requests per quota window (statistics).
    attempts: Vec<(i64, u64)>,
}

impl LegacyRuntime {
    fn new(profiles: &[Profile]) -> Self {
        let n = profiles.len();
        let refresh: Vec<String> = profiles
            .iter()
            .map(|p| p.legacy_refresh_token.clone())
            .collect();
        LegacyRuntime {
            turned_off: false,
            revoked: vec![false; n],
            intraday_permitted: vec![true; n],
            identity_override: vec![None; n],
            by_refresh: refresh
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i))
                .collect(),
            refresh,
            scopes: vec![LEGACY_SCOPE.to_owned(); n],
            previous: vec![None; n],
            tokens: HashMap::new(),
            quota: vec![(0, 0); n],
            attempts: vec![(0, 0); n],
        }
    }

    /// Replaces the active refresh token of `participant`.
    pub(crate) fn set_refresh(&mut self, participant: usize, token: String) {
        let old = std::mem::replace(&mut self.refresh[participant], token.clone());
        self.by_refresh.remove(&old);
        self.by_refresh.insert(token, participant);
    }

    /// Revokes the Fitbit grant: the refresh token is refused and every access token dropped.
    pub(crate) fn revoke(&mut self, participant: usize) {
        self.revoked[participant] = true;
        self.previous[participant] = None;
        self.tokens.retain(|_, t| t.participant != participant);
    }

    /// Restores a revoked Fitbit grant as a re-consent would: `initial` (the roster's
    /// legacy refresh token) becomes the active refresh token again. No-op when the grant
    /// is not revoked, so the client's current token stays valid.
    pub(crate) fn restore(&mut self, participant: usize, initial: &str) {
        if self.revoked[participant] {
            self.revoked[participant] = false;
            self.previous[participant] = None;
            self.set_refresh(participant, initial.to_owned());
        }
    }

    /// A consent (an exchanged authorization code): the grant is live again with `scopes`
    /// and `token` as its one active refresh token, so every older token stays dead.
    pub(crate) fn consent(&mut self, participant: usize, token: String, scopes: String) {
        self.revoked[participant] = false;
        self.previous[participant] = None;
        self.scopes[participant] = scopes;
        self.set_refresh(participant, token);
    }

    /// Requests admitted for `participant` in clock hour `hour`.
    pub(crate) fn used(&self, participant: usize, hour: i64) -> u32 {
        match self.quota[participant] {
            (h, count) if h == hour => count,
            _ => 0,
        }
    }

    /// Hourly quota: true (and counted) when the request may proceed.
    pub(crate) fn admit(&mut self, participant: usize, hour: i64, limit: u32) -> bool {
        let used = self.used(participant, hour);
        if used >= limit {
            return false;
        }
        self.quota[participant] = (hour, used + 1);
        true
    }

    /// Drops access tokens that expired more than a day ago (expired ones are kept a
    /// while so that they are answered with `expired_token`, not `invalid_token`).
    pub(crate) fn prune_tokens(&mut self) {
        if let Some(horizon) = Instant::now().checked_sub(Duration::from_secs(86_400)) {
            self.tokens.retain(|_, t| t.expires > horizon);
        }
    }
}

/// The current legacy quota window of `secs` seconds on the real clock (windows aligned to
/// multiples of `secs` in Unix time: 3600 is the clock hour) and the seconds left in it.
pub(crate) fn quota_window(secs: u64) -> (i64, u64) {
    let secs = i64::try_from(secs.max(1)).unwrap_or(3600);
    let now = Utc::now().timestamp();
    (now.div_euclid(secs), (secs - now.rem_euclid(secs)) as u64)
}

/// Mutable state.
pub(crate) struct Runtime {
    pub faults: Faults,
    pub advance_minutes: u64,
    /// The Google grant is revoked (or expired): access tokens are refused.
    pub revoked: Vec<bool>,
    /// The Google refresh tokens that work, per participant: the roster's at start, plus
    /// one per offline consent. Revoking clears the set, so a token from before a
    /// revocation stays dead after a re-consent.
    pub live_refresh: Vec<HashSet<String>>,
    /// Owner of every Google refresh token ever issued (live or not).
    refresh_owner: HashMap<String, usize>,
    /// When a time-limited (testing-mode) refresh token stops working.
    pub refresh_expires: HashMap<String, Instant>,
    pub scopes: Vec<Vec<String>>,
    pub restatements: Vec<BTreeMap<NaiveDate, u32>>,
    pub tokens: HashMap<String, AccessToken>,
    /// Accepted Health API requests per participant in the last minute (rate limiting).
    pub limiter: Vec<VecDeque<Instant>>,
    /// All attributed Health API requests per participant in the last minute (statistics).
    attempts: Vec<VecDeque<Instant>>,
    pub stats: StatsSnapshot,
    pub legacy: LegacyRuntime,
    /// Pending consent pages and unexchanged authorization codes.
    pub consent: ConsentState,
    /// Provider-side deletions (initially [`SimConfig::deletions`]).
    pub deletions: Vec<Deletion>,
    /// Webhook receivers and the delivery log.
    pub webhooks: Webhooks,
    /// Participants held at the rate limit, by index (`crate::hold`).
    pub holds: HashMap<usize, crate::hold::RateLimitHold>,
}

/// What a handler needs to know about one participant, copied out of the lock.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub index: usize,
    pub latest_sync: DateTime<Utc>,
    pub restatements: BTreeMap<NaiveDate, u32>,
    pub faults: ParticipantFaults,
    /// This participant's provider-side deletions.
    pub deletions: Vec<Deletion>,
}

impl Snapshot {
    /// Whether the point of `data_type` at Unix second `t` was deleted at the provider.
    pub(crate) fn deleted(&self, data_type: IntradayType, t: i64) -> bool {
        self.deletions.iter().any(|d| d.covers(data_type, t))
    }

    pub(crate) fn restate_version(&self, date: NaiveDate) -> u32 {
        self.restatements.get(&date).copied().unwrap_or(0)
    }
}

/// Immutable configuration plus the mutable runtime.
pub(crate) struct AppState {
    pub config: SimConfig,
    pub profiles: Vec<Profile>,
    by_id: HashMap<String, usize>,
    /// Signs Google webhook notifications (its public half is the served keyset).
    pub signer: Signer,
    /// The console's OpenID Connect issuer: its signing key and pending sign-ins.
    pub oidc: crate::oidc::Issuer,
    /// Sends webhook notifications (plain http to loopback receivers).
    pub http: reqwest::Client,
    runtime: Mutex<Runtime>,
}

fn prune(window: &mut VecDeque<Instant>, now: Instant) {
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
    {
        window.pop_front();
    }
}

impl AppState {
    pub(crate) fn new(config: SimConfig) -> Self {
        let profiles = profiles(&config);
        let n = profiles.len();
        let by_id = profiles
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        let refresh_owner = profiles
            .iter()
            .enumerate()
            .map(|(i, p)| (p.refresh_token.clone(), i))
            .collect();
        let runtime = Runtime {
            faults: Faults::from_config(&config),
            advance_minutes: config.advance_minutes,
            revoked: vec![false; n],
            live_refresh: profiles
                .iter()
                .map(|p| HashSet::from([p.refresh_token.clone()]))
                .collect(),
            refresh_owner,
            refresh_expires: HashMap::new(),
            scopes: vec![default_scopes(); n],
            restatements: vec![BTreeMap::new(); n],
            tokens: HashMap::new(),
            limiter: vec![VecDeque::new(); n],
            attempts: vec![VecDeque::new(); n],
            stats: StatsSnapshot::default(),
            legacy: LegacyRuntime::new(&profiles),
            consent: ConsentState::default(),
            deletions: config.deletions.clone(),
            webhooks: Webhooks::from_config(&config),
            holds: HashMap::new(),
        };
        AppState {
            config,
            profiles,
            by_id,
            signer: Signer::generate(),
            oidc: crate::oidc::Issuer::generate(),
            http: crate::webhooks::client(),
            runtime: Mutex::new(runtime),
        }
    }

    /// Locks the runtime. A poisoned lock (a panic elsewhere) is recovered: the state is
    /// bookkeeping only and stays usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Runtime> {
        self.runtime.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn participant_index(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub(crate) fn latest_sync(&self, index: usize, advance_minutes: u64) -> DateTime<Utc> {
        self.profiles[index].latest_sync(self.config.until, advance_minutes)
    }

    pub(crate) fn window(&self, snapshot: &Snapshot) -> Window {
        self.profiles[snapshot.index].window(snapshot.latest_sync)
    }

    /// Records one finished (non-control) request.
    pub(crate) fn record(&self, endpoint: String, status: u16, attribution: Option<Attribution>) {
        let now = Instant::now();
        let mut rt = self.lock();
        let rt = &mut *rt;
        rt.stats.requests_total += 1;
        *rt.stats.by_endpoint.entry(endpoint).or_default() += 1;
        *rt.stats
            .status_counts
            .entry(status.to_string())
            .or_default() += 1;
        if let Some(a) = attribution {
            *rt.stats
                .by_participant
                .entry(self.profiles[a.participant].id.clone())
                .or_default() += 1;
            // Legacy requests are counted per hour when authenticated (`legacy_attempt`).
            if a.data && !a.legacy {
                let window = &mut rt.attempts[a.participant];
                prune(window, now);
                window.push_back(now);
                let seen = window.len() as u64;
                rt.stats.max_requests_per_participant_per_minute =
                    rt.stats.max_requests_per_participant_per_minute.max(seen);
            }
        }
    }
}

impl Runtime {
    /// The participant whose live Google refresh token `token` is.
    pub(crate) fn live_refresh_owner(&self, token: &str) -> Option<usize> {
        self.refresh_owner
            .get(token)
            .copied()
            .filter(|&i| self.live_refresh[i].contains(token))
    }

    /// Revokes (or expires) the participant's Google grant: every refresh token stops
    /// working and every access token is dropped.
    pub(crate) fn revoke_google(&mut self, participant: usize) {
        self.revoked[participant] = true;
        self.live_refresh[participant].clear();
        self.tokens.retain(|_, t| t.participant != participant);
    }

    /// `POST /_sim/participants/{id}/restore`: the grant is live again with the roster's
    /// refresh token (as a re-import after an out-of-band re-consent would deliver it).
    pub(crate) fn restore_google(&mut self, participant: usize, roster_token: &str) {
        self.revoked[participant] = false;
        self.live_refresh[participant].insert(roster_token.to_owned());
    }

    /// A Google consent (an exchanged authorization code): the grant is live with `scopes`
    /// for tokens issued from now on, and `refresh` (offline access) works from now on.
    pub(crate) fn consent_google(
        &mut self,
        participant: usize,
        scopes: Vec<String>,
        refresh: Option<String>,
    ) {
        self.revoked[participant] = false;
        self.scopes[participant] = scopes;
        if let Some(token) = refresh {
            self.refresh_owner.insert(token.clone(), participant);
            self.live_refresh[participant].insert(token);
        }
    }

    /// The deletions of participant `id`.
    pub(crate) fn deletions_of(&self, id: &str) -> Vec<Deletion> {
        self.deletions
            .iter()
            .filter(|d| d.participant == id)
            .cloned()
            .collect()
    }

    /// Counts an authenticated legacy data request of `participant` in quota window
    /// `window` (the same window its admission is decided in) for the statistics.
    pub(crate) fn legacy_attempt(&mut self, participant: usize, window: i64) {
        let entry = &mut self.legacy.attempts[participant];
        if entry.0 == window {
            entry.1 += 1;
        } else {
            *entry = (window, 1);
        }
        self.stats.legacy_requests_by_participant_per_hour_max = self
            .stats
            .legacy_requests_by_participant_per_hour_max
            .max(entry.1);
    }

    /// Sliding-minute rate limit: true (and counted) when the request may proceed.
    pub(crate) fn admit(&mut self, participant: usize, limit: u32) -> bool {
        let now = Instant::now();
        let window = &mut self.limiter[participant];
        prune(window, now);
        if window.len() >= limit as usize {
            return false;
        }
        window.push_back(now);
        true
    }

    /// Drops expired access tokens (called when issuing, so the map stays small).
    pub(crate) fn prune_tokens(&mut self) {
        let now = Instant::now();
        self.tokens.retain(|_, t| t.expires > now);
    }
}
