//! Streaming CSV import (docs/contract.md §1): rows are read one at a time, written in batched
//! transactions, and every rejected row goes to `<input>.rejects.csv` with its line number
//! and reason. With `strict`, the first bad row aborts and nothing from the file is kept.

pub mod rows;

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono_tz::Tz;
use csv::ByteRecord;

use crate::clock::Clock;
use crate::domain::records::{Plan, SpamReport, Subscriber, SubscriberOrder, SubscriberUsage};
use crate::progress::{Reporter, Unit};
use crate::store::bulk::{Copied, Copier};
use crate::store::json_rows::JsonRows;
use crate::store::partitions::{months_of, Partitioned};
use crate::store::records::{self as db, ImportRunRecord, Reference};
use crate::store::{ImportCounts, Store, StoreError, Tx};
use rows::{Columns, Fields, RowError};

/// Rows per statement and transaction: large enough to amortise round trips and commits,
/// small enough to keep locks short and memory flat.
const BATCH_ROWS: usize = 5000;
/// Usage batches copied into PostgreSQL at once. One `COPY` keeps one database process busy;
/// with two, the database can use both cores of a small machine while the file is parsed.
const COPIES_AT_ONCE: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    Plans,
    Subscribers,
    Usage,
    Orders,
    SpamReports,
}

impl ImportKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            ImportKind::Plans => "plans",
            ImportKind::Subscribers => "subscribers",
            ImportKind::Usage => "usage",
            ImportKind::Orders => "orders",
            ImportKind::SpamReports => "spam-reports",
        }
    }

    /// The table its rows go to.
    const fn table(self) -> &'static str {
        match self {
            ImportKind::Plans => "plans",
            ImportKind::Subscribers => "subscribers",
            ImportKind::Usage => "usage_records",
            ImportKind::Orders => "vas_orders",
            ImportKind::SpamReports => "spam_reports",
        }
    }

    fn columns(self) -> (&'static [&'static str], &'static [&'static str]) {
        match self {
            ImportKind::Plans => rows::PLAN_COLUMNS,
            ImportKind::Subscribers => rows::SUBSCRIBER_COLUMNS,
            ImportKind::Usage => rows::USAGE_COLUMNS,
            ImportKind::Orders => rows::ORDER_COLUMNS,
            ImportKind::SpamReports => rows::SPAM_REPORT_COLUMNS,
        }
    }
}

impl FromStr for ImportKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [ImportKind::Plans, ImportKind::Subscribers, ImportKind::Usage, ImportKind::Orders, ImportKind::SpamReports]
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown import kind {s:?}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: header row: {problem}")]
    Header { file: String, problem: String },
    #[error("{file}: missing required column(s) {columns}; nothing was imported")]
    MissingColumns { file: String, columns: String },
    #[error("{file} line {line}, {reason} (--strict: nothing from this file was kept)")]
    StrictReject { file: String, line: u64, reason: String },
    #[error("{file}: cannot write rejects file {path}: {source}")]
    Rejects { file: String, path: String, source: std::io::Error },
    #[error("{file}: {source}")]
    Store { file: String, source: StoreError },
}

/// The rejects file for an input: `<input>.rejects.csv`.
pub fn rejects_path(input: &Path) -> PathBuf {
    let mut name = input.as_os_str().to_owned();
    name.push(".rejects.csv");
    PathBuf::from(name)
}

/// Line numbers for rejects, counted from the bytes themselves: the CSV reader's own line
/// count is off by one on CRLF files. A second handle on the file follows the reader forward.
struct LineCounter {
    reader: BufReader<File>,
    offset: u64,
    newlines: u64,
}

impl LineCounter {
    fn open(path: &Path) -> std::io::Result<Self> {
        Ok(LineCounter { reader: BufReader::with_capacity(1 << 16, File::open(path)?), offset: 0, newlines: 0 })
    }

    /// The 1-based line on which the record the reader says starts at `record_start` really
    /// starts. The reader's start may point at line ends before the record (the `\n` of a
    /// CRLF, skipped blank lines), so those are stepped over and counted. Offsets only move
    /// forward.
    fn line_at(&mut self, record_start: u64) -> std::io::Result<u64> {
        loop {
            let buffer = self.reader.fill_buf()?;
            if buffer.is_empty() {
                break;
            }
            let before_start = (record_start.saturating_sub(self.offset) as usize).min(buffer.len());
            let line_ends = buffer[before_start..].iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
            let take = before_start + line_ends;
            let reached_record = take < buffer.len();
            self.newlines += buffer[..take].iter().filter(|&&b| b == b'\n').count() as u64;
            self.offset += take as u64;
            self.reader.consume(take);
            if reached_record {
                break;
            }
        }
        Ok(self.newlines + 1)
    }
}

/// When a record spans lines and the bytes it was read from hold an odd number of quotes, a
/// quoted field was opened and never closed: returns the record's first line (without its
/// line end) and where the next line starts. Records on one line, the usual case, are not
/// re-read.
fn unterminated_quote(
    file: &File,
    record: &ByteRecord,
    start: u64,
    end: u64,
) -> std::io::Result<Option<(Vec<u8>, u64)>> {
    use std::os::unix::fs::FileExt;
    if !record.iter().any(|field| field.contains(&b'\n')) {
        return Ok(None);
    }
    let mut raw = vec![0; (end - start) as usize];
    file.read_exact_at(&mut raw, start)?;
    if raw.iter().filter(|&&b| b == b'"').count() % 2 == 0 {
        return Ok(None);
    }
    let line_end = raw.iter().position(|&b| b == b'\n').unwrap_or(raw.len());
    let first_line = &raw[..line_end];
    let first_line = first_line.strip_suffix(b"\r").unwrap_or(first_line);
    Ok(Some((first_line.to_vec(), start + line_end as u64 + 1)))
}

/// One parsed row of any kind.
enum Row {
    Plan(Plan),
    Subscriber(Subscriber),
    Usage(SubscriberUsage),
    Order(SubscriberOrder),
    SpamReport(SpamReport),
}

impl Row {
    fn parse(kind: ImportKind, fields: &Fields<'_>) -> Result<Row, RowError> {
        Ok(match kind {
            ImportKind::Plans => Row::Plan(rows::parse_plan(fields)?),
            ImportKind::Subscribers => Row::Subscriber(rows::parse_subscriber(fields)?),
            ImportKind::Usage => Row::Usage(rows::parse_usage(fields)?),
            ImportKind::Orders => Row::Order(rows::parse_order(fields)?),
            ImportKind::SpamReports => Row::SpamReport(rows::parse_spam_report(fields)?),
        })
    }

    /// The row another table must already hold.
    fn reference(&self) -> Option<(&'static str, &str)> {
        match self {
            Row::Subscriber(r) => Some(("plan_id", &r.plan_id)),
            Row::Usage(r) => Some(("subscriber_id", &r.subscriber_id)),
            Row::Order(r) => Some(("subscriber_id", &r.subscriber_id)),
            Row::Plan(_) | Row::SpamReport(_) => None,
        }
    }

    /// The key of an upserted row: one statement may not update the same row twice, so a
    /// batch holds each key once.
    fn upsert_key(&self) -> Option<String> {
        match self {
            Row::Plan(r) => Some(r.plan_id.clone()),
            Row::Subscriber(r) => Some(r.subscriber_id.clone()),
            Row::Order(r) => Some(format!("{}\n{}\n{}", r.subscriber_id, r.order.service_code, r.order.ordered_at)),
            Row::Usage(_) | Row::SpamReport(_) => None,
        }
    }
}

struct Pending {
    line: u64,
    raw: ByteRecord,
    row: Result<Row, RowError>,
}

/// Rows read but not yet written, in file order.
#[derive(Default)]
struct Batch {
    pending: Vec<Pending>,
    upsert_keys: HashSet<String>,
}

impl Batch {
    fn holds_key_of(&self, row: &Result<Row, RowError>) -> bool {
        row.as_ref().ok().and_then(Row::upsert_key).is_some_and(|key| self.upsert_keys.contains(&key))
    }

    fn push(&mut self, pending: Pending) {
        if let Some(key) = pending.row.as_ref().ok().and_then(Row::upsert_key) {
            self.upsert_keys.insert(key);
        }
        self.pending.push(pending);
    }

    fn len(&self) -> usize {
        self.pending.len()
    }
}

/// One file to import: what it holds, where it is, what to do with a bad row and where
/// rejected rows go.
#[derive(Debug, Clone, Copy)]
pub struct ImportFile<'a> {
    pub kind: ImportKind,
    pub path: &'a Path,
    pub mode: ImportMode,
    pub rejects: &'a Path,
}

/// What an import does with a bad row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Writes it to the rejects file and keeps every good row.
    Lenient,
    /// Stops at it and keeps nothing from the file (`--strict`).
    Strict,
}

/// A usage batch sent by `COPY`: the copier back, the rows, and what `COPY` made of them.
type CopyDone = (Copier, Vec<SubscriberUsage>, Result<Copied, StoreError>);

/// Where a file's rows and rejects go.
struct Writer<'a> {
    store: &'a Store,
    file_name: &'a str,
    rows: JsonRows,
    kind: ImportKind,
    strict: bool,
    /// Where usage totals cut months.
    timezone: Tz,
    /// When the import began: the time of the consent changes it makes.
    started_at: chrono::DateTime<chrono::Utc>,
    rejects: csv::Writer<BufWriter<File>>,
    rejects_path: PathBuf,
    counts: ImportCounts,
    /// PostgreSQL, usage, not strict: batches go in by `COPY`, each committed on its own.
    /// Connections for `COPY` not in use; with `copying`, empty once batches go in the
    /// portable way.
    copiers: Vec<Copier>,
    /// The batches being copied, oldest first.
    copying: VecDeque<tokio::task::JoinHandle<CopyDone>>,
}

impl Writer<'_> {
    /// Checks the batch's references, writes its rejects in line order and its good rows
    /// in one statement. Under `strict` the first reject is the error.
    async fn flush(&mut self, tx: &mut Tx, batch: &mut Batch) -> Result<(), ImportError> {
        let db_error = |source| ImportError::Store { file: self.file_name.to_string(), source };
        let mut pending = std::mem::take(&mut batch.pending);
        batch.upsert_keys.clear();
        let references: Vec<&str> = {
            let mut keys: Vec<&str> =
                pending.iter().filter_map(|p| p.row.as_ref().ok()?.reference().map(|(_, key)| key)).collect();
            keys.sort_unstable();
            keys.dedup();
            keys
        };
        if !references.is_empty() {
            let table = if self.kind == ImportKind::Subscribers { Reference::Plan } else { Reference::Subscriber };
            let known = self.rows.existing(tx, table, &references).await.map_err(db_error)?;
            for p in &mut pending {
                if let Ok(row) = &p.row {
                    if let Some((field, key)) = row.reference().filter(|(_, key)| !known.contains(*key)) {
                        let what = if field == "plan_id" { "plan" } else { "subscriber" };
                        p.row = Err(RowError { field, problem: format!("unknown {what} {key:?}") });
                    }
                }
            }
        }
        let mut good = Vec::with_capacity(pending.len());
        for p in pending {
            match p.row {
                Ok(row) => good.push(row),
                Err(reason) => self.reject(p.line, &reason, &p.raw)?,
            }
        }
        self.write(tx, good).await.map_err(db_error)
    }

    /// Counts rows given to the database against the rows it stored: the rest were known.
    fn count(&mut self, given: usize, written: u64) {
        self.counts.accepted += written;
        self.counts.duplicate += given as u64 - written;
    }

    fn reject(&mut self, line: u64, reason: &RowError, raw: &ByteRecord) -> Result<(), ImportError> {
        let rejects_error = |source| ImportError::Rejects {
            file: self.file_name.to_string(),
            path: self.rejects_path.display().to_string(),
            source,
        };
        self.counts.rejected += 1;
        let mut reject = ByteRecord::from(vec![line.to_string(), reason.to_string()]);
        reject.extend(raw.iter());
        self.rejects.write_byte_record(&reject).map_err(|e| rejects_error(e.into()))?;
        if self.strict {
            self.rejects.flush().map_err(rejects_error)?;
            return Err(ImportError::StrictReject {
                file: self.file_name.to_string(),
                line,
                reason: reason.to_string(),
            });
        }
        Ok(())
    }

    async fn write(&mut self, tx: &mut Tx, good: Vec<Row>) -> Result<(), StoreError> {
        macro_rules! all {
            ($variant:ident) => {
                good.iter().filter_map(|r| if let Row::$variant(r) = r { Some(r) } else { None }).collect::<Vec<_>>()
            };
        }
        let written = match self.kind {
            ImportKind::Plans => db::write_plans(tx, &all!(Plan)).await?,
            ImportKind::Subscribers => {
                let rows = all!(Subscriber);
                let written = db::write_subscribers(tx, &rows, self.started_at).await?;
                self.counts.consent_kept += written.consent_kept;
                written.accepted
            }
            ImportKind::Usage => {
                let rows: Vec<SubscriberUsage> =
                    good.into_iter().filter_map(|r| if let Row::Usage(r) = r { Some(r) } else { None }).collect();
                if self.copiers.is_empty() && !self.copying.is_empty() {
                    self.settle_oldest(tx).await?;
                }
                let timezone = self.timezone;
                if self.store.partitioned() {
                    let months = months_of(rows.iter().map(|r| r.record.occurred_at), timezone);
                    self.store.ensure_partitions(&[Partitioned::Usage], months).await?;
                }
                if let Some(mut copier) = self.copiers.pop() {
                    // Sent while the next batches are read and checked: the two cores work at once.
                    self.copying.push_back(tokio::spawn(async move {
                        let copied = copier.copy_usage(&rows, timezone).await;
                        (copier, rows, copied)
                    }));
                    return Ok(());
                }
                self.settle_all(tx).await?;
                let written = crate::store::usage::write_usage(tx, &rows, self.timezone).await?;
                self.count(rows.len(), written);
                return Ok(());
            }
            ImportKind::Orders => db::write_orders(tx, &all!(Order)).await?,
            ImportKind::SpamReports => db::write_spam_reports(tx, &all!(SpamReport)).await?,
        };
        self.count(good.len(), written);
        Ok(())
    }

    /// Waits for the oldest batch being copied and counts it; when it was refused, for every
    /// batch being copied, before it is written again (`settle`).
    async fn settle_oldest(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        let Some(oldest) = self.copying.pop_front() else {
            return Ok(());
        };
        let mut done = vec![finished(oldest).await];
        if !matches!(done[0].2, Ok(Copied::All(_))) {
            done.extend(self.all_finished().await);
        }
        self.settle(tx, done).await
    }

    /// Waits for every batch being copied and counts them.
    async fn settle_all(&mut self, tx: &mut Tx) -> Result<(), StoreError> {
        let done = self.all_finished().await;
        self.settle(tx, done).await
    }

    async fn all_finished(&mut self) -> Vec<CopyDone> {
        let mut done = Vec::with_capacity(self.copying.len());
        while let Some(copying) = self.copying.pop_front() {
            done.push(finished(copying).await);
        }
        done
    }

    /// Counts batches whose copy has finished, in file order. A refused batch is written the
    /// portable way, which skips known records, in `tx`, only once no batch is being copied:
    /// a copy that needs a record `tx` has just written waits for `tx` to commit, and must
    /// never be the one `tx` waits for.
    async fn settle(&mut self, tx: &mut Tx, done: Vec<CopyDone>) -> Result<(), StoreError> {
        let mut copy = true;
        for (copier, rows, copied) in done {
            let written = match copied? {
                Copied::All(count) => count,
                Copied::Refused => {
                    let written = crate::store::usage::write_usage(tx, &rows, self.timezone).await?;
                    // Every row already known means the file is most likely being imported
                    // again, and its later batches would be refused too.
                    if written == 0 {
                        copy = false;
                        self.copiers.clear();
                    }
                    written
                }
            };
            if copy {
                self.copiers.push(copier);
            }
            self.count(rows.len(), written);
        }
        Ok(())
    }
}

async fn finished(copying: tokio::task::JoinHandle<CopyDone>) -> CopyDone {
    copying.await.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()))
}

/// Imports one file and returns its counts. Only a file-level problem (unreadable file,
/// missing column, database failure, or a bad row under `strict`) is an error.
pub async fn import_file(
    store: &Store,
    file: &ImportFile<'_>,
    timezone: Tz,
    clock: &dyn Clock,
    progress: &dyn Reporter,
) -> Result<ImportCounts, ImportError> {
    let ImportFile { kind, path, mode, rejects: rejects_file } = *file;
    let strict = mode == ImportMode::Strict;
    let file_name = path.display().to_string();
    let read_error = |source| ImportError::Read { file: file_name.clone(), source };
    let db_error = |source| ImportError::Store { file: file_name.clone(), source };
    let started_at = clock.now();
    let file = File::open(path).map_err(read_error)?;
    let size = file.metadata().map_err(read_error)?.len();
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(BufReader::with_capacity(1 << 16, file));
    let header_record = reader
        .byte_headers()
        .map_err(|e| ImportError::Header { file: file_name.clone(), problem: e.to_string() })?
        .clone();
    let headers = header_record
        .iter()
        .map(|h| std::str::from_utf8(h).map(|s| s.trim().trim_start_matches('\u{feff}').to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| ImportError::Header { file: file_name.clone(), problem: "is not valid UTF-8".into() })?;
    if header_record.iter().all(<[u8]>::is_empty) {
        return Err(ImportError::Header { file: file_name.clone(), problem: "the file is empty".into() });
    }
    let (required, optional) = kind.columns();
    let columns = Columns::map(&headers, required, optional)
        .map_err(|missing| ImportError::MissingColumns { file: file_name.clone(), columns: missing.join(", ") })?;

    let rejects_file = rejects_file.to_path_buf();
    let rejects_error =
        |source| ImportError::Rejects { file: file_name.clone(), path: rejects_file.display().to_string(), source };
    let mut rejects = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(BufWriter::new(File::create(&rejects_file).map_err(rejects_error)?));
    let mut rejects_header = ByteRecord::from(vec!["line", "reason"]);
    rejects_header.extend(header_record.iter());
    rejects.write_byte_record(&rejects_header).map_err(|e| rejects_error(e.into()))?;

    let progress = progress.step(format!("import {}", kind.as_str()), size, Unit::Bytes);

    let mut writer = Writer {
        store,
        file_name: &file_name,
        rows: store.json_rows(),
        kind,
        strict,
        timezone,
        started_at,
        rejects,
        rejects_path: rejects_file.clone(),
        counts: ImportCounts::default(),
        copiers: Vec::new(),
        copying: VecDeque::new(),
    };
    if kind == ImportKind::Usage && !strict {
        for _ in 0..COPIES_AT_ONCE {
            writer.copiers.extend(store.copier().await.map_err(db_error)?);
        }
    }
    let mut batch = Batch::default();
    let mut tx = store.begin().await.map_err(db_error)?;
    let mut lines = LineCounter::open(path).map_err(read_error)?;
    let mut record = ByteRecord::new();
    let raw_file = File::open(path).map_err(read_error)?;
    loop {
        let start = reader.position().byte();
        let mut row = match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) if record.len() != header_record.len() => Err(RowError {
                field: "row",
                problem: format!("has {} fields where the header has {}", record.len(), header_record.len()),
            }),
            Ok(true) => Row::parse(kind, &Fields::new(&record, &columns)),
            Err(e) => {
                record.clear();
                Err(RowError { field: "row", problem: format!("unreadable CSV: {e}") })
            }
        };
        let record_start = record.position().map_or(start, |p| p.byte());
        let line = lines.line_at(record_start).map_err(read_error)?;
        if let Some((first_line, next_line)) =
            unterminated_quote(&raw_file, &record, record_start, reader.position().byte()).map_err(read_error)?
        {
            // The open quote swallowed the lines after it: reject its own line only and read
            // on from the next, so the rows it swallowed are still imported.
            row = Err(RowError { field: "row", problem: "quoted field is never closed".into() });
            record = ByteRecord::from(vec![first_line.as_slice()]);
            let mut resume = csv::Position::new();
            resume.set_byte(next_line);
            reader.seek(resume).map_err(|e| read_error(std::io::Error::other(e)))?;
        }
        if batch.holds_key_of(&row) {
            writer.flush(&mut tx, &mut batch).await?;
        }
        let rejected = row.is_err();
        batch.push(Pending { line, raw: record.clone(), row });
        // Under --strict a reject ends the import at once, after any earlier row's own reject.
        if batch.len() == BATCH_ROWS || (strict && rejected) {
            writer.flush(&mut tx, &mut batch).await?;
            if !strict {
                tx.commit().await.map_err(|e| db_error(e.into()))?;
                tx = store.begin().await.map_err(db_error)?;
            }
            progress.set_position(reader.position().byte());
        }
    }
    writer.flush(&mut tx, &mut batch).await?;
    // What the last flush wrote is committed before the last copies are waited for: one of
    // them may be waiting for it.
    tx.commit().await.map_err(|e| db_error(e.into()))?;
    tx = store.begin().await.map_err(db_error)?;
    writer.settle_all(&mut tx).await.map_err(db_error)?;
    let counts = writer.counts;
    db::record_import_run(
        &mut tx,
        &ImportRunRecord {
            kind: kind.as_str(),
            file: &file_name,
            strict,
            started_at,
            finished_at: clock.now(),
            counts,
        },
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(|e| db_error(e.into()))?;
    writer.rejects.flush().map_err(rejects_error)?;
    progress.finish();
    if counts.accepted > 0 {
        // The rows are in by now: statistics left stale cost a later plan, not this import.
        if let Err(e) = store.refresh_statistics(kind.table()).await {
            tracing::warn!(file = %file_name, error = %e, "the planner's statistics were not refreshed");
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reject_lines(content: &[u8]) -> Vec<u64> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, content).unwrap();
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_path(&path).unwrap();
        reader.byte_headers().unwrap();
        let mut lines = LineCounter::open(&path).unwrap();
        let mut record = ByteRecord::new();
        let mut out = Vec::new();
        while reader.read_byte_record(&mut record).unwrap() {
            out.push(lines.line_at(record.position().unwrap().byte()).unwrap());
        }
        out
    }

    #[test]
    fn line_numbers_are_right_for_lf_crlf_and_multi_line_fields() {
        assert_eq!(reject_lines(b"h1,h2\na,1\nb,2\n"), [2, 3]);
        assert_eq!(reject_lines(b"h1,h2\r\na,\"x \"\"y\"\"\"\r\nb,2\r\nc,3\r\n"), [2, 3, 4]);
        assert_eq!(reject_lines(b"h1,h2\na,\"two\nlines\"\nb,2\n"), [2, 4]);
        assert_eq!(reject_lines(b"h1,h2\r\n\r\na,1\r\n"), [3], "a blank line is skipped but counted");
    }
}
