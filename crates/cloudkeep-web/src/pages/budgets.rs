//! Budgets: the list with where each stands this month (spent and
//! forecast against the amount), a budget's month day by day, the forms
//! that make, change and delete them (admins and owners), and the
//! dashboard's budget panel. Everything comes from the API's own handlers
//! (`list_budgets`, `get_budget`, `create_budget`, `replace_budget`,
//! `delete_budget`) and `forecast_of`, so the thresholds and the forecast
//! are the API's.

use askama::Template;
use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use chrono::NaiveDate;
use cloudkeep_domain::Permission;
use cloudkeep_domain::budget::threshold_label;
use cloudkeep_domain::spend::{SpendDimension, SpendFilter, SpendMetric};
use cloudkeep_server::api::budgets as api;
use cloudkeep_server::wire::{BudgetDetail, BudgetRequest, BudgetView, ForecastView};
use cloudkeep_server::{ApiError, AppState, Body, Params};
use serde::Deserialize;

use super::anomalies::{Choice, known_values, subscriptions};
use super::evidence::ChartView;
use crate::charts::{BudgetBar, LineChart, Series, Table, Unit};
use crate::format;
use crate::page::{Chrome, PageResult, Problem, Section, form_page, is_refusal, notice, see_other};
use crate::session::{Form, Web, query};

/// Budgets a page lists at most (the API's largest page).
const LISTED: &str = "1000";

#[derive(Deserialize)]
pub struct NoticeQuery {
    notice: Option<String>,
}

/// A budget's form as typed: every field a string, so a refused form comes
/// back exactly as it was sent.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct BudgetForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub amount: String,
    #[serde(default)]
    pub metric: String,
    /// The scope's subscription (an Azure id), empty for every one.
    #[serde(default)]
    pub subscription: String,
    /// The scope's resource group, empty for every one.
    #[serde(default)]
    pub resource_group: String,
    /// The scope's tag: a key, and a value (empty: any value).
    #[serde(default)]
    pub tag_key: String,
    #[serde(default)]
    pub tag_value: String,
    /// Any other filters, one per line (or separated by `;`).
    #[serde(default)]
    pub filters: String,
    /// Percentages, separated by commas.
    #[serde(default)]
    pub actual_thresholds: String,
    #[serde(default)]
    pub forecast_thresholds: String,
}

fn percentages(list: &[f64]) -> String {
    list.iter()
        .map(|t| threshold_label(*t))
        .collect::<Vec<_>>()
        .join(", ")
}

impl BudgetForm {
    /// A new budget's form: the usual thresholds filled in.
    fn new_budget() -> Self {
        BudgetForm {
            metric: "billed".into(),
            actual_thresholds: "80, 100".into(),
            forecast_thresholds: "100".into(),
            ..Default::default()
        }
    }

    /// The form of an existing budget: its first subscription, resource
    /// group and tag filters in the pickers, any others as text.
    fn of(b: &BudgetView) -> Self {
        let mut form = BudgetForm {
            name: b.name.clone(),
            amount: format!("{}", b.amount),
            metric: b.metric.to_string(),
            actual_thresholds: percentages(&b.actual_thresholds),
            forecast_thresholds: percentages(&b.forecast_thresholds),
            ..Default::default()
        };
        let mut others = Vec::new();
        for text in &b.filters {
            match text.parse::<SpendFilter>() {
                Ok(SpendFilter::Is(SpendDimension::Subscription, v))
                    if form.subscription.is_empty() =>
                {
                    form.subscription = v.to_ascii_lowercase();
                }
                Ok(SpendFilter::Is(SpendDimension::ResourceGroup, v))
                    if form.resource_group.is_empty() =>
                {
                    form.resource_group = v;
                }
                Ok(SpendFilter::HasTag(k, v)) if form.tag_key.is_empty() => {
                    form.tag_key = k;
                    form.tag_value = v.unwrap_or_default();
                }
                _ => others.push(text.clone()),
            }
        }
        form.filters = others.join("\n");
        form
    }

    /// The scope as the API's filter texts: the pickers', then the others.
    fn filter_texts(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.subscription.trim().is_empty() {
            out.push(format!("subscription={}", self.subscription.trim()));
        }
        if !self.resource_group.trim().is_empty() {
            out.push(format!("resource_group={}", self.resource_group.trim()));
        }
        match (self.tag_key.trim(), self.tag_value.trim()) {
            ("", _) => {}
            (k, "") => out.push(format!("tag:{k}")),
            (k, v) => out.push(format!("tag:{k}={v}")),
        }
        out.extend(
            self.filters
                .split(['\n', ';'])
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_string),
        );
        out
    }

    /// The API's request. Only reading the typed text happens here (a
    /// number that is not one); every rule about budgets is the API's.
    fn request(&self) -> Result<BudgetRequest, String> {
        let number = |field: &str, raw: &str| -> Result<f64, String> {
            let cleaned: String = raw
                .trim()
                .trim_end_matches('%')
                .chars()
                .filter(|c| !matches!(c, ',' | '_' | ' '))
                .collect();
            cleaned
                .parse::<f64>()
                .map_err(|_| format!("{field}: '{}' is not a number", raw.trim()))
        };
        let list = |field: &str, raw: &str| -> Result<Vec<f64>, String> {
            raw.split([',', ';', ' ', '\n'])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| number(field, t))
                .collect()
        };
        let amount = if self.amount.trim().is_empty() {
            return Err("The amount is missing: give the monthly amount.".into());
        } else {
            number("The amount", &self.amount)?
        };
        let metric = match self.metric.trim() {
            "" => SpendMetric::Billed,
            m => m
                .parse::<SpendMetric>()
                .map_err(|e: cloudkeep_domain::ParseError| e.to_string())?,
        };
        Ok(BudgetRequest {
            name: self.name.clone(),
            amount,
            metric,
            filters: self.filter_texts(),
            actual_thresholds: list("Thresholds on spend", &self.actual_thresholds)?,
            forecast_thresholds: list("Thresholds on the forecast", &self.forecast_thresholds)?,
        })
    }
}

/// A budget as a line of the list or the dashboard's panel.
pub struct BudgetLine {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub metric: String,
    pub amount: String,
    pub actual: String,
    pub actual_pct: String,
    pub forecast: String,
    pub forecast_pct: String,
    /// Each threshold on spend: its label and whether it is crossed.
    pub actual_thresholds: Vec<(String, bool)>,
    pub forecast_thresholds: Vec<(String, bool)>,
    /// Any threshold crossed.
    pub crossed: bool,
    pub bar: String,
}

fn marks(all: &[f64], crossed: &[f64]) -> Vec<(String, bool)> {
    all.iter()
        .map(|t| {
            (
                format!("{}%", threshold_label(*t)),
                crossed.iter().any(|c| (c - t).abs() < 1e-9),
            )
        })
        .collect()
}

fn scope_text(filters: &[String]) -> String {
    if filters.is_empty() {
        "the whole organisation".into()
    } else {
        filters.join("; ")
    }
}

pub fn line(b: &BudgetView) -> BudgetLine {
    let s = &b.status;
    let money = |v: f64| format::money(v, &s.currency);
    // Past 1,000% a decimal says nothing and the thousands are grouped.
    let pct = |v: f64| {
        if v.abs() >= 1000.0 {
            format!("{}%", format::count(v.max(0.0).round() as u64))
        } else {
            format!("{v:.1}%")
        }
    };
    let mut thresholds: Vec<f64> = b
        .actual_thresholds
        .iter()
        .chain(&b.forecast_thresholds)
        .copied()
        .collect();
    thresholds.sort_by(f64::total_cmp);
    thresholds.dedup();
    let bar = BudgetBar {
        id: format!("budget-{}", b.id),
        title: format!(
            "{}: {} spent, {} forecast",
            b.name,
            pct(s.actual_pct),
            pct(s.forecast_pct)
        ),
        description: format!(
            "{} of {} spent this month; {} forecast by the month's end. Thresholds: {}.",
            money(s.actual),
            money(b.amount),
            money(s.forecast),
            if thresholds.is_empty() {
                "none".to_string()
            } else {
                thresholds
                    .iter()
                    .map(|t| format!("{}%", threshold_label(*t)))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        amount: b.amount,
        actual: s.actual,
        forecast: s.forecast,
        thresholds,
    };
    BudgetLine {
        id: b.id.to_string(),
        name: b.name.clone(),
        scope: scope_text(&b.filters),
        metric: b.metric.to_string(),
        amount: money(b.amount),
        actual: money(s.actual),
        actual_pct: pct(s.actual_pct),
        forecast: money(s.forecast),
        forecast_pct: pct(s.forecast_pct),
        actual_thresholds: marks(&b.actual_thresholds, &s.actual_crossed),
        forecast_thresholds: marks(&b.forecast_thresholds, &s.forecast_crossed),
        crossed: !s.actual_crossed.is_empty() || !s.forecast_crossed.is_empty(),
        bar: bar.svg(),
    }
}

async fn all_budgets(state: &AppState, web: &Web) -> Result<Vec<BudgetView>, ApiError> {
    let Json(page) = api::list_budgets(
        State(state.clone()),
        web.caller(),
        Params(api::BudgetsQuery {
            limit: Some(LISTED.into()),
            after: None,
        }),
    )
    .await?;
    Ok(page.items)
}

/// What the scope pickers offer: the organisation's subscriptions, the
/// resource groups and tag keys its spend and resources have.
#[derive(Default)]
pub struct ScopeChoices {
    pub subscriptions: Vec<Choice>,
    pub resource_groups: Vec<String>,
    pub tag_keys: Vec<String>,
}

/// The choices, each with the form's own value in it (a budget's scope
/// may name something no longer seen); none for those without the form.
async fn scope_choices(
    state: &AppState,
    web: &Web,
    form: &BudgetForm,
) -> Result<ScopeChoices, Problem> {
    if !web.may(Permission::ManageConnections) {
        return Ok(ScopeChoices::default());
    }
    let mut subs = subscriptions(state, web).await?;
    let sub = form.subscription.trim();
    if !sub.is_empty() && !subs.iter().any(|(v, _)| v.eq_ignore_ascii_case(sub)) {
        subs.push((sub.to_string(), sub.to_string()));
    }
    let mut groups = known_values(state, web, "resource_group").await?;
    let mut keys: Vec<String> = state
        .store
        .tag_coverage(&web.auth.scope, 100)
        .await?
        .keys
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    for (list, current) in [
        (&mut groups, form.resource_group.trim()),
        (&mut keys, form.tag_key.trim()),
    ] {
        if !current.is_empty() && !list.iter().any(|v| v.eq_ignore_ascii_case(current)) {
            list.push(current.to_string());
        }
        list.sort_by_key(|v| v.to_lowercase());
    }
    Ok(ScopeChoices {
        subscriptions: subs,
        resource_groups: groups,
        tag_keys: keys,
    })
}

// ---- the list ----

#[derive(Template)]
#[template(path = "budgets.html")]
struct BudgetsPage {
    chrome: Chrome,
    budgets: Vec<BudgetLine>,
    month: String,
    may_manage: bool,
    form: BudgetForm,
    choices: ScopeChoices,
    error: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: NoticeQuery = query(&uri)?;
    render_list(
        &state,
        &web,
        notice(q.notice.as_deref(), None),
        BudgetForm::new_budget(),
        None,
    )
    .await
}

async fn render_list(
    state: &AppState,
    web: &Web,
    notice_text: Option<String>,
    form: BudgetForm,
    error: Option<String>,
) -> PageResult {
    let budgets = all_budgets(state, web).await?;
    let chrome = Chrome::new(web, "Budgets", Section::Budgets).with_notice(notice_text);
    let page = BudgetsPage {
        chrome,
        month: state.store.now().date_naive().format("%B %Y").to_string(),
        budgets: budgets.iter().map(line).collect(),
        may_manage: web.may(Permission::ManageConnections),
        choices: scope_choices(state, web, &form).await?,
        form,
        error: error.clone(),
    };
    Ok(form_page(&page, error.is_some()))
}

/// The refusal a form shows beside what was typed; the rest are error pages.
fn refused(e: ApiError) -> Result<String, Problem> {
    if is_refusal(&e) {
        Ok(e.message)
    } else {
        Err(e.into())
    }
}

/// The forms are for those who may change budgets; the API refuses the
/// others anyway, and this says so before reading what they typed.
fn may_manage(web: &Web, what: &str) -> Result<(), Problem> {
    if web.may(Permission::ManageConnections) {
        Ok(())
    } else {
        Err(ApiError::forbidden(what).into())
    }
}

pub async fn create(
    State(state): State<AppState>,
    Form { web, form, .. }: Form<BudgetForm>,
) -> PageResult {
    may_manage(&web, "making budgets")?;
    let request = match form.request() {
        Ok(r) => r,
        Err(message) => return render_list(&state, &web, None, form, Some(message)).await,
    };
    match api::create_budget(State(state.clone()), web.caller(), Body(request)).await {
        Ok((_, Json(made))) => Ok(see_other(&format!(
            "/budgets/{}?notice=budget_created",
            made.budget.id
        ))),
        Err(e) => render_list(&state, &web, None, form, Some(refused(e)?)).await,
    }
}

// ---- one budget ----

#[derive(Template)]
#[template(path = "budget.html")]
struct BudgetPage {
    chrome: Chrome,
    budget: BudgetLine,
    /// Where the edit form posts.
    action: String,
    created: String,
    updated: String,
    as_of: String,
    chart: ChartView,
    may_manage: bool,
    form: BudgetForm,
    choices: ScopeChoices,
    error: Option<String>,
}

/// The month day by day, cumulative: actual so far, then the forecast of
/// each remaining day, against the amount.
pub fn month_chart(id: &str, title: &str, days: &ForecastView, amount: Option<f64>) -> ChartView {
    let money = |v: f64| format::money(v, &days.currency);
    let mut labels = Vec::new();
    let mut actual = Vec::new();
    let mut forecast = Vec::new();
    let mut rows = Vec::new();
    let mut running = 0.0;
    let day_label = |d: NaiveDate| d.format("%b %-d").to_string();
    for p in &days.actual {
        running += p.cost;
        labels.push(day_label(p.start));
        actual.push(Some(running));
        forecast.push(None);
        rows.push(vec![
            day_label(p.start),
            "actual".into(),
            money(p.cost),
            money(running),
        ]);
    }
    // The forecast line starts where the actual one ends, so they join.
    if let Some(last) = forecast.last_mut() {
        *last = Some(running);
    }
    for p in &days.forecast {
        running += p.cost;
        labels.push(day_label(p.start));
        actual.push(None);
        forecast.push(Some(running));
        rows.push(vec![
            day_label(p.start),
            "forecast".into(),
            money(p.cost),
            money(running),
        ]);
    }
    let chart = LineChart {
        id: id.into(),
        title: title.into(),
        description: format!(
            "Cost this month added up day by day: {} to {} actual, then forecast to {} by the month's end{}.",
            money(days.month_to_date),
            days.as_of.format("%b %-d"),
            money(days.month_end),
            amount
                .map(|a| format!(", against the amount of {}", money(a)))
                .unwrap_or_default()
        ),
        x_name: "Day".into(),
        x_labels: labels,
        series: vec![
            Series {
                name: "Actual".into(),
                values: actual,
                dashed: false,
            },
            Series {
                name: "Forecast".into(),
                values: forecast,
                dashed: true,
            },
        ],
        unit: Unit::Money(days.currency.clone()),
        reference: amount.map(|a| ("Amount".to_string(), a)),
    };
    ChartView {
        svg: chart.svg(),
        table: Table {
            caption: title.into(),
            columns: vec![
                "Day".into(),
                "Kind".into(),
                "Cost of the day".into(),
                "Month so far".into(),
            ],
            rows,
        },
    }
}

async fn render_detail(
    state: &AppState,
    web: &Web,
    id: String,
    notice_text: Option<String>,
    form: Option<BudgetForm>,
    error: Option<String>,
) -> PageResult {
    let Json(BudgetDetail { budget, days }) =
        api::get_budget(State(state.clone()), web.caller(), Path(id)).await?;
    let chrome = Chrome::new(web, budget.name.clone(), Section::Budgets).with_notice(notice_text);
    let form = form.unwrap_or_else(|| BudgetForm::of(&budget));
    let chart = month_chart(
        "budget-month",
        &format!(
            "{}: cost this month, day by day, with the forecast",
            budget.name
        ),
        &days,
        Some(budget.amount),
    );
    let page = BudgetPage {
        chrome,
        created: format!(
            "{} by {}",
            format::when(budget.created_at),
            budget.created_by
        ),
        updated: format::when(budget.updated_at),
        as_of: days.as_of.to_string(),
        action: format!("/budgets/{}", budget.id),
        chart,
        may_manage: web.may(Permission::ManageConnections),
        choices: scope_choices(state, web, &form).await?,
        form,
        budget: line(&budget),
        error: error.clone(),
    };
    Ok(form_page(&page, error.is_some()))
}

pub async fn detail(
    State(state): State<AppState>,
    web: Web,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let q: NoticeQuery = query(&uri)?;
    render_detail(
        &state,
        &web,
        id,
        notice(q.notice.as_deref(), None),
        None,
        None,
    )
    .await
}

pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, form, .. }: Form<BudgetForm>,
) -> PageResult {
    may_manage(&web, "changing budgets")?;
    let request = match form.request() {
        Ok(r) => r,
        Err(message) => {
            return render_detail(&state, &web, id, None, Some(form), Some(message)).await;
        }
    };
    match api::replace_budget(
        State(state.clone()),
        web.caller(),
        Path(id.clone()),
        Body(request),
    )
    .await
    {
        Ok(Json(changed)) => Ok(see_other(&format!(
            "/budgets/{}?notice=budget_saved",
            changed.budget.id
        ))),
        Err(e) => {
            let message = refused(e)?;
            render_detail(&state, &web, id, None, Some(form), Some(message)).await
        }
    }
}

#[derive(Deserialize)]
pub struct Nothing {}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form { web, .. }: Form<Nothing>,
) -> PageResult {
    api::delete_budget(State(state.clone()), web.caller(), Path(id)).await?;
    Ok(see_other("/budgets?notice=budget_deleted"))
}

// ---- the dashboard's panel ----

/// Spend this month against the month-end forecast and the budgets.
pub struct BudgetPanel {
    pub month_to_date: String,
    pub forecast: String,
    pub as_of: String,
    pub budgets: Vec<BudgetLine>,
    pub crossed: usize,
}

pub async fn panel(state: &AppState, web: &Web) -> Result<Option<BudgetPanel>, Problem> {
    let caller = web.caller();
    let forecast = match api::forecast_of(state, &caller, SpendMetric::Billed, &[]).await {
        Ok(f) => f,
        Err(e) if e.status == StatusCode::FORBIDDEN => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let budgets: Vec<BudgetLine> = all_budgets(state, web).await?.iter().map(line).collect();
    Ok(Some(BudgetPanel {
        month_to_date: format::money(forecast.month_to_date, &forecast.currency),
        forecast: format::money(forecast.month_end, &forecast.currency),
        as_of: forecast.as_of.format("%b %-d").to_string(),
        crossed: budgets.iter().filter(|b| b.crossed).count(),
        budgets,
    }))
}
