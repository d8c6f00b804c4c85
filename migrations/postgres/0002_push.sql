-- A worker's claim on a notification it is sending expires at lease_until (UTC microseconds);
-- after that another worker may take it over (idempotent gateway) or mark it unknown.
ALTER TABLE notifications ADD COLUMN lease_until BIGINT;
CREATE INDEX notifications_by_gateway_message ON notifications (gateway_message_id);
CREATE INDEX notifications_by_status_updated ON notifications (status, updated_at);

-- Leases that keep concurrent schedulers from queuing the same month and shard twice.
CREATE TABLE scheduler_locks (
    name TEXT COLLATE "C" PRIMARY KEY,
    holder TEXT COLLATE "C" NOT NULL,
    expires_at BIGINT NOT NULL
);
