//! Consistency checks over the whole database: what must hold after any run, crash or
//! retry. Tests run them after every push and `billpush verify` runs them on demand.

use super::{Store, StoreResult};

/// Each check is a query returning one row per offending key.
const CHECKS: &[(&str, &str)] = &[
    (
        "more than one notification for a subscriber, month and kind",
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
        "bill whose categories do not add up to its total",
        "SELECT subscriber_id || ' ' || month FROM bills
         WHERE plan_fee_fen + voice_fen + data_fen + sms_fen + vas_fen + other_fen + discount_fen + adjustment_fen
               <> total_fen",
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
}
