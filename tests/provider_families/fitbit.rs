//! The legacy Fitbit client against the simulator: see `main.rs`.
//!
//! The simulator runs as the legacy fleet tests run it (no extra flags: the legacy API is on,
//! 150 requests per participant and hour); the client is built as `FleetEnv::simulated` builds
//! it. Each participant's single-use refresh token is refreshed once, its zone set on the
//! session, and its whole history read with one `daily_families` call.

use std::collections::BTreeMap;
use std::ops::Range;

use chrono::{NaiveDate, TimeDelta};
use fitlink_shared::config::FitbitArgs;
use fitlink_shared::domain::UtcInstant;
use fitlink_shared::families::{
    ActiveZoneMinutesDay, BreathingRateDay, DailyFamilies, Family, HeartRateVariabilityDay,
    OxygenSaturationDay, SkinTemperatureDay, SleepLevel, SleepSession,
};
use fitlink_shared::provider::fitbit::FitbitClient;
use fitlink_shared::provider::{HealthProvider, Session, http_client};
use fitlink_shared::secret::Secret;
use fitlink_simulator::{SimConfig, SimParticipant, truth};
use serde_json::{Value, json};

use crate::sim::Sim;

const FLAGS: [&str; 4] = ["--participants", "13", "--days", "14"];

fn client(sim: &Sim) -> FitbitClient {
    FitbitClient::new(&FitbitArgs::on_one_host(
        &sim.base_url,
        "sim-client",
        "sim-secret",
    ))
}

/// A session for `p`: its refresh token spent (it rotates), its zone set as the worker sets it.
async fn session(client: &FitbitClient, p: &SimParticipant) -> Session {
    let grant = client
        .refresh(&Secret::new(p.legacy_refresh_token.clone()))
        .await
        .unwrap_or_else(|e| panic!("{}: refresh: {e:?}", p.participant_id));
    let mut session = Session::new(grant.access_token, client.request_budget());
    session.time_zone = Some(p.time_zone);
    session
}

/// Every local day the participant can have data on, as `daily_families` takes them.
fn history(config: &SimConfig, id: &str) -> Range<NaiveDate> {
    let dates = truth::sleep_dates(config, id);
    let (first, last) = (dates[0], *dates.last().unwrap());
    first..last + TimeDelta::days(1)
}

async fn families(client: &FitbitClient, sim: &Sim, p: &SimParticipant) -> DailyFamilies {
    let session = session(client, p).await;
    client
        .daily_families(&session, history(&sim.config, &p.participant_id))
        .await
        .unwrap_or_else(|e| panic!("{}: daily_families: {e:?}", p.participant_id))
}

fn session_truth(t: &truth::SleepSession) -> SleepSession {
    SleepSession {
        session_id: t.session_id.clone(),
        sleep_date: t.sleep_date,
        is_main_sleep: t.is_main_sleep,
        start: UtcInstant::new(t.start),
        start_utc_offset_seconds: t.start_utc_offset_seconds,
        end: UtcInstant::new(t.end),
        end_utc_offset_seconds: t.end_utc_offset_seconds,
        minute_in_bed: Some(t.minute_in_bed),
        minute_asleep: Some(t.minute_asleep),
        minute_after_wakeup: Some(t.minute_after_wakeup),
        minute_awake: Some(t.minute_awake),
        minute_restless: t.minute_restless,
        minute_deep: t.minute_deep,
        minute_light: t.minute_light,
        minute_rem: t.minute_rem,
        minute_wake: t.minute_wake,
        levels: t
            .levels
            .iter()
            .map(|l| SleepLevel {
                level: l.level.clone(),
                start: UtcInstant::new(l.start),
                utc_offset_seconds: l.utc_offset_seconds,
                duration_seconds: l.duration_seconds,
            })
            .collect(),
    }
}

/// What the legacy API must give for `id` over its history (nothing restated).
fn expected(config: &SimConfig, id: &str) -> DailyFamilies {
    let mut out = DailyFamilies::default();
    for date in truth::sleep_dates(config, id) {
        out.sleep.extend(
            truth::sleep_sessions(config, id, date, 0)
                .iter()
                .map(session_truth),
        );
        if let Some(t) = truth::heart_rate_variability(config, id, date, 0) {
            out.heart_rate_variability.push(HeartRateVariabilityDay {
                date,
                daily_rmssd: Some(t.daily_rmssd),
                deep_rmssd: Some(t.deep_rmssd),
            });
        }
        if let Some(t) = truth::oxygen_saturation(config, id, date, 0) {
            out.oxygen_saturation.push(OxygenSaturationDay {
                date,
                average: Some(t.average),
                lower_bound: Some(t.lower_bound),
                upper_bound: Some(t.upper_bound),
            });
        }
        if let Some(breathing_rate) = truth::breathing_rate(config, id, date, 0) {
            out.breathing_rate.push(BreathingRateDay {
                date,
                breathing_rate,
            });
        }
        if let Some(nightly_relative) = truth::legacy::skin_temperature(config, id, date, 0) {
            out.skin_temperature.push(SkinTemperatureDay {
                date,
                nightly_relative,
            });
        }
        if let Some(t) = truth::active_zone_minutes(config, id, date, 0) {
            out.active_zone_minutes.push(ActiveZoneMinutesDay {
                date,
                fat_burn: t.fat_burn,
                cardio: t.cardio,
                peak: t.peak,
                total: t.total,
            });
        }
    }
    out
}

/// Each family's rows equal the truth's, day by day, so a failure names the participant, the
/// family and the day.
fn assert_day_by_day<T: PartialEq + std::fmt::Debug>(
    id: &str,
    family: &str,
    got: &[T],
    want: &[T],
    date: impl Fn(&T) -> NaiveDate,
) {
    fn by_day<'a, T>(
        rows: &'a [T],
        date: &impl Fn(&T) -> NaiveDate,
    ) -> BTreeMap<NaiveDate, Vec<&'a T>> {
        let mut days: BTreeMap<NaiveDate, Vec<&T>> = BTreeMap::new();
        for row in rows {
            days.entry(date(row)).or_default().push(row);
        }
        days
    }
    let (got_days, want_days) = (by_day(got, &date), by_day(want, &date));
    for day in got_days.keys().chain(want_days.keys()) {
        assert_eq!(
            got_days.get(day),
            want_days.get(day),
            "{id} {family} on {day}: client (left) vs truth (right)"
        );
    }
    assert_eq!(got, want, "{id} {family}: order");
}

fn assert_families(id: &str, got: &DailyFamilies, want: &DailyFamilies) {
    assert_day_by_day(id, "sleep", &got.sleep, &want.sleep, |s| s.sleep_date);
    assert_day_by_day(
        id,
        "heart_rate_variability",
        &got.heart_rate_variability,
        &want.heart_rate_variability,
        |r| r.date,
    );
    assert_day_by_day(
        id,
        "oxygen_saturation",
        &got.oxygen_saturation,
        &want.oxygen_saturation,
        |r| r.date,
    );
    assert_day_by_day(
        id,
        "breathing_rate",
        &got.breathing_rate,
        &want.breathing_rate,
        |r| r.date,
    );
    assert_day_by_day(
        id,
        "skin_temperature",
        &got.skin_temperature,
        &want.skin_temperature,
        |r| r.date,
    );
    assert_day_by_day(
        id,
        "active_zone_minutes",
        &got.active_zone_minutes,
        &want.active_zone_minutes,
        |r| r.date,
    );
}

#[tokio::test]
async fn every_legacy_family_equals_the_truth_for_every_participant() {
    let sim = Sim::start(&FLAGS).await;
    let client = client(&sim);
    let mut read = BTreeMap::new();
    for p in &sim.roster {
        let id = p.participant_id.as_str();
        let got = families(&client, &sim, p).await;
        let want = expected(&sim.config, id);
        assert!(
            got.not_permitted.is_empty(),
            "{id}: {:?}",
            got.not_permitted
        );
        assert_families(id, &got, &want);
        read.insert(id.to_owned(), got);
    }

    // The cases the comparison must have met, so it cannot pass by comparing nothing.
    // A classic night in New York ending on 2026-11-01, its levels through the repeated hour.
    let dst = read["sim-0008"]
        .sleep
        .iter()
        .find(|s| s.sleep_date == NaiveDate::from_ymd_opt(2026, 11, 1).unwrap())
        .expect("sim-0008 sleeps the night of the fall-back change");
    assert_eq!(
        (dst.start_utc_offset_seconds, dst.end_utc_offset_seconds),
        (-4 * 3600, -5 * 3600),
        "{dst:?}"
    );
    assert!(dst.minute_restless.is_some(), "a classic session: {dst:?}");
    // 01:00-01:59 EDT is 05:00-06:00Z, 01:00-01:59 EST is 06:00-07:00Z: levels start in both.
    let at = |hour: u32| {
        NaiveDate::from_ymd_opt(2026, 11, 1)
            .unwrap()
            .and_hms_opt(hour, 0, 0)
            .unwrap()
            .and_utc()
    };
    for (from, to) in [(at(5), at(6)), (at(6), at(7))] {
        assert!(
            dst.levels
                .iter()
                .any(|l| from <= l.start.get() && l.start.get() < to),
            "a level of sim-0008's night starts in [{from}, {to}): {dst:?}"
        );
    }
    for (family, rows) in [
        ("sleep", read.values().map(|f| f.sleep.len()).sum::<usize>()),
        (
            "hrv",
            read.values().map(|f| f.heart_rate_variability.len()).sum(),
        ),
        (
            "spo2",
            read.values().map(|f| f.oxygen_saturation.len()).sum(),
        ),
        ("br", read.values().map(|f| f.breathing_rate.len()).sum()),
        (
            "temp",
            read.values().map(|f| f.skin_temperature.len()).sum(),
        ),
        (
            "azm",
            read.values().map(|f| f.active_zone_minutes.len()).sum(),
        ),
    ] {
        assert!(rows > 13, "{family}: only {rows} rows compared");
    }
    assert!(
        read["sim-0003"].sleep.iter().any(|s| !s.is_main_sleep),
        "sim-0003 naps"
    );
    let without_sensor: Vec<&String> = read
        .iter()
        .filter(|(_, f)| f.skin_temperature.is_empty() && !f.sleep.is_empty())
        .map(|(id, _)| id)
        .collect();
    assert!(
        !without_sensor.is_empty(),
        "someone sleeps without a temperature sensor"
    );
    // The dead battery: data stops at the last sync, and so do the families.
    let last_sync = sim.participant("sim-0013").latest_sync;
    assert!(
        read["sim-0013"]
            .sleep
            .iter()
            .all(|s| s.end.get() <= last_sync),
        "sim-0013's sessions end before its last sync"
    );
}

#[tokio::test]
async fn a_participant_without_the_sleep_scope_keeps_every_other_family() {
    let sim = Sim::start(&FLAGS).await;
    let id = "sim-0004";
    let granted = [
        "activity",
        "heartrate",
        "oxygen_saturation",
        "profile",
        "respiratory_rate",
        "settings",
        "temperature",
    ];
    let answer = http_client()
        .post(format!("{}/_sim/participants/{id}/scopes", sim.base_url))
        .json(&json!({"provider": "fitbit", "granted": granted}))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{:?}", answer.text().await);
    let client = client(&sim);
    let got = families(&client, &sim, sim.participant(id)).await;
    assert_eq!(
        got.not_permitted.keys().copied().collect::<Vec<_>>(),
        [Family::Sleep]
    );
    assert!(got.not_permitted[&Family::Sleep].contains("sleep"));
    let mut want = expected(&sim.config, id);
    assert!(!want.sleep.is_empty(), "{id} has sleep to lose");
    want.sleep.clear();
    assert_families(id, &got, &want);
    assert!(!got.activity.is_empty() && !got.heart_rate_zones.is_empty());
}

/// How many requests a week of daily families costs one participant (the quota is 150 an
/// hour): two per local day for activity and heart, and one per range family.
#[tokio::test]
async fn a_week_of_daily_families_costs_twenty_requests() {
    let sim = Sim::start(&FLAGS).await;
    let client = client(&sim);
    let p = sim.participant("sim-0001");
    let session = session(&client, p).await;
    // The simulator counts a request before it answers it.
    let stats = || async {
        let stats: Value = sim.stats().await;
        let by_endpoint = stats["by_endpoint"].as_object().unwrap().clone();
        by_endpoint
            .iter()
            .filter(|(name, _)| name.starts_with("legacy/") && *name != "legacy/token")
            .map(|(_, n)| n.as_u64().unwrap())
            .sum::<u64>()
    };
    let before = stats().await;
    let last = *truth::sleep_dates(&sim.config, "sim-0001").last().unwrap();
    let week = last - TimeDelta::days(7)..last;
    let out = client.daily_families(&session, week).await.unwrap();
    assert_eq!(stats().await - before, 7 * 2 + 6);
    assert_eq!(out.activity.len(), 7);
}
