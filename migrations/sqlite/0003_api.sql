-- Every request made with a regulator or operator token. Nothing in the API updates or
-- deletes these rows.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    token_name TEXT NOT NULL,
    role TEXT NOT NULL,
    at BIGINT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status BIGINT NOT NULL,
    rows_returned BIGINT NOT NULL
);

-- Subscribers' replies to the bill SMS, as the gateway forwarded them.
CREATE TABLE mo_messages (
    id TEXT PRIMARY KEY,
    from_msisdn TEXT NOT NULL,
    to_port TEXT NOT NULL,
    text TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    subscriber_id TEXT NOT NULL,
    action TEXT NOT NULL
);
CREATE INDEX notifications_by_msisdn ON notifications (msisdn, id);
