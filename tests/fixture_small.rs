//! The small fixture (tests/fixtures/small), imported and run for three months: bills, flags
//! and import counts must equal `expected/` exactly, on SQLite and PostgreSQL. (Its spam
//! aggregates are those of contract version 1; `fixture_v2.rs` checks version 2's.)

mod common;

use std::collections::HashMap;

use billpush::export::ExportKind;
use billpush::import::ImportMode;
use billpush::import::{rejects_path, ImportError, ImportKind};
use common::{assert_import_counts, fixture_dir, spawn_app, Backend, TestApp};
use serde_json::Value;

const MONTHS: [&str; 3] = ["2026-08", "2026-09", "2026-10"];
const AS_OF: &str = "2027-01-01T00:00:00+08:00";

fn expected_lines(name: &str) -> Vec<Value> {
    std::fs::read_to_string(fixture_dir().join("expected").join(name))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn rejects_by_key(app: &TestApp, file: &str, key_column: &str) -> HashMap<String, String> {
    let mut reader = csv::Reader::from_path(rejects_path(&app.dir.path().join(file))).unwrap();
    let headers = reader.headers().unwrap().clone();
    let key = headers.iter().position(|h| h == key_column).unwrap();
    reader.records().map(|r| r.unwrap()).map(|r| (r[key].to_string(), r[1].to_string())).collect()
}

async fn fixture_matches_expected(backend: Backend) {
    let app = spawn_app(backend).await;

    let counts = app.import_fixture().await;
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_dir().join("expected/imports.json")).unwrap()).unwrap();
    for (kind, got) in &counts {
        assert_import_counts(*kind, got, &expected);
    }

    // Every rejected row names the field that is wrong.
    let usage = rejects_by_key(&app, "usage.csv", "record_id");
    let field_of = |reason: &str| reason.split(':').next().unwrap().to_string();
    let usage_fields: HashMap<&str, String> = usage.iter().map(|(k, v)| (k.as_str(), field_of(v))).collect();
    for (record, field) in [
        ("BADU1", "occurred_at"),
        ("BADU2", "category"),
        ("BADU3", "quantity"),
        ("BADU4", "amount_fen"),
        ("BADU5", "amount_fen"),
        ("BADU6", "service_code"),
        ("BADU7", "subscriber_id"),
        ("BADU8", "amount_fen"),
        ("BADU9", "amount_fen"),
        ("BADU10", "occurred_at"),
    ] {
        assert_eq!(usage_fields.get(record).map(String::as_str), Some(field), "reason for {record}: {usage:?}");
    }
    assert_eq!(usage.len(), 10, "the duplicated record id is a no-op, not a reject");
    let subscribers = rejects_by_key(&app, "subscribers.csv", "subscriber_id");
    for (id, field) in [
        ("BAD1", "msisdn"),
        ("BAD2", "plan_id"),
        ("BAD3", "language"),
        ("BAD4", "billing_day"),
        ("BAD5", "status"),
        ("", "subscriber_id"),
        ("BAD7", "msisdn"),
    ] {
        assert_eq!(subscribers.get(id).map(|r| field_of(r)), Some(field.to_string()), "reason for subscriber {id:?}");
    }
    let spam = rejects_by_key(&app, "spam_reports.csv", "report_id");
    for (id, field) in [("JBAD1", "reporter_msisdn"), ("JBAD2", "reported_number"), ("JBAD3", "kind")] {
        assert_eq!(spam.get(id).map(|r| field_of(r)), Some(field.to_string()), "reason for report {id}");
    }
    let orders = rejects_by_key(&app, "orders.csv", "subscriber_id");
    assert_eq!(orders.get("NOSUCH").map(|r| field_of(r)), Some("subscriber_id".to_string()));

    // A file with a missing column, and a strict file with one bad row, change nothing:
    // the good rows in them would otherwise alter the expected October totals.
    let missing = app.write_input(
        "missing.csv",
        "record_id,subscriber_id,occurred_at,category,quantity\nX1,S01000000,2026-10-05T10:00:00+08:00,voice,1\n",
    );
    let err = app.app.import(ImportKind::Usage, &missing, ImportMode::Lenient).await.unwrap_err();
    assert!(matches!(err, ImportError::MissingColumns { .. }), "{err}");
    assert!(err.to_string().contains("amount_fen"), "{err}");
    let strict = app.write_input(
        "strict.csv",
        "record_id,subscriber_id,occurred_at,category,quantity,amount_fen\nX2,S01000000,2026-10-05T10:00:00+08:00,voice,1,999\nX3,S01000000,2026-10-05T10:00:00+08:00,voice,1,oops\n",
    );
    let err = app.app.import(ImportKind::Usage, &strict, ImportMode::Strict).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} line 3, amount_fen: \"oops\" is not an integer (--strict: nothing from this file was kept)",
            strict.display()
        )
    );

    for month in MONTHS {
        let report = app.run(month, AS_OF).await;
        assert_eq!(report.build.not_due, 0, "{month}: everything is due as of {AS_OF}");

        let bills: HashMap<String, Value> = app
            .export(ExportKind::Bills, month)
            .await
            .into_iter()
            .map(|b| (b["subscriber_id"].as_str().unwrap().to_string(), b))
            .collect();
        let expected = expected_lines(&format!("bills-{month}.jsonl"));
        assert_eq!(bills.len(), expected.len(), "{month}: number of bills");
        for want in &expected {
            let id = want["subscriber_id"].as_str().unwrap();
            let got = bills.get(id).unwrap_or_else(|| panic!("{month}: no bill for {id}"));
            for field in ["msisdn", "month", "total_fen", "categories", "usage", "flags", "bill_flags"] {
                assert_eq!(got[field], want[field], "{month} {id} {field}");
            }
            let status = match want["expected_delivery"].as_str().unwrap() {
                "pushed" => "accepted",
                other => other,
            };
            assert_eq!(got["status"], status, "{month} {id} delivery");
        }
    }

    // Exactly one SMS per pushed bill, and one flag notice per suppressed bill with flags or a
    // spike (docs/contract.md §3), across all three months.
    let bills: Vec<Value> = MONTHS.iter().flat_map(|m| expected_lines(&format!("bills-{m}.jsonl"))).collect();
    let pushed = bills.iter().filter(|b| b["expected_delivery"] == "pushed").count();
    let notices: Vec<&Value> = bills
        .iter()
        .filter(|b| {
            b["expected_delivery"] == "suppressed"
                && (!b["flags"].as_array().unwrap().is_empty() || !b["bill_flags"].as_array().unwrap().is_empty())
        })
        .collect();
    assert!(!notices.is_empty(), "the fixture has an opted-out subscriber with flagged charges");
    app.assert_outbox_holds_each_once(pushed + notices.len());
    let outbox = app.outbox();
    for bill in notices {
        let masked =
            format!("{}****{}", &bill["msisdn"].as_str().unwrap()[3..6], &bill["msisdn"].as_str().unwrap()[10..]);
        let notice = outbox
            .iter()
            .map(|m| m["text"].as_str().unwrap())
            .find(|t| t.contains(&masked) && t.contains("此为扣费提醒"))
            .unwrap_or_else(|| panic!("a flag notice for {}", bill["subscriber_id"]));
        for flag in bill["flags"].as_array().unwrap() {
            assert!(notice.contains(flag["service_code"].as_str().unwrap()), "{notice}");
        }
        assert!(notice.contains("代收费") && notice.contains("SS"), "{notice}");
    }

    app.cleanup().await;
}

#[tokio::test]
async fn the_small_fixture_gives_the_expected_results_on_sqlite() {
    fixture_matches_expected(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_small_fixture_gives_the_expected_results_on_postgres() {
    fixture_matches_expected(Backend::Postgres).await;
}
