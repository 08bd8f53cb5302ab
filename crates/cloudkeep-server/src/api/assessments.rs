//! Assessments: create, attach and detach evidence, approve (owners and
//! auditors), Type II populations and samples, auditors' invitations to
//! one assessment, and exports (CSV, JSON, OSCAL, the audit package). Also
//! the organisation's retention window and an owner's grant of the data
//! to an auditor.
//!
//! An invitation's secret (`Bearer cki_...`) reads its own assessment's
//! routes here and nothing else: the other areas' `Caller` does not know it.

use axum::Json;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloudkeep_domain::assessment::{
    AssessmentDefinition, DEFAULT_INVITATION_DAYS, ExportFormat, InvitationState,
};
use cloudkeep_domain::evidence::ControlId;
use cloudkeep_domain::{Permission, SecretString, UserId};
use cloudkeep_store::{Attach, AuditEntry, InvitationAccess, OrgScope};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::parse_id;
use crate::auth::Caller;
use crate::error::{Body, E401, E403, E404, E409, E422, Params};
use crate::export;
use crate::list::{Page, page_request};
use crate::wire::{
    AssessmentDetail, AssessmentView, AttachRequest, AttachResult, AttachedEvidenceView,
    ChangeView, DataAccessChange, DataAccessView, InvitationCreated, InvitationRequest,
    InvitationView, NewAssessmentRequest, PopulationView, RetentionChange, RetentionView,
    SampleRequest, SampleView,
};
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_assessments, create_assessment))
        .routes(routes!(get_assessment))
        .routes(routes!(list_attached, attach))
        .routes(routes!(detach))
        .routes(routes!(approve))
        .routes(routes!(population))
        .routes(routes!(list_samples, draw))
        .routes(routes!(list_invitations, invite))
        .routes(routes!(revoke_invitation))
        .routes(routes!(export_assessment))
        .routes(routes!(get_retention, change_retention))
        .routes(routes!(set_data_access))
}

/// Who reads one assessment: a member of the organisation whose role reads
/// evidence, or the holder of an active invitation to that assessment.
pub enum Reader {
    Member(Caller),
    Invited(InvitationAccess),
}

impl Reader {
    pub fn scope(&self) -> &OrgScope {
        match self {
            Reader::Member(c) => c.scope(),
            Reader::Invited(i) => &i.scope,
        }
    }

    pub fn actor(&self) -> String {
        match self {
            Reader::Member(c) => c.actor(),
            Reader::Invited(i) => i.actor(),
        }
    }

    /// Whether the reader reads the organisation's audit log (else an audit
    /// package holds only the assessment's own events).
    pub fn reads_audit_log(&self) -> bool {
        match self {
            Reader::Member(c) => c.require(Permission::ReadAudit, "").is_ok(),
            Reader::Invited(_) => false,
        }
    }

    /// Fails unless the reader may read assessment `id`: a member's role
    /// reads evidence; an invitation reads its own assessment only (any
    /// other is not found, as another organisation's would be).
    pub fn may_read(&self, id: Uuid) -> Result<(), ApiError> {
        match self {
            Reader::Member(c) => c.require(Permission::ReadEvidence, "reading assessments"),
            Reader::Invited(i) if i.invitation.assessment_id == id => Ok(()),
            Reader::Invited(_) => Err(ApiError::not_found("assessment")),
        }
    }
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(crate::auth::bearer)
            .filter(|t| t.starts_with("cki_"));
        let Some(secret) = bearer else {
            return Caller::from_request_parts(parts, state)
                .await
                .map(Reader::Member);
        };
        let access = state
            .store
            .authenticate_invitation(&SecretString::new(secret))
            .await?
            .ok_or_else(ApiError::unauthenticated)?;
        match access.invitation.state {
            InvitationState::Active => Ok(Reader::Invited(access)),
            InvitationState::Expired => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "invitation_expired",
                format!(
                    "this invitation expired at {}; ask the organisation's owner for a new one",
                    access.invitation.expires_at.to_rfc3339()
                ),
            )),
            InvitationState::Revoked => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "invitation_revoked",
                "this invitation was revoked by the organisation's owner",
            )),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AssessmentsQuery {
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    pub limit: Option<String>,
    /// The previous page's `next`.
    pub after: Option<String>,
}

/// Newest first.
#[utoipa::path(get, path = "/api/v1/assessments", tag = "assessments", params(AssessmentsQuery),
    responses((status = 200, body = Page<AssessmentView>), E401, E403, E422))]
pub async fn list_assessments(
    State(state): State<AppState>,
    caller: Caller,
    Params(q): Params<AssessmentsQuery>,
) -> Result<Json<Page<AssessmentView>>, ApiError> {
    caller.require(Permission::ReadEvidence, "reading assessments")?;
    let page = page_request(q.limit.as_deref(), q.after.as_deref())?;
    let found = state.store.assessments(caller.scope(), &page).await?;
    Ok(Json(Page::from_store(found)))
}

/// A draft assessment: its name, audit period and controls in scope
/// (audited). The controls' checks are fixed from the mapping now.
#[utoipa::path(post, path = "/api/v1/assessments", tag = "assessments", request_body = NewAssessmentRequest,
    responses((status = 201, body = AssessmentView), E401, E403, E422))]
pub async fn create_assessment(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<NewAssessmentRequest>,
) -> Result<(StatusCode, Json<AssessmentView>), ApiError> {
    caller.require(Permission::ManageAssessments, "creating assessments")?;
    let def = AssessmentDefinition::new(&req.name, req.period_start, req.period_end, &req.controls)
        .map_err(|e| ApiError::unprocessable("invalid_assessment", e.to_string()))?;
    let a = state
        .store
        .create_assessment(caller.scope(), &def, &caller.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(AssessmentView::from(&a))))
}

fn assessment_id(raw: &str) -> Result<Uuid, ApiError> {
    parse_id(raw, "assessment")
}

/// The assessment, and evidence recorded after its approval that differs
/// from what it attested ("changed after approval").
#[utoipa::path(get, path = "/api/v1/assessments/{id}", tag = "assessments",
    params(("id" = Uuid, Path, description = "assessment id")),
    responses((status = 200, body = AssessmentDetail), E401, E403, E404))]
pub async fn get_assessment(
    State(state): State<AppState>,
    reader: Reader,
    Path(id): Path<String>,
) -> Result<Json<AssessmentDetail>, ApiError> {
    let id = assessment_id(&id)?;
    reader.may_read(id)?;
    let a = state.store.assessment(reader.scope(), id).await?;
    let changes = state
        .store
        .changes_after_approval(reader.scope(), id)
        .await?;
    Ok(Json(AssessmentDetail {
        assessment: AssessmentView::from(&a),
        changed_after_approval: changes.iter().map(ChangeView::from).collect(),
    }))
}

/// The attached evidence, oldest observation first.
#[utoipa::path(get, path = "/api/v1/assessments/{id}/evidence", tag = "assessments",
    params(("id" = Uuid, Path, description = "assessment id"), AssessmentsQuery),
    responses((status = 200, body = Page<AttachedEvidenceView>), E401, E403, E404, E422))]
pub async fn list_attached(
    State(state): State<AppState>,
    reader: Reader,
    Path(id): Path<String>,
    Params(q): Params<AssessmentsQuery>,
) -> Result<Json<Page<AttachedEvidenceView>>, ApiError> {
    let id = assessment_id(&id)?;
    reader.may_read(id)?;
    let page = page_request(q.limit.as_deref(), q.after.as_deref())?;
    state.store.assessment(reader.scope(), id).await?;
    let found = state
        .store
        .assessment_evidence(reader.scope(), id, &page)
        .await?;
    Ok(Json(Page::from_store(found)))
}

/// Attaches evidence to a draft: everything of the controls in scope that
/// held during the period (`all_in_scope`), or the rows named (audited).
/// An approved assessment is 409.
#[utoipa::path(post, path = "/api/v1/assessments/{id}/evidence", tag = "assessments",
    params(("id" = Uuid, Path, description = "assessment id")), request_body = AttachRequest,
    responses((status = 200, body = AttachResult), E401, E403, E404, E409, E422))]
pub async fn attach(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<AttachRequest>,
) -> Result<Json<AttachResult>, ApiError> {
    caller.require(Permission::ManageAssessments, "attaching evidence")?;
    let id = assessment_id(&id)?;
    let what = match (req.all_in_scope, req.evidence.is_empty()) {
        (true, true) => Attach::InScope,
        (false, false) => Attach::Rows(req.evidence),
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_attachment",
                "say either all_in_scope: true or the evidence ids to attach, not both",
            ));
        }
    };
    let changed = state
        .store
        .attach_evidence(caller.scope(), id, &what, &caller.actor())
        .await?;
    let a = state.store.assessment(caller.scope(), id).await?;
    Ok(Json(AttachResult {
        changed,
        assessment: AssessmentView::from(&a),
    }))
}

/// Detaches one row from a draft (audited). An approved assessment is 409.
#[utoipa::path(delete, path = "/api/v1/assessments/{id}/evidence/{evidence_id}", tag = "assessments",
    params(("id" = Uuid, Path, description = "assessment id"), ("evidence_id" = Uuid, Path, description = "evidence id")),
    responses((status = 200, body = AttachResult), E401, E403, E404, E409))]
pub async fn detach(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, evidence_id)): Path<(String, String)>,
) -> Result<Json<AttachResult>, ApiError> {
    caller.require(Permission::ManageAssessments, "detaching evidence")?;
    let id = assessment_id(&id)?;
    let evidence_id: Uuid = parse_id(&evidence_id, "evidence")?;
    let changed = state
        .store
        .detach_evidence(caller.scope(), id, Some(&[evidence_id]), &caller.actor())
        .await?;
    if changed == 0 {
        return Err(ApiError::not_found("attached evidence"));
    }
    let a = state.store.assessment(caller.scope(), id).await?;
    Ok(Json(AttachResult {
        changed,
        assessment: AssessmentView::from(&a),
    }))
}

/// Approves the assessment (owners and auditors; audited): from now on the
/// store refuses any change to it and its evidence. Twice is 409.
#[utoipa::path(post, path = "/api/v1/assessments/{id}/approve", tag = "assessments",
    params(("id" = Uuid, Path, description = "assessment id")),
    responses((status = 200, body = AssessmentView), E401, E403, E404, E409))]
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<AssessmentView>, ApiError> {
    caller.require(Permission::ApproveAssessments, "approving assessments")?;
    let id = assessment_id(&id)?;
    let a = state
        .store
        .approve_assessment(caller.scope(), id, &caller.actor())
        .await?;
    Ok(Json(AssessmentView::from(&a)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PopulationQuery {
    /// The control (in the assessment's scope).
    pub control: Option<ControlId>,
}

/// A control's Type II population: the attached rows of its checks.
#[utoipa::path(get, path = "/api/v1/assessments/{id}/population", tag = "assessments",
    params(("id" = Uuid, Path, description = "assessment id"), PopulationQuery),
    responses((status = 200, body = PopulationView), E401, E403, E404, E422))]
pub async fn population(
    State(state): State<AppState>,
    reader: Reader,
    Path(id): Path<String>,
    Params(q): Params<PopulationQuery>,
) -> Result<Json<PopulationView>, ApiError> {
    let id = assessment_id(&id)?;
    reader.may_read(id)?;
    state.store.assessment(reader.scope(), id).await?;
    let control = q.control.ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_query",
            format!("name a control: ?control= one of {}", ControlId::expected()),
        )
    })?;
    let rows = state.store.population(reader.scope(), id, control).await?;
    Ok(Json(PopulationView {
        control,
        size: rows.len() as u64,
        population_hash: cloudkeep_store::population_hash(&rows),
        evidence: rows,
    }))
}

/// The samples drawn, oldest first.
#[utoipa::path(get, path = "/api/v1/assessments/{id}/samples", tag = "assessments",
    params(("id" = Uuid, Path, description = "assessment id")),
    responses((status = 200, body = Vec<SampleView>), E401, E403, E404))]
pub async fn list_samples(
    State(state): State<AppState>,
    reader: Reader,
    Path(id): Path<String>,
) -> Result<Json<Vec<SampleView>>, ApiError> {
    let id = assessment_id(&id)?;
    reader.may_read(id)?;
    state.store.assessment(reader.scope(), id).await?;
    let samples = state.store.samples(reader.scope(), id).await?;
    Ok(Json(samples.iter().map(SampleView::from).collect()))
}

/// Draws a sample of a control's population (audited), with the seed
/// given (to redo a draw) or a random one, stored with it.
#[utoipa::path(post, path = "/api/v1/assessments/{id}/samples", tag = "assessments",
    params(("id" = Uuid, Path, description = "assessment id")), request_body = SampleRequest,
    responses((status = 201, body = SampleView), E401, E403, E404, E409, E422))]
pub async fn draw(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<SampleRequest>,
) -> Result<(StatusCode, Json<SampleView>), ApiError> {
    caller.require(Permission::DrawSamples, "drawing samples")?;
    let id = assessment_id(&id)?;
    let seed = req
        .seed
        .as_deref()
        .map(|s| {
            s.trim().parse::<u64>().map_err(|_| {
                ApiError::unprocessable(
                    "invalid_seed",
                    format!("seed '{s}' is not a whole number from 0 to {}", u64::MAX),
                )
            })
        })
        .transpose()?;
    let sample = state
        .store
        .draw_sample(
            caller.scope(),
            id,
            req.control,
            req.size,
            seed,
            &caller.actor(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(SampleView::from(&sample))))
}

/// The assessment's invitations (owners).
#[utoipa::path(get, path = "/api/v1/assessments/{id}/invitations", tag = "assessments",
    params(("id" = Uuid, Path, description = "assessment id")),
    responses((status = 200, body = Vec<InvitationView>), E401, E403, E404))]
pub async fn list_invitations(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<InvitationView>>, ApiError> {
    caller.require(Permission::GrantAuditAccess, "reading invitations")?;
    let id = assessment_id(&id)?;
    state.store.assessment(caller.scope(), id).await?;
    let found = state.store.invitations(caller.scope(), id).await?;
    Ok(Json(found.iter().map(InvitationView::from).collect()))
}

/// Invites an auditor to this assessment only, for `days` (30 by
/// default; audited). The secret is answered once.
#[utoipa::path(post, path = "/api/v1/assessments/{id}/invitations", tag = "assessments",
    params(("id" = Uuid, Path, description = "assessment id")), request_body = InvitationRequest,
    responses((status = 201, body = InvitationCreated), E401, E403, E404, E422))]
pub async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<InvitationRequest>,
) -> Result<(StatusCode, Json<InvitationCreated>), ApiError> {
    caller.require(Permission::GrantAuditAccess, "inviting auditors")?;
    let id = assessment_id(&id)?;
    let (invitation, secret) = state
        .store
        .invite_auditor(
            caller.scope(),
            id,
            &req.email,
            req.days.unwrap_or(DEFAULT_INVITATION_DAYS),
            &caller.actor(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(InvitationCreated {
            invitation: InvitationView::from(&invitation),
            secret: secret.expose().to_string(),
        }),
    ))
}

/// Revokes an invitation now (audited); one already expired or revoked is 409.
#[utoipa::path(post, path = "/api/v1/assessments/{id}/invitations/{invitation_id}/revoke", tag = "assessments",
    params(("id" = Uuid, Path, description = "assessment id"), ("invitation_id" = Uuid, Path, description = "invitation id")),
    responses((status = 200, body = InvitationView), E401, E403, E404, E409))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, invitation_id)): Path<(String, String)>,
) -> Result<Json<InvitationView>, ApiError> {
    caller.require(Permission::GrantAuditAccess, "revoking invitations")?;
    let id = assessment_id(&id)?;
    let invitation_id: Uuid = parse_id(&invitation_id, "invitation")?;
    let revoked = state
        .store
        .revoke_invitation(caller.scope(), id, invitation_id, &caller.actor())
        .await?;
    Ok(Json(InvitationView::from(&revoked)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `json` by default.
    pub format: Option<ExportFormat>,
    /// With `format=oscal`, which document: `results` (the default),
    /// `plan` or `catalog`.
    pub document: Option<export::OscalDocument>,
}

/// The assessment as CSV (one line per attached row), JSON, an OSCAL 1.1
/// document (assessment results, their plan, or the catalog of the
/// criteria in scope), or the audit package (a zip of all of it and the
/// period's audit events with their chain's verification; for a reader
/// without the audit log, an invitation included, only the assessment's
/// own events). Audited.
#[utoipa::path(get, path = "/api/v1/assessments/{id}/export", tag = "assessments",
    params(("id" = Uuid, Path, description = "assessment id"), ExportQuery),
    responses((status = 200, description = "the export, as its format's media type"), E401, E403, E404, E422))]
pub async fn export_assessment(
    State(state): State<AppState>,
    reader: Reader,
    Path(id): Path<String>,
    Params(q): Params<ExportQuery>,
) -> Result<Response, ApiError> {
    let id = assessment_id(&id)?;
    reader.may_read(id)?;
    let scope = reader.scope().clone();
    let data = export::gather(&state.store, &scope, id).await?;
    let document = q.document.unwrap_or(export::OscalDocument::Results);
    let format = q.format.unwrap_or(ExportFormat::Json);
    let (content_type, extension, body) = match format {
        ExportFormat::Csv => ("text/csv; charset=utf-8", "csv", export::csv(&data)?),
        ExportFormat::Json => ("application/json", "json", export::json(&data)?),
        ExportFormat::Oscal => (
            "application/json",
            "json",
            export::oscal_json(&data, document)?,
        ),
        ExportFormat::Zip => (
            "application/zip",
            "zip",
            export::package(&state.store, &scope, &data, reader.reads_audit_log()).await?,
        ),
    };
    state
        .store
        .audit(
            &scope,
            AuditEntry::new(
                reader.actor(),
                "assessment.exported",
                format!("assessment:{id}"),
                serde_json::json!({ "format": format.as_str(), "bytes": body.len() }),
            ),
        )
        .await?;
    let filename = format!("assessment-{id}.{extension}");
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/v1/settings/retention", tag = "assessments",
    responses((status = 200, body = RetentionView), E401, E403))]
pub async fn get_retention(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<RetentionView>, ApiError> {
    caller.require(Permission::ReadEvidence, "reading the retention window")?;
    Ok(Json(RetentionView::from(
        &state.store.retention_settings(caller.scope()).await?,
    )))
}

/// Sets the retention window in days (owners; audited): evidence and sync
/// history past it are purged, except evidence of approved assessments.
#[utoipa::path(patch, path = "/api/v1/settings/retention", tag = "assessments", request_body = RetentionChange,
    responses((status = 200, body = RetentionView), E401, E403, E422))]
pub async fn change_retention(
    State(state): State<AppState>,
    caller: Caller,
    Body(req): Body<RetentionChange>,
) -> Result<Json<RetentionView>, ApiError> {
    caller.require(
        Permission::GrantAuditAccess,
        "changing the retention window",
    )?;
    Ok(Json(RetentionView::from(
        &state
            .store
            .set_retention_days(caller.scope(), req.days, &caller.actor())
            .await?,
    )))
}

/// Grants an auditor the data (spend, inventory, tags) or takes it back
/// (owners; audited).
#[utoipa::path(put, path = "/api/v1/users/{id}/data-access", tag = "users",
    params(("id" = Uuid, Path, description = "user id")), request_body = DataAccessChange,
    responses((status = 200, body = DataAccessView), E401, E403, E404, E422))]
pub async fn set_data_access(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(req): Body<DataAccessChange>,
) -> Result<Json<DataAccessView>, ApiError> {
    caller.require(Permission::GrantAuditAccess, "granting auditors the data")?;
    let user: UserId = parse_id(&id, "user")?;
    let u = state
        .store
        .set_data_access(caller.scope(), user, req.granted, &caller.actor())
        .await?;
    Ok(Json(DataAccessView {
        user_id: u.id.as_uuid(),
        role: u.role,
        data_access: u.data_access,
    }))
}
