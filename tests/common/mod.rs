//! Test harness: builds the real `App` on a fresh database (a SQLite file or a new
//! PostgreSQL database on the local server) with its own outbox, and offers one method per
//! action a user takes.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use billpush::app::{App, RunReport};
use billpush::billing::BuildMode;
use billpush::clock::{Clock, ManualClock};
use billpush::config::Config;
use billpush::domain::period::BillingMonth;
use billpush::export::{ExportFormat, ExportKind};
use billpush::import::ImportKind;
use billpush::import::ImportMode;
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

/// The tokens the tests present, one per role; `role_tokens` configures them.
pub const GATEWAY: &str = "gateway-secret";
pub const REGULATOR: &str = "regulator-secret";
pub const OPERATOR: &str = "operator-secret";

/// `api.tokens` with one token per role: `gw` (gateway), `reg` (regulator), `desk-7` (operator).
pub fn role_tokens() -> Vec<billpush::config::ApiToken> {
    let token = |name: &str, secret: &str, role: &str| billpush::config::ApiToken {
        name: name.into(),
        token_sha256: billpush::api::hash_token(secret),
        role: role.into(),
    };
    vec![token("gw", GATEWAY, "gateway"), token("reg", REGULATOR, "regulator"), token("desk-7", OPERATOR, "operator")]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/small")
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

/// Asserts an import's counts equal a fixture's `expected/imports.json` entry for its kind.
#[allow(dead_code)] // used by the fixture tests only
pub fn assert_import_counts(kind: ImportKind, got: &ImportCounts, expected: &serde_json::Value) {
    let key = kind.as_str().replace('-', "_");
    let want = &expected[&key];
    let number = |field: &str| want[field].as_u64().unwrap_or_else(|| panic!("{key}.{field} in imports.json"));
    assert_eq!(
        (got.accepted, got.duplicate, got.rejected),
        (number("accepted"), number("duplicate"), number("rejected")),
        "{key} import counts"
    );
}

/// A running `serve`: where it listens, and how to stop it.
pub struct Serving {
    pub address: std::net::SocketAddr,
    pub stop: tokio_util::sync::CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Serving {
    /// Stops the server through its token and waits until it has stopped cleanly.
    #[allow(dead_code)] // not every test binary stops its server itself
    pub async fn finish(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

pub struct TestApp {
    pub app: App,
    pub dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub config: Config,
    postgres_database: Option<String>,
}

/// The RabbitMQ broker tests use; they fail (never skip) when it does not answer.
pub fn rabbitmq_url() -> String {
    std::env::var("TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A queue name of the test's own, so tests never share broker queues.
pub fn unique_queue_name() -> String {
    format!("billpush-test-{}", uuid::Uuid::new_v4().simple())
}

pub fn test_config(dir: &Path) -> Config {
    let mut config = Config::default();
    config.gateway.outbox = dir.join("outbox.jsonl");
    config
}

pub struct Options {
    pub backend: Backend,
    /// `None` disables quiet hours.
    pub quiet_hours: Option<(&'static str, &'static str)>,
    pub now: DateTime<Utc>,
    /// Pushes through RabbitMQ (a queue of the test's own) instead of the in-process queue.
    pub rabbitmq: bool,
    /// Further settings, applied last.
    pub configure: Box<dyn FnOnce(&mut Config)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            backend: Backend::Sqlite,
            quiet_hours: None,
            now: at("2027-01-02T10:00:00+08:00"),
            rabbitmq: false,
            configure: Box::new(|_| {}),
        }
    }
}

/// An app on `backend` that knows every role's token (`role_tokens`), the small fixture
/// imported.
pub async fn fixture_app_with_tokens(backend: Backend) -> TestApp {
    let app = spawn_app_with(Options {
        backend,
        configure: Box::new(|c| c.api.tokens = role_tokens()),
        ..Options::default()
    })
    .await;
    app.import_fixture().await;
    app
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
    if options.rabbitmq {
        config.queue.url = rabbitmq_url();
        config.queue.name = unique_queue_name();
    }
    (options.configure)(&mut config);
    let clock = Arc::new(ManualClock::new(options.now));
    let app = App::build_with_clock(config.clone().settings().unwrap(), clock.clone() as Arc<dyn Clock>).await.unwrap();
    TestApp { app, dir, clock, config, postgres_database }
}

impl TestApp {
    /// `billpush serve` on a port of its own, on the test's configuration and clock.
    pub async fn serve_api(&self) -> Serving {
        let server = self.server_app().await;
        let stop = tokio_util::sync::CancellationToken::new();
        let (bound, address) = tokio::sync::oneshot::channel();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move { billpush::api::serve(server, "127.0.0.1:0", stop, bound).await }
        });
        Serving { address: address.await.unwrap(), stop, task }
    }

    /// Another app on the test's configuration and clock, for `serve` to run: what it records
    /// is timed as the test's own steps are.
    pub async fn server_app(&self) -> App {
        App::build_with_clock(self.config.clone().settings().unwrap(), self.clock.clone() as Arc<dyn Clock>)
            .await
            .unwrap()
    }

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
        self.app.import(kind, path, ImportMode::Lenient).await.unwrap()
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
        self.app.run(month.parse().unwrap(), Some(at(as_of)), BuildMode::Keep).await.unwrap()
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

    /// Writes the test's configuration to a file, for `billpush` processes of its own.
    pub fn config_file(&self) -> PathBuf {
        let path = self.dir.path().join("config.toml");
        std::fs::write(&path, toml::to_string(&self.config).unwrap()).unwrap();
        path
    }

    /// Checks the database invariants, then drops the test's PostgreSQL database and broker
    /// queues. Every test ends here, so every push is followed by the invariant checks.
    pub async fn cleanup(self) {
        let violations = self.app.store.invariant_violations().await.unwrap();
        assert!(violations.is_empty(), "database invariants broken:\n{}", violations.join("\n"));
        self.app.store.close().await;
        if self.config.queue.url.starts_with("amqp") {
            delete_queues(&self.config.queue.name).await;
        }
        if let Some(name) = self.postgres_database {
            let mut admin = PgConnection::connect(&format!("{}/postgres", postgres_server())).await.unwrap();
            admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.unwrap();
        }
    }
}

/// Deletes a test's broker queues: the main queue, the dead-letter queue and every holding queue.
pub async fn delete_queues(name: &str) {
    use lapin::options::QueueDeleteOptions;
    let connection = lapin::Connection::connect(&rabbitmq_url(), lapin::ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut names = vec![name.to_string(), format!("{name}.dead")];
    names.extend((6..=22).map(|bits| format!("{name}.delay.{}", 1u64 << bits)));
    for queue in names {
        // Deleting a queue that was never declared is not an error worth failing a test for.
        let _ = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await;
    }
    let _ = connection.close(200, "test done".into()).await;
}

/// Plans, subscribers and one plan-fee record each, for push tests: `count` subscribers
/// billed on the 1st, numbers 1390000xxxx.
pub fn write_population(dir: &Path, count: usize) -> Vec<(ImportKind, PathBuf)> {
    use std::fmt::Write;
    let mut subscribers = String::from("subscriber_id,msisdn,plan_id,language,billing_day\n");
    let mut usage =
        String::from("record_id,subscriber_id,occurred_at,category,quantity,amount_fen,service_code,description\n");
    for n in 0..count {
        writeln!(subscribers, "P{n:06},1390{n:07},P58,{},1", if n % 10 == 0 { "en" } else { "zh" }).unwrap();
        writeln!(usage, "U{n:06},P{n:06},2026-10-01T00:10:00+08:00,plan_fee,1,5800,,月功能费").unwrap();
    }
    let files = [
        (
            ImportKind::Plans,
            "plans.csv",
            "plan_id,name,monthly_fee_fen,voice_minutes,data_mb,sms_count\nP58,畅享58,5800,300,20480,100\n".to_string(),
        ),
        (ImportKind::Subscribers, "subscribers.csv", subscribers),
        (ImportKind::Usage, "usage.csv", usage),
    ];
    files
        .into_iter()
        .map(|(kind, name, content)| {
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            (kind, path)
        })
        .collect()
}

impl TestApp {
    pub async fn import_population(&self, count: usize) {
        for (kind, path) in write_population(self.dir.path(), count) {
            let counts = self.import(kind, &path).await;
            assert_eq!(counts.rejected, 0, "{path:?}");
        }
    }

    /// Waits (bounded) until no notification of `month` is pending, queued or sending.
    pub async fn wait_until_pushed(&self, month: &str, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        let month = month.parse().unwrap();
        loop {
            let left = self.app.store.unfinished_count(month).await.unwrap();
            if left == 0 {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "{left} notifications still unfinished after {limit:?}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
}

/// Every acceptance at the mock is for a distinct key and a distinct number, and the numbers
/// are exactly `expected`.
pub fn assert_accepted_exactly_once(acceptances: &[billpush::gateway::mock::Acceptance], expected: usize) {
    let keys: std::collections::HashSet<_> = acceptances.iter().map(|a| a.key.as_str()).collect();
    let numbers: std::collections::HashSet<_> = acceptances.iter().map(|a| a.to.as_str()).collect();
    assert_eq!(acceptances.len(), expected, "acceptances at the gateway");
    assert_eq!(keys.len(), expected, "no idempotency key accepted twice");
    assert_eq!(numbers.len(), expected, "no subscriber accepted twice");
}
