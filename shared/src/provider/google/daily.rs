//! `daily_families`: every daily family for a range of local days, in windows of at most
//! [`WINDOW_DAYS`].
//!
//! A window's requests are independent (the roll-ups, one `list` per listed family), so they
//! are sent at once: the provider's latency is paid once per window, not once per request,
//! while the participant's request budget still paces them.
//!
//! Each family has its own scope at Google (sleep is `sleep.readonly`, the nightly metrics
//! `health_metrics_and_measurements.readonly`, ...), and a participant may grant some and
//! not others. A 403 on a family's request therefore refuses that family only: it is
//! recorded in the [`Session`] (and never requested again in it), its rows are left out and
//! reported in [`DailyFamilies::not_permitted`], and every other family goes on.

use std::collections::BTreeMap;
use std::future::Future;
use std::ops::Range;

use chrono::{NaiveDate, TimeDelta};
use reqwest::Method;

use super::parse::*;
use super::wire::Date;
use super::{GoogleHealthClient, PAGE_SIZE, ROLL_UP_TYPES};
use crate::domain::ParticipantState;
use crate::errors::SyncError;
use crate::families::{DailyFamilies, Dated, Family};
use crate::provider::Session;

/// The longest window every request of a window accepts: the `dailyRollUp` of
/// total-calories, active-minutes and calories-in-heart-rate-zone is capped at 14 days (the
/// other roll-ups at 90; `list` has no documented cap).
const WINDOW_DAYS: i64 = 14;

/// `list sleep` pages hold at most 25 sessions (a larger `pageSize` is cut to 25).
const SLEEP_PAGE_SIZE: &str = "25";

/// The family whose rows a roll-up feeds: its refusal refuses that family.
fn roll_up_family(data_type: &str) -> Family {
    match data_type {
        "time-in-heart-rate-zone" | "calories-in-heart-rate-zone" => Family::HeartRateZones,
        "active-zone-minutes" => Family::ActiveZoneMinutes,
        _ => Family::Activity,
    }
}

/// Sends one of `family`'s requests unless the provider already refused the family in this
/// session. A refusal (403, classified `ScopeMissing`) is recorded for the family and reads as
/// `None`; any other failure fails the call.
async fn unless_refused<T>(
    session: &Session,
    family: Family,
    request: impl Future<Output = Result<T, SyncError>>,
) -> Result<Option<T>, SyncError> {
    if session.family_denied(family) {
        return Ok(None);
    }
    match request.await {
        Ok(value) => Ok(Some(value)),
        Err(SyncError::Permanent {
            state: ParticipantState::ScopeMissing,
            reason,
        }) => {
            session.deny_family(family, reason);
            Ok(None)
        }
        Err(other) => Err(other),
    }
}

/// `{member}.date >= "start" AND {member}.date < "end"`, the filter of a daily type (its
/// member is the type id in snake case).
fn date_filter(data_type: &str, days: &Range<NaiveDate>) -> String {
    let member = data_type.replace('-', "_");
    format!(
        "{member}.date >= \"{}\" AND {member}.date < \"{}\"",
        days.start, days.end
    )
}

/// Sessions that end on the window's days (a session belongs to the day it ends on, and
/// sleep filters only on its end).
fn sleep_filter(days: &Range<NaiveDate>) -> String {
    format!(
        "sleep.interval.civil_end_time >= \"{}T00:00:00\" AND sleep.interval.civil_end_time < \"{}T00:00:00\"",
        days.start, days.end
    )
}

/// One row per key (the last one read wins, should pages overlap), in key order.
fn keyed<K: Ord, T>(rows: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let by_key: BTreeMap<K, T> = rows.into_iter().map(|row| (key(&row), row)).collect();
    by_key.into_values().collect()
}

/// Rows of the listed families, gathered over the windows.
#[derive(Default)]
struct Listed {
    sleep: Vec<crate::families::SleepSession>,
    heart_rate_variability: Vec<crate::families::HeartRateVariabilityDay>,
    oxygen_saturation: Vec<crate::families::OxygenSaturationDay>,
    breathing_rate: Vec<crate::families::BreathingRateDay>,
    skin_temperature: Vec<crate::families::SkinTemperatureDay>,
}

/// Empties a refused family's rows: whatever was read before the refusal is not the whole
/// truth of any day.
fn leave_out(out: &mut DailyFamilies, family: Family) {
    match family {
        Family::Activity => out.activity.clear(),
        Family::HeartRateZones => out.heart_rate_zones.clear(),
        Family::RestingHeartRate => out.resting_heart_rate.clear(),
        Family::Sleep => out.sleep.clear(),
        Family::HeartRateVariability => out.heart_rate_variability.clear(),
        Family::OxygenSaturation => out.oxygen_saturation.clear(),
        Family::BreathingRate => out.breathing_rate.clear(),
        Family::SkinTemperature => out.skin_temperature.clear(),
        Family::ActiveZoneMinutes => out.active_zone_minutes.clear(),
        Family::HeartRateIntraday | Family::StepsIntraday | Family::Devices => {}
    }
}

impl GoogleHealthClient {
    pub(super) async fn read_daily_families(
        &self,
        session: &Session,
        days: Range<NaiveDate>,
    ) -> Result<DailyFamilies, SyncError> {
        let mut merge = SummaryMerge::default();
        let mut listed = Listed::default();
        let mut start = days.start;
        while start < days.end {
            let end = (start + TimeDelta::days(WINDOW_DAYS)).min(days.end);
            self.window(session, start..end, &mut merge, &mut listed)
                .await?;
            start = end;
        }
        let mut out = merge.finish();
        out.sleep = keyed(listed.sleep, |s| s.session_id.clone());
        out.sleep.sort_by_key(|s| (s.sleep_date, s.start));
        out.heart_rate_variability = keyed(listed.heart_rate_variability, Dated::date);
        out.oxygen_saturation = keyed(listed.oxygen_saturation, Dated::date);
        out.breathing_rate = keyed(listed.breathing_rate, Dated::date);
        out.skin_temperature = keyed(listed.skin_temperature, Dated::date);
        out.not_permitted = session.denied_families();
        for family in out.not_permitted.keys().copied().collect::<Vec<_>>() {
            leave_out(&mut out, family);
        }
        Ok(out)
    }

    /// Every request of one window at once.
    async fn window(
        &self,
        session: &Session,
        days: Range<NaiveDate>,
        merge: &mut SummaryMerge,
        listed: &mut Listed,
    ) -> Result<(), SyncError> {
        use Family::*;
        let (roll_ups, zones, resting, sleep, hrv, spo2, breathing, temperature) = tokio::try_join!(
            self.roll_ups(session, &days),
            self.daily_list(
                session,
                HeartRateZones,
                "daily-heart-rate-zones",
                &days,
                parse_heart_rate_zones_page
            ),
            self.daily_list(
                session,
                RestingHeartRate,
                "daily-resting-heart-rate",
                &days,
                parse_resting_heart_rate_page
            ),
            self.family_list(
                session,
                Sleep,
                "sleep",
                sleep_filter(&days),
                SLEEP_PAGE_SIZE,
                parse_sleep_page
            ),
            self.daily_list(
                session,
                HeartRateVariability,
                "daily-heart-rate-variability",
                &days,
                parse_heart_rate_variability_page
            ),
            self.daily_list(
                session,
                OxygenSaturation,
                "daily-oxygen-saturation",
                &days,
                parse_oxygen_saturation_page
            ),
            self.daily_list(
                session,
                BreathingRate,
                "daily-respiratory-rate",
                &days,
                parse_breathing_rate_page
            ),
            self.daily_list(
                session,
                SkinTemperature,
                "daily-sleep-temperature-derivations",
                &days,
                parse_skin_temperature_page
            ),
        )?;
        for (data_type, body) in roll_ups {
            merge.add_daily_roll_up(data_type, &body)?;
        }
        merge.add_zone_thresholds(zones);
        merge.add_resting_heart_rates(resting);
        listed.sleep.extend(sleep);
        listed.heart_rate_variability.extend(hrv);
        listed.oxygen_saturation.extend(spo2);
        listed.breathing_rate.extend(breathing);
        listed.skin_temperature.extend(temperature);
        Ok(())
    }

    /// Every page of one family's `list` (nothing when the family is refused).
    async fn family_list<T>(
        &self,
        session: &Session,
        family: Family,
        data_type: &str,
        filter: String,
        page_size: &str,
        parse: fn(&str) -> Result<Page<T>, SyncError>,
    ) -> Result<Vec<T>, SyncError> {
        let request = self.list_all(session, data_type, &filter, page_size, parse);
        Ok(unless_refused(session, family, request)
            .await?
            .unwrap_or_default())
    }

    /// [`family_list`](Self::family_list) of a daily type over `days`, largest pages.
    async fn daily_list<T>(
        &self,
        session: &Session,
        family: Family,
        data_type: &str,
        days: &Range<NaiveDate>,
        parse: fn(&str) -> Result<Page<T>, SyncError>,
    ) -> Result<Vec<T>, SyncError> {
        let filter = date_filter(data_type, days);
        self.family_list(session, family, data_type, filter, PAGE_SIZE, parse)
            .await
    }

    /// The `dailyRollUp` of every type in [`ROLL_UP_TYPES`] over `days`, at once; the bodies
    /// of the types whose family the provider did not refuse.
    async fn roll_ups(
        &self,
        session: &Session,
        days: &Range<NaiveDate>,
    ) -> Result<Vec<(&'static str, String)>, SyncError> {
        let request = serde_json::json!({
            "range": {
                "start": {"date": Date::from_naive(days.start)},
                "end": {"date": Date::from_naive(days.end)},
            },
            "windowSizeDays": 1,
        });
        let bodies = futures_util::future::try_join_all(ROLL_UP_TYPES.iter().map(|&data_type| {
            let request = &request;
            async move {
                let what = format!("dailyRollUp {data_type}");
                let path = format!("dataTypes/{data_type}/dataPoints:dailyRollUp");
                let roll_up = self.fetch(session, &what, Method::POST, &path, &[], Some(request));
                let body = unless_refused(session, roll_up_family(data_type), roll_up).await?;
                Ok::<_, SyncError>(body.map(|body| (data_type, body)))
            }
        }))
        .await?;
        Ok(bodies.into_iter().flatten().collect())
    }
}
