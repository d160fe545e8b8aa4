//! The legacy Fitbit Web API (`api.fitbit.com`) and Fitbit OAuth token endpoint, serving
//! the same synthetic participants (the same generator, so the same ground truth) in the
//! legacy formats (`shared/reference/fitbit-web-api.md` part A).
//!
//! Routes (mounted next to the Google ones on the same server):
//! * `GET /oauth2/authorize` (the consent page, in `crate::consent`), `POST /oauth2/token`
//!   (code and refresh grants, single-use rotating refresh tokens, optional grace window)
//!   and `POST /oauth2/revoke` — [`oauth`];
//! * `GET /1/user/{-|encodedId}/...`: `profile.json`, `devices.json`, the daily activity
//!   summary, heart and steps daily time series and intraday — [`data`], paths in [`path`].
//!
//! Request processing order: turned off (410, before anything else), authentication
//! (401), per-participant and random faults (503/502/429), the per-user hourly quota
//! (429), then the request (400 validation, 403 intraday not permitted). Every legacy
//! response except the 410 carries `Fitbit-Rate-Limit-Limit/-Remaining/-Reset`
//! (remaining = quota left to the participant the request was attributed to, the full
//! quota when unknown; reset = seconds to the top of the real-clock hour, or to the end of
//! the shorter quota window a test configured).

mod data;
mod families;
mod oauth;
pub(crate) use oauth::LEGACY_SCOPE;
pub(crate) mod path;
pub(crate) mod wire;

#[cfg(test)]
pub(crate) mod tests;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::faults::{self, RandomFault};
use crate::state::{AppState, Attribution, Snapshot, quota_window};
use crate::wire::bytes_response;
use wire::FitbitError;

/// The legacy routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/oauth2/authorize", get(crate::consent::fitbit_authorize))
        .route("/oauth2/authorize/decision", post(crate::consent::decision))
        .route("/oauth2/token", post(oauth::token))
        .route("/oauth2/revoke", post(oauth::revoke))
        .route("/1/user/{user}/{*rest}", get(data::get))
        .route("/1.2/user/{user}/{*rest}", get(data::get_v12))
}

/// Whether `path` belongs to the legacy API (which answers in Fitbit's shapes).
pub(crate) fn is_legacy_path(path: &str) -> bool {
    path.starts_with("/1/")
        || path.starts_with("/1.1/")
        || path.starts_with("/1.2/")
        || path.starts_with("/oauth2/")
}

/// Fallback for unknown legacy paths.
pub(crate) fn not_found() -> Response {
    FitbitError::not_found().into_response()
}

/// Fallback for a known legacy path with the wrong method.
pub(crate) fn method_not_allowed() -> Response {
    FitbitError::method_not_allowed().into_response()
}

/// Classifies a legacy request path for statistics (`by_endpoint`).
pub(crate) fn endpoint_name(path: &str) -> String {
    let name = match path {
        "/oauth2/token" => "token",
        "/oauth2/authorize" => "authorize",
        "/oauth2/authorize/decision" => "authorize-decision",
        "/oauth2/revoke" => "revoke",
        _ => {
            let rest = |prefix: &str| {
                path.strip_prefix(prefix)
                    .and_then(|r| r.split_once('/'))
                    .map(|(_, rest)| rest)
            };
            let route = rest("/1/user/")
                .and_then(path::parse)
                .or_else(|| rest("/1.2/user/").and_then(path::parse_v12));
            match route {
                Some(path::Route::Profile) => "profile",
                Some(path::Route::Family { family, .. }) => family.name(),
                Some(path::Route::Devices) => "devices",
                Some(path::Route::DailySummary { .. }) => "activities",
                Some(path::Route::Series { resource, .. }) => resource.name(),
                Some(path::Route::Intraday { resource, .. }) => match resource {
                    path::Resource::Heart => "heart-intraday",
                    path::Resource::Steps => "steps-intraday",
                },
                None => "other",
            }
        }
    };
    format!("legacy/{name}")
}

/// The turn-off switch and the rate-limit headers, for legacy paths only.
pub(crate) async fn layer(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if !is_legacy_path(request.uri().path()) {
        return next.run(request).await;
    }
    if state.lock().legacy.turned_off {
        return FitbitError::gone().into_response();
    }
    let mut response = next.run(request).await;
    let limit = state.config.legacy_rate_limit_per_hour;
    let (hour, reset) = quota_window(state.config.legacy_rate_limit_window_secs);
    let (remaining, reset) = match response.extensions().get::<Attribution>() {
        Some(a) => {
            let rt = state.lock();
            match rt.hold_left(a.participant) {
                // Held (`crate::hold`): spent until the hold ends.
                Some(left) => (0, left),
                None => (
                    limit.saturating_sub(rt.legacy.used(a.participant, hour)),
                    reset,
                ),
            }
        }
        None => (limit, reset),
    };
    let headers = response.headers_mut();
    headers.insert("fitbit-rate-limit-limit", HeaderValue::from(limit));
    headers.insert("fitbit-rate-limit-remaining", HeaderValue::from(remaining));
    headers.insert("fitbit-rate-limit-reset", HeaderValue::from(reset));
    response
}

/// Adds the attribution used by statistics and the rate-limit headers.
fn attributed(mut response: Response, participant: usize, data: bool) -> Response {
    response.extensions_mut().insert(Attribution {
        participant,
        data,
        legacy: true,
    });
    response
}

/// A 5xx for a participant with `fail_5xx`: Fitbit's JSON 503, or with `malformed_json`
/// a proxy's HTML 502.
fn participant_failure(malformed: bool) -> Response {
    if malformed {
        wire::bad_gateway_page()
    } else {
        FitbitError::unavailable().into_response()
    }
}

/// A request refused before its handler, attributed when the participant is known.
struct Refused {
    /// `None`: the non-JSON 502 page.
    error: Option<FitbitError>,
    participant: Option<usize>,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let response = match self.error {
            Some(e) => e.into_response(),
            None => wire::bad_gateway_page(),
        };
        match self.participant {
            Some(index) => attributed(response, index, true),
            None => response,
        }
    }
}

impl From<FitbitError> for Refused {
    fn from(error: FitbitError) -> Self {
        Refused {
            error: Some(error),
            participant: None,
        }
    }
}

/// An authenticated caller that passed faults and the quota.
#[derive(Clone)]
pub(crate) struct Caller {
    pub snapshot: Snapshot,
    pub intraday_permitted: bool,
    /// Short scope names of the token (`sleep`, `heartrate`, ...).
    pub scopes: Vec<String>,
    /// The synthetic clock's "now" (`until + advance`).
    pub now: chrono::DateTime<chrono::Utc>,
}

impl Caller {
    fn index(&self) -> usize {
        self.snapshot.index
    }

    /// Refuses a request whose token lacks `scope` (403 `insufficient_scope`).
    fn require(&self, scope: &str) -> Result<(), FitbitError> {
        if self.scopes.iter().any(|s| s == scope) {
            Ok(())
        } else {
            Err(FitbitError::insufficient_scope(scope))
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

/// Authentication, faults and the hourly quota.
fn authenticate(state: &AppState, headers: &HeaderMap, user: &str) -> Result<Caller, Refused> {
    let Some(token) = bearer(headers) else {
        return Err(FitbitError::header_missing().into());
    };
    let mut rt = state.lock();
    let Some(access) = rt.legacy.tokens.get(&token).cloned() else {
        return Err(FitbitError::invalid_token(&token).into());
    };
    let index = access.participant;
    let (window, _) = quota_window(state.config.legacy_rate_limit_window_secs);
    rt.legacy_attempt(index, window);
    let fail = |error: Option<FitbitError>| {
        Err(Refused {
            error,
            participant: Some(index),
        })
    };
    if access.expires <= Instant::now() {
        return fail(Some(FitbitError::expired_token(&token)));
    }
    if rt.legacy.revoked[index] {
        return fail(Some(FitbitError::invalid_token(&token)));
    }
    let profile = &state.profiles[index];
    if user != "-" && user != profile.encoded_id {
        return fail(Some(FitbitError::other_user(user)));
    }
    let participant_faults = rt.faults.participant(&profile.id);
    if participant_faults.fail_5xx {
        return fail((!participant_faults.malformed_json).then(FitbitError::unavailable));
    }
    if let Some(left) = rt.held(index) {
        return fail(Some(FitbitError::rate_limited(Some(left))));
    }
    let retry_after = rt.faults.retry_after_secs;
    match rt.faults.roll() {
        Some(RandomFault::Unavailable) => return fail(Some(FitbitError::unavailable())),
        Some(RandomFault::RateLimited) => {
            return fail(Some(FitbitError::rate_limited(retry_after)));
        }
        None => {}
    }
    if !rt
        .legacy
        .admit(index, window, state.config.legacy_rate_limit_per_hour)
    {
        return fail(Some(FitbitError::rate_limited(retry_after)));
    }
    let advance = rt.advance_minutes;
    let snapshot = Snapshot {
        index,
        latest_sync: state.latest_sync(index, advance),
        restatements: rt.restatements[index].clone(),
        faults: participant_faults,
        deletions: rt.deletions_of(&profile.id),
    };
    Ok(Caller {
        snapshot,
        intraday_permitted: rt.legacy.intraday_permitted[index],
        scopes: access.scopes,
        now: state.config.until
            + chrono::Duration::minutes(i64::try_from(advance).unwrap_or(i64::MAX / 120)),
    })
}

/// Finishes a successful data response: body faults and attribution.
fn data_response(caller: &Caller, mut value: serde_json::Value) -> Response {
    if caller.snapshot.faults.malformed_json {
        faults::malform_legacy(&mut value);
    }
    let mut body = serde_json::to_vec(&value).unwrap_or_default();
    if caller.snapshot.faults.truncate_body {
        body = faults::truncate(body);
    }
    attributed(bytes_response(StatusCode::OK, body), caller.index(), true)
}
