//! Staleness alerts and webhooks, on a clock the test moves (never by
//! waiting): a connection past its stale threshold opens one alert,
//! delivered to a local receiver with a valid HMAC-SHA256 signature; a
//! successful sync resolves it; deliveries are retried with backoff from
//! the job queue, and survive a new scheduler (a restart).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use chrono::Duration;
use cloudkeep_domain::{Clock, ManualClock, Role};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::evidence::sync_ok;
use crate::harness::{App, Org, spawn_app_on};

/// What a local webhook receiver got: each request's headers and body.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    pub(crate) url: String,
    calls: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    failures_left: Arc<AtomicUsize>,
}

impl Receiver {
    /// A receiver on a free loopback port that answers 503 to its first
    /// `fail_first` requests and 200 after.
    pub(crate) async fn start(fail_first: usize) -> Receiver {
        let mut r = Receiver {
            failures_left: Arc::new(AtomicUsize::new(fail_first)),
            ..Default::default()
        };
        let state = r.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let state = state.clone();
                async move {
                    state
                        .calls
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((headers, body));
                    let failing = state
                        .failures_left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    if failing {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        r.url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        r
    }

    pub(crate) fn calls(&self) -> Vec<(HeaderMap, String)> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The calls about alerts of one kind (a sync's spend may open anomaly
    /// alerts beside the ones a test is about).
    pub(crate) fn calls_of(&self, kind: &str) -> Vec<(HeaderMap, String)> {
        self.calls()
            .into_iter()
            .filter(|(_, body)| {
                serde_json::from_str::<Value>(body).expect("json")["alert"]["kind"] == kind
            })
            .collect()
    }
}

pub(crate) fn header(h: &HeaderMap, name: &str) -> String {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// HMAC-SHA256 written out from RFC 2104, so the check does not share the
/// sender's code.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let digest = Sha256::new()
        .chain_update(&inner)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(&outer)
        .chain_update(digest)
        .finalize()
        .to_vec()
}

/// Checks a call's `X-Cloudkeep-Signature` (`t=<ts>,v1=<hex>`) over
/// `"<ts>.<body>"`; answers its timestamp.
pub(crate) fn verify(secret: &str, headers: &HeaderMap, body: &str) -> i64 {
    let signature = header(headers, "x-cloudkeep-signature");
    let mut t = None;
    let mut v1 = None;
    for part in signature.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = Some(v.to_string()),
            _ => {}
        }
    }
    let (t, v1) = (t.expect("t"), v1.expect("v1"));
    let expected = hex::encode(hmac_sha256(
        secret.as_bytes(),
        format!("{t}.{body}").as_bytes(),
    ));
    assert_eq!(
        v1, expected,
        "the signature is over the timestamp and the body"
    );
    t
}

/// Connects the simulated tenant and syncs it once, with a cadence so long
/// that the scheduler never syncs it during the test; answers its id.
pub(crate) async fn synced_rarely(app: &App, org: &Org) -> String {
    let conn = app.connect(org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    app.expect(
        &org.token,
        Method::PATCH,
        &format!("/api/v1/connections/{id}"),
        Some(json!({"cadence_hours": 2160})),
        StatusCode::OK,
    )
    .await;
    sync_ok(app, org, &id).await;
    id
}

/// A webhook to `url`; answers its id and secret.
pub(crate) async fn webhook(app: &App, org: &Org, url: &str) -> (String, String) {
    let created = app
        .expect(
            &org.token,
            Method::POST,
            "/api/v1/webhooks",
            Some(json!({"name": "ops", "url": url})),
            StatusCode::CREATED,
        )
        .await;
    (
        created["webhook"]["id"].as_str().expect("id").to_string(),
        created["secret"].as_str().expect("secret").to_string(),
    )
}

async fn coverage_of(app: &App, org: &Org, control: &str) -> Value {
    app.expect(
        &org.token,
        Method::GET,
        &format!("/api/v1/controls/{control}?days=10"),
        None,
        StatusCode::OK,
    )
    .await
}

#[tokio::test]
async fn stale_evidence_opens_one_alert_and_a_successful_sync_resolves_it() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_on(&clock).await;
    let org = app.org("acme").await;
    let id = synced_rarely(&app, &org).await;
    let receiver = Receiver::start(0).await;
    let (_, secret) = webhook(&app, &org, &receiver.url).await;
    let scheduler = app.scheduler();
    let quiet = scheduler.tick().await.expect("tick");
    assert_eq!(
        (quiet.alerts, quiet.deliveries, quiet.ran),
        (0, 0, 0),
        "{quiet:?}"
    );
    let fresh = coverage_of(&app, &org, "CC6.6").await;
    assert_eq!(fresh["coverage"]["evidence_coverage"], 1.0);

    // Two days and an hour without a sync: past the 48-hour threshold.
    clock.advance(Duration::hours(49));
    let fired = scheduler.tick().await.expect("tick");
    assert_eq!((fired.alerts, fired.deliveries), (1, 1), "{fired:?}");
    let calls = receiver.calls();
    assert_eq!(calls.len(), 1);
    let (headers, body) = &calls[0];
    let t = verify(&secret, headers, body);
    assert_eq!(t, clock.now().timestamp());
    assert_eq!(header(headers, "x-cloudkeep-event"), "alert.opened");
    let payload: Value = serde_json::from_str(body).expect("json");
    assert_eq!(payload["alert"]["kind"], "evidence_stale");
    assert_eq!(payload["alert"]["scope"], format!("connection:{id}"));
    assert_eq!(
        payload["id"],
        header(headers, "x-cloudkeep-delivery").as_str()
    );
    let open = app
        .list(&org.token, "/api/v1/alerts?state=open&kind=evidence_stale")
        .await;
    assert_eq!(open.len(), 1);
    let alert_id = open[0]["id"].as_str().expect("id").to_string();
    let stale = coverage_of(&app, &org, "CC6.6").await;
    assert_eq!(stale["coverage"]["state"], "stale", "{stale}");
    assert_eq!(
        stale["coverage"]["evidence_coverage"], 0.0,
        "coverage drops"
    );
    assert!(stale["coverage"]["stale"].as_u64() > Some(0));

    // Looked at again (and a day later): still the one alert.
    let again = scheduler.tick().await.expect("tick");
    assert_eq!((again.alerts, again.deliveries), (0, 0));
    clock.advance(Duration::hours(24));
    let next_day = scheduler.tick().await.expect("tick");
    assert_eq!((next_day.alerts, next_day.deliveries), (0, 0));
    // (The sync's spend may have opened anomaly alerts of its own.)
    assert_eq!(
        app.list(&org.token, "/api/v1/alerts?kind=evidence_stale")
            .await
            .len(),
        1
    );
    assert_eq!(receiver.calls().len(), 1, "fires once");

    // Acknowledged by an editor (viewers may not): one more transition.
    let viewer = app.member(&org, Role::Viewer).await;
    let editor = app.member(&org, Role::Editor).await;
    let ack = format!("/api/v1/alerts/{alert_id}/acknowledge");
    app.expect(&viewer, Method::POST, &ack, None, StatusCode::FORBIDDEN)
        .await;
    let acked = app
        .expect(&editor, Method::POST, &ack, None, StatusCode::OK)
        .await;
    assert_eq!(acked["state"], "acknowledged");
    scheduler.tick().await.expect("tick");

    // A successful sync clears it.
    sync_ok(&app, &org, &id).await;
    scheduler.tick().await.expect("tick");
    let alert = app
        .expect(
            &org.token,
            Method::GET,
            &format!("/api/v1/alerts/{alert_id}"),
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(alert["state"], "resolved", "{alert}");
    let stale_calls = receiver.calls_of("evidence_stale");
    let events: Vec<String> = stale_calls
        .iter()
        .map(|(h, _)| header(h, "x-cloudkeep-event"))
        .collect();
    assert_eq!(
        events,
        ["alert.opened", "alert.acknowledged", "alert.resolved"]
    );
    for (headers, body) in receiver.calls() {
        verify(&secret, &headers, &body);
    }
    let after = scheduler.tick().await.expect("tick");
    assert_eq!((after.alerts, after.deliveries), (0, 0));
    assert_eq!(receiver.calls_of("evidence_stale").len(), 3);
    for action in ["alert.opened", "alert.acknowledged", "alert.resolved"] {
        let audit = app
            .expect(
                &org.token,
                Method::GET,
                &format!("/api/v1/audit?action={action}"),
                None,
                StatusCode::OK,
            )
            .await;
        let stale = audit["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|e| e["details"]["kind"] == "evidence_stale")
            .count();
        assert_eq!(stale, 1, "{action}");
    }

    // The daily history shows the days it was stale.
    let control = coverage_of(&app, &org, "CC6.6").await;
    let days: Vec<&str> = control["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|d| d["coverage"]["state"].as_str())
        .collect();
    assert_eq!(
        days,
        ["failing", "stale", "failing"],
        "{}",
        control["history"]
    );
    assert_eq!(control["coverage"]["state"], "failing", "fresh again");
}

#[tokio::test]
async fn webhook_deliveries_are_signed_and_retried_with_backoff() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_on(&clock).await;
    let org = app.org("acme").await;
    for (url, why) in [
        ("http://hooks.example.com/ck", "HTTPS"),
        ("ftp://hooks.example.com/ck", "HTTPS"),
        ("https://user:pw@hooks.example.com/ck", "credentials"),
    ] {
        let (status, body) = app
            .call(
                &org.token,
                Method::POST,
                "/api/v1/webhooks",
                Some(json!({"name": "x", "url": url})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert!(body.to_string().contains(why), "{url}: {body}");
    }
    let receiver = Receiver::start(2).await;
    let (hook, secret) = webhook(&app, &org, &receiver.url).await;
    let queued = app
        .expect(
            &org.token,
            Method::POST,
            &format!("/api/v1/webhooks/{hook}/test"),
            None,
            StatusCode::ACCEPTED,
        )
        .await;
    assert_eq!(queued["state"], "pending");
    let deliveries = format!("/api/v1/webhooks/{hook}/deliveries");
    let scheduler = app.scheduler();
    assert_eq!(scheduler.tick().await.expect("tick").deliveries, 1);
    let log = &app.list(&org.token, &deliveries).await[0];
    assert_eq!(
        (&log["state"], &log["attempts"], &log["last_status"]),
        (&json!("pending"), &json!(1), &json!(503))
    );
    assert_eq!(
        scheduler.tick().await.expect("tick").deliveries,
        0,
        "not before its backoff"
    );
    clock.advance(Duration::seconds(61));
    assert_eq!(scheduler.tick().await.expect("tick").deliveries, 1);
    // A new scheduler (another process, or this one restarted) takes the
    // queued retry up: the delivery lives in the store, not in memory.
    clock.advance(Duration::seconds(121));
    assert_eq!(app.scheduler().tick().await.expect("tick").deliveries, 1);
    let log = &app.list(&org.token, &deliveries).await[0];
    assert_eq!(log["state"], "delivered", "{log}");
    let statuses: Vec<&Value> = log["log"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| &a["http_status"])
        .collect();
    assert_eq!(statuses, [&json!(503), &json!(503), &json!(200)]);
    let calls = receiver.calls();
    assert_eq!(calls.len(), 3);
    let stamps: Vec<i64> = calls.iter().map(|(h, b)| verify(&secret, h, b)).collect();
    assert!(
        stamps.windows(2).all(|w| w[0] < w[1]),
        "each attempt signs afresh"
    );
    assert!(calls.iter().all(|(h, b)| *b == calls[0].1
        && header(h, "x-cloudkeep-delivery") == log["id"].as_str().unwrap_or_default()));
    assert_eq!(header(&calls[0].0, "x-cloudkeep-event"), "webhook.test");

    // A receiver that never answers 2xx: given up after six attempts.
    let down = Receiver::start(usize::MAX).await;
    let (down_hook, _) = webhook(&app, &org, &down.url).await;
    app.expect(
        &org.token,
        Method::POST,
        &format!("/api/v1/webhooks/{down_hook}/test"),
        None,
        StatusCode::ACCEPTED,
    )
    .await;
    for _ in 0..8 {
        scheduler.tick().await.expect("tick");
        clock.advance(Duration::minutes(20));
    }
    assert_eq!(down.calls().len(), 6);
    let failed = &app
        .list(
            &org.token,
            &format!("/api/v1/webhooks/{down_hook}/deliveries"),
        )
        .await[0];
    assert_eq!(
        (&failed["state"], &failed["attempts"]),
        (&json!("failed"), &json!(6))
    );
    // Deleted: gone from the API, its secret destroyed.
    app.expect(
        &org.token,
        Method::DELETE,
        &format!("/api/v1/webhooks/{down_hook}"),
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    app.expect(
        &org.token,
        Method::GET,
        &format!("/api/v1/webhooks/{down_hook}"),
        None,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(app.list(&org.token, "/api/v1/webhooks").await.len(), 1);
}

#[tokio::test]
async fn a_revoked_connection_s_stale_alert_resolves() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_on(&clock).await;
    let org = app.org("acme").await;
    let id = synced_rarely(&app, &org).await;
    let scheduler = app.scheduler();
    clock.advance(Duration::hours(49));
    assert_eq!(scheduler.tick().await.expect("tick").alerts, 1);
    app.expect(
        &org.token,
        Method::DELETE,
        &format!("/api/v1/connections/{id}"),
        None,
        StatusCode::OK,
    )
    .await;
    assert_eq!(scheduler.tick().await.expect("tick").alerts, 1, "resolved");
    let alerts = app
        .list(&org.token, "/api/v1/alerts?kind=evidence_stale")
        .await;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0]["state"], "resolved");
    assert_eq!(
        alerts[0]["figures"]["resolved_because"],
        "the connection was revoked"
    );
    assert_eq!(scheduler.tick().await.expect("tick").alerts, 0);
}
