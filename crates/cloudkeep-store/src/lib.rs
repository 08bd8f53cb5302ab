//! cloudkeep's store: one API over SQLite (the embedded default) and
//! PostgreSQL, chosen by the URL's scheme, with plain SQL and one migrations
//! folder per backend.
//!
//! **Invariant:** every read and write of organisation data takes an
//! [`OrgScope`], and only this crate can make one: from authentication
//! (a password, a session, an API token), from creating an organisation, or
//! for the operator's per-organisation loops. A query without a scope does
//! not compile.

mod access;
mod alerts;
mod anomalies;
mod assessments;
mod audit;
mod budgets;
mod connections;
mod coverage;
mod evidence;
mod inventory;
mod inventory_digest;
mod jobs;
mod keys;
mod logins;
mod page;
mod retention;
mod revisions;
mod runs;
mod spend;
mod sql;
mod tag_aliases;
mod tag_edits;
mod turns;

use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use cloudkeep_domain::{Clock, OrgId};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row, Transaction};

pub use access::{
    ApiToken, Authenticated, Credential, LoginCandidate, NewOrganisation, NewUser, Organisation,
    User,
};
pub use alerts::{
    Alert, AlertFilter, AttemptOutcome, DELIVERY_ATTEMPTS, Delivery, DeliveryAttempt, NewAlert,
    WEBHOOK_JOB, Webhook,
};
pub use anomalies::{
    Contributor, ContributorKind, FirstUsage, Incident, IncidentFilter, Mover, Movers, NewIncident,
    UsageSeries, incident_id,
};
pub use assessments::{
    Assessment, Attach, AttachedEvidence, ChangeAfterApproval, Invitation, InvitationAccess,
    Sample, population_hash,
};
pub use audit::{AuditEntry, AuditEvent, AuditFilter, AuditProblem, AuditProblemKind, SealReport};
pub use budgets::{Budget, BudgetStatus};
pub use connections::{
    Connection, ConnectionCredential, LevelChangeCounts, NewConnection, NewSubscription,
    SubscriptionRecord,
};
pub use coverage::{
    COVERAGE_DIMENSIONS, CoverageDay, CoverageFigures, CoverageGroup, CoverageQuery, CoverageScope,
    Covered, MAX_REQUIRED_KEYS, MissingTag, ScopeTags, Suggestion, SuggestionSource,
    TagCoverageReport, UntaggedList, UntaggedQuery, UntaggedResource, resolve_required_keys,
};
pub use evidence::{
    ControlDay, Coverage, CoverageReport, EvidenceCounts, EvidenceFilter, EvidenceRecord,
    EvidenceSettings, Observation, SyncHealth,
};
pub use inventory::{
    InventoryCounts, InventoryWrite, ObservedResource, ResourceFilter, ResourceRecord, TagChange,
    TagCoverage, Tags,
};
pub use jobs::{Job, RETENTION_JOB, SYNC_JOB};
pub use keys::SealedCredential;
pub use logins::AttemptKey;
pub use page::{Cursor, Page, PageRequest};
pub use retention::{PurgeCounts, RetentionSettings};
pub use revisions::in_one_view;
pub use runs::{RunFilter, SyncRun};
pub use spend::{
    ADJUSTMENT, BACKFILL_MONTHS, Backfill, CostLine, DEFAULT_TRAILING_DAYS, DayTotal, ExportCursor,
    FocusRow, MeterInfo, PURCHASE, PullCounts, RECONCILIATION, SpendAnswer, SpendDay, SpendPull,
    SpendQuery, SpendSeries, USAGE, meter_key, region_display, resource_key,
};
pub use spend::{DEFAULT_SPEND_COLUMN_ROWS, SpendColumnStats};
pub use tag_edits::{NewTagEdit, TagEdit, TagEditFilter};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported store URL '{}': use sqlite://PATH or postgres://...", redact_url(.0))]
    UnsupportedUrl(String),
    #[error("cannot open the store: {0}")]
    Open(#[source] sqlx::Error),
    #[error("cannot apply the store's migrations: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// The caller asked for something that is not there (or not in its organisation).
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// A unique value is taken (an email, a name).
    #[error("{what} '{value}' already exists")]
    Conflict { what: &'static str, value: String },
    /// An Azure subscription is already held by another live connection.
    #[error("subscription {subscription} is already connected by connection {connection}")]
    AlreadyConnected {
        subscription: String,
        connection: cloudkeep_domain::ConnectionId,
    },
    /// An inventory listing would mark most of a subscription deleted; the
    /// caller reads it again and confirms (`InventoryWrite::deletions_confirmed`).
    #[error("the listing would mark {would_delete} of {live} live resources deleted")]
    MassDeletion { would_delete: u64, live: u64 },
    #[error("{0}")]
    Invalid(String),
    /// The thing is not in a state that allows it (an approved assessment
    /// changed, an assessment approved twice, a revoked invitation used).
    #[error("{0}")]
    State(String),
    #[error(transparent)]
    Crypto(#[from] cloudkeep_domain::crypto::CryptoError),
    #[error("store query failed: {0}")]
    Database(#[from] sqlx::Error),
    #[error("a stored value is malformed: {0}")]
    Corrupt(String),
    /// A write waited this long for the writes queued before it (SQLite
    /// writes one at a time) and gave up; nothing of it was written.
    #[error("the store is busy: a write waited {}s for the writes before it", .0.as_secs())]
    Busy(std::time::Duration),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The store: a pool over one of the two backends, and the clock it
/// stamps rows with.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    /// SQLite only: a connection whose commits do not wait for the disk.
    relaxed: Option<AnyPool>,
    backend: Backend,
    clock: Arc<dyn Clock>,
    /// The keys that seal the audit chain; without them (tests, tools that
    /// only read) events are chained by plain SHA-256.
    chain_keys: Option<Arc<dyn cloudkeep_domain::crypto::ChainKeys>>,
    /// Spend analyses kept per revision, shared by the store's clones.
    spend_cache: Arc<spend::SpendCache>,
    /// Spend facts in columns per organisation, shared by the store's clones.
    spend_columns: Arc<spend::SpendColumns>,
    /// Resource pages and tag coverage kept per revision (see
    /// `inventory::InventoryCache`), shared by the store's clones.
    inventory_cache: Arc<inventory::InventoryCache>,
    /// The control coverage kept per evidence revision (see
    /// `evidence::CoverageCache`), shared by the store's clones.
    coverage_cache: Arc<evidence::CoverageCache>,
    /// SQLite's log checkpoints for the relaxed writer's commits, shared by
    /// the store's clones (see `checkpoint_soon`).
    checkpoints: Arc<Checkpoints>,
    /// The queue of the process's writes (SQLite; see `write_turn`),
    /// shared by the store's clones, whatever their connections.
    writers: Arc<tokio::sync::Mutex<()>>,
}

/// How long a write waits for the writes queued before it. A write holds
/// SQLite's lock for at most a few seconds (a month of a subscription's
/// spend); a minute means something is wrong, and the caller is told.
const WRITE_TURN_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether a checkpoint task runs, and whether a commit came since it began.
#[derive(Debug, Default)]
struct Checkpoints {
    running: std::sync::atomic::AtomicBool,
    again: std::sync::atomic::AtomicBool,
}

/// A write transaction, with the process's turn to write on SQLite
/// (`Store::write_turn`), given back when it commits or is dropped.
pub(crate) struct Tx {
    tx: Transaction<'static, Any>,
    _turn: Option<WriteTurn>,
}

/// A turn to write (see `Store::write_turn`).
pub(crate) type WriteTurn = tokio::sync::OwnedMutexGuard<()>;

impl Tx {
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for Tx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.tx
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }
}

/// A write transaction that commits only with its audit event recorded
/// (`Store::audited`, `Store::begin_audited`).
pub(crate) struct AuditedTx {
    tx: Tx,
    recorded: bool,
}

/// Runs the body of an audited change: an `async` block whose `?` and
/// `return` end the block, not the caller, so that the caller still decides
/// what to commit.
pub(crate) async fn within<T>(body: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    body.await
}

impl AuditedTx {
    /// Commits if an event was recorded; otherwise keeps nothing (the
    /// change found nothing to do).
    pub(crate) async fn commit_recorded(self) -> Result<()> {
        if self.recorded {
            self.tx.commit().await?;
        }
        Ok(())
    }

    pub(crate) async fn commit(self) -> Result<()> {
        if !self.recorded {
            // A bug, not a user's error: nothing is kept.
            return Err(StoreError::Corrupt(
                "an audited change was committed without its audit event".into(),
            ));
        }
        self.tx.commit().await?;
        Ok(())
    }
}

impl std::ops::Deref for AuditedTx {
    type Target = Tx;
    fn deref(&self) -> &Tx {
        &self.tx
    }
}

impl std::ops::DerefMut for AuditedTx {
    fn deref_mut(&mut self) -> &mut Tx {
        &mut self.tx
    }
}

/// Proof that the caller acts within one organisation. Only this crate can
/// make one (see the crate's documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgScope {
    org: OrgId,
}

impl OrgScope {
    fn new(org: OrgId) -> Self {
        OrgScope { org }
    }

    pub fn org(&self) -> OrgId {
        self.org
    }

    fn id(&self) -> String {
        self.org.to_string()
    }
}

/// A URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:[redacted]{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

pub(crate) fn parse<T: FromStr>(row: &AnyRow, column: &str) -> Result<T> {
    let raw: String = row.try_get(column)?;
    raw.parse()
        .map_err(|_| StoreError::Corrupt(format!("{column} = '{raw}'")))
}

impl Store {
    /// Opens (creating an SQLite file if needed) and migrates the store.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        if backend == Backend::Sqlite {
            if let Some(dir) = std::path::Path::new(
                url.trim_start_matches("sqlite://")
                    .split('?')
                    .next()
                    .unwrap_or(""),
            )
            .parent()
            {
                if !dir.as_os_str().is_empty() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| StoreError::Open(sqlx::Error::Io(e)))?;
                }
            }
        }
        let pool = pool_options(
            backend,
            match backend {
                Backend::Sqlite => SQLITE_CONNECTIONS,
                Backend::Postgres => 10,
            },
            true,
        )
        .connect(&url)
        .await
        .map_err(StoreError::Open)?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(StoreError::Open)?;
        }
        // Writes of what every sync reads again from Azure (an inventory
        // pass) commit without waiting for the disk (see `begin_relaxed_write`).
        let relaxed = match backend {
            Backend::Sqlite => Some(
                pool_options(backend, 1, false)
                    .connect(&url)
                    .await
                    .map_err(StoreError::Open)?,
            ),
            Backend::Postgres => None,
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await.map_err(StoreError::Migrate)?;
        Ok(Store {
            pool,
            relaxed,
            backend,
            clock: cloudkeep_domain::clock::system(),
            chain_keys: None,
            spend_cache: Arc::default(),
            spend_columns: Arc::default(),
            inventory_cache: Arc::default(),
            coverage_cache: Arc::default(),
            checkpoints: Arc::default(),
            writers: Arc::default(),
        })
    }

    /// The same store, sealing new audit events with `keys` and verifying
    /// the chain with them.
    pub fn with_chain_keys(mut self, keys: Arc<dyn cloudkeep_domain::crypto::ChainKeys>) -> Store {
        self.chain_keys = Some(keys);
        self
    }

    /// The same store, stamping rows with `clock` (shared with the sync
    /// engine and the scheduler, so tests move one clock for all).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Store {
        self.clock = clock;
        self
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The one way to make an audited change: begins a write transaction
    /// and appends `entry` to the organisation's audit chain (which also
    /// serialises the organisation's audited changes). Make the change
    /// through the answer, then `commit` it: the change and its event are
    /// kept together or not at all.
    pub(crate) async fn audited(&self, scope: &OrgScope, entry: AuditEntry) -> Result<AuditedTx> {
        let mut tx = self.begin_audited(scope).await?;
        self.record(&mut tx, scope, &entry).await?;
        Ok(tx)
    }

    /// An audited change whose event depends on what it does: the chain is
    /// locked first (as in `audited`, so audited changes always lock in the
    /// same order); `record` the event before `commit`, which refuses
    /// otherwise. Dropped uncommitted, nothing of it is kept.
    pub(crate) async fn begin_audited(&self, scope: &OrgScope) -> Result<AuditedTx> {
        let mut tx = self.begin_write().await?;
        audit::lock_chain(&mut tx, scope).await?;
        Ok(AuditedTx {
            tx,
            recorded: false,
        })
    }

    /// Appends an audited change's event.
    pub(crate) async fn record(
        &self,
        tx: &mut AuditedTx,
        scope: &OrgScope,
        entry: &AuditEntry,
    ) -> Result<()> {
        self.append(&mut tx.tx, scope, entry).await?;
        tx.recorded = true;
        Ok(())
    }

    /// Begins a transaction that writes. On SQLite it takes the write lock
    /// up front (`BEGIN IMMEDIATE`): a deferred transaction that reads and
    /// then writes fails at once with "database is locked" when another
    /// connection wrote in between (the scheduler's heartbeat during a
    /// sync, say), since waiting cannot refresh its snapshot.
    ///
    /// Its commit is durable: SQLite syncs its log to disk.
    pub(crate) async fn begin_write(&self) -> Result<Tx> {
        let turn = self.write_turn().await?;
        let tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        Ok(Tx { tx, _turn: turn })
    }

    /// The process's turn to write, on SQLite, which has one writer: the
    /// writes wait here in the order they came, each for the ones before
    /// it. Left to SQLite's lock, a waiting write polls it (every 100 ms
    /// after the first few tries) and the lock goes to whichever asks
    /// first after a commit: during a large sync, a spend step's write
    /// lost for ten seconds to the other subscriptions' writes and failed
    /// with "database is locked" (measured on the `large` preset). Taken
    /// before a connection, so waiting writes hold none (see
    /// `SQLITE_CONNECTIONS`). Every write holds one: a transaction from
    /// `begin_write` or `begin_relaxed_write`, a single statement through
    /// `execute_write` (or `fetch_optional_write`), statements that belong
    /// together by taking it first. On PostgreSQL, `None`: it has many
    /// writers.
    pub(crate) async fn write_turn(&self) -> Result<Option<WriteTurn>> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        tokio::time::timeout(WRITE_TURN_WAIT, self.writers.clone().lock_owned())
            .await
            .map(Some)
            .map_err(|_| StoreError::Busy(WRITE_TURN_WAIT))
    }

    /// A write transaction for what cloudkeep reads again from Azure at
    /// every sync (an inventory pass), whose commit does not wait for the
    /// disk: SQLite (in WAL mode, `synchronous = NORMAL`) keeps it across a
    /// crash of the process, and the next durable commit (anything audited,
    /// the run's end) makes it durable too; only a power loss between the
    /// two could roll it back, which the next sync repairs. Saves a disk
    /// sync per subscription per sync. PostgreSQL commits as configured.
    pub(crate) async fn begin_relaxed_write(&self) -> Result<Tx> {
        match &self.relaxed {
            Some(pool) => {
                let turn = self.write_turn().await?;
                let tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                Ok(Tx { tx, _turn: turn })
            }
            None => self.begin_write().await,
        }
    }

    /// Commits a `begin_relaxed_write` transaction. On SQLite the relaxed
    /// writer does not checkpoint the log itself (`wal_autocheckpoint =
    /// 0`): a checkpoint copies the pages it wrote into the database file
    /// and syncs both, which on the writer held the next subscription's
    /// inventory up (about a sixth of a first sync, measured). A task on
    /// another connection checkpoints instead, beside the next write.
    pub(crate) async fn commit_relaxed(&self, tx: Tx) -> Result<()> {
        tx.commit().await?;
        self.checkpoint_soon();
        Ok(())
    }

    /// Runs one writing statement on the pool in its turn (see
    /// `write_turn`): how a write of a single statement is made.
    pub(crate) async fn execute_write<'q>(
        &self,
        statement: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<sqlx::any::AnyQueryResult> {
        let _turn = self.write_turn().await?;
        Ok(statement.execute(&self.pool).await?)
    }

    /// The same for a statement that answers a row (`RETURNING`).
    pub(crate) async fn fetch_optional_write<'q>(
        &self,
        statement: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<Option<AnyRow>> {
        let _turn = self.write_turn().await?;
        Ok(statement.fetch_optional(&self.pool).await?)
    }

    /// Runs one statement of what a run writes for the people watching it
    /// (its progress, its heartbeat) in its turn, through the relaxed
    /// writer: its commit does not wait for the disk (each progress write
    /// did, between the subscriptions' inventories), and the run's end is
    /// durable (see `begin_relaxed_write`).
    pub(crate) async fn execute_relaxed<'q>(
        &self,
        statement: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments<'q>>,
    ) -> Result<()> {
        let _turn = self.write_turn().await?;
        statement
            .execute(self.relaxed.as_ref().unwrap_or(&self.pool))
            .await?;
        self.checkpoint_soon();
        Ok(())
    }

    /// Starts a passive checkpoint on one of the pool's connections unless
    /// one is running, in which case that one runs once more when done: a
    /// commit made during a checkpoint is in the next.
    fn checkpoint_soon(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.relaxed.is_none() {
            return;
        }
        let cp = self.checkpoints.clone();
        cp.again.store(true, SeqCst);
        if cp.running.swap(true, SeqCst) {
            return;
        }
        let pool = self.pool.clone();
        tokio::spawn(async move {
            loop {
                while cp.again.swap(false, SeqCst) {
                    // PASSIVE copies what no reader still needs and waits
                    // for nobody; what it leaves, the next one copies.
                    if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                        .execute(&pool)
                        .await
                    {
                        tracing::warn!(error = %e, "could not checkpoint the store's log");
                    }
                }
                cp.running.store(false, SeqCst);
                // A commit between the last check and the flag's clearing
                // is checkpointed here, unless another task took over.
                if !cp.again.load(SeqCst) || cp.running.swap(true, SeqCst) {
                    break;
                }
            }
        });
    }

    /// Brings the query planner's statistics up to date after a large
    /// change (a first inventory of thousands of resources), so list
    /// queries keep their index plans: `ANALYZE` on PostgreSQL, `PRAGMA
    /// optimize` on SQLite (which analyses only what needs it).
    pub async fn refresh_statistics(&self) -> Result<()> {
        let sql = match self.backend {
            Backend::Sqlite => "PRAGMA optimize",
            Backend::Postgres => "ANALYZE resources, resource_tags, tag_history",
        };
        // SQLite writes what it learns into its statistics table.
        self.execute_write(sqlx::query(sql)).await?;
        Ok(())
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// A scope for every organisation, for the operator's commands and the
    /// scheduler's per-organisation loop.
    pub async fn operator_scopes(&self) -> Result<Vec<OrgScope>> {
        let rows = sqlx::query("SELECT org_id FROM organisations ORDER BY created_at, org_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| parse::<OrgId>(r, "org_id").map(OrgScope::new))
            .collect()
    }

    /// A scope for one organisation named by the operator (`--org ID`).
    pub async fn operator_scope(&self, org: OrgId) -> Result<OrgScope> {
        let found = sqlx::query("SELECT org_id FROM organisations WHERE org_id = $1")
            .bind(org.to_string())
            .fetch_optional(&self.pool)
            .await?;
        found
            .map(|_| OrgScope::new(org))
            .ok_or(StoreError::NotFound {
                what: "organisation",
            })
    }

    /// The same store (caches and clock shared) on SQLite connections of
    /// its own, opened now and later by the calling runtime's threads.
    /// SQLite works on a thread per connection, which starts with the
    /// priority of the thread that opened it: a sync on its lower-priority
    /// runtime (`cloudkeep_sync::Background`) takes these, so its writes
    /// run at its priority and the server's reads never land on one of its
    /// threads. On PostgreSQL the database's own processes do the work and
    /// the store is shared as it is.
    pub async fn with_own_connections(&self, connections: u32) -> Result<Store> {
        if self.backend != Backend::Sqlite {
            return Ok(self.clone());
        }
        let options = (*self.pool.connect_options()).clone();
        let pool = pool_options(self.backend, connections, true)
            .connect_with(options.clone())
            .await
            .map_err(StoreError::Open)?;
        let relaxed = pool_options(self.backend, 1, false)
            .connect_with(options)
            .await
            .map_err(StoreError::Open)?;
        Ok(Store {
            pool,
            relaxed: Some(relaxed),
            ..self.clone()
        })
    }

    pub async fn close(&self) {
        if let Some(relaxed) = &self.relaxed {
            relaxed.close().await;
        }
        self.pool.close().await;
    }
}

/// The SQLite pool's connections. SQLite has one writer and readers that
/// do not wait for it (WAL), but a writer waiting for the lock (busy
/// timeout) holds its pool connection: a sync has up to four subscriptions
/// writing at once, its heartbeat and the scheduler's besides, and with
/// two connections they took both, so every read of every page queued for
/// seconds behind them (`cloudkeep bench load`). Each connection is a
/// thread of sqlx's with its own page cache (2 MB at most) and allocator
/// arena, which is what more of them cost.
const SQLITE_CONNECTIONS: u32 = 8;

/// How long a pooled SQLite connection may sit idle and still be handed
/// out without a ping.
const IDLE_BEFORE_PING: std::time::Duration = std::time::Duration::from_secs(10);

/// How the store's pools connect: SQLite's wait for each other's writes,
/// check foreign keys, and sync each commit to disk (`durable`) or leave it
/// to the next one that does.
fn pool_options(backend: Backend, connections: u32, durable: bool) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(connections)
        // sqlx pings every connection it hands out: on SQLite a round trip
        // to the worker thread per query, a third of a dashboard's cost.
        // Only a SQLite connection idle for a while is checked first.
        .test_before_acquire(false)
        .before_acquire(move |conn, meta| {
            Box::pin(async move {
                // A PostgreSQL server may have restarted since the last
                // query on any connection: pinged every time (a local
                // round trip), so no request meets a dropped connection.
                if backend == Backend::Postgres || meta.idle_for >= IDLE_BEFORE_PING {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // Concurrent writers wait for each other instead of failing.
                    sqlx::query("PRAGMA busy_timeout = 10000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys = ON")
                        .execute(&mut *conn)
                        .await?;
                    let sync = if durable { "FULL" } else { "NORMAL" };
                    sqlx::query(&format!("PRAGMA synchronous = {sync}"))
                        .execute(&mut *conn)
                        .await?;
                    if !durable {
                        // Checkpointed beside it (`Store::commit_relaxed`).
                        // A first inventory's transaction of thousands of
                        // rows keeps its pages in an 8 MB cache instead of
                        // spilling them to the log before its commit
                        // writes them again; and each multi-row insert
                        // copies the pages it touches into a statement
                        // journal first, in memory, not a temporary file.
                        // (Measured: the three were a third of the
                        // writer's time.)
                        for pragma in [
                            "PRAGMA wal_autocheckpoint = 0",
                            "PRAGMA cache_size = -8000",
                            "PRAGMA temp_store = MEMORY",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                }
                Ok(())
            })
        })
}

/// Maps a unique-constraint violation to a conflict naming the value.
pub(crate) fn conflict(e: sqlx::Error, what: &'static str, value: &str) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict {
            what,
            value: value.to_string(),
        },
        _ => StoreError::Database(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudkeep_domain::SecretString;
    use cloudkeep_domain::password::hash_password;

    async fn organisations(store: &Store) -> i64 {
        sqlx::query("SELECT count(*) FROM organisations")
            .fetch_one(&store.pool)
            .await
            .expect("count")
            .get(0)
    }

    /// A write that waits out its turn behind another (SQLite writes one
    /// at a time) gives up saying so, and leaves nothing of itself; once
    /// the turn is free, the same write goes through. Only SQLite takes
    /// turns (PostgreSQL has many writers).
    #[tokio::test]
    async fn a_write_kept_waiting_answers_busy_and_writes_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&format!("sqlite://{}", dir.path().join("ck.db").display()))
            .await
            .expect("open");
        let new = || NewOrganisation {
            name: "Acme".into(),
            owner_email: "owner@example.com".into(),
            owner_name: "Owner".into(),
            owner_password_hash: hash_password(&SecretString::new("correct horse battery"))
                .expect("hash"),
            actor: "system:test".into(),
        };
        let new_org = new();

        let held = store.write_turn().await.expect("turn");
        // No database work happens while time is paused: the write's wait
        // for its turn comes before its connection, and paused time runs
        // the wait's timer out at once when nothing else can run.
        tokio::time::pause();
        let waited = store.create_organisation(new_org).await;
        tokio::time::resume();
        match waited {
            Err(e @ StoreError::Busy(wait)) => {
                assert_eq!(wait, WRITE_TURN_WAIT);
                assert_eq!(
                    e.to_string(),
                    "the store is busy: a write waited 60s for the writes before it"
                );
            }
            other => panic!("expected busy, got {other:?}"),
        }
        assert_eq!(
            organisations(&store).await,
            0,
            "the refused write wrote nothing"
        );

        drop(held);
        store
            .create_organisation(new())
            .await
            .expect("created once the turn is free");
        assert_eq!(organisations(&store).await, 1);
        store.close().await;
    }
}
