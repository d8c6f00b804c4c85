-- The sender port each notification went out from (docs/contract.md §11), set when a worker
-- claims it for sending.
ALTER TABLE notifications ADD COLUMN sender TEXT;
-- Each status change carries its notification's month, as on PostgreSQL, where the history
-- lives in the month's partition; retention removes a month's history by it.
ALTER TABLE notification_events ADD COLUMN month TEXT NOT NULL DEFAULT '';
-- History whose notification is gone takes the month it happened in (UTC), as on PostgreSQL.
UPDATE notification_events SET month = COALESCE((SELECT n.month FROM notifications n WHERE n.id = notification_id),
                                                strftime('%Y-%m', at / 1000000, 'unixepoch'));
DROP TRIGGER notification_status_events;
CREATE TRIGGER notification_status_events AFTER UPDATE OF status ON notifications
BEGIN
    INSERT INTO notification_events (notification_id, month, status, at) VALUES (NEW.id, NEW.month, NEW.status, NEW.updated_at);
END;
-- Retention removes audit entries and consent changes by their own time.
CREATE INDEX audit_log_by_time ON audit_log (at);
CREATE INDEX consent_changes_by_time ON consent_changes (at);
