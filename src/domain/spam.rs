//! Spam-number reports (骚扰号码举报) aggregated per reported number and calendar month.

use serde::Serialize;

/// Reported-number counts for one month, self-reports already left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportCount {
    pub number: String,
    pub reports: i64,
    pub distinct_reporters: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpamNumber {
    pub number: String,
    pub distinct_reporters: i64,
    pub reports: i64,
    pub flagged: bool,
    pub allowlisted: bool,
    pub associated: Vec<String>,
}

/// Exact numbers and `prefix*` patterns that are never flagged (operator and bank service numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowlist {
    exact: Vec<String>,
    prefixes: Vec<String>,
}

impl Allowlist {
    pub fn new<S: AsRef<str>>(entries: &[S]) -> Self {
        let mut exact = Vec::new();
        let mut prefixes = Vec::new();
        for entry in entries {
            match entry.as_ref().strip_suffix('*') {
                Some(prefix) => prefixes.push(prefix.to_string()),
                None => exact.push(entry.as_ref().to_string()),
            }
        }
        Allowlist { exact, prefixes }
    }

    pub fn allows(&self, number: &str) -> bool {
        self.exact.iter().any(|e| e == number) || self.prefixes.iter().any(|p| number.starts_with(p.as_str()))
    }
}

/// Flags numbers reported by at least `threshold` distinct subscribers and links each flagged
/// number to the others of its number block (same length, all but the last 4 characters equal).
/// `counts` must be sorted by number; the result keeps that order.
pub fn aggregate(counts: Vec<ReportCount>, threshold: i64, allowlist: &Allowlist) -> Vec<SpamNumber> {
    let numbers: Vec<String> = counts.iter().map(|c| c.number.clone()).collect();
    counts
        .into_iter()
        .map(|count| {
            let allowlisted = allowlist.allows(&count.number);
            let flagged = count.distinct_reporters >= threshold && !allowlisted;
            let associated = if flagged { same_block(&count.number, &numbers) } else { Vec::new() };
            SpamNumber {
                number: count.number,
                distinct_reporters: count.distinct_reporters,
                reports: count.reports,
                flagged,
                allowlisted,
                associated,
            }
        })
        .collect()
}

fn same_block(number: &str, sorted_numbers: &[String]) -> Vec<String> {
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    if digits < 7 {
        return Vec::new();
    }
    let block = &number[..number.len() - 4];
    sorted_numbers
        .iter()
        .filter(|other| other.len() == number.len() && other.as_str() != number && other.starts_with(block))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(number: &str, reports: i64, distinct: i64) -> ReportCount {
        ReportCount { number: number.into(), reports, distinct_reporters: distinct }
    }

    fn default_allowlist() -> Allowlist {
        Allowlist::new(&["10086", "10000", "10010", "12321", "95*"])
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
        let out =
            aggregate(vec![count("10086", 9, 9), count("95588", 4, 4), count("100861", 3, 3)], 3, &default_allowlist());
        assert!(out[0].allowlisted && !out[0].flagged);
        assert!(out[1].allowlisted && !out[1].flagged, "95* is a prefix pattern");
        assert!(!out[2].allowlisted && out[2].flagged, "exact entries do not match longer numbers");
    }

    #[test]
    fn short_numbers_have_no_block() {
        let out = aggregate(vec![count("123456", 3, 3), count("123457", 3, 3)], 3, &default_allowlist());
        assert!(out[0].flagged && out[0].associated.is_empty());
    }

    #[test]
    fn a_block_needs_the_same_length() {
        let out = aggregate(
            vec![count("1065912345", 3, 3), count("10659123456", 1, 1), count("1065912399", 1, 1)],
            3,
            &default_allowlist(),
        );
        assert_eq!(out[0].associated, ["1065912399"]);
    }
}
