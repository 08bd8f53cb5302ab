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
//! expiry) drops it: it is never stored, logged or returned. A flow is bound
//! to the organisation, user and browser session that started it, so the
//! callback and the choice must come through the same server process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use cloudkeep_azure::write::{Assignment, ConsentWriter, PartnerLink};
use cloudkeep_azure::{AccessToken, AzureError, CodeRedemption, Pkce};
use cloudkeep_domain::{
    AuthMethod, ConnectionId, OperatorApp, OrgId, Permission, SecretString, UserId,
};
use cloudkeep_store::{
    AuditEntry, Connection, ConnectionCredential, Credential, NewConnection, NewSubscription,
};
use serde::Deserialize;
use serde_json::json;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::connect::{RECOMMENDED, assess, explain, initial_level};
use crate::error::{Body, Params};
use crate::wire::{
    ConnectionView, ConsentChoice, ConsentOffer, ConsentReport, OfferedSubscription,
    PartnerLinkOutcome, RoleOutcome, SubscriptionConsent,
};
use crate::{ApiError, AppState};

/// The tenant alias for a sign-in whose tenant is not known yet.
const ANY_WORK_ACCOUNT: &str = "organizations";
/// How long the user has to come back from Entra ID (its codes last 10 minutes).
const SIGN_IN_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How long the user has to choose after signing in (bounded by the token too).
const CHOICE_WINDOW: Duration = Duration::from_secs(30 * 60);
/// Roles that may create role assignments: Owner, User Access Administrator.
const MAY_ASSIGN: [&str; 2] = [
    "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
];
pub const CALLBACK_PATH: &str = "/api/v1/connections/consent/callback";

/// Consent flows under way, keyed by their `state` value.
#[derive(Default)]
pub struct Flows(Mutex<HashMap<String, Flow>>);

struct Flow {
    org: OrgId,
    user: UserId,
    /// The session's CSRF token: the flow answers only to that session.
    session: String,
    connection: Option<ConnectionId>,
    expires: Instant,
    stage: Stage,
}

enum Stage {
    /// Sent to Entra ID, waiting for the callback.
    SigningIn {
        verifier: SecretString,
        redirect_uri: String,
    },
    /// Signed in: the user's token and what they may connect.
    SignedIn {
        token: AccessToken,
        offered: Vec<Offered>,
    },
}

struct Offered {
    subscription_id: String,
    display_name: String,
    can_assign: bool,
}

impl Flows {
    fn insert(&self, state: String, flow: Flow) {
        let mut flows = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        flows.retain(|_, f| f.expires > now);
        flows.insert(state, flow);
    }

    /// Takes a live flow out if it belongs to this caller and is at the
    /// step asked for (signed in or not); any other flow is left in place
    /// and reported as unknown.
    fn take(&self, state: &str, caller: &Caller, signed_in: bool) -> Option<Flow> {
        let mut flows = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        flows.retain(|_, f| f.expires > now);
        let session = session_of(caller)?;
        let mine = flows.get(state).is_some_and(|f| {
            f.org == caller.scope().org()
                && f.user == caller.0.user.id
                && f.session == session
                && matches!(f.stage, Stage::SignedIn { .. }) == signed_in
        });
        if mine { flows.remove(state) } else { None }
    }
}

fn session_of(caller: &Caller) -> Option<String> {
    match &caller.0.credential {
        Credential::Session { csrf_token } => Some(csrf_token.clone()),
        _ => None,
    }
}

fn unknown_flow() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "consent_flow_not_found",
        "this consent flow does not exist, has expired, or was started in another session: start again at /api/v1/connections/consent/start",
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

fn random_state() -> String {
    cloudkeep_domain::password::random_token("cs_")
        .expose()
        .to_string()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// Add subscriptions to this connection (one made by consent) instead
    /// of creating one.
    connection: Option<String>,
    /// Passed to Entra ID to preselect the account.
    login_hint: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/connections/consent/start", tag = "connections", params(StartQuery),
    responses((status = 303, description = "to Entra ID's sign-in (Location)"), (status = 409, description = "consent is not configured on this server")))]
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
            let id: ConnectionId = crate::routes::parse_id(raw, "connection")?;
            extendable(&state.store.connection(caller.scope(), id).await?, op)?;
            Some(id)
        }
        None => None,
    };
    let pkce = Pkce::new();
    let flow_state = random_state();
    let redirect_uri = format!("{public_url}{CALLBACK_PATH}");
    let mut extra = vec![("prompt", "consent")];
    if let Some(hint) = q.login_hint.as_deref() {
        extra.push(("login_hint", hint));
    }
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
    state.consent.insert(
        flow_state,
        Flow {
            org: caller.scope().org(),
            user: caller.0.user.id,
            session,
            connection,
            expires: Instant::now() + SIGN_IN_WINDOW,
            stage: Stage::SigningIn {
                verifier: pkce.verifier,
                redirect_uri,
            },
        },
    );
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, url.to_string())]).into_response())
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
    /// Set by the page that re-requests the callback from this origin.
    bounced: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/connections/consent/callback", tag = "connections", params(CallbackQuery),
    responses((status = 200, body = ConsentOffer, description = "signed in: the subscriptions to choose from (or, without the session cookie, a page that asks again same-site)"),
        (status = 422, description = "Entra ID refused the sign-in")))]
pub async fn callback(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Params(q): Params<CallbackQuery>,
    uri: axum::http::Uri,
) -> Result<Response, ApiError> {
    match caller {
        Ok(caller) => Ok(signed_in(state, caller, q).await?.into_response()),
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
        .replace('<', "&lt;");
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

async fn signed_in(
    state: AppState,
    caller: Caller,
    q: CallbackQuery,
) -> Result<Json<ConsentOffer>, ApiError> {
    caller.require(Permission::ManageConnections, "connecting tenants")?;
    let (op, _) = operator(&state)?;
    let flow_state = q.state.as_deref().ok_or_else(unknown_flow)?;
    let mut flow = state
        .consent
        .take(flow_state, &caller, false)
        .ok_or_else(unknown_flow)?;
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
    let code =
        SecretString::new(q.code.clone().ok_or_else(|| {
            ApiError::bad_request("the callback has neither a code nor an error")
        })?);
    let token = state
        .azure
        .redeem_code(
            ANY_WORK_ACCOUNT,
            &code,
            CodeRedemption {
                client_id: &op.client_id,
                client_secret: &op.client_secret,
                redirect_uri,
                verifier,
            },
        )
        .await
        .map_err(explain)?;
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
    for s in visible {
        let roles = state
            .azure
            .roles_assigned_to(&token, &s.subscription_id, &token.object_id)
            .await;
        let can_assign = match roles {
            Ok(roles) => roles
                .iter()
                .any(|r| MAY_ASSIGN.contains(&r.role_definition_id.as_str())),
            // The user may not even read role assignments there.
            Err(AzureError::Forbidden { .. }) => false,
            Err(e) => return Err(explain(e)),
        };
        offered.push(Offered {
            subscription_id: s.subscription_id.to_ascii_lowercase(),
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
    let window = (token.expires_at - Utc::now())
        .to_std()
        .unwrap_or_default()
        .min(CHOICE_WINDOW);
    let offer = ConsentOffer {
        flow: flow_state.to_string(),
        tenant_id: token.tenant_id.clone(),
        connection_id: flow.connection.map(|c| c.as_uuid()),
        subscriptions: offered
            .iter()
            .map(|o| OfferedSubscription {
                subscription_id: o.subscription_id.clone(),
                display_name: o.display_name.clone(),
                can_assign_roles: o.can_assign,
            })
            .collect(),
        expires_at: Utc::now() + window,
    };
    flow.expires = Instant::now() + window;
    flow.stage = Stage::SignedIn { token, offered };
    state.consent.insert(flow_state.to_string(), flow);
    Ok(Json(offer))
}

/// Entra ID's `error` on the redirect, explained.
fn sign_in_refused(error: &str, description: &str) -> ApiError {
    let advice = match error {
        "access_denied" => "the sign-in was cancelled or declined",
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

#[utoipa::path(post, path = "/api/v1/connections/consent/{flow}", tag = "connections", request_body = ConsentChoice,
    params(("flow" = String, Path, description = "the flow from the callback's answer")),
    responses((status = 200, body = ConsentReport), (status = 404, description = "no such flow in this session")))]
pub async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    Path(flow_state): Path<String>,
    Body(choice): Body<ConsentChoice>,
) -> Result<Json<ConsentReport>, ApiError> {
    caller.require(Permission::ManageConnections, "connecting tenants")?;
    let (op, _) = operator(&state)?;
    // Taken out: whatever happens next, the user's token ends with this request.
    let flow = state
        .consent
        .take(&flow_state, &caller, true)
        .ok_or_else(unknown_flow)?;
    let Stage::SignedIn { token, offered } = flow.stage else {
        return Err(unknown_flow());
    };
    let tenant = token.tenant_id.clone();
    let chosen: Vec<String> = if choice.subscriptions.is_empty() {
        offered
            .iter()
            .filter(|o| o.can_assign)
            .map(|o| o.subscription_id.clone())
            .collect()
    } else {
        choice
            .subscriptions
            .iter()
            .map(|s| s.trim().to_ascii_lowercase())
            .collect()
    };
    if chosen.is_empty() {
        return Err(ApiError::unprocessable(
            "no_subscriptions",
            "you are Owner or User Access Administrator of no subscription in this tenant, so cloudkeep cannot be given roles on any; ask an Owner to run the consent flow. Nothing was changed.",
        ));
    }
    // cloudkeep's own principal in this tenant, and proof it is consented.
    let app_token = state
        .azure
        .client_credentials_token(&tenant, &op.client_id, &op.client_secret)
        .await
        .map_err(explain)?;
    let principal = if app_token.object_id.is_empty() {
        op.object_id.clone().unwrap_or_default()
    } else {
        app_token.object_id.clone()
    };
    if principal.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "principal_unknown",
            "Entra ID's token for cloudkeep's application names no object id, and none is configured (CLOUDKEEP_OPERATOR_OBJECT_ID). Nothing was changed.",
        ));
    }

    let writer = ConsentWriter::new(&state.azure);
    let mut report = Vec::new();
    let mut connected = Vec::new();
    for sub in &chosen {
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
        for (role, role_id) in RECOMMENDED {
            let outcome = writer.assign_role(&token, sub, role_id, &principal).await;
            let (word, message) = match &outcome {
                Ok(Assignment::Created) => ("created", None),
                Ok(Assignment::AlreadyThere) => ("already_assigned", None),
                Err(e) => ("failed", Some(e.to_string())),
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
                json!({ "tenant_id": tenant, "role": role, "principal_id": principal, "outcome": word, "message": message }),
            )
            .await?;
            roles.push(RoleOutcome {
                role: role.to_string(),
                outcome: word.to_string(),
                message,
            });
        }
        let permissions = assess(&held);
        let reads = permissions
            .features_enabled
            .iter()
            .any(|f| f == "inventory");
        if held.is_empty() {
            report.push(SubscriptionConsent {
                subscription_id: sub.clone(),
                outcome: "failed".into(),
                message: Some("no role could be assigned; nothing was recorded for it".into()),
                roles,
            });
            continue;
        }
        connected.push(NewSubscription {
            azure_id: sub.clone(),
            display_name: offer.display_name.clone(),
            sync_level: initial_level(&permissions),
            permissions: serde_json::to_value(&permissions).unwrap_or_default(),
        });
        report.push(SubscriptionConsent {
            subscription_id: sub.clone(),
            outcome: "connected".into(),
            message: (!reads).then(|| {
                "Reader could not be assigned, so inventory is off for it until an Owner assigns it".to_string()
            }),
            roles,
        });
    }
    drop(token);

    let partner_link = match op.partner_id.as_deref() {
        Some(partner) if !connected.is_empty() => {
            Some(link_partner(&state, &caller, &writer, &app_token, partner).await?)
        }
        _ => None,
    };
    let connection = if connected.is_empty() {
        None
    } else {
        Some(
            record(
                &state,
                &caller,
                op,
                flow.connection,
                &tenant,
                &principal,
                choice.name,
                connected,
            )
            .await?,
        )
    };
    Ok(Json(ConsentReport {
        connection: connection.as_ref().map(ConnectionView::from),
        subscriptions: report,
        partner_link,
    }))
}

fn failed(sub: &str, why: &str) -> SubscriptionConsent {
    SubscriptionConsent {
        subscription_id: sub.to_string(),
        outcome: "failed".into(),
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
        Ok(PartnerLink::Linked) => ("linked", None),
        Ok(PartnerLink::LinkedElsewhere(other)) => (
            "linked_elsewhere",
            Some(format!(
                "cloudkeep's principal in this tenant is already linked to partner id {other}, which is left as it is"
            )),
        ),
        Err(e) => ("failed", Some(e.to_string())),
    };
    audit(
        state,
        caller,
        if outcome == "failed" {
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
        outcome: outcome.to_string(),
        message,
    })
}

/// Adds the subscriptions to the flow's connection, to the organisation's
/// consent connection for this tenant, or to a new one.
#[allow(clippy::too_many_arguments)]
async fn record(
    state: &AppState,
    caller: &Caller,
    op: &OperatorApp,
    requested: Option<ConnectionId>,
    tenant: &str,
    principal: &str,
    name: Option<String>,
    subscriptions: Vec<NewSubscription>,
) -> Result<Connection, ApiError> {
    let existing = match requested {
        Some(id) => Some(state.store.connection(caller.scope(), id).await?),
        None => state
            .store
            .connections(caller.scope())
            .await?
            .into_iter()
            .find(|c| {
                c.deleted_at.is_none()
                    && c.auth_method == AuthMethod::OperatorApp
                    && c.tenant_id.eq_ignore_ascii_case(tenant)
                    && c.client_id.eq_ignore_ascii_case(&op.client_id)
            }),
    };
    if let Some(c) = existing {
        extendable(&c, op)?;
        return Ok(state
            .store
            .add_subscriptions(caller.scope(), c.id, &subscriptions, &caller.actor())
            .await?);
    }
    let name = name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("Azure tenant {tenant}"));
    Ok(state
        .store
        .create_connection(
            caller.scope(),
            NewConnection {
                id: ConnectionId::new(),
                name,
                tenant_id: tenant.to_string(),
                client_id: op.client_id.clone(),
                principal_id: principal.to_string(),
                credential: ConnectionCredential::OperatorApp,
                cadence_secs: state.settings.default_cadence.as_secs() as i64,
                stale_after_secs: state.settings.default_stale_after.as_secs() as i64,
                subscriptions,
                actor: caller.actor(),
            },
        )
        .await?)
}

async fn audit(
    state: &AppState,
    caller: &Caller,
    action: &str,
    target: &str,
    details: serde_json::Value,
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
