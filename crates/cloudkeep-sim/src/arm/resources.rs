//! Microsoft.Resources: subscriptions, tenants, resource groups, resources
//! (with `$filter`, `$expand`, `$top` and paging) and tags at any scope.

use axum::http::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::{ArmError, ArmResult, Ctx, arm_time, permitted};
use crate::server::json;
use crate::world::{
    Extra, Resource, ResourceGroup, Subscription, Tags, World, remove_tag, scope_contains, set_tag,
};

/// ARM pages subscription lists at this size.
const SUBSCRIPTIONS_PAGE: usize = 100;
/// The largest page of a resource list (`$top` may ask for less).
const RESOURCES_PAGE: usize = 1000;
const GROUPS_PAGE: usize = 500;

fn ok(body: &Value) -> ArmResult {
    Ok(json(StatusCode::OK, body))
}

fn tags_json(tags: &Tags) -> Value {
    Value::Object(tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
}

fn visible_subscriptions<'w>(world: &'w World, principal: &str) -> Vec<&'w Subscription> {
    world
        .subscriptions
        .iter()
        .filter(|s| {
            let scope = format!("/subscriptions/{}", s.id);
            world.role_assignments.iter().any(|a| {
                a.principal_id.eq_ignore_ascii_case(principal)
                    && (scope_contains(&a.scope, &scope) || scope_contains(&scope, &a.scope))
            })
        })
        .collect()
}

fn subscription_json(world: &World, s: &Subscription) -> Value {
    let mut v = json!({
        "id": format!("/subscriptions/{}", s.id),
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": s.id,
        "tenantId": s.tenant_id,
        "displayName": s.display_name,
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": s.quota_id,
            "spendingLimit": if s.quota_id.starts_with("MSDN") { "On" } else { "Off" },
        },
    });
    // The first subscription is managed by the partner's (cloudkeep's) tenant
    // through Lighthouse, as MSP-run estates are.
    if world.subscriptions.first().is_some_and(|f| f.id == s.id) {
        v["managedByTenants"] = json!([{ "tenantId": world.app.home_tenant_id }]);
    }
    if !s.tags.is_empty() {
        v["tags"] = tags_json(&s.tags);
    }
    v
}

pub fn list_subscriptions(ctx: &Ctx) -> ArmResult {
    let world = ctx.st.world();
    let subs: Vec<&Subscription> = visible_subscriptions(&world, ctx.caller())
        .into_iter()
        .filter(|s| s.tenant_id.eq_ignore_ascii_case(&ctx.claims.tid))
        .collect();
    let body = ctx.page(&subs, SUBSCRIPTIONS_PAGE, |s| subscription_json(&world, s))?;
    ok(&body)
}

pub fn get_subscription(ctx: &Ctx) -> ArmResult {
    let sub = ctx.p("sub");
    let world = ctx.st.world();
    let visible = visible_subscriptions(&world, ctx.caller());
    match visible.iter().find(|s| s.id.eq_ignore_ascii_case(sub)) {
        Some(s) => ok(&subscription_json(&world, s)),
        None => Err(ArmError::not_found(
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        )),
    }
}

pub fn list_tenants(ctx: &Ctx) -> ArmResult {
    let world = ctx.st.world();
    let tenants: Vec<Value> = world
        .tenants
        .iter()
        .filter(|t| t.id.eq_ignore_ascii_case(&ctx.claims.tid))
        .map(|t| {
            json!({
                "id": format!("/tenants/{}", t.id),
                "tenantId": t.id,
                "countryCode": t.country_code,
                "displayName": t.display_name,
                "domains": [t.default_domain],
                "tenantCategory": "Home",
                "defaultDomain": t.default_domain,
                "tenantType": "AAD",
                "tenantBrandingLogoUrl": format!("https://aadcdn.msftauthimages.net/{}/logintenantbranding/0/bannerlogo", t.id),
            })
        })
        .collect();
    ok(&json!({ "value": tenants }))
}

fn group_json(g: &ResourceGroup) -> Value {
    let mut v = json!({
        "id": g.id(),
        "name": g.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": g.location,
        "properties": { "provisioningState": "Succeeded" },
    });
    if !g.tags.is_empty() {
        v["tags"] = tags_json(&g.tags);
    }
    v
}

const GROUP_READ: &str = "Microsoft.Resources/subscriptions/resourceGroups/read";

/// `resourcegroups` lists, `resourcegroups/{rg}` reads one.
pub fn resource_groups(ctx: &Ctx) -> ArmResult {
    match ctx.opt("rg") {
        Some(rg) => get_resource_group(ctx, ctx.p("sub"), rg),
        None => list_resource_groups(ctx, ctx.p("sub")),
    }
}

fn list_resource_groups(ctx: &Ctx, sub: &str) -> ArmResult {
    let world = ctx.st.world();
    let scope = format!("/subscriptions/{sub}");
    let all = permitted(&world, ctx.caller(), GROUP_READ, &scope);
    let groups: Vec<&ResourceGroup> = world
        .resource_groups
        .iter()
        .filter(|g| g.subscription_id.eq_ignore_ascii_case(sub))
        .filter(|g| all || permitted(&world, ctx.caller(), GROUP_READ, &g.id()))
        .collect();
    if groups.is_empty() && !all {
        return Err(super::authorization_failed(
            ctx.caller(),
            GROUP_READ,
            &scope,
        ));
    }
    let body = ctx.page(&groups, GROUPS_PAGE, |g| group_json(g))?;
    ok(&body)
}

fn group_not_found(rg: &str) -> ArmError {
    ArmError::not_found(
        "ResourceGroupNotFound",
        format!("Resource group '{rg}' could not be found."),
    )
}

fn get_resource_group(ctx: &Ctx, sub: &str, rg: &str) -> ArmResult {
    let world = ctx.st.world();
    ctx.authorize(
        &world,
        GROUP_READ,
        &format!("/subscriptions/{sub}/resourceGroups/{rg}"),
    )?;
    match world.resource_group(sub, rg) {
        Some(g) => ok(&group_json(g)),
        None => Err(group_not_found(rg)),
    }
}

/// One term of a resource list `$filter`.
#[derive(Debug, Clone, PartialEq)]
enum Term {
    Type(String),
    Group(String),
    Location(String),
    Name(String),
    NameContains(String),
    TagName(String),
    TagValue(String),
}

/// A `$filter`: terms joined by `and` within groups joined by `or`.
#[derive(Debug, Default)]
struct Filter {
    any_of: Vec<Vec<Term>>,
}

fn split_keyword<'a>(s: &'a str, word: &str) -> Vec<&'a str> {
    // Splits on ` word ` outside single quotes, case-insensitively.
    let lower = s.to_ascii_lowercase();
    let needle = format!(" {word} ");
    let mut parts = Vec::new();
    let mut start = 0;
    let mut in_quote = false;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            in_quote = !in_quote;
        } else if !in_quote && lower.as_bytes()[i..].starts_with(needle.as_bytes()) {
            parts.push(&s[start..i]);
            i += needle.len();
            start = i;
            continue;
        }
        i += 1;
    }
    parts.push(&s[start..]);
    parts
}

fn quoted(s: &str) -> Option<String> {
    let s = s.trim();
    let inner = s.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(inner.replace("''", "'"))
}

fn parse_term(raw: &str) -> Option<Term> {
    let t = raw
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .trim();
    let lower = t.to_ascii_lowercase();
    if let Some(args) = lower.strip_prefix("substringof(") {
        let args = &t[t.len() - args.len()..];
        let (needle, field) = args.trim_end_matches(')').rsplit_once(',')?;
        if field.trim().eq_ignore_ascii_case("name") {
            return Some(Term::NameContains(quoted(needle)?));
        }
        return None;
    }
    let (field, value) = t.split_once(" eq ").or_else(|| t.split_once(" EQ "))?;
    let value = quoted(value)?;
    Some(match field.trim().to_ascii_lowercase().as_str() {
        "resourcetype" => Term::Type(value),
        "resourcegroup" => Term::Group(value),
        "location" => Term::Location(value),
        "name" => Term::Name(value),
        "tagname" => Term::TagName(value),
        "tagvalue" => Term::TagValue(value),
        _ => return None,
    })
}

impl Filter {
    fn parse(raw: &str) -> Result<Filter, ArmError> {
        let bad = || {
            ArmError::bad_request(
                "InvalidFilterInQueryString",
                format!("Invalid $filter '{raw}' specified in the query string."),
            )
        };
        let mut any_of = Vec::new();
        for alternative in split_keyword(raw.trim(), "or") {
            let terms = split_keyword(alternative, "and")
                .into_iter()
                .map(|t| parse_term(t).ok_or_else(bad))
                .collect::<Result<Vec<_>, _>>()?;
            any_of.push(terms);
        }
        Ok(Filter { any_of })
    }

    fn has_tag_terms(&self) -> bool {
        self.any_of
            .iter()
            .flatten()
            .any(|t| matches!(t, Term::TagName(_) | Term::TagValue(_)))
    }

    fn matches(&self, r: &Resource) -> bool {
        if self.any_of.is_empty() {
            return true;
        }
        self.any_of.iter().any(|terms| {
            let tag_name = terms.iter().find_map(|t| {
                if let Term::TagName(n) = t {
                    Some(n)
                } else {
                    None
                }
            });
            terms.iter().all(|t| match t {
                Term::Type(v) => r.resource_type.eq_ignore_ascii_case(v),
                Term::Group(v) => r.resource_group.eq_ignore_ascii_case(v),
                Term::Location(v) => r.location.eq_ignore_ascii_case(v),
                Term::Name(v) => r.name.eq_ignore_ascii_case(v),
                Term::NameContains(v) => r
                    .name
                    .to_ascii_lowercase()
                    .contains(&v.to_ascii_lowercase()),
                Term::TagName(n) => r.tags.keys().any(|k| k.eq_ignore_ascii_case(n)),
                Term::TagValue(v) => r
                    .tags
                    .iter()
                    .any(|(k, val)| val == v && tag_name.is_none_or(|n| k.eq_ignore_ascii_case(n))),
            })
        })
    }
}

/// Which optional fields a resource list shows.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expand {
    pub created: bool,
    pub changed: bool,
    pub provisioning: bool,
    pub hide_tags: bool,
}

pub fn resource_json(r: &Resource, expand: Expand) -> Value {
    let mut v = Map::new();
    v.insert("id".into(), json!(r.id));
    v.insert("name".into(), json!(r.name));
    v.insert("type".into(), json!(r.resource_type));
    if let Some(sku) = &r.sku {
        let mut s = json!({ "name": sku.name });
        if let Some(tier) = &sku.tier {
            s["tier"] = json!(tier);
        }
        v.insert("sku".into(), s);
    }
    if let Some(kind) = &r.kind {
        v.insert("kind".into(), json!(kind));
    }
    v.insert("location".into(), json!(r.location));
    if !expand.hide_tags {
        // Real lists omit `tags` on some untagged items and show `{}` on others.
        if !r.tags.is_empty() || r.cost_seed % 2 == 0 {
            v.insert("tags".into(), tags_json(&r.tags));
        }
        if expand.created {
            v.insert("createdTime".into(), json!(arm_time(r.created)));
        }
        if expand.changed {
            v.insert("changedTime".into(), json!(arm_time(r.changed)));
        }
        if expand.provisioning {
            v.insert("provisioningState".into(), json!("Succeeded"));
        }
    }
    Value::Object(v)
}

const RESOURCES_READ: &str = "Microsoft.Resources/subscriptions/resources/read";
const GROUP_RESOURCES_READ: &str =
    "Microsoft.Resources/subscriptions/resourceGroups/resources/read";

pub fn list_resources(ctx: &Ctx) -> ArmResult {
    let (sub, rg) = (ctx.p("sub"), ctx.opt("rg"));
    let world = ctx.st.world();
    let sub_scope = format!("/subscriptions/{sub}");
    let filter = match ctx.q("$filter") {
        Some(f) if !f.trim().is_empty() => Filter::parse(f)?,
        _ => Filter::default(),
    };
    let expand_raw = ctx.q("$expand").unwrap_or("").to_ascii_lowercase();
    let expand = Expand {
        created: expand_raw.contains("createdtime"),
        changed: expand_raw.contains("changedtime"),
        provisioning: expand_raw.contains("provisioningstate"),
        hide_tags: filter.has_tag_terms(),
    };
    // Which resource groups may the caller read in?
    let (all, allowed_groups): (bool, Vec<String>) = match rg {
        Some(rg) => {
            if world.resource_group(sub, rg).is_none() {
                return Err(group_not_found(rg));
            }
            ctx.authorize(
                &world,
                GROUP_RESOURCES_READ,
                &format!("{sub_scope}/resourceGroups/{rg}"),
            )?;
            (false, vec![rg.to_ascii_lowercase()])
        }
        None => {
            if permitted(&world, ctx.caller(), RESOURCES_READ, &sub_scope) {
                (true, Vec::new())
            } else {
                let groups: Vec<String> = world
                    .resource_groups
                    .iter()
                    .filter(|g| g.subscription_id.eq_ignore_ascii_case(sub))
                    .filter(|g| permitted(&world, ctx.caller(), GROUP_RESOURCES_READ, &g.id()))
                    .map(|g| g.name.to_ascii_lowercase())
                    .collect();
                if groups.is_empty() {
                    return Err(super::authorization_failed(
                        ctx.caller(),
                        RESOURCES_READ,
                        &sub_scope,
                    ));
                }
                (false, groups)
            }
        }
    };
    // Keyed by position in the world's resource list, which never shrinks.
    let items: Vec<(usize, &Resource)> = world
        .resources
        .iter()
        .enumerate()
        .filter(|(_, r)| r.deleted.is_none())
        .filter(|(_, r)| r.subscription_id.eq_ignore_ascii_case(sub))
        .filter(|(_, r)| all || allowed_groups.contains(&r.resource_group.to_ascii_lowercase()))
        .filter(|(_, r)| filter.matches(r))
        .collect();
    let body = ctx.page_keyed(&items, RESOURCES_PAGE, |r| resource_json(r, expand))?;
    ok(&body)
}

fn resource_not_found(world: &World, id: &str) -> ArmError {
    let segs: Vec<&str> = id.trim_matches('/').split('/').collect();
    let sub = segs.get(1).copied().unwrap_or("");
    let rg = segs.get(3).copied().unwrap_or("");
    if world.resource_group(sub, rg).is_none() {
        return group_not_found(rg);
    }
    let provider_path = segs.get(5..).map(|s| s.join("/")).unwrap_or_default();
    let (ns, rest) = provider_path
        .split_once('/')
        .unwrap_or((&provider_path, ""));
    let parts: Vec<&str> = rest.split('/').collect();
    let types: Vec<&str> = parts.iter().step_by(2).copied().collect();
    let names: Vec<&str> = parts.iter().skip(1).step_by(2).copied().collect();
    ArmError::not_found(
        "ResourceNotFound",
        format!(
            "The Resource '{ns}/{}/{}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
            types.join("/"),
            names.join("/")
        ),
    )
}

/// The type part of a resource id (`Microsoft.Sql/servers/databases`).
pub fn type_of_id(id: &str) -> String {
    let segs: Vec<&str> = id.trim_matches('/').split('/').collect();
    let Some(p) = segs
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("providers"))
    else {
        return String::new();
    };
    let mut t = vec![segs.get(p + 1).copied().unwrap_or("")];
    t.extend(segs.iter().skip(p + 2).step_by(2));
    t.join("/")
}

pub fn get_resource(ctx: &Ctx) -> ArmResult {
    let id = &ctx.params.path();
    let world = ctx.st.world();
    ctx.authorize(&world, &format!("{}/read", type_of_id(id)), id)?;
    let Some(r) = world.resource(id) else {
        return Err(resource_not_found(&world, id));
    };
    let body = match &r.extra {
        Extra::Storage(_) => super::providers::storage_json(r),
        Extra::Vault(_) => super::providers::vault_json(&world, r),
        Extra::None => {
            let mut v = resource_json(r, Expand::default());
            v["properties"] = json!({ "provisioningState": "Succeeded" });
            v
        }
    };
    ok(&body)
}

fn tags_resource(scope: &str, tags: &Tags) -> Value {
    json!({
        "id": format!("{}/providers/Microsoft.Resources/tags/default", scope.trim_end_matches('/')),
        "name": "default",
        "type": "Microsoft.Resources/tags",
        "properties": { "tags": tags_json(tags) },
    })
}

/// The `properties.tags` object of a Tags API body, validated as strings.
fn body_tags(body: &Value) -> Result<Vec<(String, String)>, ArmError> {
    let Some(tags) = body.pointer("/properties/tags") else {
        return Err(ArmError::bad_request(
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: 'Required property 'tags' not found in JSON. Path 'properties'.'.",
        ));
    };
    let Some(map) = tags.as_object() else {
        return Err(ArmError::bad_request(
            "InvalidRequestContent",
            "The request content was invalid and could not be deserialized: 'properties.tags must be an object of string values'.",
        ));
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            Value::Null => Ok((k.clone(), String::new())),
            other => Err(ArmError::bad_request(
                "InvalidRequestContent",
                format!("The request content was invalid and could not be deserialized: 'Error converting value {other} to type 'System.String'. Path 'properties.tags.{k}'.'."),
            )),
        })
        .collect()
}

/// Azure's tag rules: names ≤ 512 (128 on storage accounts), values ≤ 256,
/// no `< > % & \ ? /` or control characters in names, at most 50 tags.
pub fn validate_tags(tags: &Tags, storage_account: bool) -> Result<(), ArmError> {
    const FORBIDDEN: &[char] = &['<', '>', '%', '&', '\\', '?', '/'];
    let name_limit = if storage_account { 128 } else { 512 };
    let bad_names: Vec<&str> = tags
        .keys()
        .filter(|k| k.chars().any(|c| FORBIDDEN.contains(&c) || c.is_control()))
        .map(String::as_str)
        .collect();
    if !bad_names.is_empty() {
        return Err(ArmError::bad_request(
            "InvalidTagNameCharacters",
            format!(
                "The tag names '{}' have reserved characters '<,>,%,&,\\,?,/' or control characters.",
                bad_names.join(",")
            ),
        ));
    }
    if let Some(k) = tags.keys().find(|k| k.trim().is_empty()) {
        return Err(ArmError::bad_request(
            "InvalidTagName",
            format!(
                "The tag name '{k}' is invalid. Tag names cannot be empty or consist only of white space."
            ),
        ));
    }
    if let Some(k) = tags.keys().find(|k| k.chars().count() > name_limit) {
        return Err(ArmError::bad_request(
            "InvalidTagNameLength",
            format!(
                "Tag name too large. Following tag name '{k}' exceeded the maximum length. Maximum allowed length for tag name - '{name_limit}' characters."
            ),
        ));
    }
    if let Some(v) = tags.values().find(|v| v.chars().count() > 256) {
        return Err(ArmError::bad_request(
            "InvalidTagValueLength",
            format!(
                "Tag value too large. Following tag value '{v}' exceeded the maximum length. Maximum allowed length for tag value - '256' characters."
            ),
        ));
    }
    if tags.len() > 50 {
        return Err(ArmError::bad_request(
            "InvalidTagCount",
            format!(
                "The number of tags '{}' exceeds the maximum of '50' tags per resource, resource group or subscription.",
                tags.len()
            ),
        ));
    }
    Ok(())
}

fn scope_not_found(world: &World, scope: &str) -> ArmError {
    let segs: Vec<&str> = scope.trim_matches('/').split('/').collect();
    match segs.len() {
        2 => ArmError::not_found(
            "SubscriptionNotFound",
            format!("The subscription '{}' could not be found.", segs[1]),
        ),
        4 => group_not_found(segs[3]),
        _ => resource_not_found(world, scope),
    }
}

pub fn tags(ctx: &Ctx) -> ArmResult {
    let scope = ctx.p("scope");
    let action = match ctx.method {
        Method::GET => "Microsoft.Resources/tags/read",
        Method::PUT | Method::PATCH => "Microsoft.Resources/tags/write",
        Method::DELETE => "Microsoft.Resources/tags/delete",
        _ => return Err(super::method_not_allowed(&ctx.method)),
    };
    if ctx.method == Method::GET {
        let world = ctx.st.world();
        ctx.authorize(&world, action, scope)?;
        let Some(tags) = world.tags_at(scope) else {
            return Err(scope_not_found(&world, scope));
        };
        return ok(&tags_resource(&canonical_scope(&world, scope), tags));
    }

    let body = if ctx.method == Method::DELETE {
        Value::Null
    } else {
        ctx.json_body()?
    };
    let mut world = ctx.st.world_mut();
    ctx.authorize(&world, action, scope)?;
    if world.tags_at(scope).is_none() {
        return Err(scope_not_found(&world, scope));
    }
    let storage = world
        .resource(scope)
        .is_some_and(|r| matches!(r.extra, Extra::Storage(_)));
    let current = world.tags_at(scope).cloned().unwrap_or_default();
    let updated = match ctx.method {
        Method::DELETE => Tags::new(),
        Method::PUT => {
            let mut t = Tags::new();
            for (k, v) in body_tags(&body)? {
                set_tag(&mut t, &k, &v);
            }
            t
        }
        _ => {
            let operation = body.get("operation").and_then(Value::as_str).unwrap_or("");
            let given = body_tags(&body)?;
            let mut t = current.clone();
            match operation.to_ascii_lowercase().as_str() {
                "merge" => given.iter().for_each(|(k, v)| set_tag(&mut t, k, v)),
                "replace" => {
                    t.clear();
                    given.iter().for_each(|(k, v)| set_tag(&mut t, k, v));
                }
                "delete" => {
                    for (k, v) in &given {
                        // A name deletes the tag; a name/value pair only if the value matches.
                        let existing = t
                            .iter()
                            .find(|(name, _)| name.eq_ignore_ascii_case(k))
                            .map(|(_, val)| val.clone());
                        if existing.is_some_and(|val| v.is_empty() || &val == v) {
                            remove_tag(&mut t, k);
                        }
                    }
                }
                _ => {
                    return Err(ArmError::bad_request(
                        "InvalidRequestContent",
                        format!(
                            "The request content was invalid and could not be deserialized: 'The value '{operation}' of 'operation' is invalid. Use Merge, Replace or Delete.'."
                        ),
                    ));
                }
            }
            t
        }
    };
    // Azure checks the tags a request names, and the count of the result;
    // tags already there (such as Azure's own `hidden-link:` ones) stand.
    if ctx.method != Method::DELETE {
        let mut given = Tags::new();
        for (k, v) in body_tags(&body)? {
            given.insert(k, v);
        }
        validate_tags(&given, storage)?;
    }
    if updated.len() > 50 {
        validate_tags(&updated, storage)?;
    }
    let canonical = canonical_scope(&world, scope);
    if let Some(tags) = world.tags_at_mut(scope) {
        *tags = updated.clone();
    }
    if ctx.method == Method::DELETE {
        return Ok(json(StatusCode::OK, &Value::Null).map(|_| axum::body::Body::empty()));
    }
    let result = tags_resource(&canonical, &updated);
    drop(world);
    // Sometimes ARM accepts a tag write and makes the client poll for it.
    let rate = ctx.st.faults().rate_async_tags;
    if rate > 0.0 && ctx.st.draw() < rate {
        let sub = super::subscription_of(scope)
            .unwrap_or_default()
            .to_string();
        let id = ctx.st.random_id();
        ctx.st.operations().insert(
            id.clone(),
            crate::state::PendingOperation {
                polls_left: 1,
                result,
            },
        );
        return Ok(accepted(ctx, &sub, &id));
    }
    ok(&result)
}

/// 202 with the `Location` to poll and a `Retry-After`.
fn accepted(ctx: &Ctx, sub: &str, id: &str) -> axum::http::Response<axum::body::Body> {
    let location = format!(
        "{}/subscriptions/{sub}/operationresults/{id}?api-version=2018-08-01",
        ctx.base
    );
    let mut response = json(StatusCode::ACCEPTED, &Value::Null).map(|_| axum::body::Body::empty());
    if let Ok(v) = axum::http::HeaderValue::from_str(&location) {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, v);
    }
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    response
}

/// Polls an accepted write: 202 until it is done, then 200 with its result.
pub fn operation_result(ctx: &Ctx) -> ArmResult {
    let (sub, id) = (ctx.p("sub"), ctx.p("id"));
    let mut ops = ctx.st.operations();
    let Some(op) = ops.get_mut(id) else {
        return Err(ArmError::not_found(
            "OperationNotFound",
            format!("The operation '{id}' was not found."),
        ));
    };
    if op.polls_left > 0 {
        op.polls_left -= 1;
        drop(ops);
        return Ok(accepted(ctx, sub, id));
    }
    ok(&op.result)
}

/// The scope with the casing Azure stores it in.
fn canonical_scope(world: &World, scope: &str) -> String {
    if let Some(r) = world.resource(scope) {
        return r.id.clone();
    }
    let segs: Vec<&str> = scope.trim_matches('/').split('/').collect();
    match segs.len() {
        2 => world
            .subscription(segs[1])
            .map(|s| format!("/subscriptions/{}", s.id))
            .unwrap_or_else(|| scope.to_string()),
        4 => world
            .resource_group(segs[1], segs[3])
            .map(ResourceGroup::id)
            .unwrap_or_else(|| scope.to_string()),
        _ => scope.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_filters() {
        let f = Filter::parse("resourceType eq 'Microsoft.KeyVault/vaults' or resourceType eq 'Microsoft.Storage/storageAccounts'").expect("parses");
        assert_eq!(f.any_of.len(), 2);
        let f = Filter::parse("tagName eq 'env' and tagValue eq 'prod'").expect("parses");
        assert!(f.has_tag_terms());
        let f = Filter::parse("substringof('web', name)").expect("parses");
        assert_eq!(f.any_of[0][0], Term::NameContains("web".into()));
        assert!(Filter::parse("bogus gt 3").is_err());
    }

    #[test]
    fn tag_rules() {
        let mut t = Tags::new();
        t.insert("ok".into(), "v".into());
        assert!(validate_tags(&t, false).is_ok());
        t.insert("a/b".into(), "v".into());
        assert_eq!(
            validate_tags(&t, false).map_err(|e| e.code).unwrap_err(),
            "InvalidTagNameCharacters"
        );
        let mut t = Tags::new();
        t.insert("x".repeat(129), "v".into());
        assert!(validate_tags(&t, false).is_ok());
        assert_eq!(
            validate_tags(&t, true).map_err(|e| e.code).unwrap_err(),
            "InvalidTagNameLength"
        );
        let t: Tags = (0..51)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert_eq!(
            validate_tags(&t, false).map_err(|e| e.code).unwrap_err(),
            "InvalidTagCount"
        );
    }
}
