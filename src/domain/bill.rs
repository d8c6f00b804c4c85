//! The itemized bill of one subscriber for one period: totals per category, usage figures
//! and the value-added services charged, computed from that period's rated usage records.

use chrono::{DateTime, Utc};

use super::category::Category;
use super::money::Fen;

/// The largest quantity a single usage record may carry: a petabyte of data in KB, three
/// months of a 1 Gbit/s link, so that no real record is refused, while a month's sums, kept as
/// 64-bit integers in the bills and the usage totals, cannot overflow short of nine million records a subscriber.
pub const MAX_RECORD_QUANTITY: i64 = 1_000_000_000_000;

/// A rated usage record as the billing system delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub record_id: String,
    pub occurred_at: DateTime<Utc>,
    pub category: Category,
    pub quantity: i64,
    pub amount: Fen,
    /// The SP service code; non-empty exactly for `vas` records.
    pub service_code: String,
    pub description: String,
}

/// Totals per category, indexed in bill order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CategoryTotals([Fen; 8]);

impl CategoryTotals {
    pub fn from_array(totals: [Fen; 8]) -> Self {
        CategoryTotals(totals)
    }

    pub fn get(&self, category: Category) -> Fen {
        self.0[category.index()]
    }

    pub fn iter(&self) -> impl Iterator<Item = (Category, Fen)> + '_ {
        Category::ALL.into_iter().map(|c| (c, self.get(c)))
    }

    pub fn total(&self) -> Fen {
        self.0.iter().copied().sum()
    }

    fn add(&mut self, category: Category, amount: Fen) {
        self.0[category.index()] += amount;
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub voice_minutes: i64,
    pub data_kb: i64,
    pub sms_count: i64,
}

impl UsageTotals {
    fn add(&mut self, category: Category, quantity: i64) {
        match category {
            Category::Voice => self.voice_minutes += quantity,
            Category::Data => self.data_kb += quantity,
            Category::Sms => self.sms_count += quantity,
            _ => {}
        }
    }
}

/// One value-added service as it appears on the bill: all charges of one service code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VasCharge {
    pub service_code: String,
    /// The service name from the first record that named it.
    pub name: String,
    pub amount: Fen,
    pub charges: i64,
}

/// A large `other` or `adjustment` record (at least `sms.itemize_min_fen` either way), which
/// the bill SMS names with its description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemizedCharge {
    pub category: Category,
    pub description: String,
    pub amount: Fen,
}

/// Whether a record of `category` and `amount` is named on its own in the bill SMS.
pub fn is_itemized(category: Category, amount: Fen, min: Fen) -> bool {
    matches!(category, Category::Other | Category::Adjustment)
        && amount.get().unsigned_abs() >= min.get().unsigned_abs()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillSummary {
    pub categories: CategoryTotals,
    pub usage: UsageTotals,
    pub vas: Vec<VasCharge>,
    pub record_count: i64,
}

impl BillSummary {
    pub fn total(&self) -> Fen {
        self.categories.total()
    }
}

/// Sums a period's records. The caller passes exactly the records whose instant lies in the
/// subscriber's period; the plan fee is whatever `plan_fee` records say.
pub fn summarize<'a>(records: impl IntoIterator<Item = &'a UsageRecord>) -> BillSummary {
    let mut categories = CategoryTotals::default();
    let mut usage = UsageTotals::default();
    let mut vas: Vec<VasCharge> = Vec::new();
    let mut record_count = 0;
    for record in records {
        record_count += 1;
        categories.add(record.category, record.amount);
        usage.add(record.category, record.quantity);
        if record.category != Category::Vas {
            continue;
        }
        match vas.iter_mut().find(|v| v.service_code == record.service_code) {
            Some(charge) => {
                charge.amount += record.amount;
                charge.charges += 1;
                if charge.name.is_empty() {
                    charge.name.clone_from(&record.description);
                }
            }
            None => vas.push(VasCharge {
                service_code: record.service_code.clone(),
                name: record.description.clone(),
                amount: record.amount,
                charges: 1,
            }),
        }
    }
    vas.sort_by(|a, b| a.service_code.cmp(&b.service_code));
    BillSummary { categories, usage, vas, record_count }
}

/// What a period's records other than VAS charges add up to: all a bill needs of them, kept
/// per billing month as usage is imported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChargeTotals {
    pub categories: CategoryTotals,
    pub usage: UsageTotals,
    pub records: i64,
}

impl ChargeTotals {
    pub fn add(&mut self, category: Category, quantity: i64, amount: Fen) {
        debug_assert_ne!(category, Category::Vas, "vas charges are summarized record by record");
        self.records += 1;
        self.categories.add(category, amount);
        self.usage.add(category, quantity);
    }
}

/// The summary `summarize` gives, from the totals of every record but the `vas` ones and the
/// `vas` records themselves: a bill lists each service and the flags judge each charge, while
/// the other categories only add up. Reading totals instead of records is most of a build's
/// database work saved.
pub fn summarize_totals(charges: &ChargeTotals, vas_records: &[UsageRecord]) -> BillSummary {
    let mut summary = summarize(vas_records);
    summary.record_count += charges.records;
    for (category, amount) in charges.categories.iter() {
        summary.categories.add(category, amount);
    }
    summary.usage.voice_minutes += charges.usage.voice_minutes;
    summary.usage.data_kb += charges.usage.data_kb;
    summary.usage.sms_count += charges.usage.sms_count;
    summary
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::FixedOffset;
    use proptest::prelude::*;

    pub(crate) fn record(
        id: &str,
        at: &str,
        category: Category,
        quantity: i64,
        amount: i64,
        code: &str,
    ) -> UsageRecord {
        UsageRecord {
            record_id: id.to_string(),
            occurred_at: DateTime::<FixedOffset>::parse_from_rfc3339(at).unwrap().with_timezone(&Utc),
            category,
            quantity,
            amount: Fen::new(amount),
            service_code: code.to_string(),
            description: if code.is_empty() { String::new() } else { format!("service {code}") },
        }
    }

    #[test]
    fn a_bill_sums_amounts_per_category_and_usage_per_kind() {
        let records = [
            record("r1", "2026-10-01T00:25:00+08:00", Category::PlanFee, 1, 5800, ""),
            record("r2", "2026-10-02T10:00:00+08:00", Category::Voice, 34, 201, ""),
            record("r3", "2026-10-03T10:00:00+08:00", Category::Voice, 3, 30, ""),
            record("r4", "2026-10-04T10:00:00+08:00", Category::Data, 446789, 0, ""),
            record("r5", "2026-10-05T10:00:00+08:00", Category::Sms, 2, 10, ""),
            record("r6", "2026-10-06T10:00:00+08:00", Category::Vas, 1, 300, "SP2002"),
            record("r7", "2026-10-07T10:00:00+08:00", Category::Vas, 1, 300, "SP2002"),
            record("r8", "2026-10-08T10:00:00+08:00", Category::Vas, 1, 200, "SP1001"),
            record("r9", "2026-10-09T10:00:00+08:00", Category::Discount, 0, -1623, ""),
            record("r10", "2026-10-10T10:00:00+08:00", Category::Adjustment, 0, 50, ""),
        ];
        let bill = summarize(&records);
        assert_eq!(bill.total(), Fen::new(5800 + 231 + 10 + 800 - 1623 + 50));
        assert_eq!(bill.categories.get(Category::Voice), Fen::new(231));
        assert_eq!(bill.categories.get(Category::Other), Fen::ZERO);
        assert_eq!(bill.usage, UsageTotals { voice_minutes: 37, data_kb: 446789, sms_count: 2 });
        assert_eq!(bill.record_count, 10);
        let codes: Vec<_> = bill.vas.iter().map(|v| (v.service_code.as_str(), v.amount.get(), v.charges)).collect();
        assert_eq!(codes, [("SP1001", 200, 1), ("SP2002", 600, 2)]);
    }

    #[test]
    fn a_subscriber_without_records_gets_a_zero_bill() {
        let bill = summarize(&[]);
        assert_eq!(bill.total(), Fen::ZERO);
        assert_eq!(bill.record_count, 0);
        assert!(bill.vas.is_empty());
    }

    proptest! {
        #[test]
        fn category_totals_always_add_up_to_the_bill_total(
            amounts in proptest::collection::vec((0usize..8, -1_000_000_000i64..=1_000_000_000), 0..100)
        ) {
            let records: Vec<_> = amounts.iter().enumerate().map(|(i, (c, amount))| {
                record(&format!("r{i}"), "2026-10-02T10:00:00+08:00", Category::ALL[*c], 1, *amount, if *c == 4 { "SP1" } else { "" })
            }).collect();
            let bill = summarize(&records);
            prop_assert_eq!(bill.total().get(), amounts.iter().map(|(_, a)| a).sum::<i64>());
            prop_assert_eq!(bill.categories.iter().map(|(_, f)| f).sum::<Fen>(), bill.total());
            prop_assert_eq!(bill.vas.iter().map(|v| v.amount).sum::<Fen>(), bill.categories.get(Category::Vas));
        }

        #[test]
        fn totalling_all_but_the_vas_charges_first_gives_the_same_bill(
            parts in proptest::collection::vec((0usize..8, 0i64..10_000, -1_000_000i64..=1_000_000, 0usize..3), 0..60)
        ) {
            let records: Vec<_> = parts.iter().enumerate().map(|(i, (c, quantity, amount, code))| {
                let code = if Category::ALL[*c] == Category::Vas { ["SP1", "SP2", "SP3"][*code] } else { "" };
                record(&format!("r{i}"), "2026-10-02T10:00:00+08:00", Category::ALL[*c], *quantity, *amount, code)
            }).collect();
            let (vas, others): (Vec<_>, Vec<_>) = records.iter().cloned().partition(|r| r.category == Category::Vas);
            let mut totals = ChargeTotals::default();
            for r in &others {
                totals.add(r.category, r.quantity, r.amount);
            }
            prop_assert_eq!(summarize_totals(&totals, &vas), summarize(&records));
        }
    }
}
