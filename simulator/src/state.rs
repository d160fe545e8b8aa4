//! Shared runtime state: issued access tokens, grants, restatements, the synthetic
//! clock's advance, rate-limit windows and request statistics.
//!
//! One `std::sync::Mutex` guards all mutable state. It is only held for bookkeeping
//! (never across an `.await` or while generating data), so contention is negligible at
//! the request rates a test fleet produces.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::catalog::default_scopes;
use crate::config::SimConfig;
use crate::faults::{Faults, ParticipantFaults};
use crate::generator::{Profile, Window, profiles};

/// Lifetime of an access token, as Google's `expires_in`.
pub(crate) const ACCESS_TOKEN_TTL_SECS: u64 = 3599;

/// Attached to a response by a handler once it knows whose request it was, so the
/// statistics middleware can count per participant.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attribution {
    pub participant: usize,
    /// A Health API request (counts towards the per-minute figure); false for `/token`.
    pub data: bool,
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
}

/// Mutable state.
pub(crate) struct Runtime {
    pub faults: Faults,
    pub advance_minutes: u64,
    pub revoked: Vec<bool>,
    pub scopes: Vec<Vec<String>>,
    pub restatements: Vec<BTreeMap<NaiveDate, u32>>,
    pub tokens: HashMap<String, AccessToken>,
    /// Accepted Health API requests per participant in the last minute (rate limiting).
    pub limiter: Vec<VecDeque<Instant>>,
    /// All attributed Health API requests per participant in the last minute (statistics).
    attempts: Vec<VecDeque<Instant>>,
    pub stats: StatsSnapshot,
}

/// What a handler needs to know about one participant, copied out of the lock.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub index: usize,
    pub latest_sync: DateTime<Utc>,
    pub restatements: BTreeMap<NaiveDate, u32>,
    pub faults: ParticipantFaults,
}

impl Snapshot {
    pub(crate) fn restate_version(&self, date: NaiveDate) -> u32 {
        self.restatements.get(&date).copied().unwrap_or(0)
    }
}

/// Immutable configuration plus the mutable runtime.
pub(crate) struct AppState {
    pub config: SimConfig,
    pub profiles: Vec<Profile>,
    by_id: HashMap<String, usize>,
    by_refresh: HashMap<String, usize>,
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
        let by_refresh = profiles
            .iter()
            .enumerate()
            .map(|(i, p)| (p.refresh_token.clone(), i))
            .collect();
        let runtime = Runtime {
            faults: Faults::from_config(&config),
            advance_minutes: config.advance_minutes,
            revoked: vec![false; n],
            scopes: vec![default_scopes(); n],
            restatements: vec![BTreeMap::new(); n],
            tokens: HashMap::new(),
            limiter: vec![VecDeque::new(); n],
            attempts: vec![VecDeque::new(); n],
            stats: StatsSnapshot::default(),
        };
        AppState {
            config,
            profiles,
            by_id,
            by_refresh,
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

    pub(crate) fn refresh_index(&self, token: &str) -> Option<usize> {
        self.by_refresh.get(token).copied()
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
            if a.data {
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
