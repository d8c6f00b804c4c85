//! The application: everything built from the configuration, the one way the program starts,
//! in `main` and in tests alike.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Datelike, Utc};
use tokio_util::sync::CancellationToken;

use crate::alerts::{AlertReport, Alerts};
use crate::billing::{BillBuilder, BillingRules, BuildMode, BuildReport, FlagNotices};
use crate::clock::{Clock, SystemClock};
use crate::config::{GatewayKind, Settings};
use crate::disputes::Disputes;
use crate::domain::delivery::DeliveryStatus;
use crate::domain::period::BillingMonth;
use crate::domain::shard::Shard;
use crate::export::{ExportFormat, ExportKind};
use crate::gateway::smpp::SmppSettings;
use crate::gateway::{Gateway, HttpGateway, JasminGateway, SinkGateway, SmppGateway};
use crate::import::{import_file, rejects_path, ImportError, ImportFile, ImportKind, ImportMode};
use crate::inbound::Recorder;
use crate::progress::{Reporter, Silent, Unit};
use crate::push::{PartLimiter, PushCounts, Pusher, PARALLEL_DELIVERIES};
use crate::queue::{AmqpQueue, AmqpSettings, MemoryQueue, Queue};
use crate::render::Renderer;
use crate::replies::Replies;
use crate::schedule::{MonthScheduler, ScheduleReport};
use crate::store::partitions::Partitioned;
use crate::store::retention::PurgeMode;
use crate::store::{ImportCounts, MonthStatus, Store};

/// Consumers a `run` starts in its own process when pushing through RabbitMQ.
const RUN_CONSUMERS: usize = 2;
/// Messages the in-process queue holds before the scheduler waits for the push: enough to
/// keep every parallel delivery busy.
const LOCAL_QUEUE_CAPACITY: usize = 64;
/// How often `serve` counts notifications per status for its metrics.
const COUNTS_REFRESH: Duration = Duration::from_secs(15);
/// How often `serve` turns accepted messages without a receipt into `unknown`.
const RECEIPT_SWEEP: Duration = Duration::from_secs(60);
/// How often a `run` through RabbitMQ looks whether its month is drained.
/// The lease that makes the scheduler daemons purge once a day between them.
const DAILY_PURGE: &str = "retention daily";
const DRAIN_CHECK: Duration = Duration::from_millis(200);

pub struct App {
    pub settings: Settings,
    pub store: Store,
    pub renderer: Arc<Renderer>,
    clock: Arc<dyn Clock>,
    progress: Arc<dyn Reporter>,
    broker: tokio::sync::OnceCell<Arc<AmqpQueue>>,
    /// With the in-process queue: where `serve` hands answers to its own push.
    answers: std::sync::OnceLock<MemoryQueue>,
}

/// A gateway in use, and the task recording what it hands back (SMPP's receipts and
/// replies); `close` lets go of both once the push is done.
pub struct GatewayLink {
    pub gateway: Arc<dyn Gateway>,
    recording: Option<tokio::task::JoinHandle<()>>,
}

impl GatewayLink {
    pub async fn close(self) {
        self.gateway.close().await;
        // The gateway's binds, and with them the recorder's channel, are closed now.
        drop(self.gateway);
        if let Some(recording) = self.recording {
            if let Err(error) = recording.await {
                tracing::error!(%error, "the receipt recorder panicked");
            }
        }
    }
}

/// What a health check found not answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unhealthy {
    #[error("database unavailable")]
    Database,
    #[error("message broker unavailable")]
    Broker,
}

#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub build: BuildReport,
    pub queued: u64,
    pub push: PushCounts,
}

/// The queue a command uses: in-process, or RabbitMQ.
enum QueueKind {
    Memory(MemoryQueue),
    Amqp(Arc<AmqpQueue>),
}

impl QueueKind {
    fn shared(&self) -> Arc<dyn Queue> {
        match self {
            QueueKind::Memory(queue) => Arc::new(queue.clone()),
            QueueKind::Amqp(queue) => queue.clone(),
        }
    }
}

impl App {
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        Self::build_with_clock(settings, Arc::new(SystemClock)).await
    }

    /// Checks the templates before touching the database, so a broken template stops the
    /// program before anything is written or queued.
    pub async fn build_with_clock(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<App> {
        let config = &settings.config;
        let templates = Some(config.sms.templates.as_path()).filter(|dir| !dir.as_os_str().is_empty());
        let renderer = Renderer::load(
            templates,
            &config.operator.name,
            &config.operator.hotline,
            settings.timezone,
            settings.max_segments,
        )?
        .with_details_max_segments(config.sms.details_max_segments as usize);
        let database_url = settings.tls.database_url(&config.database.url);
        let store = Store::connect(&database_url, config.database.max_connections, settings.timezone)
            .await
            .context("cannot open the database (database.url)")?;
        Ok(App::assemble(settings, store, renderer, clock))
    }

    fn assemble(settings: Settings, store: Store, renderer: Renderer, clock: Arc<dyn Clock>) -> App {
        App {
            settings,
            store,
            renderer: Arc::new(renderer),
            clock,
            progress: Arc::new(Silent),
            broker: tokio::sync::OnceCell::new(),
            answers: std::sync::OnceLock::new(),
        }
    }

    /// Reports the progress of long steps to `progress` (the CLI's bars) instead of nowhere.
    pub fn with_progress(mut self, progress: Arc<dyn Reporter>) -> App {
        self.progress = progress;
        self
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Imports `path`, writing its rejected rows beside it (`<input>.rejects.csv`).
    pub async fn import(&self, kind: ImportKind, path: &Path, mode: ImportMode) -> Result<ImportCounts, ImportError> {
        self.import_with_rejects(kind, path, mode, &rejects_path(path)).await
    }

    /// Imports `path`, writing its rejected rows to `rejects`.
    pub async fn import_with_rejects(
        &self,
        kind: ImportKind,
        path: &Path,
        mode: ImportMode,
        rejects: &Path,
    ) -> Result<ImportCounts, ImportError> {
        let file = ImportFile { kind, path, mode, rejects };
        import_file(&self.store, &file, self.settings.timezone, self.clock.as_ref(), self.progress.as_ref()).await
    }

    fn builder(&self) -> BillBuilder<'_> {
        BillBuilder {
            store: &self.store,
            renderer: self.renderer.clone(),
            rules: BillingRules {
                timezone: self.settings.timezone,
                grace: self.settings.grace,
                spike: self.settings.spike,
                flag_notices: if self.settings.config.flags.notify_opted_out {
                    FlagNotices::ToOptedOut
                } else {
                    FlagNotices::Off
                },
                itemize_min: crate::domain::money::Fen::new(self.settings.config.sms.itemize_min_fen),
            },
            clock: self.clock.clone(),
        }
    }

    async fn queue(&self) -> anyhow::Result<QueueKind> {
        let config = &self.settings.config.queue;
        if config.url == "memory://" {
            return Ok(QueueKind::Memory(MemoryQueue::new(LOCAL_QUEUE_CAPACITY)));
        }
        Ok(QueueKind::Amqp(Arc::new(self.connect_broker(&config.url).await?)))
    }

    async fn connect_broker(&self, url: &str) -> anyhow::Result<AmqpQueue> {
        let settings = AmqpSettings {
            url: url.to_string(),
            name: self.settings.config.queue.name.clone(),
            // Unacked messages per consumer: those being pushed and as many ready to follow.
            prefetch: 2 * PARALLEL_DELIVERIES as u16,
            tls: self.settings.tls.amqp(),
        };
        AmqpQueue::connect(&settings).await.context("cannot reach the message broker (queue.url)")
    }

    /// The process's connection to the broker for work that outlives a command (answers to
    /// replies), opened on first use; `None` with the in-process queue.
    pub async fn broker(&self) -> anyhow::Result<Option<Arc<AmqpQueue>>> {
        let url = &self.settings.config.queue.url;
        if url == "memory://" {
            return Ok(None);
        }
        let queue = self.broker.get_or_try_init(|| async { self.connect_broker(url).await.map(Arc::new) }).await?;
        Ok(Some(queue.clone()))
    }

    /// With the in-process queue, pushes the answers to replies this process writes until
    /// `stop`, so that a subscriber's TDZD is confirmed within seconds, not at the month's
    /// next `run`. `serve` runs it; quiet hours hold answers as they hold every SMS.
    /// The in-process queue answers are handed to from now on, created on the first call
    /// (before the server takes a request, so no answer misses it).
    pub fn answer_queue(&self) -> MemoryQueue {
        self.answers.get_or_init(|| MemoryQueue::new(LOCAL_QUEUE_CAPACITY)).clone()
    }

    pub async fn push_answers(&self, stop: CancellationToken) -> anyhow::Result<PushCounts> {
        let queue = self.answer_queue();
        let link = self.gateway().await?;
        let limiter = Arc::new(self.limiter(link.gateway.as_ref(), 1));
        let pushed = self.pusher(Arc::new(queue), link.gateway.clone(), limiter).drain(&stop, &Silent).await;
        link.close().await;
        pushed
    }

    /// The replies service, answering through the app's broker connection, or with the
    /// in-process queue through `push_answers` where it runs (elsewhere, answers wait for the
    /// month's next `run`).
    pub async fn replies(&self) -> anyhow::Result<Replies<'_>> {
        let queue = self.outside_queue().await?;
        Ok(Replies::new(&self.store, &self.renderer, self.clock.as_ref(), &self.settings, queue))
    }

    /// The disputes service; its messages go out as answers to replies do.
    pub async fn disputes(&self) -> anyhow::Result<Disputes<'_>> {
        Ok(Disputes {
            store: &self.store,
            renderer: &self.renderer,
            clock: self.clock.as_ref(),
            queue: self.outside_queue().await?,
            sla: self.settings.dispute_sla,
        })
    }

    /// Evaluates usage alerts (docs/contract.md §12) as if the time were `as_of` (the clock's
    /// time when `None`). Through RabbitMQ the alerts are queued for the workers; with the
    /// in-process queue they are pushed here, quiet hours and `alerts.max_age` judged on a
    /// clock that starts at `as_of`.
    pub async fn alerts(&self, as_of: Option<DateTime<Utc>>) -> anyhow::Result<(AlertReport, PushCounts)> {
        let clock: Arc<dyn Clock> = match as_of {
            Some(at) => Arc::new(crate::clock::ManualClock::new(at)),
            None => self.clock.clone(),
        };
        match self.queue().await? {
            QueueKind::Amqp(queue) => {
                let report = self.alerts_service(clock.as_ref(), Some(queue.as_ref())).evaluate().await;
                queue.close().await;
                Ok((report?, PushCounts::default()))
            }
            QueueKind::Memory(queue) => {
                let link = self.gateway().await?;
                let limiter = Arc::new(self.limiter(link.gateway.as_ref(), 1));
                let mut pusher = self.pusher(Arc::new(queue.clone()), link.gateway.clone(), limiter);
                pusher.clock = clock.clone();
                let stop = CancellationToken::new();
                let push = {
                    let stop = stop.clone();
                    tokio::spawn(async move { pusher.drain(&stop, &Silent).await })
                };
                let report = self.alerts_service(clock.as_ref(), Some(&queue)).evaluate().await;
                if report.is_err() {
                    stop.cancel();
                }
                queue.close();
                let pushed = push.await.context("the push panicked");
                link.close().await;
                Ok((report?, pushed??))
            }
        }
    }

    fn alerts_service<'a>(&'a self, clock: &'a dyn Clock, queue: Option<&'a dyn Queue>) -> Alerts<'a> {
        Alerts {
            store: &self.store,
            renderer: &self.renderer,
            clock,
            lease_clock: self.clock.as_ref(),
            timezone: self.settings.timezone,
            thresholds: &self.settings.alert_thresholds,
            queue,
        }
    }

    /// Where a message written outside a month's push (an answer, a dispute's message) is
    /// handed: the broker, or this process's in-process queue where `push_answers` runs.
    async fn outside_queue(&self) -> anyhow::Result<Option<&dyn Queue>> {
        self.broker().await?;
        Ok(match self.broker.get() {
            Some(broker) => Some(broker.as_ref() as &dyn Queue),
            None => self.answers.get().map(|answers| answers as &dyn Queue),
        })
    }

    /// `outside_queue`, held by something that outlives the borrow (the SMPP recorder).
    async fn outside_queue_owned(&self) -> anyhow::Result<Option<Arc<dyn Queue>>> {
        self.broker().await?;
        Ok(match self.broker.get() {
            Some(broker) => Some(broker.clone() as Arc<dyn Queue>),
            None => self.answers.get().map(|answers| Arc::new(answers.clone()) as Arc<dyn Queue>),
        })
    }

    /// An operator's change of a subscriber's choices (bill SMS, usage alerts), with a reason:
    /// whether any changed, or `None` for an unknown subscriber.
    pub async fn set_consent(
        &self,
        subscriber_id: &str,
        choices: &[(crate::store::replies::Choice, bool)],
        reason: &str,
    ) -> anyhow::Result<Option<bool>> {
        let source = crate::store::replies::ConsentSource::Operator;
        let mut changed = false;
        for (choice, value) in choices {
            match self.store.set_choice(subscriber_id, *choice, *value, source, reason, self.clock.now()).await? {
                Some(this) => changed |= this,
                None => return Ok(None),
            }
        }
        Ok(Some(changed))
    }

    /// Checks that the database answers, and the broker where one is configured, without
    /// migrating the schema or starting anything else: the container health check.
    pub async fn check_health(settings: Settings) -> Result<(), Unhealthy> {
        let url = settings.tls.database_url(&settings.config.database.url);
        let store = Store::open(&url, 1, settings.timezone).await.map_err(|error| {
            tracing::warn!(%error, "health check: database");
            Unhealthy::Database
        })?;
        let renderer = Renderer::load(None, "health", "", settings.timezone, settings.max_segments)
            .expect("the built-in templates load");
        let app = App::assemble(settings, store, renderer, Arc::new(SystemClock));
        let health = app.health().await;
        app.store.close().await;
        health
    }

    /// The database answers, and the broker does where one is configured.
    pub async fn health(&self) -> Result<(), Unhealthy> {
        self.store.ping().await.map_err(|error| {
            tracing::warn!(%error, "health check: database");
            Unhealthy::Database
        })?;
        if let Some(broker) = self.broker().await.map_err(|error| {
            tracing::warn!(error = format!("{error:#}"), "health check: broker");
            Unhealthy::Broker
        })? {
            broker.depth().await.map_err(|error| {
                tracing::warn!(%error, "health check: broker");
                Unhealthy::Broker
            })?;
        }
        Ok(())
    }

    /// Accepted messages whose receipt never came become `unknown` after `gateway.dlr_timeout`.
    pub async fn expire_receipts(&self) -> anyhow::Result<u64> {
        let now = self.clock.now();
        let expired = self.store.expire_receipts(now - self.settings.dlr_timeout, now).await?;
        if expired > 0 {
            tracing::info!(expired, "accepted messages without receipt are now unknown");
        }
        Ok(expired)
    }

    /// Sets the notification gauges (per status, every status present, zero when none) from
    /// one count of the database every `COUNTS_REFRESH` until `stop`, so that scrapes read
    /// figures instead of scanning the table each time. The caller counts once first.
    pub async fn keep_counts_current(&self, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(COUNTS_REFRESH) => {}
            }
            self.count_notifications().await;
        }
    }

    /// One count of notifications per status into the gauges, all months together and per
    /// open month (the two `open_months` and the current one).
    pub async fn count_notifications(&self) {
        match self.store.status_counts().await {
            Ok(counts) => {
                for status in DeliveryStatus::ALL {
                    metrics::gauge!("billpush_notifications", "status" => status.as_str())
                        .set(count_of(&counts, status) as f64);
                }
            }
            Err(error) => tracing::warn!(%error, "notification counts unavailable"),
        }
        let [before, last] = open_months(self.clock.now(), self.settings.timezone);
        // The month that has just left the window is set to zero once more, so its last
        // figures do not stand on as if still current.
        for status in DeliveryStatus::ALL {
            metrics::gauge!("billpush_month_notifications", "month" => before.previous().to_string(), "status" => status.as_str())
                .set(0.0);
        }
        for month in [before, last, last.next()] {
            match self.store.month_status_counts(month).await {
                Ok(counts) => {
                    for status in DeliveryStatus::ALL {
                        metrics::gauge!("billpush_month_notifications", "month" => month.to_string(), "status" => status.as_str())
                            .set(count_of(&counts, status) as f64);
                    }
                }
                Err(error) => tracing::warn!(%error, %month, "month notification counts unavailable"),
            }
        }
    }

    /// Expires receipts every `RECEIPT_SWEEP` until `stop`: the one sweeper of `serve`.
    pub async fn sweep_receipts(&self, stop: CancellationToken) {
        loop {
            if let Err(error) = self.expire_receipts().await {
                tracing::warn!(error = format!("{error:#}"), "could not expire receipts");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(RECEIPT_SWEEP) => {}
            }
        }
    }

    /// The configured gateway; for SMPP, with the recorder of what its binds hand back.
    async fn gateway(&self) -> anyhow::Result<GatewayLink> {
        let g = &self.settings.config.gateway;
        let timeout = Duration::from_millis(g.timeout_ms);
        let gateway: Arc<dyn Gateway> = match g.kind {
            GatewayKind::Sink => Arc::new(
                SinkGateway::open(&g.outbox)
                    .with_context(|| format!("cannot open the sink outbox {} (gateway.outbox)", g.outbox.display()))?,
            ),
            GatewayKind::Http => Arc::new(HttpGateway::new(&g.url, &g.token, timeout, &self.settings.tls)?),
            GatewayKind::Jasmin => {
                let dlr_url = format!(
                    "{}/api/v1/dlr/jasmin?{}",
                    self.settings.config.api.public_url.trim_end_matches('/'),
                    serde_urlencoded::to_string([("token", g.token.as_str())]).expect("a string pair encodes")
                );
                Arc::new(JasminGateway::new(&g.url, &g.username, &g.password, dlr_url, timeout, &self.settings.tls)?)
            }
            GatewayKind::Smpp => {
                // Everything that can fail comes before the binds, which must be closed once up.
                let recorder = Recorder {
                    store: self.store.clone(),
                    renderer: self.renderer.clone(),
                    clock: self.clock.clone(),
                    settings: self.settings.clone(),
                    queue: self.outside_queue_owned().await?,
                };
                let settings = self.smpp_settings()?;
                let (sender, inbound) = tokio::sync::mpsc::unbounded_channel();
                let gateway = SmppGateway::connect(settings, sender).await?;
                let recording = tokio::spawn(recorder.run(inbound));
                return Ok(GatewayLink { gateway, recording: Some(recording) });
            }
        };
        Ok(GatewayLink { gateway, recording: None })
    }

    fn smpp_settings(&self) -> anyhow::Result<SmppSettings> {
        let s = &self.settings.config.smpp;
        let tls = match s.tls {
            true => Some(self.settings.tls.rustls_client().map_err(|problem| anyhow::anyhow!("smpp.tls: {problem}"))?),
            false => None,
        };
        Ok(SmppSettings {
            host: s.host.clone(),
            port: s.port,
            system_id: s.system_id.clone(),
            password: s.password.clone(),
            system_type: s.system_type.clone(),
            source_ton: s.source_ton,
            source_npi: s.source_npi,
            window: s.window as usize,
            binds: s.binds as usize,
            long: s.long,
            tls,
            timeout: Duration::from_millis(s.timeout_ms),
            receipt_wait: self.settings.smpp_receipt_wait,
        })
    }

    fn pusher(&self, queue: Arc<dyn Queue>, gateway: Arc<dyn Gateway>, limiter: Arc<PartLimiter>) -> Pusher {
        let g = &self.settings.config.gateway;
        Pusher {
            store: self.store.clone(),
            queue,
            limiter,
            clock: self.clock.clone(),
            quiet_hours: self.settings.quiet_hours,
            sender: g.sender.clone(),
            max_attempts: i64::from(g.max_attempts),
            retry_base: Duration::from_millis(g.retry_base_ms),
            lease: self.lease(),
            alert_max_age: self.settings.alert_max_age,
            gateway,
        }
    }

    /// How long a claim protects a notification being sent: three times the longest a send can
    /// take, so that any send in flight has surely ended by then. An SMPP send may wait for a
    /// bind, then for each part a window slot and a response.
    fn lease(&self) -> Duration {
        let c = &self.settings.config;
        match c.gateway.kind {
            GatewayKind::Smpp => {
                let parts = c.sms.max_segments.max(c.sms.details_max_segments);
                Duration::from_millis(c.smpp.timeout_ms) * (2 * parts + 1) * 3
            }
            _ => Duration::from_millis(c.gateway.timeout_ms) * 3,
        }
    }

    fn limiter(&self, gateway: &dyn Gateway, processes: u32) -> PartLimiter {
        if gateway.rate_limited() {
            PartLimiter::new(
                self.settings.config.gateway.rate_per_second,
                processes,
                self.settings.config.sms.max_segments,
            )
        } else {
            PartLimiter::unlimited()
        }
    }

    /// Queues again what an interrupted run left behind: the in-process queue did not outlive
    /// it. Page by page, so that the queue's capacity holds.
    async fn requeue_stranded_locally(&self, queue: &MemoryQueue, month: BillingMonth) -> anyhow::Result<()> {
        let now = self.clock.now();
        let mut after = String::new();
        loop {
            let page = self.store.stranded_page(month, now, &after, (queue.ids_per_message() * 10) as i64).await?;
            let Some((last, _)) = page.last() else { return Ok(()) };
            after = last.clone();
            let ids: Vec<String> = page.into_iter().map(|(id, _)| id).collect();
            let messages = queue.messages(&ids);
            queue.publish(&messages).await?;
        }
    }

    fn scheduler<'a>(&'a self, queue: &'a dyn Queue) -> MonthScheduler<'a> {
        MonthScheduler::new(self.builder(), queue)
    }

    /// Builds what is due, queues it and pushes it on this machine until the month is drained.
    /// Also re-queues what an interrupted run left behind.
    pub async fn run(
        &self,
        month: BillingMonth,
        as_of: Option<DateTime<Utc>>,
        mode: BuildMode,
    ) -> anyhow::Result<RunReport> {
        let as_of = as_of.unwrap_or_else(|| self.clock.now());
        if mode == BuildMode::DryRun {
            let building = self.progress.step(format!("build {month}"), 0, Unit::Items);
            let build = self
                .builder()
                .build_month(month, as_of, Shard::ALL, BuildMode::DryRun, building.as_ref(), None)
                .await?;
            building.finish();
            return Ok(RunReport { build, ..RunReport::default() });
        }
        let link = self.gateway().await?;
        let report = self.run_push(month, as_of, link.gateway.clone()).await;
        link.close().await;
        report
    }

    /// Builds, queues and pushes a month through `gateway` (`run` without its dry run).
    async fn run_push(
        &self,
        month: BillingMonth,
        as_of: DateTime<Utc>,
        gateway: Arc<dyn Gateway>,
    ) -> anyhow::Result<RunReport> {
        let queue = self.queue().await?;
        let shared = queue.shared();
        let limiter = Arc::new(self.limiter(gateway.as_ref(), 1));
        let stop = CancellationToken::new();
        let building = self.progress.step(format!("build {month}"), 0, Unit::Items);
        let pushing = self.progress.step(format!("push {month}"), 0, Unit::Items);
        // The in-process queue is pushed from while it is being filled, so that it stays small
        // and the push starts with the first page queued.
        let local_push = match &queue {
            QueueKind::Memory(_) => {
                let pusher = self.pusher(shared.clone(), gateway.clone(), limiter.clone());
                let (stop, pushing) = (stop.clone(), pushing.clone());
                // Ends when the queue is closed and drained, or at once when `stop` is cancelled.
                Some(tokio::spawn(async move { pusher.drain(&stop, pushing.as_ref()).await }))
            }
            QueueKind::Amqp(_) => None,
        };
        let scheduled = async {
            if let QueueKind::Memory(memory) = &queue {
                self.requeue_stranded_locally(memory, month).await?;
            }
            let scheduled =
                self.scheduler(shared.as_ref()).schedule(month, as_of, Shard::ALL, building.as_ref()).await?;
            anyhow::ensure!(!scheduled.skipped, "another scheduler is working on {month}; try again when it is done");
            pushing.set_length(pushing.position() + self.store.unfinished_count(month).await? as u64);
            Ok(scheduled)
        }
        .await;
        building.finish();
        let scheduled = match scheduled {
            Ok(scheduled) => scheduled,
            Err(error) => {
                stop.cancel();
                if let Some(local_push) = local_push {
                    local_push.await.context("the push panicked")??;
                }
                return Err(error);
            }
        };
        let push = match &queue {
            QueueKind::Memory(memory) => {
                memory.close();
                local_push.expect("spawned for the in-process queue").await.context("the push panicked")??
            }
            QueueKind::Amqp(amqp) => {
                let mut consumers = Vec::new();
                for _ in 0..RUN_CONSUMERS {
                    let pusher = self.pusher(shared.clone(), gateway.clone(), limiter.clone());
                    let (stop, pushing) = (stop.clone(), pushing.clone());
                    consumers.push(tokio::spawn(async move { pusher.drain(&stop, pushing.as_ref()).await }));
                }
                let drained = async {
                    while self.store.unfinished_count(month).await? > 0 && !consumers.iter().any(|c| c.is_finished()) {
                        tokio::time::sleep(DRAIN_CHECK).await;
                    }
                    anyhow::Ok(())
                }
                .await;
                // The consumers stop and are waited for whether or not the count could be read.
                stop.cancel();
                let mut push = PushCounts::default();
                for consumer in consumers {
                    let counts = consumer.await.context("a push consumer panicked")??;
                    push.accepted += counts.accepted;
                    push.failed += counts.failed;
                    push.unknown += counts.unknown;
                    push.retried += counts.retried;
                    push.already_handled += counts.already_handled;
                }
                amqp.close().await;
                drained?;
                push
            }
        };
        pushing.finish();
        Ok(RunReport { build: scheduled.build, queued: scheduled.queued, push })
    }

    /// Builds what is due and queues it for separate workers (`billpush worker`).
    pub async fn schedule(
        &self,
        month: BillingMonth,
        as_of: Option<DateTime<Utc>>,
        shard: Shard,
    ) -> anyhow::Result<ScheduleReport> {
        let QueueKind::Amqp(queue) = self.queue().await? else {
            anyhow::bail!("schedule queues for separate workers and needs queue.url = amqp://…; use run with the in-process queue");
        };
        let building = self.progress.step(format!("build {month}"), 0, Unit::Items);
        let report = self
            .scheduler(queue.as_ref())
            .schedule(month, as_of.unwrap_or_else(|| self.clock.now()), shard, building.as_ref())
            .await;
        building.finish();
        queue.close().await;
        report
    }

    /// Consumes and pushes until `stop`; finishes the delivery in hand before returning.
    pub async fn worker(&self, stop: CancellationToken) -> anyhow::Result<PushCounts> {
        let QueueKind::Amqp(queue) = self.queue().await? else {
            anyhow::bail!("worker consumes from RabbitMQ and needs queue.url = amqp://…");
        };
        let link = self.gateway().await?;
        let limiter = Arc::new(self.limiter(link.gateway.as_ref(), self.settings.config.gateway.workers));
        // Stops with the worker, also when the push ends on an error rather than through `stop`.
        let depth_stop = stop.child_token();
        let depth = tokio::spawn(report_queue_depth(queue.clone(), depth_stop.clone()));
        let counts = self.pusher(queue.clone(), link.gateway.clone(), limiter).drain(&stop, &Silent).await;
        link.close().await;
        depth_stop.cancel();
        depth.await.context("the queue depth reporter panicked")?;
        queue.close().await;
        counts
    }

    /// One round of the daemon: schedule the open months, publish again what the broker lost,
    /// expire receipts that never came.
    async fn scheduler_round(&self, queue: &dyn Queue) -> anyhow::Result<()> {
        let now = self.clock.now();
        for month in open_months(now, self.settings.timezone) {
            let scheduler = self.scheduler(queue);
            let report = scheduler.schedule(month, now, Shard::ALL, &Silent).await?;
            tracing::info!(%month, billed = report.build.billed, queued = report.queued, not_due = report.build.not_due, "scheduled");
            let requeued = scheduler.requeue_stranded(month, now - self.settings.requeue_after).await?;
            if requeued > 0 {
                tracing::warn!(%month, requeued, "queued again: their queue messages went missing");
            }
        }
        // The current month has no bills due yet, but answers to replies are written in it: one
        // whose publish failed waits here.
        let current = open_months(now, self.settings.timezone)[1].next();
        let scheduler = self.scheduler(queue);
        let lock = format!("schedule {current} {}", Shard::ALL);
        if scheduler.lock(&lock, now).await? {
            let queued = scheduler.enqueue_pending(current, Shard::ALL, &lock, &mut String::new()).await;
            self.store.release_lock(&lock, &scheduler.holder).await?;
            let queued = queued?;
            if queued > 0 {
                tracing::info!(month = %current, queued, "answers left pending are queued");
            }
        }
        self.expire_receipts().await?;
        // Partitions made ahead of need, so that the month's first writers make none.
        self.store.ensure_partitions(&Partitioned::ALL, [current, current.next()]).await?;
        self.daily_purge(now).await?;
        let alerts = self.alerts_service(self.clock.as_ref(), Some(queue)).evaluate().await?;
        if alerts.raised > 0 || alerts.queued > 0 {
            tracing::info!(raised = alerts.raised, covered = alerts.covered, queued = alerts.queued, "usage alerts");
        }
        Ok(())
    }

    /// The production daemon: every `billing.check_every`, schedules whatever became due in the
    /// open months and turns receipts that never came into `unknown`.
    pub async fn scheduler_daemon(&self, stop: CancellationToken) -> anyhow::Result<()> {
        let QueueKind::Amqp(queue) = self.queue().await? else {
            anyhow::bail!("scheduler queues for separate workers and needs queue.url = amqp://…");
        };
        let every = self.settings.check_every.to_std().unwrap_or(Duration::from_secs(3600));
        while !stop.is_cancelled() {
            // A round that fails (the broker or database away) is logged and tried again next
            // round; the daemon itself keeps running.
            if let Err(error) = self.scheduler_round(queue.as_ref()).await {
                tracing::error!(error = format!("{error:#}"), "scheduling round failed; trying again next round");
            }
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(every) => {}
            }
        }
        queue.close().await;
        Ok(())
    }

    /// Puts the month's failed notifications back in line on purpose. Through RabbitMQ they are
    /// queued at once; with the in-process queue the next `run` of the month pushes them.
    pub async fn retry_failed(&self, month: BillingMonth) -> anyhow::Result<u64> {
        let reset = self.store.reset_failed(month, self.clock.now()).await?.len() as u64;
        if let QueueKind::Amqp(queue) = self.queue().await? {
            let scheduler = self.scheduler(queue.as_ref());
            let lock = format!("schedule {month} {}", Shard::ALL);
            anyhow::ensure!(
                scheduler.lock(&lock, self.clock.now()).await?,
                "a scheduler is working on {month}; try again when it is done"
            );
            let queued = scheduler.enqueue_pending(month, Shard::ALL, &lock, &mut String::new()).await;
            self.store.release_lock(&lock, &scheduler.holder).await?;
            queued?;
            queue.close().await;
        }
        Ok(reset)
    }

    /// Removes what is past `[retention]` as of `as_of` (default now), or in a dry run counts
    /// it (docs/contract.md §11).
    pub async fn purge(
        &self,
        as_of: Option<DateTime<Utc>>,
        mode: PurgeMode,
    ) -> anyhow::Result<crate::retention::PurgeReport> {
        let now = self.clock.now();
        let s = &self.settings;
        crate::retention::purge(&self.store, &s.retention, s.timezone, as_of.unwrap_or(now), now, mode).await
    }

    /// The daemon's daily purge: at most once a day across every scheduler (a lease held for
    /// a day, given back when the purge failed so that the next round tries again).
    async fn daily_purge(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let holder = crate::schedule::new_holder();
        if !self.store.acquire_lock(DAILY_PURGE, &holder, now, now + chrono::Duration::days(1)).await? {
            return Ok(());
        }
        match self.purge(Some(now), PurgeMode::Remove).await {
            Ok(report) => {
                let removed: u64 = report.removed.iter().map(|(_, rows)| rows).sum();
                if removed > 0 {
                    tracing::info!(report = report.lines().join("; "), "purged what retention no longer keeps");
                }
                Ok(())
            }
            Err(error) => {
                self.store.release_lock(DAILY_PURGE, &holder).await?;
                Err(error)
            }
        }
    }

    /// The regulator's report of `month` (docs/contract.md §11); disputes are overdue as of
    /// `as_of`, by default now.
    pub async fn report(
        &self,
        month: BillingMonth,
        as_of: Option<DateTime<Utc>>,
    ) -> anyhow::Result<crate::report::Report> {
        let as_of = as_of.unwrap_or_else(|| self.clock.now());
        crate::report::report(&self.store, &self.settings, month, as_of).await
    }

    pub async fn status(&self, month: BillingMonth) -> anyhow::Result<MonthStatus> {
        Ok(self.store.month_status(month).await?)
    }

    pub async fn export(
        &self,
        kind: ExportKind,
        month: BillingMonth,
        format: ExportFormat,
        out: &mut dyn std::io::Write,
    ) -> anyhow::Result<u64> {
        crate::export::export(&self.store, &self.settings, kind, month, format, self.clock.now(), out).await
    }

    pub async fn spam_flagged(&self, month: BillingMonth) -> anyhow::Result<u64> {
        Ok(crate::export::spam_numbers(&self.store, &self.settings, month).await?.iter().filter(|n| n.flagged).count()
            as u64)
    }
}

/// The count of `status` among counts per status, 0 when it has none.
fn count_of(counts: &[(String, i64)], status: DeliveryStatus) -> i64 {
    counts.iter().find(|(s, _)| s == status.as_str()).map_or(0, |(_, n)| *n)
}

/// The months whose bills can become due now: periods of month M end in M+1 (day 28 at the
/// latest), so the previous month, and the one before for a scheduler that was down.
pub fn open_months(now: DateTime<Utc>, tz: chrono_tz::Tz) -> [BillingMonth; 2] {
    let local = now.with_timezone(&tz);
    let current = BillingMonth::new(local.year(), local.month()).expect("a real date");
    [current.previous().previous(), current.previous()]
}

async fn report_queue_depth(queue: Arc<AmqpQueue>, stop: CancellationToken) {
    loop {
        match queue.depth().await {
            Ok(depth) => metrics::gauge!("billpush_queue_depth").set(depth as f64),
            Err(error) => tracing::debug!(%error, "queue depth unavailable"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_months_are_the_two_before_the_current_one() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T10:00:00+08:00").unwrap().with_timezone(&Utc);
        let months = open_months(now, chrono_tz::Asia::Shanghai);
        assert_eq!(months.map(|m| m.to_string()), ["2026-09", "2026-10"]);
        let new_year = DateTime::parse_from_rfc3339("2027-01-01T00:30:00+08:00").unwrap().with_timezone(&Utc);
        assert_eq!(open_months(new_year, chrono_tz::Asia::Shanghai).map(|m| m.to_string()), ["2026-11", "2026-12"]);
    }
}
