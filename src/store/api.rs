//! Queries and writes behind the HTTP API: filtered deliveries with their history, runs, the
//! audit log, and subscribers' replies.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::reports::delivery_from_row;
use super::{from_micros, placeholders, to_micros, Backend, DeliveryExport, Store, StoreResult};
use crate::domain::category::Language;
use crate::domain::delivery::DeliveryStatus;
use crate::domain::period::BillingMonth;

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

#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub id: String,
    pub token_name: String,
    pub role: String,
    pub at: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub status: i64,
    pub rows_returned: i64,
}

impl Store {
    /// Notifications matching `filter` after id `after`, in id order, at most `limit`.
    pub async fn deliveries(
        &self,
        filter: &DeliveryFilter,
        after: &str,
        limit: i64,
    ) -> StoreResult<Vec<DeliveryExport>> {
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
        numbers.push(limit);
        let sql = format!(
            "SELECT id, subscriber_id, msisdn, month, kind, status, reason, attempts, segments, encoding, gateway_message_id, text, updated_at
             FROM notifications WHERE {} ORDER BY id LIMIT ${}",
            conditions.join(" AND "),
            first_number + numbers.len() - 1
        );
        let mut query = sqlx::query(&sql);
        for text in &texts {
            query = query.bind(text);
        }
        for number in &numbers {
            query = query.bind(*number);
        }
        query.fetch_all(&self.pool).await?.iter().map(delivery_from_row).collect()
    }

    /// Status history of each notification, oldest first.
    pub async fn delivery_events(&self, ids: &[String]) -> StoreResult<HashMap<String, Vec<(String, DateTime<Utc>)>>> {
        let mut history: HashMap<String, Vec<(String, DateTime<Utc>)>> = HashMap::new();
        for chunk in ids.chunks(500) {
            // Changes can share a timestamp; insertion order breaks the tie.
            let insertion = match self.backend {
                Backend::Sqlite => "rowid",
                Backend::Postgres => "seq",
            };
            let sql = format!(
                "SELECT notification_id, status, at FROM notification_events WHERE notification_id IN ({}) ORDER BY at, {insertion}",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
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

    pub async fn append_audit(&self, entry: &AuditEntry) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO audit_log (id, token_name, role, at, method, path, status, rows_returned) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&entry.id)
        .bind(&entry.token_name)
        .bind(&entry.role)
        .bind(to_micros(entry.at))
        .bind(&entry.method)
        .bind(&entry.path)
        .bind(entry.status)
        .bind(entry.rows_returned)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Audit entries after id `after`, oldest first.
    pub async fn audit_page(&self, after: &str, limit: i64) -> StoreResult<Vec<AuditEntry>> {
        let rows = sqlx::query(
            "SELECT id, token_name, role, at, method, path, status, rows_returned FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    token_name: r.try_get("token_name")?,
                    role: r.try_get("role")?,
                    at: from_micros(r.try_get("at")?),
                    method: r.try_get("method")?,
                    path: r.try_get("path")?,
                    status: r.try_get("status")?,
                    rows_returned: r.try_get("rows_returned")?,
                })
            })
            .collect()
    }

    /// The subscriber using `msisdn` (normalised), with the language to answer in.
    pub async fn subscriber_by_msisdn(&self, msisdn: &str) -> StoreResult<Option<(String, Language)>> {
        let row = sqlx::query("SELECT subscriber_id, language FROM subscribers WHERE msisdn = $1 AND status <> 'closed' ORDER BY subscriber_id LIMIT 1")
            .bind(msisdn)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            let language: String = r.try_get("language")?;
            Ok((r.try_get("subscriber_id")?, language.parse().unwrap_or(Language::Zh)))
        })
        .transpose()
    }

    /// Opts the subscriber out of the bill SMS; false when they were opted out already.
    pub async fn opt_out(&self, subscriber_id: &str) -> StoreResult<bool> {
        let result = sqlx::query("UPDATE subscribers SET bill_sms = 0 WHERE subscriber_id = $1 AND bill_sms <> 0")
            .bind(subscriber_id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn record_mo(
        &self,
        id: &str,
        from: &str,
        to: &str,
        text: &str,
        received_at: DateTime<Utc>,
        subscriber_id: &str,
        action: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO mo_messages (id, from_msisdn, to_port, text, received_at, subscriber_id, action) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(from)
        .bind(to)
        .bind(text)
        .bind(to_micros(received_at))
        .bind(subscriber_id)
        .bind(action)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
