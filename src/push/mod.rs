//! The push worker: takes deliveries off the queue, claims their notifications in the
//! database, pushes them to the gateway within the rate limit, records each outcome, and only
//! then acks. Failures are retried later through the queue with exponential backoff and
//! jitter, up to `gateway.max_attempts`; then the notification fails and its id goes to the
//! dead-letter queue.

mod rate;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, FuturesUnordered, StreamExt};
use rand::Rng;
use tokio_util::sync::CancellationToken;

pub use rate::PartLimiter;

use crate::clock::Clock;
use crate::domain::delivery::Idempotency;
use crate::domain::msisdn::Msisdn;
use crate::domain::quiet_hours::QuietHours;
use crate::gateway::{Gateway, GatewayError, OutboundSms};
use crate::progress::Progress;
use crate::queue::{Delivery, Queue, QueueError, QueueMessage};
use crate::store::notifications::{self as db, Claim, OutboundRow};
use crate::store::{Store, StoreResult};

/// Messages of one delivery pushed concurrently: enough to hide gateway latency.
pub const CONCURRENCY: usize = 32;
/// Queue messages a worker pushes at once (the broker's prefetch is twice this).
pub const PARALLEL_DELIVERIES: usize = 4;
/// How long a worker asked to stop still waits for the broker to take a delivery's retries.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The longest retry delay.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushCounts {
    pub accepted: u64,
    pub failed: u64,
    pub unknown: u64,
    pub retried: u64,
    /// Ids whose notification was already handled: a redelivery, pushed by nobody again.
    pub already_handled: u64,
}

impl PushCounts {
    fn add(&mut self, other: PushCounts) {
        self.accepted += other.accepted;
        self.failed += other.failed;
        self.unknown += other.unknown;
        self.retried += other.retried;
        self.already_handled += other.already_handled;
    }
}

pub struct Pusher {
    pub store: Store,
    pub queue: Arc<dyn Queue>,
    pub gateway: Arc<dyn Gateway>,
    pub limiter: Arc<PartLimiter>,
    pub clock: Arc<dyn Clock>,
    pub quiet_hours: QuietHours,
    pub sender: String,
    pub max_attempts: i64,
    pub retry_base: Duration,
    /// How long a claim protects a notification being sent from other workers.
    pub lease: Duration,
    /// `alerts.max_age`: a usage alert raised longer ago is not sent but `expired`.
    pub alert_max_age: chrono::Duration,
}

/// What happened to one message at the gateway.
enum Outcome {
    Accepted(String),
    Retry { reason: String, not_before: Option<Duration> },
    Failed(String),
    Unknown(String),
}

/// `base × 2^(attempt-1)`, capped, with "equal jitter": between half and all of it, so that
/// messages failed together do not come back together.
pub fn backoff(base: Duration, attempt: i64) -> Duration {
    let exponent = u32::try_from(attempt.clamp(1, 20) - 1).expect("clamped");
    let full = base.saturating_mul(2u32.saturating_pow(exponent)).min(MAX_BACKOFF);
    let half = full / 2;
    half + full.saturating_sub(half).mul_f64(rand::rng().random::<f64>())
}

impl Pusher {
    /// Consumes until `stop` is cancelled (or an in-process queue is closed and drained),
    /// pushing up to `PARALLEL_DELIVERIES` queue messages at once so that one slow answer
    /// does not hold up the rest. A delivery taken is always finished before stopping; when
    /// one fails, no more are taken, the others in hand are finished, and the first failure
    /// is returned.
    pub async fn drain(&self, stop: &CancellationToken, progress: &dyn Progress) -> anyhow::Result<PushCounts> {
        let mut counts = PushCounts::default();
        // Cancelled when a delivery fails: no more are taken.
        let fetching = stop.child_token();
        let mut in_flight = FuturesUnordered::new();
        // The pending fetch survives loop turns, so a delivery is never dropped half-taken.
        let mut fetch = None;
        let mut open = true;
        let mut failure = None;
        loop {
            if fetch.is_none() && open && in_flight.len() < PARALLEL_DELIVERIES {
                fetch = Some(Box::pin(self.queue.next(&fetching)));
            }
            if fetch.is_none() && in_flight.is_empty() {
                return failure.map_or(Ok(counts), Err);
            }
            tokio::select! {
                Some(batch) = in_flight.next(), if !in_flight.is_empty() => match batch as anyhow::Result<PushCounts> {
                    Ok(batch) => {
                        progress.inc(batch.accepted + batch.failed + batch.unknown);
                        counts.add(batch);
                    }
                    Err(error) => {
                        failure.get_or_insert(error);
                        fetching.cancel();
                    }
                },
                next = async { fetch.as_mut().expect("guarded").await }, if fetch.is_some() => {
                    fetch = None;
                    match next? {
                        Some(delivery) => in_flight.push(self.push_delivery(delivery, stop)),
                        None => open = false,
                    }
                }
            }
        }
    }

    async fn wait_out_quiet_hours(&self) {
        if let Some(resume) = self.quiet_hours.resumes_at(self.clock.now()) {
            tracing::info!(%resume, "quiet hours: messages wait until they end");
            self.clock.sleep_until(resume).await;
        }
    }

    fn outcome(&self, row: &OutboundRow, result: Result<String, GatewayError>) -> Outcome {
        let exhausted = row.attempts >= self.max_attempts;
        let retry = |reason: String, not_before| {
            if exhausted {
                Outcome::Failed(reason)
            } else {
                Outcome::Retry { reason, not_before }
            }
        };
        match result {
            Ok(message_id) => Outcome::Accepted(message_id),
            Err(GatewayError::RateLimited { retry_after }) => retry("gateway asked to slow down".into(), retry_after),
            Err(GatewayError::Transient(reason)) => retry(reason, None),
            Err(GatewayError::Ambiguous(reason)) if self.gateway.idempotency() == Idempotency::Honoured => {
                retry(reason, None)
            }
            // The gateway may hold the message and would not recognise a resend: never resend.
            Err(GatewayError::Ambiguous(reason)) => Outcome::Unknown(reason),
            Err(GatewayError::Permanent(reason)) => Outcome::Failed(reason),
        }
    }

    /// Waits for the rate limit, then pushes one message.
    async fn send_one(&self, row: OutboundRow) -> (OutboundRow, Outcome, Duration) {
        self.limiter.wait_for(u32::try_from(row.segments).unwrap_or(u32::MAX)).await;
        let sms = OutboundSms {
            id: &row.id,
            to: &row.msisdn,
            from: &self.sender,
            text: &row.text,
            encoding: &row.encoding,
            segments: row.segments,
        };
        let started = std::time::Instant::now();
        let result = self.gateway.send(&sms).await;
        let took = started.elapsed();
        let outcome = self.outcome(&row, result);
        (row, outcome, took)
    }

    /// Pushes one delivery and acks it once every outcome is recorded and every retry queued.
    /// If the retries cannot be queued (the broker gone past its patience, or past
    /// `STOP_GRACE` once `stop` is cancelled), every other outcome is still recorded, the
    /// retries' notifications stay claimed under their lease, and the delivery is not acked:
    /// it comes again, or the scheduler queues them again once the lease runs out.
    pub async fn push_delivery(&self, delivery: Delivery, stop: &CancellationToken) -> anyhow::Result<PushCounts> {
        self.wait_out_quiet_hours().await;
        let ids = &delivery.message.notification_ids;
        let now = self.clock.now();
        let lease_until = now + chrono::Duration::from_std(self.lease).expect("lease fits");
        let idempotency = self.gateway.idempotency();
        let alerts_since = now.checked_sub_signed(self.alert_max_age).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let terms = db::ClaimTerms { now, lease_until, idempotency, alerts_since, sender: &self.sender };
        let claim = retry_on_conflict(|| async {
            if let Some(claimed) = db::claim_all_at_once(&self.store, ids, &terms).await? {
                return Ok(Claim { claimed, ..Claim::default() });
            }
            let mut tx = self.store.begin().await?;
            let claim = db::claim_for_sending(&mut tx, ids, &terms).await?;
            tx.commit().await?;
            Ok(claim)
        })
        .await?;
        let mut counts = PushCounts {
            unknown: claim.unknown.len() as u64,
            already_handled: (ids.len() - claim.claimed.len() - claim.busy.len() - claim.unknown.len()) as u64,
            ..PushCounts::default()
        };

        let outcomes: Vec<(OutboundRow, Outcome, Duration)> =
            stream::iter(claim.claimed).map(|row| self.send_one(row)).buffer_unordered(CONCURRENCY).collect().await;
        // What the gateway accepted must be durable there before it is recorded as accepted.
        let flushed = self.gateway.flush().await;
        let outcomes: Vec<_> = outcomes
            .into_iter()
            .map(|(row, outcome, took)| match (&flushed, outcome) {
                (Err(error), Outcome::Accepted(_)) => {
                    let outcome = self.outcome(&row, Err(error.clone()));
                    (row, outcome, took)
                }
                (_, outcome) => (row, outcome, took),
            })
            .collect();

        // Retries and dead letters are queued before the outcomes are written, so a crash in
        // between leaves claimed rows whose lease runs out and a message that finds them.
        let mut retry_after = claim.busy_until.map(|until| (until - now).to_std().unwrap_or_default());
        let mut retry_ids = claim.busy.clone();
        let mut dead_ids = Vec::new();
        for (row, outcome, _) in &outcomes {
            match outcome {
                Outcome::Retry { not_before, .. } => {
                    let delay = backoff(self.retry_base, row.attempts).max(not_before.unwrap_or_default());
                    retry_after = Some(retry_after.map_or(delay, |d| d.max(delay)));
                    retry_ids.push(row.id.clone());
                }
                Outcome::Failed(_) => dead_ids.push(row.id.clone()),
                Outcome::Accepted(_) | Outcome::Unknown(_) => {}
            }
        }
        let retry = (!retry_ids.is_empty()).then(|| {
            // A gateway's Retry-After is honoured up to the longest delay the queue holds.
            let delay = retry_after.unwrap_or(self.retry_base).min(crate::queue::LONGEST_DELAY);
            (QueueMessage { notification_ids: retry_ids }, delay)
        });
        let dead = (!dead_ids.is_empty()).then_some(QueueMessage { notification_ids: dead_ids });
        let queued = self.queue_later(retry, dead, stop).await;
        let outcomes: Vec<_> = match queued {
            Ok(()) => outcomes,
            Err(_) => {
                outcomes.into_iter().filter(|(_, outcome, _)| !matches!(outcome, Outcome::Retry { .. })).collect()
            }
        };

        let at = self.clock.now();
        let mut accepted = Vec::with_capacity(outcomes.len());
        for (row, outcome, took) in &outcomes {
            record_metrics(row, outcome, *took);
            match outcome {
                Outcome::Accepted(message_id) => {
                    accepted.push((row.id.as_str(), message_id.as_str()));
                    counts.accepted += 1;
                }
                Outcome::Retry { .. } => counts.retried += 1,
                Outcome::Failed(reason) => {
                    log_refusal(row, reason);
                    counts.failed += 1;
                }
                Outcome::Unknown(reason) => {
                    log_refusal(row, reason);
                    counts.unknown += 1;
                }
            }
        }
        retry_on_conflict(|| self.write_outcomes(&outcomes, &accepted, at)).await?;
        queued?;
        if let Err(error) = delivery.ack().await {
            // The message will come again and find its notifications settled.
            tracing::warn!(%error, "ack failed after the outcomes were recorded");
        }
        Ok(counts)
    }

    /// Queues a delivery's retries (after `delay`) and dead letters. A worker asked to stop
    /// gives the broker `STOP_GRACE` more, so that a broker gone away cannot hold it.
    async fn queue_later(
        &self,
        retry: Option<(QueueMessage, Duration)>,
        dead: Option<QueueMessage>,
        stop: &CancellationToken,
    ) -> Result<(), QueueError> {
        let publish = async {
            if let Some((message, delay)) = &retry {
                self.queue.publish_later(message, *delay).await?;
            }
            if let Some(message) = &dead {
                self.queue.publish_dead(message).await?;
            }
            Ok(())
        };
        let given_up = async {
            stop.cancelled().await;
            tokio::time::sleep(STOP_GRACE).await;
        };
        tokio::select! {
            result = publish => result,
            () = given_up => Err(QueueError::Abandoned),
        }
    }

    /// Writes a delivery's outcomes in one transaction.
    async fn write_outcomes(
        &self,
        outcomes: &[(OutboundRow, Outcome, Duration)],
        accepted: &[(&str, &str)],
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        // The usual case, one statement: no transaction, whose `BEGIN` and `COMMIT` would hold
        // SQLite's write lock while each crossed to its thread and back.
        if accepted.len() == outcomes.len() {
            let mut connection = self.store.connection().await?;
            return db::mark_all_accepted(&mut connection, accepted, at).await;
        }
        let mut tx = self.store.begin().await?;
        for (row, outcome, _) in outcomes {
            match outcome {
                Outcome::Accepted(_) => {}
                Outcome::Retry { reason, .. } => {
                    db::release_for_retry(&mut tx, std::slice::from_ref(&row.id), reason, at).await?
                }
                Outcome::Failed(reason) => db::mark_failed(&mut tx, &row.id, reason, at).await?,
                Outcome::Unknown(reason) => db::mark_unknown(&mut tx, &row.id, reason, at).await?,
            }
        }
        db::mark_all_accepted(&mut tx, accepted, at).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Runs a transaction again when the database broke a lock cycle with another one (two
/// copies of a queue message, redelivered after a broker restart, claimed at once): the
/// transaction was rolled back whole, so it is simply tried again, up to three more times.
async fn retry_on_conflict<T, F, Fut>(mut attempt: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(error) if error.is_lock_conflict() && retries < 3 => {
                retries += 1;
                tracing::info!(%error, retries, "transaction lost a lock conflict; trying again");
                tokio::time::sleep(Duration::from_millis(10 * retries)).await;
            }
            result => return result,
        }
    }
}

fn log_refusal(row: &OutboundRow, reason: &str) {
    let to = Msisdn::from_stored(row.msisdn.clone()).masked();
    tracing::warn!(notification = %row.id, %to, reason, attempts = row.attempts, "message not accepted");
}

fn record_metrics(row: &OutboundRow, outcome: &Outcome, took: Duration) {
    let status = match outcome {
        Outcome::Accepted(_) => "accepted",
        Outcome::Retry { .. } => "retry",
        Outcome::Failed(_) => "failed",
        Outcome::Unknown(_) => "unknown",
    };
    metrics::counter!("billpush_push_outcomes_total", "outcome" => status).increment(1);
    metrics::histogram!("billpush_push_latency_seconds").record(took.as_secs_f64());
    if matches!(outcome, Outcome::Accepted(_)) {
        metrics::counter!("billpush_parts_pushed_total").increment(u64::try_from(row.segments).unwrap_or(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_secs(1);
        for attempt in 1..=6 {
            let full = Duration::from_secs(1 << (attempt - 1));
            for _ in 0..50 {
                let delay = backoff(base, attempt);
                assert!(delay >= full / 2 && delay <= full, "attempt {attempt}: {delay:?}");
            }
        }
        assert!(backoff(base, 40) <= MAX_BACKOFF);
        assert!(backoff(base, 40) >= MAX_BACKOFF / 2);
    }
}
