//! The console's sign-in, roles and safety over plain HTTP on the embedded store (the browser
//! test, tests/console.rs, runs on PostgreSQL): session cookie attributes and expiry, the
//! Content-Security-Policy, 403 for a page the role may not see, CSRF, and every page answering.

mod common;

use common::{fixture_app_with_tokens, Backend, GATEWAY, OPERATOR, REGULATOR};
use reqwest::redirect::Policy;
use serde_json::json;

/// Signs in with `token`; the session cookie's `name=value`, and the whole `Set-Cookie` line.
async fn sign_in(client: &reqwest::Client, base: &str, token: &str) -> (String, String) {
    let response = client.post(format!("{base}/console/login")).form(&[("token", token)]).send().await.unwrap();
    assert_eq!(response.status(), 303, "{token}");
    assert_eq!(response.headers()["location"], "/console");
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
    (set_cookie.split(';').next().unwrap().to_string(), set_cookie)
}

#[tokio::test]
async fn sessions_roles_csrf_and_every_page_on_the_embedded_store() {
    let app = fixture_app_with_tokens(Backend::Sqlite).await;
    app.run("2026-10", "2026-11-05T00:00:00+08:00").await;
    let serving = app.serve_api().await;
    let base = format!("http://{}", serving.address);
    let client = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let get = |path: &str, cookie: &str| client.get(format!("{base}{path}")).header("cookie", cookie).send();

    // No session, or a made-up one: the login page.
    let anonymous = client.get(format!("{base}/console/months/2026-10")).send().await.unwrap();
    assert_eq!(
        (anonymous.status().as_u16(), &anonymous.headers()["location"]),
        (303, &"/console/login".parse().unwrap())
    );
    assert_eq!(get("/console/disputes", "billpush_session=forged").await.unwrap().status(), 303);
    // Unknown tokens, and tokens of roles that have no console, are refused.
    let refused = client.post(format!("{base}/console/login")).form(&[("token", "nope")]).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let gateway = client.post(format!("{base}/console/login")).form(&[("token", GATEWAY)]).send().await.unwrap();
    assert_eq!(gateway.status(), 403);

    // A sign-in form posted from another site is refused, whichever way the browser says so.
    for (name, value) in [("origin", "http://evil.example"), ("sec-fetch-site", "cross-site")] {
        let foreign =
            client.post(format!("{base}/console/login")).header(name, value).form(&[("token", REGULATOR)]).send();
        assert_eq!(foreign.await.unwrap().status(), 403, "{name}");
    }

    let (regulator, set_cookie) = sign_in(&client, &base, REGULATOR).await;
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=28800"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");

    // Every page answers, with a policy that forbids inline scripts and other origins.
    for path in [
        "/console/months/2026-10",
        "/console/deliveries?month=2026-10&msisdn=%2B8615126614242",
        "/console/flags?month=2026-10",
        "/console/disputes?month=2026-10",
        "/console/spam?month=2026-10",
        "/console/subscribers/S01000001",
    ] {
        let page = get(path, &regulator).await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        let policy = page.headers()["content-security-policy"].to_str().unwrap().to_string();
        assert!(policy.contains("script-src 'self'") && policy.contains("default-src 'self'"), "{policy}");
        let html = page.text().await.unwrap();
        // Nothing is loaded from elsewhere (an SVG's xmlns names, it loads nothing).
        for other_origin in ["<script>", "src=\"http", "href=\"http", "src=\"//", "href=\"//", "url(http"] {
            assert!(!html.contains(other_origin), "{path}: {other_origin}");
        }
    }
    let search =
        get("/console/deliveries?msisdn=0086%20151-2661-4242", &regulator).await.unwrap().text().await.unwrap();
    assert!(search.contains("<h2>+8615126614242 · 2026-10 · bill"), "any written form finds the number: {search}");
    let csv = get("/console/deliveries.csv?month=2026-10", &regulator).await.unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.text().await.unwrap().starts_with("id,subscriber_id,msisdn,month,kind,subject,status"));

    // A regulator's role may not see the audit log, nor post a resolution.
    assert_eq!(get("/console/audit", &regulator).await.unwrap().status(), 403);
    let answer = client
        .post(format!("{base}/api/v1/mo"))
        .bearer_auth(GATEWAY)
        .json(&json!({"from": "15126614242", "to": "10001", "text": "SS", "received_at": "2027-01-02T09:00:00+08:00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    let post = |cookie: &str, form: Vec<(&'static str, String)>| {
        client
            .post(format!("{base}/console/disputes/1/resolve"))
            .header("cookie", cookie.to_string())
            .form(&form)
            .send()
    };
    assert_eq!(post(&regulator, vec![("status", "withdrawn".into())]).await.unwrap().status(), 403);

    // An operator's form needs the session's CSRF token: without it, or with another, refused.
    let (operator, _) = sign_in(&client, &base, OPERATOR).await;
    let disputes = get("/console/disputes?month=2026-10", &operator).await.unwrap().text().await.unwrap();
    let csrf = disputes.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    assert_eq!(post(&operator, vec![("status", "withdrawn".into())]).await.unwrap().status(), 403);
    let wrong = vec![("status", "withdrawn".into()), ("csrf", "0".repeat(64))];
    assert_eq!(post(&operator, wrong).await.unwrap().status(), 403);
    let too_much = vec![("status", "refunded".into()), ("refunded_fen", "301".into()), ("csrf", csrf.clone())];
    assert_eq!(post(&operator, too_much).await.unwrap().status(), 400);
    let done = post(&operator, vec![("status", "withdrawn".into()), ("csrf", csrf.clone())]).await.unwrap();
    assert_eq!(done.status(), 303);
    let again = post(&operator, vec![("status", "withdrawn".into()), ("csrf", csrf)]).await.unwrap();
    assert_eq!(again.status(), 409);
    assert_eq!(get("/console/audit", &operator).await.unwrap().status(), 200);

    // An operator opens a dispute from the subscriber page; a regulator, or a form without
    // the session's token, cannot.
    let open = |cookie: &str, form: Vec<(&'static str, String)>| {
        client
            .post(format!("{base}/console/subscribers/S01000000/disputes"))
            .header("cookie", cookie.to_string())
            .form(&form)
            .send()
    };
    let page = get("/console/subscribers/S01000000", &operator).await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"open-dispute\""), "the operator sees the form");
    let form = |csrf: &str| {
        vec![("month", "2026-10".to_string()), ("note", "called the hotline".into()), ("csrf", csrf.into())]
    };
    assert_eq!(open(&regulator, form("")).await.unwrap().status(), 403);
    assert_eq!(open(&operator, form("")).await.unwrap().status(), 403);
    let subscriber_page = get("/console/subscribers/S01000000", &operator).await.unwrap().text().await.unwrap();
    let csrf = subscriber_page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_string();
    let opened = open(&operator, form(&csrf)).await.unwrap();
    assert_eq!(opened.status(), 303);
    let listed: serde_json::Value = client
        .get(format!("{base}/api/v1/disputes?month=2026-10&status=open"))
        .bearer_auth(REGULATOR)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let case = &listed["items"][0];
    assert_eq!((&case["subscriber_id"], &case["status"]), (&json!("S01000000"), &json!("open")));
    assert!(case["disputed_fen"].as_i64().unwrap() > 9405, "every positive charge of the bill: {case}");

    // Sessions end: after eight hours the cookie opens nothing; signing out ends one at once.
    app.clock.advance(chrono::Duration::hours(8) + chrono::Duration::seconds(1));
    assert_eq!(get("/console/months/2026-10", &regulator).await.unwrap().status(), 303);
    let (fresh, _) = sign_in(&client, &base, REGULATOR).await;
    assert_eq!(get("/console/logout", &fresh).await.unwrap().status(), 303);
    assert_eq!(get("/console/months/2026-10", &fresh).await.unwrap().status(), 303);

    serving.finish().await;
    app.cleanup().await;
}
