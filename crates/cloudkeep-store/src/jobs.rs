//! Jobs under leases: enqueued when a connection is due, claimed by one
//! worker at a time (`FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has a
//! single writer), kept alive by heartbeats, retried with backoff. A job
//! keeps `lease_owner` when it ends, so the record says which worker ran it.

use chrono::{DateTime, Duration, Utc};
use cloudkeep_domain::ConnectionId;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::{Backend, OrgScope, Result, Store, StoreError, parse, time};

pub const SYNC_JOB: &str = "sync";
/// The organisation's retention purge (its subject column holds the organisation).
pub const RETENTION_JOB: &str = "retention";

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: Uuid,
    pub kind: String,
    pub connection_id: ConnectionId,
    pub attempts: i64,
    pub run_at: DateTime<Utc>,
}

fn job(row: &AnyRow) -> Result<Job> {
    Ok(Job {
        id: parse(row, "job_id")?,
        kind: row.try_get("kind")?,
        connection_id: parse(row, "connection_id")?,
        attempts: row.try_get("attempts")?,
        run_at: time(row.try_get("run_at")?),
    })
}

impl Store {
    /// Queues a sync for every live connection that is due at `now` and has
    /// no job queued or running. Answers how many were queued.
    pub async fn enqueue_due_syncs(&self, scope: &OrgScope, now: DateTime<Utc>) -> Result<u64> {
        let now_ms = now.timestamp_millis();
        let due = sqlx::query(
            "SELECT c.connection_id FROM connections c WHERE c.org_id = $1 AND c.deleted_at IS NULL AND c.next_sync_at IS NOT NULL \
             AND c.next_sync_at <= $2 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.org_id = c.org_id AND j.connection_id = c.connection_id \
             AND j.kind = $3 AND j.status IN ('queued', 'running'))",
        )
        .bind(scope.id())
        .bind(now_ms)
        .bind(SYNC_JOB)
        .fetch_all(&self.pool)
        .await?;
        let mut queued = 0;
        for row in due {
            let connection: String = row.try_get("connection_id")?;
            // Re-checked in the insert itself: a run that finished since the
            // SELECT has moved `next_sync_at`, and must not be queued again.
            let inserted = self.execute_write(sqlx::query(
                "INSERT INTO jobs (org_id, job_id, kind, connection_id, status, run_at, created_at) \
                 SELECT $1, $2, $3, c.connection_id, 'queued', $5, $5 FROM connections c \
                 WHERE c.org_id = $1 AND c.connection_id = $4 AND c.deleted_at IS NULL AND c.next_sync_at <= $5 \
                 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.org_id = $1 AND j.connection_id = $4 AND j.kind = $3 AND j.status IN ('queued', 'running'))",
            )
            .bind(scope.id())
            .bind(Uuid::new_v4().to_string())
            .bind(SYNC_JOB)
            .bind(&connection)
            .bind(now_ms))
            .await;
            match inserted {
                Ok(done) => queued += done.rows_affected(),
                // Another process queued it first: the unique index holds one active job.
                Err(StoreError::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(queued)
    }

    /// Takes the next due job (or one whose lease ran out) for `worker`
    /// until `now + lease`.
    pub async fn claim_job(
        &self,
        scope: &OrgScope,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<Option<Job>> {
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs SET status = 'running', lease_owner = $2, lease_until = $3, attempts = attempts + 1 \
             WHERE org_id = $1 AND job_id = (SELECT job_id FROM jobs WHERE org_id = $1 \
               AND ((status = 'queued' AND run_at <= $4) OR (status = 'running' AND lease_until < $4)) \
               ORDER BY run_at, job_id LIMIT 1 {lock}) \
             RETURNING job_id, kind, connection_id, attempts, run_at"
        );
        let row = self
            .fetch_optional_write(
                sqlx::query(&sql)
                    .bind(scope.id())
                    .bind(worker)
                    .bind((now + lease).timestamp_millis())
                    .bind(now.timestamp_millis()),
            )
            .await?;
        row.as_ref().map(job).transpose()
    }

    /// Extends a job's lease; false when `worker` no longer holds it.
    pub async fn heartbeat_job(
        &self,
        scope: &OrgScope,
        id: Uuid,
        worker: &str,
        now: DateTime<Utc>,
        lease: Duration,
    ) -> Result<bool> {
        let done = self
            .execute_write(
                sqlx::query("UPDATE jobs SET lease_until = $4 WHERE org_id = $1 AND job_id = $2 AND lease_owner = $3 AND status = 'running'")
                    .bind(scope.id())
                    .bind(id.to_string())
                    .bind(worker)
                    .bind((now + lease).timestamp_millis()),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a job done; false when `worker` had lost it.
    pub async fn complete_job(
        &self,
        scope: &OrgScope,
        id: Uuid,
        worker: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let done = self
            .execute_write(
                sqlx::query(
                    "UPDATE jobs SET status = 'done', finished_at = $4, lease_until = NULL \
                     WHERE org_id = $1 AND job_id = $2 AND lease_owner = $3 AND status = 'running'",
                )
                .bind(scope.id())
                .bind(id.to_string())
                .bind(worker)
                .bind(now.timestamp_millis()),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a failed job back for a retry at `retry_at`, or ends it as
    /// failed when `retry_at` is `None`.
    pub async fn fail_job(
        &self,
        scope: &OrgScope,
        id: Uuid,
        worker: &str,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (status, run_at, finished) = match retry_at {
            Some(t) => ("queued", t.timestamp_millis(), None),
            None => (
                "failed",
                now.timestamp_millis(),
                Some(now.timestamp_millis()),
            ),
        };
        let done = self
            .execute_write(
                sqlx::query(
                    "UPDATE jobs SET status = $4, run_at = $5, last_error = $6, finished_at = $7, lease_until = NULL \
                     WHERE org_id = $1 AND job_id = $2 AND lease_owner = $3 AND status = 'running'",
                )
                .bind(scope.id())
                .bind(id.to_string())
                .bind(worker)
                .bind(status)
                .bind(run_at)
                .bind(error)
                .bind(finished),
            )
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Counts of jobs by status, for tests and metrics.
    pub async fn job_counts(&self, scope: &OrgScope) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM jobs WHERE org_id = $1 GROUP BY status ORDER BY status")
            .bind(scope.id())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }
}
