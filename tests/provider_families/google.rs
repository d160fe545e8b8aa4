//! The Google Health client against the simulator: see `main.rs`.
//!
//! Every family `daily_families` reads over a participant's whole history must equal
//! `fitlink_simulator::truth`, day by day; the cases the simulator plants (nights across the
//! DST end, naps, `"NaN"` baselines, trackers without a temperature sensor, a dead battery,
//! restatements, a refused sleep scope) are checked to be among them.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Range;

use chrono::{NaiveDate, TimeDelta};
use fitlink_shared::config::GoogleArgs;
use fitlink_shared::families::{
    ActiveZoneMinutesDay, BreathingRateDay, DailyFamilies, Dated, Family, HeartRateVariabilityDay,
    OxygenSaturationDay, SkinTemperatureDay, SleepLevel, SleepSession,
};
use fitlink_shared::provider::google::{GoogleHealthClient, ROLL_UP_TYPES};
use fitlink_shared::provider::{HealthProvider, Session};
use fitlink_shared::secret::Secret;
use fitlink_simulator::{SimConfig, truth};
use serde_json::json;

use crate::sim::Sim;

const FLAGS: [&str; 4] = ["--participants", "13", "--days", "14"];

fn client(sim: &Sim) -> GoogleHealthClient {
    GoogleHealthClient::new(&GoogleArgs::on_one_host(
        &sim.base_url,
        "sim-client",
        "sim-secret",
    ))
}

/// A session for `id` with a freshly refreshed access token (scopes as granted now).
async fn session(sim: &Sim, google: &GoogleHealthClient, id: &str) -> Session {
    let refresh_token = Secret::new(sim.participant(id).refresh_token.clone());
    let grant = google
        .refresh(&refresh_token)
        .await
        .unwrap_or_else(|e| panic!("{id}: refresh: {e:?}"));
    Session::new(grant.access_token, google.request_budget())
}

/// The participant's whole history in local days: the day of `sync_from` to the day of the
/// latest sync, inclusive.
fn history(sim: &Sim, id: &str) -> Range<NaiveDate> {
    let p = sim.participant(id);
    let day = |at: chrono::DateTime<chrono::Utc>| at.with_timezone(&p.time_zone).date_naive();
    day(p.sync_from)..day(p.latest_sync) + TimeDelta::days(1)
}

async fn read(sim: &Sim, id: &str) -> DailyFamilies {
    let google = client(sim);
    let session = session(sim, &google, id).await;
    google
        .daily_families(&session, history(sim, id))
        .await
        .unwrap_or_else(|e| panic!("{id}: daily_families: {e:?}"))
}

/// The truth of the families this client reads, as the shared row types, at the given
/// restatement versions.
fn expected(config: &SimConfig, id: &str, restated: &BTreeMap<NaiveDate, u32>) -> DailyFamilies {
    let mut out = DailyFamilies::default();
    for date in truth::sleep_dates(config, id) {
        let v = restated.get(&date).copied().unwrap_or(0);
        out.sleep.extend(
            truth::sleep_sessions(config, id, date, v)
                .into_iter()
                .map(session_row),
        );
        out.heart_rate_variability
            .extend(truth::heart_rate_variability(config, id, date, v).map(|h| {
                HeartRateVariabilityDay {
                    date,
                    daily_rmssd: Some(h.daily_rmssd),
                    deep_rmssd: Some(h.deep_rmssd),
                }
            }));
        out.oxygen_saturation
            .extend(
                truth::oxygen_saturation(config, id, date, v).map(|s| OxygenSaturationDay {
                    date,
                    average: Some(s.average),
                    lower_bound: Some(s.lower_bound),
                    upper_bound: Some(s.upper_bound),
                }),
            );
        out.breathing_rate
            .extend(
                truth::breathing_rate(config, id, date, v).map(|breathing_rate| BreathingRateDay {
                    date,
                    breathing_rate,
                }),
            );
        out.skin_temperature
            .extend(
                truth::skin_temperature(config, id, date, v).map(|nightly_relative| {
                    SkinTemperatureDay {
                        date,
                        nightly_relative,
                    }
                }),
            );
        out.active_zone_minutes
            .extend(truth::active_zone_minutes(config, id, date, v).map(|z| {
                ActiveZoneMinutesDay {
                    date,
                    fat_burn: z.fat_burn,
                    cardio: z.cardio,
                    peak: z.peak,
                    total: z.total,
                }
            }));
    }
    out
}

fn session_row(s: truth::SleepSession) -> SleepSession {
    SleepSession {
        session_id: s.session_id,
        sleep_date: s.sleep_date,
        is_main_sleep: s.is_main_sleep,
        start: s.start.into(),
        start_utc_offset_seconds: s.start_utc_offset_seconds,
        end: s.end.into(),
        end_utc_offset_seconds: s.end_utc_offset_seconds,
        minute_in_bed: Some(s.minute_in_bed),
        minute_asleep: Some(s.minute_asleep),
        minute_after_wakeup: Some(s.minute_after_wakeup),
        minute_awake: Some(s.minute_awake),
        minute_restless: s.minute_restless,
        minute_deep: s.minute_deep,
        minute_light: s.minute_light,
        minute_rem: s.minute_rem,
        minute_wake: s.minute_wake,
        levels: s
            .levels
            .into_iter()
            .map(|l| SleepLevel {
                level: l.level,
                start: l.start.into(),
                utc_offset_seconds: l.utc_offset_seconds,
                duration_seconds: l.duration_seconds,
            })
            .collect(),
    }
}

fn by_day<T: Dated>(rows: &[T]) -> BTreeMap<NaiveDate, Vec<&T>> {
    let mut days: BTreeMap<NaiveDate, Vec<&T>> = BTreeMap::new();
    for row in rows {
        days.entry(row.date()).or_default().push(row);
    }
    days
}

/// One family's rows equal, day by day; a difference names the participant, family and day.
fn same_days<T: Dated + Debug + PartialEq>(id: &str, family: &str, read: &[T], truth: &[T]) {
    let (read_days, truth_days) = (by_day(read), by_day(truth));
    for day in read_days.keys().chain(truth_days.keys()) {
        assert_eq!(
            read_days.get(day),
            truth_days.get(day),
            "{id}: {family} of {day}: read (left) differs from the simulator's truth (right)"
        );
    }
    let read_dates: Vec<NaiveDate> = read.iter().map(Dated::date).collect();
    assert!(
        read_dates.is_sorted(),
        "{id}: {family} rows are not in date order"
    );
}

/// Every family but those in `refused` equals the truth; the refused ones are empty.
fn equals_truth(id: &str, read: &DailyFamilies, truth: &DailyFamilies, refused: &[Family]) {
    let empty = DailyFamilies::default();
    let t = |family| {
        if refused.contains(&family) {
            &empty
        } else {
            truth
        }
    };
    same_days(id, "sleep", &read.sleep, &t(Family::Sleep).sleep);
    let hrv = &t(Family::HeartRateVariability).heart_rate_variability;
    same_days(id, "hrv", &read.heart_rate_variability, hrv);
    let spo2 = &t(Family::OxygenSaturation).oxygen_saturation;
    same_days(id, "spo2", &read.oxygen_saturation, spo2);
    let breathing = &t(Family::BreathingRate).breathing_rate;
    same_days(id, "breathing rate", &read.breathing_rate, breathing);
    let temperature = &t(Family::SkinTemperature).skin_temperature;
    same_days(id, "skin temperature", &read.skin_temperature, temperature);
    let zone_minutes = &t(Family::ActiveZoneMinutes).active_zone_minutes;
    same_days(id, "AZM", &read.active_zone_minutes, zone_minutes);
    let sessions: Vec<(NaiveDate, _)> =
        read.sleep.iter().map(|s| (s.sleep_date, s.start)).collect();
    assert!(sessions.is_sorted(), "{id}: sessions not in order");
}

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

#[tokio::test]
async fn every_participants_families_equal_the_truth() {
    let sim = Sim::start(&FLAGS).await;
    let none = BTreeMap::new();
    let mut read_by_id = BTreeMap::new();
    for p in &sim.roster {
        let id = p.participant_id.as_str();
        let read = read(&sim, id).await;
        assert!(
            read.not_permitted.is_empty(),
            "{id}: {:?}",
            read.not_permitted
        );
        let truth = expected(&sim.config, id, &none);
        // A participant with nothing to compare would pass without proving anything.
        assert!(
            !truth.sleep.is_empty() && !truth.breathing_rate.is_empty(),
            "{id}: the truth has no nights"
        );
        equals_truth(id, &read, &truth, &[]);
        read_by_id.insert(id.to_owned(), read);
    }
    let of = |id: &str| &read_by_id[id];

    // Nights ending on the US DST end change offset between their start and end, and their
    // levels carry the offset of their own start.
    let dst_end = day("2026-11-01");
    let crossing: Vec<&SleepSession> = ["sim-0002", "sim-0009"]
        .iter()
        .flat_map(|id| &of(id).sleep)
        .filter(|s| s.sleep_date == dst_end && s.is_main_sleep)
        .collect();
    let (pdt, pst) = (-7 * 3600, -8 * 3600);
    let across = |s: &&SleepSession| {
        let offsets: Vec<i32> = s.levels.iter().map(|l| l.utc_offset_seconds).collect();
        (s.start_utc_offset_seconds, s.end_utc_offset_seconds) == (pdt, pst)
            && offsets.contains(&pdt)
            && offsets.contains(&pst)
    };
    assert!(
        crossing.iter().any(across),
        "no night ending on {dst_end} crosses the DST end: {crossing:?}"
    );
    // sim-0003 naps: CLASSIC sessions that are not the main sleep.
    let naps: Vec<&SleepSession> = of("sim-0003")
        .sleep
        .iter()
        .filter(|s| !s.is_main_sleep)
        .collect();
    assert!(!naps.is_empty(), "sim-0003 has no nap");
    assert!(
        naps.iter()
            .all(|n| n.minute_deep.is_none() && n.minute_wake.is_none())
    );
    // A tracker with a temperature sensor has nights whose baseline is "NaN": a breathing
    // rate but no temperature (whose depends on the nights the wear model leaves them).
    let nan_baseline = read_by_id.values().any(|f| {
        !f.skin_temperature.is_empty()
            && f.breathing_rate
                .iter()
                .any(|b| !f.skin_temperature.iter().any(|t| t.date == b.date))
    });
    assert!(
        nan_baseline,
        "no participant has a night with a NaN baseline"
    );
    // Inspire 3 trackers have no temperature sensor.
    for id in ["sim-0002", "sim-0004", "sim-0009", "sim-0010"] {
        assert!(of(id).skin_temperature.is_empty(), "{id}");
        assert!(!of(id).breathing_rate.is_empty(), "{id}");
    }
    // sim-0013's battery died: its history (and every family) stops days before the others.
    let dead = sim.participant("sim-0013");
    assert!(dead.latest_sync + TimeDelta::days(1) < sim.config.until);
    let last = of("sim-0013").sleep.last().map(|s| s.sleep_date);
    assert!(
        last.is_some(),
        "sim-0013 synced some nights before its battery died"
    );
    assert!(last < Some(history(&sim, "sim-0001").end - TimeDelta::days(2)));
}

#[tokio::test]
async fn a_restated_session_keeps_its_id_and_takes_the_new_values() {
    let sim = Sim::start(&FLAGS).await;
    let id = "sim-0001";
    let before = read(&sim, id).await;
    let main = before
        .sleep
        .iter()
        .find(|s| s.is_main_sleep)
        .expect("a main sleep")
        .clone();
    let restated = sim
        .control(
            &format!("participants/{id}/restate"),
            json!({"date": main.sleep_date}),
        )
        .await;
    assert_eq!(restated["version"], 1);
    let after = read(&sim, id).await;
    let versions = BTreeMap::from([(main.sleep_date, 1)]);
    equals_truth(id, &after, &expected(&sim.config, id, &versions), &[]);
    let again = after
        .sleep
        .iter()
        .find(|s| s.session_id == main.session_id)
        .expect("the restated session keeps its id");
    assert_eq!(again.end.get() - main.end.get(), TimeDelta::minutes(10));
    assert_eq!(again.minute_in_bed, main.minute_in_bed.map(|m| m + 10));
}

#[tokio::test]
async fn a_refused_sleep_scope_refuses_sleep_only() {
    let sim = Sim::start(&FLAGS).await;
    let id = "sim-0005";
    let without_sleep = [
        "activity_and_fitness.readonly",
        "health_metrics_and_measurements.readonly",
        "settings.readonly",
    ];
    sim.control(
        &format!("participants/{id}/scopes"),
        json!({ "granted": without_sleep }),
    )
    .await;
    let read = read(&sim, id).await;
    assert_eq!(
        read.not_permitted.keys().collect::<Vec<_>>(),
        [&Family::Sleep]
    );
    assert!(read.sleep.is_empty());
    let truth = expected(&sim.config, id, &BTreeMap::new());
    assert!(!truth.sleep.is_empty(), "{id} has sleep to refuse");
    equals_truth(id, &read, &truth, &[Family::Sleep]);
    assert!(!read.activity.is_empty() && !read.heart_rate_zones.is_empty());
    assert!(!read.resting_heart_rate.is_empty() && !read.breathing_rate.is_empty());

    // Once refused in a session, sleep is not asked for again; the refusal is still reported.
    let google = client(&sim);
    let session = session(&sim, &google, id).await;
    google
        .daily_families(&session, history(&sim, id))
        .await
        .unwrap();
    let before = sim.stats().await;
    let again = google
        .daily_families(&session, history(&sim, id))
        .await
        .unwrap();
    let sent = requests_between(&before, &sim.stats().await);
    assert_eq!(sent.get("list/sleep"), None, "{sent:?}");
    assert!(again.not_permitted.contains_key(&Family::Sleep));
    assert_eq!(
        sent.get("list/daily-respiratory-rate"),
        Some(&2),
        "two windows"
    );
}

/// The per-endpoint counts of one participant's requests between two `/_sim/stats`.
fn requests_between(
    before: &serde_json::Value,
    after: &serde_json::Value,
) -> BTreeMap<String, u64> {
    let count = |stats: &serde_json::Value, endpoint: &str| {
        stats["by_endpoint"][endpoint].as_u64().unwrap_or(0)
    };
    after["by_endpoint"]
        .as_object()
        .unwrap()
        .keys()
        .map(|e| (e.clone(), count(after, e) - count(before, e)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[tokio::test]
async fn a_week_costs_one_request_per_family() {
    let sim = Sim::start(&FLAGS).await;
    let id = "sim-0001";
    let google = client(&sim);
    let session = session(&sim, &google, id).await;
    let end = history(&sim, id).end;
    let week = end - TimeDelta::days(7)..end;
    let before = sim.stats().await;
    let read = google.daily_families(&session, week).await.unwrap();
    let sent = requests_between(&before, &sim.stats().await);
    assert!(read.sleep.len() <= 25, "one page of sessions");
    let mut minimum: BTreeMap<String, u64> = ROLL_UP_TYPES
        .iter()
        .map(|t| (format!("dailyRollUp/{t}"), 1))
        .collect();
    for listed in [
        "sleep",
        "daily-heart-rate-zones",
        "daily-resting-heart-rate",
        "daily-heart-rate-variability",
        "daily-oxygen-saturation",
        "daily-respiratory-rate",
        "daily-sleep-temperature-derivations",
    ] {
        minimum.insert(format!("list/{listed}"), 1);
    }
    assert_eq!(sent, minimum);
    let total: u64 = sent.values().sum();
    assert_eq!(total, 18, "{id}: 7 days cost {total} requests");
}
