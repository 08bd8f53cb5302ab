//! A fresh store on each backend. PostgreSQL tests run in a schema of their
//! own, dropped when the test is done.

use std::sync::Arc;

use cloudkeep_domain::Clock;
use cloudkeep_store::Store;

pub const POSTGRES_VAR: &str = "CLOUDKEEP_TEST_POSTGRES_URL";

/// A store for one test, and what keeps it alive.
pub struct TestStore {
    pub store: Store,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    schema: Option<PgSchema>,
}

impl TestStore {
    /// The same store on `clock` (see `Store::with_clock`).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> TestStore {
        self.store = self.store.with_clock(clock);
        self
    }

    /// Drops the PostgreSQL schema (nothing for SQLite, whose directory goes
    /// with `self`).
    pub async fn cleanup(self) {
        self.store.close().await;
        Cleanup::of(&self).run().await;
    }
}

pub async fn sqlite_store() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("cloudkeep.db").display());
    TestStore {
        store: Store::open(&url).await.expect("sqlite store"),
        url,
        _dir: Some(dir),
        schema: None,
    }
}

/// A schema of a test's own in the database `CLOUDKEEP_TEST_POSTGRES_URL`
/// names, for a store in this process or in child processes (`url`).
#[derive(Debug, Clone)]
pub struct PgSchema {
    base: String,
    name: String,
    /// A PostgreSQL URL whose connections use the schema.
    pub url: String,
}

impl PgSchema {
    /// A fresh schema, or `None` when PostgreSQL is not configured (outside
    /// CI; in CI that fails).
    pub async fn create() -> Option<PgSchema> {
        let base = crate::required(POSTGRES_VAR, "the PostgreSQL half of this test")?;
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        admin(&base, &format!("CREATE SCHEMA {name}")).await;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{name}");
        Some(PgSchema { base, name, url })
    }

    /// Drops the schema and everything in it.
    pub async fn remove(self) {
        admin(
            &self.base,
            &format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        )
        .await;
    }
}

async fn admin(base: &str, sql: &str) {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(base).await.expect("postgres");
    sqlx::query(sql).execute(&mut c).await.expect(sql);
}

/// A store in a fresh schema, or `None` when PostgreSQL is not configured
/// (outside CI; in CI that fails).
pub async fn postgres_store() -> Option<TestStore> {
    let schema = PgSchema::create().await?;
    Some(TestStore {
        store: Store::open(&schema.url).await.expect("postgres store"),
        url: schema.url.clone(),
        _dir: None,
        schema: Some(schema),
    })
}

/// Runs `async fn $name(TestStore)` as two tests, `$name::sqlite` and
/// `$name::postgres`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::sqlite_store().await).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(store) = $crate::postgres_store().await {
                    let cleanup = $crate::stores::Cleanup::of(&store);
                    super::$name(store).await;
                    cleanup.run().await;
                }
            }
        }
    };
}

/// Drops a test's schema after the test consumed its store.
pub struct Cleanup(Option<PgSchema>);

impl Cleanup {
    pub fn of(store: &TestStore) -> Cleanup {
        Cleanup(store.schema.clone())
    }

    pub async fn run(self) {
        if let Some(schema) = self.0 {
            schema.remove().await;
        }
    }
}
