//! Subscribers' replies through `POST /api/v1/mo`: every opt-out keyword form, spam reports,
//! bill details, and what each does to later pushes.

mod common;

use billpush::api::hash_token;
use billpush::config::ApiToken;
use billpush::export::ExportKind;
use common::{spawn_app_with, Backend, Options, Serving, TestApp};
use serde_json::{json, Value};

const GATEWAY: &str = "gateway-secret";
const REGULATOR: &str = "regulator-secret";

/// The fixture imported and `serve` on a port of its own; the reply URL and the server.
async fn serve(backend: Backend, rabbitmq: bool) -> (TestApp, String, Serving) {
    let app = spawn_app_with(Options {
        backend,
        rabbitmq,
        configure: Box::new(|c| {
            c.api.tokens = vec![
                ApiToken { name: "gw".into(), token_sha256: hash_token(GATEWAY), role: "gateway".into() },
                ApiToken { name: "reg".into(), token_sha256: hash_token(REGULATOR), role: "regulator".into() },
            ];
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

#[tokio::test]
async fn every_opt_out_form_opts_out_before_the_next_push_and_is_confirmed() {
    let (app, url, serving) = serve(Backend::Postgres, false).await;
    let forms = ["TD", "td", "ＴＤ", "ｔｄ", "TDZD", "T", "退订", "STOP", "stop", "UNSUBSCRIBE", "ＳＴＯＰ"];
    for form in forms {
        let (status, body) = reply(&url, GATEWAY, "14611178002", form).await;
        assert_eq!((status, body["action"].as_str()), (202, Some("opt_out")), "{form:?}");
    }
    // The next month's bill for that subscriber is not sent.
    app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    let bills = app.export(ExportKind::Bills, "2026-10").await;
    let mine = bills.iter().find(|b| b["subscriber_id"] == "S01000000").unwrap();
    assert_eq!(mine["status"], "suppressed");
    // Each opt-out was confirmed by SMS, through the queue, in the month it was asked in.
    let report = app.run("2026-11", "2026-11-05T00:00:00+08:00").await;
    assert_eq!(report.push.accepted, forms.len() as u64);
    let confirmations: Vec<Value> =
        app.outbox().into_iter().filter(|m| m["text"].as_str().unwrap().contains("退订月度账单短信")).collect();
    assert_eq!(confirmations.len(), forms.len());
    assert!(confirmations.iter().all(|m| m["to"] == "+8614611178002"));
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
