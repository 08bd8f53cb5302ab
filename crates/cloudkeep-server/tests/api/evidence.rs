//! Security evidence end to end: the four evidence collectors against the
//! simulator, each check's pass, fail and not-collected cases, fingerprint
//! intervals, coverage and its worst-state rule, the control mapping and
//! who may read and change what.

use std::collections::{BTreeMap, BTreeSet};

use cloudkeep_domain::evidence::CheckId;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::{App, Org, spawn_app};

/// Connects the simulated tenant with `key` and syncs it; answers the connection.
async fn synced(app: &App, org: &Org, key: &str) -> Value {
    let conn = app.connect(org, key).await;
    let run = app.sync(org, conn["id"].as_str().expect("id")).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    conn
}

/// Every current evidence row matching `query`.
async fn evidence(app: &App, org: &Org, query: &str) -> Vec<Value> {
    app.list(&org.token, &format!("/api/v1/evidence?{query}"))
        .await
}

#[tokio::test]
async fn the_demo_has_a_passing_and_a_failing_case_of_every_check() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    synced(&app, &org, "collector").await;
    let all = evidence(&app, &org, "").await;
    let mut results: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &all {
        results
            .entry(e["check"].as_str().expect("check").into())
            .or_default()
            .insert(e["result"].as_str().expect("result").into());
    }
    for check in CheckId::ALL {
        let seen = results.get(check.as_str()).cloned().unwrap_or_default();
        if *check == CheckId::RbacGuestUsers {
            assert_eq!(seen, BTreeSet::from(["not_collected".to_string()]));
            continue;
        }
        assert!(
            seen.contains("pass") && seen.contains("fail"),
            "{check}: {seen:?}"
        );
    }
    let guests = evidence(&app, &org, "check=rbac.guest_users").await;
    assert_eq!(guests.len(), 3, "one per subscription");
    assert!(
        guests[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("Microsoft Graph")),
        "{}",
        guests[0]
    );
    let controls = app
        .expect(
            &org.token,
            Method::GET,
            "/api/v1/controls",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(controls["items"].as_array().map(Vec::len), Some(3));
}
