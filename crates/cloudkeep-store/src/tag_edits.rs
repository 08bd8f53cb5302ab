//! Tag edits and their lifecycle.

use chrono::{DateTime, Utc};
use cloudkeep_domain::SubscriptionId;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::audit::{AuditEntry, append};
use crate::inventory::Tags;
use crate::{OrgScope, Result, Store, StoreError, now_ms, parse, time};

#[derive(Debug, Clone)]
pub struct NewTagEdit {
    pub resource_id: Uuid,
    pub subscription_id: SubscriptionId,
    pub set: Tags,
    pub remove: Vec<String>,
    /// The tags observed when the edit was made.
    pub base: Tags,
    pub state: String,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TagEdit {
    pub id: Uuid,
    pub resource_id: Uuid,
    pub subscription_id: SubscriptionId,
    pub author: String,
    pub set: Tags,
    pub remove: Vec<String>,
    pub base: Tags,
    pub state: String,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn json_field<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T> {
    let raw: String = row.try_get(column)?;
    serde_json::from_str(&raw).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn edit(row: &AnyRow) -> Result<TagEdit> {
    Ok(TagEdit {
        id: parse(row, "edit_id")?,
        resource_id: parse(row, "resource_id")?,
        subscription_id: parse(row, "subscription_id")?,
        author: row.try_get("author")?,
        set: json_field(row, "set_tags")?,
        remove: json_field(row, "remove_tags")?,
        base: json_field(row, "base_tags")?,
        state: row.try_get("state")?,
        reason: row.try_get("reason")?,
        created_at: time(row.try_get("created_at")?),
        updated_at: time(row.try_get("updated_at")?),
    })
}

const COLUMNS: &str = "edit_id, resource_id, subscription_id, author, set_tags, remove_tags, base_tags, state, reason, created_at, updated_at";

impl Store {
    /// Records edits (one request's worth) with one audit event.
    pub async fn create_tag_edits(
        &self,
        scope: &OrgScope,
        edits: Vec<NewTagEdit>,
        actor: &str,
    ) -> Result<Vec<TagEdit>> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let summary: Vec<Value> = edits.iter().map(|e| json!({"resource": e.resource_id, "state": e.state, "set": e.set, "remove": e.remove})).collect();
        append(
            &mut tx,
            scope,
            &AuditEntry::new(
                actor,
                "tag_edit.created",
                "tag_edits",
                json!({ "edits": summary }),
            ),
        )
        .await?;
        let mut out = Vec::new();
        for e in edits {
            let id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO tag_edits (org_id, edit_id, resource_id, subscription_id, author, set_tags, remove_tags, base_tags, state, reason, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(e.resource_id.to_string())
            .bind(e.subscription_id.to_string())
            .bind(actor)
            .bind(serde_json::to_string(&e.set).unwrap_or_default())
            .bind(serde_json::to_string(&e.remove).unwrap_or_default())
            .bind(serde_json::to_string(&e.base).unwrap_or_default())
            .bind(&e.state)
            .bind(&e.reason)
            .bind(now)
                .execute(&mut *tx)
                .await?;
            out.push(TagEdit {
                id,
                resource_id: e.resource_id,
                subscription_id: e.subscription_id,
                author: actor.to_string(),
                set: e.set,
                remove: e.remove,
                base: e.base,
                state: e.state,
                reason: e.reason,
                created_at: time(now),
                updated_at: time(now),
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Edits, newest first, optionally in one state or for one resource.
    pub async fn tag_edits(
        &self,
        scope: &OrgScope,
        state: Option<&str>,
        resource: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<TagEdit>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tag_edits WHERE org_id = $1 AND ($2 = '' OR state = $2) AND ($3 = '' OR resource_id = $3) ORDER BY created_at DESC, edit_id LIMIT $4"
        ))
        .bind(scope.id())
        .bind(state.unwrap_or(""))
        .bind(resource.map(|r| r.to_string()).unwrap_or_default())
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(edit).collect()
    }

    /// Pending edits of one subscription, oldest first (the write-back order).
    pub async fn pending_tag_edits(
        &self,
        scope: &OrgScope,
        subscription: SubscriptionId,
    ) -> Result<Vec<TagEdit>> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM tag_edits WHERE org_id = $1 AND subscription_id = $2 AND state = 'pending' ORDER BY created_at, edit_id"))
            .bind(scope.id())
            .bind(subscription.to_string())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(edit).collect()
    }

    /// Moves a pending edit to its outcome, with an audit event. Only a
    /// pending edit moves, so an edit is applied at most once.
    pub async fn settle_tag_edit(
        &self,
        scope: &OrgScope,
        id: Uuid,
        state: &str,
        reason: Option<&str>,
        details: Value,
        actor: &str,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        append(
            &mut tx,
            scope,
            &AuditEntry::new(
                actor,
                format!("tag_edit.{state}"),
                format!("tag_edit:{id}"),
                json!({"reason": reason, "details": details}),
            ),
        )
        .await?;
        let done = sqlx::query("UPDATE tag_edits SET state = $3, reason = $4, updated_at = $5 WHERE org_id = $1 AND edit_id = $2 AND state = 'pending'")
            .bind(scope.id())
            .bind(id.to_string())
            .bind(state)
            .bind(reason)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Resolves a conflict: `keep_mine` re-queues the user's change based on
    /// the tags observed now (so it is written at the next sync);
    /// `take_theirs` keeps Azure's value. The conflicted edit is closed
    /// either way. Answers the new pending edit, if any.
    pub async fn resolve_tag_conflict(
        &self,
        scope: &OrgScope,
        id: Uuid,
        keep_mine: bool,
        actor: &str,
    ) -> Result<Option<TagEdit>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tag_edits WHERE org_id = $1 AND edit_id = $2"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "tag edit" })?;
        let conflicted = edit(&row)?;
        if conflicted.state != "conflict" {
            return Err(StoreError::Invalid(format!(
                "the edit is {}, not in conflict",
                conflicted.state
            )));
        }
        let observed: Option<String> =
            sqlx::query("SELECT tags FROM resources WHERE org_id = $1 AND resource_id = $2")
                .bind(scope.id())
                .bind(conflicted.resource_id.to_string())
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get("tags"))
                .transpose()?
                .flatten();
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let resolution = if keep_mine {
            "keep_mine"
        } else {
            "take_theirs"
        };
        append(
            &mut tx,
            scope,
            &AuditEntry::new(
                actor,
                "tag_edit.resolved",
                format!("tag_edit:{id}"),
                json!({"resolution": resolution}),
            ),
        )
        .await?;
        let closed = sqlx::query("UPDATE tag_edits SET state = $3, updated_at = $4 WHERE org_id = $1 AND edit_id = $2 AND state = 'conflict'")
            .bind(scope.id())
            .bind(id.to_string())
            .bind(if keep_mine { "superseded" } else { "dismissed" })
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if closed.rows_affected() == 0 {
            return Err(StoreError::Invalid(
                "the edit was resolved meanwhile".into(),
            ));
        }
        let mut created = None;
        if keep_mine {
            let new_id = Uuid::new_v4();
            let base = observed.unwrap_or_else(|| "{}".into());
            sqlx::query(
                "INSERT INTO tag_edits (org_id, edit_id, resource_id, subscription_id, author, set_tags, remove_tags, base_tags, state, reason, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $10)",
            )
            .bind(scope.id())
            .bind(new_id.to_string())
            .bind(conflicted.resource_id.to_string())
            .bind(conflicted.subscription_id.to_string())
            .bind(actor)
            .bind(serde_json::to_string(&conflicted.set).unwrap_or_default())
            .bind(serde_json::to_string(&conflicted.remove).unwrap_or_default())
            .bind(&base)
            .bind(format!("keeps the change of edit {id} over Azure's value"))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            created = Some(TagEdit {
                id: new_id,
                author: actor.to_string(),
                base: serde_json::from_str(&base).unwrap_or_default(),
                state: "pending".into(),
                reason: Some(format!("keeps the change of edit {id} over Azure's value")),
                created_at: time(now),
                updated_at: time(now),
                ..conflicted
            });
        }
        tx.commit().await?;
        Ok(created)
    }

    /// Records tags just written to Azure as observed, with history.
    pub async fn observe_tags(&self, scope: &OrgScope, resource: Uuid, tags: &Tags) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT tags FROM resources WHERE org_id = $1 AND resource_id = $2")
            .bind(scope.id())
            .bind(resource.to_string())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound { what: "resource" })?;
        let old: Option<String> = row.try_get("tags")?;
        let new = serde_json::to_string(tags).unwrap_or_default();
        if let Some(old) =
            old.filter(|o| serde_json::from_str::<Tags>(o).ok().as_ref() != Some(tags))
        {
            let next: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM tag_history WHERE org_id = $1 AND resource_id = $2")
                .bind(scope.id())
                .bind(resource.to_string())
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            sqlx::query("INSERT INTO tag_history (org_id, resource_id, seq, observed_at, old_tags, new_tags, run_id) VALUES ($1, $2, $3, $4, $5, $6, 'write-back')")
                .bind(scope.id())
                .bind(resource.to_string())
                .bind(next)
                .bind(now)
                .bind(old)
                .bind(&new)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("UPDATE resources SET tags = $3 WHERE org_id = $1 AND resource_id = $2")
            .bind(scope.id())
            .bind(resource.to_string())
            .bind(&new)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
