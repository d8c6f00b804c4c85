-- A month's charges other than VAS, summed per subscriber as the import stores them, so that a
-- build reads one row per subscriber instead of every record. A row holds what the records
-- of one billing month add up to under one basis: the billing day and timezone the import
-- cut the months by. A build uses a subscriber's row only when every row of the months around
-- it was summed under the subscriber's current basis, and reads the records otherwise.
CREATE TABLE usage_totals (
    subscriber_id TEXT NOT NULL,
    month TEXT NOT NULL,
    basis TEXT NOT NULL,
    plan_fee_fen BIGINT NOT NULL,
    voice_fen BIGINT NOT NULL,
    data_fen BIGINT NOT NULL,
    sms_fen BIGINT NOT NULL,
    other_fen BIGINT NOT NULL,
    discount_fen BIGINT NOT NULL,
    adjustment_fen BIGINT NOT NULL,
    voice_minutes BIGINT NOT NULL,
    data_kb BIGINT NOT NULL,
    sms_count BIGINT NOT NULL,
    records BIGINT NOT NULL,
    PRIMARY KEY (subscriber_id, month, basis)
);
-- Facts about the stored data as a whole. `usage_totals_complete`: every usage record is in
-- the totals. A database that held usage before the totals existed never gets it, and builds
-- from the records as before.
CREATE TABLE store_facts (name TEXT PRIMARY KEY);
INSERT INTO store_facts (name) SELECT 'usage_totals_complete' WHERE NOT EXISTS (SELECT 1 FROM usage_records);
-- The VAS charges, which a bill lists and the flags judge one by one, without the other
-- records beside them.
CREATE INDEX usage_vas_by_subscriber_time ON usage_records (subscriber_id, occurred_at) WHERE category = 'vas';
