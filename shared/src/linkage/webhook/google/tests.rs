use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;

use super::*;

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_slice(&[seed; 32]).unwrap()
}

fn keyset(ids: &[(u32, u8)]) -> PublicKeyset {
    let keys: Vec<(u32, VerifyingKey)> = ids
        .iter()
        .map(|(id, seed)| (*id, *signing_key(*seed).verifying_key()))
        .collect();
    PublicKeyset::from_tink_json(&PublicKeyset::tink_json_for(&keys, ids[0].0)).unwrap()
}

const BODY: &str = r#"{
  "data": {
    "version": "1",
    "clientProvidedSubscriptionName": "my-subscription-or-random-uuid",
    "healthUserId": "2515055256096816351",
    "operation": "UPSERT",
    "dataType": "steps",
    "intervals": [
      {
        "physicalTimeInterval": {"startTime": "2026-03-08T01:29:00Z", "endTime": "2026-03-08T01:34:00Z"},
        "civilDateTimeInterval": {
          "startDateTime": {"date": {"year": 2026, "month": 3, "day": 7}, "time": {"hours": 17, "minutes": 29}},
          "endDateTime":   {"date": {"year": 2026, "month": 3, "day": 7}, "time": {"hours": 17, "minutes": 34}}
        },
        "civilIso8601TimeInterval": {"startTime": "2026-03-07T17:29:00", "endTime": "2026-03-07T17:34:00"}
      }
    ]
  }
}"#;

#[test]
fn a_signature_made_like_google_verifies_against_its_keyset() {
    let set = keyset(&[(0x2a, 1), (0x1234_5678, 2)]);
    assert_eq!(set.key_ids(), [0x2a, 0x1234_5678]);
    for (id, seed) in [(0x2a, 1), (0x1234_5678, 2)] {
        let header = sign_notification(&signing_key(seed), id, BODY.as_bytes());
        assert_eq!(set.verify(&header, BODY.as_bytes()), Ok(()));
    }
    // Signed by key 2 but claiming key 0x2a's id.
    let mislabelled = sign_notification(&signing_key(2), 0x2a, BODY.as_bytes());
    assert_eq!(
        set.verify(&mislabelled, BODY.as_bytes()),
        Err(SignatureError::Invalid)
    );
    let unknown = sign_notification(&signing_key(3), 99, BODY.as_bytes());
    assert_eq!(
        set.verify(&unknown, BODY.as_bytes()),
        Err(SignatureError::UnknownKey(99))
    );
    assert_eq!(set.verify("", b"{}"), Err(SignatureError::Missing));
    assert_eq!(set.verify("@@@", b"{}"), Err(SignatureError::Malformed));
    assert_eq!(
        set.verify(&STANDARD.encode([1, 0, 0, 0, 0x2a, 9, 9]), b"{}"),
        Err(SignatureError::Malformed)
    );
}

#[test]
fn a_signature_made_by_another_ecdsa_implementation_verifies() {
    // Python `cryptography` 48, key scalar 0x01…01, random k, header = base64(0x01 ‖ 7 ‖ DER).
    let header = "AQAAAAcwRAIgcOyQ/AcBEmP0FFHPRAbMEmv8qxNWNXHoTUIIRIhUKlcCIFzuC4V5/TE86DTLpXh4kY+43q1Kx+xARfGSKXmJVALR";
    let body = br#"{"data":{"healthUserId":"1","operation":"UPSERT"}}"#;
    let set = keyset(&[(7, 1)]);
    assert_eq!(set.verify(header, body), Ok(()));
    assert_eq!(set.verify(header, b"{}"), Err(SignatureError::Invalid));
}

#[test]
fn every_documented_header_encoding_and_signature_form_is_accepted() {
    let set = keyset(&[(7, 1)]);
    let body = BODY.as_bytes();
    let signature: Signature = signing_key(1).sign(body);
    let prefixed = |sig: &[u8]| [&[1, 0, 0, 0, 7][..], sig].concat();
    let der = prefixed(signature.to_der().as_bytes());
    let p1363 = prefixed(&signature.to_bytes());
    for header in [
        STANDARD.encode(&der),
        STANDARD.encode(&der).trim_end_matches('=').to_owned(),
        URL_SAFE_NO_PAD.encode(&der),
        STANDARD.encode(&p1363),
        // No Tink prefix: every key is tried.
        STANDARD.encode(signature.to_der().as_bytes()),
        STANDARD.encode(signature.to_bytes()),
        format!("  {}\n", STANDARD.encode(&der)),
    ] {
        assert_eq!(set.verify(&header, body), Ok(()), "{header}");
    }
    // A high-S signature (the other valid S) is what some signers produce.
    let (r, s) = signature.split_scalars();
    let high = Signature::from_scalars(r, -*s).unwrap();
    assert_eq!(
        set.verify(&STANDARD.encode(prefixed(high.to_der().as_bytes())), body),
        Ok(()),
        "high S"
    );
}

/// A Tink public keyset laid out byte by byte the way Tink (Java) writes it (not by
/// [`PublicKeyset::tink_json_for`]): a version field, SHA-256 / P-256 / DER params, coordinates
/// with a leading 0x00, an unknown trailing field, and a disabled and a foreign key beside it
/// that must be skipped.
fn tink_keyset_from_elsewhere() -> String {
    let point = signing_key(1).verifying_key().to_encoded_point(false);
    let proto = [
        &[
            0x08, 0x00, 0x12, 0x06, 0x08, 0x03, 0x10, 0x02, 0x18, 0x02, 0x1a, 0x21, 0x00,
        ][..],
        point.x().unwrap(),
        &[0x22, 0x21, 0x00],
        point.y().unwrap(),
        // An unknown field (number 9, varint) after the key: skipped.
        &[0x48, 0x96, 0x01],
    ]
    .concat();
    let value = STANDARD.encode(proto);
    format!(
        r#"{{"primaryKeyId":1851049590,"key":[
  {{"keyData":{{"typeUrl":"type.googleapis.com/google.crypto.tink.EcdsaPublicKey","value":"{value}","keyMaterialType":"ASYMMETRIC_PUBLIC"}},"status":"ENABLED","keyId":1851049590,"outputPrefixType":"TINK"}},
  {{"keyData":{{"typeUrl":"type.googleapis.com/google.crypto.tink.EcdsaPublicKey","value":"{value}","keyMaterialType":"ASYMMETRIC_PUBLIC"}},"status":"DISABLED","keyId":5,"outputPrefixType":"TINK"}},
  {{"keyData":{{"typeUrl":"type.googleapis.com/google.crypto.tink.Ed25519PublicKey","value":"AAAA","keyMaterialType":"ASYMMETRIC_PUBLIC"}},"status":"ENABLED","keyId":6,"outputPrefixType":"TINK"}}
]}}"#
    )
}

#[test]
fn a_tink_keyset_reads_its_enabled_p256_keys_and_skips_the_rest() {
    let set = PublicKeyset::from_tink_json(&tink_keyset_from_elsewhere()).unwrap();
    assert_eq!(set.key_ids(), [1_851_049_590]);
    let header = sign_notification(&signing_key(1), 1_851_049_590, b"{}");
    assert_eq!(set.verify(&header, b"{}"), Ok(()));
    // The DISABLED key 5 does not verify even a good signature.
    let disabled = sign_notification(&signing_key(1), 5, b"{}");
    assert_eq!(
        set.verify(&disabled, b"{}"),
        Err(SignatureError::UnknownKey(5))
    );
}

#[test]
fn a_keyset_without_a_usable_key_is_refused_with_the_reasons() {
    let proto_with = |params: &[u8]| {
        let point = signing_key(1).verifying_key().to_encoded_point(false);
        let mut proto = vec![0x12, params.len() as u8];
        proto.extend_from_slice(params);
        proto.extend([0x1a, 32]);
        proto.extend_from_slice(point.x().unwrap());
        proto.extend([0x22, 32]);
        proto.extend_from_slice(point.y().unwrap());
        STANDARD.encode(proto)
    };
    let keyset = |value: &str| {
        format!(
            r#"{{"primaryKeyId":1,"key":[{{"keyData":{{"typeUrl":"type.googleapis.com/google.crypto.tink.EcdsaPublicKey","value":"{value}","keyMaterialType":"ASYMMETRIC_PUBLIC"}},"status":"ENABLED","keyId":1,"outputPrefixType":"TINK"}}]}}"#
        )
    };
    // Without the leading zero, with SHA-256 / P-256: usable.
    assert!(PublicKeyset::from_tink_json(&keyset(&proto_with(&[0x08, 3, 0x10, 2]))).is_ok());
    for (value, why) in [
        (proto_with(&[0x08, 4, 0x10, 2]), "hash 4"),
        (proto_with(&[0x08, 3, 0x10, 3]), "curve 3"),
        ("AAAA".to_owned(), "not an EcdsaPublicKey"),
        (STANDARD.encode([0x1a, 0xff]), "not an EcdsaPublicKey"),
        ("%%".to_owned(), "not base64"),
    ] {
        match PublicKeyset::from_tink_json(&keyset(&value)) {
            Err(KeysetError::NoUsableKey { skipped }) => {
                assert!(skipped[0].contains(why), "{skipped:?}")
            }
            other => panic!("{why}: {other:?}"),
        }
    }
    // A point not on the curve.
    let off_curve = STANDARD.encode(
        [
            &[0x12, 4, 0x08, 3, 0x10, 2, 0x1a, 32][..],
            &[1; 32],
            &[0x22, 32],
            &[2; 32],
        ]
        .concat(),
    );
    assert!(PublicKeyset::from_tink_json(&keyset(&off_curve)).is_err());
    assert!(matches!(
        PublicKeyset::from_tink_json("{\"key\": 5}"),
        Err(KeysetError::NotJson(_))
    ));
    assert!(matches!(
        PublicKeyset::from_tink_json(r#"{"key": []}"#),
        Err(KeysetError::NoUsableKey { .. })
    ));
}

#[test]
fn the_handshake_is_recognised() {
    assert!(is_verification(br#"{"type": "verification"}"#));
    assert!(!is_verification(br#"{"type": "VERIFICATION"}"#));
    assert!(!is_verification(BODY.as_bytes()));
    assert!(!is_verification(b"verification"));
}

#[test]
fn the_documented_notification_parses() {
    let parsed = parse_notifications(BODY.as_bytes()).unwrap();
    assert_eq!(parsed.len(), 1);
    let n = &parsed[0];
    assert_eq!(n.health_user_id, "2515055256096816351");
    assert_eq!(n.operation, Operation::Upsert);
    assert_eq!(n.data_type, "steps");
    assert_eq!(
        n.intervals,
        [NotifiedInterval {
            start: UtcInstant::parse("2026-03-08T01:29:00Z").unwrap(),
            end: UtcInstant::parse("2026-03-08T01:34:00Z").unwrap(),
        }]
    );
    assert_eq!(n.digest.len(), 64);
}

fn notification(user: &str, op: &str, data_type: &str, intervals: &[(&str, &str)]) -> String {
    let intervals: Vec<serde_json::Value> = intervals
        .iter()
        .map(|(s, e)| json!({"physicalTimeInterval": {"startTime": s, "endTime": e}}))
        .collect();
    json!({"data": {
        "clientProvidedSubscriptionName": uuid::Uuid::new_v4().to_string(),
        "healthUserId": user, "operation": op, "dataType": data_type, "intervals": intervals,
    }})
    .to_string()
}

#[test]
fn redeliveries_share_a_digest_and_different_changes_do_not() {
    let a = ("2026-03-08T01:29:00Z", "2026-03-08T01:34:00Z");
    let b = ("2026-03-08T02:00:00+01:00", "2026-03-08T01:10:00.000Z");
    let digest = |body: String| {
        parse_notifications(body.as_bytes()).unwrap()[0]
            .digest
            .clone()
    };
    // Random subscription names, interval order and spelling do not matter.
    let one = digest(notification("u1", "UPSERT", "steps", &[a, b]));
    assert_eq!(one, digest(notification("u1", "UPSERT", "steps", &[b, a])));
    assert_eq!(
        one,
        digest(notification(
            "u1",
            "UPSERT",
            "steps",
            &[("2026-03-08T01:29:00.000Z", "2026-03-08T01:34:00Z"), b]
        ))
    );
    for other in [
        notification("u2", "UPSERT", "steps", &[a, b]),
        notification("u1", "DELETE", "steps", &[a, b]),
        notification("u1", "UPSERT", "heart-rate", &[a, b]),
        notification("u1", "UPSERT", "steps", &[a]),
    ] {
        assert_ne!(one, digest(other));
    }
}

#[test]
fn offsets_and_fractions_become_canonical_covering_intervals() {
    let body = notification(
        "u1",
        "DELETE",
        "heart-rate",
        &[("2026-03-07T20:29:00.250-05:00", "2026-03-08T01:29:00.500Z")],
    );
    let parsed = parse_notifications(body.as_bytes()).unwrap();
    assert_eq!(parsed[0].operation, Operation::Delete);
    assert_eq!(
        parsed[0].intervals[0].start.to_text(),
        "2026-03-08T01:29:00Z"
    );
    assert_eq!(parsed[0].intervals[0].end.to_text(), "2026-03-08T01:29:01Z");
}

#[test]
fn a_batched_array_parses_and_one_bad_notification_refuses_the_body() {
    let good = notification(
        "u1",
        "UPSERT",
        "steps",
        &[("2026-03-08T01:00:00Z", "2026-03-08T02:00:00Z")],
    );
    let bad = notification("u2", "UPSERT", "steps", &[("2026-03-08T01:00:00Z", "abc")]);
    let batch = format!("[{good},{good}]");
    assert_eq!(parse_notifications(batch.as_bytes()).unwrap().len(), 2);
    let error = parse_notifications(format!("[{good},{bad}]").as_bytes()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "the body is not a notification: [1].data.intervals[0].physicalTimeInterval.endTime is not an RFC 3339 instant: \"abc\""
    );
}

#[test]
fn malformed_notifications_name_the_problem() {
    let ok = ("2026-03-08T01:00:00Z", "2026-03-08T02:00:00Z");
    let many: Vec<(&str, &str)> = vec![ok; MAX_INTERVALS + 1];
    for (body, expected) in [
        (
            notification("u1", "PATCH", "steps", &[ok]),
            "data.operation is not UPSERT or DELETE: \"PATCH\"",
        ),
        (
            notification("u1", "UPSERT", "Heart_Rate", &[ok]),
            "data.dataType is not a kebab-case data type: \"Heart_Rate\"",
        ),
        (
            notification("", "UPSERT", "steps", &[ok]),
            "data.healthUserId is not a Google Health user id: \"\"",
        ),
        (
            notification("u1", "UPSERT", "steps", &[]),
            "data.intervals has 0 intervals",
        ),
        (
            notification("u1", "UPSERT", "steps", &many),
            "data.intervals has 1001 intervals",
        ),
        (
            notification(
                "u1",
                "UPSERT",
                "steps",
                &[("2026-03-08T02:00:00Z", "2026-03-08T02:00:00Z")],
            ),
            "data.intervals[0].physicalTimeInterval ends",
        ),
        (
            notification(
                "u1",
                "UPSERT",
                "steps",
                &[("2026-03-08T01:00:00", "2026-03-08T02:00:00Z")],
            ),
            "data.intervals[0].physicalTimeInterval.startTime is not an RFC 3339 instant",
        ),
        (
            notification(
                "u1",
                "UPSERT",
                "steps",
                &[("9999-12-31T23:00:00Z", "9999-12-31T23:00:00-05:00")],
            ),
            "endTime is not an RFC 3339 instant",
        ),
        (
            r#"{"data": []}"#.to_owned(),
            "data is an array, not an object",
        ),
        (r#"{"type": "verification"}"#.to_owned(), "data is missing"),
        ("17".to_owned(), "the body is a number"),
    ] {
        let error = parse_notifications(body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{error}");
    }
    assert!(matches!(
        parse_notifications(b"{\"data\":"),
        Err(NotificationError::NotJson(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_single_byte_change_breaks_the_signature(at in any::<prop::sample::Index>(), delta in 1u8..=255) {
        let set = keyset(&[(7, 1)]);
        let header = sign_notification(&signing_key(1), 7, BODY.as_bytes());
        let mut body = BODY.as_bytes().to_vec();
        let i = at.index(body.len());
        body[i] = body[i].wrapping_add(delta);
        prop_assert_eq!(set.verify(&header, &body), Err(SignatureError::Invalid));
    }

    #[test]
    fn arbitrary_headers_never_panic(header in any::<String>(), bytes in prop::collection::vec(any::<u8>(), 0..120)) {
        let set = keyset(&[(7, 1)]);
        let _ = set.verify(&header, BODY.as_bytes());
        prop_assert!(set.verify(&STANDARD.encode(&bytes), BODY.as_bytes()).is_err());
    }

    #[test]
    fn arbitrary_keysets_never_panic(json in any::<String>(), proto in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = PublicKeyset::from_tink_json(&json);
        let _ = EcdsaPublicKey::decode(&proto);
    }
}
