//! One participant-day of every daily family, as the writer bench mixes them into its slices:
//! the rows a real sync of that day brings besides intraday points (activity, four heart-rate
//! zones, resting heart rate, a stages main sleep with its levels, HRV, SpO2, breathing rate,
//! skin temperature, active zone minutes and a device snapshot).

use chrono::{NaiveDate, NaiveTime, TimeDelta};
use fitlink_shared::domain::UtcInstant;
use fitlink_shared::families::{
    ActiveZoneMinutesDay, ActivityDay, BreathingRateDay, DailyFamilies, DeviceSnapshot,
    HeartRateVariabilityDay, HeartRateZoneDay, OxygenSaturationDay, PairedDevice,
    RestingHeartRateDay, SkinTemperatureDay, SleepLevel, SleepSession,
};

/// Levels of the bench's night: 8 hours in 20-minute stages.
const LEVELS: i64 = 24;

/// Every daily family of `date`, complete for that day.
pub fn day(date: NaiveDate, seed: i64) -> (DailyFamilies, DeviceSnapshot) {
    let night_start = UtcInstant::new(
        (date - TimeDelta::days(1))
            .and_time(NaiveTime::from_hms_opt(23, 0, 0).expect("a time"))
            .and_utc(),
    );
    let stage = ["light", "deep", "light", "rem", "wake"];
    let levels: Vec<SleepLevel> = (0..LEVELS)
        .map(|i| SleepLevel {
            level: stage[((i + seed) % 5) as usize].to_owned(),
            start: UtcInstant::new(night_start.get() + TimeDelta::minutes(20 * i)),
            utc_offset_seconds: -18_000,
            duration_seconds: 1200,
        })
        .collect();
    let minutes = |name: &str| Some(20 * levels.iter().filter(|l| l.level == name).count() as i64);
    let sleep = SleepSession {
        session_id: format!("{}{:05}", date.format("%Y%m%d"), seed),
        sleep_date: date,
        is_main_sleep: true,
        start: night_start,
        start_utc_offset_seconds: -18_000,
        end: UtcInstant::new(night_start.get() + TimeDelta::minutes(20 * LEVELS)),
        end_utc_offset_seconds: -18_000,
        minute_in_bed: Some(20 * LEVELS),
        minute_asleep: Some(20 * LEVELS - minutes("wake").unwrap_or(0)),
        minute_after_wakeup: Some(0),
        minute_awake: minutes("wake"),
        minute_restless: None,
        minute_deep: minutes("deep"),
        minute_light: minutes("light"),
        minute_rem: minutes("rem"),
        minute_wake: minutes("wake"),
        levels,
    };
    let v = seed as f64;
    let daily = DailyFamilies {
        activity: vec![ActivityDay {
            date,
            steps: Some(8000 + seed),
            distance: Some(6.1),
            floors: Some(10),
            elevation: Some(30.0),
            calories_out: Some(2100.5),
            activity_calories: Some(800.0),
            sedentary_minutes: Some(700.0),
            lightly_active_minutes: Some(200.0),
            fairly_active_minutes: Some(30.0),
            very_active_minutes: Some(20.0),
        }],
        heart_rate_zones: ["Out of Range", "Fat Burn", "Cardio", "Peak"]
            .iter()
            .enumerate()
            .map(|(i, zone)| HeartRateZoneDay {
                date,
                zone_name: (*zone).to_owned(),
                min_heart_rate: Some(30 + 40 * i as i64),
                max_heart_rate: Some(69 + 40 * i as i64),
                minute_in_zone: Some(100 - 20 * i as i64),
                calorie_count: Some(300.25),
            })
            .collect(),
        resting_heart_rate: vec![RestingHeartRateDay {
            date,
            resting_heart_rate: 60,
        }],
        sleep: vec![sleep],
        heart_rate_variability: vec![HeartRateVariabilityDay {
            date,
            daily_rmssd: Some(30.0 + v),
            deep_rmssd: Some(28.0),
        }],
        oxygen_saturation: vec![OxygenSaturationDay {
            date,
            average: Some(96.0),
            lower_bound: Some(93.0),
            upper_bound: Some(99.0),
        }],
        breathing_rate: vec![BreathingRateDay {
            date,
            breathing_rate: 15.0,
        }],
        skin_temperature: vec![SkinTemperatureDay {
            date,
            nightly_relative: -0.2,
        }],
        active_zone_minutes: vec![ActiveZoneMinutesDay {
            date,
            fat_burn: 20,
            cardio: 10,
            peak: 0,
            total: 30,
        }],
        complete_days: Some(date..date + TimeDelta::days(1)),
        not_permitted: Default::default(),
    };
    let devices = DeviceSnapshot {
        date,
        devices: vec![PairedDevice {
            device_id: format!("bench-device-{seed}"),
            battery: Some("High".into()),
            battery_level: Some(90),
            device_version: Some("Charge 6".into()),
            device_type: Some("TRACKER".into()),
            last_sync_time: Some(UtcInstant::new(
                date.and_time(NaiveTime::from_hms_opt(12, 0, 0).expect("a time"))
                    .and_utc(),
            )),
        }],
    };
    (daily, devices)
}
