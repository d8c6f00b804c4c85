//! `GET /api/v1/reports/{month}` (regulator, operator): the month's report of docs/contract.md
//! §11, as `billpush report` writes it in JSON, disputes overdue as of now.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;

use super::reads::{bad, with_rows};
use super::{ApiError, ApiState};
use crate::domain::period::BillingMonth;

#[utoipa::path(get, path = "/api/v1/reports/{month}", params(("month" = String, Path, description = "YYYY-MM")),
    responses((status = 200, description = "The month's figures in total and per region, as docs/contract.md §11 gives them", body = Object)))]
pub async fn month(State(state): State<Arc<ApiState>>, Path(month): Path<String>) -> Result<Response, ApiError> {
    let month: BillingMonth = month.parse().map_err(|_| bad("month", "must be written YYYY-MM"))?;
    let report = state.app.report(month, None).await.map_err(|error| {
        tracing::error!(error = format!("{error:#}"), "could not make the report");
        ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, "the database did not answer; try again")
    })?;
    let rows = report.regions.len() as u64 + 1;
    Ok(with_rows(Json(report), rows))
}
