//! Spend against the simulator over HTTP, with a real store: stored cost
//! equals Azure's ungrouped daily totals to the cent per subscription and
//! day (a restated day replaced, not added; an interrupted backfill
//! resumed), analyses with tags and aliases, 422s that name what is
//! allowed, the summary and the FOCUS export.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use cloudkeep_azure::{CostGranularity, CostQuery, CostType};
use cloudkeep_domain::SecretString;
use futures_util::TryStreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{App, Org, spawn_app};

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d").expect("date")
}

/// Azure's ungrouped daily totals of a subscription, asked directly.
async fn azure_totals(
    app: &App,
    subscription: &str,
    cost_type: CostType,
    from: NaiveDate,
    to: NaiveDate,
) -> BTreeMap<NaiveDate, f64> {
    let azure = app.sim.azure();
    let sp = app.sim.scenario.sp("collector");
    let token = azure
        .client_credentials_token(
            &app.sim.scenario.tenant().tenant_id,
            &sp.client_id,
            &SecretString::new(sp.client_secret.clone()),
        )
        .await
        .expect("token");
    let rows: Vec<_> = azure
        .cost_query(
            &token,
            &format!("/subscriptions/{subscription}"),
            &CostQuery::new(cost_type, from, to, CostGranularity::Daily),
        )
        .try_collect()
        .await
        .expect("query");
    rows.into_iter()
        .map(|r| (r.date.expect("day"), r.cost))
        .collect()
}

/// Stored cost per subscription and day, through the API.
async fn stored(
    app: &App,
    org: &Org,
    metric: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> BTreeMap<(String, NaiveDate), f64> {
    let v = app
        .expect(
            &org.token,
            Method::GET,
            &format!(
                "/api/v1/spend?metric={metric}&group_by=subscription&from={from}&to={to}&top=100"
            ),
            None,
            StatusCode::OK,
        )
        .await;
    let mut out = BTreeMap::new();
    for s in v["series"].as_array().expect("series") {
        let sub = s["key"][0].as_str().expect("sub").to_string();
        for p in s["points"].as_array().expect("points") {
            out.insert(
                (sub.clone(), day(p["start"].as_str().expect("start"))),
                p["cost"].as_f64().expect("cost"),
            );
        }
    }
    out
}

/// Every subscription's every day equals Azure's total to the cent.
async fn assert_equal_to_azure(app: &App, org: &Org, from: NaiveDate, to: NaiveDate) {
    for (metric, cost_type) in [
        ("billed", CostType::ActualCost),
        ("effective", CostType::AmortizedCost),
    ] {
        let ours = stored(app, org, metric, from, to).await;
        let mut days = 0;
        for sub in app.subscription_ids() {
            let theirs = azure_totals(app, &sub, cost_type, from, to).await;
            assert!(!theirs.is_empty(), "Azure has cost for {sub}");
            for (d, cost) in &theirs {
                let mine = ours
                    .get(&(sub.to_ascii_lowercase(), *d))
                    .copied()
                    .unwrap_or(0.0);
                assert!(
                    (mine - cost).abs() < 0.005,
                    "{metric} of {sub} on {d}: stored {mine}, Azure {cost}"
                );
                days += 1;
            }
        }
        assert!(days > 150, "compared {days} days");
    }
}

fn sim_today(scenario: &Value) -> NaiveDate {
    day(scenario["today"].as_str().expect("today"))
}

fn spend_step<'a>(run: &'a Value, sub: &str) -> &'a Value {
    run["report"]["subscriptions"]
        .as_array()
        .expect("subs")
        .iter()
        .find(|s| s["subscription_id"].as_str() == Some(sub))
        .and_then(|s| {
            s["steps"]
                .as_array()
                .expect("steps")
                .iter()
                .find(|st| st["step"] == "spend")
        })
        .expect("a spend step")
}

#[tokio::test]
async fn stored_spend_equals_azure_to_the_cent_and_a_restated_day_is_replaced() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    let run = app.sync(&org, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let subs = app.subscription_ids();
    for sub in &subs {
        let step = spend_step(&run, sub);
        assert_eq!(step["state"], "succeeded", "{step}");
        assert_eq!(step["counts"]["months_done"], 13, "{step}");
        assert_eq!(step["counts"]["months_total"], 13, "{step}");
        assert!(
            step["counts"]["rows"].as_u64().expect("rows") > 1000,
            "{step}"
        );
    }
    let scenario = app.sim.scenario_now().await;
    let today = sim_today(&scenario);
    let start = day(scenario["cost_start"].as_str().expect("start"));
    assert_equal_to_azure(&app, &org, start, today).await;

    // Azure restates a recent day; the next sync's trailing window replaces it.
    let restated = today - chrono::Duration::days(2);
    let before = azure_totals(&app, &subs[0], CostType::ActualCost, restated, restated).await;
    app.sim
        .control_ok(
            Method::POST,
            "/_sim/cost/restate",
            json!({"subscription_id": subs[0], "date": restated.to_string(), "factor": 1.5}),
        )
        .await;
    let after = azure_totals(&app, &subs[0], CostType::ActualCost, restated, restated).await;
    assert!(
        after[&restated] > before[&restated] + 0.01,
        "the day changed"
    );
    let run = app.sync(&org, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let step = spend_step(&run, &subs[0]);
    assert_eq!(step["counts"]["trailing_days"], 5, "{step}");
    // Only the window (two periods when it spans the turn of a month).
    let periods = step["counts"]["periods"].as_u64().expect("periods");
    assert!((1..=2).contains(&periods), "{step}");
    assert_eq!(step["counts"]["unchanged_periods"], 0, "{step}");
    assert_equal_to_azure(&app, &org, start, today).await;

    // Azure answers the same again: nothing is rewritten. Then a day of
    // the window is restated: its period is written again.
    let run = app.sync(&org, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    for sub in &subs {
        let counts = &spend_step(&run, sub)["counts"];
        assert_eq!(counts["unchanged_periods"], counts["periods"], "{counts}");
    }
    app.sim
        .control_ok(
            Method::POST,
            "/_sim/cost/restate",
            json!({"subscription_id": subs[0], "date": restated.to_string(), "factor": 2.0}),
        )
        .await;
    let run = app.sync(&org, &id).await;
    let counts = &spend_step(&run, &subs[0])["counts"];
    assert_eq!(
        counts["unchanged_periods"].as_u64(),
        counts["periods"].as_u64().map(|p| p - 1),
        "{counts}"
    );
    assert_equal_to_azure(&app, &org, start, today).await;

    // The reconciliation is explicit: every day with Azure's total and the rows' sum.
    let rec = app
        .expect(
            &org.token,
            Method::GET,
            &format!(
                "/api/v1/spend/reconciliation?from={start}&to={today}&subscription={}",
                subs[0]
            ),
            None,
            StatusCode::OK,
        )
        .await;
    let days = rec.as_array().expect("days");
    assert_eq!(days.len() as i64, (today - start).num_days() + 1);
    for d in days {
        let total = d["billed_total"].as_f64().expect("total");
        let rows = d["billed_rows"].as_f64().expect("rows");
        let diff = d["billed_difference"].as_f64().expect("diff");
        assert!((total - rows - diff).abs() < 1e-6, "{d}");
    }

    // A shorter window per connection.
    let settings = app
        .expect(
            &org.token,
            Method::PATCH,
            &format!("/api/v1/connections/{id}/spend"),
            Some(json!({"trailing_days": 2})),
            StatusCode::OK,
        )
        .await;
    assert_eq!(settings["trailing_days"], 2);
    app.expect(
        &org.token,
        Method::PATCH,
        &format!("/api/v1/connections/{id}/spend"),
        Some(json!({"trailing_days": 0})),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    let run = app.sync(&org, &id).await;
    assert_eq!(spend_step(&run, &subs[0])["counts"]["trailing_days"], 2);
}

#[tokio::test]
async fn an_interrupted_backfill_resumes_where_it_stopped() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    // Cost queries slow enough to stop the backfill part way.
    app.sim
        .faults(json!({"latency_ms": 150, "latency_path": "Microsoft.CostManagement"}))
        .await;
    let sync = {
        let (url, token, id) = (app.url.clone(), org.token.clone(), id.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("{url}/api/v1/connections/{id}/sync"))
                .bearer_auth(token)
                .send()
                .await
                .expect("sync")
                .json::<Value>()
                .await
                .expect("run")
        })
    };
    // Once some month of some subscription is stored, Azure fails every call.
    let scope = org.scope.clone();
    let store = app.store.clone();
    let record = store
        .connection(&scope, id.parse().expect("id"))
        .await
        .expect("conn");
    let mut waited = 0;
    'wait: loop {
        for sub in record.live_subscriptions() {
            if let Some(b) = store.spend_backfill(&scope, sub).await.expect("state") {
                if b.months_done >= 1 {
                    break 'wait;
                }
            }
        }
        waited += 1;
        assert!(waited < 600, "no month was stored");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.sim.faults(json!({"rate_500": 1.0})).await;
    let run = sync.await.expect("the sync ended");
    assert_ne!(run["status"], "succeeded", "{run}");
    app.sim.faults(json!({})).await;
    let mut partial = 0;
    for sub in record.live_subscriptions() {
        let b = store.spend_backfill(&scope, sub).await.expect("state");
        if let Some(b) = b {
            assert!(b.months_done <= 13);
            if b.months_done < 13 {
                partial += 1;
            }
        }
    }
    assert!(partial > 0, "some backfill was interrupted");
    let before: BTreeMap<String, u32> = {
        let mut m = BTreeMap::new();
        for sub in record.live_subscriptions() {
            let done = store
                .spend_backfill(&scope, sub)
                .await
                .expect("state")
                .map(|b| b.months_done)
                .unwrap_or(0);
            m.insert(sub.azure_id.clone(), done);
        }
        m
    };
    let run = app.sync(&org, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    for (sub, done) in &before {
        let step = spend_step(&run, sub);
        assert_eq!(step["counts"]["months_done"], 13, "{step}");
        if *done > 0 && *done < 13 {
            // The months already stored were not asked again: the resumed
            // backfill pulled only what was left (the trailing window too).
            let periods = step["counts"]["periods"].as_u64().expect("periods");
            assert!(periods < 13 - u64::from(*done) + 2, "{sub}: {step}");
        }
    }
    let scenario = app.sim.scenario_now().await;
    let today = sim_today(&scenario);
    let start = day(scenario["cost_start"].as_str().expect("start"));
    assert_equal_to_azure(&app, &org, start, today).await;
}

#[tokio::test]
async fn analyses_group_filter_and_export() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    app.sync(&org, &id).await;
    let scenario = app.sim.scenario_now().await;
    let today = sim_today(&scenario);
    let from = today - chrono::Duration::days(29);
    let get = |q: String| {
        let (app, org) = (&app, &org);
        async move {
            app.expect(
                &org.token,
                Method::GET,
                &format!("/api/v1/spend?from={from}&to={today}&{q}"),
                None,
                StatusCode::OK,
            )
            .await
        }
    };
    let all = get(String::new()).await;
    let total = all["total"].as_f64().expect("total");
    assert!(total > 100.0, "{all}");
    assert_eq!(all["currency"], "USD");
    assert_eq!(all["totals"].as_array().expect("days").len(), 30);

    // By service, top 3 plus other: the groups add up to the total.
    let by = get("group_by=service&top=3&granularity=week".into()).await;
    let series = by["series"].as_array().expect("series");
    assert_eq!(series.len(), 4, "{by}");
    assert_eq!(series[3]["other"], true);
    let sum: f64 = series.iter().map(|s| s["total"].as_f64().expect("t")).sum();
    assert!((sum - total).abs() < 0.01, "{sum} vs {total}");

    // By tag: env, with an alias folding Environment/ENV into it.
    let by_env = get("group_by=tag:env&granularity=month".into()).await;
    let keys: Vec<Option<String>> = by_env["series"]
        .as_array()
        .expect("series")
        .iter()
        .map(|s| s["key"][0].as_str().map(str::to_string))
        .collect();
    assert!(keys.contains(&None), "untagged cost: {keys:?}");
    assert!(keys.iter().flatten().any(|k| k == "prod"), "{keys:?}");
    let tagged = get("filter=tag:env".into()).await["total"]
        .as_f64()
        .expect("t");
    let untagged = get("filter=!tag:env".into()).await["total"]
        .as_f64()
        .expect("t");
    assert!(
        (tagged + untagged - total).abs() < 0.01,
        "has + lacks = all: {tagged} + {untagged} vs {total}"
    );
    let prod = get("filter=tag:ENV=prod".into()).await["total"]
        .as_f64()
        .expect("t");
    assert!(prod > 0.0 && prod < tagged);
    app.expect(
        &org.token,
        Method::PUT,
        "/api/v1/spend/tag-aliases",
        Some(json!({"aliases": {"environment": "env", "Stage": "env"}})),
        StatusCode::OK,
    )
    .await;
    let aliases = aliases_of(&app, &org).await;
    assert_eq!(aliases["aliases"]["stage"], "env");
    let via_alias = get("filter=tag:environment".into()).await["total"]
        .as_f64()
        .expect("t");
    assert!(via_alias >= tagged - 0.01, "{via_alias} vs {tagged}");

    // Two groupings and a dimension filter.
    let two = get("group_by=resource_group,region&filter=service=Storage&top=100".into()).await;
    for s in two["series"].as_array().expect("series") {
        assert_eq!(s["key"].as_array().expect("key").len(), 2);
    }

    // Bad input names what is allowed.
    for (q, says) in [
        ("group_by=colour", "resource_group"),
        ("group_by=service,region,resource", "at most two"),
        ("granularity=hour", "day, week, month"),
        ("filter=tag:", "tag:<key>"),
    ] {
        let (status, body) = app
            .call(&org.token, Method::GET, &format!("/api/v1/spend?{q}"), None)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{q}: {body}");
        assert!(body.to_string().contains(says), "{q}: {body}");
    }
    let (status, body) = app
        .call(
            &org.token,
            Method::GET,
            &format!("/api/v1/spend?from={today}&to={from}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let summary = app
        .expect(
            &org.token,
            Method::GET,
            "/api/v1/spend/summary",
            None,
            StatusCode::OK,
        )
        .await;
    assert!(
        summary["month_to_date"].as_f64().expect("mtd") > 0.0,
        "{summary}"
    );
    assert!(
        summary["last_month"].as_f64().expect("lm") > 0.0,
        "{summary}"
    );
    assert!(
        !summary["movers_by_service"]
            .as_array()
            .expect("m")
            .is_empty()
    );

    // The FOCUS export: a header, then every row; its costs add up.
    let r = app
        .http
        .get(format!(
            "{}/api/v1/spend/export?format=focus-csv&from={from}&to={today}",
            app.url
        ))
        .bearer_auth(&org.token)
        .send()
        .await
        .expect("export");
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.expect("csv");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let at = header
        .iter()
        .position(|h| *h == "BilledCost")
        .expect("BilledCost");
    assert!(header.contains(&"EffectiveCost") && header.contains(&"Tags"));
    // (The columns before BilledCost hold no commas.)
    let billed: f64 = lines
        .map(|l| {
            l.split(',')
                .nth(at)
                .expect("cell")
                .parse::<f64>()
                .expect("cost")
        })
        .sum();
    assert!((billed - total).abs() < 0.01, "{billed} vs {total}");
    let (status, _) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/spend/export?format=xlsx",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

/// With Azure's throttling on, in either header family, a backfill paces
/// itself instead of running into 429s, and stores the same totals.
/// The organisation's tag aliases, as the API answers them.
async fn aliases_of(app: &App, org: &Org) -> Value {
    app.expect(
        &org.token,
        Method::GET,
        "/api/v1/spend/tag-aliases",
        None,
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn aliases_added_at_once_are_all_kept_and_refusals_say_why() {
    let app = spawn_app().await;
    let org = app.org("aliases").await;
    // Eight people add an alias each at the same moment: each add reads
    // and writes one alias, so none overwrites another's.
    let paths: Vec<String> = (0..8)
        .map(|i| format!("/api/v1/spend/tag-aliases/Environment{i}"))
        .collect();
    let adds = paths
        .iter()
        .map(|p| app.call(&org.token, Method::PUT, p, Some(json!({"key": "Env"}))));
    for (status, body) in futures_util::future::join_all(adds).await {
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let all = aliases_of(&app, &org).await;
    let expected: BTreeMap<String, String> = (0..8)
        .map(|i| (format!("environment{i}"), "env".to_string()))
        .collect();
    assert_eq!(
        serde_json::from_value::<BTreeMap<String, String>>(all["aliases"].clone()).expect("map"),
        expected
    );
    // Adding it again changes nothing; pointing it elsewhere is refused.
    app.expect(
        &org.token,
        Method::PUT,
        "/api/v1/spend/tag-aliases/environment0",
        Some(json!({"key": "ENV"})),
        StatusCode::OK,
    )
    .await;
    for (path, key, status, says) in [
        (
            "environment0",
            "stage",
            StatusCode::CONFLICT,
            "already stands for 'env'",
        ),
        (
            "env",
            "environment1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "is itself an alias of 'env'",
        ),
        (
            "stage",
            "environment1",
            StatusCode::UNPROCESSABLE_ENTITY,
            "point 'stage' at 'env'",
        ),
        (
            "env",
            "deployment",
            StatusCode::UNPROCESSABLE_ENTITY,
            "both an alias and the key 'environment0' points to",
        ),
        (
            "owner",
            "Owner",
            StatusCode::UNPROCESSABLE_ENTITY,
            "is the key itself",
        ),
    ] {
        let (got, body) = app
            .call(
                &org.token,
                Method::PUT,
                &format!("/api/v1/spend/tag-aliases/{path}"),
                Some(json!({ "key": key })),
            )
            .await;
        assert_eq!(got, status, "{path} -> {key}: {body}");
        assert!(body.to_string().contains(says), "{path} -> {key}: {body}");
    }
    let (status, body) = app
        .call(
            &org.token,
            Method::PUT,
            "/api/v1/spend/tag-aliases/x",
            Some(json!({"key": "y", "colour": "blue"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    // A viewer may read but not change them.
    let viewer = app.member(&org, cloudkeep_domain::Role::Viewer).await;
    app.expect(
        &viewer,
        Method::DELETE,
        "/api/v1/spend/tag-aliases/environment3",
        None,
        StatusCode::FORBIDDEN,
    )
    .await;
    // Removed once; then there is none to remove.
    for status in [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND] {
        app.expect(
            &org.token,
            Method::DELETE,
            "/api/v1/spend/tag-aliases/environment3",
            None,
            status,
        )
        .await;
    }
    let all = aliases_of(&app, &org).await;
    assert_eq!(all["aliases"].as_object().expect("map").len(), 7, "{all}");
    // Each change is one audit event saying which alias.
    let events = app
        .list(&org.token, "/api/v1/audit?action=spend_tag_alias.added")
        .await;
    assert_eq!(events.len(), 8, "{events:?}");
    let removed = app
        .list(&org.token, "/api/v1/audit?action=spend_tag_alias.removed")
        .await;
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(
        removed[0]["details"]["alias"], "environment3",
        "{removed:?}"
    );
}

async fn backfill_paced(family: &str) {
    let app = cloudkeep_testkit::spawn_app_with(cloudkeep_testkit::AppOptions {
        sim: cloudkeep_testkit::SimOptions {
            throttle: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    app.sim
        .control_ok(
            Method::PUT,
            "/_sim/cost/headers",
            json!({ "family": family }),
        )
        .await;
    let org = app.org("acme").await;
    let sub = app.subscription_ids()[0].clone();
    let mut body = app.connect_body("collector");
    body["subscription_ids"] = json!([sub]);
    let conn = app
        .expect(
            &org.token,
            Method::POST,
            "/api/v1/connections",
            Some(body),
            StatusCode::CREATED,
        )
        .await;
    let id = conn["id"].as_str().expect("id").to_string();
    let since = app.sim.last_seq().await;
    for _ in 0..2 {
        let run = app.sync(&org, &id).await;
        assert_eq!(run["status"], "succeeded", "{family}: {run}");
    }
    let log = app.sim.requests(since).await;
    let cost: Vec<&Value> = log
        .iter()
        .filter(|e| {
            e["path"]
                .as_str()
                .unwrap_or("")
                .ends_with("Microsoft.CostManagement/query")
        })
        .collect();
    assert!(cost.len() > 20, "{family}: {} cost queries", cost.len());
    let refused = cost.iter().filter(|e| e["status"] == 429).count();
    assert_eq!(refused, 0, "{family}: the client paced itself");
    let scenario = app.sim.scenario_now().await;
    let today = sim_today(&scenario);
    let start = day(scenario["cost_start"].as_str().expect("start"));
    let ours = stored(&app, &org, "billed", start, today).await;
    let theirs = azure_totals(&app, &sub, CostType::ActualCost, start, today).await;
    for (d, cost) in &theirs {
        let mine = ours
            .get(&(sub.to_ascii_lowercase(), *d))
            .copied()
            .unwrap_or(0.0);
        assert!(
            (mine - cost).abs() < 0.005,
            "{family} {d}: {mine} vs {cost}"
        );
    }
}

#[tokio::test]
async fn a_throttled_backfill_paces_by_query_units() {
    backfill_paced("qpu").await;
}

#[tokio::test]
async fn a_throttled_backfill_paces_by_request_windows() {
    backfill_paced("entity").await;
}
