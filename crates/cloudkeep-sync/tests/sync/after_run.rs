//! What a sync run computes after its collectors, so that the first page
//! load after it does not.

use sqlx::Connection;

/// The dashboard's tag coverage is computed by the run and kept: with the
/// tag rows then taken away behind the store's back (no revision moves),
/// the coverage still answers what the run saw. Had the run not computed
/// it, this first ask would read the emptied table and find no keys.
#[tokio::test]
async fn a_run_leaves_the_tag_coverage_computed() {
    let env = super::faults::env().await;
    let run = env.sync().await;
    assert!(run.report.total("inventory", "seen") > 0, "{run:?}");

    let mut raw = sqlx::SqliteConnection::connect(&env.store.url)
        .await
        .expect("connect");
    let removed = sqlx::query("DELETE FROM resource_tags")
        .execute(&mut raw)
        .await
        .expect("delete")
        .rows_affected();
    assert!(removed > 0, "the simulated tenant has tagged resources");

    let coverage = env
        .deps
        .store
        .tag_coverage(&env.scope, 10)
        .await
        .expect("tag coverage");
    assert!(coverage.tagged > 0, "{coverage:?}");
    assert!(!coverage.keys.is_empty(), "{coverage:?}");
    assert!(
        coverage.keys.iter().map(|(_, n)| n).sum::<u64>() >= coverage.tagged,
        "{coverage:?}"
    );
}

/// A run that collected spend leaves the spend projection standing for
/// that spend, so the pages after it read the projection at once instead
/// of SQL. (The anomaly review builds it before reading the series; were
/// it not to, the review's first read would start a build in the
/// background, which on this small tenant may well finish before the run
/// does, so this checks the outcome, not which of the two built it.)
#[tokio::test]
async fn a_run_with_spend_leaves_the_projection_built() {
    let env = super::faults::env().await;
    assert_eq!(env.deps.store.spend_columns_revision(&env.scope), None);
    let run = env.sync().await;
    assert!(run.report.total("spend", "rows") > 0, "{:?}", run.report);
    let stood = env
        .deps
        .store
        .spend_columns_revision(&env.scope)
        .expect("a projection stands after the run");
    // Asking again finds it built, for the current spend.
    let stats = env
        .deps
        .store
        .spend_columns_warm(&env.scope)
        .await
        .expect("warm");
    assert_eq!(stats.built_in, None, "{stats:?}");
    assert_eq!(stats.rev, stood);
    assert!(stats.rows > 0, "{stats:?}");
}
