//! The application: everything built from the configuration, the one way the program starts,
//! in `main` and in tests alike.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use crate::billing::{BillBuilder, BuildReport};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::domain::period::BillingMonth;
use crate::export::{ExportFormat, ExportKind};
use crate::gateway::SinkGateway;
use crate::import::{import_file, ImportError, ImportKind};
use crate::push::{PushCounts, Pusher};
use crate::queue::{MemoryQueue, Queue};
use crate::render::Renderer;
use crate::store::{ImportCounts, MonthStatus, Store};

/// Notification ids per queue message.
const QUEUE_BATCH: usize = 100;

pub struct App {
    pub settings: Settings,
    pub store: Store,
    pub renderer: Renderer,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub build: BuildReport,
    pub queued: u64,
    pub push: PushCounts,
}

fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len).with_message(what.to_string());
    bar.set_style(ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} {elapsed}").expect("valid template"));
    bar
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Checks the templates before touching the database, so a broken template stops the
    /// program before anything is written or queued.
    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let config = &settings.config;
        let renderer = Renderer::load(
            &config.sms.templates,
            &config.operator.name,
            &config.operator.hotline,
            settings.timezone,
            settings.max_segments,
        )?;
        let store = Store::connect(&config.database.url).await.context("cannot open the database (database.url)")?;
        Ok(App { settings, store, renderer, clock })
    }

    pub async fn import(&self, kind: ImportKind, path: &Path, strict: bool) -> Result<ImportCounts, ImportError> {
        import_file(&self.store, kind, path, strict).await
    }

    /// Builds what is due, queues it and pushes it on this machine until the queue is drained.
    /// Also re-queues the month's notifications that an interrupted run left unsent.
    pub async fn run(
        &self,
        month: BillingMonth,
        as_of: Option<DateTime<Utc>>,
        dry_run: bool,
    ) -> anyhow::Result<RunReport> {
        let as_of = as_of.unwrap_or_else(|| self.clock.now());
        let builder = BillBuilder { store: &self.store, renderer: &self.renderer, settings: &self.settings };
        let building = progress_bar(0, &format!("build {month}"));
        let build = builder.build_month(month, as_of, dry_run, &building).await?;
        building.finish_and_clear();
        if dry_run {
            return Ok(RunReport { build, ..RunReport::default() });
        }
        let gateway = Arc::new(SinkGateway::open(&self.settings.config.gateway.outbox).with_context(|| {
            format!("cannot open the sink outbox {} (gateway.outbox)", self.settings.config.gateway.outbox.display())
        })?);
        let queue = MemoryQueue::new();
        let unsent = self.store.unsent_notification_ids(month).await?;
        let pushing = progress_bar(unsent.len() as u64, &format!("push {month}"));
        let pusher = Pusher {
            store: self.store.clone(),
            gateway,
            clock: self.clock.clone(),
            quiet_hours: self.settings.quiet_hours,
            sender: self.settings.config.gateway.sender.clone(),
        };
        let consumer = {
            let queue = queue.clone();
            let pushing = pushing.clone();
            tokio::spawn(async move { pusher.drain(&queue, &pushing).await })
        };
        let queued = unsent.len() as u64;
        for batch in unsent.chunks(QUEUE_BATCH) {
            queue.publish(batch.to_vec()).await?;
            let mut tx = self.store.begin().await?;
            crate::store::notifications::mark_queued(&mut tx, batch, self.clock.now()).await?;
            tx.commit().await?;
        }
        queue.close();
        let push = consumer.await.context("push worker panicked")??;
        pushing.finish_and_clear();
        Ok(RunReport { build, queued, push })
    }

    pub async fn status(&self, month: BillingMonth) -> anyhow::Result<MonthStatus> {
        Ok(self.store.month_status(month).await?)
    }

    pub async fn export(
        &self,
        kind: ExportKind,
        month: BillingMonth,
        format: ExportFormat,
        out: &mut dyn Write,
    ) -> anyhow::Result<u64> {
        crate::export::export(&self.store, &self.settings, kind, month, format, out).await
    }

    pub async fn spam_flagged(&self, month: BillingMonth) -> anyhow::Result<u64> {
        Ok(crate::export::spam_numbers(&self.store, &self.settings, month).await?.iter().filter(|n| n.flagged).count()
            as u64)
    }

    pub fn elapsed_since(start: Instant) -> String {
        format!("{:.2}s", start.elapsed().as_secs_f64())
    }

    /// Counts per status, for summaries.
    pub fn status_line(counts: &BTreeMap<&str, u64>) -> String {
        counts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    }
}
