//! What an operator can do from the console, each through the same path as the CLI: a sync
//! request (`fitlink enqueue`), a consent link (`fitlink invite`), a dead-letter replay
//! (`fitlink dlq replay`) or discard. Each is first written to the audit (`operator_actions`,
//! through the writer); an action whose audit record cannot be published is not done.
//!
//! Replays of many dead letters run in the background: the page that started one shows its
//! progress ([`Replays`]) instead of holding the browser's request open.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use fitlink_shared::config::{BrokerArgs, DatabaseArgs, TokenKeyArgs};
use fitlink_shared::domain::{ParticipantId, Provider, UtcInstant};
use fitlink_shared::messages::{OperatorAction, WriterCommand, now_instant};
use indicatif::ProgressBar;
use serde_json::{Value, json};
use uuid::Uuid;

use super::session::Session;
use crate::dlq::{DiscardReport, ReplayReport, ReplaySelection, dlq_discard, dlq_replay_watched};
use crate::invite::{InviteArgs, IssuedInvitation, invite};
use crate::outbox::Outbox;

/// Job ids written into an audit row's detail; the count is always written.
const IDS_IN_DETAIL: usize = 50;

/// Where actions go and what they need.
#[derive(Clone)]
pub struct Actions {
    pub broker: BrokerArgs,
    pub database: DatabaseArgs,
    pub token_key: TokenKeyArgs,
    /// The portal's public URL, which consent links point at.
    pub portal_url: Option<String>,
    pub invitation_ttl_hours: u32,
}

impl Actions {
    /// Writes the audit record of an action about to be done.
    pub async fn record(
        &self,
        session: &Session,
        action: &str,
        participant: Option<&ParticipantId>,
        detail: Value,
    ) -> anyhow::Result<()> {
        let record = OperatorAction {
            action_id: Uuid::now_v7(),
            at: now_instant(),
            actor: session.user.clone(),
            role: session.role.as_str().to_owned(),
            action: action.to_owned(),
            participant_id: participant.cloned(),
            detail,
        };
        let outbox = Outbox::open(&self.broker, "console").await?;
        let sent = outbox
            .send(&WriterCommand::RecordOperatorAction(record))
            .await
            .context("cannot write the action to the audit, so it was not done");
        outbox.close().await;
        sent
    }

    /// "Sync now": a forced sync request, as `fitlink enqueue`. Returns the job id.
    pub async fn sync_now(&self, session: &Session, id: &ParticipantId) -> anyhow::Result<Uuid> {
        self.record(session, "sync_now", Some(id), json!({}))
            .await?;
        let report =
            crate::enqueue::enqueue(&self.broker, &self.database, &[id.to_string()], None).await?;
        Ok(report.jobs.first().map(|j| j.job_id).unwrap_or_default())
    }

    /// "New consent link" for one participant, for their current provider.
    pub async fn consent_link(
        &self,
        session: &Session,
        id: &ParticipantId,
        provider: Provider,
    ) -> anyhow::Result<IssuedInvitation> {
        self.record(
            session,
            "consent_link",
            Some(id),
            json!({ "provider": provider.as_str() }),
        )
        .await?;
        let mut report = invite(&self.invite_args(provider, vec![id.to_string()])).await?;
        report
            .invitations
            .pop()
            .context("the invitation was not issued")
    }

    /// Links for everyone who needs a consent, grouped by their provider.
    pub async fn consent_links_needing(
        &self,
        session: &Session,
        people: &[(ParticipantId, Provider)],
    ) -> anyhow::Result<Vec<IssuedInvitation>> {
        self.record(
            session,
            "consent_links_needing",
            None,
            json!({ "participants": people.len(), "first": first_ids(people.iter().map(|(p, _)| p)) }),
        )
        .await?;
        let mut issued = Vec::with_capacity(people.len());
        for provider in [Provider::GoogleHealth, Provider::Fitbit] {
            let ids: Vec<String> = people
                .iter()
                .filter(|(_, p)| *p == provider)
                .map(|(id, _)| id.to_string())
                .collect();
            if !ids.is_empty() {
                issued.extend(invite(&self.invite_args(provider, ids)).await?.invitations);
            }
        }
        Ok(issued)
    }

    fn invite_args(&self, provider: Provider, participants: Vec<String>) -> InviteArgs {
        InviteArgs {
            broker: self.broker.clone(),
            database: self.database.clone(),
            token_key: self.token_key.clone(),
            public_url: self.portal_url.clone(),
            portal_addr: None,
            provider,
            ttl_hours: self.invitation_ttl_hours,
            sync_from: None,
            backfill_days: 30,
            csv: false,
            needing_consent: false,
            participants,
        }
    }

    /// Starts replaying `jobs` (what the operator picked: one letter, a group, all) in the
    /// background; returns the replay to watch.
    pub async fn start_replay(
        &self,
        session: &Session,
        replays: &Replays,
        what: String,
        jobs: Vec<Uuid>,
    ) -> anyhow::Result<Arc<Replay>> {
        self.record(
            session,
            "dead_letters_retry",
            None,
            json!({ "what": what, "jobs": jobs.len(), "first": first_ids(&jobs) }),
        )
        .await?;
        let replay = Arc::new(Replay::new(&session.user, what, jobs.len()));
        replays.add(replay.clone());
        let (broker, database, running) =
            (self.broker.clone(), self.database.clone(), replay.clone());
        tokio::spawn(async move {
            let outcome = dlq_replay_watched(
                &broker,
                &database,
                ReplaySelection::Jobs(jobs),
                Some(&running.progress),
            )
            .await
            .map_err(|e| format!("{e:#}"));
            *running.outcome.lock().expect("replay outcome lock") = Some(outcome);
        });
        Ok(replay)
    }

    /// Discards `jobs` from the jobs dead-letter queue, recording `why`.
    pub async fn discard(
        &self,
        session: &Session,
        what: &str,
        why: &str,
        jobs: &[Uuid],
    ) -> anyhow::Result<DiscardReport> {
        self.record(
            session,
            "dead_letters_discard",
            None,
            json!({ "what": what, "why": why, "jobs": jobs.len(), "first": first_ids(jobs) }),
        )
        .await?;
        dlq_discard(&self.broker, jobs).await
    }
}

fn first_ids<T: ToString>(ids: impl IntoIterator<Item = T>) -> Vec<String> {
    ids.into_iter()
        .take(IDS_IN_DETAIL)
        .map(|id| id.to_string())
        .collect()
}

/// A replay running in the background, or finished.
pub struct Replay {
    pub id: Uuid,
    pub started_by: String,
    pub started_at: UtcInstant,
    /// What was picked, in words ("group: token refresh failed").
    pub what: String,
    /// Dead letters picked.
    pub jobs: usize,
    /// Participants replayed so far, of how many.
    pub progress: ProgressBar,
    /// `None` while running.
    pub outcome: Mutex<Option<Result<ReplayReport, String>>>,
}

impl Replay {
    fn new(started_by: &str, what: String, jobs: usize) -> Replay {
        Replay {
            id: Uuid::now_v7(),
            started_by: started_by.to_owned(),
            started_at: now_instant(),
            what,
            jobs,
            progress: ProgressBar::hidden(),
            outcome: Mutex::new(None),
        }
    }
}

/// The console's recent replays (the last [`Replays::KEPT`]), newest last.
#[derive(Default)]
pub struct Replays(Mutex<VecDeque<Arc<Replay>>>);

impl Replays {
    const KEPT: usize = 20;

    fn add(&self, replay: Arc<Replay>) {
        let mut all = self.0.lock().expect("replays lock");
        if all.len() == Self::KEPT {
            all.pop_front();
        }
        all.push_back(replay);
    }

    pub fn get(&self, id: Uuid) -> Option<Arc<Replay>> {
        let all = self.0.lock().expect("replays lock");
        all.iter().find(|r| r.id == id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The console remembers its last `KEPT` replays, and forgets the oldest, however many a
    /// coordinator starts.
    #[test]
    fn the_console_keeps_only_its_recent_replays() {
        let replays = Replays::default();
        let started: Vec<Arc<Replay>> = (0..3 * Replays::KEPT)
            .map(|n| {
                let replay = Arc::new(Replay::new("coordinator", format!("replay {n}"), 1));
                replays.add(replay.clone());
                replay
            })
            .collect();
        let (forgotten, kept) = started.split_at(started.len() - Replays::KEPT);
        assert!(forgotten.iter().all(|r| replays.get(r.id).is_none()));
        assert!(kept.iter().all(|r| replays.get(r.id).is_some()));
        assert_eq!(replays.0.lock().unwrap().len(), Replays::KEPT);
    }
}
