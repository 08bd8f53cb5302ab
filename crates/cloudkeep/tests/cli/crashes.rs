//! The crash matrix: `cloudkeep serve` SIGKILLed at seeded points of a
//! first scheduled sync (inventory, evidence, the 13-month spend backfill)
//! and of a tag write-back, and `cloudkeep admin rotate-master-key`,
//! `rotate-data-key` and `rotate-audit-key` killed part-way, each several
//! times, then restarted. Afterwards every killed run
//! reads `interrupted`, each tag edit reached Azure once (the simulator's
//! request log), the audit chains verify, and the organisation's store
//! equals that of an organisation that synced the same tenant without a
//! crash (resources and tags, spend per subscription and day, current
//! evidence). `CLOUDKEEP_CRASH_SEED` replays other kill points.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use sqlx::Row;

use crate::harness::{
    Api, BIN, Killed, Serve, Sim, create_org, eventually, principal, run, tenant,
};
use crate::processes::{Db, RunRow, inventory, token};

/// Kills in the first sync, and in the write-back.
const SYNC_KILLS: usize = 3;
const WRITE_BACK_KILLS: usize = 2;
/// Kills of each key rotation (master key, data key, audit key): a
/// rotation is quick, so two kills each keep the matrix's run time.
const ROTATION_KILLS: usize = 2;

/// The kill points, from a seed (splitmix64): reproducible, and another
/// seed is another set of points.
struct Points(u64);

impl Points {
    fn from_env() -> Points {
        let seed = std::env::var("CLOUDKEEP_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(15);
        eprintln!("crash matrix seed {seed} (CLOUDKEEP_CRASH_SEED)");
        Points(seed)
    }

    /// A uniform draw in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as f64 / u64::MAX as f64
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Waits until `connection` has a run that is not in `seen` under way
/// (`None`: instead its last run succeeded, so the work is done).
async fn a_new_run(db: &Db, connection: &str, seen: &[String]) -> Option<RunRow> {
    eventually(Duration::from_secs(60), "a run under way", || async {
        let runs: Vec<RunRow> = db
            .runs()
            .await
            .into_iter()
            .filter(|r| r.connection == connection)
            .collect();
        if let Some(r) = runs
            .iter()
            .find(|r| r.status == "running" && !seen.contains(&r.id))
        {
            return Ok(Some(r.clone()));
        }
        match runs.last() {
            Some(r) if r.status == "succeeded" && seen.contains(&r.id) => Ok(None),
            _ => Err(format!("{runs:?}")),
        }
    })
    .await
}

/// Kills the server and starts it again; answers whether `run` was still
/// running when it died (so the kill landed within it).
async fn killed_during(server: &mut Serve<'_>, db: &Db, run: &RunRow) -> bool {
    server.kill();
    let within = db
        .runs()
        .await
        .iter()
        .any(|r| r.id == run.id && r.status == "running");
    server.start().await;
    within
}

/// Waits until `connection` has `n` finished runs and none running; answers the last.
async fn finished(db: &Db, connection: &str, n: usize) -> RunRow {
    eventually(Duration::from_secs(120), "the runs finished", || async {
        let runs: Vec<RunRow> = db
            .runs()
            .await
            .into_iter()
            .filter(|r| r.connection == connection)
            .collect();
        let done = runs.iter().filter(|r| r.finished_at.is_some()).count();
        match runs.last() {
            // (A killed run reads interrupted a moment before its job's
            // next run starts.)
            Some(last)
                if done >= n
                    && last.status != "interrupted"
                    && runs.iter().all(|r| r.status != "running") =>
            {
                Ok(last.clone())
            }
            _ => Err(format!("{runs:?}")),
        }
    })
    .await
}

/// Spend per subscription and day, and current evidence: what a clean
/// sync and a killed one must agree on, read from the store's tables.
async fn spend_and_evidence(db: &Db, org: &Value) -> (Vec<String>, BTreeSet<String>) {
    let org = org.as_str().expect("org id");
    let spend = sqlx::query(
        "SELECT r.SubAccountId AS sub, c.day AS day, SUM(c.BilledCost) AS billed, SUM(c.EffectiveCost) AS effective \
         FROM spend_costs c JOIN spend_resources r ON r.org_id = c.org_id AND r.resource_key = c.resource_key \
         WHERE c.org_id = $1 GROUP BY r.SubAccountId, c.day ORDER BY r.SubAccountId, c.day",
    )
    .bind(org)
    .fetch_all(&db.0)
    .await
    .expect("spend")
    .iter()
    .map(|r| {
        format!(
            "{} {} {:.6} {:.6}",
            r.get::<String, _>("sub").to_ascii_lowercase(),
            r.get::<i64, _>("day"),
            r.get::<f64, _>("billed"),
            r.get::<f64, _>("effective")
        )
    })
    .collect();
    let evidence = sqlx::query(
        "SELECT collector, check_id, subject_key, facts, result, reason FROM evidence \
         WHERE org_id = $1 AND valid_to IS NULL",
    )
    .bind(org)
    .fetch_all(&db.0)
    .await
    .expect("evidence")
    .iter()
    .map(|r| {
        format!(
            "{} {} {} {} {} {:?}",
            r.get::<String, _>("collector"),
            r.get::<String, _>("check_id"),
            r.get::<String, _>("subject_key"),
            r.get::<String, _>("facts"),
            r.get::<String, _>("result"),
            r.get::<Option<String>, _>("reason")
        )
    })
    .collect();
    (spend, evidence)
}

/// The spend backfill of an organisation's subscriptions, summed: months
/// done, of months to do.
async fn backfill(db: &Db, org: &Value) -> (i64, i64) {
    let row = sqlx::query(
        "SELECT COALESCE(SUM(months_done), 0) AS done, COALESCE(SUM(months_total), 0) AS total          FROM spend_backfill WHERE org_id = $1",
    )
    .bind(org.as_str().expect("org id"))
    .fetch_one(&db.0)
    .await
    .expect("backfill");
    (row.get("done"), row.get("total"))
}

/// Makes connections due now, as if their cadence had passed.
async fn due(db: &Db, connections: &[&str]) {
    for c in connections {
        sqlx::query("UPDATE connections SET next_sync_at = last_sync_at WHERE connection_id = $1")
            .bind(*c)
            .execute(&db.0)
            .await
            .expect("due");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_seeded_points_of_sync_write_back_and_key_rotation_everything_converges() {
    let mut points = Points::from_env();
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("path").to_string();
    let config = ["--data-dir", data_arg.as_str()];
    let crash = create_org("Crash", "crash@example.com", &config);
    let reference = create_org("Reference", "reference@example.com", &config);
    let db = Db::open(&format!("sqlite://{}", data.join("cloudkeep.db").display())).await;
    let sim = Sim::start().await;
    let mut server = Serve::scheduled(&sim, &config);
    server.start().await;
    let url = server.url.clone();
    let sp = principal(&sim, "collector");

    // The reference: a clean first sync (scheduled as soon as it connects), timed.
    let clean_api = Api::new(&url, &token(&reference));
    let clean_conn = clean_api.connect("c", tenant(&sim), &sp).await;
    let clean_id = clean_conn["id"].as_str().expect("id").to_string();
    let clean = finished(&db, &clean_id, 1).await;
    assert_eq!(clean.status, "succeeded", "{clean:?}");
    let clean_ms = clean.finished_at.expect("finished") - clean.started_at;

    // The first sync of the crashed organisation, killed at seeded points.
    let api = Api::new(&url, &token(&crash));
    let conn = api.connect("c", tenant(&sim), &sp).await;
    let id = conn["id"].as_str().expect("id").to_string();
    let mut killed: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut mid_backfill = false;
    for k in 0..SYNC_KILLS {
        let Some(run) = a_new_run(&db, &id, &seen).await else {
            break;
        };
        seen.push(run.id.clone());
        if k == 0 {
            // The first kill lands in the spend backfill, once a seeded
            // number of months is stored (a month is pulled, stored and
            // its position written in one go).
            let months = 1 + (6.0 * points.next()) as i64;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                let (done, total) = backfill(&db, &crash["org_id"]).await;
                if done >= months && done < total {
                    mid_backfill = true;
                    break;
                }
                if done >= total && total > 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        } else {
            // Early in the later runs: a resumed run has less left to do.
            let at = run.started_at + (clean_ms as f64 * 0.3 * points.next()) as i64;
            tokio::time::sleep(Duration::from_millis((at - now_ms()).max(0) as u64)).await;
        }
        if killed_during(&mut server, &db, &run).await {
            killed.push(run.id.clone());
        }
    }
    let sync_kills = killed.len();
    let first = finished(&db, &id, seen.len()).await;
    assert_eq!(first.status, "succeeded", "{first:?}");
    assert!(!killed.is_empty(), "no kill landed within a sync");
    assert!(mid_backfill, "no kill landed within the spend backfill");

    // A write-back of an edit to every resource of one subscription, with
    // each tag call slowed so the kills land part-way.
    let sub = conn["subscriptions"][0]["id"].as_str().expect("sub");
    let edits = api
        .post(
            "/api/v1/tag-edits",
            &json!({"filter": {"subscription": sub}, "set": {"survived": "kill"}}),
        )
        .await;
    assert_eq!(edits.status().as_u16(), 201);
    let edits: Value = edits.json().await.expect("json");
    let total = edits["edits"].as_array().map(Vec::len).expect("edits");
    assert!(total >= 20, "{total}");
    sim.faults(json!({"latency_ms": 25, "latency_path": "/providers/Microsoft.Resources/tags"}))
        .await;
    let since = sim.last_seq().await;
    let runs_before = db
        .runs()
        .await
        .iter()
        .filter(|r| r.connection == id)
        .count();
    due(&db, &[&id]).await;
    let mut threshold = 0usize;
    for k in 0..WRITE_BACK_KILLS {
        // Past a seeded share of what is left of the edits.
        threshold += ((total - threshold) as f64 * (0.1 + 0.6 * points.next())) as usize;
        let Some(run) = a_new_run(&db, &id, &seen).await else {
            break;
        };
        seen.push(run.id.clone());
        eventually(
            Duration::from_secs(90),
            &format!("write-back kill {k}"),
            || async {
                let patches = sim
                    .requests(since)
                    .await
                    .iter()
                    .filter(|e| e["method"] == "PATCH" && e["status"] == 200)
                    .count();
                if patches >= threshold {
                    Ok(())
                } else {
                    Err(format!("{patches} PATCHes of {threshold}"))
                }
            },
        )
        .await;
        if killed_during(&mut server, &db, &run).await {
            killed.push(run.id.clone());
        }
    }
    let written = finished(&db, &id, runs_before + 1).await;
    assert_eq!(written.status, "succeeded", "{written:?}");
    sim.faults(json!({})).await;
    // Each edit reached Azure once: one successful PATCH per resource.
    let mut patches: BTreeMap<String, usize> = BTreeMap::new();
    for e in sim.requests(since).await {
        if e["method"] == "PATCH" && e["status"] == 200 {
            *patches
                .entry(e["path"].as_str().unwrap_or("").to_ascii_lowercase())
                .or_default() += 1;
        }
    }
    assert_eq!(patches.len(), total, "every edited resource written");
    assert!(
        patches.values().all(|n| *n == 1),
        "a tag PATCH sent twice: {:?}",
        patches.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>()
    );
    let states: Value = api.get("/api/v1/tag-edits?limit=1000").await;
    assert!(
        states["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|e| e["state"] == "applied"),
        "{states}"
    );

    // Each key rotation killed part-way (or, when it is quicker than the
    // draw, not at all), then run to its end.
    server.kill();
    let org_id = crash["org_id"].as_str().expect("org id");
    for rotation in [
        vec!["admin", "rotate-master-key"],
        vec!["admin", "rotate-data-key", "--org", org_id],
        vec!["admin", "rotate-audit-key"],
    ] {
        killed_part_way(&mut points, &rotation, &config).await;
        let (ok, out, err) = run(&[rotation.as_slice(), &config[..]].concat());
        assert!(ok && out.contains("rotated"), "{rotation:?}: {out}{err}");
    }

    // Both organisations sync once more under the new keys (their
    // credentials open), reading the same tenant.
    server.start().await;
    let crash_runs = db
        .runs()
        .await
        .iter()
        .filter(|r| r.connection == id)
        .count();
    let clean_runs = db
        .runs()
        .await
        .iter()
        .filter(|r| r.connection == clean_id)
        .count();
    due(&db, &[&id, &clean_id]).await;
    let last = finished(&db, &id, crash_runs + 1).await;
    assert_eq!(last.status, "succeeded", "{last:?}");
    let last = finished(&db, &clean_id, clean_runs + 1).await;
    assert_eq!(last.status, "succeeded", "{last:?}");

    // Every killed run reads interrupted; nothing is left running.
    let runs = db.runs().await;
    for k in &killed {
        let r = runs.iter().find(|r| &r.id == k).expect("killed run");
        assert_eq!(r.status, "interrupted", "{r:?}");
    }
    // The store converged to the clean organisation's.
    let after = inventory(&url, &api.token);
    let clean_inventory = inventory(&url, &clean_api.token);
    assert!(
        after == clean_inventory,
        "{} resources after the kills, {} in the clean organisation; first difference: {:?}",
        after.len(),
        clean_inventory.len(),
        after.iter().zip(&clean_inventory).find(|(a, b)| a != b)
    );
    let (spend, evidence) = spend_and_evidence(&db, &crash["org_id"]).await;
    let (clean_spend, clean_evidence) = spend_and_evidence(&db, &reference["org_id"]).await;
    assert!(!clean_spend.is_empty() && !clean_evidence.is_empty());
    assert!(
        spend == clean_spend,
        "spend: {} days after the kills, {} clean; first difference: {:?}",
        spend.len(),
        clean_spend.len(),
        spend.iter().zip(&clean_spend).find(|(a, b)| a != b)
    );
    assert!(
        evidence == clean_evidence,
        "evidence: only after the kills {:?}; only clean {:?}",
        evidence.difference(&clean_evidence).next(),
        clean_evidence.difference(&evidence).next()
    );
    server.kill();
    let (ok, out, err) = run(&["audit", "verify", "--data-dir", &data_arg]);
    assert!(ok && out.matches("chain intact").count() == 2, "{out}{err}");
    eprintln!(
        "crash matrix: {} runs killed ({sync_kills} in the first sync, one of them mid-backfill), {total} edits written once, clean sync {clean_ms} ms",
        killed.len()
    );
}

/// `cloudkeep ARGS CONFIG` killed (SIGKILL) a seeded moment after it
/// starts, `ROTATION_KILLS` times.
async fn killed_part_way(points: &mut Points, args: &[&str], config: &[&str]) {
    for _ in 0..ROTATION_KILLS {
        let mut process = Killed::spawn(
            std::process::Command::new(BIN)
                .args(args)
                .args(config)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        );
        tokio::time::sleep(Duration::from_millis((5.0 + 60.0 * points.next()) as u64)).await;
        let _ = process.0.kill();
        let _ = process.0.wait();
    }
}

/// Evidence rows of `org` (past the window: first observed and closed
/// before `before`, in milliseconds).
async fn evidence_rows(db: &Db, org: &str, before: Option<i64>) -> i64 {
    sqlx::query(
        "SELECT COUNT(*) AS n FROM evidence WHERE org_id = $1 AND ($2 < 0 OR COALESCE(valid_to, last_observed_at) < $2)",
    )
    .bind(org)
    .bind(before.unwrap_or(-1))
    .fetch_one(&db.0)
    .await
    .expect("count")
    .get("n")
}

/// The retention purge killed at seeded points, restarted each time: the
/// job is taken over and purges what is past the window, in batches each
/// committed with its audit event, so that together they purge every old
/// row once and nothing else, and the audit chain verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_purge_killed_part_way_purges_every_old_row_once_and_nothing_else() {
    let mut points = Points::from_env();
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("path").to_string();
    let config = ["--data-dir", data_arg.as_str()];
    let org = create_org("Purge", "purge@example.com", &config);
    let org_id = org["org_id"].as_str().expect("org").to_string();
    let db = Db::open(&format!("sqlite://{}", data.join("cloudkeep.db").display())).await;
    let sim = Sim::start().await;
    let mut server = Serve::scheduled(&sim, &config);
    server.start().await;
    let api = Api::new(&server.url, &token(&org));
    let conn = api
        .connect("c", tenant(&sim), &principal(&sim, "collector"))
        .await;
    let first = finished(&db, conn["id"].as_str().expect("id"), 1).await;
    assert_eq!(first.status, "succeeded", "{first:?}");
    server.kill();

    // Ten years of history: copies of today's evidence, closed long ago,
    // enough for many purge batches.
    let current = evidence_rows(&db, &org_id, None).await;
    let old = now_ms() - 10 * 365 * 86_400_000;
    for copy in 0..30 {
        sqlx::query(
            "INSERT INTO evidence (org_id, evidence_id, connection_id, subscription_id, collector, check_id, subject, subject_key, \
               facts, result, reason, fingerprint, run_id, last_run_id, observed_at, last_observed_at, valid_to, recorded_at) \
             SELECT org_id, evidence_id || $2, connection_id, subscription_id, collector, check_id, subject, subject_key, \
               facts, result, reason, fingerprint, run_id, last_run_id, $3, $3, $3, $3 FROM evidence \
             WHERE org_id = $1 AND valid_to IS NULL AND evidence_id NOT LIKE '%-old-%'",
        )
        .bind(&org_id)
        .bind(format!("-old-{copy}"))
        .bind(old)
        .execute(&db.0)
        .await
        .expect("old evidence");
    }
    let aged = evidence_rows(&db, &org_id, Some(old + 1)).await;
    assert_eq!(aged, 30 * current);
    // Due now (the check runs once a day).
    sqlx::query("DELETE FROM retention_checks")
        .execute(&db.0)
        .await
        .expect("due");

    let retention_job = || async {
        sqlx::query("SELECT status FROM jobs WHERE kind = 'retention' ORDER BY created_at")
            .fetch_all(&db.0)
            .await
            .expect("jobs")
            .iter()
            .map(|r| r.get::<String, _>("status"))
            .collect::<Vec<_>>()
    };
    let mut kills = 0;
    for _ in 0..3 {
        server.spawn();
        // Killed a seeded moment after the job is claimed (or done).
        eventually(Duration::from_secs(30), "the purge claimed", || async {
            let jobs = retention_job().await;
            if jobs.iter().any(|s| s == "running" || s == "done") {
                Ok(())
            } else {
                Err(format!("{jobs:?}"))
            }
        })
        .await;
        tokio::time::sleep(Duration::from_millis((150.0 * points.next()) as u64)).await;
        server.kill();
        let left = evidence_rows(&db, &org_id, Some(old + 1)).await;
        if left == 0 {
            break;
        }
        kills += usize::from(left < aged);
        // The lease ends before the next process looks.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    server.spawn();
    eventually(Duration::from_secs(60), "the purge done", || async {
        let (jobs, left) = (
            retention_job().await,
            evidence_rows(&db, &org_id, Some(old + 1)).await,
        );
        if left == 0 && jobs.last().is_some_and(|s| s == "done") {
            Ok(())
        } else {
            Err(format!("{jobs:?}, {left} old rows left"))
        }
    })
    .await;
    server.kill();
    assert_eq!(
        evidence_rows(&db, &org_id, None).await,
        current,
        "what is within the window stays"
    );
    // The purges' audit events account for every old row, once.
    let purged: i64 = sqlx::query(
        "SELECT details FROM audit_events WHERE org_id = $1 AND action = 'retention.purged'",
    )
    .bind(&org_id)
    .fetch_all(&db.0)
    .await
    .expect("events")
    .iter()
    .map(|r| {
        serde_json::from_str::<Value>(&r.get::<String, _>("details")).expect("json")["evidence"]
            .as_i64()
            .unwrap_or(0)
    })
    .sum();
    assert_eq!(purged, aged, "purged once each");
    let (ok, out, err) = run(&["audit", "verify", "--data-dir", &data_arg]);
    assert!(ok && out.contains("chain intact"), "{out}{err}");
    eprintln!("retention purge: {aged} old rows, killed part-way {kills} times");
}
