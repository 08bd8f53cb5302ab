//! The wire types of evidence, controls, the control mapping, evidence
//! settings, alerts and webhooks.

use chrono::{DateTime, NaiveDate, Utc};
use cloudkeep_domain::evidence::{
    AlertKind, AlertState, CheckId, ControlId, CoverageState, DeliveryState, EvidenceResult,
    EvidenceSource, Tally,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// One interval of one subject's state under one check.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EvidenceView {
    pub id: Uuid,
    /// The connection that observed it.
    pub connection_id: Uuid,
    /// cloudkeep's subscription id.
    pub subscription_id: Uuid,
    pub collector: EvidenceSource,
    pub check: CheckId,
    /// The ARM id the check is about.
    pub subject: String,
    /// What was read, as canonical JSON.
    #[schema(value_type = Object)]
    pub facts: Value,
    pub result: EvidenceResult,
    /// Why it failed or was not collected.
    pub reason: Option<String>,
    /// SHA-256 of the canonical `[check, subject, facts]`.
    pub fingerprint: String,
    /// The sync run that first saw this state, and the last that saw it.
    pub run_id: Uuid,
    pub last_run_id: Uuid,
    /// When Azure was in this state: the start of the sync that first read it.
    pub observed_at: DateTime<Utc>,
    /// The start of the last sync that read it unchanged.
    pub last_observed_at: DateTime<Utc>,
    /// When the interval closed (the state changed or the subject went);
    /// none while current.
    pub valid_to: Option<DateTime<Utc>>,
    /// When cloudkeep wrote it.
    pub recorded_at: DateTime<Utc>,
}

impl From<&cloudkeep_store::EvidenceRecord> for EvidenceView {
    fn from(e: &cloudkeep_store::EvidenceRecord) -> Self {
        EvidenceView {
            id: e.id,
            connection_id: e.connection_id.as_uuid(),
            subscription_id: e.subscription_id.as_uuid(),
            collector: e.source,
            check: e.check,
            subject: e.subject.clone(),
            facts: e.facts.clone(),
            result: e.result,
            reason: e.reason.clone(),
            fingerprint: e.fingerprint.clone(),
            run_id: e.run_id,
            last_run_id: e.last_run_id,
            observed_at: e.observed_at,
            last_observed_at: e.last_observed_at,
            valid_to: e.valid_to,
            recorded_at: e.recorded_at,
        }
    }
}

/// An evidence row, the controls its check supports, and every interval
/// of its subject under its check (oldest first; no gaps, no overlaps).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EvidenceDetail {
    #[serde(flatten)]
    pub evidence: EvidenceView,
    pub controls: Vec<ControlId>,
    pub history: Vec<EvidenceView>,
}

/// Coverage figures: items by state, the worst state, evidence coverage
/// (fresh ÷ applicable) and pass rate (passing ÷ fresh).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CoverageView {
    pub state: CoverageState,
    pub applicable: u64,
    pub fresh: u64,
    pub passing: u64,
    pub failing: u64,
    pub stale: u64,
    pub not_collected: u64,
    /// Excluded from the figures.
    pub not_applicable: u64,
    /// Fresh ÷ applicable (none when nothing applies).
    pub evidence_coverage: Option<f64>,
    /// Passing ÷ fresh (none when nothing is fresh).
    pub pass_rate: Option<f64>,
}

impl From<&Tally> for CoverageView {
    fn from(t: &Tally) -> Self {
        CoverageView {
            state: t.state(),
            applicable: t.applicable(),
            fresh: t.fresh(),
            passing: t.passing,
            failing: t.failing,
            stale: t.stale,
            not_collected: t.not_collected,
            not_applicable: t.not_applicable,
            evidence_coverage: t.evidence_coverage(),
            pass_rate: t.pass_rate(),
        }
    }
}

/// A SOC 2 control with its coverage.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ControlView {
    pub id: ControlId,
    pub title: String,
    /// The criterion, in the AICPA's words.
    pub criterion: String,
    /// The checks mapped to it for this organisation.
    pub checks: Vec<CheckId>,
    pub coverage: CoverageView,
}

/// One check's coverage.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckCoverageView {
    pub check: CheckId,
    pub collector: EvidenceSource,
    /// What passes.
    pub title: String,
    pub coverage: CoverageView,
}

/// One day of a control's coverage.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ControlDayView {
    #[schema(value_type = String, format = Date)]
    pub day: NaiveDate,
    pub coverage: CoverageView,
}

/// A control: its checks' coverage, its current evidence, and its daily history.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ControlDetail {
    #[serde(flatten)]
    pub control: ControlView,
    /// Each of its checks' coverage.
    pub check_coverage: Vec<CheckCoverageView>,
    /// Its current evidence, failing and not collected first (at most
    /// `evidence_limit`; `GET /api/v1/evidence?control=` lists all).
    pub evidence: Vec<EvidenceView>,
    /// How many current evidence rows its checks have in all.
    pub evidence_total: u64,
    /// One entry per day with figures, oldest first.
    pub history: Vec<ControlDayView>,
}

/// A check of the catalogue and the controls it supports by default.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckInfo {
    pub id: CheckId,
    pub collector: EvidenceSource,
    pub title: String,
    pub default_controls: Vec<ControlId>,
}

/// How a check comes to be mapped to a control.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MappedCheck {
    pub check: CheckId,
    /// `default` (the documented mapping) or `added` (by the organisation).
    pub source: String,
}

/// A control's checks for this organisation.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MappingControlView {
    pub control: ControlId,
    pub title: String,
    pub checks: Vec<MappedCheck>,
    /// Checks of the default mapping the organisation took out.
    pub removed: Vec<CheckId>,
}

/// The organisation's control mapping, and the catalogue of checks.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MappingView {
    pub controls: Vec<MappingControlView>,
    pub checks: Vec<CheckInfo>,
}

/// Adds checks to one control and takes others out.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MappingChange {
    pub control: ControlId,
    #[serde(default)]
    pub add: Vec<CheckId>,
    #[serde(default)]
    pub remove: Vec<CheckId>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EvidenceSettingsView {
    /// The secure score (a fraction, 0.7 = 70%) at or above which
    /// `defender.secure_score` passes.
    pub secure_score_threshold: f64,
    /// Whether the defaults apply (nothing changed yet).
    pub default: bool,
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<String>,
}

impl From<&cloudkeep_store::EvidenceSettings> for EvidenceSettingsView {
    fn from(s: &cloudkeep_store::EvidenceSettings) -> Self {
        EvidenceSettingsView {
            secure_score_threshold: s.secure_score_threshold,
            default: s.updated_at.is_none(),
            updated_at: s.updated_at,
            updated_by: s.updated_by.clone(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceSettingsChange {
    /// A fraction from 0 to 1; applies from the next sync.
    pub secure_score_threshold: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    pub id: Uuid,
    pub kind: AlertKind,
    /// What it is about (`connection:{id}`).
    pub scope: String,
    pub state: AlertState,
    pub title: String,
    /// The numbers behind it.
    #[schema(value_type = Object)]
    pub figures: Value,
    pub opened_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<&cloudkeep_store::Alert> for AlertView {
    fn from(a: &cloudkeep_store::Alert) -> Self {
        AlertView {
            id: a.id,
            kind: a.kind,
            scope: a.scope.clone(),
            state: a.state,
            title: a.title.clone(),
            figures: a.figures.clone(),
            opened_at: a.opened_at,
            acknowledged_at: a.acknowledged_at,
            acknowledged_by: a.acknowledged_by.clone(),
            resolved_at: a.resolved_at,
            updated_at: a.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

impl From<&cloudkeep_store::Webhook> for WebhookView {
    fn from(w: &cloudkeep_store::Webhook) -> Self {
        WebhookView {
            id: w.id,
            name: w.name.clone(),
            url: w.url.clone(),
            enabled: w.enabled,
            created_at: w.created_at,
            created_by: w.created_by.clone(),
        }
    }
}

/// A new webhook: its signing secret is shown this once.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookCreated {
    pub webhook: WebhookView,
    /// Verify `X-Cloudkeep-Signature: t=<ts>,v1=<hex>` as HMAC-SHA256 of
    /// `"<ts>.<body>"` with this secret.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    pub name: String,
    /// An HTTPS URL of a public receiver.
    pub url: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    pub name: Option<String>,
    pub url: Option<String>,
    pub enabled: Option<bool>,
}

/// One attempt at a delivery.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub attempt: i64,
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, when it answered.
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// One event for one webhook, with its attempts.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    pub webhook_id: Uuid,
    /// `alert.opened`, `alert.acknowledged`, `alert.resolved`, `webhook.test`.
    pub event: String,
    pub alert_id: Option<Uuid>,
    pub state: DeliveryState,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// The body sent.
    #[schema(value_type = Object)]
    pub payload: Value,
    pub log: Vec<AttemptView>,
}

impl From<&cloudkeep_store::Delivery> for DeliveryView {
    fn from(d: &cloudkeep_store::Delivery) -> Self {
        DeliveryView {
            id: d.id,
            webhook_id: d.webhook_id,
            event: d.event.clone(),
            alert_id: d.alert_id,
            state: d.state,
            attempts: d.attempts,
            created_at: d.created_at,
            next_attempt_at: d.next_attempt_at,
            delivered_at: d.delivered_at,
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            payload: serde_json::from_str(&d.payload).unwrap_or(Value::Null),
            log: d
                .log
                .iter()
                .map(|a| AttemptView {
                    attempt: a.attempt,
                    at: a.at,
                    http_status: a.status,
                    error: a.error.clone(),
                    duration_ms: a.duration_ms,
                })
                .collect(),
        }
    }
}
