//! Sync errors, classified where they are born by what the caller must do next.
//!
//! The worker never inspects message strings to decide: it matches on [`SyncError`].

use std::time::Duration;

use crate::domain::ParticipantState;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SyncError {
    /// Worth retrying with backoff: 5xx, timeouts, connection resets, a broker hiccup.
    #[error("transient: {reason}")]
    Transient {
        reason: String,
        retry_after: Option<Duration>,
        /// The provider refused the access token (HTTP 401): it expired or its grant ended
        /// early. Worth one immediate try with a freshly refreshed token, whose refresh then
        /// tells whether the grant itself is gone.
        access_token_refused: bool,
    },
    /// The provider's quota for this participant is spent: retry at a time, without counting it
    /// as a failed attempt.
    #[error("rate limited: {reason}")]
    RateLimited {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Retrying will not help until someone acts; the participant's state records why.
    #[error("{state}: {reason}")]
    Permanent {
        state: ParticipantState,
        reason: String,
    },
    /// The message itself is unusable (cannot be decoded, a sealed token that does not open):
    /// dead-letter it with the reason.
    #[error("poison message: {reason}")]
    Poison { reason: String },
}

impl SyncError {
    pub fn transient(reason: impl Into<String>) -> Self {
        SyncError::Transient {
            reason: reason.into(),
            retry_after: None,
            access_token_refused: false,
        }
    }

    /// The provider refused the access token (HTTP 401 on a data call).
    pub fn access_token_refused(reason: impl Into<String>) -> Self {
        SyncError::Transient {
            reason: reason.into(),
            retry_after: None,
            access_token_refused: true,
        }
    }

    /// True for [`SyncError::access_token_refused`]: a fresh access token may succeed at once.
    pub fn is_access_token_refused(&self) -> bool {
        matches!(
            self,
            SyncError::Transient {
                access_token_refused: true,
                ..
            }
        )
    }

    pub fn permanent(state: ParticipantState, reason: impl Into<String>) -> Self {
        SyncError::Permanent {
            state,
            reason: reason.into(),
        }
    }

    /// Malformed provider data: permanent for the participant, so an engineer looks at it
    /// instead of the fleet hammering the provider.
    pub fn invalid_data(reason: impl Into<String>) -> Self {
        Self::permanent(ParticipantState::ProviderDataInvalid, reason)
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, SyncError::Transient { .. })
    }

    /// A short stable label for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            SyncError::Transient { .. } => "transient",
            SyncError::RateLimited { .. } => "rate_limited",
            SyncError::Permanent { .. } => "permanent",
            SyncError::Poison { .. } => "poison",
        }
    }
}
