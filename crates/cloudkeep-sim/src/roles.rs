//! Azure's built-in role definitions that the scenario uses, and the check
//! of an action against a role's permissions (ARM's wildcard semantics).

/// One built-in role: its well-known id and the control-plane permissions
/// Microsoft publishes for it (trimmed to what matters to the simulator).
#[derive(Debug, Clone, Copy)]
pub struct BuiltinRole {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub actions: &'static [&'static str],
    pub not_actions: &'static [&'static str],
    /// Data-plane actions (Key Vault keys and secrets); control-plane
    /// roles such as Owner have none.
    pub data_actions: &'static [&'static str],
}

pub const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
pub const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
pub const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
pub const SECURITY_READER: &str = "39bc4728-0917-49c7-9d2c-d95423bc2eb4";
pub const TAG_CONTRIBUTOR: &str = "4a9ae827-6dc8-4573-8ac7-8239d42aa03f";
pub const COST_MANAGEMENT_READER: &str = "72fafb9e-0641-4937-9268-a91bfd8191a3";
pub const USER_ACCESS_ADMINISTRATOR: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";
pub const RBAC_ADMINISTRATOR: &str = "f58310d9-a9f6-439a-9e8d-f62e7b41a168";
pub const KEY_VAULT_READER: &str = "21090545-7ca7-4776-b22c-e363652d74d2";
pub const KEY_VAULT_CRYPTO_USER: &str = "12338af0-0e69-4776-bea7-57ae8d297424";
pub const KEY_VAULT_SECRETS_USER: &str = "4633458b-17de-408a-b874-0445c86b69e6";
pub const KEY_VAULT_ADMINISTRATOR: &str = "00482a5a-887f-4fb3-b363-3b7fe8e74483";

/// The control-plane reads Key Vault's data roles come with.
const KEY_VAULT_READS: &[&str] = &[
    "Microsoft.Authorization/*/read",
    "Microsoft.Insights/alertRules/*",
    "Microsoft.Resources/deployments/*",
    "Microsoft.Resources/subscriptions/resourceGroups/read",
    "Microsoft.Support/*",
    "Microsoft.KeyVault/checkNameAvailability/read",
    "Microsoft.KeyVault/deletedVaults/read",
    "Microsoft.KeyVault/locations/*/read",
    "Microsoft.KeyVault/vaults/*/read",
    "Microsoft.KeyVault/operations/read",
];

pub static BUILTIN_ROLES: &[BuiltinRole] = &[
    BuiltinRole {
        id: OWNER,
        name: "Owner",
        description: "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
        actions: &["*"],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltinRole {
        id: CONTRIBUTOR,
        name: "Contributor",
        description: "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.",
        actions: &["*"],
        not_actions: &[
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
            "Microsoft.Purview/consents/write",
            "Microsoft.Purview/consents/delete",
        ],
        data_actions: &[],
    },
    BuiltinRole {
        id: READER,
        name: "Reader",
        description: "View all resources, but does not allow you to make any changes.",
        actions: &["*/read"],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltinRole {
        id: SECURITY_READER,
        name: "Security Reader",
        description: "Security Reader Role",
        actions: &[
            "Microsoft.Authorization/*/read",
            "Microsoft.Insights/alertRules/read",
            "Microsoft.operationalInsights/workspaces/*/read",
            "Microsoft.Resources/deployments/*/read",
            "Microsoft.Resources/subscriptions/read",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Security/*/read",
            "Microsoft.IoTSecurity/*/read",
            "Microsoft.Support/*/read",
            "Microsoft.Security/iotDefenderSettings/packageDownloads/action",
            "Microsoft.Security/iotDefenderSettings/downloadManagerActivation/action",
            "Microsoft.Security/iotSensors/downloadResetPassword/action",
            "Microsoft.IoTSecurity/defenderSettings/packageDownloads/action",
            "Microsoft.IoTSecurity/defenderSettings/downloadManagerActivation/action",
            "Microsoft.Management/managementGroups/read",
        ],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltinRole {
        id: TAG_CONTRIBUTOR,
        name: "Tag Contributor",
        description: "Lets you manage tags on entities, without providing access to the entities themselves.",
        actions: &[
            "Microsoft.Authorization/*/read",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Resources/subscriptions/resourceGroups/resources/read",
            "Microsoft.Resources/subscriptions/resources/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Support/*",
            "Microsoft.Resources/tags/*",
        ],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltinRole {
        id: COST_MANAGEMENT_READER,
        name: "Cost Management Reader",
        description: "Can view cost data and configuration (e.g. budgets, exports)",
        actions: &[
            "Microsoft.Consumption/*/read",
            "Microsoft.CostManagement/*/read",
            "Microsoft.Billing/billingPeriods/read",
            "Microsoft.Resources/subscriptions/read",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Support/*",
            "Microsoft.Advisor/configurations/read",
            "Microsoft.Advisor/recommendations/read",
            "Microsoft.Management/managementGroups/read",
            "Microsoft.Billing/billingProperty/read",
        ],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltinRole {
        id: USER_ACCESS_ADMINISTRATOR,
        name: "User Access Administrator",
        description: "Lets you manage user access to Azure resources.",
        actions: &["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltinRole {
        id: RBAC_ADMINISTRATOR,
        name: "Role Based Access Control Administrator",
        description: "Manage access to Azure resources by assigning roles using Azure RBAC. This role does not allow you to manage access using other ways, such as Azure Policy.",
        actions: &[
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete",
            "*/read",
            "Microsoft.Support/*",
        ],
        not_actions: &[],
        data_actions: &[],
    },
    BuiltinRole {
        id: KEY_VAULT_READER,
        name: "Key Vault Reader",
        description: "Read metadata of key vaults and its certificates, keys, and secrets. Cannot read sensitive values such as secret contents or key material. Only works for key vaults that use the 'Azure role-based access control' permission model.",
        actions: KEY_VAULT_READS,
        not_actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/*/read",
            "Microsoft.KeyVault/vaults/secrets/readMetadata/action",
        ],
    },
    BuiltinRole {
        id: KEY_VAULT_CRYPTO_USER,
        name: "Key Vault Crypto User",
        description: "Perform cryptographic operations using keys. Only works for key vaults that use the 'Azure role-based access control' permission model.",
        actions: &[],
        not_actions: &[],
        data_actions: &[
            "Microsoft.KeyVault/vaults/keys/read",
            "Microsoft.KeyVault/vaults/keys/update/action",
            "Microsoft.KeyVault/vaults/keys/backup/action",
            "Microsoft.KeyVault/vaults/keys/encrypt/action",
            "Microsoft.KeyVault/vaults/keys/decrypt/action",
            "Microsoft.KeyVault/vaults/keys/wrap/action",
            "Microsoft.KeyVault/vaults/keys/unwrap/action",
            "Microsoft.KeyVault/vaults/keys/sign/action",
            "Microsoft.KeyVault/vaults/keys/verify/action",
        ],
    },
    BuiltinRole {
        id: KEY_VAULT_SECRETS_USER,
        name: "Key Vault Secrets User",
        description: "Read secret contents. Only works for key vaults that use the 'Azure role-based access control' permission model.",
        actions: &[],
        not_actions: &[],
        data_actions: &["Microsoft.KeyVault/vaults/secrets/getSecret/action"],
    },
    BuiltinRole {
        id: KEY_VAULT_ADMINISTRATOR,
        name: "Key Vault Administrator",
        description: "Perform all data plane operations on a key vault and all objects in it, including certificates, keys, and secrets. Cannot manage key vault resources or manage role assignments. Only works for key vaults that use the 'Azure role-based access control' permission model.",
        actions: KEY_VAULT_READS,
        not_actions: &[],
        data_actions: &["Microsoft.KeyVault/vaults/*"],
    },
];

pub fn by_id(id: &str) -> Option<&'static BuiltinRole> {
    BUILTIN_ROLES.iter().find(|r| r.id.eq_ignore_ascii_case(id))
}

pub fn by_name(name: &str) -> Option<&'static BuiltinRole> {
    BUILTIN_ROLES
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(name))
}

/// Resolves a role given as a display name, a bare id or a full role
/// definition id (`/subscriptions/../roleDefinitions/{id}`).
pub fn resolve(name_or_id: &str) -> Option<&'static BuiltinRole> {
    let tail = name_or_id.rsplit('/').next().unwrap_or(name_or_id);
    by_id(tail).or_else(|| by_name(name_or_id))
}

/// ARM's action matching: case-insensitive, `*` matches any run of
/// characters (including `/`).
pub fn action_matches(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match p.split_first() {
            None => a.is_empty(),
            Some((b'*', rest)) => (0..=a.len()).any(|i| go(rest, &a[i..])),
            Some((c, rest)) => match a.split_first() {
                Some((d, arest)) if c.eq_ignore_ascii_case(d) => go(rest, arest),
                _ => false,
            },
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

/// Whether `actions` less `not_actions` allow `action`.
pub fn allows<S: AsRef<str>>(actions: &[S], not_actions: &[S], action: &str) -> bool {
    actions.iter().any(|p| action_matches(p.as_ref(), action))
        && !not_actions
            .iter()
            .any(|p| action_matches(p.as_ref(), action))
}

impl BuiltinRole {
    pub fn permits(&self, action: &str) -> bool {
        allows(self.actions, self.not_actions, action)
    }

    pub fn permits_data(&self, action: &str) -> bool {
        allows(self.data_actions, &[], action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_semantics() {
        let reader = by_id(READER).expect("reader");
        assert!(reader.permits("Microsoft.Resources/subscriptions/resources/read"));
        assert!(!reader.permits("Microsoft.Resources/tags/write"));
        let tags = by_name("tag contributor").expect("tag contributor");
        assert!(tags.permits("Microsoft.Resources/tags/write"));
        assert!(!tags.permits("Microsoft.Security/secureScores/read"));
        let contributor = by_id(CONTRIBUTOR).expect("contributor");
        assert!(!contributor.permits("Microsoft.Authorization/roleAssignments/write"));
        assert!(contributor.permits("Microsoft.Resources/tags/write"));
        let cost = by_id(COST_MANAGEMENT_READER).expect("cost");
        assert!(cost.permits("Microsoft.CostManagement/query/read"));
        assert!(!cost.permits("Microsoft.Resources/subscriptions/resources/read"));
        assert_eq!(
            resolve("/subscriptions/x/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7")
                .map(|r| r.name),
            Some("Reader")
        );
    }
}
