//! Azure Resource Manager: one dispatcher for every ARM path, which
//! authenticates the bearer token, resolves the operation from the route
//! table (`routes`), checks its api-version, checks the subscription's
//! tenant, applies throttling, and runs the operation, which authorises
//! itself against the scenario's role assignments (`Ctx::authorize`).
//!
//! `ctx` holds the request context and paging, `auth` the token checks and
//! authorisation, `routes` the operations with their api-versions.

mod auth;
mod authorization;
pub mod cost;
mod ctx;
mod graph;
mod locations;
mod monitor;
mod providers;
mod resources;
mod routes;
mod security;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Response, StatusCode};
use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use http_body_util::BodyExt;
use serde_json::json;

pub use auth::{authorization_failed, permitted};
pub use ctx::{Ctx, decode_offset, encode_offset};
pub use providers::{storage_json, vault_json};
pub use routes::method_not_allowed;

use crate::server::{Caller, base_url, json};
use crate::state::SimState;
use crate::throttle::Decision;

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

/// A list (`{"value": [...]}`), or the item the path's `{name}` names,
/// or the provider's 404 built by `missing`.
pub fn one_or_all(
    ctx: &Ctx,
    items: Vec<serde_json::Value>,
    missing: impl FnOnce(&str) -> ArmError,
) -> ArmResult {
    let Some(n) = ctx.opt("name") else {
        return Ok(json(StatusCode::OK, &json!({ "value": items })));
    };
    items
        .into_iter()
        .find(|i| {
            i["name"]
                .as_str()
                .is_some_and(|x| x.eq_ignore_ascii_case(n))
        })
        .map(|i| json(StatusCode::OK, &i))
        .ok_or_else(|| missing(n))
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

/// The tenant of the subscription a path is under, for 401 challenges.
fn tenant_of_path(st: &SimState, path: &str) -> Option<String> {
    let (_, params) = routes::resolve(path).ok()?;
    let sub = params.subscription()?.to_string();
    st.world().subscription(&sub).map(|s| s.tenant_id.clone())
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
    let claims = auth::authenticate(st, &parts.headers)
        .map_err(|e| auth::with_tenant_challenge(tenant_of_path(st, &path), e))?;
    *caller = Some(claims.oid.clone());
    let (route, params) = routes::resolve(&path)?;
    let api_version = routes::check_api_version(
        route.versions,
        query
            .iter()
            .find(|(k, _)| k == "api-version")
            .map(|(_, v)| v.as_str()),
    )?;
    let sub = params.subscription().map(str::to_string);
    if let Some(s) = &sub {
        auth::check_tenant(&st.world(), s, &claims)?;
    }
    let rate_header = throttle(st, route.kind(&parts.method), sub.as_deref(), &claims)?;
    let ctx = Ctx {
        st,
        method: parts.method.clone(),
        base: base_url(&parts.headers, &parts.uri),
        path,
        query,
        api_version,
        body,
        claims,
        params,
    };
    let outcome = if route.allows(&ctx.method) {
        (route.handler)(&ctx)
    } else {
        Err(method_not_allowed(&ctx.method))
    };
    // Errors carry the remaining quota too, as ARM's do.
    let mut response = outcome.unwrap_or_else(ArmError::into_response);
    if let Some((name, remaining)) = rate_header {
        if let Ok(v) = HeaderValue::from_str(&remaining.to_string()) {
            response.headers_mut().insert(name, v);
        }
    }
    Ok(response)
}

/// Takes a token from ARM's buckets: answers the remaining-quota header to
/// send, or the 429 for an empty bucket.
fn throttle(
    st: &SimState,
    kind: crate::throttle::Kind,
    sub: Option<&str>,
    claims: &crate::token::Claims,
) -> Result<Option<(&'static str, u64)>, ArmError> {
    if !st.config.throttle {
        return Ok(None);
    }
    let (key, tenant_level) = match sub {
        Some(s) => (s.to_string(), false),
        None => (format!("tenant:{}", claims.tid), true),
    };
    match st.throttle.take(&key, &claims.oid, kind) {
        Decision::Allowed { remaining } => Ok(Some((kind.header(tenant_level), remaining))),
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
            Err(e)
        }
    }
}
