//! Roles and permissions, sync levels and connection states.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A value that is not one of a closed set of names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{value}' is not a valid {what}; expected one of: {expected}")]
pub struct ParseError {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// A platform user's role in an organisation, most powerful first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Editor,
    Viewer,
    /// Reads evidence and the audit log, nothing else.
    Auditor,
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
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Admin,
        Role::Editor,
        Role::Viewer,
        Role::Auditor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
        }
    }

    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Owner => true,
            Role::Admin => !matches!(p, ManageOwners),
            Role::Editor => matches!(p, ReadData | ReadEvidence | EditTags),
            Role::Viewer => matches!(p, ReadData | ReadEvidence),
            Role::Auditor => matches!(p, ReadEvidence | ReadAudit),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ParseError {
                what: "role",
                value: s.to_string(),
                expected: "owner, admin, editor, viewer, auditor",
            })
    }
}

/// How much of a subscription cloudkeep reads and writes (PRODUCT.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncLevel {
    /// Spend only.
    NoResources,
    /// Resources without tags, in either direction.
    NoTags,
    /// Tags are read; edits stay in cloudkeep.
    ReadTagsOnly,
    /// Tags are read and edits are written back.
    #[default]
    ReadWriteTags,
}

impl SyncLevel {
    pub const ALL: [SyncLevel; 4] = [
        SyncLevel::NoResources,
        SyncLevel::NoTags,
        SyncLevel::ReadTagsOnly,
        SyncLevel::ReadWriteTags,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncLevel::NoResources => "no_resources",
            SyncLevel::NoTags => "no_tags",
            SyncLevel::ReadTagsOnly => "read_tags_only",
            SyncLevel::ReadWriteTags => "read_write_tags",
        }
    }

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

impl fmt::Display for SyncLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SyncLevel {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SyncLevel::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| ParseError {
                what: "sync level",
                value: s.to_string(),
                expected: "no_resources, no_tags, read_tags_only, read_write_tags",
            })
    }
}

/// The state of a connection to an Azure tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionStatus {
    Active,
    /// The credential stopped working (expired or wrong secret): a user must re-authenticate.
    NeedsReauth,
    /// Syncs fail for another reason.
    Failing,
    Revoked,
}

impl ConnectionStatus {
    pub const ALL: [ConnectionStatus; 4] = [
        ConnectionStatus::Active,
        ConnectionStatus::NeedsReauth,
        ConnectionStatus::Failing,
        ConnectionStatus::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionStatus::Active => "active",
            ConnectionStatus::NeedsReauth => "needs_reauth",
            ConnectionStatus::Failing => "failing",
            ConnectionStatus::Revoked => "revoked",
        }
    }
}

impl fmt::Display for ConnectionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ConnectionStatus {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ConnectionStatus::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ParseError {
                what: "connection status",
                value: s.to_string(),
                expected: "active, needs_reauth, failing, revoked",
            })
    }
}

/// How a connection proves itself to Entra ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// The customer's own service principal; its secret is sealed in the store.
    ClientSecret,
    /// The operator's multi-tenant application, consented in the tenant by
    /// the consent flow; its secret is the operator's configuration, never
    /// stored per connection.
    OperatorApp,
}

impl AuthMethod {
    pub const ALL: [AuthMethod; 2] = [AuthMethod::ClientSecret, AuthMethod::OperatorApp];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecret => "client_secret",
            AuthMethod::OperatorApp => "operator_app",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMethod {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuthMethod::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| ParseError {
                what: "authentication method",
                value: s.to_string(),
                expected: "client_secret, operator_app",
            })
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
    }

    #[test]
    fn names_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        for l in SyncLevel::ALL {
            assert_eq!(l.as_str().parse::<SyncLevel>(), Ok(l));
        }
        let err = "everything".parse::<SyncLevel>().unwrap_err();
        assert!(err.to_string().contains("read_write_tags"));
        assert_eq!(SyncLevel::default(), SyncLevel::ReadWriteTags);
    }
}
