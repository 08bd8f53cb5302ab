//! Alerts (every area's: evidence staleness now, spend later) and the
//! webhooks that deliver them. Viewers and above read alerts, editors and
//! above acknowledge them; admins and owners manage webhooks.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cloudkeep_domain::Permission;
use cloudkeep_domain::evidence::{AlertKind, AlertState};
use cloudkeep_store::AlertFilter;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use crate::auth::Caller;
use crate::error::{Body, E401, E403, E404, E422, Params};
use crate::list::{Page, page_request};
use crate::wire::{
    AlertView, CreateWebhookRequest, DeliveryView, UpdateWebhookRequest, WebhookCreated,
    WebhookView,
};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_alerts))
        .routes(routes!(get_alert))
        .routes(routes!(acknowledge_alert))
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(get_webhook, update_webhook, delete_webhook))
        .routes(routes!(test_webhook))
        .routes(routes!(list_deliveries))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    pub state: Option<AlertState>,
    pub kind: Option<AlertKind>,
    /// What it is about (`connection:{id}`).
    pub scope: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
}

/// Newest first.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts", params(AlertsQuery),
    responses((status = 200, body = Page<AlertView>), E401, E403, E422))]
pub async fn list_alerts(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<AlertsQuery>,
) -> Result<Json<Page<AlertView>>, ApiError> {
    caller.require(Permission::ReadData, "reading alerts")?;
    let page = page_request(q.limit.as_deref(), q.after.as_deref())?;
    let filter = AlertFilter {
        state: q.state,
        kind: q.kind,
        scope: q.scope,
    };
    let alerts = state.store.alerts(caller.scope(), &filter, &page).await?;
    Ok(Json(Page::from_store(alerts)))
}

#[utoipa::path(get, path = "/api/v1/alerts/{id}", tag = "alerts", params(("id" = Uuid, Path, description = "alert id")),
    responses((status = 200, body = AlertView), E401, E403, E404))]
pub async fn get_alert(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AlertView>, ApiError> {
    caller.require(Permission::ReadData, "reading alerts")?;
    let id: uuid::Uuid = parse_id(&id, "alert")?;
    Ok(Json(AlertView::from(
        &state.store.alert(caller.scope(), id).await?,
    )))
}

/// Marks an open alert seen (audited, delivered); it resolves when its
/// cause clears. Acknowledging it again answers it unchanged.
#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", tag = "alerts", params(("id" = Uuid, Path, description = "alert id")),
    responses((status = 200, body = AlertView), E401, E403, E404, E422))]
pub async fn acknowledge_alert(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AlertView>, ApiError> {
    caller.require(Permission::AcknowledgeAlerts, "acknowledging alerts")?;
    let id: uuid::Uuid = parse_id(&id, "alert")?;
    Ok(Json(AlertView::from(
        &state
            .store
            .acknowledge_alert(caller.scope(), id, &caller.actor())
            .await?,
    )))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
}

/// The organisation's webhooks, oldest first (their secrets are never shown again).
#[utoipa::path(get, path = "/api/v1/webhooks", tag = "alerts", params(PageQuery),
    responses((status = 200, body = Page<WebhookView>), E401, E403, E422))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<PageQuery>,
) -> Result<Json<Page<WebhookView>>, ApiError> {
    caller.require(Permission::ManageWebhooks, "reading webhooks")?;
    let page = page_request(q.limit.as_deref(), q.after.as_deref())?;
    Ok(Json(Page::from_store(
        state.store.webhooks(caller.scope(), &page).await?,
    )))
}

fn checked_url(state: &AppState, raw: &str) -> Result<String, ApiError> {
    cloudkeep_sync::webhooks::check_url(raw, state.settings.webhooks)
        .map(|u| u.to_string())
        .map_err(|why| ApiError::unprocessable("invalid_url", why))
}

/// Adds a webhook; its signing secret is in the answer, this once.
#[utoipa::path(post, path = "/api/v1/webhooks", tag = "alerts", request_body = CreateWebhookRequest,
    responses((status = 201, body = WebhookCreated, description = "the webhook; its secret is shown this once"), E401, E403, E422))]
pub async fn create_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<WebhookCreated>), ApiError> {
    caller.require(Permission::ManageWebhooks, "adding webhooks")?;
    let url = checked_url(&state, &req.url)?;
    let (hook, secret) = state
        .store
        .create_webhook(
            caller.scope(),
            state.keys.as_ref(),
            &req.name,
            &url,
            &caller.actor(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookCreated {
            webhook: WebhookView::from(&hook),
            secret: secret.expose().to_string(),
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}", tag = "alerts", params(("id" = Uuid, Path, description = "webhook id")),
    responses((status = 200, body = WebhookView), E401, E403, E404))]
pub async fn get_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<WebhookView>, ApiError> {
    caller.require(Permission::ManageWebhooks, "reading webhooks")?;
    let id: uuid::Uuid = parse_id(&id, "webhook")?;
    Ok(Json(WebhookView::from(
        &state.store.webhook(caller.scope(), id).await?,
    )))
}

#[utoipa::path(patch, path = "/api/v1/webhooks/{id}", tag = "alerts", request_body = UpdateWebhookRequest,
    params(("id" = Uuid, Path, description = "webhook id")), responses((status = 200, body = WebhookView), E401, E403, E404, E422))]
pub async fn update_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<UpdateWebhookRequest>,
) -> Result<Json<WebhookView>, ApiError> {
    caller.require(Permission::ManageWebhooks, "changing webhooks")?;
    let id: uuid::Uuid = parse_id(&id, "webhook")?;
    let url = req
        .url
        .as_deref()
        .map(|u| checked_url(&state, u))
        .transpose()?;
    Ok(Json(WebhookView::from(
        &state
            .store
            .update_webhook(
                caller.scope(),
                id,
                req.name.as_deref(),
                url.as_deref(),
                req.enabled,
                &caller.actor(),
            )
            .await?,
    )))
}

/// Deletes a webhook: its secret is destroyed and its pending deliveries fail.
#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "alerts", params(("id" = Uuid, Path, description = "webhook id")),
    responses((status = 204, description = "deleted"), E401, E403, E404))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ManageWebhooks, "deleting webhooks")?;
    let id: uuid::Uuid = parse_id(&id, "webhook")?;
    state
        .store
        .delete_webhook(caller.scope(), id, &caller.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a `webhook.test` delivery (sent by the scheduler, like every
/// delivery); answers it.
#[utoipa::path(post, path = "/api/v1/webhooks/{id}/test", tag = "alerts", params(("id" = Uuid, Path, description = "webhook id")),
    responses((status = 202, body = DeliveryView, description = "queued"), E401, E403, E404))]
pub async fn test_webhook(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    caller.require(Permission::ManageWebhooks, "testing webhooks")?;
    let id: uuid::Uuid = parse_id(&id, "webhook")?;
    let delivery = state
        .store
        .queue_test_delivery(caller.scope(), id, &caller.actor())
        .await?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryView::from(&delivery))))
}

/// A webhook's delivery log, newest first, each with its attempts.
#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "alerts", params(("id" = Uuid, Path, description = "webhook id"), PageQuery),
    responses((status = 200, body = Page<DeliveryView>), E401, E403, E404, E422))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<PageQuery>,
) -> Result<Json<Page<DeliveryView>>, ApiError> {
    caller.require(Permission::ManageWebhooks, "reading webhook deliveries")?;
    let id: uuid::Uuid = parse_id(&id, "webhook")?;
    let page = page_request(q.limit.as_deref(), q.after.as_deref())?;
    Ok(Json(Page::from_store(
        state.store.deliveries(caller.scope(), id, &page).await?,
    )))
}
