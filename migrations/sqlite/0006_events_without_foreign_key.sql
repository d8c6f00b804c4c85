-- Every status change writes an event, four or more per notification, and the foreign key
-- looked its notification up again for each one. Events are only ever written from the
-- notification rows the same statement inserts or moves, and notifications are never deleted,
-- so the key guarded nothing the writers can break; `billpush verify` checks that every event
-- names a notification. SQLite drops a constraint by rebuilding the table; rowids, which
-- order a notification's events, are kept.
CREATE TABLE notification_events_new (
    notification_id TEXT NOT NULL,
    status TEXT NOT NULL,
    at BIGINT NOT NULL
);
INSERT INTO notification_events_new (rowid, notification_id, status, at)
    SELECT rowid, notification_id, status, at FROM notification_events;
DROP TABLE notification_events;
ALTER TABLE notification_events_new RENAME TO notification_events;
CREATE INDEX notification_events_by_notification ON notification_events (notification_id);
