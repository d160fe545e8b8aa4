//! End-to-end tests of the legacy Fitbit Web API mode (server on 127.0.0.1:0, reqwest).

use base64::Engine;
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::tests::{Sim, date, small, start};
use crate::{SimConfig, roster, roster_csv, roster_csv_for, truth};

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    headers: HeaderMap,
}

fn basic(id: &str, secret: &str) -> String {
    let raw = format!("{id}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

async fn reply(r: reqwest::Response) -> Reply {
    let status = r.status();
    let headers = r.headers().clone();
    let body = r.json().await.unwrap_or(Value::Null);
    Reply {
        status,
        body,
        headers,
    }
}

fn error_type(v: &Value) -> &str {
    v["errors"][0]["errorType"].as_str().unwrap_or_default()
}

fn header(r: &Reply, name: &str) -> Option<i64> {
    r.headers
        .get(name)
        .map(|v| v.to_str().unwrap().parse().unwrap())
}

fn initial_refresh(config: &SimConfig, id: &str) -> String {
    roster(config)
        .into_iter()
        .find(|p| p.participant_id == id)
        .unwrap()
        .legacy_refresh_token
}

impl Sim {
    async fn fitbit_token_with(&self, refresh: &str, secret: &str) -> Reply {
        let r = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .header("authorization", basic(&self.config.client_id, secret))
            .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
            .send()
            .await
            .unwrap();
        reply(r).await
    }

    async fn fitbit_token(&self, refresh: &str) -> Reply {
        let secret = self.config.client_secret.clone();
        self.fitbit_token_with(refresh, &secret).await
    }

    /// A legacy access token from the participant's initial refresh token (once per server).
    pub(crate) async fn fitbit_access(&self, id: &str) -> String {
        let r = self.fitbit_token(&initial_refresh(&self.config, id)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["access_token"].as_str().unwrap().to_owned()
    }

    /// The participant's active legacy refresh token (from the control API).
    async fn current_refresh(&self, index: usize) -> String {
        let participants = self.control_get("participants").await;
        participants["participants"][index]["legacy"]["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub(crate) async fn fitbit(&self, path: &str, token: &str) -> Reply {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        reply(r).await
    }
}

#[tokio::test]
async fn legacy_refresh_rotates_and_old_tokens_are_refused() {
    let config = SimConfig {
        participants: 3,
        days: 1,
        ..SimConfig::default()
    };
    let sim = start(config.clone()).await;
    let p = roster(&config).remove(0);
    let initial = p.legacy_refresh_token.clone();
    assert!(initial.starts_with("simfrt_sim-0001_"));
    assert!(!initial.starts_with("1//") && !initial.starts_with("ya29."));
    assert_eq!(p.encoded_id.len(), 6);
    assert!(
        p.encoded_id
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
    );
    let csv = roster_csv_for(&config, "fitbit");
    assert!(csv.starts_with(&format!(
        "participant_id,provider,refresh_token,sync_from\nsim-0001,fitbit,{initial},"
    )));
    assert_eq!(
        roster_csv_for(&config, "google-health"),
        roster_csv(&config)
    );

    let r = sim.fitbit_token_with(&initial, "wrong").await;
    assert_eq!(
        (r.status, error_type(&r.body)),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    let r = sim.fitbit_token(&initial).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["expires_in"], 28_800);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(
        r.body["scope"],
        "activity heartrate oxygen_saturation profile respiratory_rate settings sleep temperature"
    );
    assert_eq!(r.body["user_id"], p.encoded_id.as_str());
    // The token endpoint carries the headers but does not use the quota.
    assert_eq!(header(&r, "fitbit-rate-limit-remaining"), Some(150));
    let access = r.body["access_token"].as_str().unwrap().to_owned();
    let second = r.body["refresh_token"].as_str().unwrap().to_owned();
    assert!(second.starts_with("simfrt_sim-0001_") && second != initial);

    // Single use: the old token is refused, the new one works once.
    let r = sim.fitbit_token(&initial).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(error_type(&r.body), "invalid_grant");
    assert_eq!(r.body["success"], false);
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Refresh token invalid: {initial}."))
    );
    let r = sim.fitbit_token(&second).await;
    assert_eq!(r.status, StatusCode::OK);
    let third = r.body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        sim.fitbit_token(&second).await.status,
        StatusCode::BAD_REQUEST
    );

    // Both access tokens work (several may be active); the two APIs keep tokens apart.
    let profile = sim.fitbit("/1/user/-/profile.json", &access).await;
    assert_eq!(profile.status, StatusCode::OK);
    assert_eq!(profile.body["user"]["encodedId"], p.encoded_id.as_str());
    let google = sim.access("sim-0001").await;
    let r = sim.fitbit("/1/user/-/profile.json", &google).await;
    assert_eq!(
        (r.status, error_type(&r.body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    assert_eq!(
        sim.get("/v4/users/me/settings", &access, &[]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sim.fitbit_token(&p.refresh_token).await.status,
        StatusCode::BAD_REQUEST
    );

    // The Google identity maps to the encodedId, unless told otherwise.
    let (status, identity) = sim.get("/v4/users/me/identity", &google, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(identity["legacyUserId"], p.encoded_id.as_str());
    sim.control(
        "participants/sim-0001/identity",
        &json!({"legacy_user_id": "ZZZZZ9"}),
    )
    .await;
    let (_, identity) = sim.get("/v4/users/me/identity", &google, &[]).await;
    assert_eq!(identity["legacyUserId"], "ZZZZZ9");
    sim.control(
        "participants/sim-0001/identity",
        &json!({"legacy_user_id": null}),
    )
    .await;
    let (_, identity) = sim.get("/v4/users/me/identity", &google, &[]).await;
    assert_eq!(identity["legacyUserId"], p.encoded_id.as_str());

    // Expiry (forced): 401 expired_token.
    sim.control(
        "participants/sim-0001/legacy",
        &json!({"expire_access_tokens": true}),
    )
    .await;
    let r = sim.fitbit("/1/user/-/profile.json", &access).await;
    assert_eq!(
        (r.status, error_type(&r.body)),
        (StatusCode::UNAUTHORIZED, "expired_token")
    );
    let r = sim.fitbit_token(&third).await;
    let fourth = r.body["refresh_token"].as_str().unwrap().to_owned();
    let access = r.body["access_token"].as_str().unwrap().to_owned();

    // Revoking the Fitbit grant leaves the Google grant alone.
    sim.control(
        "participants/sim-0001/revoke",
        &json!({"provider": "fitbit"}),
    )
    .await;
    let r = sim.fitbit_token(&fourth).await;
    assert_eq!(
        (r.status, error_type(&r.body)),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    let r = sim.fitbit("/1/user/-/devices.json", &access).await;
    assert_eq!(
        (r.status, error_type(&r.body)),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    assert_eq!(
        sim.get("/v4/users/me/settings", &google, &[]).await.0,
        StatusCode::OK
    );
    // Restoring re-issues the roster token (a re-consent delivered by re-import).
    let restored = sim
        .control(
            "participants/sim-0001/restore",
            &json!({"provider": "fitbit"}),
        )
        .await;
    assert_eq!(restored["legacy_refresh_token"], initial.as_str());
    let r = sim.fitbit_token(&initial).await;
    assert_eq!(r.status, StatusCode::OK);
    let access = r.body["access_token"].as_str().unwrap().to_owned();

    // RFC 7009 revocation through the API.
    let r = sim
        .http
        .post(format!("{}/oauth2/revoke", sim.base))
        .header("authorization", basic("sim-client", "sim-secret"))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        sim.fitbit("/1/user/-/profile.json", &access).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Google revocation (default: both grants).
    sim.control("participants/sim-0002/revoke", &json!({}))
        .await;
    assert_eq!(
        sim.fitbit_token(&initial_refresh(&config, "sim-0002"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let stats = sim.control_get("stats").await;
    assert_eq!(stats["legacy_token_refreshes"], 4);
    assert!(stats["by_endpoint"]["legacy/token"].as_u64().unwrap() >= 10);
}

#[tokio::test]
async fn legacy_grace_window_returns_the_same_pair() {
    let config = SimConfig {
        participants: 1,
        days: 1,
        legacy_refresh_grace_secs: 120,
        ..SimConfig::default()
    };
    let sim = start(config.clone()).await;
    let a = initial_refresh(&config, "sim-0001");
    let first = sim.fitbit_token(&a).await;
    assert_eq!(first.status, StatusCode::OK);
    let b = first.body["refresh_token"].as_str().unwrap().to_owned();
    // A retry with the token just rotated out returns the very same pair.
    let again = sim.fitbit_token(&a).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body, first.body);
    let second = sim.fitbit_token(&b).await;
    assert_eq!(second.status, StatusCode::OK);
    let c = second.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(c, b);
    assert_eq!(sim.fitbit_token(&b).await.body, second.body);
    // Only the immediately previous token is replayed.
    assert_eq!(sim.fitbit_token(&a).await.status, StatusCode::BAD_REQUEST);
    let access = second.body["access_token"].as_str().unwrap();
    assert_eq!(
        sim.fitbit("/1/user/-/devices.json", access).await.status,
        StatusCode::OK
    );
    assert_eq!(sim.fitbit_token(&c).await.status, StatusCode::OK);
}

fn parse_local_millis(s: &str) -> NaiveDateTime {
    assert_eq!(s.len(), 23, "{s}");
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.3f").unwrap()
}

#[tokio::test]
async fn legacy_last_sync_is_local_and_converts_back_across_dst() {
    // The default clock (EST, history starting in EDT), just after the fall-back with
    // the latest sync inside the repeated hour, just before it, and the spring-forward.
    let cases = [
        ("2026-11-04T06:00:00Z", false),
        ("2026-11-01T06:59:00Z", true),
        ("2026-11-01T05:55:00Z", true),
        ("2026-03-08T08:00:00Z", false),
    ];
    for (until, ambiguous) in cases {
        let config = SimConfig {
            participants: 1,
            days: 1,
            until: DateTime::parse_from_rfc3339(until).unwrap().to_utc(),
            ..SimConfig::default()
        };
        let sim = start(config.clone()).await;
        let p = roster(&config).remove(0);
        assert_eq!(p.time_zone, Tz::America__New_York);
        let token = sim.fitbit_access("sim-0001").await;
        let profile = sim.fitbit("/1/user/-/profile.json", &token).await;
        assert_eq!(profile.status, StatusCode::OK);
        let user = &profile.body["user"];
        assert_eq!(user["timezone"], "America/New_York");
        assert_eq!(user["encodedId"], p.encoded_id.as_str());
        let offset_ms = user["offsetFromUTCMillis"].as_i64().unwrap();
        assert_eq!(
            offset_ms,
            i64::from(
                chrono::Offset::fix(
                    &Tz::America__New_York.offset_from_utc_datetime(&config.until.naive_utc())
                )
                .local_minus_utc()
            ) * 1000
        );

        let devices = sim.fitbit("/1/user/-/devices.json", &token).await;
        assert_eq!(devices.status, StatusCode::OK);
        let latest_local = devices
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|d| parse_local_millis(d["lastSyncTime"].as_str().unwrap()))
            .max()
            .unwrap();
        let back = (latest_local - Duration::milliseconds(offset_ms)).and_utc();
        assert_eq!(back, p.latest_sync, "{until}");
        let resolved = Tz::America__New_York.from_local_datetime(&latest_local);
        assert_eq!(
            matches!(resolved, chrono::LocalResult::Ambiguous(..)),
            ambiguous,
            "{until}: {latest_local}"
        );
        // The Google side serves the same instant.
        let google = sim.access("sim-0001").await;
        let (_, paired) = sim.get("/v4/users/me/pairedDevices", &google, &[]).await;
        let max = paired["pairedDevices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| DateTime::parse_from_rfc3339(d["lastSyncTime"].as_str().unwrap()).unwrap())
            .max()
            .unwrap();
        assert_eq!(max.to_utc(), back);
        let (_, identity) = sim.get("/v4/users/me/identity", &google, &[]).await;
        assert_eq!(identity["legacyUserId"], user["encodedId"]);
    }
}

/// Rebuilds UTC instants from a dataset of `HH:mm:ss` times starting on `first` (the date
/// rolls over when the time goes backwards).
fn instants(dataset: &Value, first: NaiveDate) -> Vec<(DateTime<Utc>, i64)> {
    let mut day = first;
    let mut previous: Option<NaiveTime> = None;
    dataset
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let t = NaiveTime::parse_from_str(p["time"].as_str().unwrap(), "%H:%M:%S").unwrap();
            if previous.is_some_and(|prev| t < prev) {
                day = day.succ_opt().unwrap();
            }
            previous = Some(t);
            (day.and_time(t).and_utc(), p["value"].as_i64().unwrap())
        })
        .collect()
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

#[tokio::test]
async fn legacy_intraday_equals_truth_in_utc_and_local_time() {
    let config = SimConfig {
        participants: 5,
        days: 3,
        fine_hr_every: 5,
        ..SimConfig::default()
    };
    let sim = start(config.clone()).await;
    let d0 = date("2026-11-02");
    let mut tokens = std::collections::HashMap::new();
    for id in ["sim-0001", "sim-0005"] {
        let token = sim.fitbit_access(id).await;
        tokens.insert(id, token.clone());
        // A UTC range across midnight: points on both dates, equal to the truth.
        let path = "/1/user/-/activities/heart/date/2026-11-02/2026-11-03/1min/time/22:00/02:00.json?timezone=UTC";
        let r = sim.fitbit(path, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let intraday = &r.body["activities-heart-intraday"];
        assert_eq!(intraday["datasetInterval"], 1);
        assert_eq!(intraday["datasetType"], "minute");
        let got = instants(&intraday["dataset"], d0);
        let (start, end) = (utc("2026-11-02T22:00:00Z"), utc("2026-11-03T02:01:00Z"));
        let want: Vec<(DateTime<Utc>, i64)> =
            truth::legacy::heart_rate_minutes(&config, id, start, end)
                .iter()
                .map(|s| (s.time, s.bpm))
                .collect();
        assert!(want.len() > 200, "{}", want.len());
        assert_eq!(got, want);
        assert!(got.iter().any(|(t, _)| *t < utc("2026-11-03T00:00:00Z")));
        assert!(got.iter().any(|(t, _)| *t >= utc("2026-11-03T00:00:00Z")));
        let days: Vec<&str> = r.body["activities-heart"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["dateTime"].as_str().unwrap())
            .collect();
        assert_eq!(days, ["2026-11-02", "2026-11-03"]);

        // Steps: every minute of the range, zeros included; the non-zero ones are the truth.
        let path = "/1/user/-/activities/steps/date/2026-11-02/2026-11-03/1min/time/22:00/02:00.json?timezone=UTC";
        let r = sim.fitbit(path, &token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let got = instants(&r.body["activities-steps-intraday"]["dataset"], d0);
        assert_eq!(got.len(), 241);
        assert!(
            got.windows(2)
                .all(|w| w[1].0 - w[0].0 == Duration::minutes(1))
        );
        let nonzero: Vec<(DateTime<Utc>, i64)> = got.into_iter().filter(|p| p.1 > 0).collect();
        let want: Vec<(DateTime<Utc>, i64)> = truth::steps(&config, id, start, end, 0)
            .iter()
            .map(|m| (m.start, m.steps))
            .collect();
        assert_eq!(nonzero, want);
        let daily = &r.body["activities-steps"];
        let before: i64 = want
            .iter()
            .filter(|p| p.0 < utc("2026-11-03T00:00:00Z"))
            .map(|p| p.1)
            .sum();
        assert_eq!(daily[0]["value"], before.to_string());
        assert!(daily[1]["value"].is_string());

        // The 24-hour maximum: exactly 24 hours is fine, one minute more is not.
        let ok = "/1/user/-/activities/steps/date/2026-11-02/2026-11-03/1min/time/06:00/06:00.json?timezone=UTC";
        let r = sim.fitbit(ok, &token).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.body["activities-steps-intraday"]["dataset"]
                .as_array()
                .unwrap()
                .len(),
            1441
        );
        for too_long in [
            "/1/user/-/activities/heart/date/2026-11-02/2026-11-03/1min/time/06:00/06:01.json?timezone=UTC",
            "/1/user/-/activities/heart/date/2026-11-02/2026-11-03/1min.json",
        ] {
            let r = sim.fitbit(too_long, &token).await;
            assert_eq!(
                (r.status, error_type(&r.body)),
                (StatusCode::BAD_REQUEST, "validation"),
                "{too_long}"
            );
        }
    }

    // 1-second heart rate of a fine participant is every raw sample.
    let path = "/1/user/-/activities/heart/date/2026-11-02/2026-11-03/1sec/time/23:50/00:10.json?timezone=UTC";
    let r = sim.fitbit(path, &tokens["sim-0005"]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["activities-heart-intraday"]["datasetType"], "second");
    let got = instants(&r.body["activities-heart-intraday"]["dataset"], d0);
    let want: Vec<(DateTime<Utc>, i64)> = truth::heart_rate(
        &config,
        "sim-0005",
        utc("2026-11-02T23:50:00Z"),
        utc("2026-11-03T00:11:00Z"),
        0,
    )
    .iter()
    .map(|s| (s.time, s.bpm))
    .collect();
    assert!(want.len() > 1000);
    assert_eq!(got, want);

    // Local time: the New York fall-back day has 25 hours of minutes, repeated times
    // included, labelled with local wall time.
    let ny = Tz::America__New_York;
    let t1 = &tokens["sim-0001"];
    let day = date("2026-11-01");
    let r = sim
        .fitbit(
            "/1/user/-/activities/heart/date/2026-11-01/1d/1min.json",
            t1,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let dataset = r.body["activities-heart-intraday"]["dataset"]
        .as_array()
        .unwrap();
    let (ds, de) = truth::local_day_bounds_utc(&config, "sim-0001", day).unwrap();
    let want = truth::legacy::heart_rate_minutes(&config, "sim-0001", ds, de);
    assert_eq!(dataset.len(), want.len());
    for (point, truth) in dataset.iter().zip(&want) {
        let wall = crate::clock::local(ny, truth.time)
            .format("%H:%M:%S")
            .to_string();
        assert_eq!(point["time"], wall.as_str());
        assert_eq!(point["value"], truth.bpm);
    }
    let r = sim
        .fitbit(
            "/1/user/-/activities/steps/date/2026-11-01/1d/1min.json",
            t1,
        )
        .await;
    let dataset = r.body["activities-steps-intraday"]["dataset"]
        .as_array()
        .unwrap();
    assert_eq!(dataset.len(), 1500);
    let repeated = dataset.iter().filter(|p| p["time"] == "01:30:00").count();
    assert_eq!(repeated, 2);
}

#[tokio::test]
async fn legacy_daily_values_equal_truth() {
    let config = small();
    let sim = start(config.clone()).await;
    for id in ["sim-0001", "sim-0005"] {
        let token = sim.fitbit_access(id).await;
        let dates = truth::dates(&config, id);
        for day in &dates {
            let want = truth::activity_day(&config, id, *day, 0).unwrap();
            let r = sim
                .fitbit(&format!("/1/user/-/activities/date/{day}.json"), &token)
                .await;
            assert_eq!(r.status, StatusCode::OK);
            let s = &r.body["summary"];
            assert_eq!(s["steps"], want.steps);
            assert_eq!(s["distances"][0]["activity"], "total");
            assert_eq!(
                s["distances"][0]["distance"].as_f64().unwrap(),
                want.distance_km
            );
            assert_eq!(s["floors"], want.floors);
            assert_eq!(s["elevation"].as_f64().unwrap(), want.elevation_m);
            assert_eq!(s["caloriesOut"], want.calories_out.round() as i64);
            assert_eq!(s["activityCalories"], want.activity_calories.round() as i64);
            assert_eq!(
                s["sedentaryMinutes"].as_f64().unwrap(),
                want.sedentary_minutes
            );
            assert_eq!(
                s["lightlyActiveMinutes"].as_f64().unwrap(),
                want.lightly_active_minutes
            );
            assert_eq!(
                s["fairlyActiveMinutes"].as_f64().unwrap(),
                want.fairly_active_minutes
            );
            assert_eq!(
                s["veryActiveMinutes"].as_f64().unwrap(),
                want.very_active_minutes
            );
            assert_eq!(
                s["restingHeartRate"].as_i64(),
                truth::legacy::resting_heart_rate(&config, id, *day, 0)
            );
            let zones = truth::legacy::heart_rate_zones(&config, id, *day, 0);
            let r = sim
                .fitbit(
                    &format!("/1/user/-/activities/heart/date/{day}/1d.json"),
                    &token,
                )
                .await;
            assert_eq!(r.status, StatusCode::OK);
            let item = &r.body["activities-heart"][0];
            assert_eq!(item["dateTime"], day.to_string());
            assert_eq!(item["value"]["customHeartRateZones"], json!([]));
            for served in [&item["value"]["heartRateZones"], &s["heartRateZones"]] {
                let served = served.as_array().unwrap();
                assert_eq!(served.len(), 4);
                for (z, zone) in served.iter().zip(&zones) {
                    assert_eq!(z["name"].as_str().unwrap().to_lowercase(), zone.zone_name);
                    assert_eq!(z["min"], zone.min_heart_rate);
                    assert_eq!(z["max"], zone.max_heart_rate);
                    assert_eq!(z["minutes"], zone.minute_in_zone);
                    assert_eq!(z["caloriesOut"].as_f64().unwrap(), zone.calorie_count);
                }
            }
            assert_eq!(item["value"]["restingHeartRate"], s["restingHeartRate"]);
        }
        // A week of daily steps ending on the last day; days without data are "0".
        let last = *dates.last().unwrap();
        let r = sim
            .fitbit(
                &format!("/1/user/-/activities/steps/date/{last}/7d.json"),
                &token,
            )
            .await;
        let items = r.body["activities-steps"].as_array().unwrap();
        assert_eq!(items.len(), 7);
        for item in items {
            let d: NaiveDate = item["dateTime"].as_str().unwrap().parse().unwrap();
            let want = truth::activity_day(&config, id, d, 0).map_or(0, |a| a.steps);
            assert_eq!(item["value"], want.to_string());
        }
    }
    // Restatements show on the legacy side too; days without data are zeros.
    let current = sim.current_refresh(0).await;
    let token = sim.fitbit_token(&current).await.body["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    sim.control(
        "participants/sim-0001/restate",
        &json!({"date": "2026-11-02"}),
    )
    .await;
    let r = sim
        .fitbit("/1/user/-/activities/date/2026-11-02.json", &token)
        .await;
    assert_eq!(
        r.body["summary"]["steps"],
        truth::activity_day(&config, "sim-0001", date("2026-11-02"), 1)
            .unwrap()
            .steps
    );
    let r = sim
        .fitbit("/1/user/-/activities/date/2026-10-01.json", &token)
        .await;
    assert_eq!(r.body["summary"]["steps"], 0);
    assert!(r.body["summary"].get("restingHeartRate").is_none());
    assert_eq!(r.body["summary"]["heartRateZones"][3]["max"], 220);
}

#[tokio::test]
async fn legacy_rate_limit_counts_down_to_429() {
    let config = SimConfig {
        participants: 2,
        days: 1,
        ..SimConfig::default()
    };
    let sim = start(config).await;
    let token = sim.fitbit_access("sim-0001").await;
    // Keep clear of the top of the (real-clock) hour, when the quota resets.
    let probe = sim.fitbit("/1/user/-/profile.json", &token).await;
    let reset = header(&probe, "fitbit-rate-limit-reset").unwrap();
    if reset < 20 {
        tokio::time::sleep(std::time::Duration::from_secs(reset as u64 + 1)).await;
        sim.control("legacy", &json!({"reset_rate_limits": true}))
            .await;
        let again = sim.fitbit("/1/user/-/profile.json", &token).await;
        assert_eq!(header(&again, "fitbit-rate-limit-remaining"), Some(149));
    } else {
        assert_eq!(header(&probe, "fitbit-rate-limit-remaining"), Some(149));
    }
    for k in 2..=150 {
        let r = sim.fitbit("/1/user/-/profile.json", &token).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(header(&r, "fitbit-rate-limit-limit"), Some(150));
        assert_eq!(header(&r, "fitbit-rate-limit-remaining"), Some(150 - k));
        let reset = header(&r, "fitbit-rate-limit-reset").unwrap();
        assert!((1..=3600).contains(&reset));
    }
    let r = sim.fitbit("/1/user/-/devices.json", &token).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        r.body,
        json!({"errors":[{"errorType":"system","fieldName":"n/a","message":"Too Many Requests"}],"success":false})
    );
    assert!(r.headers.get("retry-after").is_none());
    assert_eq!(header(&r, "fitbit-rate-limit-remaining"), Some(0));
    sim.control("faults", &json!({"retry_after_secs": 9})).await;
    let r = sim.fitbit("/1/user/-/profile.json", &token).await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&r, "retry-after"), Some(9));
    // Another participant and the token endpoint are unaffected.
    let other = sim.fitbit_access("sim-0002").await;
    assert_eq!(
        sim.fitbit("/1/user/-/profile.json", &other).await.status,
        StatusCode::OK
    );
    let stats = sim.control_get("stats").await;
    assert_eq!(stats["legacy_requests_by_participant_per_hour_max"], 152);
    assert_eq!(stats["status_counts"]["429"], 2);
    assert_eq!(stats["max_requests_per_participant_per_minute"], 0);
}

#[tokio::test]
async fn legacy_short_quota_window_resets() {
    let config = SimConfig {
        participants: 1,
        days: 1,
        legacy_rate_limit_per_hour: 3,
        legacy_rate_limit_window_secs: 2,
        ..SimConfig::default()
    };
    let sim = start(config).await;
    let token = sim.fitbit_access("sim-0001").await;
    let wait = |r: &Reply| {
        let secs = header(r, "fitbit-rate-limit-reset").unwrap();
        assert!((1..=2).contains(&secs), "{secs}");
        // Past the boundary, at the start of a fresh window.
        std::time::Duration::from_millis(secs as u64 * 1000 + 50)
    };
    let probe = sim.fitbit("/1/user/-/profile.json", &token).await;
    tokio::time::sleep(wait(&probe)).await;
    for left in [2, 1, 0] {
        let r = sim.fitbit("/1/user/-/profile.json", &token).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(header(&r, "fitbit-rate-limit-limit"), Some(3));
        assert_eq!(header(&r, "fitbit-rate-limit-remaining"), Some(left));
    }
    let limited = sim.fitbit("/1/user/-/profile.json", &token).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    tokio::time::sleep(wait(&limited)).await;
    let r = sim.fitbit("/1/user/-/profile.json", &token).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(header(&r, "fitbit-rate-limit-remaining"), Some(2));
    let stats = sim.control_get("stats").await;
    assert_eq!(stats["legacy_requests_by_participant_per_hour_max"], 4);
}

#[tokio::test]
async fn legacy_turn_off_answers_410_everywhere() {
    let config = SimConfig {
        participants: 2,
        days: 1,
        ..SimConfig::default()
    };
    let sim = start(config.clone()).await;
    let token = sim.fitbit_access("sim-0001").await;
    let google = sim.access("sim-0001").await;
    let state = sim.control("legacy", &json!({"turned_off": true})).await;
    assert_eq!(state["turned_off"], true);
    let paths = [
        "/1/user/-/profile.json",
        "/1/user/-/devices.json",
        "/1/user/-/activities/date/2026-11-03.json",
        "/1/user/-/activities/heart/date/2026-11-03/1d.json",
        "/1/user/-/activities/heart/date/2026-11-03/1d/1min.json",
        "/1/user/-/activities/steps/date/2026-11-03/1d/1min/time/00:00/01:00.json",
        "/1/user/-/nothing.json",
        "/1.1/oauth2/introspect",
    ];
    for path in paths {
        let r = sim.fitbit(path, &token).await;
        assert_eq!(r.status, StatusCode::GONE, "{path}");
        assert_eq!(error_type(&r.body), "gone");
        assert!(r.headers.get("fitbit-rate-limit-limit").is_none());
    }
    let r = sim
        .fitbit_token(&initial_refresh(&config, "sim-0002"))
        .await;
    assert_eq!(r.status, StatusCode::GONE);
    let r = sim
        .http
        .post(format!("{}/oauth2/revoke", sim.base))
        .form(&[("token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::GONE);
    // The Google side is untouched.
    assert_eq!(
        sim.get("/v4/users/me/settings", &google, &[]).await.0,
        StatusCode::OK
    );
    let stats = sim.control_get("stats").await;
    assert_eq!(stats["status_counts"]["410"], paths.len() + 2);
    // Turned on again, everything works as before (the refresh token was not consumed).
    sim.control("legacy", &json!({"turned_off": false})).await;
    assert_eq!(
        sim.fitbit("/1/user/-/profile.json", &token).await.status,
        StatusCode::OK
    );
    assert_eq!(sim.fitbit_access("sim-0002").await.len(), 39);
}

#[tokio::test]
async fn legacy_faults_and_permissions() {
    let config = small();
    let sim = start(config.clone()).await;
    let t1 = sim.fitbit_access("sim-0001").await;
    let intraday = "/1/user/-/activities/heart/date/2026-11-03/1d/1min/time/10:00/10:30.json";

    // Intraday not permitted: 403, daily data still served.
    sim.control(
        "participants/sim-0001/legacy",
        &json!({"intraday_permitted": false}),
    )
    .await;
    let r = sim.fitbit(intraday, &t1).await;
    assert_eq!(
        (r.status, error_type(&r.body)),
        (StatusCode::FORBIDDEN, "insufficient_permissions")
    );
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Intraday data is not permitted")
    );
    assert_eq!(
        sim.fitbit("/1/user/-/activities/heart/date/2026-11-03/1d.json", &t1)
            .await
            .status,
        StatusCode::OK
    );
    sim.control(
        "participants/sim-0001/legacy",
        &json!({"intraday_permitted": true}),
    )
    .await;
    let r = sim.fitbit(intraday, &t1).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.body["activities-heart-intraday"]["dataset"][0]["time"],
        "10:00:00"
    );

    // Paths: the owner's encodedId works like "-", others and unknown paths do not.
    let me = &roster(&config)[0].encoded_id;
    assert_eq!(
        sim.fitbit(&format!("/1/user/{me}/profile.json"), &t1)
            .await
            .status,
        StatusCode::OK
    );
    let r = sim.fitbit("/1/user/ABCDEF/profile.json", &t1).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = sim.fitbit("/1/user/-/sleep.json", &t1).await;
    assert_eq!(
        (r.status, error_type(&r.body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let r = sim
        .fitbit("/1/user/-/activities/date/2026-13-01.json", &t1)
        .await;
    assert_eq!(
        (r.status, error_type(&r.body)),
        (StatusCode::BAD_REQUEST, "validation")
    );
    let r = sim.fitbit("/1/user/-/profile.json", "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let t2 = sim.fitbit_access("sim-0002").await;
    let t3 = sim.fitbit_access("sim-0003").await;
    let t4 = sim.fitbit_access("sim-0004").await;
    let t5 = sim.fitbit_access("sim-0005").await;
    let t6 = sim.fitbit_access("sim-0006").await;
    sim.control(
        "faults",
        &json!({"participants": {
            "sim-0001": {"legacy_bad_last_sync": true},
            "sim-0002": {"legacy_point_outside_range": true},
            "sim-0003": {"fail_5xx": true},
            "sim-0004": {"fail_5xx": true, "malformed_json": true},
            "sim-0005": {"malformed_json": true},
            "sim-0006": {"truncate_body": true}}}),
    )
    .await;

    let r = sim.fitbit("/1/user/-/devices.json", &t1).await;
    let last = r.body[0]["lastSyncTime"].as_str().unwrap();
    assert!(
        NaiveDateTime::parse_from_str(last, "%m/%d/%Y %H:%M").is_ok(),
        "{last}"
    );

    let r = sim.fitbit(intraday, &t2).await;
    let dataset = r.body["activities-heart-intraday"]["dataset"]
        .as_array()
        .unwrap();
    assert_eq!(dataset[0]["time"], "09:59:00");
    assert_eq!(dataset[1]["time"], "10:00:00");

    let r = sim.fitbit(intraday, &t3).await;
    assert_eq!(
        (r.status, error_type(&r.body)),
        (StatusCode::SERVICE_UNAVAILABLE, "system")
    );
    let raw = sim
        .http
        .get(format!("{}{intraday}", sim.base))
        .bearer_auth(&t4)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::BAD_GATEWAY);
    assert!(raw.headers().get("fitbit-rate-limit-limit").is_some());
    let text = raw.text().await.unwrap();
    assert!(text.contains("502 Bad Gateway") && serde_json::from_str::<Value>(&text).is_err());
    let r = sim.fitbit_token(&sim.current_refresh(3).await).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    let r = sim.fitbit_token(&sim.current_refresh(2).await).await;
    assert_eq!(
        (r.status, error_type(&r.body)),
        (StatusCode::SERVICE_UNAVAILABLE, "system")
    );

    let r = sim.fitbit(intraday, &t5).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["activities-heart-intraday"]["dataset"][0]["value"].is_object());
    let r = sim.fitbit("/1/user/-/devices.json", &t5).await;
    assert!(r.body[0]["batteryLevel"].is_object());

    let raw = sim
        .http
        .get(format!("{}/1/user/-/profile.json", sim.base))
        .bearer_auth(&t6)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::OK);
    assert!(serde_json::from_slice::<Value>(&raw.bytes().await.unwrap()).is_err());

    // Random 503s reach the legacy API (and its token endpoint) too.
    sim.control("faults", &json!({"error_rate": 1.0})).await;
    let r = sim.fitbit("/1/user/-/profile.json", &t1).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["success"], false);
    let r = sim
        .fitbit_token(&initial_refresh(&config, "sim-0007"))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    sim.control("faults", &json!({})).await;
    assert_eq!(sim.fitbit_access("sim-0007").await.len(), 39);

    let stats = sim.control_get("stats").await;
    assert!(
        stats["by_endpoint"]["legacy/heart-intraday"]
            .as_u64()
            .unwrap()
            >= 6
    );
    assert!(stats["by_endpoint"]["legacy/devices"].as_u64().unwrap() >= 2);
    let csv = sim
        .http
        .get(format!("{}/_sim/roster.csv?provider=fitbit", sim.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(csv, roster_csv_for(&config, "fitbit"));
}
