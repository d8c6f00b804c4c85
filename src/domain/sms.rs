//! SMS encoding and segmentation, computed exactly as a handset and an SMSC do.
//!
//! GSM 03.38 7-bit when every character is in the default alphabet or its extension table
//! (extension characters cost two septets: the escape and the character); UCS-2 otherwise,
//! where a character outside the BMP costs two UTF-16 units. A single message holds 160
//! septets or 70 units; once concatenated, the UDH leaves 153 or 67 per part. Parts never
//! split an escape pair or a surrogate pair.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

impl Encoding {
    pub const fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "gsm7",
            Encoding::Ucs2 => "ucs2",
        }
    }

    /// Units a single, unconcatenated message holds.
    pub const fn single_limit(self) -> usize {
        match self {
            Encoding::Gsm7 => 160,
            Encoding::Ucs2 => 70,
        }
    }

    /// Units each part of a concatenated message holds.
    pub const fn part_limit(self) -> usize {
        match self {
            Encoding::Gsm7 => 153,
            Encoding::Ucs2 => 67,
        }
    }

    /// What `c` costs in this encoding: septets for GSM-7, UTF-16 units for UCS-2.
    pub fn cost(self, c: char) -> usize {
        match self {
            Encoding::Gsm7 if is_gsm7_extension(c) => 2,
            Encoding::Gsm7 => 1,
            Encoding::Ucs2 => c.len_utf16(),
        }
    }
}

const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM7_EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// Which ASCII characters a table holds, read off its bytes once at compile time: every
/// character is checked for every message sent, and most are ASCII (a byte below 0x80 in
/// UTF-8 is always a whole character).
const fn ascii_in(table: &str) -> [bool; 128] {
    let bytes = table.as_bytes();
    let mut ascii = [false; 128];
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] < 0x80 {
            ascii[bytes[i] as usize] = true;
        }
        i += 1;
    }
    ascii
}

const GSM7_BASIC_ASCII: [bool; 128] = ascii_in(GSM7_BASIC);
const GSM7_EXTENSION_ASCII: [bool; 128] = ascii_in(GSM7_EXTENSION);

fn is_gsm7_basic(c: char) -> bool {
    match u8::try_from(c) {
        Ok(byte) if byte < 0x80 => GSM7_BASIC_ASCII[usize::from(byte)],
        _ => GSM7_BASIC.contains(c),
    }
}

fn is_gsm7_extension(c: char) -> bool {
    match u8::try_from(c) {
        Ok(byte) if byte < 0x80 => GSM7_EXTENSION_ASCII[usize::from(byte)],
        _ => GSM7_EXTENSION.contains(c),
    }
}

/// Decodes GSM 03.38 text sent one septet a byte (as SMSCs hand replies over SMPP with
/// `data_coding` 0); a code with no character reads as `?`.
pub fn decode_gsm7(bytes: &[u8]) -> String {
    const ESCAPE: u8 = 0x1B;
    let basic: Vec<char> = GSM7_BASIC.chars().collect();
    let mut text = String::with_capacity(bytes.len());
    let mut escaped = false;
    for &byte in bytes {
        let c = if escaped {
            escaped = false;
            match byte {
                0x0A => '\u{c}',
                0x14 => '^',
                0x28 => '{',
                0x29 => '}',
                0x2F => '\\',
                0x3C => '[',
                0x3D => '~',
                0x3E => ']',
                0x40 => '|',
                0x65 => '€',
                _ => '?',
            }
        } else if byte == ESCAPE {
            escaped = true;
            continue;
        } else {
            // The basic table above leaves out the escape code itself.
            let index = usize::from(byte) - usize::from(byte > ESCAPE);
            basic.get(index).copied().unwrap_or('?')
        };
        text.push(c);
    }
    text
}

/// The encoding a text needs: GSM-7 when every character has a GSM 03.38 code.
pub fn encoding_for(text: &str) -> Encoding {
    if text.chars().all(|c| is_gsm7_basic(c) || is_gsm7_extension(c)) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

/// A text as it goes over the air: its encoding, its total length in units and its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segmented<'a> {
    pub encoding: Encoding,
    pub units: usize,
    pub parts: Vec<&'a str>,
}

impl Segmented<'_> {
    pub fn segments(&self) -> usize {
        self.parts.len()
    }
}

/// Splits a text into the parts it is sent in. Greedy filling is optimal here: a character
/// that does not fit whole starts the next part, so pairs are never split.
pub fn segment(text: &str) -> Segmented<'_> {
    let encoding = encoding_for(text);
    let units: usize = text.chars().map(|c| encoding.cost(c)).sum();
    if units <= encoding.single_limit() {
        return Segmented { encoding, units, parts: vec![text] };
    }
    let limit = encoding.part_limit();
    let mut parts = Vec::with_capacity(units / limit + 1);
    let (mut part_start, mut used) = (0, 0);
    for (offset, c) in text.char_indices() {
        let cost = encoding.cost(c);
        if used + cost > limit {
            parts.push(&text[part_start..offset]);
            part_start = offset;
            used = 0;
        }
        used += cost;
    }
    parts.push(&text[part_start..]);
    Segmented { encoding, units, parts }
}

/// The longest service name an SMS shows: room for any real service's name, none for a
/// paragraph of an SP's own text.
pub const MAX_SERVICE_NAME_CHARS: usize = 20;

/// A service name (an imported VAS description) as an official SMS may carry it under the
/// operator's signature, so that an SP's text cannot put a link in the operator's bill: full-width
/// forms and ideographic full stops are read as their ASCII twins and invisible characters
/// dropped first (they would hide a link from the checks); then control characters and anything
/// that reads as a link (a scheme such as `http://`, `www.`, an address, a domain such as
/// `pay.example.cn`, an IPv4 address) are removed, every other full stop too unless it stands
/// between digits (`2.0`), white space is folded, and the length capped.
pub fn service_name_for_sms(description: &str) -> String {
    text_for_sms(description, MAX_SERVICE_NAME_CHARS)
}

/// The longest note an operator's resolution of a dispute shows in the subscriber's SMS.
pub const MAX_NOTE_CHARS: usize = 60;

/// Any text not written by the operator's templates, cleaned as `service_name_for_sms` cleans
/// a service name and cut to `max_chars`: a rejection's reason typed into a form goes under the
/// operator's signature too.
pub fn text_for_sms(description: &str, max_chars: usize) -> String {
    let normalised = description.chars().filter_map(|c| match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0),
        '\u{3002}' | '\u{FF61}' | '\u{FE52}' | '\u{2024}' => Some('.'),
        c if is_invisible(c) => None,
        c => Some(c),
    });
    let mut kept = String::with_capacity(description.len());
    let mut run = String::new();
    let flush = |run: &mut String, kept: &mut String| {
        if !looks_like_link(run) {
            kept.push_str(run);
        }
        run.clear();
    };
    for c in normalised {
        if c.is_ascii_alphanumeric() || "./:-_~?=&%#@+".contains(c) {
            run.push(c);
            continue;
        }
        flush(&mut run, &mut kept);
        if c.is_control() || c.is_whitespace() {
            if !kept.ends_with(' ') && !kept.is_empty() {
                kept.push(' ');
            }
        } else {
            kept.push(c);
        }
    }
    flush(&mut run, &mut kept);
    // A full stop left between anything but two digits could still end a domain (`evil.中国`).
    let chars: Vec<char> = kept.chars().collect();
    let without_stops: String = chars
        .iter()
        .enumerate()
        .filter(|&(i, &c)| {
            c != '.' || (i > 0 && chars[i - 1].is_ascii_digit() && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        })
        .map(|(_, &c)| c)
        .collect();
    let folded = without_stops.split(' ').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
    folded.chars().take(max_chars).collect::<String>().trim_end().to_string()
}

/// Characters that show nothing but can split or reorder what is shown: zero-width spaces and
/// joiners, direction marks and overrides, the soft hyphen, the byte-order mark, fillers.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
        | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}')
}

/// A run of URL characters that is, or holds, a link.
fn looks_like_link(run: &str) -> bool {
    let lower = run.to_ascii_lowercase();
    if lower.contains("://") || lower.starts_with("www.") || lower.contains('@') {
        return true;
    }
    let bytes = lower.as_bytes();
    // A domain: a dot between a letter or digit and at least two letters.
    let domain = bytes.iter().enumerate().any(|(i, b)| {
        *b == b'.'
            && i > 0
            && bytes[i - 1].is_ascii_alphanumeric()
            && bytes[i + 1..].iter().take_while(|c| c.is_ascii_alphabetic()).count() >= 2
    });
    // An IPv4 address: four groups of digits joined by dots.
    let ipv4 = lower.split(|c: char| !(c.is_ascii_digit() || c == '.')).any(|part| {
        let groups: Vec<&str> = part.split('.').collect();
        groups.len() >= 4 && groups.iter().filter(|g| !g.is_empty()).count() >= 4
    });
    domain || ipv4
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn units_of(part: &str, encoding: Encoding) -> usize {
        part.chars().map(|c| encoding.cost(c)).sum()
    }

    #[test]
    fn service_names_lose_links_and_control_characters_and_are_capped() {
        assert_eq!(service_name_for_sms("手机报"), "手机报");
        assert_eq!(service_name_for_sms("Music Club 2.0"), "Music Club 2.0");
        assert_eq!(service_name_for_sms("退费请点 http://evil.example/pay 办理"), "退费请点 办理");
        assert_eq!(service_name_for_sms("领取红包www.evil.cn"), "领取红包");
        assert_eq!(service_name_for_sms("会员pay.evil.cn续费"), "会员续费");
        assert_eq!(service_name_for_sms("游戏\n【示例电信】\r\t回复"), "游戏 【示例电信】 回复");
        assert_eq!(service_name_for_sms("联系 help@evil.cn"), "联系");
        assert_eq!(service_name_for_sms(&"长".repeat(50)).chars().count(), MAX_SERVICE_NAME_CHARS);
        assert_eq!(service_name_for_sms("\u{7}\u{1b}[31m"), "[31m");
        // Links hidden by invisible characters, full-width forms, other scripts or numbers.
        assert_eq!(service_name_for_sms("点evil\u{200B}.com领"), "点领");
        assert_eq!(service_name_for_sms("退费evil．cn办理"), "退费办理");
        assert_eq!(service_name_for_sms("退费evil。cn办理"), "退费办理");
        assert_eq!(service_name_for_sms("ｗｗｗ．evil．cn"), "");
        assert_eq!(service_name_for_sms("访问evil.中国"), "访问evil中国");
        assert_eq!(service_name_for_sms("例子.中国"), "例子中国");
        assert_eq!(service_name_for_sms("点1.2.3.4/pay领"), "点领");
        assert_eq!(service_name_for_sms("会员\u{202E}nc.live"), "会员");
    }

    #[test]
    fn the_gsm7_alphabet_has_127_basic_and_10_extension_characters() {
        assert_eq!(GSM7_BASIC.chars().count(), 127, "128 codes less the escape itself");
        assert_eq!(
            GSM7_EXTENSION.chars().count(),
            10,
            "form feed, caret, braces, backslash, brackets, tilde, bar, euro"
        );
    }

    #[test]
    fn the_ascii_lookup_agrees_with_the_tables() {
        for byte in 0u8..0x80 {
            let c = char::from(byte);
            assert_eq!(is_gsm7_basic(c), GSM7_BASIC.contains(c), "{c:?} in the basic table");
            assert_eq!(is_gsm7_extension(c), GSM7_EXTENSION.contains(c), "{c:?} in the extension table");
        }
        assert!(is_gsm7_basic('£') && is_gsm7_extension('€') && !is_gsm7_basic('账'));
    }

    #[test]
    fn plain_ascii_letters_are_gsm7_and_chinese_is_ucs2() {
        assert_eq!(encoding_for("Your bill: 58.00 CNY"), Encoding::Gsm7);
        assert_eq!(encoding_for("账单"), Encoding::Ucs2);
        assert_eq!(encoding_for("Zoë"), Encoding::Ucs2, "ë is not in GSM 03.38");
        assert_eq!(encoding_for("é à ñ Ü"), Encoding::Gsm7);
        assert_eq!(encoding_for("`"), Encoding::Ucs2, "the backtick has no GSM code");
    }

    #[test]
    fn gsm7_edges_are_160_single_and_153_per_part() {
        assert_eq!(segment(&"a".repeat(160)).segments(), 1);
        assert_eq!(segment(&"a".repeat(161)).segments(), 2);
        assert_eq!(segment(&"a".repeat(306)).segments(), 2);
        assert_eq!(segment(&"a".repeat(307)).segments(), 3);
        assert_eq!(segment("").segments(), 1);
    }

    #[test]
    fn extension_characters_cost_two_septets_and_stay_whole() {
        assert_eq!(segment(&"€".repeat(80)).units, 160);
        assert_eq!(segment(&"€".repeat(80)).segments(), 1);
        assert_eq!(segment(&"€".repeat(81)).segments(), 2);
        // 152 septets then a two-septet character: it moves whole to the next part.
        let text = format!("{}[{}", "a".repeat(152), "a".repeat(10));
        let s = segment(&text);
        assert_eq!(s.encoding, Encoding::Gsm7);
        assert_eq!(s.parts[0], "a".repeat(152));
        assert!(s.parts[1].starts_with('['));
    }

    #[test]
    fn ucs2_edges_are_70_single_and_67_per_part() {
        assert_eq!(segment(&"账".repeat(70)).segments(), 1);
        assert_eq!(segment(&"账".repeat(71)).segments(), 2);
        assert_eq!(segment(&"账".repeat(134)).segments(), 2);
        assert_eq!(segment(&"账".repeat(135)).segments(), 3);
    }

    #[test]
    fn an_emoji_at_a_part_boundary_is_not_split() {
        let text = format!("{}🦊{}", "账".repeat(66), "账".repeat(10));
        let s = segment(&text);
        assert_eq!(s.units, 66 + 2 + 10);
        assert_eq!(s.parts[0], "账".repeat(66));
        assert!(s.parts[1].starts_with('🦊'));
        assert_eq!(s.segments(), 2);
        // 35 emoji are 70 units: still one message.
        assert_eq!(segment(&"🦊".repeat(35)).segments(), 1);
        assert_eq!(segment(&"🦊".repeat(36)).segments(), 2, "33 emoji fill a 67-unit part");
        assert_eq!(segment(&"🦊".repeat(67)).segments(), 3);
    }

    proptest! {
        #[test]
        fn parts_reassemble_to_the_text_and_respect_their_limits(text in "(\\PC|[€\\[\\]{}~|^\\\\🦊😀]){0,400}") {
            let s = segment(&text);
            prop_assert_eq!(s.parts.concat(), text.clone());
            prop_assert_eq!(s.units, units_of(&text, s.encoding));
            let limit = if s.parts.len() == 1 { s.encoding.single_limit() } else { s.encoding.part_limit() };
            for part in &s.parts {
                prop_assert!(units_of(part, s.encoding) <= limit);
            }
            // Greedy filling: no part could have taken the next part's first character.
            for pair in s.parts.windows(2) {
                let next = pair[1].chars().next().unwrap();
                prop_assert!(units_of(pair[0], s.encoding) + s.encoding.cost(next) > limit);
            }
        }

        #[test]
        fn gsm7_text_needs_the_fewest_possible_parts(text in "[a-z€\\[]{0,700}") {
            let s = segment(&text);
            prop_assert_eq!(s.encoding, Encoding::Gsm7);
            let lower_bound = if s.units <= 160 { 1 } else { s.units.div_ceil(153) };
            prop_assert!(s.segments() >= lower_bound && s.segments() <= lower_bound + s.units / 153);
        }
    }
}
