//! Subscribers' replies to the bill SMS (docs/contract.md §7): what each one changes and what
//! is answered. An opt-out is written (and audited) before anything else can fail; a spam
//! report is filed; `ZD` and the opt-out are answered by SMS through the same queue and rate
//! limit as bills, each as a notification of its own kind keyed by the reply's id.

use chrono::{DateTime, Datelike, Utc};
use chrono_tz::Tz;

use crate::billing::bill_facts;
use crate::clock::Clock;
use crate::dispatch::{notification_of, DispatchError, Dispatcher, NewNotification};
use crate::disputes::{DisputeError, DisputeRequest, Disputes};
use crate::domain::bill::CategoryTotals;
use crate::domain::category::Language;
use crate::domain::delivery::check_reported_time;
use crate::domain::dispute::DisputeStatus;
use crate::domain::money::Fen;
use crate::domain::msisdn::{normalise_reported_number, Msisdn};
use crate::domain::period::{local_date, local_midnight, BillingMonth};
use crate::domain::records::{ReportKind, SpamReport};
use crate::domain::reply::{parse_reply, Reply};
use crate::queue::Queue;
use crate::render::{Renderer, ReplyKind};
use crate::store::disputes::{DisputeFilter, Opened};
use crate::store::records::write_spam_reports;
use crate::store::replies::{Choice, ConsentSource, ReplyRecord};
use crate::store::{AuditEntry, Store, StoreError};

/// A subscriber's message as the gateway hands it over.
pub struct InboundReply<'a> {
    pub from: &'a Msisdn,
    /// The port it was sent to.
    pub to: &'a str,
    pub text: &'a str,
    pub received_at: DateTime<Utc>,
    /// The name of the gateway's token, for the audit log.
    pub via: &'a str,
}

/// What was done about a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyAction {
    OptOut,
    OptIn,
    AlertsOptOut,
    AlertsOptIn,
    /// A bare `TD` and its kin: nothing changed, answered with how to stop what.
    OptOutHelp,
    SpamReport,
    /// `JB` followed by something that is not a number.
    SpamReportUnreadable,
    Details,
    Dispute,
    Ignored,
}

impl ReplyAction {
    pub const fn as_str(self) -> &'static str {
        match self {
            ReplyAction::OptOut => "opt_out",
            ReplyAction::OptIn => "opt_in",
            ReplyAction::AlertsOptOut => "alerts_opt_out",
            ReplyAction::AlertsOptIn => "alerts_opt_in",
            ReplyAction::OptOutHelp => "opt_out_help",
            ReplyAction::SpamReport => "spam_report",
            ReplyAction::SpamReportUnreadable => "spam_report_unreadable",
            ReplyAction::Details => "details",
            ReplyAction::Dispute => "dispute",
            ReplyAction::Ignored => "ignored",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error("unknown sender")]
    UnknownSender,
    /// The reply's time is not one a gateway could report; nothing was changed.
    #[error("received_at: {0}")]
    Implausible(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Dispatch(#[from] DispatchError),
}

pub struct Replies<'a> {
    pub store: &'a Store,
    pub renderer: &'a Renderer,
    pub clock: &'a dyn Clock,
    pub timezone: Tz,
    /// The broker answers are handed to; `None` with the in-process queue, whose next `run`
    /// of the month pushes them.
    pub queue: Option<&'a dyn Queue>,
    /// `operator.vas_cancel_code`, named in the answer to a bare `TD`.
    pub vas_cancel_code: &'a str,
    /// `replies.max_per_day`: answers per sender and local calendar day.
    pub max_answers_per_day: u32,
    /// `disputes.sla`, promised when an `SS` opens a case.
    pub dispute_sla: chrono::Duration,
    /// `sms.itemize_min_fen`, for the `ZD` answer.
    pub itemize_min: Fen,
}

impl<'a> Replies<'a> {
    /// The service as `settings` configure it, answering through `queue`.
    pub fn new(
        store: &'a Store,
        renderer: &'a Renderer,
        clock: &'a dyn Clock,
        settings: &'a crate::config::Settings,
        queue: Option<&'a dyn Queue>,
    ) -> Replies<'a> {
        Replies {
            store,
            renderer,
            clock,
            timezone: settings.timezone,
            queue,
            vas_cancel_code: &settings.config.operator.vas_cancel_code,
            max_answers_per_day: settings.config.replies.max_per_day,
            dispute_sla: settings.dispute_sla,
            itemize_min: Fen::new(settings.config.sms.itemize_min_fen),
        }
    }
}

/// How an `SS` is answered.
enum DisputeAnswer {
    /// A case was opened, and its message tells the subscriber the case number.
    CaseOpened,
    /// Nothing was opened: the answer gives the case already open, or says there is no bill.
    Case,
}

/// What became of a reply: what it did, and whether it was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyOutcome {
    pub action: ReplyAction,
    /// False when it asked for nothing to be said, when the change it asked for was made
    /// already (a repeated opt-out is not confirmed again), or past the daily limit.
    pub answered: bool,
}

impl Replies<'_> {
    /// Acts on one reply, records it, and queues its answer when it has one.
    pub async fn handle(&self, reply: &InboundReply<'_>) -> Result<ReplyOutcome, ReplyError> {
        check_reported_time(reply.received_at, self.clock.now()).map_err(ReplyError::Implausible)?;
        let Some((subscriber_id, language)) = self.store.subscriber_by_msisdn(reply.from.as_str()).await? else {
            return Err(ReplyError::UnknownSender);
        };
        let reply_id = uuid::Uuid::now_v7().to_string();
        // Told already, outside the answers: a dispute opened sends its own message.
        let mut told = false;
        let (action, answer) = match parse_reply(reply.text) {
            Reply::OptOut => {
                let changed = self.set_choice(&subscriber_id, Choice::BillSms, false, &reply_id, reply.via).await?;
                (ReplyAction::OptOut, changed.then_some(ReplyKind::OptOut))
            }
            Reply::OptIn => {
                let changed = self.set_choice(&subscriber_id, Choice::BillSms, true, &reply_id, reply.via).await?;
                (ReplyAction::OptIn, changed.then_some(ReplyKind::OptIn))
            }
            Reply::AlertsOptOut => {
                let changed = self.set_choice(&subscriber_id, Choice::AlertSms, false, &reply_id, reply.via).await?;
                (ReplyAction::AlertsOptOut, changed.then_some(ReplyKind::AlertsOptOut))
            }
            Reply::AlertsOptIn => {
                let changed = self.set_choice(&subscriber_id, Choice::AlertSms, true, &reply_id, reply.via).await?;
                (ReplyAction::AlertsOptIn, changed.then_some(ReplyKind::AlertsOptIn))
            }
            Reply::Stop => (ReplyAction::OptOutHelp, Some(ReplyKind::StopHelp)),
            Reply::Report { number, kind } => match normalise_reported_number(&number) {
                Ok(reported_number) => {
                    self.file_spam_report(&reply_id, reply, reported_number, kind).await?;
                    (ReplyAction::SpamReport, None)
                }
                Err(_) => (ReplyAction::SpamReportUnreadable, None),
            },
            Reply::Details => (ReplyAction::Details, Some(ReplyKind::Details)),
            Reply::Dispute(text) => match self.open_dispute(&subscriber_id, &reply_id, &text).await? {
                DisputeAnswer::CaseOpened => {
                    told = true;
                    (ReplyAction::Dispute, None)
                }
                DisputeAnswer::Case => (ReplyAction::Dispute, Some(ReplyKind::DisputeCase)),
            },
            Reply::Other => (ReplyAction::Ignored, None),
        };
        self.store
            .record_reply(&ReplyRecord {
                id: &reply_id,
                from: reply.from.as_str(),
                to: reply.to,
                text: reply.text,
                received_at: reply.received_at,
                subscriber_id: &subscriber_id,
                action: action.as_str(),
            })
            .await?;
        let answered = match answer {
            Some(kind) if self.within_daily_limit(&subscriber_id).await? => {
                self.answer(kind, &subscriber_id, reply.from, language, &reply_id, reply.received_at).await?;
                true
            }
            _ => told,
        };
        Ok(ReplyOutcome { action, answered })
    }

    /// Whether the subscriber may get another answer today (local calendar day): every reply
    /// takes effect, but at most `max_answers_per_day` are answered, so that a sender cannot
    /// make the operator send SMS without end.
    async fn within_daily_limit(&self, subscriber_id: &str) -> Result<bool, StoreError> {
        let day = local_date(self.clock.now(), self.timezone);
        let start = local_midnight(day, self.timezone);
        let end = local_midnight(day.succ_opt().unwrap_or(day), self.timezone);
        let kinds = ReplyKind::ALL.map(ReplyKind::template);
        let answered = self.store.answers_between(subscriber_id, start, end, &kinds).await?;
        Ok(answered < i64::from(self.max_answers_per_day))
    }

    /// Opens a dispute of the latest bill, which tells the subscriber its case number itself;
    /// the answer, when there is one, is for an `SS` that opened nothing (a case of that bill
    /// is open already, or there is no bill).
    async fn open_dispute(&self, subscriber_id: &str, reply_id: &str, text: &str) -> Result<DisputeAnswer, ReplyError> {
        let Some(bill) = self.store.latest_bill(subscriber_id).await? else {
            return Ok(DisputeAnswer::Case);
        };
        let month: BillingMonth =
            bill.month.parse().map_err(|_| StoreError::Corrupt { column: "bills.month", value: bill.month.clone() })?;
        let actor = format!("reply {reply_id}");
        let request = DisputeRequest { subscriber_id, month, record_ids: None, note: text, actor: &actor };
        match self.disputes().open(&request).await {
            Ok(Opened::New(_)) => Ok(DisputeAnswer::CaseOpened),
            Ok(Opened::AlreadyOpen(_))
            | Err(DisputeError::NothingToDispute | DisputeError::NoBill | DisputeError::NotACharge(_)) => {
                Ok(DisputeAnswer::Case)
            }
            Err(DisputeError::Store(error)) => Err(error.into()),
            Err(DisputeError::Dispatch(error)) => Err(error.into()),
        }
    }

    fn disputes(&self) -> Disputes<'_> {
        Disputes {
            store: self.store,
            renderer: self.renderer,
            clock: self.clock,
            queue: self.queue,
            sla: self.dispute_sla,
        }
    }

    /// The subscriber's own word on the bill SMS or on usage alerts, kept as a consent change
    /// and audited; whether it changed anything.
    async fn set_choice(
        &self,
        subscriber_id: &str,
        choice: Choice,
        value: bool,
        reply_id: &str,
        via: &str,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let reason = format!("reply {reply_id}");
        let changed = self
            .store
            .set_choice(subscriber_id, choice, value, ConsentSource::Reply, &reason, now)
            .await?
            .unwrap_or(false);
        if changed {
            // A change of consent is an operator's record as much as an API call is.
            let change = if value { "opt-in to" } else { "opt-out of" };
            let what = match choice {
                Choice::BillSms => "the bill SMS",
                Choice::AlertSms => "usage alerts",
            };
            let entry = AuditEntry {
                id: uuid::Uuid::now_v7().to_string(),
                token_name: via.to_string(),
                role: "gateway".into(),
                at: now,
                method: "MO".into(),
                path: format!("{change} {what} by subscriber {subscriber_id} (reply {reply_id})"),
                status: 202,
                rows_returned: 0,
            };
            self.store.append_audit(&entry).await?;
        }
        Ok(changed)
    }

    async fn file_spam_report(
        &self,
        reply_id: &str,
        reply: &InboundReply<'_>,
        reported_number: String,
        kind: ReportKind,
    ) -> Result<(), StoreError> {
        let report = SpamReport {
            report_id: format!("mo-{reply_id}"),
            reporter: reply.from.clone(),
            reported_number,
            reported_at: reply.received_at,
            kind,
            note: "JB reply".into(),
        };
        let mut tx = self.store.begin().await?;
        write_spam_reports(&mut tx, &[&report]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes the answer as a notification of the month the reply came in, and hands it to
    /// the queue.
    async fn answer(
        &self,
        kind: ReplyKind,
        subscriber_id: &str,
        to: &Msisdn,
        language: Language,
        reply_id: &str,
        received_at: DateTime<Utc>,
    ) -> Result<(), ReplyError> {
        let rendered = match kind {
            ReplyKind::Details => {
                let latest = self.store.latest_bill_for_sms(subscriber_id, self.itemize_min).await?;
                let facts = latest.as_ref().map(|(month, bill)| bill_facts(bill, *month));
                self.renderer.render_details(to, language, facts.as_ref())
            }
            ReplyKind::DisputeCase => {
                let bill = self.store.latest_bill(subscriber_id).await?;
                let totals: Option<(_, &CategoryTotals)> = bill.as_ref().map(|b| (b.period, &b.categories));
                let mut view = self.renderer.reply_view(to, language, totals, self.vas_cancel_code);
                if let Some(bill) = &bill {
                    let open = DisputeFilter {
                        month: bill.month.parse().ok(),
                        status: Some(DisputeStatus::Open),
                        subscriber_id: Some(subscriber_id.to_string()),
                    };
                    if let Some(case) = self.store.disputes(&open, 0, 1).await?.first() {
                        view.case = case.id.to_string();
                        view.case_disputed = case.disputed.to_string();
                    }
                }
                self.renderer.render_reply(kind, language, &view)
            }
            ReplyKind::OptOut
            | ReplyKind::OptIn
            | ReplyKind::StopHelp
            | ReplyKind::AlertsOptOut
            | ReplyKind::AlertsOptIn => {
                let view = self.renderer.reply_view(to, language, None, self.vas_cancel_code);
                self.renderer.render_reply(kind, language, &view)
            }
        };
        let notification = notification_of(kind.template(), reply_id, rendered);
        let local = received_at.with_timezone(&self.timezone);
        let month = BillingMonth::new(local.year(), local.month()).expect("a real date").to_string();
        let dispatcher = Dispatcher { store: self.store, queue: self.queue, clock: self.clock };
        dispatcher.dispatch(NewNotification { subscriber_id, month: &month, to, notification: &notification }).await?;
        Ok(())
    }
}
