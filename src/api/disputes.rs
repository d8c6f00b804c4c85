//! Disputes (docs/contract.md §7a): listed for regulators and operators; opened and resolved by
//! operators. The service decides and tells the subscriber; this layer reads and answers HTTP.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;

use super::reads::{bad, cursor_of, limit_of, month_of, parameters, store_error, with_rows};
use super::schema::{DisputeOpenBody, DisputeResolveBody, DisputesPage, DisputesQuery, ErrorBody};
use super::{ApiError, ApiState};
use crate::disputes::{DisputeError, DisputeRequest};
use crate::domain::dispute::{DisputeStatus, Resolution};
use crate::domain::money::Fen;
use crate::export::DisputeRecord;
use crate::store::disputes::{DisputeFilter, Opened, Resolved};

/// The longest note a dispute's change keeps.
const MAX_NOTE_CHARS: usize = 500;

fn json_body<T: serde::de::DeserializeOwned>(body: &Bytes, what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed {what}: {e}")))
}

fn failed(error: DisputeError) -> ApiError {
    match error {
        DisputeError::NoBill => ApiError::new(StatusCode::NOT_FOUND, error.to_string()),
        DisputeError::NotACharge(_) => ApiError::new(StatusCode::BAD_REQUEST, error.to_string()),
        DisputeError::NothingToDispute => ApiError::new(StatusCode::CONFLICT, error.to_string()),
        DisputeError::Store(error) => store_error(error),
        DisputeError::Dispatch(error) => store_error(error),
    }
}

/// The name of the operator's token, for the dispute's history.
fn actor(state: &ApiState, headers: &HeaderMap) -> String {
    state.tokens.bearer(headers).map_or_else(|| "operator".to_string(), |(name, _)| name.to_string())
}

#[utoipa::path(get, path = "/api/v1/disputes", params(DisputesQuery),
    responses((status = 200, description = "Disputes in case-number order, page by page", body = DisputesPage)))]
pub async fn list(State(state): State<Arc<ApiState>>, RawQuery(query): RawQuery) -> Result<Response, ApiError> {
    let params = parameters(query)?;
    let status = params
        .get("status")
        .map(|s| s.parse::<DisputeStatus>().map_err(|_| bad("status", "is not open, refunded, rejected or withdrawn")))
        .transpose()?;
    let filter = DisputeFilter { month: month_of(&params, false)?, status, subscriber_id: None };
    let limit = limit_of(&params)?;
    let after = match cursor_of(&params)? {
        cursor if cursor.is_empty() => 0,
        cursor => cursor.parse::<i64>().map_err(|_| bad("cursor", "is not a cursor this API gave"))?,
    };
    let disputes = state.app.disputes().await.map_err(store_error)?;
    let page = state.app.store.disputes(&filter, after, limit).await.map_err(store_error)?;
    let next_cursor = (page.len() as i64 == limit).then(|| hex::encode(page[page.len() - 1].id.to_string()));
    let items: Vec<DisputeRecord> = page.iter().map(|d| DisputeRecord::new(d, disputes.is_overdue(d))).collect();
    let rows = items.len() as u64;
    Ok(with_rows(Json(DisputesPage { items, next_cursor }), rows))
}

#[utoipa::path(post, path = "/api/v1/disputes", request_body = DisputeOpenBody,
    responses((status = 201, description = "Opened; the subscriber is told the case number", body = DisputeRecord),
        (status = 200, description = "A dispute of this bill was open already: that one", body = DisputeRecord),
        (status = 404, description = "No bill for this subscriber and month", body = ErrorBody),
        (status = 409, description = "The bill has no charge to dispute", body = ErrorBody)))]
pub async fn open(State(state): State<Arc<ApiState>>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let body: DisputeOpenBody = json_body(&body, "dispute")?;
    let month = body.month.parse().map_err(|_| bad("month", "must be written YYYY-MM"))?;
    let note = checked_note(&body.note, true)?;
    let actor = actor(&state, &headers);
    let request = DisputeRequest {
        subscriber_id: &body.subscriber_id,
        month,
        record_ids: body.record_ids.as_deref(),
        note,
        actor: &actor,
    };
    let disputes = state.app.disputes().await.map_err(store_error)?;
    let (status, dispute) = match disputes.open(&request).await.map_err(failed)? {
        Opened::New(dispute) => (StatusCode::CREATED, dispute),
        Opened::AlreadyOpen(dispute) => (StatusCode::OK, dispute),
    };
    let record = DisputeRecord::new(&dispute, disputes.is_overdue(&dispute));
    Ok(with_rows((status, Json(record)), 1))
}

#[utoipa::path(post, path = "/api/v1/disputes/{id}/resolve", params(("id" = i64, Path)),
    request_body = DisputeResolveBody,
    responses((status = 200, description = "Resolved; the subscriber is told the outcome", body = DisputeRecord),
        (status = 404, description = "No such dispute", body = ErrorBody),
        (status = 409, description = "Resolved already", body = ErrorBody)))]
pub async fn resolve(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let no_such = || ApiError::new(StatusCode::NOT_FOUND, "no such dispute");
    let id: i64 = id.parse().map_err(|_| no_such())?;
    let body: DisputeResolveBody = json_body(&body, "resolution")?;
    let status = body.status.parse().map_err(|_| bad("status", "must be refunded, rejected or withdrawn"))?;
    let note = checked_note(body.note.as_deref().unwrap_or_default(), false)?;
    let resolution = Resolution { status, refunded: Fen::new(body.refunded_fen.unwrap_or(0)), note: note.to_string() };
    let disputes = state.app.disputes().await.map_err(store_error)?;
    match disputes.resolve(id, &resolution, &actor(&state, &headers)).await.map_err(failed)? {
        Resolved::Now(dispute) => {
            let record = DisputeRecord::new(&dispute, disputes.is_overdue(&dispute));
            Ok(with_rows(Json(record), 1))
        }
        Resolved::NoSuchDispute => Err(no_such()),
        Resolved::Already(dispute) => {
            Err(ApiError::new(StatusCode::CONFLICT, format!("dispute {id} is {} already", dispute.status)))
        }
        Resolved::Refused(refusal) => Err(ApiError::new(StatusCode::BAD_REQUEST, refusal.to_string())),
    }
}

/// A note of at most 500 characters, trimmed; `required` ones hold something.
fn checked_note(note: &str, required: bool) -> Result<&str, ApiError> {
    let note = note.trim();
    if required && note.is_empty() {
        return Err(bad("note", "must say why (1 to 500 characters)"));
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(bad("note", "must be at most 500 characters"));
    }
    Ok(note)
}
