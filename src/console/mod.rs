//! The console (docs/contract.md §10): server-rendered pages for regulators and operators under
//! `/console`, signed in with an API token. It reads through the same read models and services
//! as the API; nothing is computed twice. Pages come from askama templates checked at compile
//! time and escaped by default; the stylesheet and the one script are served from the binary.

mod charts;
pub mod figures;
mod pages;
pub mod text;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::api::{ApiState, Role};
use crate::domain::category::Language;
use crate::store::AuditEntry;

/// The session cookie; its value is a random secret the database keeps only hashed.
pub const SESSION_COOKIE: &str = "billpush_session";
/// The language cookie (`zh` or `en`).
const LANGUAGE_COOKIE: &str = "billpush_lang";
/// How long a session lasts from sign-in.
pub const SESSION_LIFETIME: chrono::Duration = chrono::Duration::hours(8);

/// No inline script or style, nothing from another origin, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Who is looking, as the session says.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub token_name: String,
    pub role: Role,
    pub csrf: String,
    pub language: Language,
}

impl Viewer {
    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'a>(request_headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    request_headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

fn language_of(headers: &axum::http::HeaderMap) -> Language {
    match cookie(headers, LANGUAGE_COOKIE) {
        Some("en") => Language::En,
        _ => Language::Zh,
    }
}

/// Every console page but the sign-in and the assets needs a live session; a regulator's or
/// an operator's view is written to the audit log like an API request.
async fn require_session(State(state): State<Arc<ApiState>>, mut request: Request, next: Next) -> Response {
    let now = state.app.clock().now();
    let session = match cookie(request.headers(), SESSION_COOKIE) {
        Some(id) => match state.app.store.session(id, now).await {
            Ok(session) => session,
            Err(error) => {
                tracing::error!(%error, "session lookup failed");
                return (StatusCode::SERVICE_UNAVAILABLE, "the database did not answer; try again").into_response();
            }
        },
        None => None,
    };
    // The token must still be configured, with the role it signed in with.
    let session = session.filter(|s| state.tokens.role_of(&s.token_name).is_some_and(|r| r.as_str() == s.role));
    let Some(session) = session else { return Redirect::to("/console/login").into_response() };
    let role = if session.role == Role::Operator.as_str() { Role::Operator } else { Role::Regulator };
    let viewer =
        Viewer { token_name: session.token_name, role, csrf: session.csrf, language: language_of(request.headers()) };
    let method = request.method().to_string();
    let path = crate::api::redact_tokens(&request.uri().path_and_query().map_or_else(String::new, |p| p.to_string()));
    request.extensions_mut().insert(viewer.clone());
    let response = next.run(request).await;
    let entry = AuditEntry {
        id: uuid::Uuid::now_v7().to_string(),
        token_name: viewer.token_name,
        role: viewer.role.as_str().to_string(),
        at: state.app.clock().now(),
        method,
        path,
        status: i64::from(response.status().as_u16()),
        rows_returned: response
            .extensions()
            .get::<pages::RowsShown>()
            .map(|r| r.0)
            .or_else(|| response.extensions().get::<crate::api::RowsReturned>().map(|r| r.0))
            .unwrap_or(0) as i64,
    };
    if let Err(error) = state.app.store.append_audit(&entry).await {
        tracing::error!(%error, "audit log write failed");
        return (StatusCode::SERVICE_UNAVAILABLE, "audit log unavailable; try again").into_response();
    }
    response
}

/// The security headers of every console answer.
async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    response
}

async fn stylesheet() -> Response {
    asset("text/css; charset=utf-8", include_str!("../../console/static/console.css"))
}

async fn refresh_script() -> Response {
    asset("text/javascript; charset=utf-8", include_str!("../../console/static/refresh.js"))
}

/// `/console/lang/{zh|en}`: remembers the language and goes back to the console.
async fn set_language(axum::extract::Path(language): axum::extract::Path<String>) -> Response {
    let language = if language == "en" { "en" } else { "zh" };
    let mut response = Redirect::to("/console").into_response();
    let cookie = format!("{LANGUAGE_COOKIE}={language}; Path=/console; SameSite=Strict; Max-Age=31536000");
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("ASCII"));
    response
}

pub fn router(state: Arc<ApiState>) -> Router<Arc<ApiState>> {
    let signed_in = Router::new()
        .route("/console", get(pages::latest_month))
        .route("/console/", get(pages::latest_month))
        .route("/console/months/{month}", get(pages::month))
        .route("/console/deliveries", get(pages::deliveries))
        .route("/console/deliveries.csv", get(pages::deliveries_csv))
        .route("/console/disputes", get(pages::disputes))
        .route("/console/disputes/{id}/resolve", post(pages::resolve_dispute))
        .route("/console/audit", get(pages::audit))
        .route("/console/flags", get(pages::flags))
        .route("/console/spam", get(pages::spam))
        .route("/console/subscribers/{subscriber_id}", get(pages::subscriber))
        .route("/console/subscribers/{subscriber_id}/disputes", post(pages::open_dispute))
        .route("/console/logout", get(pages::logout))
        .route_layer(crate::api::request_timeout())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_session));
    Router::new()
        .route("/console/login", get(pages::login_form).post(pages::login))
        .route("/console/lang/{language}", get(set_language))
        .route("/console/static/console.css", get(stylesheet))
        .route("/console/static/refresh.js", get(refresh_script))
        .merge(signed_in)
        .route_layer(middleware::from_fn(same_origin_posts))
        .layer(middleware::from_fn(secure_headers))
}

/// A post must come from the console's own pages: a browser says where a request comes from
/// (`Sec-Fetch-Site`, `Origin`), and a form another site posts is refused before it signs
/// anybody in or changes anything. Clients that say neither (scripts, tests) are let through;
/// the CSRF token still guards every change.
async fn same_origin_posts(request: Request, next: Next) -> Response {
    if request.method() == axum::http::Method::POST {
        let headers = request.headers();
        let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let cross_site = matches!(fetch_site, Some(site) if site != "same-origin" && site != "none");
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let foreign_origin = match (headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()), host) {
            (Some(origin), Some(host)) => {
                let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
                origin_host != host
            }
            (Some(_), None) => true,
            (None, _) => false,
        };
        if cross_site || foreign_origin {
            return (StatusCode::FORBIDDEN, "a form from another site is refused").into_response();
        }
    }
    next.run(request).await
}
