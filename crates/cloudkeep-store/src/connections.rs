//! Connections to Azure tenants and the subscriptions under them.

use chrono::{DateTime, Utc};
use cloudkeep_domain::policy::{LevelChange, PermissionReport};
use cloudkeep_domain::{AuthMethod, ConnectionId, ConnectionStatus, SubscriptionId, SyncLevel};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::access::found;
use crate::audit::AuditEntry;
use crate::keys::SealedCredential;
use crate::{OrgScope, Result, Store, StoreError, Tx, parse, time, within};

pub struct NewSubscription {
    pub azure_id: String,
    pub display_name: String,
    pub sync_level: SyncLevel,
    /// Roles present and missing, and the features a missing role disables.
    pub permissions: PermissionReport,
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
    pub permissions: PermissionReport,
    /// Set when the subscription left its connection (the connection was
    /// revoked): what was read stays as that connection's history.
    pub detached_at: Option<DateTime<Utc>>,
    /// When the inventory last listed it.
    pub inventory_at: Option<DateTime<Utc>>,
}

impl SubscriptionRecord {
    pub fn is_live(&self) -> bool {
        self.detached_at.is_none()
    }
}

/// What lowering a sync level removed or changed (audited with the change).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LevelChangeCounts {
    pub resources_purged: u64,
    pub tags_purged: u64,
    pub history_purged: u64,
    pub edits_cancelled: u64,
    pub edits_made_local: u64,
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
    /// Its subscriptions, with those it no longer holds (`detached_at`).
    pub subscriptions: Vec<SubscriptionRecord>,
}

impl Connection {
    /// The subscriptions it syncs.
    pub fn live_subscriptions(&self) -> impl Iterator<Item = &SubscriptionRecord> {
        self.subscriptions.iter().filter(|s| s.is_live())
    }
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

const SUBSCRIPTION_COLUMNS: &str = "subscription_id, connection_id, azure_id, display_name, sync_level, permissions, detached_at, inventory_at";

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
        detached_at: row.try_get::<Option<i64>, _>("detached_at")?.map(time),
        inventory_at: row.try_get::<Option<i64>, _>("inventory_at")?.map(time),
    })
}

impl Store {
    /// Stores a validated connection, its encrypted credential and its
    /// subscriptions, with its audit event. A subscription another live
    /// connection holds is refused (`AlreadyConnected`), nothing stored.
    pub async fn create_connection(
        &self,
        scope: &OrgScope,
        new: NewConnection,
    ) -> Result<Connection> {
        let name = connection_name(&new.name)?;
        let now = self.now_ms();
        let (auth_method, blob, data_key_version) = match new.credential {
            ConnectionCredential::ClientSecret(sealed) => (
                AuthMethod::ClientSecret,
                Some(sealed.blob),
                Some(sealed.data_key_version),
            ),
            ConnectionCredential::OperatorApp => (AuthMethod::OperatorApp, None, None),
        };
        let subs: Vec<&str> = new
            .subscriptions
            .iter()
            .map(|s| s.azure_id.as_str())
            .collect();
        let entry = AuditEntry::new(
            &new.actor,
            "connection.created",
            format!("connection:{}", new.id),
            json!({"name": name, "tenant_id": new.tenant_id, "client_id": new.client_id, "auth_method": auth_method.as_str(), "subscriptions": subs}),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            refuse_held(&mut tx, scope, &new.subscriptions).await?;
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
            .execute(&mut **tx)
            .await?;
            insert_subscriptions(&mut tx, scope, new.id, &new.subscriptions, now).await
        })
        .await?;
        tx.commit().await?;
        self.connection(scope, new.id).await
    }

    /// Adds subscriptions to a live connection (the consent flow run again);
    /// ones it already has are left as they are. A subscription another live
    /// connection holds is moved here only if it is in `moving` (audited as
    /// `subscription.moved`, with its resources and history); otherwise the
    /// whole call is refused (`AlreadyConnected`). Answers the connection.
    pub async fn add_subscriptions(
        &self,
        scope: &OrgScope,
        id: ConnectionId,
        subscriptions: &[NewSubscription],
        moving: &[String],
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
                    .live_subscriptions()
                    .any(|s| s.azure_id.eq_ignore_ascii_case(&new.azure_id))
            })
            .collect();
        if added.is_empty() {
            return Ok(current);
        }
        let now = self.now_ms();
        let mut tx = self.begin_audited(scope).await?;
        let ((), entry) = within(async {
            let mut fresh = Vec::new();
            for s in &added {
                let holder = holder_of(&mut tx, scope, &s.azure_id).await?;
                match holder {
                    Some((sub, from)) if moving.iter().any(|m| m.eq_ignore_ascii_case(&s.azure_id)) => {
                        move_subscription(&mut tx, scope, &sub, from, id).await?;
                        self.record(
                            &mut tx,
                            scope,
                            &AuditEntry::new(
                                actor,
                                "subscription.moved",
                                format!("subscription:{sub}"),
                                json!({"azure_id": s.azure_id.to_ascii_lowercase(), "from": from, "to": id}),
                            ),
                        )
                        .await?;
                    }
                    Some((_, from)) => {
                        return Err(StoreError::AlreadyConnected {
                            subscription: s.azure_id.to_ascii_lowercase(),
                            connection: from,
                        });
                    }
                    None => fresh.push(NewSubscription {
                        azure_id: s.azure_id.clone(),
                        display_name: s.display_name.clone(),
                        sync_level: s.sync_level,
                        permissions: s.permissions.clone(),
                    }),
                }
            }
            if fresh.is_empty() {
                return Ok(((), None));
            }
            insert_subscriptions(&mut tx, scope, id, &fresh, now).await?;
            let ids: Vec<&str> = fresh.iter().map(|s| s.azure_id.as_str()).collect();
            Ok((
                (),
                Some(AuditEntry::new(
                    actor,
                    "connection.subscriptions_added",
                    format!("connection:{id}"),
                    json!({ "subscriptions": ids }),
                )),
            ))
        })
        .await?;
        if let Some(entry) = entry {
            self.record(&mut tx, scope, &entry).await?;
        }
        tx.commit_recorded().await?;
        self.connection(scope, id).await
    }

    /// The live connection holding each of these Azure subscriptions, if any.
    pub async fn subscription_holders(
        &self,
        scope: &OrgScope,
        azure_ids: &[String],
    ) -> Result<Vec<(String, ConnectionId)>> {
        let mut out = Vec::new();
        let mut conn = self.pool.acquire().await?;
        for a in azure_ids {
            let row = sqlx::query(
                "SELECT connection_id FROM subscriptions WHERE org_id = $1 AND azure_id = $2 AND detached_at IS NULL",
            )
            .bind(scope.id())
            .bind(a.to_ascii_lowercase())
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = row {
                out.push((a.to_ascii_lowercase(), parse(&row, "connection_id")?));
            }
        }
        Ok(out)
    }

    /// Every connection, oldest first, with its subscriptions.
    pub async fn connections(&self, scope: &OrgScope) -> Result<Vec<Connection>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM connections WHERE org_id = $1 ORDER BY created_at, connection_id"
        ))
        .bind(scope.id())
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<Connection> = rows.iter().map(connection).collect::<Result<_>>()?;
        self.attach_subscriptions(scope, &mut out).await?;
        Ok(out)
    }

    /// The organisation's live connections, oldest first, each with how
    /// many subscriptions it holds (not detached), in one query: what a
    /// health summary shows, without reading every subscription (the
    /// dashboard asks on every load; `connections` reads them all).
    pub async fn live_connections_with_counts(
        &self,
        scope: &OrgScope,
    ) -> Result<Vec<(Connection, u64)>> {
        sqlx::query(&format!(
            "SELECT {COLUMNS}, (SELECT COUNT(*) FROM subscriptions s WHERE s.org_id = c.org_id \
             AND s.connection_id = c.connection_id AND s.detached_at IS NULL) AS attached \
             FROM connections c WHERE c.org_id = $1 AND c.deleted_at IS NULL \
             ORDER BY c.created_at, c.connection_id"
        ))
        .bind(scope.id())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((connection(r)?, r.try_get::<i64, _>("attached")? as u64)))
        .collect()
    }

    /// A page of connections, oldest first, with their subscriptions.
    pub async fn connections_page(
        &self,
        scope: &OrgScope,
        page: &crate::PageRequest,
    ) -> Result<crate::Page<Connection>> {
        let (after_ms, after_id) = page.time_and_id(i64::MIN)?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM connections WHERE org_id = $1 AND (created_at > $2 OR (created_at = $2 AND connection_id > $3)) \
             ORDER BY created_at, connection_id LIMIT $4"
        ))
        .bind(scope.id())
        .bind(after_ms)
        .bind(after_id)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let mut items: Vec<Connection> = rows.iter().map(connection).collect::<Result<_>>()?;
        self.attach_subscriptions(scope, &mut items).await?;
        Ok(crate::Page::from_rows(items, page, |c| {
            crate::Cursor::of(&[
                &c.created_at.timestamp_millis().to_string(),
                &c.id.to_string(),
            ])
        }))
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
        c.subscriptions = self.subscriptions_of(scope, id).await?;
        Ok(c)
    }

    /// Fills in the subscriptions of these connections, in one query
    /// (not one a connection).
    async fn attach_subscriptions(&self, scope: &OrgScope, items: &mut [Connection]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut sql = crate::sql::Sql::new(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE org_id = "
        ));
        let p = sql.arg(scope.id());
        sql.push(&p);
        sql.push(" AND connection_id IN (");
        for (i, c) in items.iter().enumerate() {
            let p = sql.arg(c.id.to_string());
            sql.push(&if i == 0 { p } else { format!(", {p}") });
        }
        sql.push(") ORDER BY display_name, azure_id");
        let rows = sql.fetch_all(&self.pool).await?;
        let mut subs: Vec<SubscriptionRecord> =
            rows.iter().map(subscription).collect::<Result<_>>()?;
        for c in items.iter_mut() {
            let (mine, rest) = subs.into_iter().partition(|s| s.connection_id == c.id);
            c.subscriptions = mine;
            subs = rest;
        }
        Ok(())
    }

    async fn subscriptions_of(
        &self,
        scope: &OrgScope,
        connection: ConnectionId,
    ) -> Result<Vec<SubscriptionRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE org_id = $1 AND connection_id = $2 ORDER BY display_name, azure_id"
        ))
        .bind(scope.id())
        .bind(connection.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(subscription).collect()
    }

    /// Every subscription of the organisation, live and detached.
    pub async fn subscriptions(&self, scope: &OrgScope) -> Result<Vec<SubscriptionRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE org_id = $1 ORDER BY display_name, azure_id"
        ))
        .bind(scope.id())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(subscription).collect()
    }

    pub async fn subscription(
        &self,
        scope: &OrgScope,
        id: SubscriptionId,
    ) -> Result<SubscriptionRecord> {
        let row = sqlx::query(&format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE org_id = $1 AND subscription_id = $2"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound {
            what: "subscription",
        })?;
        subscription(&row)
    }

    /// Replaces a connection's credential after it was validated (re-auth).
    pub async fn replace_credential(
        &self,
        scope: &OrgScope,
        id: ConnectionId,
        credential: SealedCredential,
        actor: &str,
    ) -> Result<Connection> {
        let entry = AuditEntry::new(
            actor,
            "connection.reauthenticated",
            format!("connection:{id}"),
            json!({}),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            let done = sqlx::query(
                "UPDATE connections SET credential = $3, data_key_version = $4, status = 'active', status_detail = NULL \
                 WHERE org_id = $1 AND connection_id = $2 AND deleted_at IS NULL",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(credential.blob)
            .bind(credential.data_key_version)
            .execute(&mut **tx)
            .await?;
            found(done.rows_affected(), "connection")
        })
        .await?;
        tx.commit().await?;
        self.connection(scope, id).await
    }

    /// Revokes a connection: marks it deleted, destroys its credential and
    /// detaches its subscriptions (another connection may take them);
    /// everything it read stays readable as its history.
    pub async fn revoke_connection(
        &self,
        scope: &OrgScope,
        id: ConnectionId,
        actor: &str,
    ) -> Result<Connection> {
        let now = self.now_ms();
        let entry = AuditEntry::new(
            actor,
            "connection.revoked",
            format!("connection:{id}"),
            json!({}),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            let done = sqlx::query(
                "UPDATE connections SET deleted_at = $3, credential = NULL, data_key_version = NULL, status = 'revoked', next_sync_at = NULL \
                 WHERE org_id = $1 AND connection_id = $2 AND deleted_at IS NULL",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(now)
            .execute(&mut **tx)
            .await?;
            found(done.rows_affected(), "connection")?;
            sqlx::query(
                "UPDATE subscriptions SET detached_at = $3 WHERE org_id = $1 AND connection_id = $2 AND detached_at IS NULL",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(now)
            .execute(&mut **tx)
            .await?;
            crate::evidence::bump_evidence_rev(&mut tx, scope).await?;
            Ok(())
        })
        .await?;
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
        let entry = AuditEntry::new(
            actor,
            "connection.status_changed",
            format!("connection:{id}"),
            json!({"status": status.as_str(), "detail": detail}),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            let done = sqlx::query("UPDATE connections SET status = $3, status_detail = $4 WHERE org_id = $1 AND connection_id = $2 AND deleted_at IS NULL")
                .bind(scope.id())
                .bind(id.to_string())
                .bind(status.as_str())
                .bind(detail)
                .execute(&mut **tx)
                .await?;
            found(done.rows_affected(), "connection")
        })
        .await?;
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
        let name = name.map(connection_name).transpose()?;
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
        let entry = AuditEntry::new(
            actor,
            "connection.updated",
            format!("connection:{id}"),
            json!({"name": name, "cadence_secs": cadence_secs, "stale_after_secs": stale_after_secs}),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            let done = sqlx::query(
                "UPDATE connections SET name = COALESCE($3, name), cadence_secs = COALESCE($4, cadence_secs), \
                 stale_after_secs = COALESCE($5, stale_after_secs) WHERE org_id = $1 AND connection_id = $2",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(name.as_deref())
            .bind(cadence_secs)
            .bind(stale_after_secs)
            .execute(&mut **tx)
            .await?;
            if stale_after_secs.is_some() {
                crate::evidence::bump_evidence_rev(&mut tx, scope).await?;
            }
            found(done.rows_affected(), "connection")
        })
        .await?;
        tx.commit().await?;
        self.connection(scope, id).await
    }

    /// Changes a subscription's sync level. Lowering it takes effect on what
    /// is stored, in the same transaction (see `LevelChange`): resources,
    /// tags and their history the new level does not allow are purged, open
    /// edits it does not allow are cancelled (with the reason) or kept
    /// local. Audited with what it removed; raising a level brings the data
    /// back at the next sync.
    pub async fn set_sync_level(
        &self,
        scope: &OrgScope,
        id: SubscriptionId,
        level: SyncLevel,
        actor: &str,
    ) -> Result<(SubscriptionRecord, LevelChangeCounts)> {
        let current = self.subscription(scope, id).await?;
        let change = LevelChange::between(current.sync_level, level);
        let now = self.now_ms();
        let mut tx = self.begin_audited(scope).await?;
        let (out, entry) = within(async {
                sqlx::query(
                    "UPDATE subscriptions SET sync_level = $3 WHERE org_id = $1 AND subscription_id = $2",
                )
                .bind(scope.id())
                .bind(id.to_string())
                .bind(level.as_str())
                .execute(&mut **tx)
                .await?;
                let counts = apply_level_change(&mut tx, scope, id, level, change, now).await?;
                let entry = AuditEntry::new(
                    actor,
                    "subscription.sync_level_changed",
                    format!("subscription:{id}"),
                    json!({
                        "azure_id": current.azure_id, "from": current.sync_level.as_str(), "to": level.as_str(),
                        "resources_purged": counts.resources_purged, "tags_purged": counts.tags_purged,
                        "history_purged": counts.history_purged, "edits_cancelled": counts.edits_cancelled,
                        "edits_made_local": counts.edits_made_local,
                    }),
                );
                Ok((counts, Some(entry)))
            })
        .await?;
        if let Some(entry) = entry {
            self.record(&mut tx, scope, &entry).await?;
        }
        tx.commit_recorded().await?;
        let counts = out;
        Ok((
            SubscriptionRecord {
                sync_level: level,
                ..current
            },
            counts,
        ))
    }
}

fn connection_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(StoreError::Invalid(
            "a connection name is 1 to 200 characters".into(),
        ));
    }
    Ok(name.to_string())
}

/// The live subscription row holding an Azure subscription, and its connection.
async fn holder_of(
    tx: &mut Tx,
    scope: &OrgScope,
    azure_id: &str,
) -> Result<Option<(SubscriptionId, ConnectionId)>> {
    let row = sqlx::query(
        "SELECT subscription_id, connection_id FROM subscriptions WHERE org_id = $1 AND azure_id = $2 AND detached_at IS NULL",
    )
    .bind(scope.id())
    .bind(azure_id.to_ascii_lowercase())
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| Ok((parse(&r, "subscription_id")?, parse(&r, "connection_id")?)))
        .transpose()
}

/// Refuses subscriptions a live connection already holds.
async fn refuse_held(
    tx: &mut Tx,
    scope: &OrgScope,
    subscriptions: &[NewSubscription],
) -> Result<()> {
    for s in subscriptions {
        if let Some((_, holder)) = holder_of(tx, scope, &s.azure_id).await? {
            return Err(StoreError::AlreadyConnected {
                subscription: s.azure_id.to_ascii_lowercase(),
                connection: holder,
            });
        }
    }
    Ok(())
}

/// Moves a subscription, with what was read of it, to another connection.
async fn move_subscription(
    tx: &mut Tx,
    scope: &OrgScope,
    sub: &SubscriptionId,
    from: ConnectionId,
    to: ConnectionId,
) -> Result<()> {
    crate::inventory::bump_rev(tx, scope, &sub.to_string()).await?;
    crate::evidence::bump_evidence_rev(tx, scope).await?;
    for table in ["subscriptions", "resources"] {
        sqlx::query(&format!(
            "UPDATE {table} SET connection_id = $4 WHERE org_id = $1 AND subscription_id = $2 AND connection_id = $3"
        ))
        .bind(scope.id())
        .bind(sub.to_string())
        .bind(from.to_string())
        .bind(to.to_string())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Applies what lowering a level removes (see `Store::set_sync_level`).
async fn apply_level_change(
    tx: &mut Tx,
    scope: &OrgScope,
    id: SubscriptionId,
    level: SyncLevel,
    change: LevelChange,
    now: i64,
) -> Result<LevelChangeCounts> {
    let mut counts = LevelChangeCounts::default();
    let sub = id.to_string();
    crate::inventory::bump_rev(tx, scope, &sub).await?;
    crate::evidence::bump_evidence_rev(tx, scope).await?;
    let in_sub = "resource_id IN (SELECT resource_id FROM resources WHERE org_id = $1 AND subscription_id = $2)";
    if change.purge_tags || change.purge_resources {
        counts.tags_purged = sqlx::query(&format!(
            "DELETE FROM resource_tags WHERE org_id = $1 AND {in_sub}"
        ))
        .bind(scope.id())
        .bind(&sub)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        counts.history_purged = sqlx::query(&format!(
            "DELETE FROM tag_history WHERE org_id = $1 AND {in_sub}"
        ))
        .bind(scope.id())
        .bind(&sub)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        sqlx::query("UPDATE resources SET tags = NULL WHERE org_id = $1 AND subscription_id = $2 AND tags IS NOT NULL")
            .bind(scope.id())
            .bind(&sub)
            .execute(&mut **tx)
            .await?;
        // The resource groups' and subscription's tags (tag coverage's
        // suggestions) go with the resources' own.
        sqlx::query("DELETE FROM scope_tags WHERE org_id = $1 AND subscription_id = $2")
            .bind(scope.id())
            .bind(&sub)
            .execute(&mut **tx)
            .await?;
    }
    if change.cancel_edits {
        counts.edits_cancelled = sqlx::query(
            "UPDATE tag_edits SET state = 'cancelled', reason = $3, updated_at = $4 \
             WHERE org_id = $1 AND subscription_id = $2 AND state IN ('pending', 'local', 'conflict')",
        )
        .bind(scope.id())
        .bind(&sub)
        .bind(format!(
            "the subscription was set to {level}, which does not read tags: the edit was cancelled"
        ))
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    } else if change.pending_to_local {
        counts.edits_made_local = sqlx::query(
            "UPDATE tag_edits SET state = 'local', reason = $3, updated_at = $4 \
             WHERE org_id = $1 AND subscription_id = $2 AND state = 'pending'",
        )
        .bind(scope.id())
        .bind(&sub)
        .bind("the subscription was set to read_tags_only: the edit is kept in cloudkeep and never written to Azure")
        .bind(now)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    if change.purge_resources {
        counts.resources_purged =
            sqlx::query("DELETE FROM resources WHERE org_id = $1 AND subscription_id = $2")
                .bind(scope.id())
                .bind(&sub)
                .execute(&mut **tx)
                .await?
                .rows_affected();
        sqlx::query("UPDATE subscriptions SET inventory_at = NULL WHERE org_id = $1 AND subscription_id = $2")
            .bind(scope.id())
            .bind(&sub)
            .execute(&mut **tx)
            .await?;
    }
    Ok(counts)
}

async fn insert_subscriptions(
    tx: &mut Tx,
    scope: &OrgScope,
    connection: ConnectionId,
    subscriptions: &[NewSubscription],
    now: i64,
) -> Result<()> {
    crate::evidence::bump_evidence_rev(tx, scope).await?;
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
        .bind(serde_json::to_string(&s.permissions).unwrap_or_default())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(|e| crate::conflict(e, "subscription", &s.azure_id))?;
    }
    Ok(())
}
