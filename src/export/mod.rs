//! `export {bills|deliveries|flags|spam|disputes|alerts}` as JSON lines or CSV, page by page.

pub mod records;

use std::borrow::Cow;
use std::io::Write;
use std::str::FromStr;

use serde_json::{json, Value};

use crate::config::Settings;
use crate::domain::category::Category;
use crate::domain::dispute::is_overdue;
use crate::domain::period::{calendar_month, BillingMonth, Period};
use crate::domain::spam::{aggregate, SpamNumber};
use crate::store::disputes::DisputeFilter;
use crate::store::Store;
pub use records::{AlertRecord, BillRecord, DeliveryRecord, DisputeRecord, FlagRecord, SpamRecord, ALERT_COLUMNS};

const PAGE: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Bills,
    Deliveries,
    Flags,
    Spam,
    Disputes,
    Alerts,
}

impl FromStr for ExportKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bills" => Ok(ExportKind::Bills),
            "deliveries" => Ok(ExportKind::Deliveries),
            "flags" => Ok(ExportKind::Flags),
            "spam" => Ok(ExportKind::Spam),
            "disputes" => Ok(ExportKind::Disputes),
            "alerts" => Ok(ExportKind::Alerts),
            other => Err(format!("unknown export {other:?}: bills, deliveries, flags, spam, disputes or alerts")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

impl FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "jsonl" => Ok(ExportFormat::Jsonl),
            "csv" => Ok(ExportFormat::Csv),
            other => Err(format!("unknown format {other:?}: jsonl or csv")),
        }
    }
}

/// A spreadsheet would run a cell starting with `=`, `+`, `-` or `@` as a formula, and some
/// strip a leading TAB or CR before looking; a leading apostrophe keeps it text. Only text
/// cells are neutralised; numbers stay numbers.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// Writes rows as JSON lines or CSV. CSV cells come from a row's JSON values: strings are
/// neutralised, numbers and booleans written as they are, arrays joined with `;`.
enum RowWriter<'w> {
    Jsonl(&'w mut dyn Write),
    Csv { csv: Box<csv::Writer<&'w mut dyn Write>>, header_written: bool },
}

impl<'w> RowWriter<'w> {
    fn new(format: ExportFormat, out: &'w mut dyn Write) -> Self {
        match format {
            ExportFormat::Jsonl => RowWriter::Jsonl(out),
            ExportFormat::Csv => RowWriter::Csv {
                csv: Box::new(csv::WriterBuilder::new().has_headers(false).from_writer(out)),
                header_written: false,
            },
        }
    }

    fn write(&mut self, row: &Value, csv_columns: &[(&str, Value)]) -> anyhow::Result<()> {
        match self {
            RowWriter::Jsonl(out) => {
                serde_json::to_writer(&mut **out, row)?;
                out.write_all(b"\n")?;
            }
            RowWriter::Csv { csv, header_written } => {
                if !*header_written {
                    csv.write_record(csv_columns.iter().map(|(name, _)| *name))?;
                    *header_written = true;
                }
                csv.write_record(csv_columns.iter().map(|(_, value)| csv_cell(value)))?;
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        match self {
            RowWriter::Jsonl(out) => out.flush()?,
            RowWriter::Csv { mut csv, .. } => csv.flush()?,
        }
        Ok(())
    }
}

fn csv_cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => neutralise(s).into_owned(),
        Value::Array(items) => neutralise(&items.iter().map(csv_cell).collect::<Vec<_>>().join(";")).into_owned(),
        other => other.to_string(),
    }
}

fn bill_csv(row: &Value) -> Vec<(&'static str, Value)> {
    let mut columns: Vec<(&'static str, Value)> =
        ["subscriber_id", "msisdn", "month", "period_start", "period_end", "total_fen"]
            .into_iter()
            .map(|k| (k, row[k].clone()))
            .collect();
    columns.extend(Category::ALL.iter().map(|c| (c.as_str(), row["categories"][c.as_str()].clone())));
    columns.extend(["voice_minutes", "data_kb", "sms_count"].map(|k| (k, row["usage"][k].clone())));
    let flags = row["flags"].as_array().map(Vec::as_slice).unwrap_or_default();
    columns.push((
        "flags",
        Value::Array(
            flags
                .iter()
                .map(|f| {
                    json!(format!(
                        "{}:{}",
                        f["record_id"].as_str().unwrap_or_default(),
                        f["reason"].as_str().unwrap_or_default()
                    ))
                })
                .collect(),
        ),
    ));
    columns.push(("flagged_fen", json!(flags.iter().filter_map(|f| f["amount_fen"].as_i64()).sum::<i64>())));
    columns.extend(["bill_flags", "status", "segments"].map(|k| (k, row[k].clone())));
    columns
}

/// The columns of a delivery row, in export and CSV order.
pub const DELIVERY_COLUMNS: [&str; 14] = [
    "id",
    "subscriber_id",
    "msisdn",
    "month",
    "kind",
    "subject",
    "status",
    "reason",
    "attempts",
    "segments",
    "encoding",
    "gateway_message_id",
    "text",
    "updated_at",
];

/// The columns of a dispute row, in export and CSV order.
pub const DISPUTE_COLUMNS: [&str; 11] = [
    "id",
    "subscriber_id",
    "msisdn",
    "month",
    "status",
    "disputed_fen",
    "refunded_fen",
    "opened_at",
    "resolved_at",
    "overdue",
    "records",
];

/// A record as the JSON it is exported as.
fn json_of(record: &impl serde::Serialize) -> Value {
    serde_json::to_value(record).expect("plain data serialises")
}

fn columns_of(row: &Value, names: &[&'static str]) -> Vec<(&'static str, Value)> {
    names.iter().map(|&k| (k, row[k].clone())).collect()
}

/// The month's spam aggregates (docs/contract.md §4).
pub async fn spam_numbers(store: &Store, settings: &Settings, month: BillingMonth) -> anyhow::Result<Vec<SpamNumber>> {
    let period = calendar_month(month, settings.timezone);
    let reach = chrono::Duration::days(i64::from(settings.config.spam.window_days));
    let window = Period { start: period.start.min(period.end - reach), end: period.end };
    let counts = store.spam_counts(period, window).await?;
    Ok(aggregate(counts, settings.config.spam.flag_threshold, &settings.allowlist))
}

pub async fn export(
    store: &Store,
    settings: &Settings,
    kind: ExportKind,
    month: BillingMonth,
    format: ExportFormat,
    now: chrono::DateTime<chrono::Utc>,
    out: &mut dyn Write,
) -> anyhow::Result<u64> {
    let tz = settings.timezone;
    let mut writer = RowWriter::new(format, out);
    let mut rows = 0u64;
    match kind {
        ExportKind::Bills => {
            let mut after = String::new();
            loop {
                let page = store.bills_page(month, &after, PAGE).await?;
                let Some(last) = page.last() else { break };
                after = last.subscriber_id.clone();
                for bill in &page {
                    let row = json_of(&BillRecord::new(bill, month, tz));
                    writer.write(&row, &bill_csv(&row))?;
                }
                rows += page.len() as u64;
            }
        }
        ExportKind::Deliveries => {
            // The next page is read while this one is written: the database and the writing
            // each keep a core busy, where in turns each waited for the other.
            let (pages, mut next) = tokio::sync::mpsc::channel(2);
            let reader = {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut after = String::new();
                    loop {
                        let page = store.deliveries_page(month, &after, PAGE).await?;
                        let Some(last) = page.last() else { return crate::store::StoreResult::Ok(()) };
                        after = last.id.clone();
                        if pages.send(page).await.is_err() {
                            // The writer stopped (its error is the export's).
                            return Ok(());
                        }
                    }
                })
            };
            while let Some(page) = next.recv().await {
                for delivery in &page {
                    let row = json_of(&DeliveryRecord::from(delivery));
                    writer.write(&row, &columns_of(&row, &DELIVERY_COLUMNS))?;
                }
                rows += page.len() as u64;
            }
            reader.await??;
        }
        ExportKind::Flags => {
            let mut after = (String::new(), String::new());
            loop {
                let page = store.flags_page(month, (&after.0, &after.1), PAGE).await?;
                let Some(last) = page.last() else { break };
                after = (last.subscriber_id.clone(), last.record_id.clone());
                for flag in &page {
                    let row = json_of(&FlagRecord::new(flag, month));
                    writer.write(
                        &row,
                        &columns_of(
                            &row,
                            &["subscriber_id", "month", "record_id", "reason", "service_code", "amount_fen"],
                        ),
                    )?;
                }
                rows += page.len() as u64;
            }
        }
        ExportKind::Spam => {
            for number in spam_numbers(store, settings, month).await? {
                let row = json_of(&SpamRecord::from(number));
                writer.write(
                    &row,
                    &columns_of(
                        &row,
                        &[
                            "number",
                            "number_type",
                            "distinct_reporters",
                            "reports",
                            "reports_in_month",
                            "calls",
                            "sms",
                            "flagged",
                            "allowlisted",
                            "associated",
                        ],
                    ),
                )?;
                rows += 1;
            }
        }
        ExportKind::Disputes => {
            let filter = DisputeFilter { month: Some(month), ..DisputeFilter::default() };
            let mut after = 0;
            loop {
                let page = store.disputes(&filter, after, PAGE).await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                for dispute in &page {
                    let overdue = is_overdue(dispute.status, dispute.opened_at, now, settings.dispute_sla);
                    let row = json_of(&DisputeRecord::new(dispute, overdue));
                    writer.write(&row, &columns_of(&row, &DISPUTE_COLUMNS))?;
                }
                rows += page.len() as u64;
            }
        }
        ExportKind::Alerts => {
            let mut after: Option<(String, String, i64)> = None;
            loop {
                let key = after.as_ref().map(|(s, m, t)| (s.as_str(), m.as_str(), *t));
                let page = store.alerts_of_month(month, key, PAGE).await?;
                let Some(last) = page.last() else { break };
                after = Some((last.subscriber_id.clone(), last.metric.clone(), last.threshold));
                for alert in &page {
                    let row = json_of(&AlertRecord::new(alert));
                    writer.write(&row, &columns_of(&row, &ALERT_COLUMNS))?;
                }
                rows += page.len() as u64;
            }
        }
    }
    writer.finish()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_like_text_cells_are_neutralised() {
        assert_eq!(neutralise("=cmd|' /C calc'!A0"), "'=cmd|' /C calc'!A0");
        assert_eq!(neutralise("+8613800138000"), "'+8613800138000");
        assert_eq!(neutralise("-1"), "'-1");
        assert_eq!(neutralise("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(neutralise("\t=1+1"), "'\t=1+1");
        assert_eq!(neutralise("\r=1+1"), "'\r=1+1");
        assert_eq!(neutralise("张伟"), "张伟");
        assert_eq!(csv_cell(&json!(-157)), "-157", "numbers are not text cells");
        assert_eq!(csv_cell(&json!(["=a", "b"])), "'=a;b");
    }
}
