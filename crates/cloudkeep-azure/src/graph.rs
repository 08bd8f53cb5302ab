//! Azure Resource Graph queries (`POST /providers/Microsoft.ResourceGraph/resources`,
//! api-version 2024-04-01): KQL over the estate across subscriptions,
//! paged by sending the same body again with `options.$skipToken`.

use serde_json::{Map, Value, json};

use crate::client::AzureClient;
use crate::error::{AzureError, truncate_raw};
use crate::fields::flag;
use crate::inventory::{AzureResource, resource_from};
use crate::paging::{Next, Page, PageRequest, Paged, tree};
use crate::token::AccessToken;

const GRAPH_API: &str = "2024-04-01";
/// The query `graph_resources` runs; Resource Graph pages stably only when
/// `id` is among the projected columns.
const RESOURCES_QUERY: &str =
    "Resources | project id, name, type, location, resourceGroup, subscriptionId, tags";

/// A Resource Graph query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphQuery {
    /// KQL, e.g. `Resources | where type =~ 'microsoft.storage/storageaccounts' | project id, name`.
    /// Project `id` for results beyond one page: Resource Graph pages only
    /// results it can order by it.
    pub query: String,
    /// The subscriptions to query; empty for all the principal can read.
    pub subscriptions: Vec<String>,
    /// Rows a page (Resource Graph's default 100, at most 1000).
    pub page_size: Option<u32>,
}

impl GraphQuery {
    pub fn new(query: impl Into<String>) -> Self {
        GraphQuery {
            query: query.into(),
            subscriptions: Vec::new(),
            page_size: None,
        }
    }

    fn body(&self) -> Value {
        let mut options = json!({ "resultFormat": "objectArray" });
        if let Some(top) = self.page_size {
            options["$top"] = json!(top.clamp(1, 1000));
        }
        let mut body = json!({ "query": self.query, "options": options });
        if !self.subscriptions.is_empty() {
            body["subscriptions"] = json!(self.subscriptions);
        }
        body
    }
}

/// The rows of `data`: objects as they are, or a table (`columns`, `rows`)
/// as objects keyed by column name.
fn rows_of(data: &Value) -> Result<Vec<Map<String, Value>>, AzureError> {
    let bad = || {
        AzureError::Malformed(format!(
            "Resource Graph 'data' is neither rows nor a table: {}",
            truncate_raw(&data.to_string())
        ))
    };
    match data {
        Value::Null => Ok(Vec::new()),
        Value::Array(rows) => rows
            .iter()
            .map(|r| r.as_object().cloned().ok_or_else(bad))
            .collect(),
        Value::Object(table) => {
            let names: Vec<String> = table
                .get("columns")
                .and_then(Value::as_array)
                .ok_or_else(bad)?
                .iter()
                .map(|c| {
                    c.get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                })
                .collect();
            let rows = table
                .get("rows")
                .and_then(Value::as_array)
                .ok_or_else(bad)?;
            rows.iter()
                .map(|r| {
                    let cells = r
                        .as_array()
                        .filter(|c| c.len() == names.len())
                        .ok_or_else(bad)?;
                    Ok(names.iter().cloned().zip(cells.iter().cloned()).collect())
                })
                .collect()
        }
        _ => Err(bad()),
    }
}

fn graph_page(page: &Value) -> Result<Page<Map<String, Value>>, AzureError> {
    let items = rows_of(page.get("data").unwrap_or(&Value::Null))?;
    let next = match page.get("$skipToken").or_else(|| page.get("skipToken")) {
        Some(Value::String(t)) if !t.trim().is_empty() => Some(Next::SkipToken(t.clone())),
        _ => None,
    };
    // `resultTruncated` comes as "false" or false. Truncated with no token
    // means rows were dropped that no page will bring: say so rather than
    // answer a shorter list.
    if next.is_none() && flag(page.get("resultTruncated")) == Some(true) {
        return Err(AzureError::InvalidRequest(
            "Resource Graph truncated the result and offered no next page; project `id` in the query so that it can be paged".to_string(),
        ));
    }
    Ok(Page { items, next })
}

impl AzureClient {
    /// Runs a Resource Graph query and streams its rows, a page at a time.
    pub fn resource_graph<'a>(
        &'a self,
        token: &'a AccessToken,
        query: &GraphQuery,
    ) -> Paged<'a, Map<String, Value>> {
        let url = self.arm_url(
            &["providers", "Microsoft.ResourceGraph", "resources"],
            &[("api-version", GRAPH_API)],
        );
        let first = url.map(|url| PageRequest::post(url, query.body()));
        self.paged(token, first, tree(graph_page))
    }

    /// Every resource of the given subscriptions (all readable ones when
    /// empty) through Resource Graph, 1000 a page: the inventory at scale.
    /// Resource Graph lower-cases types and groups, and carries no created
    /// or changed times.
    pub fn graph_resources<'a>(
        &'a self,
        token: &'a AccessToken,
        subscriptions: &[String],
    ) -> Paged<'a, AzureResource> {
        let query = GraphQuery {
            query: RESOURCES_QUERY.to_string(),
            subscriptions: subscriptions.to_vec(),
            page_size: Some(1000),
        };
        self.resource_graph(token, &query)
            .and_then(|row| resource_from(&Value::Object(row)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_pages_as_the_examples_give_them() {
        // ResourceGraph_Resources_FirstPage.json
        let p = graph_page(&json!({"totalRecords": 386, "count": 1, "resultTruncated": "false", "facets": [],
            "$skipToken": "eyAibm8iOiAibHVjayIsICJidXQiOiAibmljZSIsICJ0cnkiOiAiISIgfQ==",
            "data": [{"id": "/subscriptions/c/resourceGroups/RG1/providers/Microsoft.Compute/disks/d",
                "name": "d", "type": "microsoft.compute/disks", "location": "eastus"}]}))
        .expect("page");
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.items[0]["name"], "d");
        assert!(matches!(p.next, Some(Next::SkipToken(_))));
        let table = graph_page(&json!({"resultTruncated": false,
            "data": {"columns": [{"name": "id", "type": "string"}, {"name": "n", "type": "integer"}],
                "rows": [["a", 1], ["b", 2]]}}))
        .expect("table");
        assert_eq!(table.items[1]["n"], 2);
        assert!(table.next.is_none());
        assert!(matches!(
            graph_page(&json!({"resultTruncated": "true", "data": []})),
            Err(AzureError::InvalidRequest(_))
        ));
        assert!(matches!(
            graph_page(&json!({"data": [1]})),
            Err(AzureError::Malformed(_))
        ));
        let body = GraphQuery {
            page_size: Some(5000),
            ..GraphQuery::new("Resources")
        }
        .body();
        assert_eq!(body["options"]["$top"], 1000);
        assert!(body.get("subscriptions").is_none());
    }
}
