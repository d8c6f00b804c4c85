//! The console's pages: each reads what it shows through the store's read models and the
//! services, and renders one askama template.

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::{Datelike, SecondsFormat};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::figures::month_figures;
use super::text::{labels, Labels};
use super::{charts, language_of, Viewer, SESSION_COOKIE, SESSION_LIFETIME};
use crate::api::{ApiState, Role};
use crate::domain::delivery::{split_kind, DeliveryStatus};
use crate::domain::dispute::{DisputeStatus, Resolution};
use crate::domain::money::Fen;
use crate::domain::msisdn::Msisdn;
use crate::domain::period::{local_date, BillingMonth};
use crate::export::spam_numbers;
use crate::store::console::{FlagGroup, SubscriberRecord};
use crate::store::disputes::{DisputeFilter, Resolved};
use crate::store::sessions::Session;
use crate::store::{AuditEntry, DeliveryFilter};

/// Rows a page showed, for the audit log.
#[derive(Clone, Copy)]
pub struct RowsShown(pub u64);

const PAGE_ROWS: i64 = 50;

fn page(template: &impl Template, status: StatusCode, rows: u64) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = (status, Html(html)).into_response();
            response.extensions_mut().insert(RowsShown(rows));
            response
        }
        Err(error) => {
            tracing::error!(%error, "console page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be made").into_response()
        }
    }
}

fn unavailable(error: impl std::fmt::Display) -> Response {
    tracing::error!(%error, "console read failed");
    (StatusCode::SERVICE_UNAVAILABLE, "the database did not answer; try again").into_response()
}

/// The latest month billed, or the month before the current one when nothing is.
async fn latest(state: &ApiState) -> BillingMonth {
    if let Ok(runs) = state.app.store.runs().await {
        if let Some(month) = runs.first().and_then(|r| r.month.parse().ok()) {
            return month;
        }
    }
    let today = local_date(state.app.clock().now(), state.app.settings.timezone);
    BillingMonth::new(today.year(), today.month()).expect("a real date").previous()
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    t: &'static Labels,
    signed_in: bool,
    operator: bool,
    month: String,
    heading: String,
    message: String,
}

async fn message(state: &ApiState, viewer: &Viewer, status: StatusCode, message: String) -> Response {
    let view = MessagePage {
        t: labels(viewer.language),
        signed_in: true,
        operator: viewer.is_operator(),
        month: latest(state).await.to_string(),
        heading: status.as_u16().to_string(),
        message,
    };
    page(&view, status, 0)
}

async fn forbidden(state: &ApiState, viewer: &Viewer) -> Response {
    message(state, viewer, StatusCode::FORBIDDEN, labels(viewer.language).forbidden.to_string()).await
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    t: &'static Labels,
    signed_in: bool,
    operator: bool,
    month: String,
    failed: bool,
}

pub async fn login_form(headers: HeaderMap) -> Response {
    let t = labels(language_of(&headers));
    page(&LoginPage { t, signed_in: false, operator: false, month: String::new(), failed: false }, StatusCode::OK, 0)
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// A random secret of 244 bits, as hex.
fn secret() -> String {
    format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple())
}

pub async fn login(State(state): State<Arc<ApiState>>, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let t = labels(language_of(&headers));
    let Some((name, role)) = state.tokens.identify(form.token.trim()) else {
        let view = LoginPage { t, signed_in: false, operator: false, month: String::new(), failed: true };
        return page(&view, StatusCode::UNAUTHORIZED, 0);
    };
    if !matches!(role, Role::Regulator | Role::Operator) {
        let view = LoginPage { t, signed_in: false, operator: false, month: String::new(), failed: true };
        return page(&view, StatusCode::FORBIDDEN, 0);
    }
    let now = state.app.clock().now();
    // A sign-in ends the session the browser had, if any: one cookie, one session.
    if let Some(old) = super::cookie(&headers, SESSION_COOKIE) {
        if let Err(error) = state.app.store.close_session(old).await {
            return unavailable(error);
        }
    }
    let id = secret();
    let session = Session { token_name: name.to_string(), role: role.as_str().to_string(), csrf: secret() };
    if let Err(error) = state.app.store.open_session(&id, &session, now, now + SESSION_LIFETIME).await {
        return unavailable(error);
    }
    let entry = AuditEntry {
        id: uuid::Uuid::now_v7().to_string(),
        token_name: name.to_string(),
        role: role.as_str().to_string(),
        at: now,
        method: "POST".into(),
        path: "/console/login".into(),
        status: 303,
        rows_returned: 0,
    };
    if let Err(error) = state.app.store.append_audit(&entry).await {
        return unavailable(error);
    }
    let api = &state.app.settings.config.api;
    let secure = !api.tls_cert.as_os_str().is_empty() || api.public_url.starts_with("https://");
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_LIFETIME.num_seconds(),
        if secure { "; Secure" } else { "" }
    );
    let mut response = Redirect::to("/console").into_response();
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("hex and ASCII"));
    response
}

pub async fn logout(State(state): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    if let Some(id) = super::cookie(&headers, SESSION_COOKIE) {
        if let Err(error) = state.app.store.close_session(id).await {
            return unavailable(error);
        }
    }
    let mut response = Redirect::to("/console/login").into_response();
    let cookie = format!("{SESSION_COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0");
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("ASCII"));
    response
}

pub async fn latest_month(State(state): State<Arc<ApiState>>) -> Response {
    Redirect::to(&format!("/console/months/{}", latest(&state).await)).into_response()
}

#[derive(Template)]
#[template(path = "month.html")]
struct MonthPage {
    t: &'static Labels,
    signed_in: bool,
    operator: bool,
    month: String,
    bills: i64,
    total: String,
    spikes: i64,
    deliveries: Vec<(String, i64)>,
    flags: Vec<GroupView>,
    disputes_open: i64,
    disputes_overdue: i64,
    disputes_refunded: i64,
    spam_flagged: usize,
    parts_sent: i64,
    /// While a push runs: parts per second between the two latest counts.
    parts_per_second: Option<String>,
    pushing: bool,
    days_chart: String,
    days: Vec<(String, i64)>,
    status_chart: String,
    flag_chart: String,
}

pub async fn month(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    Path(month): Path<String>,
) -> Response {
    let Ok(month) = month.parse::<BillingMonth>() else {
        return message(&state, &viewer, StatusCode::BAD_REQUEST, "month: must be written YYYY-MM".into()).await;
    };
    let figures = match month_figures(&state, month).await {
        Ok(figures) => figures,
        Err(error) => return unavailable(error),
    };
    // Whether a dispute is overdue changes with the clock: counted as they stand.
    let overdue_before = state.app.clock().now() - state.app.settings.dispute_sla;
    let counts = match state.app.store.dispute_counts(month, overdue_before).await {
        Ok(counts) => counts,
        Err(error) => return unavailable(error),
    };
    let (open, overdue, refunded) = (counts.open, counts.overdue, counts.refunded);
    let in_flight = [DeliveryStatus::Pending, DeliveryStatus::Queued, DeliveryStatus::Sending];
    let pushing = figures.deliveries.iter().any(|(s, n)| *n > 0 && in_flight.iter().any(|f| f.as_str() == s));
    let flag_counts: Vec<(String, i64)> = figures.flags_by_reason.iter().map(|g| (g.key.clone(), g.count)).collect();
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a real date");
    let days: Vec<(String, i64)> = figures
        .days
        .iter()
        .map(|(day, n)| ((epoch + chrono::Duration::days(*day)).format("%m-%d").to_string(), *n))
        .collect();
    let t = labels(viewer.language);
    let view = MonthPage {
        t,
        signed_in: true,
        operator: viewer.is_operator(),
        month: month.to_string(),
        bills: figures.bills,
        total: Fen::new(figures.total_fen).to_string(),
        spikes: figures.spikes,
        status_chart: charts::bars(t.funnel, &figures.deliveries),
        days_chart: charts::bars(t.over_time, &days),
        days,
        flag_chart: charts::bars(t.flags, &flag_counts),
        deliveries: figures.deliveries.clone(),
        flags: figures.flags_by_reason.iter().map(GroupView::from).collect(),
        disputes_open: open,
        disputes_overdue: overdue,
        disputes_refunded: refunded,
        spam_flagged: figures.spam_flagged,
        parts_sent: figures.parts_sent,
        parts_per_second: figures.parts_per_second.filter(|_| pushing).map(|r| format!("{r:.0}")),
        pushing,
    };
    page(&view, StatusCode::OK, 1)
}

/// A notification as the delivery log shows it.
struct DeliveryView {
    msisdn: String,
    month: String,
    kind: String,
    status: String,
    text: String,
    segments: i64,
    encoding: String,
    gateway_id: String,
    sender: String,
    subscriber_id: String,
    history: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "deliveries.html")]
struct DeliveriesPage {
    t: &'static Labels,
    signed_in: bool,
    operator: bool,
    month: String,
    msisdn: String,
    status: String,
    statuses: Vec<String>,
    problem: Option<String>,
    query: String,
    items: Vec<DeliveryView>,
    next: Option<String>,
}

fn parameters(query: Option<String>) -> HashMap<String, String> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query.as_deref().unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

pub async fn deliveries(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = parameters(query);
    let text = |name: &str| params.get(name).cloned().unwrap_or_default();
    let mut problem = None;
    let month = match params.get("month").map(|m| m.parse::<BillingMonth>()) {
        Some(Ok(month)) => Some(month),
        Some(Err(_)) => {
            problem = Some("month: YYYY-MM".to_string());
            None
        }
        None => None,
    };
    let msisdn = match params.get("msisdn").map(|m| Msisdn::parse_typed(m)) {
        Some(Ok(number)) => Some(number.as_str().to_string()),
        Some(Err(_)) => {
            problem = Some(format!("{}: {}", labels(viewer.language).number, text("msisdn")));
            None
        }
        None => None,
    };
    let status = params.get("status").and_then(|s| s.parse::<DeliveryStatus>().ok());
    let after = params.get("cursor").and_then(|c| hex::decode(c).ok()).and_then(|b| String::from_utf8(b).ok());
    let filter = DeliveryFilter { month, msisdn, status, from: None, to: None };
    let (found, history) = if problem.is_some() {
        (Vec::new(), HashMap::new())
    } else {
        let found = match state.app.store.deliveries(&filter, after.as_deref().unwrap_or(""), PAGE_ROWS).await {
            Ok(found) => found,
            Err(error) => return unavailable(error),
        };
        match state.app.store.histories(&found).await {
            Ok(history) => (found, history),
            Err(error) => return unavailable(error),
        }
    };
    let mut kept: Vec<(&str, String)> =
        ["month", "msisdn", "status"].iter().filter_map(|k| params.get(*k).map(|v| (*k, v.clone()))).collect();
    let query = serde_urlencoded::to_string(&kept).unwrap_or_default();
    let next = (found.len() as i64 == PAGE_ROWS).then(|| {
        kept.push(("cursor", hex::encode(&found[found.len() - 1].id)));
        serde_urlencoded::to_string(&kept).unwrap_or_default()
    });
    let items: Vec<DeliveryView> = found
        .iter()
        .map(|d| DeliveryView {
            msisdn: d.msisdn.clone(),
            month: d.month.clone(),
            kind: split_kind(&d.kind).0.to_string(),
            status: d.status.clone(),
            text: d.text.clone(),
            segments: d.segments,
            encoding: d.encoding.clone(),
            gateway_id: d.gateway_message_id.clone().unwrap_or_default(),
            sender: d.sender.clone().unwrap_or_default(),
            subscriber_id: d.subscriber_id.clone(),
            history: history
                .get(&d.id)
                .map(|h| h.iter().map(|(s, at)| (s.clone(), at.to_rfc3339_opts(SecondsFormat::Secs, true))).collect())
                .unwrap_or_default(),
        })
        .collect();
    let rows = items.len() as u64;
    let view = DeliveriesPage {
        t: labels(viewer.language),
        signed_in: true,
        operator: viewer.is_operator(),
        month: match month {
            Some(month) => month.to_string(),
            None => latest(&state).await.to_string(),
        },
        msisdn: text("msisdn"),
        status: status.map(|s| s.as_str().to_string()).unwrap_or_default(),
        statuses: DeliveryStatus::ALL.iter().map(|s| s.as_str().to_string()).collect(),
        problem,
        query,
        items,
        next,
    };
    page(&view, StatusCode::OK, rows)
}

/// The delivery log as CSV: the API's streamed CSV, for a signed-in viewer.
pub async fn deliveries_csv(State(state): State<Arc<ApiState>>, RawQuery(query): RawQuery) -> Response {
    match crate::api::deliveries_csv(State(state), RawQuery(query)).await {
        Ok(response) => response,
        Err(refusal) => refusal.into_response(),
    }
}

/// A dispute as the disputes page shows it.
struct DisputeView {
    id: i64,
    subscriber_id: String,
    msisdn: String,
    month: String,
    status: String,
    open: bool,
    overdue: bool,
    disputed: String,
    disputed_fen: i64,
    refunded: String,
    opened_at: String,
    records: String,
}

#[derive(Template)]
#[template(path = "disputes.html")]
struct DisputesPage {
    t: &'static Labels,
    signed_in: bool,
    operator: bool,
    month: String,
    month_filter: String,
    status: String,
    statuses: Vec<String>,
    message: Option<String>,
    csrf: String,
    items: Vec<DisputeView>,
}

pub async fn disputes(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = parameters(query);
    let month = params.get("month").and_then(|m| m.parse::<BillingMonth>().ok());
    let status = params.get("status").and_then(|s| s.parse::<DisputeStatus>().ok());
    let service = match state.app.disputes().await {
        Ok(service) => service,
        Err(error) => return unavailable(error),
    };
    let filter = DisputeFilter { month, status, subscriber_id: None };
    let found = match state.app.store.disputes(&filter, 0, 500).await {
        Ok(found) => found,
        Err(error) => return unavailable(error),
    };
    let items: Vec<DisputeView> = found
        .iter()
        .map(|d| DisputeView {
            id: d.id,
            subscriber_id: d.subscriber_id.clone(),
            msisdn: d.msisdn.clone(),
            month: d.month.clone(),
            status: d.status.as_str().to_string(),
            open: d.status == DisputeStatus::Open,
            overdue: service.is_overdue(d),
            disputed: d.disputed.to_string(),
            disputed_fen: d.disputed.get(),
            refunded: d.refunded.to_string(),
            opened_at: d.opened_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            records: d.records.join(", "),
        })
        .collect();
    let rows = items.len() as u64;
    let resolved = params.get("resolved").and_then(|id| id.parse::<i64>().ok());
    let view = DisputesPage {
        t: labels(viewer.language),
        signed_in: true,
        operator: viewer.is_operator(),
        month: month.map_or_else(|| latest_month_text(&found), |m| m.to_string()),
        month_filter: month.map(|m| m.to_string()).unwrap_or_default(),
        status: status.map(|s| s.as_str().to_string()).unwrap_or_default(),
        statuses: DisputeStatus::ALL.iter().map(|s| s.as_str().to_string()).collect(),
        message: resolved.map(|id| format!("{} {id}: {}", labels(viewer.language).case, labels(viewer.language).done)),
        csrf: viewer.csrf.clone(),
        items,
    };
    page(&view, StatusCode::OK, rows)
}

fn latest_month_text(disputes: &[crate::store::disputes::Dispute]) -> String {
    disputes.iter().map(|d| d.month.clone()).max().unwrap_or_default()
}

#[derive(Deserialize)]
pub struct ResolveForm {
    #[serde(default)]
    csrf: String,
    status: String,
    #[serde(default)]
    refunded_fen: String,
    #[serde(default)]
    note: String,
}

/// Why an operator's form may not change anything: not an operator, or not the session's own
/// form (its CSRF token).
async fn refuse_change(state: &ApiState, viewer: &Viewer, csrf: &str) -> Option<Response> {
    if !viewer.is_operator() {
        return Some(forbidden(state, viewer).await);
    }
    if csrf.is_empty() || !same_secret(csrf, &viewer.csrf) {
        return Some(
            message(state, viewer, StatusCode::FORBIDDEN, "csrf: the form is stale; reload the page".into()).await,
        );
    }
    None
}

/// Equal in constant time.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b): ([u8; 32], [u8; 32]) = (Sha256::digest(a.as_bytes()).into(), Sha256::digest(b.as_bytes()).into());
    a.iter().zip(&b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn resolve_dispute(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    Form(form): Form<ResolveForm>,
) -> Response {
    if let Some(refusal) = refuse_change(&state, &viewer, &form.csrf).await {
        return refusal;
    }
    let Ok(id) = id.parse::<i64>() else {
        return message(&state, &viewer, StatusCode::NOT_FOUND, "no such dispute".into()).await;
    };
    let Ok(status) = form.status.parse::<DisputeStatus>() else {
        return message(&state, &viewer, StatusCode::BAD_REQUEST, "status: refunded, rejected or withdrawn".into())
            .await;
    };
    let refunded = match (status, form.refunded_fen.trim()) {
        (DisputeStatus::Refunded, amount) => match amount.parse::<i64>() {
            Ok(fen) => Fen::new(fen),
            Err(_) => {
                return message(&state, &viewer, StatusCode::BAD_REQUEST, "refunded_fen: a whole number of fen".into())
                    .await
            }
        },
        _ => Fen::ZERO,
    };
    let resolution = Resolution { status, refunded, note: form.note.trim().chars().take(500).collect() };
    let service = match state.app.disputes().await {
        Ok(service) => service,
        Err(error) => return unavailable(error),
    };
    match service.resolve(id, &resolution, &viewer.token_name).await {
        Ok(Resolved::Now(dispute)) => {
            Redirect::to(&format!("/console/disputes?month={}&resolved={}", dispute.month, dispute.id)).into_response()
        }
        Ok(Resolved::NoSuchDispute) => message(&state, &viewer, StatusCode::NOT_FOUND, "no such dispute".into()).await,
        Ok(Resolved::Already(dispute)) => {
            let text = format!("dispute {id} is {} already", dispute.status);
            message(&state, &viewer, StatusCode::CONFLICT, text).await
        }
        Ok(Resolved::Refused(refusal)) => message(&state, &viewer, StatusCode::BAD_REQUEST, refusal.to_string()).await,
        Err(error) => unavailable(error),
    }
}

/// An audit entry as the audit page shows it.
struct AuditView {
    at: String,
    token: String,
    role: String,
    method: String,
    path: String,
    status: i64,
    rows: i64,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    t: &'static Labels,
    signed_in: bool,
    operator: bool,
    month: String,
    items: Vec<AuditView>,
    next: Option<String>,
}

pub async fn audit(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(query): RawQuery,
) -> Response {
    if !viewer.is_operator() {
        return forbidden(&state, &viewer).await;
    }
    let params = parameters(query);
    let after = params.get("cursor").cloned().unwrap_or_default();
    let entries = match state.app.store.audit_page(&after, 200).await {
        Ok(entries) => entries,
        Err(error) => return unavailable(error),
    };
    let next = (entries.len() == 200).then(|| entries[entries.len() - 1].id.clone());
    let items: Vec<AuditView> = entries
        .into_iter()
        .map(|e| AuditView {
            at: e.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            token: e.token_name,
            role: e.role,
            method: e.method,
            path: e.path,
            status: e.status,
            rows: e.rows_returned,
        })
        .collect();
    let rows = items.len() as u64;
    let view = AuditPage {
        t: labels(viewer.language),
        signed_in: true,
        operator: true,
        month: latest(&state).await.to_string(),
        items,
        next,
    };
    page(&view, StatusCode::OK, rows)
}

/// A month from the query, else the latest month billed.
async fn month_param(state: &ApiState, params: &HashMap<String, String>) -> BillingMonth {
    match params.get("month").and_then(|m| m.parse().ok()) {
        Some(month) => month,
        None => latest(state).await,
    }
}

/// Flags of one reason or provider as the page shows them.
struct GroupView {
    key: String,
    count: i64,
    amount: String,
    subscribers: i64,
}

impl From<&FlagGroup> for GroupView {
    fn from(g: &FlagGroup) -> GroupView {
        GroupView {
            key: g.key.clone(),
            count: g.count,
            amount: Fen::new(g.amount_fen).to_string(),
            subscribers: g.subscribers,
        }
    }
}

#[derive(Template)]
#[template(path = "flags.html")]
struct FlagsPage {
    t: &'static Labels,
    signed_in: bool,
    operator: bool,
    month: String,
    reason_chart: String,
    by_reason: Vec<GroupView>,
    by_provider: Vec<GroupView>,
}

pub async fn flags(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(query): RawQuery,
) -> Response {
    let month = month_param(&state, &parameters(query)).await;
    let figures = match month_figures(&state, month).await {
        Ok(figures) => figures,
        Err(error) => return unavailable(error),
    };
    let (by_reason, by_provider) = (&figures.flags_by_reason, &figures.flags_by_provider);
    let t = labels(viewer.language);
    let counts: Vec<(String, i64)> = by_reason.iter().map(|g| (g.key.clone(), g.count)).collect();
    let rows = (by_reason.len() + by_provider.len()) as u64;
    let view = FlagsPage {
        t,
        signed_in: true,
        operator: viewer.is_operator(),
        month: month.to_string(),
        reason_chart: charts::bars(t.by_reason, &counts),
        by_reason: by_reason.iter().map(GroupView::from).collect(),
        by_provider: by_provider.iter().map(GroupView::from).collect(),
    };
    page(&view, StatusCode::OK, rows)
}

/// A listed spam number as the page shows it.
struct SpamView {
    number: String,
    number_type: String,
    distinct_reporters: i64,
    reports: i64,
    reports_in_month: i64,
    calls: i64,
    sms: i64,
    flagged: bool,
    allowlisted: bool,
    associated: String,
}

#[derive(Template)]
#[template(path = "spam.html")]
struct SpamPage {
    t: &'static Labels,
    signed_in: bool,
    operator: bool,
    month: String,
    items: Vec<SpamView>,
}

pub async fn spam(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    RawQuery(query): RawQuery,
) -> Response {
    let month = month_param(&state, &parameters(query)).await;
    let numbers = match spam_numbers(&state.app.store, &state.app.settings, month).await {
        Ok(numbers) => numbers,
        Err(error) => return unavailable(error),
    };
    let items: Vec<SpamView> = numbers
        .into_iter()
        .map(crate::export::SpamRecord::from)
        .map(|n| SpamView {
            number: n.number,
            number_type: n.number_type,
            distinct_reporters: n.distinct_reporters,
            reports: n.reports,
            reports_in_month: n.reports_in_month,
            calls: n.calls,
            sms: n.sms,
            flagged: n.flagged,
            allowlisted: n.allowlisted,
            associated: n.associated.join(", "),
        })
        .collect();
    let rows = items.len() as u64;
    let view = SpamPage {
        t: labels(viewer.language),
        signed_in: true,
        operator: viewer.is_operator(),
        month: month.to_string(),
        items,
    };
    page(&view, StatusCode::OK, rows)
}

/// A bill as the subscriber page shows it.
struct BillView {
    month: String,
    total: String,
    categories: String,
    flags: String,
    status: String,
}

#[derive(Template)]
#[template(path = "subscriber.html")]
struct SubscriberPage {
    t: &'static Labels,
    signed_in: bool,
    operator: bool,
    month: String,
    csrf: String,
    s: SubscriberRecord,
    bills: Vec<BillView>,
    /// Case, month, status, disputed, refunded, opened.
    disputes: Vec<(i64, String, String, String, String, String)>,
    /// When, text, action.
    replies: Vec<(String, String, String)>,
    /// When, which choice, the choice made, source, reason.
    consent: Vec<(String, &'static str, bool, String, String)>,
    /// Month, metric, threshold, used, status, raised.
    alerts: Vec<(String, String, String, String, String, String)>,
}

/// Bills, replies and consent changes the subscriber page lists.
const SUBSCRIBER_ROWS: i64 = 24;

pub async fn subscriber(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    Path(subscriber_id): Path<String>,
) -> Response {
    let store = &state.app.store;
    let record = match store.subscriber_record(&subscriber_id).await {
        Ok(Some(record)) => record,
        Ok(None) => return message(&state, &viewer, StatusCode::NOT_FOUND, "no such subscriber".into()).await,
        Err(error) => return unavailable(error),
    };
    let t = labels(viewer.language);
    let time = |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let filter = DisputeFilter { subscriber_id: Some(subscriber_id.clone()), ..DisputeFilter::default() };
    let (bills, disputes, replies, consent, alerts) = match tokio::try_join!(
        store.bills_of(&subscriber_id, SUBSCRIBER_ROWS),
        store.disputes(&filter, 0, SUBSCRIBER_ROWS),
        store.replies_of(&subscriber_id, SUBSCRIBER_ROWS),
        store.consent_history(&subscriber_id, SUBSCRIBER_ROWS),
        store.alerts_of_subscriber(&subscriber_id, SUBSCRIBER_ROWS),
    ) {
        Ok(found) => found,
        Err(error) => return unavailable(error),
    };
    let bills: Vec<BillView> = bills
        .iter()
        .map(|b| BillView {
            month: b.month.clone(),
            total: Fen::new(b.total_fen).to_string(),
            categories: b
                .categories
                .iter()
                .filter(|(_, amount)| !amount.is_zero())
                .map(|(category, amount)| format!("{} {amount}", category.label(viewer.language)))
                .collect::<Vec<_>>()
                .join("; "),
            flags: b
                .flags
                .iter()
                .map(|f| format!("{} {} {} {}", f.record_id, f.service_code, Fen::new(f.amount_fen), f.reason))
                .collect::<Vec<_>>()
                .join("; "),
            status: b.status.clone().unwrap_or_default(),
        })
        .collect();
    let rows = (bills.len() + disputes.len() + replies.len() + consent.len() + alerts.len()) as u64;
    let alerts = alerts
        .iter()
        .map(|a| {
            // Data is kept in KB and shown in MB; spend in fen, shown in yuan.
            let (threshold, used) = match a.metric.as_str() {
                "spend" => (Fen::new(a.threshold).to_string(), Fen::new(a.value).to_string()),
                "data" => (format!("{}%", a.threshold), format!("{} MB", a.value / 1024)),
                _ => (format!("{}%", a.threshold), a.value.to_string()),
            };
            let status = a.status.map_or("covered", |s| s.as_str()).to_string();
            (a.month.clone(), a.metric.clone(), threshold, used, status, time(a.raised_at))
        })
        .collect();
    let view = SubscriberPage {
        t,
        signed_in: true,
        operator: viewer.is_operator(),
        month: latest(&state).await.to_string(),
        bills,
        disputes: disputes
            .iter()
            .map(|d| {
                let opened = time(d.opened_at);
                (d.id, d.month.clone(), d.status.to_string(), d.disputed.to_string(), d.refunded.to_string(), opened)
            })
            .collect(),
        csrf: viewer.csrf.clone(),
        replies: replies.into_iter().map(|r| (time(r.received_at), r.text, r.action)).collect(),
        consent: consent
            .into_iter()
            .map(|c| {
                let choice = if c.what == "alert_sms" { t.alert_sms } else { t.bill_sms };
                (time(c.at), choice, c.bill_sms, c.source, c.reason)
            })
            .collect(),
        alerts,
        s: record,
    };
    page(&view, StatusCode::OK, rows)
}

#[derive(Deserialize)]
pub struct OpenDisputeForm {
    #[serde(default)]
    csrf: String,
    month: String,
    /// Record ids separated by commas; empty for the charges `SS` would choose.
    #[serde(default)]
    record_ids: String,
    #[serde(default)]
    note: String,
}

/// An operator opens a dispute of one of the subscriber's bills, as `POST /api/v1/disputes`
/// does; the subscriber is told the case number.
pub async fn open_dispute(
    State(state): State<Arc<ApiState>>,
    Extension(viewer): Extension<Viewer>,
    Path(subscriber_id): Path<String>,
    Form(form): Form<OpenDisputeForm>,
) -> Response {
    if let Some(refusal) = refuse_change(&state, &viewer, &form.csrf).await {
        return refusal;
    }
    let Ok(month) = form.month.parse::<BillingMonth>() else {
        return message(&state, &viewer, StatusCode::BAD_REQUEST, "month: must be written YYYY-MM".into()).await;
    };
    let note = form.note.trim();
    if note.is_empty() || note.chars().count() > 500 {
        return message(&state, &viewer, StatusCode::BAD_REQUEST, "note: must say why (1 to 500 characters)".into())
            .await;
    }
    let ids: Vec<String> =
        form.record_ids.split([',', ' ', '，']).map(str::trim).filter(|id| !id.is_empty()).map(String::from).collect();
    let service = match state.app.disputes().await {
        Ok(service) => service,
        Err(error) => return unavailable(error),
    };
    let request = crate::disputes::DisputeRequest {
        subscriber_id: &subscriber_id,
        month,
        record_ids: (!ids.is_empty()).then_some(ids.as_slice()),
        note,
        actor: &viewer.token_name,
    };
    match service.open(&request).await {
        Ok(crate::store::disputes::Opened::New(dispute) | crate::store::disputes::Opened::AlreadyOpen(dispute)) => {
            Redirect::to(&format!("/console/disputes?month={}#dispute-{}", dispute.month, dispute.id)).into_response()
        }
        Err(crate::disputes::DisputeError::NoBill) => {
            message(&state, &viewer, StatusCode::NOT_FOUND, "no bill for this subscriber and month".into()).await
        }
        Err(error @ crate::disputes::DisputeError::NotACharge(_)) => {
            message(&state, &viewer, StatusCode::BAD_REQUEST, error.to_string()).await
        }
        Err(error @ crate::disputes::DisputeError::NothingToDispute) => {
            message(&state, &viewer, StatusCode::CONFLICT, error.to_string()).await
        }
        Err(error) => unavailable(error),
    }
}
