//! Security evidence: observations kept as fingerprinted intervals, the
//! coverage they add up to per check and control (with a daily history),
//! the organisation's changes to the control mapping, and its evidence
//! settings.
//!
//! **Invariant:** a subject's intervals under one check never gap or
//! overlap: an unchanged observation extends the current interval
//! (`last_observed_at`); a change closes it at the sync's time and opens
//! the next at that same time; a subject no longer seen has its interval
//! closed and none opened. Approving an assessment closes its attached
//! rows still current and continues each in a new row from that instant
//! (`close_attested`), so a sync never changes an attested row.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use cloudkeep_domain::evidence::{
    CheckId, ControlId, CoverageState, EvidenceResult, EvidenceSource, MappingOverride, Tally,
    counts_as, effective_checks,
};
use cloudkeep_domain::report::Counts;
use cloudkeep_domain::{ConnectionId, SubscriptionId};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::audit::{AuditEntry, canonical};
use crate::connections::SubscriptionRecord;
use crate::page::{Cursor, Page, PageRequest};
use crate::sql::{Arg, Sql, bulk_insert};
use crate::{Backend, OrgScope, Result, Store, StoreError, Tx, parse, time, within};

/// One answer of one check about one subject, as a collector made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub check: CheckId,
    /// The ARM id the check is about.
    pub subject: String,
    /// What was read (stored as canonical JSON).
    pub facts: Value,
    pub result: EvidenceResult,
    /// Why it failed or was not collected.
    pub reason: Option<String>,
}

impl Observation {
    /// SHA-256 of the canonical JSON of `[check, subject, facts]` (the
    /// subject as compared: lower case).
    pub fn fingerprint(&self) -> String {
        let content = canonical(&json!([
            self.check.as_str(),
            self.subject.to_ascii_lowercase(),
            self.facts
        ]));
        hex::encode(Sha256::digest(content.as_bytes()))
    }
}

/// What recording one collector's observations of one subscription did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EvidenceCounts {
    /// Observations made.
    pub observed: u64,
    /// New intervals: subjects seen for the first time, or changed.
    pub opened: u64,
    /// Of those, subjects whose facts changed.
    pub changed: u64,
    /// Subjects no longer seen: their interval closed.
    pub closed: u64,
    pub passing: u64,
    pub failing: u64,
    pub not_applicable: u64,
    pub not_collected: u64,
}

impl From<EvidenceCounts> for Counts {
    fn from(c: EvidenceCounts) -> Counts {
        Counts::new()
            .with("observed", c.observed)
            .with("opened", c.opened)
            .with("changed", c.changed)
            .with("closed", c.closed)
            .with("passing", c.passing)
            .with("failing", c.failing)
            .with("not_applicable", c.not_applicable)
            .with("not_collected", c.not_collected)
    }
}

/// One stored interval of one subject's state under one check.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceRecord {
    pub id: Uuid,
    pub connection_id: ConnectionId,
    pub subscription_id: SubscriptionId,
    pub source: EvidenceSource,
    pub check: CheckId,
    pub subject: String,
    pub facts: Value,
    pub result: EvidenceResult,
    pub reason: Option<String>,
    pub fingerprint: String,
    /// The run that opened the interval, and the last one that saw it.
    pub run_id: Uuid,
    pub last_run_id: Uuid,
    /// When Azure was in this state: the start of the sync that first read it.
    pub observed_at: DateTime<Utc>,
    pub last_observed_at: DateTime<Utc>,
    /// When the interval closed; `None` while current.
    pub valid_to: Option<DateTime<Utc>>,
    /// When cloudkeep wrote it.
    pub recorded_at: DateTime<Utc>,
}

/// Which evidence to list.
#[derive(Debug, Clone, Default)]
pub struct EvidenceFilter {
    /// Any of these checks (a control's, or one); `None` for all.
    pub checks: Option<Vec<CheckId>>,
    pub result: Option<EvidenceResult>,
    /// An ARM id: its own evidence and that of everything under it (a
    /// vault's keys), any case.
    pub subject: Option<String>,
    /// A connection's evidence, also of subscriptions it no longer holds.
    /// Without it, only subscriptions held by a live connection are listed.
    pub connection: Option<ConnectionId>,
    pub subscription: Option<SubscriptionId>,
    /// Evidence known to hold during this period: first observed at or
    /// before `until`, and holding until (its interval's end, or while
    /// current its last observation) at or after `since`.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Only current intervals (else the history too).
    pub current_only: bool,
}

/// Coverage of one check or control, with the items behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Coverage {
    pub tally: Tally,
    pub state: CoverageState,
}

impl Coverage {
    fn of(tally: Tally) -> Coverage {
        Coverage {
            state: tally.state(),
            tally,
        }
    }
}

/// The organisation's coverage: per check, and per control over its
/// (effective) checks.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageReport {
    pub at: DateTime<Utc>,
    /// Every check, in the catalogue's order.
    pub checks: Vec<(CheckId, Coverage)>,
    pub controls: Vec<(ControlId, Vec<CheckId>, Coverage)>,
}

impl CoverageReport {
    pub fn check(&self, id: CheckId) -> Option<&Coverage> {
        self.checks
            .iter()
            .find(|(c, _)| *c == id)
            .map(|(_, cov)| cov)
    }

    pub fn control(&self, id: ControlId) -> Option<(&Vec<CheckId>, &Coverage)> {
        self.controls
            .iter()
            .find(|(c, _, _)| *c == id)
            .map(|(_, checks, cov)| (checks, cov))
    }
}

/// One day of a control's coverage.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlDay {
    pub day: NaiveDate,
    pub state: CoverageState,
    pub tally: Tally,
}

/// An organisation's evidence settings.
#[derive(Debug, Clone, PartialEq)]
pub struct EvidenceSettings {
    /// The secure score (a 0–1 fraction) at or above which it passes.
    pub secure_score_threshold: f64,
    /// `None` while the defaults apply.
    pub updated_at: Option<DateTime<Utc>>,
    pub updated_by: Option<String>,
}

/// A connection's sync health, for staleness.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncHealth {
    pub connection_id: ConnectionId,
    pub name: String,
    pub stale_after_secs: i64,
    /// The end of its last run that succeeded (or partly did).
    pub last_success: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl SyncHealth {
    /// When its evidence goes (or went) stale without another successful sync.
    pub fn stale_from(&self) -> DateTime<Utc> {
        self.last_success.unwrap_or(self.created_at)
            + chrono::Duration::seconds(self.stale_after_secs)
    }

    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        now > self.stale_from()
    }
}

const EVIDENCE_INSERT: &[&str] = &[
    "org_id",
    "evidence_id",
    "connection_id",
    "subscription_id",
    "collector",
    "check_id",
    "subject",
    "subject_key",
    "facts",
    "result",
    "reason",
    "fingerprint",
    "run_id",
    "last_run_id",
    "observed_at",
    "last_observed_at",
    "recorded_at",
];

pub(crate) const COLUMNS: &str = "e.evidence_id, e.connection_id, e.subscription_id, e.collector, e.check_id, e.subject, e.facts, e.result, \
     e.reason, e.fingerprint, e.run_id, e.last_run_id, e.observed_at, e.last_observed_at, e.valid_to, e.recorded_at";

pub(crate) fn record(row: &AnyRow) -> Result<EvidenceRecord> {
    let facts: String = row.try_get("facts")?;
    Ok(EvidenceRecord {
        id: parse(row, "evidence_id")?,
        connection_id: parse(row, "connection_id")?,
        subscription_id: parse(row, "subscription_id")?,
        source: parse(row, "collector")?,
        check: parse(row, "check_id")?,
        subject: row.try_get("subject")?,
        facts: serde_json::from_str(&facts)
            .map_err(|e| StoreError::Corrupt(format!("evidence facts: {e}")))?,
        result: parse(row, "result")?,
        reason: row.try_get("reason")?,
        fingerprint: row.try_get("fingerprint")?,
        run_id: parse(row, "run_id")?,
        last_run_id: parse(row, "last_run_id")?,
        observed_at: time(row.try_get("observed_at")?),
        last_observed_at: time(row.try_get("last_observed_at")?),
        valid_to: row.try_get::<Option<i64>, _>("valid_to")?.map(time),
        recorded_at: time(row.try_get("recorded_at")?),
    })
}

impl EvidenceFilter {
    /// The filter's conditions on `e` (evidence) and `s` (subscriptions).
    fn push_conditions(&self, sql: &mut Sql) {
        match self.connection {
            Some(c) => {
                let p = sql.arg(c.to_string());
                sql.push(&format!(" AND e.connection_id = {p}"));
            }
            None => sql.push(" AND s.detached_at IS NULL"),
        }
        if let Some(s) = self.subscription {
            let p = sql.arg(s.to_string());
            sql.push(&format!(" AND e.subscription_id = {p}"));
        }
        if let Some(checks) = &self.checks {
            if checks.is_empty() {
                sql.push(" AND 1 = 0");
            } else {
                sql.push(" AND e.check_id IN (");
                for (i, c) in checks.iter().enumerate() {
                    let p = sql.arg(c.as_str());
                    sql.push(&if i == 0 { p } else { format!(", {p}") });
                }
                sql.push(")");
            }
        }
        if let Some(r) = self.result {
            let p = sql.arg(r.as_str());
            sql.push(&format!(" AND e.result = {p}"));
        }
        if let Some(subject) = &self.subject {
            let key = subject.trim().trim_end_matches('/').to_ascii_lowercase();
            let exact = sql.arg(key.clone());
            let prefix = sql.arg(format!("{key}/"));
            let len = sql.arg_int(key.len() as i64 + 1);
            sql.push(&format!(
                " AND (e.subject_key = {exact} OR substr(e.subject_key, 1, CAST({len} AS INTEGER)) = {prefix})"
            ));
        }
        if let Some(t) = self.until {
            let p = sql.arg_int(t.timestamp_millis());
            sql.push(&format!(" AND e.observed_at <= {p}"));
        }
        if let Some(t) = self.since {
            let p = sql.arg_int(t.timestamp_millis());
            // Known to hold then: from its first observation to its end (or,
            // while current, its last observation).
            sql.push(&format!(
                " AND COALESCE(e.valid_to, e.last_observed_at) >= {p}"
            ));
        }
        if self.current_only {
            sql.push(" AND e.valid_to IS NULL");
        }
    }
}

/// The current interval of a subject, as `record_evidence` compares it.
struct Current {
    id: String,
    fingerprint: String,
}

/// Rows an update closes at most per statement.
const CLOSE_CHUNK: usize = 500;

impl Store {
    /// Records one collector's observations of one subscription, made by
    /// the sync `run` that started at `observed_at`: unchanged subjects
    /// extend their current interval, changed ones close it and open a new
    /// one, new ones open one, and subjects of this collector no longer
    /// observed have theirs closed. Compared with the current rows outside
    /// the write lock, written in one transaction of a few statements.
    pub async fn record_evidence(
        &self,
        scope: &OrgScope,
        subscription: &SubscriptionRecord,
        run_id: Uuid,
        observed_at: DateTime<Utc>,
        source: EvidenceSource,
        observations: &[Observation],
    ) -> Result<EvidenceCounts> {
        let at = observed_at.timestamp_millis();
        let now = self.now_ms();
        let (org, sub, run) = (scope.id(), subscription.id.to_string(), run_id.to_string());
        // Compared outside the write lock (SQLite has one writer, which the
        // run's progress and other subscriptions wait for); only this run
        // writes this subscription's evidence of this collector, and the
        // writes below check that the rows they close are still current.
        let rows = sqlx::query(
            "SELECT evidence_id, check_id, subject_key, fingerprint FROM evidence \
             WHERE org_id = $1 AND subscription_id = $2 AND collector = $3 AND valid_to IS NULL",
        )
        .bind(&org)
        .bind(&sub)
        .bind(source.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut current: HashMap<(String, String), Current> = HashMap::with_capacity(rows.len());
        for r in &rows {
            current.insert(
                (r.try_get("check_id")?, r.try_get("subject_key")?),
                Current {
                    id: r.try_get("evidence_id")?,
                    fingerprint: r.try_get("fingerprint")?,
                },
            );
        }
        drop(rows);
        let mut counts = EvidenceCounts::default();
        let mut seen: HashSet<(String, String)> = HashSet::with_capacity(observations.len());
        let mut close: Vec<String> = Vec::new();
        let mut insert: Vec<Vec<Arg>> = Vec::new();
        for o in observations {
            let key = (o.check.as_str().to_string(), o.subject.to_ascii_lowercase());
            if !seen.insert(key.clone()) {
                continue;
            }
            counts.observed += 1;
            match o.result {
                EvidenceResult::Pass => counts.passing += 1,
                EvidenceResult::Fail => counts.failing += 1,
                EvidenceResult::NotApplicable => counts.not_applicable += 1,
                EvidenceResult::NotCollected => counts.not_collected += 1,
            }
            let fingerprint = o.fingerprint();
            match current.get(&key) {
                Some(c) if c.fingerprint == fingerprint => continue,
                Some(c) => {
                    counts.changed += 1;
                    close.push(c.id.clone());
                }
                None => {}
            }
            counts.opened += 1;
            insert.push(vec![
                Arg::from(org.as_str()),
                Arg::from(Uuid::now_v7().to_string()),
                Arg::from(subscription.connection_id.to_string()),
                Arg::from(sub.as_str()),
                Arg::from(source.as_str()),
                Arg::from(o.check.as_str()),
                Arg::from(o.subject.as_str()),
                Arg::from(key.1.clone()),
                Arg::from(canonical(&o.facts)),
                Arg::from(o.result.as_str()),
                Arg::from(o.reason.clone()),
                Arg::from(fingerprint),
                Arg::from(run.as_str()),
                Arg::from(run.as_str()),
                Arg::from(at),
                Arg::from(at),
                Arg::from(now),
            ]);
        }
        let gone: Vec<String> = current
            .iter()
            .filter(|(key, _)| !seen.contains(*key))
            .map(|(_, c)| c.id.clone())
            .collect();
        counts.closed = gone.len() as u64;
        close.extend(gone);
        let mut tx = self.begin_write().await?;
        let mut closed = 0;
        for chunk in close.chunks(CLOSE_CHUNK) {
            let mut sql = Sql::new("UPDATE evidence SET valid_to = ");
            let p = sql.arg_int(at);
            sql.push(&p);
            let p = sql.arg(org.clone());
            sql.push(&format!(
                " WHERE org_id = {p} AND valid_to IS NULL AND evidence_id IN ("
            ));
            for (i, id) in chunk.iter().enumerate() {
                let p = sql.arg(id.clone());
                sql.push(&if i == 0 { p } else { format!(", {p}") });
            }
            sql.push(")");
            closed += sql.execute(&mut tx).await?;
        }
        if closed != close.len() as u64 {
            return Err(StoreError::Invalid(format!(
                "the subscription's {source} evidence changed while this sync compared it; the next sync records it"
            )));
        }
        // A row seen again that had gone stale is fresh again: the coverage
        // changes. Otherwise a sync that saw everything as it was (the
        // usual case) changes no count, and leaves the revision where it
        // is (a kept report still goes stale with time alone).
        let revived: i64 = sqlx::query(
            "SELECT COUNT(*) FROM evidence e \
             JOIN subscriptions s ON s.org_id = e.org_id AND s.subscription_id = e.subscription_id \
             JOIN connections c ON c.org_id = s.org_id AND c.connection_id = s.connection_id \
             WHERE e.org_id = $1 AND e.subscription_id = $2 AND e.collector = $3 AND e.valid_to IS NULL \
             AND e.last_run_id <> $4 AND e.last_observed_at + c.stale_after_secs * 1000 < $5",
        )
        .bind(&org)
        .bind(&sub)
        .bind(source.as_str())
        .bind(&run)
        .bind(now.max(at))
        .fetch_one(&mut *tx)
        .await?
        .try_get(0)?;
        // Seen again unchanged: the current interval reaches this sync.
        sqlx::query(
            "UPDATE evidence SET last_observed_at = $4, last_run_id = $5 WHERE org_id = $1 AND subscription_id = $2 \
             AND collector = $3 AND valid_to IS NULL AND last_run_id <> $5",
        )
        .bind(&org)
        .bind(&sub)
        .bind(source.as_str())
        .bind(at)
        .bind(&run)
        .execute(&mut *tx)
        .await?;
        let opened = !insert.is_empty();
        bulk_insert(&mut tx, self.backend(), "evidence", EVIDENCE_INSERT, insert).await?;
        if opened || closed > 0 || revived > 0 {
            bump_evidence_rev(&mut tx, scope).await?;
        }
        tx.commit().await?;
        Ok(counts)
    }

    /// At an assessment's approval, in its transaction (before the
    /// assessment is marked approved, after which the triggers refuse any
    /// change to its rows): closes every attached row still current at
    /// `at` (or at its last observation, if a sync saw it later than `at`)
    /// and continues the subject's state in a new row from that same
    /// instant, so its intervals still never gap or overlap and later
    /// syncs extend or close the new row, never the attested one. The new
    /// row is the same state, not a new observation: it keeps the attested
    /// row's last observation and run (`last_observed_at`, `last_run_id`),
    /// so its freshness is what it was. Answers how many were continued.
    pub(crate) async fn close_attested(
        &self,
        tx: &mut Tx,
        scope: &OrgScope,
        assessment: Uuid,
        at: i64,
    ) -> Result<u64> {
        let org = scope.id();
        bump_evidence_rev(tx, scope).await?;
        // Locked on PostgreSQL until the transaction ends, so that a sync
        // cannot extend them between this read and their closing (SQLite
        // has one writer, which this transaction is).
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE OF e",
            Backend::Sqlite => "",
        };
        let rows = sqlx::query(&format!(
            "SELECT e.evidence_id, e.connection_id, e.subscription_id, e.collector, e.check_id, e.subject, e.subject_key, \
             e.facts, e.result, e.reason, e.fingerprint, e.last_run_id, e.last_observed_at \
             FROM assessment_evidence ae JOIN evidence e ON e.org_id = ae.org_id AND e.evidence_id = ae.evidence_id \
             WHERE ae.org_id = $1 AND ae.assessment_id = $2 AND e.valid_to IS NULL ORDER BY e.evidence_id{lock}"
        ))
        .bind(&org)
        .bind(assessment.to_string())
        .fetch_all(&mut **tx)
        .await?;
        let now = self.now_ms();
        let mut close: Vec<String> = Vec::with_capacity(rows.len());
        let mut insert: Vec<Vec<Arg>> = Vec::with_capacity(rows.len());
        for r in &rows {
            let last_observed: i64 = r.try_get("last_observed_at")?;
            let last_run: String = r.try_get("last_run_id")?;
            close.push(r.try_get("evidence_id")?);
            insert.push(vec![
                Arg::from(org.as_str()),
                Arg::from(Uuid::now_v7().to_string()),
                Arg::from(r.try_get::<String, _>("connection_id")?),
                Arg::from(r.try_get::<String, _>("subscription_id")?),
                Arg::from(r.try_get::<String, _>("collector")?),
                Arg::from(r.try_get::<String, _>("check_id")?),
                Arg::from(r.try_get::<String, _>("subject")?),
                Arg::from(r.try_get::<String, _>("subject_key")?),
                Arg::from(r.try_get::<String, _>("facts")?),
                Arg::from(r.try_get::<String, _>("result")?),
                Arg::from(r.try_get::<Option<String>, _>("reason")?),
                Arg::from(r.try_get::<String, _>("fingerprint")?),
                Arg::from(last_run.clone()),
                Arg::from(last_run),
                Arg::from(at.max(last_observed)),
                Arg::from(last_observed),
                Arg::from(now),
            ]);
        }
        drop(rows);
        let mut closed = 0;
        for chunk in close.chunks(CLOSE_CHUNK) {
            let mut sql = Sql::new("UPDATE evidence SET valid_to = CASE WHEN last_observed_at > ");
            let p = sql.arg_int(at);
            sql.push(&format!("{p} THEN last_observed_at ELSE {p} END"));
            let p = sql.arg(org.clone());
            sql.push(&format!(
                " WHERE org_id = {p} AND valid_to IS NULL AND evidence_id IN ("
            ));
            for (i, id) in chunk.iter().enumerate() {
                let p = sql.arg(id.clone());
                sql.push(&if i == 0 { p } else { format!(", {p}") });
            }
            sql.push(")");
            closed += sql.execute(tx).await?;
        }
        if closed != close.len() as u64 {
            return Err(StoreError::State(
                "cannot approve: a sync changed the attached evidence meanwhile; approve again"
                    .into(),
            ));
        }
        bulk_insert(tx, self.backend(), "evidence", EVIDENCE_INSERT, insert).await?;
        Ok(closed)
    }

    /// Evidence matching a filter, newest observation first, a page at a time.
    pub async fn evidence(
        &self,
        scope: &OrgScope,
        filter: &EvidenceFilter,
        page: &PageRequest,
    ) -> Result<Page<EvidenceRecord>> {
        let mut sql = Sql::new(&format!(
            "SELECT {COLUMNS} FROM evidence e JOIN subscriptions s ON s.org_id = e.org_id AND s.subscription_id = e.subscription_id \
             WHERE e.org_id = "
        ));
        let p = sql.arg(scope.id());
        sql.push(&p);
        filter.push_conditions(&mut sql);
        let (before_ms, after_id) = page.time_and_id(i64::MAX)?;
        let pt = sql.arg_int(before_ms);
        let pid = sql.arg(after_id);
        // Both descending, as the `(org_id, observed_at, evidence_id)` index
        // reads backwards: a sync observes every row at one time, so an
        // ascending id would sort all of that sync's rows for each page.
        sql.push(&format!(
            " AND (e.observed_at < {pt} OR (e.observed_at = {pt} AND e.evidence_id < {pid}))"
        ));
        let p = sql.arg_int(page.fetch());
        sql.push(&format!(
            " ORDER BY e.observed_at DESC, e.evidence_id DESC LIMIT {p}"
        ));
        let rows = sql.fetch_all(&self.pool).await?;
        let items = rows.iter().map(record).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |e| {
            Cursor::of(&[
                &e.observed_at.timestamp_millis().to_string(),
                &e.id.to_string(),
            ])
        }))
    }

    /// How many evidence rows match a filter.
    pub async fn evidence_count(&self, scope: &OrgScope, filter: &EvidenceFilter) -> Result<u64> {
        let mut sql = Sql::new(
            "SELECT COUNT(*) AS n FROM evidence e JOIN subscriptions s ON s.org_id = e.org_id AND s.subscription_id = e.subscription_id \
             WHERE e.org_id = ",
        );
        let p = sql.arg(scope.id());
        sql.push(&p);
        filter.push_conditions(&mut sql);
        let rows = sql.fetch_all(&self.pool).await?;
        let n: i64 = rows
            .first()
            .map(|r| r.try_get("n"))
            .transpose()?
            .unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    /// One evidence row, and every interval of its subject under its check
    /// (oldest first, this one among them).
    pub async fn evidence_item(
        &self,
        scope: &OrgScope,
        id: Uuid,
    ) -> Result<(EvidenceRecord, Vec<EvidenceRecord>)> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM evidence e WHERE e.org_id = $1 AND e.evidence_id = $2"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "evidence" })?;
        let item = record(&row)?;
        let history = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM evidence e WHERE e.org_id = $1 AND e.subscription_id = $2 AND e.check_id = $3 \
             AND e.subject_key = $4 ORDER BY e.observed_at, e.recorded_at"
        ))
        .bind(scope.id())
        .bind(item.subscription_id.to_string())
        .bind(item.check.as_str())
        .bind(item.subject.to_ascii_lowercase())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(record)
        .collect::<Result<Vec<_>>>()?;
        Ok((item, history))
    }

    /// Coverage now: every current evidence row of a live subscription
    /// counted by its result and freshness (its connection's stale
    /// threshold against `last_observed_at`), a check with no row for a
    /// live subscription counted as one not collected item there, and each
    /// control over its effective checks.
    pub async fn coverage(&self, scope: &OrgScope) -> Result<CoverageReport> {
        // The revision is read before the rows: a report kept under it
        // holds at least what it stood for, and a write after it moves it.
        let rev = self.evidence_revision_to_answer(scope).await?;
        let now = self.now_ms();
        if let Some(kept) = self.coverage_cache.get(scope.org(), rev, now) {
            return Ok(kept);
        }
        let _turn = self.coverage_cache.turns.take(&scope.org()).await;
        let now = self.now_ms();
        if let Some(kept) = self.coverage_cache.get(scope.org(), rev, now) {
            return Ok(kept);
        }
        let (report, fresh_until) = self.read_coverage(scope, now).await?;
        self.coverage_cache
            .keep(scope.org(), rev, fresh_until, &report);
        Ok(report)
    }

    /// The coverage at `now`, and the last moment it holds without a write
    /// (the first current row to go stale goes stale after it).
    async fn read_coverage(&self, scope: &OrgScope, now: i64) -> Result<(CoverageReport, i64)> {
        let rows = sqlx::query(
            "SELECT check_id, subscription_id, result, stale, COUNT(*) AS n, \
             MIN(CASE WHEN stale = 0 THEN due END) AS due FROM (\
             SELECT e.check_id, e.subscription_id, e.result, \
             CAST(CASE WHEN e.last_observed_at + c.stale_after_secs * 1000 < $2 THEN 1 ELSE 0 END AS BIGINT) AS stale, \
             e.last_observed_at + c.stale_after_secs * 1000 AS due \
             FROM evidence e \
             JOIN subscriptions s ON s.org_id = e.org_id AND s.subscription_id = e.subscription_id AND s.detached_at IS NULL \
             JOIN connections c ON c.org_id = s.org_id AND c.connection_id = s.connection_id AND c.deleted_at IS NULL \
             WHERE e.org_id = $1 AND e.valid_to IS NULL) x \
             GROUP BY check_id, subscription_id, result, stale",
        )
        .bind(scope.id())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut per_check: HashMap<CheckId, Tally> = CheckId::ALL
            .iter()
            .map(|c| (*c, Tally::default()))
            .collect();
        let mut collected: HashSet<(CheckId, String)> = HashSet::new();
        let mut fresh_until = i64::MAX;
        for r in &rows {
            if let Some(due) = r.try_get::<Option<i64>, _>("due")? {
                fresh_until = fresh_until.min(due);
            }
            let check: CheckId = parse(r, "check_id")?;
            let result: EvidenceResult = parse(r, "result")?;
            let stale: i64 = r.try_get("stale")?;
            let n: i64 = r.try_get("n")?;
            let one = counts_as(result, stale != 0);
            let n = n.max(0) as u64;
            per_check.entry(check).or_default().add(&Tally {
                passing: one.passing * n,
                failing: one.failing * n,
                stale: one.stale * n,
                not_collected: one.not_collected * n,
                not_applicable: one.not_applicable * n,
            });
            collected.insert((check, r.try_get("subscription_id")?));
        }
        let live = sqlx::query(
            "SELECT s.subscription_id FROM subscriptions s JOIN connections c ON c.org_id = s.org_id AND c.connection_id = s.connection_id \
             WHERE s.org_id = $1 AND s.detached_at IS NULL AND c.deleted_at IS NULL",
        )
        .bind(scope.id())
        .fetch_all(&self.pool)
        .await?;
        for r in &live {
            let sub: String = r.try_get("subscription_id")?;
            for check in CheckId::ALL {
                if !collected.contains(&(*check, sub.clone())) {
                    per_check.entry(*check).or_default().not_collected += 1;
                }
            }
        }
        let overrides = self.control_mapping_overrides(scope).await?;
        let controls = ControlId::ALL
            .iter()
            .map(|control| {
                let checks = effective_checks(*control, &overrides);
                let mut tally = Tally::default();
                for c in &checks {
                    if let Some(t) = per_check.get(c) {
                        tally.add(t);
                    }
                }
                (*control, checks, Coverage::of(tally))
            })
            .collect();
        let report = CoverageReport {
            at: time(now),
            checks: CheckId::ALL
                .iter()
                .map(|c| {
                    (
                        *c,
                        Coverage::of(per_check.get(c).copied().unwrap_or_default()),
                    )
                })
                .collect(),
            controls,
        };
        Ok((report, fresh_until))
    }

    /// Writes today's (UTC) figures of every control from `report`; a day
    /// keeps its last figures.
    pub async fn record_control_history(
        &self,
        scope: &OrgScope,
        report: &CoverageReport,
    ) -> Result<()> {
        let day = report.at.date_naive().to_string();
        let now = self.now_ms();
        let mut tx = self.begin_write().await?;
        for (control, _, coverage) in &report.controls {
            let t = &coverage.tally;
            sqlx::query(
                "INSERT INTO control_history (org_id, control_id, day, state, passing, failing, stale, not_collected, not_applicable, recorded_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (org_id, control_id, day) DO UPDATE SET state = $4, passing = $5, failing = $6, stale = $7, \
                 not_collected = $8, not_applicable = $9, recorded_at = $10",
            )
            .bind(scope.id())
            .bind(control.as_str())
            .bind(&day)
            .bind(coverage.state.as_str())
            .bind(t.passing as i64)
            .bind(t.failing as i64)
            .bind(t.stale as i64)
            .bind(t.not_collected as i64)
            .bind(t.not_applicable as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Whether today's (UTC) history has been written.
    pub async fn control_history_written(&self, scope: &OrgScope) -> Result<bool> {
        let day = self.now().date_naive().to_string();
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM control_history WHERE org_id = $1 AND day = $2")
                .bind(scope.id())
                .bind(day)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get::<i64, _>("n")? >= ControlId::ALL.len() as i64)
    }

    /// A control's daily history from `since` (a day, UTC), oldest first.
    pub async fn control_history(
        &self,
        scope: &OrgScope,
        control: ControlId,
        since: NaiveDate,
    ) -> Result<Vec<ControlDay>> {
        let rows = sqlx::query(
            "SELECT day, state, passing, failing, stale, not_collected, not_applicable FROM control_history \
             WHERE org_id = $1 AND control_id = $2 AND day >= $3 ORDER BY day",
        )
        .bind(scope.id())
        .bind(control.as_str())
        .bind(since.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let n = |c: &str| -> Result<u64> { Ok(r.try_get::<i64, _>(c)?.max(0) as u64) };
                Ok(ControlDay {
                    day: parse(r, "day")?,
                    state: parse(r, "state")?,
                    tally: Tally {
                        passing: n("passing")?,
                        failing: n("failing")?,
                        stale: n("stale")?,
                        not_collected: n("not_collected")?,
                        not_applicable: n("not_applicable")?,
                    },
                })
            })
            .collect()
    }

    /// The organisation's changes to the default mapping.
    pub async fn control_mapping_overrides(
        &self,
        scope: &OrgScope,
    ) -> Result<Vec<MappingOverride>> {
        let rows = sqlx::query(
            "SELECT control_id, check_id, included FROM control_mapping WHERE org_id = $1 ORDER BY changed_at, control_id, check_id",
        )
        .bind(scope.id())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MappingOverride {
                    control: parse(r, "control_id")?,
                    check: parse(r, "check_id")?,
                    included: r.try_get::<i64, _>("included")? != 0,
                })
            })
            .collect()
    }

    /// Adds checks to a control and takes others out, audited
    /// (`control_mapping.changed`) with what changed. A check back where
    /// the default mapping has it drops its override. Answers the
    /// control's checks after the change.
    pub async fn change_control_mapping(
        &self,
        scope: &OrgScope,
        control: ControlId,
        add: &[CheckId],
        remove: &[CheckId],
        actor: &str,
    ) -> Result<Vec<CheckId>> {
        if let Some(both) = add.iter().find(|c| remove.contains(c)) {
            return Err(StoreError::Invalid(format!(
                "{both} is both added to and taken out of {control}: say one"
            )));
        }
        let now = self.now_ms();
        let entry = AuditEntry::new(
            actor,
            "control_mapping.changed",
            format!("control:{control}"),
            json!({
                "added": add.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
                "removed": remove.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            }),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            let changes = add
                .iter()
                .map(|c| (c, true))
                .chain(remove.iter().map(|c| (c, false)));
            for (check, included) in changes {
                let by_default = check.default_controls().contains(&control);
                if included == by_default {
                    sqlx::query("DELETE FROM control_mapping WHERE org_id = $1 AND control_id = $2 AND check_id = $3")
                        .bind(scope.id())
                        .bind(control.as_str())
                        .bind(check.as_str())
                        .execute(&mut **tx)
                        .await?;
                } else {
                    sqlx::query(
                        "INSERT INTO control_mapping (org_id, control_id, check_id, included, changed_at, changed_by) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (org_id, control_id, check_id) \
                         DO UPDATE SET included = $4, changed_at = $5, changed_by = $6",
                    )
                    .bind(scope.id())
                    .bind(control.as_str())
                    .bind(check.as_str())
                    .bind(i64::from(included))
                    .bind(now)
                    .bind(actor)
                    .execute(&mut **tx)
                    .await?;
                }
            }
            bump_evidence_rev(&mut tx, scope).await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        let overrides = self.control_mapping_overrides(scope).await?;
        Ok(effective_checks(control, &overrides))
    }

    /// The organisation's evidence settings (the defaults until changed).
    pub async fn evidence_settings(&self, scope: &OrgScope) -> Result<EvidenceSettings> {
        let row = sqlx::query(
            "SELECT secure_score_threshold_bp, updated_at, updated_by FROM evidence_settings WHERE org_id = $1",
        )
        .bind(scope.id())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => EvidenceSettings {
                secure_score_threshold: r.try_get::<i64, _>("secure_score_threshold_bp")? as f64
                    / 10_000.0,
                updated_at: Some(time(r.try_get("updated_at")?)),
                updated_by: Some(r.try_get("updated_by")?),
            },
            None => EvidenceSettings {
                secure_score_threshold: cloudkeep_domain::evidence::DEFAULT_SECURE_SCORE_THRESHOLD,
                updated_at: None,
                updated_by: None,
            },
        })
    }

    /// Sets the secure-score threshold (a fraction from 0 to 1, kept to
    /// four decimals), audited (`evidence_settings.changed`).
    pub async fn set_secure_score_threshold(
        &self,
        scope: &OrgScope,
        threshold: f64,
        actor: &str,
    ) -> Result<EvidenceSettings> {
        if !(0.0..=1.0).contains(&threshold) {
            return Err(StoreError::Invalid(format!(
                "the secure-score threshold is a fraction from 0 to 1 (0.7 is 70%), not {threshold}"
            )));
        }
        let bp = (threshold * 10_000.0).round() as i64;
        let before = self.evidence_settings(scope).await?;
        let now = self.now_ms();
        let entry = AuditEntry::new(
            actor,
            "evidence_settings.changed",
            "evidence_settings",
            json!({"secure_score_threshold": {"from": before.secure_score_threshold, "to": bp as f64 / 10_000.0}}),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            sqlx::query(
                "INSERT INTO evidence_settings (org_id, secure_score_threshold_bp, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (org_id) DO UPDATE SET secure_score_threshold_bp = $2, updated_at = $3, updated_by = $4",
            )
            .bind(scope.id())
            .bind(bp)
            .bind(now)
            .bind(actor)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        self.evidence_settings(scope).await
    }

    /// Every live connection's sync health: when it last synced with
    /// success (a run that succeeded or partly did) and its stale threshold.
    pub async fn sync_health(&self, scope: &OrgScope) -> Result<Vec<SyncHealth>> {
        let rows = sqlx::query(
            "SELECT c.connection_id, c.name, c.stale_after_secs, c.created_at, \
             (SELECT MAX(r.finished_at) FROM sync_runs r WHERE r.org_id = c.org_id AND r.connection_id = c.connection_id \
              AND r.status IN ('succeeded', 'partial')) AS last_success \
             FROM connections c WHERE c.org_id = $1 AND c.deleted_at IS NULL ORDER BY c.created_at, c.connection_id",
        )
        .bind(scope.id())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SyncHealth {
                    connection_id: parse(r, "connection_id")?,
                    name: r.try_get("name")?,
                    stale_after_secs: r.try_get("stale_after_secs")?,
                    last_success: r.try_get::<Option<i64>, _>("last_success")?.map(time),
                    created_at: time(r.try_get("created_at")?),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_key_order_and_subject_case() {
        let a = Observation {
            check: CheckId::StorageHttpsOnly,
            subject:
                "/subscriptions/S/resourceGroups/RG/providers/Microsoft.Storage/storageAccounts/a"
                    .into(),
            facts: json!({"field": "supportsHttpsTrafficOnly", "value": true, "absent": false}),
            result: EvidenceResult::Pass,
            reason: None,
        };
        let b = Observation {
            subject: a.subject.to_ascii_lowercase(),
            facts: json!({"absent": false, "value": true, "field": "supportsHttpsTrafficOnly"}),
            ..a.clone()
        };
        assert_eq!(a.fingerprint(), b.fingerprint());
        let c = Observation {
            facts: json!({"field": "supportsHttpsTrafficOnly", "value": false, "absent": false}),
            ..a.clone()
        };
        assert_ne!(a.fingerprint(), c.fingerprint());
        let d = Observation {
            check: CheckId::StorageMinimumTls,
            ..a.clone()
        };
        assert_ne!(a.fingerprint(), d.fingerprint());
        assert_eq!(a.fingerprint().len(), 64);
    }
}

/// Moves the organisation's evidence revision, in the writing transaction
/// (see `CoverageCache`): every write that changes what the coverage
/// counts calls it.
pub(crate) async fn bump_evidence_rev(tx: &mut Tx, scope: &OrgScope) -> Result<()> {
    crate::revisions::bump(tx, scope, crate::revisions::Revision::Evidence)
        .await
        .map(drop)
}

/// The coverage report per organisation, with the evidence revision it was
/// read at and the last moment it holds (rows go stale with time alone).
/// The controls and the dashboard read it on every load while evidence
/// changes once a sync; the revision lives in the database, so a report is
/// reused only while no instance has written since.
#[derive(Debug, Default)]
pub(crate) struct CoverageCache {
    entries: std::sync::Mutex<HashMap<cloudkeep_domain::OrgId, (i64, i64, CoverageReport)>>,
    /// Per organisation, the turn to compute its report: one reader reads
    /// the rows while the others wait for its report.
    turns: crate::turns::Turns<cloudkeep_domain::OrgId>,
}

impl CoverageCache {
    fn get(&self, org: cloudkeep_domain::OrgId, rev: i64, now: i64) -> Option<CoverageReport> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (at, until, report) = entries.get(&org)?;
        (*at == rev && now <= *until).then(|| CoverageReport {
            at: time(now),
            ..report.clone()
        })
    }

    fn keep(&self, org: cloudkeep_domain::OrgId, rev: i64, until: i64, report: &CoverageReport) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= 1024 && !entries.contains_key(&org) {
            entries.clear();
        }
        entries.insert(org, (rev, until, report.clone()));
    }
}
