//! Legacy Fitbit Web API JSON, as `reference/fitbit-web-api.md` part A documents it.
//!
//! Only the fields fitlink reads are modelled; unknown fields are ignored. Numbers come as JSON
//! numbers or as strings depending on the endpoint and its era (the daily steps series is a
//! string, intraday values are numbers, an old heart-rate variant sends `"55.44"`), so every
//! numeric field is a lenient [`Num`]. A field of the wrong shape (an object where a number
//! belongs, a string that is not a number) fails to parse, and the caller reports invalid data.

use crate::provider::http::NumberOrText;
use chrono::NaiveDate;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// A number sent as a JSON number or as a string holding one (`7390`, `"7390"`, `"55.44"`).
/// Never NaN or infinite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Num(pub f64);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = match NumberOrText::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a number or a string holding one"))?
        {
            NumberOrText::Number(n) => n,
            NumberOrText::Text(t) => t
                .trim()
                .parse::<f64>()
                .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a number")))?,
        };
        if value.is_finite() {
            Ok(Num(value))
        } else {
            Err(serde::de::Error::custom("a number must be finite"))
        }
    }
}

/// Deserializes an all-optional struct only from a JSON object: serde would also read `[]` as
/// one with every field missing, and store a day of nulls over a good one.
pub(super) fn object<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<T, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    if !value.is_object() {
        return Err(serde::de::Error::custom(format!(
            "expected an object, found {}",
            match value {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::Null => "null",
                _ => "a scalar",
            }
        )));
    }
    T::deserialize(value).map_err(serde::de::Error::custom)
}

/// One item of `GET /1/user/-/devices.json` (the response is a bare array).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    #[serde(default)]
    pub id: Option<String>,
    /// `High`, `Medium`, `Low`, `Empty`.
    #[serde(default)]
    pub battery: Option<String>,
    #[serde(default)]
    pub battery_level: Option<i64>,
    #[serde(default)]
    pub device_version: Option<String>,
    /// `TRACKER` or `SCALE`.
    #[serde(default, rename = "type")]
    pub device_type: Option<String>,
    /// Local time of the participant's profile zone, `yyyy-MM-ddTHH:mm:ss.SSS`, no offset.
    #[serde(default)]
    pub last_sync_time: Option<String>,
}

/// `GET /1/user/-/profile.json`.
#[derive(Debug, Deserialize)]
pub struct ProfileResponse {
    #[serde(deserialize_with = "object")]
    pub user: Profile,
}

#[derive(Debug, Deserialize)]
pub struct Profile {
    /// IANA name, e.g. `America/Los_Angeles`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The zone's current offset in milliseconds (used only when `timezone` is missing).
    #[serde(default, rename = "offsetFromUTCMillis")]
    pub offset_from_utc_millis: Option<Num>,
}

/// `GET /1/user/-/activities/date/{date}.json`: only `summary` is read.
#[derive(Debug, Deserialize)]
pub struct DailyActivityResponse {
    #[serde(deserialize_with = "object")]
    pub summary: ActivitySummary,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivitySummary {
    #[serde(default)]
    pub steps: Option<Num>,
    #[serde(default)]
    pub distances: Option<Vec<Distance>>,
    #[serde(default)]
    pub floors: Option<Num>,
    #[serde(default)]
    pub elevation: Option<Num>,
    #[serde(default)]
    pub calories_out: Option<Num>,
    #[serde(default)]
    pub activity_calories: Option<Num>,
    #[serde(default)]
    pub sedentary_minutes: Option<Num>,
    #[serde(default)]
    pub lightly_active_minutes: Option<Num>,
    #[serde(default)]
    pub fairly_active_minutes: Option<Num>,
    #[serde(default)]
    pub very_active_minutes: Option<Num>,
}

impl ActivitySummary {
    /// The `total` distance (kilometres, the metric unit system we ask for by sending no
    /// `Accept-Language`).
    pub fn total_distance(&self) -> Option<Num> {
        self.distances
            .as_deref()?
            .iter()
            .find(|d| d.activity == "total")
            .map(|d| d.distance)
    }
}

#[derive(Debug, Deserialize)]
pub struct Distance {
    pub activity: String,
    pub distance: Num,
}

/// `GET /1/user/-/activities/heart/date/{date}/1d.json`.
#[derive(Debug, Deserialize)]
pub struct HeartDailyResponse {
    #[serde(rename = "activities-heart", default)]
    pub days: Vec<HeartDay>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartDay {
    pub date_time: NaiveDate,
    #[serde(deserialize_with = "object")]
    pub value: HeartDayValue,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartDayValue {
    /// Absent or null on days (or devices) without heart-rate data.
    #[serde(default)]
    pub heart_rate_zones: Option<Vec<HeartRateZone>>,
    #[serde(default)]
    pub resting_heart_rate: Option<Num>,
}

/// `{caloriesOut, max, min, minutes, name}`; names "Out of Range", "Fat Burn", "Cardio", "Peak".
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartRateZone {
    pub name: String,
    #[serde(default)]
    pub min: Option<Num>,
    #[serde(default)]
    pub max: Option<Num>,
    #[serde(default)]
    pub minutes: Option<Num>,
    #[serde(default)]
    pub calories_out: Option<Num>,
}

/// `GET .../activities/heart/date/{start}/{end}/{detail}/time/{from}/{to}.json`: the daily part
/// is ignored.
#[derive(Debug, Deserialize)]
pub struct HeartIntradayResponse {
    #[serde(rename = "activities-heart-intraday", deserialize_with = "object")]
    pub intraday: Dataset,
}

/// `GET .../activities/steps/date/{start}/{end}/1min/time/{from}/{to}.json`.
#[derive(Debug, Deserialize)]
pub struct StepsIntradayResponse {
    #[serde(rename = "activities-steps-intraday", deserialize_with = "object")]
    pub intraday: Dataset,
}

/// An intraday dataset: times of day with no date, in request order.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dataset {
    #[serde(default)]
    pub dataset: Vec<Sample>,
    #[serde(default)]
    pub dataset_interval: Option<Num>,
    /// `minute` or `second`.
    #[serde(default)]
    pub dataset_type: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Sample {
    /// `HH:mm:ss`.
    pub time: String,
    pub value: Num,
}

/// An optional field that reads as absent when it has the wrong shape, for answers that must
/// not fail over a field fitlink can do without (see [`TokenResponse`]).
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Option<T>, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(T::deserialize(value).ok())
}

/// The token endpoint's answer (OAuth JSON: snake_case).
///
/// By the time it arrives the sent refresh token is spent (single-use), and the rotated one in
/// it is the participant's only credential: failing over `"expires_in": "28800"` used to lose
/// it (the participant then had to consent again). So only the two tokens are strict; the other
/// fields read as absent when they have the wrong shape (the default lifetime; no scope check,
/// a missing scope then shows as a 403; no user id).
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default, deserialize_with = "lenient")]
    pub expires_in: Option<i64>,
    /// Always a new one: Fitbit refresh tokens are single-use.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Space-separated scope names (`activity heartrate profile settings sleep`).
    #[serde(default, deserialize_with = "lenient")]
    pub scope: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub user_id: Option<String>,
}

/// Fitbit's error body `{"errors":[{"errorType","message"}],"success":false}`, also accepting
/// the RFC 6749 form `{"error","error_description"}` from the token endpoint.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    #[serde(default)]
    pub errors: Vec<ErrorItem>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub error_description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorItem {
    #[serde(default)]
    pub error_type: String,
    #[serde(default)]
    pub message: String,
}

impl ErrorBody {
    /// Parses a body as a Fitbit (or OAuth) error; `None` when it is neither (HTML, empty).
    pub fn parse(body: &str) -> Option<ErrorBody> {
        serde_json::from_str::<ErrorBody>(body)
            .ok()
            .filter(|e| !e.errors.is_empty() || e.error.is_some())
    }

    /// The first error's type (`expired_token`, `invalid_grant`, ...).
    pub fn error_type(&self) -> &str {
        self.errors
            .first()
            .map(|e| e.error_type.as_str())
            .or(self.error.as_deref())
            .unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.errors
            .first()
            .map(|e| e.message.as_str())
            .or(self.error_description.as_deref())
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_accepted_as_numbers_or_strings_but_not_other_shapes() {
        assert_eq!(serde_json::from_str::<Num>("7390").unwrap(), Num(7390.0));
        assert_eq!(
            serde_json::from_str::<Num>(r#""7390""#).unwrap(),
            Num(7390.0)
        );
        assert_eq!(
            serde_json::from_str::<Num>(r#""55.44""#).unwrap(),
            Num(55.44)
        );
        for bad in [
            r#""""#,
            r#""many""#,
            r#"{"v":1}"#,
            "[1]",
            "true",
            r#""NaN""#,
        ] {
            assert!(serde_json::from_str::<Num>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_devices_example_parses() {
        let devices: Vec<Device> = serde_json::from_str(
            r#"[
  {"battery": "Medium", "batteryLevel": 60, "deviceVersion": "Charge 2", "features": [],
   "id": "816713257", "lastSyncTime": "2019-11-07T12:00:58.000", "mac": "16ADD56D54GD", "type": "TRACKER"},
  {"battery": "High", "batteryLevel": 70, "deviceVersion": "Aria", "id": "5656777",
   "lastSyncTime": "2014-07-17T13:38:13.000", "mac": "SC1111111111", "type": "SCALE"},
  {"battery": "High", "deviceVersion": "MobileTrack", "id": "1", "type": "TRACKER"}
]"#,
        )
        .unwrap();
        assert_eq!(devices.len(), 3);
        assert_eq!(
            devices[0].last_sync_time.as_deref(),
            Some("2019-11-07T12:00:58.000")
        );
        assert_eq!(devices[2].last_sync_time, None);
    }

    #[test]
    fn the_profile_example_parses() {
        let profile: ProfileResponse = serde_json::from_str(
            r#"{"user": {"encodedId": "GGNJL9", "displayName": "Adam", "fullName": "Fitbit User", "memberSince": "2014-01-06",
  "dateOfBirth": "1983-01-28", "gender": "MALE", "height": 170.2, "weight": 79.3, "locale": "en_US",
  "startDayOfWeek": "SUNDAY", "timezone": "America/Los_Angeles", "offsetFromUTCMillis": -25200000,
  "distanceUnit": "en_US", "weightUnit": "METRIC", "heightUnit": "en_US", "strideLengthWalking": 70.6,
  "strideLengthRunning": 88.5, "averageDailySteps": 10000, "topBadges": []}}"#,
        )
        .unwrap();
        assert_eq!(
            profile.user.timezone.as_deref(),
            Some("America/Los_Angeles")
        );
        assert_eq!(profile.user.offset_from_utc_millis, Some(Num(-25200000.0)));
    }

    #[test]
    fn error_bodies_parse_in_both_forms_and_html_is_not_one() {
        let fitbit = ErrorBody::parse(
            r#"{"errors":[{"errorType":"expired_token","message":"Access token expired: x"}],"success":false}"#,
        )
        .unwrap();
        assert_eq!(fitbit.error_type(), "expired_token");
        assert_eq!(fitbit.message(), "Access token expired: x");
        let oauth =
            ErrorBody::parse(r#"{"error":"invalid_grant","error_description":"d"}"#).unwrap();
        assert_eq!(
            (oauth.error_type(), oauth.message()),
            ("invalid_grant", "d")
        );
        assert!(ErrorBody::parse("<html><body>Internal Server Error</body></html>").is_none());
        assert!(ErrorBody::parse("{}").is_none());
        assert!(ErrorBody::parse("").is_none());
    }

    #[test]
    fn token_responses_are_snake_case() {
        let t: TokenResponse = serde_json::from_str(
            r#"{"access_token":"eyJhbGciOiJIUzI1NiJ9.p.s","expires_in":28800,
            "refresh_token":"c643a63c","scope":"heartrate activity sleep profile settings",
            "token_type":"Bearer","user_id":"26FWFL"}"#,
        )
        .unwrap();
        assert_eq!(t.expires_in, Some(28800));
        assert_eq!(t.refresh_token.as_deref(), Some("c643a63c"));
        assert_eq!(t.user_id.as_deref(), Some("26FWFL"));
    }
}
