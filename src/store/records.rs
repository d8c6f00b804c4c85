//! Imported records other than usage (plans, subscribers, VAS orders, spam reports) and the
//! record of each import, written a batch at a time (`batch::insert_values`). Each write
//! returns how many rows it changed, so an import can count re-imported rows as duplicates.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::batch::{insert_values, Table, Value};
use super::json_rows::JsonRows;
use super::{to_micros, Store, StoreResult, Tx};
use crate::domain::records::{Plan, SpamReport, Subscriber, SubscriberOrder};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportCounts {
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
}

impl Store {
    /// Gives PostgreSQL's planner the statistics of `table` as an import left it, as after any
    /// bulk load: a month built right after its first import, before autovacuum came by (or
    /// where it is off), would be planned on default guesses and take twice as long. ANALYZE
    /// reads a sample, so it costs little even for tens of millions of records.
    /// SQLite keeps planning without statistics, which its queries are written for.
    pub async fn refresh_statistics(&self, table: &'static str) -> StoreResult<()> {
        if self.backend == super::Backend::Postgres {
            sqlx::query(&format!("ANALYZE {table}")).execute(&self.pool).await?;
        }
        Ok(())
    }
}

impl JsonRows {
    /// The keys of `table` among `keys`.
    pub async fn existing(self, tx: &mut Tx, table: Reference, keys: &[&str]) -> StoreResult<HashSet<String>> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let (table, column) = match table {
            Reference::Plan => ("plans", "plan_id"),
            Reference::Subscriber => ("subscribers", "subscriber_id"),
        };
        let wrapped: Vec<[&str; 1]> = keys.iter().map(|k| [*k]).collect();
        let sql = format!(
            "{} SELECT {column} FROM {table} WHERE {column} IN (SELECT j.value ->> 0 FROM j)",
            self.with_rows()
        );
        let found: Vec<(String,)> = sqlx::query_as(&sql)
            .bind(serde_json::to_string(&wrapped).expect("keys serialise"))
            .fetch_all(&mut **tx)
            .await?;
        Ok(found.into_iter().map(|(key,)| key).collect())
    }
}

pub async fn write_plans(tx: &mut Tx, rows: &[&Plan]) -> StoreResult<u64> {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            [
                Value::Text(&r.plan_id),
                Value::Text(&r.name),
                Value::Int(r.monthly_fee_fen),
                Value::Int(r.voice_minutes),
                Value::Int(r.data_mb),
                Value::Int(r.sms_count),
            ]
        })
        .collect();
    insert_values(tx, PLANS, &PLANS.update_on_conflict(&["plan_id"]), &rows).await
}

pub async fn write_subscribers(tx: &mut Tx, rows: &[&Subscriber]) -> StoreResult<u64> {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            [
                Value::Text(&r.subscriber_id),
                Value::Text(r.msisdn.as_str()),
                Value::Text(&r.name),
                Value::Text(&r.plan_id),
                Value::Text(r.language.as_str()),
                Value::Int(i64::from(r.billing_day.get())),
                Value::Text(r.status.as_str()),
                Value::Int(i64::from(r.bill_sms)),
            ]
        })
        .collect();
    insert_values(tx, SUBSCRIBERS, &SUBSCRIBERS.update_on_conflict(&["subscriber_id"]), &rows).await
}

/// An order is keyed by subscriber, service and order time; a later file may fill in its
/// cancellation or confirmation.
pub async fn write_orders(tx: &mut Tx, rows: &[&SubscriberOrder]) -> StoreResult<u64> {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            let o = &r.order;
            [
                Value::Text(&r.subscriber_id),
                Value::Text(&o.service_code),
                Value::Int(to_micros(o.ordered_at)),
                Value::int_or_null(o.cancelled_at.map(to_micros)),
                Value::Int(i64::from(o.confirmed)),
                Value::Text(&r.channel),
            ]
        })
        .collect();
    let conflict = VAS_ORDERS.update_on_conflict(&["subscriber_id", "service_code", "ordered_at"]);
    insert_values(tx, VAS_ORDERS, &conflict, &rows).await
}

pub async fn write_spam_reports(tx: &mut Tx, rows: &[&SpamReport]) -> StoreResult<u64> {
    let rows: Vec<_> = rows
        .iter()
        .map(|r| {
            [
                Value::Text(&r.report_id),
                Value::Text(r.reporter.as_str()),
                Value::Text(&r.reported_number),
                Value::Int(to_micros(r.reported_at)),
                Value::Text(r.kind.as_str()),
                Value::Text(&r.note),
            ]
        })
        .collect();
    insert_values(tx, SPAM_REPORTS, "ON CONFLICT (report_id) DO NOTHING", &rows).await
}

const PLANS: Table =
    Table { name: "plans", columns: &["plan_id", "name", "monthly_fee_fen", "voice_minutes", "data_mb", "sms_count"] };

const SUBSCRIBERS: Table = Table {
    name: "subscribers",
    columns: &["subscriber_id", "msisdn", "name", "plan_id", "language", "billing_day", "status", "bill_sms"],
};

const VAS_ORDERS: Table = Table {
    name: "vas_orders",
    columns: &["subscriber_id", "service_code", "ordered_at", "cancelled_at", "confirmed", "channel"],
};

const SPAM_REPORTS: Table = Table {
    name: "spam_reports",
    columns: &["report_id", "reporter", "reported_number", "reported_at", "kind", "note"],
};

#[derive(Debug, Clone, Copy)]
pub enum Reference {
    Plan,
    Subscriber,
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
