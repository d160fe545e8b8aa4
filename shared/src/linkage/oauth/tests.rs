//! The OAuth client against a tiny local server that answers what each test sets, and records
//! what it was sent.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus, Uri};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::*;

/// What the server answers, and what it was asked.
#[derive(Default)]
struct Mock {
    answer: Mutex<(u16, String)>,
    requests: Mutex<Vec<Request>>,
}

#[derive(Debug, Clone)]
struct Request {
    path: String,
    authorization: Option<String>,
    form: Vec<(String, String)>,
}

impl Mock {
    fn answer(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_owned());
    }

    fn last(&self) -> Request {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

async fn handle(
    State(mock): State<Arc<Mock>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (AxumStatus, String) {
    let form = reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(&body)))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    mock.requests.lock().unwrap().push(Request {
        path: uri.path().to_owned(),
        authorization: headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned()),
        form,
    });
    let (status, body) = mock.answer.lock().unwrap().clone();
    (AxumStatus::from_u16(status).unwrap(), body)
}

async fn server() -> (String, Arc<Mock>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mock = Arc::new(Mock::default());
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(mock.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, mock)
}

fn google_args(base: &str) -> GoogleArgs {
    GoogleArgs::on_one_host(base, "cid.apps.googleusercontent.com", "g-secret")
}

fn fitbit_args(base: &str) -> FitbitArgs {
    FitbitArgs::on_one_host(base, "23ABCD", "f-secret")
}

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const REDIRECT: &str = "https://portal.example/consent/callback";
const CODE: &str = "4/0Ab32jCodeValue1234567890abcdef";

/// The Google codelab's sample answer (a testing-mode project), with every required scope.
const GOOGLE_SUCCESS: &str = r#"{
  "access_token": "ya29.a0AccessToken",
  "expires_in": 3599,
  "refresh_token": "1//05EuqRefresh",
  "scope": "https://www.googleapis.com/auth/googlehealth.activity_and_fitness.readonly https://www.googleapis.com/auth/googlehealth.health_metrics_and_measurements.readonly https://www.googleapis.com/auth/googlehealth.settings.readonly",
  "token_type": "Bearer",
  "refresh_token_expires_in": 604799
}"#;

/// The Fitbit reference's documented answer.
const FITBIT_SUCCESS: &str = r#"{
  "access_token": "eyJhbGciOiJIUzI1NiJ9.payload.sig",
  "expires_in": 28800,
  "refresh_token": "c643a63c072f0f05478e9d18b991db80ef6061e4f8e6c822d83fed53e5fafdd7",
  "scope": "heartrate activity sleep profile settings",
  "token_type": "Bearer",
  "user_id": "26FWFL"
}"#;

fn form(request: &Request, name: &str) -> Option<String> {
    request
        .form
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

fn verifier() -> Secret<String> {
    Secret::new(VERIFIER.to_owned())
}

#[tokio::test]
async fn google_code_exchange_sends_the_client_in_the_form_and_reads_the_grant() {
    let (base, mock) = server().await;
    mock.answer(200, GOOGLE_SUCCESS);
    let client = OAuthClient::google(&google_args(&base));
    let before = Utc::now();
    let grant = client
        .exchange_code(CODE, REDIRECT, &verifier())
        .await
        .unwrap();
    let sent = mock.last();
    assert_eq!(sent.path, "/token");
    assert_eq!(sent.authorization, None);
    for (name, value) in [
        ("grant_type", "authorization_code"),
        ("code", CODE),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", "cid.apps.googleusercontent.com"),
        ("client_secret", "g-secret"),
    ] {
        assert_eq!(form(&sent, name).as_deref(), Some(value), "{name}");
    }
    assert_eq!(grant.access_token.expose(), "ya29.a0AccessToken");
    assert_eq!(grant.refresh_token.unwrap().expose(), "1//05EuqRefresh");
    let lifetime = grant.expires_at - before;
    assert!(
        (3590..=3600).contains(&lifetime.num_seconds()),
        "{lifetime}"
    );
    let refresh_lifetime = grant.refresh_token_expires_at.unwrap() - before;
    assert!((604_790..=604_800).contains(&refresh_lifetime.num_seconds()));
    assert_eq!(grant.granted_scopes.len(), 3);
    assert!(missing_scopes(Provider::GoogleHealth, &grant.granted_scopes).is_empty());
    assert_eq!(grant.provider_user_id, None);
}

#[tokio::test]
async fn fitbit_code_exchange_uses_basic_auth_and_reads_the_user_id() {
    let (base, mock) = server().await;
    mock.answer(200, FITBIT_SUCCESS);
    let client = OAuthClient::fitbit(&fitbit_args(&base));
    let grant = client
        .exchange_code(CODE, REDIRECT, &verifier())
        .await
        .unwrap();
    let sent = mock.last();
    assert_eq!(sent.path, "/oauth2/token");
    assert_eq!(
        sent.authorization,
        Some(format!("Basic {}", BASE64.encode("23ABCD:f-secret")))
    );
    assert_eq!(form(&sent, "client_secret"), None);
    assert_eq!(form(&sent, "code_verifier").as_deref(), Some(VERIFIER));
    assert_eq!(grant.provider_user_id.as_deref(), Some("26FWFL"));
    assert_eq!(grant.refresh_token_expires_at, None);
    assert!(
        grant
            .refresh_token
            .unwrap()
            .expose()
            .starts_with("c643a63c"),
        "refresh token read"
    );
    assert!(missing_scopes(Provider::Fitbit, &grant.granted_scopes).is_empty());
}

#[tokio::test]
async fn a_grant_without_a_refresh_token_is_returned_for_the_caller_to_refuse() {
    let (base, mock) = server().await;
    mock.answer(
        200,
        r#"{"access_token":"ya29.x","expires_in":"3599","scope":"a b","token_type":"Bearer"}"#,
    );
    let client = OAuthClient::google(&google_args(&base));
    let grant = client
        .exchange_code(CODE, REDIRECT, &verifier())
        .await
        .unwrap();
    assert!(grant.refresh_token.is_none());
    assert_eq!(grant.granted_scopes, ["a", "b"]);
    // `expires_in` as a string still counts.
    assert!((grant.expires_at - Utc::now()).num_seconds() > 3500);
}

#[tokio::test]
async fn failures_are_classified_for_who_must_act_and_never_quote_the_code() {
    let (base, mock) = server().await;
    let google = OAuthClient::google(&google_args(&base));
    let fitbit = OAuthClient::fitbit(&fitbit_args(&base));
    let cases: [(&OAuthClient, u16, String, &str); 8] = [
        (
            &google,
            400,
            r#"{"error":"invalid_grant","error_description":"Bad Request"}"#.into(),
            "refused",
        ),
        (
            &fitbit,
            400,
            format!(
                r#"{{"errors":[{{"errorType":"invalid_grant","message":"Authorization code invalid: {CODE} Visit https://dev.fitbit.com/docs/oauth2"}}],"success":false}}"#
            ),
            "refused",
        ),
        (
            &google,
            401,
            r#"{"error":"invalid_client","error_description":"The OAuth client was not found."}"#
                .into(),
            "misconfigured",
        ),
        (
            &fitbit,
            401,
            r#"{"errors":[{"errorType":"invalid_client","message":"Invalid authorization header format."}],"success":false}"#.into(),
            "misconfigured",
        ),
        (&google, 401, String::new(), "misconfigured"),
        (&google, 503, "Service Unavailable".into(), "unavailable"),
        (&fitbit, 429, r#"{"errors":[{"errorType":"system","fieldName":"n/a","message":"Too Many Requests"}],"success":false}"#.into(), "unavailable"),
        (
            &google,
            400,
            "<html><body>Error 400 (Bad Request)!!1</body></html>".into(),
            "unavailable",
        ),
    ];
    for (client, status, body, expected) in cases {
        mock.answer(status, &body);
        let error = client
            .exchange_code(CODE, REDIRECT, &verifier())
            .await
            .unwrap_err();
        let class = match &error {
            OAuthError::Refused { .. } => "refused",
            OAuthError::Misconfigured { .. } => "misconfigured",
            OAuthError::Unavailable { .. } => "unavailable",
        };
        assert_eq!(class, expected, "{status} {body}: {error:?}");
        let text = format!("{error} {error:?}");
        assert!(!text.contains(CODE) && !text.contains(VERIFIER), "{text}");
    }
    // The Google invalid_grant names its error for the participant's page.
    mock.answer(
        400,
        r#"{"error":"invalid_grant","error_description":"Invalid code verifier."}"#,
    );
    match google.exchange_code(CODE, REDIRECT, &verifier()).await {
        Err(OAuthError::Refused { error, description }) => {
            assert_eq!(error, "invalid_grant");
            assert_eq!(description, "Invalid code verifier.");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_success_status_with_an_unreadable_body_or_no_server_is_unavailable() {
    let (base, mock) = server().await;
    let google = OAuthClient::google(&google_args(&base));
    for body in [
        "<html>OK</html>",
        r#"{"access_token": 12}"#,
        r#"{"access_tok"#,
    ] {
        mock.answer(200, body);
        assert!(matches!(
            google.exchange_code(CODE, REDIRECT, &verifier()).await,
            Err(OAuthError::Unavailable { .. })
        ));
    }
    // Nothing listens on port 9 of the loopback.
    let closed = OAuthClient::google(&google_args("http://127.0.0.1:9"));
    assert!(matches!(
        closed.exchange_code(CODE, REDIRECT, &verifier()).await,
        Err(OAuthError::Unavailable { .. })
    ));
}

#[tokio::test]
async fn revocation_revokes_or_reports_a_token_already_gone() {
    let (base, mock) = server().await;
    let google = OAuthClient::google(&google_args(&base));
    let fitbit = OAuthClient::fitbit(&fitbit_args(&base));
    let token = Secret::new("fake-refresh-token-for-a-test".to_owned());

    mock.answer(200, "");
    assert_eq!(google.revoke(&token).await.unwrap(), Revocation::Revoked);
    let sent = mock.last();
    assert_eq!(sent.path, "/revoke");
    assert_eq!(
        form(&sent, "token").as_deref(),
        Some(token.expose().as_str())
    );
    assert_eq!(form(&sent, "client_secret").as_deref(), Some("g-secret"));

    assert_eq!(fitbit.revoke(&token).await.unwrap(), Revocation::Revoked);
    let sent = mock.last();
    assert_eq!(sent.path, "/oauth2/revoke");
    assert!(sent.authorization.as_ref().unwrap().starts_with("Basic "));
    assert_eq!(
        form(&sent, "token").as_deref(),
        Some(token.expose().as_str())
    );

    mock.answer(
        400,
        r#"{"error":"invalid_token","error_description":"Token expired or revoked"}"#,
    );
    assert_eq!(
        google.revoke(&token).await.unwrap(),
        Revocation::AlreadyInvalid
    );
    mock.answer(
        400,
        &format!(
            r#"{{"errors":[{{"errorType":"invalid_token","message":"Access token invalid: {}"}}],"success":false}}"#,
            token.expose()
        ),
    );
    assert_eq!(
        fitbit.revoke(&token).await.unwrap(),
        Revocation::AlreadyInvalid
    );

    mock.answer(
        401,
        &format!(
            r#"{{"errors":[{{"errorType":"invalid_client","message":"Client id invalid, token {}"}}],"success":false}}"#,
            token.expose()
        ),
    );
    match fitbit.revoke(&token).await {
        Err(e @ OAuthError::Misconfigured { .. }) => {
            assert!(!format!("{e} {e:?}").contains(token.expose()), "{e}")
        }
        other => panic!("{other:?}"),
    }
    mock.answer(502, "bad gateway");
    assert!(matches!(
        google.revoke(&token).await,
        Err(OAuthError::Unavailable { .. })
    ));
}

/// The authorization URL's query, decoded.
fn query(url: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[test]
fn the_google_authorization_url_asks_for_an_offline_grant_with_pkce() {
    let client = OAuthClient::google(&google_args("https://accounts.example"));
    let url = client.authorize_url(REDIRECT, "st&te=1 2", "E9Mel-cM", Some("p@example.org"));
    assert!(url.starts_with("https://accounts.example/o/oauth2/v2/auth?"));
    // Spaces are %20 (never '+'), and the values are encoded.
    assert!(!url.contains('+') && !url.contains(' '));
    assert!(url.contains("scope=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fgooglehealth.activity_and_fitness.readonly%20https%3A"));
    let mut params = query(&url);
    params.sort();
    // The required scopes, then sleep, which a participant may untick and keep syncing.
    let scope = format!(
        "{} https://www.googleapis.com/auth/googlehealth.sleep.readonly",
        google::REQUIRED_SCOPES.join(" ")
    );
    let mut expected: Vec<(String, String)> = [
        ("access_type", "offline"),
        ("client_id", "cid.apps.googleusercontent.com"),
        ("code_challenge", "E9Mel-cM"),
        ("code_challenge_method", "S256"),
        ("login_hint", "p@example.org"),
        ("prompt", "consent"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", scope.as_str()),
        ("state", "st&te=1 2"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    expected.sort();
    assert_eq!(params, expected);
    let without_hint = client.authorize_url(REDIRECT, "s", "c", None);
    assert!(!without_hint.contains("login_hint"));
}

#[test]
fn the_fitbit_authorization_url_asks_for_its_short_scopes_with_pkce() {
    let client = OAuthClient::fitbit(&fitbit_args("https://www.fitbit.example"));
    assert_eq!(client.provider(), Provider::Fitbit);
    let url = client.authorize_url(REDIRECT, "state1", "chal", Some("ignored@example.org"));
    assert!(url.starts_with("https://www.fitbit.example/oauth2/authorize?"));
    assert!(url.contains("scope=activity%20heartrate%20settings%20profile"));
    let mut params = query(&url);
    params.sort();
    let mut expected: Vec<(String, String)> = [
        ("client_id", "23ABCD"),
        ("code_challenge", "chal"),
        ("code_challenge_method", "S256"),
        ("prompt", "consent"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "activity heartrate settings profile sleep oxygen_saturation respiratory_rate temperature"),
        ("state", "state1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    expected.sort();
    assert_eq!(params, expected);
}

#[test]
fn missing_scopes_counts_the_old_unsuffixed_google_scopes_and_fitbit_short_names() {
    let prefix = "https://www.googleapis.com/auth/googlehealth.";
    let granted =
        |names: &[&str]| -> Vec<String> { names.iter().map(|n| format!("{prefix}{n}")).collect() };
    assert!(
        missing_scopes(
            Provider::GoogleHealth,
            &granted(&[
                "activity_and_fitness",
                "health_metrics_and_measurements.readonly",
                "settings",
                "sleep.readonly",
            ])
        )
        .is_empty()
    );
    assert_eq!(
        missing_scopes(
            Provider::GoogleHealth,
            &granted(&["activity_and_fitness.readonly", "settings.writeonly"])
        ),
        [
            format!("{prefix}health_metrics_and_measurements.readonly"),
            format!("{prefix}settings.readonly"),
        ]
    );
    assert_eq!(
        missing_scopes(Provider::GoogleHealth, &[]).len(),
        google::REQUIRED_SCOPES.len()
    );
    let fitbit_granted: Vec<String> = ["activity", "heartrate", "sleep", "profile"]
        .map(String::from)
        .to_vec();
    assert_eq!(
        missing_scopes(Provider::Fitbit, &fitbit_granted),
        ["settings"]
    );
    // A Google scope name does not count for Fitbit, nor a short name for Google.
    assert_eq!(
        missing_scopes(Provider::Fitbit, &granted(&["activity"])).len(),
        4
    );
    assert_eq!(
        missing_scopes(Provider::GoogleHealth, &["activity_and_fitness".to_owned()]).len(),
        3
    );
}

#[test]
fn the_client_secret_does_not_print() {
    let client = OAuthClient::google(&google_args("http://x"));
    let text = format!("{client:?}");
    assert!(
        !text.contains("g-secret") && text.contains("[redacted]"),
        "{text}"
    );
}
