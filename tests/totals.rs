//! Usage totals, which the import keeps and the build reads in place of the records: bills
//! come out as the records say whenever the totals cannot be trusted for a subscriber (its
//! billing day changed after its usage came in, or the database held usage before it kept
//! totals), and records imported twice are totalled once. The database invariants, checked
//! when each test cleans up, also compare every subscriber's totals with its records.

mod common;

use billpush::import::ImportKind;
use common::{fixture_dir, spawn_app, Backend, TestApp};
use sqlx::Row;

const AS_OF: &str = "2027-01-01T00:00:00+08:00";
const SUBSCRIBERS_HEADER: &str = "subscriber_id,msisdn,name,plan_id,language,billing_day,status,bill_sms\n";
const USAGE_HEADER: &str =
    "record_id,subscriber_id,occurred_at,category,quantity,amount_fen,service_code,description\n";

/// T1's usage around October: with billing day 1 its October bill holds U1, U2 and U4 (800
/// fen); with billing day 15, U2, U3 and U4 (730 fen).
const USAGE: &str = "U1,T1,2026-10-05T10:00:00+08:00,voice,10,100,,
U2,T1,2026-10-20T10:00:00+08:00,data,1000,200,,
U3,T1,2026-11-10T10:00:00+08:00,sms,3,30,,
U4,T1,2026-10-25T10:00:00+08:00,vas,1,500,SP1,游戏包
U5,T1,2026-09-28T10:00:00+08:00,voice,5,50,,
";

async fn app_with_subscriber(backend: Backend, billing_day: u8) -> TestApp {
    let app = spawn_app(backend).await;
    app.import(ImportKind::Plans, &app.copy_input(&fixture_dir().join("plans.csv"))).await;
    import_subscriber(&app, billing_day).await;
    app
}

async fn import_subscriber(app: &TestApp, billing_day: u8) {
    let file = format!("{SUBSCRIBERS_HEADER}T1,13800138000,测试,P58,zh,{billing_day},active,true\n");
    let counts = app.import(ImportKind::Subscribers, &app.write_input("subscribers.csv", &file)).await;
    assert_eq!(counts.rejected, 0);
}

async fn import_usage(app: &TestApp, name: &str, lines: &str) -> (u64, u64, u64) {
    let counts = app.import(ImportKind::Usage, &app.write_input(name, &format!("{USAGE_HEADER}{lines}"))).await;
    (counts.accepted, counts.duplicate, counts.rejected)
}

async fn database(app: &TestApp) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::AnyPool::connect(&app.config.database.url).await.unwrap()
}

/// T1's October bill: total, voice minutes, data KB, SMS count and records.
async fn october_bill(app: &TestApp) -> [i64; 5] {
    app.run("2026-10", AS_OF).await;
    let row = sqlx::query(
        "SELECT total_fen, voice_minutes, data_kb, sms_count, record_count FROM bills
         WHERE subscriber_id = 'T1' AND month = '2026-10'",
    )
    .fetch_one(&database(app).await)
    .await
    .unwrap();
    [0, 1, 2, 3, 4].map(|i| row.get::<i64, _>(i))
}

async fn bases(app: &TestApp) -> Vec<String> {
    sqlx::query_scalar("SELECT DISTINCT basis FROM usage_totals ORDER BY basis")
        .fetch_all(&database(app).await)
        .await
        .unwrap()
}

async fn a_billing_day_changed_after_the_usage_came_in_bills_the_new_period(backend: Backend) {
    let app = app_with_subscriber(backend, 1).await;
    assert_eq!(import_usage(&app, "usage.csv", USAGE).await, (5, 0, 0));
    assert_eq!(bases(&app).await, ["1 Asia/Shanghai"], "the usage was totalled by billing day 1");
    import_subscriber(&app, 15).await;
    // Totalled by day 1, October holds 100 fen of voice that the period from the 15th does not,
    // and lacks the 30 fen of SMS it does.
    assert_eq!(october_bill(&app).await, [730, 0, 1000, 3, 3]);
    app.cleanup().await;
}

#[tokio::test]
async fn a_billing_day_changed_after_the_usage_came_in_bills_the_new_period_on_sqlite() {
    a_billing_day_changed_after_the_usage_came_in_bills_the_new_period(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_billing_day_changed_after_the_usage_came_in_bills_the_new_period_on_postgres() {
    a_billing_day_changed_after_the_usage_came_in_bills_the_new_period(Backend::Postgres).await;
}

async fn records_imported_again_are_totalled_once(backend: Backend) {
    let app = app_with_subscriber(backend, 1).await;
    assert_eq!(import_usage(&app, "usage.csv", USAGE).await, (5, 0, 0));
    assert_eq!(import_usage(&app, "usage-again.csv", USAGE).await, (0, 5, 0));
    // One known record, one new, and one new twice with different amounts: the first stands.
    let overlapping = "U3,T1,2026-11-10T10:00:00+08:00,sms,3,30,,
U6,T1,2026-10-06T10:00:00+08:00,voice,1,7,,
U7,T1,2026-10-07T10:00:00+08:00,voice,2,11,,
U7,T1,2026-10-07T10:00:00+08:00,voice,2,99,,
";
    assert_eq!(import_usage(&app, "overlapping.csv", overlapping).await, (2, 2, 0));
    assert_eq!(october_bill(&app).await, [818, 13, 1000, 0, 5]);
    app.cleanup().await;
}

#[tokio::test]
async fn records_imported_again_are_totalled_once_on_sqlite() {
    records_imported_again_are_totalled_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn records_imported_again_are_totalled_once_on_postgres() {
    records_imported_again_are_totalled_once(Backend::Postgres).await;
}

async fn a_database_that_held_usage_before_it_kept_totals_bills_from_the_records(backend: Backend) {
    let app = app_with_subscriber(backend, 1).await;
    assert_eq!(import_usage(&app, "usage.csv", USAGE).await, (5, 0, 0));
    // As a database upgraded with usage in it: no totals, and nothing saying they are complete.
    let db = database(&app).await;
    sqlx::query("DELETE FROM usage_totals").execute(&db).await.unwrap();
    sqlx::query("DELETE FROM store_facts").execute(&db).await.unwrap();
    assert_eq!(october_bill(&app).await, [800, 10, 1000, 0, 3]);
    app.cleanup().await;
}

#[tokio::test]
async fn a_database_that_held_usage_before_it_kept_totals_bills_from_the_records_on_sqlite() {
    a_database_that_held_usage_before_it_kept_totals_bills_from_the_records(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_database_that_held_usage_before_it_kept_totals_bills_from_the_records_on_postgres() {
    a_database_that_held_usage_before_it_kept_totals_bills_from_the_records(Backend::Postgres).await;
}
