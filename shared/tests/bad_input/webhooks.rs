//! Provider webhook bodies and signatures: the corpus in `tests/corpus/webhooks/` (each refused
//! file must name its problem; each `ok/` file must parse), and properties: no body, header or
//! keyset panics the parsers, and a valid signature fails after any single-byte change of the
//! body.

use fitlink_shared::linkage::webhook::{NotificationError, SignatureError, fitbit, google};
use fitlink_shared::secret::Secret;
use p256::ecdsa::SigningKey;
use proptest::prelude::*;
use serde_json::Value;

use crate::corpus::{Case, cases};
use crate::{config, mutate};

/// What the refusal of each refused corpus file must say: where the problem is, and what.
const EXPECTED: &[(&str, &str)] = &[
    // google/
    ("keyset.ed25519-key.json", "key 8: type"),
    (
        "keyset.only-disabled-key.json",
        "key 7: status \"DISABLED\"",
    ),
    ("keyset.p384-sha384-key.json", "key 9: hash 4 / curve 3"),
    (
        "notification.batch-one-without-user.json",
        "[1].data.healthUserId is missing",
    ),
    (
        "notification.civil-time-as-physical.json",
        "data.intervals[0].physicalTimeInterval.startTime is not an RFC 3339 instant: \"2026-03-07T17:29:00\"",
    ),
    (
        "notification.data-type-camel-case.json",
        "data.dataType is not a kebab-case data type: \"heartRate\"",
    ),
    (
        "notification.health-user-id-number.json",
        "data.healthUserId is a number, not a string",
    ),
    (
        "notification.interval-ends-before-it-starts.json",
        "data.intervals[0].physicalTimeInterval ends (2026-03-08 01:29:00 UTC) before it starts",
    ),
    (
        "notification.intervals-object-not-array.json",
        "data.intervals is an object, not an array",
    ),
    (
        "notification.only-civil-interval.json",
        "data.intervals[0].physicalTimeInterval is missing",
    ),
    (
        "notification.operation-lowercase.json",
        "data.operation is not UPSERT or DELETE: \"upsert\"",
    ),
    ("notification.truncated.json", "not JSON: EOF"),
    // fitbit/
    (
        "notification.batch-with-a-string.json",
        "[1] is a string, not an object",
    ),
    (
        "notification.collection-type-number.json",
        "[0].collectionType is a number, not a string",
    ),
    (
        "notification.date-month-13.json",
        "[0].date is not a yyyy-MM-dd date: \"2010-13-01\"",
    ),
    (
        "notification.date-us-format.json",
        "[0].date is not a yyyy-MM-dd date: \"03/01/2010\"",
    ),
    (
        "notification.empty-array.json",
        "the body is an empty array",
    ),
    (
        "notification.owner-id-missing.json",
        "[0].ownerId is missing",
    ),
    (
        "notification.trailing-commas.json",
        "not JSON: trailing comma",
    ),
];

/// Runs every file of a folder through its parser; refused files must give their expected text.
fn check(folder: &str, run: impl Fn(&Case) -> Result<usize, String>) {
    let (bad, ok) = cases(folder);
    for case in &bad {
        let expected = EXPECTED
            .iter()
            .find(|(name, _)| *name == case.name)
            .map(|(_, text)| *text)
            .unwrap_or_else(|| panic!("{folder}/{}: add its expected refusal", case.name));
        match run(case) {
            Ok(n) => panic!("{folder}/{}: accepted ({n})", case.name),
            Err(e) => assert!(e.contains(expected), "{folder}/{}: {e}", case.name),
        }
    }
    for case in &ok {
        match run(case) {
            Ok(n) => assert!(n > 0, "{folder}/ok/{}: nothing read", case.name),
            Err(e) => panic!("{folder}/ok/{}: refused: {e}", case.name),
        }
    }
}

#[test]
fn google_webhook_corpus() {
    check("webhooks/google", |case| match case.parser.as_str() {
        "notification" => google::parse_notifications(case.text.as_bytes())
            .map(|n| n.len())
            .map_err(|e| e.to_string()),
        "keyset" => google::PublicKeyset::from_tink_json(&case.text)
            .map(|k| k.key_ids().len())
            .map_err(|e| e.to_string()),
        other => panic!("webhooks/google/{}: no parser {other:?}", case.name),
    });
}

#[test]
fn fitbit_webhook_corpus() {
    check("webhooks/fitbit", |case| match case.parser.as_str() {
        "notification" => fitbit::parse_notifications(case.text.as_bytes())
            .map(|n| n.len())
            .map_err(|e| e.to_string()),
        other => panic!("webhooks/fitbit/{}: no parser {other:?}", case.name),
    });
}

/// The documented payload of a folder's `ok/`, as a seed for mutations.
fn seed(folder: &str, name: &str) -> Value {
    let (_, ok) = cases(folder);
    let case = ok.iter().find(|c| c.name == name).expect("seed file");
    serde_json::from_str(&case.text).unwrap()
}

/// A refusal names something: a JSON member path or the JSON error.
fn names_the_problem(error: &NotificationError) -> bool {
    match error {
        NotificationError::NotJson(text) => !text.is_empty(),
        NotificationError::WrongShape { detail } => detail.len() > 8,
    }
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn google_bodies_never_panic_and_refusals_name_the_problem(
        body in mutate::body(seed("webhooks/google", "notification.documented.json")),
    ) {
        if let Err(e) = google::parse_notifications(body.as_bytes()) {
            prop_assert!(names_the_problem(&e), "{e:?}");
        }
        let _ = google::is_verification(body.as_bytes());
    }

    #[test]
    fn fitbit_bodies_never_panic_and_refusals_name_the_problem(
        body in mutate::body(seed("webhooks/fitbit", "notification.documented.json")),
    ) {
        if let Err(e) = fitbit::parse_notifications(body.as_bytes()) {
            prop_assert!(names_the_problem(&e), "{e:?}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = google::parse_notifications(&bytes);
        let _ = fitbit::parse_notifications(&bytes);
        let _ = google::is_verification(&bytes);
    }

    #[test]
    fn keysets_never_panic(
        json in mutate::body(seed("webhooks/google", "keyset.two-keys-one-disabled.json")),
    ) {
        let _ = google::PublicKeyset::from_tink_json(&json);
    }

    #[test]
    fn a_signature_fails_after_any_single_byte_change_of_the_body(
        at in any::<prop::sample::Index>(),
        delta in 1u8..=255,
    ) {
        let body = serde_json::to_vec(&seed("webhooks/google", "notification.batched-array.json")).unwrap();
        let mut changed = body.clone();
        let i = at.index(changed.len());
        changed[i] = changed[i].wrapping_add(delta);

        let key = SigningKey::from_slice(&[3; 32]).unwrap();
        let keyset = google::PublicKeyset::from_tink_json(
            &google::PublicKeyset::tink_json_for(&[(11, *key.verifying_key())], 11),
        ).unwrap();
        let header = google::sign_notification(&key, 11, &body);
        prop_assert_eq!(keyset.verify(&header, &body), Ok(()));
        prop_assert_eq!(keyset.verify(&header, &changed), Err(SignatureError::Invalid));

        let secret = Secret::new("client-s3cret".to_owned());
        let header = fitbit::sign(secret.expose(), &body);
        prop_assert_eq!(fitbit::verify_signature(&secret, &header, &body), Ok(()));
        prop_assert_eq!(
            fitbit::verify_signature(&secret, &header, &changed),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn arbitrary_signature_headers_never_panic(header in any::<String>()) {
        let key = SigningKey::from_slice(&[3; 32]).unwrap();
        let keyset = google::PublicKeyset::from_tink_json(
            &google::PublicKeyset::tink_json_for(&[(11, *key.verifying_key())], 11),
        ).unwrap();
        let body = br#"{"data":{}}"#;
        prop_assert!(keyset.verify(&header, body).is_err());
        prop_assert!(fitbit::verify_signature(&Secret::new("s".into()), &header, body).is_err());
    }
}
