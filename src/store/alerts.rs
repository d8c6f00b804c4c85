//! Usage alerts (docs/contract.md §12): who is evaluated, what their usage adds up to so far,
//! which thresholds each has reached before, and every alert raised, sent or covered.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::batch::{insert_values, Table, Value};
use super::notifications::{expire_unsent, write_notifications, BillNotification};
use super::{from_micros, to_micros, Store, StoreError, StoreResult};
use crate::domain::alerts::{Metric, PlanAllowances, UsageSoFar};
use crate::domain::category::{Category, Language};
use crate::domain::delivery::DeliveryStatus;
use crate::domain::period::{BillingDay, BillingMonth};
use crate::store::partitions::Partitioned;

/// A subscriber who gets usage alerts: active, `alert_sms`, with the plan's allowances.
#[derive(Debug, Clone)]
pub struct AlertSubscriber {
    pub subscriber_id: String,
    pub msisdn: String,
    pub language: Language,
    pub billing_day: BillingDay,
    pub plan: PlanAllowances,
}

/// One subscriber's usage totals row of a month, as the import keeps it (VAS left out).
#[derive(Debug, Clone)]
pub struct TotalsRow {
    pub month: String,
    pub basis: String,
    pub usage: UsageSoFar,
}

/// A page's alerts by (subscriber, month, metric): each threshold, with its notification's
/// id (none when covered).
pub type PageAlerts = HashMap<(String, String, Metric), Vec<(i64, Option<String>)>>;

/// One alert raised: the threshold sent, with its notification, or one covered by it.
pub struct RaisedAlert {
    pub subscriber_id: String,
    pub month: BillingMonth,
    pub metric: Metric,
    pub threshold: i64,
    pub value: i64,
    pub allowance: Option<i64>,
    pub raised_at: DateTime<Utc>,
    /// `None` for a covered threshold.
    pub notification_id: Option<String>,
}

/// An alert as stored, with its notification's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub subscriber_id: String,
    pub msisdn: String,
    pub month: String,
    pub metric: String,
    pub threshold: i64,
    pub value: i64,
    pub allowance: Option<i64>,
    /// `None` for a covered threshold.
    pub status: Option<DeliveryStatus>,
    pub raised_at: DateTime<Utc>,
}

const USAGE_ALERTS: Table = Table {
    name: "usage_alerts",
    columns: &["subscriber_id", "month", "metric", "threshold", "value", "allowance", "raised_at", "notification_id"],
};

fn corrupt(column: &'static str, value: String) -> StoreError {
    StoreError::Corrupt { column, value }
}

fn json<T: Serialize>(values: &[T]) -> String {
    serde_json::to_string(values).expect("plain data serialises")
}

impl Store {
    /// Up to `limit` subscribers who get usage alerts, after `after` in id order.
    pub async fn alert_subscribers(&self, after: &str, limit: i64) -> StoreResult<Vec<AlertSubscriber>> {
        let rows = sqlx::query(
            "SELECT s.subscriber_id, s.msisdn, s.language, s.billing_day, p.voice_minutes, p.data_mb, p.sms_count
             FROM subscribers s JOIN plans p ON p.plan_id = s.plan_id
             WHERE s.subscriber_id > $1 AND s.status = 'active' AND s.alert_sms = 1
             ORDER BY s.subscriber_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let subscriber_id: String = r.try_get("subscriber_id")?;
                let day: i64 = r.try_get("billing_day")?;
                let billing_day = BillingDay::new(day)
                    .ok_or_else(|| corrupt("subscribers.billing_day", format!("{day} of {subscriber_id}")))?;
                let language: String = r.try_get("language")?;
                let data_mb: i64 = r.try_get("data_mb")?;
                Ok(AlertSubscriber {
                    msisdn: r.try_get("msisdn")?,
                    language: language.parse().unwrap_or(Language::Zh),
                    billing_day,
                    plan: PlanAllowances {
                        data_kb: data_mb.saturating_mul(1024),
                        voice_minutes: r.try_get("voice_minutes")?,
                        sms_count: r.try_get("sms_count")?,
                    },
                    subscriber_id,
                })
            })
            .collect()
    }

    /// The usage totals rows of `ids` for the months `months`, by subscriber.
    pub async fn alert_totals(&self, ids: &[&str], months: &[String]) -> StoreResult<HashMap<String, Vec<TotalsRow>>> {
        let sql = format!(
            "SELECT subscriber_id, month, basis, voice_fen, data_fen, sms_fen, other_fen, adjustment_fen,
                    voice_minutes, data_kb, sms_count
             FROM usage_totals WHERE subscriber_id IN ({}) AND month IN ({})",
            self.json_rows().strings(1),
            self.json_rows().strings(2)
        );
        let mut totals: HashMap<String, Vec<TotalsRow>> = HashMap::new();
        for r in sqlx::query(&sql).bind(json(ids)).bind(json(months)).fetch_all(&self.pool).await? {
            let fen = |column: &str| r.try_get::<i64, _>(column);
            let row = TotalsRow {
                month: r.try_get("month")?,
                basis: r.try_get("basis")?,
                usage: UsageSoFar {
                    data_kb: fen("data_kb")?,
                    voice_minutes: fen("voice_minutes")?,
                    sms_count: fen("sms_count")?,
                    spend_fen: fen("voice_fen")?
                        + fen("data_fen")?
                        + fen("sms_fen")?
                        + fen("other_fen")?
                        + fen("adjustment_fen")?,
                },
            };
            totals.entry(r.try_get("subscriber_id")?).or_default().push(row);
        }
        Ok(totals)
    }

    /// The usage of each subscriber of `starts` from its own start to `to` (both included),
    /// summed per category in the database: VAS charges only, or every other category.
    pub async fn alert_sums(
        &self,
        starts: &[(&str, DateTime<Utc>)],
        to: DateTime<Utc>,
        vas: bool,
    ) -> StoreResult<Vec<(String, Category, i64, i64)>> {
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        // `category = 'vas'` as written, so that the partial index over VAS charges serves it.
        let category = if vas { "u.category = 'vas'" } else { "u.category <> 'vas'" };
        let sql = format!(
            "{} SELECT u.subscriber_id, u.category, CAST(SUM(u.quantity) AS BIGINT) AS quantity,
                    CAST(SUM(u.amount_fen) AS BIGINT) AS amount_fen
             FROM j JOIN usage_records u ON u.subscriber_id = (j.value ->> 0)
                  AND u.occurred_at >= CAST(j.value ->> 1 AS BIGINT)
             WHERE u.occurred_at <= $2 AND {category}
             GROUP BY u.subscriber_id, u.category",
            self.json_rows().with_rows()
        );
        let rows: Vec<(&str, i64)> = starts.iter().map(|(id, start)| (*id, to_micros(*start))).collect();
        let found = sqlx::query(&sql).bind(json(&rows)).bind(to_micros(to)).fetch_all(&self.pool).await?;
        found
            .iter()
            .map(|r| {
                let category: String = r.try_get("category")?;
                let category = category.parse().map_err(|_| corrupt("usage_records.category", category))?;
                Ok((r.try_get("subscriber_id")?, category, r.try_get("quantity")?, r.try_get("amount_fen")?))
            })
            .collect()
    }

    /// The alerts `ids` have in the months `months`: (subscriber, month, metric) → each
    /// threshold with its notification's id (none when covered).
    pub async fn page_alerts(&self, ids: &[&str], months: &[String]) -> StoreResult<PageAlerts> {
        let sql = format!(
            "SELECT subscriber_id, month, metric, threshold, notification_id FROM usage_alerts
             WHERE subscriber_id IN ({}) AND month IN ({})",
            self.json_rows().strings(1),
            self.json_rows().strings(2)
        );
        let mut found: PageAlerts = HashMap::new();
        for r in sqlx::query(&sql).bind(json(ids)).bind(json(months)).fetch_all(&self.pool).await? {
            let metric: String = r.try_get("metric")?;
            let metric = metric.parse().map_err(|_| corrupt("usage_alerts.metric", metric))?;
            found
                .entry((r.try_get("subscriber_id")?, r.try_get("month")?, metric))
                .or_default()
                .push((r.try_get("threshold")?, r.try_get("notification_id")?));
        }
        Ok(found)
    }

    /// Those of the notifications `ids` not yet sent (`pending` or `queued`).
    pub async fn unsent(&self, ids: &[String]) -> StoreResult<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT id FROM notifications WHERE id IN ({}) AND status IN ('pending', 'queued')",
            self.json_rows().strings(1)
        );
        Ok(sqlx::query_scalar(&sql).bind(json(ids)).fetch_all(&self.pool).await?)
    }

    /// The refunds (negative adjustments) of the subscribers from `first` to `last` (in id
    /// order) dated after `after` and before `until`: subscriber and time. One range of the
    /// index over `other` and `adjustment` records, rather than a look-up per subscriber.
    pub async fn refunds_between(
        &self,
        first: &str,
        last: &str,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<Vec<(String, DateTime<Utc>)>> {
        // `category IN ('other', 'adjustment')` as written, for the partial index over them.
        let rows = sqlx::query(
            "SELECT subscriber_id, occurred_at FROM usage_records
             WHERE category IN ('other', 'adjustment') AND subscriber_id >= $1 AND subscriber_id <= $2
               AND category = 'adjustment' AND amount_fen < 0 AND occurred_at > $3 AND occurred_at < $4",
        )
        .bind(first)
        .bind(last)
        .bind(to_micros(after))
        .bind(to_micros(until))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("subscriber_id")?, from_micros(r.try_get("occurred_at")?)))).collect()
    }

    /// Writes a page of alerts, each sent one with its notification (`pending`), and expires
    /// the unsent alerts they overtake, in one transaction: a crash leaves all of it or none.
    pub async fn write_alerts(
        &self,
        alerts: &[RaisedAlert],
        notifications: &[BillNotification],
        overtaken: &[String],
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        if alerts.is_empty() {
            return Ok(());
        }
        self.ensure_partitions(&Partitioned::DELIVERIES, notifications.iter().map(|n| n.month)).await?;
        let mut tx = self.begin().await?;
        expire_unsent(&mut tx, overtaken, at).await?;
        let months: Vec<String> = alerts.iter().map(|a| a.month.to_string()).collect();
        let rows: Vec<Vec<Value>> = alerts
            .iter()
            .zip(&months)
            .map(|(a, month)| {
                vec![
                    Value::Text(&a.subscriber_id),
                    Value::Text(month),
                    Value::Text(a.metric.as_str()),
                    Value::Int(a.threshold),
                    Value::Int(a.value),
                    Value::int_or_null(a.allowance),
                    Value::Int(to_micros(a.raised_at)),
                    Value::text_or_null(a.notification_id.as_deref()),
                ]
            })
            .collect();
        insert_values(&mut tx, USAGE_ALERTS, "", &rows).await?;
        write_notifications(&mut tx, notifications).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` usage alerts in `status` after the id `after`: `pending` ones were written
    /// and never handed to the queue; `queued` ones are lost with an in-process queue that did
    /// not outlive its process.
    pub async fn alerts_in(&self, status: DeliveryStatus, after: &str, limit: i64) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT n.id FROM usage_alerts a JOIN notifications n ON n.id = a.notification_id
             WHERE n.status = $1 AND n.id > $2 ORDER BY n.id LIMIT $3",
        )
        .bind(status.as_str())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The subscriber's latest alerts, newest first.
    pub async fn alerts_of_subscriber(&self, subscriber_id: &str, limit: i64) -> StoreResult<Vec<AlertRow>> {
        let rows = sqlx::query(&format!(
            "{ALERT_ROW} WHERE a.subscriber_id = $1 ORDER BY a.raised_at DESC, a.metric, a.threshold DESC LIMIT $2"
        ))
        .bind(subscriber_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_row).collect()
    }

    /// The alerts of periods labelled `month`, after `after` (subscriber, metric, threshold)
    /// in key order.
    pub async fn alerts_of_month(
        &self,
        month: BillingMonth,
        after: Option<(&str, &str, i64)>,
        limit: i64,
    ) -> StoreResult<Vec<AlertRow>> {
        let (subscriber, metric, threshold) = after.unwrap_or(("", "", i64::MIN));
        let rows = sqlx::query(&format!(
            "{ALERT_ROW}
             WHERE a.month = $1 AND (a.subscriber_id > $2 OR (a.subscriber_id = $2 AND (a.metric > $3
                   OR (a.metric = $3 AND a.threshold > $4))))
             ORDER BY a.subscriber_id, a.metric, a.threshold LIMIT $5"
        ))
        .bind(month.to_string())
        .bind(subscriber)
        .bind(metric)
        .bind(threshold)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_row).collect()
    }
}

/// An alert with its subscriber's number and its notification's status.
const ALERT_ROW: &str =
    "SELECT a.subscriber_id, s.msisdn, a.month, a.metric, a.threshold, a.value, a.allowance, a.raised_at, n.status
     FROM usage_alerts a
     JOIN subscribers s ON s.subscriber_id = a.subscriber_id
     LEFT JOIN notifications n ON n.id = a.notification_id";

fn alert_row(r: &sqlx::any::AnyRow) -> StoreResult<AlertRow> {
    let status: Option<String> = r.try_get("status")?;
    let status =
        status.map(|s| s.parse::<DeliveryStatus>().map_err(|_| corrupt("notifications.status", s))).transpose()?;
    Ok(AlertRow {
        subscriber_id: r.try_get("subscriber_id")?,
        msisdn: r.try_get("msisdn")?,
        month: r.try_get("month")?,
        metric: r.try_get("metric")?,
        threshold: r.try_get("threshold")?,
        value: r.try_get("value")?,
        allowance: r.try_get("allowance")?,
        status,
        raised_at: from_micros(r.try_get("raised_at")?),
    })
}
