//! The web UI in a real browser (headless Chromium): every flow a person
//! takes, against the server, the simulator and a real store. Each page
//! visited is screenshotted under `target/screenshots/` and checked with
//! axe-core.

mod kit;

use cloudkeep_testkit::app::OWNER_PASSWORD;
use cloudkeep_testkit::{App, Org};
use kit::{Browser, app};
use reqwest::Method;
use serde_json::{Value, json};

/// An organisation with the simulated tenant connected and synced.
async fn connected(app: &App) -> (Org, String) {
    let org = app.org("acme").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    let run = app.sync(&org, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    (org, id)
}

/// Runs "Sync now" on the connection's page and waits for the run's end.
async fn sync_in_browser(b: &Browser, connection: &str) {
    b.goto(&format!("/connections/{connection}")).await;
    b.click("form[action$='/sync'] button").await;
    b.wait("#run").await;
    for _ in 0..300 {
        let status = b.text("#run-status").await;
        if status != "running" {
            assert_eq!(status, "succeeded", "{}", b.body().await);
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("the sync did not finish: {}", b.body().await);
}

#[tokio::test]
async fn signing_in_and_out() {
    let app = app().await;
    let org = app.org("acme").await;
    let Some(b) = Browser::open(&app).await else {
        return;
    };
    // A page asked for before signing in comes back after it.
    b.goto("/connections").await;
    assert!(
        b.path().await.starts_with("/login?next=%2Fconnections"),
        "{}",
        b.path().await
    );
    b.check_page("sign-in").await;
    b.fill("#email", &org.owner_email).await;
    b.fill("#password", "not the password").await;
    b.click("button[type=submit]").await;
    assert!(
        b.text("#login-error").await.contains("wrong"),
        "{}",
        b.body().await
    );
    b.fill("#password", OWNER_PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_text("Connected tenants").await;
    assert_eq!(b.path().await, "/connections");
    b.click(".topbar form button").await;
    b.wait_text("You are signed out").await;
    b.goto("/").await;
    assert!(
        b.path().await.starts_with("/login"),
        "signed out: {}",
        b.path().await
    );
    b.close().await;
}

#[tokio::test]
async fn connecting_with_a_service_principal_shows_its_permissions_before_saving() {
    let app = app().await;
    let org = app.org("acme").await;
    let Some(b) = Browser::open(&app).await else {
        return;
    };
    b.sign_in(&org.owner_email, OWNER_PASSWORD).await;
    b.goto("/connections").await;
    b.click("a[href='/connections/new']").await;
    let tenant = app.sim.scenario.tenant().tenant_id.clone();
    // A principal with Reader only: the check says what is missing and
    // what each missing role turns off, and nothing is stored.
    let reader = app.sim.scenario.sp("reader-only").clone();
    b.fill("#name", "Contoso").await;
    b.fill("#tenant_id", &tenant).await;
    b.fill("#client_id", &reader.client_id).await;
    b.fill("#client_secret", &reader.client_secret).await;
    b.click("#check-button").await;
    b.wait("#check-table").await;
    let check = b.text("#check").await;
    assert!(check.contains("Reader"), "{check}");
    assert!(check.contains("Tag Contributor"), "{check}");
    assert!(check.contains("turns off"), "{check}");
    b.check_page("connect-check").await;
    assert!(
        app.list(&org.token, "/api/v1/connections").await.is_empty(),
        "checking stores nothing"
    );
    // A wrong secret is said plainly, and the form keeps what was typed.
    b.fill("#client_secret", "wrong").await;
    b.click("#connect-button").await;
    let error = b.text("#connect-error").await;
    assert!(error.contains("secret"), "{error}");
    assert_eq!(
        b.wait("#client_id")
            .await
            .prop("value")
            .await
            .expect("value"),
        Some(reader.client_id.clone())
    );
    // The collector principal connects; its first sync is followed live.
    let collector = app.sim.scenario.sp("collector").clone();
    b.fill("#client_id", &collector.client_id).await;
    b.fill("#client_secret", &collector.client_secret).await;
    b.click("#connect-button").await;
    b.wait("#run").await;
    b.wait_text("Connected. The first sync").await;
    for _ in 0..300 {
        if b.text("#run-status").await == "succeeded" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(b.text("#run-status").await, "succeeded");
    b.check_page("sync-run").await;
    let connections = app.list(&org.token, "/api/v1/connections").await;
    assert_eq!(connections.len(), 1);
    assert_eq!(connections[0]["name"], "Contoso");
    b.close().await;
}

#[tokio::test]
async fn connecting_by_consent_through_the_simulators_sign_in_page() {
    let app = app().await;
    let org = app.org("acme").await;
    let Some(b) = Browser::open(&app).await else {
        return;
    };
    b.sign_in(&org.owner_email, OWNER_PASSWORD).await;
    b.goto("/connections").await;
    b.click("a[href='/connections/consent/start']").await;
    // Entra ID's sign-in page (the simulator's), as a person fills it.
    b.wait("input[name=passwd]").await;
    assert!(
        b.client
            .current_url()
            .await
            .expect("url")
            .as_str()
            .starts_with(&app.sim.url)
    );
    let owner = app.sim.scenario.user("partial-owner").clone();
    b.fill("input[name=login]", &owner.upn).await;
    b.fill("input[name=passwd]", &owner.password).await;
    b.click("button[type=submit]").await;
    // Back at cloudkeep: the subscription picker.
    b.wait_text("Choose the subscriptions to connect").await;
    b.check_page("consent-picker").await;
    // The first subscription the owner may give roles on.
    let choice = b.wait("input[name=subscription]:not([disabled])").await;
    let first = choice
        .attr("value")
        .await
        .expect("value")
        .expect("a subscription id");
    choice.click().await.expect("choose");
    b.fill("#name", "Contoso by consent").await;
    b.click("form[action^='/connections/consent/'] button[type=submit]")
        .await;
    b.wait_text("cloudkeep now reads these subscriptions").await;
    b.check_page("consent-done").await;
    let connections = app.list(&org.token, "/api/v1/connections").await;
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert_eq!(connections[0]["auth_method"], "operator_app");
    assert_eq!(connections[0]["subscriptions"][0]["subscription_id"], first);
    b.close().await;
}

/// A live resource with tags, of the connection's subscriptions.
async fn tagged_resource(app: &App, org: &Org) -> Value {
    // Tag names match without regard to case, and the simulator's tenant
    // spells some `Env`: the tests address the row spelled `env`.
    app.list(&org.token, "/api/v1/resources?has_tag=env")
        .await
        .into_iter()
        .find(|r| r["tags"].get("env").is_some())
        .expect("a resource with a tag spelled env")
}

#[tokio::test]
async fn editing_a_tag_in_the_browser_writes_it_back_to_azure() {
    let app = app().await;
    let (org, conn) = connected(&app).await;
    let Some(b) = Browser::open(&app).await else {
        return;
    };
    let resource = tagged_resource(&app, &org).await;
    let id = resource["id"].as_str().expect("id");
    let arm = resource["azure_id"].as_str().expect("arm id").to_string();
    b.sign_in(&org.owner_email, OWNER_PASSWORD).await;
    b.goto("/resources").await;
    b.check_page("resources").await;
    // Filtering updates the results in place.
    b.fill("#f-has", "env").await;
    b.click(".filters button[type=submit]").await;
    b.wait_text(resource["name"].as_str().expect("name")).await;
    b.goto(&format!("/resources/{id}")).await;
    b.check_page("resource").await;
    b.fill("#new-key", "owner-team").await;
    b.fill("#new-value", "finops").await;
    b.click("form[aria-labelledby=add-heading] button").await;
    b.wait_text("The tag edit is queued").await;
    let since = app.sim.last_seq().await;
    sync_in_browser(&b, &conn).await;
    let writes: Vec<Value> = app
        .sim
        .requests(since)
        .await
        .into_iter()
        .filter(|r| {
            r["method"] == "PATCH"
                && r["path"].as_str().is_some_and(|p| {
                    p.to_lowercase().starts_with(&arm.to_lowercase()) && p.contains("/tags/default")
                })
        })
        .collect();
    assert_eq!(writes.len(), 1, "one tag write to {arm}");
    assert_eq!(app.sim.tags(&arm).await["owner-team"], "finops");
    b.goto(&format!("/resources/{id}")).await;
    b.wait_text("applied").await;
    b.close().await;
}

#[tokio::test]
async fn a_conflict_is_resolved_in_the_browser() {
    let app = app().await;
    let (org, conn) = connected(&app).await;
    let Some(b) = Browser::open(&app).await else {
        return;
    };
    let resource = tagged_resource(&app, &org).await;
    let id = resource["id"].as_str().expect("id");
    let arm = resource["azure_id"].as_str().expect("arm id").to_string();
    b.sign_in(&org.owner_email, OWNER_PASSWORD).await;
    b.goto(&format!("/resources/{id}")).await;
    // Edit env here, while someone changes it in the portal.
    let env_row = "form:has(input[name=key][value=env]) input[name=value]";
    b.fill(env_row, "staging").await;
    b.click("form:has(input[name=key][value=env]) button").await;
    b.wait_text("The tag edit is queued").await;
    app.sim
        .control_ok(
            Method::POST,
            "/_sim/tags",
            json!({"resource_id": arm, "operation": "Merge", "tags": {"env": "portal"}}),
        )
        .await;
    sync_in_browser(&b, &conn).await;
    b.goto("/tag-edits?state=conflict").await;
    b.wait_text("Changed in Azure since the edit").await;
    b.check_page("tag-conflicts").await;
    let conflict = b.body().await;
    assert!(
        conflict.contains("portal") && conflict.contains("staging"),
        "{conflict}"
    );
    b.click("form[action$='/resolve'] button").await;
    b.wait_text("Kept yours").await;
    sync_in_browser(&b, &conn).await;
    assert_eq!(app.sim.tags(&arm).await["env"], "staging");
    b.close().await;
}

#[tokio::test]
async fn coverage_drops_in_the_browser_when_a_storage_account_goes_public() {
    let app = app().await;
    let (org, conn) = connected(&app).await;
    let Some(b) = Browser::open(&app).await else {
        return;
    };
    let account = app
        .list(
            &org.token,
            "/api/v1/evidence?check=storage.public_network_access&result=pass",
        )
        .await
        .into_iter()
        .next()
        .expect("a storage account closed to the internet")["subject"]
        .as_str()
        .expect("subject")
        .to_string();
    b.sign_in(&org.owner_email, OWNER_PASSWORD).await;
    b.goto("/controls/CC6.6").await;
    b.check_page("control").await;
    let before = b.text("#pass-rate").await;
    app.sim
        .control_ok(
            Method::PATCH,
            &format!("/_sim/storage-accounts{account}"),
            json!({"allowBlobPublicAccess": true, "publicNetworkAccess": "Enabled", "networkAcls": {"defaultAction": "Allow"}}),
        )
        .await;
    sync_in_browser(&b, &conn).await;
    b.goto("/controls/CC6.6").await;
    let after = b.text("#pass-rate").await;
    let percent = |s: &str| {
        s.trim_end_matches('%')
            .parse::<f64>()
            .expect("a percentage")
    };
    assert!(
        percent(&after) < percent(&before),
        "CC6.6's pass rate fell: {before} → {after}"
    );
    b.goto(&format!(
        "/evidence?check=storage.public_network_access&subject={account}"
    ))
    .await;
    b.wait_text("fail").await;
    b.check_page("evidence").await;
    b.close().await;
}

#[tokio::test]
async fn exploring_spend_shows_the_apis_figures_and_links_their_exports() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    let Some(b) = Browser::open(&app).await else {
        return;
    };
    let (_, api) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/spend?group_by=service&top=3",
            None,
        )
        .await;
    let top = api["series"][0]["key"][0]
        .as_str()
        .expect("the most expensive service")
        .to_string();
    b.sign_in(&org.owner_email, OWNER_PASSWORD).await;
    b.goto("/").await;
    b.wait_text("Spend this month").await;
    b.click("a[href='/spend']").await;
    b.wait("#s-group").await;
    // The form stays while its answer is replaced (htmx): an element read
    // now goes stale if the page is loaded anew instead.
    let form = b.wait("form.filters").await;
    // Group by service through the form, as a person does.
    b.client
        .find(fantoccini::Locator::Css("#s-group option[value=service]"))
        .await
        .expect("option")
        .click()
        .await
        .expect("choose");
    b.fill("#s-top", "3").await;
    b.click(".filters button[type=submit]").await;
    b.wait_text("Groups").await;
    let body = b.body().await;
    assert!(body.contains(&top), "{top} in {body}");
    assert!(body.contains("Other") || api["series"].as_array().is_some_and(|s| s.len() <= 3));
    assert_eq!(
        form.attr("aria-label")
            .await
            .expect("the same form, updated in place"),
        Some("The analysis".into())
    );
    // The address follows the question, so a reload or a shared link shows it.
    let path = b.path().await;
    assert!(
        path.contains("group_by=service") && path.contains("top=3"),
        "{path}"
    );
    b.check_page("spend").await;
    let focus = b
        .client
        .find(fantoccini::Locator::Css("a[href^='/api/v1/spend/export']"))
        .await
        .expect("the FOCUS link")
        .attr("href")
        .await
        .expect("href")
        .expect("a link");
    assert!(focus.contains("format=focus-csv"), "{focus}");
    let csv = b
        .client
        .find(fantoccini::Locator::Css("a[href^='/spend/view.csv']"))
        .await
        .expect("the CSV link")
        .attr("href")
        .await
        .expect("href")
        .expect("a link");
    assert!(csv.contains("group_by=service"), "{csv}");
    b.close().await;
}

#[tokio::test]
async fn every_page_renders_and_passes_axe() {
    let app = app().await;
    let (org, conn) = connected(&app).await;
    let Some(b) = Browser::open(&app).await else {
        return;
    };
    let resource = tagged_resource(&app, &org).await;
    let evidence = app.list(&org.token, "/api/v1/evidence").await[0]["id"]
        .as_str()
        .expect("evidence")
        .to_string();
    let run = app.list(&org.token, "/api/v1/sync-runs").await[0]["id"]
        .as_str()
        .expect("run")
        .to_string();
    let assessment = draft_assessment(&app, &org).await;
    let incident = app
        .list(&org.token, "/api/v1/spend/anomalies?kind=anomaly")
        .await[0]["id"]
        .as_str()
        .expect("an anomaly")
        .to_string();
    b.sign_in(&org.owner_email, OWNER_PASSWORD).await;
    let pages = [
        ("dashboard", "/".to_string(), "Connection health"),
        (
            "spend-by-service",
            "/spend?group_by=service&granularity=week".into(),
            "Download this view as CSV",
        ),
        ("budgets-list", "/budgets".into(), "Make a budget"),
        ("coverage-page", "/coverage".into(), "Required tag keys"),
        ("resources-all", "/resources".into(), "Resources"),
        (
            "resource-detail",
            format!("/resources/{}", resource["id"].as_str().expect("id")),
            "Tag history",
        ),
        (
            "bulk-edit",
            "/resources/bulk?has_tag=env".into(),
            "Edit tags in bulk",
        ),
        ("tag-edits", "/tag-edits".into(), "Tag edits"),
        ("connections", "/connections".into(), "Connected tenants"),
        ("connection", format!("/connections/{conn}"), "Sync history"),
        (
            "connect-form",
            "/connections/new".into(),
            "Check permissions",
        ),
        ("sync-run-done", format!("/sync-runs/{run}"), "inventory"),
        ("controls", "/controls".into(), "CC6.1"),
        ("control-cc61", "/controls/CC6.1".into(), "History"),
        ("evidence-all", "/evidence".into(), "Evidence"),
        (
            "evidence-detail",
            format!("/evidence/{evidence}"),
            "What was read",
        ),
        (
            "assessments-list",
            "/assessments".into(),
            "Create an assessment",
        ),
        (
            "assessment-draft",
            format!("/assessments/{assessment}"),
            "Attach evidence",
        ),
        ("alerts", "/alerts".into(), "Alerts"),
        ("audit", "/audit".into(), "Hash chain intact"),
        ("anomalies", "/anomalies".into(), "Top movers"),
        (
            "anomalies-movers-by-resource",
            "/anomalies?period=month&by=resource".into(),
            "Top movers",
        ),
        (
            "anomaly",
            format!("/anomalies/{incident}"),
            "What explains it",
        ),
        ("settings", "/settings".into(), "Settings"),
        (
            "settings-tag-aliases",
            "/settings/tag-aliases".into(),
            "Add an alias",
        ),
        (
            "settings-retention",
            "/settings/retention".into(),
            "Change the window",
        ),
        ("settings-users", "/settings/users".into(), "Add a user"),
        (
            "settings-tokens",
            "/settings/tokens".into(),
            "Create a token",
        ),
        (
            "settings-webhooks",
            "/settings/webhooks".into(),
            "Add a webhook",
        ),
        (
            "settings-evidence",
            "/settings/evidence".into(),
            "Control mapping",
        ),
        ("account", "/account".into(), "Change your password"),
        ("not-found", "/no/such/page".into(), "Not found"),
    ];
    for (name, path, expect) in pages {
        b.goto(&path).await;
        b.wait_text(expect).await;
        b.check_page(name).await;
        fits_the_window(&b, name).await;
    }
    // The bulk edit's preview, swapped in by htmx.
    b.goto("/resources/bulk?has_tag=env").await;
    b.fill("#set-key-1", "cost-center").await;
    b.fill("#set-value-1", "CC-1").await;
    b.click("button[hx-post='/resources/bulk/preview']").await;
    b.wait_text("would change").await;
    b.check_page("bulk-preview").await;
    b.close().await;
}

#[tokio::test]
async fn sync_levels_re_authentication_and_revocation_in_the_browser() {
    let app = app().await;
    let (org, conn) = connected(&app).await;
    let Some(b) = Browser::open(&app).await else {
        return;
    };
    let subscription =
        app.list(&org.token, "/api/v1/connections").await[0]["subscriptions"][0]["id"]
            .as_str()
            .expect("subscription")
            .to_string();
    b.sign_in(&org.owner_email, OWNER_PASSWORD).await;
    b.goto(&format!("/connections/{conn}")).await;
    // Lowering a level asks first: it deletes what the lower level does not keep.
    b.wait(&format!("#level-{subscription}"))
        .await
        .select_by_value("no_tags")
        .await
        .expect("choose a level");
    b.click(&format!(
        "form[action='/subscriptions/{subscription}/level'] button"
    ))
    .await;
    b.confirm().await;
    b.wait_text("Sync level changed").await;
    let subs = &app.list(&org.token, "/api/v1/connections").await[0]["subscriptions"];
    let changed = subs
        .as_array()
        .expect("subscriptions")
        .iter()
        .find(|s| s["id"] == subscription.as_str())
        .expect("the subscription");
    assert_eq!(changed["sync_level"], "no_tags");
    // A wrong secret is refused with Entra ID's reason, and nothing changes.
    b.fill("#client_secret", "not the secret").await;
    b.click("form[aria-labelledby=reauth-heading] button").await;
    b.wait_text("client secret is wrong").await;
    // Revoking asks first, then says what it did.
    b.click("form[action$='/revoke'] button").await;
    b.confirm().await;
    b.wait_text("Revoked: the credential is destroyed").await;
    b.check_page("connection-revoked").await;
    assert!(!app.list(&org.token, "/api/v1/connections").await[0]["deleted_at"].is_null());
    b.close().await;
}

/// A screenshot of the whole page, the window made as tall as the page
/// for it, for review (`check_page` shows the first screen).
async fn whole_page_shot(b: &Browser, name: &str) {
    let height = b
        .client
        .execute("return document.documentElement.scrollHeight;", vec![])
        .await
        .expect("height")
        .as_u64()
        .unwrap_or(1000);
    b.client
        .set_window_size(1280, (height + 140).min(6000) as u32)
        .await
        .expect("taller");
    b.shot(name).await;
    b.client.set_window_size(1280, 1000).await.expect("back");
}

/// The page is no wider than the window (no horizontal scrollbar).
async fn fits_the_window(b: &Browser, name: &str) {
    let widths = b
        .client
        .execute(
            r##"const w = document.documentElement.clientWidth;
            const wide = [...document.querySelectorAll("body *")]
              .filter(e => e.getBoundingClientRect().right > w + 0.5)
              .slice(0, 8)
              .map(e => e.tagName + "." + e.className + "#" + e.id + " " + Math.round(e.getBoundingClientRect().right));
            return [document.documentElement.scrollWidth, w, wide];"##,
            vec![],
        )
        .await
        .expect("widths");
    let (scroll, client) = (widths[0].as_f64(), widths[1].as_f64());
    assert!(
        scroll <= client,
        "{name} scrolls sideways: {scroll:?} wide in a {client:?} window; too wide: {}",
        widths[2]
    );
}

#[tokio::test]
async fn a_budget_made_in_the_browser_shows_on_the_dashboard_with_its_crossed_threshold() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    let Some(b) = Browser::open(&app).await else {
        return;
    };
    b.sign_in(&org.owner_email, OWNER_PASSWORD).await;
    b.goto("/").await;
    b.wait_text("Budgets and forecast").await;
    b.click("a[href='/budgets']").await;
    b.wait("#new-budget-name").await;
    b.check_page("budgets-empty").await;
    // Refused: the API's reason beside the form, what was typed kept.
    b.fill("#new-budget-name", "Platform").await;
    b.fill("#new-budget-amount", "0").await;
    b.fill("#new-budget-actual", "50").await;
    b.fill("#new-budget-forecast", "100").await;
    b.click("form[action='/budgets'] button[type=submit]").await;
    let error = b.text("#new-budget-error").await;
    assert!(error.contains("above 0"), "{error}");
    assert_eq!(
        b.wait("#new-budget-name")
            .await
            .prop("value")
            .await
            .expect("value"),
        Some("Platform".to_string())
    );
    b.check_page("budget-refused").await;
    // A budget of one unit of currency: this month's spend is over half of it.
    b.fill("#new-budget-amount", "1").await;
    b.click("form[action='/budgets'] button[type=submit]").await;
    b.wait_text("Budget made").await;
    b.wait("#budget-month-title").await;
    assert!(b.text("#thresholds").await.contains("crossed"));
    b.check_page("budget").await;
    let budgets = app.list(&org.token, "/api/v1/budgets").await;
    assert_eq!(budgets.len(), 1);
    assert_eq!(budgets[0]["name"], "Platform");
    let id = budgets[0]["id"].as_str().expect("id").to_string();
    b.goto("/budgets").await;
    b.wait(&format!("#budget-{id}")).await;
    b.check_page("budgets").await;
    b.goto("/").await;
    let row = b.text(&format!("#budgets-panel #budget-{id}")).await;
    assert!(row.contains("Platform"), "{row}");
    assert!(row.contains("spend 50% crossed"), "{row}");
    assert!(
        b.wait(&format!("#budgets-panel tr.crossed#budget-{id}"))
            .await
            .attr("class")
            .await
            .expect("class")
            .is_some_and(|c| c.contains("crossed"))
    );
    assert!(b.text("#budgets-crossed").await.contains("1 budget has"));
    b.check_page("dashboard-budgets").await;
    fits_the_window(&b, "the dashboard").await;
    b.close().await;
}

#[tokio::test]
async fn the_coverage_fix_runs_from_the_coverage_page() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    let Some(b) = Browser::open(&app).await else {
        return;
    };
    b.sign_in(&org.owner_email, OWNER_PASSWORD).await;
    b.goto("/").await;
    b.click("nav.side a[href='/coverage']").await;
    b.wait_text("No required tag keys are set").await;
    b.check_page("coverage-no-keys").await;
    b.fill("#required-keys-input", "owner, env").await;
    b.click("form[action='/coverage/required-keys'] button")
        .await;
    b.wait_text("Required tag keys saved").await;
    b.wait("#coverage-keys").await;
    b.check_page("coverage").await;
    fits_the_window(&b, "the coverage page").await;
    // The first row with a suggested value, selected and fixed.
    let row = b
        .wait("#untagged input[name=resource]:not([aria-describedby])")
        .await;
    let id = row
        .attr("value")
        .await
        .expect("value")
        .expect("a resource id");
    row.click().await.expect("select");
    b.click("#fix-button").await;
    b.wait_text("What the fix did").await;
    let made = b.text("#fix-created").await;
    assert!(made.contains("pending") || made.contains("local"), "{made}");
    b.check_page("coverage-fixed").await;
    let edits = app.list(&org.token, "/api/v1/tag-edits").await;
    assert_eq!(edits.len(), 1, "{edits:?}");
    assert_eq!(edits[0]["resource_id"], id.as_str());
    // The dashboard sums it up and links here.
    b.goto("/").await;
    b.wait("#required-coverage").await;
    b.click("a[href='/coverage']:not(nav a)").await;
    b.wait("#coverage-keys").await;
    b.close().await;
}

/// A draft assessment of every control over the last 30 days with
/// everything in scope attached, made through the API; its id.
async fn draft_assessment(app: &App, org: &Org) -> String {
    let now = chrono::Utc::now();
    let (status, made) = app
        .call(
            &org.token,
            Method::POST,
            "/api/v1/assessments",
            Some(json!({"name": "SOC 2 Type II (API)",
                "period_start": (now - chrono::Duration::days(30)).to_rfc3339(),
                "period_end": (now + chrono::Duration::days(1)).to_rfc3339(),
                "controls": ["CC6.1", "CC6.6", "CC7.1"]})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().expect("id").to_string();
    let (status, attached) = app
        .call(
            &org.token,
            Method::POST,
            &format!("/api/v1/assessments/{id}/evidence"),
            Some(json!({"all_in_scope": true})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{attached}");
    id
}

/// Scrolls the element with `id` to the top of the window (for a
/// screenshot of a page's lower part).
async fn scroll_to(b: &Browser, id: &str) {
    b.wait(&format!("#{id}")).await;
    b.client
        .execute(
            "document.getElementById(arguments[0]).scrollIntoView();",
            vec![json!(id)],
        )
        .await
        .expect("scroll");
}

/// Sets a date field (`YYYY-MM-DD`): what a date picker does, without
/// depending on the locale's typing order.
async fn set_date(b: &Browser, css: &str, day: &str) {
    b.wait(css).await;
    b.client
        .execute(
            "document.querySelector(arguments[0]).value = arguments[1];",
            vec![json!(css), json!(day)],
        )
        .await
        .expect("set the date");
}

/// A same-origin GET from the page, with the browser's session cookie:
/// the status and the body's text.
async fn fetch_in_browser(b: &Browser, href: &str) -> (u64, String) {
    let answer = b
        .client
        .execute_async(
            r#"const [href, done] = [arguments[0], arguments[arguments.length - 1]];
            fetch(href, { credentials: "same-origin" })
              .then(r => r.text().then(t => done([r.status, t])))
              .catch(e => done([0, String(e)]));"#,
            vec![json!(href)],
        )
        .await
        .expect("fetch runs");
    (
        answer[0].as_u64().expect("status"),
        answer[1].as_str().expect("text").to_string(),
    )
}

#[tokio::test]
async fn approving_an_assessment_in_the_browser() {
    let app = app().await;
    let (org, conn) = connected(&app).await;
    let Some(b) = Browser::open(&app).await else {
        return;
    };
    b.sign_in(&org.owner_email, OWNER_PASSWORD).await;
    b.goto("/controls").await;
    b.click("#controls-assessments a[href='/assessments']")
        .await;
    b.wait_text("No assessments yet").await;
    b.check_page("assessments-empty").await;
    // A period that ends before it starts: the API's reason, the input kept.
    b.fill("#a-name", "SOC 2 Type II").await;
    set_date(&b, "#a-from", "2026-03-01").await;
    set_date(&b, "#a-to", "2026-02-01").await;
    b.click("form[action='/assessments'] button[type=submit]")
        .await;
    let error = b.text("#new-assessment-error").await;
    assert!(error.contains("before it starts"), "{error}");
    assert_eq!(
        b.wait("#a-name").await.prop("value").await.expect("value"),
        Some("SOC 2 Type II".to_string())
    );
    b.check_page("assessment-refused").await;
    // The last 90 days (the form's default) of every control.
    let today = chrono::Utc::now().date_naive();
    let from = today - chrono::Duration::days(90);
    set_date(&b, "#a-from", &from.to_string()).await;
    set_date(&b, "#a-to", &today.to_string()).await;
    b.click("form[action='/assessments'] button[type=submit]")
        .await;
    b.wait_text("Assessment created as a draft").await;
    let path = b.path().await;
    let id = path
        .trim_start_matches("/assessments/")
        .split('?')
        .next()
        .expect("id")
        .to_string();
    assert_eq!(b.text("#assessment-state").await, "draft");
    // One chosen row, then everything else in scope.
    scroll_to(&b, "attach-heading").await;
    b.check_page("assessment-attach").await;
    let pick = b.wait("#candidates input[name=evidence]").await;
    let picked = pick.attr("value").await.expect("value").expect("an id");
    pick.click().await.expect("choose");
    b.click("#attach-chosen").await;
    b.wait_text("1 evidence row attached.").await;
    b.wait(&format!("#attached-{picked}")).await;
    b.click("#attach-all").await;
    b.wait_text("evidence rows attached.").await;
    b.check_page("assessment-attached").await;
    fits_the_window(&b, "the draft assessment").await;
    let rows = app
        .list(&org.token, &format!("/api/v1/assessments/{id}/evidence"))
        .await;
    assert!(rows.len() > 1, "{rows:?}");
    // Approval asks first, then the assessment is final.
    b.click("#approve-button").await;
    b.confirm().await;
    b.wait_text("Approved: the assessment and its attached evidence")
        .await;
    assert_eq!(b.text("#assessment-state").await, "approved");
    assert!(b.text("#assessment-approved").await.contains("by"));
    for gone in ["button.detach", "#attach-all", "#approve-button"] {
        assert!(
            b.client
                .find_all(fantoccini::Locator::Css(gone))
                .await
                .expect("find")
                .is_empty(),
            "an approved assessment shows {gone}"
        );
    }
    let row = rows[0]["id"].as_str().expect("row");
    let (status, refused) = app
        .call(
            &org.token,
            Method::DELETE,
            &format!("/api/v1/assessments/{id}/evidence/{row}"),
            None,
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT, "{refused}");
    assert_eq!(
        app.list(&org.token, &format!("/api/v1/assessments/{id}/evidence"))
            .await
            .len(),
        rows.len()
    );
    // A sample with a seed; redrawn, the same rows.
    b.fill("#s-size", "3").await;
    b.fill("#s-seed", "20261203").await;
    b.click("#draw-button").await;
    b.wait_text("Sample drawn").await;
    b.click("button.redraw").await;
    b.wait_text("Sample drawn").await;
    let (_, drawn) = app
        .call(
            &org.token,
            Method::GET,
            &format!("/api/v1/assessments/{id}/samples"),
            None,
        )
        .await;
    let drawn = drawn.as_array().expect("samples");
    assert_eq!(drawn.len(), 2, "{drawn:?}");
    assert_eq!(drawn[0]["seed"], "20261203");
    assert_eq!(drawn[0]["evidence"], drawn[1]["evidence"]);
    assert!(b.body().await.contains("20261203"));
    b.check_page("assessment-samples").await;
    // A storage account goes public and a sync runs: what was attested
    // stays as it was, and the later evidence is flagged beside it.
    let account = app
        .list(
            &org.token,
            "/api/v1/evidence?check=storage.public_network_access&result=pass",
        )
        .await
        .into_iter()
        .next()
        .expect("a storage account closed to the internet")["subject"]
        .as_str()
        .expect("subject")
        .to_string();
    app.sim
        .control_ok(
            Method::PATCH,
            &format!("/_sim/storage-accounts{account}"),
            json!({"allowBlobPublicAccess": true, "publicNetworkAccess": "Enabled", "networkAcls": {"defaultAction": "Allow"}}),
        )
        .await;
    sync_in_browser(&b, &conn).await;
    b.goto(&format!("/assessments/{id}")).await;
    let changes = b.text("#changes").await;
    let name = account.rsplit('/').next().expect("name");
    assert!(
        changes.contains(name) && changes.contains("fail"),
        "{changes}"
    );
    assert_eq!(b.text("#assessment-state").await, "approved");
    b.check_page("assessment-approved").await;
    fits_the_window(&b, "the approved assessment").await;
    // The exports are the API's routes, read with the browser's session.
    let href = b
        .wait("#export-csv")
        .await
        .attr("href")
        .await
        .expect("href")
        .expect("a link");
    assert_eq!(href, format!("/api/v1/assessments/{id}/export?format=csv"));
    let (status, csv) = fetch_in_browser(&b, &href).await;
    assert_eq!(status, 200, "{csv}");
    assert_eq!(csv.lines().count(), rows.len() + 1, "{csv}");
    for r in &rows {
        assert!(csv.contains(r["id"].as_str().expect("id")), "{csv}");
    }
    let href = b
        .wait("#export-json")
        .await
        .attr("href")
        .await
        .expect("href")
        .expect("a link");
    let (status, text) = fetch_in_browser(&b, &href).await;
    assert_eq!(status, 200);
    let exported: Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        exported["evidence"].as_array().expect("rows").len(),
        rows.len()
    );
    // An auditor is invited to this assessment: the secret is shown once.
    b.fill("#i-email", "auditor@audit.example").await;
    b.click("#invite-button").await;
    let secret = b.text("#invitation-secret").await;
    assert!(secret.starts_with("cki_"), "{secret}");
    assert!(
        b.text("#invitations")
            .await
            .contains("auditor@audit.example")
    );
    scroll_to(&b, "invitations-heading").await;
    b.check_page("assessment-invited").await;
    // The list shows it approved.
    b.click("nav.side a[href='/assessments']").await;
    let line = b.text(&format!("#assessment-{id}")).await;
    assert!(
        line.contains("approved") && line.contains("SOC 2 Type II") && line.contains("changed"),
        "{line}"
    );
    b.check_page("assessments").await;
    b.close().await;
}

#[tokio::test]
async fn an_anomaly_is_explained_in_the_browser() {
    let app = app().await;
    let (org, conn) = connected(&app).await;
    // A known spike, as the API's test makes one: 8x on the second
    // subscription's costliest resource over its last three days.
    let scenario = app.sim.scenario_now().await;
    let today = chrono::NaiveDate::parse_from_str(
        &scenario["today"].as_str().expect("today")[..10],
        "%Y-%m-%d",
    )
    .expect("date");
    let sub = app.subscription_ids()[1].to_ascii_lowercase();
    let from = today - chrono::Duration::days(29);
    let (_, by) = app
        .call(
            &org.token,
            Method::GET,
            &format!(
                "/api/v1/spend?metric=effective&group_by=resource,service&filter=subscription={sub}&from={from}&to={today}&top=1&granularity=month"
            ),
            None,
        )
        .await;
    let resource = by["series"][0]["key"][0]
        .as_str()
        .expect("a resource")
        .to_string();
    app.sim
        .control_ok(
            Method::POST,
            "/_sim/cost/events",
            json!({"kind": "spike", "resource_id": resource, "factor": 8.0,
                   "from": (today - chrono::Duration::days(2)).to_string(), "to": today.to_string(),
                   "note": "test: a runaway resource"}),
        )
        .await;
    let run = app.sync(&org, &conn).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let found = app
        .list(
            &org.token,
            &format!("/api/v1/spend/anomalies?kind=anomaly&ended=false&subscription={sub}"),
        )
        .await;
    let incident = found
        .iter()
        .find(|i| i["contributors"][0]["item"] == resource.to_ascii_lowercase().as_str())
        .expect("the spike is found")
        .clone();
    let id = incident["id"].as_str().expect("id");
    let Some(b) = Browser::open(&app).await else {
        return;
    };
    b.sign_in(&org.owner_email, OWNER_PASSWORD).await;
    // The dashboard's card names it and leads to it.
    b.goto("/").await;
    b.wait("#anomalies-card").await;
    let card = b.text("#anomalies-card").await;
    assert!(card.contains("Open anomalies"), "{card}");
    b.click(&format!("#anomalies-card a[href='/anomalies/{id}']"))
        .await;
    b.wait_text("What explains it").await;
    assert_eq!(b.path().await, format!("/anomalies/{id}"));
    assert!(b.text("#incident-state").await.contains("open"));
    // The chart, its figures, and the resource first among contributors,
    // linked to its page.
    b.wait("#incident-chart-title").await;
    let days = b.text("#incident-days").await;
    assert!(!days.is_empty());
    // Named as the API names it (a child resource with its parent's name).
    let name = incident["contributors"][0]["name"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| resource.rsplit('/').next().expect("name").to_string());
    let first = b
        .wait("#contributors-resources tbody tr:first-child th a")
        .await;
    assert_eq!(
        first.text().await.expect("text").to_ascii_lowercase(),
        name.to_ascii_lowercase()
    );
    b.check_page("anomaly-spike").await;
    whole_page_shot(&b, "anomaly-spike-whole").await;
    fits_the_window(&b, "the incident").await;
    first.click().await.expect("follow");
    b.wait_text("Tag history").await;
    assert!(b.path().await.starts_with("/resources/"));
    // The list, filtered to open spikes; the movers by resource name it too.
    b.goto("/").await;
    b.click("nav.side a[href='/anomalies']").await;
    b.wait("#a-state")
        .await
        .select_by_value("open")
        .await
        .expect("state");
    b.wait("#a-kind")
        .await
        .select_by_value("anomaly")
        .await
        .expect("kind");
    b.click("form[aria-label='Which incidents'] button").await;
    b.wait_path("state=open").await;
    b.wait(&format!("#incident-{id}")).await;
    b.wait("#m-by")
        .await
        .select_by_value("resource")
        .await
        .expect("by");
    b.click("form[aria-label='Which movers'] button").await;
    b.wait_path("by=resource").await;
    b.wait_text("Top movers").await;
    let movers = b.text("#movers").await;
    assert!(
        movers
            .to_ascii_lowercase()
            .contains(&name.to_ascii_lowercase()),
        "{movers}"
    );
    assert!(
        b.path().await.contains("state=open"),
        "filters kept: {}",
        b.path().await
    );
    b.check_page("anomalies-open").await;
    whole_page_shot(&b, "anomalies-open-whole").await;
    fits_the_window(&b, "the anomalies").await;
    b.goto("/").await;
    b.wait("#anomalies-card").await;
    whole_page_shot(&b, "dashboard-whole").await;
    b.close().await;
}

#[tokio::test]
async fn a_tag_alias_is_added_and_removed_in_the_browser() {
    let app = app().await;
    let (org, _) = connected(&app).await;
    let Some(b) = Browser::open(&app).await else {
        return;
    };
    b.sign_in(&org.owner_email, OWNER_PASSWORD).await;
    b.goto("/settings").await;
    b.click("a[href='/settings/tag-aliases']").await;
    b.wait_text("No aliases").await;
    b.fill("#alias-alias", "Environment").await;
    b.fill("#alias-key", "env").await;
    b.click("form[action='/settings/tag-aliases'] button").await;
    b.wait_text("Tag alias added").await;
    let table = b.text("#aliases").await;
    assert!(
        table.contains("environment") && table.contains("env"),
        "{table}"
    );
    let (_, saved) = app
        .call(&org.token, Method::GET, "/api/v1/spend/tag-aliases", None)
        .await;
    assert_eq!(saved["aliases"], json!({"environment": "env"}));
    b.check_page("settings-tag-alias-added").await;
    // A chain is refused with the API's reason; what was typed stays.
    b.fill("#alias-alias", "env").await;
    b.fill("#alias-key", "stage").await;
    b.click("form[action='/settings/tag-aliases'] button").await;
    let error = b.text("#alias-error").await;
    assert!(error.contains("both an alias and the key"), "{error}");
    assert_eq!(
        b.wait("#alias-key")
            .await
            .prop("value")
            .await
            .expect("value"),
        Some("stage".to_string())
    );
    b.check_page("settings-tag-alias-refused").await;
    // Removing asks first.
    b.click("form[action='/settings/tag-aliases/remove'] button")
        .await;
    b.confirm().await;
    b.wait_text("Tag alias removed").await;
    let (_, saved) = app
        .call(&org.token, Method::GET, "/api/v1/spend/tag-aliases", None)
        .await;
    assert_eq!(saved["aliases"], json!({}));
    // The retention window, an owner's.
    b.goto("/settings").await;
    b.click("a[href='/settings/retention']").await;
    b.fill("#retention-input", "120").await;
    b.click("form[action='/settings/retention'] button").await;
    b.wait_text("Retention window saved").await;
    assert!(b.text("#retention-days").await.starts_with("120 days"));
    b.check_page("settings-retention-saved").await;
    // The budget form's scope pickers, and the coverage rows' values.
    b.goto("/budgets").await;
    b.wait("#new-budget-subscription").await;
    whole_page_shot(&b, "budgets-scope-whole").await;
    b.goto("/coverage").await;
    b.fill("#required-keys-input", "owner").await;
    b.click("form[action='/coverage/required-keys'] button")
        .await;
    b.wait("#untagged input.row-value").await;
    b.check_page("coverage-row-values").await;
    whole_page_shot(&b, "coverage-row-values-whole").await;
    fits_the_window(&b, "the coverage page").await;
    b.close().await;
}
