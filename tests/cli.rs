//! The `billpush` binary as an operator uses it: output lines, exit codes, one-line errors.

use std::path::Path;
use std::process::{Command, Output};

fn billpush(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_billpush"));
    command
        .current_dir(dir)
        .args(args)
        .env("BILLPUSH_DATABASE__URL", format!("sqlite://{}", dir.join("billpush.db").display()))
        .env("BILLPUSH_SMS__QUIET_START", "00:00")
        .env("BILLPUSH_SMS__QUIET_END", "00:00");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().unwrap()
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/small").join(name)
}

#[test]
fn import_prints_the_summary_line_and_writes_rejects() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["plans.csv", "subscribers.csv"] {
        std::fs::copy(fixture(name), dir.path().join(name)).unwrap();
    }
    let plans = billpush(dir.path(), &["import", "plans", "plans.csv"], &[]);
    assert!(plans.status.success(), "{}", String::from_utf8_lossy(&plans.stderr));
    assert_eq!(String::from_utf8(plans.stdout).unwrap(), "accepted=4 duplicate=0 rejected=0\n");
    let again = billpush(dir.path(), &["import", "plans", "plans.csv"], &[]);
    assert_eq!(String::from_utf8(again.stdout).unwrap(), "accepted=0 duplicate=4 rejected=0\n");

    let subscribers = billpush(dir.path(), &["import", "subscribers", "subscribers.csv"], &[]);
    assert_eq!(String::from_utf8(subscribers.stdout).unwrap(), "accepted=12 duplicate=0 rejected=7 consent_kept=0\n");
    let rejects = std::fs::read_to_string(dir.path().join("subscribers.csv.rejects.csv")).unwrap();
    assert!(rejects.starts_with("line,reason,subscriber_id,msisdn,"), "{rejects}");
    assert!(rejects.contains("\n14,\"msisdn: \"\"12345\"\" is not an E.164 number"), "{rejects}");
    assert!(rejects.contains("\n19,\"subscriber_id: must be 1 to 64 characters"), "{rejects}");
}

#[test]
fn a_missing_column_fails_with_one_line_naming_file_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plans.csv"), "plan_id,name\nP1,x\n").unwrap();
    let out = billpush(dir.path(), &["import", "plans", "plans.csv"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("plans.csv") && stderr.contains("monthly_fee_fen"), "{stderr}");
}

#[test]
fn a_bad_config_value_stops_the_program_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = billpush(dir.path(), &["status", "--month", "2026-10"], &[("BILLPUSH_BILLING__TIMEZONE", "Mars/Base")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("billing.timezone"), "{stderr}");
    assert!(!dir.path().join("billpush.db").exists(), "nothing was opened");

    let out = billpush(dir.path(), &["status", "--month", "2026-10"], &[("BILLPUSH_GATEWAY__RATE_PER_SECOND", "fast")]);
    assert!(String::from_utf8(out.stderr).unwrap().to_lowercase().contains("gateway.rate_per_second"));
}

#[test]
fn run_dry_run_prints_counts_and_samples_and_status_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, name) in
        [("plans", "plans.csv"), ("subscribers", "subscribers.csv"), ("usage", "usage.csv"), ("orders", "orders.csv")]
    {
        std::fs::copy(fixture(name), dir.path().join(name)).unwrap();
        assert!(billpush(dir.path(), &["import", kind, name], &[]).status.success());
    }
    let args = ["run", "--month", "2026-10", "--as-of", "2027-01-01T00:00:00+08:00"];
    let dry = billpush(dir.path(), &[&args[..], &["--dry-run"]].concat(), &[]);
    let stdout = String::from_utf8(dry.stdout).unwrap();
    assert!(
        stdout.contains("dry run") && stdout.contains("billed 11 ") && stdout.matches("sample ").count() == 3,
        "{stdout}"
    );

    let run = billpush(dir.path(), &args, &[]);
    let stdout = String::from_utf8(run.stdout).unwrap();
    // Ten bill SMS, and the flag notice of the opted-out S01000009, whose bill has a flag.
    assert!(stdout.contains("bill sms queued=10 suppressed=1"), "{stdout}");
    assert!(stdout.contains("flag notices 1"), "{stdout}");
    assert!(stdout.contains("pushed accepted=11 failed=0"), "{stdout}");
    let status = billpush(dir.path(), &["status", "--month", "2026-10"], &[]);
    let stdout = String::from_utf8(status.stdout).unwrap();
    assert!(stdout.contains("deliveries accepted=11 suppressed=1"), "{stdout}");
    assert!(stdout.contains("late records 0"), "{stdout}");

    let export = billpush(dir.path(), &["export", "bills", "--month", "2026-10", "--out", "bills.jsonl"], &[]);
    assert!(export.status.success());
    assert_eq!(std::fs::read_to_string(dir.path().join("bills.jsonl")).unwrap().lines().count(), 11);
    let bad = billpush(dir.path(), &["export", "bills", "--month", "2026-13"], &[]);
    assert!(!bad.status.success());
    assert!(String::from_utf8(bad.stderr).unwrap().contains("YYYY-MM"));
}

#[test]
fn demo_in_an_empty_directory_prints_its_summary_and_three_sample_sms() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_billpush")).current_dir(dir.path()).arg("demo").output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("month 2026-10:") && stdout.contains("pushed now:"), "{stdout}");
    assert_eq!(stdout.matches("\nsample to ").count(), 3, "{stdout}");
    assert!(stdout.contains("【示例电信】"), "the built-in templates render: {stdout}");
    let outbox = std::fs::read_to_string(dir.path().join("outbox.jsonl")).unwrap();
    assert!(outbox.lines().count() > 0);
}

#[test]
fn a_template_directory_overrides_the_built_in_templates_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("my-templates");
    std::fs::create_dir(&templates).unwrap();
    std::fs::write(templates.join("bill.zh.hbs"), "{{signature}}本地模板 合计{{total}}元\n").unwrap();
    let config = dir.path().join("billpush.toml");
    std::fs::write(&config, format!("[sms]\ntemplates = {:?}\n", templates.to_str().unwrap())).unwrap();
    for (kind, name) in
        [("plans", "plans.csv"), ("subscribers", "subscribers.csv"), ("usage", "usage.csv"), ("orders", "orders.csv")]
    {
        std::fs::copy(fixture(name), dir.path().join(name)).unwrap();
        assert!(billpush(dir.path(), &["import", kind, name], &[]).status.success());
    }
    // The file comes from BILLPUSH_CONFIG: no --config and no config/ in the working directory.
    let env = [("BILLPUSH_CONFIG", config.to_str().unwrap())];
    let run = billpush(dir.path(), &["run", "--month", "2026-10", "--as-of", "2027-01-01T00:00:00+08:00"], &env);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let outbox = std::fs::read_to_string(dir.path().join("outbox.jsonl")).unwrap();
    let texts: Vec<serde_json::Value> = outbox.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let text = |t: &serde_json::Value| t["text"].as_str().unwrap().to_string();
    assert!(texts.iter().any(|t| text(t).starts_with("【示例电信】本地模板 合计")), "{outbox}");
    assert!(
        texts.iter().any(|t| text(t).starts_with("【示例电信】") && !text(t).contains("本地模板")),
        "English bills keep the built-in template: {outbox}"
    );

    let missing = billpush(dir.path(), &["status", "--month", "2026-10"], &[("BILLPUSH_CONFIG", "nope.toml")]);
    assert!(!missing.status.success());
    assert!(String::from_utf8(missing.stderr).unwrap().contains("nope.toml"));
}

#[test]
fn import_lists_its_kinds_writes_rejects_where_asked_and_fails_when_nothing_was_usable() {
    let dir = tempfile::tempdir().unwrap();
    let help = billpush(dir.path(), &["import", "--help"], &[]);
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("plans") && help.contains("spam-reports"), "{help}");
    let help = String::from_utf8(billpush(dir.path(), &["export", "--help"], &[]).stdout).unwrap();
    assert!(help.contains("deliveries") && help.contains("jsonl") && help.contains("csv"), "{help}");

    std::fs::write(
        dir.path().join("plans.csv"),
        "plan_id,name,monthly_fee_fen,voice_minutes,data_mb,sms_count\nP1,x,-1,0,0,0\n",
    )
    .unwrap();
    let out = billpush(dir.path(), &["import", "plans", "plans.csv", "--rejects", "bad.csv"], &[]);
    assert!(!out.status.success(), "every row rejected is a failure");
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "accepted=0 duplicate=0 rejected=1\n",
        "the summary comes first"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("every row of plans.csv was rejected") && stderr.contains("bad.csv"), "{stderr}");
    assert!(std::fs::read_to_string(dir.path().join("bad.csv")).unwrap().contains("monthly_fee_fen"));
    assert!(!dir.path().join("plans.csv.rejects.csv").exists());
}

#[test]
fn a_setting_variable_with_one_underscore_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let out = billpush(dir.path(), &["status", "--month", "2026-10"], &[("BILLPUSH_DATABASE_URL", "postgres://x")]);
    assert!(out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("BILLPUSH_DATABASE_URL") && stderr.contains("BILLPUSH_DATABASE__URL"), "{stderr}");
}

#[test]
fn healthcheck_exits_0_only_when_what_it_checks_answers() {
    let dir = tempfile::tempdir().unwrap();
    let ok = billpush(dir.path(), &["healthcheck"], &[]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(String::from_utf8(ok.stdout).unwrap(), "ok\n");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let database = format!("postgres://postgres@127.0.0.1:{closed}/billpush");
    let down = billpush(dir.path(), &["healthcheck"], &[("BILLPUSH_DATABASE__URL", &database)]);
    assert!(!down.status.success());
    assert!(String::from_utf8(down.stderr).unwrap().contains("database"));
    let broker = format!("amqp://guest:guest@127.0.0.1:{closed}/%2f");
    let no_broker = billpush(dir.path(), &["healthcheck"], &[("BILLPUSH_QUEUE__URL", &broker)]);
    assert!(!no_broker.status.success(), "the configured broker must answer too");
    let url = format!("http://127.0.0.1:{closed}/healthz");
    assert!(!billpush(dir.path(), &["healthcheck", "--url", &url], &[]).status.success());
}

/// A time billing months cannot hold is refused with one line naming the option, before
/// anything runs (a year before 1971 once panicked in the month finder).
#[test]
fn an_as_of_out_of_range_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for as_of in ["0999-06-01T00:00:00Z", "9999-12-31T23:00:00Z"] {
        let out = billpush(dir.path(), &["alerts", "--as-of", as_of], &[]);
        assert!(!out.status.success());
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains("--as-of") && stderr.contains("between the years 1971 and 9998"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
