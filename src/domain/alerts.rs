//! Usage alerts (docs/contract.md §12): which thresholds a subscriber's usage so far in the
//! billing period has reached, which of them are new, and which one is worth an SMS.

use std::fmt;
use std::str::FromStr;

use super::category::Category;

/// What an alert measures, each in its own unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Data in KB, against the plan's `data_mb` × 1024.
    Data,
    /// Voice minutes, against the plan's `voice_minutes`.
    Voice,
    /// SMS count, against the plan's `sms_count`.
    Sms,
    /// Fen spent on everything but the plan fee and discounts; thresholds are amounts.
    Spend,
}

impl Metric {
    pub const ALL: [Metric; 4] = [Metric::Data, Metric::Voice, Metric::Sms, Metric::Spend];

    pub const fn as_str(self) -> &'static str {
        match self {
            Metric::Data => "data",
            Metric::Voice => "voice",
            Metric::Sms => "sms",
            Metric::Spend => "spend",
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| format!("unknown alert metric {s:?}"))
    }
}

/// The thresholds of each metric (`[alerts]`): percentages of the allowance, and fen for spend.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Thresholds {
    pub data: Vec<i64>,
    pub voice: Vec<i64>,
    pub sms: Vec<i64>,
    pub spend_fen: Vec<i64>,
}

impl Thresholds {
    pub fn of(&self, metric: Metric) -> &[i64] {
        match metric {
            Metric::Data => &self.data,
            Metric::Voice => &self.voice,
            Metric::Sms => &self.sms,
            Metric::Spend => &self.spend_fen,
        }
    }
}

/// A subscriber's usage so far in the period, in each metric's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UsageSoFar {
    pub data_kb: i64,
    pub voice_minutes: i64,
    pub sms_count: i64,
    pub spend_fen: i64,
}

/// The plan's allowances in each metric's unit (data in KB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanAllowances {
    pub data_kb: i64,
    pub voice_minutes: i64,
    pub sms_count: i64,
}

impl UsageSoFar {
    /// Adds usage of one category (a record, or a sum of records): its quantity to its metric,
    /// its amount to spend unless it is the plan fee or a discount.
    pub fn add(&mut self, category: Category, quantity: i64, amount_fen: i64) {
        match category {
            Category::Voice => self.voice_minutes += quantity,
            Category::Data => self.data_kb += quantity,
            Category::Sms => self.sms_count += quantity,
            _ => {}
        }
        if !matches!(category, Category::PlanFee | Category::Discount) {
            self.spend_fen += amount_fen;
        }
    }

    /// The value of `metric` and its allowance (`None` for spend, whose thresholds are amounts).
    pub fn measure(&self, metric: Metric, plan: &PlanAllowances) -> (i64, Option<i64>) {
        match metric {
            Metric::Data => (self.data_kb, Some(plan.data_kb)),
            Metric::Voice => (self.voice_minutes, Some(plan.voice_minutes)),
            Metric::Sms => (self.sms_count, Some(plan.sms_count)),
            Metric::Spend => (self.spend_fen, None),
        }
    }
}

/// Whether `threshold` is reached, in integers: `value × 100 ≥ threshold × allowance`, or
/// `value ≥ threshold` for spend. A metric whose allowance is 0 has no usage alerts.
pub fn reached(value: i64, allowance: Option<i64>, threshold: i64) -> bool {
    match allowance {
        Some(allowance) if allowance <= 0 => false,
        Some(allowance) => i128::from(value) * 100 >= i128::from(threshold) * i128::from(allowance),
        None => value >= threshold,
    }
}

/// What one evaluation decides for one metric: the highest threshold newly reached, sent; the
/// lower ones newly reached with it, `covered` and never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlerts {
    pub metric: Metric,
    pub value: i64,
    pub allowance: Option<i64>,
    pub sent: i64,
    pub covered: Vec<i64>,
}

/// The alerts `usage` raises for `metric` given the thresholds already recorded this period
/// (`known`); `None` when nothing new is reached.
pub fn new_alerts(
    metric: Metric,
    usage: &UsageSoFar,
    plan: &PlanAllowances,
    thresholds: &Thresholds,
    known: &[i64],
) -> Option<NewAlerts> {
    let (value, allowance) = usage.measure(metric, plan);
    let mut new: Vec<i64> =
        thresholds.of(metric).iter().copied().filter(|t| !known.contains(t) && reached(value, allowance, *t)).collect();
    new.sort_unstable();
    new.dedup();
    let sent = new.pop()?;
    Some(NewAlerts { metric, value, allowance, sent, covered: new })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn thresholds() -> Thresholds {
        Thresholds { data: vec![80, 100], voice: vec![80, 100], sms: vec![100], spend_fen: vec![10000, 50000] }
    }

    const PLAN: PlanAllowances = PlanAllowances { data_kb: 1024 * 1024, voice_minutes: 100, sms_count: 50 };

    #[test]
    fn a_threshold_is_reached_exactly_at_its_percentage() {
        assert!(!reached(79, Some(100), 80));
        assert!(reached(80, Some(100), 80));
        // 819.2 MB of 1024: 80% of 1,048,576 KB is 838,860.8 KB.
        assert!(!reached(838_860, Some(1_048_576), 80));
        assert!(reached(838_861, Some(1_048_576), 80));
        assert!(!reached(10, Some(0), 80), "no allowance, no alert");
        assert!(reached(10000, None, 10000) && !reached(9999, None, 10000));
    }

    #[test]
    fn the_highest_new_threshold_is_sent_and_the_lower_ones_covered() {
        let usage = UsageSoFar { voice_minutes: 130, ..UsageSoFar::default() };
        let alerts = new_alerts(Metric::Voice, &usage, &PLAN, &thresholds(), &[]).unwrap();
        assert_eq!((alerts.sent, alerts.covered, alerts.value, alerts.allowance), (100, vec![80], 130, Some(100)));
        // 80 recorded before: only 100 is new, and nothing is covered.
        let alerts = new_alerts(Metric::Voice, &usage, &PLAN, &thresholds(), &[80]).unwrap();
        assert_eq!((alerts.sent, alerts.covered), (100, vec![]));
        assert_eq!(new_alerts(Metric::Voice, &usage, &PLAN, &thresholds(), &[80, 100]), None);
        let spend = UsageSoFar { spend_fen: 12000, ..UsageSoFar::default() };
        let alerts = new_alerts(Metric::Spend, &spend, &PLAN, &thresholds(), &[]).unwrap();
        assert_eq!((alerts.sent, alerts.allowance), (10000, None));
        assert_eq!(new_alerts(Metric::Sms, &spend, &PLAN, &thresholds(), &[]), None);
    }

    proptest! {
        #[test]
        fn an_alert_names_a_reached_threshold_above_every_covered_one(
            value in 0i64..10_000_000, allowance in 0i64..2_000_000, known in proptest::collection::vec(0i64..200, 0..4),
            mut list in proptest::collection::vec(1i64..200, 0..5),
        ) {
            list.sort_unstable();
            let thresholds = Thresholds { data: list.clone(), ..Thresholds::default() };
            let plan = PlanAllowances { data_kb: allowance, ..PlanAllowances::default() };
            let usage = UsageSoFar { data_kb: value, ..UsageSoFar::default() };
            match new_alerts(Metric::Data, &usage, &plan, &thresholds, &known) {
                Some(alerts) => {
                    prop_assert!(reached(value, Some(allowance), alerts.sent));
                    prop_assert!(!known.contains(&alerts.sent));
                    for covered in &alerts.covered {
                        prop_assert!(*covered < alerts.sent && !known.contains(covered));
                    }
                }
                None => prop_assert!(list.iter().all(|t| known.contains(t) || !reached(value, Some(allowance), *t))),
            }
        }
    }
}
