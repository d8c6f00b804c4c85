//! The bad input corpus (`tests/data/bad/`): every bad row is refused with its line and field,
//! the good rows of the same file are kept, nothing already stored changes; broken templates
//! and configuration stop the program with one line naming the file.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use billpush::import::ImportMode;
use billpush::import::{rejects_path, ImportKind};
use common::{spawn_app, Backend, TestApp};
use sqlx::{Connection, SqliteConnection};

fn corpus(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bad").join(name)
}

struct Case {
    file: &'static str,
    accepted: u64,
    duplicate: u64,
    /// (line, field) of each reject, in file order.
    rejects: &'static [(u64, &'static str)],
}

const CASES: &[Case] = &[
    Case { file: "usage_bom.csv", accepted: 1, duplicate: 0, rejects: &[] },
    Case { file: "usage_broken_quoting.csv", accepted: 1, duplicate: 0, rejects: &[(2, "row")] },
    Case { file: "usage_crlf.csv", accepted: 2, duplicate: 1, rejects: &[(3, "amount_fen")] },
    Case { file: "usage_header_only.csv", accepted: 0, duplicate: 0, rejects: &[] },
    Case { file: "usage_invalid_utf8.csv", accepted: 1, duplicate: 0, rejects: &[(2, "description")] },
    Case { file: "usage_nul.csv", accepted: 1, duplicate: 0, rejects: &[(2, "description")] },
    Case {
        file: "usage_numbers_at_and_past_limits.csv",
        accepted: 3,
        duplicate: 0,
        rejects: &[(3, "amount_fen"), (5, "amount_fen"), (6, "quantity"), (7, "quantity"), (8, "amount_fen")],
    },
    Case { file: "usage_timestamps_without_offset.csv", accepted: 2, duplicate: 0, rejects: &[(2, "occurred_at")] },
    Case { file: "usage_wrong_column_counts.csv", accepted: 2, duplicate: 0, rejects: &[(3, "row"), (4, "row")] },
];

async fn app_with_good_data() -> TestApp {
    let app = spawn_app(Backend::Sqlite).await;
    for (kind, file) in [
        (ImportKind::Plans, "plans.csv"),
        (ImportKind::Subscribers, "subscribers.csv"),
        (ImportKind::Usage, "existing_usage.csv"),
    ] {
        let counts = app.import(kind, &app.copy_input(&corpus(file))).await;
        assert_eq!((counts.accepted, counts.rejected), (1, 0), "{file}");
    }
    app
}

async fn usage_rows(app: &TestApp) -> Vec<(String, i64)> {
    let mut db = SqliteConnection::connect(&app.config.database.url).await.unwrap();
    let rows = sqlx::query_as("SELECT record_id, amount_fen FROM usage_records ORDER BY record_id")
        .fetch_all(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
    rows
}

/// (line, reason) of each row of a rejects file; the rows keep their original bytes, valid
/// UTF-8 or not.
fn rejects_of(input: &Path) -> Vec<(u64, String)> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_path(rejects_path(input)).unwrap();
    reader
        .byte_records()
        .map(|r| {
            let r = r.unwrap();
            (std::str::from_utf8(&r[0]).unwrap().parse().unwrap(), String::from_utf8(r[1].to_vec()).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn each_bad_row_is_refused_with_line_and_field_and_the_good_rows_are_kept() {
    let app = app_with_good_data().await;
    let mut expected_rows = 1;
    for case in CASES {
        let input = app.copy_input(&corpus(case.file));
        let counts = app.import(ImportKind::Usage, &input).await;
        assert_eq!(
            (counts.accepted, counts.duplicate, counts.rejected),
            (case.accepted, case.duplicate, case.rejects.len() as u64),
            "{}",
            case.file
        );
        let rejects = rejects_of(&input);
        let found: Vec<(u64, &str)> =
            rejects.iter().map(|(line, reason)| (*line, reason.split(':').next().unwrap())).collect();
        assert_eq!(found, case.rejects, "{}: {rejects:?}", case.file);
        assert!(rejects.iter().all(|(_, reason)| !reason.contains('\n')), "one-line reasons: {rejects:?}");
        expected_rows += case.accepted as usize;
    }
    let rows = usage_rows(&app).await;
    assert_eq!(rows.len(), expected_rows);
    assert!(rows.contains(&("KEEP1".to_string(), 5800)), "a known record is never changed: {rows:?}");
    assert!(rows.iter().any(|(id, _)| id == "B2"), "the row after a broken quote is kept");
    assert!(rows.contains(&("X1".to_string(), 1_000_000_000)), "an amount at the limit is accepted");
    app.cleanup().await;
}

#[tokio::test]
async fn a_ten_megabyte_field_is_refused_and_the_next_row_kept() {
    let app = app_with_good_data().await;
    let huge = "x".repeat(10 * 1024 * 1024);
    let input = app.write_input(
        "huge.csv",
        &format!(
            "record_id,subscriber_id,occurred_at,category,quantity,amount_fen,service_code,description\n\
             H1,S1,2026-10-02T10:00:00+08:00,voice,3,30,,{huge}\n\
             H2,S1,2026-10-02T11:00:00+08:00,voice,3,30,,ok\n"
        ),
    );
    let counts = app.import(ImportKind::Usage, &input).await;
    assert_eq!((counts.accepted, counts.rejected), (1, 1));
    let rejects = rejects_of(&input);
    assert_eq!(rejects[0].0, 2);
    assert!(rejects[0].1.starts_with("description: is 10485760 characters"), "{rejects:?}");
    app.cleanup().await;
}

#[tokio::test]
async fn an_empty_file_and_a_strict_import_of_a_bad_file_change_nothing() {
    let app = app_with_good_data().await;
    let before = usage_rows(&app).await;

    let error =
        app.app.import(ImportKind::Usage, &app.copy_input(&corpus("usage_empty.csv")), ImportMode::Lenient).await;
    let message = error.unwrap_err().to_string();
    assert!(message.contains("usage_empty.csv") && message.contains("empty"), "{message}");

    let strict =
        app.app.import(ImportKind::Usage, &app.copy_input(&corpus("usage_crlf.csv")), ImportMode::Strict).await;
    let message = strict.unwrap_err().to_string();
    assert!(message.contains("usage_crlf.csv line 3, amount_fen:"), "{message}");
    assert_eq!(usage_rows(&app).await, before, "nothing from a refused file is kept");
    app.cleanup().await;
}

/// Runs `billpush status` with the given configuration file and environment; returns stderr.
fn status_fails(config: Option<&Path>, env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_billpush"));
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    let output = command
        .args(["status", "--month", "2026-10"])
        .env("BILLPUSH_DATABASE__URL", format!("sqlite://{}/db.sqlite", dir.path().display()))
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn bad_configuration_is_refused_in_one_line_naming_file_and_key() {
    for (file, expected) in [
        ("wrong_type.toml", "gateway.rate_per_second"),
        ("unknown_key.toml", "gateway.rate"),
        ("unparsable.toml", "line 1"),
    ] {
        let path = corpus("config").join(file);
        let stderr = status_fails(Some(&path), &[]);
        assert!(stderr.contains(file) && stderr.contains(expected), "{file}: {stderr}");
    }
}

#[test]
fn bad_templates_are_refused_at_start_in_one_line_naming_the_template() {
    for (file, expected) in [("unparsable.hbs", "invalid handlebars syntax"), ("missing_field.hbs", "no_such_field")] {
        // One file overrides its built-in template; it alone is enough to stop the start.
        let templates = tempfile::tempdir().unwrap();
        std::fs::copy(corpus("templates").join(file), templates.path().join("bill.zh.hbs")).unwrap();
        let stderr = status_fails(None, &[("BILLPUSH_SMS__TEMPLATES", templates.path().to_str().unwrap())]);
        assert!(stderr.contains("bill.zh.hbs") && stderr.contains(expected), "{file}: {stderr}");
    }
}
