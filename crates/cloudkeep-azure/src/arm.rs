//! Azure Resource Manager's directory reads: subscriptions, tenants, the
//! role assignments that apply to a principal at a subscription, and role
//! definitions.

use serde::Serialize;
use serde_json::Value;

use crate::client::AzureClient;
use crate::error::{AzureError, truncate_raw};
use crate::fields::{identity, key_or_id, last_segment, text};
use crate::paging::Paged;
use crate::token::AccessToken;

const SUBSCRIPTIONS_API: &str = "2022-12-01";
const AUTHORIZATION_API: &str = "2022-04-01";

/// A subscription the principal can see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzureSubscription {
    pub subscription_id: String,
    pub display_name: String,
    pub tenant_id: String,
    /// `Enabled`, `Warned`, `PastDue`, `Disabled` or `Deleted`, as ARM says it.
    pub state: String,
}

/// A role the principal holds, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleAssignment {
    /// The role definition's bare GUID, lower-case.
    pub role_definition_id: String,
    /// Where it is assigned (`/`, a management group, or the subscription).
    pub scope: String,
}

/// A tenant the token's principal belongs to (`GET /tenants`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AzureTenant {
    pub tenant_id: String,
    pub display_name: String,
    pub default_domain: String,
    pub domains: Vec<String>,
    /// ISO 3166 country, e.g. "US"; empty when not given.
    pub country_code: String,
    /// `Home`, `ProjectedBy` or `ManagedBy`, as ARM says it; empty when not given.
    pub category: String,
}

/// A role definition: what it allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleDefinition {
    /// The full id (`.../providers/Microsoft.Authorization/roleDefinitions/{guid}`).
    pub id: String,
    /// The bare GUID, lower-case.
    pub name: String,
    /// Its display name, e.g. "Reader".
    pub role_name: String,
    /// `BuiltInRole` or `CustomRole`.
    pub role_type: String,
    pub description: String,
    /// The union of its permission blocks.
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub not_data_actions: Vec<String>,
    pub assignable_scopes: Vec<String>,
}

/// The strings of a list field; anything else in it is skipped.
fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn tenant_from(item: &Value) -> Result<AzureTenant, AzureError> {
    let tenant_id = key_or_id(item, "tenantId", "a tenant")?;
    let mut domains = strings(item.get("domains"));
    let mut default_domain = text(item, "defaultDomain");
    if default_domain.is_empty() {
        default_domain = domains.first().cloned().unwrap_or_default();
    }
    if !default_domain.is_empty()
        && !domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(&default_domain))
    {
        domains.insert(0, default_domain.clone());
    }
    Ok(AzureTenant {
        tenant_id,
        display_name: text(item, "displayName"),
        default_domain,
        domains,
        country_code: text(item, "countryCode"),
        category: text(item, "tenantCategory"),
    })
}

pub(crate) fn role_definition_from(item: &Value) -> Result<RoleDefinition, AzureError> {
    let (id, name) = identity(item, "a role definition")?;
    let props = item.get("properties").unwrap_or(&Value::Null);
    let blocks = props
        .get("permissions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let union = |key: &str| -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        for s in blocks.iter().flat_map(|b| strings(b.get(key))) {
            if !all.iter().any(|known| known.eq_ignore_ascii_case(&s)) {
                all.push(s);
            }
        }
        all
    };
    Ok(RoleDefinition {
        name: name.to_ascii_lowercase(),
        role_name: text(props, "roleName"),
        role_type: text(props, "type"),
        description: text(props, "description"),
        actions: union("actions"),
        not_actions: union("notActions"),
        data_actions: union("dataActions"),
        not_data_actions: union("notDataActions"),
        assignable_scopes: strings(props.get("assignableScopes")),
        id,
    })
}

/// `scope` without trailing slashes ("/" stays "/"), lower-cased for comparison.
fn normal_scope(scope: &str) -> String {
    let trimmed = scope.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_ascii_lowercase()
    }
}

/// Whether an assignment at `scope` applies at the subscription as a whole:
/// it is the subscription itself or one of its ancestors (the root `/` or
/// a management group; a subscription's list only shows the management
/// groups above it). Assignments on resource groups or resources below
/// it, and anything else, do not.
pub(crate) fn applies_at_subscription(scope: &str, subscription_id: &str) -> bool {
    let scope = normal_scope(scope);
    scope == "/"
        || scope
            == format!(
                "/subscriptions/{}",
                subscription_id.trim().to_ascii_lowercase()
            )
        || scope.starts_with("/providers/microsoft.management/managementgroups/")
}

fn subscription_from(item: &Value) -> Result<AzureSubscription, AzureError> {
    let subscription_id = key_or_id(item, "subscriptionId", "a subscription")?;
    Ok(AzureSubscription {
        subscription_id,
        display_name: text(item, "displayName"),
        tenant_id: text(item, "tenantId"),
        state: text(item, "state"),
    })
}

/// The assignment's role and scope, or `None` when it is for someone else.
fn assignment_from(
    item: &Value,
    principal_id: Option<&str>,
) -> Result<Option<RoleAssignment>, AzureError> {
    let malformed = |why: &str| {
        AzureError::Malformed(format!(
            "a role assignment {why}: {}",
            truncate_raw(&item.to_string())
        ))
    };
    let props = item.get("properties").unwrap_or(&Value::Null);
    let principal = text(props, "principalId");
    if principal_id
        .is_some_and(|p| !principal.is_empty() && !principal.eq_ignore_ascii_case(p.trim()))
    {
        return Ok(None);
    }
    let role_definition_id = last_segment(&text(props, "roleDefinitionId")).to_ascii_lowercase();
    if role_definition_id.is_empty() {
        return Err(malformed("without a roleDefinitionId"));
    }
    let mut scope = text(props, "scope");
    if scope.is_empty() {
        // Older answers leave the scope out; it is the id's prefix.
        let id = text(item, "id");
        let lower = id.to_ascii_lowercase();
        if let Some(at) = lower.find("/providers/microsoft.authorization/roleassignments/") {
            scope = if at == 0 {
                "/".to_string()
            } else {
                id[..at].to_string()
            };
        }
    }
    if scope.is_empty() {
        return Err(malformed("without a scope"));
    }
    Ok(Some(RoleAssignment {
        role_definition_id,
        scope,
    }))
}

impl AzureClient {
    /// Every subscription the token's principal sees (follows nextLink), api-version 2022-12-01.
    pub async fn subscriptions(
        &self,
        token: &AccessToken,
    ) -> Result<Vec<AzureSubscription>, AzureError> {
        let url = self.arm_url(&["subscriptions"], &[("api-version", SUBSCRIPTIONS_API)])?;
        let mut subscriptions: Vec<AzureSubscription> = Vec::new();
        for item in self.list(token, url).await? {
            let s = subscription_from(&item)?;
            if !subscriptions.iter().any(|known| {
                known
                    .subscription_id
                    .eq_ignore_ascii_case(&s.subscription_id)
            }) {
                subscriptions.push(s);
            }
        }
        Ok(subscriptions)
    }

    /// The principal's role assignments that apply at the subscription
    /// (inherited included): lists
    /// `/subscriptions/{s}/providers/Microsoft.Authorization/roleAssignments?$filter=principalId eq '{id}'`
    /// (api-version 2022-04-01, following nextLink) and keeps those whose
    /// scope is the subscription or above it (`/`, a management group);
    /// assignments on resource groups and resources are left out.
    pub async fn role_assignments(
        &self,
        token: &AccessToken,
        subscription_id: &str,
        principal_id: &str,
    ) -> Result<Vec<RoleAssignment>, AzureError> {
        // OData string literal: a quote is written twice.
        let filter = format!(
            "principalId eq '{}'",
            principal_id.trim().replace('\'', "''")
        );
        self.assignments_at_subscription(token, subscription_id, &filter, Some(principal_id))
            .await
    }

    /// The roles a user holds on a subscription, directly or through the
    /// groups they belong to (`assignedTo`), as the consent flow needs to
    /// know where the signed-in user is Owner.
    pub async fn roles_assigned_to(
        &self,
        token: &AccessToken,
        subscription_id: &str,
        object_id: &str,
    ) -> Result<Vec<RoleAssignment>, AzureError> {
        let filter = format!("assignedTo('{}')", object_id.trim().replace('\'', "''"));
        self.assignments_at_subscription(token, subscription_id, &filter, None)
            .await
    }

    /// The tenants the token's principal belongs to (`GET /tenants`,
    /// api-version 2022-12-01), as a stream.
    pub fn tenants<'a>(&'a self, token: &'a AccessToken) -> Paged<'a, AzureTenant> {
        let url = self.arm_url(&["tenants"], &[("api-version", SUBSCRIPTIONS_API)]);
        self.list_stream(token, url, tenant_from)
    }

    /// A role definition by id (a bare GUID or a full role definition id)
    /// at a scope (`/` or a subscription, `/subscriptions/{s}`), api-version
    /// 2022-04-01.
    pub async fn role_definition(
        &self,
        token: &AccessToken,
        scope: &str,
        role_definition_id: &str,
    ) -> Result<RoleDefinition, AzureError> {
        let url = self.scope_url(
            scope,
            &[
                "providers",
                "Microsoft.Authorization",
                "roleDefinitions",
                last_segment(role_definition_id),
            ],
            &[("api-version", AUTHORIZATION_API)],
        );
        role_definition_from(&self.get_object(token, url).await?)
    }

    async fn assignments_at_subscription(
        &self,
        token: &AccessToken,
        subscription_id: &str,
        filter: &str,
        principal_id: Option<&str>,
    ) -> Result<Vec<RoleAssignment>, AzureError> {
        let subscription_id = subscription_id.trim();
        let url = self.arm_url(
            &[
                "subscriptions",
                subscription_id,
                "providers",
                "Microsoft.Authorization",
                "roleAssignments",
            ],
            &[("$filter", filter), ("api-version", AUTHORIZATION_API)],
        )?;
        let mut assignments: Vec<RoleAssignment> = Vec::new();
        for item in self.list(token, url).await? {
            let Some(a) = assignment_from(&item, principal_id)? else {
                continue;
            };
            if !applies_at_subscription(&a.scope, subscription_id) {
                continue;
            }
            if !assignments.iter().any(|known| {
                known.role_definition_id == a.role_definition_id
                    && normal_scope(&known.scope) == normal_scope(&a.scope)
            }) {
                assignments.push(a);
            }
        }
        Ok(assignments)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SUB: &str = "5A1C8E04-0D4B-4C1E-9C53-3F2B6A1D7E90";

    #[test]
    fn keeps_scopes_at_or_above_the_subscription() {
        let sub = SUB.to_ascii_lowercase();
        for scope in [
            "/".to_string(),
            format!("/subscriptions/{sub}"),
            format!("/subscriptions/{SUB}/"),
            "/providers/Microsoft.Management/managementGroups/root".to_string(),
        ] {
            assert!(applies_at_subscription(&scope, SUB), "{scope}");
        }
        for scope in [
            format!("/subscriptions/{sub}/resourceGroups/rg"),
            format!(
                "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a"
            ),
            "/subscriptions/00000000-0000-0000-0000-000000000000".to_string(),
            format!("/subscriptions/{sub}x"),
        ] {
            assert!(!applies_at_subscription(&scope, SUB), "{scope}");
        }
    }

    #[test]
    fn reads_assignments() {
        let item = json!({
            "properties": {
                "roleDefinitionId": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/ACDD72A7-3385-48EF-BD42-F606FBA81AE7",
                "principalId": "P1",
                "scope": "/subscriptions/s",
                "createdBy": null
            },
            "id": "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/a1"
        });
        let a = assignment_from(&item, Some("p1"))
            .expect("ok")
            .expect("mine");
        assert_eq!(a.role_definition_id, "acdd72a7-3385-48ef-bd42-f606fba81ae7");
        assert_eq!(a.scope, "/subscriptions/s");
        assert_eq!(assignment_from(&item, Some("p2")).expect("ok"), None);

        let no_scope = json!({
            "properties": {"roleDefinitionId": "/providers/Microsoft.Authorization/roleDefinitions/x"},
            "id": "/providers/Microsoft.Authorization/roleAssignments/a2"
        });
        let a = assignment_from(&no_scope, None).expect("ok").expect("mine");
        assert_eq!(a.scope, "/");
        assert!(matches!(
            assignment_from(&json!({"properties": {}}), None),
            Err(AzureError::Malformed(_))
        ));
    }

    #[test]
    fn reads_subscriptions() {
        let s = subscription_from(&json!({"id": "/subscriptions/abc", "displayName": "Prod", "state": "Enabled", "tenantId": null}))
            .expect("ok");
        assert_eq!(s.subscription_id, "abc");
        assert_eq!(s.display_name, "Prod");
        assert_eq!(s.tenant_id, "");
        assert!(subscription_from(&json!({"displayName": "x"})).is_err());
    }
}
