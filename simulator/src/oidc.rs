//! An OpenID Connect issuer for the coordinator's console, at `/oidc`: discovery, the signing
//! key (JWKS), a staff sign-in page and the token endpoint (authorization-code grant, ES256 ID
//! tokens).
//!
//! The console signs staff in through whatever identity provider a program runs (Google
//! Workspace, Entra ID, Keycloak…); no machine here reaches one, so tests and the demo sign in
//! here instead. It is the same protocol, so the console's client is tested unchanged.
//!
//! The issuer is `http://<Host of the request>/oidc`, i.e. `<simulator base>/oidc` for whatever
//! base the client uses, so the simulator needs no flag naming its own address (it often runs on
//! an ephemeral port). The signing key is made at start and never persisted: a restarted
//! simulator invalidates every ID token it issued, which is what a key rotation looks like.
//!
//! Everything a sign-in needs between steps (the authorization request, the code) is kept here,
//! server-side, under random ids, as the provider consent pages do (`crate::consent`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::consent::{esc, page, with_query};
use crate::control::{ok, or_respond, parse};
use crate::oauth::basic_credentials;
use crate::state::AppState;
use crate::wire::{OAuthError, json_response};

/// The one registered client: the fitlink console.
pub(crate) const CLIENT_ID: &str = "fitlink-console";
/// Its secret. A test-only value: this issuer signs nobody in outside a test or a demo.
pub(crate) const CLIENT_SECRET: &str = "sim-console-secret";
/// How long a code can be exchanged: long enough for a slow test, short enough that a code
/// found in a log later is worthless.
const CODE_TTL: Duration = Duration::from_secs(120);
/// How long the sign-in page can be answered.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Lifetime of ID and access tokens. The console turns the ID token into its own session at
/// once, so this only bounds how long a leaked one is worth anything.
const TOKEN_TTL_SECS: i64 = 600;
/// What the page and the redirect call a user who is not one of [`STAFF`].
const NO_SUCH_USER: &str = "Choose one of the listed users.";

/// A member of a program's staff, as the console's identity provider knows them.
pub(crate) struct StaffUser {
    pub sub: &'static str,
    pub email: &'static str,
    pub name: &'static str,
    /// What the console authorizes on: the `groups` claim.
    pub groups: &'static [&'static str],
}

/// The staff directory: fixed, so a test can name who signs in and what they may do.
pub(crate) const STAFF: &[StaffUser] = &[
    StaffUser {
        sub: "staff-0001",
        email: "coordinator@example.org",
        name: "Casey Coordinator",
        groups: &["fitlink-operators"],
    },
    StaffUser {
        sub: "staff-0002",
        email: "viewer@example.org",
        name: "Vic Viewer",
        groups: &["fitlink-viewers"],
    },
    StaffUser {
        sub: "staff-0003",
        email: "outsider@example.org",
        name: "Olive Outsider",
        groups: &[],
    },
];

/// A way to make the next ID token wrong, so the console's checks are tested against a token
/// that a real issuer (or an attacker) could hand it. Set through `/_sim/oidc/id-token-fault`;
/// used by one token response, then cleared.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum IdTokenFault {
    /// `aud` names another client.
    WrongAudience,
    /// `nonce` is not the one of the authorization request.
    WrongNonce,
    /// `iss` is another issuer.
    WrongIssuer,
    /// `exp` is in the past.
    Expired,
    /// Signed by a key that is not in the JWKS (under the published `kid`).
    BadSignature,
}

/// An authorization request waiting for the sign-in page's answer.
struct AuthRequest {
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    /// The S256 `code_challenge`, if the client sent one.
    challenge: Option<String>,
    scope: String,
    created: Instant,
}

/// What an unexchanged code stands for.
struct CodeGrant {
    user: usize,
    redirect_uri: String,
    nonce: Option<String>,
    challenge: Option<String>,
    scope: String,
    expires: Instant,
}

#[derive(Default)]
struct Pending {
    requests: HashMap<String, AuthRequest>,
    codes: HashMap<String, CodeGrant>,
    fault: Option<IdTokenFault>,
}

impl Pending {
    fn prune(&mut self) {
        let now = Instant::now();
        self.requests
            .retain(|_, r| now.duration_since(r.created) < PENDING_TTL);
        self.codes.retain(|_, c| c.expires > now);
    }
}

/// The issuer's key and its pending sign-ins. Its own lock, not the runtime's: sign-ins have
/// nothing to do with participants' data.
pub(crate) struct Issuer {
    key: SigningKey,
    kid: String,
    pending: Mutex<Pending>,
}

/// A P-256 key from 32 random bytes (p256 0.13 uses rand_core 0.6, not rand 0.9's RNG).
fn random_key() -> SigningKey {
    loop {
        if let Ok(key) = SigningKey::from_slice(&rand::random::<[u8; 32]>()) {
            return key;
        }
    }
}

fn random_hex() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

impl Issuer {
    pub(crate) fn generate() -> Self {
        Issuer {
            key: random_key(),
            kid: format!("sim-oidc-{:08x}", rand::random::<u32>()),
            pending: Mutex::new(Pending::default()),
        }
    }

    /// A poisoned lock is recovered: the state is bookkeeping only.
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The public key as a JWK set.
    fn jwks(&self) -> Value {
        let point = self.key.verifying_key().to_encoded_point(false);
        let coordinate = |c: Option<&p256::FieldBytes>| {
            URL_SAFE_NO_PAD.encode(c.map(|b| &b[..]).unwrap_or_default())
        };
        json!({"keys": [{
            "kty": "EC",
            "crv": "P-256",
            "x": coordinate(point.x()),
            "y": coordinate(point.y()),
            "use": "sig",
            "alg": "ES256",
            "kid": self.kid,
        }]})
    }

    /// A compact JWS (ES256) of `claims`, signed with `key`.
    fn sign(&self, key: &SigningKey, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let encode = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_default());
        let input = format!("{}.{}", encode(&header), encode(claims));
        let signature: Signature = key.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

/// `/oidc/...` (nested by the router).
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/authorize", get(authorize).post(sign_in))
        .route("/token", post(token))
}

/// `/_sim/oidc/...` (merged into the control API).
pub(crate) fn control_routes() -> Router<Arc<AppState>> {
    Router::new().route("/oidc/id-token-fault", post(set_fault))
}

/// The issuer URL as the client addressed the simulator.
fn issuer(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}/oidc")
}

/// `GET /oidc/.well-known/openid-configuration`.
async fn discovery(headers: HeaderMap) -> Response {
    let iss = issuer(&headers);
    json_response(
        StatusCode::OK,
        &json!({
            "issuer": iss,
            "authorization_endpoint": format!("{iss}/authorize"),
            "token_endpoint": format!("{iss}/token"),
            "jwks_uri": format!("{iss}/jwks"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "scopes_supported": ["openid", "email", "profile", "groups"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "email", "email_verified", "name", "groups"],
            "code_challenge_methods_supported": ["S256"],
        }),
    )
}

/// `GET /oidc/jwks`.
async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    json_response(StatusCode::OK, &state.oidc.jwks())
}

/// A registered redirect URI: the console on loopback, on any port (tests pick one at run
/// time), with a path. Anything else could send a code to someone else.
pub(crate) fn allowed_redirect_uri(uri: &str) -> bool {
    let Some(rest) = uri
        .strip_prefix("http://127.0.0.1:")
        .or_else(|| uri.strip_prefix("http://localhost:"))
    else {
        return false;
    };
    let port_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (port, path) = rest.split_at(port_len);
    port.parse::<u16>().is_ok_and(|p| p > 0)
        && path.starts_with('/')
        && !path.contains(['#', '\\'])
        && !path.contains(char::is_whitespace)
}

type Params = HashMap<String, String>;

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// An error page: for a request whose redirect target cannot be trusted, never a redirect.
fn error_page(status: StatusCode, error: &str, detail: &str) -> Response {
    let body = format!(
        "<p class=\"brand\">Staff sign-in</p>\n<p class=\"sim\">Simulator</p>\n\
         <h1 class=\"error\">{}</h1>\n<p>{}</p>\n",
        esc(error),
        esc(detail)
    );
    page(status, "Sign in – staff (simulator)", &body)
}

/// A `303` to `location`, or an error page if it is not a valid header value.
fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response(),
        Err(_) => error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The redirect URI cannot be used.",
        ),
    }
}

/// An error sent back to the client (RFC 6749 §4.1.2.1), with its `state`.
fn redirect_error(redirect_uri: &str, state: Option<&str>, error: &str, detail: &str) -> Response {
    let mut params = vec![("error", error), ("error_description", detail)];
    params.extend(state.map(|s| ("state", s)));
    see_other(&with_query(redirect_uri, &params))
}

/// `GET /oidc/authorize`: checks the request and shows the sign-in page.
async fn authorize(State(state): State<Arc<AppState>>, Query(params): Query<Params>) -> Response {
    let client_id = param(&params, "client_id").unwrap_or_default();
    if client_id != CLIENT_ID {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            &format!("Unknown client_id {client_id:?}: the registered client is {CLIENT_ID}."),
        );
    }
    let redirect_uri = param(&params, "redirect_uri").unwrap_or_default();
    if !allowed_redirect_uri(redirect_uri) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!(
                "redirect_uri {redirect_uri:?} is not registered: it must be http://127.0.0.1:PORT/… or http://localhost:PORT/…"
            ),
        );
    }
    let client_state = param(&params, "state");
    let fail =
        |error: &str, detail: &str| redirect_error(redirect_uri, client_state, error, detail);
    if param(&params, "response_type") != Some("code") {
        return fail(
            "unsupported_response_type",
            "Only response_type=code is supported.",
        );
    }
    let scope = param(&params, "scope").unwrap_or_default();
    if !scope.split_whitespace().any(|s| s == "openid") {
        return fail("invalid_scope", "The scope must include openid.");
    }
    let challenge = match (
        param(&params, "code_challenge"),
        param(&params, "code_challenge_method"),
    ) {
        (None, _) => None,
        (Some(c), Some("S256")) => Some(c.to_owned()),
        (Some(_), _) => {
            return fail(
                "invalid_request",
                "code_challenge_method must be S256 (plain is not supported).",
            );
        }
    };
    let request = AuthRequest {
        redirect_uri: redirect_uri.to_owned(),
        state: client_state.map(str::to_owned),
        nonce: param(&params, "nonce").map(str::to_owned),
        challenge,
        scope: scope.to_owned(),
        created: Instant::now(),
    };
    let id = random_hex();
    let mut pending = state.oidc.lock();
    pending.prune();
    pending.requests.insert(id.clone(), request);
    sign_in_page(&id)
}

/// The sign-in page: a user chooser and two buttons, posting back to `/oidc/authorize`.
fn sign_in_page(request_id: &str) -> Response {
    let mut options = String::new();
    for user in STAFF {
        let _ = writeln!(
            options,
            "<option value=\"{}\">{} ({})</option>",
            esc(user.email),
            esc(user.name),
            esc(user.email)
        );
    }
    let body = format!(
        "<p class=\"brand\">Staff sign-in</p>\n<p class=\"sim\">Simulator — no real account is involved</p>\n\
         <h1>Sign in to <strong>{CLIENT_ID}</strong></h1>\n\
         <form method=\"post\" action=\"/oidc/authorize\">\n\
         <input type=\"hidden\" name=\"request\" value=\"{}\">\n\
         <label for=\"user\">Sign in as</label>\n<select id=\"user\" name=\"user\">\n{options}</select>\n\
         <div class=\"actions\">\n\
         <button type=\"submit\" id=\"deny\" name=\"decision\" value=\"deny\">Cancel</button>\n\
         <button type=\"submit\" id=\"sign-in\" name=\"decision\" value=\"sign-in\">Sign in</button>\n\
         </div>\n</form>\n",
        esc(request_id)
    );
    page(StatusCode::OK, "Sign in – staff (simulator)", &body)
}

/// `POST /oidc/authorize` (form `request`, `user`, `decision`): the page's answer, a `303` to
/// the client with a code, or with `error=access_denied`.
async fn sign_in(
    State(state): State<Arc<AppState>>,
    form: Result<Form<Params>, FormRejection>,
) -> Response {
    let fields = form.map(|Form(f)| f).unwrap_or_default();
    let mut pending = state.oidc.lock();
    let Some(request) = param(&fields, "request").and_then(|id| pending.requests.remove(id)) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "This sign-in request has expired or was already answered. Start again from the console.",
        );
    };
    let client_state = request.state.as_deref();
    if param(&fields, "decision") != Some("sign-in") {
        return redirect_error(
            &request.redirect_uri,
            client_state,
            "access_denied",
            "The user cancelled the sign-in.",
        );
    }
    let Some(user) = param(&fields, "user").and_then(|e| STAFF.iter().position(|u| u.email == e))
    else {
        return redirect_error(
            &request.redirect_uri,
            client_state,
            "access_denied",
            NO_SUCH_USER,
        );
    };
    let code = format!("simoidc_{}", random_hex());
    let mut params = vec![("code", code.as_str())];
    params.extend(client_state.map(|s| ("state", s)));
    let location = with_query(&request.redirect_uri, &params);
    pending.codes.insert(
        code.clone(),
        CodeGrant {
            user,
            redirect_uri: request.redirect_uri,
            nonce: request.nonce,
            challenge: request.challenge,
            scope: request.scope,
            expires: Instant::now() + CODE_TTL,
        },
    );
    see_other(&location)
}

fn oauth_error(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Response {
    OAuthError::new(status, error, detail).into_response()
}

/// `POST /oidc/token`: `grant_type=authorization_code` with client_secret_basic or
/// client_secret_post.
async fn token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Result<Form<Params>, FormRejection>,
) -> Response {
    let params = match form {
        Ok(Form(p)) => p,
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", e.body_text()),
    };
    let (client_id, secret) = basic_credentials(&headers).unwrap_or_else(|| {
        (
            params.get("client_id").cloned().unwrap_or_default(),
            params.get("client_secret").cloned().unwrap_or_default(),
        )
    });
    if client_id != CLIENT_ID || secret != CLIENT_SECRET {
        let mut refused = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Client authentication failed (unknown client_id or wrong client_secret).",
        );
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"oidc\""),
        );
        return refused;
    }
    let bad =
        |error: &'static str, detail: &str| oauth_error(StatusCode::BAD_REQUEST, error, detail);
    match param(&params, "grant_type") {
        Some("authorization_code") => {}
        Some(_) => {
            return bad(
                "unsupported_grant_type",
                "Only authorization_code is supported.",
            );
        }
        None => return bad("invalid_request", "Missing required parameter: grant_type"),
    }
    let Some(code) = param(&params, "code") else {
        return bad("invalid_request", "Missing required parameter: code");
    };
    // The code is consumed by the first attempt that passes client authentication, whatever
    // its outcome: a code that leaked and was tried is dead.
    let (grant, fault) = {
        let mut pending = state.oidc.lock();
        let grant = pending.codes.remove(code);
        let fault = grant.as_ref().and_then(|_| pending.fault.take());
        (grant, fault)
    };
    let Some(grant) = grant.filter(|g| g.expires > Instant::now()) else {
        return bad(
            "invalid_grant",
            "The code is unknown, expired or already used.",
        );
    };
    if param(&params, "redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return bad(
            "invalid_grant",
            "redirect_uri does not match the one of the authorization request.",
        );
    }
    if let Some(challenge) = &grant.challenge {
        let Some(verifier) = param(&params, "code_verifier") else {
            return bad(
                "invalid_grant",
                "Missing code_verifier: the code was issued with a code_challenge.",
            );
        };
        if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != *challenge {
            return bad(
                "invalid_grant",
                "code_verifier does not match the code_challenge.",
            );
        }
    }
    let id_token = id_token(&state.oidc, &issuer(&headers), &grant, fault);
    let mut response = json_response(
        StatusCode::OK,
        &json!({
            "access_token": format!("simoidc_at_{}", random_hex()),
            "token_type": "Bearer",
            "expires_in": TOKEN_TTL_SECS,
            "scope": grant.scope,
            "id_token": id_token,
        }),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
        .headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The ID token of `grant`, made wrong as `fault` says.
fn id_token(issuer: &Issuer, iss: &str, grant: &CodeGrant, fault: Option<IdTokenFault>) -> String {
    let user = &STAFF[grant.user];
    let now = chrono::Utc::now().timestamp();
    let (iat, exp) = match fault {
        Some(IdTokenFault::Expired) => (now - 2 * TOKEN_TTL_SECS, now - TOKEN_TTL_SECS),
        _ => (now, now + TOKEN_TTL_SECS),
    };
    let mut claims = json!({
        "iss": if fault == Some(IdTokenFault::WrongIssuer) { format!("{iss}-elsewhere") } else { iss.to_owned() },
        "sub": user.sub,
        "aud": if fault == Some(IdTokenFault::WrongAudience) { "another-client" } else { CLIENT_ID },
        "iat": iat,
        "exp": exp,
        "email": user.email,
        "email_verified": true,
        "name": user.name,
        "groups": user.groups,
    });
    let nonce = match fault {
        Some(IdTokenFault::WrongNonce) => Some("not-the-requested-nonce"),
        _ => grant.nonce.as_deref(),
    };
    if let Some(nonce) = nonce {
        claims["nonce"] = json!(nonce);
    }
    if fault == Some(IdTokenFault::BadSignature) {
        issuer.sign(&random_key(), &claims)
    } else {
        issuer.sign(&issuer.key, &claims)
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultBody {
    fault: Option<IdTokenFault>,
}

/// `POST /_sim/oidc/id-token-fault` `{"fault": "wrong-audience" | "wrong-nonce" |
/// "wrong-issuer" | "expired" | "bad-signature" | null}`: the next token response's ID token
/// is wrong that way (then they are right again). `null` or an empty body clears it.
async fn set_fault(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let body: FaultBody = or_respond!(parse(&body));
    state.oidc.lock().fault = body.fault;
    ok(json!({"fault": body.fault}))
}
