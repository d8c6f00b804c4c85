//! Bills, their flags and the runs that build them. A build reads a page of subscribers due
//! for a month with everything their bills need and writes each bill with its flags; then it
//! reads a page of bills that have no notification yet with what their SMS says besides.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::{AnyConnection, Row};

use super::batch::{insert_values, Rows, Table, Value};
use super::json_rows::JsonRows;
use super::{from_micros, to_micros, usage, StoreError, StoreResult, Tx};
use crate::domain::bill::{
    BillSummary, CategoryTotals, ChargeTotals, ItemizedCharge, UsageRecord, UsageTotals, VasCharge,
};
use crate::domain::category::{Category, Language};
use crate::domain::delivery::BILL_KIND;
use crate::domain::flags::{recent_mean, ChargeFlag, VasOrder};
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

pub struct BillToWrite {
    pub subscriber_id: String,
    pub month: BillingMonth,
    pub msisdn: Msisdn,
    pub period: Period,
    pub summary: BillSummary,
    pub flags: Vec<ChargeFlag>,
    pub spike: bool,
    pub built_at: DateTime<Utc>,
}

/// A bill written without a notification yet, with what its SMS needs besides the bill: the
/// subscriber's language and choice of bill SMS and the plan's allowances, as they are now.
pub struct UnnotifiedBill {
    pub subscriber_id: String,
    pub month: String,
    pub msisdn: Msisdn,
    pub language: Language,
    pub bill_sms: bool,
    pub spike: bool,
    pub period: Period,
    pub summary: BillSummary,
    pub flags: Vec<ChargeFlag>,
    /// The large `other` and `adjustment` records, in the order they occurred.
    pub itemized: Vec<ItemizedCharge>,
    /// For a spike, the mean of the previous bills it was measured against.
    pub recent_average: Option<Fen>,
    pub voice_minutes: i64,
    pub data_mb: i64,
    pub sms_count: i64,
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
///
/// The page's subscribers are one range of keys, so its totals, VAS charges and orders are
/// read as three ranges in key order, each on its index, rather than looked up subscriber by
/// subscriber: three short scans instead of thousands of probes. The range holds subscribers
/// the page does not bill (ended, or of another shard), whose rows are left aside, and VAS
/// charges from the earliest period's start to the latest one's end, which each subscriber's
/// own period then narrows.
async fn inputs_from_totals(
    conn: &mut AnyConnection,
    rows: JsonRows,
    month: BillingMonth,
    tz: Tz,
    due: &[Due<'_>],
) -> StoreResult<(HashMap<String, BillInputs>, HashSet<String>)> {
    let (Some(first), Some(last)) = (due.first(), due.last()) else { return Ok(Default::default()) };
    let from = due.iter().map(|d| d.period.start).min().expect("a page is not empty");
    let until = due.iter().map(|d| d.period.end).max().expect("a page is not empty");
    let totals = rows.columns_of(usage::USAGE_TOTALS.columns);
    let vas = rows.columns_of(VasColumns::COLUMNS);
    let orders = rows.columns_of(OrderColumns::COLUMNS);
    let (totals, vas, orders): (String, String, String) = sqlx::query_as(&format!(
        "SELECT
             (SELECT {totals} FROM usage_totals t
              WHERE t.subscriber_id >= $1 AND t.subscriber_id <= $2 AND t.month IN ($3, $4, $5)),
             (SELECT {vas} FROM usage_records u
              WHERE u.category = 'vas' AND u.subscriber_id >= $1 AND u.subscriber_id <= $2
                AND u.occurred_at >= $6 AND u.occurred_at < $7),
             (SELECT {orders} FROM vas_orders o WHERE o.subscriber_id >= $1 AND o.subscriber_id <= $2)"
    ))
    .bind(first.subscriber_id)
    .bind(last.subscriber_id)
    .bind(month.previous().to_string())
    .bind(month.to_string())
    .bind(month.next().to_string())
    .bind(to_micros(from))
    .bind(to_micros(until))
    .fetch_one(&mut *conn)
    .await?;
    let range = || format!("{}..{}", first.subscriber_id, last.subscriber_id);
    let month_text = month.to_string();
    let mut by_subscriber: HashMap<String, BillInputs> =
        due.iter().map(|d| (d.subscriber_id.to_string(), BillInputs::default())).collect();
    let bases: HashMap<&str, String> = due.iter().map(|d| (d.subscriber_id, usage::basis(d.billing_day, tz))).collect();
    let mut resummed = HashSet::new();
    let totals: TotalsColumns =
        parse_columns(&totals).ok_or_else(|| corrupt("usage_totals", format!("totals of {}", range())))?;
    for (i, subscriber_id) in totals.subscriber_id.iter().enumerate() {
        let Some(own_basis) = bases.get(subscriber_id.as_str()) else { continue };
        if totals.basis[i] != *own_basis {
            resummed.insert(subscriber_id.clone());
        } else if totals.month[i] == month_text {
            let inputs = by_subscriber.get_mut(subscriber_id).expect("every due subscriber has inputs");
            inputs.charges = totals.totals(i);
        }
    }
    let periods: HashMap<&str, Period> = due.iter().map(|d| (d.subscriber_id, d.period)).collect();
    let vas: VasColumns =
        parse_columns(&vas).ok_or_else(|| corrupt("usage_records", format!("VAS charges of {}", range())))?;
    let mut vas_by_subscriber: HashMap<String, Vec<VasRow>> = HashMap::new();
    let records = vas.record_id.into_iter().zip(vas.occurred_at).zip(vas.quantity).zip(vas.amount_fen);
    let records = records.zip(vas.service_code).zip(vas.description);
    for (subscriber_id, (((((record_id, at), quantity), amount), code), description)) in
        vas.subscriber_id.into_iter().zip(records)
    {
        let Some(period) = periods.get(subscriber_id.as_str()) else { continue };
        if period.contains(from_micros(at)) {
            let record = (record_id, at, quantity, amount, code, description);
            vas_by_subscriber.entry(subscriber_id).or_default().push(record);
        }
    }
    for (subscriber_id, records) in vas_by_subscriber {
        if let Some(inputs) = by_subscriber.get_mut(&subscriber_id) {
            inputs.vas = vas_in_order(records);
        }
    }
    let orders: OrderColumns =
        parse_columns(&orders).ok_or_else(|| corrupt("vas_orders", format!("orders of {}", range())))?;
    let rows = orders.service_code.into_iter().zip(orders.ordered_at).zip(orders.cancelled_at).zip(orders.confirmed);
    for (subscriber_id, (((code, ordered_at), cancelled_at), confirmed)) in orders.subscriber_id.into_iter().zip(rows) {
        if let Some(inputs) = by_subscriber.get_mut(&subscriber_id) {
            inputs.orders.push(vas_order((code, ordered_at, cancelled_at, confirmed)));
        }
    }
    for subscriber_id in &resummed {
        by_subscriber.remove(subscriber_id);
    }
    Ok((by_subscriber, resummed))
}

/// Rows read column by column (`JsonRows::columns_of`): a JSON array of columns, which serde
/// reads into a struct's fields in order.
trait Columns: serde::de::DeserializeOwned {
    /// The columns, in the order of the struct's fields.
    const COLUMNS: &'static [&'static str];
    /// Each column's length, which must all be the same.
    fn lengths(&self) -> Vec<usize>;
}

fn parse_columns<T: Columns>(text: &str) -> Option<T> {
    let columns: T = serde_json::from_str(text).ok()?;
    let lengths = columns.lengths();
    lengths.iter().all(|l| *l == lengths[0]).then_some(columns)
}

/// A struct of one vector per column, named as the columns are, and its `Columns`: the names
/// are written once, so the columns read and the fields they are read into cannot disagree.
macro_rules! columns {
    ($(#[$doc:meta])* $name:ident { $($field:ident: $value:ty),* $(,)? }) => {
        $(#[$doc])*
        #[derive(serde::Deserialize)]
        #[cfg_attr(test, derive(Default))]
        struct $name {
            $($field: Vec<$value>),*
        }

        impl Columns for $name {
            const COLUMNS: &'static [&'static str] = &[$(stringify!($field)),*];

            fn lengths(&self) -> Vec<usize> {
                vec![$(self.$field.len()),*]
            }
        }
    };
}

columns! {
    /// The usage totals of a page's range, in the order of the table's columns.
    TotalsColumns {
        subscriber_id: String,
        month: String,
        basis: String,
        plan_fee_fen: i64,
        voice_fen: i64,
        data_fen: i64,
        sms_fen: i64,
        other_fen: i64,
        discount_fen: i64,
        adjustment_fen: i64,
        voice_minutes: i64,
        data_kb: i64,
        sms_count: i64,
        records: i64,
    }
}

impl TotalsColumns {
    /// The totals row `i` stands for.
    fn totals(&self, i: usize) -> ChargeTotals {
        let mut amounts = [Fen::ZERO; 8];
        for (category, column) in [
            (Category::PlanFee, &self.plan_fee_fen),
            (Category::Voice, &self.voice_fen),
            (Category::Data, &self.data_fen),
            (Category::Sms, &self.sms_fen),
            (Category::Other, &self.other_fen),
            (Category::Discount, &self.discount_fen),
            (Category::Adjustment, &self.adjustment_fen),
        ] {
            amounts[category.index()] = Fen::new(column[i]);
        }
        ChargeTotals {
            categories: CategoryTotals::from_array(amounts),
            usage: UsageTotals {
                voice_minutes: self.voice_minutes[i],
                data_kb: self.data_kb[i],
                sms_count: self.sms_count[i],
            },
            records: self.records[i],
        }
    }
}

columns! {
    /// The VAS charges of a page's range.
    VasColumns {
        subscriber_id: String,
        record_id: String,
        occurred_at: i64,
        quantity: i64,
        amount_fen: i64,
        service_code: String,
        description: String,
    }
}

columns! {
    /// The VAS orders of a page's range.
    OrderColumns {
        subscriber_id: String,
        service_code: String,
        ordered_at: i64,
        cancelled_at: Option<i64>,
        confirmed: i64,
    }
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

type SubscriberOrder = (String, i64, Option<i64>, i64);

/// A subscriber's VAS orders as `ORDER_COLUMNS` gave them, JSON text or none.
fn vas_orders(subscriber_id: &str, stored: Option<&str>) -> StoreResult<Vec<VasOrder>> {
    let Some(text) = stored else { return Ok(Vec::new()) };
    let orders: Vec<SubscriberOrder> =
        serde_json::from_str(text).map_err(|_| corrupt("vas_orders", format!("orders of {subscriber_id}")))?;
    Ok(orders.into_iter().map(vas_order).collect())
}

fn vas_order((service_code, ordered_at, cancelled_at, confirmed): SubscriberOrder) -> VasOrder {
    VasOrder {
        service_code,
        ordered_at: from_micros(ordered_at),
        cancelled_at: cancelled_at.map(from_micros),
        confirmed: confirmed != 0,
    }
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

/// The next page of the month's bills after `after` that have no bill notification yet, in key
/// order, with their flags and what the SMS names besides the bill (`complete_for_sms`).
/// Bounded by `after` on both sides, as `unbilled_candidates` is. The page comes back column by
/// column (`JsonRows::columns_of`).
pub async fn unnotified_bills(
    conn: &mut AnyConnection,
    rows: JsonRows,
    month: BillingMonth,
    after: &str,
    limit: i64,
    itemize_min: Fen,
) -> StoreResult<Vec<UnnotifiedBill>> {
    let month_text = month.to_string();
    let (stored,): (String,) = sqlx::query_as(&select_bills(
        rows,
        &format!(
            "b.month = $1 AND b.subscriber_id > $2
               AND NOT EXISTS (SELECT 1 FROM notifications n
                               WHERE n.subscriber_id = b.subscriber_id AND n.month = $1 AND n.kind = '{BILL_KIND}'
                                 AND n.subscriber_id > $2)
             ORDER BY b.subscriber_id
             LIMIT $3"
        ),
    ))
    .bind(&month_text)
    .bind(after)
    .bind(limit)
    .fetch_one(&mut *conn)
    .await?;
    let mut bills = bills_from_columns(&stored, || format!("bills after {after}"))?;
    // The columns list the rows in the same order, which need not be the page's.
    bills.sort_unstable_by(|a, b| a.subscriber_id.cmp(&b.subscriber_id));
    complete_for_sms(conn, &mut bills, month, itemize_min).await?;
    Ok(bills)
}

/// The subscriber's latest bill as its SMS names it (for the `ZD` answer), with its month.
pub async fn latest_bill_for_sms(
    conn: &mut AnyConnection,
    rows: JsonRows,
    subscriber_id: &str,
    itemize_min: Fen,
) -> StoreResult<Option<(BillingMonth, UnnotifiedBill)>> {
    let (stored,): (String,) =
        sqlx::query_as(&select_bills(rows, "b.subscriber_id = $1 ORDER BY b.month DESC LIMIT 1"))
            .bind(subscriber_id)
            .fetch_one(&mut *conn)
            .await?;
    let mut bills = bills_from_columns(&stored, || format!("latest bill of {subscriber_id}"))?;
    let Some(bill) = bills.first() else { return Ok(None) };
    let month: BillingMonth = bill.month.parse().map_err(|_| corrupt("bills.month", &bill.month))?;
    complete_for_sms(conn, &mut bills, month, itemize_min).await?;
    Ok(bills.pop().map(|bill| (month, bill)))
}

impl super::Store {
    /// The subscriber's latest bill as its SMS names it, with its month.
    pub async fn latest_bill_for_sms(
        &self,
        subscriber_id: &str,
        itemize_min: Fen,
    ) -> StoreResult<Option<(BillingMonth, UnnotifiedBill)>> {
        let mut connection = self.connection().await?;
        latest_bill_for_sms(&mut connection, self.json_rows(), subscriber_id, itemize_min).await
    }
}

/// The bills, with what their SMS needs, that `filter` (a `WHERE` clause and what follows)
/// selects, as one row of columns.
fn select_bills(rows: JsonRows, filter: &str) -> String {
    let amounts: Vec<String> = Category::ALL.iter().map(|c| format!("b.{}_fen", c.as_str())).collect();
    format!(
        "SELECT {} FROM (
             SELECT b.subscriber_id, b.month, b.msisdn, b.period_start, b.period_end, {}, b.voice_minutes, b.data_kb,
                    b.sms_count, b.record_count, b.vas_lines, b.spike, s.language, s.bill_sms,
                    p.voice_minutes AS plan_voice_minutes, p.data_mb AS plan_data_mb, p.sms_count AS plan_sms_count
             FROM bills b JOIN subscribers s ON s.subscriber_id = b.subscriber_id JOIN plans p ON p.plan_id = s.plan_id
             WHERE {filter}) page",
        rows.columns_of(BillColumns::COLUMNS),
        amounts.join(", ")
    )
}

fn bills_from_columns(stored: &str, what: impl Fn() -> String) -> StoreResult<Vec<UnnotifiedBill>> {
    let mut page: BillColumns = parse_columns(stored).ok_or_else(|| corrupt("bills", what()))?;
    let mut bills = Vec::with_capacity(page.subscriber_id.len());
    for (i, subscriber_id) in page.subscriber_id.into_iter().enumerate() {
        let vas = match &page.vas_lines[i] {
            Some(lines) => read_vas_lines(lines).ok_or_else(|| corrupt("bills.vas_lines", lines))?,
            None => Vec::new(),
        };
        let language = &page.language[i];
        let amounts = [
            page.plan_fee_fen[i],
            page.voice_fen[i],
            page.data_fen[i],
            page.sms_fen[i],
            page.vas_fen[i],
            page.other_fen[i],
            page.discount_fen[i],
            page.adjustment_fen[i],
        ];
        bills.push(UnnotifiedBill {
            month: std::mem::take(&mut page.month[i]),
            msisdn: Msisdn::from_stored(std::mem::take(&mut page.msisdn[i])),
            language: language.parse().map_err(|_| corrupt("subscribers.language", language))?,
            bill_sms: page.bill_sms[i] != 0,
            spike: page.spike[i] != 0,
            period: Period { start: from_micros(page.period_start[i]), end: from_micros(page.period_end[i]) },
            summary: BillSummary {
                categories: CategoryTotals::from_array(amounts.map(Fen::new)),
                usage: UsageTotals {
                    voice_minutes: page.voice_minutes[i],
                    data_kb: page.data_kb[i],
                    sms_count: page.sms_count[i],
                },
                vas,
                record_count: page.record_count[i],
            },
            flags: Vec::new(),
            itemized: Vec::new(),
            recent_average: None,
            voice_minutes: page.plan_voice_minutes[i],
            data_mb: page.plan_data_mb[i],
            sms_count: page.plan_sms_count[i],
            subscriber_id,
        });
    }
    Ok(bills)
}

/// Adds to bills of `month`, in key order, what their SMS names besides the bill: the flagged
/// charges, the large `other` and `adjustment` records, and for a spike the mean of the bills
/// it was measured against. Each is read as one range of keys, as a page's inputs are.
async fn complete_for_sms(
    conn: &mut AnyConnection,
    bills: &mut [UnnotifiedBill],
    month: BillingMonth,
    itemize_min: Fen,
) -> StoreResult<()> {
    let (Some(first), Some(last)) = (bills.first(), bills.last()) else { return Ok(()) };
    let (first, last) = (first.subscriber_id.clone(), last.subscriber_id.clone());
    let mut flags = flags_between(conn, &month.to_string(), &first, &last).await?;
    let from = bills.iter().map(|b| b.period.start).min().expect("not empty");
    let until = bills.iter().map(|b| b.period.end).max().expect("not empty");
    let rows = sqlx::query(
        "SELECT subscriber_id, occurred_at, category, amount_fen, description FROM usage_records
         WHERE category IN ('other', 'adjustment') AND subscriber_id >= $1 AND subscriber_id <= $2
           AND occurred_at >= $3 AND occurred_at < $4 AND (amount_fen >= $5 OR amount_fen <= -$5)
         ORDER BY subscriber_id, occurred_at, record_id",
    )
    .bind(&first)
    .bind(&last)
    .bind(to_micros(from))
    .bind(to_micros(until))
    .bind(itemize_min.get().abs())
    .fetch_all(&mut *conn)
    .await?;
    let mut itemized: HashMap<String, Vec<(i64, ItemizedCharge)>> = HashMap::new();
    for row in rows {
        let category: String = row.try_get("category")?;
        let category: Category = category.parse().map_err(|_| corrupt("usage_records.category", &category))?;
        itemized.entry(row.try_get("subscriber_id")?).or_default().push((
            row.try_get("occurred_at")?,
            ItemizedCharge {
                category,
                description: row.try_get("description")?,
                amount: Fen::new(row.try_get("amount_fen")?),
            },
        ));
    }
    let previous = if bills.iter().any(|b| b.spike) {
        previous_totals_between(conn, &first, &last, month).await?
    } else {
        HashMap::new()
    };
    for bill in bills.iter_mut() {
        bill.flags = flags.remove(&bill.subscriber_id).unwrap_or_default();
        bill.itemized = itemized
            .remove(&bill.subscriber_id)
            .unwrap_or_default()
            .into_iter()
            .filter(|(at, _)| bill.period.contains(from_micros(*at)))
            .map(|(_, charge)| charge)
            .collect();
        if bill.spike {
            bill.recent_average = previous.get(&bill.subscriber_id).and_then(|totals| recent_mean(totals));
        }
    }
    Ok(())
}

columns! {
    /// A page of bills without notifications, as `unnotified_bills` reads them.
    BillColumns {
        subscriber_id: String,
        month: String,
        msisdn: String,
        period_start: i64,
        period_end: i64,
        plan_fee_fen: i64,
        voice_fen: i64,
        data_fen: i64,
        sms_fen: i64,
        vas_fen: i64,
        other_fen: i64,
        discount_fen: i64,
        adjustment_fen: i64,
        voice_minutes: i64,
        data_kb: i64,
        sms_count: i64,
        record_count: i64,
        vas_lines: Option<String>,
        spike: i64,
        language: String,
        bill_sms: i64,
        plan_voice_minutes: i64,
        plan_data_mb: i64,
        plan_sms_count: i64,
    }
}

/// The flags of the month's bills for the subscribers in `[first, last]`, by record id.
async fn flags_between(
    conn: &mut AnyConnection,
    month: &str,
    first: &str,
    last: &str,
) -> StoreResult<HashMap<String, Vec<ChargeFlag>>> {
    let rows = sqlx::query(
        "SELECT subscriber_id, record_id, reason, service_code, amount_fen FROM charge_flags
         WHERE month = $1 AND subscriber_id >= $2 AND subscriber_id <= $3
         ORDER BY subscriber_id, record_id",
    )
    .bind(month)
    .bind(first)
    .bind(last)
    .fetch_all(&mut *conn)
    .await?;
    let mut by_subscriber: HashMap<String, Vec<ChargeFlag>> = HashMap::new();
    for row in rows {
        let reason: String = row.try_get("reason")?;
        by_subscriber.entry(row.try_get("subscriber_id")?).or_default().push(ChargeFlag {
            record_id: row.try_get("record_id")?,
            reason: reason.parse().map_err(|_| corrupt("charge_flags.reason", &reason))?,
            service_code: row.try_get("service_code")?,
            amount: Fen::new(row.try_get("amount_fen")?),
        });
    }
    Ok(by_subscriber)
}

/// A bill's VAS services as `bills.vas_lines` keeps them; `None` when there are none.
fn write_vas_lines(vas: &[VasCharge]) -> Option<String> {
    let lines: Vec<_> = vas.iter().map(|v| (&v.service_code, &v.name, v.amount.get(), v.charges)).collect();
    (!lines.is_empty()).then(|| serde_json::to_string(&lines).expect("VAS lines serialise"))
}

fn read_vas_lines(lines: &str) -> Option<Vec<VasCharge>> {
    let lines: Vec<(String, String, i64, i64)> = serde_json::from_str(lines).ok()?;
    Some(
        lines
            .into_iter()
            .map(|(service_code, name, amount, charges)| VasCharge {
                service_code,
                name,
                amount: Fen::new(amount),
                charges,
            })
            .collect(),
    )
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
        "vas_lines",
    ],
};

const CHARGE_FLAGS: Table = Table {
    name: "charge_flags",
    columns: &["subscriber_id", "month", "record_id", "reason", "service_code", "amount_fen"],
};

/// The text columns of a page of bills, made once so that its rows can borrow them: each
/// bill's month and VAS lines.
pub(super) struct BillTexts {
    months: Vec<String>,
    vas_lines: Vec<Option<String>>,
}

impl BillTexts {
    pub(super) fn of(bills: &[BillToWrite]) -> BillTexts {
        BillTexts {
            months: bills.iter().map(|b| b.month.to_string()).collect(),
            vas_lines: bills.iter().map(|b| write_vas_lines(&b.summary.vas)).collect(),
        }
    }
}

/// What a page of bills writes, table by table.
pub(super) fn bill_rows<'a>(bills: &'a [BillToWrite], texts: &'a BillTexts) -> [(Table, Rows<'a>); 2] {
    let bill_rows = bills
        .iter()
        .zip(&texts.months)
        .zip(&texts.vas_lines)
        .map(|((b, month), vas_lines)| {
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
                Value::text_or_null(vas_lines.as_deref()),
            ]);
            row
        })
        .collect();
    let flag_rows = bills
        .iter()
        .zip(&texts.months)
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
    [(BILLS, bill_rows), (CHARGE_FLAGS, flag_rows)]
}

/// Writes a page of bills with their flags in the caller's transaction. A build on PostgreSQL
/// writes by `COPY` instead (`Copier::copy_bills`), except a dry run, which needs its pages in
/// its one transaction to roll them back.
pub async fn write_bills(tx: &mut Tx, bills: &[BillToWrite]) -> StoreResult<()> {
    let texts = BillTexts::of(bills);
    for (table, rows) in bill_rows(bills, &texts) {
        insert_values(tx, table, "", &rows).await?;
    }
    Ok(())
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

/// Marks the run's bills all written; its notifications follow.
pub async fn mark_billed(tx: &mut Tx, id: &str, at: DateTime<Utc>) -> StoreResult<()> {
    sqlx::query("UPDATE billing_runs SET billed_at = $2 WHERE id = $1")
        .bind(id)
        .bind(to_micros(at))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_totals_are_read_in_the_order_of_the_tables_columns() {
        assert_eq!(TotalsColumns::COLUMNS, usage::USAGE_TOTALS.columns);
    }

    #[test]
    fn a_totals_row_reads_back_as_the_totals_it_was_written_from() {
        let mut totals = ChargeTotals::default();
        for (i, category) in Category::ALL.into_iter().filter(|c| *c != Category::Vas).enumerate() {
            totals.add(category, i as i64 * 7 + 1, Fen::new(i as i64 * 1000 - 2500));
        }
        let mut columns = TotalsColumns::default();
        let written = usage::numbers(&totals);
        for (field, number) in [
            &mut columns.plan_fee_fen,
            &mut columns.voice_fen,
            &mut columns.data_fen,
            &mut columns.sms_fen,
            &mut columns.other_fen,
            &mut columns.discount_fen,
            &mut columns.adjustment_fen,
            &mut columns.voice_minutes,
            &mut columns.data_kb,
            &mut columns.sms_count,
            &mut columns.records,
        ]
        .into_iter()
        .zip(written)
        {
            field.push(number);
        }
        assert_eq!(columns.totals(0), totals);
    }

    #[test]
    fn columns_of_unequal_lengths_are_not_read() {
        let orders = r#"[["S1", "S2"], ["MUSIC", "GAME"], [1, 2], [null, 3], [1, 0]]"#;
        let read: OrderColumns = parse_columns(orders).unwrap();
        assert_eq!(read.cancelled_at, vec![None, Some(3)]);
        assert!(parse_columns::<OrderColumns>(r#"[["S1", "S2"], ["MUSIC"], [1, 2], [null, 3], [1, 0]]"#).is_none());
    }

    #[test]
    fn vas_lines_are_kept_with_the_bill_exactly_as_the_sms_lists_them() {
        let vas = vec![
            VasCharge {
                service_code: "MUSIC01".into(),
                name: "音乐\"会员\", 包月".into(),
                amount: Fen::new(1500),
                charges: 2,
            },
            VasCharge { service_code: "GAME".into(), name: String::new(), amount: Fen::new(-1), charges: 1 },
        ];
        let kept = write_vas_lines(&vas).unwrap();
        assert_eq!(read_vas_lines(&kept), Some(vas));
        assert_eq!(write_vas_lines(&[]), None, "a bill without VAS keeps NULL");
        assert_eq!(read_vas_lines("[[\"X\", 1]]"), None, "a malformed value is not read as none");
    }
}
