//! The provider clients' resource bounds, each fed past its limit by a misbehaving provider on
//! 127.0.0.1:0: a body that never ends, a page chain that never ends, an answer that never
//! comes. Each must end in a classified error that names the bound, never in unbounded memory
//! or a worker slot held forever.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use futures_util::stream;

use super::fitbit::FitbitClient;
use super::google::{GoogleHealthClient, MAX_PAGES};
use super::http::{MAX_RESPONSE_BYTES, REQUEST_TIMEOUT};
use super::*;
use crate::config::GoogleArgs;
use crate::domain::UtcInstant;
use crate::errors::SyncError;

type Answer = Arc<dyn Fn(usize) -> Response + Send + Sync>;

/// A provider answering the `n`th request (from 0) with `answer(n)`; returns its base URL and
/// how many requests it has seen.
async fn provider(
    answer: impl Fn(usize) -> Response + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let answer: Answer = Arc::new(answer);
    let counter = seen.clone();
    let app = axum::Router::new().fallback(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let response = answer(n);
        async move { response }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

/// A body that never ends (no `Content-Length`): 64 KiB of spaces at a time, forever.
fn endless_body() -> Response {
    let chunk = axum::body::Bytes::from(vec![b' '; 64 * 1024]);
    let chunks = stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
    Response::new(Body::from_stream(chunks))
}

fn json(body: String) -> Response {
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

fn google_args(base: &str) -> GoogleArgs {
    GoogleArgs::on_one_host(base, "client", "secret")
}

fn google(base: &str) -> GoogleHealthClient {
    GoogleHealthClient::new(&google_args(base))
}

fn fitbit(base: &str) -> FitbitClient {
    FitbitClient::new(&super::fitbit::tests::args(base))
}

/// A session whose own budget never paces these tests.
fn session() -> Session {
    Session::new(
        Secret::new("access".to_owned()),
        RequestBudget::new(100_000, Duration::from_secs(60)),
    )
}

fn hour() -> Slice {
    Slice {
        start: UtcInstant::parse("2026-03-01T10:00:00Z").unwrap(),
        end: UtcInstant::parse("2026-03-01T11:00:00Z").unwrap(),
    }
}

fn assert_invalid_data_naming(error: SyncError, bound: &str) {
    let text = error.to_string();
    assert!(
        matches!(error, SyncError::Permanent { .. }) && text.contains(bound),
        "expected invalid provider data naming {bound}, got {text}"
    );
}

#[tokio::test]
async fn an_endless_google_body_is_refused_at_the_cap_and_not_retried() {
    let (base, seen) = provider(|_| endless_body()).await;
    let error = google(&base)
        .intraday(&session(), hour())
        .await
        .unwrap_err();
    assert_invalid_data_naming(error, "MAX_RESPONSE_BYTES");
    // Heart rate and steps are asked for at once; neither is asked again (over the cap once,
    // over it every time).
    assert_eq!(seen.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_endless_fitbit_body_is_refused_at_the_cap_and_not_retried() {
    let (base, seen) = provider(|_| endless_body()).await;
    let error = fitbit(&base)
        .intraday(&session(), hour())
        .await
        .unwrap_err();
    assert_invalid_data_naming(error, "MAX_RESPONSE_BYTES");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        1,
        "the refused request was not sent again"
    );
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_refused_before_reading() {
    let (base, _) = provider(|_| {
        Response::builder()
            .header("content-length", (MAX_RESPONSE_BYTES + 1).to_string())
            .body(Body::from_stream(stream::pending::<
                Result<axum::body::Bytes, std::io::Error>,
            >()))
            .unwrap()
    })
    .await;
    let response = http::client()
        .get(format!("{base}/any"))
        .send()
        .await
        .unwrap();
    let refused = read_capped(response, MAX_RESPONSE_BYTES).await.unwrap_err();
    assert!(
        matches!(refused, BodyError::TooLarge(MAX_RESPONSE_BYTES)),
        "{refused}"
    );
}

#[tokio::test]
async fn a_google_page_chain_past_max_pages_fails_naming_the_cap() {
    // Every page is empty and names a new next page; after MAX_PAGES + 5 the chain would end,
    // so a client without the cap would succeed and store a day with nothing in it.
    let (base, seen) = provider(|n| {
        let next = if n / 2 < MAX_PAGES + 5 {
            format!("page-{n}")
        } else {
            String::new()
        };
        json(format!(r#"{{"dataPoints":[],"nextPageToken":"{next}"}}"#))
    })
    .await;
    let error = google(&base)
        .intraday(&session(), hour())
        .await
        .unwrap_err();
    assert_invalid_data_naming(error, "MAX_PAGES");
    assert!(
        seen.load(Ordering::SeqCst) <= 2 * MAX_PAGES,
        "it stopped at the cap"
    );
}

#[tokio::test]
async fn a_paired_devices_chain_past_max_pages_fails_instead_of_truncating() {
    let (base, seen) = provider(|n| {
        let next = if n < MAX_PAGES + 5 {
            format!("page-{n}")
        } else {
            String::new()
        };
        json(format!(
            r#"{{"pairedDevices":[],"nextPageToken":"{next}"}}"#
        ))
    })
    .await;
    let error = google(&base).paired_devices(&session()).await.unwrap_err();
    assert_invalid_data_naming(error, "MAX_PAGES");
    assert_eq!(seen.load(Ordering::SeqCst), MAX_PAGES);
}

#[tokio::test(start_paused = true)]
async fn a_provider_that_never_answers_costs_a_bounded_time_and_is_transient() {
    let (base, _) = provider(|_| {
        Response::new(Body::from_stream(stream::pending::<
            Result<axum::body::Bytes, std::io::Error>,
        >()))
    })
    .await;
    let started = tokio::time::Instant::now();
    let outcome = tokio::time::timeout(
        10 * REQUEST_TIMEOUT,
        google(&base).intraday(&session(), hour()),
    )
    .await
    .expect("the client gave up on its own (REQUEST_TIMEOUT)");
    let error = outcome.unwrap_err();
    assert!(error.is_transient(), "{error}");
    // The first try and the two quick retries, each at most REQUEST_TIMEOUT (virtual time).
    assert!(
        started.elapsed() < 4 * REQUEST_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
}

/// The consent portal's code exchange and a withdrawal's revocation read the token endpoint's
/// answer up to `OAUTH_MAX_RESPONSE_BYTES`: an endless answer is "unavailable" (the page says
/// try again), naming the cap, for both calls.
#[tokio::test]
async fn an_endless_token_endpoint_answer_is_refused_at_the_oauth_cap() {
    use crate::linkage::oauth::{OAUTH_MAX_RESPONSE_BYTES, OAuthClient, OAuthError};

    let (base, seen) = provider(|_| endless_body()).await;
    let client = OAuthClient::google(&google_args(&base));
    let (verifier, refresh) = (
        Secret::new("verifier".to_owned()),
        Secret::new("refresh".to_owned()),
    );
    let exchange = client.exchange_code("code", "http://127.0.0.1/cb", &verifier);
    let revoke = client.revoke(&refresh);
    for outcome in [exchange.await.map(|_| ()), revoke.await.map(|_| ())] {
        match outcome {
            Err(OAuthError::Unavailable { detail }) => {
                assert!(detail.contains("OAUTH_MAX_RESPONSE_BYTES"), "{detail}");
                assert!(
                    detail.contains(&OAUTH_MAX_RESPONSE_BYTES.to_string()),
                    "{detail}"
                );
            }
            other => panic!("expected unavailable at the cap, got {other:?}"),
        }
    }
    assert_eq!(seen.load(Ordering::SeqCst), 2, "neither call is retried");
}

/// A token endpoint that never answers costs the portal's request at most `REQUEST_TIMEOUT`
/// (the same client as the provider calls), and is "unavailable", not a hang.
#[tokio::test(start_paused = true)]
async fn a_token_endpoint_that_never_answers_is_unavailable_within_the_request_timeout() {
    use crate::linkage::oauth::{OAuthClient, OAuthError};

    let (base, _) = provider(|_| {
        Response::new(Body::from_stream(stream::pending::<
            Result<axum::body::Bytes, std::io::Error>,
        >()))
    })
    .await;
    let client = OAuthClient::google(&google_args(&base));
    let started = tokio::time::Instant::now();
    let outcome = tokio::time::timeout(
        10 * REQUEST_TIMEOUT,
        client.revoke(&Secret::new("refresh".to_owned())),
    )
    .await
    .expect("the client gave up on its own (REQUEST_TIMEOUT)");
    assert!(
        matches!(outcome, Err(OAuthError::Unavailable { .. })),
        "{outcome:?}"
    );
    assert!(started.elapsed() <= REQUEST_TIMEOUT + Duration::from_secs(1));
}
