use super::*;
use crate::domain::ParticipantState;

const HRV: &str = include_str!("../../../../tests/corpus/google/ok/hrv.documented-page.json");
const SPO2: &str = include_str!("../../../../tests/corpus/google/ok/spo2.documented-page.json");
const BREATHING: &str =
    include_str!("../../../../tests/corpus/google/ok/breathing-rate.documented-page.json");
const TEMPERATURE: &str =
    include_str!("../../../../tests/corpus/google/ok/skin-temperature.nan-baseline.json");

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 8, d).unwrap()
}

fn refusal<T: std::fmt::Debug>(result: Result<Page<T>, SyncError>) -> String {
    match result {
        Err(SyncError::Permanent {
            state: ParticipantState::ProviderDataInvalid,
            reason,
        }) => reason,
        other => panic!("not refused as invalid data: {other:?}"),
    }
}

#[test]
fn heart_rate_variability_maps_both_rmssds_and_a_missing_one_is_null() {
    let page = parse_heart_rate_variability_page(HRV).unwrap();
    assert_eq!(page.next_page_token, None);
    assert_eq!(
        page.items,
        vec![
            HeartRateVariabilityDay {
                date: day(6),
                daily_rmssd: Some(34.9),
                deep_rmssd: Some(31.6),
            },
            HeartRateVariabilityDay {
                date: day(5),
                daily_rmssd: Some(41.2),
                deep_rmssd: None,
            },
        ]
    );
}

#[test]
fn oxygen_saturation_maps_average_and_bounds() {
    let page = parse_oxygen_saturation_page(SPO2).unwrap();
    assert_eq!(page.next_page_token.as_deref(), Some("next"));
    assert_eq!(
        page.items,
        vec![OxygenSaturationDay {
            date: day(6),
            average: Some(96.4),
            lower_bound: Some(92.0),
            upper_bound: Some(99.0),
        }]
    );
}

#[test]
fn breathing_rate_maps_breaths_per_minute() {
    let page = parse_breathing_rate_page(BREATHING).unwrap();
    assert_eq!(
        page.items,
        vec![BreathingRateDay {
            date: day(6),
            breathing_rate: 15.8,
        }]
    );
    let nan = BREATHING.replace("15.8", "\"NaN\"");
    assert!(parse_breathing_rate_page(&nan).unwrap().items.is_empty());
}

#[test]
fn skin_temperature_is_nightly_minus_baseline_and_a_nan_baseline_has_no_row() {
    let page = parse_skin_temperature_page(TEMPERATURE).unwrap();
    assert_eq!(
        page.items,
        vec![SkinTemperatureDay {
            date: day(6),
            nightly_relative: 33.45 - 33.75,
        }]
    );
    let nan_nightly = TEMPERATURE.replace("33.45", "\"NaN\"");
    assert!(
        parse_skin_temperature_page(&nan_nightly)
            .unwrap()
            .items
            .is_empty()
    );
    let no_baseline = TEMPERATURE.replace("\"baselineTemperatureCelsius\": 33.75,", "");
    assert!(
        parse_skin_temperature_page(&no_baseline)
            .unwrap()
            .items
            .is_empty()
    );
}

#[test]
fn nightly_pages_of_the_wrong_shape_are_refused_naming_the_problem() {
    let other_type = SPO2.replace("dailyOxygenSaturation", "dailyHeartRateVariability");
    let reason = refusal(parse_oxygen_saturation_page(&other_type));
    assert!(
        reason.contains("dataPoints[0] has no dailyOxygenSaturation"),
        "{reason}"
    );
    let infinite = TEMPERATURE.replace("33.45", "\"Infinity\"");
    let reason = refusal(parse_skin_temperature_page(&infinite));
    assert!(
        reason.contains("2026-08-06: nightlyTemperatureCelsius is inf"),
        "{reason}"
    );
    let text = BREATHING.replace("15.8", "\"fast\"");
    let reason = refusal(parse_breathing_rate_page(&text));
    assert!(reason.contains("dailyRespiratoryRate"), "{reason}");
    let no_rate = BREATHING.replace(", \"breathsPerMinute\": 15.8", "");
    let reason = refusal(parse_breathing_rate_page(&no_rate));
    assert!(reason.contains("breathsPerMinute"), "{reason}");
    let bad_date = HRV.replace("\"month\": 8, \"day\": 6", "\"month\": 2, \"day\": 30");
    let reason = refusal(parse_heart_rate_variability_page(&bad_date));
    assert!(reason.contains("not a calendar date"), "{reason}");
    let reason = refusal(parse_heart_rate_variability_page(r#"{"dataPoints":[7]}"#));
    assert!(reason.contains("documented JSON shape"), "{reason}");
}
