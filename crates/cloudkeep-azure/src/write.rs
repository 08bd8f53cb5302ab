//! The write path: the only code in cloudkeep that changes Azure. A
//! `TagWriter` can issue the Tags API's `PATCH` (Merge, Delete) and nothing
//! else; role assignments and the partner link of the consent flow will
//! join it here.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};

use crate::client::{Answer, AzureClient};
use crate::error::{AzureError, arm_error};
use crate::inventory::tags_of;
use crate::token::AccessToken;

const TAGS_API: &str = "2025-04-01";
/// Polls of an accepted (202) tag write before giving up.
const MAX_POLLS: u32 = 30;

fn tags_url(client: &AzureClient, scope: &str) -> Result<Url, AzureError> {
    let mut segments: Vec<&str> = scope
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    segments.extend(["providers", "Microsoft.Resources", "tags", "default"]);
    client.arm_url(&segments, &[("api-version", TAGS_API)])
}

fn tags_from(answer: &Answer) -> Result<BTreeMap<String, String>, AzureError> {
    let body: Value = serde_json::from_slice(&answer.body)
        .map_err(|e| AzureError::Malformed(format!("a tags answer is not JSON: {e}")))?;
    Ok(tags_of(body.pointer("/properties/tags")))
}

impl AzureClient {
    /// The tags at a scope (a resource, resource group or subscription), live.
    pub async fn tags_at(
        &self,
        token: &AccessToken,
        scope: &str,
    ) -> Result<BTreeMap<String, String>, AzureError> {
        let url = tags_url(self, scope)?;
        let answer = self
            .send(Method::GET, &url, |r| r.bearer_auth(token.token.expose()))
            .await?;
        if !answer.status.is_success() {
            return Err(arm_error(answer.status, &answer.body));
        }
        tags_from(&answer)
    }
}

/// Writes tags, and only tags.
pub struct TagWriter<'a> {
    client: &'a AzureClient,
}

impl<'a> TagWriter<'a> {
    pub fn new(client: &'a AzureClient) -> Self {
        TagWriter { client }
    }

    /// Sets these tags, leaving the others as they are (`PATCH` Merge).
    pub async fn merge(
        &self,
        token: &AccessToken,
        scope: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, AzureError> {
        self.patch(token, scope, "Merge", tags).await
    }

    /// Removes these tags, each only if it still has the given value (`PATCH` Delete).
    pub async fn delete(
        &self,
        token: &AccessToken,
        scope: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, AzureError> {
        self.patch(token, scope, "Delete", tags).await
    }

    /// A tag PATCH; the same body sent twice has the same effect, so the
    /// client's retries are safe. A 202 is polled until it completes.
    async fn patch(
        &self,
        token: &AccessToken,
        scope: &str,
        operation: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, AzureError> {
        let url = tags_url(self.client, scope)?;
        let body = json!({ "operation": operation, "properties": { "tags": tags } });
        let answer = self
            .client
            .send(Method::PATCH, &url, |r| {
                r.bearer_auth(token.token.expose()).json(&body)
            })
            .await?;
        match answer.status {
            StatusCode::OK => tags_from(&answer),
            StatusCode::ACCEPTED => self.poll(token, &answer).await,
            status => Err(arm_error(status, &answer.body)),
        }
    }

    async fn poll(
        &self,
        token: &AccessToken,
        accepted: &Answer,
    ) -> Result<BTreeMap<String, String>, AzureError> {
        let location = accepted
            .headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| AzureError::Malformed("a 202 without a Location to poll".into()))?;
        let url = self.client.next_link(location)?;
        for _ in 0..MAX_POLLS {
            let wait = accepted
                .headers
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1)
                .min(30);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            let answer = self
                .client
                .send(Method::GET, &url, |r| r.bearer_auth(token.token.expose()))
                .await?;
            match answer.status {
                StatusCode::OK => return tags_from(&answer),
                StatusCode::ACCEPTED => continue,
                status => return Err(arm_error(status, &answer.body)),
            }
        }
        Err(AzureError::Service {
            status: 202,
            code: "OperationTimedOut".into(),
            message: format!("the tag write at {location} did not finish"),
        })
    }
}
