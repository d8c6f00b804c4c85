//! A PostgreSQL database made by the release before monthly partitions (its migrations, its
//! plain tables) moves over to partitions when the store opens it, every row kept: the same
//! rows in the same columns, each in the partition of its month, the history's sequence
//! going on where it was.

mod common;

use std::path::Path;

use billpush::store::partitions::Partitioned;
use billpush::store::Store;
use common::{at, postgres_server};
use sqlx::{Connection, Executor, PgConnection};

/// The last migration of the release before partitions.
const PREVIOUS_RELEASE: &str = "0017_regions.sql";

/// Each table's rows as text, in a stable order, over the columns the previous release had.
const CHECKSUMS: [(&str, &str); 4] = [
    (
        "notifications",
        "SELECT id, subscriber_id, month, kind, msisdn, status, reason, attempts, segments, encoding, text,
                gateway_message_id, created_at, updated_at, lease_until, awaiting_receipt_since, unfinished FROM notifications",
    ),
    ("notification_events", "SELECT notification_id, status, at, seq FROM notification_events"),
    (
        "usage_records",
        "SELECT record_id, subscriber_id, occurred_at, category, quantity, amount_fen, service_code, description
         FROM usage_records",
    ),
    ("mo_messages", "SELECT id, from_msisdn, to_port, text, received_at, subscriber_id, action FROM mo_messages"),
];

async fn checksums(connection: &mut PgConnection) -> Vec<(i64, String)> {
    let mut sums = Vec::new();
    for (_, select) in CHECKSUMS {
        let sum: (i64, String) = sqlx::query_as(&format!(
            "SELECT COUNT(*), COALESCE(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM ({select}) t"
        ))
        .fetch_one(&mut *connection)
        .await
        .unwrap();
        sums.push(sum);
    }
    sums
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_of_the_previous_release_moves_to_partitions_keeping_every_row() {
    let name = format!("billpush_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&format!("{}/postgres", postgres_server()))
        .await
        .expect("PostgreSQL must be running on 127.0.0.1:5432 (see README: tests need it)");
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    let url = format!("{}/{name}", postgres_server());

    // The previous release's schema: its migrations, and none after.
    let old = tempfile::tempdir().unwrap();
    let mut files: Vec<_> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for file in files.iter().filter(|f| f.file_name().unwrap().to_str().unwrap() <= PREVIOUS_RELEASE) {
        std::fs::copy(file, old.path().join(file.file_name().unwrap())).unwrap();
    }
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(old.path()).await.unwrap().run(&pool).await.unwrap();
    pool.close().await;

    // Its rows: three months of notifications with their history (one event whose
    // notification is gone), usage on both sides of a month's edge in Shanghai, replies.
    let mut connection = PgConnection::connect(&url).await.unwrap();
    let micros = |s: &str| at(s).timestamp_micros();
    connection
        .execute(
            format!(
                "INSERT INTO notifications (id, subscriber_id, month, kind, msisdn, status, reason, attempts, segments,
                     encoding, text, gateway_message_id, created_at, updated_at, lease_until)
                 SELECT 'n-' || i, 's-' || i, '2026-0' || (7 + i % 3), 'bill', '+86138' || i,
                        (ARRAY['delivered', 'queued', 'accepted', 'failed'])[1 + i % 4], NULL, i % 3, 1 + i % 2, 'ucs2',
                        '账单 ' || i, 'g-' || i, {t} + i, {t} + 2 * i, NULL
                 FROM generate_series(1, 300) AS i;
                 INSERT INTO notification_events (notification_id, status, at)
                 SELECT 'n-' || i, s, {t} + i FROM generate_series(1, 300) AS i, unnest(ARRAY['pending', 'queued']) AS s;
                 INSERT INTO notification_events (notification_id, status, at) VALUES ('gone', 'queued', {gone});
                 INSERT INTO usage_records (record_id, subscriber_id, occurred_at, category, quantity, amount_fen,
                     service_code, description)
                 SELECT 'r-' || i, 's-' || (i % 50), {t} + i * 86400000000 / 10, 'voice', i, i * 7, '', '通话 ' || i
                 FROM generate_series(1, 1000) AS i;
                 INSERT INTO usage_records VALUES ('edge-aug', 's-1', {aug_last}, 'sms', 1, 10, '', ''),
                                                  ('edge-sep', 's-1', {sep_first}, 'sms', 1, 10, '', '');
                 INSERT INTO mo_messages (id, from_msisdn, to_port, text, received_at, subscriber_id, action)
                 SELECT 'm-' || i, '+86138' || i, '10001', 'TD', {t} + i * 86400000000, 's-' || i, 'optout'
                 FROM generate_series(1, 90) AS i;",
                t = micros("2026-07-01T00:00:00+08:00"),
                gone = micros("2026-06-15T00:00:00Z"),
                aug_last = micros("2026-08-31T23:59:59.999999+08:00"),
                sep_first = micros("2026-09-01T00:00:00+08:00"),
            )
            .as_str(),
        )
        .await
        .unwrap();
    let before = checksums(&mut connection).await;
    assert_eq!(before.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [300, 601, 1002, 90]);
    let last_seq: i64 =
        sqlx::query_scalar("SELECT MAX(seq) FROM notification_events").fetch_one(&mut connection).await.unwrap();

    // This release opens it.
    let store = Store::connect(&url, 2, chrono_tz::Asia::Shanghai).await.unwrap();
    assert_eq!(checksums(&mut connection).await, before, "every row kept, column for column");
    for table in Partitioned::ALL {
        let kind: String = sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE oid = $1::regclass")
            .bind(table.table())
            .fetch_one(&mut connection)
            .await
            .unwrap();
        assert_eq!(kind, "p", "{} is partitioned", table.table());
        let loose: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM ONLY {}", table.table()))
            .fetch_one(&mut connection)
            .await
            .unwrap();
        assert_eq!(loose, 0);
    }
    let months: Vec<String> =
        store.partition_months(Partitioned::Notifications).await.unwrap().iter().map(ToString::to_string).collect();
    assert_eq!(months, ["2026-07", "2026-08", "2026-09"]);

    // The history takes its notification's month; an orphan, the month it happened in.
    let misplaced: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM notification_events e JOIN notifications n ON n.id = e.notification_id
         WHERE e.month <> n.month OR e.tableoid::regclass::text <> 'notification_events_p' || replace(n.month, '-', '_')",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(misplaced, 0);
    let gone: String = sqlx::query_scalar("SELECT month FROM notification_events WHERE notification_id = 'gone'")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(gone, "2026-06");
    // Usage goes by the month of its time in the operator's timezone.
    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT record_id, tableoid::regclass::text FROM usage_records WHERE record_id LIKE 'edge-%' ORDER BY record_id",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    assert_eq!(
        edges,
        [
            ("edge-aug".to_string(), "usage_records_p2026_08".to_string()),
            ("edge-sep".to_string(), "usage_records_p2026_09".to_string())
        ]
    );
    // Each partition's primary key is the table's key alone, so that the planner knows an id
    // is one row even before a partition just filled has statistics (a key of (id, month)
    // had claims read whole partitions).
    let keys: Vec<(String, String)> = sqlx::query_as(
        "SELECT c.relname::text, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
         JOIN pg_inherits h ON h.inhrelid = c.oid
         WHERE i.indisprimary AND h.inhparent IN ('notifications'::regclass, 'mo_messages'::regclass, 'usage_records'::regclass)
         ORDER BY 1",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap();
    // Usage partitions are made for each month a UTC day of the records touches: an empty one
    // may be made at the edge.
    assert!(keys.len() >= 3 + 3 + 4, "{keys:?}");
    for (partition, key) in &keys {
        let column = if partition.starts_with("usage_records") { "record_id" } else { "id" };
        assert!(key.ends_with(&format!("USING btree ({column})")), "{partition}: {key}");
    }
    // Keys hold as before: a known record is refused, the history's sequence goes on.
    let again = sqlx::query(
        "INSERT INTO usage_records SELECT * FROM usage_records WHERE record_id = 'edge-aug' ON CONFLICT DO NOTHING",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    assert_eq!(again.rows_affected(), 0);
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO notification_events (notification_id, month, status, at) VALUES ('n-1', '2026-08', 'delivered', 1) RETURNING seq",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert!(seq > last_seq, "{seq} after {last_seq}");

    // Opened again, nothing moves.
    store.close().await;
    let store = Store::connect(&url, 2, chrono_tz::Asia::Shanghai).await.unwrap();
    assert_eq!(checksums(&mut connection).await[2..], before[2..]);
    store.close().await;
    connection.close().await.unwrap();
    admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.unwrap();
}
