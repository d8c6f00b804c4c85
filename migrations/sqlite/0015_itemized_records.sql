-- The `other` and `adjustment` records, of which the bill SMS names the large ones
-- (`sms.itemize_min_fen`) with their description, read without the records beside them.
CREATE INDEX usage_other_by_subscriber_time ON usage_records (subscriber_id, occurred_at)
    WHERE category IN ('other', 'adjustment');
