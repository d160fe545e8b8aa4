//! Many notifications, one sync request.
//!
//! Providers notify per data type and per upload, and redeliver what was not answered fast
//! enough, so one device sync arrives as a burst. Each webhook hands its notifications to the
//! [`Coalescer`] and answers at once; every `window` the coalescer publishes one
//! [`ProviderNotification`] per participant, carrying every notification digest it merged. The
//! writer then grants at most one job for them, and ignores digests it has already seen (a
//! redelivery a day later creates no work either).
//!
//! What is pending lives in memory for at most one window. A dispatcher that dies inside it
//! loses only a hint: the schedule's polling still syncs the participant (the safety net).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use fitlink_shared::domain::{ParticipantId, Provider, UtcInstant};
use fitlink_shared::messages::{NotifiedInterval, ProviderNotification, WriterCommand};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::outbox::Outbox;

/// One notification about one participant.
#[derive(Clone, Debug)]
pub(crate) struct Hint {
    pub participant_id: ParticipantId,
    pub provider: Provider,
    pub notification_id: String,
    pub data_type: String,
    pub intervals: Vec<NotifiedInterval>,
    pub received_at: UtcInstant,
}

/// What is pending for one participant.
#[derive(Debug)]
struct Pending {
    provider: Provider,
    ids: BTreeSet<String>,
    data_types: BTreeSet<String>,
    intervals: BTreeSet<NotifiedInterval>,
    received_at: UtcInstant,
}

impl Pending {
    /// Merges a hint, keeping at most [`MAX_IDS`] digests, [`MAX_DATA_TYPES`] data types and
    /// [`MAX_INTERVALS`] intervals. What the writer acts on survives the caps: it syncs from the
    /// earliest start, and past the interval cap the intervals become the one interval that
    /// covers them all (the earliest start kept). A digest left out only means that a
    /// redelivery of it later is not recognised as seen: at most one extra job, never a gap.
    fn merge(&mut self, hint: Hint) {
        if self.ids.len() < MAX_IDS {
            self.ids.insert(hint.notification_id);
        }
        if self.data_types.len() < MAX_DATA_TYPES {
            self.data_types.insert(hint.data_type);
        }
        self.intervals.extend(hint.intervals);
        if self.intervals.len() > MAX_INTERVALS {
            let start = self.intervals.iter().map(|i| i.start).min();
            let end = self.intervals.iter().map(|i| i.end).max();
            if let (Some(start), Some(end)) = (start, end) {
                self.intervals = BTreeSet::from([NotifiedInterval { start, end }]);
            }
        }
        self.received_at = self.received_at.max(hint.received_at);
    }

    fn command(&self, participant_id: &ParticipantId) -> WriterCommand {
        WriterCommand::ProviderNotified(ProviderNotification {
            notification_ids: self.ids.iter().cloned().collect(),
            participant_id: participant_id.clone(),
            provider: self.provider,
            data_types: self.data_types.iter().cloned().collect(),
            intervals: self.intervals.iter().cloned().collect(),
            received_at: self.received_at,
        })
    }
}

/// Hands hints to the coalescing task.
#[derive(Clone)]
pub(crate) struct Coalescer {
    hints: mpsc::Sender<Hint>,
}

/// Hints waiting to be merged. When this many are queued a webhook is answered 503 and the
/// provider delivers the notification again later (both providers redeliver what was not
/// accepted); nothing is held for it, and polling still syncs the participant meanwhile.
pub(crate) const HINT_QUEUE: usize = 10_000;
/// Participants pending at once. At this many the coalescer publishes at once instead of at
/// the window's end, and takes no new hint until that worked (the queue above fills, and
/// webhooks are answered 503), so a broker that is down cannot grow this without end.
pub(crate) const MAX_PENDING_PARTICIPANTS: usize = 50_000;
/// Digests kept for one participant within a window (see [`Pending::merge`]).
const MAX_IDS: usize = 1_000;
/// Data types kept for one participant within a window (informational: logs and the ledger).
const MAX_DATA_TYPES: usize = 64;
/// Intervals kept for one participant within a window before they are folded into one.
const MAX_INTERVALS: usize = 64;

/// The coalescer's queue is full: answer the provider "try again later".
#[derive(Debug)]
pub(crate) struct CoalescerFull;

/// How much the coalescer holds in memory: [`HINT_QUEUE`] and [`MAX_PENDING_PARTICIPANTS`]
/// (tests use small ones, to reach them).
#[derive(Clone, Copy, Debug)]
struct Limits {
    hint_queue: usize,
    max_pending: usize,
}

const LIMITS: Limits = Limits {
    hint_queue: HINT_QUEUE,
    max_pending: MAX_PENDING_PARTICIPANTS,
};

impl Coalescer {
    /// Starts the task that merges hints and publishes them every `window` (and once more when
    /// `shutdown` is cancelled).
    pub(crate) fn start(
        outbox: Arc<Outbox>,
        window: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self::start_with(outbox, window, shutdown, LIMITS)
    }

    fn start_with(
        outbox: Arc<Outbox>,
        window: Duration,
        shutdown: CancellationToken,
        limits: Limits,
    ) -> Self {
        let (hints, receiver) = mpsc::channel(limits.hint_queue);
        tokio::spawn(run(receiver, outbox, window, limits.max_pending, shutdown));
        Self { hints }
    }

    /// Queues a hint without waiting: a full queue is [`CoalescerFull`], for the webhook to
    /// refuse (the provider redelivers) rather than hold the request open.
    pub(crate) fn add(&self, hint: Hint) -> Result<(), CoalescerFull> {
        match self.hints.try_send(hint) {
            Ok(()) => Ok(()),
            // Counted by the webhook as `fitlink_webhook_requests_total{outcome="busy"}`.
            Err(mpsc::error::TrySendError::Full(_)) => Err(CoalescerFull),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::warn!("the coalescer has stopped; a notification is left to the schedule");
                Ok(())
            }
        }
    }
}

async fn run(
    mut receiver: mpsc::Receiver<Hint>,
    outbox: Arc<Outbox>,
    window: Duration,
    max_pending: usize,
    shutdown: CancellationToken,
) {
    let mut pending: BTreeMap<ParticipantId, Pending> = BTreeMap::new();
    // The first publish is a window after the start (not at once, with nothing pending).
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + window, window);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let full = pending.len() >= max_pending;
        tokio::select! {
            hint = receiver.recv(), if !full => match hint {
                Some(hint) => {
                    add(&mut pending, hint);
                    if pending.len() >= max_pending {
                        flush(&mut pending, &outbox).await;
                    }
                }
                None => break,
            },
            _ = ticker.tick() => flush(&mut pending, &outbox).await,
            _ = shutdown.cancelled() => break,
        }
    }
    while let Ok(hint) = receiver.try_recv() {
        add(&mut pending, hint);
    }
    flush(&mut pending, &outbox).await;
}

fn add(pending: &mut BTreeMap<ParticipantId, Pending>, hint: Hint) {
    match pending.get_mut(&hint.participant_id) {
        Some(p) => p.merge(hint),
        None => {
            let participant_id = hint.participant_id.clone();
            let mut p = Pending {
                provider: hint.provider,
                ids: BTreeSet::new(),
                data_types: BTreeSet::new(),
                intervals: BTreeSet::new(),
                received_at: hint.received_at,
            };
            p.merge(hint);
            pending.insert(participant_id, p);
        }
    }
}

/// Publishes one request per participant. One that fails to publish stays pending for the next
/// window.
async fn flush(pending: &mut BTreeMap<ParticipantId, Pending>, outbox: &Outbox) {
    if pending.is_empty() {
        return;
    }
    let batch = std::mem::take(pending);
    let mut published = 0usize;
    for (participant_id, p) in batch {
        match outbox.send(&p.command(&participant_id)).await {
            Ok(()) => {
                published += 1;
                metrics::counter!("fitlink_webhook_sync_requests_total").increment(1);
                tracing::debug!(%participant_id, merged = p.ids.len(), "asked the writer to sync after provider notifications");
            }
            Err(error) => {
                tracing::warn!(%participant_id, error = %error, "cannot publish a notified sync; trying again next window");
                pending.insert(participant_id, p);
            }
        }
    }
    if published > 0 {
        tracing::info!(
            participants = published,
            "asked the writer to sync participants their providers notified"
        );
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn hint(participant: &str, id: &str, start: &str) -> Hint {
        Hint {
            participant_id: ParticipantId::new(participant).unwrap(),
            provider: Provider::GoogleHealth,
            notification_id: id.into(),
            data_type: "steps".into(),
            intervals: vec![NotifiedInterval {
                start: UtcInstant::parse(start).unwrap(),
                end: UtcInstant::parse("2026-11-03T00:00:00Z").unwrap(),
            }],
            received_at: UtcInstant::parse("2026-11-03T00:00:00Z").unwrap(),
        }
    }

    #[test]
    fn duplicates_merge_into_one_request_per_participant() {
        let mut pending = BTreeMap::new();
        for _ in 0..1000 {
            add(&mut pending, hint("p1", "digest-a", "2026-11-02T10:00:00Z"));
        }
        add(&mut pending, hint("p1", "digest-b", "2026-11-02T09:00:00Z"));
        add(&mut pending, hint("p2", "digest-c", "2026-11-02T10:00:00Z"));
        assert_eq!(pending.len(), 2);
        let p1 = ParticipantId::new("p1").unwrap();
        let WriterCommand::ProviderNotified(n) = pending.remove(&p1).unwrap().command(&p1) else {
            panic!("not a notification");
        };
        assert_eq!(n.notification_ids, vec!["digest-a", "digest-b"]);
        assert_eq!(n.intervals.len(), 2);
        assert_eq!(n.intervals[0].start.to_text(), "2026-11-02T09:00:00Z");
    }

    #[test]
    fn a_full_queue_refuses_at_once_instead_of_holding_the_webhook() {
        let (hints, _receiver) = mpsc::channel(HINT_QUEUE);
        let coalescer = Coalescer { hints };
        for n in 0..HINT_QUEUE {
            let id = format!("digest-{n}");
            coalescer
                .add(hint("p1", &id, "2026-11-02T10:00:00Z"))
                .unwrap();
        }
        assert!(
            coalescer
                .add(hint("p1", "one-more", "2026-11-02T10:00:00Z"))
                .is_err()
        );
    }

    #[test]
    fn one_participant_holds_bounded_state_and_keeps_the_earliest_start() {
        let mut pending = BTreeMap::new();
        for n in 0..10 * MAX_IDS {
            let minute = n % (24 * 60);
            let start = format!("2026-11-02T{:02}:{:02}:00Z", minute / 60, minute % 60);
            let mut h = hint("p1", &format!("digest-{n}"), &start);
            h.data_type = format!("type-{n}");
            add(&mut pending, h);
        }
        let p = pending.values().next().unwrap();
        assert_eq!(p.ids.len(), MAX_IDS);
        assert_eq!(p.data_types.len(), MAX_DATA_TYPES);
        assert!(p.intervals.len() <= MAX_INTERVALS, "{}", p.intervals.len());
        let earliest = p.intervals.iter().map(|i| i.start).min().unwrap();
        assert_eq!(
            earliest.to_text(),
            "2026-11-02T00:00:00Z",
            "the sync still starts early enough"
        );
    }

    /// A fleet namespace of its own on the local broker, with the writer's queues declared.
    async fn outbox() -> (Arc<Outbox>, lapin::Channel) {
        let url = std::env::var("FITLINK_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
        let namespace = format!("t-coalesce-{}", uuid::Uuid::new_v4().simple());
        let args = fitlink_shared::config::BrokerArgs::new(url, namespace);
        let outbox = Outbox::open(&args, "coalesce-test")
            .await
            .expect("RabbitMQ must be running on 127.0.0.1:5672 (or set FITLINK_AMQP_URL)");
        let channel = outbox.conn.create_channel().await.unwrap();
        (Arc::new(outbox), channel)
    }

    async fn delete_queues(outbox: &Outbox, channel: &lapin::Channel) {
        for queue in outbox.topology.all_queues() {
            let _ = channel.queue_delete(queue.into(), Default::default()).await;
        }
    }

    /// A coalescer whose window (an hour) never ends within a test.
    fn hour_long_window(outbox: &Arc<Outbox>, limits: Limits) -> (Coalescer, CancellationToken) {
        let shutdown = CancellationToken::new();
        let window = Duration::from_secs(3600);
        let coalescer = Coalescer::start_with(outbox.clone(), window, shutdown.clone(), limits);
        (coalescer, shutdown)
    }

    /// At `max_pending` participants the coalescer publishes at once: with a window of an
    /// hour, only the early publish can bring the requests to the writer's queue.
    #[tokio::test]
    async fn at_max_pending_participants_it_publishes_at_once_not_at_the_window() {
        let (outbox, channel) = outbox().await;
        let limits = Limits {
            hint_queue: 16,
            max_pending: 3,
        };
        let (coalescer, shutdown) = hour_long_window(&outbox, limits);
        for participant in ["p1", "p2", "p3"] {
            coalescer
                .add(hint(participant, "digest", "2026-11-02T10:00:00Z"))
                .unwrap();
        }
        let queue = outbox.topology.results_default().to_owned();
        let mut deliveries = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                lapin::options::BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                Default::default(),
            )
            .await
            .unwrap();
        let mut notified = BTreeSet::new();
        while notified.len() < 3 {
            let delivery = tokio::time::timeout(Duration::from_secs(30), deliveries.next())
                .await
                .expect("the early publish, within 30 s of a one-hour window")
                .unwrap()
                .unwrap();
            let command: WriterCommand = serde_json::from_slice(&delivery.data).unwrap();
            let WriterCommand::ProviderNotified(n) = command else {
                panic!("not a notification: {command:?}");
            };
            notified.insert(n.participant_id.as_str().to_owned());
        }
        assert_eq!(
            notified,
            BTreeSet::from(["p1".into(), "p2".into(), "p3".into()])
        );
        shutdown.cancel();
        delete_queues(&outbox, &channel).await;
    }

    /// While the cap is reached and nothing can be published (the broker is gone), the
    /// coalescer takes no more hints: the webhook queue fills and further hints are refused (the
    /// webhook answers 503), so memory holds at most `max_pending` participants plus the queue.
    #[tokio::test]
    async fn at_the_cap_with_the_broker_gone_hints_are_refused_not_held() {
        let (outbox, channel) = outbox().await;
        delete_queues(&outbox, &channel).await;
        outbox.close().await;
        let limits = Limits {
            hint_queue: 2,
            max_pending: 3,
        };
        let (coalescer, shutdown) = hour_long_window(&outbox, limits);
        let (mut accepted, mut refused) = (0, 0);
        for n in 0..200 {
            match coalescer.add(hint(&format!("p{n}"), "digest", "2026-11-02T10:00:00Z")) {
                Ok(()) => accepted += 1,
                Err(CoalescerFull) => refused += 1,
            }
            // Lets the coalescer take what it will between hints.
            tokio::task::yield_now().await;
        }
        assert!(
            accepted <= limits.max_pending + limits.hint_queue,
            "{accepted} hints accepted past the bound"
        );
        assert_eq!(accepted + refused, 200);
        shutdown.cancel();
    }
}
