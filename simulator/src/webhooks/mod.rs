//! Webhook notifications the simulator sends as the providers do: Google Health
//! subscriber notifications (signed with the simulator's P-256 key, `Authorization`
//! carrying the configured secret) and legacy Fitbit subscription notifications
//! (HMAC-SHA1 signed), plus both verification handshakes.
//!
//! Automatic notifications follow the synthetic devices: when the clock advances
//! (`POST /_sim/advance` or the `--device-sync-every-secs` ticker) every live grant gets a
//! Google `UPSERT` per data type for the newly synced interval and a Fitbit `activities`
//! notice per local date it touched; a provider-side deletion sends a Google `DELETE`; a
//! Fitbit revocation sends `userRevokedAccess`. They are delivered by spawned tasks with up
//! to three retries. Manual sends (`POST /_sim/webhooks/send`) wait for the receiver and
//! do not retry, so a test sees the statuses. Every attempt lands in the delivery log
//! (`GET /_sim/webhooks`) and the statistics.

mod control;
mod signing;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::catalog;
use crate::clock::{local, rfc3339};
use crate::config::{IntradayType, SimConfig};
use crate::state::AppState;
use crate::wire::CivilDateTime;

pub(crate) use control::routes;
pub(crate) use signing::Signer;

/// Attempts of an automatic delivery: the first plus three retries.
const MAX_ATTEMPTS: u32 = 4;
/// Backoff before the first retry, doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// How long a receiver may take (Fitbit disables subscribers slower than 5 s).
const RECEIVER_TIMEOUT: Duration = Duration::from_secs(5);
/// Entries kept in the delivery log.
const LOG_CAPACITY: usize = 1000;
/// `User-Agent` of Google notifications and of its verification requests.
const GOOGLE_USER_AGENT: &str = "Google-Health-API-Webhooks";
const GOOGLE_VERIFIER_USER_AGENT: &str = "Google-Health-API-Webhooks-Verifier";
/// The data types automatic Google notifications cover.
const NOTIFIED_TYPES: [IntradayType; 2] = [IntradayType::Steps, IntradayType::HeartRate];

/// The HTTP client of the deliveries. The workspace builds reqwest without a TLS crypto
/// provider; receivers are plain http on loopback, but reqwest needs one installed anyway.
pub(crate) fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(RECEIVER_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Where notifications go (the subscriber configuration of each provider).
#[derive(Clone, Debug)]
pub(crate) struct Receivers {
    pub google_webhook_url: Option<String>,
    pub google_webhook_secret: String,
    pub google_signature_header: String,
    pub fitbit_webhook_url: Option<String>,
    pub fitbit_verification_code: String,
    pub fitbit_subscriber_id: String,
}

/// One delivery attempt, as `GET /_sim/webhooks` lists it.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct DeliveryRecord {
    /// Real time of the attempt.
    pub at: String,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
    pub url: String,
    pub attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Webhook runtime state.
pub(crate) struct Webhooks {
    pub receivers: Receivers,
    pub log: VecDeque<DeliveryRecord>,
}

impl Webhooks {
    pub(crate) fn from_config(config: &SimConfig) -> Self {
        Webhooks {
            receivers: Receivers {
                google_webhook_url: config.google_webhook_url.clone(),
                google_webhook_secret: config.google_webhook_secret.clone(),
                google_signature_header: config.google_signature_header.clone(),
                fitbit_webhook_url: config.fitbit_webhook_url.clone(),
                fitbit_verification_code: config.fitbit_verification_code.clone(),
                fitbit_subscriber_id: config.fitbit_subscriber_id.clone(),
            },
            log: VecDeque::new(),
        }
    }
}

/// One HTTP request to a receiver.
#[derive(Clone, Debug)]
pub(crate) struct Outgoing {
    pub kind: &'static str,
    pub participant: Option<String>,
    pub method: reqwest::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// Sends one attempt and records it: the status, or why there was none.
async fn attempt(state: &AppState, outgoing: &Outgoing, attempt: u32) -> Result<u16, String> {
    let mut request = state.http.request(outgoing.method.clone(), &outgoing.url);
    for (name, value) in &outgoing.headers {
        request = request.header(name, value);
    }
    if let Some(body) = &outgoing.body {
        request = request
            .header("content-type", "application/json")
            .body(body.clone());
    }
    let result = request
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.without_url().to_string());
    let ok = matches!(result, Ok(200..=299));
    let record = DeliveryRecord {
        at: rfc3339(Utc::now()),
        kind: outgoing.kind,
        participant: outgoing.participant.clone(),
        url: outgoing.url.clone(),
        attempt,
        status: result.as_ref().ok().copied(),
        error: result.as_ref().err().cloned(),
    };
    tracing::debug!(kind = outgoing.kind, url = %outgoing.url, attempt, status = ?record.status, "webhook delivery attempt");
    let mut rt = state.lock();
    if ok {
        rt.stats.webhook_deliveries += 1;
    } else {
        rt.stats.webhook_failures += 1;
    }
    if rt.webhooks.log.len() == LOG_CAPACITY {
        rt.webhooks.log.pop_front();
    }
    rt.webhooks.log.push_back(record);
    result
}

/// One attempt, no retries (manual sends and handshakes): the status, or 0 when the
/// receiver did not answer.
pub(crate) async fn send_once(state: &AppState, outgoing: &Outgoing) -> u16 {
    attempt(state, outgoing, 1).await.unwrap_or(0)
}

/// Delivers in the background, retrying non-2xx answers and errors with backoff.
pub(crate) fn spawn_delivery(state: &Arc<AppState>, outgoing: Outgoing) {
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        for n in 1..=MAX_ATTEMPTS {
            if matches!(attempt(&state, &outgoing, n).await, Ok(200..=299)) {
                return;
            }
            if n < MAX_ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        tracing::warn!(kind = outgoing.kind, url = %outgoing.url, "webhook delivery given up");
    });
}

/// A random UUID-shaped name (what Google puts in `clientProvidedSubscriptionName` for
/// automatic subscriptions).
fn uuid_like() -> String {
    let hex = format!("{:032x}", rand::random::<u128>());
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// What a Google notification says changed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Change {
    pub participant: usize,
    pub operation: &'static str,
    pub data_type: &'static str,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The `{"data": …}` object of a Google notification (§6.4 of the reference).
pub(crate) fn google_notification(state: &AppState, change: &Change, name: &str) -> Value {
    let profile = &state.profiles[change.participant];
    let (start, end) = (
        local(profile.tz, change.start),
        local(profile.tz, change.end),
    );
    let iso = |t: chrono::NaiveDateTime| t.format("%Y-%m-%dT%H:%M:%S").to_string();
    json!({
        "data": {
            "version": "1",
            "clientProvidedSubscriptionName": name,
            "healthUserId": profile.health_user_id,
            "operation": change.operation,
            "dataType": change.data_type,
            "intervals": [{
                "physicalTimeInterval": {
                    "startTime": rfc3339(change.start),
                    "endTime": rfc3339(change.end),
                },
                "civilDateTimeInterval": {
                    "startDateTime": CivilDateTime::from(start),
                    "endDateTime": CivilDateTime::from(end),
                },
                "civilIso8601TimeInterval": {"startTime": iso(start), "endTime": iso(end)},
            }],
        }
    })
}

/// A signed Google request carrying `body` (the secret as `Authorization` when `with_secret`).
fn google_request(
    state: &AppState,
    receivers: &Receivers,
    url: &str,
    kind: &'static str,
    participant: Option<String>,
    body: Vec<u8>,
    forged: bool,
) -> Outgoing {
    let signature = if forged {
        state.signer.sign_forged(&body)
    } else {
        state.signer.sign(&body)
    };
    let user_agent = if kind == "google-verification" {
        GOOGLE_VERIFIER_USER_AGENT
    } else {
        GOOGLE_USER_AGENT
    };
    Outgoing {
        kind,
        participant,
        method: reqwest::Method::POST,
        url: url.to_owned(),
        headers: vec![
            ("user-agent".to_owned(), user_agent.to_owned()),
            (
                "authorization".to_owned(),
                receivers.google_webhook_secret.clone(),
            ),
            (receivers.google_signature_header.clone(), signature),
        ],
        body: Some(body),
    }
}

/// The Google notification request for `change`, if a Google receiver is configured.
pub(crate) fn google_outgoing(
    state: &AppState,
    receivers: &Receivers,
    change: &Change,
) -> Option<Outgoing> {
    let url = receivers.google_webhook_url.as_deref()?;
    let body = google_notification(state, change, &uuid_like()).to_string();
    let kind = if change.operation == "DELETE" {
        "google-delete"
    } else {
        "google-upsert"
    };
    Some(google_request(
        state,
        receivers,
        url,
        kind,
        Some(state.profiles[change.participant].id.clone()),
        body.into_bytes(),
        false,
    ))
}

/// One Fitbit notification entry.
pub(crate) fn fitbit_entry(
    state: &AppState,
    participant: usize,
    collection: &str,
    date: &str,
) -> Value {
    let profile = &state.profiles[participant];
    json!({
        "collectionType": collection,
        "date": date,
        "ownerId": profile.encoded_id,
        "ownerType": "user",
        "subscriptionId": profile.id,
    })
}

/// A Fitbit notification POST of `entries` (an array), signed unless `forged`.
fn fitbit_request(
    state: &AppState,
    url: &str,
    kind: &'static str,
    participant: usize,
    entries: &Value,
    forged: bool,
) -> Outgoing {
    let body = entries.to_string().into_bytes();
    let secret = if forged {
        format!("not-{}", state.config.client_secret)
    } else {
        state.config.client_secret.clone()
    };
    Outgoing {
        kind,
        participant: Some(state.profiles[participant].id.clone()),
        method: reqwest::Method::POST,
        url: url.to_owned(),
        headers: vec![(
            "x-fitbit-signature".to_owned(),
            signing::fitbit_signature(&secret, &body),
        )],
        body: Some(body),
    }
}

/// Moves the synthetic clock by `minutes` and notifies the newly synced data of every live
/// grant. Returns the total advance.
pub(crate) fn advance(state: &Arc<AppState>, minutes: u64) -> u64 {
    let mut outgoing = Vec::new();
    let total = {
        let mut rt = state.lock();
        let before = rt.advance_minutes;
        rt.advance_minutes += minutes;
        let after = rt.advance_minutes;
        let receivers = rt.webhooks.receivers.clone();
        for (i, profile) in state.profiles.iter().enumerate() {
            let (old, new) = (state.latest_sync(i, before), state.latest_sync(i, after));
            if new <= old {
                continue;
            }
            if !rt.revoked[i] {
                for data_type in NOTIFIED_TYPES {
                    let readable = catalog::lookup(data_type.kebab())
                        .is_some_and(|t| t.bundle.readable_with(&rt.scopes[i]));
                    let change = Change {
                        participant: i,
                        operation: "UPSERT",
                        data_type: data_type.kebab(),
                        start: old,
                        end: new,
                    };
                    if readable {
                        outgoing.extend(google_outgoing(state, &receivers, &change));
                    }
                }
            }
            if let Some(url) = receivers.fitbit_webhook_url.as_deref()
                && !rt.legacy.revoked[i]
                && !rt.legacy.turned_off
            {
                for date in local_dates(profile.tz, old, new) {
                    let entry = fitbit_entry(state, i, "activities", &date.to_string());
                    outgoing.push(fitbit_request(
                        state,
                        url,
                        "fitbit-activities",
                        i,
                        &json!([entry]),
                        false,
                    ));
                }
            }
        }
        after
    };
    for o in outgoing {
        spawn_delivery(state, o);
    }
    total
}

/// Local dates touched by `[start, end)` in `tz`.
fn local_dates(tz: chrono_tz::Tz, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<NaiveDate> {
    let first = local(tz, start).date();
    let last = local(tz, end - chrono::Duration::seconds(1)).date();
    first.iter_days().take_while(|d| *d <= last).collect()
}

/// Sends a Fitbit `userRevokedAccess` notice for a participant whose grant was just revoked.
pub(crate) fn notify_revoked(state: &Arc<AppState>, participant: usize) {
    let (url, now) = {
        let rt = state.lock();
        if rt.legacy.turned_off {
            return;
        }
        let now = state.config.until
            + chrono::Duration::minutes(i64::try_from(rt.advance_minutes).unwrap_or(0));
        (rt.webhooks.receivers.fitbit_webhook_url.clone(), now)
    };
    let Some(url) = url else { return };
    let date = local(state.profiles[participant].tz, now)
        .date()
        .to_string();
    let entry = fitbit_entry(state, participant, "userRevokedAccess", &date);
    spawn_delivery(
        state,
        fitbit_request(
            state,
            &url,
            "fitbit-userRevokedAccess",
            participant,
            &json!([entry]),
            false,
        ),
    );
}

/// Sends a Google `DELETE` notification for deleted points.
pub(crate) fn notify_deleted(state: &Arc<AppState>, change: &Change) -> bool {
    let outgoing = {
        let rt = state.lock();
        if rt.revoked[change.participant] {
            return false;
        }
        google_outgoing(state, &rt.webhooks.receivers, change)
    };
    match outgoing {
        Some(o) => {
            spawn_delivery(state, o);
            true
        }
        None => false,
    }
}

/// Advances the clock every `every_secs` real seconds by whole minutes (at least one), as
/// devices that sync on their own would. Runs until the returned task is aborted.
pub(crate) fn spawn_device_sync(
    state: &Arc<AppState>,
    every_secs: u64,
) -> tokio::task::JoinHandle<()> {
    let state = Arc::clone(state);
    let minutes = (every_secs / 60).max(1);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(every_secs));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let total = advance(&state, minutes);
            tracing::debug!(advance_minutes = total, "devices synced");
        }
    })
}

#[cfg(test)]
mod tests;
