//! A month's figures for the overview and the flags page, counted in the background and kept
//! in memory: at a million notifications each count scans the month, and a page must not wait
//! for that. The latest month is recounted every `REFRESH`; any other month when it is viewed
//! and its figures are older than that, the view being answered with the figures at hand.

use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::api::ApiState;
use crate::app::App;
use crate::domain::period::{calendar_month, BillingMonth};
use crate::export::spam_numbers;
use crate::store::console::FlagGroup;

/// How old figures may be before they are counted again.
pub const REFRESH: chrono::Duration = chrono::Duration::seconds(15);
/// Service providers the flags page lists.
pub const PROVIDERS_SHOWN: i64 = 100;

/// What the month overview and the flags page show of a month.
#[derive(Debug, Clone)]
pub struct MonthFigures {
    pub bills: i64,
    pub total_fen: i64,
    pub spikes: i64,
    /// Notifications per status, in status order.
    pub deliveries: Vec<(String, i64)>,
    /// Accepted or delivered per local day of their last change: (days since 1970-01-01, count).
    pub days: Vec<(i64, i64)>,
    pub flags_by_reason: Vec<FlagGroup>,
    pub flags_by_provider: Vec<FlagGroup>,
    pub spam_flagged: usize,
    /// Parts of the month's SMS accepted or delivered so far.
    pub parts_sent: i64,
    /// Parts sent per second between the two latest counts, while that was more than none.
    pub parts_per_second: Option<f64>,
    pub counted_at: DateTime<Utc>,
}

impl MonthFigures {
    /// The figures of a month nothing was billed for.
    fn empty(at: DateTime<Utc>) -> MonthFigures {
        MonthFigures {
            bills: 0,
            total_fen: 0,
            spikes: 0,
            deliveries: Vec::new(),
            days: Vec::new(),
            flags_by_reason: Vec::new(),
            flags_by_provider: Vec::new(),
            spam_flagged: 0,
            parts_sent: 0,
            parts_per_second: None,
            counted_at: at,
        }
    }
}

/// Counts every figure of `month`.
async fn count(app: &App, month: BillingMonth) -> anyhow::Result<MonthFigures> {
    let store = &app.store;
    let tz = app.settings.timezone;
    let month_start = calendar_month(month, tz).start;
    let offset = chrono::Offset::fix(&chrono::TimeZone::offset_from_utc_datetime(&tz, &month_start.naive_utc()));
    let (bills, deliveries, days, (flags_by_reason, flags_by_provider), parts_sent) = tokio::try_join!(
        store.bill_totals(month),
        store.month_status_counts(month),
        store.deliveries_by_day(month, i64::from(offset.local_minus_utc())),
        store.flag_groups(month, PROVIDERS_SHOWN),
        store.parts_sent(month),
    )?;
    let spam_flagged = spam_numbers(store, &app.settings, month).await?.iter().filter(|n| n.flagged).count();
    Ok(MonthFigures {
        bills: bills.bills,
        total_fen: bills.total_fen,
        spikes: bills.spikes,
        deliveries,
        days,
        flags_by_reason,
        flags_by_provider,
        spam_flagged,
        parts_sent,
        parts_per_second: None,
        counted_at: app.clock().now(),
    })
}

/// Parts per second from one count of the parts sent to the next; none when nothing was sent.
fn rate(before: (i64, DateTime<Utc>), now: (i64, DateTime<Utc>)) -> Option<f64> {
    let seconds = (now.1 - before.1).num_milliseconds() as f64 / 1000.0;
    let parts = now.0 - before.0;
    (parts > 0 && seconds > 0.0).then(|| parts as f64 / seconds)
}

/// The figures of every month viewed since `serve` started.
#[derive(Default)]
pub struct FigureCache {
    months: Mutex<HashMap<BillingMonth, Arc<MonthFigures>>>,
    /// Months being counted again in the background, so that one count runs at a time.
    counting: Mutex<HashSet<BillingMonth>>,
    /// First counts wait their turn: views of many months at once count one after another.
    first_counts: tokio::sync::Mutex<()>,
}

impl FigureCache {
    fn cached(&self, month: BillingMonth) -> Option<Arc<MonthFigures>> {
        self.months.lock().expect("not poisoned").get(&month).cloned()
    }

    async fn recount(&self, app: &App, month: BillingMonth) -> anyhow::Result<Arc<MonthFigures>> {
        let mut figures = count(app, month).await?;
        if let Some(before) = self.cached(month) {
            figures.parts_per_second =
                rate((before.parts_sent, before.counted_at), (figures.parts_sent, figures.counted_at));
        }
        let figures = Arc::new(figures);
        self.months.lock().expect("not poisoned").insert(month, figures.clone());
        Ok(figures)
    }

    /// Counts the latest month billed every `REFRESH` until `stop`, so that its overview is
    /// always at hand.
    pub async fn keep_latest_counted(&self, app: &App, stop: CancellationToken) {
        loop {
            if let Ok(Some(month)) = app.store.runs().await.map(|runs| runs.first().and_then(|r| r.month.parse().ok()))
            {
                if let Err(error) = self.recount(app, month).await {
                    tracing::warn!(%error, %month, "console figures not counted");
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(REFRESH.to_std().expect("positive")) => {}
            }
        }
    }
}

/// The month's figures: counted now the first time, else as they stand, counted again in the
/// background when older than `REFRESH`.
pub async fn month_figures(state: &Arc<ApiState>, month: BillingMonth) -> anyhow::Result<Arc<MonthFigures>> {
    let cache = &state.figures;
    let Some(figures) = cache.cached(month) else {
        let _turn = cache.first_counts.lock().await;
        if let Some(figures) = cache.cached(month) {
            return Ok(figures);
        }
        // Only billed months are counted and kept: any other has nothing to count, and a
        // month typed into the address bar must not make the server count or remember it.
        let billed = state.app.store.runs().await?.iter().any(|run| run.month == month.to_string());
        if !billed {
            return Ok(Arc::new(MonthFigures::empty(state.app.clock().now())));
        }
        return cache.recount(&state.app, month).await;
    };
    if state.app.clock().now() - figures.counted_at > REFRESH
        && cache.counting.lock().expect("not poisoned").insert(month)
    {
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(error) = state.figures.recount(&state.app, month).await {
                tracing::warn!(%error, %month, "console figures not counted");
            }
            state.figures.counting.lock().expect("not poisoned").remove(&month);
        });
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_push_rate_is_the_parts_sent_between_two_counts_over_the_time_between_them() {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let later = at + chrono::Duration::seconds(15);
        assert_eq!(rate((1_000, at), (31_000, later)), Some(2_000.0));
        assert_eq!(rate((1_000, at), (1_000, later)), None, "nothing sent");
        assert_eq!(rate((1_000, at), (2_000, at)), None, "no time between");
    }
}
