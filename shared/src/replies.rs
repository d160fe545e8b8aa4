//! Waiting for the writer: a process that must not go on before the writer has committed
//! something (a worker's rotated refresh token, the portal's new consent, a withdrawal) names its
//! own reply queue in the command and waits there for the writer's answer, which the writer sends
//! only after its transaction committed.
//!
//! The reply queue is server-named, exclusive and auto-deleted: it disappears with the process,
//! so an answer for a process that died has nowhere to go and is dropped by the broker, which is
//! right (nobody is waiting for it; what was committed stays committed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;
use uuid::Uuid;

/// A reply the writer sends: something that names the request it answers.
pub trait Reply: DeserializeOwned + Send + 'static {
    fn request_id(&self) -> Uuid;
}

impl Reply for crate::messages::WriterReply {
    fn request_id(&self) -> Uuid {
        self.request_id
    }
}

impl Reply for crate::messages::CredentialStored {
    fn request_id(&self) -> Uuid {
        self.job_id
    }
}

impl Reply for crate::messages::ResealApplied {
    fn request_id(&self) -> Uuid {
        self.request_id
    }
}

type Waiters<R> = Arc<Mutex<HashMap<Uuid, oneshot::Sender<R>>>>;

/// This process's reply queue and the requests waiting on it.
pub struct ReplyQueue<R: Reply> {
    queue: String,
    waiting: Waiters<R>,
    /// Kept open for as long as the queue is wanted: closing it ends the consumer.
    _channel: Channel,
}

impl<R: Reply> Clone for ReplyQueue<R> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            waiting: self.waiting.clone(),
            _channel: self._channel.clone(),
        }
    }
}

impl<R: Reply> ReplyQueue<R> {
    /// Declares the reply queue on `conn` and starts routing replies to whoever waits for them.
    pub async fn start(conn: &Connection) -> lapin::Result<Self> {
        let channel = conn.create_channel().await?;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let mut replies = channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let waiting: Waiters<R> = Arc::default();
        let routes = waiting.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = replies.next().await {
                match serde_json::from_slice::<R>(&delivery.data) {
                    Ok(reply) => {
                        let waiter = routes
                            .lock()
                            .expect("reply waiters lock")
                            .remove(&reply.request_id());
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(reply);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "unreadable writer reply ignored"),
                }
            }
        });
        Ok(Self {
            queue: queue.name().as_str().to_owned(),
            waiting,
            _channel: channel,
        })
    }

    /// The queue the writer should answer on (put it in the command's `reply_to`).
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Registers interest in the answer to `request_id`; call before publishing the request, so
    /// a fast answer cannot arrive before anyone listens. Dropping the [`Pending`] (the request
    /// failed to publish, or its wait ended) removes the waiter.
    pub fn expect(&self, request_id: Uuid) -> Pending<R> {
        let (tx, answer) = oneshot::channel();
        self.waiting
            .lock()
            .expect("reply waiters lock")
            .insert(request_id, tx);
        Pending {
            request_id,
            answer,
            waiting: self.waiting.clone(),
        }
    }

    /// Requests waiting for an answer on this queue now (what the bound tests count).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting.lock().expect("reply waiters lock").len()
    }
}

/// One request's wait for its answer. The queue keeps a waiter only while its `Pending` lives,
/// so the waiters are bounded by the requests in flight: a writer that never answers leaves
/// nothing behind once the caller's wait ends.
pub struct Pending<R: Reply> {
    request_id: Uuid,
    answer: oneshot::Receiver<R>,
    waiting: Waiters<R>,
}

/// No answer came within the wait (no writer ran, or it has not got to the request yet). The
/// request itself stays queued and is applied when a writer runs; only the wait is over.
#[derive(Debug, thiserror::Error)]
#[error("no answer from the writer within {} s", .0.as_secs())]
pub struct NoAnswer(pub Duration);

impl<R: Reply> Pending<R> {
    /// Waits at most `within` for the writer's answer.
    pub async fn answer_within(mut self, within: Duration) -> Result<R, NoAnswer> {
        match tokio::time::timeout(within, &mut self.answer).await {
            Ok(Ok(reply)) => Ok(reply),
            // Timed out, or the queue's consumer ended (the connection closed): no answer.
            _ => Err(NoAnswer(within)),
        }
    }
}

impl<R: Reply> Drop for Pending<R> {
    fn drop(&mut self) {
        self.waiting
            .lock()
            .expect("reply waiters lock")
            .remove(&self.request_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{self, Publisher};
    use crate::config::BrokerArgs;
    use crate::messages::ResealApplied;

    async fn connection() -> Connection {
        let url = std::env::var("FITLINK_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
        broker::connect(&BrokerArgs::new(url, "t-replies"), "replies-test")
            .await
            .expect("RabbitMQ must be running on 127.0.0.1:5672 (or set FITLINK_AMQP_URL)")
    }

    fn applied(request_id: Uuid) -> ResealApplied {
        ResealApplied {
            request_id,
            replaced: 3,
            changed_since_read: 0,
        }
    }

    /// The bound on the reply map: a writer that never answers (none runs) costs each caller
    /// its wait, and leaves no waiter behind, however many requests went unanswered.
    #[tokio::test]
    async fn unanswered_requests_end_their_wait_and_leave_no_waiter() {
        let conn = connection().await;
        let replies = ReplyQueue::<ResealApplied>::start(&conn).await.unwrap();
        let waits: Vec<_> = (0..100).map(|_| replies.expect(Uuid::now_v7())).collect();
        assert_eq!(replies.waiting(), 100);
        let within = Duration::from_millis(50);
        let ended =
            futures_util::future::join_all(waits.into_iter().map(|p| p.answer_within(within)));
        for outcome in ended.await {
            assert_eq!(outcome.expect_err("no answer").0, within);
        }
        assert_eq!(replies.waiting(), 0, "every ended wait removed its waiter");

        // A request that was never published (its publish failed) is dropped unawaited.
        drop(replies.expect(Uuid::now_v7()));
        assert_eq!(replies.waiting(), 0);
        let _ = conn.close(200, "test done".into()).await;
    }

    /// An answer goes to the request it names and to no other, and removes its waiter.
    #[tokio::test]
    async fn an_answer_reaches_the_request_it_names() {
        let conn = connection().await;
        let replies = ReplyQueue::<ResealApplied>::start(&conn).await.unwrap();
        let (answered, unanswered) = (Uuid::now_v7(), Uuid::now_v7());
        let first = replies.expect(answered);
        let second = replies.expect(unanswered);
        Publisher::open(&conn)
            .await
            .unwrap()
            .publish_json(replies.queue(), &applied(answered), Vec::new())
            .await
            .unwrap();
        let reply = first.answer_within(Duration::from_secs(30)).await.unwrap();
        assert_eq!(reply, applied(answered));
        assert_eq!(replies.waiting(), 1, "only the unanswered request waits");
        assert!(
            second
                .answer_within(Duration::from_millis(50))
                .await
                .is_err()
        );
        assert_eq!(replies.waiting(), 0);
        let _ = conn.close(200, "test done".into()).await;
    }
}
