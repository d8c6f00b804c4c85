//! Subscribers' replies to the bill SMS (MO): `TDZD`/`KTZD` for the bill SMS, `TDTX`/`KTTX` for
//! usage alerts, a bare `TD`
//! that changes nothing, spam reports `JB <number> [DH]`, `ZD` for the bill's details, `SS` to
//! dispute a charge.

use crate::domain::records::ReportKind;

/// What a reply asks for (docs/contract.md §7.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `TDZD` or `退订账单`: no more bill SMS.
    OptOut,
    /// `KTZD` or `开通账单`: the bill SMS again.
    OptIn,
    /// `TDTX`: no more usage alerts; the bill SMS is untouched.
    AlertsOptOut,
    /// `KTTX`: usage alerts again.
    AlertsOptIn,
    /// A bare `TD`, `T`, `退订`, `STOP` or `UNSUBSCRIBE`: what subscribers send to cancel a
    /// VAS, so it changes nothing and is answered with how to do either.
    Stop,
    /// `JB <number>` (an SMS) or `JB <number> DH` (a call): the number as written.
    Report {
        number: String,
        kind: ReportKind,
    },
    Details,
    /// `SS [text]`: disputes the latest bill's flagged charges.
    Dispute(String),
    Other,
}

const OPT_OUT: [&str; 2] = ["TDZD", "退订账单"];
const OPT_IN: [&str; 2] = ["KTZD", "开通账单"];
const STOP: [&str; 5] = ["TD", "T", "退订", "STOP", "UNSUBSCRIBE"];

/// Full-width forms (`ＴＤ`, `ＪＢ　１０６…`) become their ASCII twins; the ideographic space a space.
fn half_width(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            c => c,
        })
        .collect()
}

pub fn parse_reply(text: &str) -> Reply {
    let text = half_width(text).trim().to_uppercase();
    let text = text.as_str();
    if OPT_OUT.contains(&text) {
        return Reply::OptOut;
    }
    if OPT_IN.contains(&text) {
        return Reply::OptIn;
    }
    if text == "TDTX" {
        return Reply::AlertsOptOut;
    }
    if text == "KTTX" {
        return Reply::AlertsOptIn;
    }
    if STOP.contains(&text) {
        return Reply::Stop;
    }
    if text == "ZD" {
        return Reply::Details;
    }
    if let Some(rest) = text.strip_prefix("SS").filter(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
    {
        return Reply::Dispute(rest.trim().to_string());
    }
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        ["JB", number] => Reply::Report { number: number.to_string(), kind: ReportKind::Sms },
        ["JB", number, "DH"] => Reply::Report { number: number.to_string(), kind: ReportKind::Call },
        _ => Reply::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_tdzd_opts_out_and_only_ktzd_opts_back_in_in_any_case_and_width() {
        for text in ["TDZD", "tdzd", " TDZD ", "ＴＤＺＤ", "ｔｄｚｄ", "退订账单"] {
            assert_eq!(parse_reply(text), Reply::OptOut, "{text:?}");
        }
        for text in ["KTZD", "ktzd", "ＫＴＺＤ", "开通账单"] {
            assert_eq!(parse_reply(text), Reply::OptIn, "{text:?}");
        }
    }

    #[test]
    fn a_bare_stop_word_is_ambiguous_and_opts_out_of_nothing() {
        for text in [
            "TD",
            "td",
            "ＴＤ",
            "T",
            "t",
            "Ｔ",
            "退订",
            " 退订 ",
            "STOP",
            "stop",
            "ＳＴＯＰ",
            "UNSUBSCRIBE",
            "Unsubscribe",
        ] {
            assert_eq!(parse_reply(text), Reply::Stop, "{text:?}");
        }
    }

    #[test]
    fn spam_reports_details_and_disputes_are_recognised() {
        let sms = |n: &str| Reply::Report { number: n.into(), kind: ReportKind::Sms };
        assert_eq!(parse_reply("JB 1065912345"), sms("1065912345"));
        assert_eq!(parse_reply("jb  +8617012345601 "), sms("+8617012345601"));
        assert_eq!(parse_reply("ＪＢ　１０６５９１２３４５"), sms("1065912345"));
        assert_eq!(
            parse_reply("JB 02161234567 dh"),
            Reply::Report { number: "02161234567".into(), kind: ReportKind::Call }
        );
        assert_eq!(parse_reply("zd"), Reply::Details);
        assert_eq!(parse_reply("ＺＤ"), Reply::Details);
        assert_eq!(parse_reply("ss"), Reply::Dispute(String::new()));
        assert_eq!(parse_reply("SS 没订过"), Reply::Dispute("没订过".into()));
    }

    #[test]
    fn anything_else_is_left_alone() {
        for text in ["", "JB", "JB ", "JB1065", "JB 1 2", "TDX", "SSX", "please stop", "hello", "退订吧"] {
            assert_eq!(parse_reply(text), Reply::Other, "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(text in "\\PC{0,40}") {
            let _ = parse_reply(&text);
        }
    }
}
