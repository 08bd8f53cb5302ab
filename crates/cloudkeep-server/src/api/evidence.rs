//! Security evidence: the fingerprinted observations, filtered by control,
//! check, result, subject, connection, subscription and observed period.
//! Auditors, viewers and everyone above read them.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use cloudkeep_domain::evidence::{CheckId, ControlId, EvidenceResult, effective_checks};
use cloudkeep_domain::{ConnectionId, Permission, SubscriptionId};
use cloudkeep_store::EvidenceFilter;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::parse_id;
use crate::auth::Caller;
use crate::error::{E401, E403, E404, E422, Params};
use crate::list::{Page, page_request};
use crate::wire::{EvidenceDetail, EvidenceView};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_evidence))
        .routes(routes!(get_evidence))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EvidenceQuery {
    /// Evidence of the checks mapped to this control (for this organisation).
    pub control: Option<ControlId>,
    pub check: Option<CheckId>,
    pub result: Option<EvidenceResult>,
    /// An ARM id: its evidence and that of everything under it (a vault's keys).
    pub subject: Option<String>,
    /// A connection's evidence, also of subscriptions it no longer holds.
    /// Without it, only subscriptions of live connections are listed.
    pub connection: Option<String>,
    /// cloudkeep's subscription id.
    pub subscription: Option<String>,
    /// Observed at or after this time (RFC 3339): its last observation is.
    pub observed_from: Option<DateTime<Utc>>,
    /// Observed at or before this time: its first observation is.
    pub observed_to: Option<DateTime<Utc>>,
    /// Only current intervals (the default without an observed period);
    /// `false` lists the history too.
    pub current: Option<bool>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
}

fn invalid(message: &str) -> ApiError {
    ApiError::unprocessable("invalid_filter", message)
}

/// A UUID filter, or 422 naming it.
pub(crate) fn uuid_filter<T: std::str::FromStr>(
    raw: Option<&str>,
    what: &str,
) -> Result<Option<T>, ApiError> {
    raw.map(|s| {
        s.trim()
            .parse::<T>()
            .map_err(|_| invalid(&format!("{what} is an id (a UUID)")))
    })
    .transpose()
}

/// Newest observation first; without an observed period, current
/// intervals only.
#[utoipa::path(get, path = "/api/v1/evidence", tag = "evidence", params(EvidenceQuery),
    responses((status = 200, body = Page<EvidenceView>), E401, E403, E422))]
pub async fn list_evidence(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<EvidenceQuery>,
) -> Result<Json<Page<EvidenceView>>, ApiError> {
    caller.require(Permission::ReadEvidence, "reading evidence")?;
    let page = page_request(q.limit.as_deref(), q.after.as_deref())?;
    if let (Some(from), Some(to)) = (q.observed_from, q.observed_to) {
        if from > to {
            return Err(invalid("observed_from is after observed_to"));
        }
    }
    let checks = match (q.control, q.check) {
        (Some(control), check) => {
            let overrides = state
                .store
                .control_mapping_overrides(caller.scope())
                .await?;
            let mapped = effective_checks(control, &overrides);
            Some(match check {
                Some(c) => mapped.into_iter().filter(|m| *m == c).collect(),
                None => mapped,
            })
        }
        (None, Some(c)) => Some(vec![c]),
        (None, None) => None,
    };
    let period = q.observed_from.is_some() || q.observed_to.is_some();
    let filter = EvidenceFilter {
        checks,
        result: q.result,
        subject: q.subject.filter(|s| !s.trim().is_empty()),
        connection: uuid_filter::<ConnectionId>(q.connection.as_deref(), "connection")?,
        subscription: uuid_filter::<SubscriptionId>(q.subscription.as_deref(), "subscription")?,
        since: q.observed_from,
        until: q.observed_to,
        current_only: q.current.unwrap_or(!period),
    };
    let found = state.store.evidence(caller.scope(), &filter, &page).await?;
    Ok(Json(Page::from_store(found)))
}

#[utoipa::path(get, path = "/api/v1/evidence/{id}", tag = "evidence", params(("id" = Uuid, Path, description = "evidence id")),
    responses((status = 200, body = EvidenceDetail), E401, E403, E404))]
pub async fn get_evidence(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EvidenceDetail>, ApiError> {
    caller.require(Permission::ReadEvidence, "reading evidence")?;
    let id: uuid::Uuid = parse_id(&id, "evidence")?;
    let (item, history) = state.store.evidence_item(caller.scope(), id).await?;
    let overrides = state
        .store
        .control_mapping_overrides(caller.scope())
        .await?;
    let controls = ControlId::ALL
        .iter()
        .copied()
        .filter(|c| effective_checks(*c, &overrides).contains(&item.check))
        .collect();
    Ok(Json(EvidenceDetail {
        evidence: EvidenceView::from(&item),
        controls,
        history: history.iter().map(EvidenceView::from).collect(),
    }))
}
