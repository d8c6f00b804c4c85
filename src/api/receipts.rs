//! Delivery receipts: the generic JSON form on `/api/v1/dlr`, and Jasmin's form-encoded
//! receipts on `/api/v1/dlr/jasmin`, which Jasmin repeats until the answer is `ACK/Jasmin`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::auth::Role;
use super::schema::{ErrorBody, JasminQuery, JasminReceipt, ReceiptBody, ReceiptStatus};
use super::{ApiError, ApiState};
use crate::domain::delivery::{check_reported_time, receipt_status, DeliveryStatus};
use crate::store::notifications::{ReceiptOutcome, ReceiptTime};

async fn apply(
    state: &ApiState,
    message_id: &str,
    status: DeliveryStatus,
    at: DateTime<Utc>,
    dated: ReceiptTime,
) -> Result<ReceiptOutcome, ApiError> {
    let store_error = |error: crate::store::StoreError| {
        tracing::error!(%error, "could not record a receipt");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "receipt not recorded; send it again")
    };
    crate::inbound::record(&state.app.store, message_id, status, at, dated).await.map_err(store_error)
}

#[utoipa::path(post, path = "/api/v1/dlr", request_body = ReceiptBody,
    responses((status = 202, description = "Recorded"),
        (status = 404, description = "No message has this message_id", body = ErrorBody)))]
pub async fn generic(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.tokens.authorise(&headers, None, &[Role::Gateway])?;
    let receipt: ReceiptBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed receipt: {e}")))?;
    let status = match receipt.status {
        ReceiptStatus::Delivered => DeliveryStatus::Delivered,
        ReceiptStatus::Undeliverable | ReceiptStatus::Expired => DeliveryStatus::Undeliverable,
    };
    let at = DateTime::parse_from_rfc3339(&receipt.at)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "at must be an RFC 3339 timestamp"))?
        .with_timezone(&Utc);
    check_reported_time(at, state.app.clock().now())
        .map_err(|problem| ApiError::new(StatusCode::BAD_REQUEST, format!("at: {problem}")))?;
    match apply(&state, &receipt.message_id, status, at, ReceiptTime::Reported).await? {
        ReceiptOutcome::Recorded(_) => Ok(StatusCode::ACCEPTED.into_response()),
        ReceiptOutcome::UnknownMessage => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown message_id")),
        ReceiptOutcome::BeforeAccepted { accepted_at } => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("at: before the message was accepted ({})", accepted_at.to_rfc3339()),
        )),
    }
}

#[utoipa::path(post, path = "/api/v1/dlr/jasmin", params(JasminQuery),
    request_body(content = JasminReceipt, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "ACK/Jasmin", content_type = "text/plain", body = String),
        (status = 404, description = "No message has this id yet; Jasmin sends it again later", body = ErrorBody)))]
pub async fn jasmin(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    state.tokens.authorise(&headers, query.get("token").map(String::as_str), &[Role::Jasmin])?;
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed receipt: {e}")))?;
    let id = form.get("id").ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "id is required"))?;
    // ACCEPTD, ENROUTE, UNKNOWN and level-1 receipts settle nothing.
    let status = form.get("message_status").and_then(|word| receipt_status(word));
    if let Some(status) = status {
        // Jasmin's receipts carry no time of their own: they are dated on arrival.
        let now = state.app.clock().now();
        if apply(&state, id, status, now, ReceiptTime::OnArrival).await? == ReceiptOutcome::UnknownMessage {
            // The receipt can overtake the worker recording Jasmin's answer. Anything but
            // `ACK/Jasmin` makes Jasmin send it again later, when the id is known.
            tracing::info!(message_id = ?id, "Jasmin receipt for a message id not recorded yet");
            return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown message id; send the receipt again later"));
        }
    }
    Ok((StatusCode::OK, "ACK/Jasmin").into_response())
}
