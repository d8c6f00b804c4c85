//! Delivery statuses of a notification (docs/contract.md §6) and the kinds of notification.

use std::fmt;
use std::str::FromStr;

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
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 10] = [
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_name() {
        for status in DeliveryStatus::ALL {
            assert_eq!(status.as_str().parse::<DeliveryStatus>(), Ok(status));
        }
    }
}
