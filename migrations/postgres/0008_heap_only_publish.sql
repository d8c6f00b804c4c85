-- Publishing a notification (pending → queued) moved it from the `pending` stage to
-- `in_flight`, a change to an indexed column: every publish rewrote all five index entries of
-- the wide row while the build was writing the next pages beside it. One column now says only
-- whether a notification is unfinished (pending, queued or sending), so that a publish, like a
-- claim, is a heap-only update; the pages of pending notifications to publish and of in-flight
-- ones to re-queue are told apart by their status on the row. Rewrites the table once, under
-- an exclusive lock: on a large database, apply it between two months' pushes.
DROP INDEX notifications_unfinished;
ALTER TABLE notifications
    DROP COLUMN stage,
    ADD COLUMN unfinished BOOLEAN GENERATED ALWAYS AS (
        CASE status WHEN 'pending' THEN TRUE WHEN 'queued' THEN TRUE WHEN 'sending' THEN TRUE END
    ) STORED;
CREATE INDEX notifications_unfinished ON notifications (month, unfinished, id) WHERE unfinished IS NOT NULL;
