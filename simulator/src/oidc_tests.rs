//! End-to-end tests of the staff OpenID Connect issuer (`/oidc`): discovery, the JWKS, the
//! sign-in page and the token endpoint's refusals.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::linkage_tests::pkce_pair;
use crate::oidc::{CLIENT_ID, CLIENT_SECRET, allowed_redirect_uri};
use crate::tests::{Sim, small, start};

const CALLBACK: &str = "http://127.0.0.1:9/console/oidc/callback";

/// A browser that does not follow redirects (the callback host does not exist).
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The query of a redirect's `Location`, decoded.
fn location_query(response: &reqwest::Response) -> HashMap<String, String> {
    let location = response.headers()["location"].to_str().unwrap();
    let url = reqwest::Url::parse(location).unwrap();
    url.query_pairs().into_owned().collect()
}

fn hidden_request(html: &str) -> String {
    let marker = "name=\"request\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_owned()
}

impl Sim {
    /// The JSON a GET of `url` answers.
    async fn json_at(&self, url: &str) -> Value {
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn issuer(&self) -> String {
        format!("{}/oidc", self.base)
    }

    /// Signs `user` in (or denies, with `decision = "deny"`) and returns the redirect's query.
    async fn oidc_sign_in(
        &self,
        user: &str,
        decision: &str,
        challenge: Option<&str>,
    ) -> HashMap<String, String> {
        let mut query = vec![
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", CALLBACK),
            ("scope", "openid email profile"),
            ("state", "st-1"),
            ("nonce", "n-1"),
        ];
        if let Some(c) = challenge {
            query.extend([("code_challenge", c), ("code_challenge_method", "S256")]);
        }
        let page = browser()
            .get(format!("{}/authorize", self.issuer()))
            .query(&query)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        for needle in ["<select id=\"user\"", "id=\"sign-in\"", "id=\"deny\"", user] {
            assert!(html.contains(needle), "{needle} missing from {html}");
        }
        let request = hidden_request(&html);
        let answer = browser()
            .post(format!("{}/authorize", self.issuer()))
            .form(&[
                ("request", request.as_str()),
                ("user", user),
                ("decision", decision),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::SEE_OTHER);
        let location = answer.headers()["location"].to_str().unwrap();
        assert!(location.starts_with(CALLBACK), "{location}");
        location_query(&answer)
    }

    async fn oidc_token(
        &self,
        form: &[(&str, &str)],
        basic: Option<(&str, &str)>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}/token", self.issuer()))
            .form(form);
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        let response = request.send().await.unwrap();
        (response.status(), response.json().await.unwrap())
    }
}

fn code_form<'a>(
    code: &'a str,
    redirect_uri: &'a str,
    verifier: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
    ];
    form.extend(verifier.map(|v| ("code_verifier", v)));
    form
}

const BASIC: Option<(&str, &str)> = Some((CLIENT_ID, CLIENT_SECRET));

/// The claims of a compact JWS, after checking its ES256 signature with the JWKS's key.
async fn verified_claims(sim: &Sim, jwt: &str) -> Value {
    let jwks = sim.json_at(&format!("{}/jwks", sim.issuer())).await;
    let key = &jwks["keys"][0];
    let coordinate = |name: &str| URL_SAFE_NO_PAD.decode(key[name].as_str().unwrap()).unwrap();
    let mut sec1 = vec![4u8];
    sec1.extend(coordinate("x"));
    sec1.extend(coordinate("y"));
    let verifying = VerifyingKey::from_sec1_bytes(&sec1).unwrap();
    let (input, signature) = jwt.rsplit_once('.').unwrap();
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).unwrap();
    verifying.verify(input.as_bytes(), &signature).unwrap();
    let (header, payload) = input.split_once('.').unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], key["kid"]);
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn discovery_names_the_endpoints_and_es256() {
    let sim = start(small()).await;
    let issuer = sim.issuer();
    let d = sim
        .json_at(&format!("{issuer}/.well-known/openid-configuration"))
        .await;
    assert_eq!(d["issuer"], json!(issuer));
    assert_eq!(
        d["authorization_endpoint"],
        json!(format!("{issuer}/authorize"))
    );
    assert_eq!(d["token_endpoint"], json!(format!("{issuer}/token")));
    assert_eq!(d["jwks_uri"], json!(format!("{issuer}/jwks")));
    assert_eq!(d["response_types_supported"], json!(["code"]));
    assert_eq!(d["subject_types_supported"], json!(["public"]));
    assert_eq!(d["id_token_signing_alg_values_supported"], json!(["ES256"]));
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert!(
        d["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("openid"))
    );
    let jwks = sim.json_at(&format!("{issuer}/jwks")).await;
    let key = &jwks["keys"][0];
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"]),
        (&json!("EC"), &json!("P-256"), &json!("ES256"))
    );
    assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()));
}

#[tokio::test]
async fn a_code_becomes_a_signed_id_token_for_the_user_once() {
    let sim = start(small()).await;
    let (verifier, challenge) = pkce_pair();
    let q = sim
        .oidc_sign_in("coordinator@example.org", "sign-in", Some(&challenge))
        .await;
    assert_eq!(q["state"], "st-1");
    let code = q["code"].clone();
    let (status, body) = sim
        .oidc_token(&code_form(&code, CALLBACK, Some(&verifier)), BASIC)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["access_token"].as_str().is_some_and(|t| !t.is_empty()));
    let claims = verified_claims(&sim, body["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["iss"], json!(sim.issuer()));
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["nonce"], "n-1");
    assert_eq!(claims["email"], "coordinator@example.org");
    assert_eq!(claims["groups"], json!(["fitlink-operators"]));
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());

    // Single use: the same code again is refused.
    let (status, body) = sim
        .oidc_token(&code_form(&code, CALLBACK, Some(&verifier)), BASIC)
        .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_grant"))
    );
}

#[tokio::test]
async fn client_secret_post_works_and_a_wrong_secret_is_invalid_client() {
    let sim = start(small()).await;
    let q = sim
        .oidc_sign_in("viewer@example.org", "sign-in", None)
        .await;
    let mut wrong = code_form(&q["code"], CALLBACK, None);
    wrong.extend([
        ("client_id", CLIENT_ID),
        ("client_secret", "not-the-secret"),
    ]);
    let (status, body) = sim.oidc_token(&wrong, None).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_client"))
    );
    let (status, body) = sim
        .oidc_token(
            &code_form(&q["code"], CALLBACK, None),
            Some((CLIENT_ID, "nope")),
        )
        .await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_client"))
    );

    // A refused client did not consume the code: the real client still exchanges it.
    let mut right = code_form(&q["code"], CALLBACK, None);
    right.extend([("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)]);
    let (status, body) = sim.oidc_token(&right, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = verified_claims(&sim, body["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["groups"], json!(["fitlink-viewers"]));
}

#[tokio::test]
async fn a_wrong_redirect_uri_or_verifier_is_invalid_grant_and_burns_the_code() {
    let sim = start(small()).await;
    let (verifier, challenge) = pkce_pair();

    let q = sim
        .oidc_sign_in("coordinator@example.org", "sign-in", Some(&challenge))
        .await;
    let other = "http://127.0.0.1:9/elsewhere";
    let (status, body) = sim
        .oidc_token(&code_form(&q["code"], other, Some(&verifier)), BASIC)
        .await;
    refused_with(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "redirect_uri",
    );
    let (_, body) = sim
        .oidc_token(&code_form(&q["code"], CALLBACK, Some(&verifier)), BASIC)
        .await;
    assert_eq!(body["error"], "invalid_grant", "the tried code is dead");

    let q = sim
        .oidc_sign_in("coordinator@example.org", "sign-in", Some(&challenge))
        .await;
    let (wrong_verifier, _) = pkce_pair();
    let (status, body) = sim
        .oidc_token(
            &code_form(&q["code"], CALLBACK, Some(&wrong_verifier)),
            BASIC,
        )
        .await;
    refused_with(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "code_verifier",
    );

    let q = sim
        .oidc_sign_in("coordinator@example.org", "sign-in", Some(&challenge))
        .await;
    let (_, body) = sim
        .oidc_token(&code_form(&q["code"], CALLBACK, None), BASIC)
        .await;
    assert_eq!(
        body["error"], "invalid_grant",
        "a challenged code needs its verifier"
    );
}

#[tokio::test]
async fn deny_redirects_with_access_denied_and_bad_requests_never_redirect() {
    let sim = start(small()).await;
    let q = sim.oidc_sign_in("outsider@example.org", "deny", None).await;
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st-1");
    assert!(!q.contains_key("code"));

    for (client_id, redirect_uri, status) in [
        ("someone-else", CALLBACK, StatusCode::UNAUTHORIZED),
        (CLIENT_ID, "https://evil.test/cb", StatusCode::BAD_REQUEST),
        (
            CLIENT_ID,
            "http://127.0.0.1/no-port",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = browser()
            .get(format!("{}/authorize", sim.issuer()))
            .query(&[
                ("response_type", "code"),
                ("client_id", client_id),
                ("redirect_uri", redirect_uri),
                ("scope", "openid"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{client_id} {redirect_uri}");
        assert!(r.headers().get("location").is_none());
    }

    // A trusted redirect target hears about the other problems.
    let r = browser()
        .get(format!("{}/authorize", sim.issuer()))
        .query(&[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", CALLBACK),
            ("scope", "email"),
            ("state", "s"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location_query(&r)["error"], "invalid_scope");
}

#[tokio::test]
async fn the_fault_switch_spoils_one_id_token() {
    let sim = start(small()).await;
    let set = |fault: Value| {
        let http = sim.http.clone();
        let url = format!("{}/_sim/oidc/id-token-fault", sim.base);
        async move {
            http.post(url)
                .json(&json!({ "fault": fault }))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(set(json!("wrong-audience")).await, StatusCode::OK);
    assert_eq!(set(json!("sideways")).await, StatusCode::BAD_REQUEST);
    assert_eq!(set(json!("wrong-audience")).await, StatusCode::OK);

    let q = sim
        .oidc_sign_in("coordinator@example.org", "sign-in", None)
        .await;
    let (_, body) = sim
        .oidc_token(&code_form(&q["code"], CALLBACK, None), BASIC)
        .await;
    let claims = verified_claims(&sim, body["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["aud"], "another-client");

    let q = sim
        .oidc_sign_in("coordinator@example.org", "sign-in", None)
        .await;
    let (_, body) = sim
        .oidc_token(&code_form(&q["code"], CALLBACK, None), BASIC)
        .await;
    let claims = verified_claims(&sim, body["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["aud"], CLIENT_ID, "the fault is used once");
}

#[test]
fn redirect_uris_are_loopback_with_a_port_and_a_path() {
    assert!(allowed_redirect_uri(
        "http://127.0.0.1:8080/console/callback"
    ));
    assert!(allowed_redirect_uri("http://localhost:1/cb?x=1"));
    assert!(!allowed_redirect_uri("http://127.0.0.1/cb"));
    assert!(!allowed_redirect_uri("http://127.0.0.1:8080"));
    assert!(!allowed_redirect_uri("http://127.0.0.1:0/cb"));
    assert!(!allowed_redirect_uri("http://127.0.0.1:99999/cb"));
    assert!(!allowed_redirect_uri("https://127.0.0.1:8080/cb"));
    assert!(!allowed_redirect_uri("http://127.0.0.1.evil.test:80/cb"));
    assert!(!allowed_redirect_uri("http://localhost:80@evil.test/cb"));
    assert!(!allowed_redirect_uri("http://127.0.0.1:8080/cb#x"));
}

/// A token endpoint refusal: this status, this RFC 6749 error code, a description naming `why`.
fn refused_with(status: StatusCode, body: &Value, expected: StatusCode, error: &str, why: &str) {
    assert_eq!(
        (status, &body["error"]),
        (expected, &json!(error)),
        "{body}"
    );
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains(why)),
        "{body}"
    );
}
