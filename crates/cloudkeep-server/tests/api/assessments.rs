//! Assessments end to end: built from a real sync's evidence, approved by
//! an auditor and then refused any change with a 409 that says why,
//! sampled reproducibly, exported (CSV, JSON, OSCAL, the audit package);
//! what an auditor reads with and without an owner's grant; invitations
//! that read one assessment until they expire or are revoked; the
//! retention window, and the scheduler's purge that keeps approved evidence.

use std::io::Read;

use chrono::{Duration, Utc};
use cloudkeep_domain::{Clock, ManualClock, Role};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::evidence::{sync_ok, synced};
use crate::harness::{App, Org, spawn_app, spawn_app_on};

fn period(days_before: i64, days_after: i64, now: chrono::DateTime<Utc>) -> (String, String) {
    (
        (now - Duration::days(days_before)).to_rfc3339(),
        (now + Duration::days(days_after)).to_rfc3339(),
    )
}

/// A draft over the last day and the next, of CC6.1 and CC6.6, with
/// everything in scope attached; answers it.
async fn assessment(app: &App, org: &Org, now: chrono::DateTime<Utc>) -> Value {
    let (start, end) = period(1, 1, now);
    let a = app
        .expect(
            &org.token,
            Method::POST,
            "/api/v1/assessments",
            Some(
                json!({"name": "SOC 2 Type II", "period_start": start, "period_end": end,
                "controls": ["CC6.1", "CC6.6"]}),
            ),
            StatusCode::CREATED,
        )
        .await;
    let id = a["id"].as_str().expect("id");
    let attached = app
        .expect(
            &org.token,
            Method::POST,
            &format!("/api/v1/assessments/{id}/evidence"),
            Some(json!({"all_in_scope": true})),
            StatusCode::OK,
        )
        .await;
    assert!(
        attached["changed"].as_u64().expect("changed") > 0,
        "{attached}"
    );
    attached["assessment"].clone()
}

fn error_says(body: &Value, words: &str) {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(words), "{body}");
}

async fn audit_actions(app: &App, org: &Org) -> Vec<String> {
    app.list(&org.token, "/api/v1/audit")
        .await
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn an_assessment_is_built_approved_frozen_and_exported() {
    let app = spawn_app().await;
    let org = app.org("assess").await;
    let connection = synced(&app, &org, "collector").await;

    // A period that ends before it starts changes nothing.
    let (start, end) = period(1, 1, Utc::now());
    let (status, body) = app
        .call(
            &org.token,
            Method::POST,
            "/api/v1/assessments",
            Some(
                json!({"name": "backwards", "period_start": end, "period_end": start,
                "controls": ["CC6.1"]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    error_says(&body, "before it starts");
    assert!(app.list(&org.token, "/api/v1/assessments").await.is_empty());

    let a = assessment(&app, &org, Utc::now()).await;
    let id = a["id"].as_str().expect("id").to_string();
    let attached = a["evidence"].as_u64().expect("evidence");
    let rows = app
        .list(&org.token, &format!("/api/v1/assessments/{id}/evidence"))
        .await;
    assert_eq!(rows.len() as u64, attached);
    let checks: Vec<&str> = a["scope"]
        .as_array()
        .expect("scope")
        .iter()
        .flat_map(|c| c["checks"].as_array().expect("checks"))
        .filter_map(Value::as_str)
        .collect();
    assert!(
        rows.iter()
            .all(|r| checks.contains(&r["check"].as_str().unwrap_or("")))
    );
    assert!(
        rows.iter().all(|r| r["check"] != "defender.secure_score"),
        "CC7.1's checks are out of scope"
    );

    // Who may do what.
    let editor = app.member(&org, Role::Editor).await;
    let admin = app.member(&org, Role::Admin).await;
    let auditor = app.member(&org, Role::Auditor).await;
    let viewer = app.member(&org, Role::Viewer).await;
    app.expect(
        &viewer,
        Method::GET,
        &format!("/api/v1/assessments/{id}"),
        None,
        StatusCode::OK,
    )
    .await;
    app.expect(
        &editor,
        Method::POST,
        &format!("/api/v1/assessments/{id}/evidence"),
        Some(json!({"all_in_scope": true})),
        StatusCode::FORBIDDEN,
    )
    .await;
    app.expect(
        &admin,
        Method::POST,
        &format!("/api/v1/assessments/{id}/approve"),
        None,
        StatusCode::FORBIDDEN,
    )
    .await;
    // Detach one row and put it back, while a draft.
    let row_id = rows[0]["id"].as_str().expect("row");
    let detached = app
        .expect(
            &org.token,
            Method::DELETE,
            &format!("/api/v1/assessments/{id}/evidence/{row_id}"),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(detached["assessment"]["evidence"], attached - 1);
    app.expect(
        &org.token,
        Method::POST,
        &format!("/api/v1/assessments/{id}/evidence"),
        Some(json!({"evidence": [row_id]})),
        StatusCode::OK,
    )
    .await;

    let approved = app
        .expect(
            &auditor,
            Method::POST,
            &format!("/api/v1/assessments/{id}/approve"),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(approved["state"], "approved");
    assert!(
        approved["approved_by"]
            .as_str()
            .expect("by")
            .starts_with("token:")
    );
    let (status, body) = app
        .call(
            &auditor,
            Method::POST,
            &format!("/api/v1/assessments/{id}/approve"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    error_says(&body, "approved");
    for (method, path, body) in [
        (
            Method::POST,
            format!("/api/v1/assessments/{id}/evidence"),
            Some(json!({"all_in_scope": true})),
        ),
        (
            Method::DELETE,
            format!("/api/v1/assessments/{id}/evidence/{row_id}"),
            None,
        ),
    ] {
        let (status, answer) = app.call(&org.token, method, &path, body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{path}: {answer}");
        error_says(&answer, "immutable");
    }
    let after = app
        .expect(
            &org.token,
            Method::GET,
            &format!("/api/v1/assessments/{id}"),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(after["evidence"], attached, "nothing changed");
    assert_eq!(after["changed_after_approval"], json!([]));

    // Type II: a population and a sample the auditor can redraw.
    let population = app
        .expect(
            &auditor,
            Method::GET,
            &format!("/api/v1/assessments/{id}/population?control=CC6.6"),
            None,
            StatusCode::OK,
        )
        .await;
    let size = population["size"].as_u64().expect("size");
    assert!(size > 2, "{population}");
    let draw = |seed: Option<&str>| {
        let body = match seed {
            Some(s) => json!({"control": "CC6.6", "size": 2, "seed": s}),
            None => json!({"control": "CC6.6", "size": 2}),
        };
        let (app, auditor, id) = (&app, auditor.clone(), id.clone());
        async move {
            app.expect(
                &auditor,
                Method::POST,
                &format!("/api/v1/assessments/{id}/samples"),
                Some(body),
                StatusCode::CREATED,
            )
            .await
        }
    };
    let first = draw(None).await;
    let seed = first["seed"].as_str().expect("seed").to_string();
    let redo = draw(Some(&seed)).await;
    assert_eq!(redo["evidence"], first["evidence"]);
    assert_eq!(redo["population_hash"], population["population_hash"]);
    let (status, body) = app
        .call(
            &auditor,
            Method::POST,
            &format!("/api/v1/assessments/{id}/samples"),
            Some(json!({"control": "CC7.1", "size": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Exports.
    let get = |format: &str| {
        let (app, id, token) = (&app, id.clone(), auditor.clone());
        let format = format.to_string();
        async move {
            let r = app
                .http
                .get(format!(
                    "{}/api/v1/assessments/{id}/export?format={format}",
                    app.url
                ))
                .bearer_auth(token)
                .send()
                .await
                .expect("export");
            assert_eq!(r.status(), StatusCode::OK, "{format}");
            r.bytes().await.expect("body").to_vec()
        }
    };
    let csv = String::from_utf8(get("csv").await).expect("utf-8");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("assessment_id,evidence_id,controls,check"));
    assert_eq!(lines.len() as u64, attached + 1);
    let exported: Value = serde_json::from_slice(&get("json").await).expect("json");
    assert_eq!(
        exported["evidence"].as_array().expect("rows").len() as u64,
        attached
    );
    assert_eq!(exported["samples"].as_array().expect("samples").len(), 2);
    let results: Value = serde_json::from_slice(&get("oscal").await).expect("oscal");
    let ar = &results["assessment-results"];
    assert_eq!(ar["metadata"]["oscal-version"], "1.1.2");
    assert_eq!(ar["import-ap"]["href"], "assessment-plan.json");
    assert_eq!(
        ar["results"][0]["observations"]
            .as_array()
            .expect("obs")
            .len() as u64,
        attached
    );
    assert_eq!(
        ar["results"][0]["findings"]
            .as_array()
            .expect("findings")
            .len(),
        2
    );
    let again: Value = serde_json::from_slice(&get("oscal").await).expect("oscal");
    assert_eq!(
        again, results,
        "an approved assessment's documents do not change"
    );
    let zip = get("zip").await;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("zip");
    let mut names: Vec<String> = archive.file_names().map(str::to_string).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "assessment.json",
            "audit/events.jsonl",
            "audit/verification.json",
            "evidence.csv",
            "manifest.json",
            "oscal/assessment-plan.json",
            "oscal/assessment-results.json",
            "oscal/catalog.json",
        ]
    );
    let mut verification = String::new();
    archive
        .by_name("audit/verification.json")
        .expect("verification")
        .read_to_string(&mut verification)
        .expect("read");
    let verification: Value = serde_json::from_str(&verification).expect("json");
    assert_eq!(verification["intact"], true);
    let mut events = String::new();
    archive
        .by_name("audit/events.jsonl")
        .expect("events")
        .read_to_string(&mut events)
        .expect("read");
    assert!(events.contains("\"assessment.approved\""));
    assert!(
        events.contains("\"connection.created\""),
        "an auditor's package holds the period's whole log"
    );
    let (status, body) = app
        .call(
            &auditor,
            Method::GET,
            &format!("/api/v1/assessments/{id}/export?format=pdf"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Approval closed the attested rows still current at its instant (their
    // states go on in new rows), so no later sync moves them.
    for r in exported["evidence"].as_array().expect("rows") {
        assert_eq!(r["valid_to"], approved["approved_at"], "{r}");
    }

    // Azure changes after approval: the next sync's evidence is new, the
    // attested row stays, and the assessment says what changed.
    let attested = rows
        .iter()
        .find(|r| r["check"] == "storage.https_only")
        .expect("an account's https_only row");
    let account = attested["subject"].as_str().expect("subject");
    let flipped = attested["result"] != "pass";
    app.sim
        .control_ok(
            Method::PATCH,
            &format!("/_sim/storage-accounts{account}"),
            json!({"supportsHttpsTrafficOnly": flipped}),
        )
        .await;
    sync_ok(&app, &org, &connection).await;
    let after = app
        .expect(
            &auditor,
            Method::GET,
            &format!("/api/v1/assessments/{id}"),
            None,
            StatusCode::OK,
        )
        .await;
    let changes = after["changed_after_approval"].as_array().expect("changes");
    assert_eq!(changes.len(), 1, "{after}");
    assert_eq!(changes[0]["attested"], attested["id"]);
    assert_ne!(changes[0]["later"]["result"], attested["result"]);
    assert_eq!(after["evidence"], attached, "nothing edited in");
    let exported_after: Value = serde_json::from_slice(&get("json").await).expect("json");
    assert_eq!(
        exported_after["evidence"], exported["evidence"],
        "the attested rows, unchanged and extended alike, are exported as approved"
    );
    let csv = String::from_utf8(get("csv").await).expect("utf-8");
    let line = csv
        .lines()
        .find(|l| l.contains(attested["id"].as_str().expect("id")))
        .expect("the attested row");
    assert!(line.ends_with(",true"), "{line}");
    assert!(
        line.contains(attested["result"].as_str().expect("result")),
        "{line}"
    );

    let actions = audit_actions(&app, &org).await;
    for action in [
        "assessment.created",
        "assessment.evidence_attached",
        "assessment.evidence_detached",
        "assessment.approved",
        "assessment.sample_drawn",
        "assessment.exported",
    ] {
        assert!(actions.iter().any(|a| a == action), "{action}");
    }
}

#[tokio::test]
async fn auditors_read_evidence_and_assessments_but_the_data_only_when_granted() {
    let app = spawn_app().await;
    let org = app.org("auditors").await;
    synced(&app, &org, "collector").await;
    let auditor = app.member(&org, Role::Auditor).await;
    for path in [
        "/api/v1/evidence",
        "/api/v1/controls",
        "/api/v1/assessments",
        "/api/v1/audit",
        "/api/v1/settings/retention",
    ] {
        app.expect(&auditor, Method::GET, path, None, StatusCode::OK)
            .await;
    }
    for path in [
        "/api/v1/resources",
        "/api/v1/connections",
        "/api/v1/sync-runs",
    ] {
        app.expect(&auditor, Method::GET, path, None, StatusCode::FORBIDDEN)
            .await;
    }
    let (_, me) = app.call(&auditor, Method::GET, "/api/v1/me", None).await;
    let auditor_id = me["user"]["id"].as_str().expect("id").to_string();
    let admin = app.member(&org, Role::Admin).await;
    app.expect(
        &admin,
        Method::PUT,
        &format!("/api/v1/users/{auditor_id}/data-access"),
        Some(json!({"granted": true})),
        StatusCode::FORBIDDEN,
    )
    .await;
    let granted = app
        .expect(
            &org.token,
            Method::PUT,
            &format!("/api/v1/users/{auditor_id}/data-access"),
            Some(json!({"granted": true})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(granted["data_access"], true);
    app.expect(
        &auditor,
        Method::GET,
        "/api/v1/resources",
        None,
        StatusCode::OK,
    )
    .await;
    // Reading is all a grant gives.
    app.expect(
        &auditor,
        Method::POST,
        "/api/v1/tag-edits",
        Some(json!({"resource_id": uuid::Uuid::nil(), "set": {"x": "y"}})),
        StatusCode::FORBIDDEN,
    )
    .await;
    app.expect(
        &org.token,
        Method::PUT,
        &format!("/api/v1/users/{auditor_id}/data-access"),
        Some(json!({"granted": false})),
        StatusCode::OK,
    )
    .await;
    app.expect(
        &auditor,
        Method::GET,
        "/api/v1/resources",
        None,
        StatusCode::FORBIDDEN,
    )
    .await;
    // Only an auditor's access is granted.
    let (_, owner_me) = app.call(&org.token, Method::GET, "/api/v1/me", None).await;
    let (status, body) = app
        .call(
            &org.token,
            Method::PUT,
            &format!(
                "/api/v1/users/{}/data-access",
                owner_me["user"]["id"].as_str().expect("id")
            ),
            Some(json!({"granted": true})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let actions = audit_actions(&app, &org).await;
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "user.data_access_changed")
            .count(),
        2
    );
}

#[tokio::test]
async fn an_invitation_reads_one_assessment_until_it_expires_or_is_revoked() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_on(&clock).await;
    let org = app.org("invite").await;
    synced(&app, &org, "collector").await;
    let a = assessment(&app, &org, clock.now()).await;
    let other = assessment(&app, &org, clock.now()).await;
    let id = a["id"].as_str().expect("id").to_string();
    let other_id = other["id"].as_str().expect("id").to_string();
    let admin = app.member(&org, Role::Admin).await;
    app.expect(
        &admin,
        Method::POST,
        &format!("/api/v1/assessments/{id}/invitations"),
        Some(json!({"email": "auditor@firm.example"})),
        StatusCode::FORBIDDEN,
    )
    .await;
    let invited = app
        .expect(
            &org.token,
            Method::POST,
            &format!("/api/v1/assessments/{id}/invitations"),
            Some(json!({"email": "auditor@firm.example"})),
            StatusCode::CREATED,
        )
        .await;
    let secret = invited["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("cki_"));
    let expires: chrono::DateTime<Utc> = invited["invitation"]["expires_at"]
        .as_str()
        .expect("expires")
        .parse()
        .expect("time");
    assert_eq!(
        (expires - clock.now() + Duration::seconds(1)).num_days(),
        30,
        "30 days by default"
    );

    for path in [
        format!("/api/v1/assessments/{id}"),
        format!("/api/v1/assessments/{id}/evidence"),
        format!("/api/v1/assessments/{id}/samples"),
        format!("/api/v1/assessments/{id}/population?control=CC6.1"),
        format!("/api/v1/assessments/{id}/export?format=json"),
    ] {
        app.expect(&secret, Method::GET, &path, None, StatusCode::OK)
            .await;
    }
    // Its audit package holds the assessment's own events, not the log.
    let zip = app
        .http
        .get(format!(
            "{}/api/v1/assessments/{id}/export?format=zip",
            app.url
        ))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("export")
        .bytes()
        .await
        .expect("zip");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip.to_vec())).expect("zip");
    let mut events = String::new();
    archive
        .by_name("audit/events.jsonl")
        .expect("events")
        .read_to_string(&mut events)
        .expect("read");
    let targets: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("event")["target"].clone())
        .collect();
    assert!(!targets.is_empty());
    assert!(
        targets.iter().all(|t| *t == format!("assessment:{id}")),
        "{targets:?}"
    );
    // Nothing outside that assessment.
    app.expect(
        &secret,
        Method::GET,
        &format!("/api/v1/assessments/{other_id}"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    for path in [
        "/api/v1/assessments",
        "/api/v1/evidence",
        "/api/v1/audit",
        "/api/v1/resources",
        "/api/v1/me",
    ] {
        app.expect(&secret, Method::GET, path, None, StatusCode::UNAUTHORIZED)
            .await;
    }
    for (method, path) in [
        (Method::POST, format!("/api/v1/assessments/{id}/approve")),
        (
            Method::POST,
            format!("/api/v1/assessments/{id}/invitations"),
        ),
    ] {
        app.expect(
            &secret,
            method,
            &path,
            Some(json!({})),
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }

    clock.advance(Duration::days(30));
    let (status, body) = app
        .call(
            &secret,
            Method::GET,
            &format!("/api/v1/assessments/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    error_says(&body, "expired");
    let invitation_id = invited["invitation"]["id"].as_str().expect("id");
    let (status, body) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/assessments/{id}/invitations/{invitation_id}/revoke"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    error_says(&body, "expired");

    let second = app
        .expect(
            &org.token,
            Method::POST,
            &format!("/api/v1/assessments/{id}/invitations"),
            Some(json!({"email": "auditor@firm.example", "days": 7})),
            StatusCode::CREATED,
        )
        .await;
    let secret2 = second["secret"].as_str().expect("secret").to_string();
    app.expect(
        &secret2,
        Method::GET,
        &format!("/api/v1/assessments/{id}"),
        None,
        StatusCode::OK,
    )
    .await;
    app.expect(
        &org.token,
        Method::POST,
        &format!(
            "/api/v1/assessments/{id}/invitations/{}/revoke",
            second["invitation"]["id"].as_str().expect("id")
        ),
        None,
        StatusCode::OK,
    )
    .await;
    let (status, body) = app
        .call(
            &secret2,
            Method::GET,
            &format!("/api/v1/assessments/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    error_says(&body, "revoked");
    let listed = app
        .expect(
            &org.token,
            Method::GET,
            &format!("/api/v1/assessments/{id}/invitations"),
            None,
            StatusCode::OK,
        )
        .await;
    let states: Vec<&str> = listed
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|i| i["state"].as_str())
        .collect();
    assert_eq!(states, ["expired", "revoked"]);
    let actions = audit_actions(&app, &org).await;
    assert!(actions.iter().any(|a| a == "assessment.invitation_created"));
    assert!(actions.iter().any(|a| a == "assessment.invitation_revoked"));
    let exported_by_invitation = app
        .list(&org.token, "/api/v1/audit?action=assessment.exported")
        .await;
    assert!(
        exported_by_invitation[0]["actor"]
            .as_str()
            .expect("actor")
            .starts_with("invitation:")
    );
}

#[tokio::test]
async fn a_revoked_connections_evidence_is_kept_for_the_window_and_approved_evidence_beyond() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_on(&clock).await;
    let org = app.org("retention").await;
    let connection = synced(&app, &org, "collector").await;
    let viewer = app.member(&org, Role::Viewer).await;
    app.expect(
        &viewer,
        Method::PATCH,
        "/api/v1/settings/retention",
        Some(json!({"days": 90})),
        StatusCode::FORBIDDEN,
    )
    .await;
    let (status, body) = app
        .call(
            &org.token,
            Method::PATCH,
            "/api/v1/settings/retention",
            Some(json!({"days": 7})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let set = app
        .expect(
            &org.token,
            Method::PATCH,
            "/api/v1/settings/retention",
            Some(json!({"days": 90})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(set["days"], 90);

    let a = assessment(&app, &org, clock.now()).await;
    let id = a["id"].as_str().expect("id");
    let attested = a["evidence"].as_u64().expect("evidence");
    app.expect(
        &org.token,
        Method::POST,
        &format!("/api/v1/assessments/{id}/approve"),
        None,
        StatusCode::OK,
    )
    .await;
    let all = app
        .list(
            &org.token,
            &format!("/api/v1/evidence?connection={connection}&current=false"),
        )
        .await
        .len() as u64;
    assert!(all > attested, "CC7.1's evidence is not attested");
    app.expect(
        &org.token,
        Method::DELETE,
        &format!("/api/v1/connections/{connection}"),
        None,
        StatusCode::OK,
    )
    .await;

    // Inside the window, the revoked connection's evidence and runs are read.
    clock.advance(Duration::days(89));
    let scheduler = app.scheduler();
    let tick = scheduler.tick().await.expect("tick");
    assert_eq!(tick.purged, 0, "{tick:?}");
    let kept = app
        .list(
            &org.token,
            &format!("/api/v1/evidence?connection={connection}&current=false"),
        )
        .await;
    assert_eq!(kept.len() as u64, all);
    assert!(!app.list(&org.token, "/api/v1/sync-runs").await.is_empty());

    // Past it, the scheduler's job purges all but the attested rows.
    clock.advance(Duration::days(2));
    let tick = scheduler.tick().await.expect("tick");
    assert!(tick.purged > 0, "{tick:?}");
    let left = app
        .list(
            &org.token,
            &format!("/api/v1/evidence?connection={connection}&current=false"),
        )
        .await;
    assert_eq!(left.len() as u64, attested);
    assert!(app.list(&org.token, "/api/v1/sync-runs").await.is_empty());
    let after = app
        .expect(
            &org.token,
            Method::GET,
            &format!("/api/v1/assessments/{id}"),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(after["evidence"], attested);
    let purged = app
        .list(&org.token, "/api/v1/audit?action=retention.purged")
        .await;
    let sum: u64 = purged
        .iter()
        .map(|e| e["details"]["evidence"].as_u64().expect("count"))
        .sum();
    assert_eq!(sum, all - attested);
    assert_eq!(
        scheduler.tick().await.expect("tick").purged,
        0,
        "the next pass has nothing to do"
    );
}
