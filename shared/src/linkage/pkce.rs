//! PKCE (RFC 7636): the consent flow's code verifier and its S256 challenge. Both providers
//! support it; it binds the authorization code to the browser flow that asked for it, so a code
//! leaked from a redirect is useless on its own.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// A verifier and its challenge. The verifier is a secret until the code exchange: it travels
/// sealed in the flow's cookie, the challenge in the authorization URL.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub verifier: Secret<String>,
    pub challenge: String,
}

impl Pkce {
    /// A fresh verifier of 64 characters of `[A-Za-z0-9-_]` (RFC 7636 allows 43 to 128 of
    /// `[A-Za-z0-9-._~]`): base64url of 48 random bytes, 384 bits of entropy.
    pub fn generate() -> Self {
        let bytes: [u8; 48] = rand::random();
        let verifier = URL_SAFE_NO_PAD.encode(bytes);
        let challenge = s256_challenge(&verifier);
        Self {
            verifier: Secret::new(verifier),
            challenge,
        }
    }
}

/// `base64url-nopad(SHA256(verifier))`, the `S256` method.
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_appendix_b_example() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_verifiers_are_valid_fresh_and_match_their_challenge() {
        let (a, b) = (Pkce::generate(), Pkce::generate());
        for pkce in [&a, &b] {
            let verifier = pkce.verifier.expose();
            assert_eq!(verifier.len(), 64);
            assert!(
                verifier
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-._~".contains(&c))
            );
            assert_eq!(pkce.challenge, s256_challenge(verifier));
        }
        assert_ne!(a.verifier, b.verifier);
        assert_eq!(format!("{a:?}").matches("[redacted]").count(), 1);
    }
}
