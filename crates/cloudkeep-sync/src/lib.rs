//! The sync engine: one run reads a connection's subscriptions through every
//! registered collector, honouring each subscription's sync level, and
//! records what it saw, what it could not read and why. Subscriptions run
//! side by side, a few at once in their collectors and more in their
//! write-back, which mostly waits on ARM's per-subscription throttling.
//!
//! Failures become state, not crashes: a credential Entra ID refuses moves
//! the connection to "needs re-auth"; a 403 on one subscription is recorded
//! as a missing permission and the rest of the run goes on.

mod background;
pub use background::Background;

pub mod anomalies;
pub mod budgets;
pub mod collectors;
pub mod evidence;
pub mod scheduler;
pub mod webhooks;
pub mod writeback;

use std::sync::Arc;
use std::time::Instant;

use cloudkeep_azure::{AccessToken, AzureClient, AzureError};
use cloudkeep_domain::crypto::KeyProvider;
use cloudkeep_domain::report::{
    Counts, Progress, RunError, RunReport, StepReport, SubscriptionReport,
};
use cloudkeep_domain::{
    AuthMethod, ConnectionId, ConnectionStatus, ErrorKind, OperatorApp, RunStatus, SecretString,
    StepState, SyncLevel, SyncTrigger,
};
use cloudkeep_store::{OrgScope, Store, StoreError, SubscriptionRecord, SyncRun};
use futures_util::future::BoxFuture;
use tokio::sync::Semaphore;

/// The step that writes pending tag edits back, after the collectors.
pub const WRITE_BACK: &str = "write_back";

/// What a run needs from the rest of cloudkeep.
#[derive(Clone)]
pub struct SyncDeps {
    pub store: Store,
    pub azure: AzureClient,
    pub keys: Arc<dyn KeyProvider>,
    /// The operator's application, for connections made by consent.
    pub operator: Option<OperatorApp>,
    /// Where runs do their work.
    pub background: Background,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the connection was revoked; it no longer syncs")]
    Revoked,
    /// Another run of the connection is under way (its id).
    #[error("a sync of this connection is already running (run {0})")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a collector is given for one subscription.
pub struct CollectContext<'a> {
    pub store: &'a Store,
    /// Azure, with throttling waits bounded by what is left of the run.
    pub azure: AzureClient,
    pub scope: &'a OrgScope,
    pub token: &'a AccessToken,
    pub run: &'a SyncRun,
    pub subscription: &'a SubscriptionRecord,
    /// Where the step says how far it has come (`progress`).
    step: StepHandle<'a>,
}

/// Reports one step's progress into the run's report.
#[derive(Clone, Copy)]
struct StepHandle<'a> {
    env: Option<&'a RunEnv>,
    step: &'a str,
}

impl CollectContext<'_> {
    /// A turn to hold a month of spend, pulled and not yet stored (see
    /// `background::SPEND_MONTHS_HELD`); `None` outside a run.
    pub(crate) async fn spend_month(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        match self.step.env {
            Some(env) => env.deps.background.spend_month().await,
            None => None,
        }
    }

    /// The run's token as it stands now, renewed when close to its end: a
    /// long step (a backfill) can outlast the token it started with.
    pub async fn current_token(&self) -> AccessToken {
        match self.step.env {
            Some(env) => env.tokens.get().await,
            None => self.token.clone(),
        }
    }

    /// Says how far a long step has come (a backfill's months, say); shown
    /// while the run goes on (`cloudkeep sync run --wait`).
    pub fn progress(&self, done: u64, total: u64, unit: &str) {
        if let Some(env) = self.step.env {
            let mut step = StepReport::new(self.step.step, StepState::Running);
            step.progress = Some(Progress {
                done,
                total,
                unit: unit.to_string(),
            });
            env.progress(self.subscription, step);
        }
    }
}

/// Why a collection failed: Azure's answer, or the store.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Azure(#[from] AzureError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A kind of data read from Azure. Adding one is a new file in
/// `collectors/` and a line in `collectors::all`. See `docs/collectors.md`.
pub trait Collector: Send + Sync {
    /// Named after what it reads (`inventory`, `spend`, ...).
    fn name(&self) -> &'static str;
    /// Whether it runs for a subscription at this sync level.
    fn runs_at(&self, level: SyncLevel) -> bool;
    /// Reads one subscription and stores what it saw; answers its counts
    /// (its own typed counts, named: `Counts::from`).
    fn collect<'a>(
        &'a self,
        ctx: CollectContext<'a>,
    ) -> BoxFuture<'a, Result<Counts, CollectError>>;
}

/// How long a run may take. Azure's `Retry-After` is honoured however long
/// it is, up to this; beyond it the step reports that it was throttled.
const RUN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3600);

/// A running run says it is alive this often...
const RUN_BEAT: std::time::Duration = std::time::Duration::from_secs(5);
/// ...and one silent this long lost its process (a crash, a restart).
pub(crate) const RUN_STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

/// Resources added or deleted in a run from which the store's planner
/// statistics are refreshed.
const STATISTICS_AFTER: u64 = 1000;

/// A token this close to its end is renewed before the next call that
/// takes it (half its lifetime for one that lives less than twice this).
const TOKEN_MARGIN: std::time::Duration = std::time::Duration::from_secs(120);

/// Times a step (or a spend query) is repeated with a renewed token when
/// Azure says the token expired under it: tokens can be short-lived, and a
/// step under throttling can outlast one, more than once.
pub(crate) const TOKEN_RENEWALS: u32 = 3;

/// Runs one sync of a connection now and records it. The credential stays
/// in memory for the run, to renew the token when it runs out.
pub async fn sync_connection(
    deps: &SyncDeps,
    scope: &OrgScope,
    connection: ConnectionId,
    trigger: SyncTrigger,
    actor: &str,
) -> Result<SyncRun, SyncError> {
    start_sync(deps, scope, connection, trigger)
        .await?
        .finish(actor)
        .await
}

/// The same with only some collectors (`collectors::named`): the
/// benchmarks measure one kind of collection at a time with it. The
/// write-back still runs where the level writes tags.
pub async fn sync_connection_with(
    deps: &SyncDeps,
    scope: &OrgScope,
    connection: ConnectionId,
    trigger: SyncTrigger,
    actor: &str,
    collectors: Vec<Box<dyn Collector>>,
) -> Result<SyncRun, SyncError> {
    start_sync_with(deps, scope, connection, trigger, collectors)
        .await?
        .finish(actor)
        .await
}

/// Records a run as begun, with its plan (every step of every live
/// subscription, `pending` or skipped) as its report, for whoever follows
/// it; `StartedSync::finish` then does the work.
pub async fn start_sync(
    deps: &SyncDeps,
    scope: &OrgScope,
    connection: ConnectionId,
    trigger: SyncTrigger,
) -> Result<StartedSync, SyncError> {
    start_sync_with(deps, scope, connection, trigger, collectors::all()).await
}

async fn start_sync_with(
    deps: &SyncDeps,
    scope: &OrgScope,
    connection: ConnectionId,
    trigger: SyncTrigger,
    collectors: Vec<Box<dyn Collector>>,
) -> Result<StartedSync, SyncError> {
    let conn = deps.store.connection(scope, connection).await?;
    if conn.deleted_at.is_some() {
        return Err(SyncError::Revoked);
    }
    // A run whose heartbeat stopped this long ago died with its process.
    let stale_before = deps.store.now()
        - chrono::Duration::from_std(RUN_STALE_AFTER).unwrap_or(chrono::Duration::MAX);
    let mut run = match deps
        .store
        .begin_sync_run(scope, connection, trigger, stale_before)
        .await
    {
        Ok(run) => run,
        Err(StoreError::Conflict { value, .. }) => return Err(SyncError::Busy(value)),
        Err(e) => return Err(e.into()),
    };
    run.report = RunReport {
        subscriptions: conn
            .live_subscriptions()
            .map(|sub| plan(&collectors, sub))
            .collect(),
        errors: Vec::new(),
    };
    deps.store
        .record_sync_progress(scope, &run, &run.report)
        .await?;
    Ok(StartedSync {
        deps: deps.clone(),
        scope: scope.clone(),
        conn,
        run,
        collectors,
    })
}

/// The steps of one subscription's part of a run, before it starts.
fn plan(collectors: &[Box<dyn Collector>], sub: &SubscriptionRecord) -> SubscriptionReport {
    let mut steps: Vec<StepReport> = collectors
        .iter()
        .map(|c| {
            if c.runs_at(sub.sync_level) {
                StepReport::new(c.name(), StepState::Pending)
            } else {
                skipped_at(c.name(), sub.sync_level)
            }
        })
        .collect();
    if sub.sync_level.writes_tags() {
        steps.push(StepReport::new(WRITE_BACK, StepState::Pending));
    }
    SubscriptionReport {
        subscription_id: sub.azure_id.clone(),
        steps,
    }
}

fn skipped_at(step: &str, level: SyncLevel) -> StepReport {
    StepReport::skipped(step, format!("sync level {level}"))
}

/// A run recorded as begun and not yet done.
pub struct StartedSync {
    deps: SyncDeps,
    scope: OrgScope,
    conn: cloudkeep_store::Connection,
    run: SyncRun,
    collectors: Vec<Box<dyn Collector>>,
}

impl StartedSync {
    /// The run as recorded so far (running, with its plan).
    pub fn run(&self) -> &SyncRun {
        &self.run
    }

    /// Does the run's work (where `SyncDeps::background` says) and
    /// records its end.
    pub async fn finish(self, actor: &str) -> Result<SyncRun, SyncError> {
        let StartedSync {
            deps,
            scope,
            conn,
            run,
            collectors,
        } = self;
        let actor = actor.to_string();
        let background = deps.background.clone();
        background
            .clone()
            .run(async move {
                let deps = SyncDeps {
                    store: background.store(&deps.store).await?,
                    ..deps
                };
                run_sync(&deps, &scope, conn, run, collectors, &actor).await
            })
            .await
    }
}

/// Ends a run that could not start its work: the connection's status and
/// one error say why.
async fn fail_run(
    deps: &SyncDeps,
    scope: &OrgScope,
    run: &SyncRun,
    status: ConnectionStatus,
    kind: ErrorKind,
    detail: &str,
    actor: &str,
) -> Result<SyncRun, SyncError> {
    deps.store
        .set_connection_status(scope, run.connection_id, status, Some(detail), actor)
        .await?;
    let report = RunReport {
        subscriptions: Vec::new(),
        errors: vec![RunError {
            kind,
            subscription: None,
            collector: None,
            message: detail.to_string(),
        }],
    };
    Ok(deps
        .store
        .finish_sync_run(scope, run, RunStatus::Failed, &report, actor)
        .await?)
}

async fn run_sync(
    deps: &SyncDeps,
    scope: &OrgScope,
    conn: cloudkeep_store::Connection,
    run: SyncRun,
    collectors: Vec<Box<dyn Collector>>,
    actor: &str,
) -> Result<SyncRun, SyncError> {
    let Some(secret) = credential(deps, scope, &conn).await? else {
        let detail = "this connection was made by consent and syncs with the operator's application, \
                      which this server is not configured with (or whose client id changed): \
                      set CLOUDKEEP_OPERATOR_CLIENT_ID and CLOUDKEEP_OPERATOR_CLIENT_SECRET";
        return fail_run(
            deps,
            scope,
            &run,
            ConnectionStatus::Failing,
            ErrorKind::OperatorAppMissing,
            detail,
            actor,
        )
        .await;
    };
    let token = match deps
        .azure
        .client_credentials_token(&conn.tenant_id, &conn.client_id, &secret)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            let (status, kind) = match &e {
                AzureError::Credential { .. } => {
                    (ConnectionStatus::NeedsReauth, ErrorKind::CredentialRejected)
                }
                _ => (ConnectionStatus::Failing, ErrorKind::TokenUnavailable),
            };
            return fail_run(deps, scope, &run, status, kind, &e.to_string(), actor).await;
        }
    };

    // Progress is written by one task, latest state first, so no step waits
    // on the store to say it started.
    let (progress_tx, mut progress_rx) = tokio::sync::watch::channel(run.report.clone());
    // The same task beats for the run, so a start elsewhere knows it is alive.
    let progress_writer = {
        let (store, scope, run) = (deps.store.clone(), scope.clone(), run.clone());
        tokio::spawn(async move {
            let mut beat = tokio::time::interval(RUN_BEAT);
            loop {
                tokio::select! {
                    changed = progress_rx.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let report = progress_rx.borrow_and_update().clone();
                        if let Err(e) = store.record_sync_progress(&scope, &run, &report).await {
                            tracing::warn!(run = %run.id, error = %e, "could not record the run's progress");
                        }
                    }
                    _ = beat.tick() => {
                        if let Err(e) = store.sync_run_alive(&scope, &run).await {
                            tracing::warn!(run = %run.id, error = %e, "could not record the run's heartbeat");
                        }
                    }
                }
            }
        })
    };
    let subscriptions: Vec<SubscriptionRecord> = conn.live_subscriptions().cloned().collect();
    let env = Arc::new(RunEnv {
        deps: deps.clone(),
        scope: scope.clone(),
        deadline: Instant::now() + RUN_DEADLINE,
        run: run.clone(),
        actor: actor.to_string(),
        tokens: Tokens {
            azure: deps.azure.clone(),
            tenant_id: conn.tenant_id.clone(),
            client_id: conn.client_id.clone(),
            secret,
            current: tokio::sync::Mutex::new(Held::new(token)),
        },
        collectors,
        progress: std::sync::Mutex::new(run.report.clone()),
        progress_tx,
        collect: Semaphore::new(COLLECT_CONCURRENCY),
        write_back: Semaphore::new(WRITE_BACK_CONCURRENCY),
    });
    // Subscriptions run side by side; the set aborts them if this run is dropped.
    let mut tasks = tokio::task::JoinSet::new();
    for (i, sub) in subscriptions.iter().cloned().enumerate() {
        let env = env.clone();
        tasks.spawn(async move { (i, sync_subscription(&env, &sub).await) });
    }
    let mut outcomes: Vec<Option<SubscriptionOutcome>> =
        subscriptions.iter().map(|_| None).collect();
    // A subscription whose task panicked (a bug) or was cancelled (the
    // runtime shutting down) is reported as not synced; the run still ends
    // and is recorded, rather than staying `running`.
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok((i, outcome)) => outcomes[i] = Some(outcome),
            Err(e) => {
                tracing::error!(run = %run.id, error = %e, "a subscription's sync task did not finish")
            }
        }
    }
    // The last progress is written before the run's end (which a late
    // progress write could not undo anyway: it only touches running runs).
    drop(env);
    let _ = progress_writer.await;
    // In the connection's order, whatever order they finished in.
    let mut report = RunReport::default();
    let mut successes = 0;
    for (sub, outcome) in subscriptions.iter().zip(outcomes) {
        let Some(outcome) = outcome else {
            report.errors.push(RunError {
                kind: ErrorKind::Error,
                subscription: Some(sub.azure_id.clone()),
                collector: None,
                message: "its sync stopped on an internal error (see the server's log); the next run tries again".into(),
            });
            continue;
        };
        report.subscriptions.push(outcome.report);
        report.errors.extend(outcome.errors);
        successes += outcome.successes;
    }
    let status = match (report.errors.is_empty(), successes) {
        (true, _) => RunStatus::Succeeded,
        (false, 0) => RunStatus::Failed,
        (false, _) => RunStatus::Partial,
    };
    // A run that added or removed many resources changes what the store's
    // planner should expect of its tables.
    let changed = report.total("inventory", "added") + report.total("inventory", "deleted");
    if changed >= STATISTICS_AFTER {
        if let Err(e) = deps.store.refresh_statistics().await {
            tracing::warn!(error = %e, "could not refresh the store's statistics");
        }
    }
    if status != RunStatus::Failed && conn.status != ConnectionStatus::Active {
        deps.store
            .set_connection_status(scope, conn.id, ConnectionStatus::Active, None, actor)
            .await?;
    }
    let run = deps
        .store
        .finish_sync_run(scope, &run, status, &report, actor)
        .await?;
    evidence::after_sync(&deps.store, scope, &run, actor).await;
    budgets::after_sync(&deps.store, scope, &run, actor).await;
    anomalies::after_sync(&deps.store, scope, &run, actor).await;
    // The tag coverage the dashboard shows is kept per inventory content:
    // computed now (0.15 s on 100,000 resources), not at the next page load.
    if report.total("inventory", "seen") > 0 {
        if let Err(e) = deps.store.warm_tag_coverage(scope).await {
            tracing::warn!(error = %e, "could not compute the tag coverage after the run");
        }
    }
    Ok(run)
}

/// The secret a connection signs in with, in memory: its own sealed one, or
/// the operator's application's (`None` when this server has none for it).
async fn credential(
    deps: &SyncDeps,
    scope: &OrgScope,
    conn: &cloudkeep_store::Connection,
) -> Result<Option<SecretString>, SyncError> {
    Ok(match conn.auth_method {
        AuthMethod::ClientSecret => Some(
            deps.store
                .open_credential(scope, deps.keys.as_ref(), conn.id)
                .await?,
        ),
        AuthMethod::OperatorApp => deps
            .operator
            .as_ref()
            .filter(|op| op.client_id.eq_ignore_ascii_case(&conn.client_id))
            .map(|op| op.client_secret.clone()),
    })
}

/// Subscriptions whose collectors run at once. A collector holds a whole
/// subscription's listing in memory, and more at once than this only queue
/// for the CPU and the store.
pub const COLLECT_CONCURRENCY: usize = 4;
/// Subscriptions whose tag edits are written back at once. ARM throttles
/// each subscription on its own, so a write-back mostly waits on its
/// subscription's pacing; this only bounds what a huge connection asks of
/// the store at once.
const WRITE_BACK_CONCURRENCY: usize = 32;

/// What every subscription of one run shares.
struct RunEnv {
    deps: SyncDeps,
    scope: OrgScope,
    run: SyncRun,
    /// When the run stops waiting on Azure: a throttled call whose
    /// `Retry-After` ends later is reported, not slept through.
    deadline: Instant,
    actor: String,
    tokens: Tokens,
    collectors: Vec<Box<dyn Collector>>,
    /// Each subscription's steps as they stand, recorded as the run's
    /// report while it runs.
    progress: std::sync::Mutex<RunReport>,
    progress_tx: tokio::sync::watch::Sender<RunReport>,
    collect: Semaphore,
    write_back: Semaphore,
}

/// The run's access token, renewed when close to its end. The credential
/// stays in memory for the run for that.
struct Tokens {
    azure: AzureClient,
    tenant_id: String,
    client_id: String,
    secret: SecretString,
    current: tokio::sync::Mutex<Held>,
}

/// The run's token and how close to its end it is renewed: `TOKEN_MARGIN`,
/// or half its lifetime for a short-lived one (else every call would renew
/// a token that lives less than the margin).
struct Held {
    token: AccessToken,
    margin: std::time::Duration,
}

impl Held {
    fn new(token: AccessToken) -> Held {
        let lifetime = (token.expires_at - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        Held {
            margin: TOKEN_MARGIN.min(lifetime / 2),
            token,
        }
    }
}

impl Tokens {
    /// The token, renewed first if it runs out soon. A failed renewal keeps
    /// the old one: the step that uses it then fails and says why.
    async fn get(&self) -> AccessToken {
        let mut held = self.current.lock().await;
        if held.token.expires_within(held.margin) {
            if let Ok(t) = self
                .azure
                .client_credentials_token(&self.tenant_id, &self.client_id, &self.secret)
                .await
            {
                *held = Held::new(t);
            }
        }
        held.token.clone()
    }

    /// A new token whatever the old one's end (Azure said it expired: its
    /// clock and ours disagree, or the step outlasted it).
    async fn renewed(&self) -> AccessToken {
        let mut held = self.current.lock().await;
        if let Ok(t) = self
            .azure
            .client_credentials_token(&self.tenant_id, &self.client_id, &self.secret)
            .await
        {
            *held = Held::new(t);
        }
        held.token.clone()
    }
}

/// Azure refused the token as expired (not as invalid): a new token and
/// the same step again fix it.
fn token_expired(e: &CollectError) -> bool {
    matches!(e, CollectError::Azure(AzureError::Unauthorized { code, .. }) if code == "ExpiredAuthenticationToken")
}

/// What one subscription's part of a run recorded.
struct SubscriptionOutcome {
    report: SubscriptionReport,
    errors: Vec<RunError>,
    successes: usize,
}

/// Runs the collectors on one subscription, then writes back its tag edits
/// where its level writes tags.
async fn sync_subscription(env: &RunEnv, sub: &SubscriptionRecord) -> SubscriptionOutcome {
    // Steps keep the plan's order as they are recorded over it.
    let mut out = SubscriptionOutcome {
        report: plan(&env.collectors, sub),
        errors: Vec::new(),
        successes: 0,
    };
    let record = |out: &mut SubscriptionOutcome, step: StepReport| {
        env.progress(sub, step.clone());
        out.report.set(step);
    };
    let runs: Vec<&dyn Collector> = env
        .collectors
        .iter()
        .map(|c| c.as_ref())
        .filter(|c| c.runs_at(sub.sync_level))
        .collect();
    if !runs.is_empty() {
        // The semaphore is never closed, so the permit always comes.
        let _permit = env.collect.acquire().await;
        for c in runs {
            // Each collector takes the token as it stands (renewed when
            // close to its end): a subscription's collectors run one after
            // another, longer than one token may last.
            let token = env.tokens.get().await;
            record(&mut out, StepReport::new(c.name(), StepState::Running));
            let mut result = c.collect(env.context(&token, sub, c.name())).await;
            let mut renewals = 0;
            while renewals < TOKEN_RENEWALS && result.as_ref().is_err_and(token_expired) {
                // Again with a new token: a collector's step is safe to
                // repeat (it stores what it reads as it is; the backfill
                // resumes where it stopped).
                renewals += 1;
                let token = env.tokens.renewed().await;
                result = c.collect(env.context(&token, sub, c.name())).await;
            }
            let done = match result {
                Ok(counts) => {
                    out.successes += 1;
                    StepReport::succeeded(c.name(), counts)
                }
                Err(e) => {
                    let error = failure(sub, c.name(), &e);
                    let step = StepReport::failed(c.name(), error.message.clone());
                    out.errors.push(error);
                    step
                }
            };
            record(&mut out, done);
        }
    }
    // Then the user's tag edits, where the level writes tags.
    if sub.sync_level.writes_tags() {
        let _permit = env.write_back.acquire().await;
        record(&mut out, StepReport::new(WRITE_BACK, StepState::Running));
        let token = env.tokens.get().await;
        let done = match writeback::apply(&env.context(&token, sub, WRITE_BACK), &env.actor).await {
            Ok(counts) => {
                out.successes += 1;
                StepReport::succeeded(WRITE_BACK, counts)
            }
            Err(e) => {
                let error = failure(sub, WRITE_BACK, &e);
                let step = StepReport::failed(WRITE_BACK, error.message.clone());
                out.errors.push(error);
                step
            }
        };
        record(&mut out, done);
    }
    out
}

impl RunEnv {
    /// Records a step's state in the run while it runs. Progress is for
    /// people watching: failing to record it does not fail the run.
    fn progress(&self, sub: &SubscriptionRecord, step: StepReport) {
        let mut progress = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = progress
            .subscriptions
            .iter_mut()
            .find(|s| s.subscription_id == sub.azure_id)
        {
            s.set(step);
        }
        // Sent under the lock, so a later state never overtakes an earlier one.
        self.progress_tx.send_replace(progress.clone());
    }

    fn context<'a>(
        &'a self,
        token: &'a AccessToken,
        subscription: &'a SubscriptionRecord,
        step: &'a str,
    ) -> CollectContext<'a> {
        CollectContext {
            store: &self.deps.store,
            azure: self
                .deps
                .azure
                .clone()
                .with_max_throttle_wait(self.deadline.saturating_duration_since(Instant::now())),
            scope: &self.scope,
            token,
            run: &self.run,
            subscription,
            step: StepHandle {
                env: Some(self),
                step,
            },
        }
    }
}

fn failure(sub: &SubscriptionRecord, step: &str, e: &CollectError) -> RunError {
    let kind = match e {
        CollectError::Azure(AzureError::Forbidden { .. }) => ErrorKind::PermissionMissing,
        CollectError::Azure(AzureError::Throttled { .. }) => ErrorKind::Throttled,
        _ => ErrorKind::Error,
    };
    tracing::warn!(step, subscription = %sub.azure_id, error = %e, "sync step failed");
    RunError {
        kind,
        subscription: Some(sub.azure_id.clone()),
        collector: Some(step.to_string()),
        message: e.to_string(),
    }
}
