//! The legacy range endpoints of `docs/data-families.md`: sleep logs (v1.2), HRV, SpO2,
//! breathing rate, skin temperature and active zone minutes, over inclusive local dates.
//!
//! They serve the same generated sessions and values as the Google side
//! ([`crate::truth`]): the same session ids (`logId`), levels and minutes, with local
//! times without offset; a date without the metric is absent (a day without zone minutes
//! too); members that are zero are left out of the active-zone-minutes values.

use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use super::Caller;
use super::path::Family;
use super::wire::local_millis;
use crate::config::IntradayType;
use crate::generator::{Profile, SleepKind, SleepSession};
use crate::state::AppState;

/// The response of `family` for `dates`.
pub(super) fn build(
    state: &AppState,
    caller: &Caller,
    family: Family,
    dates: &[NaiveDate],
) -> Value {
    let profile = &state.profiles[caller.snapshot.index];
    let ctx = Ctx {
        profile,
        window: state.window(&caller.snapshot),
        caller,
    };
    match family {
        Family::Sleep => sleep(&ctx, dates),
        Family::ActiveZoneMinutes => azm(&ctx, dates),
        _ => nightly(&ctx, family, dates),
    }
}

struct Ctx<'a> {
    profile: &'a Profile,
    window: crate::generator::Window,
    caller: &'a Caller,
}

impl Ctx<'_> {
    fn version(&self, date: NaiveDate) -> u32 {
        self.caller.snapshot.restate_version(date)
    }
}

fn sleep(ctx: &Ctx<'_>, dates: &[NaiveDate]) -> Value {
    let p = ctx.profile;
    let gone = |end: i64| ctx.caller.snapshot.deleted(IntradayType::Sleep, end);
    let mut sessions: Vec<SleepSession> = dates
        .iter()
        .flat_map(|d| p.sleep_sessions(ctx.window, *d, ctx.version(*d), &gone))
        .collect();
    sessions.sort_by_key(|s| std::cmp::Reverse(s.start));
    let asleep: i64 = sessions.iter().map(SleepSession::minutes_asleep).sum();
    let in_bed: i64 = sessions.iter().map(SleepSession::minutes_in_bed).sum();
    json!({
        "sleep": sessions.iter().map(|s| sleep_log(p, s)).collect::<Vec<_>>(),
        "summary": {
            "totalMinutesAsleep": asleep,
            "totalSleepRecords": sessions.len(),
            "totalTimeInBed": in_bed,
        },
    })
}

/// One sleep log.
fn sleep_log(p: &Profile, s: &SleepSession) -> Value {
    let stages = s.kind == SleepKind::Stages;
    let mut summary = Map::new();
    for level in s.level_names() {
        if let Some(minutes) = s.level_minutes(level) {
            let mut item = json!({"count": s.level_count(level), "minutes": minutes});
            if stages {
                item["thirtyDayAvgMinutes"] = json!(minutes);
            }
            summary.insert((*level).to_owned(), item);
        }
    }
    let data: Vec<Value> = s
        .stages
        .iter()
        .map(|l| {
            json!({
                "dateTime": local_millis(p.wall_at(l.start)),
                "level": l.level,
                "seconds": l.secs,
            })
        })
        .collect();
    let in_bed = s.minutes_in_bed();
    json!({
        "dateOfSleep": s.date.to_string(),
        "logId": s.id,
        "isMainSleep": s.main,
        "type": if stages { "stages" } else { "classic" },
        "startTime": local_millis(p.wall_at(s.start)),
        "endTime": local_millis(p.wall_at(s.end)),
        "duration": (s.end - s.start) * 1000,
        "efficiency": (s.minutes_asleep() * 100 + in_bed / 2) / in_bed.max(1),
        "infoCode": 0,
        "logType": "auto_detected",
        "minutesToFallAsleep": 0,
        "minutesAsleep": s.minutes_asleep(),
        "minutesAwake": s.minutes_awake(),
        "minutesAfterWakeup": 0,
        "timeInBed": in_bed,
        "levels": {"summary": summary, "data": data, "shortData": []},
    })
}

fn nightly(ctx: &Ctx<'_>, family: Family, dates: &[NaiveDate]) -> Value {
    let items: Vec<Value> = dates
        .iter()
        .filter_map(|d| {
            let n = ctx.profile.nightly(ctx.window, *d, ctx.version(*d))?;
            let value = match family {
                Family::Hrv => {
                    let (daily, deep) = n.hrv?;
                    json!({"dailyRmssd": daily, "deepRmssd": deep})
                }
                Family::Spo2 => {
                    let s = n.spo2?;
                    json!({"avg": s.average, "min": s.lower, "max": s.upper})
                }
                Family::BreathingRate => json!({"breathingRate": n.breathing?}),
                _ => json!({"nightlyRelative": n.skin?.relative}),
            };
            let mut item = json!({"dateTime": d.to_string(), "value": value});
            if family == Family::SkinTemperature {
                item["logType"] = json!("dedicated_temp_sensor");
            }
            Some(item)
        })
        .collect();
    match family {
        Family::Hrv => json!({"hrv": items}),
        // A range answers with a bare array.
        Family::Spo2 => Value::Array(items),
        Family::BreathingRate => json!({"br": items}),
        _ => json!({"tempSkin": items}),
    }
}

fn azm(ctx: &Ctx<'_>, dates: &[NaiveDate]) -> Value {
    let items: Vec<Value> = dates
        .iter()
        .filter_map(|d| {
            let day = ctx
                .profile
                .day_summary(ctx.window, *d)?
                .restated(ctx.version(*d));
            let [fat, cardio, peak] = day.zone_minutes_azm()?;
            let mut value = Map::new();
            for (key, v) in [
                ("activeZoneMinutes", fat + 2 * cardio + 2 * peak),
                ("fatBurnActiveZoneMinutes", fat),
                ("cardioActiveZoneMinutes", 2 * cardio),
                ("peakActiveZoneMinutes", 2 * peak),
            ] {
                if v != 0 {
                    value.insert(key.to_owned(), json!(v));
                }
            }
            Some(json!({"dateTime": d.to_string(), "value": value}))
        })
        .collect();
    json!({"activities-active-zone-minutes": items})
}
