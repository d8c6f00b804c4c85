//! `POST /api/v1/subscribers/{id}/consent` (operator): the operator's way to change a
//! subscriber's choice of bill SMS or of usage alerts, with a reason; kept as a consent change
//! and audited.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::schema::{ConsentAnswer, ConsentBody, ErrorBody};
use super::{ApiError, ApiState};
use crate::store::replies::Choice;

#[utoipa::path(post, path = "/api/v1/subscribers/{subscriber_id}/consent", params(("subscriber_id" = String, Path)),
    request_body = ConsentBody,
    responses((status = 200, description = "The subscriber's choice as it now stands", body = ConsentAnswer),
        (status = 404, description = "No such subscriber", body = ErrorBody)))]
pub async fn set(
    State(state): State<Arc<ApiState>>,
    Path(subscriber_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: ConsentBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed consent: {e}")))?;
    let reason = body.reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "reason: must be 1 to 500 characters"));
    }
    let choices: Vec<(Choice, bool)> = [(Choice::BillSms, body.bill_sms), (Choice::AlertSms, body.alert_sms)]
        .into_iter()
        .filter_map(|(choice, value)| value.map(|v| (choice, v)))
        .collect();
    if choices.is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "bill_sms, alert_sms: give at least one"));
    }
    match state.app.set_consent(&subscriber_id, &choices, reason).await {
        Ok(Some(changed)) => {
            let answer = ConsentAnswer { subscriber_id, bill_sms: body.bill_sms, alert_sms: body.alert_sms, changed };
            Ok((StatusCode::OK, Json(answer)).into_response())
        }
        Ok(None) => Err(ApiError::new(StatusCode::NOT_FOUND, "no such subscriber")),
        Err(error) => {
            tracing::error!(%error, "could not change consent");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the database did not answer; try again"))
        }
    }
}
