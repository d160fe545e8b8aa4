//! Google Health responses: every parse function of `provider::google::parse`, fed mutations of
//! the documented payloads in `tests/corpus/google/ok/`.

use chrono::{DateTime, Utc};
use fitlink_shared::domain::{ParticipantState, Slice, UtcInstant};
use fitlink_shared::errors::SyncError;
use fitlink_shared::provider::google::parse::*;
use proptest::prelude::*;
use reqwest::StatusCode;
use serde_json::Value;

use crate::mutate::body;
use crate::{assert_invalid_data, config, is_truncated, permanent_state};

pub const HEART_RATE: &str =
    include_str!("../../../tests/corpus/google/ok/heart-rate.documented-page.json");
pub const STEPS: &str = include_str!("../../../tests/corpus/google/ok/steps.documented-page.json");
const ROLL_UP: &str = include_str!("../../../tests/corpus/google/ok/roll-up.all-members.json");
const ZONES: &str =
    include_str!("../../../tests/corpus/google/ok/heart-rate-zones.documented-page.json");
const RESTING: &str =
    include_str!("../../../tests/corpus/google/ok/resting-heart-rate.documented-page.json");
const DEVICES: &str =
    include_str!("../../../tests/corpus/google/ok/paired-devices.documented-page.json");
const SLEEP: &str = include_str!("../../../tests/corpus/google/ok/sleep.documented-page.json");
const SLEEP_CLASSIC: &str =
    include_str!("../../../tests/corpus/google/ok/sleep.classic-nap-omitted-zeros.json");
const HRV: &str = include_str!("../../../tests/corpus/google/ok/hrv.documented-page.json");
const SPO2: &str = include_str!("../../../tests/corpus/google/ok/spo2.documented-page.json");
const BREATHING: &str =
    include_str!("../../../tests/corpus/google/ok/breathing-rate.documented-page.json");
const TEMPERATURE: &str =
    include_str!("../../../tests/corpus/google/ok/skin-temperature.nan-baseline.json");
const SETTINGS: &str = include_str!("../../../tests/corpus/google/ok/settings.documented.json");
const IDENTITY: &str = include_str!("../../../tests/corpus/google/ok/identity.documented.json");
const TOKEN: &str = include_str!("../../../tests/corpus/google/ok/token.documented.json");

/// The slice every intraday page of the corpus is for.
pub fn slice() -> Slice {
    Slice {
        start: UtcInstant::parse("2026-11-01T00:00:00Z").unwrap(),
        end: UtcInstant::parse("2026-11-02T00:00:00Z").unwrap(),
    }
}

pub fn now() -> DateTime<Utc> {
    UtcInstant::parse("2026-11-01T12:00:00Z").unwrap().get()
}

pub use fitlink_shared::provider::google::ROLL_UP_TYPES;

fn doc(text: &str) -> Value {
    serde_json::from_str(text).expect("the seed is JSON")
}

/// What an accepted intraday page must hold: points inside the slice, offsets a zone can have,
/// counts that are counts.
fn check_intraday(result: Result<Page<fitlink_shared::messages::IntradayPoint>, SyncError>) {
    match result {
        Ok(page) => {
            for p in &page.items {
                assert!(
                    slice().start <= p.datetime && p.datetime < slice().end,
                    "{p:?}"
                );
                assert!(p.utc_offset_seconds.abs() <= 18 * 3600, "{p:?}");
                assert!(p.value >= 0, "{p:?}");
            }
            assert_ne!(page.next_page_token.as_deref(), Some(""));
        }
        Err(e) => assert_invalid_data(&e),
    }
}

#[test]
fn the_seeds_are_accepted() {
    assert_eq!(
        parse_heart_rate_page(HEART_RATE, slice())
            .unwrap()
            .items
            .len(),
        3
    );
    assert_eq!(parse_steps_page(STEPS, slice()).unwrap().items.len(), 2);
    let mut merge = SummaryMerge::default();
    merge.add_daily_roll_up("steps", ROLL_UP).unwrap();
    merge.add_heart_rate_zones_page(ZONES).unwrap();
    merge.add_resting_heart_rate_page(RESTING).unwrap();
    merge
        .add_daily_roll_up("active-zone-minutes", ROLL_UP)
        .unwrap();
    let rows = merge.finish();
    assert_eq!((rows.activity.len(), rows.heart_rate_zones.len()), (2, 4));
    assert_eq!(rows.active_zone_minutes.len(), 1);
    assert_eq!(parse_sleep_page(SLEEP).unwrap().items.len(), 1);
    assert_eq!(parse_sleep_page(SLEEP_CLASSIC).unwrap().items.len(), 2);
    assert_eq!(
        parse_heart_rate_variability_page(HRV).unwrap().items.len(),
        2
    );
    assert_eq!(parse_oxygen_saturation_page(SPO2).unwrap().items.len(), 1);
    assert_eq!(parse_breathing_rate_page(BREATHING).unwrap().items.len(), 1);
    assert_eq!(
        parse_skin_temperature_page(TEMPERATURE)
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(parse_paired_devices_page(DEVICES).unwrap().items.len(), 3);
    assert!(parse_settings(SETTINGS).unwrap().is_some());
    parse_identity(IDENTITY).unwrap();
    parse_token_response(TOKEN, "1//refresh", now()).unwrap();
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn heart_rate_pages_are_points_in_the_slice_or_invalid_data(body in body(doc(HEART_RATE))) {
        check_intraday(parse_heart_rate_page(&body, slice()));
    }

    #[test]
    fn steps_pages_are_points_in_the_slice_or_invalid_data(body in body(doc(STEPS))) {
        check_intraday(parse_steps_page(&body, slice()));
    }

    /// A roll-up that fails changes nothing already merged.
    #[test]
    fn roll_ups_merge_or_are_invalid_data_and_change_nothing(
        body in body(doc(ROLL_UP)),
        data_type in prop::sample::select(&ROLL_UP_TYPES[..]),
    ) {
        let mut merge = SummaryMerge::default();
        merge.add_resting_heart_rate_page(RESTING).unwrap();
        match merge.add_daily_roll_up(data_type, &body) {
            Ok(()) => {
                merge.finish();
            }
            Err(e) => {
                assert_invalid_data(&e);
                let mut untouched = SummaryMerge::default();
                untouched.add_resting_heart_rate_page(RESTING).unwrap();
                prop_assert_eq!(merge.finish(), untouched.finish());
            }
        }
    }

    #[test]
    fn daily_list_pages_merge_or_are_invalid_data(
        zones in body(doc(ZONES)),
        resting in body(doc(RESTING)),
    ) {
        let mut merge = SummaryMerge::default();
        for result in [
            merge.add_heart_rate_zones_page(&zones),
            merge.add_resting_heart_rate_page(&resting),
        ] {
            match result {
                Ok(token) => prop_assert_ne!(token.as_deref(), Some("")),
                Err(e) => assert_invalid_data(&e),
            }
        }
        merge.finish();
    }

    /// An accepted session has instants with a canonical text, offsets a zone can have, levels
    /// in order that do not run backwards, and no negative minutes.
    #[test]
    fn sleep_pages_are_storable_sessions_or_invalid_data(
        body in prop_oneof![body(doc(SLEEP)), body(doc(SLEEP_CLASSIC))],
    ) {
        match parse_sleep_page(&body) {
            Ok(page) => {
                for s in &page.items {
                    prop_assert!(!s.session_id.is_empty());
                    prop_assert_eq!(UtcInstant::parse(&s.end.to_text()), Ok(s.end));
                    prop_assert!(s.start <= s.end);
                    let offsets = [s.start_utc_offset_seconds, s.end_utc_offset_seconds];
                    prop_assert!(offsets.iter().all(|o| o.abs() <= 18 * 3600));
                    prop_assert!(s.levels.windows(2).all(|w| w[0].start <= w[1].start));
                    prop_assert!(s.levels.iter().all(|l| l.duration_seconds >= 0));
                    let minutes = [s.minute_in_bed, s.minute_asleep, s.minute_awake, s.minute_deep,
                        s.minute_light, s.minute_rem, s.minute_wake, s.minute_restless];
                    prop_assert!(minutes.iter().flatten().all(|m| *m >= 0));
                }
                prop_assert_ne!(page.next_page_token.as_deref(), Some(""));
            }
            Err(e) => assert_invalid_data(&e),
        }
    }

    /// An accepted nightly value is a number (a `"NaN"` is no value, an infinity is refused).
    #[test]
    fn nightly_pages_are_finite_values_or_invalid_data(
        hrv in body(doc(HRV)),
        spo2 in body(doc(SPO2)),
        breathing in body(doc(BREATHING)),
        temperature in body(doc(TEMPERATURE)),
    ) {
        let finite = |values: Vec<Option<f64>>| values.into_iter().flatten().all(f64::is_finite);
        let verdicts = [
            parse_heart_rate_variability_page(&hrv)
                .map(|p| p.items.iter().all(|d| finite(vec![d.daily_rmssd, d.deep_rmssd]))),
            parse_oxygen_saturation_page(&spo2).map(|p| {
                p.items.iter().all(|d| finite(vec![d.average, d.lower_bound, d.upper_bound]))
            }),
            parse_breathing_rate_page(&breathing)
                .map(|p| p.items.iter().all(|d| d.breathing_rate.is_finite())),
            parse_skin_temperature_page(&temperature)
                .map(|p| p.items.iter().all(|d| d.nightly_relative.is_finite())),
        ];
        for verdict in verdicts {
            match verdict {
                Ok(all_finite) => prop_assert!(all_finite),
                Err(e) => assert_invalid_data(&e),
            }
        }
    }

    /// Accepted sync times have a canonical text: they travel in the job's outcome.
    #[test]
    fn paired_devices_are_sync_times_with_a_canonical_text_or_invalid_data(
        body in body(doc(DEVICES)),
    ) {
        match parse_paired_devices_page(&body) {
            Ok(page) => {
                for instant in page.items.into_iter().filter_map(|d| d.last_sync_time) {
                    prop_assert_eq!(UtcInstant::parse(&instant.to_text()), Ok(instant));
                }
            }
            Err(e) => assert_invalid_data(&e),
        }
    }

    #[test]
    fn settings_name_an_iana_zone_or_are_invalid_data(body in body(doc(SETTINGS))) {
        match parse_settings(&body) {
            Ok(zone) => prop_assert!(zone.is_none_or(|z| z.parse::<chrono_tz::Tz>().is_ok())),
            Err(e) => assert_invalid_data(&e),
        }
    }

    #[test]
    fn identities_parse_or_are_invalid_data(body in body(doc(IDENTITY))) {
        match parse_identity(&body) {
            Ok(identity) => prop_assert_ne!(identity.legacy_user_id.as_deref(), Some("")),
            Err(e) => assert_invalid_data(&e),
        }
    }

    #[test]
    fn token_responses_are_grants_missing_scopes_or_invalid_data(body in body(doc(TOKEN))) {
        match parse_token_response(&body, "1//refresh", now()) {
            Ok(grant) => {
                prop_assert_ne!(grant.rotated_refresh_token.map(|t| t.expose().clone()), Some("1//refresh".to_owned()));
            }
            Err(e) => prop_assert!(
                is_truncated(&e)
                    || matches!(
                        permanent_state(&e),
                        Some(ParticipantState::ProviderDataInvalid | ParticipantState::ScopeMissing)
                    ),
                "{e:?}"
            ),
        }
    }

    /// The status decides the class; the body only adds detail, whatever it holds.
    #[test]
    fn api_errors_are_classified_by_status_whatever_the_body(
        status in 400u16..500,
        body in body(serde_json::json!({"error": {"code": 400, "status": "FAILED_PRECONDITION",
            "message": "m", "details": [{"reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT"}]}})),
    ) {
        let status = StatusCode::from_u16(status).unwrap();
        let error = classify_api_error("list steps", status, &body);
        match status {
            StatusCode::UNAUTHORIZED => prop_assert!(error.is_transient()),
            StatusCode::FORBIDDEN => {
                prop_assert_eq!(permanent_state(&error), Some(ParticipantState::ScopeMissing));
            }
            StatusCode::BAD_REQUEST => prop_assert!(matches!(
                permanent_state(&error),
                Some(ParticipantState::NeedsReconsent | ParticipantState::ProviderDataInvalid)
            )),
            _ => assert_invalid_data(&error),
        }
    }

    #[test]
    fn oauth_errors_are_revoked_or_transient_whatever_the_body(
        status in 400u16..500,
        body in body(serde_json::json!({"error": "invalid_grant", "error_description": "Bad Request"})),
    ) {
        let error = classify_oauth_error(StatusCode::from_u16(status).unwrap(), &body);
        prop_assert!(
            error.is_transient() || permanent_state(&error) == Some(ParticipantState::Revoked),
            "{error:?}"
        );
    }
}
