//! The pages over HTTP, as a browser without scripts sees them: security
//! headers, CSRF, roles, and organisation isolation on every page route.

use cloudkeep_domain::Role;
use cloudkeep_testkit::app::OWNER_PASSWORD;
use cloudkeep_testkit::{App, AppOptions, Org, spawn_app_with};
use reqwest::{Method, StatusCode, redirect};
use serde_json::Value;

async fn app() -> App {
    spawn_app_with(AppOptions {
        pages: Some(cloudkeep_web::pages),
        ..Default::default()
    })
    .await
}

/// A browser without scripts: cookies, no redirects followed.
struct Visitor<'a> {
    app: &'a App,
    http: reqwest::Client,
    csrf: String,
}

fn between<'t>(text: &'t str, start: &str, end: &str) -> Option<&'t str> {
    let from = text.find(start)? + start.len();
    let to = text[from..].find(end)? + from;
    Some(&text[from..to])
}

impl<'a> Visitor<'a> {
    async fn signed_in(app: &'a App, email: &str) -> Visitor<'a> {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(redirect::Policy::none())
            .build()
            .expect("client");
        let login = http
            .get(format!("{}/login", app.url))
            .send()
            .await
            .expect("login page")
            .text()
            .await
            .expect("html");
        let token = between(&login, "name=\"_login\" value=\"", "\"").expect("login token");
        let r = http
            .post(format!("{}/login", app.url))
            .form(&[
                ("email", email),
                ("password", OWNER_PASSWORD),
                ("_login", token),
                ("next", "/account"),
            ])
            .send()
            .await
            .expect("sign in");
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "signed in");
        assert_eq!(r.headers()["location"], "/account");
        let mut v = Visitor {
            app,
            http,
            csrf: String::new(),
        };
        let (status, page) = v.get("/account").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        v.csrf = between(&page, "name=\"_csrf\" value=\"", "\"")
            .expect("the page carries the session's CSRF token")
            .to_string();
        v
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.app.url))
            .send()
            .await
            .expect("get");
        (r.status(), r.text().await.expect("body"))
    }

    /// A form post; with `csrf` false, without the token.
    async fn post(&self, path: &str, fields: &[(&str, &str)], csrf: bool) -> (StatusCode, String) {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        if csrf {
            form.push(("_csrf", &self.csrf));
        }
        let r = self
            .http
            .post(format!("{}{path}", self.app.url))
            .form(&form)
            .send()
            .await
            .expect("post");
        (r.status(), r.text().await.expect("body"))
    }
}

async fn connected(app: &App) -> (Org, String) {
    let org = app.org("acme").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    let run = app.sync(&org, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    (org, id)
}

#[tokio::test]
async fn pages_answer_with_a_strict_content_security_policy_and_no_framing() {
    let app = app().await;
    let org = app.org("acme").await;
    let v = Visitor::signed_in(&app, &org.owner_email).await;
    for path in ["/", "/login", "/no/such/page"] {
        let r = v
            .http
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .expect("page");
        let h = r.headers();
        assert_eq!(
            h["content-security-policy"],
            cloudkeep_web::CONTENT_SECURITY_POLICY,
            "{path}"
        );
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(
            h["cache-control"], "no-store",
            "{path}: private pages are not cached"
        );
    }
    // No inline script or style anywhere: the policy would block them.
    let (_, page) = v.get("/").await;
    assert!(
        !page.contains("<script>") && !page.contains("style="),
        "{page}"
    );
    let script = between(&page, "<script src=\"", "\"").expect("a script");
    let r = v
        .http
        .get(format!("{}{script}", app.url))
        .send()
        .await
        .expect("asset");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    // Under /api/ an unknown path is still the API's JSON error.
    let r = v
        .http
        .get(format!("{}/api/v1/nope", app.url))
        .send()
        .await
        .expect("api");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn signing_in_needs_the_forms_own_token_and_returns_only_to_this_site() {
    let app = app().await;
    let org = app.org("acme").await;
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(redirect::Policy::none())
        .build()
        .expect("client");
    let text = |path: &'static str| {
        let request = http.get(format!("{}{path}", app.url));
        async move {
            let r = request.send().await.expect("page");
            r.text().await.expect("html")
        }
    };
    // A form posted from elsewhere (no login cookie) signs no one in.
    let r = http
        .post(format!("{}/login", app.url))
        .form(&[
            ("email", org.owner_email.as_str()),
            ("password", OWNER_PASSWORD),
            ("_login", "forged"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()
            .get("set-cookie")
            .is_none_or(|c| !c.to_str().unwrap_or("").contains("cloudkeep_session="))
    );
    // `next` elsewhere is ignored.
    let page = text("/login").await;
    let token = between(&page, "name=\"_login\" value=\"", "\"")
        .expect("token")
        .to_string();
    let r = http
        .post(format!("{}/login", app.url))
        .form(&[
            ("email", org.owner_email.as_str()),
            ("password", OWNER_PASSWORD),
            ("_login", token.as_str()),
            ("next", "//evil.example.com/"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()["location"], "/");
    // The page's header names the organisation (read with the session).
    let page = text("/").await;
    assert!(page.contains("<p class=\"org\">acme</p>"), "{page}");
}

#[tokio::test]
async fn a_change_without_the_sessions_token_is_refused_and_changes_nothing() {
    let app = app().await;
    let org = app.org("acme").await;
    let v = Visitor::signed_in(&app, &org.owner_email).await;
    let before = app.list(&org.token, "/api/v1/tokens").await.len();
    let (status, page) = v
        .post("/settings/tokens", &[("name", "forged")], false)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("Reload the page"), "{page}");
    assert_eq!(app.list(&org.token, "/api/v1/tokens").await.len(), before);
    // The token from a reloaded page works (the API's /me answers it too).
    let (status, page) = v
        .post("/settings/tokens", &[("name", "made here")], true)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(
        page.contains("never shown again"),
        "the secret is shown once: {page}"
    );
    assert_eq!(
        app.list(&org.token, "/api/v1/tokens").await.len(),
        before + 1
    );
    let me: Value = v
        .http
        .get(format!("{}/api/v1/me", app.url))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["csrf_token"], v.csrf);
}

#[tokio::test]
async fn a_viewer_sees_no_edit_controls_and_the_server_refuses_the_edit_anyway() {
    let app = app().await;
    let (org, conn) = connected(&app).await;
    let viewer = app.person(&org, Role::Viewer).await;
    let v = Visitor::signed_in(&app, &viewer).await;
    let resource = &app.list(&org.token, "/api/v1/resources?has_tag=env").await[0];
    let id = resource["id"].as_str().expect("id");
    let (status, page) = v.get(&format!("/resources/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !page.contains("Add a tag") && !page.contains(">Save<"),
        "no edit controls: {page}"
    );
    let (status, page) = v.get(&format!("/connections/{conn}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !page.contains("Sync now") && !page.contains("Revoke"),
        "{page}"
    );
    let (status, page) = v
        .post(
            &format!("/resources/{id}/tags"),
            &[("key", "owner"), ("value", "me"), ("action", "set")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("does not allow editing tags"), "{page}");
    assert!(
        app.list(&org.token, "/api/v1/tag-edits").await.is_empty(),
        "nothing was made"
    );
    let (status, _) = v
        .post(&format!("/connections/{conn}/revoke"), &[], true)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let c = app.list(&org.token, "/api/v1/connections").await;
    assert!(c[0]["deleted_at"].is_null(), "still connected");
}

#[tokio::test]
async fn an_auditor_reads_evidence_and_the_audit_log_and_nothing_of_tags() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    let auditor = app.person(&org, Role::Auditor).await;
    let v = Visitor::signed_in(&app, &auditor).await;
    let (_, page) = v.get("/").await;
    assert!(
        page.contains("href=\"/controls\"") && page.contains("href=\"/audit\""),
        "{page}"
    );
    assert!(
        !page.contains("href=\"/resources\"") && !page.contains("Tag coverage"),
        "{page}"
    );
    for path in ["/controls", "/evidence", "/audit"] {
        assert_eq!(v.get(path).await.0, StatusCode::OK, "{path}");
    }
    for path in ["/resources", "/connections", "/tag-edits"] {
        assert_eq!(v.get(path).await.0, StatusCode::FORBIDDEN, "{path}");
    }
}

#[tokio::test]
async fn changing_the_password_keeps_this_session_and_ends_the_others() {
    let app = app().await;
    let org = app.org("acme").await;
    let here = Visitor::signed_in(&app, &org.owner_email).await;
    let elsewhere = Visitor::signed_in(&app, &org.owner_email).await;
    let (status, page) = here
        .post(
            "/account/password",
            &[
                ("current_password", "wrong"),
                ("new_password", "a new password!"),
                ("confirm_password", "a new password!"),
            ],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("current password is wrong"), "{page}");
    let (status, _) = here
        .post(
            "/account/password",
            &[
                ("current_password", OWNER_PASSWORD),
                ("new_password", "a new password!"),
                ("confirm_password", "a new password!"),
            ],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, page) = here.get("/account?notice=password_changed").await;
    assert_eq!(status, StatusCode::OK, "this browser stays signed in");
    assert!(page.contains("Your password is changed"));
    let (status, _) = elsewhere.get("/account").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the other session ended");
}

/// Every page route, with B's session and A's ids: not found (or not
/// allowed), never A's data.
#[tokio::test]
async fn no_page_reaches_another_organisations_data() {
    let app = app().await;
    let (a, conn) = connected(&app).await;
    let b = app.org("beta").await;
    let resource = app.list(&a.token, "/api/v1/resources?has_tag=env").await[0].clone();
    let evidence = app.list(&a.token, "/api/v1/evidence").await[0].clone();
    let run = app.list(&a.token, "/api/v1/sync-runs").await[0].clone();
    let connection = app.list(&a.token, "/api/v1/connections").await[0].clone();
    let subscription = connection["subscriptions"][0]["id"]
        .as_str()
        .expect("sub")
        .to_string();
    let edit = app
        .call(
            &a.token,
            Method::POST,
            "/api/v1/tag-edits",
            Some(serde_json::json!({"resource_id": resource["id"], "set": {"x": "y"}})),
        )
        .await
        .1["edits"][0]["id"]
        .as_str()
        .expect("edit")
        .to_string();
    let (_, token) = app
        .call(
            &a.token,
            Method::POST,
            "/api/v1/tokens",
            Some(serde_json::json!({"name": "a's"})),
        )
        .await;
    let token_id = token["token"]["id"].as_str().expect("token").to_string();
    let webhook = app
        .call(
            &a.token,
            Method::POST,
            "/api/v1/webhooks",
            Some(serde_json::json!({"name": "a's", "url": "https://hooks.example.com/a"})),
        )
        .await
        .1["webhook"]["id"]
        .as_str()
        .expect("webhook")
        .to_string();
    let a_budget = budget(&app, &a, "Alphas secret budget", 1.0).await;
    let a_assessment = assessment(&app, &a, "Alphas secret assessment").await;
    require_keys(&app, &a, &["owner"]).await;
    let incidents = app.list(&a.token, "/api/v1/spend/anomalies").await;
    assert!(!incidents.is_empty(), "the scenario's spend has an anomaly");
    let incident = incidents[0]["id"].as_str().expect("incident").to_string();
    let (status, body) = app
        .call(
            &a.token,
            Method::PUT,
            "/api/v1/spend/tag-aliases",
            Some(serde_json::json!({"aliases": {"alphasecretalias": "env"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let a_owner = app.list(&a.token, "/api/v1/users").await[0]["id"]
        .as_str()
        .expect("user")
        .to_string();
    // What of A's must never show on B's pages.
    let secrets = [
        resource["name"].as_str().expect("name").to_string(),
        connection["tenant_id"]
            .as_str()
            .expect("tenant")
            .to_string(),
        evidence["subject"].as_str().expect("subject").to_string(),
        a.owner_email.clone(),
        "Alphas secret budget".to_string(),
        "alphasecretalias".to_string(),
        "Alphas secret assessment".to_string(),
    ];
    let v = Visitor::signed_in(&app, &b.owner_email).await;
    // Signing out last: the walk needs the session.
    let mut routes = cloudkeep_web::pages::ROUTES.to_vec();
    routes.sort_by_key(|(_, p)| *p == "/logout");
    for (method, pattern) in &routes {
        let id = if pattern.starts_with("/resources/") {
            resource["id"].as_str().expect("id").to_string()
        } else if pattern.starts_with("/connections/consent/") {
            "someone-elses-flow".into()
        } else if pattern.starts_with("/connections/") {
            conn.clone()
        } else if pattern.starts_with("/subscriptions/") {
            subscription.clone()
        } else if pattern.starts_with("/sync-runs/") {
            run["id"].as_str().expect("run").to_string()
        } else if pattern.starts_with("/evidence/") {
            evidence["id"].as_str().expect("evidence").to_string()
        } else if pattern.starts_with("/tag-edits/") {
            edit.clone()
        } else if pattern.starts_with("/settings/tokens/") {
            token_id.clone()
        } else if pattern.starts_with("/settings/webhooks/") {
            webhook.clone()
        } else if pattern.starts_with("/settings/users/") {
            a_owner.clone()
        } else if pattern.starts_with("/budgets/") {
            a_budget.clone()
        } else if pattern.starts_with("/anomalies/") {
            incident.clone()
        } else if pattern.starts_with("/assessments/") {
            a_assessment.clone()
        } else if pattern.starts_with("/alerts/") {
            uuid::Uuid::new_v4().to_string()
        } else {
            "CC6.1".into()
        };
        let path = pattern.replace("{id}", &id).replace("{flow}", &id);
        let fields: &[(&str, &str)] = &[
            ("resolution", "take_theirs"),
            ("sync_level", "no_tags"),
            ("connection", conn.as_str()),
            ("role", "viewer"),
            ("key", "x"),
            ("value", "y"),
            ("name", "taken over"),
            ("amount", "1"),
            ("actual_thresholds", "50"),
            ("resource", resource["id"].as_str().expect("id")),
            ("days", "30"),
        ];
        let (status, page) = match *method {
            "GET" => v.get(&path).await,
            _ => v.post(&path, fields, true).await,
        };
        for secret in &secrets {
            assert!(
                !page.contains(secret.as_str()),
                "{method} {path} shows A's {secret}"
            );
        }
        let has_id = pattern.contains('{');
        if has_id && !pattern.starts_with("/controls/") {
            assert!(
                matches!(status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
                "{method} {path}: {status}"
            );
        }
    }
    // And A's things are all still there, unchanged.
    let c = app.list(&a.token, "/api/v1/connections").await;
    assert_eq!(c[0]["name"], connection["name"]);
    assert!(c[0]["deleted_at"].is_null());
    assert_eq!(
        app.list(&a.token, "/api/v1/tag-edits").await[0]["state"],
        "pending"
    );
    assert_eq!(app.list(&a.token, "/api/v1/webhooks").await.len(), 1);
    let budgets = app.list(&a.token, "/api/v1/budgets").await;
    assert_eq!(budgets.len(), 1);
    assert_eq!(budgets[0]["name"], "Alphas secret budget");
    assert_eq!(app.list(&a.token, "/api/v1/tag-edits").await.len(), 1);
    let (_, aliases) = app
        .call(&a.token, Method::GET, "/api/v1/spend/tag-aliases", None)
        .await;
    assert_eq!(aliases["aliases"]["alphasecretalias"], "env");
    let (_, retention) = app
        .call(&a.token, Method::GET, "/api/v1/settings/retention", None)
        .await;
    assert_ne!(retention["days"], 30, "B's form set B's window only");
    let (_, kept) = app
        .call(
            &a.token,
            Method::GET,
            &format!("/api/v1/assessments/{a_assessment}"),
            None,
        )
        .await;
    assert_eq!(kept["state"], "draft", "{kept}");
    assert!(kept["evidence"].as_u64().expect("evidence") > 0, "{kept}");
    assert_eq!(
        samples(&app, &a, &a_assessment).await,
        Vec::<Value>::new(),
        "no sample was drawn"
    );
}

#[tokio::test]
async fn the_spend_views_csv_adds_up_to_the_apis_total() {
    let app = app().await;
    let org = app.org("acme").await;
    let conn = app.connect(&org, "collector").await;
    let run = app
        .sync(&org, conn["id"].as_str().expect("connection"))
        .await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let (_, api) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/spend?group_by=resource_group&granularity=month&top=100",
            None,
        )
        .await;
    let total = api["total"].as_f64().expect("total");
    assert!(total > 0.0, "{api}");
    let v = Visitor::signed_in(&app, &org.owner_email).await;
    let r = v
        .http
        .get(format!(
            "{}/spend/view.csv?group_by=resource_group&granularity=month&top=100",
            app.url
        ))
        .send()
        .await
        .expect("csv");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .expect("ascii")
            .starts_with("attachment"),
    );
    let text = r.text().await.expect("text");
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("period_start,resource_group,cost,currency")
    );
    let sum: f64 = lines
        .map(|l| {
            l.rsplit(',')
                .nth(1)
                .expect("cost")
                .parse::<f64>()
                .expect("a number")
        })
        .sum();
    assert!(
        (sum - total).abs() < 0.01 * text.lines().count() as f64,
        "{sum} against {total}"
    );
    // The page itself shows the same total.
    let (status, page) = v
        .get("/spend?group_by=resource_group&granularity=month&top=100")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Groups"), "{page}");
}

/// HTML's escapes of the characters these tests type, undone.
fn unescape(html: &str) -> String {
    html.replace("&#60;", "<")
        .replace("&lt;", "<")
        .replace("&#62;", ">")
        .replace("&gt;", ">")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
}

/// A budget made through the API, and its id.
async fn budget(app: &App, org: &Org, name: &str, amount: f64) -> String {
    let (status, made) = app
        .call(
            &org.token,
            Method::POST,
            "/api/v1/budgets",
            Some(serde_json::json!({"name": name, "amount": amount,
                "actual_thresholds": [50], "forecast_thresholds": [100]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    made["id"].as_str().expect("budget id").to_string()
}

async fn require_keys(app: &App, org: &Org, keys: &[&str]) {
    let (status, body) = app
        .call(
            &org.token,
            Method::PUT,
            "/api/v1/settings/required-tags",
            Some(serde_json::json!({ "keys": keys })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_viewer_reads_budgets_and_coverage_without_forms_and_every_change_is_refused() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    let id = budget(&app, &org, "Platform", 1.0).await;
    require_keys(&app, &org, &["owner", "env"]).await;
    let viewer = app.person(&org, Role::Viewer).await;
    let v = Visitor::signed_in(&app, &viewer).await;
    let (status, page) = v.get("/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("href=\"/budgets\"") && page.contains("href=\"/coverage\""),
        "in the navigation: {page}"
    );
    // The connection's health counts its subscriptions.
    let connections = app.list(&org.token, "/api/v1/connections").await;
    let subscriptions = connections[0]["subscriptions"]
        .as_array()
        .expect("subscriptions")
        .len();
    assert!(subscriptions > 1, "{connections:?}");
    assert!(
        page.contains(&format!("{subscriptions} subscriptions</span>")),
        "{page}"
    );
    assert!(
        page.contains("Platform") && page.contains("crossed"),
        "{page}"
    );
    assert!(page.contains("id=\"required-coverage\""), "{page}");
    for (path, shows) in [
        ("/budgets", "Platform"),
        (
            format!("/budgets/{id}").as_str(),
            "cost this month, day by day",
        ),
        ("/coverage", "Untagged spend"),
    ] {
        let (status, page) = v.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        assert!(page.contains(shows), "{path}: {page}");
        for control in [
            "Make the budget",
            "Delete the budget",
            "Save the required keys",
            "id=\"fix-button\"",
            "name=\"resource\"",
            "<textarea",
        ] {
            assert!(!page.contains(control), "{path} shows {control}");
        }
    }
    let before = app.list(&org.token, "/api/v1/budgets").await;
    for (path, fields) in [
        (
            "/budgets".to_string(),
            vec![
                ("name", "mine"),
                ("amount", "10"),
                ("actual_thresholds", "80"),
            ],
        ),
        (
            format!("/budgets/{id}"),
            vec![
                ("name", "mine"),
                ("amount", "10"),
                ("actual_thresholds", "80"),
            ],
        ),
        (format!("/budgets/{id}/delete"), vec![]),
        ("/coverage/required-keys".to_string(), vec![("keys", "x")]),
        (
            "/coverage/fix".to_string(),
            vec![("resource", "00000000-0000-0000-0000-000000000000")],
        ),
    ] {
        let (status, page) = v.post(&path, &fields, true).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {page}");
        assert!(page.contains("does not allow"), "{path}: {page}");
    }
    assert_eq!(app.list(&org.token, "/api/v1/budgets").await, before);
    let (_, keys) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/settings/required-tags",
            None,
        )
        .await;
    assert_eq!(keys["keys"], serde_json::json!(["owner", "env"]));
    assert!(app.list(&org.token, "/api/v1/tag-edits").await.is_empty());
}

#[tokio::test]
async fn a_refused_budget_form_says_why_and_keeps_what_was_typed() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    let v = Visitor::signed_in(&app, &org.owner_email).await;
    let (status, page) = v.get("/budgets").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("No budgets yet") && page.contains("Make the budget"));
    // Each refusal is the API's (or says which field is not a number),
    // beside the form, with everything typed still in it.
    for (amount, filters, thresholds, says) in [
        ("-5", "", "80", "above 0"),
        ("a lot", "", "80", "is not a number"),
        ("100", "region=westeurope", "80", "'region=westeurope'"),
        ("100", "", "2000", "10×"),
        ("100", "", "eighty", "'eighty' is not a number"),
    ] {
        let (status, page) = v
            .post(
                "/budgets",
                &[
                    ("name", "Platform <team>"),
                    ("amount", amount),
                    ("filters", filters),
                    ("actual_thresholds", thresholds),
                    ("metric", "effective"),
                ],
                true,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{amount}: {page}");
        let page = unescape(&page);
        let error = between(&page, "id=\"new-budget-error\">", "</div>").expect("the error");
        assert!(error.contains(says), "{error}");
        assert!(page.contains("value=\"Platform <team>\""), "{page}");
        assert!(page.contains(&format!("value=\"{amount}\"")), "{page}");
        assert!(page.contains(&format!("value=\"{thresholds}\"")), "{page}");
        assert!(page.contains(&format!(">{filters}</textarea>")), "{page}");
        assert!(page.contains("value=\"effective\" selected"), "{page}");
    }
    assert!(app.list(&org.token, "/api/v1/budgets").await.is_empty());
    // A usable one is made, and its page shows where it stands.
    let r = v
        .http
        .post(format!("{}/budgets", app.url))
        .form(&[
            ("name", "Platform"),
            ("amount", "1,000"),
            ("actual_thresholds", "80, 100"),
            ("forecast_thresholds", "100"),
            ("_csrf", v.csrf.as_str()),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let location = r.headers()["location"].to_str().expect("ascii").to_string();
    let made = app.list(&org.token, "/api/v1/budgets").await;
    assert_eq!(made.len(), 1);
    assert_eq!(made[0]["amount"], 1000.0);
    let id = made[0]["id"].as_str().expect("id").to_string();
    assert_eq!(location, format!("/budgets/{id}?notice=budget_created"));
    let (status, page) = v.get(&location).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Budget made"), "{page}");
    assert!(page.contains("role=\"img\""), "the month's chart: {page}");
    // A refused change keeps the typed values; a good one is saved.
    let (status, page) = v
        .post(
            &format!("/budgets/{id}"),
            &[
                ("name", "Platform"),
                ("amount", "0"),
                ("actual_thresholds", "90"),
            ],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("id=\"edit-budget-error\""), "{page}");
    assert!(
        page.contains("value=\"0\"") && page.contains("value=\"90\""),
        "{page}"
    );
    let (status, _) = v
        .post(
            &format!("/budgets/{id}"),
            &[
                ("name", "Platform 2"),
                ("amount", "2000"),
                ("actual_thresholds", "90"),
            ],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let changed = app.list(&org.token, "/api/v1/budgets").await;
    assert_eq!(changed[0]["name"], "Platform 2");
    assert_eq!(changed[0]["actual_thresholds"], serde_json::json!([90.0]));
    assert_eq!(changed[0]["forecast_thresholds"], serde_json::json!([]));
    let (status, _) = v.post(&format!("/budgets/{id}/delete"), &[], true).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(app.list(&org.token, "/api/v1/budgets").await.is_empty());
    assert_eq!(
        v.get(&format!("/budgets/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn required_keys_are_set_and_the_fix_of_selected_rows_makes_tag_edits() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    let v = Visitor::signed_in(&app, &org.owner_email).await;
    let (status, page) = v.get("/coverage").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("No required tag keys are set"), "{page}");
    // A refusal keeps what was typed.
    let (status, page) = v
        .post("/coverage/required-keys", &[("keys", "env, ENV")], true)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("listed twice"), "{page}");
    assert!(page.contains("value=\"env, ENV\""), "{page}");
    let (status, _) = v
        .post("/coverage/required-keys", &[("keys", "Owner, env")], true)
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, page) = v
        .get("/coverage?notice=required_keys_saved&by=service")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Required tag keys saved"), "{page}");
    assert!(page.contains("id=\"coverage-keys\"") && page.contains("id=\"coverage-groups\""));
    assert!(page.contains("All keys, by count"), "{page}");
    // The rows the API suggests values for.
    let untagged = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/coverage/untagged?top=1000",
            None,
        )
        .await
        .1;
    let suggested: Vec<&Value> = untagged["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| {
            !i["resource_id"].is_null()
                && i["missing"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| !m["suggestion"].is_null()))
        })
        .collect();
    assert!(!suggested.is_empty(), "{untagged}");
    let first = suggested[0]["resource_id"].as_str().expect("id");
    assert!(
        page.contains(&format!("value=\"{first}\"")),
        "a checkbox: {page}"
    );
    // Nothing selected: said, nothing made.
    let (status, page) = v.post("/coverage/fix", &[], true).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("none was selected"), "{page}");
    let (status, page) = v.post("/coverage/fix", &[("resource", first)], true).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("What the fix did"), "{page}");
    let created = between(&page, "id=\"fix-created\"", "</table>").expect("edits made");
    assert!(
        created.contains(&format!("/resources/{first}")),
        "{created}"
    );
    let edits = app.list(&org.token, "/api/v1/tag-edits").await;
    assert_eq!(edits.len(), 1, "{edits:?}");
    assert_eq!(edits[0]["resource_id"], first);
    // Again: the open edit's keys are skipped, and the page says why.
    let (status, page) = v.post("/coverage/fix", &[("resource", first)], true).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"fix-skipped\""), "{page}");
    assert!(page.contains("already sets it"), "{page}");
    assert_eq!(app.list(&org.token, "/api/v1/tag-edits").await.len(), 1);
}

/// A draft assessment of CC6.1 and CC6.6 over the last 30 days, made
/// through the API with everything in scope attached; its id.
async fn assessment(app: &App, org: &Org, name: &str) -> String {
    let now = chrono::Utc::now();
    let made = app
        .expect(
            &org.token,
            Method::POST,
            "/api/v1/assessments",
            Some(serde_json::json!({"name": name,
                "period_start": (now - chrono::Duration::days(30)).to_rfc3339(),
                "period_end": (now + chrono::Duration::days(1)).to_rfc3339(),
                "controls": ["CC6.1", "CC6.6"]})),
            StatusCode::CREATED,
        )
        .await;
    let id = made["id"].as_str().expect("assessment id").to_string();
    let attached = app
        .expect(
            &org.token,
            Method::POST,
            &format!("/api/v1/assessments/{id}/evidence"),
            Some(serde_json::json!({"all_in_scope": true})),
            StatusCode::OK,
        )
        .await;
    assert!(
        attached["changed"].as_u64().expect("changed") > 0,
        "{attached}"
    );
    id
}

/// An assessment as the API answers it.
async fn assessment_view(app: &App, org: &Org, id: &str) -> Value {
    app.expect(
        &org.token,
        Method::GET,
        &format!("/api/v1/assessments/{id}"),
        None,
        StatusCode::OK,
    )
    .await
}

async fn samples(app: &App, org: &Org, id: &str) -> Vec<Value> {
    app.expect(
        &org.token,
        Method::GET,
        &format!("/api/v1/assessments/{id}/samples"),
        None,
        StatusCode::OK,
    )
    .await
    .as_array()
    .cloned()
    .expect("samples")
}

async fn invitations(app: &App, org: &Org, id: &str) -> Vec<Value> {
    app.expect(
        &org.token,
        Method::GET,
        &format!("/api/v1/assessments/{id}/invitations"),
        None,
        StatusCode::OK,
    )
    .await
    .as_array()
    .cloned()
    .expect("invitations")
}

/// What changes an assessment, as the page posts it.
const ASSESSMENT_FORMS: &[&str] = &[
    "Create the assessment",
    "Attach everything in scope",
    "Attach the chosen rows",
    "Approve the assessment",
    "Draw the sample",
    "Invite an auditor",
    "/detach\"",
    "/invitations/revoke\"",
];

#[tokio::test]
async fn a_viewer_reads_assessments_without_forms_and_every_change_is_refused() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    let id = assessment(&app, &org, "SOC 2 Type II").await;
    let row = app
        .list(&org.token, &format!("/api/v1/assessments/{id}/evidence"))
        .await[0]["id"]
        .as_str()
        .expect("row")
        .to_string();
    let before = assessment_view(&app, &org, &id).await;
    let viewer = app.person(&org, Role::Viewer).await;
    let v = Visitor::signed_in(&app, &viewer).await;
    let (_, home) = v.get("/").await;
    assert!(
        home.contains("href=\"/assessments\""),
        "in the navigation: {home}"
    );
    for (path, shows) in [
        ("/assessments".to_string(), "SOC 2 Type II"),
        (format!("/assessments/{id}"), "Attached evidence"),
    ] {
        let (status, page) = v.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        assert!(page.contains(shows), "{path}: {page}");
        assert!(
            path == "/assessments" || page.contains("format=csv"),
            "exports are for readers too: {path}"
        );
        for form in ASSESSMENT_FORMS.iter().chain(&["Redraw"]) {
            assert!(!page.contains(form), "{path} shows {form}");
        }
    }
    for (path, fields) in [
        (
            "/assessments".to_string(),
            vec![
                ("name", "mine"),
                ("period_start", "2026-01-01"),
                ("period_end", "2026-02-01"),
                ("control", "CC6.1"),
            ],
        ),
        (
            format!("/assessments/{id}/attach"),
            vec![("all_in_scope", "true")],
        ),
        (
            format!("/assessments/{id}/detach"),
            vec![("evidence", row.as_str())],
        ),
        (format!("/assessments/{id}/approve"), vec![]),
        (
            format!("/assessments/{id}/samples"),
            vec![("control", "CC6.1"), ("size", "2"), ("seed", "1")],
        ),
        (
            format!("/assessments/{id}/invitations"),
            vec![("email", "auditor@example.com"), ("days", "30")],
        ),
    ] {
        let (status, page) = v.post(&path, &fields, true).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {page}");
        assert!(page.contains("does not allow"), "{path}: {page}");
    }
    assert_eq!(app.list(&org.token, "/api/v1/assessments").await.len(), 1);
    let after = assessment_view(&app, &org, &id).await;
    assert_eq!(after["state"], "draft");
    assert_eq!(after["evidence"], before["evidence"]);
    assert!(samples(&app, &org, &id).await.is_empty());
    assert!(invitations(&app, &org, &id).await.is_empty());
}

#[tokio::test]
async fn an_auditor_approves_and_samples_but_neither_prepares_nor_invites() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    let id = assessment(&app, &org, "SOC 2 Type II").await;
    let auditor = app.person(&org, Role::Auditor).await;
    let v = Visitor::signed_in(&app, &auditor).await;
    let (status, page) = v.get(&format!("/assessments/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Approve the assessment") && page.contains("Draw the sample"));
    for form in [
        "Attach everything in scope",
        "/detach\"",
        "Invite an auditor",
    ] {
        assert!(!page.contains(form), "an auditor sees {form}");
    }
    let (_, list) = v.get("/assessments").await;
    assert!(!list.contains("Create the assessment"), "{list}");
    let (status, page) = v
        .post(
            &format!("/assessments/{id}/invitations"),
            &[("email", "friend@example.com")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    let (status, page) = v
        .post(&format!("/assessments/{id}/approve"), &[], true)
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let approved = assessment_view(&app, &org, &id).await;
    assert_eq!(approved["state"], "approved");
    assert!(!approved["approved_by"].is_null(), "{approved}");
}

#[tokio::test]
async fn assessment_forms_need_the_sessions_token_and_refusals_keep_what_was_typed() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    let v = Visitor::signed_in(&app, &org.owner_email).await;
    let (status, page) = v.get("/assessments").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("No assessments yet") && page.contains("Create the assessment"));
    let good = [
        ("name", "SOC 2 <Type II>"),
        ("period_start", "2026-01-01"),
        ("period_end", "2027-12-31"),
        ("control", "CC6.6"),
    ];
    // Without the session's token: refused, nothing made.
    let (status, page) = v.post("/assessments", &good, false).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("Reload the page"), "{page}");
    assert!(app.list(&org.token, "/api/v1/assessments").await.is_empty());
    // Each refusal is the API's (or says which day is not a date), beside
    // the form, with what was typed (and ticked) still in it.
    for (name, from, to, control, says) in [
        (
            "SOC 2 <Type II>",
            "2026-03-01",
            "2026-02-01",
            "CC6.6",
            "before it starts",
        ),
        (
            "SOC 2 <Type II>",
            "yesterday",
            "2026-02-01",
            "CC6.6",
            "'yesterday' is not a date",
        ),
        (
            "SOC 2 <Type II>",
            "",
            "2026-02-01",
            "CC6.6",
            "first day is missing",
        ),
        (
            "SOC 2 <Type II>",
            "2026-01-01",
            "2026-02-01",
            "",
            "at least one control",
        ),
        ("  ", "2026-01-01", "2026-02-01", "CC6.6", "needs a name"),
    ] {
        let (status, page) = v
            .post(
                "/assessments",
                &[
                    ("name", name),
                    ("period_start", from),
                    ("period_end", to),
                    ("control", control),
                ],
                true,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{says}: {page}");
        let page = unescape(&page);
        let error = between(&page, "id=\"new-assessment-error\">", "</div>").expect("the error");
        assert!(error.contains(says), "{error}");
        assert!(page.contains(&format!("value=\"{name}\"")), "{page}");
        assert!(
            page.contains(&format!("name=\"period_start\" value=\"{from}\"")),
            "{page}"
        );
        assert!(
            page.contains(&format!("name=\"period_end\" value=\"{to}\"")),
            "{page}"
        );
        assert_eq!(
            page.contains("value=\"CC6.6\" checked"),
            !control.is_empty(),
            "the boxes stay as ticked: {page}"
        );
        assert!(!page.contains("value=\"CC6.1\" checked"), "{page}");
    }
    assert!(app.list(&org.token, "/api/v1/assessments").await.is_empty());
    // A usable one is made, and its page says so.
    let r = v
        .http
        .post(format!("{}/assessments", app.url))
        .form(&[&good[..], &[("_csrf", v.csrf.as_str())]].concat())
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let made = app.list(&org.token, "/api/v1/assessments").await;
    assert_eq!(made.len(), 1);
    assert_eq!(made[0]["name"], "SOC 2 <Type II>");
    assert_eq!(made[0]["period_start"], "2026-01-01T00:00:00Z");
    assert_eq!(made[0]["scope"][0]["control"], "CC6.6");
    let id = made[0]["id"].as_str().expect("id").to_string();
    assert_eq!(
        r.headers()["location"],
        format!("/assessments/{id}?notice=assessment_created").as_str()
    );
    let at = |p: &str| format!("/assessments/{id}{p}");
    // Each form of the assessment's page needs the token too.
    for (path, fields) in [
        (at("/attach"), vec![("all_in_scope", "true")]),
        (at("/approve"), vec![]),
        (at("/samples"), vec![("control", "CC6.6"), ("size", "1")]),
        (at("/invitations"), vec![("email", "a@example.com")]),
    ] {
        let (status, _) = v.post(&path, &fields, false).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    assert_eq!(assessment_view(&app, &org, &id).await["evidence"], 0);
    assert!(invitations(&app, &org, &id).await.is_empty());
    // Approving with nothing attached, attaching nothing, drawing from an
    // empty population: each refusal is said beside its form.
    for (path, fields, error_id, says) in [
        (
            at("/approve"),
            vec![],
            "approve-error",
            "no evidence is attached",
        ),
        (at("/attach"), vec![], "attach-error", "none was selected"),
        (
            at("/samples"),
            vec![("control", "CC6.6"), ("size", "3"), ("seed", "77")],
            "sample-error",
            "nothing to sample",
        ),
    ] {
        let (status, page) = v.post(&path, &fields, true).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {page}");
        let error = between(&page, &format!("id=\"{error_id}\">"), "</div>").expect("error");
        assert!(unescape(error).contains(says), "{path}: {error}");
    }
    // Everything in scope, then the page lists it with the population.
    let (status, _) = v
        .post(&at("/attach"), &[("all_in_scope", "true")], true)
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let attached = assessment_view(&app, &org, &id).await["evidence"]
        .as_u64()
        .expect("evidence");
    assert!(attached > 0);
    let (status, page) = v.get(&at("?notice=attached&n=3")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("3 evidence rows attached."), "{page}");
    let rows = app
        .list(&org.token, &format!("/api/v1/assessments/{id}/evidence"))
        .await;
    let first = rows[0]["id"].as_str().expect("row");
    assert!(page.contains(&format!("id=\"attached-{first}\"")), "{page}");
    // Detached while a draft, then attached again as a chosen row.
    let (status, page) = v.post(&at("/detach"), &[("evidence", first)], true).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    assert_eq!(
        assessment_view(&app, &org, &id).await["evidence"].as_u64(),
        Some(attached - 1)
    );
    let r = v
        .http
        .post(format!("{}{}", app.url, at("/attach")))
        .form(&[("evidence", first), ("_csrf", v.csrf.as_str())])
        .send()
        .await
        .expect("attach");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        r.headers()["location"],
        format!("/assessments/{id}?notice=attached&n=1").as_str()
    );
    assert_eq!(
        assessment_view(&app, &org, &id).await["evidence"].as_u64(),
        Some(attached)
    );
    // A sample: a size that is not a number keeps the seed typed.
    let (status, page) = v
        .post(
            &at("/samples"),
            &[("control", "CC6.6"), ("size", "three"), ("seed", "42")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        unescape(&page).contains("'three' is not a whole number"),
        "{page}"
    );
    assert!(
        page.contains("id=\"s-seed\" name=\"seed\" value=\"42\""),
        "{page}"
    );
    for _ in 0..2 {
        let (status, page) = v
            .post(
                &at("/samples"),
                &[("control", "CC6.6"), ("size", "3"), ("seed", "42")],
                true,
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    }
    let drawn = samples(&app, &org, &id).await;
    assert_eq!(drawn.len(), 2);
    assert_eq!(drawn[0]["seed"], "42");
    assert_eq!(
        drawn[0]["evidence"], drawn[1]["evidence"],
        "the same seed, the same rows"
    );
    let (_, page) = v.get(&at("")).await;
    let row = drawn[0]["evidence"][0].as_str().expect("a drawn row");
    assert!(
        page.contains(&format!("href=\"/evidence/{row}\"")),
        "{page}"
    );
    // An invitation: refused days keep the email; a good one shows its
    // secret once, which reads this assessment through the API.
    let (status, page) = v
        .post(
            &at("/invitations"),
            &[("email", "eve@audit.example"), ("days", "999")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    assert!(page.contains("id=\"invite-error\""), "{page}");
    assert!(page.contains("value=\"eve@audit.example\""), "{page}");
    assert!(page.contains("value=\"999\""), "{page}");
    let (status, page) = v
        .post(
            &at("/invitations"),
            &[("email", "eve@audit.example"), ("days", "")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let secret = between(&page, "<code id=\"invitation-secret\">", "</code>")
        .expect("the secret, once")
        .to_string();
    assert!(secret.starts_with("cki_"), "{secret}");
    let (_, again) = v.get(&at("")).await;
    assert!(!again.contains(&secret), "shown once");
    let invited = invitations(&app, &org, &id).await;
    assert_eq!(invited.len(), 1);
    assert_eq!(invited[0]["state"], "active");
    let r = app
        .http
        .get(format!("{}/api/v1/assessments/{id}", app.url))
        .bearer_auth(&secret)
        .send()
        .await
        .expect("read");
    assert_eq!(r.status(), StatusCode::OK);
    let invitation = invited[0]["id"].as_str().expect("invitation");
    let (status, _) = v
        .post(
            &at("/invitations/revoke"),
            &[("invitation", invitation)],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(invitations(&app, &org, &id).await[0]["state"], "revoked");
    // Approved: no more forms that change it, and the server refuses them.
    let (status, _) = v.post(&at("/approve"), &[], true).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, page) = v.get(&at("?notice=approved")).await;
    assert!(page.contains("can no longer change"), "{page}");
    for form in [
        "/detach\"",
        "Attach everything in scope",
        "Approve the assessment",
    ] {
        assert!(!page.contains(form), "an approved assessment shows {form}");
    }
    for (path, fields, error_id) in [
        (at("/detach"), vec![("evidence", first)], "evidence-error"),
        (
            at("/attach"),
            vec![("all_in_scope", "true")],
            "attach-error",
        ),
        (at("/approve"), vec![], "approve-error"),
    ] {
        let (status, page) = v.post(&path, &fields, true).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {page}");
        let error = between(&page, &format!("id=\"{error_id}\">"), "</div>").expect("error");
        assert!(error.contains("is immutable"), "{path}: {error}");
    }
    assert_eq!(
        assessment_view(&app, &org, &id).await["evidence"].as_u64(),
        Some(attached)
    );
}

/// The organisation's tag aliases, through the API.
async fn aliases(app: &App, org: &Org) -> Value {
    app.expect(
        &org.token,
        Method::GET,
        "/api/v1/spend/tag-aliases",
        None,
        StatusCode::OK,
    )
    .await["aliases"]
        .clone()
}

async fn retention_days(app: &App, org: &Org) -> i64 {
    app.expect(
        &org.token,
        Method::GET,
        "/api/v1/settings/retention",
        None,
        StatusCode::OK,
    )
    .await["days"]
        .as_i64()
        .expect("days")
}

#[tokio::test]
async fn a_viewer_reads_anomalies_aliases_and_retention_without_forms_and_changes_are_refused() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    let incidents = app.list(&org.token, "/api/v1/spend/anomalies").await;
    assert!(!incidents.is_empty(), "the scenario has an anomaly");
    let incident = incidents[0]["id"].as_str().expect("id").to_string();
    let days = retention_days(&app, &org).await;
    let viewer = app.person(&org, Role::Viewer).await;
    let v = Visitor::signed_in(&app, &viewer).await;
    let (_, page) = v.get("/").await;
    assert!(
        page.contains("href=\"/anomalies\""),
        "in the navigation: {page}"
    );
    assert!(page.contains("id=\"anomalies-card\""), "{page}");
    // The card counts every open incident, though it lists a handful.
    let open = app
        .list(&org.token, "/api/v1/spend/anomalies?ended=false")
        .await
        .len();
    if open > 0 {
        assert!(
            page.contains(&format!("id=\"open-anomalies\">{open}<")),
            "{open} open: {page}"
        );
    }
    for (path, shows) in [
        ("/anomalies", "id=\"incidents\""),
        (
            format!("/anomalies/{incident}").as_str(),
            "What explains it",
        ),
        ("/settings", "/settings/tag-aliases"),
        ("/settings/tag-aliases", "Tag aliases"),
        ("/settings/retention", "id=\"retention-days\""),
    ] {
        let (status, page) = v.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        assert!(page.contains(shows), "{path}: {page}");
        for control in [
            "Add the alias",
            "/settings/tag-aliases/remove",
            "Save the window",
            "name=\"days\"",
        ] {
            assert!(!page.contains(control), "{path} shows {control}");
        }
    }
    for (path, fields) in [
        (
            "/settings/tag-aliases",
            vec![("alias", "environment"), ("key", "env")],
        ),
        (
            "/settings/tag-aliases/remove",
            vec![("alias", "environment")],
        ),
        ("/settings/retention", vec![("days", "60")]),
    ] {
        let (status, page) = v.post(path, &fields, true).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {page}");
        assert!(page.contains("does not allow"), "{path}: {page}");
    }
    assert_eq!(aliases(&app, &org).await, serde_json::json!({}));
    // An admin changes aliases but not the retention window: owners do.
    let admin = app.person(&org, Role::Admin).await;
    let a = Visitor::signed_in(&app, &admin).await;
    let (_, page) = a.get("/settings/retention").await;
    assert!(!page.contains("Save the window"), "{page}");
    let (status, page) = a.post("/settings/retention", &[("days", "60")], true).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert_eq!(retention_days(&app, &org).await, days);
    // An auditor reads the retention window but no spend.
    let auditor = app.person(&org, Role::Auditor).await;
    let au = Visitor::signed_in(&app, &auditor).await;
    assert_eq!(au.get("/settings/retention").await.0, StatusCode::OK);
    assert_eq!(au.get("/anomalies").await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        au.get("/settings/tag-aliases").await.0,
        StatusCode::FORBIDDEN
    );
    let (_, page) = au.get("/").await;
    assert!(!page.contains("anomalies-card"), "{page}");
}

#[tokio::test]
async fn tag_aliases_and_the_retention_window_are_changed_from_settings() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    let v = Visitor::signed_in(&app, &org.owner_email).await;
    // Without the session's token nothing changes.
    let (status, page) = v
        .post(
            "/settings/tag-aliases",
            &[("alias", "environment"), ("key", "env")],
            false,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{page}");
    assert!(page.contains("Reload the page"), "{page}");
    let (status, _) = v
        .post("/settings/retention", &[("days", "90")], false)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(aliases(&app, &org).await, serde_json::json!({}));
    // Added, listed; the same alias again is said, as is a chain (the API's refusal).
    let (status, _) = v
        .post(
            "/settings/tag-aliases",
            &[("alias", "Environment"), ("key", "env")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        aliases(&app, &org).await,
        serde_json::json!({"environment": "env"})
    );
    let (status, page) = v.get("/settings/tag-aliases?notice=alias_added").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Tag alias added"), "{page}");
    assert!(page.contains("<code>environment</code>"), "{page}");
    for (alias, key, says) in [
        ("environment", "stage", "already stands for"),
        ("env", "stage", "both an alias and the key"),
        ("", "env", "1 to 512 characters"),
        ("env", "env", "is the key itself"),
    ] {
        let (status, page) = v
            .post(
                "/settings/tag-aliases",
                &[("alias", alias), ("key", key)],
                true,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{alias}: {page}");
        let page = unescape(&page);
        let error = between(&page, "id=\"alias-error\">", "</div>").expect("the error");
        assert!(error.contains(says), "{alias}: {error}");
        assert!(page.contains(&format!("value=\"{key}\"")), "kept: {page}");
    }
    assert_eq!(
        aliases(&app, &org).await,
        serde_json::json!({"environment": "env"})
    );
    let (status, _) = v
        .post(
            "/settings/tag-aliases/remove",
            &[("alias", "environment")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(aliases(&app, &org).await, serde_json::json!({}));
    let (status, _) = v
        .post(
            "/settings/tag-aliases/remove",
            &[("alias", "environment")],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "gone already");
    // The retention window: refusals keep what was typed; owners save it.
    let before = retention_days(&app, &org).await;
    for (typed, says) in [("10", "30 to 3650 days"), ("a year", "not a whole number")] {
        let (status, page) = v
            .post("/settings/retention", &[("days", typed)], true)
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{typed}: {page}");
        let error = between(&page, "id=\"retention-error\">", "</div>").expect("the error");
        assert!(error.contains(says), "{typed}: {error}");
        assert!(page.contains(&format!("value=\"{typed}\"")), "{page}");
    }
    assert_eq!(retention_days(&app, &org).await, before);
    let (status, _) = v.post("/settings/retention", &[("days", "90")], true).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(retention_days(&app, &org).await, 90);
    let (_, page) = v.get("/settings/retention?notice=retention_saved").await;
    assert!(page.contains("Retention window saved"), "{page}");
    assert!(page.contains("90 days"), "{page}");
}

#[tokio::test]
async fn anomalies_are_listed_as_the_api_filters_them_and_explained() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    let v = Visitor::signed_in(&app, &org.owner_email).await;
    let all = app.list(&org.token, "/api/v1/spend/anomalies").await;
    assert!(!all.is_empty());
    let ids = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|i| i["id"].as_str().expect("id").to_string())
            .collect()
    };
    let first = &all[0];
    let sub = first["subscription"].as_str().expect("sub");
    for (page_query, api_query) in [
        ("state=open", "ended=false".to_string()),
        ("state=ended", "ended=true".to_string()),
        ("kind=new_region", "kind=new_region".to_string()),
        ("kind=anomaly", "kind=anomaly".to_string()),
        (
            &format!("subscription={sub}") as &str,
            format!("subscription={sub}"),
        ),
    ] {
        let want = ids(&app
            .list(&org.token, &format!("/api/v1/spend/anomalies?{api_query}"))
            .await);
        let (status, page) = v.get(&format!("/anomalies?{page_query}")).await;
        assert_eq!(status, StatusCode::OK, "{page_query}: {page}");
        for id in ids(&all) {
            assert_eq!(
                page.contains(&format!("id=\"incident-{id}\"")),
                want.contains(&id),
                "{page_query}: {id}"
            );
        }
    }
    // A service's incidents: those the API lists for it.
    if let Some(service) = first["service"].as_str() {
        let want = ids(&app
            .list(
                &org.token,
                &format!(
                    "/api/v1/spend/anomalies?service={}",
                    form_urlencoded::byte_serialize(service.as_bytes()).collect::<String>()
                ),
            )
            .await);
        assert!(want.contains(&ids(&all)[0]));
        assert!(want.len() <= all.len());
        let (_, page) = v
            .get(&format!(
                "/anomalies?service={}",
                form_urlencoded::byte_serialize(service.as_bytes()).collect::<String>()
            ))
            .await;
        for id in ids(&all) {
            assert_eq!(
                page.contains(&format!("id=\"incident-{id}\"")),
                want.contains(&id)
            );
        }
    }
    let (status, page) = v.get("/anomalies?state=gone").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    // Movers by resource, and one incident with its contributors.
    let (status, page) = v.get("/anomalies?period=month&by=resource").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"movers\""), "{page}");
    let anomaly = all
        .iter()
        .find(|i| i["kind"] == "anomaly")
        .expect("a spike or drop");
    let id = anomaly["id"].as_str().expect("id");
    let (status, page) = v.get(&format!("/anomalies/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("role=\"img\""), "the chart: {page}");
    assert!(
        page.contains("class=\"band\""),
        "the expected range: {page}"
    );
    assert!(page.contains("id=\"contributors-resources\""), "{page}");
    let top = anomaly["contributors"][0]["item"].as_str().expect("item");
    assert!(page.contains(top), "{top}: {page}");
    assert!(
        page.contains("href=\"/resources/"),
        "a contributor links to its resource: {page}"
    );
    // Every incident's page answers, whatever its kind (a new region has
    // no one series to draw, and says so).
    for i in &all {
        let id = i["id"].as_str().expect("id");
        let (status, page) = v.get(&format!("/anomalies/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{i}: {page}");
        assert!(page.contains("What explains it"), "{page}");
    }
    assert_eq!(
        v.get(&format!("/anomalies/{}", uuid::Uuid::new_v4()))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(v.get("/anomalies/not-an-id").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_budget_scope_is_picked_from_what_the_store_knows() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    let v = Visitor::signed_in(&app, &org.owner_email).await;
    let (status, page) = v.get("/budgets").await;
    assert_eq!(status, StatusCode::OK);
    let sub = app.subscription_ids()[0].to_ascii_lowercase();
    let picker = between(&page, "id=\"new-budget-subscription\"", "</select>").expect("a picker");
    assert!(picker.contains(&format!("value=\"{sub}\"")), "{picker}");
    let groups = between(&page, "id=\"new-budget-rg\"", "</select>").expect("groups");
    let rg = groups
        .split("<option value=\"")
        .nth(2)
        .and_then(|o| o.split('"').next())
        .expect("a resource group")
        .to_string();
    let keys = between(&page, "id=\"new-budget-tag-key\"", "</select>").expect("keys");
    // Keys as resources carry them (Azure keeps their case).
    let env = keys
        .split("<option value=\"")
        .filter_map(|o| o.split('"').next())
        .find(|k| k.eq_ignore_ascii_case("env"))
        .expect("the env key")
        .to_string();
    let (status, page) = v
        .post(
            "/budgets",
            &[
                ("name", "Scoped"),
                ("amount", "100"),
                ("subscription", &sub),
                ("resource_group", &rg),
                ("tag_key", &env),
                ("tag_value", "prod"),
                ("filters", "!tag:owner"),
                ("actual_thresholds", "80"),
            ],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let made = app.list(&org.token, "/api/v1/budgets").await;
    let filters: Vec<String> = made[0]["filters"]
        .as_array()
        .expect("filters")
        .iter()
        .map(|f| f.as_str().expect("text").to_ascii_lowercase())
        .collect();
    assert_eq!(
        filters,
        vec![
            format!("subscription={sub}"),
            format!("resource_group={rg}").to_ascii_lowercase(),
            "tag:env=prod".to_string(),
            "!tag:owner".to_string()
        ]
    );
    // Its page picks the same again, and keeps the rest as text.
    let id = made[0]["id"].as_str().expect("id");
    let (_, page) = v.get(&format!("/budgets/{id}")).await;
    let page = unescape(&page);
    assert!(
        page.contains(&format!("value=\"{sub}\" selected")),
        "{page}"
    );
    assert!(page.contains(&format!("value=\"{rg}\" selected")), "{page}");
    assert!(
        page.contains(&format!("value=\"{env}\" selected")),
        "{page}"
    );
    assert!(page.contains("value=\"prod\""), "{page}");
    assert!(page.contains(">!tag:owner</textarea>"), "{page}");
}

#[tokio::test]
async fn a_value_typed_in_a_row_of_untagged_spend_is_used_in_place_of_the_suggestion() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    require_keys(&app, &org, &["owner"]).await;
    let v = Visitor::signed_in(&app, &org.owner_email).await;
    let untagged = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/coverage/untagged?top=1000",
            None,
        )
        .await
        .1;
    let rows: Vec<&Value> = untagged["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| !i["resource_id"].is_null())
        .collect();
    assert!(rows.len() >= 2, "{untagged}");
    let (typed, other) = (
        rows[0]["resource_id"].as_str().expect("id"),
        rows[1]["resource_id"].as_str().expect("id"),
    );
    let field = format!("value:{typed}:owner");
    let (_, page) = v.get("/coverage").await;
    assert!(page.contains(&format!("name=\"{field}\"")), "{page}");
    // The scope is picked from the subscriptions, groups and services known.
    let sub = app.subscription_ids()[0].to_ascii_lowercase();
    let picker = between(&page, "id=\"c-subscription\"", "</select>").expect("a picker");
    assert!(picker.contains(&format!("value=\"{sub}\"")), "{picker}");
    assert!(page.contains("id=\"c-rg\"") && page.contains("id=\"c-service\""));
    let (status, page) = v.get(&format!("/coverage?subscription={sub}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(&format!("value=\"{sub}\" selected")),
        "{page}"
    );
    // A typed value fixes its row unselected; an empty one is no choice.
    let (status, page) = v
        .post(
            "/coverage/fix",
            &[
                (field.as_str(), "ann@example.com"),
                (format!("value:{other}:owner").as_str(), ""),
            ],
            true,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let created = between(&page, "id=\"fix-created\"", "</table>").expect("edits made");
    assert!(created.contains("ann@example.com"), "{created}");
    assert!(created.contains("(given)"), "{created}");
    let edits = app.list(&org.token, "/api/v1/tag-edits").await;
    assert_eq!(edits.len(), 1, "{edits:?}");
    assert_eq!(edits[0]["resource_id"], typed);
    assert_eq!(edits[0]["set"]["owner"], "ann@example.com");
}
