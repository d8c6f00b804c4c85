//! Subscribers' replies (`POST /api/v1/mo`, gateway role): opting out of the bill SMS, spam
//! reports (`JB <number>`), bill details (`ZD`) and disputes (`SS`). Reply SMS go out through
//! the same queue and rate limit as bills, each as a notification of its own kind.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Datelike, Utc};
use serde::Deserialize;
use serde_json::json;

use super::auth::Role;
use super::{ApiError, ApiState};
use crate::domain::bill::CategoryTotals;
use crate::domain::category::Language;
use crate::domain::delivery::DeliveryStatus;
use crate::domain::money::Fen;
use crate::domain::msisdn::{normalise_reported_number, Msisdn};
use crate::domain::period::BillingMonth;
use crate::domain::records::{ReportKind, SpamReport};
use crate::domain::reply::{parse_reply, Reply};
use crate::queue::{Queue, QueueMessage};
use crate::render::{RenderedSms, ReplyKind};
use crate::store::billing::{insert_notification, NotificationToWrite};
use crate::store::imports::write_spam_reports;
use crate::store::notifications::mark_queued;
use crate::store::AuditEntry;

#[derive(Deserialize)]
struct Mo {
    from: String,
    to: String,
    text: String,
    received_at: String,
}

fn unavailable(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "could not record a reply");
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "reply not recorded; send it again")
}

pub async fn receive(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (gateway, _) = state.tokens.authorise(&headers, None, &[Role::Gateway])?;
    let gateway = gateway.to_string();
    let mo: Mo = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("malformed reply: {e}")))?;
    let from =
        Msisdn::parse(&mo.from).map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "from: is not a phone number"))?;
    let received_at = DateTime::parse_from_rfc3339(&mo.received_at)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "received_at: must be an RFC 3339 timestamp"))?
        .with_timezone(&Utc);
    let store = &state.app.store;
    let Some((subscriber_id, language)) = store.subscriber_by_msisdn(from.as_str()).await.map_err(unavailable)? else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "unknown sender"));
    };
    let mo_id = uuid::Uuid::now_v7().to_string();
    let (action, reply) = match parse_reply(&mo.text) {
        Reply::OptOut => {
            store.opt_out(&subscriber_id).await.map_err(unavailable)?;
            let entry = AuditEntry {
                id: uuid::Uuid::now_v7().to_string(),
                token_name: gateway,
                role: Role::Gateway.as_str().into(),
                at: state.app.clock().now(),
                method: "MO".into(),
                path: format!("opt-out of the bill SMS by subscriber {subscriber_id} (reply {mo_id})"),
                status: i64::from(StatusCode::ACCEPTED.as_u16()),
                rows_returned: 0,
            };
            store.append_audit(&entry).await.map_err(unavailable)?;
            ("opt_out", Some(ReplyKind::OptOut))
        }
        Reply::Report(number) => match normalise_reported_number(&number) {
            Ok(reported_number) => {
                let report = SpamReport {
                    report_id: format!("mo-{mo_id}"),
                    reporter: from.clone(),
                    reported_number,
                    reported_at: received_at,
                    kind: ReportKind::Sms,
                    note: "JB reply".into(),
                };
                let mut tx = store.begin().await.map_err(unavailable)?;
                write_spam_reports(&mut tx, &[&report]).await.map_err(unavailable)?;
                tx.commit().await.map_err(unavailable)?;
                ("spam_report", None)
            }
            Err(_) => ("spam_report_unreadable", None),
        },
        Reply::Details => ("details", Some(ReplyKind::Details)),
        Reply::Dispute => ("dispute", None),
        Reply::Other => ("ignored", None),
    };
    store
        .record_mo(&mo_id, from.as_str(), &mo.to, &mo.text, received_at, &subscriber_id, action)
        .await
        .map_err(unavailable)?;
    if let Some(kind) = reply {
        queue_reply(&state, kind, &subscriber_id, &from, language, &mo_id, received_at).await?;
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "action": action }))).into_response())
}

/// Writes the reply as a pending notification of the month it was asked in, and hands it to
/// the broker when one is configured; with the in-process queue the month's next `run`
/// pushes it.
async fn queue_reply(
    state: &ApiState,
    kind: ReplyKind,
    subscriber_id: &str,
    to: &Msisdn,
    language: Language,
    mo_id: &str,
    received_at: DateTime<Utc>,
) -> Result<(), ApiError> {
    let app = &state.app;
    let bill = match kind {
        ReplyKind::Details => app.store.latest_bill(subscriber_id).await.map_err(unavailable)?,
        ReplyKind::OptOut => None,
    };
    let totals = bill.as_ref().map(|b| (b.period, CategoryTotals::from_array(b.categories.map(Fen::new))));
    let view = app.renderer.reply_view(to, language, totals.as_ref().map(|(period, totals)| (*period, totals)));
    let (status, reason, text, encoding, segments) = match app.renderer.render_reply(kind, language, &view) {
        RenderedSms::Fits { text, encoding, segments } => {
            (DeliveryStatus::Pending, None, text, encoding.as_str(), segments)
        }
        RenderedSms::TooLong { segments } => (DeliveryStatus::Failed, Some("too_long"), String::new(), "", segments),
    };
    let local = received_at.with_timezone(&app.settings.timezone);
    let month = BillingMonth::new(local.year(), local.month()).expect("a real date").to_string();
    let notification = NotificationToWrite {
        id: uuid::Uuid::now_v7().to_string(),
        kind: format!("{}:{mo_id}", kind.template()),
        status: status.as_str(),
        reason,
        segments: segments as i64,
        encoding,
        text,
    };
    let now = app.clock().now();
    let mut tx = app.store.begin().await.map_err(unavailable)?;
    insert_notification(&mut tx, subscriber_id, &month, to, &notification, now).await.map_err(unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    if let (Some(queue), DeliveryStatus::Pending) = (&state.queue, status) {
        queue
            .publish(&[QueueMessage { notification_ids: vec![notification.id.clone()] }])
            .await
            .map_err(unavailable)?;
        let mut tx = app.store.begin().await.map_err(unavailable)?;
        mark_queued(&mut tx, std::slice::from_ref(&notification.id), now).await.map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
    }
    Ok(())
}
