//! Security evidence: the checks the evidence collectors make, the SOC 2
//! controls they support (the default mapping, documented in
//! `docs/controls.md`, which a test keeps equal to this file), the result
//! of one observation, and coverage: the worst-state rule and the figures
//! of a check or a control.
//!
//! A check is one question asked of one kind of subject ("does this
//! storage account allow anonymous blob access?"); each is its own
//! evidence, never merged with another. The collectors answer them, the
//! store keeps the answers as fingerprinted intervals, and coverage counts
//! them here.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::names::names;
use crate::policy::AzureRole;

names! {
    /// What one observation of a check found.
    pub enum EvidenceResult("evidence result") {
        Pass = "pass",
        Fail = "fail",
        /// The check does not apply (a secure-score control with `max: 0`,
        /// a disabled key, a subscription without key vaults).
        NotApplicable = "not_applicable",
        /// cloudkeep could not read it (a role is missing, or it needs an API
        /// cloudkeep does not ask for); the reason says which.
        NotCollected = "not_collected",
    }
}

names! {
    /// The collectors that produce evidence, one per Azure service read.
    pub enum EvidenceSource("evidence collector") {
        Rbac = "rbac",
        Defender = "defender",
        Storage = "storage",
        KeyVault = "keyvault",
    }
}

names! {
    /// A SOC 2 Trust Services Criterion that evidence supports.
    pub enum ControlId("control") {
        /// Logical access security software, infrastructure and architectures.
        Cc61 = "CC6.1",
        /// Boundary protection against threats from outside the system.
        Cc66 = "CC6.6",
        /// Detection and monitoring of configuration changes and new vulnerabilities.
        Cc71 = "CC7.1",
    }
}

impl ControlId {
    pub fn title(self) -> &'static str {
        match self {
            ControlId::Cc61 => "Logical access security",
            ControlId::Cc66 => "Boundary protection",
            ControlId::Cc71 => "Configuration and vulnerability monitoring",
        }
    }

    /// The criterion, in the AICPA's words (Trust Services Criteria, 2017,
    /// revised 2022).
    pub fn criterion(self) -> &'static str {
        match self {
            ControlId::Cc61 => {
                "The entity implements logical access security software, infrastructure, and architectures over protected information assets to protect them from security events to meet the entity's objectives."
            }
            ControlId::Cc66 => {
                "The entity implements logical access security measures to protect against threats from sources outside its system boundaries."
            }
            ControlId::Cc71 => {
                "To meet its objectives, the entity uses detection and monitoring procedures to identify (1) changes to configurations that result in the introduction of new vulnerabilities, and (2) susceptibilities to newly discovered vulnerabilities."
            }
        }
    }

    /// The checks that support it by default (`docs/controls.md`).
    pub fn default_checks(self) -> Vec<CheckId> {
        CheckId::ALL
            .iter()
            .copied()
            .filter(|c| c.default_controls().contains(&self))
            .collect()
    }
}

names! {
    /// One question the evidence collectors answer about one kind of subject.
    pub enum CheckId("check") {
        RbacOwnerCount = "rbac.owner_count",
        RbacCustomOwnerRoles = "rbac.custom_owner_roles",
        RbacUserAccessAdministrator = "rbac.user_access_administrator",
        RbacPrivilegedForeignGroups = "rbac.privileged_foreign_groups",
        RbacPrivilegedUsers = "rbac.privileged_users",
        RbacGuestUsers = "rbac.guest_users",
        DefenderSecureScore = "defender.secure_score",
        DefenderScoreControl = "defender.score_control",
        DefenderPlanStorage = "defender.plan_storage",
        DefenderPlanKeyVault = "defender.plan_key_vault",
        DefenderPlanCspm = "defender.plan_cspm",
        StorageAnonymousBlobAccess = "storage.anonymous_blob_access",
        StoragePublicNetworkAccess = "storage.public_network_access",
        StorageNetworkDefaultDeny = "storage.network_default_deny",
        StorageHttpsOnly = "storage.https_only",
        StorageMinimumTls = "storage.minimum_tls",
        StorageSharedKeyAccess = "storage.shared_key_access",
        KeyVaultDeletionProtection = "keyvault.deletion_protection",
        KeyVaultRbacAuthorization = "keyvault.rbac_authorization",
        KeyVaultPublicNetworkAccess = "keyvault.public_network_access",
        KeyVaultKeyRotation = "keyvault.key_rotation",
        KeyVaultKeyExpiry = "keyvault.key_expiry",
        KeyVaultSecretExpiry = "keyvault.secret_expiry",
    }
}

impl CheckId {
    /// The collector that answers it.
    pub fn source(self) -> EvidenceSource {
        use CheckId::*;
        match self {
            RbacOwnerCount
            | RbacCustomOwnerRoles
            | RbacUserAccessAdministrator
            | RbacPrivilegedForeignGroups
            | RbacPrivilegedUsers
            | RbacGuestUsers => EvidenceSource::Rbac,
            DefenderSecureScore | DefenderScoreControl | DefenderPlanStorage
            | DefenderPlanKeyVault | DefenderPlanCspm => EvidenceSource::Defender,
            StorageAnonymousBlobAccess
            | StoragePublicNetworkAccess
            | StorageNetworkDefaultDeny
            | StorageHttpsOnly
            | StorageMinimumTls
            | StorageSharedKeyAccess => EvidenceSource::Storage,
            KeyVaultDeletionProtection
            | KeyVaultRbacAuthorization
            | KeyVaultPublicNetworkAccess
            | KeyVaultKeyRotation
            | KeyVaultKeyExpiry
            | KeyVaultSecretExpiry => EvidenceSource::KeyVault,
        }
    }

    /// What passes, in a line.
    pub fn title(self) -> &'static str {
        use CheckId::*;
        match self {
            RbacOwnerCount => {
                "Between 2 and 3 distinct Owners at the subscription (a group counts as one)"
            }
            RbacCustomOwnerRoles => {
                "No custom role with '*' actions assignable at the subscription"
            }
            RbacUserAccessAdministrator => "No User Access Administrator at the subscription",
            RbacPrivilegedForeignGroups => {
                "No privileged role held by a ForeignGroup (a group of another tenant)"
            }
            RbacPrivilegedUsers => {
                "No privileged role held directly by a user at the subscription (flagged for review)"
            }
            RbacGuestUsers => "No guest users with access (needs Microsoft Graph)",
            DefenderSecureScore => "Secure score at or above the organisation's threshold",
            DefenderScoreControl => "Every scored secure-score control has no unhealthy resources",
            DefenderPlanStorage => "Defender for Storage on the Standard tier",
            DefenderPlanKeyVault => "Defender for Key Vault on the Standard tier",
            DefenderPlanCspm => "Defender CSPM on the Standard tier",
            StorageAnonymousBlobAccess => "Anonymous blob access off",
            StoragePublicNetworkAccess => {
                "Public network access disabled (or secured by perimeter)"
            }
            StorageNetworkDefaultDeny => "Network rules deny by default",
            StorageHttpsOnly => "HTTPS only",
            StorageMinimumTls => "Minimum TLS version 1.2",
            StorageSharedKeyAccess => "Shared key access off",
            KeyVaultDeletionProtection => "Soft delete with purge protection",
            KeyVaultRbacAuthorization => "RBAC authorisation (not access policies)",
            KeyVaultPublicNetworkAccess => "Public network access disabled",
            KeyVaultKeyRotation => "Key has a rotation policy that rotates",
            KeyVaultKeyExpiry => "Enabled key has an expiry",
            KeyVaultSecretExpiry => "Enabled secret has an expiry",
        }
    }

    /// The Azure roles that let a principal make the reads this check
    /// needs; a principal with none of them gets "not collected (needs
    /// the first)". Owner and Contributor read everything.
    pub fn needs(self) -> &'static [AzureRole] {
        use AzureRole::*;
        match self.source() {
            // Microsoft.Authorization/*/read is in Reader and Security Reader.
            EvidenceSource::Rbac => &[Reader, SecurityReader, Contributor, Owner],
            EvidenceSource::Defender => &[SecurityReader, Reader, Contributor, Owner],
            EvidenceSource::Storage | EvidenceSource::KeyVault => &[Reader, Contributor, Owner],
        }
    }

    /// The controls it supports by default.
    pub fn default_controls(self) -> &'static [ControlId] {
        use CheckId::*;
        use ControlId::*;
        match self {
            RbacOwnerCount
            | RbacCustomOwnerRoles
            | RbacUserAccessAdministrator
            | RbacPrivilegedUsers
            | RbacGuestUsers
            | StorageSharedKeyAccess
            | KeyVaultDeletionProtection
            | KeyVaultRbacAuthorization
            | KeyVaultKeyRotation
            | KeyVaultKeyExpiry
            | KeyVaultSecretExpiry => &[Cc61],
            RbacPrivilegedForeignGroups | StorageAnonymousBlobAccess => &[Cc61, Cc66],
            StoragePublicNetworkAccess
            | StorageNetworkDefaultDeny
            | StorageHttpsOnly
            | StorageMinimumTls
            | KeyVaultPublicNetworkAccess => &[Cc66],
            DefenderSecureScore | DefenderScoreControl | DefenderPlanStorage
            | DefenderPlanKeyVault | DefenderPlanCspm => &[Cc71],
        }
    }

    /// The checks a collector answers.
    pub fn of(source: EvidenceSource) -> impl Iterator<Item = CheckId> {
        CheckId::ALL
            .iter()
            .copied()
            .filter(move |c| c.source() == source)
    }
}

/// The organisation's default secure-score threshold (a fraction).
pub const DEFAULT_SECURE_SCORE_THRESHOLD: f64 = 0.7;

/// An organisation's change to the default mapping: a check added to a
/// control, or taken out of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingOverride {
    pub control: ControlId,
    pub check: CheckId,
    /// `true`: added; `false`: taken out.
    pub included: bool,
}

/// The checks of a control for an organisation: the default mapping with
/// its overrides applied, in the catalogue's order.
pub fn effective_checks(control: ControlId, overrides: &[MappingOverride]) -> Vec<CheckId> {
    CheckId::ALL
        .iter()
        .copied()
        .filter(|check| {
            let by_default = check.default_controls().contains(&control);
            overrides
                .iter()
                .rev()
                .find(|o| o.control == control && o.check == *check)
                .map_or(by_default, |o| o.included)
        })
        .collect()
}

names! {
    /// Where a check or a control stands. Worst first wins: failing, then
    /// not collected, then stale, then passing; not applicable only when
    /// nothing applies.
    pub enum CoverageState("coverage state") {
        /// Fresh evidence, all passing.
        Passing = "passing",
        /// Evidence older than its connection's stale threshold.
        Stale = "stale",
        /// Evidence cloudkeep could not read (or never read).
        NotCollected = "not_collected",
        /// Fresh evidence with a failure.
        Failing = "failing",
        /// Nothing applicable to judge.
        NotApplicable = "not_applicable",
    }
}

/// Counts of evidence items by state, for a check or a control.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Tally {
    pub passing: u64,
    pub failing: u64,
    pub stale: u64,
    pub not_collected: u64,
    /// Excluded from coverage.
    pub not_applicable: u64,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.passing += other.passing;
        self.failing += other.failing;
        self.stale += other.stale;
        self.not_collected += other.not_collected;
        self.not_applicable += other.not_applicable;
    }

    /// Items coverage counts: everything but the not applicable.
    pub fn applicable(&self) -> u64 {
        self.passing + self.failing + self.stale + self.not_collected
    }

    /// Collected and within the stale threshold.
    pub fn fresh(&self) -> u64 {
        self.passing + self.failing
    }

    /// The worst state present (see `CoverageState`).
    pub fn state(&self) -> CoverageState {
        if self.failing > 0 {
            CoverageState::Failing
        } else if self.not_collected > 0 {
            CoverageState::NotCollected
        } else if self.stale > 0 {
            CoverageState::Stale
        } else if self.passing > 0 {
            CoverageState::Passing
        } else {
            CoverageState::NotApplicable
        }
    }

    /// Fresh ÷ applicable; `None` when nothing applies.
    pub fn evidence_coverage(&self) -> Option<f64> {
        ratio(self.fresh(), self.applicable())
    }

    /// Passing ÷ fresh; `None` when nothing is fresh.
    pub fn pass_rate(&self) -> Option<f64> {
        ratio(self.passing, self.fresh())
    }
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// How one stored observation counts: its result, and whether its
/// connection's stale threshold has passed since it was last observed.
pub fn counts_as(result: EvidenceResult, stale: bool) -> Tally {
    let mut t = Tally::default();
    match result {
        EvidenceResult::NotApplicable => t.not_applicable = 1,
        EvidenceResult::NotCollected => t.not_collected = 1,
        _ if stale => t.stale = 1,
        EvidenceResult::Fail => t.failing = 1,
        EvidenceResult::Pass => t.passing = 1,
    }
    t
}

names! {
    /// What an alert is about. Alerts are built once for every area:
    /// evidence staleness here, spend's budgets and anomalies later.
    pub enum AlertKind("alert kind") {
        /// A connection has not synced successfully within its stale
        /// threshold: its evidence counts as stale.
        EvidenceStale = "evidence_stale",
        /// A budget's actual spend this month crossed one of its thresholds.
        BudgetActual = "budget_actual",
        /// A budget's month-end forecast crossed one of its thresholds.
        BudgetForecast = "budget_forecast",
        /// A subscription's daily cost on a service left its expected range
        /// (an incident of consecutive anomalous days).
        SpendAnomaly = "spend_anomaly",
        /// Spend in a region or on a service a subscription has never used.
        SpendNewUsage = "spend_new_usage",
    }
}

names! {
    /// Where an alert stands. Each transition is stored, audited and
    /// delivered to the organisation's webhooks.
    pub enum AlertState("alert state") {
        Open = "open",
        /// Someone has seen it; it stays until its cause clears.
        Acknowledged = "acknowledged",
        /// Its cause cleared.
        Resolved = "resolved",
    }
}

names! {
    /// Where a webhook delivery stands.
    pub enum DeliveryState("delivery state") {
        /// Queued, or waiting for a retry.
        Pending = "pending",
        /// The receiver answered 2xx.
        Delivered = "delivered",
        /// Every attempt failed, or the webhook was refused (its address).
        Failed = "failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(p: u64, f: u64, s: u64, n: u64, na: u64) -> Tally {
        Tally {
            passing: p,
            failing: f,
            stale: s,
            not_collected: n,
            not_applicable: na,
        }
    }

    #[test]
    fn the_worst_state_wins() {
        // (tally, state): failing > not collected > stale > passing.
        let cases = [
            (tally(5, 1, 1, 1, 0), CoverageState::Failing),
            (tally(5, 0, 1, 1, 0), CoverageState::NotCollected),
            (tally(5, 0, 1, 0, 0), CoverageState::Stale),
            (tally(5, 0, 0, 0, 9), CoverageState::Passing),
            (tally(0, 0, 0, 0, 3), CoverageState::NotApplicable),
            (tally(0, 0, 0, 0, 0), CoverageState::NotApplicable),
        ];
        for (t, expected) in cases {
            assert_eq!(t.state(), expected, "{t:?}");
        }
    }

    #[test]
    fn coverage_is_fresh_over_applicable_and_pass_rate_passing_over_fresh() {
        let t = tally(6, 2, 1, 1, 5);
        assert_eq!(t.applicable(), 10, "not applicable is excluded");
        assert_eq!(t.evidence_coverage(), Some(0.8));
        assert_eq!(t.pass_rate(), Some(0.75));
        assert_eq!(tally(0, 0, 2, 0, 0).pass_rate(), None);
        assert_eq!(tally(0, 0, 0, 0, 2).evidence_coverage(), None);
        // Staleness overrides pass and fail, not "not collected".
        assert_eq!(counts_as(EvidenceResult::Fail, true), tally(0, 0, 1, 0, 0));
        assert_eq!(
            counts_as(EvidenceResult::NotCollected, true),
            tally(0, 0, 0, 1, 0)
        );
        assert_eq!(counts_as(EvidenceResult::Pass, false), tally(1, 0, 0, 0, 0));
    }

    #[test]
    fn every_check_supports_a_control_and_overrides_apply_in_order() {
        for c in CheckId::ALL {
            assert!(!c.default_controls().is_empty(), "{c}");
            assert!(c.as_str().starts_with(c.source().as_str()), "{c}");
        }
        let defaults = ControlId::Cc66.default_checks();
        assert!(defaults.contains(&CheckId::StorageAnonymousBlobAccess));
        let overrides = [
            MappingOverride {
                control: ControlId::Cc66,
                check: CheckId::StorageAnonymousBlobAccess,
                included: false,
            },
            MappingOverride {
                control: ControlId::Cc66,
                check: CheckId::DefenderPlanStorage,
                included: true,
            },
        ];
        let mapped = effective_checks(ControlId::Cc66, &overrides);
        assert!(!mapped.contains(&CheckId::StorageAnonymousBlobAccess));
        assert!(mapped.contains(&CheckId::DefenderPlanStorage));
        assert_eq!(
            effective_checks(ControlId::Cc71, &overrides),
            ControlId::Cc71.default_checks()
        );
        assert_eq!("CC6.1".parse::<ControlId>(), Ok(ControlId::Cc61));
    }

    /// `docs/controls.md` is the documented mapping: its table must say
    /// what this file does.
    #[test]
    fn the_documented_mapping_is_the_code_s() {
        let doc = include_str!("../../../docs/controls.md");
        for check in CheckId::ALL {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{check}` |")))
                .unwrap_or_else(|| panic!("docs/controls.md has no row for {check}"));
            for control in ControlId::ALL {
                let marked =
                    row.contains(&format!(" {control} ")) || row.contains(&format!(" {control},"));
                assert_eq!(
                    marked,
                    check.default_controls().contains(control),
                    "docs/controls.md maps {check} to {control} differently: {row}"
                );
            }
        }
    }
}
