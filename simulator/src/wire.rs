//! JSON shapes of the Google Health API v4 and of Google's error envelopes.
//!
//! The conventions a client must cope with are reproduced on purpose: int64 values are
//! JSON strings, durations and UTC offsets are `"<n>s"` strings, civil times carry no
//! zone, zero `TimeOfDay` members are omitted, and (as in proto3 JSON) empty repeated
//! fields and zero rollup scalars are left out.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::clock::{duration_secs, rfc3339};

/// `google.type.Date`.
#[derive(Serialize, Debug, Clone, Copy)]
pub(crate) struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl From<NaiveDate> for Date {
    fn from(d: NaiveDate) -> Self {
        Date {
            year: d.year(),
            month: d.month(),
            day: d.day(),
        }
    }
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

/// `google.type.TimeOfDay`; midnight serialises as `{}`.
#[derive(Serialize, Debug, Clone, Copy, Default)]
pub(crate) struct TimeOfDay {
    #[serde(skip_serializing_if = "is_zero")]
    pub hours: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub minutes: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub seconds: u32,
    #[serde(skip_serializing_if = "is_zero")]
    pub nanos: u32,
}

/// `CivilDateTime`: a wall-clock time without zone or offset.
#[derive(Serialize, Debug, Clone, Copy)]
pub(crate) struct CivilDateTime {
    pub date: Date,
    pub time: TimeOfDay,
}

impl From<NaiveDateTime> for CivilDateTime {
    fn from(t: NaiveDateTime) -> Self {
        CivilDateTime {
            date: t.date().into(),
            time: TimeOfDay {
                hours: t.hour(),
                minutes: t.minute(),
                seconds: t.second(),
                nanos: t.nanosecond(),
            },
        }
    }
}

impl From<NaiveDate> for CivilDateTime {
    fn from(d: NaiveDate) -> Self {
        CivilDateTime {
            date: d.into(),
            time: TimeOfDay::default(),
        }
    }
}

/// `ObservationTimeInterval`.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObservationTimeInterval {
    pub start_time: String,
    pub start_utc_offset: String,
    pub end_time: String,
    pub end_utc_offset: String,
    pub civil_start_time: CivilDateTime,
    pub civil_end_time: CivilDateTime,
}

impl ObservationTimeInterval {
    pub(crate) fn new(
        start: DateTime<Utc>,
        start_offset: i32,
        end: DateTime<Utc>,
        end_offset: i32,
        civil_start: NaiveDateTime,
        civil_end: NaiveDateTime,
    ) -> Self {
        ObservationTimeInterval {
            start_time: rfc3339(start),
            start_utc_offset: duration_secs(i64::from(start_offset)),
            end_time: rfc3339(end),
            end_utc_offset: duration_secs(i64::from(end_offset)),
            civil_start_time: civil_start.into(),
            civil_end_time: civil_end.into(),
        }
    }
}

/// `ObservationSampleTime`.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ObservationSampleTime {
    pub physical_time: String,
    pub utc_offset: String,
    pub civil_time: CivilDateTime,
}

#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeviceRef {
    pub display_name: String,
}

/// `DataSource` as Fitbit devices populate it (only the device's display name).
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DataSource {
    pub recording_method: &'static str,
    pub device: DeviceRef,
    pub platform: &'static str,
}

impl DataSource {
    pub(crate) fn fitbit(recording_method: &'static str, device: &str) -> Self {
        DataSource {
            recording_method,
            device: DeviceRef {
                display_name: device.to_owned(),
            },
            platform: "FITBIT",
        }
    }
}

#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HeartRate {
    pub sample_time: ObservationSampleTime,
    pub beats_per_minute: String,
}

#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Steps {
    pub interval: ObservationTimeInterval,
    pub count: String,
}

#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RestingMetadata {
    pub calculation_method: &'static str,
}

#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DailyRestingHeartRate {
    pub date: Date,
    pub beats_per_minute: String,
    pub daily_resting_heart_rate_metadata: RestingMetadata,
}

#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HeartRateZone {
    pub heart_rate_zone_type: &'static str,
    pub min_beats_per_minute: String,
    pub max_beats_per_minute: String,
}

#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DailyHeartRateZones {
    pub date: Date,
    pub heart_rate_zones: Vec<HeartRateZone>,
}

/// The data-point union: serialises as `{"heartRate": {...}}` etc.
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) enum PointValue {
    HeartRate(HeartRate),
    Steps(Steps),
    DailyRestingHeartRate(DailyRestingHeartRate),
    DailyHeartRateZones(DailyHeartRateZones),
}

/// `DataPoint` as returned by `list` (no `name`: these types are not identifiable).
#[derive(Serialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DataPoint {
    pub data_source: DataSource,
    #[serde(flatten)]
    pub value: PointValue,
}

/// `ListDataPointsResponse`.
#[derive(Serialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListDataPointsResponse {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub data_points: Vec<DataPoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// Inserts an int64 rollup member (as a JSON string) unless it is zero (proto3 JSON).
pub(crate) fn put_int64(map: &mut serde_json::Map<String, Value>, key: &str, v: i64) {
    if v != 0 {
        map.insert(key.to_owned(), Value::String(v.to_string()));
    }
}

/// Inserts a double rollup member unless it is zero (proto3 JSON).
pub(crate) fn put_double(map: &mut serde_json::Map<String, Value>, key: &str, v: f64) {
    if v != 0.0 {
        map.insert(key.to_owned(), json!(v));
    }
}

/// Inserts a duration rollup member (`"<n>s"`) unless it is zero (proto3 JSON).
pub(crate) fn put_duration(map: &mut serde_json::Map<String, Value>, key: &str, secs: i64) {
    if secs != 0 {
        map.insert(key.to_owned(), Value::String(duration_secs(secs)));
    }
}

/// Serialises `value` as a JSON response with Google's content type.
pub(crate) fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    bytes_response(status, body)
}

pub(crate) fn bytes_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}

/// An error in Google's API envelope:
/// `{"error":{"code","message","status","details":[ErrorInfo]}}`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: StatusCode,
    pub status: &'static str,
    pub message: String,
    pub reason: Option<String>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(
        code: StatusCode,
        status: &'static str,
        reason: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            code,
            status,
            message: message.into(),
            reason: reason.map(str::to_owned),
            retry_after: None,
        }
    }

    pub(crate) fn invalid_argument(reason: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            Some(reason),
            message,
        )
    }

    pub(crate) fn credentials_missing() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            Some("CREDENTIALS_MISSING"),
            "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        )
    }

    pub(crate) fn invalid_credentials(reason: &str, detail: &str) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            Some(reason),
            format!(
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project. {detail}"
            ),
        )
    }

    pub(crate) fn scope_insufficient() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            Some("ACCESS_TOKEN_SCOPE_INSUFFICIENT"),
            "Request had insufficient authentication scopes.",
        )
    }

    pub(crate) fn rate_limited(retry_after: Option<u64>) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            Some("RATE_LIMIT_EXCEEDED"),
            "Quota exceeded for quota metric 'Requests' and limit 'Requests per minute per user' of service 'health.googleapis.com'.",
        );
        e.retry_after = retry_after;
        e
    }

    pub(crate) fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            None,
            "The service is currently unavailable.",
        )
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", None, message)
    }

    pub(crate) fn unimplemented(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, "UNIMPLEMENTED", None, message)
    }

    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "INVALID_ARGUMENT",
            None,
            "HTTP method not allowed for this resource.",
        )
    }

    pub(crate) fn body(&self) -> Value {
        let mut error = json!({
            "code": self.code.as_u16(),
            "message": self.message,
            "status": self.status,
        });
        if let Some(reason) = &self.reason {
            error["details"] = json!([{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason,
                "domain": "googleapis.com",
                "metadata": {"service": "health.googleapis.com"},
            }]);
        }
        json!({ "error": error })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.code, &self.body());
        let headers = response.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.code == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"https://accounts.google.com/\""),
            );
        }
        response
    }
}

/// An OAuth token-endpoint error: `{"error": "...", "error_description": "..."}`.
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    pub code: StatusCode,
    pub error: &'static str,
    pub description: String,
    pub retry_after: Option<u64>,
}

impl OAuthError {
    pub(crate) fn new(
        code: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        OAuthError {
            code,
            error,
            description: description.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = json_response(
            self.code,
            &json!({"error": self.error, "error_description": self.description}),
        );
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_midnight_is_empty_object() {
        let d = NaiveDate::from_ymd_opt(2026, 8, 13).unwrap();
        let v = serde_json::to_value(CivilDateTime::from(d)).unwrap();
        assert_eq!(
            v,
            json!({"date": {"year": 2026, "month": 8, "day": 13}, "time": {}})
        );
        let t = d.and_hms_opt(8, 1, 0).unwrap();
        let v = serde_json::to_value(CivilDateTime::from(t)).unwrap();
        assert_eq!(v["time"], json!({"hours": 8, "minutes": 1}));
    }

    #[test]
    fn error_envelope() {
        let v = ApiError::scope_insufficient().body();
        assert_eq!(v["error"]["code"], 403);
        assert_eq!(v["error"]["status"], "PERMISSION_DENIED");
        assert_eq!(
            v["error"]["details"][0]["reason"],
            "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
        );
        assert_eq!(
            v["error"]["details"][0]["@type"],
            "type.googleapis.com/google.rpc.ErrorInfo"
        );
    }
}
