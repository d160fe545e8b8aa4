//! Secrets: a wrapper that cannot be printed, and sealing of refresh tokens at rest.
//!
//! Refresh tokens travel and rest only sealed (XChaCha20-Poly1305, key from `FITLINK_TOKEN_KEY`):
//! in the database, in queue messages and in dead letters. The participant id is the associated
//! data, so a sealed token copied onto another participant's row fails to open instead of
//! silently syncing the wrong person's data.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::ParticipantId;

/// A value that must never reach a log, an error message or a terminal.
///
/// `Debug` and `Display` print `[redacted]`; the only way in is [`Secret::expose`], which makes
/// every use greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret<String> {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// Why a token could not be sealed or opened. Never carries the token.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "FITLINK_TOKEN_KEY must be 32 bytes, given as 64 hex digits or base64 (generate one with `fitlink keygen`)"
    )]
    BadKey,
    #[error(
        "sealed token for participant {0} does not open with this FITLINK_TOKEN_KEY (wrong key, or the token belongs to another participant)"
    )]
    WrongKeyOrParticipant(String),
    #[error("sealed token for participant {0} is not valid base64 of a sealed token")]
    Malformed(String),
}

/// The key that seals refresh tokens. Load it once per process from `FITLINK_TOKEN_KEY`.
///
/// It also keeps the raw key bytes (wrapped, so they cannot be printed) to [derive](Self::derive)
/// the consent portal's keys from: one secret for the operator to manage, not three.
#[derive(Clone)]
pub struct TokenKey {
    cipher: XChaCha20Poly1305,
    raw: Secret<[u8; 32]>,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey([redacted])")
    }
}

const NONCE_LEN: usize = 24;

impl TokenKey {
    /// Accepts 64 hex digits or standard base64 of exactly 32 bytes.
    pub fn parse(text: &Secret<String>) -> Result<Self, SealError> {
        let text = text.expose().trim();
        let bytes = if text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()) {
            (0..32)
                .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| SealError::BadKey)?
        } else {
            BASE64.decode(text).map_err(|_| SealError::BadKey)?
        };
        let raw: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey)?;
        let cipher = XChaCha20Poly1305::new_from_slice(&raw).map_err(|_| SealError::BadKey)?;
        Ok(Self {
            cipher,
            raw: Secret::new(raw),
        })
    }

    /// A key for one `purpose` (`"invitation"`, `"consent-flow"`), derived from this key as
    /// HMAC-SHA256(key, `"fitlink/" + purpose`): different purposes give independent keys, so a
    /// value signed or sealed for one purpose is worthless for another, and a derived key
    /// reveals nothing about the token key.
    pub fn derive(&self, purpose: &str) -> Secret<[u8; 32]> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.raw.expose())
            .expect("HMAC takes a key of any length");
        mac.update(b"fitlink/");
        mac.update(purpose.as_bytes());
        Secret::new(mac.finalize().into_bytes().into())
    }

    /// A fresh random key, base64, for `fitlink keygen`.
    pub fn generate() -> Secret<String> {
        let bytes: [u8; 32] = rand::random();
        Secret::new(BASE64.encode(bytes))
    }

    pub fn seal(&self, participant: &ParticipantId, token: &Secret<String>) -> SealedToken {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let ciphertext = self
            .cipher
            .encrypt(
                &XNonce::from(nonce_bytes),
                Payload {
                    msg: token.expose().as_bytes(),
                    aad: participant.as_str().as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&ciphertext);
        SealedToken(BASE64.encode(sealed))
    }

    pub fn open(
        &self,
        participant: &ParticipantId,
        sealed: &SealedToken,
    ) -> Result<Secret<String>, SealError> {
        let malformed = || SealError::Malformed(participant.to_string());
        let bytes = BASE64.decode(&sealed.0).map_err(|_| malformed())?;
        if bytes.len() <= NONCE_LEN {
            return Err(malformed());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| malformed())?;
        let plain = self
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: participant.as_str().as_bytes(),
                },
            )
            .map_err(|_| SealError::WrongKeyOrParticipant(participant.to_string()))?;
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| malformed())
    }
}

/// A refresh token sealed with the [`TokenKey`]: base64 of nonce ‖ ciphertext ‖ tag.
/// Safe to store, to put in a message, and to print in a dead letter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedToken(String);

impl SealedToken {
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey::parse(&TokenKey::generate()).unwrap()
    }

    #[test]
    fn sealed_tokens_open_only_for_their_participant_and_key() {
        let key = key();
        let alice = ParticipantId::new("alice").unwrap();
        let bob = ParticipantId::new("bob").unwrap();
        let token = Secret::new("refresh-token-value".to_owned());
        let sealed = key.seal(&alice, &token);
        assert!(!sealed.as_str().contains("refresh-token-value"));
        assert_eq!(key.open(&alice, &sealed).unwrap(), token);
        assert!(matches!(
            key.open(&bob, &sealed),
            Err(SealError::WrongKeyOrParticipant(_))
        ));
        assert!(matches!(
            self::key().open(&alice, &sealed),
            Err(SealError::WrongKeyOrParticipant(_))
        ));
        assert!(matches!(
            key.open(&alice, &SealedToken::from_stored("%%%".into())),
            Err(SealError::Malformed(_))
        ));
    }

    const PINNED_INVITATION_KEY: &str =
        "85702c18422f67e95eb3d7a44914514f16747a3fb7ccf211b5b6aac369dedda0";

    #[test]
    fn keys_parse_from_hex_or_base64_and_nothing_else() {
        let hex = Secret::new("ab".repeat(32));
        assert!(TokenKey::parse(&hex).is_ok());
        assert!(TokenKey::parse(&Secret::new("short".into())).is_err());
        assert!(TokenKey::parse(&Secret::new(BASE64.encode([1u8; 16]))).is_err());
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_are_stable() {
        let text = TokenKey::generate();
        let (a, b) = (
            TokenKey::parse(&text).unwrap(),
            TokenKey::parse(&text).unwrap(),
        );
        assert_eq!(a.derive("invitation"), b.derive("invitation"));
        assert_ne!(a.derive("invitation"), a.derive("consent-flow"));
        assert_ne!(a.derive("invitation"), key().derive("invitation"));
        // Not the raw key either.
        assert_ne!(a.derive("").expose(), a.raw.expose());
        // Pinned: HMAC-SHA256(32 × 0xab, "fitlink/invitation"), so a change of the derivation
        // (which would invalidate every outstanding invitation link) cannot go unnoticed.
        let pinned = TokenKey::parse(&Secret::new("ab".repeat(32))).unwrap();
        let hex: String = pinned
            .derive("invitation")
            .expose()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, PINNED_INVITATION_KEY);
        assert_eq!(format!("{:?}", a.derive("x")), "[redacted]");
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("ya29.secret".to_owned());
        assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
        assert_eq!(format!("{:?}", key()), "TokenKey([redacted])");
    }
}
