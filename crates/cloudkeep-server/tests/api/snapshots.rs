//! Large answers checked whole against reviewed snapshots (insta): a
//! connection's permission check, and a first sync's run report. Ids and
//! times vary between runs and are redacted; everything else is the
//! seeded simulator's and must not drift unseen. Review a change with
//! `cargo insta review` (or `INSTA_UPDATE=always` and read the diff).

use reqwest::Method;

use crate::harness::spawn_app;

#[tokio::test]
async fn a_reader_only_connection_reports_what_it_lacks() {
    let app = spawn_app().await;
    let org = app.org("snap").await;
    let (status, conn) = app
        .call(
            &org.token,
            Method::POST,
            "/api/v1/connections",
            Some(app.connect_body("reader-only")),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{conn}");
    insta::assert_json_snapshot!(conn, {
        ".id" => "[connection]",
        ".client_id" => "[client]",
        ".tenant_id" => "[tenant]",
        ".principal_id" => "[principal]",
        ".created_at" => "[time]",
        ".next_sync_at" => "[time]",
        ".subscriptions[].id" => "[subscription]",
        ".subscriptions[].connection_id" => "[connection]",
        ".subscriptions[].subscription_id" => "[azure subscription]",
    });
}

#[tokio::test]
async fn a_first_sync_reports_every_step() {
    let app = spawn_app().await;
    let org = app.org("snap").await;
    let conn = app.connect(&org, "collector").await;
    let run = app.sync(&org, conn["id"].as_str().expect("id")).await;
    insta::assert_json_snapshot!(run, {
        ".id" => "[run]",
        ".connection_id" => "[connection]",
        ".started_at" => "[time]",
        ".finished_at" => "[time]",
        ".report.subscriptions[].subscription_id" => "[azure subscription]",
        // Spend's periods, queries and rows follow the calendar (where the
        // 90 days of cost fall across months, and the reservations bought
        // on each 1st).
        ".report.subscriptions[].steps[5].counts.periods" => "[periods]",
        ".report.subscriptions[].steps[5].counts.queries" => "[queries]",
        ".report.subscriptions[].steps[5].counts.rows" => "[rows]",
    });
}
