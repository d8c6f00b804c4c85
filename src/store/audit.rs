//! The audit log: who asked the API for what, when, and what they were answered.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_micros, to_micros, Store, StoreResult};

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
    /// Appends one entry; an answer whose entry cannot be written is not given out.
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
}
