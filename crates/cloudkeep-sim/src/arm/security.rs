//! Microsoft.Security beyond secure scores: Defender plans (`pricings`),
//! assessments, settings (MCAS, WDATP, Sentinel), security contacts,
//! auto-provisioning, IoT security solutions and JIT network access
//! policies, each in the shape of the api-version asked for.

use axum::http::StatusCode;
use chrono::Duration;
use serde_json::{Value, json};

use super::{ArmError, ArmResult, Ctx, arm_time};
use crate::server::json;
use crate::world::{DEPRECATED_PLANS, SecurityState, World, posture_guid};

fn ok(body: &Value) -> ArmResult {
    Ok(json(StatusCode::OK, body))
}

fn provider(sub: &str) -> String {
    format!("/subscriptions/{sub}/providers/Microsoft.Security")
}

/// Authorises a Defender read and answers the subscription's state.
fn state<'w>(ctx: &Ctx, world: &'w World, what: &str) -> Result<&'w SecurityState, ArmError> {
    let sub = ctx.p("sub");
    ctx.authorize(
        world,
        &format!("Microsoft.Security/{what}/read"),
        &format!("/subscriptions/{sub}"),
    )?;
    world.security_of(sub).ok_or_else(|| {
        ArmError::not_found(
            "SubscriptionNotFound",
            "The subscription has no Defender state.",
        )
    })
}

/// One item by name from a list, or Microsoft.Security's 404.
fn one_or_all(ctx: &Ctx, items: Vec<Value>) -> ArmResult {
    super::one_or_all(ctx, items, |n| {
        ArmError::not_found(
            "NotFound",
            format!("The requested resource '{n}' was not found."),
        )
    })
}

/// `pricings`: every Defender plan with its tier and, on Standard, its
/// sub-plan and extensions; older api-versions know fewer fields.
pub fn pricings(ctx: &Ctx) -> ArmResult {
    let world = ctx.st.world();
    let st = state(ctx, &world, "pricings")?;
    let sub = ctx.p("sub");
    let modern = ctx.api_version.as_str() >= "2023-01-01";
    let items = st
        .pricings
        .iter()
        .map(|p| {
            let mut props = json!({
                "pricingTier": if p.standard { "Standard" } else { "Free" },
                "freeTrialRemainingTime": "PT0S",
            });
            if let Some(s) = &p.sub_plan {
                props["subPlan"] = json!(s);
            }
            if modern {
                props["enforce"] = json!("False");
                props["resourcesCoverageStatus"] = json!(if p.standard {
                    "FullyCovered"
                } else {
                    "NotCovered"
                });
                if let Some(t) = p.enabled_since {
                    props["enablementTime"] = json!(arm_time(t));
                }
                if DEPRECATED_PLANS.contains(&p.name.as_str()) {
                    props["deprecated"] = json!(true);
                    props["replacedBy"] = json!(["Containers"]);
                }
                if p.standard {
                    if let Some(ext) = extensions(&p.name) {
                        props["extensions"] = ext;
                    }
                }
            }
            json!({
                "id": format!("{}/pricings/{}", provider(sub), p.name),
                "name": p.name,
                "type": "Microsoft.Security/pricings",
                "properties": props,
            })
        })
        .collect();
    one_or_all(ctx, items)
}

fn extensions(plan: &str) -> Option<Value> {
    let scanning = json!({
        "name": "AgentlessVmScanning",
        "isEnabled": "True",
        "additionalExtensionProperties": { "ExclusionTags": "[]" },
    });
    Some(match plan {
        "VirtualMachines" => json!([scanning]),
        "StorageAccounts" => json!([
            {"name": "OnUploadMalwareScanning", "isEnabled": "True",
             "additionalExtensionProperties": {"capGBPerMonthPerStorageAccount": 5000}},
            {"name": "SensitiveDataDiscovery", "isEnabled": "True"},
        ]),
        "CloudPosture" => json!([
            scanning,
            {"name": "AgentlessDiscoveryForKubernetes", "isEnabled": "True"},
            {"name": "SensitiveDataDiscovery", "isEnabled": "True"},
            {"name": "ContainerRegistriesVulnerabilityAssessments", "isEnabled": "True"},
        ]),
        _ => return None,
    })
}

/// `assessments` of the subscription's storage accounts and vaults,
/// following their current settings.
pub fn assessments(ctx: &Ctx) -> ArmResult {
    let world = ctx.st.world();
    let st = state(ctx, &world, "assessments")?;
    // Agents report to the subscription's Log Analytics workspace, if any.
    let workspace = world
        .live_resources()
        .find(|r| {
            r.subscription_id.eq_ignore_ascii_case(ctx.p("sub"))
                && r.resource_type == "Microsoft.OperationalInsights/workspaces"
        })
        .map(|r| r.id.clone());
    let items: Vec<Value> = st
        .assessments
        .iter()
        .map(|(resource, display)| {
            let healthy = assessment_healthy(&world, resource, display);
            let name = posture_guid(0, &format!("assessment:{display}"));
            let mut status = json!({ "code": if healthy { "Healthy" } else { "Unhealthy" } });
            if !healthy {
                status["cause"] = json!("");
                status["description"] = json!("The resource does not meet the recommendation.");
            }
            json!({
                "id": format!("{resource}/providers/Microsoft.Security/assessments/{name}"),
                "name": name,
                "type": "Microsoft.Security/assessments",
                "properties": {
                    "resourceDetails": { "source": "Azure", "id": resource },
                    "displayName": display,
                    "status": status,
                    "additionalData": workspace.as_ref().map_or_else(|| json!({}), |w| json!({ "linkedWorkspaceId": w })),
                },
            })
        })
        .collect();
    ok(&ctx.page(&items, 1000, Value::clone)?)
}

/// An assessment's state from the resource as it is now (the control API
/// changes settings; Defender's verdict follows).
fn assessment_healthy(world: &World, resource: &str, display: &str) -> bool {
    use crate::world::Extra;
    match world.resource(resource).map(|r| &r.extra) {
        Some(Extra::Storage(p)) if display.contains("public access") => {
            p.allow_blob_public_access != Some(true)
        }
        Some(Extra::Storage(p)) => p.https_only != Some(false),
        Some(Extra::Vault(p)) => p.enable_purge_protection == Some(true),
        _ => true,
    }
}

/// `settings`: MCAS, WDATP and Sentinel, with their kinds.
pub fn settings(ctx: &Ctx) -> ArmResult {
    let world = ctx.st.world();
    let st = state(ctx, &world, "settings")?;
    let sub = ctx.p("sub");
    let items = st
        .settings
        .iter()
        .map(|(name, kind, enabled)| {
            json!({
                "id": format!("{}/settings/{name}", provider(sub)),
                "name": name,
                "kind": kind,
                "type": "Microsoft.Security/settings",
                "properties": { "enabled": enabled },
            })
        })
        .collect();
    one_or_all(ctx, items)
}

/// `securityContacts`: the subscription's one contact (`default`), in the
/// 2017, 2020 or 2023 shape; an empty list when none is set.
pub fn security_contacts(ctx: &Ctx) -> ArmResult {
    let world = ctx.st.world();
    let st = state(ctx, &world, "securityContacts")?;
    let sub = ctx.p("sub");
    let v = ctx.api_version.as_str();
    let items: Vec<Value> = st
        .contact
        .iter()
        .map(|c| {
            let on = |b: bool| if b { "On" } else { "Off" };
            if v < "2020-01-01" {
                return json!({
                    "id": format!("{}/securityContacts/default1", provider(sub)),
                    "name": "default1",
                    "type": "Microsoft.Security/securityContacts",
                    "properties": {
                        "email": c.emails.split(';').next().unwrap_or(""),
                        "phone": c.phone,
                        "alertNotifications": on(c.alert_notifications),
                        "alertsToAdmins": on(c.notify_owners),
                    },
                });
            }
            let roles = json!({ "state": on(c.notify_owners), "roles": ["Owner"] });
            let props = if v < "2023-01-01" {
                json!({
                    "emails": c.emails,
                    "phone": c.phone,
                    "alertNotifications": { "state": on(c.alert_notifications), "minimalSeverity": "Medium" },
                    "notificationsByRole": roles,
                })
            } else {
                json!({
                    "isEnabled": c.alert_notifications,
                    "emails": c.emails,
                    "phone": c.phone,
                    "notificationsByRole": roles,
                    "notificationsSources": [
                        { "sourceType": "Alert", "minimalSeverity": "Medium" },
                        { "sourceType": "AttackPath", "minimalRiskLevel": "Critical" },
                    ],
                })
            };
            json!({
                "id": format!("{}/securityContact/default", provider(sub)),
                "name": "default",
                "type": "Microsoft.Security/securityContact",
                "properties": props,
            })
        })
        .collect();
    one_or_all(ctx, items)
}

/// `autoProvisioningSettings`: `default`, On or Off.
pub fn auto_provisioning(ctx: &Ctx) -> ArmResult {
    let world = ctx.st.world();
    let st = state(ctx, &world, "autoProvisioningSettings")?;
    let sub = ctx.p("sub");
    let item = json!({
        "id": format!("{}/autoProvisioningSettings/default", provider(sub)),
        "name": "default",
        "type": "Microsoft.Security/autoProvisioningSettings",
        "properties": { "autoProvision": if st.auto_provision { "On" } else { "Off" } },
    });
    one_or_all(ctx, vec![item])
}

/// `iotSecuritySolutions`: the scenario has no IoT hubs, so none, as Azure
/// answers for such a subscription.
pub fn iot_security_solutions(ctx: &Ctx) -> ArmResult {
    let world = ctx.st.world();
    state(ctx, &world, "iotSecuritySolutions")?;
    ok(&json!({ "value": [] }))
}

/// `jitNetworkAccessPolicies`: one policy over a few VMs where JIT is on.
pub fn jit_policies(ctx: &Ctx) -> ArmResult {
    let world = ctx.st.world();
    let st = state(ctx, &world, "locations/jitNetworkAccessPolicies")?;
    let Some(first) = st.jit_vms.first().and_then(|id| world.resource(id)) else {
        return ok(&json!({ "value": [] }));
    };
    let (rg, location) = (&first.resource_group, &first.location);
    let vms: Vec<Value> = st
        .jit_vms
        .iter()
        .map(|id| {
            json!({
                "id": id,
                "ports": [
                    {"number": 22, "protocol": "*", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"},
                    {"number": 3389, "protocol": "*", "allowedSourceAddressPrefix": "*", "maxRequestAccessDuration": "PT3H"},
                ],
            })
        })
        .collect();
    let start = world.now() - Duration::days(2);
    let request = json!({
        "virtualMachines": [{
            "id": st.jit_vms[0],
            "ports": [{
                "number": 22,
                "allowedSourceAddressPrefix": "203.0.113.17",
                "endTimeUtc": arm_time(start + Duration::hours(3)),
                "status": "Revoked",
                "statusReason": "Expired",
            }],
        }],
        "startTimeUtc": arm_time(start),
        "requestor": "alex.morgan@contoso.com",
        "justification": "patching",
    });
    let policy = json!({
        "kind": "Basic",
        "properties": { "virtualMachines": vms, "requests": [request], "provisioningState": "Succeeded" },
        "id": format!("/subscriptions/{}/resourceGroups/{rg}/providers/Microsoft.Security/locations/{location}/jitNetworkAccessPolicies/default", ctx.p("sub")),
        "name": "default",
        "type": "Microsoft.Security/locations/jitNetworkAccessPolicies",
        "location": location,
    });
    ok(&json!({ "value": [policy] }))
}
