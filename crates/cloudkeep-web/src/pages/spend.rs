//! Spend: the explorer (an analysis as the API answers it: a chart and
//! the same figures as a table, CSV of the view, the period's FOCUS
//! export) and the dashboard's spend panel. The analysis is the API's own
//! (`parse_spend_query` and `spend_view`), so a page and a script asking
//! the same question get the same figures.

use askama::Template;
use axum::extract::{OriginalUri, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{Duration, NaiveDate};
use cloudkeep_domain::spend::SpendMetric;
use cloudkeep_server::AppState;
use cloudkeep_server::api::spend::{SpendAsk, parse_spend_query, spend_view, summary_view};
use cloudkeep_server::wire::{SpendSummary, SpendView};
use serde::Deserialize;

use super::evidence::ChartView;
use crate::charts::{LineChart, Series, Table, Unit};
use crate::format;
use crate::page::{Chrome, PageResult, Problem, Section, html, is_refusal};
use crate::session::{Web, query};

/// The groupings a person picks from (the API's dimensions); a tag key is
/// typed beside them.
const DIMENSIONS: &[(&str, &str)] = &[
    ("", "Nothing (the total)"),
    ("service", "Service"),
    ("resource_group", "Resource group"),
    ("subscription", "Subscription"),
    ("service_category", "Service category"),
    ("region", "Region"),
    ("resource_type", "Resource type"),
    ("resource", "Resource"),
];

/// The explorer's form, as its query string carries it.
#[derive(Debug, Default, Deserialize)]
pub struct SpendForm {
    #[serde(default)]
    pub metric: Option<String>,
    #[serde(default)]
    pub granularity: Option<String>,
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub group_by: Option<String>,
    /// A tag key to group by as well (`tag:<key>`).
    #[serde(default)]
    pub tag: Option<String>,
    #[serde(default)]
    pub filter: Option<String>,
    #[serde(default)]
    pub top: Option<String>,
}

impl SpendForm {
    /// The API's query string for this form.
    fn api_query(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                q.append_pair(k, v);
            }
        };
        put("metric", &self.metric);
        put("granularity", &self.granularity);
        put("from", &self.from);
        put("to", &self.to);
        put("group_by", &self.group_by);
        put(
            "group_by",
            &self.tag.as_ref().map(|t| format!("tag:{}", t.trim())),
        );
        put("top", &self.top);
        // Several filters, one per line or separated by ';'.
        for f in self
            .filter
            .iter()
            .flat_map(|f| f.split(['\n', ';']))
            .map(str::trim)
            .filter(|f| !f.is_empty())
        {
            q.append_pair("filter", f);
        }
        q.finish()
    }
}

#[derive(Template)]
#[template(path = "spend.html")]
struct SpendPage {
    chrome: Chrome,
    form: SpendForm,
    dimensions: &'static [(&'static str, &'static str)],
    results: SpendResults,
}

/// The answer (or what was wrong with the question), also answered alone
/// to htmx: the form updates it in place.
#[derive(Template)]
#[template(path = "spend_results.html")]
struct SpendResults {
    error: Option<String>,
    answer: Option<Answer>,
}

/// An analysis as the page shows it.
struct Answer {
    title: String,
    total: String,
    currency: String,
    chart: ChartView,
    groups: Table,
    csv_link: String,
    focus_link: String,
}

fn group_name(key: &[Option<String>], other: bool) -> String {
    if other {
        return "Other".into();
    }
    key.iter()
        .map(|k| k.clone().unwrap_or_else(|| "(none)".into()))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn bucket_label(day: NaiveDate, granularity: &str) -> String {
    match granularity {
        "month" => day.format("%b %Y").to_string(),
        "week" => format!("wk {}", day.format("%b %-d")),
        _ => day.format("%b %-d").to_string(),
    }
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The chart and tables of an analysis.
fn answer(view: &SpendView, api_query: &str) -> Answer {
    let unit = Unit::Money(view.currency.clone());
    let granularity = view.granularity.to_string();
    let starts: Vec<NaiveDate> = view.totals.iter().map(|p| p.start).collect();
    let series: Vec<Series> = if view.series.is_empty() {
        vec![Series {
            name: "Total".into(),
            values: view.totals.iter().map(|p| Some(p.cost)).collect(),
            dashed: false,
        }]
    } else {
        view.series
            .iter()
            .map(|s| Series {
                name: group_name(&s.key, s.other),
                values: starts
                    .iter()
                    .map(|d| {
                        Some(
                            s.points
                                .iter()
                                .find(|p| p.start == *d)
                                .map_or(0.0, |p| p.cost),
                        )
                    })
                    .collect(),
                dashed: s.other,
            })
            .collect()
    };
    let grouped = if view.group_by.is_empty() {
        String::new()
    } else {
        format!(" by {}", view.group_by.join(" and "))
    };
    let title = format!(
        "{} cost{grouped}, {} to {}, by {granularity}",
        capitalised(view.metric.as_str()),
        view.from,
        view.to
    );
    let chart = LineChart {
        id: "spend".into(),
        title: title.clone(),
        description: format!(
            "{} cost per {granularity} from {} to {}{grouped}: {} in all.",
            view.metric,
            view.from,
            view.to,
            format::money(view.total, &view.currency)
        ),
        x_name: format::words(&granularity),
        x_labels: starts
            .iter()
            .map(|d| bucket_label(*d, &granularity))
            .collect(),
        series,
        unit,
        reference: None,
    };
    let groups = Table {
        caption: "Groups by cost".into(),
        columns: vec!["Group".into(), "Cost".into(), "Share".into()],
        rows: view
            .series
            .iter()
            .map(|s| {
                vec![
                    group_name(&s.key, s.other),
                    format::money(s.total, &view.currency),
                    format::percent(if view.total.abs() > f64::EPSILON {
                        s.total / view.total
                    } else {
                        0.0
                    }),
                ]
            })
            .collect(),
    };
    Answer {
        title,
        total: format::money(view.total, &view.currency),
        currency: view.currency.clone(),
        chart: ChartView {
            svg: chart.svg(),
            table: chart.table(),
        },
        groups,
        csv_link: format!("/spend/view.csv?{api_query}"),
        focus_link: format!(
            "/api/v1/spend/export?format=focus-csv&from={}&to={}",
            view.from, view.to
        ),
    }
}

/// Reads the form and runs its analysis: the answer, or what was wrong.
async fn analyse(
    state: &AppState,
    web: &Web,
    form: &SpendForm,
) -> Result<Result<(SpendView, String), String>, Problem> {
    let api_query = form.api_query();
    let today = state.store.now().date_naive();
    let ask: SpendAsk = match parse_spend_query(Some(&api_query), today) {
        Ok(ask) => ask,
        Err(e) if is_refusal(&e) => return Ok(Err(e.message)),
        Err(e) => return Err(e.into()),
    };
    match spend_view(state, &web.caller(), ask).await {
        Ok(view) => Ok(Ok((view, api_query))),
        Err(e) if is_refusal(&e) => Ok(Err(e.message)),
        Err(e) => Err(e.into()),
    }
}

pub async fn explorer(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let form: SpendForm = query(&uri)?;
    let (answer, error) = match analyse(&state, &web, &form).await? {
        Ok((view, q)) => (Some(answer(&view, &q)), None),
        Err(message) => (None, Some(message)),
    };
    let results = SpendResults { error, answer };
    if web.htmx {
        return Ok(html(&results));
    }
    let chrome = Chrome::new(&web, "Spend", Section::Spend);
    Ok(html(&SpendPage {
        chrome,
        form,
        dimensions: DIMENSIONS,
        results,
    }))
}

/// The explorer's view as CSV: one row per time bucket and group.
pub async fn view_csv(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, Problem> {
    // The link carries the API's own query string.
    let today = state.store.now().date_naive();
    let ask = parse_spend_query(uri.query(), today).map_err(Problem::from)?;
    let view = spend_view(&state, &web.caller(), ask)
        .await
        .map_err(Problem::from)?;
    let mut out = String::new();
    let mut header_row: Vec<String> = vec!["period_start".into()];
    header_row.extend(view.group_by.iter().cloned());
    header_row.extend(["cost".into(), "currency".into()]);
    out.push_str(&csv_line(&header_row));
    let groups = view.group_by.len();
    if view.series.is_empty() {
        for p in &view.totals {
            out.push_str(&csv_line(&[
                p.start.to_string(),
                format!("{:.2}", p.cost),
                view.currency.clone(),
            ]));
        }
    } else {
        for s in &view.series {
            for p in &s.points {
                let mut row = vec![p.start.to_string()];
                if s.other {
                    row.extend(std::iter::repeat_n("(other)".to_string(), groups));
                } else {
                    row.extend(s.key.iter().map(|k| k.clone().unwrap_or_default()));
                }
                row.push(format!("{:.2}", p.cost));
                row.push(view.currency.clone());
                out.push_str(&csv_line(&row));
            }
        }
    }
    let name = format!("spend-{}-{}.csv", view.from, view.to);
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        out,
    )
        .into_response())
}

/// One CSV line (RFC 4180: fields with a comma, quote or line break quoted).
fn csv_line(fields: &[String]) -> String {
    let quoted: Vec<String> = fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        })
        .collect();
    format!("{}\r\n", quoted.join(","))
}

/// A mover as the panel shows it: the group, this month, the change.
pub type MoverLine = (String, String, String);

/// The dashboard's spend panel: the month so far against the same days
/// of last month, the last 30 days by day, and the month's movers.
pub struct SpendPanel {
    pub month_to_date: String,
    pub same_days: String,
    pub last_month: String,
    pub change: String,
    pub chart: ChartView,
    /// Top movers, by service and by resource group: a caption and rows of
    /// (group, this month, change).
    pub movers: Vec<(&'static str, Vec<MoverLine>)>,
}

pub async fn panel(state: &AppState, web: &Web) -> Result<Option<SpendPanel>, Problem> {
    let caller = web.caller();
    let summary: SpendSummary = match summary_view(state, &caller, SpendMetric::Billed).await {
        Ok(s) => s,
        Err(e) if e.status == axum::http::StatusCode::FORBIDDEN => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let today = summary.today;
    let from = today - Duration::days(29);
    let ask = parse_spend_query(Some(&format!("from={from}&to={today}")), today)
        .map_err(Problem::from)?;
    let view = spend_view(state, &caller, ask)
        .await
        .map_err(Problem::from)?;
    let money = |v: f64| format::money(v, &summary.currency);
    let change = summary.month_to_date - summary.last_month_same_days;
    let movers = |m: &[cloudkeep_server::wire::SpendMover]| {
        m.iter()
            .map(|x| {
                (
                    x.key.clone().unwrap_or_else(|| "(none)".into()),
                    money(x.current),
                    format!(
                        "{}{}",
                        if x.change >= 0.0 { "+" } else { "−" },
                        money(x.change.abs())
                    ),
                )
            })
            .collect()
    };
    let chart = LineChart {
        id: "spend-trend".into(),
        title: "Billed cost by day, last 30 days".into(),
        description: format!(
            "Billed cost per day from {from} to {today}: {} in all.",
            money(view.total)
        ),
        x_name: "Day".into(),
        x_labels: view
            .totals
            .iter()
            .map(|p| p.start.format("%b %-d").to_string())
            .collect(),
        series: vec![Series {
            name: "Billed cost".into(),
            values: view.totals.iter().map(|p| Some(p.cost)).collect(),
            dashed: false,
        }],
        unit: Unit::Money(summary.currency.clone()),
        reference: None,
    };
    Ok(Some(SpendPanel {
        month_to_date: money(summary.month_to_date),
        same_days: money(summary.last_month_same_days),
        last_month: money(summary.last_month),
        change: format!(
            "{}{}",
            if change >= 0.0 { "+" } else { "−" },
            money(change.abs())
        ),
        chart: ChartView {
            svg: chart.svg(),
            table: chart.table(),
        },
        movers: vec![
            ("Top movers by service", movers(&summary.movers_by_service)),
            (
                "Top movers by resource group",
                movers(&summary.movers_by_resource_group),
            ),
        ],
    }))
}
