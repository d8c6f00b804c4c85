//! Leases that keep two schedulers from working on the same month and shard at once: a row per
//! lease names its holder and when it runs out, so one left by a crashed process expires.

use chrono::{DateTime, Utc};

use super::{to_micros, Store, StoreResult};

impl Store {
    /// Takes or renews the lease `name` for `holder` until `until`; false while another holder
    /// has it. Stops concurrent schedulers from queuing the same month twice.
    pub async fn acquire_lock(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let result = sqlx::query(
            "INSERT INTO scheduler_locks (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE scheduler_locks.expires_at < $4 OR scheduler_locks.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(to_micros(until))
        .bind(to_micros(now))
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// The holder of the lease `name`, if anyone holds it.
    pub async fn lock_holder(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_as::<_, (String,)>("SELECT holder FROM scheduler_locks WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .map(|(holder,)| holder))
    }

    /// Hands the lease `name` from `dead_holder` to `holder`, unless someone else took it first.
    pub async fn take_over_lock(
        &self,
        name: &str,
        dead_holder: &str,
        holder: &str,
        until: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let result =
            sqlx::query("UPDATE scheduler_locks SET holder = $1, expires_at = $2 WHERE name = $3 AND holder = $4")
                .bind(holder)
                .bind(to_micros(until))
                .bind(name)
                .bind(dead_holder)
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected() > 0)
    }

    pub async fn release_lock(&self, name: &str, holder: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM scheduler_locks WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
