//! Rows written by `COPY` on PostgreSQL, the fastest way in and as durable as any insert: the
//! tables stay logged and keep their keys. Three writes go this way: new usage at import, and
//! the build's pages of bills with their flags, then of notifications with their first
//! statuses.
//!
//! Usage goes straight into the system-of-record table. `COPY` cannot skip known rows, so a
//! batch holding a `record_id` the table already has fails whole with a unique violation,
//! writes nothing, and is handed back for the portable `INSERT … ON CONFLICT DO NOTHING`,
//! which counts it as duplicate. So is a batch that deadlocked with another copied beside it
//! over a record both hold. A first import of a month's usage, the bulk of all imports, never
//! meets either case.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use chrono_tz::Tz;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection;

use super::batch::{Table, Value};
use super::bills::{bill_rows, BillTexts, BillToWrite};
use super::notifications::{notification_rows, BillNotification};
use super::usage::{
    add_on_conflict, basis, billing_day, numbers, subscriber_ids, sum_by_month, usage_values, NUMBERS, USAGE_RECORDS,
    USAGE_TOTALS,
};
use super::{Store, StoreError, StoreResult};
use crate::domain::records::SubscriberUsage;

/// A PostgreSQL-native connection for `COPY`, which sqlx's portable driver does not speak.
pub struct Copier {
    connection: sqlx::pool::PoolConnection<sqlx::Postgres>,
}

/// What a `COPY` did with a batch.
pub enum Copied {
    /// Every row was new and is now stored.
    All(u64),
    /// Nothing was written: the table already held one of the batch's records, or another
    /// batch being copied held one of them and the two waited for each other.
    Refused,
}

impl Store {
    /// A copier when the store is PostgreSQL; the embedded SQLite has no `COPY`.
    pub async fn copier(&self) -> StoreResult<Option<Copier>> {
        match &self.native {
            Some(pool) => Ok(Some(Copier { connection: pool.acquire().await? })),
            None => Ok(None),
        }
    }
}

/// The pool behind `Store::copier`: connects only when first used.
pub(super) fn native_pool(url: &str) -> StoreResult<PgPool> {
    Ok(PgPoolOptions::new().max_connections(2).connect_lazy(url)?)
}

impl Copier {
    /// Stores `rows` in one transaction of its own, with their usage totals (months cut in
    /// `tz`), or none of them if one is already known. A `record_id` repeated inside the batch
    /// is sent once; the caller counts the difference between rows given and rows stored as
    /// duplicates.
    pub async fn copy_usage(&mut self, rows: &[SubscriberUsage], tz: Tz) -> StoreResult<Copied> {
        let mut seen = HashSet::with_capacity(rows.len());
        let unique: Vec<&SubscriberUsage> =
            rows.iter().filter(|row| seen.insert(row.record.record_id.as_str())).collect();
        let values: Vec<[Value; 8]> = unique.iter().map(|row| usage_values(row)).collect();
        let connection: &mut PgConnection = &mut self.connection;
        let mut tx = Connection::begin(connection).await?;
        let copied = match copy_into(&mut tx, &format!("COPY {USAGE_RECORDS} FROM STDIN"), &values).await {
            Ok(count) => add_usage_totals(&mut tx, &unique, tz).await.map(|()| count),
            Err(error) => Err(error.into()),
        };
        match copied {
            Ok(count) => {
                tx.commit().await?;
                Ok(Copied::All(count))
            }
            // A unique violation, or a deadlock with another batch copied at the same time.
            Err(StoreError::Database(sqlx::Error::Database(error)))
                if matches!(error.code().as_deref(), Some("23505" | "40P01")) =>
            {
                tx.rollback().await?;
                Ok(Copied::Refused)
            }
            Err(error) => Err(error),
        }
    }

    /// Writes a page of bills with their flags, as `bills::write_bills` does, in one
    /// transaction of its own.
    pub async fn copy_bills(&mut self, bills: &[BillToWrite]) -> StoreResult<()> {
        let texts = BillTexts::of(bills);
        self.copy_tables(bill_rows(bills, &texts)).await
    }

    /// Writes a page of bill notifications with their first statuses, as
    /// `notifications::write_notifications` does, in one transaction of its own.
    pub async fn copy_notifications(&mut self, notifications: &[BillNotification]) -> StoreResult<()> {
        let months: Vec<String> = notifications.iter().map(|n| n.month.to_string()).collect();
        self.copy_tables(notification_rows(notifications, &months)).await
    }

    async fn copy_tables(&mut self, tables: [(Table, Vec<Vec<Value<'_>>>); 2]) -> StoreResult<()> {
        let connection: &mut PgConnection = &mut self.connection;
        let mut tx = Connection::begin(connection).await?;
        for (table, values) in tables {
            if !values.is_empty() {
                copy_into(&mut tx, &format!("COPY {table} FROM STDIN"), &values).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

/// `usage::add_usage_totals` on a native connection: the batch's sums bound as one array
/// per column.
async fn add_usage_totals(connection: &mut PgConnection, rows: &[&SubscriberUsage], tz: Tz) -> StoreResult<()> {
    let ids = subscriber_ids(rows.iter().copied());
    let stored: Vec<(String, i64)> =
        sqlx::query_as("SELECT subscriber_id, billing_day FROM subscribers WHERE subscriber_id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *connection)
            .await?;
    let days = stored
        .into_iter()
        .map(|(id, day)| billing_day(&id, day).map(|day| (id, day)))
        .collect::<StoreResult<HashMap<_, _>>>()?;
    let sums = sum_by_month(rows.iter().copied(), &days, tz)?;
    if sums.is_empty() {
        return Ok(());
    }
    let mut keys: [Vec<String>; 3] = Default::default();
    let mut columns: [Vec<i64>; NUMBERS] = Default::default();
    for ((subscriber_id, month, day), totals) in &sums {
        keys[0].push(subscriber_id.to_string());
        keys[1].push(month.to_string());
        keys[2].push(basis(*day, tz));
        for (column, number) in columns.iter_mut().zip(numbers(totals)) {
            column.push(number);
        }
    }
    let arrays: Vec<String> =
        (1..=3).map(|n| format!("${n}::text[]")).chain((4..=3 + NUMBERS).map(|n| format!("${n}::int8[]"))).collect();
    let sql = format!("INSERT INTO {USAGE_TOTALS} SELECT * FROM UNNEST({}) {}", arrays.join(", "), add_on_conflict());
    let mut insert = sqlx::query(&sql);
    for key in &keys {
        insert = insert.bind(key);
    }
    for column in &columns {
        insert = insert.bind(column);
    }
    insert.execute(&mut *connection).await?;
    Ok(())
}

async fn copy_into<'a, R: AsRef<[Value<'a>]>>(
    connection: &mut PgConnection,
    statement: &str,
    rows: &[R],
) -> Result<u64, sqlx::Error> {
    let mut copy = connection.copy_in_raw(statement).await?;
    match copy.send(copy_text(rows)).await {
        Ok(_) => copy.finish().await,
        Err(error) => {
            let _ = copy.abort("sending failed").await;
            Err(error)
        }
    }
}

/// The rows in `COPY`'s text format.
fn copy_text<'a, R: AsRef<[Value<'a>]>>(rows: &[R]) -> Vec<u8> {
    let mut out = String::with_capacity(rows.len() * 128);
    for row in rows {
        for (i, value) in row.as_ref().iter().enumerate() {
            if i > 0 {
                out.push('\t');
            }
            match value {
                Value::Text(text) => push_field(&mut out, text),
                Value::Int(number) => {
                    let _ = write!(out, "{number}");
                }
                Value::NullText | Value::NullInt => out.push_str("\\N"),
            }
        }
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
    fn rows_are_tab_separated_lines_with_null_spelled_as_copy_reads_it() {
        let rows = [
            [Value::Text("a\tb"), Value::Int(-5), Value::NullInt],
            [Value::Text(""), Value::Int(0), Value::Text("话费")],
        ];
        assert_eq!(String::from_utf8(copy_text(&rows)).unwrap(), "a\\tb\t-5\t\\N\n\t0\t话费\n");
    }

    #[test]
    fn text_fields_escape_what_copy_reads_specially() {
        let mut out = String::new();
        push_field(&mut out, "a\\b\tc\nd\re 话费");
        assert_eq!(out, "a\\\\b\\tc\\nd\\re 话费");
    }
}
