//! Builds a realistic estate from a seed: the same seed and date give the
//! same world, byte for byte.

use std::collections::HashMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::cost::catalogue;
use super::*;
use crate::roles;

const APPS: &[&str] = &[
    "web",
    "api",
    "data",
    "analytics",
    "identity",
    "network",
    "shared",
    "ml",
    "billing",
    "search",
    "iot",
    "mobile",
    "payments",
    "crm",
    "hr",
    "logistics",
    "portal",
    "etl",
    "reporting",
    "edge",
];
const LOCATIONS: &[&str] = &[
    "westeurope",
    "westeurope",
    "northeurope",
    "eastus",
    "eastus",
    "eastus2",
    "westus2",
    "uksouth",
    "centralus",
    "swedencentral",
];
const TEAMS: &[&str] = &[
    "Retail",
    "Finance",
    "Platform",
    "Data",
    "Marketing",
    "Logistics",
    "Security",
    "Research",
    "Mobile",
    "Partner",
    "Support",
    "Identity",
    "Payments",
    "Analytics",
    "Growth",
];
const ENVS: &[&str] = &[
    "Production",
    "Development",
    "Shared Services",
    "Staging",
    "Test",
];
const PEOPLE: &[(&str, &str)] = &[
    ("alex.morgan", "Alex Morgan"),
    ("sam.lee", "Sam Lee"),
    ("priya.shah", "Priya Shah"),
    ("jonas.berg", "Jonas Berg"),
    ("maria.garcia", "Maria Garcia"),
    ("tom.okafor", "Tom Okafor"),
    ("li.wei", "Li Wei"),
    ("nina.kowalski", "Nina Kowalski"),
];
const SCORE_CONTROLS: &[(&str, u32)] = &[
    ("Enable MFA", 10),
    ("Secure management ports", 8),
    ("Remediate vulnerabilities", 6),
    ("Apply system updates", 6),
    ("Enable encryption at rest", 4),
    ("Restrict unauthorized network access", 4),
    ("Manage access and permissions", 4),
    ("Encrypt data in transit", 4),
    ("Remediate security configurations", 4),
    ("Enable endpoint protection", 2),
    ("Apply adaptive application control", 3),
    ("Protect applications against DDoS attacks", 2),
    ("Enable auditing and logging", 1),
    ("Implement security best practices", 0),
];

struct Gen {
    rng: ChaCha8Rng,
}

impl Gen {
    fn uuid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random())
            .into_uuid()
            .to_string()
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p.clamp(0.0, 1.0))
    }

    /// A client secret in the shape Entra ID issues them (`xxx8Q~...`).
    fn client_secret(&mut self) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789~._-";
        let mut s: String = (0..3).map(|_| *self.pick(&CHARS[..62]) as char).collect();
        s.push_str("8Q~");
        s.extend((0..34).map(|_| *self.pick(CHARS) as char));
        s
    }

    fn password(&mut self) -> String {
        const CHARS: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let body: String = (0..14).map(|_| *self.pick(CHARS) as char).collect();
        format!("{body}!9")
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from_digit(self.rng.random_range(0..16), 16).unwrap_or('0'))
            .collect()
    }
}

fn at_midnight(date: NaiveDate) -> DateTime<Utc> {
    date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// Generates the world for a preset and seed as of `today`.
pub fn generate(preset: Preset, seed: u64, today: NaiveDate) -> World {
    let mut g = Gen {
        rng: ChaCha8Rng::seed_from_u64(seed),
    };
    let now = at_midnight(today) + Duration::hours(9);
    let far_future = now + Duration::days(365 * 2);

    let home_tenant = Tenant {
        id: g.uuid(),
        default_domain: "cloudkeephq.onmicrosoft.com".into(),
        display_name: "cloudkeep".into(),
        country_code: "GB",
        is_app_home: true,
    };
    let app = Application {
        home_tenant_id: home_tenant.id.clone(),
        client_id: g.uuid(),
        display_name: "cloudkeep".into(),
        secret: ClientSecret {
            value: g.client_secret(),
            expires: far_future,
        },
    };
    let customer = Tenant {
        id: g.uuid(),
        default_domain: "contoso.onmicrosoft.com".into(),
        display_name: "Contoso".into(),
        country_code: "US",
        is_app_home: false,
    };
    let tid = customer.id.clone();
    let home_sp = Principal {
        tenant_id: home_tenant.id.clone(),
        object_id: g.uuid(),
        display_name: app.display_name.clone(),
        key: Some("cloudkeep".into()),
        kind: PrincipalKind::ServicePrincipal {
            client_id: app.client_id.clone(),
            secret: None,
        },
    };
    let domain = customer.default_domain.clone();

    let mut principals = vec![home_sp];
    let mut sp = |g: &mut Gen, key: Option<&str>, name: &str| {
        let p = Principal {
            tenant_id: tid.clone(),
            object_id: g.uuid(),
            display_name: name.into(),
            key: key.map(str::to_string),
            kind: PrincipalKind::ServicePrincipal {
                client_id: g.uuid(),
                secret: Some(ClientSecret {
                    value: g.client_secret(),
                    expires: far_future,
                }),
            },
        };
        principals.push(p);
        principals.len() - 1
    };
    let collector = sp(&mut g, Some("collector"), "cloudkeep-collector");
    let reader_only = sp(&mut g, Some("reader-only"), "ops-dashboard");
    let _no_access = sp(&mut g, Some("no-access"), "legacy-backup-agent");
    let deployer = sp(&mut g, None, "github-actions-deploy");
    let terraform = sp(&mut g, None, "terraform-platform");

    let user = |g: &mut Gen,
                principals: &mut Vec<Principal>,
                key: Option<&str>,
                login: &str,
                name: &str,
                guest: bool| {
        let upn = if guest {
            format!("{}#EXT#@{domain}", login.replace('@', "_"))
        } else {
            format!("{login}@{domain}")
        };
        principals.push(Principal {
            tenant_id: tid.clone(),
            object_id: g.uuid(),
            display_name: name.into(),
            key: key.map(str::to_string),
            kind: PrincipalKind::User {
                upn,
                password: g.password(),
                guest,
            },
        });
        principals.len() - 1
    };
    let partial_owner = user(
        &mut g,
        &mut principals,
        Some("partial-owner"),
        "dana.fischer",
        "Dana Fischer",
        false,
    );
    let guest = user(
        &mut g,
        &mut principals,
        Some("guest"),
        "auditor@fabrikam.com",
        "Fabrikam Auditor",
        true,
    );
    let global_admin = user(&mut g, &mut principals, None, "it.admin", "IT Admin", false);
    let vendor_guest = user(
        &mut g,
        &mut principals,
        None,
        "consultant@outlook.com",
        "External Consultant",
        true,
    );
    let staff: Vec<usize> = PEOPLE
        .iter()
        .map(|(login, name)| user(&mut g, &mut principals, None, login, name, false))
        .collect();
    principals.push(Principal {
        tenant_id: tid.clone(),
        object_id: g.uuid(),
        display_name: "Cloud Platform Team".into(),
        key: None,
        kind: PrincipalKind::Group,
    });
    let group = principals.len() - 1;

    let mut role_assignments = Vec::new();
    let mut assign = |g: &mut Gen,
                      principals: &[Principal],
                      who: usize,
                      role: &str,
                      scope: String,
                      days_ago: i64| {
        let p = &principals[who];
        role_assignments.push(RoleAssignment {
            name: g.uuid(),
            scope,
            role_definition_id: role.to_string(),
            principal_id: p.object_id.clone(),
            principal_type: p.principal_type(),
            created: now - Duration::days(days_ago),
            created_by: if g.chance(0.5) {
                Some(principals[global_admin].object_id.clone())
            } else {
                None
            },
        });
    };
    assign(
        &mut g,
        &principals,
        global_admin,
        roles::USER_ACCESS_ADMINISTRATOR,
        "/".into(),
        700,
    );

    let mut subscriptions = Vec::new();
    let mut resource_groups = Vec::new();
    let mut resources = Vec::new();
    let mut keys = Vec::new();
    let mut secrets = Vec::new();
    let mut secure_scores = HashMap::new();
    let history_start = today - Duration::days(preset.cost_history_days + 30);

    for si in 0..preset.subscriptions {
        let env_name = if preset.subscriptions <= ENVS.len() {
            ENVS[si % ENVS.len()]
        } else {
            *g.pick(&ENVS[..2])
        };
        let display_name = if preset.subscriptions <= 3 {
            format!("Contoso {env_name}")
        } else {
            format!(
                "Contoso {} {env_name} {:02}",
                TEAMS[si % TEAMS.len()],
                si + 1
            )
        };
        let env = env_short(env_name);
        let sub_id = g.uuid();
        let sub_scope = format!("/subscriptions/{sub_id}");
        let mut sub_tags = Tags::new();
        if g.chance(0.7) {
            sub_tags.insert("environment".into(), env.into());
            sub_tags.insert(
                "cost-center".into(),
                format!("CC-{}", g.rng.random_range(1000..9999)),
            );
        }
        subscriptions.push(Subscription {
            id: sub_id.clone(),
            tenant_id: tid.clone(),
            display_name,
            tags: sub_tags,
            quota_id: if si % 4 == 3 {
                "MSDN_2014-09-01"
            } else {
                "EnterpriseAgreement_2014-09-01"
            },
        });

        // The principals the tests rely on.
        for role in [
            roles::READER,
            roles::SECURITY_READER,
            roles::COST_MANAGEMENT_READER,
            roles::TAG_CONTRIBUTOR,
        ] {
            assign(&mut g, &principals, collector, role, sub_scope.clone(), 60);
        }
        assign(
            &mut g,
            &principals,
            reader_only,
            roles::READER,
            sub_scope.clone(),
            200,
        );
        if si + 1 < preset.subscriptions.max(2) {
            assign(
                &mut g,
                &principals,
                partial_owner,
                roles::OWNER,
                sub_scope.clone(),
                400,
            );
        }
        if si == 0 {
            assign(
                &mut g,
                &principals,
                guest,
                roles::READER,
                sub_scope.clone(),
                30,
            );
        }
        if si == 1 {
            assign(
                &mut g,
                &principals,
                vendor_guest,
                roles::OWNER,
                sub_scope.clone(),
                500,
            );
        }
        // The estate's usual crowd: a few owners, contributors, a group.
        let owners = 1 + g.rng.random_range(0..3);
        for _ in 0..owners {
            let who = *g.pick(&staff);
            let days = g.rng.random_range(30..900);
            assign(
                &mut g,
                &principals,
                who,
                roles::OWNER,
                sub_scope.clone(),
                days,
            );
        }
        let days = g.rng.random_range(30..600);
        assign(
            &mut g,
            &principals,
            deployer,
            roles::CONTRIBUTOR,
            sub_scope.clone(),
            days,
        );
        if g.chance(0.5) {
            let days = g.rng.random_range(30..600);
            assign(
                &mut g,
                &principals,
                terraform,
                roles::OWNER,
                sub_scope.clone(),
                days,
            );
        }
        let days = g.rng.random_range(30..600);
        assign(
            &mut g,
            &principals,
            group,
            roles::READER,
            sub_scope.clone(),
            days,
        );

        // Resource groups.
        let mut rgs = Vec::new();
        for ri in 0..preset.resource_groups_per_subscription {
            let (name, app) = match ri {
                0 => ("NetworkWatcherRG".to_string(), "network"),
                1 if preset.resource_groups_per_subscription > 4 => (
                    format!(
                        "DefaultResourceGroup-{}",
                        if g.chance(0.5) { "WEU" } else { "EUS" }
                    ),
                    "shared",
                ),
                _ => {
                    let app = APPS[(ri + si * 3) % APPS.len()];
                    let suffix = if ri >= APPS.len() {
                        format!("-{:02}", ri / APPS.len())
                    } else {
                        String::new()
                    };
                    (format!("rg-{app}-{env}{suffix}"), app)
                }
            };
            let location = g.pick(LOCATIONS).to_string();
            let mut tags = Tags::new();
            if ri > 1 && g.chance(0.6) {
                tags.insert("app".into(), app.into());
                tags.insert(
                    env_key_variant(&mut g).into(),
                    env_value_variant(&mut g, env),
                );
                if g.chance(0.5) {
                    let (login, _) = *g.pick(PEOPLE);
                    tags.insert("owner".into(), format!("{login}@contoso.com"));
                }
            }
            if ri > 1 && g.chance(0.15) {
                let who = *g.pick(&staff);
                let days = g.rng.random_range(10..300);
                let scope = format!("{sub_scope}/resourceGroups/{name}");
                assign(&mut g, &principals, who, roles::CONTRIBUTOR, scope, days);
            }
            rgs.push((name.clone(), app, location.clone()));
            resource_groups.push(ResourceGroup {
                subscription_id: sub_id.clone(),
                name,
                location,
                tags,
            });
        }

        // Resources.
        let mut counters: HashMap<&str, usize> = HashMap::new();
        let mut controls = Vec::new();
        let mut weak_storage = 0u32;
        let mut storage_count = 0u32;
        for _ in 0..preset.resources_per_subscription {
            let (rg_name, app, rg_loc) = {
                // NetworkWatcherRG holds only watchers; keep it small.
                let i = if g.chance(0.02) {
                    0
                } else {
                    g.rng.random_range(1.min(rgs.len() - 1)..rgs.len())
                };
                rgs[i].clone()
            };
            let spec = pick_type(&mut g, &rg_name);
            let n = counters.entry(spec.resource_type).or_insert(0);
            *n += 1;
            let name = resource_name(spec, app, env, *n, &mut g);
            let location = if g.chance(0.9) {
                rg_loc.clone()
            } else {
                g.pick(LOCATIONS).to_string()
            };
            let id = catalogue::resource_id(
                &format!("{sub_scope}/resourceGroups/{rg_name}"),
                spec.resource_type,
                &name,
            );
            let created = now
                - Duration::days(g.rng.random_range(5..1200))
                - Duration::minutes(g.rng.random_range(0..1440));
            let changed =
                created + Duration::days(g.rng.random_range(0..=(now - created).num_days().max(1)));
            let tags = resource_tags(&mut g, app, env);
            let daily = if spec.daily.1 > 0.0 {
                g.rng.random_range(spec.daily.0..=spec.daily.1)
            } else {
                0.0
            };
            let cost = CostProfile {
                daily,
                growth_per_year: g.rng.random_range(-0.1..0.6),
                weekend_dip: if spec.weekday_sensitive && env != "prod" {
                    g.rng.random_range(0.2..0.6)
                } else {
                    g.rng.random_range(0.0..0.08)
                },
                reserved: spec.resource_type == "Microsoft.Compute/virtualMachines"
                    && env == "prod"
                    && g.chance(0.3),
            };
            let extra = match spec.resource_type {
                "Microsoft.Storage/storageAccounts" => {
                    storage_count += 1;
                    let props = storage_props(&mut g, &location);
                    if props.allow_blob_public_access == Some(true)
                        || props.minimum_tls_version != Some("TLS1_2")
                    {
                        weak_storage += 1;
                    }
                    Extra::Storage(props)
                }
                "Microsoft.KeyVault/vaults" => {
                    let mut access = vec![principals[*g.pick(&staff)].object_id.clone()];
                    if g.chance(0.5) {
                        access.push(principals[deployer].object_id.clone());
                    }
                    let props = VaultProps {
                        sku: if g.chance(0.2) { "premium" } else { "standard" },
                        enable_soft_delete: g.chance(0.95),
                        enable_purge_protection: if g.chance(0.4) { Some(true) } else { None },
                        enable_rbac_authorization: match g.rng.random_range(0..3) {
                            0 => Some(true),
                            1 => Some(false),
                            _ => None,
                        },
                        public_network_access: match g.rng.random_range(0..4) {
                            0 => Some("Disabled"),
                            1 => Some("Enabled"),
                            _ => None,
                        },
                        network_default_action: if g.chance(0.4) {
                            Some(if g.chance(0.5) { "Deny" } else { "Allow" })
                        } else {
                            None
                        },
                        access_policy_object_ids: access,
                        private_endpoints: 0,
                    };
                    vault_contents(&mut g, &id, created, now, &mut keys, &mut secrets);
                    Extra::Vault(props)
                }
                _ => Extra::None,
            };
            let cost_seed = hash_str(seed, &id);
            resources.push(Resource {
                id,
                subscription_id: sub_id.clone(),
                resource_group: rg_name,
                resource_type: spec.resource_type.to_string(),
                name,
                location,
                kind: spec.kind.map(str::to_string),
                sku: spec.sku.map(|(n, t)| Sku {
                    name: n.to_string(),
                    tier: t.map(str::to_string),
                }),
                tags,
                created,
                changed,
                deleted: None,
                cost,
                cost_seed,
                extra,
            });
        }
        let _ = history_start;

        for (display_name, max) in SCORE_CONTROLS {
            let total = g.rng.random_range(0..12u32);
            let unhealthy = if *display_name == "Enable encryption at rest"
                || *display_name == "Encrypt data in transit"
            {
                weak_storage.min(total.max(weak_storage))
            } else {
                g.rng.random_range(0..=total)
            };
            controls.push(SecureScoreControl {
                name: g.uuid(),
                display_name: display_name.to_string(),
                max: *max,
                healthy: total
                    .saturating_sub(unhealthy)
                    .max(if storage_count > 0 { 1 } else { 0 }),
                unhealthy,
                not_applicable: g.rng.random_range(0..3),
            });
        }
        secure_scores.insert(sub_id.to_ascii_lowercase(), controls);
    }

    let mut world = World {
        seed,
        preset,
        base_date: today,
        day_offset: 0,
        app,
        app_consented_in: Vec::new(),
        tenants: vec![home_tenant, customer],
        principals,
        subscriptions,
        resource_groups,
        resources,
        resource_index: HashMap::new(),
        role_assignments,
        keys,
        secrets,
        secure_scores,
        security: HashMap::new(),
        custom_roles: Vec::new(),
        diagnostic_settings: Vec::new(),
        activity_log_alerts: Vec::new(),
        cost_events: Vec::new(),
        partner_links: Vec::new(),
        generation: 0,
    };
    world.rebuild_index();
    // Everything added since the first estate comes from its own seeded
    // stream, so the estate above stays as it was for a seed.
    super::posture::apply(&mut world);
    world
}

fn env_short(env_name: &str) -> &'static str {
    match env_name {
        "Production" => "prod",
        "Development" => "dev",
        "Staging" => "stg",
        "Test" => "test",
        _ => "shared",
    }
}

/// Real estates spell the same tag several ways.
fn env_key_variant(g: &mut Gen) -> &'static str {
    const KEYS: [&str; 6] = ["env", "env", "env", "Env", "environment", "Environment"];
    KEYS[g.rng.random_range(0..KEYS.len())]
}

fn env_value_variant(g: &mut Gen, env: &str) -> String {
    let variants: &[&str] = match env {
        "prod" => &[
            "prod",
            "prod",
            "Prod",
            "production",
            "Production",
            "prd",
            "Prodcution",
        ],
        "dev" => &["dev", "dev", "Dev", "development", "develop"],
        "stg" => &["staging", "stg", "Staging", "stagng"],
        "test" => &["test", "Test", "tst"],
        _ => &["shared", "Shared", "shared-services"],
    };
    g.pick(variants).to_string()
}

fn resource_tags(g: &mut Gen, app: &str, env: &str) -> Tags {
    let mut tags = Tags::new();
    if g.chance(0.35) {
        return tags;
    }
    if g.chance(0.8) {
        tags.insert(env_key_variant(g).into(), env_value_variant(g, env));
    }
    if g.chance(0.6) {
        let key = *g.pick(&["app", "app", "application", "App"]);
        tags.insert(key.into(), app.into());
    }
    if g.chance(0.45) {
        let key = *g.pick(&["cost-center", "CostCenter", "costcenter"]);
        let cc = *g.pick(&[
            "CC-1042", "CC-2210", "CC-3301", "CC-4400", "cc-1042", "CC1042",
        ]);
        tags.insert(key.into(), cc.into());
    }
    if g.chance(0.4) {
        let (login, _) = *g.pick(PEOPLE);
        tags.insert("owner".into(), format!("{login}@contoso.com"));
    }
    if g.chance(0.1) {
        tags.insert("created-by".into(), "terraform".into());
    }
    if g.chance(0.05) {
        tags.insert("hidden-link:/app-insights-resource-id".into(), "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/x/providers/microsoft.insights/components/x".into());
    }
    tags
}

fn storage_props(g: &mut Gen, location: &str) -> StorageProps {
    StorageProps {
        allow_blob_public_access: match g.rng.random_range(0..10) {
            0..=1 => Some(true),
            2..=5 => Some(false),
            _ => None,
        },
        public_network_access: match g.rng.random_range(0..6) {
            0 => Some("Disabled"),
            1 => Some("Enabled"),
            _ => None,
        },
        minimum_tls_version: match g.rng.random_range(0..10) {
            0 => Some("TLS1_0"),
            1 => Some("TLS1_1"),
            2 => None,
            _ => Some("TLS1_2"),
        },
        https_only: Some(g.chance(0.9)),
        network_default_action: Some(if g.chance(0.3) { "Deny" } else { "Allow" }),
        is_hns_enabled: g.chance(0.2),
        secondary_location: if g.chance(0.4) {
            Some(
                match location {
                    "westeurope" => "northeurope",
                    "northeurope" => "westeurope",
                    "eastus" => "westus",
                    "eastus2" => "centralus",
                    _ => "westus3",
                }
                .to_string(),
            )
        } else {
            None
        },
        allow_shared_key_access: None,
        allow_cross_tenant_replication: None,
        default_to_oauth_authentication: None,
        require_infrastructure_encryption: None,
        key_expiration_days: None,
        private_endpoints: 0,
        blob: BlobServiceProps::default(),
        file: FileServiceProps::default(),
    }
}

fn vault_contents(
    g: &mut Gen,
    vault_id: &str,
    created: DateTime<Utc>,
    now: DateTime<Utc>,
    keys: &mut Vec<VaultKey>,
    secrets: &mut Vec<VaultSecret>,
) {
    let span = (now - created).num_seconds().max(86_400);
    for i in 0..g.rng.random_range(1..=4) {
        let created_at = created.timestamp() + g.rng.random_range(0..span);
        let updated = created_at
            + g.rng
                .random_range(0..=(now.timestamp() - created_at).max(1));
        let rsa = g.chance(0.7);
        let rotation_policy = match g.rng.random_range(0..4) {
            0 | 1 => None,
            2 => Some(RotationPolicy {
                time_after_create: Some("P90D".into()),
                time_before_expiry: None,
                expiry_time: Some("P1Y".into()),
            }),
            _ => Some(RotationPolicy {
                time_after_create: None,
                time_before_expiry: Some("P30D".into()),
                expiry_time: Some("P2Y".into()),
            }),
        };
        keys.push(VaultKey {
            vault_id: vault_id.to_string(),
            name: format!(
                "{}-{}",
                g.pick(&["cmk", "signing", "data", "backup", "tde"]),
                i + 1
            ),
            version: g.hex(32),
            created: created_at,
            updated,
            expires: match g.rng.random_range(0..4) {
                0 => Some(now.timestamp() - g.rng.random_range(86_400..86_400 * 90)),
                1 => Some(now.timestamp() + g.rng.random_range(86_400..86_400 * 400)),
                _ => None,
            },
            kty: if rsa { "RSA" } else { "EC" },
            key_size: if rsa {
                Some(*g.pick(&[2048, 3072, 4096]))
            } else {
                None
            },
            curve: if rsa { None } else { Some("P-256") },
            enabled: g.chance(0.95),
            rotation_policy,
        });
    }
    for i in 0..g.rng.random_range(0..=5) {
        let created_at = created.timestamp() + g.rng.random_range(0..span);
        secrets.push(VaultSecret {
            vault_id: vault_id.to_string(),
            name: format!(
                "{}-{}",
                g.pick(&[
                    "db-password",
                    "api-key",
                    "storage-conn",
                    "client-secret",
                    "webhook-token"
                ]),
                i + 1
            ),
            version: g.hex(32),
            created: created_at,
            updated: created_at + g.rng.random_range(0..86_400 * 30),
            expires: match g.rng.random_range(0..3) {
                0 => Some(now.timestamp() - g.rng.random_range(86_400..86_400 * 200)),
                1 => Some(now.timestamp() + g.rng.random_range(86_400..86_400 * 365)),
                _ => None,
            },
            content_type: if g.chance(0.3) {
                Some("text/plain")
            } else {
                None
            },
            enabled: true,
        });
    }
}

fn pick_type(g: &mut Gen, rg_name: &str) -> &'static catalogue::TypeSpec {
    if rg_name == "NetworkWatcherRG" {
        return catalogue::by_type("Microsoft.Network/networkWatchers")
            .unwrap_or(&catalogue::TYPES[0]);
    }
    let total: u32 = catalogue::TYPES.iter().map(|t| t.weight).sum();
    let mut x = g.rng.random_range(0..total);
    for t in catalogue::TYPES {
        if x < t.weight {
            return t;
        }
        x -= t.weight;
    }
    &catalogue::TYPES[0]
}

fn resource_name(
    spec: &catalogue::TypeSpec,
    app: &str,
    env: &str,
    n: usize,
    g: &mut Gen,
) -> String {
    match spec.resource_type {
        "Microsoft.Storage/storageAccounts" => {
            let app: String = app
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(8)
                .collect();
            format!("st{app}{env}{n}{}", g.hex(4))
        }
        "Microsoft.Sql/servers/databases" => {
            let db = *g.pick(&["appdb", "reporting", "orders", "users", "audit"]);
            format!("sql-{app}-{env}-{n:02}/{db}")
        }
        "Microsoft.Network/networkWatchers" => format!("NetworkWatcher_{n:02}"),
        _ => format!("{}-{app}-{env}-{n:02}", spec.prefix),
    }
}
