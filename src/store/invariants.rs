//! Consistency checks over the whole database: what must hold after any run, crash or
//! retry. Tests run them after every push and `billpush verify` runs them on demand.

use super::{Store, StoreResult};

/// Each check is a query returning one row per offending key.
const CHECKS: &[(&str, &str)] = &[
    (
        // The kind column holds `kind:subject` where there is a subject (domain::delivery::stored_kind).
        "more than one notification for a subscriber, month, kind and subject",
        "SELECT subscriber_id || ' ' || month || ' ' || kind FROM notifications
         GROUP BY subscriber_id, month, kind HAVING COUNT(*) > 1",
    ),
    (
        "notification whose current status has no timestamped event",
        "SELECT n.id FROM notifications n WHERE NOT EXISTS (
             SELECT 1 FROM notification_events e
             WHERE e.notification_id = n.id AND e.status = n.status AND e.at = n.updated_at)",
    ),
    (
        "status event of no notification",
        "SELECT DISTINCT e.notification_id FROM notification_events e
         WHERE NOT EXISTS (SELECT 1 FROM notifications n WHERE n.id = e.notification_id)",
    ),
    ("status event without a time", "SELECT notification_id FROM notification_events WHERE at IS NULL OR at <= 0"),
    (
        "notification sent without a queued event",
        "SELECT DISTINCT e.notification_id FROM notification_events e WHERE e.status = 'sending' AND NOT EXISTS (
             SELECT 1 FROM notification_events q WHERE q.notification_id = e.notification_id AND q.status = 'queued')",
    ),
    (
        "dispute whose disputed sum is not what its records add up to",
        "SELECT CAST(d.id AS TEXT) FROM disputes d WHERE d.disputed_fen <> (
             SELECT COALESCE(SUM(r.amount_fen), 0) FROM dispute_records r WHERE r.dispute_id = d.id)",
    ),
    (
        "dispute refunding more than was disputed, or refunding without being refunded",
        "SELECT CAST(id AS TEXT) FROM disputes
         WHERE refunded_fen > disputed_fen OR (status <> 'refunded' AND refunded_fen <> 0)
            OR (status = 'open') <> (resolved_at IS NULL)",
    ),
    (
        // A sent alert's notification is its own: same subscriber, period, metric and threshold.
        "usage alert whose notification is missing or is another's",
        "SELECT a.subscriber_id || ' ' || a.month || ' ' || a.metric || ' ' || CAST(a.threshold AS TEXT)
         FROM usage_alerts a LEFT JOIN notifications n ON n.id = a.notification_id
         WHERE a.notification_id IS NOT NULL AND (n.id IS NULL OR n.subscriber_id <> a.subscriber_id
               OR n.month <> a.month OR n.kind <> 'usage_alert:' || a.metric || ':' || CAST(a.threshold AS TEXT))",
    ),
    (
        "bill whose categories do not add up to its total",
        "SELECT subscriber_id || ' ' || month FROM bills
         WHERE plan_fee_fen + voice_fen + data_fen + sms_fen + vas_fen + other_fen + discount_fen + adjustment_fen
               <> total_fen",
    ),
    (
        // Whatever months a subscriber's records were placed in, each is in its totals once.
        "subscriber whose usage totals are not what its records add up to",
        "SELECT COALESCE(r.subscriber_id, t.subscriber_id) FROM (
             SELECT subscriber_id,
                    SUM(CASE WHEN category = 'plan_fee' THEN amount_fen ELSE 0 END) AS plan_fee_fen,
                    SUM(CASE WHEN category = 'voice' THEN amount_fen ELSE 0 END) AS voice_fen,
                    SUM(CASE WHEN category = 'data' THEN amount_fen ELSE 0 END) AS data_fen,
                    SUM(CASE WHEN category = 'sms' THEN amount_fen ELSE 0 END) AS sms_fen,
                    SUM(CASE WHEN category = 'other' THEN amount_fen ELSE 0 END) AS other_fen,
                    SUM(CASE WHEN category = 'discount' THEN amount_fen ELSE 0 END) AS discount_fen,
                    SUM(CASE WHEN category = 'adjustment' THEN amount_fen ELSE 0 END) AS adjustment_fen,
                    SUM(CASE WHEN category = 'voice' THEN quantity ELSE 0 END) AS voice_minutes,
                    SUM(CASE WHEN category = 'data' THEN quantity ELSE 0 END) AS data_kb,
                    SUM(CASE WHEN category = 'sms' THEN quantity ELSE 0 END) AS sms_count,
                    COUNT(*) AS records
             FROM usage_records WHERE category <> 'vas' GROUP BY subscriber_id) r
         FULL JOIN (
             SELECT subscriber_id, SUM(plan_fee_fen) AS plan_fee_fen, SUM(voice_fen) AS voice_fen,
                    SUM(data_fen) AS data_fen, SUM(sms_fen) AS sms_fen, SUM(other_fen) AS other_fen,
                    SUM(discount_fen) AS discount_fen, SUM(adjustment_fen) AS adjustment_fen,
                    SUM(voice_minutes) AS voice_minutes, SUM(data_kb) AS data_kb, SUM(sms_count) AS sms_count,
                    SUM(records) AS records
             FROM usage_totals GROUP BY subscriber_id) t ON t.subscriber_id = r.subscriber_id
         WHERE EXISTS (SELECT 1 FROM store_facts WHERE name = 'usage_totals_complete')
           AND (r.subscriber_id IS NULL OR t.subscriber_id IS NULL
                OR r.plan_fee_fen <> t.plan_fee_fen OR r.voice_fen <> t.voice_fen OR r.data_fen <> t.data_fen
                OR r.sms_fen <> t.sms_fen OR r.other_fen <> t.other_fen OR r.discount_fen <> t.discount_fen
                OR r.adjustment_fen <> t.adjustment_fen OR r.voice_minutes <> t.voice_minutes
                OR r.data_kb <> t.data_kb OR r.sms_count <> t.sms_count OR r.records <> t.records)",
    ),
];

/// Examples shown per broken invariant.
const EXAMPLES: i64 = 5;

impl Store {
    /// One line per broken invariant, naming a few offending keys; empty when all hold.
    pub async fn invariant_violations(&self) -> StoreResult<Vec<String>> {
        let mut violations = Vec::new();
        for (what, query) in CHECKS {
            let count: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM ({query}) AS offending"))
                .fetch_one(&self.pool)
                .await?;
            if count > 0 {
                let examples: Vec<String> =
                    sqlx::query_scalar(&format!("{query} LIMIT {EXAMPLES}")).fetch_all(&self.pool).await?;
                violations.push(format!("{count} × {what}: {}", examples.join(", ")));
            }
        }
        Ok(violations)
    }
}

#[cfg(test)]
mod tests {
    use crate::store::scratch_sqlite_store;

    #[tokio::test]
    async fn an_event_of_no_notification_is_reported() {
        let (_dir, _, store) = scratch_sqlite_store().await;
        assert_eq!(store.invariant_violations().await.unwrap(), Vec::<String>::new());
        sqlx::query("INSERT INTO notification_events (notification_id, status, at) VALUES ('gone', 'queued', 1)")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(store.invariant_violations().await.unwrap(), vec!["1 × status event of no notification: gone"]);
    }

    #[tokio::test]
    async fn a_usage_record_missing_from_the_totals_is_reported() {
        let (_dir, _, store) = scratch_sqlite_store().await;
        sqlx::query(
            "INSERT INTO usage_records (record_id, subscriber_id, occurred_at, category, quantity, amount_fen,
                 service_code, description) VALUES ('R1', 'S1', 0, 'voice', 1, 100, '', '')",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let missing = "1 × subscriber whose usage totals are not what its records add up to: S1";
        assert_eq!(store.invariant_violations().await.unwrap(), vec![missing]);
        // A database that held usage before it kept totals makes no such claim.
        sqlx::query("DELETE FROM store_facts").execute(&store.pool).await.unwrap();
        assert_eq!(store.invariant_violations().await.unwrap(), Vec::<String>::new());
    }
}
