//! Logs on standard error: `BILLPUSH_LOG` filters them (default `warn`); `BILLPUSH_LOG_FORMAT=json`
//! writes one JSON object a line for log shippers. In the text format every field is written
//! with its control characters escaped, so that a value from outside (a gateway's answer, a
//! receipt's id) cannot start a forged log line.

use std::fmt::Write as _;

use tracing_subscriber::field::MakeExt;
use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env("BILLPUSH_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("BILLPUSH_LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        let fields = tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
            let text = escape_controls(&format!("{value:?}"));
            match field.name() {
                "message" => write!(writer, "{text}"),
                name => write!(writer, "{name}={text}"),
            }
        })
        .delimited(" ");
        builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).fmt_fields(fields).init();
    }
}

/// `text` with every control character, and every character that breaks or reorders a line in
/// a viewer (line and paragraph separators, direction overrides, zero-width characters), written
/// as an escape (`\n`, `\u{1b}`, `\u{202e}`).
pub fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}') =>
            {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_start_a_line() {
        let forged = "x\n2026-12-06T00:00:00Z  INFO billpush: opt-out by 13800138000\r\u{1b}[2K";
        let escaped = escape_controls(forged);
        assert!(!escaped.contains(['\n', '\r', '\u{1b}']), "{escaped}");
        assert_eq!(escaped, "x\\n2026-12-06T00:00:00Z  INFO billpush: opt-out by 13800138000\\r\\u{1b}[2K");
        assert_eq!(escape_controls("a\u{2028}b\u{202E}c"), "a\\u{2028}b\\u{202e}c");
    }
}
