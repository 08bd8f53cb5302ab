//! Sync runs: start one now, follow it, list them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cloudkeep_domain::{ConnectionId, Permission, RunStatus, SyncTrigger};
use cloudkeep_store::RunFilter;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use crate::auth::Caller;
use crate::error::{E401, E403, E404, E422, Params};
use crate::list::{Page, page_request};
use crate::wire::SyncRunView;
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sync_now))
        .routes(routes!(list_sync_runs))
        .routes(routes!(get_sync_run))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// `false`: answer 202 with the run as soon as it starts, and run it in
    /// the background (follow it at `GET /api/v1/sync-runs/{id}`, whose
    /// report marks the steps to come `pending` or `running`). Default
    /// `true`: answer when it is done.
    pub wait: Option<bool>,
}

#[utoipa::path(post, path = "/api/v1/connections/{id}/sync", tag = "sync", params(("id" = Uuid, Path, description = "connection id"), SyncQuery),
    responses((status = 200, body = SyncRunView, description = "the finished run, with what it could not read"),
        (status = 202, body = SyncRunView, description = "the run, started (`wait=false`)"),
        E401, E403, E404,
        (status = 409, body = crate::error::ErrorBody, description = "a run of the connection is under way (the message names it)"),
        (status = 422, body = crate::error::ErrorBody, description = "the connection was revoked")))]
pub async fn sync_now(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<SyncQuery>,
) -> Result<(StatusCode, Json<SyncRunView>), ApiError> {
    caller.require(Permission::ManageConnections, "starting syncs")?;
    let id: ConnectionId = parse_id(&id, "connection")?;
    let refused = |e: cloudkeep_sync::SyncError| match e {
        cloudkeep_sync::SyncError::Revoked => {
            ApiError::unprocessable("revoked", "the connection was revoked; it no longer syncs")
        }
        cloudkeep_sync::SyncError::Busy(run) => ApiError::new(
            StatusCode::CONFLICT,
            "sync_running",
            format!(
                "a sync of this connection is already running: follow it at /api/v1/sync-runs/{run}"
            ),
        ),
        cloudkeep_sync::SyncError::Store(e) => e.into(),
    };
    let started =
        cloudkeep_sync::start_sync(&state.sync_deps(), caller.scope(), id, SyncTrigger::Manual)
            .await
            .map_err(refused)?;
    let actor = caller.actor();
    let view = SyncRunView::from(started.run());
    // The run outlives this request either way: a client that stops
    // waiting (or disconnects) must not cancel it half-way, which would
    // leave it `running` and the connection unable to start another.
    let run = tokio::spawn(async move {
        let id = started.run().id;
        let finished = started.finish(&actor).await;
        if let Err(e) = &finished {
            tracing::error!(run = %id, error = %e, "a sync could not be recorded");
        }
        finished
    });
    if q.wait.unwrap_or(true) {
        let run = run
            .await
            .map_err(|e| ApiError::internal("a sync task did not finish", e))?
            .map_err(refused)?;
        return Ok((StatusCode::OK, Json(SyncRunView::from(&run))));
    }
    Ok((StatusCode::ACCEPTED, Json(view)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only this connection's runs.
    pub connection: Option<String>,
    /// Only runs in this state.
    pub status: Option<RunStatus>,
    /// Page size, 1 to 1000 (default 100), newest first.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/sync-runs", tag = "sync", params(RunsQuery),
    responses((status = 200, body = Page<SyncRunView>), E401, E403, E422))]
pub async fn list_sync_runs(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<RunsQuery>,
) -> Result<Json<Page<SyncRunView>>, ApiError> {
    caller.require(Permission::ReadData, "reading sync runs")?;
    let page = page_request(q.limit.as_deref(), q.after.as_deref())?;
    let connection = match q.connection.as_deref() {
        Some(c) => Some(c.parse::<ConnectionId>().map_err(|_| {
            ApiError::unprocessable("invalid_filter", "connection is a connection id (a UUID)")
        })?),
        None => None,
    };
    let runs = state
        .store
        .sync_runs(
            caller.scope(),
            &RunFilter {
                connection,
                status: q.status,
            },
            &page,
        )
        .await?;
    Ok(Json(Page::from_store(runs)))
}

#[utoipa::path(get, path = "/api/v1/sync-runs/{id}", tag = "sync", params(("id" = Uuid, Path, description = "run id")),
    responses((status = 200, body = SyncRunView), E401, E403, E404))]
pub async fn get_sync_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SyncRunView>, ApiError> {
    caller.require(Permission::ReadData, "reading sync runs")?;
    let id: uuid::Uuid = parse_id(&id, "sync run")?;
    Ok(Json(SyncRunView::from(
        &state.store.sync_run(caller.scope(), id).await?,
    )))
}
