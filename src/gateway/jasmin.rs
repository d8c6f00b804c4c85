//! The Jasmin SMS gateway's HTTP API (`POST /send`, form-encoded). Jasmin re-encodes nothing,
//! so UCS-2 text goes as UTF-16BE hex in `hex-content` with `coding=8`. Jasmin honours no
//! idempotency key and cuts messages past 5 parts.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;

use super::{classify_transport, Gateway, GatewayError, OutboundSms};
use crate::domain::delivery::Idempotency;
use crate::tls::TlsTrust;

pub struct JasminGateway {
    client: reqwest::Client,
    send_url: String,
    username: String,
    password: String,
    dlr_url: String,
}

impl JasminGateway {
    pub fn new(
        url: &str,
        username: &str,
        password: &str,
        dlr_url: String,
        timeout: Duration,
        trust: &TlsTrust,
    ) -> reqwest::Result<Self> {
        Ok(JasminGateway {
            client: trust.http_client().timeout(timeout).build()?,
            send_url: format!("{}/send", url.trim_end_matches('/')),
            username: username.to_string(),
            password: password.to_string(),
            dlr_url,
        })
    }
}

fn utf16_hex(text: &str) -> String {
    text.encode_utf16().map(|unit| format!("{unit:04x}")).collect()
}

#[async_trait]
impl Gateway for JasminGateway {
    async fn send(&self, sms: &OutboundSms<'_>) -> Result<String, GatewayError> {
        let to = sms.to.trim_start_matches('+');
        let mut form: Vec<(&str, String)> = vec![
            ("username", self.username.clone()),
            ("password", self.password.clone()),
            ("to", to.to_string()),
            ("from", sms.from.to_string()),
            ("dlr", "yes".into()),
            ("dlr-url", self.dlr_url.clone()),
            ("dlr-level", "3".into()),
            ("dlr-method", "POST".into()),
        ];
        if sms.encoding == "ucs2" {
            form.push(("coding", "8".into()));
            form.push(("hex-content", utf16_hex(sms.text)));
        } else {
            form.push(("coding", "0".into()));
            form.push(("content", sms.text.to_string()));
        }
        let response = self.client.post(&self.send_url).form(&form).send().await.map_err(|e| classify_transport(&e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| GatewayError::Ambiguous(e.to_string()))?;
        match status {
            StatusCode::OK => body
                .trim()
                .strip_prefix("Success \"")
                .and_then(|rest| rest.strip_suffix('"'))
                .map(str::to_string)
                .ok_or_else(|| GatewayError::Ambiguous(format!("unexpected answer {body:?}"))),
            StatusCode::FORBIDDEN if body.contains("throughput exceeded") => {
                Err(GatewayError::RateLimited { retry_after: None })
            }
            s if s.is_server_error() => Err(GatewayError::Transient(format!("{s}: {}", body.trim()))),
            s => Err(GatewayError::Permanent(format!("{s}: {}", body.trim()))),
        }
    }

    fn idempotency(&self) -> Idempotency {
        Idempotency::NotHonoured
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ucs2_text_is_sent_as_utf16be_hex_with_surrogate_pairs() {
        assert_eq!(utf16_hex("账A"), "8d260041");
        assert_eq!(utf16_hex("🦊"), "d83edd8a");
    }
}
