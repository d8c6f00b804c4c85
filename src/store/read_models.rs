//! Read models for `status`, the exports and the API: bills, flags, deliveries with their
//! history, runs and spam counts, paged by key so that nothing is held whole.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_micros, placeholders, to_micros, Backend, Store, StoreResult};
use crate::domain::bill::CategoryTotals;
use crate::domain::category::Category;
use crate::domain::delivery::DeliveryStatus;
use crate::domain::money::Fen;
use crate::domain::period::{BillingMonth, Period};
use crate::domain::spam::ReportCount;

#[derive(Debug, Clone)]
pub struct FlagExport {
    pub subscriber_id: String,
    pub record_id: String,
    pub reason: String,
    pub service_code: String,
    pub amount_fen: i64,
}

#[derive(Debug, Clone)]
pub struct BillExport {
    pub subscriber_id: String,
    pub month: String,
    pub msisdn: String,
    pub period: Period,
    pub total_fen: i64,
    pub categories: CategoryTotals,
    pub voice_minutes: i64,
    pub data_kb: i64,
    pub sms_count: i64,
    pub spike: bool,
    pub status: Option<String>,
    pub segments: Option<i64>,
    pub flags: Vec<FlagExport>,
}

#[derive(Debug, Clone)]
pub struct DeliveryExport {
    pub id: String,
    pub subscriber_id: String,
    pub msisdn: String,
    pub month: String,
    pub kind: String,
    pub status: String,
    pub reason: Option<String>,
    pub attempts: i64,
    pub segments: i64,
    pub encoding: String,
    pub gateway_message_id: Option<String>,
    /// The sender port it went out from; `None` until a worker claimed it.
    pub sender: Option<String>,
    pub text: String,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct MonthStatus {
    pub bills: i64,
    pub total_fen: i64,
    pub spikes: i64,
    pub deliveries: Vec<(String, i64)>,
    pub flags: Vec<(String, i64)>,
    /// Records that arrived for a period after its bill was frozen.
    pub late_records: i64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BillTotals {
    pub bills: i64,
    pub total_fen: i64,
    pub spikes: i64,
    /// The usage records the bills were built from.
    pub records: i64,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub month: Option<BillingMonth>,
    pub msisdn: Option<String>,
    pub status: Option<DeliveryStatus>,
    /// Last change at or after.
    pub from: Option<DateTime<Utc>>,
    /// Last change before.
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct RunSummary {
    pub month: String,
    pub runs: i64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl Store {
    /// Notifications matching `filter` after id `after`, in id order, at most `limit`.
    pub async fn deliveries(
        &self,
        filter: &DeliveryFilter,
        after: &str,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryExport>> {
        self.filtered_deliveries(
            "id, subscriber_id, msisdn, month, kind, status, reason, attempts, segments, encoding, gateway_message_id, sender, text, updated_at",
            filter,
            after,
            Some(limit),
        )
        .await?
        .iter()
        .map(delivery_from_row)
        .collect()
    }

    /// How many notifications match `filter` after id `after`.
    pub async fn count_deliveries(&self, filter: &DeliveryFilter, after: &str) -> StoreResult<u64> {
        let rows = self.filtered_deliveries("COUNT(*) AS n", filter, after, None).await?;
        let n: i64 = rows.first().map(|r| r.try_get("n")).transpose()?.unwrap_or(0);
        Ok(n as u64)
    }

    /// `columns` of the notifications matching `filter` after id `after`, in id order, at most
    /// `limit` when given.
    async fn filtered_deliveries(
        &self,
        columns: &str,
        filter: &DeliveryFilter,
        after: &str,
        limit: Option<i64>,
    ) -> StoreResult<Vec<sqlx::any::AnyRow>> {
        let mut conditions = vec!["id > $1".to_string()];
        let mut texts: Vec<String> = vec![after.to_string()];
        let mut numbers: Vec<i64> = Vec::new();
        if let Some(month) = filter.month {
            texts.push(month.to_string());
            conditions.push(format!("month = ${}", texts.len()));
        }
        if let Some(msisdn) = &filter.msisdn {
            texts.push(msisdn.clone());
            conditions.push(format!("msisdn = ${}", texts.len()));
        }
        if let Some(status) = filter.status {
            texts.push(status.as_str().to_string());
            conditions.push(format!("status = ${}", texts.len()));
        }
        let first_number = texts.len() + 1;
        if let Some(from) = filter.from {
            numbers.push(to_micros(from));
            conditions.push(format!("updated_at >= ${}", first_number + numbers.len() - 1));
        }
        if let Some(to) = filter.to {
            numbers.push(to_micros(to));
            conditions.push(format!("updated_at < ${}", first_number + numbers.len() - 1));
        }
        let tail = match limit {
            Some(limit) => {
                numbers.push(limit);
                format!(" ORDER BY id LIMIT ${}", first_number + numbers.len() - 1)
            }
            None => String::new(),
        };
        let sql = format!("SELECT {columns} FROM notifications WHERE {}{tail}", conditions.join(" AND "));
        let mut query = sqlx::query(&sql);
        for text in &texts {
            query = query.bind(text);
        }
        for number in &numbers {
            query = query.bind(*number);
        }
        Ok(query.fetch_all(&self.pool).await?)
    }

    /// Status history of each notification, oldest first.
    pub async fn delivery_events(&self, ids: &[String]) -> StoreResult<HashMap<String, Vec<(String, DateTime<Utc>)>>> {
        self.events_of(ids, &[]).await
    }

    /// Status history of each of `deliveries`, oldest first, looked up in their months only:
    /// on PostgreSQL the history is kept in monthly partitions, and a number's deliveries
    /// over all months otherwise had every partition searched for every id.
    pub async fn histories(
        &self,
        deliveries: &[DeliveryExport],
    ) -> StoreResult<HashMap<String, Vec<(String, DateTime<Utc>)>>> {
        let ids: Vec<String> = deliveries.iter().map(|d| d.id.clone()).collect();
        let mut months: Vec<String> = deliveries.iter().map(|d| d.month.clone()).collect();
        months.sort_unstable();
        months.dedup();
        self.events_of(&ids, &months).await
    }

    /// The history of `ids`, in `months` when given.
    async fn events_of(
        &self,
        ids: &[String],
        months: &[String],
    ) -> StoreResult<HashMap<String, Vec<(String, DateTime<Utc>)>>> {
        let mut history: HashMap<String, Vec<(String, DateTime<Utc>)>> = HashMap::new();
        for chunk in ids.chunks(500) {
            // Changes can share a timestamp; insertion order breaks the tie.
            let insertion = match self.backend {
                Backend::Sqlite => "rowid",
                Backend::Postgres => "seq",
            };
            let in_months = if months.is_empty() {
                String::new()
            } else {
                format!(" AND month IN ({})", placeholders(chunk.len() + 1, months.len()))
            };
            let sql = format!(
                "SELECT notification_id, status, at FROM notification_events WHERE notification_id IN ({}){in_months}
                 ORDER BY at, {insertion}",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk.iter().chain(months) {
                query = query.bind(id);
            }
            for row in query.fetch_all(&self.pool).await? {
                history
                    .entry(row.try_get("notification_id")?)
                    .or_default()
                    .push((row.try_get("status")?, from_micros(row.try_get("at")?)));
            }
        }
        Ok(history)
    }

    /// Billing runs per month, newest month first.
    pub async fn runs(&self) -> StoreResult<Vec<RunSummary>> {
        let rows = sqlx::query(
            "SELECT month, COUNT(*) AS runs, MIN(started_at) AS started_at, MAX(finished_at) AS finished_at
             FROM billing_runs GROUP BY month ORDER BY month DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RunSummary {
                    month: r.try_get("month")?,
                    runs: r.try_get("runs")?,
                    started_at: from_micros(r.try_get("started_at")?),
                    finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(from_micros),
                })
            })
            .collect()
    }

    /// The month's bills: how many, their total, how many are spikes, and the records they
    /// were built from.
    pub async fn bill_totals(&self, month: BillingMonth) -> StoreResult<BillTotals> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS bills, CAST(COALESCE(SUM(total_fen), 0) AS BIGINT) AS total,
                    CAST(COALESCE(SUM(spike), 0) AS BIGINT) AS spikes, CAST(COALESCE(SUM(record_count), 0) AS BIGINT) AS records
             FROM bills WHERE month = $1",
        )
        .bind(month.to_string())
        .fetch_one(&self.pool)
        .await?;
        Ok(BillTotals {
            bills: row.try_get("bills")?,
            total_fen: row.try_get("total")?,
            spikes: row.try_get("spikes")?,
            records: row.try_get("records")?,
        })
    }

    pub async fn month_status(&self, month: BillingMonth) -> StoreResult<MonthStatus> {
        let month_text = month.to_string();
        let bills = self.bill_totals(month).await?;
        let in_periods: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM usage_records u JOIN bills b ON b.subscriber_id = u.subscriber_id AND b.month = $1
             WHERE u.occurred_at >= b.period_start AND u.occurred_at < b.period_end",
        )
        .bind(&month_text)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let counts = |sql: &'static str| {
            let month = month_text.clone();
            async move {
                sqlx::query(sql)
                    .bind(month)
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(|r| Ok((r.try_get("k")?, r.try_get("n")?)))
                    .collect::<StoreResult<Vec<(String, i64)>>>()
            }
        };
        Ok(MonthStatus {
            bills: bills.bills,
            total_fen: bills.total_fen,
            spikes: bills.spikes,
            late_records: in_periods - bills.records,
            deliveries: self.month_status_counts(month).await?,
            flags: counts(
                "SELECT reason AS k, COUNT(*) AS n FROM charge_flags WHERE month = $1 GROUP BY reason ORDER BY reason",
            )
            .await?,
        })
    }

    /// Notifications per delivery status, all months together (for metrics).
    pub async fn status_counts(&self) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM notifications GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok((r.try_get("status")?, r.try_get("n")?))).collect()
    }

    /// Notifications of `month` per delivery status, in status order (for `status` and metrics).
    pub async fn month_status_counts(&self, month: BillingMonth) -> StoreResult<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM notifications WHERE month = $1 GROUP BY status ORDER BY status",
        )
        .bind(month.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("status")?, r.try_get("n")?))).collect()
    }

    /// Bills of `month` after subscriber `after`, with their flags and bill SMS state.
    pub async fn bills_page(&self, month: BillingMonth, after: &str, limit: i64) -> StoreResult<Vec<BillExport>> {
        let month = month.to_string();
        let rows = sqlx::query(
            "SELECT b.*, n.status, n.segments FROM bills b
             LEFT JOIN notifications n ON n.subscriber_id = b.subscriber_id AND n.month = b.month AND n.kind = 'bill'
             WHERE b.month = $1 AND b.subscriber_id > $2 ORDER BY b.subscriber_id LIMIT $3",
        )
        .bind(&month)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(Vec::new());
        };
        let first: String = first.try_get("subscriber_id")?;
        let last: String = last.try_get("subscriber_id")?;
        let mut flags: HashMap<String, Vec<FlagExport>> = HashMap::new();
        for flag in self.flags_between(&month, &first, &last).await? {
            flags.entry(flag.subscriber_id.clone()).or_default().push(flag);
        }
        rows.iter()
            .map(|r| {
                let mut bill = bill_from_row(r)?;
                bill.flags = flags.remove(&bill.subscriber_id).unwrap_or_default();
                Ok(bill)
            })
            .collect()
    }

    /// The subscriber's most recent bill.
    pub async fn latest_bill(&self, subscriber_id: &str) -> StoreResult<Option<BillExport>> {
        let row = sqlx::query("SELECT b.*, NULL AS status, NULL AS segments FROM bills b WHERE b.subscriber_id = $1 ORDER BY b.month DESC LIMIT 1")
            .bind(subscriber_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(bill_from_row).transpose()
    }

    /// One subscriber's bill for `month`, with its flags.
    pub async fn bill(&self, subscriber_id: &str, month: BillingMonth) -> StoreResult<Option<BillExport>> {
        let month = month.to_string();
        let row = sqlx::query(
            "SELECT b.*, n.status, n.segments FROM bills b
             LEFT JOIN notifications n ON n.subscriber_id = b.subscriber_id AND n.month = b.month AND n.kind = 'bill'
             WHERE b.month = $1 AND b.subscriber_id = $2",
        )
        .bind(&month)
        .bind(subscriber_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut bill = bill_from_row(&row)?;
        bill.flags = self.flags_between(&month, subscriber_id, subscriber_id).await?;
        Ok(Some(bill))
    }

    async fn flags_between(&self, month: &str, first: &str, last: &str) -> StoreResult<Vec<FlagExport>> {
        let rows = sqlx::query(
            "SELECT subscriber_id, record_id, reason, service_code, amount_fen FROM charge_flags
             WHERE month = $1 AND subscriber_id >= $2 AND subscriber_id <= $3 ORDER BY subscriber_id, record_id",
        )
        .bind(month)
        .bind(first)
        .bind(last)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(flag_from_row).collect()
    }

    /// Flags of `month` after the (subscriber, record) key `after`.
    pub async fn flags_page(
        &self,
        month: BillingMonth,
        after: (&str, &str),
        limit: i64,
    ) -> StoreResult<Vec<FlagExport>> {
        let rows = sqlx::query(
            "SELECT subscriber_id, record_id, reason, service_code, amount_fen FROM charge_flags
             WHERE month = $1 AND (subscriber_id > $2 OR (subscriber_id = $2 AND record_id > $3))
             ORDER BY subscriber_id, record_id LIMIT $4",
        )
        .bind(month.to_string())
        .bind(after.0)
        .bind(after.1)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(flag_from_row).collect()
    }

    /// Notifications of `month` after notification id `after`, in id (creation) order.
    pub async fn deliveries_page(
        &self,
        month: BillingMonth,
        after: &str,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryExport>> {
        let rows = sqlx::query(
            "SELECT id, subscriber_id, msisdn, month, kind, status, reason, attempts, segments, encoding, gateway_message_id, sender, text, updated_at
             FROM notifications WHERE month = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(month.to_string())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// Reports per reported number within `month`, self-reports left out, sorted by number.
    /// The numbers reported in `month` (self-reports left out), each with its counts over
    /// `window` (which holds the month), in byte order of the number.
    pub async fn spam_counts(&self, month: Period, window: Period) -> StoreResult<Vec<ReportCount>> {
        let rows = sqlx::query(
            "SELECT reported_number, COUNT(*) AS reports, COUNT(DISTINCT reporter) AS reporters,
                    SUM(CASE WHEN reported_at >= $3 THEN 1 ELSE 0 END) AS in_month,
                    SUM(CASE WHEN kind = 'call' THEN 1 ELSE 0 END) AS calls,
                    SUM(CASE WHEN kind = 'sms' THEN 1 ELSE 0 END) AS sms
             FROM spam_reports
             WHERE reported_at >= $1 AND reported_at < $2 AND reporter <> reported_number
             GROUP BY reported_number
             HAVING SUM(CASE WHEN reported_at >= $3 THEN 1 ELSE 0 END) > 0",
        )
        .bind(super::to_micros(window.start))
        .bind(super::to_micros(window.end))
        .bind(super::to_micros(month.start))
        .fetch_all(&self.pool)
        .await?;
        let mut counts = rows
            .iter()
            .map(|r| {
                Ok(ReportCount {
                    number: r.try_get("reported_number")?,
                    reports: r.try_get("reports")?,
                    distinct_reporters: r.try_get("reporters")?,
                    reports_in_month: r.try_get("in_month")?,
                    calls: r.try_get("calls")?,
                    sms: r.try_get("sms")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        // Byte order, whatever the database's collation.
        counts.sort_unstable_by(|a, b| a.number.as_bytes().cmp(b.number.as_bytes()));
        Ok(counts)
    }
}

pub(crate) fn delivery_from_row(r: &sqlx::any::AnyRow) -> StoreResult<DeliveryExport> {
    Ok(DeliveryExport {
        id: r.try_get("id")?,
        subscriber_id: r.try_get("subscriber_id")?,
        msisdn: r.try_get("msisdn")?,
        month: r.try_get("month")?,
        kind: r.try_get("kind")?,
        status: r.try_get("status")?,
        reason: r.try_get("reason")?,
        attempts: r.try_get("attempts")?,
        segments: r.try_get("segments")?,
        encoding: r.try_get("encoding")?,
        gateway_message_id: r.try_get("gateway_message_id")?,
        sender: r.try_get("sender")?,
        text: r.try_get("text")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn bill_from_row(r: &sqlx::any::AnyRow) -> StoreResult<BillExport> {
    let mut categories = [Fen::ZERO; 8];
    for category in Category::ALL {
        categories[category.index()] = Fen::new(r.try_get(format!("{}_fen", category.as_str()).as_str())?);
    }
    let categories = CategoryTotals::from_array(categories);
    Ok(BillExport {
        subscriber_id: r.try_get("subscriber_id")?,
        month: r.try_get("month")?,
        msisdn: r.try_get("msisdn")?,
        period: Period { start: from_micros(r.try_get("period_start")?), end: from_micros(r.try_get("period_end")?) },
        total_fen: r.try_get("total_fen")?,
        categories,
        voice_minutes: r.try_get("voice_minutes")?,
        data_kb: r.try_get("data_kb")?,
        sms_count: r.try_get("sms_count")?,
        spike: r.try_get::<i64, _>("spike")? != 0,
        status: r.try_get("status")?,
        segments: r.try_get("segments")?,
        flags: Vec::new(),
    })
}

fn flag_from_row(r: &sqlx::any::AnyRow) -> StoreResult<FlagExport> {
    Ok(FlagExport {
        subscriber_id: r.try_get("subscriber_id")?,
        record_id: r.try_get("record_id")?,
        reason: r.try_get("reason")?,
        service_code: r.try_get("service_code")?,
        amount_fen: r.try_get("amount_fen")?,
    })
}
