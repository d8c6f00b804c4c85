//! Command line (docs/contract.md §7): parses arguments and turns each command into calls on the `App`.

mod demo;
pub mod logging;
mod progress;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Datelike, Utc};
use clap::{Parser, Subcommand};

use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::billing::BuildMode;
use crate::config::{Config, Settings};
use crate::domain::money::Fen;
use crate::domain::period::BillingMonth;
use crate::domain::shard::Shard;
use crate::export::{ExportFormat, ExportKind};
use crate::gateway::mock::{Faults, MockGateway};
use crate::import::{ImportKind, ImportMode};
use crate::report::ReportFormat;
use crate::store::retention::PurgeMode;

#[derive(Debug, Parser)]
#[command(name = "billpush", version, about = "Pushes every subscriber's monthly itemized bill by SMS")]
pub struct Cli {
    /// Configuration file (default config/default.toml when it exists, else the built-in
    /// defaults).
    #[arg(long, global = true, env = "BILLPUSH_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// A parser that takes exactly `values` and lists them in `--help`.
fn listed<T>(values: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Debug,
{
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(values).map(|value| value.parse().expect("every listed value parses"))
}

fn parse_instant(s: &str) -> Result<DateTime<Utc>, String> {
    let at = DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{s:?} is not an RFC 3339 timestamp with offset"))?;
    // Billing months have four-digit years, and a year on either side of a period is looked at.
    if !(1971..=9998).contains(&at.year()) {
        return Err(format!("{s:?} is not between the years 1971 and 9998"));
    }
    Ok(at)
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Import a CSV file: plans, subscribers, usage, orders or spam-reports.
    Import {
        #[arg(value_parser = listed::<ImportKind>(&["plans", "subscribers", "usage", "orders", "spam-reports"]))]
        kind: ImportKind,
        file: PathBuf,
        /// Abort at the first bad row and keep nothing from the file.
        #[arg(long)]
        strict: bool,
        /// Write rejected rows here (default FILE.rejects.csv).
        #[arg(long)]
        rejects: Option<PathBuf>,
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
    /// Check the database's invariants (one notification per subscriber, month and kind; every
    /// status timestamped; bill categories and usage totals adding up); exits 1 naming any that
    /// is broken.
    Verify,
    /// Export bills, deliveries, flags, spam aggregates or disputes for a month.
    Export {
        #[arg(value_parser = listed::<ExportKind>(&["bills", "deliveries", "flags", "spam", "disputes", "alerts"]))]
        kind: ExportKind,
        #[arg(long)]
        month: BillingMonth,
        #[arg(long, default_value = "jsonl", value_parser = listed::<ExportFormat>(&["jsonl", "csv"]))]
        format: ExportFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Build what is due and queue it for separate workers (needs queue.url = amqp://…).
    Schedule {
        #[arg(long)]
        month: BillingMonth,
        #[arg(long, value_parser = parse_instant)]
        as_of: Option<DateTime<Utc>>,
        /// Only the subscribers of shard i of n, to split scheduling across machines.
        #[arg(long, default_value = "0/1")]
        shard: Shard,
    },
    /// Raise the usage alerts due now (or as if the time were --as-of) and send them.
    Alerts {
        #[arg(long, value_parser = parse_instant)]
        as_of: Option<DateTime<Utc>>,
    },
    /// Remove what retention no longer keeps, as of now or --as-of; --dry-run only counts it.
    Purge {
        #[arg(long, value_parser = parse_instant)]
        as_of: Option<DateTime<Utc>>,
        #[arg(long)]
        dry_run: bool,
    },
    /// The regulator's monthly report, in total and per region.
    Report {
        #[arg(long)]
        month: BillingMonth,
        #[arg(long, default_value = "json", value_parser = listed::<ReportFormat>(&["json", "csv"]))]
        format: ReportFormat,
        /// Disputes are overdue as of this time (default now).
        #[arg(long, value_parser = parse_instant)]
        as_of: Option<DateTime<Utc>>,
    },
    /// Daemon: every billing.check_every, schedule whatever became due.
    Scheduler,
    /// Consume the queue and push, until SIGTERM or SIGINT.
    Worker {
        /// Serve Prometheus metrics on this address.
        #[arg(long)]
        metrics: Option<String>,
    },
    /// Put a month's failed notifications back in line.
    RetryFailed {
        #[arg(long)]
        month: BillingMonth,
    },
    /// Regulator and operator HTTP API, receipts, health and metrics.
    Serve {
        /// Listen here instead of api.bind.
        #[arg(long)]
        bind: Option<String>,
    },
    /// Mint an API token and print its config entry.
    Token {
        #[arg(long)]
        name: String,
        #[arg(long, value_parser = ["regulator", "operator", "gateway", "jasmin"])]
        role: String,
    },
    /// A mock SMS gateway (generic http protocol) for trials, benchmarks and fault drills.
    MockGateway {
        #[arg(long, default_value = "127.0.0.1:9090")]
        bind: String,
        #[arg(long, default_value = "mock-token")]
        token: String,
        /// Fraction of requests answered 503.
        #[arg(long, default_value_t = 0.0)]
        unavailable: f64,
        /// Fraction answered 429 with Retry-After: 1.
        #[arg(long, default_value_t = 0.0)]
        too_many: f64,
        /// Fraction answered only after --slow-ms (past the client's timeout).
        #[arg(long, default_value_t = 0.0)]
        slow: f64,
        /// Fraction accepted whose answer is lost (kept, but answered 503).
        #[arg(long, default_value_t = 0.0)]
        lost_answer: f64,
        #[arg(long, default_value_t = 10_000)]
        slow_ms: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Write deterministic sample data in the input formats.
    Gen {
        #[arg(long)]
        subscribers: u64,
        /// Usage records per subscriber and month, the plan fee included.
        #[arg(long, default_value_t = 20)]
        records_per_subscriber: u32,
        #[arg(long, num_args = 1.., required = true)]
        months: Vec<BillingMonth>,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Import the bundled sample data, push one month through the sink and print a summary.
    Demo,
    /// Exit 0 when the database (and the broker, where one is configured) answer; with --url,
    /// when that URL answers 2xx instead (for a container's health check).
    Healthcheck {
        #[arg(long)]
        url: Option<String>,
    },
}

/// How long `healthcheck` waits for the database and the broker.
const HEALTHCHECK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Cancelled on SIGTERM or SIGINT: stop taking work, finish what is in hand, exit.
fn shutdown_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(error) => {
                tracing::error!(%error, "cannot watch SIGTERM");
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("stopping: finishing the work in hand");
        trigger.cancel();
    });
    stop
}

/// Counts as `key=value` pairs, for summaries.
fn status_line(counts: &std::collections::BTreeMap<&str, u64>) -> String {
    counts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

pub fn load_settings(cli: &Cli) -> anyhow::Result<Settings> {
    Ok(Config::load(cli.config.as_deref())?.settings()?)
}

pub async fn execute(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Token { name, role } => {
            let token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
            println!("token: {token}");
            println!(
                "config: {{ name = \"{name}\", token_sha256 = \"{}\", role = \"{role}\" }}",
                crate::api::hash_token(&token)
            );
            return Ok(());
        }
        Command::Gen { subscribers, records_per_subscriber, months, seed, out } => {
            let spec = crate::gen::GenSpec {
                subscribers: *subscribers,
                records_per_subscriber: *records_per_subscriber,
                months: months.clone(),
                seed: *seed,
            };
            let started = std::time::Instant::now();
            let records =
                crate::gen::generate(&spec, out).with_context(|| format!("cannot write into {}", out.display()))?;
            println!(
                "{subscribers} subscribers, {records} usage records in {} ({:.1}s)",
                out.display(),
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        Command::MockGateway { bind, token, unavailable, too_many, slow, lost_answer, slow_ms, seed } => {
            let faults = Faults {
                unavailable: *unavailable,
                too_many: *too_many,
                slow: *slow,
                lost_answer: *lost_answer,
                slow_for_ms: *slow_ms,
                seed: *seed,
            };
            let gateway = MockGateway::new(token, faults);
            let stop = shutdown_signal();
            let (address, task) = gateway.serve(bind, stop.clone()).await?;
            println!("mock gateway on http://{address} (GET /stats, GET /accepted)");
            task.await?;
            println!("{}", serde_json::to_string(&gateway.stats())?);
            return Ok(());
        }
        _ => {}
    }
    let settings = load_settings(&cli)?;
    match &cli.command {
        Command::Demo => return demo::run(settings).await,
        Command::Healthcheck { url: None } => {
            // A health check answers within a container runtime's patience, whatever the
            // database's connect timeout.
            let checked = tokio::time::timeout(HEALTHCHECK_PATIENCE, App::check_health(settings)).await;
            checked.map_err(|_| anyhow::anyhow!("the database did not answer within {HEALTHCHECK_PATIENCE:?}"))??;
            println!("ok");
            return Ok(());
        }
        Command::Healthcheck { url: Some(url) } => {
            let client = settings.tls.http_client().timeout(std::time::Duration::from_secs(5)).build()?;
            let status = client.get(url).send().await.with_context(|| format!("{url} does not answer"))?.status();
            anyhow::ensure!(status.is_success(), "{url} answers {status}");
            println!("ok");
            return Ok(());
        }
        _ => {}
    }
    let app = App::build(settings).await?.with_progress(Arc::new(progress::Bars::default()));
    let stdout = std::io::stdout();
    match cli.command {
        Command::Import { kind, file, strict, rejects } => {
            let mode = if strict { ImportMode::Strict } else { ImportMode::Lenient };
            let rejects = rejects.unwrap_or_else(|| crate::import::rejects_path(&file));
            let counts = app.import_with_rejects(kind, &file, mode, &rejects).await?;
            let consent = match kind {
                ImportKind::Subscribers => format!(" consent_kept={}", counts.consent_kept),
                _ => String::new(),
            };
            println!(
                "accepted={} duplicate={} rejected={}{consent}",
                counts.accepted, counts.duplicate, counts.rejected
            );
            if counts.rejected > 0 {
                eprintln!("rejected rows are in {}", rejects.display());
            }
            // A file of which nothing could be used is a failed import, whatever a script
            // running it does next.
            anyhow::ensure!(
                counts.rejected == 0 || counts.accepted + counts.duplicate > 0,
                "every row of {} was rejected; see {}",
                file.display(),
                rejects.display()
            );
        }
        Command::Run { month, as_of, dry_run } => {
            let report = app.run(month, as_of, if dry_run { BuildMode::DryRun } else { BuildMode::Keep }).await?;
            let build = &report.build;
            let mut out = stdout.lock();
            writeln!(out, "month {month}{}", if dry_run { " (dry run: nothing was kept or queued)" } else { "" })?;
            writeln!(out, "billed {} total {} yuan", build.billed, Fen::new(build.total_fen))?;
            match build.next_due_at {
                Some(next) => writeln!(out, "not due {} (next becomes due at {})", build.not_due, next.to_rfc3339())?,
                None => writeln!(out, "not due 0")?,
            }
            writeln!(out, "bill sms {}", status_line(&build.by_status))?;
            writeln!(
                out,
                "segments {}",
                build.by_segments.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
            )?;
            writeln!(out, "flags {} spike={}", status_line(&build.flags), build.spikes)?;
            if !dry_run {
                writeln!(out, "flag notices {}", build.flag_notices)?;
            }
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
        Command::Verify => {
            let violations = app.store.invariant_violations().await?;
            anyhow::ensure!(violations.is_empty(), "invariants broken:\n{}", violations.join("\n"));
            writeln!(stdout.lock(), "invariants hold")?;
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
        Command::Schedule { month, as_of, shard } => {
            let report = app.schedule(month, as_of, shard).await?;
            if report.skipped {
                anyhow::bail!("another scheduler is working on {month} shard {shard}; nothing was queued");
            }
            println!(
                "month {month} shard {shard}: billed {} not due {} queued {}",
                report.build.billed, report.build.not_due, report.queued
            );
        }
        Command::Alerts { as_of } => {
            let (report, pushed) = app.alerts(as_of).await?;
            if report.skipped {
                anyhow::bail!("another evaluation of usage alerts is running; nothing was raised");
            }
            println!(
                "alerts: evaluated {} raised {} covered {} overtaken {} queued {}; pushed: accepted {} failed {} unknown {}",
                report.evaluated,
                report.raised,
                report.covered,
                report.overtaken,
                report.queued,
                pushed.accepted,
                pushed.failed,
                pushed.unknown
            );
        }
        Command::Purge { as_of, dry_run } => {
            let mode = if dry_run { PurgeMode::DryRun } else { PurgeMode::Remove };
            for line in app.purge(as_of, mode).await?.lines() {
                println!("{line}");
            }
        }
        Command::Report { month, format, as_of } => {
            let report = app.report(month, as_of).await?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            match format {
                ReportFormat::Json => {
                    serde_json::to_writer_pretty(&mut out, &report)?;
                    writeln!(out)?;
                }
                ReportFormat::Csv => crate::report::write_csv(&report, &mut out)?,
            }
        }
        Command::Scheduler => app.scheduler_daemon(shutdown_signal()).await?,
        Command::Worker { metrics } => {
            let stop = shutdown_signal();
            let metrics_server = metrics.map(|bind| {
                let stop = stop.clone();
                tokio::spawn(async move { crate::api::serve_metrics(&bind, stop).await })
            });
            let counts = app.worker(stop).await?;
            if let Some(server) = metrics_server {
                server.await??;
            }
            eprintln!(
                "worker stopped: accepted={} failed={} unknown={} retried={}",
                counts.accepted, counts.failed, counts.unknown, counts.retried
            );
        }
        Command::RetryFailed { month } => {
            let reset = app.retry_failed(month).await?;
            println!("{reset} failed notifications of {month} put back in line");
        }
        Command::Serve { bind } => {
            let bind = bind.unwrap_or_else(|| app.settings.config.api.bind.clone());
            let (bound, address) = tokio::sync::oneshot::channel();
            let stop = shutdown_signal();
            let server = tokio::spawn(async move { crate::api::serve(app, &bind, stop, bound).await });
            if let Ok(address) = address.await {
                eprintln!("listening on http://{address}");
            }
            return server.await?;
        }
        Command::Demo
        | Command::Healthcheck { .. }
        | Command::Token { .. }
        | Command::MockGateway { .. }
        | Command::Gen { .. } => {
            unreachable!("handled above")
        }
    }
    app.store.close().await;
    Ok(())
}
