//! Where a run does its work. `serve` gives runs a runtime of their own
//! whose threads the kernel schedules after the server's (nice 10): a
//! sync uses the CPU that people's reads leave, instead of taking half of
//! it from them while it lists and diffs a large tenant. Elsewhere (tests,
//! one-off commands) a run works on the runtime that awaits it.

use std::future::Future;

use cloudkeep_store::StoreError;

use crate::SyncError;

/// How much nicer a background thread is than the process (nice values
/// run from -20 to 19, the lowest priority; the default is 0).
const NICENESS: i32 = 10;

/// Where runs work: inline, or on a background runtime.
#[derive(Clone, Debug, Default)]
pub struct Background(Option<tokio::runtime::Handle>);

impl Background {
    /// On the runtime that awaits the run.
    pub fn inline() -> Background {
        Background(None)
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
        Ok((runtime, Background(Some(handle))))
    }

    /// Runs `work` there and answers its output. Dropping the answer's
    /// future stops the work at its next await, as dropping `work` itself
    /// would (the scheduler relies on it when it loses a job's lease).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, SyncError>> + Send + 'static,
    ) -> Result<T, SyncError> {
        let Some(handle) = &self.0 else {
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
}
