//! Connections: the list with their health, connecting a service principal
//! (its permissions checked per subscription before anything is saved),
//! connecting by consent (the callback is the subscription picker), sync
//! levels, sync history with live progress, re-authentication, revocation.

use askama::Template;
use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use cloudkeep_domain::policy::PermissionReport;
use cloudkeep_domain::report::{RunReport, StepReport};
use cloudkeep_domain::{AuthMethod, Permission, RunStatus, SecretString, SyncLevel};
use cloudkeep_server::api::{connections as api, consent, subscriptions, sync_runs};
use cloudkeep_server::wire::{
    CheckRequest, ConnectRequest, ConnectionView, ConsentChoice, ConsentOffer, ConsentReport,
    ReauthRequest, SyncLevelRequest, SyncRunView, UpdateConnectionRequest,
};
use cloudkeep_server::{ApiError, AppState, Body, Params};
use serde::Deserialize;

use super::dashboard::{Health, health};
use crate::format;
use crate::page::{
    Chrome, PageResult, Section, form_page, html, html_with, is_refusal, notice, see_other,
};
use crate::session::{Form, Web, all_of, query};

#[derive(Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
    n: Option<u64>,
}

#[derive(Template)]
#[template(path = "connections.html")]
struct ListPage {
    chrome: Chrome,
    live: Vec<Line>,
    revoked: Vec<Line>,
    may_manage: bool,
    consent: bool,
}

struct Line {
    health: Health,
    tenant: String,
    method: &'static str,
}

fn method(m: AuthMethod) -> &'static str {
    match m {
        AuthMethod::OperatorApp => "by consent",
        _ => "service principal",
    }
}

pub async fn list(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: NoticeQuery = query(&uri)?;
    if !web.may(Permission::ReadData) {
        return Err(ApiError::forbidden("reading connections").into());
    }
    let now = state.store.now();
    let all = state.store.connections(&web.auth.scope).await?;
    let (mut live, mut revoked) = (Vec::new(), Vec::new());
    for c in &all {
        let view = ConnectionView::from(c);
        let line = Line {
            health: health(&view, now),
            tenant: view.tenant_id.clone(),
            method: method(view.auth_method),
        };
        if view.deleted_at.is_some() {
            revoked.push(line);
        } else {
            live.push(line);
        }
    }
    let chrome = Chrome::new(&web, "Connections", Section::Connections)
        .with_notice(notice(q.notice.as_deref(), q.n));
    Ok(html(&ListPage {
        chrome,
        live,
        revoked,
        may_manage: web.may(Permission::ManageConnections),
        consent: state.settings.operator.is_some() && state.settings.public_url.is_some(),
    }))
}

#[derive(Template)]
#[template(path = "connection_new.html")]
struct NewPage {
    chrome: Chrome,
    v: ConnectValues,
    error: Option<String>,
    consent: bool,
}

#[derive(Default, Deserialize)]
pub struct ConnectValues {
    #[serde(default)]
    name: String,
    #[serde(default)]
    tenant_id: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    client_secret: String,
    /// One per line, or separated by commas or spaces.
    #[serde(default)]
    subscription_ids: String,
    cadence_hours: Option<u32>,
    stale_after_hours: Option<u32>,
}

impl ConnectValues {
    fn subscriptions(&self) -> Option<Vec<String>> {
        let ids: Vec<String> = self
            .subscription_ids
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        (!ids.is_empty()).then_some(ids)
    }
}

pub async fn new_form(State(state): State<AppState>, web: Web) -> PageResult {
    new_page(&state, &web, ConnectValues::default(), None).await
}

async fn new_page(
    state: &AppState,
    web: &Web,
    mut v: ConnectValues,
    error: Option<String>,
) -> PageResult {
    if !web.may(Permission::ManageConnections) {
        return Err(ApiError::forbidden("connecting tenants").into());
    }
    // A secret is never sent back to the browser, not even its own.
    v.client_secret.clear();
    let chrome = Chrome::new(web, "Connect an Azure tenant", Section::Connections);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(html_with(
        status,
        &NewPage {
            chrome,
            v,
            error,
            consent: state.settings.operator.is_some() && state.settings.public_url.is_some(),
        },
    ))
}

#[derive(Template)]
#[template(path = "connection_check.html")]
struct CheckResult {
    error: Option<String>,
    tenant: String,
    subscriptions: Vec<CheckedLine>,
}

struct CheckedLine {
    id: String,
    name: String,
    level: String,
    perms: Perms,
    connected: bool,
}

/// A permission report as the page shows it.
pub struct Perms {
    pub present: Vec<String>,
    pub missing: Vec<(String, String)>,
}

pub fn perms(p: &PermissionReport) -> Perms {
    Perms {
        present: p.roles_present.iter().map(|r| r.to_string()).collect(),
        missing: p
            .roles_missing
            .iter()
            .map(|m| {
                let features = m
                    .features_disabled
                    .iter()
                    .map(|f| format::words(f.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ");
                (m.role.to_string(), features)
            })
            .collect(),
    }
}

/// The permission check, answered to htmx beside the form: nothing stored.
pub async fn check(
    State(state): State<AppState>,
    Form { web, form, .. }: Form<ConnectValues>,
) -> PageResult {
    let answer = api::check_connection(
        State(state),
        web.caller(),
        Body(CheckRequest {
            tenant_id: form.tenant_id.clone(),
            client_id: form.client_id.clone(),
            client_secret: SecretString::new(form.client_secret.clone()),
            subscription_ids: form.subscriptions(),
        }),
    )
    .await;
    let page = match answer {
        Ok(Json(c)) => CheckResult {
            error: None,
            tenant: c.tenant_id,
            subscriptions: c
                .subscriptions
                .iter()
                .map(|s| CheckedLine {
                    id: s.subscription_id.clone(),
                    name: s.display_name.clone(),
                    level: format::words(s.initial_level.as_str()),
                    perms: perms(&s.permissions),
                    connected: s.connected_by.is_some(),
                })
                .collect(),
        },
        Err(e) if is_refusal(&e) => CheckResult {
            error: Some(e.message),
            tenant: String::new(),
            subscriptions: Vec::new(),
        },
        Err(e) => return Err(e.into()),
    };
    Ok(html(&page))
}

pub async fn create(
    State(state): State<AppState>,
    Form { web, form, .. }: Form<ConnectValues>,
) -> PageResult {
    let answer = api::create_connection(
        State(state.clone()),
        web.caller(),
        Body(ConnectRequest {
            name: form.name.clone(),
            tenant_id: form.tenant_id.clone(),
            client_id: form.client_id.clone(),
            client_secret: SecretString::new(form.client_secret.clone()),
            subscription_ids: form.subscriptions(),
            cadence_hours: form.cadence_hours,
            stale_after_hours: form.stale_after_hours,
        }),
    )
    .await;
    match answer {
        Ok((_, Json(c))) => {
            // The first sync starts now, in the background; the page follows it.
            let started = sync_runs::sync_now(
                State(state.clone()),
                web.caller(),
                Path(c.id.to_string()),
                Params(sync_runs::SyncQuery { wait: Some(false) }),
            )
            .await;
            Ok(match started {
                Ok((_, Json(run))) => see_other(&format!("/sync-runs/{}?notice=connected", run.id)),
                Err(_) => see_other(&format!("/connections/{}?notice=connected", c.id)),
            })
        }
        Err(e) if is_refusal(&e) => new_page(&state, &web, form, Some(e.message)).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "connection.html")]
struct DetailPage {
    chrome: Chrome,
    c: ConnectionView,
    health: Health,
    method: &'static str,
    cadence: String,
    stale_after: String,
    cadence_hours: i64,
    stale_hours: i64,
    subscriptions: Vec<SubLine>,
    runs: Vec<RunLine>,
    levels: Vec<(&'static str, String)>,
    may_manage: bool,
    revoked: bool,
    reauth: bool,
    error: Option<String>,
}

struct SubLine {
    id: String,
    azure_id: String,
    name: String,
    level: String,
    perms: Perms,
    detached: bool,
    listed: String,
}

pub struct RunLine {
    pub id: String,
    pub trigger: String,
    pub status: String,
    pub started: String,
    pub took: String,
    pub errors: usize,
}

pub fn run_line(r: &SyncRunView, now: chrono::DateTime<chrono::Utc>) -> RunLine {
    RunLine {
        id: r.id.to_string(),
        trigger: r.trigger.to_string(),
        status: r.status.to_string(),
        started: format::ago(r.started_at, now),
        took: r
            .finished_at
            .map(|f| {
                format!(
                    "{:.1} s",
                    (f - r.started_at).num_milliseconds() as f64 / 1000.0
                )
            })
            .unwrap_or_else(|| "running".into()),
        errors: r.report.errors.len(),
    }
}

/// What each level reads and writes, for the level picker.
fn level_label(l: SyncLevel) -> &'static str {
    match l {
        SyncLevel::NoResources => "Spend only (no resources)",
        SyncLevel::NoTags => "Resources without tags",
        SyncLevel::ReadTagsOnly => "Read tags; edits stay in cloudkeep",
        SyncLevel::ReadWriteTags => "Read tags and write edits back",
    }
}

pub async fn detail(
    State(state): State<AppState>,
    web: Web,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: NoticeQuery = query(&uri)?;
    detail_page(&state, &web, &id, notice(q.notice.as_deref(), q.n), None).await
}

async fn detail_page(
    state: &AppState,
    web: &Web,
    id: &str,
    notice_text: Option<String>,
    error: Option<String>,
) -> PageResult {
    let Json(c) =
        api::get_connection(State(state.clone()), web.caller(), Path(id.to_string())).await?;
    let now = state.store.now();
    let Json(runs) = sync_runs::list_sync_runs(
        State(state.clone()),
        web.caller(),
        Params(sync_runs::RunsQuery {
            connection: Some(c.id.to_string()),
            status: None,
            limit: Some("10".into()),
            after: None,
        }),
    )
    .await?;
    let chrome = Chrome::new(web, c.name.clone(), Section::Connections).with_notice(notice_text);
    let page = DetailPage {
        chrome,
        health: health(&c, now),
        method: method(c.auth_method),
        cadence: format::hours(c.cadence_secs),
        stale_after: format::hours(c.stale_after_secs),
        cadence_hours: c.cadence_secs / 3600,
        stale_hours: c.stale_after_secs / 3600,
        subscriptions: c
            .subscriptions
            .iter()
            .map(|s| SubLine {
                id: s.id.to_string(),
                azure_id: s.subscription_id.clone(),
                name: s.display_name.clone(),
                level: s.sync_level.as_str().to_string(),
                perms: perms(&s.permissions),
                detached: s.detached_at.is_some(),
                listed: format::when_opt(s.inventory_at),
            })
            .collect(),
        runs: runs.items.iter().map(|r| run_line(r, now)).collect(),
        levels: SyncLevel::ALL
            .iter()
            .map(|l| (l.as_str(), level_label(*l).to_string()))
            .collect(),
        may_manage: web.may(Permission::ManageConnections),
        revoked: c.deleted_at.is_some(),
        reauth: c.auth_method != AuthMethod::OperatorApp,
        error: error.clone(),
        c,
    };
    Ok(form_page(&page, error.is_some()))
}

#[derive(Deserialize)]
pub struct SettingsForm {
    name: Option<String>,
    cadence_hours: Option<u32>,
    stale_after_hours: Option<u32>,
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, form, .. }: Form<SettingsForm>,
) -> PageResult {
    let answer = api::update_connection(
        State(state.clone()),
        web.caller(),
        Path(id.clone()),
        Body(UpdateConnectionRequest {
            name: form.name,
            cadence_hours: form.cadence_hours,
            stale_after_hours: form.stale_after_hours,
        }),
    )
    .await;
    after_change(&state, &web, &id, answer.map(|_| ()), "updated").await
}

/// Back to the connection's page with a notice, or the page again with
/// what was refused.
async fn after_change(
    state: &AppState,
    web: &Web,
    id: &str,
    answer: Result<(), ApiError>,
    key: &str,
) -> PageResult {
    match answer {
        Ok(()) => Ok(see_other(&format!("/connections/{id}?notice={key}"))),
        Err(e) if is_refusal(&e) => detail_page(state, web, id, None, Some(e.message)).await,
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct Nothing {}

pub async fn sync(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, .. }: Form<Nothing>,
) -> PageResult {
    let answer = sync_runs::sync_now(
        State(state.clone()),
        web.caller(),
        Path(id.clone()),
        Params(sync_runs::SyncQuery { wait: Some(false) }),
    )
    .await;
    match answer {
        Ok((_, Json(run))) => Ok(see_other(&format!(
            "/sync-runs/{}?notice=sync_started",
            run.id
        ))),
        Err(e) => after_change(&state, &web, &id, Err(e), "").await,
    }
}

#[derive(Deserialize)]
pub struct ReauthForm {
    #[serde(default)]
    client_secret: String,
}

pub async fn reauth(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, form, .. }: Form<ReauthForm>,
) -> PageResult {
    let answer = api::reauth_connection(
        State(state.clone()),
        web.caller(),
        Path(id.clone()),
        Body(ReauthRequest {
            client_secret: SecretString::new(form.client_secret),
        }),
    )
    .await;
    after_change(&state, &web, &id, answer.map(|_| ()), "reauthenticated").await
}

pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, .. }: Form<Nothing>,
) -> PageResult {
    let answer = api::revoke_connection(State(state.clone()), web.caller(), Path(id.clone())).await;
    after_change(&state, &web, &id, answer.map(|_| ()), "revoked").await
}

#[derive(Deserialize)]
pub struct LevelForm {
    sync_level: SyncLevel,
    connection: String,
}

pub async fn set_level(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, form, .. }: Form<LevelForm>,
) -> PageResult {
    let answer = subscriptions::set_sync_level(
        State(state.clone()),
        web.caller(),
        Path(id),
        Body(SyncLevelRequest {
            sync_level: form.sync_level,
        }),
    )
    .await;
    after_change(
        &state,
        &web,
        &form.connection,
        answer.map(|_| ()),
        "level_changed",
    )
    .await
}

#[derive(Template)]
#[template(path = "sync_run.html")]
struct RunPage {
    chrome: Chrome,
    run: RunPart,
}

/// The run's report; answered alone to htmx while the run goes on.
#[derive(Template)]
#[template(path = "sync_run_part.html")]
struct RunPart {
    id: String,
    connection_id: String,
    connection: String,
    line: RunLine,
    running: bool,
    subscriptions: Vec<(String, Vec<StepLine>)>,
    errors: Vec<(String, String, String)>,
}

struct StepLine {
    step: String,
    state: String,
    counts: String,
    progress: Option<(u64, u64, String)>,
    reason: String,
}

fn step_line(s: &StepReport) -> StepLine {
    StepLine {
        step: format::words(&s.step),
        state: s.state.to_string(),
        counts: s
            .counts
            .iter()
            .map(|(k, v)| format!("{} {}", format::words(k), format::count(v)))
            .collect::<Vec<_>>()
            .join(", "),
        progress: s
            .progress
            .as_ref()
            .map(|p| (p.done, p.total.max(p.done).max(1), p.unit.clone())),
        reason: s.reason.clone().unwrap_or_default(),
    }
}

fn report_lines(report: &RunReport, names: &[(String, String)]) -> Vec<(String, Vec<StepLine>)> {
    report
        .subscriptions
        .iter()
        .map(|s| {
            let name = names
                .iter()
                .find(|(id, _)| id.eq_ignore_ascii_case(&s.subscription_id))
                .map(|(_, n)| format!("{n} ({})", s.subscription_id))
                .unwrap_or_else(|| s.subscription_id.clone());
            (name, s.steps.iter().map(step_line).collect())
        })
        .collect()
}

pub async fn run(
    State(state): State<AppState>,
    web: Web,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: NoticeQuery = query(&uri)?;
    let Json(run) = sync_runs::get_sync_run(State(state.clone()), web.caller(), Path(id)).await?;
    let Json(c) = api::get_connection(
        State(state.clone()),
        web.caller(),
        Path(run.connection_id.to_string()),
    )
    .await?;
    let names: Vec<(String, String)> = c
        .subscriptions
        .iter()
        .map(|s| (s.subscription_id.clone(), s.display_name.clone()))
        .collect();
    let now = state.store.now();
    let part = RunPart {
        id: run.id.to_string(),
        connection_id: c.id.to_string(),
        connection: c.name.clone(),
        line: run_line(&run, now),
        running: run.status == RunStatus::Running,
        subscriptions: report_lines(&run.report, &names),
        errors: run
            .report
            .errors
            .iter()
            .map(|e| {
                (
                    e.kind.to_string(),
                    e.subscription.clone().unwrap_or_default(),
                    e.message.clone(),
                )
            })
            .collect(),
    };
    if web.htmx {
        return Ok(html(&part));
    }
    let chrome = Chrome::new(&web, format!("Sync of {}", c.name), Section::Connections)
        .with_notice(notice(q.notice.as_deref(), q.n));
    Ok(html(&RunPage { chrome, run: part }))
}

// ---- consent ----

#[derive(Deserialize)]
pub struct StartForm {
    connection: Option<String>,
    login_hint: Option<String>,
}

/// To Entra ID's sign-in; its answer comes back to the picker below.
pub async fn consent_start(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: StartForm = query(&uri)?;
    let answer = consent::start(
        State(state),
        web.caller(),
        Params(consent::StartQuery {
            connection: q.connection,
            login_hint: q.login_hint,
            ui: Some(true),
        }),
    )
    .await?;
    Ok(answer)
}

#[derive(Template)]
#[template(path = "consent_problem.html")]
struct ConsentProblem {
    chrome: Chrome,
    message: String,
}

async fn consent_problem(web: &Web, e: ApiError) -> PageResult {
    if !e.status.is_client_error() && e.status != StatusCode::BAD_GATEWAY {
        return Err(e.into());
    }
    let status = e.status;
    let chrome = Chrome::new(web, "Connecting by consent", Section::Connections);
    Ok(html_with(
        status,
        &ConsentProblem {
            chrome,
            message: e.message,
        },
    ))
}

/// The callback from Entra ID (by way of the API's callback, which knows
/// the flow came from here): the sign-in is redeemed, then the picker.
pub async fn consent_callback(
    State(state): State<AppState>,
    web: Web,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: consent::CallbackQuery = query(&uri)?;
    match consent::signed_in(state.clone(), web.caller(), &headers, q).await {
        Ok(Json(offer)) => Ok(see_other(&format!("/connections/consent/{}", offer.flow))),
        Err(e) => consent_problem(&web, e).await,
    }
}

#[derive(Template)]
#[template(path = "consent_pick.html")]
struct PickPage {
    chrome: Chrome,
    offer: ConsentOffer,
    expires: String,
    extending: bool,
    error: Option<String>,
}

pub async fn consent_pick(
    State(state): State<AppState>,
    web: Web,
    headers: HeaderMap,
    Path(flow): Path<String>,
) -> PageResult {
    pick_page(&state, &web, &headers, flow, None).await
}

async fn pick_page(
    state: &AppState,
    web: &Web,
    headers: &HeaderMap,
    flow: String,
    error: Option<String>,
) -> PageResult {
    let offer = match consent::offer(
        State(state.clone()),
        web.caller(),
        headers.clone(),
        Path(flow),
    )
    .await
    {
        Ok(Json(offer)) => offer,
        Err(e) => return consent_problem(web, e).await,
    };
    let chrome = Chrome::new(web, "Choose subscriptions to connect", Section::Connections);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(html_with(
        status,
        &PickPage {
            chrome,
            expires: format::when(offer.expires_at),
            extending: offer.connection_id.is_some(),
            offer,
            error,
        },
    ))
}

#[derive(Deserialize)]
pub struct ChoiceForm {
    name: Option<String>,
    link_partner: Option<String>,
}

#[derive(Template)]
#[template(path = "consent_done.html")]
struct DonePage {
    chrome: Chrome,
    report: ConsentReport,
}

pub async fn consent_complete(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(flow): Path<String>,
    Form { web, form, fields }: Form<ChoiceForm>,
) -> PageResult {
    let choice = ConsentChoice {
        subscriptions: all_of(&fields, "subscription"),
        name: form.name,
        link_partner: form.link_partner.is_some(),
        move_connected: all_of(&fields, "move"),
    };
    let answer = consent::complete(
        State(state.clone()),
        web.caller(),
        headers.clone(),
        Path(flow.clone()),
        Body(choice),
    )
    .await;
    match answer {
        Ok(Json(report)) => {
            if let Some(c) = &report.connection {
                // The new subscriptions' first sync, in the background.
                let _ = sync_runs::sync_now(
                    State(state.clone()),
                    web.caller(),
                    Path(c.id.to_string()),
                    Params(sync_runs::SyncQuery { wait: Some(false) }),
                )
                .await;
            }
            let chrome = Chrome::new(&web, "Connected by consent", Section::Connections);
            Ok(html(&DonePage { chrome, report }))
        }
        // A refused choice leaves the flow open: the picker again, saying why.
        Err(e) if is_refusal(&e) => pick_page(&state, &web, &headers, flow, Some(e.message)).await,
        Err(e) => consent_problem(&web, e).await,
    }
}
