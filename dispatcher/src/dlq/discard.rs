//! Discarding dead jobs: an operator decided a dead letter needs no replay (a participant who
//! left, a job superseded by a newer one). The console records who and why *before* calling
//! this; here the selected letters are acked away and every other one is handed back untouched,
//! as `dlq replay` does, so an interrupted discard never removes a letter it was not asked to.

use std::collections::HashSet;

use fitlink_shared::config::BrokerArgs;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use serde::Serialize;
use uuid::Uuid;

use super::{DeadLetter, describe, take_dead_jobs};

/// What a discard removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiscardReport {
    /// The dead letters removed from the jobs dead-letter queue.
    pub discarded: Vec<DeadLetter>,
    /// Selected job ids that were not in the queue (already replayed or discarded).
    pub not_found: Vec<Uuid>,
}

/// Removes the dead jobs named by `job_ids` from the jobs dead-letter queue.
pub async fn dlq_discard(broker: &BrokerArgs, job_ids: &[Uuid]) -> anyhow::Result<DiscardReport> {
    let (outbox, channel, queue, messages) = take_dead_jobs(broker, "dlq-discard").await?;
    let selected: HashSet<Uuid> = job_ids.iter().copied().collect();
    let mut report = DiscardReport::default();
    let mut seen = HashSet::new();
    let mut outcome = Ok(());
    for message in &messages {
        let letter = describe(&queue, &message.delivery);
        let chosen = letter.job_id.is_some_and(|j| selected.contains(&j));
        let settled = if chosen {
            seen.insert(letter.job_id.expect("chosen letters have a job id"));
            let acked = message.delivery.acker.ack(BasicAckOptions::default()).await;
            if acked.is_ok() {
                tracing::info!(job_id = ?letter.job_id, participant_id = ?letter.participant_id, "discarded a dead-lettered job");
                report.discarded.push(letter);
            }
            acked
        } else {
            let requeue = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            message.delivery.acker.nack(requeue).await
        };
        if let Err(error) = settled {
            // The channel is gone: everything not yet acked goes back by itself.
            outcome = Err(anyhow::Error::new(error).context(format!(
                "discard stopped after {} dead letter(s); the rest stay in the queue",
                report.discarded.len()
            )));
            break;
        }
    }
    let _ = channel.close(200, "OK".into()).await;
    outbox.close().await;
    outcome?;
    report.not_found = job_ids
        .iter()
        .filter(|id| !seen.contains(*id))
        .copied()
        .collect();
    Ok(report)
}
