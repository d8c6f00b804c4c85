//! Scheduling a month: build what is due, then hand every pending notification to the queue,
//! marking it queued once the broker has confirmed it. A lease per month and shard keeps
//! concurrent schedulers (the daemon on several machines, or a repeated command) from
//! queuing the same notifications twice; a crash in between leaves them pending, and the
//! next scheduling queues them.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use indicatif::ProgressBar;

use crate::billing::{BillBuilder, BuildReport};
use crate::domain::period::BillingMonth;
use crate::domain::shard::Shard;
use crate::queue::{Queue, QueueMessage, BATCH};
use crate::store::notifications::mark_queued;
use crate::store::Store;

/// Queue messages published per round of confirms.
const PUBLISH_WINDOW: usize = 50;
/// How long a scheduler's claim on a month lasts without renewal.
const LOCK_LEASE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Default)]
pub struct ScheduleReport {
    pub build: BuildReport,
    pub queued: u64,
    /// Another scheduler held the month: nothing was done.
    pub skipped: bool,
}

pub struct MonthScheduler<'a> {
    pub builder: BillBuilder<'a>,
    pub queue: &'a dyn Queue,
    pub holder: String,
}

impl MonthScheduler<'_> {
    fn store(&self) -> &Store {
        self.builder.store
    }

    async fn lock(&self, name: &str, now: DateTime<Utc>) -> anyhow::Result<bool> {
        let until = now + chrono::Duration::from_std(LOCK_LEASE).expect("lease fits");
        Ok(self.store().acquire_lock(name, &self.holder, now, until).await?)
    }

    pub async fn schedule(
        &self,
        month: BillingMonth,
        as_of: DateTime<Utc>,
        shard: Shard,
        progress: &ProgressBar,
    ) -> anyhow::Result<ScheduleReport> {
        let lock = format!("schedule {month} {shard}");
        if !self.lock(&lock, Utc::now()).await? {
            tracing::info!(%month, %shard, "another scheduler holds this month");
            return Ok(ScheduleReport { skipped: true, ..ScheduleReport::default() });
        }
        let result = async {
            let build = self.builder.build_month(month, as_of, shard, false, progress).await?;
            let queued = self.enqueue_pending(month, shard, &lock).await?;
            Ok(ScheduleReport { build, queued, skipped: false })
        }
        .await;
        self.store().release_lock(&lock, &self.holder).await?;
        result
    }

    /// Publishes the month's pending notifications of `shard` and marks them queued.
    pub async fn enqueue_pending(&self, month: BillingMonth, shard: Shard, lock: &str) -> anyhow::Result<u64> {
        let mut after = String::new();
        let mut queued = 0u64;
        loop {
            let page = self.store().pending_page(month, &after, (BATCH * PUBLISH_WINDOW) as i64).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            let ids: Vec<String> =
                page.into_iter().filter(|(_, subscriber)| shard.contains(subscriber)).map(|(id, _)| id).collect();
            let messages: Vec<QueueMessage> =
                ids.chunks(BATCH).map(|c| QueueMessage { notification_ids: c.to_vec() }).collect();
            self.queue.publish(&messages).await.context("publishing to the queue")?;
            let mut tx = self.store().begin().await?;
            mark_queued(&mut tx, &ids, Utc::now()).await?;
            tx.commit().await?;
            queued += ids.len() as u64;
            anyhow::ensure!(self.lock(lock, Utc::now()).await?, "lost the scheduling lease for {lock}");
        }
        Ok(queued)
    }
}
