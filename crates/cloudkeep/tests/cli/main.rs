//! The binary end to end: `admin create-org`, `serve` as a child process
//! against the simulator, `audit verify` on a tampered store, and `demo`;
//! `processes` runs several `serve` processes on one store and kills them;
//! `crashes` is the crash matrix (kills at seeded points of each kind of work).

mod crashes;
mod harness;
mod processes;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::{
    Api, BIN, Killed, Serve, Sim, cli, create_org, eventually, free_port, run, serve, wait_until_up,
};
use serde_json::{Value, json};

fn grep_dir(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in walk(dir) {
        let mut bytes = Vec::new();
        if std::fs::File::open(&entry)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .is_ok()
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            hits.push(entry.display().to_string());
        }
    }
    hits
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

#[tokio::test]
async fn secrets_stay_out_of_logs_responses_and_files_and_the_audit_chain_catches_tampering() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("path");
    let created = create_org("Acme", "ops@acme.example", &["--data-dir", data_arg]);
    for k in ["org_id", "owner_email", "password", "api_token"] {
        assert!(created[k].is_string(), "{k} in {created}");
    }
    let token = created["api_token"].as_str().expect("token").to_string();

    let sim = Sim::start().await;
    let tenant = harness::tenant(&sim);
    let sp = harness::principal(&sim, "collector");
    let secret = sp["client_secret"].as_str().expect("secret").to_string();

    let port = free_port();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let server = Killed::spawn(
        serve(&sim, port, &["--data-dir", data_arg])
            .env("CLOUDKEEP_LOG", "trace")
            .env("CLOUDKEEP_SCHEDULER_POLL_SECS", "1")
            .stderr(log),
    );
    let url = format!("http://127.0.0.1:{port}");
    wait_until_up(&url).await;
    let api = reqwest::Client::new();
    let mut responses = String::new();
    let body = json!({"name": "Contoso", "tenant_id": tenant["tenant_id"], "client_id": sp["client_id"], "client_secret": secret});
    let r = api
        .post(format!("{url}/api/v1/connections"))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect("connect");
    assert_eq!(r.status().as_u16(), 201);
    let conn: Value = r.json().await.expect("json");
    responses.push_str(&conn.to_string());
    let id = conn["id"].as_str().expect("id");
    for path in [
        "/api/v1/connections".to_string(),
        format!("/api/v1/connections/{id}"),
        "/api/v1/audit".into(),
        "/api/v1/audit?format=jsonl".into(),
    ] {
        responses.push_str(
            &api.get(format!("{url}{path}"))
                .bearer_auth(&token)
                .send()
                .await
                .expect("get")
                .text()
                .await
                .expect("text"),
        );
    }
    // The scheduler in `serve` syncs the new connection on its own.
    let runs = eventually(Duration::from_secs(30), "a scheduled sync", || async {
        let runs: Value = api
            .get(format!("{url}/api/v1/sync-runs"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("runs")
            .json()
            .await
            .expect("json");
        let done = runs["items"].as_array().is_some_and(|r| {
            r.iter()
                .any(|run| run["trigger"] == "schedule" && run["status"] == "succeeded")
        });
        if done {
            Ok(runs)
        } else {
            Err(runs.to_string())
        }
    })
    .await;
    responses.push_str(&runs.to_string());
    let reauth = api
        .post(format!("{url}/api/v1/connections/{id}/reauth"))
        .bearer_auth(&token)
        .json(&json!({"client_secret": secret}))
        .send()
        .await
        .expect("reauth");
    responses.push_str(&reauth.text().await.expect("text"));
    drop(server);

    let log_text = std::fs::read_to_string(&log_path).expect("log");
    assert!(
        log_text.contains("request"),
        "the server logged requests: {}",
        &log_text[..log_text.len().min(500)]
    );
    assert!(!log_text.contains(&secret), "the secret is not in the logs");
    assert!(
        !responses.contains(&secret),
        "the secret is not in any response"
    );
    assert_eq!(
        grep_dir(&data, &secret),
        Vec::<String>::new(),
        "the secret is in no file of the store"
    );

    let (ok, out, err) = run(&["audit", "verify", "--data-dir", data_arg]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("chain intact"), "{out}");

    // Tamper with an event directly in the database.
    {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!(
            "sqlite://{}",
            data.join("cloudkeep.db").display()
        ))
        .await
        .expect("db");
        sqlx::query("DROP TRIGGER audit_events_no_update")
            .execute(&mut c)
            .await
            .expect("drop trigger");
        sqlx::query("UPDATE audit_events SET actor = 'user:someone-else' WHERE seq = 2")
            .execute(&mut c)
            .await
            .expect("tamper");
    }
    let (ok, out, _) = run(&["audit", "verify", "--data-dir", data_arg]);
    assert!(!ok, "verify fails on a tampered chain");
    assert!(out.contains("BROKEN: event 2 was changed"), "{out}");

    let (ok, out, _) = run(&[
        "admin",
        "rotate-data-key",
        "--org",
        created["org_id"].as_str().expect("org"),
        "--data-dir",
        data_arg,
    ]);
    assert!(ok, "{out}");
    assert!(out.contains("1 credentials re-encrypted"), "{out}");
    let (ok, out, err) = run(&["admin", "rotate-master-key", "--data-dir", data_arg]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("1 data keys re-wrapped"), "{out}");
    let (ok, _, err) = run(&[
        "admin",
        "create-org",
        "--name",
        "X",
        "--owner",
        "not-an-email",
        "--data-dir",
        data_arg,
    ]);
    assert!(!ok && err.contains("not an email"), "{err}");
}

#[tokio::test]
async fn demo_connects_the_simulator_and_writes_its_ready_file() {
    let dir = tempfile::tempdir().expect("dir");
    let ready = dir.path().join("ready.json");
    let port = free_port();
    let demo = Killed(
        Command::new(BIN)
            .env_remove("MALLOC_ARENA_MAX")
            .env_remove("MALLOC_MMAP_THRESHOLD_")
            .args([
                "demo",
                "--data-dir",
                dir.path().join("demo").to_str().expect("path"),
                "--port",
                &port.to_string(),
                "--ready-file",
                ready.to_str().expect("path"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("demo"),
    );
    // The ready file appears whole (written, then renamed) once all is up:
    // after the first sync, whose 13-month spend backfill Cost Management's
    // throttling paces (about a minute on a quiet machine).
    let info: Value = eventually(Duration::from_secs(300), "the demo ready", || async {
        let text = std::fs::read_to_string(&ready).map_err(|e| e.to_string())?;
        Ok(serde_json::from_str(&text).expect("a whole JSON object"))
    })
    .await;
    for k in [
        "url",
        "api_token",
        "owner_email",
        "password",
        "sim_url",
        "ca",
    ] {
        assert!(info[k].is_string(), "{k} in {info}");
    }
    // The process runs with glibc's malloc settings (it starts itself
    // again with them set: the same process id, its name as given).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let proc = std::path::PathBuf::from(format!("/proc/{}", demo.pid()));
        let environ = std::fs::read(proc.join("environ")).expect("environ");
        for setting in [
            &b"MALLOC_ARENA_MAX=4"[..],
            &b"MALLOC_MMAP_THRESHOLD_=131072"[..],
        ] {
            assert!(
                environ.split(|b| *b == 0).any(|v| v == setting),
                "the demo's environment: {}",
                String::from_utf8_lossy(&environ)
            );
        }
        let cmdline = std::fs::read(proc.join("cmdline")).expect("cmdline");
        assert_eq!(
            cmdline.split(|b| *b == 0).next(),
            Some(BIN.as_bytes()),
            "argv[0] as given"
        );
    }
    let url = info["url"].as_str().expect("url");
    let token = info["api_token"].as_str().expect("token");
    let api = Api::new(url, token);
    let conns = api.get("/api/v1/connections").await["items"].clone();
    assert_eq!(conns.as_array().map(Vec::len), Some(1), "{conns}");
    assert_eq!(conns[0]["subscriptions"].as_array().map(Vec::len), Some(3));
    assert!(
        conns[0]["last_sync_at"].is_string(),
        "the demo synced its connection"
    );
    // 90 days of spend, as soon as it is up.
    let today = chrono::Utc::now().date_naive();
    let spend = api
        .get(&format!(
            "/api/v1/spend?from={}&to={today}",
            today - chrono::Duration::days(89)
        ))
        .await;
    let days = spend["totals"].as_array().map(Vec::len).unwrap_or(0);
    assert!(days >= 89, "90 days of spend: {spend}");
    let resources = api.get("/api/v1/resources?limit=1000").await;
    assert_eq!(
        resources["items"].as_array().map(Vec::len),
        Some(300),
        "the demo's inventory"
    );
    let login = reqwest::Client::new()
        .post(format!("{url}/api/v1/auth/login"))
        .json(&json!({"email": info["owner_email"], "password": info["password"]}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status().as_u16(), 200);

    // The CLI clients, against the demo's server.
    let cli = |args: &[&str], secret: Option<&str>| cli(url, token, args, secret);
    // The demo's runaway database is an anomaly incident, its database named.
    let (ok, out, err) = cli(&["anomalies", "--kind", "anomaly"], None);
    assert!(ok, "{err}");
    assert!(
        out.contains("SQL Database") && out.contains("ongoing"),
        "{out}"
    );
    let (ok, out, err) = cli(
        &["anomalies", "--movers", "--by", "resource", "--json"],
        None,
    );
    assert!(ok, "{err}");
    let movers: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(movers["by"], "resource", "{movers}");
    let (ok, out, err) = cli(&["connections", "list"], None);
    assert!(ok, "{err}");
    let first = conns[0]["id"].as_str().expect("id");
    let azure_sub = conns[0]["subscriptions"][0]["subscription_id"]
        .as_str()
        .expect("azure id");
    assert!(
        out.contains("AZURE SUBSCRIPTION") && out.contains(azure_sub),
        "the table shows the Azure subscription ids a user knows: {out}"
    );
    let (ok, out2, err) = cli(&["sync", "run", "--connection", first, "--wait"], None);
    assert!(ok, "{err}");
    assert!(
        out2.contains("succeeded") && out2.contains("inventory") && out2.contains("seen=100"),
        "{out2}"
    );
    // Without --wait it starts the run and says how to follow it.
    let (ok, out2, err) = cli(&["sync", "run", "--connection", first, "--json"], None);
    assert!(ok, "{err}");
    let started: serde_json::Value = serde_json::from_str(&out2).expect("json");
    assert_eq!(started["status"], "running", "{started}");
    assert_eq!(started["trigger"], "manual");
    let (ok, out2, err) = cli(
        &["resources", "list", "--type", "Microsoft.KeyVault/vaults"],
        None,
    );
    assert!(ok, "{err}");
    assert!(
        out2.starts_with("NAME")
            && out2.contains("Microsoft.KeyVault/vaults")
            && !out2.contains("Microsoft.Compute"),
        "{out2}"
    );
    let (ok, listed, _) = cli(
        &[
            "resources",
            "list",
            "--type",
            "Microsoft.KeyVault/vaults",
            "--json",
        ],
        None,
    );
    assert!(ok);
    let vault = serde_json::from_str::<Value>(listed.trim()).expect("json")[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let (ok, out3, err) = cli(
        &["tags", "set", "team=platform", "--resource", &vault],
        None,
    );
    assert!(
        ok && out3.contains("pending") && out3.contains("team=platform"),
        "{out3}{err}"
    );
    let (ok, _, err) = cli(&["tags", "set", "bad/name=x", "--resource", &vault], None);
    assert!(!ok && err.contains("bad/name"), "{err}");
    let (ok, out3, err) = cli(&["tags", "conflicts"], None);
    assert!(ok && out3.starts_with("EDIT"), "{out3}{err}");
    let (ok, out2, _) = cli(&["resources", "list", "--json"], None);
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(out2.trim())
            .expect("json")
            .as_array()
            .map(Vec::len),
        Some(300)
    );
    assert!(
        out.starts_with("CONNECTION") && out.contains("read_write_tags"),
        "{out}"
    );

    // Evidence and coverage, from the demo's first sync on.
    let (ok, out, err) = cli(&["controls"], None);
    assert!(
        ok && out.starts_with("CONTROL") && out.contains("CC6.1") && out.contains("failing"),
        "{out}{err}"
    );
    let (ok, out, _) = cli(&["controls", "--json"], None);
    assert!(ok);
    let controls: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(controls.as_array().map(Vec::len), Some(3), "{controls}");
    let (ok, out, err) = cli(&["controls", "CC6.6"], None);
    assert!(
        ok && out.contains("daily history") && out.contains("storage.https_only"),
        "{out}{err}"
    );
    let (ok, out, err) = cli(
        &[
            "evidence",
            "list",
            "--check",
            "storage.https_only",
            "--result",
            "fail",
            "--json",
        ],
        None,
    );
    assert!(ok, "{err}");
    let fails: Value = serde_json::from_str(out.trim()).expect("json");
    let fails = fails.as_array().expect("rows");
    assert!(
        !fails.is_empty() && fails.iter().all(|e| e["result"] == "fail"),
        "{out}"
    );
    let (ok, out, err) = cli(&["evidence", "list", "--control", "CC7.1"], None);
    assert!(
        ok && out.starts_with("EVIDENCE") && out.contains("defender."),
        "{out}{err}"
    );
    let (ok, out, err) = cli(
        &["evidence", "show", fails[0]["id"].as_str().expect("id")],
        None,
    );
    assert!(
        ok && out.contains("fingerprint") && out.contains("CC6.6"),
        "{out}{err}"
    );
    let (ok, out, err) = cli(&["alerts"], None);
    assert!(ok && out.starts_with("ALERT"), "{out}{err}");
    let (ok, _, err) = cli(&["evidence", "list", "--result", "maybe"], None);
    assert!(!ok && err.contains("not_collected"), "{err}");

    // Assessments of the demo's evidence: create, attach, approve, export.
    let now = chrono::Utc::now();
    let from = (now - chrono::Duration::days(1)).to_rfc3339();
    let to = (now + chrono::Duration::days(1)).to_rfc3339();
    let create = |from: &str, to: &str| {
        cli(
            &[
                "assessments",
                "create",
                "--name",
                "SOC 2 Type II",
                "--from",
                from,
                "--to",
                to,
                "--control",
                "CC6.1",
                "--control",
                "CC6.6",
                "--json",
            ],
            None,
        )
    };
    let (ok, _, err) = create(&to, &from);
    assert!(!ok && err.contains("before it starts"), "{err}");
    let (ok, out, err) = create(&from, &to);
    assert!(ok, "{err}");
    let assessment: Value = serde_json::from_str(out.trim()).expect("json");
    let aid = assessment["id"].as_str().expect("id");
    let (ok, out, err) = cli(&["assessments", "attach", aid, "--all"], None);
    assert!(ok && out.contains("rows attached"), "{out}{err}");
    let (ok, out, err) = cli(&["assessments", "approve", aid], None);
    assert!(ok && out.contains("approved"), "{out}{err}");
    let (ok, _, err) = cli(&["assessments", "approve", aid], None);
    assert!(
        !ok && err.contains("immutable") && err.contains("409"),
        "{err}"
    );
    let (ok, _, err) = cli(&["assessments", "attach", aid, "--all"], None);
    assert!(!ok && err.contains("immutable"), "{err}");
    let sample = |seed: Option<&str>| {
        let mut args = vec![
            "assessments",
            "sample",
            aid,
            "--control",
            "CC6.6",
            "--size",
            "3",
            "--json",
        ];
        if let Some(seed) = seed {
            args.extend(["--seed", seed]);
        }
        let (ok, out, err) = cli(&args, None);
        assert!(ok, "{err}");
        serde_json::from_str::<Value>(out.trim()).expect("json")
    };
    let drawn = sample(None);
    let redo = sample(drawn["seed"].as_str());
    assert_eq!(
        redo["evidence"], drawn["evidence"],
        "the seed redoes the draw"
    );
    let (ok, out, err) = cli(
        &[
            "assessments",
            "invite",
            aid,
            "--email",
            "auditor@firm.example",
        ],
        None,
    );
    assert!(ok && out.contains("cki_"), "{out}{err}");
    let (ok, out, err) = cli(&["assessments", "list"], None);
    assert!(
        ok && out.starts_with("ASSESSMENT") && out.contains("SOC 2 Type II"),
        "{out}{err}"
    );
    let (ok, out, err) = cli(&["assessments", "export", aid, "--format", "csv"], None);
    assert!(
        ok && out.starts_with("assessment_id,evidence_id"),
        "{out}{err}"
    );
    let (ok, out, err) = cli(&["assessments", "export", aid, "--format", "oscal"], None);
    assert!(ok, "{err}");
    let results: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        results["assessment-results"]["metadata"]["oscal-version"],
        "1.1.2"
    );
    let package = dir.path().join("package.zip");
    let (ok, _, err) = cli(
        &[
            "assessments",
            "export",
            aid,
            "--format",
            "zip",
            "--output",
            package.to_str().expect("path"),
        ],
        None,
    );
    assert!(ok, "{err}");
    assert!(std::fs::read(&package).expect("zip").starts_with(b"PK"));

    // The demo's own simulator, in its process.
    let sim_http = cloudkeep_testkit::sim::trusting(
        &std::fs::read(info["ca"].as_str().expect("ca")).expect("ca"),
    );
    let scenario: Value = sim_http
        .get(format!(
            "{}/_sim/scenario",
            info["sim_url"].as_str().expect("sim")
        ))
        .send()
        .await
        .expect("scenario")
        .json()
        .await
        .expect("json");
    let tenant = &scenario["tenants"][0];
    let reader = tenant["service_principals"]
        .as_array()
        .expect("principals")
        .iter()
        .find(|p| p["key"] == "reader-only")
        .cloned()
        .expect("reader-only");
    let add = [
        "connections",
        "add",
        "--name",
        "Readers",
        "--tenant-id",
        tenant["tenant_id"].as_str().expect("tid"),
        "--client-id",
        reader["client_id"].as_str().expect("cid"),
        "--json",
    ];
    let (ok, _, err) = cli(&add, None);
    assert!(
        !ok && err.contains("CLOUDKEEP_CLIENT_SECRET"),
        "a secret is required: {err}"
    );
    let (ok, _, err) = cli(&add, Some("wrong-secret"));
    assert!(!ok && err.contains("wrong_secret"), "{err}");
    // The demo's connection holds the tenant's subscriptions: a second
    // connection over them is refused, naming it, until it is revoked.
    let (ok, _, err) = cli(&add, reader["client_secret"].as_str());
    assert!(
        !ok && err.contains("already connected") && err.contains(first),
        "one live connection per subscription: {err}"
    );
    let (ok, out, err) = cli(&["connections", "revoke", first], None);
    assert!(ok && out.contains("revoked"), "{out}{err}");
    let (ok, out, err) = cli(&add, reader["client_secret"].as_str());
    assert!(ok, "{err}");
    let created: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(created["subscriptions"][0]["sync_level"], "read_tags_only");
    let sub = created["subscriptions"][0]["id"].as_str().expect("sub");
    let (ok, out, err) = cli(&["subscriptions", "set-level", sub, "no_tags"], None);
    assert!(ok && out.contains("sync level no_tags"), "{out}{err}");
    let (ok, _, err) = cli(&["subscriptions", "set-level", sub, "all-of-it"], None);
    assert!(!ok && err.contains("read_write_tags"), "{err}");
    let id = created["id"].as_str().expect("id");
    let (ok, out, err) = cli(&["connections", "revoke", id], None);
    assert!(ok && out.contains("revoked"), "{out}{err}");
    let (ok, out, _) = cli(&["connections", "list", "--json"], None);
    assert!(ok);
    let list: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(2));
}

/// A `serve` process killed (SIGKILL) in the middle of writing tag edits
/// back, then restarted: every edit ends applied, and none is written twice.
#[tokio::test]
async fn a_killed_write_back_resumes_without_writing_twice() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let data_arg = data.to_str().expect("path").to_string();
    let token = create_org("Kill", "kill@example.com", &["--data-dir", &data_arg])["api_token"]
        .as_str()
        .expect("token")
        .to_string();
    let sim = Sim::start().await;
    let mut server = Serve::new(&sim, &["--data-dir", &data_arg]).env("CLOUDKEEP_SCHEDULER", "off");
    server.start().await;
    let url = server.url.clone();
    let conn = Api::new(&url, &token)
        .connect(
            "c",
            harness::tenant(&sim),
            &harness::principal(&sim, "collector"),
        )
        .await;
    let api = reqwest::Client::new();
    let id = conn["id"].as_str().expect("id").to_string();
    let sync = |api: reqwest::Client, url: String, token: String, id: String| async move {
        api.post(format!("{url}/api/v1/connections/{id}/sync"))
            .bearer_auth(&token)
            .send()
            .await
    };
    assert!(
        sync(api.clone(), url.clone(), token.clone(), id.clone())
            .await
            .expect("first sync")
            .status()
            .is_success()
    );
    // Edit every resource of one subscription; make each Azure call slow.
    let sub = conn["subscriptions"][0]["id"].as_str().expect("sub");
    let edits: Value = api
        .post(format!("{url}/api/v1/tag-edits"))
        .bearer_auth(&token)
        .json(&json!({"filter": {"subscription": sub}, "set": {"survived": "kill"}}))
        .send()
        .await
        .expect("edit")
        .json()
        .await
        .expect("json");
    let total = edits["edits"].as_array().map(Vec::len).expect("edits");
    assert!(total >= 50, "{total}");
    sim.faults(json!({"latency_ms": 20})).await;
    let since = sim.last_seq().await;

    // Start the write-back and kill the server part-way through it.
    let running = tokio::spawn(sync(api.clone(), url.clone(), token.clone(), id.clone()));
    eventually(
        Duration::from_secs(20),
        "the write-back under way",
        || async {
            let log = sim.requests(since).await;
            let patches = log.iter().filter(|e| e["method"] == "PATCH").count();
            if patches >= total / 3 {
                Ok(())
            } else {
                Err(format!("{patches} PATCHes so far"))
            }
        },
    )
    .await;
    server.kill();
    assert!(
        running.await.expect("task").is_err(),
        "the request died with the server"
    );
    let log = sim.requests(since).await;
    let before_restart = log.iter().filter(|e| e["method"] == "PATCH").count();
    assert!(
        before_restart < total,
        "killed before the end ({before_restart} of {total})"
    );

    server.start().await;
    // The killed run stops beating; once it counts as lost (30 s), a new
    // start marks it interrupted and runs. Until then a start is refused.
    let resumed: Value = eventually(
        Duration::from_secs(90),
        "a sync starts once the killed run is lost",
        || async {
            let r = sync(api.clone(), url.clone(), token.clone(), id.clone())
                .await
                .map_err(|e| e.to_string())?;
            let status = r.status();
            let body: Value = r.json().await.map_err(|e| e.to_string())?;
            if status == reqwest::StatusCode::CONFLICT {
                assert_eq!(body["error"]["code"], "sync_running", "{body}");
                Err(format!("{body}"))
            } else {
                Ok(body)
            }
        },
    )
    .await;
    assert_eq!(resumed["status"], "succeeded", "{resumed}");
    let runs: Value = api
        .get(format!("{url}/api/v1/sync-runs?connection={id}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("runs")
        .json()
        .await
        .expect("json");
    assert!(
        runs["items"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["status"] == "interrupted")),
        "the killed run is marked interrupted: {runs}"
    );
    let edits: Value = api
        .get(format!("{url}/api/v1/tag-edits?limit=1000"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("edits")
        .json()
        .await
        .expect("json");
    let states: Vec<&str> = edits["items"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|e| e["state"].as_str())
        .collect();
    assert_eq!(states.len(), total);
    assert!(
        states.iter().all(|s| *s == "applied"),
        "{}",
        resumed["report"]
    );
    let log = sim.requests(since).await;
    let mut per_resource = std::collections::HashMap::new();
    for e in log
        .iter()
        .filter(|e| e["method"] == "PATCH" && e["status"] == 200)
    {
        *per_resource
            .entry(e["path"].as_str().expect("path").to_string())
            .or_insert(0) += 1;
    }
    assert_eq!(per_resource.len(), total, "every resource written");
    assert!(
        per_resource.values().all(|n| *n == 1),
        "no edit applied twice: {:?}",
        per_resource.values().filter(|n| **n > 1).count()
    );
}
