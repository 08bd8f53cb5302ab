//! Azure Resource Manager reads: paged GETs that follow `nextLink`
//! (through empty pages), subscriptions, and the role assignments that
//! apply to a principal at a subscription.

use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde_json::Value;

use crate::client::AzureClient;
use crate::error::{AzureError, arm_error, truncate_raw};
use crate::token::AccessToken;

const SUBSCRIPTIONS_API: &str = "2022-12-01";
const AUTHORIZATION_API: &str = "2022-04-01";

/// More pages than any real list has: a `nextLink` loop.
const MAX_PAGES: usize = 10_000;
/// Consecutive empty pages (each with a `nextLink`) tolerated in a row.
const MAX_EMPTY_PAGES: usize = 100;

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

/// A string field, or empty.
fn text(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
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
    let mut subscription_id = text(item, "subscriptionId");
    if subscription_id.is_empty() {
        subscription_id = text(item, "id")
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
    }
    if subscription_id.is_empty() {
        return Err(AzureError::Malformed(format!(
            "a subscription without an id: {}",
            truncate_raw(&item.to_string())
        )));
    }
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
    let role_definition_id = text(props, "roleDefinitionId")
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
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
    /// Every item of a paged ARM list: follows `nextLink` (verbatim, on
    /// the ARM endpoint only) through empty pages until a page has none.
    pub(crate) async fn list(
        &self,
        token: &AccessToken,
        first: Url,
    ) -> Result<Vec<Value>, AzureError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut pages = 0usize;
        let mut empty_in_a_row = 0usize;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(AzureError::Malformed(format!(
                    "the list at {} did not end after {MAX_PAGES} pages",
                    url.path()
                )));
            }
            let answer = self
                .send(Method::GET, &url, |request| {
                    request
                        .bearer_auth(token.token.expose())
                        .header(reqwest::header::ACCEPT, "application/json")
                })
                .await?;
            if !answer.status.is_success() {
                return Err(arm_error(answer.status, &answer.body));
            }
            if answer.status == StatusCode::NO_CONTENT || answer.body.is_empty() {
                break;
            }
            let page: Value = serde_json::from_slice(&answer.body).map_err(|e| {
                AzureError::Malformed(format!(
                    "a page of {} is not JSON ({e}): {}",
                    url.path(),
                    truncate_raw(&String::from_utf8_lossy(&answer.body))
                ))
            })?;
            if !page.is_object() {
                return Err(AzureError::Malformed(format!(
                    "a page of {} is not a JSON object: {}",
                    url.path(),
                    truncate_raw(&page.to_string())
                )));
            }
            let value = match page.get("value") {
                Some(Value::Array(v)) => v.as_slice(),
                None | Some(Value::Null) => &[],
                Some(other) => {
                    return Err(AzureError::Malformed(format!(
                        "a page of {} has a 'value' that is not a list: {}",
                        url.path(),
                        truncate_raw(&other.to_string())
                    )));
                }
            };
            items.extend(value.iter().cloned());
            let link = match page.get("nextLink") {
                Some(Value::String(l)) if !l.trim().is_empty() => Some(l.as_str()),
                _ => None,
            };
            if let Some(link) = link {
                empty_in_a_row = if value.is_empty() {
                    empty_in_a_row + 1
                } else {
                    0
                };
                if empty_in_a_row > MAX_EMPTY_PAGES {
                    return Err(AzureError::Malformed(format!(
                        "the list at {} answered {MAX_EMPTY_PAGES} empty pages in a row",
                        url.path()
                    )));
                }
                next = Some(self.next_link(link)?);
            }
        }
        tracing::debug!(pages, items = items.len(), "listed");
        Ok(items)
    }

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
