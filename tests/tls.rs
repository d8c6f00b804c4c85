//! TLS on every connection billpush makes or takes: an `https://` gateway with a certificate
//! from a private CA trusted through `tls.ca_file` (and refused without it), `amqps://` that
//! never falls back to plain text, and `serve` terminating TLS itself.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;

use billpush::config::GatewayKind;
use billpush::gateway::mock::{Faults, MockGateway};
use billpush::queue::{AmqpQueue, AmqpSettings};
use common::{spawn_app_with, Backend, Options};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

const AS_OF: &str = "2027-01-01T00:00:00+08:00";

/// A private CA and a certificate it issued for `localhost` and 127.0.0.1, as PEM text: the
/// CA's certificate, the server's certificate and the server's key.
struct PrivateCa {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn private_ca() -> PrivateCa {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "billpush test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    PrivateCa { ca_pem: ca.pem(), cert_pem: server.pem(), key_pem: key.serialize_pem() }
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The small fixture pushed for October to a mock gateway behind TLS; `trust_ca` decides
/// whether `tls.ca_file` names the CA that issued the gateway's certificate.
async fn push_over_https(trust_ca: bool) -> (u64, u64, u64) {
    let ca = private_ca();
    let files = tempfile::tempdir().unwrap();
    let ca_file = write(files.path(), "ca.pem", &ca.ca_pem);
    let mock = MockGateway::new("tls-token", Faults::default());
    let stop = CancellationToken::new();
    let (address, serving) =
        mock.serve_tls("127.0.0.1:0", ca.cert_pem.into_bytes(), ca.key_pem.into_bytes(), stop.clone()).await.unwrap();
    let app = spawn_app_with(Options {
        backend: Backend::Sqlite,
        configure: Box::new(move |c| {
            c.gateway.kind = GatewayKind::Http;
            c.gateway.url = format!("https://localhost:{}", address.port());
            c.gateway.token = "tls-token".into();
            c.gateway.max_attempts = 1;
            c.gateway.retry_base_ms = 1;
            if trust_ca {
                c.tls.ca_file = ca_file;
            }
        }),
        ..Options::default()
    })
    .await;
    app.import_fixture().await;
    let report = app.run("2026-10", AS_OF).await;
    let accepted_at_gateway = mock.stats().accepted;
    stop.cancel();
    serving.await.unwrap();
    app.cleanup().await;
    (report.push.accepted, report.push.failed, accepted_at_gateway)
}

#[tokio::test]
async fn a_gateway_whose_certificate_comes_from_a_trusted_private_ca_takes_the_month() {
    // Ten bill SMS and the opted-out subscriber's flag notice.
    let (accepted, failed, at_gateway) = push_over_https(true).await;
    assert_eq!((accepted, failed, at_gateway), (11, 0, 11));
}

#[tokio::test]
async fn without_the_private_ca_the_same_gateway_is_refused_and_nothing_is_sent() {
    let (accepted, failed, at_gateway) = push_over_https(false).await;
    assert_eq!((accepted, failed, at_gateway), (0, 11, 0));
}

#[test]
fn a_ca_file_that_holds_no_certificate_stops_the_start_naming_the_key() {
    let files = tempfile::tempdir().unwrap();
    let mut config = billpush::config::Config::default();
    config.tls.ca_file = write(files.path(), "ca.pem", "-----BEGIN NOTHING-----\n");
    let error = config.settings().unwrap_err().to_string();
    assert!(error.contains("tls.ca_file") && error.contains("ca.pem"), "{error}");
}

/// A listener that speaks no TLS: it keeps the first bytes a client sends, then hangs up.
async fn plain_listener() -> (SocketAddr, tokio::task::JoinHandle<Vec<u8>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let first_bytes = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut bytes = vec![0u8; 8];
        let mut read = 0;
        while read < bytes.len() {
            match socket.read(&mut bytes[read..]).await.unwrap() {
                0 => break,
                n => read += n,
            }
        }
        bytes.truncate(read);
        bytes
    });
    (address, first_bytes)
}

#[tokio::test]
async fn amqps_to_a_plain_listener_fails_without_sending_the_amqp_header() {
    let (address, first_bytes) = plain_listener().await;
    let settings = AmqpSettings {
        url: format!("amqps://guest:guest@127.0.0.1:{}/%2f", address.port()),
        name: "billpush-tls-test".into(),
        prefetch: 1,
        tls: Default::default(),
    };
    let error = tokio::time::timeout(std::time::Duration::from_secs(30), AmqpQueue::connect(&settings))
        .await
        .expect("the attempt ends")
        .err()
        .expect("a listener without TLS is refused");
    let first_bytes = first_bytes.await.unwrap();
    assert!(!first_bytes.starts_with(b"AMQP"), "the AMQP header went out in clear: {first_bytes:?}");
    assert_eq!(first_bytes.first(), Some(&0x16), "a TLS handshake record came first: {first_bytes:?}");
    assert!(!error.to_string().is_empty());
}

#[tokio::test]
async fn serve_terminates_tls_with_its_certificate_and_key() {
    let ca = private_ca();
    let files = tempfile::tempdir().unwrap();
    let cert = write(files.path(), "cert.pem", &ca.cert_pem);
    let key = write(files.path(), "key.pem", &ca.key_pem);
    let app = spawn_app_with(Options {
        backend: Backend::Sqlite,
        configure: Box::new(move |c| {
            c.api.tls_cert = cert;
            c.api.tls_key = key;
        }),
        ..Options::default()
    })
    .await;
    let serving = app.serve_api().await;
    let port = serving.address.port();

    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let health = trusting.get(format!("https://localhost:{port}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.is_err(), "no plain HTTP on a TLS port");

    serving.finish().await;
    app.cleanup().await;
}

#[tokio::test]
async fn postgres_with_sslmode_require_speaks_tls_for_the_whole_month() {
    let app = spawn_app_with(Options {
        backend: Backend::Postgres,
        configure: Box::new(|c| c.database.url = format!("{}?sslmode=require", c.database.url)),
        ..Options::default()
    })
    .await;
    app.import_fixture().await;
    assert_eq!(app.run("2026-10", AS_OF).await.push.accepted, 11);
    let mut tx = app.app.store.begin().await.unwrap();
    let (ssl,): (i64,) =
        sqlx::query_as("SELECT CASE WHEN ssl THEN 1 ELSE 0 END::bigint FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    drop(tx);
    assert_eq!(ssl, 1, "the connection is encrypted (PostgreSQL must run with ssl = on)");
    app.cleanup().await;
}
