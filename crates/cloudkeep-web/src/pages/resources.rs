//! Resources and their tags: search and filters, a resource's tags with
//! inline edits and history, bulk edits by filter with a preview.

use askama::Template;
use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use cloudkeep_domain::{Permission, TagEditState};
use cloudkeep_server::api::{resources as api, tag_edits};
use cloudkeep_server::wire::{ResourceView, TagEditFilter, TagEditRequest, TagEditView};
use cloudkeep_server::{AppState, Body, Params};
use cloudkeep_store::Tags;
use serde::Deserialize;
use uuid::Uuid;

use crate::format;
use crate::page::{
    Chrome, PageResult, Problem, Section, form_page, html, html_with, is_refusal, notice, see_other,
};
use crate::session::{Form, Web, all_of, query, query_with};

/// The filters of the list, as the page's query names them (the API's).
#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    subscription: Option<String>,
    resource_group: Option<String>,
    #[serde(rename = "type")]
    resource_type: Option<String>,
    location: Option<String>,
    name: Option<String>,
    has_tag: Option<String>,
    tag: Option<String>,
    missing_tag: Option<String>,
    include_deleted: Option<bool>,
    after: Option<String>,
    notice: Option<String>,
    n: Option<u64>,
}

impl Filters {
    fn api(&self) -> api::ResourcesQuery {
        api::ResourcesQuery {
            subscription: self.subscription.clone(),
            connection: None,
            resource_group: self.resource_group.clone(),
            resource_type: self.resource_type.clone(),
            location: self.location.clone(),
            name: self.name.clone(),
            has_tag: self.has_tag.clone(),
            tag: self.tag.clone(),
            missing_tag: self.missing_tag.clone(),
            include_deleted: self.include_deleted,
            limit: Some("50".into()),
            after: self.after.clone(),
        }
    }

    fn edit_filter(&self) -> TagEditFilter {
        TagEditFilter {
            subscription: self.subscription.clone(),
            resource_group: self.resource_group.clone(),
            resource_type: self.resource_type.clone(),
            location: self.location.clone(),
            name: self.name.clone(),
            has_tag: self.has_tag.clone(),
            tag: self.tag.clone(),
            missing_tag: self.missing_tag.clone(),
        }
    }

    fn any(&self) -> bool {
        [
            &self.subscription,
            &self.resource_group,
            &self.resource_type,
            &self.location,
            &self.name,
            &self.has_tag,
            &self.tag,
            &self.missing_tag,
        ]
        .iter()
        .any(|f| f.is_some())
    }
}

pub struct Row {
    pub id: String,
    pub name: String,
    pub resource_type: String,
    pub resource_group: String,
    pub location: String,
    pub subscription: String,
    pub tags: Option<Vec<(String, String)>>,
    pub deleted: bool,
}

fn row(r: &ResourceView, subscriptions: &[(Uuid, String)]) -> Row {
    Row {
        id: r.id.to_string(),
        name: r.name.clone(),
        resource_type: r.resource_type.clone(),
        resource_group: r.resource_group.clone(),
        location: r.location.clone(),
        subscription: subscription_name(subscriptions, r.subscription_id),
        tags: r
            .tags
            .as_ref()
            .map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        deleted: r.deleted_at.is_some(),
    }
}

fn subscription_name(subscriptions: &[(Uuid, String)], id: Uuid) -> String {
    subscriptions
        .iter()
        .find(|(s, _)| *s == id)
        .map(|(_, n)| n.clone())
        .unwrap_or_else(|| id.to_string())
}

async fn subscription_names(state: &AppState, web: &Web) -> Result<Vec<(Uuid, String)>, Problem> {
    Ok(state
        .store
        .subscriptions(&web.auth.scope)
        .await?
        .iter()
        .filter(|s| s.detached_at.is_none())
        .map(|s| (s.id.as_uuid(), s.display_name.clone()))
        .collect())
}

#[derive(Template)]
#[template(path = "resources.html")]
struct ResourcesPage {
    chrome: Chrome,
    results: Results,
    subscriptions: Vec<(String, String)>,
    f: FilterValues,
    bulk_link: Option<String>,
}

/// The result table, also answered alone to htmx (the filters update it in
/// place).
#[derive(Template)]
#[template(path = "resources_results.html")]
struct Results {
    rows: Vec<Row>,
    next: Option<String>,
    error: Option<String>,
}

/// The filter form's current values (strings, as inputs show them).
#[derive(Default)]
struct FilterValues {
    subscription: String,
    resource_group: String,
    resource_type: String,
    location: String,
    name: String,
    has_tag: String,
    tag: String,
    missing_tag: String,
    include_deleted: bool,
}

impl From<&Filters> for FilterValues {
    fn from(f: &Filters) -> Self {
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        FilterValues {
            subscription: s(&f.subscription),
            resource_group: s(&f.resource_group),
            resource_type: s(&f.resource_type),
            location: s(&f.location),
            name: s(&f.name),
            has_tag: s(&f.has_tag),
            tag: s(&f.tag),
            missing_tag: s(&f.missing_tag),
            include_deleted: f.include_deleted.unwrap_or(false),
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let f: Filters = query(&uri)?;
    let subscriptions = subscription_names(&state, &web).await?;
    let answer = api::list_resources(State(state.clone()), web.caller(), Params(f.api())).await;
    let (results, status) = match answer {
        Ok(Json(page)) => (
            Results {
                rows: page.items.iter().map(|r| row(r, &subscriptions)).collect(),
                next: page.next.map(|n| {
                    format!(
                        "/resources?{}",
                        query_with(&uri, &["after", "notice", "n"], &[("after", &n)])
                    )
                }),
                error: None,
            },
            StatusCode::OK,
        ),
        // A filter the API refuses is said beside the form, which keeps
        // what was typed.
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => (
            Results {
                rows: Vec::new(),
                next: None,
                error: Some(e.message),
            },
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        Err(e) => return Err(e.into()),
    };
    if web.htmx {
        return Ok(html_with(status, &results));
    }
    let chrome = Chrome::new(&web, "Resources & tags", Section::Resources)
        .with_notice(notice(f.notice.as_deref(), f.n));
    let bulk_link = (web.may(Permission::EditTags) && f.any()).then(|| {
        format!(
            "/resources/bulk?{}",
            query_with(&uri, &["after", "notice", "n", "include_deleted"], &[])
        )
    });
    Ok(html_with(
        status,
        &ResourcesPage {
            chrome,
            results,
            subscriptions: subscriptions
                .into_iter()
                .map(|(id, n)| (id.to_string(), n))
                .collect(),
            f: FilterValues::from(&f),
            bulk_link,
        },
    ))
}

#[derive(Template)]
#[template(path = "resource.html")]
struct ResourcePage {
    chrome: Chrome,
    r: Row,
    azure_id: String,
    first_seen: String,
    last_seen: String,
    level: String,
    tags_read: bool,
    may_edit: bool,
    edits: Vec<EditLine>,
    history: Vec<HistoryLine>,
    error: Option<String>,
}

pub struct EditLine {
    pub id: String,
    pub change: String,
    pub state: String,
    pub reason: String,
    pub author: String,
    pub when: String,
}

pub fn edit_line(e: &TagEditView) -> EditLine {
    EditLine {
        id: e.id.to_string(),
        change: describe_edit(&e.set, &e.remove),
        state: e.state.to_string(),
        reason: e.reason.clone().unwrap_or_default(),
        author: e.author.clone(),
        when: format::when(e.updated_at),
    }
}

/// `env=prod, owner=ana; remove: temp`
pub fn describe_edit(set: &Tags, remove: &[String]) -> String {
    let mut parts: Vec<String> = set.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if !remove.is_empty() {
        parts.push(format!("remove {}", remove.join(", ")));
    }
    parts.join("; ")
}

struct HistoryLine {
    when: String,
    changes: Vec<(String, String, String)>,
}

#[derive(Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
    n: Option<u64>,
}

pub async fn detail(
    State(state): State<AppState>,
    web: Web,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: NoticeQuery = query(&uri)?;
    resource_page(&state, &web, &id, notice(q.notice.as_deref(), q.n), None).await
}

async fn resource_page(
    state: &AppState,
    web: &Web,
    id: &str,
    notice_text: Option<String>,
    error: Option<String>,
) -> PageResult {
    let Json(detail) =
        api::get_resource(State(state.clone()), web.caller(), Path(id.to_string())).await?;
    let subscriptions = subscription_names(state, web).await?;
    let r = &detail.resource;
    let level = state
        .store
        .subscriptions(&web.auth.scope)
        .await?
        .iter()
        .find(|s| s.id.as_uuid() == r.subscription_id)
        .map(|s| s.sync_level.to_string())
        .unwrap_or_default();
    let Json(edits) = tag_edits::list_tag_edits(
        State(state.clone()),
        web.caller(),
        Params(tag_edits::TagEditsQuery {
            state: None,
            resource: Some(r.id.to_string()),
            subscription: None,
            limit: Some("20".into()),
            after: None,
        }),
    )
    .await?;
    let history = detail
        .tag_history
        .iter()
        .rev()
        .map(|h| {
            let keys: std::collections::BTreeSet<&String> =
                h.old.keys().chain(h.new.keys()).collect();
            HistoryLine {
                when: format::when(h.observed_at),
                changes: keys
                    .into_iter()
                    .filter(|k| h.old.get(*k) != h.new.get(*k))
                    .map(|k| {
                        (
                            k.clone(),
                            h.old.get(k).cloned().unwrap_or_default(),
                            h.new.get(k).cloned().unwrap_or_default(),
                        )
                    })
                    .collect(),
            }
        })
        .collect();
    let chrome = Chrome::new(web, r.name.clone(), Section::Resources).with_notice(notice_text);
    let page = ResourcePage {
        chrome,
        r: row(r, &subscriptions),
        azure_id: r.azure_id.clone(),
        first_seen: format::when(r.first_seen),
        last_seen: format::when(r.last_seen),
        level: format::words(&level),
        tags_read: r.tags.is_some(),
        may_edit: web.may(Permission::EditTags) && r.deleted_at.is_none(),
        edits: edits.items.iter().map(edit_line).collect(),
        history,
        error: error.clone(),
    };
    Ok(form_page(&page, error.is_some()))
}

#[derive(Deserialize)]
pub struct TagForm {
    key: Option<String>,
    value: Option<String>,
    /// `set` or `remove`.
    action: Option<String>,
}

/// One tag set or removed on one resource, from its page.
pub async fn edit_tag(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, form, .. }: Form<TagForm>,
) -> PageResult {
    let Ok(resource_id) = id.parse::<Uuid>() else {
        return Err(Problem::not_found());
    };
    let key = form.key.unwrap_or_default().trim().to_string();
    let mut set = Tags::new();
    let mut remove = Vec::new();
    match form.action.as_deref() {
        Some("remove") => remove.push(key),
        _ => {
            set.insert(key, form.value.unwrap_or_default());
        }
    }
    let answer = tag_edits::create_tag_edits(
        State(state.clone()),
        web.caller(),
        Body(TagEditRequest {
            resource_id: Some(resource_id),
            filter: None,
            set,
            remove,
        }),
    )
    .await;
    match answer {
        Ok((_, Json(created))) => {
            let local = created.edits.iter().any(|e| e.state == TagEditState::Local);
            let key = if local { "tag_local" } else { "tag_pending" };
            Ok(see_other(&format!("/resources/{id}?notice={key}")))
        }
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            resource_page(&state, &web, &id, None, Some(e.message)).await
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "bulk.html")]
struct BulkPage {
    chrome: Chrome,
    filters: Vec<(String, String)>,
    described: String,
    matching: String,
    error: Option<String>,
}

/// The bulk edit's form: the filter it applies to (carried as hidden
/// fields), tags to set, keys to remove.
pub async fn bulk_form(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    if !web.may(Permission::EditTags) {
        return Err(Problem::from(cloudkeep_server::ApiError::forbidden(
            "editing tags",
        )));
    }
    let f: Filters = query(&uri)?;
    bulk_page(&state, &web, &f, None).await
}

async fn bulk_page(state: &AppState, web: &Web, f: &Filters, error: Option<String>) -> PageResult {
    let matching = state
        .store
        .resource_count(
            &web.auth.scope,
            &cloudkeep_server::api::resources::edit_filter(&f.edit_filter())?,
        )
        .await
        .map(format::count)
        .unwrap_or_else(|_| "—".into());
    let filters = filter_pairs(f);
    let described = filters
        .iter()
        .map(|(k, v)| format!("{} {v}", format::words(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let chrome = Chrome::new(web, "Edit tags in bulk", Section::Resources);
    let page = BulkPage {
        chrome,
        filters,
        described,
        matching,
        error: error.clone(),
    };
    Ok(form_page(&page, error.is_some()))
}

fn filter_pairs(f: &Filters) -> Vec<(String, String)> {
    [
        ("subscription", &f.subscription),
        ("resource_group", &f.resource_group),
        ("type", &f.resource_type),
        ("location", &f.location),
        ("name", &f.name),
        ("has_tag", &f.has_tag),
        ("tag", &f.tag),
        ("missing_tag", &f.missing_tag),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
    .collect()
}

/// The request a bulk form makes: its filter, and the tags from its rows
/// (`set_key`/`set_value` pairs) and its comma-separated removals.
fn bulk_request(fields: &[(String, String)]) -> Result<(Filters, TagEditRequest), String> {
    let f: Filters = crate::session::parse_form(fields)?;
    let keys = all_of_raw(fields, "set_key");
    let values = all_of_raw(fields, "set_value");
    let mut set = Tags::new();
    for (k, v) in keys.iter().zip(values.iter()) {
        if !k.trim().is_empty() {
            set.insert(k.trim().to_string(), v.clone());
        }
    }
    let remove = all_of(fields, "remove")
        .iter()
        .flat_map(|r| r.split(',').map(|k| k.trim().to_string()))
        .filter(|k| !k.is_empty())
        .collect();
    let request = TagEditRequest {
        resource_id: None,
        filter: Some(f.edit_filter()),
        set,
        remove,
    };
    Ok((f, request))
}

/// Every value of a repeated field, empty ones too (pairs stay aligned).
fn all_of_raw(fields: &[(String, String)], name: &str) -> Vec<String> {
    fields
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}

#[derive(Template)]
#[template(path = "bulk_preview.html")]
struct BulkPreview {
    changes: Vec<Change>,
    shown: usize,
    truncated: bool,
    total: String,
    skipped: Vec<(String, String)>,
    error: Option<String>,
}

struct Change {
    id: String,
    name: String,
    state: String,
    diff: Vec<(String, String, String)>,
}

/// What the bulk edit would do, answered to htmx in place.
pub async fn bulk_preview(
    State(state): State<AppState>,
    Form { web, fields, .. }: Form<Nothing>,
) -> PageResult {
    let (_, request) = bulk_request(&fields).map_err(|e| Problem::bad_request(&e))?;
    let answer =
        tag_edits::preview_tag_edits(State(state.clone()), web.caller(), Body(request)).await;
    let page = match answer {
        Ok(Json(preview)) => {
            const SHOWN: usize = 100;
            BulkPreview {
                total: format::count(preview.changes.len() as u64),
                shown: preview.changes.len().min(SHOWN),
                truncated: preview.changes.len() > SHOWN,
                changes: preview
                    .changes
                    .iter()
                    .take(SHOWN)
                    .map(|c| {
                        let keys: std::collections::BTreeSet<&String> =
                            c.before.keys().chain(c.after.keys()).collect();
                        Change {
                            id: c.resource_id.to_string(),
                            name: c.name.clone(),
                            state: c.state.to_string(),
                            diff: keys
                                .into_iter()
                                .filter(|k| c.before.get(*k) != c.after.get(*k))
                                .map(|k| {
                                    (
                                        k.clone(),
                                        c.before.get(k).cloned().unwrap_or_default(),
                                        c.after.get(k).cloned().unwrap_or_default(),
                                    )
                                })
                                .collect(),
                        }
                    })
                    .collect(),
                skipped: preview
                    .skipped
                    .iter()
                    .map(|s| (s.resource_id.to_string(), s.reason.clone()))
                    .collect(),
                error: None,
            }
        }
        Err(e) if is_refusal(&e) => BulkPreview {
            changes: Vec::new(),
            shown: 0,
            truncated: false,
            total: "0".into(),
            skipped: Vec::new(),
            error: Some(e.message),
        },
        Err(e) => return Err(e.into()),
    };
    Ok(html(&page))
}

#[derive(Deserialize)]
pub struct Nothing {}

pub async fn bulk_apply(
    State(state): State<AppState>,
    Form { web, fields, .. }: Form<Nothing>,
) -> PageResult {
    let (f, request) = bulk_request(&fields).map_err(|e| Problem::bad_request(&e))?;
    let answer =
        tag_edits::create_tag_edits(State(state.clone()), web.caller(), Body(request)).await;
    match answer {
        Ok((_, Json(created))) => Ok(see_other(&format!(
            "/tag-edits?notice=edits_created&n={}",
            created.edits.len()
        ))),
        Err(e) if is_refusal(&e) => bulk_page(&state, &web, &f, Some(e.message)).await,
        Err(e) => Err(e.into()),
    }
}
