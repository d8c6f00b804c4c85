//! Delivery statuses of a notification (docs/contract.md §6) and the kinds of notification.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeliveryStatus {
    /// Written, not yet handed to the queue.
    Pending,
    Queued,
    Sending,
    Accepted,
    Delivered,
    Undeliverable,
    /// Accepted, but no receipt came within the receipt timeout, or the gateway's answer was lost.
    Unknown,
    Failed,
    /// The subscriber opted out of the bill SMS.
    Suppressed,
    /// No valid number to send to.
    Skipped,
    /// A usage alert not sent within `alerts.max_age`, or overtaken by a higher one: never sent.
    Expired,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 11] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Queued,
        DeliveryStatus::Sending,
        DeliveryStatus::Accepted,
        DeliveryStatus::Delivered,
        DeliveryStatus::Undeliverable,
        DeliveryStatus::Unknown,
        DeliveryStatus::Failed,
        DeliveryStatus::Suppressed,
        DeliveryStatus::Skipped,
        DeliveryStatus::Expired,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Accepted => "accepted",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Undeliverable => "undeliverable",
            DeliveryStatus::Unknown => "unknown",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Suppressed => "suppressed",
            DeliveryStatus::Skipped => "skipped",
            DeliveryStatus::Expired => "expired",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeliveryStatus::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| format!("unknown delivery status {s:?}"))
    }
}

/// How far ahead of billpush's clock a gateway's clock may run.
pub const GATEWAY_CLOCK_AHEAD: chrono::Duration = chrono::Duration::days(1);
/// How much earlier than billpush recorded the gateway's acceptance a receipt may be dated:
/// a gateway stamping the time it received the message, or a clock a little behind.
pub const RECEIPT_BEFORE_ACCEPT: chrono::Duration = chrono::Duration::minutes(5);

/// A time a gateway reports (a reply received, a message delivered) is plausible: not before
/// 2000 and not more than `GATEWAY_CLOCK_AHEAD` after `now`. Anything else is a broken or
/// forged report, refused before it changes anything.
pub fn check_reported_time(at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), String> {
    let earliest = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single().expect("a valid date");
    if at < earliest {
        return Err(format!("{} is before 2000", at.to_rfc3339()));
    }
    if at > now + GATEWAY_CLOCK_AHEAD {
        return Err(format!("{} is more than a day ahead of this server's clock", at.to_rfc3339()));
    }
    Ok(())
}

/// Why a notification was written `failed` without being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSentReason {
    /// Longer than `sms.max_segments` even in its shortest form; never cut mid-character.
    TooLong,
}

impl NotSentReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            NotSentReason::TooLong => "too_long",
        }
    }
}

/// Whether a gateway honours idempotency keys, which decides whether a message whose fate is
/// unknown (the request left, no answer came) may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    /// A resend carries the same key and is answered "already accepted".
    Honoured,
    /// A resend could reach the subscriber twice: such a message becomes `unknown` instead.
    NotHonoured,
}

/// The monthly bill SMS; one per subscriber and month.
pub const BILL_KIND: &str = "bill";
/// The short warning an opted-out subscriber gets when the month's bill has flagged charges
/// or a spike; one per subscriber and month.
pub const FLAG_NOTICE_KIND: &str = "flag_notice";
/// A dispute opened or resolved; one per dispute and status, in the disputed bill's month.
pub const DISPUTE_KIND: &str = "dispute";
/// A usage alert (docs/contract.md §12); its subject is `metric:threshold`.
pub const USAGE_ALERT_KIND: &str = "usage_alert";

/// The kind and subject of a notification as the one column of the unique
/// (subscriber, month, kind) key holds them: `kind` alone when the subject is empty (the bill,
/// the flag notice), else `kind:subject`. Kinds hold no `:`, so the pair is recovered exactly
/// and the key is unique per (subscriber, month, kind, subject).
pub fn stored_kind(kind: &str, subject: &str) -> String {
    debug_assert!(!kind.contains(':'), "a kind holds no ':'");
    if subject.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}:{subject}")
    }
}

/// The kind and the subject of a stored kind (`stored_kind`).
pub fn split_kind(stored: &str) -> (&str, &str) {
    stored.split_once(':').unwrap_or((stored, ""))
}

/// What a receipt's final state word sets: SMPP's `stat:` and Jasmin's `message_status` use the
/// same words. `ENROUTE`, `ACCEPTD`, `UNKNOWN` and anything else settle nothing.
pub fn receipt_status(word: &str) -> Option<DeliveryStatus> {
    match word {
        "DELIVRD" => Some(DeliveryStatus::Delivered),
        "UNDELIV" | "REJECTD" | "EXPIRED" | "DELETED" => Some(DeliveryStatus::Undeliverable),
        _ => None,
    }
}

/// The `id:` and `stat:` of a delivery receipt's text (SMPP 3.4 appendix B:
/// `id:IIII sub:SSS dlvrd:DDD submit date:… done date:… stat:DDDDDDD err:E text:…`). Keys are
/// matched case-insensitively, as SMSCs write them either way; `None` when there is no `id:`.
pub fn parse_receipt_text(text: &str) -> Option<(&str, Option<&str>)> {
    let value = |key: &str| {
        text.split(' ')
            .find(|word| word.get(..key.len()).is_some_and(|head| head.eq_ignore_ascii_case(key)))
            .map(|word| &word[key.len()..])
            .filter(|value| !value.is_empty())
    };
    Some((value("id:")?, value("stat:")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_text_gives_id_and_state_in_either_case() {
        let text = "id:1a2b sub:001 dlvrd:001 submit date:2610010000 done date:2610010001 stat:DELIVRD err:000 text:";
        assert_eq!(parse_receipt_text(text), Some(("1a2b", Some("DELIVRD"))));
        assert_eq!(parse_receipt_text("ID:77 STAT:undeliv"), Some(("77", Some("undeliv"))));
        assert_eq!(parse_receipt_text("stat:DELIVRD"), None);
        assert_eq!(parse_receipt_text("id: stat:DELIVRD"), None);
        assert_eq!(parse_receipt_text("账单 id:9"), Some(("9", None)));
        assert_eq!(receipt_status("DELIVRD"), Some(DeliveryStatus::Delivered));
        assert_eq!(receipt_status("EXPIRED"), Some(DeliveryStatus::Undeliverable));
        assert_eq!(receipt_status("ENROUTE"), None);
    }

    #[test]
    fn reported_times_before_2000_or_a_day_ahead_are_refused() {
        let now = Utc.with_ymd_and_hms(2026, 11, 2, 2, 0, 0).unwrap();
        let parse = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert!(check_reported_time(parse("0000-01-01T00:00:00Z"), now).is_err());
        assert!(check_reported_time(parse("9999-12-31T23:00:00-10:00"), now).is_err());
        assert!(check_reported_time(parse("1999-12-31T23:59:59Z"), now).is_err());
        assert!(check_reported_time(parse("2026-11-03T02:00:01Z"), now).is_err());
        assert!(check_reported_time(parse("2026-11-03T02:00:00Z"), now).is_ok());
        assert!(check_reported_time(parse("2000-01-01T00:00:00Z"), now).is_ok());
    }

    #[test]
    fn kind_and_subject_come_back_as_they_were_stored() {
        for (kind, subject) in [("bill", ""), ("details", "0190-ab"), ("dispute", "12:refunded")] {
            assert_eq!(split_kind(&stored_kind(kind, subject)), (kind, subject));
        }
        assert_eq!(stored_kind("bill", ""), "bill", "the bill's key is what it always was");
    }

    #[test]
    fn every_status_round_trips_through_its_name() {
        for status in DeliveryStatus::ALL {
            assert_eq!(status.as_str().parse::<DeliveryStatus>(), Ok(status));
        }
    }
}
