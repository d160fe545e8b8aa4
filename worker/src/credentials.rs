//! Access tokens and refresh-token rotation.
//!
//! A provider that rotates refresh tokens (legacy Fitbit: every refresh; Google: rarely)
//! invalidates the old one the moment it hands out the new one. The new token is therefore made
//! durable before anything else happens: published to the writer (broker-confirmed), committed
//! there with `synchronous=FULL`, and only when the writer says so (on this worker's own reply
//! queue) is the new access token used.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use fitlink_shared::domain::ParticipantId;
use fitlink_shared::messages::CredentialStored;
use fitlink_shared::replies::ReplyQueue;
use fitlink_shared::secret::Secret;

/// Access tokens still valid, per participant, so a job soon after another does not refresh
/// again. Only the worker process that refreshed can use its cached token.
#[derive(Default)]
pub struct AccessTokens(Mutex<HashMap<ParticipantId, CachedToken>>);

/// An access token and when it expires.
type CachedToken = (Secret<String>, DateTime<Utc>);

/// Refresh a token this long before it expires, so it cannot expire mid-job.
const TOKEN_SAFETY_MARGIN: TimeDelta = TimeDelta::minutes(10);

impl AccessTokens {
    pub fn get(&self, participant: &ParticipantId) -> Option<Secret<String>> {
        let cache = self.0.lock().expect("token cache lock");
        cache
            .get(participant)
            .filter(|(_, expires)| *expires > Utc::now() + TOKEN_SAFETY_MARGIN)
            .map(|(token, _)| token.clone())
    }

    pub fn put(&self, participant: ParticipantId, token: Secret<String>, expires: DateTime<Utc>) {
        self.0
            .lock()
            .expect("token cache lock")
            .insert(participant, (token, expires));
    }

    /// Forget a participant's token after any failure: it may be the reason (revoked, expired).
    pub fn evict(&self, participant: &ParticipantId) {
        self.0.lock().expect("token cache lock").remove(participant);
    }
}

/// How long a worker waits for the writer to commit a rotated refresh token before the job is
/// retried (the rotation stays queued for the writer; the retry carries the new token).
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);

/// This worker's reply queue, on which jobs wait for the writer's [`CredentialStored`]: the
/// writer answers a rotation only after committing it.
pub type RotationCommits = ReplyQueue<CredentialStored>;
