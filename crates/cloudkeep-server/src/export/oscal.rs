//! OSCAL 1.1 documents of an assessment, typed: the catalog of the Trust
//! Services Criteria in scope, an assessment plan selecting them, and the
//! assessment results (one observation per attached evidence row, one
//! finding per control) importing that plan. Only the fields cloudkeep
//! fills are modelled. OSCAL's UUIDs are version 4 or 5, so every UUID
//! here is derived from cloudkeep's ids (`derived`): the same assessment
//! gives the same documents.

use chrono::{DateTime, SecondsFormat, Utc};
use cloudkeep_domain::evidence::{ControlId, EvidenceResult};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ExportData;

pub const OSCAL_VERSION: &str = "1.1.2";
/// The namespace of cloudkeep's own properties.
pub const NS: &str = "https://cloudkeep.dev/ns/oscal";
pub const CATALOG_FILE: &str = "catalog.json";
pub const PLAN_FILE: &str = "assessment-plan.json";
pub const RESULTS_FILE: &str = "assessment-results.json";

/// A stable version-4-shaped UUID for `what` of `id`.
pub fn derived(id: Uuid, what: &str) -> Uuid {
    let digest = Sha256::digest(format!("cloudkeep:{what}:{id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

fn when(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// OSCAL ids are tokens; a control's is its criterion in lower case.
pub fn control_token(c: ControlId) -> String {
    c.as_str().to_ascii_lowercase()
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Metadata {
    pub title: String,
    pub last_modified: String,
    pub version: String,
    pub oscal_version: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Property {
    pub name: String,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ns: Option<&'static str>,
}

fn prop(name: &str, value: impl Into<String>) -> Property {
    Property {
        name: name.to_string(),
        value: value.into(),
        ns: Some(NS),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Link {
    pub href: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rel: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Part {
    pub id: String,
    pub name: String,
    pub prose: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Control {
    pub id: String,
    pub title: String,
    pub parts: Vec<Part>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Group {
    pub id: String,
    pub title: String,
    pub controls: Vec<Control>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Catalog {
    pub uuid: Uuid,
    pub metadata: Metadata,
    pub groups: Vec<Group>,
}

#[derive(Debug, Serialize)]
pub struct CatalogDocument {
    pub catalog: Catalog,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SelectControlById {
    pub control_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ControlSelection {
    pub description: String,
    pub include_controls: Vec<SelectControlById>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReviewedControls {
    pub control_selections: Vec<ControlSelection>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ImportHref {
    pub href: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Resource {
    pub uuid: Uuid,
    pub title: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rlinks: Vec<Rlink>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Rlink {
    pub href: String,
    pub media_type: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BackMatter {
    pub resources: Vec<Resource>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AssessmentPlan {
    pub uuid: Uuid,
    pub metadata: Metadata,
    /// cloudkeep keeps no system security plan; the reference names the
    /// organisation's (OSCAL requires one).
    pub import_ssp: ImportHref,
    pub reviewed_controls: ReviewedControls,
    pub back_matter: BackMatter,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct PlanDocument {
    pub assessment_plan: AssessmentPlan,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Observation {
    pub uuid: Uuid,
    pub title: String,
    pub description: String,
    pub props: Vec<Property>,
    pub methods: Vec<&'static str>,
    pub collected: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ObjectiveStatus {
    pub state: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FindingTarget {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub target_id: String,
    pub status: ObjectiveStatus,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RelatedObservation {
    pub observation_uuid: Uuid,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Finding {
    pub uuid: Uuid,
    pub title: String,
    pub description: String,
    pub target: FindingTarget,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related_observations: Vec<RelatedObservation>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AssessmentResult {
    pub uuid: Uuid,
    pub title: String,
    pub description: String,
    pub start: String,
    pub end: String,
    pub props: Vec<Property>,
    pub reviewed_controls: ReviewedControls,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub observations: Vec<Observation>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AssessmentResults {
    pub uuid: Uuid,
    pub metadata: Metadata,
    pub import_ap: ImportHref,
    pub results: Vec<AssessmentResult>,
    pub back_matter: BackMatter,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResultsDocument {
    pub assessment_results: AssessmentResults,
}

fn metadata(data: &ExportData, title: String) -> Metadata {
    let a = &data.assessment;
    Metadata {
        title,
        // An approved assessment's documents do not change; a draft's are
        // as of the export.
        last_modified: when(a.approved_at.unwrap_or(data.exported_at)),
        version: format!("{}", a.state),
        oscal_version: OSCAL_VERSION,
    }
}

fn selection(data: &ExportData) -> ReviewedControls {
    ReviewedControls {
        control_selections: vec![ControlSelection {
            description: "The SOC 2 Trust Services Criteria in the assessment's scope.".into(),
            include_controls: data
                .assessment
                .controls()
                .into_iter()
                .map(|c| SelectControlById {
                    control_id: control_token(c),
                })
                .collect(),
        }],
    }
}

fn link_to(id: Uuid, what: &str, title: &str, href: &str) -> Resource {
    Resource {
        uuid: derived(id, what),
        title: title.into(),
        rlinks: vec![Rlink {
            href: href.into(),
            media_type: "application/oscal.catalog+json".into(),
        }],
    }
}

pub fn catalog(data: &ExportData) -> CatalogDocument {
    let a = &data.assessment;
    CatalogDocument {
        catalog: Catalog {
            uuid: derived(a.id, "catalog"),
            metadata: metadata(
                data,
                "AICPA Trust Services Criteria (2017, revised 2022): the criteria in scope".into(),
            ),
            groups: vec![Group {
                id: "cc".into(),
                title: "Common Criteria".into(),
                controls: a
                    .controls()
                    .into_iter()
                    .map(|c| Control {
                        id: control_token(c),
                        title: format!("{c} {}", c.title()),
                        parts: vec![Part {
                            id: format!("{}_smt", control_token(c)),
                            name: "statement".into(),
                            prose: c.criterion().into(),
                        }],
                    })
                    .collect(),
            }],
        },
    }
}

pub fn plan(data: &ExportData) -> PlanDocument {
    let a = &data.assessment;
    PlanDocument {
        assessment_plan: AssessmentPlan {
            uuid: derived(a.id, "plan"),
            metadata: metadata(data, format!("Assessment plan: {}", a.name)),
            import_ssp: ImportHref {
                href: format!("#{}", derived(a.id, "ssp")),
            },
            reviewed_controls: selection(data),
            back_matter: BackMatter {
                resources: vec![
                    link_to(a.id, "catalog-link", "Catalog", CATALOG_FILE),
                    Resource {
                        uuid: derived(a.id, "ssp"),
                        title: "The organisation's system security plan (kept outside cloudkeep)"
                            .into(),
                        rlinks: Vec::new(),
                    },
                ],
            },
        },
    }
}

fn method(result: EvidenceResult) -> &'static str {
    match result {
        // Read from Azure's configuration by a collector: a test.
        EvidenceResult::Pass | EvidenceResult::Fail => "TEST",
        EvidenceResult::NotApplicable | EvidenceResult::NotCollected => "EXAMINE",
    }
}

pub fn results(data: &ExportData) -> ResultsDocument {
    let a = &data.assessment;
    let changed: std::collections::HashSet<Uuid> =
        data.changes.iter().map(|c| c.attested).collect();
    let observations: Vec<Observation> = data
        .evidence
        .iter()
        .map(|row| {
            let e = &row.evidence;
            let mut props = vec![
                prop("evidence-id", e.id.to_string()),
                prop("check", e.check.as_str()),
                prop("result", e.result.as_str()),
                prop("fingerprint", e.fingerprint.clone()),
                prop("subject", e.subject.clone()),
            ];
            if changed.contains(&e.id) {
                props.push(prop("changed-after-approval", "true"));
            }
            Observation {
                uuid: derived(e.id, "observation"),
                title: format!("{}: {}", e.check.title(), e.result),
                description: match &e.reason {
                    Some(reason) => format!("{} on {}: {reason}", e.check, e.subject),
                    None => format!("{} on {}", e.check, e.subject),
                },
                props,
                methods: vec![method(e.result)],
                collected: when(e.observed_at),
                expires: e.valid_to.map(when),
            }
        })
        .collect();
    let findings = a
        .scope
        .iter()
        .map(|(control, checks)| {
            let rows: Vec<_> = data
                .evidence
                .iter()
                .filter(|r| checks.contains(&r.evidence.check))
                .collect();
            let failing = rows
                .iter()
                .filter(|r| {
                    matches!(
                        r.evidence.result,
                        EvidenceResult::Fail | EvidenceResult::NotCollected
                    )
                })
                .count();
            let satisfied = !rows.is_empty() && failing == 0;
            Finding {
                uuid: derived(a.id, &format!("finding:{control}")),
                title: format!("{control} {}", control.title()),
                description: format!(
                    "{} evidence rows over the period, {failing} failing or not collected.",
                    rows.len()
                ),
                target: FindingTarget {
                    kind: "statement-id",
                    target_id: format!("{}_smt", control_token(*control)),
                    status: ObjectiveStatus {
                        state: if satisfied {
                            "satisfied"
                        } else {
                            "not-satisfied"
                        },
                    },
                },
                related_observations: rows
                    .iter()
                    .map(|r| RelatedObservation {
                        observation_uuid: derived(r.evidence.id, "observation"),
                    })
                    .collect(),
            }
        })
        .collect();
    ResultsDocument {
        assessment_results: AssessmentResults {
            uuid: derived(a.id, "results"),
            metadata: metadata(data, format!("Assessment results: {}", a.name)),
            import_ap: ImportHref {
                href: PLAN_FILE.into(),
            },
            results: vec![AssessmentResult {
                uuid: derived(a.id, "result"),
                title: a.name.clone(),
                description: format!(
                    "Evidence cloudkeep collected from Azure over the audit period, {} ({}).",
                    a.state,
                    a.approved_by
                        .as_deref()
                        .map(|by| format!("approved by {by}"))
                        .unwrap_or_else(|| "not approved".into())
                ),
                start: when(a.period_start),
                end: when(a.period_end),
                props: vec![
                    prop("assessment-id", a.id.to_string()),
                    prop("state", a.state.as_str()),
                ],
                reviewed_controls: selection(data),
                observations,
                findings,
            }],
            back_matter: BackMatter {
                resources: vec![link_to(a.id, "catalog-link", "Catalog", CATALOG_FILE)],
            },
        },
    }
}
