//! The monthly run: due dates, frozen bills, re-runs, dry runs, a worker's claim overtaking
//! its scheduler, quiet hours, late records, CSV exports and template checks. On the embedded
//! default, and on PostgreSQL too where the two backends take different paths.

mod common;

use std::time::Duration;

use billpush::billing::BuildMode;
use billpush::clock::Clock;
use billpush::config::Config;
use billpush::domain::delivery::Idempotency;
use billpush::export::{ExportFormat, ExportKind};
use billpush::render::Renderer;
use billpush::store::notifications::ClaimTerms;
use billpush::store::partitions::Partitioned;
use common::{at, month, spawn_app, spawn_app_with, Backend, Options};

/// What a worker claims on at `now`, its lease running to `lease_until`, usage alerts raised
/// within the last day still sent.
fn terms(
    now: chrono::DateTime<chrono::Utc>,
    lease_until: chrono::DateTime<chrono::Utc>,
    idempotency: Idempotency,
) -> ClaimTerms<'static> {
    ClaimTerms { now, lease_until, idempotency, alerts_since: now - chrono::Duration::days(1), sender: "10001" }
}

async fn a_partial_run_bills_only_due_subscribers_and_the_rerun_sends_nothing_twice(backend: Backend) {
    let app = spawn_app(backend).await;
    app.import_fixture().await;

    // As of Nov 10th, periods starting on the 1st (ended Nov 1st + 24h grace) are due;
    // those starting on the 15th, 21st and 28th end in November and are not.
    let first = app.run("2026-10", "2026-11-10T00:00:00+08:00").await;
    assert_eq!(first.build.billed, 5, "billing day 1 subscribers");
    assert_eq!(first.build.not_due, 6);
    assert_eq!(
        first.build.next_due_at,
        Some(at("2026-11-16T00:00:00+08:00")),
        "day 15 period ends Nov 15th, plus grace"
    );
    assert_eq!(first.push.accepted, 5);

    // Exactly at the due instant the day-15 subscribers become due, nobody else.
    let second = app.run("2026-10", "2026-11-16T00:00:00+08:00").await;
    assert_eq!((second.build.billed, second.build.not_due), (2, 4));

    let last = app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    assert_eq!((last.build.billed, last.build.not_due), (4, 0));
    let again = app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    assert_eq!(
        (again.build.billed, again.queued, again.push.accepted),
        (0, 0, 0),
        "a frozen month sends nothing again"
    );

    let bills = app.export(ExportKind::Bills, "2026-10").await;
    assert_eq!(bills.len(), 11);
    // 11 bills, one subscriber opted out, whose flagged charge still gets a flag notice.
    app.assert_outbox_holds_each_once(11);
    app.cleanup().await;
}

#[tokio::test]
async fn a_partial_run_bills_only_due_subscribers_and_the_rerun_sends_nothing_twice_on_sqlite() {
    a_partial_run_bills_only_due_subscribers_and_the_rerun_sends_nothing_twice(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_partial_run_bills_only_due_subscribers_and_the_rerun_sends_nothing_twice_on_postgres() {
    a_partial_run_bills_only_due_subscribers_and_the_rerun_sends_nothing_twice(Backend::Postgres).await;
}

/// On PostgreSQL the dry run writes its pages by `INSERT` inside its one transaction, the real
/// run by `COPY`: both ways are exercised here.
async fn a_dry_run_previews_and_keeps_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    app.import_fixture().await;
    let preview =
        app.app.run(month("2026-10"), Some(at("2027-01-01T00:00:00+08:00")), BuildMode::DryRun).await.unwrap();
    assert_eq!(preview.build.billed, 11);
    assert_eq!(preview.build.samples.len(), 3);
    assert!(preview.build.samples.iter().any(|s| s.language == billpush::domain::category::Language::En));
    assert_eq!(preview.build.by_segments.values().sum::<u64>(), 11);
    assert!(app.export(ExportKind::Bills, "2026-10").await.is_empty(), "no bill kept");
    assert!(app.outbox().is_empty(), "nothing sent");
    assert_eq!(app.app.status(month("2026-10")).await.unwrap().bills, 0);

    let real = app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    assert_eq!(real.build.billed, 11, "the dry run did not freeze anything");
    assert_eq!(real.build.total_fen, preview.build.total_fen);
    assert_eq!(real.build.by_segments, preview.build.by_segments);
    assert_eq!(app.export(ExportKind::Bills, "2026-10").await.len(), 11);
    // The dry run renders each bill as it is built, the real run from the bill as stored.
    let sent: Vec<String> = app.outbox().iter().map(|m| m["text"].as_str().unwrap().to_string()).collect();
    for sample in &preview.build.samples {
        assert!(sent.contains(&sample.text), "previewed SMS not sent as previewed: {}", sample.text);
    }
    app.cleanup().await;
}

#[tokio::test]
async fn a_dry_run_previews_and_keeps_nothing_on_sqlite() {
    a_dry_run_previews_and_keeps_nothing(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_dry_run_previews_and_keeps_nothing_on_postgres() {
    a_dry_run_previews_and_keeps_nothing(Backend::Postgres).await;
}

/// A build writes the month's bills first and their notifications in a second pass. When the
/// second pass fails (here the database refuses every notification), the bills stay built and
/// nothing is sent; the next run builds nothing again and sends each bill's SMS once, exactly
/// as a run that never failed would have.
async fn a_build_that_fails_between_its_passes_sends_every_bill_once_on_the_next_run(backend: Backend) {
    use sqlx::Connection;
    let app = spawn_app(backend).await;
    app.import_fixture().await;
    let preview =
        app.app.run(month("2026-10"), Some(at("2027-01-01T00:00:00+08:00")), BuildMode::DryRun).await.unwrap();
    let mut conn = sqlx::AnyConnection::connect(&app.config.database.url).await.unwrap();
    let refuse = match backend {
        Backend::Sqlite => vec![
            "CREATE TRIGGER refuse_notifications BEFORE INSERT ON notifications
             BEGIN SELECT RAISE(ABORT, 'notifications refused'); END",
        ],
        Backend::Postgres => vec![
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'notifications refused'; END $$",
            "CREATE TRIGGER refuse_notifications BEFORE INSERT ON notifications
             FOR EACH ROW EXECUTE FUNCTION refuse()",
        ],
    };
    for statement in refuse {
        sqlx::query(statement).execute(&mut conn).await.unwrap();
    }
    let failed = app.app.run(month("2026-10"), Some(at("2027-01-01T00:00:00+08:00")), BuildMode::Keep).await;
    assert!(format!("{:#}", failed.unwrap_err()).contains("notifications refused"));
    assert_eq!(app.export(ExportKind::Bills, "2026-10").await.len(), 11, "the bills were written");
    assert!(app.export(ExportKind::Deliveries, "2026-10").await.is_empty());
    assert!(app.outbox().is_empty(), "nothing sent");

    let drop = match backend {
        Backend::Sqlite => "DROP TRIGGER refuse_notifications",
        Backend::Postgres => "DROP TRIGGER refuse_notifications ON notifications",
    };
    sqlx::query(drop).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let next = app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    assert_eq!(next.build.billed, 0, "the bills were built once");
    assert_eq!(next.build.by_segments, preview.build.by_segments, "every bill's SMS rendered");
    // Ten bill SMS and the opted-out subscriber's flag notice.
    assert_eq!(next.push.accepted, 11);
    app.assert_outbox_holds_each_once(11);
    let sent: Vec<String> = app.outbox().iter().map(|m| m["text"].as_str().unwrap().to_string()).collect();
    for sample in &preview.build.samples {
        assert!(sent.contains(&sample.text), "SMS not sent as previewed: {}", sample.text);
    }
    app.cleanup().await;
}

#[tokio::test]
async fn a_build_that_fails_between_its_passes_sends_every_bill_once_on_the_next_run_on_sqlite() {
    a_build_that_fails_between_its_passes_sends_every_bill_once_on_the_next_run(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_build_that_fails_between_its_passes_sends_every_bill_once_on_the_next_run_on_postgres() {
    a_build_that_fails_between_its_passes_sends_every_bill_once_on_the_next_run(Backend::Postgres).await;
}

/// A worker can take a queue message before its scheduler has marked the notifications
/// `queued` (the scheduler marks after the broker's confirm). Each history must still read
/// `queued` then `sending`, once each, whether the claim found the row `pending` or `queued`.
async fn a_claim_that_overtakes_the_scheduler_keeps_every_step_once(backend: Backend) {
    use billpush::store::notifications::{claim_for_sending, mark_queued};
    use sqlx::Connection;
    let app = spawn_app(backend).await;
    app.app.store.ensure_partitions(&Partitioned::DELIVERIES, ["2026-10".parse().unwrap()]).await.unwrap();
    let built = at("2027-01-02T09:00:00+08:00").timestamp_micros();
    let mut conn = sqlx::AnyConnection::connect(&app.config.database.url).await.unwrap();
    for (id, status) in [("n-pending", "pending"), ("n-queued", "queued")] {
        sqlx::query(
            "INSERT INTO notifications (id, subscriber_id, month, kind, msisdn, status, attempts, segments, encoding,
                 text, created_at, updated_at)
             VALUES ($1, $2, '2026-10', 'bill', '+8613800138000', $3, 0, 1, 'gsm7', 'hi', $4, $4)",
        )
        .bind(id)
        .bind(format!("s-{id}"))
        .bind(status)
        .bind(built)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    sqlx::query("INSERT INTO notification_events (notification_id, month, status, at) VALUES ('n-queued', '2026-10', 'queued', $1)")
        .bind(built)
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();

    let ids = ["n-pending", "n-queued"].map(String::from);
    let now = at("2027-01-02T10:00:00+08:00");
    let lease = now + chrono::Duration::minutes(5);
    let mut tx = app.app.store.begin().await.unwrap();
    let claim = claim_for_sending(&mut tx, &ids, &terms(now, lease, Idempotency::Honoured)).await.unwrap();
    // The scheduler's own marking comes too late to change anything.
    mark_queued(&mut tx, &ids, now + chrono::Duration::seconds(1)).await.unwrap();
    tx.commit().await.unwrap();
    let claimed: Vec<(&str, i64)> = claim.claimed.iter().map(|row| (row.id.as_str(), row.attempts)).collect();
    assert_eq!(claimed, [("n-pending", 1), ("n-queued", 1)]);

    // A redelivery within the lease claims nothing and records nothing.
    let mut tx = app.app.store.begin().await.unwrap();
    let again = claim_for_sending(
        &mut tx,
        &ids,
        &ClaimTerms { alerts_since: now, ..terms(now + chrono::Duration::seconds(2), lease, Idempotency::Honoured) },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(again.claimed.is_empty());
    assert_eq!(again.busy.len(), 2);

    let history = app.app.store.delivery_events(&ids).await.unwrap();
    for id in &ids {
        let steps: Vec<&str> = history[id].iter().map(|(status, _)| status.as_str()).collect();
        assert_eq!(steps, ["queued", "sending"], "{id}");
    }
    assert_eq!(history["n-pending"][0].1, now, "the queued step is the claim's");
    assert_eq!(app.app.store.invariant_violations().await.unwrap(), Vec::<String>::new());
    app.cleanup().await;
}

#[tokio::test]
async fn a_claim_that_overtakes_the_scheduler_keeps_every_step_once_on_sqlite() {
    a_claim_that_overtakes_the_scheduler_keeps_every_step_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_claim_that_overtakes_the_scheduler_keeps_every_step_once_on_postgres() {
    a_claim_that_overtakes_the_scheduler_keeps_every_step_once(Backend::Postgres).await;
}

/// On SQLite a queue message's notifications are claimed in one statement outside a
/// transaction when every one of them can be: then all move, or none does and the claim
/// within a transaction sorts them out. Never some: the worker could not tell which.
#[tokio::test]
async fn a_claim_at_once_takes_every_notification_or_none() {
    use billpush::store::notifications::claim_all_at_once;
    use sqlx::Connection;
    let app = spawn_app(Backend::Sqlite).await;
    let now = at("2027-01-02T10:00:00+08:00");
    let created = now - chrono::Duration::hours(1);
    let micros = |t: chrono::DateTime<chrono::Utc>| t.timestamp_micros();
    let mut conn = sqlx::AnyConnection::connect(&app.config.database.url).await.unwrap();
    let rows = [
        ("n-queued-1", "queued", None, 0),
        ("n-queued-2", "queued", None, 0),
        ("n-leased", "sending", Some(now + chrono::Duration::minutes(1)), 1),
        ("n-stale", "sending", Some(now - chrono::Duration::minutes(1)), 2),
    ];
    for (id, status, lease, attempts) in rows {
        sqlx::query(
            "INSERT INTO notifications (id, subscriber_id, month, kind, msisdn, status, attempts, segments, encoding,
                 text, created_at, updated_at, lease_until)
             VALUES ($1, $2, '2026-10', 'bill', '+8613800138000', $3, $4, 1, 'gsm7', $5, $6, $6, $7)",
        )
        .bind(id)
        .bind(format!("s-{id}"))
        .bind(status)
        .bind(attempts)
        .bind(format!("text of {id}"))
        .bind(micros(created))
        .bind(lease.map(micros))
        .execute(&mut conn)
        .await
        .unwrap();
        let steps = if status == "sending" { &["queued", "sending"][..] } else { &["queued"][..] };
        for step in steps {
            sqlx::query(
                "INSERT INTO notification_events (notification_id, month, status, at) VALUES ($1, '2026-10', $2, $3)",
            )
            .bind(id)
            .bind(*step)
            .bind(micros(created))
            .execute(&mut conn)
            .await
            .unwrap();
        }
    }
    let ids = |names: &[&str]| names.iter().map(|name| name.to_string()).collect::<Vec<_>>();
    let lease = now + chrono::Duration::minutes(5);
    let store = &app.app.store;
    async fn states(conn: &mut sqlx::AnyConnection) -> sqlx::Result<Vec<(String, String, i64)>> {
        sqlx::query_as("SELECT id, status, attempts FROM notifications ORDER BY id").fetch_all(conn).await
    }
    let before = states(&mut conn).await.unwrap();

    // One of three is being sent under a live lease: none moves.
    let some_leased = ids(&["n-queued-1", "n-queued-2", "n-leased"]);
    assert!(claim_all_at_once(store, &some_leased, &terms(now, lease, Idempotency::Honoured)).await.unwrap().is_none());
    // Without a gateway's idempotency a stale lease is not resent but made `unknown`: none moves.
    let with_stale = ids(&["n-stale", "n-queued-1"]);
    assert!(claim_all_at_once(store, &with_stale, &terms(now, lease, Idempotency::NotHonoured))
        .await
        .unwrap()
        .is_none());
    assert_eq!(states(&mut conn).await.unwrap(), before);

    let claimed =
        claim_all_at_once(store, &with_stale, &terms(now, lease, Idempotency::Honoured)).await.unwrap().unwrap();
    let claimed: Vec<_> = claimed.iter().map(|row| (row.id.as_str(), row.text.as_str(), row.attempts)).collect();
    assert_eq!(claimed, [("n-queued-1", "text of n-queued-1", 1), ("n-stale", "text of n-stale", 3)]);
    let after: Vec<(String, String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT id, status, attempts, lease_until FROM notifications WHERE status = 'sending' ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let leased = |id: &str, attempts, until| (id.to_string(), "sending".to_string(), attempts, Some(micros(until)));
    let live = now + chrono::Duration::minutes(1);
    assert_eq!(after, [leased("n-leased", 1, live), leased("n-queued-1", 1, lease), leased("n-stale", 3, lease)]);
    let history = store.delivery_events(&ids(&["n-queued-1", "n-stale", "n-queued-2"])).await.unwrap();
    let steps = |id: &str| history[id].iter().map(|(status, at)| (status.as_str(), *at)).collect::<Vec<_>>();
    assert_eq!(steps("n-queued-1"), [("queued", created), ("sending", now)]);
    assert_eq!(steps("n-stale"), [("queued", created), ("sending", created), ("sending", now)]);
    assert_eq!(steps("n-queued-2"), [("queued", created)]);
    conn.close().await.unwrap();
    app.cleanup().await;
}

#[tokio::test]
async fn messages_built_during_quiet_hours_wait_until_they_end() {
    // 22:30 in Shanghai, inside the default 21:00-08:00 quiet hours.
    let app = spawn_app_with(Options {
        quiet_hours: Some(("21:00", "08:00")),
        now: at("2027-01-02T22:30:00+08:00"),
        ..Options::default()
    })
    .await;
    app.import_fixture().await;
    let report = app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    assert_eq!(
        app.clock.waits(),
        [at("2027-01-03T08:00:00+08:00")],
        "the worker waited for the end of quiet hours once"
    );
    // Ten bill SMS and the opted-out subscriber's flag notice.
    assert_eq!(report.push.accepted, 11);
    let deliveries = app.export(ExportKind::Deliveries, "2026-10").await;
    let accepted_at: Vec<_> = deliveries
        .iter()
        .filter(|d| d["status"] == "accepted")
        .map(|d| d["updated_at"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(accepted_at.len(), 11);
    assert!(
        accepted_at.iter().all(|t| t.as_str() >= "2027-01-03T00:00:00"),
        "accepted only after 08:00 local: {accepted_at:?}"
    );
    app.cleanup().await;
}

#[tokio::test]
async fn records_arriving_after_a_bill_is_frozen_are_counted_late_and_change_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    app.import_fixture().await;
    app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    let before = app.export(ExportKind::Bills, "2026-10").await;
    let late = app.write_input(
        "late.csv",
        "record_id,subscriber_id,occurred_at,category,quantity,amount_fen\nLATE1,S01000000,2026-10-30T10:00:00+08:00,voice,5,500\nLATE2,S01000000,2026-11-30T10:00:00+08:00,voice,5,500\n",
    );
    app.import(billpush::import::ImportKind::Usage, &late).await;
    let status = app.app.status(month("2026-10")).await.unwrap();
    assert_eq!(status.late_records, 1, "only the record inside a frozen period is late");
    app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    assert_eq!(app.export(ExportKind::Bills, "2026-10").await, before, "frozen bills do not move");
    app.cleanup().await;
}

#[tokio::test]
async fn csv_exports_neutralise_formula_cells_but_keep_numbers() {
    let app = spawn_app(Backend::Sqlite).await;
    app.import_fixture().await;
    app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    let mut out = Vec::new();
    app.app.export(ExportKind::Bills, month("2026-10"), ExportFormat::Csv, &mut out).await.unwrap();
    let mut reader = csv::Reader::from_reader(out.as_slice());
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let first = rows.iter().find(|r| &r[column("subscriber_id")] == "S01000000").unwrap();
    assert_eq!(&first[column("msisdn")], "'+8614611178002");
    assert_eq!(&first[column("discount")], "-157", "a number is not a formula");
    assert_eq!(&first[column("total_fen")], "9405");
    assert_eq!(rows.len(), 11);
    app.cleanup().await;
}

#[test]
fn a_template_naming_a_missing_field_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Config::default().settings().unwrap();
    let load = || Renderer::load(Some(dir.path()), "示例电信", "10000", settings.timezone, 4);
    assert!(load().is_ok(), "an empty directory overrides nothing: the built-in templates load");

    std::fs::write(dir.path().join("bill.en.short.hbs"), "{{signature}} total {{totl}}").unwrap();
    let err = load().err().expect("a missing field is refused");
    assert!(err.to_string().contains("bill.en.short.hbs"), "{err}");

    std::fs::write(dir.path().join("bill.en.short.hbs"), "{{signature}} {{#if total}}").unwrap();
    assert!(load().err().expect("a parse error is refused").to_string().contains("bill.en.short.hbs"));

    std::fs::write(dir.path().join("bill.en.short.hbs"), "Bill {{total}} {{signature}}").unwrap();
    assert!(load().err().expect("the signature must come first").to_string().contains("signature"));

    std::fs::remove_file(dir.path().join("bill.en.short.hbs")).unwrap();
    assert!(load().is_ok(), "without the file the built-in template serves again");
}

/// The steps a push takes for every SMS before the gateway answers, the publish, the claim and
/// a release for retry, change no indexed column on PostgreSQL: each is a heap-only update that
/// leaves the notification's indexes alone. An index on `status` or `updated_at`, or one that
/// tells pending notifications from queued ones, would make each rewrite them all.
#[tokio::test]
async fn a_publish_a_claim_and_a_release_for_retry_update_the_row_in_place_on_postgres() {
    use billpush::store::notifications::{claim_for_sending, mark_queued, release_for_retry};
    let app = spawn_app(Backend::Postgres).await;
    app.app.store.ensure_partitions(&Partitioned::DELIVERIES, ["2026-10".parse().unwrap()]).await.unwrap();
    let store = &app.app.store;
    let built = at("2027-01-02T09:00:00+08:00");
    let mut tx = store.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO notifications (id, subscriber_id, month, kind, msisdn, status, attempts, segments, encoding,
             text, created_at, updated_at)
         SELECT 'n-' || i, 's-' || i, '2026-10', 'bill', '+8613800138000', 'pending', 0, 1, 'gsm7', 'hi', $1, $1
         FROM generate_series(1, 3) AS i",
    )
    .bind(built.timestamp_micros())
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("INSERT INTO notification_events (notification_id, month, status, at) SELECT id, month, status, updated_at FROM notifications")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // This transaction's own counts, not yet sent to the statistics collector.
    let updates =
        "SELECT CAST(SUM(n_tup_upd) AS BIGINT), CAST(SUM(n_tup_hot_upd) AS BIGINT) FROM pg_stat_xact_user_tables
                   WHERE relname LIKE 'notifications_p%'";

    let ids = ["n-1", "n-2", "n-3"].map(String::from);
    let now = built + chrono::Duration::hours(1);
    let mut tx = store.begin().await.unwrap();
    mark_queued(&mut tx, &ids, built + chrono::Duration::minutes(1)).await.unwrap();
    let published: (i64, i64) = sqlx::query_as(updates).fetch_one(&mut *tx).await.unwrap();
    let claim =
        claim_for_sending(&mut tx, &ids, &terms(now, now + chrono::Duration::minutes(5), Idempotency::Honoured))
            .await
            .unwrap();
    let claimed: (i64, i64) = sqlx::query_as(updates).fetch_one(&mut *tx).await.unwrap();
    release_for_retry(&mut tx, &ids[..1], "gateway busy", now).await.unwrap();
    let released: (i64, i64) = sqlx::query_as(updates).fetch_one(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();

    assert_eq!(published, (3, 3), "(updates, heap-only updates) of the publish");
    assert_eq!(claim.claimed.len(), 3);
    assert_eq!(claimed, (6, 6), "(updates, heap-only updates) after the claim");
    assert_eq!(released, (7, 7), "(updates, heap-only updates) after one release");
    let history = store.delivery_events(&ids[..1]).await.unwrap();
    let steps: Vec<&str> = history["n-1"].iter().map(|(status, _)| status.as_str()).collect();
    assert_eq!(steps, ["pending", "queued", "sending", "queued"]);
    app.cleanup().await;
}

/// Two transactions locking the same two rows in opposite orders: PostgreSQL breaks the cycle
/// by failing one, and the store knows that failure as one to simply try again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_is_recognised_as_a_lock_conflict_worth_retrying() {
    let app = spawn_app(Backend::Postgres).await;
    app.import_population(2).await;
    let store = &app.app.store;
    let lock = |first: &'static str, second: &'static str| async move {
        let mut tx = store.begin().await?;
        let touch = "UPDATE subscribers SET name = name WHERE subscriber_id = $1";
        sqlx::query(touch).bind(first).execute(&mut *tx).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        sqlx::query(touch).bind(second).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok::<_, billpush::store::StoreError>(())
    };
    let (a, b) = tokio::join!(lock("P000000", "P000001"), lock("P000001", "P000000"));
    let failed: Vec<_> = [a, b].into_iter().filter_map(Result::err).collect();
    assert_eq!(failed.len(), 1, "PostgreSQL fails exactly one of the two");
    assert!(failed[0].is_lock_conflict(), "{}", failed[0]);
    app.cleanup().await;
}

/// Half way through a month's build, the next page of candidates is found without reading
/// the bills already built: a page that read them all made the build grow with the square of
/// the subscribers (PostgreSQL merged from the first bill on).
#[tokio::test]
async fn the_next_page_of_candidates_does_not_read_the_bills_behind_it() {
    let app = spawn_app(Backend::Postgres).await;
    let store = &app.app.store;
    let mut tx = store.begin().await.unwrap();
    for sql in [
        "INSERT INTO plans (plan_id, name, monthly_fee_fen, voice_minutes, data_mb, sms_count)
         VALUES ('P1', 'plan', 800, 100, 100, 100)",
        "INSERT INTO subscribers (subscriber_id, msisdn, name, plan_id, language, billing_day, status, bill_sms)
         SELECT 'S' || lpad(i::text, 9, '0'), '+86130' || lpad(i::text, 8, '0'), 'n', 'P1', 'zh', 1, 'active', 1
         FROM generate_series(1, 20000) AS i",
        "INSERT INTO bills (subscriber_id, month, msisdn, period_start, period_end, total_fen, plan_fee_fen, voice_fen,
             data_fen, sms_fen, vas_fen, other_fen, discount_fen, adjustment_fen, voice_minutes, data_kb, sms_count,
             record_count, spike, built_at)
         SELECT 'S' || lpad(i::text, 9, '0'), '2026-10', 'x', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
         FROM generate_series(1, 10000) AS i",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    sqlx::query("ANALYZE").execute(&mut *store.connection().await.unwrap()).await.unwrap();

    let mut tx = store.begin().await.unwrap();
    let page =
        billpush::store::bills::unbilled_candidates(&mut tx, month("2026-10"), "S000010000", 2000).await.unwrap();
    // This transaction's own counts, not yet sent to the statistics collector.
    let bills_read: i64 = sqlx::query_scalar(
        "SELECT CAST((SELECT SUM(pg_stat_get_xact_tuples_returned(indexrelid)) FROM pg_index
                      WHERE indrelid = 'bills'::regclass)
                   + (SELECT seq_tup_read FROM pg_stat_xact_user_tables WHERE relname = 'bills') AS BIGINT)",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(page.len(), 2000);
    assert_eq!(page[0].subscriber_id, "S000010001");
    assert!(bills_read < 100, "read {bills_read} bills to find a page after 10,000 built ones");
    app.cleanup().await;
}

/// A `billpush run` queues everything and hangs on a gateway that never answers, and is
/// killed. The next run finds what was queued, or being sent under a lapsed lease, pushes
/// each once, and nothing stays behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_mid_push_is_finished_by_the_next_run() {
    use billpush::config::GatewayKind;
    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let gateway = MockServer::start().await;
    let accepted = ResponseTemplate::new(200).set_body_json(serde_json::json!({"message_id": "gw"}));
    Mock::given(method("POST"))
        .respond_with(accepted.clone().set_delay(Duration::from_secs(3600)))
        .mount(&gateway)
        .await;
    let url = gateway.uri();
    let app = spawn_app_with(Options {
        configure: Box::new(move |c| {
            c.gateway.kind = GatewayKind::Http;
            c.gateway.url = url;
            c.gateway.timeout_ms = 3_600_000;
            c.gateway.rate_per_second = 1_000_000;
        }),
        ..Options::default()
    })
    .await;
    app.import_population(1000).await;

    let mut first = tokio::process::Command::new(env!("CARGO_BIN_EXE_billpush"))
        .arg("--config")
        .arg(app.config_file())
        .args(["run", "--month", "2026-10", "--as-of", "2027-01-01T00:00:00+08:00"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    sqlx::any::install_default_drivers();
    let database = sqlx::AnyPool::connect(&app.config.database.url).await.unwrap();
    // Scheduled (its lease given back) and partly being sent.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = app.app.status(month("2026-10")).await.unwrap();
        let count = |s: &str| status.deliveries.iter().find(|(k, _)| k == s).map_or(0, |(_, n)| *n);
        let (leases,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM scheduler_locks").fetch_one(&database).await.unwrap();
        if count("queued") + count("sending") == 1000 && count("sending") > 0 && leases == 0 {
            break;
        }
        assert!(first.try_wait().unwrap().is_none(), "the first run ended on a gateway that never answers");
        assert!(std::time::Instant::now() < deadline, "the first run never got to sending: {:?}", status.deliveries);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().await.unwrap();

    gateway.reset().await;
    Mock::given(method("POST")).respond_with(accepted).mount(&gateway).await;
    // Past the lease of what the killed run was sending: three gateway timeouts of real time.
    let lapsed = chrono::Utc::now() + chrono::Duration::hours(4) - app.clock.now();
    app.clock.advance(lapsed.max(chrono::Duration::zero()));
    let report = app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    assert_eq!(report.push.accepted, 1000, "{report:?}");
    let status = app.app.status(month("2026-10")).await.unwrap();
    assert_eq!(status.deliveries, vec![("accepted".to_string(), 1000)]);
    let sent: std::collections::HashSet<String> = gateway
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.headers.get("idempotency-key").expect("an idempotency key").to_str().unwrap().to_string())
        .collect();
    assert_eq!(sent.len(), 1000, "every notification reached the working gateway");
    database.close().await;
    app.cleanup().await;
}

#[tokio::test]
async fn flag_notices_to_opted_out_subscribers_can_be_turned_off() {
    let app =
        spawn_app_with(Options { configure: Box::new(|c| c.flags.notify_opted_out = false), ..Options::default() })
            .await;
    app.import_fixture().await;
    let report = app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    assert_eq!((report.build.flag_notices, report.push.accepted), (0, 10), "the bill SMS alone");
    let kinds: Vec<String> = app
        .export(ExportKind::Deliveries, "2026-10")
        .await
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_string())
        .collect();
    assert!(kinds.iter().all(|k| k == "bill"), "{kinds:?}");
    app.cleanup().await;
}
