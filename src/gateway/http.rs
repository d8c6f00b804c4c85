//! The generic `http` gateway protocol: `POST {url}/messages` with a bearer token and the
//! notification id as `Idempotency-Key`; `409` means the key was accepted before.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;

use super::{classify_transport, retry_after, Gateway, GatewayError, OutboundSms};
use crate::domain::delivery::Idempotency;
use crate::tls::TlsTrust;

pub struct HttpGateway {
    client: reqwest::Client,
    messages_url: String,
    token: String,
}

#[derive(serde::Deserialize)]
struct Accepted {
    message_id: String,
}

impl HttpGateway {
    pub fn new(url: &str, token: &str, timeout: Duration, trust: &TlsTrust) -> reqwest::Result<Self> {
        Ok(HttpGateway {
            client: trust.http_client().timeout(timeout).pool_max_idle_per_host(64).build()?,
            messages_url: format!("{}/messages", url.trim_end_matches('/')),
            token: token.to_string(),
        })
    }
}

#[async_trait]
impl Gateway for HttpGateway {
    async fn send(&self, sms: &OutboundSms<'_>) -> Result<String, GatewayError> {
        let response = self
            .client
            .post(&self.messages_url)
            .bearer_auth(&self.token)
            .header("Idempotency-Key", sms.id)
            .json(sms)
            .send()
            .await
            .map_err(|e| classify_transport(&e))?;
        let status = response.status();
        match status {
            s if s.is_success() || s == StatusCode::CONFLICT => {
                let body = response.bytes().await.map_err(|e| GatewayError::Ambiguous(e.to_string()))?;
                match serde_json::from_slice::<Accepted>(&body) {
                    Ok(accepted) => Ok(accepted.message_id),
                    // A 409 need not repeat the id; the key itself identifies the message.
                    Err(_) if s == StatusCode::CONFLICT => Ok(format!("idempotency-key:{}", sms.id)),
                    Err(e) => Err(GatewayError::Ambiguous(format!("{status} with an unreadable body: {e}"))),
                }
            }
            StatusCode::TOO_MANY_REQUESTS => {
                Err(GatewayError::RateLimited { retry_after: retry_after(response.headers()) })
            }
            s if s.is_server_error() => Err(GatewayError::Transient(s.to_string())),
            s => Err(GatewayError::Permanent(s.to_string())),
        }
    }

    fn idempotency(&self) -> Idempotency {
        Idempotency::Honoured
    }
}
