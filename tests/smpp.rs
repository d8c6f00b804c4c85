//! The `smpp` gateway against the test SMSC (`billpush::gateway::smsc`, built on the same
//! crate's codec): binds and window, parts and encodings, receipts and replies as `deliver_sm`,
//! each error class, reconnection, TLS, and nothing sent twice.

mod common;

use std::collections::HashMap;

use billpush::config::{Config, GatewayKind, SmppLong};
use billpush::export::ExportKind;
use billpush::gateway::smsc::{Answer, SmscConfig, Submitted, TestSmsc};
use common::*;
use rusmpp::CommandStatus;
use sqlx::Row;

async fn smpp_app(smsc: &TestSmsc, backend: Backend, configure: impl FnOnce(&mut Config) + 'static) -> TestApp {
    let port = smsc.port();
    spawn_app_with(Options {
        backend,
        configure: Box::new(move |c| {
            c.gateway.kind = GatewayKind::Smpp;
            c.gateway.idempotent = false;
            c.gateway.retry_base_ms = 10;
            c.gateway.rate_per_second = 10_000;
            c.smpp.host = "127.0.0.1".into();
            c.smpp.port = port;
            c.smpp.system_id = "billpush".into();
            c.smpp.password = "secret".into();
            c.smpp.timeout_ms = 2_000;
            c.smpp.receipt_wait = "20s".into();
            configure(c);
        }),
        ..Options::default()
    })
    .await
}

/// (id, msisdn, status, segments, encoding, gateway_message_id) of every delivery.
async fn deliveries(app: &TestApp) -> Vec<serde_json::Value> {
    app.export(ExportKind::Deliveries, "2026-10").await
}

async fn reasons(app: &TestApp, status: &str) -> Vec<String> {
    let mut connection = app.app.store.connection().await.unwrap();
    sqlx::query("SELECT reason FROM notifications WHERE status = $1")
        .bind(status)
        .fetch_all(&mut *connection)
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get::<Option<String>, _>("reason").unwrap().unwrap_or_default())
        .collect()
}

/// Submits answered OK, per destination.
fn accepted_by_number(submitted: &[Submitted]) -> HashMap<String, Vec<&Submitted>> {
    let mut by_number: HashMap<String, Vec<&Submitted>> = HashMap::new();
    for s in submitted.iter().filter(|s| s.message_id.is_some()) {
        by_number.entry(s.destination.clone()).or_default().push(s);
    }
    by_number
}

/// The (reference, total, part) of a part's concatenation header.
fn udh(s: &Submitted) -> Option<(u8, u8, u8)> {
    (s.esm_class & 0x40 != 0).then(|| {
        assert_eq!(&s.short_message[..3], &[5, 0, 3], "an 8-bit reference concatenation header");
        (s.short_message[3], s.short_message[4], s.short_message[5])
    })
}

async fn month_over_smpp(backend: Backend) {
    let smsc = TestSmsc::start(SmscConfig::default()).await.unwrap();
    let app = smpp_app(&smsc, backend, |c| c.smpp.binds = 2).await;
    app.import_population(20).await;
    smsc.set_receipt_stat("8613900000003", "UNDELIV");
    let report = app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    assert_eq!((report.push.accepted, report.push.failed, report.push.unknown), (20, 0, 0));

    let submitted = smsc.submitted();
    let by_number = accepted_by_number(&submitted);
    let deliveries = deliveries(&app).await;
    assert_eq!(deliveries.len(), 20);
    let mut long = 0;
    for d in &deliveries {
        let number = d["msisdn"].as_str().unwrap().trim_start_matches('+');
        let parts = &by_number[number];
        let segments = d["segments"].as_u64().unwrap() as usize;
        assert_eq!(parts.len(), segments, "{number}: one submit_sm per segment, each once");
        let ucs2 = d["encoding"] == "ucs2";
        for (i, part) in parts.iter().enumerate() {
            assert_eq!(part.data_coding, if ucs2 { 8 } else { 0 });
            assert_eq!((part.source.as_str(), part.source_ton, part.registered_delivery), ("10001", 5, 1));
            match udh(part) {
                None => assert_eq!(segments, 1),
                Some((_, total, number)) => {
                    assert_eq!((total as usize, number as usize), (segments, i + 1));
                    // A part holds at most 67 UCS-2 units or 153 septets after its header.
                    assert!(part.short_message.len() - 6 <= if ucs2 { 134 } else { 153 });
                }
            }
        }
        if segments > 1 {
            long += 1;
            let references: std::collections::HashSet<u8> = parts.iter().map(|p| udh(p).unwrap().0).collect();
            assert_eq!(references.len(), 1, "{number}: the parts of one message share their reference");
        }
        assert_eq!(d["gateway_message_id"].as_str(), parts[0].message_id.as_deref(), "the first part's id is kept");
        let expected = if number == "8613900000003" { "undeliverable" } else { "delivered" };
        assert_eq!(d["status"], expected, "{number}: settled by its receipts during run");
    }
    assert!(long > 0, "the population has long bills");
    assert_eq!(submitted.iter().map(|s| s.connection).collect::<std::collections::HashSet<_>>().len(), 2, "two binds");
    assert_eq!((smsc.binds(), smsc.unbinds()), (2, 2), "bound once each and unbound at the end");
    assert_eq!(smsc.receipts_acknowledged(), smsc.receipts_sent(), "every receipt answered");
    app.cleanup().await;
}

#[tokio::test]
async fn a_month_goes_over_smpp_once_each_and_its_receipts_settle_it_sqlite() {
    month_over_smpp(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_month_goes_over_smpp_once_each_and_its_receipts_settle_it_postgres() {
    month_over_smpp(Backend::Postgres).await;
}

#[tokio::test]
async fn the_window_bounds_what_is_outstanding_on_each_bind() {
    let smsc = TestSmsc::start(SmscConfig::default()).await.unwrap();
    let app = smpp_app(&smsc, Backend::Sqlite, |c| {
        c.smpp.binds = 2;
        c.smpp.window = 3;
        c.smpp.long = SmppLong::Payload;
    })
    .await;
    app.import_population(30).await;
    smsc.hold(true);
    let (report, ()) = tokio::join!(app.run("2026-10", "2027-01-01T00:00:00+08:00"), async {
        smsc.wait_held(6).await;
        // Both windows are full: nothing more is written until an answer comes.
        assert_eq!(smsc.submitted().len(), 6);
        assert_eq!(smsc.peak_outstanding(), 3);
        smsc.hold(false);
    });
    assert_eq!(report.push.accepted, 30);
    assert_eq!(smsc.peak_outstanding(), 3, "never more than the window on one bind");
    assert_eq!(smsc.submitted().len(), 30, "one submit_sm each with message_payload");
    assert!(smsc.submitted().iter().all(|s| s.short_message.is_empty() && s.message_payload.is_some()));
    app.cleanup().await;
}

#[tokio::test]
async fn each_error_class_is_handled_as_the_contract_says_and_nothing_is_sent_twice() {
    let smsc = TestSmsc::start(SmscConfig::default()).await.unwrap();
    // One bind, one at a time, one submit_sm per message: the answers meet the messages in turn.
    let app = smpp_app(&smsc, Backend::Sqlite, |c| {
        c.smpp.window = 1;
        c.smpp.long = SmppLong::Payload;
        c.smpp.timeout_ms = 500;
    })
    .await;
    app.import_population(6).await;
    smsc.script([
        Answer::Status(CommandStatus::EsmeRthrottled),
        Answer::Status(CommandStatus::EsmeRmsgqful),
        Answer::Status(CommandStatus::EsmeRsyserr),
        Answer::Status(CommandStatus::EsmeRinvdstadr),
        Answer::NoResponse,
    ]);
    let report = app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    assert_eq!(
        (report.push.accepted, report.push.failed, report.push.unknown, report.push.retried),
        (4, 1, 1, 3),
        "throttled, queue full and system error retried; invalid address failed; no answer unknown"
    );
    assert_eq!(reasons(&app, "failed").await, vec!["ESME_RINVDSTADR (0x0000000B)".to_string()]);
    assert!(reasons(&app, "unknown").await[0].contains("no submit_sm_resp within 500 ms"));
    let submitted = smsc.submitted();
    // ESME_RTHROTTLED pauses the worker at least 100 ms before its next submit_sm.
    assert!(submitted[1].received - submitted[0].received >= std::time::Duration::from_millis(100));
    assert_eq!(submitted.len(), 6 + 3, "six messages, three of them twice after a retryable refusal");
    let by_number = accepted_by_number(&submitted);
    assert!(by_number.values().all(|parts| parts.len() == 1), "no message accepted twice");
    // The unanswered one was written once and never again.
    let unanswered = &submitted[4].destination;
    assert_eq!(submitted.iter().filter(|s| &s.destination == unanswered).count(), 1);
    app.cleanup().await;
}

#[tokio::test]
async fn a_dropped_connection_is_bound_again_and_what_was_in_flight_is_never_resent() {
    let smsc = TestSmsc::start(SmscConfig::default()).await.unwrap();
    let app = smpp_app(&smsc, Backend::Sqlite, |c| {
        c.smpp.window = 1;
        c.smpp.long = SmppLong::Payload;
    })
    .await;
    app.import_population(8).await;
    smsc.script([Answer::Ok, Answer::Ok, Answer::Drop]);
    let report = app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    assert_eq!(
        (report.push.accepted, report.push.unknown),
        (7, 1),
        "the one in flight when the line dropped is unknown"
    );
    assert!(smsc.binds() >= 2, "bound again after the drop");
    let submitted = smsc.submitted();
    assert_eq!(submitted.len(), 8, "each message written once");
    let dropped = &submitted[2].destination;
    assert!(deliveries(&app)
        .await
        .iter()
        .any(|d| d["msisdn"].as_str().unwrap().ends_with(dropped.as_str()) && d["status"] == "unknown"));
    app.cleanup().await;
}

#[tokio::test]
async fn a_refused_bind_stops_the_run_with_the_reason() {
    let smsc = TestSmsc::start(SmscConfig::default()).await.unwrap();
    let app = smpp_app(&smsc, Backend::Sqlite, |c| c.smpp.password = "wrong".into()).await;
    app.import_population(1).await;
    let error = app
        .app
        .run("2026-10".parse().unwrap(), Some(at("2027-01-01T00:00:00+08:00")), billpush::billing::BuildMode::Keep)
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("refused the bind") && message.contains("ESME_RBINDFAIL"), "{message}");
    assert!(smsc.submitted().is_empty());
    app.cleanup().await;
}

#[tokio::test]
async fn a_reply_over_smpp_is_handled_as_post_mo_and_answered_over_the_same_bind() {
    let smsc = TestSmsc::start(SmscConfig::default()).await.unwrap();
    let app = smpp_app(&smsc, Backend::Sqlite, |_| {}).await;
    app.import_population(2).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let (pushed, ()) = tokio::join!(app.app.push_answers(stop.clone()), async {
        smsc.wait_bound(1).await;
        // A reply in two UCS-2 parts would be joined; this one is short and ASCII.
        smsc.send_mo("8613900000001", "10001", "TDZD").await.unwrap();
        smsc.wait_submitted(1).await;
        stop.cancel();
    });
    let pushed = pushed.unwrap();
    assert_eq!(pushed.accepted, 1, "the opt-out confirmed by SMS");
    let submitted = smsc.submitted();
    assert_eq!(submitted[0].destination, "8613900000001");
    let record = app.app.store.subscriber_record("P000001").await.unwrap().unwrap();
    assert!(!record.bill_sms, "opted out of the bill SMS");
    assert!(smsc.receipts_acknowledged() >= 1, "the reply's deliver_sm was answered");
    app.cleanup().await;
}

#[tokio::test]
async fn smpp_runs_over_tls_with_the_operators_ca() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "billpush test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string()]).unwrap().signed_by(&key, &ca).unwrap();
    let chain = vec![server.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let smsc = TestSmsc::start(SmscConfig { tls: Some((chain, key)), ..SmscConfig::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let app = smpp_app(&smsc, Backend::Sqlite, move |c| {
        c.smpp.host = "localhost".into();
        c.smpp.tls = true;
        c.tls.ca_file = ca_file;
    })
    .await;
    app.import_population(3).await;
    let report = app.run("2026-10", "2027-01-01T00:00:00+08:00").await;
    assert_eq!(report.push.accepted, 3);
    assert!(deliveries(&app).await.iter().all(|d| d["status"] == "delivered"));
    drop(dir);
    app.cleanup().await;
}

#[test]
fn smpp_settings_are_checked_at_start() {
    let smsc_less = |change: fn(&mut Config)| {
        let mut c = Config::default();
        c.gateway.kind = GatewayKind::Smpp;
        c.gateway.idempotent = false;
        c.smpp.host = "smsc".into();
        c.smpp.system_id = "billpush".into();
        change(&mut c);
        c.settings().err().map(|e| e.to_string())
    };
    assert_eq!(smsc_less(|_| {}), None);
    assert!(smsc_less(|c| c.gateway.idempotent = true).unwrap().contains("gateway.idempotent"));
    assert!(smsc_less(|c| c.smpp.host = String::new()).unwrap().contains("smpp.host"));
    assert!(smsc_less(|c| c.smpp.password = "longer than eight".into()).unwrap().contains("smpp.password"));
    assert!(smsc_less(|c| c.smpp.window = 0).unwrap().contains("smpp.window"));
    assert!(smsc_less(|c| c.smpp.receipt_wait = "soon".into()).unwrap().contains("smpp.receipt_wait"));
}
