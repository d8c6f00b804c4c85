//! Usage records on PostgreSQL by `COPY`, straight into the system-of-record table: the
//! fastest way in, and as durable as any insert (the table stays logged, `record_id` stays
//! the primary key). `COPY` cannot skip known rows, so a batch holding a `record_id` the
//! table already has fails whole with a unique violation, writes nothing, and is handed
//! back for the portable `INSERT … ON CONFLICT DO NOTHING`, which counts it as duplicate.
//! A first import of a month's usage, the bulk of all imports, never meets that case.

use std::collections::HashSet;
use std::fmt::Write as _;

use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection;

use super::{to_micros, Store, StoreResult};
use crate::import::rows::UsageRow;

const COPY_USAGE: &str = "COPY usage_records
    (record_id, subscriber_id, occurred_at, category, quantity, amount_fen, service_code, description)
    FROM STDIN";

/// A PostgreSQL-native connection for `COPY`, which sqlx's portable driver does not speak.
pub struct UsageCopier {
    connection: sqlx::pool::PoolConnection<sqlx::Postgres>,
}

/// What a `COPY` did with a batch.
pub enum Copied {
    /// Every row was new and is now stored.
    All(u64),
    /// The table already held one of the batch's records; nothing was written.
    KnownRecord,
}

impl Store {
    /// A copier when the store is PostgreSQL; the embedded SQLite has no `COPY`.
    pub async fn usage_copier(&self) -> StoreResult<Option<UsageCopier>> {
        match &self.native {
            Some(pool) => Ok(Some(UsageCopier { connection: pool.acquire().await? })),
            None => Ok(None),
        }
    }
}

/// The pool behind `Store::usage_copier`: connects only when first used.
pub(super) fn native_pool(url: &str) -> StoreResult<PgPool> {
    Ok(PgPoolOptions::new().max_connections(2).connect_lazy(url)?)
}

impl UsageCopier {
    /// Stores `rows` in one transaction of its own, or none of them if one is already
    /// known. A `record_id` repeated inside the batch is sent once; the caller counts the
    /// difference between rows given and rows stored as duplicates.
    pub async fn copy(&mut self, rows: &[UsageRow]) -> StoreResult<Copied> {
        let data = copy_text(rows);
        let connection: &mut PgConnection = &mut self.connection;
        let mut tx = Connection::begin(connection).await?;
        let mut copy = tx.copy_in_raw(COPY_USAGE).await?;
        let copied = match copy.send(data).await {
            Ok(_) => copy.finish().await,
            Err(error) => {
                let _ = copy.abort("sending failed").await;
                Err(error)
            }
        };
        match copied {
            Ok(count) => {
                tx.commit().await?;
                Ok(Copied::All(count))
            }
            Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("23505") => {
                tx.rollback().await?;
                Ok(Copied::KnownRecord)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// The rows in `COPY`'s text format, each `record_id` once.
fn copy_text(rows: &[UsageRow]) -> Vec<u8> {
    let mut seen = HashSet::with_capacity(rows.len());
    let mut out = String::with_capacity(rows.len() * 128);
    for row in rows {
        let r = &row.record;
        if !seen.insert(r.record_id.as_str()) {
            continue;
        }
        push_field(&mut out, &r.record_id);
        out.push('\t');
        push_field(&mut out, &row.subscriber_id);
        let _ = write!(
            out,
            "\t{}\t{}\t{}\t{}\t",
            to_micros(r.occurred_at),
            r.category.as_str(),
            r.quantity,
            r.amount.get()
        );
        push_field(&mut out, &r.service_code);
        out.push('\t');
        push_field(&mut out, &r.description);
        out.push('\n');
    }
    out.into_bytes()
}

/// A text field with the characters `COPY` gives meaning to escaped.
fn push_field(out: &mut String, field: &str) {
    for c in field.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_escape_what_copy_reads_specially() {
        let mut out = String::new();
        push_field(&mut out, "a\\b\tc\nd\re 话费");
        assert_eq!(out, "a\\\\b\\tc\\nd\\re 话费");
    }
}
