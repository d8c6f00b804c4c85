//! The production push path on the real RabbitMQ and PostgreSQL of this machine, with the
//! project's mock gateway as a real HTTP server: worker processes, crashes, retries, dead
//! letters, rate limit, scheduling guarantees.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use billpush::billing::BuildMode;
use billpush::config::GatewayKind;
use billpush::domain::shard::Shard;
use billpush::export::ExportKind;
use billpush::gateway::mock::{Faults, MockGateway};
use common::{assert_accepted_exactly_once, at, month, spawn_app_with, Backend, Options, TestApp};
use tokio::process::{Child, Command};

const AS_OF: &str = "2027-01-01T00:00:00+08:00";
const TOKEN: &str = "gateway-test-token";

struct Setup {
    backend: Backend,
    faults: Faults,
    rate: u32,
    workers: u32,
    max_attempts: u32,
    check_every: &'static str,
    /// `queue.url` lists a broker that is down before the real one, as a cluster whose first
    /// node has gone away.
    first_broker_down: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            backend: Backend::Postgres,
            faults: Faults::default(),
            rate: 100_000,
            workers: 1,
            max_attempts: 5,
            check_every: "1h",
            first_broker_down: false,
        }
    }
}

async fn setup(s: Setup) -> (TestApp, Arc<MockGateway>) {
    let mock = MockGateway::new(TOKEN, s.faults);
    let (address, _serving) = mock.serve("127.0.0.1:0", CancellationToken::new()).await.unwrap();
    let app = spawn_app_with(Options {
        backend: s.backend,
        rabbitmq: true,
        configure: Box::new(move |c| {
            c.gateway.kind = GatewayKind::Http;
            c.gateway.url = format!("http://{address}");
            c.gateway.token = TOKEN.into();
            c.gateway.rate_per_second = s.rate;
            c.gateway.workers = s.workers;
            c.gateway.max_attempts = s.max_attempts;
            c.gateway.timeout_ms = 1000;
            c.gateway.retry_base_ms = 50;
            c.billing.check_every = s.check_every.into();
            // Bills become due a second after their period ends, whatever today's date.
            c.billing.grace = "1s".into();
            if s.first_broker_down {
                c.queue.url = format!("amqp://guest:guest@127.0.0.1:{}/%2f, {}", free_port(), c.queue.url);
            }
        }),
        // Workers run as processes on the system clock: the test's own scheduling starts at
        // the same time, so the steps both record follow each other as they happened.
        now: chrono::Utc::now(),
        ..Options::default()
    })
    .await;
    (app, mock)
}

fn spawn_worker(app: &TestApp, extra: &[&str]) -> Child {
    spawn_command(app, "worker", extra)
}

fn spawn_command(app: &TestApp, command: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_billpush"))
        .arg("--config")
        .arg(app.config_file())
        .arg(command)
        .args(extra)
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the billpush binary starts")
}

/// SIGTERM, then the worker must finish what it holds and exit cleanly.
async fn terminate(mut worker: Child) {
    let pid = worker.id().expect("still running").to_string();
    let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .expect("worker stops after SIGTERM")
        .unwrap();
    assert!(status.success(), "worker exit status {status}");
}

async fn wait_for_acceptances(mock: &MockGateway, at_least: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while mock.stats().accepted < at_least {
        assert!(std::time::Instant::now() < deadline, "the gateway saw only {} acceptances", mock.stats().accepted);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_push_2000_subscribers_exactly_once() {
    let (app, mock) = setup(Setup { workers: 2, ..Setup::default() }).await;
    app.import_population(2000).await;
    let report = app.app.schedule(month("2026-10"), Some(at(AS_OF)), Shard::ALL).await.unwrap();
    assert_eq!((report.build.billed, report.queued), (2000, 2000));

    let metrics_port = free_port();
    let first = spawn_worker(&app, &["--metrics", &format!("127.0.0.1:{metrics_port}")]);
    let second = spawn_worker(&app, &[]);
    app.wait_until_pushed("2026-10", Duration::from_secs(120)).await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("billpush_push_outcomes_total"), "{metrics}");
    // Latency as buckets, which add up across workers, with HELP text.
    assert!(metrics.contains("billpush_push_latency_seconds_bucket{le=\"0.005\"}"), "{metrics}");
    assert!(metrics.contains("billpush_push_latency_seconds_bucket{le=\"+Inf\"}"), "{metrics}");
    assert!(metrics.contains("# HELP billpush_push_latency_seconds "), "{metrics}");
    terminate(first).await;
    terminate(second).await;

    assert_accepted_exactly_once(&mock.acceptances(), 2000);
    let deliveries = app.export(ExportKind::Deliveries, "2026-10").await;
    assert!(deliveries.iter().all(|d| d["status"] == "accepted" && d["gateway_message_id"].is_string()));
    // Through the broker, a notification is pending until the broker has confirmed it.
    let ids: Vec<String> = deliveries.iter().map(|d| d["id"].as_str().unwrap().to_string()).collect();
    let history = app.app.store.delivery_events(&ids).await.unwrap();
    for id in &ids {
        let steps: Vec<&str> = history[id].iter().map(|(status, _)| status.as_str()).collect();
        assert_eq!(steps, ["pending", "queued", "sending", "accepted"], "{id}");
    }
    app.cleanup().await;
}

/// `queue.url` may list a cluster's nodes: the scheduler and a worker process pass over the
/// one that does not answer and push through the next, every bill once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_first_listed_broker_down_the_next_one_is_used() {
    let (app, mock) = setup(Setup { first_broker_down: true, ..Setup::default() }).await;
    assert!(app.config.queue.url.contains(", amqp://"), "{}", app.config.queue.url);
    app.import_population(300).await;
    let report = app.app.schedule(month("2026-10"), Some(at(AS_OF)), Shard::ALL).await.unwrap();
    assert_eq!(report.queued, 300);
    let worker = spawn_worker(&app, &[]);
    app.wait_until_pushed("2026-10", Duration::from_secs(60)).await;
    terminate(worker).await;
    assert_accepted_exactly_once(&mock.acceptances(), 300);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_push_loses_and_doubles_nothing() {
    // 600 parts/s keeps the push going for a few seconds, so the kill lands mid-push.
    let (app, mock) = setup(Setup { rate: 600, ..Setup::default() }).await;
    app.import_population(1000).await;
    app.app.schedule(month("2026-10"), Some(at(AS_OF)), Shard::ALL).await.unwrap();

    let mut doomed = spawn_worker(&app, &[]);
    wait_for_acceptances(&mock, 100).await;
    doomed.kill().await.unwrap(); // SIGKILL: no chance to finish or ack
    assert!(mock.stats().accepted < 1000, "the kill came mid-push");
    let survivor = spawn_worker(&app, &[]);
    app.wait_until_pushed("2026-10", Duration::from_secs(120)).await;
    terminate(survivor).await;

    assert_accepted_exactly_once(&mock.acceptances(), 1000);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_gateway_gets_every_message_once_through_retries() {
    let faults = Faults { unavailable: 0.2, too_many: 0.05, lost_answer: 0.05, seed: 42, ..Faults::default() };
    let (app, mock) = setup(Setup { faults, max_attempts: 10, ..Setup::default() }).await;
    app.import_population(300).await;
    let report = app.run("2026-10", AS_OF).await;
    assert!(report.push.retried > 0, "some attempts were retried");
    assert_eq!(report.push.accepted, 300);
    assert!(mock.stats().repeated_keys > 0, "lost answers were resent with the same key and recognised");
    assert_accepted_exactly_once(&mock.acceptances(), 300);
    // The retries waited in replicated holding queues, which survive a cluster node's loss.
    let holding = holding_queue_types(&app.config.queue.name).await;
    assert!(!holding.is_empty(), "retries went through holding queues");
    for (queue, kind) in &holding {
        assert!(kind.contains("current is 'quorum'"), "{queue}: {kind}");
    }
    app.cleanup().await;
}

/// Each holding queue that exists, with the broker's answer to declaring it again as a classic
/// queue: its refusal names the queue's type.
async fn holding_queue_types(name: &str) -> Vec<(String, String)> {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable};
    let connection =
        lapin::Connection::connect(&common::rabbitmq_url(), lapin::ConnectionProperties::default()).await.unwrap();
    let mut types = Vec::new();
    for bits in 6..=22 {
        let queue = format!("{name}.delay.{}", 1u64 << bits);
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        // A refused declaration closes its channel: one channel per question.
        let channel = connection.create_channel().await.unwrap();
        if channel.queue_declare(queue.as_str().into(), passive, FieldTable::default()).await.is_err() {
            continue;
        }
        // billpush's own arguments but for the type, so that the type is what is refused.
        let mut classic = FieldTable::default();
        let text = |value: &str| AMQPValue::LongString(value.into());
        classic.insert("x-queue-type".into(), text("classic"));
        classic.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        classic.insert("x-overflow".into(), text("reject-publish"));
        classic.insert("x-dead-letter-exchange".into(), text(""));
        classic.insert("x-dead-letter-routing-key".into(), text(name));
        classic.insert("x-message-ttl".into(), AMQPValue::LongLongInt(1i64 << bits));
        let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        let channel = connection.create_channel().await.unwrap();
        let answer = match channel.queue_declare(queue.as_str().into(), durable, classic).await {
            Ok(_) => "classic".to_string(),
            Err(error) => error.to_string(),
        };
        types.push((queue, answer));
    }
    let _ = connection.close(200, "test done".into()).await;
    types
}

/// A worker whose retries the broker will not take (here a holding queue declared with other
/// arguments; in a cluster, a node gone away) records every other outcome, leaves the
/// retries claimed and unacked, and stops on SIGTERM within its grace; a worker started after
/// the broker is put right pushes the rest, every bill once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_retries_cannot_be_queued_records_the_rest_and_stops_when_told() {
    use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
    let faults = Faults { unavailable: 0.3, seed: 7, ..Faults::default() };
    let (app, mock) = setup(Setup { faults, max_attempts: 20, ..Setup::default() }).await;
    app.import_population(300).await;
    app.app.schedule(month("2026-10"), Some(at(AS_OF)), Shard::ALL).await.unwrap();
    // Every first retry waits 25–50 ms, in the 64 ms holding queue: it is taken by a classic
    // queue, which billpush's declaration contradicts.
    let blocker = format!("{}.delay.64", app.config.queue.name);
    let connection =
        lapin::Connection::connect(&common::rabbitmq_url(), lapin::ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(blocker.as_str().into(), durable, Default::default()).await.unwrap();

    let mut worker = spawn_worker(&app, &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while mock.stats().requests < 100 || mock.stats().accepted == mock.stats().requests {
        assert!(std::time::Instant::now() < deadline, "the worker sent {:?}", mock.stats());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = worker.id().expect("still running").to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .expect("the worker stops after SIGTERM although its retries cannot be queued")
        .unwrap();
    assert!(!status.success(), "the worker says its retries were not queued: {status}");
    let accepted_at_gateway = mock.stats().accepted;
    let deliveries = app.export(ExportKind::Deliveries, "2026-10").await;
    let recorded = deliveries.iter().filter(|d| d["status"] == "accepted").count() as u64;
    assert_eq!(recorded, accepted_at_gateway, "every acceptance is recorded although the retries were not queued");
    assert!(recorded < 300);

    channel.queue_delete(blocker.as_str().into(), QueueDeleteOptions::default()).await.unwrap();
    let _ = connection.close(200, "test done".into()).await;
    let worker = spawn_worker(&app, &[]);
    app.wait_until_pushed("2026-10", Duration::from_secs(120)).await;
    terminate(worker).await;
    assert_accepted_exactly_once(&mock.acceptances(), 300);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_always_fails_sends_notifications_to_failed_through_the_dead_letter_queue() {
    let (app, mock) =
        setup(Setup { faults: Faults { unavailable: 1.0, ..Faults::default() }, max_attempts: 3, ..Setup::default() })
            .await;
    app.import_population(50).await;
    let report = app.run("2026-10", AS_OF).await;
    assert_eq!(report.push.failed, 50);
    assert_eq!(mock.stats().requests, 150, "three attempts each, then no more");
    let deliveries = app.export(ExportKind::Deliveries, "2026-10").await;
    assert!(deliveries.iter().all(|d| d["status"] == "failed" && d["attempts"] == 3), "{:?}", deliveries[0]);

    let mut dead: Vec<String> = dead_letters(&app.config.queue.name).await;
    dead.sort();
    let mut failed: Vec<String> = deliveries.iter().map(|d| d["id"].as_str().unwrap().to_string()).collect();
    failed.sort();
    assert_eq!(dead, failed, "every failed notification is in the dead-letter queue");

    // The gateway is repaired; the operator puts the failed notifications back in line.
    let healthy = MockGateway::new(TOKEN, Faults::default());
    let (address, _serving) = healthy.serve("127.0.0.1:0", CancellationToken::new()).await.unwrap();
    let mut repaired = app.config.clone();
    repaired.gateway.url = format!("http://{address}");
    let operator = billpush::app::App::build(repaired.settings().unwrap()).await.unwrap();
    assert_eq!(operator.retry_failed(month("2026-10")).await.unwrap(), 50);
    let report = operator.run(month("2026-10"), Some(at(AS_OF)), BuildMode::Keep).await.unwrap();
    assert_eq!((report.build.billed, report.push.accepted), (0, 50));
    assert_accepted_exactly_once(&healthy.acceptances(), 50);
    operator.store.close().await;
    app.cleanup().await;
}

async fn dead_letters(name: &str) -> Vec<String> {
    queued_ids(&format!("{name}.dead")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_never_sees_more_than_the_rate_plus_one_percent_in_any_second() {
    let (app, mock) = setup(Setup { rate: 200, ..Setup::default() }).await;
    app.import_population(200).await;
    let report = app.run("2026-10", AS_OF).await;
    assert_eq!(report.push.accepted, 200);
    let parts: u64 = mock.acceptances().iter().map(|a| a.segments).sum();
    assert!(parts > 400, "the push lasted over two seconds: {parts} parts");
    let busiest = mock.stats().max_parts_per_second;
    let mut buckets = std::collections::BTreeMap::new();
    for a in mock.acceptances() {
        *buckets.entry(a.at_ms / 100).or_insert(0u64) += a.segments;
    }
    assert!(busiest <= 202, "{busiest} parts in one second; per 100 ms: {buckets:?}");
    eprintln!("busiest second: {busiest} parts");
    app.cleanup().await;
}

#[tokio::test]
async fn scheduling_twice_or_by_shards_queues_each_notification_once() {
    let (app, _mock) = setup(Setup::default()).await;
    app.import_population(500).await;
    let halves: Vec<u64> = {
        let mut queued = Vec::new();
        for shard in ["0/2", "1/2"] {
            let report = app.app.schedule(month("2026-10"), Some(at(AS_OF)), shard.parse().unwrap()).await.unwrap();
            queued.push(report.queued);
        }
        queued
    };
    assert_eq!(halves.iter().sum::<u64>(), 500, "{halves:?}");
    assert!(halves.iter().all(|&h| h > 150), "both shards had work: {halves:?}");
    let again = app.app.schedule(month("2026-10"), Some(at(AS_OF)), Shard::ALL).await.unwrap();
    assert_eq!((again.build.billed, again.queued), (0, 0));
    let status = app.app.status(month("2026-10")).await.unwrap();
    assert_eq!(status.deliveries, [("queued".to_string(), 500)]);
    app.cleanup().await;
}

#[tokio::test]
async fn a_month_held_by_another_scheduler_is_left_alone() {
    let (app, _mock) = setup(Setup::default()).await;
    app.import_population(10).await;
    let now = app.app.clock().now();
    assert!(app
        .app
        .store
        .acquire_lock("schedule 2026-10 0/1", "someone-else", now, now + chrono::Duration::minutes(5))
        .await
        .unwrap());
    let report = app.app.schedule(month("2026-10"), Some(at(AS_OF)), Shard::ALL).await.unwrap();
    assert!(report.skipped);
    assert_eq!(app.app.status(month("2026-10")).await.unwrap().bills, 0);
    app.cleanup().await;
}

/// Usage in `month` for every subscriber of the population, so its bills are not all zero.
async fn import_usage_in(app: &TestApp, month: billpush::domain::period::BillingMonth, count: usize) {
    use std::fmt::Write;
    let mut usage = String::from("record_id,subscriber_id,occurred_at,category,quantity,amount_fen\n");
    for n in 0..count {
        writeln!(usage, "M{month}-{n:06},P{n:06},{month}-05T10:00:00+08:00,voice,3,30").unwrap();
    }
    let path = app.write_input("usage-open-months.csv", &usage);
    assert_eq!(app.import(billpush::import::ImportKind::Usage, &path).await.rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_scheduler_daemons_queue_every_due_notification_exactly_once() {
    let (app, _mock) = setup(Setup { check_every: "1s", ..Setup::default() }).await;
    app.import_population(300).await;
    let open = billpush::app::open_months(chrono::Utc::now(), chrono_tz::Asia::Shanghai);
    for month in open {
        import_usage_in(&app, month, 300).await;
    }
    let daemons = [spawn_command(&app, "scheduler", &[]), spawn_command(&app, "scheduler", &[])];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut queued = 0;
        for month in open {
            let status = app.app.status(month).await.unwrap();
            queued += status.deliveries.iter().filter(|(s, _)| s == "queued").map(|(_, n)| n).sum::<i64>();
        }
        if queued == 600 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{queued} of 600 queued");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for daemon in daemons {
        terminate(daemon).await;
    }
    let mut ids = queued_ids(&app.config.queue.name).await;
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((total, ids.len()), (600, 600), "each due notification of the two open months queued once");
    // Each round makes this month's and next month's partitions ahead of need, and one of the
    // daemons purged for the day, holding the lease that keeps the other from it.
    let current = open[1].next();
    for table in billpush::store::partitions::Partitioned::ALL {
        let months = app.app.store.partition_months(table).await.unwrap();
        assert!(months.contains(&current) && months.contains(&current.next()), "{table:?}: {months:?}");
    }
    assert!(app.app.store.lock_holder("retention daily").await.unwrap().is_some());
    app.cleanup().await;
}

/// Takes every message off a queue and returns the notification ids they carried.
async fn queued_ids(name: &str) -> Vec<String> {
    use lapin::options::{BasicAckOptions, BasicGetOptions};
    let connection =
        lapin::Connection::connect(&common::rabbitmq_url(), lapin::ConnectionProperties::default()).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut ids = Vec::new();
    while let Some(message) = channel.basic_get(name.into(), BasicGetOptions::default()).await.unwrap() {
        let body: billpush::queue::QueueMessage = serde_json::from_slice(&message.delivery.data).unwrap();
        ids.extend(body.notification_ids);
        message.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_killed_mid_month_and_run_again_queues_everyone_once() {
    use sqlx::{Connection, PgConnection};
    const SUBSCRIBERS: i64 = 5000;
    let (app, mock) = setup(Setup::default()).await;
    app.import_population(SUBSCRIBERS as usize).await;
    let schedule_args = ["--month", "2026-10", "--as-of", AS_OF];
    let mut doomed = spawn_command(&app, "schedule", &schedule_args);
    let mut db = PgConnection::connect(&app.config.database.url).await.unwrap();
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while count("SELECT COUNT(*) FROM bills").fetch_one(&mut db).await.unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "the scheduler built nothing");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    doomed.kill().await.unwrap(); // SIGKILL: its lease and half a month stay behind
    let queued_at_kill = count("SELECT COUNT(*) FROM notifications WHERE status <> 'pending'").fetch_one(&mut db).await;
    assert!(queued_at_kill.unwrap() < SUBSCRIBERS, "the kill came before the month was queued");

    let rerun = spawn_command(&app, "schedule", &schedule_args).wait().await.unwrap();
    assert!(rerun.success(), "the rerun takes over the dead scheduler's lease at once: {rerun}");
    let per_subscriber = count("SELECT COUNT(DISTINCT subscriber_id) FROM notifications").fetch_one(&mut db).await;
    assert_eq!(per_subscriber.unwrap(), SUBSCRIBERS);
    let queued_twice = count(
        "SELECT COUNT(*) FROM (SELECT notification_id FROM notification_events WHERE status = 'queued'
         GROUP BY notification_id HAVING COUNT(*) <> 1) AS t",
    )
    .fetch_one(&mut db)
    .await;
    assert_eq!(queued_twice.unwrap(), 0, "every notification queued exactly once");
    let queued = count("SELECT COUNT(DISTINCT notification_id) FROM notification_events WHERE status = 'queued'")
        .fetch_one(&mut db)
        .await;
    assert_eq!(queued.unwrap(), SUBSCRIBERS);

    let worker = spawn_worker(&app, &[]);
    app.wait_until_pushed("2026-10", Duration::from_secs(120)).await;
    terminate(worker).await;
    assert_accepted_exactly_once(&mock.acceptances(), SUBSCRIBERS as usize);
    db.close().await.unwrap();
    app.cleanup().await;
}
