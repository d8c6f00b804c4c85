//! Usage alerts (docs/contract.md §12) on a fixture of this file's own, whose figures are
//! worked out by hand below: which thresholds each evaluation raises, sends or covers; that
//! nothing is raised twice; quiet hours and `alerts.max_age`; `TDTX`/`KTTX`; an alert
//! overtaken before it was sent; and a process killed between raising and sending.

mod common;

use std::process::Stdio;
use std::sync::Arc;

use billpush::clock::Clock;
use billpush::export::ExportKind;
use billpush::gateway::mock::{Faults, MockGateway};
use billpush::import::ImportKind;
use billpush::replies::InboundReply;
use common::{at, spawn_app_with, Backend, Options, TestApp};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// Plan P1: 1,024 MB, 100 minutes, 50 SMS.
const PLANS: &str = "plan_id,name,monthly_fee_fen,voice_minutes,data_mb,sms_count\nP1,畅享,5800,100,1024,50\n";

/// A1 and A5 in Chinese, A2 in English; A3 has opted out of alerts, A4 is suspended.
const SUBSCRIBERS: &str = "subscriber_id,msisdn,name,plan_id,language,billing_day,status,bill_sms,alert_sms
A1,13800000001,甲,P1,zh,1,active,,
A2,13800000002,乙,P1,en,1,active,,true
A3,13800000003,丙,P1,zh,1,active,,false
A4,13800000004,丁,P1,zh,1,suspended,,
A5,13800000005,戊,P1,zh,1,active,,
";

/// December 2026 (billing day 1):
/// - A1: 600 MB + 300 MB of data by 3 Dec (921,600 KB, 87.9% of 1,048,576 KB), 200 MB more on
///   5 Dec (1,126,400 KB, 107.4%); a November record is another period;
/// - A2: 130 voice minutes (130% of 100) and 10 SMS (20% of 50);
/// - A3 and A4: far past every allowance, but get no alerts;
/// - A5: a 120.00 yuan VAS charge and 5.00 yuan of calls (12,500 fen spent); its 500.00 yuan
///   plan fee and 30.00 yuan discount are not spending.
const USAGE: &str = "record_id,subscriber_id,occurred_at,category,quantity,amount_fen,service_code,description
U1,A1,2026-12-02T09:00:00+08:00,data,614400,0,,
U2,A1,2026-12-03T09:00:00+08:00,data,307200,0,,
U3,A1,2026-12-05T09:00:00+08:00,data,204800,0,,
U4,A1,2026-11-20T09:00:00+08:00,data,900000,0,,
U5,A2,2026-12-02T10:00:00+08:00,voice,130,0,,
U6,A2,2026-12-02T11:00:00+08:00,sms,10,0,,
U7,A3,2026-12-02T10:00:00+08:00,data,3000000,0,,
U8,A4,2026-12-02T10:00:00+08:00,voice,500,0,,
U9,A5,2026-12-01T00:10:00+08:00,plan_fee,1,50000,,月功能费
U10,A5,2026-12-02T10:00:00+08:00,vas,1,12000,SP1,手机报
U11,A5,2026-12-02T11:00:00+08:00,voice,10,500,,
U12,A5,2026-12-02T12:00:00+08:00,discount,1,-3000,,优惠
";

const FIRST: &str = "2026-12-03T12:00:00+08:00";
const LATER: &str = "2026-12-06T12:00:00+08:00";

/// This file's plans, subscribers and usage.
const FIXTURE: [(ImportKind, &str, &str); 3] = [
    (ImportKind::Plans, "plans.csv", PLANS),
    (ImportKind::Subscribers, "subscribers.csv", SUBSCRIBERS),
    (ImportKind::Usage, "usage.csv", USAGE),
];

async fn import_files(app: &TestApp, files: &[(ImportKind, &str, &str)]) {
    for (kind, name, content) in files {
        let path = app.write_input(name, content);
        assert_eq!(app.import(*kind, &path).await.rejected, 0, "{name}");
    }
}

async fn app_with(
    backend: Backend,
    rabbitmq: bool,
    configure: impl FnOnce(&mut billpush::config::Config) + 'static,
) -> TestApp {
    app_with_options(Options { backend, rabbitmq, now: at(FIRST), ..Options::default() }, configure).await
}

async fn app_with_options(
    options: Options,
    configure: impl FnOnce(&mut billpush::config::Config) + 'static,
) -> TestApp {
    let app = spawn_app_with(Options { configure: Box::new(configure), ..options }).await;
    import_files(&app, &FIXTURE).await;
    app
}

/// The month's alerts as (subscriber, metric, threshold, value, allowance, status).
async fn alerts(app: &TestApp) -> Vec<(String, String, i64, i64, Option<i64>, String)> {
    app.export(ExportKind::Alerts, "2026-12")
        .await
        .iter()
        .map(|a| {
            (
                a["subscriber_id"].as_str().unwrap().to_string(),
                a["metric"].as_str().unwrap().to_string(),
                a["threshold"].as_i64().unwrap(),
                a["value"].as_i64().unwrap(),
                a["allowance"].as_i64(),
                a["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn row(
    s: &str,
    m: &str,
    t: i64,
    v: i64,
    a: Option<i64>,
    status: &str,
) -> (String, String, i64, i64, Option<i64>, String) {
    (s.into(), m.into(), t, v, a, status.into())
}

async fn evaluations_raise_what_was_worked_out_by_hand(backend: Backend) {
    let app = app_with(backend, false, |_| {}).await;
    let (report, pushed) = app.app.alerts(Some(at(FIRST))).await.unwrap();
    assert_eq!((report.evaluated, report.raised, report.covered), (3, 3, 1), "{report:?}");
    assert_eq!(pushed.accepted, 3);
    let first = vec![
        row("A1", "data", 80, 921_600, Some(1_048_576), "accepted"),
        row("A2", "voice", 80, 130, Some(100), "covered"),
        row("A2", "voice", 100, 130, Some(100), "accepted"),
        row("A5", "spend", 10000, 12_500, None, "accepted"),
    ];
    assert_eq!(alerts(&app).await, first);
    let outbox = app.outbox();
    let text_to = |to: &str| {
        outbox.iter().find(|m| m["to"] == to).map(|m| m["text"].as_str().unwrap().to_string()).unwrap_or_default()
    };
    assert_eq!(
        text_to("+8613800000001"),
        "【示例电信】尊敬的138****0001用户，截至12月3日12时，您本期套餐内流量已用900.0MB，达到套餐1024.0MB的80%。回复ZD查账单明细，回复TDTX退订用量提醒。"
    );
    let english = text_to("+8613800000002");
    assert!(english.contains("you have used 130 minutes, 100% of the 100 voice minutes"), "{english}");
    assert!(english.contains("charged at standard rates") && english.contains("TDTX"), "{english}");
    assert!(text_to("+8613800000005").contains("已产生费用125.00元，达到100.00元提醒额度"));

    // The same time again: nothing new.
    let (again, pushed) = app.app.alerts(Some(at(FIRST))).await.unwrap();
    assert_eq!((again.raised, again.covered, pushed.accepted), (0, 0, 0), "{again:?}");
    assert_eq!(app.outbox().len(), 3);

    // Three days later A1's 200 MB of 5 Dec count: only 100% is new.
    let (later, _) = app.app.alerts(Some(at(LATER))).await.unwrap();
    assert_eq!((later.raised, later.covered, later.overtaken), (1, 0, 0), "{later:?}");
    let mut expected = first;
    expected.insert(1, row("A1", "data", 100, 1_126_400, Some(1_048_576), "accepted"));
    assert_eq!(alerts(&app).await, expected);
    app.assert_outbox_holds_each_once(4);
    let deliveries = app.export(ExportKind::Deliveries, "2026-12").await;
    let kinds: Vec<(&str, &str)> =
        deliveries.iter().map(|d| (d["kind"].as_str().unwrap(), d["subject"].as_str().unwrap())).collect();
    assert!(kinds.contains(&("usage_alert", "data:100")) && kinds.contains(&("usage_alert", "voice:100")), "{kinds:?}");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_raise_what_was_worked_out_by_hand_on_sqlite() {
    evaluations_raise_what_was_worked_out_by_hand(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluations_raise_what_was_worked_out_by_hand_on_postgres() {
    evaluations_raise_what_was_worked_out_by_hand(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_hold_alerts_and_max_age_expires_them() {
    // Raised at 22:00, in quiet hours until 08:00: ten hours later.
    let late = "2026-12-03T22:00:00+08:00";
    let quiet = Options { quiet_hours: Some(("21:00", "08:00")), now: at(late), ..Options::default() };
    let app = app_with_options(quiet, |c| c.alerts.max_age = "24h".into()).await;
    let (report, pushed) = app.app.alerts(Some(at(late))).await.unwrap();
    assert_eq!((report.raised, pushed.accepted), (3, 3));
    let deliveries = app.export(ExportKind::Deliveries, "2026-12").await;
    for d in &deliveries {
        let sent = chrono::DateTime::parse_from_rfc3339(d["updated_at"].as_str().unwrap()).unwrap();
        assert_eq!(sent, at("2026-12-04T08:00:00+08:00"), "held until quiet hours end: {d}");
    }
    app.cleanup().await;

    let quiet = Options { quiet_hours: Some(("21:00", "08:00")), now: at(late), ..Options::default() };
    let app = app_with_options(quiet, |c| c.alerts.max_age = "1h".into()).await;
    let (report, pushed) = app.app.alerts(Some(at(late))).await.unwrap();
    assert_eq!((report.raised, pushed.accepted), (3, 0));
    assert!(app.outbox().is_empty(), "never sent late");
    let statuses: Vec<String> = alerts(&app).await.into_iter().map(|a| a.5).collect();
    assert_eq!(statuses, ["expired", "covered", "expired", "expired"]);
    app.cleanup().await;
}

async fn reply(app: &TestApp, from: &str, text: &str) -> String {
    let replies = app.app.replies().await.unwrap();
    let from = billpush::domain::msisdn::Msisdn::parse(from).unwrap();
    let outcome = replies
        .handle(&InboundReply { from: &from, to: "10001", text, received_at: at(FIRST), via: "gateway" })
        .await
        .unwrap();
    format!("{}{}", outcome.action.as_str(), if outcome.answered { "" } else { " (not answered)" })
}

async fn choices(app: &TestApp, subscriber: &str) -> (i64, i64) {
    let mut connection = app.app.store.connection().await.unwrap();
    sqlx::query_as("SELECT bill_sms, alert_sms FROM subscribers WHERE subscriber_id = $1")
        .bind(subscriber)
        .fetch_one(&mut *connection)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tdtx_stops_alerts_but_not_bills_and_an_import_does_not_undo_it() {
    // Three answers a day: the alerts are not answers and leave room for the third.
    let app = app_with(Backend::Sqlite, false, |c| c.replies.max_per_day = 3).await;
    assert_eq!(reply(&app, "13800000001", "tdtx").await, "alerts_opt_out");
    assert_eq!(choices(&app, "A1").await, (1, 0), "the bill SMS stays");
    // The operator's file says alerts on: the subscriber's own word stands.
    let path = app.write_input("again.csv", "subscriber_id,msisdn,plan_id,alert_sms\nA1,13800000001,P1,true\n");
    let counts = app.import(ImportKind::Subscribers, &path).await;
    assert_eq!((counts.accepted, counts.consent_kept), (1, 1));
    assert_eq!(choices(&app, "A1").await, (1, 0));
    // A row that keeps the opt-out and changes the other choice is one row accepted.
    let path =
        app.write_input("both.csv", "subscriber_id,msisdn,plan_id,bill_sms,alert_sms\nA1,13800000001,P1,false,true\n");
    let counts = app.import(ImportKind::Subscribers, &path).await;
    assert_eq!((counts.accepted, counts.duplicate, counts.consent_kept), (1, 0, 1));
    assert_eq!(choices(&app, "A1").await, (0, 0));
    let path = app.write_input("back.csv", "subscriber_id,msisdn,plan_id,bill_sms\nA1,13800000001,P1,true\n");
    app.import(ImportKind::Subscribers, &path).await;
    assert_eq!(choices(&app, "A1").await, (1, 0), "an import's opt-out is undone by an import");

    let (report, _) = app.app.alerts(Some(at(FIRST))).await.unwrap();
    assert_eq!(report.raised, 2, "A2 and A5 only: {report:?}");
    assert!(alerts(&app).await.iter().all(|a| a.0 != "A1"));
    // The opt-out is confirmed, saying how to opt back in.
    let deliveries = app.export(ExportKind::Deliveries, "2026-12").await;
    let confirmation = deliveries.iter().find(|d| d["kind"] == "alerts_optout").expect("a confirmation");
    let text = confirmation["text"].as_str().unwrap();
    assert!(text.contains("退订用量提醒短信") && text.contains("KTTX"), "{text}");

    assert_eq!(reply(&app, "13800000001", "KTTX").await, "alerts_opt_in");
    assert_eq!(choices(&app, "A1").await, (1, 1));
    let (report, _) = app.app.alerts(Some(at(FIRST))).await.unwrap();
    assert_eq!(report.raised, 1, "A1's data alert now: {report:?}");
    assert_eq!(reply(&app, "13800000001", "ZD").await, "details");
    assert_eq!(reply(&app, "13800000001", "ZD").await, "details (not answered)");
    let mut connection = app.app.store.connection().await.unwrap();
    let history: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT what, bill_sms, source FROM consent_changes WHERE subscriber_id = 'A1' ORDER BY id")
            .fetch_all(&mut *connection)
            .await
            .unwrap();
    drop(connection);
    let change = |what: &str, value: i64, source: &str| (what.to_string(), value, source.to_string());
    assert_eq!(
        history,
        [
            change("alert_sms", 0, "reply"),
            change("bill_sms", 0, "import"),
            change("bill_sms", 1, "import"),
            change("alert_sms", 1, "reply")
        ]
    );
    app.cleanup().await;
}

/// Through RabbitMQ with no worker running, an alert waits `queued`; a later evaluation that
/// raises a higher threshold of the same metric expires it, and a worker sends only the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsent_alert_overtaken_by_a_higher_one_expires() {
    let mock = MockGateway::new("alerts-token", Faults::default());
    let (address, _serving) = mock.serve("127.0.0.1:0", CancellationToken::new()).await.unwrap();
    let app = app_with(Backend::Postgres, true, move |c| {
        c.gateway.kind = billpush::config::GatewayKind::Http;
        c.gateway.url = format!("http://{address}");
        c.gateway.token = "alerts-token".into();
        // The worker runs on the system clock, days after these alerts were raised.
        c.alerts.max_age = "36500d".into();
    })
    .await;
    // Only A1's usage up to 3 Dec first: 87.9% of the data.
    let (report, _) = app.app.alerts(Some(at(FIRST))).await.unwrap();
    assert_eq!((report.raised, report.queued), (3, 3));
    let (later, _) = app.app.alerts(Some(at(LATER))).await.unwrap();
    assert_eq!((later.raised, later.overtaken), (1, 1), "{later:?}");
    let a1: Vec<_> = alerts(&app).await.into_iter().filter(|a| a.0 == "A1").map(|a| (a.2, a.5)).collect();
    assert_eq!(a1, [(80, "expired".to_string()), (100, "queued".to_string())]);

    let worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_billpush"))
        .arg("--config")
        .arg(app.config_file())
        .arg("worker")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while mock.stats().accepted < 3 {
        assert!(std::time::Instant::now() < deadline, "the worker sent {:?}", mock.stats());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(worker);
    let keys: Vec<String> = mock.acceptances().iter().map(|a| a.text.clone()).collect();
    assert_eq!(keys.len(), 3, "A1's 100%, A2's voice and A5's spend: {keys:?}");
    assert!(keys.iter().any(|t| t.contains("达到套餐1024.0MB的100%")), "{keys:?}");
    assert!(!keys.iter().any(|t| t.contains("的80%")), "the overtaken alert is never sent: {keys:?}");
    app.cleanup().await;
}

/// `billpush alerts` killed while its alerts are with a gateway that never answers: the next
/// evaluation raises nothing again and, within `alerts.max_age`, sends each alert once through
/// a gateway that answers; past it, sends none of them.
async fn killed_between_raising_and_sending(rerun_at: &str, sent: u64, statuses: [&str; 4]) {
    let stalled = MockGateway::new("alerts-token", Faults { slow: 1.0, slow_for_ms: 600_000, ..Faults::default() });
    let (stalled_address, _stalled) = stalled.serve("127.0.0.1:0", CancellationToken::new()).await.unwrap();
    let app = app_with(Backend::Postgres, false, move |c| {
        c.gateway.kind = billpush::config::GatewayKind::Http;
        c.gateway.url = format!("http://{stalled_address}");
        c.gateway.token = "alerts-token".into();
        c.gateway.timeout_ms = 60_000;
    })
    .await;
    let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_billpush"))
        .arg("--config")
        .arg(app.config_file())
        .args(["alerts", "--as-of", FIRST])
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while stalled.stats().requests < 3 {
        assert!(std::time::Instant::now() < deadline, "the gateway saw {:?}", stalled.stats());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    process.kill().await.unwrap(); // SIGKILL: nothing is finished or recorded
    let raised = alerts(&app).await;
    assert_eq!(raised.len(), 4, "raised and written before any was sent: {raised:?}");
    assert!(raised.iter().all(|a| a.5 == "sending" || a.5 == "covered"), "{raised:?}");

    let healthy = MockGateway::new("alerts-token", Faults::default());
    let (address, _serving) = healthy.serve("127.0.0.1:0", CancellationToken::new()).await.unwrap();
    let mut config = app.config.clone();
    config.gateway.url = format!("http://{address}");
    let clock = Arc::new(billpush::clock::ManualClock::new(at(FIRST)));
    let rerun = billpush::app::App::build_with_clock(config.settings().unwrap(), clock).await.unwrap();
    let (report, pushed) = rerun.alerts(Some(at(rerun_at))).await.unwrap();
    assert_eq!((report.raised, report.covered, pushed.accepted), (0, 0, sent), "{report:?} {pushed:?}");
    common::assert_accepted_exactly_once(&healthy.acceptances(), sent as usize);
    assert_eq!(stalled.stats().accepted, 0);
    let found: Vec<String> = alerts(&app).await.into_iter().map(|a| a.5).collect();
    assert_eq!(found, statuses);
    rerun.store.close().await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_between_raising_and_sending_loses_and_doubles_nothing() {
    // An hour later the killed process's leases have run out; the alerts are an hour old.
    killed_between_raising_and_sending("2026-12-03T13:00:00+08:00", 3, ["accepted", "covered", "accepted", "accepted"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_a_killed_process_was_sending_are_not_sent_past_max_age() {
    // Two days later (before A1's usage of the 5th), the killed process's alerts are too old.
    killed_between_raising_and_sending("2026-12-05T08:00:00+08:00", 0, ["expired", "covered", "expired", "expired"])
        .await;
}

/// Regulators and operators read a month's alerts over the API, page by page, as exported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lists_a_months_alerts_as_exported() {
    let app = app_with(Backend::Sqlite, false, |c| c.api.tokens = common::role_tokens()).await;
    app.app.alerts(Some(at(FIRST))).await.unwrap();
    let serving = app.serve_api().await;
    let client = reqwest::Client::new();
    let base = format!("http://{}/api/v1/alerts", serving.address);
    let mut items: Vec<Value> = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = format!("{base}?month=2026-12&limit=3{cursor}");
        let page: Value = client.get(&url).bearer_auth(common::REGULATOR).send().await.unwrap().json().await.unwrap();
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(items, app.export(ExportKind::Alerts, "2026-12").await);
    assert_eq!(
        items[1],
        json!({"subscriber_id": "A2", "msisdn": "+8613800000002", "month": "2026-12",
        "metric": "voice", "threshold": 80, "value": 130, "allowance": 100, "status": "covered",
        "raised_at": items[1]["raised_at"]})
    );
    let missing = client.get(&base).bearer_auth(common::OPERATOR).send().await.unwrap();
    assert_eq!(missing.status(), 400);
    let error: Value = missing.json().await.unwrap();
    assert!(error["error"].as_str().unwrap().contains("month"), "{error}");
    let gateway = client.get(format!("{base}?month=2026-12")).bearer_auth(common::GATEWAY).send().await.unwrap();
    assert_eq!(gateway.status(), 403);

    // The console's subscriber page lists them too, in the viewer's units.
    let console = format!("http://{}/console", serving.address);
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login = client.post(format!("{console}/login")).form(&[("token", common::REGULATOR)]).send().await.unwrap();
    let cookie = login.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = client.get(format!("{console}/subscribers/A1")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let table = &html[html.find("<table id=\"alerts\">").expect("an alerts table")..];
    let table = &table[..table.find("</table>").unwrap()];
    assert!(
        table.contains("<td>data</td><td class=\"num\">80%</td><td class=\"num\">900 MB</td><td>accepted</td>"),
        "{table}"
    );
    serving.finish().await;
    app.cleanup().await;
}

/// The sums the import keeps cannot decide for a subscriber whose billing day changed (records
/// summed under the old day) or who got a refund dated after the evaluation: their records
/// are read, and they get the alerts those records reach.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_decide_where_the_sums_cannot() {
    let app = spawn_app_with(Options { now: at(FIRST), ..Options::default() }).await;
    let subscribers = "subscriber_id,msisdn,plan_id,billing_day\nB1,13900000001,P1,15\nB2,13900000002,P1,1\n";
    // B1: 700 MB on 2 Dec while its period started on the 15th (summed into 2026-11), then its
    // billing day becomes the 1st and 200 MB follow on 12 Dec: 900 MB of December's period.
    // B2: 96.00 yuan of calls and a 10.00 yuan charge on 2 Dec, refunded on 5 Dec.
    let usage = "record_id,subscriber_id,occurred_at,category,quantity,amount_fen,service_code,description
V1,B1,2026-12-02T09:00:00+08:00,data,716800,0,,
V2,B2,2026-12-02T09:00:00+08:00,voice,50,9600,,
V3,B2,2026-12-02T10:00:00+08:00,adjustment,1,1000,,补收
V4,B2,2026-12-05T10:00:00+08:00,adjustment,1,-1000,,退还
";
    let files = [
        (ImportKind::Plans, "plans.csv", PLANS),
        (ImportKind::Subscribers, "subscribers.csv", subscribers),
        (ImportKind::Usage, "usage.csv", usage),
    ];
    import_files(&app, &files).await;
    let moved = app.write_input("moved.csv", "subscriber_id,msisdn,plan_id,billing_day\nB1,13900000001,P1,1\n");
    app.import(ImportKind::Subscribers, &moved).await;
    let more = app.write_input("more.csv", "record_id,subscriber_id,occurred_at,category,quantity,amount_fen\nV5,B1,2026-12-12T09:00:00+08:00,data,204800,0\n");
    app.import(ImportKind::Usage, &more).await;

    app.app.alerts(Some(at("2026-12-20T12:00:00+08:00"))).await.unwrap();
    let b1: Vec<_> = alerts(&app).await.into_iter().filter(|a| a.0 == "B1").map(|a| (a.1, a.2, a.3)).collect();
    assert_eq!(b1, [("data".to_string(), 80, 921_600)]);
    app.cleanup().await;

    let app = spawn_app_with(Options { now: at(FIRST), ..Options::default() }).await;
    import_files(&app, &files).await;
    // On 3 Dec B2 had spent 106.00 yuan; the refund of the 5th does not undo that.
    app.app.alerts(Some(at(FIRST))).await.unwrap();
    let b2: Vec<_> = alerts(&app).await.into_iter().filter(|a| a.0 == "B2").map(|a| (a.1, a.2, a.3)).collect();
    assert_eq!(b2, [("spend".to_string(), 10000, 10_600)]);
    app.cleanup().await;
}

/// An evaluation's lease is judged on the process's clock, not the time it evaluates as of:
/// one held by a live evaluation keeps out another made as of any time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_evaluation_at_a_time_whatever_time_it_is_made_as_of() {
    let app = app_with(Backend::Sqlite, false, |_| {}).await;
    let now = app.clock.now();
    let live = "elsewhere/1/another-evaluation";
    assert!(app.app.store.acquire_lock("usage alerts", live, now, now + chrono::Duration::minutes(10)).await.unwrap());
    for as_of in ["2026-11-01T12:00:00+08:00", FIRST, "2027-03-01T12:00:00+08:00"] {
        let (report, _) = app.app.alerts(Some(at(as_of))).await.unwrap();
        assert!(report.skipped, "as of {as_of}: {report:?}");
    }
    assert!(alerts(&app).await.is_empty());
    app.app.store.release_lock("usage alerts", live).await.unwrap();
    let (report, _) = app.app.alerts(Some(at(FIRST))).await.unwrap();
    assert_eq!(report.raised, 3);
    app.cleanup().await;
}
