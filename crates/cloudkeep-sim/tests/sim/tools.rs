//! What third-party tools read (issue #11): Graph domains, locations,
//! Defender, Monitor, storage services, Key Vault's data plane, and the
//! scenario's identity and secure-score figures.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{Sim, start};

const GRAPH: &str = "https://graph.microsoft.com/.default";
const VAULT: &str = "https://vault.azure.net/.default";

async fn all_of(sim: &Sim, token: &str, path: impl Fn(&str) -> String) -> Vec<Value> {
    let mut out = Vec::new();
    for s in sim.subscriptions() {
        out.extend(sim.get_all(token, &path(&s)).await.1);
    }
    out
}

#[tokio::test]
async fn graph_serves_the_tenants_domains_and_its_own_404() {
    let sim = start().await;
    let token = sim.token_scoped("collector", GRAPH).await;
    assert_eq!(
        crate::harness::claims(&token)["aud"],
        "https://graph.microsoft.com"
    );
    for path in ["/v1.0/domains", "/v1.0//domains"] {
        let r = sim.get(&token, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        let domains = r.body["value"].as_array().expect("value");
        let initial: Vec<&Value> = domains.iter().filter(|d| d["isInitial"] == true).collect();
        assert_eq!(initial.len(), 1);
        assert_eq!(initial[0]["id"], sim.tenant()["default_domain"]);
        assert_eq!(domains.iter().filter(|d| d["isDefault"] == true).count(), 1);
        assert!(domains.iter().any(|d| d["isVerified"] == false));
        assert!(
            domains
                .iter()
                .any(|d| d["authenticationType"] == "Federated")
        );
    }
    // By host name, as a client configured for graph.microsoft.com sends it.
    let r = sim
        .client_for("graph.microsoft.com")
        .get(format!(
            "https://graph.microsoft.com:{}/v1.0/domains",
            sim.port()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("graph by host");
    assert_eq!(r.status(), StatusCode::OK);
    let r = sim.get(&token, "/v1.0/users").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.body["error"]["code"], "Request_ResourceNotFound");
    assert!(
        r.body["error"]["innerError"]["request-id"].is_string(),
        "{}",
        r.body
    );
    // An ARM token is not a Graph token.
    let arm = sim.token("collector").await;
    let r = sim.get(&arm, "/v1.0/domains").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"]["code"], "InvalidAuthenticationToken");
}

#[tokio::test]
async fn locations_carry_region_metadata() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = &sim.subscriptions()[0];
    let r = sim
        .get(
            &token,
            &format!("/subscriptions/{sub}/locations?api-version=2022-12-01"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let regions = r.body["value"].as_array().expect("value");
    let weu = regions
        .iter()
        .find(|l| l["name"] == "westeurope")
        .expect("westeurope");
    assert_eq!(weu["metadata"]["pairedRegion"][0]["name"], "northeurope");
    assert_eq!(
        weu["availabilityZoneMappings"].as_array().map(Vec::len),
        Some(3)
    );
    assert!(
        regions
            .iter()
            .any(|l| l["metadata"]["regionType"] == "Logical")
    );
    let r = sim
        .get(
            &token,
            &format!("/subscriptions/{sub}/locations?api-version=2015-11-01"),
        )
        .await;
    assert_eq!(r.error_code(), "InvalidApiVersionParameter");
}

fn sec(sub: &str, what: &str, v: &str) -> String {
    format!("/subscriptions/{sub}/providers/Microsoft.Security/{what}?api-version={v}")
}

#[tokio::test]
async fn defender_plans_contacts_and_settings_differ_by_subscription() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let subs = sim.subscriptions();
    let tier = |plans: &Value, name: &str| {
        plans["value"]
            .as_array()
            .and_then(|v| v.iter().find(|p| p["name"] == name))
            .map(|p| {
                p["properties"]["pricingTier"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .unwrap_or_default()
    };
    let p0 = sim
        .get(&token, &sec(&subs[0], "pricings", "2024-01-01"))
        .await
        .body;
    let p2 = sim
        .get(&token, &sec(&subs[2], "pricings", "2024-01-01"))
        .await
        .body;
    for plan in ["StorageAccounts", "KeyVaults", "CloudPosture"] {
        assert_eq!(tier(&p0, plan), "Standard", "{plan}");
        assert_eq!(tier(&p2, plan), "Free", "{plan}");
    }
    let storage = p0["value"]
        .as_array()
        .expect("plans")
        .iter()
        .find(|p| p["name"] == "StorageAccounts")
        .expect("plan");
    assert_eq!(storage["properties"]["subPlan"], "DefenderForStorageV2");
    let one = sim
        .get(&token, &format!("/subscriptions/{}/providers/Microsoft.Security/pricings/KeyVaults?api-version=2023-01-01", subs[0]))
        .await;
    assert_eq!(one.body["properties"]["pricingTier"], "Standard");

    let c0 = sim
        .get(
            &token,
            &sec(&subs[0], "securityContacts", "2023-12-01-preview"),
        )
        .await;
    let c2 = sim
        .get(
            &token,
            &sec(&subs[2], "securityContacts", "2023-12-01-preview"),
        )
        .await;
    assert_eq!(c0.body["value"][0]["properties"]["isEnabled"], true);
    assert_eq!(c2.body["value"], json!([]), "a contact is missing");
    let old = sim
        .get(
            &token,
            &sec(&subs[0], "securityContacts", "2017-08-01-preview"),
        )
        .await;
    assert_eq!(
        old.body["value"][0]["properties"]["alertNotifications"],
        "On"
    );

    let settings = sim
        .get(&token, &sec(&subs[0], "settings", "2022-05-01"))
        .await;
    let names: Vec<&str> = settings.body["value"]
        .as_array()
        .expect("settings")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["MCAS", "WDATP", "Sentinel"]);
    let auto = sim
        .get(
            &token,
            &sec(&subs[0], "autoProvisioningSettings", "2017-08-01-preview"),
        )
        .await;
    assert_eq!(auto.body["value"][0]["properties"]["autoProvision"], "On");
    let iot = sim
        .get(&token, &sec(&subs[0], "iotSecuritySolutions", "2019-08-01"))
        .await;
    assert_eq!(
        (iot.status, iot.body["value"].clone()),
        (StatusCode::OK, json!([]))
    );
    let jit = sim
        .get(
            &token,
            &sec(&subs[0], "jitNetworkAccessPolicies", "2020-01-01"),
        )
        .await;
    assert!(
        !jit.body["value"][0]["properties"]["virtualMachines"]
            .as_array()
            .expect("vms")
            .is_empty()
    );
    let r = sim
        .get(&token, &sec(&subs[0], "pricings", "2099-01-01"))
        .await;
    assert_eq!(r.error_code(), "NoRegisteredProviderFound");

    // Changing a plan and a contact through the control API shows at once.
    let (status, _) = sim
        .control(
            Method::PUT,
            &format!("/_sim/pricings/{}/KeyVaults", subs[2]),
            json!({"pricingTier": "Standard", "subPlan": "PerKeyVault"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let p2 = sim
        .get(&token, &sec(&subs[2], "pricings", "2024-01-01"))
        .await
        .body;
    assert_eq!(tier(&p2, "KeyVaults"), "Standard");
    let (status, _) = sim
        .control(
            Method::PUT,
            &format!("/_sim/security-contacts/{}", subs[2]),
            json!({"emails": "a@contoso.com", "alertNotifications": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let c2 = sim
        .get(
            &token,
            &sec(&subs[2], "securityContacts", "2023-12-01-preview"),
        )
        .await;
    assert_eq!(c2.body["value"][0]["properties"]["isEnabled"], false);
}

#[tokio::test]
async fn security_reads_need_a_role_that_reads_security() {
    let sim = start().await;
    let sub = sim.subscriptions()[0].clone();
    let scope = format!("/subscriptions/{sub}");
    let collector = sim.sp("collector");
    let token = sim.token("collector").await;
    let plans = sec(&sub, "pricings", "2024-01-01");
    let accounts =
        format!("{scope}/providers/Microsoft.Storage/storageAccounts?api-version=2025-01-01");
    // Reader's `*/read` covers Microsoft.Security reads, as Azure documents:
    // removing Security Reader alone leaves them readable.
    for role in ["Security Reader", "Reader"] {
        let (status, body) = sim
            .control(
                Method::DELETE,
                "/_sim/role-assignments",
                json!({"principal_id": collector.object_id, "role": role, "scope": scope}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let want = if role == "Reader" {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        };
        assert_eq!(sim.get(&token, &plans).await.status, want, "without {role}");
    }
    // A custom role reading storage and vaults only: Defender stays 403.
    let (status, role) = sim
        .control(Method::POST, "/_sim/role-definitions", json!({
            "name": "Storage and Vault Reader",
            "actions": ["Microsoft.Storage/*/read", "Microsoft.KeyVault/*/read", "Microsoft.Resources/subscriptions/resourceGroups/read"],
            "assignableScopes": [scope],
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{role}");
    let (status, _) = sim
        .control(Method::POST, "/_sim/role-assignments", json!({"principal_id": collector.object_id, "role": "Storage and Vault Reader", "scope": scope}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let denied = sim.get(&token, &plans).await;
    assert_eq!(
        (denied.status, denied.error_code()),
        (StatusCode::FORBIDDEN, "AuthorizationFailed")
    );
    assert_eq!(sim.get(&token, &accounts).await.status, StatusCode::OK);
}

#[tokio::test]
async fn assessments_follow_the_resources_settings() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let path = sec(&sub, "assessments", "2021-06-01");
    let (_, items) = sim.get_all(&token, &path).await;
    let public = items
        .iter()
        .find(|a| {
            a["properties"]["displayName"] == "Storage account public access should be disallowed"
        })
        .expect("a storage assessment");
    let account = public["properties"]["resourceDetails"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    for (allow, code) in [(true, "Unhealthy"), (false, "Healthy")] {
        let (status, _) = sim
            .control(
                Method::PATCH,
                &format!("/_sim/storage-accounts{account}"),
                json!({"allowBlobPublicAccess": allow}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, items) = sim.get_all(&token, &path).await;
        let a = items
            .iter()
            .find(|a| {
                a["properties"]["resourceDetails"]["id"] == account.as_str()
                    && a["properties"]["displayName"] == public["properties"]["displayName"]
            })
            .expect("assessment");
        assert_eq!(a["properties"]["status"]["code"], code);
    }
}

#[tokio::test]
async fn diagnostic_settings_and_activity_log_alerts() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let subs = sim.subscriptions();
    let diag = |scope: &str| {
        format!(
            "{scope}/providers/Microsoft.Insights/diagnosticSettings?api-version=2021-05-01-preview"
        )
    };
    let d0 = sim
        .get(&token, &diag(&format!("/subscriptions/{}", subs[0])))
        .await;
    let logs = d0.body["value"][0]["properties"]["logs"].clone();
    assert_eq!(logs, json!([{"categoryGroup": "allLogs", "enabled": true}]));
    let d1 = sim
        .get(&token, &diag(&format!("/subscriptions/{}", subs[1])))
        .await;
    let enabled: Vec<&Value> = d1.body["value"][0]["properties"]["logs"]
        .as_array()
        .expect("logs")
        .iter()
        .filter(|l| l["enabled"] == true)
        .collect();
    assert_eq!(enabled.len(), 1);
    let d2 = sim
        .get(&token, &diag(&format!("/subscriptions/{}", subs[2])))
        .await;
    assert_eq!(d2.body["value"], json!([]));
    // On resources: some vaults send their audit logs, others none.
    let vaults = all_of(&sim, &token, |s| {
        format!("/subscriptions/{s}/providers/Microsoft.KeyVault/vaults?api-version=2024-11-01")
    })
    .await;
    let mut counts = Vec::new();
    for v in &vaults {
        let r = sim.get(&token, &diag(v["id"].as_str().expect("id"))).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        counts.push(r.body["value"].as_array().map(Vec::len).unwrap_or(0));
    }
    assert!(counts.contains(&0) && counts.contains(&1), "{counts:?}");
    let missing = sim
        .get(
            &token,
            &diag(&format!(
                "/subscriptions/{}/resourceGroups/nope/providers/Microsoft.KeyVault/vaults/nope",
                subs[0]
            )),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let alerts = |s: &str| {
        format!(
            "/subscriptions/{s}/providers/Microsoft.Insights/activityLogAlerts?api-version=2020-10-01"
        )
    };
    let a0 = sim.get(&token, &alerts(&subs[0])).await;
    let ops: Vec<String> = a0.body["value"]
        .as_array()
        .expect("alerts")
        .iter()
        .flat_map(|a| {
            a["properties"]["condition"]["allOf"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|c| c["field"] == "operationName")
        .filter_map(|c| c["equals"].as_str().map(str::to_string))
        .collect();
    assert!(
        ops.iter()
            .any(|o| o == "Microsoft.Authorization/policyAssignments/write"),
        "{ops:?}"
    );
    let a2 = sim.get(&token, &alerts(&subs[2])).await;
    assert_eq!(a2.body["value"], json!([]));
}

#[tokio::test]
async fn storage_accounts_fields_follow_azure() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let accounts = all_of(&sim, &token, |s| {
        format!(
            "/subscriptions/{s}/providers/Microsoft.Storage/storageAccounts?api-version=2025-01-01"
        )
    })
    .await;
    assert!(!accounts.is_empty());
    for a in &accounts {
        let p = &a["properties"];
        let sku = a["sku"]["name"].as_str().expect("sku");
        assert_eq!(
            p.get("secondaryLocation").is_some(),
            sku.contains("GRS"),
            "{sku}: geo-redundancy follows the SKU"
        );
        assert!(p["privateEndpointConnections"].is_array(), "always present");
    }
    let share = |field: &str| {
        accounts
            .iter()
            .filter(|a| a["properties"].get(field).is_none())
            .count()
    };
    for field in [
        "allowSharedKeyAccess",
        "allowCrossTenantReplication",
        "defaultToOAuthAuthentication",
        "keyPolicy",
    ] {
        let absent = share(field);
        assert!(
            absent > 0 && absent < accounts.len(),
            "{field} absent on {absent} of {}",
            accounts.len()
        );
    }
    assert!(
        accounts
            .iter()
            .any(|a| a["properties"]["encryption"]["requireInfrastructureEncryption"] == true)
    );

    let id = accounts[0]["id"].as_str().expect("id");
    let blob = sim
        .get(
            &token,
            &format!("{id}/blobServices/default?api-version=2025-01-01"),
        )
        .await;
    assert_eq!(blob.status, StatusCode::OK, "{}", blob.body);
    assert!(blob.body["properties"]["deleteRetentionPolicy"]["enabled"].is_boolean());
    assert!(blob.body["properties"]["containerDeleteRetentionPolicy"]["enabled"].is_boolean());
    let list = sim
        .get(&token, &format!("{id}/blobServices?api-version=2025-01-01"))
        .await;
    assert_eq!(list.body["value"][0]["name"], "default");
    let file = sim
        .get(
            &token,
            &format!("{id}/fileServices/default?api-version=2025-01-01"),
        )
        .await;
    assert!(file.body["properties"]["shareDeleteRetentionPolicy"]["enabled"].is_boolean());
    let other = sim
        .get(
            &token,
            &format!("{id}/blobServices/other?api-version=2025-01-01"),
        )
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);

    // Every evidence setting can be set and made absent again.
    let (status, body) = sim
        .control(Method::PATCH, &format!("/_sim/storage-accounts{id}"), json!({
            "publicNetworkAccess": "SecuredByPerimeter", "networkAcls": {"defaultAction": "Deny"},
            "supportsHttpsTrafficOnly": false, "minimumTlsVersion": "TLS1_0", "allowSharedKeyAccess": false,
        }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let a = sim
        .get(&token, &format!("{id}?api-version=2025-01-01"))
        .await
        .body;
    let p = &a["properties"];
    assert_eq!(
        (
            p["publicNetworkAccess"].as_str(),
            p["networkAcls"]["defaultAction"].as_str()
        ),
        (Some("SecuredByPerimeter"), Some("Deny"))
    );
    assert_eq!(
        (
            p["supportsHttpsTrafficOnly"].as_bool(),
            p["minimumTlsVersion"].as_str(),
            p["allowSharedKeyAccess"].as_bool()
        ),
        (Some(false), Some("TLS1_0"), Some(false))
    );
    let (status, _) = sim
        .control(
            Method::PATCH,
            &format!("/_sim/storage-accounts{id}"),
            json!({"minimumTlsVersion": null, "allowSharedKeyAccess": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let p = sim
        .get(&token, &format!("{id}?api-version=2025-01-01"))
        .await
        .body["properties"]
        .clone();
    assert!(p.get("minimumTlsVersion").is_none() && p.get("allowSharedKeyAccess").is_none());
    let (status, _) = sim
        .control(
            Method::PATCH,
            &format!("/_sim/storage-accounts{id}"),
            json!({"bogus": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Vaults with what a test needs: RBAC or access policies, reachable or not.
async fn vaults(sim: &Sim, token: &str) -> Vec<Value> {
    all_of(sim, token, |s| {
        format!("/subscriptions/{s}/providers/Microsoft.KeyVault/vaults?api-version=2024-11-01")
    })
    .await
}

fn reachable(v: &Value) -> bool {
    v["properties"]["publicNetworkAccess"] != "Disabled"
}

#[tokio::test]
async fn key_vault_data_plane_answers_as_key_vault_does() {
    let sim = start().await;
    let arm = sim.token("collector").await;
    let all = vaults(&sim, &arm).await;
    assert!(
        all.iter()
            .all(|v| v["properties"]["privateEndpointConnections"].is_array())
    );
    let rbac = all
        .iter()
        .find(|v| v["properties"]["enableRbacAuthorization"] == true && reachable(v))
        .expect("an RBAC vault")
        .clone();
    let name = rbac["name"].as_str().expect("name");
    let id = rbac["id"].as_str().expect("id");

    // No token: Key Vault's challenge names the tenant and the resource.
    let r = sim.vault_get(name, None, "/keys?api-version=7.5").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let challenge = r.header("www-authenticate").expect("challenge").to_string();
    assert!(
        challenge.contains("resource=\"https://vault.azure.net\"")
            && challenge.contains(&sim.tenant_id()),
        "{challenge}"
    );
    // An ARM token is refused; a vault token without a data-plane role is 403.
    let r = sim
        .vault_get(name, Some(&arm), "/keys?api-version=7.5")
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let token = sim.token_scoped("collector", VAULT).await;
    let r = sim
        .vault_get(name, Some(&token), "/keys?api-version=7.5")
        .await;
    assert_eq!(
        (r.status, r.body["error"]["innererror"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("ForbiddenByRbac")),
        "{}",
        r.body
    );
    let r = sim.vault_get(name, Some(&token), "/keys").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // Key Vault Reader on the vault opens its keys' metadata.
    let collector = sim.sp("collector");
    let (status, _) = sim
        .control(
            Method::POST,
            "/_sim/role-assignments",
            json!({"principal_id": collector.object_id, "role": "Key Vault Reader", "scope": id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut keys = Vec::new();
    let mut next = Some("/keys?api-version=7.5&maxresults=1".to_string());
    while let Some(link) = next.take() {
        let r = sim.vault_get(name, Some(&token), &link).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        keys.extend(r.body["value"].as_array().cloned().unwrap_or_default());
        next = r.body["nextLink"].as_str().map(str::to_string);
    }
    let (_, arm_keys) = sim
        .get_all(&arm, &format!("{id}/keys?api-version=2024-11-01"))
        .await;
    assert_eq!(keys.len(), arm_keys.len());
    for (k, a) in keys.iter().zip(&arm_keys) {
        let key = a["name"].as_str().expect("name");
        assert!(
            k["kid"]
                .as_str()
                .is_some_and(|kid| kid.ends_with(&format!("/keys/{key}")))
        );
        let policy = sim
            .vault_get(
                name,
                Some(&token),
                &format!("/keys/{key}/rotationpolicy?api-version=7.5"),
            )
            .await;
        assert_eq!(policy.status, StatusCode::OK);
        let dp: Vec<String> = policy.body["lifetimeActions"]
            .as_array()
            .expect("actions")
            .iter()
            .map(|x| x["action"]["type"].as_str().unwrap_or("").to_string())
            .collect();
        assert!(dp.iter().all(|t| t == "Rotate" || t == "Notify"), "{dp:?}");
        let arm_types: Vec<String> = a["properties"]["rotationPolicy"]["lifetimeActions"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|x| x["action"]["type"].as_str().unwrap_or("").to_string())
            .collect();
        assert!(
            arm_types.iter().all(|t| t == "rotate" || t == "notify"),
            "{arm_types:?}"
        );
        if !arm_types.is_empty() {
            assert_eq!(
                arm_types,
                dp.iter().map(|t| t.to_lowercase()).collect::<Vec<_>>()
            );
        }
        let versions = sim
            .vault_get(
                name,
                Some(&token),
                &format!("/keys/{key}/versions?api-version=7.5"),
            )
            .await;
        let current = a["properties"]["keyUriWithVersion"].as_str().expect("uri");
        let version = current.rsplit('/').next().expect("version");
        assert!(
            versions.body["value"]
                .as_array()
                .expect("versions")
                .iter()
                .any(|v| v["kid"].as_str().is_some_and(|kid| kid.ends_with(version)))
        );
        let bundle = sim
            .vault_get(name, Some(&token), &format!("/keys/{key}?api-version=7.5"))
            .await;
        assert!(
            bundle.body["key"]["kid"]
                .as_str()
                .is_some_and(|kid| kid.ends_with(version))
        );
    }
    let secrets = sim
        .vault_get(name, Some(&token), "/secrets?api-version=7.5")
        .await;
    assert_eq!(secrets.status, StatusCode::OK);
    assert!(
        secrets.body["value"]
            .as_array()
            .expect("secrets")
            .iter()
            .all(|s| s.get("value").is_none()),
        "never values"
    );

    // An access-policy vault: no policy for the collector, Key Vault's 403.
    if let Some(v) = all
        .iter()
        .find(|v| v["properties"]["enableRbacAuthorization"] != true && reachable(v))
    {
        let r = sim
            .vault_get(
                v["name"].as_str().expect("name"),
                Some(&token),
                "/keys?api-version=7.5",
            )
            .await;
        assert_eq!(
            r.body["error"]["innererror"]["code"], "AccessDenied",
            "{}",
            r.body
        );
    }
    // Public access off: refused before any permission check.
    let (status, _) = sim
        .control(
            Method::PATCH,
            &format!("/_sim/vaults{id}"),
            json!({"publicNetworkAccess": "Disabled"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let r = sim
        .vault_get(name, Some(&token), "/keys?api-version=7.5")
        .await;
    assert_eq!(
        r.body["error"]["innererror"]["code"],
        "ForbiddenByConnection"
    );
}

#[tokio::test]
async fn vault_keys_and_secrets_settings_can_be_changed() {
    let sim = start().await;
    let arm = sim.token("collector").await;
    let all = vaults(&sim, &arm).await;
    let v = &all[0];
    let id = v["id"].as_str().expect("id");
    let (status, body) = sim
        .control(Method::PATCH, &format!("/_sim/vaults{id}"), json!({"enablePurgeProtection": true, "enableRbacAuthorization": null, "publicNetworkAccess": "Enabled", "enableSoftDelete": false}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let p = sim
        .get(&arm, &format!("{id}?api-version=2024-11-01"))
        .await
        .body["properties"]
        .clone();
    assert_eq!(
        (
            p["enablePurgeProtection"].as_bool(),
            p.get("enableRbacAuthorization"),
            p["enableSoftDelete"].as_bool()
        ),
        (Some(true), None, Some(false))
    );
    let (_, keys) = sim
        .get_all(&arm, &format!("{id}/keys?api-version=2024-11-01"))
        .await;
    let key = keys[0]["id"].as_str().expect("key id");
    let (status, body) = sim
        .control(Method::PATCH, &format!("/_sim/vaults{key}"), json!({"exp": 1_900_000_000i64, "rotationPolicy": {"rotateAfterCreate": "P30D", "expiryTime": "P90D"}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let k = sim
        .get(&arm, &format!("{key}?api-version=2024-11-01"))
        .await
        .body;
    assert_eq!(k["properties"]["attributes"]["exp"], 1_900_000_000i64);
    assert_eq!(
        k["properties"]["rotationPolicy"]["lifetimeActions"][0]["action"]["type"],
        "rotate"
    );
    let (status, _) = sim
        .control(
            Method::PATCH,
            &format!("/_sim/vaults{key}"),
            json!({"exp": null, "rotationPolicy": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let k = sim
        .get(&arm, &format!("{key}?api-version=2024-11-01"))
        .await
        .body;
    assert!(
        k["properties"]["attributes"].get("exp").is_none()
            && k["properties"].get("rotationPolicy").is_none()
    );
    for v in &all {
        let vid = v["id"].as_str().expect("id");
        let (_, secrets) = sim
            .get_all(&arm, &format!("{vid}/secrets?api-version=2024-11-01"))
            .await;
        if let Some(s) = secrets.first() {
            let sid = s["id"].as_str().expect("secret id");
            let (status, _) = sim
                .control(
                    Method::PATCH,
                    &format!("/_sim/vaults{sid}"),
                    json!({"exp": 1_700_000_000i64}),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
            let s = sim
                .get(&arm, &format!("{sid}?api-version=2024-11-01"))
                .await
                .body;
            assert_eq!(s["properties"]["attributes"]["exp"], 1_700_000_000i64);
            return;
        }
    }
    panic!("no vault has a secret");
}

#[tokio::test]
async fn identity_scenario_has_custom_roles_and_a_foreign_group() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let subs = sim.subscriptions();
    let defs = |s: &str| {
        format!(
            "/subscriptions/{s}/providers/Microsoft.Authorization/roleDefinitions?api-version=2022-04-01&$filter=type eq 'CustomRole'"
        )
    };
    let star = |body: &Value| {
        body["value"]
            .as_array()
            .expect("defs")
            .iter()
            .any(|d| d["properties"]["permissions"][0]["actions"] == json!(["*"]))
    };
    let d0 = sim.get(&token, &defs(&subs[0])).await.body;
    let d1 = sim.get(&token, &defs(&subs[1])).await.body;
    assert!(
        !star(&d0) && star(&d1),
        "the `*` role is assignable at sub 1 only"
    );
    assert!(
        d0["value"]
            .as_array()
            .expect("defs")
            .iter()
            .all(|d| d["properties"]["type"] == "CustomRole")
    );
    assert!(
        d0["value"]
            .as_array()
            .expect("defs")
            .iter()
            .any(|d| d["properties"]["permissions"][0]["actions"][0]
                == "Microsoft.Authorization/locks/*")
    );

    let assignments = |s: &str| {
        format!(
            "/subscriptions/{s}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=atScope()"
        )
    };
    let owner = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
    let mut owners_per_sub = Vec::new();
    for s in &subs {
        let (_, list) = sim.get_all(&token, &assignments(s)).await;
        let scope = format!("/subscriptions/{s}");
        let owners: std::collections::HashSet<&str> = list
            .iter()
            .filter(|a| {
                a["properties"]["scope"] == scope.as_str()
                    && a["properties"]["roleDefinitionId"]
                        .as_str()
                        .is_some_and(|d| d.ends_with(owner))
            })
            .filter_map(|a| a["properties"]["principalId"].as_str())
            .collect();
        owners_per_sub.push(owners.len());
        if s == &subs[1] {
            assert!(
                list.iter()
                    .any(|a| a["properties"]["principalType"] == "ForeignGroup")
            );
        }
    }
    assert_eq!(owners_per_sub[0], 2);
    assert!(owners_per_sub[1] > 3);
    assert_eq!(owners_per_sub[2], 2);
    assert!(
        !sim.tenant()["groups"]
            .as_array()
            .expect("groups")
            .is_empty()
    );
}

#[tokio::test]
async fn secure_scores_add_up_as_azures_do() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let mut percentages = Vec::new();
    for s in sim.subscriptions() {
        let score = sim.get(&token, &format!("/subscriptions/{s}/providers/Microsoft.Security/secureScores/ascScore?api-version=2020-01-01")).await.body;
        let (_, controls) = sim.get_all(&token, &format!("/subscriptions/{s}/providers/Microsoft.Security/secureScoreControls?api-version=2020-01-01")).await;
        let sum = |f: &str| {
            controls
                .iter()
                .map(|c| c["properties"]["score"][f].as_f64().unwrap_or(0.0))
                .sum::<f64>()
        };
        assert!(
            (score["properties"]["score"]["max"].as_f64().expect("max") - sum("max")).abs() < 1e-9
        );
        assert!(
            (score["properties"]["score"]["current"]
                .as_f64()
                .expect("current")
                - sum("current"))
            .abs()
                < 0.011
        );
        let counted: u64 = controls
            .iter()
            .map(|c| {
                c["properties"]["healthyResourceCount"]
                    .as_u64()
                    .unwrap_or(0)
                    + c["properties"]["unhealthyResourceCount"]
                        .as_u64()
                        .unwrap_or(0)
            })
            .sum();
        assert_ne!(
            score["properties"]["weight"].as_u64(),
            Some(counted),
            "the weight is not the controls' counts"
        );
        assert!(
            controls
                .iter()
                .any(|c| c["properties"]["score"]["max"] == 0)
        );
        assert!(
            controls
                .iter()
                .any(|c| c["properties"]["score"]["max"].as_u64() > Some(0)
                    && c["properties"]["unhealthyResourceCount"] == 0)
        );
        percentages.push(
            score["properties"]["score"]["percentage"]
                .as_f64()
                .expect("percentage"),
        );
    }
    assert!(
        percentages[0] > 0.8 && percentages[1] < 0.4,
        "{percentages:?}"
    );
    // Controls can be set: a clean slate scores 100%.
    let sub = &sim.subscriptions()[1];
    let (status, _) = sim
        .control(Method::PUT, &format!("/_sim/secure-scores/{sub}"), json!({"controls": [
            {"displayName": "Enable MFA", "max": 10, "healthy": 4, "unhealthy": 0},
            {"displayName": "Implement security best practices", "max": 0, "healthy": 2, "unhealthy": 3},
        ]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let score = sim.get(&token, &format!("/subscriptions/{sub}/providers/Microsoft.Security/secureScores/ascScore?api-version=2020-01-01")).await.body;
    assert_eq!(score["properties"]["score"]["percentage"], 1.0);
}
