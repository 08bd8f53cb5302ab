//! Sign-in, sessions with CSRF protection, API tokens and role checks.

use cloudkeep_domain::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::spawn_app;

#[tokio::test]
async fn sessions_need_csrf_for_changes() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    let wrong = browser
        .post(format!("{}/api/v1/auth/login", app.url))
        .json(&json!({"email": org.owner_email, "password": "nope nope nope"}))
        .send()
        .await
        .expect("login");
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let login = browser
        .post(format!("{}/api/v1/auth/login", app.url))
        .json(&json!({"email": org.owner_email, "password": "correct horse battery"}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), StatusCode::OK);
    let cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let body: serde_json::Value = login.json().await.expect("json");
    let csrf = body["csrf_token"].as_str().expect("csrf").to_string();

    let me = browser
        .get(format!("{}/api/v1/me", app.url))
        .send()
        .await
        .expect("me");
    assert_eq!(me.status(), StatusCode::OK);
    let no_csrf = browser
        .post(format!("{}/api/v1/tokens", app.url))
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);
    let with_csrf = browser
        .post(format!("{}/api/v1/tokens", app.url))
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "x"}))
        .send()
        .await
        .expect("post");
    assert_eq!(with_csrf.status(), StatusCode::CREATED);
    let out = browser
        .post(format!("{}/api/v1/auth/logout", app.url))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        browser
            .get(format!("{}/api/v1/me", app.url))
            .send()
            .await
            .expect("me")
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let (_, audit) = app
        .call(&org.token, Method::GET, "/api/v1/audit", None)
        .await;
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in [
        "user.login_failed",
        "user.login",
        "token.issued",
        "user.logout",
    ] {
        assert!(actions.contains(&a), "{a}: {actions:?}");
    }
}

#[tokio::test]
async fn roles_limit_what_a_user_may_do() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let viewer = app.member(&org, Role::Viewer).await;
    let auditor = app.member(&org, Role::Auditor).await;
    let admin = app.member(&org, Role::Admin).await;
    let (status, _) = app
        .call(
            &viewer,
            Method::POST,
            "/api/v1/connections",
            Some(app.connect_body("collector")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.call(&viewer, Method::GET, "/api/v1/connections", None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        app.call(&viewer, Method::GET, "/api/v1/audit", None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.call(&auditor, Method::GET, "/api/v1/audit", None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        app.call(&auditor, Method::GET, "/api/v1/connections", None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (status, _) = app
        .call(
            &admin,
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": "new-owner@example.com", "name": "N", "role": "owner"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "only owners make owners");
    let (status, user) = app
        .call(
            &admin,
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": "editor@example.com", "name": "E", "role": "editor"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let (status, dup) = app
        .call(
            &admin,
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": "Editor@example.com", "name": "E", "role": "editor"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{dup}");
    let (status, bad) = app
        .call(
            &admin,
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": "x@example.com", "name": "X", "role": "god"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("auditor")
    );
    let (status, _) = app
        .call("ck_not_a_token", Method::GET, "/api/v1/me", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, created) = app
        .call(
            &viewer,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "mine", "expires_in_days": 30})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = created["secret"].as_str().expect("secret").to_string();
    assert_eq!(
        app.call(&secret, Method::GET, "/api/v1/me", None).await.0,
        StatusCode::OK
    );
    let (_, tokens) = app.call(&viewer, Method::GET, "/api/v1/tokens", None).await;
    assert!(
        !tokens.to_string().contains(&secret),
        "a token's secret is shown once"
    );
    let id = created["token"]["id"].as_str().expect("id");
    assert_eq!(
        app.call(
            &viewer,
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            None
        )
        .await
        .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.call(&secret, Method::GET, "/api/v1/me", None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let app = spawn_app().await;
    let get = |p: &str| app.http.get(format!("{}{p}", app.url)).send();
    assert_eq!(
        get("/healthz").await.expect("healthz").status(),
        StatusCode::OK
    );
    assert_eq!(
        get("/readyz").await.expect("readyz").status(),
        StatusCode::OK
    );
    let r = get("/api/v1/openapi.json").await.expect("openapi");
    assert!(r.headers().contains_key("x-request-id"));
    let doc: serde_json::Value = r.json().await.expect("json");
    assert!(doc["paths"]["/api/v1/connections"]["post"].is_object());
    let metrics = get("/metrics")
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(
            "cloudkeep_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}"
        ),
        "{metrics}"
    );
    let missing = get("/api/v1/nothing-here").await.expect("404");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = missing.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");
}
