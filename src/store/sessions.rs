//! Console sessions: who signed in with which token, until when, and the CSRF token of their
//! forms. The cookie's value is kept only as its SHA-256, so a copy of the database opens no
//! session.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{to_micros, Store, StoreResult};

/// A session as the console checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token_name: String,
    /// `regulator` or `operator`.
    pub role: String,
    pub csrf: String,
}

fn hashed(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

impl Store {
    /// Opens a session known by `id` (the cookie's value) until `expires_at`; ended sessions
    /// are cleared on the way.
    pub async fn open_session(
        &self,
        id: &str,
        session: &Session,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(to_micros(now))
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (id_sha256, token_name, role, csrf, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(hashed(id))
        .bind(&session.token_name)
        .bind(&session.role)
        .bind(&session.csrf)
        .bind(to_micros(now))
        .bind(to_micros(expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The session known by `id`, unless it has ended.
    pub async fn session(&self, id: &str, now: DateTime<Utc>) -> StoreResult<Option<Session>> {
        let row =
            sqlx::query("SELECT token_name, role, csrf FROM console_sessions WHERE id_sha256 = $1 AND expires_at > $2")
                .bind(hashed(id))
                .bind(to_micros(now))
                .fetch_optional(&self.pool)
                .await?;
        row.map(|r| {
            Ok(Session { token_name: r.try_get("token_name")?, role: r.try_get("role")?, csrf: r.try_get("csrf")? })
        })
        .transpose()
    }

    pub async fn close_session(&self, id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM console_sessions WHERE id_sha256 = $1").bind(hashed(id)).execute(&self.pool).await?;
        Ok(())
    }
}
