//! `POST /api/v1/mo` (gateway role): a subscriber's message, parsed, authorised and handed to
//! the replies service (docs/contract.md §7).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};

use super::auth::Role;
use super::schema::{ErrorBody, MoAnswer, MoBody};
use super::{ApiError, ApiState};
use crate::domain::msisdn::Msisdn;
use crate::replies::{InboundReply, ReplyError};

#[utoipa::path(post, path = "/api/v1/mo", request_body = MoBody,
    responses((status = 202, description = "Recorded, and answered by SMS where the reply asks for it", body = MoAnswer),
        (status = 404, description = "The sender is no subscriber", body = ErrorBody)))]
pub async fn receive(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (gateway, _) = state.tokens.authorise(&headers, None, &[Role::Gateway])?;
    let mo: MoBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed reply: {e}")))?;
    let from =
        Msisdn::parse(&mo.from).map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "from: is not a phone number"))?;
    let received_at = DateTime::parse_from_rfc3339(&mo.received_at)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "received_at: must be an RFC 3339 timestamp"))?
        .with_timezone(&Utc);
    let reply = InboundReply { from: &from, to: &mo.to, text: &mo.text, received_at, via: gateway };
    let replies = state.app.replies().await.map_err(|error| {
        tracing::error!(error = format!("{error:#}"), "no broker for the answer to a reply");
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "reply not recorded; send it again")
    })?;
    match replies.handle(&reply).await {
        Ok(outcome) => {
            let answer = MoAnswer { action: outcome.action.as_str().to_string(), answered: outcome.answered };
            Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
        }
        Err(ReplyError::UnknownSender) => Err(ApiError::new(StatusCode::NOT_FOUND, "unknown sender")),
        Err(ReplyError::Implausible(problem)) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, format!("received_at: {problem}")))
        }
        Err(error) => {
            tracing::error!(%error, "could not record a reply");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "reply not recorded; send it again"))
        }
    }
}
