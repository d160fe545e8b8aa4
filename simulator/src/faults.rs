//! Fault injection: latency, random 503s and 429s, and per-participant breakage.
//!
//! Faults are what make the simulator useful for testing a fleet: retries, backoff,
//! quarantine of one broken participant and strict response parsing can all be
//! exercised deterministically (per participant) or statistically (rates).

use std::collections::BTreeMap;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::SimConfig;

/// The fault settings (`GET`/`POST /_sim/faults`). A `POST` replaces all of them; omitted
/// members fall back to "no fault".
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every API and token request before it is handled.
    pub latency_ms: u64,
    /// Probability (0..1) that an API or token request fails with 503 UNAVAILABLE.
    pub error_rate: f64,
    /// Probability (0..1) that an API or token request fails with 429 RESOURCE_EXHAUSTED.
    pub rate_limit_rate: f64,
    /// `Retry-After` seconds on every 429 (random or real rate limit); none when null.
    pub retry_after_secs: Option<u64>,
    /// Per-participant faults, keyed by participant id.
    pub participants: BTreeMap<String, ParticipantFaults>,
}

/// Faults of one participant.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ParticipantFaults {
    /// Every request made with this participant's tokens (including token refresh) is a 503.
    /// On the legacy Fitbit API, combined with `malformed_json`, it is a 502 with an HTML
    /// body (a proxy error page) instead.
    pub fail_5xx: bool,
    /// Data responses (`list`, `dailyRollUp`, every legacy data response) have the wrong
    /// shape: numeric members become objects, so a strict client must reject them.
    pub malformed_json: bool,
    /// Data responses are cut off halfway (invalid JSON with a correct Content-Length).
    pub truncate_body: bool,
    /// Legacy `devices.json` serves `lastSyncTime` in an unexpected format
    /// (`"11/03/2026 10:00"`, `MM/dd/yyyy HH:mm`).
    pub legacy_bad_last_sync: bool,
    /// Legacy intraday datasets carry one extra point outside the requested range.
    pub legacy_point_outside_range: bool,
}

/// A randomly injected failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RandomFault {
    Unavailable,
    RateLimited,
}

impl Faults {
    /// The initial faults given on the command line.
    pub fn from_config(config: &SimConfig) -> Self {
        Faults {
            latency_ms: config.latency_ms,
            error_rate: config.error_rate,
            rate_limit_rate: config.rate_limit_rate,
            retry_after_secs: config.retry_after_secs,
            participants: BTreeMap::new(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("rate_limit_rate", self.rate_limit_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be within 0..1, got {rate}"));
            }
        }
        Ok(())
    }

    pub(crate) fn participant(&self, id: &str) -> ParticipantFaults {
        self.participants.get(id).cloned().unwrap_or_default()
    }

    /// Draws the random faults for one request.
    pub(crate) fn roll(&self) -> Option<RandomFault> {
        if self.error_rate <= 0.0 && self.rate_limit_rate <= 0.0 {
            return None;
        }
        let mut rng = rand::rng();
        if self.error_rate > 0.0 && rng.random::<f64>() < self.error_rate {
            return Some(RandomFault::Unavailable);
        }
        if self.rate_limit_rate > 0.0 && rng.random::<f64>() < self.rate_limit_rate {
            return Some(RandomFault::RateLimited);
        }
        None
    }
}

/// Members whose scalar value is replaced by an object in malformed responses.
const VALUE_KEYS: &[&str] = &[
    "beatsPerMinute",
    "count",
    "countSum",
    "millimetersSum",
    "gainMillimetersSum",
    "kcalSum",
    "activeMinutesSum",
    "durationSum",
    "duration",
    "kcal",
    "minBeatsPerMinute",
    "maxBeatsPerMinute",
    "beatsPerMinuteAvg",
];

/// Turns a well-formed data response into one of the wrong shape: every value member
/// becomes `{"value": <original>}`, and the top-level collection becomes a string if it
/// was absent (empty), so even an empty page is rejected by a strict client.
pub(crate) fn malform(value: &mut Value, collection: &str) {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if VALUE_KEYS.contains(&k.as_str()) && !child.is_object() {
                        *child = json!({ "value": child.clone() });
                    } else {
                        walk(child);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(value);
    if let Value::Object(map) = value {
        map.entry(collection.to_owned())
            .or_insert_with(|| Value::String("malformed".to_owned()));
    }
}

/// Legacy (Fitbit-shaped) variant of [`malform`]: every number, and every string member
/// named `value`, becomes `{"value": <original>}`, at any depth.
pub(crate) fn malform_legacy(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if child.is_number() || (k == "value" && child.is_string()) {
                    *child = json!({ "value": child.clone() });
                } else {
                    malform_legacy(child);
                }
            }
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                if item.is_number() {
                    *item = json!({ "value": item.clone() });
                } else {
                    malform_legacy(item);
                }
            }
        }
        _ => {}
    }
}

/// Cuts a response body in half.
pub(crate) fn truncate(mut body: Vec<u8>) -> Vec<u8> {
    let keep = body.len() / 2;
    body.truncate(keep);
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malform_changes_shape() {
        let mut v = json!({"dataPoints": [{"heartRate": {"beatsPerMinute": "72"}}]});
        malform(&mut v, "dataPoints");
        assert_eq!(
            v["dataPoints"][0]["heartRate"]["beatsPerMinute"],
            json!({"value": "72"})
        );
        let mut empty = json!({});
        malform(&mut empty, "dataPoints");
        assert_eq!(empty["dataPoints"], "malformed");

        let mut legacy = json!({"activities-steps": [{"dateTime": "2026-11-03", "value": "12"}],
            "dataset": [{"time": "00:00:00", "value": 3}]});
        malform_legacy(&mut legacy);
        assert_eq!(
            legacy["activities-steps"][0]["value"],
            json!({"value": "12"})
        );
        assert_eq!(legacy["dataset"][0]["value"], json!({"value": 3}));
        assert_eq!(legacy["dataset"][0]["time"], "00:00:00");
    }

    #[test]
    fn faults_json_roundtrip() {
        let f: Faults = serde_json::from_str(
            r#"{"error_rate":0.5,"participants":{"sim-0003":{"fail_5xx":true}}}"#,
        )
        .unwrap();
        assert_eq!(f.error_rate, 0.5);
        assert!(f.participant("sim-0003").fail_5xx);
        assert!(!f.participant("sim-0001").fail_5xx);
        assert!(serde_json::from_str::<Faults>(r#"{"bogus":1}"#).is_err());
        let zero = Faults::default();
        assert_eq!(zero.roll(), None);
    }
}
