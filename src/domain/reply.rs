//! Subscribers' replies to the bill SMS (MO): opt-out keywords, spam reports `JB <number>`,
//! `ZD` for the bill's details, `SS` to dispute a charge.

/// What a reply asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    OptOut,
    /// `JB <number>`: the number as written, not yet normalised.
    Report(String),
    Details,
    Dispute,
    Other,
}

const OPT_OUT: [&str; 6] = ["TD", "TDZD", "T", "退订", "STOP", "UNSUBSCRIBE"];

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
    if OPT_OUT.contains(&text.as_str()) {
        return Reply::OptOut;
    }
    match text.as_str() {
        "ZD" => return Reply::Details,
        "SS" => return Reply::Dispute,
        _ => {}
    }
    match text.strip_prefix("JB") {
        Some(rest) if rest.starts_with(char::is_whitespace) && !rest.trim().is_empty() => {
            Reply::Report(rest.trim().to_string())
        }
        _ => Reply::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_opt_out_keyword_in_any_case_and_width_opts_out() {
        for text in [
            "TD",
            "td",
            "Td",
            " TD ",
            "ＴＤ",
            "ｔｄ",
            "TDZD",
            "ＴＤＺＤ",
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
            assert_eq!(parse_reply(text), Reply::OptOut, "{text:?}");
        }
    }

    #[test]
    fn spam_reports_details_and_disputes_are_recognised() {
        assert_eq!(parse_reply("JB 1065912345"), Reply::Report("1065912345".into()));
        assert_eq!(parse_reply("jb  +8617012345601 "), Reply::Report("+8617012345601".into()));
        assert_eq!(parse_reply("ＪＢ　１０６５９１２３４５"), Reply::Report("1065912345".into()));
        assert_eq!(parse_reply("zd"), Reply::Details);
        assert_eq!(parse_reply("ＺＤ"), Reply::Details);
        assert_eq!(parse_reply("ss"), Reply::Dispute);
    }

    #[test]
    fn anything_else_is_left_alone() {
        for text in ["", "JB", "JB ", "JB1065", "TDX", "please stop", "hello", "退订吧"] {
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
