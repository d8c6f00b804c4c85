-- Usage alerts (docs/contract.md §12). A subscriber's choice of alerts, apart from the bill SMS.
ALTER TABLE subscribers ADD COLUMN alert_sms BIGINT NOT NULL DEFAULT 1;
-- Which choice a consent change is about: `bill_sms` or `alert_sms`; the column `bill_sms`
-- holds the new value of that choice.
ALTER TABLE consent_changes ADD COLUMN what TEXT COLLATE "C" NOT NULL DEFAULT 'bill_sms';
-- Every threshold a subscriber reached in a period, once: the one sent with its notification,
-- the lower ones reached with it `covered` (no notification).
CREATE TABLE usage_alerts (
    subscriber_id TEXT COLLATE "C" NOT NULL,
    month TEXT COLLATE "C" NOT NULL,
    metric TEXT COLLATE "C" NOT NULL,
    threshold BIGINT NOT NULL,
    value BIGINT NOT NULL,
    allowance BIGINT,
    raised_at BIGINT NOT NULL,
    notification_id TEXT COLLATE "C",
    PRIMARY KEY (subscriber_id, month, metric, threshold)
);
CREATE INDEX usage_alerts_by_month ON usage_alerts (month, subscriber_id);
