//! Provider webhooks: Google Health subscriber notifications and legacy Fitbit subscriptions.
//!
//! Every request is checked before anything else happens: size, then the provider's proof that
//! it sent it (Google: the configured `Authorization` secret when present and an ECDSA P-256
//! signature over the raw body; Fitbit: an HMAC-SHA1 signature keyed with the client secret),
//! then the shape. A request that fails any check is refused and counted
//! (`fitlink_webhook_requests_total{provider,outcome}`) and creates no work.
//!
//! Accepted notifications are answered at once (204): an `UPSERT` or a Fitbit collection notice
//! becomes a hint for the [`Coalescer`](super::coalesce::Coalescer); a Google `DELETE` or a Fitbit
//! `userRevokedAccess` is published to the writer (confirmed) before the answer, because no
//! schedule would catch them if they were lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fitlink_shared::config::FitbitArgs;
use fitlink_shared::domain::{ParticipantId, Provider};
use fitlink_shared::faults::FaultPoint;
use fitlink_shared::fetch;
use fitlink_shared::linkage::webhook::SignatureError;
use fitlink_shared::linkage::webhook::fitbit::{self as fitbit_hooks, Collection};
use fitlink_shared::linkage::webhook::google::{self as google_hooks, Operation, PublicKeyset};
use fitlink_shared::messages::{ConsentLoss, ProviderDeletion, WriterCommand, now_instant};
use fitlink_shared::provider::read_text_capped;
use fitlink_shared::secret::Secret;
use tokio::sync::RwLock;

use super::coalesce::Hint;
use super::{Portal, PortalArgs};

/// Refetch Google's keyset at most this often when a signature names an unknown key (keys
/// rotate; a flood of bad key ids must not become a flood of fetches).
const KEYSET_REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(60);
/// And at least this often, so a retired key stops being trusted.
const KEYSET_MAX_AGE: Duration = Duration::from_secs(3600);
/// A keyset fetch that takes longer fails (the last keyset stays in use), so a slow key host
/// cannot hold webhook requests behind the keyset lock.
const KEYSET_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// A keyset is a few hundred bytes; a larger answer is refused unread.
const KEYSET_MAX_BYTES: usize = 64 * 1024;

/// What the webhook checks need.
pub(crate) struct WebhookSettings {
    google_secret: Secret<String>,
    keyset_source: String,
    keyset: RwLock<Option<(PublicKeyset, Instant)>>,
    fitbit_verification_code: Secret<String>,
    fitbit_client_secret: Secret<String>,
    max_body_bytes: usize,
}

impl WebhookSettings {
    pub(crate) async fn load(args: &PortalArgs, fitbit: &FitbitArgs) -> Self {
        let settings = Self {
            google_secret: args.google_webhook_secret.clone(),
            keyset_source: args.google_webhook_keyset.clone(),
            keyset: RwLock::new(None),
            fitbit_verification_code: args.fitbit_verification_code.clone(),
            fitbit_client_secret: fitbit.client_secret.clone(),
            max_body_bytes: args.webhook_max_body_bytes,
        };
        if !settings.google_secret.expose().is_empty() {
            // Loaded now so a wrong source shows at start; loaded again on demand otherwise.
            settings.keyset(false).await;
        }
        settings
    }

    /// Google's public keyset, fetched if missing, stale, or (`refresh`) when a signature named
    /// a key it does not have.
    async fn keyset(&self, refresh: bool) -> Option<PublicKeyset> {
        {
            let current = self.keyset.read().await;
            if let Some((keyset, fetched)) = current.as_ref() {
                let age = fetched.elapsed();
                let fresh = age < KEYSET_MAX_AGE;
                if fresh && (!refresh || age < KEYSET_REFETCH_MIN_INTERVAL) {
                    return Some(keyset.clone());
                }
            }
        }
        let mut current = self.keyset.write().await;
        match load_keyset(&self.keyset_source).await {
            Ok(keyset) => {
                tracing::info!(source = %self.keyset_source, "loaded Google's webhook signing keys");
                *current = Some((keyset.clone(), Instant::now()));
                Some(keyset)
            }
            Err(error) => {
                tracing::error!(source = %self.keyset_source, error = format!("{error:#}"), "cannot load Google's webhook signing keys; signed notifications are refused until they load");
                current.as_ref().map(|(keyset, _)| keyset.clone())
            }
        }
    }
}

async fn load_keyset(source: &str) -> anyhow::Result<PublicKeyset> {
    let text = if source.starts_with("https://") || source.starts_with("http://") {
        let response = fitlink_shared::provider::http_client()
            .get(source)
            .timeout(KEYSET_FETCH_TIMEOUT)
            .send()
            .await?
            .error_for_status()?;
        read_text_capped(response, KEYSET_MAX_BYTES).await?
    } else {
        tokio::fs::read_to_string(source).await?
    };
    Ok(PublicKeyset::from_tink_json(&text)?)
}

pub(super) fn routes() -> Router<Arc<Portal>> {
    Router::new()
        .route("/webhooks/google", post(google))
        .route("/webhooks/fitbit", get(fitbit_verify).post(fitbit))
}

/// Counts a webhook request by how it ended.
fn count(provider: Provider, outcome: &'static str) {
    metrics::counter!("fitlink_webhook_requests_total", "provider" => provider.as_str(), "outcome" => outcome)
        .increment(1);
}

/// Refuses a webhook request: counted, logged, nothing else.
fn refuse(provider: Provider, outcome: &'static str, status: StatusCode, detail: &str) -> Response {
    count(provider, outcome);
    tracing::warn!(
        provider = provider.as_str(),
        outcome,
        detail,
        "refused a webhook request"
    );
    (status, detail.to_owned()).into_response()
}

/// The coalescer's queue is full ([`HINT_QUEUE`](super::coalesce::HINT_QUEUE)): 503 with a
/// `Retry-After`, so the provider delivers the notification again; what this request already
/// queued is merged again by digest.
fn busy(provider: Provider) -> Response {
    let mut response = refuse(
        provider,
        "busy",
        StatusCode::SERVICE_UNAVAILABLE,
        "too many notifications are waiting; deliver this one again later",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
    response
}

/// Equal secrets, compared in time that does not depend on where they differ.
fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    presented.len() == expected.len()
        && presented
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn read_body(
    portal: &Portal,
    provider: Provider,
    body: Body,
) -> Result<axum::body::Bytes, Response> {
    axum::body::to_bytes(body, portal.webhooks.max_body_bytes)
        .await
        .map_err(|_| {
            refuse(
                provider,
                "oversized",
                StatusCode::PAYLOAD_TOO_LARGE,
                "the notification is larger than FITLINK_WEBHOOK_MAX_BODY_BYTES",
            )
        })
}

/// `POST /webhooks/google`: the verification handshake and notifications.
async fn google(State(portal): State<Arc<Portal>>, headers: HeaderMap, body: Body) -> Response {
    const P: Provider = Provider::GoogleHealth;
    let body = match read_body(&portal, P, body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let settings = &portal.webhooks;
    let secret = settings.google_secret.expose().as_bytes();
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());

    if google_hooks::is_verification(&body) {
        // Google checks both ways: with the secret we must accept, without it we must refuse.
        return match authorization {
            Some(presented) if !secret.is_empty() && same_secret(presented, secret) => {
                count(P, "verified");
                tracing::info!("answered Google's webhook verification");
                StatusCode::CREATED.into_response()
            }
            _ => refuse(
                P,
                "verification_refused",
                StatusCode::UNAUTHORIZED,
                "verification without the configured secret",
            ),
        };
    }
    if secret.is_empty() {
        return refuse(
            P,
            "not_configured",
            StatusCode::SERVICE_UNAVAILABLE,
            "FITLINK_GOOGLE_WEBHOOK_SECRET is not set",
        );
    }
    // Google sends the secret on notifications too (reportedly not always): when present it must match.
    if let Some(presented) = authorization
        && !same_secret(presented, secret)
    {
        return refuse(
            P,
            "unauthorized",
            StatusCode::UNAUTHORIZED,
            "wrong Authorization secret",
        );
    }
    let Some(signature) = google_hooks::SIGNATURE_HEADERS
        .iter()
        .find_map(|name| headers.get(*name))
        .and_then(|v| v.to_str().ok())
    else {
        return refuse(
            P,
            "unsigned",
            StatusCode::UNAUTHORIZED,
            "no signature header",
        );
    };
    let Some(keyset) = settings.keyset(false).await else {
        return refuse(
            P,
            "keyset_unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            "Google's signing keys are not loaded",
        );
    };
    let verified = match keyset.verify(signature, &body) {
        Err(SignatureError::UnknownKey(_)) => match settings.keyset(true).await {
            Some(fresh) => fresh.verify(signature, &body),
            None => Err(SignatureError::Invalid),
        },
        other => other,
    };
    if let Err(error) = verified {
        return refuse(
            P,
            "bad_signature",
            StatusCode::UNAUTHORIZED,
            &format!("signature refused: {error}"),
        );
    }
    let notifications = match google_hooks::parse_notifications(&body) {
        Ok(n) => n,
        Err(error) => {
            return refuse(P, "malformed", StatusCode::BAD_REQUEST, &error.to_string());
        }
    };

    let received_at = now_instant();
    for n in notifications {
        let participant = match portal.participant_by(P, &n.health_user_id).await {
            Ok(Some(participant)) => participant,
            Ok(None) => {
                count(P, "unknown_user");
                tracing::info!(
                    "a Google notification names a user no participant is linked to; ignored"
                );
                continue;
            }
            Err(response) => return response,
        };
        match n.operation {
            Operation::Upsert => {
                let queued = portal.coalescer.add(Hint {
                    participant_id: participant,
                    provider: P,
                    notification_id: n.digest,
                    data_type: n.data_type,
                    intervals: n.intervals,
                    received_at,
                });
                if queued.is_err() {
                    return busy(P);
                }
            }
            Operation::Delete => {
                let command = WriterCommand::DeleteProviderData(ProviderDeletion {
                    notification_id: n.digest,
                    participant_id: participant.clone(),
                    provider: P,
                    data_type: n.data_type,
                    intervals: n.intervals,
                    received_at,
                });
                if let Err(error) = portal.outbox.send(&command).await {
                    tracing::error!(participant_id = %participant, error = %error, "cannot hand a deletion to the writer; Google will redeliver it");
                    count(P, "not_published");
                    return StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
            }
        }
    }
    // Handed on, not yet answered: the provider will deliver these again.
    FaultPoint::WebhookBefore204.strike();
    count(P, "accepted");
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /webhooks/fitbit?verify=CODE`: 204 for the right code, 404 for any other.
async fn fitbit_verify(
    State(portal): State<Arc<Portal>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> StatusCode {
    let expected = portal.webhooks.fitbit_verification_code.expose().as_bytes();
    match query.get("verify") {
        Some(code) if !expected.is_empty() && same_secret(code.as_bytes(), expected) => {
            count(Provider::Fitbit, "verified");
            StatusCode::NO_CONTENT
        }
        _ => {
            count(Provider::Fitbit, "verification_refused");
            StatusCode::NOT_FOUND
        }
    }
}

/// `POST /webhooks/fitbit`: the notification array. Fitbit's convention for a bad signature is
/// 404.
async fn fitbit(State(portal): State<Arc<Portal>>, headers: HeaderMap, body: Body) -> Response {
    const P: Provider = Provider::Fitbit;
    let body = match read_body(&portal, P, body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let settings = &portal.webhooks;
    if settings.fitbit_client_secret.expose().is_empty() {
        return refuse(
            P,
            "not_configured",
            StatusCode::SERVICE_UNAVAILABLE,
            "FITLINK_FITBIT_CLIENT_SECRET is not set",
        );
    }
    let Some(signature) = headers
        .get(fitbit_hooks::SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
    else {
        return refuse(
            P,
            "unsigned",
            StatusCode::NOT_FOUND,
            "no X-Fitbit-Signature",
        );
    };
    if let Err(error) =
        fitbit_hooks::verify_signature(&settings.fitbit_client_secret, signature, &body)
    {
        return refuse(
            P,
            "bad_signature",
            StatusCode::NOT_FOUND,
            &format!("signature refused: {error}"),
        );
    }
    let notifications = match fitbit_hooks::parse_notifications(&body) {
        Ok(n) => n,
        Err(error) => return refuse(P, "malformed", StatusCode::BAD_REQUEST, &error.to_string()),
    };
    let received_at = now_instant();
    for n in notifications {
        let participant = match portal.participant_by(P, &n.owner_id).await {
            Ok(Some(participant)) => participant,
            Ok(None) => {
                count(P, "unknown_user");
                continue;
            }
            Err(response) => return response,
        };
        if n.collection == Collection::UserRevokedAccess {
            let command = WriterCommand::ConsentLost(ConsentLoss {
                participant_id: participant.clone(),
                provider: P,
                reason: "the participant revoked access in their Fitbit account settings (userRevokedAccess notification)".into(),
                at: received_at,
            });
            if let Err(error) = portal.outbox.send(&command).await {
                tracing::error!(participant_id = %participant, error = %error, "cannot record a revocation; Fitbit will redeliver it");
                count(P, "not_published");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
            continue;
        }
        // A Fitbit notice says only "this collection changed on this date": sync from the cursor.
        // Its digest is the same for every change of that collection that day, so the minute of
        // receipt joins it: redeliveries within a minute are one notification, a later change
        // is a new one.
        let notification_id = format!("{}@{}", n.digest, &received_at.to_text()[..16]);
        let queued = portal.coalescer.add(Hint {
            participant_id: participant,
            provider: P,
            notification_id,
            data_type: n.collection.as_str().to_owned(),
            intervals: Vec::new(),
            received_at,
        });
        if queued.is_err() {
            return busy(P);
        }
    }
    // Handed on, not yet answered: the provider will deliver these again.
    FaultPoint::WebhookBefore204.strike();
    count(P, "accepted");
    StatusCode::NO_CONTENT.into_response()
}

impl Portal {
    /// The participant linked to a provider's own user id: Google's `healthUserId` or the legacy
    /// Fitbit `ownerId`.
    async fn participant_by(
        &self,
        provider: Provider,
        provider_user_id: &str,
    ) -> Result<Option<ParticipantId>, Response> {
        let sql = match provider {
            Provider::GoogleHealth => {
                "SELECT participant_id FROM participants WHERE health_user_id = $1 ORDER BY participant_id LIMIT 1"
            }
            Provider::Fitbit => {
                "SELECT participant_id FROM participants WHERE fitbit_user_id = $1 ORDER BY participant_id LIMIT 1"
            }
        };
        let db = match self.database.get().await {
            Ok(Some(db)) => db,
            Ok(None) => return Ok(None),
            Err(error) => {
                tracing::error!(error = %error, "webhooks cannot read the database");
                return Err(StatusCode::SERVICE_UNAVAILABLE.into_response());
            }
        };
        let row: Option<(String,)> = fetch!(
            db.exec(),
            sqlx::query_as(sql).bind(provider_user_id),
            optional
        )
        .map_err(|error| {
            tracing::error!(error = %error, "webhooks cannot read participants");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        })?;
        Ok(row.and_then(|(id,)| ParticipantId::new(id).ok()))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    /// Google's key host on 127.0.0.1:0, answering every request with `answer()`.
    async fn key_host(answer: fn() -> Response) -> String {
        let app = Router::new().fallback(move || async move { answer() });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let source = format!("http://{}/keyset.json", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        source
    }

    /// A keyset that never ends: spaces, 16 KiB at a time.
    fn endless() -> Response {
        let chunk = axum::body::Bytes::from(vec![b' '; 16 * 1024]);
        let chunks = stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
        Response::new(Body::from_stream(chunks))
    }

    /// Headers, then nothing.
    fn silent() -> Response {
        Response::new(Body::from_stream(stream::pending::<
            Result<axum::body::Bytes, std::io::Error>,
        >()))
    }

    /// An endless keyset is refused at `KEYSET_MAX_BYTES`, and the keyset loaded before stays in
    /// use: the notifications its keys signed are still accepted.
    #[tokio::test]
    async fn an_endless_keyset_is_refused_at_its_cap_and_the_last_keyset_stays_in_use() {
        let source = key_host(endless).await;
        let error = format!("{:#}", load_keyset(&source).await.unwrap_err());
        assert!(error.contains(&KEYSET_MAX_BYTES.to_string()), "{error}");

        let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).unwrap();
        let known = PublicKeyset::from_tink_json(&PublicKeyset::tink_json_for(
            &[(7, *key.verifying_key())],
            7,
        ))
        .unwrap();
        let settings = WebhookSettings {
            google_secret: Secret::new(String::new()),
            keyset_source: source,
            keyset: RwLock::new(Some((
                known,
                // Old enough that a signature naming an unknown key refetches.
                Instant::now() - 2 * KEYSET_REFETCH_MIN_INTERVAL,
            ))),
            fitbit_verification_code: Secret::new(String::new()),
            fitbit_client_secret: Secret::new(String::new()),
            max_body_bytes: 1024,
        };
        let kept = settings.keyset(true).await.expect("the last keyset");
        assert_eq!(kept.key_ids(), vec![7]);
        let body = br#"{"data":"signed"}"#;
        let signature = google_hooks::sign_notification(&key, 7, body);
        kept.verify(&signature, body).unwrap();
    }

    /// A key host that sends headers and then nothing fails the fetch within
    /// `KEYSET_FETCH_TIMEOUT` (virtual time), so webhook requests are not held behind it.
    #[tokio::test(start_paused = true)]
    async fn a_key_host_that_never_answers_fails_the_fetch_within_its_timeout() {
        let source = key_host(silent).await;
        let started = tokio::time::Instant::now();
        let outcome = tokio::time::timeout(10 * KEYSET_FETCH_TIMEOUT, load_keyset(&source))
            .await
            .expect("the fetch gave up on its own (KEYSET_FETCH_TIMEOUT)");
        assert!(outcome.is_err());
        assert!(started.elapsed() <= KEYSET_FETCH_TIMEOUT + Duration::from_secs(1));
    }
}
