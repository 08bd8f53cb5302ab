//! The audit log: append-only, hash-chained per organisation, written in
//! the same transaction as the action it records.

use chrono::{DateTime, Utc};
use cloudkeep_domain::EventId;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::page::{Cursor, Page, PageRequest, bad_cursor};
use crate::{OrgScope, Result, Store, StoreError, Tx, time};

/// What to record: who did what to which thing, with details.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// `user:{id}`, `token:{id}`, `system:{component}`.
    pub actor: String,
    /// A dotted name: `connection.created`, `user.login`, ...
    pub action: String,
    pub target: String,
    pub details: Value,
}

impl AuditEntry {
    pub fn new(
        actor: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
        details: Value,
    ) -> Self {
        AuditEntry {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            details,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub seq: i64,
    pub id: EventId,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub details: Value,
    /// The hash of the event before (empty for the first), and this
    /// event's: HMAC-SHA256 under the audit key `key_id` of
    /// `prev_hash + "\n" + ` the event's canonical JSON, or SHA-256 of it
    /// when `key_id` is empty (docs/audit.md has the recipe, to verify
    /// offline with the key).
    pub prev_hash: String,
    pub hash: String,
    pub key_id: String,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor: Option<String>,
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The first thing wrong with an organisation's audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditProblem {
    pub seq: i64,
    pub kind: AuditProblemKind,
}

/// What `seal_audit_chains` did: the organisations sealed, and those whose
/// plain chain did not verify (left unsealed, with the first problem).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealReport {
    pub sealed: Vec<cloudkeep_domain::OrgId>,
    pub refused: Vec<(cloudkeep_domain::OrgId, AuditProblem)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditProblemKind {
    /// The event's content no longer matches its hash.
    Changed,
    /// Events are missing before this one (or at the end of the log).
    Removed,
    /// The event does not follow the one before it.
    Reordered,
    /// The event is sealed with a key this installation does not hold.
    UnknownKey,
    /// The event is not sealed with a key although the installation seals
    /// its chain: written (or rewritten) by someone without the key.
    Unsealed,
}

impl std::fmt::Display for AuditProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            AuditProblemKind::Changed => {
                write!(f, "event {} was changed after it was written", self.seq)
            }
            AuditProblemKind::Removed => write!(f, "events were removed before event {}", self.seq),
            AuditProblemKind::Reordered => write!(
                f,
                "event {} is out of order: it does not follow the event before it",
                self.seq
            ),
            AuditProblemKind::UnknownKey => write!(
                f,
                "event {} is sealed with an audit key this installation does not hold (check the audit key file)",
                self.seq
            ),
            AuditProblemKind::Unsealed => write!(
                f,
                "event {} is not sealed with the audit key: it was written or rewritten without it \
                 (a chain written wholly before this installation had audit keys is sealed once with \
                 `cloudkeep admin seal-audit`)",
                self.seq
            ),
        }
    }
}

/// Serialises JSON with object keys sorted, so a hash does not depend on map order.
pub(crate) fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let body: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(canonical).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// What an event's hash covers: the previous hash, then the event.
#[allow(clippy::too_many_arguments)]
fn chained(
    prev: &str,
    org: &str,
    seq: i64,
    id: &str,
    at: i64,
    actor: &str,
    action: &str,
    target: &str,
    details: &str,
) -> String {
    let content = canonical(&serde_json::json!({
        "org": org, "seq": seq, "id": id, "at": at, "actor": actor,
        "action": action, "target": target, "details": details,
    }));
    format!("{prev}\n{content}")
}

/// An event's hash: HMAC-SHA256 under the key `key_id` when the event is
/// sealed (`None` when the key is not held), plain SHA-256 when `key_id`
/// is empty (a chain without keys).
fn event_hash(
    keys: Option<&dyn cloudkeep_domain::crypto::ChainKeys>,
    key_id: &str,
    message: &str,
) -> Option<String> {
    if key_id.is_empty() {
        return Some(hex::encode(Sha256::digest(message.as_bytes())));
    }
    keys?.seal(key_id, message.as_bytes())
}

/// Takes the organisation's audit lock (its row) for the rest of the
/// transaction, so appends in one organisation are serialised and the chain
/// never forks.
pub(crate) async fn lock_chain(tx: &mut Tx, scope: &OrgScope) -> Result<()> {
    let found = sqlx::query("UPDATE organisations SET audit_seq = audit_seq WHERE org_id = $1")
        .bind(scope.id())
        .execute(&mut **tx)
        .await?;
    if found.rows_affected() == 0 {
        return Err(StoreError::NotFound {
            what: "organisation",
        });
    }
    Ok(())
}

impl Store {
    /// Appends an event inside the caller's transaction. The first statement
    /// takes the organisation's row lock (see `lock_chain`).
    pub(crate) async fn append(
        &self,
        tx: &mut Tx,
        scope: &OrgScope,
        entry: &AuditEntry,
    ) -> Result<i64> {
        let org = scope.id();
        let head = sqlx::query("UPDATE organisations SET audit_seq = audit_seq + 1 WHERE org_id = $1 RETURNING audit_seq, audit_head")
            .bind(&org)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or(StoreError::NotFound { what: "organisation" })?;
        let seq: i64 = head.try_get("audit_seq")?;
        let prev: String = head.try_get("audit_head")?;
        let id = EventId::new().to_string();
        let at = self.now_ms();
        let details = canonical(&entry.details);
        let message = chained(
            &prev,
            &org,
            seq,
            &id,
            at,
            &entry.actor,
            &entry.action,
            &entry.target,
            &details,
        );
        let keys = self.chain_keys.as_deref();
        let key_id = keys.map(|k| k.current_chain_key()).unwrap_or_default();
        let hash = event_hash(keys, &key_id, &message).ok_or_else(|| {
            StoreError::Corrupt(format!("the current audit key {key_id} cannot seal"))
        })?;
        sqlx::query(
            "INSERT INTO audit_events (org_id, seq, event_id, at, actor, action, target, details, prev_hash, hash, key_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&org)
        .bind(seq)
        .bind(&id)
        .bind(at)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(&details)
        .bind(&prev)
        .bind(&hash)
        .bind(&key_id)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE organisations SET audit_head = $2 WHERE org_id = $1")
            .bind(&org)
            .bind(&hash)
            .execute(&mut **tx)
            .await?;
        Ok(seq)
    }
}

fn event(row: &AnyRow) -> Result<AuditEvent> {
    let details: String = row.try_get("details")?;
    Ok(AuditEvent {
        seq: row.try_get("seq")?,
        id: crate::parse(row, "event_id")?,
        at: time(row.try_get("at")?),
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        details: serde_json::from_str(&details)
            .map_err(|e| StoreError::Corrupt(format!("audit details: {e}")))?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
        key_id: row.try_get("key_id")?,
    })
}

impl Store {
    /// Records an action that changes nothing else in the store (a login, a
    /// failed connection attempt), in its own transaction.
    pub async fn audit(&self, scope: &OrgScope, entry: AuditEntry) -> Result<()> {
        self.audited(scope, entry).await?.commit().await
    }

    /// Events in sequence order, filtered and paged in SQL.
    pub async fn audit_events(
        &self,
        scope: &OrgScope,
        f: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEvent>> {
        let after: i64 = match &page.after {
            Some(c) => c.as_str().parse().map_err(|_| bad_cursor())?,
            None => 0,
        };
        let rows = sqlx::query(
            "SELECT seq, event_id, at, actor, action, target, details, prev_hash, hash, key_id FROM audit_events \
             WHERE org_id = $1 \
               AND ($2 = '' OR action = $2) AND ($3 = '' OR actor = $3) AND ($4 = '' OR target = $4) \
               AND at >= $5 AND at <= $6 AND seq > $7 \
             ORDER BY seq LIMIT $8",
        )
        .bind(scope.id())
        .bind(f.action.clone().unwrap_or_default())
        .bind(f.actor.clone().unwrap_or_default())
        .bind(f.target.clone().unwrap_or_default())
        .bind(f.since.map(|t| t.timestamp_millis()).unwrap_or(i64::MIN))
        .bind(f.until.map(|t| t.timestamp_millis()).unwrap_or(i64::MAX))
        .bind(after)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let events = rows.iter().map(event).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(events, page, |e| {
            Cursor::of(&[&e.seq.to_string()])
        }))
    }

    /// Seals the chains written wholly before this installation had audit
    /// keys (`cloudkeep admin seal-audit`, run once by the operator after
    /// an upgrade): each such organisation whose plain chain verifies gets
    /// an `audit.sealed` event, sealed with the current key, whose HMAC
    /// covers the hash of the event before it and so the chain behind it.
    /// Not automatic: a chain with no sealed event might also be one that
    /// someone rewrote whole, and only the operator can say it is not.
    /// Chains with any sealed event are never touched (an unkeyed event
    /// after one is a forgery `verify_audit` names).
    pub async fn seal_audit_chains(&self, actor: &str) -> Result<SealReport> {
        let mut report = SealReport::default();
        if self.chain_keys.is_none() {
            return Ok(report);
        }
        let rows = sqlx::query(
            "SELECT o.org_id, o.audit_seq FROM organisations o WHERE o.audit_seq > 0 \
             AND NOT EXISTS (SELECT 1 FROM audit_events k WHERE k.org_id = o.org_id AND k.key_id <> '') \
             ORDER BY o.org_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let plain = Store {
            chain_keys: None,
            ..self.clone()
        };
        for r in &rows {
            let scope = OrgScope::new(crate::parse::<cloudkeep_domain::OrgId>(r, "org_id")?);
            let through: i64 = r.try_get("audit_seq")?;
            if let Err(problem) = plain.verify_audit(&scope).await? {
                report.refused.push((scope.org(), problem));
                continue;
            }
            let entry = AuditEntry::new(
                actor,
                "audit.sealed",
                "audit",
                serde_json::json!({ "unkeyed_events_through": through }),
            );
            self.audit(&scope, entry).await?;
            report.sealed.push(scope.org());
        }
        Ok(report)
    }

    /// Walks the organisation's chain; `Ok(n)` when all `n` events are intact.
    pub async fn verify_audit(
        &self,
        scope: &OrgScope,
    ) -> Result<std::result::Result<i64, AuditProblem>> {
        let org = scope.id();
        let head = sqlx::query("SELECT audit_seq, audit_head FROM organisations WHERE org_id = $1")
            .bind(&org)
            .fetch_one(&self.pool)
            .await?;
        let head_seq: i64 = head.try_get("audit_seq")?;
        let head_hash: String = head.try_get("audit_head")?;
        let rows = sqlx::query(
            "SELECT seq, event_id, at, actor, action, target, details, prev_hash, hash, key_id FROM audit_events WHERE org_id = $1 ORDER BY seq",
        )
        .bind(&org)
        .fetch_all(&self.pool)
        .await?;
        let mut expected_seq = 1;
        let mut prev = String::new();
        let keys = self.chain_keys.as_deref();
        // Events written before the installation had audit keys are
        // chained by plain SHA-256 and may only come first: the first
        // sealed event's HMAC covers the hash of the last of them, so they
        // cannot be rewritten either once one follows (`seal_audit_chains`
        // makes sure one does).
        let mut sealed_yet = false;
        for row in &rows {
            let seq: i64 = row.try_get("seq")?;
            let stored_prev: String = row.try_get("prev_hash")?;
            let hash: String = row.try_get("hash")?;
            let key_id: String = row.try_get("key_id")?;
            let message = chained(
                &stored_prev,
                &org,
                seq,
                &row.try_get::<String, _>("event_id")?,
                row.try_get("at")?,
                &row.try_get::<String, _>("actor")?,
                &row.try_get::<String, _>("action")?,
                &row.try_get::<String, _>("target")?,
                &row.try_get::<String, _>("details")?,
            );
            if seq != expected_seq {
                return Ok(Err(AuditProblem {
                    seq,
                    kind: AuditProblemKind::Removed,
                }));
            }
            if keys.is_some() && key_id.is_empty() && sealed_yet {
                return Ok(Err(AuditProblem {
                    seq,
                    kind: AuditProblemKind::Unsealed,
                }));
            }
            let Some(recomputed) = event_hash(keys, &key_id, &message) else {
                return Ok(Err(AuditProblem {
                    seq,
                    kind: AuditProblemKind::UnknownKey,
                }));
            };
            if recomputed != hash {
                return Ok(Err(AuditProblem {
                    seq,
                    kind: AuditProblemKind::Changed,
                }));
            }
            if stored_prev != prev {
                return Ok(Err(AuditProblem {
                    seq,
                    kind: AuditProblemKind::Reordered,
                }));
            }
            prev = hash;
            sealed_yet |= !key_id.is_empty();
            expected_seq += 1;
        }
        if keys.is_some() && !sealed_yet && !rows.is_empty() {
            // Nothing anchors these: whoever can write the database could
            // have written them all.
            return Ok(Err(AuditProblem {
                seq: 1,
                kind: AuditProblemKind::Unsealed,
            }));
        }
        if head_seq != expected_seq - 1 || head_hash != prev {
            return Ok(Err(AuditProblem {
                seq: expected_seq,
                kind: AuditProblemKind::Removed,
            }));
        }
        Ok(Ok(expected_seq - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            crate::redact_url("postgres://ck:s3cret@db:5432/ck"),
            "postgres://ck:[redacted]@db:5432/ck"
        );
        assert_eq!(
            crate::redact_url("sqlite://./data/ck.db"),
            "sqlite://./data/ck.db"
        );
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let a = serde_json::json!({"b": 1, "a": {"d": [1, {"z": 1, "y": 2}], "c": "x"}});
        assert_eq!(
            canonical(&a),
            r#"{"a":{"c":"x","d":[1,{"y":2,"z":1}]},"b":1}"#
        );
    }
}
