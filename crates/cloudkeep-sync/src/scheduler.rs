//! The scheduler: per organisation, queue the connections that are due,
//! review the evidence (staleness alerts, the controls' daily history), and
//! work through the queue under leases (syncs, and webhook deliveries with
//! their retries), so that any number of cloudkeep processes on one
//! database split the work and none runs a job twice while its holder is
//! alive.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use cloudkeep_domain::{Clock, SyncTrigger};
use cloudkeep_store::{Job, OrgScope, RETENTION_JOB, SYNC_JOB, WEBHOOK_JOB};

use crate::webhooks::{Delivered, WebhookPolicy};
use crate::{SyncDeps, SyncError, sync_connection};

/// The trigger recorded on the runs the scheduler starts.
const SCHEDULED: SyncTrigger = SyncTrigger::Schedule;

#[derive(Clone)]
pub struct SchedulerConfig {
    /// Names this process in leases.
    pub worker_id: String,
    /// How long a claimed job is ours without a heartbeat.
    pub lease: Duration,
    /// How often to look for due work.
    pub poll: StdDuration,
    /// Attempts before a job is given up (each retry waits longer).
    pub max_attempts: i64,
    /// Where webhook deliveries may go.
    pub webhooks: WebhookPolicy,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            worker_id: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            lease: Duration::seconds(120),
            poll: StdDuration::from_secs(15),
            max_attempts: 5,
            webhooks: WebhookPolicy::default(),
        }
    }
}

pub struct Scheduler {
    deps: SyncDeps,
    config: SchedulerConfig,
    clock: Arc<dyn Clock>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tick {
    pub queued: u64,
    pub ran: u64,
    pub failed: u64,
    /// Webhook deliveries attempted (delivered or not).
    pub deliveries: u64,
    /// Staleness alerts opened and resolved.
    pub alerts: u64,
    /// Runs whose process died, marked interrupted.
    pub interrupted: u64,
    /// Evidence rows and sync runs the retention job purged.
    pub purged: u64,
}

/// Rows a retention batch removes at most (per table), each batch its own
/// transaction, so SQLite's writer is held briefly and an interrupted purge
/// keeps what it did.
const PURGE_BATCH: usize = 500;

impl Scheduler {
    /// A scheduler on the store's clock (the one the store stamps rows
    /// with, so a test moves both at once).
    pub fn new(deps: SyncDeps, config: SchedulerConfig) -> Self {
        let clock = deps.store.clock().clone();
        Scheduler {
            deps,
            config,
            clock,
        }
    }

    /// One pass over every organisation: queue what is due, run what is queued.
    pub async fn tick(&self) -> Result<Tick, SyncError> {
        let mut tick = Tick::default();
        let stale_before = self.clock.now()
            - chrono::Duration::from_std(crate::RUN_STALE_AFTER).unwrap_or(chrono::Duration::MAX);
        for scope in self.deps.store.operator_scopes().await? {
            // A killed process's run reads interrupted within a poll of
            // going silent, not only when its connection next starts.
            tick.interrupted += self
                .deps
                .store
                .interrupt_stale_runs(&scope, stale_before)
                .await?;
            tick.queued += self
                .deps
                .store
                .enqueue_due_syncs(&scope, self.clock.now())
                .await?;
            // At most once a day; not counted with the syncs queued.
            self.deps
                .store
                .enqueue_retention(&scope, self.clock.now())
                .await?;
            // A review that fails is logged: the next pass tries again, and
            // the queue still runs.
            match crate::evidence::review(&self.deps.store, &scope, "system:scheduler").await {
                Ok(r) => tick.alerts += r.alerts_opened + r.alerts_resolved,
                Err(e) => {
                    tracing::error!(org = %scope.org(), error = %e, "evidence review failed")
                }
            }
            match crate::budgets::roll_over(&self.deps.store, &scope, "system:scheduler").await {
                Ok(n) => tick.alerts += n,
                Err(e) => {
                    tracing::error!(org = %scope.org(), error = %e, "budget roll-over failed")
                }
            }
            while let Some(job) = self
                .deps
                .store
                .claim_job(
                    &scope,
                    &self.config.worker_id,
                    self.clock.now(),
                    self.config.lease,
                )
                .await?
            {
                match job.kind.as_str() {
                    SYNC_JOB => {
                        if self.run(&scope, job).await? {
                            tick.ran += 1;
                        } else {
                            tick.failed += 1;
                        }
                    }
                    WEBHOOK_JOB => {
                        tick.deliveries += u64::from(self.deliver(&scope, job).await?);
                    }
                    RETENTION_JOB => {
                        tick.purged += self.purge(&scope, job).await?;
                    }
                    other => {
                        tracing::error!(job = %job.id, kind = other, "a job of a kind this process does not know");
                        let now = self.clock.now();
                        self.deps
                            .store
                            .fail_job(
                                &scope,
                                job.id,
                                &self.config.worker_id,
                                "unknown job kind",
                                None,
                                now,
                            )
                            .await?;
                    }
                }
            }
        }
        Ok(tick)
    }

    /// Runs one claimed job with a heartbeat; answers whether it succeeded.
    async fn run(&self, scope: &OrgScope, job: Job) -> Result<bool, SyncError> {
        if job.attempts > 1 {
            // Taken over from a worker that died: its run never finished.
            let lost = self
                .deps
                .store
                .interrupt_runs(scope, job.connection_id, SCHEDULED)
                .await?;
            if lost > 0 {
                tracing::warn!(connection = %job.connection_id, runs = lost, "marked runs of a dead worker interrupted");
            }
        }
        let store = self.deps.store.clone();
        let (worker, lease, clock) = (
            self.config.worker_id.clone(),
            self.config.lease,
            self.clock.clone(),
        );
        let (scope2, id) = (scope.clone(), job.id);
        let beat = lease.to_std().unwrap_or(StdDuration::from_secs(60)) / 3;
        // Ends only when the lease is someone else's (a worker that took the
        // job over after our heartbeats stalled); then the sync is dropped,
        // which cancels it, so two workers never carry on with one job.
        let lease_lost = async move {
            loop {
                tokio::time::sleep(beat).await;
                match store
                    .heartbeat_job(&scope2, id, &worker, clock.now(), lease)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => return,
                    // The store may be back by the next beat; the lease says
                    // whether the job is still ours.
                    Err(e) => tracing::warn!(job = %id, error = %e, "heartbeat failed"),
                }
            }
        };
        let sync = sync_connection(
            &self.deps,
            scope,
            job.connection_id,
            SCHEDULED,
            "system:scheduler",
        );
        let outcome = tokio::select! {
            outcome = sync => outcome,
            () = lease_lost => {
                tracing::warn!(connection = %job.connection_id, job = %job.id, "lost the job's lease to another worker; its sync was stopped");
                return Ok(false);
            }
        };
        let now = self.clock.now();
        match outcome {
            Ok(run) if run.status != cloudkeep_domain::RunStatus::Failed => {
                self.deps
                    .store
                    .complete_job(scope, job.id, &self.config.worker_id, now)
                    .await?;
                Ok(true)
            }
            Ok(run) => {
                // A failed run is recorded; the connection's state says why. The
                // next cadence tries again, so the job itself is done.
                tracing::warn!(connection = %job.connection_id, run = %run.id, "scheduled sync failed");
                self.deps
                    .store
                    .complete_job(scope, job.id, &self.config.worker_id, now)
                    .await?;
                Ok(false)
            }
            Err(SyncError::Busy(run)) => {
                // A manual run is under way; it sets the next sync time.
                tracing::info!(connection = %job.connection_id, %run, "a sync is already running; the scheduled one is skipped");
                self.deps
                    .store
                    .complete_job(scope, job.id, &self.config.worker_id, now)
                    .await?;
                Ok(false)
            }
            Err(SyncError::Revoked) => {
                self.deps
                    .store
                    .fail_job(
                        scope,
                        job.id,
                        &self.config.worker_id,
                        "the connection was revoked",
                        None,
                        now,
                    )
                    .await?;
                Ok(false)
            }
            Err(SyncError::Store(e)) => {
                let retry = (job.attempts < self.config.max_attempts)
                    .then(|| now + Duration::seconds(30 * (1 << job.attempts.clamp(0, 10))));
                self.deps
                    .store
                    .fail_job(
                        scope,
                        job.id,
                        &self.config.worker_id,
                        &e.to_string(),
                        retry,
                        now,
                    )
                    .await?;
                Ok(false)
            }
        }
    }

    /// One attempt at a webhook delivery; answers whether one was made. The
    /// job ends with the delivery (delivered or given up) or waits for its
    /// retry (`run_at`).
    async fn deliver(&self, scope: &OrgScope, job: Job) -> Result<bool, SyncError> {
        let store = &self.deps.store;
        let worker = &self.config.worker_id;
        let outcome = crate::webhooks::attempt(
            store,
            self.deps.keys.as_ref(),
            scope,
            &job,
            self.config.webhooks,
        )
        .await;
        let now = self.clock.now();
        match outcome {
            Ok(Delivered::Nothing) => {
                store.complete_job(scope, job.id, worker, now).await?;
                Ok(false)
            }
            Ok(Delivered::Done) => {
                store.complete_job(scope, job.id, worker, now).await?;
                Ok(true)
            }
            Ok(Delivered::RetryAt(at)) => {
                store
                    .fail_job(
                        scope,
                        job.id,
                        worker,
                        "not delivered; retrying",
                        Some(at),
                        now,
                    )
                    .await?;
                Ok(true)
            }
            Ok(Delivered::GaveUp(why)) => {
                tracing::warn!(job = %job.id, error = %why, "a webhook delivery was given up");
                store
                    .fail_job(scope, job.id, worker, &why, None, now)
                    .await?;
                Ok(true)
            }
            Err(e) => {
                // The store failed: the job is claimed again when its lease ends.
                tracing::error!(job = %job.id, error = %e, "a webhook delivery could not be recorded");
                Err(e.into())
            }
        }
    }

    /// The retention job: purge batches until nothing is past the window,
    /// renewing the lease between them. A worker that dies mid-purge loses
    /// nothing: each batch committed with its audit event, and whoever
    /// claims the job after its lease carries on. Answers the rows purged.
    async fn purge(&self, scope: &OrgScope, job: Job) -> Result<u64, SyncError> {
        let store = &self.deps.store;
        let worker = &self.config.worker_id;
        let mut purged = 0;
        loop {
            match store
                .purge_retention_batch(scope, PURGE_BATCH, "system:retention")
                .await
            {
                Ok(batch) if batch.is_empty() => break,
                Ok(batch) => {
                    purged += batch.evidence + batch.sync_runs;
                    let now = self.clock.now();
                    if !store
                        .heartbeat_job(scope, job.id, worker, now, self.config.lease)
                        .await?
                    {
                        // Another worker took it over: it carries on.
                        return Ok(purged);
                    }
                }
                Err(e) => {
                    tracing::error!(job = %job.id, error = %e, "a retention purge failed");
                    let now = self.clock.now();
                    let retry = (job.attempts < self.config.max_attempts)
                        .then(|| now + Duration::minutes(5 * job.attempts));
                    store
                        .fail_job(scope, job.id, worker, &e.to_string(), retry, now)
                        .await?;
                    return Ok(purged);
                }
            }
        }
        store
            .complete_job(scope, job.id, worker, self.clock.now())
            .await?;
        Ok(purged)
    }

    /// Ticks every `poll` until `shutdown` completes.
    pub async fn run_until(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.tick().await {
                Ok(t) if t.ran + t.failed > 0 => tracing::info!(
                    queued = t.queued,
                    ran = t.ran,
                    failed = t.failed,
                    "scheduler pass"
                ),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "scheduler pass failed"),
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(self.config.poll) => {}
            }
        }
    }
}
