//! Rows written many at a time, as values: bound as the parameters of one `INSERT … VALUES`
//! per thousand rows on either backend, or sent as `COPY`'s text on PostgreSQL (`bulk`).
//!
//! Values rather than one JSON array read back field by field: SQLite, which has no `COPY`,
//! takes bound values as they are, where parsing the JSON cost a large share of the embedded
//! build and import.

use std::fmt::Write;

use super::{Backend, StoreResult, Tx};

/// Rows of values, one `Vec` a row, in a table's column order.
pub type Rows<'a> = Vec<Vec<Value<'a>>>;

/// One value of a row. A null keeps its column's type: PostgreSQL refuses a parameter typed as
/// text for a `BIGINT` column even when it is null.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Text(&'a str),
    Int(i64),
    NullText,
    NullInt,
}

impl<'a> Value<'a> {
    pub fn text_or_null(text: Option<&'a str>) -> Value<'a> {
        text.map_or(Value::NullText, Value::Text)
    }

    pub fn int_or_null(number: Option<i64>) -> Value<'a> {
        number.map_or(Value::NullInt, Value::Int)
    }
}

/// A table written in batches, with the columns each of its rows gives, in order.
#[derive(Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [&'static str],
}

impl Table {
    /// `ON CONFLICT (key) DO UPDATE` that sets every other column from the new row, but only
    /// where one of them differs: an unchanged row changes nothing, so an import counts it as
    /// a duplicate. `IS DISTINCT FROM` compares nullable columns too (both backends have it;
    /// SQLite since 3.39).
    pub fn update_on_conflict(&self, key: &[&str]) -> String {
        debug_assert!(key.iter().all(|k| self.columns.contains(k)), "the key of {} is among its columns", self.name);
        let others: Vec<&str> = self.columns.iter().copied().filter(|c| !key.contains(c)).collect();
        let set: Vec<String> = others.iter().map(|c| format!("{c} = excluded.{c}")).collect();
        let changed: Vec<String> =
            others.iter().map(|c| format!("{}.{c} IS DISTINCT FROM excluded.{c}", self.name)).collect();
        format!("ON CONFLICT ({}) DO UPDATE SET {} WHERE {}", key.join(", "), set.join(", "), changed.join(" OR "))
    }
}

/// `table (column, …)`, as `INSERT INTO` and `COPY` name what they fill.
impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name, self.columns.join(", "))
    }
}

/// Rows per `INSERT … VALUES`: a thousand rows of the widest table (bills, 20 columns) bind
/// 20,000 values, within both backends' limits (SQLite 32,766, PostgreSQL 65,535).
const ROWS_PER_INSERT: usize = 1000;

/// Inserts `rows` into `table` by `INSERT … VALUES <rows> <conflict>` statements of up to
/// `ROWS_PER_INSERT` rows, each value bound, and returns how many rows they changed (an
/// `ON CONFLICT` clause that skips a row does not count it).
///
/// Full statements are kept prepared on the connection; the shorter last one is prepared each
/// time, since its length varies from call to call. SQLite's placeholders are plain `?`: sqlx
/// asks SQLite for each placeholder's name, which SQLite finds for a numbered one by walking
/// the list of them all, and statements of 5,000 numbered values cut the embedded run to a
/// quarter of its speed.
pub async fn insert_values<'a, R: AsRef<[Value<'a>]>>(
    tx: &mut Tx,
    table: Table,
    conflict: &str,
    rows: &[R],
) -> StoreResult<u64> {
    let mut changed = 0;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = insert_sql(tx, table, conflict, chunk.len());
        changed += bind_rows(&sql, table, chunk).execute(&mut **tx).await?.rows_affected();
    }
    Ok(changed)
}

/// As `insert_values`, and returns the text column `returned` of each row inserted or
/// updated, in no particular order.
pub async fn insert_values_returning<'a, R: AsRef<[Value<'a>]>>(
    tx: &mut Tx,
    table: Table,
    conflict: &str,
    rows: &[R],
    returned: &str,
) -> StoreResult<Vec<String>> {
    let conflict = format!("{conflict} RETURNING {returned}");
    let mut values = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let sql = insert_sql(tx, table, &conflict, chunk.len());
        for row in bind_rows(&sql, table, chunk).fetch_all(&mut **tx).await? {
            values.push(sqlx::Row::try_get(&row, 0)?);
        }
    }
    Ok(values)
}

/// `INSERT INTO table VALUES` with a placeholder for each value of `rows` rows, then `tail`.
fn insert_sql(tx: &Tx, table: Table, tail: &str, rows: usize) -> String {
    let numbered = Backend::of(tx) == Backend::Postgres;
    let width = table.columns.len();
    let mut sql = format!("INSERT INTO {table} VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..width {
            if column > 0 {
                sql.push_str(", ");
            }
            if numbered {
                write!(sql, "${}", row * width + column + 1).expect("writing to a string");
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
    }
    sql.push(' ');
    sql.push_str(tail);
    sql
}

fn bind_rows<'q, 'a: 'q, R: AsRef<[Value<'a>]>>(
    sql: &'q str,
    table: Table,
    chunk: &'q [R],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    let mut insert = sqlx::query(sql).persistent(chunk.len() == ROWS_PER_INSERT);
    for row in chunk {
        let values = row.as_ref();
        debug_assert_eq!(values.len(), table.columns.len(), "a row of {} gives every column", table.name);
        for value in values {
            insert = match *value {
                Value::Text(text) => insert.bind(text),
                Value::Int(number) => insert.bind(number),
                Value::NullText => insert.bind(None::<&str>),
                Value::NullInt => insert.bind(None::<i64>),
            };
        }
    }
    insert
}
