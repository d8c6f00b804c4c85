//! The regulator and operator API on a real server (random port) over a real database:
//! the auth matrix, filters and pagination against the database's own answer, abuse, and
//! the audit log.

mod common;

use std::net::SocketAddr;

use billpush::api::hash_token;
use billpush::config::ApiToken;
use billpush::export::ExportKind;
use common::{spawn_app_with, Backend, Options, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const REGULATOR: &str = "regulator-secret";
const OPERATOR: &str = "operator-secret";
const GATEWAY: &str = "gateway-secret";

struct Api {
    app: TestApp,
    base: String,
    stop: CancellationToken,
    client: reqwest::Client,
}

async fn spawn_api() -> Api {
    let app = spawn_app_with(Options {
        backend: Backend::Postgres,
        configure: Box::new(|c| {
            c.api.tokens = vec![
                ApiToken { name: "reg".into(), token_sha256: hash_token(REGULATOR), role: "regulator".into() },
                ApiToken { name: "op".into(), token_sha256: hash_token(OPERATOR), role: "operator".into() },
                ApiToken { name: "gw".into(), token_sha256: hash_token(GATEWAY), role: "gateway".into() },
            ];
        }),
        ..Options::default()
    })
    .await;
    app.import_fixture().await;
    for month in ["2026-08", "2026-09", "2026-10"] {
        app.run(month, "2027-01-01T00:00:00+08:00").await;
    }
    let server = app.server_app().await;
    let stop = CancellationToken::new();
    let (bound, address) = tokio::sync::oneshot::channel::<SocketAddr>();
    let server_stop = stop.clone();
    tokio::spawn(async move { billpush::api::serve(server, "127.0.0.1:0", server_stop, bound).await.unwrap() });
    let base = format!("http://{}", address.await.unwrap());
    Api { app, base, stop, client: reqwest::Client::new() }
}

impl Api {
    async fn call(&self, method: Method, path: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn get_json(&self, path: &str, token: &str) -> Value {
        let (status, body) = self.call(Method::GET, path, Some(token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    async fn finish(self) {
        self.stop.cancel();
        self.app.cleanup().await;
    }
}

#[tokio::test]
async fn every_route_answers_every_kind_of_token_as_its_role_allows() {
    let api = spawn_api().await;
    let reads = [
        "/api/v1/deliveries?month=2026-10",
        "/api/v1/deliveries.csv?month=2026-10",
        "/api/v1/bills/S01000000/2026-10",
        "/api/v1/flags?month=2026-10",
        "/api/v1/spam?month=2026-10&flagged=true",
        "/api/v1/runs",
    ];
    for path in reads {
        assert_eq!(api.call(Method::GET, path, None).await.0, 401, "{path} without token");
        assert_eq!(api.call(Method::GET, path, Some("nope")).await.0, 401, "{path} with an unknown token");
        assert_eq!(api.call(Method::GET, path, Some(REGULATOR)).await.0, 200, "{path} as regulator");
        assert_eq!(api.call(Method::GET, path, Some(OPERATOR)).await.0, 200, "{path} as operator");
        assert_eq!(api.call(Method::GET, path, Some(GATEWAY)).await.0, 403, "{path} as gateway");
    }
    let audit = "/api/v1/audit";
    assert_eq!(api.call(Method::GET, audit, None).await.0, 401);
    assert_eq!(api.call(Method::GET, audit, Some("nope")).await.0, 401);
    assert_eq!(api.call(Method::GET, audit, Some(REGULATOR)).await.0, 403);
    assert_eq!(api.call(Method::GET, audit, Some(OPERATOR)).await.0, 200);
    assert_eq!(api.call(Method::GET, audit, Some(GATEWAY)).await.0, 403);
    for path in ["/api/v1/dlr", "/api/v1/dlr/jasmin", "/api/v1/mo"] {
        assert_eq!(api.call(Method::POST, path, None).await.0, 401, "{path}");
        assert_eq!(api.call(Method::POST, path, Some("nope")).await.0, 401, "{path}");
        assert_eq!(api.call(Method::POST, path, Some(REGULATOR)).await.0, 403, "{path}");
        assert_eq!(api.call(Method::POST, path, Some(OPERATOR)).await.0, 403, "{path}");
        // Jasmin's route takes its own credential only (tests/receipts.rs).
        let gateway = if path == "/api/v1/dlr/jasmin" { 403 } else { 400 };
        assert_eq!(
            api.call(Method::POST, path, Some(GATEWAY)).await.0,
            gateway,
            "{path}: a gateway token is admitted, then the empty body is refused"
        );
    }
    for path in ["/healthz", "/metrics"] {
        assert_eq!(api.call(Method::GET, path, None).await.0, 200, "{path} is open");
    }
    api.finish().await;
}

#[tokio::test]
async fn pages_and_filters_return_exactly_what_the_database_holds() {
    let api = spawn_api().await;
    let mut expected: Vec<String> = api
        .app
        .export(ExportKind::Deliveries, "2026-10")
        .await
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_string())
        .collect();
    expected.sort();
    let mut walked = Vec::new();
    let mut path = "/api/v1/deliveries?month=2026-10&limit=3".to_string();
    loop {
        let page = api.get_json(&path, REGULATOR).await;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        walked.extend(items.iter().map(|d| d["id"].as_str().unwrap().to_string()));
        for item in items {
            let history: Vec<&str> =
                item["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
            // A `run` into the in-process queue writes a bill's SMS `queued` with the bill.
            let expected: &[&str] =
                if item["status"] == "accepted" { &["queued", "sending", "accepted"] } else { &["suppressed"] };
            assert_eq!(history, expected, "{item}");
            assert!(item["text"].as_str().unwrap().starts_with("【示例电信】"));
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/deliveries?month=2026-10&limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(walked, expected, "every row once, in a stable order, across page boundaries");

    let suppressed = api.get_json("/api/v1/deliveries?month=2026-10&status=suppressed", REGULATOR).await;
    let ids: Vec<&str> =
        suppressed["items"].as_array().unwrap().iter().map(|d| d["subscriber_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["S01000009"]);
    // Any accepted input form of a number finds the same rows.
    for form in ["14611178002", "+8614611178002", "8614611178002"] {
        let mine = api.get_json(&format!("/api/v1/deliveries?msisdn={}", form.replace('+', "%2B")), REGULATOR).await;
        assert_eq!(mine["items"].as_array().unwrap().len(), 3, "three months for {form}");
    }
    let none = api.get_json("/api/v1/deliveries?from=2030-01-01T00:00:00Z", REGULATOR).await;
    assert!(none["items"].as_array().unwrap().is_empty());
    let all = api
        .get_json("/api/v1/deliveries?from=2000-01-01T00:00:00Z&to=2030-01-01T00:00:00Z&limit=1000", REGULATOR)
        .await;
    assert_eq!(
        all["items"].as_array().unwrap().len(),
        36,
        "eleven bill SMS and the opted-out S01000009's flag notice in each of three months"
    );

    let (status, csv) = api.call(Method::GET, "/api/v1/deliveries.csv?month=2026-10", Some(REGULATOR)).await;
    assert_eq!(status, 200);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), expected.len());
    assert!(rows.iter().all(|r| r[2].starts_with("'+")), "numbers are neutralised against formula injection");

    let bill = api.get_json("/api/v1/bills/S01000000/2026-10", REGULATOR).await;
    assert_eq!(bill["total_fen"], 9405);
    let flags = api.get_json("/api/v1/flags?month=2026-10", REGULATOR).await;
    assert_eq!(flags["items"].as_array().unwrap().len(), api.app.export(ExportKind::Flags, "2026-10").await.len());
    let spam = api.get_json("/api/v1/spam?month=2026-10&flagged=true", REGULATOR).await;
    let exported = api.app.export(ExportKind::Spam, "2026-10").await;
    let flagged: Vec<&Value> = exported.iter().filter(|n| n["flagged"] == true).collect();
    assert!(!flagged.is_empty());
    assert_eq!(
        spam["items"].as_array().unwrap().iter().collect::<Vec<_>>(),
        flagged,
        "the API lists what export lists"
    );
    let runs = api.get_json("/api/v1/runs", OPERATOR).await;
    assert_eq!(runs["items"].as_array().unwrap().len(), 3);
    assert_eq!(runs["items"][0]["month"], "2026-10");
    assert_eq!(runs["items"][0]["bills"], 11);
    api.finish().await;
}

#[tokio::test]
async fn abusive_requests_get_a_precise_4xx_and_change_nothing() {
    let api = spawn_api().await;
    let before = api.app.export(ExportKind::Deliveries, "2026-10").await;
    let cases = [
        ("/api/v1/deliveries?limit=0", "limit"),
        ("/api/v1/deliveries?limit=-5", "limit"),
        ("/api/v1/deliveries?limit=1001", "limit"),
        ("/api/v1/deliveries?limit=99999999999999999999", "limit"),
        ("/api/v1/deliveries?month=2026-13", "month"),
        ("/api/v1/deliveries?month=2026-10%27%20OR%201=1--", "month"),
        ("/api/v1/deliveries?cursor=zz", "cursor"),
        ("/api/v1/deliveries?msisdn=%27;%20DROP%20TABLE%20notifications;--", "msisdn"),
        ("/api/v1/deliveries?status=%3Cscript%3Ealert(1)%3C/script%3E", "status"),
        ("/api/v1/deliveries?from=yesterday", "from"),
        // Invalid UTF-8 arrives as replacement characters: not a month.
        ("/api/v1/deliveries?month=%FF%FE", "month"),
        ("/api/v1/bills/S01000000/10-2026", "month"),
        ("/api/v1/flags", "month"),
        ("/api/v1/spam?month=2026-10&flagged=maybe", "flagged"),
    ];
    for (path, parameter) in cases {
        let (status, body) = api.call(Method::GET, path, Some(REGULATOR)).await;
        assert_eq!(status, 400, "{path}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: JSON error, got {body}"));
        assert!(error["error"].as_str().unwrap().starts_with(parameter), "{path}: {body}");
        assert!(!body.to_lowercase().contains("select") && !body.contains("sqlx"), "no SQL in answers: {body}");
    }
    let (status, body) = api.call(Method::GET, "/api/v1/bills/%3Cscript%3E/2026-10", Some(REGULATOR)).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = api.call(Method::GET, "/api/v1/no-such-route", Some(REGULATOR)).await;
    assert_eq!(status, 404);
    let huge = "x".repeat(200 * 1024);
    let oversized =
        api.client.post(format!("{}/api/v1/dlr", api.base)).bearer_auth(GATEWAY).body(huge).send().await.unwrap();
    assert_eq!(oversized.status(), 413);
    assert!(oversized.json::<Value>().await.unwrap()["error"].is_string(), "axum's own refusals are JSON too");
    assert_eq!(api.app.export(ExportKind::Deliveries, "2026-10").await, before, "nothing changed");
    api.finish().await;
}

#[tokio::test]
async fn regulator_requests_are_audited_and_the_audit_log_cannot_be_changed() {
    let api = spawn_api().await;
    api.get_json("/api/v1/deliveries?month=2026-10&limit=5", REGULATOR).await;
    assert_eq!(api.call(Method::GET, "/api/v1/audit", Some(REGULATOR)).await.0, 403);
    api.call(Method::GET, "/api/v1/deliveries?limit=0", Some(REGULATOR)).await;
    let (status, csv) =
        api.call(Method::GET, "/api/v1/deliveries.csv?month=2026-10&token=secret", Some(REGULATOR)).await;
    assert_eq!(status, 200);
    let csv_rows = csv.lines().count() as i64 - 1;
    assert!(csv_rows > 0);
    assert_eq!(api.call(Method::GET, "/api/v1/admin", Some(REGULATOR)).await.0, 404);
    let log = api.get_json("/api/v1/audit?limit=1000", OPERATOR).await;
    let entries = log["items"].as_array().unwrap();
    let summary: Vec<(String, String, i64, i64)> = entries
        .iter()
        .map(|e| {
            (
                e["token"].as_str().unwrap().to_string(),
                e["path"].as_str().unwrap().to_string(),
                e["status"].as_i64().unwrap(),
                e["rows"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("reg".to_string(), "/api/v1/deliveries?month=2026-10&limit=5".to_string(), 200, 5),
            ("reg".to_string(), "/api/v1/audit".to_string(), 403, 0),
            ("reg".to_string(), "/api/v1/deliveries?limit=0".to_string(), 400, 0),
            // A streamed CSV counts its rows; a token in the query string is not kept.
            ("reg".to_string(), "/api/v1/deliveries.csv?month=2026-10&token=…".to_string(), 200, csv_rows),
            // A path no route serves is audited too.
            ("reg".to_string(), "/api/v1/admin".to_string(), 404, 0),
        ]
    );
    assert!(entries.iter().all(|e| e["method"] == "GET" && e["at"].is_string()));
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::PATCH] {
        let (status, body) = api.call(method.clone(), "/api/v1/audit", Some(OPERATOR)).await;
        assert_eq!(status, 405, "{method} on the audit log");
        assert!(serde_json::from_str::<Value>(&body).unwrap()["error"].is_string(), "{body}");
    }
    let after = api.get_json("/api/v1/audit?limit=1000", OPERATOR).await;
    let first_three: Vec<Value> = after["items"].as_array().unwrap()[..3].to_vec();
    assert_eq!(first_three, entries[..3].to_vec(), "earlier entries unchanged; only appends");
    api.finish().await;
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_that_answer() {
    let api = spawn_api().await;
    let (status, body) = api.call(Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    let document: Value = serde_json::from_str(&body).unwrap();
    let mut documented = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            documented.push(format!("{method} {path}"));
            let concrete =
                path.replace("{subscriber_id}", "S01000000").replace("{month}", "2026-10").replace("{id}", "1");
            let method: Method = method.to_uppercase().parse().unwrap();
            let token =
                operation["x-roles"].as_array().and_then(|r| r.first()).map(|role| match role.as_str().unwrap() {
                    "regulator" => REGULATOR,
                    "operator" => OPERATOR,
                    _ => GATEWAY,
                });
            let (status, body) = api.call(method.clone(), &concrete, token).await;
            assert!(status != 404 && status != 405, "{method} {path} is documented but answers {status}: {body}");
        }
    }
    documented.sort();
    let mut served = vec![
        "get /api/v1/alerts",
        "get /api/v1/audit",
        "get /api/v1/bills/{subscriber_id}/{month}",
        "get /api/v1/deliveries",
        "get /api/v1/deliveries.csv",
        "get /api/v1/disputes",
        "get /api/v1/flags",
        "get /api/v1/openapi.json",
        "get /api/v1/reports/{month}",
        "get /api/v1/runs",
        "get /api/v1/spam",
        "get /healthz",
        "get /metrics",
        "post /api/v1/dlr",
        "post /api/v1/dlr/jasmin",
        "post /api/v1/mo",
        "post /api/v1/subscribers/{subscriber_id}/consent",
        "post /api/v1/disputes",
        "post /api/v1/disputes/{id}/resolve",
    ];
    served.sort();
    assert_eq!(documented, served);
    api.finish().await;
}

#[tokio::test]
async fn an_operator_changes_consent_with_a_reason_and_it_is_kept_and_audited() {
    let api = spawn_api().await;
    let url = |id: &str| format!("{}/api/v1/subscribers/{id}/consent", api.base);
    let post = |id: &str, token: &str, body: Value| api.client.post(url(id)).bearer_auth(token).json(&body).send();
    let body = json!({"bill_sms": false, "reason": "customer asked at the service desk, ticket 4711"});
    assert_eq!(post("S01000000", REGULATOR, body.clone()).await.unwrap().status(), 403);
    assert_eq!(post("S01000000", OPERATOR, json!({"bill_sms": false, "reason": " "})).await.unwrap().status(), 400);
    assert_eq!(post("NOBODY", OPERATOR, body.clone()).await.unwrap().status(), 404);
    let changed: Value = post("S01000000", OPERATOR, body.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(changed, json!({"subscriber_id": "S01000000", "bill_sms": false, "changed": true}));
    let again: Value = post("S01000000", OPERATOR, body).await.unwrap().json().await.unwrap();
    assert_eq!(again["changed"], false);
    // Usage alerts are a choice of their own, changed alone or with the bill SMS.
    let neither = post("S01000000", OPERATOR, json!({"reason": "no choice named"})).await.unwrap();
    assert_eq!(neither.status(), 400);
    let alerts = json!({"alert_sms": false, "bill_sms": false, "reason": "no reminders, ticket 4712"});
    let changed: Value = post("S01000000", OPERATOR, alerts).await.unwrap().json().await.unwrap();
    assert_eq!(changed, json!({"subscriber_id": "S01000000", "bill_sms": false, "alert_sms": false, "changed": true}));

    let mut tx = api.app.app.store.begin().await.unwrap();
    let kept: Vec<(String, i64, String, String)> = sqlx::query_as(
        "SELECT what, bill_sms, source, reason FROM consent_changes WHERE subscriber_id = 'S01000000' ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    drop(tx);
    let operator = |what: &str, reason: &str| (what.to_string(), 0, "operator".to_string(), reason.to_string());
    assert_eq!(
        kept,
        [
            operator("bill_sms", "customer asked at the service desk, ticket 4711"),
            operator("alert_sms", "no reminders, ticket 4712")
        ]
    );
    let audit = api.get_json("/api/v1/audit?limit=1000", OPERATOR).await;
    let consent_entries = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["path"].as_str().unwrap().ends_with("/consent") && e["method"] == "POST")
        .count();
    assert_eq!(consent_entries, 7, "every attempt is audited, refused or not");
    api.finish().await;
}
