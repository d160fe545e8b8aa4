//! Secrets: a wrapper that cannot be printed, and sealing of refresh tokens at rest.
//!
//! Refresh tokens travel and rest only sealed (XChaCha20-Poly1305): in the database, in queue
//! messages and in dead letters. The participant id is the associated data, so a sealed token
//! copied onto another participant's row fails to open instead of silently syncing the wrong
//! person's data.
//!
//! Keys rotate ([`TokenKeys`]: `FITLINK_TOKEN_KEYS`, the current key first, then older ones).
//! A sealed token names the key that sealed it ([`KeyId`]), so an open tries that key only, and
//! a process that lacks it can say which key it lacks instead of calling the token bad. Tokens
//! sealed before keys had ids (the format without a header) still open, by trying every key;
//! `fitlink credentials rekey` seals them again under the current key.
//!
//! Sealed bytes (the text is their standard base64):
//! - with a key id: `"FLK1"` ‖ key id (4 bytes) ‖ nonce (24) ‖ ciphertext ‖ tag (16);
//! - without (before rotation): nonce (24) ‖ ciphertext ‖ tag (16).
//!
//! Both are base64 of bytes, so the database column (text in SQLite, `bytea` in PostgreSQL) and
//! `fitlink store copy` take either unchanged.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

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

/// Why a token could not be sealed or opened, or a key not read. Never carries a token or a key.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "a token key must be 32 bytes, given as 64 hex digits or base64 (generate one with `fitlink keygen`)"
    )]
    BadKey,
    #[error(
        "key {position} of the token key list is not a key: each must be 32 bytes, given as 64 hex digits or base64 (generate one with `fitlink keygen`)"
    )]
    BadKeyInList { position: usize },
    #[error(
        "no token key given: set FITLINK_TOKEN_KEYS (the current key first, then older ones), FITLINK_TOKEN_KEYS_FILE or FITLINK_TOKEN_KEY"
    )]
    NoKey,
    /// The token was sealed with a key this process does not hold: a configuration problem, not
    /// the participant's.
    #[error(
        "sealed token for participant {participant} was sealed with key {key}, which this process does not hold (its keys: {have}): add that key to FITLINK_TOKEN_KEYS"
    )]
    UnknownKey {
        participant: String,
        key: KeyId,
        have: KeyIds,
    },
    /// `key` is the key the token names (then that key did not open it: the token was altered or
    /// belongs to another participant), or `None` for the format without a key id, which was
    /// tried with every key in `tried`.
    #[error("sealed token for participant {participant} {}", describe_wrong(.key, .tried))]
    WrongKeyOrParticipant {
        participant: String,
        key: Option<KeyId>,
        tried: KeyIds,
    },
    #[error("sealed token for participant {0} is not valid base64 of a sealed token")]
    Malformed(String),
}

fn describe_wrong(key: &Option<KeyId>, tried: &KeyIds) -> String {
    match key {
        Some(key) => format!(
            "does not open with the key it names ({key}): it was altered, or belongs to another participant"
        ),
        None => format!(
            "(sealed before keys had ids) opens with none of the keys {tried} (wrong keys, or the token belongs to another participant)"
        ),
    }
}

impl SealError {
    /// True if the failure may be this process's key set rather than the token: the token names
    /// a key the set lacks, or it has no key id and opened with no key of the set. A token that
    /// names a key the set holds and still does not open is the token's own fault.
    pub fn may_be_missing_key(&self) -> bool {
        matches!(
            self,
            SealError::UnknownKey { .. } | SealError::WrongKeyOrParticipant { key: None, .. }
        )
    }

    /// The participant the token was for, when the error is about a token.
    pub fn participant(&self) -> Option<&str> {
        match self {
            SealError::UnknownKey { participant, .. }
            | SealError::WrongKeyOrParticipant { participant, .. }
            | SealError::Malformed(participant) => Some(participant),
            _ => None,
        }
    }
}

/// A key's short public name: the first 4 bytes (8 hex digits) of the SHA-256 of its 32 bytes.
/// Computed, not configured, so the operator never has to name keys; it reveals nothing usable
/// about the key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 4]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Key ids, printed as a comma-separated list (for error messages).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyIds(pub Vec<KeyId>);

impl fmt::Display for KeyIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, id) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{id}")?;
        }
        Ok(())
    }
}

/// One 32-byte token key. Processes hold a [`TokenKeys`]; this is one member of it.
///
/// It keeps the raw key bytes (wrapped, so they cannot be printed) to [derive](Self::derive) the
/// consent portal's keys from: one secret for the operator to manage, not three.
#[derive(Clone)]
pub struct TokenKey {
    cipher: XChaCha20Poly1305,
    raw: Secret<[u8; 32]>,
    id: KeyId,
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenKey({}, [redacted])", self.id)
    }
}

const NONCE_LEN: usize = 24;
/// The first bytes of a token sealed with a key id.
const FORMAT_V1: &[u8; 4] = b"FLK1";
const HEADER_LEN: usize = FORMAT_V1.len() + 4;

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
        let digest = Sha256::digest(raw);
        Ok(Self {
            cipher,
            raw: Secret::new(raw),
            id: KeyId([digest[0], digest[1], digest[2], digest[3]]),
        })
    }

    pub fn id(&self) -> KeyId {
        self.id
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

    /// nonce ‖ ciphertext ‖ tag of `token`, the participant as associated data.
    fn seal_body(&self, participant: &ParticipantId, token: &Secret<String>) -> Vec<u8> {
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
        sealed
    }

    /// The token in nonce ‖ ciphertext ‖ tag, if this key sealed it for `participant`. `None`
    /// for any failure: which one is the caller's to say.
    fn open_body(&self, participant: &ParticipantId, body: &[u8]) -> Option<Vec<u8>> {
        if body.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = body.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
        self.cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: participant.as_str().as_bytes(),
                },
            )
            .ok()
    }
}

/// The keys that seal refresh tokens: the current one seals, every one opens what it sealed.
/// Load it once per process ([`TokenKeyArgs`](crate::config::TokenKeyArgs)).
///
/// The derived keys (invitation signatures, the consent flow, console sessions) come from the
/// current key; [`derive_all`](Self::derive_all) gives the older keys' too, so what was signed
/// before a rotation is still accepted while the old key is in the set.
#[derive(Clone, Debug)]
pub struct TokenKeys {
    /// The current key first; never empty, no key twice.
    keys: Vec<TokenKey>,
}

impl TokenKeys {
    /// The current key, then older ones (duplicates are dropped).
    pub fn new(current: TokenKey, older: impl IntoIterator<Item = TokenKey>) -> Self {
        let mut keys = vec![current];
        for key in older {
            if !keys.iter().any(|k| k.id == key.id) {
                keys.push(key);
            }
        }
        Self { keys }
    }

    /// Keys separated by commas, whitespace or new lines, the current one first. One key is a
    /// set of one (`FITLINK_TOKEN_KEY`).
    pub fn parse(text: &Secret<String>) -> Result<Self, SealError> {
        let texts: Vec<&str> = text
            .expose()
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .collect();
        let single = texts.len() == 1;
        let mut keys = texts.into_iter().enumerate().map(|(i, t)| {
            TokenKey::parse(&Secret::new(t.to_owned())).map_err(|_| {
                if single {
                    SealError::BadKey
                } else {
                    SealError::BadKeyInList { position: i + 1 }
                }
            })
        });
        let current = keys.next().ok_or(SealError::NoKey)??;
        Ok(Self::new(current, keys.collect::<Result<Vec<_>, _>>()?))
    }

    pub fn current(&self) -> &TokenKey {
        &self.keys[0]
    }

    /// Every key's id, the current one first.
    pub fn ids(&self) -> KeyIds {
        KeyIds(self.keys.iter().map(TokenKey::id).collect())
    }

    fn by_id(&self, id: KeyId) -> Option<&TokenKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// Whether this set holds the key `id` names (without opening anything).
    pub fn holds(&self, id: KeyId) -> bool {
        self.by_id(id).is_some()
    }

    /// The current key's [`TokenKey::derive`].
    pub fn derive(&self, purpose: &str) -> Secret<[u8; 32]> {
        self.current().derive(purpose)
    }

    /// Every key's [`TokenKey::derive`], the current one first: sign or seal with the first,
    /// accept any.
    pub fn derive_all(&self, purpose: &str) -> Vec<Secret<[u8; 32]>> {
        self.keys.iter().map(|k| k.derive(purpose)).collect()
    }

    /// Seals `token` for `participant` with the current key, naming it.
    pub fn seal(&self, participant: &ParticipantId, token: &Secret<String>) -> SealedToken {
        let key = self.current();
        let mut sealed = FORMAT_V1.to_vec();
        sealed.extend_from_slice(&key.id.0);
        sealed.extend_from_slice(&key.seal_body(participant, token));
        SealedToken(BASE64.encode(sealed))
    }

    /// Opens a token with the key it names, or (the format without a key id) with whichever key
    /// of the set sealed it.
    pub fn open(
        &self,
        participant: &ParticipantId,
        sealed: &SealedToken,
    ) -> Result<Secret<String>, SealError> {
        let malformed = || SealError::Malformed(participant.to_string());
        let bytes = BASE64.decode(&sealed.0).map_err(|_| malformed())?;
        // A token without a key id begins with a random nonce, which may (once in 2^32) begin
        // like a header: whatever a header-like token fails with, it is tried without one too.
        let without_id = || {
            self.keys
                .iter()
                .find_map(|key| key.open_body(participant, &bytes))
        };
        let plain = match sealed_key_id(&bytes) {
            Some(id) => match self.by_id(id) {
                Some(key) => key
                    .open_body(participant, &bytes[HEADER_LEN..])
                    .or_else(without_id)
                    .ok_or_else(|| SealError::WrongKeyOrParticipant {
                        participant: participant.to_string(),
                        key: Some(id),
                        tried: KeyIds(vec![id]),
                    })?,
                None => without_id().ok_or_else(|| SealError::UnknownKey {
                    participant: participant.to_string(),
                    key: id,
                    have: self.ids(),
                })?,
            },
            None => {
                if bytes.len() <= NONCE_LEN {
                    return Err(malformed());
                }
                without_id().ok_or_else(|| SealError::WrongKeyOrParticipant {
                    participant: participant.to_string(),
                    key: None,
                    tried: self.ids(),
                })?
            }
        };
        String::from_utf8(plain)
            .map(Secret::new)
            .map_err(|_| malformed())
    }
}

/// The key id in a sealed token's header, if it has one.
fn sealed_key_id(bytes: &[u8]) -> Option<KeyId> {
    (bytes.len() > HEADER_LEN + NONCE_LEN && bytes.starts_with(FORMAT_V1)).then(|| {
        KeyId(
            bytes[FORMAT_V1.len()..HEADER_LEN]
                .try_into()
                .expect("four bytes"),
        )
    })
}

/// A refresh token sealed with a [`TokenKeys`]: base64 of the bytes described at the top of
/// this module. Safe to store, to put in a message, and to print in a dead letter.
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

    /// The id of the key that sealed it; `None` for a token sealed before keys had ids (or one
    /// that is not base64 at all).
    pub fn key_id(&self) -> Option<KeyId> {
        sealed_key_id(&BASE64.decode(&self.0).ok()?)
    }
}

pub mod canary;
#[cfg(test)]
mod tests;
