//! The scheduler against the simulator: due connections sync once per
//! cadence, two schedulers on one store split the work without running a
//! job twice, and a job whose holder died is taken over when its lease ends.
//! Each test runs on SQLite, and on PostgreSQL when
//! `CLOUDKEEP_TEST_POSTGRES_URL` is set.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use cloudkeep_azure::{AzureClient, AzureConfig};
use cloudkeep_domain::crypto::LocalKeyFile;
use cloudkeep_domain::password::hash_password;
use cloudkeep_domain::{ConnectionId, SecretString, SyncLevel};
use cloudkeep_store::{NewConnection, NewOrganisation, NewSubscription, OrgScope, Store};
use cloudkeep_sync::SyncDeps;
use cloudkeep_sync::scheduler::{Clock, Scheduler, SchedulerConfig};
use serde_json::{Value, json};

struct ManualClock(Mutex<DateTime<Utc>>);

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ManualClock {
    fn advance(&self, d: Duration) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) += d;
    }
}

struct Env {
    deps: SyncDeps,
    scenario: Value,
    _sim: cloudkeep_sim::RunningSim,
    _dir: tempfile::TempDir,
}

async fn env(store: Store) -> Env {
    let dir = tempfile::tempdir().expect("dir");
    let sim = cloudkeep_sim::spawn(cloudkeep_sim::SimConfig {
        cert_dir: dir.path().join("sim"),
        throttle: false,
        ..Default::default()
    })
    .await
    .expect("sim");
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(sim.ca_pem.as_bytes()).expect("ca"))
        .build()
        .expect("client");
    let scenario: Value = http
        .get(format!("{}/_sim/scenario", sim.url))
        .send()
        .await
        .expect("scenario")
        .json()
        .await
        .expect("json");
    let azure = AzureClient::new(AzureConfig {
        authority_host: sim.url.clone(),
        arm_endpoint: sim.url.clone(),
        extra_ca_pem: Some(sim.ca_pem.clone()),
        timeout: std::time::Duration::from_secs(10),
    })
    .expect("azure");
    let keys = LocalKeyFile::open_or_create(&dir.path().join("master.key")).expect("keys");
    Env {
        deps: SyncDeps {
            store,
            azure,
            keys: Arc::new(keys),
            operator: None,
        },
        scenario,
        _sim: sim,
        _dir: dir,
    }
}

async fn sqlite() -> (Store, Option<tempfile::TempDir>) {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(&format!("sqlite://{}", dir.path().join("ck.db").display()))
        .await
        .expect("store");
    (store, Some(dir))
}

/// Drops a test's PostgreSQL schema once the test is done with it.
struct Cleanup {
    base: String,
    schema: String,
}

impl Cleanup {
    async fn run(self) {
        use sqlx::Connection;
        if let Ok(mut c) = sqlx::PgConnection::connect(&self.base).await {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
                .execute(&mut c)
                .await;
        }
    }
}

async fn postgres() -> Option<(Store, Cleanup)> {
    let Ok(base) = std::env::var("CLOUDKEEP_TEST_POSTGRES_URL") else {
        eprintln!("skipped: CLOUDKEEP_TEST_POSTGRES_URL is not set");
        return None;
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&base).await.expect("postgres");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut c)
            .await
            .expect("schema");
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    let store = Store::open(&format!("{base}{sep}options=-c%20search_path%3D{schema}"))
        .await
        .expect("store");
    Some((store, Cleanup { base, schema }))
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let (store, _dir) = super::sqlite().await;
                super::$name(store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some((store, cleanup)) = super::postgres().await {
                    super::$name(store).await;
                    cleanup.run().await;
                }
            }
        }
    };
}

/// An organisation with `n` connections to the simulated tenant (inventory off,
/// so a sync is quick: `no_resources` reads nothing but a token).
async fn org_with_connections(env: &Env, n: usize) -> (OrgScope, Vec<ConnectionId>) {
    let store = &env.deps.store;
    let (scope, _, _) = store
        .create_organisation(NewOrganisation {
            name: "Acme".into(),
            owner_email: format!("o-{}@example.com", uuid::Uuid::new_v4().simple()),
            owner_name: "O".into(),
            owner_password_hash: hash_password(&SecretString::new("correct horse battery"))
                .expect("hash"),
            actor: "system:test".into(),
        })
        .await
        .expect("org");
    let tenant = &env.scenario["tenants"][0];
    let sp = tenant["service_principals"]
        .as_array()
        .expect("sps")
        .iter()
        .find(|p| p["key"] == "collector")
        .cloned()
        .expect("collector");
    let mut ids = Vec::new();
    for i in 0..n {
        let id = ConnectionId::new();
        let credential = store
            .seal_credential(
                &scope,
                env.deps.keys.as_ref(),
                id,
                &SecretString::new(sp["client_secret"].as_str().expect("secret")),
            )
            .await
            .expect("seal");
        let sub = &tenant["subscriptions"][i % 3];
        store
            .create_connection(
                &scope,
                NewConnection {
                    id,
                    name: format!("c{i}"),
                    tenant_id: tenant["tenant_id"].as_str().expect("tid").into(),
                    client_id: sp["client_id"].as_str().expect("cid").into(),
                    principal_id: sp["object_id"].as_str().expect("oid").into(),
                    credential: cloudkeep_store::ConnectionCredential::ClientSecret(credential),
                    cadence_secs: 86_400,
                    stale_after_secs: 172_800,
                    subscriptions: vec![NewSubscription {
                        azure_id: sub["subscription_id"].as_str().expect("sub").into(),
                        display_name: "s".into(),
                        sync_level: SyncLevel::NoResources,
                        permissions: json!({}),
                    }],
                    actor: "system:test".into(),
                },
            )
            .await
            .expect("connection");
        ids.push(id);
    }
    (scope, ids)
}

fn scheduler(env: &Env, worker: &str, clock: Arc<ManualClock>) -> Scheduler {
    let config = SchedulerConfig {
        worker_id: worker.into(),
        lease: Duration::seconds(60),
        ..Default::default()
    };
    Scheduler::new(env.deps.clone(), config, clock)
}

both!(due_connections_sync_once_per_cadence);
async fn due_connections_sync_once_per_cadence(store: Store) {
    let env = env(store).await;
    let (a, a_conns) = org_with_connections(&env, 1).await;
    let (b, _) = org_with_connections(&env, 1).await;
    // Connections are due as soon as they exist.
    let clock = Arc::new(ManualClock(Mutex::new(Utc::now() + Duration::seconds(1))));
    let s = scheduler(&env, "w1", clock.clone());
    let tick = s.tick().await.expect("tick");
    assert_eq!((tick.queued, tick.ran), (2, 2), "{tick:?}");
    let again = s.tick().await.expect("tick");
    assert_eq!(
        (again.queued, again.ran),
        (0, 0),
        "nothing is due until the cadence passes"
    );
    let runs = env
        .deps
        .store
        .sync_runs(&a, Some(a_conns[0]), 10)
        .await
        .expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].trigger, "schedule");
    assert_eq!(runs[0].status, "succeeded");
    // A cadence later (plus at most a twentieth of it in jitter).
    clock.advance(Duration::days(1) + Duration::minutes(75));
    let later = s.tick().await.expect("tick");
    assert_eq!(later.ran, 2, "the next cadence runs both again");
    assert_eq!(
        env.deps
            .store
            .sync_runs(&b, None, 10)
            .await
            .expect("runs")
            .len(),
        2
    );
}

both!(two_schedulers_never_run_a_job_twice);
async fn two_schedulers_never_run_a_job_twice(store: Store) {
    let env = env(store).await;
    let mut all = Vec::new();
    for _ in 0..3 {
        all.push(org_with_connections(&env, 3).await);
    }
    let clock = Arc::new(ManualClock(Mutex::new(Utc::now() + Duration::seconds(1))));
    let (one, two) = (
        scheduler(&env, "w1", clock.clone()),
        scheduler(&env, "w2", clock.clone()),
    );
    let (t1, t2) = tokio::join!(one.tick(), two.tick());
    let (t1, t2) = (t1.expect("tick"), t2.expect("tick"));
    assert_eq!(t1.ran + t2.ran, 9, "{t1:?} {t2:?}");
    for (scope, conns) in &all {
        for c in conns {
            assert_eq!(
                env.deps
                    .store
                    .sync_runs(scope, Some(*c), 10)
                    .await
                    .expect("runs")
                    .len(),
                1,
                "each connection synced once"
            );
        }
        assert_eq!(
            env.deps.store.job_counts(scope).await.expect("jobs"),
            vec![("done".to_string(), 3)]
        );
    }
}

both!(a_dead_workers_job_is_taken_over_after_its_lease);
async fn a_dead_workers_job_is_taken_over_after_its_lease(store: Store) {
    let env = env(store).await;
    let (scope, conns) = org_with_connections(&env, 1).await;
    let clock = Arc::new(ManualClock(Mutex::new(Utc::now() + Duration::seconds(1))));
    let db = &env.deps.store;
    let long_ago = Utc::now() - Duration::hours(2);
    assert_eq!(
        db.enqueue_due_syncs(&scope, clock.now())
            .await
            .expect("enqueue"),
        1
    );
    // A worker claims the job and dies without finishing it.
    let lost = db
        .claim_job(&scope, "dead", clock.now(), Duration::seconds(60))
        .await
        .expect("claim")
        .expect("a job");
    let dead_run = db
        .begin_sync_run(&scope, conns[0], "schedule", long_ago)
        .await
        .expect("run");
    let survivor = scheduler(&env, "alive", clock.clone());
    assert_eq!(
        survivor.tick().await.expect("tick").ran,
        0,
        "a leased job is not taken while its lease runs"
    );
    clock.advance(Duration::seconds(61));
    assert_eq!(
        survivor.tick().await.expect("tick").ran,
        1,
        "an expired lease is taken over"
    );
    assert!(
        !db.complete_job(&scope, lost.id, "dead", clock.now())
            .await
            .expect("complete"),
        "the dead worker no longer holds it"
    );
    let runs = db
        .sync_runs(&scope, Some(conns[0]), 10)
        .await
        .expect("runs");
    assert_eq!(runs.len(), 2);
    let dead = runs.iter().find(|r| r.id == dead_run.id).expect("dead run");
    assert_eq!(
        dead.status, "interrupted",
        "the dead worker's run is marked"
    );
    assert!(runs.iter().any(|r| r.status == "succeeded"));

    // A cadence later, a manual sync is under way when the job comes due:
    // the job is done without a second run, and the manual run is not the
    // dead worker's to mark.
    clock.advance(Duration::days(1) + Duration::minutes(75));
    let manual_run = db
        .begin_sync_run(&scope, conns[0], "manual", long_ago)
        .await
        .expect("manual run");
    let tick = survivor.tick().await.expect("tick");
    assert_eq!((tick.queued, tick.ran), (1, 0), "{tick:?}");
    let runs = db
        .sync_runs(&scope, Some(conns[0]), 10)
        .await
        .expect("runs");
    assert_eq!(runs.len(), 3, "no scheduled run beside the manual one");
    let manual = runs
        .iter()
        .find(|r| r.id == manual_run.id)
        .expect("manual run");
    assert_eq!(manual.status, "running");
    assert_eq!(
        db.job_counts(&scope).await.expect("jobs"),
        vec![("done".to_string(), 2)]
    );
}

both!(a_worker_that_loses_its_lease_stops_its_sync);
async fn a_worker_that_loses_its_lease_stops_its_sync(store: Store) {
    let env = env(store).await;
    let (scope, conns) = org_with_connections(&env, 1).await;
    let clock = Arc::new(ManualClock(Mutex::new(Utc::now() + Duration::seconds(1))));
    // Every Azure call is slow, so the sync runs well past the moment its
    // lease is lost (and would finish, succeeded, if it were not stopped).
    reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(env._sim.ca_pem.as_bytes()).expect("ca"),
        )
        .build()
        .expect("client")
        .put(format!("{}/_sim/faults", env._sim.url))
        .json(&json!({"latency_ms": 8000}))
        .send()
        .await
        .expect("faults");
    let slow = Scheduler::new(
        env.deps.clone(),
        SchedulerConfig {
            worker_id: "slow".into(),
            lease: Duration::seconds(3),
            ..Default::default()
        },
        clock.clone(),
    );
    let db = env.deps.store.clone();
    let thief = async {
        // Once the slow worker holds the job, its lease runs out (its
        // heartbeats stalled, say) and another worker claims the job.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while db.job_counts(&scope).await.expect("jobs") != vec![("running".to_string(), 1)] {
            assert!(std::time::Instant::now() < deadline, "the job never ran");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // At a moment past the slow worker's lease, without moving the clock
        // its heartbeats read (a beat in between would renew the lease).
        db.claim_job(
            &scope,
            "thief",
            clock.now() + Duration::seconds(10),
            Duration::seconds(600),
        )
        .await
        .expect("claim")
    };
    let (tick, stolen) = tokio::join!(slow.tick(), thief);
    let tick = tick.expect("tick");
    assert!(stolen.is_some(), "the expired lease was taken");
    assert_eq!((tick.ran, tick.failed), (0, 1), "{tick:?}");
    let runs = db
        .sync_runs(&scope, Some(conns[0]), 10)
        .await
        .expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(
        runs[0].status, "running",
        "the slow worker stopped without finishing the run; the new holder marks it interrupted"
    );
    assert!(
        !db.complete_job(&scope, stolen.expect("job").id, "slow", clock.now())
            .await
            .expect("complete"),
        "and the job is the thief's"
    );
}
