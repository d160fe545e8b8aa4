//! Fitbit's OAuth 2.0 token endpoint (`POST /oauth2/token`, refresh grant) and
//! revocation (`POST /oauth2/revoke`).
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
use crate::faults::RandomFault;
use crate::oauth::basic_credentials;
use crate::state::{AccessToken, AppState, LEGACY_ACCESS_TOKEN_TTL_SECS, Rotation};
use crate::wire::json_response;

/// The scopes every legacy grant has.
pub(crate) const LEGACY_SCOPE: &str = "activity heartrate profile settings";

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
        Some("authorization_code") => {
            let code = params.get("code").map(String::as_str).unwrap_or_default();
            return FitbitError::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                format!("Authorization code invalid: {code}"),
            )
            .into_response();
        }
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
        let access = format!("simfat_{}", random_hex());
        let next = format!("simfrt_{}_{}", state.profiles[index].id, random_hex());
        legacy.prune_tokens();
        legacy.tokens.insert(
            access.clone(),
            AccessToken {
                participant: index,
                scopes: LEGACY_SCOPE.split(' ').map(str::to_owned).collect(),
                expires: Instant::now() + Duration::from_secs(LEGACY_ACCESS_TOKEN_TTL_SECS),
            },
        );
        legacy.set_refresh(index, next.clone());
        let body = json!({
            "access_token": access,
            "expires_in": LEGACY_ACCESS_TOKEN_TTL_SECS,
            "refresh_token": next,
            "scope": LEGACY_SCOPE,
            "token_type": "Bearer",
            "user_id": state.profiles[index].encoded_id,
        });
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

/// `POST /oauth2/revoke` (`token=` an access or refresh token): revokes the participant's
/// Fitbit grant (every token) until `POST /_sim/participants/{id}/restore`. Unknown
/// tokens are answered 200 as RFC 7009 requires.
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
        .or_else(|| legacy.by_refresh.get(token).copied());
    let response = json_response(StatusCode::OK, &json!({}));
    match index {
        Some(index) => {
            legacy.revoke(index);
            attributed(response, index, false)
        }
        None => response,
    }
}
