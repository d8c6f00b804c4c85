//! Imports larger than one batch, on both backends. PostgreSQL takes new usage by `COPY` and
//! falls back to `INSERT … ON CONFLICT` for a batch holding a known record: the counts and the
//! stored rows must not depend on which way a batch went in. Orders are upserted: a row counts
//! as accepted only when it is new or changes what is stored.

mod common;

use std::fmt::Write;

use billpush::domain::bill::UsageRecord;
use billpush::domain::category::Category;
use billpush::domain::money::Fen;
use billpush::domain::records::SubscriberUsage;
use billpush::import::ImportKind;
use billpush::store::bulk::Copied;
use billpush::store::partitions::Partitioned;
use common::{spawn_app, Backend};
use sqlx::{Connection, Row};

const HEADER: &str = "record_id,subscriber_id,occurred_at,category,quantity,amount_fen,service_code,description\n";
/// The population's own usage: U000000…U005999, one record per subscriber.
const SUBSCRIBERS: usize = 6000;

fn usage_line(out: &mut String, n: usize) {
    writeln!(out, "U{n:06},P{:06},2026-10-02T10:00:00+08:00,voice,3,{},,通话", n % SUBSCRIBERS, n % 97).unwrap();
}

async fn known_and_new_usage_are_counted_and_stored_exactly(backend: Backend) {
    let app = spawn_app(backend).await;
    app.import_population(SUBSCRIBERS).await;

    // 3,000 known records, then 3,000 new ones, one of them again in a later batch, and a
    // description holding every character `COPY`'s text format gives a meaning to.
    let mut file = String::from(HEADER);
    for n in 3000..9000 {
        usage_line(&mut file, n);
    }
    usage_line(&mut file, 8999);
    let awkward = "tab\there\\N back\\slash\nnew line\r\n话费";
    writeln!(file, "UESC,P000001,2026-10-03T10:00:00+08:00,sms,1,10,,\"{awkward}\"").unwrap();
    let counts = app.import(ImportKind::Usage, &app.write_input("mixed.csv", &file)).await;
    assert_eq!((counts.accepted, counts.duplicate, counts.rejected), (3001, 3001, 0));

    // A file of new records only, three batches of it, goes in whole.
    let mut fresh = String::from(HEADER);
    for n in 9000..21000 {
        usage_line(&mut fresh, n);
    }
    let counts = app.import(ImportKind::Usage, &app.write_input("fresh.csv", &fresh)).await;
    assert_eq!((counts.accepted, counts.duplicate, counts.rejected), (12000, 0, 0));
    // The same file again: every row a duplicate, nothing stored twice.
    let counts = app.import(ImportKind::Usage, &app.write_input("fresh-again.csv", &fresh)).await;
    assert_eq!((counts.accepted, counts.duplicate, counts.rejected), (0, 12000, 0));

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.config.database.url).await.unwrap();
    let stored = sqlx::query("SELECT COUNT(*), CAST(SUM(amount_fen) AS BIGINT) FROM usage_records")
        .fetch_one(&pool)
        .await
        .unwrap();
    let expected_sum: i64 = (0..21000).map(|n| if n < SUBSCRIBERS { 5800 } else { (n % 97) as i64 }).sum::<i64>() + 10;
    assert_eq!((stored.get::<i64, _>(0), stored.get::<i64, _>(1)), (21001, expected_sum));
    let description: String = sqlx::query("SELECT description FROM usage_records WHERE record_id = 'UESC'")
        .fetch_one(&pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(description, awkward);
    pool.close().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_import_counts_known_and_new_records_on_postgres() {
    known_and_new_usage_are_counted_and_stored_exactly(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_import_counts_known_and_new_records_on_sqlite() {
    known_and_new_usage_are_counted_and_stored_exactly(Backend::Sqlite).await;
}

/// A record repeated in a later batch, whichever way each batch goes in: batches copied side
/// by side may each wait for a key the other holds, and a batch refused for a known record is
/// written again beside the copies of the batches after it.
async fn records_repeated_across_batches_are_stored_once(backend: Backend) {
    let app = spawn_app(backend).await;
    app.import_population(SUBSCRIBERS).await;

    // A full batch refused for its known first record, whose new records come again in the
    // short last batch.
    let mut refused = String::from(HEADER);
    usage_line(&mut refused, 0);
    for n in (10_000..14_999).chain([10_000, 10_001, 20_000]) {
        usage_line(&mut refused, n);
    }
    // Two new batches, each holding the other's first and last records in the opposite order,
    // and a short one.
    let mut crossed = String::from(HEADER);
    for n in
        [30_000].into_iter().chain(30_001..34_999).chain([39_999, 39_999]).chain(40_000..44_998).chain([30_000, 50_000])
    {
        usage_line(&mut crossed, n);
    }
    let mut stored_rows = SUBSCRIBERS as u64;
    for (name, file, expected) in [("refused.csv", refused, (5000, 3)), ("crossed.csv", crossed, (9999, 2))] {
        let path = app.write_input(name, &file);
        let counts = tokio::time::timeout(std::time::Duration::from_secs(120), app.import(ImportKind::Usage, &path))
            .await
            .unwrap_or_else(|_| panic!("{name}: the import never finished: a batch waited for one waiting for it"));
        assert_eq!((counts.accepted, counts.duplicate, counts.rejected), (expected.0, expected.1, 0), "{name}");
        stored_rows += expected.0;
    }

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.config.database.url).await.unwrap();
    let stored: i64 = sqlx::query("SELECT COUNT(*) FROM usage_records").fetch_one(&pool).await.unwrap().get(0);
    assert_eq!(stored, stored_rows as i64);
    pool.close().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_repeated_across_batches_are_stored_once_on_postgres() {
    records_repeated_across_batches_are_stored_once(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_repeated_across_batches_are_stored_once_on_sqlite() {
    records_repeated_across_batches_are_stored_once(Backend::Sqlite).await;
}

/// Two writers each holding a record the other needs deadlock, and PostgreSQL breaks the
/// cycle by failing the one that waited first. A batch copied beside another can be that one:
/// it must come back refused, to be written again the portable way, not fail the import.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_failed_by_a_deadlock_is_refused_not_an_error() {
    let app = spawn_app(Backend::Postgres).await;
    app.import_population(SUBSCRIBERS).await;
    let october = common::at("2026-10-02T10:00:00+08:00");
    app.app.store.ensure_partitions(&[Partitioned::Usage], ["2026-10".parse().unwrap()]).await.unwrap();
    // Both writers' records in the same month: a record id is unique within its month.
    let insert = |record_id: &str| {
        format!(
            "INSERT INTO usage_records (record_id, subscriber_id, occurred_at, category, quantity, amount_fen,
                 service_code, description) VALUES ('{record_id}', 'P000001', {}, 'voice', 1, 1, '', '')",
            october.timestamp_micros()
        )
    };
    let mut other = sqlx::PgConnection::connect(&app.config.database.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query(&insert("UX")).execute(&mut other).await.unwrap();

    let row = move |record_id: &str| SubscriberUsage {
        subscriber_id: "P000001".into(),
        record: UsageRecord {
            record_id: record_id.into(),
            occurred_at: october,
            category: Category::Voice,
            quantity: 1,
            amount: Fen::new(1),
            service_code: String::new(),
            description: String::new(),
        },
    };
    let mut copier = app.app.store.copier().await.unwrap().expect("PostgreSQL copies");
    let copy = tokio::spawn(async move { copier.copy_usage(&[row("UY"), row("UX")], chrono_tz::Asia::Shanghai).await });
    // The copy has written UY and waits for the other writer's UX.
    let mut watch = sqlx::PgConnection::connect(&app.config.database.url).await.unwrap();
    let waiting = "SELECT COUNT(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'COPY%'";
    for polls in 0.. {
        let count: i64 = sqlx::query(waiting).fetch_one(&mut watch).await.unwrap().get(0);
        if count == 1 {
            break;
        }
        assert!(polls < 500, "the copy never waited for the other writer");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The other writer now needs UY: a cycle, which the copy, waiting longer, is failed to break.
    sqlx::query(&insert("UY")).execute(&mut other).await.unwrap();
    let copied = copy.await.unwrap().unwrap();
    assert!(matches!(copied, Copied::Refused), "the copy was not refused");
    // The other writer only stood in for a second batch holding the same records: it keeps
    // nothing, as a batch refused keeps nothing.
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    app.cleanup().await;
}

const ORDERS_HEADER: &str = "subscriber_id,service_code,ordered_at,cancelled_at,confirmed,channel\n";

/// Order `n` of the population's subscriber `n`, cancelled when `cancelled` says so.
fn order_line(out: &mut String, n: usize, cancelled: bool) {
    let cancelled_at = if cancelled { "2026-10-05T09:30:00+08:00" } else { "" };
    writeln!(out, "P{n:06},SP{:04},2026-09-01T08:00:00+08:00,{cancelled_at},true,web", n % 7).unwrap();
}

async fn orders_count_as_accepted_only_when_new_or_changed(backend: Backend) {
    let app = spawn_app(backend).await;
    app.import_population(SUBSCRIBERS).await;

    // 2,500 orders: two full statements and a shorter last one, none cancelled.
    let orders = |cancelled: &dyn Fn(usize) -> bool| {
        let mut file = String::from(ORDERS_HEADER);
        for n in 0..2500 {
            order_line(&mut file, n, cancelled(n));
        }
        file
    };
    let counts = app.import(ImportKind::Orders, &app.write_input("orders.csv", &orders(&|_| false))).await;
    assert_eq!((counts.accepted, counts.duplicate, counts.rejected), (2500, 0, 0));
    // The same orders with every hundredth one now cancelled: those 25 change, the rest are known.
    let counts = app.import(ImportKind::Orders, &app.write_input("later.csv", &orders(&|n| n % 100 == 0))).await;
    assert_eq!((counts.accepted, counts.duplicate, counts.rejected), (25, 2475, 0));

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.config.database.url).await.unwrap();
    let stored = sqlx::query(
        "SELECT COUNT(*), COUNT(cancelled_at), CAST(MIN(cancelled_at) AS BIGINT), CAST(MAX(cancelled_at) AS BIGINT)
         FROM vas_orders WHERE subscriber_id LIKE 'P%'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let cancelled_at = chrono::DateTime::parse_from_rfc3339("2026-10-05T09:30:00+08:00").unwrap().timestamp_micros();
    assert_eq!(
        (stored.get::<i64, _>(0), stored.get::<i64, _>(1), stored.get::<i64, _>(2), stored.get::<i64, _>(3)),
        (2500, 25, cancelled_at, cancelled_at)
    );
    pool.close().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_upserted_and_counted_on_postgres() {
    orders_count_as_accepted_only_when_new_or_changed(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_upserted_and_counted_on_sqlite() {
    orders_count_as_accepted_only_when_new_or_changed(Backend::Sqlite).await;
}

/// An import leaves PostgreSQL's planner knowing what it wrote, as after any bulk load: a month
/// built before autovacuum came by was otherwise planned on default guesses, and took more than
/// twice as long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_leaves_postgres_with_statistics_of_what_it_wrote() {
    let app = spawn_app(Backend::Postgres).await;
    app.import_population(SUBSCRIBERS).await;

    let mut tx = app.app.store.begin().await.unwrap();
    for (table, rows) in [("plans", 1), ("subscribers", SUBSCRIBERS as i64), ("usage_records", SUBSCRIBERS as i64)] {
        let planned: i64 =
            sqlx::query(&format!("SELECT CAST(reltuples AS BIGINT) FROM pg_class WHERE oid = '{table}'::regclass"))
                .fetch_one(&mut *tx)
                .await
                .unwrap()
                .get(0);
        assert_eq!(planned, rows, "rows the planner knows {table} to hold");
    }
    drop(tx);
    app.cleanup().await;
}
