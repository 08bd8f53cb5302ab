//! Who is looking at a page: the session cookie's user, or a redirect to
//! the sign-in page. Every change a page makes carries the session's CSRF
//! token, in the `X-CSRF-Token` header (htmx sends it from the `<body>`'s
//! `hx-headers`) or in a form's `_csrf` field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloudkeep_domain::{Permission, SecretString};
use cloudkeep_server::{AppState, CSRF_HEADER, Caller, SESSION_COOKIE, cookie};
use cloudkeep_store::{Authenticated, Credential};
use serde::de::DeserializeOwned;

use crate::page::Problem;

/// The signed-in user of a page, with the session's CSRF token.
#[derive(Debug, Clone)]
pub struct Web {
    pub auth: Authenticated,
    pub csrf: String,
    /// The organisation's name, read with the session.
    pub org_name: String,
    /// The request came from htmx (answer a fragment).
    pub htmx: bool,
}

impl Web {
    /// The caller the API's handlers take.
    pub fn caller(&self) -> Caller {
        Caller(self.auth.clone())
    }

    pub fn may(&self, p: Permission) -> bool {
        self.auth.user.role.allows(p)
    }
}

/// Set on a request whose CSRF token is in its form body, which only
/// [`Form`] reads: the session check leaves it to the form.
#[derive(Clone, Copy)]
struct TokenInBody;

impl FromRequestParts<AppState> for Web {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        let htmx = parts.headers.contains_key("hx-request");
        let session = cookie(&parts.headers, SESSION_COOKIE);
        let auth = match session {
            Some(s) => state
                .store
                .authenticate_session(&SecretString::new(s))
                .await
                .map_err(|e| Problem::internal(e).into_response())?,
            None => None,
        };
        let Some(auth) = auth else {
            return Err(to_sign_in(&parts.method, &path, htmx));
        };
        let Credential::Session {
            csrf_token,
            organisation,
        } = &auth.credential
        else {
            return Err(to_sign_in(&parts.method, &path, htmx));
        };
        let (csrf, org_name) = (csrf_token.clone(), organisation.clone());
        let safe = matches!(parts.method, Method::GET | Method::HEAD);
        if !safe
            && parts.extensions.get::<TokenInBody>().is_none()
            && !header_token_matches(&parts.headers, &csrf)
        {
            return Err(Problem::csrf().into_response());
        }
        Ok(Web {
            auth,
            csrf,
            org_name,
            htmx,
        })
    }
}

fn header_token_matches(headers: &HeaderMap, csrf: &str) -> bool {
    headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|sent| constant_time_eq(sent.as_bytes(), csrf.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// To the sign-in page, coming back here afterwards (for a page; a change
/// returns to the page it was made from, which the browser knows).
fn to_sign_in(method: &Method, path: &str, htmx: bool) -> Response {
    let next = if *method == Method::GET { path } else { "/" };
    let location = format!(
        "/login?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("next", next)
            .finish()
    );
    if htmx {
        // htmx follows a redirect inside the fragment; this makes it load
        // the whole sign-in page instead.
        return (StatusCode::UNAUTHORIZED, [("hx-redirect", location)]).into_response();
    }
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

/// A submitted form of the signed-in user: its fields as `T`, after the
/// CSRF token (header or `_csrf` field) matched the session's.
pub struct Form<T> {
    pub web: Web,
    pub form: T,
    /// The raw fields, for repeated names (`T` sees the last of each).
    pub fields: Vec<(String, String)>,
}

/// Most forms carry at most this much (a bulk tag edit's is the largest).
const MAX_FORM: usize = 256 * 1024;

impl<T: DeserializeOwned> FromRequest<AppState> for Form<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(TokenInBody);
        let web = Web::from_request_parts(&mut parts, state).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM)
            .await
            .map_err(|_| Problem::bad_request("the form is too large").into_response())?;
        let fields = pairs(&bytes);
        let sent = fields
            .iter()
            .find(|(k, _)| k == "_csrf")
            .map(|(_, v)| v.as_str());
        let body_ok = sent.is_some_and(|s| constant_time_eq(s.as_bytes(), web.csrf.as_bytes()));
        if !body_ok && !header_token_matches(&parts.headers, &web.csrf) {
            return Err(Problem::csrf().into_response());
        }
        let form = parse_form(&fields).map_err(|e| Problem::bad_request(&e).into_response())?;
        Ok(Form { web, form, fields })
    }
}

fn pairs(bytes: &Bytes) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Fields into `T`; empty fields are absent (an empty input means "not
/// given", which is what an `Option` field should see).
pub fn parse_form<T: DeserializeOwned>(fields: &[(String, String)]) -> Result<T, String> {
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields.iter().filter(|(k, v)| k != "_csrf" && !v.is_empty()))
        .finish();
    serde_urlencoded::from_str(&encoded).map_err(|e| format!("the form is not usable: {e}"))
}

/// The values of a repeated field (checkboxes).
pub fn all_of(fields: &[(String, String)], name: &str) -> Vec<String> {
    fields
        .iter()
        .filter(|(k, v)| k == name && !v.is_empty())
        .map(|(_, v)| v.clone())
        .collect()
}

/// A page's query string as `T`, empty fields absent (a filter form sends
/// every field, filled or not).
pub fn query<T: DeserializeOwned>(uri: &axum::http::Uri) -> Result<T, Problem> {
    let fields: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    parse_form(&fields).map_err(|e| Problem::bad_request(&e))
}

/// The query string without `drop` keys, with `extra` appended: links to
/// the next page, or to another view of the same filter.
pub fn query_with(uri: &axum::http::Uri, drop: &[&str], extra: &[(&str, &str)]) -> String {
    let kept = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(k, v)| !v.is_empty() && !drop.contains(&k.as_ref()))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect::<Vec<_>>();
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(kept)
        .extend_pairs(extra.iter().copied())
        .finish()
}
