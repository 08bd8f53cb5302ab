//! Roles and permissions, sync levels and connection states.

use crate::names::names;

names! {
    /// A platform user's role in an organisation, most powerful first.
    pub enum Role("role") {
        Owner = "owner",
        Admin = "admin",
        Editor = "editor",
        Viewer = "viewer",
        /// Reads evidence and the audit log, nothing else.
        Auditor = "auditor",
    }
}

/// Things a role may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Read inventory, spend and connections.
    ReadData,
    /// Read evidence and assessments.
    ReadEvidence,
    ReadAudit,
    EditTags,
    /// Connect, re-authenticate, revoke, change sync levels.
    ManageConnections,
    /// Invite users, change roles, issue tokens for others.
    ManageUsers,
    /// Only an owner may make or unmake owners.
    ManageOwners,
    /// Change the control mapping and the secure-score threshold.
    ManageControls,
    /// Add, change and remove webhooks; read their deliveries.
    ManageWebhooks,
    /// Acknowledge an alert.
    AcknowledgeAlerts,
    /// Create assessments, attach and detach their evidence.
    ManageAssessments,
    /// Approve an assessment (owners and auditors: the people who attest).
    ApproveAssessments,
    /// Draw a Type II sample (those who prepare and those who audit).
    DrawSamples,
    /// Invite an auditor to one assessment, grant an auditor the data
    /// (spend, tags), change the retention window: an owner's decisions.
    GrantAuditAccess,
}

impl Role {
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Owner => true,
            Role::Admin => !matches!(p, ManageOwners | ApproveAssessments | GrantAuditAccess),
            Role::Editor => matches!(p, ReadData | ReadEvidence | EditTags | AcknowledgeAlerts),
            Role::Viewer => matches!(p, ReadData | ReadEvidence),
            Role::Auditor => matches!(
                p,
                ReadEvidence | ReadAudit | ApproveAssessments | DrawSamples
            ),
        }
    }
}

names! {
    /// How much of a subscription cloudkeep reads and writes (the product's sync levels).
    #[derive(Default)]
    pub enum SyncLevel("sync level") {
        /// Spend only.
        NoResources = "no_resources",
        /// Resources without tags, in either direction.
        NoTags = "no_tags",
        /// Tags are read; edits stay in cloudkeep.
        ReadTagsOnly = "read_tags_only",
        /// Tags are read and edits are written back.
        #[default]
        ReadWriteTags = "read_write_tags",
    }
}

impl SyncLevel {
    pub fn reads_resources(self) -> bool {
        self != SyncLevel::NoResources
    }

    pub fn reads_tags(self) -> bool {
        matches!(self, SyncLevel::ReadTagsOnly | SyncLevel::ReadWriteTags)
    }

    pub fn writes_tags(self) -> bool {
        self == SyncLevel::ReadWriteTags
    }
}

names! {
    /// The state of a connection to an Azure tenant.
    pub enum ConnectionStatus("connection status") {
        Active = "active",
        /// The credential stopped working (expired or wrong secret): a user must re-authenticate.
        NeedsReauth = "needs_reauth",
        /// Syncs fail for another reason.
        Failing = "failing",
        Revoked = "revoked",
    }
}

names! {
    /// How a connection proves itself to Entra ID.
    pub enum AuthMethod("authentication method") {
        /// The customer's own service principal; its secret is sealed in the store.
        ClientSecret = "client_secret",
        /// The operator's multi-tenant application, consented in the tenant by
        /// the consent flow; its secret is the operator's configuration, never
        /// stored per connection.
        OperatorApp = "operator_app",
    }
}

/// The operator's own multi-tenant Entra ID application: the service
/// principal the consent flow assigns roles to, and the credential its
/// connections sync with. Configured by whoever runs cloudkeep. (Its
/// service principal's object id differs in every tenant, so it is read
/// from the app-only token's `oid` there, never configured.)
#[derive(Debug, Clone)]
pub struct OperatorApp {
    pub client_id: String,
    pub client_secret: crate::SecretString,
    /// A Microsoft Partner Network id to link (Partner Admin Link).
    pub partner_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_permit_what_product_md_says() {
        assert!(Role::Owner.allows(Permission::ManageOwners));
        assert!(!Role::Admin.allows(Permission::ManageOwners));
        assert!(Role::Admin.allows(Permission::ManageConnections));
        assert!(Role::Editor.allows(Permission::EditTags));
        assert!(!Role::Editor.allows(Permission::ManageConnections));
        assert!(!Role::Viewer.allows(Permission::EditTags));
        assert!(Role::Auditor.allows(Permission::ReadAudit));
        assert!(!Role::Auditor.allows(Permission::ReadData));
        // Evidence: everyone reads it; admins and owners change its mapping.
        for r in Role::ALL {
            assert!(r.allows(Permission::ReadEvidence), "{r}");
            let manages = matches!(r, Role::Owner | Role::Admin);
            assert_eq!(r.allows(Permission::ManageControls), manages, "{r}");
            assert_eq!(r.allows(Permission::ManageWebhooks), manages, "{r}");
        }
        assert!(Role::Editor.allows(Permission::AcknowledgeAlerts));
        assert!(!Role::Viewer.allows(Permission::AcknowledgeAlerts));
        // Assessments: owners and auditors attest; only owners grant access.
        for r in Role::ALL {
            let attests = matches!(r, Role::Owner | Role::Auditor);
            assert_eq!(r.allows(Permission::ApproveAssessments), attests, "{r}");
            assert_eq!(
                r.allows(Permission::GrantAuditAccess),
                *r == Role::Owner,
                "{r}"
            );
        }
        assert!(!Role::Auditor.allows(Permission::ManageAssessments));
        assert!(Role::Admin.allows(Permission::ManageAssessments));
    }

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(*r));
        }
        for l in SyncLevel::ALL {
            assert_eq!(l.as_str().parse::<SyncLevel>(), Ok(*l));
        }
        let err = "everything".parse::<SyncLevel>().unwrap_err();
        assert!(err.to_string().contains("read_write_tags"));
        assert_eq!(SyncLevel::default(), SyncLevel::ReadWriteTags);
    }
}
