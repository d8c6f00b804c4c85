//! The records billpush imports: plans, subscribers, usage records with their subscriber, VAS
//! orders and spam reports, as the rest of the program knows them once parsed
//! (docs/contract.md §1).

use chrono::{DateTime, Utc};

use crate::domain::bill::UsageRecord;
use crate::domain::category::Language;
use crate::domain::flags::VasOrder;
use crate::domain::msisdn::Msisdn;
use crate::domain::period::BillingDay;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub plan_id: String,
    pub name: String,
    pub monthly_fee_fen: i64,
    pub voice_minutes: i64,
    pub data_mb: i64,
    pub sms_count: i64,
}

/// A subscriber as a `subscribers.csv` row gives it. An optional field is `None` where its
/// cell was empty or its column absent: a new subscriber takes the default, an existing one
/// keeps what is stored (docs/contract.md §1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    pub subscriber_id: String,
    pub msisdn: Msisdn,
    pub name: Option<String>,
    pub plan_id: String,
    pub language: Option<Language>,
    pub billing_day: Option<BillingDay>,
    pub status: Option<SubscriberStatus>,
    pub bill_sms: Option<bool>,
    pub alert_sms: Option<bool>,
    /// `None` when the cell is empty: an existing subscriber keeps its region.
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// A usage record with the subscriber it belongs to.
pub struct SubscriberUsage {
    pub subscriber_id: String,
    pub record: UsageRecord,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// A VAS order: the subscriber's consent record for one service.
pub struct SubscriberOrder {
    pub subscriber_id: String,
    pub order: VasOrder,
    pub channel: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// One report of a spam or harassing number; `reported_number` is normalised.
pub struct SpamReport {
    pub report_id: String,
    pub reporter: Msisdn,
    pub reported_number: String,
    pub reported_at: DateTime<Utc>,
    pub kind: ReportKind,
    pub note: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriberStatus {
    Active,
    Suspended,
    Closed,
}

impl SubscriberStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            SubscriberStatus::Active => "active",
            SubscriberStatus::Suspended => "suspended",
            SubscriberStatus::Closed => "closed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    Call,
    Sms,
}

impl ReportKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ReportKind::Call => "call",
            ReportKind::Sms => "sms",
        }
    }
}
