//! What is stored follows what is allowed: lowering a sync level takes
//! effect on the store at once, an Azure subscription belongs to one live
//! connection, and a revoked connection's resources are history, not live.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{App, Org, spawn_app};

async fn count(app: &App, org: &Org, query: &str) -> usize {
    app.list(&org.token, &format!("/api/v1/resources?{query}"))
        .await
        .len()
}

fn sub_row(conn: &Value, i: usize) -> String {
    conn["subscriptions"][i]["id"]
        .as_str()
        .expect("sub")
        .to_string()
}

async fn set_level(app: &App, org: &Org, sub: &str, level: &str) -> Value {
    app.expect(
        &org.token,
        Method::PATCH,
        &format!("/api/v1/subscriptions/{sub}"),
        Some(json!({ "sync_level": level })),
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn lowering_a_level_removes_what_it_no_longer_allows() {
    let app = spawn_app().await;
    let org = app.org("levels").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id");
    app.sync(&org, id).await;
    let (a, b, c) = (sub_row(&conn, 0), sub_row(&conn, 1), sub_row(&conn, 2));
    let in_a = count(&app, &org, &format!("subscription={a}")).await;
    assert!(in_a > 0);
    // Pending edits on b and c.
    for sub in [&b, &c] {
        app.expect(
            &org.token,
            Method::POST,
            "/api/v1/tag-edits",
            Some(json!({"filter": {"subscription": sub, "type": "Microsoft.Compute/disks"}, "set": {"team": "x"}})),
            StatusCode::CREATED,
        )
        .await;
    }

    // no_resources: the subscription's resources are gone from cloudkeep at once.
    let changed = set_level(&app, &org, &a, "no_resources").await;
    assert_eq!(changed["sync_level"], "no_resources");
    assert_eq!(
        changed["removed"]["resources_purged"].as_u64(),
        Some(in_a as u64),
        "{changed}"
    );
    assert_eq!(count(&app, &org, &format!("subscription={a}")).await, 0);
    assert_eq!(
        count(
            &app,
            &org,
            &format!("subscription={a}&include_deleted=true")
        )
        .await,
        0
    );

    // no_tags: tags are purged, pending edits cancelled with the reason.
    let changed = set_level(&app, &org, &b, "no_tags").await;
    assert!(
        changed["removed"]["tags_purged"].as_u64() > Some(0),
        "{changed}"
    );
    assert!(
        changed["removed"]["edits_cancelled"].as_u64() > Some(0),
        "{changed}"
    );
    let resources = app
        .list(&org.token, &format!("/api/v1/resources?subscription={b}"))
        .await;
    assert!(!resources.is_empty());
    assert!(
        resources.iter().all(|r| r["tags"].is_null()),
        "no tags kept"
    );
    assert_eq!(
        count(&app, &org, &format!("subscription={b}&has_tag=owner")).await,
        0
    );
    let cancelled = app
        .list(
            &org.token,
            &format!("/api/v1/tag-edits?subscription={b}&state=cancelled"),
        )
        .await;
    assert!(!cancelled.is_empty());
    assert!(
        cancelled
            .iter()
            .all(|e| e["reason"].as_str().unwrap_or_default().contains("no_tags"))
    );
    assert!(
        app.list(
            &org.token,
            &format!("/api/v1/tag-edits?subscription={b}&state=pending")
        )
        .await
        .is_empty()
    );

    // read_tags_only: pending edits stay in cloudkeep.
    let changed = set_level(&app, &org, &c, "read_tags_only").await;
    let made_local = changed["removed"]["edits_made_local"].as_u64().unwrap_or(0);
    assert!(made_local > 0, "{changed}");
    let local = app
        .list(
            &org.token,
            &format!("/api/v1/tag-edits?subscription={c}&state=local"),
        )
        .await;
    assert_eq!(local.len() as u64, made_local);

    // Each change is audited with what it removed.
    let audit = app
        .list(
            &org.token,
            "/api/v1/audit?action=subscription.sync_level_changed",
        )
        .await;
    assert_eq!(audit.len(), 3);
    assert_eq!(
        audit[0]["details"]["resources_purged"].as_u64(),
        Some(in_a as u64)
    );

    // Raising the level brings the data back at the next sync; no edit is
    // written for the cancelled ones.
    set_level(&app, &org, &a, "read_write_tags").await;
    set_level(&app, &org, &b, "read_write_tags").await;
    let since = app.sim.last_seq().await;
    app.sync(&org, id).await;
    assert_eq!(count(&app, &org, &format!("subscription={a}")).await, in_a);
    assert!(count(&app, &org, &format!("subscription={b}&has_tag=owner")).await > 0);
    let writes: Vec<Value> = app
        .sim
        .requests(since)
        .await
        .into_iter()
        .filter(|e| e["method"] == "PATCH")
        .collect();
    assert!(
        writes.is_empty(),
        "cancelled and local edits are never written: {writes:?}"
    );
}

#[tokio::test]
async fn a_subscription_belongs_to_one_live_connection() {
    let app = spawn_app().await;
    let org = app.org("dupes").await;
    let first = app.connect(&org, "collector").await;
    let first_id = first["id"].as_str().expect("id").to_string();
    app.sync(&org, &first_id).await;
    let total = count(&app, &org, "").await;

    // The same tenant again (the same principal, or another one seeing the
    // same subscriptions) is refused, naming the connection that holds them.
    for key in ["collector", "reader-only"] {
        let (status, body) = app
            .call(
                &org.token,
                Method::POST,
                "/api/v1/connections",
                Some(app.connect_body(key)),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "subscription_connected");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(&first_id),
            "{body}"
        );
    }
    assert_eq!(
        app.list(&org.token, "/api/v1/connections").await.len(),
        1,
        "nothing stored"
    );
    assert_eq!(count(&app, &org, "").await, total, "nothing listed twice");

    // Revoked, its resources are its history: not live, readable by connection.
    app.expect(
        &org.token,
        Method::DELETE,
        &format!("/api/v1/connections/{first_id}"),
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        count(&app, &org, "").await,
        0,
        "a revoked connection's resources are not live"
    );
    assert_eq!(
        count(&app, &org, &format!("connection={first_id}")).await,
        total
    );

    // Connected again (three times over), every resource is listed once.
    for _ in 0..3 {
        let again = app.connect(&org, "collector").await;
        let again_id = again["id"].as_str().expect("id").to_string();
        app.sync(&org, &again_id).await;
        assert_eq!(count(&app, &org, "").await, total);
        app.expect(
            &org.token,
            Method::DELETE,
            &format!("/api/v1/connections/{again_id}"),
            None,
            StatusCode::OK,
        )
        .await;
    }
    let last = app.connect(&org, "collector").await;
    app.sync(&org, last["id"].as_str().expect("id")).await;
    assert_eq!(count(&app, &org, "").await, total);
    // Another organisation connecting the same tenant is its own business.
    let other = app.org("other").await;
    app.connect(&other, "collector").await;
}
