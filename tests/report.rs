//! The regulator's report (docs/contract.md §11) on the small fixture with three regions (and
//! subscribers without one): every figure, in total and per region, equals what the exports
//! of the same month add up to; the API serves the same report; the CSV has a row per region
//! and the total.

mod common;

use std::collections::{BTreeMap, HashMap};

use billpush::clock::Clock;
use billpush::export::ExportKind;
use billpush::import::ImportKind;
use billpush::replies::InboundReply;
use common::{at, fixture_dir, role_tokens, spawn_app_with, Options, TestApp};
use serde_json::{json, Value};

const REGIONS: [&str; 4] = ["11", "31", "44", ""];

/// Gives the fixture's subscribers a region each, in turn; returns subscriber → region.
async fn assign_regions(app: &TestApp) -> HashMap<String, String> {
    let mut reader = csv::Reader::from_path(fixture_dir().join("subscribers.csv")).unwrap();
    let mut file = String::from("subscriber_id,msisdn,plan_id,region\n");
    let mut regions = HashMap::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.unwrap();
        let region = REGIONS[i % REGIONS.len()];
        file.push_str(&format!("{},{},{},{region}\n", &row[0], &row[1], &row[3]));
        regions.insert(row[0].to_string(), region.to_string());
    }
    let path = app.write_input("regions.csv", &file);
    app.import(ImportKind::Subscribers, &path).await;
    regions
}

fn add(figures: &mut BTreeMap<String, Value>, region: &str, path: &[&str], by: i64) {
    for key in ["*", region] {
        let mut value = figures.entry(key.to_string()).or_insert_with(|| json!({}));
        for (i, step) in path.iter().enumerate() {
            let next = if i + 1 == path.len() { json!(0) } else { json!({}) };
            value = value.as_object_mut().unwrap().entry(step.to_string()).or_insert(next);
        }
        *value = json!(value.as_i64().unwrap() + by);
    }
}

/// A figure of the report, 0 where the report has no such key.
fn figure(report: &Value, path: &[&str]) -> i64 {
    path.iter().fold(report, |v, step| &v[*step]).as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_adds_up_to_the_exports_in_total_and_per_region() {
    // October, while the month runs: a subscriber opts out; then the bills are pushed.
    let app = spawn_app_with(Options {
        now: at("2026-10-20T10:00:00+08:00"),
        configure: Box::new(|c| c.api.tokens = role_tokens()),
        ..Options::default()
    })
    .await;
    app.import_fixture().await;
    let regions = assign_regions(&app).await;
    let replies = app.app.replies().await.unwrap();
    let from = billpush::domain::msisdn::Msisdn::parse("15126614242").unwrap();
    let reply = InboundReply { from: &from, to: "10001", text: "TDZD", received_at: app.clock.now(), via: "gateway" };
    assert_eq!(replies.handle(&reply).await.unwrap().action.as_str(), "opt_out");
    app.clock.advance(chrono::Duration::days(20));
    app.run("2026-10", "2026-11-09T00:00:00+08:00").await;
    // A dispute of a flagged bill, opened in November.
    let flags = app.export(ExportKind::Flags, "2026-10").await;
    let disputed = flags[0]["subscriber_id"].as_str().unwrap().to_string();
    let number: String = app
        .export(ExportKind::Bills, "2026-10")
        .await
        .iter()
        .find(|b| b["subscriber_id"] == disputed.as_str())
        .map(|b| b["msisdn"].as_str().unwrap().to_string())
        .unwrap();
    let from = billpush::domain::msisdn::Msisdn::parse(&number).unwrap();
    let ss = InboundReply { from: &from, to: "10001", text: "SS", received_at: app.clock.now(), via: "gateway" };
    assert_eq!(replies.handle(&ss).await.unwrap().action.as_str(), "dispute");

    // Two bill SMS are delivered, by the gateway's receipts.
    let serving = app.serve_api().await;
    let client = reqwest::Client::new();
    let accepted: Vec<String> = app
        .export(ExportKind::Deliveries, "2026-10")
        .await
        .iter()
        .filter(|d| d["kind"] == "bill" && d["status"] == "accepted")
        .map(|d| d["gateway_message_id"].as_str().unwrap().to_string())
        .collect();
    for message_id in &accepted[..2] {
        let receipt = json!({"message_id": message_id, "status": "delivered", "at": "2026-11-09T10:05:00+08:00"});
        let answer = client
            .post(format!("http://{}/api/v1/dlr", serving.address))
            .bearer_auth(common::GATEWAY)
            .json(&receipt)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
    }

    let report = serde_json::to_value(app.app.report("2026-10".parse().unwrap(), None).await.unwrap()).unwrap();

    // The same figures from the exports.
    let mut expected: BTreeMap<String, Value> = BTreeMap::new();
    let region_of = |id: &str| regions.get(id).cloned().unwrap_or_default();
    for bill in app.export(ExportKind::Bills, "2026-10").await {
        let region = region_of(bill["subscriber_id"].as_str().unwrap());
        add(&mut expected, &region, &["subscribers_billed"], 1);
        if bill["bill_flags"].as_array().unwrap().iter().any(|f| f == "spike") {
            add(&mut expected, &region, &["spikes"], 1);
        }
    }
    for delivery in app.export(ExportKind::Deliveries, "2026-10").await {
        if delivery["kind"] == "bill" {
            let region = region_of(delivery["subscriber_id"].as_str().unwrap());
            add(&mut expected, &region, &["sms", delivery["status"].as_str().unwrap()], 1);
        }
    }
    let mut services: BTreeMap<String, (i64, i64, std::collections::BTreeSet<String>)> = BTreeMap::new();
    for flag in &flags {
        let region = region_of(flag["subscriber_id"].as_str().unwrap());
        let reason = flag["reason"].as_str().unwrap();
        let fen = flag["amount_fen"].as_i64().unwrap();
        add(&mut expected, &region, &["flags", reason, "count"], 1);
        add(&mut expected, &region, &["flags", reason, "fen"], fen);
        let service = services.entry(flag["service_code"].as_str().unwrap().to_string()).or_default();
        service.0 += 1;
        service.1 += fen;
        service.2.insert(flag["subscriber_id"].as_str().unwrap().to_string());
    }
    for dispute in app.export(ExportKind::Disputes, "2026-10").await {
        add(&mut expected, &region_of(dispute["subscriber_id"].as_str().unwrap()), &["disputes", "opened"], 1);
    }
    add(&mut expected, &region_of("S01000001"), &["opt_outs"], 1);

    let sections: Vec<(&str, &Value)> = std::iter::once(("*", &report["total"]))
        .chain(report["regions"].as_array().unwrap().iter().map(|r| (r["region"].as_str().unwrap(), r)))
        .collect();
    let names: Vec<&str> = sections.iter().skip(1).map(|(name, _)| *name).collect();
    assert_eq!(names, ["", "11", "31", "44"], "regions by name, the one without first");
    let paths: Vec<Vec<&str>> = [
        vec!["subscribers_billed"],
        vec!["spikes"],
        vec!["opt_outs"],
        vec!["opt_ins"],
        vec!["alerts_sent"],
        vec!["disputes", "opened"],
        vec!["disputes", "refunded"],
    ]
    .into_iter()
    .chain(
        ["accepted", "delivered", "undeliverable", "unknown", "failed", "suppressed", "skipped"]
            .map(|s| vec!["sms", s]),
    )
    .chain(
        ["no_order", "after_cancel", "unconfirmed", "duplicate"]
            .into_iter()
            .flat_map(|r| [vec!["flags", r, "count"], vec!["flags", r, "fen"]]),
    )
    .collect();
    for (name, section) in &sections {
        let wanted = expected.get(*name).cloned().unwrap_or(json!({}));
        for path in &paths {
            assert_eq!(figure(section, path), figure(&wanted, path), "{name} {path:?}");
        }
        let billed = figure(section, &["subscribers_billed"]);
        let sent = billed - figure(section, &["sms", "suppressed"]) - figure(section, &["sms", "skipped"]);
        let rate = if sent > 0 { figure(section, &["sms", "delivered"]) as f64 / sent as f64 } else { 0.0 };
        assert!((section["delivery_rate"].as_f64().unwrap() - rate).abs() < 0.00005, "{name}");
    }
    assert!(figure(&report["total"], &["subscribers_billed"]) > 0 && !flags.is_empty());
    assert_eq!(figure(&report["total"], &["sms", "delivered"]), 2);
    assert!(report["total"]["delivery_rate"].as_f64().unwrap() > 0.0);
    assert_eq!(figure(&report["total"], &["disputes", "opened"]), 1);
    assert!(report["total"]["spam_flagged"].is_object() && report["regions"][0]["spam_flagged"].is_null());

    let mut top: Vec<(String, i64, i64, i64)> =
        services.into_iter().map(|(code, (n, fen, subs))| (code, n, fen, subs.len() as i64)).collect();
    top.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    top.truncate(10);
    let listed: Vec<(String, i64, i64, i64)> = report["top_flagged_services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["service_code"].as_str().unwrap().to_string(),
                s["flagged"].as_i64().unwrap(),
                s["flagged_fen"].as_i64().unwrap(),
                s["subscribers"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, top);

    // The API serves the same report; the CSV has a row per region and the total.
    let url = format!("http://{}/api/v1/reports/2026-10", serving.address);
    let served: Value = client.get(&url).bearer_auth(common::REGULATOR).send().await.unwrap().json().await.unwrap();
    assert_eq!(served, report);
    let bad = client.get(format!("http://{}/api/v1/reports/2026-13", serving.address)).bearer_auth(common::OPERATOR);
    assert_eq!(bad.send().await.unwrap().status(), 400);
    serving.finish().await;
    let mut csv = Vec::new();
    billpush::report::write_csv(&app_report(&app).await, &mut csv).unwrap();
    let text = String::from_utf8(csv).unwrap();
    let regions_in_csv: Vec<&str> = text.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert_eq!(regions_in_csv, ["", "11", "31", "44", "*"]);
    app.cleanup().await;
}

/// A region is at most 32 characters, named in the rejection; an empty cell keeps the region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_is_checked_and_kept() {
    let app = spawn_app_with(Options::default()).await;
    app.import_population(2).await;
    let long = "x".repeat(33);
    let path = app.write_input(
        "long.csv",
        &format!("subscriber_id,msisdn,plan_id,region\nP000000,13900000000,P58,{long}\nP000001,13900000001,P58,44\n"),
    );
    let counts = app.import(ImportKind::Subscribers, &path).await;
    assert_eq!((counts.accepted, counts.rejected), (1, 1));
    let rejects = std::fs::read_to_string(app.dir.path().join("long.csv.rejects.csv")).unwrap();
    assert!(rejects.contains("region: 33 characters, more than 32"), "{rejects}");
    let path = app.write_input("again.csv", "subscriber_id,msisdn,plan_id,region\nP000001,13900000001,P58,\n");
    app.import(ImportKind::Subscribers, &path).await;
    app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    let report = app.app.report("2026-10".parse().unwrap(), None).await.unwrap();
    let names: Vec<(&str, i64)> =
        report.regions.iter().map(|r| (r.region.as_str(), r.figures.subscribers_billed)).collect();
    assert_eq!(names, [("", 1), ("44", 1)]);
    app.cleanup().await;
}

async fn app_report(app: &TestApp) -> billpush::report::Report {
    app.app.report("2026-10".parse().unwrap(), None).await.unwrap()
}
