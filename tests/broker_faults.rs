//! Broker connections dropped mid-push (`rabbitmqctl close_all_connections`): the workers
//! reconnect and carry on, nothing lost or doubled. A test binary of its own, because the
//! drill closes every connection on the broker.

mod common;

use std::process::Stdio;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use billpush::config::GatewayKind;
use billpush::domain::shard::Shard;
use billpush::gateway::mock::{Faults, MockGateway};
use common::{assert_accepted_exactly_once, at, month, spawn_app_with, Backend, Options};
use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_recover_when_the_broker_drops_their_connections() {
    let mock = MockGateway::new("t", Faults::default());
    let (address, _serving) = mock.serve("127.0.0.1:0", CancellationToken::new()).await.unwrap();
    let app = spawn_app_with(Options {
        backend: Backend::Postgres,
        rabbitmq: true,
        configure: Box::new(move |c| {
            c.gateway.kind = GatewayKind::Http;
            c.gateway.url = format!("http://{address}");
            c.gateway.token = "t".into();
            // Slow enough that the drill (rabbitmqctl takes a second or two to start) lands mid-push.
            c.gateway.rate_per_second = 300;
            c.gateway.workers = 2;
            c.gateway.timeout_ms = 1000;
        }),
        ..Options::default()
    })
    .await;
    app.import_population(1000).await;
    app.app.schedule(month("2026-10"), Some(at("2027-01-01T00:00:00+08:00")), Shard::ALL).await.unwrap();

    let config = app.config_file();
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_billpush"))
            .arg("--config")
            .arg(&config)
            .arg("worker")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let workers = [spawn(), spawn()];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while mock.stats().accepted < 150 {
        assert!(std::time::Instant::now() < deadline, "no progress before the drill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drill = std::process::Command::new("rabbitmqctl")
        .args(["close_all_connections", "billpush connection drill"])
        .output()
        .unwrap();
    assert!(drill.status.success(), "{}", String::from_utf8_lossy(&drill.stderr));
    assert!(mock.stats().accepted < 1000, "the drill came mid-push");

    app.wait_until_pushed("2026-10", Duration::from_secs(120)).await;
    for worker in workers {
        let pid = worker.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let mut worker = worker;
        let status = tokio::time::timeout(Duration::from_secs(30), worker.wait()).await.unwrap().unwrap();
        assert!(status.success(), "{status}");
    }
    assert_accepted_exactly_once(&mock.acceptances(), 1000);
    app.cleanup().await;
}
