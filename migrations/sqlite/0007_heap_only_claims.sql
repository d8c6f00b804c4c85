-- The same derived columns as on PostgreSQL, so that both run the same queries (PostgreSQL
-- needs them to update a claimed row in place; SQLite computes them on reading), and the same
-- indexes but the one over a whole month in id order: the embedded push measured slower with
-- it, and only reports and listings read a whole month, which SQLite scans instead.
ALTER TABLE notifications ADD COLUMN stage TEXT GENERATED ALWAYS AS (
    CASE WHEN status = 'pending' THEN 'pending' WHEN status IN ('queued', 'sending') THEN 'in_flight' END
) VIRTUAL;
ALTER TABLE notifications ADD COLUMN awaiting_receipt_since INTEGER GENERATED ALWAYS AS (
    CASE WHEN status = 'accepted' THEN updated_at END
) VIRTUAL;
CREATE INDEX notifications_unfinished ON notifications (month, stage, id) WHERE stage IS NOT NULL;
CREATE INDEX notifications_awaiting_receipt ON notifications (awaiting_receipt_since)
    WHERE awaiting_receipt_since IS NOT NULL;
DROP INDEX notifications_by_month_status_id;
DROP INDEX notifications_accepted_by_updated;
