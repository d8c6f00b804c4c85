//! Delivery receipts through `billpush serve`, the receipt timeout, and a gateway without
//! idempotency whose answer never came.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use billpush::api::hash_token;
use billpush::config::{ApiToken, GatewayKind};
use billpush::domain::delivery::DeliveryStatus;
use billpush::export::ExportKind;
use common::{month, spawn_app_with, Backend, Options, TestApp};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const GATEWAY_TOKEN: &str = "gw-secret";
const REGULATOR_TOKEN: &str = "reg-secret";
const JASMIN_TOKEN: &str = "jasmin-secret";

fn tokens(c: &mut billpush::config::Config) {
    c.api.tokens = vec![
        ApiToken { name: "gateway".into(), token_sha256: hash_token(GATEWAY_TOKEN), role: "gateway".into() },
        ApiToken { name: "regulator".into(), token_sha256: hash_token(REGULATOR_TOKEN), role: "regulator".into() },
        ApiToken { name: "jasmin".into(), token_sha256: hash_token(JASMIN_TOKEN), role: "jasmin".into() },
    ];
}

/// Starts `billpush serve` for the test's configuration on a random port.
async fn serve(app: &TestApp) -> (SocketAddr, CancellationToken) {
    let server_app = app.server_app().await;
    let stop = CancellationToken::new();
    let (bound, address) = tokio::sync::oneshot::channel();
    let server_stop = stop.clone();
    tokio::spawn(async move { billpush::api::serve(server_app, "127.0.0.1:0", server_stop, bound).await.unwrap() });
    (address.await.unwrap(), stop)
}

async fn pushed_app(backend: Backend) -> TestApp {
    let app = spawn_app_with(Options { backend, configure: Box::new(tokens), ..Options::default() }).await;
    app.import_population(3).await;
    app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    app
}

async fn statuses(app: &TestApp) -> Vec<(String, String)> {
    let mut out: Vec<_> = app
        .export(ExportKind::Deliveries, "2026-10")
        .await
        .iter()
        .map(|d| {
            (
                d["gateway_message_id"].as_str().unwrap_or_default().to_string(),
                d["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn receipts_settle_accepted_messages_and_are_refused_without_the_gateway_role() {
    let app = pushed_app(Backend::Postgres).await;
    let (address, stop) = serve(&app).await;
    let url = format!("http://{address}/api/v1/dlr");
    let message_ids: Vec<String> = statuses(&app).await.into_iter().map(|(id, _)| id).collect();
    let client = reqwest::Client::new();
    let post = |token: Option<&str>, body: serde_json::Value| {
        let mut request = client.post(&url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let receipt =
        |id: &str, status: &str| json!({"message_id": id, "status": status, "at": "2027-01-02T10:00:00+08:00"});

    assert_eq!(post(None, receipt(&message_ids[0], "delivered")).await.unwrap().status(), 401);
    assert_eq!(post(Some("wrong"), receipt(&message_ids[0], "delivered")).await.unwrap().status(), 401);
    assert_eq!(post(Some(REGULATOR_TOKEN), receipt(&message_ids[0], "delivered")).await.unwrap().status(), 403);
    assert_eq!(post(Some(GATEWAY_TOKEN), receipt("no-such-id", "delivered")).await.unwrap().status(), 404);
    let malformed = post(Some(GATEWAY_TOKEN), json!({"message_id": 5})).await.unwrap();
    assert_eq!(malformed.status(), 400);
    assert!(malformed.json::<serde_json::Value>().await.unwrap()["error"].is_string());
    assert_eq!(post(Some(GATEWAY_TOKEN), receipt(&message_ids[0], "bounced")).await.unwrap().status(), 400);
    assert_eq!(statuses(&app).await.iter().filter(|(_, s)| s == "accepted").count(), 3, "nothing changed so far");

    assert_eq!(post(Some(GATEWAY_TOKEN), receipt(&message_ids[0], "delivered")).await.unwrap().status(), 202);
    assert_eq!(post(Some(GATEWAY_TOKEN), receipt(&message_ids[1], "expired")).await.unwrap().status(), 202);
    // The Jasmin credential in the URL posts Jasmin receipts only; the gateway token is not
    // taken from a URL at all.
    let jasmin_receipt = |token: &str| {
        client
            .post(format!("http://{address}/api/v1/dlr/jasmin?token={token}"))
            .form(&[("id", message_ids[2].as_str()), ("message_status", "DELIVRD"), ("level", "3")])
            .send()
    };
    assert_eq!(jasmin_receipt(GATEWAY_TOKEN).await.unwrap().status(), 403);
    assert_eq!(post(Some(JASMIN_TOKEN), receipt(&message_ids[2], "delivered")).await.unwrap().status(), 403);
    let mo = client
        .post(format!("http://{address}/api/v1/mo"))
        .bearer_auth(JASMIN_TOKEN)
        .json(&json!({"from": "13800138000", "to": "10001", "text": "TD", "received_at": "2027-01-02T10:00:00+08:00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(mo.status(), 403, "the Jasmin credential sends no replies");
    let jasmin = client
        .post(format!("http://{address}/api/v1/dlr/jasmin?token={JASMIN_TOKEN}"))
        .form(&[("id", message_ids[2].as_str()), ("message_status", "DELIVRD"), ("level", "3")])
        .send()
        .await
        .unwrap();
    assert_eq!(jasmin.status(), 200);
    assert_eq!(jasmin.text().await.unwrap(), "ACK/Jasmin", "anything else makes Jasmin resend");
    let unauthorised = client
        .post(format!("http://{address}/api/v1/dlr/jasmin?token=nope"))
        .form(&[("id", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);

    let after: Vec<String> = statuses(&app).await.into_iter().map(|(_, s)| s).collect();
    let mut expected = vec!["delivered".to_string(), "undeliverable".to_string(), "delivered".to_string()];
    let mut got = after.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected);
    let health = reqwest::get(format!("http://{address}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = reqwest::get(format!("http://{address}/metrics")).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("billpush_receipts_total"), "{metrics}");
    // Counted in the background, not per scrape, and every status is there (zero when none).
    // The recorder is the test process's one, shared with the other tests here, so only the
    // series are checked, not their values.
    let per_status: Vec<f64> = metrics
        .lines()
        .filter(|l| l.starts_with("billpush_notifications{status="))
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(per_status.len(), DeliveryStatus::ALL.len(), "{metrics}");
    assert!(metrics.contains("# HELP billpush_notifications "), "{metrics}");
    assert!(metrics.contains("# HELP billpush_receipts_total "), "{metrics}");
    // The open months on the test's clock (2027-01-02) and the current one, per status too.
    for month in ["2026-11", "2026-12", "2027-01"] {
        let series = metrics
            .lines()
            .filter(|l| l.starts_with("billpush_month_notifications{") && l.contains(&format!("month=\"{month}\"")))
            .count();
        assert_eq!(series, DeliveryStatus::ALL.len(), "{month}: {metrics}");
    }
    stop.cancel();
    app.cleanup().await;
}

#[tokio::test]
async fn a_message_without_receipt_becomes_unknown_and_a_late_receipt_still_settles_it() {
    let app = pushed_app(Backend::Sqlite).await;
    let now = billpush::clock::Clock::now(app.clock.as_ref());
    assert_eq!(
        app.app.store.expire_receipts(now - chrono::Duration::hours(72), now).await.unwrap(),
        0,
        "not yet 72 hours"
    );
    assert_eq!(app.app.store.expire_receipts(now + chrono::Duration::seconds(1), now).await.unwrap(), 3);
    assert!(statuses(&app).await.iter().all(|(_, s)| s == "unknown"));

    // The receipt comes three days later, as late receipts do.
    app.clock.advance(chrono::Duration::days(3));
    let (address, stop) = serve(&app).await;
    let id = statuses(&app).await[0].0.clone();
    let answer = reqwest::Client::new()
        .post(format!("http://{address}/api/v1/dlr"))
        .bearer_auth(GATEWAY_TOKEN)
        .json(&json!({"message_id": id, "status": "delivered", "at": "2027-01-05T10:00:00+08:00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    assert_eq!(statuses(&app).await.iter().filter(|(_, s)| s == "delivered").count(), 1);
    stop.cancel();
    app.cleanup().await;
}

#[tokio::test]
async fn a_gateway_without_idempotency_is_never_sent_a_message_twice_after_a_lost_answer() {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::path("/send"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_string("Success \"late\"").set_delay(Duration::from_secs(2)),
        )
        .mount(&server)
        .await;
    let uri = server.uri();
    let app = spawn_app_with(Options {
        configure: Box::new(move |c| {
            c.gateway.kind = GatewayKind::Jasmin;
            c.gateway.url = uri;
            c.gateway.idempotent = false;
            c.gateway.timeout_ms = 300;
            c.gateway.retry_base_ms = 10;
        }),
        ..Options::default()
    })
    .await;
    app.import_population(3).await;
    let report = app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    assert_eq!((report.push.unknown, report.push.retried, report.push.accepted), (3, 0, 0));
    assert_eq!(server.received_requests().await.unwrap().len(), 3, "one request each, no resend");
    let status = app.app.status(month("2026-10")).await.unwrap();
    assert_eq!(status.deliveries, [("unknown".to_string(), 3)]);
    // A later run resends nothing either.
    let again = app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    assert_eq!(again.push.unknown + again.push.accepted, 0);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    app.cleanup().await;
}

#[tokio::test]
async fn implausible_times_are_refused_and_change_nothing() {
    let app = pushed_app(Backend::Postgres).await;
    let (address, stop) = serve(&app).await;
    let client = reqwest::Client::new();
    let id = statuses(&app).await[0].0.clone();
    let receipt = |at: &str| {
        client
            .post(format!("http://{address}/api/v1/dlr"))
            .bearer_auth(GATEWAY_TOKEN)
            .json(&json!({"message_id": id, "status": "delivered", "at": at}))
            .send()
    };
    // Accepted at the test's now, 2027-01-02T10:00:00+08:00.
    for at in ["0000-01-01T00:00:00Z", "9999-12-31T23:00:00-10:00", "2027-01-02T09:54:59+08:00"] {
        let answer = receipt(at).await.unwrap();
        assert_eq!(answer.status(), 400, "{at}");
        assert!(answer.text().await.unwrap().contains("at: "), "{at}: the parameter is named");
    }
    assert!(statuses(&app).await.iter().all(|(_, s)| s == "accepted"), "nothing changed");
    assert_eq!(receipt("2027-01-02T09:58:00+08:00").await.unwrap().status(), 202, "a clock a little behind");

    for at in ["0000-01-01T00:00:00Z", "9999-12-31T23:00:00-10:00"] {
        let answer = client
            .post(format!("http://{address}/api/v1/mo"))
            .bearer_auth(GATEWAY_TOKEN)
            .json(&json!({"from": "13900000000", "to": "10001", "text": "TD", "received_at": at}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{at}");
        assert!(answer.text().await.unwrap().contains("received_at"), "{at}");
    }
    let audit = app.app.store.audit_page("", 100).await.unwrap();
    assert!(audit.iter().all(|e| e.method != "MO"), "no opt-out was written: {audit:?}");
    stop.cancel();
    app.cleanup().await;
}
