//! The Google OAuth 2.0 token endpoint (`POST /token`), refresh-token grant only.
//!
//! Refresh tokens are the deterministic `simrt_…` strings from the roster; they stay
//! valid after use (Google does not rotate them) until the participant is revoked.
//! Access tokens are random `simat_…` strings valid for 3599 s of real time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::State;
use axum::extract::rejection::FormRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::Rng;
use serde_json::json;

use crate::faults::RandomFault;
use crate::state::{ACCESS_TOKEN_TTL_SECS, AccessToken, AppState, Attribution};
use crate::wire::{OAuthError, json_response};

/// Client credentials from `Authorization: Basic` (client_secret_basic), if present.
pub(crate) fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

fn new_access_token() -> String {
    format!("simat_{:032x}", rand::rng().random::<u128>())
}

/// `POST /token`.
pub(crate) async fn token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let params = match form {
        Ok(Form(p)) => p,
        Err(e) => {
            return OAuthError::new(StatusCode::BAD_REQUEST, "invalid_request", e.body_text())
                .into_response();
        }
    };

    let (roll, retry_after) = {
        let rt = state.lock();
        (rt.faults.roll(), rt.faults.retry_after_secs)
    };
    match roll {
        Some(RandomFault::Unavailable) => {
            return OAuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "Backend Error",
            )
            .into_response();
        }
        Some(RandomFault::RateLimited) => {
            let mut e = OAuthError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "Rate Limit Exceeded",
            );
            e.retry_after = retry_after;
            return e.into_response();
        }
        None => {}
    }

    let (client_id, client_secret) = match basic_credentials(&headers) {
        Some(pair) => pair,
        None => (
            params.get("client_id").cloned().unwrap_or_default(),
            params.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    if client_id.is_empty() {
        return OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Could not determine client ID from request.",
        )
        .into_response();
    }
    if client_id != state.config.client_id {
        return OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        )
        .into_response();
    }
    if client_secret != state.config.client_secret {
        return OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized")
            .into_response();
    }

    match params.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {}
        Some("authorization_code") => {
            return OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_grant",
                "Malformed auth code.",
            )
            .into_response();
        }
        Some(other) => {
            return OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("Invalid grant_type: {other}"),
            )
            .into_response();
        }
        None => {
            return OAuthError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing required parameter: grant_type",
            )
            .into_response();
        }
    }
    let refresh = params
        .get("refresh_token")
        .map(String::as_str)
        .unwrap_or_default();
    if refresh.is_empty() {
        return OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: refresh_token",
        )
        .into_response();
    }
    let revoked = || {
        OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been expired or revoked.",
        )
        .into_response()
    };
    let Some(index) = state.refresh_index(refresh) else {
        return revoked();
    };
    let attribution = Attribution {
        participant: index,
        data: false,
        legacy: false,
    };

    let mut response = {
        let mut rt = state.lock();
        if rt.revoked[index] {
            revoked()
        } else if rt.faults.participant(&state.profiles[index].id).fail_5xx {
            OAuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "Backend Error",
            )
            .into_response()
        } else {
            rt.prune_tokens();
            let access = new_access_token();
            let scopes = rt.scopes[index].clone();
            let scope = scopes.join(" ");
            rt.tokens.insert(
                access.clone(),
                AccessToken {
                    participant: index,
                    scopes,
                    expires: Instant::now() + Duration::from_secs(ACCESS_TOKEN_TTL_SECS),
                },
            );
            rt.stats.token_refreshes += 1;
            let mut ok = json_response(
                StatusCode::OK,
                &json!({
                    "access_token": access,
                    "expires_in": ACCESS_TOKEN_TTL_SECS,
                    "scope": scope,
                    "token_type": "Bearer",
                }),
            );
            ok.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
            );
            ok.headers_mut()
                .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            ok
        }
    };
    response.extensions_mut().insert(attribution);
    response
}
