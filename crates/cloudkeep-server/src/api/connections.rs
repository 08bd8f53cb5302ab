//! Connections to Azure tenants by service principal: validated before
//! anything is stored, re-authenticated, revoked.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cloudkeep_domain::{AuthMethod, ConnectionId, Permission};
use cloudkeep_store::{AuditEntry, ConnectionCredential, NewConnection, NewSubscription};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use crate::auth::Caller;
use crate::connect::validate;
use crate::error::{Body, E401, E403, E404, E422, E502, Params};
use crate::list::{Page, page_request};
use crate::wire::{
    CheckRequest, CheckedSubscription, ConnectRequest, ConnectionCheck, ConnectionView,
    ReauthRequest, UpdateConnectionRequest,
};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_connections, create_connection))
        .routes(routes!(
            get_connection,
            update_connection,
            revoke_connection
        ))
        .routes(routes!(reauth_connection))
        .routes(routes!(check_connection))
}

#[utoipa::path(post, path = "/api/v1/connections/check", tag = "connections", request_body = CheckRequest,
    responses((status = 200, body = ConnectionCheck, description = "the roles the principal holds on each subscription it sees, and what they allow; nothing is stored"),
        E401, E403, (status = 422, body = crate::error::ErrorBody, description = "the credential is not usable (the message says why and how to fix it)"), E502))]
pub async fn check_connection(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CheckRequest>,
) -> Result<Json<ConnectionCheck>, ApiError> {
    caller.require(Permission::ManageConnections, "checking connections")?;
    required(&[("tenant_id", &req.tenant_id), ("client_id", &req.client_id)])?;
    if req.client_secret.is_empty() {
        return Err(missing("client_secret"));
    }
    let validated = validate(
        &state,
        req.tenant_id.trim(),
        req.client_id.trim(),
        &req.client_secret,
        req.subscription_ids.as_deref(),
    )
    .await?;
    let ids: Vec<String> = validated
        .subscriptions
        .iter()
        .map(|(id, _, _)| id.to_ascii_lowercase())
        .collect();
    let holders = state
        .store
        .subscription_holders(caller.scope(), &ids)
        .await?;
    Ok(Json(ConnectionCheck {
        tenant_id: validated.token.tenant_id.clone(),
        principal_id: validated.token.object_id.clone(),
        subscriptions: validated
            .subscriptions
            .into_iter()
            .map(
                |(subscription_id, display_name, permissions)| CheckedSubscription {
                    connected_by: holders
                        .iter()
                        .find(|(id, _)| id.eq_ignore_ascii_case(&subscription_id))
                        .map(|(_, c)| c.as_uuid()),
                    initial_level: permissions.initial_level(),
                    subscription_id,
                    display_name,
                    permissions,
                },
            )
            .collect(),
    }))
}

fn missing(field: &str) -> ApiError {
    ApiError::unprocessable("missing_field", format!("'{field}' must not be empty"))
}

/// Fails naming the first field that is empty.
fn required(fields: &[(&str, &String)]) -> Result<(), ApiError> {
    match fields.iter().find(|(_, v)| v.trim().is_empty()) {
        Some((field, _)) => Err(missing(field)),
        None => Ok(()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConnectionsQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/connections", tag = "connections", params(ConnectionsQuery),
    responses((status = 200, body = Page<ConnectionView>), E401, E403, E422))]
pub async fn list_connections(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ConnectionsQuery>,
) -> Result<Json<Page<ConnectionView>>, ApiError> {
    caller.require(Permission::ReadData, "reading connections")?;
    let page = page_request(q.limit.as_deref(), q.after.as_deref())?;
    let connections = state.store.connections_page(caller.scope(), &page).await?;
    Ok(Json(Page::from_store(connections)))
}

#[utoipa::path(post, path = "/api/v1/connections", tag = "connections", request_body = ConnectRequest,
    responses((status = 201, body = ConnectionView, description = "validated and stored, with the permission check per subscription"),
        E401, E403, (status = 409, body = crate::error::ErrorBody, description = "a subscription is already connected by another connection"),
        (status = 422, body = crate::error::ErrorBody, description = "the credential or its permissions are not usable; nothing stored"), E502))]
pub async fn create_connection(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<ConnectRequest>,
) -> Result<(StatusCode, Json<ConnectionView>), ApiError> {
    caller.require(Permission::ManageConnections, "connecting tenants")?;
    required(&[
        ("name", &req.name),
        ("tenant_id", &req.tenant_id),
        ("client_id", &req.client_id),
    ])?;
    if req.client_secret.is_empty() {
        return Err(missing("client_secret"));
    }
    let validated = match validate(
        &state,
        req.tenant_id.trim(),
        req.client_id.trim(),
        &req.client_secret,
        req.subscription_ids.as_deref(),
    )
    .await
    {
        Ok(v) => v,
        Err(e) => {
            state
                .store
                .audit(
                    caller.scope(),
                    AuditEntry::new(
                        caller.actor(),
                        "connection.rejected",
                        format!("tenant:{}", req.tenant_id.trim()),
                        json!({"client_id": req.client_id, "reason": e.code}),
                    ),
                )
                .await?;
            return Err(e);
        }
    };
    let id = ConnectionId::new();
    let credential = state
        .store
        .seal_credential(caller.scope(), state.keys.as_ref(), id, &req.client_secret)
        .await?;
    let subscriptions = validated
        .subscriptions
        .into_iter()
        .map(|(azure_id, display_name, report)| NewSubscription {
            sync_level: report.initial_level(),
            permissions: report,
            azure_id,
            display_name,
        })
        .collect();
    let hours = |h: Option<u32>, default: std::time::Duration| {
        h.map(|h| i64::from(h) * 3600)
            .unwrap_or(default.as_secs() as i64)
    };
    let connection = state
        .store
        .create_connection(
            caller.scope(),
            NewConnection {
                id,
                name: req.name,
                tenant_id: validated.token.tenant_id.clone(),
                client_id: req.client_id.trim().to_string(),
                principal_id: validated.token.object_id.clone(),
                credential: ConnectionCredential::ClientSecret(credential),
                cadence_secs: hours(req.cadence_hours, state.settings.default_cadence),
                stale_after_secs: hours(req.stale_after_hours, state.settings.default_stale_after),
                subscriptions,
                actor: caller.actor(),
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(ConnectionView::from(&connection))))
}

#[utoipa::path(get, path = "/api/v1/connections/{id}", tag = "connections", params(("id" = Uuid, Path, description = "connection id")),
    responses((status = 200, body = ConnectionView), E401, E403, E404))]
pub async fn get_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    caller.require(Permission::ReadData, "reading connections")?;
    let id: ConnectionId = parse_id(&id, "connection")?;
    Ok(Json(ConnectionView::from(
        &state.store.connection(caller.scope(), id).await?,
    )))
}

#[utoipa::path(patch, path = "/api/v1/connections/{id}", tag = "connections", request_body = UpdateConnectionRequest,
    params(("id" = Uuid, Path, description = "connection id")), responses((status = 200, body = ConnectionView), E401, E403, E404, E422))]
pub async fn update_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<UpdateConnectionRequest>,
) -> Result<Json<ConnectionView>, ApiError> {
    caller.require(Permission::ManageConnections, "changing connections")?;
    let id: ConnectionId = parse_id(&id, "connection")?;
    let secs = |h: Option<u32>| h.map(|h| i64::from(h) * 3600);
    let updated = state
        .store
        .update_connection(
            caller.scope(),
            id,
            req.name.as_deref(),
            secs(req.cadence_hours),
            secs(req.stale_after_hours),
            &caller.actor(),
        )
        .await?;
    Ok(Json(ConnectionView::from(&updated)))
}

#[utoipa::path(delete, path = "/api/v1/connections/{id}", tag = "connections", params(("id" = Uuid, Path, description = "connection id")),
    responses((status = 200, body = ConnectionView, description = "revoked: the credential is destroyed; what it read stays readable"), E401, E403, E404))]
pub async fn revoke_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    caller.require(Permission::ManageConnections, "revoking connections")?;
    let id: ConnectionId = parse_id(&id, "connection")?;
    Ok(Json(ConnectionView::from(
        &state
            .store
            .revoke_connection(caller.scope(), id, &caller.actor())
            .await?,
    )))
}

#[utoipa::path(post, path = "/api/v1/connections/{id}/reauth", tag = "connections", request_body = ReauthRequest,
    params(("id" = Uuid, Path, description = "connection id")), responses((status = 200, body = ConnectionView), E401, E403, E404, E422, E502))]
pub async fn reauth_connection(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<ReauthRequest>,
) -> Result<Json<ConnectionView>, ApiError> {
    caller.require(
        Permission::ManageConnections,
        "re-authenticating connections",
    )?;
    let id: ConnectionId = parse_id(&id, "connection")?;
    let current = state.store.connection(caller.scope(), id).await?;
    if current.deleted_at.is_some() {
        return Err(ApiError::unprocessable(
            "revoked",
            "the connection was revoked; connect the tenant again instead",
        ));
    }
    if current.auth_method == AuthMethod::OperatorApp {
        return Err(ApiError::unprocessable(
            "operator_app",
            "this connection was made by consent and signs in with the operator's application, so it has no secret of yours to renew: if it needs re-authenticating, the operator must renew the application's secret, or run the consent flow again (GET /api/v1/connections/consent/start?connection=ID)",
        ));
    }
    state
        .azure
        .client_credentials_token(&current.tenant_id, &current.client_id, &req.client_secret)
        .await
        .map_err(crate::connect::explain)?;
    let sealed = state
        .store
        .seal_credential(caller.scope(), state.keys.as_ref(), id, &req.client_secret)
        .await?;
    Ok(Json(ConnectionView::from(
        &state
            .store
            .replace_credential(caller.scope(), id, sealed, &caller.actor())
            .await?,
    )))
}
