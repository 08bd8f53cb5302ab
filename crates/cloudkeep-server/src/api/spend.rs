//! Spend: analyses (a metric by time bucket and up to two groupings, with
//! filters and the top groups), the month's summary, the reconciliation of
//! stored rows with Azure's daily totals, a streamed FOCUS 1.2 CSV export,
//! the organisation's tag key aliases and a connection's trailing window.
//! Viewers and above read spend; admins and owners change its settings.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{Duration, NaiveDate};
use cloudkeep_domain::spend::{
    SpendDimension, SpendFilter, SpendGranularity, SpendGroup, SpendInputError, SpendMetric,
    check_groups, check_period, month_start, months_before,
};
use cloudkeep_domain::{ConnectionId, Permission};
use cloudkeep_store::{ExportCursor, FocusRow, SpendQuery, region_display};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use crate::auth::Caller;
use crate::error::{Body, E401, E403, E404, E409, E422};
use crate::wire::{
    SpendDayView, SpendMover, SpendPoint, SpendSeriesView, SpendSettingsView, SpendSummary,
    SpendView, TagAliasKey, TagAliases,
};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_spend))
        .routes(routes!(spend_summary))
        .routes(routes!(spend_reconciliation))
        .routes(routes!(spend_export))
        .routes(routes!(get_tag_aliases, set_tag_aliases))
        .routes(routes!(put_tag_alias, delete_tag_alias))
        .routes(routes!(get_spend_settings, set_spend_settings))
}

/// Groups answered by name unless `top` says otherwise.
const DEFAULT_TOP: usize = 10;
const MAX_TOP: usize = 100;
/// Days of an analysis unless `from` says otherwise.
const DEFAULT_DAYS: i64 = 30;

fn invalid(e: SpendInputError) -> ApiError {
    ApiError::unprocessable("invalid_query", e.to_string())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SpendParams {
    /// `billed` (FOCUS BilledCost, the default) or `effective` (EffectiveCost, amortised).
    pub metric: Option<SpendMetric>,
    /// `day` (the default), `week` (from Monday) or `month`.
    pub granularity: Option<SpendGranularity>,
    /// The first day (default: 29 days before `to`).
    pub from: Option<NaiveDate>,
    /// The last day (default: today, UTC).
    pub to: Option<NaiveDate>,
    /// Up to two of subscription, resource_group, service, service_category,
    /// region, resource_type, resource, tag:<key>; repeated or comma-separated.
    pub group_by: Option<String>,
    /// Repeated: `<dimension>=<value>` (values of one dimension are
    /// alternatives), `tag:<key>=<value>`, `tag:<key>` (has the tag),
    /// `!tag:<key>` (lacks it).
    pub filter: Option<String>,
    /// Groups answered by name, 1 to 100 (default 10); the rest are "other".
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub top: Option<String>,
}

/// An analysis as asked in a query string (group_by and filter repeat).
#[derive(Debug, Clone)]
pub struct SpendAsk {
    pub query: SpendQuery,
    pub group_by: Vec<String>,
}

fn parse_date(name: &str, v: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d").map_err(|_| {
        ApiError::unprocessable(
            "invalid_query",
            format!("{name} '{v}' is not a date: use YYYY-MM-DD"),
        )
    })
}

/// A `metric` parameter, or a 422 naming the allowed ones.
pub(crate) fn parse_metric(v: &str) -> Result<SpendMetric, ApiError> {
    v.parse().map_err(|e: cloudkeep_domain::ParseError| {
        ApiError::unprocessable("invalid_query", e.to_string())
    })
}

/// A `filter` parameter, or a 422 naming the forms allowed.
pub(crate) fn parse_filter(v: &str) -> Result<SpendFilter, ApiError> {
    v.parse::<SpendFilter>().map_err(invalid)
}

fn today(state: &AppState) -> NaiveDate {
    state.store.now().date_naive()
}

/// Reads an analysis from a query string; every mistake is a 422 that
/// names what is allowed.
pub fn parse_spend_query(raw: Option<&str>, today: NaiveDate) -> Result<SpendAsk, ApiError> {
    let mut metric = SpendMetric::Billed;
    let mut granularity = SpendGranularity::Day;
    let (mut from, mut to) = (None, None);
    let mut groups = Vec::new();
    let mut filters = Vec::new();
    let mut top = DEFAULT_TOP;
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        // An empty parameter is no choice, as in the API's other queries.
        if v.trim().is_empty() {
            continue;
        }
        match k.as_ref() {
            "metric" => metric = parse_metric(&v)?,
            "granularity" => {
                granularity = v.parse().map_err(|e: cloudkeep_domain::ParseError| {
                    ApiError::unprocessable("invalid_query", e.to_string())
                })?
            }
            "from" => from = Some(parse_date("from", &v)?),
            "to" => to = Some(parse_date("to", &v)?),
            "group_by" => {
                for g in v.split(',').filter(|g| !g.trim().is_empty()) {
                    groups.push(g.parse::<SpendGroup>().map_err(invalid)?);
                }
            }
            "filter" => filters.push(parse_filter(&v)?),
            "top" => {
                top = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_TOP).contains(n))
                    .ok_or_else(|| {
                        ApiError::unprocessable(
                            "invalid_query",
                            format!("top is 1 to {MAX_TOP}, not '{v}'"),
                        )
                    })?
            }
            other => {
                return Err(ApiError::unprocessable(
                    "invalid_query",
                    format!(
                        "unknown parameter '{other}'; allowed: metric, granularity, from, to, group_by, filter, top"
                    ),
                ));
            }
        }
    }
    let to = to.unwrap_or(today);
    let from = from.unwrap_or(to - Duration::days(DEFAULT_DAYS - 1));
    check_period(from, to).map_err(invalid)?;
    check_groups(&groups).map_err(invalid)?;
    Ok(SpendAsk {
        group_by: groups.iter().map(ToString::to_string).collect(),
        query: SpendQuery {
            metric,
            granularity,
            from,
            to,
            groups,
            filters,
            top,
        },
    })
}

fn currency_of(currencies: &[String]) -> String {
    match currencies {
        [] => "USD".to_string(),
        [one] => one.clone(),
        many => many.join(","),
    }
}

fn points(p: &[(NaiveDate, f64)]) -> Vec<SpendPoint> {
    p.iter()
        .map(|(start, cost)| SpendPoint {
            start: *start,
            cost: *cost,
        })
        .collect()
}

/// Runs an analysis for a caller (the web pages call this too).
pub async fn spend_view(
    state: &AppState,
    caller: &Caller,
    ask: SpendAsk,
) -> Result<SpendView, ApiError> {
    caller.require(Permission::ReadData, "reading spend")?;
    let q = &ask.query;
    let answer = state.store.spend_analysis(caller.scope(), q).await?;
    Ok(SpendView {
        metric: q.metric,
        granularity: q.granularity,
        from: q.from,
        to: q.to,
        group_by: ask.group_by.clone(),
        currency: currency_of(&answer.currencies),
        currencies: answer.currencies.clone(),
        total: answer.total,
        totals: points(&answer.buckets),
        series: answer
            .series
            .iter()
            .map(|s| SpendSeriesView {
                key: s.key.clone(),
                other: s.other,
                total: s.total,
                points: points(&s.points),
            })
            .collect(),
    })
}

/// Cost over a period by time bucket, grouped by up to two dimensions or
/// tag keys, filtered; the top groups by name and the rest as "other".
#[utoipa::path(get, path = "/api/v1/spend", tag = "spend", params(SpendParams),
    responses((status = 200, body = SpendView), E401, E403, E422))]
pub async fn get_spend(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<SpendView>, ApiError> {
    let ask = parse_spend_query(raw.as_deref(), today(&state))?;
    Ok(Json(spend_view(&state, &caller, ask).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// `billed` (the default) or `effective`.
    pub metric: Option<SpendMetric>,
}

/// Movers: the groups whose cost changed most, this month so far against
/// the same days of last month.
async fn movers(
    state: &AppState,
    caller: &Caller,
    metric: SpendMetric,
    dim: SpendDimension,
    (from, to): (NaiveDate, NaiveDate),
    (prev_from, prev_to): (NaiveDate, NaiveDate),
) -> Result<Vec<SpendMover>, ApiError> {
    let totals = |from, to| {
        let q = SpendQuery {
            metric,
            granularity: SpendGranularity::Month,
            from,
            to,
            groups: vec![SpendGroup::Dimension(dim)],
            filters: Vec::new(),
            top: usize::MAX,
        };
        async move {
            let a = state.store.spend_analysis(caller.scope(), &q).await?;
            Ok::<_, ApiError>(
                a.series
                    .into_iter()
                    .map(|s| (s.key.into_iter().next().flatten(), s.total))
                    .collect::<BTreeMap<_, _>>(),
            )
        }
    };
    let now = totals(from, to).await?;
    let before = totals(prev_from, prev_to).await?;
    let mut keys: Vec<Option<String>> = now.keys().chain(before.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    let mut out: Vec<SpendMover> = keys
        .into_iter()
        .map(|k| {
            let current = now.get(&k).copied().unwrap_or(0.0);
            let previous = before.get(&k).copied().unwrap_or(0.0);
            SpendMover {
                key: k,
                current,
                previous,
                change: current - previous,
            }
        })
        .collect();
    out.sort_by(|a, b| b.change.abs().total_cmp(&a.change.abs()));
    out.truncate(5);
    Ok(out)
}

/// The month's summary for a caller (the web pages call this too).
pub async fn summary_view(
    state: &AppState,
    caller: &Caller,
    metric: SpendMetric,
) -> Result<SpendSummary, ApiError> {
    caller.require(Permission::ReadData, "reading spend")?;
    let today = today(state);
    let this_month = month_start(today);
    let last_month = months_before(today, 1);
    let last_month_end = this_month - Duration::days(1);
    // The same day of last month, or its last day when it is shorter.
    let same_day = (last_month
        + Duration::days(today.signed_duration_since(this_month).num_days()))
    .min(last_month_end);
    let total = |from, to| {
        let q = SpendQuery {
            metric,
            granularity: SpendGranularity::Month,
            from,
            to,
            groups: Vec::new(),
            filters: Vec::new(),
            top: 1,
        };
        async move { state.store.spend_analysis(caller.scope(), &q).await }
    };
    let mtd = total(this_month, today).await?;
    let last = total(last_month, last_month_end).await?;
    let same = total(last_month, same_day).await?;
    let periods = ((this_month, today), (last_month, same_day));
    Ok(SpendSummary {
        metric,
        currency: currency_of(&mtd.currencies),
        today,
        month_to_date: mtd.total,
        last_month: last.total,
        last_month_same_days: same.total,
        movers_by_service: movers(
            state,
            caller,
            metric,
            SpendDimension::Service,
            periods.0,
            periods.1,
        )
        .await?,
        movers_by_resource_group: movers(
            state,
            caller,
            metric,
            SpendDimension::ResourceGroup,
            periods.0,
            periods.1,
        )
        .await?,
    })
}

/// Month to date, last month, the same days of last month, and this
/// month's top movers by service and by resource group.
#[utoipa::path(get, path = "/api/v1/spend/summary", tag = "spend", params(SummaryParams),
    responses((status = 200, body = SpendSummary), E401, E403, E422))]
pub async fn spend_summary(
    State(state): State<AppState>,
    caller: Caller,
    crate::error::Params(q): crate::error::Params<SummaryParams>,
) -> Result<Json<SpendSummary>, ApiError> {
    Ok(Json(
        summary_view(&state, &caller, q.metric.unwrap_or(SpendMetric::Billed)).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeriodParams {
    /// The first day (default: 29 days before `to`).
    pub from: Option<NaiveDate>,
    /// The last day (default: today, UTC).
    pub to: Option<NaiveDate>,
    /// One Azure subscription id.
    pub subscription: Option<String>,
}

fn period(
    state: &AppState,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let to = to.unwrap_or_else(|| today(state));
    let from = from.unwrap_or(to - Duration::days(DEFAULT_DAYS - 1));
    check_period(from, to).map_err(invalid)?;
    Ok((from, to))
}

/// Per subscription and day: Azure's ungrouped totals, what the rows
/// grouped by resource and meter summed to, and the difference kept as a
/// reconciliation row.
#[utoipa::path(get, path = "/api/v1/spend/reconciliation", tag = "spend", params(PeriodParams),
    responses((status = 200, body = Vec<SpendDayView>), E401, E403, E422))]
pub async fn spend_reconciliation(
    State(state): State<AppState>,
    caller: Caller,
    crate::error::Params(q): crate::error::Params<PeriodParams>,
) -> Result<Json<Vec<SpendDayView>>, ApiError> {
    caller.require(Permission::ReadData, "reading spend")?;
    let (from, to) = period(&state, q.from, q.to)?;
    let days = state
        .store
        .spend_reconciliation(caller.scope(), from, to, q.subscription.as_deref())
        .await?;
    Ok(Json(
        days.into_iter()
            .map(|d| SpendDayView {
                billed_difference: d.billed_total - d.billed_rows,
                effective_difference: d.effective_total - d.effective_rows,
                subscription: d.subscription,
                day: d.day,
                currency: d.currency,
                billed_total: d.billed_total,
                effective_total: d.effective_total,
                billed_rows: d.billed_rows,
                effective_rows: d.effective_rows,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `focus-csv` (FOCUS 1.2, the only format).
    pub format: Option<String>,
    /// The first day (default: 29 days before `to`).
    pub from: Option<NaiveDate>,
    /// The last day (default: today, UTC).
    pub to: Option<NaiveDate>,
}

/// The FOCUS 1.2 columns an export writes, in order (see docs/spend.md
/// for what each holds and which are null from the Query API).
pub const FOCUS_COLUMNS: &[&str] = &[
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
    "x_ChargeType",
    "x_CommitmentDiscountStatus",
    "x_PricingCategory",
    "x_ResourceGroupName",
    "x_SkuMeter",
];

fn csv_field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

fn iso(day: NaiveDate) -> String {
    format!("{day}T00:00:00Z")
}

/// One column of a FOCUS row ("" is null).
fn focus_cell(column: &str, r: &FocusRow) -> String {
    let m = &r.meter;
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    match column {
        "BilledCost" => format!("{}", r.billed),
        "EffectiveCost" | "PricingCurrencyEffectiveCost" => format!("{}", r.effective),
        "BillingCurrency" | "PricingCurrency" => r.currency.clone(),
        "BillingPeriodStart" => iso(month_start(r.day)),
        "BillingPeriodEnd" => iso(cloudkeep_domain::spend::month_end(r.day) + Duration::days(1)),
        "ChargeCategory" => m.charge_category.clone(),
        "ChargeDescription" => match &m.service_name {
            Some(s) => format!("{} ({s})", m.meter),
            None => m.meter.clone(),
        },
        "ChargeFrequency" => match m.charge_category.as_str() {
            "Usage" => "Usage-Based",
            _ => "One-Time",
        }
        .into(),
        "ChargePeriodStart" => iso(r.day),
        "ChargePeriodEnd" => iso(r.day + Duration::days(1)),
        // Without a commitment's id (not a Query dimension), FOCUS wants
        // its other columns null: what Azure said is kept in x_ columns.
        "PricingCategory" => match m.pricing_category.as_deref() {
            Some("Standard") => "Standard".into(),
            _ => String::new(),
        },
        "x_PricingCategory" => opt(&m.pricing_category),
        "x_CommitmentDiscountStatus" => opt(&m.commitment_status),
        "InvoiceIssuerName" | "ProviderName" | "PublisherName" => "Microsoft".into(),
        "RegionId" => opt(&r.region_id),
        "RegionName" => region_display(r.region_id.as_deref()).unwrap_or_default(),
        "ResourceId" => opt(&r.resource_id),
        "ResourceName" => opt(&r.resource_name),
        "ResourceType" => opt(&r.resource_type),
        "ServiceCategory" => r.service_category.clone(),
        "ServiceName" => opt(&m.service_name),
        "ServiceSubcategory" => format!("Other ({})", r.service_category),
        "SubAccountId" => format!("/subscriptions/{}", r.sub_account_id),
        "SubAccountName" => r.sub_account_name.clone(),
        "SubAccountType" => "Subscription".into(),
        "Tags" if !r.tags.is_empty() => serde_json::to_string(&r.tags).unwrap_or_default(),
        "x_ChargeType" => m.charge_type.clone(),
        "x_ResourceGroupName" => opt(&r.resource_group),
        // FOCUS wants SkuMeter null without a SkuId (no Query dimension).
        "x_SkuMeter" => m.meter.clone(),
        _ => String::new(),
    }
}

/// One FOCUS row as CSV cells (empty is null), in `FOCUS_COLUMNS` order.
pub fn focus_cells(r: &FocusRow) -> Vec<String> {
    FOCUS_COLUMNS.iter().map(|c| focus_cell(c, r)).collect()
}

/// Rows an export reads from the store at once.
const EXPORT_PAGE: usize = 5000;

/// Streams a period's cost rows as FOCUS 1.2 CSV, a page at a time, so
/// memory stays one page however long the period.
#[utoipa::path(get, path = "/api/v1/spend/export", tag = "spend", params(ExportParams),
    responses((status = 200, content_type = "text/csv", description = "FOCUS 1.2 CSV, every cost row of the period (reconciliation rows included)"), E401, E403, E422))]
pub async fn spend_export(
    State(state): State<AppState>,
    caller: Caller,
    crate::error::Params(q): crate::error::Params<ExportParams>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadData, "exporting spend")?;
    match q.format.as_deref() {
        None | Some("focus-csv") => {}
        Some(other) => {
            return Err(ApiError::unprocessable(
                "invalid_query",
                format!("'{other}' is not an export format; allowed: focus-csv"),
            ));
        }
    }
    let (from, to) = period(&state, q.from, q.to)?;
    let scope = caller.scope().clone();
    enum At {
        Header,
        After(Option<ExportCursor>),
        Done,
    }
    let chunks = futures_util::stream::try_unfold(At::Header, move |at| {
        let (state, scope) = (state.clone(), scope.clone());
        async move {
            let after = match at {
                At::Done => return Ok::<_, std::io::Error>(None),
                At::Header => {
                    return Ok(Some((FOCUS_COLUMNS.join(",") + "\n", At::After(None))));
                }
                At::After(a) => a,
            };
            let rows = state
                .store
                .spend_export_page(&scope, from, to, after, EXPORT_PAGE)
                .await
                .map_err(std::io::Error::other)?;
            let mut chunk = String::with_capacity(rows.len() * 400);
            for r in &rows {
                for (i, cell) in focus_cells(r).iter().enumerate() {
                    if i > 0 {
                        chunk.push(',');
                    }
                    csv_field(&mut chunk, cell);
                }
                chunk.push('\n');
            }
            let next = match rows.last() {
                Some(last) if rows.len() == EXPORT_PAGE => {
                    At::After(Some((last.day, last.resource_key, last.meter_key)))
                }
                _ => At::Done,
            };
            Ok(Some((chunk, next)))
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"cloudkeep-focus.csv\"",
            ),
        ],
        HttpBody::from_stream(chunks),
    )
        .into_response())
}

/// The organisation's tag key aliases.
#[utoipa::path(get, path = "/api/v1/spend/tag-aliases", tag = "spend",
    responses((status = 200, body = TagAliases), E401, E403))]
pub async fn get_tag_aliases(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<TagAliases>, ApiError> {
    caller.require(Permission::ReadData, "reading tag aliases")?;
    Ok(Json(TagAliases {
        aliases: state.store.spend_tag_aliases(caller.scope()).await?,
    }))
}

/// Replaces the organisation's tag key aliases (`{"aliases": {"environment":
/// "env", "Env": "env"}}`): tag keys then match case-insensitively through
/// them in analyses. Stored tags stay as Azure has them. Audited.
#[utoipa::path(put, path = "/api/v1/spend/tag-aliases", tag = "spend", request_body = TagAliases,
    responses((status = 200, body = TagAliases), E401, E403, E422))]
pub async fn set_tag_aliases(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<TagAliases>,
) -> Result<Json<TagAliases>, ApiError> {
    caller.require(Permission::ManageConnections, "changing tag aliases")?;
    Ok(Json(TagAliases {
        aliases: state
            .store
            .set_spend_tag_aliases(caller.scope(), &body.aliases, &caller.actor())
            .await?,
    }))
}

/// Makes one alias stand for a key (`{"key": "env"}` at
/// `/spend/tag-aliases/environment`), leaving the others as they are: two
/// people adding aliases at once both keep theirs. 409 if the alias
/// already stands for another key; 422 for an alias of a key to itself or
/// a chain (a key that is an alias, an alias others point to). Audited.
#[utoipa::path(put, path = "/api/v1/spend/tag-aliases/{alias}", tag = "spend", request_body = TagAliasKey,
    params(("alias" = String, Path, description = "the other spelling of the key")),
    responses((status = 200, body = TagAliases, description = "every alias, with this one"), E401, E403, E409, E422))]
pub async fn put_tag_alias(
    State(state): State<AppState>,
    caller: Caller,
    Path(alias): Path<String>,
    Body(body): Body<TagAliasKey>,
) -> Result<Json<TagAliases>, ApiError> {
    caller.require(Permission::ManageConnections, "changing tag aliases")?;
    state
        .store
        .add_spend_tag_alias(caller.scope(), &alias, &body.key, &caller.actor())
        .await?;
    get_tag_aliases(State(state), caller).await
}

/// Removes one alias, leaving the others. Audited.
#[utoipa::path(delete, path = "/api/v1/spend/tag-aliases/{alias}", tag = "spend",
    params(("alias" = String, Path, description = "the alias")),
    responses((status = 204, description = "removed"), E401, E403, E404))]
pub async fn delete_tag_alias(
    State(state): State<AppState>,
    caller: Caller,
    Path(alias): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::ManageConnections, "changing tag aliases")?;
    state
        .store
        .remove_spend_tag_alias(caller.scope(), &alias, &caller.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A connection's spend settings.
#[utoipa::path(get, path = "/api/v1/connections/{id}/spend", tag = "spend",
    params(("id" = String, Path, description = "the connection")),
    responses((status = 200, body = SpendSettingsView), E401, E403, E404))]
pub async fn get_spend_settings(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<SpendSettingsView>, ApiError> {
    caller.require(Permission::ReadData, "reading spend settings")?;
    let id: ConnectionId = parse_id(&id, "connection")?;
    let conn = state.store.connection(caller.scope(), id).await?;
    Ok(Json(SpendSettingsView {
        trailing_days: state
            .store
            .spend_trailing_days(caller.scope(), conn.id)
            .await?,
    }))
}

/// Changes a connection's trailing window (days re-pulled at every sync,
/// 1 to 31). Audited.
#[utoipa::path(patch, path = "/api/v1/connections/{id}/spend", tag = "spend",
    params(("id" = String, Path, description = "the connection")), request_body = SpendSettingsView,
    responses((status = 200, body = SpendSettingsView), E401, E403, E404, E422))]
pub async fn set_spend_settings(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<SpendSettingsView>,
) -> Result<Json<SpendSettingsView>, ApiError> {
    caller.require(Permission::ManageConnections, "changing spend settings")?;
    let id: ConnectionId = parse_id(&id, "connection")?;
    Ok(Json(SpendSettingsView {
        trailing_days: state
            .store
            .set_spend_trailing_days(caller.scope(), id, body.trailing_days, &caller.actor())
            .await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_analyses_and_names_what_is_wrong() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 3).expect("date");
        let ask = parse_spend_query(
            Some("group_by=service,tag:Env&filter=tag:env=prod&filter=region%3Dwesteurope&granularity=month&top=3"),
            today,
        )
        .expect("parses");
        assert_eq!(ask.group_by, vec!["service", "tag:env"]);
        assert_eq!(ask.query.filters.len(), 2);
        assert_eq!(ask.query.top, 3);
        assert_eq!(ask.query.to, today);
        assert_eq!((ask.query.to - ask.query.from).num_days(), 29);
        let empty = parse_spend_query(Some("from=&to=&group_by=&metric="), today).expect("empty");
        assert_eq!(empty.query.to, today, "an empty parameter is no choice");
        for (bad, says) in [
            ("group_by=colour", "resource_group"),
            ("group_by=service,region,resource", "at most two"),
            ("from=2026-12-02&to=2026-12-01", "after it ends"),
            ("from=2024-01-01", "at most 400"),
            ("filter=tag:", "tag:<key>"),
            ("metric=list", "billed, effective"),
            ("colour=red", "unknown parameter"),
            ("top=0", "1 to 100"),
        ] {
            let e = parse_spend_query(Some(bad), today).expect_err(bad);
            let e = format!("{e:?}");
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn quotes_csv_fields() {
        let mut s = String::new();
        csv_field(&mut s, r#"{"a":"b,c"}"#);
        assert_eq!(s, r#""{""a"":""b,c""}""#);
    }
}
