//! The rules that decide what cloudkeep may do: which Azure roles enable
//! which features (and so the sync level a subscription starts at), what
//! becomes of a tag edit at each sync level, and the last-owner rule. The
//! HTTP layer asks; these answer.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{Role, SyncLevel};
use crate::names::names;
use crate::states::TagEditState;

names! {
    /// Something cloudkeep does with a subscription, enabled by Azure roles.
    pub enum Feature("feature") {
        Inventory = "inventory",
        TagRead = "tag_read",
        TagWriteBack = "tag_write_back",
        Spend = "spend",
        SecureScore = "secure_score",
        SecurityEvidence = "security_evidence",
    }
}

names! {
    /// The Azure built-in roles cloudkeep knows about.
    pub enum AzureRole("Azure role") {
        Reader = "Reader",
        CostManagementReader = "Cost Management Reader",
        SecurityReader = "Security Reader",
        TagContributor = "Tag Contributor",
        Contributor = "Contributor",
        Owner = "Owner",
    }
}

impl AzureRole {
    /// The built-in role definition's id (the same in every tenant).
    pub fn definition_id(self) -> &'static str {
        match self {
            AzureRole::Reader => "acdd72a7-3385-48ef-bd42-f606fba81ae7",
            AzureRole::CostManagementReader => "72fafb9e-0641-4937-9268-a91bfd8191a3",
            AzureRole::SecurityReader => "39bc4728-0917-49c7-9d2c-d95423bc2eb4",
            AzureRole::TagContributor => "4a9ae827-6dc8-4573-8ac7-8239d42aa03f",
            AzureRole::Contributor => "b24988ac-6180-42a0-ab88-20f7382dd24c",
            AzureRole::Owner => "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
        }
    }

    /// The role whose definition id this is (an id or a full
    /// `.../roleDefinitions/{id}`), any case.
    pub fn from_definition_id(id: &str) -> Option<AzureRole> {
        let id = id.rsplit('/').next().unwrap_or(id);
        AzureRole::ALL
            .iter()
            .copied()
            .find(|r| r.definition_id().eq_ignore_ascii_case(id))
    }

    /// The roles cloudkeep asks for, least privilege first.
    pub const RECOMMENDED: [AzureRole; 4] = [
        AzureRole::Reader,
        AzureRole::CostManagementReader,
        AzureRole::SecurityReader,
        AzureRole::TagContributor,
    ];

    /// Roles broad enough to cover every recommended one.
    fn is_broad(self) -> bool {
        matches!(self, AzureRole::Owner | AzureRole::Contributor)
    }
}

impl Feature {
    /// The roles that enable the feature.
    pub fn granted_by(self) -> &'static [AzureRole] {
        use AzureRole::*;
        match self {
            Feature::Inventory => &[Reader, Contributor, Owner],
            Feature::TagRead => &[Reader, TagContributor, Contributor, Owner],
            Feature::TagWriteBack => &[TagContributor, Contributor, Owner],
            Feature::Spend => &[CostManagementReader, Reader, Contributor, Owner],
            Feature::SecureScore => &[SecurityReader, Reader, Contributor, Owner],
            Feature::SecurityEvidence => &[Reader, SecurityReader, Contributor, Owner],
        }
    }
}

/// A recommended role the principal lacks, and what that disables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MissingRole {
    pub role: AzureRole,
    /// Features off because of it (empty when another role covers them).
    pub features_disabled: Vec<Feature>,
}

/// What a principal can and cannot do on a subscription, by its roles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PermissionReport {
    pub roles_present: Vec<AzureRole>,
    pub roles_missing: Vec<MissingRole>,
    pub features_enabled: Vec<Feature>,
    pub features_disabled: Vec<Feature>,
}

impl PermissionReport {
    pub fn enables(&self, feature: Feature) -> bool {
        self.features_enabled.contains(&feature)
    }

    /// The sync level a new subscription starts at: read and write tags
    /// when the principal may write them, else what it can do.
    pub fn initial_level(&self) -> SyncLevel {
        if !self.enables(Feature::Inventory) {
            SyncLevel::NoResources
        } else if self.enables(Feature::TagWriteBack) && self.enables(Feature::TagRead) {
            SyncLevel::ReadWriteTags
        } else if self.enables(Feature::TagRead) {
            SyncLevel::ReadTagsOnly
        } else {
            SyncLevel::NoTags
        }
    }
}

/// Assesses a principal's role assignments (role definition ids) on a
/// subscription.
pub fn assess(role_definition_ids: &[String]) -> PermissionReport {
    let present: BTreeSet<AzureRole> = role_definition_ids
        .iter()
        .filter_map(|id| AzureRole::from_definition_id(id))
        .collect();
    let enabled = |f: Feature| f.granted_by().iter().any(|r| present.contains(r));
    let (features_enabled, features_disabled): (Vec<Feature>, Vec<Feature>) =
        Feature::ALL.iter().partition(|f| enabled(**f));
    let broad = present.iter().any(|r| r.is_broad());
    let roles_missing = AzureRole::RECOMMENDED
        .iter()
        .filter(|r| !present.contains(r) && !broad)
        .map(|r| MissingRole {
            role: *r,
            features_disabled: Feature::ALL
                .iter()
                .copied()
                .filter(|f| f.granted_by().contains(r) && !enabled(*f))
                .collect(),
        })
        .collect();
    PermissionReport {
        roles_present: AzureRole::ALL
            .iter()
            .copied()
            .filter(|r| present.contains(r))
            .collect(),
        roles_missing,
        features_enabled,
        features_disabled,
    }
}

// Sorted sets of roles need an order; declaration order is least privilege first.
impl PartialOrd for AzureRole {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for AzureRole {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let at = |r: &AzureRole| AzureRole::ALL.iter().position(|x| x == r);
        at(self).cmp(&at(other))
    }
}

/// What a new tag edit becomes at a subscription's sync level, or why it
/// is refused.
pub fn tag_edit_state(level: SyncLevel) -> Result<(TagEditState, Option<String>), String> {
    match level {
        SyncLevel::ReadWriteTags => Ok((TagEditState::Pending, None)),
        SyncLevel::ReadTagsOnly => Ok((
            TagEditState::Local,
            Some(
                "the subscription is at read_tags_only: the edit is kept in cloudkeep and never written to Azure"
                    .into(),
            ),
        )),
        other => Err(format!(
            "the subscription is at {other}: cloudkeep neither reads nor writes its tags; raise the sync level to edit them"
        )),
    }
}

/// What lowering a subscription's sync level does to the edits and data it
/// no longer allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelChange {
    /// Stored resources (and so their tags and history) are purged.
    pub purge_resources: bool,
    /// Stored tags and tag history are purged.
    pub purge_tags: bool,
    /// Open edits (pending and local) are cancelled.
    pub cancel_edits: bool,
    /// Pending edits become local (no longer written to Azure).
    pub pending_to_local: bool,
}

impl LevelChange {
    pub fn between(from: SyncLevel, to: SyncLevel) -> LevelChange {
        let _ = from;
        LevelChange {
            purge_resources: !to.reads_resources(),
            purge_tags: !to.reads_tags(),
            cancel_edits: !to.reads_tags(),
            pending_to_local: to == SyncLevel::ReadTagsOnly,
        }
    }

    pub fn changes_anything(&self) -> bool {
        self.purge_resources || self.purge_tags || self.cancel_edits || self.pending_to_local
    }
}

/// Why a role change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleChangeError {
    #[error("only an owner may make or unmake owners")]
    OwnersOnly,
    #[error("an organisation keeps at least one owner: make someone else owner first")]
    LastOwner,
    #[error("you cannot disable yourself: another user with the right to manage users can")]
    Yourself,
}

/// Whether `actor` may disable a user holding `role` (`yourself` when it
/// is the actor's own account), given how many active owners there are:
/// the same rules as unmaking an owner, and no one locks themselves out.
pub fn check_disable(
    actor: Role,
    role: Role,
    yourself: bool,
    active_owners: usize,
) -> Result<(), RoleChangeError> {
    if yourself {
        return Err(RoleChangeError::Yourself);
    }
    check_role_change(actor, role, Role::Viewer, active_owners)
}

/// Whether `actor` may move a user from `current` to `new`, given how many
/// active owners the organisation has.
pub fn check_role_change(
    actor: Role,
    current: Role,
    new: Role,
    active_owners: usize,
) -> Result<(), RoleChangeError> {
    let touches_owner = new == Role::Owner || current == Role::Owner;
    if touches_owner && !actor.allows(crate::Permission::ManageOwners) {
        return Err(RoleChangeError::OwnersOnly);
    }
    if current == Role::Owner && new != Role::Owner && active_owners <= 1 {
        return Err(RoleChangeError::LastOwner);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabling_keeps_an_owner_and_is_not_for_oneself() {
        use Role::*;
        assert_eq!(check_disable(Admin, Viewer, false, 1), Ok(()));
        assert_eq!(
            check_disable(Admin, Owner, false, 2),
            Err(RoleChangeError::OwnersOnly)
        );
        assert_eq!(
            check_disable(Owner, Owner, false, 1),
            Err(RoleChangeError::LastOwner)
        );
        assert_eq!(check_disable(Owner, Owner, false, 2), Ok(()));
        assert_eq!(
            check_disable(Owner, Owner, true, 2),
            Err(RoleChangeError::Yourself)
        );
    }

    fn ids(roles: &[AzureRole]) -> Vec<String> {
        roles
            .iter()
            .map(|r| r.definition_id().to_string())
            .collect()
    }

    #[test]
    fn reports_what_is_missing_and_why() {
        let full = assess(&ids(&AzureRole::RECOMMENDED));
        assert!(full.roles_missing.is_empty() && full.features_disabled.is_empty());
        assert_eq!(full.initial_level(), SyncLevel::ReadWriteTags);

        let reader_only = assess(&ids(&[AzureRole::Reader]));
        assert_eq!(reader_only.features_disabled, vec![Feature::TagWriteBack]);
        let missing = |r: &PermissionReport, role| {
            r.roles_missing
                .iter()
                .find(|m| m.role == role)
                .cloned()
                .expect("missing")
        };
        assert_eq!(
            missing(&reader_only, AzureRole::TagContributor).features_disabled,
            vec![Feature::TagWriteBack]
        );
        assert!(
            missing(&reader_only, AzureRole::CostManagementReader)
                .features_disabled
                .is_empty(),
            "Reader covers spend"
        );
        assert_eq!(reader_only.initial_level(), SyncLevel::ReadTagsOnly);

        let no_reader = assess(&ids(&[
            AzureRole::CostManagementReader,
            AzureRole::SecurityReader,
            AzureRole::TagContributor,
        ]));
        assert_eq!(
            missing(&no_reader, AzureRole::Reader).features_disabled,
            vec![Feature::Inventory]
        );
        assert_eq!(
            no_reader.initial_level(),
            SyncLevel::NoResources,
            "no inventory without Reader"
        );

        let owner = assess(&[format!(
            "/subscriptions/x/providers/Microsoft.Authorization/roleDefinitions/{}",
            AzureRole::Owner.definition_id().to_uppercase()
        )]);
        assert!(owner.roles_missing.is_empty());
        assert_eq!(owner.roles_present, vec![AzureRole::Owner]);
    }

    #[test]
    fn tag_edits_follow_the_sync_level() {
        assert_eq!(
            tag_edit_state(SyncLevel::ReadWriteTags),
            Ok((TagEditState::Pending, None))
        );
        assert_eq!(
            tag_edit_state(SyncLevel::ReadTagsOnly).map(|s| s.0),
            Ok(TagEditState::Local)
        );
        assert!(
            tag_edit_state(SyncLevel::NoTags)
                .expect_err("refused")
                .contains("no_tags")
        );
        assert!(tag_edit_state(SyncLevel::NoResources).is_err());
    }

    #[test]
    fn lowering_a_level_says_what_goes() {
        let to = |l| LevelChange::between(SyncLevel::ReadWriteTags, l);
        assert!(to(SyncLevel::NoResources).purge_resources);
        let no_tags = to(SyncLevel::NoTags);
        assert!(!no_tags.purge_resources && no_tags.purge_tags && no_tags.cancel_edits);
        let read_only = to(SyncLevel::ReadTagsOnly);
        assert!(read_only.pending_to_local && !read_only.purge_tags);
        assert!(!to(SyncLevel::ReadWriteTags).changes_anything());
    }

    #[test]
    fn an_organisation_keeps_an_owner() {
        use Role::*;
        assert_eq!(check_role_change(Owner, Owner, Admin, 2), Ok(()));
        assert_eq!(
            check_role_change(Owner, Owner, Admin, 1),
            Err(RoleChangeError::LastOwner)
        );
        assert_eq!(
            check_role_change(Admin, Viewer, Owner, 1),
            Err(RoleChangeError::OwnersOnly)
        );
        assert_eq!(check_role_change(Admin, Viewer, Editor, 1), Ok(()));
    }
}
