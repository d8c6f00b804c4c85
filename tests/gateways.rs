//! The `http` and `jasmin` gateway adapters against real HTTP servers (wiremock) answering
//! the way those gateways do.

use std::time::Duration;

use billpush::gateway::{Gateway, GatewayError, HttpGateway, JasminGateway, OutboundSms};
use billpush::tls::TlsTrust;
use wiremock::matchers::{body_json, body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn sms<'a>(text: &'a str, encoding: &'a str) -> OutboundSms<'a> {
    OutboundSms { id: "n-1", to: "+8613800138000", from: "10001", text, encoding, segments: 1 }
}

async fn http_answer(response: ResponseTemplate) -> Result<String, GatewayError> {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/messages"))
        .and(header("authorization", "Bearer secret"))
        .and(header("idempotency-key", "n-1"))
        .and(body_json(serde_json::json!({"id": "n-1", "to": "+8613800138000", "from": "10001", "text": "hi", "encoding": "gsm7", "segments": 1})))
        .respond_with(response)
        .expect(1)
        .mount(&server)
        .await;
    let gateway = HttpGateway::new(&server.uri(), "secret", Duration::from_millis(500), &TlsTrust::default()).unwrap();
    gateway.send(&sms("hi", "gsm7")).await
}

#[tokio::test]
async fn the_http_gateway_classifies_every_answer() {
    let ok = ResponseTemplate::new(200).set_body_json(serde_json::json!({"message_id": "gw-7"}));
    assert_eq!(http_answer(ok).await, Ok("gw-7".to_string()));
    let conflict = ResponseTemplate::new(409);
    assert_eq!(http_answer(conflict).await, Ok("idempotency-key:n-1".to_string()), "409: this key was accepted before");
    let slow_down = ResponseTemplate::new(429).insert_header("retry-after", "7");
    assert_eq!(
        http_answer(slow_down).await,
        Err(GatewayError::RateLimited { retry_after: Some(Duration::from_secs(7)) })
    );
    assert!(matches!(http_answer(ResponseTemplate::new(503)).await, Err(GatewayError::Transient(_))));
    assert!(matches!(http_answer(ResponseTemplate::new(400)).await, Err(GatewayError::Permanent(_))));
    let late = ResponseTemplate::new(200).set_delay(Duration::from_secs(2));
    assert!(
        matches!(http_answer(late).await, Err(GatewayError::Ambiguous(_))),
        "a timeout after the request left is ambiguous"
    );
}

#[tokio::test]
async fn an_unreachable_http_gateway_is_a_transient_failure() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let gateway = HttpGateway::new(
        &format!("http://127.0.0.1:{port}"),
        "secret",
        Duration::from_millis(500),
        &TlsTrust::default(),
    )
    .unwrap();
    assert!(matches!(gateway.send(&sms("hi", "gsm7")).await, Err(GatewayError::Transient(_))));
}

async fn jasmin_answer(text: &str, encoding: &str, response: ResponseTemplate) -> Result<String, GatewayError> {
    let server = MockServer::start().await;
    let mut expected = vec![
        "username=bp",
        "password=pw",
        "to=8613800138000",
        "from=10001",
        "dlr=yes",
        "dlr-level=3",
        "dlr-method=POST",
        "dlr-url=http%3A%2F%2F127.0.0.1%3A8080%2Fapi%2Fv1%2Fdlr%2Fjasmin%3Ftoken%3Dgw",
    ];
    expected.push(if encoding == "ucs2" { "coding=8" } else { "coding=0" });
    let mut mock = Mock::given(method("POST")).and(path("/send"));
    for field in expected {
        mock = mock.and(body_string_contains(field));
    }
    let content =
        if encoding == "ucs2" { format!("hex-content={}", "8d2653554e2d") } else { "content=hello".to_string() };
    mock.and(body_string_contains(content.as_str())).respond_with(response).expect(1).mount(&server).await;
    let gateway = JasminGateway::new(
        &server.uri(),
        "bp",
        "pw",
        "http://127.0.0.1:8080/api/v1/dlr/jasmin?token=gw".into(),
        Duration::from_millis(500),
        &TlsTrust::default(),
    )
    .unwrap();
    gateway.send(&sms(text, encoding)).await
}

#[tokio::test]
async fn the_jasmin_gateway_speaks_jasmins_http_api() {
    let success = ResponseTemplate::new(200).set_body_string("Success \"07033084-5cfd-4812-90a4-e4d24ffb6e3d\"");
    assert_eq!(
        jasmin_answer("hello", "gsm7", success.clone()).await,
        Ok("07033084-5cfd-4812-90a4-e4d24ffb6e3d".to_string())
    );
    assert_eq!(
        jasmin_answer("账单中", "ucs2", success).await.unwrap(),
        "07033084-5cfd-4812-90a4-e4d24ffb6e3d",
        "UCS-2 goes as UTF-16BE hex"
    );

    let throttled = ResponseTemplate::new(403).set_body_string("Error \"User throughput exceeded\"");
    assert_eq!(jasmin_answer("hello", "gsm7", throttled).await, Err(GatewayError::RateLimited { retry_after: None }));
    let bad_credentials =
        ResponseTemplate::new(403).set_body_string("Error \"Authentication failure for username:bp\"");
    assert!(matches!(jasmin_answer("hello", "gsm7", bad_credentials).await, Err(GatewayError::Permanent(_))));
    let no_route = ResponseTemplate::new(412).set_body_string("Error \"No route found\"");
    assert!(matches!(jasmin_answer("hello", "gsm7", no_route).await, Err(GatewayError::Permanent(_))));
    let bad_request = ResponseTemplate::new(400).set_body_string("Error \"Mandatory argument [to] is not found.\"");
    assert!(matches!(jasmin_answer("hello", "gsm7", bad_request).await, Err(GatewayError::Permanent(_))));
    assert!(matches!(
        jasmin_answer("hello", "gsm7", ResponseTemplate::new(500)).await,
        Err(GatewayError::Transient(_))
    ));
    let late = ResponseTemplate::new(200).set_body_string("Success \"x\"").set_delay(Duration::from_secs(2));
    assert!(matches!(jasmin_answer("hello", "gsm7", late).await, Err(GatewayError::Ambiguous(_))));
    let jasmin =
        JasminGateway::new("http://x", "u", "p", String::new(), Duration::from_secs(1), &TlsTrust::default()).unwrap();
    assert_eq!(jasmin.idempotency(), billpush::domain::delivery::Idempotency::NotHonoured);
}
