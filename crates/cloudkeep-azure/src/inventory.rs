//! Resources of a subscription, with their tags, as the generic resource
//! list answers them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::client::AzureClient;
use crate::error::AzureError;
use crate::error::truncate_raw;
use crate::fields::{lenient, resource_group_of, time, time_of};
use crate::paging::{Next, Page, PageRequest, Paged};
use crate::token::AccessToken;

const RESOURCES_API: &str = "2025-04-01";
/// Resource groups as `GET /subscriptions/{id}/resourcegroups` lists them.
const GROUPS_API: &str = "2021-04-01";
/// A subscription as `GET /subscriptions/{id}` answers it (Subscriptions_Get).
const SUBSCRIPTION_API: &str = "2022-12-01";

/// A resource group and its tags.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureResourceGroup {
    pub name: String,
    /// Empty when it has none (missing, `{}` or `null`).
    pub tags: BTreeMap<String, String>,
}

fn group_from(item: &Value) -> Result<AzureResourceGroup, AzureError> {
    let name = item
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if name.is_empty() {
        return Err(AzureError::Malformed(format!(
            "a resource group without a name: {item}"
        )));
    }
    Ok(AzureResourceGroup {
        name,
        tags: tags_of(item.get("tags")),
    })
}

/// One resource as ARM lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct AzureResource {
    pub id: String,
    pub name: String,
    pub resource_type: String,
    pub location: String,
    pub resource_group: String,
    /// Empty when the list carried none: a missing field, `{}`, `null` and
    /// `[]` all mean "no tags".
    pub tags: BTreeMap<String, String>,
    pub created: Option<DateTime<Utc>>,
    pub changed: Option<DateTime<Utc>>,
}

/// Tags as lists carry them: an object, or missing, `null` or `[]` for none.
pub(crate) fn tags_of(v: Option<&Value>) -> BTreeMap<String, String> {
    match v {
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    },
                )
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

pub(crate) fn resource_from(item: &Value) -> Result<AzureResource, AzureError> {
    let text = |k: &str| {
        item.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let id = text("id");
    if id.is_empty() {
        return Err(AzureError::Malformed(format!(
            "a resource without an id: {item}"
        )));
    }
    Ok(AzureResource {
        resource_group: resource_group_of(&id),
        name: text("name"),
        resource_type: text("type"),
        location: text("location"),
        tags: tags_of(item.get("tags")),
        created: time(&item["createdTime"]),
        changed: time(&item["changedTime"]),
        id,
    })
}

/// A page of the generic resource list, read into its items as it is
/// parsed (`resource_from` reads the same fields from a JSON tree).
#[derive(Deserialize)]
struct ResourcePage {
    /// Missing or `null` is empty; anything but a list is malformed.
    #[serde(default)]
    value: Option<Vec<ListedResource>>,
    #[serde(default, rename = "nextLink", deserialize_with = "lenient::string")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct ListedResource {
    #[serde(default, deserialize_with = "lenient::string")]
    id: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    name: Option<String>,
    #[serde(default, rename = "type", deserialize_with = "lenient::string")]
    resource_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::string")]
    location: Option<String>,
    #[serde(default, deserialize_with = "lenient::tags")]
    tags: BTreeMap<String, String>,
    #[serde(default, rename = "createdTime", deserialize_with = "lenient::string")]
    created: Option<String>,
    #[serde(default, rename = "changedTime", deserialize_with = "lenient::string")]
    changed: Option<String>,
}

fn resource_page(body: &[u8]) -> Result<Page<AzureResource>, AzureError> {
    let page: ResourcePage = serde_json::from_slice(body).map_err(|e| {
        AzureError::Malformed(format!(
            "the answer is not a list of resources ({e}): {}",
            truncate_raw(&String::from_utf8_lossy(body))
        ))
    })?;
    let items = page
        .value
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let id = r.id.unwrap_or_default();
            if id.is_empty() {
                return Err(AzureError::Malformed(format!(
                    "a resource without an id (named {:?}, of type {:?})",
                    r.name.unwrap_or_default(),
                    r.resource_type.unwrap_or_default()
                )));
            }
            Ok(AzureResource {
                resource_group: resource_group_of(&id),
                name: r.name.unwrap_or_default(),
                resource_type: r.resource_type.unwrap_or_default(),
                location: r.location.unwrap_or_default(),
                tags: r.tags,
                created: r.created.as_deref().and_then(time_of),
                changed: r.changed.as_deref().and_then(time_of),
                id,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Page {
        items,
        next: page
            .next_link
            .filter(|l| !l.trim().is_empty())
            .map(Next::Link),
    })
}

impl AzureClient {
    /// Every resource of a subscription with its tags and times, 1000 a page.
    pub async fn resources(
        &self,
        token: &AccessToken,
        subscription_id: &str,
    ) -> Result<Vec<AzureResource>, AzureError> {
        self.resources_stream(token, subscription_id).all().await
    }

    /// `resources` as a stream, a page (1000) in memory at a time.
    pub fn resources_stream<'a>(
        &'a self,
        token: &'a AccessToken,
        subscription_id: &str,
    ) -> Paged<'a, AzureResource> {
        let url = self.arm_url(
            &["subscriptions", subscription_id.trim(), "resources"],
            &[
                ("$expand", "createdTime,changedTime"),
                ("$top", "1000"),
                ("api-version", RESOURCES_API),
            ],
        );
        self.paged(token, url.map(PageRequest::get), resource_page)
    }

    /// Every resource group of a subscription with its tags.
    pub async fn resource_groups(
        &self,
        token: &AccessToken,
        subscription_id: &str,
    ) -> Result<Vec<AzureResourceGroup>, AzureError> {
        let url = self.arm_url(
            &["subscriptions", subscription_id.trim(), "resourcegroups"],
            &[("api-version", GROUPS_API)],
        );
        self.list_stream(token, url, group_from).all().await
    }

    /// The subscription's own tags (Subscriptions_Get's `tags`; none when
    /// it carries the field not at all).
    pub async fn subscription_tags(
        &self,
        token: &AccessToken,
        subscription_id: &str,
    ) -> Result<BTreeMap<String, String>, AzureError> {
        let url = self.arm_url(
            &["subscriptions", subscription_id.trim()],
            &[("api-version", SUBSCRIPTION_API)],
        );
        let v = self.get_object(token, url).await?;
        Ok(tags_of(v.get("tags")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_resources_and_their_many_ways_of_having_no_tags() {
        let r = resource_from(&json!({"id": "/subscriptions/s/resourceGroups/RG-1/providers/Microsoft.Compute/disks/d", "name": "d",
            "type": "Microsoft.Compute/disks", "location": "westeurope", "tags": {"env": "prod"}, "createdTime": "2024-01-02T03:04:05.1234567Z"}))
        .expect("resource");
        assert_eq!(r.resource_group, "RG-1");
        assert_eq!(r.tags.get("env").map(String::as_str), Some("prod"));
        assert!(r.created.is_some());
        for none in [json!(null), json!([]), json!({})] {
            assert!(tags_of(Some(&none)).is_empty());
        }
        assert!(tags_of(None).is_empty());
        assert!(resource_from(&json!({"name": "x"})).is_err());
        let g = group_from(&json!({"id": "/subscriptions/s/resourceGroups/my-resource-group", "name": "my-resource-group",
            "type": "Microsoft.Resources/resourceGroups", "location": "eastus", "tags": {"owner": "ann"},
            "properties": {"provisioningState": "Succeeded"}}))
        .expect("group");
        assert_eq!(g.tags.get("owner").map(String::as_str), Some("ann"));
        assert!(group_from(&json!({"id": "/subscriptions/s/resourceGroups/g"})).is_err());
    }

    /// A list page is read typed; each item as `resource_from` reads it
    /// from the JSON tree, whatever shape its fields come in.
    #[test]
    fn a_typed_page_reads_every_item_as_the_json_tree_does() {
        let id = "/subscriptions/s/resourceGroups/RG-1/providers/Microsoft.Compute/disks/d";
        let items = [
            json!({"id": id, "name": "d", "type": "Microsoft.Compute/disks", "location": "westeurope",
                "tags": {"env": "prod", "n": 5, "ok": true, "empty": null, "nested": {"a": [1]}},
                "createdTime": "2024-01-02T03:04:05.1234567Z", "changedTime": " 2024-01-03T00:00:00Z ",
                "sku": {"name": "Premium_LRS"}, "properties": {"diskSizeGB": 128}, "extra": [1, {"x": null}]}),
            json!({"id": id, "tags": null, "name": 7, "location": null, "createdTime": 12}),
            json!({"id": id, "tags": [], "type": ["x"], "changedTime": "not a time"}),
            json!({"id": id, "tags": {}, "location": {"name": "westeurope"}}),
            json!({"id": id, "tags": "env=prod"}),
            json!({"id": id}),
        ];
        let body =
            serde_json::to_vec(&json!({"value": items, "nextLink": "https://arm/x?$skiptoken=a"}))
                .expect("json");
        let page = resource_page(&body).expect("page");
        assert_eq!(
            page.next,
            Some(Next::Link("https://arm/x?$skiptoken=a".into()))
        );
        let tree: Vec<AzureResource> = items
            .iter()
            .map(|i| resource_from(i).expect("resource"))
            .collect();
        assert_eq!(page.items, tree);
        assert_eq!(page.items[0].tags.get("n").map(String::as_str), Some("5"));
        assert_eq!(
            page.items[0].tags.get("empty").map(String::as_str),
            Some("")
        );
        assert!(page.items[0].changed.is_some());

        // The page's own quirks: no items, a blank or odd next link.
        for (body, next) in [
            (json!({"value": [], "nextLink": "https://arm/y"}), true),
            (json!({"value": null, "nextLink": "  "}), false),
            (json!({"nextLink": null}), false),
            (json!({"value": [], "nextLink": 3}), false),
        ] {
            let page = resource_page(&serde_json::to_vec(&body).expect("json")).expect("page");
            assert!(page.items.is_empty());
            assert_eq!(page.next.is_some(), next, "{body}");
        }
        // Malformed: an item without an id, a value that is no list, not JSON.
        for body in [
            json!({"value": [{"name": "x", "type": "t"}]}).to_string(),
            json!({"value": {"id": id}}).to_string(),
            json!([{"id": id}]).to_string(),
            "{\"value\": [".to_string(),
        ] {
            assert!(
                matches!(
                    resource_page(body.as_bytes()),
                    Err(AzureError::Malformed(_))
                ),
                "{body}"
            );
        }
    }
}
