//! Tag coverage end to end against the simulator: required keys, coverage
//! before, the untagged spend with suggestions taken from Azure's resource
//! group and subscription tags, the fix made into tag edits (pending at
//! read_write_tags, local at read_tags_only, refused below), the write-back
//! seen in the simulator's request log, the next sync, and coverage after
//! higher by exactly the fixed resources' cost; and the 422s.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, NaiveDate};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{App, Org, spawn_app};

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d").expect("date")
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("a number: {v}"))
}

async fn get(app: &App, org: &Org, path: &str) -> Value {
    app.expect(&org.token, Method::GET, path, None, StatusCode::OK)
        .await
}

/// The coverage of one key in an answer's total.
fn key_figures<'a>(coverage: &'a Value, key: &str) -> &'a Value {
    coverage["total"]["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["key"] == key)
        .unwrap_or_else(|| panic!("no {key} in {coverage}"))
}

async fn unprocessable(
    app: &App,
    org: &Org,
    method: Method,
    path: &str,
    body: Option<Value>,
    says: &str,
) {
    let answer = app
        .expect(
            &org.token,
            method,
            path,
            body,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{path}: {message}");
}

#[tokio::test]
async fn coverage_before_the_fix_the_write_back_and_coverage_after() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = app.connect(&org, "collector").await;
    let conn_id = conn["id"].as_str().expect("id").to_string();
    let subs = conn["subscriptions"].as_array().expect("subs").clone();
    let rw = subs
        .iter()
        .find(|s| s["sync_level"] == "read_write_tags")
        .expect("a subscription at read_write_tags")
        .clone();
    let others: Vec<&Value> = subs.iter().filter(|s| s["id"] != rw["id"]).collect();
    assert!(others.len() >= 2, "{subs:?}");
    let (local, none) = (others[0], others[1]);
    for (s, level) in [(local, "read_tags_only"), (none, "no_tags")] {
        app.expect(
            &org.token,
            Method::PATCH,
            &format!("/api/v1/subscriptions/{}", s["id"].as_str().expect("id")),
            Some(json!({ "sync_level": level })),
            StatusCode::OK,
        )
        .await;
    }
    let run = app.sync(&org, &conn_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let azure = |s: &Value| s["subscription_id"].as_str().expect("azure id").to_string();

    // Required keys: lower-cased, in order; twice is refused.
    let set = app
        .expect(
            &org.token,
            Method::PUT,
            "/api/v1/settings/required-tags",
            Some(json!({"keys": ["Owner", "env"]})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(set["keys"], json!(["owner", "env"]));
    unprocessable(
        &app,
        &org,
        Method::PUT,
        "/api/v1/settings/required-tags",
        Some(json!({"keys": ["env", "ENV"]})),
        "listed twice",
    )
    .await;
    assert_eq!(
        get(&app, &org, "/api/v1/settings/required-tags").await["keys"],
        json!(["owner", "env"])
    );
    app.expect(
        &org.token,
        Method::PUT,
        "/api/v1/spend/tag-aliases",
        Some(json!({"aliases": {"environment": "env"}})),
        StatusCode::OK,
    )
    .await;

    // A period of whole past days, so the figures do not move with the clock.
    let scenario = app.sim.scenario_now().await;
    let today = day(scenario["today"].as_str().expect("today"));
    let (from, to) = (today - Duration::days(30), today - Duration::days(1));
    let period = format!("from={from}&to={to}");

    // Bad input names what is allowed.
    for (path, says) in [
        (
            format!("/api/v1/coverage?{period}&key=colour"),
            "allowed: owner, env (or their aliases: environment)",
        ),
        (
            format!("/api/v1/coverage?{period}&by=region"),
            "allowed: subscription, resource_group, service",
        ),
        ("/api/v1/coverage?from=2026-13-01".to_string(), "YYYY-MM-DD"),
        (
            "/api/v1/coverage?from=2026-12-02&to=2026-12-01".to_string(),
            "after it ends",
        ),
        (
            "/api/v1/coverage?colour=red".to_string(),
            "unknown parameter 'colour'",
        ),
        (
            format!("/api/v1/coverage/untagged?{period}&top=0"),
            "1 to 1000",
        ),
        (
            format!("/api/v1/coverage/untagged?{period}&key=cost-center"),
            "not a required tag key",
        ),
    ] {
        unprocessable(&app, &org, Method::GET, &path, None, says).await;
    }
    for (body, says) in [
        (json!({"keys": ["owner"], "top": 10}), "use_suggested"),
        (
            json!({"keys": ["owner"], "use_suggested": true}),
            "give top",
        ),
        (
            json!({"keys": ["colour"], "top": 10, "use_suggested": true}),
            "not a required tag key",
        ),
        (
            json!({"top": 10, "values": {"colour": "red"}}),
            "not a required tag key",
        ),
        (json!({"top": 5000, "use_suggested": true}), "1 to 1000"),
    ] {
        unprocessable(
            &app,
            &org,
            Method::POST,
            "/api/v1/coverage/fix",
            Some(body),
            says,
        )
        .await;
    }

    // Coverage before: per key and overall, by subscription, day by day.
    let before = get(
        &app,
        &org,
        &format!("/api/v1/coverage?{period}&by=subscription"),
    )
    .await;
    let total = f(&before["total"]["cost"]);
    assert!(total > 10.0, "{before}");
    assert_eq!(before["keys"], json!(["owner", "env"]));
    let owner_before = key_figures(&before, "owner").clone();
    let env_before = key_figures(&before, "env").clone();
    let overall = &before["total"]["overall"];
    for k in [&owner_before, &env_before] {
        let share = f(&k["cost_share"]);
        assert!(share > 0.0 && share < 1.0, "{k}");
        assert!(
            f(&overall["cost"]) <= f(&k["cost"]) + 1e-9,
            "all keys ≤ one key"
        );
        assert!(overall["resources"].as_u64() <= k["resources"].as_u64());
    }
    let groups = before["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 3, "one group per subscription: {before}");
    let sum: f64 = groups.iter().map(|g| f(&g["cost"])).sum();
    assert!((sum - total).abs() < 1e-6, "{sum} vs {total}");
    let none_group = groups
        .iter()
        .find(|g| g["key"] == azure(none).to_ascii_lowercase())
        .expect("the no_tags subscription");
    assert_eq!(
        f(&none_group["overall"]["cost"]),
        0.0,
        "no tags are read at no_tags, so none count"
    );
    let daily = before["daily"].as_array().expect("daily");
    assert_eq!(daily.len(), 30, "{before}");
    let daily_sum: f64 = daily.iter().map(|d| f(&d["cost"])).sum();
    assert!((daily_sum - total).abs() < 1e-6);
    assert!(daily.iter().all(|d| d["keys"]["owner"].as_f64().is_some()));

    // Untagged spend by cost, with suggestions.
    let untagged = get(
        &app,
        &org,
        &format!("/api/v1/coverage/untagged?{period}&key=owner&top=1000"),
    )
    .await;
    let items = untagged["items"].as_array().expect("items").clone();
    assert_eq!(untagged["resources"].as_u64(), Some(items.len() as u64));
    let with_cost = before["total"]["resources"].as_u64().expect("resources");
    let with_owner = owner_before["resources"].as_u64().expect("resources");
    assert_eq!(
        untagged["resources"].as_u64(),
        Some(with_cost - with_owner),
        "every resource with cost either carries owner or is listed"
    );
    let untagged_cost: f64 = items.iter().map(|i| f(&i["cost"])).sum();
    assert!((untagged_cost - f(&untagged["cost"])).abs() < 1e-6);
    // The rest of the usage cost has no resource (a marketplace charge).
    assert!(untagged_cost + f(&owner_before["cost"]) <= total + 1e-6);
    for w in items.windows(2) {
        assert!(f(&w[0]["cost"]) >= f(&w[1]["cost"]), "ranked by cost");
    }
    let mut sources = BTreeSet::new();
    for i in &items {
        assert_eq!(i["missing"][0]["key"], "owner", "{i}");
        let s = &i["missing"][0]["suggestion"];
        if s.is_null() {
            continue;
        }
        let source = s["source"].as_str().expect("source").to_string();
        if source == "resource_group" {
            // The group's own tag in Azure.
            let rg = i["resource_group"].as_str().expect("rg");
            let group_id = format!(
                "/subscriptions/{}/resourceGroups/{rg}",
                i["subscription"].as_str().expect("sub")
            );
            let live = app.sim.tags(&group_id).await;
            let value = live
                .as_object()
                .expect("tags")
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("owner"))
                .map(|(_, v)| v.clone());
            assert_eq!(value.as_ref(), Some(&s["value"]), "{group_id}: {live}");
        }
        sources.insert(source);
    }
    assert!(sources.contains("resource_group"), "{sources:?}");
    assert!(
        items
            .iter()
            .filter(|i| i["subscription"] == azure(none))
            .all(|i| i["missing"][0]["suggestion"].is_null()),
        "nothing is suggested from tags cloudkeep may not read"
    );

    // Below read_tags_only, a fix is refused for the subscription's resources.
    let refused = app
        .expect(
            &org.token,
            Method::POST,
            "/api/v1/coverage/fix",
            Some(
                json!({"subscription": azure(none), "keys": ["owner"], "top": 3,
                "from": from, "to": to, "values": {"Owner": "team@contoso.com"}}),
            ),
            StatusCode::OK,
        )
        .await;
    assert!(refused["created"].as_array().expect("created").is_empty());
    let skipped = refused["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 3, "{refused}");
    assert!(
        skipped
            .iter()
            .all(|s| s["reason"].as_str().unwrap_or("").contains("no_tags")),
        "{refused}"
    );

    // The fix: every untagged resource's owner from its suggestion.
    let since = app.sim.last_seq().await;
    let fixed = app
        .expect(
            &org.token,
            Method::POST,
            "/api/v1/coverage/fix",
            Some(json!({"keys": ["owner"], "top": 1000, "from": from, "to": to, "use_suggested": true})),
            StatusCode::CREATED,
        )
        .await;
    let created = fixed["created"].as_array().expect("created").clone();
    let suggested: BTreeMap<String, (String, f64, String)> = items
        .iter()
        .filter(|i| !i["missing"][0]["suggestion"].is_null() && !i["resource_id"].is_null())
        .map(|i| {
            (
                i["resource_id"].as_str().expect("id").to_string(),
                (
                    i["missing"][0]["suggestion"]["value"]
                        .as_str()
                        .expect("v")
                        .to_string(),
                    f(&i["cost"]),
                    i["subscription"].as_str().expect("sub").to_string(),
                ),
            )
        })
        .collect();
    assert_eq!(created.len(), suggested.len(), "{fixed}");
    let mut written = BTreeMap::new();
    for c in &created {
        let rid = c["resource_id"].as_str().expect("id");
        let (value, cost, sub) = &suggested[rid];
        assert_eq!(c["edit"]["set"]["owner"], json!(value), "{c}");
        assert_ne!(c["sources"]["owner"], "given");
        let state = c["edit"]["state"].as_str().expect("state");
        if *sub == azure(&rw) {
            assert_eq!(state, "pending", "{c}");
            written.insert(rid.to_string(), (value.clone(), *cost));
        } else {
            assert_eq!(sub, &azure(local), "{c}");
            assert_eq!(state, "local", "{c}");
        }
    }
    assert!(!written.is_empty(), "some edits are written back: {fixed}");
    let skipped = fixed["skipped"].as_array().expect("skipped");
    assert!(
        skipped.iter().all(|s| {
            let reason = s["reason"].as_str().unwrap_or("");
            (s["key"] == "owner" && reason.contains("no suggested value"))
                || reason.contains("no live resource")
        }),
        "{fixed}"
    );
    assert_eq!(skipped.len() + created.len(), items.len());
    // The same fix again before the sync makes no second edit.
    let again = app
        .expect(
            &org.token,
            Method::POST,
            "/api/v1/coverage/fix",
            Some(json!({"keys": ["owner"], "top": 1000, "from": from, "to": to, "use_suggested": true})),
            StatusCode::OK,
        )
        .await;
    assert!(
        again["created"].as_array().expect("created").is_empty(),
        "{again}"
    );
    let repeated = again["skipped"]
        .as_array()
        .expect("skipped")
        .iter()
        .filter(|s| {
            s["reason"]
                .as_str()
                .unwrap_or("")
                .contains("already sets it")
        })
        .count();
    assert_eq!(repeated, created.len(), "{again}");
    let audit = get(&app, &org, "/api/v1/audit?action=tag_edit.created&limit=5").await;
    assert!(
        !audit["items"].as_array().expect("events").is_empty(),
        "audited: {audit}"
    );

    // The next sync writes the pending edits back with the Tags API.
    let run = app.sync(&org, &conn_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let log = app.sim.requests(since).await;
    // Group and subscription tags are read only where the level reads tags.
    let groups_listed = |sub: &str| {
        log.iter().any(|e| {
            e["method"] == "GET"
                && e["path"]
                    .as_str()
                    .unwrap_or("")
                    .eq_ignore_ascii_case(&format!("/subscriptions/{sub}/resourcegroups"))
        })
    };
    assert!(groups_listed(&azure(&rw)) && groups_listed(&azure(local)));
    assert!(!groups_listed(&azure(none)), "no_tags reads no group tags");
    let patches: Vec<&Value> = log.iter().filter(|e| e["method"] == "PATCH").collect();
    assert_eq!(
        patches.len(),
        written.len(),
        "one Merge per pending edit: {patches:?}"
    );
    assert!(patches.iter().all(|p| {
        p["status"] == 200
            && p["path"]
                .as_str()
                .unwrap_or("")
                .ends_with("/providers/Microsoft.Resources/tags/default")
            && p["path"].as_str().unwrap_or("").contains(&azure(&rw))
    }));
    let (rid, (value, _)) = written.iter().next().expect("one");
    let resource = get(&app, &org, &format!("/api/v1/resources/{rid}")).await;
    let arm = resource["resource"]["azure_id"]
        .as_str()
        .expect("arm id")
        .to_string();
    assert_eq!(app.sim.tags(&arm).await["owner"], json!(value));

    // The sync after reads the tags back onto the cost rows: coverage
    // rose by exactly the written resources' cost.
    let run = app.sync(&org, &conn_id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let after = get(&app, &org, &format!("/api/v1/coverage?{period}")).await;
    let owner_after = key_figures(&after, "owner");
    let gained: f64 = written.values().map(|(_, c)| c).sum();
    assert!(
        (f(&after["total"]["cost"]) - total).abs() < 1e-6,
        "same cost"
    );
    assert!(
        (f(&owner_after["cost"]) - (f(&owner_before["cost"]) + gained)).abs() < 1e-6,
        "owner covered {} = {} + {gained}",
        owner_after["cost"],
        owner_before["cost"]
    );
    assert_eq!(
        owner_after["resources"].as_u64(),
        owner_before["resources"]
            .as_u64()
            .map(|n| n + written.len() as u64)
    );
    assert!(f(&owner_after["cost_share"]) > f(&owner_before["cost_share"]));
    let still = get(
        &app,
        &org,
        &format!("/api/v1/coverage/untagged?{period}&key=owner&top=1000"),
    )
    .await;
    assert_eq!(
        still["resources"].as_u64(),
        Some(items.len() as u64 - written.len() as u64)
    );

    // Named resources with a value given: one without a suggestion gets
    // it; one that carries the key already is left alone, saying why.
    let bare = still["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["subscription"] == azure(&rw) && i["missing"][0]["suggestion"].is_null())
        .cloned()
        .expect("a resource at read_write_tags without a suggestion");
    let bare_id = bare["resource_id"].as_str().expect("id").to_string();
    let given = app
        .expect(
            &org.token,
            Method::POST,
            "/api/v1/coverage/fix",
            Some(
                json!({"resource_ids": [bare_id, rid], "from": from, "to": to,
                "values": {"owner": "platform@contoso.com"}}),
            ),
            StatusCode::CREATED,
        )
        .await;
    let created = given["created"].as_array().expect("created");
    assert_eq!(created.len(), 1, "{given}");
    assert_eq!(created[0]["resource_id"], json!(bare_id));
    assert_eq!(created[0]["sources"]["owner"], "given");
    assert_eq!(created[0]["edit"]["set"]["owner"], "platform@contoso.com");
    assert_eq!(created[0]["edit"]["state"], "pending");
    let skipped = given["skipped"].as_array().expect("skipped");
    assert_eq!(skipped.len(), 1, "{given}");
    assert_eq!(skipped[0]["resource_id"], json!(rid));
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("lacks none")
    );
}
