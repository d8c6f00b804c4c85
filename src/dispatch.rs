//! The one way a notification reaches the queue: it exists in the database first (written
//! `pending`), is published, and is marked `queued` only once the queue holds it. A crash
//! between any two steps leaves it `pending` (or `queued` with a copy in the queue), and the
//! next scheduling publishes it; the claim makes a second copy harmless.

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::domain::delivery::{stored_kind, DeliveryStatus, NotSentReason};
use crate::domain::msisdn::Msisdn;
use crate::queue::{Queue, QueueError};
use crate::render::RenderedSms;
use crate::store::notifications::{insert_notification, mark_queued, mark_requeued, NotificationToWrite};
use crate::store::partitions::Partitioned;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("publishing to the queue: {0}")]
    Queue(#[from] QueueError),
}

/// A notification of `kind` about `subject` (docs/contract.md §6.1) from its rendered text:
/// `pending`, or `failed` as `too_long` when even its shortest form does not fit.
pub fn notification_of(kind: &str, subject: &str, rendered: RenderedSms) -> NotificationToWrite {
    let (status, reason, segments, encoding, text) = match rendered {
        RenderedSms::Fits { text, encoding, segments } => {
            (DeliveryStatus::Pending, None, segments, Some(encoding), text)
        }
        RenderedSms::TooLong { segments } => {
            (DeliveryStatus::Failed, Some(NotSentReason::TooLong), segments, None, String::new())
        }
    };
    NotificationToWrite {
        id: uuid::Uuid::now_v7().to_string(),
        kind: stored_kind(kind, subject),
        status,
        reason,
        segments: segments as i64,
        encoding,
        text,
    }
}

/// A notification written outside a month's build: a reply's answer, a dispute's message.
pub struct NewNotification<'a> {
    pub subscriber_id: &'a str,
    pub month: &'a str,
    pub to: &'a Msisdn,
    pub notification: &'a NotificationToWrite,
}

pub struct Dispatcher<'a> {
    pub store: &'a Store,
    /// `None` with the in-process queue of another process: what is written stays `pending`
    /// for the month's next `run` to push.
    pub queue: Option<&'a dyn Queue>,
    pub clock: &'a dyn Clock,
}

impl Dispatcher<'_> {
    /// Writes `new` as given (`pending` unless it was refused before sending, e.g. too long)
    /// and, when it is pending and there is a queue, publishes it and marks it queued. Once
    /// written it is owed: a publish that fails leaves it `pending` for the scheduler daemon,
    /// which publishes the pending notifications of the current month too, and is not an error
    /// of the caller's.
    pub async fn dispatch(&self, new: NewNotification<'_>) -> Result<(), DispatchError> {
        let now = self.clock.now();
        if let Ok(month) = new.month.parse() {
            self.store.ensure_partitions(&Partitioned::DELIVERIES, [month]).await?;
        }
        let mut tx = self.store.begin().await?;
        insert_notification(&mut tx, new.subscriber_id, new.month, new.to, new.notification, now).await?;
        tx.commit().await.map_err(StoreError::from)?;
        if new.notification.status == DeliveryStatus::Pending {
            if let Err(error) = self.publish_pending(std::slice::from_ref(&new.notification.id)).await {
                tracing::warn!(notification = %new.notification.id, %error, "written, not yet queued: the scheduler will");
            }
        }
        Ok(())
    }

    /// Publishes pending notifications and marks them queued once the queue has confirmed them.
    pub async fn publish_pending(&self, ids: &[String]) -> Result<(), DispatchError> {
        let Some(queue) = self.queue else { return Ok(()) };
        if ids.is_empty() {
            return Ok(());
        }
        queue.publish(&queue.messages(ids)).await?;
        let mut tx = self.store.begin().await?;
        mark_queued(&mut tx, ids, self.clock.now()).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }

    /// Publishes notifications already written `queued` (a queue that does not outlive the
    /// process: nothing a restart keeps is proven by its confirm).
    pub async fn publish_queued(&self, ids: &[String]) -> Result<(), DispatchError> {
        if let Some(queue) = self.queue {
            queue.publish(&queue.messages(ids)).await?;
        }
        Ok(())
    }

    /// Publishes again notifications whose queue message may be lost (`page` holds each id
    /// with its status); those still `queued` and untouched since `cutoff` get a new `queued`
    /// step, unless a worker took them meanwhile.
    pub async fn republish(
        &self,
        page: &[(String, DeliveryStatus)],
        cutoff: DateTime<Utc>,
    ) -> Result<(), DispatchError> {
        let Some(queue) = self.queue else { return Ok(()) };
        let ids: Vec<String> = page.iter().map(|(id, _)| id.clone()).collect();
        queue.publish(&queue.messages(&ids)).await?;
        let queued: Vec<String> =
            page.iter().filter(|(_, status)| *status == DeliveryStatus::Queued).map(|(id, _)| id.clone()).collect();
        let mut tx = self.store.begin().await?;
        mark_requeued(&mut tx, &queued, self.clock.now(), cutoff).await?;
        tx.commit().await.map_err(StoreError::from)?;
        Ok(())
    }
}
