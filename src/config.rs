//! Configuration: `config/default.toml` (or `--config FILE`) layered under environment
//! overrides `BILLPUSH_<SECTION>__<KEY>`. Every value is checked at start; a bad one stops the
//! program with the key's name and what is wrong with it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::NaiveTime;
use chrono_tz::Tz;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::domain::flags::SpikeRule;
use crate::domain::money::Fen;
use crate::domain::quiet_hours::QuietHours;
use crate::domain::spam::Allowlist;
use crate::tls::TlsTrust;

pub const DEFAULT_CONFIG_FILE: &str = "config/default.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration key {key}: {problem}")]
    Invalid { key: &'static str, problem: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub operator: OperatorConfig,
    pub database: DatabaseConfig,
    pub queue: QueueConfig,
    pub gateway: GatewayConfig,
    pub smpp: SmppConfig,
    pub billing: BillingConfig,
    pub sms: SmsConfig,
    pub flags: FlagsConfig,
    pub spam: SpamConfig,
    pub replies: RepliesConfig,
    pub disputes: DisputesConfig,
    pub alerts: AlertsConfig,
    pub retention: RetentionConfig,
    pub tls: TlsConfig,
    pub api: ApiConfig,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Extra trust roots (a PEM bundle) for every outgoing TLS connection; empty for the
    /// system's roots alone.
    pub ca_file: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorConfig {
    pub name: String,
    pub hotline: String,
    /// How a subscriber cancels a VAS, named when a bare `TD` is answered.
    pub vas_cancel_code: String,
}

impl Default for OperatorConfig {
    fn default() -> Self {
        OperatorConfig { name: "示例电信".into(), hotline: "10000".into(), vas_cancel_code: "0000".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RepliesConfig {
    /// Answers one sender gets per local calendar day; past it, replies still take effect.
    pub max_per_day: u32,
}

impl Default for RepliesConfig {
    fn default() -> Self {
        RepliesConfig { max_per_day: 10 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DisputesConfig {
    /// How long a dispute may stay open before it is overdue.
    pub sla: String,
}

/// Usage alerts (docs/contract.md §12): thresholds per metric, and how long an alert may wait.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Percentages of the plan's data allowance.
    pub data: Vec<i64>,
    /// Percentages of the plan's voice minutes.
    pub voice: Vec<i64>,
    /// Percentages of the plan's SMS count.
    pub sms: Vec<i64>,
    /// Amounts spent on everything but the plan fee and discounts.
    pub spend_fen: Vec<i64>,
    /// An alert not sent within this long of being raised is never sent.
    pub max_age: String,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            data: vec![80, 100],
            voice: vec![80, 100],
            sms: vec![100],
            spend_fen: vec![10000, 50000],
            max_age: "24h".into(),
        }
    }
}

/// How long records are kept (docs/contract.md §11), counted from the end of their month.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Notifications, their status history, replies and usage alerts.
    pub deliveries: String,
    /// Usage records.
    pub usage: String,
    /// The API audit log and the consent changes.
    pub audit: String,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { deliveries: "183d".into(), usage: "183d".into(), audit: "3y".into() }
    }
}

impl Default for DisputesConfig {
    fn default() -> Self {
        DisputesConfig { sla: "15d".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: String,
    /// Connections per process to PostgreSQL; SQLite, with its one writer, keeps at most 4.
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: "sqlite://billpush.db".into(), max_connections: 8 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub url: String,
    /// Prefix of the broker's queue names (`NAME`, `NAME.delay.*`, `NAME.dead`).
    pub name: String,
    /// A notification queued (or leased) this long without progress, while the broker holds
    /// nothing waiting, is published again by the scheduler daemon.
    pub requeue_after: String,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig { url: "memory://".into(), name: "billpush".into(), requeue_after: "15m".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GatewayKind {
    Sink,
    Http,
    Jasmin,
    Smpp,
}

/// How a message longer than one part goes over SMPP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmppLong {
    /// One `submit_sm` per part, each with a concatenation header.
    Udh,
    /// One `submit_sm` carrying the whole text in `message_payload`; the SMSC splits it.
    Payload,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmppConfig {
    pub host: String,
    pub port: u16,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub source_ton: u8,
    pub source_npi: u8,
    /// Outstanding `submit_sm` per bind.
    pub window: u32,
    /// Binds per worker process.
    pub binds: u32,
    pub long: SmppLong,
    pub tls: bool,
    pub timeout_ms: u64,
    /// How long a closing bind waits for the receipts of what it sent.
    pub receipt_wait: String,
}

impl Default for SmppConfig {
    fn default() -> Self {
        SmppConfig {
            host: String::new(),
            port: 2775,
            system_id: String::new(),
            password: String::new(),
            system_type: String::new(),
            source_ton: 5,
            source_npi: 0,
            window: 10,
            binds: 1,
            long: SmppLong::Udh,
            tls: false,
            timeout_ms: 10_000,
            receipt_wait: "30s".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub kind: GatewayKind,
    pub url: String,
    pub token: String,
    pub outbox: PathBuf,
    pub username: String,
    pub password: String,
    pub sender: String,
    pub rate_per_second: u32,
    pub workers: u32,
    pub max_attempts: u32,
    pub timeout_ms: u64,
    pub idempotent: bool,
    pub dlr_timeout: String,
    /// First retry delay; each further attempt doubles it (with jitter), up to five minutes.
    pub retry_base_ms: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            kind: GatewayKind::Sink,
            url: String::new(),
            token: String::new(),
            outbox: "outbox.jsonl".into(),
            username: String::new(),
            password: String::new(),
            sender: "10001".into(),
            rate_per_second: 100,
            workers: 1,
            max_attempts: 5,
            timeout_ms: 5000,
            idempotent: true,
            dlr_timeout: "72h".into(),
            retry_base_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    pub timezone: String,
    pub grace: String,
    pub check_every: String,
}

impl Default for BillingConfig {
    fn default() -> Self {
        BillingConfig { timezone: "Asia/Shanghai".into(), grace: "24h".into(), check_every: "1h".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    pub max_segments: u32,
    /// Parts the answer to `ZD` (the full itemization) may take.
    pub details_max_segments: u32,
    /// An `other` or `adjustment` record of at least this many fen is named in the bill SMS.
    pub itemize_min_fen: i64,
    pub quiet_start: String,
    pub quiet_end: String,
    /// A directory whose `*.hbs` files override the built-in templates one by one; empty for
    /// the built-in templates alone.
    pub templates: PathBuf,
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig {
            max_segments: 4,
            details_max_segments: 5,
            itemize_min_fen: 5000,
            quiet_start: "21:00".into(),
            quiet_end: "08:00".into(),
            templates: PathBuf::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlagsConfig {
    /// A bill is a spike above this multiple of the usual total; up to two decimals.
    pub spike_ratio: f64,
    pub spike_min_fen: i64,
    /// An opted-out subscriber whose bill has flagged charges or a spike still gets one short
    /// `flag_notice`: a warning of money taken without consent is a service notice.
    pub notify_opted_out: bool,
}

impl Default for FlagsConfig {
    fn default() -> Self {
        FlagsConfig { spike_ratio: 3.0, spike_min_fen: 5000, notify_opted_out: true }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpamConfig {
    pub flag_threshold: i64,
    /// Reports counted for a month reach back this many days from its end.
    pub window_days: u32,
    pub allowlist: Vec<String>,
}

impl Default for SpamConfig {
    fn default() -> Self {
        SpamConfig {
            flag_threshold: 3,
            window_days: 90,
            allowlist: ["10086", "10000", "10010", "12321", "95???"].map(String::from).to_vec(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    pub bind: String,
    pub public_url: String,
    /// With `tls_key`, `serve` terminates TLS itself (PEM files); empty behind a proxy.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub tokens: Vec<ApiToken>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            bind: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            tokens: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    pub name: String,
    pub token_sha256: String,
    pub role: String,
}

/// The checked, typed form of the settings the pipeline uses.
#[derive(Debug, Clone)]
pub struct Settings {
    pub config: Config,
    pub timezone: Tz,
    pub grace: chrono::Duration,
    pub check_every: chrono::Duration,
    pub dlr_timeout: chrono::Duration,
    pub requeue_after: chrono::Duration,
    pub dispute_sla: chrono::Duration,
    pub alert_thresholds: crate::domain::alerts::Thresholds,
    pub alert_max_age: chrono::Duration,
    pub retention: crate::domain::retention::Retention,
    pub quiet_hours: QuietHours,
    pub spike: SpikeRule,
    pub allowlist: Allowlist,
    pub max_segments: usize,
    pub tls: TlsTrust,
    pub smpp_receipt_wait: Duration,
}

impl Config {
    /// Loads `file` (the default file may be absent: built-in defaults apply) and the
    /// environment overrides.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        for name in ignored_variables(std::env::vars().map(|(name, _)| name)) {
            tracing::warn!(
                variable = name,
                "ignored: settings are BILLPUSH_<SECTION>__<KEY>, with two underscores (e.g. BILLPUSH_DATABASE__URL)"
            );
        }
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.exists() => {
                return Err(ConfigError::Load(format!("config file {} does not exist", path.display())))
            }
            Some(path) => figment = figment.merge(Toml::file(path)),
            None => figment = figment.merge(Toml::file(DEFAULT_CONFIG_FILE)),
        }
        figment
            .merge(Env::prefixed("BILLPUSH_").filter(|key| key.as_str().contains("__")).split("__"))
            .extract()
            .map_err(|e| ConfigError::Load(e.to_string().replace('\n', "; ")))
    }

    /// Checks every value whose type alone does not make it valid.
    pub fn settings(self) -> Result<Settings, ConfigError> {
        let invalid = |key: &'static str, problem: String| ConfigError::Invalid { key, problem };
        let timezone: Tz = self.billing.timezone.parse().map_err(|_| {
            invalid("billing.timezone", format!("{:?} is not an IANA timezone name", self.billing.timezone))
        })?;
        let grace = parse_duration("billing.grace", &self.billing.grace)?;
        let dispute_sla = parse_duration("disputes.sla", &self.disputes.sla)?;
        let check_every = parse_duration("billing.check_every", &self.billing.check_every)?;
        let requeue_after = parse_duration("queue.requeue_after", &self.queue.requeue_after)?;
        let dlr_timeout = parse_duration("gateway.dlr_timeout", &self.gateway.dlr_timeout)?;
        let smpp_receipt_wait =
            parse_duration("smpp.receipt_wait", &self.smpp.receipt_wait)?.to_std().unwrap_or_default();
        let quiet_start = parse_time("sms.quiet_start", &self.sms.quiet_start)?;
        let quiet_end = parse_time("sms.quiet_end", &self.sms.quiet_end)?;
        if self.sms.max_segments == 0 || self.sms.max_segments > 255 {
            return Err(invalid("sms.max_segments", format!("{} is not between 1 and 255", self.sms.max_segments)));
        }
        if self.sms.details_max_segments == 0 || self.sms.details_max_segments > 255 {
            return Err(invalid(
                "sms.details_max_segments",
                format!("{} is not between 1 and 255", self.sms.details_max_segments),
            ));
        }
        if self.sms.itemize_min_fen < 0 {
            return Err(invalid("sms.itemize_min_fen", format!("{} is below 0", self.sms.itemize_min_fen)));
        }
        if dispute_sla <= chrono::Duration::zero() {
            return Err(invalid("disputes.sla", "must be longer than 0".into()));
        }
        let alert_max_age = parse_duration("alerts.max_age", &self.alerts.max_age)?;
        if alert_max_age <= chrono::Duration::zero() {
            return Err(invalid("alerts.max_age", "must be longer than 0".into()));
        }
        let mut keep = [chrono::Duration::zero(); 3];
        let r = &self.retention;
        for (slot, (key, value)) in keep.iter_mut().zip([
            ("retention.deliveries", &r.deliveries),
            ("retention.usage", &r.usage),
            ("retention.audit", &r.audit),
        ]) {
            *slot = parse_duration(key, value)?;
            if *slot < chrono::Duration::days(1) {
                return Err(invalid(key, format!("{value:?} is shorter than a day")));
            }
        }
        let [deliveries, usage, audit] = keep;
        let retention = crate::domain::retention::Retention { deliveries, usage, audit };
        let a = &self.alerts;
        for (key, list) in [("alerts.data", &a.data), ("alerts.voice", &a.voice), ("alerts.sms", &a.sms)] {
            if let Some(bad) = list.iter().find(|t| !(1..=10_000).contains(*t)) {
                return Err(invalid(key, format!("{bad} is not a percentage between 1 and 10000")));
            }
        }
        if let Some(bad) = a.spend_fen.iter().find(|t| **t <= 0) {
            return Err(invalid("alerts.spend_fen", format!("{bad} is not an amount above 0")));
        }
        let alert_thresholds = crate::domain::alerts::Thresholds {
            data: a.data.clone(),
            voice: a.voice.clone(),
            sms: a.sms.clone(),
            spend_fen: a.spend_fen.clone(),
        };
        if self.operator.name.trim().is_empty() {
            return Err(invalid("operator.name", "must not be empty: it is the SMS signature".into()));
        }
        let ratio = self.flags.spike_ratio;
        if !(ratio.is_finite() && ratio > 0.0 && ratio <= 1000.0) {
            return Err(invalid("flags.spike_ratio", format!("{ratio} is not a number between 0 and 1000")));
        }
        if self.flags.spike_min_fen < 0 {
            return Err(invalid("flags.spike_min_fen", "must not be negative".into()));
        }
        if self.spam.flag_threshold < 1 {
            return Err(invalid("spam.flag_threshold", "must be at least 1".into()));
        }
        if self.gateway.workers == 0 {
            return Err(invalid("gateway.workers", "must be at least 1".into()));
        }
        if self.gateway.max_attempts == 0 {
            return Err(invalid("gateway.max_attempts", "must be at least 1".into()));
        }
        let db = &self.database.url;
        if !(db.starts_with("sqlite:") || db.starts_with("postgres://") || db.starts_with("postgresql://")) {
            return Err(invalid("database.url", "must start with sqlite:, postgres:// or postgresql://".into()));
        }
        let queue = &self.queue.url;
        // One broker, or the nodes of a cluster separated by commas, each amqp:// or amqps://.
        let brokers_valid =
            queue.split(',').map(str::trim).all(|url| url.starts_with("amqp://") || url.starts_with("amqps://"));
        if !(queue == "memory://" || brokers_valid) {
            // The URL may carry the broker's password: the error names only the schemes.
            let schemes: Vec<&str> = queue
                .split(',')
                .map(|url| url.trim().split_once("://").map_or("(none)", |(scheme, _)| scheme))
                .collect();
            return Err(invalid(
                "queue.url",
                format!(
                    "scheme {:?} is neither memory:// nor amqp:// or amqps:// (several brokers: amqp URLs separated by commas)",
                    schemes.join(",")
                ),
            ));
        }
        if self.queue.name.is_empty()
            || !self.queue.name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err(invalid("queue.name", "must be letters, digits, '.', '_' or '-'".into()));
        }
        match self.gateway.kind {
            GatewayKind::Sink => {}
            GatewayKind::Http | GatewayKind::Jasmin if !self.gateway.url.starts_with("http") => {
                return Err(invalid("gateway.url", format!("{:?} is not an http(s) URL", self.gateway.url)));
            }
            GatewayKind::Http => {}
            GatewayKind::Smpp => self.smpp_problem()?,
            GatewayKind::Jasmin => {
                if self.gateway.idempotent {
                    return Err(invalid(
                        "gateway.idempotent",
                        "Jasmin honours no idempotency key: set it to false".into(),
                    ));
                }
                for (key, parts) in [
                    ("sms.max_segments", self.sms.max_segments),
                    ("sms.details_max_segments", self.sms.details_max_segments),
                ] {
                    if parts > 5 {
                        return Err(invalid(key, "Jasmin silently cuts messages past 5 parts: use 5 or less".into()));
                    }
                }
            }
        }
        if self.gateway.rate_per_second == 0 {
            return Err(invalid("gateway.rate_per_second", "must be at least 1".into()));
        }
        if self.gateway.timeout_ms == 0 {
            return Err(invalid("gateway.timeout_ms", "must be at least 1".into()));
        }
        if !self.api.public_url.starts_with("http") {
            return Err(invalid("api.public_url", format!("{:?} is not an http(s) URL", self.api.public_url)));
        }
        for (i, token) in self.api.tokens.iter().enumerate() {
            if !matches!(token.role.as_str(), "regulator" | "operator" | "gateway" | "jasmin") {
                return Err(invalid(
                    "api.tokens",
                    format!("token {i} ({}): role must be regulator, operator, gateway or jasmin", token.name),
                ));
            }
            if token.token_sha256.len() != 64 || !token.token_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    "api.tokens",
                    format!("token {i} ({}): token_sha256 must be 64 hex digits", token.name),
                ));
            }
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1".into()));
        }
        if self.api.tls_cert.as_os_str().is_empty() != self.api.tls_key.as_os_str().is_empty() {
            return Err(invalid(
                "api.tls_cert",
                "api.tls_cert and api.tls_key go together: set both or neither".into(),
            ));
        }
        for (key, path) in [("api.tls_cert", &self.api.tls_cert), ("api.tls_key", &self.api.tls_key)] {
            if !path.as_os_str().is_empty() && !path.is_file() {
                return Err(invalid(key, format!("{} is not a readable file", path.display())));
            }
        }
        // Jasmin posts its receipts with `gateway.token` in the URL: where this process serves
        // the API, that token must be a `jasmin` one, or every receipt would be refused.
        if self.gateway.kind == GatewayKind::Jasmin && !self.api.tokens.is_empty() {
            let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(self.gateway.token.as_bytes()));
            if !self.api.tokens.iter().any(|t| t.role == "jasmin" && t.token_sha256.eq_ignore_ascii_case(&hash)) {
                return Err(invalid(
                    "gateway.token",
                    "for a jasmin gateway it must be a token of role jasmin in api.tokens (billpush token --role jasmin)"
                        .into(),
                ));
            }
        }
        let tls = TlsTrust::load(&self.tls.ca_file).map_err(|problem| invalid("tls.ca_file", problem))?;
        Ok(Settings {
            tls,
            timezone,
            grace,
            check_every,
            dlr_timeout,
            requeue_after,
            dispute_sla,
            alert_thresholds,
            alert_max_age,
            retention,
            quiet_hours: QuietHours::new(quiet_start, quiet_end, timezone),
            // The ratio is a setting, not an amount: it becomes integer hundredths here.
            spike: SpikeRule {
                ratio_percent: (ratio * 100.0).round() as i64,
                min_increase: Fen::new(self.flags.spike_min_fen),
            },
            allowlist: Allowlist::new(&self.spam.allowlist, |entry| {
                crate::domain::msisdn::normalise_reported_number(entry).unwrap_or_else(|_| entry.to_string())
            }),
            max_segments: self.sms.max_segments as usize,
            smpp_receipt_wait,
            config: self,
        })
    }
}

/// Variables that look meant for billpush but name no setting: `BILLPUSH_DATABASE_URL` with one
/// underscore would otherwise be ignored without a word.
impl Config {
    /// What makes the `[smpp]` section unusable for `gateway.kind = "smpp"`.
    fn smpp_problem(&self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, problem: &str| Err(ConfigError::Invalid { key, problem: problem.into() });
        let smpp = &self.smpp;
        if self.gateway.idempotent {
            return invalid("gateway.idempotent", "SMPP has no idempotency key: set it to false");
        }
        if smpp.host.trim().is_empty() {
            return invalid("smpp.host", "must name the SMSC");
        }
        // SMPP 3.4 §5.2: system_id up to 15 characters, password 8, system_type 12; the
        // source address 20, all ASCII.
        for (key, value, longest) in [
            ("smpp.system_id", &smpp.system_id, 15),
            ("smpp.password", &smpp.password, 8),
            ("smpp.system_type", &smpp.system_type, 12),
            ("gateway.sender", &self.gateway.sender, 20),
        ] {
            if value.len() > longest || !value.is_ascii() {
                return Err(ConfigError::Invalid {
                    key,
                    problem: format!("must be ASCII of at most {longest} characters for SMPP"),
                });
            }
        }
        if smpp.system_id.is_empty() {
            return invalid("smpp.system_id", "must not be empty");
        }
        if self.gateway.sender.is_empty() {
            return invalid("gateway.sender", "must not be empty: it is the SMPP source address");
        }
        if smpp.window == 0 || smpp.window > 1000 {
            return invalid("smpp.window", "must be between 1 and 1000");
        }
        if smpp.binds == 0 || smpp.binds > 64 {
            return invalid("smpp.binds", "must be between 1 and 64");
        }
        if smpp.timeout_ms == 0 {
            return invalid("smpp.timeout_ms", "must be at least 1");
        }
        if smpp.source_ton > 6 {
            return invalid("smpp.source_ton", "must be a TON between 0 and 6");
        }
        if ![0, 1, 3, 4, 6, 8, 9, 10, 14, 18].contains(&smpp.source_npi) {
            return invalid("smpp.source_npi", "must be an NPI of SMPP 3.4 (0, 1, 3, 4, 6, 8, 9, 10, 14 or 18)");
        }
        Ok(())
    }
}

fn ignored_variables(names: impl Iterator<Item = String>) -> Vec<String> {
    const OWN: [&str; 3] = ["BILLPUSH_CONFIG", "BILLPUSH_LOG", "BILLPUSH_LOG_FORMAT"];
    names
        .filter(|name| name.starts_with("BILLPUSH_") && !name.contains("__") && !OWN.contains(&name.as_str()))
        .collect()
}

fn parse_duration(key: &'static str, value: &str) -> Result<chrono::Duration, ConfigError> {
    humantime::parse_duration(value).ok().and_then(|d: Duration| chrono::Duration::from_std(d).ok()).ok_or_else(|| {
        ConfigError::Invalid { key, problem: format!("{value:?} is not a duration such as \"24h\" or \"90m\"") }
    })
}

fn parse_time(key: &'static str, value: &str) -> Result<NaiveTime, ConfigError> {
    NaiveTime::parse_from_str(value, "%H:%M")
        .map_err(|_| ConfigError::Invalid { key, problem: format!("{value:?} is not a time of day written HH:MM") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_default_file_matches_the_built_in_defaults() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_FILE);
        let figment = Figment::from(Toml::file(&file));
        let from_file: Config = figment.extract().unwrap();
        assert_eq!(serde_json::to_value(&from_file).unwrap(), serde_json::to_value(Config::default()).unwrap());
    }

    #[test]
    fn bad_values_are_refused_with_the_key_name() {
        let mut config = Config::default();
        config.billing.timezone = "Mars/Olympus".into();
        assert!(config.settings().unwrap_err().to_string().contains("billing.timezone"));

        let mut config = Config::default();
        config.sms.quiet_start = "25:00".into();
        assert!(config.settings().unwrap_err().to_string().contains("sms.quiet_start"));

        let mut config = Config::default();
        config.billing.grace = "a day".into();
        assert!(config.settings().unwrap_err().to_string().contains("billing.grace"));

        let mut config = Config::default();
        config.flags.spike_ratio = f64::NAN;
        assert!(config.settings().unwrap_err().to_string().contains("flags.spike_ratio"));
    }

    #[test]
    fn wrong_types_and_unknown_keys_name_the_key() {
        let err = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("[gateway]\nrate_per_second = \"fast\""))
            .extract::<Config>()
            .unwrap_err();
        assert!(err.to_string().contains("rate_per_second"), "{err}");
        let err = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string("[sms]\nmax_segmnts = 3"))
            .extract::<Config>()
            .unwrap_err();
        assert!(err.to_string().contains("max_segmnts"), "{err}");
    }

    #[test]
    fn a_variable_with_one_underscore_is_reported_not_silently_ignored() {
        let names = ["BILLPUSH_DATABASE_URL", "BILLPUSH_DATABASE__URL", "BILLPUSH_LOG", "BILLPUSH_CONFIG", "PATH"];
        assert_eq!(ignored_variables(names.iter().map(|n| n.to_string())), ["BILLPUSH_DATABASE_URL"]);
    }

    #[test]
    fn several_brokers_are_amqp_urls_separated_by_commas() {
        let mut config = Config::default();
        config.queue.url = "amqp://a:5672/%2f, amqps://b:5671/%2f".into();
        assert!(config.clone().settings().is_ok());
        config.queue.url = "amqp://a:5672/%2f,memory://".into();
        assert!(config.settings().unwrap_err().to_string().contains("queue.url"));
    }

    #[test]
    fn a_bad_queue_url_is_refused_without_repeating_its_password() {
        let mut config = Config::default();
        config.queue.url = "rabbit://billpush:s3cret@mq:5672/".into();
        let error = config.settings().unwrap_err().to_string();
        assert!(error.contains("queue.url") && error.contains("rabbit"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn a_jasmin_gateway_needs_its_receipt_token_to_be_of_role_jasmin() {
        let mut config = Config::default();
        config.gateway.kind = GatewayKind::Jasmin;
        config.gateway.url = "http://jasmin:1401".into();
        config.gateway.idempotent = false;
        config.gateway.token = "receipts".into();
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"receipts"));
        config.api.tokens =
            vec![ApiToken { name: "jasmin".into(), token_sha256: hash.clone(), role: "gateway".into() }];
        assert!(config.clone().settings().unwrap_err().to_string().contains("gateway.token"));
        config.api.tokens[0].role = "jasmin".into();
        assert!(config.clone().settings().is_ok());
        config.api.tokens.clear();
        assert!(config.settings().is_ok(), "a worker's configuration lists no API tokens");
    }

    #[test]
    fn the_spike_ratio_becomes_integer_hundredths() {
        let mut config = Config::default();
        config.flags.spike_ratio = 2.5;
        assert_eq!(config.settings().unwrap().spike.ratio_percent, 250);
    }
}
