//! Sealing and key sets: what opens, what does not, and what the errors name.
use super::*;

fn key() -> TokenKey {
    TokenKey::parse(&TokenKey::generate()).unwrap()
}

fn set(current: &TokenKey, older: &[&TokenKey]) -> TokenKeys {
    TokenKeys::new(current.clone(), older.iter().map(|k| (*k).clone()))
}

fn pid(id: &str) -> ParticipantId {
    ParticipantId::new(id).unwrap()
}

/// A token in the format before key ids: nonce ‖ ciphertext ‖ tag, as the previous release
/// sealed it.
fn sealed_without_id(key: &TokenKey, participant: &ParticipantId, token: &str) -> SealedToken {
    SealedToken(BASE64.encode(key.seal_body(participant, &Secret::new(token.to_owned()))))
}

#[test]
fn sealed_tokens_open_only_for_their_participant_and_key() {
    let keys = set(&key(), &[]);
    let (alice, bob) = (pid("alice"), pid("bob"));
    let token = Secret::new("refresh-token-value".to_owned());
    let sealed = keys.seal(&alice, &token);
    assert!(!sealed.as_str().contains("refresh-token-value"));
    assert_eq!(keys.open(&alice, &sealed).unwrap(), token);
    assert!(matches!(
        keys.open(&bob, &sealed),
        Err(SealError::WrongKeyOrParticipant { key: Some(_), .. })
    ));
    assert!(matches!(
        set(&key(), &[]).open(&alice, &sealed),
        Err(SealError::UnknownKey { .. })
    ));
    assert!(matches!(
        keys.open(&alice, &SealedToken::from_stored("%%%".into())),
        Err(SealError::Malformed(_))
    ));
}

#[test]
fn a_new_seal_names_the_current_key() {
    let (a, b) = (key(), key());
    let keys = set(&b, &[&a]);
    let sealed = keys.seal(&pid("p1"), &Secret::new("t".into()));
    assert_eq!(sealed.key_id(), Some(b.id()));
    assert!(sealed.as_str().starts_with("RkxLM"), "base64 of FLK1");
    assert_eq!(keys.ids(), KeyIds(vec![b.id(), a.id()]));
    assert_eq!(b.id().to_string().len(), 8);
    // The id is the SHA-256 of the key's bytes, so an operator can compute it.
    let pinned = TokenKey::parse(&Secret::new("ab".repeat(32))).unwrap();
    let digest = Sha256::digest([0xab; 32]);
    let hex: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(pinned.id().to_string(), hex);
}

#[test]
fn tokens_sealed_before_key_ids_open_with_whichever_key_sealed_them() {
    let (a, b) = (key(), key());
    let p = pid("p1");
    let old = sealed_without_id(&a, &p, "old-token");
    assert_eq!(old.key_id(), None);
    assert_eq!(set(&a, &[]).open(&p, &old).unwrap().expose(), "old-token");
    assert_eq!(set(&b, &[&a]).open(&p, &old).unwrap().expose(), "old-token");
    match set(&b, &[]).open(&p, &old) {
        Err(e @ SealError::WrongKeyOrParticipant { key: None, .. }) => {
            assert!(e.may_be_missing_key());
            let text = e.to_string();
            assert!(text.contains(&b.id().to_string()), "{text}");
            assert!(text.contains("p1"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rotation_keeps_old_tokens_open_until_their_key_is_dropped() {
    let (a, b) = (key(), key());
    let p = pid("p1");
    let under_a = set(&a, &[]).seal(&p, &Secret::new("tok".into()));
    let rotated = set(&b, &[&a]);
    assert_eq!(rotated.open(&p, &under_a).unwrap().expose(), "tok");
    let resealed = rotated.seal(&p, &rotated.open(&p, &under_a).unwrap());
    assert_eq!(resealed.key_id(), Some(b.id()));
    let dropped = set(&b, &[]);
    assert_eq!(dropped.open(&p, &resealed).unwrap().expose(), "tok");
    match dropped.open(&p, &under_a) {
        Err(e @ SealError::UnknownKey { .. }) => {
            assert!(e.may_be_missing_key());
            let text = e.to_string();
            assert!(
                text.contains(&a.id().to_string()),
                "names the missing key: {text}"
            );
            assert!(
                text.contains(&b.id().to_string()),
                "names the keys held: {text}"
            );
            assert!(text.contains("FITLINK_TOKEN_KEYS"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_token_that_names_a_held_key_and_does_not_open_is_its_own_fault() {
    let a = key();
    let keys = set(&a, &[]);
    let sealed = keys.seal(&pid("alice"), &Secret::new("tok".into()));
    let err = keys.open(&pid("bob"), &sealed).unwrap_err();
    assert!(!err.may_be_missing_key());
    assert!(err.to_string().contains(&a.id().to_string()), "{err}");
    assert_eq!(err.participant(), Some("bob"));
}

#[test]
fn key_lists_parse_current_first_and_say_which_key_is_bad() {
    let (a, b) = (TokenKey::generate(), TokenKey::generate());
    let text = format!(" {}, {}\n{} ", b.expose(), a.expose(), b.expose());
    let keys = TokenKeys::parse(&Secret::new(text)).unwrap();
    let ids = keys.ids();
    assert_eq!(ids.0.len(), 2, "a repeated key counts once");
    assert_eq!(keys.current().id(), TokenKey::parse(&b).unwrap().id());
    assert!(matches!(
        TokenKeys::parse(&Secret::new(format!("{},short", a.expose()))),
        Err(SealError::BadKeyInList { position: 2 })
    ));
    assert!(matches!(
        TokenKeys::parse(&Secret::new(" , ".into())),
        Err(SealError::NoKey)
    ));
    assert!(matches!(
        TokenKeys::parse(&Secret::new("short".into())),
        Err(SealError::BadKey)
    ));
}

#[test]
fn derived_keys_come_from_the_current_key_and_the_older_ones_follow() {
    let (a, b) = (key(), key());
    let keys = set(&b, &[&a]);
    assert_eq!(keys.derive("invitation"), b.derive("invitation"));
    assert_eq!(
        keys.derive_all("invitation"),
        vec![b.derive("invitation"), a.derive("invitation")]
    );
}

const PINNED_INVITATION_KEY: &str =
    "85702c18422f67e95eb3d7a44914514f16747a3fb7ccf211b5b6aac369dedda0";

#[test]
fn keys_parse_from_hex_or_base64_and_nothing_else() {
    let hex = Secret::new("ab".repeat(32));
    assert!(TokenKey::parse(&hex).is_ok());
    assert!(TokenKey::parse(&Secret::new("short".into())).is_err());
    assert!(TokenKey::parse(&Secret::new(BASE64.encode([1u8; 16]))).is_err());
}

#[test]
fn derived_keys_differ_by_purpose_and_are_stable() {
    let text = TokenKey::generate();
    let (a, b) = (
        TokenKey::parse(&text).unwrap(),
        TokenKey::parse(&text).unwrap(),
    );
    assert_eq!(a.derive("invitation"), b.derive("invitation"));
    assert_ne!(a.derive("invitation"), a.derive("consent-flow"));
    assert_ne!(a.derive("invitation"), key().derive("invitation"));
    // Not the raw key either.
    assert_ne!(a.derive("").expose(), a.raw.expose());
    // Pinned: HMAC-SHA256(32 × 0xab, "fitlink/invitation"), so a change of the derivation
    // (which would invalidate every outstanding invitation link) cannot go unnoticed.
    let pinned = TokenKey::parse(&Secret::new("ab".repeat(32))).unwrap();
    let hex: String = pinned
        .derive("invitation")
        .expose()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(hex, PINNED_INVITATION_KEY);
    assert_eq!(format!("{:?}", a.derive("x")), "[redacted]");
}

#[test]
fn secrets_do_not_print() {
    let s = Secret::new("ya29.secret".to_owned());
    assert_eq!(format!("{s} {s:?}"), "[redacted] [redacted]");
    let k = key();
    assert_eq!(
        format!("{k:?}"),
        format!("TokenKey({}, [redacted])", k.id())
    );
}
