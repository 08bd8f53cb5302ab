//! The control API: out-of-band changes show through ARM, and the request
//! log records what clients did.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::start;

const RES: &str = "api-version=2025-04-01";

#[tokio::test]
async fn portal_changes_show_through_arm() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let (_, items) = sim
        .get_all(&token, &format!("/subscriptions/{sub}/resources?{RES}"))
        .await;
    let id = items[0]["id"].as_str().expect("id").to_string();

    let (status, _) = sim
        .control(
            Method::POST,
            "/_sim/tags",
            json!({"resource_id": id, "operation": "Merge", "tags": {"changed-in": "portal"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let tags = sim
        .get(
            &token,
            &format!("{id}/providers/Microsoft.Resources/tags/default?{RES}"),
        )
        .await;
    assert_eq!(tags.body["properties"]["tags"]["changed-in"], "portal");

    let rg = id.split('/').nth(4).expect("rg").to_string();
    let (status, created) = sim
        .control(Method::POST, "/_sim/resources", json!({"subscription_id": sub, "resource_group": rg, "type": "Microsoft.Compute/disks", "name": "disk-added-01", "location": "westeurope", "tags": {"env": "prod"}}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let new_id = created["id"].as_str().expect("id").to_string();
    assert_eq!(
        sim.get(&token, &format!("{new_id}?api-version=2024-03-02"))
            .await
            .status,
        StatusCode::OK
    );
    // Listed with its subscription's resources, by the id as Azure spells it.
    let listing = format!("/subscriptions/{sub}/resources?{RES}");
    let listed = |items: &[serde_json::Value]| items.iter().any(|r| r["id"] == new_id.as_str());
    assert!(listed(&sim.get_all(&token, &listing).await.1));
    assert!(listed(
        &sim.get_all(&token, &listing.replace(&sub, &sub.to_uppercase()))
            .await
            .1
    ));
    let r = sim
        .http
        .delete(format!("{}/_sim/resources", sim.url()))
        .query(&[("id", new_id.as_str())])
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        sim.get(&token, &format!("{new_id}?api-version=2024-03-02"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert!(!listed(&sim.get_all(&token, &listing).await.1));

    let (_, accounts) = sim.get_all(&token, &format!("/subscriptions/{sub}/providers/Microsoft.Storage/storageAccounts?api-version=2025-01-01")).await;
    let account = accounts[0]["id"].as_str().expect("id").to_string();
    let (status, _) = sim
        .control(
            Method::POST,
            "/_sim/storage/public-access",
            json!({"account_id": account, "allow_blob_public_access": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let after = sim
        .get(&token, &format!("{account}?api-version=2025-01-01"))
        .await;
    assert_eq!(after.body["properties"]["allowBlobPublicAccess"], true);

    let (status, body) = sim.control(Method::POST, "/_sim/tags", json!({"resource_id": "/subscriptions/x/resourceGroups/y/providers/A.B/c/d", "tags": {}})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = sim
        .control(Method::PUT, "/_sim/faults", json!({"rate_500": 3.0}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn keys_rotate_and_expire() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let mut key = None;
    for sub in sim.subscriptions() {
        let (_, vaults) = sim.get_all(&token, &format!("/subscriptions/{sub}/providers/Microsoft.KeyVault/vaults?api-version=2024-11-01")).await;
        if let Some(v) = vaults.first() {
            let (_, keys) = sim
                .get_all(
                    &token,
                    &format!(
                        "{}/keys?api-version=2024-11-01",
                        v["id"].as_str().expect("id")
                    ),
                )
                .await;
            key = keys.first().cloned();
            break;
        }
    }
    let key = key.expect("a key");
    let id = key["id"].as_str().expect("id").to_string();
    let (status, _) = sim
        .control(Method::POST, "/_sim/keys/rotate", json!({"key_id": id}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let rotated = sim
        .get(&token, &format!("{id}?api-version=2024-11-01"))
        .await;
    assert_ne!(
        rotated.body["properties"]["keyUriWithVersion"],
        key["properties"]["keyUriWithVersion"]
    );
    let (status, _) = sim
        .control(Method::POST, "/_sim/keys/expire", json!({"key_id": id}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let expired = sim
        .get(&token, &format!("{id}?api-version=2024-11-01"))
        .await;
    let exp = expired.body["properties"]["attributes"]["exp"]
        .as_i64()
        .expect("exp");
    assert!(exp < chrono::Utc::now().timestamp());
}

#[tokio::test]
async fn removing_a_role_assignment_takes_effect_at_once() {
    let sim = start().await;
    let collector = sim.sp("collector");
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[1].clone();
    let scope = format!("/subscriptions/{sub}");
    let path = format!("{scope}/providers/Microsoft.Resources/tags/default?{RES}");
    let change = json!({"operation": "Merge", "properties": {"tags": {"k": "v"}}});
    assert_eq!(
        sim.arm(&token, Method::PATCH, &path, Some(change.clone()))
            .await
            .status,
        StatusCode::OK
    );
    let role =
        json!({"principal_id": collector.object_id, "role": "Tag Contributor", "scope": scope});
    let (status, _) = sim
        .control(Method::DELETE, "/_sim/role-assignments", role.clone())
        .await;
    assert_eq!(status, StatusCode::OK);
    let r = sim
        .arm(&token, Method::PATCH, &path, Some(change.clone()))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::FORBIDDEN, "AuthorizationFailed")
    );
    let (status, _) = sim
        .control(Method::POST, "/_sim/role-assignments", role)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        sim.arm(&token, Method::PATCH, &path, Some(change))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn request_log_and_reset() {
    let sim = start().await;
    let collector = sim.sp("collector");
    let token = sim.token("collector").await;
    let start_seq = sim.last_seq().await;
    let sub = sim.subscriptions()[0].clone();
    sim.get(
        &token,
        &format!("/subscriptions/{sub}/resources?{RES}&$top=3"),
    )
    .await;
    sim.get(
        &sim.token("no-access").await,
        &format!("/subscriptions/{sub}/resources?{RES}"),
    )
    .await;
    let log = sim.requests_since(start_seq).await;
    let list = log
        .iter()
        .find(|e| e["path"] == format!("/subscriptions/{sub}/resources"))
        .expect("logged");
    assert_eq!(list["method"], "GET");
    assert_eq!(list["status"], 200);
    assert_eq!(list["principal"], collector.object_id.as_str());
    assert!(list["query"].as_str().unwrap_or("").contains("$top=3"));
    assert!(log.iter().any(|e| e["status"] == 403));
    assert!(
        log.iter()
            .all(|e| !e["path"].as_str().unwrap_or("").starts_with("/_sim")),
        "the control API is not logged"
    );
    let seqs: Vec<u64> = log
        .iter()
        .map(|e| e["seq"].as_u64().expect("seq"))
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    let (_, items) = sim
        .get_all(&token, &format!("/subscriptions/{sub}/resources?{RES}"))
        .await;
    let id = items[0]["id"].as_str().expect("id").to_string();
    sim.control(
        Method::POST,
        "/_sim/tags",
        json!({"resource_id": id, "operation": "Replace", "tags": {"only": "this"}}),
    )
    .await;
    let (status, _) = sim.control(Method::POST, "/_sim/reset", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(sim.requests_since(0).await.is_empty());
    let tags = sim
        .get(
            &token,
            &format!("{id}/providers/Microsoft.Resources/tags/default?{RES}"),
        )
        .await;
    assert_ne!(tags.body["properties"]["tags"], json!({"only": "this"}));
}

#[tokio::test]
async fn scenario_is_deterministic_for_a_seed() {
    let a = start().await;
    let b = start().await;
    assert_eq!(a.scenario, b.scenario);
    let c = crate::harness::start_with(crate::harness::Options {
        seed: 8,
        ..Default::default()
    })
    .await;
    assert_ne!(a.scenario["tenants"], c.scenario["tenants"]);
    let t = &a.scenario["totals"];
    assert_eq!(t["subscriptions"], 3);
    assert_eq!(t["resources"], 300);
    assert_eq!(t["cost_days"], 90);
    let keys: Vec<&str> = a.tenant()["service_principals"]
        .as_array()
        .expect("sps")
        .iter()
        .filter_map(|p| p["key"].as_str())
        .collect();
    for k in ["collector", "reader-only", "no-access"] {
        assert!(keys.contains(&k));
    }
    assert!(
        a.user("guest")["upn"]
            .as_str()
            .unwrap_or("")
            .contains("#EXT#")
    );
    let owner_subs = a.user("partial-owner")["roles"]
        .as_array()
        .expect("roles")
        .iter()
        .filter(|r| r["role"] == "Owner")
        .count();
    assert!(
        (1..3).contains(&owner_subs),
        "owns some subscriptions, not all"
    );
}
