-- The sender port each notification went out from (docs/contract.md §11), set when a worker
-- claims it for sending.
ALTER TABLE notifications ADD COLUMN sender TEXT COLLATE "C";
-- Each status change carries its notification's month, so that the history can live in the
-- month's partition beside the notification (the store fills it, by a join with the
-- notifications, just before it moves the tables over to monthly partitions).
ALTER TABLE notification_events ADD COLUMN month TEXT COLLATE "C";
-- Retention removes audit entries and consent changes by their own time.
CREATE INDEX audit_log_by_time ON audit_log (at);
CREATE INDEX consent_changes_by_time ON consent_changes (at);
