//! Queue messages and the values they are built from: `WriterCommand` (the writer decodes it),
//! `SyncJob` and `CredentialStored` (the worker decodes them), `UtcInstant`, `ParticipantId`,
//! `parse_date_or_instant`, and `TokenKeys::open` of a sealed token.
//!
//! A message is decoded with `serde_json::from_slice` (a decode error dead-letters it), so the
//! property for mutated messages is: no panic, and a message that decodes also survives the next
//! trip through a queue (serialised again, it decodes to the same thing). That is what caught
//! instants whose text could not be read back.

use chrono::{DateTime, NaiveDate, Utc};
use fitlink_shared::domain::{
    ParticipantId, ParticipantState, Provider, Slice, UtcInstant, format_instant,
    parse_date_or_instant,
};
use fitlink_shared::messages::*;
use fitlink_shared::secret::{SealedToken, Secret, TokenKeys};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use crate::config;
use crate::mutate::{hostile_value, plan_with};

/// The key the corpus's sealed tokens were sealed with.
pub const TEST_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

pub fn key() -> TokenKeys {
    TokenKeys::parse(&Secret::new(TEST_KEY.to_owned())).unwrap()
}

/// The last second with a canonical text: 9999-12-31T23:59:59Z.
const LAST_CANONICAL: i64 = 253_402_300_799;
/// The first: 0000-01-01T00:00:00Z.
const FIRST_CANONICAL: i64 = -62_167_219_200;

fn instant() -> impl Strategy<Value = UtcInstant> {
    prop_oneof![
        (1_700_000_000i64..1_900_000_000),
        (FIRST_CANONICAL..=LAST_CANONICAL),
    ]
    .prop_map(|s| UtcInstant::new(DateTime::from_timestamp(s, 0).unwrap()))
}

fn date() -> impl Strategy<Value = NaiveDate> {
    (0i32..3_652_059).prop_map(|d| NaiveDate::from_num_days_from_ce_opt(d + 1).unwrap())
}

fn participant() -> impl Strategy<Value = ParticipantId> {
    "[A-Za-z0-9._-]{1,64}".prop_map(|s| ParticipantId::new(s).unwrap())
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

fn provider() -> impl Strategy<Value = Provider> {
    prop_oneof![Just(Provider::GoogleHealth), Just(Provider::Fitbit)]
}

fn sealed() -> impl Strategy<Value = SealedToken> {
    "[A-Za-z0-9+/]{0,60}={0,2}".prop_map(SealedToken::from_stored)
}

fn state() -> impl Strategy<Value = ParticipantState> {
    prop::sample::select(ParticipantState::ALL.to_vec())
}

/// Amounts that survive JSON exactly (serde_json reads arbitrary floats to within an ULP).
fn amount() -> impl Strategy<Value = Option<f64>> {
    prop::option::of((0i64..100_000_000).prop_map(|n| n as f64 / 1000.0))
}

fn count() -> impl Strategy<Value = Option<i64>> {
    prop::option::of(any::<i64>())
}

fn activity() -> impl Strategy<Value = ActivityDay> {
    (
        date(),
        count(),
        amount(),
        count(),
        amount(),
        (amount(), amount(), amount()),
        (amount(), amount(), amount()),
    )
        .prop_map(
            |(date, steps, distance, floors, elevation, a, b)| ActivityDay {
                date,
                steps,
                distance,
                floors,
                elevation,
                calories_out: a.0,
                activity_calories: a.1,
                sedentary_minutes: a.2,
                lightly_active_minutes: b.0,
                fairly_active_minutes: b.1,
                very_active_minutes: b.2,
            },
        )
}

fn zone_day() -> impl Strategy<Value = HeartRateZoneDay> {
    (date(), any::<String>(), count(), count(), count(), amount()).prop_map(
        |(date, zone_name, min, max, minutes, calories)| HeartRateZoneDay {
            date,
            zone_name,
            min_heart_rate: min,
            max_heart_rate: max,
            minute_in_zone: minutes,
            calorie_count: calories,
        },
    )
}

fn point() -> impl Strategy<Value = IntradayPoint> {
    (instant(), any::<i32>(), any::<i64>()).prop_map(|(datetime, offset, value)| IntradayPoint {
        datetime,
        utc_offset_seconds: offset,
        value,
    })
}

fn slice_result() -> impl Strategy<Value = SliceResult> {
    (
        uuid(),
        participant(),
        provider(),
        (instant(), instant()),
        prop::collection::vec(activity(), 0..2),
        prop::collection::vec(zone_day(), 0..2),
        prop::collection::vec((date(), any::<i64>()), 0..2),
        prop::collection::vec(point(), 0..3),
        prop::collection::vec(point(), 0..3),
    )
        .prop_map(
            |(
                job_id,
                participant_id,
                provider,
                (start, end),
                activity,
                zones,
                resting,
                hr,
                steps,
            )| {
                SliceResult {
                    job_id,
                    participant_id,
                    provider,
                    slice: Slice { start, end },
                    daily: DailyFamilies {
                        activity,
                        heart_rate_zones: zones,
                        resting_heart_rate: resting
                            .into_iter()
                            .map(|(date, bpm)| RestingHeartRateDay {
                                date,
                                resting_heart_rate: bpm,
                            })
                            .collect(),
                        ..Default::default()
                    },
                    devices: None,
                    time_zone: None,
                    heart_rate: hr,
                    steps,
                }
            },
        )
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        (
            instant(),
            prop::option::of(instant()),
            prop::option::of(any::<String>()),
            any::<u32>(),
            any::<bool>(),
            prop::option::of(any::<String>()),
        )
            .prop_map(|(synced_to, latest, time_zone, slices, denied, user)| {
                Outcome::Completed {
                    synced_to,
                    latest_device_sync: latest,
                    time_zone,
                    slices,
                    intraday_denied: denied,
                    identity: user.clone().map(|health_user_id| ProviderIdentity {
                        health_user_id,
                        legacy_user_id: None,
                    }),
                    provider_user_id: user,
                }
            }),
        (instant(), any::<bool>(), any::<String>()).prop_map(|(until, rate_limited, reason)| {
            Outcome::Deferred {
                until,
                rate_limited,
                reason,
            }
        }),
        (state(), any::<String>(), prop::option::of(sealed())).prop_map(
            |(state, reason, rejected_token)| Outcome::Failed {
                state,
                reason,
                rejected_token,
            }
        ),
        any::<String>().prop_map(|reason| Outcome::DeadLettered { reason }),
    ]
}

fn trigger() -> impl Strategy<Value = SyncTrigger> {
    prop::sample::select(vec![
        SyncTrigger::Schedule,
        SyncTrigger::Manual,
        SyncTrigger::Replay,
        SyncTrigger::Import,
        SyncTrigger::CredentialRetry,
    ])
}

fn imported() -> impl Strategy<Value = ImportedParticipant> {
    (
        participant(),
        provider(),
        sealed(),
        instant(),
        prop::option::of((any::<String>(), prop::option::of(any::<String>()))),
    )
        .prop_map(|(participant_id, provider, sealed, sync_from, identity)| {
            ImportedParticipant {
                participant_id,
                provider,
                sealed_refresh_token: sealed,
                sync_from,
                identity: identity.map(|(health_user_id, legacy_user_id)| ProviderIdentity {
                    health_user_id,
                    legacy_user_id,
                }),
            }
        })
}

/// Any writer command, small.
fn writer_command() -> impl Strategy<Value = WriterCommand> {
    prop_oneof![
        (
            uuid(),
            any::<String>(),
            prop::collection::vec(imported(), 0..3)
        )
            .prop_map(|(import_id, source, participants)| {
                WriterCommand::ImportParticipants(ImportBatch {
                    import_id,
                    source,
                    participants,
                })
            }),
        (
            uuid(),
            participant(),
            trigger(),
            any::<bool>(),
            prop::option::of(instant()),
            prop::option::of(uuid()),
            instant(),
        )
            .prop_map(
                |(job_id, participant_id, trigger, force, from, replaces, at)| {
                    WriterCommand::RequestSync(SyncRequest {
                        job_id,
                        participant_id,
                        trigger,
                        force,
                        from,
                        replaces,
                        requested_at: at,
                    })
                }
            ),
        slice_result().prop_map(WriterCommand::StoreSlice),
        (
            uuid(),
            participant(),
            sealed(),
            prop::option::of(any::<String>())
        )
            .prop_map(|(job_id, participant_id, sealed, reply_to)| {
                WriterCommand::RotateCredential(CredentialRotation {
                    job_id,
                    participant_id,
                    sealed_refresh_token: sealed,
                    replaces: None,
                    reply_to,
                })
            }),
        (uuid(), participant(), outcome(), instant()).prop_map(
            |(job_id, participant_id, outcome, at)| WriterCommand::FinishJob(JobOutcome {
                job_id,
                participant_id,
                outcome,
                at,
            })
        ),
    ]
}

fn sync_job() -> impl Strategy<Value = SyncJob> {
    (
        uuid(),
        participant(),
        provider(),
        sealed(),
        instant(),
        prop::option::of(instant()),
        prop::option::of("[A-Za-z_/]{1,30}"),
        instant(),
    )
        .prop_map(
            |(job_id, participant_id, provider, sealed, from, sync_from, time_zone, granted_at)| {
                SyncJob {
                    job_id,
                    participant_id,
                    provider,
                    sealed_refresh_token: sealed,
                    from,
                    sync_from,
                    time_zone,
                    touch_only: false,
                    identity_unknown: false,
                    granted_at,
                }
            },
        )
}

/// Two JSON documents alike, numbers to within a few ULPs: serde_json (without its
/// `float_roundtrip` feature) may read a float back one ULP off.
fn alike(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            _ if x == y => true,
            (Some(x), Some(y)) => (x - y).abs() <= 4.0 * f64::EPSILON * x.abs().max(y.abs()),
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| alike(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| alike(v, w)))
        }
        _ => a == b,
    }
}

/// A message that decoded must survive the next trip through a queue.
pub fn check_next_trip<T: Serialize + DeserializeOwned>(message: &T) {
    let text = serde_json::to_string(message).unwrap();
    let again: T = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("an accepted message does not decode again: {e}: {text}"));
    let (a, b) = (
        serde_json::to_value(message).unwrap(),
        serde_json::to_value(&again).unwrap(),
    );
    assert!(alike(&a, &b), "{a} became {b}");
}

/// Decodes the mutated text like the consumer does; if it decodes, it must travel again.
fn decode_mutated<T: Serialize + DeserializeOwned>(text: &str) {
    if let Ok(message) = serde_json::from_slice::<T>(text.as_bytes()) {
        check_next_trip(&message);
    }
}

/// Instant texts as people and programs write them, right and wrong: any offset, fractions,
/// leap seconds, the edges of the four-digit years, separators other than `T`.
fn instant_text() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![0u32, 1, 1970, 2026, 9998, 9999]),
        1u32..=13,
        0u32..=32,
        0u32..=24,
        0u32..=60,
        0u32..=60,
        prop::sample::select(vec!["", ".5", ".999999999", ".1234567890123"]),
        prop::sample::select(vec![
            "Z", "z", "+00:00", "-00:00", "+23:59", "-23:59", "+14:00", "-05:00", "+24:00", "",
        ]),
        prop::sample::select(vec!["T", "t", " ", "_"]),
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, zone, sep)| {
            format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}{frac}{zone}")
        })
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn any_writer_command_round_trips(command in writer_command()) {
        let text = serde_json::to_string(&command).unwrap();
        prop_assert_eq!(serde_json::from_str::<WriterCommand>(&text).unwrap(), command);
    }

    #[test]
    fn any_sync_job_round_trips(job in sync_job()) {
        let text = serde_json::to_string(&job).unwrap();
        prop_assert_eq!(serde_json::from_str::<SyncJob>(&text).unwrap(), job);
    }

    #[test]
    fn a_mutated_writer_command_is_refused_or_travels_again(
        (command, plan) in (writer_command(), plan_with(hostile_value())),
    ) {
        decode_mutated::<WriterCommand>(&plan.apply(serde_json::to_value(command).unwrap()));
    }

    #[test]
    fn a_mutated_sync_job_or_credential_stored_is_refused_or_travels_again(
        (job, plan) in (sync_job(), plan_with(hostile_value())),
        (job_id, participant_id) in (uuid(), participant()),
    ) {
        decode_mutated::<SyncJob>(&plan.apply(serde_json::to_value(job).unwrap()));
        let stored = CredentialStored { job_id, participant_id };
        decode_mutated::<CredentialStored>(&plan.apply(serde_json::to_value(stored).unwrap()));
    }

    #[test]
    fn arbitrary_bytes_are_no_message(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = serde_json::from_slice::<WriterCommand>(&bytes);
        let _ = serde_json::from_slice::<SyncJob>(&bytes);
        let _ = serde_json::from_slice::<CredentialStored>(&bytes);
    }

    /// Every instant with a canonical text reads back from it, and text order is time order.
    #[test]
    fn instant_texts_round_trip_and_sort_as_time(a in instant(), b in instant()) {
        prop_assert_eq!(UtcInstant::parse(&a.to_text()), Ok(a));
        prop_assert_eq!(a.to_text().len(), 20);
        prop_assert_eq!(a.cmp(&b), a.to_text().cmp(&b.to_text()));
    }

    /// Whatever is accepted as an instant or a `sync_from` has a canonical text that reads back
    /// as the same instant (this found `9999-12-31T23:59:59-23:59` and `+12345-01-01`).
    #[test]
    fn accepted_instant_texts_have_a_canonical_text(
        text in prop_oneof![instant_text(), any::<String>(), "[+-]?[0-9]{4,6}-[0-9]{2}-[0-9]{2}"],
    ) {
        if let Ok(at) = UtcInstant::parse(&text) {
            prop_assert_eq!(UtcInstant::parse(&at.to_text()), Ok(at));
        }
        if let Ok(at) = parse_date_or_instant(&text) {
            let canonical = format_instant(at);
            prop_assert_eq!(
                parse_date_or_instant(&canonical).map(UtcInstant::new),
                Ok(UtcInstant::new(at)),
                "{}",
                canonical
            );
        }
    }

    #[test]
    fn participant_ids_are_exactly_the_safe_alphabet(text in prop_oneof![any::<String>(), "[A-Za-z0-9._ -]{0,70}"]) {
        let safe = !text.is_empty()
            && text.len() <= 64
            && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        match ParticipantId::new(text.clone()) {
            Ok(id) => {
                prop_assert!(safe);
                let json = serde_json::to_string(&id).unwrap();
                prop_assert_eq!(serde_json::from_str::<ParticipantId>(&json).unwrap(), id);
            }
            Err(e) => {
                prop_assert!(!safe);
                prop_assert!(e.value.chars().count() <= 80);
            }
        }
        let json = serde_json::to_string(&text).unwrap();
        prop_assert_eq!(serde_json::from_str::<ParticipantId>(&json).is_ok(), safe);
    }

    /// A sealed token opens only as sealed: any other text is malformed or does not open.
    #[test]
    fn only_a_sealed_token_opens(
        participant in participant(),
        token in any::<String>(),
        tamper in any::<(usize, char)>(),
        junk in prop_oneof![any::<String>(), "[A-Za-z0-9+/=]{0,120}"],
    ) {
        let key = key();
        let sealed = key.seal(&participant, &Secret::new(token.clone()));
        let opened = key.open(&participant, &sealed).unwrap();
        prop_assert_eq!(opened.expose(), &token);

        let mut chars: Vec<char> = sealed.as_str().chars().collect();
        let at = tamper.0 % chars.len();
        if chars[at] != tamper.1 {
            chars[at] = tamper.1;
            let tampered = SealedToken::from_stored(chars.into_iter().collect());
            prop_assert!(key.open(&participant, &tampered).is_err());
        }
        match key.open(&participant, &SealedToken::from_stored(junk)) {
            Err(e) => prop_assert_eq!(e.participant(), Some(participant.as_str())),
            Ok(_) => prop_assert!(false, "junk opened"),
        }
    }
}

/// Nesting far beyond serde_json's recursion limit, where a message has a typed field and where
/// it has none (an unknown field is skipped without recursion): refused or accepted, never a
/// stack overflow, which would abort the consumer on every redelivery.
#[test]
fn deep_nesting_never_overflows_the_stack() {
    let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
    for field in ["time_zone", "added_later"] {
        let text = format!(
            r#"{{"job_id":"0193a5a4-7c1e-7f00-8000-000000000001","participant_id":"P-0001","provider":"fitbit","sealed_refresh_token":"x","from":"2026-11-01T00:00:00Z","granted_at":"2026-11-01T12:00:00Z","{field}":{deep}}}"#
        );
        let _ = serde_json::from_str::<SyncJob>(&text);
        let _ = serde_json::from_str::<WriterCommand>(&text);
    }
    assert!(serde_json::from_str::<Value>(&deep).is_err());
}

#[test]
fn a_message_holding_a_float_travels_within_an_ulp() {
    let day: Value = serde_json::json!({"date": "2026-11-01", "distance": 0.1 + 0.2});
    let parsed: ActivityDay = serde_json::from_value(day).unwrap();
    check_next_trip(&parsed);
    let at: DateTime<Utc> = DateTime::from_timestamp(LAST_CANONICAL, 0).unwrap();
    assert_eq!(UtcInstant::new(at).to_text(), "9999-12-31T23:59:59Z");
}
