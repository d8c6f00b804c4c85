//! Notifications and their events: how each is written (a page of bill SMS, or one reply) and
//! every change of its state. Every transition is a conditional UPDATE, so the database, not a
//! worker's memory, decides who sends a message and whether it was sent already. Every
//! transition is also written to `notification_events` with its time.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

use super::batch::{insert_values, Rows, Table, Value};
use super::json_rows::JsonRows;
use super::{from_micros, to_micros, Backend, Store, StoreError, StoreResult, Tx};
use crate::domain::delivery::{DeliveryStatus, Idempotency, NotSentReason, RECEIPT_BEFORE_ACCEPT};
use crate::domain::msisdn::Msisdn;
use crate::domain::period::BillingMonth;
use crate::domain::sms::Encoding;

/// A notification claimed for sending.
#[derive(Debug, Clone)]
pub struct OutboundRow {
    pub id: String,
    pub msisdn: String,
    pub text: String,
    pub encoding: String,
    pub segments: i64,
    /// Gateway attempts so far, this one included.
    pub attempts: i64,
}

/// What a claim found among the ids of a queue message.
#[derive(Debug, Default)]
pub struct Claim {
    pub claimed: Vec<OutboundRow>,
    /// Being sent by another worker whose lease has not run out; look again after `busy_until`.
    pub busy: Vec<String>,
    pub busy_until: Option<DateTime<Utc>>,
    /// A worker stopped while sending them to a gateway without idempotency: now `unknown`.
    pub unknown: Vec<String>,
}

async fn record_event(
    tx: &mut Tx,
    id: &str,
    month: &str,
    status: DeliveryStatus,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query("INSERT INTO notification_events (notification_id, month, status, at) VALUES ($1, $2, $3, $4)")
        .bind(id)
        .bind(month)
        .bind(status.as_str())
        .bind(to_micros(at))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// `update`, an `UPDATE notifications … RETURNING id, month, updated_at, …` into `status`, made to
/// record that status for each row it moves as well, in the same statement: PostgreSQL by a
/// data-modifying `WITH`, SQLite by its trigger on status updates. A round trip and a second
/// lookup of every row saved.
fn recording_events(connection: &AnyConnection, update: String, status: DeliveryStatus) -> String {
    if Backend::of(connection) == Backend::Sqlite {
        return update;
    }
    format!(
        "WITH moved AS ({update}), recorded AS (
             INSERT INTO notification_events (notification_id, month, status, at) SELECT id, month, '{}', updated_at FROM moved)
         SELECT * FROM moved",
        status.as_str()
    )
}

fn ids_of(rows: &[AnyRow]) -> StoreResult<Vec<String>> {
    rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
}

/// The ids bound as parameter `$n`, one JSON array of strings, as a subquery: one parameter
/// however many ids. Binding thousands of placeholders one by one cost more than the
/// statement itself.
fn id_list(tx: &Tx, n: usize) -> String {
    JsonRows::of(tx).strings(n)
}

fn json_ids(ids: &[String]) -> String {
    serde_json::to_string(ids).expect("ids serialise")
}

/// `condition` as a filter on rows already found by id, never as a way to find them. Without
/// statistics SQLite would rather walk the status index, past every queued notification of
/// the month, than look up a hundred ids: a million queued made each claim take seconds and
/// starved the other writers. A `CASE` is opaque to the index planner; PostgreSQL plans the
/// same either way.
fn only_filtering(condition: &str) -> String {
    format!("CASE WHEN {condition} THEN 1 ELSE 0 END = 1")
}

/// The value a transition's `set` or `condition` refers to as `$2`.
#[derive(Clone, Copy)]
enum Second<'a> {
    Reason(&'a str),
    Instant(DateTime<Utc>),
}

/// Runs `UPDATE notifications SET {set}, updated_at = $1 WHERE id IN (…) AND ({condition})`
/// with `$1` = `at` and, when given, `$2` = `second`; records the new status for each row it
/// changed and returns their ids.
fn transition_sql(set: &str, condition: &str, status: DeliveryStatus, ids: &str) -> String {
    format!(
        "UPDATE notifications SET status = '{}', {set}, updated_at = $1 WHERE id IN ({ids}) AND {}
         RETURNING id, month, updated_at",
        status.as_str(),
        only_filtering(condition)
    )
}

async fn transition(
    tx: &mut Tx,
    ids: &[String],
    set: &str,
    condition: &str,
    status: DeliveryStatus,
    at: DateTime<Utc>,
    second: Option<Second<'_>>,
) -> StoreResult<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids_at = if second.is_some() { 3 } else { 2 };
    let sql = recording_events(tx, transition_sql(set, condition, status, &id_list(tx, ids_at)), status);
    let mut query = sqlx::query(&sql).bind(to_micros(at));
    query = match second {
        Some(Second::Reason(reason)) => query.bind(reason),
        Some(Second::Instant(at)) => query.bind(to_micros(at)),
        None => query,
    };
    ids_of(&query.bind(json_ids(ids)).fetch_all(&mut **tx).await?)
}

/// Marks freshly published notifications as queued.
pub async fn mark_queued(tx: &mut Tx, ids: &[String], at: DateTime<Utc>) -> StoreResult<()> {
    transition(tx, ids, "lease_until = NULL", "status = 'pending'", DeliveryStatus::Queued, at, None).await.map(drop)
}

/// Marks re-published notifications queued again (a new `queued` event), unless a worker took
/// them meanwhile.
pub async fn mark_requeued(tx: &mut Tx, ids: &[String], at: DateTime<Utc>, cutoff: DateTime<Utc>) -> StoreResult<()> {
    let condition = "status = 'queued' AND updated_at < $2";
    transition(tx, ids, "lease_until = NULL", condition, DeliveryStatus::Queued, at, Some(Second::Instant(cutoff)))
        .await
        .map(drop)
}

/// Being sent under a lease that ran out before `$1`, the claim's `now`: its sender stopped.
const STALE_LEASE: &str = "status = 'sending' AND lease_until < $1";
/// A usage alert raised before `$2`, too old to be sent.
const STALE_ALERT: &str = "kind LIKE 'usage_alert:%' AND created_at < $2";

/// What a worker claims notifications on.
#[derive(Debug, Clone, Copy)]
pub struct ClaimTerms<'a> {
    pub now: DateTime<Utc>,
    /// Until when the claim keeps other workers off.
    pub lease_until: DateTime<Utc>,
    pub idempotency: Idempotency,
    /// Usage alerts raised before this are not sent (`alerts.max_age`).
    pub alerts_since: DateTime<Utc>,
    /// The sender port the worker sends from, kept with each notification it claims
    /// (docs/contract.md §11).
    pub sender: &'a str,
}

/// Claims the notifications among `ids` that nobody has sent, plus those whose sender's lease
/// ran out when the gateway is idempotent (resending carries the same idempotency key). A
/// redelivered or duplicated queue message finds its notifications claimed or done already and
/// pushes nothing.
pub async fn claim_for_sending(tx: &mut Tx, ids: &[String], terms: &ClaimTerms<'_>) -> StoreResult<Claim> {
    let ClaimTerms { now, idempotency, alerts_since, .. } = *terms;
    // Times are bound, never spelled into the SQL: one text for every claim, prepared once per
    // connection, where a text per claim was parsed and planned each time and pushed the other
    // statements out of the connection's cache. `$1` is `now` in each statement below.
    let stale = STALE_LEASE;
    let unknown = if idempotency == Idempotency::Honoured {
        Vec::new()
    } else {
        transition(
            tx,
            ids,
            "reason = $2, lease_until = NULL",
            stale,
            DeliveryStatus::Unknown,
            now,
            Some(Second::Reason("a worker stopped while sending")),
        )
        .await?
    };
    let mut claimed = claim_rows(tx, ids, terms, stale).await?;
    if claimed.len() < ids.len() {
        // Usage alerts raised before `alerts_since` are never sent late (docs/contract.md §12),
        // nor sent again after a worker stopped while sending them.
        transition(
            tx,
            ids,
            "lease_until = NULL",
            &format!("(status IN ('pending', 'queued') OR ({STALE_LEASE})) AND {STALE_ALERT}"),
            DeliveryStatus::Expired,
            now,
            Some(Second::Instant(alerts_since)),
        )
        .await?;
        // A worker can take a message before its scheduler, which marks after the broker's
        // confirm, has marked it queued: the queued step is recorded now, so no history skips
        // it. Only then: looking for pending rows cost every claim a second pass over its ids.
        // All of them are claimed again, not only those this step moved: the scheduler may have
        // marked the others in between. Those just claimed hold a live lease and stay out.
        mark_queued(tx, ids, now).await?;
        claimed.extend(claim_rows(tx, ids, terms, stale).await?);
    }
    claimed.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    let mut claim = Claim { unknown, claimed, ..Claim::default() };
    if claim.claimed.len() == ids.len() {
        // The usual case: nothing else to look for.
        return Ok(claim);
    }
    let sql = format!(
        "SELECT id, lease_until FROM notifications WHERE id IN ({}) AND {}",
        id_list(tx, 2),
        only_filtering("status = 'sending' AND lease_until >= $1")
    );
    for r in sqlx::query(&sql).bind(to_micros(now)).bind(json_ids(ids)).fetch_all(&mut **tx).await? {
        let id: String = r.try_get("id")?;
        if claim.claimed.binary_search_by(|row| row.id.cmp(&id)).is_ok() {
            continue;
        }
        let until = from_micros(r.try_get("lease_until")?);
        claim.busy_until = Some(claim.busy_until.map_or(until, |u| u.max(until)));
        claim.busy.push(id);
    }
    Ok(claim)
}

/// On SQLite, claims every one of `ids` or none of them, in one statement outside a
/// transaction, then reads what they need to be sent beside the writers; `None` when some
/// cannot be claimed now, for [`claim_for_sending`] to sort out in a transaction. Inside one,
/// `BEGIN IMMEDIATE`, the claim and `COMMIT` would each cross to SQLite's thread and back while
/// the one write lock is held, and the statement would keep a journal to be undone alone. The
/// count is taken once, before any row moves, under SQLite's one writer, so whoever moved the
/// rows is certain. Not on PostgreSQL, where a claim that waited for another's rows re-checks
/// each row but not the count, and could move only some.
pub async fn claim_all_at_once(
    store: &Store,
    ids: &[String],
    terms: &ClaimTerms<'_>,
) -> StoreResult<Option<Vec<OutboundRow>>> {
    let ClaimTerms { now, lease_until, idempotency, alerts_since, sender } = *terms;
    if store.backend != Backend::Sqlite || ids.is_empty() {
        return Ok(None);
    }
    // Without the gateway's idempotency a stale lease is not resent but made `unknown`, by
    // the claim in a transaction.
    let fresh = "NOT (kind LIKE 'usage_alert:%' AND created_at < $5)";
    let claimable = only_filtering(&if idempotency == Idempotency::Honoured {
        format!("(status = 'queued' OR ({STALE_LEASE})) AND {fresh}")
    } else {
        format!("status = 'queued' AND {fresh}")
    });
    let update = format!(
        "UPDATE notifications SET status = '{sending}', attempts = attempts + 1, lease_until = $3, sender = $6,
             updated_at = $1
         WHERE id IN ({ids}) AND {claimable}
           AND (SELECT COUNT(*) FROM notifications WHERE id IN ({ids}) AND {claimable}) = $4",
        sending = DeliveryStatus::Sending.as_str(),
        ids = store.json_rows().strings(2),
    );
    let moved = sqlx::query(&update)
        .bind(to_micros(now))
        .bind(json_ids(ids))
        .bind(to_micros(lease_until))
        .bind(ids.len() as i64)
        .bind(to_micros(alerts_since))
        .bind(sender)
        .execute(&store.pool)
        .await?
        .rows_affected();
    if moved != ids.len() as u64 {
        return Ok(None);
    }
    // Read beside the writers: the rows are this worker's until its lease runs out.
    let read = format!(
        "SELECT id, msisdn, text, encoding, segments, attempts FROM notifications WHERE id IN ({})",
        store.json_rows().strings(1)
    );
    let mut claimed = sqlx::query(&read)
        .bind(json_ids(ids))
        .fetch_all(&store.pool)
        .await?
        .iter()
        .map(outbound_row)
        .collect::<StoreResult<Vec<_>>>()?;
    claimed.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    Ok(Some(claimed))
}

fn outbound_row(r: &AnyRow) -> StoreResult<OutboundRow> {
    Ok(OutboundRow {
        id: r.try_get("id")?,
        msisdn: r.try_get("msisdn")?,
        text: r.try_get("text")?,
        encoding: r.try_get("encoding")?,
        segments: r.try_get("segments")?,
        attempts: r.try_get("attempts")?,
    })
}

/// Moves the queued notifications among `ids`, and those sent under a `stale` lease, to
/// `sending` under a lease until `lease_until`; returns what they need to be sent.
async fn claim_rows(tx: &mut Tx, ids: &[String], terms: &ClaimTerms<'_>, stale: &str) -> StoreResult<Vec<OutboundRow>> {
    let ClaimTerms { now, lease_until, alerts_since, sender, .. } = *terms;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let claimable = format!("(status = 'queued' OR ({stale})) AND NOT (kind LIKE 'usage_alert:%' AND created_at < $4)");
    let update = format!(
        "UPDATE notifications SET status = '{}', attempts = attempts + 1, lease_until = $3, sender = $5, updated_at = $1
         WHERE id IN ({}) AND {} RETURNING id, month, updated_at, msisdn, text, encoding, segments, attempts",
        DeliveryStatus::Sending.as_str(),
        id_list(tx, 2),
        only_filtering(&claimable)
    );
    let sql = recording_events(tx, update, DeliveryStatus::Sending);
    sqlx::query(&sql)
        .bind(to_micros(now))
        .bind(json_ids(ids))
        .bind(to_micros(lease_until))
        .bind(to_micros(alerts_since))
        .bind(sender)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(outbound_row)
        .collect()
}

/// Usage alerts overtaken by a higher threshold of the same metric before they were sent:
/// `expired`, never sent.
pub async fn expire_unsent(tx: &mut Tx, ids: &[String], at: DateTime<Utc>) -> StoreResult<Vec<String>> {
    transition(tx, ids, "lease_until = NULL", "status IN ('pending', 'queued')", DeliveryStatus::Expired, at, None)
        .await
}

/// Marks what the gateway accepted, (notification id, gateway message id) each, in one
/// statement; only notifications still `sending` move. One statement needs no transaction
/// around it when nothing else is written with it.
pub async fn mark_all_accepted(
    connection: &mut AnyConnection,
    accepted: &[(&str, &str)],
    at: DateTime<Utc>,
) -> StoreResult<()> {
    if accepted.is_empty() {
        return Ok(());
    }
    let update = format!(
        "{} UPDATE notifications SET status = 'accepted', gateway_message_id = j.value ->> 1, lease_until = NULL,
             updated_at = $2
         FROM j WHERE notifications.id = j.value ->> 0 AND {}",
        JsonRows::of(connection).with_rows(),
        only_filtering("notifications.status = 'sending'")
    );
    // Only PostgreSQL's events need the moved rows back; SQLite's trigger records them, and
    // each row returned crosses from SQLite's thread to the caller's on its own.
    let sql = match Backend::of(connection) {
        Backend::Sqlite => update,
        Backend::Postgres => recording_events(
            connection,
            format!("{update} RETURNING notifications.id, notifications.month, notifications.updated_at"),
            DeliveryStatus::Accepted,
        ),
    };
    sqlx::query(&sql)
        .bind(serde_json::to_string(accepted).expect("ids serialise"))
        .bind(to_micros(at))
        .execute(connection)
        .await?;
    Ok(())
}

pub async fn mark_failed(tx: &mut Tx, id: &str, reason: &str, at: DateTime<Utc>) -> StoreResult<()> {
    settle_with_reason(tx, id, DeliveryStatus::Failed, reason, at).await
}

/// The gateway may or may not have the message and honours no idempotency key: the operator
/// must look, a later receipt may settle it, and it is never sent again automatically.
pub async fn mark_unknown(tx: &mut Tx, id: &str, reason: &str, at: DateTime<Utc>) -> StoreResult<()> {
    settle_with_reason(tx, id, DeliveryStatus::Unknown, reason, at).await
}

async fn settle_with_reason(
    tx: &mut Tx,
    id: &str,
    status: DeliveryStatus,
    reason: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    let ids = [id.to_string()];
    transition(
        tx,
        &ids,
        "reason = $2, lease_until = NULL",
        "status = 'sending'",
        status,
        at,
        Some(Second::Reason(reason)),
    )
    .await
    .map(drop)
}

/// Hands notifications back to the queue after a failed attempt that will be retried.
pub async fn release_for_retry(tx: &mut Tx, ids: &[String], reason: &str, at: DateTime<Utc>) -> StoreResult<()> {
    transition(
        tx,
        ids,
        "reason = $2, lease_until = NULL",
        "status = 'sending'",
        DeliveryStatus::Queued,
        at,
        Some(Second::Reason(reason)),
    )
    .await
    .map(drop)
}

/// Applies a delivery receipt to the notification the gateway knows by `gateway_message_id`;
/// returns its id, or `None` when no notification carries that message id.
/// What became of a delivery receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// Recorded against this notification (or it was settled already and stays so).
    Recorded(String),
    /// No notification has this gateway message id (yet).
    UnknownMessage,
    /// Dated more than `RECEIPT_BEFORE_ACCEPT` before the gateway accepted the message.
    BeforeAccepted { accepted_at: DateTime<Utc> },
}

/// Where a receipt's time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptTime {
    /// The gateway says when: checked against the acceptance.
    Reported,
    /// The receipt says nothing and is dated on arrival by this server's clock, which may
    /// differ from the worker's that recorded the acceptance: not checked.
    OnArrival,
}

pub async fn record_receipt(
    tx: &mut Tx,
    gateway_message_id: &str,
    status: DeliveryStatus,
    at: DateTime<Utc>,
    dated: ReceiptTime,
) -> StoreResult<ReceiptOutcome> {
    let row = sqlx::query(
        "SELECT n.id, (SELECT MIN(e.at) FROM notification_events e
                       WHERE e.notification_id = n.id AND e.status = 'accepted') AS accepted_at
         FROM notifications n WHERE n.gateway_message_id = $1",
    )
    .bind(gateway_message_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(ReceiptOutcome::UnknownMessage) };
    let id: String = row.try_get("id")?;
    if let (ReceiptTime::Reported, Some(accepted_at)) =
        (dated, row.try_get::<Option<i64>, _>("accepted_at")?.map(from_micros))
    {
        if at < accepted_at - RECEIPT_BEFORE_ACCEPT {
            return Ok(ReceiptOutcome::BeforeAccepted { accepted_at });
        }
    }
    // A receipt settles accepted and unknown messages; one already settled stays as it is.
    transition(
        tx,
        std::slice::from_ref(&id),
        "lease_until = NULL",
        "status IN ('accepted', 'unknown')",
        status,
        at,
        None,
    )
    .await?;
    Ok(ReceiptOutcome::Recorded(id))
}

impl Store {
    /// Pending notifications of `month` after `after`, with their subscribers, in id order.
    pub async fn pending_page(
        &self,
        month: BillingMonth,
        after: &str,
        limit: i64,
    ) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT id, subscriber_id FROM notifications WHERE month = $1 AND unfinished = TRUE AND status = 'pending' AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(month.to_string())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((r.try_get("id")?, r.try_get("subscriber_id")?))).collect()
    }

    /// Up to `limit` notifications of `month` (ids after `after`) whose queue message may be lost:
    /// queued and untouched since `cutoff`, or sending under a lease that ran out before it.
    /// Returns (id, status).
    pub async fn stranded_page(
        &self,
        month: BillingMonth,
        cutoff: DateTime<Utc>,
        after: &str,
        limit: i64,
    ) -> StoreResult<Vec<(String, DeliveryStatus)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, status FROM notifications WHERE month = $1 AND unfinished = TRUE AND id > $2
               AND ((status = 'queued' AND updated_at <= $3) OR (status = 'sending' AND lease_until < $3))
             ORDER BY id LIMIT $4",
        )
        .bind(month.to_string())
        .bind(after)
        .bind(to_micros(cutoff))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(id, status)| {
                Ok((id, status.parse().map_err(|_| StoreError::Corrupt { column: "status", value: status })?))
            })
            .collect()
    }

    /// Notifications of `month` not yet through the push: pending, queued or sending (those
    /// the index on unfinished notifications holds).
    pub async fn unfinished_count(&self, month: BillingMonth) -> StoreResult<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM notifications WHERE month = $1 AND unfinished = TRUE")
            .bind(month.to_string())
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Accepted messages whose receipt has not come by `cutoff` become `unknown`.
    pub async fn expire_receipts(&self, cutoff: DateTime<Utc>, now: DateTime<Utc>) -> StoreResult<u64> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query("SELECT id FROM notifications WHERE awaiting_receipt_since < $1")
            .bind(to_micros(cutoff))
            .fetch_all(&mut *tx)
            .await?;
        let ids = ids_of(&rows)?;
        let mut expired = 0;
        for chunk in ids.chunks(500) {
            expired += transition(
                &mut tx,
                chunk,
                "reason = $2",
                "status = 'accepted'",
                DeliveryStatus::Unknown,
                now,
                Some(Second::Reason("no delivery receipt")),
            )
            .await?
            .len() as u64;
        }
        tx.commit().await?;
        Ok(expired)
    }

    /// Puts the month's failed notifications back in line on purpose (`retry-failed`); bills too
    /// long to send stay failed. Returns the ids, now pending.
    pub async fn reset_failed(&self, month: BillingMonth, now: DateTime<Utc>) -> StoreResult<Vec<String>> {
        let mut tx = self.begin().await?;
        let rows = sqlx::query("SELECT id FROM notifications WHERE month = $1 AND status = 'failed' AND COALESCE(reason, '') <> 'too_long'")
            .bind(month.to_string())
            .fetch_all(&mut *tx)
            .await?;
        let mut reset = Vec::new();
        for chunk in ids_of(&rows)?.chunks(500) {
            reset.extend(
                transition(
                    &mut tx,
                    chunk,
                    "attempts = 0, reason = $2, lease_until = NULL",
                    "status = 'failed'",
                    DeliveryStatus::Pending,
                    now,
                    Some(Second::Reason("retry requested")),
                )
                .await?,
            );
        }
        tx.commit().await?;
        Ok(reset)
    }
}

pub struct NotificationToWrite {
    pub id: String,
    pub kind: String,
    pub status: DeliveryStatus,
    pub reason: Option<NotSentReason>,
    pub segments: i64,
    /// `None` for a text that was never made (too long to send).
    pub encoding: Option<Encoding>,
    pub text: String,
}

impl NotificationToWrite {
    fn reason(&self) -> Option<&'static str> {
        self.reason.map(NotSentReason::as_str)
    }

    /// Kept as `""` when there is no text, as the column has always held.
    fn encoding(&self) -> &'static str {
        self.encoding.map_or("", Encoding::as_str)
    }
}

/// A bill's SMS, rendered, to be written as its notification.
pub struct BillNotification {
    pub subscriber_id: String,
    pub month: BillingMonth,
    pub msisdn: Msisdn,
    pub created_at: DateTime<Utc>,
    pub notification: NotificationToWrite,
}

const NOTIFICATIONS: Table = Table {
    name: "notifications",
    columns: &[
        "id",
        "subscriber_id",
        "month",
        "kind",
        "msisdn",
        "status",
        "reason",
        "attempts",
        "segments",
        "encoding",
        "text",
        "created_at",
        "updated_at",
    ],
};

const NOTIFICATION_EVENTS: Table =
    Table { name: "notification_events", columns: &["notification_id", "month", "status", "at"] };

/// What a page of bill notifications writes, table by table; `months` holds each one's month
/// as text.
pub(super) fn notification_rows<'a>(
    notifications: &'a [BillNotification],
    months: &'a [String],
) -> [(Table, Rows<'a>); 2] {
    let notification_rows = notifications
        .iter()
        .zip(months)
        .map(|(b, month)| {
            let n = &b.notification;
            let at = Value::Int(to_micros(b.created_at));
            vec![
                Value::Text(&n.id),
                Value::Text(&b.subscriber_id),
                Value::Text(month),
                Value::Text(&n.kind),
                Value::Text(b.msisdn.as_str()),
                Value::Text(n.status.as_str()),
                Value::text_or_null(n.reason()),
                Value::Int(0),
                Value::Int(n.segments),
                Value::Text(n.encoding()),
                Value::Text(&n.text),
                at,
                at,
            ]
        })
        .collect();
    let event_rows = notifications
        .iter()
        .zip(months)
        .map(|(b, month)| {
            let n = &b.notification;
            vec![
                Value::Text(&n.id),
                Value::Text(month),
                Value::Text(n.status.as_str()),
                Value::Int(to_micros(b.created_at)),
            ]
        })
        .collect();
    [(NOTIFICATIONS, notification_rows), (NOTIFICATION_EVENTS, event_rows)]
}

/// Writes a page of bill notifications with their first statuses in the caller's
/// transaction; on PostgreSQL by `COPY` instead (`Copier::copy_notifications`).
pub async fn write_notifications(tx: &mut Tx, notifications: &[BillNotification]) -> StoreResult<()> {
    let months: Vec<String> = notifications.iter().map(|n| n.month.to_string()).collect();
    for (table, rows) in notification_rows(notifications, &months) {
        insert_values(tx, table, "", &rows).await?;
    }
    Ok(())
}

/// Writes a notification and its first status; the unique (subscriber, month, kind) key
/// refuses a second one.
pub async fn insert_notification(
    tx: &mut Tx,
    subscriber_id: &str,
    month: &str,
    msisdn: &Msisdn,
    n: &NotificationToWrite,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO notifications (id, subscriber_id, month, kind, msisdn, status, reason, attempts, segments, encoding, text, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, $11, $11)",
    )
    .bind(&n.id)
    .bind(subscriber_id)
    .bind(month)
    .bind(&n.kind)
    .bind(msisdn.as_str())
    .bind(n.status.as_str())
    .bind(n.reason())
    .bind(n.segments)
    .bind(n.encoding())
    .bind(&n.text)
    .bind(to_micros(at))
    .execute(&mut **tx)
    .await?;
    record_event(tx, &n.id, month, n.status, at).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::scratch_sqlite_store;

    /// How SQLite would find the rows of a claim, on the real schema.
    async fn claim_plan(condition: &str) -> String {
        let (_dir, _, store) = scratch_sqlite_store().await;
        let tx = store.begin().await.unwrap();
        let update = transition_sql("attempts = attempts + 1", condition, DeliveryStatus::Sending, &id_list(&tx, 2));
        drop(tx);
        let ids: Vec<String> = (0..100).map(|n| format!("id-{n}")).collect();
        let plan = sqlx::query(&format!("EXPLAIN QUERY PLAN {update}"))
            .bind(0_i64)
            .bind(json_ids(&ids))
            .fetch_all(&store.pool)
            .await
            .unwrap();
        plan.iter().map(|row| row.try_get::<String, _>("detail").unwrap()).collect::<Vec<_>>().join("; ")
    }

    #[tokio::test]
    async fn a_claim_finds_its_rows_by_id_not_by_walking_the_status_index() {
        let plan = claim_plan("status IN ('pending', 'queued') OR (status = 'sending' AND lease_until < 0)").await;
        assert!(plan.contains("sqlite_autoindex_notifications_1 (id=?)"), "{plan}");
        assert!(!plan.contains("notifications_by_status"), "{plan}");
    }

    /// A store holding one notification per (id, status, last change), for the bill of `s-{id}`.
    async fn store_with(notifications: &[(&str, &str, DateTime<Utc>)]) -> (tempfile::TempDir, Store) {
        let (dir, _, store) = scratch_sqlite_store().await;
        for (id, status, at) in notifications {
            sqlx::query(
                "INSERT INTO notifications (id, subscriber_id, month, kind, msisdn, status, attempts, segments, encoding,
                     text, created_at, updated_at)
                 VALUES ($1, $2, '2026-10', 'bill', '+8613800138000', $3, 0, 1, 'gsm7', 'hi', $4, $4)",
            )
            .bind(*id)
            .bind(format!("s-{id}"))
            .bind(*status)
            .bind(to_micros(*at))
            .execute(&store.pool)
            .await
            .unwrap();
        }
        (dir, store)
    }

    async fn history(store: &Store, id: &str) -> Vec<(String, i64)> {
        sqlx::query_as("SELECT status, at FROM notification_events WHERE notification_id = $1 ORDER BY at, rowid")
            .bind(id)
            .fetch_all(&store.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn requeuing_moves_only_what_stayed_queued_since_before_the_cutoff() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let minutes = chrono::Duration::minutes;
        let (_dir, store) =
            store_with(&[("stranded", "queued", t0), ("recent", "queued", t0 + minutes(10)), ("taken", "sending", t0)])
                .await;
        let ids = ["stranded", "recent", "taken"].map(String::from);
        let (now, cutoff) = (t0 + minutes(20), t0 + minutes(5));
        let mut tx = store.begin().await.unwrap();
        mark_requeued(&mut tx, &ids, now, cutoff).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(history(&store, "stranded").await, [("queued".to_string(), to_micros(now))]);
        assert_eq!(history(&store, "recent").await, []);
        assert_eq!(history(&store, "taken").await, []);
        let updated: Vec<(String, i64)> = sqlx::query_as("SELECT id, updated_at FROM notifications ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        let expected = [("recent", t0 + minutes(10)), ("stranded", now), ("taken", t0)];
        assert_eq!(updated, expected.map(|(id, at)| (id.to_string(), to_micros(at))));
    }
}
