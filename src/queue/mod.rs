//! The queue between scheduling and pushing: RabbitMQ in production, an in-process queue for
//! single-machine runs. A message carries a batch of notification ids; the notifications'
//! state lives in the database, so a message delivered twice is harmless.

mod amqp;
mod memory;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use amqp::{AmqpQueue, AmqpSettings, LONGEST_DELAY};
pub use memory::MemoryQueue;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueMessage {
    pub notification_ids: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue is closed")]
    Closed,
    #[error("message broker: {0}")]
    Broker(String),
    #[error("the broker refused to store a message")]
    Refused,
    #[error("stopping before the broker took the message")]
    Abandoned,
}

/// Confirms a delivery to the queue once its outcome is recorded.
#[async_trait]
pub trait Acker: Send {
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
}

pub struct Delivery {
    pub message: QueueMessage,
    acker: Box<dyn Acker>,
}

impl Delivery {
    pub fn new(message: QueueMessage, acker: Box<dyn Acker>) -> Self {
        Delivery { message, acker }
    }

    pub async fn ack(self) -> Result<(), QueueError> {
        self.acker.ack().await
    }
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Notification ids per message. A worker claims and settles a message's ids in one
    /// transaction each, so more ids a message means fewer transactions per SMS.
    fn ids_per_message(&self) -> usize;
    /// Whether what it holds outlives this process, as a broker's queue does. Scheduling into
    /// a queue that does not writes its notifications `queued` as the build renders them (see
    /// `billing::Handoff`): waiting for its confirm would prove nothing a crash keeps.
    fn durable(&self) -> bool;
    /// `ids` as this queue's messages, in order.
    fn messages(&self, ids: &[String]) -> Vec<QueueMessage> {
        ids.chunks(self.ids_per_message()).map(|c| QueueMessage { notification_ids: c.to_vec() }).collect()
    }
    /// Publishes to the main queue; returns once the queue holds every message (confirmed).
    async fn publish(&self, messages: &[QueueMessage]) -> Result<(), QueueError>;
    /// Publishes a message that comes back to the main queue after `delay`.
    async fn publish_later(&self, message: &QueueMessage, delay: Duration) -> Result<(), QueueError>;
    /// Parks a message for the operator: the dead-letter path of notifications that failed.
    async fn publish_dead(&self, message: &QueueMessage) -> Result<(), QueueError>;
    /// The next delivery; `None` once `stop` is cancelled (or an in-process queue is closed
    /// and drained).
    async fn next(&self, stop: &CancellationToken) -> Result<Option<Delivery>, QueueError>;
    /// Messages waiting in the main queue.
    async fn depth(&self) -> Result<u64, QueueError>;
    /// Messages waiting anywhere: the main queue and every holding queue of delayed retries
    /// (not those delivered to a worker and not yet acked).
    async fn waiting(&self) -> Result<u64, QueueError>;
}
