//! ARM: authentication and authorisation errors, api-versions, paging,
//! filters, tags, role assignments, providers, the partner link and Resource Graph.

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::start;

const RES: &str = "api-version=2025-04-01";

#[tokio::test]
async fn authentication_failures_have_arm_shapes() {
    let sim = start().await;
    let sub = &sim.subscriptions()[0];
    let path = format!("/subscriptions/{sub}/resources?{RES}");
    let r = sim
        .http
        .get(format!("{}{path}", sim.url()))
        .send()
        .await
        .expect("call");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers().contains_key("www-authenticate"));
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "AuthenticationFailed");
    assert_eq!(
        sim.get("not-a-jwt", &path).await.error_code(),
        "InvalidAuthenticationToken"
    );

    // A token for another tenant (the app's home tenant) is refused for this subscription.
    let (client_id, secret) = sim.app();
    let home = sim.scenario["application"]["home_tenant_id"]
        .as_str()
        .expect("home")
        .to_string();
    let (status, t) = sim
        .token_request(
            &home,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", &secret),
                ("scope", "https://management.azure.com/.default"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{t}");
    let r = sim
        .get(t["access_token"].as_str().expect("token"), &path)
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::UNAUTHORIZED, "InvalidAuthenticationTokenTenant")
    );

    // Tokens issued with a zero lifetime are expired on arrival.
    let (status, _) = sim
        .control(
            Method::PUT,
            "/_sim/faults",
            json!({"token_lifetime_secs": 0}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let expired = sim.token("collector").await;
    let r = sim.get(&expired, &path).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::UNAUTHORIZED, "ExpiredAuthenticationToken")
    );
}

#[tokio::test]
async fn api_versions_are_checked() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = &sim.subscriptions()[0];
    let r = sim
        .get(&token, &format!("/subscriptions/{sub}/resources"))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "MissingApiVersionParameter")
    );
    let r = sim
        .get(
            &token,
            &format!("/subscriptions/{sub}/resources?api-version=2099-01-01"),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "InvalidApiVersionParameter")
    );
    let r = sim.get(&token, &format!("/subscriptions/{sub}/providers/Microsoft.Storage/storageAccounts?api-version=1999-01-01")).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "NoRegisteredProviderFound")
    );
    // Versions the SDKs send for the same operation are accepted.
    for v in ["2021-04-01", "2022-09-01", "2024-03-01"] {
        assert_eq!(
            sim.get(
                &token,
                &format!("/subscriptions/{sub}/resources?api-version={v}")
            )
            .await
            .status,
            StatusCode::OK,
            "{v}"
        );
    }
    let r = sim
        .get(
            &token,
            &format!("/subscriptions/00000000-0000-0000-0000-00000000dead/resources?{RES}"),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "SubscriptionNotFound")
    );
}

#[tokio::test]
async fn subscriptions_follow_role_assignments() {
    let sim = start().await;
    let all: HashSet<String> = sim.subscriptions().into_iter().collect();
    for key in ["collector", "reader-only"] {
        let (_, subs) = sim
            .get_all(
                &sim.token(key).await,
                "/subscriptions?api-version=2022-12-01",
            )
            .await;
        let ids: HashSet<String> = subs
            .iter()
            .map(|s| s["subscriptionId"].as_str().expect("id").to_string())
            .collect();
        assert_eq!(ids, all, "{key}");
        assert!(
            subs.iter()
                .all(|s| s["tenantId"] == sim.tenant_id() && s["state"] == "Enabled")
        );
    }
    let (_, none) = sim
        .get_all(
            &sim.token("no-access").await,
            "/subscriptions?api-version=2022-12-01",
        )
        .await;
    assert!(none.is_empty());
    let tenants = sim
        .get(
            &sim.token("collector").await,
            "/tenants?api-version=2022-12-01",
        )
        .await;
    assert_eq!(tenants.body["value"][0]["tenantId"], sim.tenant_id());
}

#[tokio::test]
async fn resources_page_filter_and_expand() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let expected = sim.tenant()["subscriptions"][0]["resource_count"]
        .as_u64()
        .expect("count") as usize;
    let (pages, items) = sim
        .get_all(
            &token,
            &format!("/subscriptions/{sub}/resources?{RES}&$top=7&$expand=createdTime,changedTime"),
        )
        .await;
    assert_eq!(items.len(), expected);
    assert_eq!(pages, expected.div_ceil(7));
    let ids: HashSet<&str> = items
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), expected, "no resource twice across pages");
    assert!(
        items
            .iter()
            .all(|r| r["createdTime"].is_string() && r["changedTime"].is_string())
    );
    assert!(
        items.iter().any(|r| r.get("tags").is_none())
            && items.iter().any(|r| r["tags"] == json!({})),
        "both untagged shapes occur"
    );

    let first = sim
        .get(
            &token,
            &format!("/subscriptions/{sub}/resources?{RES}&$top=7"),
        )
        .await;
    let next = first.body["nextLink"].as_str().expect("nextLink");
    assert!(
        next.starts_with(&format!("{}/subscriptions/{sub}/resources?", sim.url())),
        "{next}"
    );
    assert!(next.contains("%24skiptoken="), "{next}");

    let storage = sim.get(&token, &format!("/subscriptions/{sub}/resources?{RES}&$filter=resourceType eq 'Microsoft.Storage/storageAccounts'")).await;
    let list = storage.body["value"].as_array().expect("value");
    assert!(
        !list.is_empty()
            && list
                .iter()
                .all(|r| r["type"] == "Microsoft.Storage/storageAccounts")
    );

    let tagged = sim.get(&token, &format!("/subscriptions/{sub}/resources?{RES}&$filter=tagName eq 'owner'&$expand=createdTime")).await;
    let list = tagged.body["value"].as_array().expect("value");
    assert!(
        !list.is_empty()
            && list
                .iter()
                .all(|r| r.get("tags").is_none() && r.get("createdTime").is_none()),
        "a tag filter drops tags and expanded fields"
    );

    // Doubled slashes are tolerated, as ARM does.
    let r = sim
        .get(
            &token,
            &format!("//subscriptions//{sub}/resources?{RES}&$top=1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    let r = sim
        .get(
            &token,
            &format!("/subscriptions/{sub}/resources?{RES}&$filter=nonsense gt 1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let rg = list[0]["id"]
        .as_str()
        .expect("id")
        .split('/')
        .nth(4)
        .expect("rg")
        .to_string();
    let (_, in_group) = sim
        .get_all(
            &token,
            &format!("/subscriptions/{sub}/resourceGroups/{rg}/resources?{RES}"),
        )
        .await;
    assert!(
        !in_group.is_empty()
            && in_group.iter().all(|r| r["id"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("/resourceGroups/{rg}/")))
    );
    let r = sim
        .get(
            &token,
            &format!("/subscriptions/{sub}/resourceGroups/no-such-rg/resources?{RES}"),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "ResourceGroupNotFound")
    );
    let (_, groups) = sim
        .get_all(
            &token,
            &format!("/subscriptions/{sub}/resourcegroups?{RES}"),
        )
        .await;
    assert_eq!(
        groups.len() as u64,
        sim.tenant()["subscriptions"][0]["resource_group_count"]
            .as_u64()
            .expect("n")
    );
}

#[tokio::test]
async fn single_resources_and_not_found() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let (_, items) = sim
        .get_all(&token, &format!("/subscriptions/{sub}/resources?{RES}"))
        .await;
    let id = items[0]["id"].as_str().expect("id");
    let r = sim
        .get(&token, &format!("{id}?api-version=2023-01-01"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["id"], id);
    let missing = format!("{}x?api-version=2023-01-01", id);
    let r = sim.get(&token, &missing).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
}

fn tag_path(id: &str) -> String {
    format!("{id}/providers/Microsoft.Resources/tags/default?{RES}")
}

#[tokio::test]
async fn tags_at_scope_follow_azure_rules() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let (_, items) = sim
        .get_all(&token, &format!("/subscriptions/{sub}/resources?{RES}"))
        .await;
    let id = items
        .iter()
        .find(|r| !r["type"].as_str().unwrap_or("").contains("storageAccounts"))
        .and_then(|r| r["id"].as_str())
        .expect("id")
        .to_string();
    let path = tag_path(&id);

    let put = sim
        .arm(
            &token,
            Method::PUT,
            &path,
            Some(json!({"properties": {"tags": {"env": "prod", "team": "web"}}})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(
        put.body["properties"]["tags"],
        json!({"env": "prod", "team": "web"})
    );
    assert_eq!(
        put.body["id"],
        format!("{id}/providers/Microsoft.Resources/tags/default")
    );

    let merge = sim.arm(&token, Method::PATCH, &path, Some(json!({"operation": "Merge", "properties": {"tags": {"Env": "dev", "owner": "a@b.c"}}}))).await;
    assert_eq!(
        merge.body["properties"]["tags"],
        json!({"Env": "dev", "team": "web", "owner": "a@b.c"}),
        "names are case-insensitive"
    );

    let delete = sim.arm(&token, Method::PATCH, &path, Some(json!({"operation": "Delete", "properties": {"tags": {"team": "other", "owner": "a@b.c"}}}))).await;
    assert_eq!(
        delete.body["properties"]["tags"],
        json!({"Env": "dev", "team": "web"}),
        "a name/value pair deletes only on a matching value"
    );

    let get = sim.get(&token, &path).await;
    assert_eq!(
        get.body["properties"]["tags"],
        json!({"Env": "dev", "team": "web"})
    );

    for (tags, code) in [
        (json!({"a/b": "x"}), "InvalidTagNameCharacters"),
        (json!({"k": "v".repeat(257)}), "InvalidTagValueLength"),
        (json!({"k".repeat(513): "v"}), "InvalidTagNameLength"),
        (
            Value::Object((0..51).map(|i| (format!("k{i}"), json!("v"))).collect()),
            "InvalidTagCount",
        ),
    ] {
        let r = sim
            .arm(
                &token,
                Method::PATCH,
                &path,
                Some(json!({"operation": "Replace", "properties": {"tags": tags}})),
            )
            .await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::BAD_REQUEST, code),
            "{}",
            r.body
        );
    }
    let r = sim
        .arm(
            &token,
            Method::PATCH,
            &path,
            Some(json!({"operation": "Upsert", "properties": {"tags": {}}})),
        )
        .await;
    assert_eq!(r.error_code(), "InvalidRequestContent");
    let raw = sim
        .http
        .patch(format!("{}{path}", sim.url()))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("call");
    assert_eq!(raw.status(), StatusCode::BAD_REQUEST);

    // A reader may read tags but not write them.
    let reader = sim.token("reader-only").await;
    assert_eq!(sim.get(&reader, &path).await.status, StatusCode::OK);
    let r = sim
        .arm(
            &reader,
            Method::PATCH,
            &path,
            Some(json!({"operation": "Merge", "properties": {"tags": {"x": "y"}}})),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::FORBIDDEN, "AuthorizationFailed")
    );
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("Microsoft.Resources/tags/write")
    );

    let r = sim.arm(&token, Method::DELETE, &path, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        sim.get(&token, &path).await.body["properties"]["tags"],
        json!({})
    );

    let r = sim.get(&token, &tag_path(&format!("{id}-gone"))).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "ResourceNotFound")
    );
    let r = sim
        .arm(
            &token,
            Method::PATCH,
            &tag_path(&format!("/subscriptions/{sub}")),
            Some(json!({"operation": "Merge", "properties": {"tags": {"billing": "central"}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "tags at subscription scope");
}

#[tokio::test]
async fn role_assignments_list_create_delete() {
    let sim = start().await;
    let collector = sim.sp("collector");
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let scope = format!("/subscriptions/{sub}");
    let list = sim.get(&token, &format!("{scope}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=atScope()")).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let items = list.body["value"].as_array().expect("value");
    assert!(
        items.iter().any(|a| a["properties"]["scope"] == "/"),
        "inherited root assignment included"
    );
    let mine = sim.get(&token, &format!("{scope}/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&$filter=principalId eq '{}'", collector.object_id)).await;
    let roles: HashSet<String> = mine.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|a| {
            a["properties"]["roleDefinitionId"]
                .as_str()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    for id in [
        "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "39bc4728-0917-49c7-9d2c-d95423bc2eb4",
        "72fafb9e-0641-4937-9268-a91bfd8191a3",
        "4a9ae827-6dc8-4573-8ac7-8239d42aa03f",
    ] {
        assert!(roles.contains(id), "collector holds {id}");
    }

    // An Owner (a user, through the code flow) assigns a role; a reader cannot.
    let owner = sim.user_token("partial-owner").await;
    let target = sim.sp("no-access");
    let name = "5d2a7c1e-0f6b-4f7e-9a51-2b0c8d7e6f10";
    let path = format!(
        "{scope}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version=2022-04-01"
    );
    let body = json!({"properties": {"roleDefinitionId": format!("{scope}/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"), "principalId": target.object_id, "principalType": "ServicePrincipal"}});
    let r = sim
        .arm(&token, Method::PUT, &path, Some(body.clone()))
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::FORBIDDEN, "AuthorizationFailed")
    );
    let r = sim
        .arm(&owner, Method::PUT, &path, Some(body.clone()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        r.body["properties"]["principalId"],
        target.object_id.as_str()
    );
    let again = sim
        .arm(&owner, Method::PUT, &path, Some(body.clone()))
        .await;
    assert_eq!(
        again.status,
        StatusCode::CREATED,
        "PUT of an existing assignment answers 201"
    );
    let other = path.replace(name, "7e1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d");
    let dup = sim.arm(&owner, Method::PUT, &other, Some(body)).await;
    assert_eq!(
        (dup.status, dup.error_code()),
        (StatusCode::CONFLICT, "RoleAssignmentExists")
    );
    let (_, subs) = sim
        .get_all(
            &sim.token("no-access").await,
            "/subscriptions?api-version=2022-12-01",
        )
        .await;
    assert_eq!(subs.len(), 1, "the new Reader sees its subscription");
    let del = sim.arm(&owner, Method::DELETE, &path, None).await;
    assert_eq!(del.status, StatusCode::OK);
    assert_eq!(
        sim.arm(&owner, Method::DELETE, &path, None).await.status,
        StatusCode::NO_CONTENT
    );

    let def = sim.get(&token, "/providers/Microsoft.Authorization/roleDefinitions/4a9ae827-6dc8-4573-8ac7-8239d42aa03f?api-version=2022-04-01").await;
    assert_eq!(def.body["properties"]["roleName"], "Tag Contributor");
}

#[tokio::test]
async fn security_storage_and_key_vault() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let scores = sim.get(&token, &format!("/subscriptions/{sub}/providers/Microsoft.Security/secureScores?api-version=2020-01-01")).await;
    let score = &scores.body["value"][0]["properties"]["score"];
    let pct = score["percentage"].as_f64().expect("percentage");
    assert!((0.0..=1.0).contains(&pct), "percentage is a fraction");
    let controls = sim.get(&token, &format!("/subscriptions/{sub}/providers/Microsoft.Security/secureScoreControls?api-version=2020-01-01")).await;
    assert!(controls.body["value"].as_array().expect("controls").len() > 5);
    let reader = sim.token("reader-only").await;
    let r = sim.get(&reader, &format!("/subscriptions/{sub}/providers/Microsoft.Security/secureScores?api-version=2020-01-01")).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "Reader's */read covers Defender reads"
    );
    let none = sim.token("no-access").await;
    let r = sim.get(&none, &format!("/subscriptions/{sub}/providers/Microsoft.Security/secureScores?api-version=2020-01-01")).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::FORBIDDEN, "AuthorizationFailed")
    );

    let mut accounts = Vec::new();
    for s in sim.subscriptions() {
        let (_, a) = sim.get_all(&token, &format!("/subscriptions/{s}/providers/Microsoft.Storage/storageAccounts?api-version=2025-01-01")).await;
        accounts.extend(a);
    }
    assert!(
        accounts
            .iter()
            .any(|a| a["properties"].get("allowBlobPublicAccess").is_none()),
        "absent on some"
    );
    assert!(
        accounts
            .iter()
            .any(|a| a["properties"]["allowBlobPublicAccess"] == true),
        "anonymous access on some"
    );

    let mut vaults = Vec::new();
    for s in sim.subscriptions() {
        let (_, v) = sim.get_all(&token, &format!("/subscriptions/{s}/providers/Microsoft.KeyVault/vaults?api-version=2024-11-01&$top=1")).await;
        vaults.extend(v);
    }
    assert!(!vaults.is_empty());
    let mut with_policy = 0;
    for v in &vaults {
        let id = v["id"].as_str().expect("id");
        let (_, keys) = sim
            .get_all(&token, &format!("{id}/keys?api-version=2024-11-01"))
            .await;
        with_policy += keys
            .iter()
            .filter(|k| k["properties"]["rotationPolicy"].is_object())
            .count();
        let (_, old) = sim
            .get_all(&token, &format!("{id}/keys?api-version=2021-10-01"))
            .await;
        assert!(
            old.iter()
                .all(|k| k["properties"].get("rotationPolicy").is_none()),
            "older versions omit rotationPolicy"
        );
        let secrets = sim
            .get(&token, &format!("{id}/secrets?api-version=2024-11-01"))
            .await;
        assert_eq!(secrets.status, StatusCode::OK);
    }
    assert!(with_policy > 0);
}

#[tokio::test]
async fn partner_admin_link_round_trip() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let path = "/providers/Microsoft.ManagementPartner/partners/4711?api-version=2018-02-01";
    let r = sim
        .get(
            &token,
            "/providers/Microsoft.ManagementPartner/partners?api-version=2018-02-01",
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = sim.arm(&token, Method::PUT, path, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["properties"]["partnerId"], "4711");
    assert_eq!(
        r.body["properties"]["objectId"],
        sim.sp("collector").object_id.as_str()
    );
    assert_eq!(sim.get(&token, path).await.body["name"], "4711");
    assert_eq!(
        sim.arm(&token, Method::DELETE, path, None).await.status,
        StatusCode::OK
    );
    assert_eq!(sim.get(&token, path).await.status, StatusCode::NOT_FOUND);
    let r = sim
        .arm(
            &token,
            Method::PUT,
            "/providers/Microsoft.ManagementPartner/partners/abc?api-version=2018-02-01",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn resource_graph_pages_by_skip_token() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let subs = sim.subscriptions();
    let mut expected = 0;
    for s in &subs {
        let (_, a) = sim.get_all(&token, &format!("/subscriptions/{s}/resources?{RES}&$filter=resourceType eq 'Microsoft.Compute/virtualMachines'")).await;
        expected += a.len();
    }
    let mut seen = HashSet::new();
    let mut skip: Option<String> = None;
    loop {
        let mut options = json!({"$top": 5});
        if let Some(t) = &skip {
            options["$skipToken"] = json!(t);
        }
        let r = sim
            .arm(&token, Method::POST, "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01", Some(json!({
                "subscriptions": subs,
                "query": "Resources | where type =~ 'microsoft.compute/virtualmachines' | project id, name, type, location",
                "options": options,
            })))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["resultTruncated"], "false");
        assert_eq!(r.body["totalRecords"].as_u64(), Some(expected as u64));
        for row in r.body["data"].as_array().expect("data") {
            assert_eq!(row["type"], "microsoft.compute/virtualmachines");
            assert!(row.get("tags").is_none(), "projected away");
            assert!(seen.insert(row["id"].as_str().expect("id").to_string()));
        }
        match r.body["$skipToken"].as_str() {
            Some(t) => skip = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), expected);
    let r = sim
        .arm(
            &token,
            Method::POST,
            "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01",
            Some(json!({"query": "SecurityResources | take 1"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn paging_survives_deletes_between_pages() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let (_, all) = sim
        .get_all(&token, &format!("/subscriptions/{sub}/resources?{RES}"))
        .await;
    let first = sim
        .get(
            &token,
            &format!("/subscriptions/{sub}/resources?{RES}&$top=10"),
        )
        .await;
    let page1: Vec<String> = first.body["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    // Someone deletes a resource already listed; nothing else may be skipped.
    let r = sim
        .http
        .delete(format!("{}/_sim/resources", sim.url()))
        .query(&[("id", page1[3].as_str())])
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::OK);
    let (_, rest) = sim
        .get_all(&token, first.body["nextLink"].as_str().expect("next"))
        .await;
    let mut seen: Vec<String> = page1.clone();
    seen.extend(
        rest.iter()
            .map(|r| r["id"].as_str().expect("id").to_string()),
    );
    let expected: Vec<String> = all
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(seen, expected, "every resource exactly once, in order");
}

#[tokio::test]
async fn bad_input_is_refused_not_crashed_on() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let r = sim
        .get(
            &token,
            &format!("/subscriptions/{sub}/resources?{RES}&$filter=name eq ’x’ and é"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = sim
        .get(
            &token,
            &format!("/subscriptions/{sub}/resources?{RES}&$skiptoken=bm9wZQ"),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "InvalidSkipToken")
    );
    let r = sim.get(&token, &format!("/subscriptions/{sub}/resourceGroups/nope/providers/Microsoft.Storage/storageAccounts?api-version=2025-01-01")).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::NOT_FOUND, "ResourceGroupNotFound")
    );
    let r = sim
        .arm(
            &token,
            Method::POST,
            "/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01",
            Some(json!({"query": "Resources", "options": {"$skip": u64::MAX}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // A 401 names the subscription's tenant, so a client can find its authority.
    let r = sim
        .http
        .get(format!("{}/subscriptions/{sub}/resources?{RES}", sim.url()))
        .send()
        .await
        .expect("call");
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .expect("header")
        .to_string();
    assert!(
        challenge.contains(&format!("https://login.windows.net/{}", sim.tenant_id())),
        "{challenge}"
    );
}

#[tokio::test]
async fn tag_writes_may_be_accepted_for_polling() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let (status, _) = sim
        .control(Method::PUT, "/_sim/faults", json!({"rate_async_tags": 1.0}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let path = tag_path(&format!("/subscriptions/{sub}"));
    let r = sim
        .arm(
            &token,
            Method::PATCH,
            &path,
            Some(json!({"operation": "Merge", "properties": {"tags": {"polled": "yes"}}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("retry-after"), Some("1"));
    let location = r.header("location").expect("location").to_string();
    assert!(location.starts_with(&format!(
        "{}/subscriptions/{sub}/operationresults/",
        sim.url()
    )));
    let poll = sim.get(&token, &location).await;
    assert_eq!(
        poll.status,
        StatusCode::ACCEPTED,
        "still running on the first poll"
    );
    let done = sim.get(&token, &location).await;
    assert_eq!(done.status, StatusCode::OK);
    assert_eq!(done.body["properties"]["tags"]["polled"], "yes");
}

#[tokio::test]
async fn empty_pages_with_next_links_do_not_lose_items() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let (clean_pages, clean) = sim
        .get_all(
            &token,
            &format!("/subscriptions/{sub}/resources?{RES}&$top=20"),
        )
        .await;
    let (status, _) = sim
        .control(Method::PUT, "/_sim/faults", json!({"rate_empty_page": 0.5}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (pages, items) = sim
        .get_all(
            &token,
            &format!("/subscriptions/{sub}/resources?{RES}&$top=20"),
        )
        .await;
    assert_eq!(items, clean);
    assert!(
        pages > clean_pages,
        "some pages came back empty: {pages} vs {clean_pages}"
    );
}

#[tokio::test]
async fn existing_system_tags_do_not_block_merges() {
    let sim = start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscriptions()[0].clone();
    let (_, groups) = sim
        .get_all(
            &token,
            &format!("/subscriptions/{sub}/resourcegroups?{RES}"),
        )
        .await;
    let rg = groups[2]["name"].as_str().expect("rg").to_string();
    let (status, created) = sim
        .control(Method::POST, "/_sim/resources", json!({"subscription_id": sub, "resource_group": rg, "type": "Microsoft.Web/sites", "name": "app-linked",
            "location": "westeurope", "tags": {"hidden-link: /app-insights-resource-id": "/subscriptions/x/resourceGroups/y/providers/microsoft.insights/components/z"}}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let path = tag_path(created["id"].as_str().expect("id"));
    let r = sim
        .arm(
            &token,
            Method::PATCH,
            &path,
            Some(json!({"operation": "Merge", "properties": {"tags": {"team": "web"}}})),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "Azure's own tags stand: {}",
        r.body
    );
    let r = sim
        .arm(
            &token,
            Method::PATCH,
            &path,
            Some(json!({"operation": "Merge", "properties": {"tags": {"bad/name": "x"}}})),
        )
        .await;
    assert_eq!(
        r.error_code(),
        "InvalidTagNameCharacters",
        "the tags a request names are checked"
    );
}
