//! The simulated estate: tenants, principals, subscriptions, resources and
//! their tags, role assignments, vault contents and partner links.
//!
//! The world is generated from a seed (see `generate`) and then changed only
//! by ARM writes and the control API. Cost rows are not stored: they are a
//! pure function of the seed, the resource and the day (see `cost`), so the
//! `large` preset needs no gigabytes of memory.

pub mod cost;
mod generate;
mod posture;

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, NaiveDate, Utc};

pub use generate::generate;
pub use posture::{
    DEPRECATED_PLANS, SUBSCRIPTION_LOG_CATEGORIES, default_storage, guid as posture_guid,
};

/// Tags as Azure stores them: names unique case-insensitively, values as given.
pub type Tags = BTreeMap<String, String>;

/// Sizes of a generated estate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    pub name: &'static str,
    pub subscriptions: usize,
    pub resources_per_subscription: usize,
    pub resource_groups_per_subscription: usize,
    pub cost_history_days: i64,
}

impl Preset {
    pub const DEMO: Preset = Preset {
        name: "demo",
        subscriptions: 3,
        resources_per_subscription: 100,
        resource_groups_per_subscription: 8,
        cost_history_days: 90,
    };
    pub const LARGE: Preset = Preset {
        name: "large",
        subscriptions: 50,
        resources_per_subscription: 2000,
        resource_groups_per_subscription: 40,
        cost_history_days: 396,
    };

    pub fn by_name(name: &str) -> Option<Preset> {
        match name {
            "demo" => Some(Self::DEMO),
            "large" => Some(Self::LARGE),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub default_domain: String,
    pub display_name: String,
    pub country_code: &'static str,
    /// True for the tenant where cloudkeep's own application is registered.
    pub is_app_home: bool,
}

#[derive(Debug, Clone)]
pub struct ClientSecret {
    pub value: String,
    pub expires: DateTime<Utc>,
}

/// cloudkeep's own multi-tenant application.
#[derive(Debug, Clone)]
pub struct Application {
    pub home_tenant_id: String,
    pub client_id: String,
    pub display_name: String,
    pub secret: ClientSecret,
}

#[derive(Debug, Clone)]
pub enum PrincipalKind {
    /// An application's service principal. `secret` is `None` for the
    /// multi-tenant application's principal in a customer tenant: it
    /// authenticates with the application's own secret.
    ServicePrincipal {
        client_id: String,
        secret: Option<ClientSecret>,
    },
    User {
        upn: String,
        password: String,
        guest: bool,
    },
    Group,
    /// A group of another tenant, assigned roles here (ARM's `ForeignGroup`).
    ForeignGroup,
}

#[derive(Debug, Clone)]
pub struct Principal {
    pub tenant_id: String,
    pub object_id: String,
    pub display_name: String,
    /// Stable handle for tests (`collector`, `reader-only`, ...).
    pub key: Option<String>,
    pub kind: PrincipalKind,
}

impl Principal {
    pub fn principal_type(&self) -> &'static str {
        match self.kind {
            PrincipalKind::ServicePrincipal { .. } => "ServicePrincipal",
            PrincipalKind::User { .. } => "User",
            PrincipalKind::Group => "Group",
            PrincipalKind::ForeignGroup => "ForeignGroup",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub id: String,
    pub tenant_id: String,
    pub display_name: String,
    pub tags: Tags,
    pub quota_id: &'static str,
}

#[derive(Debug, Clone)]
pub struct ResourceGroup {
    pub subscription_id: String,
    pub name: String,
    pub location: String,
    pub tags: Tags,
}

impl ResourceGroup {
    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}",
            self.subscription_id, self.name
        )
    }
}

#[derive(Debug, Clone)]
pub struct Sku {
    pub name: String,
    pub tier: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StorageProps {
    /// `None`: the property is absent (Azure's default, false, applies).
    pub allow_blob_public_access: Option<bool>,
    pub public_network_access: Option<&'static str>,
    pub minimum_tls_version: Option<&'static str>,
    /// `None`: absent (Azure's default, true, applies).
    pub https_only: Option<bool>,
    pub network_default_action: Option<&'static str>,
    pub is_hns_enabled: bool,
    /// Set exactly when the SKU is geo-redundant (GRS, RA-GRS, GZRS).
    pub secondary_location: Option<String>,
    /// `None`: absent, shared keys are allowed.
    pub allow_shared_key_access: Option<bool>,
    pub allow_cross_tenant_replication: Option<bool>,
    pub default_to_oauth_authentication: Option<bool>,
    pub require_infrastructure_encryption: Option<bool>,
    /// `keyPolicy.keyExpirationPeriodInDays`, where set.
    pub key_expiration_days: Option<u32>,
    pub private_endpoints: u8,
    pub blob: BlobServiceProps,
    pub file: FileServiceProps,
}

/// `blobServices/default`: versioning and soft-delete retention.
#[derive(Debug, Clone, Default)]
pub struct BlobServiceProps {
    pub versioning: Option<bool>,
    /// `None`: the policy is off (`enabled: false`).
    pub blob_delete_days: Option<u32>,
    pub container_delete_days: Option<u32>,
}

/// `fileServices/default`: share soft delete and SMB settings.
#[derive(Debug, Clone, Default)]
pub struct FileServiceProps {
    pub share_delete_days: Option<u32>,
    /// `None`: `protocolSettings.smb` is left out (every version allowed).
    pub smb_versions: Option<&'static str>,
}

#[derive(Debug, Clone)]
pub struct VaultProps {
    pub sku: &'static str,
    pub enable_soft_delete: bool,
    pub enable_purge_protection: Option<bool>,
    pub enable_rbac_authorization: Option<bool>,
    pub public_network_access: Option<&'static str>,
    pub network_default_action: Option<&'static str>,
    pub access_policy_object_ids: Vec<String>,
    pub private_endpoints: u8,
}

#[derive(Debug, Clone)]
pub enum Extra {
    None,
    Storage(StorageProps),
    Vault(VaultProps),
}

/// How a resource accrues cost; see `cost`.
#[derive(Debug, Clone, Copy)]
pub struct CostProfile {
    pub daily: f64,
    pub growth_per_year: f64,
    pub weekend_dip: f64,
    /// Covered by a reservation: usage shows at zero in actual cost and at
    /// the amortised rate in amortised cost.
    pub reserved: bool,
}

#[derive(Debug, Clone)]
pub struct Resource {
    pub id: String,
    pub subscription_id: String,
    pub resource_group: String,
    pub resource_type: String,
    pub name: String,
    pub location: String,
    pub kind: Option<String>,
    pub sku: Option<Sku>,
    pub tags: Tags,
    pub created: DateTime<Utc>,
    pub changed: DateTime<Utc>,
    /// Set when the resource was deleted: it leaves every list, but its
    /// cost history stays.
    pub deleted: Option<NaiveDate>,
    pub cost: CostProfile,
    /// Seed of this resource's cost noise, stable across runs.
    pub cost_seed: u64,
    pub extra: Extra,
}

#[derive(Debug, Clone)]
pub struct RoleAssignment {
    pub name: String,
    pub scope: String,
    pub role_definition_id: String,
    pub principal_id: String,
    pub principal_type: &'static str,
    pub created: DateTime<Utc>,
    pub created_by: Option<String>,
}

impl RoleAssignment {
    pub fn id(&self) -> String {
        let scope = if self.scope == "/" { "" } else { &self.scope };
        format!(
            "{scope}/providers/Microsoft.Authorization/roleAssignments/{}",
            self.name
        )
    }
}

#[derive(Debug, Clone)]
pub struct RotationPolicy {
    pub time_after_create: Option<String>,
    pub time_before_expiry: Option<String>,
    pub expiry_time: Option<String>,
}

#[derive(Debug, Clone)]
pub struct VaultKey {
    pub vault_id: String,
    pub name: String,
    pub version: String,
    pub created: i64,
    pub updated: i64,
    pub expires: Option<i64>,
    pub kty: &'static str,
    pub key_size: Option<u32>,
    pub curve: Option<&'static str>,
    pub enabled: bool,
    pub rotation_policy: Option<RotationPolicy>,
}

#[derive(Debug, Clone)]
pub struct VaultSecret {
    pub vault_id: String,
    pub name: String,
    pub version: String,
    pub created: i64,
    pub updated: i64,
    pub expires: Option<i64>,
    pub content_type: Option<&'static str>,
    pub enabled: bool,
}

#[derive(Debug, Clone)]
pub struct SecureScoreControl {
    pub name: String,
    pub display_name: String,
    pub max: u32,
    pub healthy: u32,
    pub unhealthy: u32,
    pub not_applicable: u32,
}

/// A custom role definition (`type: CustomRole`).
#[derive(Debug, Clone)]
pub struct CustomRole {
    pub id: String,
    pub name: String,
    pub description: String,
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub assignable_scopes: Vec<String>,
    pub created: DateTime<Utc>,
}

/// One Defender plan (`Microsoft.Security/pricings/{name}`).
#[derive(Debug, Clone)]
pub struct Pricing {
    pub name: String,
    pub standard: bool,
    pub sub_plan: Option<String>,
    pub enabled_since: Option<DateTime<Utc>>,
}

/// The subscription's security contact (`securityContacts/default`).
#[derive(Debug, Clone)]
pub struct SecurityContact {
    pub emails: String,
    pub phone: String,
    pub alert_notifications: bool,
    pub notify_owners: bool,
}

/// A diagnostic setting at a subscription or on a resource.
#[derive(Debug, Clone)]
pub struct DiagnosticSetting {
    /// The subscription or resource it is on.
    pub scope: String,
    pub name: String,
    pub workspace_id: Option<String>,
    pub storage_account_id: Option<String>,
    pub event_hub_rule_id: Option<String>,
    /// Log categories enabled; empty means the `allLogs` category group.
    pub categories: Vec<&'static str>,
}

/// An activity log alert rule (`Microsoft.Insights/activityLogAlerts`).
#[derive(Debug, Clone)]
pub struct ActivityLogAlert {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
    /// The `operationName` the rule watches, or `None` for a category rule.
    pub operation: Option<&'static str>,
    pub category: &'static str,
    pub enabled: bool,
}

/// Defender for Cloud's state of a subscription, beyond secure scores.
#[derive(Debug, Clone)]
pub struct SecurityState {
    pub pricings: Vec<Pricing>,
    pub contact: Option<SecurityContact>,
    pub auto_provision: bool,
    /// (name, kind, enabled): MCAS, WDATP, Sentinel.
    pub settings: Vec<(&'static str, &'static str, bool)>,
    pub jit_vms: Vec<String>,
    /// Assessments: (resource id, display name); their state follows the
    /// resource's settings when read.
    pub assessments: Vec<(String, &'static str)>,
}

#[derive(Debug, Clone)]
pub struct PartnerLink {
    pub tenant_id: String,
    pub object_id: String,
    pub partner_id: String,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub version: i64,
}

#[derive(Debug, Clone)]
pub struct World {
    pub seed: u64,
    pub preset: Preset,
    /// The real date the world was generated on; the simulated date is this
    /// plus `day_offset`.
    pub base_date: NaiveDate,
    pub day_offset: i64,
    pub app: Application,
    /// Tenants where an administrator has consented to `app`.
    pub app_consented_in: Vec<String>,
    pub tenants: Vec<Tenant>,
    pub principals: Vec<Principal>,
    pub subscriptions: Vec<Subscription>,
    pub resource_groups: Vec<ResourceGroup>,
    pub resources: Vec<Resource>,
    resource_index: HashMap<String, usize>,
    pub role_assignments: Vec<RoleAssignment>,
    pub keys: Vec<VaultKey>,
    pub secrets: Vec<VaultSecret>,
    pub secure_scores: HashMap<String, Vec<SecureScoreControl>>,
    /// Defender's other state per subscription (lower-cased id).
    pub security: HashMap<String, SecurityState>,
    pub custom_roles: Vec<CustomRole>,
    pub diagnostic_settings: Vec<DiagnosticSetting>,
    pub activity_log_alerts: Vec<ActivityLogAlert>,
    pub cost_events: Vec<cost::CostEvent>,
    pub partner_links: Vec<PartnerLink>,
    /// Bumped by every change that can alter a cost query's answer.
    pub generation: u64,
}

/// Identifiers are compared as ARM does: case-insensitively.
pub fn id_key(id: &str) -> String {
    id.trim_end_matches('/').to_ascii_lowercase()
}

impl World {
    /// The simulated date: today's real date plus the offset the clock was
    /// advanced by, so a long-running simulator gains a cost day at midnight.
    pub fn today(&self) -> NaiveDate {
        Utc::now().date_naive().max(self.base_date) + Duration::days(self.day_offset)
    }

    /// The simulated "now": the real time of day on the simulated date.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + Duration::days(self.day_offset)
    }

    /// First day that has cost data.
    pub fn cost_start(&self) -> NaiveDate {
        self.base_date - Duration::days(self.preset.cost_history_days - 1)
    }

    pub fn rebuild_index(&mut self) {
        self.resource_index = self
            .resources
            .iter()
            .enumerate()
            .filter(|(_, r)| r.deleted.is_none())
            .map(|(i, r)| (id_key(&r.id), i))
            .collect();
    }

    pub fn resource(&self, id: &str) -> Option<&Resource> {
        self.resource_index
            .get(&id_key(id))
            .map(|&i| &self.resources[i])
    }

    pub fn resource_mut(&mut self, id: &str) -> Option<&mut Resource> {
        let i = *self.resource_index.get(&id_key(id))?;
        Some(&mut self.resources[i])
    }

    pub fn add_resource(&mut self, resource: Resource) {
        self.resource_index
            .insert(id_key(&resource.id), self.resources.len());
        self.resources.push(resource);
        self.generation += 1;
    }

    pub fn delete_resource(&mut self, id: &str) -> bool {
        let Some(i) = self.resource_index.remove(&id_key(id)) else {
            return false;
        };
        let today = self.today();
        self.resources[i].deleted = Some(today);
        self.keys.retain(|k| !k.vault_id.eq_ignore_ascii_case(id));
        self.secrets
            .retain(|s| !s.vault_id.eq_ignore_ascii_case(id));
        self.generation += 1;
        true
    }

    pub fn live_resources(&self) -> impl Iterator<Item = &Resource> {
        self.resources.iter().filter(|r| r.deleted.is_none())
    }

    pub fn subscription(&self, id: &str) -> Option<&Subscription> {
        self.subscriptions
            .iter()
            .find(|s| s.id.eq_ignore_ascii_case(id))
    }

    pub fn tenant(&self, id_or_domain: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| {
            t.id.eq_ignore_ascii_case(id_or_domain)
                || t.default_domain.eq_ignore_ascii_case(id_or_domain)
        })
    }

    pub fn resource_group(&self, subscription: &str, name: &str) -> Option<&ResourceGroup> {
        self.resource_groups.iter().find(|g| {
            g.subscription_id.eq_ignore_ascii_case(subscription)
                && g.name.eq_ignore_ascii_case(name)
        })
    }

    pub fn principal(&self, object_id: &str) -> Option<&Principal> {
        self.principals
            .iter()
            .find(|p| p.object_id.eq_ignore_ascii_case(object_id))
    }

    /// Tags of a subscription, resource group or resource, by scope id.
    pub fn tags_at(&self, scope: &str) -> Option<&Tags> {
        match parse_scope(scope)? {
            Scope::Subscription(s) => self.subscription(&s).map(|s| &s.tags),
            Scope::ResourceGroup(s, g) => self.resource_group(&s, &g).map(|g| &g.tags),
            Scope::Resource => self.resource(scope).map(|r| &r.tags),
        }
    }

    pub fn tags_at_mut(&mut self, scope: &str) -> Option<&mut Tags> {
        self.generation += 1;
        match parse_scope(scope)? {
            Scope::Subscription(s) => self
                .subscriptions
                .iter_mut()
                .find(|x| x.id.eq_ignore_ascii_case(&s))
                .map(|s| &mut s.tags),
            Scope::ResourceGroup(s, g) => self
                .resource_groups
                .iter_mut()
                .find(|x| {
                    x.subscription_id.eq_ignore_ascii_case(&s) && x.name.eq_ignore_ascii_case(&g)
                })
                .map(|g| &mut g.tags),
            Scope::Resource => {
                let now = self.now();
                self.resource_mut(scope).map(|r| {
                    r.changed = now;
                    &mut r.tags
                })
            }
        }
    }

    /// Consent to cloudkeep's application in a tenant: creates its service
    /// principal there (once) and answers its object id.
    pub fn consent_app(&mut self, tenant_id: &str) -> String {
        let client_id = self.app.client_id.clone();
        if let Some(p) = self.principals.iter().find(|p| {
            p.tenant_id.eq_ignore_ascii_case(tenant_id)
                && matches!(&p.kind, PrincipalKind::ServicePrincipal { client_id: c, .. } if *c == client_id)
        }) {
            return p.object_id.clone();
        }
        let h = hash_str(self.seed, &format!("app-sp:{tenant_id}"));
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&h.to_le_bytes());
        bytes[8..].copy_from_slice(&mix(h).to_le_bytes());
        let object_id = uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string();
        self.principals.push(Principal {
            tenant_id: tenant_id.to_string(),
            object_id: object_id.clone(),
            display_name: self.app.display_name.clone(),
            key: Some("cloudkeep".into()),
            kind: PrincipalKind::ServicePrincipal {
                client_id,
                secret: None,
            },
        });
        self.app_consented_in.push(tenant_id.to_string());
        object_id
    }

    /// Whether a role definition (by id) allows a control-plane action.
    pub fn role_permits(&self, role_id: &str, action: &str) -> bool {
        match crate::roles::by_id(role_id) {
            Some(r) => r.permits(action),
            None => self
                .custom_role(role_id)
                .is_some_and(|c| crate::roles::allows(&c.actions, &c.not_actions, action)),
        }
    }

    /// Whether a role definition (by id) allows a data-plane action.
    pub fn role_permits_data(&self, role_id: &str, action: &str) -> bool {
        match crate::roles::by_id(role_id) {
            Some(r) => r.permits_data(action),
            None => self
                .custom_role(role_id)
                .is_some_and(|c| crate::roles::allows(&c.data_actions, &[], action)),
        }
    }

    pub fn custom_role(&self, id: &str) -> Option<&CustomRole> {
        let tail = id.rsplit('/').next().unwrap_or(id);
        self.custom_roles
            .iter()
            .find(|c| c.id.eq_ignore_ascii_case(tail) || c.name.eq_ignore_ascii_case(id))
    }

    /// A role's id and name from its name, bare id or full definition id,
    /// built-in or custom.
    pub fn resolve_role(&self, name_or_id: &str) -> Option<(String, String)> {
        if let Some(r) = crate::roles::resolve(name_or_id) {
            return Some((r.id.to_string(), r.name.to_string()));
        }
        self.custom_role(name_or_id)
            .map(|c| (c.id.clone(), c.name.clone()))
    }

    pub fn role_name(&self, id: &str) -> String {
        self.resolve_role(id)
            .map(|(_, n)| n)
            .unwrap_or_else(|| "Unknown".into())
    }

    /// Defender's state of a subscription (a default for one never seen).
    pub fn security_of(&self, sub: &str) -> Option<&SecurityState> {
        self.security.get(&sub.to_ascii_lowercase())
    }

    /// Role definition ids a principal holds at `scope`, inherited ones included.
    pub fn roles_at<'a>(
        &'a self,
        principal_id: &'a str,
        scope: &'a str,
    ) -> impl Iterator<Item = &'a RoleAssignment> + 'a {
        self.role_assignments.iter().filter(move |a| {
            a.principal_id.eq_ignore_ascii_case(principal_id) && scope_contains(&a.scope, scope)
        })
    }
}

/// Whether `outer` is `inner` or one of its ancestors (`/` is the root).
pub fn scope_contains(outer: &str, inner: &str) -> bool {
    if outer == "/" {
        return true;
    }
    let outer = outer.trim_end_matches('/');
    inner.len() >= outer.len()
        && inner[..outer.len()].eq_ignore_ascii_case(outer)
        && (inner.len() == outer.len() || inner.as_bytes()[outer.len()] == b'/')
}

/// Whether a scope is a subscription itself (`/subscriptions/{id}`).
pub fn scope_is_subscription(scope: &str) -> bool {
    matches!(parse_scope(scope), Some(Scope::Subscription(_)))
}

enum Scope {
    Subscription(String),
    ResourceGroup(String, String),
    Resource,
}

fn parse_scope(scope: &str) -> Option<Scope> {
    let segs: Vec<&str> = scope.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        [s, sub] if s.eq_ignore_ascii_case("subscriptions") => {
            Some(Scope::Subscription((*sub).to_string()))
        }
        [s, sub, r, rg]
            if s.eq_ignore_ascii_case("subscriptions")
                && r.eq_ignore_ascii_case("resourcegroups") =>
        {
            Some(Scope::ResourceGroup((*sub).to_string(), (*rg).to_string()))
        }
        [s, _, r, _, p, ..]
            if s.eq_ignore_ascii_case("subscriptions")
                && r.eq_ignore_ascii_case("resourcegroups")
                && p.eq_ignore_ascii_case("providers") =>
        {
            Some(Scope::Resource)
        }
        _ => None,
    }
}

/// Tag names are case-insensitive in Azure: setting `Env` replaces `env`.
pub fn set_tag(tags: &mut Tags, name: &str, value: &str) {
    if let Some(existing) = tags.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned() {
        tags.remove(&existing);
    }
    tags.insert(name.to_string(), value.to_string());
}

pub fn remove_tag(tags: &mut Tags, name: &str) {
    if let Some(existing) = tags.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned() {
        tags.remove(&existing);
    }
}

/// 64-bit mixing (SplitMix64's finaliser): the simulator's deterministic
/// noise source for values computed on the fly.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub fn hash_str(seed: u64, s: &str) -> u64 {
    s.bytes()
        .fold(mix(seed), |h, b| mix(h ^ u64::from(b.to_ascii_lowercase())))
}

/// A uniform float in [0, 1) from a hash.
pub fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_on_segment_boundaries() {
        assert!(scope_contains("/", "/subscriptions/a"));
        assert!(scope_contains(
            "/subscriptions/A",
            "/subscriptions/a/resourceGroups/x"
        ));
        assert!(!scope_contains("/subscriptions/a", "/subscriptions/ab"));
        assert!(scope_contains("/subscriptions/a", "/subscriptions/a"));
    }

    #[test]
    fn tag_names_are_case_insensitive() {
        let mut tags = Tags::new();
        set_tag(&mut tags, "env", "prod");
        set_tag(&mut tags, "Env", "dev");
        assert_eq!(tags.len(), 1);
        assert_eq!(tags.get("Env").map(String::as_str), Some("dev"));
        remove_tag(&mut tags, "ENV");
        assert!(tags.is_empty());
    }
}
