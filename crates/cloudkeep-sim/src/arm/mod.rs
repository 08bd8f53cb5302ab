//! Azure Resource Manager: one dispatcher for every ARM path, which
//! authenticates the bearer token, checks the api-version, resolves the
//! operation, authorises it against the scenario's role assignments,
//! applies throttling, and answers in ARM's wire format.

mod authorization;
pub mod cost;
mod graph;
mod providers;
mod resources;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::server::{Caller, base_url, json};
use crate::state::SimState;
use crate::throttle::{Decision, Kind};
use crate::token::{ARM_AUDIENCES, Claims};
use crate::world::World;

/// An ARM error answer: status, code, message, and extra headers.
#[derive(Debug)]
pub struct ArmError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub headers: Vec<(&'static str, String)>,
}

impl ArmError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ArmError {
            status,
            code: code.to_string(),
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    fn into_response(self) -> Response<Body> {
        let mut response = json(
            self.status,
            &json!({"error": {"code": self.code, "message": self.message}}),
        );
        response
            .headers_mut()
            .insert("x-ms-failure-cause", HeaderValue::from_static("gateway"));
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, v);
            }
        }
        response
    }
}

pub type ArmResult = Result<Response<Body>, ArmError>;

/// Everything an operation needs to know about its request.
pub struct Ctx<'a> {
    pub st: &'a SimState,
    pub method: Method,
    /// `https://host`, for absolute links.
    pub base: String,
    /// The (normalised) path as the client sent it.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub api_version: String,
    pub body: Bytes,
    pub claims: Claims,
}

impl Ctx<'_> {
    /// A query parameter by name, case-insensitively (`$top`, `$skipToken`).
    pub fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn caller(&self) -> &str {
        &self.claims.oid
    }

    /// Parses the JSON body, answering ARM's error for malformed content.
    pub fn json_body(&self) -> Result<Value, ArmError> {
        if self.body.is_empty() {
            return Err(ArmError::bad_request(
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: 'The request body is empty.'.",
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            ArmError::bad_request(
                "InvalidRequestContent",
                format!("The request content was invalid and could not be deserialized: '{e}'."),
            )
        })
    }

    /// Fails with `AuthorizationFailed` unless the caller may do `action` at `scope`.
    pub fn authorize(&self, world: &World, action: &str, scope: &str) -> Result<(), ArmError> {
        if permitted(world, self.caller(), action, scope) {
            return Ok(());
        }
        Err(authorization_failed(self.caller(), action, scope))
    }

    /// The absolute `nextLink` for a continuation token, keeping the
    /// request's other parameters and re-encoding them as ARM does.
    pub fn next_link(&self, token: &str) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.query {
            if !k.eq_ignore_ascii_case("$skiptoken") {
                ser.append_pair(k, v);
            }
        }
        ser.append_pair("$skiptoken", token);
        format!("{}{}?{}", self.base, self.path, ser.finish())
    }

    fn top(&self, max_page: usize) -> Result<usize, ArmError> {
        let top = match self.q("$top") {
            Some(t) => t.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ArmError::bad_request(
                    "InvalidTopInQueryString",
                    format!("The value '{t}' of the $top query parameter is invalid. It must be a positive integer."),
                )
            })?,
            None => max_page,
        };
        Ok(top.min(max_page))
    }

    fn skiptoken(&self) -> Result<usize, ArmError> {
        match self.q("$skiptoken") {
            Some(t) => decode_offset(t).ok_or_else(|| {
                ArmError::bad_request(
                    "InvalidSkipToken",
                    "The provided $skiptoken is invalid or has expired.",
                )
            }),
            None => Ok(0),
        }
    }

    /// Real lists sometimes answer an empty page that still has a
    /// `nextLink`; the `rate_empty_page` fault reproduces it.
    fn empty_page(&self, position: usize) -> Option<Value> {
        let rate = self.st.faults().rate_empty_page;
        (rate > 0.0 && self.st.draw() < rate)
            .then(|| json!({ "value": [], "nextLink": self.next_link(&encode_offset(position)) }))
    }

    /// One page of `items`, serialised with `render`, with a `nextLink`
    /// when more remain. The token is an offset into `items`.
    pub fn page<T>(
        &self,
        items: &[T],
        max_page: usize,
        render: impl Fn(&T) -> Value,
    ) -> Result<Value, ArmError> {
        let top = self.top(max_page)?;
        let offset = self.skiptoken()?.min(items.len());
        if offset < items.len() {
            if let Some(empty) = self.empty_page(offset) {
                return Ok(empty);
            }
        }
        let end = offset.saturating_add(top).min(items.len());
        let value: Vec<Value> = items[offset..end].iter().map(render).collect();
        let mut body = json!({ "value": value });
        if end < items.len() {
            body["nextLink"] = json!(self.next_link(&encode_offset(end)));
        }
        Ok(body)
    }

    /// Like `page`, for items with increasing stable keys: the token is the
    /// next key, so items removed or added between pages never make a
    /// surviving item be skipped or repeated.
    pub fn page_keyed<T>(
        &self,
        items: &[(usize, T)],
        max_page: usize,
        render: impl Fn(&T) -> Value,
    ) -> Result<Value, ArmError> {
        let top = self.top(max_page)?;
        let from_key = self.skiptoken()?;
        let start = items.partition_point(|(k, _)| *k < from_key);
        if start < items.len() {
            if let Some(empty) = self.empty_page(items[start].0) {
                return Ok(empty);
            }
        }
        let end = start.saturating_add(top).min(items.len());
        let value: Vec<Value> = items[start..end].iter().map(|(_, t)| render(t)).collect();
        let mut body = json!({ "value": value });
        if let Some((next_key, _)) = items.get(end) {
            body["nextLink"] = json!(self.next_link(&encode_offset(*next_key)));
        }
        Ok(body)
    }
}

pub fn encode_offset(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{{\"o\":{offset}}}"))
}

pub fn decode_offset(token: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    v.get("o")?.as_u64().map(|o| o as usize)
}

pub fn permitted(world: &World, principal: &str, action: &str, scope: &str) -> bool {
    world
        .roles_at(principal, scope)
        .any(|a| crate::roles::by_id(&a.role_definition_id).is_some_and(|r| r.permits(action)))
}

pub fn authorization_failed(principal: &str, action: &str, scope: &str) -> ArmError {
    ArmError::new(
        StatusCode::FORBIDDEN,
        "AuthorizationFailed",
        format!(
            "The client '{principal}' with object id '{principal}' does not have authorization to perform action '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your credentials."
        ),
    )
}

/// ARM's timestamps: seven fractional digits and a `Z`.
pub fn arm_time(t: DateTime<Utc>) -> String {
    use chrono::Timelike;
    // chrono has no seven-digit fraction; ARM's ticks are 100 ns.
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.nanosecond() % 1_000_000_000 / 100
    )
}

pub fn epoch_time(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

fn unauthenticated(code: &str, message: &str) -> ArmError {
    let mut e = ArmError::new(StatusCode::UNAUTHORIZED, code, message);
    e.headers.push(("www-authenticate", challenge("", message)));
    e
}

/// The `WWW-Authenticate` challenge; naming the subscription's tenant lets
/// a client discover which authority to use.
fn challenge(tenant: &str, message: &str) -> String {
    format!(
        "Bearer authorization_uri=\"https://login.windows.net/{tenant}\", error=\"invalid_token\", error_description=\"{message}\""
    )
}

/// Names the subscription's tenant in a 401's challenge, for paths under a subscription.
fn with_tenant_challenge(st: &SimState, path: &str, mut e: ArmError) -> ArmError {
    let tenant = resolve(path)
        .ok()
        .and_then(|op| op.subscription().map(str::to_string))
        .and_then(|s| st.world().subscription(&s).map(|s| s.tenant_id.clone()));
    if let Some(t) = tenant {
        for (name, value) in &mut e.headers {
            if *name == "www-authenticate" {
                *value = challenge(&t, &e.message);
            }
        }
    }
    e
}

fn authenticate(st: &SimState, headers: &HeaderMap) -> Result<Claims, ArmError> {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(unauthenticated(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    let Some(token) = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
    else {
        return Err(unauthenticated(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is provided in an invalid format.",
        ));
    };
    let claims = st.signer.verify(token.trim()).map_err(|_| {
        unauthenticated("InvalidAuthenticationToken", "The access token is invalid.")
    })?;
    if !ARM_AUDIENCES.contains(&claims.aud.as_str()) {
        return Err(unauthenticated(
            "InvalidAuthenticationTokenAudience",
            &format!(
                "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'.",
                claims.aud
            ),
        ));
    }
    let now = Utc::now();
    if claims.exp <= now.timestamp() {
        let fmt = |t: DateTime<Utc>| t.format("%m/%d/%Y %-I:%M:%S %p").to_string();
        return Err(unauthenticated(
            "ExpiredAuthenticationToken",
            &format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                fmt(epoch_time(claims.exp)),
                fmt(now)
            ),
        ));
    }
    Ok(claims)
}

/// The families of operations, for api-version checks and throttling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Resources,
    Authorization,
    CostManagement,
    Security,
    Storage,
    KeyVault,
    ManagementPartner,
    ResourceGraph,
    /// A resource read through its own provider: any well-formed version.
    AnyProvider,
}

const RESOURCES_VERSIONS: &[&str] = &[
    "2014-04-01-preview",
    "2015-01-01",
    "2015-11-01",
    "2016-02-01",
    "2016-06-01",
    "2016-07-01",
    "2016-09-01",
    "2017-05-10",
    "2017-08-01",
    "2018-02-01",
    "2018-05-01",
    "2018-06-01",
    "2018-08-01",
    "2019-03-01",
    "2019-05-01",
    "2019-05-10",
    "2019-06-01",
    "2019-07-01",
    "2019-08-01",
    "2019-10-01",
    "2019-11-01",
    "2020-01-01",
    "2020-06-01",
    "2020-08-01",
    "2020-10-01",
    "2021-01-01",
    "2021-04-01",
    "2022-01-01",
    "2022-09-01",
    "2022-12-01",
    "2023-07-01",
    "2024-03-01",
    "2024-07-01",
    "2024-11-01",
    "2025-01-01",
    "2025-03-01",
    "2025-04-01",
];
const AUTHORIZATION_VERSIONS: &[&str] = &[
    "2015-06-01",
    "2015-07-01",
    "2017-10-01-preview",
    "2018-01-01-preview",
    "2018-07-01",
    "2018-09-01-preview",
    "2020-03-01-preview",
    "2020-04-01-preview",
    "2020-08-01-preview",
    "2020-10-01-preview",
    "2022-01-01-preview",
    "2022-04-01",
    "2022-05-01-preview",
];
const COST_VERSIONS: &[&str] = &[
    "2019-01-01",
    "2019-10-01",
    "2019-11-01",
    "2020-06-01",
    "2020-12-01-preview",
    "2021-10-01",
    "2022-10-01",
    "2023-03-01",
    "2023-04-01-preview",
    "2023-07-01-preview",
    "2023-08-01",
    "2023-09-01",
    "2023-11-01",
    "2024-08-01",
    "2025-03-01",
];
const SECURITY_VERSIONS: &[&str] = &["2020-01-01", "2020-01-01-preview"];
const STORAGE_VERSIONS: &[&str] = &[
    "2019-06-01",
    "2021-01-01",
    "2021-02-01",
    "2021-04-01",
    "2021-06-01",
    "2021-08-01",
    "2021-09-01",
    "2022-05-01",
    "2022-09-01",
    "2023-01-01",
    "2023-04-01",
    "2023-05-01",
    "2024-01-01",
    "2025-01-01",
    "2025-06-01",
    "2025-08-01",
    "2026-01-01",
    "2026-04-01",
    "2026-09-01",
];
const KEYVAULT_VERSIONS: &[&str] = &[
    "2019-09-01",
    "2020-04-01-preview",
    "2021-04-01-preview",
    "2021-06-01-preview",
    "2021-10-01",
    "2021-11-01-preview",
    "2022-02-01-preview",
    "2022-07-01",
    "2022-11-01",
    "2023-02-01",
    "2023-07-01",
    "2023-08-01-preview",
    "2024-04-01-preview",
    "2024-11-01",
    "2024-12-01-preview",
    "2025-05-01",
    "2026-02-01",
    "2026-05-15",
];
const PARTNER_VERSIONS: &[&str] = &["2018-02-01"];
const GRAPH_VERSIONS: &[&str] = &[
    "2019-04-01",
    "2020-04-01-preview",
    "2021-03-01",
    "2022-10-01",
    "2024-04-01",
];

impl Family {
    fn versions(self) -> &'static [&'static str] {
        match self {
            Family::Resources => RESOURCES_VERSIONS,
            Family::Authorization => AUTHORIZATION_VERSIONS,
            Family::CostManagement => COST_VERSIONS,
            Family::Security => SECURITY_VERSIONS,
            Family::Storage => STORAGE_VERSIONS,
            Family::KeyVault => KEYVAULT_VERSIONS,
            Family::ManagementPartner => PARTNER_VERSIONS,
            Family::ResourceGraph => GRAPH_VERSIONS,
            Family::AnyProvider => &[],
        }
    }

    fn resource_type(self) -> &'static str {
        match self {
            Family::Resources => "subscriptions",
            Family::Authorization => "roleAssignments",
            Family::CostManagement => "query",
            Family::Security => "secureScores",
            Family::Storage => "storageAccounts",
            Family::KeyVault => "vaults",
            Family::ManagementPartner => "partners",
            Family::ResourceGraph => "resources",
            Family::AnyProvider => "resources",
        }
    }
}

fn well_formed_version(v: &str) -> bool {
    let date = v.strip_suffix("-preview").unwrap_or(v);
    date.len() == 10 && chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok()
}

fn check_api_version(family: Family, version: Option<&str>) -> Result<String, ArmError> {
    let Some(v) = version.filter(|v| !v.is_empty()) else {
        return Err(ArmError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    let known = family.versions();
    if known.is_empty() && well_formed_version(v) || known.iter().any(|k| k.eq_ignore_ascii_case(v))
    {
        return Ok(v.to_string());
    }
    let list = if known.is_empty() {
        "2025-04-01".to_string()
    } else {
        known.join(", ")
    };
    if family == Family::Resources || family == Family::Authorization {
        return Err(ArmError::bad_request(
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{v}' is invalid. The supported versions are '{list}'. The supported locations are ''."
            ),
        ));
    }
    Err(ArmError::bad_request(
        "NoRegisteredProviderFound",
        format!(
            "No registered resource provider found for location 'global' and API version '{v}' for type '{}'. The supported api-versions are '{list}'. The supported locations are ', eastus, westeurope, northeurope, westus2'.",
            family.resource_type()
        ),
    ))
}

/// The operations the simulator serves, resolved from the path.
#[derive(Debug, Clone)]
pub enum Op {
    ListSubscriptions,
    ListTenants,
    OperationResult {
        sub: String,
        id: String,
    },
    Subscription {
        sub: String,
    },
    ResourceGroups {
        sub: String,
    },
    ResourceGroup {
        sub: String,
        rg: String,
    },
    Resources {
        sub: String,
        rg: Option<String>,
    },
    Resource {
        sub: String,
        id: String,
    },
    Tags {
        sub: String,
        scope: String,
    },
    RoleAssignments {
        scope: String,
        name: Option<String>,
    },
    RoleDefinitions {
        scope: String,
        id: Option<String>,
    },
    CostQuery {
        sub: String,
        scope: String,
    },
    SecureScores {
        sub: String,
        name: Option<String>,
    },
    SecureScoreControls {
        sub: String,
        score: Option<String>,
    },
    StorageAccounts {
        sub: String,
        rg: Option<String>,
        name: Option<String>,
    },
    Vaults {
        sub: String,
        rg: Option<String>,
        name: Option<String>,
    },
    VaultKeys {
        sub: String,
        vault_id: String,
        key: Option<String>,
    },
    VaultSecrets {
        sub: String,
        vault_id: String,
        secret: Option<String>,
    },
    Partner {
        id: Option<String>,
    },
    ResourceGraph,
}

impl Op {
    fn family(&self) -> Family {
        match self {
            Op::ListSubscriptions
            | Op::ListTenants
            | Op::Subscription { .. }
            | Op::ResourceGroups { .. }
            | Op::ResourceGroup { .. }
            | Op::Resources { .. }
            | Op::Tags { .. }
            | Op::OperationResult { .. } => Family::Resources,
            Op::Resource { .. } => Family::AnyProvider,
            Op::RoleAssignments { .. } | Op::RoleDefinitions { .. } => Family::Authorization,
            Op::CostQuery { .. } => Family::CostManagement,
            Op::SecureScores { .. } | Op::SecureScoreControls { .. } => Family::Security,
            Op::StorageAccounts { .. } => Family::Storage,
            Op::Vaults { .. } | Op::VaultKeys { .. } | Op::VaultSecrets { .. } => Family::KeyVault,
            Op::Partner { .. } => Family::ManagementPartner,
            Op::ResourceGraph => Family::ResourceGraph,
        }
    }

    /// The subscription the call is throttled and tenant-checked under.
    fn subscription(&self) -> Option<&str> {
        match self {
            Op::Subscription { sub }
            | Op::ResourceGroups { sub }
            | Op::ResourceGroup { sub, .. }
            | Op::Resources { sub, .. }
            | Op::Resource { sub, .. }
            | Op::Tags { sub, .. }
            | Op::CostQuery { sub, .. }
            | Op::SecureScores { sub, .. }
            | Op::SecureScoreControls { sub, .. }
            | Op::StorageAccounts { sub, .. }
            | Op::Vaults { sub, .. }
            | Op::VaultKeys { sub, .. }
            | Op::VaultSecrets { sub, .. }
            | Op::OperationResult { sub, .. } => Some(sub),
            Op::RoleAssignments { scope, .. } | Op::RoleDefinitions { scope, .. } => {
                subscription_of(scope)
            }
            Op::ListSubscriptions | Op::ListTenants | Op::Partner { .. } | Op::ResourceGraph => {
                None
            }
        }
    }
}

/// The subscription id in a scope such as `/subscriptions/{s}/...`.
pub fn subscription_of(scope: &str) -> Option<&str> {
    let mut segs = scope.trim_start_matches('/').split('/');
    match (segs.next(), segs.next()) {
        (Some(s), Some(id)) if s.eq_ignore_ascii_case("subscriptions") && !id.is_empty() => {
            Some(id)
        }
        _ => None,
    }
}

fn join_scope(segs: &[&str]) -> String {
    if segs.is_empty() {
        "/".to_string()
    } else {
        format!("/{}", segs.join("/"))
    }
}

fn unknown_path(path: &str) -> ArmError {
    ArmError::not_found(
        "NotFound",
        format!("No HTTP resource was found that matches the request URI '{path}'."),
    )
}

/// Resolves a path to an operation.
pub fn resolve(path: &str) -> Result<Op, ArmError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
    let l: Vec<&str> = lower.iter().map(String::as_str).collect();

    // Extension resources, found by their provider segment at any scope.
    if let Some(p) = l.iter().rposition(|s| *s == "providers") {
        let scope = join_scope(&segs[..p]);
        let sub = subscription_of(&scope).map(str::to_string);
        let rest = &l[p + 1..];
        match rest {
            ["microsoft.resources", "tags", "default"] => {
                return Ok(Op::Tags {
                    sub: sub.ok_or_else(|| unknown_path(path))?,
                    scope,
                });
            }
            ["microsoft.authorization", "roleassignments"] => {
                return Ok(Op::RoleAssignments { scope, name: None });
            }
            ["microsoft.authorization", "roleassignments", _] => {
                return Ok(Op::RoleAssignments {
                    scope,
                    name: Some(segs[p + 3].to_string()),
                });
            }
            ["microsoft.authorization", "roledefinitions"] => {
                return Ok(Op::RoleDefinitions { scope, id: None });
            }
            ["microsoft.authorization", "roledefinitions", _] => {
                return Ok(Op::RoleDefinitions {
                    scope,
                    id: Some(segs[p + 3].to_string()),
                });
            }
            ["microsoft.costmanagement", "query"] => {
                return Ok(Op::CostQuery {
                    sub: sub.ok_or_else(|| unknown_path(path))?,
                    scope,
                });
            }
            ["microsoft.managementpartner", "partners"] if p == 0 => {
                return Ok(Op::Partner { id: None });
            }
            ["microsoft.managementpartner", "partners", _] if p == 0 => {
                return Ok(Op::Partner {
                    id: Some(segs[p + 3].to_string()),
                });
            }
            ["microsoft.resourcegraph", "resources"] if p == 0 => return Ok(Op::ResourceGraph),
            _ => {}
        }
    }

    let sub = || segs.get(1).map(|s| s.to_string()).unwrap_or_default();
    let seg = |i: usize| segs[i].to_string();
    Ok(match l.as_slice() {
        ["subscriptions"] => Op::ListSubscriptions,
        ["tenants"] => Op::ListTenants,
        ["subscriptions", _, "operationresults", _] => Op::OperationResult {
            sub: sub(),
            id: seg(3),
        },
        ["subscriptions", _] => Op::Subscription { sub: sub() },
        ["subscriptions", _, "resourcegroups"] => Op::ResourceGroups { sub: sub() },
        ["subscriptions", _, "resourcegroups", _] => Op::ResourceGroup {
            sub: sub(),
            rg: seg(3),
        },
        ["subscriptions", _, "resources"] => Op::Resources {
            sub: sub(),
            rg: None,
        },
        ["subscriptions", _, "resourcegroups", _, "resources"] => Op::Resources {
            sub: sub(),
            rg: Some(seg(3)),
        },
        [
            "subscriptions",
            _,
            "providers",
            "microsoft.security",
            "securescores",
        ] => Op::SecureScores {
            sub: sub(),
            name: None,
        },
        [
            "subscriptions",
            _,
            "providers",
            "microsoft.security",
            "securescores",
            _,
        ] => Op::SecureScores {
            sub: sub(),
            name: Some(seg(5)),
        },
        [
            "subscriptions",
            _,
            "providers",
            "microsoft.security",
            "securescorecontrols",
        ] => Op::SecureScoreControls {
            sub: sub(),
            score: None,
        },
        [
            "subscriptions",
            _,
            "providers",
            "microsoft.security",
            "securescores",
            _,
            "securescorecontrols",
        ] => Op::SecureScoreControls {
            sub: sub(),
            score: Some(seg(5)),
        },
        [
            "subscriptions",
            _,
            "providers",
            "microsoft.storage",
            "storageaccounts",
        ] => Op::StorageAccounts {
            sub: sub(),
            rg: None,
            name: None,
        },
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.storage",
            "storageaccounts",
        ] => Op::StorageAccounts {
            sub: sub(),
            rg: Some(seg(3)),
            name: None,
        },
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.storage",
            "storageaccounts",
            _,
        ] => Op::StorageAccounts {
            sub: sub(),
            rg: Some(seg(3)),
            name: Some(seg(7)),
        },
        [
            "subscriptions",
            _,
            "providers",
            "microsoft.keyvault",
            "vaults",
        ] => Op::Vaults {
            sub: sub(),
            rg: None,
            name: None,
        },
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.keyvault",
            "vaults",
        ] => Op::Vaults {
            sub: sub(),
            rg: Some(seg(3)),
            name: None,
        },
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.keyvault",
            "vaults",
            _,
        ] => Op::Vaults {
            sub: sub(),
            rg: Some(seg(3)),
            name: Some(seg(7)),
        },
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.keyvault",
            "vaults",
            _,
            "keys",
            ..,
        ] => Op::VaultKeys {
            sub: sub(),
            vault_id: join_scope(&segs[..8]),
            key: segs.get(9).map(|s| s.to_string()),
        },
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.keyvault",
            "vaults",
            _,
            "secrets",
            ..,
        ] => Op::VaultSecrets {
            sub: sub(),
            vault_id: join_scope(&segs[..8]),
            secret: segs.get(9).map(|s| s.to_string()),
        },
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            _,
            _,
            _,
            ..,
        ] if segs.len() % 2 == 0 => Op::Resource {
            sub: sub(),
            id: join_scope(&segs),
        },
        _ => return Err(unknown_path(path)),
    })
}

/// Reads and writes as ARM's throttling counts them.
fn throttle_kind(method: &Method, op: &Op) -> Kind {
    match (method, op) {
        (&Method::GET | &Method::HEAD, _) => Kind::Read,
        // Queries are reads, though they are POSTed.
        (&Method::POST, Op::CostQuery { .. } | Op::ResourceGraph) => Kind::Read,
        (&Method::DELETE, _) => Kind::Delete,
        _ => Kind::Write,
    }
}

fn add_standard_headers(response: &mut Response<Body>, st: &SimState) {
    let id = st.random_id();
    let h = response.headers_mut();
    for name in ["x-ms-request-id", "x-ms-correlation-request-id"] {
        if let Ok(v) = HeaderValue::from_str(&id) {
            h.insert(name, v);
        }
    }
    let routing = format!("WESTEUROPE:{}:{id}", Utc::now().format("%Y%m%dT%H%M%SZ"));
    if let Ok(v) = HeaderValue::from_str(&routing) {
        h.insert("x-ms-routing-request-id", v);
    }
    h.insert(
        "strict-transport-security",
        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
}

pub async fn dispatch(State(st): State<Arc<SimState>>, req: Request) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let mut caller = None;
    let mut response = match serve(&st, &parts, body, &mut caller) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    add_standard_headers(&mut response, &st);
    if let Some(oid) = caller {
        response.extensions_mut().insert(Caller(oid));
    }
    response
}

fn serve(
    st: &SimState,
    parts: &axum::http::request::Parts,
    body: Bytes,
    caller: &mut Option<String>,
) -> ArmResult {
    let path = parts.uri.path().to_string();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let claims =
        authenticate(st, &parts.headers).map_err(|e| with_tenant_challenge(st, &path, e))?;
    *caller = Some(claims.oid.clone());
    let op = resolve(&path)?;
    let family = op.family();
    let api_version = check_api_version(
        family,
        query
            .iter()
            .find(|(k, _)| k == "api-version")
            .map(|(_, v)| v.as_str()),
    )?;

    // The subscription must exist, in the token's tenant.
    let sub = op.subscription().map(str::to_string);
    if let Some(s) = &sub {
        let world = st.world();
        let Some(subscription) = world.subscription(s) else {
            return Err(ArmError::not_found(
                "SubscriptionNotFound",
                format!("The subscription '{s}' could not be found."),
            ));
        };
        if !subscription.tenant_id.eq_ignore_ascii_case(&claims.tid) {
            let t = &subscription.tenant_id;
            let message = format!(
                "The access token is from the wrong issuer 'https://sts.windows.net/{}/'. It must match the tenant 'https://sts.windows.net/{t}/' associated with this subscription. Please use the authority (URL) 'https://login.windows.net/{t}' to get the token. Note, if the subscription is transferred to another tenant there is no impact to the services, but information about new tenant could take time to propagate (up to an hour). If you just transferred your subscription and see this error message, please try back later.",
                claims.tid
            );
            // The world is locked here: build the challenge directly.
            let mut e = ArmError::new(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationTokenTenant",
                message.clone(),
            );
            e.headers.push(("www-authenticate", challenge(t, &message)));
            return Err(e);
        }
    }

    let kind = throttle_kind(&parts.method, &op);
    let mut rate_header = None;
    if st.config.throttle {
        let (key, tenant_level) = match &sub {
            Some(s) => (s.clone(), false),
            None => (format!("tenant:{}", claims.tid), true),
        };
        match st.throttle.take(&key, &claims.oid, kind) {
            Decision::Allowed { remaining } => {
                rate_header = Some((kind.header(tenant_level), remaining))
            }
            Decision::Throttled { retry_after_secs } => {
                let what = if tenant_level {
                    format!("tenant '{}'", claims.tid)
                } else {
                    format!("subscription '{key}'")
                };
                let mut e = ArmError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    if tenant_level {
                        "TenantRequestsThrottled"
                    } else {
                        "SubscriptionRequestsThrottled"
                    },
                    format!(
                        "Number of '{}' requests for {what} actor '{}' exceeded. Please try again after '{retry_after_secs}' seconds after additional tokens are available. Refer to https://aka.ms/arm-throttling",
                        kind.word(),
                        claims.oid
                    ),
                );
                e.headers
                    .push(("retry-after", retry_after_secs.to_string()));
                e.headers.push((kind.header(tenant_level), "0".into()));
                return Err(e);
            }
        }
    }

    let ctx = Ctx {
        st,
        method: parts.method.clone(),
        base: base_url(&parts.headers, &parts.uri),
        path,
        query,
        api_version,
        body,
        claims,
    };
    // Errors carry the remaining quota too, as ARM's do.
    let mut response = run(&ctx, op).unwrap_or_else(ArmError::into_response);
    if let Some((name, remaining)) = rate_header {
        if let Ok(v) = HeaderValue::from_str(&remaining.to_string()) {
            response.headers_mut().insert(name, v);
        }
    }
    Ok(response)
}

fn method_not_allowed(ctx: &Ctx) -> ArmError {
    ArmError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowed",
        format!(
            "The requested resource does not support http method '{}'.",
            ctx.method
        ),
    )
}

fn run(ctx: &Ctx, op: Op) -> ArmResult {
    let get = ctx.method == Method::GET;
    match op {
        Op::ListSubscriptions if get => resources::list_subscriptions(ctx),
        Op::ListTenants if get => resources::list_tenants(ctx),
        Op::Subscription { sub } if get => resources::get_subscription(ctx, &sub),
        Op::ResourceGroups { sub } if get => resources::list_resource_groups(ctx, &sub),
        Op::ResourceGroup { sub, rg } if get => resources::get_resource_group(ctx, &sub, &rg),
        Op::Resources { sub, rg } if get => resources::list_resources(ctx, &sub, rg.as_deref()),
        Op::Resource { id, .. } if get => resources::get_resource(ctx, &id),
        Op::Tags { scope, .. } => resources::tags(ctx, &scope),
        Op::OperationResult { sub, id } if get => resources::operation_result(ctx, &sub, &id),
        Op::RoleAssignments { scope, name } => {
            authorization::role_assignments(ctx, &scope, name.as_deref())
        }
        Op::RoleDefinitions { scope, id } if get => {
            authorization::role_definitions(ctx, &scope, id.as_deref())
        }
        Op::CostQuery { scope, .. } if ctx.method == Method::POST => cost::query(ctx, &scope),
        Op::SecureScores { sub, name } if get => {
            providers::secure_scores(ctx, &sub, name.as_deref())
        }
        Op::SecureScoreControls { sub, score } if get => {
            providers::secure_score_controls(ctx, &sub, score.as_deref())
        }
        Op::StorageAccounts { sub, rg, name } if get => {
            providers::storage_accounts(ctx, &sub, rg.as_deref(), name.as_deref())
        }
        Op::Vaults { sub, rg, name } if get => {
            providers::vaults(ctx, &sub, rg.as_deref(), name.as_deref())
        }
        Op::VaultKeys { vault_id, key, .. } if get => {
            providers::vault_keys(ctx, &vault_id, key.as_deref())
        }
        Op::VaultSecrets {
            vault_id, secret, ..
        } if get => providers::vault_secrets(ctx, &vault_id, secret.as_deref()),
        Op::Partner { id } => providers::partner(ctx, id.as_deref()),
        Op::ResourceGraph if ctx.method == Method::POST => graph::query(ctx),
        _ => Err(method_not_allowed(ctx)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_paths() {
        let s = "/subscriptions/abc";
        assert!(matches!(
            resolve("/subscriptions").ok(),
            Some(Op::ListSubscriptions)
        ));
        assert!(
            matches!(resolve(&format!("{s}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm/providers/Microsoft.Resources/tags/default")).ok(),
            Some(Op::Tags { scope, .. }) if scope == "/subscriptions/abc/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm")
        );
        assert!(
            matches!(resolve("/providers/Microsoft.Authorization/roleAssignments").ok(), Some(Op::RoleAssignments { scope, .. }) if scope == "/")
        );
        assert!(matches!(
            resolve(&format!(
                "{s}/resourceGroups/rg/providers/Microsoft.Sql/servers/a/databases/b"
            ))
            .ok(),
            Some(Op::Resource { .. })
        ));
        assert!(
            matches!(resolve(&format!("{s}/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/v/keys/k")).ok(),
            Some(Op::VaultKeys { vault_id, key: Some(k), .. }) if vault_id.ends_with("/vaults/v") && k == "k")
        );
        assert!(resolve("/nonsense/path").is_err());
    }

    #[test]
    fn skiptokens_round_trip() {
        assert_eq!(decode_offset(&encode_offset(1234)), Some(1234));
        assert_eq!(decode_offset("garbage!"), None);
    }
}
