-- Every request made with a regulator or operator token. Nothing in the API updates or
-- deletes these rows.
CREATE TABLE audit_log (
    id TEXT COLLATE "C" PRIMARY KEY,
    token_name TEXT COLLATE "C" NOT NULL,
    role TEXT COLLATE "C" NOT NULL,
    at BIGINT NOT NULL,
    method TEXT COLLATE "C" NOT NULL,
    path TEXT COLLATE "C" NOT NULL,
    status BIGINT NOT NULL,
    rows_returned BIGINT NOT NULL
);

-- Subscribers' replies to the bill SMS, as the gateway forwarded them.
CREATE TABLE mo_messages (
    id TEXT COLLATE "C" PRIMARY KEY,
    from_msisdn TEXT COLLATE "C" NOT NULL,
    to_port TEXT COLLATE "C" NOT NULL,
    text TEXT COLLATE "C" NOT NULL,
    received_at BIGINT NOT NULL,
    subscriber_id TEXT COLLATE "C" NOT NULL,
    action TEXT COLLATE "C" NOT NULL
);
CREATE INDEX notifications_by_msisdn ON notifications (msisdn, id);

-- Insertion order of status changes, to order a history whose changes share a timestamp.
-- (SQLite numbers rows by itself: its rowid.)
ALTER TABLE notification_events ADD COLUMN seq BIGSERIAL;
