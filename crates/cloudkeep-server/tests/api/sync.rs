//! Syncing inventory and tags against the simulator: sync levels (checked
//! in the simulator's request log), tag history, deletions, and failures
//! that become state.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{App, Org, spawn_app};

async fn sync(app: &App, org: &Org, connection: &str) -> Value {
    let (status, run) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/connections/{connection}/sync"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    run
}

async fn all_resources(app: &App, org: &Org, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/api/v1/resources?limit=40&after={a}&{query}"),
            None => format!("/api/v1/resources?limit=40&{query}"),
        };
        let (status, page) = app.call(&org.token, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        out.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => return out,
        }
    }
}

fn level_of(conn: &Value, azure_id: &str) -> String {
    conn["subscriptions"]
        .as_array()
        .expect("subs")
        .iter()
        .find(|s| s["subscription_id"] == azure_id)
        .expect("sub")["id"]
        .as_str()
        .expect("id")
        .to_string()
}

#[tokio::test]
async fn sync_levels_decide_what_is_read() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    let subs = app.subscription_ids();
    let levels = ["no_resources", "no_tags", "read_tags_only"];
    for (sub, level) in subs.iter().zip(levels) {
        let (status, _) = app
            .call(
                &org.token,
                Method::PATCH,
                &format!("/api/v1/subscriptions/{}", level_of(&conn, sub)),
                Some(json!({"sync_level": level})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let since = app.sim.last_seq().await;
    let run = sync(&app, &org, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let log = app.sim.requests(since).await;
    let touches = |sub: &str| {
        log.iter()
            .filter(|e| {
                e["path"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with(&format!("/subscriptions/{sub}"))
            })
            // Evidence of the subscription's own access and Defender
            // configuration, and its spend, are read at every level.
            .filter(|e| {
                let path = e["path"].as_str().unwrap_or("");
                !path.contains("/providers/Microsoft.Authorization/")
                    && !path.contains("/providers/Microsoft.Security/")
                    && !path.contains("/providers/Microsoft.CostManagement/")
            })
            .count()
    };
    assert_eq!(
        touches(&subs[0]),
        0,
        "no_resources reads no resource of the subscription"
    );
    assert!(touches(&subs[1]) > 0 && touches(&subs[2]) > 0);
    assert!(
        log.iter().all(|e| e["method"] == "GET"
            || e["method"] == "POST" && e["path"].as_str().unwrap_or("").ends_with("/token")
            // A cost query is a read POSTed.
            || e["method"] == "POST" && e["path"].as_str().unwrap_or("").ends_with("/Microsoft.CostManagement/query")),
        "a sync only reads: {log:?}"
    );
    assert!(
        log.iter()
            .all(|e| !e["path"].as_str().unwrap_or("").contains("/tags/default")),
        "no tag writes without read_write_tags"
    );

    let counts = |i: usize| {
        app.sim.scenario.raw["tenants"][0]["subscriptions"][i]["resource_count"]
            .as_u64()
            .expect("count") as usize
    };
    let sub_row = |i: usize| level_of(&conn, &subs[i]);
    let none = all_resources(&app, &org, &format!("subscription={}", sub_row(0))).await;
    assert!(none.is_empty());
    let untagged = all_resources(&app, &org, &format!("subscription={}", sub_row(1))).await;
    assert_eq!(untagged.len(), counts(1));
    assert!(
        untagged
            .iter()
            .all(|r| r.get("tags").is_none_or(Value::is_null)),
        "no_tags stores no tags"
    );
    let tagged = all_resources(&app, &org, &format!("subscription={}", sub_row(2))).await;
    assert_eq!(tagged.len(), counts(2));
    assert!(tagged.iter().all(|r| r["tags"].is_object()));
    assert!(
        tagged
            .iter()
            .any(|r| r["tags"].as_object().is_some_and(|t| !t.is_empty()))
    );
    let report = cloudkeep_testkit::report(&run);
    let skipped = report.step(&subs[0], "inventory").expect("step");
    assert_eq!(skipped.state, cloudkeep_domain::StepState::Skipped);
    assert_eq!(skipped.reason.as_deref(), Some("sync level no_resources"));
    assert_eq!(
        cloudkeep_testkit::figure(&run, &subs[2], "inventory", "seen"),
        Some(counts(2) as u64)
    );

    // Filters.
    let with_owner = all_resources(
        &app,
        &org,
        &format!("subscription={}&has_tag=owner", sub_row(2)),
    )
    .await;
    let without_owner = all_resources(
        &app,
        &org,
        &format!("subscription={}&missing_tag=owner", sub_row(2)),
    )
    .await;
    assert_eq!(with_owner.len() + without_owner.len(), counts(2));
    assert!(!with_owner.is_empty());
    let disks = all_resources(&app, &org, "type=Microsoft.Compute/disks").await;
    assert!(disks.iter().all(|r| r["type"] == "Microsoft.Compute/disks"));
    let (_, connection) = app
        .call(
            &org.token,
            Method::GET,
            &format!("/api/v1/connections/{id}"),
            None,
        )
        .await;
    assert!(connection["last_sync_at"].is_string() && connection["next_sync_at"].is_string());
    let (_, runs) = app
        .call(
            &org.token,
            Method::GET,
            &format!("/api/v1/sync-runs?connection={id}"),
            None,
        )
        .await;
    assert_eq!(runs["items"].as_array().map(Vec::len), Some(1));
    let (_, audit) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/audit?action=sync.completed",
            None,
        )
        .await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn portal_changes_and_deletions_are_observed() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    sync(&app, &org, &id).await;
    let before = all_resources(&app, &org, "").await;
    let total: u64 = app.sim.scenario.raw["tenants"][0]["subscriptions"]
        .as_array()
        .expect("subs")
        .iter()
        .map(|s| s["resource_count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(before.len() as u64, total);
    let changed = before[0].clone();
    let gone = before[1].clone();
    app.sim.control_ok(Method::POST, "/_sim/tags", json!({"resource_id": changed["azure_id"], "operation": "Merge", "tags": {"changed-in": "portal"}})).await;
    let r = app
        .sim
        .http
        .delete(format!("{}/_sim/resources", app.sim.url))
        .query(&[("id", gone["azure_id"].as_str().expect("id"))])
        .send()
        .await
        .expect("delete");
    assert!(r.status().is_success());

    let run = sync(&app, &org, &id).await;
    assert_eq!(run["status"], "succeeded");
    let (_, detail) = app
        .call(
            &org.token,
            Method::GET,
            &format!("/api/v1/resources/{}", changed["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(detail["resource"]["tags"]["changed-in"], "portal");
    let history = detail["tag_history"].as_array().expect("history");
    assert_eq!(history.len(), 1);
    assert!(
        history[0]["old"].get("changed-in").is_none()
            && history[0]["new"]["changed-in"] == "portal"
    );
    let after = all_resources(&app, &org, "").await;
    assert_eq!(
        after.len(),
        before.len() - 1,
        "deleted resources leave the default list"
    );
    let (_, detail) = app
        .call(
            &org.token,
            Method::GET,
            &format!("/api/v1/resources/{}", gone["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert!(
        detail["resource"]["deleted_at"].is_string(),
        "and are kept, marked deleted"
    );
    let with_deleted = all_resources(&app, &org, "include_deleted=true").await;
    assert_eq!(with_deleted.len(), before.len());
    // A third sync with nothing changed records nothing new.
    let run = sync(&app, &org, &id).await;
    let sub = gone["azure_id"]
        .as_str()
        .expect("id")
        .split('/')
        .nth(2)
        .expect("sub")
        .to_string();
    assert_eq!(
        cloudkeep_testkit::figure(&run, &sub, "inventory", "tag_changes"),
        Some(0)
    );
    assert_eq!(
        cloudkeep_testkit::figure(&run, &sub, "inventory", "deleted"),
        Some(0)
    );
}

#[tokio::test]
async fn failures_become_state() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    let collector = app.sim.scenario.raw["tenants"][0]["service_principals"]
        .as_array()
        .expect("principals")
        .iter()
        .find(|p| p["key"] == "collector")
        .cloned()
        .expect("collector");
    let sub = app.subscription_ids()[0].clone();
    for role in ["Reader", "Tag Contributor"] {
        app.sim.control_ok(Method::DELETE, "/_sim/role-assignments", json!({"principal_id": collector["object_id"], "role": role, "scope": format!("/subscriptions/{sub}")})).await;
    }
    let run = sync(&app, &org, &id).await;
    assert_eq!(run["status"], "partial", "{run}");
    let errors = run["report"]["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["kind"], "permission_missing");
    assert_eq!(errors[0]["subscription"], sub.as_str());
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("Microsoft.Resources/subscriptions/resources/read")
    );

    app.sim
        .control_ok(
            Method::POST,
            "/_sim/secrets/expire",
            json!({"client_id": collector["client_id"]}),
        )
        .await;
    let run = sync(&app, &org, &id).await;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["report"]["errors"][0]["kind"], "credential_rejected");
    let (_, connection) = app
        .call(
            &org.token,
            Method::GET,
            &format!("/api/v1/connections/{id}"),
            None,
        )
        .await;
    assert_eq!(connection["status"], "needs_reauth");
    assert!(
        connection["status_detail"]
            .as_str()
            .unwrap_or("")
            .contains("7000222")
    );
    let (_, audit) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/audit?action=sync.failed",
            None,
        )
        .await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1));

    let (status, _) = app
        .call(
            &org.token,
            Method::DELETE,
            &format!("/api/v1/connections/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/connections/{id}/sync"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("revoked"))
    );
}

#[tokio::test]
async fn a_sync_through_5xx_and_429_faults_reads_the_same_data() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    let clean = sync(&app, &org, &id).await;
    let clean_resources = all_resources(&app, &org, "").await.len();
    // 5% of calls answered 500, 5% answered 429, some connections dropped.
    app.sim
        .control_ok(
            Method::PUT,
            "/_sim/faults",
            json!({"rate_500": 0.05, "rate_429": 0.05, "rate_drop": 0.02}),
        )
        .await;
    let faulty = sync(&app, &org, &id).await;
    assert_eq!(faulty["status"], "succeeded", "{faulty}");
    assert_eq!(all_resources(&app, &org, "").await.len(), clean_resources);
    for sub in &cloudkeep_testkit::report(&clean).subscriptions {
        let sub = &sub.subscription_id;
        assert_eq!(
            cloudkeep_testkit::figure(&faulty, sub, "inventory", "seen"),
            cloudkeep_testkit::figure(&clean, sub, "inventory", "seen"),
            "{sub}"
        );
        assert_eq!(
            cloudkeep_testkit::figure(&faulty, sub, "inventory", "deleted"),
            Some(0),
            "nothing lost to a fault"
        );
    }
    // Tokens that expire mid-run: each sync gets a fresh one.
    app.sim
        .control_ok(
            Method::PUT,
            "/_sim/faults",
            json!({"token_lifetime_secs": 1}),
        )
        .await;
    let again = sync(&app, &org, &id).await;
    assert_eq!(again["status"], "succeeded", "{again}");
}

#[tokio::test]
async fn a_run_started_without_waiting_shows_its_progress() {
    let app = spawn_app().await;
    let org = app.org("progress").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id");
    let subs = app.subscription_ids();
    let slow = subs[subs.len() - 1].to_ascii_lowercase();
    // One subscription's listing is slow, so the others finish first.
    app.sim
        .control_ok(
            Method::PUT,
            "/_sim/faults",
            json!({"latency_ms": 3000, "latency_path": format!("/subscriptions/{slow}/resources")}),
        )
        .await;
    let (status, started) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/connections/{id}/sync?wait=false"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    assert_eq!(started["status"], "running");
    // The plan: every step of every subscription, to come.
    let plan = cloudkeep_testkit::report(&started);
    for sub in &subs {
        for step in ["inventory", "write_back"] {
            assert_eq!(
                plan.step(sub, step).map(|s| s.state),
                Some(cloudkeep_domain::StepState::Pending),
                "{started}"
            );
        }
    }
    let run_path = format!("/api/v1/sync-runs/{}", started["id"].as_str().expect("run"));
    // One run at a time: a second start while it runs is refused, naming it.
    let (status, busy) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/connections/{id}/sync"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{busy}");
    assert_eq!(busy["error"]["code"], "sync_running");
    assert!(
        busy["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&run_path),
        "{busy}"
    );
    let mut saw_partial = false;
    let saw = std::cell::Cell::new(false);
    let done = cloudkeep_testkit::eventually(
        std::time::Duration::from_secs(60),
        "the run ended",
        || async {
            let (status, run) = app.call(&org.token, Method::GET, &run_path, None).await;
            assert_eq!(status, StatusCode::OK, "{run}");
            if run["status"] != "running" {
                return Ok(run);
            }
            let report = cloudkeep_testkit::report(&run);
            let fast_done = subs
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .filter(|s| *s != slow)
                .all(|s| cloudkeep_testkit::figure(&run, &s, "inventory", "seen").is_some());
            let slow_state = report.step(&slow, "inventory").map(|s| s.state);
            if fast_done && slow_state == Some(cloudkeep_domain::StepState::Running) {
                saw.set(true);
            }
            Err(run.to_string())
        },
    )
    .await;
    saw_partial |= saw.get();
    assert!(
        saw_partial,
        "the fast subscriptions were seen done while the slow one ran"
    );
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(
        cloudkeep_testkit::figure(&done, &slow, "inventory", "seen"),
        Some(100)
    );
    assert!(
        !cloudkeep_testkit::report(&done).is_active(),
        "no step is left pending or running: {done}"
    );
}

#[tokio::test]
async fn a_client_that_stops_waiting_does_not_stop_the_run() {
    let app = spawn_app().await;
    let org = app.org("impatient").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id");
    let subs = app.subscription_ids();
    let slow = subs[0].to_ascii_lowercase();
    app.sim
        .control_ok(
            Method::PUT,
            "/_sim/faults",
            json!({"latency_ms": 2000, "latency_path": format!("/subscriptions/{slow}/resources")}),
        )
        .await;
    // The client gives up long before the run ends.
    let gave_up = app
        .http
        .post(format!("{}/api/v1/connections/{id}/sync", app.url))
        .bearer_auth(&org.token)
        .timeout(std::time::Duration::from_millis(300))
        .send()
        .await;
    assert!(gave_up.is_err(), "the client timed out");
    let run = cloudkeep_testkit::eventually(
        std::time::Duration::from_secs(60),
        "the run ended",
        || async {
            let (_, runs) = app
                .call(
                    &org.token,
                    Method::GET,
                    &format!("/api/v1/sync-runs?connection={id}"),
                    None,
                )
                .await;
            let run = runs["items"][0].clone();
            if run["status"] != "running" && !run.is_null() {
                Ok(run)
            } else {
                Err(runs.to_string())
            }
        },
    )
    .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        cloudkeep_testkit::figure(&run, &slow, "inventory", "seen"),
        Some(100)
    );
}

#[tokio::test]
async fn a_listing_that_would_empty_a_subscription_is_read_again_first() {
    let app = spawn_app().await;
    let org = app.org("relist").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    app.sync(&org, &id).await;
    let sub = app.subscription_ids()[0].to_ascii_lowercase();
    let listings = |log: &[Value]| {
        log.iter()
            .filter(|e| {
                e["method"] == "GET"
                    && e["path"].as_str().unwrap_or_default().to_ascii_lowercase()
                        == format!("/subscriptions/{sub}/resources")
                    && !e["query"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("skiptoken")
            })
            .count()
    };

    // Azure answers the subscription's listing empty once (an empty page
    // with a next link, then an empty page): read again, nothing deleted.
    app.sim
        .faults(json!({"empty_listings": 1, "empty_listings_path": format!("/subscriptions/{sub}/resources")}))
        .await;
    let since = app.sim.last_seq().await;
    let run = app.sync(&org, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        cloudkeep_testkit::figure(&run, &sub, "inventory", "deleted"),
        Some(0)
    );
    assert_eq!(
        cloudkeep_testkit::figure(&run, &sub, "inventory", "relisted"),
        Some(1)
    );
    assert_eq!(listings(&app.sim.requests(since).await), 2, "listed twice");
    let live = app.list(&org.token, "/api/v1/resources").await.len();
    assert_eq!(live, 300, "nothing marked deleted");

    // Most of it really gone: both readings agree, and it is applied.
    app.sim.faults(json!({})).await;
    let stored = app.list(&org.token, "/api/v1/resources").await;
    let doomed: Vec<&Value> = stored
        .iter()
        .filter(|r| {
            r["azure_id"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase()
                .contains(&sub)
        })
        .take(60)
        .collect();
    for r in &doomed {
        let (status, _) = app
            .sim
            .control(
                Method::DELETE,
                &format!("/_sim/resources?id={}", r["azure_id"].as_str().expect("id")),
                None,
            )
            .await;
        assert!(status.is_success());
    }
    let since = app.sim.last_seq().await;
    let run = app.sync(&org, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(
        cloudkeep_testkit::figure(&run, &sub, "inventory", "deleted"),
        Some(60)
    );
    assert_eq!(
        cloudkeep_testkit::figure(&run, &sub, "inventory", "relisted"),
        Some(1)
    );
    assert_eq!(listings(&app.sim.requests(since).await), 2);
    assert_eq!(app.list(&org.token, "/api/v1/resources").await.len(), 240);
}
