//! The HTTP API (`billpush serve`): delivery receipts from gateways, health and metrics.
//! Every route that takes a token checks it against the SHA-256 hashes in `api.tokens`.

mod auth;
mod receipts;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

pub use auth::{hash_token, Role, Tokens};

use crate::app::App;

/// Request bodies above this are refused: receipts and replies are a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;

pub struct ApiState {
    pub app: App,
    pub tokens: Tokens,
    pub metrics: PrometheusHandle,
}

/// A JSON error answer `{"error": "..."}`.
pub struct ApiError(StatusCode, String);

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError(status, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder can only be present in tests that install their own.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Prometheus text; notifications per status are counted from the database at each scrape.
async fn metrics_text(State(state): State<Arc<ApiState>>) -> String {
    match state.app.store.status_counts().await {
        Ok(counts) => {
            for (status, count) in counts {
                metrics::gauge!("billpush_notifications", "status" => status).set(count as f64);
            }
        }
        Err(error) => tracing::warn!(%error, "notification counts unavailable"),
    }
    state.metrics.render()
}

async fn healthz(State(state): State<Arc<ApiState>>) -> Response {
    match state.app.store.ping().await {
        Ok(()) => Json(serde_json::json!({ "status": "ok" })).into_response(),
        Err(error) => {
            tracing::warn!(%error, "health check failed");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/dlr", post(receipts::generic))
        .route("/api/v1/dlr/jasmin", post(receipts::jasmin))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Serves until `stop`; returns the bound address through `bound` as soon as it is known.
pub async fn serve(
    app: App,
    bind: &str,
    stop: CancellationToken,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> anyhow::Result<()> {
    let tokens = Tokens::from_config(&app.settings.config.api.tokens)?;
    let state = Arc::new(ApiState { app, tokens, metrics: metrics_handle() });
    let listener =
        tokio::net::TcpListener::bind(bind).await.map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
    let _ = bound.send(listener.local_addr()?);
    let sweeper = tokio::spawn(expire_receipts(state.clone(), stop.clone()));
    axum::serve(listener, router(state)).with_graceful_shutdown(stop.cancelled_owned()).await?;
    sweeper.abort();
    Ok(())
}

/// Accepted messages whose receipt never came become `unknown` after `gateway.dlr_timeout`.
async fn expire_receipts(state: Arc<ApiState>, stop: CancellationToken) {
    loop {
        let now = state.app.clock().now();
        match state.app.store.expire_receipts(now - state.app.settings.dlr_timeout, now).await {
            Ok(0) => {}
            Ok(expired) => tracing::info!(expired, "accepted messages without receipt are now unknown"),
            Err(error) => tracing::warn!(%error, "could not expire receipts"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(60)) => {}
        }
    }
}

/// Serves `/metrics` alone, for `worker --metrics ADDR`.
pub async fn serve_metrics(bind: &str, stop: CancellationToken) -> anyhow::Result<()> {
    let handle = metrics_handle();
    let router = Router::new().route("/metrics", get(move || async move { handle.render() }));
    let listener =
        tokio::net::TcpListener::bind(bind).await.map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
    axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await?;
    Ok(())
}
