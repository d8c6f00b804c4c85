//! Disputes of charges (不明扣费申诉, docs/contract.md §7a): which charges a dispute is about,
//! how it may end, and when it is overdue.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::money::Fen;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisputeStatus {
    Open,
    /// Some or all of the disputed sum paid back.
    Refunded,
    /// Not upheld; the resolution's note is the reason the subscriber is given.
    Rejected,
    /// The subscriber or the operator closed it without a decision.
    Withdrawn,
}

impl DisputeStatus {
    pub const ALL: [DisputeStatus; 4] =
        [DisputeStatus::Open, DisputeStatus::Refunded, DisputeStatus::Rejected, DisputeStatus::Withdrawn];

    pub const fn as_str(self) -> &'static str {
        match self {
            DisputeStatus::Open => "open",
            DisputeStatus::Refunded => "refunded",
            DisputeStatus::Rejected => "rejected",
            DisputeStatus::Withdrawn => "withdrawn",
        }
    }
}

impl fmt::Display for DisputeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DisputeStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DisputeStatus::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| format!("unknown dispute status {s:?}: open, refunded, rejected or withdrawn"))
    }
}

/// A charge a dispute is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputedCharge {
    pub record_id: String,
    pub amount: Fen,
}

/// The charges a dispute of a bill is about when nobody chose them: the bill's flagged charges,
/// or, when nothing is flagged, every record of the bill with a positive amount.
pub fn default_charges(flagged: Vec<DisputedCharge>, positive_records: Vec<DisputedCharge>) -> Vec<DisputedCharge> {
    if flagged.is_empty() {
        positive_records
    } else {
        flagged
    }
}

/// How an operator ends a dispute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub status: DisputeStatus,
    pub refunded: Fen,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolutionError {
    #[error("status: a dispute is resolved as refunded, rejected or withdrawn")]
    StillOpen,
    #[error("refunded_fen: {refunded} is more than the disputed {disputed}")]
    MoreThanDisputed { refunded: i64, disputed: i64 },
    #[error("refunded_fen: a refund is more than 0")]
    NothingRefunded,
    #[error("refunded_fen: only a refunded dispute refunds anything")]
    RefundWithoutRefunded,
    #[error("note: a rejection gives the subscriber its reason")]
    RejectedWithoutReason,
}

impl Resolution {
    /// Whether this may end a dispute of `disputed`: a refund is more than 0 and at most the
    /// disputed sum; only a refund refunds; a rejection says why.
    pub fn check(&self, disputed: Fen) -> Result<(), ResolutionError> {
        match self.status {
            DisputeStatus::Open => Err(ResolutionError::StillOpen),
            DisputeStatus::Refunded if self.refunded > disputed => {
                Err(ResolutionError::MoreThanDisputed { refunded: self.refunded.get(), disputed: disputed.get() })
            }
            DisputeStatus::Refunded if self.refunded <= Fen::ZERO => Err(ResolutionError::NothingRefunded),
            DisputeStatus::Refunded => Ok(()),
            _ if !self.refunded.is_zero() => Err(ResolutionError::RefundWithoutRefunded),
            DisputeStatus::Rejected if self.note.trim().is_empty() => Err(ResolutionError::RejectedWithoutReason),
            DisputeStatus::Rejected | DisputeStatus::Withdrawn => Ok(()),
        }
    }
}

/// An open dispute is overdue once it has been open longer than `sla` (`disputes.sla`).
pub fn is_overdue(status: DisputeStatus, opened_at: DateTime<Utc>, now: DateTime<Utc>, sla: chrono::Duration) -> bool {
    status == DisputeStatus::Open && now - opened_at > sla
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolution(status: DisputeStatus, refunded: i64, note: &str) -> Resolution {
        Resolution { status, refunded: Fen::new(refunded), note: note.into() }
    }

    #[test]
    fn a_refund_is_more_than_nothing_and_at_most_the_disputed_sum() {
        let disputed = Fen::new(600);
        assert_eq!(resolution(DisputeStatus::Refunded, 600, "").check(disputed), Ok(()));
        assert_eq!(resolution(DisputeStatus::Refunded, 1, "").check(disputed), Ok(()));
        assert_eq!(
            resolution(DisputeStatus::Refunded, 601, "").check(disputed),
            Err(ResolutionError::MoreThanDisputed { refunded: 601, disputed: 600 })
        );
        assert_eq!(resolution(DisputeStatus::Refunded, 0, "").check(disputed), Err(ResolutionError::NothingRefunded));
        assert_eq!(resolution(DisputeStatus::Refunded, -5, "").check(disputed), Err(ResolutionError::NothingRefunded));
    }

    #[test]
    fn only_a_refund_refunds_and_a_rejection_says_why() {
        let disputed = Fen::new(600);
        assert_eq!(
            resolution(DisputeStatus::Withdrawn, 100, "").check(disputed),
            Err(ResolutionError::RefundWithoutRefunded)
        );
        assert_eq!(
            resolution(DisputeStatus::Rejected, 0, "  ").check(disputed),
            Err(ResolutionError::RejectedWithoutReason)
        );
        assert_eq!(resolution(DisputeStatus::Rejected, 0, "ordered on 10-02").check(disputed), Ok(()));
        assert_eq!(resolution(DisputeStatus::Withdrawn, 0, "").check(disputed), Ok(()));
        assert_eq!(resolution(DisputeStatus::Open, 0, "").check(disputed), Err(ResolutionError::StillOpen));
    }

    #[test]
    fn flagged_charges_are_disputed_before_the_whole_bill() {
        let charge = |id: &str, fen| DisputedCharge { record_id: id.into(), amount: Fen::new(fen) };
        assert_eq!(
            default_charges(vec![charge("f", 300)], vec![charge("a", 5800), charge("f", 300)]),
            [charge("f", 300)]
        );
        assert_eq!(default_charges(vec![], vec![charge("a", 5800)]), [charge("a", 5800)]);
    }

    #[test]
    fn only_an_open_dispute_past_its_sla_is_overdue() {
        let opened = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let sla = chrono::Duration::days(15);
        assert!(!is_overdue(DisputeStatus::Open, opened, opened + sla, sla));
        assert!(is_overdue(DisputeStatus::Open, opened, opened + sla + chrono::Duration::seconds(1), sla));
        assert!(!is_overdue(DisputeStatus::Refunded, opened, opened + sla * 2, sla));
    }
}
