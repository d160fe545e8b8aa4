//! Nightly metrics, active zone minutes, devices and battery death, scopes and ranges.

use super::*;

fn rounded(x: f64) -> bool {
    ((x * 10.0).round() / 10.0 - x).abs() < 1e-12
}

#[tokio::test]
async fn nightly_metrics_and_zone_minutes_equal_truth() {
    let c = config();
    let sim = start(c.clone()).await;
    let mut short_seen = false;
    let mut nan_seen = false;
    for id in ["sim-0001", "sim-0004", "sim-0007", "sim-0010"] {
        let dates = truth::sleep_dates(&c, id);
        let (first, last) = (dates[0], *dates.last().unwrap());
        let end = last.succ_opt().unwrap();
        let token = sim.access(id).await;
        let fitbit = sim.fitbit_access(id).await;
        let list = |kebab: &'static str| {
            let snake = kebab.replace('-', "_");
            let filter = format!("{snake}.date >= \"{first}\" AND {snake}.date < \"{end}\"");
            let sim = &sim;
            let token = token.clone();
            async move { sim.list_all(&token, kebab, &filter, 5).await.0 }
        };
        let member = |p: &Value, camel: &str| {
            (
                civil_date(&json!({"date": p[camel]["date"]})),
                p[camel].clone(),
            )
        };
        // Google.
        let hrv: Vec<_> = list("daily-heart-rate-variability")
            .await
            .iter()
            .map(|p| member(p, "dailyHeartRateVariability"))
            .collect();
        let spo2: Vec<_> = list("daily-oxygen-saturation")
            .await
            .iter()
            .map(|p| member(p, "dailyOxygenSaturation"))
            .collect();
        let br: Vec<_> = list("daily-respiratory-rate")
            .await
            .iter()
            .map(|p| member(p, "dailyRespiratoryRate"))
            .collect();
        let temp: Vec<_> = list("daily-sleep-temperature-derivations")
            .await
            .iter()
            .map(|p| member(p, "dailySleepTemperatureDerivations"))
            .collect();
        // Legacy (the range fits 30 days).
        let get = |path: String| {
            let sim = &sim;
            let fitbit = fitbit.clone();
            async move {
                let r = sim.fitbit(&path, &fitbit).await;
                assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
                r.body
            }
        };
        let l_hrv = get(format!("/1/user/-/hrv/date/{first}/{last}.json")).await;
        let l_spo2 = get(format!("/1/user/-/spo2/date/{first}/{last}.json")).await;
        let l_br = get(format!("/1/user/-/br/date/{first}/{last}.json")).await;
        let l_temp = get(format!("/1/user/-/temp/skin/date/{first}/{last}.json")).await;
        let l_azm = get(format!(
            "/1/user/-/activities/active-zone-minutes/date/{first}/{last}.json"
        ))
        .await;
        let on = |items: &Value, d: NaiveDate| -> Option<Value> {
            items
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["dateTime"] == d.to_string())
                .map(|i| i["value"].clone())
        };
        let at = |v: &[(NaiveDate, Value)], d: NaiveDate| {
            v.iter().find(|(x, _)| *x == d).map(|(_, v)| v.clone())
        };
        for d in &dates {
            let d = *d;
            let t_hrv = truth::heart_rate_variability(&c, id, d, 0);
            let g = at(&hrv, d).map(|v| {
                (
                    v["averageHeartRateVariabilityMilliseconds"]
                        .as_f64()
                        .unwrap(),
                    v["deepSleepRootMeanSquareOfSuccessiveDifferencesMilliseconds"]
                        .as_f64()
                        .unwrap(),
                )
            });
            assert_eq!(
                g,
                t_hrv.as_ref().map(|h| (h.daily_rmssd, h.deep_rmssd)),
                "{id} {d}"
            );
            let l = on(&l_hrv["hrv"], d).map(|v| {
                (
                    v["dailyRmssd"].as_f64().unwrap(),
                    v["deepRmssd"].as_f64().unwrap(),
                )
            });
            assert_eq!(l, g);

            let t_spo2 = truth::oxygen_saturation(&c, id, d, 0);
            let g = at(&spo2, d).map(|v| {
                (
                    v["averagePercentage"].as_f64().unwrap(),
                    v["lowerBoundPercentage"].as_f64().unwrap(),
                    v["upperBoundPercentage"].as_f64().unwrap(),
                )
            });
            assert_eq!(
                g,
                t_spo2
                    .as_ref()
                    .map(|s| (s.average, s.lower_bound, s.upper_bound))
            );
            let l = on(&l_spo2, d).map(|v| {
                (
                    v["avg"].as_f64().unwrap(),
                    v["min"].as_f64().unwrap(),
                    v["max"].as_f64().unwrap(),
                )
            });
            assert_eq!(l, g);

            let t_br = truth::breathing_rate(&c, id, d, 0);
            assert_eq!(
                at(&br, d).map(|v| v["breathsPerMinute"].as_f64().unwrap()),
                t_br
            );
            assert_eq!(
                on(&l_br["br"], d).map(|v| v["breathingRate"].as_f64().unwrap()),
                t_br
            );

            // A night with a main sleep always has a breathing rate; HRV needs 3 h asleep.
            let main = truth::sleep_sessions(&c, id, d, 0)
                .into_iter()
                .find(|s| s.is_main_sleep);
            assert_eq!(t_br.is_some(), main.is_some(), "{id} {d}");
            if let Some(m) = &main {
                assert_eq!(t_hrv.is_some(), m.minute_asleep >= 180);
                short_seen |= m.minute_asleep < 180;
            }

            let g = at(&temp, d).and_then(|v| {
                let baseline = &v["baselineTemperatureCelsius"];
                if baseline == "NaN" {
                    nan_seen = true;
                    return None;
                }
                Some(v["nightlyTemperatureCelsius"].as_f64().unwrap() - baseline.as_f64().unwrap())
            });
            assert_eq!(g, truth::skin_temperature(&c, id, d, 0));
            let l = on(&l_temp["tempSkin"], d).map(|v| v["nightlyRelative"].as_f64().unwrap());
            assert_eq!(l, truth::legacy::skin_temperature(&c, id, d, 0));
            if let (Some(g), Some(l)) = (g, l) {
                assert!((g - l).abs() < 1e-12 && rounded(l));
            }

            let t_azm = truth::active_zone_minutes(&c, id, d, 0);
            let l = on(&l_azm["activities-active-zone-minutes"], d).map(|v| {
                let m = |k: &str| v.get(k).map_or(0, |x| x.as_i64().unwrap());
                for k in [
                    "activeZoneMinutes",
                    "fatBurnActiveZoneMinutes",
                    "cardioActiveZoneMinutes",
                    "peakActiveZoneMinutes",
                ] {
                    assert_ne!(v.get(k), Some(&json!(0)));
                }
                truth::ActiveZoneMinutesDay {
                    date: d,
                    fat_burn: m("fatBurnActiveZoneMinutes"),
                    cardio: m("cardioActiveZoneMinutes"),
                    peak: m("peakActiveZoneMinutes"),
                    total: m("activeZoneMinutes"),
                }
            });
            assert_eq!(l, t_azm);
        }
        // Google active zone minutes (dailyRollUp): minutes in zone, cardio and peak earn twice.
        let (status, body) = sim.rollup(&token, "active-zone-minutes", first, end).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let points = body["rollupDataPoints"].as_array().unwrap();
        let served: Vec<truth::ActiveZoneMinutesDay> = points
            .iter()
            .map(|p| {
                let v = &p["activeZoneMinutes"];
                let m = |k: &str| v.get(k).map_or(0, int);
                let (fat, cardio, peak) = (
                    m("sumInFatBurnHeartZone"),
                    2 * m("sumInCardioHeartZone"),
                    2 * m("sumInPeakHeartZone"),
                );
                truth::ActiveZoneMinutesDay {
                    date: civil_date(&p["civilStartTime"]),
                    fat_burn: fat,
                    cardio,
                    peak,
                    total: fat + cardio + peak,
                }
            })
            .collect();
        let expected: Vec<_> = dates
            .iter()
            .filter_map(|d| truth::active_zone_minutes(&c, id, *d, 0))
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(served, expected);
        // Zone minutes agree with the heart-rate zones.
        let e = &expected[1];
        let zones = truth::heart_rate_zones(&c, id, e.date, 0);
        assert_eq!(e.fat_burn, zones[1].minute_in_zone);
        assert_eq!(e.cardio, 2 * zones[2].minute_in_zone);
    }
    assert!(short_seen, "no short night among the checked participants");
    let _ = nan_seen;
}

#[tokio::test]
async fn battery_death_stops_every_family() {
    let c = config();
    let sim = start(c.clone()).await;
    let id = "sim-0013";
    let me = roster(&c)
        .into_iter()
        .find(|p| p.participant_id == id)
        .unwrap();
    let devices = truth::paired_devices(&c, id);
    let tracker = &devices[0];
    assert_eq!(
        (tracker.battery.as_str(), tracker.battery_level),
        ("Empty", 0)
    );
    assert_eq!(tracker.last_sync_time, me.latest_sync);
    assert!(me.latest_sync < c.until - Duration::days(2));
    // The clock moves on, the dead tracker does not.
    let v = sim.control("advance", &json!({"minutes": 600})).await;
    assert_eq!(v["latest_sync"][id], crate::clock::rfc3339(me.latest_sync));
    let mut c = c;
    c.advance_minutes = 600;
    assert_eq!(truth::paired_devices(&c, id), devices);

    let token = sim.access(id).await;
    let (status, body) = sim.get("/v4/users/me/pairedDevices", &token, &[]).await;
    assert_eq!(status, StatusCode::OK);
    let served = &body["pairedDevices"][0];
    assert_eq!(served["batteryStatus"], "Empty");
    assert_eq!(served["batteryLevel"], 0);
    assert_eq!(served["deviceType"], "TRACKER");
    assert_eq!(instant(&served["lastSyncTime"]), me.latest_sync);
    let fitbit = sim.fitbit_access(id).await;
    let r = sim.fitbit("/1/user/-/devices.json", &fitbit).await;
    assert_eq!(r.body[0]["battery"], "Empty");
    assert_eq!(r.body[0]["type"], "TRACKER");

    // Nothing after the death: no heart rate, no session ending later.
    let after = me.latest_sync;
    let filter = format!(
        "heart_rate.sample_time.physical_time >= \"{}\"",
        crate::clock::rfc3339(after - Duration::hours(1))
    );
    let (points, _) = sim.list_all(&token, "heart-rate", &filter, 10_000).await;
    assert!(!points.is_empty());
    assert!(
        points
            .iter()
            .all(|p| instant(&p["heartRate"]["sampleTime"]["physicalTime"]) < after)
    );
    let dates = truth::sleep_dates(&c, id);
    let last = *dates.last().unwrap();
    assert!(last < c.until.date_naive());
    let (google, _) = sim
        .google_sleep(&token, dates[0], c.until.date_naive(), 25)
        .await;
    assert!(google.iter().all(|s| s.end <= after));
    assert_eq!(google, truth_sessions(&c, id, &dates, &[]));

    // A live participant's tracker reports a level that drains with the clock.
    let live = truth::paired_devices(&c, "sim-0012");
    assert!(live[0].battery_level > 0 && live[0].battery != "Empty");
    assert_eq!(live[0].device_type, "TRACKER");
}

#[tokio::test]
async fn scopes_and_ranges_are_enforced() {
    let c = config();
    let sim = start(c.clone()).await;
    let id = "sim-0003";
    let d = date("2026-11-02");
    // Google: without the sleep scope sleep is 403, the nightly metrics still answer.
    sim.control(
        &format!("participants/{id}/scopes"),
        &json!({"granted": ["activity_and_fitness.readonly", "health_metrics_and_measurements.readonly", "settings.readonly"]}),
    )
    .await;
    let token = sim.access(id).await;
    let filter = sleep_filter(d, d.succ_opt().unwrap());
    let (status, body) = sim
        .get(
            "/v4/users/me/dataTypes/sleep/dataPoints",
            &token,
            &[("filter", filter.as_str())],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["error"]["details"][0]["reason"],
        "ACCESS_TOKEN_SCOPE_INSUFFICIENT"
    );
    let (status, _) = sim
        .get(
            "/v4/users/me/dataTypes/daily-respiratory-rate/dataPoints",
            &token,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Without health metrics: HRV is 403, sleep is back.
    sim.control(
        &format!("participants/{id}/scopes"),
        &json!({"granted": ["sleep.readonly"]}),
    )
    .await;
    let token = sim.access(id).await;
    let (status, _) = sim
        .get(
            "/v4/users/me/dataTypes/daily-heart-rate-variability/dataPoints",
            &token,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = sim
        .get(
            "/v4/users/me/dataTypes/sleep/dataPoints",
            &token,
            &[("filter", filter.as_str())],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // Legacy: the roster grant has every family; a grant without sleep and temperature
    // refuses those and still serves the others.
    let fitbit = sim.fitbit_access(id).await;
    let r = sim
        .fitbit("/1.2/user/-/sleep/date/2026-11-01/2026-11-02.json", &fitbit)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    sim.control(
        &format!("participants/{id}/scopes"),
        &json!({"provider": "fitbit", "granted": ["activity", "heartrate", "profile", "settings"]}),
    )
    .await;
    let refresh =
        sim.control_get("participants").await["participants"][2]["legacy"]["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
    let r = sim
        .http
        .post(format!("{}/oauth2/token", sim.base))
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["scope"], "activity heartrate profile settings");
    let fitbit = body["access_token"].as_str().unwrap().to_owned();
    for path in [
        "/1.2/user/-/sleep/date/2026-11-01/2026-11-02.json",
        "/1/user/-/temp/skin/date/2026-11-01/2026-11-02.json",
        "/1/user/-/spo2/date/2026-11-01/2026-11-02.json",
    ] {
        let r = sim.fitbit(path, &fitbit).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(r.body["errors"][0]["errorType"], "insufficient_scope");
    }
    for path in [
        "/1/user/-/hrv/date/2026-11-01/2026-11-02.json",
        "/1/user/-/activities/active-zone-minutes/date/2026-11-01/2026-11-02.json",
        "/1/user/-/devices.json",
    ] {
        assert_eq!(
            sim.fitbit(path, &fitbit).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    // Ranges: inclusive, at most 100 / 30 / 1095 days.
    for (path, ok) in [
        ("/1/user/-/hrv/date/2026-10-04/2026-11-02.json", true),
        ("/1/user/-/hrv/date/2026-10-03/2026-11-02.json", false),
        (
            "/1/user/-/activities/active-zone-minutes/date/2023-11-04/2026-11-02.json",
            true,
        ),
        (
            "/1/user/-/activities/active-zone-minutes/date/2023-11-03/2026-11-02.json",
            false,
        ),
        ("/1/user/-/hrv/date/2026-11-03/2026-11-02.json", false),
    ] {
        let r = sim.fitbit(path, &fitbit).await;
        let want = if ok {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(r.status, want, "{path}: {}", r.body);
    }
    let all = sim.fitbit_access("sim-0004").await;
    for (path, ok) in [
        ("/1.2/user/-/sleep/date/2026-07-26/2026-11-02.json", true),
        ("/1.2/user/-/sleep/date/2026-07-25/2026-11-02.json", false),
    ] {
        let r = sim.fitbit(path, &all).await;
        let want = if ok {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(r.status, want, "{path}: {}", r.body);
    }
}
