//! Tag edits: what is pending write-back, what conflicted and how to
//! resolve it (keep mine, or take Azure's value).

use askama::Template;
use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use cloudkeep_domain::{Permission, Resolution, TagEditState};
use cloudkeep_server::api::tag_edits as api;
use cloudkeep_server::wire::ResolveRequest;
use cloudkeep_server::{AppState, Body, Params};
use serde::Deserialize;

use super::resources::describe_edit;
use crate::format;
use crate::page::{Chrome, PageResult, Problem, Section, html, notice, see_other};
use crate::session::{Form, Web, query, query_with};

#[derive(Deserialize)]
pub struct EditsQuery {
    state: Option<TagEditState>,
    after: Option<String>,
    notice: Option<String>,
    n: Option<u64>,
}

#[derive(Template)]
#[template(path = "tag_edits.html")]
struct EditsPage {
    chrome: Chrome,
    states: Vec<(String, String, bool)>,
    edits: Vec<Line>,
    next: Option<String>,
    may_edit: bool,
}

struct Line {
    id: String,
    resource_id: String,
    resource: String,
    change: String,
    state: String,
    reason: String,
    author: String,
    when: String,
    /// For a conflict: the base, and Azure's values now, of the keys it changes.
    conflict: Option<Vec<(String, String, String, String)>>,
}

const STATES: [(Option<TagEditState>, &str); 5] = [
    (None, "All"),
    (Some(TagEditState::Pending), "Pending write-back"),
    (Some(TagEditState::Conflict), "Conflicts"),
    (Some(TagEditState::Local), "Kept in cloudkeep"),
    (Some(TagEditState::Applied), "Applied"),
];

pub async fn list(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: EditsQuery = query(&uri)?;
    let Json(page) = api::list_tag_edits(
        State(state.clone()),
        web.caller(),
        Params(api::TagEditsQuery {
            state: q.state,
            resource: None,
            subscription: None,
            limit: Some("50".into()),
            after: q.after.clone(),
        }),
    )
    .await?;
    let mut edits = Vec::with_capacity(page.items.len());
    for e in &page.items {
        // The resource as it is now: its name, and for a conflict Azure's
        // current values.
        let current = state
            .store
            .resource(&web.auth.scope, e.resource_id)
            .await
            .ok()
            .map(|(r, _)| r);
        let conflict = (e.state == TagEditState::Conflict).then(|| {
            let theirs = current
                .as_ref()
                .and_then(|r| r.tags.clone())
                .unwrap_or_default();
            e.set
                .keys()
                .chain(e.remove.iter())
                .map(|k| {
                    let mine = e.set.get(k).cloned().unwrap_or_else(|| "(removed)".into());
                    (
                        k.clone(),
                        e.base.get(k).cloned().unwrap_or_else(|| "(none)".into()),
                        mine,
                        theirs.get(k).cloned().unwrap_or_else(|| "(none)".into()),
                    )
                })
                .collect()
        });
        edits.push(Line {
            id: e.id.to_string(),
            resource_id: e.resource_id.to_string(),
            resource: current
                .map(|r| r.name)
                .unwrap_or_else(|| e.resource_id.to_string()),
            change: describe_edit(&e.set, &e.remove),
            state: e.state.to_string(),
            reason: e.reason.clone().unwrap_or_default(),
            author: e.author.clone(),
            when: format::when(e.updated_at),
            conflict,
        });
    }
    let chrome = Chrome::new(&web, "Tag edits", Section::TagEdits)
        .with_notice(notice(q.notice.as_deref(), q.n));
    Ok(html(&EditsPage {
        chrome,
        states: STATES
            .iter()
            .map(|(s, label)| {
                let href = match s {
                    Some(s) => format!("/tag-edits?state={s}"),
                    None => "/tag-edits".into(),
                };
                (href, label.to_string(), *s == q.state)
            })
            .collect(),
        edits,
        next: page.next.map(|n| {
            format!(
                "/tag-edits?{}",
                query_with(&uri, &["after", "notice", "n"], &[("after", &n)])
            )
        }),
        may_edit: web.may(Permission::EditTags),
    }))
}

#[derive(Deserialize)]
pub struct ResolveForm {
    resolution: Resolution,
}

pub async fn resolve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, form, .. }: Form<ResolveForm>,
) -> PageResult {
    let Json(_) = api::resolve_tag_edit(
        State(state),
        web.caller(),
        Path(id),
        Body(ResolveRequest {
            resolution: form.resolution,
        }),
    )
    .await
    .map_err(Problem::from)?;
    let key = match form.resolution {
        Resolution::KeepMine => "resolved_mine",
        Resolution::TakeTheirs => "resolved_theirs",
    };
    Ok(see_other(&format!(
        "/tag-edits?state=conflict&notice={key}"
    )))
}
