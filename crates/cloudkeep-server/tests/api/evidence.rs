//! Security evidence end to end: the four evidence collectors against the
//! simulator, each check's pass, fail and not-collected cases (flipped
//! through the simulator's control API), fingerprint intervals, coverage
//! and its worst-state rule, filters, and who may read and change what.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use cloudkeep_domain::Role;
use cloudkeep_domain::evidence::CheckId;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use chrono::Duration;

use crate::harness::{App, Org, spawn_app};

/// Connects the simulated tenant with `key` and syncs it; answers the connection's id.
pub async fn synced(app: &App, org: &Org, key: &str) -> String {
    let conn = app.connect(org, key).await;
    let id = conn["id"].as_str().expect("id").to_string();
    sync_ok(app, org, &id).await;
    id
}

/// A sync that must succeed; answers the run.
pub async fn sync_ok(app: &App, org: &Org, connection: &str) -> Value {
    let run = app.sync(org, connection).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    run
}

/// Every evidence row a query lists (current ones unless it says otherwise).
pub async fn evidence(app: &App, org: &Org, query: &str) -> Vec<Value> {
    app.list(&org.token, &format!("/api/v1/evidence?{query}"))
        .await
}

/// The current row of one check about one subject.
async fn row(app: &App, org: &Org, check: CheckId, subject: &str) -> Value {
    let rows: Vec<Value> = evidence(app, org, &format!("check={check}"))
        .await
        .into_iter()
        .filter(|e| {
            e["subject"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(subject))
        })
        .collect();
    assert_eq!(rows.len(), 1, "{check} of {subject}: {rows:?}");
    rows[0].clone()
}

/// Subjects of a check's current evidence.
async fn subjects(app: &App, org: &Org, check: CheckId) -> Vec<String> {
    evidence(app, org, &format!("check={check}"))
        .await
        .iter()
        .filter_map(|e| e["subject"].as_str().map(str::to_string))
        .collect()
}

/// (result, facts) of each check about a subject, checked against `expected`.
async fn expect_results(
    app: &App,
    org: &Org,
    subject: &str,
    expected: &[(CheckId, &str)],
) -> HashMap<CheckId, Value> {
    let mut facts = HashMap::new();
    for (check, result) in expected {
        let r = row(app, org, *check, subject).await;
        assert_eq!(r["result"], *result, "{check} of {subject}: {r}");
        facts.insert(*check, r["facts"].clone());
    }
    facts
}

fn absent(facts: &Value) -> bool {
    facts["absent"] == true
}

#[tokio::test]
async fn the_demo_has_a_passing_and_a_failing_case_of_every_check() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    synced(&app, &org, "collector").await;
    let all = evidence(&app, &org, "").await;
    let mut results: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &all {
        results
            .entry(e["check"].as_str().expect("check").into())
            .or_default()
            .insert(e["result"].as_str().expect("result").into());
        assert_eq!(e["fingerprint"].as_str().map(str::len), Some(64));
        assert!(e["valid_to"].is_null());
    }
    for check in CheckId::ALL {
        let seen = results.get(check.as_str()).cloned().unwrap_or_default();
        if *check == CheckId::RbacGuestUsers {
            assert_eq!(seen, BTreeSet::from(["not_collected".to_string()]));
            continue;
        }
        assert!(
            seen.contains("pass") && seen.contains("fail"),
            "{check}: {seen:?}"
        );
    }
    let guests = evidence(&app, &org, "check=rbac.guest_users").await;
    assert_eq!(guests.len(), 3, "one per subscription");
    assert!(
        guests[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("needs Microsoft Graph")),
        "{}",
        guests[0]
    );
    let controls = app
        .expect(
            &org.token,
            Method::GET,
            "/api/v1/controls",
            None,
            StatusCode::OK,
        )
        .await;
    let items = controls["items"].as_array().expect("controls");
    assert_eq!(items.len(), 3);
    for c in items {
        assert_eq!(c["coverage"]["state"], "failing", "{c}");
        assert!(c["coverage"]["passing"].as_u64() > Some(0), "{c}");
    }
}

#[tokio::test]
async fn storage_checks_follow_each_setting_and_say_when_azure_left_it_out() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = synced(&app, &org, "collector").await;
    let account = subjects(&app, &org, CheckId::StorageHttpsOnly).await[0].clone();
    use CheckId::*;
    // (the account's settings, then each check's result and whether its field was absent)
    // (check, result, whether its field was absent)
    type Expected = [(CheckId, &'static str, bool); 6];
    let steps: [(Value, Expected); 4] = [
        (
            json!({"allowBlobPublicAccess": true, "publicNetworkAccess": "Enabled", "networkAcls": {"defaultAction": "Allow"},
                   "supportsHttpsTrafficOnly": false, "minimumTlsVersion": "TLS1_1", "allowSharedKeyAccess": true}),
            [
                (StorageAnonymousBlobAccess, "fail", false),
                (StoragePublicNetworkAccess, "fail", false),
                (StorageNetworkDefaultDeny, "fail", false),
                (StorageHttpsOnly, "fail", false),
                (StorageMinimumTls, "fail", false),
                (StorageSharedKeyAccess, "fail", false),
            ],
        ),
        (
            json!({"allowBlobPublicAccess": false, "publicNetworkAccess": "Disabled", "networkAcls": {"defaultAction": "Deny"},
                   "supportsHttpsTrafficOnly": true, "minimumTlsVersion": "TLS1_2", "allowSharedKeyAccess": false}),
            [
                (StorageAnonymousBlobAccess, "pass", false),
                (StoragePublicNetworkAccess, "pass", false),
                (StorageNetworkDefaultDeny, "pass", false),
                (StorageHttpsOnly, "pass", false),
                (StorageMinimumTls, "pass", false),
                (StorageSharedKeyAccess, "pass", false),
            ],
        ),
        // Left out, as on accounts that never set them: Azure's documented defaults.
        (
            json!({"allowBlobPublicAccess": null, "publicNetworkAccess": null, "supportsHttpsTrafficOnly": null,
                   "minimumTlsVersion": null, "allowSharedKeyAccess": null}),
            [
                (StorageAnonymousBlobAccess, "pass", true),
                (StoragePublicNetworkAccess, "fail", true),
                (StorageNetworkDefaultDeny, "pass", false),
                (StorageHttpsOnly, "pass", true),
                (StorageMinimumTls, "fail", true),
                (StorageSharedKeyAccess, "fail", true),
            ],
        ),
        // Anonymous blobs and network exposure are separate findings.
        (
            json!({"allowBlobPublicAccess": true, "publicNetworkAccess": "SecuredByPerimeter"}),
            [
                (StorageAnonymousBlobAccess, "fail", false),
                (StoragePublicNetworkAccess, "pass", false),
                (StorageNetworkDefaultDeny, "pass", false),
                (StorageHttpsOnly, "pass", true),
                (StorageMinimumTls, "fail", true),
                (StorageSharedKeyAccess, "fail", true),
            ],
        ),
    ];
    for (settings, expected) in steps {
        app.sim
            .control_ok(
                Method::PATCH,
                &format!("/_sim/storage-accounts{account}"),
                settings.clone(),
            )
            .await;
        sync_ok(&app, &org, &conn).await;
        let pairs: Vec<(CheckId, &str)> = expected.iter().map(|(c, r, _)| (*c, *r)).collect();
        let facts = expect_results(&app, &org, &account, &pairs).await;
        for (check, _, was_absent) in expected {
            assert_eq!(
                absent(&facts[&check]),
                was_absent,
                "{check} after {settings}: {}",
                facts[&check]
            );
        }
    }
    let tls = row(&app, &org, StorageMinimumTls, &account).await;
    assert_eq!(tls["facts"]["value"], "TLS1_0", "the default, shown");
    assert_eq!(tls["facts"]["default_of_api_version"], "2025-01-01");
    assert!(
        tls["reason"].as_str().is_some_and(|r| r.contains("TLS1_0")),
        "{tls}"
    );
}

#[tokio::test]
async fn key_vault_checks_follow_vaults_keys_and_secrets() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = synced(&app, &org, "collector").await;
    // A vault with keys and secrets.
    let keys = subjects(&app, &org, CheckId::KeyVaultKeyRotation).await;
    let secrets = subjects(&app, &org, CheckId::KeyVaultSecretExpiry).await;
    let key = keys
        .iter()
        .find(|k| {
            let vault = k.split("/keys/").next().unwrap_or_default();
            secrets
                .iter()
                .any(|s| s.starts_with(&format!("{vault}/secrets/")))
        })
        .expect("a vault with keys and secrets")
        .clone();
    let vault = key.split("/keys/").next().expect("vault").to_string();
    let key_name = key.rsplit('/').next().expect("name").to_string();
    let secret = secrets
        .iter()
        .find(|s| s.starts_with(&format!("{vault}/secrets/")))
        .expect("secret")
        .clone();
    let secret_name = secret.rsplit('/').next().expect("name").to_string();
    let patch = |path: String, body: Value| {
        let app = &app;
        async move { app.sim.control_ok(Method::PATCH, &path, body).await }
    };
    use CheckId::*;
    patch(
        format!("/_sim/vaults{vault}"),
        json!({"enableSoftDelete": true, "enablePurgeProtection": false, "enableRbacAuthorization": false, "publicNetworkAccess": "Enabled"}),
    )
    .await;
    patch(
        format!("/_sim/vaults{vault}/keys/{key_name}"),
        json!({"rotationPolicy": null, "exp": null}),
    )
    .await;
    patch(
        format!("/_sim/vaults{vault}/secrets/{secret_name}"),
        json!({"exp": null}),
    )
    .await;
    sync_ok(&app, &org, &conn).await;
    expect_results(
        &app,
        &org,
        &vault,
        &[
            (KeyVaultDeletionProtection, "fail"),
            (KeyVaultRbacAuthorization, "fail"),
            (KeyVaultPublicNetworkAccess, "fail"),
        ],
    )
    .await;
    expect_results(
        &app,
        &org,
        &key,
        &[(KeyVaultKeyRotation, "fail"), (KeyVaultKeyExpiry, "fail")],
    )
    .await;
    expect_results(&app, &org, &secret, &[(KeyVaultSecretExpiry, "fail")]).await;

    // Private now: keys and secrets are still read (through ARM), so the
    // vault's evidence is judged, not refused.
    patch(
        format!("/_sim/vaults{vault}"),
        json!({"enablePurgeProtection": true, "enableRbacAuthorization": true, "publicNetworkAccess": "Disabled"}),
    )
    .await;
    patch(
        format!("/_sim/vaults{vault}/keys/{key_name}"),
        json!({"rotationPolicy": {"rotateAfterCreate": "P90D", "expiryTime": "P1Y"}, "exp": 4_000_000_000u64}),
    )
    .await;
    patch(
        format!("/_sim/vaults{vault}/secrets/{secret_name}"),
        json!({"exp": 4_000_000_000u64}),
    )
    .await;
    sync_ok(&app, &org, &conn).await;
    expect_results(
        &app,
        &org,
        &vault,
        &[
            (KeyVaultDeletionProtection, "pass"),
            (KeyVaultRbacAuthorization, "pass"),
            (KeyVaultPublicNetworkAccess, "pass"),
        ],
    )
    .await;
    let facts = expect_results(
        &app,
        &org,
        &key,
        &[(KeyVaultKeyRotation, "pass"), (KeyVaultKeyExpiry, "pass")],
    )
    .await;
    assert_eq!(
        facts[&KeyVaultKeyRotation]["rotation_policy"]["rotate_after_create"],
        "P90D"
    );
    expect_results(&app, &org, &secret, &[(KeyVaultSecretExpiry, "pass")]).await;

    // A policy that only notifies does not rotate.
    patch(
        format!("/_sim/vaults{vault}/keys/{key_name}"),
        json!({"rotationPolicy": {"expiryTime": "P1Y"}}),
    )
    .await;
    sync_ok(&app, &org, &conn).await;
    let notify = row(&app, &org, KeyVaultKeyRotation, &key).await;
    assert_eq!(notify["result"], "fail");
    assert!(
        notify["reason"]
            .as_str()
            .is_some_and(|r| r.contains("only notifies"))
    );
    // A vault's subject filter takes its keys' and secrets' evidence too.
    let under = evidence(&app, &org, &format!("subject={vault}")).await;
    let checks: BTreeSet<&str> = under.iter().filter_map(|e| e["check"].as_str()).collect();
    assert!(checks.contains("keyvault.key_rotation") && checks.contains("keyvault.secret_expiry"));
    assert!(under.iter().all(|e| {
        e["subject"]
            .as_str()
            .is_some_and(|s| s.to_lowercase().starts_with(&vault.to_lowercase()))
    }));
    assert!(
        app.sim
            .requests(0)
            .await
            .iter()
            .all(|e| !e["path"].as_str().unwrap_or("").contains("vault.azure.net")),
        "never the data plane"
    );
}

#[tokio::test]
async fn defender_checks_follow_plans_scores_and_the_threshold() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    let sub = app.subscription_ids()[0].clone();
    app.sim
        .control_ok(
            Method::PUT,
            &format!("/_sim/pricings/{sub}/StorageAccounts"),
            json!({"pricingTier": "Free"}),
        )
        .await;
    app.sim
        .control_ok(
            Method::PUT,
            &format!("/_sim/pricings/{sub}/KeyVaults"),
            json!({"pricingTier": "Standard"}),
        )
        .await;
    app.sim
        .control_ok(
            Method::PUT,
            &format!("/_sim/secure-scores/{sub}"),
            json!({"controls": [
                {"displayName": "Enable MFA", "max": 10, "healthy": 5, "unhealthy": 0},
                {"displayName": "Apply system updates", "max": 5, "healthy": 1, "unhealthy": 2},
                {"displayName": "Custom recommendations", "max": 0, "healthy": 0, "unhealthy": 0, "notApplicable": 3}
            ]}),
        )
        .await;
    sync_ok(&app, &org, &id).await;
    let pricing =
        |plan: &str| format!("/subscriptions/{sub}/providers/Microsoft.Security/pricings/{plan}");
    expect_results(
        &app,
        &org,
        &pricing("StorageAccounts"),
        &[(CheckId::DefenderPlanStorage, "fail")],
    )
    .await;
    expect_results(
        &app,
        &org,
        &pricing("KeyVaults"),
        &[(CheckId::DefenderPlanKeyVault, "pass")],
    )
    .await;
    let controls: Vec<Value> = evidence(&app, &org, "check=defender.score_control")
        .await
        .into_iter()
        .filter(|e| e["subject"].as_str().is_some_and(|s| s.contains(&sub)))
        .collect();
    let by_name = |name: &str| {
        controls
            .iter()
            .find(|e| e["facts"]["name"] == name)
            .unwrap_or_else(|| panic!("no control {name}: {controls:?}"))
            .clone()
    };
    assert_eq!(by_name("Enable MFA")["result"], "pass");
    assert_eq!(by_name("Apply system updates")["result"], "fail");
    let unscored = by_name("Custom recommendations");
    assert_eq!(
        unscored["result"], "not_applicable",
        "max 0 is not a 0% fail"
    );
    let score_subject =
        format!("/subscriptions/{sub}/providers/Microsoft.Security/secureScores/ascScore");
    let score = row(&app, &org, CheckId::DefenderSecureScore, &score_subject).await;
    // (10 + 5 × 1/3) / 15 = 0.78 against the default threshold of 0.7.
    assert_eq!(score["result"], "pass", "{score}");
    assert_eq!(score["facts"]["threshold"], 0.7);
    // Azure's weight is what it says, not the controls' resource counts.
    assert!(score["facts"]["weight"].as_u64().is_some());
    assert_ne!(score["facts"]["weight"], json!(8), "{score}");

    app.expect(
        &org.token,
        Method::PATCH,
        "/api/v1/settings/evidence",
        Some(json!({"secure_score_threshold": 0.9})),
        StatusCode::OK,
    )
    .await;
    sync_ok(&app, &org, &id).await;
    let score = row(&app, &org, CheckId::DefenderSecureScore, &score_subject).await;
    assert_eq!(score["result"], "fail");
    assert_eq!(score["facts"]["threshold"], 0.9);
    assert!(
        score["reason"].as_str().is_some_and(|r| r.contains("90%")),
        "{score}"
    );
    let (status, body) = app
        .call(
            &org.token,
            Method::PATCH,
            "/api/v1/settings/evidence",
            Some(json!({"secure_score_threshold": 90})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test]
async fn rbac_checks_follow_role_assignments() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = synced(&app, &org, "collector").await;
    let subs = app.subscription_ids();
    let at = |i: usize| format!("/subscriptions/{}", subs[i]);
    use CheckId::*;
    // Sub 0 has two Owners, sub 2 a group and a service principal.
    expect_results(
        &app,
        &org,
        &at(0),
        &[
            (RbacOwnerCount, "pass"),
            (RbacUserAccessAdministrator, "pass"),
            (RbacCustomOwnerRoles, "pass"),
        ],
    )
    .await;
    expect_results(
        &app,
        &org,
        &at(2),
        &[
            (RbacOwnerCount, "pass"),
            (RbacPrivilegedForeignGroups, "pass"),
            (RbacPrivilegedUsers, "pass"),
        ],
    )
    .await;
    let sp = |key: &str| app.sim.scenario.sp(key).object_id.clone();
    let grant = |principal: String, role: &str, scope: String, kind: Option<&str>| {
        let app = &app;
        let mut body = json!({"principal_id": principal, "role": role, "scope": scope});
        if let Some(k) = kind {
            body["principal_type"] = json!(k);
        }
        async move {
            app.sim
                .control_ok(Method::POST, "/_sim/role-assignments", body)
                .await
        }
    };
    grant(sp("reader-only"), "Owner", at(0), None).await;
    grant(sp("no-access"), "Owner", at(0), None).await;
    grant(sp("reader-only"), "User Access Administrator", at(0), None).await;
    grant(
        "9d6f1a44-0000-4000-8000-00000000f0f0".into(),
        "Owner",
        at(2),
        Some("ForeignGroup"),
    )
    .await;
    let partial = app.sim.scenario.user("partial-owner").object_id.clone();
    grant(partial, "Contributor", at(2), None).await;
    app.sim
        .control_ok(
            Method::POST,
            "/_sim/role-definitions",
            json!({"name": "Everything Operator", "actions": ["*"], "notActions": [], "dataActions": [],
                   "assignableScopes": [at(0)], "description": "too much"}),
        )
        .await;
    sync_ok(&app, &org, &conn).await;
    let facts = expect_results(
        &app,
        &org,
        &at(0),
        &[
            (RbacOwnerCount, "fail"),
            (RbacUserAccessAdministrator, "fail"),
            (RbacCustomOwnerRoles, "fail"),
        ],
    )
    .await;
    assert_eq!(facts[&RbacOwnerCount]["distinct_principals"], 4);
    assert_eq!(
        facts[&RbacCustomOwnerRoles]["roles"][0]["name"],
        "Everything Operator"
    );
    assert_eq!(
        facts[&RbacCustomOwnerRoles]["roles"][0]["assigned"], false,
        "assignable is enough"
    );
    let facts = expect_results(
        &app,
        &org,
        &at(2),
        &[
            (RbacOwnerCount, "pass"),
            (RbacPrivilegedForeignGroups, "fail"),
            (RbacPrivilegedUsers, "fail"),
        ],
    )
    .await;
    assert_eq!(
        facts[&RbacOwnerCount]["distinct_principals"], 3,
        "a group, a service principal and a foreign group: three is allowed"
    );
    assert_eq!(
        facts[&RbacPrivilegedForeignGroups]["assignments"][0]["role"],
        "Owner"
    );
    let users = row(&app, &org, RbacPrivilegedUsers, &at(2)).await;
    assert!(
        users["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("flagged for review"))
    );
    assert_eq!(
        users["facts"]["assignments"][0]["role"], "Contributor",
        "role names resolved"
    );
}

#[tokio::test]
async fn a_missing_role_is_not_collected_never_a_fail() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = synced(&app, &org, "collector").await;
    let sub = app.subscription_ids()[0].clone();
    let scope = format!("/subscriptions/{sub}");
    let collector = app.sim.scenario.sp("collector").object_id.clone();
    for role in ["Reader", "Security Reader", "Tag Contributor"] {
        app.sim
            .control_ok(
                Method::DELETE,
                "/_sim/role-assignments",
                json!({"principal_id": collector, "role": role, "scope": scope}),
            )
            .await;
    }
    let run = app.sync(&org, &conn).await;
    assert_eq!(run["status"], "partial", "the inventory is refused: {run}");
    let report = cloudkeep_testkit::report(&run);
    for step in ["rbac", "defender", "storage", "keyvault"] {
        let s = report.step(&sub, step).expect("step");
        assert_eq!(
            s.state,
            cloudkeep_domain::StepState::Succeeded,
            "{step}: {s:?}"
        );
        assert!(s.counts.get("not_collected") > Some(0), "{step}: {s:?}");
        assert_eq!(s.counts.get("failing"), Some(0), "{step}: {s:?}");
    }
    let mine: Vec<Value> = evidence(&app, &org, "")
        .await
        .into_iter()
        .filter(|e| e["subject"].as_str().is_some_and(|s| s.contains(&sub)))
        .collect();
    assert_eq!(
        mine.len(),
        CheckId::ALL.len(),
        "one row per check, about the subscription"
    );
    for e in &mine {
        assert_eq!(e["result"], "not_collected", "{e}");
        assert_eq!(e["subject"], scope.as_str(), "{e}");
        let needs = match e["collector"].as_str() {
            Some("defender") => "needs Security Reader",
            _ if e["check"] == "rbac.guest_users" => "needs Microsoft Graph",
            _ => "needs Reader",
        };
        assert!(
            e["reason"].as_str().is_some_and(|r| r.contains(needs)),
            "{e}"
        );
    }
    // Given back, collected again.
    for role in ["Reader", "Security Reader"] {
        app.sim
            .control_ok(
                Method::POST,
                "/_sim/role-assignments",
                json!({"principal_id": collector, "role": role, "scope": scope}),
            )
            .await;
    }
    app.sync(&org, &conn).await;
    let https = evidence(&app, &org, "check=storage.https_only&result=not_collected").await;
    assert!(https.is_empty(), "{https:?}");

    // A principal whose roles the connection's permission check found
    // wanting: the evidence says so.
    let other = app.org("globex").await;
    let no_access = app.sim.scenario.sp("no-access").object_id.clone();
    app.sim
        .control_ok(
            Method::POST,
            "/_sim/role-assignments",
            json!({"principal_id": no_access, "role": "Tag Contributor", "scope": scope}),
        )
        .await;
    let conn = app.connect(&other, "no-access").await;
    app.sync(&other, conn["id"].as_str().expect("id")).await;
    let score = evidence(&app, &other, "check=defender.secure_score").await;
    assert_eq!(score.len(), 1);
    assert_eq!(score[0]["result"], "not_collected");
    assert!(
        score[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("permission check found no role")),
        "{}",
        score[0]
    );
}

#[tokio::test]
async fn unchanged_syncs_add_no_rows_and_changes_open_intervals() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = synced(&app, &org, "collector").await;
    let before = evidence(&app, &org, "current=false").await.len();
    let again = sync_ok(&app, &org, &conn).await;
    let report = cloudkeep_testkit::report(&again);
    for step in ["rbac", "defender", "storage", "keyvault"] {
        assert_eq!(report.total(step, "opened"), 0, "{step}");
        assert!(report.total(step, "observed") > 0, "{step}");
    }
    assert_eq!(
        evidence(&app, &org, "current=false").await.len(),
        before,
        "no row added"
    );

    // An account that states its setting (one leaving it out would state
    // it after a flip back: other facts, another fingerprint).
    let account = evidence(&app, &org, "check=storage.anonymous_blob_access")
        .await
        .into_iter()
        .find(|e| e["facts"]["absent"] == false)
        .and_then(|e| e["subject"].as_str().map(str::to_string))
        .expect("an account with allowBlobPublicAccess set");
    let flip = |on: bool| {
        let app = &app;
        let account = account.clone();
        async move {
            app.sim
                .control_ok(
                    Method::POST,
                    "/_sim/storage/public-access",
                    json!({"account_id": account, "allow_blob_public_access": on}),
                )
                .await;
        }
    };
    let first = row(&app, &org, CheckId::StorageAnonymousBlobAccess, &account).await;
    let was = first["facts"]["value"] == true;
    flip(!was).await;
    let changed = sync_ok(&app, &org, &conn).await;
    assert_eq!(
        cloudkeep_testkit::report(&changed).total("storage", "changed"),
        1
    );
    flip(was).await;
    sync_ok(&app, &org, &conn).await;
    let current = row(&app, &org, CheckId::StorageAnonymousBlobAccess, &account).await;
    let detail = app
        .expect(
            &org.token,
            Method::GET,
            &format!("/api/v1/evidence/{}", current["id"].as_str().expect("id")),
            None,
            StatusCode::OK,
        )
        .await;
    let history = detail["history"].as_array().expect("history");
    assert_eq!(history.len(), 3, "{detail}");
    for pair in history.windows(2) {
        assert_eq!(
            pair[0]["valid_to"], pair[1]["observed_at"],
            "no gap, no overlap"
        );
    }
    assert_eq!(history[0]["fingerprint"], history[2]["fingerprint"]);
    assert_ne!(
        history[0]["id"], history[2]["id"],
        "a change back is a new interval"
    );
    assert_ne!(
        history[0]["last_observed_at"], history[0]["observed_at"],
        "seen again unchanged: extended"
    );
    assert!(history[2]["valid_to"].is_null());
    let controls = detail["controls"].as_array().expect("controls");
    assert_eq!(controls, &vec![json!("CC6.1"), json!("CC6.6")]);

    // A deleted account's intervals close; none open.
    app.sim
        .control_ok(
            Method::DELETE,
            &format!("/_sim/resources?id={account}"),
            json!(null),
        )
        .await;
    let gone = sync_ok(&app, &org, &conn).await;
    assert_eq!(
        cloudkeep_testkit::report(&gone).total("storage", "closed"),
        6
    );
    assert!(
        subjects(&app, &org, CheckId::StorageHttpsOnly)
            .await
            .iter()
            .all(|s| *s != account)
    );
    let history = evidence(&app, &org, &format!("subject={account}&current=false")).await;
    assert!(history.iter().all(|e| !e["valid_to"].is_null()));
}

#[tokio::test]
async fn filters_are_typed_and_answered_within_the_organisation() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    let conn = synced(&app, &org, "collector").await;
    let (status, body) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/evidence?result=maybe",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body.to_string().contains("not_collected"),
        "names what is allowed: {body}"
    );
    let (status, _) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/evidence?control=CC9.9",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let cc71 = evidence(&app, &org, "control=CC7.1").await;
    assert!(!cc71.is_empty());
    assert!(cc71.iter().all(|e| e["collector"] == "defender"));
    let none = evidence(&app, &org, "control=CC7.1&check=storage.https_only").await;
    assert!(none.is_empty());
    let fails = evidence(&app, &org, "check=storage.https_only&result=fail").await;
    assert!(!fails.is_empty() && fails.iter().all(|e| e["result"] == "fail"));
    let sub_row = app
        .expect(
            &org.token,
            Method::GET,
            &format!("/api/v1/connections/{conn}"),
            None,
            StatusCode::OK,
        )
        .await["subscriptions"][1]["id"]
        .as_str()
        .expect("sub")
        .to_string();
    let one_sub = evidence(&app, &org, &format!("subscription={sub_row}")).await;
    assert!(
        !one_sub.is_empty()
            && one_sub
                .iter()
                .all(|e| e["subscription_id"] == sub_row.as_str())
    );
    assert_eq!(
        evidence(&app, &org, &format!("connection={conn}"))
            .await
            .len(),
        evidence(&app, &org, "").await.len()
    );
    let later = evidence(&app, &org, "observed_from=2999-01-01T00:00:00Z").await;
    assert!(later.is_empty());
    let earlier = evidence(&app, &org, "observed_to=2000-01-01T00:00:00Z").await;
    assert!(earlier.is_empty());
    let now = (chrono::Utc::now() + chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let held = evidence(
        &app,
        &org,
        &format!("observed_from=2000-01-01T00:00:00Z&observed_to={now}"),
    )
    .await;
    assert_eq!(
        held.len(),
        evidence(&app, &org, "current=false").await.len()
    );
    let (status, _) = app
        .call(
            &org.token,
            Method::GET,
            "/api/v1/evidence?observed_from=2020-01-02T00:00:00Z&observed_to=2020-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Another organisation's ids find nothing.
    let other = app.org("globex").await;
    assert!(
        evidence(&app, &other, &format!("connection={conn}"))
            .await
            .is_empty()
    );
    assert!(evidence(&app, &other, "").await.is_empty());
    let (status, _) = app
        .call(
            &other.token,
            Method::GET,
            &format!("/api/v1/evidence/{}", cc71[0]["id"].as_str().expect("id")),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn auditors_and_viewers_read_evidence_only_admins_change_the_mapping() {
    let app = spawn_app().await;
    let org = app.org("acme").await;
    synced(&app, &org, "collector").await;
    let some = evidence(&app, &org, "").await[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let auditor = app.member(&org, Role::Auditor).await;
    let viewer = app.member(&org, Role::Viewer).await;
    let editor = app.member(&org, Role::Editor).await;
    let admin = app.member(&org, Role::Admin).await;
    let reads = [
        "/api/v1/evidence".to_string(),
        format!("/api/v1/evidence/{some}"),
        "/api/v1/controls".into(),
        "/api/v1/controls/CC6.6".into(),
        "/api/v1/control-mapping".into(),
        "/api/v1/settings/evidence".into(),
    ];
    for token in [&auditor, &viewer, &editor, &admin, &org.token] {
        for path in &reads {
            app.expect(token, Method::GET, path, None, StatusCode::OK)
                .await;
        }
    }
    let change = json!({"control": "CC6.1", "remove": ["rbac.guest_users"]});
    let threshold = json!({"secure_score_threshold": 0.8});
    for token in [&auditor, &viewer, &editor] {
        app.expect(
            token,
            Method::PATCH,
            "/api/v1/control-mapping",
            Some(change.clone()),
            StatusCode::FORBIDDEN,
        )
        .await;
        app.expect(
            token,
            Method::PATCH,
            "/api/v1/settings/evidence",
            Some(threshold.clone()),
            StatusCode::FORBIDDEN,
        )
        .await;
        app.expect(
            token,
            Method::GET,
            "/api/v1/webhooks",
            None,
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    // Alerts are operations: viewers read them, auditors do not.
    app.expect(
        &auditor,
        Method::GET,
        "/api/v1/alerts",
        None,
        StatusCode::FORBIDDEN,
    )
    .await;
    app.expect(&viewer, Method::GET, "/api/v1/alerts", None, StatusCode::OK)
        .await;
    let mapping = app
        .expect(
            &admin,
            Method::PATCH,
            "/api/v1/control-mapping",
            Some(change),
            StatusCode::OK,
        )
        .await;
    let cc61 = &mapping["controls"][0];
    assert_eq!(cc61["control"], "CC6.1");
    assert_eq!(cc61["removed"], json!(["rbac.guest_users"]));
    app.expect(
        &admin,
        Method::PATCH,
        "/api/v1/settings/evidence",
        Some(threshold),
        StatusCode::OK,
    )
    .await;
    let audit = app
        .expect(
            &org.token,
            Method::GET,
            "/api/v1/audit?action=control_mapping.changed",
            None,
            StatusCode::OK,
        )
        .await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1));
    let control = app
        .expect(
            &auditor,
            Method::GET,
            "/api/v1/controls/CC6.1",
            None,
            StatusCode::OK,
        )
        .await;
    assert!(
        control["check_coverage"]
            .as_array()
            .expect("checks")
            .iter()
            .all(|c| c["check"] != "rbac.guest_users"),
        "the mapping applies to coverage at once"
    );
    let (status, _) = app
        .call(&auditor, Method::GET, "/api/v1/controls/CC1.1", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_control_takes_the_worst_state_of_its_evidence() {
    let clock = cloudkeep_domain::ManualClock::starting_now();
    let app = crate::harness::spawn_app_on(&clock).await;
    let org = app.org("acme").await;
    let conn = app.connect(&org, "collector").await;
    let id = conn["id"].as_str().expect("id").to_string();
    // CC7.1 narrowed to one check, for this story.
    app.expect(
        &org.token,
        Method::PATCH,
        "/api/v1/control-mapping",
        Some(json!({"control": "CC7.1", "remove": ["defender.secure_score", "defender.score_control", "defender.plan_key_vault", "defender.plan_cspm"]})),
        StatusCode::OK,
    )
    .await;
    let plan = |i: usize, tier: &str| {
        let app = &app;
        let sub = app.subscription_ids()[i].clone();
        let tier = tier.to_string();
        async move {
            app.sim
                .control_ok(
                    Method::PUT,
                    &format!("/_sim/pricings/{sub}/StorageAccounts"),
                    json!({ "pricingTier": tier }),
                )
                .await;
        }
    };
    for i in 0..3 {
        plan(i, "Standard").await;
    }
    let state = |expected: &'static str| {
        let app = &app;
        let org = &org;
        async move {
            let c = app
                .expect(
                    &org.token,
                    Method::GET,
                    "/api/v1/controls/CC7.1",
                    None,
                    StatusCode::OK,
                )
                .await;
            assert_eq!(c["coverage"]["state"], expected, "{}", c["coverage"]);
            c["coverage"].clone()
        }
    };
    let map = |change: Value| {
        let app = &app;
        let org = &org;
        async move {
            app.expect(
                &org.token,
                Method::PATCH,
                "/api/v1/control-mapping",
                Some(change),
                StatusCode::OK,
            )
            .await;
        }
    };
    let never = state("not_collected").await;
    assert_eq!(
        never["not_collected"], 3,
        "never synced: one item per subscription"
    );
    sync_ok(&app, &org, &id).await;
    let passing = state("passing").await;
    assert_eq!(
        (&passing["evidence_coverage"], &passing["pass_rate"]),
        (&json!(1.0), &json!(1.0))
    );
    // Not collected beats passing.
    map(json!({"control": "CC7.1", "add": ["rbac.guest_users"]})).await;
    let nc = state("not_collected").await;
    assert_eq!(nc["evidence_coverage"], 0.5, "3 fresh of 6 applicable");
    // Failing beats not collected.
    plan(1, "Free").await;
    clock.advance(Duration::hours(1));
    sync_ok(&app, &org, &id).await;
    let failing = state("failing").await;
    assert_eq!(failing["failing"], 1);
    // Stale: past the threshold, pass and fail alike count as stale...
    map(json!({"control": "CC7.1", "remove": ["rbac.guest_users"]})).await;
    clock.advance(Duration::hours(49));
    let stale = state("stale").await;
    assert_eq!((&stale["stale"], &stale["fresh"]), (&json!(3), &json!(0)));
    assert_eq!(stale["pass_rate"], Value::Null, "nothing fresh to pass");
    // ...and not collected beats stale.
    map(json!({"control": "CC7.1", "add": ["rbac.guest_users"]})).await;
    state("not_collected").await;
}
