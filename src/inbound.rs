//! What gateways hand back: delivery receipts and subscribers' replies. The API takes them over
//! HTTP (`/api/v1/dlr`, `/api/v1/mo`); an SMPP bind takes them as `deliver_sm`, recorded here
//! the same way and only then answered, so that the SMSC keeps what could not be recorded.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::domain::delivery::DeliveryStatus;
use crate::domain::msisdn::Msisdn;
use crate::gateway::smpp::{Answer, Inbound};
use crate::queue::Queue;
use crate::render::Renderer;
use crate::replies::{InboundReply, Replies, ReplyError};
use crate::store::notifications::{record_receipt, ReceiptOutcome, ReceiptTime};
use crate::store::{Store, StoreResult};

/// A receipt can overtake the worker recording the acceptance it settles; it is tried again
/// after 0.5 s, then twice as long each time, up to `UNKNOWN_TRIES` tries (about two minutes),
/// before it is taken as one for a message nobody here sent.
const UNKNOWN_RETRY_FIRST: Duration = Duration::from_millis(500);
const UNKNOWN_TRIES: u32 = 8;

/// Records one delivery receipt in its own transaction and counts it.
pub async fn record(
    store: &Store,
    message_id: &str,
    status: DeliveryStatus,
    at: DateTime<Utc>,
    dated: ReceiptTime,
) -> StoreResult<ReceiptOutcome> {
    let mut tx = store.begin().await?;
    let outcome = record_receipt(&mut tx, message_id, status, at, dated).await?;
    tx.commit().await?;
    if let ReceiptOutcome::Recorded(_) = outcome {
        metrics::counter!("billpush_receipts_total", "status" => status.as_str()).increment(1);
    }
    Ok(outcome)
}

/// Everything the replies service needs, owned, so the recorder runs beside the push.
pub struct Recorder {
    pub store: Store,
    pub renderer: Arc<Renderer>,
    pub clock: Arc<dyn Clock>,
    pub settings: crate::config::Settings,
    /// Where answers to replies go (the broker, or `serve`'s own push); `None` leaves them for
    /// the month's next run.
    pub queue: Option<Arc<dyn Queue>>,
}

/// A receipt waiting for its message's acceptance to be recorded.
struct Early {
    message_id: String,
    status: DeliveryStatus,
    at: DateTime<Utc>,
    answer: Answer,
    tries: u32,
    next: tokio::time::Instant,
}

impl Recorder {
    /// Records until the gateway closes the channel, then gives the receipts still waiting one
    /// last try.
    pub async fn run(self, mut inbound: mpsc::UnboundedReceiver<Inbound>) {
        let mut early: Vec<Early> = Vec::new();
        let mut retry = tokio::time::interval(UNKNOWN_RETRY_FIRST);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                item = inbound.recv() => match item {
                    Some(Inbound::Receipt { message_id, status, answer }) => {
                        let at = self.clock.now();
                        let next = tokio::time::Instant::now();
                        if let Some(waiting) = self.receipt(Early { message_id, status, at, answer, tries: 0, next }).await {
                            early.push(waiting);
                        }
                    }
                    Some(Inbound::Reply { from, to, text, answer }) => self.reply(&from, &to, &text, answer).await,
                    None => break,
                },
                _ = retry.tick(), if !early.is_empty() => {
                    let now = tokio::time::Instant::now();
                    let mut still = Vec::new();
                    for waiting in early.drain(..) {
                        if waiting.next > now {
                            still.push(waiting);
                        } else if let Some(waiting) = self.receipt(waiting).await {
                            still.push(waiting);
                        }
                    }
                    early = still;
                }
            }
        }
        for waiting in early {
            if let Some(waiting) = self.receipt(waiting).await {
                // Past its time here: the SMSC is asked to deliver it again later.
                waiting.answer.later().await;
            }
        }
    }

    /// Records a receipt and answers it; gives it back while its message is not known yet.
    async fn receipt(&self, mut waiting: Early) -> Option<Early> {
        // SMPP receipts date the delivery in the SMSC's own timezone, unnamed: dated on arrival.
        match record(&self.store, &waiting.message_id, waiting.status, waiting.at, ReceiptTime::OnArrival).await {
            Ok(ReceiptOutcome::UnknownMessage) if waiting.tries < UNKNOWN_TRIES => {
                waiting.next = tokio::time::Instant::now() + UNKNOWN_RETRY_FIRST * 2u32.pow(waiting.tries);
                waiting.tries += 1;
                Some(waiting)
            }
            Ok(ReceiptOutcome::UnknownMessage) => {
                tracing::warn!(message_id = waiting.message_id, "receipt for a message id nobody sent; dropped");
                waiting.answer.ok().await;
                None
            }
            Ok(_) => {
                waiting.answer.ok().await;
                None
            }
            Err(error) => {
                tracing::error!(%error, "could not record a receipt; the SMSC delivers it again");
                waiting.answer.later().await;
                None
            }
        }
    }

    async fn reply(&self, from: &str, to: &str, text: &str, answer: Answer) {
        let Ok(from) = Msisdn::parse(from) else {
            tracing::warn!("reply from something that is not a phone number; dropped");
            return answer.ok().await;
        };
        let replies =
            Replies::new(&self.store, &self.renderer, self.clock.as_ref(), &self.settings, self.queue.as_deref());
        let reply = InboundReply { from: &from, to, text, received_at: self.clock.now(), via: "smpp" };
        match replies.handle(&reply).await {
            Ok(_) => answer.ok().await,
            Err(ReplyError::UnknownSender) => {
                tracing::info!(from = %from.masked(), "reply from a number that is no subscriber's");
                answer.ok().await;
            }
            Err(ReplyError::Implausible(problem)) => {
                tracing::warn!(problem, "reply not recorded");
                answer.ok().await;
            }
            Err(error) => {
                tracing::error!(%error, "could not record a reply; the SMSC delivers it again");
                answer.later().await;
            }
        }
    }
}
