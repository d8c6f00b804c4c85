//! Monthly partitions on PostgreSQL (docs/contract.md §11). The four tables that grow with
//! every subscriber every month (usage records, notifications, their status history and the
//! subscribers' replies) are partitioned by month: a month's queries read one partition, and
//! retention drops a month by dropping its partitions, at once, whatever their size.
//!
//! Notifications and their history are partitioned by their `month`; usage records by
//! `occurred_at` and replies by `received_at`, each partition holding one calendar month in
//! the operator's timezone (`billing.timezone`, as it was when the partition was made).
//!
//! Partitions are made ahead of need (the scheduler makes this month's and next month's on
//! each round) and on demand before rows of another month are written. A partition is made
//! as a table of its own, then attached: attaching waits for no writer of the other months,
//! where `CREATE TABLE … PARTITION OF` would wait for every one of them.
//!
//! SQLite keeps plain tables: an embedded database is not that large, and retention deletes
//! from it in bounded batches instead.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use sqlx::Row;

use super::{Backend, Store, StoreError, StoreResult, Tx};
use crate::domain::period::{calendar_month, BillingDay, BillingMonth, MonthFinder};

/// A table kept in monthly partitions on PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Partitioned {
    Notifications,
    Events,
    Usage,
    Replies,
}

/// How long a partition found is taken to exist without looking again: another process's
/// purge may have dropped it since (an old month, written to again only rarely, by a dispute
/// or a late reply), and a write to it would then fail until the process looked again.
const KNOWN_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Taken by whoever makes a partition, so that two processes do not make the same one.
const MAKING_PARTITIONS: i64 = 0x6269_6c6c_7061_7274;

impl Partitioned {
    pub const ALL: [Partitioned; 4] =
        [Partitioned::Notifications, Partitioned::Events, Partitioned::Usage, Partitioned::Replies];

    /// A notification and its status history live in the same month.
    pub const DELIVERIES: [Partitioned; 2] = [Partitioned::Notifications, Partitioned::Events];

    pub fn table(self) -> &'static str {
        match self {
            Partitioned::Notifications => "notifications",
            Partitioned::Events => "notification_events",
            Partitioned::Usage => "usage_records",
            Partitioned::Replies => "mo_messages",
        }
    }

    /// The column the partitions are cut by.
    fn key(self) -> &'static str {
        match self {
            Partitioned::Notifications | Partitioned::Events => "month",
            Partitioned::Usage => "occurred_at",
            Partitioned::Replies => "received_at",
        }
    }

    /// The table's key, kept unique within each partition (its primary key there) instead of
    /// across the table: PostgreSQL's keys on a partitioned table must hold the partition
    /// column, and a key of (id, month) would not tell the planner that an id finds one row.
    /// Without statistics (a month's partition just filled) it then read the whole partition
    /// for every claim of a hundred ids. Notification and reply ids are UUIDv7, unique
    /// anyway; a usage `record_id` is thereby unique within the calendar month of its
    /// `occurred_at` (docs/contract.md §11.4).
    fn unique_in_partition(self) -> Option<&'static str> {
        match self {
            Partitioned::Notifications | Partitioned::Replies => Some("id"),
            Partitioned::Usage => Some("record_id"),
            Partitioned::Events => None,
        }
    }

    /// Whether the key is an instant (UTC microseconds) rather than a month's text.
    fn by_time(self) -> bool {
        matches!(self, Partitioned::Usage | Partitioned::Replies)
    }

    /// Notifications are updated in place through the push, kept on their page (the
    /// fill factor the unpartitioned table had).
    fn storage(self) -> &'static str {
        match self {
            Partitioned::Notifications => " WITH (fillfactor = 60)",
            _ => "",
        }
    }

    fn how(self) -> String {
        if self.by_time() {
            format!("RANGE ({})", self.key())
        } else {
            format!("LIST ({})", self.key())
        }
    }

    fn bounds(self, month: BillingMonth, tz: Tz) -> String {
        if self.by_time() {
            let period = calendar_month(month, tz);
            format!("FROM ({}) TO ({})", period.start.timestamp_micros(), period.end.timestamp_micros())
        } else {
            format!("IN ('{month}')")
        }
    }

    /// The rows of `month`, as a condition on the table: what its partition of `month` holds.
    pub(super) fn rows_of(self, month: BillingMonth, tz: Tz) -> String {
        let key = self.key();
        if self.by_time() {
            let period = calendar_month(month, tz);
            format!("{key} >= {} AND {key} < {}", period.start.timestamp_micros(), period.end.timestamp_micros())
        } else {
            format!("{key} = '{month}'")
        }
    }

    /// `notifications_p2026_08`.
    pub fn partition(self, month: BillingMonth) -> String {
        format!("{}_p{:04}_{:02}", self.table(), month.year(), month.month())
    }

    /// The month a partition of this table holds, from its name.
    fn month_of_partition(self, name: &str) -> Option<BillingMonth> {
        let rest = name.strip_prefix(self.table())?.strip_prefix("_p")?;
        let (year, month) = rest.split_once('_')?;
        BillingMonth::new(year.parse().ok()?, month.parse().ok()?)
    }
}

/// The calendar months (in `tz`) of `instants`.
pub fn months_of(instants: impl IntoIterator<Item = DateTime<Utc>>, tz: Tz) -> BTreeSet<BillingMonth> {
    let mut finder = MonthFinder::new(tz);
    instants.into_iter().map(|at| finder.month_of(at, BillingDay::FIRST)).collect()
}

impl Store {
    /// Whether this store keeps monthly partitions (PostgreSQL).
    pub fn partitioned(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// Makes sure `tables` have partitions for `months`; nothing on SQLite. Cheap once made:
    /// the partitions this process made or found are remembered. Call it before the
    /// transaction that writes the rows.
    pub async fn ensure_partitions(
        &self,
        tables: &[Partitioned],
        months: impl IntoIterator<Item = BillingMonth>,
    ) -> StoreResult<()> {
        if !self.partitioned() {
            return Ok(());
        }
        let wanted: Vec<(Partitioned, BillingMonth)> = {
            let known = self.partitions.lock().expect("partition cache");
            months
                .into_iter()
                .flat_map(|month| tables.iter().map(move |table| (*table, month)))
                .filter(|key| known.get(key).is_none_or(|seen| seen.elapsed() > KNOWN_FOR))
                .collect()
        };
        if wanted.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MAKING_PARTITIONS).execute(&mut *tx).await?;
        for (table, month) in &wanted {
            make_partition(&mut tx, *table, *month, self.tz, Making::Attached).await?;
        }
        tx.commit().await?;
        let now = std::time::Instant::now();
        self.partitions.lock().expect("partition cache").extend(wanted.into_iter().map(|key| (key, now)));
        Ok(())
    }

    /// The months `table` has partitions for, oldest first; on SQLite, the months its rows
    /// belong to.
    pub async fn partition_months(&self, table: Partitioned) -> StoreResult<BTreeSet<BillingMonth>> {
        let mut connection = self.pool.acquire().await?;
        let names: Vec<String> = match self.backend {
            Backend::Postgres => {
                sqlx::query_scalar(
                    "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = $1::regclass",
                )
                .bind(table.table())
                .fetch_all(&mut *connection)
                .await?
            }
            Backend::Sqlite => return sqlite_months(&mut connection, table, self.tz).await,
        };
        Ok(names.iter().filter_map(|name| table.month_of_partition(name)).collect())
    }

    /// Gives the planner the statistics of `tables`' partitions of `month` after a bulk write:
    /// autovacuum comes by later, and until then a month's partition just filled is planned
    /// on guesses (a scan for what is left to send read the whole partition, 2.8 s at a
    /// million, instead of its partial index). Reads a sample; nothing on SQLite.
    pub async fn analyze_partitions(&self, tables: &[Partitioned], month: BillingMonth) -> StoreResult<()> {
        if !self.partitioned() {
            return Ok(());
        }
        for table in tables {
            self.refresh_statistics(&table.partition(month)).await?;
        }
        Ok(())
    }

    /// Forgets that a partition exists, once retention dropped it.
    pub(super) fn forget_partition(&self, table: Partitioned, month: BillingMonth) {
        self.partitions.lock().expect("partition cache").remove(&(table, month));
    }

    /// Moves the tables of a database made before partitioning over to monthly partitions,
    /// keeping every row; nothing when they are partitioned already or on SQLite. A new
    /// database goes the same way, with nothing to move.
    pub(super) async fn partition_tables(&self) -> StoreResult<()> {
        if !self.partitioned() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(MAKING_PARTITIONS).execute(&mut *tx).await?;
        let plain = |table: Partitioned| {
            sqlx::query_scalar::<_, bool>("SELECT relkind = 'r' FROM pg_class WHERE oid = $1::regclass")
                .bind(table.table())
        };
        if plain(Partitioned::Events).fetch_one(&mut *tx).await?
            && plain(Partitioned::Notifications).fetch_one(&mut *tx).await?
        {
            // The history takes the month of its notification, found by the plain table's key
            // in one join; a notification no longer there (none is ever deleted but by
            // retention, which takes both) leaves its history the month it happened in.
            sqlx::query(
                "UPDATE notification_events e SET month = n.month FROM notifications n
                 WHERE n.id = e.notification_id AND e.month IS NULL",
            )
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE notification_events SET month = to_char(to_timestamp(at / 1000000.0) AT TIME ZONE 'UTC', 'YYYY-MM')
                 WHERE month IS NULL",
            )
            .execute(&mut *tx)
            .await?;
        }
        for table in Partitioned::ALL {
            let kind: String = sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE oid = $1::regclass")
                .bind(table.table())
                .fetch_one(&mut *tx)
                .await?;
            if kind == "r" {
                move_to_partitions(&mut tx, table, self.tz).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Making {
    /// Made inside `CREATE TABLE … PARTITION OF`: while the table is being moved over, which
    /// holds every lock anyway.
    Declared,
    /// Made on its own, then attached: beside writers of other months.
    Attached,
}

async fn make_partition(
    tx: &mut Tx,
    table: Partitioned,
    month: BillingMonth,
    tz: Tz,
    making: Making,
) -> StoreResult<()> {
    let name = table.partition(month);
    if partition_exists(tx, &name).await? {
        return Ok(());
    }
    let (parent, bounds, storage) = (table.table(), table.bounds(month, tz), table.storage());
    let unique = table.unique_in_partition().map(|column| format!("ALTER TABLE {name} ADD PRIMARY KEY ({column})"));
    let statements: Vec<String> = match making {
        Making::Declared => {
            std::iter::once(format!("CREATE TABLE {name} PARTITION OF {parent} FOR VALUES {bounds}{storage}"))
                .chain(unique)
                .collect()
        }
        Making::Attached => std::iter::once(format!(
            "CREATE TABLE {name} (LIKE {parent} INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING STORAGE){storage}"
        ))
        .chain(unique)
        .chain([format!("ALTER TABLE {parent} ATTACH PARTITION {name} FOR VALUES {bounds}")])
        .collect(),
    };
    for statement in statements {
        sqlx::query(&statement).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Whether the partition `name` exists.
pub(super) async fn partition_exists(connection: &mut sqlx::AnyConnection, name: &str) -> StoreResult<bool> {
    Ok(sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL").bind(name).fetch_one(connection).await?)
}

/// Moves one plain table over to a partitioned one of the same name, columns, keys and
/// indexes, every row kept: the keys gain the partition column, which PostgreSQL requires of
/// a partitioned table's unique keys.
async fn move_to_partitions(tx: &mut Tx, table: Partitioned, tz: Tz) -> StoreResult<()> {
    let name = table.table();
    let old = format!("{name}_unpartitioned");
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes i WHERE schemaname = current_schema() AND tablename = $1
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname AND c.conrelid = $1::regclass)",
    )
    .bind(name)
    .fetch_all(&mut **tx)
    .await?;
    let keys: Vec<(String, String)> = sqlx::query(
        "SELECT conname::text AS name, pg_get_constraintdef(oid) AS definition FROM pg_constraint
         WHERE conrelid = $1::regclass AND contype IN ('p', 'u') ORDER BY contype, conname",
    )
    .bind(name)
    .fetch_all(&mut **tx)
    .await?
    .iter()
    .map(|row| Ok((row.try_get("name")?, row.try_get("definition")?)))
    .collect::<StoreResult<_>>()?;
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 AND is_generated = 'NEVER' ORDER BY ordinal_position",
    )
    .bind(name)
    .fetch_all(&mut **tx)
    .await?;
    let sequences: Vec<(String, String)> = {
        let mut owned = Vec::new();
        for column in &columns {
            let sequence: Option<String> = sqlx::query_scalar("SELECT pg_get_serial_sequence($1, $2)")
                .bind(name)
                .bind(column)
                .fetch_one(&mut **tx)
                .await?;
            owned.extend(sequence.map(|s| (s, column.clone())));
        }
        owned
    };
    let months = stored_months(tx, table, tz).await?;
    for statement in [
        format!("ALTER TABLE {name} RENAME TO {old}"),
        format!(
            "CREATE TABLE {name} (LIKE {old} INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING STORAGE) PARTITION BY {}",
            table.how()
        ),
        format!("ALTER TABLE {name} ALTER COLUMN {} SET NOT NULL", table.key()),
    ] {
        sqlx::query(&statement).execute(&mut **tx).await?;
    }
    for month in months {
        make_partition(tx, table, month, tz, Making::Declared).await?;
    }
    let list = columns.join(", ");
    sqlx::query(&format!("INSERT INTO {name} ({list}) SELECT {list} FROM {old}")).execute(&mut **tx).await?;
    for (sequence, column) in &sequences {
        sqlx::query(&format!("ALTER SEQUENCE {sequence} OWNED BY {name}.{column}")).execute(&mut **tx).await?;
    }
    sqlx::query(&format!("DROP TABLE {old}")).execute(&mut **tx).await?;
    for (key, definition) in keys {
        if table.unique_in_partition().is_some_and(|column| definition == format!("PRIMARY KEY ({column})")) {
            // Kept per partition instead (`unique_in_partition`).
            continue;
        }
        let definition = with_partition_key(&definition, table.key());
        sqlx::query(&format!("ALTER TABLE {name} ADD CONSTRAINT {key} {definition}")).execute(&mut **tx).await?;
    }
    for index in indexes {
        sqlx::query(&index).execute(&mut **tx).await?;
    }
    // Partitions just filled, planned on guesses until autovacuum comes by (if it does).
    sqlx::query(&format!("ANALYZE {name}")).execute(&mut **tx).await?;
    Ok(())
}

/// `PRIMARY KEY (id)` → `PRIMARY KEY (id, month)`: a unique key of a partitioned table must
/// hold the partition column.
fn with_partition_key(definition: &str, key: &str) -> String {
    let Some(open) = definition.find('(') else { return definition.to_string() };
    let Some(close) = definition[open..].find(')').map(|i| open + i) else { return definition.to_string() };
    let columns: Vec<&str> = definition[open + 1..close].split(',').map(str::trim).collect();
    if columns.contains(&key) {
        return definition.to_string();
    }
    format!("{}({}, {}){}", &definition[..open], columns.join(", "), key, &definition[close + 1..])
}

/// The months a plain table's rows belong to.
async fn stored_months(tx: &mut Tx, table: Partitioned, tz: Tz) -> StoreResult<BTreeSet<BillingMonth>> {
    let key = table.key();
    let name = table.table();
    if !table.by_time() {
        let months: Vec<String> =
            sqlx::query_scalar(&format!("SELECT DISTINCT {key} FROM {name}")).fetch_all(&mut **tx).await?;
        return months
            .into_iter()
            .map(|m| m.parse().map_err(|_| StoreError::Corrupt { column: "month", value: m }))
            .collect();
    }
    // Each UTC day a row falls on, then the months of that day's first and last instant: a
    // day crosses at most one month boundary, in any timezone.
    const DAY: i64 = 86_400_000_000;
    let days: Vec<i64> =
        sqlx::query_scalar(&format!("SELECT DISTINCT floor({key}::numeric / {DAY})::bigint FROM {name}"))
            .fetch_all(&mut **tx)
            .await?;
    let mut instants = Vec::with_capacity(days.len() * 2);
    for day in days {
        for micros in [day.saturating_mul(DAY), day.saturating_mul(DAY).saturating_add(DAY - 1)] {
            let at = DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| StoreError::Corrupt { column: key, value: micros.to_string() })?;
            instants.push(at);
        }
    }
    Ok(months_of(instants, tz))
}

/// On SQLite, the months the rows of `table` belong to.
async fn sqlite_months(
    connection: &mut sqlx::AnyConnection,
    table: Partitioned,
    tz: Tz,
) -> StoreResult<BTreeSet<BillingMonth>> {
    let (key, name) = (table.key(), table.table());
    if !table.by_time() {
        let months: Vec<String> =
            sqlx::query_scalar(&format!("SELECT DISTINCT {key} FROM {name}")).fetch_all(&mut *connection).await?;
        return Ok(months.into_iter().filter_map(|m| m.parse().ok()).collect());
    }
    // From the oldest row's month to the newest's: retention asks of each whether it is old
    // enough, and removing a month with no rows costs one lookup.
    let row = sqlx::query(&format!("SELECT MIN({key}) AS first, MAX({key}) AS last FROM {name}"))
        .fetch_one(&mut *connection)
        .await?;
    let (Some(first), Some(last)) = (row.try_get::<Option<i64>, _>("first")?, row.try_get::<Option<i64>, _>("last")?)
    else {
        return Ok(BTreeSet::new());
    };
    let month = |micros: i64| {
        DateTime::from_timestamp_micros(micros)
            .map(|at| months_of([at], tz))
            .and_then(|m| m.into_iter().next())
            .ok_or_else(|| StoreError::Corrupt { column: key, value: micros.to_string() })
    };
    let (mut month_at, last) = (month(first)?, month(last)?);
    let mut months = BTreeSet::new();
    while month_at <= last {
        months.insert(month_at);
        month_at = month_at.next();
    }
    Ok(months)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_keys_gain_the_partition_column_once() {
        assert_eq!(with_partition_key("PRIMARY KEY (id)", "month"), "PRIMARY KEY (id, month)");
        assert_eq!(
            with_partition_key("UNIQUE (subscriber_id, month, kind)", "month"),
            "UNIQUE (subscriber_id, month, kind)"
        );
        assert_eq!(
            with_partition_key("PRIMARY KEY (record_id)", "occurred_at"),
            "PRIMARY KEY (record_id, occurred_at)"
        );
    }

    #[test]
    fn partitions_are_named_by_table_and_month_and_read_back() {
        let month: BillingMonth = "2026-08".parse().unwrap();
        let name = Partitioned::Usage.partition(month);
        assert_eq!(name, "usage_records_p2026_08");
        assert_eq!(Partitioned::Usage.month_of_partition(&name), Some(month));
        assert_eq!(Partitioned::Notifications.month_of_partition(&name), None);
        assert_eq!(Partitioned::Notifications.month_of_partition("notifications_unpartitioned"), None);
    }

    #[test]
    fn a_month_of_time_keyed_rows_is_cut_in_the_operator_timezone() {
        let bounds = Partitioned::Replies.bounds("2026-08".parse().unwrap(), chrono_tz::Asia::Shanghai);
        // 2026-07-31T16:00Z and 2026-08-31T16:00Z.
        assert_eq!(bounds, "FROM (1785513600000000) TO (1788192000000000)");
        assert_eq!(Partitioned::Events.bounds("2026-08".parse().unwrap(), chrono_tz::UTC), "IN ('2026-08')");
    }
}
