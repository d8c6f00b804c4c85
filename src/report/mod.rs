//! The regulator's monthly report (docs/contract.md §11): a month's figures in total and per
//! `region` of the subscribers, as JSON or CSV.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Settings;
use crate::domain::dispute::{is_overdue, DisputeStatus};
use crate::domain::flags::FlagReason;
use crate::domain::period::{calendar_month, BillingMonth};
use crate::domain::spam::NumberType;
use crate::export::spam_numbers;
use crate::store::reports::RegionCount;
use crate::store::Store;

/// How `billpush report` writes the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Json,
    Csv,
}

impl std::str::FromStr for ReportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(ReportFormat::Json),
            "csv" => Ok(ReportFormat::Csv),
            other => Err(format!("unknown format {other:?}: json or csv")),
        }
    }
}

/// Service codes the report lists by flagged amount.
const TOP_SERVICES: i64 = 10;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct SmsFigures {
    pub accepted: i64,
    pub delivered: i64,
    pub undeliverable: i64,
    pub unknown: i64,
    pub failed: i64,
    pub suppressed: i64,
    pub skipped: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FlagFigures {
    pub count: i64,
    pub fen: i64,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DisputeFigures {
    pub opened: i64,
    pub refunded: i64,
    pub refunded_fen: i64,
    pub rejected: i64,
    pub overdue: i64,
}

/// The figures of a region, or of the whole month.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Figures {
    pub subscribers_billed: i64,
    pub sms: SmsFigures,
    /// delivered ÷ (billed − suppressed − skipped), four decimals; 0 when nothing was sent.
    pub delivery_rate: f64,
    /// Every flag reason, zero when none.
    pub flags: BTreeMap<&'static str, FlagFigures>,
    pub spikes: i64,
    pub disputes: DisputeFigures,
    pub opt_outs: i64,
    pub opt_ins: i64,
    pub alerts_sent: i64,
}

impl Default for Figures {
    fn default() -> Self {
        Figures {
            subscribers_billed: 0,
            sms: SmsFigures::default(),
            delivery_rate: 0.0,
            flags: FlagReason::ALL.into_iter().map(|r| (r.as_str(), FlagFigures::default())).collect(),
            spikes: 0,
            disputes: DisputeFigures::default(),
            opt_outs: 0,
            opt_ins: 0,
            alerts_sent: 0,
        }
    }
}

impl Figures {
    fn rate(&mut self) {
        let sent = self.subscribers_billed - self.sms.suppressed - self.sms.skipped;
        self.delivery_rate =
            if sent > 0 { (self.sms.delivered as f64 / sent as f64 * 10_000.0).round() / 10_000.0 } else { 0.0 };
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Total {
    #[serde(flatten)]
    pub figures: Figures,
    /// Spam numbers flagged in the month, per number type (every type, zero when none).
    pub spam_flagged: BTreeMap<&'static str, i64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Region {
    pub region: String,
    #[serde(flatten)]
    pub figures: Figures,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FlaggedService {
    pub service_code: String,
    pub flagged: i64,
    pub flagged_fen: i64,
    pub subscribers: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub month: String,
    pub total: Total,
    /// Sorted by name; subscribers without a region under `""`.
    pub regions: Vec<Region>,
    pub top_flagged_services: Vec<FlaggedService>,
}

/// Adds each count to its region's figures and to the total, by `apply`.
fn add(
    regions: &mut BTreeMap<String, Figures>,
    total: &mut Figures,
    counts: &[RegionCount],
    apply: impl Fn(&mut Figures, &RegionCount),
) {
    for count in counts {
        apply(regions.entry(count.region.clone()).or_default(), count);
        apply(total, count);
    }
}

/// The report of `month`; disputes are overdue as of `as_of`.
pub async fn report(
    store: &Store,
    settings: &Settings,
    month: BillingMonth,
    as_of: DateTime<Utc>,
) -> anyhow::Result<Report> {
    let mut regions: BTreeMap<String, Figures> = BTreeMap::new();
    let mut total = Figures::default();
    add(&mut regions, &mut total, &store.report_bills(month).await?, |f, c| {
        f.subscribers_billed += c.count;
        if c.key == "spike" {
            f.spikes += c.count;
        }
    });
    add(&mut regions, &mut total, &store.report_bill_sms(month).await?, |f, c| {
        let sms = &mut f.sms;
        match c.key.as_str() {
            "accepted" => sms.accepted += c.count,
            "delivered" => sms.delivered += c.count,
            "undeliverable" => sms.undeliverable += c.count,
            "unknown" => sms.unknown += c.count,
            "failed" => sms.failed += c.count,
            "suppressed" => sms.suppressed += c.count,
            "skipped" => sms.skipped += c.count,
            // Still on their way: counted once they are settled.
            _ => {}
        }
    });
    add(&mut regions, &mut total, &store.report_flags(month).await?, |f, c| {
        if let Some(flag) = FlagReason::ALL.into_iter().find(|r| r.as_str() == c.key) {
            let figures = f.flags.entry(flag.as_str()).or_default();
            figures.count += c.count;
            figures.fen += c.fen;
        }
    });
    add(&mut regions, &mut total, &store.report_alerts_sent(month).await?, |f, c| f.alerts_sent += c.count);
    let calendar = calendar_month(month, settings.timezone);
    add(&mut regions, &mut total, &store.report_consent(calendar).await?, |f, c| match c.key.as_str() {
        "in" => f.opt_ins += c.count,
        _ => f.opt_outs += c.count,
    });
    for dispute in store.report_disputes(month).await? {
        let status: Option<DisputeStatus> = dispute.status.parse().ok();
        let overdue = status.is_some_and(|s| is_overdue(s, dispute.opened_at, as_of, settings.dispute_sla));
        for figures in [regions.entry(dispute.region.clone()).or_default(), &mut total] {
            let d = &mut figures.disputes;
            d.opened += 1;
            match status {
                Some(DisputeStatus::Refunded) => {
                    d.refunded += 1;
                    d.refunded_fen += dispute.refunded_fen;
                }
                Some(DisputeStatus::Rejected) => d.rejected += 1,
                _ => {}
            }
            d.overdue += i64::from(overdue);
        }
    }
    total.rate();
    let mut spam_flagged: BTreeMap<&'static str, i64> = NumberType::ALL.into_iter().map(|t| (t.as_str(), 0)).collect();
    for number in spam_numbers(store, settings, month).await?.iter().filter(|n| n.flagged) {
        *spam_flagged.entry(number.number_type.as_str()).or_default() += 1;
    }
    let top_flagged_services = store
        .report_flagged_services(month, TOP_SERVICES)
        .await?
        .into_iter()
        .map(|s| FlaggedService {
            service_code: s.service_code,
            flagged: s.flagged,
            flagged_fen: s.flagged_fen,
            subscribers: s.subscribers,
        })
        .collect();
    Ok(Report {
        month: month.to_string(),
        total: Total { figures: total, spam_flagged },
        regions: regions
            .into_iter()
            .map(|(region, mut figures)| {
                figures.rate();
                Region { region, figures }
            })
            .collect(),
        top_flagged_services,
    })
}

/// The CSV of a report: one row per region, then the total as region `*`.
pub fn write_csv(report: &Report, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut csv = csv::Writer::from_writer(out);
    let mut header: Vec<String> = ["region", "subscribers_billed"].map(String::from).to_vec();
    header.extend(
        ["accepted", "delivered", "undeliverable", "unknown", "failed", "suppressed", "skipped"]
            .map(|s| format!("sms_{s}")),
    );
    header.push("delivery_rate".into());
    for reason in FlagReason::ALL {
        header.push(format!("flags_{}_count", reason.as_str()));
        header.push(format!("flags_{}_fen", reason.as_str()));
    }
    header.extend(
        [
            "spikes",
            "disputes_opened",
            "disputes_refunded",
            "disputes_refunded_fen",
            "disputes_rejected",
            "disputes_overdue",
            "opt_outs",
            "opt_ins",
            "alerts_sent",
        ]
        .map(String::from),
    );
    csv.write_record(&header)?;
    let rows = report.regions.iter().map(|r| (r.region.as_str(), &r.figures)).chain([("*", &report.total.figures)]);
    for (region, f) in rows {
        let s = &f.sms;
        let mut record: Vec<String> =
            vec![crate::export::neutralise(region).into_owned(), f.subscribers_billed.to_string()];
        record.extend(
            [s.accepted, s.delivered, s.undeliverable, s.unknown, s.failed, s.suppressed, s.skipped]
                .map(|n| n.to_string()),
        );
        record.push(format!("{:.4}", f.delivery_rate));
        for reason in FlagReason::ALL {
            let flag = f.flags.get(reason.as_str()).cloned().unwrap_or_default();
            record.push(flag.count.to_string());
            record.push(flag.fen.to_string());
        }
        let d = &f.disputes;
        record.extend(
            [
                f.spikes,
                d.opened,
                d.refunded,
                d.refunded_fen,
                d.rejected,
                d.overdue,
                f.opt_outs,
                f.opt_ins,
                f.alerts_sent,
            ]
            .map(|n| n.to_string()),
        );
        csv.write_record(&record)?;
    }
    csv.flush()?;
    Ok(())
}
