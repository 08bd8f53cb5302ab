//! The role assignments that apply at a subscription, whoever holds them,
//! and the custom roles assignable there: what the evidence of who may do
//! what is read from (Microsoft.Authorization, api-version 2022-04-01).

use serde_json::Value;

use crate::RoleDefinition;
use crate::arm::{applies_at_subscription, role_definition_from};
use crate::client::AzureClient;
use crate::error::{AzureError, truncate_raw};
use crate::fields::{last_segment, text};
use crate::token::AccessToken;

const AUTHORIZATION_API: &str = "2022-04-01";

/// One role assignment at a subscription or above it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRoleAssignment {
    pub id: String,
    pub principal_id: String,
    /// `User`, `Group`, `ServicePrincipal`, `ForeignGroup`, ... as ARM says
    /// it (empty when left out).
    pub principal_type: String,
    /// The role definition's bare GUID, lower case.
    pub role_definition_id: String,
    /// `/`, a management group, or the subscription.
    pub scope: String,
}

fn assignment_from(item: &Value) -> Result<SubscriptionRoleAssignment, AzureError> {
    let props = item.get("properties").unwrap_or(&Value::Null);
    let malformed = |why: &str| {
        AzureError::Malformed(format!(
            "a role assignment {why}: {}",
            truncate_raw(&item.to_string())
        ))
    };
    let role_definition_id = last_segment(&text(props, "roleDefinitionId")).to_ascii_lowercase();
    if role_definition_id.is_empty() {
        return Err(malformed("without a roleDefinitionId"));
    }
    let principal_id = text(props, "principalId").to_ascii_lowercase();
    if principal_id.is_empty() {
        return Err(malformed("without a principalId"));
    }
    let id = text(item, "id");
    let mut scope = text(props, "scope");
    if scope.is_empty() {
        // Older answers leave the scope out; it is the id's prefix.
        let lower = id.to_ascii_lowercase();
        scope = match lower.find("/providers/microsoft.authorization/roleassignments/") {
            Some(0) => "/".into(),
            Some(at) => id[..at].to_string(),
            None => return Err(malformed("without a scope")),
        };
    }
    Ok(SubscriptionRoleAssignment {
        id,
        principal_id,
        principal_type: text(props, "principalType"),
        role_definition_id,
        scope,
    })
}

impl AzureClient {
    /// Every role assignment that applies at the subscription as a whole,
    /// inherited ones included
    /// (`/subscriptions/{s}/providers/Microsoft.Authorization/roleAssignments?$filter=atScope()`,
    /// following nextLink); assignments below it (resource groups,
    /// resources) are left out.
    pub async fn subscription_role_assignments(
        &self,
        token: &AccessToken,
        subscription_id: &str,
    ) -> Result<Vec<SubscriptionRoleAssignment>, AzureError> {
        let subscription_id = subscription_id.trim();
        let url = self.arm_url(
            &[
                "subscriptions",
                subscription_id,
                "providers",
                "Microsoft.Authorization",
                "roleAssignments",
            ],
            &[("$filter", "atScope()"), ("api-version", AUTHORIZATION_API)],
        )?;
        let mut out: Vec<SubscriptionRoleAssignment> = Vec::new();
        for item in self.list(token, url).await? {
            let a = assignment_from(&item)?;
            if applies_at_subscription(&a.scope, subscription_id)
                && !out
                    .iter()
                    .any(|known| known.id.eq_ignore_ascii_case(&a.id) && !a.id.is_empty())
            {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// The custom roles assignable at the subscription (or above it)
    /// (`/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions?$filter=type eq 'CustomRole'`).
    pub async fn custom_roles(
        &self,
        token: &AccessToken,
        subscription_id: &str,
    ) -> Result<Vec<RoleDefinition>, AzureError> {
        let url = self.arm_url(
            &[
                "subscriptions",
                subscription_id.trim(),
                "providers",
                "Microsoft.Authorization",
                "roleDefinitions",
            ],
            &[
                ("$filter", "type eq 'CustomRole'"),
                ("api-version", AUTHORIZATION_API),
            ],
        )?;
        self.list(token, url)
            .await?
            .iter()
            .map(role_definition_from)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_assignments_of_every_principal() {
        let a = assignment_from(&json!({
            "properties": {
                "roleDefinitionId": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/8E3AF657-A8FF-443C-A75C-2FE8C4BCB635",
                "principalId": "ABC", "principalType": "ForeignGroup", "scope": "/subscriptions/s",
                "createdBy": null, "delegatedManagedIdentityResourceId": null
            },
            "id": "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/r1"
        }))
        .expect("assignment");
        assert_eq!(a.role_definition_id, "8e3af657-a8ff-443c-a75c-2fe8c4bcb635");
        assert_eq!(
            (a.principal_id.as_str(), a.principal_type.as_str()),
            ("abc", "ForeignGroup")
        );
        let inherited = assignment_from(&json!({
            "properties": {"roleDefinitionId": "x", "principalId": "p"},
            "id": "/providers/Microsoft.Authorization/roleAssignments/r2"
        }))
        .expect("assignment");
        assert_eq!(inherited.scope, "/");
        assert!(assignment_from(&json!({"properties": {"roleDefinitionId": "x"}})).is_err());
    }
}
