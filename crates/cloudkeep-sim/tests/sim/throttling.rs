//! ARM throttling and injected faults, as clients see them.

use cloudkeep_sim::Faults;
use reqwest::StatusCode;

use crate::harness::{Options, start_with};

#[tokio::test]
async fn read_bucket_empties_into_429() {
    let sim = start_with(Options {
        throttle: true,
        ..Options::default()
    })
    .await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[2].clone();
    let path = format!("/subscriptions/{sub}/resourcegroups?api-version=2025-04-01");
    // The bucket refills 25 reads a second while the test calls: on a busy
    // machine the calls are slower, so the bounds allow for what the
    // elapsed time refilled.
    let started = std::time::Instant::now();
    let mut last = (u64::MAX, started);
    let mut throttled = None;
    for i in 0..1000 {
        let r = sim.get(&token, &path).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            throttled = Some((i, r));
            break;
        }
        assert_eq!(r.status, StatusCode::OK);
        let remaining: u64 = r
            .header("x-ms-ratelimit-remaining-subscription-reads")
            .expect("header")
            .parse()
            .expect("number");
        let refilled = (25.0 * last.1.elapsed().as_secs_f64()).ceil() as u64;
        assert!(
            remaining <= last.0.saturating_add(refilled),
            "{remaining} after {} with {refilled} refilled",
            last.0
        );
        last = (remaining, std::time::Instant::now());
    }
    let (calls, r) = throttled.expect("throttled within 1000 calls");
    let refilled = (25.0 * started.elapsed().as_secs_f64()).ceil() as u64;
    assert!(
        (240..=260 + refilled).contains(&calls),
        "the bucket holds about 250 reads (and refilled {refilled} meanwhile): {calls}"
    );
    assert_eq!(r.error_code(), "SubscriptionRequestsThrottled");
    assert!(
        r.header("retry-after")
            .expect("retry-after")
            .parse::<u64>()
            .expect("seconds")
            >= 1
    );
    // Another principal has its own bucket.
    let other = sim.token("reader-only").await;
    assert_eq!(sim.get(&other, &path).await.status, StatusCode::OK);
}

#[tokio::test]
async fn injected_errors_and_broken_connections() {
    let sim = start_with(Options {
        faults: Faults {
            rate_500: 1.0,
            ..Faults::default()
        },
        ..Options::default()
    })
    .await;
    let r = sim
        .http
        .get(format!(
            "{}/subscriptions?api-version=2022-12-01",
            sim.url()
        ))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // The control API is never faulted.
    assert_eq!(
        sim.http
            .get(format!("{}/_sim/scenario", sim.url()))
            .send()
            .await
            .expect("call")
            .status(),
        StatusCode::OK
    );

    let set = |f: Faults| {
        let sim = &sim;
        async move {
            let r = sim
                .http
                .put(format!("{}/_sim/faults", sim.url()))
                .json(&f)
                .send()
                .await
                .expect("put");
            assert_eq!(r.status(), StatusCode::OK);
        }
    };
    set(Faults {
        rate_429: 1.0,
        ..Faults::default()
    })
    .await;
    let r = sim
        .http
        .get(format!(
            "{}/subscriptions?api-version=2022-12-01",
            sim.url()
        ))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));

    set(Faults {
        rate_drop: 1.0,
        ..Faults::default()
    })
    .await;
    assert!(
        sim.http
            .get(format!(
                "{}/subscriptions?api-version=2022-12-01",
                sim.url()
            ))
            .send()
            .await
            .is_err(),
        "connection dropped"
    );

    set(Faults::default()).await;
    let token = sim.token("collector").await;
    set(Faults {
        rate_truncate: 1.0,
        ..Faults::default()
    })
    .await;
    let r = sim
        .http
        .get(format!(
            "{}/subscriptions?api-version=2022-12-01",
            sim.url()
        ))
        .bearer_auth(&token)
        .send()
        .await;
    let outcome = match r {
        Ok(resp) => resp.bytes().await.map(|b| b.len()),
        Err(e) => Err(e),
    };
    assert!(
        outcome.is_err(),
        "a truncated body fails to read: {outcome:?}"
    );
}

#[tokio::test]
async fn resource_graph_has_a_per_user_quota() {
    let sim = start_with(Options {
        throttle: true,
        ..Options::default()
    })
    .await;
    let token = sim.token("collector").await;
    let body = serde_json::json!({"query": "Resources | take 1"});
    let mut remaining = Vec::new();
    for _ in 0..15 {
        let r = sim
            .arm(
                &token,
                reqwest::Method::POST,
                "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01",
                Some(body.clone()),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        remaining.push(
            r.header("x-ms-user-quota-remaining")
                .expect("quota")
                .parse::<u32>()
                .expect("number"),
        );
        assert!(r.header("x-ms-user-quota-resets-after").is_some());
    }
    assert_eq!(remaining.first(), Some(&14));
    assert_eq!(remaining.last(), Some(&0));
    let r = sim
        .arm(
            &token,
            reqwest::Method::POST,
            "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01",
            Some(body),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::TOO_MANY_REQUESTS, "RateLimiting")
    );
    assert!(r.header("retry-after").is_some());
}

#[tokio::test]
async fn deletes_and_errors_report_their_own_quota() {
    let sim = start_with(Options {
        throttle: true,
        ..Options::default()
    })
    .await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let path = format!(
        "/subscriptions/{sub}/providers/Microsoft.Resources/tags/default?api-version=2025-04-01"
    );
    let r = sim.arm(&token, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-deletes")
            .is_some()
    );
    let none = sim.token("no-access").await;
    let r = sim
        .get(
            &none,
            &format!("/subscriptions/{sub}/resources?api-version=2025-04-01"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.header("x-ms-ratelimit-remaining-subscription-reads")
            .is_some(),
        "errors carry the quota too"
    );
}

/// With a seed, which calls are faulted is a function of the seed and the
/// call: the same calls after the same settings meet the same faults, and
/// another seed meets others. A 429 burst and a role removal count down.
#[tokio::test]
async fn seeded_faults_repeat_and_bursts_count_down() {
    let sim = start_with(Options::default()).await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let set = |f: serde_json::Value| {
        let sim = &sim;
        async move {
            let r = sim
                .http
                .put(format!("{}/_sim/faults", sim.url()))
                .json(&f)
                .send()
                .await
                .expect("put");
            assert_eq!(r.status(), StatusCode::OK);
        }
    };
    let statuses = |n: usize| {
        let (sim, token, sub) = (&sim, &token, &sub);
        async move {
            let mut out = Vec::new();
            for i in 0..n {
                // Calls of two kinds, so the draws are per call.
                let path = if i % 2 == 0 {
                    format!("/subscriptions/{sub}/resourcegroups?api-version=2025-04-01")
                } else {
                    "/subscriptions?api-version=2022-12-01".to_string()
                };
                out.push(sim.get(token, &path).await.status.as_u16());
            }
            out
        }
    };
    set(serde_json::json!({"rate_500": 0.5, "seed": 7})).await;
    let first = statuses(24).await;
    assert!(first.contains(&500) && first.contains(&200), "{first:?}");
    set(serde_json::json!({"rate_500": 0.5, "seed": 7})).await;
    assert_eq!(statuses(24).await, first, "the same seed, the same faults");
    set(serde_json::json!({"rate_500": 0.5, "seed": 8})).await;
    assert_ne!(statuses(24).await, first, "another seed, other faults");

    set(serde_json::json!({"burst_429": 3, "retry_after_ms": 250})).await;
    let r = sim
        .get(&token, "/subscriptions?api-version=2022-12-01")
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.header("retry-after"), Some("0.250"));
    assert_eq!(
        statuses(3).await,
        vec![429, 429, 200],
        "three in a row, then as before"
    );

    // Reader taken away after two more calls under the subscription.
    let collector = sim.sp("collector").object_id;
    set(
        serde_json::json!({"remove_roles": {"after": 2, "principal_id": collector,
        "scope": format!("/subscriptions/{sub}"), "roles": ["Reader", "Security Reader"]}}),
    )
    .await;
    let path = format!(
        "/subscriptions/{sub}/providers/Microsoft.Security/secureScores?api-version=2020-01-01"
    );
    let got: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(sim.get(&token, &path).await.status.as_u16());
        }
        v
    };
    assert_eq!(got, vec![200, 200, 403, 403], "removed after two calls");
}
