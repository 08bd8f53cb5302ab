//! Sign-ins that cannot be abused: growing waits and a lock per email
//! (known or not, the same answers), audited for the organisation's
//! owners; logout refused for API tokens; the headers every answer carries.

use chrono::Duration;
use cloudkeep_domain::{ManualClock, Role};
use cloudkeep_testkit::app::OWNER_PASSWORD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{App, spawn_app, spawn_app_on};

async fn sign_in(app: &App, email: &str, password: &str) -> (StatusCode, Option<String>, Value) {
    let r = app
        .http
        .post(format!("{}/api/v1/auth/login", app.url))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login");
    let status = r.status();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().expect("ascii").to_string());
    (status, retry, r.json().await.expect("json"))
}

#[tokio::test]
async fn failed_sign_ins_wait_longer_then_lock_the_same_for_unknown_emails() {
    let clock = ManualClock::starting_now();
    let app = spawn_app_on(&clock).await;
    let org = app.org("acme").await;
    let unknown = "nobody@nowhere.example.com";

    for email in [org.owner_email.as_str(), unknown] {
        for _ in 0..5 {
            let (status, _, _) = sign_in(&app, email, "wrong wrong wrong").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{email}");
        }
        // The sixth attempt waits, and is not even checked: the right
        // password is refused too.
        let (status, retry, body) = sign_in(&app, email, OWNER_PASSWORD).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{email}: {body}");
        assert_eq!(retry.as_deref(), Some("1"));
        assert_eq!(body["error"]["code"], "too_many_attempts");
        assert_eq!(
            body["error"]["message"],
            "too many failed sign-ins for this email or from this address: try again in 1 seconds"
        );
    }

    // Waits double from there; each failure counts once the wait is over.
    let mut waited = Vec::new();
    for _ in 5..20 {
        let (status, retry, _) = sign_in(&app, &org.owner_email, "still wrong").await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let secs: i64 = retry.expect("retry-after").parse().expect("seconds");
        waited.push(secs);
        clock.advance(Duration::seconds(secs));
        let (status, _, _) = sign_in(&app, &org.owner_email, "still wrong").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(&waited[..4], &[1, 2, 4, 8], "{waited:?}");
    // Twenty failures lock the account: the right password waits 15 minutes.
    let (status, retry, body) = sign_in(&app, &org.owner_email, OWNER_PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(retry.as_deref(), Some("900"));
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with("locked after too many failed sign-ins"),
        "{body}"
    );
    clock.advance(Duration::minutes(15));
    let (status, _, body) = sign_in(&app, &org.owner_email, OWNER_PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A success clears the account's count: the next failure is free again.
    let (status, _, _) = sign_in(&app, &org.owner_email, "wrong again").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = sign_in(&app, &org.owner_email, OWNER_PASSWORD).await;
    assert_eq!(status, StatusCode::OK);

    // The owners see it in the audit log.
    let actions: Vec<String> = app
        .list(&org.token, "/api/v1/audit")
        .await
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_string))
        .collect();
    for a in ["user.login_delayed", "user.login_locked"] {
        assert_eq!(
            actions.iter().filter(|x| *x == a).count(),
            1,
            "{a} once: {actions:?}"
        );
    }
    assert_eq!(
        actions.iter().filter(|x| *x == "user.login_failed").count(),
        21,
        "every checked failure, none of the refused attempts"
    );
}

#[tokio::test]
async fn logout_with_an_api_token_is_refused_and_records_nothing() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let (status, body) = app
        .call(&org.token, Method::POST, "/api/v1/auth/logout", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("DELETE /api/v1/tokens/{id}"),
        "{body}"
    );
    let (status, _) = app.call(&org.token, Method::GET, "/api/v1/me", None).await;
    assert_eq!(status, StatusCode::OK, "the token still works");
    let events = app
        .list(&org.token, "/api/v1/audit?action=user.logout")
        .await;
    assert!(events.is_empty(), "{events:?}");
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let anonymous = app
        .http
        .get(format!("{}/api/v1/connections", app.url))
        .send()
        .await
        .expect("get");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.headers()["www-authenticate"],
        "Bearer realm=\"cloudkeep\""
    );
    let created = app
        .http
        .post(format!("{}/api/v1/tokens", app.url))
        .bearer_auth(&org.token)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .expect("post");
    assert_eq!(created.status(), StatusCode::CREATED);
    for r in [&anonymous, &created] {
        let h = r.headers();
        assert_eq!(h["cache-control"], "no-store", "{h:?}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(
            h["content-security-policy"]
                .to_str()
                .expect("csp")
                .contains("frame-ancestors 'none'")
        );
    }
    let doc: Value = app
        .http
        .get(format!("{}/api/v1/openapi.json", app.url))
        .send()
        .await
        .expect("doc")
        .json()
        .await
        .expect("json");
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["session"]["in"], "cookie");
    assert_eq!(schemes["session"]["name"], "cloudkeep_session");
    assert_eq!(
        doc["paths"]["/api/v1/auth/login"]["post"]["security"],
        json!([{}]),
        "signing in needs no credential"
    );
}

#[tokio::test]
async fn a_disabled_user_stops_at_once_and_owners_stay() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let email = app.person(&org, Role::Editor).await;
    // The editor has a browser session and an API token.
    let (status, _, _) = sign_in(&app, &email, OWNER_PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    let r = browser
        .post(format!("{}/api/v1/auth/login", app.url))
        .json(&json!({"email": email, "password": OWNER_PASSWORD}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), StatusCode::OK);
    let editor: Value = r.json().await.expect("json");
    let editor_id = editor["user"]["id"].as_str().expect("id").to_string();
    let me = |c: &reqwest::Client| {
        let url = format!("{}/api/v1/me", app.url);
        let c = c.clone();
        async move { c.get(url).send().await.expect("me").status() }
    };
    assert_eq!(me(&browser).await, StatusCode::OK);

    let (status, body) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/users/{editor_id}/disable"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], true);
    assert_eq!(
        me(&browser).await,
        StatusCode::UNAUTHORIZED,
        "the session ended"
    );
    let (status, _, _) = sign_in(&app, &email, OWNER_PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no new session either");

    let (status, body) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/users/{editor_id}/enable"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disabled"], false);
    let (status, _, _) = sign_in(&app, &email, OWNER_PASSWORD).await;
    assert_eq!(status, StatusCode::OK);

    // An admin's token stops at once too; an admin cannot disable an owner,
    // and an owner cannot disable themselves.
    let admin = app.member(&org, Role::Admin).await;
    let (_, me_admin) = app.call(&admin, Method::GET, "/api/v1/me", None).await;
    let admin_id = me_admin["user"]["id"].as_str().expect("id").to_string();
    let (_, owner) = app.call(&org.token, Method::GET, "/api/v1/me", None).await;
    let owner_id = owner["user"]["id"].as_str().expect("id").to_string();
    let (status, body) = app
        .call(
            &admin,
            Method::POST,
            &format!("/api/v1/users/{owner_id}/disable"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/users/{owner_id}/disable"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "yourself");
    let (status, _) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/users/{admin_id}/disable"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call(&admin, Method::GET, "/api/v1/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the token stopped");

    let actions: Vec<String> = app
        .list(&org.token, "/api/v1/audit")
        .await
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_string))
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "user.disabled").count(), 2);
    assert_eq!(actions.iter().filter(|a| *a == "user.enabled").count(), 1);
}

#[tokio::test]
async fn another_organisations_email_is_added_without_telling_and_cannot_sign_in_here() {
    let app = spawn_app().await;
    let a = app.org("a").await;
    let b = app.org("b").await;
    let (status, user) = app
        .call(
            &b.token,
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": a.owner_email, "name": "Someone", "role": "editor", "password": "b's own password here"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "answered as any new email: {user}"
    );
    assert_eq!(user["email"], a.owner_email.as_str());
    // The email still signs in to A, and only there.
    let (status, _, _) = sign_in(&app, &a.owner_email, "b's own password here").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, signed_in) = sign_in(&app, &a.owner_email, OWNER_PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    let (_, me) = app.call(&a.token, Method::GET, "/api/v1/me", None).await;
    assert_eq!(signed_in["user"]["id"], me["user"]["id"]);
    // Within one organisation an email is still one user.
    let (status, dup) = app
        .call(
            &b.token,
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": a.owner_email, "name": "Again", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{dup}");
}

/// HMAC-SHA256 written out from RFC 2104 over `sha2`, so the check shares
/// no code with the store that seals.
fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    hex::encode(
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize(),
    )
}

/// JSON with object keys sorted and no whitespace (docs/audit.md, step 1).
fn canonical(v: &Value) -> String {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let members: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical(&map[*k])))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => {
            format!(
                "[{}]",
                items.iter().map(canonical).collect::<Vec<_>>().join(",")
            )
        }
        other => other.to_string(),
    }
}

#[tokio::test]
async fn the_audit_chain_verifies_offline_with_the_key() {
    use base64::Engine;
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let _ = sign_in(&app, &org.owner_email, "wrong wrong wrong").await;
    let _ = sign_in(&app, &org.owner_email, OWNER_PASSWORD).await;
    let events = app.list(&org.token, "/api/v1/audit").await;
    assert!(events.len() >= 3, "{events:?}");
    // What the auditor is given: the key file's lines.
    let text = std::fs::read_to_string(&app.audit_key_file).expect("audit key file");
    let keys: std::collections::HashMap<String, Vec<u8>> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, b64)| {
            let key = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64");
            (id.to_string(), key)
        })
        .collect();
    let mut prev = String::new();
    for (n, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], n as i64 + 1);
        assert_eq!(e["prev_hash"].as_str(), Some(prev.as_str()));
        let at = chrono::DateTime::parse_from_rfc3339(e["at"].as_str().expect("at"))
            .expect("time")
            .timestamp_millis();
        let content = canonical(&json!({
            "action": e["action"], "actor": e["actor"], "at": at,
            "details": canonical(&e["details"]), "id": e["id"], "org": org.org_id,
            "seq": e["seq"], "target": e["target"],
        }));
        let key = &keys[e["key_id"].as_str().expect("sealed")];
        let hash = hmac_sha256(key, format!("{prev}\n{content}").as_bytes());
        assert_eq!(e["hash"].as_str(), Some(hash.as_str()), "event {n}: {e}");
        prev = hash;
    }
}
