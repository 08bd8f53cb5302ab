//! Failed sign-ins per key (an account's email, a client address), for the
//! limits of `cloudkeep_domain::login`, and expired sessions swept.
//!
//! This table is read before anyone is authenticated, so it belongs to no
//! organisation: its keys are a hash of the email tried (whether or not an
//! account has it) or a client address, and it holds no organisation data.
//! It lives in the store, not in a process's memory, so that several
//! instances behind one address count the same failures.

use chrono::{DateTime, Utc};
use cloudkeep_domain::login::{AttemptLimits, Attempts, Escalation};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{Result, Store, time};

/// Whose failures: the email tried, or where the attempt came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptKey {
    Account(String),
    Address(std::net::IpAddr),
}

impl AttemptKey {
    /// The stored key: the email is hashed (normalised first), never kept.
    fn stored(&self) -> String {
        match self {
            AttemptKey::Account(email) => {
                let normal = email.trim().to_lowercase();
                format!("account:{}", hex::encode(Sha256::digest(normal.as_bytes())))
            }
            AttemptKey::Address(ip) => format!("address:{ip}"),
        }
    }
}

impl Store {
    /// A key's failures so far (none when it has none).
    pub async fn login_attempts(&self, key: &AttemptKey) -> Result<Option<Attempts>> {
        let row = sqlx::query(
            "SELECT failures, last_failure_at, locked_until FROM login_attempts WHERE attempt_key = $1",
        )
        .bind(key.stored())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> Result<Attempts> {
            Ok(Attempts {
                failures: u32::try_from(r.try_get::<i64, _>("failures")?).unwrap_or(u32::MAX),
                last_failure: time(r.try_get("last_failure_at")?),
                locked_until: r.try_get::<Option<i64>, _>("locked_until")?.map(time),
            })
        })
        .transpose()
    }

    /// Counts one more failure of `key` under `limits`, in one write
    /// transaction (two instances failing at once count two); answers the
    /// new record and what it changed.
    pub async fn record_login_failure(
        &self,
        key: &AttemptKey,
        limits: &AttemptLimits,
    ) -> Result<(Attempts, Escalation)> {
        let stored = key.stored();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT failures, last_failure_at, locked_until FROM login_attempts WHERE attempt_key = $1",
        )
        .bind(&stored)
        .fetch_optional(&mut *tx)
        .await?;
        let before = match row {
            Some(r) => Some(Attempts {
                failures: u32::try_from(r.try_get::<i64, _>("failures")?).unwrap_or(u32::MAX),
                last_failure: time(r.try_get("last_failure_at")?),
                locked_until: r.try_get::<Option<i64>, _>("locked_until")?.map(time),
            }),
            None => None,
        };
        let (after, escalation) = limits.after_failure(before.as_ref(), self.now());
        sqlx::query(
            "INSERT INTO login_attempts (attempt_key, failures, last_failure_at, locked_until) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (attempt_key) DO UPDATE SET failures = $2, last_failure_at = $3, locked_until = $4",
        )
        .bind(&stored)
        .bind(i64::from(after.failures))
        .bind(after.last_failure.timestamp_millis())
        .bind(after.locked_until.map(|t| t.timestamp_millis()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((after, escalation))
    }

    /// Forgets a key's failures (an account after a successful sign-in).
    pub async fn clear_login_failures(&self, key: &AttemptKey) -> Result<()> {
        self.execute_write(
            sqlx::query("DELETE FROM login_attempts WHERE attempt_key = $1").bind(key.stored()),
        )
        .await?;
        Ok(())
    }

    /// Deletes what no longer counts: sessions past their expiry, and
    /// failure records quiet for longer than `quiet` and not locked.
    /// Answers the sessions deleted.
    pub async fn sweep_logins(&self, quiet_since: DateTime<Utc>) -> Result<u64> {
        let now = self.now_ms();
        let _turn = self.write_turn().await?;
        let sessions = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        sqlx::query(
            "DELETE FROM login_attempts WHERE last_failure_at < $1 AND (locked_until IS NULL OR locked_until <= $2)",
        )
        .bind(quiet_since.timestamp_millis())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(sessions)
    }
}
