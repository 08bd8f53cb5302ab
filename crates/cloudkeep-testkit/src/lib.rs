//! What cloudkeep's test suites share, so that none copies another's setup:
//!
//! - `stores`: a fresh store on SQLite (a temp dir) and on PostgreSQL (a
//!   schema of its own in `CLOUDKEEP_TEST_POSTGRES_URL`'s database), and
//!   `both_backends!` to run one story on each;
//! - `sim`: the simulator on a free port with a client that trusts its CA,
//!   its scenario typed, and its control API (`/_sim/...`);
//! - `app`: the server on a free port with the simulator and a fresh store
//!   (`spawn_app`), organisations with tokens, and calls;
//! - `eventually`: waiting on a condition, never on a clock;
//! - `required`: what a test needs from its environment; in CI
//!   (`CI=true`) a missing piece fails the test instead of skipping it.
//!
//! It is a dev-dependency only: nothing here ships.

pub mod app;
pub mod sim;
pub mod stores;

use std::future::Future;
use std::time::{Duration, Instant};

pub use app::{App, AppOptions, Org, spawn_app, spawn_app_with};
pub use sim::{Principal, Scenario, SimOptions, TestSim};
pub use stores::{PgSchema, TestStore, postgres_store, sqlite_store};

/// Whether the tests run in CI, where nothing may be skipped for lack of
/// its environment.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// An environment variable a test needs: `None` (and a line saying the test
/// skips) outside CI, a failure in CI.
pub fn required(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ if in_ci() => panic!("{what} needs {var}, which CI must set (CI=true)"),
        _ => {
            eprintln!("skipped: {what} needs {var}, which is not set");
            None
        }
    }
}

/// Polls `check` until it answers `Ok`, and panics with its last `Err` if
/// that takes longer than `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not so after {within:?}; last seen: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A run's typed report, from the API's JSON for the run.
pub fn report(run: &serde_json::Value) -> cloudkeep_domain::report::RunReport {
    serde_json::from_value(run["report"].clone())
        .unwrap_or_else(|e| panic!("a run's report: {e}: {run}"))
}

/// One figure of one step of one subscription of a run (`None` when the
/// step did not count it).
pub fn figure(run: &serde_json::Value, subscription: &str, step: &str, name: &str) -> Option<u64> {
    report(run)
        .step(subscription, step)
        .and_then(|s| s.counts.get(name))
}

/// Writes a file whole or not at all: to a temporary name, then renamed,
/// so a reader never sees half of it.
pub fn write_atomically(path: &std::path::Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}
