//! SMS gateways. `sink` appends each message to a JSON-lines outbox for trials without a
//! gateway; it is not rate-limited.

mod sink;

use async_trait::async_trait;
use serde::Serialize;

pub use sink::SinkGateway;

/// One SMS as handed to a gateway; `id` is the notification id, used as idempotency key.
#[derive(Debug, Clone, Serialize)]
pub struct OutboundSms<'a> {
    pub id: &'a str,
    pub to: &'a str,
    pub from: &'a str,
    pub text: &'a str,
    pub encoding: &'a str,
    pub segments: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("gateway outbox: {0}")]
    Outbox(#[from] std::io::Error),
}

#[async_trait]
pub trait Gateway: Send + Sync {
    /// Sends a batch; one result per message, in order, with the gateway's message id.
    async fn send_batch(&self, messages: &[OutboundSms<'_>]) -> Vec<Result<String, GatewayError>>;
}
