//! Per-organisation counters that writes move in their transactions:
//! answers kept in memory per revision (spend analyses, the control
//! coverage) are reused only while the revision read from the database
//! before answering is the one they were read at, so no instance answers
//! from rows another has replaced.

use sqlx::Row;

use crate::{OrgScope, Result, Store, Tx};

/// Which counter.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Revision {
    /// `spend_revisions`: spend rows, their tags, the tag aliases.
    Spend,
    /// `evidence_revisions`: what the control coverage counts.
    Evidence,
}

impl Revision {
    fn table(self) -> &'static str {
        match self {
            Revision::Spend => "spend_revisions",
            Revision::Evidence => "evidence_revisions",
        }
    }
}

/// Moves the organisation's counter, in the writing transaction; answers
/// the revision the transaction will commit. (On PostgreSQL the counter's
/// row stays locked until then: a write that moves it first runs after
/// every other write of that counter has committed or after none.)
pub(crate) async fn bump(tx: &mut Tx, scope: &OrgScope, which: Revision) -> Result<i64> {
    let table = which.table();
    Ok(sqlx::query(&format!(
        "INSERT INTO {table} (org_id, rev) VALUES ($1, 1) \
         ON CONFLICT (org_id) DO UPDATE SET rev = {table}.rev + 1 RETURNING rev"
    ))
    .bind(scope.id())
    .fetch_one(&mut **tx)
    .await?
    .try_get("rev")?)
}

impl Store {
    /// The organisation's counter (0 before any write).
    pub(crate) async fn revision(&self, scope: &OrgScope, which: Revision) -> Result<i64> {
        Ok(sqlx::query(&format!(
            "SELECT rev FROM {} WHERE org_id = $1",
            which.table()
        ))
        .bind(scope.id())
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.try_get("rev"))
        .transpose()?
        .unwrap_or(0))
    }
}
