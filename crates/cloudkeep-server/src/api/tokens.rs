//! API tokens for automation.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use cloudkeep_domain::{Permission, Role, TokenId};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use crate::auth::Caller;
use crate::error::{Body, E401, E403, E404, E422, Params};
use crate::list::{Page, page_request};
use crate::wire::{CreateTokenRequest, TokenCreated, TokenView};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokensQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
}

/// Everyone's tokens for those who manage users; one's own for the others.
#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", params(TokensQuery),
    responses((status = 200, body = Page<TokenView>), E401, E422))]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<TokensQuery>,
) -> Result<Json<Page<TokenView>>, ApiError> {
    let page = page_request(q.limit.as_deref(), q.after.as_deref())?;
    let only = (!caller.0.user.role.allows(Permission::ManageUsers)).then_some(caller.0.user.id);
    let tokens = state.store.api_tokens(caller.scope(), only, &page).await?;
    Ok(Json(Page::from_store(tokens)))
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateTokenRequest,
    responses((status = 201, body = TokenCreated, description = "the token; its secret is shown this once"), E401, E422))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateTokenRequest>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    if req.expires_in_days.is_some_and(|d| d > 3650) {
        return Err(ApiError::unprocessable(
            "invalid_expiry",
            "a token lasts at most 3650 days",
        ));
    }
    let mut expires = req
        .expires_in_days
        .map(|d| Utc::now() + chrono::Duration::days(i64::from(d)));
    // A token made with a token lives no longer than the token that made it.
    if let cloudkeep_store::Credential::Token(own) = &caller.0.credential {
        let own_expiry = state
            .store
            .api_token(caller.scope(), *own)
            .await?
            .expires_at;
        if let Some(limit) = own_expiry {
            expires = Some(expires.map_or(limit, |e| e.min(limit)));
        }
    }
    let (token, secret) = state
        .store
        .create_api_token(
            caller.scope(),
            caller.0.user.id,
            &req.name,
            expires,
            &caller.actor(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenCreated {
            token: TokenView::from(&token),
            secret: secret.expose().to_string(),
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = Uuid, Path, description = "token id")),
    responses((status = 204, description = "revoked"), E401, E403, E404))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: TokenId = parse_id(&id, "token")?;
    let token = state.store.api_token(caller.scope(), id).await?;
    if token.user_id != caller.0.user.id {
        caller.require(Permission::ManageUsers, "revoking other users' tokens")?;
        if state.store.user(caller.scope(), token.user_id).await?.role == Role::Owner {
            caller.require(Permission::ManageOwners, "revoking an owner's tokens")?;
        }
    }
    state
        .store
        .revoke_api_token(caller.scope(), id, &caller.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
