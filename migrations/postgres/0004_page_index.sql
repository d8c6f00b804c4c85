-- Pages of a month's notifications in one status come in id order straight from the index,
-- instead of sorting every such notification of the month for each page (quadratic at scale).
CREATE INDEX notifications_by_month_status_id ON notifications (month, status, id);
DROP INDEX notifications_by_month_status;
