//! Resources of a subscription, with their tags, as the generic resource
//! list answers them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::client::AzureClient;
use crate::error::AzureError;
use crate::fields::{resource_group_of, time};
use crate::paging::Paged;
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
        self.list_stream(token, url, resource_from)
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
}
