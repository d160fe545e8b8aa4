//! Holding one participant at the provider's rate limit for a while
//! (`POST /_sim/participants/{id}/rate-limit` with `{"secs": N}`): every API request made with
//! their tokens is a 429 whose reset counts down to the end of the hold (Google `Retry-After`,
//! Fitbit `Fitbit-Rate-Limit-Reset` and `Retry-After`), and the first request after the end is
//! timed. `GET` on the same path tells a test how soon the fleet came back
//! (`first_request_after_secs`) and how many requests the hold refused. Other participants are
//! served as usual. The token endpoints are not held (Fitbit does not count them).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::control::{ok, or_respond, parse, participant};
use crate::state::{AppState, Runtime};

/// One participant's hold.
#[derive(Clone, Debug)]
pub(crate) struct RateLimitHold {
    until: Instant,
    refused: u32,
    /// From the end of the hold to the first request after it.
    first_after: Option<Duration>,
}

impl Runtime {
    /// For an API request of participant `index`: the whole seconds left of their hold (the
    /// request is refused), or `None` (served; the first one after a hold is timed).
    pub(crate) fn held(&mut self, index: usize) -> Option<u64> {
        let hold = self.holds.get_mut(&index)?;
        let now = Instant::now();
        if now < hold.until {
            hold.refused += 1;
            return Some(seconds_left(hold.until, now));
        }
        hold.first_after.get_or_insert(now - hold.until);
        None
    }

    /// The seconds left of participant `index`'s hold, without counting a request.
    pub(crate) fn hold_left(&self, index: usize) -> Option<u64> {
        let now = Instant::now();
        self.holds
            .get(&index)
            .filter(|h| now < h.until)
            .map(|h| seconds_left(h.until, now))
    }
}

/// Rounded up, and at least 1: a reset of 0 would say "now" while still refusing.
fn seconds_left(until: Instant, now: Instant) -> u64 {
    (until - now).as_secs_f64().ceil().max(1.0) as u64
}

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route(
        "/participants/{id}/rate-limit",
        get(get_hold).post(set_hold),
    )
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldRequest {
    secs: u64,
}

async fn set_hold(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let index = or_respond!(participant(&state, &id));
    let request: HoldRequest = or_respond!(parse(&body));
    let hold = RateLimitHold {
        until: Instant::now() + Duration::from_secs(request.secs),
        refused: 0,
        first_after: None,
    };
    state.lock().holds.insert(index, hold);
    ok(json!({ "participant_id": id, "secs": request.secs }))
}

async fn get_hold(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let index = or_respond!(participant(&state, &id));
    let rt = state.lock();
    let Some(hold) = rt.holds.get(&index) else {
        return crate::control::bad(format!("participant {id} is not held")).into_response();
    };
    ok(json!({
        "participant_id": id,
        "refused": hold.refused,
        "secs_left": rt.hold_left(index).unwrap_or(0),
        "first_request_after_secs": hold.first_after.map(|d| d.as_secs_f64()),
    }))
}
