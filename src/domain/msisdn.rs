//! Subscriber numbers (MSISDN) and reported numbers, in the normalised forms numbers are
//! stored and compared in.

use std::fmt;

/// A subscriber's number in E.164 form with a leading `+`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Msisdn(String);

/// `1[3-9]\d{9}`: an 11-digit mainland mobile number without country code.
fn is_mainland_mobile(digits: &str) -> bool {
    let b = digits.as_bytes();
    b.len() == 11 && b[0] == b'1' && (b'3'..=b'9').contains(&b[1]) && b.iter().all(u8::is_ascii_digit)
}

impl Msisdn {
    /// Accepts E.164 with or without `+` (8 to 15 digits, no leading zero) or an 11-digit
    /// mainland mobile number, which is stored as `+86…`.
    pub fn parse(input: &str) -> Result<Self, String> {
        let text = input.trim();
        if is_mainland_mobile(text) {
            return Ok(Msisdn(format!("+86{text}")));
        }
        let digits = text.strip_prefix('+').unwrap_or(text);
        let valid =
            (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
        if valid {
            Ok(Msisdn(format!("+{digits}")))
        } else {
            Err(format!("{text:?} is not an E.164 number or an 11-digit mainland mobile number"))
        }
    }

    /// A number as a person types it into a search: spaces, dashes, dots and brackets are
    /// dropped and a leading `00` read as `+` before it is parsed (`0086 151-2661-4242`).
    pub fn parse_typed(input: &str) -> Result<Self, String> {
        let kept: String = input.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{3000}')).collect();
        let normalised =
            normalise_reported_number(&kept).map_err(|_| format!("{:?} is not a phone number", input.trim()))?;
        Msisdn::parse(&normalised)
    }

    /// Rebuilds a number read back from storage, where only parsed numbers are written.
    pub fn from_stored(stored: String) -> Self {
        Msisdn(stored)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The form used in logs and in the SMS itself: `138****8000` for mainland numbers,
    /// `+447****9252` elsewhere.
    pub fn masked(&self) -> String {
        let (head_len, shown) = match self.0.strip_prefix("+86") {
            Some(national) if is_mainland_mobile(national) => (3, national),
            _ => (4, self.0.as_str()),
        };
        // Stored numbers are ASCII with at least 8 digits, so byte slicing is safe.
        let tail_start = shown.len() - 4;
        format!("{}****{}", &shown[..head_len.min(tail_start)], &shown[tail_start..])
    }
}

impl fmt::Display for Msisdn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A number as reported in a spam complaint, in the one form it is compared in
/// (docs/contract.md §4): a leading `00` becomes `+`; `86` and an 11-digit mainland mobile, or
/// the mobile alone, become `+86…`; a number with `+` stays as it is; anything else (short
/// codes, SP ports, service numbers, landlines) stays as the digits given.
pub fn normalise_reported_number(input: &str) -> Result<String, String> {
    let text = input.trim();
    let digits = text.strip_prefix('+').unwrap_or(text);
    if !((3..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("{text:?} is not a phone number (3 to 20 digits, optional leading +)"));
    }
    if text.starts_with('+') {
        return Ok(text.to_string());
    }
    if let Some(international) = text.strip_prefix("00") {
        return Ok(format!("+{international}"));
    }
    if let Some(mobile) = text.strip_prefix("86").filter(|m| is_mainland_mobile(m)) {
        return Ok(format!("+86{mobile}"));
    }
    if is_mainland_mobile(text) {
        return Ok(format!("+86{text}"));
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_number_typed_with_separators_or_00_is_the_same_number() {
        for typed in ["0086 151-2661-4242", "(+86) 151 2661 4242", "15126614242", "86.151.2661.4242"] {
            assert_eq!(Msisdn::parse_typed(typed).unwrap().as_str(), "+8615126614242", "{typed}");
        }
        assert_eq!(Msisdn::parse_typed("0044 7952 319252").unwrap().as_str(), "+447952319252");
        assert!(Msisdn::parse_typed("abc").is_err());
    }

    #[test]
    fn mainland_mobiles_get_the_country_code() {
        assert_eq!(Msisdn::parse("13800138000").unwrap().as_str(), "+8613800138000");
        assert_eq!(Msisdn::parse("+8613800138000").unwrap().as_str(), "+8613800138000");
        assert_eq!(Msisdn::parse("8613800138000").unwrap().as_str(), "+8613800138000");
        assert_eq!(Msisdn::parse(" 19482637352 ").unwrap().as_str(), "+8619482637352");
    }

    #[test]
    fn other_international_numbers_are_kept_in_e164() {
        assert_eq!(Msisdn::parse("+447952319252").unwrap().as_str(), "+447952319252");
        assert_eq!(Msisdn::parse("447952319252").unwrap().as_str(), "+447952319252");
    }

    #[test]
    fn junk_is_refused() {
        for bad in [
            "12345",
            "abc",
            "",
            "+",
            "+0447952319252",
            "1380013800a",
            "+1234567890123456",
            "138 0013 8000",
            "１３８００１３８０００",
        ] {
            assert!(Msisdn::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn numbers_are_masked_for_logs_and_messages() {
        assert_eq!(Msisdn::parse("13800138000").unwrap().masked(), "138****8000");
        assert_eq!(Msisdn::parse("+447952319252").unwrap().masked(), "+447****9252");
        assert_eq!(Msisdn::parse("+12025550123").unwrap().masked(), "+120****0123");
    }

    #[test]
    fn reported_numbers_are_normalised_for_comparison() {
        assert_eq!(normalise_reported_number("17012345699").unwrap(), "+8617012345699");
        assert_eq!(normalise_reported_number("+8617012345699").unwrap(), "+8617012345699");
        assert_eq!(normalise_reported_number("+447700900123").unwrap(), "+447700900123");
        assert_eq!(normalise_reported_number("1065912345").unwrap(), "1065912345");
        assert_eq!(normalise_reported_number("02161234567").unwrap(), "02161234567");
        assert_eq!(normalise_reported_number("95588").unwrap(), "95588");
        assert!(normalise_reported_number("abc").is_err());
        assert!(normalise_reported_number("10-086").is_err());
    }

    proptest! {
        #[test]
        fn a_parsed_number_parses_to_itself_and_its_mask_hides_the_middle(input in "\\+?[0-9]{5,16}") {
            if let Ok(number) = Msisdn::parse(&input) {
                prop_assert_eq!(Msisdn::parse(number.as_str()).unwrap(), number.clone());
                let masked = number.masked();
                prop_assert!(masked.contains("****"));
                prop_assert!(masked.ends_with(&number.as_str()[number.as_str().len() - 4..]));
                prop_assert!(!masked.contains(number.as_str()));
            }
        }
    }
}
