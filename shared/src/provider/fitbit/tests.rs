//! The client against the reference's documented examples, and against a tiny in-test HTTP server
//! (axum on 127.0.0.1:0) for what only shows on the wire: paths, headers, the quota rule,
//! retries and error classification.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap as AxumHeaders, Method, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{NaiveDate, TimeDelta};
use clap::Parser;
use reqwest::header::{HeaderValue, RETRY_AFTER};

use chrono_tz::Tz;

use super::parse::*;
use super::wire::*;
use super::*;
use crate::domain::{UtcInstant, parse_instant};
use crate::messages::{ActivityDay, HeartRateZoneDay, IntradayPoint, RestingHeartRateDay};

// ---------------------------------------------------------------------------------------------
// The reference's examples (part A), verbatim.

const DAILY_SUMMARY: &str = r#"{
  "activities": [{"activityId": 2382124, "activityParentId": 2382124, "activityParentName": "Running",
                  "calories": 541, "description": "", "duration": 2400000, "hasStartTime": true,
                  "isFavorite": false, "lastModified": "2014-09-25T20:57:46.000+01:00", "logId": 105415286,
                  "name": "Running", "startDate": "2014-09-25", "startTime": "20:16"}],
  "goals": {"activeMinutes": 30, "caloriesOut": 2820, "distance": 8.05, "floors": 10, "steps": 10000},
  "summary": {
    "activeScore": -1, "activityCalories": 1457, "caloriesBMR": 1623, "caloriesOut": 2828,
    "distances": [{"activity": "total", "distance": 12.32}, {"activity": "tracker", "distance": 12.32},
                  {"activity": "loggedActivities", "distance": 0}, {"activity": "veryActive", "distance": 9.69},
                  {"activity": "moderatelyActive", "distance": 1.99}, {"activity": "lightlyActive", "distance": 0.57},
                  {"activity": "sedentaryActive", "distance": 0}],
    "elevation": 79.25, "floors": 26,
    "heartRateZones": [
      {"caloriesOut": 1594.36823, "max": 94, "min": 30, "minutes": 1198, "name": "Out of Range"},
      {"caloriesOut": 742.01185, "max": 131, "min": 94, "minutes": 192, "name": "Fat Burn"},
      {"caloriesOut": 105.47127, "max": 159, "min": 131, "minutes": 11, "name": "Cardio"},
      {"caloriesOut": 0, "max": 220, "min": 159, "minutes": 0, "name": "Peak"}],
    "lightlyActiveMinutes": 59, "marginalCalories": 1067, "restingHeartRate": 73,
    "sedentaryMinutes": 1155, "steps": 15720, "veryActiveMinutes": 91, "fairlyActiveMinutes": 63
  }
}"#;

const HEART_1D: &str = r#"{"activities-heart": [
  {"dateTime": "2017-08-15",
   "value": {"customHeartRateZones": [],
             "heartRateZones": [
               {"caloriesOut": 2257.6846, "max": 92, "min": 30, "minutes": 1264, "name": "Out of Range"},
               {"caloriesOut": 275.189, "max": 128, "min": 92, "minutes": 38, "name": "Fat Burn"},
               {"caloriesOut": 505.5534, "max": 156, "min": 128, "minutes": 43, "name": "Cardio"},
               {"caloriesOut": 287.33136, "max": 220, "min": 156, "minutes": 21, "name": "Peak"}],
             "restingHeartRate": 51}}]}"#;

const HEART_INTRADAY_1MIN: &str = r#"{
  "activities-heart": [{"dateTime": "2017-06-29",
     "value": {"customHeartRateZones": [],
               "heartRateZones": [{"caloriesOut": 1693.83222, "max": 95, "min": 30, "minutes": 1122, "name": "Out of Range"},
                                  {"caloriesOut": 211.22723, "max": 133, "min": 95, "minutes": 35, "name": "Fat Burn"},
                                  {"caloriesOut": 0, "max": 162, "min": 133, "minutes": 0, "name": "Cardio"},
                                  {"caloriesOut": 0, "max": 220, "min": 162, "minutes": 0, "name": "Peak"}],
               "restingHeartRate": 59}}],
  "activities-heart-intraday": {
    "dataset": [{"time": "00:00:00", "value": 58}, {"time": "00:01:00", "value": 58}, {"time": "00:02:00", "value": 56}],
    "datasetInterval": 1,
    "datasetType": "minute"
  }
}"#;

const STEPS_INTRADAY: &str = r#"{"activities-steps": [{"dateTime": "2016-03-08", "value": "7390"}],
 "activities-steps-intraday": {"dataset": [{"time": "00:00:00", "value": 1}, {"time": "00:01:00", "value": 2},
                                           {"time": "00:02:00", "value": 0}],
                               "datasetInterval": 1, "datasetType": "minute"}}"#;

const PROFILE: &str = r#"{"user": {"encodedId": "GGNJL9", "displayName": "Adam", "fullName": "Fitbit User", "memberSince": "2014-01-06",
  "dateOfBirth": "1983-01-28", "gender": "MALE", "height": 170.2, "weight": 79.3, "locale": "en_US",
  "startDayOfWeek": "SUNDAY", "timezone": "America/Los_Angeles", "offsetFromUTCMillis": -25200000,
  "distanceUnit": "en_US", "weightUnit": "METRIC", "heightUnit": "en_US", "strideLengthWalking": 70.6,
  "strideLengthRunning": 88.5, "averageDailySteps": 10000, "topBadges": []}}"#;

/// A 1sec heart-rate dataset as the (hand-made) fixture shapes it: irregular times, type second.
fn heart_1sec(times_values: &[(&str, i64)]) -> String {
    let dataset: Vec<serde_json::Value> = times_values
        .iter()
        .map(|(t, v)| serde_json::json!({"time": t, "value": v}))
        .collect();
    serde_json::json!({
        "activities-heart": [{"dateTime": "2026-11-01", "value": {"customHeartRateZones": [], "heartRateZones": []}}],
        "activities-heart-intraday": {"dataset": dataset, "datasetInterval": 1, "datasetType": "second"}
    })
    .to_string()
}

/// A zero-filled 1min dataset (steps) or a minute dataset (heart) from (time, value) pairs.
fn minutes(key: &str, times_values: &[(&str, i64)]) -> String {
    let dataset: Vec<serde_json::Value> = times_values
        .iter()
        .map(|(t, v)| serde_json::json!({"time": t, "value": v}))
        .collect();
    serde_json::json!({
        format!("{key}-intraday"): {"dataset": dataset, "datasetInterval": 1, "datasetType": "minute"}
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// A scripted Fitbit on 127.0.0.1:0.

#[derive(Debug, Clone)]
pub(super) struct Seen {
    method: String,
    pub(super) path: String,
    pub(super) query: String,
    authorization: String,
    content_type: String,
    body: String,
}

pub(super) struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Reply {
    pub(super) fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub(super) fn ok(body: impl Into<String>) -> Self {
        Self::new(200, body)
    }

    /// `name` must be lower case.
    fn header(mut self, name: &'static str, value: impl ToString) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }
}

type Responder = dyn Fn(&Seen) -> Reply + Send + Sync;

pub(super) struct Mock {
    seen: Mutex<Vec<Seen>>,
    respond: Box<Responder>,
}

impl Mock {
    pub(super) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub(super) fn paths(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.path).collect()
    }
}

async fn handle(
    State(mock): State<Arc<Mock>>,
    method: Method,
    uri: Uri,
    headers: AxumHeaders,
    body: String,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let seen = Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or("").to_owned(),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body,
    };
    let reply = (mock.respond)(&seen);
    mock.seen.lock().unwrap().push(seen);
    let status = axum::http::StatusCode::from_u16(reply.status).unwrap();
    let mut response = (status, reply.body).into_response();
    for (name, value) in reply.headers {
        response.headers_mut().insert(name, value.parse().unwrap());
    }
    response
}

pub(super) async fn serve(
    respond: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> (String, Arc<Mock>) {
    let mock = Arc::new(Mock {
        seen: Mutex::new(Vec::new()),
        respond: Box::new(respond),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(mock.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, mock)
}

pub(in crate::provider) fn args(base: &str) -> FitbitArgs {
    FitbitArgs::on_one_host(base, "23ABCD", "client-s3cret")
}

pub(super) const ACCESS_TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIyNkZXRkwifQ.c2lnbmF0dXJl";

pub(super) fn session(zone: Option<Tz>) -> Session {
    let mut session = Session::new(
        Secret::new(ACCESS_TOKEN.to_owned()),
        RequestBudget::new(REQUESTS_PER_HOUR, Duration::from_secs(3600)),
    );
    session.time_zone = zone;
    session
}

fn utc(text: &str) -> DateTime<Utc> {
    parse_instant(text).unwrap()
}

fn slice(start: &str, end: &str) -> Slice {
    Slice {
        start: UtcInstant::parse(start).unwrap(),
        end: UtcInstant::parse(end).unwrap(),
    }
}

pub(super) fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

pub(super) fn fitbit_error(error_type: &str, message: &str) -> String {
    serde_json::json!({"errors": [{"errorType": error_type, "message": message}], "success": false})
        .to_string()
}

#[track_caller]
pub(super) fn assert_permanent(error: &SyncError, expected: ParticipantState) -> String {
    match error {
        SyncError::Permanent { state, reason } if *state == expected => reason.clone(),
        other => panic!("expected permanent {expected}, got {other:?}"),
    }
}

fn points(points: &[IntradayPoint]) -> Vec<(String, i32, i64)> {
    points
        .iter()
        .map(|p| (p.datetime.to_text(), p.utc_offset_seconds, p.value))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Configuration.

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    fitbit: FitbitArgs,
}

#[test]
fn configuration_has_real_defaults_and_reads_the_turn_off_date() {
    let cli = Cli::try_parse_from(["fitlink"]).unwrap();
    assert_eq!(cli.fitbit.api_base, "https://api.fitbit.com");
    assert_eq!(cli.fitbit.token_url, "https://api.fitbit.com/oauth2/token");
    assert_eq!(cli.fitbit.heart_rate_detail, HeartRateDetail::OneMinute);
    assert_eq!(cli.fitbit.retired_after, None);
    let cli = Cli::try_parse_from([
        "fitlink",
        "--fitbit-heart-rate-detail",
        "1sec",
        "--fitbit-retired-after",
        "2026-11-02",
    ])
    .unwrap();
    assert_eq!(cli.fitbit.heart_rate_detail.as_str(), "1sec");
    assert_eq!(cli.fitbit.retired_after, Some(utc("2026-11-02T00:00:00Z")));
    let cli = Cli::try_parse_from([
        "fitlink",
        "--fitbit-retired-after",
        "2026-11-02T08:00:00-08:00",
    ])
    .unwrap();
    assert_eq!(cli.fitbit.retired_after, Some(utc("2026-11-02T16:00:00Z")));
    assert!(Cli::try_parse_from(["fitlink", "--fitbit-retired-after", "soon"]).is_err());
    assert!(Cli::try_parse_from(["fitlink", "--fitbit-heart-rate-detail", "5min"]).is_err());
    assert!(!format!("{:?}", args("http://x")).contains("client-s3cret"));
}

// ---------------------------------------------------------------------------------------------
// Wire examples into rows.

#[test]
fn the_daily_summary_example_becomes_an_activity_row() {
    let parsed: DailyActivityResponse = serde_json::from_str(DAILY_SUMMARY).unwrap();
    let day = activity_day("test", date("2014-09-25"), &parsed.summary).unwrap();
    assert_eq!(
        day,
        ActivityDay {
            date: date("2014-09-25"),
            steps: Some(15720),
            distance: Some(12.32),
            floors: Some(26),
            elevation: Some(79.25),
            calories_out: Some(2828.0),
            activity_calories: Some(1457.0),
            sedentary_minutes: Some(1155.0),
            lightly_active_minutes: Some(59.0),
            fairly_active_minutes: Some(63.0),
            very_active_minutes: Some(91.0),
        }
    );
}

#[test]
fn summary_values_may_be_strings_or_missing_but_not_negative() {
    let parsed: DailyActivityResponse = serde_json::from_str(
        r#"{"summary":{"steps":"7390","distances":[{"activity":"tracker","distance":"1.5"}],"floors":null}}"#,
    )
    .unwrap();
    let day = activity_day("test", date("2016-03-08"), &parsed.summary).unwrap();
    assert_eq!(day.steps, Some(7390));
    assert_eq!(day.distance, None, "only the total distance counts");
    assert_eq!(day.floors, None);
    let parsed: DailyActivityResponse =
        serde_json::from_str(r#"{"summary":{"steps":-5}}"#).unwrap();
    let err = activity_day(
        "get daily activity summary",
        date("2016-03-08"),
        &parsed.summary,
    )
    .unwrap_err();
    assert!(assert_permanent(&err, ParticipantState::ProviderDataInvalid).contains("steps"));
    assert!(
        serde_json::from_str::<DailyActivityResponse>(r#"{"summary":{"steps":{"v":1}}}"#).is_err()
    );
    assert!(serde_json::from_str::<DailyActivityResponse>(r#"{"summary":[]}"#).is_err());
    assert!(serde_json::from_str::<DailyActivityResponse>(r#"{"summary":null}"#).is_err());
    assert!(
        serde_json::from_str::<HeartDailyResponse>(
            r#"{"activities-heart":[{"dateTime":"2017-08-15","value":"55.44"}]}"#
        )
        .is_err()
    );
}

#[test]
fn the_heart_1d_example_becomes_lower_cased_zone_rows() {
    let parsed: HeartDailyResponse = serde_json::from_str(HEART_1D).unwrap();
    let day = &parsed.days[0];
    assert_eq!(day.date_time, date("2017-08-15"));
    let rows: Vec<HeartRateZoneDay> = day
        .value
        .heart_rate_zones
        .as_ref()
        .unwrap()
        .iter()
        .map(|z| zone_day("test", day.date_time, z).unwrap().unwrap())
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r.zone_name.as_str()).collect();
    assert_eq!(names, ["out of range", "fat burn", "cardio", "peak"]);
    assert_eq!(
        rows[1],
        HeartRateZoneDay {
            date: date("2017-08-15"),
            zone_name: "fat burn".to_owned(),
            min_heart_rate: Some(92),
            max_heart_rate: Some(128),
            minute_in_zone: Some(38),
            calorie_count: Some(275.189),
        }
    );
    assert_eq!(day.value.resting_heart_rate, Some(Num(51.0)));
    let custom = HeartRateZone {
        name: "My Zone".to_owned(),
        min: None,
        max: None,
        minutes: None,
        calories_out: None,
    };
    assert_eq!(zone_day("test", day.date_time, &custom).unwrap(), None);
}

#[test]
fn the_intraday_examples_parse() {
    let heart: HeartIntradayResponse = serde_json::from_str(HEART_INTRADAY_1MIN).unwrap();
    assert_eq!(heart.intraday.dataset.len(), 3);
    assert_eq!(heart.intraday.dataset[2].time, "00:02:00");
    assert_eq!(heart.intraday.dataset[2].value, Num(56.0));
    check_dataset("heart", &heart.intraday, "minute").unwrap();
    let err = check_dataset("heart", &heart.intraday, "second").unwrap_err();
    assert_permanent(&err, ParticipantState::ProviderDataInvalid);
    let steps: StepsIntradayResponse = serde_json::from_str(STEPS_INTRADAY).unwrap();
    assert_eq!(steps.intraday.dataset[2].value, Num(0.0));
    let fifteen: StepsIntradayResponse = serde_json::from_str(
        r#"{"activities-steps-intraday":{"dataset":[],"datasetInterval":15,"datasetType":"minute"}}"#,
    )
    .unwrap();
    assert!(check_dataset("steps", &fifteen.intraday, "minute").is_err());
    let seconds: HeartIntradayResponse =
        serde_json::from_str(&heart_1sec(&[("00:00:00", 60), ("00:00:15", 61)])).unwrap();
    check_dataset("heart", &seconds.intraday, "second").unwrap();
}

// ---------------------------------------------------------------------------------------------
// Error classification.

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(*name, HeaderValue::from_str(value).unwrap());
    }
    map
}

#[test]
fn errors_are_classified_by_what_to_do() {
    let none = HeaderMap::new();
    let data = |status: u16, body: &str| {
        classify_data_error(
            "get devices",
            StatusCode::from_u16(status).unwrap(),
            &none,
            body,
            PathKind::Data,
        )
        .into_error()
    };
    let token = |status: u16, body: &str| {
        classify_token_error(StatusCode::from_u16(status).unwrap(), &none, body)
    };

    // 410 Gone anywhere, whatever the body: retired.
    for err in [
        data(410, ""),
        data(410, "<html>Gone</html>"),
        token(410, ""),
    ] {
        assert_eq!(
            assert_permanent(&err, ParticipantState::NeedsReconsent),
            RETIRED_REASON
        );
    }
    // A refused refresh token.
    let err = token(
        400,
        &fitbit_error("invalid_grant", "Refresh token invalid: [redacted]."),
    );
    let reason = assert_permanent(&err, ParticipantState::NeedsReconsent);
    assert!(
        reason.contains("invalid_grant") && reason.contains("single-use"),
        "{reason}"
    );
    // The RFC 6749 form too.
    assert_permanent(
        &token(400, r#"{"error":"invalid_grant"}"#),
        ParticipantState::NeedsReconsent,
    );
    // A concurrent refresh: try again later.
    assert!(token(409, &fitbit_error("request", "conflict")).is_transient());
    // A rejected OAuth client is the fleet's problem, not the participant's.
    let err = token(401, &fitbit_error("invalid_client", "Client id invalid."));
    assert!(err.is_transient() && err.to_string().contains("FITLINK_FITBIT_CLIENT_ID"));
    assert!(token(400, "<html>Bad Request</html>").is_transient());
    assert!(token(503, "").is_transient());

    // An expired access token: the worker refreshes on retry.
    assert!(
        data(
            401,
            &fitbit_error("expired_token", "Access token expired: [redacted]")
        )
        .is_transient()
    );
    // An invalid one: the grant is gone.
    assert_permanent(
        &data(
            401,
            &fitbit_error("invalid_token", "Access token invalid: [redacted]"),
        ),
        ParticipantState::Revoked,
    );
    // A 401 we cannot read is classified by status alone, and says so.
    let err = data(401, "<html>Unauthorized</html>");
    assert!(err.is_transient());
    assert!(
        err.to_string().contains("classified by status alone"),
        "{err}"
    );
    // 403 outside intraday: a scope is missing.
    assert_permanent(
        &data(
            403,
            &fitbit_error("insufficient_scope", "no settings scope"),
        ),
        ParticipantState::ScopeMissing,
    );
    // 403 on intraday: a distinct outcome, not an error.
    for error_type in ["insufficient_permissions", "insufficient_scope"] {
        let refusal = classify_data_error(
            "get heart rate intraday",
            StatusCode::FORBIDDEN,
            &none,
            &fitbit_error(error_type, "Intraday data is not available for this app."),
            PathKind::Intraday,
        );
        match refusal {
            Refusal::IntradayDenied(reason) => {
                assert!(reason.starts_with(INTRADAY_DENIED_REASON), "{reason}");
                assert!(reason.contains(error_type), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }
    // Anything else on data is a request fitlink should not have made, or data it cannot read.
    assert_permanent(
        &data(404, &fitbit_error("not_found", "x")),
        ParticipantState::ProviderDataInvalid,
    );

    // 500 with an HTML body: transient, no panic, the status in the reason.
    let err = data(
        500,
        "<!DOCTYPE html><html><body><h1>Internal Server Error</h1></body></html>",
    );
    assert!(err.is_transient());
    assert!(err.to_string().contains("HTTP 500"), "{err}");
}

#[test]
fn a_429_retries_when_the_fitbit_quota_resets() {
    let body = fitbit_error("system", "Too Many Requests");
    let classify = |headers: &HeaderMap| {
        classify_data_error(
            "get devices",
            StatusCode::TOO_MANY_REQUESTS,
            headers,
            &body,
            PathKind::Data,
        )
        .into_error()
    };
    let retry_after_of = |err: SyncError| match err {
        SyncError::RateLimited { retry_after, .. } => retry_after.unwrap(),
        other => panic!("{other:?}"),
    };
    let both = headers(&[(RATE_LIMIT_RESET, "1234"), (RETRY_AFTER.as_str(), "5")]);
    assert_eq!(retry_after_of(classify(&both)), Duration::from_secs(1234));
    let only_retry_after = headers(&[(RETRY_AFTER.as_str(), "5")]);
    assert_eq!(
        retry_after_of(classify(&only_retry_after)),
        Duration::from_secs(5)
    );
    let neither = retry_after_of(classify(&HeaderMap::new()));
    assert!(neither > Duration::ZERO && neither <= Duration::from_secs(3600));
    let token_429 = classify_token_error(StatusCode::TOO_MANY_REQUESTS, &both, &body);
    assert_eq!(retry_after_of(token_429), Duration::from_secs(1234));
    assert_eq!(
        until_top_of_hour(utc("2026-11-01T10:59:30Z")),
        Duration::from_secs(30)
    );
    assert_eq!(
        until_top_of_hour(utc("2026-11-01T11:00:00Z")),
        Duration::from_secs(3600)
    );
}

#[test]
fn tokens_are_redacted_from_reasons() {
    let text = format!(
        "Access token expired: {ACCESS_TOKEN}. Visit https://dev.fitbit.com/docs/oauth2 for more information"
    );
    let redacted = redact(&text, &[]);
    assert!(!redacted.contains("eyJ"), "{redacted}");
    assert!(
        redacted.contains("https://dev.fitbit.com/docs/oauth2"),
        "{redacted}"
    );
    assert_eq!(redact("short abcd", &["abcd"]), "short [redacted]");
    assert_eq!(
        redact("HTTP 403 insufficient_permissions", &[]),
        "HTTP 403 insufficient_permissions"
    );
}

// ---------------------------------------------------------------------------------------------
// Over HTTP.

#[tokio::test]
async fn a_refresh_sends_basic_auth_and_returns_the_rotated_token_and_user_id() {
    let (base, mock) = serve(|_| {
        Reply::ok(
            r#"{"access_token":"new-access","expires_in":28800,"refresh_token":"new-refresh",
            "scope":"heartrate activity sleep profile settings","token_type":"Bearer","user_id":"26FWFL"}"#,
        )
    })
    .await;
    let client = FitbitClient::new(&args(&base));
    let before = Utc::now();
    let grant = client
        .refresh(&Secret::new("old-refresh".to_owned()))
        .await
        .unwrap();
    assert_eq!(grant.access_token.expose(), "new-access");
    assert_eq!(
        grant
            .rotated_refresh_token
            .as_ref()
            .map(|t| t.expose().as_str()),
        Some("new-refresh")
    );
    assert_eq!(grant.provider_user_id.as_deref(), Some("26FWFL"));
    assert!(grant.expires_at >= before + TimeDelta::hours(8));
    assert!(grant.scopes.iter().any(|s| s == "sleep"));
    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/oauth2/token")
    );
    let basic = base64::engine::general_purpose::STANDARD.encode("23ABCD:client-s3cret");
    assert_eq!(seen[0].authorization, format!("Basic {basic}"));
    assert!(
        seen[0]
            .content_type
            .starts_with("application/x-www-form-urlencoded")
    );
    assert_eq!(
        seen[0].body,
        "grant_type=refresh_token&refresh_token=old-refresh"
    );
}

#[tokio::test]
async fn a_refresh_missing_scopes_names_them() {
    let (base, _mock) = serve(|_| {
        Reply::ok(
            r#"{"access_token":"a","expires_in":28800,"refresh_token":"r","scope":"activity profile","user_id":"U"}"#,
        )
    })
    .await;
    let err = FitbitClient::new(&args(&base))
        .refresh(&Secret::new("old".to_owned()))
        .await
        .unwrap_err();
    let reason = assert_permanent(&err, ParticipantState::ScopeMissing);
    assert!(reason.contains("heartrate, settings"), "{reason}");

    // A response naming no scopes at all is not read as granting none.
    let (base, _mock) =
        serve(|_| Reply::ok(r#"{"access_token":"a","refresh_token":"r","user_id":"U"}"#)).await;
    let grant = FitbitClient::new(&args(&base))
        .refresh(&Secret::new("old".to_owned()))
        .await
        .unwrap();
    assert!(grant.scopes.is_empty());
    assert!(
        grant.expires_at > Utc::now() + TimeDelta::hours(7),
        "28800 s by default"
    );
}

#[tokio::test]
async fn a_refused_refresh_needs_reconsent_never_echoes_the_token_and_is_not_retried() {
    let old = "c643a63c072f0f05478e9d18b991db80ef6061e4f8e6c822d83fed53e5fafdd7";
    let (base, mock) = serve(move |_| {
        Reply::new(
            400,
            fitbit_error(
                "invalid_grant",
                &format!("Refresh token invalid: {old}. Visit https://dev.fitbit.com/docs/oauth2 for more information on the Fitbit Web API authorization process."),
            ),
        )
    })
    .await;
    let err = FitbitClient::new(&args(&base))
        .refresh(&Secret::new(old.to_owned()))
        .await
        .unwrap_err();
    let reason = assert_permanent(&err, ParticipantState::NeedsReconsent);
    assert!(!reason.contains(old), "{reason}");
    assert!(!reason.contains(&old[..24]), "{reason}");
    assert_eq!(mock.seen().len(), 1);
}

#[tokio::test]
async fn refresh_failures_are_never_retried_in_place() {
    for (status, body) in [
        (409, fitbit_error("request", "conflict")),
        (500, "<html>oops</html>".to_owned()),
    ] {
        let (base, mock) = serve(move |_| Reply::new(status, body.clone())).await;
        let err = FitbitClient::new(&args(&base))
            .refresh(&Secret::new("old".to_owned()))
            .await
            .unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        assert_eq!(mock.seen().len(), 1, "HTTP {status} was resent");
    }
}

#[tokio::test]
async fn after_the_configured_turn_off_nothing_is_sent() {
    let (base, mock) = serve(|_| Reply::ok("[]")).await;
    let mut config = args(&base);
    config.retired_after = Some(Utc::now() - TimeDelta::minutes(1));
    let client = FitbitClient::new(&config);
    let err = client
        .refresh(&Secret::new("old".to_owned()))
        .await
        .unwrap_err();
    assert!(
        assert_permanent(&err, ParticipantState::NeedsReconsent).starts_with("provider retired")
    );
    let err = latest_sync(&client, &session(None)).await.unwrap_err();
    assert_permanent(&err, ParticipantState::NeedsReconsent);
    assert!(mock.seen().is_empty());

    config.retired_after = Some(Utc::now() + TimeDelta::days(1));
    let client = FitbitClient::new(&config);
    assert_eq!(latest_sync(&client, &session(None)).await.unwrap(), None);
    assert_eq!(mock.seen().len(), 1);
}

#[tokio::test]
async fn a_410_from_the_api_means_the_provider_is_retired() {
    let (base, _mock) = serve(|_| Reply::new(410, "")).await;
    let client = FitbitClient::new(&args(&base));
    let err = client.time_zone(&session(None)).await.unwrap_err();
    assert_eq!(
        assert_permanent(&err, ParticipantState::NeedsReconsent),
        RETIRED_REASON
    );
    let err = client
        .refresh(&Secret::new("old".to_owned()))
        .await
        .unwrap_err();
    assert_permanent(&err, ParticipantState::NeedsReconsent);
}

#[tokio::test]
async fn the_latest_sync_is_the_latest_of_all_devices_in_the_profile_zone() {
    let (base, mock) = serve(|seen| match seen.path.as_str() {
        "/1/user/-/devices.json" => Reply::ok(
            r#"[
              {"deviceVersion":"Charge 2","id":"1","lastSyncTime":"2026-11-01T01:10:00.000","type":"TRACKER"},
              {"deviceVersion":"Inspire","id":"2","lastSyncTime":"2026-11-01T03:00:00","type":"TRACKER"},
              {"deviceVersion":"MobileTrack","id":"3","type":"TRACKER"},
              {"deviceVersion":"Aria","id":"4","lastSyncTime":"2026-10-30T09:00:00.000","type":"SCALE"}
            ]"#,
        ),
        "/1/user/-/profile.json" => Reply::ok(PROFILE.replace("America/Los_Angeles", "America/New_York")),
        other => Reply::new(404, format!("unexpected {other}")),
    })
    .await;
    let client = FitbitClient::new(&args(&base));
    // Without a zone in the session, the profile's is fetched: 03:00 EST = 08:00Z.
    let latest = latest_sync(&client, &session(None)).await.unwrap();
    assert_eq!(latest, Some(utc("2026-11-01T08:00:00Z")));
    assert_eq!(
        mock.paths(),
        ["/1/user/-/devices.json", "/1/user/-/profile.json"]
    );
    assert!(
        mock.seen()
            .iter()
            .all(|s| s.authorization == format!("Bearer {ACCESS_TOKEN}"))
    );
    // With the zone in the session, no profile request.
    let latest = latest_sync(&client, &session(Some(chrono_tz::Europe::London)))
        .await
        .unwrap();
    assert_eq!(latest, Some(utc("2026-11-01T03:00:00Z")));
    assert_eq!(mock.seen().len(), 3);
}

#[tokio::test]
async fn no_device_means_no_sync_and_a_bad_sync_time_is_invalid_data() {
    let (base, mock) = serve(|_| Reply::ok("[]")).await;
    let client = FitbitClient::new(&args(&base));
    assert_eq!(latest_sync(&client, &session(None)).await.unwrap(), None);
    assert_eq!(
        mock.seen().len(),
        1,
        "no profile request without a sync time"
    );

    let (base, _mock) =
        serve(|_| Reply::ok(r#"[{"lastSyncTime":"2026-11-01T03:00:00.000Z"}]"#)).await;
    let err = latest_sync(
        &FitbitClient::new(&args(&base)),
        &session(Some(chrono_tz::UTC)),
    )
    .await
    .unwrap_err();
    let reason = assert_permanent(&err, ParticipantState::ProviderDataInvalid);
    assert!(reason.contains("2026-11-01T03:00:00.000Z"), "{reason}");
}

#[tokio::test]
async fn the_time_zone_is_the_profiles_and_must_be_iana() {
    let (base, _mock) = serve(|_| Reply::ok(PROFILE)).await;
    let client = FitbitClient::new(&args(&base));
    assert_eq!(
        client.time_zone(&session(None)).await.unwrap().as_deref(),
        Some("America/Los_Angeles")
    );
    let (base, _mock) =
        serve(|_| Reply::ok(PROFILE.replace("America/Los_Angeles", "Mars/Olympus"))).await;
    let err = FitbitClient::new(&args(&base))
        .time_zone(&session(None))
        .await
        .unwrap_err();
    assert!(assert_permanent(&err, ParticipantState::ProviderDataInvalid).contains("Mars/Olympus"));
    let (base, _mock) = serve(|_| Reply::ok(r#"{"user":{"displayName":"A"}}"#)).await;
    assert_eq!(
        FitbitClient::new(&args(&base))
            .time_zone(&session(None))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn daily_summaries_read_both_endpoints_for_each_local_day() {
    let (base, mock) = serve(|seen| match seen.path.as_str() {
        "/1/user/-/activities/date/2017-08-15.json" | "/1/user/-/activities/date/2017-08-16.json" => {
            Reply::ok(DAILY_SUMMARY)
        }
        "/1/user/-/activities/heart/date/2017-08-15/1d.json" => Reply::ok(HEART_1D),
        // A day without heart-rate data (no zones, no resting rate).
        "/1/user/-/activities/heart/date/2017-08-16/1d.json" => Reply::ok(
            r#"{"activities-heart":[{"dateTime":"2017-08-16","value":{"customHeartRateZones":[]}}]}"#,
        ),
        _ => super::families_tests::empty(seen),
    })
    .await;
    let summaries = FitbitClient::new(&args(&base))
        .daily_families(&session(None), date("2017-08-15")..date("2017-08-17"))
        .await
        .unwrap();
    let paths = mock.paths();
    assert_eq!(paths.len(), 4 + 6, "then one request per range family");
    assert_eq!(
        paths[..4],
        [
            "/1/user/-/activities/date/2017-08-15.json",
            "/1/user/-/activities/heart/date/2017-08-15/1d.json",
            "/1/user/-/activities/date/2017-08-16.json",
            "/1/user/-/activities/heart/date/2017-08-16/1d.json",
        ]
    );
    assert!(
        mock.seen().iter().all(|s| s.query.is_empty()),
        "daily data is local days"
    );
    assert_eq!(summaries.activity.len(), 2);
    assert_eq!(summaries.activity[1].date, date("2017-08-16"));
    assert_eq!(summaries.activity[0].steps, Some(15720));
    assert_eq!(summaries.heart_rate_zones.len(), 4);
    assert!(
        summaries
            .heart_rate_zones
            .iter()
            .all(|z| z.date == date("2017-08-15"))
    );
    assert_eq!(
        summaries.resting_heart_rate,
        [RestingHeartRateDay {
            date: date("2017-08-15"),
            resting_heart_rate: 51
        }]
    );
}

#[tokio::test]
async fn daily_data_of_the_wrong_shape_or_day_is_invalid_data() {
    let (base, _mock) = serve(|seen| {
        if seen.path.contains("/heart/") {
            Reply::ok(HEART_1D) // says 2017-08-15
        } else {
            Reply::ok(DAILY_SUMMARY)
        }
    })
    .await;
    let err = FitbitClient::new(&args(&base))
        .daily_families(&session(None), date("2017-08-16")..date("2017-08-17"))
        .await
        .unwrap_err();
    assert!(assert_permanent(&err, ParticipantState::ProviderDataInvalid).contains("2017-08-15"));
    let (base, _mock) = serve(|_| Reply::ok(r#"{"summary":{"steps":{"count":3}}}"#)).await;
    let err = FitbitClient::new(&args(&base))
        .daily_families(&session(None), date("2017-08-16")..date("2017-08-17"))
        .await
        .unwrap_err();
    assert!(
        assert_permanent(&err, ParticipantState::ProviderDataInvalid)
            .contains("documented JSON shape")
    );
}

#[tokio::test]
async fn intraday_asks_in_utc_for_the_slice_and_reads_the_documented_examples() {
    let (base, mock) = serve(|seen| {
        if seen.path.contains("/heart/") {
            Reply::ok(HEART_INTRADAY_1MIN)
        } else {
            Reply::ok(STEPS_INTRADAY)
        }
    })
    .await;
    let intraday = FitbitClient::new(&args(&base))
        .intraday(
            &session(Some(chrono_tz::America::Los_Angeles)),
            slice("2017-06-29T00:00:00Z", "2017-06-29T00:03:00Z"),
        )
        .await
        .unwrap();
    let seen = mock.seen();
    assert_eq!(
        seen[0].path,
        "/1/user/-/activities/heart/date/2017-06-29/2017-06-29/1min/time/00:00/00:02.json"
    );
    assert_eq!(
        seen[1].path,
        "/1/user/-/activities/steps/date/2017-06-29/2017-06-29/1min/time/00:00/00:02.json"
    );
    assert!(seen.iter().all(|s| s.query == "timezone=UTC"));
    let pdt = -7 * 3600;
    assert_eq!(
        points(&intraday.heart_rate),
        [
            ("2017-06-29T00:00:00Z".to_owned(), pdt, 58),
            ("2017-06-29T00:01:00Z".to_owned(), pdt, 58),
            ("2017-06-29T00:02:00Z".to_owned(), pdt, 56),
        ]
    );
    // The zero-filled minute is not stored.
    assert_eq!(
        points(&intraday.steps),
        [
            ("2017-06-29T00:00:00Z".to_owned(), pdt, 1),
            ("2017-06-29T00:01:00Z".to_owned(), pdt, 2),
        ]
    );
}

#[tokio::test]
async fn a_slice_across_midnight_and_a_dst_change_dates_and_offsets_every_point() {
    // 1sec heart rate; New York falls back at 2026-11-01T06:00Z. This slice crosses UTC
    // midnight on 2026-11-01/02 (EST, -5 h) — and a second one crosses the change.
    let (base, mock) = serve(|seen| {
        let heart = seen.path.contains("/heart/");
        if seen.path.contains("/2026-11-01/2026-11-02/") {
            if heart {
                Reply::ok(heart_1sec(&[
                    ("23:59:00", 70),
                    ("23:59:15", 71),
                    ("23:59:58", 72),
                    ("00:00:07", 73),
                    ("00:00:59", 74),
                ]))
            } else {
                Reply::ok(minutes(
                    "activities-steps",
                    &[("23:59:00", 0), ("00:00:00", 12)],
                ))
            }
        } else if heart {
            Reply::ok(heart_1sec(&[("05:59:30", 80), ("06:00:30", 81)]))
        } else {
            Reply::ok(minutes(
                "activities-steps",
                &[("05:59:00", 5), ("06:00:00", 6)],
            ))
        }
    })
    .await;
    let mut config = args(&base);
    config.heart_rate_detail = HeartRateDetail::OneSecond;
    let client = FitbitClient::new(&config);
    let ny = session(Some(chrono_tz::America::New_York));

    let intraday = client
        .intraday(&ny, slice("2026-11-01T23:59:00Z", "2026-11-02T00:01:00Z"))
        .await
        .unwrap();
    assert_eq!(
        mock.paths()[0],
        "/1/user/-/activities/heart/date/2026-11-01/2026-11-02/1sec/time/23:59/00:00.json"
    );
    assert_eq!(
        mock.paths()[1],
        "/1/user/-/activities/steps/date/2026-11-01/2026-11-02/1min/time/23:59/00:00.json"
    );
    let est = -5 * 3600;
    assert_eq!(
        points(&intraday.heart_rate),
        [
            ("2026-11-01T23:59:00Z".to_owned(), est, 70),
            ("2026-11-01T23:59:15Z".to_owned(), est, 71),
            ("2026-11-01T23:59:58Z".to_owned(), est, 72),
            ("2026-11-02T00:00:07Z".to_owned(), est, 73),
            ("2026-11-02T00:00:59Z".to_owned(), est, 74),
        ]
    );
    assert_eq!(
        points(&intraday.steps),
        [("2026-11-02T00:00:00Z".to_owned(), est, 12)]
    );

    let intraday = client
        .intraday(&ny, slice("2026-11-01T05:59:00Z", "2026-11-01T06:01:00Z"))
        .await
        .unwrap();
    let edt = -4 * 3600;
    assert_eq!(
        points(&intraday.heart_rate),
        [
            ("2026-11-01T05:59:30Z".to_owned(), edt, 80),
            ("2026-11-01T06:00:30Z".to_owned(), est, 81),
        ]
    );
    assert_eq!(
        points(&intraday.steps),
        [
            ("2026-11-01T05:59:00Z".to_owned(), edt, 5),
            ("2026-11-01T06:00:00Z".to_owned(), est, 6),
        ]
    );

    // Without a zone the offset is 0.
    let intraday = client
        .intraday(
            &session(None),
            slice("2026-11-01T05:59:00Z", "2026-11-01T06:01:00Z"),
        )
        .await
        .unwrap();
    assert!(
        intraday
            .heart_rate
            .iter()
            .all(|p| p.utc_offset_seconds == 0)
    );
}

#[tokio::test]
async fn a_point_outside_the_slice_is_refused_naming_its_time() {
    let (base, _mock) = serve(|_| {
        Reply::ok(minutes(
            "activities-heart",
            &[("12:00:00", 60), ("12:04:00", 61), ("12:05:00", 62)],
        ))
    })
    .await;
    let err = FitbitClient::new(&args(&base))
        .intraday(
            &session(None),
            slice("2026-11-01T12:00:00Z", "2026-11-01T12:05:00Z"),
        )
        .await
        .unwrap_err();
    let reason = assert_permanent(&err, ParticipantState::ProviderDataInvalid);
    assert!(reason.contains("\"12:05:00\""), "{reason}");
}

#[tokio::test]
async fn an_unaligned_slice_keeps_only_its_own_points() {
    let (base, mock) = serve(|seen| {
        if seen.path.contains("/heart/") {
            Reply::ok(minutes(
                "activities-heart",
                &[("12:00:00", 60), ("12:01:00", 61), ("12:02:00", 62)],
            ))
        } else {
            Reply::ok(minutes("activities-steps", &[]))
        }
    })
    .await;
    let intraday = FitbitClient::new(&args(&base))
        .intraday(
            &session(None),
            slice("2026-11-01T12:00:30Z", "2026-11-01T12:02:30Z"),
        )
        .await
        .unwrap();
    assert!(mock.paths()[0].ends_with("/time/12:00/12:02.json"));
    let kept: Vec<i64> = intraday.heart_rate.iter().map(|p| p.value).collect();
    assert_eq!(kept, [61, 62]);
}

#[tokio::test]
async fn a_403_on_intraday_keeps_the_participant_on_daily_summaries() {
    let (base, mock) = serve(|seen| {
        if seen.path.contains("/steps/") {
            Reply::new(
                403,
                fitbit_error(
                    "insufficient_permissions",
                    "Intraday access is not granted.",
                ),
            )
        } else {
            Reply::ok(HEART_INTRADAY_1MIN)
        }
    })
    .await;
    let client = FitbitClient::new(&args(&base));
    let session = session(None);
    let intraday = client
        .intraday(
            &session,
            slice("2017-06-29T00:00:00Z", "2017-06-29T00:03:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(
        intraday,
        Intraday::default(),
        "nothing half-fetched is returned"
    );
    let reason = session.intraday_denied().unwrap();
    assert!(reason.starts_with(INTRADAY_DENIED_REASON), "{reason}");
    assert!(reason.contains("insufficient_permissions"), "{reason}");
    assert_eq!(mock.seen().len(), 2, "a 403 is not retried");
    // Later slices of the session send nothing.
    let intraday = client
        .intraday(
            &session,
            slice("2017-06-29T00:03:00Z", "2017-06-29T00:06:00Z"),
        )
        .await
        .unwrap();
    assert_eq!(intraday, Intraday::default());
    assert_eq!(mock.seen().len(), 2);
}

#[tokio::test]
async fn once_the_quota_is_spent_the_next_call_is_not_sent() {
    let (base, mock) = serve(|_| {
        Reply::ok("[]")
            .header("fitbit-rate-limit-limit", 150)
            .header("fitbit-rate-limit-remaining", 0)
            .header("fitbit-rate-limit-reset", 1200)
    })
    .await;
    let client = FitbitClient::new(&args(&base));
    let session = session(None);
    assert_eq!(latest_sync(&client, &session).await.unwrap(), None);
    let err = client.time_zone(&session).await.unwrap_err();
    match err {
        SyncError::RateLimited {
            retry_after: Some(wait),
            reason,
        } => {
            assert!(
                wait <= Duration::from_secs(1200) && wait > Duration::from_secs(1190),
                "{wait:?}"
            );
            assert!(reason.contains("not sent"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(mock.seen().len(), 1);
    assert!(session.quota_resets_in().is_some());
}

#[tokio::test]
async fn quota_left_clears_a_spent_quota_and_a_429_spends_it() {
    let calls = Arc::new(Mutex::new(0));
    let counter = calls.clone();
    let (base, mock) = serve(move |_| {
        let mut n = counter.lock().unwrap();
        *n += 1;
        if *n == 1 {
            Reply::ok("[]").header("fitbit-rate-limit-remaining", 3)
        } else {
            Reply::new(429, fitbit_error("system", "Too Many Requests"))
                .header("fitbit-rate-limit-remaining", 0)
                .header("fitbit-rate-limit-reset", 600)
                .header("retry-after", 1)
        }
    })
    .await;
    let client = FitbitClient::new(&args(&base));
    let session = session(None);
    session.set_quota_spent(None);
    latest_sync(&client, &session).await.unwrap();
    assert_eq!(session.quota_resets_in(), None);
    let err = latest_sync(&client, &session).await.unwrap_err();
    assert!(matches!(
        err,
        SyncError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(600)
    ));
    assert_eq!(mock.seen().len(), 2, "a 429 is not retried in place");
    assert!(matches!(
        latest_sync(&client, &session).await.unwrap_err(),
        SyncError::RateLimited { .. }
    ));
    assert_eq!(mock.seen().len(), 2, "nor is anything sent after it");
}

#[tokio::test]
async fn a_full_session_budget_refuses_instead_of_waiting_an_hour() {
    let (base, mock) = serve(|_| Reply::ok("[]")).await;
    let client = FitbitClient::new(&args(&base));
    let session = Session::new(
        Secret::new(ACCESS_TOKEN.to_owned()),
        RequestBudget::new(1, Duration::from_secs(3600)),
    );
    latest_sync(&client, &session).await.unwrap();
    let err = latest_sync(&client, &session).await.unwrap_err();
    assert!(
        matches!(err, SyncError::RateLimited { retry_after: Some(d), .. } if d > Duration::from_secs(3500))
    );
    assert_eq!(mock.seen().len(), 1);
    assert_eq!(client.request_budget().limit(), 150);
    assert_eq!(client.request_budget().window(), Duration::from_secs(3600));
}

#[tokio::test]
async fn server_errors_are_retried_in_place_but_an_expired_token_is_not() {
    let (base, mock) = serve(|_| {
        Reply::new(
            500,
            "<!DOCTYPE html><html><body>Internal Server Error</body></html>",
        )
    })
    .await;
    let err = latest_sync(&FitbitClient::new(&args(&base)), &session(None))
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert_eq!(mock.seen().len(), 3, "one request and two quick retries");

    let (base, mock) = serve(|_| {
        Reply::new(
            401,
            fitbit_error(
                "expired_token",
                &format!("Access token expired: {ACCESS_TOKEN}"),
            ),
        )
    })
    .await;
    let err = latest_sync(&FitbitClient::new(&args(&base)), &session(None))
        .await
        .unwrap_err();
    assert!(err.is_transient());
    assert!(err.to_string().contains("expired_token"), "{err}");
    assert!(!err.to_string().contains(ACCESS_TOKEN), "{err}");
    assert_eq!(mock.seen().len(), 1);
}

/// The latest sync of all paired devices, as the worker reads it.
async fn latest_sync(
    client: &FitbitClient,
    session: &Session,
) -> Result<Option<DateTime<Utc>>, SyncError> {
    Ok(client
        .paired_devices(session)
        .await?
        .into_iter()
        .filter_map(|d| d.last_sync_time.map(crate::domain::UtcInstant::get))
        .max())
}
