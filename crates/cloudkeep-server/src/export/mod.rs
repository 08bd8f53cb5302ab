//! Exports of an assessment: CSV (one line per attached evidence row),
//! JSON (the assessment, its evidence, samples and later changes), the
//! OSCAL 1.1 documents (`oscal`), and the audit package: one zip of all of
//! them with the audit events of the period and the result of verifying
//! the organisation's hash chain, and a manifest of every file's SHA-256.

pub mod oscal;

use std::io::Write;

use chrono::{DateTime, Utc};
use cloudkeep_store::{
    Assessment, AttachedEvidence, AuditFilter, ChangeAfterApproval, OrgScope, PageRequest, Sample,
    Store,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::ApiError;
use crate::wire::{
    AssessmentView, AttachedEvidenceView, AuditEventView, AuditVerification, ChangeView, SampleView,
};

/// Which OSCAL document `format=oscal` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OscalDocument {
    Results,
    Plan,
    Catalog,
}

/// Everything an export is made of, read once.
#[derive(Debug, Clone)]
pub struct ExportData {
    pub assessment: Assessment,
    pub evidence: Vec<AttachedEvidence>,
    pub samples: Vec<Sample>,
    pub changes: Vec<ChangeAfterApproval>,
    pub exported_at: DateTime<Utc>,
}

pub async fn gather(store: &Store, scope: &OrgScope, id: Uuid) -> Result<ExportData, ApiError> {
    Ok(ExportData {
        assessment: store.assessment(scope, id).await?,
        evidence: store.all_assessment_evidence(scope, id).await?,
        samples: store.samples(scope, id).await?,
        changes: store.changes_after_approval(scope, id).await?,
        exported_at: store.now(),
    })
}

/// The JSON export.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AssessmentExport {
    pub assessment: AssessmentView,
    pub evidence: Vec<AttachedEvidenceView>,
    pub samples: Vec<SampleView>,
    pub changed_after_approval: Vec<ChangeView>,
    pub exported_at: DateTime<Utc>,
}

fn to_json(value: &impl Serialize) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec_pretty(value).map_err(|e| ApiError::internal("export", e))
}

pub fn json(data: &ExportData) -> Result<Vec<u8>, ApiError> {
    to_json(&AssessmentExport {
        assessment: AssessmentView::from(&data.assessment),
        evidence: data
            .evidence
            .iter()
            .map(AttachedEvidenceView::from)
            .collect(),
        samples: data.samples.iter().map(SampleView::from).collect(),
        changed_after_approval: data.changes.iter().map(ChangeView::from).collect(),
        exported_at: data.exported_at,
    })
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line
/// break, quotes doubled.
fn field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

pub const CSV_HEADER: &[&str] = &[
    "assessment_id",
    "evidence_id",
    "controls",
    "check",
    "collector",
    "subject",
    "result",
    "reason",
    "observed_at",
    "last_observed_at",
    "valid_to",
    "fingerprint",
    "connection_id",
    "subscription_id",
    "changed_after_approval",
];

pub fn csv(data: &ExportData) -> Result<Vec<u8>, ApiError> {
    let a = &data.assessment;
    let mut out = CSV_HEADER.join(",");
    out.push_str("\r\n");
    for row in &data.evidence {
        let e = &row.evidence;
        let controls: Vec<&str> = a
            .scope
            .iter()
            .filter(|(_, checks)| checks.contains(&e.check))
            .map(|(c, _)| c.as_str())
            .collect();
        let changed = data.changes.iter().any(|c| c.attested == e.id);
        let fields = [
            a.id.to_string(),
            e.id.to_string(),
            controls.join(";"),
            e.check.to_string(),
            e.source.to_string(),
            e.subject.clone(),
            e.result.to_string(),
            e.reason.clone().unwrap_or_default(),
            e.observed_at.to_rfc3339(),
            e.last_observed_at.to_rfc3339(),
            e.valid_to.map(|t| t.to_rfc3339()).unwrap_or_default(),
            e.fingerprint.clone(),
            e.connection_id.to_string(),
            e.subscription_id.to_string(),
            changed.to_string(),
        ];
        out.push_str(
            &fields
                .iter()
                .map(|f| field(f))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push_str("\r\n");
    }
    Ok(out.into_bytes())
}

pub fn oscal_json(data: &ExportData, document: OscalDocument) -> Result<Vec<u8>, ApiError> {
    match document {
        OscalDocument::Results => to_json(&oscal::results(data)),
        OscalDocument::Plan => to_json(&oscal::plan(data)),
        OscalDocument::Catalog => to_json(&oscal::catalog(data)),
    }
}

/// The audit package's manifest: each file and its SHA-256.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Manifest {
    pub assessment_id: Uuid,
    pub exported_at: DateTime<Utc>,
    /// Which audit events `audit/events.jsonl` holds.
    pub audit_events: PackageEvents,
    pub files: Vec<ManifestEntry>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ManifestEntry {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// Which audit events a package holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PackageEvents {
    /// Every event from the period's start to the export (the period
    /// itself, and the assessment's own life), for readers of the audit log.
    Period,
    /// Only the assessment's own events (creation, attachments, approval,
    /// samples, invitations, exports), for readers without the audit log.
    Assessment,
}

async fn package_events(
    store: &Store,
    scope: &OrgScope,
    data: &ExportData,
    which: PackageEvents,
) -> Result<Vec<AuditEventView>, ApiError> {
    let filter = match which {
        PackageEvents::Period => AuditFilter {
            since: Some(data.assessment.period_start),
            ..Default::default()
        },
        PackageEvents::Assessment => AuditFilter {
            target: Some(format!("assessment:{}", data.assessment.id)),
            ..Default::default()
        },
    };
    let mut out = Vec::new();
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let found = store.audit_events(scope, &filter, &page).await?;
        out.extend(found.items.iter().map(AuditEventView::from));
        match found.next {
            Some(next) => page.after = Some(next),
            None => return Ok(out),
        }
    }
}

/// The audit package: a zip (entries stored, uncompressed) of the
/// assessment as JSON and CSV, the OSCAL documents, audit events (JSON
/// Lines: the period's with `full_log`, else the assessment's own) with
/// the chain's verification, and a manifest.
pub async fn package(
    store: &Store,
    scope: &OrgScope,
    data: &ExportData,
    full_log: bool,
) -> Result<Vec<u8>, ApiError> {
    let which = if full_log {
        PackageEvents::Period
    } else {
        PackageEvents::Assessment
    };
    let events = package_events(store, scope, data, which).await?;
    let verification = AuditVerification::from(store.verify_audit(scope).await?);
    let mut lines = Vec::new();
    for e in &events {
        lines.extend(serde_json::to_vec(e).map_err(|e| ApiError::internal("export", e))?);
        lines.push(b'\n');
    }
    let files: Vec<(String, Vec<u8>)> = vec![
        ("assessment.json".into(), json(data)?),
        ("evidence.csv".into(), csv(data)?),
        (
            format!("oscal/{}", oscal::CATALOG_FILE),
            oscal_json(data, OscalDocument::Catalog)?,
        ),
        (
            format!("oscal/{}", oscal::PLAN_FILE),
            oscal_json(data, OscalDocument::Plan)?,
        ),
        (
            format!("oscal/{}", oscal::RESULTS_FILE),
            oscal_json(data, OscalDocument::Results)?,
        ),
        ("audit/events.jsonl".into(), lines),
        ("audit/verification.json".into(), to_json(&verification)?),
    ];
    let manifest = Manifest {
        assessment_id: data.assessment.id,
        exported_at: data.exported_at,
        audit_events: which,
        files: files
            .iter()
            .map(|(path, body)| ManifestEntry {
                path: path.clone(),
                sha256: hex::encode(Sha256::digest(body)),
                bytes: body.len() as u64,
            })
            .collect(),
    };
    let manifest = to_json(&manifest)?;
    let fail = |e: &dyn std::fmt::Display| ApiError::internal("export zip", e.to_string());
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (path, body) in files
        .iter()
        .chain(std::iter::once(&("manifest.json".to_string(), manifest)))
    {
        zip.start_file(path.as_str(), options)
            .map_err(|e| fail(&e))?;
        zip.write_all(body).map_err(|e| fail(&e))?;
    }
    let cursor = zip.finish().map_err(|e| fail(&e))?;
    Ok(cursor.into_inner())
}
