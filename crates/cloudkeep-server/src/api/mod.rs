//! The API, one module per area. Each module's `routes()` answers its
//! router with its OpenAPI paths; `all()` lists them, so adding an area is
//! one module and one line here.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod connections;
pub mod consent;
pub mod controls;
pub mod evidence;
pub mod resources;
pub mod spend;
pub mod subscriptions;
pub mod sync_runs;
pub mod tag_edits;
pub mod tokens;
pub mod users;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::AppState;
use crate::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(title = "cloudkeep API", description = "Azure spend, inventory and tags, and security evidence, per organisation."),
    components(schemas(ErrorBody)),
    tags((name = "auth"), (name = "users"), (name = "tokens"), (name = "connections"), (name = "sync"), (name = "resources"), (name = "tags"), (name = "audit"), (name = "evidence"), (name = "alerts"), (name = "spend"))
)]
struct ApiDoc;

/// Every area's routes, documented.
pub fn all() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::routes())
        .merge(users::routes())
        .merge(tokens::routes())
        .merge(connections::routes())
        .merge(consent::routes())
        .merge(subscriptions::routes())
        .merge(sync_runs::routes())
        .merge(resources::routes())
        .merge(tag_edits::routes())
        .merge(audit::routes())
        .merge(evidence::routes())
        .merge(controls::routes())
        .merge(alerts::routes())
        .merge(spend::routes())
}

/// Parses a path id; a malformed id names nothing, so it is answered as
/// not found.
pub(crate) fn parse_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, crate::ApiError> {
    raw.parse().map_err(|_| crate::ApiError::not_found(what))
}
