//! The inventory: resources with their tags and tag history.

use axum::Json;
use axum::extract::{Path, State};
use cloudkeep_domain::{ConnectionId, Permission, SubscriptionId};
use cloudkeep_store::ResourceFilter;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use crate::auth::Caller;
use crate::error::{E401, E403, E404, E422, Params};
use crate::list::{Page, page_request};
use crate::wire::{
    ResourceDetail, ResourceView, TagChangeView, TagCoverageView, TagEditFilter, TagKeyCount,
};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_resources))
        .routes(routes!(get_resource))
        .routes(routes!(tag_coverage))
}

#[utoipa::path(get, path = "/api/v1/tags/coverage", tag = "tags",
    responses((status = 200, body = TagCoverageView, description = "live resources, how many carry tags, and the most used keys"), E401, E403))]
pub async fn tag_coverage(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TagCoverageView>, ApiError> {
    caller.require(Permission::ReadData, "reading tag coverage")?;
    let c = state.store.tag_coverage(caller.scope(), 10).await?;
    Ok(Json(TagCoverageView {
        resources: c.resources,
        tags_read: c.tags_read,
        tagged: c.tagged,
        keys: c
            .keys
            .into_iter()
            .map(|(key, resources)| TagKeyCount { key, resources })
            .collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResourcesQuery {
    /// cloudkeep's subscription id.
    pub subscription: Option<String>,
    /// A connection's resources, also of subscriptions it no longer holds
    /// (a revoked connection's history). Without it, only subscriptions of
    /// live connections are listed.
    pub connection: Option<String>,
    pub resource_group: Option<String>,
    #[serde(rename = "type")]
    #[param(rename = "type")]
    pub resource_type: Option<String>,
    pub location: Option<String>,
    /// Part of the name, any case.
    pub name: Option<String>,
    /// Has a tag with this name (any case).
    pub has_tag: Option<String>,
    /// `key=value`: has this tag with this value.
    pub tag: Option<String>,
    /// Lacks a tag with this name.
    pub missing_tag: Option<String>,
    /// Include resources deleted in Azure.
    pub include_deleted: Option<bool>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
}

fn invalid(message: &str) -> ApiError {
    ApiError::unprocessable("invalid_filter", message)
}

/// A `key=value` tag filter.
fn tag_pair(raw: Option<&str>) -> Result<Option<(String, String)>, ApiError> {
    raw.map(|t| {
        t.split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .ok_or_else(|| invalid("tag is 'key=value' (a tag name, '=', then its value)"))
    })
    .transpose()
}

fn subscription_id(raw: Option<&str>) -> Result<Option<SubscriptionId>, ApiError> {
    raw.map(|s| {
        s.parse::<SubscriptionId>()
            .map_err(|_| invalid("subscription is cloudkeep's subscription id (a UUID)"))
    })
    .transpose()
}

/// The store's filter for a tag edit's `filter` (live resources only).
pub fn edit_filter(f: &TagEditFilter) -> Result<ResourceFilter, ApiError> {
    Ok(ResourceFilter {
        subscription: subscription_id(f.subscription.as_deref())?,
        connection: None,
        resource_group: f.resource_group.clone(),
        resource_type: f.resource_type.clone(),
        location: f.location.clone(),
        name_contains: f.name.clone(),
        has_tag: f.has_tag.clone(),
        tag: tag_pair(f.tag.as_deref())?,
        missing_tag: f.missing_tag.clone(),
        include_deleted: false,
    })
}

#[utoipa::path(get, path = "/api/v1/resources", tag = "resources", params(ResourcesQuery),
    responses((status = 200, body = Page<ResourceView>), E401, E403, E422))]
pub async fn list_resources(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ResourcesQuery>,
) -> Result<Json<Page<ResourceView>>, ApiError> {
    caller.require(Permission::ReadData, "reading resources")?;
    let page = page_request(q.limit.as_deref(), q.after.as_deref())?;
    let connection = q
        .connection
        .as_deref()
        .map(|c| {
            c.parse::<ConnectionId>()
                .map_err(|_| invalid("connection is a connection id (a UUID)"))
        })
        .transpose()?;
    let filter = ResourceFilter {
        subscription: subscription_id(q.subscription.as_deref())?,
        connection,
        resource_group: q.resource_group,
        resource_type: q.resource_type,
        location: q.location,
        name_contains: q.name,
        has_tag: q.has_tag,
        tag: tag_pair(q.tag.as_deref())?,
        missing_tag: q.missing_tag,
        include_deleted: q.include_deleted.unwrap_or(false),
    };
    let resources = state
        .store
        .resources(caller.scope(), &filter, &page)
        .await?;
    Ok(Json(Page::from_store(resources)))
}

#[utoipa::path(get, path = "/api/v1/resources/{id}", tag = "resources", params(("id" = Uuid, Path, description = "cloudkeep's resource id")),
    responses((status = 200, body = ResourceDetail), E401, E403, E404))]
pub async fn get_resource(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ResourceDetail>, ApiError> {
    caller.require(Permission::ReadData, "reading resources")?;
    let id: uuid::Uuid = parse_id(&id, "resource")?;
    let (resource, history) = state.store.resource(caller.scope(), id).await?;
    Ok(Json(ResourceDetail {
        resource: ResourceView::from(&resource),
        tag_history: history
            .into_iter()
            .map(|h| TagChangeView {
                observed_at: h.observed_at,
                old: h.old,
                new: h.new,
            })
            .collect(),
    }))
}
