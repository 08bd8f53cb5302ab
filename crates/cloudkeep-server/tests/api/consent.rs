//! Onboarding by consent, end to end: a cloudkeep user in a browser
//! session signs in at the simulator's Entra ID authorize endpoint as an
//! Azure user who owns only some subscriptions, and cloudkeep assigns its
//! service principal roles there, links the partner id and records the
//! connection; a second run adds subscriptions to it.

use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};

use crate::harness::{App, Org, PARTNER_ID, spawn_app};

const ROLES: [&str; 4] = [
    "acdd72a7-3385-48ef-bd42-f606fba81ae7", // Reader
    "72fafb9e-0641-4937-9268-a91bfd8191a3", // Cost Management Reader
    "39bc4728-0917-49c7-9d2c-d95423bc2eb4", // Security Reader
    "4a9ae827-6dc8-4573-8ac7-8239d42aa03f", // Tag Contributor
];
const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";

/// A browser: a cookie jar, no automatic redirects, trusting the simulator.
struct Browser {
    http: reqwest::Client,
    csrf: String,
    /// The session cookie's value, to plant it elsewhere.
    session: String,
}

impl Browser {
    async fn signed_in(app: &App, org: &Org) -> Browser {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .add_root_certificate(
                reqwest::Certificate::from_pem(app.sim.ca_pem.as_bytes()).expect("ca"),
            )
            .build()
            .expect("browser");
        let response = http
            .post(format!("{}/api/v1/auth/login", app.url))
            .json(&json!({"email": org.owner_email, "password": "correct horse battery"}))
            .send()
            .await
            .expect("login");
        let session = response.headers()["set-cookie"]
            .to_str()
            .expect("cookie")
            .split(';')
            .next()
            .and_then(|c| c.strip_prefix("cloudkeep_session="))
            .expect("session cookie")
            .to_string();
        let login: Value = response.json().await.expect("json");
        Browser {
            http,
            csrf: login["csrf_token"].as_str().expect("csrf").to_string(),
            session,
        }
    }

    /// Follows the flow from `start` through the simulator's sign-in form
    /// to the callback URL Entra ID redirects to.
    async fn sign_in_at_entra(&self, app: &App, start: &str, upn: &str, password: &str) -> Url {
        let r = self
            .http
            .get(format!("{}{start}", app.url))
            .send()
            .await
            .expect("start");
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "start redirects");
        let authorize =
            Url::parse(r.headers()["location"].to_str().expect("location")).expect("authorize url");
        let params: Vec<(String, String)> = authorize.query_pairs().into_owned().collect();
        let param = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        assert!(authorize.as_str().starts_with(&app.sim.url));
        assert_eq!(param("code_challenge_method"), "S256");
        assert_eq!(param("code_challenge").len(), 43, "a SHA-256 challenge");
        assert_eq!(param("response_type"), "code");
        assert_eq!(
            param("redirect_uri"),
            format!("{}/api/v1/connections/consent/callback", app.url)
        );
        assert!(param("state").len() >= 32, "an unguessable state");
        // The sign-in page, then the form a person would submit.
        let page = self.http.get(authorize.clone()).send().await.expect("page");
        assert_eq!(page.status(), StatusCode::OK);
        let mut form = params.clone();
        form.push(("login".into(), upn.into()));
        form.push(("passwd".into(), password.into()));
        let mut action = authorize.clone();
        action.set_query(None);
        let r = self
            .http
            .post(action)
            .form(&form)
            .send()
            .await
            .expect("sign in");
        assert_eq!(r.status(), StatusCode::FOUND, "Entra redirects back");
        Url::parse(r.headers()["location"].to_str().expect("location")).expect("callback")
    }

    async fn get(&self, url: impl reqwest::IntoUrl) -> (StatusCode, Value) {
        let r = self.http.get(url).send().await.expect("get");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn complete(&self, app: &App, flow: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/api/v1/connections/consent/{flow}", app.url))
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .expect("complete");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

/// A browser session of `org` signed in at Entra ID as the scenario's
/// partial owner: the browser, the subscriptions they own, and the offer.
async fn offered_to_the_partial_owner(app: &App, org: &Org) -> (Browser, Vec<String>, Value) {
    let dana = user(app, "partial-owner");
    let owned = subscriptions_with(&dana, OWNER);
    let browser = Browser::signed_in(app, org).await;
    let callback = browser
        .sign_in_at_entra(
            app,
            "/api/v1/connections/consent/start",
            dana["upn"].as_str().expect("upn"),
            dana["password"].as_str().expect("password"),
        )
        .await;
    let (status, offer) = browser.get(callback).await;
    assert_eq!(status, StatusCode::OK, "{offer}");
    (browser, owned, offer)
}

fn user(app: &App, key: &str) -> Value {
    app.sim.scenario.raw["tenants"][0]["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["key"] == key)
        .cloned()
        .expect("user")
}

/// The subscriptions a user holds `role` on, per the simulator's scenario.
fn subscriptions_with(user: &Value, role: &str) -> Vec<String> {
    user["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .filter(|r| r["role_definition_id"] == role)
        .filter_map(|r| r["scope"].as_str()?.strip_prefix("/subscriptions/"))
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The role-assignment and partner PUTs in the simulator's log since `seq`.
fn writes(log: &[Value]) -> Vec<(String, String, String)> {
    log.iter()
        .filter(|e| e["method"] != "GET")
        .map(|e| {
            (
                e["method"].as_str().unwrap_or_default().to_string(),
                e["path"].as_str().unwrap_or_default().to_ascii_lowercase(),
                e["principal"].as_str().unwrap_or_default().to_string(),
            )
        })
        .filter(|(_, path, _)| !path.contains("/oauth2/"))
        .collect()
}

#[tokio::test]
async fn an_owner_of_some_subscriptions_connects_them_by_consent() {
    let app = spawn_app().await;
    let org = app.org("consenting").await;
    let dana = user(&app, "partial-owner");
    let owned = subscriptions_with(&dana, OWNER);
    let all: Vec<String> = app
        .subscription_ids()
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    let not_owned: Vec<&String> = all.iter().filter(|s| !owned.contains(s)).collect();
    assert!(
        owned.len() >= 2 && !not_owned.is_empty(),
        "the scenario's partial owner owns some, not all: {owned:?}"
    );
    let browser = Browser::signed_in(&app, &org).await;
    let upn = dana["upn"].as_str().expect("upn");
    let password = dana["password"].as_str().expect("password");

    // A bearer token cannot start it: the flow belongs to a browser session.
    let (status, body) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/connections/consent/start",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let seq = app.sim.last_seq().await;
    let callback = browser
        .sign_in_at_entra(&app, "/api/v1/connections/consent/start", upn, password)
        .await;
    // Without the session cookie (as a browser sends Entra's cross-site
    // redirect), the callback answers a page that asks again same-site.
    let bare = reqwest::get(callback.clone()).await.expect("bare");
    assert_eq!(bare.status(), StatusCode::OK);
    let page = bare.text().await.expect("page");
    assert!(
        page.contains("http-equiv=\"refresh\"") && page.contains("bounced=1"),
        "{page}"
    );
    let (status, offer) = browser.get(callback.clone()).await;
    assert_eq!(status, StatusCode::OK, "{offer}");
    assert_eq!(
        offer["tenant_id"],
        app.sim.scenario.raw["tenants"][0]["tenant_id"]
    );
    let offered = offer["subscriptions"].as_array().expect("offered");
    for o in offered {
        let id = o["subscription_id"].as_str().expect("id");
        assert_eq!(
            o["can_assign_roles"].as_bool(),
            Some(owned.iter().any(|s| s == id)),
            "{o}"
        );
    }
    assert!(
        !offer.to_string().contains("eyJ"),
        "the user's token never leaves: {offer}"
    );
    // The code is spent: the same callback again finds no flow at that stage.
    let (status, _) = browser.get(callback).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Another session of the same organisation cannot complete this flow.
    let flow = offer["flow"].as_str().expect("flow").to_string();
    let other = Browser::signed_in(&app, &org).await;
    let (status, body) = other
        .complete(&app, &flow, json!({"subscriptions": [owned[0]]}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Choose one owned subscription and one the user does not own.
    let first = owned[0].clone();
    let (status, report) = browser
        .complete(
            &app,
            &flow,
            json!({"subscriptions": [first, not_owned[0]], "name": "Contoso by consent"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let subs = report["subscriptions"].as_array().expect("subs");
    let outcome = |id: &str| {
        subs.iter()
            .find(|s| s["subscription_id"] == id)
            .cloned()
            .expect("reported")
    };
    let ok = outcome(&first);
    assert_eq!(ok["outcome"], "connected", "{ok}");
    assert!(
        ok["roles"]
            .as_array()
            .expect("roles")
            .iter()
            .all(|r| r["outcome"] == "created"),
        "{ok}"
    );
    let refused = outcome(not_owned[0]);
    assert_eq!(refused["outcome"], "failed", "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Owner"),
        "{refused}"
    );
    assert_eq!(report["partner_link"]["outcome"], "linked", "{report}");
    assert_eq!(report["partner_link"]["partner_id"], PARTNER_ID);
    let connection = &report["connection"];
    assert_eq!(connection["auth_method"], "operator_app");
    assert_eq!(connection["name"], "Contoso by consent");
    assert_eq!(
        connection["client_id"],
        app.sim.scenario.raw["application"]["client_id"]
    );
    let connected: Vec<&str> = connection["subscriptions"]
        .as_array()
        .expect("subs")
        .iter()
        .map(|s| s["subscription_id"].as_str().expect("id"))
        .collect();
    assert_eq!(connected, vec![first.as_str()]);
    assert_eq!(
        connection["subscriptions"][0]["sync_level"],
        "read_write_tags"
    );
    // The flow is over: its token is gone.
    let (status, _) = browser
        .complete(&app, &flow, json!({"subscriptions": [owned[0]]}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // What Azure saw: four role assignments for cloudkeep's principal, made
    // by the user, on the owned subscription only; one partner link.
    let sp = connection["principal_id"].as_str().expect("principal");
    let log = app.sim.requests(seq).await;
    let w = writes(&log);
    let role_puts: Vec<_> = w
        .iter()
        .filter(|(m, p, _)| m == "PUT" && p.contains("/roleassignments/"))
        .collect();
    assert_eq!(role_puts.len(), 4, "{w:?}");
    let dana_oid = dana["object_id"].as_str().expect("oid");
    for (_, path, principal) in &role_puts {
        assert!(
            path.starts_with(&format!("/subscriptions/{first}/")),
            "{path}"
        );
        assert_eq!(principal, dana_oid, "assigned with the user's token");
    }
    let partner_puts: Vec<_> = w
        .iter()
        .filter(|(_, p, _)| p.contains("partners"))
        .collect();
    assert_eq!(partner_puts.len(), 1, "{w:?}");
    assert_eq!(
        partner_puts[0].2, sp,
        "the partner link names cloudkeep's principal"
    );
    assert_eq!(w.len(), 5, "nothing else was written to Azure: {w:?}");
    let scenario = app.sim.scenario_now().await;
    let app_sp = scenario["tenants"][0]["service_principals"]
        .as_array()
        .expect("sps")
        .iter()
        .find(|p| p["object_id"] == sp)
        .cloned()
        .expect("cloudkeep's principal exists in the tenant after consent");
    let held = subscriptions_with(&app_sp, ROLES[0]);
    assert_eq!(held, vec![first.clone()]);
    for role in ROLES {
        assert_eq!(
            subscriptions_with(&app_sp, role),
            vec![first.clone()],
            "{role}"
        );
    }

    // The connection syncs with the operator's application.
    let id = connection["id"].as_str().expect("id");
    let (status, run) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/connections/{id}/sync"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["status"], "succeeded", "{run}");
    let (_, resources) = app
        .call(&org.token, Method::GET, "/api/v1/resources?limit=5", None)
        .await;
    assert_eq!(
        resources["items"].as_array().map(Vec::len),
        Some(5),
        "{resources}"
    );

    // The same flow, started for the connection, adds the other owned one.
    let callback = browser
        .sign_in_at_entra(
            &app,
            &format!("/api/v1/connections/consent/start?connection={id}"),
            upn,
            password,
        )
        .await;
    let (status, offer) = browser.get(callback).await;
    assert_eq!(status, StatusCode::OK, "{offer}");
    assert_eq!(offer["connection_id"], id);
    let (status, report) = browser
        .complete(
            &app,
            offer["flow"].as_str().expect("flow"),
            json!({"subscriptions": [owned[1]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["connection"]["id"], id, "extended, not a new one");
    assert_eq!(
        report["connection"]["subscriptions"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(report["partner_link"]["outcome"], "linked");
    let (_, connections) = app
        .call(&org.token, Method::GET, "/api/v1/connections", None)
        .await;
    assert_eq!(connections["items"].as_array().map(Vec::len), Some(1));

    // Every step is in the audit log.
    let (_, audit) = app
        .call(&org.token, Method::GET, "/api/v1/audit?limit=500", None)
        .await;
    let actions: Vec<&str> = audit["items"]
        .as_array()
        .or(audit.as_array())
        .expect("events")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    let count = |a: &str| actions.iter().filter(|x| **x == a).count();
    assert_eq!(count("consent.signed_in"), 2, "{actions:?}");
    assert_eq!(count("consent.role_assigned"), 8, "{actions:?}");
    assert_eq!(count("consent.partner_linked"), 2, "{actions:?}");
    assert_eq!(count("connection.created"), 1, "{actions:?}");
    assert_eq!(count("connection.subscriptions_added"), 1, "{actions:?}");
}

#[tokio::test]
async fn a_refused_sign_in_changes_nothing_and_says_why() {
    let app = spawn_app().await;
    let org = app.org("refused").await;
    let browser = Browser::signed_in(&app, &org).await;
    let r = browser
        .http
        .get(format!("{}/api/v1/connections/consent/start", app.url))
        .send()
        .await
        .expect("start");
    let authorize = Url::parse(r.headers()["location"].to_str().expect("location")).expect("url");
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("state");
    // Entra ID sends the user back with an error (here: consent declined).
    let (status, body) = browser
        .get(format!(
            "{}/api/v1/connections/consent/callback?error=access_denied&error_description=AADSTS65004%3A+User+declined+to+consent&state={state}",
            app.url
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "consent_refused");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("declined"),
        "{body}"
    );
    // A forged or replayed state finds nothing.
    let (status, _) = browser
        .get(format!(
            "{}/api/v1/connections/consent/callback?code=x&state={state}",
            app.url
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, connections) = app
        .call(&org.token, Method::GET, "/api/v1/connections", None)
        .await;
    assert_eq!(connections["items"], json!([]));
}

#[tokio::test]
async fn azure_refusing_one_subscription_leaves_the_others_connected() {
    let app = spawn_app().await;
    let org = app.org("partly").await;
    let (browser, owned, offer) = offered_to_the_partial_owner(&app, &org).await;
    // Between the offer and the choice, the user loses Owner on the second
    // subscription: Azure itself refuses the role assignments there.
    app.sim.control_ok(
        Method::DELETE,
        "/_sim/role-assignments",
        json!({"principal_id": user(&app, "partial-owner")["object_id"], "role": OWNER, "scope": format!("/subscriptions/{}", owned[1])}),
    )
    .await;
    let (status, report) = browser
        .complete(
            &app,
            offer["flow"].as_str().expect("flow"),
            json!({"subscriptions": [owned[0], owned[1]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let subs = report["subscriptions"].as_array().expect("subs");
    assert_eq!(subs[0]["outcome"], "connected", "{report}");
    assert_eq!(subs[1]["outcome"], "failed", "{report}");
    for role in subs[1]["roles"].as_array().expect("roles") {
        assert_eq!(role["outcome"], "failed", "{role}");
        assert!(
            role["message"]
                .as_str()
                .unwrap_or_default()
                .contains("AuthorizationFailed"),
            "Azure's refusal is passed on: {role}"
        );
    }
    let connected = report["connection"]["subscriptions"]
        .as_array()
        .expect("subs");
    assert_eq!(connected.len(), 1, "the refused one is not recorded");
    let (_, audit) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/audit?action=consent.role_failed",
            None,
        )
        .await;
    let failed = audit["items"]
        .as_array()
        .or(audit.as_array())
        .expect("events")
        .len();
    assert_eq!(failed, 4, "each refused assignment is audited: {audit}");
}

#[tokio::test]
async fn a_consent_connection_without_its_application_fails_its_sync_plainly() {
    let app = spawn_app().await;
    let org = app.org("orphaned").await;
    let scope = app
        .store
        .authenticate_token(&cloudkeep_domain::SecretString::new(org.token.clone()))
        .await
        .expect("auth")
        .expect("valid")
        .scope;
    // Made by consent with an application this server is not configured with.
    let conn = app
        .store
        .create_connection(
            &scope,
            cloudkeep_store::NewConnection {
                id: cloudkeep_domain::ConnectionId::new(),
                name: "Other operator".into(),
                tenant_id: app.sim.scenario.raw["tenants"][0]["tenant_id"]
                    .as_str()
                    .expect("tid")
                    .into(),
                client_id: "00000000-0000-0000-0000-0000000000aa".into(),
                principal_id: "sp".into(),
                credential: cloudkeep_store::ConnectionCredential::OperatorApp,
                cadence_secs: 86_400,
                stale_after_secs: 172_800,
                subscriptions: Vec::new(),
                actor: "system:test".into(),
            },
        )
        .await
        .expect("connection");
    let seq = app.sim.last_seq().await;
    let (status, run) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/connections/{}/sync", conn.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["status"], "failed");
    assert_eq!(
        run["report"]["errors"][0]["kind"], "operator_app_missing",
        "{run}"
    );
    assert!(
        app.sim.requests(seq).await.is_empty(),
        "no credential was tried against Azure"
    );
    let (_, c) = app
        .call(
            &org.token,
            Method::GET,
            &format!("/api/v1/connections/{}", conn.id),
            None,
        )
        .await;
    assert_eq!(c["status"], "failing");
    assert!(
        c["status_detail"]
            .as_str()
            .unwrap_or_default()
            .contains("CLOUDKEEP_OPERATOR_CLIENT_ID"),
        "{c}"
    );
    // Nor can it be "re-authenticated" with a secret of the user's.
    let (status, body) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/connections/{}/reauth", conn.id),
            Some(json!({"client_secret": "anything"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "operator_app");
}

#[tokio::test]
async fn a_choice_is_checked_before_azure_is_changed_and_flows_stay_with_their_browser() {
    let app = spawn_app().await;
    let org = app.org("careful").await;
    let dana = user(&app, "partial-owner");
    let owned = subscriptions_with(&dana, OWNER);
    let browser = Browser::signed_in(&app, &org).await;
    let callback = browser
        .sign_in_at_entra(
            &app,
            "/api/v1/connections/consent/start",
            dana["upn"].as_str().expect("upn"),
            dana["password"].as_str().expect("password"),
        )
        .await;

    // Someone who planted this user's session in another browser, without
    // the flow cookie, cannot take the sign-in.
    let planted = reqwest::Client::new()
        .get(callback.clone())
        .header("cookie", format!("cloudkeep_session={}", browser.session))
        .send()
        .await
        .expect("planted");
    assert_eq!(planted.status(), StatusCode::NOT_FOUND);
    let (status, offer) = browser.get(callback).await;
    assert_eq!(status, StatusCode::OK, "{offer}");
    assert_eq!(offer["partner_id"], PARTNER_ID);
    let flow = offer["flow"].as_str().expect("flow").to_string();
    let seq = app.sim.last_seq().await;

    // Refused choices change nothing in Azure and leave the flow open.
    for (choice, code) in [
        (json!({"subscriptions": []}), "no_subscriptions"),
        (
            json!({"subscriptions": [owned[0]], "name": "x".repeat(201)}),
            "invalid_name",
        ),
    ] {
        let (status, body) = browser.complete(&app, &flow, choice).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
    }
    assert!(
        writes(&app.sim.requests(seq).await).is_empty(),
        "nothing was written to Azure"
    );
    // A member of the organisation who is not this user cannot complete it.
    let (status, _) = app
        .call(
            &app.member(&org, cloudkeep_domain::Role::Admin).await,
            Method::POST,
            &format!("/api/v1/connections/consent/{flow}"),
            Some(json!({"subscriptions": [owned[0]]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The same subscription twice is assigned once; no partner link when declined.
    let (status, report) = browser
        .complete(
            &app,
            &flow,
            json!({"subscriptions": [owned[0], owned[0].to_uppercase()], "link_partner": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["subscriptions"].as_array().map(Vec::len), Some(1));
    assert!(report["partner_link"].is_null(), "{report}");
    let w = writes(&app.sim.requests(seq).await);
    assert_eq!(w.len(), 4, "four role assignments, no link: {w:?}");
    let (_, assigned) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/audit?action=consent.role_assigned",
            None,
        )
        .await;
    let ids: Vec<&str> = assigned["items"]
        .as_array()
        .or(assigned.as_array())
        .expect("events")
        .iter()
        .filter_map(|e| e["details"]["assignment_id"].as_str())
        .collect();
    assert_eq!(
        ids.len(),
        4,
        "each assignment's id is recorded, for removing it later"
    );

    // Another organisation cannot start a flow for this one's connection.
    let other_org = app.org("other").await;
    let intruder = Browser::signed_in(&app, &other_org).await;
    let r = intruder
        .http
        .get(format!(
            "{}/api/v1/connections/consent/start?connection={}",
            app.url,
            report["connection"]["id"].as_str().expect("id")
        ))
        .send()
        .await
        .expect("start");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_bounce_page_escapes_what_it_repeats() {
    let app = spawn_app().await;
    let r = reqwest::get(format!(
        "{}/api/v1/connections/consent/callback?state=a%22%3E%3Cscript%3E&code=%3Cb%3E",
        app.url
    ))
    .await
    .expect("bounce");
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.expect("page");
    assert!(
        !page.contains("<script>") && !page.contains("<b>"),
        "{page}"
    );
    assert!(
        page.contains("&amp;code=%3Cb%3E&amp;bounced=1\""),
        "the query is repeated as it came, its ampersands escaped: {page}"
    );
    // A second time, still without a session, is a plain 401.
    let again = reqwest::get(format!(
        "{}/api/v1/connections/consent/callback?state=x&bounced=1",
        app.url
    ))
    .await
    .expect("again");
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_subscription_connected_elsewhere_moves_only_when_asked() {
    let app = spawn_app().await;
    let org = app.org("movers").await;
    // Every subscription is held by a service-principal connection, synced.
    let sp = app.connect(&org, "collector").await;
    let sp_id = sp["id"].as_str().expect("id").to_string();
    app.sync(&org, &sp_id).await;
    let total = app.list(&org.token, "/api/v1/resources").await.len();
    let (browser, owned, offer) = offered_to_the_partial_owner(&app, &org).await;
    // The offer shows which connection holds each subscription.
    for o in offer["subscriptions"].as_array().expect("offered") {
        assert_eq!(o["connected_by"], sp_id.as_str(), "{o}");
    }
    let flow = offer["flow"].as_str().expect("flow").to_string();
    let moved = owned[0].clone();

    // Chosen without asking to move it: refused before Azure is touched,
    // naming the connection, and the flow stays open.
    let seq = app.sim.last_seq().await;
    let (status, refused) = browser
        .complete(&app, &flow, json!({"subscriptions": [moved]}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["code"], "subscription_connected");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&sp_id)
    );
    assert!(
        writes(&app.sim.requests(seq).await).is_empty(),
        "Azure untouched"
    );

    // Asked, it moves with what was read of it.
    let (status, report) = browser
        .complete(
            &app,
            &flow,
            json!({"subscriptions": [moved], "move_connected": [moved]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let consent_id = report["connection"]["id"]
        .as_str()
        .expect("connection")
        .to_string();
    assert_ne!(consent_id, sp_id);
    let held = |conn: &Value| -> Vec<String> {
        conn["subscriptions"]
            .as_array()
            .expect("subs")
            .iter()
            .filter_map(|s| s["subscription_id"].as_str().map(str::to_string))
            .collect()
    };
    assert_eq!(held(&report["connection"]), vec![moved.clone()]);
    let sp_now = app
        .expect(
            &org.token,
            Method::GET,
            &format!("/api/v1/connections/{sp_id}"),
            None,
            StatusCode::OK,
        )
        .await;
    assert!(!held(&sp_now).contains(&moved), "{sp_now}");
    let moved_resources = app
        .list(
            &org.token,
            &format!("/api/v1/resources?connection={consent_id}"),
        )
        .await;
    assert!(!moved_resources.is_empty(), "its resources moved with it");
    assert_eq!(
        app.list(&org.token, "/api/v1/resources").await.len(),
        total,
        "none twice"
    );
    let audit = app
        .list(&org.token, "/api/v1/audit?action=subscription.moved")
        .await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["details"]["from"], sp_id.as_str());
    assert_eq!(audit[0]["details"]["to"], consent_id.as_str());
}
