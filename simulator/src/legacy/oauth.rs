//! Fitbit's OAuth 2.0 token endpoint (`POST /oauth2/token`: refresh and
//! authorization-code grants) and revocation (`POST /oauth2/revoke`).
//!
//! Refresh tokens are single use: every successful refresh returns a new access token
//! (`simfat_…`, 28 800 s of real time) and a new refresh token (`simfrt_<participant>_…`)
//! and invalidates the one used; a participant has exactly one active refresh token.
//! Re-using a used token is `400 invalid_grant`, except within
//! [`SimConfig::legacy_refresh_grace_secs`](crate::SimConfig) of the rotation, when the
//! token rotated out last returns the same pair again. Client authentication is
//! `Authorization: Basic base64(client_id:client_secret)` (server apps) or `client_id` in
//! the body (public clients); the configured client id/secret are the Google ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{Value, json};

use super::wire::FitbitError;
use super::{attributed, participant_failure};
use crate::consent::Provider;
use crate::faults::RandomFault;
use crate::oauth::basic_credentials;
use crate::state::{AccessToken, AppState, LEGACY_ACCESS_TOKEN_TTL_SECS, LegacyRuntime, Rotation};
use crate::wire::json_response;

/// The scopes a legacy grant has until a consent replaces them: every scope the fleet
/// reads.
pub(crate) const LEGACY_SCOPE: &str =
    "activity heartrate oxygen_saturation profile respiratory_rate settings sleep temperature";

fn random_hex() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

/// Client authentication; the error is final.
fn client(
    state: &AppState,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Result<(), FitbitError> {
    let (id, secret) = match basic_credentials(headers) {
        Some((id, secret)) => (id, Some(secret)),
        None => match params.get("client_id") {
            Some(id) => (id.clone(), params.get("client_secret").cloned()),
            None => {
                return Err(FitbitError::invalid_client(
                    "Invalid authorization header format. The header was not recognized to be a valid header for any of known implementations or a client_id was not specified in case of a public client.",
                ));
            }
        },
    };
    if id != state.config.client_id {
        return Err(FitbitError::invalid_client(
            "Invalid authorization header. Client id invalid.",
        ));
    }
    if secret.is_some_and(|s| s != state.config.client_secret) {
        return Err(FitbitError::invalid_client(
            "Invalid authorization header. Client secret invalid.",
        ));
    }
    Ok(())
}

/// Random faults of the token endpoint (before client authentication, as the Google side).
fn random_fault(state: &AppState) -> Option<Response> {
    let (roll, retry_after) = {
        let rt = state.lock();
        (rt.faults.roll(), rt.faults.retry_after_secs)
    };
    match roll {
        Some(RandomFault::Unavailable) => Some(FitbitError::unavailable().into_response()),
        Some(RandomFault::RateLimited) => {
            Some(FitbitError::rate_limited(retry_after).into_response())
        }
        None => None,
    }
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
    );
    response
}

/// `POST /oauth2/token`.
pub(crate) async fn token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let params = match form {
        Ok(Form(p)) => p,
        Err(e) => return FitbitError::invalid_request(e.body_text()).into_response(),
    };
    if let Some(response) = random_fault(&state) {
        return response;
    }
    if let Err(e) = client(&state, &headers, &params) {
        return e.into_response();
    }
    match params.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {}
        Some("authorization_code") => return code_grant(&state, &params),
        Some(other) => {
            return FitbitError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("The grant type {other} is not supported."),
            )
            .into_response();
        }
        None => {
            return FitbitError::invalid_request("Missing parameters: grant_type").into_response();
        }
    }
    let refresh = params
        .get("refresh_token")
        .map(String::as_str)
        .unwrap_or_default();
    if refresh.is_empty() {
        return FitbitError::invalid_request("Missing parameters: refresh_token").into_response();
    }

    let grace = Duration::from_secs(state.config.legacy_refresh_grace_secs);
    let mut rt = state.lock();
    let rt = &mut *rt;
    let legacy = &mut rt.legacy;
    let current = legacy.by_refresh.get(refresh).copied();
    let replay = || {
        legacy.previous.iter().position(|p| {
            p.as_ref()
                .is_some_and(|p| p.used == refresh && p.at.elapsed() < grace)
        })
    };
    let Some(index) = current.or_else(|| if grace.is_zero() { None } else { replay() }) else {
        return FitbitError::invalid_grant(refresh).into_response();
    };
    let refuse = |response: Response| attributed(response, index, false);
    if legacy.revoked[index] {
        return refuse(FitbitError::invalid_grant(refresh).into_response());
    }
    let participant_faults = rt.faults.participant(&state.profiles[index].id);
    if participant_faults.fail_5xx {
        return refuse(participant_failure(participant_faults.malformed_json));
    }
    let body = if current.is_some() {
        let next = format!("simfrt_{}_{}", state.profiles[index].id, random_hex());
        legacy.set_refresh(index, next.clone());
        let body = token_body(state.as_ref(), legacy, index, next);
        legacy.previous[index] = Some(Rotation {
            used: refresh.to_owned(),
            at: Instant::now(),
            body: body.clone(),
        });
        body
    } else {
        legacy.previous[index]
            .as_ref()
            .map_or(Value::Null, |p| p.body.clone())
    };
    rt.stats.legacy_token_refreshes += 1;
    attributed(no_store(json_response(StatusCode::OK, &body)), index, false)
}

/// Issues an access token for `index` and returns the token response with `refresh` as
/// the (already stored) active refresh token.
fn token_body(
    state: &AppState,
    legacy: &mut LegacyRuntime,
    index: usize,
    refresh: String,
) -> Value {
    let access = format!("simfat_{}", random_hex());
    legacy.prune_tokens();
    legacy.tokens.insert(
        access.clone(),
        AccessToken {
            participant: index,
            scopes: legacy.scopes[index].split(' ').map(str::to_owned).collect(),
            expires: Instant::now() + Duration::from_secs(LEGACY_ACCESS_TOKEN_TTL_SECS),
        },
    );
    json!({
        "access_token": access,
        "expires_in": LEGACY_ACCESS_TOKEN_TTL_SECS,
        "refresh_token": refresh,
        "scope": legacy.scopes[index],
        "token_type": "Bearer",
        "user_id": state.profiles[index].encoded_id,
    })
}

/// `grant_type=authorization_code` (`code`, `redirect_uri`, `code_verifier`): the code is
/// consumed by this attempt; success makes the grant live again with the ticked scopes and
/// a new refresh token as its one active token (so every older token stays dead).
fn code_grant(state: &AppState, params: &HashMap<String, String>) -> Response {
    let code = params.get("code").map(String::as_str).unwrap_or_default();
    if code.is_empty() {
        return FitbitError::invalid_request("Missing parameters: code").into_response();
    }
    let mut rt = state.lock();
    let rt = &mut *rt;
    let Some(grant) = rt.consent.take_code(code, Provider::Fitbit) else {
        return FitbitError::invalid_code(code).into_response();
    };
    let index = grant.participant;
    let refuse = |e: FitbitError| attributed(e.into_response(), index, false);
    if params.get("redirect_uri").map(String::as_str) != Some(grant.redirect_uri.as_str()) {
        return refuse(FitbitError::invalid_request(
            "Invalid redirect_uri parameter value",
        ));
    }
    if grant
        .verify(params.get("code_verifier").map(String::as_str))
        .is_err()
    {
        return refuse(FitbitError::invalid_code(code));
    }
    let refresh = format!("simfrt_{}_{}", state.profiles[index].id, random_hex());
    rt.legacy
        .consent(index, refresh.clone(), grant.scopes.join(" "));
    let body = token_body(state, &mut rt.legacy, index, refresh);
    rt.stats.legacy_code_exchanges += 1;
    attributed(no_store(json_response(StatusCode::OK, &body)), index, false)
}

/// `POST /oauth2/revoke` (`token=` an access or refresh token): revokes the participant's
/// Fitbit grant (every token) until a new consent or `POST /_sim/participants/{id}/restore`.
/// A token that is unknown or already revoked is 400 `invalid_token`.
pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let params = match form {
        Ok(Form(p)) => p,
        Err(e) => return FitbitError::invalid_request(e.body_text()).into_response(),
    };
    if let Err(e) = client(&state, &headers, &params) {
        return e.into_response();
    }
    let Some(token) = params.get("token").filter(|t| !t.is_empty()) else {
        return FitbitError::invalid_request("Missing parameters: token").into_response();
    };
    let mut rt = state.lock();
    let legacy = &mut rt.legacy;
    let index = legacy
        .tokens
        .get(token)
        .map(|t| t.participant)
        .or_else(|| legacy.by_refresh.get(token).copied())
        .filter(|&i| !legacy.revoked[i]);
    match index {
        Some(index) => {
            legacy.revoke(index);
            rt.stats.legacy_revocations += 1;
            attributed(json_response(StatusCode::OK, &json!({})), index, false)
        }
        None => FitbitError::new(
            StatusCode::BAD_REQUEST,
            "invalid_token",
            "Token invalid or already revoked.",
        )
        .into_response(),
    }
}
