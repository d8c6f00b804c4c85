//! Read routes for regulators and operators: deliveries (JSON pages and streamed CSV), bills,
//! flags, spam aggregates, runs and the audit log. Every answer of these routes carries the
//! number of rows it returned, for the audit log.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::stream;
use serde_json::Value;

use super::schema::{
    AuditItem, AuditPage, AuditQuery, DeliveriesPage, DeliveriesQuery, DeliveryItem, ErrorBody, FlagsPage, MonthQuery,
    RunItem, RunsPage, SpamPage, SpamQuery, StatusChange,
};
use super::{ApiError, ApiState};
use crate::domain::delivery::DeliveryStatus;
use crate::domain::msisdn::Msisdn;
use crate::domain::period::BillingMonth;
use crate::export::{neutralise, spam_numbers, BillRecord, DeliveryRecord, FlagRecord, SpamRecord, DELIVERY_COLUMNS};
use crate::store::{DeliveryExport, DeliveryFilter};

/// Rows an answer returned, for the audit log.
#[derive(Clone, Copy)]
pub struct RowsReturned(pub u64);

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

pub(super) fn bad(parameter: &str, problem: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, format!("{parameter}: {problem}"))
}

pub(super) fn store_error(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "query failed");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the database did not answer; try again")
}

/// The query string as parameters; a malformed one (bad escapes, invalid UTF-8) is refused.
pub(super) fn parameters(query: Option<String>) -> Result<HashMap<String, String>, ApiError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or_default())
        .map_err(|_| bad("query", "is not a valid query string"))?;
    Ok(pairs.into_iter().collect())
}

pub(super) fn with_rows(response: impl IntoResponse, rows: u64) -> Response {
    let mut response = response.into_response();
    response.extensions_mut().insert(RowsReturned(rows));
    response
}

pub(super) fn month_of(params: &HashMap<String, String>, required: bool) -> Result<Option<BillingMonth>, ApiError> {
    match params.get("month") {
        Some(month) => month.parse().map(Some).map_err(|_| bad("month", "must be written YYYY-MM")),
        None if required => Err(bad("month", "is required")),
        None => Ok(None),
    }
}

fn instant(params: &HashMap<String, String>, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    params
        .get(name)
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| bad(name, "must be an RFC 3339 timestamp"))
        })
        .transpose()
}

pub(super) fn limit_of(params: &HashMap<String, String>) -> Result<i64, ApiError> {
    match params.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(limit) => limit
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=MAX_LIMIT).contains(l))
            .ok_or_else(|| bad("limit", "must be a whole number from 1 to 1000")),
    }
}

/// Where the previous page ended: a cursor is the hex of the last row's key.
pub(super) fn cursor_of(params: &HashMap<String, String>) -> Result<String, ApiError> {
    match params.get("cursor") {
        None => Ok(String::new()),
        Some(cursor) => hex::decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|c| !c.is_empty())
            .ok_or_else(|| bad("cursor", "is not a cursor this API gave")),
    }
}

struct Page {
    filter: DeliveryFilter,
    after: String,
    limit: i64,
}

fn delivery_page(params: &HashMap<String, String>) -> Result<Page, ApiError> {
    let msisdn = params
        .get("msisdn")
        .map(|m| Msisdn::parse(m).map(|m| m.as_str().to_string()).map_err(|_| bad("msisdn", "is not a phone number")))
        .transpose()?;
    let status = params
        .get("status")
        .map(|s| s.parse::<DeliveryStatus>().map_err(|_| bad("status", "is not a delivery status")))
        .transpose()?;
    let limit = limit_of(params)?;
    let after = cursor_of(params)?;
    let filter = DeliveryFilter {
        month: month_of(params, false)?,
        msisdn,
        status,
        from: instant(params, "from")?,
        to: instant(params, "to")?,
    };
    Ok(Page { filter, after, limit })
}

fn delivery_item(d: &DeliveryExport, history: Option<&Vec<(String, DateTime<Utc>)>>) -> DeliveryItem {
    let history = history
        .map(|h| {
            h.iter()
                .map(|(status, at)| StatusChange {
                    status: status.clone(),
                    at: at.to_rfc3339_opts(SecondsFormat::Micros, true),
                })
                .collect()
        })
        .unwrap_or_default();
    DeliveryItem { delivery: DeliveryRecord::from(d), history }
}

#[utoipa::path(get, path = "/api/v1/deliveries", params(DeliveriesQuery),
    responses((status = 200, description = "Notifications with their status history, page by page", body = DeliveriesPage)))]
pub async fn deliveries(State(state): State<Arc<ApiState>>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let page = delivery_page(&parameters(query)?)?;
    let items = state.app.store.deliveries(&page.filter, &page.after, page.limit).await.map_err(store_error)?;
    let history = state.app.store.histories(&items).await.map_err(store_error)?;
    let next_cursor = (items.len() as i64 == page.limit).then(|| hex::encode(&items[items.len() - 1].id));
    let rows = items.len() as u64;
    let items = items.iter().map(|d| delivery_item(d, history.get(&d.id))).collect();
    Ok(with_rows(Json(DeliveriesPage { items, next_cursor }), rows))
}

fn csv_chunk(rows: &[DeliveryExport], header: bool) -> Vec<u8> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    if header {
        writer.write_record(DELIVERY_COLUMNS).expect("writing to memory");
    }
    for d in rows {
        let item = serde_json::to_value(DeliveryRecord::from(d)).expect("plain data serialises");
        let cells = DELIVERY_COLUMNS.iter().map(|c| match &item[*c] {
            Value::String(s) => neutralise(s).into_owned(),
            Value::Null => String::new(),
            other => other.to_string(),
        });
        writer.write_record(cells).expect("writing to memory");
    }
    writer.into_inner().expect("writing to memory")
}

/// The same rows as the JSON route, streamed page by page: never the whole result in memory.
#[utoipa::path(get, path = "/api/v1/deliveries.csv", params(DeliveriesQuery),
    responses((status = 200, description = "The same rows as CSV, streamed", content_type = "text/csv", body = String)))]
pub async fn deliveries_csv(
    State(state): State<Arc<ApiState>>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let page = delivery_page(&parameters(query)?)?;
    let store = state.app.store.clone();
    // The audit log counts the rows as they stood when the answer began.
    let rows = store.count_deliveries(&page.filter, &page.after).await.map_err(store_error)?;
    let first = store.deliveries(&page.filter, &page.after, MAX_LIMIT).await.map_err(store_error)?;
    let chunks = stream::unfold(Some((first, true, page.filter)), move |state| {
        let store = store.clone();
        async move {
            let (rows, header, filter) = state?;
            let chunk = csv_chunk(&rows, header);
            let next = match rows.last() {
                Some(last) if rows.len() as i64 == MAX_LIMIT => {
                    match store.deliveries(&filter, &last.id, MAX_LIMIT).await {
                        Ok(more) => Some((more, false, filter)),
                        Err(error) => return Some((Err(std::io::Error::other(error.to_string())), None)),
                    }
                }
                _ => None,
            };
            Some((Ok::<_, std::io::Error>(chunk), next))
        }
    });
    Ok(with_rows(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], Body::from_stream(chunks)), rows))
}

#[utoipa::path(get, path = "/api/v1/bills/{subscriber_id}/{month}",
    params(("subscriber_id" = String, Path), ("month" = String, Path, pattern = r"^\d{4}-\d{2}$")),
    responses((status = 200, description = "One subscriber's bill for a month", body = BillRecord),
        (status = 404, description = "No bill for this subscriber and month", body = ErrorBody)))]
pub async fn bill(
    State(state): State<Arc<ApiState>>,
    Path((subscriber_id, month)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let month: BillingMonth = month.parse().map_err(|_| bad("month", "must be written YYYY-MM"))?;
    let bill = state.app.store.bill(&subscriber_id, month).await.map_err(store_error)?;
    match bill {
        Some(bill) => Ok(with_rows(Json(BillRecord::new(&bill, month, state.app.settings.timezone)), 1)),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, "no bill for this subscriber and month")),
    }
}

#[utoipa::path(get, path = "/api/v1/flags", params(MonthQuery),
    responses((status = 200, description = "Unexplained-deduction flags of a month", body = FlagsPage)))]
pub async fn flags(State(state): State<Arc<ApiState>>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let month = month_of(&parameters(query)?, true)?.expect("required");
    let mut items = Vec::new();
    let mut after = (String::new(), String::new());
    loop {
        let page = state.app.store.flags_page(month, (&after.0, &after.1), MAX_LIMIT).await.map_err(store_error)?;
        let Some(last) = page.last() else { break };
        after = (last.subscriber_id.clone(), last.record_id.clone());
        items.extend(page.iter().map(|f| FlagRecord::new(f, month)));
    }
    let rows = items.len() as u64;
    Ok(with_rows(Json(FlagsPage { month: month.to_string(), items }), rows))
}

#[utoipa::path(get, path = "/api/v1/spam", params(SpamQuery),
    responses((status = 200, description = "Spam-number aggregates of a month", body = SpamPage)))]
pub async fn spam(State(state): State<Arc<ApiState>>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let params = parameters(query)?;
    let month = month_of(&params, true)?.expect("required");
    let flagged = match params.get("flagged").map(String::as_str) {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(bad("flagged", "must be true or false")),
    };
    let numbers = spam_numbers(&state.app.store, &state.app.settings, month).await.map_err(store_error)?;
    let items: Vec<SpamRecord> =
        numbers.into_iter().filter(|n| flagged.is_none_or(|f| n.flagged == f)).map(SpamRecord::from).collect();
    let rows = items.len() as u64;
    Ok(with_rows(Json(SpamPage { month: month.to_string(), items }), rows))
}

#[utoipa::path(get, path = "/api/v1/runs",
    responses((status = 200, description = "Billing runs per month, newest first", body = RunsPage)))]
pub async fn runs(State(state): State<Arc<ApiState>>) -> Result<Response, ApiError> {
    let runs = state.app.store.runs().await.map_err(store_error)?;
    let mut items = Vec::with_capacity(runs.len());
    for run in &runs {
        let month: BillingMonth = run.month.parse().map_err(store_error)?;
        let status = state.app.store.month_status(month).await.map_err(store_error)?;
        items.push(RunItem {
            month: run.month.clone(),
            runs: run.runs,
            started_at: run.started_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            finished_at: run.finished_at.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true)),
            bills: status.bills,
            total_fen: status.total_fen,
            deliveries: status.deliveries.into_iter().collect(),
            flags: status.flags.into_iter().collect(),
            spikes: status.spikes,
            late_records: status.late_records,
        });
    }
    let rows = items.len() as u64;
    Ok(with_rows(Json(RunsPage { items }), rows))
}

#[utoipa::path(get, path = "/api/v1/audit", params(AuditQuery),
    responses((status = 200, description = "The audit log, oldest first (operators only)", body = AuditPage)))]
pub async fn audit(State(state): State<Arc<ApiState>>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let params = parameters(query)?;
    let limit = limit_of(&params)?;
    let after = cursor_of(&params)?;
    let entries = state.app.store.audit_page(&after, limit).await.map_err(store_error)?;
    let items: Vec<AuditItem> = entries
        .iter()
        .map(|e| AuditItem {
            id: e.id.clone(),
            token: e.token_name.clone(),
            role: e.role.clone(),
            at: e.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            method: e.method.clone(),
            path: e.path.clone(),
            status: e.status,
            rows: e.rows_returned,
        })
        .collect();
    let next_cursor = (entries.len() as i64 == limit).then(|| hex::encode(&entries[entries.len() - 1].id));
    Ok(with_rows(Json(AuditPage { items, next_cursor }), entries.len() as u64))
}
