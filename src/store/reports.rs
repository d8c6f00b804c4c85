//! The figures of the regulator's monthly report (docs/contract.md §11), counted in the
//! database per `region` of the subscribers they belong to.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_micros, to_micros, Store, StoreResult};
use crate::domain::period::{BillingMonth, Period};

/// A count per region: (region, key, count, fen) where a figure has a key (a status, a
/// reason) or an amount; `key` is empty and `fen` 0 where it has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionCount {
    pub region: String,
    pub key: String,
    pub count: i64,
    pub fen: i64,
}

/// A dispute about a bill of the month, as the report counts it.
#[derive(Debug, Clone)]
pub struct ReportDispute {
    pub region: String,
    pub status: String,
    pub opened_at: DateTime<Utc>,
    pub refunded_fen: i64,
}

/// One of the service codes with the largest flagged amounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlaggedService {
    pub service_code: String,
    pub flagged: i64,
    pub flagged_fen: i64,
    pub subscribers: i64,
}

impl Store {
    async fn region_counts(&self, sql: &str, month: &str) -> StoreResult<Vec<RegionCount>> {
        let rows = sqlx::query(sql).bind(month).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(RegionCount {
                    region: r.try_get("region")?,
                    key: r.try_get("key")?,
                    count: r.try_get("n")?,
                    fen: r.try_get("fen")?,
                })
            })
            .collect()
    }

    /// Bills of `month` per region (`key` empty) and, among them, those with a spike (`key`
    /// `spike`).
    pub async fn report_bills(&self, month: BillingMonth) -> StoreResult<Vec<RegionCount>> {
        self.region_counts(
            "SELECT s.region, CASE WHEN b.spike <> 0 THEN 'spike' ELSE '' END AS key, COUNT(*) AS n,
                    CAST(0 AS BIGINT) AS fen
             FROM bills b JOIN subscribers s ON s.subscriber_id = b.subscriber_id
             WHERE b.month = $1 GROUP BY s.region, CASE WHEN b.spike <> 0 THEN 'spike' ELSE '' END",
            &month.to_string(),
        )
        .await
    }

    /// The bill SMS of `month` per region and current status.
    pub async fn report_bill_sms(&self, month: BillingMonth) -> StoreResult<Vec<RegionCount>> {
        self.region_counts(
            "SELECT s.region, n.status AS key, COUNT(*) AS n, CAST(0 AS BIGINT) AS fen
             FROM notifications n JOIN subscribers s ON s.subscriber_id = n.subscriber_id
             WHERE n.month = $1 AND n.kind = 'bill' GROUP BY s.region, n.status",
            &month.to_string(),
        )
        .await
    }

    /// The flagged charges of `month`'s bills per region and reason, with their amounts.
    pub async fn report_flags(&self, month: BillingMonth) -> StoreResult<Vec<RegionCount>> {
        self.region_counts(
            "SELECT s.region, f.reason AS key, COUNT(*) AS n, CAST(SUM(f.amount_fen) AS BIGINT) AS fen
             FROM charge_flags f JOIN subscribers s ON s.subscriber_id = f.subscriber_id
             WHERE f.month = $1 GROUP BY s.region, f.reason",
            &month.to_string(),
        )
        .await
    }

    /// Usage alerts of periods labelled `month` that were sent (the gateway took them), per
    /// region.
    pub async fn report_alerts_sent(&self, month: BillingMonth) -> StoreResult<Vec<RegionCount>> {
        self.region_counts(
            "SELECT s.region, '' AS key, COUNT(*) AS n, CAST(0 AS BIGINT) AS fen
             FROM usage_alerts a JOIN notifications n ON n.id = a.notification_id
             JOIN subscribers s ON s.subscriber_id = a.subscriber_id
             WHERE a.month = $1 AND n.status IN ('accepted', 'delivered', 'undeliverable', 'unknown')
             GROUP BY s.region",
            &month.to_string(),
        )
        .await
    }

    /// Changes of the bill SMS choice made in `period` per region: `key` `in` (opt-ins) or
    /// `out` (opt-outs).
    pub async fn report_consent(&self, period: Period) -> StoreResult<Vec<RegionCount>> {
        let rows = sqlx::query(
            "SELECT s.region, CASE WHEN c.bill_sms <> 0 THEN 'in' ELSE 'out' END AS key, COUNT(*) AS n
             FROM consent_changes c JOIN subscribers s ON s.subscriber_id = c.subscriber_id
             WHERE c.what = 'bill_sms' AND c.at >= $1 AND c.at < $2
             GROUP BY s.region, CASE WHEN c.bill_sms <> 0 THEN 'in' ELSE 'out' END",
        )
        .bind(to_micros(period.start))
        .bind(to_micros(period.end))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RegionCount { region: r.try_get("region")?, key: r.try_get("key")?, count: r.try_get("n")?, fen: 0 })
            })
            .collect()
    }

    /// The disputes about `month`'s bills, with their subscribers' regions.
    pub async fn report_disputes(&self, month: BillingMonth) -> StoreResult<Vec<ReportDispute>> {
        let rows = sqlx::query(
            "SELECT s.region, d.status, d.opened_at, d.refunded_fen
             FROM disputes d JOIN subscribers s ON s.subscriber_id = d.subscriber_id WHERE d.month = $1",
        )
        .bind(month.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ReportDispute {
                    region: r.try_get("region")?,
                    status: r.try_get("status")?,
                    opened_at: from_micros(r.try_get("opened_at")?),
                    refunded_fen: r.try_get("refunded_fen")?,
                })
            })
            .collect()
    }

    /// The `limit` service codes with the largest flagged amounts of `month`'s bills, ties
    /// broken by service code.
    pub async fn report_flagged_services(&self, month: BillingMonth, limit: i64) -> StoreResult<Vec<FlaggedService>> {
        let rows = sqlx::query(
            "SELECT service_code, COUNT(*) AS flagged, CAST(SUM(amount_fen) AS BIGINT) AS flagged_fen,
                    COUNT(DISTINCT subscriber_id) AS subscribers
             FROM charge_flags WHERE month = $1
             GROUP BY service_code ORDER BY SUM(amount_fen) DESC, service_code LIMIT $2",
        )
        .bind(month.to_string())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FlaggedService {
                    service_code: r.try_get("service_code")?,
                    flagged: r.try_get("flagged")?,
                    flagged_fen: r.try_get("flagged_fen")?,
                    subscribers: r.try_get("subscribers")?,
                })
            })
            .collect()
    }
}
