-- Every change of a subscriber's choice of bill SMS, with its time and source: `reply` (the
-- subscriber's TDZD/KTZD), `operator` (the consent route, with a reason) or `import`.
CREATE TABLE consent_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber_id TEXT NOT NULL,
    bill_sms INTEGER NOT NULL,
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX consent_changes_by_subscriber ON consent_changes (subscriber_id, id);
-- Answers sent to one subscriber on one day are counted to hold the daily limit.
CREATE INDEX notifications_answers_by_subscriber ON notifications (subscriber_id, created_at) WHERE kind <> 'bill';
