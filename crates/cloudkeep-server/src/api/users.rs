//! The organisation's users and their roles.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cloudkeep_domain::policy::{RoleChangeError, check_disable, check_role_change};
use cloudkeep_domain::{Permission, Role, UserId};
use cloudkeep_store::NewUser;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use crate::auth::Caller;
use crate::error::{Body, E401, E403, E404, E409, E422, Params};
use crate::list::{Page, page_request};
use crate::wire::{CreateUserRequest, RoleRequest, UserView};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(change_role))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsersQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(UsersQuery),
    responses((status = 200, body = Page<UserView>), E401, E403, E422))]
pub async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<UsersQuery>,
) -> Result<Json<Page<UserView>>, ApiError> {
    caller.require(Permission::ManageUsers, "listing users")?;
    let page = page_request(q.limit.as_deref(), q.after.as_deref())?;
    let users = state.store.users(caller.scope(), &page).await?;
    Ok(Json(Page::from_store(users)))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUserRequest,
    responses((status = 201, body = UserView), E401, E403, E409, E422))]
pub async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    caller.require(Permission::ManageUsers, "adding users")?;
    if req.role == Role::Owner {
        caller.require(Permission::ManageOwners, "making owners")?;
    }
    let password_hash = match &req.password {
        Some(p) => Some(state.passwords.hash(p).await?),
        None => None,
    };
    let user = state
        .store
        .create_user(
            caller.scope(),
            NewUser {
                email: req.email,
                name: req.name,
                role: req.role,
                password_hash,
            },
            &caller.actor(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))))
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", request_body = RoleRequest,
    params(("id" = Uuid, Path, description = "user id")), responses((status = 200, body = UserView), E401, E403, E404, E422))]
pub async fn change_role(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<RoleRequest>,
) -> Result<Json<UserView>, ApiError> {
    caller.require(Permission::ManageUsers, "changing roles")?;
    let id: UserId = parse_id(&id, "user")?;
    let current = state.store.user(caller.scope(), id).await?;
    let owners = state.store.active_owners(caller.scope()).await?;
    check_role_change(caller.0.user.role, current.role, req.role, owners)
        .map_err(|e| refused(e, "making or unmaking owners"))?;
    Ok(Json(UserView::from(
        &state
            .store
            .set_role(caller.scope(), id, req.role, &caller.actor())
            .await?,
    )))
}

fn refused(e: RoleChangeError, what: &str) -> ApiError {
    match e {
        RoleChangeError::OwnersOnly => ApiError::forbidden(what),
        RoleChangeError::LastOwner => ApiError::unprocessable("last_owner", e.to_string()),
        RoleChangeError::Yourself => ApiError::unprocessable("yourself", e.to_string()),
    }
}

#[utoipa::path(post, path = "/api/v1/users/{id}/disable", tag = "users",
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 200, body = UserView, description = "disabled: their sessions end and their API tokens stop at once"), E401, E403, E404, E422))]
pub async fn disable_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    caller.require(Permission::ManageUsers, "disabling users")?;
    let id: UserId = parse_id(&id, "user")?;
    let current = state.store.user(caller.scope(), id).await?;
    let owners = state.store.active_owners(caller.scope()).await?;
    check_disable(
        caller.0.user.role,
        current.role,
        id == caller.0.user.id,
        owners,
    )
    .map_err(|e| refused(e, "disabling owners"))?;
    Ok(Json(UserView::from(
        &state
            .store
            .set_user_disabled(caller.scope(), id, true, &caller.actor())
            .await?,
    )))
}

#[utoipa::path(post, path = "/api/v1/users/{id}/enable", tag = "users",
    params(("id" = Uuid, Path, description = "user id")),
    responses((status = 200, body = UserView, description = "enabled again: they sign in anew; their API tokens work again"), E401, E403, E404))]
pub async fn enable_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    caller.require(Permission::ManageUsers, "enabling users")?;
    let id: UserId = parse_id(&id, "user")?;
    let current = state.store.user(caller.scope(), id).await?;
    if current.role == Role::Owner {
        caller.require(Permission::ManageOwners, "enabling owners")?;
    }
    Ok(Json(UserView::from(
        &state
            .store
            .set_user_disabled(caller.scope(), id, false, &caller.actor())
            .await?,
    )))
}
