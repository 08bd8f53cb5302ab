//! Validating a service principal before anything is stored: a token, the
//! subscriptions it sees, and its roles on each, reported plainly.

use cloudkeep_azure::{AccessToken, AzureError, CredentialErrorKind};
use cloudkeep_domain::SecretString;
use cloudkeep_domain::policy::{PermissionReport, assess};

use crate::{ApiError, AppState};

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
