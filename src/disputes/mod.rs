//! Disputes of charges (docs/contract.md §7a): opened by a subscriber's `SS` or by an operator,
//! resolved by an operator, and each change told to the subscriber by SMS (kind `dispute`,
//! subject `<id>:<status>`), through the same queue and rate limit as bills.

use crate::clock::Clock;
use crate::dispatch::{notification_of, DispatchError, Dispatcher, NewNotification};
use crate::domain::delivery::DISPUTE_KIND;
use crate::domain::dispute::{default_charges, is_overdue, DisputedCharge, Resolution};
use crate::domain::msisdn::Msisdn;
use crate::domain::period::BillingMonth;
use crate::queue::Queue;
use crate::render::{DisputeFacts, Renderer};
use crate::store::disputes::{Dispute, NewDispute, Opened, Resolved};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DisputeError {
    #[error("no bill for this subscriber and month")]
    NoBill,
    #[error("record_ids: {0} is not a charge of this bill")]
    NotACharge(String),
    #[error("the bill has no charge to dispute")]
    NothingToDispute,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
}

/// What a dispute is to be opened about, and by whom.
pub struct DisputeRequest<'a> {
    pub subscriber_id: &'a str,
    pub month: BillingMonth,
    /// The records disputed; `None` for the charges `SS` chooses.
    pub record_ids: Option<&'a [String]>,
    pub note: &'a str,
    /// `reply <id>` for an `SS`, else the operator's token name.
    pub actor: &'a str,
}

pub struct Disputes<'a> {
    pub store: &'a Store,
    pub renderer: &'a Renderer,
    pub clock: &'a dyn Clock,
    /// As for answers to replies: `None` leaves the message `pending` for the next push.
    pub queue: Option<&'a dyn Queue>,
    /// `disputes.sla`.
    pub sla: chrono::Duration,
}

impl Disputes<'_> {
    /// Opens a dispute of the subscriber's bill for the month and tells the subscriber its case
    /// number, unless one of that bill is open already: that one is returned, and nothing sent.
    pub async fn open(&self, request: &DisputeRequest<'_>) -> Result<Opened, DisputeError> {
        let bill = self.store.bill_charges(request.subscriber_id, request.month).await?.ok_or(DisputeError::NoBill)?;
        let charges = match request.record_ids {
            None => default_charges(bill.flagged, bill.positive),
            Some(ids) => chosen_charges(ids, &bill.positive)?,
        };
        if charges.is_empty() {
            return Err(DisputeError::NothingToDispute);
        }
        let opened = self
            .store
            .open_dispute(&NewDispute {
                subscriber_id: request.subscriber_id,
                msisdn: &bill.msisdn,
                month: request.month,
                charges: &charges,
                actor: request.actor,
                note: request.note,
                at: self.clock.now(),
            })
            .await?;
        if let Opened::New(dispute) = &opened {
            self.tell(dispute, request.note).await?;
        }
        Ok(opened)
    }

    /// Resolves an open dispute and tells the subscriber the outcome.
    pub async fn resolve(&self, id: i64, resolution: &Resolution, actor: &str) -> Result<Resolved, DisputeError> {
        let resolved = self.store.resolve_dispute(id, resolution, actor, self.clock.now()).await?;
        if let Resolved::Now(dispute) = &resolved {
            self.tell(dispute, &resolution.note).await?;
        }
        Ok(resolved)
    }

    pub fn is_overdue(&self, dispute: &Dispute) -> bool {
        is_overdue(dispute.status, dispute.opened_at, self.clock.now(), self.sla)
    }

    /// Writes and queues the SMS of the dispute's current status, once per (dispute, status).
    async fn tell(&self, dispute: &Dispute, note: &str) -> Result<(), DisputeError> {
        let Some((msisdn, language)) = self.store.subscriber_contact(&dispute.subscriber_id).await? else {
            return Ok(());
        };
        let Ok(to) = Msisdn::parse(&msisdn) else {
            tracing::warn!(dispute = dispute.id, "the subscriber has no number to tell the dispute's outcome to");
            return Ok(());
        };
        let month: BillingMonth = dispute
            .month
            .parse()
            .map_err(|_| StoreError::Corrupt { column: "disputes.month", value: dispute.month.clone() })?;
        let Some(bill) = self.store.bill_charges(&dispute.subscriber_id, month).await? else { return Ok(()) };
        let rendered = self.renderer.render_dispute(&DisputeFacts {
            msisdn: &to,
            language,
            case: dispute.id,
            period: bill.period,
            status: dispute.status,
            disputed: dispute.disputed,
            refunded: dispute.refunded,
            note,
            sla: self.sla,
        });
        let subject = format!("{}:{}", dispute.id, dispute.status);
        let notification = notification_of(DISPUTE_KIND, &subject, rendered);
        let dispatcher = Dispatcher { store: self.store, queue: self.queue, clock: self.clock };
        dispatcher
            .dispatch(NewNotification {
                subscriber_id: &dispute.subscriber_id,
                month: &dispute.month,
                to: &to,
                notification: &notification,
            })
            .await?;
        Ok(())
    }
}

/// The records an operator chose, each of which must be a charge (a positive amount) of the bill.
fn chosen_charges(ids: &[String], charges: &[DisputedCharge]) -> Result<Vec<DisputedCharge>, DisputeError> {
    let mut chosen: Vec<DisputedCharge> = Vec::with_capacity(ids.len());
    for id in ids {
        if chosen.iter().any(|c| &c.record_id == id) {
            continue;
        }
        let charge = charges.iter().find(|c| &c.record_id == id).ok_or_else(|| DisputeError::NotACharge(id.clone()))?;
        chosen.push(charge.clone());
    }
    Ok(chosen)
}
