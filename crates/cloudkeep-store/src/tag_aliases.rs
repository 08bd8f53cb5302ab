//! One tag alias added or removed at a time. Each is read, checked and
//! written inside the organisation's audited transaction (the chain lock
//! orders them), so two people adding aliases at once both keep theirs:
//! replacing the whole map (`set_spend_tag_aliases`) is for scripts that
//! mean to replace it.

use serde_json::json;
use sqlx::Row;

use crate::audit::AuditEntry;
use crate::spend::bump_spend_rev;
use crate::{OrgScope, Result, Store, StoreError, within};

/// An alias or key as stored: trimmed, lower case, 1 to 512 characters.
fn clean(what: &str, s: &str) -> Result<String> {
    let s = s.trim().to_lowercase();
    if s.is_empty() || s.chars().count() > 512 {
        return Err(StoreError::Invalid(format!(
            "a tag {what} is 1 to 512 characters"
        )));
    }
    Ok(s)
}

/// The key `alias` stands for, read inside the audited transaction.
async fn key_of(
    tx: &mut crate::AuditedTx,
    scope: &OrgScope,
    alias: &str,
) -> Result<Option<String>> {
    sqlx::query("SELECT key_lower FROM spend_tag_aliases WHERE org_id = $1 AND alias_lower = $2")
        .bind(scope.id())
        .bind(alias.to_string())
        .fetch_optional(&mut ***tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()
        .map_err(Into::into)
}

impl Store {
    /// Makes `alias` stand for `key`, audited. Refused: an alias of a key
    /// to itself, an alias that other aliases point to, a key that is
    /// itself an alias (no chains), and an alias that already stands for
    /// another key (remove it first). Adding what is already there changes
    /// nothing and records nothing.
    pub async fn add_spend_tag_alias(
        &self,
        scope: &OrgScope,
        alias: &str,
        key: &str,
        actor: &str,
    ) -> Result<()> {
        let (alias, key) = (clean("alias", alias)?, clean("key", key)?);
        if alias == key {
            return Err(StoreError::Invalid(format!(
                "'{alias}' is the key itself: an alias names another spelling of it"
            )));
        }
        let mut tx = self.begin_audited(scope).await?;
        if let Some(held) = key_of(&mut tx, scope, &alias).await? {
            if held == key {
                return Ok(());
            }
            return Err(StoreError::State(format!(
                "'{alias}' already stands for '{held}': remove it first to point it at another key"
            )));
        }
        if let Some(root) = key_of(&mut tx, scope, &key).await? {
            return Err(StoreError::Invalid(format!(
                "'{key}' is itself an alias of '{root}': point '{alias}' at '{root}'"
            )));
        }
        let pointed: Option<String> = sqlx::query(
            "SELECT alias_lower FROM spend_tag_aliases WHERE org_id = $1 AND key_lower = $2 \
             ORDER BY alias_lower LIMIT 1",
        )
        .bind(scope.id())
        .bind(&alias)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
        if let Some(other) = pointed {
            return Err(StoreError::Invalid(format!(
                "'{alias}' would be both an alias and the key '{other}' points to; point every alias at the key itself"
            )));
        }
        let entry = AuditEntry::new(
            actor,
            "spend_tag_alias.added",
            "spend_tag_aliases",
            json!({ "alias": alias, "key": key }),
        );
        self.record(&mut tx, scope, &entry).await?;
        within(async {
            sqlx::query(
                "INSERT INTO spend_tag_aliases (org_id, alias_lower, key_lower) VALUES ($1, $2, $3)",
            )
            .bind(scope.id())
            .bind(&alias)
            .bind(&key)
            .execute(&mut **tx)
            .await?;
            bump_spend_rev(&mut tx, scope).await.map(drop)
        })
        .await?;
        tx.commit().await
    }

    /// Removes one alias, audited; `NotFound` if the organisation has no
    /// such alias.
    pub async fn remove_spend_tag_alias(
        &self,
        scope: &OrgScope,
        alias: &str,
        actor: &str,
    ) -> Result<()> {
        let alias = alias.trim().to_lowercase();
        let mut tx = self.begin_audited(scope).await?;
        let key = key_of(&mut tx, scope, &alias).await?;
        let Some(key) = key else {
            return Err(StoreError::NotFound { what: "tag alias" });
        };
        let entry = AuditEntry::new(
            actor,
            "spend_tag_alias.removed",
            "spend_tag_aliases",
            json!({ "alias": alias, "key": key }),
        );
        self.record(&mut tx, scope, &entry).await?;
        within(async {
            sqlx::query("DELETE FROM spend_tag_aliases WHERE org_id = $1 AND alias_lower = $2")
                .bind(scope.id())
                .bind(&alias)
                .execute(&mut **tx)
                .await?;
            bump_spend_rev(&mut tx, scope).await.map(drop)
        })
        .await?;
        tx.commit().await
    }
}
