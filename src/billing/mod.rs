//! Building a month's bills: for each due subscriber not yet billed, sum the period's
//! records, flag unexplained deductions and write bill and flags; then render each bill's SMS
//! from the bill as stored and write it as the bill's notification. Built bills are frozen;
//! later runs skip them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use tokio::sync::mpsc::{Receiver, Sender};

use crate::clock::Clock;
use crate::dispatch::notification_of;
use crate::domain::bill::summarize_totals;
use crate::domain::category::Language;
use crate::domain::delivery::{DeliveryStatus, NotSentReason, BILL_KIND, FLAG_NOTICE_KIND};
use crate::domain::flags::{flag_vas_charges, recent_mean, SpikeRule};
use crate::domain::money::Fen;
use crate::domain::period::{billing_period, BillingMonth};
use crate::domain::shard::Shard;
use crate::progress::Progress;
use crate::render::{Allowances, BillFacts, RenderedSms, Renderer};
use crate::store::bills::{self as db, BillInputs, BillToWrite, Due, UnnotifiedBill};
use crate::store::bulk::Copier;
use crate::store::notifications::{write_notifications, BillNotification, NotificationToWrite};
use crate::store::partitions::Partitioned;
use crate::store::{Store, StoreResult, Tx};

/// Subscribers read and written per transaction.
const PAGE_SIZE: i64 = 2000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleSms {
    pub msisdn_masked: String,
    pub language: Language,
    pub segments: usize,
    pub text: String,
}

#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    pub billed: u64,
    pub total_fen: i64,
    /// Periods not yet ended plus grace as of the run; billed by a later run.
    pub not_due: u64,
    pub next_due_at: Option<DateTime<Utc>>,
    pub by_status: BTreeMap<&'static str, u64>,
    pub by_segments: BTreeMap<usize, u64>,
    pub flags: BTreeMap<&'static str, u64>,
    pub spikes: u64,
    /// Flag notices written for opted-out subscribers (not among `by_status`, which counts
    /// bill SMS).
    pub flag_notices: u64,
    pub samples: Vec<SampleSms>,
}

impl BuildReport {
    /// Adds what a second pass rendered.
    fn add_rendered(&mut self, rendered: BuildReport) {
        for (status, count) in rendered.by_status {
            *self.by_status.entry(status).or_default() += count;
        }
        for (segments, count) in rendered.by_segments {
            *self.by_segments.entry(segments).or_default() += count;
        }
        self.flag_notices += rendered.flag_notices;
        for sample in rendered.samples {
            self.keep_sample(sample);
        }
    }

    fn keep_sample(&mut self, sample: SampleSms) {
        // Three samples, at least one in English when there is one.
        let has_english = self.samples.iter().any(|s| s.language == Language::En);
        if self.samples.len() < 2 || (self.samples.len() == 2 && (has_english || sample.language == Language::En)) {
            self.samples.push(sample);
        }
    }
}

/// Whether a build keeps what it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildMode {
    Keep,
    /// Builds and renders in one transaction that is rolled back: counts and samples only.
    DryRun,
}

/// What decides a bill besides its records: the timezone periods are cut in, the grace after
/// a period before its bill is due, and the spike rule.
#[derive(Debug, Clone, Copy)]
pub struct BillingRules {
    pub timezone: Tz,
    pub grace: chrono::Duration,
    pub spike: SpikeRule,
    pub flag_notices: FlagNotices,
    /// `sms.itemize_min_fen`: an `other` or `adjustment` record this large is named in the SMS.
    pub itemize_min: Fen,
}

/// Whether an opted-out subscriber whose bill has flagged charges or a spike gets a
/// `flag_notice` (`flags.notify_opted_out`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagNotices {
    ToOptedOut,
    Off,
}

/// How a build hands each page of notifications it commits to the queueing that runs beside
/// it: the ids of those to be sent, once the page is committed.
pub enum Handoff {
    /// The page's notifications are written `pending`; the scheduler publishes them and marks
    /// them queued once the broker confirms. Handing the ids over spares the scheduler finding
    /// them again among the month's unfinished notifications, which grows slower with every
    /// page it falls behind the rendering.
    Pending(Sender<Vec<String>>),
    /// The page's notifications are written `queued`, to be published at once. For a queue
    /// that dies with the process: its publish proves nothing a restart keeps, and the next
    /// `run` re-queues whatever a crash left `queued`. Saves every SMS a status change and an
    /// event on SQLite's one writer.
    Queued(Sender<Vec<String>>),
}

impl Handoff {
    fn pages(&self) -> &Sender<Vec<String>> {
        match self {
            Handoff::Pending(pages) | Handoff::Queued(pages) => pages,
        }
    }
}

pub struct BillBuilder<'a> {
    pub store: &'a Store,
    pub renderer: Arc<Renderer>,
    pub rules: BillingRules,
    pub clock: Arc<dyn Clock>,
}

impl BillBuilder<'_> {
    /// Builds every due, unbilled bill of `month` as of `as_of`, then renders and writes the
    /// notification of every bill of the month that has none (this run's, and any an
    /// interrupted run left), handing each committed page of them to `handoff`. A dry run does
    /// the same work in one transaction and rolls it back.
    ///
    /// The bills come first, all of them, each page in a transaction of its own: a bill's
    /// figures are the system of record and its SMS is made from them, so an SMS is never
    /// sent for a bill that is not stored, and the month's bills are complete as soon as the
    /// database can write them rather than as fast as SMS can be rendered and written.
    pub async fn build_month(
        &self,
        month: BillingMonth,
        as_of: DateTime<Utc>,
        shard: Shard,
        mode: BuildMode,
        progress: &dyn Progress,
        handoff: Option<Handoff>,
    ) -> StoreResult<BuildReport> {
        let born = match handoff {
            Some(Handoff::Queued(_)) => DeliveryStatus::Queued,
            _ => DeliveryStatus::Pending,
        };
        let run_id = uuid::Uuid::now_v7().to_string();
        let dry_run = mode == BuildMode::DryRun;
        self.store.ensure_partitions(&Partitioned::DELIVERIES, [month]).await?;
        let mut pages = PageWriter::new(self.store, dry_run).await?;
        db::start_billing_run(pages.tx().await?, &run_id, month, as_of, self.clock.now()).await?;
        pages.commit_page().await?;
        // A dry run writes no notification for its own bills, which are rolled back before any
        // second pass could read them: it renders each as it is built, to count what it would send.
        let preview = dry_run.then(|| self.renderer.clone());
        let mut report = self.write_bills(month, as_of, shard, preview, progress, &mut pages).await?;
        db::mark_billed(pages.tx().await?, &run_id, self.clock.now()).await?;
        pages.commit_page().await?;
        self.write_notifications(month, shard, born, progress, &mut pages, handoff, &mut report).await?;
        let mut tx = pages.finish().await?;
        db::finish_billing_run(&mut tx, &run_id, self.clock.now(), report.billed, report.not_due).await?;
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
            if report.billed > 0 {
                // The month's notifications as the build left them, for the scans of what is
                // left to send (`partitions::analyze`).
                self.store.analyze_partitions(&Partitioned::DELIVERIES, month).await?;
            }
        }
        Ok(report)
    }

    /// The first pass: every due, unbilled bill of the month with its flags.
    async fn write_bills(
        &self,
        month: BillingMonth,
        as_of: DateTime<Utc>,
        shard: Shard,
        preview: Option<Arc<Renderer>>,
        progress: &dyn Progress,
        pages: &mut PageWriter<'_>,
    ) -> StoreResult<BuildReport> {
        // Three stages at once, a page apart: the next page is read while this one is built
        // (flagged, on the CPU) and the one before is written. Pages are disjoint key ranges,
        // so reading ahead of the writes changes nothing that is read.
        let (read, next_page) = tokio::sync::mpsc::channel(1);
        let reader = tokio::spawn(read_pages(self.store.clone(), month, shard, self.rules.timezone, read));
        let (built_pages, mut next_built) = tokio::sync::mpsc::channel(1);
        let builder =
            tokio::spawn(build_pages(preview, self.rules, self.clock.clone(), month, as_of, next_page, built_pages));
        while let Some(BuiltPage { scanned, bills }) = next_built.recv().await {
            pages.bills(&bills).await?;
            pages.commit_page().await?;
            progress.inc(scanned);
        }
        let report = builder.await.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))?;
        reader.await.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
        Ok(report)
    }

    /// The second pass: the notification of every bill of the month in `shard` that has none,
    /// each page handed to `handoff` once committed.
    #[allow(clippy::too_many_arguments)]
    async fn write_notifications(
        &self,
        month: BillingMonth,
        shard: Shard,
        born: DeliveryStatus,
        progress: &dyn Progress,
        pages: &mut PageWriter<'_>,
        handoff: Option<Handoff>,
        report: &mut BuildReport,
    ) -> StoreResult<()> {
        progress.set_message(format!("render {month}"));
        progress.set_position(0);
        // Read, render, write: three stages at once, a page apart, as the bills are built.
        let (read, next_page) = tokio::sync::mpsc::channel(1);
        let reader = tokio::spawn(read_unnotified(self.store.clone(), month, shard, self.rules.itemize_min, read));
        let (rendered_pages, mut next_rendered) = tokio::sync::mpsc::channel(1);
        let renderer = tokio::spawn(render_pages(
            self.renderer.clone(),
            self.clock.clone(),
            self.rules,
            month,
            born,
            next_page,
            rendered_pages,
        ));
        while let Some(notifications) = next_rendered.recv().await {
            pages.notifications(&notifications).await?;
            let committed = pages.commit_page().await?;
            progress.inc(notifications.len() as u64);
            if !committed {
                continue;
            }
            if let Some(handoff) = &handoff {
                let ids: Vec<String> = notifications
                    .iter()
                    .filter(|n| n.notification.status == born)
                    .map(|n| n.notification.id.clone())
                    .collect();
                // A queueing that stopped has its own error to report; the page stays in the
                // database for the last round of `schedule`, or the next run, to queue.
                if !ids.is_empty() {
                    let _ = handoff.pages().send(ids).await;
                }
            }
        }
        let rendered = renderer.await.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))?;
        reader.await.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
        report.add_rendered(rendered);
        Ok(())
    }
}

/// Where a build's pages go. On PostgreSQL by `COPY`, each page in a transaction of its own;
/// otherwise inserted, each page in a transaction of its own, opened only while the page is
/// written, never while one is built: SQLite has one writer, and the push of the pages already
/// queued needs it too. A dry run keeps one transaction open for every page, to roll back.
struct PageWriter<'s> {
    store: &'s Store,
    copier: Option<Copier>,
    tx: Option<Tx>,
    dry_run: bool,
}

impl<'s> PageWriter<'s> {
    async fn new(store: &'s Store, dry_run: bool) -> StoreResult<PageWriter<'s>> {
        let copier = if dry_run { None } else { store.copier().await? };
        Ok(PageWriter { store, copier, tx: None, dry_run })
    }

    async fn tx(&mut self) -> StoreResult<&mut Tx> {
        if self.tx.is_none() {
            self.tx = Some(self.store.begin().await?);
        }
        Ok(self.tx.as_mut().expect("just begun"))
    }

    async fn bills(&mut self, bills: &[BillToWrite]) -> StoreResult<()> {
        match &mut self.copier {
            _ if bills.is_empty() => Ok(()),
            Some(copier) => copier.copy_bills(bills).await,
            None => db::write_bills(self.tx().await?, bills).await,
        }
    }

    async fn notifications(&mut self, notifications: &[BillNotification]) -> StoreResult<()> {
        match &mut self.copier {
            _ if notifications.is_empty() => Ok(()),
            Some(copier) => copier.copy_notifications(notifications).await,
            None => write_notifications(self.tx().await?, notifications).await,
        }
    }

    /// Commits what was written since the last page, unless this is a dry run; tells whether
    /// the page is now committed.
    async fn commit_page(&mut self) -> StoreResult<bool> {
        if self.dry_run {
            return Ok(false);
        }
        if let Some(tx) = self.tx.take() {
            tx.commit().await?;
        }
        Ok(true)
    }

    /// The transaction to end the run in: the dry run's own, or a new one.
    async fn finish(mut self) -> StoreResult<Tx> {
        self.tx().await?;
        Ok(self.tx.take().expect("just begun"))
    }
}

/// A page's bills, built, and how many subscribers the page looked at.
struct BuiltPage {
    scanned: u64,
    bills: Vec<BillToWrite>,
}

/// Builds each page read until there are no more or the writer stops listening; returns
/// what was built in all. With `preview`, renders each bill's SMS as well, only to count it.
async fn build_pages(
    preview: Option<Arc<Renderer>>,
    rules: BillingRules,
    clock: Arc<dyn Clock>,
    month: BillingMonth,
    as_of: DateTime<Utc>,
    mut pages: Receiver<PageRead>,
    built: Sender<BuiltPage>,
) -> StoreResult<BuildReport> {
    let mut report = BuildReport::default();
    while let Some(page) = pages.recv().await {
        let page = page.await.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))?;
        let scanned = page.scanned;
        let preview = preview.clone();
        let built_at = clock.now();
        let (bills, so_far) = tokio::task::spawn_blocking(move || {
            let bills = build_page(&rules, month, as_of, built_at, page, &mut report);
            if let Some(renderer) = preview {
                for BuiltBill { bill, language, bill_sms, allowances, recent_average } in &bills {
                    // A preview counts parts without the large records, which the build does
                    // not read: it reads their totals.
                    let facts = BillFacts {
                        msisdn: &bill.msisdn,
                        language: *language,
                        month: month.to_string(),
                        period: bill.period,
                        summary: &bill.summary,
                        flags: &bill.flags,
                        allowances: *allowances,
                        itemized: &[],
                        spike: bill.spike,
                        recent_average: *recent_average,
                    };
                    render_bill_sms(&renderer, &facts, *bill_sms, DeliveryStatus::Pending, &mut report);
                }
            }
            (bills.into_iter().map(|b| b.bill).collect(), report)
        })
        .await
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
        report = so_far;
        if built.send(BuiltPage { scanned, bills }).await.is_err() {
            break;
        }
    }
    Ok(report)
}

/// A bill built, with what its SMS needs besides.
struct BuiltBill {
    bill: BillToWrite,
    language: Language,
    bill_sms: bool,
    allowances: Allowances,
    /// For a spike, the mean of the bills it was measured against.
    recent_average: Option<Fen>,
}

/// The bills of a page's subscribers who are due as of `as_of`, counted in `report`.
fn build_page(
    rules: &BillingRules,
    month: BillingMonth,
    as_of: DateTime<Utc>,
    built_at: DateTime<Utc>,
    page: Page,
    report: &mut BuildReport,
) -> Vec<BuiltBill> {
    let tz = rules.timezone;
    let Page { candidates, mut inputs, previous, .. } = page;
    let mut bills = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let period = billing_period(month, candidate.billing_day, tz);
        let due_at = period.end + rules.grace;
        if due_at > as_of {
            report.not_due += 1;
            report.next_due_at = Some(report.next_due_at.map_or(due_at, |t| t.min(due_at)));
            continue;
        }
        let mine = inputs.remove(&candidate.subscriber_id).unwrap_or_default();
        let summary = summarize_totals(&mine.charges, &mine.vas);
        let flags = flag_vas_charges(&mine.vas, &mine.orders, tz);
        let previous_totals = previous.get(&candidate.subscriber_id).map(Vec::as_slice).unwrap_or_default();
        let spike = rules.spike.is_spike(summary.total(), previous_totals);
        for flag in &flags {
            *report.flags.entry(flag.reason.as_str()).or_default() += 1;
        }
        report.spikes += u64::from(spike);
        report.billed += 1;
        report.total_fen += summary.total().get();
        bills.push(BuiltBill {
            recent_average: if spike { recent_mean(previous_totals) } else { None },
            language: candidate.language,
            bill_sms: candidate.bill_sms,
            allowances: Allowances {
                voice_minutes: candidate.voice_minutes,
                data_mb: candidate.data_mb,
                sms_count: candidate.sms_count,
            },
            bill: BillToWrite {
                subscriber_id: candidate.subscriber_id,
                month,
                msisdn: candidate.msisdn,
                period,
                summary,
                flags,
                spike,
                built_at,
            },
        });
    }
    bills
}

/// A bill's SMS as its notification will hold it, counted in `report`: `born` when it is to
/// be sent, `suppressed` for a subscriber who opted out, `failed` when even the short form is
/// too long.
fn render_bill_sms(
    renderer: &Renderer,
    facts: &BillFacts,
    bill_sms: bool,
    born: DeliveryStatus,
    report: &mut BuildReport,
) -> NotificationToWrite {
    let notification = match renderer.render_bill(facts) {
        RenderedSms::Fits { text, encoding, segments } => {
            let status = if bill_sms { born } else { DeliveryStatus::Suppressed };
            *report.by_segments.entry(segments).or_default() += 1;
            if bill_sms {
                report.keep_sample(SampleSms {
                    msisdn_masked: facts.msisdn.masked(),
                    language: facts.language,
                    segments,
                    text: text.clone(),
                });
            }
            NotificationToWrite {
                id: uuid::Uuid::now_v7().to_string(),
                kind: BILL_KIND.to_string(),
                status,
                reason: None,
                segments: segments as i64,
                encoding: Some(encoding),
                text,
            }
        }
        RenderedSms::TooLong { segments } => {
            tracing::warn!(msisdn = %facts.msisdn.masked(), segments, "bill SMS too long even in its short form");
            NotificationToWrite {
                id: uuid::Uuid::now_v7().to_string(),
                kind: BILL_KIND.to_string(),
                status: DeliveryStatus::Failed,
                reason: Some(NotSentReason::TooLong),
                segments: segments as i64,
                encoding: None,
                text: String::new(),
            }
        }
    };
    *report.by_status.entry(notification.status.as_str()).or_default() += 1;
    notification
}

/// An opted-out subscriber's flag notice, counted in `report` (apart from the bill SMS).
fn render_flag_notice(
    renderer: &Renderer,
    facts: &BillFacts,
    born: DeliveryStatus,
    report: &mut BuildReport,
) -> NotificationToWrite {
    report.flag_notices += 1;
    let mut notification = notification_of(FLAG_NOTICE_KIND, "", renderer.render_flag_notice(facts));
    if notification.status == DeliveryStatus::Pending {
        notification.status = born;
    }
    notification
}

/// What the SMS of a stored bill of `month` is made from.
pub fn bill_facts(bill: &UnnotifiedBill, month: BillingMonth) -> BillFacts<'_> {
    BillFacts {
        msisdn: &bill.msisdn,
        language: bill.language,
        month: month.to_string(),
        period: bill.period,
        summary: &bill.summary,
        flags: &bill.flags,
        allowances: Allowances { voice_minutes: bill.voice_minutes, data_mb: bill.data_mb, sms_count: bill.sms_count },
        itemized: &bill.itemized,
        spike: bill.spike,
        recent_average: bill.recent_average,
    }
}

/// Renders each page of bills read until there are no more or the writer stops listening;
/// returns what was rendered in all (statuses, segments, samples).
async fn render_pages(
    renderer: Arc<Renderer>,
    clock: Arc<dyn Clock>,
    rules: BillingRules,
    month: BillingMonth,
    born: DeliveryStatus,
    mut pages: Receiver<StoreResult<Vec<UnnotifiedBill>>>,
    rendered: Sender<Vec<BillNotification>>,
) -> StoreResult<BuildReport> {
    let mut report = BuildReport::default();
    while let Some(page) = pages.recv().await {
        let page = page?;
        // Tens of milliseconds of rendering: on a blocking thread, so that it does not hold
        // up one of the runtime's workers, and the pushes that run on them, for as long.
        let renderer = renderer.clone();
        let created_at = clock.now();
        let (notifications, so_far) = tokio::task::spawn_blocking(move || {
            let mut notifications = Vec::with_capacity(page.len());
            for bill in page {
                {
                    let facts = bill_facts(&bill, month);
                    let notification = render_bill_sms(&renderer, &facts, bill.bill_sms, born, &mut report);
                    let notice = (!bill.bill_sms
                        && rules.flag_notices == FlagNotices::ToOptedOut
                        && (!bill.flags.is_empty() || bill.spike))
                        .then(|| render_flag_notice(&renderer, &facts, born, &mut report));
                    for notification in std::iter::once(notification).chain(notice) {
                        notifications.push(BillNotification {
                            subscriber_id: bill.subscriber_id.clone(),
                            month,
                            msisdn: bill.msisdn.clone(),
                            created_at,
                            notification,
                        });
                    }
                }
            }
            (notifications, report)
        })
        .await
        .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
        report = so_far;
        if rendered.send(notifications).await.is_err() {
            break;
        }
    }
    Ok(report)
}

/// Reads the month's bills in `shard` that have no notification, page by page, on a
/// connection of its own, until there are no more or the renderer stops listening.
async fn read_unnotified(
    store: Store,
    month: BillingMonth,
    shard: Shard,
    itemize_min: Fen,
    pages: Sender<StoreResult<Vec<UnnotifiedBill>>>,
) {
    let mut connection = match store.connection().await {
        Ok(connection) => connection,
        Err(error) => return drop(pages.send(Err(error)).await),
    };
    let mut after = String::new();
    loop {
        let page =
            db::unnotified_bills(&mut connection, store.json_rows(), month, &after, PAGE_SIZE, itemize_min).await;
        let page = match page {
            Ok(page) => page,
            Err(error) => return drop(pages.send(Err(error)).await),
        };
        let Some(last) = page.last() else { return };
        after = last.subscriber_id.clone();
        let page: Vec<_> = page.into_iter().filter(|b| shard.contains(&b.subscriber_id)).collect();
        if pages.send(Ok(page)).await.is_err() {
            return;
        }
    }
}

/// One page of subscribers and everything their bills are made of.
struct Page {
    /// Subscribers looked at, in the shard or not.
    scanned: u64,
    candidates: Vec<db::BillingCandidate>,
    inputs: HashMap<String, BillInputs>,
    previous: HashMap<String, Vec<Fen>>,
}

/// Pages of inputs read at once. Reading a page's totals, VAS charges and orders is the longest
/// stage of the first pass; two reads at once keep the database's cores busy while billpush
/// builds one page and writes another.
const PAGES_READ_AT_ONCE: usize = 2;

/// A page being read, on a task of its own.
type PageRead = tokio::task::JoinHandle<StoreResult<Page>>;

/// Reads the month's unbilled subscribers page by page, until there are no more or the builder
/// stops listening. Each page's subscribers are found in key order, one page after another; the
/// rest of a page is read on a task and connection of its own, up to `PAGES_READ_AT_ONCE` at
/// once, and handed on in page order.
async fn read_pages(store: Store, month: BillingMonth, shard: Shard, tz: Tz, pages: Sender<PageRead>) {
    let failed = |error| tokio::spawn(std::future::ready(Err(error)));
    let totals_complete = match store.connection().await {
        Ok(mut connection) => store.usage_totals_complete(&mut connection).await,
        Err(error) => Err(error),
    };
    let totals_complete = match totals_complete {
        Ok(complete) => complete,
        Err(error) => return drop(pages.send(failed(error)).await),
    };
    let reads = Arc::new(tokio::sync::Semaphore::new(PAGES_READ_AT_ONCE));
    let mut after = String::new();
    loop {
        let candidates = match next_candidates(&store, month, &after).await {
            Ok(candidates) => candidates,
            Err(error) => return drop(pages.send(failed(error)).await),
        };
        let Some(last) = candidates.last() else { return };
        after = last.subscriber_id.clone();
        let read = reads.clone().acquire_owned().await.expect("the semaphore is never closed");
        let store = store.clone();
        let page = tokio::spawn(async move {
            let page = read_page(&store, month, shard, tz, totals_complete, candidates).await;
            drop(read);
            page
        });
        if pages.send(page).await.is_err() {
            return;
        }
    }
}

async fn next_candidates(store: &Store, month: BillingMonth, after: &str) -> StoreResult<Vec<db::BillingCandidate>> {
    let mut connection = store.connection().await?;
    db::unbilled_candidates(&mut connection, month, after, PAGE_SIZE).await
}

/// The rest of a page: what the bills of `candidates` in `shard` are made of.
async fn read_page(
    store: &Store,
    month: BillingMonth,
    shard: Shard,
    tz: Tz,
    totals_complete: bool,
    candidates: Vec<db::BillingCandidate>,
) -> StoreResult<Page> {
    let scanned = candidates.len() as u64;
    let candidates: Vec<_> = candidates.into_iter().filter(|c| shard.contains(&c.subscriber_id)).collect();
    let due: Vec<Due> = candidates
        .iter()
        .map(|c| Due {
            subscriber_id: &c.subscriber_id,
            billing_day: c.billing_day,
            period: billing_period(month, c.billing_day, tz),
        })
        .collect();
    let (inputs, previous) = match (candidates.first(), candidates.last()) {
        (Some(first), Some(last)) => {
            let mut connection = store.connection().await?;
            (
                db::bill_inputs(&mut connection, store.json_rows(), month, tz, &due, totals_complete).await?,
                db::previous_totals_between(&mut connection, &first.subscriber_id, &last.subscriber_id, month).await?,
            )
        }
        _ => Default::default(),
    };
    Ok(Page { scanned, candidates, inputs, previous })
}
