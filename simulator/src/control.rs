//! The control API under `/_sim/`: fault switches, grant revocation, expiry and scopes,
//! restatements, provider-side deletions, the synthetic clock, statistics and the roster,
//! the legacy Fitbit switches (turn-off, intraday permission, identity mapping, token
//! expiry), the webhook calls (`crate::webhooks`), rate-limit holds (`crate::hold`) and the staff issuer's ID-token fault
//! (`crate::oidc`).
//!
//! It is for tests and demos only; it is not rate limited, not delayed and not counted in
//! the statistics. Errors use the same Google envelope as the API for uniform handling.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::catalog::SCOPE_PREFIX;
use crate::clock::rfc3339;
use crate::config::{Deletion, IntradayType};
use crate::faults::Faults;
use crate::state::AppState;
use crate::wire::{ApiError, json_response};

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/faults", get(get_faults).post(set_faults))
        .route("/participants", get(participants))
        .route("/participants/{id}/revoke", post(revoke))
        .route("/participants/{id}/restore", post(restore))
        .route("/participants/{id}/scopes", post(set_scopes))
        .route("/participants/{id}/restate", post(restate))
        .route("/participants/{id}/identity", post(set_identity))
        .route("/participants/{id}/legacy", post(set_legacy_participant))
        .route("/legacy", get(get_legacy).post(set_legacy))
        .route("/restatements", get(restatements))
        .route("/advance", post(advance))
        .route("/clock", get(clock))
        .route("/stats", get(stats))
        .route("/roster.csv", get(roster_csv))
        .route("/participants/{id}/expire-grant", post(expire_grant))
        .route("/participants/{id}/delete-data", post(delete_data))
        .route("/deletions", get(deletions))
        .merge(crate::webhooks::routes())
        .merge(crate::hold::routes())
        .merge(crate::oidc::control_routes())
}

/// The value of a `Result`, or (returned at once) the error's response: what every control
/// handler does with an unknown participant or an unreadable body.
macro_rules! or_respond {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(error) => return error.into_response(),
        }
    };
}
pub(crate) use or_respond;

pub(crate) fn ok(value: Value) -> Response {
    json_response(StatusCode::OK, &value)
}

pub(crate) fn bad(message: impl Into<String>) -> Response {
    ApiError::invalid_argument("INVALID_ARGUMENT", message).into_response()
}

pub(crate) fn parse<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid_argument("INVALID_ARGUMENT", format!("Invalid JSON body: {e}"))
    })
}

pub(crate) fn participant(state: &AppState, id: &str) -> Result<usize, ApiError> {
    state
        .participant_index(id)
        .ok_or_else(|| ApiError::not_found(format!("Unknown participant {id}.")))
}

async fn get_faults(State(state): State<Arc<AppState>>) -> Response {
    let faults = state.lock().faults.clone();
    ok(serde_json::to_value(faults).unwrap_or_default())
}

/// `POST /_sim/faults`: replaces all fault settings.
async fn set_faults(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let faults: Faults = or_respond!(parse(&body));
    if let Err(message) = faults.validate() {
        return bad(message);
    }
    if let Some(unknown) = faults
        .participants
        .keys()
        .find(|id| state.participant_index(id).is_none())
    {
        return ApiError::not_found(format!("Unknown participant {unknown}.")).into_response();
    }
    state.lock().faults = faults.clone();
    ok(serde_json::to_value(faults).unwrap_or_default())
}

/// `GET /_sim/participants`: the roster with current sync times and grant state.
async fn participants(State(state): State<Arc<AppState>>) -> Response {
    let rt = state.lock();
    let list: Vec<Value> = state
        .profiles
        .iter()
        .enumerate()
        .map(|(i, p)| {
            json!({
                "participant_id": p.id,
                "time_zone": p.tz.name(),
                "sync_from": rfc3339(p.sync_from),
                "latest_sync": rfc3339(state.latest_sync(i, rt.advance_minutes)),
                "hr_interval_secs": p.hr_interval_secs,
                "revoked": rt.revoked[i],
                "granted_scopes": rt.scopes[i],
                "encoded_id": p.encoded_id,
                "legacy": legacy_participant_json(&rt.legacy, i),
            })
        })
        .collect();
    ok(json!({ "participants": list }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ProviderBody {
    provider: Option<String>,
}

/// Which grants a revoke/restore body names: `(google, fitbit)`; both when omitted.
fn providers(body: &[u8]) -> Result<(bool, bool), ApiError> {
    let body: ProviderBody = parse(body)?;
    match body.provider.as_deref() {
        None => Ok((true, true)),
        Some("google-health") => Ok((true, false)),
        Some("fitbit") => Ok((false, true)),
        Some(other) => Err(ApiError::invalid_argument(
            "INVALID_ARGUMENT",
            format!("provider must be \"google-health\" or \"fitbit\", not {other:?}."),
        )),
    }
}

/// `POST /_sim/participants/{id}/revoke` (optional `{"provider": "google-health"|"fitbit"}`,
/// default both): every refresh token now yields `invalid_grant` and every access token
/// issued so far is dropped (401). Revoking a live Fitbit grant sends a
/// `userRevokedAccess` notification when a Fitbit receiver is configured.
async fn revoke(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let index = or_respond!(participant(&state, &id));
    let (google, fitbit) = or_respond!(providers(&body));
    let (reply, fitbit_was_live) = {
        let mut rt = state.lock();
        if google {
            rt.revoke_google(index);
        }
        let fitbit_was_live = fitbit && !rt.legacy.revoked[index];
        if fitbit {
            rt.legacy.revoke(index);
        }
        let reply = json!({
            "participant": id,
            "revoked": rt.revoked[index],
            "legacy_revoked": rt.legacy.revoked[index],
        });
        (reply, fitbit_was_live)
    };
    if fitbit_was_live {
        crate::webhooks::notify_revoked(&state, index);
    }
    ok(reply)
}

/// `POST /_sim/participants/{id}/expire-grant`: the Google grant runs out (a Testing-mode
/// consent after 7 days): refused exactly like a revocation until a new consent or
/// `restore`.
async fn expire_grant(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let index = or_respond!(participant(&state, &id));
    let mut rt = state.lock();
    rt.revoke_google(index);
    ok(json!({ "participant": id, "revoked": true }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteDataBody {
    data_type: IntradayType,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

/// `POST /_sim/participants/{id}/delete-data {"data_type","start","end"}`: the participant
/// deletes points at the provider (`data_type` `heart-rate`, `steps`, or `sleep`: every
/// session whose end lies in `[start, end)`). From now on the API (Google lists, legacy intraday) no
/// longer serves them, and a Google `DELETE` notification is sent when a receiver is
/// configured and the grant is live.
async fn delete_data(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let index = or_respond!(participant(&state, &id));
    let body: DeleteDataBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad(format!("Invalid JSON body: {e}")),
    };
    if body.start >= body.end {
        return bad("start must be before end.");
    }
    let deletion = Deletion {
        participant: id,
        data_type: body.data_type,
        start: body.start,
        end: body.end,
    };
    state.lock().deletions.push(deletion.clone());
    let notified = crate::webhooks::notify_deleted(
        &state,
        &crate::webhooks::Change {
            participant: index,
            operation: "DELETE",
            data_type: deletion.data_type.kebab(),
            start: deletion.start,
            end: deletion.end,
        },
    );
    let mut reply = serde_json::to_value(&deletion).unwrap_or_default();
    reply["notified"] = json!(notified);
    ok(reply)
}

/// `GET /_sim/deletions`: every deletion so far, in the shape of `SimConfig::deletions`.
async fn deletions(State(state): State<Arc<AppState>>) -> Response {
    let list = state.lock().deletions.clone();
    ok(serde_json::to_value(list).unwrap_or_default())
}

/// `POST /_sim/participants/{id}/restore` (optional provider as for revoke): the roster's
/// Google refresh token works again (old access tokens stay invalid); a revoked Fitbit grant is
/// re-issued with the roster's initial legacy refresh token (as after a re-consent), which
/// the reply repeats.
async fn restore(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let index = or_respond!(participant(&state, &id));
    let (google, fitbit) = or_respond!(providers(&body));
    let mut rt = state.lock();
    if google {
        rt.restore_google(index, &state.profiles[index].refresh_token);
    }
    if fitbit {
        rt.legacy
            .restore(index, &state.profiles[index].legacy_refresh_token);
    }
    ok(json!({
        "participant": id,
        "revoked": rt.revoked[index],
        "legacy_revoked": rt.legacy.revoked[index],
        "legacy_refresh_token": rt.legacy.refresh[index],
    }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ScopesBody {
    granted: Vec<String>,
    provider: Option<String>,
}

/// `POST /_sim/participants/{id}/scopes` `{"granted": [...], "provider": "fitbit"}`
/// (provider optional, default `google-health`): scopes for tokens issued from now on.
/// Google: short names (`settings.readonly`) are expanded to full Google Health scope
/// URLs. Fitbit: short legacy names (`activity`, `sleep`, ...), what the token response's
/// `scope` reports after the next refresh.
async fn set_scopes(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let index = or_respond!(participant(&state, &id));
    let body: ScopesBody = or_respond!(parse(&body));
    match body.provider.as_deref() {
        None | Some("google-health") => {}
        Some("fitbit") => {
            state.lock().legacy.scopes[index] = body.granted.join(" ");
            return ok(json!({ "participant": id, "provider": "fitbit", "granted": body.granted }));
        }
        Some(other) => {
            return bad(format!(
                "provider must be \"google-health\" or \"fitbit\", not {other:?}."
            ));
        }
    }
    let granted: Vec<String> = body
        .granted
        .into_iter()
        .map(|s| {
            if s.starts_with("https://") {
                s
            } else {
                format!("{SCOPE_PREFIX}{s}")
            }
        })
        .collect();
    state.lock().scopes[index] = granted.clone();
    ok(json!({ "participant": id, "granted": granted }))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RestateBody {
    date: Option<NaiveDate>,
}

/// `POST /_sim/participants/{id}/restate`: bumps the restatement version of a local day.
async fn restate(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let index = or_respond!(participant(&state, &id));
    let body: RestateBody = or_respond!(parse(&body));
    let Some(date) = body.date else {
        return bad("Body must be {\"date\": \"YYYY-MM-DD\"}.");
    };
    let mut rt = state.lock();
    let version = rt.restatements[index].entry(date).or_insert(0);
    *version += 1;
    ok(json!({ "participant": id, "date": date.to_string(), "version": *version }))
}

/// `GET /_sim/restatements`: `{participant: {date: version}}`.
async fn restatements(State(state): State<Arc<AppState>>) -> Response {
    let rt = state.lock();
    let mut out: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    for (i, days) in rt.restatements.iter().enumerate() {
        if !days.is_empty() {
            out.insert(
                state.profiles[i].id.clone(),
                days.iter().map(|(d, v)| (d.to_string(), *v)).collect(),
            );
        }
    }
    ok(serde_json::to_value(out).unwrap_or_default())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct IdentityBody {
    legacy_user_id: Option<String>,
}

/// `POST /_sim/participants/{id}/identity` `{"legacy_user_id": "XXXXXX"}`: the Google
/// identity reports that `legacyUserId` instead of the participant's encodedId (the
/// wrong-account case of a migration); `null` restores the real one.
async fn set_identity(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let index = or_respond!(participant(&state, &id));
    let body: IdentityBody = or_respond!(parse(&body));
    if body.legacy_user_id.as_deref() == Some("") {
        return bad("legacy_user_id must not be empty (null restores the real one).");
    }
    let reported = body
        .legacy_user_id
        .clone()
        .unwrap_or_else(|| state.profiles[index].encoded_id.clone());
    state.lock().legacy.identity_override[index] = body.legacy_user_id;
    ok(json!({
        "participant": id,
        "encoded_id": state.profiles[index].encoded_id,
        "legacy_user_id": reported,
    }))
}

fn legacy_participant_json(legacy: &crate::state::LegacyRuntime, index: usize) -> Value {
    json!({
        "revoked": legacy.revoked[index],
        "intraday_permitted": legacy.intraday_permitted[index],
        "identity_legacy_user_id": legacy.identity_override[index],
        "refresh_token": legacy.refresh[index],
        "granted_scopes": legacy.scopes[index],
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LegacyParticipantBody {
    intraday_permitted: Option<bool>,
    expire_access_tokens: Option<bool>,
}

/// `POST /_sim/participants/{id}/legacy` `{"intraday_permitted": false,
/// "expire_access_tokens": true}` (both optional): intraday paths answer 403 while not
/// permitted; expiring makes every issued legacy access token answer `expired_token`.
async fn set_legacy_participant(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let index = or_respond!(participant(&state, &id));
    let body: LegacyParticipantBody = or_respond!(parse(&body));
    let mut rt = state.lock();
    if let Some(permitted) = body.intraday_permitted {
        rt.legacy.intraday_permitted[index] = permitted;
    }
    if body.expire_access_tokens == Some(true) {
        let now = std::time::Instant::now();
        for token in rt.legacy.tokens.values_mut() {
            if token.participant == index {
                token.expires = token.expires.min(now);
            }
        }
    }
    let mut value = legacy_participant_json(&rt.legacy, index);
    value["participant"] = json!(id);
    ok(value)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LegacyBody {
    turned_off: Option<bool>,
    reset_rate_limits: Option<bool>,
}

fn legacy_json(state: &AppState, turned_off: bool) -> Value {
    json!({
        "turned_off": turned_off,
        "rate_limit_per_hour": state.config.legacy_rate_limit_per_hour,
        "refresh_grace_secs": state.config.legacy_refresh_grace_secs,
    })
}

async fn get_legacy(State(state): State<Arc<AppState>>) -> Response {
    let turned_off = state.lock().legacy.turned_off;
    ok(legacy_json(&state, turned_off))
}

/// `POST /_sim/legacy` `{"turned_off": true, "reset_rate_limits": true}` (both
/// optional): turned off, every legacy path (OAuth included) answers 410 Gone; resetting
/// clears every participant's hourly quota.
async fn set_legacy(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let body: LegacyBody = or_respond!(parse(&body));
    let mut rt = state.lock();
    if let Some(off) = body.turned_off {
        rt.legacy.turned_off = off;
    }
    if body.reset_rate_limits == Some(true) {
        rt.legacy.quota.iter_mut().for_each(|q| *q = (0, 0));
    }
    ok(legacy_json(&state, rt.legacy.turned_off))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AdvanceBody {
    minutes: u64,
}

fn clock_json(state: &AppState, advance_minutes: u64) -> Value {
    let latest: BTreeMap<String, String> = (0..state.profiles.len())
        .map(|i| {
            (
                state.profiles[i].id.clone(),
                rfc3339(state.latest_sync(i, advance_minutes)),
            )
        })
        .collect();
    json!({
        "advance_minutes": advance_minutes,
        "until": rfc3339(state.config.until + chrono::Duration::minutes(advance_minutes as i64)),
        "latest_sync": latest,
    })
}

/// `POST /_sim/advance`: moves every participant's latest sync forward (and notifies the
/// configured webhook receivers of the newly synced data).
async fn advance(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let body: AdvanceBody = or_respond!(parse(&body));
    if body.minutes > 366 * 24 * 60 {
        return bad("minutes must be at most one year.");
    }
    let total = crate::webhooks::advance(&state, body.minutes);
    ok(clock_json(&state, total))
}

/// `GET /_sim/clock`: the total advance (pass it as `SimConfig::advance_minutes` to the
/// truth functions) and every participant's latest sync.
async fn clock(State(state): State<Arc<AppState>>) -> Response {
    let total = state.lock().advance_minutes;
    ok(clock_json(&state, total))
}

async fn stats(State(state): State<Arc<AppState>>) -> Response {
    let snapshot = state.lock().stats.clone();
    ok(serde_json::to_value(snapshot).unwrap_or_default())
}

#[derive(Deserialize)]
struct RosterQuery {
    provider: Option<String>,
}

/// `GET /_sim/roster.csv[?provider=fitbit]`: the import CSV (google-health by default).
async fn roster_csv(State(state): State<Arc<AppState>>, Query(q): Query<RosterQuery>) -> Response {
    let provider = q.provider.as_deref().unwrap_or("google-health");
    if provider != "google-health" && provider != "fitbit" {
        return bad(format!("Unknown provider {provider:?}."));
    }
    let mut response = crate::roster_csv_for(&state.config, provider).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    response
}
