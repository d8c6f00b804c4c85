//! Usage alerts of a month (docs/contract.md §12), for regulators and operators.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::Json;

use super::reads::{bad, cursor_of, limit_of, month_of, parameters, store_error, with_rows};
use super::schema::{AlertsPage, AlertsQuery};
use super::{ApiError, ApiState};
use crate::export::AlertRecord;

/// Separates the parts of a cursor's key (subscriber, metric, threshold): a control character
/// no subscriber id or metric holds.
const SEPARATOR: char = '\u{1f}';

#[utoipa::path(get, path = "/api/v1/alerts", params(AlertsQuery),
    responses((status = 200, description = "The month's usage alerts, sent and covered, by subscriber, metric and threshold", body = AlertsPage)))]
pub async fn list(State(state): State<Arc<ApiState>>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let params = parameters(query)?;
    let month = month_of(&params, true)?.expect("required");
    let limit = limit_of(&params)?;
    let cursor = cursor_of(&params)?;
    let after = if cursor.is_empty() {
        None
    } else {
        let mut parts = cursor.split(SEPARATOR);
        match (parts.next(), parts.next(), parts.next().and_then(|t| t.parse::<i64>().ok()), parts.next()) {
            (Some(subscriber), Some(metric), Some(threshold), None) => Some((subscriber, metric, threshold)),
            _ => return Err(bad("cursor", "is not a cursor this API gave")),
        }
    };
    let page = state.app.store.alerts_of_month(month, after, limit).await.map_err(store_error)?;
    let next_cursor = (page.len() as i64 == limit).then(|| {
        let last = &page[page.len() - 1];
        hex::encode(format!("{}{SEPARATOR}{}{SEPARATOR}{}", last.subscriber_id, last.metric, last.threshold))
    });
    let items: Vec<AlertRecord> = page.iter().map(AlertRecord::new).collect();
    let rows = items.len() as u64;
    Ok(with_rows(Json(AlertsPage { items, next_cursor }), rows))
}
