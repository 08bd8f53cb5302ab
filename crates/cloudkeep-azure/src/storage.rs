//! Storage accounts and the settings that decide their exposure
//! (Microsoft.Storage, api-version 2025-01-01). Anonymous blob access and
//! network exposure are different findings and are kept apart.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::client::AzureClient;
use crate::error::AzureError;
use crate::fields::{canonical, flag, identity, properties, resource_group_of, text};
use crate::inventory::tags_of;
use crate::paging::Paged;
use crate::token::AccessToken;

const STORAGE_API: &str = "2025-01-01";

const NETWORK_ACCESS: &[&str] = &["Enabled", "Disabled", "SecuredByPerimeter"];
const DEFAULT_ACTIONS: &[&str] = &["Allow", "Deny"];
const TLS_VERSIONS: &[&str] = &["TLS1_0", "TLS1_1", "TLS1_2", "TLS1_3"];

/// A storage account with its exposure settings. Settings Azure leaves out
/// carry its documented default, never a guess.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageAccount {
    pub id: String,
    pub name: String,
    pub resource_group: String,
    pub location: String,
    /// `StorageV2`, `BlobStorage`, ... as ARM says it.
    pub kind: String,
    /// `Standard_LRS`, ...
    pub sku: String,
    /// Whether containers may allow anonymous reads (`allowBlobPublicAccess`;
    /// absent = false).
    pub allow_blob_public_access: bool,
    /// `Enabled`, `Disabled` or `SecuredByPerimeter` (`publicNetworkAccess`;
    /// absent = `Enabled`, access then decided by the network rules).
    pub public_network_access: String,
    /// `networkAcls.defaultAction`, `Allow` or `Deny` (absent = `Allow`).
    pub network_default_action: String,
    /// `TLS1_0` to `TLS1_3` (`minimumTlsVersion`; absent = `TLS1_0`).
    pub minimum_tls_version: String,
    /// `supportsHttpsTrafficOnly` (absent = true, its default since 2019-04-01).
    pub https_only: bool,
    /// Whether requests may authorise with the account's shared keys
    /// (`allowSharedKeyAccess`; absent = true, as Azure documents).
    pub allow_shared_key_access: bool,
    /// The settings above Azure left out (ARM names, `networkAcls.defaultAction`
    /// for the network rule), each read as its documented default.
    pub absent: Vec<&'static str>,
    pub tags: BTreeMap<String, String>,
}

/// The API version the settings are read with (their defaults are this
/// version's).
pub const STORAGE_API_VERSION: &str = STORAGE_API;

/// Which of `fields` (JSON pointers under `properties`, named as ARM spells
/// them with dots) an answer leaves out, or gives as `null` or `""`: each
/// is then judged by its documented default.
pub(crate) fn absent_fields(props: &Value, fields: &[&'static str]) -> Vec<&'static str> {
    fields
        .iter()
        .copied()
        .filter(|f| {
            let pointer = format!("/{}", f.replace('.', "/"));
            match props.pointer(&pointer) {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.trim().is_empty(),
                Some(_) => false,
            }
        })
        .collect()
}

/// `publicNetworkAccess` (absent = `Enabled`) and
/// `networkAcls.defaultAction` (absent = `Allow`), as storage accounts and
/// key vaults both carry them.
pub(crate) fn network_exposure(props: &Value) -> (String, String) {
    (
        canonical(props.get("publicNetworkAccess"), NETWORK_ACCESS, "Enabled"),
        canonical(
            props.pointer("/networkAcls/defaultAction"),
            DEFAULT_ACTIONS,
            "Allow",
        ),
    )
}

fn account_from(item: &Value) -> Result<StorageAccount, AzureError> {
    let (id, name) = identity(item, "a storage account")?;
    let props = properties(item, "a storage account")?;
    let (public_network_access, network_default_action) = network_exposure(props);
    Ok(StorageAccount {
        resource_group: resource_group_of(&id),
        location: text(item, "location"),
        kind: text(item, "kind"),
        sku: item.get("sku").map(|s| text(s, "name")).unwrap_or_default(),
        allow_blob_public_access: flag(props.get("allowBlobPublicAccess")).unwrap_or(false),
        public_network_access,
        network_default_action,
        minimum_tls_version: canonical(props.get("minimumTlsVersion"), TLS_VERSIONS, "TLS1_0"),
        https_only: flag(props.get("supportsHttpsTrafficOnly")).unwrap_or(true),
        allow_shared_key_access: flag(props.get("allowSharedKeyAccess")).unwrap_or(true),
        absent: absent_fields(
            props,
            &[
                "allowBlobPublicAccess",
                "publicNetworkAccess",
                "networkAcls.defaultAction",
                "minimumTlsVersion",
                "supportsHttpsTrafficOnly",
                "allowSharedKeyAccess",
            ],
        ),
        tags: tags_of(item.get("tags")),
        id,
        name,
    })
}

impl AzureClient {
    /// The subscription's storage accounts
    /// (`/subscriptions/{s}/providers/Microsoft.Storage/storageAccounts`).
    pub fn storage_accounts<'a>(
        &'a self,
        token: &'a AccessToken,
        subscription_id: &str,
    ) -> Paged<'a, StorageAccount> {
        let path = ["Microsoft.Storage", "storageAccounts"];
        self.provider_list(token, subscription_id, &path, STORAGE_API, account_from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn applies_azure_s_defaults_to_sparse_accounts() {
        // As StorageAccounts_List.json's second account: no exposure settings at all.
        let sparse = account_from(&json!({
            "name": "sto3699", "type": "Microsoft.Storage/storageAccounts",
            "id": "/subscriptions/{subscription-id}/resourceGroups/testcmk3/providers/Microsoft.Storage/storageAccounts/sto3699",
            "kind": "Storage", "location": "eastus",
            "properties": {"supportsHttpsTrafficOnly": false},
            "sku": {"name": "Standard_GRS", "tier": "Standard"}, "tags": {"key1": "value1"}
        }))
        .expect("account");
        assert_eq!(sparse.resource_group, "testcmk3");
        assert!(!sparse.allow_blob_public_access);
        assert_eq!(sparse.minimum_tls_version, "TLS1_0");
        assert_eq!(sparse.public_network_access, "Enabled");
        assert_eq!(sparse.network_default_action, "Allow");
        assert!(!sparse.https_only);
        assert!(
            sparse.allow_shared_key_access,
            "absent means shared keys are allowed"
        );
        assert_eq!(sparse.sku, "Standard_GRS");
        assert_eq!(
            sparse.absent,
            [
                "allowBlobPublicAccess",
                "publicNetworkAccess",
                "networkAcls.defaultAction",
                "minimumTlsVersion",
                "allowSharedKeyAccess"
            ],
            "supportsHttpsTrafficOnly was given"
        );
        let set = account_from(&json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a",
            "properties": {"allowBlobPublicAccess": "True", "minimumTlsVersion": "tls1_2",
                "publicNetworkAccess": "disabled", "networkAcls": {"defaultAction": "deny"}}
        }))
        .expect("account");
        assert!(set.allow_blob_public_access && set.https_only);
        assert_eq!(
            (
                set.minimum_tls_version.as_str(),
                set.public_network_access.as_str(),
                set.network_default_action.as_str()
            ),
            ("TLS1_2", "Disabled", "Deny")
        );
        assert!(account_from(&json!({"properties": {}})).is_err());
        // Without `properties` an account cannot be judged: malformed, not public.
        let bare = account_from(&json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a",
            "name": "a", "location": "eastus"
        }));
        assert!(matches!(bare, Err(AzureError::Malformed(_))), "{bare:?}");
        let shared = account_from(&json!({
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/b",
            "properties": {"allowSharedKeyAccess": false}
        }))
        .expect("account");
        assert!(!shared.allow_shared_key_access);
    }
}
