//! Who is calling: an API token (`Authorization: Bearer ck_...`) or a
//! browser session cookie, with a CSRF token on state-changing requests.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{Method, header};
use cloudkeep_domain::{Permission, SecretString};
use cloudkeep_store::{Authenticated, Credential, OrgScope};

use crate::{ApiError, AppState};

pub const SESSION_COOKIE: &str = "cloudkeep_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// An authenticated caller.
pub struct Caller(pub Authenticated);

impl Caller {
    pub fn scope(&self) -> &OrgScope {
        &self.0.scope
    }

    pub fn actor(&self) -> String {
        self.0.actor()
    }

    /// Fails with 403 unless the caller's role allows `p`.
    pub fn require(&self, p: Permission, what: &str) -> Result<(), ApiError> {
        if self.0.user.role.allows(p) {
            Ok(())
        } else {
            Err(ApiError::forbidden(what))
        }
    }
}

/// A cookie's value from a request's headers.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .ok_or_else(ApiError::unauthenticated)?;
            let found = state
                .store
                .authenticate_token(&SecretString::new(token.trim()))
                .await?;
            return found.map(Caller).ok_or_else(ApiError::unauthenticated);
        }
        let Some(session) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(ApiError::unauthenticated());
        };
        let auth = state
            .store
            .authenticate_session(&SecretString::new(session))
            .await?
            .ok_or_else(ApiError::unauthenticated)?;
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            let expected = match &auth.credential {
                Credential::Session { csrf_token } => Some(csrf_token.as_str()),
                _ => None,
            };
            if sent.is_none() || sent != expected {
                return Err(ApiError::new(
                    axum::http::StatusCode::FORBIDDEN,
                    "csrf",
                    "a state-changing request with a session cookie needs the X-CSRF-Token header from the login response",
                ));
            }
        }
        Ok(Caller(auth))
    }
}
