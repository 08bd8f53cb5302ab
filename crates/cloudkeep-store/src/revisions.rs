//! Per-organisation counters that writes move in their transactions:
//! answers kept in memory per revision (spend analyses, the control
//! coverage) are reused only while the revision read from the database
//! before answering is the one they were read at, so no instance answers
//! from rows another has replaced.

use std::future::Future;
use std::sync::Arc;

use cloudkeep_domain::OrgId;
use sqlx::Row;
use tokio::sync::OnceCell;

use crate::{OrgScope, Result, Store, Tx};

tokio::task_local! {
    static VIEW: Arc<View>;
}

/// The revisions one set of reads stands for, read together (one query)
/// at the first answer that needs either: a page's panels then agree with
/// each other and read the counters once instead of once per kept answer
/// (a dashboard asks about a dozen). Answers kept under the revision are
/// as fresh as the moment it was read, as they are without a view.
#[derive(Default)]
struct View {
    revisions: OnceCell<(OrgId, Revisions)>,
}

#[derive(Debug, Clone, Copy)]
struct Revisions {
    spend: SpendRev,
    evidence: i64,
}

/// Runs `reads` in one view (see `View`). Only for reads: a write inside
/// would not see the revision it moves, so answers after it could come
/// from what it replaced.
pub async fn in_one_view<F: Future>(reads: F) -> F::Output {
    VIEW.scope(Arc::default(), reads).await
}

/// The view `in_one_view` opened around this task, if any.
fn view() -> Option<Arc<View>> {
    VIEW.try_with(Arc::clone).ok()
}

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
    match which {
        Revision::Spend => Ok(bump_spend(tx, scope, None).await?.0),
        Revision::Evidence => Ok(sqlx::query(
            "INSERT INTO evidence_revisions (org_id, rev) VALUES ($1, 1) \
             ON CONFLICT (org_id) DO UPDATE SET rev = evidence_revisions.rev + 1 RETURNING rev",
        )
        .bind(scope.id())
        .fetch_one(&mut **tx)
        .await?
        .try_get("rev")?),
    }
}

/// Moves the spend revision (as `bump`), recording which write did: its
/// token, or none. Answers the new revision and the token of the write
/// that moved it to the revision before.
pub(crate) async fn bump_spend(
    tx: &mut Tx,
    scope: &OrgScope,
    writer: Option<i64>,
) -> Result<(i64, Option<i64>)> {
    // `previous_writer = spend_revisions.writer` reads the row as it was.
    let row = sqlx::query(
        "INSERT INTO spend_revisions (org_id, rev, writer) VALUES ($1, 1, $2) \
         ON CONFLICT (org_id) DO UPDATE SET rev = spend_revisions.rev + 1, \
         previous_writer = spend_revisions.writer, writer = $2 RETURNING rev, previous_writer",
    )
    .bind(scope.id())
    .bind(writer)
    .fetch_one(&mut **tx)
    .await?;
    Ok((row.try_get("rev")?, row.try_get("previous_writer")?))
}

/// A spend revision as read: its number, and the token of the write that
/// moved it there, if that write gave one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SpendRev {
    pub rev: i64,
    pub writer: Option<i64>,
}

impl Store {
    /// The organisation's spend revision (0 before any spend write).
    pub(crate) async fn spend_revision(&self, scope: &OrgScope) -> Result<SpendRev> {
        let row = sqlx::query("SELECT rev, writer FROM spend_revisions WHERE org_id = $1")
            .bind(scope.id())
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(r) => SpendRev {
                rev: r.try_get("rev")?,
                writer: r.try_get("writer")?,
            },
            None => SpendRev {
                rev: 0,
                writer: None,
            },
        })
    }

    /// The spend revision an answer is read at: the view's, when one is
    /// open for this organisation, else read now. (What builds or checks
    /// the projection reads `spend_revision` itself: it must see writes
    /// made since.)
    pub(crate) async fn spend_revision_to_answer(&self, scope: &OrgScope) -> Result<SpendRev> {
        match self.view_revisions(scope).await? {
            Some(r) => Ok(r.spend),
            None => self.spend_revision(scope).await,
        }
    }

    /// The evidence revision an answer is read at (as
    /// `spend_revision_to_answer`).
    pub(crate) async fn evidence_revision_to_answer(&self, scope: &OrgScope) -> Result<i64> {
        match self.view_revisions(scope).await? {
            Some(r) => Ok(r.evidence),
            None => self.revision(scope, Revision::Evidence).await,
        }
    }

    /// The open view's revisions for `scope`'s organisation (read now if
    /// first asked); none without a view or for another organisation.
    async fn view_revisions(&self, scope: &OrgScope) -> Result<Option<Revisions>> {
        let Some(view) = view() else {
            return Ok(None);
        };
        let (org, revisions) = *view
            .revisions
            .get_or_try_init(|| async {
                Ok::<_, crate::StoreError>((scope.org(), self.both_revisions(scope).await?))
            })
            .await?;
        Ok((org == scope.org()).then_some(revisions))
    }

    /// Both counters in one query.
    async fn both_revisions(&self, scope: &OrgScope) -> Result<Revisions> {
        let row = sqlx::query(
            "SELECT (SELECT rev FROM spend_revisions WHERE org_id = $1) AS spend_rev, \
             (SELECT writer FROM spend_revisions WHERE org_id = $1) AS spend_writer, \
             (SELECT rev FROM evidence_revisions WHERE org_id = $1) AS evidence_rev",
        )
        .bind(scope.id())
        .fetch_one(&self.pool)
        .await?;
        Ok(Revisions {
            spend: SpendRev {
                rev: row.try_get::<Option<i64>, _>("spend_rev")?.unwrap_or(0),
                writer: row.try_get("spend_writer")?,
            },
            evidence: row.try_get::<Option<i64>, _>("evidence_rev")?.unwrap_or(0),
        })
    }

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
