//! Where a run does its work. `serve` gives runs a runtime of their own
//! whose threads the kernel schedules after the server's (nice 10): a
//! sync uses the CPU that people's reads leave, instead of taking half of
//! it from them while it lists and diffs a large tenant. Elsewhere (tests,
//! one-off commands) a run works on the runtime that awaits it.

use std::future::Future;
use std::sync::Arc;

use cloudkeep_store::{Store, StoreError};
use tokio::sync::{OnceCell, Semaphore, SemaphorePermit};

use crate::SyncError;

/// How much nicer a background thread is than the process (nice values
/// run from -20 to 19, the lowest priority; the default is 0).
const NICENESS: i32 = 10;

/// The SQLite connections runs on a background runtime write through
/// (`Background::store`): up to four subscriptions write at once.
const CONNECTIONS: u32 = 4;

/// Months of spend the runs working in one place hold at once, pulled
/// and not yet stored. A month of a `large` subscription is about 100 MB
/// in memory until it is stored: four subscriptions at once, each storing
/// a month while it pulls the next, took a backfill of the whole preset
/// to 949 MB (measured; the target is 512 MiB). Two keep SQLite's one
/// writer busy (one month stored while the next is pulled) and, with
/// Azure's throttling on, the query units spent as fast as they refill
/// (two subscriptions' backfill measured 1.15x the units' minimum).
pub const SPEND_MONTHS_HELD: usize = 2;

/// Where runs work: inline, or on a background runtime.
#[derive(Clone, Debug, Default)]
pub struct Background {
    runtime: Option<tokio::runtime::Handle>,
    /// The store on connections opened by the runtime's threads (see
    /// `store`), once a run asked for it.
    store: Arc<OnceCell<Store>>,
    /// The months of spend held (`SPEND_MONTHS_HELD`), shared by every
    /// run working here.
    spend_months: HeldMonths,
}

#[derive(Clone, Debug)]
struct HeldMonths(Arc<Semaphore>);

impl Default for HeldMonths {
    fn default() -> Self {
        HeldMonths(Arc::new(Semaphore::new(SPEND_MONTHS_HELD)))
    }
}

impl Background {
    /// On the runtime that awaits the run.
    pub fn inline() -> Background {
        Background::default()
    }

    /// A runtime of `threads` worker threads at a lower priority, and the
    /// handle runs go to. Keep the runtime for as long as runs may start;
    /// drop it outside async code (`Runtime::shutdown_background`).
    pub fn runtime(threads: usize) -> std::io::Result<(tokio::runtime::Runtime, Background)> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("cloudkeep-sync")
            .enable_all()
            .on_thread_start(lower_priority)
            .build()?;
        let handle = runtime.handle().clone();
        Ok((
            runtime,
            Background {
                runtime: Some(handle),
                ..Background::default()
            },
        ))
    }

    /// Runs `work` there and answers its output. Dropping the answer's
    /// future stops the work at its next await, as dropping `work` itself
    /// would (the scheduler relies on it when it loses a job's lease).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, SyncError>> + Send + 'static,
    ) -> Result<T, SyncError> {
        let Some(handle) = &self.runtime else {
            return work.await;
        };
        let mut task = AbortOnDrop(handle.spawn(work));
        match (&mut task.0).await {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only when the runtime shuts down with the process: the run
            // is left `running` until the sweeper marks it interrupted.
            Err(_) => Err(SyncError::Store(StoreError::State(
                "the sync runtime stopped before the run ended".into(),
            ))),
        }
    }
}

impl Background {
    /// `store` as work running here should use it: on a background
    /// runtime, on SQLite connections of its own opened by the runtime's
    /// threads, so the database work of a run is done at the run's lower
    /// priority too and none of the server's reads waits on a thread of
    /// it (`Store::with_own_connections`). Called from the work itself;
    /// one store per runtime (the first asked).
    pub(crate) async fn store(&self, store: &Store) -> Result<Store, StoreError> {
        if self.runtime.is_none() {
            return Ok(store.clone());
        }
        self.store
            .get_or_try_init(|| store.with_own_connections(CONNECTIONS))
            .await
            .cloned()
    }
}

impl Background {
    /// A turn to hold a month of spend, from before it is pulled until it
    /// is stored (see `SPEND_MONTHS_HELD`).
    pub(crate) async fn spend_month(&self) -> Option<SemaphorePermit<'_>> {
        // The semaphore is never closed.
        self.spend_months.0.acquire().await.ok()
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Lowers the calling thread's priority (Linux keeps one per thread; a
/// new thread starts with its creator's).
fn lower_priority() {
    let thread = rustix::thread::gettid();
    let lowered = rustix::process::getpriority_process(Some(thread)).and_then(|now| {
        rustix::process::setpriority_process(Some(thread), (now + NICENESS).min(19))
    });
    if let Err(e) = lowered {
        tracing::warn!(error = %e, "a sync thread keeps its priority");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    /// The months of spend held are counted across every run working in
    /// one place (the runtime's clones), not per run.
    #[tokio::test]
    async fn the_months_of_spend_held_are_shared_by_the_runs_of_one_place() {
        let (runtime, background) = Background::runtime(1).expect("runtime");
        let (one, other) = (background.clone(), background.clone());
        let held: Vec<_> =
            futures_util::future::join_all((0..SPEND_MONTHS_HELD).map(|_| one.spend_month())).await;
        assert!(held.iter().all(Option::is_some));
        let more = tokio::time::timeout(Duration::from_millis(200), other.spend_month()).await;
        assert!(more.is_err(), "a month beyond the limit waits");
        drop(held);
        let after = tokio::time::timeout(Duration::from_secs(5), other.spend_month()).await;
        assert!(
            matches!(after, Ok(Some(_))),
            "a month stored gives its turn back"
        );
        drop(after);
        // Elsewhere (another process's runtime, a test's inline runs): its own.
        assert!(Background::inline().spend_month().await.is_some());
        runtime.shutdown_background();
    }

    #[tokio::test]
    async fn runs_work_at_a_lower_priority_and_stop_when_dropped() {
        let here =
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("priority");
        let (runtime, background) = Background::runtime(1).expect("runtime");
        let priority = background
            .run(async {
                Ok(rustix::process::getpriority_process(Some(
                    rustix::thread::gettid(),
                )))
            })
            .await
            .expect("ran");
        assert_eq!(priority.expect("priority"), (here + NICENESS).min(19));
        let after = rustix::process::getpriority_process(Some(rustix::thread::gettid()));
        assert_eq!(
            after.expect("priority"),
            here,
            "the caller's thread keeps its own"
        );

        // Dropped before it ends: the work stops, as the scheduler needs
        // when it loses a job's lease.
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let work = background.run(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            flag.store(true, Ordering::SeqCst);
            Ok(())
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(20), work)
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!finished.load(Ordering::SeqCst), "the dropped work went on");
        runtime.shutdown_background();
    }

    /// SQLite's worker threads (one per connection) and their priorities.
    fn sqlite_threads() -> Vec<(i32, i32)> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").expect("tasks") {
            let path = task.expect("task").path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if !comm.starts_with("sqlx-sqlite") {
                continue;
            }
            let tid: i32 = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok())
                .expect("a thread id");
            let priority =
                rustix::process::getpriority_process(rustix::process::Pid::from_raw(tid))
                    .expect("priority");
            found.push((tid, priority));
        }
        found
    }

    #[tokio::test]
    async fn a_runs_store_works_on_threads_at_the_runs_priority_and_the_servers_does_not() {
        let here =
            rustix::process::getpriority_process(Some(rustix::thread::gettid())).expect("priority");
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&format!("sqlite://{}", dir.path().join("s.db").display()))
            .await
            .expect("store");
        let before = sqlite_threads();
        assert!(before.iter().all(|(_, p)| *p == here), "{before:?}");

        let (runtime, background) = Background::runtime(1).expect("runtime");
        let runs = {
            let (background, store) = (background.clone(), store.clone());
            background
                .clone()
                .run(async move {
                    let store = background.store(&store).await?;
                    store.ping().await?;
                    Ok(store)
                })
                .await
                .expect("ran")
        };
        let opened: Vec<_> = sqlite_threads()
            .into_iter()
            .filter(|t| !before.contains(t))
            .collect();
        assert!(!opened.is_empty(), "the run's store opened no connection");
        assert!(
            opened.iter().all(|(_, p)| *p == (here + NICENESS).min(19)),
            "a run's connection works at the server's priority: {opened:?}"
        );

        // The server's store grows from the server's threads: however
        // many of its connections open now, none is the run's.
        let all = sqlite_threads();
        futures_util::future::try_join_all((0..8).map(|_| store.ping()))
            .await
            .expect("pings");
        let grown: Vec<_> = sqlite_threads()
            .into_iter()
            .filter(|t| !all.contains(t))
            .collect();
        assert!(
            grown.iter().all(|(_, p)| *p == here),
            "the server's reads work on a run's thread: {grown:?}"
        );
        drop(runs);
        runtime.shutdown_background();
    }
}
