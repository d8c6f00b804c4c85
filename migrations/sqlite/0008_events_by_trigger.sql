-- SQLite records a status change in the statement that makes it, as PostgreSQL does with a
-- data-modifying `WITH`: every UPDATE of a notification's status is a transition whose
-- event is (id, new status, new updated_at). A second statement per transition found every
-- moved row again by its id and cost a round trip to the connection's thread, on the one
-- writer the whole embedded push waits for.
CREATE TRIGGER notification_status_events AFTER UPDATE OF status ON notifications
BEGIN
    INSERT INTO notification_events (notification_id, status, at) VALUES (NEW.id, NEW.status, NEW.updated_at);
END;
