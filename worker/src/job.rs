//! Running one sync job: access token, latest device sync, daily summaries, then every slice of
//! `[from, latest sync)` in order, each published to the writer as soon as it is fetched.
//!
//! Slices are published one at a time and confirmed, so memory stays bounded by one slice
//! whatever the backfill's length, and a failure part-way keeps what was already published
//! (the retry resumes after the last confirmed slice).
//!
//! A keep-alive job ([`SyncJob::touch_only`]) only refreshes the token — through the provider,
//! never from the cache, and a rotated refresh token is made durable exactly as in a sync — so an
//! idle participant's grant does not expire. It calls nothing else.

use chrono::{DurationRound, TimeDelta, Utc};

use fitlink_shared::broker::{Publisher, Topology, long_string};
use fitlink_shared::domain::{ParticipantState, Slice, UtcInstant, local_days};
use fitlink_shared::errors::SyncError;
use fitlink_shared::families::DeviceSnapshot;
use fitlink_shared::faults::FaultPoint;
use fitlink_shared::messages::{
    CredentialRotation, PARTICIPANT_HEADER, ProviderIdentity, SliceResult, SyncJob, WriterCommand,
};
use fitlink_shared::provider::{HealthProvider, Session};
use fitlink_shared::secret::{SealedToken, Secret, TokenKeys};

use crate::credentials::{AccessTokens, COMMIT_TIMEOUT, RotationCommits};

/// Tunables of how a job cuts its work.
#[derive(Clone, Copy, Debug)]
pub struct JobShape {
    /// Longest slice (must stay under 24 h: the original API's intraday range limit).
    pub slice: TimeDelta,
    /// Days before the cursor whose summaries are fetched again: providers restate recent days.
    pub summary_lookback_days: i64,
    /// Longest window one job syncs; a longer backfill continues in a follow-up job so a job
    /// stays well inside RabbitMQ's consumer timeout.
    pub max_window: TimeDelta,
}

/// How a job that did not fail ended.
#[derive(Debug)]
pub enum Ran {
    Synced(Synced),
    /// A keep-alive: the provider accepted the refresh token (a rotated one is stored).
    Touched,
}

/// How a sync job that did not fail ended.
#[derive(Debug)]
pub struct Synced {
    pub synced_to: UtcInstant,
    pub latest_device_sync: Option<UtcInstant>,
    pub time_zone: Option<String>,
    pub slices: u32,
    /// The backfill is longer than one job's window; a continuation must follow from `synced_to`.
    pub continues: bool,
    pub intraday_denied: bool,
    /// The account's identity, when the job was asked to learn it.
    pub identity: Option<ProviderIdentity>,
    pub progress: Progress,
}

/// A failure, with how far the job got.
#[derive(Debug)]
pub struct Failed {
    pub error: SyncError,
    pub progress: Progress,
}

/// What a job learnt on the way that its retry or continuation, or the writer, needs.
#[derive(Debug, Clone)]
pub struct Progress {
    /// A retry starts here: the end of the last slice the broker confirmed.
    pub resume_from: UtcInstant,
    /// The refresh token to use next (rotated during the job, or the job's own).
    pub token: SealedToken,
    /// The provider refused this refresh token.
    pub rejected_token: Option<SealedToken>,
    /// The provider's id for the participant's account, if the token refresh said.
    pub provider_user_id: Option<String>,
}

/// What a job needs from its worker.
pub struct JobContext<'a, P> {
    pub provider: &'a P,
    pub key: &'a TokenKeys,
    pub tokens: &'a AccessTokens,
    pub commits: &'a RotationCommits,
    pub publisher: &'a Publisher,
    pub topology: &'a Topology,
    pub shape: JobShape,
}

/// How this copy of a job reached the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Its first delivery, on its first attempt.
    First,
    /// Redelivered by the broker (a worker died holding it) or a retry copy. An earlier try
    /// may have refreshed the job's token and died before the rotation was stored; then only a
    /// refresh with the job's own token recovers it (the provider's grace window answers the
    /// same pair again), or, without a grace window, tells the writer the token is spent. A
    /// cached access token would skip that refresh and leave the provider's live token stored
    /// nowhere.
    Again,
}

impl<P: HealthProvider> JobContext<'_, P> {
    pub async fn run(&self, job: &SyncJob, arrival: Arrival) -> Result<Ran, Failed> {
        if arrival == Arrival::Again {
            self.tokens.evict(&job.participant_id);
        }
        let mut progress = Progress {
            resume_from: job.from,
            token: job.sealed_refresh_token.clone(),
            rejected_token: None,
            provider_user_id: None,
        };
        let ran = if job.touch_only {
            self.touch(job, &mut progress).await.map(|()| Ran::Touched)
        } else {
            match self.sync(job, &mut progress).await {
                // A cached access token can stop working before its time (the grant was
                // revoked or ran out). Before the job spends an attempt: once more, with a fresh
                // token, whose refresh tells whether the grant itself is gone. Only when nothing
                // was published yet, as the sync starts again from the job's start.
                Err(e) if e.is_access_token_refused() && progress.resume_from == job.from => {
                    self.tokens.evict(&job.participant_id);
                    self.sync(job, &mut progress).await
                }
                other => other,
            }
            .map(Ran::Synced)
        };
        match ran {
            Ok(Ran::Synced(synced)) => Ok(Ran::Synced(Synced { progress, ..synced })),
            Ok(Ran::Touched) => Ok(Ran::Touched),
            Err(error) => {
                self.tokens.evict(&job.participant_id);
                Err(Failed { error, progress })
            }
        }
    }

    async fn sync(&self, job: &SyncJob, progress: &mut Progress) -> Result<Synced, SyncError> {
        let mut session = Session::new(
            self.access_token(job, progress).await?,
            self.provider.request_budget(),
        );
        // The zone first: the legacy API's device sync times are local and need it.
        let time_zone = match self.provider.time_zone(&session).await? {
            Some(zone) => Some(zone),
            None => job.time_zone.clone(),
        };
        session.time_zone = time_zone.as_deref().and_then(|z| z.parse().ok());
        let paired = self.provider.paired_devices(&session).await?;
        // The latest of all devices, not the first (the prototype's fault).
        let latest = paired
            .iter()
            .filter_map(|d| d.last_sync_time.map(UtcInstant::get))
            .max();
        let mut devices = Some(DeviceSnapshot {
            // The participant's local day of the snapshot (one `device` row per device per day).
            date: local_days(Utc::now(), Utc::now(), time_zone.as_deref()).start,
            devices: paired
                .into_iter()
                .filter(|d| !d.device_id.is_empty())
                .collect(),
        });
        let identity = self.learn_identity(job, &session).await;
        let from = job.from.get();
        // Whole minutes only: the minute in progress at the device's sync may still grow.
        let device_end = latest
            .map(|t| t.duration_trunc(TimeDelta::minutes(1)).unwrap_or(t))
            .unwrap_or(from)
            .max(from);
        let end = device_end.min(from + self.shape.max_window);
        let continues = end < device_end;

        let look_back = from - TimeDelta::days(self.shape.summary_lookback_days);
        let summary_days = local_days(
            job.sync_from.map_or(look_back, |s| look_back.max(s.get())),
            end.max(from + TimeDelta::seconds(1)),
            time_zone.as_deref(),
        );
        let summaries = self
            .provider
            .daily_families(&session, summary_days.clone())
            .await?;

        let mut slices = Slice::split(from, end, self.shape.slice);
        if slices.is_empty() {
            // Nothing new from the device: still store the re-read summaries of recent days.
            slices.push(Slice {
                start: job.from,
                end: job.from,
            });
        }
        let count = slices.len() as u32;
        for (i, slice) in slices.into_iter().enumerate() {
            let intraday = if slice.start < slice.end {
                self.provider.intraday(&session, slice).await?
            } else {
                Default::default()
            };
            // Each slice carries the summaries of the local days it touches; the first also
            // carries the look-back days. Re-sending a day is harmless: summaries are upserted.
            let mut days = local_days(slice.start.get(), slice.end.get(), time_zone.as_deref());
            if i == 0 {
                days.start = summary_days.start;
            }
            let daily = summaries.for_days(&days);
            metrics::counter!("fitlink_worker_points_total", "family" => "heart_rate_intraday")
                .increment(intraday.heart_rate.len() as u64);
            metrics::counter!("fitlink_worker_points_total", "family" => "steps_intraday")
                .increment(intraday.steps.len() as u64);
            let result = WriterCommand::StoreSlice(SliceResult {
                job_id: job.job_id,
                participant_id: job.participant_id.clone(),
                provider: job.provider,
                slice,
                daily,
                // The first slice carries the devices as this job found them.
                devices: devices.take(),
                time_zone: time_zone.clone(),
                heart_rate: intraday.heart_rate,
                steps: intraday.steps,
            });
            self.publish_result(job, &result).await?;
            progress.resume_from = slice.end;
        }
        Ok(Synced {
            synced_to: UtcInstant::new(end),
            latest_device_sync: latest.map(UtcInstant::new),
            time_zone,
            slices: count,
            continues,
            intraday_denied: session.intraday_denied().is_some(),
            identity,
            progress: progress.clone(),
        })
    }

    /// Asks who the account is when the writer does not know yet. Best effort: the sync does not
    /// depend on it, so a failure is logged and asked again next job.
    async fn learn_identity(&self, job: &SyncJob, session: &Session) -> Option<ProviderIdentity> {
        if !job.identity_unknown {
            return None;
        }
        match self.provider.account_identity(session).await {
            Ok(identity) => identity,
            Err(error) => {
                tracing::warn!(error = %error, "cannot learn the account's identity; asking again next job");
                None
            }
        }
    }

    /// A keep-alive: the refresh token must reach the provider (that is what keeps the grant
    /// alive), so a cached access token does not count.
    async fn touch(&self, job: &SyncJob, progress: &mut Progress) -> Result<(), SyncError> {
        self.tokens.evict(&job.participant_id);
        self.access_token(job, progress).await.map(drop)
    }

    /// A cached access token, or a fresh one. A rotated refresh token is made durable —
    /// confirmed by the broker and committed by the writer — before the new access token is
    /// used for anything.
    async fn access_token(
        &self,
        job: &SyncJob,
        progress: &mut Progress,
    ) -> Result<Secret<String>, SyncError> {
        if let Some(token) = self.tokens.get(&job.participant_id) {
            return Ok(token);
        }
        let refresh_token = self
            .key
            .open(&job.participant_id, &progress.token)
            .map_err(|e| SyncError::Poison {
                reason: e.to_string(),
            })?;
        let grant = match self.provider.refresh(&refresh_token).await {
            Ok(grant) => grant,
            Err(e) => {
                let class = match &e {
                    SyncError::Permanent {
                        state: ParticipantState::Revoked | ParticipantState::NeedsReconsent,
                        ..
                    } => "revoked",
                    SyncError::Transient { .. } => "transient",
                    SyncError::RateLimited { .. } => "rate_limited",
                    _ => "other",
                };
                metrics::counter!("fitlink_token_refresh_failures_total",
                    "provider" => job.provider.as_str(), "class" => class)
                .increment(1);
                if class == "revoked" {
                    // The writer checks whether a newer token was stored since (a worker that
                    // rotated it died): then it retries once with that one.
                    progress.rejected_token = Some(progress.token.clone());
                }
                return Err(e);
            }
        };
        progress.provider_user_id = grant.provider_user_id.clone();
        if let Some(rotated) = &grant.rotated_refresh_token {
            FaultPoint::RefreshBeforeStore.strike();
            let sealed = self.key.seal(&job.participant_id, rotated);
            self.store_rotation(job, &progress.token, sealed.clone())
                .await?;
            progress.token = sealed;
            FaultPoint::StoreBeforeUse.strike();
        }
        self.tokens.put(
            job.participant_id.clone(),
            grant.access_token.clone(),
            grant.expires_at,
        );
        Ok(grant.access_token)
    }

    /// Publishes a rotated refresh token to the writer and waits until it is committed.
    async fn store_rotation(
        &self,
        job: &SyncJob,
        replaces: &SealedToken,
        sealed: SealedToken,
    ) -> Result<(), SyncError> {
        let committed = self.commits.expect(job.job_id);
        let rotation = WriterCommand::RotateCredential(CredentialRotation {
            job_id: job.job_id,
            participant_id: job.participant_id.clone(),
            sealed_refresh_token: sealed,
            replaces: Some(replaces.clone()),
            reply_to: Some(self.commits.queue().to_owned()),
        });
        self.publish_result(job, &rotation).await?;
        match committed.answer_within(COMMIT_TIMEOUT).await {
            Ok(_stored) => Ok(()),
            Err(no_answer) => Err(SyncError::transient(format!(
                "the writer did not confirm the rotated refresh token ({no_answer}); it stays queued for the writer and the retry uses it"
            ))),
        }
    }

    async fn publish_result(
        &self,
        job: &SyncJob,
        command: &WriterCommand,
    ) -> Result<(), SyncError> {
        self.publisher
            .publish_json(
                self.topology.results_for(job.participant_id.as_str()),
                command,
                vec![(PARTICIPANT_HEADER, long_string(job.participant_id.as_str()))],
            )
            .await
            .map_err(|e| {
                SyncError::transient(format!("publishing a {} result: {e}", command.kind()))
            })
    }
}

#[cfg(test)]
mod touch_tests;
