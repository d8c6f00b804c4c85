//! Retention (docs/contract.md §11) on both backends: a purge removes whole months of delivery
//! and usage records once they are older than kept, never a month still in use, never a bill;
//! a dry run and a second purge remove nothing. Each notification keeps its sender port.

mod common;

use std::collections::BTreeMap;

use billpush::disputes::DisputeRequest;
use billpush::domain::period::calendar_month;
use billpush::store::retention::PurgeMode;
use common::{at, month, spawn_app, Backend, TestApp};

const MONTHS: [&str; 5] = ["2026-07", "2026-08", "2026-09", "2026-10", "2026-11"];

/// Rows per month of each table retention removes from, and of the bills it keeps.
async fn census(app: &TestApp) -> BTreeMap<(&'static str, &'static str), i64> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.config.database.url).await.unwrap();
    let mut counts = BTreeMap::new();
    for m in MONTHS {
        let period = calendar_month(month(m), chrono_tz::Asia::Shanghai);
        let (start, end) = (period.start.timestamp_micros(), period.end.timestamp_micros());
        for (table, sql) in [
            ("notifications", format!("SELECT COUNT(*) FROM notifications WHERE month = '{m}'")),
            ("notification_events", format!("SELECT COUNT(*) FROM notification_events WHERE month = '{m}'")),
            (
                "usage_records",
                format!("SELECT COUNT(*) FROM usage_records WHERE occurred_at >= {start} AND occurred_at < {end}"),
            ),
            ("bills", format!("SELECT COUNT(*) FROM bills WHERE month = '{m}'")),
            ("charge_flags", format!("SELECT COUNT(*) FROM charge_flags WHERE month = '{m}'")),
        ] {
            let n: i64 = sqlx::query_scalar(&sql).fetch_one(&pool).await.unwrap();
            counts.insert((table, m), n);
        }
    }
    pool.close().await;
    counts
}

fn removed(report: &billpush::retention::PurgeReport, table: &str) -> u64 {
    report.removed.iter().find(|(t, _)| *t == table).unwrap().1
}

/// The fixture pushed for August, September and October.
async fn three_months_pushed(backend: Backend) -> TestApp {
    let app = spawn_app(backend).await;
    app.import_fixture().await;
    app.run("2026-08", "2026-09-05T00:00:00+08:00").await;
    app.run("2026-09", "2026-10-05T00:00:00+08:00").await;
    app.run("2026-10", "2026-11-05T00:00:00+08:00").await;
    app
}

async fn a_purge_removes_whole_old_months_and_keeps_every_bill(backend: Backend) {
    let app = three_months_pushed(backend).await;
    let before = census(&app).await;
    for m in ["2026-08", "2026-09", "2026-10"] {
        assert!(before[&("notifications", m)] > 0 && before[&("notification_events", m)] > 0, "{m}: {before:?}");
    }
    assert!(before[&("usage_records", "2026-07")] > 0 && before[&("usage_records", "2026-08")] > 0);

    // Every notification pushed keeps the sender port it went out from.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.config.database.url).await.unwrap();
    let senders: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT sender, COUNT(*) FROM notifications WHERE status IN ('accepted', 'delivered') GROUP BY sender",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(senders.len(), 1, "{senders:?}");
    assert_eq!(senders[0].0.as_deref(), Some(app.config.gateway.sender.as_str()));
    assert!(senders[0].1 > 0);

    // August ends at 2026-08-31T16:00Z; 183 days on is 2027-03-02T16:00Z.
    // A second before, only July's usage, a month older, goes.
    let not_yet = app.app.purge(Some(at("2027-03-02T15:59:59Z")), PurgeMode::Remove).await.unwrap();
    assert!(not_yet.deliveries.is_empty(), "{:?}", not_yet.lines());
    assert_eq!(not_yet.usage, [month("2026-07")]);
    for (table, n) in &not_yet.removed {
        let expected = if *table == "usage_records" { before[&("usage_records", "2026-07")] } else { 0 };
        assert_eq!(*n as i64, expected, "{table}");
    }

    let as_of = Some(at("2027-03-02T16:00:00Z"));
    let dry = app.app.purge(as_of, PurgeMode::DryRun).await.unwrap();
    assert_eq!(dry.deliveries, [month("2026-08")]);
    assert_eq!(dry.usage, [month("2026-08")]);
    assert_eq!(removed(&dry, "notifications") as i64, before[&("notifications", "2026-08")]);
    assert_eq!(removed(&dry, "notification_events") as i64, before[&("notification_events", "2026-08")]);
    assert_eq!(removed(&dry, "usage_records") as i64, before[&("usage_records", "2026-08")]);
    assert!(dry.lines().iter().any(|l| l.starts_with("table=notifications would_remove=")), "{:?}", dry.lines());
    let mut after_july = before.clone();
    after_july.insert(("usage_records", "2026-07"), 0);
    assert_eq!(census(&app).await, after_july, "a dry run removes nothing");

    let purged = app.app.purge(as_of, PurgeMode::Remove).await.unwrap();
    assert_eq!(purged.removed, dry.removed);
    let after = census(&app).await;
    for table in ["notifications", "notification_events", "usage_records"] {
        assert_eq!(after[&(table, "2026-08")], 0, "{table}");
        for m in ["2026-09", "2026-10"] {
            assert_eq!(after[&(table, m)], before[&(table, m)], "{table} {m} kept");
        }
    }
    for table in ["bills", "charge_flags"] {
        for m in MONTHS {
            assert_eq!(after[&(table, m)], before[&(table, m)], "{table} {m} kept");
        }
    }

    let again = app.app.purge(as_of, PurgeMode::Remove).await.unwrap();
    assert!(again.removed.iter().all(|(_, n)| *n == 0), "{:?}", again.lines());
    assert_eq!(census(&app).await, after);
    pool.close().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_removes_whole_old_months_and_keeps_every_bill_on_postgres() {
    a_purge_removes_whole_old_months_and_keeps_every_bill(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_removes_whole_old_months_and_keeps_every_bill_on_sqlite() {
    a_purge_removes_whole_old_months_and_keeps_every_bill(Backend::Sqlite).await;
}

async fn months_in_use_are_kept_whatever_their_age(backend: Backend) {
    let app = three_months_pushed(backend).await;
    // A September notification back in the queue, and an open dispute about an October bill.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&app.config.database.url).await.unwrap();
    let queued = sqlx::query(
        "UPDATE notifications SET status = 'queued' WHERE id = (SELECT MIN(id) FROM notifications WHERE month = '2026-09')",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(queued.rows_affected(), 1);
    app.app
        .disputes()
        .await
        .unwrap()
        .open(&DisputeRequest {
            subscriber_id: "S01000001",
            month: month("2026-10"),
            record_ids: None,
            note: "",
            actor: "operator",
        })
        .await
        .unwrap();
    let before = census(&app).await;

    let purged = app.app.purge(Some(at("2028-01-01T00:00:00Z")), PurgeMode::Remove).await.unwrap();
    // September is in flight; October is disputed, and so is the usage of its period, which
    // runs into November.
    assert_eq!(purged.deliveries, [month("2026-08")]);
    assert_eq!(purged.usage, [month("2026-07"), month("2026-08")]);
    let after = census(&app).await;
    for table in ["notifications", "notification_events"] {
        assert_eq!(after[&(table, "2026-08")], 0);
        for m in ["2026-09", "2026-10"] {
            assert_eq!(after[&(table, m)], before[&(table, m)], "{table} {m} kept");
        }
    }
    for m in ["2026-09", "2026-10", "2026-11"] {
        assert_eq!(after[&("usage_records", m)], before[&("usage_records", m)], "usage {m} kept");
    }
    pool.close().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn months_in_use_are_kept_whatever_their_age_on_postgres() {
    months_in_use_are_kept_whatever_their_age(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn months_in_use_are_kept_whatever_their_age_on_sqlite() {
    months_in_use_are_kept_whatever_their_age(Backend::Sqlite).await;
}
