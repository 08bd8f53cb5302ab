//! Control calls that change what the evidence checks read: storage
//! account and vault settings, keys' expiry and rotation policy, secrets'
//! expiry, Defender plans, secure-score controls, the security contact and
//! custom role definitions. Properties are named as ARM names them; `null`
//! makes a property absent, as Azure leaves it on resources that never set it.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Response, StatusCode};
use axum::routing::{patch, post, put};
use serde_json::{Map, Value, json};

use super::{bad_request, not_found, ok};
use crate::server::json;
use crate::state::SimState;
use crate::world::{
    CustomRole, Extra, Pricing, RotationPolicy, SecureScoreControl, SecurityContact, posture_guid,
};

type St = State<Arc<SimState>>;

pub fn routes() -> axum::Router<Arc<SimState>> {
    axum::Router::new()
        .route("/storage-accounts/{*id}", patch(patch_storage))
        .route("/vaults/{*id}", patch(patch_vault))
        .route("/pricings/{sub}/{name}", put(put_pricing))
        .route("/secure-scores/{sub}", put(put_secure_score))
        .route(
            "/security-contacts/{sub}",
            put(put_contact).delete(delete_contact),
        )
        .route("/role-definitions", post(create_role))
        .route("/role-definitions/{id}", axum::routing::delete(delete_role))
}

/// A field of a PATCH body: `None` when not given, `Some(None)` for `null`.
type Change<T> = Option<Option<T>>;

/// Reads the PATCH body's fields, refusing any this call does not know.
struct Fields {
    map: Map<String, Value>,
    errors: Vec<String>,
}

impl Fields {
    /// The body's fields, or why it is refused.
    fn new(body: Value, known: &[&str]) -> Result<Self, String> {
        let Value::Object(map) = body else {
            return Err("the body is a JSON object of ARM property names".into());
        };
        if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!(
                "unknown property '{k}'; known: {}",
                known.join(", ")
            ));
        }
        Ok(Fields {
            map,
            errors: Vec::new(),
        })
    }

    fn boolean(&mut self, key: &str) -> Change<bool> {
        let v = self.map.get(key)?;
        match v {
            Value::Null => Some(None),
            Value::Bool(b) => Some(Some(*b)),
            _ => {
                self.errors.push(format!("{key} is true, false or null"));
                None
            }
        }
    }

    fn number(&mut self, key: &str) -> Change<i64> {
        let v = self.map.get(key)?;
        match v {
            Value::Null => Some(None),
            v if v.as_i64().is_some() => Some(v.as_i64()),
            _ => {
                self.errors.push(format!("{key} is a whole number or null"));
                None
            }
        }
    }

    /// One of Azure's values for an enum property (matched case-insensitively).
    fn one_of(&mut self, key: &str, allowed: &[&'static str]) -> Change<&'static str> {
        let v = self.map.get(key)?;
        match v {
            Value::Null => Some(None),
            Value::String(s) => match allowed.iter().find(|a| a.eq_ignore_ascii_case(s)) {
                Some(a) => Some(Some(*a)),
                None => {
                    self.errors
                        .push(format!("{key} is one of {} or null", allowed.join(", ")));
                    None
                }
            },
            _ => {
                self.errors.push(format!("{key} is a string or null"));
                None
            }
        }
    }

    /// `networkAcls.defaultAction`.
    fn default_action(&mut self) -> Change<&'static str> {
        let acls = self.map.get("networkAcls")?.clone();
        let mut inner = Fields {
            map: acls.as_object().cloned().unwrap_or_default(),
            errors: Vec::new(),
        };
        let change = inner.one_of("defaultAction", &["Allow", "Deny"]);
        self.errors.append(&mut inner.errors);
        change
    }

    fn done(self) -> Result<(), String> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors.join("; "))
        }
    }
}

/// Sets an optional property from a change: unchanged, absent or a value.
fn apply<T>(target: &mut Option<T>, change: Change<T>) {
    if let Some(v) = change {
        *target = v;
    }
}

const ENABLED: &[&str] = &["Enabled", "Disabled"];
const STORAGE_NETWORK: &[&str] = &["Enabled", "Disabled", "SecuredByPerimeter"];

/// `PATCH /_sim/storage-accounts/{id}`: allowBlobPublicAccess,
/// publicNetworkAccess, networkAcls.defaultAction, supportsHttpsTrafficOnly,
/// minimumTlsVersion, allowSharedKeyAccess, allowCrossTenantReplication,
/// defaultToOAuthAuthentication.
async fn patch_storage(
    State(st): St,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response<Body> {
    let id = format!("/{}", id.trim_start_matches('/'));
    let mut f = match Fields::new(
        body,
        &[
            "allowBlobPublicAccess",
            "publicNetworkAccess",
            "networkAcls",
            "supportsHttpsTrafficOnly",
            "minimumTlsVersion",
            "allowSharedKeyAccess",
            "allowCrossTenantReplication",
            "defaultToOAuthAuthentication",
        ],
    ) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    let public_blob = f.boolean("allowBlobPublicAccess");
    let network = f.one_of("publicNetworkAccess", STORAGE_NETWORK);
    let action = f.default_action();
    let https = f.boolean("supportsHttpsTrafficOnly");
    let tls = f.one_of(
        "minimumTlsVersion",
        &["TLS1_0", "TLS1_1", "TLS1_2", "TLS1_3"],
    );
    let shared = f.boolean("allowSharedKeyAccess");
    let cross = f.boolean("allowCrossTenantReplication");
    let oauth = f.boolean("defaultToOAuthAuthentication");
    if let Err(e) = f.done() {
        return bad_request(e);
    }
    let mut world = st.world_mut();
    let Some(r) = world.resource_mut(&id) else {
        return not_found(format!("no storage account '{id}'"));
    };
    let Extra::Storage(p) = &mut r.extra else {
        return not_found(format!("'{id}' is not a storage account"));
    };
    apply(&mut p.allow_blob_public_access, public_blob);
    apply(&mut p.public_network_access, network);
    apply(&mut p.network_default_action, action);
    apply(&mut p.https_only, https);
    apply(&mut p.minimum_tls_version, tls);
    apply(&mut p.allow_shared_key_access, shared);
    apply(&mut p.allow_cross_tenant_replication, cross);
    apply(&mut p.default_to_oauth_authentication, oauth);
    let account = crate::arm::storage_json(r);
    ok(account)
}

/// `PATCH /_sim/vaults/{vault id}`: enableSoftDelete, enablePurgeProtection,
/// enableRbacAuthorization, publicNetworkAccess, networkAcls.defaultAction;
/// `PATCH /_sim/vaults/{vault id}/keys/{name}`: `exp` (epoch seconds) and
/// `rotationPolicy` (`{"rotateAfterCreate", "rotateBeforeExpiry",
/// "expiryTime"}` as ISO 8601 durations, or `null` for none);
/// `PATCH /_sim/vaults/{vault id}/secrets/{name}`: `exp`.
async fn patch_vault(
    State(st): St,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response<Body> {
    let id = format!("/{}", id.trim_start_matches('/'));
    let lower = id.to_ascii_lowercase();
    if let Some(i) = lower.rfind("/keys/") {
        return patch_key(&st, &id[..i], &id[i + 6..], body);
    }
    if let Some(i) = lower.rfind("/secrets/") {
        return patch_secret(&st, &id[..i], &id[i + 9..], body);
    }
    let mut f = match Fields::new(
        body,
        &[
            "enableSoftDelete",
            "enablePurgeProtection",
            "enableRbacAuthorization",
            "publicNetworkAccess",
            "networkAcls",
        ],
    ) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    let soft = f.boolean("enableSoftDelete");
    let purge = f.boolean("enablePurgeProtection");
    let rbac = f.boolean("enableRbacAuthorization");
    let network = f.one_of("publicNetworkAccess", ENABLED);
    let action = f.default_action();
    if let Err(e) = f.done() {
        return bad_request(e);
    }
    let mut world = st.world_mut();
    let Some(r) = world.resource_mut(&id) else {
        return not_found(format!("no vault '{id}'"));
    };
    let Extra::Vault(p) = &mut r.extra else {
        return not_found(format!("'{id}' is not a key vault"));
    };
    if let Some(v) = soft {
        // Soft delete cannot be absent: Azure reports true when unset.
        p.enable_soft_delete = v.unwrap_or(true);
    }
    apply(&mut p.enable_purge_protection, purge);
    apply(&mut p.enable_rbac_authorization, rbac);
    apply(&mut p.public_network_access, network);
    apply(&mut p.network_default_action, action);
    let r = r.clone();
    ok(crate::arm::vault_json(&world, &r))
}

fn patch_key(st: &SimState, vault: &str, name: &str, body: Value) -> Response<Body> {
    let mut f = match Fields::new(body, &["exp", "rotationPolicy"]) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    let exp = f.number("exp");
    let policy = match f.map.get("rotationPolicy") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::Object(p)) => {
            let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
            if let Some(k) = p.keys().find(|k| {
                !["rotateAfterCreate", "rotateBeforeExpiry", "expiryTime"].contains(&k.as_str())
            }) {
                return bad_request(format!(
                    "unknown rotationPolicy field '{k}'; known: rotateAfterCreate, rotateBeforeExpiry, expiryTime"
                ));
            }
            Some(Some(RotationPolicy {
                time_after_create: text("rotateAfterCreate"),
                time_before_expiry: text("rotateBeforeExpiry"),
                expiry_time: text("expiryTime"),
            }))
        }
        Some(_) => return bad_request("rotationPolicy is an object or null"),
    };
    if let Err(e) = f.done() {
        return bad_request(e);
    }
    let mut world = st.world_mut();
    let now = world.now().timestamp();
    let Some(k) = world
        .keys
        .iter_mut()
        .find(|k| k.vault_id.eq_ignore_ascii_case(vault) && k.name.eq_ignore_ascii_case(name))
    else {
        return not_found(format!("no key '{name}' in '{vault}'"));
    };
    apply(&mut k.expires, exp);
    apply(&mut k.rotation_policy, policy);
    k.updated = now;
    ok(json!({
        "key_id": format!("{vault}/keys/{}", k.name),
        "exp": k.expires,
        "rotation_policy": k.rotation_policy.as_ref().map(|p| json!({
            "rotateAfterCreate": p.time_after_create,
            "rotateBeforeExpiry": p.time_before_expiry,
            "expiryTime": p.expiry_time,
        })),
    }))
}

fn patch_secret(st: &SimState, vault: &str, name: &str, body: Value) -> Response<Body> {
    let mut f = match Fields::new(body, &["exp"]) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    let exp = f.number("exp");
    if let Err(e) = f.done() {
        return bad_request(e);
    }
    let mut world = st.world_mut();
    let now = world.now().timestamp();
    let Some(s) = world
        .secrets
        .iter_mut()
        .find(|s| s.vault_id.eq_ignore_ascii_case(vault) && s.name.eq_ignore_ascii_case(name))
    else {
        return not_found(format!("no secret '{name}' in '{vault}'"));
    };
    apply(&mut s.expires, exp);
    s.updated = now;
    ok(json!({ "secret_id": format!("{vault}/secrets/{}", s.name), "exp": s.expires }))
}

/// `PUT /_sim/pricings/{sub}/{plan}`: `{"pricingTier": "Standard"|"Free", "subPlan"}`.
async fn put_pricing(
    State(st): St,
    Path((sub, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response<Body> {
    let standard = match body.get("pricingTier").and_then(Value::as_str) {
        Some(t) if t.eq_ignore_ascii_case("standard") => true,
        Some(t) if t.eq_ignore_ascii_case("free") => false,
        _ => return bad_request("pricingTier is Standard or Free"),
    };
    let sub_plan = body
        .get("subPlan")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut world = st.world_mut();
    let now = world.now();
    let Some(state) = world.security.get_mut(&sub.to_ascii_lowercase()) else {
        return not_found(format!("no subscription '{sub}'"));
    };
    let plan = match state
        .pricings
        .iter_mut()
        .find(|p| p.name.eq_ignore_ascii_case(&name))
    {
        Some(p) => p,
        None => {
            state.pricings.push(Pricing {
                name: name.clone(),
                standard: false,
                sub_plan: None,
                enabled_since: None,
            });
            let last = state.pricings.len() - 1;
            &mut state.pricings[last]
        }
    };
    if standard && !plan.standard {
        plan.enabled_since = Some(now);
    }
    plan.standard = standard;
    plan.sub_plan = if standard { sub_plan } else { None };
    if !standard {
        plan.enabled_since = None;
    }
    ok(
        json!({"name": plan.name, "pricingTier": if standard { "Standard" } else { "Free" }, "subPlan": plan.sub_plan}),
    )
}

/// `PUT /_sim/secure-scores/{sub}`: `{"controls": [{"displayName", "max",
/// "healthy", "unhealthy", "notApplicable"}]}` replaces the controls; the
/// score is their sum, as Azure's is.
async fn put_secure_score(
    State(st): St,
    Path(sub): Path<String>,
    Json(body): Json<Value>,
) -> Response<Body> {
    let Some(list) = body.get("controls").and_then(Value::as_array) else {
        return bad_request(
            "controls is a list of {displayName, max, healthy, unhealthy, notApplicable}",
        );
    };
    let mut world = st.world_mut();
    let key = sub.to_ascii_lowercase();
    if world.subscription(&sub).is_none() {
        return not_found(format!("no subscription '{sub}'"));
    }
    let seed = world.seed;
    let mut controls = Vec::new();
    for c in list {
        let n = |k: &str| c.get(k).and_then(Value::as_u64).map(|v| v as u32);
        let (Some(display), Some(max), Some(healthy), Some(unhealthy)) = (
            c.get("displayName").and_then(Value::as_str),
            n("max"),
            n("healthy"),
            n("unhealthy"),
        ) else {
            return bad_request("each control needs displayName, max, healthy and unhealthy");
        };
        controls.push(SecureScoreControl {
            name: posture_guid(seed, &format!("control:{sub}:{display}")),
            display_name: display.to_string(),
            max,
            healthy,
            unhealthy,
            not_applicable: n("notApplicable").unwrap_or(0),
        });
    }
    world.secure_scores.insert(key, controls);
    ok(json!({"subscription_id": sub, "controls": list.len()}))
}

/// `PUT /_sim/security-contacts/{sub}`: `{"emails", "phone",
/// "alertNotifications": bool, "notifyOwners": bool}`; `DELETE` removes it.
async fn put_contact(
    State(st): St,
    Path(sub): Path<String>,
    Json(body): Json<Value>,
) -> Response<Body> {
    let Some(emails) = body.get("emails").and_then(Value::as_str) else {
        return bad_request("emails is required (addresses separated by ';')");
    };
    let flag = |k: &str| body.get(k).and_then(Value::as_bool).unwrap_or(true);
    let contact = SecurityContact {
        emails: emails.to_string(),
        phone: body
            .get("phone")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        alert_notifications: flag("alertNotifications"),
        notify_owners: flag("notifyOwners"),
    };
    let mut world = st.world_mut();
    match world.security.get_mut(&sub.to_ascii_lowercase()) {
        Some(s) => {
            s.contact = Some(contact);
            ok(json!({"subscription_id": sub, "contact": true}))
        }
        None => not_found(format!("no subscription '{sub}'")),
    }
}

async fn delete_contact(State(st): St, Path(sub): Path<String>) -> Response<Body> {
    let mut world = st.world_mut();
    match world.security.get_mut(&sub.to_ascii_lowercase()) {
        Some(s) => {
            s.contact = None;
            ok(json!({"subscription_id": sub, "contact": false}))
        }
        None => not_found(format!("no subscription '{sub}'")),
    }
}

/// `POST /_sim/role-definitions`: `{"name", "actions", "notActions",
/// "dataActions", "assignableScopes", "description"}` makes a custom role.
async fn create_role(State(st): St, Json(body): Json<Value>) -> Response<Body> {
    let list = |k: &str| -> Vec<String> {
        body.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let Some(name) = body.get("name").and_then(Value::as_str) else {
        return bad_request("name is required");
    };
    let scopes = list("assignableScopes");
    if scopes.is_empty() {
        return bad_request("assignableScopes must name at least one scope");
    }
    let mut world = st.world_mut();
    if world.resolve_role(name).is_some() {
        return json(
            StatusCode::CONFLICT,
            &json!({"error": {"code": "RoleDefinitionWithSameNameExists", "message": format!("A role definition named '{name}' exists.")}}),
        );
    }
    let role = CustomRole {
        id: posture_guid(world.seed, &format!("role:{name}")),
        name: name.to_string(),
        description: body
            .get("description")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        actions: list("actions"),
        not_actions: list("notActions"),
        data_actions: list("dataActions"),
        assignable_scopes: scopes,
        created: world.now(),
    };
    let id = role.id.clone();
    world.custom_roles.push(role);
    json(StatusCode::CREATED, &json!({"id": id, "name": name}))
}

async fn delete_role(State(st): St, Path(id): Path<String>) -> Response<Body> {
    let mut world = st.world_mut();
    let before = world.custom_roles.len();
    world
        .custom_roles
        .retain(|c| !c.id.eq_ignore_ascii_case(&id));
    if world.custom_roles.len() == before {
        return not_found(format!("no custom role '{id}'"));
    }
    ok(json!({"deleted": id}))
}
