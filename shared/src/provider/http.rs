//! HTTP plumbing every provider client shares: one tuned client, transport-error and status
//! classification, `Retry-After`, and short in-place retries for a flaky single request.

use std::sync::Once;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::errors::SyncError;

/// A request that takes longer than this, body included, is a transient failure, retried later.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// A provider that does not accept the connection within this is down for now (transient).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the HTTP client: rustls with the ring provider, bounded timeouts, connection reuse.
pub fn client() -> reqwest::Client {
    static CRYPTO: Once = Once::new();
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(64)
        .user_agent(concat!("fitlink/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("the HTTP client configuration is valid")
}

/// The most of a provider's answer that is read into memory. The largest real answer is a few
/// MB (a 10,000-point `list` page, a day of one-second heart rate); a provider, proxy or
/// impostor sending more must not take the worker's memory. Past it the body is not read.
pub const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Why a response body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The connection failed on the way (reset, timeout, cut off): worth another try.
    #[error("{}", error_chain(.0))]
    Transport(#[from] reqwest::Error),
    /// The body is larger than the cap: it would be again, so retrying is pointless.
    #[error("the response is larger than {0} bytes, the most fitlink reads; it was not read")]
    TooLarge(usize),
}

/// Reads a response body into memory, refusing it as soon as it passes `limit` bytes (a
/// `Content-Length` above it is refused before anything is read).
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(BodyError::TooLarge(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// [`read_capped`] as text (lossy: providers answer UTF-8 JSON, and a parser names a broken one).
pub async fn read_text_capped(
    response: reqwest::Response,
    limit: usize,
) -> Result<String, BodyError> {
    let body = read_capped(response, limit).await?;
    Ok(String::from_utf8(body)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// A provider's answer as text, at most [`MAX_RESPONSE_BYTES`]: a broken connection is
/// transient, a larger body invalid provider data (the job fails, the cursor stays, and the
/// participant's reason says why).
pub async fn provider_text(what: &str, response: reqwest::Response) -> Result<String, SyncError> {
    read_text_capped(response, MAX_RESPONSE_BYTES)
        .await
        .map_err(|error| match error {
            BodyError::Transport(e) => transport_error(what, &e),
            too_large @ BodyError::TooLarge(_) => {
                SyncError::invalid_data(format!("{what}: {too_large} (MAX_RESPONSE_BYTES)"))
            }
        })
}

/// A transport failure (connect, timeout, reset, truncated body) is always transient.
pub fn transport_error(what: &str, err: &reqwest::Error) -> SyncError {
    // reqwest errors can include the URL; our URLs never carry tokens (they go in headers).
    SyncError::transient(format!("{what}: {}", error_chain(err)))
}

/// An error and its sources on one line (`a: b: c`), for messages that must say why.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// A response body that does not parse. One that simply ends early was cut off on the way (a
/// dropped connection, a proxy) and is worth retrying; one of the wrong shape is invalid
/// provider data, which retrying will not fix.
pub fn unparsable_body(error: &serde_json::Error, reason: String) -> SyncError {
    if error.classify() == serde_json::error::Category::Eof {
        SyncError::transient(format!("{reason} (the response ended early: truncated)"))
    } else {
        SyncError::invalid_data(reason)
    }
}

/// `Retry-After` as seconds (the HTTP-date form is rare from APIs and ignored).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header_seconds(headers, RETRY_AFTER.as_str())
}

/// A header holding a whole number of seconds (`Retry-After`, `Fitbit-Rate-Limit-Reset`);
/// `None` when absent or not a number.
pub fn header_seconds(headers: &HeaderMap, name: &str) -> Option<Duration> {
    header_u64(headers, name).map(Duration::from_secs)
}

/// A header holding a non-negative integer; `None` when absent or not a number.
pub fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok()
}

/// Classifies statuses that mean the same for every provider: 429 and 5xx. Returns `None` for
/// statuses the provider must classify itself (4xx with provider-specific bodies).
pub fn common_status_error(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
) -> Option<SyncError> {
    let excerpt: String = body.chars().take(300).collect();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return Some(SyncError::RateLimited {
            reason: format!("{what}: HTTP 429 {excerpt}"),
            retry_after: retry_after(headers),
        });
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Some(SyncError::Transient {
            reason: format!("{what}: HTTP {} {excerpt}", status.as_u16()),
            retry_after: retry_after(headers),
            access_token_refused: false,
        });
    }
    None
}

/// Retries `call` a few times in place, quickly, when it fails transiently: a single 503 should
/// not cost a participant a 10-second trip through the delay queue. Anything longer goes through
/// the delay queues instead of holding a worker slot.
pub async fn with_quick_retries<T, F, Fut>(call: F) -> Result<T, SyncError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SyncError>>,
{
    with_quick_retries_when(call, SyncError::is_transient).await
}

/// [`with_quick_retries`] with the caller deciding which failures are worth an in-place retry
/// (a provider whose every request is scarce retries only what a retry can fix).
pub async fn with_quick_retries_when<T, E, F, Fut>(
    call: F,
    when: impl FnMut(&E) -> bool,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    call.retry(
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .with_max_times(2)
            .with_jitter(),
    )
    .when(when)
    .await
}

/// A JSON number, or a string that may hold one: how both providers send numbers in places
/// (Google's int64 and `"NaN"` doubles, legacy Fitbit's `"7390"`). What the text means is the
/// caller's business.
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub enum NumberOrText<'a> {
    Number(f64),
    Text(#[serde(borrow)] std::borrow::Cow<'a, str>),
}
