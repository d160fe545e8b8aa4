//! The consent pages: Google's `GET /o/oauth2/v2/auth` and Fitbit's
//! `GET /oauth2/authorize`, the participant's decision (`POST …/decision`) and the
//! single-use authorization codes the token endpoints exchange.
//!
//! A valid authorization request is kept server-side (the page carries only its random
//! id), so the decision cannot widen what the client asked for: the granted scopes are the
//! ticked subset of the requested ones. Requests that are invalid in a way that makes the
//! redirect target untrustworthy (client, redirect URI) never redirect: they render an
//! error page, as the providers do.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::catalog::SCOPE_PREFIX;
use crate::state::AppState;

/// Prefix of Google authorization codes (real ones start with `4/`).
pub(crate) const GOOGLE_CODE_PREFIX: &str = "4/simcode_";
/// Prefix of legacy Fitbit authorization codes.
pub(crate) const FITBIT_CODE_PREFIX: &str = "simfcode_";
/// Lifetime of an authorization code (both providers: 10 minutes).
const CODE_TTL: Duration = Duration::from_secs(600);
/// How long a consent page can be answered.
const PENDING_TTL: Duration = Duration::from_secs(3600);

/// Whose consent page / code it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Provider {
    Google,
    Fitbit,
}

/// A PKCE code challenge.
#[derive(Clone, Debug)]
enum Challenge {
    Plain(String),
    S256(String),
}

impl Challenge {
    fn matches(&self, verifier: &str) -> bool {
        match self {
            Challenge::Plain(c) => c == verifier,
            Challenge::S256(c) => {
                let digest = Sha256::digest(verifier.as_bytes());
                *c == base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
            }
        }
    }
}

/// Why a code exchange failed PKCE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VerifierError {
    Missing,
    Mismatch,
}

/// A validated authorization request waiting for the participant's decision.
#[derive(Clone, Debug)]
struct Request {
    provider: Provider,
    client_id: String,
    redirect_uri: String,
    /// Requested scopes: full URLs (Google) or short names (Fitbit).
    scopes: Vec<String>,
    state: Option<String>,
    offline: bool,
    challenge: Option<Challenge>,
    created: Instant,
}

/// What an authorization code stands for.
#[derive(Clone, Debug)]
pub(crate) struct CodeGrant {
    pub provider: Provider,
    pub participant: usize,
    pub client_id: String,
    pub redirect_uri: String,
    challenge: Option<Challenge>,
    /// The granted (ticked) scopes.
    pub scopes: Vec<String>,
    /// `access_type=offline`: the exchange returns a refresh token (always for Fitbit).
    pub offline: bool,
    expires: Instant,
}

impl CodeGrant {
    /// PKCE: a code issued with a challenge needs the matching verifier.
    pub(crate) fn verify(&self, verifier: Option<&str>) -> Result<(), VerifierError> {
        match (&self.challenge, verifier.filter(|v| !v.is_empty())) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(VerifierError::Missing),
            (Some(c), Some(v)) if c.matches(v) => Ok(()),
            (Some(_), Some(_)) => Err(VerifierError::Mismatch),
        }
    }
}

/// Pending consent pages and unexchanged codes.
#[derive(Default)]
pub(crate) struct ConsentState {
    pending: HashMap<String, Request>,
    codes: HashMap<String, CodeGrant>,
}

impl ConsentState {
    /// Consumes `code`: `None` when it is unknown, used, expired or another provider's.
    pub(crate) fn take_code(&mut self, code: &str, provider: Provider) -> Option<CodeGrant> {
        let grant = self.codes.remove(code)?;
        (grant.provider == provider && grant.expires > Instant::now()).then_some(grant)
    }

    fn prune(&mut self) {
        let now = Instant::now();
        self.pending
            .retain(|_, r| now.duration_since(r.created) < PENDING_TTL);
        self.codes.retain(|_, c| c.expires > now);
    }
}

fn random_hex() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

/// A provider's look and vocabulary.
struct Brand {
    provider: Provider,
    title: &'static str,
    heading: &'static str,
    accent: &'static str,
    decision_path: &'static str,
}

const GOOGLE: Brand = Brand {
    provider: Provider::Google,
    title: "Sign in – Google Health (simulator)",
    heading: "Google Health",
    accent: "#1a73e8",
    decision_path: "/o/oauth2/v2/auth/decision",
};

const FITBIT: Brand = Brand {
    provider: Provider::Fitbit,
    title: "Fitbit (simulator)",
    heading: "Fitbit",
    accent: "#00b0b9",
    decision_path: "/oauth2/authorize/decision",
};

/// Google Health scope bundles and what the consent screen says about them.
const GOOGLE_BUNDLES: &[(&str, &str)] = &[
    ("activity_and_fitness", "activity and fitness data"),
    (
        "health_metrics_and_measurements",
        "health metrics and measurements, such as heart rate",
    ),
    ("sleep", "sleep data"),
    ("nutrition", "nutrition and hydration logs"),
    ("profile", "Fitbit profile"),
    ("settings", "Fitbit settings and paired devices"),
    ("location", "exercise locations"),
    ("ecg", "ECG readings"),
    ("irn", "irregular rhythm notifications"),
    ("logged_symptoms", "logged symptoms"),
    ("mindfulness", "mindfulness sessions"),
    ("reproductive_health", "reproductive health data"),
];

/// The consent-screen text of a Google scope, `None` for an unknown scope.
fn google_scope_description(scope: &str) -> Option<String> {
    match scope {
        "openid" => return Some("Associate you with your personal info on Google".to_owned()),
        "email" => return Some("See your primary Google Account email address".to_owned()),
        "profile" => return Some("See your personal info".to_owned()),
        _ => {}
    }
    let rest = scope.strip_prefix(SCOPE_PREFIX)?;
    let (bundle, access) = rest.split_once('.').unwrap_or((rest, ""));
    let noun = GOOGLE_BUNDLES.iter().find(|(b, _)| *b == bundle)?.1;
    match access {
        "readonly" => Some(format!("See your {noun}")),
        "writeonly" => Some(format!("Add to your {noun}")),
        // The pre-2026-05-26 unsuffixed read/write scope.
        "" => Some(format!("See and add to your {noun}")),
        _ => None,
    }
}

/// Legacy Fitbit scopes and their descriptions.
const FITBIT_SCOPES: &[(&str, &str)] = &[
    ("activity", "Activity and exercise, including steps"),
    ("cardio_fitness", "Cardio fitness (VO2 max)"),
    ("electrocardiogram", "ECG readings"),
    ("heartrate", "Heart rate"),
    (
        "irregular_rhythm_notifications",
        "Irregular rhythm notifications",
    ),
    ("location", "GPS and location"),
    ("nutrition", "Food and water logs"),
    ("oxygen_saturation", "Oxygen saturation (SpO2)"),
    ("profile", "Profile"),
    ("respiratory_rate", "Breathing rate"),
    ("settings", "Account and device settings"),
    ("sleep", "Sleep"),
    ("social", "Friends"),
    ("temperature", "Temperature"),
    ("weight", "Weight and body fat"),
];

fn fitbit_scope_description(scope: &str) -> Option<String> {
    FITBIT_SCOPES
        .iter()
        .find(|(s, _)| *s == scope)
        .map(|(_, d)| (*d).to_owned())
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query component (RFC 3986 unreserved characters stay).
pub(crate) fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `uri` with `params` appended to its query.
pub(crate) fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = uri.to_owned();
    let mut sep = if uri.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        let _ = write!(out, "{sep}{k}={}", url_encode(v));
        sep = '&';
    }
    out
}

/// An absolute http(s) URL with a host and no fragment (the simulator has no app
/// registration to compare against, so any such URL is accepted).
fn valid_redirect_uri(uri: &str) -> bool {
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"));
    rest.is_some_and(|r| {
        let host = r.split(['/', '?']).next().unwrap_or_default();
        !host.is_empty() && !r.contains('#') && !r.contains(char::is_whitespace)
    })
}

const STYLE: &str = "body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#f1f3f4;color:#202124}\
main{max-width:30rem;margin:3rem auto;background:#fff;border:1px solid #dadce0;border-radius:8px;padding:2rem 2.5rem}\
.brand{font-size:1.4rem;font-weight:600;margin:0 0 .25rem}.sim{font-size:.8rem;color:#5f6368;margin:0 0 1.5rem}\
h1{font-size:1.25rem;font-weight:500;margin:0 0 1rem}label{cursor:pointer}\
select{font:inherit;width:100%;padding:.4rem;margin:.25rem 0 1.25rem;border:1px solid #dadce0;border-radius:4px}\
fieldset{border:1px solid #dadce0;border-radius:4px;padding:.75rem 1rem;margin:0 0 1.5rem}legend{padding:0 .25rem;font-weight:500}\
.scope{display:flex;gap:.6rem;align-items:flex-start;padding:.35rem 0}.scope input{margin-top:.3rem;width:1.1rem;height:1.1rem}\
.scope small{display:block;color:#5f6368;font-family:ui-monospace,monospace;font-size:.72rem;word-break:break-all}\
.actions{display:flex;justify-content:flex-end;gap:.75rem}\
button{font:inherit;font-weight:500;padding:.5rem 1.5rem;border-radius:4px;cursor:pointer}\
button:focus-visible,select:focus-visible,input:focus-visible{outline:3px solid #fbbc04;outline-offset:2px}\
#deny{background:#fff;border:1px solid #dadce0}.error{color:#b3261e}";

pub(crate) fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n</body>\n</html>\n",
        esc(title)
    );
    let mut response = (status, html).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// An error page naming the problem; never a redirect.
fn error_page(brand: &Brand, status: StatusCode, error: &str, detail: &str) -> Response {
    let headline = match brand.provider {
        Provider::Google => format!("Error {}: {error}", status.as_u16()),
        Provider::Fitbit => format!("{error} - {detail}"),
    };
    let body = format!(
        "<p class=\"brand\" style=\"color:{}\">{}</p>\n<p class=\"sim\">Simulator</p>\n\
         <h1 class=\"error\">{}</h1>\n<p>{}</p>\n",
        brand.accent,
        brand.heading,
        esc(&headline),
        esc(detail)
    );
    page(status, brand.title, &body)
}

/// The consent page of a stored request.
fn consent_page(
    state: &AppState,
    brand: &Brand,
    id: &str,
    request: &Request,
    login_hint: Option<&str>,
) -> Response {
    let hinted = login_hint.and_then(|h| {
        let id = h.strip_suffix("@example.test").unwrap_or(h);
        state.participant_index(id)
    });
    let mut options = String::new();
    for (i, p) in state.profiles.iter().enumerate() {
        let selected = if hinted == Some(i) { " selected" } else { "" };
        let _ = writeln!(
            options,
            "<option value=\"{0}\"{selected}>{0} ({0}@example.test)</option>",
            esc(&p.id)
        );
    }
    let mut scopes = String::new();
    for (n, scope) in request.scopes.iter().enumerate() {
        let description = match brand.provider {
            Provider::Google => google_scope_description(scope),
            Provider::Fitbit => fitbit_scope_description(scope),
        }
        .unwrap_or_default();
        let _ = writeln!(
            scopes,
            "<div class=\"scope\"><input type=\"checkbox\" name=\"scope\" value=\"{v}\" id=\"scope-{n}\" checked>\
             <label for=\"scope-{n}\">{d}<small>{v}</small></label></div>",
            v = esc(scope),
            d = esc(&description)
        );
    }
    let account_label = match brand.provider {
        Provider::Google => "Choose an account",
        Provider::Fitbit => "Log in as",
    };
    let body = format!(
        "<p class=\"brand\" style=\"color:{accent}\">{heading}</p>\n<p class=\"sim\">Simulator — no real account is involved</p>\n\
         <h1><strong>{app}</strong> wants to access your {heading} account</h1>\n\
         <form method=\"post\" action=\"{action}\">\n<input type=\"hidden\" name=\"request\" value=\"{id}\">\n\
         <label for=\"account\">{account_label}</label>\n<select id=\"account\" name=\"account\">\n{options}</select>\n\
         <fieldset>\n<legend>Select what {app} can access</legend>\n{scopes}</fieldset>\n\
         <div class=\"actions\">\n<button type=\"submit\" id=\"deny\" name=\"decision\" value=\"deny\">Cancel</button>\n\
         <button type=\"submit\" id=\"allow\" name=\"decision\" value=\"allow\" style=\"background:{accent};color:#fff;border:1px solid {accent}\">Allow</button>\n\
         </div>\n</form>\n",
        accent = brand.accent,
        heading = brand.heading,
        app = esc(&request.client_id),
        action = brand.decision_path,
        id = esc(id),
    );
    page(StatusCode::OK, brand.title, &body)
}

type Params = HashMap<String, String>;

fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// Stores a validated request and renders its consent page.
fn pending(state: &AppState, brand: &Brand, request: Request, hint: Option<&str>) -> Response {
    let id = random_hex();
    let response = consent_page(state, brand, &id, &request, hint);
    let mut rt = state.lock();
    rt.consent.prune();
    rt.consent.pending.insert(id, request);
    response
}

/// `GET /o/oauth2/v2/auth`: Google's consent page.
pub(crate) async fn google_authorize(
    State(state): State<Arc<AppState>>,
    Query(params): Query<Params>,
) -> Response {
    let fail = |status: StatusCode, error: &str, detail: String| {
        error_page(&GOOGLE, status, error, &detail)
    };
    let missing = |name: &str| {
        fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("Missing required parameter: {name}"),
        )
    };
    let Some(client_id) = param(&params, "client_id") else {
        return missing("client_id");
    };
    if client_id != state.config.client_id {
        return fail(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.".to_owned(),
        );
    }
    let Some(redirect_uri) = param(&params, "redirect_uri") else {
        return missing("redirect_uri");
    };
    if !valid_redirect_uri(redirect_uri) {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("Invalid parameter value for redirect_uri: {redirect_uri}"),
        );
    }
    let Some(response_type) = param(&params, "response_type") else {
        return missing("response_type");
    };
    if response_type != "code" {
        return fail(
            StatusCode::BAD_REQUEST,
            "unsupported_response_type",
            format!("Unsupported response_type: {response_type}"),
        );
    }
    let Some(scope) = param(&params, "scope") else {
        return missing("scope");
    };
    let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
    if let Some(unknown) = scopes
        .iter()
        .find(|s| google_scope_description(s).is_none())
    {
        return fail(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            format!("Some requested scopes were invalid. {{invalid=[{unknown}]}}"),
        );
    }
    let challenge = match (
        param(&params, "code_challenge"),
        param(&params, "code_challenge_method"),
    ) {
        (None, _) => None,
        (Some(c), None | Some("plain")) => Some(Challenge::Plain(c.to_owned())),
        (Some(c), Some("S256")) => Some(Challenge::S256(c.to_owned())),
        (Some(_), Some(other)) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("Invalid code_challenge_method: {other}"),
            );
        }
    };
    let request = Request {
        provider: Provider::Google,
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        scopes,
        state: param(&params, "state").map(str::to_owned),
        offline: param(&params, "access_type") == Some("offline"),
        challenge,
        created: Instant::now(),
    };
    pending(&state, &GOOGLE, request, param(&params, "login_hint"))
}

/// `GET /oauth2/authorize`: Fitbit's consent page (PKCE S256 required).
pub(crate) async fn fitbit_authorize(
    State(state): State<Arc<AppState>>,
    Query(params): Query<Params>,
) -> Response {
    let fail =
        |error: &str, detail: String| error_page(&FITBIT, StatusCode::BAD_REQUEST, error, &detail);
    let Some(client_id) = param(&params, "client_id") else {
        return fail(
            "invalid_request",
            "Missing parameters: client_id".to_owned(),
        );
    };
    if client_id != state.config.client_id {
        return error_page(
            &FITBIT,
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client_id",
        );
    }
    let Some(redirect_uri) = param(&params, "redirect_uri") else {
        return fail(
            "invalid_request",
            "Missing parameters: redirect_uri".to_owned(),
        );
    };
    if !valid_redirect_uri(redirect_uri) {
        return fail(
            "invalid_request",
            "Invalid redirect_uri parameter value".to_owned(),
        );
    }
    let response_type = param(&params, "response_type").unwrap_or_default();
    if response_type != "code" {
        return fail(
            "unsupported_response_type",
            format!("Unsupported response_type: {response_type}"),
        );
    }
    let Some(scope) = param(&params, "scope") else {
        return fail("invalid_request", "Missing parameters: scope".to_owned());
    };
    let scopes: Vec<String> = scope.split_whitespace().map(str::to_owned).collect();
    if let Some(unknown) = scopes
        .iter()
        .find(|s| fitbit_scope_description(s).is_none())
    {
        return fail("invalid_scope", format!("Invalid scope: {unknown}"));
    }
    let challenge = param(&params, "code_challenge").unwrap_or_default();
    if !(43..=128).contains(&challenge.len()) {
        return fail(
            "invalid_request",
            "The code_challenge parameter length must be between 43 and 128".to_owned(),
        );
    }
    if param(&params, "code_challenge_method") != Some("S256") {
        return fail(
            "invalid_request",
            "Unsupported code_challenge_method".to_owned(),
        );
    }
    let request = Request {
        provider: Provider::Fitbit,
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        scopes,
        state: param(&params, "state").map(str::to_owned),
        offline: true,
        challenge: Some(Challenge::S256(challenge.to_owned())),
        created: Instant::now(),
    };
    pending(&state, &FITBIT, request, None)
}

/// `POST /o/oauth2/v2/auth/decision` and `POST /oauth2/authorize/decision` (form
/// `request`, `account`, `scope`…, `decision`): Allow with at least one scope ticked
/// redirects with a code; Cancel (or nothing ticked) redirects with `access_denied`.
pub(crate) async fn decision(
    State(state): State<Arc<AppState>>,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    let fields = form.map(|Form(f)| f).unwrap_or_default();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut rt = state.lock();
    let Some(request) = field("request").and_then(|id| rt.consent.pending.remove(id)) else {
        return error_page(
            &GOOGLE,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "This consent request has expired or was already answered. Start again from the application.",
        );
    };
    let brand = match request.provider {
        Provider::Google => &GOOGLE,
        Provider::Fitbit => &FITBIT,
    };
    let Some(participant) = field("account").and_then(|a| state.participant_index(a)) else {
        return error_page(
            brand,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Choose one of the listed accounts.",
        );
    };
    let granted: Vec<String> = request
        .scopes
        .iter()
        .filter(|s| fields.iter().any(|(k, v)| k == "scope" && v == *s))
        .cloned()
        .collect();
    let state_param = request.state.as_deref();
    let allowed = field("decision") == Some("allow") && !granted.is_empty();
    let location = if allowed {
        let prefix = match request.provider {
            Provider::Google => GOOGLE_CODE_PREFIX,
            Provider::Fitbit => FITBIT_CODE_PREFIX,
        };
        let code = format!("{prefix}{}", random_hex());
        let scope = granted.join(" ");
        let mut params = vec![("code", code.as_str())];
        if request.provider == Provider::Google {
            params.push(("scope", scope.as_str()));
        }
        params.extend(state_param.map(|s| ("state", s)));
        let mut location = with_query(&request.redirect_uri, &params);
        if request.provider == Provider::Fitbit {
            location.push_str("#_=_");
        }
        rt.consent.codes.insert(
            code.clone(),
            CodeGrant {
                provider: request.provider,
                participant,
                client_id: request.client_id,
                redirect_uri: request.redirect_uri,
                challenge: request.challenge,
                scopes: granted,
                offline: request.offline,
                expires: Instant::now() + CODE_TTL,
            },
        );
        location
    } else {
        let mut params = vec![("error", "access_denied")];
        if request.provider == Provider::Fitbit {
            params.push(("error_description", "The user denied the request."));
        }
        params.extend(state_param.map(|s| ("state", s)));
        with_query(&request.redirect_uri, &params)
    };
    let status = match request.provider {
        Provider::Google => StatusCode::SEE_OTHER,
        Provider::Fitbit => StatusCode::FOUND,
    };
    let mut response = status.into_response();
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
            response
        }
        Err(_) => error_page(
            brand,
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The redirect URI cannot be used.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_and_plain() {
        // RFC 7636 appendix B.
        let s256 = Challenge::S256("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".to_owned());
        assert!(s256.matches("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert!(!s256.matches("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj"));
        assert!(Challenge::Plain("abc".to_owned()).matches("abc"));
    }

    #[test]
    fn redirects_append_to_an_existing_query() {
        assert_eq!(
            with_query(
                "http://a.test/cb?x=1",
                &[("scope", "a b"), ("state", "s/1")]
            ),
            "http://a.test/cb?x=1&scope=a%20b&state=s%2F1"
        );
        assert!(valid_redirect_uri("https://a.test"));
        assert!(!valid_redirect_uri("ftp://a.test/cb"));
        assert!(!valid_redirect_uri("http:///cb"));
        assert!(!valid_redirect_uri("http://a.test/cb#frag"));
    }

    #[test]
    fn scope_descriptions() {
        let d = |s: &str| google_scope_description(&format!("{SCOPE_PREFIX}{s}"));
        assert_eq!(
            d("activity_and_fitness.readonly").as_deref(),
            Some("See your activity and fitness data")
        );
        assert_eq!(
            d("health_metrics_and_measurements.readonly").as_deref(),
            Some("See your health metrics and measurements, such as heart rate")
        );
        assert_eq!(
            d("settings.readonly").as_deref(),
            Some("See your Fitbit settings and paired devices")
        );
        assert_eq!(d("nonsense.readonly"), None);
        assert!(fitbit_scope_description("heartrate").is_some());
        assert!(fitbit_scope_description("nonsense").is_none());
    }
}
