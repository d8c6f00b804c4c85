//! Disputes of charges (docs/contract.md §7a): the cases, the charges each is about, and every
//! change with its time, actor and note. The database keeps at most one open dispute per
//! subscriber and bill month, however many `SS` arrive at once.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_micros, to_micros, Store, StoreResult};
use crate::domain::dispute::{DisputeStatus, DisputedCharge, Resolution, ResolutionError};
use crate::domain::money::Fen;
use crate::domain::period::{BillingMonth, Period};

/// A dispute as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispute {
    pub id: i64,
    pub subscriber_id: String,
    pub msisdn: String,
    pub month: String,
    pub status: DisputeStatus,
    pub disputed: Fen,
    pub refunded: Fen,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    /// The disputed records, by id.
    pub records: Vec<String>,
}

/// The charges of one bill a dispute can be about.
#[derive(Debug, Clone)]
pub struct BillCharges {
    pub msisdn: String,
    pub period: Period,
    /// The bill's flagged charges.
    pub flagged: Vec<DisputedCharge>,
    /// Every record of the bill with a positive amount.
    pub positive: Vec<DisputedCharge>,
}

pub struct NewDispute<'a> {
    pub subscriber_id: &'a str,
    pub msisdn: &'a str,
    pub month: BillingMonth,
    pub charges: &'a [DisputedCharge],
    /// Who opened it: `reply <id>`, or an operator's token name.
    pub actor: &'a str,
    pub note: &'a str,
    pub at: DateTime<Utc>,
}

#[derive(Debug)]
pub enum Opened {
    New(Dispute),
    /// A dispute of that bill was open already: it is the answer.
    AlreadyOpen(Dispute),
}

#[derive(Debug)]
pub enum Resolved {
    Now(Dispute),
    NoSuchDispute,
    /// Resolved before, as it now stands.
    Already(Dispute),
    Refused(ResolutionError),
}

/// Which disputes a listing holds.
#[derive(Debug, Clone, Default)]
pub struct DisputeFilter {
    pub month: Option<BillingMonth>,
    pub status: Option<DisputeStatus>,
    pub subscriber_id: Option<String>,
}

const DISPUTE_COLUMNS: &str =
    "id, subscriber_id, msisdn, month, status, disputed_fen, refunded_fen, opened_at, resolved_at";

fn dispute_from_row(r: &sqlx::any::AnyRow) -> StoreResult<Dispute> {
    let status: String = r.try_get("status")?;
    Ok(Dispute {
        id: r.try_get("id")?,
        subscriber_id: r.try_get("subscriber_id")?,
        msisdn: r.try_get("msisdn")?,
        month: r.try_get("month")?,
        status: status
            .parse()
            .map_err(|_| super::StoreError::Corrupt { column: "disputes.status", value: status.clone() })?,
        disputed: Fen::new(r.try_get("disputed_fen")?),
        refunded: Fen::new(r.try_get("refunded_fen")?),
        opened_at: from_micros(r.try_get("opened_at")?),
        resolved_at: r.try_get::<Option<i64>, _>("resolved_at")?.map(from_micros),
        records: Vec::new(),
    })
}

fn charges_from_rows(rows: &[sqlx::any::AnyRow]) -> StoreResult<Vec<DisputedCharge>> {
    rows.iter()
        .map(|r| Ok(DisputedCharge { record_id: r.try_get("record_id")?, amount: Fen::new(r.try_get("amount_fen")?) }))
        .collect()
}

impl Store {
    /// The charges of the subscriber's bill for `month`; `None` when there is no such bill.
    pub async fn bill_charges(&self, subscriber_id: &str, month: BillingMonth) -> StoreResult<Option<BillCharges>> {
        let month = month.to_string();
        let Some(bill) =
            sqlx::query("SELECT msisdn, period_start, period_end FROM bills WHERE subscriber_id = $1 AND month = $2")
                .bind(subscriber_id)
                .bind(&month)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let flagged = sqlx::query(
            "SELECT record_id, amount_fen FROM charge_flags WHERE month = $1 AND subscriber_id = $2 ORDER BY record_id",
        )
        .bind(&month)
        .bind(subscriber_id)
        .fetch_all(&self.pool)
        .await?;
        let positive = sqlx::query(
            "SELECT record_id, amount_fen FROM usage_records
             WHERE subscriber_id = $1 AND occurred_at >= $2 AND occurred_at < $3 AND amount_fen > 0 ORDER BY record_id",
        )
        .bind(subscriber_id)
        .bind(bill.try_get::<i64, _>("period_start")?)
        .bind(bill.try_get::<i64, _>("period_end")?)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(BillCharges {
            msisdn: bill.try_get("msisdn")?,
            period: Period {
                start: from_micros(bill.try_get("period_start")?),
                end: from_micros(bill.try_get("period_end")?),
            },
            flagged: charges_from_rows(&flagged)?,
            positive: charges_from_rows(&positive)?,
        }))
    }

    /// Opens a dispute, unless one of the same bill is open: then that one is the answer.
    pub async fn open_dispute(&self, new: &NewDispute<'_>) -> StoreResult<Opened> {
        let month = new.month.to_string();
        let disputed: Fen = new.charges.iter().map(|c| c.amount).sum();
        let mut tx = self.begin().await?;
        // The partial unique index refuses a second open dispute of the bill; `DO NOTHING`
        // turns that refusal into no row, and the open one is read instead.
        let inserted = sqlx::query(
            "INSERT INTO disputes (subscriber_id, msisdn, month, status, disputed_fen, refunded_fen, opened_at)
             VALUES ($1, $2, $3, 'open', $4, 0, $5) ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(new.subscriber_id)
        .bind(new.msisdn)
        .bind(&month)
        .bind(disputed.get())
        .bind(to_micros(new.at))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(inserted) = inserted else {
            drop(tx);
            let open = sqlx::query(&format!(
                "SELECT {DISPUTE_COLUMNS} FROM disputes WHERE subscriber_id = $1 AND month = $2 AND status = 'open'"
            ))
            .bind(new.subscriber_id)
            .bind(&month)
            .fetch_one(&self.pool)
            .await?;
            let mut dispute = dispute_from_row(&open)?;
            self.attach_records(std::slice::from_mut(&mut dispute)).await?;
            return Ok(Opened::AlreadyOpen(dispute));
        };
        let id: i64 = inserted.try_get("id")?;
        for charge in new.charges {
            sqlx::query("INSERT INTO dispute_records (dispute_id, record_id, amount_fen) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(&charge.record_id)
                .bind(charge.amount.get())
                .execute(&mut *tx)
                .await?;
        }
        record_dispute_event(&mut tx, id, DisputeStatus::Open, Fen::ZERO, new.actor, new.note, new.at).await?;
        tx.commit().await?;
        let mut records: Vec<String> = new.charges.iter().map(|c| c.record_id.clone()).collect();
        records.sort();
        Ok(Opened::New(Dispute {
            id,
            subscriber_id: new.subscriber_id.to_string(),
            msisdn: new.msisdn.to_string(),
            month,
            status: DisputeStatus::Open,
            disputed,
            refunded: Fen::ZERO,
            opened_at: new.at,
            resolved_at: None,
            records,
        }))
    }

    /// Ends an open dispute as `resolution` says, once: a second resolution finds it resolved.
    pub async fn resolve_dispute(
        &self,
        id: i64,
        resolution: &Resolution,
        actor: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<Resolved> {
        let Some(current) = self.dispute(id).await? else { return Ok(Resolved::NoSuchDispute) };
        if current.status != DisputeStatus::Open {
            return Ok(Resolved::Already(current));
        }
        if let Err(refusal) = resolution.check(current.disputed) {
            return Ok(Resolved::Refused(refusal));
        }
        let mut tx = self.begin().await?;
        // Only the resolution that finds it still open moves it; a concurrent one finds it moved.
        let moved = sqlx::query(
            "UPDATE disputes SET status = $2, refunded_fen = $3, resolved_at = $4 WHERE id = $1 AND status = 'open'",
        )
        .bind(id)
        .bind(resolution.status.as_str())
        .bind(resolution.refunded.get())
        .bind(to_micros(at))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if moved == 0 {
            drop(tx);
            let now = self.dispute(id).await?.expect("a dispute is never deleted");
            return Ok(Resolved::Already(now));
        }
        record_dispute_event(&mut tx, id, resolution.status, resolution.refunded, actor, &resolution.note, at).await?;
        tx.commit().await?;
        Ok(Resolved::Now(Dispute {
            status: resolution.status,
            refunded: resolution.refunded,
            resolved_at: Some(at),
            ..current
        }))
    }

    /// One dispute with its records.
    pub async fn dispute(&self, id: i64) -> StoreResult<Option<Dispute>> {
        let row = sqlx::query(&format!("SELECT {DISPUTE_COLUMNS} FROM disputes WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut dispute = dispute_from_row(&row)?;
        self.attach_records(std::slice::from_mut(&mut dispute)).await?;
        Ok(Some(dispute))
    }

    /// Disputes matching `filter` with an id above `after`, in id order, with their records.
    pub async fn disputes(&self, filter: &DisputeFilter, after: i64, limit: i64) -> StoreResult<Vec<Dispute>> {
        let mut sql = format!("SELECT {DISPUTE_COLUMNS} FROM disputes WHERE id > $1");
        let month = filter.month.map(|m| m.to_string());
        let mut n = 2;
        for (column, present) in [
            ("month", month.is_some()),
            ("status", filter.status.is_some()),
            ("subscriber_id", filter.subscriber_id.is_some()),
        ] {
            if present {
                sql.push_str(&format!(" AND {column} = ${n}"));
                n += 1;
            }
        }
        sql.push_str(&format!(" ORDER BY id LIMIT ${n}"));
        let mut query = sqlx::query(&sql).bind(after);
        if let Some(month) = &month {
            query = query.bind(month);
        }
        if let Some(status) = filter.status {
            query = query.bind(status.as_str());
        }
        if let Some(subscriber_id) = &filter.subscriber_id {
            query = query.bind(subscriber_id);
        }
        let rows = query.bind(limit).fetch_all(&self.pool).await?;
        let mut disputes = rows.iter().map(dispute_from_row).collect::<StoreResult<Vec<_>>>()?;
        self.attach_records(&mut disputes).await?;
        Ok(disputes)
    }

    /// Fills in the records of disputes given in id order.
    async fn attach_records(&self, disputes: &mut [Dispute]) -> StoreResult<()> {
        let (Some(first), Some(last)) = (disputes.first(), disputes.last()) else { return Ok(()) };
        let rows = sqlx::query(
            "SELECT dispute_id, record_id FROM dispute_records WHERE dispute_id >= $1 AND dispute_id <= $2
             ORDER BY dispute_id, record_id",
        )
        .bind(first.id)
        .bind(last.id)
        .fetch_all(&self.pool)
        .await?;
        let mut records: HashMap<i64, Vec<String>> = HashMap::new();
        for row in &rows {
            records.entry(row.try_get("dispute_id")?).or_default().push(row.try_get("record_id")?);
        }
        for dispute in disputes {
            dispute.records = records.remove(&dispute.id).unwrap_or_default();
        }
        Ok(())
    }
}

async fn record_dispute_event(
    tx: &mut super::Tx,
    id: i64,
    status: DisputeStatus,
    refunded: Fen,
    actor: &str,
    note: &str,
    at: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO dispute_events (dispute_id, status, refunded_fen, actor, note, at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(refunded.get())
    .bind(actor)
    .bind(note)
    .bind(to_micros(at))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
