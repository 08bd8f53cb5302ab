//! Answers the store keeps between writes (resource pages, tag coverage)
//! are never older than the last write: read, change, read again over
//! HTTP, and the second read shows the change.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::spawn_app;

#[tokio::test]
async fn a_kept_resource_page_and_tag_coverage_show_a_write_at_once() {
    let app = spawn_app().await;
    let org = app.org("kept").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    app.sync(&org, &id).await;
    let read = |path: &'static str| {
        let (app, token) = (&app, org.token.clone());
        async move {
            app.expect(&token, Method::GET, path, None, StatusCode::OK)
                .await
        }
    };
    let page = read("/api/v1/resources?limit=100").await;
    let coverage = read("/api/v1/tags/coverage").await;
    assert_eq!(
        read("/api/v1/resources?limit=100").await,
        page,
        "asked again"
    );
    assert_eq!(read("/api/v1/tags/coverage").await, coverage, "asked again");
    let first: &Value = &page["items"][0];
    let gone: &Value = &page["items"][1];

    // A tag set in the portal and a resource deleted, then a sync.
    app.sim
        .control_ok(
            Method::POST,
            "/_sim/tags",
            json!({"resource_id": first["azure_id"], "operation": "Merge", "tags": {"kept-test": "changed"}}),
        )
        .await;
    let r = app
        .sim
        .http
        .delete(format!("{}/_sim/resources", app.sim.url))
        .query(&[("id", gone["azure_id"].as_str().expect("id"))])
        .send()
        .await
        .expect("delete");
    assert!(r.status().is_success());
    app.sync(&org, &id).await;
    let after = read("/api/v1/resources?limit=100").await;
    assert_eq!(after["items"][0]["id"], first["id"]);
    assert_eq!(after["items"][0]["tags"]["kept-test"], "changed");
    assert!(
        after["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|r| r["id"] != gone["id"]),
        "the deleted resource is not listed"
    );
    let fewer = read("/api/v1/tags/coverage").await;
    assert_eq!(
        fewer["resources"].as_u64(),
        coverage["resources"].as_u64().map(|n| n - 1),
        "{fewer}"
    );

    // The subscription stops reading tags: no sync, the next read shows it.
    let sub = first["subscription_id"].as_str().expect("subscription");
    app.expect(
        &org.token,
        Method::PATCH,
        &format!("/api/v1/subscriptions/{sub}"),
        Some(json!({ "sync_level": "no_tags" })),
        StatusCode::OK,
    )
    .await;
    let untagged = read("/api/v1/resources?limit=100").await;
    assert_eq!(untagged["items"][0]["id"], first["id"]);
    assert!(
        untagged["items"][0]["tags"].is_null(),
        "{}",
        untagged["items"][0]
    );
    let less = read("/api/v1/tags/coverage").await;
    assert!(
        less["tags_read"].as_u64() < fewer["tags_read"].as_u64(),
        "{less} after {fewer}"
    );
}
