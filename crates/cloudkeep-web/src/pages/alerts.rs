//! Alerts, and the audit log with its chain's verification.

use askama::Template;
use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use cloudkeep_domain::Permission;
use cloudkeep_domain::evidence::AlertState;
use cloudkeep_server::api::{alerts as api, audit};
use cloudkeep_server::wire::AuditEventView;
use cloudkeep_server::{ApiError, AppState, Params};
use cloudkeep_store::AuditFilter;
use serde::Deserialize;

use crate::format;
use crate::page::{Chrome, PageResult, Section, html, html_with, notice, see_other};
use crate::session::{Form, Web, query, query_with};

#[derive(Deserialize)]
pub struct AlertsFilter {
    state: Option<AlertState>,
    after: Option<String>,
    notice: Option<String>,
}

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    chrome: Chrome,
    states: Vec<(String, String, bool)>,
    alerts: Vec<AlertLine>,
    next: Option<String>,
    may_ack: bool,
}

struct AlertLine {
    id: String,
    title: String,
    kind: String,
    state: String,
    about: (String, String),
    opened: String,
    acknowledged: String,
    resolved: String,
}

/// An alert's scope (`connection:{id}`) as a link.
fn about(scope: &str) -> (String, String) {
    match scope.split_once(':') {
        Some(("connection", id)) => (format!("/connections/{id}"), "the connection".into()),
        // `budget:{id}:{month}:{actual|forecast}:{threshold}`
        Some(("budget", rest)) => {
            let id = rest.split(':').next().unwrap_or(rest);
            (format!("/budgets/{id}"), "the budget".into())
        }
        _ => (String::new(), scope.to_string()),
    }
}

pub async fn alerts(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let f: AlertsFilter = query(&uri)?;
    let Json(page) = api::list_alerts(
        State(state.clone()),
        web.caller(),
        Params(api::AlertsQuery {
            state: f.state,
            kind: None,
            scope: None,
            limit: Some("50".into()),
            after: f.after.clone(),
        }),
    )
    .await?;
    let now = state.store.now();
    let chrome =
        Chrome::new(&web, "Alerts", Section::Alerts).with_notice(notice(f.notice.as_deref(), None));
    let mut states = vec![("/alerts".to_string(), "All".to_string(), f.state.is_none())];
    states.extend(AlertState::ALL.iter().map(|s| {
        (
            format!("/alerts?state={s}"),
            format::words(s.as_str()),
            f.state == Some(*s),
        )
    }));
    Ok(html(&AlertsPage {
        chrome,
        states,
        alerts: page
            .items
            .iter()
            .map(|a| AlertLine {
                id: a.id.to_string(),
                title: a.title.clone(),
                kind: format::words(a.kind.as_str()),
                state: a.state.to_string(),
                about: about(&a.scope),
                opened: format::ago(a.opened_at, now),
                acknowledged: match (&a.acknowledged_at, &a.acknowledged_by) {
                    (Some(t), Some(by)) => format!("by {by}, {}", format::ago(*t, now)),
                    (Some(t), None) => format::ago(*t, now),
                    _ => String::new(),
                },
                resolved: a
                    .resolved_at
                    .map(|t| format::ago(t, now))
                    .unwrap_or_default(),
            })
            .collect(),
        next: page.next.map(|n| {
            format!(
                "/alerts?{}",
                query_with(&uri, &["after", "notice"], &[("after", &n)])
            )
        }),
        may_ack: web.may(Permission::AcknowledgeAlerts),
    }))
}

#[derive(Deserialize)]
pub struct Nothing {}

pub async fn acknowledge(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, .. }: Form<Nothing>,
) -> PageResult {
    let Json(_) = api::acknowledge_alert(State(state), web.caller(), Path(id)).await?;
    Ok(see_other("/alerts?notice=acknowledged"))
}

#[derive(Default, Deserialize)]
pub struct AuditForm {
    action: Option<String>,
    actor: Option<String>,
    target: Option<String>,
    /// A day (the form's date inputs), from its start.
    since: Option<NaiveDate>,
    /// A day, to its end.
    until: Option<NaiveDate>,
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    chrome: Chrome,
    f: AuditValues,
    events: Vec<EventLine>,
    next: Option<String>,
    export: String,
    error: Option<String>,
}

#[derive(Default)]
struct AuditValues {
    action: String,
    actor: String,
    target: String,
    since: String,
    until: String,
}

struct EventLine {
    seq: i64,
    at: String,
    actor: String,
    action: String,
    target: String,
    details: String,
}

fn event_line(e: &AuditEventView) -> EventLine {
    EventLine {
        seq: e.seq,
        at: format::when(e.at),
        actor: e.actor.clone(),
        action: e.action.clone(),
        target: e.target.clone(),
        details: if e.details.as_object().is_some_and(|o| o.is_empty()) {
            String::new()
        } else {
            e.details.to_string()
        },
    }
}

fn day_start(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

fn day_end(d: NaiveDate) -> DateTime<Utc> {
    d.and_hms_milli_opt(23, 59, 59, 999)
        .unwrap_or_default()
        .and_utc()
}

pub async fn audit_log(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    if !web.may(Permission::ReadAudit) {
        return Err(ApiError::forbidden("reading the audit log").into());
    }
    let f: AuditForm = query(&uri)?;
    let values = AuditValues {
        action: f.action.clone().unwrap_or_default(),
        actor: f.actor.clone().unwrap_or_default(),
        target: f.target.clone().unwrap_or_default(),
        since: f.since.map(|d| d.to_string()).unwrap_or_default(),
        until: f.until.map(|d| d.to_string()).unwrap_or_default(),
    };
    let filter = AuditFilter {
        action: f.action.clone(),
        actor: f.actor.clone(),
        target: f.target.clone(),
        since: f.since.map(day_start),
        until: f.until.map(day_end),
    };
    // The API's handler streams its answer; the page reads the store as the
    // handler does, through the same filter and page types.
    let page = cloudkeep_server::page_request(Some("50"), f.after.as_deref())?;
    let (events, next, error) = if f.since.is_some() && f.until.is_some() && f.since > f.until {
        (
            Vec::new(),
            None,
            Some(
                "The period ends before it starts: choose a 'to' day on or after the 'from' day."
                    .to_string(),
            ),
        )
    } else {
        let found = state
            .store
            .audit_events(&web.auth.scope, &filter, &page)
            .await?;
        let views: Vec<AuditEventView> = found.items.iter().map(AuditEventView::from).collect();
        (
            views.iter().map(event_line).collect(),
            found.next.map(|n| {
                format!(
                    "/audit?{}",
                    query_with(&uri, &["after"], &[("after", n.as_str())])
                )
            }),
            None,
        )
    };
    let export = format!(
        "/api/v1/audit?{}",
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(
                [
                    ("action", f.action.clone()),
                    ("actor", f.actor.clone()),
                    ("target", f.target.clone()),
                    ("since", f.since.map(|d| day_start(d).to_rfc3339())),
                    ("until", f.until.map(|d| day_end(d).to_rfc3339())),
                    ("format", Some("jsonl".into())),
                ]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v))),
            )
            .finish()
    );
    let chrome = Chrome::new(&web, "Audit log", Section::Audit);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(html_with(
        status,
        &AuditPage {
            chrome,
            f: values,
            events,
            next,
            export,
            error,
        },
    ))
}

#[derive(Template)]
#[template(path = "audit_verify.html")]
struct VerifyPart {
    intact: bool,
    events: String,
    problem: String,
}

/// The chain's verification, loaded into the page after it shows (it walks
/// the whole log).
pub async fn verify(State(state): State<AppState>, web: Web) -> PageResult {
    let Json(v) = audit::verify_audit(State(state), web.caller()).await?;
    Ok(html(&VerifyPart {
        intact: v.intact,
        events: format::count(v.events.max(0) as u64),
        problem: v.problem.unwrap_or_default(),
    }))
}
