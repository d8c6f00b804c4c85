//! Test harness: builds the real `App` on a fresh database (a SQLite file or a new
//! PostgreSQL database on the local server) with its own outbox, and offers one method per
//! action a user takes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use billpush::app::{App, RunReport};
use billpush::clock::{Clock, ManualClock};
use billpush::config::Config;
use billpush::domain::period::BillingMonth;
use billpush::export::{ExportFormat, ExportKind};
use billpush::import::ImportKind;
use billpush::store::ImportCounts;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection};

pub const FIXTURE_FILES: [(ImportKind, &str); 5] = [
    (ImportKind::Plans, "plans.csv"),
    (ImportKind::Subscribers, "subscribers.csv"),
    (ImportKind::Usage, "usage.csv"),
    (ImportKind::Orders, "orders.csv"),
    (ImportKind::SpamReports, "spam_reports.csv"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/small")
}

/// The PostgreSQL server tests use; they fail (never skip) when it does not answer.
pub fn postgres_server() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().with_timezone(&Utc)
}

pub fn month(s: &str) -> BillingMonth {
    s.parse().unwrap()
}

pub struct TestApp {
    pub app: App,
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    postgres_database: Option<String>,
}

pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.sms.templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    config.gateway.outbox = dir.join("outbox.jsonl");
    config
}

pub struct Options {
    pub backend: Backend,
    /// `None` disables quiet hours.
    pub quiet_hours: Option<(&'static str, &'static str)>,
    pub now: DateTime<Utc>,
}

impl Default for Options {
    fn default() -> Self {
        Options { backend: Backend::Sqlite, quiet_hours: None, now: at("2027-01-02T10:00:00+08:00") }
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(Options { backend, ..Options::default() }).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    let (start, end) = options.quiet_hours.unwrap_or(("00:00", "00:00"));
    config.sms.quiet_start = start.into();
    config.sms.quiet_end = end.into();
    let postgres_database = match options.backend {
        Backend::Sqlite => {
            config.database.url = format!("sqlite://{}", dir.path().join("billpush.db").display());
            None
        }
        Backend::Postgres => {
            let name = format!("billpush_test_{}", uuid::Uuid::new_v4().simple());
            let mut admin = PgConnection::connect(&format!("{}/postgres", postgres_server()))
                .await
                .expect("PostgreSQL must be running on 127.0.0.1:5432 (see README: tests need it)");
            admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
            config.database.url = format!("{}/{name}", postgres_server());
            Some(name)
        }
    };
    let clock = Arc::new(ManualClock::new(options.now));
    let app = App::build_with_clock(config.settings().unwrap(), clock.clone() as Arc<dyn Clock>).await.unwrap();
    TestApp { app, dir, clock, postgres_database }
}

impl TestApp {
    /// Copies an input next to the test's database (rejects files are written beside inputs).
    pub fn copy_input(&self, from: &Path) -> PathBuf {
        let to = self.dir.path().join(from.file_name().unwrap());
        std::fs::copy(from, &to).unwrap();
        to
    }

    pub fn write_input(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    pub async fn import(&self, kind: ImportKind, path: &Path) -> ImportCounts {
        self.app.import(kind, path, false).await.unwrap()
    }

    pub async fn import_fixture(&self) -> Vec<(ImportKind, ImportCounts)> {
        let mut counts = Vec::new();
        for (kind, name) in FIXTURE_FILES {
            let path = self.copy_input(&fixture_dir().join(name));
            counts.push((kind, self.import(kind, &path).await));
        }
        counts
    }

    pub async fn run(&self, month: &str, as_of: &str) -> RunReport {
        self.app.run(month.parse().unwrap(), Some(at(as_of)), false).await.unwrap()
    }

    pub async fn export(&self, kind: ExportKind, month: &str) -> Vec<Value> {
        let mut out = Vec::new();
        self.app.export(kind, month.parse().unwrap(), ExportFormat::Jsonl, &mut out).await.unwrap();
        String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    pub fn outbox(&self) -> Vec<Value> {
        match std::fs::read_to_string(self.dir.path().join("outbox.jsonl")) {
            Ok(text) => text.lines().map(|l| serde_json::from_str(l).unwrap()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Asserts the sink outbox holds exactly `count` messages, no notification twice.
    pub fn assert_outbox_holds_each_once(&self, count: usize) {
        let outbox = self.outbox();
        assert_eq!(outbox.len(), count, "messages in the outbox");
        let mut ids: Vec<&str> = outbox.iter().map(|m| m["id"].as_str().unwrap()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "no notification pushed twice");
    }

    /// Drops the test's PostgreSQL database.
    pub async fn cleanup(self) {
        self.app.store.close().await;
        if let Some(name) = self.postgres_database {
            let mut admin = PgConnection::connect(&format!("{}/postgres", postgres_server())).await.unwrap();
            admin.execute(format!("DROP DATABASE IF EXISTS {name}").as_str()).await.unwrap();
        }
    }
}
