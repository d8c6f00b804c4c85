//! Subscribers' messages to the operator's port and what they change: who sent them, the
//! subscriber's choice of bill SMS, and the record of each message.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{to_micros, Store, StoreResult};
use crate::domain::category::Language;

/// A subscriber's message as it is kept.
pub struct ReplyRecord<'a> {
    pub id: &'a str,
    pub from: &'a str,
    /// The port it was sent to.
    pub to: &'a str,
    pub text: &'a str,
    pub received_at: DateTime<Utc>,
    pub subscriber_id: &'a str,
    /// What was done about it (`opt_out`, `details`, `spam_report`, `ignored`, …).
    pub action: &'a str,
}

impl Store {
    /// The subscriber using `msisdn` (normalised), with the language to answer in.
    pub async fn subscriber_by_msisdn(&self, msisdn: &str) -> StoreResult<Option<(String, Language)>> {
        let row = sqlx::query("SELECT subscriber_id, language FROM subscribers WHERE msisdn = $1 AND status <> 'closed' ORDER BY subscriber_id LIMIT 1")
            .bind(msisdn)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let language: String = r.try_get("language")?;
            Ok((r.try_get("subscriber_id")?, language.parse().unwrap_or(Language::Zh)))
        })
        .transpose()
    }

    /// Opts the subscriber out of the bill SMS; false when they were opted out already.
    pub async fn opt_out(&self, subscriber_id: &str) -> StoreResult<bool> {
        let result = sqlx::query("UPDATE subscribers SET bill_sms = 0 WHERE subscriber_id = $1 AND bill_sms <> 0")
            .bind(subscriber_id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Keeps a subscriber's message with what was done about it.
    pub async fn record_reply(&self, reply: &ReplyRecord<'_>) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO mo_messages (id, from_msisdn, to_port, text, received_at, subscriber_id, action) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(reply.id)
        .bind(reply.from)
        .bind(reply.to)
        .bind(reply.text)
        .bind(to_micros(reply.received_at))
        .bind(reply.subscriber_id)
        .bind(reply.action)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
