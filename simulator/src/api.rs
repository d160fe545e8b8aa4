//! The Google Health API v4 routes: settings, identity, paired devices, `list` and
//! `dailyRollUp`.
//!
//! Request processing order mirrors a Google front end: authentication (401), then
//! per-participant and random faults (503/429), the per-user rate limit (429), data-type
//! validation (400), scope (403), and finally the request itself (400 for bad
//! arguments). Data generation runs on the blocking pool because a page of 10 000
//! one-second heart-rate samples or a 90-day rollup is real CPU work.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Days, NaiveDate};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::catalog::{self, Bundle, DataType};
use crate::clock::{ceil_secs, duration_secs, from_unix, local, offset_secs, rfc3339};
use crate::config::IntradayType;
use crate::faults::{self, RandomFault};
use crate::filter::{self, Bounds};
use crate::generator::{HrStats, ZONE_TYPES, battery_status, round2};
use crate::state::{AppState, Attribution, Snapshot};
mod families;

use crate::wire::{
    ApiError, CivilDateTime, DailyHeartRateZones, DailyRestingHeartRate, DataPoint, DataSource,
    Date, HeartRate, HeartRateZone, ListDataPointsResponse, ObservationSampleTime,
    ObservationTimeInterval, PointValue, RestingMetadata, Steps, bytes_response, put_double,
    put_duration, put_int64,
};

type Params = HashMap<String, String>;

/// Routes of one API version (mounted under `/v4` and `/v4beta`).
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/users/{user}/settings", get(settings))
        .route("/users/{user}/identity", get(identity))
        .route("/users/{user}/pairedDevices", get(paired_devices))
        .route("/users/{user}/pairedDevices/{device}", get(paired_device))
        .route(
            "/users/{user}/dataTypes/{data_type}/{method}",
            get(data_points_get).post(data_points_post),
        )
}

/// Adds the attribution used by the statistics middleware.
fn attributed(mut response: Response, participant: usize) -> Response {
    response.extensions_mut().insert(Attribution {
        participant,
        data: true,
        legacy: false,
    });
    response
}

fn bearer(headers: &HeaderMap, params: &Params) -> Option<String> {
    if let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    params
        .get("access_token")
        .or_else(|| params.get("oauth_token"))
        .cloned()
}

/// An authenticated caller that passed faults and the rate limit.
struct Caller {
    snapshot: Snapshot,
    scopes: Vec<String>,
}

/// A request refused before it reached its handler, attributed when the participant is
/// known.
struct Refused {
    error: ApiError,
    participant: Option<usize>,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let response = self.error.into_response();
        match self.participant {
            Some(index) => attributed(response, index),
            None => response,
        }
    }
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        Refused {
            error,
            participant: None,
        }
    }
}

/// Authentication, faults and rate limiting.
fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    params: &Params,
    user: &str,
) -> Result<Caller, Refused> {
    let Some(token) = bearer(headers, params) else {
        return Err(ApiError::credentials_missing().into());
    };
    let mut rt = state.lock();
    let Some(access) = rt.tokens.get(&token).cloned() else {
        return Err(ApiError::invalid_credentials(
            "ACCESS_TOKEN_TYPE_UNSUPPORTED",
            "Invalid Credentials",
        )
        .into());
    };
    let index = access.participant;
    let fail = |error: ApiError| {
        Err(Refused {
            error,
            participant: Some(index),
        })
    };
    if access.expires <= Instant::now() {
        rt.tokens.remove(&token);
        return fail(ApiError::invalid_credentials(
            "ACCESS_TOKEN_EXPIRED",
            "INVALID_AUTHENTICATOR: Token expired",
        ));
    }
    if rt.revoked[index] {
        return fail(ApiError::invalid_credentials(
            "ACCESS_TOKEN_TYPE_UNSUPPORTED",
            "Invalid Credentials",
        ));
    }
    let profile = &state.profiles[index];
    if user != "me" && user != profile.health_user_id {
        return fail(ApiError {
            code: StatusCode::FORBIDDEN,
            status: "PERMISSION_DENIED",
            message: "The caller does not have permission".to_owned(),
            reason: Some("RESOURCE_PERMISSION_DENIED".to_owned()),
            retry_after: None,
        });
    }
    let participant_faults = rt.faults.participant(&profile.id);
    if participant_faults.fail_5xx {
        return fail(ApiError::unavailable());
    }
    if let Some(left) = rt.held(index) {
        return fail(ApiError::rate_limited(Some(left)));
    }
    let retry_after = rt.faults.retry_after_secs;
    match rt.faults.roll() {
        Some(RandomFault::Unavailable) => return fail(ApiError::unavailable()),
        Some(RandomFault::RateLimited) => return fail(ApiError::rate_limited(retry_after)),
        None => {}
    }
    if !rt.admit(index, state.config.rate_limit_per_minute) {
        return fail(ApiError::rate_limited(retry_after));
    }
    let snapshot = Snapshot {
        index,
        latest_sync: state.latest_sync(index, rt.advance_minutes),
        restatements: rt.restatements[index].clone(),
        faults: participant_faults,
        deletions: rt.deletions_of(&profile.id),
    };
    Ok(Caller {
        snapshot,
        scopes: access.scopes,
    })
}

impl Caller {
    fn require(&self, bundle: Bundle) -> Result<(), ApiError> {
        if bundle.readable_with(&self.scopes) {
            Ok(())
        } else {
            Err(ApiError::scope_insufficient())
        }
    }
}

fn query_params(query: Result<Query<Params>, QueryRejection>) -> Result<Params, ApiError> {
    query
        .map(|Query(p)| p)
        .map_err(|e| ApiError::invalid_argument("INVALID_ARGUMENT", e.body_text()))
}

/// Reads an integer query parameter given in camelCase or snake_case.
fn int_param(params: &Params, camel: &str, snake: &str) -> Result<Option<i64>, ApiError> {
    match params.get(camel).or_else(|| params.get(snake)) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            ApiError::invalid_argument(
                "INVALID_ARGUMENT",
                format!("Invalid value at '{snake}' (TYPE_INT32), \"{v}\""),
            )
        }),
    }
}

fn page_size(params: &Params, default: usize, max: usize) -> Result<usize, ApiError> {
    match int_param(params, "pageSize", "page_size")? {
        None | Some(0) => Ok(default),
        Some(n) if n < 0 => Err(ApiError::invalid_argument(
            "INVALID_ARGUMENT",
            "page_size must not be negative.",
        )),
        Some(n) => Ok(usize::try_from(n).unwrap_or(max).min(max)),
    }
}

/// Finishes a data response: applies per-participant body faults and attribution.
fn data_response(caller: &Caller, mut value: Value, collection: &str) -> Response {
    if caller.snapshot.faults.malformed_json {
        faults::malform(&mut value, collection);
    }
    body_response(caller, &value)
}

fn body_response(caller: &Caller, value: &Value) -> Response {
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    if caller.snapshot.faults.truncate_body {
        body = faults::truncate(body);
    }
    attributed(bytes_response(StatusCode::OK, body), caller.snapshot.index)
}

/// `GET /v4/users/me/settings`.
async fn settings(
    State(state): State<Arc<AppState>>,
    Path(user): Path<String>,
    headers: HeaderMap,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let params = match query_params(query) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let caller = match authenticate(&state, &headers, &params, &user) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    if let Err(e) = caller.require(Bundle::Settings) {
        return attributed(e.into_response(), caller.snapshot.index);
    }
    let profile = &state.profiles[caller.snapshot.index];
    let tz = profile.tz.name();
    let american = tz.starts_with("America/");
    let (locale, food) = match tz {
        "Europe/London" => ("en_GB", "en-GB"),
        "Australia/Sydney" => ("en_AU", "en-AU"),
        "Asia/Kolkata" | "Asia/Kathmandu" => ("en_IN", "en-US"),
        _ => ("en_US", "en-US"),
    };
    let value = json!({
        "name": "users/me/settings",
        "timeZone": tz,
        "utcOffset": duration_secs(i64::from(offset_secs(profile.tz, caller.snapshot.latest_sync))),
        "languageLocale": locale,
        "distanceUnit": if american { "DISTANCE_UNIT_MILES" } else { "DISTANCE_UNIT_KILOMETERS" },
        "weightUnit": if american { "WEIGHT_UNIT_POUNDS" } else { "WEIGHT_UNIT_KILOGRAMS" },
        "heightUnit": if american { "HEIGHT_UNIT_INCHES" } else { "HEIGHT_UNIT_CENTIMETERS" },
        "waterUnit": if american { "WATER_UNIT_FL_OZ" } else { "WATER_UNIT_ML" },
        "glucoseUnit": if american { "GLUCOSE_UNIT_MG_DL" } else { "GLUCOSE_UNIT_MMOL_L" },
        "temperatureUnit": if american { "TEMPERATURE_UNIT_FAHRENHEIT" } else { "TEMPERATURE_UNIT_CELSIUS" },
        "swimUnit": if american { "SWIM_UNIT_YARDS" } else { "SWIM_UNIT_METERS" },
        "strideLengthWalkingType": "STRIDE_LENGTH_TYPE_AUTO",
        "strideLengthRunningType": "STRIDE_LENGTH_TYPE_AUTO",
        "autoStrideEnabled": true,
        "foodLanguageCode": food,
    });
    body_response(&caller, &value)
}

/// `GET /v4/users/me/identity`: needs any readonly data scope.
async fn identity(
    State(state): State<Arc<AppState>>,
    Path(user): Path<String>,
    headers: HeaderMap,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let params = match query_params(query) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let caller = match authenticate(&state, &headers, &params, &user) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let data_bundles = [
        Bundle::ActivityAndFitness,
        Bundle::HealthMetrics,
        Bundle::Sleep,
        Bundle::Nutrition,
    ];
    if !data_bundles.iter().any(|b| b.readable_with(&caller.scopes)) {
        return attributed(
            ApiError::scope_insufficient().into_response(),
            caller.snapshot.index,
        );
    }
    let profile = &state.profiles[caller.snapshot.index];
    let legacy_user_id = state.lock().legacy.identity_override[caller.snapshot.index]
        .clone()
        .unwrap_or_else(|| profile.encoded_id.clone());
    let value = json!({
        "name": "users/me/identity",
        "healthUserId": profile.health_user_id,
        "legacyUserId": legacy_user_id,
    });
    body_response(&caller, &value)
}

fn device_json(d: &crate::generator::Device) -> Value {
    json!({
        "name": format!("users/me/pairedDevices/{}", d.id),
        "deviceType": d.device_type,
        "deviceVersion": d.version,
        "batteryStatus": battery_status(d.battery_level),
        "batteryLevel": d.battery_level,
        "lastSyncTime": rfc3339(d.last_sync),
        "macAddress": d.mac,
        "features": d.features,
    })
}

/// `GET /v4/users/me/pairedDevices` (pageSize default 5, max 100).
async fn paired_devices(
    State(state): State<Arc<AppState>>,
    Path(user): Path<String>,
    headers: HeaderMap,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let params = match query_params(query) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let caller = match authenticate(&state, &headers, &params, &user) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let result = (|| {
        caller.require(Bundle::Settings)?;
        let size = page_size(&params, 5, 100)?;
        let token = params
            .get("pageToken")
            .or_else(|| params.get("page_token"))
            .filter(|t| !t.is_empty());
        let offset = match token {
            None => 0,
            Some(t) => decode_token(t)
                .and_then(|s| {
                    s.strip_prefix("devices:")
                        .and_then(|o| o.parse::<usize>().ok())
                })
                .ok_or_else(invalid_page_token)?,
        };
        let devices = state.profiles[caller.snapshot.index].devices(caller.snapshot.latest_sync);
        let page: Vec<Value> = devices
            .iter()
            .skip(offset)
            .take(size)
            .map(device_json)
            .collect();
        let mut value = json!({});
        if !page.is_empty() {
            value["pairedDevices"] = Value::Array(page);
        }
        if offset + size < devices.len() {
            value["nextPageToken"] =
                Value::String(encode_token(&format!("devices:{}", offset + size)));
        }
        Ok::<_, ApiError>(value)
    })();
    match result {
        Ok(value) => body_response(&caller, &value),
        Err(e) => attributed(e.into_response(), caller.snapshot.index),
    }
}

/// `GET /v4/users/me/pairedDevices/{id}`.
async fn paired_device(
    State(state): State<Arc<AppState>>,
    Path((user, device)): Path<(String, String)>,
    headers: HeaderMap,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let params = match query_params(query) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let caller = match authenticate(&state, &headers, &params, &user) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    if let Err(e) = caller.require(Bundle::Settings) {
        return attributed(e.into_response(), caller.snapshot.index);
    }
    let devices = state.profiles[caller.snapshot.index].devices(caller.snapshot.latest_sync);
    match devices.iter().find(|d| d.id.to_string() == device) {
        Some(d) => body_response(&caller, &device_json(d)),
        None => attributed(
            ApiError::not_found(format!(
                "Paired device users/{user}/pairedDevices/{device} not found."
            ))
            .into_response(),
            caller.snapshot.index,
        ),
    }
}

fn encode_token(plain: &str) -> String {
    URL_SAFE_NO_PAD.encode(plain.as_bytes())
}

fn decode_token(token: &str) -> Option<String> {
    String::from_utf8(URL_SAFE_NO_PAD.decode(token.as_bytes()).ok()?).ok()
}

fn invalid_page_token() -> ApiError {
    ApiError::invalid_argument("INVALID_ARGUMENT", "The page token is invalid.")
}

/// A `list` page token binds the data type and the exact filter, so a token cannot be
/// replayed against another query, and carries the exclusive upper bound of the next page
/// (results are newest first).
fn list_token_prefix(dt: &DataType, filter: &str) -> String {
    let digest = Sha256::digest(format!("{}\n{}", dt.kebab, filter));
    let hash: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("list:{}:{hash}:", dt.kebab)
}

fn type_error(kebab: &str) -> ApiError {
    ApiError::invalid_argument(
        "INVALID_PARENT_DATA_TYPE_COLLECTION",
        format!("Invalid data type ID referenced in the parent data type collection: {kebab}"),
    )
}

/// `GET .../dataTypes/{type}/{method}`: `dataPoints` is `list`.
async fn data_points_get(
    State(state): State<Arc<AppState>>,
    Path((user, data_type, method)): Path<(String, String, String)>,
    headers: HeaderMap,
    query: Result<Query<Params>, QueryRejection>,
) -> Response {
    let params = match query_params(query) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if method != "dataPoints" && method != "dataPoints:reconcile" {
        return ApiError::not_found(format!("Method {method} not found.")).into_response();
    }
    let caller = match authenticate(&state, &headers, &params, &user) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let index = caller.snapshot.index;
    let Some(dt) = catalog::lookup(&data_type) else {
        return attributed(type_error(&data_type).into_response(), index);
    };
    if let Err(e) = caller.require(dt.bundle) {
        return attributed(e.into_response(), index);
    }
    if method == "dataPoints:reconcile" {
        return attributed(
            ApiError::unimplemented("dataPoints.reconcile is not implemented by the simulator.")
                .into_response(),
            index,
        );
    }
    let state2 = Arc::clone(&state);
    let snapshot = caller.snapshot.clone();
    let job = tokio::task::spawn_blocking(move || list(&state2, &snapshot, dt, &params)).await;
    match job {
        Ok(Ok(value)) => data_response(&caller, value, "dataPoints"),
        Ok(Err(e)) => attributed(e.into_response(), index),
        Err(_) => attributed(internal().into_response(), index),
    }
}

fn internal() -> ApiError {
    ApiError {
        code: StatusCode::INTERNAL_SERVER_ERROR,
        status: "INTERNAL",
        message: "Internal error encountered.".to_owned(),
        reason: None,
        retry_after: None,
    }
}

/// `POST .../dataTypes/{type}/{method}`: `dataPoints:dailyRollUp`.
async fn data_points_post(
    State(state): State<Arc<AppState>>,
    Path((user, data_type, method)): Path<(String, String, String)>,
    headers: HeaderMap,
    query: Result<Query<Params>, QueryRejection>,
    body: Bytes,
) -> Response {
    let params = match query_params(query) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let known = [
        "dataPoints",
        "dataPoints:dailyRollUp",
        "dataPoints:rollUp",
        "dataPoints:batchDelete",
    ];
    if !known.contains(&method.as_str()) {
        return ApiError::not_found(format!("Method {method} not found.")).into_response();
    }
    let caller = match authenticate(&state, &headers, &params, &user) {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let index = caller.snapshot.index;
    let Some(dt) = catalog::lookup(&data_type) else {
        return attributed(type_error(&data_type).into_response(), index);
    };
    if method != "dataPoints:dailyRollUp" {
        return attributed(
            ApiError::unimplemented(format!(
                "{method} is not implemented by the simulator (read-only)."
            ))
            .into_response(),
            index,
        );
    }
    if let Err(e) = caller.require(dt.bundle) {
        return attributed(e.into_response(), index);
    }
    let state2 = Arc::clone(&state);
    let snapshot = caller.snapshot.clone();
    let job =
        tokio::task::spawn_blocking(move || daily_rollup(&state2, &snapshot, dt, &body)).await;
    match job {
        Ok(Ok(value)) => data_response(&caller, value, "rollupDataPoints"),
        Ok(Err(e)) => attributed(e.into_response(), index),
        Err(_) => attributed(internal().into_response(), index),
    }
}

/// Widest UTC offset magnitude, used to turn civil bounds into a physical superset.
const MAX_OFFSET_SECS: i64 = 14 * 3600;

/// Physical `[lo, hi)` superset of the filter bounds (civil bounds are checked exactly
/// per point afterwards).
fn physical_range(bounds: &Bounds) -> (i64, i64) {
    let mut lo = bounds.physical_lo.map_or(i64::MIN, ceil_secs);
    let mut hi = bounds.physical_hi.map_or(i64::MAX, ceil_secs);
    if let Some(c) = bounds.civil_lo {
        lo = lo.max(c.and_utc().timestamp() - MAX_OFFSET_SECS);
    }
    if let Some(c) = bounds.civil_hi {
        hi = hi.min(c.and_utc().timestamp() + MAX_OFFSET_SECS);
    }
    (lo, hi)
}

/// `users.dataTypes.dataPoints.list`.
fn list(
    state: &AppState,
    snap: &Snapshot,
    dt: &DataType,
    params: &Params,
) -> Result<Value, ApiError> {
    if !dt.list {
        return Err(ApiError::invalid_argument(
            "INVALID_ARGUMENT",
            format!(
                "List is not supported for data type {}, but the following actions are supported: rollup, dailyRollup",
                dt.kebab
            ),
        ));
    }
    let (default_size, max_size) = dt.page_size_limits();
    let size = page_size(params, default_size, max_size)?;
    let filter_text = params.get("filter").map(String::as_str).unwrap_or_default();
    let bounds = filter::parse(dt, filter_text)
        .map_err(|e| ApiError::invalid_argument(e.reason, e.message))?;
    let prefix = list_token_prefix(dt, filter_text);
    let cursor = match params
        .get("pageToken")
        .or_else(|| params.get("page_token"))
        .filter(|t| !t.is_empty())
    {
        None => None,
        Some(t) => Some(
            decode_token(t)
                .and_then(|s| s.strip_prefix(&prefix).and_then(|c| c.parse::<i64>().ok()))
                .ok_or_else(invalid_page_token)?,
        ),
    };
    let profile = &state.profiles[snap.index];
    let window = state.window(snap);
    let mut response = ListDataPointsResponse::default();
    let (lo, mut hi) = physical_range(&bounds);
    let next = |c: i64| Some(encode_token(&format!("{prefix}{c}")));

    let page = families::Page {
        profile,
        window,
        snap,
        bounds: &bounds,
        cursor,
        size,
    };
    if let Some((points, cursor)) = families::list(dt, &page) {
        let mut value = json!({});
        if !points.is_empty() {
            value["dataPoints"] = Value::Array(points);
        }
        if let Some(token) = cursor.and_then(next) {
            value["nextPageToken"] = Value::String(token);
        }
        return Ok(value);
    }

    match dt.kebab {
        "heart-rate" => {
            if let Some(c) = cursor {
                hi = hi.min(c);
            }
            let keep = |s: &crate::generator::HrSample| {
                bounds.civil_ok(s.local) && !snap.deleted(IntradayType::HeartRate, s.t)
            };
            let (samples, more) = profile.hr_desc(window, lo, hi, &keep, size);
            if more && let Some(last) = samples.last() {
                response.next_page_token = next(last.t);
            }
            response.data_points = samples
                .iter()
                .map(|s| DataPoint {
                    data_source: DataSource::fitbit("PASSIVELY_MEASURED", profile.tracker),
                    value: PointValue::HeartRate(HeartRate {
                        sample_time: ObservationSampleTime {
                            physical_time: rfc3339(from_unix(s.t)),
                            utc_offset: duration_secs(i64::from(s.offset_secs)),
                            civil_time: CivilDateTime::from(s.local),
                        },
                        beats_per_minute: s.bpm.to_string(),
                    }),
                })
                .collect();
        }
        "steps" => {
            if let Some(c) = cursor {
                hi = hi.min(c);
            }
            let keep = |m: &crate::generator::Minute| {
                bounds.civil_ok(m.local) && !snap.deleted(IntradayType::Steps, m.index * 60)
            };
            let (minutes, more) = profile.steps_desc(window, lo, hi, &keep, size);
            if more && let Some(last) = minutes.last() {
                response.next_page_token = next(last.index * 60);
            }
            response.data_points = minutes
                .iter()
                .map(|m| {
                    let start = from_unix(m.index * 60);
                    let end = from_unix(m.index * 60 + 60);
                    DataPoint {
                        data_source: DataSource::fitbit("PASSIVELY_MEASURED", profile.tracker),
                        value: PointValue::Steps(Steps {
                            interval: ObservationTimeInterval::new(
                                start,
                                m.offset_secs,
                                end,
                                offset_secs(profile.tz, end),
                                m.local,
                                local(profile.tz, end),
                            ),
                            count: m.steps.to_string(),
                        }),
                    }
                })
                .collect();
        }
        "daily-resting-heart-rate" | "daily-heart-rate-zones" => {
            let resting = dt.kebab == "daily-resting-heart-rate";
            let mut dates = profile.data_dates(window);
            dates.retain(|d| {
                let midnight = d.and_time(chrono::NaiveTime::MIN);
                bounds.civil_ok(midnight)
                    && cursor.is_none_or(|c| i64::from(chrono::Datelike::num_days_from_ce(d)) < c)
            });
            dates.reverse();
            for date in dates {
                let Some(summary) = profile.day_summary(window, date) else {
                    continue;
                };
                let summary = summary.restated(snap.restate_version(date));
                let point = if resting {
                    let Some((bpm, method)) = summary.resting else {
                        continue;
                    };
                    DataPoint {
                        data_source: DataSource::fitbit("DERIVED", profile.tracker),
                        value: PointValue::DailyRestingHeartRate(DailyRestingHeartRate {
                            date: Date::from(date),
                            beats_per_minute: bpm.to_string(),
                            daily_resting_heart_rate_metadata: RestingMetadata {
                                calculation_method: method.as_wire(),
                            },
                        }),
                    }
                } else {
                    DataPoint {
                        data_source: DataSource::fitbit("DERIVED", profile.tracker),
                        value: PointValue::DailyHeartRateZones(DailyHeartRateZones {
                            date: Date::from(date),
                            heart_rate_zones: (0..4)
                                .map(|z| HeartRateZone {
                                    heart_rate_zone_type: ZONE_TYPES[z],
                                    min_beats_per_minute: summary.zones[z].to_string(),
                                    max_beats_per_minute: summary.zones[z + 1].to_string(),
                                })
                                .collect(),
                        }),
                    }
                };
                if response.data_points.len() == size {
                    if let Some(DataPoint { value, .. }) = response.data_points.last() {
                        let last_date = match value {
                            PointValue::DailyRestingHeartRate(p) => p.date,
                            PointValue::DailyHeartRateZones(p) => p.date,
                            _ => Date::from(date),
                        };
                        let last =
                            NaiveDate::from_ymd_opt(last_date.year, last_date.month, last_date.day)
                                .map_or(0, |d| i64::from(chrono::Datelike::num_days_from_ce(&d)));
                        response.next_page_token = next(last);
                    }
                    break;
                }
                response.data_points.push(point);
            }
        }
        // Known types without synthetic data: an empty page, as for a device that does
        // not record them.
        _ => {}
    }
    serde_json::to_value(&response).map_err(|_| internal())
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct WireDateIn {
    year: Option<i32>,
    month: Option<u32>,
    day: Option<u32>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct WireTimeIn {
    hours: Option<i32>,
    minutes: Option<i32>,
    seconds: Option<i32>,
    nanos: Option<i32>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct CivilDateTimeIn {
    date: Option<WireDateIn>,
    time: Option<WireTimeIn>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct CivilRangeIn {
    start: Option<CivilDateTimeIn>,
    end: Option<CivilDateTimeIn>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DailyRollUpRequest {
    range: Option<CivilRangeIn>,
    #[serde(alias = "window_size_days")]
    window_size_days: Option<i64>,
    #[serde(alias = "page_size")]
    page_size: Option<i64>,
    #[serde(alias = "page_token")]
    page_token: Option<String>,
    #[serde(alias = "data_source_family")]
    data_source_family: Option<String>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::invalid_argument("INVALID_ARGUMENT", message)
}

fn civil_date(field: &str, value: Option<&CivilDateTimeIn>) -> Result<NaiveDate, ApiError> {
    let value = value.ok_or_else(|| bad(format!("Required field 'range.{field}' is missing.")))?;
    if let Some(t) = &value.time {
        let nonzero = [t.hours, t.minutes, t.seconds, t.nanos]
            .iter()
            .any(|v| v.unwrap_or(0) != 0);
        if nonzero {
            return Err(bad(format!(
                "The {field} time must be aligned with the aggregation window (whole days, midnight)."
            )));
        }
    }
    let d = value
        .date
        .as_ref()
        .ok_or_else(|| bad(format!("Required field 'range.{field}.date' is missing.")))?;
    let (y, m, day) = (
        d.year.unwrap_or(0),
        d.month.unwrap_or(0),
        d.day.unwrap_or(0),
    );
    NaiveDate::from_ymd_opt(y, m, day).ok_or_else(|| {
        bad(format!(
            "Invalid date at 'range.{field}.date': {y:04}-{m:02}-{day:02}."
        ))
    })
}

/// `users.dataTypes.dataPoints.dailyRollUp`.
fn daily_rollup(
    state: &AppState,
    snap: &Snapshot,
    dt: &DataType,
    body: &[u8],
) -> Result<Value, ApiError> {
    let request: DailyRollUpRequest = serde_json::from_slice(body)
        .map_err(|e| bad(format!("Invalid JSON payload received. {e}")))?;
    if !dt.daily_rollup {
        return Err(bad(format!(
            "Daily rollup is not supported for data type {}.",
            dt.kebab
        )));
    }
    let range = request
        .range
        .ok_or_else(|| bad("Required field 'range' is missing."))?;
    let start = civil_date("start", range.start.as_ref())?;
    let end = civil_date("end", range.end.as_ref())?;
    let window_days = request.window_size_days.unwrap_or(1);
    if window_days < 1 {
        return Err(bad("window_size_days must be positive."));
    }
    if let Some(n) = request.page_size
        && n < 0
    {
        return Err(bad("page_size must not be negative."));
    }
    let days = (end - start).num_days();
    if days <= 0 {
        return Err(bad("The range end must be after the range start."));
    }
    if days > dt.rollup_cap_days {
        return Err(bad(format!(
            "The maximum range for {} is {} days, got {days} days.",
            dt.kebab, dt.rollup_cap_days
        )));
    }
    if days % window_days != 0 {
        return Err(bad(
            "The range must be a whole number of aggregation windows.",
        ));
    }
    let _ = (&request.page_token, &request.data_source_family);

    let profile = &state.profiles[snap.index];
    let window = state.window(snap);
    let mut points = Vec::new();
    let mut window_start = start;
    while window_start < end {
        let window_end = window_start + Days::new(window_days as u64);
        let dates: Vec<NaiveDate> = window_start
            .iter_days()
            .take_while(|d| *d < window_end)
            .collect();
        let value = rollup_value(profile, window, snap, dt, &dates);
        if let Some(value) = value {
            let mut point = serde_json::Map::new();
            point.insert(
                "civilStartTime".into(),
                json!(CivilDateTime::from(window_start)),
            );
            point.insert(
                "civilEndTime".into(),
                json!(CivilDateTime::from(window_end)),
            );
            point.insert(dt.camel(), value);
            points.push(Value::Object(point));
        }
        window_start = window_end;
    }
    let mut out = json!({});
    if !points.is_empty() {
        out["rollupDataPoints"] = Value::Array(points);
    }
    Ok(out)
}

/// The rollup value of one window, or `None` when the window has no data (no point).
fn rollup_value(
    profile: &crate::generator::Profile,
    window: crate::generator::Window,
    snap: &Snapshot,
    dt: &DataType,
    dates: &[NaiveDate],
) -> Option<Value> {
    let mut map = serde_json::Map::new();
    if dt.kebab == "heart-rate" {
        let mut stats = HrStats::default();
        for d in dates {
            stats.merge(&profile.day_hr_stats(window, *d));
        }
        if stats.count == 0 {
            return None;
        }
        map.insert(
            "beatsPerMinuteAvg".into(),
            json!(round2(stats.sum as f64 / stats.count as f64)),
        );
        map.insert("beatsPerMinuteMin".into(), json!(stats.min as f64));
        map.insert("beatsPerMinuteMax".into(), json!(stats.max as f64));
        return Some(Value::Object(map));
    }
    let summaries: Vec<_> = dates
        .iter()
        .filter_map(|d| {
            profile
                .day_summary(window, *d)
                .map(|s| s.restated(snap.restate_version(*d)))
        })
        .collect();
    if summaries.is_empty() {
        return None;
    }
    let sum_i =
        |f: &dyn Fn(&crate::generator::DaySummary) -> i64| summaries.iter().map(f).sum::<i64>();
    let sum_f = |f: &dyn Fn(&crate::generator::DaySummary) -> f64| {
        round2(summaries.iter().fold(0.0, |acc, s| acc + f(s)))
    };
    match dt.kebab {
        "steps" => put_int64(&mut map, "countSum", sum_i(&|s| s.steps)),
        "distance" => put_int64(&mut map, "millimetersSum", sum_i(&|s| s.distance_mm)),
        "floors" => put_int64(&mut map, "countSum", sum_i(&|s| s.floors)),
        "altitude" => put_int64(&mut map, "gainMillimetersSum", sum_i(&|s| s.elevation_mm)),
        "total-calories" => put_double(&mut map, "kcalSum", sum_f(&|s| s.calories_kcal)),
        "active-energy-burned" => put_double(&mut map, "kcalSum", sum_f(&|s| s.active_kcal)),
        "sedentary-period" => {
            put_duration(&mut map, "durationSum", 60 * sum_i(&|s| s.sedentary_min))
        }
        "active-minutes" => {
            let levels = [
                ("LIGHT", sum_i(&|s| s.light_min)),
                ("MODERATE", sum_i(&|s| s.moderate_min)),
                ("VIGOROUS", sum_i(&|s| s.vigorous_min)),
            ];
            let items: Vec<Value> = levels
                .iter()
                .map(|(level, minutes)| {
                    let mut item = serde_json::Map::new();
                    item.insert("activityLevel".into(), json!(level));
                    put_int64(&mut item, "activeMinutesSum", *minutes);
                    Value::Object(item)
                })
                .collect();
            map.insert(
                "activeMinutesRollupByActivityLevel".into(),
                Value::Array(items),
            );
        }
        "time-in-heart-rate-zone" => {
            let items: Vec<Value> = (0..4)
                .map(|z| {
                    let mut item = serde_json::Map::new();
                    item.insert("heartRateZone".into(), json!(ZONE_TYPES[z]));
                    put_duration(&mut item, "duration", 60 * sum_i(&|s| s.zone_min[z]));
                    Value::Object(item)
                })
                .collect();
            map.insert("timeInHeartRateZones".into(), Value::Array(items));
        }
        "calories-in-heart-rate-zone" => {
            let items: Vec<Value> = (0..4)
                .map(|z| {
                    let mut item = serde_json::Map::new();
                    item.insert("heartRateZone".into(), json!(ZONE_TYPES[z]));
                    put_double(&mut item, "kcal", sum_f(&|s| s.zone_kcal[z]));
                    Value::Object(item)
                })
                .collect();
            map.insert("caloriesInHeartRateZones".into(), Value::Array(items));
        }
        // Minutes in zone (Fitbit's earned minutes count cardio and peak twice); a day
        // without any has no point, as on the legacy side.
        "active-zone-minutes" => {
            let members = [
                ("sumInFatBurnHeartZone", 1),
                ("sumInCardioHeartZone", 2),
                ("sumInPeakHeartZone", 3),
            ];
            for (key, zone) in members {
                put_int64(&mut map, key, sum_i(&|s| s.zone_min[zone]));
            }
            if map.is_empty() {
                return None;
            }
        }
        // Rollup-capable types the simulator does not synthesise: no points.
        _ => return None,
    }
    Some(Value::Object(map))
}

/// Fallback for unknown paths: Google's 404 envelope.
pub(crate) async fn not_found() -> Response {
    ApiError::not_found("The requested URL was not found on this server.").into_response()
}

/// Fallback for a known path with the wrong method.
pub(crate) async fn method_not_allowed() -> Response {
    ApiError::method_not_allowed().into_response()
}

/// Classifies a request path for statistics (`by_endpoint`).
pub(crate) fn endpoint_name(path: &str) -> String {
    match path {
        "/token" => return "token".to_owned(),
        "/revoke" => return "revoke".to_owned(),
        "/o/oauth2/v2/auth" => return "authorize".to_owned(),
        "/o/oauth2/v2/auth/decision" => return "authorize-decision".to_owned(),
        _ if path.starts_with("/oidc/") => return "oidc".to_owned(),
        _ => {}
    }
    let rest = path
        .strip_prefix("/v4/")
        .or_else(|| path.strip_prefix("/v4beta/"));
    let Some(rest) = rest else {
        return "other".to_owned();
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["users", _, "settings"] => "settings".to_owned(),
        ["users", _, "identity"] => "identity".to_owned(),
        ["users", _, "pairedDevices", ..] => "pairedDevices".to_owned(),
        ["users", _, "dataTypes", t, method] if catalog::lookup(t).is_some() => match *method {
            "dataPoints" => format!("list/{t}"),
            m => match m.strip_prefix("dataPoints:") {
                Some(verb) if verb.chars().all(|c| c.is_ascii_alphabetic()) && verb.len() < 20 => {
                    format!("{verb}/{t}")
                }
                _ => "other".to_owned(),
            },
        },
        _ => "other".to_owned(),
    }
}
