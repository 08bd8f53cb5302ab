//! Tag edits and write-back against the simulator: applied with the Tags
//! API, conflicts kept for the user, unrelated portal changes kept, the
//! sync level obeyed, Azure's tag rules enforced.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{App, Org, spawn_app};

async fn synced(app: &App, org: &Org) -> (String, Value) {
    let conn = app.connect(org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    let (status, run) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/connections/{id}/sync"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    (id, conn)
}

async fn tagged_resource(app: &App, org: &Org, sub_row: &str) -> Value {
    let (_, page) = app
        .call(
            &org.token,
            Method::GET,
            &format!("/api/v1/resources?subscription={sub_row}&has_tag=owner&limit=5"),
            None,
        )
        .await;
    page["items"][0].clone()
}

async fn sim_tags(app: &App, arm_id: &str) -> Value {
    app.sim.tags(arm_id).await
}

#[tokio::test]
async fn edits_are_written_back_and_conflicts_kept() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let (conn_id, conn) = synced(&app, &org).await;
    let sub_row = conn["subscriptions"]
        .as_array()
        .expect("subs")
        .iter()
        .find(|s| s["sync_level"] == "read_write_tags")
        .expect("rw")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let r = tagged_resource(&app, &org, &sub_row).await;
    let (rid, arm) = (
        r["id"].as_str().expect("id").to_string(),
        r["azure_id"].as_str().expect("arm").to_string(),
    );

    // An edit that sets one key and removes another.
    let (status, created) = app
        .call(
            &org.token,
            Method::POST,
            "/api/v1/tag-edits",
            Some(
                json!({"resource_id": rid, "set": {"cost-center": "CC-9000"}, "remove": ["owner"]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["edits"][0]["state"], "pending");
    // Meanwhile someone changes an unrelated key in the portal.
    app.sim
        .control_ok(
            Method::POST,
            "/_sim/tags",
            json!({"resource_id": arm, "operation": "Merge", "tags": {"portal-note": "keep me"}}),
        )
        .await;
    let since = app.sim.last_seq().await;
    let (_, run) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/connections/{conn_id}/sync"),
            None,
        )
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let live = sim_tags(&app, &arm).await;
    assert_eq!(live["cost-center"], "CC-9000");
    assert!(live.get("owner").is_none(), "removed: {live}");
    assert_eq!(
        live["portal-note"], "keep me",
        "an unrelated portal change is kept"
    );
    let log = app.sim.requests(since).await;
    let patches: Vec<&Value> = log.iter().filter(|e| e["method"] == "PATCH").collect();
    assert_eq!(patches.len(), 2, "one Merge and one Delete: {patches:?}");
    assert!(patches.iter().all(
        |p| p["principal"] == app.sim.scenario.sp("collector").object_id && p["status"] == 200
    ));
    let (_, applied) = app
        .call(
            &org.token,
            Method::GET,
            &format!("/api/v1/tag-edits?resource={rid}"),
            None,
        )
        .await;
    assert_eq!(applied["items"][0]["state"], "applied");

    // Applied once: another sync writes nothing.
    let since = app.sim.last_seq().await;
    app.call(
        &org.token,
        Method::POST,
        &format!("/api/v1/connections/{conn_id}/sync"),
        None,
    )
    .await;
    assert!(
        app.sim
            .requests(since)
            .await
            .iter()
            .all(|e| e["method"] != "PATCH")
    );

    // A key the portal changes after the user's edit is a conflict, not overwritten.
    let (_, created) = app
        .call(
            &org.token,
            Method::POST,
            "/api/v1/tag-edits",
            Some(json!({"resource_id": rid, "set": {"cost-center": "CC-1111"}})),
        )
        .await;
    let edit_id = created["edits"][0]["id"]
        .as_str()
        .expect("edit")
        .to_string();
    app.sim
        .control_ok(
            Method::POST,
            "/_sim/tags",
            json!({"resource_id": arm, "operation": "Merge", "tags": {"cost-center": "CC-PORTAL"}}),
        )
        .await;
    let (_, run) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/connections/{conn_id}/sync"),
            None,
        )
        .await;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(
        sim_tags(&app, &arm).await["cost-center"],
        "CC-PORTAL",
        "never silently overwritten"
    );
    let (_, conflicts) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/tag-edits?state=conflict",
            None,
        )
        .await;
    let c = conflicts["items"]
        .as_array()
        .expect("list")
        .iter()
        .find(|e| e["id"] == edit_id.as_str())
        .cloned()
        .expect("conflict");
    assert!(
        c["reason"].as_str().unwrap_or("").contains("CC-PORTAL"),
        "{c}"
    );
    let (_, audit) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/audit?action=tag_edit.applied",
            None,
        )
        .await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1));
    let (_, detail) = app
        .call(
            &org.token,
            Method::GET,
            &format!("/api/v1/resources/{rid}"),
            None,
        )
        .await;
    assert!(
        detail["tag_history"]
            .as_array()
            .is_some_and(|h| !h.is_empty())
    );
}

#[tokio::test]
async fn sync_levels_and_tag_rules_govern_edits() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let (conn_id, conn) = synced(&app, &org).await;
    let subs: Vec<String> = conn["subscriptions"]
        .as_array()
        .expect("subs")
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect();
    let r = tagged_resource(&app, &org, &subs[0]).await;
    let rid = r["id"].as_str().expect("id").to_string();

    for (body, needle) in [
        (json!({"resource_id": rid, "set": {"a/b": "x"}}), "a/b"),
        (
            json!({"resource_id": rid, "set": {"k": "v".repeat(257)}}),
            "256",
        ),
        (json!({"resource_id": rid, "set": {}}), "changes nothing"),
        (json!({"set": {"x": "y"}}), "resource_id or filter"),
    ] {
        let (status, answer) = app
            .call(&org.token, Method::POST, "/api/v1/tag-edits", Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains(needle),
            "{answer}"
        );
    }
    let many: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    let (status, answer) = app
        .call(
            &org.token,
            Method::POST,
            "/api/v1/tag-edits",
            Some(json!({"resource_id": rid, "set": many})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");

    // read_tags_only keeps edits in cloudkeep; no_tags refuses them.
    let set_level = |sub: String, level: &'static str| {
        let (app, org) = (&app, &org);
        async move {
            let (status, _) = app
                .call(
                    &org.token,
                    Method::PATCH,
                    &format!("/api/v1/subscriptions/{sub}"),
                    Some(json!({"sync_level": level})),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
        }
    };
    set_level(subs[0].clone(), "read_tags_only").await;
    let (status, local) = app
        .call(
            &org.token,
            Method::POST,
            "/api/v1/tag-edits",
            Some(json!({"resource_id": rid, "set": {"team": "blue"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(local["edits"][0]["state"], "local");
    let since = app.sim.last_seq().await;
    app.call(
        &org.token,
        Method::POST,
        &format!("/api/v1/connections/{conn_id}/sync"),
        None,
    )
    .await;
    assert!(
        app.sim
            .requests(since)
            .await
            .iter()
            .all(|e| e["method"] != "PATCH"
                && !e["path"].as_str().unwrap_or("").contains("/tags/default")),
        "read_tags_only never writes"
    );
    set_level(subs[0].clone(), "no_tags").await;
    let (status, refused) = app
        .call(
            &org.token,
            Method::POST,
            "/api/v1/tag-edits",
            Some(json!({"resource_id": rid, "set": {"team": "red"}})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no_tags"),
        "{refused}"
    );

    // A bulk edit by filter; an editor may edit tags, a viewer may not.
    let editor = app.member(&org, cloudkeep_domain::Role::Editor).await;
    let viewer = app.member(&org, cloudkeep_domain::Role::Viewer).await;
    let bulk = json!({"filter": {"subscription": subs[1], "type": "Microsoft.Compute/disks"}, "set": {"backup": "daily"}});
    assert_eq!(
        app.call(
            &viewer,
            Method::POST,
            "/api/v1/tag-edits",
            Some(bulk.clone())
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    let (status, many) = app
        .call(&editor, Method::POST, "/api/v1/tag-edits", Some(bulk))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{many}");
    let n = many["edits"].as_array().map(Vec::len).unwrap_or(0);
    assert!(
        n > 0
            && many["edits"]
                .as_array()
                .expect("edits")
                .iter()
                .all(|e| e["state"] == "pending")
    );
    let (_, run) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/connections/{conn_id}/sync"),
            None,
        )
        .await;
    let sub_azure = conn["subscriptions"][1]["subscription_id"]
        .as_str()
        .expect("sub");
    assert_eq!(
        cloudkeep_testkit::figure(&run, sub_azure, "write_back", "applied"),
        Some(n as u64),
        "{run}"
    );
}

#[tokio::test]
async fn conflicts_are_resolved_by_the_user() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let (conn_id, conn) = synced(&app, &org).await;
    let sub_row = conn["subscriptions"][0]["id"]
        .as_str()
        .expect("sub")
        .to_string();
    let r = tagged_resource(&app, &org, &sub_row).await;
    let (rid, arm) = (
        r["id"].as_str().expect("id").to_string(),
        r["azure_id"].as_str().expect("arm").to_string(),
    );
    let conflict = |value: &'static str| {
        let (app, org, rid, arm, conn_id) = (&app, &org, rid.clone(), arm.clone(), conn_id.clone());
        async move {
            let (_, created) = app
                .call(
                    &org.token,
                    Method::POST,
                    "/api/v1/tag-edits",
                    Some(json!({"resource_id": rid, "set": {"tier": value}})),
                )
                .await;
            app.sim.control_ok(Method::POST, "/_sim/tags", json!({"resource_id": arm, "operation": "Merge", "tags": {"tier": format!("portal-{value}")}})).await;
            let (_, run) = app
                .call(
                    &org.token,
                    Method::POST,
                    &format!("/api/v1/connections/{conn_id}/sync"),
                    None,
                )
                .await;
            assert_eq!(run["status"], "succeeded");
            created["edits"][0]["id"].as_str().expect("id").to_string()
        }
    };
    let first = conflict("gold").await;
    let (status, resolved) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/tag-edits/{first}/resolve"),
            Some(json!({"resolution": "keep_mine"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert_eq!(resolved["edit"]["state"], "pending");
    app.call(
        &org.token,
        Method::POST,
        &format!("/api/v1/connections/{conn_id}/sync"),
        None,
    )
    .await;
    assert_eq!(
        sim_tags(&app, &arm).await["tier"],
        "gold",
        "keep_mine writes over Azure's value"
    );

    let second = conflict("silver").await;
    let (status, resolved) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/tag-edits/{second}/resolve"),
            Some(json!({"resolution": "take_theirs"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(resolved["edit"].is_null());
    app.call(
        &org.token,
        Method::POST,
        &format!("/api/v1/connections/{conn_id}/sync"),
        None,
    )
    .await;
    assert_eq!(
        sim_tags(&app, &arm).await["tier"],
        "portal-silver",
        "take_theirs keeps Azure's value"
    );
    let (status, _) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/tag-edits/{second}/resolve"),
            Some(json!({"resolution": "keep_mine"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "only a conflict can be resolved"
    );
    let (status, _) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/tag-edits/{first}/resolve"),
            Some(json!({"resolution": "maybe"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}
