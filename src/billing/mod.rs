//! Building a month's bills: for each due subscriber not yet billed, sum the period's
//! records, flag unexplained deductions, render the SMS, and write bill, flags and
//! notification together. Built bills are frozen; later runs skip them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use indicatif::ProgressBar;
use sqlx::AnyConnection;
use tokio::sync::mpsc::{Receiver, Sender};
use tokio::sync::Notify;

use crate::domain::bill::summarize_totals;
use crate::domain::category::Language;
use crate::domain::delivery::{DeliveryStatus, BILL_KIND};
use crate::domain::flags::{flag_vas_charges, SpikeRule};
use crate::domain::money::Fen;
use crate::domain::period::{billing_period, BillingMonth};
use crate::domain::shard::Shard;
use crate::render::{Allowances, BillFacts, RenderedSms, Renderer};
use crate::store::billing::{self as db, BillInputs, BillToWrite, Due, NotificationToWrite};
use crate::store::{Store, StoreResult};

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
    pub samples: Vec<SampleSms>,
}

impl BuildReport {
    fn keep_sample(&mut self, sample: SampleSms) {
        // Three samples, at least one in English when there is one.
        let has_english = self.samples.iter().any(|s| s.language == Language::En);
        if self.samples.len() < 2 || (self.samples.len() == 2 && (has_english || sample.language == Language::En)) {
            self.samples.push(sample);
        }
    }
}

/// What decides a bill besides its records: the timezone periods are cut in, the grace after
/// a period before its bill is due, and the spike rule.
#[derive(Debug, Clone, Copy)]
pub struct BillingRules {
    pub timezone: Tz,
    pub grace: chrono::Duration,
    pub spike: SpikeRule,
}

/// How a build hands each page it commits to the queueing that runs beside it.
pub enum Handoff<'a> {
    /// The page's notifications are written `pending`; this is told once the page is
    /// committed, and the scheduler queues them from the database after the broker confirms.
    Pending(&'a Notify),
    /// The page's notifications are written `queued`, and their ids are sent here once the page
    /// is committed, to be published at once. For a queue that dies with the process: its
    /// publish proves nothing a restart keeps, and the next `run` re-queues whatever a crash
    /// left `queued`. Saves every SMS a status change and an event on SQLite's one writer.
    Queued(Sender<Vec<String>>),
}

pub struct BillBuilder<'a> {
    pub store: &'a Store,
    pub renderer: Arc<Renderer>,
    pub rules: BillingRules,
}

impl BillBuilder<'_> {
    /// Builds every due, unbilled bill of `month` as of `as_of`, handing each committed page to
    /// `handoff`. A dry run does the same work in one transaction and rolls it back.
    pub async fn build_month(
        &self,
        month: BillingMonth,
        as_of: DateTime<Utc>,
        shard: Shard,
        dry_run: bool,
        progress: &ProgressBar,
        handoff: Option<Handoff<'_>>,
    ) -> StoreResult<BuildReport> {
        let born = match handoff {
            Some(Handoff::Queued(_)) => DeliveryStatus::Queued,
            _ => DeliveryStatus::Pending,
        };
        let run_id = uuid::Uuid::now_v7().to_string();
        // A dry run keeps one transaction open to roll back. Otherwise a transaction is open
        // only while a page is written, never while one is built: SQLite has one writer, and
        // the push of the pages already queued needs it too.
        let mut tx = Some(self.store.begin().await?);
        db::start_billing_run(tx.as_mut().expect("just begun"), &run_id, month, as_of, Utc::now()).await?;
        // PostgreSQL takes the pages by `COPY`, each in a transaction of its own.
        let mut copier = if dry_run { None } else { self.store.copier().await? };
        if copier.is_some() {
            tx.take().expect("just begun").commit().await?;
        }
        // Three stages at once, a page apart: the next page is read while this one is built
        // (flagged and rendered, on the CPU) and the one before is written. Pages are
        // disjoint key ranges, so reading ahead of the writes changes nothing that is read.
        let (pages, next_page) = tokio::sync::mpsc::channel(1);
        let reader = tokio::spawn(read_pages(self.store.clone(), month, shard, self.rules.timezone, pages));
        let (built_pages, mut next_built) = tokio::sync::mpsc::channel(1);
        let builder =
            tokio::spawn(build_pages(self.renderer.clone(), self.rules, month, as_of, born, next_page, built_pages));
        while let Some(BuiltPage { scanned, bills }) = next_built.recv().await {
            if !bills.is_empty() {
                match &mut copier {
                    Some(copier) => copier.copy_page(&bills).await?,
                    None => {
                        let tx = match &mut tx {
                            Some(tx) => tx,
                            None => tx.insert(self.store.begin().await?),
                        };
                        db::write_bills(tx, &bills).await?;
                    }
                }
            }
            progress.inc(scanned);
            if !dry_run {
                if let Some(written) = tx.take() {
                    written.commit().await?;
                }
                match &handoff {
                    Some(Handoff::Pending(committed)) => committed.notify_one(),
                    Some(Handoff::Queued(publish)) => {
                        let queued: Vec<String> = bills
                            .iter()
                            .filter(|b| b.notification.status == born.as_str())
                            .map(|b| b.notification.id.clone())
                            .collect();
                        // A publisher that stopped has its own error to report; the page stays
                        // `queued` in the database for the next run to re-queue.
                        if !queued.is_empty() {
                            let _ = publish.send(queued).await;
                        }
                    }
                    None => {}
                }
            }
        }
        let report = builder.await.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))?;
        reader.await.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
        let mut tx = match tx {
            Some(tx) => tx,
            None => self.store.begin().await?,
        };
        db::finish_billing_run(&mut tx, &run_id, Utc::now(), report.billed, report.not_due).await?;
        if dry_run {
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok(report)
    }
}

/// A page's bills, built, and how many subscribers the page looked at.
struct BuiltPage {
    scanned: u64,
    bills: Vec<BillToWrite>,
}

/// Builds each page read until there are no more or the writer stops listening; returns
/// what was built in all.
async fn build_pages(
    renderer: Arc<Renderer>,
    rules: BillingRules,
    month: BillingMonth,
    as_of: DateTime<Utc>,
    born: DeliveryStatus,
    mut pages: Receiver<StoreResult<Page>>,
    built: Sender<BuiltPage>,
) -> StoreResult<BuildReport> {
    let mut report = BuildReport::default();
    while let Some(page) = pages.recv().await {
        let page = page?;
        let scanned = page.scanned;
        // Tens of milliseconds of rendering: on a blocking thread, so that it does not hold
        // up one of the runtime's workers, and the pushes that run on them, for as long.
        let renderer = renderer.clone();
        let (bills, so_far) = tokio::task::spawn_blocking(move || {
            let bills = build_page(&renderer, &rules, month, as_of, born, page, &mut report);
            (bills, report)
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

/// The bills of a page's subscribers who are due as of `as_of`, counted in `report`; an SMS
/// to send is written with the status `born`.
fn build_page(
    renderer: &Renderer,
    rules: &BillingRules,
    month: BillingMonth,
    as_of: DateTime<Utc>,
    born: DeliveryStatus,
    page: Page,
    report: &mut BuildReport,
) -> Vec<BillToWrite> {
    let tz = rules.timezone;
    let Page { candidates, mut inputs, previous, .. } = page;
    let built_at = Utc::now();
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
        let facts = BillFacts {
            msisdn: &candidate.msisdn,
            language: candidate.language,
            month: month.to_string(),
            period,
            summary: &summary,
            flags: &flags,
            allowances: Allowances {
                voice_minutes: candidate.voice_minutes,
                data_mb: candidate.data_mb,
                sms_count: candidate.sms_count,
            },
        };
        let notification = match renderer.render_bill(&facts) {
            RenderedSms::Fits { text, encoding, segments } => {
                let status = if candidate.bill_sms { born } else { DeliveryStatus::Suppressed };
                *report.by_segments.entry(segments).or_default() += 1;
                if candidate.bill_sms {
                    report.keep_sample(SampleSms {
                        msisdn_masked: candidate.msisdn.masked(),
                        language: candidate.language,
                        segments,
                        text: text.clone(),
                    });
                }
                NotificationToWrite {
                    id: uuid::Uuid::now_v7().to_string(),
                    kind: BILL_KIND.to_string(),
                    status: status.as_str(),
                    reason: None,
                    segments: segments as i64,
                    encoding: encoding.as_str(),
                    text,
                }
            }
            RenderedSms::TooLong { segments } => {
                tracing::warn!(subscriber = %candidate.subscriber_id, segments, "bill SMS too long even in its short form");
                NotificationToWrite {
                    id: uuid::Uuid::now_v7().to_string(),
                    kind: BILL_KIND.to_string(),
                    status: DeliveryStatus::Failed.as_str(),
                    reason: Some("too_long"),
                    segments: segments as i64,
                    encoding: "",
                    text: String::new(),
                }
            }
        };
        *report.by_status.entry(notification.status).or_default() += 1;
        for flag in &flags {
            *report.flags.entry(flag.reason.as_str()).or_default() += 1;
        }
        report.spikes += u64::from(spike);
        report.billed += 1;
        report.total_fen += summary.total().get();
        bills.push(BillToWrite {
            subscriber_id: candidate.subscriber_id,
            month,
            msisdn: candidate.msisdn,
            period,
            summary,
            flags,
            spike,
            built_at,
            notification,
        });
    }
    bills
}

/// One page of subscribers and everything their bills are made of.
struct Page {
    /// Subscribers looked at, in the shard or not.
    scanned: u64,
    candidates: Vec<db::BillingCandidate>,
    inputs: HashMap<String, BillInputs>,
    previous: HashMap<String, Vec<Fen>>,
}

/// Reads the month's unbilled subscribers page by page, on a connection of its own, until
/// there are no more or the builder stops listening.
async fn read_pages(store: Store, month: BillingMonth, shard: Shard, tz: Tz, pages: Sender<StoreResult<Page>>) {
    let mut connection = match store.connection().await {
        Ok(connection) => connection,
        Err(error) => return drop(pages.send(Err(error)).await),
    };
    let totals_complete = match store.usage_totals_complete(&mut connection).await {
        Ok(complete) => complete,
        Err(error) => return drop(pages.send(Err(error)).await),
    };
    let mut after = String::new();
    loop {
        let page = read_page(&store, &mut connection, month, shard, tz, totals_complete, &mut after).await;
        let done = matches!(&page, Ok(None) | Err(_));
        let Some(page) = page.transpose() else { return };
        if pages.send(page).await.is_err() || done {
            return;
        }
    }
}

async fn read_page(
    store: &Store,
    connection: &mut AnyConnection,
    month: BillingMonth,
    shard: Shard,
    tz: Tz,
    totals_complete: bool,
    after: &mut String,
) -> StoreResult<Option<Page>> {
    let candidates = db::unbilled_candidates(connection, month, after, PAGE_SIZE).await?;
    let Some(last) = candidates.last() else { return Ok(None) };
    *after = last.subscriber_id.clone();
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
        (Some(first), Some(last)) => (
            db::bill_inputs(connection, store.json_rows(), month, tz, &due, totals_complete).await?,
            db::previous_totals_between(connection, &first.subscriber_id, &last.subscriber_id, month).await?,
        ),
        _ => Default::default(),
    };
    Ok(Some(Page { scanned, candidates, inputs, previous }))
}
