//! Property-based fuzzing of everything that reads outside input: CSV rows and whole files,
//! numbers, subscribers' replies, and SMS encoding. Nothing may panic, and what comes out must
//! keep its invariants. `scripts/fuzz.sh` runs these with many more cases
//! (`PROPTEST_CASES`); the test suite runs the default 256 per target.

mod common;

use billpush::domain::msisdn::{normalise_reported_number, Msisdn};
use billpush::domain::reply::parse_reply;
use billpush::domain::sms::{segment, Encoding};
use billpush::import::rows::{self, Columns, Fields};
use billpush::import::ImportMode;
use billpush::import::{rejects_path, ImportKind};
use csv::ByteRecord;
use proptest::prelude::*;

/// A field value: mostly plausible, often at an edge, sometimes any bytes at all.
fn field() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[A-Za-z0-9_]{0,70}".prop_map(String::into_bytes),
        "-?[0-9]{1,20}(\\.[0-9])?".prop_map(String::into_bytes),
        "(\\+?86)?1[3-9][0-9]{9}".prop_map(String::into_bytes),
        "20[0-9]{2}-[01][0-9]-[0-3][0-9][T ][0-2][0-9]:[0-5][0-9]:[0-6][0-9](Z|[+-][01][0-9]:[0-5][0-9])?"
            .prop_map(String::into_bytes),
        prop::sample::select(vec![
            "plan_fee",
            "voice",
            "data",
            "sms",
            "vas",
            "other",
            "discount",
            "adjustment",
            "zh",
            "en",
            "true",
            "false",
            "call",
            "active",
            "closed",
            "9223372036854775807",
            "-9223372036854775808",
            "1000000000",
            "-1000000001",
            "",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..40),
        "\\PC{0,30}".prop_map(String::into_bytes),
    ]
}

fn header(columns: (&[&'static str], &[&'static str])) -> Vec<String> {
    columns.0.iter().chain(columns.1).map(|c| c.to_string()).collect()
}

proptest! {
    #[test]
    fn csv_rows_of_every_kind_parse_or_reject_without_panicking(values in prop::collection::vec(field(), 0..12)) {
        let record = ByteRecord::from(values);
        for (columns, parse) in [
            (rows::PLAN_COLUMNS, (|f: &Fields| rows::parse_plan(f).map(drop)) as fn(&Fields) -> Result<(), rows::RowError>),
            (rows::SUBSCRIBER_COLUMNS, |f| rows::parse_subscriber(f).map(drop)),
            (rows::USAGE_COLUMNS, |f| rows::parse_usage(f).map(drop)),
            (rows::ORDER_COLUMNS, |f| rows::parse_order(f).map(drop)),
            (rows::SPAM_REPORT_COLUMNS, |f| rows::parse_spam_report(f).map(drop)),
        ] {
            let names = header(columns);
            let columns = Columns::map(&names, columns.0, columns.1).unwrap();
            if let Err(e) = parse(&Fields::new(&record, &columns)) {
                // A reason is one line of the rejects file and names a real column.
                prop_assert!(!e.to_string().contains('\n'), "{e}");
                prop_assert!(names.iter().any(|n| n == e.field), "{e}");
            }
        }
    }

    #[test]
    fn usage_rows_that_parse_keep_the_contract(values in prop::collection::vec(field(), 8)) {
        let (required, optional) = rows::USAGE_COLUMNS;
        let columns = Columns::map(&header(rows::USAGE_COLUMNS), required, optional).unwrap();
        let record = ByteRecord::from(values);
        if let Ok(row) = rows::parse_usage(&Fields::new(&record, &columns)) {
            let amount = row.record.amount.get();
            prop_assert!(amount.abs() <= billpush::domain::money::MAX_RECORD_AMOUNT_FEN);
            prop_assert!(row.record.quantity >= 0);
            prop_assert!(!row.record.record_id.is_empty() && !row.subscriber_id.is_empty());
        }
    }

    #[test]
    fn numbers_normalise_to_themselves_or_are_refused(input in prop_oneof!["\\PC{0,24}", "\\+?[0-9 -]{0,20}", any::<String>()]) {
        if let Ok(number) = Msisdn::parse(&input) {
            let digits = number.as_str().strip_prefix('+').expect("stored with +");
            prop_assert!(digits.len() >= 8 && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()));
            prop_assert_eq!(Msisdn::parse(number.as_str()).unwrap(), number.clone());
            prop_assert!(!number.masked().contains(digits));
        }
        if let Ok(reported) = normalise_reported_number(&input) {
            prop_assert!(reported.trim_start_matches('+').bytes().all(|b| b.is_ascii_digit()), "{reported}");
            prop_assert_eq!(normalise_reported_number(&reported).unwrap(), reported.clone());
        }
    }

    #[test]
    fn any_reply_text_parses_without_panicking(text in prop_oneof![any::<String>(), "[ \\t　]*(TD|td|ＴＤ|JB|jb|ＪＢ|XQ|SS)[ 　0-9+]{0,20}"]) {
        let _ = parse_reply(&text);
    }

    #[test]
    fn any_text_segments_into_parts_that_reassemble_within_their_limits(text in prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9 €\\[\\]{}~|^\\\\\u{c}]{100,500}",
        "(\\PC|🦊|😀|𠀀){60,300}",
    ]) {
        let s = segment(&text);
        prop_assert_eq!(s.parts.concat(), text.clone());
        let limit = if s.parts.len() == 1 { s.encoding.single_limit() } else { s.encoding.part_limit() };
        for part in &s.parts {
            let units: usize = part.chars().map(|c| s.encoding.cost(c)).sum();
            prop_assert!(units <= limit, "{units} > {limit}");
            if s.encoding == Encoding::Ucs2 {
                // A part never starts with the second half of a surrogate pair.
                let first = part.encode_utf16().next();
                prop_assert!(!first.is_some_and(|u| (0xDC00..0xE000).contains(&u)));
                prop_assert_eq!(units, part.encode_utf16().count());
            }
        }
    }
}

/// Whole files of arbitrary bytes through the real import (SQLite): no panic, and every row is
/// either imported, a duplicate, or in the rejects file.
#[test]
fn arbitrary_files_import_or_are_refused_without_panicking() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(common::spawn_app(common::Backend::Sqlite));
    runtime.block_on(app.import_population(3));
    let header = "record_id,subscriber_id,occurred_at,category,quantity,amount_fen,service_code,description\n";
    let line = prop_oneof![
        Just("U1,P000001,2026-10-02T10:00:00+08:00,voice,3,30,,\n".to_string()),
        Just("\"U2\",P000002,2026-10-02T10:00:00+08:00,sms,1,10,,\"a \"\"quoted\"\"\nline\"\n".to_string()),
        "[A-Za-z0-9,\"\r\n ]{0,60}",
        prop::collection::vec(any::<u8>(), 0..30).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ];
    let mut runner = proptest::test_runner::TestRunner::default();
    let files = std::sync::atomic::AtomicU64::new(0);
    runner
        .run(&(any::<bool>(), prop::collection::vec(line, 0..12)), |(with_header, lines)| {
            let n = files.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let content = format!("{}{}", if with_header { header } else { "" }, lines.concat());
            let path = app.write_input(&format!("fuzz-{n}.csv"), &content);
            if let Ok(counts) = runtime.block_on(app.app.import(ImportKind::Usage, &path, ImportMode::Lenient)) {
                let rejects = csv::ReaderBuilder::new()
                    .flexible(true)
                    .from_path(rejects_path(&path))
                    .unwrap()
                    .byte_records()
                    .count() as u64;
                prop_assert_eq!(counts.rejected, rejects);
            }
            Ok(())
        })
        .unwrap();
    runtime.block_on(app.cleanup());
}
