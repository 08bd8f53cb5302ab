//! Tag edits and their lifecycle.

use chrono::{DateTime, Utc};
use cloudkeep_domain::{Resolution, SubscriptionId, TagEditState};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::inventory::{Tags, tags_json};
use crate::page::{Cursor, Page, PageRequest};
use crate::sql::{Arg, bulk_insert};
use crate::{OrgScope, Result, Store, StoreError, parse, time, within};

#[derive(Debug, Clone)]
pub struct NewTagEdit {
    pub resource_id: Uuid,
    pub subscription_id: SubscriptionId,
    pub set: Tags,
    pub remove: Vec<String>,
    /// The tags observed when the edit was made.
    pub base: Tags,
    pub state: TagEditState,
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
    pub state: TagEditState,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which edits to list.
#[derive(Debug, Clone, Default)]
pub struct TagEditFilter {
    pub state: Option<TagEditState>,
    pub resource: Option<Uuid>,
    pub subscription: Option<SubscriptionId>,
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
        state: parse(row, "state")?,
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
        let now = self.now_ms();
        let summary: Vec<Value> = edits
            .iter()
            .map(|e| json!({"resource": e.resource_id, "state": e.state, "set": e.set, "remove": e.remove}))
            .collect();
        let entry = AuditEntry::new(
            actor,
            "tag_edit.created",
            "tag_edits",
            json!({ "edits": summary }),
        );
        let out: Vec<TagEdit> = edits
            .into_iter()
            .map(|e| TagEdit {
                id: Uuid::now_v7(),
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
            })
            .collect();
        let org = scope.id();
        let rows: Vec<Vec<Arg>> = out
            .iter()
            .map(|e| {
                vec![
                    org.as_str().into(),
                    e.id.to_string().into(),
                    e.resource_id.to_string().into(),
                    e.subscription_id.to_string().into(),
                    actor.into(),
                    tags_json(&e.set).into(),
                    serde_json::to_string(&e.remove).unwrap_or_default().into(),
                    tags_json(&e.base).into(),
                    e.state.as_str().into(),
                    e.reason.clone().into(),
                    now.into(),
                    now.into(),
                ]
            })
            .collect();
        let columns = [
            "org_id",
            "edit_id",
            "resource_id",
            "subscription_id",
            "author",
            "set_tags",
            "remove_tags",
            "base_tags",
            "state",
            "reason",
            "created_at",
            "updated_at",
        ];
        let mut tx = self.audited(scope, entry).await?;
        bulk_insert(&mut tx, self.backend(), "tag_edits", &columns, rows).await?;
        tx.commit().await?;
        Ok(out)
    }

    /// Edits, newest first, filtered and paged in SQL.
    pub async fn tag_edits(
        &self,
        scope: &OrgScope,
        filter: &TagEditFilter,
        page: &PageRequest,
    ) -> Result<Page<TagEdit>> {
        let (before_ms, before_id) = page.time_and_id(i64::MAX)?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tag_edits WHERE org_id = $1 AND ($2 = '' OR state = $2) AND ($3 = '' OR resource_id = $3) \
             AND ($4 = '' OR subscription_id = $4) AND (created_at < $5 OR (created_at = $5 AND ($6 = '' OR edit_id > $6))) \
             ORDER BY created_at DESC, edit_id LIMIT $7"
        ))
        .bind(scope.id())
        .bind(filter.state.map(|s| s.as_str()).unwrap_or(""))
        .bind(filter.resource.map(|r| r.to_string()).unwrap_or_default())
        .bind(filter.subscription.map(|s| s.to_string()).unwrap_or_default())
        .bind(before_ms)
        .bind(before_id)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(edit).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |e| {
            Cursor::of(&[
                &e.created_at.timestamp_millis().to_string(),
                &e.id.to_string(),
            ])
        }))
    }

    pub async fn tag_edit(&self, scope: &OrgScope, id: Uuid) -> Result<TagEdit> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM tag_edits WHERE org_id = $1 AND edit_id = $2"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "tag edit" })?;
        edit(&row)
    }

    /// The pending and local edits of these resources, oldest first: what
    /// a new edit would repeat (a coverage fix skips the keys they set).
    pub async fn open_tag_edits(
        &self,
        scope: &OrgScope,
        resources: &[Uuid],
    ) -> Result<Vec<TagEdit>> {
        if resources.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = crate::sql::Sql::new(&format!(
            "SELECT {COLUMNS} FROM tag_edits WHERE state IN ('pending', 'local') AND org_id = "
        ));
        let org = sql.arg(scope.id());
        sql.push(&org);
        let ps: Vec<String> = resources.iter().map(|r| sql.arg(r.to_string())).collect();
        sql.push(&format!(
            " AND resource_id IN ({}) ORDER BY created_at, edit_id",
            ps.join(", ")
        ));
        sql.fetch_all(&self.pool).await?.iter().map(edit).collect()
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
    /// pending edit moves, so an edit is applied at most once; answers
    /// whether it moved.
    pub async fn settle_tag_edit(
        &self,
        scope: &OrgScope,
        id: Uuid,
        state: TagEditState,
        reason: Option<&str>,
        details: Value,
        actor: &str,
    ) -> Result<bool> {
        let now = self.now_ms();
        let mut tx = self.begin_audited(scope).await?;
        let (out, entry) = within(async {
            let done = sqlx::query("UPDATE tag_edits SET state = $3, reason = $4, updated_at = $5 WHERE org_id = $1 AND edit_id = $2 AND state = 'pending'")
                .bind(scope.id())
                .bind(id.to_string())
                .bind(state.as_str())
                .bind(reason)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            if done.rows_affected() == 0 {
                return Ok((false, None));
            }
            let entry = AuditEntry::new(
                actor,
                format!("tag_edit.{state}"),
                format!("tag_edit:{id}"),
                json!({"reason": reason, "details": details}),
            );
            Ok((true, Some(entry)))
        })
        .await?;
        if let Some(entry) = entry {
            self.record(&mut tx, scope, &entry).await?;
        }
        tx.commit_recorded().await?;
        Ok(out)
    }

    /// Resolves a conflict: `KeepMine` re-queues the user's change based on
    /// the tags observed now (so it is written at the next sync);
    /// `TakeTheirs` keeps Azure's value. The conflicted edit is closed
    /// either way. Answers the new pending edit, if any.
    pub async fn resolve_tag_conflict(
        &self,
        scope: &OrgScope,
        id: Uuid,
        resolution: Resolution,
        actor: &str,
    ) -> Result<Option<TagEdit>> {
        let conflicted = self.tag_edit(scope, id).await?;
        if conflicted.state != TagEditState::Conflict {
            return Err(StoreError::Invalid(format!(
                "the edit is {}, not in conflict: only a conflict can be resolved",
                conflicted.state
            )));
        }
        let now = self.now_ms();
        let entry = AuditEntry::new(
            actor,
            "tag_edit.resolved",
            format!("tag_edit:{id}"),
            json!({"resolution": resolution}),
        );
        let keep_mine = resolution == Resolution::KeepMine;
        let mut tx = self.audited(scope, entry).await?;
        let out = within(async {
            let closed = sqlx::query("UPDATE tag_edits SET state = $3, updated_at = $4 WHERE org_id = $1 AND edit_id = $2 AND state = 'conflict'")
                .bind(scope.id())
                .bind(id.to_string())
                .bind(if keep_mine { TagEditState::Superseded } else { TagEditState::Dismissed }.as_str())
                .bind(now)
                .execute(&mut **tx)
                .await?;
            if closed.rows_affected() == 0 {
                return Err(StoreError::Invalid(
                    "the edit was resolved meanwhile".into(),
                ));
            }
            if !keep_mine {
                return Ok(None);
            }
            let observed: Option<String> =
                sqlx::query("SELECT tags FROM resources WHERE org_id = $1 AND resource_id = $2")
                    .bind(scope.id())
                    .bind(conflicted.resource_id.to_string())
                    .fetch_optional(&mut **tx)
                    .await?
                    .map(|r| r.try_get("tags"))
                    .transpose()?
                    .flatten();
            let base = observed.unwrap_or_else(|| "{}".into());
            let reason = format!("keeps the change of edit {id} over Azure's value");
            let new_id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO tag_edits (org_id, edit_id, resource_id, subscription_id, author, set_tags, remove_tags, base_tags, state, reason, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9, $10, $10)",
            )
            .bind(scope.id())
            .bind(new_id.to_string())
            .bind(conflicted.resource_id.to_string())
            .bind(conflicted.subscription_id.to_string())
            .bind(actor)
            .bind(tags_json(&conflicted.set))
            .bind(serde_json::to_string(&conflicted.remove).unwrap_or_default())
            .bind(&base)
            .bind(&reason)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            Ok(Some(TagEdit {
                id: new_id,
                author: actor.to_string(),
                base: serde_json::from_str(&base).unwrap_or_default(),
                state: TagEditState::Pending,
                reason: Some(reason),
                created_at: time(now),
                updated_at: time(now),
                ..conflicted.clone()
            }))
        })
        .await?;
        tx.commit().await?;
        Ok(out)
    }
}
