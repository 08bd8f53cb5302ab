//! Who is calling: an API token (`Authorization: Bearer ck_...`) or a
//! browser session cookie, with a CSRF token on state-changing requests.
//! Cookies are read and made here only (axum-extra's cookie jar).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
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
        if self.0.user.allows(p) {
            Ok(())
        } else {
            Err(ApiError::forbidden(what))
        }
    }
}

/// The token of an `Authorization: Bearer ...` header.
pub(crate) fn bearer(value: &axum::http::HeaderValue) -> Option<&str> {
    let v = value.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

/// A cookie's value from a request's headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    CookieJar::from_headers(headers)
        .get(name)
        .map(|c| c.value().to_string())
}

/// Attributes every cookie of ours shares: HttpOnly, `Secure` when asked.
fn ours<'c>(mut c: Cookie<'c>, secure: bool, same_site: SameSite) -> Cookie<'c> {
    c.set_http_only(true);
    c.set_secure(secure);
    c.set_same_site(same_site);
    c
}

/// The session cookie: SameSite=Strict, for the whole site.
pub fn session_cookie(value: &str, max_age_secs: i64, secure: bool) -> String {
    let mut c = ours(
        Cookie::new(SESSION_COOKIE, value.to_string()),
        secure,
        SameSite::Strict,
    );
    c.set_path("/");
    c.set_max_age(cookie_age(max_age_secs));
    c.to_string()
}

/// A cookie that deletes the session cookie.
pub fn session_cookie_cleared(secure: bool) -> String {
    session_cookie("", 0, secure)
}

/// A cookie scoped to `path`, SameSite=Lax so that it comes back on a
/// cross-site redirect (the consent flow's return from Entra ID).
pub fn lax_cookie(name: &str, value: &str, path: &str, max_age_secs: i64, secure: bool) -> String {
    let mut c = ours(
        Cookie::new(name.to_string(), value.to_string()),
        secure,
        SameSite::Lax,
    );
    c.set_path(path.to_string());
    c.set_max_age(cookie_age(max_age_secs));
    c.to_string()
}

fn cookie_age(secs: i64) -> cookie::time::Duration {
    cookie::time::Duration::seconds(secs)
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = bearer(value).ok_or_else(ApiError::unauthenticated)?;
            let found = state
                .store
                .authenticate_token(&SecretString::new(token))
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
                Credential::Session { csrf_token, .. } => Some(csrf_token.as_str()),
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
