//! SMS gateways behind one trait: `sink` appends to a JSON-lines outbox for trials without a
//! gateway; `http` speaks the generic protocol with idempotency keys; `jasmin` speaks the
//! Jasmin SMS gateway's HTTP API, which has no idempotency key; `smpp` binds to an SMSC.
//!
//! Every failure is classified so the worker can decide: retry later, slow down, give up, or
//! (for an ambiguous failure on a gateway without idempotency) never resend.

mod http;
mod jasmin;
pub mod mock;
mod sink;
pub mod smpp;
pub mod smsc;

use crate::domain::delivery::Idempotency;
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;

pub use http::HttpGateway;
pub use jasmin::JasminGateway;
pub use sink::SinkGateway;
pub use smpp::SmppGateway;

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// The gateway asks us to slow down; honour `retry_after` when it says.
    #[error("gateway asks to slow down")]
    RateLimited { retry_after: Option<Duration> },
    /// The message was certainly not accepted; sending it again is safe.
    #[error("gateway failed temporarily: {0}")]
    Transient(String),
    /// The request may have been accepted (timeout or reset after it left).
    #[error("gateway outcome unknown: {0}")]
    Ambiguous(String),
    /// The gateway refused this message for good.
    #[error("gateway refused the message: {0}")]
    Permanent(String),
}

#[async_trait]
pub trait Gateway: Send + Sync {
    /// Sends one message and returns the gateway's message id.
    async fn send(&self, sms: &OutboundSms<'_>) -> Result<String, GatewayError>;

    /// Makes what `send` accepted durable before outcomes are recorded (the sink's file).
    async fn flush(&self) -> Result<(), GatewayError> {
        Ok(())
    }

    /// Stops sending and lets go of the gateway's connections once what is under way is done.
    async fn close(&self) {}

    /// Whether a resend after an ambiguous failure is safe.
    fn idempotency(&self) -> Idempotency;

    /// Whether pushes to this gateway count against `gateway.rate_per_second`.
    fn rate_limited(&self) -> bool {
        true
    }
}

/// Seconds from a `Retry-After` header; HTTP dates are not used by SMS gateways.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// A transport failure: before the request left it is transient, after it is ambiguous.
fn classify_transport(error: &reqwest::Error) -> GatewayError {
    if error.is_connect() || error.is_builder() {
        GatewayError::Transient(error.to_string())
    } else {
        GatewayError::Ambiguous(error.to_string())
    }
}
