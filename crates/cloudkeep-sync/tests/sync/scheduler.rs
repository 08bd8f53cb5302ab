//! The scheduler against the simulator: due connections sync once per
//! cadence, two schedulers on one store split the work without running a
//! job twice, and a job whose holder died is taken over when its lease ends.
//! Each test runs on SQLite, and on PostgreSQL when
//! `CLOUDKEEP_TEST_POSTGRES_URL` is set (`cloudkeep_testkit::both_backends!`).

use std::sync::Arc;

use chrono::Duration;
use cloudkeep_domain::crypto::LocalKeyFile;
use cloudkeep_domain::password::hash_password;
use cloudkeep_domain::{
    Clock, ConnectionId, ManualClock, RunStatus, SecretString, SyncLevel, SyncTrigger,
};
use cloudkeep_store::{
    ConnectionCredential, NewConnection, NewOrganisation, NewSubscription, OrgScope, PageRequest,
    RunFilter, Store, SyncRun,
};
use cloudkeep_sync::SyncDeps;
use cloudkeep_sync::scheduler::{Scheduler, SchedulerConfig};
use cloudkeep_testkit::{TestSim, TestStore, both_backends};
use serde_json::json;

struct Env {
    deps: SyncDeps,
    /// The clock of the store, and so of the sync engine and the scheduler.
    clock: ManualClock,
    sim: TestSim,
    _store: TestStore,
    _keys: tempfile::TempDir,
}

/// The simulator, and the test's store on a clock the test moves.
async fn env(store: TestStore) -> Env {
    let clock = ManualClock::starting_now();
    let store = store.with_clock(Arc::new(clock.clone()));
    let sim = TestSim::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let keys = LocalKeyFile::open_or_create(&dir.path().join("master.key")).expect("keys");
    Env {
        deps: SyncDeps {
            store: store.store.clone(),
            azure: sim.azure(),
            keys: Arc::new(keys),
            operator: None,
            background: cloudkeep_sync::Background::inline(),
        },
        clock,
        sim,
        _store: store,
        _keys: dir,
    }
}

/// An organisation with `n` connections to the simulated tenant, each of
/// its own subscription (a subscription has one live connection per
/// organisation), with inventory off so a sync is quick: `no_resources`
/// reads nothing but a token.
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
    let scenario = &env.sim.scenario;
    let sp = scenario.sp("collector");
    let subscriptions = scenario.subscription_ids();
    assert!(
        n <= subscriptions.len(),
        "the scenario has {} subscriptions, not {n}",
        subscriptions.len()
    );
    let mut ids = Vec::new();
    for (i, subscription) in subscriptions.into_iter().take(n).enumerate() {
        let id = ConnectionId::new();
        let credential = store
            .seal_credential(&scope, env.deps.keys.as_ref(), id, &sp.secret())
            .await
            .expect("seal");
        store
            .create_connection(
                &scope,
                NewConnection {
                    id,
                    name: format!("c{i}"),
                    tenant_id: scenario.tenant().tenant_id.clone(),
                    client_id: sp.client_id.clone(),
                    principal_id: sp.object_id.clone(),
                    credential: ConnectionCredential::ClientSecret(credential),
                    cadence_secs: 86_400,
                    stale_after_secs: 172_800,
                    subscriptions: vec![NewSubscription {
                        azure_id: subscription,
                        display_name: "s".into(),
                        sync_level: SyncLevel::NoResources,
                        permissions: Default::default(),
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

fn scheduler(env: &Env, worker: &str) -> Scheduler {
    let config = SchedulerConfig {
        worker_id: worker.into(),
        lease: Duration::seconds(60),
        ..Default::default()
    };
    Scheduler::new(env.deps.clone(), config)
}

/// Runs, newest first; only `connection`'s when given.
async fn runs(store: &Store, scope: &OrgScope, connection: Option<ConnectionId>) -> Vec<SyncRun> {
    store
        .sync_runs(
            scope,
            &RunFilter {
                connection,
                ..Default::default()
            },
            &PageRequest::first(10),
        )
        .await
        .expect("runs")
        .items
}

both_backends!(due_connections_sync_once_per_cadence);
async fn due_connections_sync_once_per_cadence(store: TestStore) {
    let env = env(store).await;
    let (a, a_conns) = org_with_connections(&env, 1).await;
    let (b, _) = org_with_connections(&env, 1).await;
    // Connections are due as soon as they exist.
    let s = scheduler(&env, "w1");
    let tick = s.tick().await.expect("tick");
    assert_eq!((tick.queued, tick.ran), (2, 2), "{tick:?}");
    let again = s.tick().await.expect("tick");
    assert_eq!(
        (again.queued, again.ran),
        (0, 0),
        "nothing is due until the cadence passes"
    );
    let a_runs = runs(&env.deps.store, &a, Some(a_conns[0])).await;
    assert_eq!(a_runs.len(), 1);
    assert_eq!(a_runs[0].trigger, SyncTrigger::Schedule);
    assert_eq!(a_runs[0].status, RunStatus::Succeeded);
    // A cadence later (plus at most a twentieth of it in jitter).
    env.clock.advance(Duration::days(1) + Duration::minutes(75));
    let later = s.tick().await.expect("tick");
    assert_eq!(later.ran, 2, "the next cadence runs both again");
    assert_eq!(runs(&env.deps.store, &b, None).await.len(), 2);
}

both_backends!(two_schedulers_never_run_a_job_twice);
async fn two_schedulers_never_run_a_job_twice(store: TestStore) {
    let env = env(store).await;
    let mut all = Vec::new();
    for _ in 0..3 {
        all.push(org_with_connections(&env, 3).await);
    }
    let (one, two) = (scheduler(&env, "w1"), scheduler(&env, "w2"));
    let (t1, t2) = tokio::join!(one.tick(), two.tick());
    let (t1, t2) = (t1.expect("tick"), t2.expect("tick"));
    assert_eq!(t1.ran + t2.ran, 9, "{t1:?} {t2:?}");
    for (scope, conns) in &all {
        for c in conns {
            assert_eq!(
                runs(&env.deps.store, scope, Some(*c)).await.len(),
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

both_backends!(a_dead_workers_job_is_taken_over_after_its_lease);
async fn a_dead_workers_job_is_taken_over_after_its_lease(store: TestStore) {
    let env = env(store).await;
    let clock = &env.clock;
    let (scope, conns) = org_with_connections(&env, 1).await;
    let db = &env.deps.store;
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
        .begin_sync_run(
            &scope,
            conns[0],
            SyncTrigger::Schedule,
            clock.now() - Duration::hours(2),
        )
        .await
        .expect("run");
    let survivor = scheduler(&env, "alive");
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
    let after = runs(db, &scope, Some(conns[0])).await;
    assert_eq!(after.len(), 2);
    let dead = after
        .iter()
        .find(|r| r.id == dead_run.id)
        .expect("dead run");
    assert_eq!(
        dead.status,
        RunStatus::Interrupted,
        "the dead worker's run is marked"
    );
    assert!(after.iter().any(|r| r.status == RunStatus::Succeeded));

    // A cadence later, a manual sync is under way when the job comes due:
    // the job is done without a second run, and the manual run is not the
    // dead worker's to mark.
    clock.advance(Duration::days(1) + Duration::minutes(75));
    let manual_run = db
        .begin_sync_run(
            &scope,
            conns[0],
            SyncTrigger::Manual,
            clock.now() - Duration::hours(2),
        )
        .await
        .expect("manual run");
    let tick = survivor.tick().await.expect("tick");
    assert_eq!((tick.queued, tick.ran), (1, 0), "{tick:?}");
    let after = runs(db, &scope, Some(conns[0])).await;
    assert_eq!(after.len(), 3, "no scheduled run beside the manual one");
    let manual = after
        .iter()
        .find(|r| r.id == manual_run.id)
        .expect("manual run");
    assert_eq!(manual.status, RunStatus::Running);
    assert_eq!(
        db.job_counts(&scope).await.expect("jobs"),
        vec![("done".to_string(), 2)]
    );
}

both_backends!(a_killed_run_reads_interrupted_within_a_minute);
async fn a_killed_run_reads_interrupted_within_a_minute(store: TestStore) {
    let env = env(store).await;
    let clock = &env.clock;
    let (scope, conns) = org_with_connections(&env, 1).await;
    let db = &env.deps.store;
    // A manual sync whose process is killed: it never beats again.
    let killed = db
        .begin_sync_run(
            &scope,
            conns[0],
            SyncTrigger::Manual,
            clock.now() - Duration::hours(2),
        )
        .await
        .expect("run");
    let s = scheduler(&env, "w1");
    clock.advance(Duration::seconds(10));
    assert_eq!(s.tick().await.expect("tick").interrupted, 0, "still alive");
    // Silent for longer than a run's heartbeat allows, by the next poll.
    clock.advance(Duration::seconds(25));
    let tick = s.tick().await.expect("tick");
    assert_eq!(tick.interrupted, 1, "{tick:?}");
    let run = runs(db, &scope, Some(conns[0]))
        .await
        .into_iter()
        .find(|r| r.id == killed.id)
        .expect("run");
    assert_eq!(run.status, RunStatus::Interrupted);
}

both_backends!(a_worker_that_loses_its_lease_stops_its_sync);
async fn a_worker_that_loses_its_lease_stops_its_sync(store: TestStore) {
    let env = env(store).await;
    let clock = &env.clock;
    let (scope, conns) = org_with_connections(&env, 1).await;
    // Every Azure call is slow, so the sync runs well past the moment its
    // lease is lost (and would finish, succeeded, if it were not stopped).
    env.sim.faults(json!({"latency_ms": 8000})).await;
    let slow = Scheduler::new(
        env.deps.clone(),
        SchedulerConfig {
            worker_id: "slow".into(),
            lease: Duration::seconds(3),
            ..Default::default()
        },
    );
    let db = env.deps.store.clone();
    let thief = async {
        // Once the slow worker holds the job, its lease runs out (its
        // heartbeats stalled, say) and another worker claims the job.
        cloudkeep_testkit::eventually(
            std::time::Duration::from_secs(30),
            "the job runs",
            || async {
                let jobs = db.job_counts(&scope).await.expect("jobs");
                if jobs == vec![("running".to_string(), 1)] {
                    Ok(())
                } else {
                    Err(format!("{jobs:?}"))
                }
            },
        )
        .await;
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
    let after = runs(&db, &scope, Some(conns[0])).await;
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0].status,
        RunStatus::Running,
        "the slow worker stopped without finishing the run; the new holder marks it interrupted"
    );
    assert!(
        !db.complete_job(&scope, stolen.expect("job").id, "slow", clock.now())
            .await
            .expect("complete"),
        "and the job is the thief's"
    );
}

both_backends!(an_interrupted_retention_purge_is_carried_on_after_its_lease);
async fn an_interrupted_retention_purge_is_carried_on_after_its_lease(store: TestStore) {
    let env = env(store).await;
    let clock = &env.clock;
    let db = &env.deps.store;
    let (scope, conns) = org_with_connections(&env, 1).await;
    let tick = scheduler(&env, "a").tick().await.expect("tick");
    assert_eq!(tick.ran, 1, "{tick:?}");
    // Revoked: no more syncs; its evidence and runs wait out the window.
    db.revoke_connection(&scope, conns[0], "system:test")
        .await
        .expect("revoke");
    db.set_retention_days(&scope, 30, "system:test")
        .await
        .expect("window");
    let of_connection = cloudkeep_store::EvidenceFilter {
        connection: Some(conns[0]),
        ..Default::default()
    };
    let evidence = db
        .evidence_count(&scope, &of_connection)
        .await
        .expect("count");
    assert!(evidence > 1, "the sync observed evidence");
    assert_eq!(runs(db, &scope, None).await.len(), 1);
    clock.advance(Duration::days(29));
    let tick = scheduler(&env, "b").tick().await.expect("tick");
    assert_eq!(tick.purged, 0, "inside the window: {tick:?}");

    // Past it, a worker claims the purge, does one batch and dies.
    clock.advance(Duration::days(2));
    assert!(
        db.enqueue_retention(&scope, clock.now())
            .await
            .expect("queue")
    );
    let job = db
        .claim_job(&scope, "dead", clock.now(), Duration::seconds(60))
        .await
        .expect("claim")
        .expect("the retention job");
    assert_eq!(job.kind, cloudkeep_store::RETENTION_JOB);
    let first = db
        .purge_retention_batch(&scope, 1, "system:retention")
        .await
        .expect("one batch");
    assert_eq!((first.evidence, first.sync_runs), (1, 1));
    // While its lease holds, nobody else purges.
    let tick = scheduler(&env, "b").tick().await.expect("tick");
    assert_eq!(tick.purged, 0, "{tick:?}");
    // After it, another worker carries on to the end.
    clock.advance(Duration::seconds(61));
    let tick = scheduler(&env, "b").tick().await.expect("tick");
    assert_eq!(tick.purged, evidence - 1, "{tick:?}");
    assert_eq!(
        db.evidence_count(&scope, &of_connection)
            .await
            .expect("count"),
        0
    );
    assert!(runs(db, &scope, None).await.is_empty());
    assert_eq!(
        db.job_counts(&scope).await.expect("jobs"),
        vec![("done".to_string(), 2)],
        "the sync and the purge"
    );
    let purged: u64 = db
        .audit_events(
            &scope,
            &cloudkeep_store::AuditFilter {
                action: Some("retention.purged".into()),
                ..Default::default()
            },
            &PageRequest::first(100),
        )
        .await
        .expect("events")
        .items
        .iter()
        .map(|e| e.details["evidence"].as_u64().expect("count"))
        .sum();
    assert_eq!(purged, evidence, "every row counted once in the audit log");
}
