//! Legacy Fitbit Web API subscriptions: the `X-Fitbit-Signature` HMAC and the notification body.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::NaiveDate;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha1::Sha1;

use super::{Node, NotificationError, SignatureError, digest, notifications, quote};
use crate::secret::Secret;

pub const SIGNATURE_HEADER: &str = "x-fitbit-signature";

type HmacSha1 = Hmac<Sha1>;

fn mac(client_secret: &str) -> HmacSha1 {
    <HmacSha1 as Mac>::new_from_slice(format!("{client_secret}&").as_bytes())
        .expect("HMAC takes any key length")
}

/// Checks `X-Fitbit-Signature`: base64(HMAC-SHA1(key = client secret + `&`, raw body)),
/// compared in constant time.
///
/// The header is read as sent: real headers carry raw `+` and `=`, and URL-decoding would turn
/// `+` into a space. Old docs said the value is also URL-encoded; a header that does not match
/// as sent and holds `%XX` escapes is tried once more with just those decoded.
pub fn verify_signature(
    client_secret: &Secret<String>,
    header_value: &str,
    body: &[u8],
) -> Result<(), SignatureError> {
    let text = header_value.trim();
    if text.is_empty() {
        return Err(SignatureError::Missing);
    }
    let check = |text: &str| -> Result<(), SignatureError> {
        let signature = STANDARD
            .decode(text)
            .map_err(|_| SignatureError::Malformed)?;
        let mut mac = mac(client_secret.expose());
        mac.update(body);
        mac.verify_slice(&signature)
            .map_err(|_| SignatureError::Invalid)
    };
    match check(text) {
        Err(first) if text.contains('%') => match percent_decode(text) {
            Some(decoded) => check(&decoded).map_err(|_| first),
            None => Err(first),
        },
        result => result,
    }
}

/// Decodes `%XX` escapes only (a `+` stays a `+`); `None` for a broken escape.
fn percent_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// Signs a body like Fitbit does (for the simulator and tests).
pub fn sign(client_secret: &str, body: &[u8]) -> String {
    let mut mac = mac(client_secret);
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Which collection changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collection {
    Activities,
    Body,
    Foods,
    Sleep,
    /// The participant revoked fitlink's access in their Fitbit settings.
    UserRevokedAccess,
    /// A collection Fitbit added later (`[A-Za-z]{1,64}`): acknowledged, not acted on.
    Other(String),
}

impl Collection {
    /// The wire spelling (`activities`, `userRevokedAccess`, ...).
    pub fn as_str(&self) -> &str {
        match self {
            Collection::Activities => "activities",
            Collection::Body => "body",
            Collection::Foods => "foods",
            Collection::Sleep => "sleep",
            Collection::UserRevokedAccess => "userRevokedAccess",
            Collection::Other(name) => name,
        }
    }

    fn from_wire(name: &str) -> Self {
        match name {
            "activities" => Collection::Activities,
            "body" => Collection::Body,
            "foods" => Collection::Foods,
            "sleep" => Collection::Sleep,
            "userRevokedAccess" => Collection::UserRevokedAccess,
            other => Collection::Other(other.to_owned()),
        }
    }
}

/// One Fitbit notification: `collection` changed for `owner_id` on `date`.
#[derive(Debug, Clone, PartialEq)]
pub struct FitbitNotification {
    pub collection: Collection,
    /// The day that changed, in the participant's zone; `None` when absent or a placeholder
    /// such as `userRevokedAccess`'s `"2020-06"`.
    pub date: Option<NaiveDate>,
    /// The Fitbit user id (`184X36`).
    pub owner_id: String,
    pub subscription_id: String,
    /// Hex SHA-256 of (collection, date, owner, subscription). Fitbit's notifications carry no
    /// time or id of their own: a later change of the same collection on the same day has the
    /// same digest as a redelivery of the first, so a receiver that deduplicates by it must
    /// scope it to a time window.
    pub digest: String,
}

/// The notification array `[{"collectionType","date","ownerId","ownerType","subscriptionId"}]`;
/// a single object is accepted too. Every notification must parse, else the whole body is
/// refused.
pub fn parse_notifications(body: &[u8]) -> Result<Vec<FitbitNotification>, NotificationError> {
    notifications(body)?
        .iter()
        .map(|(path, value)| parse_one(Node::root(path.clone(), value)))
        .collect()
}

fn parse_one(node: Node<'_>) -> Result<FitbitNotification, NotificationError> {
    node.expect_object()?;
    let collection = node.token(
        "collectionType",
        64,
        |c| c.is_ascii_alphabetic(),
        "a collection name",
    )?;
    let owner_id = node.token(
        "ownerId",
        64,
        |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
        "a Fitbit user id",
    )?;
    let subscription_id = match node.get("subscriptionId") {
        // The app chose it (at most 50 characters); a number is taken as its text.
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => node
            .token(
                "subscriptionId",
                64,
                |c| c.is_ascii_graphic(),
                "a subscription id",
            )?
            .to_owned(),
    };
    let date_text = node.optional_string("date")?;
    let date = match date_text {
        None => None,
        Some(text) if is_month_placeholder(text) => None,
        Some(text) => Some(
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .filter(|d| text.len() == 10 && (1900..=9999).contains(&chrono::Datelike::year(d)))
                .ok_or_else(|| {
                    node.error(
                        "date",
                        &format!("is not a yyyy-MM-dd date: {}", quote(text)),
                    )
                })?,
        ),
    };
    let digest = digest(&json!([
        "fitbit/v1",
        collection,
        date.map(|d| d.to_string()),
        owner_id,
        subscription_id,
    ]));
    Ok(FitbitNotification {
        collection: Collection::from_wire(collection),
        date,
        owner_id: owner_id.to_owned(),
        subscription_id,
        digest,
    })
}

/// `yyyy-MM`: the month-only placeholder in Fitbit's `userRevokedAccess` example.
fn is_month_placeholder(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SECRET: &str = "f-secret";
    const BODY: &str = r#"[{"collectionType":"activities","date":"2010-03-01","ownerId":"184X36","ownerType":"user","subscriptionId":"2345"},
 {"collectionType":"foods","date":"2010-03-02","ownerId":"228S74","ownerType":"user","subscriptionId":"1234"}]"#;

    fn secret() -> Secret<String> {
        Secret::new(SECRET.to_owned())
    }

    #[test]
    fn a_signature_matches_its_body_as_sent() {
        let header = sign(SECRET, BODY.as_bytes());
        assert_eq!(
            verify_signature(&secret(), &header, BODY.as_bytes()),
            Ok(())
        );
        // Pinned against an independent HMAC-SHA1 (Python's hmac) of the same key and body.
        assert_eq!(sign("s3cret", b"[3]"), "8wbXvmIwhdCaZolAQ42svdnzg+Y=");
        assert_eq!(
            verify_signature(&secret(), &header, b"[]"),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_signature(&Secret::new("other".into()), &header, BODY.as_bytes()),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify_signature(&secret(), " ", BODY.as_bytes()),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(&secret(), "not base64!", BODY.as_bytes()),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_url_encoded_header_is_accepted_but_plus_is_never_a_space() {
        // "8wbXvmIwhdCaZolAQ42svdnzg+Y=" carries both '+' and '='.
        let header = sign("s3cret", b"[3]");
        let encoded = header.replace('+', "%2B").replace('=', "%3D");
        let key = Secret::new("s3cret".to_owned());
        assert_eq!(verify_signature(&key, &encoded, b"[3]"), Ok(()));
        assert_eq!(verify_signature(&key, &header, b"[3]"), Ok(()));
        let spaced = header.replace('+', " ");
        assert!(verify_signature(&key, &spaced, b"[3]").is_err());
    }

    #[test]
    fn the_documented_notifications_parse() {
        let parsed = parse_notifications(BODY.as_bytes()).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].collection, Collection::Activities);
        assert_eq!(parsed[0].date, NaiveDate::from_ymd_opt(2010, 3, 1));
        assert_eq!(parsed[0].owner_id, "184X36");
        assert_eq!(parsed[1].collection, Collection::Foods);
        assert_eq!(parsed[1].subscription_id, "1234");
        assert_ne!(parsed[0].digest, parsed[1].digest);
        let revoked = parse_notifications(
            br#"{"collectionType":"userRevokedAccess","date":"2020-06","ownerId":"user","ownerType":"user","subscriptionId":"1"}"#,
        )
        .unwrap();
        assert_eq!(revoked[0].collection, Collection::UserRevokedAccess);
        assert_eq!(revoked[0].date, None);
        // The same content in another key order or spacing has the same digest.
        let again = parse_notifications(
            br#"[{"subscriptionId":"2345","ownerId":"184X36","date":"2010-03-01","collectionType":"activities"}]"#,
        )
        .unwrap();
        assert_eq!(again[0].digest, parsed[0].digest);
    }

    #[test]
    fn malformed_notifications_name_the_problem() {
        for (body, expected) in [
            (&br#"[{"collectionType":"activities","date":"2010-13-01","ownerId":"184X36","subscriptionId":"1"}]"#[..], "[0].date is not a yyyy-MM-dd date: \"2010-13-01\""),
            (br#"[{"collectionType":"activities","date":"2010-03-01","subscriptionId":"1"}]"#, "[0].ownerId is missing"),
            (br#"[{"collectionType":"activities","ownerId":"a b","subscriptionId":"1"}]"#, "[0].ownerId is not a Fitbit user id: \"a b\""),
            (br#"[]"#, "empty array"),
            (br#""activities""#, "a string"),
            (br#"[{"collectionType":"activities","ownerId":"X","subscriptionId":"1"}, 7]"#, "[1] is a number, not an object"),
        ] {
            let error = parse_notifications(body).unwrap_err().to_string();
            assert!(error.contains(expected), "{error}");
        }
        assert!(matches!(
            parse_notifications(b"[{"),
            Err(NotificationError::NotJson(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_single_byte_change_breaks_the_signature(at in any::<prop::sample::Index>(), delta in 1u8..=255) {
            let header = sign(SECRET, BODY.as_bytes());
            let mut body = BODY.as_bytes().to_vec();
            let i = at.index(body.len());
            body[i] = body[i].wrapping_add(delta);
            prop_assert_eq!(verify_signature(&secret(), &header, &body), Err(SignatureError::Invalid));
        }
    }
}
