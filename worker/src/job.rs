//! Running one sync job: access token, latest device sync, daily summaries, then every slice of
//! `[from, latest sync)` in order, each published to the writer as soon as it is fetched.
//!
//! Slices are published one at a time and confirmed, so memory stays bounded by one slice
//! whatever the backfill's length, and a failure part-way keeps what was already published
//! (the retry resumes after the last confirmed slice).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};

use fitlink_shared::broker::{Publisher, Topology, long_string};
use fitlink_shared::domain::{ParticipantId, Slice, UtcInstant, local_days};
use fitlink_shared::errors::SyncError;
use fitlink_shared::messages::{
    CredentialRotation, PARTICIPANT_HEADER, SliceResult, SyncJob, WriterCommand,
};
use fitlink_shared::provider::{DailySummaries, HealthProvider, RequestBudget, Session};
use fitlink_shared::secret::{Secret, TokenKey};

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
}

/// A failure, with how far the job got: a retry starts from `resume_from`.
#[derive(Debug)]
pub struct Failed {
    pub error: SyncError,
    pub resume_from: UtcInstant,
}

/// Access tokens still valid, per participant, so a job soon after another does not refresh
/// again. Only the worker process that refreshed can use its cached token.
#[derive(Default)]
pub struct AccessTokens(Mutex<HashMap<ParticipantId, CachedToken>>);

/// An access token and when it expires.
type CachedToken = (Secret<String>, DateTime<Utc>);

/// Refresh a token this long before it expires, so it cannot expire mid-job.
const TOKEN_SAFETY_MARGIN: TimeDelta = TimeDelta::minutes(10);

impl AccessTokens {
    fn get(&self, participant: &ParticipantId) -> Option<Secret<String>> {
        let cache = self.0.lock().expect("token cache lock");
        cache
            .get(participant)
            .filter(|(_, expires)| *expires > Utc::now() + TOKEN_SAFETY_MARGIN)
            .map(|(token, _)| token.clone())
    }

    fn put(&self, participant: ParticipantId, token: Secret<String>, expires: DateTime<Utc>) {
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

/// What a job needs from its worker.
pub struct JobContext<'a, P> {
    pub provider: &'a P,
    pub key: &'a TokenKey,
    pub tokens: &'a AccessTokens,
    pub publisher: &'a Publisher,
    pub topology: &'a Topology,
    pub shape: JobShape,
}

impl<P: HealthProvider> JobContext<'_, P> {
    pub async fn run(&self, job: &SyncJob) -> Result<Synced, Failed> {
        let mut resume_from = job.from;
        let result = self.sync(job, &mut resume_from).await;
        result.map_err(|error| {
            self.tokens.evict(&job.participant_id);
            Failed { error, resume_from }
        })
    }

    async fn sync(&self, job: &SyncJob, resume_from: &mut UtcInstant) -> Result<Synced, SyncError> {
        let session = Session {
            access_token: self.access_token(job).await?,
            budget: RequestBudget::new(self.provider.requests_per_minute()),
        };
        let latest = self.provider.latest_device_sync(&session).await?;
        let time_zone = match self.provider.time_zone(&session).await? {
            Some(zone) => Some(zone),
            None => job.time_zone.clone(),
        };
        let from = job.from.get();
        // Whole minutes only: the minute in progress at the device's sync may still grow.
        let device_end = latest
            .map(|t| t.duration_trunc(TimeDelta::minutes(1)).unwrap_or(t))
            .unwrap_or(from)
            .max(from);
        let end = device_end.min(from + self.shape.max_window);
        let continues = end < device_end;

        let summary_days = local_days(
            from - TimeDelta::days(self.shape.summary_lookback_days),
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
            *resume_from = slice.end;
        }
        Ok(Synced {
            synced_to: UtcInstant::new(end),
            latest_device_sync: latest.map(UtcInstant::new),
            time_zone,
            slices: count,
            continues,
        })
    }

    /// A cached access token, or a fresh one. A rotated refresh token is made durable (confirmed
    /// by the broker on the way to the writer) before the new access token is used.
    async fn access_token(&self, job: &SyncJob) -> Result<Secret<String>, SyncError> {
        if let Some(token) = self.tokens.get(&job.participant_id) {
            return Ok(token);
        }
        let refresh_token = self
            .key
            .open(&job.participant_id, &job.sealed_refresh_token)
            .map_err(|e| SyncError::Poison {
                reason: e.to_string(),
            })?;
        let grant = self.provider.refresh(&refresh_token).await?;
        if let Some(rotated) = &grant.rotated_refresh_token {
            let rotation = WriterCommand::RotateCredential(CredentialRotation {
                job_id: job.job_id,
                participant_id: job.participant_id.clone(),
                sealed_refresh_token: self.key.seal(&job.participant_id, rotated),
            });
            self.publish_result(job, &rotation).await?;
        }
        self.tokens.put(
            job.participant_id.clone(),
            grant.access_token.clone(),
            grant.expires_at,
        );
        Ok(grant.access_token)
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
