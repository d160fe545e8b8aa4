//! The Google OAuth 2.0 token endpoint (`POST /token`: refresh-token and
//! authorization-code grants) and revocation (`POST /revoke`).
//!
//! Refresh tokens are the deterministic `simrt_…` strings from the roster plus one random
//! `simrt_<participant>_<hex>` per offline consent; they stay valid after use (Google does
//! not rotate them) until the grant is revoked, and a participant may have several live
//! ones. Access tokens are random `simat_…` strings valid for 3599 s of real time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::Rng;
use serde_json::{Value, json};

use crate::consent::{GOOGLE_CODE_PREFIX, Provider, VerifierError};
use crate::faults::RandomFault;
use crate::state::{ACCESS_TOKEN_TTL_SECS, AccessToken, AppState, Attribution, Runtime};
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
        Some("refresh_token") => refresh_grant(&state, &params),
        Some("authorization_code") => code_grant(&state, &client_id, &params),
        Some(other) => OAuthError::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!("Invalid grant_type: {other}"),
        )
        .into_response(),
        None => OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Missing required parameter: grant_type",
        )
        .into_response(),
    }
}

fn revoked() -> Response {
    OAuthError::new(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "Token has been expired or revoked.",
    )
    .into_response()
}

/// Issues an access token for `participant` with its current scopes. It works for an hour,
/// or until `grant_ends` (a time-limited grant's end) if sooner: no token outlives its grant.
fn issue_access_token(rt: &mut Runtime, participant: usize, grant_ends: Option<Instant>) -> String {
    rt.prune_tokens();
    let access = new_access_token();
    let hour = Instant::now() + Duration::from_secs(ACCESS_TOKEN_TTL_SECS);
    rt.tokens.insert(
        access.clone(),
        AccessToken {
            participant,
            scopes: rt.scopes[participant].clone(),
            expires: grant_ends.map_or(hour, |end| end.min(hour)),
        },
    );
    access
}

/// A successful token response: never cached, attributed to the participant.
fn token_ok(body: &Value, participant: usize) -> Response {
    let mut ok = json_response(StatusCode::OK, body);
    ok.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, max-age=0, must-revalidate"),
    );
    ok.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    attributed(ok, participant)
}

fn attributed(mut response: Response, participant: usize) -> Response {
    response.extensions_mut().insert(Attribution {
        participant,
        data: false,
        legacy: false,
    });
    response
}

/// `grant_type=refresh_token`: any live refresh token of the participant.
fn refresh_grant(state: &AppState, params: &HashMap<String, String>) -> Response {
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
    let mut rt = state.lock();
    let Some(index) = rt.live_refresh_owner(refresh) else {
        return revoked();
    };
    if rt.revoked[index] {
        return attributed(revoked(), index);
    }
    if rt
        .refresh_expires
        .get(refresh)
        .is_some_and(|until| *until <= Instant::now())
    {
        // A testing-mode grant ran out: the same answer as a revocation.
        return attributed(revoked(), index);
    }
    if rt.faults.participant(&state.profiles[index].id).fail_5xx {
        return attributed(backend_error(), index);
    }
    let grant_ends = rt.refresh_expires.get(refresh).copied();
    let access = issue_access_token(&mut rt, index, grant_ends);
    rt.stats.token_refreshes += 1;
    let body = json!({
        "access_token": access,
        "expires_in": ACCESS_TOKEN_TTL_SECS,
        "scope": rt.scopes[index].join(" "),
        "token_type": "Bearer",
    });
    token_ok(&body, index)
}

fn backend_error() -> Response {
    OAuthError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "Backend Error",
    )
    .into_response()
}

/// `grant_type=authorization_code`: exchanges a code from the consent page. The code is
/// consumed by this attempt whatever its outcome (the client passed authentication).
fn code_grant(state: &AppState, client_id: &str, params: &HashMap<String, String>) -> Response {
    let bad = |error: &'static str, description: &str| {
        OAuthError::new(StatusCode::BAD_REQUEST, error, description).into_response()
    };
    let code = params.get("code").map(String::as_str).unwrap_or_default();
    if code.is_empty() {
        return bad("invalid_request", "Missing required parameter: code");
    }
    if !code.starts_with(GOOGLE_CODE_PREFIX) {
        return bad("invalid_grant", "Malformed auth code.");
    }
    let mut rt = state.lock();
    let Some(grant) = rt.consent.take_code(code, Provider::Google) else {
        return bad("invalid_grant", "Bad Request");
    };
    let index = grant.participant;
    if grant.client_id != client_id {
        return attributed(bad("invalid_grant", "Bad Request"), index);
    }
    if params.get("redirect_uri").map(String::as_str) != Some(grant.redirect_uri.as_str()) {
        return attributed(bad("redirect_uri_mismatch", "Bad Request"), index);
    }
    if let Err(e) = grant.verify(params.get("code_verifier").map(String::as_str)) {
        let description = match e {
            VerifierError::Missing => "Missing code verifier.",
            VerifierError::Mismatch => "Invalid code verifier.",
        };
        return attributed(bad("invalid_grant", description), index);
    }
    let refresh = grant.offline.then(|| {
        format!(
            "simrt_{}_{:032x}",
            state.profiles[index].id,
            rand::rng().random::<u128>()
        )
    });
    rt.consent_google(index, grant.scopes.clone(), refresh.clone());
    // Testing publishing status: the grant (refresh token and all) ends after a set time.
    let grant_ends = (state.config.testing_mode && refresh.is_some())
        .then(|| Instant::now() + Duration::from_secs(state.config.testing_grant_secs.max(1)));
    let access = issue_access_token(&mut rt, index, grant_ends);
    rt.stats.code_exchanges += 1;
    let mut body = json!({
        "access_token": access,
        "expires_in": ACCESS_TOKEN_TTL_SECS,
        "scope": grant.scopes.join(" "),
        "token_type": "Bearer",
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
        if let Some(ends) = grant_ends {
            // Google answers one second short of the grant's lifetime (604799 for 7 days).
            body["refresh_token_expires_in"] = json!(state.config.testing_grant_secs.max(1) - 1);
            rt.refresh_expires.insert(refresh, ends);
        }
    }
    token_ok(&body, index)
}

/// `POST /revoke` (form or query `token=`, an access or a refresh token): revokes the
/// participant's whole Google grant. A token that is unknown or already dead is 400.
pub(crate) async fn revoke(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HashMap<String, String>>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or_default();
    let token = form
        .get("token")
        .or_else(|| query.get("token"))
        .map(String::as_str)
        .unwrap_or_default();
    let mut rt = state.lock();
    let owner = rt
        .tokens
        .get(token)
        .map(|t| t.participant)
        .or_else(|| rt.live_refresh_owner(token));
    match owner {
        Some(index) => {
            rt.revoke_google(index);
            rt.stats.revocations += 1;
            attributed(json_response(StatusCode::OK, &json!({})), index)
        }
        None => OAuthError::new(
            StatusCode::BAD_REQUEST,
            "invalid_token",
            "Token expired or revoked",
        )
        .into_response(),
    }
}
