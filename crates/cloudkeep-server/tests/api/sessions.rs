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
    let actions: Vec<&str> = audit["items"]
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

#[tokio::test]
async fn malformed_input_gets_the_api_error_shape() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let r = app
        .http
        .post(format!("{}/api/v1/connections", app.url))
        .bearer_auth(&org.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_body");
    let (status, body) = app
        .call(
            &org.token,
            Method::POST,
            "/api/v1/connections",
            Some(json!({"name": "x", "tenant_id": "t"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("client_id"),
        "{body}"
    );
    let (status, body) = app
        .call(
            &org.token,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "x", "colour": "red"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown fields are refused: {body}"
    );
    let (status, body) = app
        .call(&org.token, Method::GET, "/api/v1/audit?limit=lots", None)
        .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("from 1 to 1000"),
        "{body}"
    );
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_limit"))
    );
    let (status, _) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/connections/not-a-uuid",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_server_can_serve_https_itself() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("dir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    let state = cloudkeep_server::AppState::new(
        app.store.clone(),
        std::sync::Arc::new(
            cloudkeep_domain::crypto::LocalKeyFile::open_or_create(&dir.path().join("m.key"))
                .expect("keys"),
        ),
        cloudkeep_azure::AzureClient::new(cloudkeep_azure::AzureConfig::default()).expect("azure"),
        cloudkeep_server::ServerSettings {
            secure_cookies: true,
            ..Default::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cloudkeep_server::run(
        listener,
        state,
        Some(cloudkeep_server::TlsFiles {
            cert: cert_path,
            key: key_path,
        }),
        async move {
            let _ = stopped.await;
        },
    ));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).expect("ca"))
        .build()
        .expect("client");
    let r = client
        .get(format!("https://127.0.0.1:{}/healthz", addr.port()))
        .send()
        .await
        .expect("https");
    assert_eq!(r.status(), StatusCode::OK);
    let org = app.org("tls").await;
    let login = client
        .post(format!(
            "https://127.0.0.1:{}/api/v1/auth/login",
            addr.port()
        ))
        .json(&json!({"email": org.owner_email, "password": "correct horse battery"}))
        .send()
        .await
        .expect("login");
    assert!(
        login.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .contains("; Secure")
    );
    let _ = stop.send(());
    server.await.expect("task").expect("clean shutdown");
}

#[tokio::test]
async fn privileges_cannot_be_stretched() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    // A token made with an expiring token expires no later.
    let (_, short) = app
        .call(
            &org.token,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "short", "expires_in_days": 1})),
        )
        .await;
    let short_secret = short["secret"].as_str().expect("secret").to_string();
    let (status, child) = app
        .call(
            &short_secret,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "forever"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        child["token"]["expires_at"], short["token"]["expires_at"],
        "capped at the parent's expiry"
    );
    let (status, _) = app
        .call(
            &org.token,
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"name": "x", "expires_in_days": 4_000_000})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // The last owner stays an owner; an admin cannot touch an owner's tokens.
    let (_, me) = app.call(&org.token, Method::GET, "/api/v1/me", None).await;
    let owner_id = me["user"]["id"].as_str().expect("id");
    let (status, body) = app
        .call(
            &org.token,
            Method::PATCH,
            &format!("/api/v1/users/{owner_id}"),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("last_owner"))
    );
    let admin = app.member(&org, Role::Admin).await;
    let (status, _) = app
        .call(
            &admin,
            Method::DELETE,
            &format!(
                "/api/v1/tokens/{}",
                short["token"]["id"].as_str().expect("id")
            ),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
