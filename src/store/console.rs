//! Read models only the console shows: a month's flags by reason and by service provider, and
//! one subscriber's record (replies, consent changes, bills).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_micros, BillExport, Store, StoreResult};
use crate::domain::period::BillingMonth;

/// Flags of one reason, or of one service provider, in a month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagGroup {
    /// The reason, or the service code.
    pub key: String,
    pub count: i64,
    pub amount_fen: i64,
    /// Subscribers with at least one such flag.
    pub subscribers: i64,
}

/// A month's disputes at a glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DisputeCounts {
    pub open: i64,
    /// Open since before the SLA's start.
    pub overdue: i64,
    pub refunded: i64,
}

/// One subscriber as the console shows them.
#[derive(Debug, Clone)]
pub struct SubscriberRecord {
    pub subscriber_id: String,
    pub msisdn: String,
    pub plan_id: String,
    pub language: String,
    pub status: String,
    pub bill_sms: bool,
    pub alert_sms: bool,
}

/// A subscriber's message to the operator's port.
#[derive(Debug, Clone)]
pub struct ReplyRow {
    pub received_at: DateTime<Utc>,
    pub text: String,
    pub action: String,
}

/// One change of a subscriber's choice of bill SMS.
#[derive(Debug, Clone)]
pub struct ConsentRow {
    pub at: DateTime<Utc>,
    /// `bill_sms` or `alert_sms`: which choice changed.
    pub what: String,
    /// The choice made.
    pub bill_sms: bool,
    pub source: String,
    pub reason: String,
}

fn groups(rows: &[sqlx::any::AnyRow]) -> StoreResult<Vec<FlagGroup>> {
    rows.iter()
        .map(|r| {
            Ok(FlagGroup {
                key: r.try_get("key")?,
                count: r.try_get("n")?,
                amount_fen: r.try_get("fen")?,
                subscribers: r.try_get("subscribers")?,
            })
        })
        .collect()
}

impl Store {
    /// The month's flags per reason (in reason order) and per service provider, the providers
    /// with the most flagged charges first (then the largest amount), at most `providers`.
    pub async fn flag_groups(
        &self,
        month: BillingMonth,
        providers: i64,
    ) -> StoreResult<(Vec<FlagGroup>, Vec<FlagGroup>)> {
        let month = month.to_string();
        let by_reason = sqlx::query(
            "SELECT reason AS key, COUNT(*) AS n, CAST(COALESCE(SUM(amount_fen), 0) AS BIGINT) AS fen,
                    COUNT(DISTINCT subscriber_id) AS subscribers
             FROM charge_flags WHERE month = $1 GROUP BY reason ORDER BY reason",
        )
        .bind(&month)
        .fetch_all(&self.pool)
        .await?;
        let by_service = sqlx::query(
            "SELECT service_code AS key, COUNT(*) AS n, CAST(COALESCE(SUM(amount_fen), 0) AS BIGINT) AS fen,
                    COUNT(DISTINCT subscriber_id) AS subscribers
             FROM charge_flags WHERE month = $1 GROUP BY service_code
             ORDER BY COUNT(*) DESC, COALESCE(SUM(amount_fen), 0) DESC, service_code LIMIT $2",
        )
        .bind(&month)
        .bind(providers)
        .fetch_all(&self.pool)
        .await?;
        Ok((groups(&by_reason)?, groups(&by_service)?))
    }

    /// The month's disputes open, overdue (open since before `overdue_before`) and refunded.
    pub async fn dispute_counts(
        &self,
        month: BillingMonth,
        overdue_before: DateTime<Utc>,
    ) -> StoreResult<DisputeCounts> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN status = 'open' THEN 1 ELSE 0 END), 0) AS BIGINT) AS open,
                    CAST(COALESCE(SUM(CASE WHEN status = 'open' AND opened_at < $2 THEN 1 ELSE 0 END), 0) AS BIGINT) AS overdue,
                    CAST(COALESCE(SUM(CASE WHEN status = 'refunded' THEN 1 ELSE 0 END), 0) AS BIGINT) AS refunded
             FROM disputes WHERE month = $1",
        )
        .bind(month.to_string())
        .bind(super::to_micros(overdue_before))
        .fetch_one(&self.pool)
        .await?;
        Ok(DisputeCounts {
            open: row.try_get("open")?,
            overdue: row.try_get("overdue")?,
            refunded: row.try_get("refunded")?,
        })
    }

    pub async fn subscriber_record(&self, subscriber_id: &str) -> StoreResult<Option<SubscriberRecord>> {
        let row = sqlx::query(
            "SELECT subscriber_id, msisdn, plan_id, language, status, bill_sms, alert_sms FROM subscribers
             WHERE subscriber_id = $1",
        )
        .bind(subscriber_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(SubscriberRecord {
                subscriber_id: r.try_get("subscriber_id")?,
                msisdn: r.try_get("msisdn")?,
                plan_id: r.try_get("plan_id")?,
                language: r.try_get("language")?,
                status: r.try_get("status")?,
                bill_sms: r.try_get::<i64, _>("bill_sms")? != 0,
                alert_sms: r.try_get::<i64, _>("alert_sms")? != 0,
            })
        })
        .transpose()
    }

    /// The subscriber's latest replies, newest first.
    pub async fn replies_of(&self, subscriber_id: &str, limit: i64) -> StoreResult<Vec<ReplyRow>> {
        let rows = sqlx::query(
            "SELECT received_at, text, action FROM mo_messages WHERE subscriber_id = $1
             ORDER BY received_at DESC, id DESC LIMIT $2",
        )
        .bind(subscriber_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReplyRow {
                    received_at: from_micros(r.try_get("received_at")?),
                    text: r.try_get("text")?,
                    action: r.try_get("action")?,
                })
            })
            .collect()
    }

    /// Every change of the subscriber's choice of bill SMS, newest first.
    pub async fn consent_history(&self, subscriber_id: &str, limit: i64) -> StoreResult<Vec<ConsentRow>> {
        let rows = sqlx::query(
            "SELECT at, what, bill_sms, source, reason FROM consent_changes WHERE subscriber_id = $1
             ORDER BY id DESC LIMIT $2",
        )
        .bind(subscriber_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ConsentRow {
                    at: from_micros(r.try_get("at")?),
                    what: r.try_get("what")?,
                    bill_sms: r.try_get::<i64, _>("bill_sms")? != 0,
                    source: r.try_get("source")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }

    /// The subscriber's bills, newest first, with their flags and bill SMS state.
    pub async fn bills_of(&self, subscriber_id: &str, limit: i64) -> StoreResult<Vec<BillExport>> {
        let months: Vec<String> =
            sqlx::query_scalar("SELECT month FROM bills WHERE subscriber_id = $1 ORDER BY month DESC LIMIT $2")
                .bind(subscriber_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        let mut bills = Vec::with_capacity(months.len());
        for month in months {
            if let Ok(month) = month.parse::<BillingMonth>() {
                if let Some(bill) = self.bill(subscriber_id, month).await? {
                    bills.push(bill);
                }
            }
        }
        Ok(bills)
    }
}

impl Store {
    /// Parts of the month's SMS accepted or delivered so far.
    pub async fn parts_sent(&self, month: BillingMonth) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(segments), 0) AS BIGINT) FROM notifications
             WHERE month = $1 AND status IN ('accepted', 'delivered')",
        )
        .bind(month.to_string())
        .fetch_one(&self.pool)
        .await?)
    }

    /// The month's notifications accepted or delivered, per day of their last change, days
    /// counted as `offset_seconds` east of UTC: `(days since 1970-01-01, count)` in day order.
    pub async fn deliveries_by_day(&self, month: BillingMonth, offset_seconds: i64) -> StoreResult<Vec<(i64, i64)>> {
        let rows = sqlx::query(
            "SELECT (updated_at + $2) / 86400000000 AS day, COUNT(*) AS n FROM notifications
             WHERE month = $1 AND status IN ('accepted', 'delivered') GROUP BY (updated_at + $2) / 86400000000 ORDER BY 1",
        )
        .bind(month.to_string())
        .bind(offset_seconds * 1_000_000)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("day")?, r.try_get("n")?))).collect()
    }
}
