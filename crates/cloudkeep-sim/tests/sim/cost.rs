//! Cost Management queries: grouping, paging, validation, the cost views,
//! query-unit throttling, and new days appearing when the clock moves.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Options, Sim, start, start_with};

fn query_path(sub: &str) -> String {
    format!("/subscriptions/{sub}/providers/Microsoft.CostManagement/query?api-version=2025-03-01")
}

fn body(kind: &str, from: &str, to: &str, granularity: &str, grouping: Value) -> Value {
    json!({
        "type": kind, "timeframe": "Custom",
        "timePeriod": {"from": format!("{from}T00:00:00Z"), "to": format!("{to}T23:59:59Z")},
        "dataset": {"granularity": granularity,
            "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
            "grouping": grouping}
    })
}

fn days_before(sim: &Sim, days: i64) -> String {
    let today = chrono::NaiveDate::parse_from_str(
        sim.scenario["today"].as_str().expect("today"),
        "%Y-%m-%d",
    )
    .expect("date");
    (today - chrono::Duration::days(days)).to_string()
}

/// Runs a query and follows its `nextLink`s: answers pages, columns, rows.
async fn run_all(
    sim: &Sim,
    token: &str,
    sub: &str,
    body: &Value,
) -> (usize, Vec<String>, Vec<Value>) {
    let mut next = Some(query_path(sub));
    let (mut pages, mut rows, mut columns) = (0, Vec::new(), Vec::new());
    while let Some(link) = next.take() {
        let r = sim
            .arm(token, Method::POST, &link, Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        pages += 1;
        columns = r.body["properties"]["columns"]
            .as_array()
            .expect("columns")
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("").to_string())
            .collect();
        rows.extend(
            r.body["properties"]["rows"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        next = r.body["properties"]["nextLink"]
            .as_str()
            .map(str::to_string);
    }
    (pages, columns, rows)
}

fn total(rows: &[Value]) -> f64 {
    rows.iter().map(|r| r[0].as_f64().expect("cost")).sum()
}

#[tokio::test]
async fn grouped_daily_query_pages_and_adds_up() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let (from, to) = (days_before(&sim, 29), days_before(&sim, 0));
    let by_resource = body(
        "ActualCost",
        &from,
        &to,
        "Daily",
        json!([{"type": "Dimension", "name": "ResourceId"}]),
    );
    let (pages, columns, rows) = run_all(&sim, &token, &sub, &by_resource).await;
    assert!(pages > 1, "a month of daily cost by resource spans pages");
    assert_eq!(columns, ["Cost", "ResourceId", "UsageDate", "Currency"]);
    assert!(
        rows.iter()
            .all(|r| r[2].as_u64().is_some_and(|d| d > 20_000_000) && r[3] == "USD")
    );
    let ids: std::collections::HashSet<&str> = rows
        .iter()
        .map(|r| r[1].as_str().expect("id"))
        .filter(|id| !id.is_empty())
        .collect();
    assert!(
        ids.iter()
            .all(|id| id.starts_with(&format!("/subscriptions/{sub}/resourcegroups/"))),
        "resource ids are lower-cased"
    );

    let ungrouped = body("ActualCost", &from, &to, "None", json!([]));
    let (_, columns, single) = run_all(&sim, &token, &sub, &ungrouped).await;
    assert_eq!(columns, ["Cost", "Currency"]);
    assert_eq!(single.len(), 1);
    assert!(
        (total(&rows) - total(&single)).abs() < 1e-6 * total(&single).max(1.0),
        "the pages add up to the total"
    );

    let by_tag = body(
        "AmortizedCost",
        &from,
        &to,
        "Monthly",
        json!([{"type": "TagKey", "name": "env"}, {"type": "Dimension", "name": "ServiceName"}]),
    );
    let (_, columns, rows) = run_all(&sim, &token, &sub, &by_tag).await;
    assert_eq!(
        columns,
        [
            "Cost",
            "TagKey",
            "TagValue",
            "ServiceName",
            "BillingMonth",
            "Currency"
        ]
    );
    assert!(
        rows.iter().any(|r| r[1] == "")
            && rows
                .iter()
                .any(|r| r[1].as_str().is_some_and(|k| k.eq_ignore_ascii_case("env")))
    );

    let reader = sim.token("reader-only").await;
    assert_eq!(
        sim.arm(
            &reader,
            Method::POST,
            &query_path(&sub),
            Some(ungrouped.clone())
        )
        .await
        .status,
        StatusCode::OK,
        "Reader may query cost"
    );
    let none = sim.token("no-access").await;
    let r = sim
        .arm(&none, Method::POST, &query_path(&sub), Some(ungrouped))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::FORBIDDEN, "AuthorizationFailed")
    );
}

#[tokio::test]
async fn invalid_queries_are_refused() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let too_long = body(
        "ActualCost",
        &days_before(&sim, 400),
        &days_before(&sim, 0),
        "Daily",
        json!([]),
    );
    let three = body(
        "ActualCost",
        &days_before(&sim, 3),
        &days_before(&sim, 0),
        "Daily",
        json!([
        {"type": "Dimension", "name": "ResourceId"}, {"type": "Dimension", "name": "ServiceName"}, {"type": "Dimension", "name": "Meter"}]),
    );
    let unknown = body(
        "ActualCost",
        &days_before(&sim, 3),
        &days_before(&sim, 0),
        "Daily",
        json!([{"type": "Dimension", "name": "Colour"}]),
    );
    let bad_type = json!({"type": "Forecast", "timeframe": "MonthToDate", "dataset": {}});
    for b in [too_long, three, unknown, bad_type] {
        let r = sim
            .arm(&token, Method::POST, &query_path(&sub), Some(b.clone()))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{b}: {}", r.body);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("Invalid query definition")
        );
    }
    // A period before any cost data: 204.
    let before = body("ActualCost", "2001-01-01", "2001-01-31", "Daily", json!([]));
    assert_eq!(
        sim.arm(&token, Method::POST, &query_path(&sub), Some(before))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn query_units_are_throttled_per_tenant() {
    let sim = start_with(Options {
        throttle: true,
        ..Options::default()
    })
    .await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    // Eleven months cost 11 QPU; the tenant may spend 12 per 10 seconds.
    let big = body(
        "ActualCost",
        &days_before(&sim, 330),
        &days_before(&sim, 0),
        "None",
        json!([]),
    );
    let first = sim
        .arm(&token, Method::POST, &query_path(&sub), Some(big.clone()))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        first.header("x-ms-ratelimit-microsoft.costmanagement-qpu-consumed"),
        Some("11")
    );
    let second = sim
        .arm(&token, Method::POST, &query_path(&sub), Some(big))
        .await;
    assert_eq!(second.status, StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = second
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .expect("seconds");
    assert!((1..=10).contains(&wait));
    assert!(
        second
            .header("x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after")
            .is_some()
    );
}

#[tokio::test]
async fn advancing_the_clock_adds_cost_days() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let today = days_before(&sim, 0);
    let (status, moved) = sim
        .control(Method::POST, "/_sim/clock/advance", json!({"days": 2}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let new_today = moved["today"].as_str().expect("today").to_string();
    assert_ne!(new_today, today);
    let q = body("ActualCost", &today, &new_today, "Daily", json!([]));
    let (_, _, rows) = run_all(&sim, &token, &sub, &q).await;
    let days: Vec<u64> = rows.iter().map(|r| r[1].as_u64().expect("date")).collect();
    assert_eq!(days.len(), 3, "today and two new days: {days:?}");
    assert_eq!(
        days.last().copied(),
        new_today.replace('-', "").parse().ok()
    );
}
