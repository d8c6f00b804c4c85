//! The console (docs/contract.md §10) in a real browser: headless Chromium driven through
//! chromedriver (Debian's `chromium` and `chromium-driver`; `scripts/services.sh` installs them)
//! against `billpush serve` on a port of its own. Screenshots go to `target/screenshots/`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{fixture_app_with_tokens, Backend, Serving, TestApp, GATEWAY, OPERATOR, REGULATOR};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// chromedriver on a port of its own, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver must be installed (Debian: chromium chromium-driver; scripts/services.sh installs them)");
    Driver { child, url: format!("http://127.0.0.1:{port}") }
}

/// A headless Chromium session; chromedriver answers once it listens, which is waited for.
async fn browser(driver: &Driver) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--window-size=1280,1000", "--lang=zh-CN"]}),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector).capabilities(capabilities.clone()).connect(&driver.url).await {
            Ok(client) => return client,
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("no browser session from chromedriver at {}: {error}", driver.url),
        }
    }
}

async fn screenshot(client: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn sign_in(client: &Client, base: &str, token: &str) {
    client.goto(&format!("{base}/console/login")).await.unwrap();
    client.find(Locator::Id("token")).await.unwrap().send_keys(token).await.unwrap();
    client.find(Locator::Css("form button[type=submit]")).await.unwrap().click().await.unwrap();
    // A click returns before the page it leads to has loaded: wait for the signed-in page.
    arrived(client, "a[href='/console/logout']").await;
}

/// Waits until the page a click led to shows `css` (the browser's own wait, up to its timeout).
async fn arrived(client: &Client, css: &str) {
    client.wait().for_element(Locator::Css(css)).await.unwrap_or_else(|e| panic!("no {css}: {e}"));
}

async fn serve() -> (TestApp, Serving, String) {
    let app = fixture_app_with_tokens(Backend::Postgres).await;
    app.run("2026-10", "2026-11-05T00:00:00+08:00").await;
    let serving = app.serve_api().await;
    let base = format!("http://{}", serving.address);
    (app, serving, base)
}

#[tokio::test]
async fn a_regulator_and_an_operator_use_the_console_in_a_real_browser() {
    let (app, serving, base) = serve().await;
    let http = reqwest::Client::new();
    let driver = start_driver();
    let client = browser(&driver).await;

    // No session: the login page.
    client.goto(&format!("{base}/console/months/2026-10")).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/console/login");
    screenshot(&client, "01-login").await;

    // A regulator signs in and lands on the latest month, with its accepted count and charts
    // (the figures `serve` counted at start: nothing has changed since).
    sign_in(&client, &base, REGULATOR).await;
    assert_eq!(client.current_url().await.unwrap().path(), "/console/months/2026-10");
    let accepted = client.find(Locator::Css("td[data-status=accepted]")).await.unwrap().text().await.unwrap();
    let exported = app.export(billpush::export::ExportKind::Deliveries, "2026-10").await;
    let expected = exported.iter().filter(|d| d["status"] == "accepted").count();
    assert_eq!(accepted, expected.to_string());
    let charts = client.find_all(Locator::Css("figure.chart svg")).await.unwrap();
    assert!(!charts.is_empty(), "the overview draws its charts");
    screenshot(&client, "02-month-overview").await;

    // Nothing loads from another origin.
    let origins = client
        .execute(
            "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)
                .concat([...document.querySelectorAll('[src],[href]')].map(e => new URL(e.src || e.href, location.href).origin));",
            vec![],
        )
        .await
        .unwrap();
    let own = reqwest::Url::parse(&base).unwrap().origin().ascii_serialization();
    assert!(origins.as_array().unwrap().iter().all(|o| o.as_str() == Some(&own)), "{origins}");

    // S01000001 disputes its flagged charge by SMS, so the operator has a case to resolve.
    let answer: Value = http
        .post(format!("{base}/api/v1/mo"))
        .bearer_auth(GATEWAY)
        .json(&json!({"from": "15126614242", "to": "10001", "text": "SS", "received_at": "2027-01-02T09:00:00+08:00"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["action"], "dispute");

    // A number written without +86 finds its bill SMS, whose exact text is shown.
    client.goto(&format!("{base}/console/deliveries?month=2026-10&msisdn=15126614242")).await.unwrap();
    let shown = client.find(Locator::Css("article.delivery p.sms")).await.unwrap().text().await.unwrap();
    let bill = exported.iter().find(|d| d["msisdn"] == "+8615126614242" && d["kind"] == "bill").unwrap();
    assert_eq!(shown, bill["text"].as_str().unwrap());
    screenshot(&client, "03-delivery-search").await;

    // The subscriber behind it: bills with their flagged charge, the SS reply, the dispute.
    client
        .find(Locator::Css("article.delivery dd a[href^='/console/subscribers/']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    arrived(&client, "#bills").await;
    assert_eq!(client.current_url().await.unwrap().path(), "/console/subscribers/S01000001");
    let bills = client.find(Locator::Css("#bills tbody")).await.unwrap().text().await.unwrap();
    assert!(bills.contains("2026-10") && bills.contains("R01-00000074 SP2002 3.00 duplicate"), "{bills}");
    let replies = client.find(Locator::Css("#replies tbody")).await.unwrap().text().await.unwrap();
    assert!(replies.contains("SS") && replies.contains("dispute"), "{replies}");
    let cases = client.find(Locator::Css("#subscriber-disputes tbody")).await.unwrap().text().await.unwrap();
    assert!(cases.contains("open") && cases.contains("3.00"), "{cases}");
    screenshot(&client, "03b-subscriber").await;

    // Flags by provider, the most unexplained charges first, as the flags export counts them.
    client.goto(&format!("{base}/console/flags?month=2026-10")).await.unwrap();
    let providers = client.find_all(Locator::Css("#flags-by-provider tbody tr")).await.unwrap();
    let flags = app.export(billpush::export::ExportKind::Flags, "2026-10").await;
    let mut counts: std::collections::BTreeMap<String, i64> = Default::default();
    for flag in &flags {
        *counts.entry(flag["service_code"].as_str().unwrap().to_string()).or_default() += 1;
    }
    assert_eq!(providers.len(), counts.len());
    let first = providers[0].text().await.unwrap();
    let most = counts.values().max().unwrap();
    assert!(first.split_whitespace().nth(1) == Some(most.to_string().as_str()), "{first} {counts:?}");
    screenshot(&client, "03c-flags").await;

    // Spam numbers with their type and reporters.
    client.goto(&format!("{base}/console/spam?month=2026-10")).await.unwrap();
    let spam = client.find(Locator::Css("#spam tbody")).await.unwrap().text().await.unwrap();
    let listed = app.export(billpush::export::ExportKind::Spam, "2026-10").await;
    let flagged = listed.iter().find(|n| n["flagged"] == true).expect("a flagged number");
    assert!(spam.contains(flagged["number"].as_str().unwrap()), "{spam}");
    screenshot(&client, "03d-spam").await;

    // A regulator may not see the audit log, nor resolve.
    client.goto(&format!("{base}/console/audit")).await.unwrap();
    let heading = client.find(Locator::Css("h1")).await.unwrap().text().await.unwrap();
    assert_eq!(heading, "403");
    client.goto(&format!("{base}/console/disputes?month=2026-10")).await.unwrap();
    assert!(client.find_all(Locator::Css("form.resolve")).await.unwrap().is_empty());
    client.goto(&format!("{base}/console/logout")).await.unwrap();
    assert_eq!(client.current_url().await.unwrap().path(), "/console/login");

    // An operator resolves the dispute through the page's form.
    sign_in(&client, &base, OPERATOR).await;
    client.goto(&format!("{base}/console/disputes?month=2026-10")).await.unwrap();
    screenshot(&client, "04-disputes").await;
    let form = client.find(Locator::Css("form.resolve")).await.unwrap();
    form.find(Locator::Css("input[name=note]")).await.unwrap().send_keys("duplicate charge confirmed").await.unwrap();
    form.find(Locator::Css("button[type=submit]")).await.unwrap().click().await.unwrap();
    arrived(&client, "p.notice").await;
    let listed: Value = http
        .get(format!("{base}/api/v1/disputes?month=2026-10"))
        .bearer_auth(REGULATOR)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((&listed["items"][0]["status"], &listed["items"][0]["refunded_fen"]), (&json!("refunded"), &json!(300)));
    screenshot(&client, "05-disputes-resolved").await;

    // The same form posted without its CSRF token, with the operator's own session, is refused.
    let session = client.get_named_cookie(billpush::console::SESSION_COOKIE).await.unwrap();
    let refused = http
        .post(format!("{base}/console/disputes/1/resolve"))
        .header("cookie", format!("{}={}", session.name(), session.value()))
        .form(&[("status", "withdrawn"), ("note", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    // The operator sees the audit log, which holds the regulator's page views.
    client.goto(&format!("{base}/console/audit")).await.unwrap();
    let rows = client.find(Locator::Css("#audit tbody")).await.unwrap().text().await.unwrap();
    assert!(rows.contains("reg (regulator)") && rows.contains("GET /console/deliveries?month=2026-10"), "{rows}");
    screenshot(&client, "06-audit").await;

    // English is one click away.
    client.find(Locator::Css("a[hreflang=en]")).await.unwrap().click().await.unwrap();
    arrived(&client, "a[hreflang=zh]").await;
    let nav = client.find(Locator::Css("header nav")).await.unwrap().text().await.unwrap();
    assert!(nav.contains("Month overview"), "{nav}");
    screenshot(&client, "07-english").await;

    // On a phone's width the page reflows instead of scrolling sideways.
    client.set_window_size(390, 844).await.unwrap();
    client.goto(&format!("{base}/console/months/2026-10")).await.unwrap();
    let overflow =
        client.execute("return document.documentElement.scrollWidth - window.innerWidth;", vec![]).await.unwrap();
    assert!(overflow.as_i64().unwrap() <= 0, "{overflow} px wider than the screen");
    screenshot(&client, "08-phone").await;

    // The keyboard reaches the navigation first: Tab from the top lands on the first link.
    client.execute("document.activeElement.blur();", vec![]).await.unwrap();
    client.active_element().await.unwrap().send_keys("\u{E004}").await.unwrap();
    let focused = client
        .execute("return document.activeElement.tagName + ' ' + document.activeElement.getAttribute('href');", vec![])
        .await
        .unwrap();
    assert!(focused.as_str().unwrap().starts_with("A /console/months/"), "{focused}");

    client.close().await.unwrap();
    serving.finish().await;
    app.cleanup().await;
}
