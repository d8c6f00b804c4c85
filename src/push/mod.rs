//! The push worker: takes deliveries off the queue, claims their notifications in the
//! database, hands them to the gateway, records each outcome, and only then acks.

use std::sync::Arc;

use indicatif::ProgressBar;

use crate::clock::Clock;
use crate::domain::msisdn::Msisdn;
use crate::domain::quiet_hours::QuietHours;
use crate::gateway::{Gateway, OutboundSms};
use crate::queue::Queue;
use crate::store::notifications::{claim_for_sending, mark_accepted, mark_failed};
use crate::store::Store;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushCounts {
    pub accepted: u64,
    pub failed: u64,
    /// Ids whose notification was already claimed: a redelivery, pushed by nobody again.
    pub already_handled: u64,
}

pub struct Pusher {
    pub store: Store,
    pub gateway: Arc<dyn Gateway>,
    pub clock: Arc<dyn Clock>,
    pub quiet_hours: QuietHours,
    pub sender: String,
}

impl Pusher {
    /// Consumes until the queue is closed and drained.
    pub async fn drain(&self, queue: &dyn Queue, progress: &ProgressBar) -> anyhow::Result<PushCounts> {
        let mut counts = PushCounts::default();
        while let Some(delivery) = queue.next().await? {
            self.wait_out_quiet_hours().await;
            let batch = self.push_batch(&delivery.notification_ids).await?;
            delivery.ack().await?;
            counts.accepted += batch.accepted;
            counts.failed += batch.failed;
            counts.already_handled += batch.already_handled;
            progress.inc(batch.accepted + batch.failed);
        }
        Ok(counts)
    }

    async fn wait_out_quiet_hours(&self) {
        if let Some(resume) = self.quiet_hours.resumes_at(self.clock.now()) {
            tracing::info!(%resume, "quiet hours: messages wait until they end");
            self.clock.sleep_until(resume).await;
        }
    }

    pub async fn push_batch(&self, ids: &[String]) -> anyhow::Result<PushCounts> {
        let mut tx = self.store.begin().await?;
        let claimed = claim_for_sending(&mut tx, ids, self.clock.now()).await?;
        tx.commit().await?;
        let mut counts = PushCounts { already_handled: (ids.len() - claimed.len()) as u64, ..PushCounts::default() };
        if claimed.is_empty() {
            return Ok(counts);
        }
        let messages: Vec<OutboundSms> = claimed
            .iter()
            .map(|n| OutboundSms {
                id: &n.id,
                to: &n.msisdn,
                from: &self.sender,
                text: &n.text,
                encoding: &n.encoding,
                segments: n.segments,
            })
            .collect();
        let results = self.gateway.send_batch(&messages).await;
        let now = self.clock.now();
        let mut tx = self.store.begin().await?;
        for (notification, result) in claimed.iter().zip(results) {
            match result {
                Ok(message_id) => {
                    mark_accepted(&mut tx, &notification.id, &message_id, now).await?;
                    counts.accepted += 1;
                }
                Err(error) => {
                    let to = Msisdn::from_stored(notification.msisdn.clone()).masked();
                    tracing::warn!(notification = %notification.id, %to, %error, "gateway refused a message");
                    mark_failed(&mut tx, &notification.id, &error.to_string(), now).await?;
                    counts.failed += 1;
                }
            }
        }
        tx.commit().await?;
        Ok(counts)
    }
}
