//! The shapes of the API's requests, answers and query parameters. Handlers answer with these
//! types and the OpenAPI document (`openapi.rs`) derives its schemas from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::export::{AlertRecord, DeliveryRecord, DisputeRecord, FlagRecord, SpamRecord};

/// Every refusal: a 4xx or 5xx with what is wrong, naming the parameter or field.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// One step of a notification's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusChange {
    pub status: String,
    /// RFC 3339, UTC, microseconds.
    pub at: String,
}

/// A notification with its status history.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryItem {
    #[serde(flatten)]
    pub delivery: DeliveryRecord,
    pub history: Vec<StatusChange>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveriesPage {
    pub items: Vec<DeliveryItem>,
    /// Present while more pages follow: pass it as `cursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FlagsPage {
    pub month: String,
    pub items: Vec<FlagRecord>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SpamPage {
    pub month: String,
    pub items: Vec<SpamRecord>,
}

/// A month's billing runs and where its push stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunItem {
    pub month: String,
    pub runs: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub bills: i64,
    pub total_fen: i64,
    /// Notifications per delivery status.
    pub deliveries: BTreeMap<String, i64>,
    /// Flagged charges per reason.
    pub flags: BTreeMap<String, i64>,
    pub spikes: i64,
    pub late_records: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunsPage {
    pub items: Vec<RunItem>,
}

/// One audited request.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditItem {
    pub id: String,
    /// The name of the token used.
    pub token: String,
    pub role: String,
    pub at: String,
    pub method: String,
    pub path: String,
    pub status: i64,
    pub rows: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub items: Vec<AuditItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What a receipt reports.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReceiptStatus {
    Delivered,
    Undeliverable,
    Expired,
}

/// A delivery receipt from a gateway.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ReceiptBody {
    /// The id the gateway gave when it accepted the message.
    pub message_id: String,
    pub status: ReceiptStatus,
    /// RFC 3339 with offset; from 2000 to a day ahead of the server's clock.
    #[schema(format = DateTime)]
    pub at: String,
}

/// A subscriber's message, from the gateway.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MoBody {
    /// The sender's number, in any accepted form.
    pub from: String,
    /// The port it was sent to.
    pub to: String,
    pub text: String,
    /// RFC 3339 with offset; from 2000 to a day ahead of the server's clock.
    #[schema(format = DateTime)]
    pub received_at: String,
}

/// What was done about a reply.
#[derive(Debug, Serialize, ToSchema)]
pub struct MoAnswer {
    /// `opt_out`, `opt_in`, `opt_out_help`, `spam_report`, `spam_report_unreadable`, `details`,
    /// `dispute` or `ignored`.
    pub action: String,
    /// Whether an answer SMS was queued: not for a repeated opt-out or opt-in, nor past
    /// `replies.max_per_day` answers to the sender that day.
    pub answered: bool,
}

/// An operator's change of a subscriber's choice of bill SMS, of usage alerts, or both (at
/// least one of the two).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ConsentBody {
    pub bill_sms: Option<bool>,
    pub alert_sms: Option<bool>,
    /// Why, kept with the change (1 to 500 characters).
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentAnswer {
    pub subscriber_id: String,
    /// As set by the request; absent when it did not name it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bill_sms: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_sms: Option<bool>,
    /// False when every choice named was so already.
    pub changed: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DisputesPage {
    pub items: Vec<DisputeRecord>,
    /// Present while more pages follow: pass it as `cursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A page of usage alerts.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertsPage {
    pub items: Vec<AlertRecord>,
    /// Present while more pages follow: pass it as `cursor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// An operator's opening of a dispute of one subscriber's bill.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DisputeOpenBody {
    pub subscriber_id: String,
    /// The bill's month, `YYYY-MM`.
    #[schema(pattern = r"^\d{4}-\d{2}$")]
    pub month: String,
    /// Records of the bill with a positive amount; by default the bill's flagged charges, or
    /// every charge when nothing is flagged.
    pub record_ids: Option<Vec<String>>,
    /// Why (1 to 500 characters), kept in the dispute's history.
    pub note: String,
}

/// How an operator ends a dispute.
#[derive(Debug, Deserialize, ToSchema)]
pub struct DisputeResolveBody {
    /// `refunded`, `rejected` or `withdrawn`.
    pub status: String,
    /// For `refunded`: more than 0 and at most the disputed sum; 0 otherwise (the default).
    pub refunded_fen: Option<i64>,
    /// Up to 500 characters; for `rejected`, the reason the subscriber is given (required).
    pub note: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Filters of the delivery log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// `YYYY-MM`.
    #[param(pattern = r"^\d{4}-\d{2}$")]
    pub month: Option<String>,
    /// A number in any accepted form (`138…`, `+86138…`, `86138…`).
    pub msisdn: Option<String>,
    /// A delivery status (`pending`, `queued`, `sending`, `accepted`, `delivered`,
    /// `undeliverable`, `unknown`, `failed`, `suppressed`, `skipped`).
    pub status: Option<String>,
    /// RFC 3339: last change at or after.
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// RFC 3339: last change before.
    #[param(format = DateTime)]
    pub to: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MonthQuery {
    /// `YYYY-MM`.
    #[param(pattern = r"^\d{4}-\d{2}$")]
    pub month: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SpamQuery {
    /// `YYYY-MM`.
    #[param(pattern = r"^\d{4}-\d{2}$")]
    pub month: String,
    /// Only flagged numbers (`true`) or only the others (`false`).
    pub flagged: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DisputesQuery {
    /// The disputed bills' month, `YYYY-MM`.
    #[param(pattern = r"^\d{4}-\d{2}$")]
    pub month: Option<String>,
    /// `open`, `refunded`, `rejected` or `withdrawn`.
    pub status: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// The billing periods' label, `YYYY-MM`.
    #[param(pattern = r"^\d{4}-\d{2}$")]
    pub month: String,
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JasminQuery {
    /// The Jasmin receipt credential (a token of role `jasmin`).
    pub token: String,
}

/// Jasmin's form-encoded receipt.
#[derive(Debug, Deserialize, ToSchema)]
pub struct JasminReceipt {
    /// The id Jasmin gave when it accepted the message.
    pub id: String,
    /// `DELIVRD`, `UNDELIV`, `REJECTD`, `EXPIRED`, `DELETED`; others settle nothing.
    pub message_status: Option<String>,
    pub level: Option<String>,
}
