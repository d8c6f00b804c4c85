//! `billpush gen`: deterministic sample data in the input formats, for trials and benchmarks.
//! The same seed and sizes give the same files byte for byte (ChaCha8 is portable).
//!
//! Mix per subscriber and month: one plan fee, then voice, data, SMS, other charges, discounts
//! and VAS charges. Most VAS charges have a confirmed order; a few percent do not (no order,
//! charged after cancellation, unconfirmed, or charged twice the same day), so flags appear.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use chrono::{Duration, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::domain::period::BillingMonth;

pub struct GenSpec {
    pub subscribers: u64,
    pub records_per_subscriber: u32,
    pub months: Vec<BillingMonth>,
    pub seed: u64,
}

const PLANS: [(&str, &str, i64, i64, i64, i64); 4] = [
    ("P58", "畅享58", 5800, 300, 20480, 100),
    ("P128", "畅享128", 12800, 1000, 61440, 300),
    ("P8", "保号8元", 800, 0, 0, 0),
    ("P19", "Global 19", 1900, 100, 1024, 50),
];
const SERVICES: [(&str, &str, i64); 5] = [
    ("SP1001", "彩铃", 500),
    ("SP2002", "手机报", 300),
    ("SP3003", "游戏点卡", 1000),
    ("SP4004", "视频会员", 1500),
    ("SP5005", "天气预报", 200),
];
/// Numbers that collect spam reports: a few blocks of consecutive mobiles and some short codes.
const SPAM_POOL: usize = 500;

fn writer(dir: &Path, name: &str) -> std::io::Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(1 << 20, File::create(dir.join(name))?))
}

fn subscriber_number(n: u64) -> String {
    format!("13{:09}", n % 1_000_000_000)
}

fn spam_number(i: usize) -> String {
    match i % 5 {
        0 => format!("106{:07}", 5_900_000 + i),
        _ => format!("170{:08}", 12_345_000 + i),
    }
}

/// Writes plans, subscribers, usage, orders and spam reports into `dir`; returns the number
/// of usage records.
pub fn generate(spec: &GenSpec, dir: &Path) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let mut plans = writer(dir, "plans.csv")?;
    writeln!(plans, "plan_id,name,monthly_fee_fen,voice_minutes,data_mb,sms_count")?;
    for (id, name, fee, voice, data, sms) in PLANS {
        writeln!(plans, "{id},{name},{fee},{voice},{data},{sms}")?;
    }
    plans.flush()?;

    let mut subscribers = writer(dir, "subscribers.csv")?;
    let mut usage = writer(dir, "usage.csv")?;
    let mut orders = writer(dir, "orders.csv")?;
    writeln!(subscribers, "subscriber_id,msisdn,name,plan_id,language,billing_day,status,bill_sms")?;
    writeln!(usage, "record_id,subscriber_id,occurred_at,category,quantity,amount_fen,service_code,description")?;
    writeln!(orders, "subscriber_id,service_code,ordered_at,cancelled_at,confirmed,channel")?;
    let mut records = 0u64;
    for n in 0..spec.subscribers {
        let id = format!("S{n:09}");
        let plan = PLANS[rng.random_range(0..PLANS.len())];
        let language = if rng.random_bool(0.1) { "en" } else { "zh" };
        let day: u32 = if rng.random_bool(0.7) { 1 } else { rng.random_range(1..=28) };
        let status = match rng.random_range(0..100) {
            0 => "closed",
            1 | 2 => "suspended",
            _ => "active",
        };
        let bill_sms = !rng.random_bool(0.02);
        writeln!(subscribers, "{id},{},用户{n},{},{language},{day},{status},{bill_sms}", subscriber_number(n), plan.0)?;
        // Two services ordered long ago; a charge for any other has no order.
        let ordered: [usize; 2] = [rng.random_range(0..SERVICES.len()), rng.random_range(0..SERVICES.len())];
        for (i, &service) in ordered.iter().enumerate() {
            let confirmed = !rng.random_bool(0.02);
            let cancelled = if i == 1 && rng.random_bool(0.03) { "2020-06-01T00:00:00+08:00" } else { "" };
            writeln!(
                orders,
                "{id},{},2020-01-0{}T00:00:00+08:00,{cancelled},{confirmed},app",
                SERVICES[service].0,
                i + 1
            )?;
        }
        for month in &spec.months {
            let start = NaiveDate::from_ymd_opt(month.year(), month.month(), day)
                .expect("days 1-28 exist")
                .and_hms_opt(0, 0, 0)
                .expect("midnight");
            let span_seconds = 27 * 24 * 3600;
            let at = |offset: i64| (start + Duration::seconds(offset)).format("%Y-%m-%dT%H:%M:%S+08:00").to_string();
            let tag = format!("{}{:02}", month.year(), month.month());
            writeln!(usage, "R{tag}-{n:09}-00,{id},{},plan_fee,1,{},,月功能费", at(600), plan.2)?;
            for k in 1..spec.records_per_subscriber.max(1) {
                let when = at(rng.random_range(3600..span_seconds));
                let record = format!("R{tag}-{n:09}-{k:02}");
                match rng.random_range(0..100) {
                    0..=29 => writeln!(
                        usage,
                        "{record},{id},{when},voice,{},{},,",
                        rng.random_range(1..60),
                        rng.random_range(0..300)
                    )?,
                    30..=59 => writeln!(
                        usage,
                        "{record},{id},{when},data,{},{},,",
                        rng.random_range(1_000..900_000),
                        rng.random_range(0..2_000)
                    )?,
                    60..=74 => writeln!(
                        usage,
                        "{record},{id},{when},sms,{},{},,",
                        rng.random_range(1..5),
                        rng.random_range(0..50)
                    )?,
                    75..=84 => {
                        // Mostly an ordered service; sometimes one without an order.
                        let service = if rng.random_bool(0.95) {
                            SERVICES[ordered[rng.random_range(0..2)]]
                        } else {
                            SERVICES[rng.random_range(0..SERVICES.len())]
                        };
                        writeln!(usage, "{record},{id},{when},vas,1,{},{},{}", service.2, service.0, service.1)?;
                    }
                    85..=94 => writeln!(usage, "{record},{id},{when},other,1,{},,", rng.random_range(1..500))?,
                    _ => writeln!(usage, "{record},{id},{when},discount,0,-{},,优惠", rng.random_range(1..1000))?,
                }
            }
            records += u64::from(spec.records_per_subscriber.max(1));
        }
    }
    subscribers.flush()?;
    usage.flush()?;
    orders.flush()?;

    let mut spam = writer(dir, "spam_reports.csv")?;
    writeln!(spam, "report_id,reporter_msisdn,reported_number,reported_at,kind,note")?;
    let reports = spec.subscribers / 20 * spec.months.len() as u64;
    for r in 0..reports {
        let month = spec.months[(r % spec.months.len() as u64) as usize];
        let reporter = subscriber_number(rng.random_range(0..spec.subscribers.max(1)));
        // Reports cluster on a few numbers, so some cross the flagging threshold.
        let reported = spam_number((rng.random_range(0.0f64..1.0).powi(3) * SPAM_POOL as f64) as usize);
        let day = rng.random_range(1..=28);
        let kind = if rng.random_bool(0.5) { "call" } else { "sms" };
        writeln!(
            spam,
            "G{r:010},{reporter},{reported},{}-{:02}-{day:02}T12:00:00+08:00,{kind},",
            month.year(),
            month.month()
        )?;
    }
    spam.flush()?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_files_and_another_seed_does_not() {
        let spec = |seed| GenSpec {
            subscribers: 50,
            records_per_subscriber: 6,
            months: vec!["2026-09".parse().unwrap(), "2026-10".parse().unwrap()],
            seed,
        };
        let (a, b, c) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        assert_eq!(generate(&spec(7), a.path()).unwrap(), 600);
        generate(&spec(7), b.path()).unwrap();
        generate(&spec(8), c.path()).unwrap();
        for file in ["plans.csv", "subscribers.csv", "usage.csv", "orders.csv", "spam_reports.csv"] {
            let read = |dir: &tempfile::TempDir| std::fs::read(dir.path().join(file)).unwrap();
            assert_eq!(read(&a), read(&b), "{file}");
        }
        assert_ne!(
            std::fs::read(a.path().join("usage.csv")).unwrap(),
            std::fs::read(c.path().join("usage.csv")).unwrap()
        );
    }
}
