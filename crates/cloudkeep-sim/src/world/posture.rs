//! The estate's security posture, laid over the generated estate: storage
//! and vault settings Azure added over the years, Defender plans, contacts
//! and settings, secure-score figures, custom roles and a foreign group,
//! diagnostic settings and activity log alerts, and the demo's known cost
//! event.
//!
//! Subscriptions take turns (by index, modulo 3) so that every evidence
//! check has a passing and a failing case in the demo preset:
//!
//! | check | sub 0 | sub 1 | sub 2 |
//! |---|---|---|---|
//! | distinct Owners 2..=3 (a group is one) | pass (2) | fail (5, one a ForeignGroup) | pass (group + service principal) |
//! | custom role with `*` assignable here | pass | fail (assigned) | pass (only the locks role) |
//! | User Access Administrator at the subscription | pass | fail | pass |
//! | privileged role held by a user or ForeignGroup at the subscription | fail (users) | fail | pass |
//! | secure score | high | low | middling |
//! | Defender for Storage, Key Vault, CSPM | all Standard | Storage only | all Free |
//! | security contact | set, alerts on | set, alerts off | missing |
//!
//! Storage and vault settings vary per resource, each both ways.
//! Nothing here draws from the generator's stream: values come from stable
//! hashes of ids, so the estate generated before stays byte for byte.

use chrono::{Duration, Utc};

use super::{
    ActivityLogAlert, CustomRole, DiagnosticSetting, Extra, Pricing, Principal, PrincipalKind,
    RoleAssignment, SecurityContact, SecurityState, Sku, StorageProps, World, hash_str, mix,
};
use crate::roles;

/// Defender plans as Azure lists them, with the sub-plan a Standard one has.
const PLANS: &[(&str, Option<&str>)] = &[
    ("VirtualMachines", Some("P2")),
    ("SqlServers", None),
    ("AppServices", None),
    ("StorageAccounts", Some("DefenderForStorageV2")),
    ("SqlServerVirtualMachines", None),
    ("KubernetesService", None),
    ("ContainerRegistry", None),
    ("KeyVaults", Some("PerKeyVault")),
    ("Dns", None),
    ("Arm", Some("PerSubscription")),
    ("OpenSourceRelationalDatabases", None),
    ("CosmosDbs", None),
    ("Containers", None),
    ("CloudPosture", None),
    ("Api", None),
    ("AI", None),
];

/// Plans Azure has retired in favour of `Containers`.
pub const DEPRECATED_PLANS: &[&str] = &["KubernetesService", "ContainerRegistry"];

/// A stable draw in [0, 1) for a name under the world's seed.
fn draw(seed: u64, what: &str) -> f64 {
    super::unit(hash_str(seed, what))
}

/// A stable GUID from the seed and a name.
pub fn guid(seed: u64, what: &str) -> String {
    let a = hash_str(seed, what);
    let b = mix(a ^ 0x5eed_9e37);
    uuid::Builder::from_random_bytes((u128::from(a) << 64 | u128::from(b)).to_le_bytes())
        .into_uuid()
        .to_string()
}

pub fn apply(world: &mut World) {
    storage_settings(world);
    vault_settings(world);
    identity(world);
    for i in 0..world.subscriptions.len() {
        defender(world, i);
        monitoring(world, i);
    }
    demo_cost_event(world);
}

/// Settings Azure added to storage accounts, each left out on a realistic
/// share of accounts; a secondary location only with a geo-redundant SKU.
fn storage_settings(world: &mut World) {
    let seed = world.seed;
    for r in &mut world.resources {
        let Extra::Storage(p) = &mut r.extra else {
            continue;
        };
        let h = |what: &str| draw(seed, &format!("{}:{what}", r.id));
        let sku = match &p.secondary_location {
            Some(_) if h("ra") < 0.5 => "Standard_RAGRS",
            Some(_) => "Standard_GRS",
            None if h("zrs") < 0.2 => "Standard_ZRS",
            None => "Standard_LRS",
        };
        r.sku = Some(Sku {
            name: sku.into(),
            tier: Some("Standard".into()),
        });
        // 91 of 115 recorded accounts had no allowSharedKeyAccess.
        p.allow_shared_key_access = match h("shared") {
            x if x < 0.79 => None,
            x if x < 0.9 => Some(false),
            _ => Some(true),
        };
        p.allow_cross_tenant_replication = match h("xtenant") {
            x if x < 0.5 => None,
            x if x < 0.8 => Some(false),
            _ => Some(true),
        };
        p.default_to_oauth_authentication = match h("oauth") {
            x if x < 0.7 => None,
            x if x < 0.85 => Some(true),
            _ => Some(false),
        };
        p.require_infrastructure_encryption = (h("infra") < 0.25).then_some(true);
        p.key_expiration_days = (h("keypolicy") < 0.2).then_some(90);
        p.private_endpoints = u8::from(h("pe") < 0.2);
        if h("perimeter") < 0.08 {
            p.public_network_access = Some("SecuredByPerimeter");
        }
        if h("https") < 0.1 {
            p.https_only = None;
        }
        p.blob.versioning = match h("versioning") {
            x if x < 0.4 => None,
            x if x < 0.7 => Some(true),
            _ => Some(false),
        };
        // The portal's data protection turns versioning on with soft delete.
        p.blob.blob_delete_days =
            (p.blob.versioning == Some(true) || h("blobdel") < 0.5).then_some(7);
        p.blob.container_delete_days = (h("contdel") < 0.5).then_some(7);
        p.file.share_delete_days = (h("sharedel") < 0.7).then_some(7);
        p.file.smb_versions = match h("smb") {
            x if x < 0.5 => None,
            x if x < 0.8 => Some("SMB3.1.1"),
            _ => Some("SMB2.1;SMB3.0;SMB3.1.1"),
        };
    }
}

fn vault_settings(world: &mut World) {
    let seed = world.seed;
    for r in &mut world.resources {
        if let Extra::Vault(p) = &mut r.extra {
            p.private_endpoints = u8::from(draw(seed, &format!("{}:pe", r.id)) < 0.25);
        }
    }
    // Some keys have a policy that only notifies: no `rotate` action.
    for k in &mut world.keys {
        if k.rotation_policy.is_none()
            && draw(seed, &format!("{}/{}:notify", k.vault_id, k.name)) < 0.3
        {
            k.rotation_policy = Some(super::RotationPolicy {
                time_after_create: None,
                time_before_expiry: None,
                expiry_time: Some("P1Y".into()),
            });
        }
    }
}

fn assignment(
    world: &World,
    who: &Principal,
    role: &str,
    scope: &str,
    days_ago: i64,
) -> RoleAssignment {
    RoleAssignment {
        name: guid(
            world.seed,
            &format!("ra:{}:{role}:{scope}", who.object_id.to_ascii_lowercase()),
        ),
        scope: scope.to_string(),
        role_definition_id: role.to_string(),
        principal_id: who.object_id.clone(),
        principal_type: who.principal_type(),
        created: world.now() - Duration::days(days_ago),
        created_by: None,
    }
}

/// Owners per subscription (2, 5 with a ForeignGroup, a group and a
/// service principal), custom roles, User Access Administrator.
fn identity(world: &mut World) {
    let Some(tenant) = world
        .tenants
        .iter()
        .find(|t| !t.is_app_home)
        .map(|t| t.id.clone())
    else {
        return;
    };
    let foreign = Principal {
        // A group of a partner's tenant, seen here only by its object id.
        tenant_id: guid(world.seed, "fabrikam-tenant"),
        object_id: guid(world.seed, "foreign-group"),
        display_name: "Fabrikam Support Engineers".into(),
        key: Some("foreign-group".into()),
        kind: PrincipalKind::ForeignGroup,
    };
    world.principals.push(foreign.clone());
    let member = |p: &Principal| p.tenant_id == tenant;
    let group = world
        .principals
        .iter()
        .find(|p| member(p) && matches!(p.kind, PrincipalKind::Group))
        .cloned();
    let terraform = world
        .principals
        .iter()
        .find(|p| p.display_name == "terraform-platform")
        .cloned();
    let staff: Vec<Principal> = world
        .principals
        .iter()
        .filter(|p| {
            member(p)
                && p.key.is_none()
                && matches!(p.kind, PrincipalKind::User { guest: false, .. })
        })
        .filter(|p| p.display_name != "IT Admin")
        .cloned()
        .collect();
    let created = world.now() - Duration::days(120);
    let subs: Vec<String> = world.subscriptions.iter().map(|s| s.id.clone()).collect();
    let scopes: Vec<String> = subs.iter().map(|s| format!("/subscriptions/{s}")).collect();
    let star_scopes: Vec<String> = scopes
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 == 1)
        .map(|(_, s)| s.clone())
        .collect();
    let star = CustomRole {
        id: guid(world.seed, "role:break-glass"),
        name: "Break Glass Operator".into(),
        description: "Emergency access: everything, for the on-call lead.".into(),
        actions: vec!["*".into()],
        not_actions: vec![],
        data_actions: vec![],
        assignable_scopes: star_scopes,
        created,
    };
    let locks = CustomRole {
        id: guid(world.seed, "role:lock-manager"),
        name: "Resource Lock Manager".into(),
        description: "Can create and delete management locks.".into(),
        actions: vec![
            "Microsoft.Authorization/locks/*".into(),
            "Microsoft.Resources/subscriptions/resourceGroups/read".into(),
        ],
        not_actions: vec![],
        data_actions: vec![],
        assignable_scopes: scopes.clone(),
        created,
    };
    // The inherited root assignment stays (listed with `atScope()`), but as
    // Reader: User Access Administrator is sub 1's failing case alone.
    for a in &mut world.role_assignments {
        if a.scope == "/" && a.role_definition_id == roles::USER_ACCESS_ADMINISTRATOR {
            a.role_definition_id = roles::READER.to_string();
        }
    }
    let mut added = Vec::new();
    for (i, scope) in scopes.iter().enumerate() {
        let owners: Vec<usize> = world
            .role_assignments
            .iter()
            .enumerate()
            .filter(|(_, a)| {
                a.role_definition_id == roles::OWNER && a.scope.eq_ignore_ascii_case(scope)
            })
            .map(|(n, _)| n)
            .collect();
        let is_partial_owner = |a: &RoleAssignment| {
            world
                .principal(&a.principal_id)
                .is_some_and(|p| p.key.is_some())
        };
        let mut drop = Vec::new();
        match i % 3 {
            0 => {
                // Two Owners: the scenario's keyed users and one of the staff.
                let mut kept_staff = false;
                for n in owners {
                    let a = &world.role_assignments[n];
                    if is_partial_owner(a) {
                        continue;
                    }
                    if !kept_staff && staff.iter().any(|s| s.object_id == a.principal_id) {
                        kept_staff = true;
                        continue;
                    }
                    drop.push(n);
                }
                if !kept_staff {
                    if let Some(s) = staff.first() {
                        added.push(assignment(world, s, roles::OWNER, scope, 300));
                    }
                }
                let keyed = world.role_assignments.iter().any(|a| {
                    a.role_definition_id == roles::OWNER
                        && a.scope.eq_ignore_ascii_case(scope)
                        && is_partial_owner(a)
                });
                if !keyed {
                    if let Some(s) = staff.get(1) {
                        added.push(assignment(world, s, roles::OWNER, scope, 280));
                    }
                }
            }
            1 => {
                // Too many Owners, one a foreign group; a User Access
                // Administrator; the `*` custom role held by automation.
                let mut distinct: Vec<String> = owners
                    .iter()
                    .map(|n| world.role_assignments[*n].principal_id.to_ascii_lowercase())
                    .collect();
                distinct.sort();
                distinct.dedup();
                for s in &staff {
                    if distinct.len() >= 4 {
                        break;
                    }
                    if !distinct.contains(&s.object_id.to_ascii_lowercase()) {
                        distinct.push(s.object_id.to_ascii_lowercase());
                        added.push(assignment(world, s, roles::OWNER, scope, 200));
                    }
                }
                added.push(assignment(world, &foreign, roles::OWNER, scope, 90));
                if let Some(s) = staff.last() {
                    added.push(assignment(
                        world,
                        s,
                        roles::USER_ACCESS_ADMINISTRATOR,
                        scope,
                        60,
                    ));
                }
                if let Some(t) = &terraform {
                    added.push(assignment(world, t, &star.id, scope, 45));
                }
            }
            _ => {
                // Owners are a group and a service principal only.
                drop.extend(owners);
                if let Some(g) = &group {
                    added.push(assignment(world, g, roles::OWNER, scope, 500));
                }
                if let Some(t) = &terraform {
                    added.push(assignment(world, t, roles::OWNER, scope, 400));
                }
                if let Some(s) = staff.first() {
                    added.push(assignment(world, s, &locks.id, scope, 30));
                }
            }
        }
        drop.sort_unstable();
        for n in drop.into_iter().rev() {
            world.role_assignments.remove(n);
        }
    }
    for a in added {
        let dup = world.role_assignments.iter().any(|b| {
            b.principal_id == a.principal_id
                && b.role_definition_id == a.role_definition_id
                && b.scope == a.scope
        });
        if !dup {
            world.role_assignments.push(a);
        }
    }
    world.custom_roles = vec![star, locks];
}

/// Defender's plans, contact, settings and score figures for subscription `i`.
fn defender(world: &mut World, i: usize) {
    let sub = world.subscriptions[i].id.clone();
    let seed = world.seed;
    let enabled = world.now() - Duration::days(200 + (i as i64 * 17) % 300);
    let standard = |plan: &str| match (i % 3, plan) {
        (0, "StorageAccounts" | "KeyVaults" | "CloudPosture" | "VirtualMachines" | "Arm") => true,
        (1, "StorageAccounts" | "SqlServers") => true,
        (0 | 1, _) => draw(seed, &format!("{sub}:{plan}")) < 0.3,
        _ => false,
    };
    let pricings = PLANS
        .iter()
        .map(|(name, sub_plan)| {
            let on = standard(name) && !DEPRECATED_PLANS.contains(name);
            Pricing {
                name: (*name).to_string(),
                standard: on,
                sub_plan: sub_plan.filter(|_| on).map(str::to_string),
                enabled_since: on.then_some(enabled),
            }
        })
        .collect();
    let contact = match i % 3 {
        2 => None,
        n => Some(SecurityContact {
            emails: "secops@contoso.com;ciso@contoso.com".into(),
            phone: "+1-425-555-0100".into(),
            alert_notifications: n == 0,
            notify_owners: n == 0,
        }),
    };
    let vms: Vec<String> = world
        .live_resources()
        .filter(|r| {
            r.subscription_id == sub && r.resource_type == "Microsoft.Compute/virtualMachines"
        })
        .take(if i % 3 == 0 { 3 } else { 0 })
        .map(|r| r.id.clone())
        .collect();
    let assessments = assessments_of(world, &sub);
    world.security.insert(
        sub.to_ascii_lowercase(),
        SecurityState {
            pricings,
            contact,
            auto_provision: i % 3 == 0,
            settings: vec![
                ("MCAS", "DataExportSettings", i % 3 != 2),
                ("WDATP", "DataExportSettings", i % 3 == 0),
                ("Sentinel", "AlertSyncSettings", i % 3 == 0),
            ],
            jit_vms: vms,
            assessments,
        },
    );
    // Score figures: high, low, middling. A control with `max: 0` is kept.
    if let Some(controls) = world.secure_scores.get_mut(&sub.to_ascii_lowercase()) {
        for (n, c) in controls.iter_mut().enumerate() {
            if c.max == 0 {
                continue;
            }
            let total = (c.healthy + c.unhealthy).max(3);
            c.unhealthy = match i % 3 {
                0 if n % 4 == 1 => 1,
                0 => 0,
                1 if n % 5 == 0 => 0,
                1 => total,
                _ if n % 2 == 0 => 0,
                _ => total - 1,
            };
            c.healthy = total - c.unhealthy;
        }
    }
}

/// Assessments Defender makes of storage accounts and vaults:
/// (resource id, display name).
fn assessments_of(world: &World, sub: &str) -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for r in world
        .live_resources()
        .filter(|r| r.subscription_id.eq_ignore_ascii_case(sub))
    {
        match &r.extra {
            Extra::Storage(_) => {
                out.push((
                    r.id.clone(),
                    "Storage account public access should be disallowed",
                ));
                out.push((
                    r.id.clone(),
                    "Secure transfer to storage accounts should be enabled",
                ));
            }
            Extra::Vault(_) => {
                out.push((
                    r.id.clone(),
                    "Key vaults should have deletion protection enabled",
                ));
            }
            Extra::None => {}
        }
    }
    out
}

/// Subscription diagnostic settings and activity log alerts: complete in
/// sub 0, partial in sub 1, none in sub 2; vault audit logs where sent.
fn monitoring(world: &mut World, i: usize) {
    let sub = world.subscriptions[i].id.clone();
    let workspace = world
        .live_resources()
        .find(|r| {
            r.subscription_id == sub && r.resource_type == "Microsoft.OperationalInsights/workspaces"
        })
        .map(|r| r.id.clone())
        .unwrap_or_else(|| {
            format!("/subscriptions/{sub}/resourceGroups/rg-shared/providers/Microsoft.OperationalInsights/workspaces/log-security")
        });
    let scope = format!("/subscriptions/{sub}");
    // Archive and stream destinations where everything is kept (sub 0).
    let archive = world
        .live_resources()
        .find(|r| r.subscription_id == sub && matches!(r.extra, Extra::Storage(_)))
        .map(|r| r.id.clone());
    let hub = format!(
        "/subscriptions/{sub}/resourceGroups/rg-shared/providers/Microsoft.EventHub/namespaces/evh-security/authorizationrules/RootManageSharedAccessKey"
    );
    match i % 3 {
        0 => world.diagnostic_settings.push(DiagnosticSetting {
            scope: scope.clone(),
            name: "activity-to-sentinel".into(),
            workspace_id: Some(workspace.clone()),
            storage_account_id: archive.clone(),
            event_hub_rule_id: Some(hub.clone()),
            // Every category, through the `allLogs` group.
            categories: vec![],
        }),
        1 => world.diagnostic_settings.push(DiagnosticSetting {
            scope: scope.clone(),
            name: "admin-only".into(),
            workspace_id: Some(workspace.clone()),
            storage_account_id: None,
            event_hub_rule_id: None,
            categories: vec!["Administrative"],
        }),
        _ => {}
    }
    let vaults: Vec<String> = world
        .live_resources()
        .filter(|r| r.subscription_id == sub && matches!(r.extra, Extra::Vault(_)))
        .map(|r| r.id.clone())
        .collect();
    for (n, v) in vaults.iter().enumerate() {
        if (n + i) % 2 == 0 {
            let everywhere = n == 0 && i % 3 == 0;
            world.diagnostic_settings.push(DiagnosticSetting {
                scope: v.clone(),
                name: "audit".into(),
                workspace_id: Some(workspace.clone()),
                storage_account_id: archive.clone().filter(|_| everywhere),
                event_hub_rule_id: everywhere.then(|| hub.clone()),
                categories: vec![],
            });
        }
    }
    let rg = world
        .resource_groups
        .iter()
        .find(|g| g.subscription_id == sub && g.name.starts_with("rg-"))
        .map(|g| g.name.clone())
        .unwrap_or_else(|| "NetworkWatcherRG".into());
    let watched: &[(&str, Option<&'static str>, &'static str)] = match i % 3 {
        0 => &[
            (
                "policy-assignment-changes",
                Some("Microsoft.Authorization/policyAssignments/write"),
                "Administrative",
            ),
            (
                "nsg-changes",
                Some("Microsoft.Network/networkSecurityGroups/write"),
                "Administrative",
            ),
            (
                "nsg-deletes",
                Some("Microsoft.Network/networkSecurityGroups/delete"),
                "Administrative",
            ),
            (
                "security-solution-changes",
                Some("Microsoft.Security/securitySolutions/write"),
                "Security",
            ),
            ("service-health", None, "ServiceHealth"),
        ],
        1 => &[(
            "nsg-changes",
            Some("Microsoft.Network/networkSecurityGroups/write"),
            "Administrative",
        )],
        _ => &[],
    };
    for (name, operation, category) in watched {
        world.activity_log_alerts.push(ActivityLogAlert {
            subscription_id: sub.clone(),
            resource_group: rg.clone(),
            name: (*name).to_string(),
            operation: *operation,
            category,
            enabled: true,
        });
    }
}

/// The categories of a subscription's activity log.
pub const SUBSCRIPTION_LOG_CATEGORIES: &[&str] = &[
    "Administrative",
    "Security",
    "ServiceHealth",
    "Alert",
    "Recommendation",
    "Policy",
    "Autoscale",
    "ResourceHealth",
];

/// The demo's ground truth: a recent spike on one service of the first
/// subscription, so `cloudkeep demo` shows an anomaly and a budget crossing.
fn demo_cost_event(world: &mut World) {
    let Some(sub) = world.subscriptions.first().map(|s| s.id.clone()) else {
        return;
    };
    let target = world
        .live_resources()
        .filter(|r| {
            r.subscription_id == sub && r.resource_type == "Microsoft.Sql/servers/databases"
        })
        .max_by(|a, b| a.cost.daily.total_cmp(&b.cost.daily))
        .or_else(|| {
            world
                .live_resources()
                .filter(|r| r.subscription_id == sub && r.cost.daily > 0.0)
                .max_by(|a, b| a.cost.daily.total_cmp(&b.cost.daily))
        })
        .map(|r| r.id.clone());
    if let Some(resource_id) = target {
        let today = world.base_date;
        world.cost_events.push(super::cost::CostEvent {
            id: guid(world.seed, "demo-spike"),
            kind: super::cost::EventKind::Spike,
            scope: resource_id,
            from: today - Duration::days(4),
            to: today,
            factor: 6.0,
            note: "demo: a runaway database on the first subscription (anomaly, budget crossing)"
                .into(),
            created: Utc::now(),
        });
    }
}

/// For `StorageProps` made outside the generator (control API).
pub fn default_storage() -> StorageProps {
    StorageProps {
        allow_blob_public_access: Some(false),
        public_network_access: None,
        minimum_tls_version: Some("TLS1_2"),
        https_only: Some(true),
        network_default_action: Some("Allow"),
        is_hns_enabled: false,
        secondary_location: None,
        allow_shared_key_access: None,
        allow_cross_tenant_replication: Some(false),
        default_to_oauth_authentication: None,
        require_infrastructure_encryption: None,
        key_expiration_days: None,
        private_endpoints: 0,
        blob: Default::default(),
        file: Default::default(),
    }
}
