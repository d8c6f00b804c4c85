//! Usage alerts (docs/contract.md §12): each evaluation looks at every subscriber who gets
//! them, at the billing period holding the evaluation's time, and raises an alert per metric
//! whose thresholds were newly reached: the highest is sent, the lower ones are `covered`.
//! What is raised is written with its notification in one transaction, then published
//! through the `Dispatcher`; one alert per (subscriber, period, metric, threshold), kept by
//! the table's key and by a lease that lets one evaluation run at a time.
//!
//! Usage comes from the totals the import keeps per subscriber and month, which hold every
//! record imported so far. Quantities and `other` amounts are never negative, so they are an
//! upper bound of the usage up to the evaluation's time, and a subscriber whose totals reach
//! no new threshold reaches none; for those whose totals do (or who have a refund dated after
//! that time, or totals summed under another billing day), the records up to that time are
//! summed instead.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::clock::Clock;
use crate::dispatch::{notification_of, DispatchError, Dispatcher};
use crate::domain::alerts::{new_alerts, Metric, NewAlerts, Thresholds, UsageSoFar};
use crate::domain::delivery::{DeliveryStatus, USAGE_ALERT_KIND};
use crate::domain::msisdn::Msisdn;
use crate::domain::period::{billing_period, MonthFinder, Period};
use crate::queue::Queue;
use crate::render::{AlertFacts, Renderer};
use crate::schedule::{new_holder, take_lease};
use crate::store::alerts::{AlertSubscriber, RaisedAlert};
use crate::store::notifications::BillNotification;
use crate::store::usage::basis;
use crate::store::{Store, StoreError};

/// Subscribers evaluated per page.
const PAGE: i64 = 10_000;
/// The lease that keeps two evaluations from raising the same alert at once.
const LEASE: &str = "usage alerts";

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
    #[error("{0}")]
    Lease(String),
}

/// What one evaluation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertReport {
    /// Subscribers looked at (active, with `alert_sms`).
    pub evaluated: u64,
    /// Alerts raised and written to be sent (one per metric per subscriber at most).
    pub raised: u64,
    /// Lower thresholds reached with a higher one: recorded, never sent.
    pub covered: u64,
    /// Unsent alerts overtaken by a higher one of the same metric: `expired`.
    pub overtaken: u64,
    /// Alerts handed to the queue, those left pending by an earlier evaluation included.
    pub queued: u64,
    /// Another evaluation held the lease: nothing was done.
    pub skipped: bool,
}

pub struct Alerts<'a> {
    pub store: &'a Store,
    pub renderer: &'a Renderer,
    /// The evaluation's time, also for its notifications' steps.
    pub clock: &'a dyn Clock,
    /// The time the lease is judged by: the process's own clock, whatever time the
    /// evaluation is made as of.
    pub lease_clock: &'a dyn Clock,
    pub timezone: Tz,
    pub thresholds: &'a Thresholds,
    /// Where alerts are published; `None` leaves them `pending` for the next evaluation.
    pub queue: Option<&'a dyn Queue>,
}

/// One subscriber of a page with the period that holds the evaluation's time.
struct Placed<'s> {
    subscriber: &'s AlertSubscriber,
    month: crate::domain::period::BillingMonth,
    period: Period,
}

impl Alerts<'_> {
    fn dispatcher(&self) -> Dispatcher<'_> {
        Dispatcher { store: self.store, queue: self.queue, clock: self.clock }
    }

    /// Evaluates every subscriber at the clock's time, writes what is raised and queues it.
    pub async fn evaluate(&self) -> Result<AlertReport, AlertError> {
        let as_of = self.clock.now();
        let holder = new_holder();
        if !self.keep_lease(&holder).await? {
            return Ok(AlertReport { skipped: true, ..AlertReport::default() });
        }
        let report = self.evaluate_all(as_of, &holder).await;
        self.store.release_lock(LEASE, &holder).await?;
        report
    }

    /// Takes or renews the lease; false while another evaluation holds it.
    async fn keep_lease(&self, holder: &str) -> Result<bool, AlertError> {
        take_lease(self.store, LEASE, holder, self.lease_clock.now())
            .await
            .map_err(|e| AlertError::Lease(format!("{e:#}")))
    }

    async fn evaluate_all(&self, as_of: DateTime<Utc>, holder: &str) -> Result<AlertReport, AlertError> {
        let mut report = AlertReport::default();
        // Alerts an earlier evaluation wrote and could not hand over go first.
        report.queued += self.publish_left_pending().await?;
        let complete = {
            let mut connection = self.store.connection().await?;
            self.store.usage_totals_complete(&mut connection).await?
        };
        let mut finder = MonthFinder::new(self.timezone);
        let mut after = String::new();
        loop {
            let page = self.store.alert_subscribers(&after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.subscriber_id.clone();
            // Renewed page by page, so that a long evaluation keeps it.
            if !self.keep_lease(holder).await? {
                return Err(AlertError::Lease("another evaluation took over the usage alerts lease".into()));
            }
            report.evaluated += page.len() as u64;
            let placed: Vec<Placed> = page
                .iter()
                .map(|subscriber| {
                    let month = finder.month_of(as_of, subscriber.billing_day);
                    let period = billing_period(month, subscriber.billing_day, self.timezone);
                    Placed { subscriber, month, period }
                })
                .collect();
            self.evaluate_page(&placed, as_of, complete, &mut report).await?;
        }
        Ok(report)
    }

    async fn evaluate_page(
        &self,
        placed: &[Placed<'_>],
        as_of: DateTime<Utc>,
        complete: bool,
        report: &mut AlertReport,
    ) -> Result<(), AlertError> {
        let ids: Vec<&str> = placed.iter().map(|p| p.subscriber.subscriber_id.as_str()).collect();
        let (Some(first), Some(last), Some(until)) =
            (ids.first(), ids.last(), placed.iter().map(|p| p.period.end).max())
        else {
            return Ok(());
        };
        let months: Vec<String> =
            placed.iter().map(|p| p.month.to_string()).collect::<BTreeSet<_>>().into_iter().collect();
        let period_of: HashMap<&str, Period> =
            placed.iter().map(|p| (p.subscriber.subscriber_id.as_str(), p.period)).collect();
        let page_alerts = self.store.page_alerts(&ids, &months).await?;
        let key = |p: &Placed, metric: Metric| (p.subscriber.subscriber_id.clone(), p.month.to_string(), metric);
        let known_of = |p: &Placed, metric: Metric| -> Vec<i64> {
            page_alerts.get(&key(p, metric)).into_iter().flatten().map(|(threshold, _)| *threshold).collect()
        };
        let new_alerts_of = |p: &Placed, so_far: &UsageSoFar| -> Vec<NewAlerts> {
            Metric::ALL
                .into_iter()
                .filter_map(|metric| {
                    new_alerts(metric, so_far, &p.subscriber.plan, self.thresholds, &known_of(p, metric))
                })
                .collect()
        };

        // VAS charges are not in the totals: summed from the records, up to `as_of`.
        let mut vas: HashMap<String, UsageSoFar> = HashMap::new();
        for (id, category, quantity, amount) in self.store.alert_sums(&starts(&period_of, &ids), as_of, true).await? {
            vas.entry(id).or_default().add(category, quantity, amount);
        }
        // Records imported under another billing day may lie in the months beside the period's.
        let around: Vec<String> = placed
            .iter()
            .flat_map(|p| [p.month.previous(), p.month, p.month.next()])
            .map(|m| m.to_string())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let totals = if complete { self.store.alert_totals(&ids, &around).await? } else { HashMap::new() };
        // Quantities are never negative and `other` amounts neither, so the sums are at least the
        // usage up to `as_of`, unless a refund (a negative adjustment) is dated after it.
        let refunded: std::collections::HashSet<String> = self
            .store
            .refunds_between(first, last, as_of, until)
            .await?
            .into_iter()
            .filter(|(id, at)| period_of.get(id.as_str()).is_some_and(|period| *at < period.end))
            .map(|(id, _)| id)
            .collect();
        // Those the totals cannot decide: the rest reach no new threshold.
        let mut exact: Vec<&Placed> = Vec::new();
        for p in placed {
            let id = p.subscriber.subscriber_id.as_str();
            let month = p.month.to_string();
            let current = basis(p.subscriber.billing_day, self.timezone);
            let rows: Vec<_> = totals.get(id).into_iter().flatten().collect();
            let row = rows.iter().find(|row| row.month == month && row.basis == current);
            let bounded = complete && rows.iter().all(|row| row.basis == current) && !refunded.contains(id);
            let mut so_far = row.map(|r| r.usage).unwrap_or_default();
            add(&mut so_far, vas.get(id));
            if !bounded || !new_alerts_of(p, &so_far).is_empty() {
                exact.push(p);
            }
        }
        // Their records up to `as_of` decide.
        let exact_ids: Vec<&str> = exact.iter().map(|p| p.subscriber.subscriber_id.as_str()).collect();
        let mut summed: HashMap<String, UsageSoFar> = HashMap::new();
        for (id, category, quantity, amount) in
            self.store.alert_sums(&starts(&period_of, &exact_ids), as_of, false).await?
        {
            summed.entry(id).or_default().add(category, quantity, amount);
        }
        let mut raised: Vec<(&Placed, NewAlerts)> = Vec::new();
        for p in exact {
            let id = p.subscriber.subscriber_id.as_str();
            let mut so_far = summed.get(id).copied().unwrap_or_default();
            add(&mut so_far, vas.get(id));
            raised.extend(new_alerts_of(p, &so_far).into_iter().map(|new| (p, new)));
        }
        if raised.is_empty() {
            return Ok(());
        }
        // An alert of a lower threshold of the metric is overtaken if it is still unsent; one of
        // a higher threshold (the thresholds were changed since) is left to be sent.
        let lower: Vec<String> = raised
            .iter()
            .flat_map(|(p, new)| {
                page_alerts
                    .get(&key(p, new.metric))
                    .into_iter()
                    .flatten()
                    .filter(|(threshold, _)| *threshold < new.sent)
                    .filter_map(|(_, notification)| notification.clone())
            })
            .collect();
        let overtaken = self.store.unsent(&lower).await?;
        let mut alerts = Vec::new();
        let mut notifications = Vec::new();
        for (p, new) in &raised {
            let s = p.subscriber;
            let msisdn = Msisdn::from_stored(s.msisdn.clone());
            let rendered = self.renderer.render_alert(&AlertFacts {
                msisdn: &msisdn,
                language: s.language,
                metric: new.metric,
                value: new.value,
                allowance: new.allowance,
                threshold: new.sent,
                raised_at: as_of,
            });
            let subject = format!("{}:{}", new.metric, new.sent);
            let notification = notification_of(USAGE_ALERT_KIND, &subject, rendered);
            let alert = |threshold: i64, notification_id: Option<String>| RaisedAlert {
                subscriber_id: s.subscriber_id.clone(),
                month: p.month,
                metric: new.metric,
                threshold,
                value: new.value,
                allowance: new.allowance,
                raised_at: as_of,
                notification_id,
            };
            alerts.push(alert(new.sent, Some(notification.id.clone())));
            alerts.extend(new.covered.iter().map(|threshold| alert(*threshold, None)));
            notifications.push(BillNotification {
                subscriber_id: s.subscriber_id.clone(),
                month: p.month,
                msisdn,
                created_at: as_of,
                notification,
            });
            report.raised += 1;
            report.covered += new.covered.len() as u64;
        }
        report.overtaken += overtaken.len() as u64;
        self.store.write_alerts(&alerts, &notifications, &overtaken, as_of).await?;
        let pending: Vec<String> = notifications
            .iter()
            .filter(|n| n.notification.status == DeliveryStatus::Pending)
            .map(|n| n.notification.id.clone())
            .collect();
        self.dispatcher().publish_pending(&pending).await?;
        if self.queue.is_some() {
            report.queued += pending.len() as u64;
        }
        Ok(())
    }

    /// Publishes the alerts left `pending` by an evaluation that stopped (or whose publish
    /// failed) after writing them; with a queue that does not outlive its process, also those
    /// left `queued` or `sending` by a process that is gone. A copy too many finds its alert sent already.
    async fn publish_left_pending(&self) -> Result<u64, AlertError> {
        let Some(queue) = self.queue else { return Ok(0) };
        let mut queued = 0;
        let mut after = String::new();
        loop {
            let ids = self.store.alerts_in(DeliveryStatus::Pending, &after, 1000).await?;
            let Some(last) = ids.last() else { break };
            after = last.clone();
            self.dispatcher().publish_pending(&ids).await?;
            queued += ids.len() as u64;
        }
        if !queue.durable() {
            // Being sent when the process stopped: the claim decides whether a lease still
            // holds them or they go again.
            for status in [DeliveryStatus::Queued, DeliveryStatus::Sending] {
                let mut after = String::new();
                loop {
                    let ids = self.store.alerts_in(status, &after, 1000).await?;
                    let Some(last) = ids.last() else { break };
                    after = last.clone();
                    self.dispatcher().publish_queued(&ids).await?;
                    queued += ids.len() as u64;
                }
            }
        }
        Ok(queued)
    }
}

/// The subscribers of `ids` with the start of each one's period.
fn starts<'a>(period_of: &HashMap<&'a str, Period>, ids: &[&'a str]) -> Vec<(&'a str, DateTime<Utc>)> {
    ids.iter().filter_map(|id| period_of.get(id).map(|period| (*id, period.start))).collect()
}

fn add(usage: &mut UsageSoFar, more: Option<&UsageSoFar>) {
    if let Some(more) = more {
        usage.data_kb += more.data_kb;
        usage.voice_minutes += more.voice_minutes;
        usage.sms_count += more.sms_count;
        usage.spend_fen += more.spend_fen;
    }
}
