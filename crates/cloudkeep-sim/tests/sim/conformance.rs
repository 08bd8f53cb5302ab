//! Conformance with Microsoft's official examples (`../shared/azure-examples`
//! and the crate's own `tests/data/azure-examples`, see its SOURCES.md):
//! for every example whose operation the simulator serves, the simulator's
//! answer to the equivalent request has every field of the example's
//! response at the same path with the same JSON type.

use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::harness::{Sim, start};

fn examples_dir() -> Option<PathBuf> {
    let dir = match std::env::var("CLOUDKEEP_SHARED_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    let examples = dir.join("azure-examples");
    if examples.is_dir() {
        return Some(examples);
    }
    assert!(
        std::env::var("CLOUDKEEP_SHARED_DIR").is_err(),
        "CLOUDKEEP_SHARED_DIR is set but {} is missing",
        examples.display()
    );
    None
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Folds the elements of an array into one shape: objects by key union,
/// arrays index by index, scalars keeping the first non-null.
fn merge(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut out: Map<String, Value> = x.clone();
            for (k, v) in y {
                let merged = match out.get(k) {
                    Some(existing) => merge(existing, v),
                    None => v.clone(),
                };
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(x), Value::Array(y)) => {
            let n = x.len().max(y.len());
            Value::Array(
                (0..n)
                    .map(|i| match (x.get(i), y.get(i)) {
                        (Some(p), Some(q)) => merge(p, q),
                        (Some(p), None) | (None, Some(p)) => p.clone(),
                        (None, None) => Value::Null,
                    })
                    .collect(),
            )
        }
        (Value::Null, other) => other.clone(),
        (this, _) => this.clone(),
    }
}

/// Field names whose values are maps with data-dependent keys.
const MAPS: &[&str] = &["tags", "webhookProperties"];

/// The examples the simulator's own operations added (issue #11).
fn own_examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/azure-examples")
}

fn conforms(example: &Value, ours: &Value, path: &str, errors: &mut Vec<String>) {
    match example {
        // A null in an example says nothing about the type.
        Value::Null => {}
        Value::Object(e) => {
            let Some(o) = ours.as_object() else {
                errors.push(format!("{path}: expected object, got {}", type_name(ours)));
                return;
            };
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                match o.get(k) {
                    None => errors.push(format!("{p}: missing")),
                    Some(ov) if MAPS.contains(&k.as_str()) => {
                        if !ov.is_object() {
                            errors.push(format!("{p}: expected a map, got {}", type_name(ov)));
                        }
                    }
                    Some(ov) => conforms(ev, ov, &p, errors),
                }
            }
        }
        Value::Array(e) => {
            let Some(o) = ours.as_array() else {
                errors.push(format!("{path}: expected array, got {}", type_name(ours)));
                return;
            };
            let Some(shape) = o.iter().cloned().reduce(|a, b| merge(&a, &b)) else {
                return;
            };
            for ev in e {
                match (ev, &shape) {
                    (Value::Array(row), Value::Array(shape_row)) => {
                        for (i, cell) in row.iter().enumerate() {
                            match shape_row.get(i) {
                                Some(s) => conforms(cell, s, &format!("{path}[][{i}]"), errors),
                                None => errors.push(format!("{path}[][{i}]: missing")),
                            }
                        }
                    }
                    _ => conforms(ev, &shape, &format!("{path}[]"), errors),
                }
            }
        }
        _ => {
            if type_name(example) != type_name(ours) {
                errors.push(format!(
                    "{path}: expected {}, got {} ({ours})",
                    type_name(example),
                    type_name(ours)
                ));
            }
        }
    }
}

fn example(dir: &std::path::Path, name: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The example's response body for `status`.
fn response(ex: &Value, status: &str) -> Value {
    ex["responses"][status]["body"].clone()
}

/// One example and the equivalent request.
struct Case {
    file: &'static str,
    status: &'static str,
    /// Sent with the Owner user's token rather than the collector's.
    as_owner: bool,
    method: Method,
    path: String,
    body: Option<Value>,
    /// Top-level fields whose presence depends on data size (`nextLink`).
    exempt: &'static [&'static str],
    /// From the crate's own examples rather than the shared ones.
    own: bool,
    /// Sent to this vault's data plane (`{vault}.vault.azure.net`).
    vault: Option<String>,
}

fn case(
    file: &'static str,
    status: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
) -> Case {
    Case {
        file,
        status,
        as_owner: false,
        method,
        path,
        body,
        exempt: &[],
        own: false,
        vault: None,
    }
}

/// A GET of one of the crate's own examples.
fn own(file: &'static str, path: String) -> Case {
    Case {
        own: true,
        ..case(file, "200", Method::GET, path, None)
    }
}

async fn check(sim: &Sim, token: &str, dir: &std::path::Path, c: Case) -> Vec<String> {
    let ex = if c.own {
        example(&own_examples_dir(), c.file)
    } else {
        example(dir, c.file)
    };
    let mut expected = response(&ex, c.status);
    if let Some(obj) = expected.as_object_mut() {
        for e in c.exempt {
            obj.remove(*e);
        }
    }
    let r = match &c.vault {
        Some(v) => sim.vault_get(v, Some(token), &c.path).await,
        None => sim.arm(token, c.method, &c.path, c.body).await,
    };
    let want: u16 = c.status.parse().expect("status");
    if r.status.as_u16() != want {
        return vec![format!(
            "{}: {} answered {} (wanted {want}): {}",
            c.file, c.path, r.status, r.body
        )];
    }
    let mut errors = Vec::new();
    conforms(&expected, &r.body, c.file, &mut errors);
    errors
}

#[tokio::test]
async fn simulator_answers_conform_to_microsofts_examples() {
    let Some(dir) = examples_dir() else {
        // In CI the examples must be there: a skip would pass unseen.
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI=true but ../shared/azure-examples is missing: set CLOUDKEEP_SHARED_DIR"
        );
        eprintln!("skipped: ../shared/azure-examples not found (set CLOUDKEEP_SHARED_DIR)");
        return;
    };
    let sim = start().await;
    let token = sim.token("collector").await;
    let subs = sim.subscriptions();
    let sub = subs[0].clone();
    let scope = format!("/subscriptions/{sub}");
    let (_, resources) = sim
        .get_all(&token, &format!("{scope}/resources?api-version=2025-04-01"))
        .await;
    let tagged = resources
        .iter()
        .find(|r| r["tags"].as_object().is_some_and(|t| !t.is_empty()))
        .and_then(|r| r["id"].as_str())
        .expect("a tagged resource")
        .to_string();

    // Vaults with keys (an RSA key for Keys_Get) and secrets, in any subscription.
    let mut vault_with_secrets = None;
    let mut rsa_key = None;
    let mut vault_with_keys = None;
    for s in &subs {
        let (_, vaults) = sim
            .get_all(
                &token,
                &format!(
                    "/subscriptions/{s}/providers/Microsoft.KeyVault/vaults?api-version=2024-11-01"
                ),
            )
            .await;
        for v in vaults {
            let id = v["id"].as_str().expect("id").to_string();
            let (_, keys) = sim
                .get_all(&token, &format!("{id}/keys?api-version=2024-11-01"))
                .await;
            if keys.len() >= 2 && vault_with_keys.is_none() {
                vault_with_keys = Some(id.clone());
            }
            if let Some(k) = keys.iter().find(|k| k["properties"]["kty"] == "RSA") {
                rsa_key.get_or_insert(k["id"].as_str().expect("id").to_string());
            }
            let (_, secrets) = sim
                .get_all(&token, &format!("{id}/secrets?api-version=2024-11-01"))
                .await;
            if secrets.len() >= 2 && vault_with_secrets.is_none() {
                vault_with_secrets = Some(id.clone());
            }
        }
    }
    let vault_sub = |id: &str| id.split('/').nth(2).unwrap_or("").to_string();
    let owner = sim.user_token("partial-owner").await;
    let no_access = sim.sp("no-access");
    let graph_body = |ex: &Value| {
        let mut q = ex["parameters"]["query"].clone();
        q["subscriptions"] = json!(subs);
        q["query"] =
            json!("Resources | where name contains 'prod' | project id, name, type, location");
        q
    };
    let graph_first = example(&dir, "ResourceGraph_Resources_FirstPage.json");
    let first_page = sim
        .arm(
            &token,
            Method::POST,
            "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01",
            Some(graph_body(&graph_first)),
        )
        .await;
    let mut next_body = graph_body(&example(&dir, "ResourceGraph_Resources_NextPage.json"));
    next_body["options"]["$skipToken"] = first_page.body["$skipToken"].clone();
    let grouping =
        example(&dir, "Query_Usage_SubscriptionGrouping.json")["parameters"]["parameters"].clone();
    let daily =
        example(&dir, "Query_Usage_SubscriptionDailyFilter.json")["parameters"]["parameters"]
            .clone();
    let tags_put =
        example(&dir, "Tags_CreateOrUpdateAtScope.json")["parameters"]["parameters"].clone();
    let tags_patch = example(&dir, "Tags_UpdateAtScope.json")["parameters"]["parameters"].clone();
    let ra_create = {
        let mut b =
            example(&dir, "RoleAssignments_Create_Subscription.json")["parameters"]["parameters"]
                .clone();
        b["properties"]["roleDefinitionId"] = json!(format!(
            "{scope}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"
        ));
        b["properties"]["principalId"] = json!(no_access.object_id);
        b["properties"]["principalType"] = json!("ServicePrincipal");
        b
    };
    let reader_def = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
    let rsa_key = rsa_key.expect("an RSA key");
    let keys_vault = vault_with_keys.expect("a vault with keys");
    let secrets_vault = vault_with_secrets.expect("a vault with secrets");

    let cases: Vec<Case> = vec![
        Case {
            exempt: &["nextLink"],
            ..case(
                "Subscriptions_List.json",
                "200",
                Method::GET,
                "/subscriptions?api-version=2022-12-01".into(),
                None,
            )
        },
        Case {
            exempt: &["nextLink"],
            ..case(
                "Tenants_List.json",
                "200",
                Method::GET,
                "/tenants?api-version=2022-12-01".into(),
                None,
            )
        },
        case(
            "Tags_GetAtScope.json",
            "200",
            Method::GET,
            format!("{tagged}/providers/Microsoft.Resources/tags/default?api-version=2025-04-01"),
            None,
        ),
        case(
            "Tags_CreateOrUpdateAtScope.json",
            "200",
            Method::PUT,
            format!("{tagged}/providers/Microsoft.Resources/tags/default?api-version=2025-04-01"),
            Some(tags_put),
        ),
        case(
            "Tags_UpdateAtScope.json",
            "200",
            Method::PATCH,
            format!("{tagged}/providers/Microsoft.Resources/tags/default?api-version=2025-04-01"),
            Some(tags_patch.clone()),
        ),
        case(
            "Tags_UpdateAtScope_Subscription.json",
            "200",
            Method::PATCH,
            format!("{scope}/providers/Microsoft.Resources/tags/default?api-version=2025-04-01"),
            Some(tags_patch),
        ),
        case(
            "RoleAssignments_ListForScope.json",
            "200",
            Method::GET,
            format!(
                "{scope}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01"
            ),
            None,
        ),
        Case {
            as_owner: true,
            ..case(
                "RoleAssignments_Create_Subscription.json",
                "201",
                Method::PUT,
                format!(
                    "{scope}/providers/Microsoft.Authorization/roleAssignments/05c5a614-a7d6-4502-b150-c2fb455033ff?api-version=2022-04-01"
                ),
                Some(ra_create),
            )
        },
        case(
            "RoleDefinitions_GetById.json",
            "200",
            Method::GET,
            format!(
                "/providers/Microsoft.Authorization/roleDefinitions/{reader_def}?api-version=2022-04-01"
            ),
            None,
        ),
        case(
            "RoleDefinitions_Get.json",
            "200",
            Method::GET,
            format!(
                "{scope}/providers/Microsoft.Authorization/roleDefinitions/{reader_def}?api-version=2022-04-01"
            ),
            None,
        ),
        case(
            "Query_Usage_SubscriptionGrouping.json",
            "200",
            Method::POST,
            format!("{scope}/providers/Microsoft.CostManagement/query?api-version=2025-03-01"),
            Some(grouping),
        ),
        case(
            "Query_Usage_SubscriptionDailyFilter.json",
            "200",
            Method::POST,
            format!("{scope}/providers/Microsoft.CostManagement/query?api-version=2025-03-01"),
            Some(daily),
        ),
        case(
            "SecureScores_List.json",
            "200",
            Method::GET,
            format!("{scope}/providers/Microsoft.Security/secureScores?api-version=2020-01-01"),
            None,
        ),
        case(
            "SecureScoreControls_List.json",
            "200",
            Method::GET,
            format!(
                "{scope}/providers/Microsoft.Security/secureScoreControls?api-version=2020-01-01"
            ),
            None,
        ),
        case(
            "StorageAccounts_List.json",
            "200",
            Method::GET,
            format!("{scope}/providers/Microsoft.Storage/storageAccounts?api-version=2025-01-01"),
            None,
        ),
        case(
            "Vaults_ListBySubscription.json",
            "200",
            Method::GET,
            format!(
                "/subscriptions/{}/providers/Microsoft.KeyVault/vaults?api-version=2024-11-01&$top=1",
                vault_sub(&keys_vault)
            ),
            None,
        ),
        case(
            "Keys_List.json",
            "200",
            Method::GET,
            format!("{keys_vault}/keys?api-version=2024-11-01"),
            None,
        ),
        case(
            "Keys_Get.json",
            "200",
            Method::GET,
            format!("{rsa_key}?api-version=2024-11-01"),
            None,
        ),
        case(
            "Secrets_List.json",
            "200",
            Method::GET,
            format!("{secrets_vault}/secrets?api-version=2024-11-01"),
            None,
        ),
        case(
            "Partner_Create.json",
            "200",
            Method::PUT,
            "/providers/Microsoft.ManagementPartner/partners/123456?api-version=2018-02-01".into(),
            None,
        ),
        case(
            "Partners_Get_NoPartnerId.json",
            "200",
            Method::GET,
            "/providers/Microsoft.ManagementPartner/partners?api-version=2018-02-01".into(),
            None,
        ),
        case(
            "ResourceGraph_Resources_FirstPage.json",
            "200",
            Method::POST,
            "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01".into(),
            Some(graph_body(&graph_first)),
        ),
        case(
            "ResourceGraph_Resources_NextPage.json",
            "200",
            Method::POST,
            "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01".into(),
            Some(next_body),
        ),
    ];
    let mut cases = cases;
    cases.extend(own_cases(&sim, &token, &subs).await);
    let served: std::collections::HashSet<&str> = cases.iter().map(|c| c.file).collect();
    // Examples of operations the simulator does not serve (exports).
    let not_served = ["Exports_CreateOrUpdate_Subscription.json"];
    for d in [dir.clone(), own_examples_dir()] {
        for entry in std::fs::read_dir(&d).expect("examples") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .to_string();
            if name.ends_with(".json") {
                assert!(
                    served.contains(name.as_str()) || not_served.contains(&name.as_str()),
                    "{name} is neither checked nor listed as not served"
                );
            }
        }
    }
    let vault_token = sim
        .token_scoped("collector", "https://vault.azure.net/.default")
        .await;
    let mut failures = Vec::new();
    for c in cases {
        let t = if c.as_owner {
            &owner
        } else if c.vault.is_some() {
            &vault_token
        } else {
            &token
        };
        failures.extend(check(&sim, t, &dir, c).await);
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(StatusCode::OK, first_page.status);
}

/// Cases for the operations issue #11 added, with the data each needs.
async fn own_cases(sim: &Sim, token: &str, subs: &[String]) -> Vec<Case> {
    let sub = &subs[0];
    let scope = format!("/subscriptions/{sub}");
    let sec = |what: &str, v: &str| {
        format!("{scope}/providers/Microsoft.Security/{what}?api-version={v}")
    };
    // Storage: an account with versioning (change feed) for BlobServices_Get.
    let mut versioned = None;
    let mut any_account = None;
    for s in subs {
        let (_, accounts) = sim
            .get_all(
                token,
                &format!("/subscriptions/{s}/providers/Microsoft.Storage/storageAccounts?api-version=2025-01-01"),
            )
            .await;
        for a in accounts {
            let id = a["id"].as_str().expect("id").to_string();
            any_account.get_or_insert(id.clone());
            let blob = sim
                .get(
                    token,
                    &format!("{id}/blobServices/default?api-version=2025-01-01"),
                )
                .await;
            let p = &blob.body["properties"];
            if p["isVersioningEnabled"] == true && p["deleteRetentionPolicy"]["enabled"] == true {
                versioned.get_or_insert(id);
            }
        }
    }
    // Key Vault's data plane: Key Vault Reader for the collector on every
    // subscription, then a reachable RBAC vault with a rotating key and one
    // with a secret that has a content type.
    let collector = sim.sp("collector");
    for s in subs {
        let (status, _) = sim
            .control(
                Method::POST,
                "/_sim/role-assignments",
                json!({"principal_id": collector.object_id, "role": "Key Vault Reader", "scope": format!("/subscriptions/{s}")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let mut rotating = None;
    let mut typed_secrets = None;
    let mut rsa = None;
    for s in subs {
        let (_, vaults) = sim
            .get_all(
                token,
                &format!(
                    "/subscriptions/{s}/providers/Microsoft.KeyVault/vaults?api-version=2024-11-01"
                ),
            )
            .await;
        for v in vaults {
            let p = &v["properties"];
            if p["enableRbacAuthorization"] != true || p["publicNetworkAccess"] == "Disabled" {
                continue;
            }
            let name = v["name"].as_str().expect("name").to_string();
            let id = v["id"].as_str().expect("id");
            let (_, keys) = sim
                .get_all(token, &format!("{id}/keys?api-version=2024-11-01"))
                .await;
            for k in &keys {
                let key = k["name"].as_str().expect("key").to_string();
                let rotates = k["properties"]["rotationPolicy"]["lifetimeActions"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["action"]["type"] == "rotate"))
                    && k["properties"]["rotationPolicy"]["attributes"]["expiryTime"].is_string();
                if rotates {
                    rotating.get_or_insert((name.clone(), key.clone()));
                }
                if k["properties"]["kty"] == "RSA" {
                    rsa.get_or_insert((name.clone(), key));
                }
            }
            let (_, secrets) = sim
                .get_all(token, &format!("{id}/secrets?api-version=2024-11-01"))
                .await;
            if secrets
                .iter()
                .any(|x| x["properties"]["contentType"].is_string())
            {
                typed_secrets.get_or_insert(name);
            }
        }
    }
    let (kv, rotating_key) = rotating.expect("a reachable RBAC vault with a rotating key");
    let (rsa_vault, rsa_key) = rsa.expect("a reachable RBAC vault with an RSA key");
    let typed = typed_secrets.expect("a reachable RBAC vault with a typed secret");
    let data = |file: &'static str, vault: &str, path: String| Case {
        exempt: &["nextLink"],
        vault: Some(vault.to_string()),
        ..own(file, path)
    };
    vec![
        own("Pricings_List.json", sec("pricings", "2024-01-01")),
        own("Assessments_List.json", sec("assessments", "2021-06-01")),
        own("Settings_List.json", sec("settings", "2022-05-01")),
        own(
            "SecurityContacts_List.json",
            sec("securityContacts", "2023-12-01-preview"),
        ),
        own(
            "AutoProvisioningSettings_List.json",
            sec("autoProvisioningSettings", "2017-08-01-preview"),
        ),
        own(
            "JitNetworkAccessPolicies_List.json",
            sec("jitNetworkAccessPolicies", "2020-01-01"),
        ),
        own(
            "SubscriptionDiagnosticSettings_List.json",
            format!(
                "{scope}/providers/Microsoft.Insights/diagnosticSettings?api-version=2021-05-01-preview"
            ),
        ),
        own(
            "DiagnosticSettings_List.json",
            format!(
                "{}/providers/Microsoft.Insights/diagnosticSettings?api-version=2021-05-01-preview",
                first_vault_with_archive(sim, token, sub).await
            ),
        ),
        own(
            "ActivityLogAlerts_ListBySubscriptionId.json",
            format!(
                "{scope}/providers/Microsoft.Insights/activityLogAlerts?api-version=2020-10-01"
            ),
        ),
        own(
            "BlobServices_Get.json",
            format!(
                "{}/blobServices/default?api-version=2025-01-01",
                versioned.expect("an account with versioning")
            ),
        ),
        own(
            "FileServices_Get.json",
            format!(
                "{}/fileServices/default?api-version=2025-01-01",
                any_account.expect("an account")
            ),
        ),
        own(
            "Subscriptions_ListLocations.json",
            format!("{scope}/locations?api-version=2022-12-01"),
        ),
        data(
            "KeyVault_DataPlane_GetKeys.json",
            &kv,
            "/keys?api-version=7.5&maxresults=1".into(),
        ),
        data(
            "KeyVault_DataPlane_GetKeyVersions.json",
            &kv,
            format!("/keys/{rotating_key}/versions?api-version=7.5"),
        ),
        data(
            "KeyVault_DataPlane_GetKey.json",
            &rsa_vault,
            format!("/keys/{rsa_key}?api-version=7.5"),
        ),
        data(
            "KeyVault_DataPlane_GetSecrets.json",
            &typed,
            "/secrets?api-version=7.5".into(),
        ),
        Case {
            own: false,
            ..data(
                "KeyVault_DataPlane_GetKeyRotationPolicy.json",
                &kv,
                format!("/keys/{rotating_key}/rotationpolicy?api-version=7.5"),
            )
        },
    ]
}

/// The vault of `sub` whose diagnostic setting has every destination.
async fn first_vault_with_archive(sim: &Sim, token: &str, sub: &str) -> String {
    let (_, vaults) = sim
        .get_all(
            token,
            &format!(
                "/subscriptions/{sub}/providers/Microsoft.KeyVault/vaults?api-version=2024-11-01"
            ),
        )
        .await;
    for v in vaults {
        let id = v["id"].as_str().expect("id").to_string();
        let r = sim
            .get(token, &format!("{id}/providers/Microsoft.Insights/diagnosticSettings?api-version=2021-05-01-preview"))
            .await;
        if r.body["value"][0]["properties"]["storageAccountId"].is_string() {
            return id;
        }
    }
    panic!("no vault in {sub} archives its logs");
}

#[test]
fn the_comparison_catches_missing_fields_and_wrong_types() {
    let mut errors = Vec::new();
    conforms(
        &json!({"a": 1, "b": {"c": "x"}, "d": [{"e": true}]}),
        &json!({"a": 2, "b": {"c": "y"}, "d": [{"e": false}]}),
        "t",
        &mut errors,
    );
    assert!(errors.is_empty(), "{errors:?}");
    conforms(
        &json!({"a": 1, "b": {"c": "x"}}),
        &json!({"a": "1", "b": {}}),
        "t",
        &mut errors,
    );
    assert_eq!(
        errors,
        vec!["t.a: expected number, got string (\"1\")", "t.b.c: missing"]
    );
}
