//! The records exports and the API hand out, as types: their JSON is what these serialise to,
//! and the API's OpenAPI schemas are derived from them, so the two cannot disagree.

use chrono::SecondsFormat;
use chrono_tz::Tz;
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::category::Category;
use crate::domain::delivery::split_kind;
use crate::domain::period::BillingMonth;
use crate::domain::spam::SpamNumber;
use crate::store::disputes::Dispute;
use crate::store::{BillExport, DeliveryExport, FlagExport};

fn local_rfc3339(at: chrono::DateTime<chrono::Utc>, tz: Tz) -> String {
    at.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// A bill's total per category, in fen.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CategoryAmounts {
    pub plan_fee: i64,
    pub voice: i64,
    pub data: i64,
    pub sms: i64,
    pub vas: i64,
    pub other: i64,
    pub discount: i64,
    pub adjustment: i64,
}

/// What a bill's period used: minutes, KB and messages.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageFigures {
    pub voice_minutes: i64,
    pub data_kb: i64,
    pub sms_count: i64,
}

/// An unexplained deduction on a bill.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChargeFlagRecord {
    pub record_id: String,
    /// `no_order`, `after_cancel`, `unconfirmed` or `duplicate`.
    pub reason: String,
    pub service_code: String,
    pub amount_fen: i64,
}

/// One subscriber's bill for a month (docs/contract.md §7, `export bills`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BillRecord {
    pub subscriber_id: String,
    pub msisdn: String,
    /// `YYYY-MM`.
    pub month: String,
    /// RFC 3339 in the operator's timezone.
    pub period_start: String,
    pub period_end: String,
    pub total_fen: i64,
    pub categories: CategoryAmounts,
    pub usage: UsageFigures,
    pub flags: Vec<ChargeFlagRecord>,
    /// `spike` when the bill is one.
    pub bill_flags: Vec<String>,
    /// The bill SMS's delivery status; null while it has none.
    pub status: Option<String>,
    pub segments: Option<i64>,
}

impl BillRecord {
    pub fn new(bill: &BillExport, month: BillingMonth, tz: Tz) -> BillRecord {
        let amount = |category: Category| bill.categories.get(category).get();
        BillRecord {
            subscriber_id: bill.subscriber_id.clone(),
            msisdn: bill.msisdn.clone(),
            month: month.to_string(),
            period_start: local_rfc3339(bill.period.start, tz),
            period_end: local_rfc3339(bill.period.end, tz),
            total_fen: bill.total_fen,
            categories: CategoryAmounts {
                plan_fee: amount(Category::PlanFee),
                voice: amount(Category::Voice),
                data: amount(Category::Data),
                sms: amount(Category::Sms),
                vas: amount(Category::Vas),
                other: amount(Category::Other),
                discount: amount(Category::Discount),
                adjustment: amount(Category::Adjustment),
            },
            usage: UsageFigures { voice_minutes: bill.voice_minutes, data_kb: bill.data_kb, sms_count: bill.sms_count },
            flags: bill
                .flags
                .iter()
                .map(|f| ChargeFlagRecord {
                    record_id: f.record_id.clone(),
                    reason: f.reason.clone(),
                    service_code: f.service_code.clone(),
                    amount_fen: f.amount_fen,
                })
                .collect(),
            bill_flags: if bill.spike { vec!["spike".to_string()] } else { Vec::new() },
            status: bill.status.clone(),
            segments: bill.segments,
        }
    }
}

/// One notification (docs/contract.md §7, `export deliveries`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryRecord {
    pub id: String,
    pub subscriber_id: String,
    pub msisdn: String,
    pub month: String,
    /// `bill`, `flag_notice`, `dispute`, or the answer to a reply (`optout`, `details`, …).
    pub kind: String,
    /// What the notification is about within its kind: empty for a bill or a flag notice,
    /// `<dispute id>:<status>` for a dispute, the reply's id for an answer (docs/contract.md §6.1).
    pub subject: String,
    /// A delivery status (docs/contract.md §6).
    pub status: String,
    pub reason: Option<String>,
    pub attempts: i64,
    pub segments: i64,
    /// `gsm7` or `ucs2`; empty for a text never made.
    pub encoding: String,
    pub gateway_message_id: Option<String>,
    pub text: String,
    /// RFC 3339, UTC, microseconds.
    pub updated_at: String,
}

impl From<&DeliveryExport> for DeliveryRecord {
    fn from(d: &DeliveryExport) -> DeliveryRecord {
        DeliveryRecord {
            id: d.id.clone(),
            subscriber_id: d.subscriber_id.clone(),
            msisdn: d.msisdn.clone(),
            month: d.month.clone(),
            kind: split_kind(&d.kind).0.to_string(),
            subject: split_kind(&d.kind).1.to_string(),
            status: d.status.clone(),
            reason: d.reason.clone(),
            attempts: d.attempts,
            segments: d.segments,
            encoding: d.encoding.clone(),
            gateway_message_id: d.gateway_message_id.clone(),
            text: d.text.clone(),
            updated_at: crate::store::from_micros(d.updated_at).to_rfc3339_opts(SecondsFormat::Micros, true),
        }
    }
}

/// A flagged charge of a month (`export flags`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FlagRecord {
    pub subscriber_id: String,
    pub month: String,
    pub record_id: String,
    pub reason: String,
    pub service_code: String,
    pub amount_fen: i64,
}

impl FlagRecord {
    pub fn new(f: &FlagExport, month: BillingMonth) -> FlagRecord {
        FlagRecord {
            subscriber_id: f.subscriber_id.clone(),
            month: month.to_string(),
            record_id: f.record_id.clone(),
            reason: f.reason.clone(),
            service_code: f.service_code.clone(),
            amount_fen: f.amount_fen,
        }
    }
}

/// A number reported for a month, with its counts (`export spam`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SpamRecord {
    pub number: String,
    /// `mobile`, `international`, `sp_port`, `landline`, `service` or `other`.
    pub number_type: String,
    /// Over the window (`spam.window_days` back from the month's end).
    pub distinct_reporters: i64,
    pub reports: i64,
    /// Reports in the month itself.
    pub reports_in_month: i64,
    /// Reports of kind `call` and of kind `sms`, over the window.
    pub calls: i64,
    pub sms: i64,
    pub flagged: bool,
    pub allowlisted: bool,
    pub associated: Vec<String>,
}

impl From<SpamNumber> for SpamRecord {
    fn from(s: SpamNumber) -> SpamRecord {
        SpamRecord {
            number: s.number,
            number_type: s.number_type.as_str().to_string(),
            distinct_reporters: s.distinct_reporters,
            reports: s.reports,
            reports_in_month: s.reports_in_month,
            calls: s.calls,
            sms: s.sms,
            flagged: s.flagged,
            allowlisted: s.allowlisted,
            associated: s.associated,
        }
    }
}

/// A dispute (docs/contract.md §7a, `export disputes`, `GET /api/v1/disputes`).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DisputeRecord {
    /// The case number the subscriber is given.
    pub id: i64,
    pub subscriber_id: String,
    pub msisdn: String,
    /// The disputed bill's month, `YYYY-MM`.
    pub month: String,
    /// `open`, `refunded`, `rejected` or `withdrawn`.
    pub status: String,
    pub disputed_fen: i64,
    /// 0 unless refunded.
    pub refunded_fen: i64,
    /// RFC 3339, UTC, microseconds.
    pub opened_at: String,
    /// Null while open.
    pub resolved_at: Option<String>,
    /// Open longer than `disputes.sla`.
    pub overdue: bool,
    /// The disputed records' ids.
    pub records: Vec<String>,
}

impl DisputeRecord {
    pub fn new(dispute: &Dispute, overdue: bool) -> DisputeRecord {
        let time = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Micros, true);
        DisputeRecord {
            id: dispute.id,
            subscriber_id: dispute.subscriber_id.clone(),
            msisdn: dispute.msisdn.clone(),
            month: dispute.month.clone(),
            status: dispute.status.as_str().to_string(),
            disputed_fen: dispute.disputed.get(),
            refunded_fen: dispute.refunded.get(),
            opened_at: time(dispute.opened_at),
            resolved_at: dispute.resolved_at.map(time),
            overdue,
            records: dispute.records.clone(),
        }
    }
}

/// A usage alert (docs/contract.md §12): each threshold reached, sent or covered.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct AlertRecord {
    pub subscriber_id: String,
    pub msisdn: String,
    /// The billing period's label, `YYYY-MM`.
    pub month: String,
    /// `data`, `voice`, `sms` or `spend`.
    pub metric: String,
    /// A percentage of the allowance, or fen for `spend`.
    pub threshold: i64,
    /// In the metric's unit: data KB, voice minutes, SMS count, spend fen.
    pub value: i64,
    /// The plan's allowance in the same unit; null for `spend`.
    pub allowance: Option<i64>,
    /// The delivery status of its SMS (`expired` when never sent in time or overtaken), or
    /// `covered` for a lower threshold reached with the one sent.
    pub status: String,
    /// RFC 3339, UTC, microseconds.
    pub raised_at: String,
}

/// The columns of `export alerts --format csv`, in order.
pub const ALERT_COLUMNS: [&str; 9] =
    ["subscriber_id", "msisdn", "month", "metric", "threshold", "value", "allowance", "status", "raised_at"];

impl AlertRecord {
    pub fn new(row: &crate::store::alerts::AlertRow) -> AlertRecord {
        AlertRecord {
            subscriber_id: row.subscriber_id.clone(),
            msisdn: row.msisdn.clone(),
            month: row.month.clone(),
            metric: row.metric.clone(),
            threshold: row.threshold,
            value: row.value,
            allowance: row.allowance,
            status: row.status.map_or("covered", |s| s.as_str()).to_string(),
            raised_at: row.raised_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        }
    }
}
