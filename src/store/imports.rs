//! Writes of imported rows. Each write says whether it changed anything, so an import can
//! count re-imported rows as duplicates.

use chrono::{DateTime, Utc};

use super::{to_micros, StoreResult, Tx};
use crate::import::rows::{OrderRow, PlanRow, SpamReportRow, SubscriberRow, UsageRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A new row, or a changed row updated.
    Written,
    /// The row was already there as it is.
    Unchanged,
}

impl WriteOutcome {
    fn from_rows_affected(rows: u64) -> Self {
        if rows == 0 {
            WriteOutcome::Unchanged
        } else {
            WriteOutcome::Written
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportCounts {
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
}

async fn exists(tx: &mut Tx, sql: &str, key: &str) -> StoreResult<bool> {
    Ok(sqlx::query(sql).bind(key).fetch_optional(&mut **tx).await?.is_some())
}

pub async fn plan_exists(tx: &mut Tx, plan_id: &str) -> StoreResult<bool> {
    exists(tx, "SELECT 1 FROM plans WHERE plan_id = $1", plan_id).await
}

pub async fn subscriber_exists(tx: &mut Tx, subscriber_id: &str) -> StoreResult<bool> {
    exists(tx, "SELECT 1 FROM subscribers WHERE subscriber_id = $1", subscriber_id).await
}

pub async fn upsert_plan(tx: &mut Tx, row: &PlanRow) -> StoreResult<WriteOutcome> {
    let result = sqlx::query(
        "INSERT INTO plans (plan_id, name, monthly_fee_fen, voice_minutes, data_mb, sms_count)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (plan_id) DO UPDATE SET name = excluded.name, monthly_fee_fen = excluded.monthly_fee_fen,
             voice_minutes = excluded.voice_minutes, data_mb = excluded.data_mb, sms_count = excluded.sms_count
         WHERE plans.name <> excluded.name OR plans.monthly_fee_fen <> excluded.monthly_fee_fen
             OR plans.voice_minutes <> excluded.voice_minutes OR plans.data_mb <> excluded.data_mb
             OR plans.sms_count <> excluded.sms_count",
    )
    .bind(&row.plan_id)
    .bind(&row.name)
    .bind(row.monthly_fee_fen)
    .bind(row.voice_minutes)
    .bind(row.data_mb)
    .bind(row.sms_count)
    .execute(&mut **tx)
    .await?;
    Ok(WriteOutcome::from_rows_affected(result.rows_affected()))
}

pub async fn upsert_subscriber(tx: &mut Tx, row: &SubscriberRow) -> StoreResult<WriteOutcome> {
    let result = sqlx::query(
        "INSERT INTO subscribers (subscriber_id, msisdn, name, plan_id, language, billing_day, status, bill_sms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (subscriber_id) DO UPDATE SET msisdn = excluded.msisdn, name = excluded.name,
             plan_id = excluded.plan_id, language = excluded.language, billing_day = excluded.billing_day,
             status = excluded.status, bill_sms = excluded.bill_sms
         WHERE subscribers.msisdn <> excluded.msisdn OR subscribers.name <> excluded.name
             OR subscribers.plan_id <> excluded.plan_id OR subscribers.language <> excluded.language
             OR subscribers.billing_day <> excluded.billing_day OR subscribers.status <> excluded.status
             OR subscribers.bill_sms <> excluded.bill_sms",
    )
    .bind(&row.subscriber_id)
    .bind(row.msisdn.as_str())
    .bind(&row.name)
    .bind(&row.plan_id)
    .bind(row.language.as_str())
    .bind(i64::from(row.billing_day.get()))
    .bind(row.status.as_str())
    .bind(i64::from(row.bill_sms))
    .execute(&mut **tx)
    .await?;
    Ok(WriteOutcome::from_rows_affected(result.rows_affected()))
}

/// Usage records are immutable once known: a known `record_id` is a no-op.
pub async fn insert_usage(tx: &mut Tx, row: &UsageRow) -> StoreResult<WriteOutcome> {
    let r = &row.record;
    let result = sqlx::query(
        "INSERT INTO usage_records (record_id, subscriber_id, occurred_at, category, quantity, amount_fen, service_code, description)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (record_id) DO NOTHING",
    )
    .bind(&r.record_id)
    .bind(&row.subscriber_id)
    .bind(to_micros(r.occurred_at))
    .bind(r.category.as_str())
    .bind(r.quantity)
    .bind(r.amount.get())
    .bind(&r.service_code)
    .bind(&r.description)
    .execute(&mut **tx)
    .await?;
    Ok(WriteOutcome::from_rows_affected(result.rows_affected()))
}

/// An order is keyed by subscriber, service and order time; a later file may fill in its
/// cancellation or confirmation.
pub async fn upsert_order(tx: &mut Tx, row: &OrderRow) -> StoreResult<WriteOutcome> {
    let o = &row.order;
    let result = sqlx::query(
        "INSERT INTO vas_orders (subscriber_id, service_code, ordered_at, cancelled_at, confirmed, channel)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (subscriber_id, service_code, ordered_at) DO UPDATE SET cancelled_at = excluded.cancelled_at,
             confirmed = excluded.confirmed, channel = excluded.channel
         WHERE COALESCE(vas_orders.cancelled_at, -1) <> COALESCE(excluded.cancelled_at, -1)
             OR vas_orders.confirmed <> excluded.confirmed OR vas_orders.channel <> excluded.channel",
    )
    .bind(&row.subscriber_id)
    .bind(&o.service_code)
    .bind(to_micros(o.ordered_at))
    .bind(o.cancelled_at.map(to_micros))
    .bind(i64::from(o.confirmed))
    .bind(&row.channel)
    .execute(&mut **tx)
    .await?;
    Ok(WriteOutcome::from_rows_affected(result.rows_affected()))
}

pub async fn insert_spam_report(tx: &mut Tx, row: &SpamReportRow) -> StoreResult<WriteOutcome> {
    let result = sqlx::query(
        "INSERT INTO spam_reports (report_id, reporter, reported_number, reported_at, kind, note)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (report_id) DO NOTHING",
    )
    .bind(&row.report_id)
    .bind(row.reporter.as_str())
    .bind(&row.reported_number)
    .bind(to_micros(row.reported_at))
    .bind(row.kind.as_str())
    .bind(&row.note)
    .execute(&mut **tx)
    .await?;
    Ok(WriteOutcome::from_rows_affected(result.rows_affected()))
}

pub struct ImportRunRecord<'a> {
    pub kind: &'a str,
    pub file: &'a str,
    pub strict: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub counts: ImportCounts,
}

pub async fn record_import_run(tx: &mut Tx, run: &ImportRunRecord<'_>) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO import_runs (id, kind, file, strict, started_at, finished_at, accepted, duplicate, rejected)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(run.kind)
    .bind(run.file)
    .bind(i64::from(run.strict))
    .bind(to_micros(run.started_at))
    .bind(to_micros(run.finished_at))
    .bind(run.counts.accepted as i64)
    .bind(run.counts.duplicate as i64)
    .bind(run.counts.rejected as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
