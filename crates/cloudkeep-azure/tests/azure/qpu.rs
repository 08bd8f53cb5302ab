//! Cost queries under Cost Management's query-unit throttling (the
//! simulator with `throttle: true`): paced per tenant before a 429, with
//! what another client spent counted from the remaining-units header, and a
//! wait beyond the client's bound reported as `Throttled` rather than slept.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use cloudkeep_azure::{AzureClient, AzureError, CostGranularity, CostQuery, CostType};
use serde_json::Value;

use crate::harness::{self, Sim};

/// The first page of each cost query: the ones charged query units.
fn charged_queries(log: &[Value]) -> usize {
    log.iter()
        .filter(|e| {
            e["path"].as_str().is_some_and(|p| {
                p.to_ascii_lowercase()
                    .ends_with("/providers/microsoft.costmanagement/query")
            }) && !e["query"].as_str().unwrap_or("").contains("$skiptoken")
        })
        .count()
}

fn throttled(log: &[Value]) -> usize {
    log.iter().filter(|e| e["status"] == 429).count()
}

/// A query over the `days` days before the simulator's today.
fn last_days(sim: &Sim, days: i64) -> CostQuery {
    let today =
        NaiveDate::parse_from_str(sim.scenario["today"].as_str().expect("today"), "%Y-%m-%d")
            .expect("date");
    CostQuery::new(
        CostType::ActualCost,
        today - chrono::Duration::days(days),
        today - chrono::Duration::days(1),
        CostGranularity::Daily,
    )
}

/// Another process using the same tenant: its own client, its own pacing.
fn stranger(sim: &Sim) -> AzureClient {
    AzureClient::new(harness::config(
        &sim.test.url,
        Some(sim.test.ca_pem.clone()),
    ))
    .expect("client")
}

#[tokio::test]
async fn cost_queries_are_paced_per_tenant_before_cost_management_says_429() {
    let sim = harness::start_with(true).await;
    let token = sim.token("collector").await;
    let subs = sim.subscription_ids();
    // Half the tenant's 10-second window spent by someone else first.
    let other = stranger(&sim);
    let one_month = last_days(&sim, 30);
    for _ in 0..6 {
        other
            .cost_query(&token, &format!("/subscriptions/{}", subs[0]), &one_month)
            .all()
            .await
            .expect("within the window");
    }
    let two_months = last_days(&sim, 61);
    assert_eq!(two_months.query_units(), 2);
    let seq = sim.last_seq().await;
    let started = Instant::now();
    let queries = 9;
    for i in 0..queries {
        // Across the tenant's subscriptions: the units are the tenant's.
        let scope = format!("/subscriptions/{}", subs[i % subs.len()]);
        let rows = sim
            .client
            .cost_query(&token, &scope, &two_months)
            .all()
            .await
            .unwrap_or_else(|e| panic!("query {i}: {e}"));
        assert_eq!(rows.len(), 61, "a row a day");
    }
    let elapsed = started.elapsed();
    let log = sim.requests_since(seq).await;
    assert_eq!(throttled(&log), 0, "{log:?}");
    assert_eq!(charged_queries(&log), queries, "no query was sent twice");
    eprintln!(
        "QPU pacing: 6 units spent by another client, then {queries} queries of 2 units over {} subscriptions of one tenant \
         (12 units per 10 s): {} answered 429, {elapsed:.1?} in all",
        subs.len(),
        throttled(&log)
    );
}

#[tokio::test]
async fn a_wait_beyond_the_bound_is_reported_not_slept() {
    let sim = harness::start_with(true).await;
    let token = sim.token("collector").await;
    let scope = format!("/subscriptions/{}", sim.subscription_ids()[0]);
    let month = last_days(&sim, 30);
    assert_eq!(month.query_units(), 1);
    let impatient = sim
        .client
        .clone()
        .with_max_throttle_wait(Duration::from_secs(1));
    let seq = sim.last_seq().await;
    let started = Instant::now();
    let mut answered = 0;
    let wait = loop {
        match impatient.cost_query(&token, &scope, &month).all().await {
            Ok(_) => answered += 1,
            Err(AzureError::Throttled { retry_after }) => break retry_after,
            Err(e) => panic!("{e}"),
        }
        assert!(answered <= 12, "the 10-second window holds 12 units");
    };
    assert_eq!(answered, 12);
    assert!(
        wait > Duration::from_secs(1) && wait <= Duration::from_secs(11),
        "{wait:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "reported, not slept: {:?}",
        started.elapsed()
    );
    let log = sim.requests_since(seq).await;
    assert_eq!((throttled(&log), charged_queries(&log)), (0, 12), "{log:?}");

    // A client that knows nothing of those units is refused by Cost
    // Management; a 429 asking for longer than its bound comes back at
    // once, without retries.
    let seq = sim.last_seq().await;
    match stranger(&sim)
        .with_max_throttle_wait(Duration::from_secs(1))
        .cost_query(&token, &scope, &month)
        .all()
        .await
    {
        Err(AzureError::Throttled { retry_after }) => {
            assert!(retry_after > Duration::from_secs(1), "{retry_after:?}")
        }
        other => panic!("{other:?}"),
    }
    let log = sim.requests_since(seq).await;
    assert_eq!((throttled(&log), charged_queries(&log)), (1, 1), "{log:?}");

    // Within the default bound the same wait is slept, and the query answered.
    let seq = sim.last_seq().await;
    let started = Instant::now();
    let rows = sim
        .client
        .cost_query(&token, &scope, &month)
        .all()
        .await
        .expect("paced");
    let slept = started.elapsed();
    assert_eq!(rows.len(), 30);
    let log = sim.requests_since(seq).await;
    assert_eq!((throttled(&log), charged_queries(&log)), (0, 1), "{log:?}");
    eprintln!(
        "QPU bound: 12 queries answered, the 13th reported Throttled({wait:.1?}) with a 1 s bound; \
         with the default bound it waited {slept:.1?} and was answered, 0 answered 429"
    );
}
