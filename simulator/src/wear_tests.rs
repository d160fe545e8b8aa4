//! The wear model (`generator/wear.rs`) end to end: what a day or a night without the
//! tracker leaves in every family, cohort compliance of the low-adherence subset and of
//! everyone else, and wear time as both APIs serve it equal to [`truth::worn_minutes`].

use chrono::{DateTime, Duration, NaiveDate, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::clock::rfc3339;
use crate::tests::{Sim, start};
use crate::truth::{self, WearDay};
use crate::{SimConfig, roster};

/// Cohort compliance (`docs/coverage.md`): 10 hours of wear on at least 4 of 7 days.
const COMPLIANT_MINUTES: i64 = 600;
const COMPLIANT_DAYS: usize = 4;

/// 13 participants (sim-0013's battery dies) over two weeks containing the US DST end.
fn two_weeks(seed: u64) -> SimConfig {
    SimConfig {
        participants: 13,
        days: 14,
        seed,
        ..SimConfig::default()
    }
}

fn ids(config: &SimConfig) -> impl Iterator<Item = (usize, String)> {
    (1..=config.participants).map(|i| (i, format!("sim-{i:04}")))
}

fn bounds(config: &SimConfig, id: &str, date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    truth::local_day_bounds_utc(config, id, date).unwrap()
}

/// How many distinct UTC minutes the samples fall in (they come oldest first).
fn distinct_minutes(samples: &[truth::HeartRateSample]) -> i64 {
    let mut minutes: Vec<i64> = samples
        .iter()
        .map(|s| s.time.timestamp().div_euclid(60))
        .collect();
    minutes.dedup();
    minutes.len() as i64
}

/// The days of a participant's history that lie completely in its data window (the first
/// and the last are partial).
fn whole_days(config: &SimConfig, id: &str) -> Vec<WearDay> {
    let mut days = truth::wear_days(config, id);
    days.pop();
    if !days.is_empty() {
        days.remove(0);
    }
    days
}

#[test]
fn a_day_not_worn_leaves_nothing_of_that_day() {
    let mut seen = 0;
    for seed in [42, 7, 2026] {
        let c = two_weeks(seed);
        for (_, id) in ids(&c) {
            for day in truth::wear_days(&c, &id).iter().filter(|d| d.not_worn) {
                let d = day.date;
                let (start, end) = bounds(&c, &id, d);
                assert!(truth::heart_rate(&c, &id, start, end, 0).is_empty());
                assert!(truth::steps(&c, &id, start, end, 0).is_empty());
                assert_eq!(day.worn_minutes, 0);
                assert_eq!(truth::legacy::worn_minutes(&c, &id, d), 0);
                assert!(day.night_without_device, "{id} {d}");
                // No session ends that day, and none starts on it.
                assert!(truth::sleep_sessions(&c, &id, d, 0).is_empty(), "{id} {d}");
                let next = d.succ_opt().unwrap();
                let after = truth::sleep_sessions(&c, &id, next, 0);
                assert!(after.iter().all(|s| !s.is_main_sleep), "{id} {next}");
                assert!(truth::heart_rate_variability(&c, &id, d, 0).is_none());
                assert!(truth::oxygen_saturation(&c, &id, d, 0).is_none());
                assert!(truth::breathing_rate(&c, &id, d, 0).is_none());
                assert!(truth::skin_temperature(&c, &id, d, 0).is_none());
                assert!(truth::legacy::skin_temperature(&c, &id, d, 0).is_none());
                // The daily values are those of a sedentary day without a heart rate.
                let activity = truth::activity_day(&c, &id, d, 0).unwrap();
                assert_eq!(activity.steps, 0);
                assert_eq!(activity.lightly_active_minutes, 0.0);
                assert!(activity.calories_out > 0.0, "BMR still burns");
                assert!(truth::resting_heart_rate(&c, &id, d, 0).is_none());
                assert!(truth::active_zone_minutes(&c, &id, d, 0).is_none());
                let zones = truth::heart_rate_zones(&c, &id, d, 0);
                assert!(zones.iter().all(|z| z.minute_in_zone == 0));
                seen += 1;
            }
        }
    }
    assert!(seen > 30, "only {seen} days not worn");
}

#[test]
fn a_night_without_the_tracker_has_no_main_sleep_and_no_heart_rate() {
    let (mut without, mut with) = (0, 0);
    for seed in [42, 7, 2026] {
        let c = two_weeks(seed);
        for (_, id) in ids(&c) {
            for day in whole_days(&c, &id) {
                let d = day.date;
                let sessions = truth::sleep_sessions(&c, &id, d, 0);
                let main = sessions.iter().any(|s| s.is_main_sleep);
                assert_eq!(main, !day.night_without_device, "{id} {d}");
                if main {
                    with += 1;
                    continue;
                }
                let (start, end) = day.planned_night;
                assert!(end - start > Duration::hours(5), "{id} {d}");
                let samples = truth::heart_rate(&c, &id, start, end, 0);
                assert!(samples.is_empty(), "{id} {d}: {samples:?}");
                assert!(truth::breathing_rate(&c, &id, d, 0).is_none());
                without += 1;
            }
        }
    }
    assert!(
        without > 60 && with > 2 * without,
        "{without} without, {with} with"
    );
}

/// A session or a nap never overlaps time off the wrist: every minute of it has heart rate.
#[test]
fn every_minute_of_every_session_is_worn() {
    let mut sessions = 0;
    for seed in [42, 7] {
        let c = two_weeks(seed);
        for (_, id) in ids(&c) {
            let sync_from = roster(&c)[0].sync_from;
            for d in truth::sleep_dates(&c, &id) {
                for s in truth::sleep_sessions(&c, &id, d, 0) {
                    if s.start < sync_from {
                        continue;
                    }
                    let samples = truth::heart_rate(&c, &id, s.start, s.end, 0);
                    assert_eq!(distinct_minutes(&samples), s.minute_in_bed, "{id} {s:?}");
                    sessions += 1;
                }
            }
        }
    }
    assert!(sessions > 300, "{sessions}");
}

/// Days with 10 hours of wear in each run of 7 consecutive days of the history.
fn compliant_days_per_week(days: &[WearDay]) -> Vec<usize> {
    days.windows(7)
        .map(|week| {
            week.iter()
                .filter(|d| d.worn_minutes >= COMPLIANT_MINUTES)
                .count()
        })
        .collect()
}

#[test]
fn low_adherence_participants_are_never_compliant_and_the_others_always_are() {
    let default = SimConfig::default();
    let four_weeks = SimConfig {
        days: 28,
        ..SimConfig::default()
    };
    let mut configs = vec![four_weeks];
    for seed in [42, 7, 99, 2026] {
        configs.push(SimConfig {
            seed,
            ..default.clone()
        });
    }
    let (mut charger_low, mut charger_high, mut not_worn) = (0, 0, 0);
    for c in &configs {
        for (i, id) in ids(c) {
            let days = truth::wear_days(c, &id);
            let weeks = compliant_days_per_week(&days);
            assert!(!weeks.is_empty(), "{id}: {} days", days.len());
            let low = i % 5 == 4;
            for (k, n) in weeks.iter().enumerate() {
                let first = days[k].date;
                if low {
                    assert!(*n < COMPLIANT_DAYS, "{id} seed {}: {first}: {n}", c.seed);
                } else {
                    assert!(*n >= COMPLIANT_DAYS, "{id} seed {}: {first}: {n}", c.seed);
                }
            }
            if low {
                continue;
            }
            for day in whole_days(c, &id) {
                not_worn += usize::from(day.not_worn);
                if day.on_charger && !day.night_without_device {
                    if day.worn_minutes < COMPLIANT_MINUTES {
                        charger_low += 1;
                    } else {
                        charger_high += 1;
                    }
                }
            }
        }
    }
    // Charger days fall on both sides of 10 hours; ordinary participants miss days too.
    assert!(
        charger_low > 0 && charger_high > 0,
        "{charger_low} {charger_high}"
    );
    assert!(not_worn > 10, "{not_worn}");
}

#[test]
fn wear_truth_of_unknown_participants_is_empty() {
    let c = SimConfig::default();
    let d = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
    assert_eq!(truth::worn_minutes(&c, "sim-0011", d), 0);
    assert_eq!(truth::legacy::worn_minutes(&c, "nobody", d), 0);
    assert!(truth::wear_days(&c, "sim-0000").is_empty());
    assert_eq!(truth::latest_sync(&c, "sim-11"), None);
    let me = &roster(&c)[0];
    assert_eq!(truth::latest_sync(&c, "sim-0001"), Some(me.latest_sync));
}

fn hr_filter(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let member = "heart_rate.sample_time.physical_time";
    format!(
        "{member} >= \"{}\" AND {member} < \"{}\"",
        rfc3339(start),
        rfc3339(end)
    )
}

fn physical_minute(point: &Value) -> i64 {
    let t = point["heartRate"]["sampleTime"]["physicalTime"]
        .as_str()
        .unwrap();
    DateTime::parse_from_rfc3339(t)
        .unwrap()
        .timestamp()
        .div_euclid(60)
}

/// A participant's access tokens on both APIs (the legacy refresh token works once).
struct Tokens {
    id: String,
    google: String,
    fitbit: String,
}

impl Sim {
    async fn tokens(&self, id: &str) -> Tokens {
        Tokens {
            id: id.to_owned(),
            google: self.access(id).await,
            fitbit: self.fitbit_access(id).await,
        }
    }

    /// Minutes of local day `date` with a heart-rate sample on each API: Google's list and
    /// the legacy `1min` series.
    async fn served_worn_minutes(&self, tokens: &Tokens, date: NaiveDate) -> (i64, i64) {
        let (start, end) = bounds(&self.config, &tokens.id, date);
        let (points, _) = self
            .list_all(&tokens.google, "heart-rate", &hr_filter(start, end), 10_000)
            .await;
        let mut minutes: Vec<i64> = points.iter().map(physical_minute).collect();
        minutes.sort_unstable();
        minutes.dedup();
        let path = format!("/1/user/-/activities/heart/date/{date}/1d/1min.json");
        let r = self.fitbit(&path, &tokens.fitbit).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let legacy = r.body["activities-heart-intraday"]["dataset"]
            .as_array()
            .unwrap()
            .len();
        (minutes.len() as i64, legacy as i64)
    }

    /// What both APIs serve for a day not worn: nothing but the daily totals of a sedentary
    /// day.
    async fn assert_nothing_served(&self, tokens: &Tokens, date: NaiveDate) {
        let id = tokens.id.as_str();
        let (start, end) = bounds(&self.config, id, date);
        let next = date.succ_opt().unwrap();
        let steps = format!(
            "steps.interval.start_time >= \"{}\" AND steps.interval.start_time < \"{}\"",
            rfc3339(start),
            rfc3339(end)
        );
        let sleep = format!(
            "sleep.interval.civil_end_time >= \"{date}T00:00:00\" AND sleep.interval.civil_end_time < \"{next}T00:00:00\""
        );
        let daily = |t: &str| format!("{t}.date >= \"{date}\" AND {t}.date < \"{next}\"");
        for (data_type, filter) in [
            ("steps", steps),
            ("sleep", sleep),
            (
                "daily-resting-heart-rate",
                daily("daily_resting_heart_rate"),
            ),
            ("daily-respiratory-rate", daily("daily_respiratory_rate")),
            (
                "daily-heart-rate-variability",
                daily("daily_heart_rate_variability"),
            ),
        ] {
            let (points, _) = self.list_all(&tokens.google, data_type, &filter, 25).await;
            assert_eq!(points, Vec::<Value>::new(), "{id} {date} {data_type}");
        }
        let get = |path: String| async move {
            let r = self.fitbit(&path, &tokens.fitbit).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
            r.body
        };
        let sleep = get(format!("/1.2/user/-/sleep/date/{date}/{date}.json")).await;
        assert_eq!(sleep["sleep"], json!([]));
        let br = get(format!("/1/user/-/br/date/{date}/{date}.json")).await;
        assert_eq!(br["br"], json!([]));
        let summary = get(format!("/1/user/-/activities/date/{date}.json")).await;
        assert_eq!(summary["summary"]["steps"], 0);
        assert!(summary["summary"].get("restingHeartRate").is_none());
    }
}

#[tokio::test]
async fn both_apis_serve_the_wear_of_the_truth() {
    // sim-0003, -0006 and -0009 sample heart rate every second.
    let c = SimConfig {
        participants: 10,
        days: 14,
        fine_hr_every: 3,
        ..SimConfig::default()
    };
    let sim = start(c.clone()).await;
    // An ordinary day not worn, a low-adherence charger day (1-second heart rate) and an
    // ordinary charger day.
    let find = |wanted: &dyn Fn(usize, &WearDay) -> bool| {
        ids(&c)
            .find_map(|(i, id)| {
                let day = whole_days(&c, &id).into_iter().find(|d| wanted(i, d))?;
                Some((id, day))
            })
            .unwrap()
    };
    let not_worn = find(&|i, d| i % 5 != 4 && d.not_worn);
    let low = find(&|i, d| i == 9 && d.on_charger);
    let charger = find(&|i, d| i % 5 != 4 && d.on_charger);
    let mut tokens = std::collections::BTreeMap::new();
    for id in [&not_worn.0, &low.0, &charger.0, &"sim-0001".to_owned()] {
        if !tokens.contains_key(id) {
            tokens.insert(id.clone(), sim.tokens(id).await);
        }
    }
    for (id, day) in [&not_worn, &low, &charger] {
        let served = sim.served_worn_minutes(&tokens[id], day.date).await;
        let want = (
            day.worn_minutes,
            truth::legacy::worn_minutes(&c, id, day.date),
        );
        assert_eq!(served, want, "{id} {}", day.date);
        assert_eq!(want.0, want.1);
    }
    assert_eq!(not_worn.1.worn_minutes, 0);
    assert!(low.1.worn_minutes > 0 && low.1.worn_minutes < COMPLIANT_MINUTES);
    sim.assert_nothing_served(&tokens[&not_worn.0], not_worn.1.date)
        .await;

    // Deleting two hours of heart rate at the provider takes them out of the wear time.
    let (id, day) = &charger;
    let (start, _) = bounds(&c, id, day.date);
    let (from, to) = (start + Duration::hours(1), start + Duration::hours(3));
    sim.control(
        &format!("participants/{id}/delete-data"),
        &json!({"data_type": "heart-rate", "start": from, "end": to}),
    )
    .await;
    let mut deleted = c.clone();
    deleted.deletions = serde_json::from_value(sim.control_get("deletions").await).unwrap();
    let after = truth::worn_minutes(&deleted, id, day.date);
    let lost = distinct_minutes(&truth::heart_rate(&c, id, from, to, 0));
    assert!(
        lost > 0,
        "{id} wore the tracker in the night of {}",
        day.date
    );
    assert_eq!(after, day.worn_minutes - lost);
    assert_eq!(truth::legacy::worn_minutes(&deleted, id, day.date), after);
    let served = sim.served_worn_minutes(&tokens[id], day.date).await;
    assert_eq!(served, (after, after));

    // The latest sync is the tracker's lastSyncTime; an advance moves both and the last day's
    // wear follows.
    let id = "sim-0001";
    let (_, body) = sim
        .get("/v4/users/me/pairedDevices", &tokens[id].google, &[])
        .await;
    let served = body["pairedDevices"][0]["lastSyncTime"].as_str().unwrap();
    assert_eq!(
        Some(served.to_owned()),
        truth::latest_sync(&c, id).map(rfc3339)
    );
    let last = truth::wear_days(&c, id).last().unwrap().date;
    sim.control("advance", &json!({"minutes": 600})).await;
    let advanced = SimConfig {
        advance_minutes: 600,
        ..deleted
    };
    assert_eq!(
        truth::latest_sync(&advanced, id),
        truth::latest_sync(&c, id).map(|t| t + Duration::minutes(600))
    );
    let worn = truth::worn_minutes(&advanced, id, last);
    assert!(worn > truth::worn_minutes(&c, id, last), "{id} {last}");
    let served = sim.served_worn_minutes(&tokens[id], last).await;
    assert_eq!(served, (worn, worn));
}
