//! Spend anomalies end to end: a quiet scenario finds no incident on a
//! series, a spike injected through the simulator's control API on a known
//! resource is found after the next sync with that resource named first
//! among its contributors and a `spend_anomaly` alert open; movers and the
//! 422s that name what is allowed.

use chrono::{Duration, NaiveDate};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{App, Org, spawn_app};

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d").expect("date")
}

async fn get(app: &App, org: &Org, path: &str) -> Value {
    app.expect(&org.token, Method::GET, path, None, StatusCode::OK)
        .await
}

/// The anomalies of one subscription's service.
async fn incidents_on(app: &App, org: &Org, sub: &str, service: &str) -> Vec<Value> {
    let page = get(
        app,
        org,
        &format!("/api/v1/spend/anomalies?kind=anomaly&subscription={sub}&limit=1000"),
    )
    .await;
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["service"] == service)
        .cloned()
        .collect()
}

/// The second subscription's costliest resource and its service over the
/// last 30 days (the demo's own spike is on the first subscription).
async fn costliest(app: &App, org: &Org, today: NaiveDate) -> (String, String, String) {
    let sub = app.subscription_ids()[1].to_ascii_lowercase();
    let from = today - Duration::days(29);
    let by = get(
        app,
        org,
        &format!(
            "/api/v1/spend?metric=effective&group_by=resource,service&filter=subscription={sub}&from={from}&to={today}&top=1&granularity=month"
        ),
    )
    .await;
    let top = &by["series"][0];
    let resource = top["key"][0].as_str().expect("a resource").to_string();
    let service = top["key"][1].as_str().expect("a service").to_string();
    (sub, resource, service)
}

#[tokio::test]
async fn an_injected_spike_is_found_with_its_resource_and_alerted() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    let run = app.sync(&org, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let scenario = app.sim.scenario_now().await;
    let today = day(scenario["today"].as_str().expect("today"));
    let start = day(scenario["cost_start"].as_str().expect("start"));
    // Enough history for the detector: 42 days and more.
    assert!((today - start).num_days() >= 42 + 14, "{start} to {today}");

    let (sub, resource, service) = costliest(&app, &org, today).await;

    // Quiet: nothing on that series.
    let quiet = incidents_on(&app, &org, &sub, &service).await;
    assert!(
        quiet.is_empty(),
        "a quiet series has no incident: {quiet:?}"
    );

    // An 8x spike on the resource's last three days, then a sync (its
    // trailing window pulls those days again).
    app.sim
        .control_ok(
            Method::POST,
            "/_sim/cost/events",
            json!({"kind": "spike", "resource_id": resource, "factor": 8.0,
                   "from": (today - Duration::days(2)).to_string(), "to": today.to_string(),
                   "note": "test: a runaway resource"}),
        )
        .await;
    let run = app.sync(&org, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let found = incidents_on(&app, &org, &sub, &service).await;
    assert_eq!(found.len(), 1, "{found:?}");
    let incident = &found[0];
    assert_eq!(incident["direction"], "up");
    assert_eq!(incident["ended"], false);
    assert!(incident["delta"].as_f64().expect("delta") > 0.0);
    assert!(incident["max_z"].as_f64().expect("z") >= 3.5, "{incident}");
    let first = day(incident["first_day"].as_str().expect("first"));
    assert!(first >= today - Duration::days(2), "{incident}");
    let contributors = incident["contributors"].as_array().expect("contributors");
    assert_eq!(contributors[0]["kind"], "resource");
    assert_eq!(
        contributors[0]["item"].as_str(),
        Some(resource.to_ascii_lowercase().as_str()),
        "{incident}"
    );
    assert!(contributors.iter().any(|c| c["kind"] == "meter"));

    // One by id; and an alert naming it, open.
    let iid = incident["id"].as_str().expect("id");
    let one = get(&app, &org, &format!("/api/v1/spend/anomalies/{iid}")).await;
    assert_eq!(one["id"], incident["id"]);
    let alerts = get(&app, &org, "/api/v1/alerts?kind=spend_anomaly&state=open").await;
    let alert = alerts["items"]
        .as_array()
        .expect("alerts")
        .iter()
        .find(|a| a["scope"] == format!("incident:{iid}"))
        .cloned()
        .expect("an open spend_anomaly alert for the incident");
    let title = alert["title"].as_str().expect("title");
    assert!(title.contains(&service), "{title}");
    assert_eq!(alert["figures"]["top_resource"], contributors[0]["item"]);
    assert!(alert["figures"]["z"].as_f64().expect("z") >= 3.5);

    // Found again by the next sync: the same incident, no second alert.
    app.sync(&org, &id).await;
    assert_eq!(incidents_on(&app, &org, &sub, &service).await.len(), 1);
    let alerts = get(&app, &org, "/api/v1/alerts?kind=spend_anomaly").await;
    let for_it = alerts["items"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["scope"] == format!("incident:{iid}"))
        .count();
    assert_eq!(for_it, 1);

    // Movers: the resource moved most this week.
    let movers = get(
        &app,
        &org,
        "/api/v1/spend/movers?period=week&by=resource&top=5",
    )
    .await;
    assert_eq!(movers["period"], "week");
    let moved = movers["movers"].as_array().expect("movers");
    assert!(
        moved
            .iter()
            .any(|m| m["key"].as_str() == Some(resource.to_ascii_lowercase().as_str())),
        "{movers}"
    );
    get(
        &app,
        &org,
        "/api/v1/spend/movers?period=month&by=resource_group",
    )
    .await;

    // Bad input names what is allowed.
    for (path, allowed) in [
        ("/api/v1/spend/movers?period=year", "week, month"),
        (
            "/api/v1/spend/movers?by=tag",
            "service, resource_group, resource",
        ),
        ("/api/v1/spend/movers?top=0", "1 to 100"),
        (
            "/api/v1/spend/anomalies?kind=spike",
            "anomaly, new_service, new_region",
        ),
        (
            "/api/v1/spend/anomalies?from=2026-02-01&to=2026-01-01",
            "on or before",
        ),
    ] {
        let e = app
            .expect(
                &org.token,
                Method::GET,
                path,
                None,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        let text = e.to_string();
        for word in allowed.split(", ") {
            assert!(text.contains(word), "{path}: {e}");
        }
    }
    app.expect(
        &org.token,
        Method::GET,
        &format!("/api/v1/spend/anomalies/{}", uuid::Uuid::new_v4()),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
}

/// The spike's days pass: the simulator's clock and the app's move on, the
/// next sync's trailing window sees ordinary days after the spike, the
/// incident ends and its alert resolves, once.
#[tokio::test]
async fn an_anomaly_alert_resolves_once_the_spike_has_ended() {
    let clock = cloudkeep_domain::ManualClock::starting_now();
    let app = crate::harness::spawn_app_on(&clock).await;
    let org = app.org("acme").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    assert_eq!(app.sync(&org, &id).await["status"], "succeeded");
    let today = day(app.sim.scenario_now().await["today"]
        .as_str()
        .expect("today"));
    let (sub, resource, service) = costliest(&app, &org, today).await;
    app.sim
        .control_ok(
            Method::POST,
            "/_sim/cost/events",
            json!({"kind": "spike", "resource_id": resource, "factor": 8.0,
                   "from": (today - Duration::days(1)).to_string(), "to": today.to_string(),
                   "note": "test: a spike that passes"}),
        )
        .await;
    assert_eq!(app.sync(&org, &id).await["status"], "succeeded");
    let open = incidents_on(&app, &org, &sub, &service).await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["ended"], false);
    let iid = open[0]["id"].as_str().expect("id").to_string();
    let scope = format!("incident:{iid}");
    let alerts_of_it = |state: &'static str| {
        let app = &app;
        let org = &org;
        let scope = scope.clone();
        async move {
            app.list(
                &org.token,
                &format!("/api/v1/alerts?kind=spend_anomaly&state={state}"),
            )
            .await
            .into_iter()
            .filter(|a| a["scope"] == scope)
            .count()
        }
    };
    assert_eq!(alerts_of_it("open").await, 1);

    // Three ordinary days later, on both clocks.
    app.sim
        .control_ok(Method::POST, "/_sim/clock/advance", json!({"days": 3}))
        .await;
    clock.advance(chrono::Duration::days(3));
    assert_eq!(app.sync(&org, &id).await["status"], "succeeded");
    let after = incidents_on(&app, &org, &sub, &service).await;
    let it = after
        .iter()
        .find(|i| i["id"] == iid.as_str())
        .unwrap_or_else(|| panic!("the incident is kept: {after:?}"));
    assert_eq!(it["ended"], true, "{it}");
    assert_eq!(day(it["last_day"].as_str().expect("last")), today, "{it}");
    assert_eq!(alerts_of_it("open").await, 0);
    assert_eq!(alerts_of_it("resolved").await, 1);

    // Another sync changes nothing: no second resolution, no new alert.
    assert_eq!(app.sync(&org, &id).await["status"], "succeeded");
    assert_eq!(alerts_of_it("resolved").await, 1);
    assert_eq!(alerts_of_it("open").await, 0);
}
