//! Evidence and controls: coverage per control with its history chart,
//! the checks and the evidence per subject.

use askama::Template;
use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use cloudkeep_domain::evidence::{CheckId, ControlId, EvidenceResult};
use cloudkeep_server::api::{controls as controls_api, evidence as api};
use cloudkeep_server::wire::{CoverageView, EvidenceView};
use cloudkeep_server::{AppState, Params};
use serde::Deserialize;

use crate::charts::{LineChart, Series, Table, Unit};
use crate::format;
use crate::page::{Chrome, PageResult, Section, html, html_with};
use crate::session::{Web, query, query_with};

/// A coverage figure set as the pages show it.
pub struct Cov {
    pub state: String,
    pub label: String,
    pub pass_rate: String,
    pub coverage: String,
    pub coverage_value: u32,
    pub passing: u64,
    pub failing: u64,
    pub stale: u64,
    pub not_collected: u64,
}

pub fn cov(c: &CoverageView) -> Cov {
    Cov {
        state: c.state.to_string(),
        label: format::words(c.state.as_str()),
        pass_rate: c
            .pass_rate
            .map(format::percent)
            .unwrap_or_else(|| "—".into()),
        coverage: c
            .evidence_coverage
            .map(format::percent)
            .unwrap_or_else(|| "—".into()),
        coverage_value: (c.evidence_coverage.unwrap_or(0.0) * 100.0).round() as u32,
        passing: c.passing,
        failing: c.failing,
        stale: c.stale,
        not_collected: c.not_collected,
    }
}

#[derive(Template)]
#[template(path = "controls.html")]
struct ControlsPage {
    chrome: Chrome,
    controls: Vec<(String, String, String, Cov)>,
}

pub async fn controls(State(state): State<AppState>, web: Web) -> PageResult {
    let Json(page) = controls_api::list_controls(State(state.clone()), web.caller()).await?;
    let chrome = Chrome::new(&web, "Controls", Section::Controls);
    Ok(html(&ControlsPage {
        chrome,
        controls: page
            .items
            .iter()
            .map(|c| {
                (
                    c.id.to_string(),
                    c.title.clone(),
                    c.criterion.clone(),
                    cov(&c.coverage),
                )
            })
            .collect(),
    }))
}

#[derive(Template)]
#[template(path = "control.html")]
struct ControlPage {
    chrome: Chrome,
    id: String,
    title: String,
    criterion: String,
    cov: Cov,
    chart: Option<ChartView>,
    checks: Vec<(String, String, String, Cov)>,
    evidence: Vec<EvidenceLine>,
    evidence_total: String,
    all_link: String,
}

/// A chart and its figures, as `macros.html` shows them.
pub struct ChartView {
    pub svg: String,
    pub table: Table,
}

pub async fn control(
    State(state): State<AppState>,
    web: Web,
    Path(id): Path<String>,
) -> PageResult {
    let Json(detail) = controls_api::get_control(
        State(state.clone()),
        web.caller(),
        Path(id),
        Params(controls_api::ControlQuery {
            days: Some(90),
            evidence_limit: Some(50),
        }),
    )
    .await?;
    let c = &detail.control;
    let chart = (!detail.history.is_empty()).then(|| {
        let chart = LineChart {
            id: "control-history".into(),
            title: format!("{}: pass rate and evidence coverage by day", c.id),
            description: format!(
                "Daily pass rate (passing ÷ fresh evidence) and evidence coverage (fresh ÷ applicable) of {} over the last {} days with figures.",
                c.id,
                detail.history.len()
            ),
            x_name: "Day".into(),
            x_labels: detail
                .history
                .iter()
                .map(|d| d.day.format("%b %-d").to_string())
                .collect(),
            series: vec![
                Series {
                    name: "Pass rate".into(),
                    values: detail.history.iter().map(|d| d.coverage.pass_rate).collect(),
                    dashed: false,
                },
                Series {
                    name: "Evidence coverage".into(),
                    values: detail
                        .history
                        .iter()
                        .map(|d| d.coverage.evidence_coverage)
                        .collect(),
                    dashed: true,
                },
            ],
            unit: Unit::Percent,
            reference: None,
        };
        ChartView {
            svg: chart.svg(),
            table: chart.table(),
        }
    });
    let chrome = Chrome::new(&web, format!("{} {}", c.id, c.title), Section::Controls);
    Ok(html(&ControlPage {
        chrome,
        id: c.id.to_string(),
        title: c.title.clone(),
        criterion: c.criterion.clone(),
        cov: cov(&c.coverage),
        chart,
        checks: detail
            .check_coverage
            .iter()
            .map(|k| {
                (
                    k.check.to_string(),
                    k.collector.to_string(),
                    k.title.clone(),
                    cov(&k.coverage),
                )
            })
            .collect(),
        evidence: detail.evidence.iter().map(evidence_line).collect(),
        evidence_total: format::count(detail.evidence_total),
        all_link: format!("/evidence?control={}", c.id),
    }))
}

pub struct EvidenceLine {
    pub id: String,
    pub check: String,
    pub subject: String,
    pub subject_name: String,
    pub result: String,
    pub reason: String,
    pub observed: String,
    pub last: String,
}

/// The last segment of an ARM id names the subject for people.
fn subject_name(subject: &str) -> String {
    subject.rsplit('/').next().unwrap_or(subject).to_string()
}

pub fn evidence_line(e: &EvidenceView) -> EvidenceLine {
    EvidenceLine {
        id: e.id.to_string(),
        check: e.check.to_string(),
        subject_name: subject_name(&e.subject),
        subject: e.subject.clone(),
        result: e.result.to_string(),
        reason: e.reason.clone().unwrap_or_default(),
        observed: format::when(e.observed_at),
        last: match e.valid_to {
            Some(to) => format!("until {}", format::when(to)),
            // A row continued at an assessment's approval starts at the
            // approval and keeps the attested row's last observation until
            // a sync sees the subject again.
            None if e.last_observed_at < e.observed_at => format!(
                "continued from the attested row; last observed {}",
                format::when(e.last_observed_at)
            ),
            None => format!("still so at {}", format::when(e.last_observed_at)),
        },
    }
}

#[derive(Default, Deserialize)]
pub struct EvidenceFilters {
    control: Option<ControlId>,
    check: Option<CheckId>,
    result: Option<EvidenceResult>,
    subject: Option<String>,
    current: Option<bool>,
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "evidence.html")]
struct EvidencePage {
    chrome: Chrome,
    rows: Vec<EvidenceLine>,
    next: Option<String>,
    error: Option<String>,
    controls: Vec<(String, bool)>,
    checks: Vec<(String, bool)>,
    results: Vec<(String, bool)>,
    subject: String,
    history: bool,
}

pub async fn list(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let f: EvidenceFilters = query(&uri)?;
    let answer = api::list_evidence(
        State(state.clone()),
        web.caller(),
        Params(api::EvidenceQuery {
            control: f.control,
            check: f.check,
            result: f.result,
            subject: f.subject.clone(),
            connection: None,
            subscription: None,
            observed_from: None,
            observed_to: None,
            current: f.current,
            limit: Some("50".into()),
            after: f.after.clone(),
        }),
    )
    .await;
    let (rows, next, error) = match answer {
        Ok(Json(page)) => (
            page.items.iter().map(evidence_line).collect(),
            page.next.map(|n| {
                format!(
                    "/evidence?{}",
                    query_with(&uri, &["after"], &[("after", &n)])
                )
            }),
            None,
        ),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            (Vec::new(), None, Some(e.message))
        }
        Err(e) => return Err(e.into()),
    };
    let chrome = Chrome::new(&web, "Evidence", Section::Evidence);
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(html_with(
        status,
        &EvidencePage {
            chrome,
            rows,
            next,
            error,
            controls: ControlId::ALL
                .iter()
                .map(|c| (c.to_string(), Some(*c) == f.control))
                .collect(),
            checks: CheckId::ALL
                .iter()
                .map(|c| (c.to_string(), Some(*c) == f.check))
                .collect(),
            results: EvidenceResult::ALL
                .iter()
                .map(|r| (r.to_string(), Some(*r) == f.result))
                .collect(),
            subject: f.subject.unwrap_or_default(),
            history: f.current == Some(false),
        },
    ))
}

#[derive(Template)]
#[template(path = "evidence_detail.html")]
struct DetailPage {
    chrome: Chrome,
    e: EvidenceLine,
    collector: String,
    fingerprint: String,
    facts: String,
    controls: Vec<String>,
    history: Vec<EvidenceLine>,
}

pub async fn detail(State(state): State<AppState>, web: Web, Path(id): Path<String>) -> PageResult {
    let Json(d) = api::get_evidence(State(state.clone()), web.caller(), Path(id)).await?;
    let chrome = Chrome::new(
        &web,
        format!(
            "{} on {}",
            d.evidence.check,
            subject_name(&d.evidence.subject)
        ),
        Section::Evidence,
    );
    Ok(html(&DetailPage {
        chrome,
        e: evidence_line(&d.evidence),
        collector: d.evidence.collector.to_string(),
        fingerprint: d.evidence.fingerprint.clone(),
        facts: serde_json::to_string_pretty(&d.evidence.facts).unwrap_or_default(),
        controls: d.controls.iter().map(|c| c.to_string()).collect(),
        history: d.history.iter().rev().map(evidence_line).collect(),
    }))
}
