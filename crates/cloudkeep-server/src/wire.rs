//! The API's JSON types. Only these cross the wire; store and domain types
//! are converted here.

use chrono::{DateTime, Utc};
use cloudkeep_domain::policy::PermissionReport;
use cloudkeep_domain::report::RunReport;
use cloudkeep_domain::{
    AuthMethod, ConnectionStatus, Resolution, Role, RunStatus, SecretString, SyncLevel,
    SyncTrigger, TagEditState,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

mod anomalies;
mod assessments;
mod budgets;
mod coverage;
mod evidence;
pub use anomalies::*;
pub use assessments::*;
pub use budgets::*;
pub use coverage::*;
mod spend;
pub use evidence::*;
pub use spend::*;

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub disabled: bool,
}

impl From<&cloudkeep_store::User> for UserView {
    fn from(u: &cloudkeep_store::User) -> Self {
        UserView {
            id: u.id.as_uuid(),
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role,
            created_at: u.created_at,
            disabled: u.disabled,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&cloudkeep_store::ApiToken> for TokenView {
    fn from(t: &cloudkeep_store::ApiToken) -> Self {
        TokenView {
            id: t.id.as_uuid(),
            user_id: t.user_id.as_uuid(),
            name: t.name.clone(),
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// A new token: its secret is shown this once and never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCreated {
    pub token: TokenView,
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTokenRequest {
    pub name: String,
    /// Days until the token expires; none for a token that does not expire.
    pub expires_in_days: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    #[schema(value_type = String)]
    pub password: SecretString,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    pub user: UserView,
    /// Send it as `X-CSRF-Token` on every state-changing request made with the session cookie.
    pub csrf_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    pub user: UserView,
    pub organisation_id: Uuid,
    pub organisation_name: String,
    /// The session's CSRF token, for a browser that reloaded since signing
    /// in (absent for API tokens, which need none).
    pub csrf_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(value_type = String)]
    pub current_password: SecretString,
    /// 12 characters or more.
    #[schema(value_type = String)]
    pub new_password: SecretString,
}

/// The password changed and every session of the user ended; a browser
/// session is replaced by a new one (its cookie, and this CSRF token).
#[derive(Debug, Serialize, ToSchema)]
pub struct PasswordChanged {
    pub user: UserView,
    pub csrf_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    pub email: String,
    pub name: String,
    pub role: Role,
    /// Optional initial password (12 characters or more).
    #[schema(value_type = Option<String>)]
    pub password: Option<SecretString>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleRequest {
    pub role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    pub name: String,
    /// The Entra tenant id (a GUID) or its default domain.
    pub tenant_id: String,
    /// The service principal's application (client) id.
    pub client_id: String,
    #[schema(value_type = String)]
    pub client_secret: SecretString,
    /// Connect only these subscriptions; all the principal sees when absent.
    pub subscription_ids: Option<Vec<String>>,
    /// Hours between syncs (default 24).
    pub cadence_hours: Option<u32>,
    /// Hours after which evidence counts as stale (default 48).
    pub stale_after_hours: Option<u32>,
}

/// A service principal to check before connecting it: nothing is stored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    pub tenant_id: String,
    pub client_id: String,
    #[schema(value_type = String)]
    pub client_secret: SecretString,
    /// Check only these subscriptions; all the principal sees when absent.
    pub subscription_ids: Option<Vec<String>>,
}

/// One subscription a checked principal sees: its roles there, what they
/// allow, and the sync level it would start at.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckedSubscription {
    pub subscription_id: String,
    pub display_name: String,
    pub permissions: PermissionReport,
    pub initial_level: SyncLevel,
    /// The live connection of this organisation that already holds it.
    pub connected_by: Option<Uuid>,
}

/// What connecting the principal would give, per subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionCheck {
    pub tenant_id: String,
    pub principal_id: String,
    pub subscriptions: Vec<CheckedSubscription>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnectionRequest {
    pub name: Option<String>,
    /// Hours between syncs (1 to 2160).
    pub cadence_hours: Option<u32>,
    /// Hours after which evidence counts as stale (1 to 2160).
    pub stale_after_hours: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReauthRequest {
    #[schema(value_type = String)]
    pub client_secret: SecretString,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionView {
    pub id: Uuid,
    pub connection_id: Uuid,
    /// The Azure subscription id.
    pub subscription_id: String,
    pub display_name: String,
    pub sync_level: SyncLevel,
    /// The roles the connection's principal holds there, and what they allow.
    pub permissions: PermissionReport,
    /// Set when the subscription left this connection (it was revoked):
    /// what was read of it stays readable as the connection's history.
    pub detached_at: Option<DateTime<Utc>>,
    /// When the inventory last listed it.
    pub inventory_at: Option<DateTime<Utc>>,
}

impl From<&cloudkeep_store::SubscriptionRecord> for SubscriptionView {
    fn from(s: &cloudkeep_store::SubscriptionRecord) -> Self {
        SubscriptionView {
            id: s.id.as_uuid(),
            connection_id: s.connection_id.as_uuid(),
            subscription_id: s.azure_id.clone(),
            display_name: s.display_name.clone(),
            sync_level: s.sync_level,
            permissions: s.permissions.clone(),
            detached_at: s.detached_at,
            inventory_at: s.inventory_at,
        }
    }
}

/// What lowering a sync level removed from the store.
#[derive(Debug, Serialize, ToSchema)]
pub struct LevelChangeView {
    pub resources_purged: u64,
    pub tags_purged: u64,
    pub history_purged: u64,
    pub edits_cancelled: u64,
    pub edits_made_local: u64,
}

/// A subscription after its sync level changed, and what the change removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncLevelChanged {
    #[serde(flatten)]
    pub subscription: SubscriptionView,
    pub removed: LevelChangeView,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionView {
    pub id: Uuid,
    pub name: String,
    pub tenant_id: String,
    pub client_id: String,
    pub principal_id: String,
    /// The customer's service principal, or cloudkeep's own application
    /// (connected by consent).
    pub auth_method: AuthMethod,
    pub status: ConnectionStatus,
    pub status_detail: Option<String>,
    pub cadence_secs: i64,
    pub stale_after_secs: i64,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub next_sync_at: Option<DateTime<Utc>>,
    pub subscriptions: Vec<SubscriptionView>,
}

impl From<&cloudkeep_store::Connection> for ConnectionView {
    fn from(c: &cloudkeep_store::Connection) -> Self {
        ConnectionView {
            id: c.id.as_uuid(),
            name: c.name.clone(),
            tenant_id: c.tenant_id.clone(),
            client_id: c.client_id.clone(),
            principal_id: c.principal_id.clone(),
            auth_method: c.auth_method,
            status: c.status,
            status_detail: c.status_detail.clone(),
            cadence_secs: c.cadence_secs,
            stale_after_secs: c.stale_after_secs,
            created_at: c.created_at,
            deleted_at: c.deleted_at,
            last_sync_at: c.last_sync_at,
            next_sync_at: c.next_sync_at,
            subscriptions: c.subscriptions.iter().map(SubscriptionView::from).collect(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncLevelRequest {
    pub sync_level: SyncLevel,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    pub seq: i64,
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    #[schema(value_type = Object)]
    pub details: Value,
    /// The previous event's hash (empty for the first event).
    pub prev_hash: String,
    /// HMAC-SHA256 under the audit key `key_id` (SHA-256 when `key_id` is
    /// empty) of `prev_hash`, a newline and the event's canonical JSON.
    pub hash: String,
    pub key_id: String,
}

impl From<&cloudkeep_store::AuditEvent> for AuditEventView {
    fn from(e: &cloudkeep_store::AuditEvent) -> Self {
        AuditEventView {
            seq: e.seq,
            id: e.id.as_uuid(),
            at: e.at,
            actor: e.actor.clone(),
            action: e.action.clone(),
            target: e.target.clone(),
            details: e.details.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
            key_id: e.key_id.clone(),
        }
    }
}

/// Live resources and their tags.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TagCoverageView {
    pub resources: u64,
    /// Resources whose subscription's sync level reads tags.
    pub tags_read: u64,
    /// Of those, resources with at least one tag.
    pub tagged: u64,
    /// The ten most used tag keys.
    pub keys: Vec<TagKeyCount>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TagKeyCount {
    pub key: String,
    pub resources: u64,
}

/// The audit chain's verification: every event's hash recomputed from
/// the one before, up to the organisation's head.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditVerification {
    pub intact: bool,
    /// Events verified (up to the break, when broken).
    pub events: i64,
    /// The sequence number of the first event that does not verify.
    pub broken_at: Option<i64>,
    /// What is wrong there, for people.
    pub problem: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SyncRunView {
    pub id: Uuid,
    pub connection_id: Uuid,
    pub trigger: SyncTrigger,
    pub status: RunStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Per subscription, each step's state, counts and progress; and what
    /// could not be read, and why.
    pub report: RunReport,
}

impl From<&cloudkeep_store::SyncRun> for SyncRunView {
    fn from(r: &cloudkeep_store::SyncRun) -> Self {
        SyncRunView {
            id: r.id,
            connection_id: r.connection_id.as_uuid(),
            trigger: r.trigger,
            status: r.status,
            started_at: r.started_at,
            finished_at: r.finished_at,
            report: r.report.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceView {
    pub id: Uuid,
    pub connection_id: Uuid,
    /// cloudkeep's subscription id.
    pub subscription_id: Uuid,
    /// The ARM id.
    pub azure_id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub resource_type: String,
    pub location: String,
    pub resource_group: String,
    /// Tags as last observed in Azure; absent when the sync level does not read tags.
    #[schema(value_type = Option<Object>)]
    pub tags: Option<cloudkeep_store::Tags>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Set when the resource is gone from Azure.
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<&cloudkeep_store::ResourceRecord> for ResourceView {
    fn from(r: &cloudkeep_store::ResourceRecord) -> Self {
        ResourceView {
            id: r.id,
            connection_id: r.connection_id.as_uuid(),
            subscription_id: r.subscription_id.as_uuid(),
            azure_id: r.arm_id.clone(),
            name: r.name.clone(),
            resource_type: r.resource_type.clone(),
            location: r.location.clone(),
            resource_group: r.resource_group.clone(),
            tags: r.tags.clone(),
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            deleted_at: r.deleted_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TagChangeView {
    pub observed_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub old: cloudkeep_store::Tags,
    #[schema(value_type = Object)]
    pub new: cloudkeep_store::Tags,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceDetail {
    pub resource: ResourceView,
    pub tag_history: Vec<TagChangeView>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagEditFilter {
    /// cloudkeep's subscription id.
    pub subscription: Option<String>,
    pub resource_group: Option<String>,
    #[serde(rename = "type")]
    pub resource_type: Option<String>,
    pub location: Option<String>,
    pub name: Option<String>,
    pub has_tag: Option<String>,
    /// `key=value`
    pub tag: Option<String>,
    pub missing_tag: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagEditRequest {
    /// One resource (cloudkeep's id)...
    pub resource_id: Option<Uuid>,
    /// ...or every live resource matching a filter.
    pub filter: Option<TagEditFilter>,
    /// Tags to set (name → value).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub set: cloudkeep_store::Tags,
    /// Tag names to remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TagEditView {
    pub id: Uuid,
    pub resource_id: Uuid,
    pub subscription_id: Uuid,
    pub author: String,
    #[schema(value_type = Object)]
    pub set: cloudkeep_store::Tags,
    pub remove: Vec<String>,
    /// The tags observed when the edit was made: the base of the three-way merge.
    #[schema(value_type = Object)]
    pub base: cloudkeep_store::Tags,
    pub state: TagEditState,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&cloudkeep_store::TagEdit> for TagEditView {
    fn from(e: &cloudkeep_store::TagEdit) -> Self {
        TagEditView {
            id: e.id,
            resource_id: e.resource_id,
            subscription_id: e.subscription_id.as_uuid(),
            author: e.author.clone(),
            set: e.set.clone(),
            remove: e.remove.clone(),
            base: e.base.clone(),
            state: e.state,
            reason: e.reason.clone(),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// One resource's tags before and after a planned edit.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlannedChange {
    pub resource_id: Uuid,
    pub name: String,
    #[schema(value_type = Object)]
    pub before: cloudkeep_store::Tags,
    #[schema(value_type = Object)]
    pub after: cloudkeep_store::Tags,
    /// `pending` (written back at the next sync) or `local_only`.
    pub state: TagEditState,
    pub reason: Option<String>,
}

/// What a tag edit request would do; nothing is stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct TagEditPreview {
    pub changes: Vec<PlannedChange>,
    pub skipped: Vec<SkippedResource>,
}

/// A resource a bulk edit left alone, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct SkippedResource {
    pub resource_id: Uuid,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TagEditsCreated {
    pub edits: Vec<TagEditView>,
    /// Resources matched but not edited (their subscription's sync level
    /// does not read tags).
    pub skipped: Vec<SkippedResource>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    /// `keep_mine` writes the edit over Azure's value at the next sync;
    /// `take_theirs` keeps Azure's value.
    pub resolution: Resolution,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResolveResponse {
    /// The re-queued edit, for `keep_mine`.
    pub edit: Option<TagEditView>,
}

// ---- consent ----

/// A subscription the signed-in Azure user can see, and whether they may
/// assign roles on it (Owner or User Access Administrator).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OfferedSubscription {
    pub subscription_id: String,
    pub display_name: String,
    pub can_assign_roles: bool,
    /// The live connection of this organisation that already holds it, if
    /// any: choose it with `move_connected` to move it to this flow's
    /// connection.
    pub connected_by: Option<Uuid>,
    /// Why cloudkeep could not tell, when it could not.
    pub note: Option<String>,
}

/// The consent flow after sign-in: what the user may connect. Choose with
/// `POST /api/v1/connections/consent/{flow}` before `expires_at`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentOffer {
    pub flow: String,
    pub tenant_id: String,
    /// The connection the flow extends, if it was started for one.
    pub connection_id: Option<Uuid>,
    /// The partner id the flow links unless `link_partner` is false.
    pub partner_id: Option<String>,
    pub subscriptions: Vec<OfferedSubscription>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentChoice {
    /// Azure subscription ids to connect (from the offer).
    #[serde(default)]
    pub subscriptions: Vec<String>,
    /// Name of a new connection (default: "Azure tenant {tenant id}").
    pub name: Option<String>,
    /// Link the installation's partner id (Partner Admin Link), when one is
    /// configured; default true.
    #[serde(default = "yes")]
    pub link_partner: bool,
    /// Chosen subscriptions that another connection holds, to move to this
    /// one (with what was read of them); others held elsewhere are refused.
    #[serde(default)]
    pub move_connected: Vec<String>,
}

fn yes() -> bool {
    true
}

/// What became of a role assignment the flow asked Azure for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssignmentOutcome {
    Created,
    AlreadyAssigned,
    Failed,
}

impl std::fmt::Display for AssignmentOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AssignmentOutcome::Created => "assigned",
            AssignmentOutcome::AlreadyAssigned => "already assigned",
            AssignmentOutcome::Failed => "not assigned",
        })
    }
}

/// One role assignment the flow asked Azure for.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleOutcome {
    pub role: cloudkeep_domain::policy::AzureRole,
    pub outcome: AssignmentOutcome,
    pub message: Option<String>,
}

/// What the flow did on one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentOutcome {
    /// cloudkeep now reads it.
    Connected,
    Failed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionConsent {
    pub subscription_id: String,
    pub outcome: ConsentOutcome,
    pub message: Option<String>,
    pub roles: Vec<RoleOutcome>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartnerOutcome {
    Linked,
    /// The principal is linked to another partner id, which is kept.
    LinkedElsewhere,
    Failed,
}

impl std::fmt::Display for PartnerOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PartnerOutcome::Linked => "linked",
            PartnerOutcome::LinkedElsewhere => "linked to another partner id (kept)",
            PartnerOutcome::Failed => "not linked",
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerLinkOutcome {
    pub partner_id: String,
    pub outcome: PartnerOutcome,
    pub message: Option<String>,
}

/// The end of a consent flow: each step's outcome and the connection.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentReport {
    /// The connection created or extended; absent when no subscription
    /// could be connected.
    pub connection: Option<ConnectionView>,
    pub subscriptions: Vec<SubscriptionConsent>,
    pub partner_link: Option<PartnerLinkOutcome>,
}
