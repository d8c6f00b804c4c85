//! Usage records and their totals: each subscriber's charges other than VAS, summed per
//! billing month by the import in the transaction that stores the records, so that a build
//! reads one row per subscriber where it read every record.
//!
//! A row is summed under a basis, the billing day and timezone that cut the records into
//! months when they were imported. Either may change later; a build then finds rows of
//! another basis among the subscriber's months around the one it bills, and reads that
//! subscriber's records instead (`bills::bill_inputs`).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono_tz::Tz;
use sqlx::Row;

use super::batch::{insert_values, insert_values_returning, Table, Value};
use super::json_rows::JsonRows;
use super::{to_micros, Backend, Store, StoreError, StoreResult, Tx};
use crate::domain::bill::ChargeTotals;
use crate::domain::category::Category;
use crate::domain::period::{BillingDay, BillingMonth, MonthFinder};
use crate::domain::records::SubscriberUsage;

pub(super) const USAGE_TOTALS: Table = Table {
    name: "usage_totals",
    columns: &[
        "subscriber_id",
        "month",
        "basis",
        "plan_fee_fen",
        "voice_fen",
        "data_fen",
        "sms_fen",
        "other_fen",
        "discount_fen",
        "adjustment_fen",
        "voice_minutes",
        "data_kb",
        "sms_count",
        "records",
    ],
};

/// The categories whose amounts a totals row holds, in the order of its columns.
const SUMMED: [Category; 7] = [
    Category::PlanFee,
    Category::Voice,
    Category::Data,
    Category::Sms,
    Category::Other,
    Category::Discount,
    Category::Adjustment,
];

/// The columns after the key, as `numbers` lists them.
pub(super) const NUMBERS: usize = 11;

/// The fact that says every usage record stored is in the totals.
pub(super) const COMPLETE: &str = "usage_totals_complete";

/// How a totals row names the billing day and timezone its months were cut by.
pub fn basis(day: BillingDay, tz: Tz) -> String {
    format!("{} {}", day.get(), tz.name())
}

/// A row's numbers in column order, as they are bound to its columns.
pub(super) fn numbers(totals: &ChargeTotals) -> [i64; NUMBERS] {
    let [plan_fee, voice, data, sms, other, discount, adjustment] = SUMMED.map(|c| totals.categories.get(c).get());
    let usage = totals.usage;
    [
        plan_fee,
        voice,
        data,
        sms,
        other,
        discount,
        adjustment,
        usage.voice_minutes,
        usage.data_kb,
        usage.sms_count,
        totals.records,
    ]
}

/// Adds a batch's sums to the rows already there, or makes them.
pub(super) fn add_on_conflict() -> String {
    let set: Vec<String> =
        USAGE_TOTALS.columns[3..].iter().map(|c| format!("{c} = usage_totals.{c} + excluded.{c}")).collect();
    format!("ON CONFLICT (subscriber_id, month, basis) DO UPDATE SET {}", set.join(", "))
}

/// A batch's sums: per subscriber, month and billing day, in key order, so that two batches
/// written at once lock the rows they share in the same order and never wait for each other
/// in a circle.
pub(super) type BatchTotals<'r> = BTreeMap<(&'r str, BillingMonth, BillingDay), ChargeTotals>;

/// Sums the records of `rows` other than VAS charges per subscriber and billing month, each
/// subscriber's months cut by its billing day in `days`.
pub(super) fn sum_by_month<'r>(
    rows: impl IntoIterator<Item = &'r SubscriberUsage>,
    days: &HashMap<String, BillingDay>,
    tz: Tz,
) -> StoreResult<BatchTotals<'r>> {
    let mut finder = MonthFinder::new(tz);
    let mut sums = BatchTotals::new();
    for row in rows {
        let record = &row.record;
        if record.category == Category::Vas {
            continue;
        }
        // The import checked every subscriber, and subscribers are never deleted.
        let day = *days.get(&row.subscriber_id).ok_or_else(|| StoreError::Corrupt {
            column: "subscribers.subscriber_id",
            value: format!("{} is missing for record {}", row.subscriber_id, record.record_id),
        })?;
        let month = finder.month_of(record.occurred_at, day);
        sums.entry((row.subscriber_id.as_str(), month, day)).or_default().add(
            record.category,
            record.quantity,
            record.amount,
        );
    }
    Ok(sums)
}

/// The billing days of `rows`' subscribers, as the transaction sees them.
pub(super) fn subscriber_ids<'r>(rows: impl IntoIterator<Item = &'r SubscriberUsage>) -> Vec<&'r str> {
    let mut ids: Vec<&str> = rows.into_iter().map(|row| row.subscriber_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

pub(super) fn billing_day(subscriber_id: &str, day: i64) -> StoreResult<BillingDay> {
    BillingDay::new(day).ok_or_else(|| StoreError::Corrupt {
        column: "subscribers.billing_day",
        value: format!("{day} of {subscriber_id}"),
    })
}

/// Adds the records of `rows` to the totals in `tx`, on either backend. `rows` are the rows
/// `tx` has just stored, each once.
pub(super) async fn add_usage_totals(tx: &mut Tx, rows: &[&SubscriberUsage], tz: Tz) -> StoreResult<()> {
    let ids = subscriber_ids(rows.iter().copied());
    if ids.is_empty() {
        return Ok(());
    }
    let ids = serde_json::to_string(&ids).expect("strings serialise");
    let stored = sqlx::query(&format!(
        "SELECT subscriber_id, billing_day FROM subscribers WHERE subscriber_id IN ({})",
        JsonRows::of(tx).strings(1)
    ))
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    let mut days = HashMap::with_capacity(stored.len());
    for row in stored {
        let id: String = row.try_get("subscriber_id")?;
        let day = billing_day(&id, row.try_get("billing_day")?)?;
        days.insert(id, day);
    }
    let sums = sum_by_month(rows.iter().copied(), &days, tz)?;
    let keys: Vec<(&str, String, String, [i64; NUMBERS])> = sums
        .iter()
        .map(|((subscriber_id, month, day), totals)| {
            (*subscriber_id, month.to_string(), basis(*day, tz), numbers(totals))
        })
        .collect();
    let values: Vec<Vec<Value>> = keys
        .iter()
        .map(|(subscriber_id, month, basis, numbers)| {
            let mut row = vec![Value::Text(subscriber_id), Value::Text(month), Value::Text(basis)];
            row.extend(numbers.iter().map(|n| Value::Int(*n)));
            row
        })
        .collect();
    insert_values(tx, USAGE_TOTALS, &add_on_conflict(), &values).await?;
    Ok(())
}

/// Usage records are immutable once known: a known `record_id` is a no-op. The records
/// stored are added to the usage totals in the same transaction, months cut in `tz`.
pub async fn write_usage(tx: &mut Tx, rows: &[SubscriberUsage], tz: Tz) -> StoreResult<u64> {
    let values: Vec<_> = rows.iter().map(usage_values).collect();
    // No conflict target: on PostgreSQL the key is each partition's own (`partitions`).
    let conflict = "ON CONFLICT DO NOTHING";
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

impl Store {
    /// Whether every usage record stored is in the totals: true unless the database held
    /// usage before it kept totals.
    pub async fn usage_totals_complete(&self, connection: &mut sqlx::AnyConnection) -> StoreResult<bool> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM store_facts WHERE name = $1")
            .bind(COMPLETE)
            .fetch_one(&mut *connection)
            .await?;
        Ok(count > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summed_categories_are_every_one_but_vas_in_column_order() {
        let columns: Vec<String> = SUMMED.iter().map(|c| format!("{}_fen", c.as_str())).collect();
        assert_eq!(USAGE_TOTALS.columns[3..3 + SUMMED.len()], columns.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(Category::ALL.iter().all(|c| *c == Category::Vas || SUMMED.contains(c)));
        assert_eq!(USAGE_TOTALS.columns.len(), 3 + NUMBERS);
    }
}
