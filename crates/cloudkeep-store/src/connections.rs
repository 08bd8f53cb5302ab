//! Connections to Azure tenants and the subscriptions under them.

use chrono::{DateTime, Utc};
use cloudkeep_domain::{AuthMethod, ConnectionId, ConnectionStatus, SubscriptionId, SyncLevel};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{AuditEntry, append};
use crate::keys::SealedCredential;
use crate::{OrgScope, Result, Store, StoreError, now_ms, parse, time};

pub struct NewSubscription {
    pub azure_id: String,
    pub display_name: String,
    pub sync_level: SyncLevel,
    /// Roles present and missing, and the features a missing role disables.
    pub permissions: Value,
}

/// How a new connection authenticates.
pub enum ConnectionCredential {
    /// The customer's service principal, its secret sealed for this connection.
    ClientSecret(SealedCredential),
    /// The operator's application (the consent flow); nothing is stored.
    OperatorApp,
}

pub struct NewConnection {
    /// Chosen by the caller, which seals the credential for it first.
    pub id: ConnectionId,
    pub name: String,
    pub tenant_id: String,
    pub client_id: String,
    /// The service principal's object id in the tenant.
    pub principal_id: String,
    pub credential: ConnectionCredential,
    pub cadence_secs: i64,
    pub stale_after_secs: i64,
    pub subscriptions: Vec<NewSubscription>,
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRecord {
    pub id: SubscriptionId,
    pub connection_id: ConnectionId,
    pub azure_id: String,
    pub display_name: String,
    pub sync_level: SyncLevel,
    pub permissions: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub id: ConnectionId,
    pub name: String,
    pub tenant_id: String,
    pub client_id: String,
    pub principal_id: String,
    pub auth_method: AuthMethod,
    pub status: ConnectionStatus,
    pub status_detail: Option<String>,
    pub cadence_secs: i64,
    pub stale_after_secs: i64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub deleted_at: Option<DateTime<Utc>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub next_sync_at: Option<DateTime<Utc>>,
    /// Whether an encrypted credential is stored (false once revoked).
    pub has_credential: bool,
    pub subscriptions: Vec<SubscriptionRecord>,
}

const COLUMNS: &str = "connection_id, name, tenant_id, client_id, principal_id, auth_method, status, status_detail, cadence_secs, \
     stale_after_secs, created_at, created_by, deleted_at, last_sync_at, next_sync_at, credential IS NOT NULL AS has_credential";

fn connection(row: &AnyRow) -> Result<Connection> {
    let has: i64 = match row.try_get::<bool, _>("has_credential") {
        Ok(b) => i64::from(b),
        Err(_) => row.try_get("has_credential")?,
    };
    Ok(Connection {
        id: parse(row, "connection_id")?,
        name: row.try_get("name")?,
        tenant_id: row.try_get("tenant_id")?,
        client_id: row.try_get("client_id")?,
        principal_id: row.try_get("principal_id")?,
        auth_method: parse(row, "auth_method")?,
        status: parse(row, "status")?,
        status_detail: row.try_get("status_detail")?,
        cadence_secs: row.try_get("cadence_secs")?,
        stale_after_secs: row.try_get("stale_after_secs")?,
        created_at: time(row.try_get("created_at")?),
        created_by: row.try_get("created_by")?,
        deleted_at: row.try_get::<Option<i64>, _>("deleted_at")?.map(time),
        last_sync_at: row.try_get::<Option<i64>, _>("last_sync_at")?.map(time),
        next_sync_at: row.try_get::<Option<i64>, _>("next_sync_at")?.map(time),
        has_credential: has != 0,
        subscriptions: Vec::new(),
    })
}

fn subscription(row: &AnyRow) -> Result<SubscriptionRecord> {
    let permissions: String = row.try_get("permissions")?;
    Ok(SubscriptionRecord {
        id: parse(row, "subscription_id")?,
        connection_id: parse(row, "connection_id")?,
        azure_id: row.try_get("azure_id")?,
        display_name: row.try_get("display_name")?,
        sync_level: parse(row, "sync_level")?,
        permissions: serde_json::from_str(&permissions)
            .map_err(|e| StoreError::Corrupt(format!("permissions: {e}")))?,
    })
}

impl Store {
    /// Stores a validated connection, its encrypted credential and its
    /// subscriptions (at the default sync level), with its audit event.
    pub async fn create_connection(
        &self,
        scope: &OrgScope,
        new: NewConnection,
    ) -> Result<Connection> {
        let name = new.name.trim().to_string();
        if name.is_empty() || name.len() > 200 {
            return Err(StoreError::Invalid(
                "a connection name is 1 to 200 characters".into(),
            ));
        }
        let now = now_ms();
        let (auth_method, blob, data_key_version) = match new.credential {
            ConnectionCredential::ClientSecret(sealed) => (
                AuthMethod::ClientSecret,
                Some(sealed.blob),
                Some(sealed.data_key_version),
            ),
            ConnectionCredential::OperatorApp => (AuthMethod::OperatorApp, None, None),
        };
        let mut tx = self.begin_write().await?;
        let subs: Vec<&str> = new
            .subscriptions
            .iter()
            .map(|s| s.azure_id.as_str())
            .collect();
        append(
            &mut tx,
            scope,
            &AuditEntry::new(
                &new.actor,
                "connection.created",
                format!("connection:{}", new.id),
                json!({"name": name, "tenant_id": new.tenant_id, "client_id": new.client_id, "auth_method": auth_method.as_str(), "subscriptions": subs}),
            ),
        )
        .await?;
        sqlx::query(
            "INSERT INTO connections (org_id, connection_id, name, tenant_id, client_id, auth_method, credential, data_key_version, \
             principal_id, status, cadence_secs, stale_after_secs, created_at, created_by, next_sync_at) \
             VALUES ($1, $2, $3, $4, $5, $13, $6, $7, $8, 'active', $9, $10, $11, $12, $11)",
        )
        .bind(scope.id())
        .bind(new.id.to_string())
        .bind(&name)
        .bind(&new.tenant_id)
        .bind(&new.client_id)
        .bind(blob)
        .bind(data_key_version)
        .bind(&new.principal_id)
        .bind(new.cadence_secs)
        .bind(new.stale_after_secs)
        .bind(now)
        .bind(&new.actor)
        .bind(auth_method.as_str())
        .execute(&mut *tx)
        .await?;
        insert_subscriptions(&mut tx, scope, new.id, &new.subscriptions, now).await?;
        tx.commit().await?;
        self.connection(scope, new.id).await
    }

    /// Adds subscriptions to a live connection (the consent flow run again);
    /// ones it already has are left as they are. Answers the connection.
    pub async fn add_subscriptions(
        &self,
        scope: &OrgScope,
        id: ConnectionId,
        subscriptions: &[NewSubscription],
        actor: &str,
    ) -> Result<Connection> {
        let current = self.connection(scope, id).await?;
        if current.deleted_at.is_some() {
            return Err(StoreError::Invalid(
                "the connection was revoked; connect the tenant again instead".into(),
            ));
        }
        let added: Vec<&NewSubscription> = subscriptions
            .iter()
            .filter(|new| {
                !current
                    .subscriptions
                    .iter()
                    .any(|s| s.azure_id.eq_ignore_ascii_case(&new.azure_id))
            })
            .collect();
        if added.is_empty() {
            return Ok(current);
        }
        let mut tx = self.begin_write().await?;
        let ids: Vec<&str> = added.iter().map(|s| s.azure_id.as_str()).collect();
        append(
            &mut tx,
            scope,
            &AuditEntry::new(
                actor,
                "connection.subscriptions_added",
                format!("connection:{id}"),
                json!({ "subscriptions": ids }),
            ),
        )
        .await?;
        let added: Vec<NewSubscription> = added
            .into_iter()
            .map(|s| NewSubscription {
                azure_id: s.azure_id.clone(),
                display_name: s.display_name.clone(),
                sync_level: s.sync_level,
                permissions: s.permissions.clone(),
            })
            .collect();
        insert_subscriptions(&mut tx, scope, id, &added, now_ms()).await?;
        tx.commit().await?;
        self.connection(scope, id).await
    }

    pub async fn connections(&self, scope: &OrgScope) -> Result<Vec<Connection>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM connections WHERE org_id = $1 ORDER BY created_at, connection_id"
        ))
        .bind(scope.id())
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<Connection> = rows.iter().map(connection).collect::<Result<_>>()?;
        let subs = self.subscriptions(scope).await?;
        for c in &mut out {
            c.subscriptions = subs
                .iter()
                .filter(|s| s.connection_id == c.id)
                .cloned()
                .collect();
        }
        Ok(out)
    }

    pub async fn connection(&self, scope: &OrgScope, id: ConnectionId) -> Result<Connection> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM connections WHERE org_id = $1 AND connection_id = $2"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "connection" })?;
        let mut c = connection(&row)?;
        c.subscriptions = self
            .subscriptions(scope)
            .await?
            .into_iter()
            .filter(|s| s.connection_id == id)
            .collect();
        Ok(c)
    }

    pub async fn subscriptions(&self, scope: &OrgScope) -> Result<Vec<SubscriptionRecord>> {
        let rows = sqlx::query(
            "SELECT subscription_id, connection_id, azure_id, display_name, sync_level, permissions FROM subscriptions \
             WHERE org_id = $1 ORDER BY display_name, azure_id",
        )
        .bind(scope.id())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(subscription).collect()
    }

    /// Replaces a connection's credential after it was validated (re-auth).
    pub async fn replace_credential(
        &self,
        scope: &OrgScope,
        id: ConnectionId,
        credential: SealedCredential,
        actor: &str,
    ) -> Result<Connection> {
        let mut tx = self.begin_write().await?;
        append(
            &mut tx,
            scope,
            &AuditEntry::new(
                actor,
                "connection.reauthenticated",
                format!("connection:{id}"),
                json!({}),
            ),
        )
        .await?;
        let done = sqlx::query(
            "UPDATE connections SET credential = $3, data_key_version = $4, status = 'active', status_detail = NULL \
             WHERE org_id = $1 AND connection_id = $2 AND deleted_at IS NULL",
        )
        .bind(scope.id())
        .bind(id.to_string())
        .bind(credential.blob)
        .bind(credential.data_key_version)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "connection" });
        }
        tx.commit().await?;
        self.connection(scope, id).await
    }

    /// Revokes a connection: marks it deleted and destroys its credential;
    /// everything else stays readable.
    pub async fn revoke_connection(
        &self,
        scope: &OrgScope,
        id: ConnectionId,
        actor: &str,
    ) -> Result<Connection> {
        let mut tx = self.begin_write().await?;
        append(
            &mut tx,
            scope,
            &AuditEntry::new(
                actor,
                "connection.revoked",
                format!("connection:{id}"),
                json!({}),
            ),
        )
        .await?;
        let done = sqlx::query(
            "UPDATE connections SET deleted_at = $3, credential = NULL, data_key_version = NULL, status = 'revoked', next_sync_at = NULL \
             WHERE org_id = $1 AND connection_id = $2 AND deleted_at IS NULL",
        )
        .bind(scope.id())
        .bind(id.to_string())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "connection" });
        }
        tx.commit().await?;
        self.connection(scope, id).await
    }

    pub async fn set_connection_status(
        &self,
        scope: &OrgScope,
        id: ConnectionId,
        status: ConnectionStatus,
        detail: Option<&str>,
        actor: &str,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        append(
            &mut tx,
            scope,
            &AuditEntry::new(
                actor,
                "connection.status_changed",
                format!("connection:{id}"),
                json!({"status": status.as_str(), "detail": detail}),
            ),
        )
        .await?;
        let done = sqlx::query("UPDATE connections SET status = $3, status_detail = $4 WHERE org_id = $1 AND connection_id = $2 AND deleted_at IS NULL")
            .bind(scope.id())
            .bind(id.to_string())
            .bind(status.as_str())
            .bind(detail)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "connection" });
        }
        tx.commit().await?;
        Ok(())
    }

    /// Renames a connection or changes its cadence or stale threshold.
    pub async fn update_connection(
        &self,
        scope: &OrgScope,
        id: ConnectionId,
        name: Option<&str>,
        cadence_secs: Option<i64>,
        stale_after_secs: Option<i64>,
        actor: &str,
    ) -> Result<Connection> {
        if let Some(n) = name.map(str::trim) {
            if n.is_empty() || n.len() > 200 {
                return Err(StoreError::Invalid(
                    "a connection name is 1 to 200 characters".into(),
                ));
            }
        }
        for (what, v) in [
            ("cadence", cadence_secs),
            ("stale threshold", stale_after_secs),
        ] {
            if v.is_some_and(|s| !(3600..=90 * 86_400).contains(&s)) {
                return Err(StoreError::Invalid(format!(
                    "the {what} is between 1 hour and 90 days"
                )));
            }
        }
        let mut tx = self.begin_write().await?;
        append(
            &mut tx,
            scope,
            &AuditEntry::new(actor, "connection.updated", format!("connection:{id}"), json!({"name": name, "cadence_secs": cadence_secs, "stale_after_secs": stale_after_secs})),
        )
        .await?;
        let done = sqlx::query(
            "UPDATE connections SET name = COALESCE($3, name), cadence_secs = COALESCE($4, cadence_secs),              stale_after_secs = COALESCE($5, stale_after_secs) WHERE org_id = $1 AND connection_id = $2",
        )
        .bind(scope.id())
        .bind(id.to_string())
        .bind(name.map(str::trim))
        .bind(cadence_secs)
        .bind(stale_after_secs)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "connection" });
        }
        tx.commit().await?;
        self.connection(scope, id).await
    }

    pub async fn set_sync_level(
        &self,
        scope: &OrgScope,
        id: SubscriptionId,
        level: SyncLevel,
        actor: &str,
    ) -> Result<SubscriptionRecord> {
        let current = self
            .subscriptions(scope)
            .await?
            .into_iter()
            .find(|s| s.id == id)
            .ok_or(StoreError::NotFound {
                what: "subscription",
            })?;
        let mut tx = self.begin_write().await?;
        append(
            &mut tx,
            scope,
            &AuditEntry::new(
                actor,
                "subscription.sync_level_changed",
                format!("subscription:{id}"),
                json!({"azure_id": current.azure_id, "from": current.sync_level.as_str(), "to": level.as_str()}),
            ),
        )
        .await?;
        sqlx::query(
            "UPDATE subscriptions SET sync_level = $3 WHERE org_id = $1 AND subscription_id = $2",
        )
        .bind(scope.id())
        .bind(id.to_string())
        .bind(level.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SubscriptionRecord {
            sync_level: level,
            ..current
        })
    }
}

async fn insert_subscriptions(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    scope: &OrgScope,
    connection: ConnectionId,
    subscriptions: &[NewSubscription],
    now: i64,
) -> Result<()> {
    for s in subscriptions {
        sqlx::query(
            "INSERT INTO subscriptions (org_id, subscription_id, connection_id, azure_id, display_name, sync_level, permissions, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(scope.id())
        .bind(SubscriptionId::new().to_string())
        .bind(connection.to_string())
        .bind(s.azure_id.to_ascii_lowercase())
        .bind(&s.display_name)
        .bind(s.sync_level.as_str())
        .bind(s.permissions.to_string())
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
