//! Settings: users and roles, API tokens, webhooks, evidence settings and
//! the control mapping, tag aliases and the retention window. Each
//! section shows what the role may change; the API refuses the rest
//! anyway.

use askama::Template;
use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use cloudkeep_domain::evidence::{CheckId, ControlId};
use cloudkeep_domain::{Permission, Role, SecretString};
use cloudkeep_server::api::{alerts as webhooks, assessments, controls, spend, tokens, users};
use cloudkeep_server::wire::{
    CreateTokenRequest, CreateUserRequest, CreateWebhookRequest, EvidenceSettingsChange,
    MappingChange, RetentionChange, RoleRequest, TagAliasKey, TagAliases,
};
use cloudkeep_server::{ApiError, AppState, Body, Params};
use serde::Deserialize;

use crate::format;
use crate::page::{Chrome, PageResult, Section, form_page, html, notice, see_other};
use crate::session::{Form, Web, query};

#[derive(Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "settings.html")]
struct IndexPage {
    chrome: Chrome,
    users: bool,
    webhooks: bool,
    evidence: bool,
    data: bool,
}

pub async fn index(web: Web) -> PageResult {
    let chrome = Chrome::new(&web, "Settings", Section::Settings);
    Ok(html(&IndexPage {
        chrome,
        users: web.may(Permission::ManageUsers),
        webhooks: web.may(Permission::ManageWebhooks),
        evidence: web.may(Permission::ReadEvidence),
        data: web.may(Permission::ReadData),
    }))
}

/// A refusal the form shows (what was wrong with the input, or what it
/// conflicts with); anything else (not found, not allowed) is the error page.
fn refused(e: ApiError) -> Result<String, crate::page::Problem> {
    if crate::page::is_refusal(&e) {
        Ok(e.message)
    } else {
        Err(e.into())
    }
}

// ---- users ----

#[derive(Template)]
#[template(path = "settings_users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserLine>,
    roles: Vec<&'static str>,
    may_owners: bool,
    error: Option<String>,
}

struct UserLine {
    id: String,
    name: String,
    email: String,
    role: String,
    since: String,
    me: bool,
    disabled: bool,
}

pub async fn users_page(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: NoticeQuery = query(&uri)?;
    render_users(&state, &web, notice(q.notice.as_deref(), None), None).await
}

async fn render_users(
    state: &AppState,
    web: &Web,
    notice_text: Option<String>,
    error: Option<String>,
) -> PageResult {
    let Json(page) = users::list_users(
        State(state.clone()),
        web.caller(),
        Params(users::UsersQuery {
            limit: Some("1000".into()),
            after: None,
        }),
    )
    .await?;
    let chrome = Chrome::new(web, "Users and roles", Section::Settings).with_notice(notice_text);
    let may_owners = web.may(Permission::ManageOwners);
    let page = UsersPage {
        chrome,
        users: page
            .items
            .iter()
            .map(|u| UserLine {
                id: u.id.to_string(),
                name: u.name.clone(),
                email: u.email.clone(),
                role: u.role.to_string(),
                since: format::when(u.created_at),
                me: u.id == web.auth.user.id.as_uuid(),
                disabled: u.disabled,
            })
            .collect(),
        roles: Role::ALL
            .iter()
            .filter(|r| may_owners || **r != Role::Owner)
            .map(|r| r.as_str())
            .collect(),
        may_owners,
        error: error.clone(),
    };
    Ok(form_page(&page, error.is_some()))
}

#[derive(Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    role: Role,
    password: Option<String>,
}

pub async fn add_user(
    State(state): State<AppState>,
    Form { web, form, .. }: Form<NewUserForm>,
) -> PageResult {
    let answer = users::create_user(
        State(state.clone()),
        web.caller(),
        Body(CreateUserRequest {
            email: form.email,
            name: form.name,
            role: form.role,
            password: form.password.map(SecretString::new),
        }),
    )
    .await;
    match answer {
        Ok(_) => Ok(see_other("/settings/users?notice=user_added")),
        Err(e) => render_users(&state, &web, None, Some(refused(e)?)).await,
    }
}

#[derive(Deserialize)]
pub struct RoleForm {
    role: Role,
}

pub async fn change_role(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, form, .. }: Form<RoleForm>,
) -> PageResult {
    let answer = users::change_role(
        State(state.clone()),
        web.caller(),
        Path(id),
        Body(RoleRequest { role: form.role }),
    )
    .await;
    match answer {
        Ok(_) => Ok(see_other("/settings/users?notice=role_changed")),
        Err(e) => render_users(&state, &web, None, Some(refused(e)?)).await,
    }
}

/// Disables a user (`/settings/users/{id}/disable`) or enables them again.
pub async fn disable_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, .. }: Form<super::auth::Nothing>,
) -> PageResult {
    let answer = users::disable_user(State(state.clone()), web.caller(), Path(id)).await;
    match answer {
        Ok(_) => Ok(see_other("/settings/users?notice=user_disabled")),
        Err(e) => render_users(&state, &web, None, Some(refused(e)?)).await,
    }
}

pub async fn enable_user(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, .. }: Form<super::auth::Nothing>,
) -> PageResult {
    let answer = users::enable_user(State(state.clone()), web.caller(), Path(id)).await;
    match answer {
        Ok(_) => Ok(see_other("/settings/users?notice=user_enabled")),
        Err(e) => render_users(&state, &web, None, Some(refused(e)?)).await,
    }
}

// ---- API tokens ----

#[derive(Template)]
#[template(path = "settings_tokens.html")]
struct TokensPage {
    chrome: Chrome,
    tokens: Vec<TokenLine>,
    created: Option<(String, String)>,
    error: Option<String>,
    everyone: bool,
}

struct TokenLine {
    id: String,
    name: String,
    owner: String,
    created: String,
    expires: String,
    revoked: bool,
    mine: bool,
}

pub async fn tokens_page(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: NoticeQuery = query(&uri)?;
    render_tokens(&state, &web, notice(q.notice.as_deref(), None), None, None).await
}

async fn render_tokens(
    state: &AppState,
    web: &Web,
    notice_text: Option<String>,
    created: Option<(String, String)>,
    error: Option<String>,
) -> PageResult {
    let Json(page) = tokens::list_tokens(
        State(state.clone()),
        web.caller(),
        Params(tokens::TokensQuery {
            limit: Some("1000".into()),
            after: None,
        }),
    )
    .await?;
    let everyone = web.may(Permission::ManageUsers);
    let names: Vec<(uuid::Uuid, String)> = if everyone {
        state
            .store
            .users(&web.auth.scope, &cloudkeep_store::PageRequest::first(1000))
            .await?
            .items
            .iter()
            .map(|u| (u.id.as_uuid(), u.email.clone()))
            .collect()
    } else {
        Vec::new()
    };
    let me = web.auth.user.id.as_uuid();
    let chrome = Chrome::new(web, "API tokens", Section::Settings).with_notice(notice_text);
    let page = TokensPage {
        chrome,
        tokens: page
            .items
            .iter()
            .map(|t| TokenLine {
                id: t.id.to_string(),
                name: t.name.clone(),
                owner: names
                    .iter()
                    .find(|(id, _)| *id == t.user_id)
                    .map(|(_, e)| e.clone())
                    .unwrap_or_else(|| "you".into()),
                created: format::when(t.created_at),
                expires: t
                    .expires_at
                    .map(format::when)
                    .unwrap_or_else(|| "never".into()),
                revoked: t.revoked_at.is_some(),
                mine: t.user_id == me,
            })
            .collect(),
        created,
        error: error.clone(),
        everyone,
    };
    Ok(form_page(&page, error.is_some()))
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
    expires_in_days: Option<u32>,
}

pub async fn create_token(
    State(state): State<AppState>,
    Form { web, form, .. }: Form<TokenForm>,
) -> PageResult {
    let answer = tokens::create_token(
        State(state.clone()),
        web.caller(),
        Body(CreateTokenRequest {
            name: form.name,
            expires_in_days: form.expires_in_days,
        }),
    )
    .await;
    match answer {
        // The secret is shown on this answer only: no redirect, which would lose it.
        Ok((_, Json(created))) => {
            render_tokens(
                &state,
                &web,
                None,
                Some((created.token.name, created.secret)),
                None,
            )
            .await
        }
        Err(e) => render_tokens(&state, &web, None, None, Some(refused(e)?)).await,
    }
}

#[derive(Deserialize)]
pub struct Nothing {}

pub async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, .. }: Form<Nothing>,
) -> PageResult {
    match tokens::revoke_token(State(state.clone()), web.caller(), Path(id)).await {
        Ok(_) => Ok(see_other("/settings/tokens?notice=token_revoked")),
        Err(e) => render_tokens(&state, &web, None, None, Some(refused(e)?)).await,
    }
}

// ---- webhooks ----

#[derive(Template)]
#[template(path = "settings_webhooks.html")]
struct WebhooksPage {
    chrome: Chrome,
    hooks: Vec<HookLine>,
    created: Option<(String, String)>,
    error: Option<String>,
}

struct HookLine {
    id: String,
    name: String,
    url: String,
    enabled: bool,
    by: String,
    deliveries: Vec<(String, String, String, String)>,
}

pub async fn webhooks_page(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: NoticeQuery = query(&uri)?;
    render_webhooks(&state, &web, notice(q.notice.as_deref(), None), None, None).await
}

async fn render_webhooks(
    state: &AppState,
    web: &Web,
    notice_text: Option<String>,
    created: Option<(String, String)>,
    error: Option<String>,
) -> PageResult {
    let Json(page) = webhooks::list_webhooks(
        State(state.clone()),
        web.caller(),
        Params(webhooks::PageQuery {
            limit: Some("100".into()),
            after: None,
        }),
    )
    .await?;
    let now = state.store.now();
    let mut hooks = Vec::with_capacity(page.items.len());
    for w in &page.items {
        let Json(deliveries) = webhooks::list_deliveries(
            State(state.clone()),
            web.caller(),
            Path(w.id.to_string()),
            Params(webhooks::PageQuery {
                limit: Some("5".into()),
                after: None,
            }),
        )
        .await?;
        hooks.push(HookLine {
            id: w.id.to_string(),
            name: w.name.clone(),
            url: w.url.clone(),
            enabled: w.enabled,
            by: w.created_by.clone(),
            deliveries: deliveries
                .items
                .iter()
                .map(|d| {
                    (
                        d.event.clone(),
                        d.state.to_string(),
                        format!(
                            "{} attempt{}{}",
                            d.attempts,
                            if d.attempts == 1 { "" } else { "s" },
                            d.last_status
                                .map(|s| format!(", last answer {s}"))
                                .unwrap_or_default()
                        ),
                        format::ago(d.created_at, now),
                    )
                })
                .collect(),
        });
    }
    let chrome = Chrome::new(web, "Webhooks", Section::Settings).with_notice(notice_text);
    let page = WebhooksPage {
        chrome,
        hooks,
        created,
        error: error.clone(),
    };
    Ok(form_page(&page, error.is_some()))
}

#[derive(Deserialize)]
pub struct WebhookForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: String,
}

pub async fn create_webhook(
    State(state): State<AppState>,
    Form { web, form, .. }: Form<WebhookForm>,
) -> PageResult {
    let answer = webhooks::create_webhook(
        State(state.clone()),
        web.caller(),
        Body(CreateWebhookRequest {
            name: form.name,
            url: form.url,
        }),
    )
    .await;
    match answer {
        Ok((_, Json(created))) => {
            render_webhooks(
                &state,
                &web,
                None,
                Some((created.webhook.name, created.secret)),
                None,
            )
            .await
        }
        Err(e) => render_webhooks(&state, &web, None, None, Some(refused(e)?)).await,
    }
}

pub async fn test_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, .. }: Form<Nothing>,
) -> PageResult {
    match webhooks::test_webhook(State(state.clone()), web.caller(), Path(id)).await {
        Ok(_) => Ok(see_other("/settings/webhooks?notice=webhook_tested")),
        Err(e) => render_webhooks(&state, &web, None, None, Some(refused(e)?)).await,
    }
}

pub async fn delete_webhook(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, .. }: Form<Nothing>,
) -> PageResult {
    match webhooks::delete_webhook(State(state.clone()), web.caller(), Path(id)).await {
        Ok(_) => Ok(see_other("/settings/webhooks?notice=webhook_deleted")),
        Err(e) => render_webhooks(&state, &web, None, None, Some(refused(e)?)).await,
    }
}

// ---- evidence settings and the control mapping ----

#[derive(Template)]
#[template(path = "settings_evidence.html")]
struct EvidencePage {
    chrome: Chrome,
    threshold: String,
    threshold_note: String,
    controls: Vec<MappingLine>,
    may_change: bool,
    error: Option<String>,
}

struct MappingLine {
    id: String,
    title: String,
    checks: Vec<(String, String)>,
    addable: Vec<String>,
}

pub async fn evidence_page(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: NoticeQuery = query(&uri)?;
    render_evidence(&state, &web, notice(q.notice.as_deref(), None), None).await
}

async fn render_evidence(
    state: &AppState,
    web: &Web,
    notice_text: Option<String>,
    error: Option<String>,
) -> PageResult {
    let Json(settings) = controls::get_settings(State(state.clone()), web.caller()).await?;
    let Json(mapping) = controls::get_mapping(State(state.clone()), web.caller()).await?;
    let chrome = Chrome::new(web, "Evidence settings", Section::Settings).with_notice(notice_text);
    let page = EvidencePage {
        chrome,
        threshold: format!("{}", (settings.secure_score_threshold * 100.0).round()),
        threshold_note: match (&settings.updated_at, &settings.updated_by) {
            (Some(t), Some(by)) => format!("set by {by} at {}", format::when(*t)),
            _ => "the default".into(),
        },
        controls: mapping
            .controls
            .iter()
            .map(|c| MappingLine {
                id: c.control.to_string(),
                title: c.title.clone(),
                checks: c
                    .checks
                    .iter()
                    .map(|k| (k.check.to_string(), k.source.clone()))
                    .collect(),
                addable: CheckId::ALL
                    .iter()
                    .filter(|k| !c.checks.iter().any(|m| m.check == **k))
                    .map(|k| k.to_string())
                    .collect(),
            })
            .collect(),
        may_change: web.may(Permission::ManageControls),
        error: error.clone(),
    };
    Ok(form_page(&page, error.is_some()))
}

#[derive(Deserialize)]
pub struct ThresholdForm {
    /// Percent, 0 to 100.
    threshold: Option<f64>,
}

pub async fn set_threshold(
    State(state): State<AppState>,
    Form { web, form, .. }: Form<ThresholdForm>,
) -> PageResult {
    let Some(percent) = form.threshold else {
        return render_evidence(
            &state,
            &web,
            None,
            Some("Give the threshold as a percentage from 0 to 100.".into()),
        )
        .await;
    };
    let answer = controls::change_settings(
        State(state.clone()),
        web.caller(),
        Body(EvidenceSettingsChange {
            secure_score_threshold: percent / 100.0,
        }),
    )
    .await;
    match answer {
        Ok(_) => Ok(see_other("/settings/evidence?notice=updated")),
        Err(e) => render_evidence(&state, &web, None, Some(refused(e)?)).await,
    }
}

#[derive(Deserialize)]
pub struct MappingForm {
    control: ControlId,
    add: Option<CheckId>,
    remove: Option<CheckId>,
}

pub async fn change_mapping(
    State(state): State<AppState>,
    Form { web, form, .. }: Form<MappingForm>,
) -> PageResult {
    let answer = controls::change_mapping(
        State(state.clone()),
        web.caller(),
        Body(MappingChange {
            control: form.control,
            add: form.add.into_iter().collect(),
            remove: form.remove.into_iter().collect(),
        }),
    )
    .await;
    match answer {
        Ok(_) => Ok(see_other("/settings/evidence?notice=mapping_changed")),
        Err(e) => render_evidence(&state, &web, None, Some(refused(e)?)).await,
    }
}

// ---- tag aliases ----

#[derive(Template)]
#[template(path = "settings_aliases.html")]
struct AliasesPage {
    chrome: Chrome,
    /// Alias, then the key it stands for.
    aliases: Vec<(String, String)>,
    /// Keys the organisation's resources carry, offered as the key.
    known_keys: Vec<String>,
    may_change: bool,
    form: AliasForm,
    error: Option<String>,
}

/// The add form as typed.
#[derive(Debug, Default, Deserialize)]
pub struct AliasForm {
    #[serde(default)]
    alias: String,
    #[serde(default)]
    key: String,
}

pub async fn aliases_page(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: NoticeQuery = query(&uri)?;
    render_aliases(
        &state,
        &web,
        notice(q.notice.as_deref(), None),
        AliasForm::default(),
        None,
    )
    .await
}

async fn render_aliases(
    state: &AppState,
    web: &Web,
    notice_text: Option<String>,
    form: AliasForm,
    error: Option<String>,
) -> PageResult {
    let Json(TagAliases { aliases }) =
        spend::get_tag_aliases(State(state.clone()), web.caller()).await?;
    let known_keys = state
        .store
        .tag_coverage(&web.auth.scope, 100)
        .await?
        .keys
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let chrome = Chrome::new(web, "Tag aliases", Section::Settings).with_notice(notice_text);
    let page = AliasesPage {
        chrome,
        aliases: aliases.into_iter().collect(),
        known_keys,
        may_change: web.may(Permission::ManageConnections),
        form,
        error: error.clone(),
    };
    Ok(form_page(&page, error.is_some()))
}

/// Adds an alias through the API's one-alias route, which checks it and
/// leaves the other aliases alone.
pub async fn add_alias(
    State(state): State<AppState>,
    Form { web, form, .. }: Form<AliasForm>,
) -> PageResult {
    let answer = spend::put_tag_alias(
        State(state.clone()),
        web.caller(),
        Path(form.alias.clone()),
        Body(TagAliasKey {
            key: form.key.clone(),
        }),
    )
    .await;
    match answer {
        Ok(_) => Ok(see_other("/settings/tag-aliases?notice=alias_added")),
        Err(e) => render_aliases(&state, &web, None, form, Some(refused(e)?)).await,
    }
}

#[derive(Deserialize)]
pub struct RemoveAliasForm {
    #[serde(default)]
    alias: String,
}

pub async fn remove_alias(
    State(state): State<AppState>,
    Form { web, form, .. }: Form<RemoveAliasForm>,
) -> PageResult {
    spend::delete_tag_alias(State(state.clone()), web.caller(), Path(form.alias)).await?;
    Ok(see_other("/settings/tag-aliases?notice=alias_removed"))
}

// ---- retention ----

#[derive(Template)]
#[template(path = "settings_retention.html")]
struct RetentionPage {
    chrome: Chrome,
    days: String,
    note: String,
    /// The form's value: as typed after a refusal, else the window.
    typed: String,
    may_change: bool,
    error: Option<String>,
}

pub async fn retention_page(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: NoticeQuery = query(&uri)?;
    render_retention(&state, &web, notice(q.notice.as_deref(), None), None, None).await
}

async fn render_retention(
    state: &AppState,
    web: &Web,
    notice_text: Option<String>,
    typed: Option<String>,
    error: Option<String>,
) -> PageResult {
    let Json(r) = assessments::get_retention(State(state.clone()), web.caller()).await?;
    let chrome = Chrome::new(web, "Retention", Section::Settings).with_notice(notice_text);
    let page = RetentionPage {
        chrome,
        days: format::count(r.days.max(0) as u64),
        note: match (&r.updated_at, &r.updated_by) {
            (Some(t), Some(by)) => format!("set by {by} at {}", format::when(*t)),
            _ => "the default".into(),
        },
        typed: typed.unwrap_or_else(|| r.days.to_string()),
        may_change: web.may(Permission::GrantAuditAccess),
        error: error.clone(),
    };
    Ok(form_page(&page, error.is_some()))
}

#[derive(Deserialize)]
pub struct RetentionForm {
    #[serde(default)]
    days: String,
}

pub async fn set_retention(
    State(state): State<AppState>,
    Form { web, form, .. }: Form<RetentionForm>,
) -> PageResult {
    if !web.may(Permission::GrantAuditAccess) {
        return Err(ApiError::forbidden("changing the retention window").into());
    }
    let cleaned: String = form.days.trim().chars().filter(|c| *c != ',').collect();
    let Ok(days) = cleaned.parse::<i64>() else {
        let error = format!("'{}' is not a whole number of days.", form.days.trim());
        return render_retention(&state, &web, None, Some(form.days), Some(error)).await;
    };
    match assessments::change_retention(
        State(state.clone()),
        web.caller(),
        Body(RetentionChange { days }),
    )
    .await
    {
        Ok(_) => Ok(see_other("/settings/retention?notice=retention_saved")),
        Err(e) => {
            let error = refused(e)?;
            render_retention(&state, &web, None, Some(form.days), Some(error)).await
        }
    }
}
