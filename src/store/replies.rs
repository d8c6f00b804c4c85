//! Subscribers' messages to the operator's port and what they change: who sent them, the
//! subscriber's choice of bill SMS with every change of it, and the record of each message.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::partitions::{months_of, Partitioned};
use super::{to_micros, Store, StoreResult, Tx};
use crate::domain::category::Language;

/// Who changed a subscriber's choice of bill SMS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentSource {
    /// The subscriber's own reply (`TDZD`, `KTZD`): the latest word, which an import never undoes.
    Reply,
    /// An operator, through the consent route, with a reason.
    Operator,
    /// A `subscribers.csv` import.
    Import,
}

impl ConsentSource {
    pub const fn as_str(self) -> &'static str {
        match self {
            ConsentSource::Reply => "reply",
            ConsentSource::Operator => "operator",
            ConsentSource::Import => "import",
        }
    }
}

/// Which of a subscriber's choices a consent change is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// The monthly bill SMS (`TDZD` / `KTZD`, the `bill_sms` column).
    BillSms,
    /// Usage alerts (`TDTX` / `KTTX`, the `alert_sms` column).
    AlertSms,
}

impl Choice {
    /// Its column in `subscribers`, and its name in `consent_changes.what`.
    pub const fn column(self) -> &'static str {
        match self {
            Choice::BillSms => "bill_sms",
            Choice::AlertSms => "alert_sms",
        }
    }
}

/// Keeps one change of a subscriber's choice: `value` is the choice made.
pub async fn record_consent_change(
    tx: &mut Tx,
    subscriber_id: &str,
    choice: Choice,
    value: bool,
    source: ConsentSource,
    reason: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO consent_changes (subscriber_id, what, bill_sms, source, reason, at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(subscriber_id)
    .bind(choice.column())
    .bind(i64::from(value))
    .bind(source.as_str())
    .bind(reason)
    .bind(to_micros(at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

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

    /// The number and language of subscriber `subscriber_id`, to write to them.
    pub async fn subscriber_contact(&self, subscriber_id: &str) -> StoreResult<Option<(String, Language)>> {
        let row = sqlx::query("SELECT msisdn, language FROM subscribers WHERE subscriber_id = $1")
            .bind(subscriber_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let language: String = r.try_get("language")?;
            Ok((r.try_get("msisdn")?, language.parse().unwrap_or(Language::Zh)))
        })
        .transpose()
    }

    /// Sets one of the subscriber's choices and keeps the change with its time and source;
    /// `Some(false)` when it was so already (nothing is kept), `None` for an unknown subscriber.
    pub async fn set_choice(
        &self,
        subscriber_id: &str,
        choice: Choice,
        value: bool,
        source: ConsentSource,
        reason: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Option<bool>> {
        let mut tx = self.begin().await?;
        let column = choice.column();
        let changed =
            sqlx::query(&format!("UPDATE subscribers SET {column} = $2 WHERE subscriber_id = $1 AND {column} <> $2"))
                .bind(subscriber_id)
                .bind(i64::from(value))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                > 0;
        if changed {
            record_consent_change(&mut tx, subscriber_id, choice, value, source, reason, at).await?;
        } else {
            let known = sqlx::query("SELECT 1 FROM subscribers WHERE subscriber_id = $1")
                .bind(subscriber_id)
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
            if !known {
                return Ok(None);
            }
        }
        tx.commit().await?;
        Ok(Some(changed))
    }

    /// Answers to replies written for the subscriber in `[from, to)`: what the daily limit counts.
    /// `kinds` are the kinds of answer (each stored as `kind:<reply id>`); the bill, the flag
    /// notice, a dispute's messages and usage alerts are owed whatever the day's count.
    pub async fn answers_between(
        &self,
        subscriber_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        kinds: &[&'static str],
    ) -> StoreResult<i64> {
        if kinds.is_empty() {
            return Ok(0);
        }
        // The kinds are the program's own constants, never input. `kind <> 'bill'` lets the
        // partial index over everything but bills serve the count.
        let answers: Vec<String> = kinds.iter().map(|kind| format!("kind LIKE '{kind}:%'")).collect();
        Ok(sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM notifications WHERE subscriber_id = $1 AND kind <> 'bill' AND ({})
               AND created_at >= $2 AND created_at < $3",
            answers.join(" OR ")
        ))
        .bind(subscriber_id)
        .bind(to_micros(from))
        .bind(to_micros(to))
        .fetch_one(&self.pool)
        .await?)
    }

    /// Keeps a subscriber's message with what was done about it.
    pub async fn record_reply(&self, reply: &ReplyRecord<'_>) -> StoreResult<()> {
        self.ensure_partitions(&[Partitioned::Replies], months_of([reply.received_at], self.tz)).await?;
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
