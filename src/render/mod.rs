//! SMS text from handlebars templates: one template per kind and language plus a `.short`
//! fallback, all registered and test-rendered once at start (strict mode, no HTML escaping),
//! so a broken template stops the program before anything is queued.

use std::path::Path;

use chrono::NaiveDate;
use chrono_tz::Tz;
use handlebars::Handlebars;
use serde::Serialize;

use crate::domain::bill::BillSummary;
use crate::domain::category::{Category, Language};
use crate::domain::flags::ChargeFlag;
use crate::domain::money::Fen;
use crate::domain::msisdn::Msisdn;
use crate::domain::period::{last_local_day, local_date, Period};
use crate::domain::sms::{segment, Encoding};

/// Reply codes the bill SMS offers; `SS` disputes a charge (see docs/contract.md).
pub const REPLY_DETAILS: &str = "ZD";
pub const REPLY_DISPUTE: &str = "SS";
pub const REPLY_OPT_OUT: &str = "TD";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template directory {0}: {1}")]
    Directory(String, std::io::Error),
    #[error("template {name}: {problem}")]
    Invalid { name: String, problem: String },
    #[error("template {0} is missing from the template directory")]
    Missing(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct VasLine {
    pub name: String,
    pub code: String,
    pub amount: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CategoryLine {
    pub label: &'static str,
    pub amount: String,
    /// The services behind the VAS total; empty for other categories.
    pub items: Vec<VasLine>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UsageView {
    pub voice_used: i64,
    pub voice_included: i64,
    pub data_used_mb: i64,
    pub data_included_mb: i64,
    pub sms_used: i64,
    pub sms_included: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlagsView {
    pub count: usize,
    pub amount: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Replies {
    pub details: &'static str,
    pub dispute: &'static str,
    pub opt_out: &'static str,
}

/// Everything a bill template may name.
#[derive(Debug, Clone, Serialize)]
pub struct BillView {
    pub signature: String,
    pub msisdn: String,
    pub month: String,
    pub period_start: String,
    pub period_end: String,
    pub total: String,
    pub categories: Vec<CategoryLine>,
    pub usage: UsageView,
    pub flags: FlagsView,
    pub hotline: String,
    pub reply: Replies,
}

/// The plan allowances a bill's usage is shown against.
#[derive(Debug, Clone, Copy)]
pub struct Allowances {
    pub voice_minutes: i64,
    pub data_mb: i64,
    pub sms_count: i64,
}

pub struct BillFacts<'a> {
    pub msisdn: &'a Msisdn,
    pub language: Language,
    pub month: String,
    pub period: Period,
    pub summary: &'a BillSummary,
    pub flags: &'a [ChargeFlag],
    pub allowances: Allowances,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderedSms {
    Fits {
        text: String,
        encoding: Encoding,
        segments: usize,
    },
    /// Even the short template needs more than `sms.max_segments` parts.
    TooLong { segments: usize },
}

pub struct Renderer {
    registry: Handlebars<'static>,
    operator: String,
    hotline: String,
    timezone: Tz,
    max_segments: usize,
}

fn template_name(kind: &str, language: Language, short: bool) -> String {
    format!(
        "{kind}.{}{}",
        language.as_str(),
        if short { ".short" } else { "" }
    )
}

fn format_date(date: NaiveDate, language: Language) -> String {
    match language {
        Language::Zh => date.format("%-m月%-d日").to_string(),
        Language::En => date.format("%-d %b").to_string(),
    }
}

impl Renderer {
    /// Registers every `*.hbs` in `dir` and test-renders the bill templates with sample data.
    pub fn load(
        dir: &Path,
        operator: &str,
        hotline: &str,
        timezone: Tz,
        max_segments: usize,
    ) -> Result<Renderer, TemplateError> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        // An SMS is plain text: `&` must stay `&`, not become `&amp;`.
        registry.register_escape_fn(handlebars::no_escape);
        let entries = std::fs::read_dir(dir)
            .map_err(|e| TemplateError::Directory(dir.display().to_string(), e))?;
        for entry in entries {
            let path = entry
                .map_err(|e| TemplateError::Directory(dir.display().to_string(), e))?
                .path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".hbs"))
            else {
                continue;
            };
            let source = std::fs::read_to_string(&path)
                .map_err(|e| TemplateError::Directory(path.display().to_string(), e))?;
            // Templates end with a newline in their files; the SMS does not.
            registry
                .register_template_string(name, source.trim_end_matches(['\n', '\r']))
                .map_err(|e| TemplateError::Invalid {
                    name: format!("{name}.hbs"),
                    problem: e.to_string().replace('\n', " "),
                })?;
        }
        let renderer = Renderer {
            registry,
            operator: operator.to_string(),
            hotline: hotline.to_string(),
            timezone,
            max_segments,
        };
        renderer.check_bill_templates()?;
        Ok(renderer)
    }

    fn check_bill_templates(&self) -> Result<(), TemplateError> {
        let sample = BillSummary {
            categories: crate::domain::bill::CategoryTotals::from_array([
                Fen::new(5800),
                Fen::new(30),
                Fen::ZERO,
                Fen::ZERO,
                Fen::new(200),
                Fen::ZERO,
                Fen::new(-100),
                Fen::ZERO,
            ]),
            usage: Default::default(),
            vas: vec![crate::domain::bill::VasCharge {
                service_code: "SP1".into(),
                name: "sample".into(),
                amount: Fen::new(200),
                charges: 1,
            }],
            record_count: 3,
        };
        let msisdn = Msisdn::parse("13800138000").expect("a valid sample number");
        let flags = [ChargeFlag {
            record_id: "r".into(),
            reason: crate::domain::flags::FlagReason::NoOrder,
            service_code: "SP1".into(),
            amount: Fen::new(200),
        }];
        for language in Language::ALL {
            for short in [false, true] {
                let name = template_name("bill", language, short);
                if !self.registry.has_template(&name) {
                    return Err(TemplateError::Missing(format!("{name}.hbs")));
                }
                let facts = BillFacts {
                    msisdn: &msisdn,
                    language,
                    month: "2026-10".into(),
                    period: crate::domain::period::billing_period(
                        "2026-10".parse().expect("valid"),
                        crate::domain::period::BillingDay::FIRST,
                        self.timezone,
                    ),
                    summary: &sample,
                    flags: &flags,
                    allowances: Allowances {
                        voice_minutes: 100,
                        data_mb: 1024,
                        sms_count: 50,
                    },
                };
                let text = self
                    .registry
                    .render(&name, &self.bill_view(&facts))
                    .map_err(|e| TemplateError::Invalid {
                        name: format!("{name}.hbs"),
                        problem: e.to_string().replace('\n', " "),
                    })?;
                if !text.starts_with(&self.signature()) {
                    return Err(TemplateError::Invalid {
                        name: format!("{name}.hbs"),
                        problem: "must start with {{signature}}".into(),
                    });
                }
            }
        }
        Ok(())
    }

    fn signature(&self) -> String {
        format!("【{}】", self.operator)
    }

    pub fn bill_view(&self, facts: &BillFacts) -> BillView {
        let language = facts.language;
        let summary = facts.summary;
        let categories = summary
            .categories
            .iter()
            .filter(|(_, amount)| !amount.is_zero())
            .map(|(category, amount)| CategoryLine {
                label: category.label(language),
                amount: amount.to_string(),
                items: if category == Category::Vas {
                    summary
                        .vas
                        .iter()
                        .map(|v| VasLine {
                            name: v.name.clone(),
                            code: v.service_code.clone(),
                            amount: v.amount.to_string(),
                        })
                        .collect()
                } else {
                    Vec::new()
                },
            })
            .collect();
        BillView {
            signature: self.signature(),
            msisdn: facts.msisdn.masked(),
            month: facts.month.clone(),
            period_start: format_date(local_date(facts.period.start, self.timezone), language),
            period_end: format_date(last_local_day(&facts.period, self.timezone), language),
            total: summary.total().to_string(),
            categories,
            usage: UsageView {
                voice_used: summary.usage.voice_minutes,
                voice_included: facts.allowances.voice_minutes,
                // Data is billed in KB but allowances are in MB; a started MB counts as used.
                data_used_mb: (summary.usage.data_kb + 1023) / 1024,
                data_included_mb: facts.allowances.data_mb,
                sms_used: summary.usage.sms_count,
                sms_included: facts.allowances.sms_count,
            },
            flags: FlagsView {
                count: facts.flags.len(),
                amount: facts
                    .flags
                    .iter()
                    .map(|f| f.amount)
                    .sum::<Fen>()
                    .to_string(),
            },
            hotline: self.hotline.clone(),
            reply: Replies {
                details: REPLY_DETAILS,
                dispute: REPLY_DISPUTE,
                opt_out: REPLY_OPT_OUT,
            },
        }
    }

    /// The bill SMS: the full template when it fits `sms.max_segments`, else the short one.
    pub fn render_bill(&self, facts: &BillFacts) -> RenderedSms {
        let view = self.bill_view(facts);
        let mut segments = 0;
        for short in [false, true] {
            let text = self
                .registry
                .render(&template_name("bill", facts.language, short), &view)
                .expect("bill templates were test-rendered at start with every field");
            let segmented = segment(&text);
            segments = segmented.segments();
            if segments <= self.max_segments {
                let encoding = segmented.encoding;
                return RenderedSms::Fits {
                    text,
                    encoding,
                    segments,
                };
            }
        }
        RenderedSms::TooLong { segments }
    }
}
