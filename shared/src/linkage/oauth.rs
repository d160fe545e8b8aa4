//! The OAuth pieces of the consent flow, for both providers: the authorization URL the
//! participant is sent to, the exchange of the code that comes back, and revocation (RFC 7009)
//! when a participant withdraws.
//!
//! Failures are classified where they are born ([`OAuthError`]): the participant must start
//! again, an operator must fix the client configuration, or the provider is unavailable. No
//! error text carries a token, a code or a verifier.

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::{FitbitArgs, GoogleArgs};
use crate::domain::Provider;
use crate::provider::fitbit::parse::redact;
use crate::provider::{BodyError, expires_at, fitbit, google, http_client, read_text_capped};
use crate::secret::Secret;

/// The access token's lifetime when a code-exchange answer does not say: Google's is an hour,
/// legacy Fitbit's code-flow tokens always 8 hours.
const GOOGLE_DEFAULT_EXPIRES_IN: i64 = 3600;
const FITBIT_DEFAULT_EXPIRES_IN: i64 = 28_800;

/// What the portal needs to run one consent flow for one provider.
#[derive(Clone)]
pub struct OAuthClient {
    provider: Provider,
    authorize_url: String,
    token_url: String,
    revoke_url: String,
    client_id: String,
    client_secret: Secret<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("provider", &self.provider)
            .field("authorize_url", &self.authorize_url)
            .field("token_url", &self.token_url)
            .field("revoke_url", &self.revoke_url)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .finish()
    }
}

/// What a code exchange gave.
#[derive(Debug)]
pub struct CodeGrant {
    pub access_token: Secret<String>,
    /// `None` when the provider sent none (Google omits it without `access_type=offline` /
    /// `prompt=consent`): the caller refuses such a grant, it could not be synced later.
    pub refresh_token: Option<Secret<String>>,
    pub expires_at: DateTime<Utc>,
    /// Google `refresh_token_expires_in` (testing-mode grants: 7 days).
    pub refresh_token_expires_at: Option<DateTime<Utc>>,
    /// Parsed from the token response's `scope`; empty when the provider did not name any
    /// (then [`missing_scopes`] reports every required scope missing).
    pub granted_scopes: Vec<String>,
    /// Legacy Fitbit `user_id`.
    pub provider_user_id: Option<String>,
}

/// How a revocation went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    Revoked,
    /// The provider no longer knew the token (revoked, expired, or already used up): nothing
    /// left to revoke.
    AlreadyInvalid,
}

impl Revocation {
    /// The text recorded in a withdrawal's `provider_revocation`.
    pub fn as_str(self) -> &'static str {
        match self {
            Revocation::Revoked => "revoked",
            Revocation::AlreadyInvalid => "already_invalid",
        }
    }
}

#[derive(thiserror::Error, Debug)]
pub enum OAuthError {
    /// The provider refused the code (invalid_grant: used, expired, PKCE mismatch, wrong
    /// redirect). The participant should start again.
    #[error("the provider refused: {error}: {description}")]
    Refused { error: String, description: String },
    /// Our client configuration is wrong (invalid_client, unauthorized_client, 401): an operator
    /// must act.
    #[error("the OAuth client configuration was rejected: {detail}")]
    Misconfigured { detail: String },
    /// Network failure, 5xx, 429, unreadable body: try again later.
    #[error("the provider is unavailable: {detail}")]
    Unavailable { detail: String },
}

/// The token endpoint's success body, both providers (OAuth JSON is snake_case). Only the access
/// token is strict: the code is spent by the time this arrives, so an optional field of an odd
/// shape must not cost the participant the grant (it reads as absent).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default, deserialize_with = "lenient")]
    refresh_token: Option<String>,
    #[serde(default, deserialize_with = "lenient_seconds")]
    expires_in: Option<i64>,
    #[serde(default, deserialize_with = "lenient_seconds")]
    refresh_token_expires_in: Option<i64>,
    #[serde(default, deserialize_with = "lenient")]
    scope: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    user_id: Option<String>,
}

fn lenient<'de, D: serde::Deserializer<'de>, T: DeserializeOwned>(
    d: D,
) -> Result<Option<T>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(T::deserialize(value).ok())
}

/// Seconds as a number or a numeric string (`"28800"`).
fn lenient_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

/// An error body: Google/RFC 6749 `{"error","error_description"}` or Fitbit's
/// `{"errors":[{"errorType","message"}],"success":false}`.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorItem {
    #[serde(default)]
    error_type: String,
    #[serde(default)]
    message: String,
}

/// `(error, description)` of an error body; `None` when it is not one (HTML, empty, cut off).
fn error_of(body: &str) -> Option<(String, String)> {
    let body: ErrorBody = serde_json::from_str(body).ok()?;
    if let Some(item) = body.errors.into_iter().next() {
        return Some((item.error_type, item.message));
    }
    Some((body.error?, body.error_description.unwrap_or_default()))
}

/// The most of a token or revocation answer that is read: a real one is under a few KB.
pub const OAUTH_MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// A token endpoint's answer as text, at most [`OAUTH_MAX_RESPONSE_BYTES`].
async fn body_text(what: &str, response: reqwest::Response) -> Result<String, OAuthError> {
    read_text_capped(response, OAUTH_MAX_RESPONSE_BYTES)
        .await
        .map_err(|error| match error {
            BodyError::Transport(e) => transport(what, &e),
            too_large @ BodyError::TooLarge(_) => OAuthError::Unavailable {
                detail: format!("{what}: {too_large} (OAUTH_MAX_RESPONSE_BYTES)"),
            },
        })
}

fn transport(what: &str, error: &reqwest::Error) -> OAuthError {
    // Our URLs never carry a secret (they travel in the form body or the Basic header), so
    // reqwest's text, which may name the URL, is safe.
    let mut detail = format!("{what}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    OAuthError::Unavailable { detail }
}

/// Percent-encodes a query value: everything but RFC 3986's unreserved characters, so a space
/// is `%20` (not `+`, which some providers read literally in `scope`).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Classifies a failed token or revocation request that the caller did not handle itself.
fn classify(what: &str, status: StatusCode, body: &str, secrets: &[&str]) -> OAuthError {
    let clean = |text: &str| redact(&text.chars().take(300).collect::<String>(), secrets);
    let parsed = error_of(body).map(|(error, description)| (clean(&error), clean(&description)));
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        let said = parsed
            .map(|(e, d)| format!(" {e}: {d}"))
            .unwrap_or_default();
        return OAuthError::Unavailable {
            detail: format!("{what}: HTTP {}{said}", status.as_u16()),
        };
    }
    match parsed {
        Some((error, description)) => match error.as_str() {
            "invalid_client"
            | "unauthorized_client"
            | "redirect_uri_mismatch"
            | "unsupported_grant_type" => OAuthError::Misconfigured {
                detail: format!("{what}: HTTP {} {error}: {description}", status.as_u16()),
            },
            _ if status == StatusCode::UNAUTHORIZED => OAuthError::Misconfigured {
                detail: format!("{what}: HTTP 401 {error}: {description}"),
            },
            _ => OAuthError::Refused { error, description },
        },
        None if status == StatusCode::UNAUTHORIZED => OAuthError::Misconfigured {
            detail: format!("{what}: HTTP 401 (the client id or secret was not accepted)"),
        },
        None => OAuthError::Unavailable {
            detail: format!(
                "{what}: HTTP {} with a body that is not an OAuth error: {}",
                status.as_u16(),
                clean(body)
            ),
        },
    }
}

impl OAuthClient {
    pub fn google(args: &GoogleArgs) -> Self {
        Self {
            provider: Provider::GoogleHealth,
            authorize_url: args.authorize_url.clone(),
            token_url: args.token_url.clone(),
            revoke_url: args.revoke_url.clone(),
            client_id: args.client_id.clone(),
            client_secret: args.client_secret.clone(),
            http: http_client(),
        }
    }

    pub fn fitbit(args: &FitbitArgs) -> Self {
        Self {
            provider: Provider::Fitbit,
            authorize_url: args.authorize_url.clone(),
            token_url: args.token_url.clone(),
            revoke_url: args.revoke_url.clone(),
            client_id: args.client_id.clone(),
            client_secret: args.client_secret.clone(),
            http: http_client(),
        }
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The scopes fitlink needs (Google: full URLs; Fitbit: short names).
    pub fn required_scopes(&self) -> &'static [&'static str] {
        required_scopes(self.provider)
    }

    /// Every scope the consent page asks for: the required ones, then the optional ones.
    pub fn requested_scopes(&self) -> Vec<&'static str> {
        let mut scopes = required_scopes(self.provider).to_vec();
        scopes.extend_from_slice(optional_scopes(self.provider));
        scopes
    }

    /// Where to send the participant. Google: `access_type=offline` and `prompt=consent`, the
    /// two that make it return a refresh token every time (also on a re-consent). Both: PKCE
    /// S256, and `state` echoed back unchanged.
    pub fn authorize_url(
        &self,
        redirect_uri: &str,
        state: &str,
        code_challenge: &str,
        login_hint: Option<&str>,
    ) -> String {
        let scope = self.requested_scopes().join(" ");
        let mut params: Vec<(&str, &str)> = vec![
            ("client_id", &self.client_id),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("scope", &scope),
        ];
        if self.provider == Provider::GoogleHealth {
            params.push(("access_type", "offline"));
        }
        params.extend([
            ("prompt", "consent"),
            ("state", state),
            ("code_challenge", code_challenge),
            ("code_challenge_method", "S256"),
        ]);
        if self.provider == Provider::GoogleHealth
            && let Some(hint) = login_hint
        {
            params.push(("login_hint", hint));
        }
        let query: Vec<String> = params
            .iter()
            .map(|(name, value)| format!("{name}={}", encode(value)))
            .collect();
        let separator = if self.authorize_url.contains('?') {
            '&'
        } else {
            '?'
        };
        format!("{}{separator}{}", self.authorize_url, query.join("&"))
    }

    /// A form POST with this client's credentials: Google in the form, Fitbit as HTTP Basic
    /// (its server-app flow).
    fn post<'a>(&'a self, url: &str, mut form: Vec<(&str, &'a str)>) -> reqwest::RequestBuilder {
        let request = self.http.post(url);
        match self.provider {
            Provider::GoogleHealth => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", self.client_secret.expose()));
                request.form(&form)
            }
            Provider::Fitbit => request
                .basic_auth(&self.client_id, Some(self.client_secret.expose()))
                .form(&form),
        }
    }

    /// POST `token_url` `grant_type=authorization_code` with code, redirect_uri and
    /// code_verifier. Not retried: a code is single-use, a second try would be refused.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &Secret<String>,
    ) -> Result<CodeGrant, OAuthError> {
        let what = "code exchange";
        let form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier.expose().as_str()),
        ];
        let response = self
            .post(&self.token_url, form)
            .send()
            .await
            .map_err(|e| transport(what, &e))?;
        let status = response.status();
        let body = body_text(what, response).await?;
        let secrets = [code, code_verifier.expose().as_str()];
        if !status.is_success() {
            return Err(classify(what, status, &body, &secrets));
        }
        let token: TokenResponse =
            serde_json::from_str(&body).map_err(|e| OAuthError::Unavailable {
                detail: format!(
                    "{what}: HTTP {} but the body is not an OAuth token: {}",
                    status.as_u16(),
                    redact(&e.to_string(), &secrets)
                ),
            })?;
        let now = Utc::now();
        let default_expires_in = match self.provider {
            Provider::GoogleHealth => GOOGLE_DEFAULT_EXPIRES_IN,
            Provider::Fitbit => FITBIT_DEFAULT_EXPIRES_IN,
        };
        Ok(CodeGrant {
            access_token: Secret::new(token.access_token),
            refresh_token: token
                .refresh_token
                .filter(|t| !t.is_empty())
                .map(Secret::new),
            expires_at: expires_at(now, token.expires_in, default_expires_in),
            refresh_token_expires_at: token
                .refresh_token_expires_in
                .and_then(TimeDelta::try_seconds)
                .and_then(|lifetime| now.checked_add_signed(lifetime)),
            granted_scopes: token
                .scope
                .as_deref()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            provider_user_id: token.user_id.filter(|id| !id.is_empty()),
        })
    }

    /// RFC 7009 revocation of `token` (access or refresh: either revokes the whole grant at both
    /// providers). A token the provider no longer knows is [`Revocation::AlreadyInvalid`].
    pub async fn revoke(&self, token: &Secret<String>) -> Result<Revocation, OAuthError> {
        let what = "token revocation";
        let response = self
            .post(&self.revoke_url, vec![("token", token.expose().as_str())])
            .send()
            .await
            .map_err(|e| transport(what, &e))?;
        let status = response.status();
        let body = body_text(what, response).await?;
        if status.is_success() {
            return Ok(Revocation::Revoked);
        }
        if status.is_client_error()
            && let Some((error, _)) = error_of(&body)
            && matches!(error.as_str(), "invalid_token" | "invalid_grant")
        {
            return Ok(Revocation::AlreadyInvalid);
        }
        Err(classify(what, status, &body, &[token.expose()]))
    }
}

/// The scopes fitlink asks for: Google's full URLs, Fitbit's short names.
fn required_scopes(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::GoogleHealth => &google::REQUIRED_SCOPES,
        Provider::Fitbit => &fitbit::REQUIRED_SCOPES,
    }
}

/// Scopes fitlink asks for but can do without, each covering data families of its own: a
/// participant who unticks one keeps syncing everything else, and the families it covers are
/// recorded as not permitted (`family_permissions`, shown by `status`, re-offered by `invite
/// --needing-consent`). Google's nightly metrics come with the required
/// `health_metrics_and_measurements`; the legacy API scopes them separately.
fn optional_scopes(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::GoogleHealth => &["https://www.googleapis.com/auth/googlehealth.sleep.readonly"],
        Provider::Fitbit => &[
            "sleep",
            "oxygen_saturation",
            "respiratory_rate",
            "temperature",
        ],
    }
}

/// Which required scopes are not in `granted` (Google: a granted full URL or the
/// pre-2026-05-26 unsuffixed read/write scope of the same bundle counts; Fitbit: short names).
pub fn missing_scopes(provider: Provider, granted: &[String]) -> Vec<String> {
    let is_granted = |needed: &str| {
        granted.iter().any(|g| {
            g == needed
                || (provider == Provider::GoogleHealth
                    && needed.strip_suffix(".readonly") == Some(g.as_str()))
        })
    };
    required_scopes(provider)
        .iter()
        .filter(|needed| !is_granted(needed))
        .map(|needed| (*needed).to_owned())
        .collect()
}

#[cfg(test)]
mod tests;
