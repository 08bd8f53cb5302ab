//! Every route of the API, each with the permission it needs, collected
//! into the router and the OpenAPI document together so that neither can
//! miss one.

use std::time::Instant;

use axum::Json;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use cloudkeep_domain::password::hash_password;
use cloudkeep_domain::{
    AuthMethod, ConnectionId, Permission, Role, SecretString, SubscriptionId, SyncLevel, TokenId,
    UserId,
};
use cloudkeep_store::{
    AuditEntry, AuditFilter, ConnectionCredential, NewConnection, NewSubscription, NewUser,
};
use serde::Deserialize;
use serde_json::json;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::{IntoParams, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, SESSION_COOKIE};
use crate::connect::{initial_level, validate};
use crate::error::{Body, Params};
use crate::wire::*;
use crate::{ApiError, AppState};

#[derive(OpenApi)]
#[openapi(
    info(title = "cloudkeep API", description = "Azure spend, inventory and tags, and security evidence, per organisation."),
    tags((name = "auth"), (name = "users"), (name = "tokens"), (name = "connections"), (name = "sync"), (name = "resources"), (name = "tags"), (name = "audit"))
)]
struct ApiDoc;

fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(list_users, create_user))
        .routes(routes!(change_role))
        .routes(routes!(list_tokens, create_token))
        .routes(routes!(revoke_token))
        .routes(routes!(list_connections, create_connection))
        .routes(routes!(
            get_connection,
            update_connection,
            revoke_connection
        ))
        .routes(routes!(crate::consent::start))
        .routes(routes!(crate::consent::callback))
        .routes(routes!(crate::consent::complete))
        .routes(routes!(reauth_connection))
        .routes(routes!(set_sync_level))
        .routes(routes!(sync_now))
        .routes(routes!(list_sync_runs))
        .routes(routes!(get_sync_run))
        .routes(routes!(list_resources))
        .routes(routes!(get_resource))
        .routes(routes!(list_tag_edits, create_tag_edits))
        .routes(routes!(resolve_tag_edit))
        .routes(routes!(list_audit))
}

pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

pub fn router(state: AppState) -> axum::Router {
    let (api_router, doc) = api().split_for_parts();
    let doc_json = serde_json::to_value(&doc).unwrap_or_default();
    let x_request_id = header::HeaderName::from_static("x-request-id");
    api_router
        .route("/api/v1/openapi.json", get(move || async move { Json(doc_json.clone()) }))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; the API is described at /api/v1/openapi.json") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), record_metrics))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
        .with_state(state)
}

async fn record_metrics(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(req).await;
    state.metrics.record(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "store not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "store unavailable"})),
            )
                .into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

pub(crate) fn parse_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    // A malformed id names nothing: it is answered as not found.
    raw.parse().map_err(|_| ApiError::not_found(what))
}

// ---- auth ----

/// An argon2id hash of a random password, checked when an email is unknown
/// (made once, on first use).
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        hash_password(&cloudkeep_domain::password::random_password()).unwrap_or_default()
    })
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, description = "wrong email or password")))]
async fn login(
    State(state): State<AppState>,
    Body(req): Body<LoginRequest>,
) -> Result<Response, ApiError> {
    let wrong = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong_credentials",
            "the email or the password is wrong",
        )
    };
    let Some(candidate) = state.store.find_login(&req.email).await? else {
        // Spend the same work as a real check, so timing does not tell which emails exist.
        cloudkeep_domain::password::verify_password(&req.password, dummy_hash());
        return Err(wrong());
    };
    let auth = match candidate.verify(&req.password) {
        Ok(auth) => auth,
        Err(candidate) => {
            state.store.audit_login_failure(&candidate).await?;
            return Err(wrong());
        }
    };
    let (session, csrf) = state
        .store
        .create_session(&auth, state.settings.session_lifetime)
        .await?;
    state
        .store
        .audit(
            &auth.scope,
            AuditEntry::new(
                auth.actor(),
                "user.login",
                format!("user:{}", auth.user.id),
                json!({}),
            ),
        )
        .await?;
    let secure = if state.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let max_age = state.settings.session_lifetime.num_seconds();
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}",
        session.expose()
    );
    let mut response = Json(LoginResponse {
        user: UserView::from(&auth.user),
        csrf_token: csrf,
    })
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204)))]
async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let session = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| SecretString::new(v));
    if let Some(s) = session {
        state.store.delete_session(&s).await?;
    }
    state
        .store
        .audit(
            caller.scope(),
            AuditEntry::new(
                caller.actor(),
                "user.logout",
                format!("user:{}", caller.0.user.id),
                json!({}),
            ),
        )
        .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "cloudkeep_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/me", tag = "auth", responses((status = 200, body = MeView)))]
async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<MeView>, ApiError> {
    let org = state.store.organisation(caller.scope()).await?;
    Ok(Json(MeView {
        user: UserView::from(&caller.0.user),
        organisation_id: org.id.as_uuid(),
        organisation_name: org.name,
    }))
}

// ---- users ----

#[utoipa::path(get, path = "/api/v1/users", tag = "users", responses((status = 200, body = [UserView])))]
async fn list_users(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    caller.require(Permission::ManageUsers, "listing users")?;
    Ok(Json(
        state
            .store
            .users(caller.scope())
            .await?
            .iter()
            .map(UserView::from)
            .collect(),
    ))
}

fn parse_role(raw: &str) -> Result<Role, ApiError> {
    raw.parse().map_err(|e: cloudkeep_domain::ParseError| {
        ApiError::unprocessable("invalid_role", e.to_string())
    })
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUserRequest, responses((status = 201, body = UserView)))]
async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    caller.require(Permission::ManageUsers, "adding users")?;
    let role = parse_role(&req.role)?;
    if role == Role::Owner {
        caller.require(Permission::ManageOwners, "making owners")?;
    }
    let password_hash = match &req.password {
        Some(p) => Some(
            hash_password(p)
                .map_err(|e| ApiError::unprocessable("weak_password", e.to_string()))?,
        ),
        None => None,
    };
    let user = state
        .store
        .create_user(
            caller.scope(),
            NewUser {
                email: req.email,
                name: req.name,
                role,
                password_hash,
            },
            &caller.actor(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(UserView::from(&user))))
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", request_body = RoleRequest,
    params(("id" = Uuid, Path, description = "user id")), responses((status = 200, body = UserView)))]
async fn change_role(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<RoleRequest>,
) -> Result<Json<UserView>, ApiError> {
    caller.require(Permission::ManageUsers, "changing roles")?;
    let id: UserId = parse_id(&id, "user")?;
    let role = parse_role(&req.role)?;
    let current = state.store.user(caller.scope(), id).await?;
    if role == Role::Owner || current.role == Role::Owner {
        caller.require(Permission::ManageOwners, "making or unmaking owners")?;
    }
    if current.role == Role::Owner && role != Role::Owner {
        let owners = state
            .store
            .users(caller.scope())
            .await?
            .iter()
            .filter(|u| u.role == Role::Owner && !u.disabled)
            .count();
        if owners <= 1 {
            return Err(ApiError::unprocessable(
                "last_owner",
                "an organisation keeps at least one owner: make someone else owner first",
            ));
        }
    }
    Ok(Json(UserView::from(
        &state
            .store
            .set_role(caller.scope(), id, role, &caller.actor())
            .await?,
    )))
}

// ---- tokens ----

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, body = [TokenView])))]
async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let all = caller.0.user.role.allows(Permission::ManageUsers);
    let tokens = state.store.api_tokens(caller.scope()).await?;
    Ok(Json(
        tokens
            .iter()
            .filter(|t| all || t.user_id == caller.0.user.id)
            .map(TokenView::from)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateTokenRequest, responses((status = 201, body = TokenCreated)))]
async fn create_token(
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
            .api_tokens(caller.scope())
            .await?
            .into_iter()
            .find(|t| t.id == *own)
            .and_then(|t| t.expires_at);
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

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = Uuid, Path, description = "token id")), responses((status = 204)))]
async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: TokenId = parse_id(&id, "token")?;
    let token = state
        .store
        .api_tokens(caller.scope())
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::not_found("token"))?;
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

// ---- connections ----

#[utoipa::path(get, path = "/api/v1/connections", tag = "connections", responses((status = 200, body = [ConnectionView])))]
async fn list_connections(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ConnectionView>>, ApiError> {
    caller.require(Permission::ReadData, "reading connections")?;
    Ok(Json(
        state
            .store
            .connections(caller.scope())
            .await?
            .iter()
            .map(ConnectionView::from)
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/connections", tag = "connections", request_body = ConnectRequest,
    responses((status = 201, body = ConnectionView), (status = 422, description = "the credential or its permissions are not usable; nothing stored")))]
async fn create_connection(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<ConnectRequest>,
) -> Result<(StatusCode, Json<ConnectionView>), ApiError> {
    caller.require(Permission::ManageConnections, "connecting tenants")?;
    for (field, value) in [
        ("name", &req.name),
        ("tenant_id", &req.tenant_id),
        ("client_id", &req.client_id),
    ] {
        if value.trim().is_empty() {
            return Err(ApiError::unprocessable(
                "missing_field",
                format!("'{field}' must not be empty"),
            ));
        }
    }
    if req.client_secret.is_empty() {
        return Err(ApiError::unprocessable(
            "missing_field",
            "'client_secret' must not be empty",
        ));
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
            sync_level: initial_level(&report),
            permissions: serde_json::to_value(&report).unwrap_or_default(),
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
    responses((status = 200, body = ConnectionView), (status = 404)))]
async fn get_connection(
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
    params(("id" = Uuid, Path, description = "connection id")), responses((status = 200, body = ConnectionView)))]
async fn update_connection(
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
    responses((status = 200, body = ConnectionView)))]
async fn revoke_connection(
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
    params(("id" = Uuid, Path, description = "connection id")), responses((status = 200, body = ConnectionView), (status = 422)))]
async fn reauth_connection(
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

#[utoipa::path(patch, path = "/api/v1/subscriptions/{id}", tag = "connections", request_body = SyncLevelRequest,
    params(("id" = Uuid, Path, description = "cloudkeep's subscription id")), responses((status = 200, body = SubscriptionView)))]
async fn set_sync_level(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<SyncLevelRequest>,
) -> Result<Json<SubscriptionView>, ApiError> {
    caller.require(Permission::ManageConnections, "changing sync levels")?;
    let id: SubscriptionId = parse_id(&id, "subscription")?;
    let level: SyncLevel = req
        .sync_level
        .parse()
        .map_err(|e: cloudkeep_domain::ParseError| {
            ApiError::unprocessable("invalid_sync_level", e.to_string())
        })?;
    Ok(Json(SubscriptionView::from(
        &state
            .store
            .set_sync_level(caller.scope(), id, level, &caller.actor())
            .await?,
    )))
}

// ---- audit ----

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    /// Events after this sequence number.
    after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<i64>,
    /// `json` (default) or `jsonl` for an export, one event a line.
    format: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery), responses((status = 200, body = AuditPage)))]
async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<AuditQuery>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadAudit, "reading the audit log")?;
    let export = q.format.as_deref() == Some("jsonl");
    let limit = q
        .limit
        .unwrap_or(if export { 10_000 } else { 100 })
        .clamp(1, if export { 10_000 } else { 1000 });
    let filter = AuditFilter {
        action: q.action,
        actor: q.actor,
        target: q.target,
        after_seq: q.after,
        limit: Some(limit),
        ..Default::default()
    };
    let events = state.store.audit_events(caller.scope(), &filter).await?;
    let views: Vec<AuditEventView> = events.iter().map(AuditEventView::from).collect();
    if export {
        let body: String = views
            .iter()
            .filter_map(|v| serde_json::to_string(v).ok())
            .map(|l| l + "\n")
            .collect();
        return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response());
    }
    let next_after = (views.len() as i64 == limit)
        .then(|| views.last().map(|v| v.seq))
        .flatten();
    Ok(Json(AuditPage {
        events: views,
        next_after,
    })
    .into_response())
}

// ---- sync ----

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SyncQuery {
    /// `false`: answer 202 with the run as soon as it starts, and run it in
    /// the background (follow it at `GET /api/v1/sync-runs/{id}`, whose
    /// counts mark the steps to come `pending` or `running`). Default `true`:
    /// answer when it is done.
    wait: Option<bool>,
}

#[utoipa::path(post, path = "/api/v1/connections/{id}/sync", tag = "sync", params(("id" = Uuid, Path, description = "connection id"), SyncQuery),
    responses((status = 200, body = SyncRunView, description = "the finished run, with what it could not read"),
        (status = 202, body = SyncRunView, description = "the run, started (`wait=false`)"),
        (status = 409, description = "a run of the connection is under way (the message names it)")))]
async fn sync_now(
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
    let started = cloudkeep_sync::start_sync(&state.sync_deps(), caller.scope(), id, "manual")
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
struct RunsQuery {
    /// Only this connection's runs.
    connection: Option<String>,
    /// At most this many, newest first (default 50).
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/sync-runs", tag = "sync", params(RunsQuery), responses((status = 200, body = [SyncRunView])))]
async fn list_sync_runs(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<RunsQuery>,
) -> Result<Json<Vec<SyncRunView>>, ApiError> {
    caller.require(Permission::ReadData, "reading sync runs")?;
    let connection = match q.connection.as_deref() {
        Some(c) => Some(parse_id::<ConnectionId>(c, "connection")?),
        None => None,
    };
    let runs = state
        .store
        .sync_runs(caller.scope(), connection, q.limit.unwrap_or(50))
        .await?;
    Ok(Json(runs.iter().map(SyncRunView::from).collect()))
}

#[utoipa::path(get, path = "/api/v1/sync-runs/{id}", tag = "sync", params(("id" = Uuid, Path, description = "run id")), responses((status = 200, body = SyncRunView)))]
async fn get_sync_run(
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

// ---- resources ----

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ResourcesQuery {
    /// cloudkeep's subscription id.
    subscription: Option<String>,
    resource_group: Option<String>,
    #[serde(rename = "type")]
    #[param(rename = "type")]
    resource_type: Option<String>,
    location: Option<String>,
    /// Part of the name, any case.
    name: Option<String>,
    /// Has a tag with this name.
    has_tag: Option<String>,
    /// `key=value`: has this tag with this value.
    tag: Option<String>,
    /// Lacks a tag with this name.
    missing_tag: Option<String>,
    /// Include resources deleted in Azure.
    include_deleted: Option<bool>,
    after: Option<String>,
    /// Default 100, at most 1000.
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/resources", tag = "resources", params(ResourcesQuery), responses((status = 200, body = ResourcePage)))]
async fn list_resources(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<ResourcesQuery>,
) -> Result<Json<ResourcePage>, ApiError> {
    caller.require(Permission::ReadData, "reading resources")?;
    let tag = match q.tag.as_deref() {
        Some(t) => Some(
            t.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| ApiError::unprocessable("invalid_filter", "tag is 'key=value'"))?,
        ),
        None => None,
    };
    let subscription = match q.subscription.as_deref() {
        Some(s) => Some(s.parse::<SubscriptionId>().map_err(|_| {
            ApiError::unprocessable(
                "invalid_filter",
                "subscription is cloudkeep's subscription id (a UUID)",
            )
        })?),
        None => None,
    };
    let after = match q.after.as_deref() {
        Some(a) => Some(a.parse::<uuid::Uuid>().map_err(|_| {
            ApiError::unprocessable("invalid_filter", "after is a resource id from next_after")
        })?),
        None => None,
    };
    let filter = cloudkeep_store::ResourceFilter {
        subscription,
        resource_group: q.resource_group,
        resource_type: q.resource_type,
        location: q.location,
        name_contains: q.name,
        has_tag: q.has_tag,
        tag,
        missing_tag: q.missing_tag,
        include_deleted: q.include_deleted.unwrap_or(false),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let page = state
        .store
        .resources(caller.scope(), &filter, after, limit)
        .await?;
    let next_after = (page.len() == limit)
        .then(|| page.last().map(|r| r.id))
        .flatten();
    Ok(Json(ResourcePage {
        resources: page.iter().map(ResourceView::from).collect(),
        next_after,
    }))
}

#[utoipa::path(get, path = "/api/v1/resources/{id}", tag = "resources", params(("id" = Uuid, Path, description = "cloudkeep's resource id")),
    responses((status = 200, body = ResourceDetail)))]
async fn get_resource(
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

// ---- tag edits ----

fn tag_filter(f: &TagEditFilter) -> Result<cloudkeep_store::ResourceFilter, ApiError> {
    let tag = match f.tag.as_deref() {
        Some(t) => Some(
            t.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| ApiError::unprocessable("invalid_filter", "tag is 'key=value'"))?,
        ),
        None => None,
    };
    let subscription = match f.subscription.as_deref() {
        Some(s) => Some(s.parse::<SubscriptionId>().map_err(|_| {
            ApiError::unprocessable(
                "invalid_filter",
                "subscription is cloudkeep's subscription id",
            )
        })?),
        None => None,
    };
    Ok(cloudkeep_store::ResourceFilter {
        subscription,
        resource_group: f.resource_group.clone(),
        resource_type: f.resource_type.clone(),
        location: f.location.clone(),
        name_contains: f.name.clone(),
        has_tag: f.has_tag.clone(),
        tag,
        missing_tag: f.missing_tag.clone(),
        include_deleted: false,
    })
}

#[utoipa::path(post, path = "/api/v1/tag-edits", tag = "tags", request_body = TagEditRequest,
    responses((status = 201, body = TagEditsCreated), (status = 422, description = "a tag breaks Azure's rules, or the sync level forbids tag edits")))]
async fn create_tag_edits(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<TagEditRequest>,
) -> Result<(StatusCode, Json<TagEditsCreated>), ApiError> {
    use cloudkeep_domain::tags;
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
                .resources(caller.scope(), &tag_filter(f)?, None, 100_000)
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
    let subscriptions = state.store.subscriptions(caller.scope()).await?;
    let mut edits = Vec::new();
    for r in &targets {
        tags::check_edit(&req.set, &req.remove, &r.resource_type).map_err(|e| {
            ApiError::unprocessable("tag_rule", format!("{e} (resource {})", r.name))
        })?;
        let base = r.tags.clone().unwrap_or_default();
        tags::check_count(&tags::apply(&base, &req.set, &req.remove)).map_err(|e| {
            ApiError::unprocessable("tag_rule", format!("{e} (resource {})", r.name))
        })?;
        let level = subscriptions
            .iter()
            .find(|s| s.id == r.subscription_id)
            .map(|s| s.sync_level)
            .unwrap_or_default();
        let (state_name, reason) = match level {
            SyncLevel::ReadWriteTags => ("pending", None),
            SyncLevel::ReadTagsOnly => ("local", Some("the subscription is at read_tags_only: the edit is kept in cloudkeep and never written to Azure".to_string())),
            other => ("refused", Some(format!("the subscription is at {other}: cloudkeep neither reads nor writes its tags; raise the sync level to edit them"))),
        };
        edits.push(cloudkeep_store::NewTagEdit {
            resource_id: r.id,
            subscription_id: r.subscription_id,
            set: req.set.clone(),
            remove: req.remove.clone(),
            base,
            state: state_name.into(),
            reason,
        });
    }
    if edits.iter().all(|e| e.state == "refused") {
        let reason = edits[0].reason.clone().unwrap_or_default();
        return Err(ApiError::unprocessable(
            "sync_level",
            format!("Tags cannot be edited here: {reason}."),
        ));
    }
    let created = state
        .store
        .create_tag_edits(caller.scope(), edits, &caller.actor())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(TagEditsCreated {
            edits: created.iter().map(TagEditView::from).collect(),
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct TagEditsQuery {
    /// pending, applied, conflict, refused, failed or local.
    state: Option<String>,
    /// cloudkeep's resource id.
    resource: Option<String>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/api/v1/tag-edits", tag = "tags", params(TagEditsQuery), responses((status = 200, body = [TagEditView])))]
async fn list_tag_edits(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<TagEditsQuery>,
) -> Result<Json<Vec<TagEditView>>, ApiError> {
    caller.require(Permission::ReadData, "reading tag edits")?;
    let resource = match q.resource.as_deref() {
        Some(r) => Some(r.parse::<uuid::Uuid>().map_err(|_| {
            ApiError::unprocessable("invalid_filter", "resource is cloudkeep's resource id")
        })?),
        None => None,
    };
    let edits = state
        .store
        .tag_edits(
            caller.scope(),
            q.state.as_deref(),
            resource,
            q.limit.unwrap_or(100),
        )
        .await?;
    Ok(Json(edits.iter().map(TagEditView::from).collect()))
}

#[utoipa::path(post, path = "/api/v1/tag-edits/{id}/resolve", tag = "tags", request_body = ResolveRequest,
    params(("id" = Uuid, Path, description = "the conflicted edit")), responses((status = 200, body = ResolveResponse), (status = 422)))]
async fn resolve_tag_edit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<ResolveRequest>,
) -> Result<Json<ResolveResponse>, ApiError> {
    caller.require(Permission::EditTags, "resolving tag conflicts")?;
    let id: uuid::Uuid = parse_id(&id, "tag edit")?;
    let keep_mine = match req.resolution.as_str() {
        "keep_mine" => true,
        "take_theirs" => false,
        other => {
            return Err(ApiError::unprocessable(
                "invalid_resolution",
                format!("'{other}' is not a resolution; use keep_mine or take_theirs"),
            ));
        }
    };
    let created = state
        .store
        .resolve_tag_conflict(caller.scope(), id, keep_mine, &caller.actor())
        .await?;
    Ok(Json(ResolveResponse {
        edit: created.as_ref().map(TagEditView::from),
    }))
}
