//! SMS text from handlebars templates: one template per kind and language plus a `.short`
//! fallback, all registered and test-rendered once at start (strict mode, no HTML escaping),
//! so a broken template stops the program before anything is queued.

use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use handlebars::{Context, Handlebars, RenderError};
use serde::Serialize;

use crate::domain::alerts::Metric;
use crate::domain::bill::{BillSummary, ItemizedCharge};
use crate::domain::category::{Category, Language};
use crate::domain::dispute::DisputeStatus;
use crate::domain::flags::ChargeFlag;
use crate::domain::money::Fen;
use crate::domain::msisdn::Msisdn;
use crate::domain::period::{last_local_day, local_date, Period};
use crate::domain::sms::{segment, service_name_for_sms, text_for_sms, Encoding, MAX_NOTE_CHARS};

/// Reply codes the bill SMS offers; `SS` disputes a charge (see docs/contract.md).
pub const REPLY_DETAILS: &str = "ZD";
pub const REPLY_DISPUTE: &str = "SS";
pub const REPLY_OPT_OUT: &str = "TDZD";
pub const REPLY_OPT_IN: &str = "KTZD";
/// Reply codes of usage alerts (docs/contract.md §12).
pub const REPLY_ALERTS_OPT_OUT: &str = "TDTX";
pub const REPLY_ALERTS_OPT_IN: &str = "KTTX";

/// Room for an SMS text before it is rendered: a four-part Chinese SMS is about 800 bytes.
const TEXT_CAPACITY: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template directory {0}: {1}")]
    Directory(String, std::io::Error),
    #[error("template {name}: {problem}")]
    Invalid { name: String, problem: String },
}

/// A VAS service's charges in the period: a third-party charge (代收费) collected for it.
#[derive(Debug, Clone, Serialize)]
pub struct VasLine {
    pub name: String,
    pub code: String,
    pub amount: String,
    /// Some charge of this service is flagged.
    pub flagged: bool,
    /// The flagged charges of this service, summed per reason.
    pub suspect: Vec<SuspectLine>,
}

/// What of a service's charges is flagged for one reason.
#[derive(Debug, Clone, Serialize)]
pub struct SuspectLine {
    pub amount: String,
    pub why: &'static str,
}

/// A large `other` or `adjustment` record, named with its description.
#[derive(Debug, Clone, Serialize)]
pub struct ItemizedLine {
    pub description: String,
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
    pub opt_in: &'static str,
    pub alerts_opt_out: &'static str,
    pub alerts_opt_in: &'static str,
}

const REPLIES: Replies = Replies {
    details: REPLY_DETAILS,
    dispute: REPLY_DISPUTE,
    opt_out: REPLY_OPT_OUT,
    opt_in: REPLY_OPT_IN,
    alerts_opt_out: REPLY_ALERTS_OPT_OUT,
    alerts_opt_in: REPLY_ALERTS_OPT_IN,
};

/// What a usage alert says: one metric, its value and the threshold reached.
pub struct AlertFacts<'a> {
    pub msisdn: &'a Msisdn,
    pub language: Language,
    pub metric: Metric,
    /// In the metric's unit: data KB, voice minutes, SMS, spend fen.
    pub value: i64,
    /// The plan's allowance in the same unit; `None` for spend.
    pub allowance: Option<i64>,
    /// A percentage of the allowance, or fen for spend.
    pub threshold: i64,
    pub raised_at: DateTime<Utc>,
}

/// Everything the `usage_alert` template may name.
#[derive(Debug, Clone, Serialize)]
pub struct AlertView {
    pub signature: String,
    pub msisdn: String,
    /// When the usage was measured, local: `12月5日14时` / `5 Dec 14:00`.
    pub as_of: String,
    pub is_data: bool,
    pub is_voice: bool,
    pub is_sms: bool,
    pub is_spend: bool,
    /// The allowance is used up (a threshold of 100% or more).
    pub is_over: bool,
    /// Data in MB with one decimal, minutes, SMS, or yuan.
    pub value: String,
    pub allowance: String,
    /// The percentage, or yuan for spend.
    pub threshold: String,
    pub reply: Replies,
}

/// Everything a dispute template may name: one template for every status, which says what
/// happened to the case.
#[derive(Debug, Clone, Serialize)]
pub struct DisputeView {
    pub signature: String,
    pub msisdn: String,
    /// The case number the subscriber quotes.
    pub case: String,
    pub period_start: String,
    pub period_end: String,
    pub disputed: String,
    pub refunded: String,
    /// The operator's reason for a rejection, cleaned and cut for an SMS.
    pub note: String,
    pub is_open: bool,
    pub is_refunded: bool,
    pub is_rejected: bool,
    pub is_withdrawn: bool,
    /// `disputes.sla` in whole days, as promised when the case opens.
    pub sla_days: i64,
    pub hotline: String,
    pub reply: Replies,
}

/// The facts a dispute message is made from.
pub struct DisputeFacts<'a> {
    pub msisdn: &'a Msisdn,
    pub language: Language,
    pub case: i64,
    pub period: Period,
    pub status: DisputeStatus,
    pub disputed: Fen,
    pub refunded: Fen,
    pub note: &'a str,
    pub sla: chrono::Duration,
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
    /// Every flagged charge, named.
    pub flagged: Vec<FlaggedLine>,
    /// The large `other` and `adjustment` records.
    pub itemized: Vec<ItemizedLine>,
    /// The bill is a spike: `spike_ratio` times (one decimal) `spike_average`, the mean of the
    /// bills it was measured against.
    pub spike: bool,
    pub spike_average: String,
    pub spike_ratio: String,
    pub hotline: String,
    pub reply: Replies,
}

/// Everything the `ZD` answer may name: the latest bill in full, cut at a whole line when it
/// does not fit `sms.details_max_segments` (`more`).
#[derive(Debug, Clone, Serialize)]
pub struct DetailsView {
    pub signature: String,
    /// Whether the subscriber has a bill yet; the bill fields are empty otherwise.
    pub has_bill: bool,
    pub msisdn: String,
    pub period_start: String,
    pub period_end: String,
    pub total: String,
    pub categories: Vec<CategoryLine>,
    pub flagged: Vec<FlaggedLine>,
    pub itemized: Vec<ItemizedLine>,
    /// Usage against allowances; left out first when the answer is cut.
    pub usage: Option<UsageView>,
    /// Some lines were left out to fit.
    pub more: bool,
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
    /// The large `other` and `adjustment` records of the bill.
    pub itemized: &'a [ItemizedCharge],
    pub spike: bool,
    /// For a spike, the mean of the bills it was measured against.
    pub recent_average: Option<Fen>,
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
    /// `dispute_case`: the open case of the latest bill (its number and disputed sum); empty
    /// when there is none.
    pub case: String,
    pub case_disputed: String,
    pub reply: Replies,
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
    /// Answers an `SS` that opened nothing: the case of that bill already open, or no bill yet.
    DisputeCase,
    /// Confirms an opt-out of usage alerts (`TDTX`), saying how to opt back in.
    AlertsOptOut,
    /// Confirms an opt-in to usage alerts (`KTTX`).
    AlertsOptIn,
}

impl ReplyKind {
    pub const ALL: [ReplyKind; 7] = [
        ReplyKind::OptOut,
        ReplyKind::OptIn,
        ReplyKind::StopHelp,
        ReplyKind::Details,
        ReplyKind::DisputeCase,
        ReplyKind::AlertsOptOut,
        ReplyKind::AlertsOptIn,
    ];

    pub const fn template(self) -> &'static str {
        match self {
            ReplyKind::OptOut => "optout",
            ReplyKind::OptIn => "optin",
            ReplyKind::StopHelp => "stophelp",
            ReplyKind::Details => "details",
            ReplyKind::DisputeCase => "dispute_case",
            ReplyKind::AlertsOptOut => "alerts_optout",
            ReplyKind::AlertsOptIn => "alerts_optin",
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
    /// `sms.details_max_segments`: the parts the `ZD` answer may take.
    details_max_segments: usize,
}

/// The templates compiled into the program; a configured directory overrides them file by file.
const BUILT_IN_TEMPLATES: [(&str, &str); 28] = [
    ("bill.zh", include_str!("../../templates/bill.zh.hbs")),
    ("bill.zh.compact", include_str!("../../templates/bill.zh.compact.hbs")),
    ("bill.zh.short", include_str!("../../templates/bill.zh.short.hbs")),
    ("bill.en", include_str!("../../templates/bill.en.hbs")),
    ("bill.en.compact", include_str!("../../templates/bill.en.compact.hbs")),
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
    ("dispute.zh", include_str!("../../templates/dispute.zh.hbs")),
    ("dispute.en", include_str!("../../templates/dispute.en.hbs")),
    ("dispute_case.zh", include_str!("../../templates/dispute_case.zh.hbs")),
    ("dispute_case.en", include_str!("../../templates/dispute_case.en.hbs")),
    ("usage_alert.zh", include_str!("../../templates/usage_alert.zh.hbs")),
    ("usage_alert.en", include_str!("../../templates/usage_alert.en.hbs")),
    ("alerts_optout.zh", include_str!("../../templates/alerts_optout.zh.hbs")),
    ("alerts_optout.en", include_str!("../../templates/alerts_optout.en.hbs")),
    ("alerts_optin.zh", include_str!("../../templates/alerts_optin.zh.hbs")),
    ("alerts_optin.en", include_str!("../../templates/alerts_optin.en.hbs")),
];

fn register(registry: &mut Handlebars<'static>, name: &str, source: &str) -> Result<(), TemplateError> {
    // Templates end with a newline in their files; the SMS does not.
    registry
        .register_template_string(name, source.trim_end_matches(['\n', '\r']))
        .map_err(|e| TemplateError::Invalid { name: format!("{name}.hbs"), problem: e.to_string().replace('\n', " ") })
}

/// The forms a message may take, longest first: the full text, then its fallbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Full,
    /// The bill without its itemization: total, flagged charges, codes.
    Compact,
    /// The last resort.
    Short,
}

impl Form {
    const ALL: [Form; 3] = [Form::Full, Form::Compact, Form::Short];

    const fn suffix(self) -> &'static str {
        match self {
            Form::Full => "",
            Form::Compact => ".compact",
            Form::Short => ".short",
        }
    }
}

fn template_name(kind: &str, language: Language, form: Form) -> String {
    format!("{kind}.{}{}", language.as_str(), form.suffix())
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
        let renderer = Renderer {
            registry,
            operator: operator.to_string(),
            hotline: hotline.to_string(),
            timezone,
            max_segments,
            details_max_segments: max_segments,
        };
        renderer.check_bill_templates()?;
        renderer.check_reply_templates()?;
        renderer.check_dispute_templates()?;
        renderer.check_alert_templates()?;
        Ok(renderer)
    }

    /// The parts the `ZD` answer may take (`sms.details_max_segments`; `max_segments` until set).
    pub fn with_details_max_segments(mut self, parts: usize) -> Renderer {
        self.details_max_segments = parts;
        self
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
        let itemized = [crate::domain::bill::ItemizedCharge {
            category: Category::Other,
            description: "国际漫游".into(),
            amount: Fen::new(80000),
        }];
        for language in Language::ALL {
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
                itemized: &itemized,
                spike: true,
                recent_average: Some(Fen::new(2210)),
            };
            for form in Form::ALL {
                let name = template_name("bill", language, form);
                self.check_sample(&name, &self.bill_view(&facts))?;
                let notice = template_name("flag_notice", language, form);
                if form == Form::Full || self.registry.has_template(&notice) {
                    self.check_sample(&notice, &self.flag_notice_view(&facts))?;
                }
            }
            let details = template_name("details", language, Form::Full);
            self.check_sample(&details, &self.details_view(&msisdn, language, Some(&facts), usize::MAX))?;
            self.check_sample(&details, &self.details_view(&msisdn, language, None, usize::MAX))?;
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
        for kind in ReplyKind::ALL.into_iter().filter(|k| *k != ReplyKind::Details) {
            for language in Language::ALL {
                let name = template_name(kind.template(), language, Form::Full);
                for bill in [Some((period, &totals)), None] {
                    self.check_sample(&name, &self.reply_view(&msisdn, language, bill, "0000"))?;
                }
            }
        }
        Ok(())
    }

    fn check_dispute_templates(&self) -> Result<(), TemplateError> {
        let msisdn = Msisdn::parse("13800138000").expect("a valid sample number");
        let period = crate::domain::period::billing_period(
            "2026-10".parse().expect("valid"),
            crate::domain::period::BillingDay::FIRST,
            self.timezone,
        );
        for language in Language::ALL {
            for status in DisputeStatus::ALL {
                let facts = DisputeFacts {
                    msisdn: &msisdn,
                    language,
                    case: 12,
                    period,
                    status,
                    disputed: Fen::new(600),
                    refunded: Fen::new(600),
                    note: "sample",
                    sla: chrono::Duration::days(15),
                };
                self.check_sample(&template_name("dispute", language, Form::Full), &self.dispute_view(&facts))?;
            }
        }
        Ok(())
    }

    fn check_alert_templates(&self) -> Result<(), TemplateError> {
        let msisdn = Msisdn::parse("13800138000").expect("a valid sample number");
        for language in Language::ALL {
            for metric in Metric::ALL {
                let facts = AlertFacts {
                    msisdn: &msisdn,
                    language,
                    metric,
                    value: 880_000,
                    allowance: (metric != Metric::Spend).then_some(1_048_576),
                    threshold: 100,
                    raised_at: DateTime::UNIX_EPOCH,
                };
                self.check_sample(&template_name("usage_alert", language, Form::Full), &self.alert_view(&facts))?;
            }
        }
        Ok(())
    }

    /// The view of a usage alert.
    pub fn alert_view(&self, facts: &AlertFacts) -> AlertView {
        let local = facts.raised_at.with_timezone(&self.timezone);
        let as_of = match facts.language {
            Language::Zh => local.format("%-m月%-d日%-H时").to_string(),
            Language::En => local.format("%-d %b %H:%M").to_string(),
        };
        let in_unit = |n: i64| match facts.metric {
            // One decimal of a MB, rounded down: never more than was used.
            Metric::Data => format!("{}.{}", n / 1024, (n % 1024) * 10 / 1024),
            Metric::Spend => Fen::new(n).to_string(),
            Metric::Voice | Metric::Sms => n.to_string(),
        };
        let threshold = match facts.metric {
            Metric::Spend => Fen::new(facts.threshold).to_string(),
            _ => facts.threshold.to_string(),
        };
        AlertView {
            signature: self.signature(),
            msisdn: facts.msisdn.masked(),
            as_of,
            is_data: facts.metric == Metric::Data,
            is_voice: facts.metric == Metric::Voice,
            is_sms: facts.metric == Metric::Sms,
            is_spend: facts.metric == Metric::Spend,
            is_over: facts.metric != Metric::Spend && facts.threshold >= 100,
            value: in_unit(facts.value),
            allowance: facts.allowance.map(in_unit).unwrap_or_default(),
            threshold,
            reply: REPLIES,
        }
    }

    /// A usage alert; it has no short form.
    pub fn render_alert(&self, facts: &AlertFacts) -> RenderedSms {
        self.render_one(&template_name("usage_alert", facts.language, Form::Full), &self.alert_view(facts))
    }

    /// The view of a dispute's message.
    pub fn dispute_view(&self, facts: &DisputeFacts) -> DisputeView {
        let language = facts.language;
        DisputeView {
            signature: self.signature(),
            msisdn: facts.msisdn.masked(),
            case: facts.case.to_string(),
            period_start: format_date(local_date(facts.period.start, self.timezone), language),
            period_end: format_date(last_local_day(&facts.period, self.timezone), language),
            disputed: facts.disputed.to_string(),
            refunded: facts.refunded.to_string(),
            note: text_for_sms(facts.note, MAX_NOTE_CHARS),
            is_open: facts.status == DisputeStatus::Open,
            is_refunded: facts.status == DisputeStatus::Refunded,
            is_rejected: facts.status == DisputeStatus::Rejected,
            is_withdrawn: facts.status == DisputeStatus::Withdrawn,
            sla_days: facts.sla.num_days().max(1),
            hotline: self.hotline.clone(),
            reply: REPLIES,
        }
    }

    /// A dispute's message; it has no short form.
    pub fn render_dispute(&self, facts: &DisputeFacts) -> RenderedSms {
        self.render_one(&template_name("dispute", facts.language, Form::Full), &self.dispute_view(facts))
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
            case: String::new(),
            case_disputed: String::new(),
            reply: REPLIES,
        }
    }

    /// A reply SMS; replies have no short form.
    pub fn render_reply(&self, kind: ReplyKind, language: Language, view: &ReplyView) -> RenderedSms {
        self.render_one(&template_name(kind.template(), language, Form::Full), view)
    }

    /// Template `name`, which has no fallback: it fits `sms.max_segments` or it is too long.
    fn render_one(&self, name: &str, view: &impl Serialize) -> RenderedSms {
        let context = Context::wraps(view).expect("a view is plain data");
        first_fitting(
            [self.render_text(name, &context).expect("templates were test-rendered at start")],
            self.max_segments,
        )
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

    /// The non-zero categories of a bill, the VAS category with its services.
    fn category_lines(&self, facts: &BillFacts) -> Vec<CategoryLine> {
        let language = facts.language;
        let summary = facts.summary;
        summary
            .categories
            .iter()
            // The services are listed even when their charges sum to nothing: one may be flagged.
            .filter(|(category, amount)| !amount.is_zero() || (*category == Category::Vas && !summary.vas.is_empty()))
            .map(|(category, amount)| CategoryLine {
                label: category.label(language),
                amount: amount.to_string(),
                items: if category == Category::Vas {
                    summary.vas.iter().map(|v| self.vas_line(v, facts)).collect()
                } else {
                    Vec::new()
                },
            })
            .collect()
    }

    fn vas_line(&self, service: &crate::domain::bill::VasCharge, facts: &BillFacts) -> VasLine {
        let mut suspect: Vec<(crate::domain::flags::FlagReason, Fen)> = Vec::new();
        for flag in facts.flags.iter().filter(|f| f.service_code == service.service_code) {
            match suspect.iter_mut().find(|(reason, _)| *reason == flag.reason) {
                Some((_, amount)) => *amount += flag.amount,
                None => suspect.push((flag.reason, flag.amount)),
            }
        }
        VasLine {
            name: service_name_for_sms(&service.name),
            code: service.service_code.clone(),
            amount: service.amount.to_string(),
            flagged: !suspect.is_empty(),
            suspect: suspect
                .into_iter()
                .map(|(reason, amount)| SuspectLine { amount: amount.to_string(), why: reason.label(facts.language) })
                .collect(),
        }
    }

    /// Every flagged charge: the service's name and code, the amount and why.
    fn flagged_lines(&self, facts: &BillFacts) -> Vec<FlaggedLine> {
        let name_of = |code: &str| {
            facts.summary.vas.iter().find(|v| v.service_code == code).map(|v| service_name_for_sms(&v.name))
        };
        facts
            .flags
            .iter()
            .map(|f| FlaggedLine {
                name: name_of(&f.service_code).unwrap_or_default(),
                code: f.service_code.clone(),
                amount: f.amount.to_string(),
                why: f.reason.label(facts.language),
            })
            .collect()
    }

    /// The large `other` and `adjustment` records; one without a description is named by its
    /// category.
    fn itemized_lines(&self, facts: &BillFacts) -> Vec<ItemizedLine> {
        facts
            .itemized
            .iter()
            .map(|item| {
                let description = service_name_for_sms(&item.description);
                ItemizedLine {
                    description: if description.is_empty() {
                        item.category.label(facts.language).to_string()
                    } else {
                        description
                    },
                    amount: item.amount.to_string(),
                }
            })
            .collect()
    }

    fn usage_view(facts: &BillFacts) -> UsageView {
        let usage = &facts.summary.usage;
        UsageView {
            voice_used: usage.voice_minutes,
            voice_included: facts.allowances.voice_minutes,
            // Data is billed in KB but allowances are in MB; a started MB counts as used.
            data_used_mb: (usage.data_kb + 1023) / 1024,
            data_included_mb: facts.allowances.data_mb,
            sms_used: usage.sms_count,
            sms_included: facts.allowances.sms_count,
        }
    }

    fn flags_view(facts: &BillFacts) -> FlagsView {
        FlagsView { count: facts.flags.len(), amount: facts.flags.iter().map(|f| f.amount).sum::<Fen>().to_string() }
    }

    pub fn bill_view(&self, facts: &BillFacts) -> BillView {
        let language = facts.language;
        let total = facts.summary.total();
        // How far above the recent mean, to one decimal, in integers: 4.0 for four times.
        let (spike_average, spike_ratio) = match facts.recent_average.filter(|mean| facts.spike && mean.get() > 0) {
            Some(mean) => {
                let tenths = (i128::from(total.get()) * 10 + i128::from(mean.get()) / 2) / i128::from(mean.get());
                (mean.to_string(), format!("{}.{}", tenths / 10, tenths % 10))
            }
            None => (String::new(), String::new()),
        };
        BillView {
            signature: self.signature(),
            msisdn: facts.msisdn.masked(),
            month: facts.month.clone(),
            period_start: format_date(local_date(facts.period.start, self.timezone), language),
            period_end: format_date(last_local_day(&facts.period, self.timezone), language),
            total: total.to_string(),
            categories: self.category_lines(facts),
            usage: Self::usage_view(facts),
            flags: Self::flags_view(facts),
            flagged: self.flagged_lines(facts),
            itemized: self.itemized_lines(facts),
            spike: facts.spike && !spike_ratio.is_empty(),
            spike_average,
            spike_ratio,
            hotline: self.hotline.clone(),
            reply: REPLIES,
        }
    }

    /// The flag notice of an opted-out subscriber's bill: every flagged charge named, and
    /// whether the bill is a spike.
    pub fn flag_notice_view(&self, facts: &BillFacts) -> FlagNoticeView {
        let language = facts.language;
        FlagNoticeView {
            signature: self.signature(),
            msisdn: facts.msisdn.masked(),
            period_start: format_date(local_date(facts.period.start, self.timezone), language),
            period_end: format_date(last_local_day(&facts.period, self.timezone), language),
            flags: Self::flags_view(facts),
            flagged: self.flagged_lines(facts),
            spike: facts.spike,
            hotline: self.hotline.clone(),
            reply: REPLIES,
        }
    }

    /// The `ZD` answer: the bill (`None` before the first) with at most `lines` of its
    /// itemization, in this order: each category with its services, the flagged charges, the
    /// large records, the usage.
    fn details_view(
        &self,
        msisdn: &Msisdn,
        language: Language,
        facts: Option<&BillFacts>,
        lines: usize,
    ) -> DetailsView {
        let mut view = DetailsView {
            signature: self.signature(),
            has_bill: false,
            msisdn: msisdn.masked(),
            period_start: String::new(),
            period_end: String::new(),
            total: String::new(),
            categories: Vec::new(),
            flagged: Vec::new(),
            itemized: Vec::new(),
            usage: None,
            more: false,
            hotline: self.hotline.clone(),
            reply: REPLIES,
        };
        let Some(facts) = facts else { return view };
        view.has_bill = true;
        view.period_start = format_date(local_date(facts.period.start, self.timezone), language);
        view.period_end = format_date(last_local_day(&facts.period, self.timezone), language);
        view.total = facts.summary.total().to_string();
        let mut room = lines;
        let mut take = |n: usize| {
            let kept = n.min(room);
            room -= kept;
            kept
        };
        for mut category in self.category_lines(facts) {
            if take(1) == 0 {
                break;
            }
            let items = take(category.items.len());
            category.items.truncate(items);
            view.categories.push(category);
        }
        let mut flagged = self.flagged_lines(facts);
        flagged.truncate(take(flagged.len()));
        view.flagged = flagged;
        let mut itemized = self.itemized_lines(facts);
        itemized.truncate(take(itemized.len()));
        view.itemized = itemized;
        view.usage = (take(1) == 1).then(|| Self::usage_view(facts));
        view.more = lines < Self::detail_lines(facts);
        view
    }

    /// The lines of a bill's full itemization (`details_view`).
    fn detail_lines(facts: &BillFacts) -> usize {
        let summary = facts.summary;
        let services = summary.vas.len();
        let categories = summary
            .categories
            .iter()
            .filter(|(category, amount)| !amount.is_zero() || (*category == Category::Vas && services > 0))
            .count();
        categories + services + facts.flags.len() + facts.itemized.len() + 1
    }

    /// The answer to `ZD`: the whole itemization when it fits `sms.details_max_segments`, else
    /// as many whole lines as fit, saying there is more.
    pub fn render_details(&self, msisdn: &Msisdn, language: Language, facts: Option<&BillFacts>) -> RenderedSms {
        let name = template_name("details", language, Form::Full);
        let all = facts.map_or(0, Self::detail_lines);
        let texts = (0..=all).rev().map(|lines| {
            let view = self.details_view(msisdn, language, facts, lines);
            let context = Context::wraps(&view).expect("a details view is plain data");
            self.render_text(&name, &context).expect("templates were test-rendered at start")
        });
        first_fitting(texts, self.details_max_segments)
    }

    /// The flag notice: the full template when it fits `sms.max_segments`, else the short one.
    pub fn render_flag_notice(&self, facts: &BillFacts) -> RenderedSms {
        let view = Context::wraps(self.flag_notice_view(facts)).expect("a notice view is plain data");
        self.render_fitting("flag_notice", facts.language, &view)
    }

    /// The bill SMS: the full template when it fits `sms.max_segments`, else the compact one,
    /// else the short one.
    pub fn render_bill(&self, facts: &BillFacts) -> RenderedSms {
        // The view becomes handlebars' JSON once, for the fallbacks as well when they are needed.
        let view = Context::wraps(self.bill_view(facts)).expect("a bill view is plain data");
        self.render_fitting("bill", facts.language, &view)
    }

    /// The longest form of `kind` that fits `sms.max_segments`; forms without a template are
    /// passed over.
    fn render_fitting(&self, kind: &str, language: Language, view: &Context) -> RenderedSms {
        let texts = Form::ALL
            .into_iter()
            .map(|form| template_name(kind, language, form))
            .filter(|name| name == &template_name(kind, language, Form::Full) || self.registry.has_template(name))
            .map(|name| self.render_text(&name, view).expect("templates were test-rendered at start with every field"));
        first_fitting(texts, self.max_segments)
    }
}

/// The first of `texts` (rendered only as far as needed) that fits `max` parts; else too long,
/// by the parts the last one needed.
fn first_fitting(texts: impl IntoIterator<Item = String>, max: usize) -> RenderedSms {
    let mut segments = 0;
    for text in texts {
        let segmented = segment(&text);
        segments = segmented.segments();
        if segments <= max {
            let encoding = segmented.encoding;
            return RenderedSms::Fits { text, encoding, segments };
        }
    }
    RenderedSms::TooLong { segments }
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
            itemized: &[],
            spike: false,
            recent_average: None,
        })
    }

    fn flag(record: &str, reason: crate::domain::flags::FlagReason, code: &str, fen: i64) -> ChargeFlag {
        ChargeFlag { record_id: record.into(), reason, service_code: code.into(), amount: Fen::new(fen) }
    }

    fn text_of(rendered: RenderedSms) -> (String, usize) {
        match rendered {
            RenderedSms::Fits { text, segments, .. } => (text, segments),
            other => panic!("fits: {other:?}"),
        }
    }

    /// S01000006's October bill in the fixture: a flagged game card, 800.00 of roaming, and
    /// four times the recent average.
    #[test]
    fn a_spiked_bill_names_the_flagged_charge_the_large_record_and_how_far_above_average_it_is() {
        let mut records = typical_records();
        records[4] = record("r5", "2026-10-18T20:59:36+08:00", Category::Vas, 1, 1000, "SP3003");
        records[4].description = "游戏点卡".into();
        records.push(record("r9", "2026-10-11T00:00:00+08:00", Category::Other, 1, 80000, ""));
        let summary = summarize(&records);
        let flags = [flag("r5", crate::domain::flags::FlagReason::NoOrder, "SP3003", 1000)];
        let itemized = [crate::domain::bill::ItemizedCharge {
            category: Category::Other,
            description: "国际漫游".into(),
            amount: Fen::new(80000),
        }];
        let msisdn = Msisdn::parse("17818492001").unwrap();
        let facts = |language| BillFacts {
            msisdn: &msisdn,
            language,
            month: "2026-10".into(),
            period: billing_period("2026-10".parse().unwrap(), BillingDay::FIRST, Shanghai),
            summary: &summary,
            flags: &flags,
            allowances: Allowances { voice_minutes: 300, data_mb: 20480, sms_count: 100 },
            itemized: &itemized,
            spike: true,
            recent_average: Some(Fen::new(20000)),
        };
        let renderer = renderer("示例电信", 4);
        let (zh, parts) = text_of(renderer.render_bill(&facts(Language::Zh)));
        assert!(parts <= 4, "{parts}: {zh}");
        for expected in [
            "代收费",
            "游戏点卡SP3003 10.00元（疑似不明扣费10.00元：未订购）",
            "如有异议回复SS",
            "国际漫游800.00元",
            "近期月均200.00元的4.5倍",
            "TDZD",
        ] {
            assert!(zh.contains(expected), "{expected} missing from {zh}");
        }
        let (en, _) = text_of(renderer.render_bill(&facts(Language::En)));
        // In English (UCS-2 because of the signature) this bill needs the compact form.
        for expected in [
            "Incl. 国际漫游 800.00",
            "SP3003 10.00 (never ordered)",
            "reply SS",
            "4.5x your recent average of 200.00",
            "TDZD to stop",
        ] {
            assert!(en.contains(expected), "{expected} missing from {en}");
        }
    }

    #[test]
    fn a_bill_too_long_for_its_itemization_keeps_the_total_the_flagged_charges_and_the_codes() {
        let mut records = typical_records();
        records[4].description = "手机报".into();
        let flags = [flag("r5", crate::domain::flags::FlagReason::AfterCancel, "SP2002", 300)];
        let full = text_of(render(&renderer("示例电信", 4), Language::Zh, &records, &flags));
        let (compact, parts) = text_of(render(&renderer("示例电信", 2), Language::Zh, &records, &flags));
        assert!(parts <= 2 && parts < full.1, "{compact}");
        for expected in ["94.05元", "手机报SP2002 3.00元（退订后仍扣费）", "SS", "ZD", "TDZD"] {
            assert!(compact.contains(expected), "{expected} missing from {compact}");
        }
        assert!(!compact.contains("套餐及固定费"), "the itemization is left for ZD: {compact}");
    }

    #[test]
    fn the_details_answer_is_cut_at_a_whole_line_and_ends_with_the_hotline() {
        let mut records = typical_records();
        records[4].description = "手机报".into();
        let summary = summarize(&records);
        let flags = [flag("r5", crate::domain::flags::FlagReason::NoOrder, "SP2002", 300)];
        let msisdn = Msisdn::parse("13800138000").unwrap();
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
        let (full, parts) = text_of(renderer("示例电信", 4).with_details_max_segments(5).render_details(
            &msisdn,
            Language::Zh,
            Some(&facts),
        ));
        assert!(parts <= 5);
        for expected in [
            "套餐及固定费58.00元",
            "代收费手机报SP2002 3.00元（疑似不明扣费）",
            "未订购",
            "优惠减免-1.57元",
            "54/300",
            "申诉请回复SS",
        ] {
            assert!(full.contains(expected), "{expected} missing from {full}");
        }
        assert!(full.ends_with("如有疑问请致电10000"), "{full}");
        let (cut, parts) = text_of(renderer("示例电信", 4).with_details_max_segments(2).render_details(
            &msisdn,
            Language::Zh,
            Some(&facts),
        ));
        assert!(parts <= 2, "{parts}: {cut}");
        assert!(cut.ends_with("更多明细请致电10000") && cut.len() < full.len(), "{cut}");
        assert!(cut.contains("套餐及固定费58.00元"), "the first lines stay: {cut}");
        let before_hotline = cut.trim_end_matches("更多明细请致电10000");
        assert!(before_hotline.ends_with('；') || before_hotline.ends_with('，'), "a whole line: {cut}");
        let (none, _) = text_of(renderer("示例电信", 4).render_details(&msisdn, Language::Zh, None));
        assert!(none.contains("暂无已出账单") && none.ends_with("10000"), "{none}");
    }

    #[test]
    fn each_dispute_message_names_the_case_and_fits_two_parts() {
        let renderer = renderer("示例电信", 4);
        let msisdn = Msisdn::parse("15126614242").unwrap();
        for language in Language::ALL {
            for status in DisputeStatus::ALL {
                let facts = DisputeFacts {
                    msisdn: &msisdn,
                    language,
                    case: 12,
                    period: billing_period("2026-10".parse().unwrap(), BillingDay::FIRST, Shanghai),
                    status,
                    disputed: Fen::new(300),
                    refunded: Fen::new(300),
                    note: "已核实为本人于营业厅订购 http://x.cn/a",
                    sla: chrono::Duration::days(15),
                };
                let (text, parts) = text_of(renderer.render_dispute(&facts));
                // The signature makes every message UCS-2: English takes a part more.
                let most = if language == Language::Zh { 2 } else { 3 };
                assert!(parts <= most, "{parts}: {text}");
                assert!(text.contains("12") && text.contains("10000") && text.contains("TDZD"), "{text}");
                assert!(!text.contains("http"), "{text}");
            }
        }
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
            "代收费",
            "SP2002 3.00元",
            "优惠减免-1.57元",
            "54/300",
            "ZD",
            "SS申诉",
            "TDZD",
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
        for expected in ["（疑似不明扣费3.00元：未订购）（疑似不明扣费3.00元：重复扣费）", "回复SS", "10000"]
        {
            assert!(text.contains(expected), "{expected} missing from {text}");
        }
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
