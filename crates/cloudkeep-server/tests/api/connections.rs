//! Connecting tenants with a service principal: success, every credential
//! failure, missing roles, re-authentication, revocation and sync levels.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::spawn_app;

#[tokio::test]
async fn connect_reports_roles_and_never_returns_the_secret() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let secret = app.sim.scenario.sp("collector").client_secret.clone();
    let body = app.connect(&org, "collector").await;
    assert!(
        !body.to_string().contains(&secret),
        "the secret is never returned"
    );
    assert_eq!(body["status"], "active");
    assert_eq!(
        body["principal_id"],
        app.sim.scenario.sp("collector").object_id
    );
    let subs = body["subscriptions"].as_array().expect("subs");
    assert_eq!(subs.len(), 3);
    for s in subs {
        assert_eq!(s["sync_level"], "read_write_tags");
        assert_eq!(s["permissions"]["roles_missing"], json!([]));
    }
    let id = body["id"].as_str().expect("id");
    let (status, one) = app
        .call(
            &org.token,
            Method::GET,
            &format!("/api/v1/connections/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one["id"], body["id"]);
    let (_, list) = app
        .call(&org.token, Method::GET, "/api/v1/connections", None)
        .await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert!(!list.to_string().contains(&secret));
    let (_, audit) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/audit?action=connection.created",
            None,
        )
        .await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1));
    assert!(!audit.to_string().contains(&secret));
}

#[tokio::test]
async fn credential_failures_are_422_and_store_nothing() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let mut wrong = app.connect_body("collector");
    wrong["client_secret"] = json!("not-the-secret");
    let mut unknown_app = app.connect_body("collector");
    unknown_app["client_id"] = json!("00000000-0000-0000-0000-0000000000aa");
    let mut unknown_tenant = app.connect_body("collector");
    unknown_tenant["tenant_id"] = json!("00000000-0000-0000-0000-0000000000bb");
    let nobody = app.connect_body("no-access");
    for (body, code) in [
        (wrong, "wrong_secret"),
        (unknown_app, "unknown_application"),
        (unknown_tenant, "unknown_tenant"),
        (nobody, "no_subscriptions"),
    ] {
        let (status, answer) = app
            .call(&org.token, Method::POST, "/api/v1/connections", Some(body))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("Nothing was stored"),
            "{answer}"
        );
    }
    app.sim
        .control_ok(
            Method::POST,
            "/_sim/secrets/expire",
            json!({"client_id": app.sim.scenario.sp("collector").client_id}),
        )
        .await;
    let (status, answer) = app
        .call(
            &org.token,
            Method::POST,
            "/api/v1/connections",
            Some(app.connect_body("collector")),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("expired_secret")),
        "{answer}"
    );
    let (_, list) = app
        .call(&org.token, Method::GET, "/api/v1/connections", None)
        .await;
    assert_eq!(list["items"], json!([]), "nothing stored");
    let (_, audit) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/audit?action=connection.rejected",
            None,
        )
        .await;
    assert_eq!(
        audit["items"].as_array().map(Vec::len),
        Some(5),
        "each attempt is audited"
    );
    let (status, answer) = app
        .call(
            &org.token,
            Method::POST,
            "/api/v1/connections",
            Some(json!({"name": "x"})),
        )
        .await;
    assert!(status.is_client_error(), "{answer}");
}

#[tokio::test]
async fn missing_roles_are_reported_and_limit_the_sync_level() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let body = app.connect(&org, "reader-only").await;
    for s in body["subscriptions"].as_array().expect("subs") {
        assert_eq!(
            s["sync_level"], "read_tags_only",
            "write-back disabled without Tag Contributor"
        );
        let missing = s["permissions"]["roles_missing"]
            .as_array()
            .expect("missing");
        let tag = missing
            .iter()
            .find(|m| m["role"] == "Tag Contributor")
            .expect("Tag Contributor missing");
        assert_eq!(tag["features_disabled"], json!(["tag_write_back"]));
    }

    // The collector without Reader on one subscription: inventory is off there.
    let sub = app.sim.scenario.raw["tenants"][0]["subscriptions"][0]["subscription_id"]
        .as_str()
        .expect("sub")
        .to_string();
    app.sim.control_ok(Method::DELETE, "/_sim/role-assignments", json!({"principal_id": app.sim.scenario.sp("collector").object_id, "role": "Reader", "scope": format!("/subscriptions/{sub}")})).await;
    let other = app.org("other").await;
    let body = app.connect(&other, "collector").await;
    let s = body["subscriptions"]
        .as_array()
        .expect("subs")
        .iter()
        .find(|s| s["subscription_id"] == sub.as_str())
        .expect("sub");
    let reader = s["permissions"]["roles_missing"]
        .as_array()
        .expect("missing")
        .iter()
        .find(|m| m["role"] == "Reader")
        .cloned()
        .expect("Reader missing");
    assert_eq!(reader["features_disabled"], json!(["inventory"]));
    assert_eq!(s["sync_level"], "no_resources");
}

#[tokio::test]
async fn reauth_revoke_and_sync_levels() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let body = app.connect(&org, "collector").await;
    let id = body["id"].as_str().expect("id").to_string();
    let (status, answer) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/connections/{id}/reauth"),
            Some(json!({"client_secret": "wrong"})),
        )
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("wrong_secret"))
    );
    let secret = app.sim.scenario.sp("collector").client_secret.clone();
    let (status, _) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/connections/{id}/reauth"),
            Some(json!({"client_secret": secret})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, updated) = app
        .call(
            &org.token,
            Method::PATCH,
            &format!("/api/v1/connections/{id}"),
            Some(json!({"cadence_hours": 6, "stale_after_hours": 24})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(
        (
            updated["cadence_secs"].as_i64(),
            updated["stale_after_secs"].as_i64()
        ),
        (Some(21_600), Some(86_400))
    );
    let (status, _) = app
        .call(
            &org.token,
            Method::PATCH,
            &format!("/api/v1/connections/{id}"),
            Some(json!({"cadence_hours": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    let sub_id = body["subscriptions"][0]["id"]
        .as_str()
        .expect("sub")
        .to_string();
    let (status, changed) = app
        .call(
            &org.token,
            Method::PATCH,
            &format!("/api/v1/subscriptions/{sub_id}"),
            Some(json!({"sync_level": "no_tags"})),
        )
        .await;
    assert_eq!(
        (status, changed["sync_level"].as_str()),
        (StatusCode::OK, Some("no_tags"))
    );
    let (status, bad) = app
        .call(
            &org.token,
            Method::PATCH,
            &format!("/api/v1/subscriptions/{sub_id}"),
            Some(json!({"sync_level": "everything"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("read_write_tags")
    );

    let (status, revoked) = app
        .call(
            &org.token,
            Method::DELETE,
            &format!("/api/v1/connections/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(revoked["deleted_at"].is_string());
    assert_eq!(revoked["status"], "revoked");
    let (status, still) = app
        .call(
            &org.token,
            Method::GET,
            &format!("/api/v1/connections/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "revoked connections stay readable");
    assert_eq!(still["subscriptions"].as_array().map(Vec::len), Some(3));
    let (status, _) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/connections/{id}/reauth"),
            Some(json!({"client_secret": secret})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, audit) = app
        .call(&org.token, Method::GET, "/api/v1/audit", None)
        .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in [
        "connection.created",
        "connection.reauthenticated",
        "subscription.sync_level_changed",
        "connection.revoked",
    ] {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }
}
