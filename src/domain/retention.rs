//! How long records are kept (docs/contract.md §11). Records go a whole month at a time, once
//! the end of their month (operator timezone) lies further back than the time they are kept; a
//! month still in use stays whatever its age, so nothing an open case needs is lost.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use super::period::{calendar_month, BillingMonth};

/// The `[retention]` settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Notifications, their status history, replies and usage alerts.
    pub deliveries: Duration,
    /// Usage records.
    pub usage: Duration,
    /// The API audit log and consent changes, each by its own time.
    pub audit: Duration,
}

/// Months that must stay, whatever their age.
#[derive(Debug, Clone, Default)]
pub struct InUse {
    /// Months with a notification not yet handed to the gateway (pending, queued, sending).
    pub in_flight: BTreeSet<BillingMonth>,
    /// Months whose bills have an open dispute.
    pub disputed: BTreeSet<BillingMonth>,
}

impl InUse {
    /// Whether the delivery records of `month` (its notifications, replies received in it, its
    /// usage alerts) are still needed.
    pub fn holds_deliveries(&self, month: BillingMonth) -> bool {
        self.in_flight.contains(&month) || self.disputed.contains(&month)
    }

    /// Whether the usage records of calendar month `month` are still needed. A bill's period
    /// runs from its billing day in its month to that day in the next, so a dispute about
    /// month M's bill needs the usage of M and of M + 1.
    pub fn holds_usage(&self, month: BillingMonth) -> bool {
        self.holds_deliveries(month) || self.disputed.contains(&month.previous())
    }
}

/// What a purge at one instant removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgePlan {
    /// Months whose notifications, status history, replies and usage alerts go.
    pub deliveries: Vec<BillingMonth>,
    /// Calendar months whose usage records go.
    pub usage: Vec<BillingMonth>,
    /// Audit entries and consent changes from before this instant go.
    pub audit_before: DateTime<Utc>,
}

impl Retention {
    /// Whether the records of `month`, kept `keep`, are past it at `as_of`.
    pub fn expired(month: BillingMonth, keep: Duration, as_of: DateTime<Utc>, tz: Tz) -> bool {
        calendar_month(month, tz).end + keep <= as_of
    }

    /// What to remove at `as_of`, of the months that hold delivery records and usage records.
    pub fn plan(
        &self,
        as_of: DateTime<Utc>,
        tz: Tz,
        delivery_months: &BTreeSet<BillingMonth>,
        usage_months: &BTreeSet<BillingMonth>,
        in_use: &InUse,
    ) -> PurgePlan {
        let deliveries = delivery_months
            .iter()
            .copied()
            .filter(|m| Self::expired(*m, self.deliveries, as_of, tz) && !in_use.holds_deliveries(*m))
            .collect();
        let usage = usage_months
            .iter()
            .copied()
            .filter(|m| Self::expired(*m, self.usage, as_of, tz) && !in_use.holds_usage(*m))
            .collect();
        PurgePlan { deliveries, usage, audit_before: as_of - self.audit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(s: &str) -> BillingMonth {
        s.parse().unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;

    fn retention() -> Retention {
        Retention { deliveries: Duration::days(183), usage: Duration::days(183), audit: Duration::days(1096) }
    }

    #[test]
    fn a_month_expires_when_its_end_in_the_operator_timezone_is_older_than_the_time_kept() {
        // August ends at 2026-08-31T16:00Z in Shanghai; 183 days later is 2027-03-02T16:00Z.
        let keep = Duration::days(183);
        assert!(!Retention::expired(month("2026-08"), keep, at("2027-03-02T15:59:59Z"), SHANGHAI));
        assert!(Retention::expired(month("2026-08"), keep, at("2027-03-02T16:00:00Z"), SHANGHAI));
    }

    #[test]
    fn months_in_use_stay_and_a_dispute_keeps_the_usage_of_its_period() {
        let months: BTreeSet<_> = ["2026-06", "2026-07", "2026-08", "2026-09", "2026-10"].map(month).into();
        let in_use = InUse { in_flight: [month("2026-06")].into(), disputed: [month("2026-08")].into() };
        let plan = retention().plan(at("2027-06-01T00:00:00Z"), SHANGHAI, &months, &months, &in_use);
        assert_eq!(plan.deliveries, ["2026-07", "2026-09", "2026-10"].map(month));
        assert_eq!(plan.usage, ["2026-07", "2026-10"].map(month));
        assert_eq!(plan.audit_before, at("2027-06-01T00:00:00Z") - Duration::days(1096));
    }

    #[test]
    fn nothing_young_enough_is_planned() {
        let months: BTreeSet<_> = [month("2026-11")].into();
        let plan = retention().plan(at("2027-01-01T00:00:00Z"), SHANGHAI, &months, &months, &InUse::default());
        assert!(plan.deliveries.is_empty() && plan.usage.is_empty());
    }
}
