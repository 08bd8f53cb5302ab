//! Onboarding by consent: a signed-in cloudkeep user signs in to Entra ID
//! (authorisation code with PKCE), and cloudkeep, on that user's behalf,
//! assigns its own service principal the read roles and Tag Contributor on
//! the subscriptions the user chooses, then records them as a connection
//! that syncs with the operator's application.
//!
//! Three steps: `start` redirects to Entra ID; `callback` redeems the code
//! and offers the subscriptions; `complete` assigns the roles, links the
//! partner id and stores the connection. The delegated token lives only in
//! the flow, in this process's memory, until `complete` (or the flow's
//! expiry, enforced by `Flows::sweep`) drops it: it is never stored, logged
//! or returned.
//!
//! A flow is bound to the organisation, user and session that started it,
//! and to a flow cookie set by `start` (SameSite=Lax, so it survives Entra
//! ID's cross-site redirect): someone who plants their session in a
//! victim's browser still lacks the flow cookie. Its `state` names the
//! process that holds it, so a request that reaches another instance gets a
//! clear answer instead of "not found".

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use cloudkeep_azure::write::{Assignment, ConsentWriter, PartnerLink};
use cloudkeep_azure::{AccessToken, AzureError, CodeRedemption, Pkce};
use cloudkeep_domain::password::random_token;
use cloudkeep_domain::policy::{AzureRole, Feature, assess};
use cloudkeep_domain::{
    AuthMethod, ConnectionId, OperatorApp, OrgId, Permission, SecretString, UserId,
};
use cloudkeep_store::{
    AuditEntry, Connection, ConnectionCredential, Credential, NewConnection, NewSubscription,
};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use crate::auth::{Caller, cookie, lax_cookie};
use crate::connect::explain;
use crate::error::{Body, E401, E403, E404, E422, E502, Params};
use crate::wire::{
    AssignmentOutcome, ConnectionView, ConsentChoice, ConsentOffer, ConsentOutcome, ConsentReport,
    OfferedSubscription, PartnerLinkOutcome, PartnerOutcome, RoleOutcome, SubscriptionConsent,
};
use crate::{ApiError, AppState};

pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(callback))
        .routes(routes!(offer, complete))
}

/// The tenant alias for a sign-in whose tenant is not known yet.
const ANY_WORK_ACCOUNT: &str = "organizations";
/// How long the user has to come back from Entra ID (its codes last 10 minutes).
const SIGN_IN_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How long the user has to choose after signing in (bounded by the token too).
const CHOICE_WINDOW: Duration = Duration::from_secs(30 * 60);
/// The token must outlive the role writes: the choice closes this long
/// before it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Flows one process holds at most (each is a few hundred bytes).
const MAX_FLOWS: usize = 10_000;
/// Roles that may create role assignments: Owner, User Access Administrator.
const MAY_ASSIGN: [&str; 2] = [
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
];
pub const CALLBACK_PATH: &str = "/api/v1/connections/consent/callback";
/// Where the callback sends a flow the web UI started.
pub const UI_CALLBACK_PATH: &str = "/connections/consent/callback";
const FLOW_COOKIE: &str = "cloudkeep_consent";

/// Consent flows under way in this process, keyed by their `state`.
pub struct Flows {
    /// Names this process in every `state` it issues.
    instance: String,
    flows: Mutex<HashMap<String, Flow>>,
}

impl Default for Flows {
    fn default() -> Self {
        Flows {
            instance: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
            flows: Mutex::default(),
        }
    }
}

struct Flow {
    org: OrgId,
    user: UserId,
    /// The session's CSRF token: the flow answers only to that session.
    session: String,
    /// The flow cookie's value.
    cookie: String,
    connection: Option<ConnectionId>,
    /// Started from the web UI (see `StartQuery::ui`).
    ui: bool,
    expires: Instant,
    stage: Stage,
}

enum Stage {
    /// Sent to Entra ID, waiting for the callback.
    SigningIn {
        verifier: SecretString,
        redirect_uri: String,
    },
    /// Signed in: the user's token and what they may connect (and the
    /// offer as answered, to answer again).
    SignedIn {
        token: AccessToken,
        offered: Vec<Offered>,
        offer: ConsentOffer,
    },
}

struct Offered {
    subscription_id: String,
    display_name: String,
    can_assign: bool,
}

impl Flows {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Flow>> {
        self.flows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops expired flows, and with them any user token they held.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.lock().retain(|_, f| f.expires > now);
    }

    fn new_state(&self) -> String {
        format!("{}.{}", self.instance, random_token("").expose())
    }

    /// Starts a flow; a session has one at a time, so a new start replaces
    /// the session's earlier one.
    fn insert(&self, state: String, flow: Flow) -> Result<(), ApiError> {
        self.sweep();
        let mut flows = self.lock();
        flows.retain(|_, f| f.session != flow.session);
        if flows.len() >= MAX_FLOWS {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "consent_busy",
                "too many consent flows are under way on this server; try again in a few minutes",
            ));
        }
        flows.insert(state, flow);
        Ok(())
    }

    /// The offer of this caller's signed-in flow, left in place.
    fn offer(
        &self,
        state: &str,
        caller: &Caller,
        headers: &HeaderMap,
    ) -> Result<ConsentOffer, ApiError> {
        let flow = self.take(state, caller, headers, true)?;
        let offer = match &flow.stage {
            Stage::SignedIn { offer, .. } => Ok(offer.clone()),
            Stage::SigningIn { .. } => Err(unknown_flow()),
        };
        self.put_back(state.to_string(), flow);
        offer
    }

    /// Whether the flow `state` names was started from the web UI.
    fn is_ui(&self, state: &str) -> bool {
        self.lock().get(state).is_some_and(|f| f.ui)
    }

    fn put_back(&self, state: String, flow: Flow) {
        self.lock().insert(state, flow);
    }

    /// Takes a live flow out if it belongs to this caller and browser and
    /// is at the step asked for (signed in or not); any other flow is left
    /// in place and reported as unknown.
    fn take(
        &self,
        state: &str,
        caller: &Caller,
        headers: &HeaderMap,
        signed_in: bool,
    ) -> Result<Flow, ApiError> {
        if state.split_once('.').map(|(i, _)| i) != Some(self.instance.as_str()) {
            return Err(if state.contains('.') {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "consent_other_instance",
                    "this consent flow was started on another cloudkeep instance, which holds it in memory: route /api/v1/connections/consent/* to one instance per session (session affinity), or start again",
                )
            } else {
                unknown_flow()
            });
        }
        self.sweep();
        let session = session_of(caller).ok_or_else(unknown_flow)?;
        let cookie = cookie(headers, FLOW_COOKIE).ok_or_else(unknown_flow)?;
        let mut flows = self.lock();
        let mine = flows.get(state).is_some_and(|f| {
            f.org == caller.scope().org()
                && f.user == caller.0.user.id
                && f.session == session
                && f.cookie == cookie
                && matches!(f.stage, Stage::SignedIn { .. }) == signed_in
        });
        if mine {
            flows.remove(state).ok_or_else(unknown_flow)
        } else {
            Err(unknown_flow())
        }
    }
}

fn session_of(caller: &Caller) -> Option<String> {
    match &caller.0.credential {
        Credential::Session { csrf_token, .. } => Some(csrf_token.clone()),
        _ => None,
    }
}

fn unknown_flow() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "consent_flow_not_found",
        "this consent flow does not exist, has expired, or was started in another session or browser: start again at /api/v1/connections/consent/start",
    )
}

fn operator(state: &AppState) -> Result<(&OperatorApp, &str), ApiError> {
    match (&state.settings.operator, &state.settings.public_url) {
        (Some(op), Some(url)) => Ok((op, url.trim_end_matches('/'))),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "consent_unavailable",
            "connecting by consent is not set up on this server: the operator must configure cloudkeep's application (CLOUDKEEP_OPERATOR_CLIENT_ID, CLOUDKEEP_OPERATOR_CLIENT_SECRET) and its public URL (CLOUDKEEP_PUBLIC_URL); or connect with your own service principal (POST /api/v1/connections)",
        )),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// Add subscriptions to this connection (one made by consent) instead
    /// of creating one.
    pub connection: Option<String>,
    /// Passed to Entra ID to preselect the account.
    pub login_hint: Option<String>,
    /// Started from the web UI: the callback sends the browser on to the
    /// UI's subscription picker (`/connections/consent/callback`) instead
    /// of answering JSON.
    pub ui: Option<bool>,
}

#[utoipa::path(get, path = "/api/v1/connections/consent/start", tag = "connections", params(StartQuery),
    responses((status = 303, description = "to Entra ID's sign-in (Location), with the flow cookie"),
        (status = 400, body = crate::error::ErrorBody, description = "not a browser session (an API token)"), E401, E403, E404,
        (status = 409, body = crate::error::ErrorBody, description = "consent is not configured on this server"), E422, E502))]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<StartQuery>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ManageConnections, "connecting tenants")?;
    let Some(session) = session_of(&caller) else {
        return Err(ApiError::bad_request(
            "the consent flow runs in a browser: sign in (POST /api/v1/auth/login) and open this URL with the session, not with an API token",
        ));
    };
    let (op, public_url) = operator(&state)?;
    let connection = match q.connection.as_deref() {
        Some(raw) => {
            let id: ConnectionId = super::parse_id(raw, "connection")?;
            extendable(&state.store.connection(caller.scope(), id).await?, op)?;
            Some(id)
        }
        None => None,
    };
    let pkce = Pkce::new();
    let flow_state = state.consent.new_state();
    let redirect_uri = format!("{public_url}{CALLBACK_PATH}");
    // No `prompt`: Entra asks for consent only where it is missing, and a
    // forced prompt would stop Owners whose tenant restricts user consent.
    let extra: Vec<(&str, &str)> = q
        .login_hint
        .as_deref()
        .map(|hint| ("login_hint", hint))
        .into_iter()
        .collect();
    let url = state
        .azure
        .authorize_url(
            ANY_WORK_ACCOUNT,
            &op.client_id,
            &redirect_uri,
            &flow_state,
            &pkce,
            &extra,
        )
        .map_err(explain)?;
    let flow_cookie = random_token("").expose().to_string();
    state.consent.insert(
        flow_state,
        Flow {
            org: caller.scope().org(),
            user: caller.0.user.id,
            session,
            cookie: flow_cookie.clone(),
            connection,
            ui: q.ui.unwrap_or(false),
            expires: Instant::now() + SIGN_IN_WINDOW,
            stage: Stage::SigningIn {
                verifier: pkce.verifier,
                redirect_uri,
            },
        },
    )?;
    let set_cookie = lax_cookie(
        FLOW_COOKIE,
        &flow_cookie,
        // The whole site: the UI's picker reads the flow too.
        "/",
        (SIGN_IN_WINDOW + CHOICE_WINDOW).as_secs() as i64,
        state.settings.secure_cookies,
    );
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, url.to_string()),
            (header::SET_COOKIE, set_cookie),
        ],
    )
        .into_response())
}

/// A connection the flow may add subscriptions to: live, and syncing with
/// the operator's application.
fn extendable(c: &Connection, op: &OperatorApp) -> Result<(), ApiError> {
    if c.deleted_at.is_some() {
        return Err(ApiError::unprocessable(
            "revoked",
            "the connection was revoked; start the consent flow without it to connect the tenant again",
        ));
    }
    if c.auth_method != AuthMethod::OperatorApp || !c.client_id.eq_ignore_ascii_case(&op.client_id)
    {
        return Err(ApiError::unprocessable(
            "not_a_consent_connection",
            "this connection uses its own service principal; add subscriptions by giving that principal roles on them, or start the consent flow without a connection",
        ));
    }
    Ok(())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    #[param(value_type = Option<String>)]
    pub code: Option<SecretString>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// Set by the page that re-requests the callback from this origin.
    pub bounced: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/connections/consent/callback", tag = "connections", params(CallbackQuery),
    responses((status = 200, body = ConsentOffer, description = "signed in: the subscriptions to choose from (or, without the session cookie, a page that asks again same-site)"),
        (status = 400, body = crate::error::ErrorBody, description = "the callback has neither a code nor an error"), E401, E403, E404,
        (status = 409, body = crate::error::ErrorBody, description = "consent is off, or the flow belongs to another instance"),
        (status = 422, body = crate::error::ErrorBody, description = "Entra ID refused the sign-in"), E502))]
pub async fn callback(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    headers: HeaderMap,
    Params(q): Params<CallbackQuery>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    match caller {
        Ok(_) if q.state.as_deref().is_some_and(|s| state.consent.is_ui(s)) => {
            let query = uri.query().unwrap_or_default();
            let query: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(
                    form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k != "bounced"),
                )
                .finish();
            Ok((
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, format!("{UI_CALLBACK_PATH}?{query}")),
                    (header::CACHE_CONTROL, "no-store".to_string()),
                ],
            )
                .into_response())
        }
        Ok(caller) => Ok(signed_in(state, caller, &headers, q).await?.into_response()),
        // Entra ID's redirect is a cross-site navigation, on which browsers
        // withhold the SameSite=Strict session cookie; a page of our own
        // asks again, same-site, and the cookie comes along.
        Err(_) if q.bounced.is_none() => Ok(bounce(&uri)),
        Err(e) => Err(e),
    }
}

fn bounce(uri: &axum::http::Uri) -> Response {
    let query = uri.query().unwrap_or_default();
    let target = format!("{CALLBACK_PATH}?{query}&bounced=1")
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"referrer\" content=\"no-referrer\">\
         <meta http-equiv=\"refresh\" content=\"0;url={target}\"><title>cloudkeep</title></head>\
         <body><p>Signing you in… <a href=\"{target}\">continue</a></p></body></html>"
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

pub async fn signed_in(
    state: AppState,
    caller: Caller,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Result<Json<ConsentOffer>, ApiError> {
    caller.require(Permission::ManageConnections, "connecting tenants")?;
    let (op, _) = operator(&state)?;
    let flow_state = q.state.clone().ok_or_else(unknown_flow)?;
    let mut flow = state.consent.take(&flow_state, &caller, headers, false)?;
    let Stage::SigningIn {
        verifier,
        redirect_uri,
    } = &flow.stage
    else {
        return Err(unknown_flow());
    };
    if let Some(error) = q.error.as_deref() {
        let description = q.error_description.clone().unwrap_or_default();
        audit(
            &state,
            &caller,
            "consent.refused",
            "tenant:unknown",
            json!({ "error": error, "description": description }),
        )
        .await?;
        return Err(sign_in_refused(error, &description));
    }
    let code = q
        .code
        .as_ref()
        .ok_or_else(|| ApiError::bad_request("the callback has neither a code nor an error"))?;
    let redeemed = state
        .azure
        .redeem_code(
            ANY_WORK_ACCOUNT,
            code,
            CodeRedemption {
                client_id: &op.client_id,
                client_secret: &op.client_secret,
                redirect_uri,
                verifier,
            },
        )
        .await;
    let token = match redeemed {
        Ok(token) => token,
        Err(e) => {
            let error = redemption_failed(&e);
            audit_failure(&state, &caller, "tenant:unknown", "redeem_code", &error).await?;
            return Err(error);
        }
    };
    if let Some(id) = flow.connection {
        let c = state.store.connection(caller.scope(), id).await?;
        if !c.tenant_id.eq_ignore_ascii_case(&token.tenant_id) {
            return Err(ApiError::unprocessable(
                "other_tenant",
                format!(
                    "you signed in to tenant {}, but the connection is to tenant {}: start again and sign in with an account of that tenant. Nothing was changed.",
                    token.tenant_id, c.tenant_id
                ),
            ));
        }
    }
    let visible = state.azure.subscriptions(&token).await.map_err(explain)?;
    let mut offered = Vec::new();
    let mut notes = Vec::new();
    for s in visible {
        let id = s.subscription_id.to_ascii_lowercase();
        let can_assign = match state
            .azure
            .roles_assigned_to(&token, &id, &token.object_id)
            .await
        {
            Ok(roles) => roles
                .iter()
                .any(|r| MAY_ASSIGN.contains(&r.role_definition_id.as_str())),
            // Not knowing is not a reason to lose the whole sign-in: the
            // subscription is offered as not assignable, with why.
            Err(e) => {
                notes.push((id.clone(), azure_said(&e)));
                false
            }
        };
        offered.push(Offered {
            subscription_id: id,
            display_name: s.display_name,
            can_assign,
        });
    }
    audit(
        &state,
        &caller,
        "consent.signed_in",
        &format!("tenant:{}", token.tenant_id),
        json!({
            "azure_user": token.object_id,
            "may_assign": offered.iter().filter(|o| o.can_assign).map(|o| &o.subscription_id).collect::<Vec<_>>(),
        }),
    )
    .await?;
    let ids: Vec<String> = offered.iter().map(|o| o.subscription_id.clone()).collect();
    let holders = state
        .store
        .subscription_holders(caller.scope(), &ids)
        .await?;
    let window = (token.expires_at - Utc::now())
        .to_std()
        .unwrap_or_default()
        .saturating_sub(TOKEN_MARGIN)
        .min(CHOICE_WINDOW);
    let offer = ConsentOffer {
        flow: flow_state.clone(),
        tenant_id: token.tenant_id.clone(),
        connection_id: flow.connection.map(|c| c.as_uuid()),
        partner_id: op.partner_id.clone(),
        subscriptions: offered
            .iter()
            .map(|o| OfferedSubscription {
                subscription_id: o.subscription_id.clone(),
                display_name: o.display_name.clone(),
                can_assign_roles: o.can_assign,
                connected_by: holders
                    .iter()
                    .find(|(id, _)| *id == o.subscription_id)
                    .map(|(_, c)| c.as_uuid()),
                note: notes
                    .iter()
                    .find(|(id, _)| *id == o.subscription_id)
                    .map(|(_, n)| format!("cloudkeep could not read your roles here: {n}")),
            })
            .collect(),
        expires_at: Utc::now() + window,
    };
    flow.expires = Instant::now() + window;
    flow.stage = Stage::SignedIn {
        token,
        offered,
        offer: offer.clone(),
    };
    state.consent.put_back(flow_state, flow);
    Ok(Json(offer))
}

/// Azure's own words for a failure, without advice meant for other callers.
fn azure_said(e: &AzureError) -> String {
    match e {
        AzureError::Forbidden { code, message }
        | AzureError::NotFound { code, message }
        | AzureError::Unauthorized { code, message }
        | AzureError::Service { code, message, .. } => format!("{code}: {message}"),
        other => other.to_string(),
    }
}

/// Entra ID's `error` on the redirect, explained.
fn sign_in_refused(error: &str, description: &str) -> ApiError {
    let advice = match error {
        "access_denied" => "the sign-in was cancelled or consent was declined",
        "consent_required" | "interaction_required" => {
            "cloudkeep's application is not consented in your tenant, and your account may not consent for it: sign in as an Owner or User Access Administrator, or ask an administrator to grant admin consent"
        }
        "permission_denied" => "your tenant's policy does not let you consent to applications",
        "login_required" => "no one is signed in to Entra ID: start again",
        _ => "Entra ID refused the sign-in",
    };
    ApiError::unprocessable(
        "consent_refused",
        format!("{advice}. Nothing was changed. Entra ID said: {error}: {description}"),
    )
}

/// A code Entra ID would not redeem, explained for this flow.
fn redemption_failed(e: &AzureError) -> ApiError {
    let AzureError::Credential { code, message, .. } = e else {
        return explain_transient(e);
    };
    let (api_code, advice) = match code {
        Some(70008 | 54005 | 70000) => (
            "consent_code_unusable",
            "the sign-in expired or was already used: start again",
        ),
        Some(501481) => (
            "consent_code_unusable",
            "the sign-in did not match this flow (PKCE): start again",
        ),
        Some(7000215 | 7000222 | 700016 | 7000218) => (
            "operator_app_refused",
            "Entra ID refused cloudkeep's own application credential: the operator must renew its secret or fix its configuration",
        ),
        _ => ("consent_refused", "Entra ID refused the sign-in"),
    };
    let aadsts = code.map(|c| format!(" (AADSTS{c})")).unwrap_or_default();
    ApiError::unprocessable(
        api_code,
        format!("{advice}{aadsts}. Nothing was changed. Entra ID said: {message}"),
    )
}

fn explain_transient(e: &AzureError) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "azure_unavailable",
        format!("Azure could not complete the step ({e}); try again. Nothing was changed."),
    )
}

#[utoipa::path(get, path = "/api/v1/connections/consent/{flow}", tag = "connections",
    params(("flow" = String, Path, description = "the flow from the callback's answer")),
    responses((status = 200, body = ConsentOffer, description = "the signed-in flow's offer, as the callback answered it"), E401, E403,
        (status = 404, body = crate::error::ErrorBody, description = "no such flow in this session"),
        (status = 409, body = crate::error::ErrorBody, description = "the flow was started on another cloudkeep instance, which holds it")))]
pub async fn offer(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(flow_state): Path<String>,
) -> Result<Json<ConsentOffer>, ApiError> {
    caller.require(Permission::ManageConnections, "connecting tenants")?;
    Ok(Json(state.consent.offer(&flow_state, &caller, &headers)?))
}

#[utoipa::path(post, path = "/api/v1/connections/consent/{flow}", tag = "connections", request_body = ConsentChoice,
    params(("flow" = String, Path, description = "the flow from the callback's answer")),
    responses((status = 200, body = ConsentReport), E401, E403,
        (status = 404, body = crate::error::ErrorBody, description = "no such flow in this session"),
        (status = 409, body = crate::error::ErrorBody, description = "a chosen subscription is connected elsewhere (choose it with move_connected), consent is off, or the flow belongs to another instance"),
        (status = 422, body = crate::error::ErrorBody, description = "the choice is not usable; the flow stays open to choose again"), E502))]
pub async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(flow_state): Path<String>,
    Body(choice): Body<ConsentChoice>,
) -> Result<Json<ConsentReport>, ApiError> {
    caller.require(Permission::ManageConnections, "connecting tenants")?;
    let (op, _) = operator(&state)?;
    let flow = state.consent.take(&flow_state, &caller, &headers, true)?;
    // Everything that can be refused is checked before Azure is changed;
    // a refused choice puts the flow back, to choose again.
    let target = match prepare(&state, &caller, op, &flow, &choice).await {
        Ok(target) => target,
        Err(e) => {
            state.consent.put_back(flow_state, flow);
            return Err(e);
        }
    };
    let Stage::SignedIn { token, offered, .. } = &flow.stage else {
        return Err(unknown_flow());
    };
    let tenant = token.tenant_id.clone();
    // cloudkeep's own principal in this tenant, and proof it is consented.
    let app_token = match state
        .azure
        .client_credentials_token(&tenant, &op.client_id, &op.client_secret)
        .await
    {
        Ok(t) if !t.object_id.is_empty() => t,
        outcome => {
            let error = match outcome {
                Err(AzureError::Credential { code, message, .. }) => ApiError::unprocessable(
                    "operator_app_refused",
                    format!(
                        "Entra ID would not sign cloudkeep's application in to your tenant{}: {message}. If consent was given moments ago it may still be replicating: choose again in a minute. Nothing was changed.",
                        code.map(|c| format!(" (AADSTS{c})")).unwrap_or_default()
                    ),
                ),
                Err(e) => explain_transient(&e),
                Ok(_) => ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "principal_unknown",
                    "Entra ID's token for cloudkeep's application names no object id, so cloudkeep cannot tell which principal to give roles to. Nothing was changed.",
                ),
            };
            audit_failure(
                &state,
                &caller,
                &format!("tenant:{tenant}"),
                "operator_token",
                &error,
            )
            .await?;
            state.consent.put_back(flow_state, flow);
            return Err(error);
        }
    };
    let principal = app_token.object_id.clone();

    let writer = ConsentWriter::new(&state.azure);
    let mut report = Vec::new();
    let mut connected = Vec::new();
    for sub in &target.subscriptions {
        let Some(offer) = offered.iter().find(|o| &o.subscription_id == sub) else {
            report.push(failed(
                sub,
                "your Azure account cannot see this subscription in this tenant, so it is not its Owner; check the id, or ask one of its Owners to connect it",
            ));
            continue;
        };
        if !offer.can_assign {
            report.push(failed(
                sub,
                "you are not Owner or User Access Administrator of this subscription, so you cannot give cloudkeep roles on it; ask one of its Owners",
            ));
            continue;
        }
        let mut roles = Vec::new();
        let mut held = Vec::new();
        for role in AzureRole::RECOMMENDED {
            let role_id = role.definition_id();
            let outcome = writer.assign_role(token, sub, role_id, &principal).await;
            let (word, assignment, message) = match &outcome {
                Ok(Assignment::Created(id)) => (AssignmentOutcome::Created, Some(id.clone()), None),
                Ok(Assignment::AlreadyThere) => (AssignmentOutcome::AlreadyAssigned, None, None),
                Err(e) => (AssignmentOutcome::Failed, None, Some(azure_said(e))),
            };
            if outcome.is_ok() {
                held.push(role_id.to_string());
            }
            audit(
                &state,
                &caller,
                if outcome.is_ok() {
                    "consent.role_assigned"
                } else {
                    "consent.role_failed"
                },
                &format!("subscription:{sub}"),
                json!({ "tenant_id": tenant, "role": role, "principal_id": principal, "outcome": word,
                        "assignment_id": assignment, "message": message }),
            )
            .await?;
            roles.push(RoleOutcome {
                role,
                outcome: word,
                message,
            });
        }
        if held.is_empty() {
            report.push(SubscriptionConsent {
                subscription_id: sub.clone(),
                outcome: ConsentOutcome::Failed,
                message: Some("no role could be assigned; nothing was recorded for it".into()),
                roles,
            });
            continue;
        }
        let permissions = assess(&held);
        let reads = permissions.enables(Feature::Inventory);
        connected.push(NewSubscription {
            azure_id: sub.clone(),
            display_name: offer.display_name.clone(),
            sync_level: permissions.initial_level(),
            permissions,
        });
        report.push(SubscriptionConsent {
            subscription_id: sub.clone(),
            outcome: ConsentOutcome::Connected,
            message: (!reads).then(|| {
                "Reader could not be assigned, so inventory is off for it until an Owner assigns it".to_string()
            }),
            roles,
        });
    }
    // The user's token ends here, whatever happens next.
    drop(flow);

    let partner_link = match op.partner_id.as_deref() {
        Some(partner) if choice.link_partner && !connected.is_empty() => {
            Some(link_partner(&state, &caller, &writer, &app_token, partner).await?)
        }
        _ => None,
    };
    let connection = if connected.is_empty() {
        None
    } else {
        Some(record(&state, &caller, op, target, &principal, connected).await?)
    };
    Ok(Json(ConsentReport {
        connection: connection.as_ref().map(ConnectionView::from),
        subscriptions: report,
        partner_link,
    }))
}

/// Where the chosen subscriptions go, decided before Azure is changed.
struct Target {
    /// Each chosen subscription once, lower-cased, in the order given.
    subscriptions: Vec<String>,
    /// The connection to extend, or the name of a new one.
    existing: Option<ConnectionId>,
    name: String,
    tenant: String,
    /// Chosen subscriptions another connection holds, to move here.
    moving: Vec<String>,
}

async fn prepare(
    state: &AppState,
    caller: &Caller,
    op: &OperatorApp,
    flow: &Flow,
    choice: &ConsentChoice,
) -> Result<Target, ApiError> {
    let Stage::SignedIn { token, .. } = &flow.stage else {
        return Err(unknown_flow());
    };
    let mut seen = BTreeSet::new();
    let subscriptions: Vec<String> = choice
        .subscriptions
        .iter()
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty() && seen.insert(s.clone()))
        .collect();
    if subscriptions.is_empty() {
        return Err(ApiError::unprocessable(
            "no_subscriptions",
            "choose the subscriptions to connect: 'subscriptions' lists Azure subscription ids from the offer (those with can_assign_roles)",
        ));
    }
    let tenant = token.tenant_id.clone();
    let existing = match flow.connection {
        Some(id) => Some(state.store.connection(caller.scope(), id).await?),
        None => state
            .store
            .connections(caller.scope())
            .await?
            .into_iter()
            .find(|c| {
                c.deleted_at.is_none()
                    && c.auth_method == AuthMethod::OperatorApp
                    && c.tenant_id.eq_ignore_ascii_case(&tenant)
                    && c.client_id.eq_ignore_ascii_case(&op.client_id)
            }),
    };
    if let Some(c) = &existing {
        extendable(c, op)?;
    }
    let name = choice
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("Azure tenant {tenant}"));
    if name.chars().count() > 200 {
        return Err(ApiError::unprocessable(
            "invalid_name",
            "a connection name is 1 to 200 characters",
        ));
    }
    // A subscription another connection holds is moved only when asked;
    // refused before Azure is changed, naming the holder.
    let asked: Vec<String> = choice
        .move_connected
        .iter()
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let mut moving = Vec::new();
    for (sub, holder) in state
        .store
        .subscription_holders(caller.scope(), &subscriptions)
        .await?
    {
        if existing.as_ref().is_some_and(|c| c.id == holder) {
            continue;
        }
        if !asked.contains(&sub) {
            let name = state.store.connection(caller.scope(), holder).await?.name;
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "subscription_connected",
                format!(
                    "subscription {sub} is already connected by connection '{name}' ({holder}): list it in move_connected to move it, with what was read of it, to this connection, or leave it out"
                ),
            ));
        }
        moving.push(sub);
    }
    Ok(Target {
        subscriptions,
        existing: existing.map(|c| c.id),
        name,
        tenant,
        moving,
    })
}

fn failed(sub: &str, why: &str) -> SubscriptionConsent {
    SubscriptionConsent {
        subscription_id: sub.to_string(),
        outcome: ConsentOutcome::Failed,
        message: Some(why.to_string()),
        roles: Vec::new(),
    }
}

async fn link_partner(
    state: &AppState,
    caller: &Caller,
    writer: &ConsentWriter<'_>,
    app_token: &AccessToken,
    partner: &str,
) -> Result<PartnerLinkOutcome, ApiError> {
    let (outcome, message) = match writer.link_partner(app_token, partner).await {
        Ok(PartnerLink::Linked) => (PartnerOutcome::Linked, None),
        Ok(PartnerLink::LinkedElsewhere(other)) => (
            PartnerOutcome::LinkedElsewhere,
            Some(format!(
                "cloudkeep's principal in this tenant is already linked to partner id {other}, which is left as it is"
            )),
        ),
        Err(e) => (PartnerOutcome::Failed, Some(azure_said(&e))),
    };
    audit(
        state,
        caller,
        if outcome == PartnerOutcome::Failed {
            "consent.partner_link_failed"
        } else {
            "consent.partner_linked"
        },
        &format!("tenant:{}", app_token.tenant_id),
        json!({ "partner_id": partner, "outcome": outcome, "message": message }),
    )
    .await?;
    Ok(PartnerLinkOutcome {
        partner_id: partner.to_string(),
        outcome,
        message,
    })
}

/// Adds the subscriptions to the target connection, or creates it.
async fn record(
    state: &AppState,
    caller: &Caller,
    op: &OperatorApp,
    target: Target,
    principal: &str,
    subscriptions: Vec<NewSubscription>,
) -> Result<Connection, ApiError> {
    if let Some(id) = target.existing {
        return Ok(state
            .store
            .add_subscriptions(
                caller.scope(),
                id,
                &subscriptions,
                &target.moving,
                &caller.actor(),
            )
            .await?);
    }
    // Subscriptions another connection holds join once the connection
    // exists, moved there as the user asked.
    let (moved, fresh): (Vec<NewSubscription>, Vec<NewSubscription>) = subscriptions
        .into_iter()
        .partition(|s| target.moving.contains(&s.azure_id));
    let created = state
        .store
        .create_connection(
            caller.scope(),
            NewConnection {
                id: ConnectionId::new(),
                name: target.name,
                tenant_id: target.tenant,
                client_id: op.client_id.clone(),
                principal_id: principal.to_string(),
                credential: ConnectionCredential::OperatorApp,
                cadence_secs: state.settings.default_cadence.as_secs() as i64,
                stale_after_secs: state.settings.default_stale_after.as_secs() as i64,
                subscriptions: fresh,
                actor: caller.actor(),
            },
        )
        .await?;
    if moved.is_empty() {
        return Ok(created);
    }
    Ok(state
        .store
        .add_subscriptions(
            caller.scope(),
            created.id,
            &moved,
            &target.moving,
            &caller.actor(),
        )
        .await?)
}

async fn audit(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: &str,
    details: Value,
) -> Result<(), ApiError> {
    state
        .store
        .audit(
            caller.scope(),
            AuditEntry::new(caller.actor(), action, target, details),
        )
        .await?;
    Ok(())
}

async fn audit_failure(
    state: &AppState,
    caller: &Caller,
    target: &str,
    step: &str,
    error: &ApiError,
) -> Result<(), ApiError> {
    audit(
        state,
        caller,
        "consent.failed",
        target,
        json!({ "step": step, "code": error.code, "message": error.message }),
    )
    .await
}
