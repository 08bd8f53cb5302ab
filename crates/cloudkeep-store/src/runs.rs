//! Sync runs: one row per run, with its typed report (`RunReport`).

use chrono::{DateTime, Utc};
use cloudkeep_domain::report::{Counts, RunError, RunReport, StepReport, SubscriptionReport};
use cloudkeep_domain::{ConnectionId, ErrorKind, RunStatus, SyncTrigger};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::page::{Cursor, Page, PageRequest};
use crate::{OrgScope, Result, Store, StoreError, parse, time, within};

#[derive(Debug, Clone, PartialEq)]
pub struct SyncRun {
    pub id: Uuid,
    pub connection_id: ConnectionId,
    pub trigger: SyncTrigger,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub report: RunReport,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub connection: Option<ConnectionId>,
    pub status: Option<RunStatus>,
}

const RUN_COLUMNS: &str =
    "run_id, connection_id, trigger_kind, status, started_at, finished_at, counts, errors, report";

fn run(row: &AnyRow) -> Result<SyncRun> {
    let report = match row.try_get::<Option<String>, _>("report")? {
        Some(raw) => serde_json::from_str(&raw)
            .map_err(|e| StoreError::Corrupt(format!("sync run report: {e}")))?,
        None => legacy_report(
            &row.try_get::<String, _>("counts")?,
            &row.try_get::<String, _>("errors")?,
        ),
    };
    Ok(SyncRun {
        id: parse(row, "run_id")?,
        connection_id: parse(row, "connection_id")?,
        trigger: parse(row, "trigger_kind")?,
        status: parse(row, "status")?,
        started_at: time(row.try_get("started_at")?),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(time),
        report,
    })
}

/// The report of a run recorded before reports were typed: counts were
/// `{"subscriptions": {sub: {step: {figure: n} | {"skipped": why} |
/// {"state": s}}}}` and errors a list of `{kind, subscription, collector,
/// message}`. Read as well as it can be; nothing in it is dropped silently.
fn legacy_report(counts: &str, errors: &str) -> RunReport {
    let counts: Value = serde_json::from_str(counts).unwrap_or(Value::Null);
    let errors: Value = serde_json::from_str(errors).unwrap_or(Value::Null);
    let subscriptions = counts["subscriptions"]
        .as_object()
        .map(|subs| {
            subs.iter()
                .map(|(sub, steps)| SubscriptionReport {
                    subscription_id: sub.clone(),
                    steps: steps
                        .as_object()
                        .map(|steps| {
                            steps
                                .iter()
                                .map(|(name, step)| legacy_step(name, step))
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    let errors = errors
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| RunError {
                    kind: e["kind"]
                        .as_str()
                        .and_then(|k| k.parse().ok())
                        .unwrap_or(ErrorKind::Error),
                    subscription: e["subscription"].as_str().map(str::to_string),
                    collector: e["collector"].as_str().map(str::to_string),
                    message: e["message"].as_str().unwrap_or_default().to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    RunReport {
        subscriptions,
        errors,
    }
}

fn legacy_step(name: &str, step: &Value) -> StepReport {
    if let Some(why) = step["skipped"].as_str() {
        return StepReport::skipped(name, why);
    }
    if let Some(state) = step["state"].as_str().and_then(|s| s.parse().ok()) {
        return StepReport::new(name, state);
    }
    let mut counts = Counts::new();
    if let Some(figures) = step.as_object() {
        for (k, v) in figures {
            if let Some(n) = v.as_u64() {
                counts.set(k, n);
            }
        }
    }
    StepReport::succeeded(name, counts)
}

fn report_json(report: &RunReport) -> String {
    serde_json::to_string(report).unwrap_or_else(|_| "{}".into())
}

impl Store {
    /// Records a run as begun, unless another run of the connection is
    /// still running: a connection syncs one run at a time (`Conflict`,
    /// naming that run). A run still `running` whose last heartbeat
    /// (`sync_run_alive`) is before `stale_before` lost its process; it is
    /// marked `interrupted` first.
    pub async fn begin_sync_run(
        &self,
        scope: &OrgScope,
        connection: ConnectionId,
        trigger: SyncTrigger,
        stale_before: DateTime<Utc>,
    ) -> Result<SyncRun> {
        let id = Uuid::new_v4();
        let now = self.now_ms();
        let mut tx = self.begin_write().await?;
        // Locks the connection's row (PostgreSQL; SQLite's write lock is
        // already held), so two starts cannot both find no run and insert.
        let found = sqlx::query(
            "UPDATE connections SET status = status WHERE org_id = $1 AND connection_id = $2",
        )
        .bind(scope.id())
        .bind(connection.to_string())
        .execute(&mut *tx)
        .await?;
        if found.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "connection" });
        }
        sqlx::query(
            "UPDATE sync_runs SET status = 'interrupted', finished_at = $4 \
             WHERE org_id = $1 AND connection_id = $2 AND status = 'running' AND COALESCE(heartbeat_at, started_at) < $3",
        )
        .bind(scope.id())
        .bind(connection.to_string())
        .bind(stale_before.timestamp_millis())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let running: Option<String> = sqlx::query_scalar(
            "SELECT run_id FROM sync_runs WHERE org_id = $1 AND connection_id = $2 AND status = 'running' LIMIT 1",
        )
        .bind(scope.id())
        .bind(connection.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(run) = running {
            return Err(StoreError::Conflict {
                what: "running sync of this connection",
                value: run,
            });
        }
        let report = RunReport::default();
        sqlx::query(
            "INSERT INTO sync_runs (org_id, run_id, connection_id, trigger_kind, status, started_at, heartbeat_at, counts, errors, report) \
             VALUES ($1, $2, $3, $4, 'running', $5, $5, '{}', '[]', $6)",
        )
        .bind(scope.id())
        .bind(id.to_string())
        .bind(connection.to_string())
        .bind(trigger.as_str())
        .bind(now)
        .bind(report_json(&report))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SyncRun {
            id,
            connection_id: connection,
            trigger,
            status: RunStatus::Running,
            started_at: time(now),
            finished_at: None,
            report,
        })
    }

    /// Says a running run's process is alive (see `begin_sync_run`).
    pub async fn sync_run_alive(&self, scope: &OrgScope, run: &SyncRun) -> Result<()> {
        self.execute_relaxed(
            sqlx::query(
                "UPDATE sync_runs SET heartbeat_at = $3 WHERE org_id = $1 AND run_id = $2 AND status = 'running'",
            )
            .bind(scope.id())
            .bind(run.id.to_string())
            .bind(self.now_ms()),
        )
        .await
    }

    /// Records a running run's report so far, with the steps still to come
    /// `pending` or `running`. A run already finished is left as it is.
    pub async fn record_sync_progress(
        &self,
        scope: &OrgScope,
        run: &SyncRun,
        report: &RunReport,
    ) -> Result<()> {
        self.execute_relaxed(
            sqlx::query(
                "UPDATE sync_runs SET report = $3 WHERE org_id = $1 AND run_id = $2 AND status = 'running'",
            )
            .bind(scope.id())
            .bind(run.id.to_string())
            .bind(report_json(report)),
        )
        .await
    }

    /// Closes a run, schedules the next, and audits it (`sync.completed`
    /// or `sync.failed`) in one transaction.
    pub async fn finish_sync_run(
        &self,
        scope: &OrgScope,
        run: &SyncRun,
        status: RunStatus,
        report: &RunReport,
        actor: &str,
    ) -> Result<SyncRun> {
        let now = self.now_ms();
        let action = if status == RunStatus::Failed {
            "sync.failed"
        } else {
            "sync.completed"
        };
        let entry = AuditEntry::new(
            actor,
            action,
            format!("connection:{}", run.connection_id),
            json!({"run": run.id, "status": status, "report": report}),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            // Only a run still running: one marked interrupted (its job taken
            // over) keeps that mark.
            sqlx::query("UPDATE sync_runs SET status = $3, finished_at = $4, report = $5 WHERE org_id = $1 AND run_id = $2 AND status = 'running'")
                .bind(scope.id())
                .bind(run.id.to_string())
                .bind(status.as_str())
                .bind(now)
                .bind(report_json(report))
                .execute(&mut **tx)
                .await?;
            // The next run comes a cadence later, plus a jitter of up to a
            // twentieth of the cadence, fixed per connection, so connections made
            // together do not all sync at the same moment.
            let spread = i64::from(run.connection_id.as_uuid().as_bytes()[0]) * 1000 / 255;
            sqlx::query(
                "UPDATE connections SET last_sync_at = $3, next_sync_at = $3 + cadence_secs * 1000 + (cadence_secs * $4 / 20) \
                 WHERE org_id = $1 AND connection_id = $2",
            )
            .bind(scope.id())
            .bind(run.connection_id.to_string())
            .bind(now)
            .bind(spread)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        Ok(SyncRun {
            status,
            finished_at: Some(time(now)),
            report: report.clone(),
            ..run.clone()
        })
    }

    /// Marks a connection's runs of `trigger` still `running` as
    /// interrupted. The scheduler calls it when it takes over a job whose
    /// holder died: one job per connection is active at a time, so every
    /// scheduled run of that connection still `running` was the dead worker's.
    pub async fn interrupt_runs(
        &self,
        scope: &OrgScope,
        connection: ConnectionId,
        trigger: SyncTrigger,
    ) -> Result<u64> {
        let done = self
            .execute_write(
                sqlx::query(
                    "UPDATE sync_runs SET status = 'interrupted', finished_at = $4 WHERE org_id = $1 AND connection_id = $2 AND status = 'running' AND trigger_kind = $3",
                )
                .bind(scope.id())
                .bind(connection.to_string())
                .bind(trigger.as_str())
                .bind(self.now_ms()),
            )
            .await?;
        Ok(done.rows_affected())
    }

    /// Marks every run of the organisation still `running` whose last
    /// heartbeat is before `stale_before` as interrupted: its process died
    /// (the scheduler's sweep, so a killed run does not read `running`
    /// until its connection's next start). Answers how many.
    pub async fn interrupt_stale_runs(
        &self,
        scope: &OrgScope,
        stale_before: DateTime<Utc>,
    ) -> Result<u64> {
        let done = self
            .execute_write(
                sqlx::query(
                    "UPDATE sync_runs SET status = 'interrupted', finished_at = $3 \
                     WHERE org_id = $1 AND status = 'running' AND COALESCE(heartbeat_at, started_at) < $2",
                )
                .bind(scope.id())
                .bind(stale_before.timestamp_millis())
                .bind(self.now_ms()),
            )
            .await?;
        Ok(done.rows_affected())
    }

    /// Runs, newest first, filtered and paged in SQL.
    pub async fn sync_runs(
        &self,
        scope: &OrgScope,
        filter: &RunFilter,
        page: &PageRequest,
    ) -> Result<Page<SyncRun>> {
        let (before_ms, after_id) = page.time_and_id(i64::MAX)?;
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM sync_runs WHERE org_id = $1 AND ($2 = '' OR connection_id = $2) AND ($3 = '' OR status = $3) \
             AND (started_at < $4 OR (started_at = $4 AND ($5 = '' OR run_id > $5))) \
             ORDER BY started_at DESC, run_id LIMIT $6"
        ))
        .bind(scope.id())
        .bind(filter.connection.map(|c| c.to_string()).unwrap_or_default())
        .bind(filter.status.map(|s| s.as_str()).unwrap_or(""))
        .bind(before_ms)
        .bind(after_id)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(run).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |r| {
            Cursor::of(&[
                &r.started_at.timestamp_millis().to_string(),
                &r.id.to_string(),
            ])
        }))
    }

    pub async fn sync_run(&self, scope: &OrgScope, id: Uuid) -> Result<SyncRun> {
        let row = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM sync_runs WHERE org_id = $1 AND run_id = $2"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "sync run" })?;
        run(&row)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudkeep_domain::StepState;

    #[test]
    fn reports_recorded_before_types_are_read() {
        let counts = r#"{"subscriptions":{"s1":{"inventory":{"seen":3,"added":1},"write_back":{"skipped":"sync level no_tags"}},
                         "s2":{"inventory":{"state":"running"}}}}"#;
        let errors = r#"[{"subscription":"s2","collector":"inventory","kind":"permission_missing","message":"403"}]"#;
        let r = legacy_report(counts, errors);
        assert_eq!(r.total("inventory", "seen"), 3);
        assert_eq!(
            r.step("s1", "write_back").map(|s| s.state),
            Some(StepState::Skipped)
        );
        assert_eq!(
            r.step("s2", "inventory").map(|s| s.state),
            Some(StepState::Running)
        );
        assert_eq!(r.errors[0].kind, ErrorKind::PermissionMissing);
    }
}
