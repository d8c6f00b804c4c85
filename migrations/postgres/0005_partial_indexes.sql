-- A status change rewrites the row's entries in every index it belongs to. These two only ever
-- serve rows the gateway has accepted: partial, they cost nothing while a notification moves
-- through pending, queued and sending.
DROP INDEX notifications_by_gateway_message;
CREATE INDEX notifications_by_gateway_message ON notifications (gateway_message_id)
    WHERE gateway_message_id IS NOT NULL;
DROP INDEX notifications_by_status_updated;
CREATE INDEX notifications_accepted_by_updated ON notifications (updated_at) WHERE status = 'accepted';
