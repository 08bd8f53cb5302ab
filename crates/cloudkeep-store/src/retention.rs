//! Retention: evidence and sync history are kept for the organisation's
//! window after they stop being current (also those of a revoked
//! connection, which stay readable until then), and purged past it in
//! small audited batches, except evidence attached to an approved
//! assessment, which is kept for good (its triggers would refuse anyway).
//! Each batch commits on its own, so an interrupted purge leaves nothing
//! half done and the next run carries on.

use chrono::{DateTime, Duration, Utc};
use cloudkeep_domain::assessment::{DEFAULT_RETENTION_DAYS, MIN_RETENTION_DAYS};
use serde_json::json;
use sqlx::Row;
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::jobs::RETENTION_JOB;
use crate::sql::Sql;
use crate::{OrgScope, Result, Store, StoreError, time, within};

/// The longest window an organisation can set (ten years).
pub const MAX_RETENTION_DAYS: i64 = 3650;

/// An organisation's retention window.
#[derive(Debug, Clone, PartialEq)]
pub struct RetentionSettings {
    pub days: i64,
    /// None while the default applies.
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<String>,
}

/// What one purge batch removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    pub evidence: u64,
    pub sync_runs: u64,
}

impl PurgeCounts {
    pub fn is_empty(&self) -> bool {
        self.evidence == 0 && self.sync_runs == 0
    }

    pub fn add(&mut self, other: PurgeCounts) {
        self.evidence += other.evidence;
        self.sync_runs += other.sync_runs;
    }
}

/// How often the retention job runs per organisation.
const RETENTION_EVERY: Duration = Duration::hours(24);

impl Store {
    pub async fn retention_settings(&self, scope: &OrgScope) -> Result<RetentionSettings> {
        let row = sqlx::query(
            "SELECT retention_days, updated_at, updated_by FROM retention_settings WHERE org_id = $1",
        )
        .bind(scope.id())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => RetentionSettings {
                days: r.try_get("retention_days")?,
                updated_at: Some(time(r.try_get("updated_at")?)),
                updated_by: Some(r.try_get("updated_by")?),
            },
            None => RetentionSettings {
                days: DEFAULT_RETENTION_DAYS,
                updated_at: None,
                updated_by: None,
            },
        })
    }

    /// Sets the window; audited (`retention.changed`) with the old and new.
    pub async fn set_retention_days(
        &self,
        scope: &OrgScope,
        days: i64,
        actor: &str,
    ) -> Result<RetentionSettings> {
        if !(MIN_RETENTION_DAYS..=MAX_RETENTION_DAYS).contains(&days) {
            return Err(StoreError::Invalid(format!(
                "the retention window is {MIN_RETENTION_DAYS} to {MAX_RETENTION_DAYS} days, not {days}"
            )));
        }
        let before = self.retention_settings(scope).await?;
        let now = self.now_ms();
        let entry = AuditEntry::new(
            actor,
            "retention.changed",
            "retention",
            json!({ "from_days": before.days, "to_days": days }),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            sqlx::query(
                "INSERT INTO retention_settings (org_id, retention_days, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (org_id) DO UPDATE SET retention_days = $2, updated_at = $3, updated_by = $4",
            )
            .bind(scope.id())
            .bind(days)
            .bind(now)
            .bind(actor)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        self.retention_settings(scope).await
    }

    /// Once a day per organisation, queues its retention job when
    /// something is past the window and no such job is queued or running.
    /// Its subject (the jobs' `connection_id` column) is the organisation.
    /// Answers whether it queued.
    pub async fn enqueue_retention(&self, scope: &OrgScope, now: DateTime<Utc>) -> Result<bool> {
        let now_ms = now.timestamp_millis();
        let checked = sqlx::query("SELECT checked_at FROM retention_checks WHERE org_id = $1")
            .bind(scope.id())
            .fetch_optional(&self.pool)
            .await?;
        if let Some(r) = checked {
            if r.try_get::<i64, _>("checked_at")? > (now - RETENTION_EVERY).timestamp_millis() {
                return Ok(false);
            }
        }
        self.execute_write(
            sqlx::query(
                "INSERT INTO retention_checks (org_id, checked_at) VALUES ($1, $2) \
                 ON CONFLICT (org_id) DO UPDATE SET checked_at = $2",
            )
            .bind(scope.id())
            .bind(now_ms),
        )
        .await?;
        let days = self.retention_settings(scope).await?.days;
        let cutoff = (now - Duration::days(days)).timestamp_millis();
        // A row past the window was first observed before it too: the
        // observed_at index narrows the search.
        let past = sqlx::query(
            "SELECT 1 AS past WHERE EXISTS (SELECT 1 FROM evidence e WHERE e.org_id = $1 AND e.observed_at < $2 \
               AND COALESCE(e.valid_to, e.last_observed_at) < $2) \
             OR EXISTS (SELECT 1 FROM sync_runs r WHERE r.org_id = $1 AND r.finished_at < $2)",
        )
        .bind(scope.id())
        .bind(cutoff)
        .fetch_optional(&self.pool)
        .await?;
        if past.is_none() {
            return Ok(false);
        }
        let inserted = self
            .execute_write(
                sqlx::query(
                    "INSERT INTO jobs (org_id, job_id, kind, connection_id, status, run_at, created_at) \
                     SELECT $1, $2, $3, $1, 'queued', $4, $4 WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.org_id = $1 AND j.kind = $3 \
                       AND j.status IN ('queued', 'running'))",
                )
                .bind(scope.id())
                .bind(Uuid::new_v4().to_string())
                .bind(RETENTION_JOB)
                .bind(now_ms),
            )
            .await;
        match inserted {
            Ok(done) => Ok(done.rows_affected() > 0),
            // Another process queued it first.
            Err(StoreError::Database(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// One purge batch of at most `batch` evidence rows and `batch` sync
    /// runs past the window at the store's clock, in one transaction
    /// audited (`retention.purged`) with its counts; nothing (and no
    /// event) when nothing is past it. Evidence attached to an approved
    /// assessment stays; attachments to drafts go with their rows.
    pub async fn purge_retention_batch(
        &self,
        scope: &OrgScope,
        batch: usize,
        actor: &str,
    ) -> Result<PurgeCounts> {
        let days = self.retention_settings(scope).await?.days;
        let cutoff = self.now() - Duration::days(days);
        let cutoff_ms = cutoff.timestamp_millis();
        let limit = batch.clamp(1, 10_000) as i64;
        let mut tx = self.begin_audited(scope).await?;
        let counts = within(async {
            let ids: Vec<String> = sqlx::query(
                "SELECT e.evidence_id FROM evidence e WHERE e.org_id = $1 AND COALESCE(e.valid_to, e.last_observed_at) < $2 \
                 AND NOT EXISTS (SELECT 1 FROM assessment_evidence ae JOIN assessments a ON a.org_id = ae.org_id AND a.assessment_id = ae.assessment_id \
                   WHERE ae.org_id = e.org_id AND ae.evidence_id = e.evidence_id AND a.state = 'approved') \
                 ORDER BY e.evidence_id LIMIT $3",
            )
            .bind(scope.id())
            .bind(cutoff_ms)
            .bind(limit)
            .fetch_all(&mut **tx)
            .await?
            .iter()
            .map(|r| r.try_get("evidence_id"))
            .collect::<std::result::Result<_, _>>()?;
            let mut counts = PurgeCounts::default();
            if !ids.is_empty() {
                for table in ["assessment_evidence", "evidence"] {
                    let mut sql = Sql::new(&format!("DELETE FROM {table} WHERE org_id = "));
                    let p = sql.arg(scope.id());
                    sql.push(&p);
                    sql.push(" AND evidence_id IN (");
                    for (i, id) in ids.iter().enumerate() {
                        let p = sql.arg(id.clone());
                        sql.push(&if i == 0 { p } else { format!(", {p}") });
                    }
                    sql.push(")");
                    let n = sql.execute(&mut tx).await?;
                    if table == "evidence" {
                        counts.evidence = n;
                    }
                }
                crate::evidence::bump_evidence_rev(&mut tx, scope).await?;
            }
            let runs = sqlx::query(
                "DELETE FROM sync_runs WHERE org_id = $1 AND run_id IN (SELECT r.run_id FROM sync_runs r WHERE r.org_id = $1 \
                 AND r.finished_at IS NOT NULL AND r.finished_at < $2 ORDER BY r.run_id LIMIT $3)",
            )
            .bind(scope.id())
            .bind(cutoff_ms)
            .bind(limit)
            .execute(&mut **tx)
            .await?;
            counts.sync_runs = runs.rows_affected();
            if !counts.is_empty() {
                let entry = AuditEntry::new(
                    actor,
                    "retention.purged",
                    "retention",
                    json!({
                        "evidence": counts.evidence, "sync_runs": counts.sync_runs,
                        "retention_days": days, "cutoff": cutoff.to_rfc3339(),
                    }),
                );
                self.record(&mut tx, scope, &entry).await?;
            }
            Ok(counts)
        })
        .await?;
        tx.commit_recorded().await?;
        Ok(counts)
    }
}
