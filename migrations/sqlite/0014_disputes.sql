-- Disputes of charges (docs/contract.md §7a). At most one open dispute per subscriber and bill
-- month: the partial unique index decides between two `SS` arriving at once.
CREATE TABLE disputes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber_id TEXT NOT NULL,
    msisdn TEXT NOT NULL,
    month TEXT NOT NULL,
    status TEXT NOT NULL,
    disputed_fen BIGINT NOT NULL,
    refunded_fen BIGINT NOT NULL DEFAULT 0,
    opened_at BIGINT NOT NULL,
    resolved_at BIGINT
);
CREATE UNIQUE INDEX disputes_one_open_per_bill ON disputes (subscriber_id, month) WHERE status = 'open';
CREATE INDEX disputes_by_month ON disputes (month, id);
CREATE INDEX disputes_by_subscriber ON disputes (subscriber_id, id);

-- The charges each dispute is about.
CREATE TABLE dispute_records (
    dispute_id BIGINT NOT NULL REFERENCES disputes (id),
    record_id TEXT NOT NULL,
    amount_fen BIGINT NOT NULL,
    PRIMARY KEY (dispute_id, record_id)
);

-- Every change of a dispute with its time, actor and note.
CREATE TABLE dispute_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dispute_id BIGINT NOT NULL REFERENCES disputes (id),
    status TEXT NOT NULL,
    refunded_fen BIGINT NOT NULL,
    actor TEXT NOT NULL,
    note TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX dispute_events_by_dispute ON dispute_events (dispute_id, id);
