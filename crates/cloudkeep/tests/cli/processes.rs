//! `cloudkeep serve` processes sharing one store: two on one PostgreSQL
//! database split the scheduler's work without running a job twice, one
//! killed in the middle of a scheduled sync hands the job to its successor
//! when its lease ends, and of three on one PostgreSQL database one is
//! killed mid-job while the others run every job once, to the end. What no API shows (which worker ran a job, its
//! lease) is read from the store's tables, as an operator would.

use std::collections::BTreeMap;
use std::time::Duration;

use cloudkeep_testkit::PgSchema;
use serde_json::{Value, json};
use sqlx::Row;

use crate::harness::tenant as harness_tenant;
use crate::harness::{Api, Serve, Sim, cli, create_org, eventually, principal, run, tenant};

#[derive(Debug, Clone)]
pub(crate) struct JobRow {
    pub connection: String,
    pub status: String,
    pub attempts: i64,
    pub owner: Option<String>,
    pub lease_until: Option<i64>,
}

impl JobRow {
    /// The process that holds or last held the job: worker ids start with it.
    fn owner_pid(&self) -> Option<u32> {
        self.owner.as_deref()?.split('-').next()?.parse().ok()
    }
}

#[derive(Debug, Clone)]
pub(crate) struct RunRow {
    pub id: String,
    pub connection: String,
    pub trigger: String,
    pub status: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

/// The store's tables, either backend.
pub(crate) struct Db(pub sqlx::AnyPool);

impl Db {
    pub async fn open(url: &str) -> Db {
        sqlx::any::install_default_drivers();
        Db(sqlx::any::AnyPoolOptions::new()
            .max_connections(2)
            .connect(url)
            .await
            .expect("store"))
    }

    pub async fn jobs(&self) -> Vec<JobRow> {
        sqlx::query("SELECT connection_id, status, attempts, lease_owner, lease_until FROM jobs ORDER BY created_at, job_id")
            .fetch_all(&self.0)
            .await
            .expect("jobs")
            .iter()
            .map(|r| JobRow {
                connection: r.get("connection_id"),
                status: r.get("status"),
                attempts: r.get("attempts"),
                owner: r.get("lease_owner"),
                lease_until: r.get("lease_until"),
            })
            .collect()
    }

    pub async fn runs(&self) -> Vec<RunRow> {
        sqlx::query("SELECT run_id, connection_id, trigger_kind, status, started_at, finished_at FROM sync_runs ORDER BY started_at, run_id")
            .fetch_all(&self.0)
            .await
            .expect("runs")
            .iter()
            .map(|r| RunRow {
                id: r.get("run_id"),
                connection: r.get("connection_id"),
                trigger: r.get("trigger_kind"),
                status: r.get("status"),
                started_at: r.get("started_at"),
                finished_at: r.get("finished_at"),
            })
            .collect()
    }

    /// `SELECT COUNT(*) FROM table WHERE org_id = $1`.
    async fn count(&self, table: &str, org: &Value) -> i64 {
        sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM {table} WHERE org_id = $1"
        ))
        .bind(org.as_str().expect("org id"))
        .fetch_one(&self.0)
        .await
        .expect("count")
        .get("n")
    }

    /// Waits until at least `count` jobs exist and every job is done;
    /// fails at once if a job is claimed a second time.
    async fn all_done(&self, count: usize) {
        eventually(
            Duration::from_secs(90),
            &format!("{count} jobs done"),
            || async {
                let jobs = self.jobs().await;
                assert!(
                    jobs.iter().all(|j| j.attempts <= 1),
                    "a job claimed twice: {jobs:?}"
                );
                if jobs.len() >= count && jobs.iter().all(|j| j.status == "done") {
                    Ok(())
                } else {
                    Err(format!("{jobs:?}"))
                }
            },
        )
        .await
    }
}

pub(crate) fn token(org: &Value) -> String {
    org["api_token"].as_str().expect("token").to_string()
}

/// A configuration file in `dir` for processes sharing one PostgreSQL
/// schema and one master key file, the scheduler polling each second
/// (`scheduler` adds settings to its section).
fn shared_config(dir: &std::path::Path, schema: &PgSchema, scheduler: &str) -> String {
    let file = dir.join("cloudkeep.toml");
    std::fs::write(
        &file,
        format!(
            "[store]\nurl = \"{}\"\n[keys]\nkey_file = \"{}\"\n[scheduler]\npoll_secs = 1\n{scheduler}",
            schema.url,
            dir.join("master.key").display()
        ),
    )
    .expect("config");
    file.to_str().expect("path").to_string()
}

/// Starts `servers` side by side and waits until each answers.
async fn start_all(servers: &mut [Serve<'_>]) {
    for s in servers.iter_mut() {
        s.spawn();
    }
    for s in servers.iter() {
        s.up().await;
    }
}

/// Two `serve` processes on one PostgreSQL database, six connections in three
/// organisations, two due periods: every connection syncs exactly once a
/// period, no job is claimed twice, and both processes run jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_on_one_database_split_the_work_and_never_run_a_job_twice() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let sim = Sim::start().await;
    let file = shared_config(dir.path(), &schema, "");
    let config = ["--config", file.as_str()];
    // Before either process starts, so that neither races the other to
    // migrate the schema or to create the key file.
    // An Azure subscription belongs to one live connection of an
    // organisation, so each organisation connects the tenant once.
    let orgs: Vec<Value> = (0..6)
        .map(|i| create_org(&format!("Org {i}"), &format!("ops{i}@example.com"), &config))
        .collect();
    let mut servers = [Serve::new(&sim, &config), Serve::new(&sim, &config)];
    start_all(&mut servers).await;
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    // Slow Azure down so that syncs overlap and both processes find work.
    sim.faults(json!({"latency_ms": 300})).await;
    let mut made = tokio::task::JoinSet::new();
    for (i, org) in orgs.iter().enumerate() {
        // Through either process: they share the store.
        let api = Api::new(&urls[i % 2], &token(org));
        let (t, sp) = (tenant(&sim).clone(), principal(&sim, "collector"));
        made.spawn(async move { api.connect(&format!("c{i}"), &t, &sp).await });
    }
    let connections = made.join_all().await;
    let db = Db::open(&schema.url).await;
    // First due period: a connection is due as soon as it exists.
    db.all_done(connections.len()).await;
    // Second: as if the cadence (an hour at the least) had passed.
    sqlx::query("UPDATE connections SET next_sync_at = last_sync_at")
        .execute(&db.0)
        .await
        .expect("due again");
    db.all_done(2 * connections.len()).await;
    let mut pids: Vec<u32> = servers.iter().filter_map(Serve::pid).collect();
    pids.sort_unstable();
    drop(servers);

    let (jobs, runs) = (db.jobs().await, db.runs().await);
    assert_eq!(jobs.len(), 2 * connections.len(), "{jobs:?}");
    assert_eq!(runs.len(), 2 * connections.len(), "{runs:?}");
    for c in &connections {
        let id = c["id"].as_str().expect("id");
        let its_jobs: Vec<&JobRow> = jobs.iter().filter(|j| j.connection == id).collect();
        assert_eq!(its_jobs.len(), 2, "one job a due period: {its_jobs:?}");
        assert!(
            its_jobs.iter().all(|j| j.attempts == 1),
            "each job claimed once, so run by one worker: {its_jobs:?}"
        );
        let its_runs: Vec<&RunRow> = runs.iter().filter(|r| r.connection == id).collect();
        assert_eq!(its_runs.len(), 2, "one sync a due period: {its_runs:?}");
        assert!(
            its_runs
                .iter()
                .all(|r| r.trigger == "schedule" && r.status == "succeeded"),
            "{its_runs:?}"
        );
        assert!(
            its_runs[0]
                .finished_at
                .is_some_and(|end| end <= its_runs[1].started_at),
            "a connection's syncs do not overlap: {its_runs:?}"
        );
    }
    let mut ran_by = BTreeMap::new();
    for j in &jobs {
        *ran_by.entry(j.owner_pid().expect("a worker")).or_insert(0) += 1;
    }
    assert_eq!(
        ran_by.keys().copied().collect::<Vec<_>>(),
        pids,
        "both processes ran jobs, and nobody else: {ran_by:?}"
    );
    // Azure saw one listing of a subscription per sync that reads it: no
    // sync ran that the store does not know of.
    let log = sim.requests(0).await;
    for sub in tenant(&sim)["subscriptions"].as_array().expect("subs") {
        let s = sub["subscription_id"].as_str().expect("sub");
        let reads = |c: &&Value| {
            c["subscriptions"].as_array().is_some_and(|subs| {
                subs.iter()
                    .any(|x| x["subscription_id"] == s && x["sync_level"] != "no_resources")
            })
        };
        let listings: Vec<&Value> = log
            .iter()
            .filter(|e| {
                e["method"] == "GET" && e["path"] == format!("/subscriptions/{s}/resources")
            })
            .collect();
        assert_eq!(
            listings.len(),
            2 * connections.iter().filter(reads).count(),
            "listings of {s}"
        );
        assert!(listings.iter().all(|e| e["status"] == 200), "{listings:?}");
    }
    // Both processes appended to the same organisations' audit chains.
    let (ok, out, err) = run(&["audit", "verify", "--config", config[1]]);
    assert!(
        ok && out.matches("chain intact").count() == orgs.len(),
        "{out}{err}"
    );
    schema.remove().await;
}

/// Every resource an organisation's inventory holds, deleted ones included,
/// through the CLI (which pages): ARM id and what cloudkeep knows of it.
pub(crate) fn inventory(url: &str, token: &str) -> Vec<(String, Value)> {
    let (ok, out, err) = cli(
        url,
        token,
        &["resources", "list", "--include-deleted", "--json"],
        None,
    );
    assert!(ok, "{err}");
    let mut all: Vec<(String, Value)> = serde_json::from_str::<Vec<Value>>(out.trim())
        .expect("json")
        .iter()
        .map(|r| {
            (
                r["azure_id"].as_str().expect("azure id").to_string(),
                json!([
                    r["name"],
                    r["type"],
                    r["location"],
                    r["resource_group"],
                    r["tags"],
                    r["deleted_at"].is_string()
                ]),
            )
        })
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

/// A `serve` process SIGKILLed in the middle of a scheduled inventory sync,
/// then restarted on the same store: the job is taken over once its lease
/// ends, the killed run is marked interrupted, and the inventory equals that
/// of a clean sync of the same data, with nothing lost or duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_mid_sync_and_restarted_finishes_the_work_without_losing_or_duplicating_anything()
 {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("path").to_string();
    let config = ["--data-dir", data_arg.as_str()];
    let org = create_org("Kill", "kill@example.com", &config);
    let sim = Sim::start().await;
    // A short lease, so that the takeover comes within the test.
    let mut server = Serve::scheduled(&sim, &config);
    let url = server.url.clone();
    // Connected with the scheduler off, so that the connection's first sync
    // is the scheduled one killed below.
    server.set_env("CLOUDKEEP_SCHEDULER", "off");
    server.start().await;
    let api = Api::new(&url, &token(&org));
    let (tenant, sp) = (harness_tenant(&sim), principal(&sim, "collector"));
    api.connect("c", tenant, &sp).await;
    server.kill();
    // Subscriptions sync side by side. One of them is slowed to ten minutes
    // a call: the others' inventories are stored and the run stays under
    // way, so the kill lands part-way however late it comes.
    let subscriptions = tenant["subscriptions"].as_array().expect("subs");
    let slow = subscriptions[subscriptions.len() - 1]["subscription_id"]
        .as_str()
        .expect("id")
        .to_string();
    sim.faults(
        json!({"latency_ms": 600_000, "latency_path": format!("/subscriptions/{slow}/resources")}),
    )
    .await;
    server.set_env("CLOUDKEEP_SCHEDULER", "on");
    server.start().await;
    let killed_run = eventually(
        Duration::from_secs(60),
        "a scheduled sync part-way",
        || async {
            let runs = api.get("/api/v1/sync-runs").await;
            let running = runs["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["trigger"] == "schedule" && r["status"] == "running");
            let stored = api.get("/api/v1/resources?limit=1").await["items"]
                .as_array()
                .map_or(0, Vec::len);
            match running.and_then(|r| r["id"].as_str()) {
                Some(run) if stored > 0 => Ok(run.to_string()),
                _ => Err(format!("runs {runs}, resources stored {stored}")),
            }
        },
    )
    .await;
    let killed_pid = server.pid();
    server.kill();

    let db = Db::open(&format!("sqlite://{}", data.join("cloudkeep.db").display())).await;
    let runs = db.runs().await;
    assert!(
        runs.iter()
            .any(|r| r.id == killed_run && r.status == "running"),
        "killed while the sync was under way: {runs:?}"
    );
    let jobs = db.jobs().await;
    assert!(
        matches!(jobs.as_slice(), [j] if j.status == "running" && j.owner_pid() == killed_pid),
        "{jobs:?}"
    );
    let lease_end = jobs[0].lease_until.expect("leased");
    let stored_when_killed = db.count("resources", &org["org_id"]).await;

    sim.faults(json!({})).await;
    server.start().await;
    let job = eventually(
        Duration::from_secs(60),
        "the job taken over and done",
        || async {
            let jobs = db.jobs().await;
            match jobs.as_slice() {
                [j] if j.status == "done" => Ok(j.clone()),
                _ => Err(format!("{jobs:?}")),
            }
        },
    )
    .await;
    assert_eq!(
        (job.attempts, job.owner_pid()),
        (2, server.pid()),
        "claimed once more, by the restarted process"
    );
    let runs = db.runs().await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    let killed = runs
        .iter()
        .find(|r| r.id == killed_run)
        .expect("killed run");
    let resumed = runs
        .iter()
        .find(|r| r.id != killed_run)
        .expect("resumed run");
    assert_eq!(killed.status, "interrupted", "{runs:?}");
    assert_eq!(
        (resumed.trigger.as_str(), resumed.status.as_str()),
        ("schedule", "succeeded")
    );
    assert!(
        resumed.started_at > lease_end,
        "taken over only once the killed process's lease ended: {runs:?}, lease until {lease_end}"
    );

    // A clean, unkilled sync of the same simulator data, in an organisation of its own.
    let clean_org = create_org("Reference", "reference@example.com", &config);
    let clean = Api::new(&url, &token(&clean_org));
    clean.connect("c", tenant, &sp).await;
    eventually(
        Duration::from_secs(60),
        "the reference's scheduled sync",
        || async {
            let runs = clean.get("/api/v1/sync-runs").await;
            let done = runs["items"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|r| r["trigger"] == "schedule" && r["status"] == "succeeded");
            if done { Ok(()) } else { Err(runs.to_string()) }
        },
    )
    .await;
    let after_kill = inventory(&url, &api.token);
    let reference = inventory(&url, &clean.token);
    let mut ids: Vec<&String> = after_kill.iter().map(|(id, _)| id).collect();
    ids.dedup();
    assert_eq!(ids.len(), after_kill.len(), "no resource twice");
    assert!(
        0 < stored_when_killed && (stored_when_killed as usize) < reference.len(),
        "the kill left part of the inventory ({stored_when_killed} of {})",
        reference.len()
    );
    assert!(
        after_kill == reference,
        "{} resources after the kill, {} in a clean sync; first difference: {:?}",
        after_kill.len(),
        reference.len(),
        after_kill.iter().zip(&reference).find(|(a, b)| a != b)
    );
    assert_eq!(
        db.count("tag_history", &org["org_id"]).await,
        db.count("tag_history", &clean_org["org_id"]).await,
        "no tag change recorded that a clean sync does not record"
    );
}

/// Three `serve` processes on one PostgreSQL database, one of them killed
/// while it holds a sync job: every job runs to the end exactly once more
/// than it was killed (the dead process's jobs are taken over once their
/// lease ends, by a survivor, and their killed runs read interrupted), no
/// other job is claimed twice, and each connection ends with one
/// successful sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_serve_processes_with_one_killed_mid_job_run_every_job_once_to_the_end() {
    let Some(schema) = PgSchema::create().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let sim = Sim::start().await;
    let file = shared_config(dir.path(), &schema, "lease_secs = 3\n");
    let config = ["--config", file.as_str()];
    let orgs: Vec<Value> = (0..4)
        .map(|i| {
            create_org(
                &format!("Org {i}"),
                &format!("three{i}@example.com"),
                &config,
            )
        })
        .collect();
    let mut servers = [
        Serve::new(&sim, &config),
        Serve::new(&sim, &config),
        Serve::new(&sim, &config),
    ];
    start_all(&mut servers).await;
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    // Slow Azure down so that the syncs overlap and last.
    sim.faults(json!({"latency_ms": 300})).await;
    let mut made = tokio::task::JoinSet::new();
    for (i, org) in orgs.iter().enumerate() {
        let api = Api::new(&urls[i % 3], &token(org));
        let (t, sp) = (tenant(&sim).clone(), principal(&sim, "collector"));
        made.spawn(async move { api.connect(&format!("c{i}"), &t, &sp).await });
    }
    let connections = made.join_all().await;
    let db = Db::open(&schema.url).await;
    // Kill the process that holds a running job whose run has started (a
    // job is claimed a moment before its run is recorded).
    let victim = eventually(Duration::from_secs(60), "a job under way", || async {
        let (jobs, runs) = (db.jobs().await, db.runs().await);
        jobs.iter()
            .find(|j| {
                j.status == "running"
                    && runs
                        .iter()
                        .any(|r| r.connection == j.connection && r.status == "running")
            })
            .and_then(JobRow::owner_pid)
            .ok_or_else(|| format!("{jobs:?}"))
    })
    .await;
    servers
        .iter_mut()
        .find(|s| s.pid() == Some(victim))
        .expect("the victim is ours")
        .kill();
    let held: Vec<String> = db
        .jobs()
        .await
        .into_iter()
        .filter(|j| j.status == "running" && j.owner_pid() == Some(victim))
        .map(|j| j.connection)
        .collect();
    assert!(!held.is_empty(), "the victim held a job when it died");
    // Of those, the ones whose run it had recorded (another job it held
    // may have been claimed but not yet begun).
    let begun: Vec<String> = db
        .runs()
        .await
        .into_iter()
        .filter(|r| r.status != "succeeded" && held.contains(&r.connection))
        .map(|r| r.connection)
        .collect();
    assert!(!begun.is_empty(), "the victim's run had begun");
    eventually(Duration::from_secs(120), "every job done", || async {
        let jobs = db.jobs().await;
        if jobs.len() >= connections.len() && jobs.iter().all(|j| j.status == "done") {
            Ok(())
        } else {
            Err(format!("{jobs:?}"))
        }
    })
    .await;
    let (jobs, runs) = (db.jobs().await, db.runs().await);
    drop(servers);
    assert_eq!(
        jobs.len(),
        connections.len(),
        "one job a connection: {jobs:?}"
    );
    for j in &jobs {
        let taken_over = held.contains(&j.connection);
        assert_eq!(
            j.attempts,
            if taken_over { 2 } else { 1 },
            "claimed once, or once more after its holder died: {j:?}"
        );
        assert_ne!(j.owner_pid(), Some(victim), "finished by a survivor: {j:?}");
        let its_runs: Vec<&RunRow> = runs
            .iter()
            .filter(|r| r.connection == j.connection)
            .collect();
        let statuses: Vec<&str> = its_runs.iter().map(|r| r.status.as_str()).collect();
        let expected = if begun.contains(&j.connection) {
            vec!["interrupted", "succeeded"]
        } else {
            vec!["succeeded"]
        };
        assert_eq!(statuses, expected, "{its_runs:?}");
        assert!(
            its_runs
                .windows(2)
                .all(|w| w[0].finished_at.is_some_and(|end| end <= w[1].started_at)),
            "a connection's runs do not overlap: {its_runs:?}"
        );
    }
    let (ok, out, err) = run(&["audit", "verify", "--config", config[1]]);
    assert!(
        ok && out.matches("chain intact").count() == orgs.len(),
        "{out}{err}"
    );
    schema.remove().await;
}
