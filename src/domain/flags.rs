//! Unexplained-deduction flags (不明扣费): per VAS charge, the first reason that applies of
//! `no_order`, `after_cancel`, `unconfirmed`, `duplicate`; per bill, `spike`.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::bill::UsageRecord;
use super::category::Category;
use super::money::Fen;
use super::period::local_date;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FlagReason {
    NoOrder,
    AfterCancel,
    Unconfirmed,
    Duplicate,
}

impl FlagReason {
    pub const ALL: [FlagReason; 4] =
        [FlagReason::NoOrder, FlagReason::AfterCancel, FlagReason::Unconfirmed, FlagReason::Duplicate];

    /// Why the charge is suspect, as a subscriber reads it.
    pub const fn label(self, language: crate::domain::category::Language) -> &'static str {
        use crate::domain::category::Language::{En, Zh};
        match (self, language) {
            (FlagReason::NoOrder, Zh) => "未订购",
            (FlagReason::NoOrder, En) => "never ordered",
            (FlagReason::AfterCancel, Zh) => "退订后仍扣费",
            (FlagReason::AfterCancel, En) => "charged after cancelling",
            (FlagReason::Unconfirmed, Zh) => "未经二次确认",
            (FlagReason::Unconfirmed, En) => "order never confirmed",
            (FlagReason::Duplicate, Zh) => "重复扣费",
            (FlagReason::Duplicate, En) => "charged twice",
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            FlagReason::NoOrder => "no_order",
            FlagReason::AfterCancel => "after_cancel",
            FlagReason::Unconfirmed => "unconfirmed",
            FlagReason::Duplicate => "duplicate",
        }
    }
}

impl fmt::Display for FlagReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FlagReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FlagReason::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| format!("unknown flag reason {s:?}"))
    }
}

/// A VAS subscription: the subscriber's consent record for one service code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VasOrder {
    pub service_code: String,
    pub ordered_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The order passed the subscriber's double confirmation (二次确认).
    pub confirmed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeFlag {
    pub record_id: String,
    pub reason: FlagReason,
    pub service_code: String,
    pub amount: Fen,
}

/// Flags the VAS charges among one period's records, sorted by record id.
pub fn flag_vas_charges(records: &[UsageRecord], orders: &[VasOrder], tz: Tz) -> Vec<ChargeFlag> {
    let mut charges: Vec<&UsageRecord> = records.iter().filter(|r| r.category == Category::Vas).collect();
    // "Earlier" is by instant, then record id, so the first of a duplicate group is stable.
    charges.sort_by(|a, b| (a.occurred_at, &a.record_id).cmp(&(b.occurred_at, &b.record_id)));
    let mut seen_same_day = HashSet::new();
    let mut flags: Vec<ChargeFlag> = charges
        .into_iter()
        .filter_map(|charge| {
            let first_of_its_day =
                seen_same_day.insert((charge.service_code.as_str(), charge.amount, local_date(charge.occurred_at, tz)));
            let reason = consent_problem(charge, orders).or((!first_of_its_day).then_some(FlagReason::Duplicate))?;
            Some(ChargeFlag {
                record_id: charge.record_id.clone(),
                reason,
                service_code: charge.service_code.clone(),
                amount: charge.amount,
            })
        })
        .collect();
    flags.sort_by(|a, b| a.record_id.cmp(&b.record_id));
    flags
}

/// What is wrong with the consent behind a charge, judged by the latest order of that service
/// placed at or before the charge.
fn consent_problem(charge: &UsageRecord, orders: &[VasOrder]) -> Option<FlagReason> {
    let latest = orders
        .iter()
        .filter(|o| o.service_code == charge.service_code && o.ordered_at <= charge.occurred_at)
        .max_by_key(|o| o.ordered_at);
    match latest {
        None => Some(FlagReason::NoOrder),
        Some(order) if order.cancelled_at.is_some_and(|c| c <= charge.occurred_at) => Some(FlagReason::AfterCancel),
        Some(order) if !order.confirmed => Some(FlagReason::Unconfirmed),
        Some(_) => None,
    }
}

/// How much larger than usual a bill must be to be a `spike`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpikeRule {
    /// `flags.spike_ratio` in hundredths, so that the comparison stays in integers.
    pub ratio_percent: i64,
    pub min_increase: Fen,
}

/// The mean of the previous bills the spike rule looks at (up to 3), to the fen (rounded half
/// away from zero); `None` without any.
pub fn recent_mean(previous_totals: &[Fen]) -> Option<Fen> {
    let previous = &previous_totals[..previous_totals.len().min(3)];
    if previous.is_empty() {
        return None;
    }
    let n = previous.len() as i64;
    let sum: i64 = previous.iter().map(|f| f.get()).sum();
    let half = if sum >= 0 { n / 2 } else { -(n / 2) };
    Some(Fen::new((sum + half) / n))
}

impl SpikeRule {
    /// A spike: the total is more than `ratio` times the mean of the previous bills (up to 3
    /// of them, at least 1) and exceeds that mean by at least `min_increase`. Compared as
    /// cross-multiplied integers so no rounding of the mean can change the verdict.
    pub fn is_spike(&self, total: Fen, previous_totals: &[Fen]) -> bool {
        let previous = &previous_totals[..previous_totals.len().min(3)];
        if previous.is_empty() {
            return false;
        }
        let n = i128::try_from(previous.len()).expect("at most three bills");
        let sum: i128 = previous.iter().map(|f| i128::from(f.get())).sum();
        let total = i128::from(total.get());
        total * n * 100 > i128::from(self.ratio_percent) * sum
            && total * n - sum >= i128::from(self.min_increase.get()) * n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bill::tests::record;
    use chrono::FixedOffset;
    use chrono_tz::Asia::Shanghai;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::<FixedOffset>::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn order(code: &str, ordered: &str, cancelled: Option<&str>, confirmed: bool) -> VasOrder {
        VasOrder { service_code: code.into(), ordered_at: at(ordered), cancelled_at: cancelled.map(at), confirmed }
    }

    fn vas(id: &str, when: &str, amount: i64, code: &str) -> UsageRecord {
        record(id, when, Category::Vas, 1, amount, code)
    }

    fn reasons(flags: &[ChargeFlag]) -> Vec<(&str, FlagReason)> {
        flags.iter().map(|f| (f.record_id.as_str(), f.reason)).collect()
    }

    #[test]
    fn a_charge_without_any_earlier_order_is_no_order() {
        let orders = [
            order("SP1", "2026-10-10T00:00:00+08:00", None, true),
            order("SP2", "2026-01-01T00:00:00+08:00", None, true),
        ];
        let flags = flag_vas_charges(&[vas("a", "2026-10-09T23:59:59+08:00", 200, "SP1")], &orders, Shanghai);
        assert_eq!(reasons(&flags), [("a", FlagReason::NoOrder)]);
        assert_eq!(flags[0].amount, Fen::new(200));
        assert_eq!(flags[0].service_code, "SP1");
    }

    #[test]
    fn an_order_placed_at_the_same_instant_covers_the_charge() {
        let orders = [order("SP1", "2026-10-10T00:00:00+08:00", None, true)];
        assert!(flag_vas_charges(&[vas("a", "2026-10-10T00:00:00+08:00", 200, "SP1")], &orders, Shanghai).is_empty());
    }

    #[test]
    fn a_charge_at_or_after_cancellation_is_after_cancel() {
        let orders = [order("SP1", "2026-01-01T00:00:00+08:00", Some("2026-10-04T12:00:00+08:00"), true)];
        let records = [
            vas("before", "2026-10-04T11:59:59+08:00", 200, "SP1"),
            vas("exactly", "2026-10-04T12:00:00+08:00", 300, "SP1"),
            vas("after", "2026-10-05T12:00:00+08:00", 400, "SP1"),
        ];
        let flags = flag_vas_charges(&records, &orders, Shanghai);
        assert_eq!(reasons(&flags), [("after", FlagReason::AfterCancel), ("exactly", FlagReason::AfterCancel)]);
    }

    #[test]
    fn only_the_latest_order_before_the_charge_counts() {
        let orders = [
            order("SP1", "2026-01-01T00:00:00+08:00", Some("2026-02-01T00:00:00+08:00"), true),
            order("SP1", "2026-03-01T00:00:00+08:00", None, true),
        ];
        assert!(flag_vas_charges(&[vas("a", "2026-10-01T00:00:00+08:00", 200, "SP1")], &orders, Shanghai).is_empty());
        let reordered = [order("SP1", "2026-03-01T00:00:00+08:00", None, false), orders[0].clone()];
        let flags = flag_vas_charges(&[vas("a", "2026-10-01T00:00:00+08:00", 200, "SP1")], &reordered, Shanghai);
        assert_eq!(reasons(&flags), [("a", FlagReason::Unconfirmed)]);
    }

    #[test]
    fn an_active_order_without_double_confirmation_is_unconfirmed() {
        let orders = [order("SP5", "2026-04-05T00:00:00+08:00", None, false)];
        let flags = flag_vas_charges(&[vas("a", "2026-10-01T00:00:00+08:00", 200, "SP5")], &orders, Shanghai);
        assert_eq!(reasons(&flags), [("a", FlagReason::Unconfirmed)]);
    }

    #[test]
    fn repeats_on_the_same_local_day_are_duplicates_except_the_first() {
        let orders = [order("SP1", "2026-01-01T00:00:00+08:00", None, true)];
        let records = [
            // 16:30 UTC is 00:30 next day in Shanghai: a different local date from "first".
            vas("next-day", "2026-10-05T16:30:00+00:00", 300, "SP1"),
            vas("second", "2026-10-05T20:00:00+08:00", 300, "SP1"),
            vas("first", "2026-10-05T09:00:00+08:00", 300, "SP1"),
            vas("other-amount", "2026-10-05T21:00:00+08:00", 500, "SP1"),
            vas("b-same-instant", "2026-10-05T22:00:00+08:00", 300, "SP1"),
            vas("a-same-instant", "2026-10-05T22:00:00+08:00", 300, "SP1"),
        ];
        let flags = flag_vas_charges(&records, &orders, Shanghai);
        assert_eq!(
            reasons(&flags),
            [
                ("a-same-instant", FlagReason::Duplicate),
                ("b-same-instant", FlagReason::Duplicate),
                ("second", FlagReason::Duplicate)
            ]
        );
    }

    #[test]
    fn a_consent_reason_wins_over_duplicate() {
        let records =
            [vas("a", "2026-10-05T09:00:00+08:00", 300, "SP9"), vas("b", "2026-10-05T10:00:00+08:00", 300, "SP9")];
        let flags = flag_vas_charges(&records, &[], Shanghai);
        assert_eq!(reasons(&flags), [("a", FlagReason::NoOrder), ("b", FlagReason::NoOrder)]);
    }

    #[test]
    fn non_vas_records_are_never_flagged() {
        let records = [record("v", "2026-10-05T09:00:00+08:00", Category::Voice, 3, 30, "")];
        assert!(flag_vas_charges(&records, &[], Shanghai).is_empty());
    }

    #[test]
    fn the_recent_mean_is_of_the_last_three_bills_to_the_fen() {
        let f = |v: &[i64]| v.iter().map(|&x| Fen::new(x)).collect::<Vec<_>>();
        assert_eq!(recent_mean(&[]), None);
        assert_eq!(recent_mean(&f(&[100, 200, 301, 9999])), Some(Fen::new(200)));
        assert_eq!(recent_mean(&f(&[100, 101])), Some(Fen::new(101)), "100.5 rounds up");
    }

    #[test]
    fn a_spike_needs_both_the_ratio_and_the_minimum_increase() {
        let rule = SpikeRule { ratio_percent: 300, min_increase: Fen::new(5000) };
        let f = |v: &[i64]| v.iter().copied().map(Fen::new).collect::<Vec<_>>();
        assert!(!rule.is_spike(Fen::new(100_000), &[]), "no history, no spike");
        assert!(rule.is_spike(Fen::new(30_001), &f(&[10_000])));
        assert!(!rule.is_spike(Fen::new(30_000), &f(&[10_000])), "exactly three times is not more than");
        assert!(!rule.is_spike(Fen::new(4_000), &f(&[1_000])), "ratio met but only 30.00 more");
        assert!(rule.is_spike(Fen::new(6_000), &f(&[1_000])), "exceeds the mean by exactly the minimum");
        // The mean of 100, 100, 101 is 100.33…; 7 × 3 × 100 > 300 × 301 must be exact.
        assert!(rule.is_spike(Fen::new(5_400), &f(&[100, 100, 101])));
        // Only the three most recent bills count.
        assert!(!rule.is_spike(Fen::new(30_000), &f(&[10_000, 10_000, 10_000, 0])));
    }
}
