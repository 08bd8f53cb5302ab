//! Organisation data keys, wrapped by the key provider's master key, and
//! the secrets sealed under them: connection credentials and webhook
//! signing secrets.

use cloudkeep_domain::crypto::{CryptoError, DataKey, KeyProvider, WrappedKey};
use cloudkeep_domain::{ConnectionId, OrgId, SecretString};
use serde_json::json;
use sqlx::Row;

use crate::audit::AuditEntry;
use crate::{OrgScope, Result, Store, StoreError, within};

/// A credential encrypted for one connection, with the data key version used.
#[derive(Debug, Clone)]
pub struct SealedCredential {
    pub blob: Vec<u8>,
    pub data_key_version: i64,
}

/// A kind of secret sealed under an organisation's data key, as data key
/// rotation re-encrypts it: its table, id and blob columns, which rows
/// hold a live one, and how it is opened under the old key and sealed
/// under the new (each kind has its own associated data).
/// Opens a secret under the old key and seals it under the new.
type Reseal = fn(&DataKey, &DataKey, OrgId, uuid::Uuid, &[u8]) -> Result<Vec<u8>, CryptoError>;

struct SealedKind {
    table: &'static str,
    id: &'static str,
    blob: &'static str,
    live: &'static str,
    reseal: Reseal,
}

const SEALED: [SealedKind; 2] = [
    SealedKind {
        table: "connections",
        id: "connection_id",
        blob: "credential",
        live: "credential IS NOT NULL",
        reseal: |old, new, org, id, blob| {
            let c = ConnectionId::from_uuid(id);
            new.seal_credential(org, c, &old.open_credential(org, c, blob)?)
        },
    },
    SealedKind {
        table: "webhooks",
        id: "webhook_id",
        blob: "secret",
        live: "deleted_at IS NULL",
        reseal: |old, new, org, id, blob| {
            new.seal_webhook_secret(org, id, &old.open_webhook_secret(org, id, blob)?)
        },
    },
];

impl Store {
    /// The organisation's current data key (created on first use), unwrapped.
    async fn current_data_key(
        &self,
        scope: &OrgScope,
        provider: &dyn KeyProvider,
    ) -> Result<(i64, DataKey)> {
        if let Some(found) = self.data_key_versions(scope).await?.last() {
            return Ok((found.0, provider.unwrap(scope.org(), &found.1)?));
        }
        let key = DataKey::generate();
        let wrapped = provider.wrap(scope.org(), &key)?;
        let inserted = self
            .execute_write(
                sqlx::query(
                    "INSERT INTO data_keys (org_id, version, master_key_id, wrapped_key, created_at) VALUES ($1, 1, $2, $3, $4) \
                     ON CONFLICT (org_id, version) DO NOTHING",
                )
                .bind(scope.id())
                .bind(&wrapped.master_key_id)
                .bind(wrapped.blob)
                .bind(self.now_ms()),
            )
            .await?;
        if inserted.rows_affected() == 1 {
            return Ok((1, key));
        }
        // Another process made it first: use theirs.
        let versions = self.data_key_versions(scope).await?;
        let (v, w) = versions
            .last()
            .ok_or(StoreError::NotFound { what: "data key" })?;
        Ok((*v, provider.unwrap(scope.org(), w)?))
    }

    /// Every stored version of the organisation's data key, oldest first.
    async fn data_key_versions(&self, scope: &OrgScope) -> Result<Vec<(i64, WrappedKey)>> {
        let rows = sqlx::query("SELECT version, master_key_id, wrapped_key FROM data_keys WHERE org_id = $1 ORDER BY version")
            .bind(scope.id())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("version")?,
                    WrappedKey {
                        master_key_id: r.try_get("master_key_id")?,
                        blob: r.try_get("wrapped_key")?,
                    },
                ))
            })
            .collect()
    }

    async fn data_key(
        &self,
        scope: &OrgScope,
        provider: &dyn KeyProvider,
        version: i64,
    ) -> Result<DataKey> {
        let versions = self.data_key_versions(scope).await?;
        let (_, wrapped) = versions
            .iter()
            .find(|(v, _)| *v == version)
            .ok_or(StoreError::NotFound { what: "data key" })?;
        Ok(provider.unwrap(scope.org(), wrapped)?)
    }

    /// Encrypts a credential for a connection under the current data key.
    pub async fn seal_credential(
        &self,
        scope: &OrgScope,
        provider: &dyn KeyProvider,
        connection: ConnectionId,
        secret: &SecretString,
    ) -> Result<SealedCredential> {
        let (version, key) = self.current_data_key(scope, provider).await?;
        Ok(SealedCredential {
            blob: key.seal_credential(scope.org(), connection, secret)?,
            data_key_version: version,
        })
    }

    /// Decrypts a connection's credential, in memory only.
    pub async fn open_credential(
        &self,
        scope: &OrgScope,
        provider: &dyn KeyProvider,
        connection: ConnectionId,
    ) -> Result<SecretString> {
        let row = sqlx::query("SELECT credential, data_key_version FROM connections WHERE org_id = $1 AND connection_id = $2")
            .bind(scope.id())
            .bind(connection.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound { what: "connection" })?;
        let blob: Option<Vec<u8>> = row.try_get("credential")?;
        let version: Option<i64> = row.try_get("data_key_version")?;
        let (Some(blob), Some(version)) = (blob, version) else {
            return Err(StoreError::NotFound {
                what: "credential (the connection was revoked)",
            });
        };
        let key = self.data_key(scope, provider, version).await?;
        Ok(key.open_credential(scope.org(), connection, &blob)?)
    }

    /// Encrypts a webhook's signing secret under the current data key.
    pub(crate) async fn seal_webhook_secret(
        &self,
        scope: &OrgScope,
        provider: &dyn KeyProvider,
        webhook: uuid::Uuid,
        secret: &SecretString,
    ) -> Result<SealedCredential> {
        let (version, key) = self.current_data_key(scope, provider).await?;
        Ok(SealedCredential {
            blob: key.seal_webhook_secret(scope.org(), webhook, secret)?,
            data_key_version: version,
        })
    }

    /// Decrypts a webhook's signing secret, in memory only.
    pub async fn open_webhook_secret(
        &self,
        scope: &OrgScope,
        provider: &dyn KeyProvider,
        webhook: uuid::Uuid,
    ) -> Result<SecretString> {
        let row = sqlx::query(
            "SELECT secret, data_key_version FROM webhooks WHERE org_id = $1 AND webhook_id = $2",
        )
        .bind(scope.id())
        .bind(webhook.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "webhook" })?;
        let blob: Vec<u8> = row.try_get("secret")?;
        let key = self
            .data_key(scope, provider, row.try_get("data_key_version")?)
            .await?;
        Ok(key.open_webhook_secret(scope.org(), webhook, &blob)?)
    }

    /// Re-wraps every data key not wrapped by the provider's current master
    /// key. Credential ciphertexts are untouched. Safe to run again after an
    /// interruption. Answers how many keys were re-wrapped.
    pub async fn rewrap_data_keys(
        &self,
        scope: &OrgScope,
        provider: &dyn KeyProvider,
        actor: &str,
    ) -> Result<usize> {
        let current = provider.current_key_id();
        let mut count = 0;
        for (version, wrapped) in self.data_key_versions(scope).await? {
            if wrapped.master_key_id == current {
                continue;
            }
            let key = provider.unwrap(scope.org(), &wrapped)?;
            let rewrapped = provider.wrap(scope.org(), &key)?;
            let entry = AuditEntry::new(
                actor,
                "master_key.rewrapped",
                format!("data_key:{version}"),
                json!({"from": wrapped.master_key_id, "to": current}),
            );
            let mut tx = self.audited(scope, entry).await?;
            within(async {
                sqlx::query("UPDATE data_keys SET master_key_id = $3, wrapped_key = $4 WHERE org_id = $1 AND version = $2")
                    .bind(scope.id())
                    .bind(version)
                    .bind(&rewrapped.master_key_id)
                    .bind(rewrapped.blob)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            })
            .await?;
            tx.commit().await?;
            count += 1;
        }
        Ok(count)
    }

    /// Whether any data key of any organisation is wrapped by another master key.
    pub async fn data_keys_wrapped_by_others(&self, current_master_key: &str) -> Result<i64> {
        // Operator query across organisations, by design (key rotation).
        let row = sqlx::query("SELECT COUNT(*) AS n FROM data_keys WHERE master_key_id <> $1")
            .bind(current_master_key)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Moves an organisation to a new data key: a new version, every
    /// credential and webhook secret re-encrypted under it, then the old
    /// versions deleted.
    /// An interrupted run is finished by running it again.
    pub async fn rotate_data_key(
        &self,
        scope: &OrgScope,
        provider: &dyn KeyProvider,
        actor: &str,
    ) -> Result<usize> {
        let versions = self.data_key_versions(scope).await?;
        let newest = versions.last().map(|(v, _)| *v).unwrap_or(0);
        // A rotation in progress has two versions: finish it rather than start another.
        let target = if versions.len() > 1 {
            newest
        } else {
            let key = DataKey::generate();
            let wrapped = provider.wrap(scope.org(), &key)?;
            self.execute_write(
                sqlx::query("INSERT INTO data_keys (org_id, version, master_key_id, wrapped_key, created_at) VALUES ($1, $2, $3, $4, $5)")
                    .bind(scope.id())
                    .bind(newest + 1)
                    .bind(&wrapped.master_key_id)
                    .bind(wrapped.blob)
                    .bind(self.now_ms()),
            )
            .await?;
            newest + 1
        };
        let new_key = self.data_key(scope, provider, target).await?;
        let mut count = 0;
        let mut counts = serde_json::Map::new();
        for kind in &SEALED {
            let rows = sqlx::query(&format!(
                "SELECT {id}, {blob}, data_key_version FROM {table} WHERE org_id = $1 AND {live} AND data_key_version <> $2",
                id = kind.id,
                blob = kind.blob,
                table = kind.table,
                live = kind.live,
            ))
            .bind(scope.id())
            .bind(target)
            .fetch_all(&self.pool)
            .await?;
            let mut done = 0;
            for row in rows {
                let id: uuid::Uuid = crate::parse(&row, kind.id)?;
                let old_version: i64 = row.try_get("data_key_version")?;
                let blob: Vec<u8> = row.try_get(kind.blob)?;
                let old_key = self.data_key(scope, provider, old_version).await?;
                let sealed = (kind.reseal)(&old_key, &new_key, scope.org(), id, &blob)?;
                // Only if the secret is still the one just re-encrypted: a
                // re-auth in between wins, and is re-encrypted by a later run.
                let sql = format!(
                    "UPDATE {table} SET {blob} = $3, data_key_version = $4 \
                     WHERE org_id = $1 AND {id} = $2 AND data_key_version = $5 AND {blob} = $6",
                    table = kind.table,
                    blob = kind.blob,
                    id = kind.id,
                );
                done += self
                    .execute_write(
                        sqlx::query(&sql)
                            .bind(scope.id())
                            .bind(id.to_string())
                            .bind(sealed)
                            .bind(target)
                            .bind(old_version)
                            .bind(blob),
                    )
                    .await?
                    .rows_affected() as usize;
            }
            counts.insert(kind.table.into(), json!(done));
            count += done;
        }
        let entry = AuditEntry::new(
            actor,
            "data_key.rotated",
            format!("data_key:{target}"),
            json!({"credentials": counts["connections"], "webhook_secrets": counts["webhooks"]}),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            // Old versions go only once no live secret uses them.
            let in_use: Vec<String> = SEALED
                .iter()
                .map(|k| {
                    format!(
                        "NOT EXISTS (SELECT 1 FROM {t} x WHERE x.org_id = data_keys.org_id AND x.{live} AND x.data_key_version = data_keys.version)",
                        t = k.table,
                        live = k.live
                    )
                })
                .collect();
            sqlx::query(&format!(
                "DELETE FROM data_keys WHERE org_id = $1 AND version < $2 AND {}",
                in_use.join(" AND ")
            ))
            .bind(scope.id())
            .bind(target)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        Ok(count)
    }
}
