//! The dashboard: what needs attention first. Each panel shows only what
//! the user's role may read.

use askama::Template;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use cloudkeep_domain::evidence::AlertState;
use cloudkeep_domain::{ConnectionStatus, Permission};
use cloudkeep_server::api::{alerts, controls, resources};
use cloudkeep_server::wire::ConnectionView;
use cloudkeep_server::{AppState, Params};

use crate::format;
use crate::page::{Chrome, PageResult, Problem, Section, html};
use crate::session::Web;

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    chrome: Chrome,
    connections: Option<Vec<Health>>,
    alerts: Option<Vec<AlertLine>>,
    controls: Option<Vec<ControlLine>>,
    tags: Option<TagPanel>,
    spend: Option<super::spend::SpendPanel>,
    budgets: Option<super::budgets::BudgetPanel>,
    required_tags: Option<super::coverage::CoverageLine>,
    anomalies: Option<super::anomalies::AnomalyCard>,
    may_connect: bool,
    may_budget: bool,
}

/// A connection's health, as a line of the panel.
pub struct Health {
    pub id: String,
    pub name: String,
    pub state: &'static str,
    pub label: String,
    pub last_sync: String,
    pub next_sync: String,
    pub subscriptions: usize,
}

/// How a connection is doing: its status, or stale when its last
/// successful sync is older than its threshold.
pub fn health(c: &ConnectionView, now: DateTime<Utc>) -> Health {
    let stale = c
        .last_sync_at
        .is_none_or(|t| (now - t).num_seconds() > c.stale_after_secs);
    let (state, label) = match c.status {
        ConnectionStatus::Revoked => ("revoked", "revoked".to_string()),
        ConnectionStatus::NeedsReauth => ("needs_reauth", "needs re-authentication".into()),
        ConnectionStatus::Failing => ("failed", "syncs failing".into()),
        ConnectionStatus::Active if c.last_sync_at.is_none() => {
            ("pending", "not synced yet".into())
        }
        ConnectionStatus::Active if stale => ("stale", "stale".into()),
        ConnectionStatus::Active => ("active", "healthy".into()),
    };
    Health {
        id: c.id.to_string(),
        name: c.name.clone(),
        state,
        label,
        last_sync: c
            .last_sync_at
            .map(|t| format::ago(t, now))
            .unwrap_or_else(|| "never".into()),
        next_sync: c
            .next_sync_at
            .map(|t| format::ago(t, now))
            .unwrap_or_else(|| "—".into()),
        subscriptions: c
            .subscriptions
            .iter()
            .filter(|s| s.detached_at.is_none())
            .count(),
    }
}

struct AlertLine {
    id: String,
    title: String,
    opened: String,
}

struct ControlLine {
    id: String,
    title: String,
    state: String,
    label: String,
    pass_rate: String,
    coverage: String,
    /// 0 to 100, for a `<meter>`.
    coverage_value: u32,
}

struct TagPanel {
    resources: String,
    tagged: String,
    share: String,
    share_value: u32,
    not_read: String,
    keys: Vec<(String, String, u32)>,
}

pub async fn dashboard(State(state): State<AppState>, web: Web) -> PageResult {
    let now = state.store.now();
    let read_data = web.may(Permission::ReadData);
    // The panels read different tables and wait on the store, not on each
    // other: asked at once, the page takes as long as its slowest panel
    // instead of their sum. They read in one view: a dozen kept answers
    // stand for one read of each revision (and agree with each other).
    let (connections, alerts, controls, tags, spend, budgets, required_tags, anomalies) =
        cloudkeep_store::in_one_view(async {
            tokio::try_join!(
                when(read_data, connections_panel(&state, &web, now)),
                when(read_data, alerts_panel(&state, &web, now)),
                when(
                    web.may(Permission::ReadEvidence),
                    controls_panel(&state, &web)
                ),
                when(read_data, tags_panel(&state, &web)),
                flatten(when(read_data, super::spend::panel(&state, &web))),
                flatten(when(read_data, super::budgets::panel(&state, &web))),
                flatten(when(read_data, super::coverage::panel(&state, &web))),
                flatten(when(read_data, super::anomalies::card(&state, &web))),
            )
        })
        .await?;
    Ok(html(&DashboardPage {
        chrome: Chrome::new(&web, "Dashboard", Section::Dashboard),
        connections,
        alerts,
        controls,
        tags,
        spend,
        budgets,
        required_tags,
        anomalies,
        may_connect: web.may(Permission::ManageConnections),
        may_budget: web.may(Permission::ManageConnections),
    }))
}

/// A panel the caller may see (`allowed`), else none.
async fn when<T>(
    allowed: bool,
    panel: impl std::future::Future<Output = Result<T, Problem>>,
) -> Result<Option<T>, Problem> {
    if allowed {
        panel.await.map(Some)
    } else {
        Ok(None)
    }
}

/// A panel that may itself be absent.
async fn flatten<T>(
    panel: impl std::future::Future<Output = Result<Option<Option<T>>, Problem>>,
) -> Result<Option<T>, Problem> {
    panel.await.map(Option::flatten)
}

async fn connections_panel(
    state: &AppState,
    web: &Web,
    now: DateTime<Utc>,
) -> Result<Vec<Health>, Problem> {
    let live = state
        .store
        .live_connections_with_counts(&web.auth.scope)
        .await?;
    Ok(live
        .iter()
        .map(|(c, attached)| Health {
            subscriptions: *attached as usize,
            ..health(&ConnectionView::from(c), now)
        })
        .collect())
}

async fn alerts_panel(
    state: &AppState,
    web: &Web,
    now: DateTime<Utc>,
) -> Result<Vec<AlertLine>, Problem> {
    let Json(page) = alerts::list_alerts(
        State(state.clone()),
        web.caller(),
        Params(alerts::AlertsQuery {
            state: Some(AlertState::Open),
            kind: None,
            scope: None,
            limit: Some("10".into()),
            after: None,
        }),
    )
    .await?;
    Ok(page
        .items
        .iter()
        .map(|a| AlertLine {
            id: a.id.to_string(),
            title: a.title.clone(),
            opened: format::ago(a.opened_at, now),
        })
        .collect())
}

async fn controls_panel(state: &AppState, web: &Web) -> Result<Vec<ControlLine>, Problem> {
    let Json(page) = controls::list_controls(State(state.clone()), web.caller()).await?;
    Ok(page
        .items
        .iter()
        .map(|c| ControlLine {
            id: c.id.to_string(),
            title: c.title.clone(),
            state: c.coverage.state.to_string(),
            label: format::words(&c.coverage.state.to_string()),
            pass_rate: c
                .coverage
                .pass_rate
                .map(format::percent)
                .unwrap_or_else(|| "—".into()),
            coverage: c
                .coverage
                .evidence_coverage
                .map(format::percent)
                .unwrap_or_else(|| "—".into()),
            coverage_value: (c.coverage.evidence_coverage.unwrap_or(0.0) * 100.0).round() as u32,
        })
        .collect())
}

async fn tags_panel(state: &AppState, web: &Web) -> Result<TagPanel, Problem> {
    let Json(c) = resources::tag_coverage(State(state.clone()), web.caller()).await?;
    let share = if c.tags_read == 0 {
        0.0
    } else {
        c.tagged as f64 / c.tags_read as f64
    };
    Ok(TagPanel {
        resources: format::count(c.resources),
        tagged: format::count(c.tagged),
        share: format::percent(share),
        share_value: (share * 100.0).round() as u32,
        not_read: format::count(c.resources - c.tags_read),
        keys: c
            .keys
            .iter()
            .map(|k| {
                let s = if c.tags_read == 0 {
                    0.0
                } else {
                    k.resources as f64 / c.tags_read as f64
                };
                (
                    k.key.clone(),
                    format::percent(s),
                    (s * 100.0).round() as u32,
                )
            })
            .collect(),
    })
}
