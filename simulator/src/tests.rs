//! End-to-end tests: the server on 127.0.0.1:0, called over HTTP with reqwest.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::{SimConfig, roster, roster_csv, run, truth};

const HR_FILTER: &str = "heart_rate.sample_time.physical_time";

pub(crate) struct Sim {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) config: SimConfig,
    _stop: oneshot::Sender<()>,
}

pub(crate) async fn start(config: SimConfig) -> Sim {
    // reqwest needs a process-wide rustls provider even for plain http://.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let cfg = config.clone();
    tokio::spawn(async move {
        run(cfg, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Sim {
        base,
        http: reqwest::Client::new(),
        config,
        _stop: stop,
    }
}

pub(crate) fn small() -> SimConfig {
    SimConfig {
        participants: 7,
        days: 3,
        ..SimConfig::default()
    }
}

pub(crate) fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn reason(v: &Value) -> &str {
    v["error"]["details"][0]["reason"]
        .as_str()
        .unwrap_or_default()
}

fn refresh_token(config: &SimConfig, id: &str) -> String {
    roster(config)
        .into_iter()
        .find(|p| p.participant_id == id)
        .unwrap()
        .refresh_token
}

impl Sim {
    async fn token_raw(&self, refresh: &str, secret: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/token", self.base))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", self.config.client_id.as_str()),
                ("client_secret", secret),
            ])
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn access(&self, id: &str) -> String {
        let (status, body) = self
            .token_raw(&refresh_token(&self.config, id), &self.config.client_secret)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn get(
        &self,
        path: &str,
        token: &str,
        query: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .query(query)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, token: &str, body: &Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn control(&self, path: &str, body: &Value) -> Value {
        let r = self
            .http
            .post(format!("{}/_sim/{path}", self.base))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.unwrap()
    }

    pub(crate) async fn control_get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/_sim/{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Every page of a `list`, concatenated.
    pub(crate) async fn list_all(
        &self,
        token: &str,
        data_type: &str,
        filter: &str,
        page_size: usize,
    ) -> (Vec<Value>, usize) {
        let path = format!("/v4/users/me/dataTypes/{data_type}/dataPoints");
        let size = page_size.to_string();
        let mut points = Vec::new();
        let mut page_token = String::new();
        let mut pages = 0;
        loop {
            let mut query = vec![("filter", filter), ("pageSize", size.as_str())];
            if !page_token.is_empty() {
                query.push(("pageToken", page_token.as_str()));
            }
            let (status, body) = self.get(&path, token, &query).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            pages += 1;
            let page = body["dataPoints"].as_array().cloned().unwrap_or_default();
            assert!(page.len() <= page_size);
            points.extend(page);
            match body["nextPageToken"].as_str() {
                Some(t) => {
                    assert!(!t.is_empty());
                    page_token = t.to_owned();
                }
                None => return (points, pages),
            }
        }
    }

    pub(crate) async fn rollup(
        &self,
        token: &str,
        data_type: &str,
        start: NaiveDate,
        end: NaiveDate,
    ) -> (StatusCode, Value) {
        let d = |d: NaiveDate| {
            use chrono::Datelike;
            json!({"date": {"year": d.year(), "month": d.month(), "day": d.day()}})
        };
        let body = json!({"range": {"start": d(start), "end": d(end)}, "windowSizeDays": 1});
        self.post(
            &format!("/v4/users/me/dataTypes/{data_type}/dataPoints:dailyRollUp"),
            token,
            &body,
        )
        .await
    }
}

fn hr_filter(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    format!(
        "{HR_FILTER} >= \"{}\" AND {HR_FILTER} < \"{}\"",
        start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

fn parse_time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

fn int64(v: &Value) -> i64 {
    v.as_str().map_or(0, |s| s.parse().unwrap())
}

fn seconds(v: &Value) -> i64 {
    v.as_str()
        .map_or(0, |s| s.trim_end_matches('s').parse().unwrap())
}

#[tokio::test]
async fn token_refresh_and_invalid_grant_after_revoke() {
    let sim = start(small()).await;
    let refresh = refresh_token(&sim.config, "sim-0001");
    assert!(refresh.starts_with("simrt_sim-0001_") && !refresh.starts_with("1//"));

    let (status, body) = sim.token_raw(&refresh, "sim-secret").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["token_type"], "Bearer");
    let access = body["access_token"].as_str().unwrap().to_owned();
    assert!(access.starts_with("simat_"));
    let scope = body["scope"].as_str().unwrap();
    assert!(scope.contains("googlehealth.activity_and_fitness.readonly"));
    assert!(scope.contains("googlehealth.health_metrics_and_measurements.readonly"));
    assert!(scope.contains("googlehealth.settings.readonly"));

    let (status, body) = sim.token_raw(&refresh, "wrong").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    let (status, body) = sim.token_raw("simrt_nobody_00", "sim-secret").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );

    let (status, settings) = sim.get("/v4/users/me/settings", &access, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settings["timeZone"], "America/New_York");
    assert_eq!(settings["utcOffset"], "-18000s");

    sim.control("participants/sim-0001/revoke", &json!({}))
        .await;
    let (status, body) = sim.token_raw(&refresh, "sim-secret").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
    );
    let (status, body) = sim.get("/v4/users/me/settings", &access, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["status"], "UNAUTHENTICATED");

    sim.control("participants/sim-0001/restore", &json!({}))
        .await;
    let fresh = sim.access("sim-0001").await;
    assert_eq!(
        sim.get("/v4/users/me/settings", &fresh, &[]).await.0,
        StatusCode::OK
    );
    let (status, body) = sim.get("/v4/users/me/settings", "", &[]).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::UNAUTHORIZED, "CREDENTIALS_MISSING")
    );

    let stats = sim.control_get("stats").await;
    assert!(stats["token_refreshes"].as_u64().unwrap() >= 2);
    assert!(stats["by_endpoint"]["token"].as_u64().unwrap() >= 4);
}

#[tokio::test]
async fn list_pagination_returns_every_truth_point_once() {
    let config = SimConfig {
        participants: 2,
        days: 2,
        fine_hr_every: 2,
        ..SimConfig::default()
    };
    let sim = start(config.clone()).await;
    let token = sim.access("sim-0002").await;
    let latest = roster(&config)[1].latest_sync;
    assert_eq!(roster(&config)[1].hr_interval_secs, 1);

    // 1-second heart rate over ~3 hours ending after the latest sync: many pages.
    let (start, end) = (latest - Duration::hours(3), latest + Duration::hours(1));
    let (points, pages) = sim
        .list_all(&token, "heart-rate", &hr_filter(start, end), 2500)
        .await;
    let expected = truth::heart_rate(&config, "sim-0002", start, end, 0);
    assert!(expected.len() > 9000, "{}", expected.len());
    assert_eq!(points.len(), expected.len());
    assert_eq!(pages, expected.len().div_ceil(2500));
    for (point, truth) in points.iter().zip(expected.iter().rev()) {
        let hr = &point["heartRate"];
        assert_eq!(parse_time(&hr["sampleTime"]["physicalTime"]), truth.time);
        assert_eq!(
            hr["sampleTime"]["utcOffset"],
            format!("{}s", truth.utc_offset_seconds)
        );
        assert_eq!(hr["beatsPerMinute"], truth.bpm.to_string());
        assert!(hr["sampleTime"]["civilTime"]["date"]["year"].is_number());
        assert_eq!(point["dataSource"]["platform"], "FITBIT");
    }
    assert!(*expected.last().map(|s| &s.time).unwrap() < latest);

    // Steps of a whole local day, small pages.
    let token1 = sim.access("sim-0001").await;
    let day = date("2026-11-03");
    let (ds, de) = truth::local_day_bounds_utc(&config, "sim-0001", day).unwrap();
    let filter = format!(
        "steps.interval.start_time >= \"{}\" AND steps.interval.start_time < \"{}\"",
        ds.to_rfc3339(),
        de.to_rfc3339()
    );
    let (points, _) = sim.list_all(&token1, "steps", &filter, 97).await;
    let expected = truth::steps(&config, "sim-0001", ds, de, 0);
    assert!(!expected.is_empty());
    let got: Vec<(DateTime<Utc>, i64)> = points
        .iter()
        .map(|p| {
            (
                parse_time(&p["steps"]["interval"]["startTime"]),
                int64(&p["steps"]["count"]),
            )
        })
        .collect();
    let want: Vec<(DateTime<Utc>, i64)> =
        expected.iter().rev().map(|s| (s.start, s.steps)).collect();
    assert_eq!(got, want);
    let first = &points[0]["steps"]["interval"];
    assert_eq!(first["startUtcOffset"], "-18000s");
    assert!(first["civilEndTime"]["time"].is_object());

    // A page token is bound to its filter.
    let (_, page) = sim
        .get(
            "/v4/users/me/dataTypes/steps/dataPoints",
            &token1,
            &[("filter", filter.as_str()), ("pageSize", "5")],
        )
        .await;
    let next = page["nextPageToken"].as_str().unwrap();
    let (status, body) = sim
        .get(
            "/v4/users/me/dataTypes/steps/dataPoints",
            &token1,
            &[("pageToken", next), ("pageSize", "5")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn filters_and_arguments_are_validated() {
    let config = SimConfig {
        participants: 2,
        days: 1,
        fine_hr_every: 2,
        ..SimConfig::default()
    };
    let sim = start(config.clone()).await;
    let token = sim.access("sim-0002").await;
    let hr = "/v4/users/me/dataTypes/heart-rate/dataPoints";
    let cases = [
        (
            "heart-rate.sample_time.physical_time >= \"2026-11-03T00:00:00Z\"",
            "INVALID_DATA_POINT_FILTER",
        ),
        (
            "heart_rate.sample_time.physical_time <= \"2026-11-03T00:00:00Z\"",
            "INVALID_DATA_POINT_FILTER",
        ),
        (
            "heart_rate.interval.start_time >= \"2026-11-03T00:00:00Z\"",
            "INVALID_DATA_POINT_FILTER_DATA_TYPE_MEMBER",
        ),
        (
            "heart_rate.sample_time.physical_time >= 2026",
            "INVALID_DATA_POINT_FILTER_SYNTAX",
        ),
        (
            "heart_rate.sample_time.physical_time >=",
            "INVALID_DATA_POINT_FILTER_MISSING_TOKEN",
        ),
        (
            "heart_rate.sample_time.civil_time >= \"2026-11-03Z\"",
            "INVALID_DATA_POINT_FILTER_CIVIL_DATE_TIME_FORMAT",
        ),
    ];
    for (filter, want) in cases {
        let (status, body) = sim.get(hr, &token, &[("filter", filter)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{filter}");
        assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(reason(&body), want, "{filter}: {body}");
    }
    let (status, body) = sim
        .get(
            "/v4/users/me/dataTypes/total-calories/dataPoints",
            &token,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("List is not supported for data type total-calories")
    );
    let (status, body) = sim
        .get("/v4/users/me/dataTypes/heart_rate/dataPoints", &token, &[])
        .await;
    assert_eq!(
        (status, reason(&body)),
        (
            StatusCode::BAD_REQUEST,
            "INVALID_PARENT_DATA_TYPE_COLLECTION"
        )
    );
    let (status, _) = sim.get(hr, &token, &[("pageSize", "abc")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // pageSize above 10 000 is clamped, not rejected.
    let latest = roster(&config)[1].latest_sync;
    let filter = hr_filter(latest - Duration::hours(4), latest);
    let (status, body) = sim
        .get(
            hr,
            &token,
            &[("filter", filter.as_str()), ("pageSize", "20000")],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["dataPoints"].as_array().unwrap().len(), 10_000);
    assert!(body["nextPageToken"].is_string());
    // Default page size is 1440.
    let (_, body) = sim.get(hr, &token, &[("filter", filter.as_str())]).await;
    assert_eq!(body["dataPoints"].as_array().unwrap().len(), 1440);

    // dailyRollUp arguments.
    let (status, _) = sim
        .rollup(
            &token,
            "total-calories",
            date("2026-10-01"),
            date("2026-10-20"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = sim
        .rollup(&token, "steps", date("2026-10-01"), date("2026-10-20"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let bare = json!({"range": {"start": {"year": 2026, "month": 11, "day": 1}, "end": {"date": {"year": 2026, "month": 11, "day": 2}}}});
    let (status, body) = sim
        .post(
            "/v4/users/me/dataTypes/steps/dataPoints:dailyRollUp",
            &token,
            &bare,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let r = sim
        .http
        .post(format!(
            "{}/v4/users/me/dataTypes/steps/dataPoints:dailyRollUp",
            sim.base
        ))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"range":{"start":{"date":{"year":2026,"month":08,"day":1}}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (status, body) = sim.get("/v4/users/me/nothing", &token, &[]).await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
}

#[tokio::test]
async fn daily_rollup_equals_truth() {
    let config = small();
    let sim = start(config.clone()).await;
    for id in ["sim-0001", "sim-0005"] {
        let token = sim.access(id).await;
        let dates = truth::dates(&config, id);
        assert!(dates.len() >= 3);
        let (first, last) = (dates[0], *dates.last().unwrap());
        // One day before the history and two after the latest sync: no points there.
        let start = first.pred_opt().unwrap();
        let end = last + chrono::Days::new(3);
        let mut by_type = std::collections::HashMap::new();
        for t in [
            "steps",
            "distance",
            "floors",
            "altitude",
            "total-calories",
            "active-energy-burned",
            "active-minutes",
            "sedentary-period",
            "time-in-heart-rate-zone",
            "calories-in-heart-rate-zone",
        ] {
            let (status, body) = sim.rollup(&token, t, start, end).await;
            assert_eq!(status, StatusCode::OK, "{t}: {body}");
            assert!(body.get("nextPageToken").is_none());
            let points = body["rollupDataPoints"].as_array().unwrap().clone();
            assert_eq!(points.len(), dates.len(), "{t}");
            by_type.insert(t, points);
        }
        for (k, day) in dates.iter().enumerate() {
            let want = truth::activity_day(&config, id, *day, 0).unwrap();
            let p = |t: &str| by_type[t][k].clone();
            let d = &p("steps")["civilStartTime"]["date"];
            assert_eq!(
                (d["month"].as_u64(), d["day"].as_u64()),
                (
                    Some(chrono::Datelike::month(day) as u64),
                    Some(chrono::Datelike::day(day) as u64)
                )
            );
            assert_eq!(p("steps")["civilStartTime"]["time"], json!({}));
            assert_eq!(int64(&p("steps")["steps"]["countSum"]), want.steps);
            assert_eq!(
                int64(&p("distance")["distance"]["millimetersSum"]) as f64 / 1e6,
                want.distance_km
            );
            assert_eq!(int64(&p("floors")["floors"]["countSum"]), want.floors);
            assert_eq!(
                int64(&p("altitude")["altitude"]["gainMillimetersSum"]) as f64 / 1000.0,
                want.elevation_m
            );
            assert_eq!(
                p("total-calories")["totalCalories"]["kcalSum"]
                    .as_f64()
                    .unwrap(),
                want.calories_out
            );
            assert_eq!(
                p("active-energy-burned")["activeEnergyBurned"]["kcalSum"]
                    .as_f64()
                    .unwrap_or(0.0),
                want.activity_calories
            );
            assert_eq!(
                seconds(&p("sedentary-period")["sedentaryPeriod"]["durationSum"]) as f64 / 60.0,
                want.sedentary_minutes
            );
            let levels =
                p("active-minutes")["activeMinutes"]["activeMinutesRollupByActivityLevel"].clone();
            let level = |name: &str| {
                levels
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|l| l["activityLevel"] == name)
                    .map_or(0, |l| int64(&l["activeMinutesSum"])) as f64
            };
            assert_eq!(level("LIGHT"), want.lightly_active_minutes);
            assert_eq!(level("MODERATE"), want.fairly_active_minutes);
            assert_eq!(level("VIGOROUS"), want.very_active_minutes);

            let zones = truth::heart_rate_zones(&config, id, *day, 0);
            assert_eq!(zones.len(), 4);
            let times =
                p("time-in-heart-rate-zone")["timeInHeartRateZone"]["timeInHeartRateZones"].clone();
            let kcals = p("calories-in-heart-rate-zone")["caloriesInHeartRateZone"]["caloriesInHeartRateZones"].clone();
            for (z, zone) in zones.iter().enumerate() {
                assert_eq!(
                    times[z]["heartRateZone"].as_str().unwrap().to_lowercase(),
                    zone.zone_name
                );
                assert_eq!(seconds(&times[z]["duration"]) / 60, zone.minute_in_zone);
                assert_eq!(kcals[z]["kcal"].as_f64().unwrap_or(0.0), zone.calorie_count);
            }
        }
        // Resting heart rate and zone thresholds via list.
        let filter = format!(
            "daily_resting_heart_rate.date >= \"{start}\" AND daily_resting_heart_rate.date < \"{end}\""
        );
        let (points, _) = sim
            .list_all(&token, "daily-resting-heart-rate", &filter, 2)
            .await;
        // A day without wear has no resting heart rate (and no point).
        let rested: Vec<NaiveDate> = dates
            .iter()
            .copied()
            .filter(|d| {
                let rhr = truth::resting_heart_rate(&config, id, *d, 0);
                assert!(rhr.is_some() || truth::worn_minutes(&config, id, *d) == 0);
                rhr.is_some()
            })
            .collect();
        assert_eq!(points.len(), rested.len());
        for (point, day) in points.iter().zip(rested.iter().rev()) {
            let rhr = &point["dailyRestingHeartRate"];
            assert_eq!(
                rhr["date"]["day"].as_u64(),
                Some(chrono::Datelike::day(day) as u64)
            );
            assert_eq!(
                Some(int64(&rhr["beatsPerMinute"])),
                truth::resting_heart_rate(&config, id, *day, 0)
            );
            assert!(rhr["dailyRestingHeartRateMetadata"]["calculationMethod"].is_string());
        }
        let filter = format!("daily_heart_rate_zones.date >= \"{first}\"");
        let (points, _) = sim
            .list_all(&token, "daily-heart-rate-zones", &filter, 10)
            .await;
        let zones = truth::heart_rate_zones(&config, id, last, 0);
        let served = &points[0]["dailyHeartRateZones"]["heartRateZones"];
        assert_eq!(served[3]["heartRateZoneType"], "PEAK");
        assert_eq!(
            int64(&served[3]["maxBeatsPerMinute"]),
            zones[3].max_heart_rate
        );
        assert_eq!(
            int64(&served[0]["minBeatsPerMinute"]),
            zones[0].min_heart_rate
        );
    }
}

#[tokio::test]
async fn new_york_dst_day_has_25_hours() {
    // The default 7-day window starts 2026-10-28, so 2026-11-01 is complete.
    let config = SimConfig {
        participants: 1,
        ..SimConfig::default()
    };
    let sim = start(config.clone()).await;
    let token = sim.access("sim-0001").await;
    let day = date("2026-11-01");
    let (start, end) = truth::local_day_bounds_utc(&config, "sim-0001", day).unwrap();
    assert_eq!(end - start, Duration::hours(25));
    let filter = "heart_rate.sample_time.civil_time >= \"2026-11-01\" AND heart_rate.sample_time.civil_time < \"2026-11-02\"";
    let (points, _) = sim.list_all(&token, "heart-rate", filter, 10_000).await;
    let expected = truth::heart_rate(&config, "sim-0001", start, end, 0);
    assert_eq!(points.len(), expected.len());
    // Every minute of the 25 hours has a sample except while the tracker is off the wrist.
    assert!(
        points.len() > 1440 && points.len() <= 1500,
        "{}",
        points.len()
    );
    let offsets: std::collections::BTreeSet<String> = points
        .iter()
        .map(|p| {
            p["heartRate"]["sampleTime"]["utcOffset"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        offsets.into_iter().collect::<Vec<_>>(),
        vec!["-14400s", "-18000s"]
    );
    let at_0130 = points
        .iter()
        .filter(|p| {
            p["heartRate"]["sampleTime"]["civilTime"]["time"] == json!({"hours": 1, "minutes": 30})
        })
        .count();
    assert_eq!(at_0130, 2);
    let activity = truth::activity_day(&config, "sim-0001", day, 0).unwrap();
    let (_, body) = sim
        .rollup(&token, "sedentary-period", day, day.succ_opt().unwrap())
        .await;
    assert_eq!(
        seconds(&body["rollupDataPoints"][0]["sedentaryPeriod"]["durationSum"]) as f64 / 60.0,
        activity.sedentary_minutes
    );
}

#[tokio::test]
async fn rate_limit_returns_429() {
    let config = SimConfig {
        participants: 2,
        days: 1,
        rate_limit_per_minute: 5,
        ..SimConfig::default()
    };
    let sim = start(config).await;
    let token = sim.access("sim-0001").await;
    for _ in 0..5 {
        assert_eq!(
            sim.get("/v4/users/me/settings", &token, &[]).await.0,
            StatusCode::OK
        );
    }
    let r = sim
        .http
        .get(format!("{}/v4/users/me/settings", sim.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().get("retry-after").is_none());
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(reason(&body), "RATE_LIMIT_EXCEEDED");

    sim.control("faults", &json!({"retry_after_secs": 7})).await;
    let r = sim
        .http
        .get(format!("{}/v4/users/me/settings", sim.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()["retry-after"], "7");
    // Another participant is unaffected.
    let other = sim.access("sim-0002").await;
    assert_eq!(
        sim.get("/v4/users/me/settings", &other, &[]).await.0,
        StatusCode::OK
    );

    let stats = sim.control_get("stats").await;
    assert_eq!(stats["max_requests_per_participant_per_minute"], 7);
    assert_eq!(stats["status_counts"]["429"], 2);
    assert_eq!(stats["by_participant"]["sim-0001"], 8);
}

#[tokio::test]
async fn restate_changes_daily_values_only() {
    let config = small();
    let sim = start(config.clone()).await;
    let id = "sim-0003";
    let token = sim.access(id).await;
    let day = date("2026-11-02");
    let next = day.succ_opt().unwrap();
    let (start, end) = truth::local_day_bounds_utc(&config, id, day).unwrap();
    let filter = hr_filter(start, end);
    let (hr_before, _) = sim.list_all(&token, "heart-rate", &filter, 10_000).await;
    let (_, steps_before) = sim.rollup(&token, "steps", day, next).await;
    let (_, kcal_before) = sim.rollup(&token, "total-calories", day, next).await;

    let reply = sim
        .control(
            &format!("participants/{id}/restate"),
            &json!({"date": "2026-11-02"}),
        )
        .await;
    assert_eq!(reply["version"], 1);
    assert_eq!(
        sim.control_get("restatements").await,
        json!({id: {"2026-11-02": 1}})
    );

    let (hr_after, _) = sim.list_all(&token, "heart-rate", &filter, 10_000).await;
    assert_eq!(hr_before, hr_after);
    let (_, steps_after) = sim.rollup(&token, "steps", day, next).await;
    let (_, kcal_after) = sim.rollup(&token, "total-calories", day, next).await;
    let steps = |v: &Value| int64(&v["rollupDataPoints"][0]["steps"]["countSum"]);
    let kcal = |v: &Value| {
        v["rollupDataPoints"][0]["totalCalories"]["kcalSum"]
            .as_f64()
            .unwrap()
    };
    assert_ne!(steps(&steps_before), steps(&steps_after));
    assert_ne!(kcal(&kcal_before), kcal(&kcal_after));
    let want = truth::activity_day(&config, id, day, 1).unwrap();
    assert_eq!(steps(&steps_after), want.steps);
    assert_eq!(kcal(&kcal_after), want.calories_out);
    assert_eq!(
        steps(&steps_before),
        truth::activity_day(&config, id, day, 0).unwrap().steps
    );
    // Other days are untouched.
    let (_, other) = sim
        .rollup(&token, "steps", next, next.succ_opt().unwrap())
        .await;
    assert_eq!(
        steps(&other),
        truth::activity_day(&config, id, next, 0).unwrap().steps
    );
}

#[tokio::test]
async fn scopes_faults_devices_and_advance() {
    let config = small();
    let sim = start(config.clone()).await;
    let hr = "/v4/users/me/dataTypes/heart-rate/dataPoints";

    // Missing scope.
    sim.control(
        "participants/sim-0004/scopes",
        &json!({"granted": ["settings.readonly"]}),
    )
    .await;
    let token = sim.access("sim-0004").await;
    let (status, body) = sim.get(hr, &token, &[]).await;
    assert_eq!(
        (status, reason(&body)),
        (StatusCode::FORBIDDEN, "ACCESS_TOKEN_SCOPE_INSUFFICIENT")
    );
    assert_eq!(
        sim.get("/v4/users/me/settings", &token, &[]).await.0,
        StatusCode::OK
    );

    // Per-participant faults.
    let t5 = sim.access("sim-0005").await;
    let t6 = sim.access("sim-0006").await;
    let t7 = sim.access("sim-0007").await;
    sim.control(
        "faults",
        &json!({"participants": {
            "sim-0005": {"fail_5xx": true},
            "sim-0006": {"malformed_json": true},
            "sim-0007": {"truncate_body": true}}}),
    )
    .await;
    assert_eq!(
        sim.get(hr, &t5, &[]).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, _) = sim
        .token_raw(&refresh_token(&config, "sim-0005"), "sim-secret")
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = sim.get(hr, &t6, &[("pageSize", "3")]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["dataPoints"][0]["heartRate"]["beatsPerMinute"].is_object());
    let r = sim
        .http
        .get(format!("{}{hr}", sim.base))
        .bearer_auth(&t7)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).is_err());
    assert_eq!(
        sim.control_get("faults").await["participants"]["sim-0005"]["fail_5xx"],
        true
    );

    // Random 503s for everyone.
    sim.control("faults", &json!({"error_rate": 1.0})).await;
    let t1 = sim.access_or_status("sim-0001").await;
    assert_eq!(t1, Err(StatusCode::SERVICE_UNAVAILABLE));
    sim.control("faults", &json!({})).await;

    // Paired devices: the latest lastSyncTime is the participant's latest sync.
    let t1 = sim.access("sim-0001").await;
    let mut devices = Vec::new();
    let mut page_token = String::new();
    loop {
        let mut q = vec![("pageSize", "1")];
        if !page_token.is_empty() {
            q.push(("pageToken", page_token.as_str()));
        }
        let (status, body) = sim.get("/v4/users/me/pairedDevices", &t1, &q).await;
        assert_eq!(status, StatusCode::OK);
        devices.extend(body["pairedDevices"].as_array().unwrap().clone());
        match body["nextPageToken"].as_str() {
            Some(t) => page_token = t.to_owned(),
            None => break,
        }
    }
    let latest = roster(&config)[0].latest_sync;
    assert_eq!(
        devices.iter().map(|d| parse_time(&d["lastSyncTime"])).max(),
        Some(latest)
    );

    // Advance the clock: new data appears, and the truth follows when told the advance.
    // (Ten hours: sim-0001 spends the night before the clock without its tracker.)
    let clock = sim.control("advance", &json!({"minutes": 600})).await;
    assert_eq!(clock["advance_minutes"], 600);
    let advanced = SimConfig {
        advance_minutes: 600,
        ..config.clone()
    };
    let new_latest = roster(&advanced)[0].latest_sync;
    assert_eq!(new_latest - latest, Duration::minutes(600));
    assert_eq!(parse_time(&clock["latest_sync"]["sim-0001"]), new_latest);
    let filter = hr_filter(
        latest - Duration::minutes(30),
        new_latest + Duration::minutes(30),
    );
    let (points, _) = sim.list_all(&t1, "heart-rate", &filter, 10_000).await;
    let expected = truth::heart_rate(
        &advanced,
        "sim-0001",
        latest - Duration::minutes(30),
        new_latest + Duration::minutes(30),
        0,
    );
    assert_eq!(points.len(), expected.len());
    assert!(!points.is_empty());
    assert!(parse_time(&points[0]["heartRate"]["sampleTime"]["physicalTime"]) > latest);

    // The roster CSV.
    let csv = sim
        .http
        .get(format!("{}/_sim/roster.csv", sim.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv, roster_csv(&config));
    assert!(csv.starts_with(
        "participant_id,provider,refresh_token,sync_from\nsim-0001,google-health,simrt_sim-0001_"
    ));
    assert!(csv.contains(",2026-11-01T06:00:00Z\n"));
}

impl Sim {
    async fn access_or_status(&self, id: &str) -> Result<String, StatusCode> {
        let (status, body) = self
            .token_raw(&refresh_token(&self.config, id), &self.config.client_secret)
            .await;
        if status == StatusCode::OK {
            Ok(body["access_token"].as_str().unwrap().to_owned())
        } else {
            Err(status)
        }
    }
}
