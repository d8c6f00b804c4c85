//! Scheduling a month: build what is due, then hand every pending notification to the queue,
//! marking it queued once the broker has confirmed it; into the in-process queue, the build
//! writes its notifications queued and hands their ids over itself. A lease per month and
//! shard keeps concurrent schedulers (the daemon on several machines, or a repeated command)
//! from queuing the same notifications twice; a crash in between leaves them pending, and the
//! next scheduling queues them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc::Receiver;

use crate::billing::{BillBuilder, BuildMode, BuildReport, Handoff};
use crate::dispatch::Dispatcher;
use crate::domain::delivery::DeliveryStatus;
use crate::domain::period::BillingMonth;
use crate::domain::shard::Shard;
use crate::progress::Progress;
use crate::queue::Queue;
use crate::store::Store;

/// Takes or renews the lease `name` for `holder`; a lease left by a process of this machine
/// that no longer runs (killed mid-work) is taken over at once rather than after it expires.
pub(crate) async fn take_lease(store: &Store, name: &str, holder: &str, now: DateTime<Utc>) -> anyhow::Result<bool> {
    let until = now + chrono::Duration::from_std(LOCK_LEASE).expect("lease fits");
    Ok(store.acquire_lock(name, holder, now, until).await?
        || match store.lock_holder(name).await? {
            Some(other) if holder_is_dead(&other) => {
                tracing::warn!(lock = name, holder = %other, "taking over from a process that no longer runs");
                store.take_over_lock(name, &other, holder, until).await?
            }
            _ => false,
        })
}

/// Names a scheduler as `host/pid/unique`, so that a lease it leaves behind when killed can
/// be recognised as dead by the next scheduler on the same machine.
pub(crate) fn new_holder() -> String {
    format!("{}/{}/{}", this_host(), std::process::id(), uuid::Uuid::now_v7())
}

fn this_host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
}

/// True only when the holder ran on this machine and its process is gone; a holder elsewhere
/// (or on a system without /proc) is left to its lease.
fn holder_is_dead(holder: &str) -> bool {
    let mut parts = holder.splitn(3, '/');
    let (Some(host), Some(pid)) = (parts.next(), parts.next().and_then(|p| p.parse::<u32>().ok())) else {
        return false;
    };
    let here = this_host();
    !here.is_empty()
        && host == here
        && pid != std::process::id()
        && std::path::Path::new("/proc/self").exists()
        && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Notifications published, then marked queued, per round: fifty broker messages per round
/// of confirms, and a short write transaction for the mark.
const PUBLISH_ROUND: usize = 5_000;
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
    /// When this scheduler last took or renewed a lease.
    lease_renewed: Mutex<Instant>,
}

impl<'a> MonthScheduler<'a> {
    pub fn new(builder: BillBuilder<'a>, queue: &'a dyn Queue) -> Self {
        MonthScheduler { builder, queue, holder: new_holder(), lease_renewed: Mutex::new(Instant::now()) }
    }

    fn store(&self) -> &Store {
        self.builder.store
    }

    /// Takes or renews the lease `name`. A lease left by a scheduler process of this machine
    /// that no longer runs (killed mid-month) is taken over at once rather than after it
    /// expires, so a rerun after a crash carries on immediately.
    pub async fn lock(&self, name: &str, now: DateTime<Utc>) -> anyhow::Result<bool> {
        let taken = take_lease(self.store(), name, &self.holder, now).await?;
        if taken {
            *self.lease_renewed.lock().expect("never held across a panic") = Instant::now();
        }
        Ok(taken)
    }

    /// Renews the lease `name`, taken before, once a tenth of it has passed, and fails if
    /// another scheduler has it now. Renewing after every round of publishing cost a build on
    /// SQLite a wait for the write lock each time, tens of milliseconds behind the run's
    /// other writers.
    async fn keep_lease(&self, name: &str) -> anyhow::Result<()> {
        let due = self.lease_renewed.lock().expect("never held across a panic").elapsed() >= LOCK_LEASE / 10;
        if due {
            anyhow::ensure!(self.lock(name, self.builder.clock.now()).await?, "lost the scheduling lease for {name}");
        }
        Ok(())
    }

    pub async fn schedule(
        &self,
        month: BillingMonth,
        as_of: DateTime<Utc>,
        shard: Shard,
        progress: &dyn Progress,
    ) -> anyhow::Result<ScheduleReport> {
        let lock = format!("schedule {month} {shard}");
        if !self.lock(&lock, self.builder.clock.now()).await? {
            tracing::info!(%month, %shard, "another scheduler holds this month");
            return Ok(ScheduleReport { skipped: true, ..ScheduleReport::default() });
        }
        let result = async {
            // Pages are queued as soon as they are written, so the push starts with the first
            // page; a last round from the start queues whatever pending notifications that missed.
            let durable = self.queue.durable();
            let (pages, written_pages) = tokio::sync::mpsc::channel(1);
            let handoff = if durable { Handoff::Pending(pages) } else { Handoff::Queued(pages) };
            let born = if durable { DeliveryStatus::Pending } else { DeliveryStatus::Queued };
            let (build, queued_while_building) = tokio::join!(
                self.builder.build_month(month, as_of, shard, BuildMode::Keep, progress, Some(handoff)),
                self.publish_as_built(&lock, born, written_pages),
            );
            let build = build?;
            let queued = queued_while_building? + self.enqueue_pending(month, shard, &lock, &mut String::new()).await?;
            Ok(ScheduleReport { build, queued, skipped: false })
        }
        .await;
        self.store().release_lock(&lock, &self.holder).await?;
        result
    }

    fn dispatcher(&self) -> Dispatcher<'_> {
        Dispatcher { store: self.store(), queue: Some(self.queue), clock: self.builder.clock.as_ref() }
    }

    /// Publishes the ids of each page of notifications the build wrote, until the build is
    /// done; those `born` pending are marked queued once the broker has confirmed them.
    async fn publish_as_built(
        &self,
        lock: &str,
        born: DeliveryStatus,
        mut written_pages: Receiver<Vec<String>>,
    ) -> anyhow::Result<u64> {
        let mut queued = 0;
        let dispatcher = self.dispatcher();
        while let Some(ids) = written_pages.recv().await {
            match born {
                DeliveryStatus::Pending => dispatcher.publish_pending(&ids).await?,
                _ => dispatcher.publish_queued(&ids).await?,
            }
            queued += ids.len() as u64;
            self.keep_lease(lock).await?;
        }
        Ok(queued)
    }

    /// Publishes the month's pending notifications of `shard` with ids after `after`, marks
    /// them queued, and moves `after` past them.
    pub async fn enqueue_pending(
        &self,
        month: BillingMonth,
        shard: Shard,
        lock: &str,
        after: &mut String,
    ) -> anyhow::Result<u64> {
        let mut queued = 0u64;
        loop {
            let page = self.store().pending_page(month, after, PUBLISH_ROUND as i64).await?;
            let Some((last, _)) = page.last() else { break };
            *after = last.clone();
            let ids: Vec<String> =
                page.into_iter().filter(|(_, subscriber)| shard.contains(subscriber)).map(|(id, _)| id).collect();
            self.dispatcher().publish_pending(&ids).await?;
            queued += ids.len() as u64;
            self.keep_lease(lock).await?;
        }
        Ok(queued)
    }

    /// Publishes again what the queue may have lost: notifications queued before `cutoff` and
    /// untouched since, or sending under a lease that ran out before it. The database, not the
    /// broker, is the record of what is owed, so even a broker that lost its messages (a crash
    /// while a holding queue dead-lettered to the main queue) delays an SMS but never loses it.
    /// A copy that was not lost after all is harmless: the claim finds it handled.
    /// Only while the broker holds nothing waiting: a long backlog leaves notifications queued
    /// for hours without anything being lost.
    pub async fn requeue_stranded(&self, month: BillingMonth, cutoff: DateTime<Utc>) -> anyhow::Result<u64> {
        if self.queue.waiting().await.context("counting waiting messages")? > 0 {
            return Ok(0);
        }
        let mut after = String::new();
        let mut requeued = 0u64;
        loop {
            let page = self.store().stranded_page(month, cutoff, &after, PUBLISH_ROUND as i64).await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            self.dispatcher().republish(&page, cutoff).await?;
            requeued += page.len() as u64;
        }
        Ok(requeued)
    }
}
