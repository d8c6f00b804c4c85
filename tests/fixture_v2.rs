//! The v2 fixture (tests/fixtures/v2): the small fixture's data with spam reports that exercise
//! contract version 2's aggregation (number forms, number types, SP ports and extensions, the
//! 90-day window, calls and SMS, the `95???` pattern). Import counts, every month's bills and
//! every month's `export spam` must equal `expected/` exactly, on SQLite and PostgreSQL.

mod common;

use std::path::PathBuf;

use billpush::export::ExportKind;
use common::{assert_import_counts, spawn_app, Backend, FIXTURE_FILES};
use serde_json::Value;

const MONTHS: [&str; 3] = ["2026-08", "2026-09", "2026-10"];
const AS_OF: &str = "2027-01-01T00:00:00+08:00";
/// The fields of `export spam` the fixture gives; an export may carry more.
const FIELDS: [&str; 10] = [
    "number",
    "number_type",
    "distinct_reporters",
    "reports",
    "reports_in_month",
    "calls",
    "sms",
    "flagged",
    "allowlisted",
    "associated",
];

fn fixture(name: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2").join(name)
}

fn expected_lines(name: &str) -> Vec<Value> {
    std::fs::read_to_string(fixture(&format!("expected/{name}")))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn spam_aggregates_match_expected(backend: Backend) {
    let app = spawn_app(backend).await;
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected/imports.json")).unwrap()).unwrap();
    for (kind, name) in FIXTURE_FILES {
        let got = app.import(kind, &app.copy_input(&fixture(name))).await;
        assert_import_counts(kind, &got, &expected);
    }
    for month in MONTHS {
        app.run(month, AS_OF).await;
        let bills = app.export(ExportKind::Bills, month).await;
        let expected_bills = expected_lines(&format!("bills-{month}.jsonl"));
        assert_eq!(bills.len(), expected_bills.len(), "{month}: bills");
        for want in &expected_bills {
            let got = bills.iter().find(|b| b["subscriber_id"] == want["subscriber_id"]).expect("a bill");
            for field in ["msisdn", "month", "total_fen", "categories", "usage", "flags", "bill_flags"] {
                assert_eq!(got[field], want[field], "{month} {} {field}", want["subscriber_id"]);
            }
        }
        let got: Vec<Value> = app
            .export(ExportKind::Spam, month)
            .await
            .into_iter()
            .map(|row| FIELDS.iter().map(|f| (f.to_string(), row[*f].clone())).collect())
            .collect();
        let want = expected_lines(&format!("spam-{month}.jsonl"));
        assert_eq!(got.len(), want.len(), "{month}: numbers listed");
        for (got, want) in got.iter().zip(&want) {
            assert_eq!(got, want, "{month}: {}", want["number"]);
        }
    }
    app.cleanup().await;
}

#[tokio::test]
async fn the_v2_spam_aggregates_are_exact_on_sqlite() {
    spam_aggregates_match_expected(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_v2_spam_aggregates_are_exact_on_postgres() {
    spam_aggregates_match_expected(Backend::Postgres).await;
}
