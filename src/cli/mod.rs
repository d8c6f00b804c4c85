//! Command line (SPEC §7): parses arguments and turns each command into calls on the `App`.

mod demo;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::app::App;
use crate::config::{Config, Settings};
use crate::domain::money::Fen;
use crate::domain::period::BillingMonth;
use crate::export::{ExportFormat, ExportKind};
use crate::import::ImportKind;

#[derive(Debug, Parser)]
#[command(name = "billpush", version, about = "Pushes every subscriber's monthly itemized bill by SMS")]
pub struct Cli {
    /// Configuration file (default config/default.toml; built-in defaults if it is absent).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{s:?} is not an RFC 3339 timestamp with offset"))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import a CSV file: plans, subscribers, usage, orders or spam-reports.
    Import {
        kind: ImportKind,
        file: PathBuf,
        /// Abort at the first bad row and keep nothing from the file.
        #[arg(long)]
        strict: bool,
    },
    /// Build, queue and push what is due for a month, on this machine, until done.
    Run {
        #[arg(long)]
        month: BillingMonth,
        /// Bill as of this instant (RFC 3339; default now).
        #[arg(long, value_parser = parse_instant)]
        as_of: Option<DateTime<Utc>>,
        /// Build and render in a transaction that is rolled back; print what would be sent.
        #[arg(long)]
        dry_run: bool,
    },
    /// Counts per delivery status, flags and late records for a month.
    Status {
        #[arg(long)]
        month: BillingMonth,
    },
    /// Export bills, deliveries, flags or spam aggregates for a month.
    Export {
        kind: ExportKind,
        #[arg(long)]
        month: BillingMonth,
        #[arg(long, default_value = "jsonl")]
        format: ExportFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Import the bundled sample data, push one month through the sink and print a summary.
    Demo,
}

pub fn load_settings(cli: &Cli) -> anyhow::Result<Settings> {
    Ok(Config::load(cli.config.as_deref())?.settings()?)
}

pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    let settings = load_settings(&cli)?;
    if let Command::Demo = cli.command {
        return demo::run(settings).await;
    }
    let app = App::build(settings).await?;
    let stdout = std::io::stdout();
    match cli.command {
        Command::Import { kind, file, strict } => {
            let counts = app.import(kind, &file, strict).await?;
            println!("accepted={} duplicate={} rejected={}", counts.accepted, counts.duplicate, counts.rejected);
            if counts.rejected > 0 {
                eprintln!("rejected rows are in {}", crate::import::rejects_path(&file).display());
            }
        }
        Command::Run { month, as_of, dry_run } => {
            let report = app.run(month, as_of, dry_run).await?;
            let build = &report.build;
            let mut out = stdout.lock();
            writeln!(out, "month {month}{}", if dry_run { " (dry run: nothing was kept or queued)" } else { "" })?;
            writeln!(out, "billed {} total {} yuan", build.billed, Fen::new(build.total_fen))?;
            match build.next_due_at {
                Some(next) => writeln!(out, "not due {} (next becomes due at {})", build.not_due, next.to_rfc3339())?,
                None => writeln!(out, "not due 0")?,
            }
            writeln!(out, "bill sms {}", App::status_line(&build.by_status))?;
            writeln!(
                out,
                "segments {}",
                build.by_segments.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
            )?;
            writeln!(out, "flags {} spike={}", App::status_line(&build.flags), build.spikes)?;
            if dry_run {
                for sample in &build.samples {
                    writeln!(
                        out,
                        "sample {} ({}, {} parts): {}",
                        sample.msisdn_masked,
                        sample.language.as_str(),
                        sample.segments,
                        sample.text
                    )?;
                }
            } else {
                writeln!(
                    out,
                    "pushed accepted={} failed={} (queued {})",
                    report.push.accepted, report.push.failed, report.queued
                )?;
            }
        }
        Command::Status { month } => {
            let status = app.status(month).await?;
            let mut out = stdout.lock();
            writeln!(out, "month {month}")?;
            writeln!(out, "bills {} total {} yuan spike={}", status.bills, Fen::new(status.total_fen), status.spikes)?;
            writeln!(
                out,
                "deliveries {}",
                status.deliveries.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
            )?;
            writeln!(
                out,
                "flags {}",
                status.flags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
            )?;
            writeln!(out, "late records {}", status.late_records)?;
        }
        Command::Export { kind, month, format, out } => match out {
            Some(path) => {
                let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
                let mut writer = BufWriter::new(file);
                let rows = app.export(kind, month, format, &mut writer).await?;
                writer.flush()?;
                eprintln!("{rows} rows written to {}", path.display());
            }
            None => {
                let mut lock = stdout.lock();
                app.export(kind, month, format, &mut lock).await?;
            }
        },
        Command::Demo => unreachable!("handled above"),
    }
    app.store.close().await;
    Ok(())
}
