//! The legacy data endpoints: profile, devices, the daily activity summary, heart and
//! steps daily time series, heart and steps intraday.
//!
//! Conventions (see also [`super::path`]):
//! * Daily values are per **local** day and equal the Google side's (the same
//!   `DaySummary`, restatements included); integers where Fitbit has integers (kcal are
//!   rounded half away from zero), distance km and elevation m exactly as
//!   [`crate::truth::activity_day`]. A day without data has zeros, the participant's zone
//!   thresholds and no `restingHeartRate`.
//! * Legacy zones: Out of Range = worn minutes below Google's MODERATE threshold (below
//!   LIGHT plus LIGHT), Fat Burn = MODERATE, Cardio = VIGOROUS, Peak = PEAK.
//! * Heart intraday: `1sec` is every raw sample; `1min`/`5min`/`15min` one point per
//!   bucket that has samples, value the rounded mean of its samples. Only samples inside
//!   `[sync_from, latest_sync)` exist. Steps intraday is **zero-filled over the whole
//!   requested range** (also outside `[sync_from, latest_sync)`, as Fitbit fills a day);
//!   only complete minutes inside the data window can be non-zero.
//! * `?timezone=UTC` (intraday) moves the path's dates/times and the dataset's times to
//!   UTC; the daily part of an intraday response then still lists each path date, heart
//!   with that local day's zones, steps with the sum of the returned points of that date.
//!   Daily summaries and daily series are always local days (`timezone=UTC` is accepted
//!   and changes nothing there; any other value is 400).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, NaiveDate, NaiveDateTime, Timelike};
use serde_json::{Value, json};

use super::path::{self, Clock, Family, Range, Resource, Route};
use super::wire::{self, FitbitError};
use super::{Caller, attributed, authenticate, data_response};
use crate::clock::{local, offset_secs};
use crate::config::IntradayType;
use crate::generator::{DaySummary, Profile, battery_status};
use crate::state::AppState;

/// A validated request, ready to be computed.
enum Request {
    Profile,
    Devices,
    Daily(NaiveDate),
    Series(Resource, Vec<NaiveDate>),
    Intraday(Resource, Range),
    Family(Family, Vec<NaiveDate>),
}

/// `GET /1/user/{user}/{*rest}`.
pub(super) async fn get(
    State(state): State<Arc<AppState>>,
    Path((user, rest)): Path<(String, String)>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Some(route) = path::parse(&rest) else {
        return FitbitError::not_found().into_response();
    };
    serve(state, &user, route, &headers, query).await
}

/// `GET /1.2/user/{user}/{*rest}` (sleep logs).
pub(super) async fn get_v12(
    State(state): State<Arc<AppState>>,
    Path((user, rest)): Path<(String, String)>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Some(route) = path::parse_v12(&rest) else {
        return FitbitError::not_found().into_response();
    };
    serve(state, &user, route, &headers, query).await
}

async fn serve(
    state: Arc<AppState>,
    user: &str,
    route: Route<'_>,
    headers: &HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let params = match query {
        Ok(Query(p)) => p,
        Err(e) => return FitbitError::validation(e.body_text()).into_response(),
    };
    let caller = match authenticate(&state, headers, user) {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let index = caller.snapshot.index;
    let request = match resolve(&state, &caller, route, &params) {
        Ok(r) => r,
        Err(e) => return attributed(e.into_response(), index, true),
    };
    let state2 = Arc::clone(&state);
    let caller2 = caller.clone();
    let job = tokio::task::spawn_blocking(move || build(&state2, &caller2, request)).await;
    match job {
        Ok(value) => data_response(&caller, value),
        Err(_) => attributed(
            FitbitError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "system",
                "Internal server error.",
            )
            .into_response(),
            index,
            true,
        ),
    }
}

/// Validates the path and query of an authenticated request.
fn resolve(
    state: &AppState,
    caller: &Caller,
    route: Route<'_>,
    params: &HashMap<String, String>,
) -> Result<Request, FitbitError> {
    let tz = state.profiles[caller.snapshot.index].tz;
    let clock = match params.get("timezone").map(String::as_str) {
        None => Clock::Local(tz),
        Some("UTC") => Clock::Utc,
        Some(other) => {
            return Err(FitbitError::validation(format!(
                "Invalid timezone: {other}. The only supported value is UTC."
            )));
        }
    };
    let local_today = local(tz, caller.now).date();
    Ok(match route {
        Route::Profile => Request::Profile,
        Route::Devices => {
            caller.require("settings")?;
            Request::Devices
        }
        Route::Family { family, start, end } => {
            caller.require(family.scope())?;
            let dates = path::family_dates(start, end, local_today, family.max_days())?;
            Request::Family(family, dates)
        }
        Route::DailySummary { date } => Request::Daily(path::date(date, local_today)?),
        Route::Series {
            resource,
            start,
            end,
        } => Request::Series(resource, path::series_dates(start, end, local_today)?),
        Route::Intraday {
            resource,
            start,
            end,
            detail,
            time,
        } => {
            if !caller.intraday_permitted {
                return Err(FitbitError::intraday_not_permitted());
            }
            let today = clock.wall(caller.now.timestamp()).date();
            Request::Intraday(
                resource,
                path::intraday(resource, clock, today, start, end, detail, time)?,
            )
        }
    })
}

fn build(state: &AppState, caller: &Caller, request: Request) -> Value {
    match request {
        Request::Profile => profile(state, caller),
        Request::Devices => devices(state, caller),
        Request::Daily(date) => daily_summary(state, caller, date),
        Request::Series(resource, dates) => series(state, caller, resource, &dates),
        Request::Intraday(resource, range) => intraday(state, caller, resource, &range),
        Request::Family(family, dates) => super::families::build(state, caller, family, &dates),
    }
}

/// The (restated) daily values of local day `date`, zeros when it has no data.
fn day(state: &AppState, caller: &Caller, date: NaiveDate) -> DaySummary {
    let profile = &state.profiles[caller.snapshot.index];
    let window = state.window(&caller.snapshot);
    match profile.day_summary(window, date) {
        Some(d) => d.restated(caller.snapshot.restate_version(date)),
        None => profile.empty_day(date),
    }
}

/// `profile.json`.
fn profile(state: &AppState, caller: &Caller) -> Value {
    let profile = &state.profiles[caller.snapshot.index];
    let tz = profile.tz.name();
    let american = tz.starts_with("America/");
    let locale = match tz {
        "Europe/London" => "en_GB",
        "Australia/Sydney" => "en_AU",
        "Asia/Kolkata" | "Asia/Kathmandu" => "en_IN",
        _ => "en_US",
    };
    let unit = if american { "en_US" } else { "METRIC" };
    let (walk, run) = profile.strides_cm();
    let number = profile.id.trim_start_matches("sim-");
    json!({
        "user": {
            "age": profile.age(),
            "avatar": "https://static0.fitbit.com/images/profile/defaultProfile_100.png",
            "displayName": format!("Sim {number}"),
            "distanceUnit": unit,
            "encodedId": profile.encoded_id,
            "features": {"exerciseGoal": true},
            "firstName": "Sim",
            "fullName": format!("Sim {number}"),
            "gender": "NA",
            "heightUnit": unit,
            "lastName": number,
            "locale": locale,
            "memberSince": (profile.sync_from - Duration::days(3 * 365)).date_naive().to_string(),
            "offsetFromUTCMillis": i64::from(offset_secs(profile.tz, caller.now)) * 1000,
            "startDayOfWeek": if american { "SUNDAY" } else { "MONDAY" },
            "strideLengthRunning": wire::number(run),
            "strideLengthRunningType": "auto",
            "strideLengthWalking": wire::number(walk),
            "strideLengthWalkingType": "auto",
            "timezone": tz,
            "topBadges": [],
            "weightUnit": unit,
        }
    })
}

/// `devices.json`: `lastSyncTime` is local wall time without offset.
fn devices(state: &AppState, caller: &Caller) -> Value {
    let profile = &state.profiles[caller.snapshot.index];
    let bad = caller.snapshot.faults.legacy_bad_last_sync;
    Value::Array(
        profile
            .devices(caller.snapshot.latest_sync)
            .iter()
            .map(|d| {
                let wall = local(profile.tz, d.last_sync);
                let last_sync = if bad {
                    wall.format("%m/%d/%Y %H:%M").to_string()
                } else {
                    wire::local_millis(wall)
                };
                json!({
                    "battery": battery_status(d.battery_level),
                    "batteryLevel": d.battery_level,
                    "deviceVersion": d.version,
                    "features": [],
                    "id": d.id.to_string(),
                    "lastSyncTime": last_sync,
                    "mac": d.mac,
                    "type": d.device_type,
                })
            })
            .collect(),
    )
}

fn round_int(x: f64) -> i64 {
    x.round() as i64
}

/// `activities/date/{date}.json`.
fn daily_summary(state: &AppState, caller: &Caller, date: NaiveDate) -> Value {
    let d = day(state, caller, date);
    let km = wire::number(d.distance_mm as f64 / 1e6);
    let mut summary = json!({
        "activeScore": -1,
        "activityCalories": round_int(d.active_kcal),
        "caloriesBMR": round_int(d.calories_kcal - d.active_kcal),
        "caloriesOut": round_int(d.calories_kcal),
        "distances": [
            {"activity": "total", "distance": km},
            {"activity": "tracker", "distance": km},
            {"activity": "loggedActivities", "distance": 0},
        ],
        "elevation": wire::number(d.elevation_mm as f64 / 1000.0),
        "fairlyActiveMinutes": d.moderate_min,
        "floors": d.floors,
        "heartRateZones": wire::zones_json(&d),
        "lightlyActiveMinutes": d.light_min,
        "sedentaryMinutes": d.sedentary_min,
        "steps": d.steps,
        "veryActiveMinutes": d.vigorous_min,
    });
    if let Some((bpm, _)) = d.resting {
        summary["restingHeartRate"] = json!(bpm);
    }
    json!({
        "activities": [],
        "goals": {"activeMinutes": 30, "caloriesOut": 2500, "distance": 8.05, "floors": 10, "steps": 10000},
        "summary": summary,
    })
}

/// The `value` of one `activities-heart` day.
fn heart_day(d: &DaySummary) -> Value {
    let mut value = json!({"customHeartRateZones": [], "heartRateZones": wire::zones_json(d)});
    if let Some((bpm, _)) = d.resting {
        value["restingHeartRate"] = json!(bpm);
    }
    value
}

/// `activities/{heart|steps}/date/{date}/{period}.json` and `{start}/{end}.json`.
fn series(state: &AppState, caller: &Caller, resource: Resource, dates: &[NaiveDate]) -> Value {
    let items: Vec<Value> = dates
        .iter()
        .map(|date| {
            let d = day(state, caller, *date);
            let value = match resource {
                Resource::Heart => heart_day(&d),
                Resource::Steps => json!(d.steps.to_string()),
            };
            json!({"dateTime": date.to_string(), "value": value})
        })
        .collect();
    json!({ format!("activities-{}", resource.name()): items })
}

/// Consecutive points grouped into buckets of `minutes` wall-clock minutes (labelled
/// with the bucket's start), keeping the sum and count of each.
fn buckets(
    points: impl Iterator<Item = (NaiveDateTime, i64)>,
    minutes: u32,
) -> Vec<(NaiveDateTime, i64, i64)> {
    let mut out: Vec<(NaiveDateTime, i64, i64)> = Vec::new();
    let mut key = None;
    for (wall, value) in points {
        let minute_of_day = wall.hour() * 60 + wall.minute();
        let k = (wall.date(), minute_of_day / minutes);
        if key != Some(k) {
            let start = (minute_of_day / minutes) * minutes;
            let label = wall
                .date()
                .and_hms_opt(start / 60, start % 60, 0)
                .unwrap_or(wall);
            out.push((label, 0, 0));
            key = Some(k);
        }
        if let Some(last) = out.last_mut() {
            last.1 += value;
            last.2 += 1;
        }
    }
    out
}

/// Heart and steps intraday.
fn intraday(state: &AppState, caller: &Caller, resource: Resource, range: &Range) -> Value {
    let profile: &Profile = &state.profiles[caller.snapshot.index];
    let window = state.window(&caller.snapshot);
    let clock = range.clock;
    // (time label, value) in physical order.
    let mut dataset: Vec<(NaiveDateTime, i64)> = match resource {
        Resource::Heart => {
            let samples = profile.hr_asc(window, range.lo, range.hi);
            let points = samples
                .iter()
                .filter(|s| !caller.snapshot.deleted(IntradayType::HeartRate, s.t))
                .map(|s| (clock.wall(s.t), s.bpm))
                .filter(|(wall, _)| range.contains(*wall));
            if range.minutes == 0 {
                points.collect()
            } else {
                buckets(points, range.minutes)
                    .into_iter()
                    .map(|(label, sum, n)| (label, (sum as f64 / n as f64).round() as i64))
                    .collect()
            }
        }
        Resource::Steps => {
            let points = profile
                .minutes(range.lo.div_euclid(60), range.hi.div_euclid(60))
                .map(|m| {
                    let deleted = caller.snapshot.deleted(IntradayType::Steps, m.index * 60);
                    let steps = if Profile::minute_complete(window, m.index) && !deleted {
                        m.steps
                    } else {
                        0
                    };
                    (clock.wall(m.index * 60), steps)
                })
                .filter(|(wall, _)| range.contains(*wall));
            buckets(points, range.minutes)
                .into_iter()
                .map(|(label, sum, _)| (label, sum))
                .collect()
        }
    };

    let name = resource.name();
    let daily: Vec<Value> = range
        .dates
        .iter()
        .map(|date| {
            let value = match resource {
                Resource::Heart => heart_day(&day(state, caller, *date)),
                Resource::Steps => json!(
                    dataset
                        .iter()
                        .filter(|(t, _)| t.date() == *date)
                        .map(|(_, v)| v)
                        .sum::<i64>()
                        .to_string()
                ),
            };
            json!({"dateTime": date.to_string(), "value": value})
        })
        .collect();

    if caller.snapshot.faults.legacy_point_outside_range {
        let step = Duration::minutes(i64::from(range.minutes.max(1)));
        let value = match resource {
            Resource::Heart => 72,
            Resource::Steps => 42,
        };
        if range.wall_start.time() != chrono::NaiveTime::MIN {
            dataset.insert(0, (range.wall_start - step, value));
        } else {
            dataset.push((range.wall_end, value));
        }
    }

    let points: Vec<Value> = dataset
        .iter()
        .map(|(t, v)| json!({"time": t.format("%H:%M:%S").to_string(), "value": v}))
        .collect();
    json!({
        format!("activities-{name}"): daily,
        format!("activities-{name}-intraday"): {
            "dataset": points,
            "datasetInterval": range.minutes.max(1),
            "datasetType": if range.minutes == 0 { "second" } else { "minute" },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_wall_clock() {
        let t = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
        let points = vec![
            (t("2026-11-01 01:58"), 1),
            (t("2026-11-01 01:59"), 2),
            (t("2026-11-01 01:00"), 3), // fall-back: the repeated hour
            (t("2026-11-01 01:04"), 4),
            (t("2026-11-01 01:05"), 5),
        ];
        let b = buckets(points.into_iter(), 5);
        assert_eq!(
            b,
            vec![
                (t("2026-11-01 01:55"), 3, 2),
                (t("2026-11-01 01:00"), 7, 2),
                (t("2026-11-01 01:05"), 5, 1),
            ]
        );
    }
}
