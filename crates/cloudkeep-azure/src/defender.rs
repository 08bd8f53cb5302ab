//! Microsoft Defender for Cloud's plans (`Microsoft.Security/pricings`,
//! api-version 2024-01-01): which plan is on which tier.

use serde_json::Value;

use crate::client::AzureClient;
use crate::error::AzureError;
use crate::fields::{canonical, identity, text_at};
use crate::paging::Paged;
use crate::token::AccessToken;

const PRICINGS_API: &str = "2024-01-01";

/// One Defender plan of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefenderPlan {
    pub id: String,
    /// `StorageAccounts`, `KeyVaults`, `CloudPosture`, ...
    pub name: String,
    /// `Standard` or `Free` (Azure's casing drifts; compared
    /// case-insensitively). Absent is `Free`.
    pub pricing_tier: String,
    pub sub_plan: Option<String>,
    /// A plan Azure retired (`deprecated`).
    pub deprecated: bool,
}

impl DefenderPlan {
    pub fn is_standard(&self) -> bool {
        self.pricing_tier == "Standard"
    }
}

fn plan_from(item: &Value) -> Result<DefenderPlan, AzureError> {
    let (id, name) = identity(item, "a Defender plan")?;
    let props = item.get("properties").unwrap_or(&Value::Null);
    Ok(DefenderPlan {
        pricing_tier: canonical(props.get("pricingTier"), &["Standard", "Free"], "Free"),
        sub_plan: text_at(props, "/subPlan"),
        deprecated: crate::fields::flag(props.get("deprecated")).unwrap_or(false),
        id,
        name,
    })
}

impl AzureClient {
    /// The subscription's Defender plans
    /// (`/subscriptions/{s}/providers/Microsoft.Security/pricings`).
    pub fn defender_plans<'a>(
        &'a self,
        token: &'a AccessToken,
        subscription_id: &str,
    ) -> Paged<'a, DefenderPlan> {
        let path = ["Microsoft.Security", "pricings"];
        self.provider_list(token, subscription_id, &path, PRICINGS_API, plan_from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_plans_with_drifting_tiers() {
        // As Pricings_List.json, with "free" spelt as Microsoft.Security sometimes does.
        let p = plan_from(&json!({
            "id": "/subscriptions/s/providers/Microsoft.Security/pricings/StorageAccounts",
            "name": "StorageAccounts", "type": "Microsoft.Security/pricings",
            "properties": {"pricingTier": "standard", "subPlan": "DefenderForStorageV2", "freeTrialRemainingTime": "PT0S"}
        }))
        .expect("plan");
        assert!(p.is_standard());
        assert_eq!(p.sub_plan.as_deref(), Some("DefenderForStorageV2"));
        let free = plan_from(&json!({"name": "KeyVaults", "properties": {"pricingTier": "free"}}))
            .expect("plan");
        assert_eq!(free.pricing_tier, "Free");
        let bare = plan_from(&json!({"name": "CloudPosture"})).expect("plan");
        assert!(!bare.is_standard(), "no tier is the free tier");
    }
}
