//! Signing in and out, and who the caller is.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloudkeep_domain::SecretString;
use cloudkeep_domain::password::hash_password;
use cloudkeep_store::{AuditEntry, Credential};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, SESSION_COOKIE, cookie, session_cookie, session_cookie_cleared};
use crate::error::{Body, E401, E422};
use crate::wire::{LoginRequest, LoginResponse, MeView, PasswordChange, PasswordChanged, UserView};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
}

/// An argon2id hash of a random password, checked when an email is unknown
/// (made once, on first use).
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        hash_password(&cloudkeep_domain::password::random_password()).unwrap_or_default()
    })
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse, description = "signed in: a session cookie, and the CSRF token for changes"),
        (status = 401, body = crate::error::ErrorBody, description = "wrong email or password"), E422))]
pub async fn login(
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
    let cookie = session_cookie(
        session.expose(),
        state.settings.session_lifetime.num_seconds(),
        state.settings.secure_cookies,
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

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "signed out; the session cookie is cleared"), E401))]
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(s) = cookie(&headers, SESSION_COOKIE) {
        state.store.delete_session(&SecretString::new(s)).await?;
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
    if let Ok(v) = HeaderValue::from_str(&session_cookie_cleared(state.settings.secure_cookies)) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/api/v1/me", tag = "auth", responses((status = 200, body = MeView), E401))]
pub async fn me(State(state): State<AppState>, caller: Caller) -> Result<Json<MeView>, ApiError> {
    let org = state.store.organisation(caller.scope()).await?;
    Ok(Json(MeView {
        user: UserView::from(&caller.0.user),
        organisation_id: org.id.as_uuid(),
        organisation_name: org.name,
        csrf_token: match &caller.0.credential {
            Credential::Session { csrf_token } => Some(csrf_token.clone()),
            _ => None,
        },
    }))
}

#[utoipa::path(post, path = "/api/v1/me/password", tag = "auth", request_body = PasswordChange,
    responses((status = 200, body = PasswordChanged, description = "changed: every session of the user ends; a browser session gets a new one (cookie and CSRF token)"),
        E401, (status = 422, body = crate::error::ErrorBody, description = "the current password is wrong, or the new one is too short")))]
pub async fn change_password(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<PasswordChange>,
) -> Result<Response, ApiError> {
    let current_ok = match state.store.find_login(&caller.0.user.email).await? {
        Some(candidate) if candidate.user_id() == caller.0.user.id => {
            match candidate.verify(&req.current_password) {
                Ok(_) => true,
                Err(candidate) => {
                    state.store.audit_login_failure(&candidate).await?;
                    false
                }
            }
        }
        _ => false,
    };
    if !current_ok {
        return Err(ApiError::unprocessable(
            "wrong_password",
            "the current password is wrong; nothing was changed",
        ));
    }
    let hash = hash_password(&req.new_password)
        .map_err(|e| ApiError::unprocessable("weak_password", e.to_string()))?;
    state
        .store
        .set_password(caller.scope(), caller.0.user.id, &hash, &caller.actor())
        .await?;
    // Every session ended with the change; the browser that made it
    // carries on in a new one.
    let Credential::Session { .. } = &caller.0.credential else {
        return Ok(Json(PasswordChanged {
            user: UserView::from(&caller.0.user),
            csrf_token: None,
        })
        .into_response());
    };
    let (session, csrf) = state
        .store
        .create_session(&caller.0, state.settings.session_lifetime)
        .await?;
    let mut response = Json(PasswordChanged {
        user: UserView::from(&caller.0.user),
        csrf_token: Some(csrf),
    })
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&session_cookie(
        session.expose(),
        state.settings.session_lifetime.num_seconds(),
        state.settings.secure_cookies,
    )) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}
