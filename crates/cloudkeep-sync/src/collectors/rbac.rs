//! Evidence of who may do what on a subscription: its role assignments
//! (at it and above it, whoever holds them) with their roles' names, and
//! the custom roles assignable there. Runs at every sync level: it reads
//! the subscription's access configuration, not its resources or tags.

use std::collections::{BTreeMap, BTreeSet};

use cloudkeep_azure::{RoleDefinition, SubscriptionRoleAssignment};
use cloudkeep_domain::SyncLevel;
use cloudkeep_domain::evidence::{CheckId, EvidenceSource};
use cloudkeep_domain::report::Counts;
use cloudkeep_store::Observation;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use crate::evidence::{NotCollected, all_refused, judged, record, subscription_subject};
use crate::{CollectContext, CollectError, Collector};

pub struct Rbac;

const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
const USER_ACCESS_ADMINISTRATOR: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";
const RBAC_ADMINISTRATOR: &str = "f58310d9-a9f6-439a-9e8d-f62e7b41a168";

/// Built-in roles that can change access or everything: privileged.
const PRIVILEGED: &[(&str, &str)] = &[
    (OWNER, "Owner"),
    (CONTRIBUTOR, "Contributor"),
    (USER_ACCESS_ADMINISTRATOR, "User Access Administrator"),
    (
        RBAC_ADMINISTRATOR,
        "Role Based Access Control Administrator",
    ),
];

/// A custom role grants everything when its actions hold `*` itself.
fn grants_everything(r: &RoleDefinition) -> bool {
    r.actions.iter().any(|a| a.trim() == "*")
}

/// What is known of a role definition id: its name, and whether it is privileged.
struct Role {
    name: String,
    privileged: bool,
}

impl Collector for Rbac {
    fn name(&self) -> &'static str {
        "rbac"
    }

    fn runs_at(&self, _level: SyncLevel) -> bool {
        true
    }

    fn collect<'a>(
        &'a self,
        ctx: CollectContext<'a>,
    ) -> BoxFuture<'a, Result<Counts, CollectError>> {
        Box::pin(async move {
            let subject = subscription_subject(&ctx);
            let sub = ctx.subscription.azure_id.clone();
            let guests = NotCollected::never_asked(
                "Microsoft Graph (User.Read.All)",
                "guest users",
                "guests are listed only by Microsoft Graph, which cloudkeep does not ask for",
            )
            .observation(CheckId::RbacGuestUsers, &subject);
            let assignments = match ctx
                .azure
                .subscription_role_assignments(&ctx.current_token().await, &sub)
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    let mut all = all_refused(
                        &ctx,
                        EvidenceSource::Rbac,
                        "Microsoft.Authorization/roleAssignments",
                        e,
                    )?;
                    all.retain(|o| o.check != CheckId::RbacGuestUsers);
                    all.push(guests);
                    return record(&ctx, EvidenceSource::Rbac, &all).await;
                }
            };
            let custom = match ctx
                .azure
                .custom_roles(&ctx.current_token().await, &sub)
                .await
            {
                Ok(c) => Ok(c),
                Err(e) => Err(NotCollected::from_error(
                    &ctx,
                    EvidenceSource::Rbac,
                    "Microsoft.Authorization/roleDefinitions",
                    e,
                )?),
            };
            let roles = resolve_roles(&ctx, &assignments, custom.as_deref().unwrap_or(&[])).await;
            let mut observations = vec![
                owner_count(&subject, &assignments),
                user_access_administrators(&subject, &assignments),
                privileged_foreign_groups(&subject, &assignments, &roles),
                privileged_users(&subject, &sub, &assignments, &roles),
                guests,
            ];
            observations.push(match &custom {
                Ok(custom) => custom_owner_roles(&subject, &sub, custom, &assignments),
                Err(refused) => refused.observation(CheckId::RbacCustomOwnerRoles, &subject),
            });
            record(&ctx, EvidenceSource::Rbac, &observations).await
        })
    }
}

/// Names and privilege of every role assigned: built-in privileged roles
/// by id, custom roles from their list, the rest asked for one by one (a
/// role that cannot be read keeps its id as its name).
async fn resolve_roles(
    ctx: &CollectContext<'_>,
    assignments: &[SubscriptionRoleAssignment],
    custom: &[RoleDefinition],
) -> BTreeMap<String, Role> {
    let mut roles: BTreeMap<String, Role> = BTreeMap::new();
    for (id, name) in PRIVILEGED {
        roles.insert(
            id.to_string(),
            Role {
                name: name.to_string(),
                privileged: true,
            },
        );
    }
    for r in custom {
        roles.insert(
            r.name.clone(),
            Role {
                name: r.role_name.clone(),
                privileged: grants_everything(r),
            },
        );
    }
    let scope = subscription_subject(ctx);
    let unknown: BTreeSet<&str> = assignments
        .iter()
        .map(|a| a.role_definition_id.as_str())
        .filter(|id| !roles.contains_key(*id))
        .collect();
    for id in unknown {
        let role = match ctx
            .azure
            .role_definition(&ctx.current_token().await, &scope, id)
            .await
        {
            Ok(r) => Role {
                privileged: r.role_type.eq_ignore_ascii_case("CustomRole") && grants_everything(&r),
                name: r.role_name,
            },
            Err(e) => {
                tracing::debug!(role = id, error = %e, "a role definition could not be read");
                Role {
                    name: id.to_string(),
                    privileged: false,
                }
            }
        };
        roles.insert(id.to_string(), role);
    }
    roles
}

/// An assignment as facts: who, what kind of principal, where, which role.
fn held(a: &SubscriptionRoleAssignment, roles: Option<&BTreeMap<String, Role>>) -> Value {
    let mut v = json!({
        "principal_id": a.principal_id,
        "principal_type": a.principal_type,
        "scope": a.scope.to_ascii_lowercase(),
    });
    if let Some(roles) = roles {
        v["role"] = json!(
            roles
                .get(&a.role_definition_id)
                .map_or(a.role_definition_id.as_str(), |r| r.name.as_str())
        );
    }
    v
}

/// Facts in a stable order, so an unchanged answer fingerprints the same.
fn sorted(mut items: Vec<Value>) -> Vec<Value> {
    items.sort_by_key(|v| v.to_string());
    items.dedup();
    items
}

fn owner_count(subject: &str, assignments: &[SubscriptionRoleAssignment]) -> Observation {
    let owners: Vec<&SubscriptionRoleAssignment> = assignments
        .iter()
        .filter(|a| a.role_definition_id == OWNER)
        .collect();
    let distinct: BTreeSet<&str> = owners.iter().map(|a| a.principal_id.as_str()).collect();
    let n = distinct.len();
    judged(
        CheckId::RbacOwnerCount,
        subject,
        json!({
            "owners": sorted(owners.iter().map(|a| held(a, None)).collect()),
            "distinct_principals": n,
            "allowed": "2 to 3",
        }),
        (2..=3).contains(&n),
        || format!("{n} distinct principals hold Owner at the subscription; 2 to 3 are allowed"),
    )
}

/// A check that passes when nothing is found, listing what was (`key` in
/// the facts, in a stable order).
fn none_found(
    check: CheckId,
    subject: &str,
    key: &str,
    found: Vec<Value>,
    why: impl FnOnce(usize) -> String,
) -> Observation {
    let n = found.len();
    judged(
        check,
        subject,
        json!({ key: sorted(found) }),
        n == 0,
        || why(n),
    )
}

fn custom_owner_roles(
    subject: &str,
    subscription: &str,
    custom: &[RoleDefinition],
    assignments: &[SubscriptionRoleAssignment],
) -> Observation {
    let sub_scope = format!("/subscriptions/{}", subscription.to_ascii_lowercase());
    let offending: Vec<Value> = custom
        .iter()
        .filter(|r| grants_everything(r))
        .filter(|r| {
            r.assignable_scopes.iter().any(|s| {
                let s = s.trim().trim_end_matches('/').to_ascii_lowercase();
                s.is_empty()
                    || s == sub_scope
                    || s.starts_with("/providers/microsoft.management/managementgroups/")
            })
        })
        .map(|r| {
            json!({
                "id": r.name, "name": r.role_name,
                "assigned": assignments.iter().any(|a| a.role_definition_id == r.name),
            })
        })
        .collect();
    none_found(
        CheckId::RbacCustomOwnerRoles,
        subject,
        "roles",
        offending,
        |n| format!("{n} custom roles with '*' actions are assignable at the subscription"),
    )
}

fn user_access_administrators(
    subject: &str,
    assignments: &[SubscriptionRoleAssignment],
) -> Observation {
    let found = assignments
        .iter()
        .filter(|a| a.role_definition_id == USER_ACCESS_ADMINISTRATOR)
        .map(|a| held(a, None))
        .collect();
    none_found(
        CheckId::RbacUserAccessAdministrator,
        subject,
        "assignments",
        found,
        |n| format!("{n} User Access Administrator assignments apply at the subscription"),
    )
}

/// Privileged roles held by principals of a type (`User`,
/// `ForeignGroup`), only those assigned at `scope` when one is given.
fn privileged_held(
    assignments: &[SubscriptionRoleAssignment],
    roles: &BTreeMap<String, Role>,
    principal_type: &str,
    scope: Option<&str>,
) -> Vec<Value> {
    assignments
        .iter()
        .filter(|a| a.principal_type.eq_ignore_ascii_case(principal_type))
        .filter(|a| scope.is_none_or(|s| a.scope.trim_end_matches('/').eq_ignore_ascii_case(s)))
        .filter(|a| {
            roles
                .get(&a.role_definition_id)
                .is_some_and(|r| r.privileged)
        })
        .map(|a| held(a, Some(roles)))
        .collect()
}

fn privileged_foreign_groups(
    subject: &str,
    assignments: &[SubscriptionRoleAssignment],
    roles: &BTreeMap<String, Role>,
) -> Observation {
    let found = privileged_held(assignments, roles, "ForeignGroup", None);
    none_found(
        CheckId::RbacPrivilegedForeignGroups,
        subject,
        "assignments",
        found,
        |n| format!("{n} privileged roles are held by groups of another tenant (ForeignGroup)"),
    )
}

fn privileged_users(
    subject: &str,
    subscription: &str,
    assignments: &[SubscriptionRoleAssignment],
    roles: &BTreeMap<String, Role>,
) -> Observation {
    let sub_scope = format!("/subscriptions/{}", subscription.to_ascii_lowercase());
    let found = privileged_held(assignments, roles, "User", Some(&sub_scope));
    none_found(
        CheckId::RbacPrivilegedUsers,
        subject,
        "assignments",
        found,
        |n| {
            format!(
                "flagged for review: {n} privileged roles are held directly by users at the subscription (prefer groups and just-in-time access)"
            )
        },
    )
}
