//! SOC 2 controls with their coverage (per control, per check, and a daily
//! history), the organisation's control mapping, and its evidence
//! settings. Everyone reads them (auditors too); only admins and owners
//! change the mapping or the secure-score threshold.

use axum::Json;
use axum::extract::{Path, State};
use chrono::Duration;
use cloudkeep_domain::Permission;
use cloudkeep_domain::evidence::{CheckId, ControlId, EvidenceResult, effective_checks};
use cloudkeep_store::{CoverageReport, EvidenceFilter, PageRequest};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{Body, E401, E403, E404, E422, Params};
use crate::list::Page;
use crate::wire::{
    CheckCoverageView, CheckInfo, ControlDayView, ControlDetail, ControlView, CoverageView,
    EvidenceSettingsChange, EvidenceSettingsView, EvidenceView, MappedCheck, MappingChange,
    MappingControlView, MappingView,
};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_controls))
        .routes(routes!(get_control))
        .routes(routes!(get_mapping, change_mapping))
        .routes(routes!(get_settings, change_settings))
}

fn control_view(report: &CoverageReport, id: ControlId) -> ControlView {
    let (checks, coverage) = report
        .control(id)
        .map(|(checks, c)| (checks.clone(), CoverageView::from(&c.tally)))
        .unwrap_or_else(|| (Vec::new(), CoverageView::from(&Default::default())));
    ControlView {
        id,
        title: id.title().into(),
        criterion: id.criterion().into(),
        checks,
        coverage,
    }
}

fn parse_control(raw: &str) -> Result<ControlId, ApiError> {
    raw.parse::<ControlId>()
        .map_err(|_| ApiError::not_found("control"))
}

/// Every control with its coverage now (one page: there are three).
#[utoipa::path(get, path = "/api/v1/controls", tag = "evidence",
    responses((status = 200, body = Page<ControlView>), E401, E403))]
pub async fn list_controls(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Page<ControlView>>, ApiError> {
    caller.require(Permission::ReadEvidence, "reading controls")?;
    let report = state.store.coverage(caller.scope()).await?;
    Ok(Json(Page {
        items: ControlId::ALL
            .iter()
            .map(|c| control_view(&report, *c))
            .collect(),
        next: None,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ControlQuery {
    /// Days of history, 1 to 400 (default 90).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 400)]
    pub days: Option<u32>,
    /// Current evidence rows to include, 0 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 0, maximum = 1000)]
    pub evidence_limit: Option<u32>,
}

/// A control: its checks' coverage, its current evidence (failing and not
/// collected first) and its daily history.
#[utoipa::path(get, path = "/api/v1/controls/{id}", tag = "evidence", params(("id" = String, Path, description = "the control: CC6.1, CC6.6 or CC7.1"), ControlQuery),
    responses((status = 200, body = ControlDetail), E401, E403, E404, E422))]
pub async fn get_control(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Params(q): Params<ControlQuery>,
) -> Result<Json<ControlDetail>, ApiError> {
    caller.require(Permission::ReadEvidence, "reading controls")?;
    let id = parse_control(&id)?;
    let days = q.days.unwrap_or(90);
    let limit = q.evidence_limit.unwrap_or(100);
    if !(1..=400).contains(&days) || limit > 1000 {
        return Err(ApiError::unprocessable(
            "invalid_query",
            "days is 1 to 400 and evidence_limit 0 to 1000",
        ));
    }
    let scope = caller.scope();
    let report = state.store.coverage(scope).await?;
    let control = control_view(&report, id);
    let check_coverage = control
        .checks
        .iter()
        .map(|c| CheckCoverageView {
            check: *c,
            collector: c.source(),
            title: c.title().into(),
            coverage: CoverageView::from(
                &report.check(*c).map(|cov| cov.tally).unwrap_or_default(),
            ),
        })
        .collect();
    let mut filter = EvidenceFilter {
        checks: Some(control.checks.clone()),
        current_only: true,
        ..Default::default()
    };
    let evidence_total = state.store.evidence_count(scope, &filter).await?;
    let mut evidence = Vec::new();
    for result in [
        EvidenceResult::Fail,
        EvidenceResult::NotCollected,
        EvidenceResult::Pass,
        EvidenceResult::NotApplicable,
    ] {
        let wanted = (limit as usize).saturating_sub(evidence.len());
        if wanted == 0 {
            break;
        }
        filter.result = Some(result);
        let page = state
            .store
            .evidence(scope, &filter, &PageRequest::first(wanted))
            .await?;
        evidence.extend(page.items.iter().map(EvidenceView::from));
    }
    let since = (state.store.now() - Duration::days(i64::from(days) - 1)).date_naive();
    let history = state
        .store
        .control_history(scope, id, since)
        .await?
        .iter()
        .map(|d| ControlDayView {
            day: d.day,
            coverage: CoverageView::from(&d.tally),
        })
        .collect();
    Ok(Json(ControlDetail {
        control,
        check_coverage,
        evidence,
        evidence_total,
        history,
    }))
}

pub async fn mapping_view(state: &AppState, caller: &Caller) -> Result<MappingView, ApiError> {
    let overrides = state
        .store
        .control_mapping_overrides(caller.scope())
        .await?;
    let controls = ControlId::ALL
        .iter()
        .map(|control| MappingControlView {
            control: *control,
            title: control.title().into(),
            checks: effective_checks(*control, &overrides)
                .into_iter()
                .map(|check| MappedCheck {
                    check,
                    source: if check.default_controls().contains(control) {
                        "default"
                    } else {
                        "added"
                    }
                    .into(),
                })
                .collect(),
            removed: control
                .default_checks()
                .into_iter()
                .filter(|c| !effective_checks(*control, &overrides).contains(c))
                .collect(),
        })
        .collect();
    let checks = CheckId::ALL
        .iter()
        .map(|c| CheckInfo {
            id: *c,
            collector: c.source(),
            title: c.title().into(),
            default_controls: c.default_controls().to_vec(),
        })
        .collect();
    Ok(MappingView { controls, checks })
}

/// The organisation's mapping of checks to controls (the documented
/// default with its changes), and the catalogue of checks.
#[utoipa::path(get, path = "/api/v1/control-mapping", tag = "evidence",
    responses((status = 200, body = MappingView), E401, E403))]
pub async fn get_mapping(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<MappingView>, ApiError> {
    caller.require(Permission::ReadEvidence, "reading the control mapping")?;
    Ok(Json(mapping_view(&state, &caller).await?))
}

/// Adds checks to a control or takes them out (audited); a check put back
/// where the default has it simply follows the default again.
#[utoipa::path(patch, path = "/api/v1/control-mapping", tag = "evidence", request_body = MappingChange,
    responses((status = 200, body = MappingView), E401, E403, E422))]
pub async fn change_mapping(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<MappingChange>,
) -> Result<Json<MappingView>, ApiError> {
    caller.require(Permission::ManageControls, "changing the control mapping")?;
    if req.add.is_empty() && req.remove.is_empty() {
        return Err(ApiError::unprocessable(
            "nothing_to_change",
            "name checks to add to the control or remove from it",
        ));
    }
    state
        .store
        .change_control_mapping(
            caller.scope(),
            req.control,
            &req.add,
            &req.remove,
            &caller.actor(),
        )
        .await?;
    Ok(Json(mapping_view(&state, &caller).await?))
}

#[utoipa::path(get, path = "/api/v1/settings/evidence", tag = "evidence",
    responses((status = 200, body = EvidenceSettingsView), E401, E403))]
pub async fn get_settings(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<EvidenceSettingsView>, ApiError> {
    caller.require(Permission::ReadEvidence, "reading evidence settings")?;
    Ok(Json(EvidenceSettingsView::from(
        &state.store.evidence_settings(caller.scope()).await?,
    )))
}

/// Sets the secure-score threshold (audited); it applies from the next sync.
#[utoipa::path(patch, path = "/api/v1/settings/evidence", tag = "evidence", request_body = EvidenceSettingsChange,
    responses((status = 200, body = EvidenceSettingsView), E401, E403, E422))]
pub async fn change_settings(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<EvidenceSettingsChange>,
) -> Result<Json<EvidenceSettingsView>, ApiError> {
    caller.require(
        Permission::ManageControls,
        "changing the secure-score threshold",
    )?;
    Ok(Json(EvidenceSettingsView::from(
        &state
            .store
            .set_secure_score_threshold(caller.scope(), req.secure_score_threshold, &caller.actor())
            .await?,
    )))
}
