//! Microsoft.Insights: diagnostic settings at a subscription or on a
//! resource, and activity log alert rules.

use serde_json::{Value, json};

use super::{ArmError, ArmResult, Ctx, subscription_of};
use crate::world::{ActivityLogAlert, DiagnosticSetting, World, scope_is_subscription};

/// The resource a scope names, for a resource's sub-service
/// (`.../storageAccounts/x/blobServices/default`) the account itself.
fn owning_resource(scope: &str) -> String {
    let lower = scope.to_ascii_lowercase();
    for svc in [
        "/blobservices/",
        "/fileservices/",
        "/queueservices/",
        "/tableservices/",
    ] {
        if let Some(i) = lower.find(svc) {
            return scope[..i].to_string();
        }
    }
    scope.to_string()
}

fn setting_json(d: &DiagnosticSetting, at_subscription: bool) -> Value {
    let mut props = json!({});
    if let Some(w) = &d.workspace_id {
        props["workspaceId"] = json!(w);
    }
    if let Some(s) = &d.storage_account_id {
        props["storageAccountId"] = json!(s);
    }
    if let Some(e) = &d.event_hub_rule_id {
        props["eventHubAuthorizationRuleId"] = json!(e);
    }
    let retention = json!({ "enabled": false, "days": 0 });
    if at_subscription {
        // A subscription's activity log: the `allLogs` group or named
        // categories; no metrics, no retention.
        props["logs"] = if d.categories.is_empty() {
            json!([{ "categoryGroup": "allLogs", "enabled": true }])
        } else {
            json!(
                crate::world::SUBSCRIPTION_LOG_CATEGORIES
                    .iter()
                    .map(|c| json!({ "category": c, "enabled": d.categories.contains(c) }))
                    .collect::<Vec<_>>()
            )
        };
    } else {
        props["logs"] = if d.categories.is_empty() {
            json!([{ "categoryGroup": "allLogs", "enabled": true, "retentionPolicy": retention }])
        } else {
            json!(
                d.categories
                    .iter()
                    .map(
                        |c| json!({ "category": c, "enabled": true, "retentionPolicy": retention })
                    )
                    .collect::<Vec<_>>()
            )
        };
        props["metrics"] =
            json!([{ "category": "AllMetrics", "enabled": true, "retentionPolicy": retention }]);
        props["logAnalyticsDestinationType"] = Value::Null;
    }
    json!({
        "id": format!("{}/providers/microsoft.insights/diagnosticSettings/{}", d.scope, d.name),
        "type": "Microsoft.Insights/diagnosticSettings",
        "name": d.name,
        "properties": props,
    })
}

/// `{scope}/providers/Microsoft.Insights/diagnosticSettings[/{name}]`.
pub fn diagnostic_settings(ctx: &Ctx) -> ArmResult {
    let scope = ctx.p("scope");
    let world = ctx.st.world();
    ctx.authorize(&world, "Microsoft.Insights/diagnosticSettings/read", scope)?;
    let at_subscription = scope_is_subscription(scope);
    if !at_subscription && world.resource(&owning_resource(scope)).is_none() {
        return Err(ArmError::not_found(
            "ResourceNotFound",
            format!(
                "The Resource '{scope}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        ));
    }
    let items: Vec<Value> = world
        .diagnostic_settings
        .iter()
        .filter(|d| d.scope.eq_ignore_ascii_case(scope.trim_end_matches('/')))
        .map(|d| setting_json(d, at_subscription))
        .collect();
    super::one_or_all(ctx, items, |n| {
        ArmError::not_found(
            "ResourceNotFound",
            format!("The diagnostic setting '{n}' doesn't exist."),
        )
    })
}

fn alert_json(a: &ActivityLogAlert) -> Value {
    let mut all_of = vec![json!({ "field": "category", "equals": a.category })];
    if let Some(op) = a.operation {
        all_of.push(json!({ "field": "operationName", "equals": op }));
    }
    let rg = format!(
        "/subscriptions/{}/resourceGroups/{}",
        a.subscription_id, a.resource_group
    );
    json!({
        "id": format!("{rg}/providers/microsoft.insights/activityLogAlerts/{}", a.name),
        "type": "Microsoft.Insights/ActivityLogAlerts",
        "name": a.name,
        "location": "Global",
        "tags": {},
        "properties": {
            "scopes": [format!("/subscriptions/{}", a.subscription_id)],
            "condition": { "allOf": all_of },
            "actions": { "actionGroups": [{
                "actionGroupId": format!("{rg}/providers/microsoft.insights/actionGroups/secops"),
                "webhookProperties": {},
            }] },
            "enabled": a.enabled,
            "description": format!("Alert on {}", a.operation.unwrap_or(a.category)),
        },
    })
}

/// `activityLogAlerts` of a subscription or resource group, or one rule.
pub fn activity_log_alerts(ctx: &Ctx) -> ArmResult {
    let (sub, rg) = (ctx.p("sub"), ctx.opt("rg"));
    let world: std::sync::RwLockReadGuard<'_, World> = ctx.st.world();
    let scope = match rg {
        Some(g) => format!("/subscriptions/{sub}/resourceGroups/{g}"),
        None => format!("/subscriptions/{sub}"),
    };
    ctx.authorize(&world, "Microsoft.Insights/activityLogAlerts/read", &scope)?;
    let items: Vec<Value> = world
        .activity_log_alerts
        .iter()
        .filter(|a| {
            subscription_of(&scope).is_some_and(|s| a.subscription_id.eq_ignore_ascii_case(s))
                && rg.is_none_or(|g| a.resource_group.eq_ignore_ascii_case(g))
        })
        .map(alert_json)
        .collect();
    super::one_or_all(ctx, items, |n| {
        ArmError::not_found(
            "ResourceNotFound",
            format!(
                "The Resource 'microsoft.insights/activityLogAlerts/{n}' under resource group '{}' was not found.",
                rg.unwrap_or("")
            ),
        )
    })
}
