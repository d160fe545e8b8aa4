//! Signatures of the notifications, written from the providers' descriptions (the
//! simulator is the provider, so it must not borrow fitlink's verifier):
//!
//! * Google Health: ECDSA P-256 / SHA-256 over the exact body bytes, header value
//!   `base64(0x01 || key id (u32, big-endian) || DER signature)` (Tink's `TINK` output
//!   prefix), public keys published as a Tink JSON keyset;
//! * legacy Fitbit: `X-Fitbit-Signature = base64(HMAC-SHA1(client_secret + "&", body))`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};
use sha1::Sha1;

/// Tink's type URL of an ECDSA public key.
const ECDSA_PUBLIC_KEY_TYPE: &str = "type.googleapis.com/google.crypto.tink.EcdsaPublicKey";

/// Tink's output prefix byte for `TINK` keys (followed by the 4-byte key id).
const TINK_PREFIX: u8 = 0x01;

/// The simulator's webhook signing key (created at start, never persisted).
pub(crate) struct Signer {
    key: SigningKey,
    key_id: u32,
}

/// A P-256 key from 32 random bytes (retried in the negligible case that they are not a
/// valid scalar). p256 0.13 uses rand_core 0.6, so the key is not built from rand 0.9's RNG.
fn random_key() -> SigningKey {
    loop {
        if let Ok(key) = SigningKey::from_slice(&rand::random::<[u8; 32]>()) {
            return key;
        }
    }
}

impl Signer {
    pub(crate) fn generate() -> Self {
        Signer {
            key: random_key(),
            key_id: rand::random::<u32>(),
        }
    }

    pub(crate) fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The signature header value for `body`.
    pub(crate) fn sign(&self, body: &[u8]) -> String {
        signature_header(&self.key, self.key_id, body)
    }

    /// A signature under the published key id made with another key: what a forged
    /// notification looks like to a verifier.
    pub(crate) fn sign_forged(&self, body: &[u8]) -> String {
        signature_header(&random_key(), self.key_id, body)
    }

    /// The public keyset in Tink's JSON format, like
    /// `https://www.gstatic.com/googlehealthapi/webhooks/webhooks_public_keyset.json`.
    pub(crate) fn keyset(&self) -> Value {
        let point = self.key.verifying_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            unreachable!("an uncompressed point has both coordinates");
        };
        json!({
            "primaryKeyId": self.key_id,
            "key": [{
                "keyData": {
                    "typeUrl": ECDSA_PUBLIC_KEY_TYPE,
                    "value": STANDARD.encode(ecdsa_public_key_proto(x, y)),
                    "keyMaterialType": "ASYMMETRIC_PUBLIC",
                },
                "status": "ENABLED",
                "keyId": self.key_id,
                "outputPrefixType": "TINK",
            }],
        })
    }
}

fn signature_header(key: &SigningKey, key_id: u32, body: &[u8]) -> String {
    // RFC 6979 deterministic nonce.
    let signature: Signature = key.sign(body);
    let bytes = signature.to_bytes();
    let (r, s) = bytes.split_at(32);
    let mut out = vec![TINK_PREFIX];
    out.extend_from_slice(&key_id.to_be_bytes());
    out.extend_from_slice(&der_signature(r, s));
    STANDARD.encode(out)
}

/// A DER INTEGER's content for an unsigned big-endian number: minimal, with a leading
/// zero when the high bit is set.
fn unsigned_integer(bytes: &[u8]) -> Vec<u8> {
    let first = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len() - 1);
    let trimmed = &bytes[first..];
    let mut out = Vec::with_capacity(trimmed.len() + 1);
    if trimmed[0] & 0x80 != 0 {
        out.push(0);
    }
    out.extend_from_slice(trimmed);
    out
}

/// `SEQUENCE { INTEGER r, INTEGER s }` (every length fits in one byte for P-256).
fn der_signature(r: &[u8], s: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(72);
    for part in [r, s] {
        let integer = unsigned_integer(part);
        content.push(0x02);
        content.push(integer.len() as u8);
        content.extend_from_slice(&integer);
    }
    let mut out = vec![0x30, content.len() as u8];
    out.extend_from_slice(&content);
    out
}

/// Protobuf wire types.
const VARINT: u8 = 0;
const LENGTH_DELIMITED: u8 = 2;

fn tag(field: u8, wire_type: u8) -> u8 {
    (field << 3) | wire_type
}

fn varint_field(out: &mut Vec<u8>, field: u8, value: u8) {
    // Every value written here is below 128, so its varint is one byte.
    out.extend_from_slice(&[tag(field, VARINT), value]);
}

fn bytes_field(out: &mut Vec<u8>, field: u8, value: &[u8]) {
    out.push(tag(field, LENGTH_DELIMITED));
    out.push(value.len() as u8);
    out.extend_from_slice(value);
}

/// Tink's BigInteger encoding of a coordinate: big-endian, with a leading zero byte when
/// the high bit is set (two's complement of a positive number).
fn tink_big_integer(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        out.push(0);
    }
    out.extend_from_slice(bytes);
    out
}

/// `EcdsaPublicKey { version = 0, params = EcdsaParams { hash_type = SHA256 (3),
/// curve = NIST_P256 (2), encoding = DER (2) }, x, y }`.
fn ecdsa_public_key_proto(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut params = Vec::new();
    varint_field(&mut params, 1, 3);
    varint_field(&mut params, 2, 2);
    varint_field(&mut params, 3, 2);
    let mut out = Vec::new();
    varint_field(&mut out, 1, 0);
    bytes_field(&mut out, 2, &params);
    bytes_field(&mut out, 3, &tink_big_integer(x));
    bytes_field(&mut out, 4, &tink_big_integer(y));
    out
}

/// `X-Fitbit-Signature` of `body` for the app's client secret.
pub(crate) fn fitbit_signature(client_secret: &str, body: &[u8]) -> String {
    let key = format!("{client_secret}&");
    let mut mac =
        Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_integers_are_minimal_and_positive() {
        assert_eq!(unsigned_integer(&[0, 0, 0x7f]), vec![0x7f]);
        assert_eq!(unsigned_integer(&[0, 0x80, 1]), vec![0, 0x80, 1]);
        assert_eq!(unsigned_integer(&[0, 0]), vec![0]);
        let der = der_signature(&[0x80; 32], &[0x01; 32]);
        assert_eq!(&der[..4], &[0x30, 2 + 33 + 2 + 32, 0x02, 33]);
        assert_eq!(der.len(), 2 + 2 + 33 + 2 + 32);
    }

    #[test]
    fn keyset_protobuf_layout() {
        let proto = ecdsa_public_key_proto(&[0x80; 32], &[0x01; 32]);
        assert_eq!(
            &proto[..10],
            &[0x08, 0x00, 0x12, 0x06, 0x08, 0x03, 0x10, 0x02, 0x18, 0x02]
        );
        assert_eq!(&proto[10..13], &[0x1a, 33, 0x00]);
        assert_eq!(&proto[10 + 2 + 33..10 + 2 + 33 + 2], &[0x22, 32]);
    }

    #[test]
    fn fitbit_signature_is_hmac_sha1_of_secret_and_ampersand() {
        // HMAC-SHA1(key "key", "The quick brown fox jumps over the lazy dog"), a
        // published test vector; the secret "key" is passed without the "&".
        let mac = Hmac::<Sha1>::new_from_slice(b"key&").unwrap();
        let expected = STANDARD.encode(
            mac.chain_update(b"The quick brown fox jumps over the lazy dog")
                .finalize()
                .into_bytes(),
        );
        assert_eq!(
            fitbit_signature("key", b"The quick brown fox jumps over the lazy dog"),
            expected
        );
        assert_eq!(
            STANDARD.encode(
                Hmac::<Sha1>::new_from_slice(b"key")
                    .unwrap()
                    .chain_update(b"The quick brown fox jumps over the lazy dog")
                    .finalize()
                    .into_bytes()
            ),
            "3nybhbi3iqa8ino29wqQcBydtNk="
        );
    }
}
