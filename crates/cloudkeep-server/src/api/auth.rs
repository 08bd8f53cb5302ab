//! Signing in and out, and who the caller is.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloudkeep_domain::SecretString;
use cloudkeep_domain::login::{PER_ACCOUNT, PER_ADDRESS, Verdict, stricter};
use cloudkeep_store::{AttemptKey, AuditEntry, Credential};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, SESSION_COOKIE, cookie, session_cookie, session_cookie_cleared};
use crate::error::{Body, E401, E422, E429};
use crate::passwords::ClientAddr;
use crate::wire::{LoginRequest, LoginResponse, MeView, PasswordChange, PasswordChanged, UserView};
use crate::{ApiError, AppState};

/// How long a refused sign-in is held before its 429.
const REFUSAL_PAUSE: std::time::Duration = std::time::Duration::from_millis(500);

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(change_password))
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse, description = "signed in: a session cookie, and the CSRF token for changes"),
        (status = 401, body = crate::error::ErrorBody, description = "wrong email or password"), E422, E429),
    security(()))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientAddr,
    Body(req): Body<LoginRequest>,
) -> Result<Response, ApiError> {
    let wrong = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong_credentials",
            "the email or the password is wrong",
        )
    };
    let store = &state.store;
    let now = store.now();
    let account = AttemptKey::Account(req.email.clone());
    let address = client
        .0
        .filter(|_| state.settings.limit_sign_ins_by_address)
        .map(AttemptKey::Address);
    // Refused before any password work, the same for every email, known or not.
    let mut verdict = PER_ACCOUNT.verdict(store.login_attempts(&account).await?.as_ref(), now);
    if let Some(a) = &address {
        verdict = stricter(
            verdict,
            PER_ADDRESS.verdict(store.login_attempts(a).await?.as_ref(), now),
        );
    }
    if let Verdict::Wait { until, locked } = verdict {
        // Whole seconds, rounded up: waiting that long is always enough.
        let secs = ((until - now).num_milliseconds() + 999)
            .div_euclid(1000)
            .max(1) as u64;
        let why = if locked {
            "locked after too many failed sign-ins"
        } else {
            "too many failed sign-ins"
        };
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_attempts",
            format!("{why} for this email or from this address: try again in {secs} seconds"),
        );
        e.retry_after = Some(secs);
        // Held a moment before answering (a sleep costs no CPU): a client
        // that retries at once cannot make refusals its flood.
        tokio::time::sleep(REFUSAL_PAUSE).await;
        return Err(e);
    }
    let candidate = store.find_login(&req.email).await?;
    let outcome = match candidate {
        Some(candidate) => Some(state.passwords.verify(candidate, &req.password).await?),
        None => {
            state.passwords.verify_nothing(&req.password).await?;
            None
        }
    };
    let auth = match outcome {
        Some(Ok(auth)) => auth,
        failed => {
            let (after, escalation) = store.record_login_failure(&account, &PER_ACCOUNT).await?;
            if let Some(a) = &address {
                store.record_login_failure(a, &PER_ADDRESS).await?;
            }
            if let Some(Err(candidate)) = failed {
                store
                    .audit_login_failure(&candidate, &after, escalation)
                    .await?;
            }
            return Err(wrong());
        }
    };
    store.clear_login_failures(&account).await?;
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
    responses((status = 204, description = "signed out; the session cookie is cleared"),
        (status = 400, body = crate::error::ErrorBody, description = "called with an API token, which is revoked with DELETE /api/v1/tokens/{id} instead"), E401))]
pub async fn logout(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !matches!(caller.0.credential, Credential::Session { .. }) {
        // Signing out would leave the token working: say how to end it,
        // and record nothing.
        return Err(ApiError::bad_request(
            "an API token is not signed out: revoke it with DELETE /api/v1/tokens/{id}",
        ));
    }
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
            Credential::Session { csrf_token, .. } => Some(csrf_token.clone()),
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
            match state
                .passwords
                .verify(candidate, &req.current_password)
                .await?
            {
                Ok(_) => true,
                Err(candidate) => {
                    state.store.audit_wrong_password(&candidate).await?;
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
    let hash = state.passwords.hash(&req.new_password).await?;
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
