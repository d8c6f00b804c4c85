//! `billpush demo`: the bundled sample data imported, one month pushed through the sink,
//! and a summary. Quiet hours are not applied, so the demo never waits for morning.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use chrono::Utc;

use crate::app::App;
use crate::billing::BuildMode;
use crate::config::Settings;
use crate::domain::money::Fen;
use crate::domain::period::{all_periods_of, BillingMonth};
use crate::domain::quiet_hours::QuietHours;
use crate::import::{ImportKind, ImportMode};

const SAMPLE_DIR: &str = "demo";
const SAMPLE_FILES: [(ImportKind, &str, &str); 5] = [
    (ImportKind::Plans, "plans.csv", include_str!("../../data/sample/plans.csv")),
    (ImportKind::Subscribers, "subscribers.csv", include_str!("../../data/sample/subscribers.csv")),
    (ImportKind::Usage, "usage.csv", include_str!("../../data/sample/usage.csv")),
    (ImportKind::Orders, "orders.csv", include_str!("../../data/sample/orders.csv")),
    (ImportKind::SpamReports, "spam_reports.csv", include_str!("../../data/sample/spam_reports.csv")),
];
const DEMO_MONTH: &str = "2026-10";

pub async fn run(mut settings: Settings) -> anyhow::Result<()> {
    let started = Instant::now();
    let midnight = chrono::NaiveTime::MIN;
    settings.quiet_hours = QuietHours::new(midnight, midnight, settings.timezone);
    let app = App::build(settings).await?;
    let dir = Path::new(SAMPLE_DIR);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {SAMPLE_DIR}/"))?;
    println!("billpush demo: sample data in {SAMPLE_DIR}/, database {}", app.settings.config.database.url);
    for (kind, name, content) in SAMPLE_FILES {
        let path = dir.join(name);
        std::fs::write(&path, content).with_context(|| format!("cannot write {}", path.display()))?;
        let counts = app.import(kind, &path, ImportMode::Lenient).await?;
        println!(
            "import {:<13} accepted={} duplicate={} rejected={}",
            kind.as_str(),
            counts.accepted,
            counts.duplicate,
            counts.rejected
        );
    }
    let month: BillingMonth = DEMO_MONTH.parse().map_err(anyhow::Error::msg)?;
    // Every sample period of the month must be due, whatever today's date is.
    let as_of = Utc::now().max(all_periods_of(month, app.settings.timezone).end + app.settings.grace);
    let report = app.run(month, Some(as_of), BuildMode::Keep).await?;
    let status = app.status(month).await?;
    let build = &report.build;
    println!();
    println!(
        "month {month}: {} bills built now, {} in all, total {} yuan",
        build.billed,
        status.bills,
        Fen::new(status.total_fen)
    );
    println!("flags by reason: {}", status.flags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "));
    println!("spike bills: {}", status.spikes);
    println!("spam numbers flagged: {}", app.spam_flagged(month).await?);
    println!(
        "messages of the month: {}",
        status.deliveries.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
    );
    println!("flag notices to opted-out subscribers: {}", build.flag_notices);
    println!(
        "sms by segments: {}",
        build.by_segments.iter().map(|(k, v)| format!("{k} part(s)={v}")).collect::<Vec<_>>().join(" ")
    );
    println!("pushed now: {} to {}", report.push.accepted, app.settings.config.gateway.outbox.display());
    if build.billed == 0 {
        println!("(this month was billed by an earlier demo run; bills are frozen and nothing is sent twice)");
    }
    for sample in &build.samples {
        println!(
            "\nsample to {} ({}, {} parts):\n{}",
            sample.msisdn_masked,
            sample.language.as_str(),
            sample.segments,
            sample.text
        );
    }
    println!("\ntime taken: {:.2}s", started.elapsed().as_secs_f64());
    app.store.close().await;
    Ok(())
}
