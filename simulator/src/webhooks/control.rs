//! Control calls of the webhooks (mounted under `/_sim/`): receiver settings and the
//! delivery log, the public keyset, the verification handshakes and manual sends.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::{
    Change, Outgoing, Receivers, fitbit_entry, fitbit_request, google_notification, google_request,
    send_once, uuid_like,
};
use crate::clock::local;
use crate::consent::url_encode;
use crate::control::{bad, ok, or_respond, parse, participant};
use crate::state::AppState;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/webhooks", get(get_webhooks).post(set_webhooks))
        .route("/webhooks/keyset.json", get(keyset))
        .route("/webhooks/verify", post(verify))
        .route("/webhooks/send", post(send))
}

/// Distinguishes an absent field (keep) from `null` (clear).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

/// `POST /_sim/webhooks`: the fields of [`crate::SimConfig`] of the same names; absent
/// fields stay, a URL set to `null` or `""` stops that provider's notifications.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SettingsBody {
    #[serde(default, deserialize_with = "present")]
    google_webhook_url: Option<Option<String>>,
    google_webhook_secret: Option<String>,
    google_signature_header: Option<String>,
    #[serde(default, deserialize_with = "present")]
    fitbit_webhook_url: Option<Option<String>>,
    fitbit_verification_code: Option<String>,
    fitbit_subscriber_id: Option<String>,
}

/// The settings without secrets, the keyset location and the delivery log.
fn settings_json(state: &AppState) -> Value {
    let rt = state.lock();
    let r = &rt.webhooks.receivers;
    json!({
        "google_webhook_url": r.google_webhook_url,
        "google_webhook_secret_set": !r.google_webhook_secret.is_empty(),
        "google_signature_header": r.google_signature_header,
        "google_key_id": state.signer.key_id(),
        "keyset_path": "/_sim/webhooks/keyset.json",
        "fitbit_webhook_url": r.fitbit_webhook_url,
        "fitbit_verification_code_set": !r.fitbit_verification_code.is_empty(),
        "fitbit_subscriber_id": r.fitbit_subscriber_id,
        "deliveries": rt.webhooks.log,
    })
}

async fn get_webhooks(State(state): State<Arc<AppState>>) -> Response {
    ok(settings_json(&state))
}

/// A receiver URL setting: `None` (or `""`) clears it; anything else must be http(s).
fn url(value: Option<String>) -> Result<Option<String>, String> {
    match value.filter(|u| !u.is_empty()) {
        Some(u) if !(u.starts_with("http://") || u.starts_with("https://")) => {
            Err(format!("{u:?} is not an http(s) URL."))
        }
        other => Ok(other),
    }
}

async fn set_webhooks(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let body: SettingsBody = or_respond!(parse(&body));
    let google_url = match body.google_webhook_url.map(url).transpose() {
        Ok(v) => v,
        Err(message) => return bad(message),
    };
    let fitbit_url = match body.fitbit_webhook_url.map(url).transpose() {
        Ok(v) => v,
        Err(message) => return bad(message),
    };
    if body
        .google_signature_header
        .as_deref()
        .is_some_and(|h| axum::http::HeaderName::from_bytes(h.as_bytes()).is_err())
    {
        return bad("google_signature_header is not a valid header name.");
    }
    {
        let mut rt = state.lock();
        let r = &mut rt.webhooks.receivers;
        if let Some(u) = google_url {
            r.google_webhook_url = u;
        }
        if let Some(u) = fitbit_url {
            r.fitbit_webhook_url = u;
        }
        let set = |slot: &mut String, value: Option<String>| {
            if let Some(v) = value {
                *slot = v;
            }
        };
        set(&mut r.google_webhook_secret, body.google_webhook_secret);
        set(&mut r.google_signature_header, body.google_signature_header);
        set(
            &mut r.fitbit_verification_code,
            body.fitbit_verification_code,
        );
        set(&mut r.fitbit_subscriber_id, body.fitbit_subscriber_id);
    }
    ok(settings_json(&state))
}

/// `GET /_sim/webhooks/keyset.json`: the public keyset (Tink JSON) the Google
/// notifications are signed with.
async fn keyset(State(state): State<Arc<AppState>>) -> Response {
    ok(state.signer.keyset())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct VerifyBody {
    provider: Option<String>,
}

fn receivers(state: &AppState) -> Receivers {
    state.lock().webhooks.receivers.clone()
}

/// `POST /_sim/webhooks/verify {"provider": "google-health"|"fitbit"}`: runs the
/// provider's verification handshake against the configured receiver.
async fn verify(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let body: VerifyBody = or_respond!(parse(&body));
    let receivers = receivers(&state);
    match body.provider.as_deref() {
        Some("google-health") => {
            let Some(url) = receivers.google_webhook_url.as_deref() else {
                return bad("No google_webhook_url is configured.");
            };
            let body = json!({"type": "verification"}).to_string().into_bytes();
            let with_secret = google_request(
                &state,
                &receivers,
                url,
                "google-verification",
                None,
                body,
                false,
            );
            let mut without_secret = with_secret.clone();
            without_secret
                .headers
                .retain(|(name, _)| name != "authorization");
            let first = send_once(&state, &with_secret).await;
            let second = send_once(&state, &without_secret).await;
            ok(json!({
                "with_secret_status": first,
                "without_secret_status": second,
                "verified": matches!(first, 200 | 201) && matches!(second, 401 | 403),
            }))
        }
        Some("fitbit") => {
            let Some(url) = receivers.fitbit_webhook_url.as_deref() else {
                return bad("No fitbit_webhook_url is configured.");
            };
            let get = |code: &str| Outgoing {
                kind: "fitbit-verification",
                participant: None,
                method: reqwest::Method::GET,
                url: format!(
                    "{url}{}verify={}",
                    if url.contains('?') { '&' } else { '?' },
                    url_encode(code)
                ),
                headers: Vec::new(),
                body: None,
            };
            let correct = send_once(&state, &get(&receivers.fitbit_verification_code)).await;
            let wrong_code = format!("wrong-{}", receivers.fitbit_verification_code);
            let wrong = send_once(&state, &get(&wrong_code)).await;
            ok(json!({
                "correct_code_status": correct,
                "wrong_code_status": wrong,
                "verified": correct == 204 && wrong == 404,
            }))
        }
        _ => bad("provider must be \"google-health\" or \"fitbit\"."),
    }
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// `POST /_sim/webhooks/send`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    participant: String,
    provider: String,
    /// Google: `UPSERT` (default) or `DELETE`.
    operation: Option<String>,
    /// Google: a data type id (default `steps`).
    data_type: Option<String>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    /// Fitbit: `activities` (default), `userRevokedAccess`, …
    collection_type: Option<String>,
    /// Fitbit: the local date (default: today at the synthetic clock).
    date: Option<NaiveDate>,
    #[serde(default = "one")]
    copies: u32,
    /// Google: one POST whose body is an array of the copies.
    #[serde(default)]
    batched: bool,
    #[serde(default)]
    bad_signature: bool,
    /// Google: every copy has the same `clientProvidedSubscriptionName` (identical bytes).
    #[serde(default = "yes")]
    same_body: bool,
}

/// Sends notifications now, without retries, and answers the receiver's statuses (0 when
/// it did not answer).
async fn send(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let body: SendBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => return bad(format!("Invalid JSON body: {e}")),
    };
    let index = or_respond!(participant(&state, &body.participant));
    if !(1..=100).contains(&body.copies) {
        return bad("copies must be within 1..=100.");
    }
    let receivers = receivers(&state);
    let (now, latest) = {
        let rt = state.lock();
        let now = state.config.until
            + chrono::Duration::minutes(i64::try_from(rt.advance_minutes).unwrap_or(0));
        (now, state.latest_sync(index, rt.advance_minutes))
    };
    let requests: Vec<Outgoing> = match body.provider.as_str() {
        "google-health" => {
            let Some(url) = receivers.google_webhook_url.as_deref() else {
                return bad("No google_webhook_url is configured.");
            };
            let operation = match body.operation.as_deref().unwrap_or("UPSERT") {
                "UPSERT" => "UPSERT",
                "DELETE" => "DELETE",
                other => {
                    return bad(format!(
                        "operation must be UPSERT or DELETE, not {other:?}."
                    ));
                }
            };
            let data_type = body.data_type.as_deref().unwrap_or("steps");
            let Some(dt) = crate::catalog::lookup(data_type) else {
                return bad(format!("Unknown data type {data_type:?}."));
            };
            let end = body.end.unwrap_or(latest);
            let start = body.start.unwrap_or(end - chrono::Duration::hours(1));
            if start >= end {
                return bad("start must be before end.");
            }
            let change = Change {
                participant: index,
                operation,
                data_type: dt.kebab,
                start,
                end,
            };
            let shared_name = uuid_like();
            let notifications: Vec<Value> = (0..body.copies)
                .map(|_| {
                    let name = if body.same_body {
                        shared_name.clone()
                    } else {
                        uuid_like()
                    };
                    google_notification(&state, &change, &name)
                })
                .collect();
            let bodies: Vec<Vec<u8>> = if body.batched {
                vec![Value::Array(notifications).to_string().into_bytes()]
            } else {
                notifications
                    .iter()
                    .map(|n| n.to_string().into_bytes())
                    .collect()
            };
            let kind = if operation == "DELETE" {
                "google-delete"
            } else {
                "google-upsert"
            };
            bodies
                .into_iter()
                .map(|b| {
                    google_request(
                        &state,
                        &receivers,
                        url,
                        kind,
                        Some(body.participant.clone()),
                        b,
                        body.bad_signature,
                    )
                })
                .collect()
        }
        "fitbit" => {
            let Some(url) = receivers.fitbit_webhook_url.as_deref() else {
                return bad("No fitbit_webhook_url is configured.");
            };
            let collection = body.collection_type.as_deref().unwrap_or("activities");
            let kind = match collection {
                "activities" => "fitbit-activities",
                "userRevokedAccess" => "fitbit-userRevokedAccess",
                "body" | "foods" | "sleep" => "fitbit-other",
                other => return bad(format!("Unknown collection_type {other:?}.")),
            };
            let date = body
                .date
                .unwrap_or_else(|| local(state.profiles[index].tz, now).date());
            let entry = fitbit_entry(&state, index, collection, &date.to_string());
            (0..body.copies)
                .map(|_| {
                    fitbit_request(
                        &state,
                        url,
                        kind,
                        index,
                        &json!([entry]),
                        body.bad_signature,
                    )
                })
                .collect()
        }
        other => {
            return bad(format!(
                "provider must be \"google-health\" or \"fitbit\", not {other:?}."
            ));
        }
    };
    let mut statuses = Vec::with_capacity(requests.len());
    for request in &requests {
        statuses.push(send_once(&state, request).await);
    }
    ok(json!({ "statuses": statuses })).into_response()
}
