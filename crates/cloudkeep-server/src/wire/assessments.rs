//! The wire types of assessments, their evidence, samples and invitations,
//! the retention setting and an auditor's grant.

use chrono::{DateTime, Utc};
use cloudkeep_domain::Role;
use cloudkeep_domain::assessment::{AssessmentState, InvitationState};
use cloudkeep_domain::evidence::{CheckId, ControlId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::EvidenceView;

/// A control in an assessment's scope and the checks mapped to it when the
/// assessment was created.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScopedControl {
    pub control: ControlId,
    pub checks: Vec<CheckId>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AssessmentView {
    pub id: Uuid,
    pub name: String,
    /// The audit period (the observation window), inclusive.
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub state: AssessmentState,
    pub scope: Vec<ScopedControl>,
    /// Evidence rows attached.
    pub evidence: u64,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub approved_at: Option<DateTime<Utc>>,
    pub approved_by: Option<String>,
}

impl From<&cloudkeep_store::Assessment> for AssessmentView {
    fn from(a: &cloudkeep_store::Assessment) -> Self {
        AssessmentView {
            id: a.id,
            name: a.name.clone(),
            period_start: a.period_start,
            period_end: a.period_end,
            state: a.state,
            scope: a
                .scope
                .iter()
                .map(|(control, checks)| ScopedControl {
                    control: *control,
                    checks: checks.clone(),
                })
                .collect(),
            evidence: a.evidence,
            created_at: a.created_at,
            created_by: a.created_by.clone(),
            approved_at: a.approved_at,
            approved_by: a.approved_by.clone(),
        }
    }
}

/// Evidence recorded after approval that differs from an attached row:
/// shown, never edited in.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangeView {
    /// The attached (attested) row.
    pub attested: Uuid,
    pub later: EvidenceView,
}

impl From<&cloudkeep_store::ChangeAfterApproval> for ChangeView {
    fn from(c: &cloudkeep_store::ChangeAfterApproval) -> Self {
        ChangeView {
            attested: c.attested,
            later: EvidenceView::from(&c.later),
        }
    }
}

/// An assessment and the evidence that changed after its approval.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AssessmentDetail {
    #[serde(flatten)]
    pub assessment: AssessmentView,
    pub changed_after_approval: Vec<ChangeView>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct NewAssessmentRequest {
    pub name: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub controls: Vec<ControlId>,
}

/// What to attach: everything in scope that held during the period, or
/// the rows named.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AttachRequest {
    #[serde(default)]
    pub all_in_scope: bool,
    #[serde(default)]
    pub evidence: Vec<Uuid>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttachResult {
    /// Rows attached (or detached) by this request.
    pub changed: u64,
    pub assessment: AssessmentView,
}

/// An attached evidence row.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttachedEvidenceView {
    #[serde(flatten)]
    pub evidence: EvidenceView,
    pub attached_at: DateTime<Utc>,
    pub attached_by: String,
}

impl From<&cloudkeep_store::AttachedEvidence> for AttachedEvidenceView {
    fn from(a: &cloudkeep_store::AttachedEvidence) -> Self {
        AttachedEvidenceView {
            evidence: EvidenceView::from(&a.evidence),
            attached_at: a.attached_at,
            attached_by: a.attached_by.clone(),
        }
    }
}

/// A control's population: the attached rows of its checks, in id order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PopulationView {
    pub control: ControlId,
    pub size: u64,
    /// SHA-256 of the sorted ids, one a line.
    pub population_hash: String,
    pub evidence: Vec<Uuid>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct SampleRequest {
    pub control: ControlId,
    pub size: u64,
    /// Redo a draw with its seed (a decimal u64); a random one otherwise.
    pub seed: Option<String>,
}

/// A Type II sample: redraw it with SplitMix64 from `seed` over the sorted
/// population (docs/assessments.md).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SampleView {
    pub id: Uuid,
    pub control: ControlId,
    /// A u64, as a decimal string (JSON numbers lose precision past 2^53).
    pub seed: String,
    pub size: u64,
    pub population: u64,
    pub population_hash: String,
    pub drawn_at: DateTime<Utc>,
    pub drawn_by: String,
    /// In draw order.
    pub evidence: Vec<Uuid>,
}

impl From<&cloudkeep_store::Sample> for SampleView {
    fn from(s: &cloudkeep_store::Sample) -> Self {
        SampleView {
            id: s.id,
            control: s.control,
            seed: s.seed.to_string(),
            size: s.size,
            population: s.population,
            population_hash: s.population_hash.clone(),
            drawn_at: s.drawn_at,
            drawn_by: s.drawn_by.clone(),
            evidence: s.items.clone(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct InvitationRequest {
    pub email: String,
    /// Days until it expires (1 to 365; 30 by default).
    pub days: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InvitationView {
    pub id: Uuid,
    pub assessment_id: Uuid,
    pub email: String,
    pub state: InvitationState,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&cloudkeep_store::Invitation> for InvitationView {
    fn from(i: &cloudkeep_store::Invitation) -> Self {
        InvitationView {
            id: i.id,
            assessment_id: i.assessment_id,
            email: i.email.clone(),
            state: i.state,
            created_at: i.created_at,
            created_by: i.created_by.clone(),
            expires_at: i.expires_at,
            revoked_at: i.revoked_at,
        }
    }
}

/// A new invitation and its secret, shown once: the auditor sends it as
/// `Authorization: Bearer cki_...` to this assessment's routes only.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct InvitationCreated {
    pub invitation: InvitationView,
    pub secret: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RetentionView {
    /// Days evidence and sync history are kept after they stop being current.
    pub days: i64,
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<String>,
}

impl From<&cloudkeep_store::RetentionSettings> for RetentionView {
    fn from(r: &cloudkeep_store::RetentionSettings) -> Self {
        RetentionView {
            days: r.days,
            updated_at: r.updated_at,
            updated_by: r.updated_by.clone(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RetentionChange {
    pub days: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DataAccessChange {
    pub granted: bool,
}

/// An auditor's grant to the data (spend, inventory, tags).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DataAccessView {
    pub user_id: Uuid,
    pub role: Role,
    pub data_access: bool,
}

impl From<Result<i64, cloudkeep_store::AuditProblem>> for super::AuditVerification {
    fn from(r: Result<i64, cloudkeep_store::AuditProblem>) -> Self {
        match r {
            Ok(events) => super::AuditVerification {
                intact: true,
                events,
                broken_at: None,
                problem: None,
            },
            Err(problem) => super::AuditVerification {
                intact: false,
                events: problem.seq,
                broken_at: Some(problem.seq),
                problem: Some(problem.to_string()),
            },
        }
    }
}
