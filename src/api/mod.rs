//! The HTTP API (`billpush serve`): delivery receipts from gateways, health and metrics.
//! Every route that takes a token checks it against the SHA-256 hashes in `api.tokens`.

mod alerts;
mod auth;
mod consent;
mod disputes;
pub mod openapi;
mod reads;
pub use reads::{deliveries_csv, RowsReturned};
mod receipts;
mod replies;
mod reports;
pub mod schema;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

pub use auth::{hash_token, Role, Tokens};

use crate::app::App;
use crate::server::Listener;
use crate::store::AuditEntry;

/// Request bodies above this are refused: receipts and replies are a few hundred bytes.
const MAX_BODY: usize = 64 * 1024;

pub struct ApiState {
    pub app: App,
    pub tokens: Tokens,
    pub metrics: PrometheusHandle,
    /// The console's month figures, counted in the background.
    pub figures: crate::console::figures::FigureCache,
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

/// Seconds a gateway took to answer, as histogram buckets: workers' histograms add up across
/// processes, where quantiles computed in each could not be combined.
const LATENCY_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The process-wide Prometheus recorder, installed on first use, with every metric described.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("billpush_push_latency_seconds".into()),
                    &LATENCY_BUCKETS,
                )
                .expect("buckets are given")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder can only be present in tests that install their own.
            let _ = metrics::set_global_recorder(recorder);
            describe_metrics();
            handle
        })
        .clone()
}

/// Every metric billpush exports; alert rules and dashboards (deploy/) name only these.
pub const METRIC_NAMES: [&str; 7] = [
    "billpush_receipts_total",
    "billpush_parts_pushed_total",
    "billpush_push_outcomes_total",
    "billpush_push_latency_seconds",
    "billpush_queue_depth",
    "billpush_notifications",
    "billpush_month_notifications",
];

/// The HELP text of every metric billpush exports.
fn describe_metrics() {
    metrics::describe_counter!("billpush_receipts_total", "Delivery receipts recorded, by the status they set");
    metrics::describe_counter!("billpush_parts_pushed_total", "SMS parts the gateway accepted");
    metrics::describe_counter!(
        "billpush_push_outcomes_total",
        "Notifications pushed, by outcome (accepted, retry, failed, unknown)"
    );
    metrics::describe_histogram!(
        "billpush_push_latency_seconds",
        metrics::Unit::Seconds,
        "Time the gateway took to answer a message"
    );
    metrics::describe_gauge!("billpush_queue_depth", "Messages waiting in the broker's main queue");
    metrics::describe_gauge!(
        "billpush_notifications",
        "Notifications per delivery status, all months (counted every 15 s)"
    );
    metrics::describe_gauge!(
        "billpush_month_notifications",
        "Notifications per delivery status of each open month (counted every 15 s)"
    );
}

#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "Prometheus metrics", content_type = "text/plain", body = String)))]
/// Prometheus text, from figures kept current in the background (`App::keep_counts_current`):
/// a scrape never scans a table.
async fn metrics_text(State(state): State<Arc<ApiState>>) -> String {
    state.metrics.render()
}

/// The database answers, and the broker does when one is configured.
#[utoipa::path(get, path = "/healthz",
    responses((status = 200, description = "Database (and broker) answer", body = schema::Health),
        (status = 503, description = "The database or the broker does not answer", body = schema::ErrorBody)))]
async fn healthz(State(state): State<Arc<ApiState>>) -> Response {
    match state.app.health().await {
        Ok(()) => Json(schema::Health { status: "ok".into() }).into_response(),
        Err(unhealthy) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, unhealthy.to_string()).into_response(),
    }
}

/// The roles a route admits, by method and path: one table for the guard and the OpenAPI
/// document. Gateway and Jasmin routes check their token themselves; `openapi.json` is open.
pub fn route_roles(method: &str, path: &str) -> &'static [Role] {
    match path {
        p if p.starts_with("/api/v1/dlr/jasmin") => &[Role::Jasmin],
        p if p.starts_with("/api/v1/dlr") || p.starts_with("/api/v1/mo") => &[Role::Gateway],
        "/api/v1/openapi.json" => &[],
        "/api/v1/audit" => &[Role::Operator],
        p if p.starts_with("/api/v1/subscribers/") && p.ends_with("/consent") => &[Role::Operator],
        p if p.starts_with("/api/v1/disputes") && method != "GET" => &[Role::Operator],
        _ => &[Role::Regulator, Role::Operator],
    }
}

/// Checks the token of every `/api/v1` read, and appends every request made with a regulator
/// or operator token to the audit log, whatever its answer.
async fn guard(State(state): State<Arc<ApiState>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let path_and_query = request.uri().path_and_query().map_or(path.clone(), |p| p.to_string());
    let method = request.method().to_string();
    let auditable = state
        .tokens
        .bearer(request.headers())
        .filter(|(_, role)| !matches!(role, Role::Gateway | Role::Jasmin))
        .map(|(name, role)| (name.to_string(), role));
    let roles = route_roles(&method, &path);
    let response = if roles.iter().any(|r| matches!(r, Role::Gateway | Role::Jasmin)) {
        next.run(request).await
    } else {
        match state.tokens.authorise(request.headers(), None, roles) {
            Ok(_) => next.run(request).await,
            Err(refusal) => refusal.into_response(),
        }
    };
    match auditable {
        Some((token_name, role)) => audited(&state, token_name, role, method, &path_and_query, response).await,
        None => response,
    }
}

/// `response`, once its audit entry is written; an answer whose entry could not be written is
/// not given out. A `token=` in the query string is kept as `token=…`.
async fn audited(
    state: &ApiState,
    token_name: String,
    role: Role,
    method: String,
    path_and_query: &str,
    response: Response,
) -> Response {
    let rows = response.extensions().get::<reads::RowsReturned>().map_or(0, |r| r.0);
    let entry = AuditEntry {
        id: uuid::Uuid::now_v7().to_string(),
        token_name,
        role: role.as_str().to_string(),
        at: state.app.clock().now(),
        method,
        path: redact_tokens(path_and_query),
        status: i64::from(response.status().as_u16()),
        rows_returned: rows as i64,
    };
    if let Err(error) = state.app.store.append_audit(&entry).await {
        tracing::error!(%error, "audit log write failed");
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "audit log unavailable; try again").into_response();
    }
    response
}

/// The path and query with the value of every `token` parameter replaced by `…`.
pub(crate) fn redact_tokens(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else { return path_and_query.to_string() };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if decoded(name).eq_ignore_ascii_case("token") => format!("{name}=…"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// A query parameter's name as the server reads it (`%74oken` is `token`).
fn decoded(name: &str) -> String {
    serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("{name}="))
        .ok()
        .and_then(|mut p| p.pop())
        .map_or_else(|| name.to_string(), |(n, _)| n)
}

/// A path no route serves: 404, audited like any request made with a regulator's or an
/// operator's token, so that probing for routes leaves a trace.
async fn no_route(State(state): State<Arc<ApiState>>, request: Request) -> Response {
    let refusal = ApiError::new(StatusCode::NOT_FOUND, "no such route").into_response();
    let path_and_query = request.uri().path_and_query().map_or_else(String::new, |p| p.to_string());
    match state.tokens.bearer(request.headers()) {
        Some((name, role)) if matches!(role, Role::Regulator | Role::Operator) => {
            let name = name.to_string();
            audited(&state, name, role, request.method().to_string(), &path_and_query, refusal).await
        }
        _ => refusal,
    }
}

/// Every error leaves as `{"error": "..."}`, including those axum answers itself (a body over
/// the limit, a method the route does not take).
async fn json_errors(request: Request, next: Next) -> Response {
    // The console answers people, in HTML, errors included.
    let console = request.uri().path().starts_with("/console");
    let response = next.run(request).await;
    if console {
        return response;
    }
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), MAX_BODY).await {
        Ok(body) if !body.is_empty() => String::from_utf8_lossy(&body).trim().to_string(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    ApiError::new(status, text).into_response()
}

/// Time a read or a health check has to be answered: the database is slow or gone past it.
/// Receipts and replies are left to finish what they started writing.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) fn request_timeout() -> tower_http::timeout::TimeoutLayer {
    tower_http::timeout::TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, REQUEST_TIMEOUT)
}

pub fn router(state: Arc<ApiState>) -> Router {
    // The timeout sits inside the guard, so a read cut short is audited, and inside
    // `json_errors`, so it answers `{"error": …}` like any refusal.
    let reads = Router::new()
        .route("/api/v1/deliveries", get(reads::deliveries))
        .route("/api/v1/deliveries.csv", get(reads::deliveries_csv))
        .route("/api/v1/bills/{subscriber_id}/{month}", get(reads::bill))
        .route("/api/v1/flags", get(reads::flags))
        .route("/api/v1/spam", get(reads::spam))
        .route("/api/v1/runs", get(reads::runs))
        .route("/api/v1/audit", get(reads::audit))
        .route_layer(request_timeout());
    let api = Router::new()
        .route("/api/v1/dlr", post(receipts::generic))
        .route("/api/v1/dlr/jasmin", post(receipts::jasmin))
        .route("/api/v1/mo", post(replies::receive))
        .route("/api/v1/subscribers/{subscriber_id}/consent", post(consent::set))
        .route("/api/v1/alerts", get(alerts::list))
        .route("/api/v1/reports/{month}", get(reports::month))
        .route("/api/v1/disputes", get(disputes::list).post(disputes::open))
        .route("/api/v1/disputes/{id}/resolve", post(disputes::resolve))
        .merge(reads)
        .route_layer(middleware::from_fn_with_state(state.clone(), guard));
    let open = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/api/v1/openapi.json", get(openapi::openapi_json))
        .route_layer(request_timeout());
    Router::new()
        .merge(open)
        .merge(api)
        .merge(crate::console::router(state.clone()))
        .fallback(no_route)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn(json_errors))
        .with_state(state)
}

/// Serves until `stop`, with TLS when `api.tls_cert` and `api.tls_key` are set; returns the
/// bound address through `bound` as soon as it is known.
pub async fn serve(
    app: App,
    bind: &str,
    stop: CancellationToken,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> anyhow::Result<()> {
    let tokens = Tokens::from_config(&app.settings.config.api.tokens)?;
    // Answers to replies go through the app's broker connection: opened now, so a wrong
    // queue.url stops `serve` at start.
    app.broker().await?;
    let api = &app.settings.config.api;
    let tls = (!api.tls_cert.as_os_str().is_empty()).then_some((api.tls_cert.as_path(), api.tls_key.as_path()));
    let listener = Listener::bind(bind, tls).await?;
    // The recorder first, then the first count: the first scrape already finds figures.
    let metrics = metrics_handle();
    app.count_notifications().await;
    let _ = bound.send(listener.local_addr()?);
    let state = Arc::new(ApiState { app, tokens, metrics, figures: Default::default() });
    let sweeper = {
        let (state, stop) = (state.clone(), stop.clone());
        tokio::spawn(async move { state.app.sweep_receipts(stop).await })
    };
    let counts = {
        let (state, stop) = (state.clone(), stop.clone());
        tokio::spawn(async move { state.app.keep_counts_current(stop).await })
    };
    let figures = {
        let (state, stop) = (state.clone(), stop.clone());
        tokio::spawn(async move { state.figures.keep_latest_counted(&state.app, stop).await })
    };
    // Without a broker, this process pushes the answers to replies itself.
    let answers = (state.app.settings.config.queue.url == "memory://").then(|| {
        state.app.answer_queue();
        let (state, stop) = (state.clone(), stop.clone());
        tokio::spawn(async move { state.app.push_answers(stop).await })
    });
    // Ends when `stop` is cancelled, and cancels it if the server ends on its own.
    let served = listener.serve(router(state), stop).await;
    sweeper.await?;
    counts.await?;
    figures.await?;
    if let Some(answers) = answers {
        answers.await??;
    }
    Ok(served?)
}

/// Serves `/metrics` alone, for `worker --metrics ADDR`.
pub async fn serve_metrics(bind: &str, stop: CancellationToken) -> anyhow::Result<()> {
    let handle = metrics_handle();
    let router = Router::new().route("/metrics", get(move || async move { handle.render() }));
    Listener::bind(bind, None).await?.serve(router, stop.child_token()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_values_are_kept_out_of_stored_query_strings_however_the_name_is_written() {
        assert_eq!(redact_tokens("/api/v1/flags?month=2026-10&token=s3cret"), "/api/v1/flags?month=2026-10&token=…");
        assert_eq!(redact_tokens("/x?%74oken=s3cret&TOKEN=s3cret"), "/x?%74oken=…&TOKEN=…");
        assert_eq!(redact_tokens("/x?tokens=1"), "/x?tokens=1");
        assert_eq!(redact_tokens("/x"), "/x");
    }
}
