//! Notification state. Every transition is a conditional UPDATE, so the database, not a
//! worker's memory, decides who sends a message and whether it was sent already.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{placeholders, to_micros, Store, StoreResult, Tx};
use crate::domain::delivery::DeliveryStatus;
use crate::domain::period::BillingMonth;

/// A notification claimed for sending.
#[derive(Debug, Clone)]
pub struct OutboundRow {
    pub id: String,
    pub msisdn: String,
    pub text: String,
    pub encoding: String,
    pub segments: i64,
}

pub async fn record_event(tx: &mut Tx, id: &str, status: &str, at: DateTime<Utc>) -> StoreResult<()> {
    sqlx::query("INSERT INTO notification_events (notification_id, status, at) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(status)
        .bind(to_micros(at))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Store {
    /// Notifications of `month` that were written but never handed to a worker, or handed to
    /// an in-process queue that did not outlive its process.
    pub async fn unsent_notification_ids(&self, month: BillingMonth) -> StoreResult<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id FROM notifications WHERE month = $1 AND status IN ('pending', 'queued') ORDER BY id",
        )
        .bind(month.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }
}

async fn move_status(
    tx: &mut Tx,
    ids: &[String],
    from: &[DeliveryStatus],
    to: DeliveryStatus,
    at: DateTime<Utc>,
) -> StoreResult<Vec<String>> {
    let from_list = from.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "UPDATE notifications SET status = $1, updated_at = $2 WHERE status IN ({from_list}) AND id IN ({}) RETURNING id",
        placeholders(3, ids.len())
    );
    let mut query = sqlx::query(&sql).bind(to.as_str()).bind(to_micros(at));
    for id in ids {
        query = query.bind(id);
    }
    let moved: Vec<String> =
        query.fetch_all(&mut **tx).await?.iter().map(|r| r.try_get("id")).collect::<Result<_, _>>()?;
    for id in &moved {
        record_event(tx, id, to.as_str(), at).await?;
    }
    Ok(moved)
}

/// Marks freshly published notifications as queued.
pub async fn mark_queued(tx: &mut Tx, ids: &[String], at: DateTime<Utc>) -> StoreResult<()> {
    move_status(tx, ids, &[DeliveryStatus::Pending], DeliveryStatus::Queued, at).await.map(drop)
}

/// Claims the notifications among `ids` that nobody has sent or is sending, and returns them.
/// A redelivered or duplicated queue message finds its notifications claimed already and
/// gets nothing back, so it pushes nothing.
pub async fn claim_for_sending(tx: &mut Tx, ids: &[String], at: DateTime<Utc>) -> StoreResult<Vec<OutboundRow>> {
    let claimed =
        move_status(tx, ids, &[DeliveryStatus::Pending, DeliveryStatus::Queued], DeliveryStatus::Sending, at).await?;
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE notifications SET attempts = attempts + 1 WHERE id IN ({}) RETURNING id, msisdn, text, encoding, segments",
        placeholders(1, claimed.len())
    );
    let mut query = sqlx::query(&sql);
    for id in &claimed {
        query = query.bind(id);
    }
    let mut rows: Vec<OutboundRow> = query
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| {
            Ok(OutboundRow {
                id: r.try_get("id")?,
                msisdn: r.try_get("msisdn")?,
                text: r.try_get("text")?,
                encoding: r.try_get("encoding")?,
                segments: r.try_get("segments")?,
            })
        })
        .collect::<StoreResult<_>>()?;
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(rows)
}

pub async fn mark_accepted(tx: &mut Tx, id: &str, gateway_message_id: &str, at: DateTime<Utc>) -> StoreResult<()> {
    sqlx::query("UPDATE notifications SET status = 'accepted', gateway_message_id = $2, updated_at = $3 WHERE id = $1 AND status = 'sending'")
        .bind(id)
        .bind(gateway_message_id)
        .bind(to_micros(at))
        .execute(&mut **tx)
        .await?;
    record_event(tx, id, DeliveryStatus::Accepted.as_str(), at).await
}

pub async fn mark_failed(tx: &mut Tx, id: &str, reason: &str, at: DateTime<Utc>) -> StoreResult<()> {
    sqlx::query(
        "UPDATE notifications SET status = 'failed', reason = $2, updated_at = $3 WHERE id = $1 AND status = 'sending'",
    )
    .bind(id)
    .bind(reason)
    .bind(to_micros(at))
    .execute(&mut **tx)
    .await?;
    record_event(tx, id, DeliveryStatus::Failed.as_str(), at).await
}
