//! Sealed values: the consent portal keeps no server-side session. What it must remember across
//! the trip to the provider (the invitation, the PKCE verifier, a CSRF nonce) travels sealed in
//! the OAuth `state` parameter and a cookie, and only this deployment can open or forge it.
//!
//! XChaCha20-Poly1305 with a key derived from the current token key (values sealed with an older
//! key of the set still open, so a flow or session started before a rotation goes on); text is
//! base64url(nonce ‖ ciphertext ‖ tag). The `purpose` is the associated data, so a value sealed
//! as a `state` does not open as a cookie, and the other way round.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{b64url, b64url_decode};
use crate::secret::Secret;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Cookies and query parameters past this are refused before any work (a real one is a few
/// hundred characters).
pub const MAX_SEALED_LEN: usize = 4096;

/// Why a sealed value did not open. Carries none of its content.
#[derive(thiserror::Error, Debug)]
pub enum SealedValueError {
    /// Not a sealed value (cut short, not base64url, too long) or, once opened, not the shape
    /// expected.
    #[error("the value is not a sealed value of this portal (cut short or mangled?)")]
    Malformed,
    /// The authentication failed: altered, sealed with another key, or for another purpose.
    #[error("the sealed value was altered, or sealed by another deployment or for another use")]
    Tampered,
}

/// Seals and opens the consent flow's values.
#[derive(Clone)]
pub struct FlowSealer {
    /// The first seals; any opens.
    ciphers: Vec<XChaCha20Poly1305>,
}

impl std::fmt::Debug for FlowSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlowSealer([redacted])")
    }
}

fn associated_data(purpose: &str) -> Vec<u8> {
    format!("fitlink/sealed/{purpose}").into_bytes()
}

impl FlowSealer {
    /// `key` from `TokenKeys::derive("consent-flow")`.
    pub fn new(key: Secret<[u8; 32]>) -> Self {
        Self::with_keys(vec![key])
    }

    /// `keys` from `TokenKeys::derive_all(purpose)`: seals with the first, opens with any.
    pub fn with_keys(keys: Vec<Secret<[u8; 32]>>) -> Self {
        assert!(!keys.is_empty(), "a sealer needs a key");
        Self {
            ciphers: keys
                .iter()
                .map(|key| XChaCha20Poly1305::new(key.expose().into()))
                .collect(),
        }
    }

    /// Seals `value` as JSON; `purpose` is bound as associated data, so a `state` cannot be
    /// replayed as a cookie. A fresh random nonce each time: sealing one value twice gives two
    /// different texts.
    pub fn seal<T: Serialize>(&self, purpose: &str, value: &T) -> String {
        let json = serde_json::to_vec(value).expect("a sealed value serialises to JSON");
        let nonce: [u8; NONCE_LEN] = rand::random();
        let ciphertext = self.ciphers[0]
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &json,
                    aad: &associated_data(purpose),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        b64url(&sealed)
    }

    /// Opens a value sealed by [`seal`](Self::seal) with the same key and `purpose`.
    pub fn open<T: DeserializeOwned>(
        &self,
        purpose: &str,
        sealed: &str,
    ) -> Result<T, SealedValueError> {
        if sealed.len() > MAX_SEALED_LEN {
            return Err(SealedValueError::Malformed);
        }
        let bytes = b64url_decode(sealed).ok_or(SealedValueError::Malformed)?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(SealedValueError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealedValueError::Malformed)?;
        let aad = associated_data(purpose);
        let json = self
            .ciphers
            .iter()
            .find_map(|cipher| {
                cipher
                    .decrypt(
                        &XNonce::from(nonce),
                        Payload {
                            msg: ciphertext,
                            aad: &aad,
                        },
                    )
                    .ok()
            })
            .ok_or(SealedValueError::Tampered)?;
        serde_json::from_slice(&json).map_err(|_| SealedValueError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Flow {
        invitation: String,
        verifier: String,
    }

    fn flow() -> Flow {
        Flow {
            invitation: "v1.abc.def".into(),
            verifier: "x".repeat(64),
        }
    }

    fn sealer(byte: u8) -> FlowSealer {
        FlowSealer::new(Secret::new([byte; 32]))
    }

    #[test]
    fn a_sealed_value_opens_to_itself_and_hides_its_content() {
        let sealed = sealer(1).seal("state", &flow());
        assert!(!sealed.contains("xxxx") && !sealed.contains("v1.abc"));
        assert!(
            sealed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(sealer(1).open::<Flow>("state", &sealed).unwrap(), flow());
        assert_ne!(sealed, sealer(1).seal("state", &flow()), "nonces repeat");
    }

    #[test]
    fn after_a_key_rotation_values_sealed_with_the_older_key_still_open() {
        let old = sealer(1).seal("state", &flow());
        let rotated = FlowSealer::with_keys(vec![Secret::new([2; 32]), Secret::new([1; 32])]);
        assert_eq!(rotated.open::<Flow>("state", &old).unwrap(), flow());
        let new = rotated.seal("state", &flow());
        assert_eq!(sealer(2).open::<Flow>("state", &new).unwrap(), flow());
        assert!(sealer(1).open::<Flow>("state", &new).is_err());
    }

    #[test]
    fn a_tampered_value_another_purpose_or_another_key_does_not_open() {
        let sealed = sealer(1).seal("state", &flow());
        let mut bytes = b64url_decode(&sealed).unwrap();
        let last = bytes.len() - 20;
        bytes[last] ^= 1;
        assert!(matches!(
            sealer(1).open::<Flow>("state", &b64url(&bytes)),
            Err(SealedValueError::Tampered)
        ));
        assert!(matches!(
            sealer(1).open::<Flow>("cookie", &sealed),
            Err(SealedValueError::Tampered)
        ));
        assert!(matches!(
            sealer(2).open::<Flow>("state", &sealed),
            Err(SealedValueError::Tampered)
        ));
    }

    #[test]
    fn garbage_or_the_wrong_shape_is_malformed() {
        for garbage in [String::new(), "%%".into(), "AAAA".into(), "A".repeat(5000)] {
            assert!(matches!(
                sealer(1).open::<Flow>("state", &garbage),
                Err(SealedValueError::Malformed)
            ));
        }
        let sealed = sealer(1).seal("state", &42u32);
        assert!(matches!(
            sealer(1).open::<Flow>("state", &sealed),
            Err(SealedValueError::Malformed)
        ));
    }
}
