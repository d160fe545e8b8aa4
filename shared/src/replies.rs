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
    /// a fast answer cannot arrive before anyone listens.
    pub fn expect(&self, request_id: Uuid) -> oneshot::Receiver<R> {
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .expect("reply waiters lock")
            .insert(request_id, tx);
        rx
    }

    /// Stops waiting for `request_id` (the request failed to publish, or the wait timed out).
    pub fn forget(&self, request_id: Uuid) {
        self.waiting
            .lock()
            .expect("reply waiters lock")
            .remove(&request_id);
    }
}
