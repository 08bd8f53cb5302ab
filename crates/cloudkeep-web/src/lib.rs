//! cloudkeep's web UI: pages rendered on the server from askama templates,
//! htmx (one vendored file) for partial updates, SVG charts, static files
//! built into the binary. No Node toolchain builds or runs any of it.
//!
//! **API boundary:** pages call the API's own handlers
//! (`cloudkeep_server::api::*`) or the store functions they call, with the
//! page's session as the caller: no business rule is written twice, and a
//! page can do nothing its user could not do through the API. Only this
//! crate knows HTML.
//!
//! Security: every change carries the session's CSRF token ([`session`]);
//! every page answers with a Content-Security-Policy that allows scripts
//! and styles from this origin's files only (no inline script or style,
//! which is why charts use classes and not `style`), refuses framing, and
//! is not cached.

mod assets;
pub mod charts;
mod format;
mod page;
pub mod pages;
mod session;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cloudkeep_server::AppState;

/// Every page, the static files, and the fallback for unknown paths (HTML
/// for a browser, the API's JSON error under `/api/`).
pub fn pages() -> Router<AppState> {
    pages::routes()
        .route("/assets/{file}", get(assets::serve))
        .route(
            "/favicon.ico",
            get(|| async { page::see_other(assets::url("favicon.svg")) }),
        )
        .fallback(fallback)
        .layer(axum::middleware::from_fn(security_headers))
}

/// The API and the pages, as `cloudkeep serve` answers them.
pub fn app(state: AppState) -> Router {
    cloudkeep_server::app_with(state, pages())
}

async fn fallback(req: Request) -> Response {
    if req.uri().path().starts_with("/api/") {
        cloudkeep_server::no_such_route().into_response()
    } else {
        page::Problem::not_found().into_response()
    }
}

/// The Content-Security-Policy of every page: this origin's scripts,
/// styles and images only; forms post here only; no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    response
}
