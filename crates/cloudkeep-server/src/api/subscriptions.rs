//! Subscriptions' sync levels.

use axum::Json;
use axum::extract::{Path, State};
use cloudkeep_domain::{Permission, SubscriptionId};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use crate::auth::Caller;
use crate::error::{Body, E401, E403, E404, E422};
use crate::wire::{LevelChangeView, SubscriptionView, SyncLevelChanged, SyncLevelRequest};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(set_sync_level))
}

/// Lowering a level takes effect on what is stored at once (resources,
/// tags and their history purged, open edits cancelled or kept local, as
/// the level requires); raising it brings the data back at the next sync.
#[utoipa::path(patch, path = "/api/v1/subscriptions/{id}", tag = "connections", request_body = SyncLevelRequest,
    params(("id" = Uuid, Path, description = "cloudkeep's subscription id")),
    responses((status = 200, body = SyncLevelChanged), E401, E403, E404, E422))]
pub async fn set_sync_level(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<SyncLevelRequest>,
) -> Result<Json<SyncLevelChanged>, ApiError> {
    caller.require(Permission::ManageConnections, "changing sync levels")?;
    let id: SubscriptionId = parse_id(&id, "subscription")?;
    let (sub, removed) = state
        .store
        .set_sync_level(caller.scope(), id, req.sync_level, &caller.actor())
        .await?;
    Ok(Json(SyncLevelChanged {
        subscription: SubscriptionView::from(&sub),
        removed: LevelChangeView {
            resources_purged: removed.resources_purged,
            tags_purged: removed.tags_purged,
            history_purged: removed.history_purged,
            edits_cancelled: removed.edits_cancelled,
            edits_made_local: removed.edits_made_local,
        },
    }))
}
