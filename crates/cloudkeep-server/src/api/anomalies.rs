//! Spend anomalies: incidents (anomalous days of a subscription's service,
//! and first usage on a service or in a region) with the resources and
//! meters that explain them, and top movers period over period. Read with
//! the permission that reads spend (viewers and above); the sync engine
//! finds the incidents after each run that collected spend.

use axum::Json;
use axum::extract::{Path, State};
use chrono::NaiveDate;
use cloudkeep_domain::Permission;
use cloudkeep_domain::anomaly::{IncidentKind, MoverDimension, MoverPeriod};
use cloudkeep_store::IncidentFilter;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use crate::auth::Caller;
use crate::error::{E401, E403, E404, E422, Params};
use crate::list::{Page, page_request};
use crate::wire::{IncidentView, MoverView, MoversView};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_anomalies))
        .routes(routes!(get_anomaly))
        .routes(routes!(get_movers))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AnomaliesQuery {
    /// One Azure subscription id.
    pub subscription: Option<String>,
    /// `anomaly`, `new_service` or `new_region`.
    pub kind: Option<IncidentKind>,
    /// Incidents with a day on or after this one.
    pub from: Option<NaiveDate>,
    /// Incidents with a day on or before this one.
    pub to: Option<NaiveDate>,
    /// `true`: ended incidents only; `false`: open ones only.
    pub ended: Option<bool>,
    /// One service (FOCUS `ServiceName`): its anomalies and its new usage.
    pub service: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
}

/// Incidents, latest first day first, each with its contributors.
#[utoipa::path(get, path = "/api/v1/spend/anomalies", tag = "spend", params(AnomaliesQuery),
    responses((status = 200, body = Page<IncidentView>), E401, E403, E422))]
pub async fn list_anomalies(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<AnomaliesQuery>,
) -> Result<Json<Page<IncidentView>>, ApiError> {
    caller.require(Permission::ReadData, "reading spend")?;
    let page = page_request(q.limit.as_deref(), q.after.as_deref())?;
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from > to {
            return Err(ApiError::unprocessable(
                "invalid_query",
                format!("the period starts ({from}) after it ends ({to}): from is on or before to"),
            ));
        }
    }
    let filter = IncidentFilter {
        subscription: q.subscription,
        kind: q.kind,
        from: q.from,
        to: q.to,
        ended: q.ended,
        service: q.service.filter(|s| !s.trim().is_empty()),
    };
    let found = state
        .store
        .incidents(caller.scope(), &filter, &page)
        .await?;
    Ok(Json(Page::from_store(found)))
}

/// One incident with its contributors.
#[utoipa::path(get, path = "/api/v1/spend/anomalies/{id}", tag = "spend", params(("id" = Uuid, Path, description = "incident id")),
    responses((status = 200, body = IncidentView), E401, E403, E404))]
pub async fn get_anomaly(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<IncidentView>, ApiError> {
    caller.require(Permission::ReadData, "reading spend")?;
    let id: uuid::Uuid = parse_id(&id, "incident")?;
    Ok(Json(IncidentView::from(
        &state.store.incident(caller.scope(), id).await?,
    )))
}

const DEFAULT_TOP: usize = 10;
const MAX_TOP: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MoversQuery {
    /// `week` (the last 7 days against the 7 before, the default) or
    /// `month` (30 days against 30).
    pub period: Option<MoverPeriod>,
    /// `service` (the default), `resource_group` or `resource`.
    pub by: Option<MoverDimension>,
    /// The period's last day (default: today, UTC).
    pub to: Option<NaiveDate>,
    /// Movers answered, 1 to 100 (default 10).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub top: Option<String>,
}

/// Top movers: cost (EffectiveCost) by service, resource group or
/// resource over the period against the one before, largest absolute
/// change first.
#[utoipa::path(get, path = "/api/v1/spend/movers", tag = "spend", params(MoversQuery),
    responses((status = 200, body = MoversView), E401, E403, E422))]
pub async fn get_movers(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<MoversQuery>,
) -> Result<Json<MoversView>, ApiError> {
    caller.require(Permission::ReadData, "reading spend")?;
    let top = match q.top.as_deref() {
        None => DEFAULT_TOP,
        Some(raw) => raw
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_TOP).contains(n))
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "invalid_query",
                    format!("top is 1 to {MAX_TOP}, not '{raw}'"),
                )
            })?,
    };
    let period = q.period.unwrap_or(MoverPeriod::Week);
    let by = q.by.unwrap_or(MoverDimension::Service);
    let to = q.to.unwrap_or_else(|| state.store.now().date_naive());
    cloudkeep_domain::spend::check_period(to, to)
        .map_err(|e| ApiError::unprocessable("invalid_query", e.to_string()))?;
    let m = state
        .store
        .spend_movers(caller.scope(), period, by, to, top)
        .await?;
    Ok(Json(MoversView {
        period,
        by,
        from: m.current.0,
        to: m.current.1,
        previous_from: m.previous.0,
        previous_to: m.previous.1,
        currency: match m.currencies.as_slice() {
            [] => "USD".into(),
            many => many.join(","),
        },
        movers: m
            .movers
            .iter()
            .map(|x| MoverView {
                key: x.key.clone(),
                current: x.current,
                previous: x.previous,
                change: x.change(),
                change_ratio: x.change_ratio(),
            })
            .collect(),
    }))
}
