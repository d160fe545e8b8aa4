//! The start-up check of a key set against the stored credentials (the canary): a role started
//! with keys that open none of them refuses to start, instead of failing every participant's
//! sync one at a time (where a wrong key would look like a bad token). Nothing is written.

use std::collections::BTreeMap;

use super::{SealedToken, TokenKeys};
use crate::domain::ParticipantId;
use crate::fetch;
use crate::store::Database;

/// How many stored credentials the check tries: the most recently changed ones (which the
/// current key sealed, if any did), enough to see a mix of keys during a rotation, few enough to
/// cost nothing at start-up.
pub const SAMPLE: i64 = 1000;

/// A role must not run with this key set: restarting cannot help, so the supervisor stops
/// instead of retrying ([`is_refusal`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeySetRefused(pub String);

/// True if `error` (or anything in its chain) is a [`KeySetRefused`].
pub fn is_refusal(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|e| e.downcast_ref::<KeySetRefused>().is_some())
}

/// What the check saw, for the start-up log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryReport {
    /// Stored credentials tried.
    pub sampled: usize,
    /// Of those, how many opened.
    pub opened: usize,
    /// The key ids the tried tokens name (`"no id"` for the format before key ids), with counts.
    pub sealed_with: BTreeMap<String, usize>,
}

impl CanaryReport {
    fn describe_keys(&self) -> String {
        self.sealed_with
            .iter()
            .map(|(key, n)| format!("{key} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Tries `keys` on a sample of `db`'s stored credentials. `Err(KeySetRefused)` if there are
/// some and none opens; a partial failure is returned in the report (the caller warns: some
/// tokens need a key that is missing from the set).
pub async fn check_stored_credentials(
    db: &Database,
    keys: &TokenKeys,
    role: &str,
) -> anyhow::Result<CanaryReport> {
    let rows: Vec<(String, SealedToken)> = fetch!(
        db.exec(),
        sqlx::query_as(
            "SELECT participant_id, sealed_refresh_token FROM credentials \
             ORDER BY updated_at DESC, participant_id LIMIT $1"
        )
        .bind(SAMPLE),
        all
    )?;
    let report = judge(&rows, keys);
    if report.sampled > 0 && report.opened == 0 {
        return Err(KeySetRefused(format!(
            "{role} refuses to start: its token keys ({}) open none of the {} stored credential(s) it tried, which were sealed with key(s) {}. Running would fail every participant's sync; give it the key(s) the credentials were sealed with (FITLINK_TOKEN_KEYS, the current key first). Nothing was changed",
            keys.ids(),
            report.sampled,
            report.describe_keys()
        ))
        .into());
    }
    if report.opened < report.sampled {
        tracing::warn!(
            role,
            sampled = report.sampled,
            opened = report.opened,
            sealed_with = %report.describe_keys(),
            keys = %keys.ids(),
            "some stored credentials do not open with these token keys: a key they were sealed with is missing from FITLINK_TOKEN_KEYS (or those tokens are damaged)"
        );
    } else {
        tracing::info!(role, sampled = report.sampled, keys = %keys.ids(), "the token keys open the stored credentials");
    }
    Ok(report)
}

fn judge(rows: &[(String, SealedToken)], keys: &TokenKeys) -> CanaryReport {
    let mut report = CanaryReport {
        sampled: 0,
        opened: 0,
        sealed_with: BTreeMap::new(),
    };
    for (participant, sealed) in rows {
        // A stored id that is no participant id cannot be opened for anyone: it is skipped,
        // not counted against the keys.
        let Ok(participant) = ParticipantId::new(participant) else {
            continue;
        };
        report.sampled += 1;
        let key = sealed
            .key_id()
            .map_or_else(|| "no id".to_owned(), |id| id.to_string());
        *report.sealed_with.entry(key).or_default() += 1;
        if keys.open(&participant, sealed).is_ok() {
            report.opened += 1;
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{Secret, TokenKey};

    fn keys() -> TokenKeys {
        TokenKeys::parse(&TokenKey::generate()).unwrap()
    }

    #[test]
    fn a_sample_says_how_many_open_and_what_sealed_them() {
        let (right, wrong) = (keys(), keys());
        let p = ParticipantId::new("p1").unwrap();
        let rows = vec![
            ("p1".to_owned(), right.seal(&p, &Secret::new("t".into()))),
            ("p1".to_owned(), wrong.seal(&p, &Secret::new("t".into()))),
        ];
        let report = judge(&rows, &right);
        assert_eq!((report.sampled, report.opened), (2, 1));
        assert_eq!(report.sealed_with.len(), 2);
        assert_eq!(judge(&rows[1..], &right).opened, 0);
        assert_eq!(judge(&[], &right).sampled, 0);
    }

    #[test]
    fn a_refusal_is_found_through_context() {
        let e = anyhow::Error::new(KeySetRefused("no".into())).context("starting the console");
        assert!(is_refusal(&e));
        assert!(!is_refusal(&anyhow::anyhow!("broker down")));
    }
}
