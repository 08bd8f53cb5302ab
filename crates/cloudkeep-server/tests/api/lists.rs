//! One list shape: every list answers `{items, next}`, takes `limit` from 1
//! to 1000 and typed filters, and refuses anything else with a 422 that
//! names what is allowed; paging by `next` visits every item once.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::spawn_app;

const LISTS: [&str; 7] = [
    "/api/v1/users",
    "/api/v1/tokens",
    "/api/v1/connections",
    "/api/v1/sync-runs",
    "/api/v1/resources",
    "/api/v1/tag-edits",
    "/api/v1/audit",
];

#[tokio::test]
async fn every_list_has_one_shape_and_one_limit() {
    let app = spawn_app().await;
    let org = app.org("lists").await;
    let conn = app.connect(&org, "collector").await;
    app.sync(&org, conn["id"].as_str().expect("id")).await;
    for list in LISTS {
        let page = app
            .expect(&org.token, Method::GET, list, None, StatusCode::OK)
            .await;
        assert!(page["items"].is_array(), "{list}: {page}");
        assert!(page.get("next").is_some(), "{list}: {page}");
        for bad in ["0", "-1", "1001", "lots"] {
            let (status, body) = app
                .call(
                    &org.token,
                    Method::GET,
                    &format!("{list}?limit={bad}"),
                    None,
                )
                .await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{list}?limit={bad}: {body}"
            );
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("from 1 to 1000"),
                "{list}: {body}"
            );
        }
        let (status, body) = app
            .call(
                &org.token,
                Method::GET,
                &format!("{list}?after=garbage"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{list}: {body}");
    }
}

#[tokio::test]
async fn unknown_filter_values_name_the_allowed_ones() {
    let app = spawn_app().await;
    let org = app.org("filters").await;
    for (path, allowed) in [
        ("/api/v1/tag-edits?state=bogus", "pending"),
        ("/api/v1/sync-runs?status=bogus", "succeeded"),
        ("/api/v1/audit?format=xml", "jsonl"),
    ] {
        let (status, body) = app.call(&org.token, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains(allowed),
            "{path}: {body}"
        );
    }
    let (status, body) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/resources?tag=novalue",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("key=value")
    );
}

#[tokio::test]
async fn paging_visits_every_item_once_and_filters_in_the_store() {
    let app = spawn_app().await;
    let org = app.org("paging").await;
    let conn = app.connect(&org, "collector").await;
    app.sync(&org, conn["id"].as_str().expect("id")).await;
    let total: u64 = app
        .sim
        .scenario
        .tenant()
        .subscriptions
        .iter()
        .map(|s| s.resource_count)
        .sum();
    let pages = |path: &'static str, limit: usize| {
        let app = &app;
        let token = org.token.clone();
        async move {
            let mut seen = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let url = match &next {
                    Some(n) => format!("{path}limit={limit}&after={n}"),
                    None => format!("{path}limit={limit}"),
                };
                let page = app
                    .expect(&token, Method::GET, &url, None, StatusCode::OK)
                    .await;
                let items = page["items"].as_array().cloned().unwrap_or_default();
                assert!(items.len() <= limit);
                seen.extend(items);
                match page["next"].as_str() {
                    Some(n) => next = Some(n.to_string()),
                    None => return seen,
                }
            }
        }
    };
    let all: Vec<Value> = pages("/api/v1/resources?", 37).await;
    let ids: HashSet<&str> = all.iter().filter_map(|r| r["id"].as_str()).collect();
    assert_eq!(all.len() as u64, total);
    assert_eq!(ids.len(), all.len(), "no resource twice");
    // Tag filters, case-insensitive on the key, split the estate exactly.
    let with = pages("/api/v1/resources?has_tag=OWNER&", 50).await;
    let without = pages("/api/v1/resources?missing_tag=owner&", 50).await;
    assert!(!with.is_empty() && !without.is_empty());
    assert_eq!((with.len() + without.len()) as u64, total);
    assert!(with.iter().all(|r| {
        r["tags"]
            .as_object()
            .is_some_and(|t| t.keys().any(|k| k.eq_ignore_ascii_case("owner")))
    }));
    let value = with[0]["tags"]
        .as_object()
        .and_then(|t| t.iter().find(|(k, _)| k.eq_ignore_ascii_case("owner")))
        .and_then(|(_, v)| v.as_str())
        .expect("owner")
        .to_string();
    let (status, exact) = app
        .call(
            &org.token,
            Method::GET,
            &format!("/api/v1/resources?tag=owner={value}&limit=1000"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let exact = exact["items"].as_array().cloned().unwrap_or_default();
    assert!(!exact.is_empty());
    assert!(exact.iter().all(|r| r["tags"].as_object().is_some_and(|t| {
        t.iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("owner") && v == value.as_str())
    })));
    // Types compare as Azure compares them, in any case.
    let upper = pages("/api/v1/resources?type=MICROSOFT.COMPUTE/DISKS&", 100).await;
    let lower = pages("/api/v1/resources?type=microsoft.compute/disks&", 100).await;
    assert_eq!(upper.len(), lower.len());
    assert!(!upper.is_empty());
    // Runs and audit events page too.
    let audit = pages("/api/v1/audit?", 2).await;
    let seqs: Vec<i64> = audit.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert!(seqs.len() >= 3);
}
