//! What retention removes, table by table (docs/contract.md §11). On PostgreSQL a month of a
//! partitioned table goes by dropping its partition; everything else, and everything on
//! SQLite, is deleted in batches of `BATCH` rows, each its own transaction, so that the one
//! SQLite writer is never held for long.

use std::collections::BTreeSet;

use sqlx::Row;

use super::partitions::{partition_exists, Partitioned};
use super::{to_micros, Backend, Store, StoreResult};
use crate::domain::period::BillingMonth;
use crate::domain::retention::{InUse, PurgePlan};

/// Rows deleted per transaction where rows are deleted one by one.
const BATCH: usize = 10_000;

/// Whether a purge removes what it finds or only counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeMode {
    Remove,
    DryRun,
}

/// The tables retention removes from, in the order it reports them.
pub const PURGED_TABLES: [&str; 7] = [
    "notifications",
    "notification_events",
    "mo_messages",
    "usage_alerts",
    "usage_records",
    "audit_log",
    "consent_changes",
];

/// One set of rows a purge removes.
struct Target {
    table: &'static str,
    /// On PostgreSQL, the partition holding exactly these rows.
    partition: Option<(Partitioned, BillingMonth)>,
    /// The rows, as a condition on the table (months and instants, never text from outside).
    condition: String,
}

impl Store {
    /// The months that must stay: those with notifications not yet through the push, and
    /// those whose bills have an open dispute.
    pub async fn months_in_use(&self) -> StoreResult<InUse> {
        let months = |sql: &'static str| async move {
            let months: Vec<String> = sqlx::query_scalar(sql).fetch_all(&self.pool).await?;
            StoreResult::Ok(months.iter().filter_map(|m| m.parse().ok()).collect::<BTreeSet<BillingMonth>>())
        };
        Ok(InUse {
            in_flight: months("SELECT DISTINCT month FROM notifications WHERE unfinished IS NOT NULL").await?,
            disputed: months("SELECT DISTINCT month FROM disputes WHERE status = 'open'").await?,
        })
    }

    /// The months holding delivery records (notifications, their history, replies, usage
    /// alerts) and the calendar months holding usage records.
    pub async fn record_months(&self) -> StoreResult<(BTreeSet<BillingMonth>, BTreeSet<BillingMonth>)> {
        let mut deliveries = BTreeSet::new();
        for table in [Partitioned::Notifications, Partitioned::Events, Partitioned::Replies] {
            deliveries.extend(self.partition_months(table).await?);
        }
        let alerts: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT month FROM usage_alerts").fetch_all(&self.pool).await?;
        deliveries.extend(alerts.iter().filter_map(|m| m.parse::<BillingMonth>().ok()));
        Ok((deliveries, self.partition_months(Partitioned::Usage).await?))
    }

    /// Removes what `plan` says (or, in a dry run, counts it); the rows per table of
    /// `PURGED_TABLES`, in that order.
    pub async fn purge(&self, plan: &PurgePlan, mode: PurgeMode) -> StoreResult<Vec<(&'static str, u64)>> {
        let mut removed: Vec<(&'static str, u64)> = PURGED_TABLES.iter().map(|t| (*t, 0)).collect();
        for target in self.targets(plan) {
            let rows = match (self.backend, target.partition) {
                (Backend::Postgres, Some((table, month))) => self.drop_partition(table, month, mode).await?,
                _ => self.delete_rows(&target, mode).await?,
            };
            if let Some(slot) = removed.iter_mut().find(|(table, _)| *table == target.table) {
                slot.1 += rows;
            }
        }
        if mode == PurgeMode::Remove && removed.iter().any(|(table, rows)| *table == "usage_records" && *rows > 0) {
            // The usage totals stay, as the bills do, and now sum records no longer kept: the
            // check that they equal what the records add up to no longer applies.
            sqlx::query("DELETE FROM store_facts WHERE name = 'usage_totals_complete'").execute(&self.pool).await?;
        }
        Ok(removed)
    }

    fn targets(&self, plan: &PurgePlan) -> Vec<Target> {
        let mut targets = Vec::new();
        let by_month = |table: Partitioned, month: BillingMonth| Target {
            table: table.table(),
            partition: Some((table, month)),
            condition: table.rows_of(month, self.tz),
        };
        for month in &plan.deliveries {
            targets.push(by_month(Partitioned::Notifications, *month));
            targets.push(by_month(Partitioned::Events, *month));
            targets.push(by_month(Partitioned::Replies, *month));
            targets.push(Target { table: "usage_alerts", partition: None, condition: format!("month = '{month}'") });
        }
        for month in &plan.usage {
            targets.push(by_month(Partitioned::Usage, *month));
        }
        let before = to_micros(plan.audit_before);
        for table in ["audit_log", "consent_changes"] {
            targets.push(Target { table, partition: None, condition: format!("at < {before}") });
        }
        targets
    }

    /// Drops a month's partition; its rows, counted first. A partition never made held none.
    async fn drop_partition(&self, table: Partitioned, month: BillingMonth, mode: PurgeMode) -> StoreResult<u64> {
        let name = table.partition(month);
        let mut tx = self.pool.begin().await?;
        if !partition_exists(&mut tx, &name).await? {
            return Ok(0);
        }
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {name}")).fetch_one(&mut *tx).await?;
        if mode == PurgeMode::Remove {
            // Dropping a partition waits for every reader of the table; a purge that waited
            // long would hold up every query behind it, so it gives up and is tried again.
            sqlx::query("SET LOCAL lock_timeout = '10s'").execute(&mut *tx).await?;
            sqlx::query(&format!("DROP TABLE {name}")).execute(&mut *tx).await?;
            tx.commit().await?;
            self.forget_partition(table, month);
        }
        Ok(rows as u64)
    }

    /// Deletes the rows of `target` in batches (counts them in a dry run).
    async fn delete_rows(&self, target: &Target, mode: PurgeMode) -> StoreResult<u64> {
        let Target { table, condition, .. } = target;
        if mode == PurgeMode::DryRun {
            let rows: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table} WHERE {condition}"))
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
            return Ok(rows as u64);
        }
        if self.backend == Backend::Postgres {
            let done = sqlx::query(&format!("DELETE FROM {table} WHERE {condition}")).execute(&self.pool).await?;
            return Ok(done.rows_affected());
        }
        // One pass finds the rows, then each batch deletes by row id: a batch that looked for
        // its rows again would read the table once per batch.
        let rows: Vec<i64> =
            sqlx::query_scalar(&format!("SELECT rowid FROM {table} WHERE {condition}")).fetch_all(&self.pool).await?;
        let mut removed = 0;
        for batch in rows.chunks(BATCH) {
            let ids = serde_json::to_string(batch).expect("row ids serialise");
            let done = sqlx::query(&format!("DELETE FROM {table} WHERE rowid IN (SELECT value FROM json_each($1))"))
                .bind(ids)
                .execute(&self.pool)
                .await?;
            removed += done.rows_affected();
        }
        Ok(removed)
    }
}
