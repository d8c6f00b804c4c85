//! `serve` holds against clients that stall: a request's headers must come within the header
//! timeout (an idle socket is closed too), and connections past the cap are closed at once.

mod common;

use std::time::{Duration, Instant};

use billpush::server::{HEADER_TIMEOUT, MAX_CONNECTIONS};
use common::{spawn_app_with, Backend, Options, Serving, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn serve() -> (TestApp, Serving) {
    let app = spawn_app_with(Options { backend: Backend::Sqlite, ..Options::default() }).await;
    let serving = app.serve_api().await;
    (app, serving)
}

/// Reads until the server closes the connection; how long that took.
async fn time_until_closed(mut socket: TcpStream) -> Duration {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    let bound = HEADER_TIMEOUT * 3;
    tokio::time::timeout(bound, async {
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection");
    started.elapsed()
}

#[tokio::test]
async fn a_client_stalling_in_its_headers_or_sending_nothing_is_dropped() {
    let (app, serving) = serve().await;
    let address = serving.address;
    let mut stalled = TcpStream::connect(address).await.unwrap();
    stalled.write_all(b"GET /healthz HTTP/1.1\r\nHost: billpush\r\nX-Trickle: ").await.unwrap();
    let idle = TcpStream::connect(address).await.unwrap();
    let (stalled, idle) = tokio::join!(time_until_closed(stalled), time_until_closed(idle));
    assert!(stalled <= HEADER_TIMEOUT + Duration::from_secs(2), "stalled headers dropped after {stalled:?}");
    assert!(idle <= HEADER_TIMEOUT + Duration::from_secs(2), "idle socket dropped after {idle:?}");

    // A well-behaved client is still answered.
    let health = reqwest::get(format!("http://{address}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    serving.finish().await;
    app.cleanup().await;
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_served_again_when_one_leaves() {
    let (app, serving) = serve().await;
    let address = serving.address;
    let mut held = Vec::with_capacity(MAX_CONNECTIONS);
    for _ in 0..MAX_CONNECTIONS {
        held.push(TcpStream::connect(address).await.unwrap());
    }
    // The server counts a connection once it has accepted it: a request on the last one
    // answered proves every earlier one was accepted and counted.
    let last = held.last_mut().unwrap();
    last.write_all(b"GET /healthz HTTP/1.1\r\nHost: billpush\r\n\r\n").await.unwrap();
    let mut answer = [0u8; 12];
    last.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");

    let over = TcpStream::connect(address).await.unwrap();
    let closed_after = time_until_closed(over).await;
    assert!(closed_after < HEADER_TIMEOUT / 2, "the connection over the cap closed after {closed_after:?}");

    held.clear();
    let health = tokio::time::timeout(HEADER_TIMEOUT, async {
        loop {
            // Slots come back as the server notices the closed connections.
            if let Ok(response) = reqwest::get(format!("http://{address}/healthz")).await {
                return response.status();
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("served again once connections left");
    assert_eq!(health, 200);
    serving.finish().await;
    app.cleanup().await;
}
