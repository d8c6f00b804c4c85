//! Disputes (docs/contract.md §7a) through the running server: a subscriber's `SS` opens a
//! case about the flagged charges and is told its number; a second `SS` is given the open case;
//! an operator resolves it through the API and the subscriber is told the outcome; regulators
//! read but cannot act; cases past `disputes.sla` are overdue; `export disputes` lists what the
//! API lists.

mod common;

use billpush::export::ExportKind;
use chrono::{DateTime, Utc};
use common::{at, fixture_app_with_tokens, fixture_dir, Backend, Serving, TestApp, GATEWAY, OPERATOR, REGULATOR};
use serde_json::{json, Value};

struct Server {
    app: TestApp,
    serving: Serving,
    base: String,
    client: reqwest::Client,
}

impl Server {
    async fn start(backend: Backend) -> Server {
        let app = fixture_app_with_tokens(backend).await;
        let serving = app.serve_api().await;
        let base = format!("http://{}", serving.address);
        Server { app, serving, base, client: reqwest::Client::new() }
    }

    async fn reply(&self, from: &str, text: &str) -> Value {
        let response = self
            .client
            .post(format!("{}/api/v1/mo", self.base))
            .bearer_auth(GATEWAY)
            .json(&json!({"from": from, "to": "10001", "text": text, "received_at": "2027-01-02T09:00:00+08:00"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{text}");
        response.json().await.unwrap()
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let response =
            self.client.post(format!("{}{path}", self.base)).bearer_auth(token).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let response = self.client.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The texts of the outbox once it holds `count` messages (serve pushes answers itself).
    async fn outbox(&self, count: usize) -> Vec<String> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let outbox = self.app.outbox();
            if outbox.len() >= count {
                return outbox.iter().map(|m| m["text"].as_str().unwrap().to_string()).collect();
            }
            assert!(std::time::Instant::now() < deadline, "{} of {count} messages after 30 s", outbox.len());
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    async fn finish(self) {
        self.serving.finish().await;
        self.app.cleanup().await;
    }
}

/// The records of `subscriber`'s October bill (billing day 1, Asia/Shanghai) with a positive
/// amount, read straight from the fixture's usage file; its `BADU*` rows are the ones made to be
/// rejected.
fn positive_october_records(subscriber: &str) -> Vec<(String, i64)> {
    let (start, end) = (at("2026-10-01T00:00:00+08:00"), at("2026-11-01T00:00:00+08:00"));
    let mut reader = csv::Reader::from_path(fixture_dir().join("usage.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (id, sub, when, amount) =
        (column("record_id"), column("subscriber_id"), column("occurred_at"), column("amount_fen"));
    let mut records: Vec<(String, i64)> = reader
        .records()
        .map(Result::unwrap)
        .filter(|r| r[sub] == *subscriber && !r[id].starts_with("BADU"))
        .filter_map(|r| {
            let occurred: DateTime<Utc> = DateTime::parse_from_rfc3339(&r[when]).ok()?.with_timezone(&Utc);
            let fen: i64 = r[amount].parse().ok()?;
            (occurred >= start && occurred < end && fen > 0).then(|| (r[id].to_string(), fen))
        })
        .collect();
    records.sort();
    records.dedup();
    records
}

#[tokio::test]
async fn an_ss_opens_one_case_the_operator_refunds_it_and_the_subscriber_is_told_each_step() {
    let server = Server::start(Backend::Postgres).await;
    server.app.run("2026-10", "2026-11-05T00:00:00+08:00").await;
    let bills_sent = server.app.outbox().len();

    // S01000001's October bill has one flagged charge: R01-00000074, 3.00 元 (duplicate).
    // Five SS at once open one case; the others are given it.
    let replies = futures_util::future::join_all((0..5).map(|_| server.reply("15126614242", "SS 没订过"))).await;
    assert!(replies.iter().all(|r| r["action"] == "dispute" && r["answered"] == true), "{replies:?}");

    let (status, listed) = server.get("/api/v1/disputes?month=2026-10", REGULATOR).await;
    assert_eq!(status, 200);
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one open case per bill: {listed}");
    let case = &items[0];
    let id = case["id"].as_i64().unwrap();
    assert_eq!(
        (&case["subscriber_id"], &case["msisdn"], &case["status"], &case["disputed_fen"], &case["refunded_fen"]),
        (&json!("S01000001"), &json!("+8615126614242"), &json!("open"), &json!(300), &json!(0))
    );
    assert_eq!(
        (&case["records"], &case["resolved_at"], &case["overdue"]),
        (&json!(["R01-00000074"]), &Value::Null, &json!(false))
    );
    assert_eq!(case["opened_at"], "2027-01-02T02:00:00.000000Z");

    // One message opened the case; four answers gave the open case.
    let texts = server.outbox(bills_sent + 5).await;
    let opened: Vec<&String> = texts.iter().filter(|t| t.contains("申诉已受理")).collect();
    assert_eq!(opened.len(), 1, "{texts:?}");
    assert!(opened[0].contains(&format!("编号{id}")) && opened[0].contains("3.00元") && opened[0].contains("15日内"));
    let pending = texts.iter().filter(|t| t.contains("正在处理中") && t.contains(&format!("编号{id}"))).count();
    assert_eq!(pending, 4, "{texts:?}");

    // Regulators read; only operators act; a refund is at most the disputed sum.
    let resolve = format!("/api/v1/disputes/{id}/resolve");
    let refund = json!({"status": "refunded", "refunded_fen": 300, "note": "duplicate charge"});
    assert_eq!(server.post(&resolve, REGULATOR, refund.clone()).await.0, 403);
    let (status, refused) =
        server.post(&resolve, OPERATOR, json!({"status": "refunded", "refunded_fen": 301, "note": ""})).await;
    assert_eq!(status, 400);
    assert!(refused["error"].as_str().unwrap().starts_with("refunded_fen"), "{refused}");
    assert_eq!(server.post(&resolve, OPERATOR, json!({"status": "withdrawn", "refunded_fen": 5})).await.0, 400);
    assert_eq!(server.post(&resolve, OPERATOR, json!({"status": "open"})).await.0, 400);
    let (status, resolved) = server.post(&resolve, OPERATOR, refund.clone()).await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!((&resolved["status"], &resolved["refunded_fen"]), (&json!("refunded"), &json!(300)));
    assert_eq!(resolved["resolved_at"], "2027-01-02T02:00:00.000000Z");
    let (status, again) = server.post(&resolve, OPERATOR, refund).await;
    assert_eq!(status, 409, "{again}");
    assert_eq!(server.post("/api/v1/disputes/999999/resolve", OPERATOR, json!({"status": "withdrawn"})).await.0, 404);

    let texts = server.outbox(bills_sent + 6).await;
    let outcome: Vec<&String> = texts.iter().filter(|t| t.contains(&format!("编号{id}）已处理"))).collect();
    assert_eq!(outcome.len(), 1, "{texts:?}");
    assert!(outcome[0].contains("退还3.00元") && outcome[0].starts_with("【示例电信】"), "{}", outcome[0]);

    // Each message is a notification of kind dispute, keyed by case and status, in the bill's month.
    let deliveries = server.app.export(ExportKind::Deliveries, "2026-10").await;
    let mut subjects: Vec<&str> =
        deliveries.iter().filter(|d| d["kind"] == "dispute").map(|d| d["subject"].as_str().unwrap()).collect();
    subjects.sort_unstable();
    assert_eq!(subjects, [format!("{id}:open"), format!("{id}:refunded")]);

    // The case is closed: a new SS opens a second case of the same bill.
    let reply = server.reply("15126614242", "SS").await;
    assert_eq!(reply["action"], "dispute");
    let (_, listed) = server.get("/api/v1/disputes?month=2026-10&status=open", OPERATOR).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_ne!(listed["items"][0]["id"].as_i64().unwrap(), id);
    server.finish().await;
}

#[tokio::test]
async fn an_operator_opens_a_case_about_the_whole_bill_and_it_becomes_overdue_after_the_sla() {
    let server = Server::start(Backend::Sqlite).await;
    // Nothing billed yet: the subscriber is told there is no bill; the API answers 404.
    let answer = server.reply("14611178002", "SS").await;
    assert_eq!((answer["action"].as_str(), answer["answered"].as_bool()), (Some("dispute"), Some(true)));
    assert!(server.outbox(1).await[0].contains("暂无已出账单"));
    let open = json!({"subscriber_id": "S01000000", "month": "2026-10", "note": "called the hotline"});
    assert_eq!(server.post("/api/v1/disputes", OPERATOR, open.clone()).await.0, 404);

    server.app.run("2026-10", "2026-11-05T00:00:00+08:00").await;
    let before_cases = server.app.outbox().len();
    assert_eq!(server.post("/api/v1/disputes", REGULATOR, open.clone()).await.0, 403);
    let (status, refused) = server
        .post("/api/v1/disputes", OPERATOR, json!({"subscriber_id": "S01000000", "month": "2026-10", "note": " "}))
        .await;
    assert_eq!((status, refused["error"].as_str().unwrap().starts_with("note")), (400, true));
    let (status, refused) = server
        .post(
            "/api/v1/disputes",
            OPERATOR,
            json!({"subscriber_id": "S01000000", "month": "2026-10", "record_ids": ["R-NOT-HERE"], "note": "x"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(refused["error"].as_str().unwrap().contains("record_ids: R-NOT-HERE"), "{refused}");

    // Nothing of S01000000's bill is flagged: the case is about every positive record.
    let (status, case) = server.post("/api/v1/disputes", OPERATOR, open.clone()).await;
    assert_eq!(status, 201, "{case}");
    let expected = positive_october_records("S01000000");
    assert!(expected.len() > 3, "{expected:?}");
    let ids: Vec<&str> = expected.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(case["records"], json!(ids));
    assert_eq!(case["disputed_fen"], json!(expected.iter().map(|(_, fen)| fen).sum::<i64>()));
    let (status, same) = server.post("/api/v1/disputes", OPERATOR, open).await;
    assert_eq!((status, &same["id"]), (200, &case["id"]), "the open case is the answer");

    // A case of chosen records: only those, summed.
    let chosen = json!({"subscriber_id": "S01000002", "month": "2026-10", "record_ids": ["R01-00000102"], "note": "SP5005 never ordered"});
    let (status, second) = server.post("/api/v1/disputes", OPERATOR, chosen).await;
    assert_eq!((status, &second["disputed_fen"], &second["records"]), (201, &json!(200), &json!(["R01-00000102"])));
    let rejected = json!({"status": "rejected", "note": ""});
    let resolve = format!("/api/v1/disputes/{}/resolve", second["id"]);
    assert_eq!(server.post(&resolve, OPERATOR, rejected).await.0, 400, "a rejection says why");
    let (status, done) =
        server.post(&resolve, OPERATOR, json!({"status": "rejected", "note": "ordered by SMS on 2026-09-03"})).await;
    assert_eq!((status, &done["status"], &done["refunded_fen"]), (200, &json!("rejected"), &json!(0)));

    // Fifteen days pass the SLA by a second: the open case is overdue, the rejected one is not.
    server.app.clock.advance(chrono::Duration::days(15) + chrono::Duration::seconds(1));
    let (_, listed) = server.get("/api/v1/disputes?month=2026-10", REGULATOR).await;
    let overdue: Vec<(i64, bool)> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["id"].as_i64().unwrap(), d["overdue"].as_bool().unwrap()))
        .collect();
    assert_eq!(overdue, [(case["id"].as_i64().unwrap(), true), (second["id"].as_i64().unwrap(), false)]);
    assert_eq!(server.get("/api/v1/disputes?status=closed", REGULATOR).await.0, 400);
    assert_eq!(server.get("/api/v1/disputes?month=10-2026", REGULATOR).await.0, 400);

    // The export lists what the API lists.
    let exported = server.app.export(ExportKind::Disputes, "2026-10").await;
    assert_eq!(Value::Array(exported), listed["items"]);
    let texts = server.outbox(before_cases + 3).await;
    assert!(texts.iter().any(|t| t.contains("不予退费") && t.contains("ordered by SMS on 2026-09-03")), "{texts:?}");
    server.finish().await;
}
