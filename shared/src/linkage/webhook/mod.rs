//! Provider webhooks: checking a notification's signature and reading its body into what
//! changed, for whom. No I/O: the dispatcher's HTTP handlers call these with the raw body and
//! header, and the bad-input tests feed them the corpus in `tests/corpus/webhooks/`.
//!
//! A body is accepted whole or refused whole: one notification that does not parse refuses the
//! body (the handler answers 400 and counts it), so a half-understood batch never becomes work.

pub mod fitbit;
pub mod google;

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Why a notification's signature was refused.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the notification carries no signature header")]
    Missing,
    #[error("the signature header is not base64 of a signature")]
    Malformed,
    #[error("the signature does not match the body")]
    Invalid,
    /// Google: signed with a key id the keyset does not have (the keys rotated: refetch it).
    #[error("the signature names key id {0}, which the public keyset does not have")]
    UnknownKey(u32),
}

/// Why a notification body was refused. The text names the problem and where it is.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum NotificationError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is not a notification: {detail}")]
    WrongShape { detail: String },
}

/// At most this many notifications in one body: a real batch is a handful, and the cap keeps a
/// hostile body from becoming unbounded work.
pub const MAX_NOTIFICATIONS_PER_BODY: usize = 1000;

/// Parses the body as JSON and returns its notifications: the elements of a top-level array, or
/// the one top-level object.
fn notifications(body: &[u8]) -> Result<Vec<(String, Value)>, NotificationError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| NotificationError::NotJson(e.to_string()))?;
    let items: Vec<(String, Value)> = match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| (format!("[{i}]"), item))
            .collect(),
        object @ Value::Object(_) => vec![(String::new(), object)],
        other => {
            return Err(wrong_shape(format!(
                "the body is {}, not a notification object or an array of them",
                kind(&other)
            )));
        }
    };
    if items.is_empty() {
        return Err(wrong_shape("the body is an empty array".into()));
    }
    if items.len() > MAX_NOTIFICATIONS_PER_BODY {
        return Err(wrong_shape(format!(
            "{} notifications in one body (at most {MAX_NOTIFICATIONS_PER_BODY})",
            items.len()
        )));
    }
    Ok(items)
}

fn wrong_shape(detail: String) -> NotificationError {
    NotificationError::WrongShape { detail }
}

/// The JSON type of a value, for error texts.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value quoted for an error text, cut short: error texts are logged and counted, and a
/// hostile body must not make them huge.
fn quote(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        format!("{value:?}")
    } else {
        let cut: String = value.chars().take(MAX).collect();
        format!("{cut:?}…")
    }
}

/// A JSON object being read, with the path to it for error texts (`[2].data.intervals[0]`).
struct Node<'a> {
    path: String,
    value: &'a Value,
}

impl<'a> Node<'a> {
    fn root(path: String, value: &'a Value) -> Self {
        Self { path, value }
    }

    fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn error(&self, key: &str, problem: &str) -> NotificationError {
        wrong_shape(format!("{} {problem}", self.at(key)))
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.value.get(key).filter(|v| !v.is_null())
    }

    /// The member `key`, which must be an object.
    fn object(&self, key: &str) -> Result<Node<'a>, NotificationError> {
        match self.get(key) {
            Some(v @ Value::Object(_)) => Ok(Node {
                path: self.at(key),
                value: v,
            }),
            Some(other) => Err(self.error(key, &format!("is {}, not an object", kind(other)))),
            None => Err(self.error(key, "is missing")),
        }
    }

    /// The member `key`, which must be an array; its elements as nodes.
    fn array(&self, key: &str) -> Result<Vec<Node<'a>>, NotificationError> {
        match self.get(key) {
            Some(Value::Array(items)) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Node {
                    path: format!("{}[{i}]", self.at(key)),
                    value,
                })
                .collect()),
            Some(other) => Err(self.error(key, &format!("is {}, not an array", kind(other)))),
            None => Err(self.error(key, "is missing")),
        }
    }

    /// The member `key` as a string, if present.
    fn optional_string(&self, key: &str) -> Result<Option<&'a str>, NotificationError> {
        match self.get(key) {
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(key, &format!("is {}, not a string", kind(other)))),
            None => Ok(None),
        }
    }

    /// The member `key`, which must be a string.
    fn string(&self, key: &str) -> Result<&'a str, NotificationError> {
        self.optional_string(key)?
            .ok_or_else(|| self.error(key, "is missing"))
    }

    /// The member `key`: a string of 1 to `max` characters each satisfying `allowed`.
    fn token(
        &self,
        key: &str,
        max: usize,
        allowed: impl Fn(char) -> bool,
        expected: &str,
    ) -> Result<&'a str, NotificationError> {
        let text = self.string(key)?;
        if text.is_empty() || text.chars().count() > max || !text.chars().all(allowed) {
            return Err(self.error(key, &format!("is not {expected}: {}", quote(text))));
        }
        Ok(text)
    }

    /// This node must be an object (an element of an array need not be).
    fn expect_object(&self) -> Result<(), NotificationError> {
        match self.value {
            Value::Object(_) => Ok(()),
            other => Err(wrong_shape(format!(
                "{} is {}, not an object",
                if self.path.is_empty() {
                    "the notification"
                } else {
                    &self.path
                },
                kind(other)
            ))),
        }
    }
}

/// Hex SHA-256 of a canonical JSON array of `parts`: unambiguous (no separator can be forged
/// by a value), and the same for the same parts whatever the order or spelling of the body.
fn digest(parts: &Value) -> String {
    let hash = Sha256::digest(parts.to_string().as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}
