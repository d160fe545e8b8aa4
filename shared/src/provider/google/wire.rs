//! Google Health API v4 JSON, as the discovery document defines it (revision 20260527).
//!
//! Only the fields fitlink reads are modelled; unknown fields are ignored because the API gained
//! fields all through 2026. Values a point cannot be stored without are required, so a point of
//! the wrong shape is an error, never a silent zero.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer};

use crate::provider::http::NumberOrText;

/// An `int64` field: a JSON string per proto3-JSON (`"72"`), though numbers are accepted too.
/// Proto3-JSON omits zero values, so rollup members that may be zero default to 0.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Int64(pub i64);

impl<'de> Deserialize<'de> for Int64 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<'a> {
            Number(i64),
            Text(std::borrow::Cow<'a, str>),
        }
        match Raw::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected an int64 as a string or a number"))?
        {
            Raw::Number(n) => Ok(Int64(n)),
            Raw::Text(t) => t
                .parse()
                .map(Int64)
                .map_err(|_| serde::de::Error::custom(format!("{t:?} is not an int64"))),
        }
    }
}

/// A `double` field. Proto3-JSON writes the values JSON has no number for as strings
/// (`"NaN"`, `"Infinity"`, `"-Infinity"`) and readers accept a number in a string too, so
/// all of those read; what a value *means* (a `"NaN"` baseline: not computed yet) is the
/// parser's business.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Double(pub f64);

impl<'de> Deserialize<'de> for Double {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match NumberOrText::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a double as a number or a string"))?
        {
            NumberOrText::Number(n) => Ok(Double(n)),
            NumberOrText::Text(t) => match t.as_ref() {
                "NaN" => Ok(Double(f64::NAN)),
                "Infinity" => Ok(Double(f64::INFINITY)),
                "-Infinity" => Ok(Double(f64::NEG_INFINITY)),
                text => text
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite())
                    .map(Double)
                    .ok_or_else(|| serde::de::Error::custom(format!("{t:?} is not a double"))),
            },
        }
    }
}

/// A `google-duration` (`"-14400s"`, `"3.5s"`), in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GoogleDuration(pub f64);

impl GoogleDuration {
    pub fn whole_seconds(self) -> i32 {
        self.0.round() as i32
    }
}

impl<'de> Deserialize<'de> for GoogleDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.strip_suffix('s')
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|n| n.is_finite())
            .map(GoogleDuration)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("{text:?} is not a duration like \"-14400s\""))
            })
    }
}

/// `{"year":2026,"month":8,"day":6}`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    pub fn to_naive(self) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(self.year, self.month, self.day)
    }

    pub fn from_naive(date: NaiveDate) -> serde_json::Value {
        use chrono::Datelike;
        serde_json::json!({"year": date.year(), "month": date.month(), "day": date.day()})
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct CivilDateTime {
    pub date: Date,
}

/// `{"dataPoints": [...], "nextPageToken": "..."}`; the token may be absent or `""` at the end.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse<P> {
    #[serde(default = "Vec::new")]
    pub data_points: Vec<P>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartRatePoint {
    pub heart_rate: HeartRate,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartRate {
    pub sample_time: SampleTime,
    pub beats_per_minute: Int64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SampleTime {
    pub physical_time: DateTime<Utc>,
    #[serde(default)]
    pub utc_offset: Option<GoogleDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepsPoint {
    pub steps: Steps,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Steps {
    pub interval: Interval,
    pub count: Int64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interval {
    pub start_time: DateTime<Utc>,
    #[serde(default)]
    pub start_utc_offset: Option<GoogleDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyRestingHeartRatePoint {
    pub daily_resting_heart_rate: DailyRestingHeartRate,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyRestingHeartRate {
    pub date: Date,
    pub beats_per_minute: Int64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyHeartRateZonesPoint {
    pub daily_heart_rate_zones: DailyHeartRateZones,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyHeartRateZones {
    pub date: Date,
    #[serde(default)]
    pub heart_rate_zones: Vec<HeartRateZone>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartRateZone {
    pub heart_rate_zone_type: String,
    #[serde(default)]
    pub min_beats_per_minute: Option<Int64>,
    #[serde(default)]
    pub max_beats_per_minute: Option<Int64>,
}

/// `dailyRollUp` response: no pagination.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyRollUpResponse {
    #[serde(default)]
    pub rollup_data_points: Vec<DailyRollupDataPoint>,
}

/// One day's rollup. Exactly one value member is set, the one for the requested type.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DailyRollupDataPoint {
    pub civil_start_time: CivilDateTime,
    pub steps: Option<CountSum>,
    pub floors: Option<CountSum>,
    pub distance: Option<MillimetersSum>,
    pub altitude: Option<GainMillimetersSum>,
    pub total_calories: Option<KcalSum>,
    pub active_energy_burned: Option<KcalSum>,
    pub active_minutes: Option<ActiveMinutesRollup>,
    pub sedentary_period: Option<DurationSum>,
    pub time_in_heart_rate_zone: Option<TimeInHeartRateZoneRollup>,
    pub calories_in_heart_rate_zone: Option<CaloriesInHeartRateZoneRollup>,
    pub active_zone_minutes: Option<ActiveZoneMinutesRollup>,
}

/// Minutes in each zone (not yet Fitbit's earned minutes: cardio and peak count twice there).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveZoneMinutesRollup {
    #[serde(default)]
    pub sum_in_fat_burn_heart_zone: Int64,
    #[serde(default)]
    pub sum_in_cardio_heart_zone: Int64,
    #[serde(default)]
    pub sum_in_peak_heart_zone: Int64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CountSum {
    #[serde(default)]
    pub count_sum: Int64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MillimetersSum {
    #[serde(default)]
    pub millimeters_sum: Int64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GainMillimetersSum {
    #[serde(default)]
    pub gain_millimeters_sum: Int64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KcalSum {
    #[serde(default)]
    pub kcal_sum: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DurationSum {
    #[serde(default)]
    pub duration_sum: GoogleDuration,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveMinutesRollup {
    #[serde(default)]
    pub active_minutes_rollup_by_activity_level: Vec<ActiveMinutesByLevel>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActiveMinutesByLevel {
    pub activity_level: String,
    #[serde(default)]
    pub active_minutes_sum: Int64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeInHeartRateZoneRollup {
    #[serde(default)]
    pub time_in_heart_rate_zones: Vec<TimeInZone>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimeInZone {
    pub heart_rate_zone: String,
    #[serde(default)]
    pub duration: GoogleDuration,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaloriesInHeartRateZoneRollup {
    #[serde(default)]
    pub calories_in_heart_rate_zones: Vec<CaloriesInZone>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaloriesInZone {
    pub heart_rate_zone: String,
    #[serde(default)]
    pub kcal: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedDevicesResponse {
    #[serde(default)]
    pub paired_devices: Vec<PairedDevice>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PairedDevice {
    /// `users/me/pairedDevices/{id}`.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub battery_status: Option<String>,
    #[serde(default)]
    pub battery_level: Option<i64>,
    #[serde(default)]
    pub device_version: Option<String>,
    #[serde(default)]
    pub device_type: Option<String>,
    #[serde(default)]
    pub last_sync_time: Option<DateTime<Utc>>,
}

/// `users/me/identity`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub health_user_id: String,
    #[serde(default)]
    pub legacy_user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    #[serde(default)]
    pub time_zone: Option<String>,
}

/// OAuth's own JSON is snake_case, unlike the data API.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

/// `{"error": "invalid_grant", "error_description": "..."}` from the token endpoint.
#[derive(Debug, Deserialize)]
pub struct OAuthError {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
}

/// The standard Google error envelope from the data API.
#[derive(Debug, Deserialize)]
pub struct ApiErrorEnvelope {
    pub error: ApiError,
}

#[derive(Debug, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub details: Vec<serde_json::Value>,
}

impl ApiError {
    /// The `ErrorInfo.reason` if present (e.g. `ACCESS_TOKEN_SCOPE_INSUFFICIENT`).
    pub fn reason(&self) -> Option<&str> {
        self.details
            .iter()
            .find_map(|d| d.get("reason").and_then(|r| r.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int64_accepts_strings_and_numbers_and_refuses_objects() {
        assert_eq!(serde_json::from_str::<Int64>(r#""72""#).unwrap(), Int64(72));
        assert_eq!(serde_json::from_str::<Int64>("72").unwrap(), Int64(72));
        assert!(serde_json::from_str::<Int64>(r#"{"x":1}"#).is_err());
        assert!(serde_json::from_str::<Int64>(r#""7.5""#).is_err());
    }

    #[test]
    fn omitted_zero_rollup_members_read_as_zero() {
        let p: DailyRollUpResponse = serde_json::from_str(
            r#"{"rollupDataPoints":[{"civilStartTime":{"date":{"year":2026,"month":11,"day":1},"time":{}},
            "floors":{},"activeMinutes":{"activeMinutesRollupByActivityLevel":[{"activityLevel":"VIGOROUS"}]}}]}"#,
        )
        .unwrap();
        let day = &p.rollup_data_points[0];
        assert_eq!(day.floors.as_ref().unwrap().count_sum, Int64(0));
        let levels = &day
            .active_minutes
            .as_ref()
            .unwrap()
            .active_minutes_rollup_by_activity_level;
        assert_eq!(levels[0].active_minutes_sum, Int64(0));
        let empty: DailyRollUpResponse = serde_json::from_str("{}").unwrap();
        assert!(empty.rollup_data_points.is_empty());
    }

    #[test]
    fn doubles_read_proto3_json_strings_and_refuse_other_text() {
        let d = |text| serde_json::from_str::<Double>(text).map(|d| d.0);
        assert_eq!(d("33.75").unwrap(), 33.75);
        assert_eq!(d(r#""33.75""#).unwrap(), 33.75);
        assert!(d(r#""NaN""#).unwrap().is_nan());
        assert_eq!(d(r#""-Infinity""#).unwrap(), f64::NEG_INFINITY);
        assert!(d(r#""warm""#).is_err() && d(r#""inf""#).is_err() && d("{}").is_err());
    }

    #[test]
    fn token_responses_are_snake_case() {
        let t: TokenResponse = serde_json::from_str(
            r#"{"access_token":"a","expires_in":3599,"scope":"s","token_type":"Bearer"}"#,
        )
        .unwrap();
        assert_eq!(t.expires_in, Some(3599));
    }

    #[test]
    fn durations_parse_with_sign_and_fraction() {
        let d: GoogleDuration = serde_json::from_str(r#""-14400s""#).unwrap();
        assert_eq!(d.whole_seconds(), -14400);
        let d: GoogleDuration = serde_json::from_str(r#""3.5s""#).unwrap();
        assert_eq!(d.0, 3.5);
        assert!(serde_json::from_str::<GoogleDuration>(r#""-14400""#).is_err());
    }

    #[test]
    fn a_heart_rate_page_parses_as_documented() {
        let page = r#"{"dataPoints":[{"dataSource":{"platform":"FITBIT"},"heartRate":{
            "sampleTime":{"physicalTime":"2026-08-06T12:01:29Z","utcOffset":"-14400s",
            "civilTime":{"date":{"year":2026,"month":8,"day":6},"time":{"hours":8}}},
            "beatsPerMinute":"72"}}],"nextPageToken":""}"#;
        let parsed: ListResponse<HeartRatePoint> = serde_json::from_str(page).unwrap();
        assert_eq!(parsed.data_points[0].heart_rate.beats_per_minute, Int64(72));
        assert_eq!(parsed.next_page_token.as_deref(), Some(""));
    }
}
