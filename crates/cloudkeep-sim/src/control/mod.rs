//! The control API under `/_sim/`: the scenario, the request log, and the
//! out-of-band changes tests make (as someone in the portal would).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{Response, StatusCode};
use axum::routing::{get, post};
use chrono::{Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::Faults;
use crate::server::json;
use crate::state::SimState;
use crate::world::cost::catalogue;
use crate::world::{
    CostProfile, Extra, PrincipalKind, Resource, RoleAssignment, World, hash_str, remove_tag,
    set_tag,
};

mod cost;
mod posture;

type St = State<Arc<SimState>>;

pub(crate) fn bad_request(message: impl Into<String>) -> Response<Body> {
    json(
        StatusCode::BAD_REQUEST,
        &json!({"error": {"code": "BadRequest", "message": message.into()}}),
    )
}

pub(crate) fn not_found(message: impl Into<String>) -> Response<Body> {
    json(
        StatusCode::NOT_FOUND,
        &json!({"error": {"code": "NotFound", "message": message.into()}}),
    )
}

pub(crate) fn ok(body: Value) -> Response<Body> {
    json(StatusCode::OK, &body)
}

pub fn routes() -> axum::Router<Arc<SimState>> {
    axum::Router::new()
        .route("/scenario", get(scenario))
        .route("/requests", get(requests))
        .route("/tags", post(change_tags))
        .route("/resources", post(create_resource).delete(delete_resource))
        .route("/storage/public-access", post(storage_public_access))
        .route("/keys/rotate", post(rotate_key))
        .route("/keys/expire", post(expire_key))
        .route("/role-assignments", post(add_role).delete(remove_role))
        .route("/secrets/expire", post(expire_secret))
        .route("/clock/advance", post(advance_clock))
        .route("/faults", get(get_faults).put(put_faults))
        .route("/reset", post(reset))
        .merge(posture::routes())
        .merge(cost::routes())
}

fn roles_of(world: &World, object_id: &str) -> Vec<Value> {
    world
        .role_assignments
        .iter()
        .filter(|a| a.principal_id.eq_ignore_ascii_case(object_id))
        .map(|a| {
            json!({
                "role": world.role_name(&a.role_definition_id),
                "role_definition_id": a.role_definition_id,
                "scope": a.scope,
                "assignment_id": a.id(),
            })
        })
        .collect()
}

pub fn scenario_json(world: &World) -> Value {
    let tenants: Vec<Value> = world
        .tenants
        .iter()
        .filter(|t| !t.is_app_home)
        .map(|t| {
            let mut sps = Vec::new();
            let mut users = Vec::new();
            let mut groups = Vec::new();
            // Foreign groups belong to another tenant but hold roles here.
            let here = |p: &&crate::world::Principal| {
                p.tenant_id == t.id || matches!(p.kind, PrincipalKind::ForeignGroup)
            };
            for p in world.principals.iter().filter(here) {
                match &p.kind {
                    PrincipalKind::ServicePrincipal { client_id, secret } => sps.push(json!({
                        "key": p.key,
                        "client_id": client_id,
                        "client_secret": secret.as_ref().map(|s| s.value.clone()).unwrap_or_else(|| world.app.secret.value.clone()),
                        "object_id": p.object_id,
                        "display_name": p.display_name,
                        "roles": roles_of(world, &p.object_id),
                    })),
                    PrincipalKind::User { upn, password, guest } => users.push(json!({
                        "key": p.key,
                        "upn": upn,
                        "object_id": p.object_id,
                        "password": password,
                        "display_name": p.display_name,
                        "guest": guest,
                        "roles": roles_of(world, &p.object_id),
                    })),
                    PrincipalKind::Group | PrincipalKind::ForeignGroup => groups.push(json!({
                        "key": p.key,
                        "object_id": p.object_id,
                        "display_name": p.display_name,
                        "principal_type": p.principal_type(),
                        "roles": roles_of(world, &p.object_id),
                    })),
                }
            }
            let subscriptions: Vec<Value> = world
                .subscriptions
                .iter()
                .filter(|s| s.tenant_id == t.id)
                .map(|s| {
                    json!({
                        "subscription_id": s.id,
                        "display_name": s.display_name,
                        "resource_count": world.live_resources().filter(|r| r.subscription_id == s.id).count(),
                        "resource_group_count": world.resource_groups.iter().filter(|g| g.subscription_id == s.id).count(),
                    })
                })
                .collect();
            json!({
                "tenant_id": t.id,
                "default_domain": t.default_domain,
                "display_name": t.display_name,
                "app_consented": world.app_consented_in.iter().any(|c| c.eq_ignore_ascii_case(&t.id)),
                "service_principals": sps,
                "users": users,
                "groups": groups,
                "domains": crate::msgraph::domains_of(t).iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
                "subscriptions": subscriptions,
            })
        })
        .collect();
    json!({
        "seed": world.seed,
        "preset": world.preset.name,
        "today": world.today().to_string(),
        "cost_start": world.cost_start().to_string(),
        "application": {
            "home_tenant_id": world.app.home_tenant_id,
            "client_id": world.app.client_id,
            "client_secret": world.app.secret.value,
            "display_name": world.app.display_name,
        },
        "tenants": tenants,
        "custom_roles": world.custom_roles.iter().map(|c| json!({
            "id": c.id, "name": c.name, "actions": c.actions,
            "not_actions": c.not_actions, "data_actions": c.data_actions,
            "assignable_scopes": c.assignable_scopes,
        })).collect::<Vec<_>>(),
        "cost_events": world.cost_events.iter().map(|e| json!({
            "id": e.id, "kind": e.kind.name(), "scope": e.scope,
            "from": e.from.to_string(), "to": e.to.to_string(),
            "factor": e.factor, "note": e.note,
        })).collect::<Vec<_>>(),
        "totals": {
            "tenants": world.tenants.iter().filter(|t| !t.is_app_home).count(),
            "subscriptions": world.subscriptions.len(),
            "resources": world.live_resources().count(),
            "role_assignments": world.role_assignments.len(),
            "cost_days": (world.today() - world.cost_start()).num_days() + 1,
        },
    })
}

async fn scenario(State(st): St) -> Response<Body> {
    ok(scenario_json(&st.world()))
}

#[derive(Deserialize)]
struct Since {
    since: Option<u64>,
}

async fn requests(State(st): St, Query(q): Query<Since>) -> Response<Body> {
    let entries = st.log().since(q.since.unwrap_or(0));
    ok(json!(entries))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagChange {
    resource_id: String,
    #[serde(default = "merge")]
    operation: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

fn merge() -> String {
    "Merge".into()
}

async fn change_tags(State(st): St, Json(change): Json<TagChange>) -> Response<Body> {
    let mut world = st.world_mut();
    let Some(tags) = world.tags_at_mut(&change.resource_id) else {
        return not_found(format!(
            "no resource, resource group or subscription '{}'",
            change.resource_id
        ));
    };
    match change.operation.to_ascii_lowercase().as_str() {
        "merge" => change.tags.iter().for_each(|(k, v)| set_tag(tags, k, v)),
        "replace" => {
            tags.clear();
            change.tags.iter().for_each(|(k, v)| set_tag(tags, k, v));
        }
        "delete" => change.tags.keys().for_each(|k| remove_tag(tags, k)),
        other => {
            return bad_request(format!(
                "operation '{other}' is not one of Merge, Replace, Delete"
            ));
        }
    }
    let tags = tags.clone();
    ok(json!({"resource_id": change.resource_id, "tags": tags}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewResource {
    pub subscription_id: String,
    pub resource_group: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub name: String,
    pub location: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Adds a resource created at `created` costing `daily` a day (the middle
/// of its type's range when `None`); answers its id, or the refusal.
pub(crate) fn add_resource(
    world: &mut World,
    new: NewResource,
    created: chrono::DateTime<Utc>,
    daily: Option<f64>,
) -> Result<String, Box<Response<Body>>> {
    let Some(group) = world
        .resource_group(&new.subscription_id, &new.resource_group)
        .cloned()
    else {
        return Err(Box::new(not_found(format!(
            "no resource group '{}' in subscription '{}'",
            new.resource_group, new.subscription_id
        ))));
    };
    if new.resource_type.split('/').count() < 2 || new.name.is_empty() {
        return Err(Box::new(bad_request(
            "type must look like 'Microsoft.Compute/virtualMachines' and name must not be empty",
        )));
    }
    let spec = catalogue::by_type(&new.resource_type);
    let resource_type = spec.map_or(new.resource_type.clone(), |s| s.resource_type.to_string());
    let id = catalogue::resource_id(&group.id(), &resource_type, &new.name);
    if world.resource(&id).is_some() {
        return Err(Box::new(json(
            StatusCode::CONFLICT,
            &json!({"error": {"code": "Conflict", "message": format!("resource '{id}' exists")}}),
        )));
    }
    let daily = daily.unwrap_or_else(|| spec.map(|s| (s.daily.0 + s.daily.1) / 2.0).unwrap_or(0.0));
    let resource = Resource {
        id: id.clone(),
        subscription_id: group.subscription_id.clone(),
        resource_group: group.name.clone(),
        resource_type,
        name: new.name,
        location: new.location,
        kind: spec.and_then(|s| s.kind).map(str::to_string),
        sku: None,
        tags: new.tags,
        created,
        changed: created,
        deleted: None,
        cost: CostProfile {
            daily,
            growth_per_year: 0.0,
            weekend_dip: 0.0,
            reserved: false,
        },
        cost_seed: hash_str(world.seed, &id),
        extra: Extra::None,
    };
    world.add_resource(resource);
    Ok(id)
}

async fn create_resource(State(st): St, Json(new): Json<NewResource>) -> Response<Body> {
    let mut world = st.world_mut();
    let now = world.now();
    match add_resource(&mut world, new, now, None) {
        Ok(id) => json(StatusCode::CREATED, &json!({"id": id})),
        Err(refused) => *refused,
    }
}

#[derive(Deserialize)]
struct IdQuery {
    id: String,
}

async fn delete_resource(State(st): St, Query(q): Query<IdQuery>) -> Response<Body> {
    if st.world_mut().delete_resource(&q.id) {
        ok(json!({"deleted": q.id}))
    } else {
        not_found(format!("no resource '{}'", q.id))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicAccess {
    account_id: String,
    allow_blob_public_access: bool,
}

async fn storage_public_access(State(st): St, Json(req): Json<PublicAccess>) -> Response<Body> {
    let mut world = st.world_mut();
    match world.resource_mut(&req.account_id).map(|r| &mut r.extra) {
        Some(Extra::Storage(props)) => {
            props.allow_blob_public_access = Some(req.allow_blob_public_access);
            ok(
                json!({"account_id": req.account_id, "allow_blob_public_access": req.allow_blob_public_access}),
            )
        }
        _ => not_found(format!("no storage account '{}'", req.account_id)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRef {
    key_id: String,
}

/// Finds a key by its ARM id (`{vault}/keys/{name}`).
fn key_index(world: &World, key_id: &str) -> Option<usize> {
    let (vault, name) = key_id.rsplit_once("/keys/")?;
    world
        .keys
        .iter()
        .position(|k| k.vault_id.eq_ignore_ascii_case(vault) && k.name.eq_ignore_ascii_case(name))
}

async fn rotate_key(State(st): St, Json(req): Json<KeyRef>) -> Response<Body> {
    let mut world = st.world_mut();
    let now = world.now().timestamp();
    let Some(i) = key_index(&world, &req.key_id) else {
        return not_found(format!("no key '{}'", req.key_id));
    };
    let version = format!(
        "{:032x}",
        u128::from(hash_str(now as u64, &req.key_id)) << 64 | u128::from(now as u64)
    );
    let key = &mut world.keys[i];
    key.version = version.clone();
    key.created = now;
    key.updated = now;
    if key.expires.is_some_and(|e| e < now) {
        key.expires = Some(now + 365 * 86_400);
    }
    ok(json!({"key_id": req.key_id, "version": version}))
}

async fn expire_key(State(st): St, Json(req): Json<KeyRef>) -> Response<Body> {
    let mut world = st.world_mut();
    let now = world.now().timestamp();
    let Some(i) = key_index(&world, &req.key_id) else {
        return not_found(format!("no key '{}'", req.key_id));
    };
    world.keys[i].expires = Some(now - 86_400);
    world.keys[i].updated = now;
    ok(json!({"key_id": req.key_id, "expires": now - 86_400}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleChange {
    principal_id: String,
    role: String,
    scope: String,
    /// For a principal the directory does not hold (a `ForeignGroup`), or
    /// to record another type than the principal's own.
    #[serde(default)]
    principal_type: Option<String>,
}

/// The principal types ARM records on role assignments.
fn principal_type(name: &str) -> Option<&'static str> {
    [
        "User",
        "Group",
        "ServicePrincipal",
        "ForeignGroup",
        "Device",
    ]
    .into_iter()
    .find(|t| t.eq_ignore_ascii_case(name))
}

async fn add_role(State(st): St, Json(req): Json<RoleChange>) -> Response<Body> {
    let mut world = st.world_mut();
    let Some((role_id, _)) = world.resolve_role(&req.role) else {
        return bad_request(format!(
            "unknown role '{}'; use a built-in or custom role's name or id",
            req.role
        ));
    };
    let given_type = match req.principal_type.as_deref().map(principal_type) {
        Some(None) => {
            return bad_request(
                "principal_type is one of User, Group, ServicePrincipal, ForeignGroup, Device",
            );
        }
        Some(Some(t)) => Some(t),
        None => None,
    };
    let (principal_id, principal_type) = match (world.principal(&req.principal_id), given_type) {
        (Some(p), t) => (p.object_id.clone(), t.unwrap_or(p.principal_type())),
        (None, Some(t)) => (req.principal_id.clone(), t),
        (None, None) => return not_found(format!("no principal '{}'", req.principal_id)),
    };
    let name = uuid::Uuid::new_v4().to_string();
    let assignment = RoleAssignment {
        name,
        scope: req.scope.clone(),
        role_definition_id: role_id,
        principal_id,
        principal_type,
        created: Utc::now(),
        created_by: None,
    };
    let id = assignment.id();
    world.role_assignments.push(assignment);
    json(StatusCode::CREATED, &json!({"id": id}))
}

async fn remove_role(State(st): St, Json(req): Json<RoleChange>) -> Response<Body> {
    let mut world = st.world_mut();
    let Some((role_id, role_name)) = world.resolve_role(&req.role) else {
        return bad_request(format!("unknown role '{}'", req.role));
    };
    let before = world.role_assignments.len();
    world.role_assignments.retain(|a| {
        !(a.principal_id.eq_ignore_ascii_case(&req.principal_id)
            && a.role_definition_id == role_id
            && a.scope
                .eq_ignore_ascii_case(req.scope.trim_end_matches('/')))
    });
    let removed = before - world.role_assignments.len();
    if removed == 0 {
        return not_found(format!(
            "'{}' holds no {} at '{}'",
            req.principal_id, role_name, req.scope
        ));
    }
    ok(json!({"removed": removed}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientRef {
    client_id: String,
}

async fn expire_secret(State(st): St, Json(req): Json<ClientRef>) -> Response<Body> {
    let mut world = st.world_mut();
    let expired = Utc::now() - Duration::days(1);
    if world.app.client_id.eq_ignore_ascii_case(&req.client_id) {
        world.app.secret.expires = expired;
        return ok(json!({"client_id": req.client_id, "expired": true}));
    }
    for p in &mut world.principals {
        if let PrincipalKind::ServicePrincipal {
            client_id,
            secret: Some(secret),
        } = &mut p.kind
        {
            if client_id.eq_ignore_ascii_case(&req.client_id) {
                secret.expires = expired;
                return ok(json!({"client_id": req.client_id, "expired": true}));
            }
        }
    }
    not_found(format!("no application '{}'", req.client_id))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    days: i64,
}

async fn advance_clock(State(st): St, Json(req): Json<Advance>) -> Response<Body> {
    if !(0..=3650).contains(&req.days) {
        return bad_request("days must be between 0 and 3650; the clock only moves forward");
    }
    let mut world = st.world_mut();
    world.day_offset += req.days;
    world.generation += 1;
    ok(json!({"today": world.today().to_string()}))
}

async fn get_faults(State(st): St) -> Response<Body> {
    ok(json!(st.faults()))
}

async fn put_faults(State(st): St, body: axum::body::Bytes) -> Response<Body> {
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return bad_request(format!("invalid faults: {e}")),
    };
    if let Err(e) = faults.validate() {
        return bad_request(e.to_string());
    }
    st.set_faults(faults.clone());
    ok(json!(faults))
}

async fn reset(State(st): St) -> Response<Body> {
    st.reset();
    ok(json!({"reset": true}))
}
