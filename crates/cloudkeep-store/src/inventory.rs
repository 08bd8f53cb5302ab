//! Resources as observed in Azure, their tag history, and sync runs.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use cloudkeep_domain::{ConnectionId, SubscriptionId};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::audit::{AuditEntry, append};
use crate::connections::SubscriptionRecord;
use crate::{OrgScope, Result, Store, StoreError, now_ms, parse, time};

pub type Tags = BTreeMap<String, String>;

/// A resource as a sync saw it.
#[derive(Debug, Clone)]
pub struct ObservedResource {
    pub arm_id: String,
    pub name: String,
    pub resource_type: String,
    pub location: String,
    pub resource_group: String,
    pub tags: Tags,
    pub created: Option<DateTime<Utc>>,
    pub changed: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceRecord {
    pub id: Uuid,
    pub connection_id: ConnectionId,
    pub subscription_id: SubscriptionId,
    pub arm_id: String,
    pub name: String,
    pub resource_type: String,
    pub location: String,
    pub resource_group: String,
    /// `None` when the subscription's sync level does not read tags.
    pub tags: Option<Tags>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TagChange {
    pub observed_at: DateTime<Utc>,
    pub old: Tags,
    pub new: Tags,
}

/// What one inventory pass changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InventoryCounts {
    pub seen: u64,
    pub added: u64,
    pub deleted: u64,
    pub tag_changes: u64,
}

#[derive(Debug, Clone, Default)]
pub struct ResourceFilter {
    pub subscription: Option<SubscriptionId>,
    pub resource_group: Option<String>,
    pub resource_type: Option<String>,
    pub location: Option<String>,
    pub name_contains: Option<String>,
    /// Has a tag with this name (any value).
    pub has_tag: Option<String>,
    /// Has this tag with this value.
    pub tag: Option<(String, String)>,
    /// Lacks a tag with this name.
    pub missing_tag: Option<String>,
    pub include_deleted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyncRun {
    pub id: Uuid,
    pub connection_id: ConnectionId,
    pub trigger: String,
    /// running, succeeded, partial or failed.
    pub status: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub counts: Value,
    pub errors: Value,
}

/// Rows per multi-row insert. Not more: SQLite looks up each `$n`
/// parameter by scanning the statement's parameter names, so binding costs
/// grow with the square of the parameters per statement (500 rows spent
/// seconds on it for 100,000 resources; 50 spend a few hundredths).
const INSERT_BATCH: usize = 50;

/// A stored resource, as `record_inventory` compares it with Azure's.
struct Known {
    id: String,
    arm_id: String,
    name: String,
    resource_type: String,
    location: String,
    resource_group: String,
    tags: Option<String>,
    deleted: bool,
    azure_changed: Option<i64>,
}

impl Known {
    fn from_row(r: &AnyRow) -> Result<Known> {
        Ok(Known {
            id: r.try_get("resource_id")?,
            arm_id: r.try_get("arm_id")?,
            name: r.try_get("name")?,
            resource_type: r.try_get("resource_type")?,
            location: r.try_get("location")?,
            resource_group: r.try_get("resource_group")?,
            tags: r.try_get("tags")?,
            deleted: r.try_get::<Option<i64>, _>("deleted_at")?.is_some(),
            azure_changed: r.try_get("azure_changed")?,
        })
    }
}

fn tags_json(t: &Tags) -> String {
    serde_json::to_string(t).unwrap_or_else(|_| "{}".into())
}

fn parse_tags(raw: &str) -> Result<Tags> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("tags: {e}")))
}

fn has_key(tags: &Tags, name: &str) -> bool {
    tags.keys().any(|k| k.eq_ignore_ascii_case(name))
}

impl ResourceFilter {
    fn matches(&self, r: &ResourceRecord) -> bool {
        let eq = |want: &Option<String>, have: &str| {
            want.as_ref().is_none_or(|w| w.eq_ignore_ascii_case(have))
        };
        let tags = r.tags.clone().unwrap_or_default();
        self.subscription.is_none_or(|s| s == r.subscription_id)
            && eq(&self.resource_group, &r.resource_group)
            && eq(&self.resource_type, &r.resource_type)
            && eq(&self.location, &r.location)
            && self
                .name_contains
                .as_ref()
                .is_none_or(|n| r.name.to_lowercase().contains(&n.to_lowercase()))
            && self.has_tag.as_ref().is_none_or(|k| has_key(&tags, k))
            && self.tag.as_ref().is_none_or(|(k, v)| {
                tags.iter()
                    .any(|(tk, tv)| tk.eq_ignore_ascii_case(k) && tv == v)
            })
            && self.missing_tag.as_ref().is_none_or(|k| !has_key(&tags, k))
            && (self.include_deleted || r.deleted_at.is_none())
    }
}

const RESOURCE_COLUMNS: &str = "resource_id, connection_id, subscription_id, arm_id, name, resource_type, location, resource_group, tags, first_seen, last_seen, deleted_at";

fn resource(row: &AnyRow) -> Result<ResourceRecord> {
    let tags: Option<String> = row.try_get("tags")?;
    Ok(ResourceRecord {
        id: parse(row, "resource_id")?,
        connection_id: parse(row, "connection_id")?,
        subscription_id: parse(row, "subscription_id")?,
        arm_id: row.try_get("arm_id")?,
        name: row.try_get("name")?,
        resource_type: row.try_get("resource_type")?,
        location: row.try_get("location")?,
        resource_group: row.try_get("resource_group")?,
        tags: tags.as_deref().map(parse_tags).transpose()?,
        first_seen: time(row.try_get("first_seen")?),
        last_seen: time(row.try_get("last_seen")?),
        deleted_at: row.try_get::<Option<i64>, _>("deleted_at")?.map(time),
    })
}

fn run(row: &AnyRow) -> Result<SyncRun> {
    let counts: String = row.try_get("counts")?;
    let errors: String = row.try_get("errors")?;
    Ok(SyncRun {
        id: parse(row, "run_id")?,
        connection_id: parse(row, "connection_id")?,
        trigger: row.try_get("trigger_kind")?,
        status: row.try_get("status")?,
        started_at: time(row.try_get("started_at")?),
        finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(time),
        counts: serde_json::from_str(&counts).unwrap_or(Value::Null),
        errors: serde_json::from_str(&errors).unwrap_or(Value::Null),
    })
}

impl Store {
    /// Records one subscription's inventory from a sync: new resources,
    /// changed tags (with history), and resources gone from Azure. With
    /// `tags_read` false, tags are neither stored nor compared.
    ///
    /// One transaction; new resources go in multi-row inserts, only rows
    /// that changed are updated one by one, and every row seen again gets
    /// its `last_seen` in one statement, so an unchanged estate costs a few
    /// statements per subscription rather than one per resource.
    pub async fn record_inventory(
        &self,
        scope: &OrgScope,
        subscription: &SubscriptionRecord,
        run_id: Uuid,
        observed: &[ObservedResource],
        tags_read: bool,
    ) -> Result<InventoryCounts> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT resource_id, azure_id, arm_id, name, resource_type, location, resource_group, tags, deleted_at, azure_changed \
             FROM resources WHERE org_id = $1 AND subscription_id = $2",
        )
        .bind(scope.id())
        .bind(subscription.id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let mut known: HashMap<String, Known> = HashMap::with_capacity(rows.len());
        for r in &rows {
            known.insert(r.try_get("azure_id")?, Known::from_row(r)?);
        }
        drop(rows);
        let mut counts = InventoryCounts::default();
        let mut seen = std::collections::HashSet::new();
        let mut new = Vec::new();
        for o in observed {
            let key = o.arm_id.to_ascii_lowercase();
            if !seen.insert(key.clone()) {
                continue;
            }
            counts.seen += 1;
            let tags = tags_read.then(|| tags_json(&o.tags));
            let Some(k) = known.get(&key) else {
                new.push((key, o, tags));
                continue;
            };
            let tags_changed = match (&tags, &k.tags) {
                (Some(new), Some(old)) => new != old && parse_tags(old)? != o.tags,
                (None, None) => false,
                _ => true,
            };
            let changed_at = o.changed.map(|t| t.timestamp_millis());
            let unchanged = !tags_changed
                && !k.deleted
                && k.arm_id == o.arm_id
                && k.name == o.name
                && k.resource_type == o.resource_type
                && k.location == o.location
                && k.resource_group == o.resource_group
                && k.azure_changed == changed_at;
            if unchanged {
                continue; // its last_seen is set with the others' below
            }
            if let (true, Some(new), Some(old)) = (tags_changed, &tags, &k.tags) {
                counts.tag_changes += 1;
                let next: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM tag_history WHERE org_id = $1 AND resource_id = $2")
                    .bind(scope.id())
                    .bind(&k.id)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get("n")?;
                sqlx::query(
                    "INSERT INTO tag_history (org_id, resource_id, seq, observed_at, old_tags, new_tags, run_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(scope.id())
                .bind(&k.id)
                .bind(next)
                .bind(now)
                .bind(old)
                .bind(new)
                .bind(run_id.to_string())
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE resources SET arm_id = $3, name = $4, resource_type = $5, location = $6, resource_group = $7, tags = $8, \
                 last_seen = $9, deleted_at = NULL, azure_changed = $10 WHERE org_id = $1 AND resource_id = $2",
            )
            .bind(scope.id())
            .bind(&k.id)
            .bind(&o.arm_id)
            .bind(&o.name)
            .bind(&o.resource_type)
            .bind(&o.location)
            .bind(&o.resource_group)
            .bind(tags)
            .bind(now)
            .bind(changed_at)
            .execute(&mut *tx)
            .await?;
        }
        counts.added = new.len() as u64;
        for chunk in new.chunks(INSERT_BATCH) {
            let mut sql = String::from(
                "INSERT INTO resources (org_id, connection_id, subscription_id, first_seen, last_seen, resource_id, azure_id, arm_id, name, \
                 resource_type, location, resource_group, tags, azure_created, azure_changed) VALUES ",
            );
            for i in 0..chunk.len() {
                let p = 5 + i * 10;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("($1, $2, $3, $4, $4, ${}", p));
                for n in p + 1..p + 10 {
                    sql.push_str(&format!(", ${n}"));
                }
                sql.push(')');
            }
            let mut insert = sqlx::query(&sql)
                .bind(scope.id())
                .bind(subscription.connection_id.to_string())
                .bind(subscription.id.to_string())
                .bind(now);
            for (key, o, tags) in chunk {
                insert = insert
                    .bind(Uuid::new_v4().to_string())
                    .bind(key)
                    .bind(&o.arm_id)
                    .bind(&o.name)
                    .bind(&o.resource_type)
                    .bind(&o.location)
                    .bind(&o.resource_group)
                    .bind(tags.clone())
                    .bind(o.created.map(|t| t.timestamp_millis()))
                    .bind(o.changed.map(|t| t.timestamp_millis()));
            }
            insert.execute(&mut *tx).await?;
        }
        for (key, k) in &known {
            if !k.deleted && !seen.contains(key) {
                counts.deleted += 1;
                sqlx::query(
                    "UPDATE resources SET deleted_at = $3 WHERE org_id = $1 AND resource_id = $2",
                )
                .bind(scope.id())
                .bind(&k.id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        // Every live row left was seen now: the ones gone were just marked
        // deleted, and deleted ones seen again were updated above.
        sqlx::query(
            "UPDATE resources SET last_seen = $3 WHERE org_id = $1 AND subscription_id = $2 AND deleted_at IS NULL AND last_seen <> $3",
        )
        .bind(scope.id())
        .bind(subscription.id.to_string())
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(counts)
    }

    /// Resources matching a filter, ordered by id; `after` pages.
    pub async fn resources(
        &self,
        scope: &OrgScope,
        filter: &ResourceFilter,
        after: Option<Uuid>,
        limit: usize,
    ) -> Result<Vec<ResourceRecord>> {
        let rows = sqlx::query(&format!("SELECT {RESOURCE_COLUMNS} FROM resources WHERE org_id = $1 AND resource_id > $2 ORDER BY resource_id"))
            .bind(scope.id())
            .bind(after.map(|a| a.to_string()).unwrap_or_default())
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for row in &rows {
            let r = resource(row)?;
            if filter.matches(&r) {
                out.push(r);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub async fn resource(
        &self,
        scope: &OrgScope,
        id: Uuid,
    ) -> Result<(ResourceRecord, Vec<TagChange>)> {
        let row = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources WHERE org_id = $1 AND resource_id = $2"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "resource" })?;
        let history = sqlx::query("SELECT observed_at, old_tags, new_tags FROM tag_history WHERE org_id = $1 AND resource_id = $2 ORDER BY seq")
            .bind(scope.id())
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|h| {
                Ok(TagChange {
                    observed_at: time(h.try_get("observed_at")?),
                    old: parse_tags(&h.try_get::<String, _>("old_tags")?)?,
                    new: parse_tags(&h.try_get::<String, _>("new_tags")?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((resource(&row)?, history))
    }

    /// Records a run as begun, unless another run of the connection is
    /// still running: a connection syncs one run at a time (`Conflict`,
    /// naming that run). A run still `running` whose last heartbeat
    /// (`sync_run_alive`) is before `stale_before` lost its process; it is
    /// marked `interrupted` first.
    pub async fn begin_sync_run(
        &self,
        scope: &OrgScope,
        connection: ConnectionId,
        trigger: &str,
        stale_before: DateTime<Utc>,
    ) -> Result<SyncRun> {
        let id = Uuid::new_v4();
        let now = now_ms();
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
        sqlx::query(
            "INSERT INTO sync_runs (org_id, run_id, connection_id, trigger_kind, status, started_at, heartbeat_at, counts, errors) VALUES ($1, $2, $3, $4, 'running', $5, $5, '{}', '[]')",
        )
        .bind(scope.id())
        .bind(id.to_string())
        .bind(connection.to_string())
        .bind(trigger)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SyncRun {
            id,
            connection_id: connection,
            trigger: trigger.into(),
            status: "running".into(),
            started_at: time(now),
            finished_at: None,
            counts: json!({}),
            errors: json!([]),
        })
    }

    /// Says a running run's process is alive (see `begin_sync_run`).
    pub async fn sync_run_alive(&self, scope: &OrgScope, run: &SyncRun) -> Result<()> {
        sqlx::query(
            "UPDATE sync_runs SET heartbeat_at = $3 WHERE org_id = $1 AND run_id = $2 AND status = 'running'",
        )
        .bind(scope.id())
        .bind(run.id.to_string())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a running run's progress: its counts so far, with the steps
    /// still to come marked `{"state": "pending"}` or `"running"`. A run
    /// already finished is left as it is.
    pub async fn record_sync_progress(
        &self,
        scope: &OrgScope,
        run: &SyncRun,
        counts: &Value,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE sync_runs SET counts = $3 WHERE org_id = $1 AND run_id = $2 AND status = 'running'",
        )
        .bind(scope.id())
        .bind(run.id.to_string())
        .bind(counts.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Closes a run, schedules the next, and audits it (`sync.completed`
    /// or `sync.failed`) in one transaction.
    pub async fn finish_sync_run(
        &self,
        scope: &OrgScope,
        run: &SyncRun,
        status: &str,
        counts: &Value,
        errors: &Value,
        actor: &str,
    ) -> Result<SyncRun> {
        let now = now_ms();
        let action = if status == "failed" {
            "sync.failed"
        } else {
            "sync.completed"
        };
        let mut tx = self.begin_write().await?;
        append(
            &mut tx,
            scope,
            &AuditEntry::new(
                actor,
                action,
                format!("connection:{}", run.connection_id),
                json!({"run": run.id, "status": status, "counts": counts, "errors": errors}),
            ),
        )
        .await?;
        // Only a run still running: one marked interrupted (its job taken
        // over) keeps that mark.
        sqlx::query("UPDATE sync_runs SET status = $3, finished_at = $4, counts = $5, errors = $6 WHERE org_id = $1 AND run_id = $2 AND status = 'running'")
            .bind(scope.id())
            .bind(run.id.to_string())
            .bind(status)
            .bind(now)
            .bind(counts.to_string())
            .bind(errors.to_string())
            .execute(&mut *tx)
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
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SyncRun {
            status: status.into(),
            finished_at: Some(time(now)),
            counts: counts.clone(),
            errors: errors.clone(),
            ..run.clone()
        })
    }

    /// Marks a connection's runs of trigger `trigger` still `running` as
    /// interrupted. The scheduler calls it when it takes over a job whose
    /// holder died: one job per connection is active at a time, so every
    /// scheduled run of that connection still `running` was the dead worker's.
    pub async fn interrupt_runs(
        &self,
        scope: &OrgScope,
        connection: ConnectionId,
        trigger: &str,
    ) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE sync_runs SET status = 'interrupted', finished_at = $4 WHERE org_id = $1 AND connection_id = $2 AND status = 'running' AND trigger_kind = $3",
        )
        .bind(scope.id())
        .bind(connection.to_string())
        .bind(trigger)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn sync_runs(
        &self,
        scope: &OrgScope,
        connection: Option<ConnectionId>,
        limit: i64,
    ) -> Result<Vec<SyncRun>> {
        let rows = sqlx::query(
            "SELECT run_id, connection_id, trigger_kind, status, started_at, finished_at, counts, errors FROM sync_runs \
             WHERE org_id = $1 AND ($2 = '' OR connection_id = $2) ORDER BY started_at DESC, run_id LIMIT $3",
        )
        .bind(scope.id())
        .bind(connection.map(|c| c.to_string()).unwrap_or_default())
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run).collect()
    }

    pub async fn sync_run(&self, scope: &OrgScope, id: Uuid) -> Result<SyncRun> {
        let row = sqlx::query("SELECT run_id, connection_id, trigger_kind, status, started_at, finished_at, counts, errors FROM sync_runs WHERE org_id = $1 AND run_id = $2")
            .bind(scope.id())
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound { what: "sync run" })?;
        run(&row)
    }
}
