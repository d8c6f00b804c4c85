//! A mock SMS gateway speaking the generic `http` protocol, for tests, benchmarks and fault
//! drills (`billpush mock-gateway`). It honours idempotency keys like a real gateway would,
//! can inject faults, and records every acceptance so exactly-once and rate can be checked.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use crate::server::Listener;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

/// Fractions of requests answered with each fault, decided by a seeded sequence so a run can
/// be repeated exactly.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Faults {
    /// `503 Service Unavailable`.
    pub unavailable: f64,
    /// `429 Too Many Requests` with `Retry-After: 1`.
    pub too_many: f64,
    /// An answer slower than `slow_for`, past the client's timeout; the message is not kept.
    pub slow: f64,
    /// The message is accepted and kept, but the answer says `503`.
    pub lost_answer: f64,
    pub slow_for_ms: u64,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Acceptance {
    pub key: String,
    pub to: String,
    pub text: String,
    pub segments: u64,
    /// Milliseconds since the gateway started.
    pub at_ms: u64,
}

#[derive(Default)]
struct Ledger {
    by_key: HashMap<String, String>,
    accepted: Vec<Acceptance>,
    repeated_keys: u64,
}

pub struct MockGateway {
    token: String,
    faults: Faults,
    started: Instant,
    requests: AtomicU64,
    ledger: Mutex<Ledger>,
}

#[derive(Deserialize)]
struct Message {
    to: String,
    text: String,
    segments: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub requests: u64,
    pub accepted: u64,
    /// Requests that repeated an accepted key and were answered 409.
    pub repeated_keys: u64,
    /// The most message parts accepted within any one-second window.
    pub max_parts_per_second: u64,
}

/// splitmix64: a well-mixed deterministic sequence for fault decisions.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

enum Decision {
    Accept,
    Unavailable,
    TooMany,
    Slow,
    LostAnswer,
}

impl MockGateway {
    pub fn new(token: &str, faults: Faults) -> Arc<MockGateway> {
        Arc::new(MockGateway {
            token: token.to_string(),
            faults,
            started: Instant::now(),
            requests: AtomicU64::new(0),
            ledger: Mutex::new(Ledger::default()),
        })
    }

    /// Serves on `bind` until `stop` is cancelled; returns the bound address and the serving
    /// task, which ends once the answers in flight are given.
    pub async fn serve(
        self: &Arc<Self>,
        bind: &str,
        stop: CancellationToken,
    ) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        self.serve_on(Listener::bind(bind, None).await?, stop)
    }

    /// As `serve`, over TLS with the certificate and key given as PEM text: a gateway reached
    /// by `https://`.
    pub async fn serve_tls(
        self: &Arc<Self>,
        bind: &str,
        cert: Vec<u8>,
        key: Vec<u8>,
        stop: CancellationToken,
    ) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        self.serve_on(Listener::bind_tls_pem(bind, cert, key).await?, stop)
    }

    fn serve_on(
        self: &Arc<Self>,
        listener: Listener,
        stop: CancellationToken,
    ) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let address = listener.local_addr()?;
        let app = Router::new()
            .route("/messages", post(receive))
            .route("/stats", get(stats))
            .route("/accepted", get(accepted))
            .with_state(self.clone());
        let task = tokio::spawn(async move {
            // The mock lives as long as its task; an error here ends the drill visibly.
            if let Err(error) = listener.serve(app, stop).await {
                tracing::error!(%error, "mock gateway stopped");
            }
        });
        Ok((address, task))
    }

    fn decide(&self, request: u64) -> Decision {
        let roll = (mix(self.faults.seed ^ request) >> 11) as f64 / (1u64 << 53) as f64;
        let f = &self.faults;
        let mut edge = f.unavailable;
        if roll < edge {
            return Decision::Unavailable;
        }
        edge += f.too_many;
        if roll < edge {
            return Decision::TooMany;
        }
        edge += f.slow;
        if roll < edge {
            return Decision::Slow;
        }
        edge += f.lost_answer;
        if roll < edge {
            return Decision::LostAnswer;
        }
        Decision::Accept
    }

    /// Records an acceptance unless the key was accepted before; returns the message id and
    /// whether it is new.
    fn accept(&self, key: &str, message: Message) -> (String, bool) {
        let mut ledger = self.ledger.lock().expect("ledger lock");
        if let Some(id) = ledger.by_key.get(key) {
            let id = id.clone();
            ledger.repeated_keys += 1;
            return (id, false);
        }
        let id = format!("mock-{}", ledger.accepted.len() + 1);
        ledger.by_key.insert(key.to_string(), id.clone());
        let at_ms = self.started.elapsed().as_millis() as u64;
        ledger.accepted.push(Acceptance {
            key: key.to_string(),
            to: message.to,
            text: message.text,
            segments: message.segments,
            at_ms,
        });
        (id, true)
    }

    pub fn acceptances(&self) -> Vec<Acceptance> {
        self.ledger.lock().expect("ledger lock").accepted.clone()
    }

    pub fn stats(&self) -> Stats {
        let ledger = self.ledger.lock().expect("ledger lock");
        Stats {
            requests: self.requests.load(Ordering::Relaxed),
            accepted: ledger.accepted.len() as u64,
            repeated_keys: ledger.repeated_keys,
            max_parts_per_second: max_parts_in_window(&ledger.accepted, 1000),
        }
    }
}

/// The most parts accepted within any window of `window_ms` (acceptances are in time order).
pub fn max_parts_in_window(accepted: &[Acceptance], window_ms: u64) -> u64 {
    let (mut start, mut in_window, mut max) = (0, 0, 0);
    for (end, acceptance) in accepted.iter().enumerate() {
        in_window += acceptance.segments;
        while accepted[start].at_ms + window_ms <= accepted[end].at_ms {
            in_window -= accepted[start].segments;
            start += 1;
        }
        max = max.max(in_window);
    }
    max
}

async fn receive(
    State(gateway): State<Arc<MockGateway>>,
    headers: HeaderMap,
    Json(message): Json<Message>,
) -> Response {
    let request = gateway.requests.fetch_add(1, Ordering::Relaxed);
    let authorised =
        headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {}", gateway.token));
    if !authorised {
        return (StatusCode::UNAUTHORIZED, "bad token").into_response();
    }
    let Some(key) = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_string) else {
        return (StatusCode::BAD_REQUEST, "Idempotency-Key required").into_response();
    };
    match gateway.decide(request) {
        Decision::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response(),
        Decision::TooMany => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response(),
        Decision::Slow => {
            tokio::time::sleep(Duration::from_millis(gateway.faults.slow_for_ms)).await;
            (StatusCode::SERVICE_UNAVAILABLE, "too late").into_response()
        }
        Decision::LostAnswer => {
            gateway.accept(&key, message);
            (StatusCode::SERVICE_UNAVAILABLE, "answer lost").into_response()
        }
        Decision::Accept => {
            let (id, new) = gateway.accept(&key, message);
            let status = if new { StatusCode::OK } else { StatusCode::CONFLICT };
            (status, Json(serde_json::json!({ "message_id": id }))).into_response()
        }
    }
}

async fn stats(State(gateway): State<Arc<MockGateway>>) -> Json<Stats> {
    Json(gateway.stats())
}

async fn accepted(State(gateway): State<Arc<MockGateway>>) -> Json<Vec<Acceptance>> {
    Json(gateway.acceptances())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_ms: u64, segments: u64) -> Acceptance {
        Acceptance { key: String::new(), to: String::new(), text: String::new(), segments, at_ms }
    }

    #[test]
    fn the_busiest_second_is_found_across_window_edges() {
        let accepted = [at(0, 2), at(500, 3), at(999, 1), at(1000, 4), at(1999, 1), at(3000, 1)];
        assert_eq!(max_parts_in_window(&accepted, 1000), 8, "500..1499 holds 3+1+4");
        assert_eq!(max_parts_in_window(&[], 1000), 0);
    }

    #[test]
    fn fault_fractions_are_roughly_honoured_and_repeatable() {
        let gateway = MockGateway::new("t", Faults { unavailable: 0.2, too_many: 0.1, seed: 7, ..Faults::default() });
        let unavailable = (0..10_000).filter(|&i| matches!(gateway.decide(i), Decision::Unavailable)).count();
        let too_many = (0..10_000).filter(|&i| matches!(gateway.decide(i), Decision::TooMany)).count();
        assert!((1800..2200).contains(&unavailable), "{unavailable}");
        assert!((800..1200).contains(&too_many), "{too_many}");
        let again = MockGateway::new("t", Faults { unavailable: 0.2, too_many: 0.1, seed: 7, ..Faults::default() });
        assert!((0..100).all(|i| matches!(
            (gateway.decide(i), again.decide(i)),
            (Decision::Unavailable, Decision::Unavailable)
                | (Decision::TooMany, Decision::TooMany)
                | (Decision::Accept, Decision::Accept)
        )));
    }
}
