//! Validating a service principal before anything is stored: a token, the
//! subscriptions it sees, and its roles on each, reported plainly.

use std::collections::BTreeSet;

use cloudkeep_azure::{AccessToken, AzureError, CredentialErrorKind};
use cloudkeep_domain::{SecretString, SyncLevel};

use crate::wire::{MissingRole, PermissionReport};
use crate::{ApiError, AppState};

/// Built-in roles cloudkeep recommends, least privilege first.
const READER: (&str, &str) = ("Reader", "acdd72a7-3385-48ef-bd42-f606fba81ae7");
const COST_READER: (&str, &str) = (
    "Cost Management Reader",
    "72fafb9e-0641-4937-9268-a91bfd8191a3",
);
const SECURITY_READER: (&str, &str) = ("Security Reader", "39bc4728-0917-49c7-9d2c-d95423bc2eb4");
const TAG_CONTRIBUTOR: (&str, &str) = ("Tag Contributor", "4a9ae827-6dc8-4573-8ac7-8239d42aa03f");
const CONTRIBUTOR: (&str, &str) = ("Contributor", "b24988ac-6180-42a0-ab88-20f7382dd24c");
const OWNER: (&str, &str) = ("Owner", "8e3af657-a8ff-443c-a75c-2fe8c4bcb635");
pub const RECOMMENDED: [(&str, &str); 4] = [READER, COST_READER, SECURITY_READER, TAG_CONTRIBUTOR];
const KNOWN: [(&str, &str); 6] = [
    READER,
    COST_READER,
    SECURITY_READER,
    TAG_CONTRIBUTOR,
    CONTRIBUTOR,
    OWNER,
];

/// Each feature and the roles that grant it.
const FEATURES: &[(&str, &[&str])] = &[
    ("inventory", &["Reader", "Contributor", "Owner"]),
    (
        "tag_read",
        &["Reader", "Tag Contributor", "Contributor", "Owner"],
    ),
    (
        "tag_write_back",
        &["Tag Contributor", "Contributor", "Owner"],
    ),
    (
        "spend",
        &["Cost Management Reader", "Reader", "Contributor", "Owner"],
    ),
    (
        "secure_score",
        &["Security Reader", "Reader", "Contributor", "Owner"],
    ),
    (
        "security_evidence",
        &["Reader", "Security Reader", "Contributor", "Owner"],
    ),
];

/// What a principal holding `role_ids` can and cannot do on a subscription.
pub fn assess(role_ids: &[String]) -> PermissionReport {
    let present: BTreeSet<&str> = KNOWN
        .iter()
        .filter(|(_, id)| role_ids.iter().any(|r| r.eq_ignore_ascii_case(id)))
        .map(|(n, _)| *n)
        .collect();
    let enabled = |feature_roles: &[&str]| feature_roles.iter().any(|r| present.contains(r));
    let features_enabled: Vec<String> = FEATURES
        .iter()
        .filter(|(_, roles)| enabled(roles))
        .map(|(f, _)| f.to_string())
        .collect();
    let features_disabled: Vec<String> = FEATURES
        .iter()
        .filter(|(_, roles)| !enabled(roles))
        .map(|(f, _)| f.to_string())
        .collect();
    let covered_by_broad = present.contains("Owner") || present.contains("Contributor");
    let roles_missing = RECOMMENDED
        .iter()
        .filter(|(name, _)| !present.contains(name) && !covered_by_broad)
        .map(|(name, _)| MissingRole {
            role: name.to_string(),
            features_disabled: FEATURES
                .iter()
                .filter(|(_, roles)| roles.contains(name) && !enabled(roles))
                .map(|(f, _)| f.to_string())
                .collect(),
        })
        .collect();
    PermissionReport {
        roles_present: present.iter().map(|s| s.to_string()).collect(),
        roles_missing,
        features_enabled,
        features_disabled,
    }
}

/// The sync level a new subscription starts at: read and write tags when
/// the principal may write them, else what it can do.
pub fn initial_level(report: &PermissionReport) -> SyncLevel {
    let has = |f: &str| report.features_enabled.iter().any(|e| e == f);
    if !has("inventory") {
        SyncLevel::NoResources
    } else if has("tag_write_back") && has("tag_read") {
        SyncLevel::ReadWriteTags
    } else if has("tag_read") {
        SyncLevel::ReadTagsOnly
    } else {
        SyncLevel::NoTags
    }
}

/// Turns an Azure failure during validation into a 422 that says what is
/// wrong and how to fix it (or 502 when Azure could not be reached).
pub fn explain(e: AzureError) -> ApiError {
    let nothing = "Nothing was stored.";
    match e {
        AzureError::Credential {
            kind,
            code,
            message,
        } => {
            let code_text = code.map(|c| format!(" (AADSTS{c})")).unwrap_or_default();
            let (api_code, advice) = match kind {
                CredentialErrorKind::WrongSecret => (
                    "wrong_secret",
                    "The client secret is wrong: paste the secret's Value from the app registration's 'Certificates & secrets' page, not its Secret ID.",
                ),
                CredentialErrorKind::ExpiredSecret => (
                    "expired_secret",
                    "The client secret has expired: create a new one in the app registration's 'Certificates & secrets' page and use it here.",
                ),
                CredentialErrorKind::UnknownApplication => (
                    "unknown_application",
                    "No application with this client id exists in the tenant: check the client (application) id, and that the app is registered or consented in this tenant.",
                ),
                CredentialErrorKind::UnknownTenant => (
                    "unknown_tenant",
                    "The tenant does not exist: check the tenant id (a GUID, or the tenant's default domain).",
                ),
                CredentialErrorKind::ConsentMissing => (
                    "consent_missing",
                    "An administrator has not consented to the application in this tenant: grant admin consent, then try again.",
                ),
                CredentialErrorKind::Other => {
                    ("credential_rejected", "Entra ID refused the credential.")
                }
            };
            ApiError::unprocessable(
                api_code,
                format!("{advice}{code_text} {nothing} Entra ID said: {message}"),
            )
        }
        AzureError::Transport(detail) => ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "azure_unreachable",
            format!(
                "Azure could not be reached ({detail}); check the network and the configured endpoints. {nothing}"
            ),
        ),
        AzureError::Forbidden { message, .. } => ApiError::unprocessable(
            "permission_missing",
            format!("Azure refused a read the connection needs: {message} {nothing}"),
        ),
        other => ApiError::new(
            axum::http::StatusCode::BAD_GATEWAY,
            "azure_error",
            format!("Azure answered an error: {other}. {nothing}"),
        ),
    }
}

pub struct Validated {
    pub token: AccessToken,
    /// (subscription id, display name, report)
    pub subscriptions: Vec<(String, String, PermissionReport)>,
}

/// Gets a token, lists the subscriptions and assesses the roles on each.
pub async fn validate(
    state: &AppState,
    tenant_id: &str,
    client_id: &str,
    secret: &SecretString,
    wanted: Option<&[String]>,
) -> Result<Validated, ApiError> {
    let token = state
        .azure
        .client_credentials_token(tenant_id, client_id, secret)
        .await
        .map_err(explain)?;
    let visible = state.azure.subscriptions(&token).await.map_err(explain)?;
    let chosen: Vec<_> = match wanted {
        Some(ids) if !ids.is_empty() => {
            let missing: Vec<&String> = ids
                .iter()
                .filter(|id| {
                    !visible
                        .iter()
                        .any(|s| s.subscription_id.eq_ignore_ascii_case(id))
                })
                .collect();
            if !missing.is_empty() {
                return Err(ApiError::unprocessable(
                    "subscription_not_visible",
                    format!(
                        "The service principal cannot see subscription(s) {}: assign it the Reader role on them (or check the ids). Nothing was stored.",
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            visible
                .into_iter()
                .filter(|s| {
                    ids.iter()
                        .any(|id| s.subscription_id.eq_ignore_ascii_case(id))
                })
                .collect()
        }
        _ => visible,
    };
    if chosen.is_empty() {
        return Err(ApiError::unprocessable(
            "no_subscriptions",
            "The service principal sees no subscriptions: assign it Reader (and Cost Management Reader, Security Reader, Tag Contributor) on the subscriptions to connect, then try again. Nothing was stored.",
        ));
    }
    let mut subscriptions = Vec::new();
    for s in chosen {
        let roles = state
            .azure
            .role_assignments(&token, &s.subscription_id, &token.object_id)
            .await
            .map_err(explain)?;
        let ids: Vec<String> = roles.into_iter().map(|r| r.role_definition_id).collect();
        subscriptions.push((s.subscription_id, s.display_name, assess(&ids)));
    }
    Ok(Validated {
        token,
        subscriptions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_what_is_missing_and_why() {
        let all: Vec<String> = RECOMMENDED.iter().map(|(_, id)| id.to_string()).collect();
        let full = assess(&all);
        assert!(full.roles_missing.is_empty() && full.features_disabled.is_empty());
        assert_eq!(initial_level(&full), SyncLevel::ReadWriteTags);

        let reader_only = assess(&[READER.1.to_string()]);
        assert_eq!(reader_only.features_disabled, vec!["tag_write_back"]);
        let tag = reader_only
            .roles_missing
            .iter()
            .find(|m| m.role == "Tag Contributor")
            .expect("missing");
        assert_eq!(tag.features_disabled, vec!["tag_write_back"]);
        let cost = reader_only
            .roles_missing
            .iter()
            .find(|m| m.role == "Cost Management Reader")
            .expect("missing");
        assert!(cost.features_disabled.is_empty(), "Reader covers spend");
        assert_eq!(initial_level(&reader_only), SyncLevel::ReadTagsOnly);

        let no_reader = assess(&[
            COST_READER.1.to_string(),
            SECURITY_READER.1.to_string(),
            TAG_CONTRIBUTOR.1.to_string(),
        ]);
        let reader = no_reader
            .roles_missing
            .iter()
            .find(|m| m.role == "Reader")
            .expect("missing");
        assert_eq!(reader.features_disabled, vec!["inventory"]);
        assert_eq!(
            initial_level(&no_reader),
            SyncLevel::NoResources,
            "no inventory without Reader"
        );

        let owner = assess(&[OWNER.1.to_string()]);
        assert!(owner.roles_missing.is_empty());
    }
}
