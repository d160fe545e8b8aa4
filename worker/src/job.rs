//! Running one sync job: access token, latest device sync, daily summaries, then every slice of
//! `[from, latest sync)` in order, each published to the writer as soon as it is fetched.
//!
//! Slices are published one at a time and confirmed, so memory stays bounded by one slice
//! whatever the backfill's length, and a failure part-way keeps what was already published
//! (the retry resumes after the last confirmed slice).

use chrono::{DurationRound, NaiveDate, TimeDelta};

use fitlink_shared::broker::{Publisher, Topology, long_string};
use fitlink_shared::domain::{ParticipantState, Slice, UtcInstant, local_days};
use fitlink_shared::errors::SyncError;
use fitlink_shared::messages::{
    CredentialRotation, PARTICIPANT_HEADER, SliceResult, SyncJob, WriterCommand,
};
use fitlink_shared::provider::{DailySummaries, HealthProvider, Session};
use fitlink_shared::secret::{SealedToken, Secret, TokenKey};

use crate::credentials::{AccessTokens, COMMIT_TIMEOUT, ChaosPoint, RotationCommits};

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
pub struct Synced {
    pub synced_to: UtcInstant,
    pub latest_device_sync: Option<UtcInstant>,
    pub time_zone: Option<String>,
    pub slices: u32,
    /// The backfill is longer than one job's window; a continuation must follow from `synced_to`.
    pub continues: bool,
    pub intraday_denied: bool,
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
    pub key: &'a TokenKey,
    pub tokens: &'a AccessTokens,
    pub commits: &'a RotationCommits,
    pub publisher: &'a Publisher,
    pub topology: &'a Topology,
    pub shape: JobShape,
    pub chaos: Option<ChaosPoint>,
}

impl<P: HealthProvider> JobContext<'_, P> {
    pub async fn run(&self, job: &SyncJob) -> Result<Synced, Failed> {
        let mut progress = Progress {
            resume_from: job.from,
            token: job.sealed_refresh_token.clone(),
            rejected_token: None,
            provider_user_id: None,
        };
        match self.sync(job, &mut progress).await {
            Ok(synced) => Ok(Synced { progress, ..synced }),
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
        let latest = self.provider.latest_device_sync(&session).await?;
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
            .daily_summaries(&session, summary_days.clone())
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
            let day_summaries = summaries_for(&summaries, &days);
            metrics::counter!("fitlink_worker_points_total", "family" => "heart_rate_intraday")
                .increment(intraday.heart_rate.len() as u64);
            metrics::counter!("fitlink_worker_points_total", "family" => "steps_intraday")
                .increment(intraday.steps.len() as u64);
            let result = WriterCommand::StoreSlice(SliceResult {
                job_id: job.job_id,
                participant_id: job.participant_id.clone(),
                provider: job.provider,
                slice,
                activity: day_summaries.activity,
                heart_rate_zones: day_summaries.heart_rate_zones,
                resting_heart_rate: day_summaries.resting_heart_rate,
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
            progress: progress.clone(),
        })
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
                if matches!(
                    e,
                    SyncError::Permanent {
                        state: ParticipantState::Revoked | ParticipantState::NeedsReconsent,
                        ..
                    }
                ) {
                    // The writer checks whether a newer token was stored since (a worker that
                    // rotated it died): then it retries once with that one.
                    progress.rejected_token = Some(progress.token.clone());
                }
                return Err(e);
            }
        };
        progress.provider_user_id = grant.provider_user_id.clone();
        if let Some(rotated) = &grant.rotated_refresh_token {
            ChaosPoint::strike(self.chaos, ChaosPoint::BeforeStore);
            let sealed = self.key.seal(&job.participant_id, rotated);
            self.store_rotation(job, sealed.clone()).await?;
            progress.token = sealed;
            ChaosPoint::strike(self.chaos, ChaosPoint::AfterStore);
        }
        self.tokens.put(
            job.participant_id.clone(),
            grant.access_token.clone(),
            grant.expires_at,
        );
        Ok(grant.access_token)
    }

    /// Publishes a rotated refresh token to the writer and waits until it is committed.
    async fn store_rotation(&self, job: &SyncJob, sealed: SealedToken) -> Result<(), SyncError> {
        let committed = self.commits.expect(job.job_id);
        let rotation = WriterCommand::RotateCredential(CredentialRotation {
            job_id: job.job_id,
            participant_id: job.participant_id.clone(),
            sealed_refresh_token: sealed,
            reply_to: Some(self.commits.queue().to_owned()),
        });
        if let Err(e) = self.publish_result(job, &rotation).await {
            self.commits.forget(job.job_id);
            return Err(e);
        }
        match tokio::time::timeout(COMMIT_TIMEOUT, committed).await {
            Ok(Ok(())) => Ok(()),
            _ => {
                self.commits.forget(job.job_id);
                Err(SyncError::transient(format!(
                    "the writer did not confirm the rotated refresh token within {} s; it stays queued for the writer and the retry uses it",
                    COMMIT_TIMEOUT.as_secs()
                )))
            }
        }
    }

    async fn publish_result(
        &self,
        job: &SyncJob,
        command: &WriterCommand,
    ) -> Result<(), SyncError> {
        self.publisher
            .publish_json(
                &self.topology.results,
                command,
                vec![(PARTICIPANT_HEADER, long_string(job.participant_id.as_str()))],
            )
            .await
            .map_err(|e| {
                SyncError::transient(format!("publishing a {} result: {e}", command.kind()))
            })
    }
}

/// The rows of `all` whose local date is in `days`.
fn summaries_for(all: &DailySummaries, days: &std::ops::Range<NaiveDate>) -> DailySummaries {
    DailySummaries {
        activity: all
            .activity
            .iter()
            .filter(|d| days.contains(&d.date))
            .cloned()
            .collect(),
        heart_rate_zones: all
            .heart_rate_zones
            .iter()
            .filter(|d| days.contains(&d.date))
            .cloned()
            .collect(),
        resting_heart_rate: all
            .resting_heart_rate
            .iter()
            .filter(|d| days.contains(&d.date))
            .cloned()
            .collect(),
    }
}
