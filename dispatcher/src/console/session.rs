//! Who is signed in, and what they may do: a sealed session cookie, the two roles, and the CSRF
//! check every action passes.
//!
//! The session is not kept on the server: it is a value sealed with a key derived from the token
//! key ([`FlowSealer`], purpose-bound), so the console can restart or run as several replicas
//! and a browser cannot forge or extend one. It ends at its expiry (`--session-hours`) or at
//! sign-out; as with any sealed session, a stolen cookie works until it expires, which is why it
//! is `HttpOnly`, `SameSite=Strict`, `Secure` behind HTTPS, and short-lived.
//!
//! Every form that acts carries the session's CSRF token; [`Session::authorize`] refuses a form
//! without it (a page on another site cannot read it) before anything is done.

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use chrono::{TimeDelta, Utc};
use fitlink_shared::linkage::sealed::FlowSealer;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "fitlink_console";
/// The cookie that carries an identity-provider sign-in between the redirect and its callback.
pub const PENDING_COOKIE: &str = "fitlink_console_login";

const SESSION_PURPOSE: &str = "console-session";

/// What a signed-in person may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Sees every page; cannot act.
    Viewer,
    /// Also acts: sync now, consent links, dead-letter retry and discard.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// A signed-in person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Who, as the audit records them (an email, the admin's name).
    pub user: String,
    pub role: Role,
    /// Unix seconds.
    pub expires_at: i64,
    /// The token every action form carries.
    pub csrf: String,
}

/// Why an action was refused before anything was done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A viewer tried to act.
    NotAnOperator,
    /// The form did not carry this session's token: it was not made by this console.
    ForgedForm,
}

impl Session {
    /// Checks a form that acts: made by this console for this session, by an operator.
    pub fn authorize(&self, form_csrf: &str) -> Result<(), Refusal> {
        if !bool::from(self.csrf.as_bytes().ct_eq(form_csrf.as_bytes())) {
            return Err(Refusal::ForgedForm);
        }
        if self.role != Role::Operator {
            return Err(Refusal::NotAnOperator);
        }
        Ok(())
    }

    pub fn can_act(&self) -> bool {
        self.role == Role::Operator
    }
}

/// Issues and reads session cookies.
pub struct Sessions {
    sealer: FlowSealer,
    lifetime: TimeDelta,
    /// Cookies get `Secure` when the console is served over HTTPS.
    secure: bool,
}

impl Sessions {
    pub fn new(sealer: FlowSealer, lifetime_hours: u32, secure: bool) -> Self {
        Self {
            sealer,
            lifetime: TimeDelta::hours(i64::from(lifetime_hours.max(1))),
            secure,
        }
    }

    /// A new session for `user`, and its `Set-Cookie` value.
    pub fn start(&self, user: &str, role: Role) -> (Session, String) {
        let csrf_bytes: [u8; 32] = rand::random();
        let session = Session {
            user: user.to_owned(),
            role,
            expires_at: (Utc::now() + self.lifetime).timestamp(),
            csrf: base64_url(&csrf_bytes),
        };
        let sealed = self.sealer.seal(SESSION_PURPOSE, &session);
        let cookie = self.cookie(SESSION_COOKIE, &sealed, self.lifetime.num_seconds());
        (session, cookie)
    }

    /// The session in the request's cookie, if there is a valid one that has not expired.
    pub fn read(&self, headers: &HeaderMap) -> Option<Session> {
        let sealed = cookie_value(headers, SESSION_COOKIE)?;
        let session: Session = self.sealer.open(SESSION_PURPOSE, sealed).ok()?;
        (session.expires_at > Utc::now().timestamp()).then_some(session)
    }

    /// A short-lived cookie holding `value` sealed for `purpose` (a sign-in in progress).
    pub fn seal_cookie<T: Serialize>(&self, name: &str, purpose: &str, value: &T) -> String {
        self.cookie(name, &self.sealer.seal(purpose, value), 600)
    }

    pub fn open_cookie<T: serde::de::DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        name: &str,
        purpose: &str,
    ) -> Option<T> {
        self.sealer.open(purpose, cookie_value(headers, name)?).ok()
    }

    /// A `Set-Cookie` value that removes cookie `name`.
    pub fn clear(&self, name: &str) -> String {
        self.cookie(name, "", 0)
    }

    fn cookie(&self, name: &str, value: &str, max_age: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        // Lax for the sign-in cookie: the identity provider's redirect back is a cross-site
        // top-level navigation, which Strict would strip.
        let same_site = if name == PENDING_COOKIE {
            "Lax"
        } else {
            "Strict"
        };
        format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}")
    }
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The value of cookie `name` in the request, if present.
fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fitlink_shared::secret::Secret;

    fn sessions() -> Sessions {
        Sessions::new(FlowSealer::new(Secret::new([7u8; 32])), 8, true)
    }

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let value = cookie.split(';').next().unwrap();
        h.insert(COOKIE, value.parse().unwrap());
        h
    }

    #[test]
    fn a_session_reads_back_and_its_cookie_is_locked_down() {
        let s = sessions();
        let (session, cookie) = s.start("coordinator@example.org", Role::Operator);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(cookie.contains("Secure"), "{cookie}");
        assert_eq!(s.read(&headers(&cookie)), Some(session));
    }

    #[test]
    fn a_tampered_or_foreign_cookie_is_no_session() {
        let s = sessions();
        let (_, cookie) = s.start("a", Role::Operator);
        let tampered = cookie.replacen("fitlink_console=", "fitlink_console=x", 1);
        assert_eq!(s.read(&headers(&tampered)), None);
        let other = Sessions::new(FlowSealer::new(Secret::new([8u8; 32])), 8, false);
        assert_eq!(other.read(&headers(&cookie)), None, "another key");
    }

    #[test]
    fn actions_need_the_sessions_token_and_the_operator_role() {
        let s = sessions();
        let (operator, _) = s.start("o", Role::Operator);
        let (viewer, _) = s.start("v", Role::Viewer);
        assert_eq!(operator.authorize(&operator.csrf), Ok(()));
        assert_eq!(operator.authorize(""), Err(Refusal::ForgedForm));
        assert_eq!(operator.authorize(&viewer.csrf), Err(Refusal::ForgedForm));
        assert_eq!(viewer.authorize(&viewer.csrf), Err(Refusal::NotAnOperator));
    }
}
