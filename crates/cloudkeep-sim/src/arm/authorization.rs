//! Microsoft.Authorization: role assignments (list with `atScope()` and
//! `principalId eq`, get, create, delete) and built-in role definitions.

use axum::http::{Method, StatusCode};
use chrono::Utc;
use serde_json::{Value, json};

use super::{ArmError, ArmResult, Ctx, arm_time, subscription_of};
use crate::roles::{self, BuiltinRole};
use crate::server::json;
use crate::world::{RoleAssignment, World, scope_contains};

const PAGE: usize = 500;

fn definition_id(scope_of_listing: &str, role_id: &str) -> String {
    match subscription_of(scope_of_listing) {
        Some(sub) => format!(
            "/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role_id}"
        ),
        None => format!("/providers/Microsoft.Authorization/roleDefinitions/{role_id}"),
    }
}

fn assignment_json(a: &RoleAssignment) -> Value {
    json!({
        "properties": {
            "roleDefinitionId": definition_id(&a.scope, &a.role_definition_id),
            "principalId": a.principal_id,
            "principalType": a.principal_type,
            "scope": a.scope,
            "condition": null,
            "conditionVersion": null,
            "createdOn": arm_time(a.created),
            "updatedOn": arm_time(a.created),
            "createdBy": a.created_by,
            "updatedBy": a.created_by,
            "delegatedManagedIdentityResourceId": null,
            "description": null,
        },
        "id": a.id(),
        "type": "Microsoft.Authorization/roleAssignments",
        "name": a.name,
    })
}

/// `$filter` forms ARM accepts for role assignment lists.
#[derive(Debug, Default)]
struct AssignmentFilter {
    at_scope: bool,
    principal: Option<String>,
}

fn parse_filter(raw: Option<&str>) -> Result<AssignmentFilter, ArmError> {
    let mut f = AssignmentFilter::default();
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(f);
    };
    for term in raw.split(" and ") {
        let t = term.trim();
        let lower = t.to_ascii_lowercase();
        if lower == "atscope()" {
            f.at_scope = true;
        } else if let Some(rest) = lower.strip_prefix("principalid eq ") {
            f.principal = Some(rest.trim().trim_matches('\'').to_string());
        } else if let Some(rest) = lower.strip_prefix("assignedto(") {
            f.principal = Some(
                rest.trim_end_matches(')')
                    .trim()
                    .trim_matches('\'')
                    .to_string(),
            );
        } else {
            return Err(ArmError::bad_request(
                "UnsupportedQuery",
                format!(
                    "The filter '{raw}' is not supported. Supported filters are 'atScope()', 'principalId eq {{id}}' and 'assignedTo({{id}})'."
                ),
            ));
        }
    }
    Ok(f)
}

pub fn role_assignments(ctx: &Ctx) -> ArmResult {
    let (scope, name) = (ctx.p("scope"), ctx.opt("name"));
    match (&ctx.method, name) {
        (&Method::GET, None) => list(ctx, scope),
        (&Method::GET, Some(name)) => get(ctx, scope, name),
        (&Method::PUT, Some(name)) => create(ctx, scope, name),
        (&Method::DELETE, Some(name)) => delete(ctx, scope, name),
        _ => Err(super::method_not_allowed(&ctx.method)),
    }
}

fn list(ctx: &Ctx, scope: &str) -> ArmResult {
    let filter = parse_filter(ctx.q("$filter"))?;
    let world = ctx.st.world();
    ctx.authorize(
        &world,
        "Microsoft.Authorization/roleAssignments/read",
        scope,
    )?;
    let items: Vec<&RoleAssignment> = world
        .role_assignments
        .iter()
        .filter(|a| {
            scope_contains(&a.scope, scope) || (!filter.at_scope && scope_contains(scope, &a.scope))
        })
        .filter(|a| {
            filter
                .principal
                .as_ref()
                .is_none_or(|p| a.principal_id.eq_ignore_ascii_case(p))
        })
        .collect();
    let body = ctx.page(&items, PAGE, |a| assignment_json(a))?;
    Ok(json(StatusCode::OK, &body))
}

fn find<'w>(world: &'w World, scope: &str, name: &str) -> Option<&'w RoleAssignment> {
    world.role_assignments.iter().find(|a| {
        a.name.eq_ignore_ascii_case(name) && a.scope.eq_ignore_ascii_case(&canonical(scope))
    })
}

fn not_found(name: &str) -> ArmError {
    ArmError::not_found(
        "RoleAssignmentNotFound",
        format!("The role assignment '{name}' is not found."),
    )
}

fn get(ctx: &Ctx, scope: &str, name: &str) -> ArmResult {
    let world = ctx.st.world();
    ctx.authorize(
        &world,
        "Microsoft.Authorization/roleAssignments/read",
        scope,
    )?;
    match find(&world, scope, name) {
        Some(a) => Ok(json(StatusCode::OK, &assignment_json(a))),
        None => Err(not_found(name)),
    }
}

fn create(ctx: &Ctx, scope: &str, name: &str) -> ArmResult {
    let body = ctx.json_body()?;
    if uuid::Uuid::parse_str(name).is_err() {
        return Err(ArmError::bad_request(
            "InvalidRoleAssignmentId",
            format!(
                "The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."
            ),
        ));
    }
    let props = body.get("properties").cloned().unwrap_or(Value::Null);
    let role_ref = props
        .get("roleDefinitionId")
        .and_then(Value::as_str)
        .unwrap_or("");
    let principal_id = props
        .get("principalId")
        .and_then(Value::as_str)
        .unwrap_or("");
    if role_ref.is_empty() || principal_id.is_empty() {
        return Err(ArmError::bad_request(
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: 'properties.roleDefinitionId and properties.principalId are required.'.",
        ));
    }
    let mut world = ctx.st.world_mut();
    ctx.authorize(
        &world,
        "Microsoft.Authorization/roleAssignments/write",
        scope,
    )?;
    let Some((role_id, _)) = world.resolve_role(role_ref) else {
        return Err(ArmError::bad_request(
            "RoleDefinitionDoesNotExist",
            format!(
                "The specified role definition with ID '{}' does not exist.",
                role_ref.rsplit('/').next().unwrap_or(role_ref)
            ),
        ));
    };
    let tid = ctx.claims.tid.clone();
    let Some(principal) = world
        .principal(principal_id)
        .filter(|p| p.tenant_id.eq_ignore_ascii_case(&tid))
        .cloned()
    else {
        return Err(ArmError::bad_request(
            "PrincipalNotFound",
            format!(
                "Principal {principal_id} does not exist in the directory {tid}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype"
            ),
        ));
    };
    let scope = canonical(scope);
    if let Some(existing) = find(&world, &scope, name) {
        if existing.role_definition_id == role_id
            && existing.principal_id.eq_ignore_ascii_case(principal_id)
        {
            return Ok(json(StatusCode::CREATED, &assignment_json(existing)));
        }
        return Err(ArmError::bad_request(
            "RoleAssignmentUpdateNotPermitted",
            "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
        ));
    }
    if world.role_assignments.iter().any(|a| {
        a.principal_id.eq_ignore_ascii_case(principal_id)
            && a.role_definition_id == role_id
            && a.scope.eq_ignore_ascii_case(&scope)
    }) {
        return Err(ArmError::new(
            StatusCode::CONFLICT,
            "RoleAssignmentExists",
            "The role assignment already exists.",
        ));
    }
    let assignment = RoleAssignment {
        name: name.to_ascii_lowercase(),
        scope,
        role_definition_id: role_id.clone(),
        principal_id: principal.object_id.clone(),
        principal_type: principal.principal_type(),
        created: Utc::now(),
        created_by: Some(ctx.caller().to_string()),
    };
    let body = assignment_json(&assignment);
    world.role_assignments.push(assignment);
    Ok(json(StatusCode::CREATED, &body))
}

fn canonical(scope: &str) -> String {
    let s = scope.trim_end_matches('/');
    if s.is_empty() {
        "/".into()
    } else {
        s.to_string()
    }
}

fn delete(ctx: &Ctx, scope: &str, name: &str) -> ArmResult {
    let mut world = ctx.st.world_mut();
    ctx.authorize(
        &world,
        "Microsoft.Authorization/roleAssignments/delete",
        scope,
    )?;
    let scope = canonical(scope);
    let Some(i) = world
        .role_assignments
        .iter()
        .position(|a| a.name.eq_ignore_ascii_case(name) && a.scope.eq_ignore_ascii_case(&scope))
    else {
        return Ok(json(StatusCode::NO_CONTENT, &Value::Null).map(|_| axum::body::Body::empty()));
    };
    let removed = world.role_assignments.remove(i);
    Ok(json(StatusCode::OK, &assignment_json(&removed)))
}

/// A role definition's JSON, built-in or custom, as seen from `scope`.
fn definition_json(scope: &str, r: &RoleView) -> Value {
    let prefix = if scope == "/" {
        String::new()
    } else {
        scope.trim_end_matches('/').to_string()
    };
    json!({
        "id": format!("{prefix}/providers/Microsoft.Authorization/roleDefinitions/{}", r.id),
        "type": "Microsoft.Authorization/roleDefinitions",
        "name": r.id,
        "properties": {
            "roleName": r.name,
            "type": if r.custom { "CustomRole" } else { "BuiltInRole" },
            "description": r.description,
            "assignableScopes": r.assignable_scopes,
            "permissions": [{
                "actions": r.actions,
                "notActions": r.not_actions,
                "dataActions": r.data_actions,
                "notDataActions": [],
            }],
            "createdOn": r.created_on,
            "updatedOn": r.updated_on,
            "createdBy": null,
            "updatedBy": null,
        },
    })
}

/// What a role definition's JSON shows, for built-in and custom roles alike.
struct RoleView {
    id: String,
    name: String,
    description: String,
    custom: bool,
    actions: Vec<String>,
    not_actions: Vec<String>,
    data_actions: Vec<String>,
    assignable_scopes: Vec<String>,
    created_on: String,
    updated_on: String,
}

fn builtin_view(r: &BuiltinRole) -> RoleView {
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    RoleView {
        id: r.id.into(),
        name: r.name.into(),
        description: r.description.into(),
        custom: false,
        actions: owned(r.actions),
        not_actions: owned(r.not_actions),
        data_actions: owned(r.data_actions),
        assignable_scopes: vec!["/".into()],
        created_on: "2015-02-02T21:55:09.8806423Z".into(),
        updated_on: "2024-04-16T18:12:31.5432618Z".into(),
    }
}

fn custom_view(c: &crate::world::CustomRole) -> RoleView {
    RoleView {
        id: c.id.clone(),
        name: c.name.clone(),
        description: c.description.clone(),
        custom: true,
        actions: c.actions.clone(),
        not_actions: c.not_actions.clone(),
        data_actions: c.data_actions.clone(),
        assignable_scopes: c.assignable_scopes.clone(),
        created_on: arm_time(c.created),
        updated_on: arm_time(c.created),
    }
}

/// Role definitions: built-in ones everywhere, custom ones where they are
/// assignable (at the scope or above it). Readable by any authenticated caller.
pub fn role_definitions(ctx: &Ctx) -> ArmResult {
    let (scope, id) = (ctx.p("scope"), ctx.opt("id"));
    let world = ctx.st.world();
    let visible = |c: &&crate::world::CustomRole| {
        scope == "/" || c.assignable_scopes.iter().any(|a| scope_contains(a, scope))
    };
    if let Some(id) = id {
        let found = roles::by_id(id).map(builtin_view).or_else(|| {
            world
                .custom_roles
                .iter()
                .filter(visible)
                .find(|c| c.id.eq_ignore_ascii_case(id))
                .map(custom_view)
        });
        return match found {
            Some(r) => Ok(json(StatusCode::OK, &definition_json(scope, &r))),
            None => Err(ArmError::not_found(
                "RoleDefinitionDoesNotExist",
                format!("The specified role definition with ID '{id}' does not exist."),
            )),
        };
    }
    let filter = ctx.q("$filter").unwrap_or("").trim().to_string();
    let lower = filter.to_ascii_lowercase();
    let by_name = lower.strip_prefix("rolename eq ").map(|_| {
        filter["roleName eq ".len()..]
            .trim()
            .trim_matches('\'')
            .to_string()
    });
    let by_type = lower
        .strip_prefix("type eq ")
        .map(|t| t.trim().trim_matches('\'').to_string());
    let items: Vec<RoleView> = roles::BUILTIN_ROLES
        .iter()
        .map(builtin_view)
        .chain(world.custom_roles.iter().filter(visible).map(custom_view))
        .filter(|r| {
            by_name
                .as_ref()
                .is_none_or(|n| r.name.eq_ignore_ascii_case(n))
        })
        .filter(|r| {
            by_type
                .as_ref()
                .is_none_or(|t| (t == "customrole") == r.custom)
        })
        .collect();
    let body = ctx.page(&items, PAGE, |r| definition_json(scope, r))?;
    Ok(json(StatusCode::OK, &body))
}
