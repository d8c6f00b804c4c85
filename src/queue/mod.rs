//! The queue between scheduling and pushing. A message carries a batch of notification ids;
//! the notifications' state lives in the database, so a message delivered twice is harmless.

mod memory;

use async_trait::async_trait;

pub use memory::MemoryQueue;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue is closed")]
    Closed,
}

/// Confirms a delivery to the queue once its outcome is recorded.
#[async_trait]
pub trait Acker: Send {
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
}

pub struct Delivery {
    pub notification_ids: Vec<String>,
    acker: Box<dyn Acker>,
}

impl Delivery {
    pub fn new(notification_ids: Vec<String>, acker: Box<dyn Acker>) -> Self {
        Delivery { notification_ids, acker }
    }

    pub async fn ack(self) -> Result<(), QueueError> {
        self.acker.ack().await
    }
}

#[async_trait]
pub trait Queue: Send + Sync {
    async fn publish(&self, notification_ids: Vec<String>) -> Result<(), QueueError>;
    /// The next delivery; `None` once the queue is closed and everything was acked.
    async fn next(&self) -> Result<Option<Delivery>, QueueError>;
    /// No more publishing: consumers stop when what is left has been acked.
    fn close(&self);
}
