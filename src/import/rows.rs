//! Parsing one CSV row of each input file into its domain record. Every rule of
//! docs/contract.md §1 that can be checked without the database is checked here; failures name
//! the field.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use csv::ByteRecord;

use crate::domain::bill::{UsageRecord, MAX_RECORD_QUANTITY};
use crate::domain::category::Category;
use crate::domain::flags::VasOrder;
use crate::domain::money::{Fen, MAX_RECORD_AMOUNT_FEN};
use crate::domain::msisdn::{normalise_reported_number, Msisdn};
use crate::domain::period::BillingDay;
use crate::domain::records::{
    Plan, ReportKind, SpamReport, Subscriber, SubscriberOrder, SubscriberStatus, SubscriberUsage,
};

/// The longest free text (names, descriptions, notes) a row may carry: far more than any
/// bill line needs, far less than a runaway field.
pub const MAX_TEXT_CHARS: usize = 1000;

/// Why a row was rejected: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub field: &'static str,
    pub problem: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

fn reject(field: &'static str, problem: impl Into<String>) -> RowError {
    RowError { field, problem: problem.into() }
}

/// Where each known column sits in the file's rows.
pub struct Columns(HashMap<&'static str, usize>);

impl Columns {
    /// Maps the header row; returns the required columns that are missing, if any.
    pub fn map(
        headers: &[String],
        required: &[&'static str],
        optional: &[&'static str],
    ) -> Result<Columns, Vec<&'static str>> {
        let position = |name: &str| headers.iter().position(|h| h == name);
        let missing: Vec<_> = required.iter().copied().filter(|name| position(name).is_none()).collect();
        if !missing.is_empty() {
            return Err(missing);
        }
        Ok(Columns(required.iter().chain(optional).filter_map(|&name| position(name).map(|i| (name, i))).collect()))
    }
}

/// One row's fields, looked up by column name.
pub struct Fields<'a> {
    record: &'a ByteRecord,
    columns: &'a Columns,
}

impl<'a> Fields<'a> {
    pub fn new(record: &'a ByteRecord, columns: &'a Columns) -> Self {
        Fields { record, columns }
    }

    /// The field as written; empty when the column is absent or the row is short.
    fn raw(&self, name: &'static str) -> Result<&'a str, RowError> {
        let bytes = self.columns.0.get(name).and_then(|&i| self.record.get(i)).unwrap_or_default();
        let value = std::str::from_utf8(bytes).map_err(|_| reject(name, "is not valid UTF-8"))?;
        // PostgreSQL text cannot hold it: the row is refused here, on either backend.
        if value.contains('\0') {
            return Err(reject(name, "contains a NUL character"));
        }
        Ok(value)
    }

    /// The field without surrounding blanks: for codes, numbers and timestamps.
    fn value(&self, name: &'static str) -> Result<&'a str, RowError> {
        self.raw(name).map(str::trim)
    }

    fn key(&self, name: &'static str, max_chars: usize) -> Result<String, RowError> {
        let value = self.value(name)?;
        let chars = value.chars().count();
        if chars == 0 || chars > max_chars {
            return Err(reject(name, format!("must be 1 to {max_chars} characters, is {chars}")));
        }
        Ok(value.to_string())
    }

    fn integer(&self, name: &'static str) -> Result<i64, RowError> {
        let value = self.value(name)?;
        value.parse::<i64>().map_err(|_| reject(name, format!("{value:?} is not an integer")))
    }

    fn non_negative(&self, name: &'static str) -> Result<i64, RowError> {
        let n = self.integer(name)?;
        if n < 0 {
            return Err(reject(name, format!("{n} is negative")));
        }
        Ok(n)
    }

    fn instant(&self, name: &'static str) -> Result<DateTime<Utc>, RowError> {
        let value = self.value(name)?;
        DateTime::parse_from_rfc3339(value)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| reject(name, format!("{value:?} is not an RFC 3339 timestamp with offset")))
    }

    fn optional_instant(&self, name: &'static str) -> Result<Option<DateTime<Utc>>, RowError> {
        if self.value(name)?.is_empty() {
            Ok(None)
        } else {
            self.instant(name).map(Some)
        }
    }

    fn boolean(&self, name: &'static str, default: bool) -> Result<bool, RowError> {
        match self.value(name)? {
            "" => Ok(default),
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(reject(name, format!("{other:?} is not true or false"))),
        }
    }

    fn text(&self, name: &'static str) -> Result<String, RowError> {
        let value = self.raw(name)?;
        let chars = value.chars().count();
        if chars > MAX_TEXT_CHARS {
            return Err(reject(name, format!("is {chars} characters, more than {MAX_TEXT_CHARS}")));
        }
        Ok(value.to_string())
    }
}

pub const PLAN_COLUMNS: (&[&str], &[&str]) =
    (&["plan_id", "name", "monthly_fee_fen", "voice_minutes", "data_mb", "sms_count"], &[]);

pub fn parse_plan(f: &Fields) -> Result<Plan, RowError> {
    Ok(Plan {
        plan_id: f.key("plan_id", 64)?,
        name: f.text("name")?,
        monthly_fee_fen: f.non_negative("monthly_fee_fen")?,
        voice_minutes: f.non_negative("voice_minutes")?,
        data_mb: f.non_negative("data_mb")?,
        sms_count: f.non_negative("sms_count")?,
    })
}

pub const SUBSCRIBER_COLUMNS: (&[&str], &[&str]) = (
    &["subscriber_id", "msisdn", "plan_id"],
    &["name", "language", "billing_day", "status", "bill_sms", "alert_sms", "region"],
);

pub fn parse_subscriber(f: &Fields) -> Result<Subscriber, RowError> {
    let subscriber_id = f.key("subscriber_id", 64)?;
    let msisdn = Msisdn::parse(f.value("msisdn")?).map_err(|e| reject("msisdn", e))?;
    let language = match f.value("language")? {
        "" => None,
        other => Some(other.parse().map_err(|e: String| reject("language", e))?),
    };
    let billing_day = match f.value("billing_day")? {
        "" => None,
        _ => {
            let day = f.integer("billing_day")?;
            Some(BillingDay::new(day).ok_or_else(|| reject("billing_day", format!("{day} is not between 1 and 28")))?)
        }
    };
    let status = match f.value("status")? {
        "" => None,
        "active" => Some(SubscriberStatus::Active),
        "suspended" => Some(SubscriberStatus::Suspended),
        "closed" => Some(SubscriberStatus::Closed),
        other => return Err(reject("status", format!("{other:?} is not active, suspended or closed"))),
    };
    let bill_sms = match f.value("bill_sms")? {
        "" => None,
        _ => Some(f.boolean("bill_sms", true)?),
    };
    let alert_sms = match f.value("alert_sms")? {
        "" => None,
        _ => Some(f.boolean("alert_sms", true)?),
    };
    let region = f.text("region")?;
    if region.chars().count() > 32 {
        return Err(reject("region", format!("{} characters, more than 32", region.chars().count())));
    }
    let name = f.text("name")?;
    Ok(Subscriber {
        subscriber_id,
        msisdn,
        name: (!name.is_empty()).then_some(name),
        plan_id: f.key("plan_id", 64)?,
        language,
        billing_day,
        status,
        bill_sms,
        alert_sms,
        region: (!region.is_empty()).then_some(region),
    })
}

pub const USAGE_COLUMNS: (&[&str], &[&str]) = (
    &["record_id", "subscriber_id", "occurred_at", "category", "quantity", "amount_fen"],
    &["service_code", "description"],
);

pub fn parse_usage(f: &Fields) -> Result<SubscriberUsage, RowError> {
    let record_id = f.key("record_id", 128)?;
    let subscriber_id = f.key("subscriber_id", 64)?;
    let occurred_at = f.instant("occurred_at")?;
    let category: Category = f.value("category")?.parse().map_err(|e: String| reject("category", e))?;
    let quantity = f.non_negative("quantity")?;
    if quantity > MAX_RECORD_QUANTITY {
        return Err(reject("quantity", format!("{quantity} is beyond {MAX_RECORD_QUANTITY}")));
    }
    let amount = f.integer("amount_fen")?;
    if amount.abs() > MAX_RECORD_AMOUNT_FEN {
        return Err(reject("amount_fen", format!("{amount} is beyond ±{MAX_RECORD_AMOUNT_FEN}")));
    }
    match category {
        Category::Discount if amount > 0 => {
            return Err(reject("amount_fen", format!("a discount must not be positive, is {amount}")))
        }
        Category::Discount | Category::Adjustment => {}
        _ if amount < 0 => {
            return Err(reject("amount_fen", format!("a {category} charge must not be negative, is {amount}")))
        }
        _ => {}
    }
    let service_code = f.value("service_code")?.to_string();
    match (category, service_code.is_empty()) {
        (Category::Vas, true) => return Err(reject("service_code", "is required for a vas record")),
        (Category::Vas, false) if service_code.chars().count() > 64 => {
            return Err(reject("service_code", "is longer than 64 characters"))
        }
        (Category::Vas, false) | (_, true) => {}
        (_, false) => return Err(reject("service_code", format!("must be empty for a {category} record"))),
    }
    Ok(SubscriberUsage {
        subscriber_id,
        record: UsageRecord {
            record_id,
            occurred_at,
            category,
            quantity,
            amount: Fen::new(amount),
            service_code,
            description: f.text("description")?,
        },
    })
}

pub const ORDER_COLUMNS: (&[&str], &[&str]) =
    (&["subscriber_id", "service_code", "ordered_at"], &["cancelled_at", "confirmed", "channel"]);

pub fn parse_order(f: &Fields) -> Result<SubscriberOrder, RowError> {
    Ok(SubscriberOrder {
        subscriber_id: f.key("subscriber_id", 64)?,
        order: VasOrder {
            service_code: f.key("service_code", 64)?,
            ordered_at: f.instant("ordered_at")?,
            cancelled_at: f.optional_instant("cancelled_at")?,
            confirmed: f.boolean("confirmed", false)?,
        },
        channel: f.text("channel")?,
    })
}

pub const SPAM_REPORT_COLUMNS: (&[&str], &[&str]) =
    (&["report_id", "reporter_msisdn", "reported_number", "reported_at", "kind"], &["note"]);

pub fn parse_spam_report(f: &Fields) -> Result<SpamReport, RowError> {
    Ok(SpamReport {
        report_id: f.key("report_id", 128)?,
        reporter: Msisdn::parse(f.value("reporter_msisdn")?).map_err(|e| reject("reporter_msisdn", e))?,
        reported_number: normalise_reported_number(f.value("reported_number")?)
            .map_err(|e| reject("reported_number", e))?,
        reported_at: f.instant("reported_at")?,
        kind: match f.value("kind")? {
            "call" => ReportKind::Call,
            "sms" => ReportKind::Sms,
            other => return Err(reject("kind", format!("{other:?} is not call or sms"))),
        },
        note: f.text("note")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<T>(
        columns: (&[&'static str], &[&'static str]),
        header: &str,
        row: &str,
        parse: fn(&Fields) -> Result<T, RowError>,
    ) -> Result<T, RowError> {
        let headers: Vec<String> = header.split(',').map(String::from).collect();
        let columns = Columns::map(&headers, columns.0, columns.1).unwrap();
        let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(row.as_bytes());
        let record = reader.byte_records().next().unwrap().unwrap();
        parse(&Fields::new(&record, &columns))
    }

    fn usage(row: &str) -> Result<SubscriberUsage, RowError> {
        parse(
            USAGE_COLUMNS,
            "record_id,subscriber_id,occurred_at,category,quantity,amount_fen,service_code,description",
            row,
            parse_usage,
        )
    }

    #[test]
    fn a_missing_required_column_is_named() {
        let headers: Vec<String> = ["record_id", "subscriber_id"].map(String::from).to_vec();
        let missing = Columns::map(&headers, USAGE_COLUMNS.0, USAGE_COLUMNS.1).err().unwrap();
        assert_eq!(missing, ["occurred_at", "category", "quantity", "amount_fen"]);
    }

    #[test]
    fn usage_rows_follow_the_contract() {
        assert!(usage("R1,S1,2026-10-05T10:00:00+08:00,vas,1,300,SP1,视频").is_ok());
        assert!(usage("R1,S1,2026-10-05T10:00:00+08:00,adjustment,0,-300,,").is_ok());
        assert!(usage("R1,S1,2026-10-05T10:00:00+08:00,discount,0,0,,").is_ok());
        let field = |row: &str| usage(row).unwrap_err().field;
        assert_eq!(field("R1,S1,2026-10-05 10:00:00,voice,1,10,,"), "occurred_at");
        assert_eq!(field("R1,S1,2026-10-05T10:00:00+08:00,roaming,1,10,,"), "category");
        assert_eq!(field("R1,S1,2026-10-05T10:00:00+08:00,voice,-1,10,,"), "quantity");
        assert_eq!(field("R1,S1,2026-10-05T10:00:00+08:00,voice,1,-10,,"), "amount_fen");
        assert_eq!(field("R1,S1,2026-10-05T10:00:00+08:00,discount,0,10,,"), "amount_fen");
        assert_eq!(field("R1,S1,2026-10-05T10:00:00+08:00,vas,1,10,,"), "service_code");
        assert_eq!(field("R1,S1,2026-10-05T10:00:00+08:00,voice,1,10,SP1,"), "service_code");
        assert_eq!(field("R1,S1,2026-10-05T10:00:00+08:00,voice,1,1.5,,"), "amount_fen");
        assert_eq!(field("R1,S1,2026-10-05T10:00:00+08:00,other,1,10000000000,,"), "amount_fen");
        assert_eq!(field(",S1,2026-10-05T10:00:00+08:00,other,1,1,,"), "record_id");
        assert!(usage("R1,S1,2026-10-05T10:00:00+08:00,other,1,1000000000,,").is_ok(), "the limit itself is allowed");
        assert!(usage("R1,S1,2026-10-05T10:00:00+08:00,adjustment,0,-1000000000,,").is_ok());
        assert_eq!(field("R1,S1,2026-10-05T10:00:00+08:00,adjustment,0,-1000000001,,"), "amount_fen");
    }

    #[test]
    fn empty_optional_subscriber_fields_are_left_for_the_store_to_fill() {
        let row = parse(
            SUBSCRIBER_COLUMNS,
            "subscriber_id,msisdn,plan_id,language,billing_day,status,bill_sms",
            "S1,13800138000,P1,,,,",
            parse_subscriber,
        )
        .unwrap();
        assert_eq!((row.name, row.language, row.billing_day, row.status, row.bill_sms), (None, None, None, None, None));
        assert_eq!(row.msisdn.as_str(), "+8613800138000");
    }

    #[test]
    fn subscriber_rows_name_their_bad_field() {
        let field = |row: &str| {
            parse(
                SUBSCRIBER_COLUMNS,
                "subscriber_id,msisdn,plan_id,language,billing_day,status,bill_sms",
                row,
                parse_subscriber,
            )
            .unwrap_err()
            .field
        };
        assert_eq!(field("S1,12345,P1,zh,1,active,"), "msisdn");
        assert_eq!(field("S1,13800138000,P1,fr,1,active,"), "language");
        assert_eq!(field("S1,13800138000,P1,zh,29,active,"), "billing_day");
        assert_eq!(field("S1,13800138000,P1,zh,1,gone,"), "status");
        assert_eq!(field(",13800138000,P1,zh,1,active,"), "subscriber_id");
        assert_eq!(field("S1,13800138000,P1,zh,1,active,yes"), "bill_sms");
        assert_eq!(field(&format!("{},13800138000,P1,zh,1,active,", "x".repeat(65))), "subscriber_id");
    }

    #[test]
    fn spam_reports_are_normalised() {
        let header = "report_id,reporter_msisdn,reported_number,reported_at,kind,note";
        let row = parse(
            SPAM_REPORT_COLUMNS,
            header,
            "J1,13800138000,17012345699,2026-10-01T00:00:00+08:00,call,",
            parse_spam_report,
        )
        .unwrap();
        assert_eq!(row.reported_number, "+8617012345699");
        assert_eq!(row.reporter.as_str(), "+8613800138000");
        let field = |row: &str| parse(SPAM_REPORT_COLUMNS, header, row, parse_spam_report).unwrap_err().field;
        assert_eq!(field("J1,nope,17012345601,2026-10-02T10:00:00+08:00,call,"), "reporter_msisdn");
        assert_eq!(field("J1,13800138000,abc,2026-10-02T10:00:00+08:00,call,"), "reported_number");
        assert_eq!(field("J1,13800138000,17012345601,2026-10-02T10:00:00+08:00,fax,"), "kind");
    }

    #[test]
    fn invalid_utf8_is_a_rejected_field() {
        let headers: Vec<String> = PLAN_COLUMNS.0.iter().map(|s| s.to_string()).collect();
        let columns = Columns::map(&headers, PLAN_COLUMNS.0, PLAN_COLUMNS.1).unwrap();
        let record = ByteRecord::from(vec![&b"P1"[..], b"\xff\xfe", b"1", b"1", b"1", b"1"]);
        assert_eq!(parse_plan(&Fields::new(&record, &columns)).unwrap_err().field, "name");
    }
}
