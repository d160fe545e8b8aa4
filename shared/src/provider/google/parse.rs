//! Google Health responses, parsed: a body's text in, normalised rows or a classified
//! [`SyncError`] out. No I/O and no clock: [`GoogleHealthClient`](super::GoogleHealthClient)
//! sends the requests and hands every body here, and the bad-input tests feed these same
//! functions malformed bodies directly.
//!
//! A successful body of the wrong shape, or holding a value that cannot be stored, is
//! [`SyncError::Permanent`] with [`ParticipantState::ProviderDataInvalid`] (the client never
//! retries it); the token endpoint's answer can also be `ScopeMissing`. Failed requests' bodies
//! are classified by [`classify_api_error`] and [`classify_oauth_error`].
//!
//! The daily families have modules of their own, re-exported here so every parser is found in
//! one place: the summaries and roll-ups (`summaries`), sleep sessions (`sleep`) and the
//! nightly metrics (`nightly`).

use chrono::{DateTime, NaiveDate, Utc};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use super::REQUIRED_SCOPES;
use super::wire::*;
use crate::domain::{ParticipantState, Slice, UtcInstant};
use crate::errors::SyncError;
use crate::messages::{IntradayPoint, ProviderIdentity};
use crate::provider::http::unparsable_body;
use crate::provider::{AccessGrant, PairedDevice, expires_at};
use crate::secret::Secret;

pub use super::nightly::{
    parse_breathing_rate_page, parse_heart_rate_variability_page, parse_oxygen_saturation_page,
    parse_skin_temperature_page,
};
pub use super::sleep::parse_sleep_page;
pub use super::summaries::{
    SummaryMerge, parse_heart_rate_zones_page, parse_resting_heart_rate_page,
};

/// The access token's lifetime when the token response does not say (or says something that is
/// not a lifetime).
const DEFAULT_EXPIRES_IN: i64 = 3600;

/// One page of a `list` call (or of `pairedDevices`).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The token of the next page; `None` on the last (Google sends it absent or `""`).
    pub next_page_token: Option<String>,
}

/// Parses a body as `T`; a body of another shape is invalid provider data.
pub(super) fn json<T: DeserializeOwned>(what: &str, body: &str) -> Result<T, SyncError> {
    serde_json::from_str(body).map_err(|e| {
        unparsable_body(
            &e,
            format!("{what}: response is not the documented JSON shape: {e}"),
        )
    })
}

pub(super) fn next_page(token: Option<String>) -> Option<String> {
    token.filter(|t| !t.is_empty())
}

/// One page of `list heart-rate` over `slice`: every point checked to be inside the slice, with
/// an offset and a sane value.
pub fn parse_heart_rate_page(body: &str, slice: Slice) -> Result<Page<IntradayPoint>, SyncError> {
    let page: ListResponse<HeartRatePoint> = json("list heart-rate", body)?;
    let items = page
        .data_points
        .into_iter()
        .map(|p| {
            let t = p.heart_rate.sample_time;
            intraday_point(
                "heart-rate",
                slice,
                t.physical_time,
                t.utc_offset,
                p.heart_rate.beats_per_minute,
            )
        })
        .collect::<Result<_, _>>()?;
    Ok(Page {
        items,
        next_page_token: next_page(page.next_page_token),
    })
}

/// One page of `list steps` over `slice`, checked like [`parse_heart_rate_page`].
pub fn parse_steps_page(body: &str, slice: Slice) -> Result<Page<IntradayPoint>, SyncError> {
    let page: ListResponse<StepsPoint> = json("list steps", body)?;
    let items = page
        .data_points
        .into_iter()
        .map(|p| {
            let i = p.steps.interval;
            intraday_point(
                "steps",
                slice,
                i.start_time,
                i.start_utc_offset,
                p.steps.count,
            )
        })
        .collect::<Result<_, _>>()?;
    Ok(Page {
        items,
        next_page_token: next_page(page.next_page_token),
    })
}

/// One page of `pairedDevices`: every device with its battery and last sync time.
pub fn parse_paired_devices_page(body: &str) -> Result<Page<PairedDevice>, SyncError> {
    let what = "list pairedDevices";
    let page: PairedDevicesResponse = json(what, body)?;
    let items = page
        .paired_devices
        .into_iter()
        .map(|d| {
            // The instant goes into the job's outcome and the database as text: one without a
            // canonical text (a year past 9999, e.g. "9999-12-31T23:00:00-05:00") would make
            // that message undecodable by the writer.
            let last_sync_time = d
                .last_sync_time
                .map(|at| {
                    UtcInstant::checked(at).map_err(|_| {
                        SyncError::invalid_data(format!(
                            "{what}: lastSyncTime {at:?} is outside the years 0000-9999"
                        ))
                    })
                })
                .transpose()?;
            let device_id = d.name.rsplit('/').next().unwrap_or_default().to_owned();
            Ok(PairedDevice {
                device_id,
                battery: d.battery_status,
                battery_level: d.battery_level,
                device_version: d.device_version,
                device_type: d.device_type,
                last_sync_time,
            })
        })
        .collect::<Result<_, SyncError>>()?;
    Ok(Page {
        items,
        next_page_token: next_page(page.next_page_token),
    })
}

/// `settings`: the participant's time zone, checked to be an IANA name.
pub fn parse_settings(body: &str) -> Result<Option<String>, SyncError> {
    let settings: Settings = json("get settings", body)?;
    match settings.time_zone {
        Some(zone) if zone.parse::<chrono_tz::Tz>().is_err() => Err(SyncError::invalid_data(
            format!("get settings: {zone:?} is not an IANA time zone"),
        )),
        other => Ok(other),
    }
}

/// `identity`: the Google Health user id and the legacy Fitbit user id it maps to.
pub fn parse_identity(body: &str) -> Result<ProviderIdentity, SyncError> {
    let identity: Identity = json("get identity", body)?;
    Ok(ProviderIdentity {
        health_user_id: identity.health_user_id,
        legacy_user_id: identity.legacy_user_id.filter(|id| !id.is_empty()),
    })
}

/// A successful token-endpoint answer to a refresh with `sent_refresh_token`, at `now`: the
/// grant, or `ScopeMissing` when it names scopes and lacks one fitlink needs.
pub fn parse_token_response(
    body: &str,
    sent_refresh_token: &str,
    now: DateTime<Utc>,
) -> Result<AccessGrant, SyncError> {
    let what = "token refresh";
    let token: TokenResponse = serde_json::from_str(body)
        .map_err(|e| unparsable_body(&e, format!("{what}: response is not an OAuth token: {e}")))?;
    let scopes: Vec<String> = token
        .scope
        .as_deref()
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    if token.scope.is_some() {
        let missing: Vec<&str> = REQUIRED_SCOPES
            .iter()
            .copied()
            .filter(|needed| !scopes.iter().any(|s| s == needed))
            .collect();
        if !missing.is_empty() {
            return Err(SyncError::permanent(
                ParticipantState::ScopeMissing,
                format!("the participant did not grant {}", missing.join(", ")),
            ));
        }
    }
    Ok(AccessGrant {
        access_token: Secret::new(token.access_token),
        expires_at: expires_at(now, token.expires_in, DEFAULT_EXPIRES_IN),
        rotated_refresh_token: token
            .refresh_token
            .filter(|t| t != sent_refresh_token)
            .map(Secret::new),
        scopes,
        provider_user_id: None,
    })
}

/// Checks and normalises one intraday point: inside the slice, with an offset, a sane value.
pub(super) fn intraday_point(
    data_type: &str,
    slice: Slice,
    at: DateTime<Utc>,
    offset: Option<GoogleDuration>,
    value: Int64,
) -> Result<IntradayPoint, SyncError> {
    let datetime = UtcInstant::new(at);
    if datetime < slice.start || datetime >= slice.end {
        return Err(SyncError::invalid_data(format!(
            "list {data_type}: point at {datetime} is outside the requested slice [{}, {})",
            slice.start, slice.end
        )));
    }
    let offset = offset.ok_or_else(|| {
        SyncError::invalid_data(format!(
            "list {data_type}: point at {datetime} has no UTC offset"
        ))
    })?;
    if offset.0.abs() > 18.0 * 3600.0 || value.0 < 0 {
        return Err(SyncError::invalid_data(format!(
            "list {data_type}: point at {datetime} has an impossible offset or value"
        )));
    }
    Ok(IntradayPoint {
        datetime,
        utc_offset_seconds: offset.whole_seconds(),
        value: value.0,
    })
}

pub(super) fn civil_date(what: &str, date: Date) -> Result<NaiveDate, SyncError> {
    date.to_naive()
        .ok_or_else(|| SyncError::invalid_data(format!("{what}: {date:?} is not a calendar date")))
}

/// Classifies a data-API failure that is neither 429 nor 5xx.
pub fn classify_api_error(what: &str, status: StatusCode, body: &str) -> SyncError {
    let parsed = serde_json::from_str::<ApiErrorEnvelope>(body).ok();
    let (api_status, reason, message) = parsed
        .as_ref()
        .map(|e| {
            (
                e.error.status.as_str(),
                e.error.reason().unwrap_or(""),
                e.error.message.as_str(),
            )
        })
        .unwrap_or(("", "", ""));
    let detail = format!(
        "{what}: HTTP {} {api_status} {reason} {message}",
        status.as_u16()
    );
    match status {
        // The access token expired or was revoked mid-job: retry with a fresh one; a revoked
        // grant then shows up as invalid_grant at the refresh.
        StatusCode::UNAUTHORIZED => SyncError::access_token_refused(detail),
        StatusCode::FORBIDDEN => SyncError::permanent(ParticipantState::ScopeMissing, detail),
        StatusCode::BAD_REQUEST if api_status == "FAILED_PRECONDITION" => {
            SyncError::permanent(ParticipantState::NeedsReconsent, detail)
        }
        _ => SyncError::invalid_data(detail),
    }
}

/// Classifies a token-endpoint failure that is neither 429 nor 5xx.
pub fn classify_oauth_error(status: StatusCode, body: &str) -> SyncError {
    let parsed = serde_json::from_str::<OAuthError>(body).ok();
    let error = parsed.as_ref().map(|e| e.error.as_str()).unwrap_or("");
    let description = parsed
        .as_ref()
        .and_then(|e| e.error_description.as_deref())
        .unwrap_or("");
    match error {
        "invalid_grant" => SyncError::permanent(
            ParticipantState::Revoked,
            format!("token refresh: invalid_grant: {description}"),
        ),
        // A fleet configuration problem, not the participant's: retry (and dead-letter with a
        // reason that says what to fix) rather than mark every participant revoked.
        "invalid_client" | "unauthorized_client" => SyncError::transient(format!(
            "token refresh: the OAuth client was rejected ({error}); check FITLINK_GOOGLE_CLIENT_ID and FITLINK_GOOGLE_CLIENT_SECRET"
        )),
        _ => SyncError::transient(format!(
            "token refresh: HTTP {} {error} {description}",
            status.as_u16()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_errors_are_classified_by_what_to_do() {
        let revoked = classify_oauth_error(
            StatusCode::BAD_REQUEST,
            r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
        );
        assert!(matches!(
            revoked,
            SyncError::Permanent {
                state: ParticipantState::Revoked,
                ..
            }
        ));
        assert!(
            classify_oauth_error(StatusCode::UNAUTHORIZED, r#"{"error":"invalid_client"}"#)
                .is_transient()
        );
        assert!(classify_oauth_error(StatusCode::BAD_REQUEST, "<html>").is_transient());
    }

    #[test]
    fn api_errors_are_classified_by_what_to_do() {
        let scope = classify_api_error(
            "list steps",
            StatusCode::FORBIDDEN,
            r#"{"error":{"code":403,"status":"PERMISSION_DENIED","message":"Request had insufficient authentication scopes.","details":[{"reason":"ACCESS_TOKEN_SCOPE_INSUFFICIENT"}]}}"#,
        );
        match scope {
            SyncError::Permanent { state, reason } => {
                assert_eq!(state, ParticipantState::ScopeMissing);
                assert!(
                    reason.contains("ACCESS_TOKEN_SCOPE_INSUFFICIENT"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(classify_api_error("x", StatusCode::UNAUTHORIZED, "").is_transient());
    }
}
