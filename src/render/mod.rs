//! SMS text from handlebars templates: one template per kind and language plus a `.short`
//! fallback, all registered and test-rendered once at start (strict mode, no HTML escaping),
//! so a broken template stops the program before anything is queued.

use std::path::Path;

use chrono::NaiveDate;
use chrono_tz::Tz;
use handlebars::{Context, Handlebars, RenderError};
use serde::Serialize;

use crate::domain::bill::BillSummary;
use crate::domain::category::{Category, Language};
use crate::domain::flags::ChargeFlag;
use crate::domain::money::Fen;
use crate::domain::msisdn::Msisdn;
use crate::domain::period::{last_local_day, local_date, Period};
use crate::domain::sms::{segment, service_name_for_sms, Encoding};

/// Reply codes the bill SMS offers; `SS` disputes a charge (see docs/contract.md).
pub const REPLY_DETAILS: &str = "ZD";
pub const REPLY_DISPUTE: &str = "SS";
pub const REPLY_OPT_OUT: &str = "TD";

/// Room for an SMS text before it is rendered: a four-part Chinese SMS is about 800 bytes.
const TEXT_CAPACITY: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template directory {0}: {1}")]
    Directory(String, std::io::Error),
    #[error("template {name}: {problem}")]
    Invalid { name: String, problem: String },
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

/// A flagged charge as a flag notice names it: the service, its code, the amount and why.
#[derive(Debug, Clone, Serialize)]
pub struct FlaggedLine {
    pub name: String,
    pub code: String,
    pub amount: String,
    pub why: &'static str,
}

/// Everything a flag notice template may name.
#[derive(Debug, Clone, Serialize)]
pub struct FlagNoticeView {
    pub signature: String,
    pub msisdn: String,
    pub period_start: String,
    pub period_end: String,
    pub flags: FlagsView,
    pub flagged: Vec<FlaggedLine>,
    pub spike: bool,
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

/// Everything a reply template (`optout`, `optin`, `stophelp`, `details`) may name.
#[derive(Debug, Clone, Serialize)]
pub struct ReplyView {
    pub signature: String,
    pub hotline: String,
    /// How a subscriber cancels a VAS (`operator.vas_cancel_code`).
    pub vas_cancel_code: String,
    /// `details`: whether the subscriber has a bill yet; the bill fields are empty otherwise.
    pub has_bill: bool,
    pub msisdn: String,
    pub period_start: String,
    pub period_end: String,
    pub total: String,
    pub categories: Vec<CategoryLine>,
}

/// The replies billpush sends to subscribers' messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// Confirms an opt-out of the bill SMS, saying how to opt back in.
    OptOut,
    /// Confirms an opt-in, saying how to opt out.
    OptIn,
    /// Answers a bare `TD`: how to stop the bill SMS, and how to cancel a VAS.
    StopHelp,
    /// The current bill's non-zero category totals, answering `ZD`.
    Details,
}

impl ReplyKind {
    pub const ALL: [ReplyKind; 4] = [ReplyKind::OptOut, ReplyKind::OptIn, ReplyKind::StopHelp, ReplyKind::Details];

    pub const fn template(self) -> &'static str {
        match self {
            ReplyKind::OptOut => "optout",
            ReplyKind::OptIn => "optin",
            ReplyKind::StopHelp => "stophelp",
            ReplyKind::Details => "details",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderedSms {
    Fits {
        text: String,
        encoding: Encoding,
        segments: usize,
    },
    /// Even the short template needs more than `sms.max_segments` parts.
    TooLong {
        segments: usize,
    },
}

pub struct Renderer {
    registry: Handlebars<'static>,
    operator: String,
    hotline: String,
    timezone: Tz,
    max_segments: usize,
}

/// The templates compiled into the program; a configured directory overrides them file by file.
const BUILT_IN_TEMPLATES: [(&str, &str); 16] = [
    ("bill.zh", include_str!("../../templates/bill.zh.hbs")),
    ("bill.zh.short", include_str!("../../templates/bill.zh.short.hbs")),
    ("bill.en", include_str!("../../templates/bill.en.hbs")),
    ("bill.en.short", include_str!("../../templates/bill.en.short.hbs")),
    ("details.zh", include_str!("../../templates/details.zh.hbs")),
    ("details.en", include_str!("../../templates/details.en.hbs")),
    ("optout.zh", include_str!("../../templates/optout.zh.hbs")),
    ("optout.en", include_str!("../../templates/optout.en.hbs")),
    ("optin.zh", include_str!("../../templates/optin.zh.hbs")),
    ("optin.en", include_str!("../../templates/optin.en.hbs")),
    ("stophelp.zh", include_str!("../../templates/stophelp.zh.hbs")),
    ("stophelp.en", include_str!("../../templates/stophelp.en.hbs")),
    ("flag_notice.zh", include_str!("../../templates/flag_notice.zh.hbs")),
    ("flag_notice.zh.short", include_str!("../../templates/flag_notice.zh.short.hbs")),
    ("flag_notice.en", include_str!("../../templates/flag_notice.en.hbs")),
    ("flag_notice.en.short", include_str!("../../templates/flag_notice.en.short.hbs")),
];

fn register(registry: &mut Handlebars<'static>, name: &str, source: &str) -> Result<(), TemplateError> {
    // Templates end with a newline in their files; the SMS does not.
    registry
        .register_template_string(name, source.trim_end_matches(['\n', '\r']))
        .map_err(|e| TemplateError::Invalid { name: format!("{name}.hbs"), problem: e.to_string().replace('\n', " ") })
}

fn template_name(kind: &str, language: Language, short: bool) -> String {
    format!("{kind}.{}{}", language.as_str(), if short { ".short" } else { "" })
}

fn format_date(date: NaiveDate, language: Language) -> String {
    match language {
        Language::Zh => date.format("%-m月%-d日").to_string(),
        Language::En => date.format("%-d %b").to_string(),
    }
}

impl Renderer {
    /// Registers the built-in templates, then every `*.hbs` in `dir` (when given) over them,
    /// and test-renders each with sample data.
    pub fn load(
        dir: Option<&Path>,
        operator: &str,
        hotline: &str,
        timezone: Tz,
        max_segments: usize,
    ) -> Result<Renderer, TemplateError> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        // An SMS is one paragraph: a partial needs no indenting to its call's column, and
        // checking every write for it cost about 5% of a render.
        registry.set_prevent_indent(true);
        // An SMS is plain text: `&` must stay `&`, not become `&amp;`.
        registry.register_escape_fn(handlebars::no_escape);
        for (name, source) in BUILT_IN_TEMPLATES {
            register(&mut registry, name, source)?;
        }
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|e| TemplateError::Directory(dir.display().to_string(), e))?;
            for entry in entries {
                let path = entry.map_err(|e| TemplateError::Directory(dir.display().to_string(), e))?.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".hbs")) else {
                    continue;
                };
                let source = std::fs::read_to_string(&path)
                    .map_err(|e| TemplateError::Directory(path.display().to_string(), e))?;
                register(&mut registry, name, &source)?;
            }
        }
        let renderer =
            Renderer { registry, operator: operator.to_string(), hotline: hotline.to_string(), timezone, max_segments };
        renderer.check_bill_templates()?;
        renderer.check_reply_templates()?;
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
                    allowances: Allowances { voice_minutes: 100, data_mb: 1024, sms_count: 50 },
                };
                self.check_sample(&name, &self.bill_view(&facts))?;
                let notice = template_name("flag_notice", language, short);
                self.check_sample(&notice, &self.flag_notice_view(&facts, true))?;
            }
        }
        Ok(())
    }

    /// Renders `name` with sample data in strict mode: a missing field or a message not
    /// starting with the signature is refused.
    fn check_sample(&self, name: &str, view: &impl Serialize) -> Result<(), TemplateError> {
        let invalid = |problem: String| TemplateError::Invalid { name: format!("{name}.hbs"), problem };
        let context = Context::wraps(view).map_err(|e| invalid(e.to_string()))?;
        let text = self.render_text(name, &context).map_err(|e| invalid(e.to_string().replace('\n', " ")))?;
        if !text.starts_with(&self.signature()) {
            return Err(invalid("must start with {{signature}}".into()));
        }
        Ok(())
    }

    fn check_reply_templates(&self) -> Result<(), TemplateError> {
        let msisdn = Msisdn::parse("13800138000").expect("a valid sample number");
        let period = crate::domain::period::billing_period(
            "2026-10".parse().expect("valid"),
            crate::domain::period::BillingDay::FIRST,
            self.timezone,
        );
        let totals = crate::domain::bill::CategoryTotals::from_array([
            Fen::new(5800),
            Fen::new(30),
            Fen::ZERO,
            Fen::ZERO,
            Fen::ZERO,
            Fen::ZERO,
            Fen::ZERO,
            Fen::ZERO,
        ]);
        for kind in ReplyKind::ALL {
            for language in Language::ALL {
                let name = template_name(kind.template(), language, false);
                for bill in [Some((period, &totals)), None] {
                    self.check_sample(&name, &self.reply_view(&msisdn, language, bill, "0000"))?;
                }
            }
        }
        Ok(())
    }

    /// The view of a reply; `bill` is the subscriber's latest bill, if any.
    pub fn reply_view(
        &self,
        msisdn: &Msisdn,
        language: Language,
        bill: Option<(Period, &crate::domain::bill::CategoryTotals)>,
        vas_cancel_code: &str,
    ) -> ReplyView {
        let (has_bill, period_start, period_end, total, categories) = match bill {
            Some((period, totals)) => (
                true,
                format_date(local_date(period.start, self.timezone), language),
                format_date(last_local_day(&period, self.timezone), language),
                totals.total().to_string(),
                totals
                    .iter()
                    .filter(|(_, amount)| !amount.is_zero())
                    .map(|(category, amount)| CategoryLine {
                        label: category.label(language),
                        amount: amount.to_string(),
                        items: Vec::new(),
                    })
                    .collect(),
            ),
            None => (false, String::new(), String::new(), String::new(), Vec::new()),
        };
        ReplyView {
            signature: self.signature(),
            hotline: self.hotline.clone(),
            vas_cancel_code: vas_cancel_code.to_string(),
            has_bill,
            msisdn: msisdn.masked(),
            period_start,
            period_end,
            total,
            categories,
        }
    }

    /// A reply SMS; replies have no short form.
    pub fn render_reply(&self, kind: ReplyKind, language: Language, view: &ReplyView) -> RenderedSms {
        let context = Context::wraps(view).expect("a reply view is plain data");
        let text = self
            .render_text(&template_name(kind.template(), language, false), &context)
            .expect("reply templates were test-rendered at start");
        let segmented = segment(&text);
        let (encoding, segments) = (segmented.encoding, segmented.segments());
        if segments <= self.max_segments {
            RenderedSms::Fits { text, encoding, segments }
        } else {
            RenderedSms::TooLong { segments }
        }
    }

    /// Renders template `name` into a text of about its own size. handlebars' `render` returns
    /// its 8 KiB working buffer as the text: each SMS of a page held 8 KiB until the page was
    /// written, 16 MB for 2,000.
    fn render_text(&self, name: &str, context: &Context) -> Result<String, RenderError> {
        let mut text = Vec::with_capacity(TEXT_CAPACITY);
        self.registry.render_with_context_to_write(name, context, &mut text)?;
        text.shrink_to_fit();
        String::from_utf8(text).map_err(RenderError::from)
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
                            name: service_name_for_sms(&v.name),
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
                amount: facts.flags.iter().map(|f| f.amount).sum::<Fen>().to_string(),
            },
            hotline: self.hotline.clone(),
            reply: Replies { details: REPLY_DETAILS, dispute: REPLY_DISPUTE, opt_out: REPLY_OPT_OUT },
        }
    }

    /// The flag notice of an opted-out subscriber's bill: every flagged charge named, and
    /// whether the bill is a spike.
    pub fn flag_notice_view(&self, facts: &BillFacts, spike: bool) -> FlagNoticeView {
        let language = facts.language;
        let name_of = |code: &str| {
            facts.summary.vas.iter().find(|v| v.service_code == code).map(|v| service_name_for_sms(&v.name))
        };
        FlagNoticeView {
            signature: self.signature(),
            msisdn: facts.msisdn.masked(),
            period_start: format_date(local_date(facts.period.start, self.timezone), language),
            period_end: format_date(last_local_day(&facts.period, self.timezone), language),
            flags: FlagsView {
                count: facts.flags.len(),
                amount: facts.flags.iter().map(|f| f.amount).sum::<Fen>().to_string(),
            },
            flagged: facts
                .flags
                .iter()
                .map(|f| FlaggedLine {
                    name: name_of(&f.service_code).unwrap_or_default(),
                    code: f.service_code.clone(),
                    amount: f.amount.to_string(),
                    why: f.reason.label(language),
                })
                .collect(),
            spike,
            hotline: self.hotline.clone(),
            reply: Replies { details: REPLY_DETAILS, dispute: REPLY_DISPUTE, opt_out: REPLY_OPT_OUT },
        }
    }

    /// The flag notice: the full template when it fits `sms.max_segments`, else the short one.
    pub fn render_flag_notice(&self, facts: &BillFacts, spike: bool) -> RenderedSms {
        let view = Context::wraps(self.flag_notice_view(facts, spike)).expect("a notice view is plain data");
        self.render_fitting("flag_notice", facts.language, &view)
    }

    /// The bill SMS: the full template when it fits `sms.max_segments`, else the short one.
    pub fn render_bill(&self, facts: &BillFacts) -> RenderedSms {
        // The view becomes handlebars' JSON once, for the short form as well when it is needed.
        let view = Context::wraps(self.bill_view(facts)).expect("a bill view is plain data");
        self.render_fitting("bill", facts.language, &view)
    }

    /// The full form of `kind` when it fits `sms.max_segments`, else its short form.
    fn render_fitting(&self, kind: &str, language: Language, view: &Context) -> RenderedSms {
        let mut segments = 0;
        for short in [false, true] {
            let text = self
                .render_text(&template_name(kind, language, short), view)
                .expect("templates were test-rendered at start with every field");
            let segmented = segment(&text);
            segments = segmented.segments();
            if segments <= self.max_segments {
                let encoding = segmented.encoding;
                return RenderedSms::Fits { text, encoding, segments };
            }
        }
        RenderedSms::TooLong { segments }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::bill::summarize;
    use crate::domain::bill::tests::record;
    use crate::domain::period::{billing_period, BillingDay};
    use chrono_tz::Asia::Shanghai;

    fn renderer(operator: &str, max_segments: usize) -> Renderer {
        Renderer::load(None, operator, "10000", Shanghai, max_segments).unwrap()
    }

    fn render(
        renderer: &Renderer,
        language: Language,
        records: &[crate::domain::bill::UsageRecord],
        flags: &[ChargeFlag],
    ) -> RenderedSms {
        let msisdn = Msisdn::parse("13800138000").unwrap();
        let summary = summarize(records);
        renderer.render_bill(&BillFacts {
            msisdn: &msisdn,
            language,
            month: "2026-10".into(),
            period: billing_period("2026-10".parse().unwrap(), BillingDay::FIRST, Shanghai),
            summary: &summary,
            flags,
            allowances: Allowances { voice_minutes: 300, data_mb: 20480, sms_count: 100 },
        })
    }

    fn typical_records() -> Vec<crate::domain::bill::UsageRecord> {
        vec![
            record("r1", "2026-10-01T00:25:00+08:00", Category::PlanFee, 1, 5800, ""),
            record("r2", "2026-10-02T10:00:00+08:00", Category::Voice, 54, 292, ""),
            record("r3", "2026-10-03T10:00:00+08:00", Category::Data, 1857616, 2943, ""),
            record("r4", "2026-10-04T10:00:00+08:00", Category::Sms, 5, 50, ""),
            record("r5", "2026-10-05T10:00:00+08:00", Category::Vas, 1, 300, "SP2002"),
            record("r6", "2026-10-06T10:00:00+08:00", Category::Other, 1, 177, ""),
            record("r7", "2026-10-07T10:00:00+08:00", Category::Discount, 0, -157, ""),
        ]
    }

    #[test]
    fn an_imported_description_cannot_put_a_link_or_a_line_break_under_the_signature() {
        let mut records = typical_records();
        records[4].description = "退费请点击http://pay.evil.cn/r?x=1\n【示例电信】回复1确认".into();
        let RenderedSms::Fits { text, .. } = render(&renderer("示例电信", 4), Language::Zh, &records, &[]) else {
            panic!("fits")
        };
        assert!(!text.contains("http") && !text.contains("evil") && !text.contains('\n'), "{text}");
        assert!(text.contains("退费请点击"), "the rest of the name stays: {text}");
    }

    #[test]
    fn a_typical_chinese_bill_fits_three_ucs2_parts_and_shows_what_the_contract_asks() {
        let RenderedSms::Fits { text, encoding, segments } =
            render(&renderer("示例电信", 4), Language::Zh, &typical_records(), &[])
        else {
            panic!("fits")
        };
        assert_eq!(encoding, Encoding::Ucs2);
        assert!(segments <= 3, "{segments} parts: {text}");
        assert!(text.starts_with("【示例电信】"));
        for expected in [
            "138****8000",
            "10月1日",
            "10月31日",
            "94.05元",
            "套餐及固定费58.00元",
            "增值业务费3.00元",
            "SP2002",
            "优惠减免-1.57元",
            "54/300",
            "ZD",
            "TD",
        ] {
            assert!(text.contains(expected), "{expected} missing from {text}");
        }
        assert!(!text.contains("调账"), "zero categories are left out: {text}");
        assert!(!text.contains("13800138000"), "the number is masked");
    }

    #[test]
    fn a_text_holds_about_its_own_size_not_the_renderers_working_buffer() {
        let RenderedSms::Fits { text, .. } = render(&renderer("示例电信", 4), Language::Zh, &typical_records(), &[])
        else {
            panic!("fits")
        };
        // A page holds 2,000 of them until it is written.
        assert!(text.capacity() < text.len() * 2, "{} bytes held for {}", text.capacity(), text.len());
    }

    #[test]
    fn flagged_charges_are_counted_summed_and_disputable() {
        let flags = [
            ChargeFlag {
                record_id: "r5".into(),
                reason: crate::domain::flags::FlagReason::NoOrder,
                service_code: "SP2002".into(),
                amount: Fen::new(300),
            },
            ChargeFlag {
                record_id: "r8".into(),
                reason: crate::domain::flags::FlagReason::Duplicate,
                service_code: "SP2002".into(),
                amount: Fen::new(300),
            },
        ];
        let RenderedSms::Fits { text, .. } = render(&renderer("示例电信", 4), Language::Zh, &typical_records(), &flags)
        else {
            panic!("fits")
        };
        assert!(text.contains("2笔疑似不明扣费共6.00元") && text.contains("SS") && text.contains("10000"), "{text}");
    }

    #[test]
    fn an_ampersand_in_the_signature_stays_an_ampersand() {
        let RenderedSms::Fits { text, .. } = render(&renderer("A&B <Tel>", 4), Language::En, &typical_records(), &[])
        else {
            panic!("fits")
        };
        assert!(text.starts_with("【A&B <Tel>】"), "{text}");
    }

    #[test]
    fn a_bill_too_long_falls_back_to_the_short_template_then_fails() {
        let full = render(&renderer("示例电信", 4), Language::Zh, &typical_records(), &[]);
        let RenderedSms::Fits { segments: full_segments, .. } = full else { panic!("fits") };
        let RenderedSms::Fits { text, segments, .. } =
            render(&renderer("示例电信", 2), Language::Zh, &typical_records(), &[])
        else {
            panic!("the short form fits two parts")
        };
        assert!(segments <= 2 && segments < full_segments);
        assert!(!text.contains("套餐及固定费"), "short form: {text}");
        let flags = [ChargeFlag {
            record_id: "r5".into(),
            reason: crate::domain::flags::FlagReason::NoOrder,
            service_code: "SP2002".into(),
            amount: Fen::new(300),
        }];
        assert_eq!(
            render(&renderer("示例电信", 1), Language::Zh, &typical_records(), &flags),
            RenderedSms::TooLong { segments: 2 }
        );
    }
}
