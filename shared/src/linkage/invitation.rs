//! Invitation links: `fitlink invite` signs an [`Invitation`]; the portal checks the link's token
//! without the database (the writer still refuses an invitation used before).
//!
//! Token: `v1.<base64url(JSON of the invitation)>.<base64url(HMAC-SHA256 of "v1.<payload>")>`,
//! with a key derived from the current token key for this purpose only. It is signed, not
//! encrypted: it names only the participant id and the dates, which the participant may see.
//! The portal also accepts links signed with the older keys of the set (`FITLINK_TOKEN_KEYS`),
//! so the links sent before a key rotation work until their key is dropped from the set.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{b64url, b64url_decode};
use crate::domain::UtcInstant;
use crate::messages::Invitation;
use crate::secret::Secret;

/// The version prefix: a later format can be told apart from this one.
const VERSION: &str = "v1";
/// A real token is a few hundred characters; anything longer is refused before any work.
pub const MAX_TOKEN_LEN: usize = 2048;

type HmacSha256 = Hmac<Sha256>;

/// Why an invitation link was refused. Carries no part of the token.
#[derive(thiserror::Error, Debug, PartialEq)]
pub enum InvitationError {
    /// Not an invitation token at all (cut short, mangled by a mail client, too long).
    #[error("the invitation link is not a valid link (cut short or mangled?)")]
    Malformed,
    /// Well formed, but not signed with this deployment's key: altered or made up.
    #[error("the invitation link was not issued by this study (its signature does not match)")]
    Forged,
    #[error("the invitation expired at {expired_at}")]
    Expired { expired_at: UtcInstant },
}

/// Signs and checks invitation tokens.
#[derive(Clone)]
pub struct InvitationSigner {
    /// The first signs; any verifies (the older token keys' derived keys).
    keys: Vec<Secret<[u8; 32]>>,
}

impl std::fmt::Debug for InvitationSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InvitationSigner([redacted])")
    }
}

impl InvitationSigner {
    /// `key` from `TokenKeys::derive("invitation")`.
    pub fn new(key: Secret<[u8; 32]>) -> Self {
        Self { keys: vec![key] }
    }

    /// `keys` from `TokenKeys::derive_all("invitation")`: signs with the first, accepts a link
    /// signed with any.
    pub fn with_keys(keys: Vec<Secret<[u8; 32]>>) -> Self {
        assert!(!keys.is_empty(), "an invitation signer needs a key");
        Self { keys }
    }

    fn mac(&self) -> HmacSha256 {
        mac_with(&self.keys[0])
    }

    /// The token for `invitation`: URL-path safe (`[A-Za-z0-9_.-]`).
    pub fn sign(&self, invitation: &Invitation) -> String {
        let json = serde_json::to_vec(invitation).expect("an invitation serialises");
        let signed = format!("{VERSION}.{}", b64url(&json));
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        format!("{signed}.{}", b64url(&mac.finalize().into_bytes()))
    }

    /// The invitation a token carries, if this deployment signed it and it has not expired at
    /// `now`. The signature is checked (in constant time) before anything in the payload is
    /// believed, the expiry after it.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Invitation, InvitationError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(InvitationError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(VERSION), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvitationError::Malformed);
        };
        let base64url = |part: &str| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !base64url(payload) || !base64url(signature) {
            return Err(InvitationError::Malformed);
        }
        // A signature part of the right alphabet that does not decode (wrong length, stray
        // trailing bits) is an altered signature: forged, like one that decodes but differs.
        let signature = b64url_decode(signature).ok_or(InvitationError::Forged)?;
        let signed = &token.as_bytes()[..VERSION.len() + 1 + payload.len()];
        let genuine = self.keys.iter().any(|key| {
            let mut mac = mac_with(key);
            mac.update(signed);
            mac.verify_slice(&signature).is_ok()
        });
        if !genuine {
            return Err(InvitationError::Forged);
        }
        let invitation: Invitation = b64url_decode(payload)
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or(InvitationError::Malformed)?;
        if now >= invitation.expires_at.get() {
            return Err(InvitationError::Expired {
                expired_at: invitation.expires_at,
            });
        }
        Ok(invitation)
    }
}

fn mac_with(key: &Secret<[u8; 32]>) -> HmacSha256 {
    <HmacSha256 as Mac>::new_from_slice(key.expose()).expect("HMAC takes any key length")
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::domain::{ParticipantId, Provider};

    fn signer(byte: u8) -> InvitationSigner {
        InvitationSigner::new(Secret::new([byte; 32]))
    }

    fn now() -> DateTime<Utc> {
        crate::domain::parse_instant("2026-11-20T10:00:00Z").unwrap()
    }

    fn invitation() -> Invitation {
        Invitation {
            invitation_id: Uuid::from_u128(7),
            participant_id: ParticipantId::new("P-0001").unwrap(),
            provider: Provider::GoogleHealth,
            sync_from: UtcInstant::parse("2026-01-01T00:00:00Z").unwrap(),
            issued_at: UtcInstant::new(now()),
            expires_at: UtcInstant::new(now() + TimeDelta::days(14)),
        }
    }

    /// `token` with the character at `at` replaced by another base64url character.
    fn flip(token: &str, at: usize) -> String {
        let mut bytes = token.as_bytes().to_vec();
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn after_a_key_rotation_links_signed_with_the_older_key_still_verify() {
        let old_link = signer(1).sign(&invitation());
        let rotated = InvitationSigner::with_keys(vec![Secret::new([2; 32]), Secret::new([1; 32])]);
        assert_eq!(rotated.verify(&old_link, now()), Ok(invitation()));
        let new_link = rotated.sign(&invitation());
        assert_eq!(signer(2).verify(&new_link, now()), Ok(invitation()));
        assert_eq!(
            signer(1).verify(&new_link, now()),
            Err(InvitationError::Forged)
        );
        // The old key dropped: its links are refused.
        assert_eq!(
            signer(2).verify(&old_link, now()),
            Err(InvitationError::Forged)
        );
    }

    #[test]
    fn a_signed_invitation_verifies_to_itself_and_is_url_safe() {
        let token = signer(1).sign(&invitation());
        assert!(token.starts_with("v1."));
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
        assert_eq!(signer(1).verify(&token, now()), Ok(invitation()));
    }

    #[test]
    fn an_altered_payload_or_signature_or_another_key_is_forged() {
        let token = signer(1).sign(&invitation());
        let payload_at = 5;
        let mac_at = token.len() - 10;
        assert_eq!(
            signer(1).verify(&flip(&token, payload_at), now()),
            Err(InvitationError::Forged)
        );
        assert_eq!(
            signer(1).verify(&flip(&token, mac_at), now()),
            Err(InvitationError::Forged)
        );
        assert_eq!(
            signer(2).verify(&token, now()),
            Err(InvitationError::Forged)
        );
        // A payload re-encoded with another participant but the old signature.
        let mut other = invitation();
        other.participant_id = ParticipantId::new("P-0002").unwrap();
        let forged_payload = signer(9).sign(&other);
        let spliced = format!(
            "{}.{}",
            forged_payload.rsplit_once('.').unwrap().0,
            token.rsplit_once('.').unwrap().1
        );
        assert_eq!(
            signer(1).verify(&spliced, now()),
            Err(InvitationError::Forged)
        );
    }

    #[test]
    fn an_invitation_expires_at_its_expiry() {
        let token = signer(1).sign(&invitation());
        let expires_at = invitation().expires_at;
        let just_before = expires_at.get() - TimeDelta::seconds(1);
        assert!(signer(1).verify(&token, just_before).is_ok());
        assert_eq!(
            signer(1).verify(&token, expires_at.get()),
            Err(InvitationError::Expired {
                expired_at: expires_at
            })
        );
        // The signature is checked first: an expired forgery is forged.
        assert_eq!(
            signer(2).verify(&token, expires_at.get()),
            Err(InvitationError::Forged)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let token = signer(1).sign(&invitation());
        let long = format!("{token}{}", "A".repeat(MAX_TOKEN_LEN));
        for garbage in [
            "",
            ".",
            "v1..",
            "v1.abc",
            "v2.abc.def",
            "v1.a b.def",
            "v1.abc.def.ghi",
            "v1.%41.def",
            long.as_str(),
        ] {
            assert_eq!(
                signer(1).verify(garbage, now()),
                Err(InvitationError::Malformed),
                "{garbage:?}"
            );
        }
        // Validly signed, but not an invitation inside.
        let mut mac = signer(1).mac();
        let signed = format!("v1.{}", b64url(b"{\"not\":\"an invitation\"}"));
        mac.update(signed.as_bytes());
        let token = format!("{signed}.{}", b64url(&mac.finalize().into_bytes()));
        assert_eq!(
            signer(1).verify(&token, now()),
            Err(InvitationError::Malformed)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_text_never_panics_and_never_verifies(text in any::<String>(), dotted in "v1\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,60}") {
            prop_assert!(signer(1).verify(&text, now()).is_err());
            prop_assert!(signer(1).verify(&dotted, now()).is_err());
        }
    }
}
