//! Linkage: what the consent portal and the webhook endpoints need, as pure library code (no
//! server, no broker, no database).
//!
//! - [`invitation`]: signed invitation links, checked without the database;
//! - [`sealed`]: the portal keeps no session: the OAuth `state` and its cookie are sealed values;
//! - [`pkce`]: RFC 7636 code verifiers and challenges;
//! - [`oauth`]: the authorization URL, the code exchange and revocation for both providers;
//! - [`webhook`]: provider notification signatures and bodies, parsed into what changed.
//!
//! Every key here is derived from the token keys ([`TokenKeys::derive`]), so the operator
//! manages one secret; after a key rotation what was signed or sealed with an older key of the
//! set is still accepted ([`TokenKeys::derive_all`]).
//!
//! [`TokenKeys::derive`]: crate::secret::TokenKeys::derive
//! [`TokenKeys::derive_all`]: crate::secret::TokenKeys::derive_all

pub mod invitation;
pub mod oauth;
pub mod pkce;
pub mod sealed;
pub mod webhook;

pub use invitation::{InvitationError, InvitationSigner};
pub use oauth::{CodeGrant, OAuthClient, OAuthError, Revocation, missing_scopes};
pub use pkce::{Pkce, s256_challenge};
pub use sealed::{FlowSealer, SealedValueError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Base64url without padding: what every value here that travels in a URL or a cookie uses.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes [`b64url`] text (strict: no padding, canonical trailing bits).
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
}
