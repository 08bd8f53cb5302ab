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

/// Micro-dollars, as the simulator keeps cost, so sums compare exactly.
fn micros(v: &Value) -> i64 {
    (v.as_f64().expect("cost") * 1e6).round() as i64
}

/// Daily totals of a query's rows (cost first, UsageDate second to last).
fn per_day(rows: &[Value]) -> std::collections::BTreeMap<u64, i64> {
    let mut days = std::collections::BTreeMap::new();
    for r in rows {
        let a = r.as_array().expect("row");
        let day = a[a.len() - 2].as_u64().expect("UsageDate is a number");
        *days.entry(day).or_insert(0) += micros(&a[0]);
    }
    days
}

#[tokio::test]
async fn every_pair_of_groupings_adds_up_to_the_daily_total() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let (from, to) = (days_before(&sim, 40), days_before(&sim, 0));
    let dims = [
        "ResourceId",
        "MeterId",
        "Meter",
        "MeterCategory",
        "ServiceName",
        "ChargeType",
        "PricingModel",
        "ResourceGroupName",
        "ResourceLocation",
        "ResourceType",
    ];
    for kind in ["ActualCost", "AmortizedCost"] {
        let total = body(kind, &from, &to, "Daily", json!([]));
        let (_, _, rows) = run_all(&sim, &token, &sub, &total).await;
        let want = per_day(&rows);
        for (i, a) in dims.iter().enumerate() {
            for b in &dims[i..] {
                let groups = if a == b {
                    json!([{"type": "Dimension", "name": a}])
                } else {
                    json!([{"type": "Dimension", "name": a}, {"type": "Dimension", "name": b}])
                };
                let q = body(kind, &from, &to, "Daily", groups);
                let (_, _, rows) = run_all(&sim, &token, &sub, &q).await;
                assert_eq!(per_day(&rows), want, "{kind} by {a}, {b}");
            }
        }
    }
}

/// Rows grouped by (ChargeType, PricingModel), with ResourceId when asked.
async fn by_charge(sim: &Sim, token: &str, sub: &str, kind: &str, days: i64) -> Vec<Value> {
    let q = body(
        kind,
        &days_before(sim, days),
        &days_before(sim, 0),
        "Daily",
        json!([{"type": "Dimension", "name": "ChargeType"}, {"type": "Dimension", "name": "PricingModel"}]),
    );
    run_all(sim, token, sub, &q).await.2
}

#[tokio::test]
async fn reservations_are_purchases_in_actual_cost_and_spread_in_amortised() {
    let sim = start().await;
    let token = sim.token("collector").await;
    // Some subscription of the demo has reserved VMs; look over two months
    // so that a first of the month (the purchase day) is included.
    let mut seen = false;
    for sub in sim.subscriptions() {
        let actual = by_charge(&sim, &token, &sub, "ActualCost", 62).await;
        let purchases: Vec<&Value> = actual.iter().filter(|r| r[1] == "Purchase").collect();
        if purchases.is_empty() {
            continue;
        }
        seen = true;
        assert!(purchases.iter().all(|r| r[2] == "Reservation"));
        assert!(
            actual
                .iter()
                .all(|r| !(r[1] == "Usage" && r[2] == "Reservation") || micros(&r[0]) == 0),
            "reserved usage costs nothing in actual cost"
        );
        let amortised = by_charge(&sim, &token, &sub, "AmortizedCost", 62).await;
        assert!(amortised.iter().all(|r| r[1] != "Purchase"));
        assert!(
            amortised
                .iter()
                .any(|r| r[1] == "Usage" && r[2] == "Reservation" && micros(&r[0]) > 0)
        );
        assert!(amortised.iter().any(|r| r[1] == "UnusedReservation"));
        // Purchases carry no resource.
        let q = body(
            "ActualCost",
            &days_before(&sim, 62),
            &days_before(&sim, 0),
            "Daily",
            json!([{"type": "Dimension", "name": "ChargeType"}, {"type": "Dimension", "name": "ResourceId"}]),
        );
        let (_, _, rows) = run_all(&sim, &token, &sub, &q).await;
        assert!(
            rows.iter()
                .filter(|r| r[1] == "Purchase")
                .all(|r| r[2] == "")
        );
    }
    assert!(seen, "the demo has reservation purchases");
    // Marketplace charges have no resource group, as in Azure.
    let sub = &sim.subscriptions()[0];
    let q = body(
        "ActualCost",
        &days_before(&sim, 5),
        &days_before(&sim, 0),
        "Daily",
        json!([{"type": "Dimension", "name": "ResourceGroupName"}, {"type": "Dimension", "name": "PublisherType"}]),
    );
    let (_, _, rows) = run_all(&sim, &token, sub, &q).await;
    assert!(
        rows.iter()
            .any(|r| r[1] == "" && r[2] == "Marketplace" && micros(&r[0]) > 0)
    );
}

#[tokio::test]
async fn column_names_follow_the_aggregation() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let mut q = body(
        "ActualCost",
        &days_before(&sim, 3),
        &days_before(&sim, 0),
        "Daily",
        json!([]),
    );
    q["dataset"]["aggregation"] = json!({"totalCost": {"name": "PreTaxCost", "function": "Sum"}});
    let (_, columns, rows) = run_all(&sim, &token, &sub, &q).await;
    assert_eq!(columns, ["PreTaxCost", "UsageDate", "Currency"]);
    assert!(rows.iter().all(|r| r[1].is_u64()));
    q["dataset"]
        .as_object_mut()
        .expect("dataset")
        .remove("aggregation");
    let (_, columns, _) = run_all(&sim, &token, &sub, &q).await;
    assert_eq!(
        columns,
        ["UsageDate", "Currency"],
        "no aggregation, no cost column"
    );
}

#[tokio::test]
async fn known_cost_events_and_restated_days() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let scenario = sim.control_get("/_sim/scenario").await;
    let demo = &scenario["cost_events"][0];
    assert_eq!(demo["kind"], "spike", "the demo's ground truth: {scenario}");
    let sub = sim.subscriptions()[0].clone();
    let daily = |rows: Vec<Value>| per_day(&rows);
    let range = |d: i64| (days_before(&sim, d), days_before(&sim, 0));
    let (from, to) = range(20);
    let total = body("ActualCost", &from, &to, "Daily", json!([]));
    let before = daily(run_all(&sim, &token, &sub, &total).await.2);

    // The demo's spike is visible: its days cost far more than the month's median.
    let spiked: Vec<i64> = before.iter().rev().take(3).map(|(_, v)| *v).collect();
    let mut all: Vec<i64> = before.values().copied().collect();
    all.sort_unstable();
    let median = all[all.len() / 2];
    assert!(
        spiked.iter().all(|v| *v > median * 11 / 10),
        "{spiked:?} vs {median}"
    );

    // Restating a past day changes that day only; a re-pull sees it.
    let (day, was) = before.iter().nth(5).map(|(d, v)| (*d, *v)).expect("a day");
    let date = format!("{}-{:02}-{:02}", day / 10_000, day / 100 % 100, day % 100);
    let (status, body_) = sim
        .control(
            Method::POST,
            "/_sim/cost/restate",
            json!({"subscription_id": sub, "date": date, "factor": 3.0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body_}");
    let after = daily(run_all(&sim, &token, &sub, &total).await.2);
    assert!(after[&day] > was, "{} > {was}", after[&day]);
    assert!(
        before
            .iter()
            .filter(|(d, _)| **d != day)
            .all(|(d, v)| after[d] == *v)
    );

    // A spike on one resource, and a first charge in a new region.
    let q = body(
        "ActualCost",
        &from,
        &to,
        "None",
        json!([{"type": "Dimension", "name": "ResourceId"}]),
    );
    let (_, _, rows) = run_all(&sim, &token, &sub, &q).await;
    let resource = rows
        .iter()
        .find(|r| micros(&r[0]) > 0 && r[1] != "")
        .expect("a costing resource")[1]
        .as_str()
        .expect("id")
        .to_string();
    let (status, event) = sim
        .control(Method::POST, "/_sim/cost/events", json!({"kind": "spike", "resource_id": resource, "from": days_before(&sim, 2), "to": days_before(&sim, 1), "factor": 10.0}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    let by_resource = |rows: &[Value]| {
        rows.iter()
            .find(|r| r[1] == resource.as_str())
            .map(|r| micros(&r[0]))
            .unwrap_or(0)
    };
    let spiked = run_all(&sim, &token, &sub, &q).await.2;
    assert!(by_resource(&spiked) > by_resource(&rows));
    let rg = sim
        .get(
            &token,
            &format!("/subscriptions/{sub}/resourcegroups?api-version=2025-04-01"),
        )
        .await
        .body["value"][1]["name"]
        .as_str()
        .expect("rg")
        .to_string();
    let (status, event) = sim
        .control(Method::POST, "/_sim/cost/events", json!({"kind": "new_charge", "subscription_id": sub, "resource_group": rg, "type": "Microsoft.Cache/Redis", "name": "redis-new", "location": "japaneast", "from": days_before(&sim, 3), "daily": 42.0}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{event}");
    let q = body(
        "ActualCost",
        &days_before(&sim, 10),
        &to,
        "Daily",
        json!([{"type": "Dimension", "name": "ResourceLocation"}]),
    );
    let (_, _, rows) = run_all(&sim, &token, &sub, &q).await;
    let japan: Vec<u64> = rows
        .iter()
        .filter(|r| r[1] == "japaneast")
        .map(|r| r[2].as_u64().expect("day"))
        .collect();
    assert_eq!(japan.len(), 4, "from three days ago to today: {japan:?}");
    let events = sim.control_get("/_sim/scenario").await["cost_events"]
        .as_array()
        .map(Vec::len);
    assert_eq!(events, Some(4));
}

#[tokio::test]
async fn entity_headers_count_requests_per_scope_and_tenant() {
    let sim = start_with(Options {
        throttle: true,
        ..Options::default()
    })
    .await;
    let (status, _) = sim
        .control(
            Method::PUT,
            "/_sim/cost/headers",
            json!({"family": "entity"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let q = body(
        "ActualCost",
        &days_before(&sim, 2),
        &days_before(&sim, 0),
        "None",
        json!([]),
    );
    let first = sim
        .arm(&token, Method::POST, &query_path(&sub), Some(q.clone()))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let h = |r: &crate::harness::Resp, n: &str| {
        r.header(&format!("x-ms-ratelimit-microsoft.costmanagement-{n}"))
            .map(str::to_string)
    };
    assert_eq!(h(&first, "entity-requests").as_deref(), Some("29"));
    assert_eq!(h(&first, "tenant-requests").as_deref(), Some("199"));
    assert_eq!(h(&first, "entity-retry-after").as_deref(), Some("60"));
    assert!(h(&first, "qpu-consumed").is_none(), "one family at a time");
    let mut last = first;
    for _ in 0..29 {
        last = sim
            .arm(&token, Method::POST, &query_path(&sub), Some(q.clone()))
            .await;
        assert_eq!(last.status, StatusCode::OK);
    }
    assert_eq!(h(&last, "entity-requests").as_deref(), Some("0"));
    let refused = sim
        .arm(&token, Method::POST, &query_path(&sub), Some(q.clone()))
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(h(&refused, "entity-retry-after").is_some() && refused.header("retry-after").is_some());
    // Another scope (a second subscription) has its own entity window.
    let other = sim.subscriptions()[1].clone();
    let r = sim
        .arm(&token, Method::POST, &query_path(&other), Some(q))
        .await;
    assert_eq!(
        (r.status, h(&r, "tenant-requests").as_deref()),
        (StatusCode::OK, Some("169"))
    );
    let (_, family) = sim
        .control(Method::GET, "/_sim/cost/headers", json!({}))
        .await;
    assert_eq!(family["family"], "entity");
}
