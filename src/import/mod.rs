//! Streaming CSV import (SPEC §1): rows are read one at a time, written in batched
//! transactions, and every rejected row goes to `<input>.rejects.csv` with its line number
//! and reason. With `strict`, the first bad row aborts and nothing from the file is kept.

pub mod rows;

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::Utc;
use csv::ByteRecord;
use indicatif::{ProgressBar, ProgressStyle};

use crate::store::imports::{self as db, ImportRunRecord, WriteOutcome};
use crate::store::{ImportCounts, Store, StoreError, Tx};
use rows::{Columns, Fields, RowError};

/// Rows per transaction: large enough to amortise commits, small enough to keep locks short.
const BATCH_ROWS: usize = 2000;

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

/// Remembers the last reference lookup: input files are usually grouped by subscriber.
struct ExistenceCache {
    key: String,
    exists: bool,
}

impl ExistenceCache {
    async fn check(&mut self, tx: &mut Tx, kind: ImportKind, key: &str) -> Result<bool, StoreError> {
        if self.key != key || self.key.is_empty() {
            self.exists = match kind {
                ImportKind::Subscribers => db::plan_exists(tx, key).await?,
                _ => db::subscriber_exists(tx, key).await?,
            };
            self.key = key.to_string();
        }
        Ok(self.exists)
    }
}

/// Parses, checks references and writes one row.
async fn import_row(
    tx: &mut Tx,
    kind: ImportKind,
    fields: &Fields<'_>,
    refs: &mut ExistenceCache,
) -> Result<Result<WriteOutcome, RowError>, StoreError> {
    macro_rules! parsed {
        ($parse:expr) => {
            match $parse(fields) {
                Ok(row) => row,
                Err(e) => return Ok(Err(e)),
            }
        };
    }
    let unknown = |field: &'static str, what: &str, key: &str| {
        Ok(Err(RowError { field, problem: format!("unknown {what} {key:?}") }))
    };
    let outcome = match kind {
        ImportKind::Plans => db::upsert_plan(tx, &parsed!(rows::parse_plan)).await?,
        ImportKind::Subscribers => {
            let row = parsed!(rows::parse_subscriber);
            if !refs.check(tx, kind, &row.plan_id).await? {
                return unknown("plan_id", "plan", &row.plan_id);
            }
            db::upsert_subscriber(tx, &row).await?
        }
        ImportKind::Usage => {
            let row = parsed!(rows::parse_usage);
            if !refs.check(tx, kind, &row.subscriber_id).await? {
                return unknown("subscriber_id", "subscriber", &row.subscriber_id);
            }
            db::insert_usage(tx, &row).await?
        }
        ImportKind::Orders => {
            let row = parsed!(rows::parse_order);
            if !refs.check(tx, kind, &row.subscriber_id).await? {
                return unknown("subscriber_id", "subscriber", &row.subscriber_id);
            }
            db::upsert_order(tx, &row).await?
        }
        ImportKind::SpamReports => db::insert_spam_report(tx, &parsed!(rows::parse_spam_report)).await?,
    };
    Ok(Ok(outcome))
}

/// Imports one file and returns its counts. Only a file-level problem (unreadable file,
/// missing column, database failure, or a bad row under `strict`) is an error.
pub async fn import_file(
    store: &Store,
    kind: ImportKind,
    path: &Path,
    strict: bool,
) -> Result<ImportCounts, ImportError> {
    let file_name = path.display().to_string();
    let read_error = |source| ImportError::Read { file: file_name.clone(), source };
    let db_error = |source| ImportError::Store { file: file_name.clone(), source };
    let started_at = Utc::now();
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
    let (required, optional) = kind.columns();
    let columns = Columns::map(&headers, required, optional)
        .map_err(|missing| ImportError::MissingColumns { file: file_name.clone(), columns: missing.join(", ") })?;

    let rejects_file = rejects_path(path);
    let rejects_error =
        |source| ImportError::Rejects { file: file_name.clone(), path: rejects_file.display().to_string(), source };
    let mut rejects = csv::Writer::from_writer(BufWriter::new(File::create(&rejects_file).map_err(rejects_error)?));
    let mut rejects_header = ByteRecord::from(vec!["line", "reason"]);
    rejects_header.extend(header_record.iter());
    rejects.write_byte_record(&rejects_header).map_err(|e| rejects_error(e.into()))?;

    let progress = ProgressBar::new(size).with_message(format!("import {}", kind.as_str()));
    progress.set_style(
        ProgressStyle::with_template("{msg} {wide_bar} {bytes}/{total_bytes} {elapsed}").expect("valid template"),
    );

    let mut counts = ImportCounts::default();
    let mut refs = ExistenceCache { key: String::new(), exists: false };
    let mut tx = store.begin().await.map_err(db_error)?;
    let mut in_batch = 0;
    let mut lines = LineCounter::open(path).map_err(read_error)?;
    let mut record = ByteRecord::new();
    loop {
        let start = reader.position().byte();
        let verdict = match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                import_row(&mut tx, kind, &Fields::new(&record, &columns), &mut refs).await.map_err(db_error)?
            }
            Err(e) => {
                record.clear();
                Err(RowError { field: "row", problem: format!("unreadable CSV: {e}") })
            }
        };
        let line = lines.line_at(record.position().map_or(start, |p| p.byte())).map_err(read_error)?;
        match verdict {
            Ok(WriteOutcome::Written) => counts.accepted += 1,
            Ok(WriteOutcome::Unchanged) => counts.duplicate += 1,
            Err(reason) => {
                counts.rejected += 1;
                let mut reject = ByteRecord::from(vec![line.to_string(), reason.to_string()]);
                reject.extend(record.iter());
                rejects.write_byte_record(&reject).map_err(|e| rejects_error(e.into()))?;
                if strict {
                    drop(tx);
                    rejects.flush().map_err(rejects_error)?;
                    return Err(ImportError::StrictReject {
                        file: file_name.clone(),
                        line,
                        reason: reason.to_string(),
                    });
                }
            }
        }
        in_batch += 1;
        if !strict && in_batch == BATCH_ROWS {
            tx.commit().await.map_err(|e| db_error(e.into()))?;
            tx = store.begin().await.map_err(db_error)?;
            in_batch = 0;
            progress.set_position(reader.position().byte());
        }
    }
    db::record_import_run(
        &mut tx,
        &ImportRunRecord { kind: kind.as_str(), file: &file_name, strict, started_at, finished_at: Utc::now(), counts },
    )
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(|e| db_error(e.into()))?;
    rejects.flush().map_err(rejects_error)?;
    progress.finish_and_clear();
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
