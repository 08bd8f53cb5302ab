//! Budgets and forecasts: a monthly amount over a scope with thresholds on
//! actual spend and on the month-end forecast (crossings are alerts,
//! delivered to the webhooks), and the month's forecast for any spend
//! filters. Viewers and above read them; admins and owners make and
//! change budgets, as they change spend's other settings.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use chrono::NaiveDate;
use cloudkeep_domain::Permission;
use cloudkeep_domain::budget::{BudgetDefinition, Forecast, filter_text};
use cloudkeep_domain::spend::{SpendFilter, SpendMetric};
use cloudkeep_store::{Budget, BudgetStatus};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use crate::auth::Caller;
use crate::error::{Body, E401, E403, E404, E422, Params};
use crate::list::{Page, page_request};
use crate::wire::{
    BudgetDetail, BudgetRequest, BudgetStatusView, BudgetView, ForecastView, SpendPoint,
};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_budgets, create_budget))
        .routes(routes!(get_budget, replace_budget, delete_budget))
        .routes(routes!(spend_forecast))
}

fn today(state: &AppState) -> NaiveDate {
    state.store.now().date_naive()
}

fn definition(req: BudgetRequest) -> Result<BudgetDefinition, ApiError> {
    let filters = req
        .filters
        .iter()
        .map(|f| f.parse::<SpendFilter>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::unprocessable("invalid_budget", e.to_string()))?;
    BudgetDefinition {
        name: req.name,
        amount: req.amount,
        metric: req.metric,
        filters,
        actual_thresholds: req.actual_thresholds,
        forecast_thresholds: req.forecast_thresholds,
    }
    .checked()
    .map_err(|e| ApiError::unprocessable("invalid_budget", e.to_string()))
}

fn points(p: &[(NaiveDate, f64)]) -> Vec<SpendPoint> {
    p.iter()
        .map(|(start, cost)| SpendPoint {
            start: *start,
            cost: *cost,
        })
        .collect()
}

fn status_view(s: &BudgetStatus) -> BudgetStatusView {
    BudgetStatusView {
        month: s.month,
        currency: s.currency.clone(),
        actual: s.actual,
        actual_pct: s.actual_pct,
        forecast: s.forecast.month_end_total,
        forecast_pct: s.forecast_pct,
        actual_crossed: s.actual_crossed.clone(),
        forecast_crossed: s.forecast_crossed.clone(),
        as_of: s.forecast.as_of,
    }
}

fn budget_view(b: &Budget, s: &BudgetStatus) -> BudgetView {
    let d = &b.definition;
    BudgetView {
        id: b.id,
        name: d.name.clone(),
        amount: d.amount,
        metric: d.metric,
        filters: d.filters.iter().map(filter_text).collect(),
        actual_thresholds: d.actual_thresholds.clone(),
        forecast_thresholds: d.forecast_thresholds.clone(),
        created_at: b.created_at,
        created_by: b.created_by.clone(),
        updated_at: b.updated_at,
        status: status_view(s),
    }
}

fn forecast_view(
    metric: SpendMetric,
    currency: &str,
    f: &Forecast,
    actual: &[(NaiveDate, f64)],
) -> ForecastView {
    ForecastView {
        metric,
        currency: currency.to_string(),
        month: cloudkeep_domain::spend::month_start(f.month_end),
        as_of: f.as_of,
        month_to_date: f.month_to_date,
        month_end: f.month_end_total,
        actual: points(actual),
        forecast: points(&f.remaining),
    }
}

/// A budget with where it stands this month (the web pages call this too).
pub async fn budget_detail(
    state: &AppState,
    caller: &Caller,
    b: &Budget,
) -> Result<BudgetDetail, ApiError> {
    let s = state
        .store
        .budget_status(caller.scope(), b, today(state))
        .await?;
    Ok(BudgetDetail {
        budget: budget_view(b, &s),
        days: forecast_view(b.definition.metric, &s.currency, &s.forecast, &s.daily),
    })
}

/// After a change, the budgets are held against their thresholds at once,
/// so a budget made already crossed alerts now, not after the next sync.
async fn review(state: &AppState, caller: &Caller) {
    if let Err(e) =
        cloudkeep_sync::budgets::review(&state.store, caller.scope(), "system:budgets").await
    {
        tracing::warn!(error = %e, "could not review the budgets after a change");
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BudgetsQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
}

/// The organisation's budgets, oldest first, each with where it stands
/// this month.
#[utoipa::path(get, path = "/api/v1/budgets", tag = "budgets", params(BudgetsQuery),
    responses((status = 200, body = Page<BudgetView>), E401, E403, E422))]
pub async fn list_budgets(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<BudgetsQuery>,
) -> Result<Json<Page<BudgetView>>, ApiError> {
    caller.require(Permission::ReadData, "reading budgets")?;
    let page = page_request(q.limit.as_deref(), q.after.as_deref())?;
    let budgets = state.store.budgets(caller.scope(), &page).await?;
    let mut items = Vec::with_capacity(budgets.items.len());
    for b in &budgets.items {
        let s = state
            .store
            .budget_status(caller.scope(), b, today(&state))
            .await?;
        items.push(budget_view(b, &s));
    }
    Ok(Json(Page {
        items,
        next: budgets.next.map(|c| c.to_string()),
    }))
}

/// Makes a budget; a threshold already crossed alerts at once.
#[utoipa::path(post, path = "/api/v1/budgets", tag = "budgets", request_body = BudgetRequest,
    responses((status = 201, body = BudgetDetail), E401, E403, E422))]
pub async fn create_budget(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<BudgetRequest>,
) -> Result<(StatusCode, Json<BudgetDetail>), ApiError> {
    caller.require(Permission::ManageConnections, "making budgets")?;
    let def = definition(req)?;
    let b = state
        .store
        .create_budget(caller.scope(), &def, &caller.actor())
        .await?;
    review(&state, &caller).await;
    Ok((
        StatusCode::CREATED,
        Json(budget_detail(&state, &caller, &b).await?),
    ))
}

/// A budget, with its month day by day: actual cost so far and the
/// forecast of each remaining day.
#[utoipa::path(get, path = "/api/v1/budgets/{id}", tag = "budgets", params(("id" = Uuid, Path, description = "budget id")),
    responses((status = 200, body = BudgetDetail), E401, E403, E404))]
pub async fn get_budget(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<BudgetDetail>, ApiError> {
    caller.require(Permission::ReadData, "reading budgets")?;
    let id: uuid::Uuid = parse_id(&id, "budget")?;
    let b = state.store.budget(caller.scope(), id).await?;
    Ok(Json(budget_detail(&state, &caller, &b).await?))
}

/// Replaces a budget's definition.
#[utoipa::path(put, path = "/api/v1/budgets/{id}", tag = "budgets", params(("id" = Uuid, Path, description = "budget id")),
    request_body = BudgetRequest,
    responses((status = 200, body = BudgetDetail), E401, E403, E404, E422))]
pub async fn replace_budget(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<BudgetRequest>,
) -> Result<Json<BudgetDetail>, ApiError> {
    caller.require(Permission::ManageConnections, "changing budgets")?;
    let id: uuid::Uuid = parse_id(&id, "budget")?;
    let def = definition(req)?;
    let b = state
        .store
        .update_budget(caller.scope(), id, &def, &caller.actor())
        .await?;
    review(&state, &caller).await;
    Ok(Json(budget_detail(&state, &caller, &b).await?))
}

/// Deletes a budget; its open alerts resolve.
#[utoipa::path(delete, path = "/api/v1/budgets/{id}", tag = "budgets", params(("id" = Uuid, Path, description = "budget id")),
    responses((status = 204, description = "deleted"), E401, E403, E404))]
pub async fn delete_budget(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ManageConnections, "deleting budgets")?;
    let id: uuid::Uuid = parse_id(&id, "budget")?;
    state
        .store
        .delete_budget(caller.scope(), id, &caller.actor())
        .await?;
    review(&state, &caller).await;
    Ok(StatusCode::NO_CONTENT)
}

/// This month's forecast, for the organisation or for spend filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ForecastParams {
    /// `billed` (the default) or `effective`.
    pub metric: Option<SpendMetric>,
    /// Repeated: `<dimension>=<value>`, `tag:<key>=<value>`, `tag:<key>`, `!tag:<key>`.
    pub filter: Option<String>,
}

/// The month-end forecast: cost so far this month, and for each remaining
/// day the median of the same weekday over the last four weeks (usage
/// only: one-time purchases are left out).
#[utoipa::path(get, path = "/api/v1/spend/forecast", tag = "budgets", params(ForecastParams),
    responses((status = 200, body = ForecastView), E401, E403, E422))]
pub async fn spend_forecast(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<ForecastView>, ApiError> {
    caller.require(Permission::ReadData, "reading spend")?;
    let (metric, filters) = forecast_query(raw.as_deref())?;
    Ok(Json(forecast_of(&state, &caller, metric, &filters).await?))
}

/// The forecast for a caller (the web pages call this too).
pub async fn forecast_of(
    state: &AppState,
    caller: &Caller,
    metric: SpendMetric,
    filters: &[SpendFilter],
) -> Result<ForecastView, ApiError> {
    caller.require(Permission::ReadData, "reading spend")?;
    let (f, currency, daily) = state
        .store
        .spend_forecast(caller.scope(), metric, filters, today(state))
        .await?;
    Ok(forecast_view(metric, &currency, &f, &daily))
}

fn forecast_query(raw: Option<&str>) -> Result<(SpendMetric, Vec<SpendFilter>), ApiError> {
    let mut metric = SpendMetric::Billed;
    let mut filters = Vec::new();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if v.trim().is_empty() {
            continue;
        }
        match k.as_ref() {
            "metric" => metric = super::spend::parse_metric(&v)?,
            "filter" => filters.push(super::spend::parse_filter(&v)?),
            other => {
                return Err(ApiError::unprocessable(
                    "invalid_query",
                    format!("unknown parameter '{other}'; allowed: metric, filter"),
                ));
            }
        }
    }
    Ok((metric, filters))
}
