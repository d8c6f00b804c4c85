-- SQLite compares TEXT bytewise (BINARY), like the PostgreSQL schema's COLLATE "C".
-- Instants are BIGINT microseconds since the Unix epoch (UTC); money is BIGINT fen.

CREATE TABLE plans (
    plan_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    monthly_fee_fen BIGINT NOT NULL,
    voice_minutes BIGINT NOT NULL,
    data_mb BIGINT NOT NULL,
    sms_count BIGINT NOT NULL
);

CREATE TABLE subscribers (
    subscriber_id TEXT PRIMARY KEY,
    msisdn TEXT NOT NULL,
    name TEXT NOT NULL,
    plan_id TEXT NOT NULL REFERENCES plans (plan_id),
    language TEXT NOT NULL,
    billing_day BIGINT NOT NULL,
    status TEXT NOT NULL,
    bill_sms BIGINT NOT NULL
);
CREATE INDEX subscribers_by_msisdn ON subscribers (msisdn);

CREATE TABLE usage_records (
    record_id TEXT PRIMARY KEY,
    subscriber_id TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    category TEXT NOT NULL,
    quantity BIGINT NOT NULL,
    amount_fen BIGINT NOT NULL,
    service_code TEXT NOT NULL,
    description TEXT NOT NULL
);
CREATE INDEX usage_by_subscriber_time ON usage_records (subscriber_id, occurred_at);

CREATE TABLE vas_orders (
    subscriber_id TEXT NOT NULL,
    service_code TEXT NOT NULL,
    ordered_at BIGINT NOT NULL,
    cancelled_at BIGINT,
    confirmed BIGINT NOT NULL,
    channel TEXT NOT NULL,
    PRIMARY KEY (subscriber_id, service_code, ordered_at)
);

CREATE TABLE spam_reports (
    report_id TEXT PRIMARY KEY,
    reporter TEXT NOT NULL,
    reported_number TEXT NOT NULL,
    reported_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    note TEXT NOT NULL
);
CREATE INDEX spam_reports_by_time ON spam_reports (reported_at);

-- A built bill is frozen: it keeps the figures, number and plan it was built with.
CREATE TABLE bills (
    subscriber_id TEXT NOT NULL,
    month TEXT NOT NULL,
    msisdn TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    period_end BIGINT NOT NULL,
    total_fen BIGINT NOT NULL,
    plan_fee_fen BIGINT NOT NULL,
    voice_fen BIGINT NOT NULL,
    data_fen BIGINT NOT NULL,
    sms_fen BIGINT NOT NULL,
    vas_fen BIGINT NOT NULL,
    other_fen BIGINT NOT NULL,
    discount_fen BIGINT NOT NULL,
    adjustment_fen BIGINT NOT NULL,
    voice_minutes BIGINT NOT NULL,
    data_kb BIGINT NOT NULL,
    sms_count BIGINT NOT NULL,
    record_count BIGINT NOT NULL,
    spike BIGINT NOT NULL,
    built_at BIGINT NOT NULL,
    PRIMARY KEY (subscriber_id, month)
);
CREATE INDEX bills_by_month ON bills (month, subscriber_id);

CREATE TABLE charge_flags (
    subscriber_id TEXT NOT NULL,
    month TEXT NOT NULL,
    record_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    service_code TEXT NOT NULL,
    amount_fen BIGINT NOT NULL,
    PRIMARY KEY (subscriber_id, month, record_id)
);
CREATE INDEX charge_flags_by_month ON charge_flags (month, subscriber_id, record_id);

-- One notification per (subscriber, month, kind): the unique key that makes a second send impossible.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    subscriber_id TEXT NOT NULL,
    month TEXT NOT NULL,
    kind TEXT NOT NULL,
    msisdn TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    attempts BIGINT NOT NULL,
    segments BIGINT NOT NULL,
    encoding TEXT NOT NULL,
    text TEXT NOT NULL,
    gateway_message_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    UNIQUE (subscriber_id, month, kind)
);
CREATE INDEX notifications_by_month_status ON notifications (month, status);

CREATE TABLE notification_events (
    notification_id TEXT NOT NULL REFERENCES notifications (id),
    status TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX notification_events_by_notification ON notification_events (notification_id);

CREATE TABLE import_runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    file TEXT NOT NULL,
    strict BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    accepted BIGINT NOT NULL,
    duplicate BIGINT NOT NULL,
    rejected BIGINT NOT NULL
);

CREATE TABLE billing_runs (
    id TEXT PRIMARY KEY,
    month TEXT NOT NULL,
    as_of BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    billed BIGINT NOT NULL,
    not_due BIGINT NOT NULL
);
CREATE INDEX billing_runs_by_month ON billing_runs (month);
