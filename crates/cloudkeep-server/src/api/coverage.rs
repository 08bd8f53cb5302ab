//! Tag coverage: the organisation's required tag keys, coverage of its
//! usage cost by them (cost-weighted and by resource count, broken down and
//! day by day), the untagged spend ranked by cost with a suggested value per
//! missing key, and the fix, which turns a coverage query into ordinary tag
//! edits in one call. Reading is spend's permission, the required keys are
//! set as the tag aliases are, and the fix needs what creating tag edits
//! needs.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use chrono::{Duration, NaiveDate};
use cloudkeep_domain::spend::{SpendDimension, check_period};
use cloudkeep_domain::{Permission, SubscriptionId, SyncLevel};
use cloudkeep_store::{
    CoverageFigures, CoverageQuery, CoverageScope, Covered, Tags, UntaggedQuery,
    resolve_required_keys,
};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::tag_edits::plan_resource;
use crate::auth::Caller;
use crate::error::{Body, E401, E403, E404, E422};
use crate::wire::{
    CoverageDayView, CoverageFiguresView, CoverageFixRequest, CoverageFixResult, CoverageGroupView,
    CoveredView, FixSkipped, FixValueSource, FixedResource, KeyCoverageView, RequiredTagCoverage,
    RequiredTags, TagEditView, UntaggedResourceView, UntaggedView,
};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_required_tags, set_required_tags))
        .routes(routes!(get_coverage))
        .routes(routes!(get_untagged))
        .routes(routes!(fix_coverage))
}

/// Days of a period unless `from` says otherwise.
const DEFAULT_DAYS: i64 = 30;
/// Untagged resources answered unless `top` says otherwise, and at most.
const DEFAULT_TOP: usize = 50;
const MAX_TOP: usize = 1000;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::unprocessable("invalid_query", message)
}

fn parse_date(name: &str, v: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(v.trim(), "%Y-%m-%d")
        .map_err(|_| invalid(format!("{name} '{v}' is not a date: use YYYY-MM-DD")))
}

fn period(
    state: &AppState,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<(NaiveDate, NaiveDate), ApiError> {
    let to = to.unwrap_or_else(|| state.store.now().date_naive());
    let from = from.unwrap_or(to - Duration::days(DEFAULT_DAYS - 1));
    check_period(from, to).map_err(|e| invalid(e.to_string()))?;
    Ok((from, to))
}

fn parse_top(v: &str) -> Result<usize, ApiError> {
    v.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_TOP).contains(n))
        .ok_or_else(|| invalid(format!("top is 1 to {MAX_TOP}, not '{v}'")))
}

fn parse_dimension(v: &str) -> Result<SpendDimension, ApiError> {
    let allowed = "subscription, resource_group, service";
    v.trim()
        .parse::<SpendDimension>()
        .ok()
        .filter(|d| cloudkeep_store::COVERAGE_DIMENSIONS.contains(d))
        .ok_or_else(|| {
            invalid(format!(
                "'{v}' is not a dimension coverage is broken down by; allowed: {allowed}"
            ))
        })
}

/// A coverage or untagged question as a query string asks it.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageAsk {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub scope: CoverageScope,
    pub keys: Vec<String>,
    pub by: Option<SpendDimension>,
    pub top: usize,
}

/// Reads a coverage question (`untagged`: the untagged list's, which takes
/// `top` and no `by`); every mistake is a 422 naming what is allowed.
pub fn parse_coverage_query(
    raw: Option<&str>,
    today: NaiveDate,
    untagged: bool,
) -> Result<CoverageAsk, ApiError> {
    let (mut from, mut to) = (None, None);
    let mut scope = CoverageScope::default();
    let mut keys = Vec::new();
    let mut by = None;
    let mut top = DEFAULT_TOP;
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        // An empty parameter is no choice, as in the API's other queries.
        if v.trim().is_empty() {
            continue;
        }
        match k.as_ref() {
            "from" => from = Some(parse_date("from", &v)?),
            "to" => to = Some(parse_date("to", &v)?),
            "subscription" => scope.subscription = Some(v.trim().to_string()),
            "resource_group" => scope.resource_group = Some(v.trim().to_string()),
            "service" => scope.service = Some(v.trim().to_string()),
            "key" => keys.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .map(str::to_string),
            ),
            "by" if !untagged => by = Some(parse_dimension(&v)?),
            "top" if untagged => top = parse_top(&v)?,
            other => {
                let allowed = if untagged {
                    "from, to, subscription, resource_group, service, key, top"
                } else {
                    "from, to, subscription, resource_group, service, key, by"
                };
                return Err(invalid(format!(
                    "unknown parameter '{other}'; allowed: {allowed}"
                )));
            }
        }
    }
    let to = to.unwrap_or(today);
    let from = from.unwrap_or(to - Duration::days(DEFAULT_DAYS - 1));
    check_period(from, to).map_err(|e| invalid(e.to_string()))?;
    Ok(CoverageAsk {
        from,
        to,
        scope,
        keys,
        by,
        top,
    })
}

fn currency_of(currencies: &[String]) -> String {
    match currencies {
        [] => "USD".to_string(),
        [one] => one.clone(),
        many => many.join(","),
    }
}

fn share(part: f64, whole: f64) -> Option<f64> {
    (whole.abs() > f64::EPSILON).then(|| part / whole)
}

fn covered_view(c: &Covered, f: &CoverageFigures) -> CoveredView {
    CoveredView {
        cost: c.cost,
        cost_share: share(c.cost, f.cost),
        resources: c.resources,
        resource_share: share(c.resources as f64, f.resources as f64),
    }
}

fn figures_view(f: &CoverageFigures, keys: &[String]) -> CoverageFiguresView {
    CoverageFiguresView {
        cost: f.cost,
        resources: f.resources,
        overall: covered_view(&f.all, f),
        keys: keys
            .iter()
            .zip(&f.keys)
            .map(|(k, c)| KeyCoverageView {
                key: k.clone(),
                covered: covered_view(c, f),
            })
            .collect(),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CoverageParams {
    /// The first day (default: 29 days before `to`).
    pub from: Option<NaiveDate>,
    /// The last day (default: today, UTC).
    pub to: Option<NaiveDate>,
    /// One Azure subscription id.
    pub subscription: Option<String>,
    pub resource_group: Option<String>,
    /// A FOCUS ServiceName.
    pub service: Option<String>,
    /// Required keys (or aliases) to answer for; repeated or
    /// comma-separated; default every required key.
    pub key: Option<String>,
    /// A breakdown: subscription, resource_group or service.
    pub by: Option<String>,
}

/// The organisation's required tag keys.
#[utoipa::path(get, path = "/api/v1/settings/required-tags", tag = "coverage",
    responses((status = 200, body = RequiredTags), E401, E403))]
pub async fn get_required_tags(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<RequiredTags>, ApiError> {
    caller.require(Permission::ReadData, "reading required tags")?;
    Ok(Json(RequiredTags {
        keys: state.store.required_tag_keys(caller.scope()).await?,
    }))
}

/// Replaces the organisation's required tag keys (`{"keys": ["env",
/// "owner"]}`: lower-cased, 1 to 512 characters, at most 50, none twice).
/// Audited.
#[utoipa::path(put, path = "/api/v1/settings/required-tags", tag = "coverage", request_body = RequiredTags,
    responses((status = 200, body = RequiredTags), E401, E403, E422))]
pub async fn set_required_tags(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<RequiredTags>,
) -> Result<Json<RequiredTags>, ApiError> {
    caller.require(Permission::ManageConnections, "changing required tags")?;
    Ok(Json(RequiredTags {
        keys: state
            .store
            .set_required_tag_keys(caller.scope(), &body.keys, &caller.actor())
            .await?,
    }))
}

/// Coverage for a caller (the web pages may call this too).
pub async fn coverage_view(
    state: &AppState,
    caller: &Caller,
    ask: CoverageAsk,
) -> Result<RequiredTagCoverage, ApiError> {
    caller.require(Permission::ReadData, "reading tag coverage")?;
    let required = state.store.required_tag_keys(caller.scope()).await?;
    let report = state
        .store
        .required_tag_coverage(
            caller.scope(),
            &CoverageQuery {
                from: ask.from,
                to: ask.to,
                scope: ask.scope,
                keys: ask.keys,
                by: ask.by,
            },
        )
        .await?;
    let keys = report.keys.clone();
    Ok(RequiredTagCoverage {
        from: ask.from,
        to: ask.to,
        currency: currency_of(&report.currencies),
        required_keys: required,
        by: ask.by.map(|d| d.to_string()),
        total: figures_view(&report.total, &keys),
        groups: report
            .groups
            .iter()
            .map(|g| CoverageGroupView {
                key: g.key.clone(),
                figures: figures_view(&g.figures, &keys),
            })
            .collect(),
        daily: report
            .daily
            .iter()
            .map(|d| CoverageDayView {
                day: d.day,
                cost: d.cost,
                overall: share(d.all, d.cost),
                keys: keys
                    .iter()
                    .zip(&d.keys)
                    .map(|(k, c)| (k.clone(), share(*c, d.cost)))
                    .collect(),
            })
            .collect(),
        keys,
    })
}

/// Coverage of the required tag keys over a period: the share of usage
/// cost (ChargeCategory Usage, BilledCost) on resources carrying each key
/// and all of them, and the share of resources with cost carrying them;
/// broken down by one dimension when asked, and day by day.
#[utoipa::path(get, path = "/api/v1/coverage", tag = "coverage", params(CoverageParams),
    responses((status = 200, body = RequiredTagCoverage), E401, E403,
        (status = 422, body = crate::error::ErrorBody, description = "an unknown parameter, dimension or key, or a bad period: the message says what is allowed")))]
pub async fn get_coverage(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<RequiredTagCoverage>, ApiError> {
    let today = state.store.now().date_naive();
    let ask = parse_coverage_query(raw.as_deref(), today, false)?;
    Ok(Json(coverage_view(&state, &caller, ask).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UntaggedParams {
    /// The first day (default: 29 days before `to`).
    pub from: Option<NaiveDate>,
    /// The last day (default: today, UTC).
    pub to: Option<NaiveDate>,
    /// One Azure subscription id.
    pub subscription: Option<String>,
    pub resource_group: Option<String>,
    /// A FOCUS ServiceName.
    pub service: Option<String>,
    /// Resources missing any of these required keys (or aliases);
    /// repeated or comma-separated; default any required key.
    pub key: Option<String>,
    /// Resources answered, 1 to 1000 (default 50), largest cost first.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub top: Option<String>,
}

/// Resources with usage cost lacking required keys, largest cost first:
/// each missing key with a suggested value and its source (the resource
/// group's tag, else the subscription's, else a strict majority of its
/// siblings in the group that carry the key), or none.
#[utoipa::path(get, path = "/api/v1/coverage/untagged", tag = "coverage", params(UntaggedParams),
    responses((status = 200, body = UntaggedView), E401, E403,
        (status = 422, body = crate::error::ErrorBody, description = "an unknown parameter or key, a bad period or top: the message says what is allowed")))]
pub async fn get_untagged(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Json<UntaggedView>, ApiError> {
    caller.require(Permission::ReadData, "reading untagged spend")?;
    let today = state.store.now().date_naive();
    let ask = parse_coverage_query(raw.as_deref(), today, true)?;
    let list = state
        .store
        .untagged_spend(
            caller.scope(),
            &UntaggedQuery {
                from: ask.from,
                to: ask.to,
                scope: ask.scope,
                keys: ask.keys,
                resources: Vec::new(),
                top: ask.top,
            },
        )
        .await?;
    Ok(Json(UntaggedView {
        from: ask.from,
        to: ask.to,
        currency: currency_of(&list.currencies),
        keys: list.keys.clone(),
        resources: list.resources,
        cost: list.cost,
        items: list.items.iter().map(UntaggedResourceView::from).collect(),
    }))
}

/// Makes tag edits from a coverage query in one call: the top resources by
/// cost lacking the keys (or the resources named), each given its missing
/// keys' values (`values`, then suggestions with `use_suggested`). They are
/// ordinary tag edits, made as `POST /api/v1/tag-edits` makes them: pending
/// (written back at the next sync with the three-way merge) at
/// read_write_tags, local at read_tags_only, refused below; one audit
/// event. Answers what was made per resource and what was skipped and why.
#[utoipa::path(post, path = "/api/v1/coverage/fix", tag = "coverage", request_body = CoverageFixRequest,
    responses((status = 201, body = CoverageFixResult, description = "edits were made (some resources or keys may be skipped)"),
        (status = 200, body = CoverageFixResult, description = "nothing to edit: every match was skipped, or nothing matched"),
        E401, E403, E404,
        (status = 422, body = crate::error::ErrorBody, description = "no values, no target, an unknown key, a bad period or top: the message says what is allowed")))]
pub async fn fix_coverage(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<CoverageFixRequest>,
) -> Result<(StatusCode, Json<CoverageFixResult>), ApiError> {
    caller.require(Permission::EditTags, "fixing tag coverage")?;
    let scope = caller.scope();
    let (from, to) = period(&state, req.from, req.to)?;
    if !req.use_suggested && req.values.is_empty() {
        return Err(ApiError::unprocessable(
            "no_values",
            "give values ({\"values\": {\"owner\": \"ann@example.com\"}}) or \"use_suggested\": true",
        ));
    }
    let top = match (req.top, req.resource_ids.is_empty()) {
        (Some(t), true) => parse_top(&t.to_string())?,
        (None, false) if req.resource_ids.len() <= MAX_TOP => req.resource_ids.len(),
        (None, false) => {
            return Err(invalid(format!(
                "at most {MAX_TOP} resource_ids at once, not {}",
                req.resource_ids.len()
            )));
        }
        (None, true) => {
            return Err(ApiError::unprocessable(
                "target",
                format!(
                    "give top (1 to {MAX_TOP}: the resources with the most cost) or resource_ids"
                ),
            ));
        }
        (Some(_), false) => {
            return Err(ApiError::unprocessable(
                "target",
                "give either top or resource_ids, not both",
            ));
        }
    };
    // Explicit values by the required key they stand for.
    let required = state.store.required_tag_keys(scope).await?;
    let aliases = state.store.spend_tag_aliases(scope).await?;
    let mut given: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &req.values {
        let key = resolve_required_keys(&required, &aliases, std::slice::from_ref(k))?
            .into_iter()
            .next()
            .unwrap_or_default();
        if v.trim().is_empty() {
            return Err(ApiError::unprocessable(
                "tag_rule",
                format!("the value for '{k}' is empty: give a value"),
            ));
        }
        given.insert(key, v.clone());
    }
    // Named resources by their ARM ids (another organisation's is not found).
    let mut named: BTreeMap<String, uuid::Uuid> = BTreeMap::new();
    for id in &req.resource_ids {
        let (r, _) = state.store.resource(scope, *id).await?;
        named.insert(r.arm_id.to_ascii_lowercase(), *id);
    }
    let list = state
        .store
        .untagged_spend(
            scope,
            &UntaggedQuery {
                from,
                to,
                scope: CoverageScope {
                    subscription: req.subscription.clone(),
                    resource_group: req.resource_group.clone(),
                    service: req.service.clone(),
                },
                keys: req.keys.clone(),
                resources: named.keys().cloned().collect(),
                top,
            },
        )
        .await?;
    let levels: BTreeMap<SubscriptionId, SyncLevel> = state
        .store
        .subscriptions(scope)
        .await?
        .iter()
        .map(|s| (s.id, s.sync_level))
        .collect();

    let mut skipped = Vec::new();
    let listed: BTreeSet<&str> = list.items.iter().map(|i| i.arm_id.as_str()).collect();
    for (arm_id, id) in &named {
        if !listed.contains(arm_id.as_str()) {
            skipped.push(FixSkipped {
                resource_id: Some(*id),
                arm_id: arm_id.clone(),
                key: None,
                reason:
                    "it lacks none of the keys asked, or has no usage cost in the period and scope"
                        .into(),
            });
        }
    }
    // Keys an open edit (pending or local) already sets are not set twice:
    // a fix repeated before the next sync makes no second edit.
    let ids: Vec<uuid::Uuid> = list.items.iter().filter_map(|i| i.resource).collect();
    let mut open: BTreeMap<uuid::Uuid, BTreeMap<String, String>> = BTreeMap::new();
    for e in state.store.open_tag_edits(scope, &ids).await? {
        let keys = open.entry(e.resource_id).or_default();
        for k in e.set.keys() {
            keys.insert(k.to_lowercase(), e.state.to_string());
        }
    }
    let mut planned = Vec::new();
    for item in &list.items {
        let Some(rid) = item.resource else {
            skipped.push(FixSkipped {
                resource_id: None,
                arm_id: item.arm_id.clone(),
                key: None,
                reason: "the inventory holds no live resource of this id (deleted in Azure, or its subscription is no longer connected)".into(),
            });
            continue;
        };
        let mut set = Tags::new();
        let mut sources = BTreeMap::new();
        for m in &item.missing {
            if let Some(edit_state) = open.get(&rid).and_then(|o| o.get(&m.key)) {
                skipped.push(FixSkipped {
                    resource_id: Some(rid),
                    arm_id: item.arm_id.clone(),
                    key: Some(m.key.clone()),
                    reason: format!("an open tag edit ({edit_state}) already sets it"),
                });
            } else if let Some(v) = given.get(&m.key) {
                set.insert(m.key.clone(), v.clone());
                sources.insert(m.key.clone(), FixValueSource::Given);
            } else if let Some(s) = m.suggestion.as_ref().filter(|_| req.use_suggested) {
                set.insert(m.key.clone(), s.value.clone());
                sources.insert(
                    m.key.clone(),
                    crate::wire::SuggestionSourceView::from(s.source).into(),
                );
            } else {
                skipped.push(FixSkipped {
                    resource_id: Some(rid),
                    arm_id: item.arm_id.clone(),
                    key: Some(m.key.clone()),
                    reason: if req.use_suggested {
                        "no suggested value: neither its resource group nor its subscription carries the key, and no strict majority of its siblings agree; give a value".into()
                    } else {
                        "no value given for this key".into()
                    },
                });
            }
        }
        if set.is_empty() {
            continue;
        }
        let (r, _) = state.store.resource(scope, rid).await?;
        let level = levels.get(&r.subscription_id).copied().unwrap_or_default();
        match plan_resource(&r, level, &set, &[]) {
            Ok(Ok(edit)) => planned.push((edit, item, sources)),
            Ok(Err(skip)) => skipped.push(FixSkipped {
                resource_id: Some(rid),
                arm_id: item.arm_id.clone(),
                key: None,
                reason: skip.reason,
            }),
            Err(e) => skipped.push(FixSkipped {
                resource_id: Some(rid),
                arm_id: item.arm_id.clone(),
                key: None,
                reason: e.message,
            }),
        }
    }
    if planned.is_empty() {
        return Ok((
            StatusCode::OK,
            Json(CoverageFixResult {
                created: Vec::new(),
                skipped,
            }),
        ));
    }
    let edits = planned.iter().map(|(e, _, _)| e.clone()).collect();
    let made = state
        .store
        .create_tag_edits(scope, edits, &caller.actor())
        .await?;
    let created = made
        .iter()
        .zip(planned)
        .map(|(edit, (_, item, sources))| FixedResource {
            resource_id: edit.resource_id,
            name: item.name.clone(),
            cost: item.cost,
            sources,
            edit: TagEditView::from(edit),
        })
        .collect();
    Ok((
        StatusCode::CREATED,
        Json(CoverageFixResult { created, skipped }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_coverage_questions_and_names_what_is_wrong() {
        let today = NaiveDate::from_ymd_opt(2026, 12, 3).expect("date");
        let ask = parse_coverage_query(
            Some("key=owner,env&key=cost-center&by=resource_group&subscription=S1"),
            today,
            false,
        )
        .expect("parses");
        assert_eq!(ask.keys, vec!["owner", "env", "cost-center"]);
        assert_eq!(ask.by, Some(SpendDimension::ResourceGroup));
        assert_eq!(ask.scope.subscription.as_deref(), Some("S1"));
        assert_eq!((ask.to - ask.from).num_days(), 29);
        let untagged = parse_coverage_query(Some("top=5"), today, true).expect("top");
        assert_eq!(untagged.top, 5);
        for (bad, untagged, says) in [
            (
                "by=region",
                false,
                "allowed: subscription, resource_group, service",
            ),
            ("by=service", true, "unknown parameter 'by'"),
            ("top=5", false, "unknown parameter 'top'"),
            ("top=0", true, "1 to 1000"),
            ("from=2026-12-02&to=2026-12-01", false, "after it ends"),
            ("from=yesterday", false, "YYYY-MM-DD"),
            ("colour=red", false, "allowed: from, to"),
        ] {
            let e = parse_coverage_query(Some(bad), today, untagged).expect_err(bad);
            assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
    }
}
