//! The console's OpenID Connect client against the simulator's staff issuer (`/oidc`), in
//! process: discovery, the whole browser flow driven over HTTP, and every refusal.

use std::collections::HashMap;

use fitlink_shared::secret::Secret;
use fitlink_simulator::SimConfig;
use serde_json::json;
use tokio::sync::oneshot;

use super::{LoginError, OidcConfig, OidcLogin, PendingLogin, SignedIn};

/// The console's callback. Nothing listens there: the test reads the redirect's `Location`.
const CALLBACK: &str = "http://127.0.0.1:9/console/oidc/callback";

/// A simulator on an ephemeral loopback port; stops when dropped.
struct Sim {
    base: String,
    _stop: oneshot::Sender<()>,
}

impl Sim {
    async fn start() -> Sim {
        let config = SimConfig {
            participants: 1,
            days: 1,
            ..SimConfig::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            fitlink_simulator::run(config, listener, async {
                let _ = stopped.await;
            })
            .await
            .expect("the simulator serves");
        });
        Sim { base, _stop: stop }
    }

    fn issuer(&self) -> String {
        format!("{}/oidc", self.base)
    }

    async fn login(&self) -> OidcLogin {
        OidcLogin::discover(config(&self.issuer()))
            .await
            .expect("the simulator's issuer is discovered")
    }

    /// The next ID token is wrong in this way (`/_sim/oidc/id-token-fault`).
    async fn fault(&self, fault: &str) {
        let status = browser()
            .post(format!("{}/_sim/oidc/id-token-fault", self.base))
            .json(&json!({ "fault": fault }))
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "{fault}: {status}");
    }
}

fn config(issuer_url: &str) -> OidcConfig {
    OidcConfig {
        issuer_url: issuer_url.to_owned(),
        client_id: "fitlink-console".to_owned(),
        client_secret: Secret::new("sim-console-secret".to_owned()),
        redirect_url: CALLBACK.to_owned(),
    }
}

/// A browser that stops at every redirect, so the test sees where it is sent.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn query(url: &str) -> HashMap<String, String> {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// What the browser does between `begin` and the callback: opens the authorize URL, answers
/// the sign-in page as `user` with `decision` (`sign-in` or `deny`), and returns the query of
/// the redirect to the console's callback.
async fn browse(
    sim: &Sim,
    authorize_url: &str,
    user: &str,
    decision: &str,
) -> HashMap<String, String> {
    let page = browser().get(authorize_url).send().await.unwrap();
    assert_eq!(page.status(), 200, "the sign-in page");
    let html = page.text().await.unwrap();
    assert!(html.contains("<select id=\"user\"") && html.contains("id=\"sign-in\""));
    let marker = "name=\"request\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    let request = &html[start..start + html[start..].find('"').unwrap()];
    let answer = browser()
        .post(format!("{}/authorize", sim.issuer()))
        .form(&[("request", request), ("user", user), ("decision", decision)])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 303);
    let location = answer.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(CALLBACK), "redirected to {location}");
    query(location)
}

/// `begin`, the browser as `user`, then `finish` with what came back.
async fn sign_in(sim: &Sim, login: &OidcLogin, user: &str) -> Result<SignedIn, LoginError> {
    let (url, pending) = login.begin();
    let back = browse(sim, &url, user, "sign-in").await;
    login.finish(pending, &back["code"], &back["state"]).await
}

#[tokio::test]
async fn the_coordinator_signs_in_with_their_groups() {
    let sim = Sim::start().await;
    let login = sim.login().await;
    let (url, pending) = login.begin();
    let sent = query(&url);
    assert!(
        url.starts_with(&format!("{}/authorize?", sim.issuer())),
        "{url}"
    );
    assert_eq!(sent["response_type"], "code");
    assert_eq!(sent["client_id"], "fitlink-console");
    assert_eq!(sent["redirect_uri"], CALLBACK);
    assert_eq!(sent["scope"], "openid email profile groups");
    assert_eq!(sent["code_challenge_method"], "S256");
    assert!(!sent["nonce"].is_empty() && !sent["state"].is_empty());

    let back = browse(&sim, &url, "coordinator@example.org", "sign-in").await;
    assert_eq!(back["state"], sent["state"]);
    let who = login
        .finish(pending, &back["code"], &back["state"])
        .await
        .unwrap();
    assert_eq!(
        who,
        SignedIn {
            subject: "staff-0001".to_owned(),
            display_name: "coordinator@example.org".to_owned(),
            groups: vec!["fitlink-operators".to_owned()],
        }
    );
    let outsider = sign_in(&sim, &login, "outsider@example.org").await.unwrap();
    assert!(outsider.groups.is_empty(), "{outsider:?}");
}

#[tokio::test]
async fn a_callback_with_another_state_is_refused_before_the_code_is_used() {
    let sim = Sim::start().await;
    let login = sim.login().await;
    let (url, pending) = login.begin();
    let back = browse(&sim, &url, "coordinator@example.org", "sign-in").await;
    let cookie = serde_json::to_string(&pending).unwrap();

    let wrong = login
        .finish(pending, &back["code"], "someone-elses-state")
        .await;
    assert!(matches!(wrong, Err(LoginError::StateMismatch)), "{wrong:?}");
    // The code was not sent anywhere: the right callback still works.
    let pending: PendingLogin = serde_json::from_str(&cookie).unwrap();
    login
        .finish(pending, &back["code"], &back["state"])
        .await
        .unwrap();
}

#[tokio::test]
async fn cancelling_at_the_issuer_is_denied() {
    let sim = Sim::start().await;
    let login = sim.login().await;
    let (url, pending) = login.begin();
    let back = browse(&sim, &url, "viewer@example.org", "deny").await;
    assert!(!back.contains_key("code"));
    let error = login.refused(
        pending,
        &back["state"],
        &back["error"],
        back.get("error_description").map(String::as_str),
    );
    assert!(
        matches!(&error, LoginError::Denied(reason) if reason.contains("access_denied")),
        "{error:?}"
    );

    let (_, pending) = login.begin();
    let forged = login.refused(pending, "not-this-browsers-state", "access_denied", None);
    assert!(matches!(forged, LoginError::StateMismatch), "{forged:?}");
}

#[tokio::test]
async fn a_replayed_code_is_an_exchange_error() {
    let sim = Sim::start().await;
    let login = sim.login().await;
    let (url, pending) = login.begin();
    let back = browse(&sim, &url, "coordinator@example.org", "sign-in").await;
    let cookie = serde_json::to_string(&pending).unwrap();
    login
        .finish(pending, &back["code"], &back["state"])
        .await
        .unwrap();

    let replayed: PendingLogin = serde_json::from_str(&cookie).unwrap();
    let again = login.finish(replayed, &back["code"], &back["state"]).await;
    let Err(LoginError::Exchange(reason)) = &again else {
        panic!("expected Exchange, got {again:?}");
    };
    assert!(reason.contains("invalid_grant"), "{reason}");
    assert!(
        !reason.contains(&back["code"]),
        "the message names no code: {reason}"
    );
}

#[tokio::test]
async fn id_tokens_that_fail_a_check_are_invalid() {
    let sim = Sim::start().await;
    let login = sim.login().await;
    for (fault, names) in [
        ("wrong-audience", "audience"),
        ("wrong-nonce", "nonce"),
        ("wrong-issuer", "issuer"),
        ("expired", "xpired"),
        ("bad-signature", "ignature"),
    ] {
        sim.fault(fault).await;
        let result = sign_in(&sim, &login, "coordinator@example.org").await;
        let Err(LoginError::InvalidIdToken(reason)) = &result else {
            panic!("{fault}: expected InvalidIdToken, got {result:?}");
        };
        assert!(reason.to_lowercase().contains(names), "{fault}: {reason}");
    }
    // The switch is one-shot: the next sign-in is fine again.
    sign_in(&sim, &login, "coordinator@example.org")
        .await
        .unwrap();
}

#[tokio::test]
async fn discovery_errors_name_the_issuer() {
    let sim = Sim::start().await;
    // Not an issuer: the simulator's 404 for an unknown path.
    let not_an_issuer = format!("{}/nothing-here", sim.base);
    let error = OidcLogin::discover(config(&not_an_issuer))
        .await
        .unwrap_err();
    assert!(error.to_string().contains(&not_an_issuer), "{error}");

    // Unreachable: a port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/oidc", l.local_addr().unwrap())
    };
    let error = OidcLogin::discover(config(&closed)).await.unwrap_err();
    assert!(error.to_string().contains(&closed), "{error}");

    let error = OidcLogin::discover(config("not a url")).await.unwrap_err();
    assert!(error.to_string().contains("not a url"), "{error}");
}

/// An "issuer" whose discovery document redirects to the real one: the redirect is not
/// followed (where it points is the issuer's choice, not the console's).
#[tokio::test]
async fn redirects_are_not_followed() {
    let sim = Sim::start().await;
    let target = format!("{}/.well-known/openid-configuration", sim.issuer());
    let app = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move {
            (
                axum::http::StatusCode::FOUND,
                [(axum::http::header::LOCATION, target)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector = format!("http://{}/oidc", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let error = OidcLogin::discover(config(&redirector)).await.unwrap_err();
    let text = format!("{error:#}");
    assert!(
        text.contains("redirect") && text.contains(&redirector),
        "{text}"
    );
}

#[tokio::test]
async fn nothing_secret_is_printable_and_the_flow_suits_an_async_handler() {
    fn send_sync<T: Send + Sync>(_: &T) {}
    fn send<T: Send>(_: &T) {}
    let sim = Sim::start().await;
    let login = sim.login().await;
    send_sync(&login);
    let (_, pending) = login.begin();
    let cookie = serde_json::to_string(&pending).unwrap();
    assert_eq!(format!("{pending:?}"), "PendingLogin([redacted])");
    let printed = format!("{login:?}");
    assert!(!printed.contains("sim-console-secret"), "{printed}");
    assert!(!printed.contains(&cookie), "{printed}");
    let future = login.finish(pending, "code", "state");
    send(&future);
    drop(future);
}

/// An issuer whose discovery document never ends is refused at the console's cap, not read
/// into memory.
#[tokio::test]
async fn an_endless_answer_from_the_issuer_is_refused_at_the_cap() {
    let chunk = axum::body::Bytes::from(vec![b' '; 64 * 1024]);
    let app = axum::Router::new().fallback(move || {
        let chunk = chunk.clone();
        async move {
            let chunks =
                futures_util::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
            axum::body::Body::from_stream(chunks)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let Err(refused) = OidcLogin::discover(config(&base)).await else {
        panic!("an endless discovery document was accepted");
    };
    let text = format!("{refused:#}");
    assert!(
        text.contains(&format!("larger than {} bytes", super::MAX_RESPONSE_BYTES)),
        "{text}"
    );
}
