//! Parts per second to the test SMSC answering at once, through billpush's SMPP gateway and
//! through a raw rusmppc client with the same binds and window, in the same run.
//!   cargo bench --bench smpp -- [PARTS=50000] [BINDS=2] [WINDOW=10]

use std::sync::Arc;
use std::time::{Duration, Instant};

use billpush::config::SmppLong;
use billpush::gateway::smpp::{self, SmppGateway, SmppSettings};
use billpush::gateway::smsc::{SmscConfig, TestSmsc};
use billpush::gateway::{Gateway, OutboundSms};
use billpush::push::{CONCURRENCY, PARALLEL_DELIVERIES};
use futures_util::stream::{self, StreamExt};
use rusmpp::pdus::{BindTransceiver, SubmitSm};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use std::str::FromStr;

// The allocator the `billpush` binary runs with, for both sides.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs of each side; the median is compared. Single runs on the shared cores differ by a
/// third, so the medians of fewer runs still move by a tenth from one invocation to the next.
const ROUNDS: usize = 15;

fn arg(n: usize, default: usize) -> usize {
    std::env::args().skip(1).filter(|a| !a.starts_with('-')).nth(n).and_then(|a| a.parse().ok()).unwrap_or(default)
}

/// `binds` raw clients, each with `window` submit_sm awaited at once, `parts` in all. Each is
/// driven as billpush's binds are (`smpp::connect`): rusmppc 0.4's own connection would stall
/// with requests queued (see `Driver` there), and both sides get the same transport.
async fn raw(port: u16, parts: usize, binds: usize, window: usize) -> Duration {
    let mut clients = Vec::new();
    for _ in 0..binds {
        let builder = rusmppc::ConnectionBuilder::new().disable_interface_version_check();
        let (client, mut events) = smpp::connect(builder, "127.0.0.1", port, None, Some).await.expect("connect");
        tokio::spawn(async move { while events.recv().await.is_some() {} });
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
    started.elapsed()
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
    // A push's rows come with their ids: not part of what is measured.
    let ids: Arc<Vec<String>> = Arc::new((0..parts).map(|n| format!("n{n}")).collect());
    let started = Instant::now();
    // One task sending as many messages at once as a worker's push does, on a runtime worker
    // as the push runs (not on the thread that blocks on `main`).
    let sending = {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            stream::iter(0..parts)
                .for_each_concurrent(PARALLEL_DELIVERIES * CONCURRENCY, |n| {
                    let (gateway, ids) = (gateway.clone(), ids.clone());
                    async move {
                        let sms = OutboundSms {
                            id: &ids[n],
                            to: "+8613900000001",
                            from: "10001",
                            text: "Your bill for 2026-10: 58.00 yuan.",
                            encoding: "gsm7",
                            segments: 1,
                        };
                        gateway.send(&sms).await.expect("accepted");
                    }
                })
                .await
        })
    };
    sending.await.unwrap();
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
    // Each side once to warm up, then both in turn, so that both see the machine alike.
    raw(smsc.port(), parts.min(1000), binds, window).await;
    billpush(smsc.port(), parts.min(1000), binds, window).await;
    let (mut raws, mut ours) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        raws.push(raw(smsc.port(), parts, binds, window).await);
        ours.push(billpush(smsc.port(), parts, binds, window).await);
    }
    // Each round's two runs are next to each other in time: their ratio is the least moved by
    // the machine's speed, which drifts over seconds.
    let mut paired: Vec<f64> =
        raws.iter().zip(&ours).map(|(raw, ours)| raw.as_secs_f64() / ours.as_secs_f64()).collect();
    paired.sort_by(f64::total_cmp);
    let paired = paired[paired.len() / 2];
    // Parts per second: the median, the slowest and the fastest run.
    let rates = |runs: &mut Vec<Duration>| {
        runs.sort();
        let rate = |run: &Duration| parts as f64 / run.as_secs_f64();
        (rate(&runs[runs.len() / 2]), rate(&runs[runs.len() - 1]), rate(&runs[0]))
    };
    let ((raw_rate, raw_low, raw_high), (our_rate, our_low, our_high)) = (rates(&mut raws), rates(&mut ours));
    println!(
        "smpp parts={parts} binds={binds} window={window} rounds={ROUNDS} median raw={raw_rate:.0}/s billpush={our_rate:.0}/s ratio={:.2} paired={paired:.2} (runs: raw {raw_low:.0}–{raw_high:.0}, billpush {our_low:.0}–{our_high:.0})",
        our_rate / raw_rate
    );
}
