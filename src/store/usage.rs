//! Usage totals: each subscriber's charges other than VAS, summed per billing month by the
//! import in the transaction that stores the records, so that a build reads one row per
//! subscriber where it read every record.
//!
//! A row is summed under a basis, the billing day and timezone that cut the records into
//! months when they were imported. Either may change later; a build then finds rows of
//! another basis among the subscriber's months around the one it bills, and reads that
//! subscriber's records instead (`bills::bill_inputs`).

use std::collections::{BTreeMap, HashMap};

use chrono_tz::Tz;
use sqlx::Row;

use super::batch::{insert_values, Table, Value};
use super::json_rows::JsonRows;
use super::{Store, StoreError, StoreResult, Tx};
use crate::domain::bill::{CategoryTotals, ChargeTotals, UsageTotals};
use crate::domain::category::Category;
use crate::domain::money::Fen;
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

/// A row's numbers in column order.
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

/// The totals a row's numbers, in column order, stand for.
pub(super) fn from_numbers(numbers: [i64; NUMBERS]) -> ChargeTotals {
    let mut amounts = [Fen::ZERO; 8];
    for (category, amount) in SUMMED.into_iter().zip(numbers) {
        amounts[category.index()] = Fen::new(amount);
    }
    let [voice_minutes, data_kb, sms_count, records] = [numbers[7], numbers[8], numbers[9], numbers[10]];
    ChargeTotals {
        categories: CategoryTotals::from_array(amounts),
        usage: UsageTotals { voice_minutes, data_kb, sms_count },
        records,
    }
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

    #[test]
    fn a_row_reads_back_as_the_totals_it_was_written_from() {
        let mut totals = ChargeTotals::default();
        for (i, category) in SUMMED.into_iter().enumerate() {
            totals.add(category, i as i64 * 7 + 1, Fen::new(i as i64 * 1000 - 2500));
        }
        assert_eq!(from_numbers(numbers(&totals)), totals);
    }
}
