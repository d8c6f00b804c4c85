//! Per-bill costs of the pure pipeline steps: summing a subscriber's month of records,
//! evaluating flags, rendering the SMS and segmenting it. `cargo bench --bench domain`.

use std::hint::black_box;

use billpush::domain::bill::{summarize, UsageRecord};
use billpush::domain::category::{Category, Language};
use billpush::domain::flags::{flag_vas_charges, VasOrder};
use billpush::domain::money::Fen;
use billpush::domain::msisdn::Msisdn;
use billpush::domain::period::{billing_period, BillingDay};
use billpush::domain::sms::segment;
use billpush::render::{Allowances, BillFacts, Renderer};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Asia::Shanghai;
use criterion::{criterion_group, criterion_main, Criterion};

/// The binary's allocator, so that these costs are the ones a build pays: with glibc's, a
/// third of a render was `malloc` and `free`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A month of 20 records like `billpush gen` writes: a plan fee, usage, VAS and a discount.
fn month_of_records() -> Vec<UsageRecord> {
    let start: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-10-01T00:10:00+08:00").unwrap().with_timezone(&Utc);
    let kinds = [
        Category::Voice,
        Category::Data,
        Category::Sms,
        Category::Vas,
        Category::Other,
        Category::Data,
        Category::Voice,
        Category::Discount,
    ];
    (0..20)
        .map(|i| {
            let category = if i == 0 { Category::PlanFee } else { kinds[i % kinds.len()] };
            let (amount, code, description) = match category {
                Category::PlanFee => (5800, "", "月功能费"),
                Category::Vas => (300, if i % 2 == 0 { "SP2002" } else { "SP9009" }, "手机报"),
                Category::Discount => (-150, "", "优惠"),
                _ => (37 * i as i64, "", ""),
            };
            UsageRecord {
                record_id: format!("R{i:04}"),
                occurred_at: start + Duration::hours(30 * i as i64),
                category,
                quantity: 10 * i as i64,
                amount: Fen::new(amount),
                service_code: code.to_string(),
                description: description.to_string(),
            }
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let records = month_of_records();
    let orders = vec![VasOrder {
        service_code: "SP2002".into(),
        ordered_at: DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z").unwrap().with_timezone(&Utc),
        cancelled_at: None,
        confirmed: true,
    }];
    let renderer = Renderer::load(None, "示例电信", "10000", Shanghai, 4).unwrap();
    let msisdn = Msisdn::parse("13800138000").unwrap();
    let summary = summarize(&records);
    let flags = flag_vas_charges(&records, &orders, Shanghai);
    let facts = BillFacts {
        msisdn: &msisdn,
        language: Language::Zh,
        month: "2026-10".into(),
        period: billing_period("2026-10".parse().unwrap(), BillingDay::FIRST, Shanghai),
        summary: &summary,
        flags: &flags,
        allowances: Allowances { voice_minutes: 300, data_mb: 20480, sms_count: 100 },
        itemized: &[],
        spike: false,
        recent_average: None,
    };
    let text = match renderer.render_bill(&facts) {
        billpush::render::RenderedSms::Fits { text, .. } => text,
        other => panic!("a typical bill fits: {other:?}"),
    };

    c.bench_function("summarize 20 records", |b| b.iter(|| summarize(black_box(&records))));
    c.bench_function("flag VAS charges of 20 records", |b| {
        b.iter(|| flag_vas_charges(black_box(&records), black_box(&orders), Shanghai))
    });
    c.bench_function("render a zh bill SMS", |b| b.iter(|| renderer.render_bill(black_box(&facts))));
    c.bench_function("segment a zh bill SMS", |b| b.iter(|| segment(black_box(&text)).segments()));
    let gsm = "Bill for 138****8000, 1 Oct-31 Oct: total 94.05 CNY (Plan and fixed fees 58.00; Voice 2.92; Data 29.43). Reply ZD details, SS dispute, TDZD stop.";
    c.bench_function("segment a GSM-7 SMS", |b| b.iter(|| segment(black_box(gsm)).segments()));
}

criterion_group!(domain, benches);
criterion_main!(domain);
