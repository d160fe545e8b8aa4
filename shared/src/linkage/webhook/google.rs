//! Google Health API webhooks: the ECDSA signature over the raw body (keys from Google's Tink
//! public keyset), the verification handshake, and the notification body.
//!
//! Which header carries the signature is not settled (the discovery document says
//! `X-HEALTHAPI-SIGNATURE`, the later guide `GOOGLE-HEALTH-API-SIGNATURE`): both are accepted.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::Deserialize;
use serde_json::json;

use super::{Node, NotificationError, SignatureError, digest, notifications, quote, wrong_shape};
use crate::domain::UtcInstant;
use crate::messages::NotifiedInterval;

/// Header names Google has documented for the signature; accept both (case-insensitive lookup
/// is the caller's: axum's `HeaderMap` is case-insensitive).
pub const SIGNATURE_HEADERS: [&str; 2] = ["x-healthapi-signature", "google-health-api-signature"];

/// Where Google serves the public keyset (community code; not on an official page yet).
pub const PUBLIC_KEYSET_URL: &str =
    "https://www.gstatic.com/googlehealthapi/webhooks/webhooks_public_keyset.json";

/// A notification may name at most this many intervals.
pub const MAX_INTERVALS: usize = 1000;

const TINK_TYPE_URL: &str = "type.googleapis.com/google.crypto.tink.EcdsaPublicKey";
/// Tink's output prefix for `TINK` keys: `0x01 ‖ key id (u32 big-endian)`.
const TINK_PREFIX: u8 = 0x01;
const TINK_PREFIX_LEN: usize = 5;
/// `EcdsaParams` enum values.
const HASH_SHA256: u64 = 3;
const CURVE_NIST_P256: u64 = 2;

/// Why a public keyset was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum KeysetError {
    #[error("the public keyset is not Tink JSON: {0}")]
    NotJson(String),
    /// Every key was skipped; `skipped` says why, per key.
    #[error("the public keyset has no usable ECDSA P-256 key: {}", skipped.join("; "))]
    NoUsableKey { skipped: Vec<String> },
}

/// How a key marks its signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OutputPrefix {
    /// `0x01 ‖ key id` before the signature.
    Tink,
    /// The bare signature.
    Raw,
}

/// Google's webhook verification keys, by Tink key id.
#[derive(Debug, Clone)]
pub struct PublicKeyset {
    keys: BTreeMap<u32, (VerifyingKey, OutputPrefix)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TinkKeyset {
    #[serde(default)]
    key: Vec<TinkKey>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TinkKey {
    key_data: TinkKeyData,
    status: String,
    key_id: u32,
    output_prefix_type: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TinkKeyData {
    type_url: String,
    value: String,
    #[serde(default)]
    key_material_type: Option<String>,
}

impl PublicKeyset {
    /// A Tink JSON public keyset as served at [`PUBLIC_KEYSET_URL`]:
    /// `{"primaryKeyId":N,"key":[{"keyData":{"typeUrl":"type.googleapis.com/google.crypto.tink.EcdsaPublicKey","value":"<base64 of a serialized EcdsaPublicKey>","keyMaterialType":"ASYMMETRIC_PUBLIC"},"status":"ENABLED","keyId":N,"outputPrefixType":"TINK"}]}`.
    ///
    /// Keys that are not enabled, not ECDSA P-256 with SHA-256, of an output prefix other than
    /// `TINK` or `RAW`, or malformed are skipped; a keyset with no usable key is an error.
    pub fn from_tink_json(json: &str) -> Result<Self, KeysetError> {
        let keyset: TinkKeyset =
            serde_json::from_str(json).map_err(|e| KeysetError::NotJson(e.to_string()))?;
        let mut keys = BTreeMap::new();
        let mut skipped = Vec::new();
        for key in keyset.key {
            match usable_key(&key) {
                Ok(usable) => {
                    keys.insert(key.key_id, usable);
                }
                Err(why) => skipped.push(format!("key {}: {why}", key.key_id)),
            }
        }
        if keys.is_empty() {
            if skipped.is_empty() {
                skipped.push("the keyset lists no keys".into());
            }
            return Err(KeysetError::NoUsableKey { skipped });
        }
        Ok(Self { keys })
    }

    /// The inverse, for the simulator and tests: a Tink JSON keyset of `TINK` keys, each
    /// serialised the way Tink does (coordinates with a leading zero byte, DER encoding).
    pub fn tink_json_for(keys: &[(u32, VerifyingKey)], primary: u32) -> String {
        let keys: Vec<serde_json::Value> = keys
            .iter()
            .map(|(id, key)| {
                json!({
                    "keyData": {
                        "typeUrl": TINK_TYPE_URL,
                        "value": STANDARD.encode(ecdsa_public_key_proto(key)),
                        "keyMaterialType": "ASYMMETRIC_PUBLIC",
                    },
                    "status": "ENABLED",
                    "keyId": id,
                    "outputPrefixType": "TINK",
                })
            })
            .collect();
        json!({"primaryKeyId": primary, "key": keys}).to_string()
    }

    /// The key ids this keyset holds.
    pub fn key_ids(&self) -> Vec<u32> {
        self.keys.keys().copied().collect()
    }

    /// Checks a signature header over the raw body. The value is base64 (standard or URL-safe,
    /// padding optional) of `0x01 ‖ key id ‖ signature`, the signature DER or 64-byte IEEE P1363
    /// `r ‖ s`, ECDSA P-256 with SHA-256. A bare signature without the Tink prefix is tried
    /// against every key.
    pub fn verify(&self, header_value: &str, body: &[u8]) -> Result<(), SignatureError> {
        let text = header_value.trim();
        if text.is_empty() {
            return Err(SignatureError::Missing);
        }
        let bytes = decode_base64(text).ok_or(SignatureError::Malformed)?;
        if bytes.len() > TINK_PREFIX_LEN && bytes[0] == TINK_PREFIX {
            let id = u32::from_be_bytes(bytes[1..TINK_PREFIX_LEN].try_into().expect("4 bytes"));
            if let Some((key, OutputPrefix::Tink)) = self.keys.get(&id) {
                let signature =
                    parse_signature(&bytes[TINK_PREFIX_LEN..]).ok_or(SignatureError::Malformed)?;
                return key
                    .verify(body, &signature)
                    .map_err(|_| SignatureError::Invalid);
            }
            // A bare P1363 signature can start with 0x01 too; anything else names a key we lack.
            if bytes.len() != 64 {
                return Err(SignatureError::UnknownKey(id));
            }
        }
        let signature = parse_signature(&bytes).ok_or(SignatureError::Malformed)?;
        if self
            .keys
            .values()
            .any(|(key, _)| key.verify(body, &signature).is_ok())
        {
            Ok(())
        } else {
            Err(SignatureError::Invalid)
        }
    }
}

/// Base64, standard or URL-safe alphabet, padded or not.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let config = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    [
        GeneralPurpose::new(&alphabet::STANDARD, config),
        GeneralPurpose::new(&alphabet::URL_SAFE, config),
    ]
    .iter()
    .find_map(|engine| engine.decode(text).ok())
}

/// A DER signature, or 64 bytes of IEEE P1363 `r ‖ s`.
fn parse_signature(bytes: &[u8]) -> Option<Signature> {
    if bytes.len() == 64 {
        Signature::from_slice(bytes).ok()
    } else {
        Signature::from_der(bytes).ok()
    }
}

fn usable_key(key: &TinkKey) -> Result<(VerifyingKey, OutputPrefix), String> {
    if key.status != "ENABLED" {
        return Err(format!("status {}", quote(&key.status)));
    }
    if key.key_data.type_url != TINK_TYPE_URL {
        return Err(format!("type {}", quote(&key.key_data.type_url)));
    }
    if let Some(material) = &key.key_data.key_material_type
        && material != "ASYMMETRIC_PUBLIC"
    {
        return Err(format!("key material {}", quote(material)));
    }
    let prefix = match key.output_prefix_type.as_str() {
        "TINK" => OutputPrefix::Tink,
        "RAW" => OutputPrefix::Raw,
        other => return Err(format!("output prefix {} unsupported", quote(other))),
    };
    let proto = STANDARD
        .decode(key.key_data.value.trim())
        .map_err(|_| "value is not base64".to_owned())?;
    let public = EcdsaPublicKey::decode(&proto).ok_or("value is not an EcdsaPublicKey")?;
    if public.hash_type != HASH_SHA256 || public.curve != CURVE_NIST_P256 {
        return Err(format!(
            "hash {} / curve {}: only SHA-256 on NIST P-256 is used",
            public.hash_type, public.curve
        ));
    }
    let coordinate = |bytes: &[u8]| -> Option<[u8; 32]> {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        let significant = &bytes[start..];
        let mut out = [0u8; 32];
        (significant.len() <= 32).then(|| {
            out[32 - significant.len()..].copy_from_slice(significant);
            out
        })
    };
    let (x, y) = coordinate(&public.x)
        .zip(coordinate(&public.y))
        .ok_or("a coordinate is longer than 32 bytes")?;
    let mut sec1 = vec![0x04];
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    let key = VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| "the point is not on P-256")?;
    Ok((key, prefix))
}

/// The fields of Tink's `EcdsaPublicKey` protobuf that matter here.
#[derive(Debug, Default)]
struct EcdsaPublicKey {
    hash_type: u64,
    curve: u64,
    x: Vec<u8>,
    y: Vec<u8>,
}

impl EcdsaPublicKey {
    /// `EcdsaPublicKey { 1: version, 2: EcdsaParams { 1: hash_type, 2: curve, 3: encoding },
    /// 3: x, 4: y }`; unknown fields are skipped.
    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut key = Self::default();
        for (field, value) in ProtoFields::new(bytes) {
            match (field?, value) {
                (2, ProtoValue::Bytes(params)) => {
                    for (field, value) in ProtoFields::new(params) {
                        match (field?, value) {
                            (1, ProtoValue::Varint(v)) => key.hash_type = v,
                            (2, ProtoValue::Varint(v)) => key.curve = v,
                            _ => {}
                        }
                    }
                }
                (3, ProtoValue::Bytes(x)) => key.x = x.to_vec(),
                (4, ProtoValue::Bytes(y)) => key.y = y.to_vec(),
                _ => {}
            }
        }
        (!key.x.is_empty() && !key.y.is_empty()).then_some(key)
    }
}

/// One protobuf field's value.
enum ProtoValue<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of a protobuf message, in order: `(Some(field number), value)`, or one
/// `(None, _)` and the end when the bytes are not protobuf.
struct ProtoFields<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> ProtoFields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self {
            rest: bytes,
            failed: false,
        }
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.rest.split_first()?;
            self.rest = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        (self.rest.len() >= len).then(|| {
            let (taken, rest) = self.rest.split_at(len);
            self.rest = rest;
            taken
        })
    }

    fn field(&mut self) -> Option<(u64, ProtoValue<'a>)> {
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => ProtoValue::Varint(self.varint()?),
            1 => self.take(8).map(|_| ProtoValue::Fixed)?,
            2 => {
                let len = usize::try_from(self.varint()?).ok()?;
                ProtoValue::Bytes(self.take(len)?)
            }
            5 => self.take(4).map(|_| ProtoValue::Fixed)?,
            _ => return None,
        };
        Some((tag >> 3, value))
    }
}

impl<'a> Iterator for ProtoFields<'a> {
    type Item = (Option<u64>, ProtoValue<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        match self.field() {
            Some((number, value)) => Some((Some(number), value)),
            None => {
                self.failed = true;
                Some((None, ProtoValue::Fixed))
            }
        }
    }
}

/// Tink's serialisation of a public key: version 0, SHA-256 / P-256 / DER, and the coordinates
/// as big-endian two's complement (a leading 0x00).
fn ecdsa_public_key_proto(key: &VerifyingKey) -> Vec<u8> {
    let point = key.to_encoded_point(false);
    let field = |out: &mut Vec<u8>, number: u8, bytes: &[u8]| {
        out.push(number << 3 | 2);
        out.push(u8::try_from(bytes.len()).expect("short field"));
        out.extend_from_slice(bytes);
    };
    let coordinate = |c: &[u8]| [&[0u8][..], c].concat();
    let mut out = vec![0x08, 0x00];
    field(&mut out, 2, &[0x08, 3, 0x10, 2, 0x18, 2]);
    field(&mut out, 3, &coordinate(point.x().expect("uncompressed")));
    field(&mut out, 4, &coordinate(point.y().expect("uncompressed")));
    out
}

/// Signs like Google does (for the simulator and tests): base64 (standard) of
/// `0x01 ‖ key id ‖ DER signature` over the body, deterministic (RFC 6979).
pub fn sign_notification(key: &SigningKey, key_id: u32, body: &[u8]) -> String {
    let signature: Signature = key.sign(body);
    let mut bytes = vec![TINK_PREFIX];
    bytes.extend_from_slice(&key_id.to_be_bytes());
    bytes.extend_from_slice(signature.to_der().as_bytes());
    STANDARD.encode(bytes)
}

/// Whether the body is the endpoint handshake, `{"type":"verification"}`.
pub fn is_verification(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned))
        .is_some_and(|t| t == "verification")
}

/// What a notification says happened to the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Added or changed: re-read the intervals.
    Upsert,
    /// Removed (the participant deleted it, or revoked permission): delete the stored points.
    Delete,
}

impl Operation {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Upsert => "UPSERT",
            Operation::Delete => "DELETE",
        }
    }
}

/// One Google Health notification.
#[derive(Debug, Clone, PartialEq)]
pub struct GoogleNotification {
    pub health_user_id: String,
    pub operation: Operation,
    /// Kebab-case (`steps`, `heart-rate`), `[a-z0-9-]{1,64}`.
    pub data_type: String,
    /// From each `physicalTimeInterval`, in the body's order: the start rounded down and the
    /// end rounded up to the whole second, so the canonical interval covers the notified one.
    pub intervals: Vec<NotifiedInterval>,
    /// Hex SHA-256 of (user, operation, data type, sorted intervals): not of
    /// `clientProvidedSubscriptionName`, which is random per delivery for AUTOMATIC
    /// subscriptions, so redeliveries of one change have one digest.
    pub digest: String,
}

/// A single `{"data":{...}}` object or a top-level array of them (batched). Every notification
/// must parse, else the whole body is refused.
pub fn parse_notifications(body: &[u8]) -> Result<Vec<GoogleNotification>, NotificationError> {
    notifications(body)?
        .iter()
        .map(|(path, value)| parse_one(Node::root(path.clone(), value)))
        .collect()
}

fn parse_one(node: Node<'_>) -> Result<GoogleNotification, NotificationError> {
    node.expect_object()?;
    let data = node.object("data")?;
    let health_user_id = data.token(
        "healthUserId",
        128,
        |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
        "a Google Health user id",
    )?;
    let operation = match data.string("operation")? {
        "UPSERT" => Operation::Upsert,
        "DELETE" => Operation::Delete,
        other => {
            return Err(data.error(
                "operation",
                &format!("is not UPSERT or DELETE: {}", quote(other)),
            ));
        }
    };
    let data_type = data.token(
        "dataType",
        64,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        "a kebab-case data type",
    )?;
    let items = data.array("intervals")?;
    if items.is_empty() || items.len() > MAX_INTERVALS {
        return Err(data.error(
            "intervals",
            &format!(
                "has {} intervals (1 to {MAX_INTERVALS} expected)",
                items.len()
            ),
        ));
    }
    let intervals = items.iter().map(interval).collect::<Result<Vec<_>, _>>()?;
    let mut sorted = intervals.clone();
    sorted.sort();
    sorted.dedup();
    let digest = digest(&json!([
        "google-health/v1",
        health_user_id,
        operation.as_str(),
        data_type,
        sorted
            .iter()
            .map(|i| [i.start.to_text(), i.end.to_text()])
            .collect::<Vec<_>>(),
    ]));
    Ok(GoogleNotification {
        health_user_id: health_user_id.to_owned(),
        operation,
        data_type: data_type.to_owned(),
        intervals,
        digest,
    })
}

fn interval(item: &Node<'_>) -> Result<NotifiedInterval, NotificationError> {
    item.expect_object()?;
    let physical = item.object("physicalTimeInterval")?;
    let instant = |key: &str| -> Result<DateTime<Utc>, NotificationError> {
        let text = physical.string(key)?;
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|at| at.with_timezone(&Utc))
            .filter(|at| UtcInstant::checked(*at).is_ok())
            .ok_or_else(|| {
                physical.error(key, &format!("is not an RFC 3339 instant: {}", quote(text)))
            })
    };
    let (start, end) = (instant("startTime")?, instant("endTime")?);
    if start >= end {
        return Err(wrong_shape(format!(
            "{} ends ({end}) before it starts ({start})",
            physical.path
        )));
    }
    // Round the end up: [start, end) must keep covering the notified interval.
    let whole_end = if end.trunc_subsecs(0) == end {
        end
    } else {
        end.trunc_subsecs(0) + TimeDelta::seconds(1)
    };
    let end = UtcInstant::checked(whole_end)
        .map_err(|_| physical.error("endTime", "is not an instant in the years 0000 to 9999"))?;
    Ok(NotifiedInterval {
        start: UtcInstant::new(start),
        end,
    })
}

#[cfg(test)]
mod tests;
