//! Writes of imported rows, a batch at a time (`batch::insert_values`). Each write returns
//! how many rows it changed, so an import can count re-imported rows as duplicates.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::batch::{insert_values, insert_values_returning, Table, Value};
use super::json_rows::JsonRows;
use super::usage::add_usage_totals;
use super::{to_micros, Backend, Store, StoreResult, Tx};
use crate::domain::records::{Plan, SpamReport, Subscriber, SubscriberOrder, SubscriberUsage};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportCounts {
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
}

impl Store {
    /// Gives PostgreSQL's planner the statistics of `table` as an import left it, as after any
    /// bulk load. Without them, a month built right after its first import, before autovacuum
    /// came by (or where it is off), was planned on default guesses: 1M subscribers took 76–79 s
    /// to build instead of 34–35 s. ANALYZE reads a sample: half a second for 20M records.
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

/// Usage records are immutable once known: a known `record_id` is a no-op. The records
/// stored are added to the usage totals in the same transaction, months cut in `tz`.
pub async fn write_usage(tx: &mut Tx, rows: &[SubscriberUsage], tz: Tz) -> StoreResult<u64> {
    let values: Vec<_> = rows.iter().map(usage_values).collect();
    let conflict = "ON CONFLICT (record_id) DO NOTHING";
    let stored = match Backend::of(tx) {
        // The transaction holds SQLite's one write lock from its start, so no record can be
        // stored between reading which are known and the insert; the insert handing back
        // every id it stored instead (`RETURNING`) doubled the import's time.
        Backend::Sqlite => {
            let known = known_record_ids(tx, rows).await?;
            insert_values(tx, USAGE_RECORDS, conflict, &values).await?;
            Stored::AllBut(known)
        }
        // Another import may store the same record between a read and the insert: the insert
        // says what it stored.
        Backend::Postgres => {
            let stored = insert_values_returning(tx, USAGE_RECORDS, conflict, &values, "record_id").await?;
            Stored::Only(stored.into_iter().collect())
        }
    };
    // A `record_id` twice in one statement is stored from its first row.
    let mut seen = HashSet::with_capacity(rows.len());
    let new: Vec<&SubscriberUsage> = rows
        .iter()
        .filter(|row| stored.holds(&row.record.record_id) && seen.insert(row.record.record_id.as_str()))
        .collect();
    add_usage_totals(tx, &new, tz).await?;
    Ok(new.len() as u64)
}

/// Which of a batch's record ids an insert stored.
enum Stored {
    Only(HashSet<String>),
    AllBut(HashSet<String>),
}

impl Stored {
    fn holds(&self, record_id: &str) -> bool {
        match self {
            Stored::Only(stored) => stored.contains(record_id),
            Stored::AllBut(known) => !known.contains(record_id),
        }
    }
}

/// The record ids of `rows` already stored.
async fn known_record_ids(tx: &mut Tx, rows: &[SubscriberUsage]) -> StoreResult<HashSet<String>> {
    let ids: Vec<&str> = rows.iter().map(|row| row.record.record_id.as_str()).collect();
    let ids = serde_json::to_string(&ids).expect("strings serialise");
    let known: Vec<(String,)> = sqlx::query_as(&format!(
        "SELECT record_id FROM usage_records WHERE record_id IN ({})",
        JsonRows::of(tx).strings(1)
    ))
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    Ok(known.into_iter().map(|(id,)| id).collect())
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

pub(super) const USAGE_RECORDS: Table = Table {
    name: "usage_records",
    columns: &[
        "record_id",
        "subscriber_id",
        "occurred_at",
        "category",
        "quantity",
        "amount_fen",
        "service_code",
        "description",
    ],
};

const VAS_ORDERS: Table = Table {
    name: "vas_orders",
    columns: &["subscriber_id", "service_code", "ordered_at", "cancelled_at", "confirmed", "channel"],
};

const SPAM_REPORTS: Table = Table {
    name: "spam_reports",
    columns: &["report_id", "reporter", "reported_number", "reported_at", "kind", "note"],
};

/// A usage row's values in `USAGE_RECORDS`' column order.
pub(super) fn usage_values(row: &SubscriberUsage) -> [Value<'_>; 8] {
    let r = &row.record;
    [
        Value::Text(&r.record_id),
        Value::Text(&row.subscriber_id),
        Value::Int(to_micros(r.occurred_at)),
        Value::Text(r.category.as_str()),
        Value::Int(r.quantity),
        Value::Int(r.amount.get()),
        Value::Text(&r.service_code),
        Value::Text(&r.description),
    ]
}

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
