//! Tag edits: made here, written back at the next sync where the
//! subscription's level allows, conflicts resolved by the user.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cloudkeep_domain::policy::tag_edit_state;
use cloudkeep_domain::{Permission, SubscriptionId, SyncLevel, TagEditState};
use cloudkeep_store::{NewTagEdit, ResourceRecord, Tags};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use super::resources::edit_filter;
use crate::auth::Caller;
use crate::error::{Body, E401, E403, E404, E422, Params};
use crate::list::{Page, page_request};
use crate::wire::{
    PlannedChange, ResolveRequest, ResolveResponse, SkippedResource, TagEditPreview,
    TagEditRequest, TagEditView, TagEditsCreated,
};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tag_edits, create_tag_edits))
        .routes(routes!(preview_tag_edits))
        .routes(routes!(resolve_tag_edit))
}

/// What a tag edit request would do: the edits to make (each resource's
/// tags before and after), and the resources its sync level leaves alone.
pub struct Plan {
    pub edits: Vec<(NewTagEdit, String)>,
    pub skipped: Vec<SkippedResource>,
}

/// Checks a request against Azure's tag rules and each subscription's sync
/// level, and plans its edits; nothing is stored. Creating and previewing
/// share it, so a preview shows exactly what creating would do.
pub async fn plan(
    state: &AppState,
    caller: &Caller,
    req: &TagEditRequest,
) -> Result<Plan, ApiError> {
    caller.require(Permission::EditTags, "editing tags")?;
    if req.set.is_empty() && req.remove.is_empty() {
        return Err(ApiError::unprocessable(
            "empty_edit",
            "set some tags or remove some: the edit changes nothing",
        ));
    }
    let targets = match (&req.resource_id, &req.filter) {
        (Some(id), None) => {
            let (r, _) = state.store.resource(caller.scope(), *id).await?;
            if r.deleted_at.is_some() {
                return Err(ApiError::unprocessable(
                    "resource_deleted",
                    "the resource was deleted in Azure; its tags cannot be edited",
                ));
            }
            vec![r]
        }
        (None, Some(f)) => {
            state
                .store
                .all_resources(caller.scope(), &edit_filter(f)?)
                .await?
        }
        _ => {
            return Err(ApiError::unprocessable(
                "target",
                "give either resource_id or filter",
            ));
        }
    };
    if targets.is_empty() {
        return Err(ApiError::unprocessable(
            "no_resources",
            "no live resource matches the filter",
        ));
    }
    let levels: Vec<(SubscriptionId, cloudkeep_domain::SyncLevel)> = state
        .store
        .subscriptions(caller.scope())
        .await?
        .iter()
        .map(|s| (s.id, s.sync_level))
        .collect();
    let mut edits = Vec::new();
    let mut skipped = Vec::new();
    for r in targets {
        let level = levels
            .iter()
            .find(|(s, _)| *s == r.subscription_id)
            .map(|(_, l)| *l)
            .unwrap_or_default();
        match plan_resource(&r, level, &req.set, &req.remove)? {
            Ok(edit) => edits.push((edit, r.name)),
            Err(skip) => skipped.push(skip),
        }
    }
    if edits.is_empty() {
        let reason = skipped
            .first()
            .map(|s| s.reason.clone())
            .unwrap_or_default();
        return Err(ApiError::unprocessable(
            "sync_level",
            format!("Tags cannot be edited here: {reason}."),
        ));
    }
    Ok(Plan { edits, skipped })
}

/// One resource's edit at its subscription's sync level: the edit to make
/// (pending or local), or why the level refuses it. A tag that breaks
/// Azure's rules is an error naming the resource. Every way of creating
/// edits (a request, a coverage fix) plans through this.
pub fn plan_resource(
    r: &ResourceRecord,
    level: SyncLevel,
    set: &Tags,
    remove: &[String],
) -> Result<Result<NewTagEdit, SkippedResource>, ApiError> {
    use cloudkeep_domain::tags;
    tags::check_edit(set, remove, &r.resource_type)
        .map_err(|e| ApiError::unprocessable("tag_rule", format!("{e} (resource {})", r.name)))?;
    let base = r.tags.clone().unwrap_or_default();
    tags::check_count(&tags::apply(&base, set, remove))
        .map_err(|e| ApiError::unprocessable("tag_rule", format!("{e} (resource {})", r.name)))?;
    Ok(match tag_edit_state(level) {
        Ok((state, reason)) => Ok(NewTagEdit {
            resource_id: r.id,
            subscription_id: r.subscription_id,
            set: set.clone(),
            remove: remove.to_vec(),
            base,
            state,
            reason,
        }),
        Err(reason) => Err(SkippedResource {
            resource_id: r.id,
            reason,
        }),
    })
}

#[utoipa::path(post, path = "/api/v1/tag-edits", tag = "tags", request_body = TagEditRequest,
    responses((status = 201, body = TagEditsCreated), E401, E403, E404,
        (status = 422, body = crate::error::ErrorBody, description = "a tag breaks Azure's rules, nothing matches, or the sync level forbids tag edits")))]
pub async fn create_tag_edits(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<TagEditRequest>,
) -> Result<(StatusCode, Json<TagEditsCreated>), ApiError> {
    let Plan { edits, skipped } = plan(&state, &caller, &req).await?;
    let created = state
        .store
        .create_tag_edits(
            caller.scope(),
            edits.into_iter().map(|(e, _)| e).collect(),
            &caller.actor(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TagEditsCreated {
            edits: created.iter().map(TagEditView::from).collect(),
            skipped,
        }),
    ))
}

#[utoipa::path(post, path = "/api/v1/tag-edits/preview", tag = "tags", request_body = TagEditRequest,
    responses((status = 200, body = TagEditPreview, description = "what the same request to POST /api/v1/tag-edits would do; nothing is stored"), E401, E403, E404,
        (status = 422, body = crate::error::ErrorBody, description = "a tag breaks Azure's rules, nothing matches, or the sync level forbids tag edits")))]
pub async fn preview_tag_edits(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<TagEditRequest>,
) -> Result<Json<TagEditPreview>, ApiError> {
    use cloudkeep_domain::tags;
    let Plan { edits, skipped } = plan(&state, &caller, &req).await?;
    Ok(Json(TagEditPreview {
        changes: edits
            .into_iter()
            .map(|(e, name)| PlannedChange {
                resource_id: e.resource_id,
                name,
                after: tags::apply(&e.base, &e.set, &e.remove),
                before: e.base,
                state: e.state,
                reason: e.reason,
            })
            .collect(),
        skipped,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TagEditsQuery {
    pub state: Option<TagEditState>,
    /// cloudkeep's resource id.
    pub resource: Option<String>,
    /// cloudkeep's subscription id.
    pub subscription: Option<String>,
    /// Page size, 1 to 1000 (default 100), newest first.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/tag-edits", tag = "tags", params(TagEditsQuery),
    responses((status = 200, body = Page<TagEditView>), E401, E403, E422))]
pub async fn list_tag_edits(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<TagEditsQuery>,
) -> Result<Json<Page<TagEditView>>, ApiError> {
    caller.require(Permission::ReadData, "reading tag edits")?;
    let page = page_request(q.limit.as_deref(), q.after.as_deref())?;
    let uuid = |raw: Option<&str>, what: &str| {
        raw.map(|r| {
            r.parse::<uuid::Uuid>().map_err(|_| {
                ApiError::unprocessable(
                    "invalid_filter",
                    format!("{what} is cloudkeep's {what} id (a UUID)"),
                )
            })
        })
        .transpose()
    };
    let filter = cloudkeep_store::TagEditFilter {
        state: q.state,
        resource: uuid(q.resource.as_deref(), "resource")?,
        subscription: uuid(q.subscription.as_deref(), "subscription")?
            .map(SubscriptionId::from_uuid),
    };
    let edits = state
        .store
        .tag_edits(caller.scope(), &filter, &page)
        .await?;
    Ok(Json(Page::from_store(edits)))
}

#[utoipa::path(post, path = "/api/v1/tag-edits/{id}/resolve", tag = "tags", request_body = ResolveRequest,
    params(("id" = Uuid, Path, description = "the conflicted edit")),
    responses((status = 200, body = ResolveResponse), E401, E403, E404,
        (status = 422, body = crate::error::ErrorBody, description = "the edit is not in conflict")))]
pub async fn resolve_tag_edit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<ResolveRequest>,
) -> Result<Json<ResolveResponse>, ApiError> {
    caller.require(Permission::EditTags, "resolving tag conflicts")?;
    let id: uuid::Uuid = parse_id(&id, "tag edit")?;
    let created = state
        .store
        .resolve_tag_conflict(caller.scope(), id, req.resolution, &caller.actor())
        .await?;
    Ok(Json(ResolveResponse {
        edit: created.as_ref().map(TagEditView::from),
    }))
}
