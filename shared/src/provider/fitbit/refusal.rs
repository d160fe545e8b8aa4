//! Legacy Fitbit answers that are not data: what the quota headers say ([`parse_quota`]) and
//! how a failed request is classified ([`classify_data_error`], [`classify_token_error`], whose
//! callers [`redact`] the body first), so the client knows whether to retry, defer, deny one
//! family or stop the participant.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use super::wire::*;
use super::{INTRADAY_DENIED_REASON, RETIRED_REASON};
use crate::domain::ParticipantState;
use crate::errors::SyncError;
use crate::provider::http::{common_status_error, header_seconds, header_u64, retry_after};

/// Fitbit's quota window: the counter resets at the top of every hour.
const QUOTA_WINDOW: Duration = Duration::from_secs(3600);

/// What a response says about the participant's quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quota {
    /// No quota headers: nothing learnt.
    Unknown,
    /// Requests are left.
    Left,
    /// Spent (a 429, or `Fitbit-Rate-Limit-Remaining: 0`) until this long from now.
    SpentFor(Duration),
}

/// Reads the quota headers of a response.
pub fn parse_quota(status: StatusCode, headers: &HeaderMap) -> Quota {
    let remaining = header_u64(headers, super::RATE_LIMIT_REMAINING);
    if status == StatusCode::TOO_MANY_REQUESTS || remaining == Some(0) {
        Quota::SpentFor(quota_reset(headers))
    } else if remaining.is_some() {
        Quota::Left
    } else {
        Quota::Unknown
    }
}

/// When a spent quota resets: `Fitbit-Rate-Limit-Reset`, else `Retry-After` (reported to be
/// inaccurate, so second choice), else the top of the hour (when Fitbit resets the counter).
///
/// At most an hour: the counter resets every hour, so a longer wait is not Fitbit's. A huge
/// header value (`18446744073709551615`) used to panic when the session added it to the clock.
pub(super) fn quota_reset(headers: &HeaderMap) -> Duration {
    header_seconds(headers, super::RATE_LIMIT_RESET)
        .or_else(|| retry_after(headers))
        .unwrap_or_else(|| until_top_of_hour(Utc::now()))
        .min(QUOTA_WINDOW)
}

pub(super) fn until_top_of_hour(now: DateTime<Utc>) -> Duration {
    Duration::from_secs(3600 - now.timestamp().rem_euclid(3600) as u64)
}

/// What kind of path a request goes to: a 403 means different things on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    /// What the whole job needs (profile, devices): a 403 stops it.
    Data,
    /// One daily family's data: a 403 is that family's scope not granted, and only that
    /// family is lost.
    Daily,
    Intraday,
}

/// A classified failed request.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Error(SyncError),
    /// A 403 on an intraday path: the app or the participant has no intraday access.
    IntradayDenied(String),
    /// A 403 on a daily family's path: the participant did not grant its scope.
    FamilyDenied(String),
}

impl Refusal {
    /// For paths where a per-family or intraday refusal is not expected; if one somehow
    /// comes, it is a scope problem like any other 403.
    pub fn into_error(self) -> SyncError {
        match self {
            Refusal::Error(e) => e,
            Refusal::IntradayDenied(reason) | Refusal::FamilyDenied(reason) => {
                SyncError::permanent(ParticipantState::ScopeMissing, reason)
            }
        }
    }
}

/// What went wrong, from the Fitbit error body if there is one.
fn detail(what: &str, status: StatusCode, body: &str) -> String {
    match ErrorBody::parse(body) {
        Some(e) => format!(
            "{what}: HTTP {} {}: {}",
            status.as_u16(),
            e.error_type(),
            e.message()
        ),
        None => format!(
            "{what}: HTTP {} (the body is not a Fitbit error, classified by status alone): {}",
            status.as_u16(),
            body.chars().take(200).collect::<String>()
        ),
    }
}

/// Classifies a data-API failure. `body` must already be [`redact`]ed.
pub fn classify_data_error(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    kind: PathKind,
) -> Refusal {
    if status == StatusCode::GONE {
        return Refusal::Error(SyncError::permanent(
            ParticipantState::NeedsReconsent,
            RETIRED_REASON,
        ));
    }
    if let Some(error) = common_status_error(what, status, headers, body) {
        return Refusal::Error(with_quota_reset(error, headers));
    }
    let error_type = ErrorBody::parse(body)
        .map(|e| e.error_type().to_owned())
        .unwrap_or_default();
    let detail = detail(what, status, body);
    Refusal::Error(match status {
        StatusCode::UNAUTHORIZED if error_type == "invalid_token" => {
            SyncError::permanent(ParticipantState::Revoked, detail)
        }
        // expired_token (and a 401 we cannot read): the worker refreshes and tries again; a
        // revoked grant then shows up as invalid_grant at the refresh.
        StatusCode::UNAUTHORIZED => SyncError::access_token_refused(detail),
        StatusCode::FORBIDDEN if kind == PathKind::Intraday => {
            return Refusal::IntradayDenied(format!("{INTRADAY_DENIED_REASON}: {detail}"));
        }
        StatusCode::FORBIDDEN if kind == PathKind::Daily => {
            return Refusal::FamilyDenied(detail);
        }
        StatusCode::FORBIDDEN => SyncError::permanent(ParticipantState::ScopeMissing, detail),
        _ => SyncError::invalid_data(detail),
    })
}

/// Classifies a token-endpoint failure. `body` must already be [`redact`]ed.
pub fn classify_token_error(status: StatusCode, headers: &HeaderMap, body: &str) -> SyncError {
    let what = "token refresh";
    if status == StatusCode::GONE {
        return SyncError::permanent(ParticipantState::NeedsReconsent, RETIRED_REASON);
    }
    if let Some(error) = common_status_error(what, status, headers, body) {
        return with_quota_reset(error, headers);
    }
    let error_type = ErrorBody::parse(body)
        .map(|e| e.error_type().to_owned())
        .unwrap_or_default();
    let detail = detail(what, status, body);
    match (status, error_type.as_str()) {
        (StatusCode::CONFLICT, _) => SyncError::transient(format!(
            "{detail} (another client is refreshing this participant's token at the same time)"
        )),
        // A refused single-use token: revoked by the participant, or consumed by a refresh whose
        // rotated token was lost. Either way the participant must consent again (through Google
        // Health, now that the legacy API is retired) — unless the writer finds a newer token
        // was stored since, and retries once with it.
        (_, "invalid_grant") => SyncError::permanent(
            ParticipantState::NeedsReconsent,
            format!(
                "{detail} (Fitbit refresh tokens are single-use: the participant revoked access, or this token was already used)"
            ),
        ),
        // A fleet configuration problem, not the participant's: retry (and dead-letter with a
        // reason that says what to fix) rather than mark every participant revoked.
        (_, "invalid_client" | "unauthorized_client") | (StatusCode::UNAUTHORIZED, _) => {
            SyncError::transient(format!(
                "{detail}; the OAuth client was rejected: check FITLINK_FITBIT_CLIENT_ID and FITLINK_FITBIT_CLIENT_SECRET"
            ))
        }
        _ => SyncError::transient(detail),
    }
}

/// A 429 retries when Fitbit's quota resets (`Fitbit-Rate-Limit-Reset`), not at a blind short
/// delay.
fn with_quota_reset(error: SyncError, headers: &HeaderMap) -> SyncError {
    match error {
        SyncError::RateLimited { reason, .. } => SyncError::RateLimited {
            reason,
            retry_after: Some(quota_reset(headers)),
        },
        other => other,
    }
}

/// Removes tokens from text that will reach a reason: the known secrets, and any run of 24 or
/// more token characters holding a digit (Fitbit's messages quote the token: "Access token
/// expired: eyJ..."; error types like `insufficient_permissions` have no digit and stay).
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        text = text.replace(secret, "[redacted]");
    }
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= 24 && run.chars().any(|c| c.is_ascii_digit()) {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_token_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}
