//! Persistence on PostgreSQL (production) or SQLite (embedded default).
//!
//! Both backends run the same portable SQL through sqlx's `Any` driver: every column is
//! TEXT or BIGINT (instants as UTC microseconds, money as fen), which `Any` maps exactly on
//! both, so one store serves both and the fixture proves they agree. Each backend keeps its
//! own migrations because their DDL differs in collation.
//!
//! Split by what it holds: `records` (plans, subscribers, orders, spam reports), `usage`
//! (usage records and their monthly totals), `bills` (bills, flags, billing runs),
//! `notifications` (notifications and their events), `leases` (schedulers' leases),
//! `replies` (subscribers' messages and consent), `audit`, and `read_models` (what status,
//! exports and the API read). `batch`, `bulk` and `json_rows` are how rows are written and
//! read in bulk on either backend; `invariants` checks what must always hold.

pub mod alerts;
pub mod audit;
pub mod batch;
pub mod bills;
pub mod bulk;
pub mod console;
pub mod disputes;
mod invariants;
pub mod json_rows;
pub mod leases;
pub mod notifications;
pub mod partitions;
mod read_models;
pub mod records;
pub mod replies;
pub mod reports;
pub mod retention;
pub mod sessions;
pub mod usage;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Transaction};

use crate::domain::period::BillingMonth;

pub use audit::AuditEntry;
pub use read_models::{BillExport, DeliveryExport, DeliveryFilter, FlagExport, MonthStatus, RunSummary};
pub use records::ImportCounts;

pub type Tx = Transaction<'static, Any>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("database holds an unreadable value in {column}: {value:?}")]
    Corrupt { column: &'static str, value: String },
}

impl StoreError {
    /// PostgreSQL rolled the transaction back to break a deadlock, or a serialization
    /// conflict; or SQLite answered busy without waiting, as it does while the next
    /// connection recovers the log of a process killed mid-write: trying the whole
    /// transaction again is safe and usually succeeds.
    pub fn is_lock_conflict(&self) -> bool {
        let StoreError::Database(sqlx::Error::Database(e)) = self else {
            return false;
        };
        if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
            // SQLITE_BUSY and its extended codes carry 5 in the low byte.
            return e.code().and_then(|code| code.parse::<i32>().ok()).is_some_and(|code| code & 0xff == 5);
        }
        matches!(e.code().as_deref(), Some("40P01" | "40001"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a connection (or a transaction, through it) talks to.
    fn of(connection: &sqlx::AnyConnection) -> Backend {
        if connection.backend_name() == "SQLite" {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// PostgreSQL only: native connections for what the portable driver cannot do (`COPY`).
    native: Option<sqlx::PgPool>,
    /// The operator's timezone, where the months of time-keyed records are cut.
    tz: Tz,
    /// The monthly partitions this process made or found, and when (`partitions`).
    partitions: Arc<Mutex<HashMap<(partitions::Partitioned, BillingMonth), std::time::Instant>>>,
}

impl Store {
    /// Connects and brings the schema up to date; `max_connections` bounds the PostgreSQL pool;
    /// `tz` is the operator's timezone, where months of time-keyed records are cut.
    pub async fn connect(url: &str, max_connections: u32, tz: Tz) -> StoreResult<Store> {
        let store = Store::open(url, max_connections, tz).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects and leaves the schema as it is: for a health check, which must neither wait
    /// for nor start a migration.
    pub async fn open(url: &str, max_connections: u32, tz: Tz) -> StoreResult<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let pool = match backend {
            Backend::Sqlite => {
                // Create the file on first use, unless the URL already says how to open it.
                let url = if url.contains("mode=") {
                    url.to_string()
                } else {
                    format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
                };
                // One writer: more connections would only wait for it.
                AnyPoolOptions::new()
                    .max_connections(max_connections.min(4))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL lets exports and status read while a run writes; NORMAL
                            // sync is durable across application crashes in WAL mode.
                            conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;")
                                .await?;
                            Ok(())
                        })
                    })
                    .connect_with(AnyConnectOptions::from_str(&url)?)
                    .await?
            }
            Backend::Postgres => AnyPoolOptions::new().max_connections(max_connections).connect(url).await?,
        };
        let native = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(bulk::native_pool(url)?),
        };
        Ok(Store { pool, backend, native, tz, partitions: Arc::default() })
    }

    async fn migrate(&self) -> StoreResult<()> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await?,
            Backend::Postgres => {
                sqlx::migrate!("migrations/postgres").run(&self.pool).await?;
                self.partition_tables().await?;
            }
        }
        Ok(())
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn begin(&self) -> StoreResult<Tx> {
        Ok(match self.backend {
            // SQLite has one writer. A deferred transaction that reads, then writes, fails at
            // once with "database is locked" when another writer went first; an immediate one
            // takes the write lock at its start and waits its turn (busy_timeout).
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// A connection of its own, for reads beside a transaction.
    pub async fn connection(&self) -> StoreResult<sqlx::pool::PoolConnection<Any>> {
        Ok(self.pool.acquire().await?)
    }

    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(native) = &self.native {
            native.close().await;
        }
    }
}

pub(crate) fn to_micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).expect("stored instants are within chrono's range")
}

/// `$1, $2, …` placeholders for an IN list starting at parameter `first`.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// A store on a fresh SQLite file, and its URL; the file lasts as long as the directory.
#[cfg(test)]
pub(crate) async fn scratch_sqlite_store() -> (tempfile::TempDir, String, Store) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("scratch.db").display());
    let store = Store::connect(&url, 4, chrono_tz::Asia::Shanghai).await.unwrap();
    (dir, url, store)
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;

    use super::*;

    #[tokio::test]
    async fn sqlite_answering_busy_is_a_lock_conflict_worth_retrying() {
        let (_dir, url, store) = scratch_sqlite_store().await;
        let writer = store.begin().await.unwrap();
        let mut impatient = sqlx::AnyConnection::connect(&url).await.unwrap();
        impatient.execute("PRAGMA busy_timeout = 0").await.unwrap();
        let busy: StoreError = impatient.execute("BEGIN IMMEDIATE").await.unwrap_err().into();
        assert!(busy.is_lock_conflict(), "{busy}");
        writer.rollback().await.unwrap();
        let not_null: StoreError =
            sqlx::query("INSERT INTO plans (plan_id) VALUES (NULL)").execute(&mut impatient).await.unwrap_err().into();
        assert!(!not_null.is_lock_conflict(), "{not_null}");
    }

    /// `.cargo/config.toml` builds the bundled SQLite without its process-wide locks; a build
    /// that lost the setting would still work, only slower, so it is checked here.
    #[tokio::test]
    async fn the_bundled_sqlite_takes_no_lock_per_allocation_or_page() {
        let (_dir, _url, store) = scratch_sqlite_store().await;
        let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options").fetch_all(&store.pool).await.unwrap();
        assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "{options:?}");
        assert!(!options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"), "{options:?}");
    }
}
