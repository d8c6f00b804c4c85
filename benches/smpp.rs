//! Parts per second to the test SMSC answering at once, through billpush's SMPP gateway and
//! through a raw rusmppc client with the same binds and window, in the same run.
//!   cargo bench --bench smpp -- [PARTS=50000] [BINDS=2] [WINDOW=10]

use std::sync::Arc;
use std::time::{Duration, Instant};

use billpush::config::SmppLong;
use billpush::gateway::smpp::{SmppGateway, SmppSettings};
use billpush::gateway::smsc::{SmscConfig, TestSmsc};
use billpush::gateway::{Gateway, OutboundSms};
use futures_util::stream::{self, StreamExt};
use rusmpp::pdus::{BindTransceiver, SubmitSm};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use std::str::FromStr;

fn arg(n: usize, default: usize) -> usize {
    std::env::args().skip(1).filter(|a| !a.starts_with('-')).nth(n).and_then(|a| a.parse().ok()).unwrap_or(default)
}

/// `binds` raw clients, each with `window` submit_sm awaited at once, `parts` in all. rusmppc
/// 0.4's connection writes only a few queued requests per wake-up and then waits for the next
/// event (without a nudge the raw client stalls for the 30 s enquire_link timer), so each client
/// is nudged every millisecond, as billpush's gateway does.
async fn raw(port: u16, parts: usize, binds: usize, window: usize) -> Duration {
    let mut clients = Vec::new();
    for _ in 0..binds {
        let (client, mut events) = rusmppc::ConnectionBuilder::new()
            .disable_interface_version_check()
            .connect(format!("smpp://127.0.0.1:{port}"))
            .await
            .expect("connect");
        tokio::spawn(async move { while events.next().await.is_some() {} });
        client
            .bind_transceiver(
                BindTransceiver::builder()
                    .system_id(COctetString::from_str("billpush").unwrap())
                    .password(COctetString::from_str("secret").unwrap())
                    .interface_version(InterfaceVersion::Smpp3_4)
                    .build(),
            )
            .await
            .expect("bind");
        clients.push(client);
    }
    let pdu = SubmitSm::builder()
        .source_addr_ton(Ton::Alphanumeric)
        .source_addr(COctetString::from_str("10001").unwrap())
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(COctetString::from_str("8613900000001").unwrap())
        .short_message(OctetString::from_str("Your bill for 2026-10: 58.00 yuan.").unwrap())
        .build();
    let nudging = tokio_util::sync::CancellationToken::new();
    for client in &clients {
        let (client, nudging) = (client.clone(), nudging.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(1));
            while nudging.run_until_cancelled(every.tick()).await.is_some() {
                let _ = tokio::time::timeout(Duration::ZERO, client.pending_responses()).await;
            }
        });
    }
    let started = Instant::now();
    let per_bind = parts / binds;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let pdu = pdu.clone();
            tokio::spawn(async move {
                stream::iter(0..per_bind)
                    .for_each_concurrent(window, |_| {
                        let (client, pdu) = (client.clone(), pdu.clone());
                        async move {
                            client.submit_sm(pdu).await.expect("accepted");
                        }
                    })
                    .await;
                client.unbind().await.ok();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let took = started.elapsed();
    nudging.cancel();
    took
}

/// billpush's gateway, sent to by more callers than the windows hold, as the push does.
async fn billpush(port: u16, parts: usize, binds: usize, window: usize) -> Duration {
    let (sender, mut inbound) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move { while inbound.recv().await.is_some() {} });
    let settings = SmppSettings {
        host: "127.0.0.1".into(),
        port,
        system_id: "billpush".into(),
        password: "secret".into(),
        system_type: String::new(),
        source_ton: 5,
        source_npi: 0,
        window,
        binds,
        long: SmppLong::Udh,
        tls: None,
        timeout: Duration::from_secs(10),
        receipt_wait: Duration::ZERO,
    };
    let gateway: Arc<SmppGateway> = SmppGateway::connect(settings, sender).await.expect("bound");
    let started = Instant::now();
    stream::iter(0..parts)
        .for_each_concurrent(binds * window * 4, |n| {
            let gateway = gateway.clone();
            async move {
                let id = format!("n{n}");
                let sms = OutboundSms {
                    id: &id,
                    to: "+8613900000001",
                    from: "10001",
                    text: "Your bill for 2026-10: 58.00 yuan.",
                    encoding: "gsm7",
                    segments: 1,
                };
                gateway.send(&sms).await.expect("accepted");
            }
        })
        .await;
    let took = started.elapsed();
    gateway.close().await;
    took
}

#[tokio::main]
async fn main() {
    let parts = arg(0, 50_000);
    let binds = arg(1, 2);
    let window = arg(2, 10);
    let smsc = TestSmsc::start(SmscConfig { receipts: false, ..SmscConfig::default() }).await.unwrap();
    // Each side once to warm up, then measured.
    raw(smsc.port(), parts.min(1000), binds, window).await;
    billpush(smsc.port(), parts.min(1000), binds, window).await;
    let raw_took = raw(smsc.port(), parts, binds, window).await;
    let ours_took = billpush(smsc.port(), parts, binds, window).await;
    let rate = |took: Duration| parts as f64 / took.as_secs_f64();
    println!(
        "smpp parts={parts} binds={binds} window={window} raw={:.0}/s billpush={:.0}/s ratio={:.2}",
        rate(raw_took),
        rate(ours_took),
        rate(ours_took) / rate(raw_took)
    );
}
