//! Writes of imported rows, a batch per statement: the rows travel as one JSON array
//! parameter and are inserted set-based, which both backends read natively. Each write
//! returns how many rows it changed, so an import can count re-imported rows as duplicates.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{to_micros, Store, StoreResult, Tx};
use crate::import::rows::{OrderRow, PlanRow, SpamReportRow, SubscriberRow, UsageRow};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImportCounts {
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
}

/// A batch of rows as the SQL of one backend reads it: `$1` is a JSON array of arrays,
/// and `j.value ->> N` is the N-th field of a row on both backends.
#[derive(Clone, Copy)]
pub struct JsonRows {
    backend: super::Backend,
}

impl Store {
    pub fn json_rows(&self) -> JsonRows {
        JsonRows { backend: self.backend }
    }

    /// Gives PostgreSQL's planner the statistics of `table` as an import left it, as after any
    /// bulk load. Without them, a month built right after its first import, before autovacuum
    /// came by (or where it is off), was planned on default guesses: 1M subscribers took 76–79 s
    /// to build instead of 34–35 s. ANALYZE reads a sample: half a second for 20M records.
    /// SQLite keeps planning without statistics, which its queries are written for.
    pub async fn refresh_statistics(&self, table: &'static str) -> StoreResult<()> {
        if self.backend == super::Backend::Postgres {
            sqlx::query(&format!("ANALYZE {table}")).execute(&self.pool).await?;
        }
        Ok(())
    }
}

impl JsonRows {
    /// As the connection (or transaction) `connection` reads them.
    pub(crate) fn of(connection: &sqlx::AnyConnection) -> JsonRows {
        JsonRows { backend: super::Backend::of(connection) }
    }

    /// The strings of the JSON array bound as parameter `$n`, as a one-column subquery.
    pub(crate) fn strings(self, n: usize) -> String {
        match self.backend {
            super::Backend::Sqlite => format!("SELECT value FROM json_each(${n})"),
            super::Backend::Postgres => format!("SELECT jsonb_array_elements_text(${n}::jsonb)"),
        }
    }

    /// `WITH j AS (…)`: the rows of the array bound as `$1`, each as `j.value`, to open a
    /// statement that reads them `FROM j`. SQLite's `json_each` hands each row out as text,
    /// which every `j.value ->> N` parsed again: twenty fields meant twenty parses a row. The
    /// rows are made binary once, here, and kept (`MATERIALIZED`, or SQLite would fold the
    /// conversion back into each field).
    pub(crate) fn with_rows(self) -> &'static str {
        match self.backend {
            super::Backend::Sqlite => "WITH j AS MATERIALIZED (SELECT jsonb(value) AS value FROM json_each($1))",
            super::Backend::Postgres => "WITH j AS (SELECT value FROM jsonb_array_elements($1::jsonb))",
        }
    }

    /// `columns` as one JSON array, per row.
    pub(crate) fn row(self, columns: &str) -> String {
        match self.backend {
            super::Backend::Sqlite => format!("json_array({columns})"),
            super::Backend::Postgres => format!("json_build_array({columns})"),
        }
    }

    /// An aggregate expression: the group's `value`s as one JSON array, as JSON (`null` on
    /// PostgreSQL when there are none).
    fn json_array_of(self, value: &str) -> String {
        match self.backend {
            super::Backend::Sqlite => format!("json_group_array({value})"),
            super::Backend::Postgres => format!("json_agg({value})"),
        }
    }

    /// The group's rows as one JSON array of arrays of `columns`, as text, which both
    /// backends decode alike.
    pub(crate) fn array_of(self, columns: &str) -> String {
        let rows = self.json_array_of(&self.row(columns));
        match self.backend {
            super::Backend::Sqlite => rows,
            super::Backend::Postgres => format!("CAST({rows} AS TEXT)"),
        }
    }

    /// An aggregate expression: one JSON array, as text, holding for each `(value, condition)`
    /// the `value`s of the group's rows that meet the condition as an array (empty or `null`
    /// when none do). A page of rows then decodes as one value per group, whichever kinds of
    /// rows it holds. The arrays of one call list their rows in the same order.
    pub(crate) fn arrays_where(self, groups: &[(&str, &str)]) -> String {
        let arrays = groups
            .iter()
            .map(|(value, condition)| format!("{} FILTER (WHERE {condition})", self.json_array_of(value)))
            .collect::<Vec<_>>()
            .join(", ");
        match self.backend {
            super::Backend::Sqlite => format!("json_array({arrays})"),
            super::Backend::Postgres => format!("CAST(json_build_array({arrays}) AS TEXT)"),
        }
    }

    /// `INSERT … SELECT <columns> FROM <rows> WHERE true <conflict>`; the `WHERE true` keeps
    /// SQLite from reading `ON CONFLICT` as a join constraint.
    pub(crate) async fn insert<T: Serialize>(
        self,
        tx: &mut Tx,
        insert: &str,
        columns: &str,
        conflict: &str,
        rows: &[T],
    ) -> StoreResult<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let payload = serde_json::to_string(rows).expect("rows serialise");
        let sql = format!("{} {insert} SELECT {columns} FROM j WHERE true {conflict}", self.with_rows());
        Ok(sqlx::query(&sql).bind(payload).execute(&mut **tx).await?.rows_affected())
    }

    /// The keys of `table` among `keys`.
    pub async fn existing(self, tx: &mut Tx, table: Reference, keys: &[&str]) -> StoreResult<HashSet<String>> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let (table, column) = match table {
            Reference::Plan => ("plans", "plan_id"),
            Reference::Subscriber => ("subscribers", "subscriber_id"),
        };
        let wrapped: Vec<[&str; 1]> = keys.iter().map(|k| [*k]).collect();
        let sql = format!(
            "{} SELECT {column} FROM {table} WHERE {column} IN (SELECT j.value ->> 0 FROM j)",
            self.with_rows()
        );
        let found: Vec<(String,)> = sqlx::query_as(&sql)
            .bind(serde_json::to_string(&wrapped).expect("keys serialise"))
            .fetch_all(&mut **tx)
            .await?;
        Ok(found.into_iter().map(|(key,)| key).collect())
    }

    pub async fn write_plans(self, tx: &mut Tx, rows: &[&PlanRow]) -> StoreResult<u64> {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| (&r.plan_id, &r.name, r.monthly_fee_fen, r.voice_minutes, r.data_mb, r.sms_count))
            .collect();
        self.insert(
            tx,
            "INSERT INTO plans (plan_id, name, monthly_fee_fen, voice_minutes, data_mb, sms_count)",
            "j.value ->> 0, j.value ->> 1, CAST(j.value ->> 2 AS BIGINT), CAST(j.value ->> 3 AS BIGINT),
             CAST(j.value ->> 4 AS BIGINT), CAST(j.value ->> 5 AS BIGINT)",
            "ON CONFLICT (plan_id) DO UPDATE SET name = excluded.name, monthly_fee_fen = excluded.monthly_fee_fen,
                 voice_minutes = excluded.voice_minutes, data_mb = excluded.data_mb, sms_count = excluded.sms_count
             WHERE plans.name <> excluded.name OR plans.monthly_fee_fen <> excluded.monthly_fee_fen
                 OR plans.voice_minutes <> excluded.voice_minutes OR plans.data_mb <> excluded.data_mb
                 OR plans.sms_count <> excluded.sms_count",
            &rows,
        )
        .await
    }

    pub async fn write_subscribers(self, tx: &mut Tx, rows: &[&SubscriberRow]) -> StoreResult<u64> {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    &r.subscriber_id,
                    r.msisdn.as_str(),
                    &r.name,
                    &r.plan_id,
                    r.language.as_str(),
                    r.billing_day.get(),
                    r.status.as_str(),
                    i64::from(r.bill_sms),
                )
            })
            .collect();
        self.insert(
            tx,
            "INSERT INTO subscribers (subscriber_id, msisdn, name, plan_id, language, billing_day, status, bill_sms)",
            "j.value ->> 0, j.value ->> 1, j.value ->> 2, j.value ->> 3, j.value ->> 4,
             CAST(j.value ->> 5 AS BIGINT), j.value ->> 6, CAST(j.value ->> 7 AS BIGINT)",
            "ON CONFLICT (subscriber_id) DO UPDATE SET msisdn = excluded.msisdn, name = excluded.name,
                 plan_id = excluded.plan_id, language = excluded.language, billing_day = excluded.billing_day,
                 status = excluded.status, bill_sms = excluded.bill_sms
             WHERE subscribers.msisdn <> excluded.msisdn OR subscribers.name <> excluded.name
                 OR subscribers.plan_id <> excluded.plan_id OR subscribers.language <> excluded.language
                 OR subscribers.billing_day <> excluded.billing_day OR subscribers.status <> excluded.status
                 OR subscribers.bill_sms <> excluded.bill_sms",
            &rows,
        )
        .await
    }

    /// Usage records are immutable once known: a known `record_id` is a no-op.
    pub async fn write_usage(self, tx: &mut Tx, rows: &[&UsageRow]) -> StoreResult<u64> {
        let rows: Vec<_> = rows
            .iter()
            .map(|row| {
                let r = &row.record;
                (
                    &r.record_id,
                    &row.subscriber_id,
                    to_micros(r.occurred_at),
                    r.category.as_str(),
                    r.quantity,
                    r.amount.get(),
                    &r.service_code,
                    &r.description,
                )
            })
            .collect();
        self.insert(
            tx,
            "INSERT INTO usage_records
                 (record_id, subscriber_id, occurred_at, category, quantity, amount_fen, service_code, description)",
            "j.value ->> 0, j.value ->> 1, CAST(j.value ->> 2 AS BIGINT), j.value ->> 3,
             CAST(j.value ->> 4 AS BIGINT), CAST(j.value ->> 5 AS BIGINT), j.value ->> 6, j.value ->> 7",
            "ON CONFLICT (record_id) DO NOTHING",
            &rows,
        )
        .await
    }

    /// An order is keyed by subscriber, service and order time; a later file may fill in its
    /// cancellation or confirmation.
    pub async fn write_orders(self, tx: &mut Tx, rows: &[&OrderRow]) -> StoreResult<u64> {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                let o = &r.order;
                (
                    &r.subscriber_id,
                    &o.service_code,
                    to_micros(o.ordered_at),
                    o.cancelled_at.map(to_micros),
                    i64::from(o.confirmed),
                    &r.channel,
                )
            })
            .collect();
        self.insert(
            tx,
            "INSERT INTO vas_orders (subscriber_id, service_code, ordered_at, cancelled_at, confirmed, channel)",
            "j.value ->> 0, j.value ->> 1, CAST(j.value ->> 2 AS BIGINT), CAST(j.value ->> 3 AS BIGINT),
             CAST(j.value ->> 4 AS BIGINT), j.value ->> 5",
            "ON CONFLICT (subscriber_id, service_code, ordered_at) DO UPDATE SET cancelled_at = excluded.cancelled_at,
                 confirmed = excluded.confirmed, channel = excluded.channel
             WHERE COALESCE(vas_orders.cancelled_at, -1) <> COALESCE(excluded.cancelled_at, -1)
                 OR vas_orders.confirmed <> excluded.confirmed OR vas_orders.channel <> excluded.channel",
            &rows,
        )
        .await
    }

    pub async fn write_spam_reports(self, tx: &mut Tx, rows: &[&SpamReportRow]) -> StoreResult<u64> {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    &r.report_id,
                    r.reporter.as_str(),
                    &r.reported_number,
                    to_micros(r.reported_at),
                    r.kind.as_str(),
                    &r.note,
                )
            })
            .collect();
        self.insert(
            tx,
            "INSERT INTO spam_reports (report_id, reporter, reported_number, reported_at, kind, note)",
            "j.value ->> 0, j.value ->> 1, j.value ->> 2, CAST(j.value ->> 3 AS BIGINT), j.value ->> 4, j.value ->> 5",
            "ON CONFLICT (report_id) DO NOTHING",
            &rows,
        )
        .await
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Reference {
    Plan,
    Subscriber,
}

pub struct ImportRunRecord<'a> {
    pub kind: &'a str,
    pub file: &'a str,
    pub strict: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub counts: ImportCounts,
}

pub async fn record_import_run(tx: &mut Tx, run: &ImportRunRecord<'_>) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO import_runs (id, kind, file, strict, started_at, finished_at, accepted, duplicate, rejected)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(uuid::Uuid::now_v7().to_string())
    .bind(run.kind)
    .bind(run.file)
    .bind(i64::from(run.strict))
    .bind(to_micros(run.started_at))
    .bind(to_micros(run.finished_at))
    .bind(run.counts.accepted as i64)
    .bind(run.counts.duplicate as i64)
    .bind(run.counts.rejected as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
