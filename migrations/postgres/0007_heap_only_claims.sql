-- A status change that touches no indexed column is a heap-only update: the row's new version
-- goes beside the old one on its page and no index changes. Every index on `status` or
-- `updated_at` ruled that out for every step, so each claim rewrote all four index entries of
-- the wide notification row. Indexes now key on two columns derived from the status, which
-- keep their value through the steps a push repeats: `stage` is the same for queued and
-- sending (the claim, and a release for retry), and `awaiting_receipt_since` is set only once
-- the gateway has accepted. Adding stored columns rewrites the table once, under an exclusive
-- lock: on a large database, apply it between two months' pushes.
ALTER TABLE notifications
    ADD COLUMN stage TEXT COLLATE "C" GENERATED ALWAYS AS (
        CASE WHEN status = 'pending' THEN 'pending' WHEN status IN ('queued', 'sending') THEN 'in_flight' END
    ) STORED,
    ADD COLUMN awaiting_receipt_since BIGINT GENERATED ALWAYS AS (
        CASE WHEN status = 'accepted' THEN updated_at END
    ) STORED;
-- Unfinished notifications of a month by stage, in id order: pages of pending ones to queue,
-- in-flight ones whose queue message may be lost, how many are left.
CREATE INDEX notifications_unfinished ON notifications (month, stage, id) WHERE stage IS NOT NULL;
-- Every notification of a month in id order, whatever its status.
CREATE INDEX notifications_by_month ON notifications (month, id);
CREATE INDEX notifications_awaiting_receipt ON notifications (awaiting_receipt_since)
    WHERE awaiting_receipt_since IS NOT NULL;
DROP INDEX notifications_by_month_status_id;
DROP INDEX notifications_accepted_by_updated;
-- Room on each page for the new versions of its rows (applies to pages written from now on).
ALTER TABLE notifications SET (fillfactor = 60);
