//! The purge (docs/contract.md §11): what is older than `[retention]` keeps it, months still in
//! use excepted, goes, whole months at a time. Bills, flags, disputes and usage totals stay.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::domain::period::BillingMonth;
use crate::domain::retention::Retention;
use crate::schedule::{new_holder, take_lease};
use crate::store::retention::PurgeMode;
use crate::store::Store;

/// The lease that keeps two purges from working at once.
const LEASE: &str = "retention purge";

/// What a purge did.
#[derive(Debug, Clone)]
pub struct PurgeReport {
    pub as_of: DateTime<Utc>,
    pub mode: PurgeMode,
    /// Months whose notifications, status history, replies and usage alerts went.
    pub deliveries: Vec<BillingMonth>,
    /// Calendar months whose usage records went.
    pub usage: Vec<BillingMonth>,
    /// Audit entries and consent changes from before this went.
    pub audit_before: DateTime<Utc>,
    /// Rows per table.
    pub removed: Vec<(&'static str, u64)>,
}

/// Purges as of `as_of`; `lease_now` is the process's own time, by which the lease is judged.
pub async fn purge(
    store: &Store,
    retention: &Retention,
    tz: Tz,
    as_of: DateTime<Utc>,
    lease_now: DateTime<Utc>,
    mode: PurgeMode,
) -> anyhow::Result<PurgeReport> {
    let holder = new_holder();
    anyhow::ensure!(
        take_lease(store, LEASE, &holder, lease_now).await?,
        "another purge is running; nothing was removed"
    );
    let purged = async {
        let (deliveries, usage) = store.record_months().await?;
        let in_use = store.months_in_use().await?;
        let plan = retention.plan(as_of, tz, &deliveries, &usage, &in_use);
        let removed = store.purge(&plan, mode).await?;
        anyhow::Ok(PurgeReport {
            as_of,
            mode,
            deliveries: plan.deliveries,
            usage: plan.usage,
            audit_before: plan.audit_before,
            removed,
        })
    }
    .await;
    store.release_lock(LEASE, &holder).await?;
    purged
}

impl PurgeReport {
    /// The report as the command prints it: a line saying what was judged, then a line per
    /// table.
    pub fn lines(&self) -> Vec<String> {
        let months = |months: &[BillingMonth]| {
            if months.is_empty() {
                "-".to_string()
            } else {
                months.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
            }
        };
        let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (mode, verb) = match self.mode {
            PurgeMode::Remove => ("remove", "removed"),
            PurgeMode::DryRun => ("dry-run", "would_remove"),
        };
        let mut lines = vec![format!(
            "purge as_of={} mode={mode} deliveries={} usage={} audit_before={}",
            at(self.as_of),
            months(&self.deliveries),
            months(&self.usage),
            at(self.audit_before)
        )];
        lines.extend(self.removed.iter().map(|(table, rows)| format!("table={table} {verb}={rows}")));
        lines
    }
}
