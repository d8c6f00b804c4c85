//! Subscribers' replies through `POST /api/v1/mo`: every opt-out keyword form, spam reports,
//! bill details, and what each does to later pushes.

mod common;

use billpush::export::ExportKind;
use common::{role_tokens, spawn_app_with, Backend, Options, Serving, TestApp, GATEWAY, REGULATOR};
use serde_json::{json, Value};

/// The fixture imported and `serve` on a port of its own; the reply URL and the server.
async fn serve(backend: Backend, rabbitmq: bool) -> (TestApp, String, Serving) {
    let app = spawn_app_with(Options {
        backend,
        rabbitmq,
        configure: Box::new(|c| {
            c.api.tokens = role_tokens();
        }),
        ..Options::default()
    })
    .await;
    app.import_fixture().await;
    let serving = app.serve_api().await;
    let url = format!("http://{}/api/v1/mo", serving.address);
    (app, url, serving)
}

async fn reply(url: &str, token: &str, from: &str, text: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .json(&json!({"from": from, "to": "10001", "text": text, "received_at": "2026-11-02T10:00:00+08:00"}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The texts in the sink's outbox once it holds `count` messages (waited for, up to 30 s).
async fn wait_for_outbox(app: &TestApp, count: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let outbox = app.outbox();
        if outbox.len() >= count {
            return outbox.iter().map(|m| m["text"].as_str().unwrap().to_string()).collect();
        }
        assert!(std::time::Instant::now() < deadline, "{} of {count} messages after 30 s", outbox.len());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

async fn reply_at(url: &str, from: &str, text: &str, at: &str) -> Value {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(GATEWAY)
        .json(&json!({"from": from, "to": "10001", "text": text, "received_at": at}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{text}");
    response.json().await.unwrap()
}

/// A bare 退订 is what subscribers send to stop a VAS: it must not silence the bill that
/// warns them. TDZD opts out (confirmed once, with how to come back), KTZD opts back in.
#[tokio::test]
async fn a_bare_td_changes_nothing_tdzd_opts_out_once_and_ktzd_opts_back_in() {
    let (app, url, serving) = serve(Backend::Postgres, false).await;
    let at = "2026-11-02T10:00:00+08:00";
    let sender = "14611178002";
    for text in ["退订", "TD", "ＳＴＯＰ"] {
        let answer = reply_at(&url, sender, text, at).await;
        assert_eq!((answer["action"].as_str(), answer["answered"].as_bool()), (Some("opt_out_help"), Some(true)));
    }
    app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    let bills = app.export(ExportKind::Bills, "2026-10").await;
    let mine = bills.iter().find(|b| b["subscriber_id"] == "S01000000").unwrap();
    assert_eq!(mine["status"], "accepted", "the bill still goes out");

    let first = reply_at(&url, sender, "ＴＤＺＤ", at).await;
    assert_eq!((first["action"].as_str(), first["answered"].as_bool()), (Some("opt_out"), Some(true)));
    let again = reply_at(&url, sender, "退订账单", at).await;
    assert_eq!(
        (again["action"].as_str(), again["answered"].as_bool()),
        (Some("opt_out"), Some(false)),
        "not confirmed twice"
    );
    let back = reply_at(&url, sender, "ktzd", at).await;
    assert_eq!((back["action"].as_str(), back["answered"].as_bool()), (Some("opt_in"), Some(true)));

    // Without a broker, serve pushes the five answers itself; October's ten bill SMS and the
    // opted-out S01000009's flag notice went out with the run.
    let texts: Vec<String> = wait_for_outbox(&app, 16).await;
    assert_eq!(texts.len(), 16);
    let help: Vec<&String> = texts.iter().filter(|t| t.contains("未退订任何业务")).collect();
    assert_eq!(help.len(), 3);
    assert!(help.iter().all(|t| t.contains("TDZD") && t.contains("0000") && t.contains("10000")), "{help:?}");
    assert_eq!(texts.iter().filter(|t| t.contains("已退订月度账单") && t.contains("KTZD")).count(), 1);
    assert_eq!(texts.iter().filter(|t| t.contains("已恢复接收") && t.contains("TDZD")).count(), 1);

    // Both changes are kept with their time and source.
    let mut tx = app.app.store.begin().await.unwrap();
    let changes: Vec<(i64, String)> =
        sqlx::query_as("SELECT bill_sms, source FROM consent_changes WHERE subscriber_id = 'S01000000' ORDER BY id")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    drop(tx);
    assert_eq!(changes, [(0, "reply".to_string()), (1, "reply".to_string())]);
    serving.finish().await;
    app.cleanup().await;
}

#[tokio::test]
async fn past_the_daily_limit_replies_take_effect_but_are_not_answered() {
    let (app, url, serving) = serve(Backend::Sqlite, false).await;
    for n in 1..=10 {
        let answer = reply_at(&url, "14611178002", "ZD", "2026-11-02T09:00:00+08:00").await;
        assert_eq!(answer["answered"], true, "answer {n}");
    }
    let eleventh = reply_at(&url, "14611178002", "ZD", "2026-11-02T23:59:00+08:00").await;
    assert_eq!((eleventh["action"].as_str(), eleventh["answered"].as_bool()), (Some("details"), Some(false)));
    let opt_out = reply_at(&url, "14611178002", "TDZD", "2026-11-02T23:59:30+08:00").await;
    assert_eq!((opt_out["action"].as_str(), opt_out["answered"].as_bool()), (Some("opt_out"), Some(false)));
    // The opt-out took effect all the same, and the next local day answers again.
    app.clock.advance(chrono::Duration::days(1));
    let next_day = reply_at(&url, "14611178002", "ZD", "2026-11-03T00:00:00+08:00").await;
    assert_eq!(next_day["answered"], true);
    app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    let bills = app.export(ExportKind::Bills, "2026-10").await;
    assert_eq!(bills.iter().find(|b| b["subscriber_id"] == "S01000000").unwrap()["status"], "suppressed");
    serving.finish().await;
    app.cleanup().await;
}

#[tokio::test]
async fn spam_reports_details_and_unknown_senders() {
    let (app, url, serving) = serve(Backend::Sqlite, false).await;
    app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    for reporter in ["15126614242", "19482637352", "18407608741"] {
        let (status, body) = reply(&url, GATEWAY, reporter, "ＪＢ　１０６５９９９９９９").await;
        assert_eq!((status, body["action"].as_str()), (202, Some("spam_report")));
    }
    let spam = app.export(ExportKind::Spam, "2026-11").await;
    let reported = spam.iter().find(|n| n["number"] == "1065999999").expect("the reported number is counted");
    assert_eq!((reported["distinct_reporters"].as_i64(), reported["flagged"].as_bool()), (Some(3), Some(true)));

    let (status, body) = reply(&url, GATEWAY, "+8614611178002", "zd").await;
    assert_eq!((status, body["action"].as_str()), (202, Some("details")));
    app.run("2026-11", "2026-11-05T00:00:00+08:00").await;
    let details = app
        .outbox()
        .into_iter()
        .find(|m| m["text"].as_str().unwrap().contains("94.05"))
        .expect("the details reply carries the October total");
    assert!(details["text"].as_str().unwrap().starts_with("【示例电信】"));

    assert_eq!(reply(&url, GATEWAY, "13999999999", "TD").await.0, 404, "unknown sender");
    assert_eq!(reply(&url, GATEWAY, "not a number", "TD").await.0, 400);
    assert_eq!(reply(&url, REGULATOR, "14611178002", "TD").await.0, 403);
    let (status, body) = reply(&url, GATEWAY, "14611178002", "hello there").await;
    assert_eq!((status, body["action"].as_str()), (202, Some("ignored")));
    serving.finish().await;
    app.cleanup().await;
}

/// Through RabbitMQ an answer is written, published and marked queued at once, as a bill is:
/// the broker holds it before the reply is acknowledged, and its history shows both steps.
#[tokio::test]
async fn an_answer_through_rabbitmq_is_queued_before_the_reply_is_acknowledged() {
    let (app, url, serving) = serve(Backend::Postgres, true).await;

    let (status, body) = reply(&url, GATEWAY, "+8614611178002", "ZD").await;
    assert_eq!((status, body["action"].as_str()), (202, Some("details")));
    let answers = app.export(ExportKind::Deliveries, "2026-11").await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["status"], "queued");
    let id = answers[0]["id"].as_str().unwrap().to_string();
    let history = app.app.store.delivery_events(std::slice::from_ref(&id)).await.unwrap();
    let steps: Vec<&str> = history[&id].iter().map(|(status, _)| status.as_str()).collect();
    assert_eq!(steps, ["pending", "queued"]);
    let broker = app.app.broker().await.unwrap().expect("a broker is configured");
    use billpush::queue::Queue;
    assert_eq!(broker.depth().await.unwrap(), 1, "the broker holds the answer");

    // The server stops through its token, and its receipt sweeper with it.
    serving.finish().await;
    app.cleanup().await;
}

/// A subscriber's own opt-out is the latest word: re-importing the subscriber file with
/// `bill_sms = true` keeps it (counted as consent_kept), an empty cell keeps what is stored,
/// and only the subscriber's KTZD (or an operator) undoes it.
#[tokio::test]
async fn a_reimport_never_undoes_an_opt_out_by_reply_and_empty_cells_keep_what_is_stored() {
    let (app, url, serving) = serve(Backend::Postgres, false).await;
    let opt_out = reply_at(&url, "14611178002", "TDZD", "2026-11-02T10:00:00+08:00").await;
    assert_eq!(opt_out["action"], "opt_out");
    let header = "subscriber_id,msisdn,name,plan_id,language,billing_day,status,bill_sms\n";
    let file = app.write_input(
        "again.csv",
        &format!("{header}S01000000,+8614611178002,张伟,P58,,,,true\nS01000001,15126614242,王芳,P19,en,,,false\n"),
    );
    let counts = app.import(billpush::import::ImportKind::Subscribers, &file).await;
    assert_eq!((counts.accepted, counts.duplicate, counts.consent_kept), (2, 0, 1));
    let bill_sms = |id: &'static str| {
        let store = app.app.store.clone();
        async move {
            let mut tx = store.begin().await.unwrap();
            let row: (i64, String, i64) =
                sqlx::query_as("SELECT bill_sms, language, billing_day FROM subscribers WHERE subscriber_id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .unwrap();
            row
        }
    };
    assert_eq!(bill_sms("S01000000").await, (0, "zh".to_string(), 1), "the reply's opt-out stands");
    assert_eq!(bill_sms("S01000001").await, (0, "en".to_string(), 1), "an import may opt a subscriber out");

    // An import's own opt-out is no subscriber's word: a later import undoes it.
    let file = app.write_input("later.csv", &format!("{header}S01000001,15126614242,王芳,P19,,,,true\n"));
    let counts = app.import(billpush::import::ImportKind::Subscribers, &file).await;
    assert_eq!((counts.accepted, counts.consent_kept), (1, 0));
    assert_eq!(bill_sms("S01000001").await, (1, "en".to_string(), 1), "the empty language cell kept en");

    // KTZD undoes the subscriber's own opt-out; the history holds every change with its source.
    let back = reply_at(&url, "14611178002", "KTZD", "2026-11-02T11:00:00+08:00").await;
    assert_eq!(back["action"], "opt_in");
    assert_eq!(bill_sms("S01000000").await.0, 1);
    let mut tx = app.app.store.begin().await.unwrap();
    let history: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT subscriber_id, bill_sms, source FROM consent_changes ORDER BY id")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
    drop(tx);
    let history: Vec<(&str, i64, &str)> = history.iter().map(|(s, b, o)| (s.as_str(), *b, o.as_str())).collect();
    assert_eq!(
        history,
        [("S01000000", 0, "reply"), ("S01000001", 0, "import"), ("S01000001", 1, "import"), ("S01000000", 1, "reply")]
    );
    serving.finish().await;
    app.cleanup().await;
}

/// Without a broker, `serve` pushes the answers itself: the subscriber's confirmation is in
/// the outbox without waiting for the month's next run.
#[tokio::test]
async fn without_a_broker_serve_pushes_the_answer_itself() {
    let (app, url, serving) = serve(Backend::Sqlite, false).await;
    let answer = reply_at(&url, "14611178002", "TDZD", "2026-11-02T10:00:00+08:00").await;
    assert_eq!((answer["action"].as_str(), answer["answered"].as_bool()), (Some("opt_out"), Some(true)));
    wait_for_outbox(&app, 1).await;
    let confirmation = &app.outbox()[0];
    assert!(confirmation["text"].as_str().unwrap().contains("KTZD"), "{confirmation}");
    assert_eq!(confirmation["to"], "+8614611178002");
    serving.finish().await;
    let deliveries = app.export(ExportKind::Deliveries, "2026-11").await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0]["status"], "accepted");
    app.cleanup().await;
}
