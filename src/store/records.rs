//! Imported records other than usage (plans, subscribers, VAS orders, spam reports) and the
//! record of each import, written a batch at a time (`batch::insert_values`). Each write
//! returns how many rows it changed, so an import can count re-imported rows as duplicates.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::batch::{insert_values, Table, Value};
use super::json_rows::JsonRows;
use super::replies::{record_consent_change, Choice, ConsentSource};
use super::{to_micros, Store, StoreResult, Tx};
use crate::domain::category::Language;
use crate::domain::records::{Plan, SpamReport, Subscriber, SubscriberOrder, SubscriberStatus};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportCounts {
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
    /// Subscriber rows whose `bill_sms = true` kept the subscriber's own opt-out.
    #[serde(default)]
    pub consent_kept: u64,
}

impl Store {
    /// Gives PostgreSQL's planner the statistics of `table` as an import left it, as after any
    /// bulk load: a month built right after its first import, before autovacuum came by (or
    /// where it is off), would be planned on default guesses and take twice as long. ANALYZE
    /// reads a sample, so it costs little even for tens of millions of records.
    /// SQLite keeps planning without statistics, which its queries are written for.
    pub async fn refresh_statistics(&self, table: &str) -> StoreResult<()> {
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

/// What a batch of subscriber rows did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubscribersWritten {
    /// Rows that changed a subscriber, or made one, or kept an opt-out (such a row is
    /// accepted, the rest of it applied).
    pub accepted: u64,
    /// Rows whose `bill_sms = true` (or `alert_sms = true`) did not undo the subscriber's own
    /// opt-out.
    pub consent_kept: u64,
}

/// A subscriber as stored, with where each of its choices last came from.
struct Stored {
    msisdn: String,
    plan_id: String,
    region: String,
    name: String,
    language: String,
    billing_day: i64,
    status: String,
    bill_sms: bool,
    bill_sms_source: Option<String>,
    alert_sms: bool,
    alert_sms_source: Option<String>,
}

/// A subscriber row with every optional cell resolved against what is stored.
struct Resolved<'r> {
    row: &'r Subscriber,
    name: String,
    language: &'static str,
    billing_day: i64,
    status: &'static str,
    bill_sms: bool,
    alert_sms: bool,
    region: String,
}

/// What an import row makes of one choice (`bill_sms`, `alert_sms`): an empty cell keeps the
/// stored value, or `true` for a new subscriber; `true` never undoes an opt-out the subscriber
/// made by reply. The value, and whether the row's `true` was overruled so.
fn resolve_choice(row: Option<bool>, stored: Option<(bool, Option<&str>)>) -> (bool, bool) {
    let own_opt_out = stored.is_some_and(|(value, source)| !value && source == Some("reply"));
    if own_opt_out && row == Some(true) {
        return (false, true);
    }
    (row.or(stored.map(|(value, _)| value)).unwrap_or(true), false)
}

/// Writes a batch of subscribers: an empty optional cell keeps an existing subscriber's value
/// and takes the default for a new one; `bill_sms = true` never undoes an opt-out the
/// subscriber made by reply (docs/contract.md §7.5); a change of `bill_sms` is kept as a
/// consent change of source `import` at `at`.
pub async fn write_subscribers(
    tx: &mut Tx,
    rows: &[&Subscriber],
    at: DateTime<Utc>,
) -> StoreResult<SubscribersWritten> {
    let stored = stored_subscribers(tx, rows).await?;
    let mut written = SubscribersWritten::default();
    let mut kept_unchanged = 0u64;
    let mut changes = Vec::new();
    let resolved: Vec<Resolved> = rows
        .iter()
        .map(|r| {
            let old = stored.get(&r.subscriber_id);
            let name = r.name.clone().or_else(|| old.map(|o| o.name.clone())).unwrap_or_default();
            let region = r.region.clone().or_else(|| old.map(|o| o.region.clone())).unwrap_or_default();
            let language = r
                .language
                .map(Language::as_str)
                .or_else(|| old.and_then(|o| stored_language(&o.language)))
                .unwrap_or("zh");
            let billing_day =
                r.billing_day.map(|d| i64::from(d.get())).or_else(|| old.map(|o| o.billing_day)).unwrap_or(1);
            let status = r
                .status
                .map(SubscriberStatus::as_str)
                .or_else(|| old.and_then(|o| stored_status(&o.status)))
                .unwrap_or("active");
            let (bill_sms, bill_kept) =
                resolve_choice(r.bill_sms, old.map(|o| (o.bill_sms, o.bill_sms_source.as_deref())));
            let (alert_sms, alert_kept) =
                resolve_choice(r.alert_sms, old.map(|o| (o.alert_sms, o.alert_sms_source.as_deref())));
            if bill_kept || alert_kept {
                written.consent_kept += 1;
                // A row the upsert leaves as it is is not counted by it, but is accepted.
                let unchanged = old.is_some_and(|o| {
                    o.msisdn == r.msisdn.as_str()
                        && o.plan_id == r.plan_id
                        && o.region == region
                        && o.name == name
                        && o.language == language
                        && o.billing_day == billing_day
                        && o.status == status
                        && o.bill_sms == bill_sms
                        && o.alert_sms == alert_sms
                });
                kept_unchanged += u64::from(unchanged);
            }
            if old.is_some_and(|o| o.bill_sms != bill_sms) {
                changes.push((r.subscriber_id.clone(), Choice::BillSms, bill_sms));
            }
            if old.is_some_and(|o| o.alert_sms != alert_sms) {
                changes.push((r.subscriber_id.clone(), Choice::AlertSms, alert_sms));
            }
            Resolved { row: r, name, language, billing_day, status, bill_sms, alert_sms, region }
        })
        .collect();
    let values: Vec<_> = resolved
        .iter()
        .map(|s| {
            [
                Value::Text(&s.row.subscriber_id),
                Value::Text(s.row.msisdn.as_str()),
                Value::Text(&s.name),
                Value::Text(&s.row.plan_id),
                Value::Text(s.language),
                Value::Int(s.billing_day),
                Value::Text(s.status),
                Value::Int(i64::from(s.bill_sms)),
                Value::Int(i64::from(s.alert_sms)),
                Value::Text(&s.region),
            ]
        })
        .collect();
    let stored_rows =
        insert_values(tx, SUBSCRIBERS, &SUBSCRIBERS.update_on_conflict(&["subscriber_id"]), &values).await?;
    for (subscriber_id, choice, value) in changes {
        record_consent_change(tx, &subscriber_id, choice, value, ConsentSource::Import, "import", at).await?;
    }
    written.accepted = stored_rows + kept_unchanged;
    Ok(written)
}

fn stored_language(text: &str) -> Option<&'static str> {
    text.parse::<Language>().ok().map(Language::as_str)
}

fn stored_status(text: &str) -> Option<&'static str> {
    [SubscriberStatus::Active, SubscriberStatus::Suspended, SubscriberStatus::Closed]
        .into_iter()
        .find(|s| s.as_str() == text)
        .map(SubscriberStatus::as_str)
}

/// The stored subscribers among `rows`, by id.
async fn stored_subscribers(tx: &mut Tx, rows: &[&Subscriber]) -> StoreResult<HashMap<String, Stored>> {
    let mut stored = HashMap::new();
    for chunk in rows.chunks(1000) {
        let sql = format!(
            "SELECT s.subscriber_id, s.msisdn, s.plan_id, s.region, s.name, s.language, s.billing_day, s.status, s.bill_sms,
                    s.alert_sms,
                    (SELECT c.source FROM consent_changes c WHERE c.subscriber_id = s.subscriber_id
                     AND c.what = 'bill_sms' ORDER BY c.id DESC LIMIT 1) AS bill_sms_source,
                    (SELECT c.source FROM consent_changes c WHERE c.subscriber_id = s.subscriber_id
                     AND c.what = 'alert_sms' ORDER BY c.id DESC LIMIT 1) AS alert_sms_source
             FROM subscribers s WHERE s.subscriber_id IN ({})",
            super::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = query.bind(&row.subscriber_id);
        }
        for r in query.fetch_all(&mut **tx).await? {
            let bill_sms: i64 = r.try_get("bill_sms")?;
            let alert_sms: i64 = r.try_get("alert_sms")?;
            stored.insert(
                r.try_get("subscriber_id")?,
                Stored {
                    msisdn: r.try_get("msisdn")?,
                    plan_id: r.try_get("plan_id")?,
                    region: r.try_get("region")?,
                    name: r.try_get("name")?,
                    language: r.try_get("language")?,
                    billing_day: r.try_get("billing_day")?,
                    status: r.try_get("status")?,
                    bill_sms: bill_sms != 0,
                    bill_sms_source: r.try_get("bill_sms_source")?,
                    alert_sms: alert_sms != 0,
                    alert_sms_source: r.try_get("alert_sms_source")?,
                },
            );
        }
    }
    Ok(stored)
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
    columns: &[
        "subscriber_id",
        "msisdn",
        "name",
        "plan_id",
        "language",
        "billing_day",
        "status",
        "bill_sms",
        "alert_sms",
        "region",
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
