//! Key vaults and the metadata of their keys and secrets, read through ARM
//! (Microsoft.KeyVault, api-version 2024-11-01) rather than each vault's
//! data plane, which a private vault refuses. Keys carry their rotation
//! policy from api-version 2022-07-01; secrets never carry their values.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::client::AzureClient;
use crate::error::AzureError;
use crate::fields::{count, epoch, flag, identity, properties, resource_group_of, text, text_at};
use crate::inventory::tags_of;
use crate::paging::Paged;
use crate::storage::network_exposure;
use crate::token::AccessToken;

const KEYVAULT_API: &str = "2024-11-01";

/// A key vault and its protection settings; settings Azure leaves out carry
/// its documented default.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyVault {
    pub id: String,
    pub name: String,
    pub resource_group: String,
    pub location: String,
    /// `https://{name}.vault.azure.net/`.
    pub vault_uri: String,
    /// `standard` or `premium`.
    pub sku: String,
    /// `enableSoftDelete` (absent = true: Azure turns it on for new vaults).
    pub soft_delete: bool,
    /// `softDeleteRetentionInDays` (absent = 90).
    pub soft_delete_retention_days: u64,
    /// `enablePurgeProtection` (absent = false).
    pub purge_protection: bool,
    /// `enableRbacAuthorization` (absent = false: access policies).
    pub rbac_authorization: bool,
    /// `publicNetworkAccess`, `Enabled` or `Disabled` (absent = `Enabled`).
    pub public_network_access: String,
    /// `networkAcls.defaultAction` (no `networkAcls` = `Allow`).
    pub network_default_action: String,
    /// The settings above Azure left out (ARM names), each read as its
    /// documented default.
    pub absent: Vec<&'static str>,
    pub tags: BTreeMap<String, String>,
}

/// The API version vaults, keys and secrets are read with.
pub const KEYVAULT_API_VERSION: &str = KEYVAULT_API;

/// Times a key or secret carries (`attributes`, epoch seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ItemTimes {
    pub created: Option<DateTime<Utc>>,
    pub updated: Option<DateTime<Utc>>,
    /// `exp`: when it expires; `None` for never.
    pub expires: Option<DateTime<Utc>>,
    /// `nbf`: not valid before.
    pub not_before: Option<DateTime<Utc>>,
}

/// A key's metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct VaultKey {
    pub id: String,
    pub name: String,
    /// `attributes.enabled` (absent = true).
    pub enabled: bool,
    /// `RSA`, `EC`, `RSA-HSM`, ...; empty when the list leaves it out.
    pub key_type: String,
    pub times: ItemTimes,
    /// `None` when the answer has no `rotationPolicy`.
    pub rotation_policy: Option<RotationPolicy>,
}

/// A key's rotation policy; durations are ISO 8601 (`P90D`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RotationPolicy {
    /// Rotate this long after the key version is created.
    pub rotate_after_create: Option<String>,
    /// Rotate this long before the key version expires.
    pub rotate_before_expiry: Option<String>,
    /// Notify this long before expiry.
    pub notify_before_expiry: Option<String>,
    /// The lifetime of each new key version.
    pub expiry_time: Option<String>,
}

impl RotationPolicy {
    /// Whether the policy rotates the key at all (a policy may only notify).
    pub fn rotates(&self) -> bool {
        self.rotate_after_create.is_some() || self.rotate_before_expiry.is_some()
    }
}

/// A secret's metadata (never its value).
#[derive(Debug, Clone, PartialEq)]
pub struct VaultSecret {
    pub id: String,
    pub name: String,
    /// `attributes.enabled` (absent = true).
    pub enabled: bool,
    pub content_type: Option<String>,
    pub times: ItemTimes,
}

fn vault_from(item: &Value) -> Result<KeyVault, AzureError> {
    let (id, name) = identity(item, "a key vault")?;
    let props = properties(item, "a key vault")?;
    let (public_network_access, network_default_action) = network_exposure(props);
    Ok(KeyVault {
        resource_group: resource_group_of(&id),
        location: text(item, "location"),
        vault_uri: text(props, "vaultUri"),
        sku: text_at(props, "/sku/name").unwrap_or_default(),
        soft_delete: flag(props.get("enableSoftDelete")).unwrap_or(true),
        soft_delete_retention_days: match count(props.get("softDeleteRetentionInDays")) {
            0 => 90,
            days => days,
        },
        purge_protection: flag(props.get("enablePurgeProtection")).unwrap_or(false),
        rbac_authorization: flag(props.get("enableRbacAuthorization")).unwrap_or(false),
        public_network_access,
        network_default_action,
        absent: crate::storage::absent_fields(
            props,
            &[
                "enableSoftDelete",
                "enablePurgeProtection",
                "enableRbacAuthorization",
                "publicNetworkAccess",
                "networkAcls.defaultAction",
            ],
        ),
        tags: tags_of(item.get("tags")),
        id,
        name,
    })
}

/// What keys and secrets share: id, name, properties, and from
/// `properties.attributes` whether it is enabled and its times.
fn vault_item<'v>(
    item: &'v Value,
    what: &str,
) -> Result<(String, String, &'v Value, bool, ItemTimes), AzureError> {
    let (id, name) = identity(item, what)?;
    let props = properties(item, what)?;
    let a = props.get("attributes").unwrap_or(&Value::Null);
    let times = ItemTimes {
        created: epoch(a.get("created")),
        updated: epoch(a.get("updated")),
        expires: epoch(a.get("exp")),
        not_before: epoch(a.get("nbf")),
    };
    Ok((
        id,
        name,
        props,
        flag(a.get("enabled")).unwrap_or(true),
        times,
    ))
}

fn rotation_policy_of(policy: &Value) -> RotationPolicy {
    let mut out = RotationPolicy {
        expiry_time: text_at(policy, "/attributes/expiryTime"),
        ..RotationPolicy::default()
    };
    let actions = policy
        .get("lifetimeActions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for action in actions {
        // ARM says `rotate`/`notify`, the data plane `Rotate`/`Notify`.
        let kind = text_at(action, "/action/type").unwrap_or_default();
        let after_create = text_at(action, "/trigger/timeAfterCreate");
        let before_expiry = text_at(action, "/trigger/timeBeforeExpiry");
        if kind.eq_ignore_ascii_case("rotate") {
            out.rotate_after_create = out.rotate_after_create.or(after_create);
            out.rotate_before_expiry = out.rotate_before_expiry.or(before_expiry);
        } else if kind.eq_ignore_ascii_case("notify") {
            out.notify_before_expiry = out.notify_before_expiry.or(before_expiry);
        }
    }
    out
}

fn key_from(item: &Value) -> Result<VaultKey, AzureError> {
    let (id, name, props, enabled, times) = vault_item(item, "a key")?;
    Ok(VaultKey {
        id,
        name,
        enabled,
        key_type: text(props, "kty"),
        times,
        rotation_policy: props
            .get("rotationPolicy")
            .filter(|p| p.is_object())
            .map(rotation_policy_of),
    })
}

fn secret_from(item: &Value) -> Result<VaultSecret, AzureError> {
    let (id, name, props, enabled, times) = vault_item(item, "a secret")?;
    Ok(VaultSecret {
        id,
        name,
        enabled,
        content_type: text_at(props, "/contentType"),
        times,
    })
}

impl AzureClient {
    /// The subscription's key vaults
    /// (`/subscriptions/{s}/providers/Microsoft.KeyVault/vaults`).
    pub fn key_vaults<'a>(
        &'a self,
        token: &'a AccessToken,
        subscription_id: &str,
    ) -> Paged<'a, KeyVault> {
        let path = ["Microsoft.KeyVault", "vaults"];
        self.provider_list(token, subscription_id, &path, KEYVAULT_API, vault_from)
    }

    /// The keys of a vault, given by its resource id (`KeyVault::id`).
    pub fn vault_keys<'a>(&'a self, token: &'a AccessToken, vault_id: &str) -> Paged<'a, VaultKey> {
        let url = self.scope_url(vault_id, &["keys"], &[("api-version", KEYVAULT_API)]);
        self.list_stream(token, url, key_from)
    }

    /// The secrets of a vault (metadata only), given by its resource id.
    pub fn vault_secrets<'a>(
        &'a self,
        token: &'a AccessToken,
        vault_id: &str,
    ) -> Paged<'a, VaultSecret> {
        let url = self.scope_url(vault_id, &["secrets"], &[("api-version", KEYVAULT_API)]);
        self.list_stream(token, url, secret_from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn applies_azure_s_defaults_to_sparse_vaults() {
        // As Vaults_ListBySubscription.json: no purge protection, RBAC or network fields.
        let v = vault_from(&json!({
            "id": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/sample-group/providers/Microsoft.KeyVault/vaults/sample-vault",
            "name": "sample-vault", "location": "westus", "tags": {},
            "properties": {"sku": {"family": "A", "name": "premium"}, "enableSoftDelete": true,
                "vaultUri": "https://sample-vault.vault.azure.net/", "provisioningState": "Succeeded"}
        }))
        .expect("vault");
        assert_eq!(v.resource_group, "sample-group");
        assert!(v.soft_delete && !v.purge_protection && !v.rbac_authorization);
        assert_eq!(
            (
                v.public_network_access.as_str(),
                v.network_default_action.as_str()
            ),
            ("Enabled", "Allow")
        );
        assert_eq!(
            (v.sku.as_str(), v.soft_delete_retention_days),
            ("premium", 90)
        );
        let bare = vault_from(
            &json!({"id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/v", "properties": {}}),
        )
        .expect("vault");
        assert!(bare.soft_delete, "soft delete is on unless said otherwise");
        assert_eq!(bare.absent.len(), 5);
        assert_eq!(
            v.absent,
            [
                "enablePurgeProtection",
                "enableRbacAuthorization",
                "publicNetworkAccess",
                "networkAcls.defaultAction"
            ]
        );
        // Without `properties` a vault cannot be judged: malformed, not defaults.
        let none = vault_from(
            &json!({"id": "/subscriptions/s/resourceGroups/g/providers/Microsoft.KeyVault/vaults/v"}),
        );
        assert!(matches!(none, Err(AzureError::Malformed(_))), "{none:?}");
    }

    #[test]
    fn reads_keys_with_and_without_rotation_policies() {
        // Keys_List.json's sparse item.
        let k = key_from(&json!({"name": "sample-key-name-1", "id": "/x/keys/sample-key-name-1",
            "properties": {"attributes": {"created": 1596493796, "enabled": true, "updated": 1596493796}}}))
        .expect("key");
        assert!(k.enabled && k.rotation_policy.is_none() && k.times.expires.is_none());
        assert_eq!(k.times.created.map(|t| t.timestamp()), Some(1596493796));
        let k = key_from(&json!({"name": "k", "properties": {"kty": "RSA",
            "attributes": {"enabled": false, "exp": 1700000000},
            "rotationPolicy": {"attributes": {"expiryTime": "P2Y"}, "lifetimeActions": [
                {"trigger": {"timeAfterCreate": "P90D"}, "action": {"type": "Rotate"}},
                {"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "notify"}}]}}}))
        .expect("key");
        assert!(!k.enabled);
        assert_eq!(k.times.expires.map(|t| t.timestamp()), Some(1700000000));
        let p = k.rotation_policy.expect("policy");
        assert!(p.rotates());
        assert_eq!(p.rotate_after_create.as_deref(), Some("P90D"));
        assert_eq!(p.notify_before_expiry.as_deref(), Some("P30D"));
        assert_eq!(p.expiry_time.as_deref(), Some("P2Y"));
        let notify_only = rotation_policy_of(&json!({"lifetimeActions": [
            {"trigger": {"timeBeforeExpiry": "P30D"}, "action": {"type": "notify"}}]}));
        assert!(!notify_only.rotates());
    }

    #[test]
    fn reads_secrets_without_values() {
        // Secrets_List.json's item, with an expiry.
        let s = secret_from(&json!({"id": "/x/secrets/secret-name", "name": "secret-name",
            "properties": {"attributes": {"enabled": true, "created": 1514941476, "updated": 1514941476, "exp": "1514941999"},
                "secretUri": "https://sample-vault.vault.azure.net/secrets/secret-name"}}))
        .expect("secret");
        assert_eq!(s.times.expires.map(|t| t.timestamp()), Some(1514941999));
        assert_eq!(s.content_type, None);
    }
}
