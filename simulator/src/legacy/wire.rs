//! Fitbit's JSON conventions: the error envelope
//! `{"errors":[{"errorType","fieldName","message"}],"success":false}`, the proxy error
//! page a fault can serve instead, zone-less local timestamps and the legacy heart-rate
//! zone objects.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDateTime;
use serde_json::{Value, json};

use crate::generator::DaySummary;
use crate::wire::json_response;

/// Appended to Fitbit's OAuth error messages.
const VISIT: &str = "Visit https://dev.fitbit.com/docs/oauth2 for more information on the Fitbit Web API authorization process.";

/// An error in Fitbit's envelope.
#[derive(Debug, Clone)]
pub(crate) struct FitbitError {
    pub code: StatusCode,
    pub error_type: &'static str,
    pub field_name: Option<&'static str>,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl FitbitError {
    pub(crate) fn new(
        code: StatusCode,
        error_type: &'static str,
        message: impl Into<String>,
    ) -> Self {
        FitbitError {
            code,
            error_type,
            field_name: None,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn header_missing() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            format!("Authorization header required. {VISIT}"),
        )
    }

    pub(crate) fn invalid_token(token: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            format!("Access token invalid: {token}. {VISIT}"),
        )
    }

    pub(crate) fn expired_token(token: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "expired_token",
            format!("Access token expired: {token}. {VISIT}"),
        )
    }

    pub(crate) fn invalid_grant(refresh_token: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            format!("Refresh token invalid: {refresh_token}. {VISIT}"),
        )
    }

    /// An authorization code that is unknown, used, expired or fails PKCE.
    pub(crate) fn invalid_code(code: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            format!("Authorization code invalid: {code}. {VISIT}"),
        )
    }

    pub(crate) fn invalid_client(message: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            format!("{message} {VISIT}"),
        )
    }

    pub(crate) fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub(crate) fn rate_limited(retry_after: Option<u64>) -> Self {
        FitbitError {
            field_name: Some("n/a"),
            retry_after,
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "system", "Too Many Requests")
        }
    }

    pub(crate) fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "system",
            "The service is temporarily unavailable. Please try again later.",
        )
    }

    pub(crate) fn validation(message: impl Into<String>) -> Self {
        FitbitError {
            field_name: Some("n/a"),
            ..Self::new(StatusCode::BAD_REQUEST, "validation", message)
        }
    }

    pub(crate) fn not_found() -> Self {
        FitbitError {
            field_name: Some("n/a"),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "The API you are requesting could not be found.",
            )
        }
    }

    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "request",
            "The HTTP method is not allowed for this resource.",
        )
    }

    pub(crate) fn other_user(user: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_permissions",
            format!("Access to the data of user {user} is not permitted for this token."),
        )
    }

    /// A token without the scope a resource needs.
    pub(crate) fn insufficient_scope(scope: &str) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!("This application does not have permission to access {scope} data. {VISIT}"),
        )
    }

    pub(crate) fn intraday_not_permitted() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient_permissions",
            "Intraday data is not permitted for this application. Request access to intraday time series through the Fitbit developer support.",
        )
    }

    /// What every legacy path answers once the API is turned off (`POST /_sim/legacy`).
    pub(crate) fn gone() -> Self {
        Self::new(
            StatusCode::GONE,
            "gone",
            "The legacy Fitbit Web API and Fitbit OAuth endpoints have been turned off. Use the Google Health API.",
        )
    }

    pub(crate) fn body(&self) -> Value {
        let mut error = json!({ "errorType": self.error_type, "message": self.message });
        if let Some(field) = self.field_name {
            error["fieldName"] = json!(field);
        }
        json!({ "errors": [error], "success": false })
    }
}

impl IntoResponse for FitbitError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.code, &self.body());
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.code == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"api.fitbit.com\""),
            );
        }
        response
    }
}

/// A non-JSON 502 from a proxy in front of the API (fault `fail_5xx` + `malformed_json`).
pub(crate) fn bad_gateway_page() -> Response {
    let body = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n";
    let mut response = (StatusCode::BAD_GATEWAY, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

/// `yyyy-MM-ddTHH:mm:ss.SSS` without offset (`lastSyncTime`).
pub(crate) fn local_millis(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

/// A JSON number the way Fitbit writes floats: whole values without a fraction (`0`,
/// not `0.0`), others as the shortest round-tripping decimal.
pub(crate) fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// The legacy zone names, in order.
pub(crate) const ZONE_NAMES: [&str; 4] = ["Out of Range", "Fat Burn", "Cardio", "Peak"];

/// `max` of the Peak zone, as Fitbit serves it.
pub(crate) const PEAK_MAX: i64 = 220;

/// `min` of the Out of Range zone, as Fitbit serves it.
pub(crate) const OUT_OF_RANGE_MIN: i64 = 30;

/// One legacy zone of a (restated) day: `(min, max, minutes, kcal)`.
///
/// Out of Range = every worn minute below the Google MODERATE threshold (below LIGHT plus
/// LIGHT), Fat Burn = MODERATE, Cardio = VIGOROUS, Peak = PEAK; thresholds are the Google
/// zone thresholds (Out of Range starts at 30, Peak ends at 220).
pub(crate) fn legacy_zone(day: &DaySummary, zone: usize) -> (i64, i64, i64, f64) {
    let z = &day.zones;
    match zone {
        0 => (
            OUT_OF_RANGE_MIN,
            z[1],
            day.below_zone_min + day.zone_min[0],
            crate::generator::round2(day.below_zone_kcal + day.zone_kcal[0]),
        ),
        1 | 2 => (
            z[zone],
            z[zone + 1],
            day.zone_min[zone],
            day.zone_kcal[zone],
        ),
        _ => (z[3], PEAK_MAX, day.zone_min[3], day.zone_kcal[3]),
    }
}

/// The `heartRateZones` array of a day.
pub(crate) fn zones_json(day: &DaySummary) -> Value {
    Value::Array(
        (0..4)
            .map(|k| {
                let (min, max, minutes, kcal) = legacy_zone(day, k);
                json!({
                    "caloriesOut": number(kcal),
                    "max": max,
                    "min": min,
                    "minutes": minutes,
                    "name": ZONE_NAMES[k],
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_and_formats() {
        let v = FitbitError::rate_limited(None).body();
        assert_eq!(
            v,
            json!({"errors":[{"errorType":"system","fieldName":"n/a","message":"Too Many Requests"}],"success":false})
        );
        let v = FitbitError::invalid_grant("abc").body();
        assert!(
            v["errors"][0]["message"].as_str().unwrap().starts_with(
                "Refresh token invalid: abc. Visit https://dev.fitbit.com/docs/oauth2"
            )
        );
        assert!(v["errors"][0].get("fieldName").is_none());
        let t = NaiveDateTime::parse_from_str("2019-11-07 12:00:58", "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(local_millis(t), "2019-11-07T12:00:58.000");
    }
}
