//! Reads a page of subscribers due for a month with everything their bills need, and writes
//! each bill with its flags and its notification in the same transaction.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::{AnyConnection, Row};

use super::batch::{insert_values, Table, Value};
use super::json_rows::JsonRows;
use super::{from_micros, to_micros, totals, StoreError, StoreResult, Tx};
use crate::domain::bill::{BillSummary, ChargeTotals, UsageRecord};
use crate::domain::category::{Category, Language};
use crate::domain::flags::{ChargeFlag, VasOrder};
use crate::domain::money::Fen;
use crate::domain::msisdn::Msisdn;
use crate::domain::period::{BillingDay, BillingMonth, Period};

/// A subscriber who may get a bill for the month: active or suspended, not yet billed.
#[derive(Debug, Clone)]
pub struct BillingCandidate {
    pub subscriber_id: String,
    pub msisdn: Msisdn,
    pub language: Language,
    pub billing_day: BillingDay,
    pub bill_sms: bool,
    pub voice_minutes: i64,
    pub data_mb: i64,
    pub sms_count: i64,
}

pub struct NotificationToWrite {
    pub id: String,
    pub kind: String,
    pub status: &'static str,
    pub reason: Option<&'static str>,
    pub segments: i64,
    pub encoding: &'static str,
    pub text: String,
}

pub struct BillToWrite {
    pub subscriber_id: String,
    pub month: BillingMonth,
    pub msisdn: Msisdn,
    pub period: Period,
    pub summary: BillSummary,
    pub flags: Vec<ChargeFlag>,
    pub spike: bool,
    pub built_at: DateTime<Utc>,
    pub notification: NotificationToWrite,
}

fn corrupt(column: &'static str, value: impl ToString) -> StoreError {
    StoreError::Corrupt { column, value: value.to_string() }
}

/// The next page of unbilled active or suspended subscribers after `after`, in key order.
/// The bills are bounded by `after` as well: PostgreSQL merges the subscribers with the
/// month's bills, and without the bound it walked every bill already built from the first key
/// on, for every page, so that a month's build grew with the square of its subscribers.
pub async fn unbilled_candidates(
    conn: &mut AnyConnection,
    month: BillingMonth,
    after: &str,
    limit: i64,
) -> StoreResult<Vec<BillingCandidate>> {
    let rows = sqlx::query(
        "SELECT s.subscriber_id, s.msisdn, s.language, s.billing_day, s.bill_sms, p.voice_minutes, p.data_mb, p.sms_count
         FROM subscribers s JOIN plans p ON p.plan_id = s.plan_id
         WHERE s.subscriber_id > $1 AND s.status IN ('active', 'suspended')
           AND NOT EXISTS (SELECT 1 FROM bills b WHERE b.subscriber_id = s.subscriber_id AND b.month = $2
                                 AND b.subscriber_id > $1)
         ORDER BY s.subscriber_id
         LIMIT $3",
    )
    .bind(after)
    .bind(month.to_string())
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|row| {
            let language: String = row.try_get("language")?;
            let day: i64 = row.try_get("billing_day")?;
            Ok(BillingCandidate {
                subscriber_id: row.try_get("subscriber_id")?,
                msisdn: Msisdn::from_stored(row.try_get("msisdn")?),
                language: language.parse().map_err(|_| corrupt("subscribers.language", &language))?,
                billing_day: BillingDay::new(day).ok_or_else(|| corrupt("subscribers.billing_day", day))?,
                bill_sms: row.try_get::<i64, _>("bill_sms")? != 0,
                voice_minutes: row.try_get("voice_minutes")?,
                data_mb: row.try_get("data_mb")?,
                sms_count: row.try_get("sms_count")?,
            })
        })
        .collect()
}

/// What a subscriber's bill needs of its usage and orders: within the subscriber's own
/// period, the totals of every record but the `vas` ones and the `vas` records themselves;
/// and every VAS order the subscriber ever placed, which the flags judge those records by.
#[derive(Debug, Default)]
pub struct BillInputs {
    pub charges: ChargeTotals,
    /// In the order they occurred.
    pub vas: Vec<UsageRecord>,
    pub orders: Vec<VasOrder>,
}

/// A subscriber due a bill of the month: its billing day and the period that day gives.
pub struct Due<'a> {
    pub subscriber_id: &'a str,
    pub billing_day: BillingDay,
    pub period: Period,
}

/// The usage and orders of each subscriber in `due` for `month`, periods cut in `tz`. From
/// the usage totals when every record is in them (`totals_complete`), except for a subscriber
/// whose months around this one were summed under another billing day or timezone, whose
/// records are read instead; from the records otherwise.
pub async fn bill_inputs(
    conn: &mut AnyConnection,
    rows: JsonRows,
    month: BillingMonth,
    tz: Tz,
    due: &[Due<'_>],
    totals_complete: bool,
) -> StoreResult<HashMap<String, BillInputs>> {
    if !totals_complete {
        return inputs_from_records(conn, rows, due).await;
    }
    let (mut inputs, resummed) = inputs_from_totals(conn, rows, month, tz, due).await?;
    if !resummed.is_empty() {
        let resummed: Vec<Due> = due
            .iter()
            .filter(|d| resummed.contains(d.subscriber_id))
            .map(|d| Due { subscriber_id: d.subscriber_id, billing_day: d.billing_day, period: d.period })
            .collect();
        inputs.extend(inputs_from_records(conn, rows, &resummed).await?);
    }
    Ok(inputs)
}

/// The page's bill inputs from the totals of `month`, and the subscribers whose totals were
/// summed under another basis in the months a record of this period can have been placed in
/// under any basis (the one before, this, and the one after), whose records must be read.
async fn inputs_from_totals(
    conn: &mut AnyConnection,
    rows: JsonRows,
    month: BillingMonth,
    tz: Tz,
    due: &[Due<'_>],
) -> StoreResult<(HashMap<String, BillInputs>, HashSet<String>)> {
    let page: Vec<_> = due
        .iter()
        .map(|d| {
            (d.subscriber_id, to_micros(d.period.start), to_micros(d.period.end), totals::basis(d.billing_day, tz))
        })
        .collect();
    let page = serde_json::to_string(&page).expect("periods serialise");
    let totals = rows.array_of(&totals::USAGE_TOTALS.columns[3..].join(", "));
    let vas = rows.array_of(VAS_COLUMNS);
    let orders = rows.array_of(ORDER_COLUMNS);
    // Subscriber, its totals, its rows under other bases, its VAS charges, its orders.
    type Stored = (String, Option<String>, i64, Option<String>, Option<String>);
    let stored: Vec<Stored> = sqlx::query_as(&format!(
        "{} SELECT j.value ->> 0,
             (SELECT {totals} FROM usage_totals t
              WHERE t.subscriber_id = j.value ->> 0 AND t.month = $2 AND t.basis = j.value ->> 3),
             (SELECT COUNT(*) FROM usage_totals t
              WHERE t.subscriber_id = j.value ->> 0 AND t.month IN ($3, $2, $4) AND t.basis <> j.value ->> 3),
             (SELECT {vas} FROM usage_records u
              WHERE u.subscriber_id = j.value ->> 0 AND u.category = 'vas'
                AND u.occurred_at >= CAST(j.value ->> 1 AS BIGINT) AND u.occurred_at < CAST(j.value ->> 2 AS BIGINT)),
             (SELECT {orders} FROM vas_orders o WHERE o.subscriber_id = j.value ->> 0)
         FROM j",
        rows.with_rows()
    ))
    .bind(&page)
    .bind(month.to_string())
    .bind(month.previous().to_string())
    .bind(month.next().to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut by_subscriber: HashMap<String, BillInputs> = HashMap::with_capacity(due.len());
    let mut resummed = HashSet::new();
    for (subscriber_id, totals, other_bases, vas, orders) in stored {
        if other_bases > 0 {
            resummed.insert(subscriber_id);
            continue;
        }
        let totals: Vec<[i64; totals::NUMBERS]> = match totals {
            Some(totals) => serde_json::from_str(&totals)
                .map_err(|_| corrupt("usage_totals", format!("totals of {subscriber_id}")))?,
            None => Vec::new(),
        };
        let charges = totals.first().map(|numbers| totals::from_numbers(*numbers)).unwrap_or_default();
        let vas = vas_records(&subscriber_id, vas.as_deref())?;
        let orders = vas_orders(&subscriber_id, orders.as_deref())?;
        by_subscriber.insert(subscriber_id, BillInputs { charges, vas, orders });
    }
    Ok((by_subscriber, resummed))
}

const VAS_COLUMNS: &str = "u.record_id, u.occurred_at, u.quantity, u.amount_fen, u.service_code, u.description";
const ORDER_COLUMNS: &str = "o.service_code, o.ordered_at, o.cancelled_at, o.confirmed";

/// The usage and orders of each subscriber in `due`, usage within that subscriber's period,
/// from the records. The page travels as one JSON parameter; each subscriber's records are
/// found on the (subscriber, time) index and its orders on their key, and come back as two
/// JSON values in one row: a row of a dozen fields decoded by the driver cost more than the
/// query itself, and grouping by subscriber and category in the database more than the walk
/// of the index. Adding up some twenty charges here costs next to nothing.
async fn inputs_from_records(
    conn: &mut AnyConnection,
    rows: JsonRows,
    due: &[Due<'_>],
) -> StoreResult<HashMap<String, BillInputs>> {
    let page: Vec<_> =
        due.iter().map(|d| (d.subscriber_id, to_micros(d.period.start), to_micros(d.period.end))).collect();
    let page = serde_json::to_string(&page).expect("periods serialise");
    // The charges column by column: a JSON array per record cost PostgreSQL and SQLite more
    // than finding the records.
    let charge = "u.category <> 'vas'";
    let vas_record = rows.row(VAS_COLUMNS);
    let usage = rows.arrays_where(&[
        ("u.category", charge),
        ("u.amount_fen", charge),
        ("u.quantity", charge),
        (&vas_record, "u.category = 'vas'"),
    ]);
    let orders = rows.array_of(ORDER_COLUMNS);
    let stored: Vec<(String, String, Option<String>)> = sqlx::query_as(&format!(
        "{} SELECT j.value ->> 0,
             (SELECT {usage} FROM usage_records u
              WHERE u.subscriber_id = j.value ->> 0
                AND u.occurred_at >= CAST(j.value ->> 1 AS BIGINT) AND u.occurred_at < CAST(j.value ->> 2 AS BIGINT)),
             (SELECT {orders} FROM vas_orders o WHERE o.subscriber_id = j.value ->> 0)
         FROM j",
        rows.with_rows()
    ))
    .bind(&page)
    .fetch_all(&mut *conn)
    .await?;
    type Column<T> = Option<Vec<T>>;
    let mut by_subscriber: HashMap<String, BillInputs> = HashMap::with_capacity(due.len());
    for (subscriber_id, usage, orders) in stored {
        let (categories, amounts, quantities, vas): (Column<Category>, Column<i64>, Column<i64>, Column<VasRow>) =
            serde_json::from_str(&usage).map_err(|_| corrupt("usage_records", format!("usage of {subscriber_id}")))?;
        let (categories, amounts, quantities) =
            (categories.unwrap_or_default(), amounts.unwrap_or_default(), quantities.unwrap_or_default());
        if amounts.len() != categories.len() || quantities.len() != categories.len() {
            return Err(corrupt("usage_records", format!("usage of {subscriber_id}")));
        }
        let mut charges = ChargeTotals::default();
        for ((category, amount), quantity) in categories.into_iter().zip(amounts).zip(quantities) {
            charges.add(category, quantity, Fen::new(amount));
        }
        let vas = vas_in_order(vas.unwrap_or_default());
        let orders = vas_orders(&subscriber_id, orders.as_deref())?;
        by_subscriber.insert(subscriber_id, BillInputs { charges, vas, orders });
    }
    Ok(by_subscriber)
}

type VasRow = (String, i64, i64, i64, String, String);

/// A subscriber's VAS records as `VAS_COLUMNS` gave them, JSON text or none.
fn vas_records(subscriber_id: &str, stored: Option<&str>) -> StoreResult<Vec<UsageRecord>> {
    let Some(text) = stored else { return Ok(Vec::new()) };
    let rows =
        serde_json::from_str(text).map_err(|_| corrupt("usage_records", format!("VAS charges of {subscriber_id}")))?;
    Ok(vas_in_order(rows))
}

fn vas_in_order(stored: Vec<VasRow>) -> Vec<UsageRecord> {
    let mut vas: Vec<UsageRecord> = stored
        .into_iter()
        .map(|(record_id, occurred_at, quantity, amount, service_code, description)| UsageRecord {
            record_id,
            occurred_at: from_micros(occurred_at),
            category: Category::Vas,
            quantity,
            amount: Fen::new(amount),
            service_code,
            description,
        })
        .collect();
    vas.sort_by(|a, b| (a.occurred_at, &a.record_id).cmp(&(b.occurred_at, &b.record_id)));
    vas
}

/// A subscriber's VAS orders as `ORDER_COLUMNS` gave them, JSON text or none.
fn vas_orders(subscriber_id: &str, stored: Option<&str>) -> StoreResult<Vec<VasOrder>> {
    let Some(text) = stored else { return Ok(Vec::new()) };
    let orders: Vec<(String, i64, Option<i64>, i64)> =
        serde_json::from_str(text).map_err(|_| corrupt("vas_orders", format!("orders of {subscriber_id}")))?;
    Ok(orders
        .into_iter()
        .map(|(service_code, ordered_at, cancelled_at, confirmed)| VasOrder {
            service_code,
            ordered_at: from_micros(ordered_at),
            cancelled_at: cancelled_at.map(from_micros),
            confirmed: confirmed != 0,
        })
        .collect())
}

/// Totals of the bills built before `month` for the subscribers in `[first, last]`, most
/// recent first, at most three each (what the spike rule looks at).
pub async fn previous_totals_between(
    conn: &mut AnyConnection,
    first: &str,
    last: &str,
    month: BillingMonth,
) -> StoreResult<HashMap<String, Vec<Fen>>> {
    let rows = sqlx::query(
        "SELECT subscriber_id, total_fen FROM bills
         WHERE subscriber_id >= $1 AND subscriber_id <= $2 AND month < $3
         ORDER BY subscriber_id, month DESC",
    )
    .bind(first)
    .bind(last)
    .bind(month.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let mut by_subscriber: HashMap<String, Vec<Fen>> = HashMap::new();
    for row in rows {
        let totals = by_subscriber.entry(row.try_get("subscriber_id")?).or_default();
        if totals.len() < 3 {
            totals.push(Fen::new(row.try_get("total_fen")?));
        }
    }
    Ok(by_subscriber)
}

const BILLS: Table = Table {
    name: "bills",
    columns: &[
        "subscriber_id",
        "month",
        "msisdn",
        "period_start",
        "period_end",
        "total_fen",
        "plan_fee_fen",
        "voice_fen",
        "data_fen",
        "sms_fen",
        "vas_fen",
        "other_fen",
        "discount_fen",
        "adjustment_fen",
        "voice_minutes",
        "data_kb",
        "sms_count",
        "record_count",
        "spike",
        "built_at",
    ],
};

const CHARGE_FLAGS: Table = Table {
    name: "charge_flags",
    columns: &["subscriber_id", "month", "record_id", "reason", "service_code", "amount_fen"],
};

const NOTIFICATIONS: Table = Table {
    name: "notifications",
    columns: &[
        "id",
        "subscriber_id",
        "month",
        "kind",
        "msisdn",
        "status",
        "reason",
        "attempts",
        "segments",
        "encoding",
        "text",
        "created_at",
        "updated_at",
    ],
};

const NOTIFICATION_EVENTS: Table = Table { name: "notification_events", columns: &["notification_id", "status", "at"] };

type Rows<'a> = Vec<Vec<Value<'a>>>;

/// What a page of bills writes, table by table; `months` holds each bill's month as text.
pub(super) fn page_rows<'a>(bills: &'a [BillToWrite], months: &'a [String]) -> [(Table, Rows<'a>); 4] {
    let bill_rows = bills
        .iter()
        .zip(months)
        .map(|(b, month)| {
            let c = &b.summary.categories;
            let mut row = vec![
                Value::Text(&b.subscriber_id),
                Value::Text(month),
                Value::Text(b.msisdn.as_str()),
                Value::Int(to_micros(b.period.start)),
                Value::Int(to_micros(b.period.end)),
                Value::Int(b.summary.total().get()),
            ];
            row.extend(Category::ALL.iter().map(|&category| Value::Int(c.get(category).get())));
            row.extend([
                Value::Int(b.summary.usage.voice_minutes),
                Value::Int(b.summary.usage.data_kb),
                Value::Int(b.summary.usage.sms_count),
                Value::Int(b.summary.record_count),
                Value::Int(i64::from(b.spike)),
                Value::Int(to_micros(b.built_at)),
            ]);
            row
        })
        .collect();
    let flag_rows = bills
        .iter()
        .zip(months)
        .flat_map(|(b, month)| {
            b.flags.iter().map(move |f| {
                vec![
                    Value::Text(&b.subscriber_id),
                    Value::Text(month),
                    Value::Text(&f.record_id),
                    Value::Text(f.reason.as_str()),
                    Value::Text(&f.service_code),
                    Value::Int(f.amount.get()),
                ]
            })
        })
        .collect();
    let notification_rows = bills
        .iter()
        .zip(months)
        .map(|(b, month)| {
            let n = &b.notification;
            let at = Value::Int(to_micros(b.built_at));
            vec![
                Value::Text(&n.id),
                Value::Text(&b.subscriber_id),
                Value::Text(month),
                Value::Text(&n.kind),
                Value::Text(b.msisdn.as_str()),
                Value::Text(n.status),
                Value::text_or_null(n.reason),
                Value::Int(0),
                Value::Int(n.segments),
                Value::Text(n.encoding),
                Value::Text(&n.text),
                at,
                at,
            ]
        })
        .collect();
    let event_rows = bills
        .iter()
        .map(|b| {
            let n = &b.notification;
            vec![Value::Text(&n.id), Value::Text(n.status), Value::Int(to_micros(b.built_at))]
        })
        .collect();
    [
        (BILLS, bill_rows),
        (CHARGE_FLAGS, flag_rows),
        (NOTIFICATIONS, notification_rows),
        (NOTIFICATION_EVENTS, event_rows),
    ]
}

/// Writes a page of bills with their flags, notifications and first statuses, in the caller's
/// transaction. A build on PostgreSQL writes by `COPY` instead (`Copier::copy_page`), except a
/// dry run, which needs its pages in its one transaction to roll them back.
pub async fn write_bills(tx: &mut Tx, bills: &[BillToWrite]) -> StoreResult<()> {
    let months: Vec<String> = bills.iter().map(|b| b.month.to_string()).collect();
    for (table, rows) in page_rows(bills, &months) {
        insert_values(tx, table, "", &rows).await?;
    }
    Ok(())
}

/// Writes a notification and its first status; the unique (subscriber, month, kind) key
/// refuses a second one.
pub async fn insert_notification(
    tx: &mut Tx,
    subscriber_id: &str,
    month: &str,
    msisdn: &Msisdn,
    n: &NotificationToWrite,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO notifications (id, subscriber_id, month, kind, msisdn, status, reason, attempts, segments, encoding, text, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, $11, $11)",
    )
    .bind(&n.id)
    .bind(subscriber_id)
    .bind(month)
    .bind(&n.kind)
    .bind(msisdn.as_str())
    .bind(n.status)
    .bind(n.reason)
    .bind(n.segments)
    .bind(n.encoding)
    .bind(&n.text)
    .bind(to_micros(at))
    .execute(&mut **tx)
    .await?;
    super::notifications::record_event(tx, &n.id, n.status, at).await
}

pub async fn start_billing_run(
    tx: &mut Tx,
    id: &str,
    month: BillingMonth,
    as_of: DateTime<Utc>,
    started_at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO billing_runs (id, month, as_of, started_at, billed, not_due) VALUES ($1, $2, $3, $4, 0, 0)",
    )
    .bind(id)
    .bind(month.to_string())
    .bind(to_micros(as_of))
    .bind(to_micros(started_at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn finish_billing_run(
    tx: &mut Tx,
    id: &str,
    finished_at: DateTime<Utc>,
    billed: u64,
    not_due: u64,
) -> StoreResult<()> {
    sqlx::query("UPDATE billing_runs SET finished_at = $2, billed = $3, not_due = $4 WHERE id = $1")
        .bind(id)
        .bind(to_micros(finished_at))
        .bind(billed as i64)
        .bind(not_due as i64)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
