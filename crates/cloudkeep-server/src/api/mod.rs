//! The API, one module per area. Each module's `routes()` answers its
//! router with its OpenAPI paths; `all()` lists them, so adding an area is
//! one module and one line here.

pub mod alerts;
pub mod anomalies;
pub mod assessments;
pub mod audit;
pub mod auth;
pub mod budgets;
pub mod connections;
pub mod consent;
pub mod controls;
pub mod coverage;
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
    modifiers(&SecuritySchemes),
    security(("bearer" = []), ("session" = [])),
    tags((name = "auth"), (name = "users"), (name = "tokens"), (name = "connections"), (name = "sync"), (name = "resources"), (name = "tags"), (name = "audit"), (name = "evidence"), (name = "alerts"), (name = "assessments"), (name = "spend"), (name = "budgets"), (name = "coverage"))
)]
struct ApiDoc;

/// Every operation that reads a JSON body answers 400 for a body that is
/// not JSON of the right shape and 415 for one that is not JSON at all
/// (the `Body` extractor's answers), so the document says so once here.
struct BodyErrors;

impl utoipa::Modify for BodyErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in operations.into_iter().flatten() {
                if op.request_body.is_none() {
                    continue;
                }
                let responses = &mut op.responses.responses;
                responses.entry("400".into()).or_insert_with(|| {
                    error("the body is not JSON of the documented shape (the message says where)")
                        .into()
                });
                responses
                    .entry("415".into())
                    .or_insert_with(|| error("the body is not sent as application/json").into());
            }
        }
    }
}

/// How a caller authenticates: an API token, or a browser session (whose
/// changes also carry the `X-CSRF-Token` header from the login answer).
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "an API token (`ck_...`), made with POST /api/v1/tokens",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::SESSION_COOKIE,
                "the session cookie of POST /api/v1/auth/login; a change also sends the X-CSRF-Token header",
            ))),
        );
    }
}

/// What the document says of every operation alike, once the areas'
/// paths are in it.
pub(crate) fn complete(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::Modify;
    BodyErrors.modify(doc);
}

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
        .merge(assessments::routes())
        .merge(spend::routes())
        .merge(budgets::routes())
        .merge(coverage::routes())
        .merge(anomalies::routes())
}

/// Parses a path id; a malformed id names nothing, so it is answered as
/// not found.
pub(crate) fn parse_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, crate::ApiError> {
    raw.parse().map_err(|_| crate::ApiError::not_found(what))
}
