//! The typed reads against what the simulator holds: cost rows paged and
//! summed several ways, Defender scores, storage and Key Vault settings
//! with Azure's defaults (checked against the raw answers and moved with the
//! control API), role definitions, tenants, Resource Graph; streams that
//! stop asking when dropped; 403s as `Forbidden`.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Duration, NaiveDate, Utc};
use cloudkeep_azure::{
    AccessToken, AzureError, CostFilter, CostGranularity, CostGrouping, CostQuery, CostRow,
    CostType, GraphQuery, Paged,
};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::{self, Sim};

const COST_PATH_END: &str = "/providers/microsoft.costmanagement/query";
const GRAPH_PATH: &str = "/providers/Microsoft.ResourceGraph/resources";

fn date(v: &Value) -> NaiveDate {
    NaiveDate::parse_from_str(v.as_str().expect("a date"), "%Y-%m-%d").expect("date")
}

/// Equal up to the rounding of summing floats in another order.
fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

fn cost_calls(log: &[Value]) -> Vec<&Value> {
    log.iter()
        .filter(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.to_ascii_lowercase().ends_with(COST_PATH_END))
        })
        .collect()
}

fn per_day(rows: &[CostRow]) -> BTreeMap<NaiveDate, f64> {
    let mut days = BTreeMap::new();
    for r in rows {
        *days
            .entry(r.date.expect("a daily row has a date"))
            .or_insert(0.0) += r.cost;
    }
    days
}

fn total(rows: &[CostRow]) -> f64 {
    rows.iter().map(|r| r.cost).sum()
}

fn assert_same_days(a: &BTreeMap<NaiveDate, f64>, b: &BTreeMap<NaiveDate, f64>, what: &str) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (day, cost) in a {
        assert!(
            close(*cost, b[day]),
            "{what} on {day}: {cost} vs {}",
            b[day]
        );
    }
}

async fn cost(sim: &Sim, token: &AccessToken, scope: &str, query: &CostQuery) -> Vec<CostRow> {
    all(
        sim.client.cost_query(token, scope, query),
        &format!("{query:?}"),
    )
    .await
}

/// Every item of a list that must not fail.
async fn all<T: Send>(list: Paged<'_, T>, what: &str) -> Vec<T> {
    list.all().await.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// How many items a list has, or its error.
async fn len<T: Send>(list: Paged<'_, T>) -> Result<usize, AzureError> {
    list.all().await.map(|v| v.len())
}

/// The ids of the subscription's resources of a type, lower-cased.
async fn ids_of_type(sim: &Sim, token: &AccessToken, sub: &str, kind: &str) -> BTreeSet<String> {
    sim.client
        .resources(token, sub)
        .await
        .expect("resources")
        .into_iter()
        .filter(|r| r.resource_type.eq_ignore_ascii_case(kind))
        .map(|r| r.id.to_ascii_lowercase())
        .collect()
}

fn lower_ids<'a>(ids: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    ids.into_iter().map(|i| i.to_ascii_lowercase()).collect()
}

/// The raw list's items by lower-cased id.
fn raw_items(raw: &Value) -> BTreeMap<String, Value> {
    assert!(
        raw.get("nextLink").is_none_or(Value::is_null),
        "one page expected"
    );
    raw["value"]
        .as_array()
        .expect("value")
        .iter()
        .map(|v| {
            (
                v["id"].as_str().expect("id").to_ascii_lowercase(),
                v.clone(),
            )
        })
        .collect()
}

/// The raw list at `path` (one page) by lower-cased id, to compare fields
/// with, checked to name the same items as the typed list (`typed`, its
/// lower-cased ids).
async fn raw_by_id(
    sim: &Sim,
    token: &AccessToken,
    path: &str,
    api_version: &str,
    typed: BTreeSet<String>,
) -> BTreeMap<String, Value> {
    let raw = raw_items(&sim.raw_get(token, path, api_version).await);
    assert_eq!(typed, raw.keys().cloned().collect(), "{path}");
    raw
}

/// `raw_by_id` for `/subscriptions/{sub}/providers/{kind}`, after checking
/// that the typed list names the inventory's resources of that type.
async fn raw_list(
    sim: &Sim,
    token: &AccessToken,
    sub: &str,
    kind: &str,
    api_version: &str,
    typed: BTreeSet<String>,
) -> BTreeMap<String, Value> {
    assert_eq!(typed, ids_of_type(sim, token, sub, kind).await, "{kind}");
    let path = format!("/subscriptions/{sub}/providers/{kind}");
    raw_by_id(sim, token, &path, api_version, typed).await
}

#[tokio::test]
async fn cost_rows_page_and_add_up_however_they_are_grouped() {
    let sim = harness::start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscription_ids()[0].clone();
    let scope = format!("/subscriptions/{sub}");
    let today = date(&sim.scenario["today"]);
    let (from, to) = (today - Duration::days(30), today - Duration::days(1));
    let query = |g| CostQuery::new(CostType::ActualCost, from, to, g);

    let seq = sim.last_seq().await;
    let by_resource = cost(
        &sim,
        &token,
        &scope,
        &query(CostGranularity::Daily).group_by(CostGrouping::Dimension("ResourceId".into())),
    )
    .await;
    let log = sim.requests_since(seq).await;
    let calls = cost_calls(&log);
    assert!(
        calls.len() >= 2,
        "one page only: {} rows",
        by_resource.len()
    );
    assert!(
        by_resource.len() > 1000 * (calls.len() - 1),
        "{} rows",
        by_resource.len()
    );
    assert!(
        calls
            .iter()
            .all(|e| e["method"] == "POST" && e["status"] == 200)
    );
    assert!(
        calls[1..].iter().all(|e| e["query"]
            .as_str()
            .is_some_and(|q| q.contains("$skiptoken"))),
        "{calls:?}"
    );

    let days = per_day(&cost(&sim, &token, &scope, &query(CostGranularity::Daily)).await);
    assert_eq!(days.len(), 30, "a row a day: {days:?}");
    assert!(days.keys().all(|d| (from..=to).contains(d)));
    assert_same_days(&per_day(&by_resource), &days, "by resource");

    let whole = cost(&sim, &token, &scope, &query(CostGranularity::None)).await;
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].date, None);
    let sum: f64 = days.values().sum();
    assert!(
        sum > 0.0 && close(whole[0].cost, sum),
        "{} vs {sum}",
        whole[0].cost
    );
    let months = cost(&sim, &token, &scope, &query(CostGranularity::Monthly)).await;
    assert!(
        months
            .iter()
            .all(|m| m.date.is_some_and(|d| d.format("%d").to_string() == "01"))
    );
    assert!(close(total(&months), sum));

    // Resource ids come lower-cased, and each is one of the subscription's.
    let resources: BTreeSet<String> = sim
        .client
        .resources(&token, &sub)
        .await
        .expect("resources")
        .into_iter()
        .map(|r| r.id.to_ascii_lowercase())
        .collect();
    for r in &by_resource {
        let id = &r.groups["ResourceId"];
        assert!(id.is_empty() || resources.contains(id), "{id}");
        assert_eq!(r.currency, "USD");
    }

    let by_env = cost(
        &sim,
        &token,
        &scope,
        &query(CostGranularity::Daily).group_by(CostGrouping::TagKey("env".into())),
    )
    .await;
    assert_same_days(&per_day(&by_env), &days, "by tag");
    assert!(by_env.iter().any(|r| r.tags.is_empty()), "untagged costs");
    assert!(
        by_env
            .iter()
            .any(|r| r.tags.keys().any(|k| k.eq_ignore_ascii_case("env"))),
        "tagged costs"
    );
}

#[tokio::test]
async fn a_resource_group_costs_the_same_by_scope_filter_and_grouping() {
    let sim = harness::start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscription_ids()[1].clone();
    let scope = format!("/subscriptions/{sub}");
    let today = date(&sim.scenario["today"]);
    // Amortised, so a reservation's purchase (no resource group) is spread
    // over the resources it covers.
    let query = CostQuery::new(
        CostType::AmortizedCost,
        today - Duration::days(45),
        today - Duration::days(1),
        CostGranularity::None,
    );
    let groups = cost(
        &sim,
        &token,
        &scope,
        &query
            .clone()
            .group_by(CostGrouping::Dimension("ResourceGroupName".into())),
    )
    .await;
    assert!(groups.len() > 1, "{groups:?}");
    let rg = groups
        .iter()
        .map(|r| r.groups["ResourceGroupName"].clone())
        .find(|g| !g.is_empty())
        .expect("a resource group");
    let grouped: f64 = groups
        .iter()
        .filter(|r| r.groups["ResourceGroupName"].eq_ignore_ascii_case(&rg))
        .map(|r| r.cost)
        .sum();
    let filtered = cost(
        &sim,
        &token,
        &scope,
        &query.clone().filter(CostFilter::Dimension {
            name: "ResourceGroupName".into(),
            values: vec![rg.clone()],
        }),
    )
    .await;
    let at_group = cost(
        &sim,
        &token,
        &format!("{scope}/resourceGroups/{rg}"),
        &query,
    )
    .await;
    assert!(grouped > 0.0);
    assert!(
        close(total(&filtered), grouped),
        "{} vs {grouped}",
        total(&filtered)
    );
    assert!(
        close(total(&at_group), grouped),
        "{} vs {grouped}",
        total(&at_group)
    );

    // A period before the estate's first cost day: 204, no rows.
    let start = date(&sim.scenario["cost_start"]);
    let seq = sim.last_seq().await;
    let none = cost(
        &sim,
        &token,
        &scope,
        &CostQuery::new(
            CostType::ActualCost,
            start - Duration::days(60),
            start - Duration::days(31),
            CostGranularity::Daily,
        ),
    )
    .await;
    assert!(none.is_empty(), "{none:?}");
    let log = sim.requests_since(seq).await;
    assert_eq!(
        cost_calls(&log)
            .iter()
            .map(|e| e["status"].as_u64())
            .collect::<Vec<_>>(),
        [Some(204)]
    );

    // Refused before any request (and any query unit) is spent.
    let three = query
        .group_by(CostGrouping::Dimension("ResourceId".into()))
        .group_by(CostGrouping::Dimension("Meter".into()))
        .group_by(CostGrouping::TagKey("env".into()));
    let seq = sim.last_seq().await;
    match sim.client.cost_query(&token, &scope, &three).all().await {
        Err(AzureError::InvalidRequest(m)) => assert!(m.contains("at most 2"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(sim.requests_since(seq).await.is_empty());
}

#[tokio::test]
async fn secure_scores_are_the_sum_of_their_controls() {
    let sim = harness::start().await;
    let token = sim.token("collector").await;
    for sub in sim.subscription_ids() {
        let scores = all(sim.client.secure_scores(&token, &sub), "scores").await;
        let asc = sim
            .client
            .secure_score(&token, &sub)
            .await
            .expect("ascScore");
        assert_eq!(scores, vec![asc.clone()]);
        assert_eq!(asc.name, "ascScore");
        let controls = all(sim.client.secure_score_controls(&token, &sub), "controls").await;
        assert!(!controls.is_empty());
        let max: f64 = controls.iter().map(|c| c.score.max).sum();
        let current: f64 = controls.iter().map(|c| c.score.current).sum();
        // Real Azure's `ascScore.weight` is not the controls' healthy plus
        // unhealthy counts (881 against 265 in a recorded answer): only the
        // sums of `max` and `current` are checked against the score.
        let resources: u64 = controls.iter().map(|c| c.healthy + c.unhealthy).sum();
        assert!(close(asc.score.max, max), "{asc:?} {max}");
        // Azure rounds each control's points to hundredths.
        assert!(
            (asc.score.current - current).abs() <= 0.01 * controls.len() as f64,
            "{asc:?}"
        );
        assert!(
            asc.score.max > 0.0
                && (asc.score.fraction - asc.score.current / asc.score.max).abs() < 1e-3
        );
        assert!((0.0..=1.0).contains(&asc.score.fraction));
        assert!(asc.weight > 0 && resources > 0, "{asc:?}");
        let raw = sim
            .raw_get(
                &token,
                &format!("/subscriptions/{sub}/providers/Microsoft.Security/secureScoreControls"),
                "2020-01-01",
            )
            .await;
        let raw_names: Vec<&str> = raw["value"]
            .as_array()
            .expect("value")
            .iter()
            .map(|c| c["name"].as_str().expect("name"))
            .collect();
        assert_eq!(
            controls.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            raw_names
        );
    }
}

#[tokio::test]
async fn storage_accounts_carry_azure_s_defaults_and_follow_changes() {
    let sim = harness::start().await;
    let token = sim.token("collector").await;
    let (mut no_public_flag, mut no_tls) = (0, 0);
    let mut some_account = None;
    for sub in sim.subscription_ids() {
        let accounts = all(sim.client.storage_accounts(&token, &sub), "accounts").await;
        let ids = lower_ids(accounts.iter().map(|a| &a.id));
        let kind = "Microsoft.Storage/storageAccounts";
        let raw = raw_list(&sim, &token, &sub, kind, "2025-01-01", ids).await;
        for a in &accounts {
            let p = &raw[&a.id.to_ascii_lowercase()]["properties"];
            no_public_flag += usize::from(p.get("allowBlobPublicAccess").is_none());
            no_tls += usize::from(p.get("minimumTlsVersion").is_none());
            let said = |key: &str, default: &str| p[key].as_str().unwrap_or(default).to_string();
            assert_eq!(
                a.allow_blob_public_access,
                p["allowBlobPublicAccess"].as_bool().unwrap_or(false),
                "{a:?}"
            );
            assert_eq!(
                a.minimum_tls_version,
                said("minimumTlsVersion", "TLS1_0"),
                "{a:?}"
            );
            assert_eq!(
                a.public_network_access,
                said("publicNetworkAccess", "Enabled"),
                "{a:?}"
            );
            assert_eq!(
                a.network_default_action,
                p["networkAcls"]["defaultAction"]
                    .as_str()
                    .unwrap_or("Allow"),
                "{a:?}"
            );
            assert_eq!(
                a.https_only,
                p["supportsHttpsTrafficOnly"].as_bool().unwrap_or(true)
            );
            assert!(!a.resource_group.is_empty() && !a.sku.is_empty());
        }
        some_account = some_account.or(accounts.into_iter().next());
    }
    assert!(
        no_public_flag > 0 && no_tls > 0,
        "the defaults were never needed"
    );

    let account = some_account.expect("a storage account");
    for open in [
        !account.allow_blob_public_access,
        account.allow_blob_public_access,
    ] {
        sim.control(
            Method::POST,
            "/_sim/storage/public-access",
            json!({"account_id": account.id, "allow_blob_public_access": open}),
        )
        .await;
        let sub = account.id.split('/').nth(2).expect("subscription");
        let now = all(sim.client.storage_accounts(&token, sub), "accounts").await;
        let seen = now
            .iter()
            .find(|a| a.id == account.id)
            .expect("still there");
        assert_eq!(seen.allow_blob_public_access, open);
    }
}

#[tokio::test]
async fn key_vaults_keys_and_secrets_match_what_azure_says() {
    let sim = harness::start().await;
    let token = sim.token("collector").await;
    let (mut rotating, mut unmanaged, mut expiring_secrets, mut keys_seen) = (0, 0, 0, Vec::new());
    for sub in sim.subscription_ids() {
        let vaults = all(sim.client.key_vaults(&token, &sub), "vaults").await;
        let ids = lower_ids(vaults.iter().map(|v| &v.id));
        let kind = "Microsoft.KeyVault/vaults";
        let raw = raw_list(&sim, &token, &sub, kind, "2024-11-01", ids).await;
        for v in &vaults {
            let p = &raw[&v.id.to_ascii_lowercase()]["properties"];
            let flag = |key: &str, default: bool| p[key].as_bool().unwrap_or(default);
            assert_eq!(v.soft_delete, flag("enableSoftDelete", true), "{v:?}");
            assert_eq!(
                v.purge_protection,
                flag("enablePurgeProtection", false),
                "{v:?}"
            );
            assert_eq!(
                v.rbac_authorization,
                flag("enableRbacAuthorization", false),
                "{v:?}"
            );
            assert_eq!(
                v.public_network_access,
                p["publicNetworkAccess"].as_str().unwrap_or("Enabled")
            );
            assert_eq!(v.vault_uri, p["vaultUri"].as_str().expect("uri"));

            let keys = all(sim.client.vault_keys(&token, &v.id), "keys").await;
            let ids = lower_ids(keys.iter().map(|k| &k.id));
            let path = format!("{}/keys", v.id);
            let raw_keys = raw_by_id(&sim, &token, &path, "2024-11-01", ids).await;
            for k in &keys {
                let p = &raw_keys[&k.id.to_ascii_lowercase()]["properties"];
                assert_eq!(
                    k.times.expires.map(|t| t.timestamp()),
                    p["attributes"]["exp"].as_i64(),
                    "{k:?}"
                );
                assert_eq!(
                    k.rotation_policy.is_some(),
                    p.get("rotationPolicy").is_some(),
                    "{k:?}"
                );
                match &k.rotation_policy {
                    Some(policy) if policy.rotates() => rotating += 1,
                    _ => unmanaged += 1,
                }
            }
            keys_seen.extend(keys);

            let secrets = all(sim.client.vault_secrets(&token, &v.id), "secrets").await;
            let ids = lower_ids(secrets.iter().map(|s| &s.id));
            let path = format!("{}/secrets", v.id);
            let raw_secrets = raw_by_id(&sim, &token, &path, "2024-11-01", ids).await;
            for s in &secrets {
                let exp =
                    raw_secrets[&s.id.to_ascii_lowercase()]["properties"]["attributes"]["exp"]
                        .as_i64();
                assert_eq!(s.times.expires.map(|t| t.timestamp()), exp, "{s:?}");
                expiring_secrets += usize::from(exp.is_some());
            }
        }
    }
    assert!(
        rotating > 0 && unmanaged > 0,
        "{rotating} rotating, {unmanaged} not"
    );
    assert!(expiring_secrets > 0);

    // Moved in the portal: an expired key, a rotated one.
    let key = keys_seen.first().expect("a key");
    let vault_of = |id: &str| id.rsplit_once("/keys/").expect("key id").0.to_string();
    sim.control(Method::POST, "/_sim/keys/expire", json!({"key_id": key.id}))
        .await;
    let after = all(sim.client.vault_keys(&token, &vault_of(&key.id)), "keys").await;
    let expired = after.iter().find(|k| k.id == key.id).expect("the key");
    assert!(
        expired.times.expires.is_some_and(|e| e < Utc::now()),
        "{expired:?}"
    );
    sim.control(Method::POST, "/_sim/keys/rotate", json!({"key_id": key.id}))
        .await;
    let after = all(sim.client.vault_keys(&token, &vault_of(&key.id)), "keys").await;
    let rotated = after.iter().find(|k| k.id == key.id).expect("the key");
    assert!(
        rotated.times.created > key.times.created,
        "{rotated:?} after {key:?}"
    );
    assert!(
        rotated.times.expires.is_some_and(|e| e > Utc::now()),
        "{rotated:?}"
    );
}

#[tokio::test]
async fn reads_role_definitions_and_tenants() {
    let sim = harness::start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscription_ids()[0].clone();
    for (id, name) in [
        ("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader"),
        ("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner"),
        ("39bc4728-0917-49c7-9d2c-d95423bc2eb4", "Security Reader"),
        (
            "72fafb9e-0641-4937-9268-a91bfd8191a3",
            "Cost Management Reader",
        ),
    ] {
        for (scope, given) in [
            (format!("/subscriptions/{sub}"), id.to_ascii_uppercase()),
            (
                "/".to_string(),
                format!("/providers/Microsoft.Authorization/roleDefinitions/{id}"),
            ),
        ] {
            let d = sim
                .client
                .role_definition(&token, &scope, &given)
                .await
                .unwrap_or_else(|e| panic!("{given} at {scope}: {e}"));
            assert_eq!((d.name.as_str(), d.role_name.as_str()), (id, name));
            assert_eq!(d.role_type, "BuiltInRole");
            assert!(!d.actions.is_empty());
        }
    }
    let reader = sim
        .client
        .role_definition(&token, "/", "acdd72a7-3385-48ef-bd42-f606fba81ae7")
        .await
        .expect("reader");
    assert_eq!(reader.actions, ["*/read"]);
    assert!(reader.not_actions.is_empty() && reader.assignable_scopes == ["/"]);
    match sim
        .client
        .role_definition(&token, "/", "00000000-0000-0000-0000-000000000000")
        .await
    {
        Err(AzureError::NotFound { code, .. }) => assert_eq!(code, "RoleDefinitionDoesNotExist"),
        other => panic!("{other:?}"),
    }

    let tenants = all(sim.client.tenants(&token), "tenants").await;
    assert_eq!(tenants.len(), 1, "{tenants:?}");
    let t = &tenants[0];
    assert_eq!(t.tenant_id, sim.tenant_id());
    assert_eq!(
        t.display_name,
        sim.tenant()["display_name"].as_str().expect("name")
    );
    assert_eq!(
        t.default_domain,
        sim.tenant()["default_domain"].as_str().expect("domain")
    );
    assert!(t.domains.contains(&t.default_domain));
}

#[tokio::test]
async fn resource_graph_pages_through_the_whole_estate() {
    let sim = harness::start().await;
    let token = sim.token("collector").await;
    let subs = sim.subscription_ids();
    let mut expected = BTreeSet::new();
    for sub in &subs {
        expected.extend(
            sim.client
                .resources(&token, sub)
                .await
                .expect("resources")
                .into_iter()
                .map(|r| r.id.to_ascii_lowercase()),
        );
    }
    let graph = all(sim.client.graph_resources(&token, &subs), "graph").await;
    assert_eq!(lower_ids(graph.iter().map(|r| &r.id)), expected);
    assert!(
        graph
            .iter()
            .all(|r| !r.resource_group.is_empty() && !r.resource_type.is_empty())
    );

    // Small pages: every row once, over as many requests as pages.
    let seq = sim.last_seq().await;
    let query = GraphQuery {
        page_size: Some(40),
        ..GraphQuery::new("Resources | project id, name")
    };
    let rows = all(sim.client.resource_graph(&token, &query), "rows").await;
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_ascii_lowercase())
        .collect();
    assert_eq!(ids.len(), expected.len(), "no row twice or missing");
    assert_eq!(ids.iter().cloned().collect::<BTreeSet<_>>(), expected);
    let pages = sim
        .requests_since(seq)
        .await
        .iter()
        .filter(|e| e["path"] == GRAPH_PATH)
        .count();
    assert_eq!(pages, expected.len().div_ceil(40));
}

#[tokio::test]
async fn a_dropped_stream_asks_for_no_further_page() {
    let sim = harness::start().await;
    let token = sim.token("collector").await;
    let sub = sim.subscription_ids()[0].clone();
    let today = date(&sim.scenario["today"]);
    let query = CostQuery::new(
        CostType::ActualCost,
        today - Duration::days(30),
        today - Duration::days(1),
        CostGranularity::Daily,
    )
    .group_by(CostGrouping::Dimension("ResourceId".into()));
    let scope = format!("/subscriptions/{sub}");

    let seq = sim.last_seq().await;
    let mut rows = sim.client.cost_query(&token, &scope, &query);
    let first = rows.next().await.expect("a row").expect("no error");
    // The rest of the first page is there without asking again.
    for _ in 0..900 {
        rows.next().await.expect("a row").expect("no error");
    }
    drop(rows);
    assert!(first.cost.is_finite());
    let log = sim.requests_since(seq).await;
    assert_eq!(cost_calls(&log).len(), 1, "{log:?}");
    // The same query read to the end takes several pages, so the one
    // above really stopped early.
    let every = all(sim.client.cost_query(&token, &scope, &query), "rows").await;
    assert!(
        cost_calls(&sim.requests_since(seq).await).len() > 2,
        "{} rows",
        every.len()
    );

    let seq = sim.last_seq().await;
    let mut graph = sim.client.resource_graph(
        &token,
        &GraphQuery {
            page_size: Some(10),
            ..GraphQuery::new("Resources | project id")
        },
    );
    graph.next().await.expect("a row").expect("no error");
    drop(graph);
    let log = sim.requests_since(seq).await;
    assert_eq!(
        log.iter().filter(|e| e["path"] == GRAPH_PATH).count(),
        1,
        "{log:?}"
    );
}

#[tokio::test]
async fn a_principal_without_the_role_is_forbidden_every_read() {
    let sim = harness::start().await;
    let collector = sim.token("collector").await;
    let reader = sim.sp("reader-only");
    let subs = sim.subscription_ids();
    let (lost, kept) = (subs[0].clone(), subs[1].clone());
    let vault = all(sim.client.key_vaults(&collector, &lost), "vaults")
        .await
        .into_iter()
        .next()
        .expect("a vault");
    // Take away every assignment that gave reader-only its reads there.
    for (role, scope) in sim.roles_of("reader-only") {
        let scope_lower = scope.to_ascii_lowercase();
        if scope == "/" || scope_lower == format!("/subscriptions/{}", lost.to_ascii_lowercase()) {
            sim.control(
                Method::DELETE,
                "/_sim/role-assignments",
                json!({"principal_id": reader.object_id, "role": role, "scope": scope}),
            )
            .await;
        }
    }
    let token = sim.token("reader-only").await;
    let today = date(&sim.scenario["today"]);
    let query = CostQuery::new(
        CostType::ActualCost,
        today - Duration::days(7),
        today - Duration::days(1),
        CostGranularity::Daily,
    );
    let forbidden = |what: &str, r: Result<usize, AzureError>| match r {
        Err(AzureError::Forbidden { code, message }) => {
            assert_eq!(code, "AuthorizationFailed", "{what}");
            assert!(
                message
                    .to_ascii_lowercase()
                    .contains(&lost.to_ascii_lowercase()),
                "{what}: {message}"
            );
        }
        other => panic!("{what}: {other:?}"),
    };
    let c = &sim.client;
    let scope = format!("/subscriptions/{lost}");
    forbidden("cost", len(c.cost_query(&token, &scope, &query)).await);
    forbidden("scores", len(c.secure_scores(&token, &lost)).await);
    forbidden("score", c.secure_score(&token, &lost).await.map(|_| 1));
    forbidden(
        "controls",
        len(c.secure_score_controls(&token, &lost)).await,
    );
    forbidden("storage", len(c.storage_accounts(&token, &lost)).await);
    forbidden("vaults", len(c.key_vaults(&token, &lost)).await);
    forbidden("keys", len(c.vault_keys(&token, &vault.id)).await);
    forbidden("secrets", len(c.vault_secrets(&token, &vault.id)).await);
    // Where it still holds Reader, the same reads work.
    let other = format!("/subscriptions/{kept}");
    assert!(!cost(&sim, &token, &other, &query).await.is_empty());
    all(c.storage_accounts(&token, &kept), "storage").await;
    c.secure_score(&token, &kept).await.expect("score");
}
