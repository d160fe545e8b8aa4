//! Webhooks end to end: a receiver started in the test (axum on 127.0.0.1:0) records
//! every request into a channel the test awaits; signatures are verified independently
//! of the signing code (the keyset and the DER signature are decoded here by hand).

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::{EncodedPoint, FieldBytes};
use serde_json::{Value, json};
use sha1::Sha1;
use tokio::sync::mpsc;

use crate::tests::{Sim, small, start};
use crate::{Deletion, SimConfig, roster, truth};

/// One request the receiver got.
#[derive(Debug)]
struct Received {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

const SECRET: &str = "Bearer sim-webhook-secret";

/// The receiver's answers: Google verification → 201 with the secret, 401 without;
/// Fitbit verification → 204 for the right code, 404 otherwise; `/fail` → 500;
/// notifications → 204.
fn answer(r: &Received) -> StatusCode {
    match (r.path.as_str(), &r.method) {
        ("/fail", _) => StatusCode::INTERNAL_SERVER_ERROR,
        ("/google", _) if r.body.as_ref() == br#"{"type":"verification"}"# => {
            if r.header("authorization") == Some(SECRET) {
                StatusCode::CREATED
            } else {
                StatusCode::UNAUTHORIZED
            }
        }
        ("/fitbit", &Method::GET) => {
            if r.query == "verify=sim-verify-code" {
                StatusCode::NO_CONTENT
            } else {
                StatusCode::NOT_FOUND
            }
        }
        _ => StatusCode::NO_CONTENT,
    }
}

struct Receiver {
    base: String,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    async fn start() -> Receiver {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let tx = tx.clone();
                async move {
                    let received = Received {
                        method,
                        path: uri.path().to_owned(),
                        query: uri.query().unwrap_or_default().to_owned(),
                        headers,
                        body,
                    };
                    let status = answer(&received);
                    let _ = tx.send(received);
                    status
                }
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { base, rx }
    }

    /// The next request (the deliveries are asynchronous; a generous bound only turns a
    /// missing delivery into a failure instead of a hang).
    async fn next(&mut self) -> Received {
        tokio::time::timeout(Duration::from_secs(20), self.rx.recv())
            .await
            .expect("a webhook request in time")
            .expect("receiver running")
    }

    async fn take(&mut self, n: usize) -> Vec<Received> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await);
        }
        out
    }
}

/// Reads one protobuf field: (field number, wire type, payload).
fn proto_fields(mut bytes: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = bytes.split_first() {
        let (field, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => {
                out.push((field, wire, vec![rest[0]]));
                bytes = &rest[1..];
            }
            2 => {
                let len = rest[0] as usize;
                out.push((field, wire, rest[1..1 + len].to_vec()));
                bytes = &rest[1 + len..];
            }
            other => panic!("unexpected wire type {other}"),
        }
    }
    out
}

/// A big-endian unsigned number as 32 bytes (drops a sign byte, pads short numbers).
fn field_bytes(number: &[u8]) -> FieldBytes {
    let trimmed: Vec<u8> = number.iter().copied().skip_while(|b| *b == 0).collect();
    assert!(trimmed.len() <= 32);
    let mut out = [0u8; 32];
    out[32 - trimmed.len()..].copy_from_slice(&trimmed);
    FieldBytes::from(out)
}

/// The verifying key with id `key_id` from a Tink JSON keyset.
fn keyset_key(keyset: &Value, key_id: u32) -> VerifyingKey {
    assert_eq!(keyset["primaryKeyId"], key_id);
    let key = keyset["key"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["keyId"] == key_id)
        .expect("the signing key is in the keyset");
    assert_eq!(key["status"], "ENABLED");
    assert_eq!(key["outputPrefixType"], "TINK");
    assert_eq!(key["keyData"]["keyMaterialType"], "ASYMMETRIC_PUBLIC");
    assert_eq!(
        key["keyData"]["typeUrl"],
        "type.googleapis.com/google.crypto.tink.EcdsaPublicKey"
    );
    let proto = STANDARD
        .decode(key["keyData"]["value"].as_str().unwrap())
        .unwrap();
    let fields = proto_fields(&proto);
    let get = |n: u8| fields.iter().find(|f| f.0 == n).unwrap().2.clone();
    // SHA256, NIST_P256, DER.
    assert_eq!(get(2), vec![0x08, 3, 0x10, 2, 0x18, 2]);
    let (x, y) = (get(3), get(4));
    for c in [&x, &y] {
        // Tink's BigInteger form: a leading zero exactly when the high bit is set.
        assert!(
            c.len() == 32 && c[0] & 0x80 == 0 || c.len() == 33 && c[0] == 0 && c[1] & 0x80 != 0
        );
    }
    let point = EncodedPoint::from_affine_coordinates(&field_bytes(&x), &field_bytes(&y), false);
    VerifyingKey::from_encoded_point(&point).unwrap()
}

/// Decodes `SEQUENCE { INTEGER r, INTEGER s }`.
fn der_signature(der: &[u8]) -> Signature {
    assert_eq!(der[0], 0x30);
    assert_eq!(der[1] as usize, der.len() - 2);
    let (r_len, rest) = (der[3] as usize, &der[4..]);
    assert_eq!(der[2], 0x02);
    let (r, rest) = rest.split_at(r_len);
    assert_eq!(rest[0], 0x02);
    let s = &rest[2..2 + rest[1] as usize];
    Signature::from_scalars(field_bytes(r), field_bytes(s)).unwrap()
}

/// Verifies a Google signature header value against the served keyset.
fn google_signature_ok(keyset: &Value, header: &str, body: &[u8]) -> bool {
    let raw = STANDARD.decode(header).unwrap();
    assert_eq!(raw[0], 0x01, "Tink prefix");
    let key_id = u32::from_be_bytes(raw[1..5].try_into().unwrap());
    keyset_key(keyset, key_id)
        .verify(body, &der_signature(&raw[5..]))
        .is_ok()
}

fn fitbit_signature_ok(client_secret: &str, header: &str, body: &[u8]) -> bool {
    let mut mac = Hmac::<Sha1>::new_from_slice(format!("{client_secret}&").as_bytes()).unwrap();
    mac.update(body);
    mac.verify_slice(&STANDARD.decode(header).unwrap()).is_ok()
}

fn with_receivers(receiver: &Receiver, config: SimConfig) -> SimConfig {
    SimConfig {
        google_webhook_url: Some(format!("{}/google", receiver.base)),
        fitbit_webhook_url: Some(format!("{}/fitbit", receiver.base)),
        ..config
    }
}

fn time(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[tokio::test]
async fn google_notifications_are_signed_with_the_served_keyset() {
    let receiver = Receiver::start().await;
    let sim = start(with_receivers(&receiver, small())).await;
    let keyset = sim.control_get("webhooks/keyset.json").await;

    let verified = sim
        .control("webhooks/verify", &json!({"provider": "google-health"}))
        .await;
    assert_eq!(
        verified,
        json!({"with_secret_status": 201, "without_secret_status": 401, "verified": true})
    );

    let reply = sim
        .control(
            "webhooks/send",
            &json!({
                "participant": "sim-0002", "provider": "google-health", "operation": "UPSERT",
                "data_type": "heart-rate", "start": "2026-11-03T10:00:00Z",
                "end": "2026-11-03T11:30:00Z", "copies": 2,
            }),
        )
        .await;
    assert_eq!(reply["statuses"], json!([204, 204]));
    let mut rx = receiver;
    let handshake = rx.take(2).await;
    assert_eq!(
        handshake[0].header("user-agent"),
        Some("Google-Health-API-Webhooks-Verifier")
    );
    assert_eq!(handshake[0].header("authorization"), Some(SECRET));
    assert_eq!(handshake[1].header("authorization"), None);

    let copies = rx.take(2).await;
    assert_eq!(copies[0].body, copies[1].body, "same_body defaults to true");
    let n = &copies[0];
    assert_eq!(n.header("content-type"), Some("application/json"));
    assert_eq!(n.header("user-agent"), Some("Google-Health-API-Webhooks"));
    assert_eq!(n.header("authorization"), Some(SECRET));
    let signature = n.header("x-healthapi-signature").unwrap();
    assert!(google_signature_ok(&keyset, signature, &n.body));
    let mut tampered = n.body.to_vec();
    tampered.push(b' ');
    assert!(!google_signature_ok(&keyset, signature, &tampered));

    let p = &roster(&sim.config)[1];
    let data = &n.json()["data"];
    assert_eq!(data["version"], "1");
    assert_eq!(data["healthUserId"], p.health_user_id.as_str());
    assert_eq!(data["operation"], "UPSERT");
    assert_eq!(data["dataType"], "heart-rate");
    let interval = &data["intervals"][0];
    assert_eq!(
        interval["physicalTimeInterval"],
        json!({"startTime": "2026-11-03T10:00:00Z", "endTime": "2026-11-03T11:30:00Z"})
    );
    // sim-0002 is in Los Angeles (UTC-8 after the DST end).
    assert_eq!(
        interval["civilIso8601TimeInterval"],
        json!({"startTime": "2026-11-03T02:00:00", "endTime": "2026-11-03T03:30:00"})
    );
    assert_eq!(
        interval["civilDateTimeInterval"]["endDateTime"],
        json!({"date": {"year": 2026, "month": 11, "day": 3}, "time": {"hours": 3, "minutes": 30}})
    );

    // The other documented header name, a batch, and a forged signature.
    sim.control(
        "webhooks",
        &json!({"google_signature_header": "GOOGLE-HEALTH-API-SIGNATURE"}),
    )
    .await;
    let reply = sim
        .control(
            "webhooks/send",
            &json!({"participant": "sim-0001", "provider": "google-health", "copies": 3,
                    "batched": true, "same_body": false, "bad_signature": true}),
        )
        .await;
    assert_eq!(reply["statuses"], json!([204]));
    let batch = rx.next().await;
    let items = batch.json();
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_ne!(
        items[0]["data"]["clientProvidedSubscriptionName"],
        items[1]["data"]["clientProvidedSubscriptionName"]
    );
    assert!(batch.header("x-healthapi-signature").is_none());
    let forged = batch.header("google-health-api-signature").unwrap();
    assert!(!google_signature_ok(&keyset, forged, &batch.body));

    let settings = sim.control_get("webhooks").await;
    assert!(settings.get("google_webhook_secret").is_none());
    assert_eq!(settings["google_webhook_secret_set"], true);
    assert_eq!(settings["deliveries"].as_array().unwrap().len(), 5);
    assert_eq!(settings["deliveries"][0]["kind"], "google-verification");
    let stats = sim.control_get("stats").await;
    assert_eq!(stats["webhook_deliveries"], 4);
    assert_eq!(stats["webhook_failures"], 1);
}

#[tokio::test]
async fn fitbit_notifications_carry_the_hmac_and_the_handshake_verifies() {
    let mut rx = Receiver::start().await;
    let sim = start(with_receivers(&rx, small())).await;
    let verified = sim
        .control("webhooks/verify", &json!({"provider": "fitbit"}))
        .await;
    assert_eq!(
        verified,
        json!({"correct_code_status": 204, "wrong_code_status": 404, "verified": true})
    );
    let reply = sim
        .control(
            "webhooks/send",
            &json!({"participant": "sim-0003", "provider": "fitbit",
                    "collection_type": "activities", "date": "2026-11-03"}),
        )
        .await;
    assert_eq!(reply["statuses"], json!([204]));
    let reply = sim
        .control(
            "webhooks/send",
            &json!({"participant": "sim-0003", "provider": "fitbit", "bad_signature": true}),
        )
        .await;
    assert_eq!(reply["statuses"], json!([204]));
    let received = rx.take(4).await;
    assert_eq!(received[0].method, Method::GET);
    assert_eq!(received[0].query, "verify=sim-verify-code");
    assert_ne!(received[1].query, "verify=sim-verify-code");
    let n = &received[2];
    let p = &roster(&sim.config)[2];
    assert_eq!(
        n.json(),
        json!([{"collectionType": "activities", "date": "2026-11-03", "ownerId": p.encoded_id,
                "ownerType": "user", "subscriptionId": "sim-0003"}])
    );
    let signature = n.header("x-fitbit-signature").unwrap();
    assert!(fitbit_signature_ok("sim-secret", signature, &n.body));
    let forged = &received[3];
    assert!(!fitbit_signature_ok(
        "sim-secret",
        forged.header("x-fitbit-signature").unwrap(),
        &forged.body
    ));
}

#[tokio::test]
async fn advance_notifies_live_grants_and_failed_deliveries_are_retried() {
    let mut rx = Receiver::start().await;
    let config = with_receivers(
        &rx,
        SimConfig {
            participants: 2,
            ..small()
        },
    );
    let sim = start(config.clone()).await;
    let before = roster(&config);

    sim.control(
        "participants/sim-0002/revoke",
        &json!({"provider": "fitbit"}),
    )
    .await;
    let revoked = rx.next().await;
    assert_eq!(revoked.path, "/fitbit");
    assert_eq!(revoked.json()[0]["collectionType"], "userRevokedAccess");
    assert_eq!(revoked.json()[0]["ownerId"], before[1].encoded_id.as_str());

    sim.control("advance", &json!({"minutes": 90})).await;
    let after = roster(&SimConfig {
        advance_minutes: 90,
        ..config.clone()
    });
    let p = &before[0];
    let first = crate::clock::local(p.time_zone, p.latest_sync).date();
    let last = crate::clock::local(
        p.time_zone,
        after[0].latest_sync - chrono::Duration::seconds(1),
    )
    .date();
    let dates: Vec<String> = first
        .iter_days()
        .take_while(|d| *d <= last)
        .map(|d| d.to_string())
        .collect();
    // Google: 2 participants × (steps, heart-rate); Fitbit: sim-0001's dates only.
    let received = rx.take(4 + dates.len()).await;
    let mut google: Vec<(String, String, String, String)> = received
        .iter()
        .filter(|r| r.path == "/google")
        .map(|r| {
            let d = &r.json()["data"];
            let i = &d["intervals"][0]["physicalTimeInterval"];
            (
                d["healthUserId"].as_str().unwrap().to_owned(),
                d["dataType"].as_str().unwrap().to_owned(),
                i["startTime"].as_str().unwrap().to_owned(),
                i["endTime"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    google.sort();
    let mut expected: Vec<(String, String, String, String)> = (0..2)
        .flat_map(|i| {
            let (b, a) = (&before[i], &after[i]);
            ["heart-rate", "steps"].map(|t| {
                (
                    b.health_user_id.clone(),
                    t.to_owned(),
                    crate::clock::rfc3339(b.latest_sync),
                    crate::clock::rfc3339(a.latest_sync),
                )
            })
        })
        .collect();
    expected.sort();
    assert_eq!(google, expected);
    let mut fitbit: Vec<String> = received
        .iter()
        .filter(|r| r.path == "/fitbit")
        .map(|r| {
            let v = r.json();
            assert_eq!(v[0]["subscriptionId"], "sim-0001");
            assert_eq!(v[0]["collectionType"], "activities");
            v[0]["date"].as_str().unwrap().to_owned()
        })
        .collect();
    fitbit.sort();
    assert_eq!(fitbit, dates);

    // A receiver that keeps failing gets the same bytes four times (three retries).
    sim.control(
        "webhooks",
        &json!({"google_webhook_url": format!("{}/fail", rx.base), "fitbit_webhook_url": null}),
    )
    .await;
    sim.control(
        "participants/sim-0002/revoke",
        &json!({"provider": "google-health"}),
    )
    .await;
    sim.control("advance", &json!({"minutes": 1})).await;
    let attempts = rx.take(4 + 4).await;
    assert!(attempts.iter().all(|r| r.path == "/fail"));
    for data_type in ["steps", "heart-rate"] {
        let bodies: Vec<&Bytes> = attempts
            .iter()
            .filter(|r| r.json()["data"]["dataType"] == data_type)
            .map(|r| &r.body)
            .collect();
        assert_eq!(bodies.len(), 4);
        assert!(bodies.iter().all(|b| *b == bodies[0]));
    }
}

#[tokio::test]
async fn deleted_points_leave_the_api_and_the_truth() {
    let mut rx = Receiver::start().await;
    let config = SimConfig {
        google_webhook_url: Some(format!("{}/google", rx.base)),
        ..small()
    };
    let sim: Sim = start(config.clone()).await;
    let (start_t, end_t) = (time("2026-11-03T12:00:00Z"), time("2026-11-03T15:30:00Z"));
    let (window_start, window_end) = (time("2026-11-03T10:00:00Z"), time("2026-11-03T18:00:00Z"));
    let before_steps = truth::steps(&config, "sim-0001", window_start, window_end, 0);
    let before_hr = truth::heart_rate(&config, "sim-0001", window_start, window_end, 0);

    for data_type in ["steps", "heart-rate"] {
        let reply = sim
            .control(
                "participants/sim-0001/delete-data",
                &json!({"data_type": data_type, "start": start_t, "end": end_t}),
            )
            .await;
        assert_eq!(reply["notified"], true);
        let n = rx.next().await;
        let data = &n.json()["data"];
        assert_eq!(data["operation"], "DELETE");
        assert_eq!(data["dataType"], data_type);
        assert_eq!(
            data["intervals"][0]["physicalTimeInterval"],
            json!({"startTime": "2026-11-03T12:00:00Z", "endTime": "2026-11-03T15:30:00Z"})
        );
    }

    let deletions: Vec<Deletion> =
        serde_json::from_value(sim.control_get("deletions").await).unwrap();
    assert_eq!(deletions.len(), 2);
    let truth_config = SimConfig {
        deletions,
        ..config.clone()
    };
    let after_steps = truth::steps(&truth_config, "sim-0001", window_start, window_end, 0);
    let after_hr = truth::heart_rate(&truth_config, "sim-0001", window_start, window_end, 0);
    let inside = |t: DateTime<Utc>| start_t <= t && t < end_t;
    assert!(before_steps.iter().any(|m| inside(m.start)));
    assert!(before_hr.iter().any(|s| inside(s.time)));
    let kept_steps: Vec<_> = before_steps
        .into_iter()
        .filter(|m| !inside(m.start))
        .collect();
    let kept_hr: Vec<_> = before_hr.into_iter().filter(|s| !inside(s.time)).collect();
    assert_eq!(after_steps, kept_steps);
    assert_eq!(after_hr, kept_hr);
    // Other participants are untouched.
    assert_eq!(
        truth::steps(&truth_config, "sim-0002", window_start, window_end, 0),
        truth::steps(&config, "sim-0002", window_start, window_end, 0)
    );

    let token = sim.access("sim-0001").await;
    let filter = |member: &str| {
        format!(
            "{member} >= \"{}\" AND {member} < \"{}\"",
            window_start.to_rfc3339(),
            window_end.to_rfc3339()
        )
    };
    let (steps, _) = sim
        .list_all(&token, "steps", &filter("steps.interval.start_time"), 1000)
        .await;
    let served: Vec<DateTime<Utc>> = steps
        .iter()
        .map(|p| time(p["steps"]["interval"]["startTime"].as_str().unwrap()))
        .rev()
        .collect();
    assert_eq!(
        served,
        kept_steps.iter().map(|m| m.start).collect::<Vec<_>>()
    );
    let (hr, _) = sim
        .list_all(
            &token,
            "heart-rate",
            &filter("heart_rate.sample_time.physical_time"),
            2500,
        )
        .await;
    let served: Vec<DateTime<Utc>> = hr
        .iter()
        .map(|p| {
            time(
                p["heartRate"]["sampleTime"]["physicalTime"]
                    .as_str()
                    .unwrap(),
            )
        })
        .rev()
        .collect();
    assert_eq!(served, kept_hr.iter().map(|s| s.time).collect::<Vec<_>>());
}
