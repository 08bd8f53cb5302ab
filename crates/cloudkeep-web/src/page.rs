//! What every page shares: the layout's context (`Chrome`: title, the
//! navigation the user's role allows, the CSRF token, a notice), rendering,
//! and error pages (`Problem`).

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use cloudkeep_domain::Permission;
use cloudkeep_server::ApiError;

use crate::assets;
use crate::session::Web;

/// The areas of the UI, for the navigation's current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Dashboard,
    Spend,
    Budgets,
    Anomalies,
    Resources,
    Coverage,
    TagEdits,
    Connections,
    Controls,
    Evidence,
    Assessments,
    Alerts,
    Audit,
    Settings,
    Account,
}

pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The layout's context, in every page's template as `chrome`.
pub struct Chrome {
    pub title: String,
    pub org_name: String,
    pub user_name: String,
    pub role: String,
    pub csrf: String,
    pub nav: Vec<NavItem>,
    pub notice: Option<String>,
    pub css: &'static str,
    pub js: &'static str,
    pub app_js: &'static str,
    pub favicon: &'static str,
}

/// The navigation: what the role may read, in the order people work.
const NAV: &[(Section, &str, &str, &[Permission])] = &[
    (Section::Dashboard, "/", "Dashboard", &[]),
    (Section::Spend, "/spend", "Spend", &[Permission::ReadData]),
    (
        Section::Budgets,
        "/budgets",
        "Budgets",
        &[Permission::ReadData],
    ),
    (
        Section::Anomalies,
        "/anomalies",
        "Anomalies",
        &[Permission::ReadData],
    ),
    (
        Section::Resources,
        "/resources",
        "Resources & tags",
        &[Permission::ReadData],
    ),
    (
        Section::Coverage,
        "/coverage",
        "Tag coverage",
        &[Permission::ReadData],
    ),
    (
        Section::TagEdits,
        "/tag-edits",
        "Tag edits",
        &[Permission::ReadData],
    ),
    (
        Section::Connections,
        "/connections",
        "Connections",
        &[Permission::ReadData],
    ),
    (
        Section::Controls,
        "/controls",
        "Controls",
        &[Permission::ReadEvidence],
    ),
    (
        Section::Evidence,
        "/evidence",
        "Evidence",
        &[Permission::ReadEvidence],
    ),
    (
        Section::Assessments,
        "/assessments",
        "Assessments",
        &[Permission::ReadEvidence],
    ),
    (
        Section::Alerts,
        "/alerts",
        "Alerts",
        &[Permission::ReadEvidence],
    ),
    (
        Section::Audit,
        "/audit",
        "Audit log",
        &[Permission::ReadAudit],
    ),
    (Section::Settings, "/settings", "Settings", &[]),
];

impl Chrome {
    pub fn new(web: &Web, title: impl Into<String>, section: Section) -> Chrome {
        let user = &web.auth.user;
        Chrome {
            title: title.into(),
            org_name: web.org_name.clone(),
            user_name: user.name.clone(),
            role: user.role.to_string(),
            csrf: web.csrf.clone(),
            nav: NAV
                .iter()
                .filter(|(_, _, _, needs)| needs.iter().all(|p| web.may(*p)))
                .map(|(s, href, label, _)| NavItem {
                    href,
                    label,
                    current: *s == section,
                })
                .collect(),
            notice: None,
            css: assets::url("app.css"),
            js: assets::url("htmx.min.js"),
            app_js: assets::url("app.js"),
            favicon: assets::url("favicon.svg"),
        }
    }

    pub fn with_notice(mut self, notice: Option<String>) -> Self {
        self.notice = notice;
        self
    }
}

/// What a page says after a change it redirected from (`?notice=key`):
/// fixed texts only, so a link cannot make a page say something else.
pub fn notice(key: Option<&str>, n: Option<u64>) -> Option<String> {
    let n = n.unwrap_or(0);
    let s = if n == 1 { "" } else { "s" };
    Some(match key? {
        "password_changed" => "Your password is changed, and your other sessions are signed out.".into(),
        "tag_pending" => "The tag edit is queued: it is written to Azure at the next sync.".into(),
        "tag_local" => "The tag edit is kept in cloudkeep: this subscription's sync level does not write tags to Azure.".into(),
        "edits_created" => format!("{n} tag edit{s} made; pending ones are written to Azure at the next sync."),
        "resolved_mine" => "Kept yours: the edit is written over Azure's value at the next sync.".into(),
        "resolved_theirs" => "Took Azure's value: the edit is dismissed.".into(),
        "connected" => "Connected. The first sync has been started.".into(),
        "updated" => "Saved.".into(),
        "sync_started" => "Sync started.".into(),
        "reauthenticated" => "Re-authenticated: the new secret is stored and the connection is active again.".into(),
        "revoked" => "Revoked: the credential is destroyed, syncs stopped; what was read stays readable.".into(),
        "level_changed" => "Sync level changed.".into(),
        "acknowledged" => "Alert acknowledged.".into(),
        "user_added" => "User added.".into(),
        "role_changed" => "Role changed.".into(),
        "user_disabled" => "User disabled: their sessions ended and their API tokens stopped.".into(),
        "user_enabled" => "User enabled: they can sign in again.".into(),
        "token_revoked" => "Token revoked.".into(),
        "webhook_deleted" => "Webhook deleted.".into(),
        "webhook_tested" => "Test delivery queued; its attempts are listed below.".into(),
        "mapping_changed" => "Control mapping changed.".into(),
        "budget_created" => "Budget made; its thresholds are held against this month's spend and forecast at once.".into(),
        "budget_saved" => "Budget saved; its thresholds are held against this month's spend and forecast at once.".into(),
        "budget_deleted" => "Budget deleted; its open alerts are resolved.".into(),
        "required_keys_saved" => "Required tag keys saved.".into(),
        "alias_added" => "Tag alias added: analyses, budgets and coverage match the key through it from now on.".into(),
        "alias_removed" => "Tag alias removed.".into(),
        "retention_saved" => "Retention window saved; what is older is purged at the next purge.".into(),
        _ => return None,
    })
}

/// A rendered page (or fragment).
pub fn html<T: Template>(t: &T) -> Response {
    html_with(StatusCode::OK, t)
}

/// A page that shows a form's answer: 422 when the form was refused (the
/// page says why beside what was typed), 200 otherwise.
pub fn form_page<T: Template>(t: &T, refused: bool) -> Response {
    if refused {
        html_with(StatusCode::UNPROCESSABLE_ENTITY, t)
    } else {
        html(t)
    }
}

pub fn html_with<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => Problem::internal(e).into_response(),
    }
}

/// After a change: back to a page (303, so a reload does not repeat it).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// An error page: a status, what went wrong and what to do.
#[derive(Debug)]
pub struct Problem {
    pub status: StatusCode,
    pub title: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "problem.html")]
struct ProblemPage<'a> {
    problem: &'a Problem,
    css: &'static str,
}

impl Problem {
    pub fn new(status: StatusCode, title: &str, message: impl Into<String>) -> Self {
        Problem {
            status,
            title: title.into(),
            message: message.into(),
        }
    }

    pub fn not_found() -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such page, or it is not in your organisation.",
        )
    }

    pub fn bad_request(message: &str) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "That request was not usable",
            message,
        )
    }

    pub fn csrf() -> Self {
        Problem::new(
            StatusCode::FORBIDDEN,
            "The form has expired",
            "The change did not carry this session's security token (the page may be older than your session). Reload the page and try again; nothing was changed.",
        )
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "page failed");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Something went wrong on our side; the request id in the response headers helps us find it.",
        )
    }
}

impl From<ApiError> for Problem {
    fn from(e: ApiError) -> Self {
        let title = match e.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::CONFLICT => "That conflicts with the current state",
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => "That was not usable",
            StatusCode::BAD_GATEWAY => "Azure could not be reached",
            _ => "Something went wrong",
        };
        let message = if e.status == StatusCode::FORBIDDEN {
            format!("{}.", capitalise(&e.message))
        } else {
            e.message
        };
        Problem::new(e.status, title, message)
    }
}

impl From<cloudkeep_store::StoreError> for Problem {
    fn from(e: cloudkeep_store::StoreError) -> Self {
        Problem::from(ApiError::from(e))
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status;
        html_with(
            status,
            &ProblemPage {
                problem: &self,
                css: assets::url("app.css"),
            },
        )
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// An API error a form shows beside what was typed (the input was not
/// usable, it conflicts, or Azure could not be reached); the others (not
/// found, not allowed) are error pages.
pub fn is_refusal(e: &ApiError) -> bool {
    matches!(
        e.status,
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT | StatusCode::BAD_GATEWAY
    )
}

/// What a page answers: the page, or an error page.
pub type PageResult = Result<Response, Problem>;
