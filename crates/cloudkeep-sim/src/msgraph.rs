//! Microsoft Graph, the little of it scanners read first: the tenant's
//! domains (`GET /v1.0/domains`). Served at `graph.microsoft.com` (by host
//! name) and under `/v1.0/` and `/beta/` on the simulator's own origin.
//! Tokens must be Graph's (audience `https://graph.microsoft.com`); every
//! other path answers Graph's own 404, never ARM's.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::{Value, json};

use crate::server::{Caller, json};
use crate::state::SimState;
use crate::world::Tenant;

/// Audiences Graph accepts.
pub const GRAPH_AUDIENCES: &[&str] = &[
    "https://graph.microsoft.com",
    "https://graph.microsoft.com/",
    "00000003-0000-0000-c000-000000000000",
];

/// One of a tenant's domains.
pub struct Domain {
    pub name: String,
    pub is_default: bool,
    pub is_initial: bool,
    pub is_verified: bool,
    pub federated: bool,
}

/// A tenant's domains: its initial `onmicrosoft.com` domain and, for the
/// customer tenant, a verified default domain, a federated one and one
/// still unverified.
pub fn domains_of(t: &Tenant) -> Vec<Domain> {
    let initial = Domain {
        name: t.default_domain.clone(),
        is_default: t.is_app_home,
        is_initial: true,
        is_verified: true,
        federated: false,
    };
    if t.is_app_home {
        return vec![initial];
    }
    let org = t
        .default_domain
        .split('.')
        .next()
        .unwrap_or("contoso")
        .to_string();
    let domain = |name: String, is_default, is_verified, federated| Domain {
        name,
        is_default,
        is_initial: false,
        is_verified,
        federated,
    };
    vec![
        initial,
        domain(format!("{org}.com"), true, true, false),
        domain(format!("corp.{org}.com"), false, true, true),
        domain(format!("{org}-labs.net"), false, false, false),
    ]
}

/// Graph's error body.
fn graph_error(st: &SimState, status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let mut r = json(
        status,
        &json!({"error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                "request-id": st.random_id(),
                "client-request-id": st.random_id(),
            },
        }}),
    );
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static(
                "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", client_id=\"00000003-0000-0000-c000-000000000000\"",
            ),
        );
    }
    r
}

pub async fn dispatch(State(st): State<Arc<SimState>>, req: Request) -> Response<Body> {
    let (parts, _) = req.into_parts();
    answer(&st, parts.uri.path(), &parts.headers, &parts.method)
}

fn answer(
    st: &SimState,
    path: &str,
    headers: &HeaderMap,
    method: &axum::http::Method,
) -> Response<Body> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let Some(token) = token else {
        return graph_error(
            st,
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token is empty.",
        );
    };
    let claims = match st.signer.verify(token.trim()) {
        Ok(c) if c.exp > chrono::Utc::now().timestamp() => c,
        Ok(_) => {
            return graph_error(
                st,
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            );
        }
        Err(_) => {
            return graph_error(
                st,
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                "IDX14100: JWT is not well formed.",
            );
        }
    };
    if !GRAPH_AUDIENCES.contains(&claims.aud.as_str()) {
        return graph_error(
            st,
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Invalid audience.",
        );
    }
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut response = match (segs.as_slice(), method.as_str()) {
        ([v, d], "GET") if is_version(v) && d.eq_ignore_ascii_case("domains") => {
            domains(st, &claims.tid, v)
        }
        ([v, d, name], "GET") if is_version(v) && d.eq_ignore_ascii_case("domains") => {
            let world = st.world();
            let found = world
                .tenant(&claims.tid)
                .map(domains_of)
                .unwrap_or_default()
                .into_iter()
                .find(|x| x.name.eq_ignore_ascii_case(name));
            match found {
                Some(x) => {
                    let mut body = domain_json(&x);
                    body["@odata.context"] = json!(format!(
                        "https://graph.microsoft.com/{v}/$metadata#domains/$entity"
                    ));
                    json(StatusCode::OK, &body)
                }
                None => graph_error(
                    st,
                    StatusCode::NOT_FOUND,
                    "Request_ResourceNotFound",
                    &format!(
                        "Resource '{name}' does not exist or one of its queried reference-property objects are not present."
                    ),
                ),
            }
        }
        _ => {
            let segment = segs.get(1).or(segs.first()).copied().unwrap_or("");
            graph_error(
                st,
                StatusCode::NOT_FOUND,
                "Request_ResourceNotFound",
                &format!("Resource not found for the segment '{segment}'."),
            )
        }
    };
    response.extensions_mut().insert(Caller(claims.oid));
    response
}

fn is_version(v: &str) -> bool {
    v.eq_ignore_ascii_case("v1.0") || v.eq_ignore_ascii_case("beta")
}

fn domain_json(d: &Domain) -> Value {
    json!({
        "authenticationType": if d.federated { "Federated" } else { "Managed" },
        "availabilityStatus": null,
        "id": d.name,
        "isAdminManaged": true,
        "isDefault": d.is_default,
        "isInitial": d.is_initial,
        "isRoot": !d.name.starts_with("corp."),
        "isVerified": d.is_verified,
        "supportedServices": if d.is_verified { json!(["Email", "OfficeCommunicationsOnline"]) } else { json!([]) },
        "passwordValidityPeriodInDays": 2147483647,
        "passwordNotificationWindowInDays": 14,
        "state": null,
    })
}

fn domains(st: &SimState, tenant: &str, version: &str) -> Response<Body> {
    let world = st.world();
    let value: Vec<Value> = world
        .tenant(tenant)
        .map(domains_of)
        .unwrap_or_default()
        .iter()
        .map(domain_json)
        .collect();
    json(
        StatusCode::OK,
        &json!({
            "@odata.context": format!("https://graph.microsoft.com/{version}/$metadata#domains"),
            "value": value,
        }),
    )
}
