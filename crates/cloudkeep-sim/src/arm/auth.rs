//! Who is calling and what they may do: the bearer token's checks (with
//! ARM's 401 bodies and challenges) and authorisation against the
//! scenario's role assignments (ARM's 403).

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};

use super::{ArmError, epoch_time};
use crate::state::SimState;
use crate::token::{ARM_AUDIENCES, Claims};
use crate::world::World;

pub fn permitted(world: &World, principal: &str, action: &str, scope: &str) -> bool {
    world
        .roles_at(principal, scope)
        .any(|a| world.role_permits(&a.role_definition_id, action))
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

/// Names the subscription's tenant in a 401's challenge.
pub fn with_tenant_challenge(tenant: Option<String>, mut e: ArmError) -> ArmError {
    if let Some(t) = tenant {
        for (name, value) in &mut e.headers {
            if *name == "www-authenticate" {
                *value = challenge(&t, &e.message);
            }
        }
    }
    e
}

/// The bearer token of a request, or ARM's 401 for its absence or form.
pub fn bearer(headers: &HeaderMap) -> Result<&str, ArmError> {
    let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(unauthenticated(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            unauthenticated(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            )
        })
}

/// Verifies a token's signature and expiry; the audience is the caller's check.
pub fn verify(st: &SimState, token: &str) -> Result<Claims, ArmError> {
    let claims = st.signer.verify(token).map_err(|_| {
        unauthenticated("InvalidAuthenticationToken", "The access token is invalid.")
    })?;
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

pub fn authenticate(st: &SimState, headers: &HeaderMap) -> Result<Claims, ArmError> {
    let claims = verify(st, bearer(headers)?)?;
    if !ARM_AUDIENCES.contains(&claims.aud.as_str()) {
        return Err(unauthenticated(
            "InvalidAuthenticationTokenAudience",
            &format!(
                "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'.",
                claims.aud
            ),
        ));
    }
    Ok(claims)
}

/// The subscription must exist, in the token's tenant.
pub fn check_tenant(world: &World, sub: &str, claims: &Claims) -> Result<(), ArmError> {
    let Some(subscription) = world.subscription(sub) else {
        return Err(ArmError::not_found(
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        ));
    };
    if subscription.tenant_id.eq_ignore_ascii_case(&claims.tid) {
        return Ok(());
    }
    let t = &subscription.tenant_id;
    let message = format!(
        "The access token is from the wrong issuer 'https://sts.windows.net/{}/'. It must match the tenant 'https://sts.windows.net/{t}/' associated with this subscription. Please use the authority (URL) 'https://login.windows.net/{t}' to get the token. Note, if the subscription is transferred to another tenant there is no impact to the services, but information about new tenant could take time to propagate (up to an hour). If you just transferred your subscription and see this error message, please try back later.",
        claims.tid
    );
    let mut e = ArmError::new(
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationTokenTenant",
        message.clone(),
    );
    e.headers.push(("www-authenticate", challenge(t, &message)));
    Err(e)
}
