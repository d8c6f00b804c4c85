//! Spam-number reports (骚扰号码举报) aggregated per reported number for a calendar month, over
//! a window reaching back `spam.window_days` (docs/contract.md §4).

use serde::Serialize;

/// A listed number's counts: over the window, and those in the month itself. Self-reports are
/// already left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportCount {
    pub number: String,
    pub reports: i64,
    pub distinct_reporters: i64,
    pub reports_in_month: i64,
    pub calls: i64,
    pub sms: i64,
}

/// What kind of number a normalised number is, the first that applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NumberType {
    /// `+861[3-9]` and nine more digits.
    Mobile,
    /// A `+` number outside `+86`.
    International,
    /// An SP's 106 port or one of its extensions: digits from `106`, at least 5.
    SpPort,
    /// Digits from `0`, 10 to 12 of them.
    Landline,
    /// Digits from `1` or `9`, 3 to 8 of them (`10086`, `12321`, `95588`, `95105888`).
    Service,
    /// Anything else, `+86` numbers that are no mobile among them.
    Other,
}

impl NumberType {
    pub const ALL: [NumberType; 6] = [
        NumberType::Mobile,
        NumberType::International,
        NumberType::SpPort,
        NumberType::Landline,
        NumberType::Service,
        NumberType::Other,
    ];

    pub fn of(number: &str) -> NumberType {
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if let Some(rest) = number.strip_prefix('+') {
            return match rest.strip_prefix("86") {
                Some(national) => {
                    let b = national.as_bytes();
                    if b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) && digits(national) {
                        NumberType::Mobile
                    } else {
                        NumberType::Other
                    }
                }
                None => NumberType::International,
            };
        }
        let len = number.len();
        if number.starts_with("106") && len >= 5 {
            NumberType::SpPort
        } else if number.starts_with('0') && (10..=12).contains(&len) {
            NumberType::Landline
        } else if number.starts_with(['1', '9']) && (3..=8).contains(&len) {
            NumberType::Service
        } else {
            NumberType::Other
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            NumberType::Mobile => "mobile",
            NumberType::International => "international",
            NumberType::SpPort => "sp_port",
            NumberType::Landline => "landline",
            NumberType::Service => "service",
            NumberType::Other => "other",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpamNumber {
    pub number: String,
    pub number_type: NumberType,
    pub distinct_reporters: i64,
    pub reports: i64,
    pub reports_in_month: i64,
    pub calls: i64,
    pub sms: i64,
    pub flagged: bool,
    pub allowlisted: bool,
    pub associated: Vec<String>,
}

/// One allowlist entry, matched against normalised numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    Exact(String),
    /// `106*`: every number starting so.
    Prefix(String),
    /// `95???`: `?` stands for exactly one digit.
    Pattern(Vec<Option<u8>>),
}

/// Numbers that are never flagged: the operators' own and national service numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist(Vec<Allowed>);

impl Allowlist {
    /// Entries are normalised as reported numbers are (`normalise`) before they are matched.
    pub fn new<S: AsRef<str>>(entries: &[S], normalise: impl Fn(&str) -> String) -> Self {
        Allowlist(
            entries
                .iter()
                .map(|entry| {
                    let entry = entry.as_ref().trim();
                    if let Some(prefix) = entry.strip_suffix('*') {
                        Allowed::Prefix(normalise(prefix))
                    } else if entry.contains('?') {
                        Allowed::Pattern(entry.bytes().map(|b| (b != b'?').then_some(b)).collect())
                    } else {
                        Allowed::Exact(normalise(entry))
                    }
                })
                .collect(),
        )
    }

    pub fn allows(&self, number: &str) -> bool {
        self.0.iter().any(|entry| match entry {
            Allowed::Exact(exact) => exact == number,
            Allowed::Prefix(prefix) => number.starts_with(prefix.as_str()),
            Allowed::Pattern(pattern) => {
                pattern.len() == number.len()
                    && pattern.iter().zip(number.bytes()).all(|(p, b)| match p {
                        Some(p) => *p == b,
                        None => b.is_ascii_digit(),
                    })
            }
        })
    }
}

/// Flags the listed numbers reported by at least `threshold` distinct subscribers over the
/// window and not allow-listed, and links each flagged number to the listed numbers of its
/// sender: for an SP port, its extensions and the port they extend; for any other number of 7
/// or more digits, its number block (same length, all but the last 4 characters equal).
/// `counts` must be sorted by number; the result keeps that order.
pub fn aggregate(counts: Vec<ReportCount>, threshold: i64, allowlist: &Allowlist) -> Vec<SpamNumber> {
    let listed: Vec<(String, NumberType)> =
        counts.iter().map(|c| (c.number.clone(), NumberType::of(&c.number))).collect();
    counts
        .into_iter()
        .map(|count| {
            let number_type = NumberType::of(&count.number);
            let allowlisted = allowlist.allows(&count.number);
            let flagged = count.distinct_reporters >= threshold && !allowlisted;
            let associated = if flagged { associated(&count.number, number_type, &listed) } else { Vec::new() };
            SpamNumber {
                number: count.number,
                number_type,
                distinct_reporters: count.distinct_reporters,
                reports: count.reports,
                reports_in_month: count.reports_in_month,
                calls: count.calls,
                sms: count.sms,
                flagged,
                allowlisted,
                associated,
            }
        })
        .collect()
}

fn associated(number: &str, number_type: NumberType, listed: &[(String, NumberType)]) -> Vec<String> {
    let others = listed.iter().filter(|(other, _)| other != number);
    if number_type == NumberType::SpPort {
        return others
            .filter(|(other, t)| {
                *t == NumberType::SpPort && (other.starts_with(number) || number.starts_with(other.as_str()))
            })
            .map(|(other, _)| other.clone())
            .collect();
    }
    if number.bytes().filter(u8::is_ascii_digit).count() < 7 {
        return Vec::new();
    }
    let block = &number[..number.len() - 4];
    others
        .filter(|(other, _)| other.len() == number.len() && other.starts_with(block))
        .map(|(o, _)| o.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(number: &str, reports: i64, distinct: i64) -> ReportCount {
        ReportCount {
            number: number.into(),
            reports,
            distinct_reporters: distinct,
            reports_in_month: reports,
            calls: 0,
            sms: reports,
        }
    }

    fn default_allowlist() -> Allowlist {
        Allowlist::new(&["10086", "10000", "10010", "12321", "95???"], |n| n.to_string())
    }

    #[test]
    fn every_number_type_in_the_order_of_the_rules() {
        for (number, expected) in [
            ("+8613800138000", NumberType::Mobile),
            ("+447700900123", NumberType::International),
            ("+862161234567", NumberType::Other),
            ("1065912345", NumberType::SpPort),
            ("10659", NumberType::SpPort),
            ("1065", NumberType::Service),
            ("02161234567", NumberType::Landline),
            ("10086", NumberType::Service),
            ("95105888", NumberType::Service),
            ("951058881", NumberType::Other),
            ("12", NumberType::Other),
            ("021", NumberType::Other),
        ] {
            assert_eq!(NumberType::of(number), expected, "{number}");
        }
    }

    #[test]
    fn a_number_is_flagged_from_the_threshold_of_distinct_reporters() {
        let out =
            aggregate(vec![count("+8617012345601", 5, 2), count("+8617012345602", 3, 3)], 3, &default_allowlist());
        assert!(!out[0].flagged);
        assert!(out[1].flagged);
        assert_eq!(out[1].associated, ["+8617012345601"]);
        assert!(out[0].associated.is_empty(), "only flagged numbers list their block");
    }

    #[test]
    fn allowlisted_numbers_are_counted_but_never_flagged() {
        let out = aggregate(
            vec![count("10086", 9, 9), count("95588", 4, 4), count("95105888", 3, 3), count("100861", 3, 3)],
            3,
            &default_allowlist(),
        );
        assert!(out[0].allowlisted && !out[0].flagged);
        assert!(out[1].allowlisted && !out[1].flagged, "95??? covers five-digit 95 numbers");
        assert!(!out[2].allowlisted && out[2].flagged, "but not the longer ones of ordinary enterprises");
        assert!(!out[3].allowlisted && out[3].flagged, "exact entries do not match longer numbers");
    }

    #[test]
    fn allowlist_prefixes_and_entries_are_normalised_like_numbers() {
        let list = Allowlist::new(&["106*", "008613800138000"], |n| {
            crate::domain::msisdn::normalise_reported_number(n).unwrap_or_else(|_| n.to_string())
        });
        assert!(list.allows("1065912345") && list.allows("+8613800138000"));
        assert!(!list.allows("+8613800138001"));
    }

    #[test]
    fn an_sp_port_is_associated_with_its_extensions_and_short_numbers_have_no_block() {
        let out = aggregate(
            vec![
                count("1065912345", 3, 3),
                count("106591234501", 1, 1),
                count("10659123450188", 1, 1),
                count("1065999", 1, 1),
            ],
            3,
            &default_allowlist(),
        );
        assert_eq!(out[0].associated, ["106591234501", "10659123450188"]);
        let out = aggregate(vec![count("123456", 3, 3), count("123457", 3, 3)], 3, &default_allowlist());
        assert!(out[0].flagged && out[0].associated.is_empty());
    }
}
