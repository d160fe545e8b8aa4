//! Named fault points: each place where a crash could lose or duplicate something, so that a
//! test (or `fitlink chaos`) can kill a process exactly there and prove that nothing is lost.
//!
//! A process is armed with `FITLINK_FAULT_POINT=<name>` or `<name>@<n>` (strike on the n-th
//! time the point is passed, the first by default). When it passes the armed point it aborts
//! on the spot, like a SIGKILL: no cleanup, no acks, nothing flushed. Unset, a point costs one
//! load of an initialised `OnceLock` and a comparison, so the points stay in release builds
//! and what is tested is what runs.
//!
//! The points, and what a crash there leaves behind:
//!
//! | name | where | left behind |
//! |---|---|---|
//! | `commit-before-ack` | writer: a batch committed, its jobs published and replies sent | the batch's results, redelivered and applied again |
//! | `grant-before-publish` | writer: a sync grant (the claim the dispatcher asked for) committed | a claim whose job was never published |
//! | `publish-before-confirm` | any publisher: the broker took and confirmed a message, the publisher never learns it | a message the publisher counts as failed |
//! | `refresh-before-store` | worker: the provider rotated the refresh token | a rotated token stored nowhere |
//! | `store-before-use` | worker: the writer committed the rotated token | a job that still carries the old token |
//! | `retry-before-ack` | worker: a retry copy of a failed job published | the original job and its retry copy, both queued |
//! | `webhook-before-204` | dispatcher: a webhook's notifications handed on | a notification the provider delivers again |

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a process.
pub const FAULT_POINT_ENV: &str = "FITLINK_FAULT_POINT";

/// A place where a crash could lose or duplicate something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    CommitBeforeAck,
    GrantBeforePublish,
    PublishBeforeConfirm,
    RefreshBeforeStore,
    StoreBeforeUse,
    RetryBeforeAck,
    WebhookBefore204,
}

impl FaultPoint {
    pub const ALL: [FaultPoint; 7] = [
        FaultPoint::CommitBeforeAck,
        FaultPoint::GrantBeforePublish,
        FaultPoint::PublishBeforeConfirm,
        FaultPoint::RefreshBeforeStore,
        FaultPoint::StoreBeforeUse,
        FaultPoint::RetryBeforeAck,
        FaultPoint::WebhookBefore204,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultPoint::CommitBeforeAck => "commit-before-ack",
            FaultPoint::GrantBeforePublish => "grant-before-publish",
            FaultPoint::PublishBeforeConfirm => "publish-before-confirm",
            FaultPoint::RefreshBeforeStore => "refresh-before-store",
            FaultPoint::StoreBeforeUse => "store-before-use",
            FaultPoint::RetryBeforeAck => "retry-before-ack",
            FaultPoint::WebhookBefore204 => "webhook-before-204",
        }
    }

    /// The role whose process passes this point (`publish-before-confirm`: every role publishes;
    /// the worker is where a test arms it).
    pub fn role(self) -> &'static str {
        match self {
            FaultPoint::CommitBeforeAck | FaultPoint::GrantBeforePublish => "writer",
            FaultPoint::PublishBeforeConfirm
            | FaultPoint::RefreshBeforeStore
            | FaultPoint::StoreBeforeUse
            | FaultPoint::RetryBeforeAck => "worker",
            FaultPoint::WebhookBefore204 => "dispatcher",
        }
    }

    /// Aborts the process if it is armed at this point and this is the pass to strike on.
    pub fn strike(self) {
        let Some(armed) = ARMED.get_or_init(|| Armed::from_env().ok().flatten()) else {
            return;
        };
        if armed.point != self {
            return;
        }
        let pass = armed.passes.fetch_add(1, Ordering::Relaxed) + 1;
        if pass == armed.on_pass {
            tracing::error!(
                point = self.name(),
                pass,
                "fault point: aborting the process now"
            );
            std::process::abort();
        }
    }
}

impl std::fmt::Display for FaultPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for FaultPoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FaultPoint::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = FaultPoint::ALL.iter().map(|p| p.name()).collect();
                format!("unknown fault point {s:?} (known: {})", known.join(", "))
            })
    }
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

struct Armed {
    point: FaultPoint,
    on_pass: u64,
    passes: AtomicU64,
}

impl Armed {
    fn from_env() -> Result<Option<Armed>, String> {
        match std::env::var(FAULT_POINT_ENV) {
            Ok(value) if !value.trim().is_empty() => parse(value.trim()).map(Some),
            _ => Ok(None),
        }
    }
}

/// `<name>` or `<name>@<n>`.
fn parse(value: &str) -> Result<Armed, String> {
    let (name, on_pass) = match value.split_once('@') {
        Some((name, n)) => match n.parse::<u64>() {
            Ok(n) if n >= 1 => (name, n),
            _ => {
                return Err(format!(
                    "{FAULT_POINT_ENV}={value:?}: the pass after @ must be a whole number from 1"
                ));
            }
        },
        None => (value, 1),
    };
    let point = name
        .parse()
        .map_err(|e| format!("{FAULT_POINT_ENV}={value:?}: {e}"))?;
    Ok(Armed {
        point,
        on_pass,
        passes: AtomicU64::new(0),
    })
}

/// Reads `FITLINK_FAULT_POINT` once at start-up: a misspelt point is refused with an error
/// that lists the known ones, instead of a test that never strikes. Says so in the log when a
/// point is armed, since an armed process is meant to die.
pub fn arm_from_env() -> anyhow::Result<()> {
    let armed = Armed::from_env().map_err(anyhow::Error::msg)?;
    if let Some(armed) = &armed {
        tracing::warn!(
            point = armed.point.name(),
            on_pass = armed.on_pass,
            "fault point armed: this process aborts when it gets there"
        );
    }
    let _ = ARMED.set(armed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_a_misspelt_point_lists_the_known_ones() {
        for point in FaultPoint::ALL {
            assert_eq!(point.name().parse::<FaultPoint>(), Ok(point));
        }
        let err = "commit-after-ack".parse::<FaultPoint>().unwrap_err();
        assert!(
            err.contains("commit-before-ack") && err.contains("webhook-before-204"),
            "{err}"
        );
    }

    #[test]
    fn a_pass_count_is_read_and_checked() {
        let armed = parse("retry-before-ack@3").unwrap();
        assert_eq!(
            (armed.point, armed.on_pass),
            (FaultPoint::RetryBeforeAck, 3)
        );
        assert_eq!(parse("grant-before-publish").unwrap().on_pass, 1);
        for bad in [
            "grant-before-publish@0",
            "grant-before-publish@x",
            "nowhere@2",
        ] {
            let err = parse(bad).err().expect(bad);
            assert!(err.contains(FAULT_POINT_ENV), "{err}");
        }
    }
}
