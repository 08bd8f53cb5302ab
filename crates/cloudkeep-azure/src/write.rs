//! The write path: the only code in cloudkeep that changes Azure. A
//! `TagWriter` can issue the Tags API's `PATCH` (Merge, Delete) and nothing
//! else; a `ConsentWriter`, used only by the consent flow, can create role
//! assignments for cloudkeep's own service principal and the Partner Admin
//! Link, and nothing else (it cannot remove or change either).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};

use crate::client::{Answer, AzureClient};
use crate::error::{AzureError, arm_error};
use crate::inventory::tags_of;
use crate::token::AccessToken;

const TAGS_API: &str = "2025-04-01";
const AUTHORIZATION_API: &str = "2022-04-01";
const PARTNER_API: &str = "2018-02-01";
/// Polls of an accepted (202) tag write before giving up.
const MAX_POLLS: u32 = 30;

fn tags_url(client: &AzureClient, scope: &str) -> Result<Url, AzureError> {
    client.scope_url(
        scope,
        &["providers", "Microsoft.Resources", "tags", "default"],
        &[("api-version", TAGS_API)],
    )
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
        let answer = self.send_as(token, Method::GET, &url, |r| r).await?;
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
            .send_as(token, Method::PATCH, &url, |r| r.json(&body))
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
            let answer = self.client.send_as(token, Method::GET, &url, |r| r).await?;
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

/// What asking for a role assignment achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    /// Azure created it; its resource id, for whoever removes it later.
    Created(String),
    /// The principal already held the role at that scope.
    AlreadyThere,
}

/// What asking for the Partner Admin Link achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartnerLink {
    /// The principal is linked to this partner id (now or already).
    Linked,
    /// The principal is linked to another partner id, which is left alone.
    LinkedElsewhere(String),
}

/// Creates role assignments and the Partner Admin Link, and nothing else.
pub struct ConsentWriter<'a> {
    client: &'a AzureClient,
}

impl<'a> ConsentWriter<'a> {
    pub fn new(client: &'a AzureClient) -> Self {
        ConsentWriter { client }
    }

    /// Assigns `role_definition_id` (a built-in role's GUID) to the service
    /// principal `principal_id` on a subscription, with the signed-in
    /// user's token. The assignment's name is chosen once, so the client's
    /// retries of the `PUT` cannot create it twice; a 409
    /// `RoleAssignmentExists` means the principal already holds the role.
    pub async fn assign_role(
        &self,
        token: &AccessToken,
        subscription_id: &str,
        role_definition_id: &str,
        principal_id: &str,
    ) -> Result<Assignment, AzureError> {
        let subscription_id = subscription_id.trim();
        let name = uuid::Uuid::new_v4().to_string();
        let url = self.client.arm_url(
            &[
                "subscriptions",
                subscription_id,
                "providers",
                "Microsoft.Authorization",
                "roleAssignments",
                &name,
            ],
            &[("api-version", AUTHORIZATION_API)],
        )?;
        let body = json!({ "properties": {
            "roleDefinitionId": format!(
                "/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{}",
                role_definition_id.trim()
            ),
            "principalId": principal_id.trim(),
            // Named, so a principal created moments ago (replication delay) is accepted.
            "principalType": "ServicePrincipal",
        }});
        let answer = self
            .client
            .send_as(token, Method::PUT, &url, |r| r.json(&body))
            .await?;
        match answer.status {
            StatusCode::OK | StatusCode::CREATED => Ok(Assignment::Created(format!(
                "/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleAssignments/{name}"
            ))),
            status => match arm_error(status, &answer.body) {
                AzureError::Service { code, .. } if code == "RoleAssignmentExists" => {
                    Ok(Assignment::AlreadyThere)
                }
                other => Err(other),
            },
        }
    }

    /// Links the token's principal to the partner id
    /// (`PUT /providers/Microsoft.ManagementPartner/partners/{id}`, no body).
    pub async fn link_partner(
        &self,
        token: &AccessToken,
        partner_id: &str,
    ) -> Result<PartnerLink, AzureError> {
        let partner_id = partner_id.trim();
        let url = self.client.arm_url(
            &[
                "providers",
                "Microsoft.ManagementPartner",
                "partners",
                partner_id,
            ],
            &[("api-version", PARTNER_API)],
        )?;
        let answer = self.client.send_as(token, Method::PUT, &url, |r| r).await?;
        if answer.status.is_success() {
            return Ok(PartnerLink::Linked);
        }
        match arm_error(answer.status, &answer.body) {
            AzureError::Service { code, .. } if code == "PartnerAlreadyExists" => {
                let current = self.linked_partner(token).await?;
                Ok(if current.as_deref() == Some(partner_id) {
                    PartnerLink::Linked
                } else {
                    PartnerLink::LinkedElsewhere(current.unwrap_or_default())
                })
            }
            other => Err(other),
        }
    }

    /// The partner id the token's principal is linked to, if any.
    async fn linked_partner(&self, token: &AccessToken) -> Result<Option<String>, AzureError> {
        let url = self.client.arm_url(
            &["providers", "Microsoft.ManagementPartner", "partners"],
            &[("api-version", PARTNER_API)],
        )?;
        let answer = self.client.send_as(token, Method::GET, &url, |r| r).await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(arm_error(answer.status, &answer.body));
        }
        let body: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| AzureError::Malformed(format!("a partner answer is not JSON: {e}")))?;
        Ok(body
            .pointer("/properties/partnerId")
            .and_then(Value::as_str)
            .map(str::to_string))
    }
}
