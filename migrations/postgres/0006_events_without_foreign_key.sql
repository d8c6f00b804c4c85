-- Every status change writes an event, four or more per notification, and the foreign key
-- looked its notification up and locked it again for each one: a fifth of what claiming and
-- accepting a delivery cost the database. Events are only ever written from the notification
-- rows the same statement inserts or moves, and notifications are never deleted, so the key
-- guarded nothing the writers can break; `billpush verify` checks that every event names a
-- notification.
ALTER TABLE notification_events DROP CONSTRAINT notification_events_notification_id_fkey;
