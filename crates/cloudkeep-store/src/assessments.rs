//! Assessments: an audit period of evidence for the controls in scope,
//! attached and detached while a draft, immutable once approved (the
//! migration's triggers refuse UPDATE and DELETE of an approved assessment,
//! its scope and its attached evidence, whoever asks; approval closes the
//! attached rows still current and continues them in new rows). Type II samples
//! drawn reproducibly from a control's population, auditors' invitations
//! to one assessment, and an owner's grant of the data to an auditor.
//!
//! **Invariant:** every change here is audited in its transaction.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use cloudkeep_domain::assessment::{
    AssessmentDefinition, AssessmentState, InvitationState, draw_sample, invitation_state,
};
use cloudkeep_domain::evidence::{CheckId, ControlId, effective_checks};
use cloudkeep_domain::password::token_hash;
use cloudkeep_domain::{Role, SecretString, UserId};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::access::{scoped_secret, split_bearer};
use crate::audit::AuditEntry;
use crate::evidence::{COLUMNS, EvidenceRecord, record};
use crate::page::{Cursor, Page, PageRequest};
use crate::{OrgScope, Result, Store, StoreError, parse, time, within};

/// An assessment as stored, with what is attached to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub id: Uuid,
    pub name: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub state: AssessmentState,
    /// The controls in scope, each with the checks mapped to it when the
    /// assessment was created.
    pub scope: Vec<(ControlId, Vec<CheckId>)>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub approved_at: Option<DateTime<Utc>>,
    pub approved_by: Option<String>,
    /// Evidence rows attached.
    pub evidence: u64,
}

impl Assessment {
    pub fn controls(&self) -> Vec<ControlId> {
        self.scope.iter().map(|(c, _)| *c).collect()
    }

    /// Every check in scope, once.
    pub fn checks(&self) -> Vec<CheckId> {
        let mut all: Vec<CheckId> = self
            .scope
            .iter()
            .flat_map(|(_, checks)| checks.iter().copied())
            .collect();
        all.sort_by_key(|c| CheckId::ALL.iter().position(|x| x == c));
        all.dedup();
        all
    }
}

/// Which evidence to attach.
#[derive(Debug, Clone, PartialEq)]
pub enum Attach {
    /// Every row of a check in scope that held during the period.
    InScope,
    /// These rows (each must be of a check in scope and hold during the period).
    Rows(Vec<Uuid>),
}

/// One evidence row attached to an assessment.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachedEvidence {
    pub evidence: EvidenceRecord,
    pub attached_at: DateTime<Utc>,
    pub attached_by: String,
}

/// Evidence recorded after approval that differs from an attached row of
/// the same subject and check: shown on the assessment, never edited in.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeAfterApproval {
    /// The attached (attested) row.
    pub attested: Uuid,
    pub later: EvidenceRecord,
}

/// A Type II sample of a control's population.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub id: Uuid,
    pub assessment_id: Uuid,
    pub control: ControlId,
    pub seed: u64,
    pub size: u64,
    /// The population's size and SHA-256 (of its sorted ids, one a line)
    /// when drawn: a redo of the draw over the same population gives the
    /// same items.
    pub population: u64,
    pub population_hash: String,
    pub drawn_at: DateTime<Utc>,
    pub drawn_by: String,
    /// The rows drawn, in draw order.
    pub items: Vec<Uuid>,
}

/// An auditor's invitation to one assessment.
#[derive(Debug, Clone, PartialEq)]
pub struct Invitation {
    pub id: Uuid,
    pub assessment_id: Uuid,
    pub email: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// At the store's clock when read.
    pub state: InvitationState,
}

/// Who holds an invitation's secret: that assessment, in that organisation,
/// and nothing else.
#[derive(Debug, Clone)]
pub struct InvitationAccess {
    pub scope: OrgScope,
    pub invitation: Invitation,
}

impl InvitationAccess {
    /// How the audit log names the holder.
    pub fn actor(&self) -> String {
        format!("invitation:{}", self.invitation.id)
    }
}

const INVITATION_PREFIX: &str = "cki_";

const ASSESSMENT_COLUMNS: &str = "a.assessment_id, a.name, a.period_start, a.period_end, a.state, a.created_at, a.created_by, \
     a.approved_at, a.approved_by, (SELECT COUNT(*) FROM assessment_evidence ae WHERE ae.org_id = a.org_id AND ae.assessment_id = a.assessment_id) AS evidence";

fn assessment(row: &AnyRow, scope: Vec<(ControlId, Vec<CheckId>)>) -> Result<Assessment> {
    Ok(Assessment {
        id: parse(row, "assessment_id")?,
        name: row.try_get("name")?,
        period_start: time(row.try_get("period_start")?),
        period_end: time(row.try_get("period_end")?),
        state: parse(row, "state")?,
        scope,
        created_at: time(row.try_get("created_at")?),
        created_by: row.try_get("created_by")?,
        approved_at: row.try_get::<Option<i64>, _>("approved_at")?.map(time),
        approved_by: row.try_get("approved_by")?,
        evidence: row.try_get::<i64, _>("evidence")?.max(0) as u64,
    })
}

const INVITATION_COLUMNS: &str =
    "invitation_id, assessment_id, email, created_at, created_by, expires_at, revoked_at";

fn invitation(row: &AnyRow, now: DateTime<Utc>) -> Result<Invitation> {
    let expires_at = time(row.try_get("expires_at")?);
    let revoked_at = row.try_get::<Option<i64>, _>("revoked_at")?.map(time);
    Ok(Invitation {
        id: parse(row, "invitation_id")?,
        assessment_id: parse(row, "assessment_id")?,
        email: row.try_get("email")?,
        created_at: time(row.try_get("created_at")?),
        created_by: row.try_get("created_by")?,
        expires_at,
        revoked_at,
        state: invitation_state(expires_at, revoked_at.is_some(), now),
    })
}

/// SHA-256 of sorted ids, one a line: names a population.
pub fn population_hash(ids: &[Uuid]) -> String {
    let mut sorted: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    sorted.sort();
    let mut h = Sha256::new();
    for id in sorted {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    hex::encode(h.finalize())
}

impl Store {
    /// Creates a draft assessment; the controls' checks are taken from the
    /// organisation's mapping now and kept with it. Audited
    /// (`assessment.created`).
    pub async fn create_assessment(
        &self,
        scope: &OrgScope,
        def: &AssessmentDefinition,
        actor: &str,
    ) -> Result<Assessment> {
        let id = Uuid::now_v7();
        let now = self.now_ms();
        let overrides = self.control_mapping_overrides(scope).await?;
        let mapping: Vec<(ControlId, Vec<CheckId>)> = def
            .controls
            .iter()
            .map(|c| (*c, effective_checks(*c, &overrides)))
            .collect();
        let entry = AuditEntry::new(
            actor,
            "assessment.created",
            format!("assessment:{id}"),
            json!({
                "name": def.name,
                "period_start": def.period_start.to_rfc3339(),
                "period_end": def.period_end.to_rfc3339(),
                "controls": def.controls.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            }),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            sqlx::query(
                "INSERT INTO assessments (org_id, assessment_id, name, period_start, period_end, state, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(&def.name)
            .bind(def.period_start.timestamp_millis())
            .bind(def.period_end.timestamp_millis())
            .bind(AssessmentState::Draft.as_str())
            .bind(now)
            .bind(actor)
            .execute(&mut **tx)
            .await?;
            for (control, checks) in &mapping {
                sqlx::query("INSERT INTO assessment_controls (org_id, assessment_id, control_id) VALUES ($1, $2, $3)")
                    .bind(scope.id())
                    .bind(id.to_string())
                    .bind(control.as_str())
                    .execute(&mut **tx)
                    .await?;
                for check in checks {
                    sqlx::query(
                        "INSERT INTO assessment_checks (org_id, assessment_id, control_id, check_id) VALUES ($1, $2, $3, $4)",
                    )
                    .bind(scope.id())
                    .bind(id.to_string())
                    .bind(control.as_str())
                    .bind(check.as_str())
                    .execute(&mut **tx)
                    .await?;
                }
            }
            Ok(())
        })
        .await?;
        tx.commit().await?;
        self.assessment(scope, id).await
    }

    async fn assessment_scope(
        &self,
        scope: &OrgScope,
        id: Uuid,
    ) -> Result<Vec<(ControlId, Vec<CheckId>)>> {
        let controls = sqlx::query(
            "SELECT control_id FROM assessment_controls WHERE org_id = $1 AND assessment_id = $2",
        )
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let checks = sqlx::query(
            "SELECT control_id, check_id FROM assessment_checks WHERE org_id = $1 AND assessment_id = $2",
        )
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut by_control: BTreeMap<usize, (ControlId, Vec<CheckId>)> = BTreeMap::new();
        let order = |c: ControlId| ControlId::ALL.iter().position(|x| *x == c).unwrap_or(0);
        for r in &controls {
            let c: ControlId = parse(r, "control_id")?;
            by_control.insert(order(c), (c, Vec::new()));
        }
        for r in &checks {
            let c: ControlId = parse(r, "control_id")?;
            let check: CheckId = parse(r, "check_id")?;
            if let Some((_, list)) = by_control.get_mut(&order(c)) {
                list.push(check);
            }
        }
        Ok(by_control
            .into_values()
            .map(|(c, mut checks)| {
                checks.sort_by_key(|k| CheckId::ALL.iter().position(|x| x == k));
                (c, checks)
            })
            .collect())
    }

    /// An assessment's state (not found when it is not the organisation's).
    async fn assessment_state(&self, scope: &OrgScope, id: Uuid) -> Result<AssessmentState> {
        let row =
            sqlx::query("SELECT state FROM assessments WHERE org_id = $1 AND assessment_id = $2")
                .bind(scope.id())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StoreError::NotFound { what: "assessment" })?;
        parse(&row, "state")
    }

    pub async fn assessment(&self, scope: &OrgScope, id: Uuid) -> Result<Assessment> {
        let row = sqlx::query(&format!(
            "SELECT {ASSESSMENT_COLUMNS} FROM assessments a WHERE a.org_id = $1 AND a.assessment_id = $2"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "assessment" })?;
        assessment(&row, self.assessment_scope(scope, id).await?)
    }

    /// Assessments, newest first.
    pub async fn assessments(
        &self,
        scope: &OrgScope,
        page: &PageRequest,
    ) -> Result<Page<Assessment>> {
        let (before, after_id) = page.time_and_id(i64::MAX)?;
        let rows = sqlx::query(&format!(
            "SELECT {ASSESSMENT_COLUMNS} FROM assessments a WHERE a.org_id = $1 \
             AND (a.created_at < $2 OR (a.created_at = $2 AND a.assessment_id > $3)) \
             ORDER BY a.created_at DESC, a.assessment_id LIMIT $4"
        ))
        .bind(scope.id())
        .bind(before)
        .bind(after_id)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let id: Uuid = parse(r, "assessment_id")?;
            items.push(assessment(r, self.assessment_scope(scope, id).await?)?);
        }
        Ok(Page::from_rows(items, page, |a| {
            Cursor::of(&[
                &a.created_at.timestamp_millis().to_string(),
                &a.id.to_string(),
            ])
        }))
    }

    /// A draft's state, or why it cannot change.
    async fn draft(&self, scope: &OrgScope, id: Uuid, doing: &str) -> Result<Assessment> {
        let a = self.assessment(scope, id).await?;
        if a.state == AssessmentState::Approved {
            return Err(StoreError::State(format!(
                "cannot {doing}: the assessment was approved at {} and is immutable",
                a.approved_at.map(|t| t.to_rfc3339()).unwrap_or_default()
            )));
        }
        Ok(a)
    }

    /// Attaches evidence to a draft: every row of a check in scope that
    /// held during the period, or the rows named (each checked likewise).
    /// Rows already attached stay as they are. Answers how many were
    /// added; audited (`assessment.evidence_attached`) when any were.
    pub async fn attach_evidence(
        &self,
        scope: &OrgScope,
        id: Uuid,
        what: &Attach,
        actor: &str,
    ) -> Result<u64> {
        let a = self.draft(scope, id, "attach evidence").await?;
        let checks = a.checks();
        let (start, end) = (
            a.period_start.timestamp_millis(),
            a.period_end.timestamp_millis(),
        );
        // Held during the period: first observed by its end, and holding
        // (to its close, or while current its last observation) at its start.
        let held = "e.observed_at <= $3 AND COALESCE(e.valid_to, e.last_observed_at) >= $4";
        if let Attach::Rows(rows) = what {
            if rows.is_empty() {
                return Err(StoreError::Invalid(
                    "name at least one evidence row to attach".into(),
                ));
            }
            for row in rows {
                let found = sqlx::query(&format!(
                    "SELECT e.check_id, CAST(CASE WHEN {held} THEN 1 ELSE 0 END AS BIGINT) AS held FROM evidence e \
                     WHERE e.org_id = $1 AND e.evidence_id = $2"
                ))
                .bind(scope.id())
                .bind(row.to_string())
                .bind(end)
                .bind(start)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| StoreError::Invalid(format!("evidence {row} does not exist")))?;
                let check: CheckId = parse(&found, "check_id")?;
                if !checks.contains(&check) {
                    return Err(StoreError::Invalid(format!(
                        "evidence {row} is of check {check}, which no control in scope has"
                    )));
                }
                if found.try_get::<i64, _>("held")? == 0 {
                    return Err(StoreError::Invalid(format!(
                        "evidence {row} did not hold during the assessment's period"
                    )));
                }
            }
        }
        let now = self.now_ms();
        let mut tx = self.begin_audited(scope).await?;
        let added = within(async {
            let mut added = 0;
            let chosen: Vec<Option<Uuid>> = match what {
                Attach::InScope => vec![None],
                Attach::Rows(rows) => rows.iter().copied().map(Some).collect(),
            };
            for row in chosen {
                let done = sqlx::query(&format!(
                    "INSERT INTO assessment_evidence (org_id, assessment_id, evidence_id, fingerprint, attached_at, attached_by, check_id, observed_at) \
                     SELECT e.org_id, $2, e.evidence_id, e.fingerprint, $5, $6, e.check_id, e.observed_at FROM evidence e \
                     WHERE e.org_id = $1 AND {held} \
                       AND e.check_id IN (SELECT c.check_id FROM assessment_checks c WHERE c.org_id = $1 AND c.assessment_id = $2) \
                       AND ($7 = '' OR e.evidence_id = $7) \
                       AND NOT EXISTS (SELECT 1 FROM assessment_evidence x WHERE x.org_id = $1 AND x.assessment_id = $2 AND x.evidence_id = e.evidence_id)"
                ))
                .bind(scope.id())
                .bind(id.to_string())
                .bind(end)
                .bind(start)
                .bind(now)
                .bind(actor)
                .bind(row.map(|r| r.to_string()).unwrap_or_default())
                .execute(&mut **tx)
                .await?;
                added += done.rows_affected();
            }
            if added > 0 {
                let entry = AuditEntry::new(
                    actor,
                    "assessment.evidence_attached",
                    format!("assessment:{id}"),
                    json!({
                        "added": added,
                        "selection": match what { Attach::InScope => "in_scope", Attach::Rows(_) => "rows" },
                    }),
                );
                self.record(&mut tx, scope, &entry).await?;
            }
            Ok(added)
        })
        .await?;
        tx.commit_recorded().await?;
        Ok(added)
    }

    /// Detaches rows from a draft (all of them when `rows` is `None`).
    /// Answers how many; audited (`assessment.evidence_detached`) when any.
    pub async fn detach_evidence(
        &self,
        scope: &OrgScope,
        id: Uuid,
        rows: Option<&[Uuid]>,
        actor: &str,
    ) -> Result<u64> {
        self.draft(scope, id, "detach evidence").await?;
        let mut tx = self.begin_audited(scope).await?;
        let removed = within(async {
            let mut removed = 0;
            let chosen: Vec<Option<Uuid>> = match rows {
                None => vec![None],
                Some(rows) => rows.iter().copied().map(Some).collect(),
            };
            for row in chosen {
                let done = sqlx::query(
                    "DELETE FROM assessment_evidence WHERE org_id = $1 AND assessment_id = $2 AND ($3 = '' OR evidence_id = $3)",
                )
                .bind(scope.id())
                .bind(id.to_string())
                .bind(row.map(|r| r.to_string()).unwrap_or_default())
                .execute(&mut **tx)
                .await?;
                removed += done.rows_affected();
            }
            if removed > 0 {
                let entry = AuditEntry::new(
                    actor,
                    "assessment.evidence_detached",
                    format!("assessment:{id}"),
                    json!({ "removed": removed }),
                );
                self.record(&mut tx, scope, &entry).await?;
            }
            Ok(removed)
        })
        .await?;
        tx.commit_recorded().await?;
        Ok(removed)
    }

    /// Approves a draft with evidence attached: from now on the store
    /// refuses any change to it. Attached rows still current are closed at
    /// the approval instant and continued in new rows from it (see
    /// `Store::close_attested`), so that later syncs extend or close those,
    /// never what was attested. Audited (`assessment.approved`) with the
    /// SHA-256 of its rows' ids and fingerprints, so the attested set can
    /// be checked later against the export.
    pub async fn approve_assessment(
        &self,
        scope: &OrgScope,
        id: Uuid,
        actor: &str,
    ) -> Result<Assessment> {
        let a = self.draft(scope, id, "approve").await?;
        if a.evidence == 0 {
            return Err(StoreError::State(
                "cannot approve: no evidence is attached; attach the period's evidence first"
                    .into(),
            ));
        }
        let now = self.now_ms();
        let mut tx = self.begin_audited(scope).await?;
        within(async {
            let rows = sqlx::query(
                "SELECT evidence_id, fingerprint FROM assessment_evidence WHERE org_id = $1 AND assessment_id = $2 ORDER BY evidence_id",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .fetch_all(&mut **tx)
            .await?;
            let mut h = Sha256::new();
            for r in &rows {
                h.update(r.try_get::<String, _>("evidence_id")?.as_bytes());
                h.update(b" ");
                h.update(r.try_get::<String, _>("fingerprint")?.as_bytes());
                h.update(b"\n");
            }
            // Attested rows still current are closed now and continued in
            // new rows, before the triggers freeze them with the assessment.
            let continued = self.close_attested(&mut tx, scope, id, now).await?;
            let done = sqlx::query(
                "UPDATE assessments SET state = $3, approved_at = $4, approved_by = $5 \
                 WHERE org_id = $1 AND assessment_id = $2 AND state = $6",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(AssessmentState::Approved.as_str())
            .bind(now)
            .bind(actor)
            .bind(AssessmentState::Draft.as_str())
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::State(
                    "cannot approve: the assessment was approved meanwhile".into(),
                ));
            }
            let entry = AuditEntry::new(
                actor,
                "assessment.approved",
                format!("assessment:{id}"),
                json!({
                    "evidence": rows.len(),
                    "evidence_digest": hex::encode(h.finalize()),
                    "continued": continued,
                }),
            );
            self.record(&mut tx, scope, &entry).await
        })
        .await?;
        tx.commit().await?;
        self.assessment(scope, id).await
    }

    /// The attached evidence, oldest observation first, a page at a time.
    pub async fn assessment_evidence(
        &self,
        scope: &OrgScope,
        id: Uuid,
        page: &PageRequest,
    ) -> Result<Page<AttachedEvidence>> {
        let (after_ms, after_id) = page.time_and_id(i64::MIN)?;
        let rows = sqlx::query(&format!(
            // The row's own copy of its evidence's observation time (migration
            // 0018) orders the page along an index; the evidence is read for
            // the page's rows only.
            "SELECT {COLUMNS}, ae.attached_at, ae.attached_by FROM assessment_evidence ae \
             JOIN evidence e ON e.org_id = ae.org_id AND e.evidence_id = ae.evidence_id \
             WHERE ae.org_id = $1 AND ae.assessment_id = $2 \
               AND (ae.observed_at > $3 OR (ae.observed_at = $3 AND ae.evidence_id > $4)) \
             ORDER BY ae.observed_at, ae.evidence_id LIMIT $5"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .bind(after_ms)
        .bind(after_id)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(AttachedEvidence {
                    evidence: record(r)?,
                    attached_at: time(r.try_get("attached_at")?),
                    attached_by: r.try_get("attached_by")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |a| {
            Cursor::of(&[
                &a.evidence.observed_at.timestamp_millis().to_string(),
                &a.evidence.id.to_string(),
            ])
        }))
    }

    /// Every attached row (for exports).
    pub async fn all_assessment_evidence(
        &self,
        scope: &OrgScope,
        id: Uuid,
    ) -> Result<Vec<AttachedEvidence>> {
        let mut out = Vec::new();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let p = self.assessment_evidence(scope, id, &page).await?;
            out.extend(p.items);
            match p.next {
                Some(next) => page.after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Evidence recorded after approval that differs from an attached row
    /// of the same subject and check (none for a draft).
    pub async fn changes_after_approval(
        &self,
        scope: &OrgScope,
        id: Uuid,
    ) -> Result<Vec<ChangeAfterApproval>> {
        // A draft has none: not a join over every attached row to say so.
        if self.assessment_state(scope, id).await? != AssessmentState::Approved {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(&format!(
            "SELECT o.evidence_id AS attested_id, {COLUMNS} FROM assessment_evidence ae \
             JOIN assessments a ON a.org_id = ae.org_id AND a.assessment_id = ae.assessment_id \
             JOIN evidence o ON o.org_id = ae.org_id AND o.evidence_id = ae.evidence_id \
             JOIN evidence e ON e.org_id = o.org_id AND e.subscription_id = o.subscription_id AND e.check_id = o.check_id \
               AND e.subject_key = o.subject_key AND e.observed_at > o.observed_at AND e.fingerprint <> o.fingerprint \
               AND e.recorded_at >= a.approved_at \
             WHERE ae.org_id = $1 AND ae.assessment_id = $2 AND a.state = $3 \
             ORDER BY e.observed_at, e.evidence_id"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .bind(AssessmentState::Approved.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ChangeAfterApproval {
                    attested: parse(r, "attested_id")?,
                    later: record(r)?,
                })
            })
            .collect()
    }

    /// A control's population: the attached rows of its checks (as mapped
    /// when the assessment was created), in id order.
    pub async fn population(
        &self,
        scope: &OrgScope,
        id: Uuid,
        control: ControlId,
    ) -> Result<Vec<Uuid>> {
        // The scope alone: `assessment` also counts every attached row.
        self.assessment_state(scope, id).await?;
        let controls: Vec<ControlId> = self
            .assessment_scope(scope, id)
            .await?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        if !controls.contains(&control) {
            return Err(StoreError::Invalid(format!(
                "{control} is not in the assessment's scope ({})",
                controls
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        // Each row carries its evidence's check (migration 0018): a range
        // of one index per check, no lookup of the evidence. The ids come
        // as one row: a population is tens of thousands of them, and on
        // SQLite each row is a hand-off from sqlx's worker thread and a
        // decode (measured: most of the assessment page on `large`).
        let row = sqlx::query(
            "SELECT string_agg(ae.evidence_id, ',') AS ids FROM assessment_evidence ae \
             WHERE ae.org_id = $1 AND ae.assessment_id = $2 AND ae.check_id IN \
               (SELECT c.check_id FROM assessment_checks c WHERE c.org_id = $1 AND c.assessment_id = $2 AND c.control_id = $3)",
        )
        .bind(scope.id())
        .bind(id.to_string())
        .bind(control.as_str())
        .fetch_one(&self.pool)
        .await?;
        let joined: Option<String> = row.try_get("ids")?;
        // In id order, as the population's hash reads them (a UUID's text
        // sorts as its bytes do).
        let mut ids = joined
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<Uuid>()
                    .map_err(|_| StoreError::Corrupt(format!("evidence_id = '{s}'")))
            })
            .collect::<Result<Vec<Uuid>>>()?;
        ids.sort_unstable();
        Ok(ids)
    }

    /// Draws a sample of `size` rows of a control's population with `seed`
    /// (a random one when `None`), stores it with the seed, and audits it
    /// (`assessment.sample_drawn`).
    pub async fn draw_sample(
        &self,
        scope: &OrgScope,
        id: Uuid,
        control: ControlId,
        size: u64,
        seed: Option<u64>,
        actor: &str,
    ) -> Result<Sample> {
        if size == 0 {
            return Err(StoreError::Invalid(
                "a sample needs a size of at least 1".into(),
            ));
        }
        let population = self.population(scope, id, control).await?;
        if population.is_empty() {
            return Err(StoreError::State(format!(
                "{control} has no evidence attached: nothing to sample"
            )));
        }
        let seed = seed.unwrap_or_else(|| Uuid::new_v4().as_u64_pair().0);
        let items = draw_sample(&population, size as usize, seed);
        let sample = Sample {
            id: Uuid::now_v7(),
            assessment_id: id,
            control,
            seed,
            size: items.len() as u64,
            population: population.len() as u64,
            population_hash: population_hash(&population),
            drawn_at: time(self.now_ms()),
            drawn_by: actor.to_string(),
            items,
        };
        let entry = AuditEntry::new(
            actor,
            "assessment.sample_drawn",
            format!("assessment:{id}"),
            json!({
                "sample": sample.id.to_string(), "control": control.as_str(), "seed": seed.to_string(),
                "size": sample.size, "population": sample.population, "population_hash": sample.population_hash,
            }),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            sqlx::query(
                "INSERT INTO assessment_samples (org_id, sample_id, assessment_id, control_id, seed, size, population, population_hash, drawn_at, drawn_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(scope.id())
            .bind(sample.id.to_string())
            .bind(id.to_string())
            .bind(control.as_str())
            .bind(seed.to_string())
            .bind(sample.size as i64)
            .bind(sample.population as i64)
            .bind(&sample.population_hash)
            .bind(sample.drawn_at.timestamp_millis())
            .bind(actor)
            .execute(&mut **tx)
            .await?;
            for (i, item) in sample.items.iter().enumerate() {
                sqlx::query(
                    "INSERT INTO assessment_sample_items (org_id, sample_id, position, evidence_id) VALUES ($1, $2, $3, $4)",
                )
                .bind(scope.id())
                .bind(sample.id.to_string())
                .bind(i as i64)
                .bind(item.to_string())
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        })
        .await?;
        tx.commit().await?;
        Ok(sample)
    }

    /// An assessment's samples, oldest first.
    pub async fn samples(&self, scope: &OrgScope, id: Uuid) -> Result<Vec<Sample>> {
        let rows = sqlx::query(
            "SELECT sample_id, control_id, seed, size, population, population_hash, drawn_at, drawn_by FROM assessment_samples \
             WHERE org_id = $1 AND assessment_id = $2 ORDER BY drawn_at, sample_id",
        )
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let sample_id: Uuid = parse(r, "sample_id")?;
            let items = sqlx::query(
                "SELECT evidence_id FROM assessment_sample_items WHERE org_id = $1 AND sample_id = $2 ORDER BY position",
            )
            .bind(scope.id())
            .bind(sample_id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|i| parse(i, "evidence_id"))
            .collect::<Result<Vec<Uuid>>>()?;
            out.push(Sample {
                id: sample_id,
                assessment_id: id,
                control: parse(r, "control_id")?,
                seed: parse(r, "seed")?,
                size: r.try_get::<i64, _>("size")?.max(0) as u64,
                population: r.try_get::<i64, _>("population")?.max(0) as u64,
                population_hash: r.try_get("population_hash")?,
                drawn_at: time(r.try_get("drawn_at")?),
                drawn_by: r.try_get("drawn_by")?,
                items,
            });
        }
        Ok(out)
    }

    /// Invites an auditor (by email) to one assessment for `days`; answers
    /// the invitation and its secret, shown once. Audited
    /// (`assessment.invitation_created`, without the secret).
    pub async fn invite_auditor(
        &self,
        scope: &OrgScope,
        id: Uuid,
        email: &str,
        days: i64,
        actor: &str,
    ) -> Result<(Invitation, SecretString)> {
        let email = email.trim().to_ascii_lowercase();
        if !email.contains('@') || email.len() > 254 {
            return Err(StoreError::Invalid(format!(
                "'{email}' is not an email address"
            )));
        }
        let max = cloudkeep_domain::assessment::MAX_INVITATION_DAYS;
        if !(1..=max).contains(&days) {
            return Err(StoreError::Invalid(format!(
                "an invitation lasts 1 to {max} days, not {days}"
            )));
        }
        self.assessment(scope, id).await?;
        let secret = scoped_secret(INVITATION_PREFIX, scope.org());
        let invitation_id = Uuid::now_v7();
        let now = self.now();
        let expires_at = now + Duration::days(days);
        let entry = AuditEntry::new(
            actor,
            "assessment.invitation_created",
            format!("assessment:{id}"),
            json!({ "invitation": invitation_id.to_string(), "email": email, "expires_at": expires_at.to_rfc3339() }),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            sqlx::query(
                "INSERT INTO assessment_invitations (org_id, invitation_id, assessment_id, email, token_hash, created_at, created_by, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(scope.id())
            .bind(invitation_id.to_string())
            .bind(id.to_string())
            .bind(&email)
            .bind(token_hash(&secret))
            .bind(now.timestamp_millis())
            .bind(actor)
            .bind(expires_at.timestamp_millis())
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        Ok((self.invitation(scope, id, invitation_id).await?, secret))
    }

    pub async fn invitation(
        &self,
        scope: &OrgScope,
        assessment_id: Uuid,
        id: Uuid,
    ) -> Result<Invitation> {
        let row = sqlx::query(&format!(
            "SELECT {INVITATION_COLUMNS} FROM assessment_invitations WHERE org_id = $1 AND assessment_id = $2 AND invitation_id = $3"
        ))
        .bind(scope.id())
        .bind(assessment_id.to_string())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "invitation" })?;
        invitation(&row, self.now())
    }

    /// An assessment's invitations, oldest first.
    pub async fn invitations(
        &self,
        scope: &OrgScope,
        assessment_id: Uuid,
    ) -> Result<Vec<Invitation>> {
        let now = self.now();
        sqlx::query(&format!(
            "SELECT {INVITATION_COLUMNS} FROM assessment_invitations WHERE org_id = $1 AND assessment_id = $2 ORDER BY created_at, invitation_id"
        ))
        .bind(scope.id())
        .bind(assessment_id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| invitation(r, now))
        .collect()
    }

    /// Revokes an invitation now; audited (`assessment.invitation_revoked`).
    /// An invitation already revoked or expired is refused, saying which.
    pub async fn revoke_invitation(
        &self,
        scope: &OrgScope,
        assessment_id: Uuid,
        id: Uuid,
        actor: &str,
    ) -> Result<Invitation> {
        let current = self.invitation(scope, assessment_id, id).await?;
        if current.state != InvitationState::Active {
            return Err(StoreError::State(format!(
                "the invitation is already {}",
                current.state
            )));
        }
        let now = self.now_ms();
        let entry = AuditEntry::new(
            actor,
            "assessment.invitation_revoked",
            format!("assessment:{assessment_id}"),
            json!({ "invitation": id.to_string(), "email": current.email }),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            sqlx::query(
                "UPDATE assessment_invitations SET revoked_at = $4, revoked_by = $5 \
                 WHERE org_id = $1 AND assessment_id = $2 AND invitation_id = $3 AND revoked_at IS NULL",
            )
            .bind(scope.id())
            .bind(assessment_id.to_string())
            .bind(id.to_string())
            .bind(now)
            .bind(actor)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        self.invitation(scope, assessment_id, id).await
    }

    /// Whose invitation a secret is, in whatever state (the caller refuses
    /// an expired or revoked one, saying so); `None` for no invitation.
    pub async fn authenticate_invitation(
        &self,
        secret: &SecretString,
    ) -> Result<Option<InvitationAccess>> {
        let Some((org, _)) = split_bearer(INVITATION_PREFIX, secret) else {
            return Ok(None);
        };
        let row = sqlx::query(&format!(
            "SELECT {INVITATION_COLUMNS} FROM assessment_invitations WHERE org_id = $1 AND token_hash = $2"
        ))
        .bind(org.to_string())
        .bind(token_hash(secret))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(InvitationAccess {
                scope: OrgScope::new(org),
                invitation: invitation(&r, self.now())?,
            })
        })
        .transpose()
    }

    /// Grants an auditor the data (spend, inventory, tags) or takes it
    /// back; audited (`user.data_access_changed`). Only auditors have it:
    /// the other roles' permissions already say what they read.
    pub async fn set_data_access(
        &self,
        scope: &OrgScope,
        user: UserId,
        granted: bool,
        actor: &str,
    ) -> Result<crate::User> {
        let u = self.user(scope, user).await?;
        if u.role != Role::Auditor {
            return Err(StoreError::Invalid(format!(
                "only an auditor's access to the data is granted; this user is {}",
                u.role
            )));
        }
        let entry = AuditEntry::new(
            actor,
            "user.data_access_changed",
            format!("user:{user}"),
            json!({ "granted": granted }),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            sqlx::query("UPDATE users SET data_access = $3 WHERE org_id = $1 AND user_id = $2")
                .bind(scope.id())
                .bind(user.to_string())
                .bind(i64::from(granted))
                .execute(&mut **tx)
                .await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        self.user(scope, user).await
    }
}
