//! What the bill SMS says (docs/contract.md §5.3, §5.4) on the fixture's real months: every
//! third-party charge with its service, code and amount; each flagged charge named with why and
//! the dispute code; a spike with how far above the recent average; a large roaming charge by
//! its description; and the `ZD` answer as the full itemization.

mod common;

use billpush::export::ExportKind;
use common::{fixture_app_with_tokens, Backend, GATEWAY};
use serde_json::{json, Value};

fn bill_text<'a>(deliveries: &'a [Value], subscriber: &str) -> &'a str {
    let bill = deliveries.iter().find(|d| d["subscriber_id"] == subscriber && d["kind"] == "bill").unwrap();
    bill["text"].as_str().unwrap()
}

#[tokio::test]
async fn the_october_bills_name_every_suspect_charge_and_zd_gives_the_whole_bill() {
    let app = fixture_app_with_tokens(Backend::Postgres).await;
    for month in ["2026-08", "2026-09", "2026-10"] {
        app.run(month, "2027-01-01T00:00:00+08:00").await;
    }
    let deliveries = app.export(ExportKind::Deliveries, "2026-10").await;

    // S01000006: a game card never ordered, 800.00 of roaming, a spike.
    let spiked = bill_text(&deliveries, "S01000006");
    for expected in [
        "游戏点卡SP3003 10.00元（疑似不明扣费10.00元：未订购）",
        "如有异议回复SS",
        "国际漫游800.00元",
        "本期为近期月均",
        "倍",
        "TDZD",
    ] {
        assert!(spiked.contains(expected), "{expected} missing from {spiked}");
    }
    // S01000001: two services collected for SPs, one charged twice.
    let flagged = bill_text(&deliveries, "S01000001");
    for expected in ["代收费手机报SP2002 12.00元（疑似不明扣费3.00元：重复扣费）", "回复SS"] {
        assert!(flagged.contains(expected), "{expected} missing from {flagged}");
    }
    // An English subscriber's bill (S01000003, nothing flagged) still offers every code.
    let english = bill_text(&deliveries, "S01000003");
    for expected in ["Plan and fixed fees 128.00", "Used 8/1000 min", "ZD details", "SS dispute", "TDZD stop"] {
        assert!(english.contains(expected), "{expected} missing from {english}");
    }

    // A Chinese bill with nothing flagged fits three parts; every bill fits `sms.max_segments`.
    for bill in deliveries.iter().filter(|d| d["kind"] == "bill") {
        let (text, parts) = (bill["text"].as_str().unwrap(), bill["segments"].as_i64().unwrap());
        assert!(parts <= 4, "{parts}: {text}");
        if text.contains("尊敬的") && !text.contains("疑似不明扣费") {
            assert!(parts <= 3, "{parts}: {text}");
        }
    }

    // ZD is answered with the whole of the latest bill, up to five parts, ending with the hotline.
    let serving = app.serve_api().await;
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/v1/mo", serving.address))
        .bearer_auth(GATEWAY)
        .json(&json!({"from": "17818492001", "to": "10001", "text": "ZD", "received_at": "2027-01-02T09:00:00+08:00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    serving.finish().await;
    let answers = app.export(ExportKind::Deliveries, "2027-01").await;
    let details = answers.iter().find(|d| d["kind"] == "details").expect("the ZD answer");
    let text = details["text"].as_str().unwrap();
    assert!(details["segments"].as_i64().unwrap() <= 5, "{details}");
    for expected in
        ["套餐及固定费58.00元", "代收费游戏点卡SP3003 10.00元（疑似不明扣费）", "其中国际漫游800.00元", "已用语音"]
    {
        assert!(text.contains(expected), "{expected} missing from {text}");
    }
    assert!(text.ends_with("10000"), "{text}");
    for subscriber in ["S01000006", "S01000001", "S01000003"] {
        let bill = deliveries.iter().find(|d| d["subscriber_id"] == subscriber && d["kind"] == "bill").unwrap();
        eprintln!("{subscriber} ({} parts): {}", bill["segments"], bill["text"]);
    }
    eprintln!("ZD ({} parts): {text}", details["segments"]);
    app.cleanup().await;
}
