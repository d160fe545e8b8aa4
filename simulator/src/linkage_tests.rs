//! End-to-end tests of the consent flows: consent pages, redirects, code exchange with
//! PKCE, revocation and re-consent, for Google and legacy Fitbit.

use std::collections::HashMap;

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::SimConfig;
use crate::roster;
use crate::tests::{Sim, small, start};

const CALLBACK: &str = "http://127.0.0.1:9/link/callback?study=s1";
const AF: &str = "https://www.googleapis.com/auth/googlehealth.activity_and_fitness.readonly";
const HM: &str =
    "https://www.googleapis.com/auth/googlehealth.health_metrics_and_measurements.readonly";
const SETTINGS: &str = "https://www.googleapis.com/auth/googlehealth.settings.readonly";

/// A browser that does not follow redirects (the callback host does not exist).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub(crate) fn pkce_pair() -> (String, String) {
    let verifier = format!("verifier-{:032x}-{:016x}", rand::random::<u128>(), 7u64);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The query parameters of a redirect's `Location` (fragment dropped).
fn location_query(response: &reqwest::Response) -> (String, HashMap<String, String>) {
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let without_fragment = location.split('#').next().unwrap();
    let (_, query) = without_fragment.split_once('?').unwrap();
    let params = query
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), percent_decode(v))
        })
        .collect();
    (location, params)
}

/// The pending-request id carried by a consent page.
fn pending_id(html: &str) -> String {
    let marker = "name=\"request\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

impl Sim {
    async fn authorize_page(&self, path: &str, query: &[(&str, &str)]) -> (StatusCode, String) {
        let r = browser()
            .get(format!("{}{path}", self.base))
            .query(query)
            .send()
            .await
            .unwrap();
        assert!(r.headers().get("location").is_none());
        (r.status(), r.text().await.unwrap())
    }

    /// Answers a consent page: the chosen account, the ticked scopes and the button.
    async fn decide(
        &self,
        path: &str,
        html: &str,
        account: &str,
        ticked: &[&str],
        decision: &str,
    ) -> reqwest::Response {
        let request = pending_id(html);
        let mut form = vec![("request", request.as_str()), ("account", account)];
        form.extend(ticked.iter().map(|s| ("scope", *s)));
        form.push(("decision", decision));
        browser()
            .post(format!("{}{path}", self.base))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// Runs the Google consent for `account` and returns the redirect's parameters.
    pub(crate) async fn google_consent(
        &self,
        account: &str,
        ticked: &[&str],
        challenge: &str,
    ) -> HashMap<String, String> {
        let scope = format!("{AF} {HM} {SETTINGS}");
        let (status, html) = self
            .authorize_page(
                "/o/oauth2/v2/auth",
                &[
                    ("client_id", "sim-client"),
                    ("redirect_uri", CALLBACK),
                    ("response_type", "code"),
                    ("scope", &scope),
                    ("state", "st-1"),
                    ("access_type", "offline"),
                    ("prompt", "consent"),
                    ("code_challenge", challenge),
                    ("code_challenge_method", "S256"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{html}");
        let r = self
            .decide(
                "/o/oauth2/v2/auth/decision",
                &html,
                account,
                ticked,
                "allow",
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        location_query(&r).1
    }

    pub(crate) async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/token", self.base))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("code_verifier", verifier),
                ("client_id", "sim-client"),
                ("client_secret", "sim-secret"),
            ])
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    async fn refresh(&self, token: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/token", self.base))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", "sim-client"),
                ("client_secret", "sim-secret"),
            ])
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    async fn google_revoke(&self, token: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/revoke", self.base))
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }
}

fn roster_refresh(config: &SimConfig, id: &str) -> String {
    roster(config)
        .into_iter()
        .find(|p| p.participant_id == id)
        .unwrap()
        .refresh_token
}

#[tokio::test]
async fn google_consent_page_renders_and_rejects_bad_requests_without_redirecting() {
    let sim = start(small()).await;
    let scope = format!("{AF} {HM} {SETTINGS}");
    let base = |extra: &[(&'static str, &'static str)]| {
        let mut q = vec![
            ("client_id", "sim-client"),
            ("redirect_uri", CALLBACK),
            ("response_type", "code"),
        ];
        q.extend_from_slice(extra);
        q
    };
    let mut query = base(&[("login_hint", "sim-0003@example.test")]);
    query.push(("scope", &scope));
    let (status, html) = sim.authorize_page("/o/oauth2/v2/auth", &query).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<html lang=\"en\">"));
    assert!(html.contains("<title>Sign in – Google Health (simulator)</title>"));
    assert!(html.contains("<select id=\"account\" name=\"account\">"));
    assert!(
        html.contains(
            "<option value=\"sim-0003\" selected>sim-0003 (sim-0003@example.test)</option>"
        )
    );
    assert!(html.contains("<option value=\"sim-0001\">sim-0001 (sim-0001@example.test)</option>"));
    assert!(html.contains(&format!(
        "<input type=\"checkbox\" name=\"scope\" value=\"{HM}\" id=\"scope-1\" checked>"
    )));
    assert!(html.contains(
        "<label for=\"scope-1\">See your health metrics and measurements, such as heart rate"
    ));
    assert!(html.contains("See your activity and fitness data"));
    assert!(html.contains("See your Fitbit settings and paired devices"));
    assert!(html.contains("<fieldset>") && html.contains("<legend>"));
    assert!(
        html.contains("<button type=\"submit\" id=\"allow\" name=\"decision\" value=\"allow\"")
    );
    assert!(html.contains(
        "<button type=\"submit\" id=\"deny\" name=\"decision\" value=\"deny\">Cancel</button>"
    ));
    assert!(!html.contains("<script") && !html.contains("src=\"http"));

    let mut wrong_client = vec![("client_id", "someone-else"), ("redirect_uri", CALLBACK)];
    wrong_client.push(("response_type", "code"));
    wrong_client.push(("scope", &scope));
    let (status, html) = sim.authorize_page("/o/oauth2/v2/auth", &wrong_client).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(html.contains("Error 401: invalid_client"));

    let no_redirect = [
        ("client_id", "sim-client"),
        ("response_type", "code"),
        ("scope", scope.as_str()),
    ];
    let (status, html) = sim.authorize_page("/o/oauth2/v2/auth", &no_redirect).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("Error 400: invalid_request"));
    assert!(html.contains("Missing required parameter: redirect_uri"));

    let mut token_flow = vec![("client_id", "sim-client"), ("redirect_uri", CALLBACK)];
    token_flow.push(("response_type", "token"));
    token_flow.push(("scope", &scope));
    let (status, html) = sim.authorize_page("/o/oauth2/v2/auth", &token_flow).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("unsupported_response_type"));

    let (status, html) = sim.authorize_page("/o/oauth2/v2/auth", &base(&[])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("Missing required parameter: scope"));

    // Cancel: access_denied with the state, no code.
    let mut query = base(&[("state", "xyz")]);
    query.push(("scope", &scope));
    let (_, html) = sim.authorize_page("/o/oauth2/v2/auth", &query).await;
    let r = sim
        .decide(
            "/o/oauth2/v2/auth/decision",
            &html,
            "sim-0001",
            &[AF],
            "deny",
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (location, params) = location_query(&r);
    assert!(location.starts_with("http://127.0.0.1:9/link/callback?study=s1&error=access_denied"));
    assert_eq!(params["state"], "xyz");
    assert!(!params.contains_key("code"));
    // Allow with nothing ticked is a denial too; the answered page cannot be reused.
    let (_, html) = sim.authorize_page("/o/oauth2/v2/auth", &query).await;
    let r = sim
        .decide(
            "/o/oauth2/v2/auth/decision",
            &html,
            "sim-0001",
            &[],
            "allow",
        )
        .await;
    assert_eq!(location_query(&r).1["error"], "access_denied");
    let r = sim
        .decide(
            "/o/oauth2/v2/auth/decision",
            &html,
            "sim-0001",
            &[AF],
            "allow",
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn google_code_exchange_grants_only_the_ticked_scopes() {
    let sim = start(small()).await;
    let (verifier, challenge) = pkce_pair();
    let params = sim
        .google_consent("sim-0002", &[AF, SETTINGS], &challenge)
        .await;
    assert_eq!(params["state"], "st-1");
    assert_eq!(params["study"], "s1");
    assert_eq!(params["scope"], format!("{AF} {SETTINGS}"));
    let code = &params["code"];
    assert!(code.starts_with("4/simcode_"));

    // A wrong verifier consumes the code.
    let (status, body) = sim.exchange(code, CALLBACK, "not-the-verifier").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "Invalid code verifier."})
    );
    let (status, body) = sim.exchange(code, CALLBACK, &verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, body) = sim.exchange("garbage", CALLBACK, &verifier).await;
    assert_eq!(
        (status, body["error_description"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Malformed auth code."))
    );

    let params = sim
        .google_consent("sim-0002", &[AF, SETTINGS], &challenge)
        .await;
    let (status, body) = sim
        .exchange(&params["code"], "http://127.0.0.1:9/elsewhere", &verifier)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("redirect_uri_mismatch"))
    );

    let params = sim
        .google_consent("sim-0002", &[AF, SETTINGS], &challenge)
        .await;
    let (status, body) = sim.exchange(&params["code"], CALLBACK, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["scope"], format!("{AF} {SETTINGS}"));
    assert!(body.get("refresh_token_expires_in").is_none());
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert!(refresh.starts_with("simrt_sim-0002_"));
    assert_ne!(refresh, roster_refresh(&sim.config, "sim-0002"));
    // Single use: a successful code cannot be exchanged again.
    let (status, _) = sim.exchange(&params["code"], CALLBACK, &verifier).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let access = body["access_token"].as_str().unwrap();
    let steps = "/v4/users/me/dataTypes/steps/dataPoints";
    let hr = "/v4/users/me/dataTypes/heart-rate/dataPoints";
    assert_eq!(sim.get(steps, access, &[]).await.0, StatusCode::OK);
    assert_eq!(sim.get(hr, access, &[]).await.0, StatusCode::FORBIDDEN);

    let (status, body) = sim.refresh(&refresh).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["scope"], format!("{AF} {SETTINGS}"));
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(sim.get(hr, access, &[]).await.0, StatusCode::FORBIDDEN);
    // Google keeps several refresh tokens live: the roster's still works.
    let (status, _) = sim.refresh(&roster_refresh(&sim.config, "sim-0002")).await;
    assert_eq!(status, StatusCode::OK);
    let stats = sim.control_get("stats").await;
    assert_eq!(stats["code_exchanges"], 1);
}

#[tokio::test]
async fn revoked_tokens_stay_dead_after_a_reconsent() {
    let config = SimConfig {
        testing_mode: true,
        ..small()
    };
    let sim = start(config).await;
    let roster_token = roster_refresh(&sim.config, "sim-0001");
    let (status, body) = sim.google_revoke(&roster_token).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    let (status, body) = sim.google_revoke(&roster_token).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_token", "error_description": "Token expired or revoked"})
        )
    );
    assert_eq!(sim.refresh(&roster_token).await.0, StatusCode::BAD_REQUEST);

    let (verifier, challenge) = pkce_pair();
    let params = sim
        .google_consent("sim-0001", &[AF, HM, SETTINGS], &challenge)
        .await;
    let (status, body) = sim.exchange(&params["code"], CALLBACK, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["refresh_token_expires_in"], 604_799);
    let fresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(sim.refresh(&fresh).await.0, StatusCode::OK);
    let (status, body) = sim.refresh(&roster_token).await;
    assert_eq!(
        (status, body["error_description"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("Token has been expired or revoked.")
        )
    );

    // Revoking by access token revokes the whole grant, refresh tokens included.
    let (_, body) = sim.refresh(&fresh).await;
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(sim.google_revoke(&access).await.0, StatusCode::OK);
    assert_eq!(sim.refresh(&fresh).await.0, StatusCode::BAD_REQUEST);
    let (status, _) = sim.get("/v4/users/me/settings", &access, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(sim.control_get("stats").await["revocations"], 2);

    // A testing-mode grant running out looks like a revocation; restore brings back the
    // roster's token.
    sim.control("participants/sim-0002/expire-grant", &json!({}))
        .await;
    let (status, body) = sim.refresh(&roster_refresh(&sim.config, "sim-0002")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    sim.control(
        "participants/sim-0002/restore",
        &json!({"provider": "google-health"}),
    )
    .await;
    assert_eq!(
        sim.refresh(&roster_refresh(&sim.config, "sim-0002"))
            .await
            .0,
        StatusCode::OK
    );
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("sim-client:sim-secret")
    )
}

impl Sim {
    async fn fitbit_exchange(&self, code: &str, verifier: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .header("authorization", basic())
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", CALLBACK),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }

    async fn fitbit_refresh(&self, token: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .header("authorization", basic())
            .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap())
    }
}

/// A Fitbit authorize query.
fn query<'a>(challenge: &'a str, method: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("client_id", "sim-client"),
        ("response_type", "code"),
        ("scope", "activity heartrate profile settings"),
        ("redirect_uri", CALLBACK),
        ("state", "fb-state"),
        ("code_challenge", challenge),
        ("code_challenge_method", method),
    ]
}

#[tokio::test]
async fn legacy_consent_exchange_and_rotation() {
    let sim = start(small()).await;
    let (verifier, challenge) = pkce_pair();
    let (status, html) = sim
        .authorize_page("/oauth2/authorize", &query("short", "S256"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains(
        "invalid_request - The code_challenge parameter length must be between 43 and 128"
    ));
    let (status, html) = sim
        .authorize_page("/oauth2/authorize", &query(&challenge, "plain"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("invalid_request - Unsupported code_challenge_method"));

    let good = query(&challenge, "S256");
    let (status, html) = sim.authorize_page("/oauth2/authorize", &good).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("<title>Fitbit (simulator)</title>"));
    assert!(
        html.contains("id=\"account\"")
            && html.contains("id=\"allow\"")
            && html.contains("id=\"deny\"")
    );
    assert!(html.contains("value=\"heartrate\""));

    let r = sim
        .decide("/oauth2/authorize/decision", &html, "sim-0004", &[], "deny")
        .await;
    let (_, params) = location_query(&r);
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["error_description"], "The user denied the request.");
    assert_eq!(params["state"], "fb-state");

    let (_, html) = sim.authorize_page("/oauth2/authorize", &good).await;
    let r = sim
        .decide(
            "/oauth2/authorize/decision",
            &html,
            "sim-0004",
            &["activity", "heartrate", "profile"],
            "allow",
        )
        .await;
    assert_eq!(r.status(), StatusCode::FOUND);
    let (location, params) = location_query(&r);
    assert!(location.ends_with("#_=_"));
    assert_eq!(params["state"], "fb-state");
    let code = params["code"].clone();

    let (status, body) = sim.fitbit_exchange(&code, "wrong-verifier").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"][0]["errorType"], "invalid_grant");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Authorization code invalid: ")
    );
    assert_eq!(body["success"], false);

    let (_, html) = sim.authorize_page("/oauth2/authorize", &good).await;
    let r = sim
        .decide(
            "/oauth2/authorize/decision",
            &html,
            "sim-0004",
            &["activity", "heartrate", "profile"],
            "allow",
        )
        .await;
    let code = location_query(&r).1["code"].clone();
    let (status, body) = sim.fitbit_exchange(&code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let encoded_id = roster(&sim.config)[3].encoded_id.clone();
    assert_eq!(body["user_id"], encoded_id.as_str());
    assert_eq!(body["scope"], "activity heartrate profile");
    assert_eq!(body["expires_in"], 28_800);
    let first = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        sim.fitbit_exchange(&code, &verifier).await.0,
        StatusCode::BAD_REQUEST
    );
    // The consent's token is the one active token: the roster's initial one is dead.
    let initial = roster(&sim.config)[3].legacy_refresh_token.clone();
    assert_eq!(
        sim.fitbit_refresh(&initial).await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, body) = sim.fitbit_refresh(&first).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["scope"], "activity heartrate profile");
    let second = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(sim.fitbit_refresh(&first).await.0, StatusCode::BAD_REQUEST);
    let access = body["access_token"].as_str().unwrap().to_owned();
    let r = sim
        .http
        .get(format!("{}/1/user/-/profile.json", sim.base))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Revocation: 200 once, then 400 invalid_token; the grant's tokens are dead.
    let revoke = |token: String| {
        let http = sim.http.clone();
        let url = format!("{}/oauth2/revoke", sim.base);
        async move {
            let r = http
                .post(url)
                .header("authorization", basic())
                .form(&[("token", token)])
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(revoke(second.clone()).await, (StatusCode::OK, json!({})));
    let (status, body) = revoke(second.clone()).await;
    assert_eq!(
        (status, body["errors"][0]["errorType"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_token"))
    );
    assert_eq!(sim.fitbit_refresh(&second).await.0, StatusCode::BAD_REQUEST);

    sim.control("legacy", &json!({"turned_off": true})).await;
    let r = browser()
        .get(format!("{}/oauth2/authorize", sim.base))
        .query(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::GONE);
}
