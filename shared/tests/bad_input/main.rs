//! Bad input for every parser of outside data in `fitlink-shared`: both providers' responses,
//! queue messages, instants, participant ids and sealed tokens.
//!
//! Two kinds of tests, both bounded so the whole binary runs in a few seconds:
//! - property tests (proptest) that feed arbitrary text and, mostly, structure-aware mutations
//!   of documented payloads ([`mutate`]) to the same parse functions the clients use, and check
//!   that nothing panics and every failure has the class the caller acts on;
//! - the corpus in `tests/corpus/` at the workspace root ([`corpus`]): real-shaped malformed
//!   payloads, each of which must fail with its parser's class, and under `ok/` payloads that
//!   must be accepted (among them the regressions of crashes these tests found).
//!
//! A failing property prints the seed; `PROPTEST_RNG_SEED=<seed>` replays it. Keep what it found
//! as a corpus file.

mod corpus;
mod fitbit;
mod google;
mod messages;
mod mutate;
mod webhooks;

use fitlink_shared::domain::ParticipantState;
use fitlink_shared::errors::SyncError;
use proptest::test_runner::Config;

/// A bounded run: `cases` inputs, no regression files written next to the sources (what a
/// failure finds goes into the corpus instead), shrinking capped so a failure reports quickly.
pub fn config(cases: u32) -> Config {
    Config {
        // `PROPTEST_CASES=20000 cargo test ...` soaks locally; CI runs the bounded count.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..Config::default()
    }
}

/// The state of a `Permanent` error, `None` for other classes.
pub fn permanent_state(error: &SyncError) -> Option<ParticipantState> {
    match error {
        SyncError::Permanent { state, .. } => Some(*state),
        _ => None,
    }
}

/// Whether `error` says the body ended early: a cut-off response, retried as transient.
pub fn is_truncated(error: &SyncError) -> bool {
    error.is_transient() && error.to_string().contains("ended early")
}

/// Panics (failing the property with the error shown) unless `error` is invalid provider data,
/// or a body that ended early (transient: a cut-off response is worth retrying).
#[track_caller]
pub fn assert_invalid_data(error: &SyncError) {
    assert!(
        permanent_state(error) == Some(ParticipantState::ProviderDataInvalid)
            || is_truncated(error),
        "expected provider_data_invalid or a truncated body, got {error:?}"
    );
}
