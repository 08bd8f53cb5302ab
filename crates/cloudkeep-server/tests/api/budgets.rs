//! Budgets and forecasts against the simulator's cost, on a clock the test
//! moves: the forecast equals the weekday medians worked out here from the
//! API's own daily usage cost; a crossing opens one alert per threshold,
//! delivered to a local receiver with a valid signature, never repeated
//! while it holds; raising the amount resolves it; a new month starts
//! over; bad budgets are 422s that say what is allowed.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};
use cloudkeep_domain::{Clock, ManualClock, Role};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::alerts::{Receiver, header, synced_rarely, verify, webhook};
use crate::harness::{App, Org, spawn_app_on};

fn day(v: &Value) -> NaiveDate {
    NaiveDate::parse_from_str(&v.as_str().expect("date")[..10], "%Y-%m-%d").expect("date")
}

/// Usage cost per day, read through the spend API.
async fn usage_days(
    app: &App,
    org: &Org,
    from: NaiveDate,
    to: NaiveDate,
) -> BTreeMap<NaiveDate, f64> {
    let v = app
        .expect(
            &org.token,
            Method::GET,
            &format!("/api/v1/spend?from={from}&to={to}&filter=charge_category=usage"),
            None,
            StatusCode::OK,
        )
        .await;
    v["totals"]
        .as_array()
        .expect("totals")
        .iter()
        .map(|p| (day(&p["start"]), p["cost"].as_f64().expect("cost")))
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The budget alerts' deliveries a receiver got, as (event, kind): the
/// syncs' spend may open anomaly alerts too, delivered to the same hook.
fn budget_calls(receiver: &Receiver) -> Vec<(String, String)> {
    receiver
        .calls()
        .iter()
        .filter_map(|(h, body)| {
            let payload: Value = serde_json::from_str(body).expect("json");
            let kind = payload["alert"]["kind"].as_str()?.to_string();
            kind.starts_with("budget_")
                .then(|| (header(h, "x-cloudkeep-event"), kind))
        })
        .collect()
}

async fn alerts(app: &App, org: &Org, query: &str) -> Vec<Value> {
    app.list(&org.token, &format!("/api/v1/alerts?{query}"))
        .await
}

#[tokio::test]
async fn a_budget_crossing_alerts_once_with_a_signed_delivery_and_a_new_month_starts_over() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_on(&clock).await;
    let org = app.org("acme").await;
    synced_rarely(&app, &org).await;
    let receiver = Receiver::start(0).await;
    let (_, secret) = webhook(&app, &org, &receiver.url).await;
    let scheduler = app.scheduler();

    // The forecast, against one worked out here from the daily usage cost.
    let f = app
        .expect(
            &org.token,
            Method::GET,
            "/api/v1/spend/forecast",
            None,
            StatusCode::OK,
        )
        .await;
    let as_of = day(&f["as_of"]);
    let mtd = f["month_to_date"].as_f64().expect("mtd");
    let month_end = f["month_end"].as_f64().expect("month end");
    assert!(mtd > 0.0, "the simulator has cost this month: {f}");
    let usage = usage_days(&app, &org, as_of - Duration::days(27), as_of).await;
    let last = (day(&f["month"]) + Duration::days(40))
        .with_day(1)
        .expect("1st")
        - Duration::days(1);
    let mut expected_rest = 0.0;
    let mut d = as_of + Duration::days(1);
    while d <= last {
        // The same weekday within the four weeks to as_of.
        let same: Vec<f64> = (0..28)
            .map(|i| as_of - Duration::days(i))
            .filter(|x| (d - *x).num_days() % 7 == 0)
            .map(|x| usage.get(&x).copied().unwrap_or(0.0))
            .collect();
        assert_eq!(same.len(), 4);
        expected_rest += median(same);
        d += Duration::days(1);
    }
    assert_eq!(
        f["forecast"].as_array().expect("forecast").len() as i64,
        (last - as_of).num_days()
    );
    assert!(
        (month_end - (mtd + expected_rest)).abs() < 0.01,
        "forecast {month_end} = {mtd} + {expected_rest}"
    );

    // Bad budgets say what is allowed; a viewer may not make one.
    let good = json!({"name": "Platform", "amount": 100.0, "actual_thresholds": [80]});
    for (patch, says) in [
        (json!({"amount": -5}), "above 0"),
        (json!({"actual_thresholds": [1500]}), "10×"),
        (
            json!({"actual_thresholds": [], "forecast_thresholds": []}),
            "at least one threshold",
        ),
        (
            json!({"filters": ["region=westeurope"]}),
            "subscription, resource_group or a tag",
        ),
        (
            json!({"filters": ["tag:no-such-key=x"]}),
            "no resource carries the tag key 'no-such-key'",
        ),
        (json!({"filters": ["colour=red"]}), "not a dimension"),
        (json!({"name": ""}), "1 to 200"),
    ] {
        let mut body = good.clone();
        for (k, v) in patch.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, answer) = app
            .call(&org.token, Method::POST, "/api/v1/budgets", Some(body))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{patch}: {answer}"
        );
        assert!(answer.to_string().contains(says), "{patch}: {answer}");
    }
    let viewer = app.member(&org, Role::Viewer).await;
    let (status, _) = app
        .call(&viewer, Method::POST, "/api/v1/budgets", Some(good.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        alerts(&app, &org, "kind=budget_actual").await.is_empty(),
        "nothing was made"
    );

    // Spend this month is 90% of the amount: the 80% threshold is crossed,
    // 100% is not; the forecast (never below spend so far) crosses 50%.
    let amount = mtd / 0.9;
    let made = app
        .expect(
            &org.token,
            Method::POST,
            "/api/v1/budgets",
            Some(json!({"name": "Everything", "amount": amount,
                "actual_thresholds": [100, 80], "forecast_thresholds": [50]})),
            StatusCode::CREATED,
        )
        .await;
    let id = made["id"].as_str().expect("id").to_string();
    assert_eq!(made["actual_thresholds"], json!([80.0, 100.0]));
    assert_eq!(made["status"]["actual_crossed"], json!([80.0]), "{made}");
    assert_eq!(made["status"]["forecast_crossed"], json!([50.0]), "{made}");
    assert!((made["status"]["actual_pct"].as_f64().expect("pct") - 90.0).abs() < 1e-6);
    assert_eq!(made["days"]["month_end"], f["month_end"]);

    scheduler.tick().await.expect("tick");
    let month = day(&f["month"]).format("%Y-%m").to_string();
    let mut kinds = Vec::new();
    for (headers, body) in receiver.calls() {
        let payload: Value = serde_json::from_str(&body).expect("json");
        let alert = &payload["alert"];
        if !alert["kind"].as_str().unwrap_or("").starts_with("budget_") {
            continue;
        }
        assert_eq!(verify(&secret, &headers, &body), clock.now().timestamp());
        assert_eq!(header(&headers, "x-cloudkeep-event"), "alert.opened");
        assert!(
            alert["scope"]
                .as_str()
                .expect("scope")
                .starts_with(&format!("budget:{id}:{month}:")),
            "{alert}"
        );
        assert_eq!(alert["figures"]["budget"], "Everything");
        kinds.push(alert["kind"].as_str().expect("kind").to_string());
    }
    kinds.sort();
    assert_eq!(kinds, ["budget_actual", "budget_forecast"]);
    let actual = alerts(&app, &org, "kind=budget_actual&state=open").await;
    assert_eq!(actual.len(), 1);
    assert!(
        actual[0]["title"].as_str().expect("title").contains("90%"),
        "{}",
        actual[0]
    );

    // Another sync and another pass: the crossings hold, nothing fires again.
    let conn = app.list(&org.token, "/api/v1/connections").await;
    let run = app
        .sync(&org, conn[0]["id"].as_str().expect("connection"))
        .await;
    assert_eq!(run["status"], "succeeded");
    let again = scheduler.tick().await.expect("tick");
    assert_eq!(again.alerts, 0, "{again:?}");
    assert_eq!(budget_calls(&receiver).len(), 2, "fires once");

    // A hundred times the amount: both fall back under and resolve.
    let body = json!({"name": "Everything", "amount": amount * 100.0,
        "actual_thresholds": [80, 100], "forecast_thresholds": [50]});
    let after = app
        .expect(
            &org.token,
            Method::PUT,
            &format!("/api/v1/budgets/{id}"),
            Some(body),
            StatusCode::OK,
        )
        .await;
    assert_eq!(after["status"]["actual_crossed"], json!([]));
    let resolved = alerts(&app, &org, "state=resolved").await;
    assert_eq!(resolved.len(), 2, "{resolved:?}");
    for a in &resolved {
        assert_eq!(
            a["figures"]["resolved_because"],
            "the figure fell back under the threshold"
        );
    }
    scheduler.tick().await.expect("tick");
    let events: Vec<String> = budget_calls(&receiver)
        .into_iter()
        .map(|(event, _)| event)
        .collect();
    assert_eq!(
        events,
        [
            "alert.opened",
            "alert.opened",
            "alert.resolved",
            "alert.resolved"
        ]
    );

    // Back to the amount: crossed again, a new transition, a new alert;
    // then a new month starts over and resolves it.
    app.expect(
        &org.token,
        Method::PUT,
        &format!("/api/v1/budgets/{id}"),
        Some(json!({"name": "Everything", "amount": amount, "actual_thresholds": [80]})),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        alerts(&app, &org, "kind=budget_actual&state=open")
            .await
            .len(),
        1
    );
    clock.advance(Duration::days(32));
    let rolled = scheduler.tick().await.expect("tick");
    assert!(rolled.alerts >= 1, "{rolled:?}");
    let open = alerts(&app, &org, "kind=budget_actual&state=open").await;
    assert!(open.is_empty(), "{open:?}");
    let gone = alerts(&app, &org, "kind=budget_actual&state=resolved").await;
    assert!(
        gone.iter()
            .any(|a| a["figures"]["resolved_because"] == "a new month started"),
        "{gone:?}"
    );

    // Audited; deleted, it is gone from the list.
    for action in ["budget.created", "budget.updated"] {
        let audit = app
            .expect(
                &org.token,
                Method::GET,
                &format!("/api/v1/audit?action={action}"),
                None,
                StatusCode::OK,
            )
            .await;
        assert!(
            !audit["items"].as_array().expect("items").is_empty(),
            "{action}"
        );
    }
    app.expect(
        &org.token,
        Method::DELETE,
        &format!("/api/v1/budgets/{id}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert!(app.list(&org.token, "/api/v1/budgets").await.is_empty());
}
