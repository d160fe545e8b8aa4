//! Staff sign-in to the console with OpenID Connect (authorization-code flow, PKCE S256, a
//! nonce), through the `openidconnect` crate.
//!
//! The console has no user store of its own: who may do what follows from the program's
//! identity provider (its `groups` claim), so revoking someone there revokes them here. What
//! binds the two legs of the flow is [`PendingLogin`], which the caller seals into a short-lived
//! cookie (as the participant portal does with its consent cookie): nothing is kept server-side,
//! so any console replica can finish a sign-in another began.
//!
//! The crate's own HTTP client is reqwest 0.12; the project is on 0.13, so the requests go
//! through [`NoRedirects`], the project's reqwest with redirects off: a discovery document or
//! token endpoint that redirects is an error, never a request to wherever it points (the
//! crate's docs warn of SSRF otherwise).
//!
//! Nothing here logs or returns in an error a token, a code, the client secret or a verifier.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Once;
use std::time::Duration;

use fitlink_shared::provider::{error_chain, read_capped};
use fitlink_shared::secret::Secret;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AsyncHttpClient, AuthorizationCode, Client, ClientId, ClientSecret,
    CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest,
    HttpResponse, IdTokenFields, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RequestTokenError, Scope, StandardErrorResponse, StandardTokenResponse,
    TokenResponse as _,
};
use serde::{Deserialize, Serialize};

/// How long one request to the issuer may take: discovery and the code exchange happen while
/// someone waits at a browser.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// An issuer that does not accept the connection within this is down for now.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of an issuer's answer read into memory: discovery documents, key sets and token
/// answers are a few KB; a misbehaving issuer must not take the console's memory.
pub(super) const MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Scopes asked for beside `openid` when the issuer lists them: `email` and `profile` give a
/// name to show, `groups` what the console authorizes on. One the issuer does not list is not
/// sent, because some issuers refuse an unknown scope outright.
const WANTED_SCOPES: [&str; 3] = ["email", "profile", "groups"];
/// The longest text taken from an issuer's error into a [`LoginError`] (it is shown to staff).
const MAX_ISSUER_TEXT: usize = 200;

/// Where the console signs staff in. From the console's configuration (`FITLINK_CONSOLE_OIDC_*`).
#[derive(Clone, Debug)]
pub struct OidcConfig {
    /// The issuer exactly as its ID tokens name it (`iss`); discovery is under it.
    pub issuer_url: String,
    /// The console's client id at the issuer: the audience its ID tokens must name.
    pub client_id: String,
    /// Authenticates the code exchange (client_secret_basic).
    pub client_secret: Secret<String>,
    /// The console's callback, exactly as registered at the issuer.
    pub redirect_url: String,
}

/// The `groups` claim, the one claim beyond the standard ones the console reads.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
struct StaffClaims {
    /// Absent means no groups, which authorizes nothing.
    #[serde(default)]
    groups: Vec<String>,
}

impl AdditionalClaims for StaffClaims {}

type StaffTokenResponse = StandardTokenResponse<
    IdTokenFields<
        StaffClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

/// `CoreClient` with [`StaffClaims`], in the endpoint state discovery leaves it.
type StaffClient = Client<
    StaffClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    StaffTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A failed request to the issuer, as text: the transport's reason or the redirect refused.
/// reqwest's message names the URL, and the console's requests carry no secret in a URL.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

/// The project's reqwest client with redirects off, as the crate's HTTP client.
#[derive(Clone)]
struct NoRedirects(reqwest::Client);

impl NoRedirects {
    fn new() -> anyhow::Result<Self> {
        // The workspace's reqwest is built without a default crypto provider.
        static CRYPTO: Once = Once::new();
        CRYPTO.call_once(|| {
            let _ = rustls::crypto::ring::default_provider().install_default();
        });
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("fitlink-console/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(NoRedirects(client))
    }

    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let url = reqwest::Url::parse(&parts.uri.to_string())
            .map_err(|e| HttpError(format!("invalid request URL: {e}")))?;
        let response = self
            .0
            .request(parts.method, url)
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(|e| HttpError(error_chain(&e)))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(HttpError(format!(
                "{} answered with a redirect (HTTP {}), which is not followed",
                response.url(),
                status.as_u16()
            )));
        }
        let headers = response.headers().clone();
        let from = response.url().clone();
        let body = read_capped(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| HttpError(format!("{from}: {e}")))?;
        let mut out = HttpResponse::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

impl<'c> AsyncHttpClient<'c> for NoRedirects {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// A discovered issuer and the console's client at it.
pub struct OidcLogin {
    client: StaffClient,
    /// The scopes asked for beside `openid` (see [`WANTED_SCOPES`]).
    scopes: Vec<String>,
    http: NoRedirects,
    issuer_url: String,
}

impl fmt::Debug for OidcLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcLogin")
            .field("issuer_url", &self.issuer_url)
            .field("client_id", &self.client.client_id().as_str())
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

/// What the browser's first leg leaves for its second: sealed into a short-lived cookie by the
/// caller, handed back to [`OidcLogin::finish`].
#[derive(Serialize, Deserialize)]
pub struct PendingLogin {
    /// The `state` sent out: a callback with another one was not started by this browser.
    state: String,
    /// The `nonce` the ID token must carry: a token minted for another sign-in does not.
    nonce: String,
    /// The PKCE verifier: a code intercepted on its way back is useless without it.
    pkce_verifier: String,
}

impl fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PendingLogin([redacted])")
    }
}

/// Who signed in, from a verified ID token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedIn {
    /// The issuer's stable id of the person (`sub`): what an audit trail should name.
    pub subject: String,
    /// What to show: the email, else the name, else the subject.
    pub display_name: String,
    /// The `groups` claim (empty when absent): what the console authorizes on.
    pub groups: Vec<String>,
}

/// Why a sign-in did not complete. No variant carries a token, a code or a verifier.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error(
        "the sign-in callback's state does not match the one this browser started with (an old, replayed or forged callback); start the sign-in again"
    )]
    StateMismatch,
    #[error("the identity provider did not sign you in: {0}")]
    Denied(String),
    #[error("exchanging the authorization code at the identity provider failed: {0}")]
    Exchange(String),
    #[error("the identity provider's ID token was refused: {0}")]
    InvalidIdToken(String),
}

/// Issuer-supplied text, shortened: it ends up on a page and in a log.
fn clipped(text: &str) -> String {
    text.chars().take(MAX_ISSUER_TEXT).collect()
}

/// Equality that takes as long whatever the first differing byte (the state is a secret).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl OidcLogin {
    /// Discovers the issuer (fails with a clear error naming the issuer URL if unreachable or
    /// malformed).
    ///
    /// Discovery also fetches the JWKS, so a console that starts can verify ID tokens; keys the
    /// issuer rotates in later need a restart (or a new `discover`).
    pub async fn discover(config: OidcConfig) -> anyhow::Result<OidcLogin> {
        let url = config.issuer_url.clone();
        let issuer = IssuerUrl::new(config.issuer_url).map_err(|e| {
            anyhow::anyhow!("the OpenID Connect issuer URL {url:?} is not a URL: {e}")
        })?;
        let redirect = RedirectUrl::new(config.redirect_url.clone()).map_err(|e| {
            anyhow::anyhow!(
                "the console's OpenID Connect redirect URL {:?} is not a URL: {e}",
                config.redirect_url
            )
        })?;
        let http = NoRedirects::new()?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "OpenID Connect discovery of issuer {url} failed: {}",
                    error_chain(&e)
                )
            })?;
        anyhow::ensure!(
            metadata.token_endpoint().is_some(),
            "OpenID Connect issuer {url} publishes no token_endpoint, so no code can be exchanged"
        );
        let supported: Vec<String> = metadata
            .scopes_supported()
            .map(|s| s.iter().map(|s| s.as_str().to_owned()).collect())
            .unwrap_or_default();
        let scopes = WANTED_SCOPES
            .iter()
            .filter(|s| supported.iter().any(|t| t == *s))
            .map(|s| (*s).to_owned())
            .collect();
        let client = StaffClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id),
            Some(ClientSecret::new(config.client_secret.expose().clone())),
        )
        .set_redirect_uri(redirect);
        Ok(OidcLogin {
            client,
            scopes,
            http,
            issuer_url: url,
        })
    }

    /// Where to send the browser, and what to keep (sealed in a short-lived cookie by the
    /// caller) until the callback.
    pub fn begin(&self) -> (String, PendingLogin) {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &self.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        let pending = PendingLogin {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
        };
        (url.to_string(), pending)
    }

    /// The callback came back with `error=` instead of a code (the person cancelled, or the
    /// issuer refused them): [`LoginError::Denied`] with the issuer's reason, or
    /// [`LoginError::StateMismatch`] if the callback was not this browser's.
    pub fn refused(
        &self,
        pending: PendingLogin,
        returned_state: &str,
        error: &str,
        description: Option<&str>,
    ) -> LoginError {
        if !same(&pending.state, returned_state) {
            return LoginError::StateMismatch;
        }
        let reason = match description.filter(|d| !d.is_empty()) {
            Some(d) => format!("{} ({})", clipped(error), clipped(d)),
            None => clipped(error),
        };
        tracing::info!(issuer = %self.issuer_url, error = %clipped(error), "a console sign-in was refused by the identity provider");
        LoginError::Denied(reason)
    }

    /// Exchanges the code, verifies the ID token (issuer, audience, expiry, nonce, signature),
    /// returns who signed in.
    pub async fn finish(
        &self,
        pending: PendingLogin,
        code: &str,
        returned_state: &str,
    ) -> Result<SignedIn, LoginError> {
        let result = self.verify(pending, code, returned_state).await;
        match &result {
            Ok(who) => {
                tracing::info!(issuer = %self.issuer_url, subject = %who.subject, groups = ?who.groups, "a staff member signed in to the console")
            }
            Err(error) => {
                tracing::warn!(issuer = %self.issuer_url, error = %error, "a console sign-in failed")
            }
        }
        result
    }

    async fn verify(
        &self,
        pending: PendingLogin,
        code: &str,
        returned_state: &str,
    ) -> Result<SignedIn, LoginError> {
        if !same(&pending.state, returned_state) {
            return Err(LoginError::StateMismatch);
        }
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| LoginError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier))
            .request_async(&self.http)
            .await
            .map_err(|e| LoginError::Exchange(exchange_reason(e)))?;
        let id_token = response.id_token().ok_or_else(|| {
            LoginError::InvalidIdToken("the token response carried no id_token".to_owned())
        })?;
        let claims = id_token
            .claims(&self.client.id_token_verifier(), &Nonce::new(pending.nonce))
            .map_err(|e| LoginError::InvalidIdToken(error_chain(&e)))?;
        let subject = claims.subject().as_str().to_owned();
        let display_name = claims
            .email()
            .map(|e| e.as_str().to_owned())
            .or_else(|| {
                claims
                    .name()
                    .and_then(|n| n.get(None))
                    .map(|n| n.as_str().to_owned())
            })
            .unwrap_or_else(|| subject.clone());
        Ok(SignedIn {
            subject,
            display_name,
            groups: claims.additional_claims().groups.clone(),
        })
    }
}

/// Why the token endpoint did not give tokens, without its body (a body that did not parse
/// may still hold a token).
fn exchange_reason(
    error: RequestTokenError<HttpError, StandardErrorResponse<CoreErrorResponseType>>,
) -> String {
    match error {
        RequestTokenError::ServerResponse(e) => {
            let mut text = e.error().to_string();
            if let Some(d) = e.error_description() {
                text = format!("{text} ({})", clipped(d));
            }
            text
        }
        RequestTokenError::Request(e) => format!("the request failed: {e}"),
        RequestTokenError::Parse(e, _body) => {
            format!("the token response did not parse (at `{}`)", e.path())
        }
        RequestTokenError::Other(text) => clipped(&text),
    }
}

#[cfg(test)]
#[path = "oidc_tests.rs"]
mod tests;
