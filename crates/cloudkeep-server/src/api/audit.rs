//! The audit log: filtered pages, or a JSON Lines export of every matching
//! event, streamed.

use axum::Json;
use axum::body::Body as HttpBody;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use cloudkeep_domain::Permission;
use cloudkeep_store::{AuditFilter, PageRequest};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Caller;
use crate::error::{E401, E403, E422, Params};
use crate::list::{Page, page_request};
use crate::wire::{AuditEventView, AuditVerification};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(verify_audit))
}

/// How the audit log is answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditFormat {
    /// A page of events (`limit`, `after`).
    #[default]
    Json,
    /// Every matching event from `after` on, one JSON object a line.
    Jsonl,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub target: Option<String>,
    /// Events at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Events at or before this time.
    pub until: Option<DateTime<Utc>>,
    #[param(inline)]
    pub format: Option<AuditFormat>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, description = "a page of events in order; with `format=jsonl`, every matching event as JSON Lines (`application/x-ndjson`)",
            content((Page<AuditEventView> = "application/json"), (String = "application/x-ndjson"))),
        E401, E403, E422))]
pub async fn list_audit(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<AuditQuery>,
) -> Result<Response, ApiError> {
    caller.require(Permission::ReadAudit, "reading the audit log")?;
    let page = page_request(q.limit.as_deref(), q.after.as_deref())?;
    let filter = AuditFilter {
        action: q.action,
        actor: q.actor,
        target: q.target,
        since: q.since,
        until: q.until,
    };
    if q.format.unwrap_or_default() == AuditFormat::Jsonl {
        return export(state, caller, filter, page.after).await;
    }
    let events = state
        .store
        .audit_events(caller.scope(), &filter, &page)
        .await?;
    Ok(Json(Page::<AuditEventView>::from_store(events)).into_response())
}

/// Streams every matching event, a page at a time, so memory stays one page
/// however long the log. The first page is read before the answer starts,
/// so what is wrong with the request (a malformed cursor) is a 422, not a
/// stream cut short.
async fn export(
    state: AppState,
    caller: Caller,
    filter: AuditFilter,
    after: Option<cloudkeep_store::Cursor>,
) -> Result<Response, ApiError> {
    let start = PageRequest {
        after,
        limit: PageRequest::MAX_LIMIT,
    };
    let first = state
        .store
        .audit_events(caller.scope(), &filter, &start)
        .await?;
    let lines_of = |page: &cloudkeep_store::Page<cloudkeep_store::AuditEvent>| {
        let mut chunk = String::new();
        for e in &page.items {
            if let Ok(line) = serde_json::to_string(&AuditEventView::from(e)) {
                chunk.push_str(&line);
                chunk.push('\n');
            }
        }
        chunk
    };
    let head = lines_of(&first);
    let following = first.next.map(|after| PageRequest {
        after: Some(after),
        ..start
    });
    let rest = futures_util::stream::try_unfold(following, move |next| {
        let (state, scope, filter) = (state.clone(), caller.scope().clone(), filter.clone());
        async move {
            let Some(req) = next else {
                return Ok::<_, std::io::Error>(None);
            };
            let page = state
                .store
                .audit_events(&scope, &filter, &req)
                .await
                .map_err(std::io::Error::other)?;
            let chunk = lines_of(&page);
            let following = page.next.map(|after| PageRequest {
                after: Some(after),
                ..req
            });
            Ok(Some((chunk, following)))
        }
    });
    let lines = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok::<_, std::io::Error>(head) }),
        rest,
    );
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        HttpBody::from_stream(lines),
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit",
    responses((status = 200, body = AuditVerification, description = "the organisation's hash chain walked from its first event to its head"), E401, E403))]
pub async fn verify_audit(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<AuditVerification>, ApiError> {
    caller.require(Permission::ReadAudit, "verifying the audit log")?;
    Ok(Json(
        match state.store.verify_audit(caller.scope()).await? {
            Ok(events) => AuditVerification {
                intact: true,
                events,
                broken_at: None,
                problem: None,
            },
            Err(problem) => AuditVerification {
                intact: false,
                events: problem.seq,
                broken_at: Some(problem.seq),
                problem: Some(problem.to_string()),
            },
        },
    ))
}
