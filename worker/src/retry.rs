//! What to do with a job that failed: retry later (through a delay queue), wait for the
//! provider's rate limit to reset (through the writer and the dispatcher), give up into the
//! dead-letter queue, or record a permanent state. Pure decisions, no I/O, so they are tested
//! without a broker.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};

use fitlink_shared::domain::ParticipantState;
use fitlink_shared::errors::SyncError;

/// Limits of the retry policy.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts (transient failures) before a job is dead-lettered. A rate limit spends none:
    /// a 429 storm slows a participant, it does not lose them to the dead-letter queue.
    pub max_attempts: u32,
}

/// The decision for a failed job.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Publish a copy to the delay queue of at least `delay`, then ack.
    Retry {
        delay: Duration,
        next_attempt: u32,
        reason: String,
    },
    /// The provider's rate limit is spent until `wait` from now: report it to the writer, which
    /// releases the claim so the dispatcher grants a new job when it resets.
    WaitForReset { wait: Duration, reason: String },
    /// Record the participant's new state; the job ends.
    Fail {
        state: ParticipantState,
        reason: String,
    },
    /// Put the job in the dead-letter queue with the reason.
    DeadLetter { reason: String },
}

/// Quota windows are per minute at Google: without `Retry-After`, come back in half a
/// minute, so a short storm costs little and a long one is paced.
const RATE_LIMIT_DEFAULT_DELAY: Duration = Duration::from_secs(30);

/// The longest wait a provider's rate limit is believed: beyond a day it is more likely a
/// garbled header than a quota, and the participant is asked again then.
const RATE_LIMIT_MAX_WAIT: Duration = Duration::from_secs(86_400);

impl RetryPolicy {
    pub fn decide(&self, error: SyncError, attempt: u32) -> Decision {
        match error {
            SyncError::Permanent { state, reason } => Decision::Fail { state, reason },
            SyncError::Poison { reason } => Decision::DeadLetter { reason },
            SyncError::Transient {
                reason,
                retry_after,
                ..
            } => {
                if attempt >= self.max_attempts {
                    return Decision::DeadLetter {
                        reason: format!("gave up after {attempt} attempts: {reason}"),
                    };
                }
                Decision::Retry {
                    delay: backoff(attempt).max(retry_after.unwrap_or_default()),
                    next_attempt: attempt + 1,
                    reason,
                }
            }
            SyncError::RateLimited {
                reason,
                retry_after,
            } => Decision::WaitForReset {
                wait: retry_after
                    .unwrap_or(RATE_LIMIT_DEFAULT_DELAY)
                    .min(RATE_LIMIT_MAX_WAIT),
                reason,
            },
        }
    }
}

/// Exponential backoff with jitter for the n-th attempt (1-based): about 5 s, 10 s, 20 s … up
/// to an hour. The delay queue rounds it up to the next tier.
fn backoff(attempt: u32) -> Duration {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(5))
        .with_max_delay(Duration::from_secs(3600))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .nth(attempt.saturating_sub(1) as usize)
        .unwrap_or(Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy { max_attempts: 3 };

    #[test]
    fn transient_failures_back_off_then_dead_letter() {
        let d = POLICY.decide(SyncError::transient("503"), 1);
        let Decision::Retry {
            delay,
            next_attempt,
            ..
        } = d
        else {
            panic!("{d:?}")
        };
        assert!(delay >= Duration::from_secs(5));
        assert_eq!(next_attempt, 2);
        assert!(matches!(
            POLICY.decide(SyncError::transient("503"), 3),
            Decision::DeadLetter { reason } if reason.contains("3 attempts") && reason.contains("503")
        ));
    }

    #[test]
    fn rate_limits_wait_as_told_and_never_dead_letter() {
        let limited = |retry_after| SyncError::RateLimited {
            reason: "429".into(),
            retry_after,
        };
        // Exactly as told (a legacy reset of 29 minutes is 29 minutes, not the next tier),
        // however many attempts the job has spent.
        assert_eq!(
            POLICY.decide(limited(Some(Duration::from_secs(29 * 60))), 3),
            Decision::WaitForReset {
                wait: Duration::from_secs(29 * 60),
                reason: "429".into()
            }
        );
        assert_eq!(
            POLICY.decide(limited(None), 1),
            Decision::WaitForReset {
                wait: RATE_LIMIT_DEFAULT_DELAY,
                reason: "429".into()
            }
        );
        assert!(matches!(
            POLICY.decide(limited(Some(Duration::from_secs(u32::MAX.into()))), 1),
            Decision::WaitForReset { wait, .. } if wait == RATE_LIMIT_MAX_WAIT
        ));
    }

    #[test]
    fn permanent_failures_become_states() {
        assert_eq!(
            POLICY.decide(
                SyncError::permanent(ParticipantState::Revoked, "invalid_grant"),
                1
            ),
            Decision::Fail {
                state: ParticipantState::Revoked,
                reason: "invalid_grant".into()
            }
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) < Duration::from_secs(11));
        assert!(backoff(4) >= Duration::from_secs(40));
        assert!(backoff(40) <= Duration::from_secs(7200));
    }
}
