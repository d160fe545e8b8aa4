//! The daily summaries, parsed: the `dailyRollUp`s that make a day's activity, its
//! heart-rate zones and its active zone minutes, and the pages of `list
//! daily-heart-rate-zones` and `list daily-resting-heart-rate`.
//!
//! Several responses make one row (a zone's thresholds come from a list, its minutes and
//! calories from two roll-ups), so the responses of a range of days are collected in a
//! [`SummaryMerge`].

use std::collections::BTreeMap;

use chrono::NaiveDate;

use super::parse::{Page, civil_date, json, next_page};
use super::wire::*;
use crate::errors::SyncError;
use crate::families::ActiveZoneMinutesDay;
use crate::messages::{ActivityDay, HeartRateZoneDay, RestingHeartRateDay};
use crate::provider::DailyFamilies;

/// The zone name fitlink stores for a Google zone type, `None` for zones it does not store
/// (unspecified, unknown).
fn zone_name(zone: &str) -> Option<&'static str> {
    match zone {
        "LIGHT" => Some("light"),
        "MODERATE" => Some("moderate"),
        "VIGOROUS" => Some("vigorous"),
        "PEAK" => Some("peak"),
        _ => None,
    }
}

/// One page of `list daily-heart-rate-zones`: each stored zone's thresholds (minutes and
/// calories come from the roll-ups, so they are `None` here).
pub fn parse_heart_rate_zones_page(body: &str) -> Result<Page<HeartRateZoneDay>, SyncError> {
    let what = "list daily-heart-rate-zones";
    let page: ListResponse<DailyHeartRateZonesPoint> = json(what, body)?;
    let mut items = Vec::new();
    for point in page.data_points {
        let day = point.daily_heart_rate_zones;
        let date = civil_date(what, day.date)?;
        items.extend(day.heart_rate_zones.into_iter().filter_map(|zone| {
            Some(HeartRateZoneDay {
                date,
                zone_name: zone_name(&zone.heart_rate_zone_type)?.to_owned(),
                min_heart_rate: zone.min_beats_per_minute.map(|v| v.0),
                max_heart_rate: zone.max_beats_per_minute.map(|v| v.0),
                minute_in_zone: None,
                calorie_count: None,
            })
        }));
    }
    Ok(Page {
        items,
        next_page_token: next_page(page.next_page_token),
    })
}

/// One page of `list daily-resting-heart-rate`.
pub fn parse_resting_heart_rate_page(body: &str) -> Result<Page<RestingHeartRateDay>, SyncError> {
    let what = "list daily-resting-heart-rate";
    let page: ListResponse<DailyRestingHeartRatePoint> = json(what, body)?;
    let items = page
        .data_points
        .into_iter()
        .map(|p| {
            let r = p.daily_resting_heart_rate;
            Ok(RestingHeartRateDay {
                date: civil_date(what, r.date)?,
                resting_heart_rate: r.beats_per_minute.0,
            })
        })
        .collect::<Result<_, SyncError>>()?;
    Ok(Page {
        items,
        next_page_token: next_page(page.next_page_token),
    })
}

/// Fitbit's earned minutes from a day's minutes in zone: a cardio or peak minute earns 2.
fn earned_zone_minutes(
    what: &str,
    date: NaiveDate,
    zones: &ActiveZoneMinutesRollup,
) -> Result<ActiveZoneMinutesDay, SyncError> {
    let minutes = [
        zones.sum_in_fat_burn_heart_zone.0,
        zones.sum_in_cardio_heart_zone.0,
        zones.sum_in_peak_heart_zone.0,
    ];
    let earned = (minutes.iter().all(|m| (0..=24 * 60).contains(m))).then(|| {
        let [fat_burn, cardio, peak] = minutes;
        ActiveZoneMinutesDay {
            date,
            fat_burn,
            cardio: 2 * cardio,
            peak: 2 * peak,
            total: fat_burn + 2 * cardio + 2 * peak,
        }
    });
    earned.ok_or_else(|| {
        SyncError::invalid_data(format!(
            "{what}: {date} has {minutes:?} minutes in zone, not a day's worth"
        ))
    })
}

/// Collects the daily responses for a range of days (one `dailyRollUp` per type, and the pages
/// of `list daily-heart-rate-zones` and `list daily-resting-heart-rate`) into rows.
///
/// Each `add_*` checks its whole body before it changes anything, so a body that fails leaves
/// the merge as it was.
#[derive(Debug, Default)]
pub struct SummaryMerge {
    activity: BTreeMap<NaiveDate, ActivityDay>,
    zones: BTreeMap<(NaiveDate, String), HeartRateZoneDay>,
    resting: BTreeMap<NaiveDate, i64>,
    zone_minutes: BTreeMap<NaiveDate, ActiveZoneMinutesDay>,
}

impl SummaryMerge {
    /// Adds a `dailyRollUp` response for `data_type` (`steps`, `active-minutes`, ...).
    pub fn add_daily_roll_up(&mut self, data_type: &str, body: &str) -> Result<(), SyncError> {
        let what = format!("dailyRollUp {data_type}");
        let response: DailyRollUpResponse = json(&what, body)?;
        let days = response
            .rollup_data_points
            .into_iter()
            .map(|p| {
                let date = civil_date(&what, p.civil_start_time.date)?;
                let earned = p
                    .active_zone_minutes
                    .as_ref()
                    .map(|zones| earned_zone_minutes(&what, date, zones))
                    .transpose()?;
                Ok((date, p, earned))
            })
            .collect::<Result<Vec<_>, SyncError>>()?;
        for (date, point, earned) in days {
            self.add_rollup(date, point);
            if let Some(earned) = earned {
                self.zone_minutes.insert(date, earned);
            }
        }
        Ok(())
    }

    /// Adds a page of `list daily-heart-rate-zones`; returns the next page's token.
    pub fn add_heart_rate_zones_page(&mut self, body: &str) -> Result<Option<String>, SyncError> {
        let page = parse_heart_rate_zones_page(body)?;
        self.add_zone_thresholds(page.items);
        Ok(page.next_page_token)
    }

    /// Adds a page of `list daily-resting-heart-rate`; returns the next page's token.
    pub fn add_resting_heart_rate_page(&mut self, body: &str) -> Result<Option<String>, SyncError> {
        let page = parse_resting_heart_rate_page(body)?;
        self.add_resting_heart_rates(page.items);
        Ok(page.next_page_token)
    }

    /// Adds zone thresholds read by [`parse_heart_rate_zones_page`] (stored zones only).
    pub fn add_zone_thresholds(&mut self, zones: impl IntoIterator<Item = HeartRateZoneDay>) {
        for zone in zones {
            let row = self.zone(zone.date, &zone.zone_name);
            row.min_heart_rate = zone.min_heart_rate;
            row.max_heart_rate = zone.max_heart_rate;
        }
    }

    /// Adds resting heart rates read by [`parse_resting_heart_rate_page`].
    pub fn add_resting_heart_rates(&mut self, days: impl IntoIterator<Item = RestingHeartRateDay>) {
        self.resting
            .extend(days.into_iter().map(|d| (d.date, d.resting_heart_rate)));
    }

    fn day(&mut self, date: NaiveDate) -> &mut ActivityDay {
        self.activity.entry(date).or_insert_with(|| ActivityDay {
            date,
            ..Default::default()
        })
    }

    /// The row of a stored zone (`moderate`, see [`zone_name`]).
    fn zone(&mut self, date: NaiveDate, name: &str) -> &mut HeartRateZoneDay {
        self.zones
            .entry((date, name.to_owned()))
            .or_insert_with(|| HeartRateZoneDay {
                date,
                zone_name: name.to_owned(),
                min_heart_rate: None,
                max_heart_rate: None,
                minute_in_zone: None,
                calorie_count: None,
            })
    }

    fn add_rollup(&mut self, date: NaiveDate, p: DailyRollupDataPoint) {
        if let Some(v) = p.steps {
            self.day(date).steps = Some(v.count_sum.0);
        }
        if let Some(v) = p.floors {
            self.day(date).floors = Some(v.count_sum.0);
        }
        if let Some(v) = p.distance {
            self.day(date).distance = Some(v.millimeters_sum.0 as f64 / 1e6);
        }
        if let Some(v) = p.altitude {
            self.day(date).elevation = Some(v.gain_millimeters_sum.0 as f64 / 1e3);
        }
        if let Some(v) = p.total_calories {
            self.day(date).calories_out = Some(v.kcal_sum);
        }
        if let Some(v) = p.active_energy_burned {
            self.day(date).activity_calories = Some(v.kcal_sum);
        }
        if let Some(v) = p.sedentary_period {
            self.day(date).sedentary_minutes = Some(v.duration_sum.0 / 60.0);
        }
        if let Some(v) = p.active_minutes {
            let day = self.day(date);
            for level in v.active_minutes_rollup_by_activity_level {
                let minutes = Some(level.active_minutes_sum.0 as f64);
                match level.activity_level.as_str() {
                    "LIGHT" => day.lightly_active_minutes = minutes,
                    "MODERATE" => day.fairly_active_minutes = minutes,
                    "VIGOROUS" => day.very_active_minutes = minutes,
                    _ => {}
                }
            }
        }
        if let Some(v) = p.time_in_heart_rate_zone {
            for z in v.time_in_heart_rate_zones {
                if let Some(name) = zone_name(&z.heart_rate_zone) {
                    self.zone(date, name).minute_in_zone =
                        Some((z.duration.0 / 60.0).round() as i64);
                }
            }
        }
        if let Some(v) = p.calories_in_heart_rate_zone {
            for z in v.calories_in_heart_rate_zones {
                if let Some(name) = zone_name(&z.heart_rate_zone) {
                    self.zone(date, name).calorie_count = Some(z.kcal);
                }
            }
        }
    }

    pub fn finish(self) -> DailyFamilies {
        DailyFamilies {
            activity: self.activity.into_values().collect(),
            heart_rate_zones: self.zones.into_values().collect(),
            resting_heart_rate: self
                .resting
                .into_iter()
                .map(|(date, bpm)| RestingHeartRateDay {
                    date,
                    resting_heart_rate: bpm,
                })
                .collect(),
            active_zone_minutes: self.zone_minutes.into_values().collect(),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 8, d).unwrap()
    }

    #[test]
    fn zone_minutes_are_earned_minutes_and_omitted_members_are_zero() {
        let mut merge = SummaryMerge::default();
        merge
            .add_daily_roll_up(
                "active-zone-minutes",
                r#"{"rollupDataPoints":[
                {"civilStartTime":{"date":{"year":2026,"month":8,"day":6},"time":{}},
                 "civilEndTime":{"date":{"year":2026,"month":8,"day":7},"time":{}},
                 "activeZoneMinutes":{"sumInFatBurnHeartZone":"41","sumInCardioHeartZone":"5","sumInPeakHeartZone":"2"}},
                {"civilStartTime":{"date":{"year":2026,"month":8,"day":7},"time":{}},
                 "activeZoneMinutes":{"sumInCardioHeartZone":"3"}}]}"#,
            )
            .unwrap();
        let rows = merge.finish();
        assert_eq!(
            rows.active_zone_minutes,
            vec![
                ActiveZoneMinutesDay {
                    date: day(6),
                    fat_burn: 41,
                    cardio: 10,
                    peak: 4,
                    total: 55,
                },
                ActiveZoneMinutesDay {
                    date: day(7),
                    fat_burn: 0,
                    cardio: 6,
                    peak: 0,
                    total: 6,
                },
            ]
        );
        assert!(rows.activity.is_empty() && rows.heart_rate_zones.is_empty());
    }

    #[test]
    fn impossible_zone_minutes_are_refused_and_change_nothing() {
        let mut merge = SummaryMerge::default();
        for minutes in ["-1", "9223372036854775807", "1441"] {
            let body = format!(
                r#"{{"rollupDataPoints":[
                {{"civilStartTime":{{"date":{{"year":2026,"month":8,"day":6}}}},
                  "activeZoneMinutes":{{"sumInFatBurnHeartZone":"1"}}}},
                {{"civilStartTime":{{"date":{{"year":2026,"month":8,"day":7}}}},
                  "activeZoneMinutes":{{"sumInPeakHeartZone":"{minutes}"}}}}]}}"#
            );
            let error = merge
                .add_daily_roll_up("active-zone-minutes", &body)
                .unwrap_err();
            assert!(error.to_string().contains("2026-08-07"), "{error}");
        }
        assert!(merge.finish().active_zone_minutes.is_empty());
    }

    #[test]
    fn zone_thresholds_join_the_zone_minutes_of_their_day() {
        let mut merge = SummaryMerge::default();
        merge
            .add_daily_roll_up(
                "time-in-heart-rate-zone",
                r#"{"rollupDataPoints":[{"civilStartTime":{"date":{"year":2026,"month":8,"day":6}},
                "timeInHeartRateZone":{"timeInHeartRateZones":[{"heartRateZone":"PEAK","duration":"120s"}]}}]}"#,
            )
            .unwrap();
        let token = merge
            .add_heart_rate_zones_page(
                r#"{"dataPoints":[{"dailyHeartRateZones":{"date":{"year":2026,"month":8,"day":6},
                "heartRateZones":[{"heartRateZoneType":"PEAK","minBeatsPerMinute":"160","maxBeatsPerMinute":"220"},
                {"heartRateZoneType":"HEART_RATE_ZONE_TYPE_UNSPECIFIED"}]}}],"nextPageToken":""}"#,
            )
            .unwrap();
        assert_eq!(token, None);
        let zones = merge.finish().heart_rate_zones;
        assert_eq!(zones.len(), 1);
        assert_eq!(
            (zones[0].min_heart_rate, zones[0].minute_in_zone),
            (Some(160), Some(2))
        );
    }
}
