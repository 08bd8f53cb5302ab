//! Assessments: a fixed audit period of evidence for chosen controls, which
//! approval makes immutable; the Type II sample drawn from a control's
//! population reproducibly from a stored seed; and the retention window of
//! an organisation's evidence and sync history.

use chrono::{DateTime, Utc};

use crate::evidence::ControlId;
use crate::names::names;

names! {
    /// Where an assessment stands. Approved is final: the store refuses
    /// any change to it and its attached evidence.
    pub enum AssessmentState("assessment state") {
        Draft = "draft",
        Approved = "approved",
    }
}

names! {
    /// Where an auditor's invitation to one assessment stands.
    pub enum InvitationState("invitation state") {
        Active = "active",
        Expired = "expired",
        Revoked = "revoked",
    }
}

names! {
    /// What an assessment export contains and how it is written.
    pub enum ExportFormat("export format") {
        Csv = "csv",
        Json = "json",
        /// OSCAL 1.1 assessment results, with their plan and catalog.
        Oscal = "oscal",
        /// The audit package: everything above plus the period's audit events.
        Zip = "zip",
    }
}

/// Days an invitation lasts unless the owner says otherwise.
pub const DEFAULT_INVITATION_DAYS: i64 = 30;
/// The longest invitation an owner can give.
pub const MAX_INVITATION_DAYS: i64 = 365;
/// Days evidence and sync history are kept after they stop being current.
pub const DEFAULT_RETENTION_DAYS: i64 = 400;
/// The shortest retention window: a year's audit period and its fieldwork.
pub const MIN_RETENTION_DAYS: i64 = 30;

/// Why an assessment's definition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssessmentError {
    #[error("the assessment needs a name")]
    NoName,
    #[error("the period ends ({end}) before it starts ({start})")]
    PeriodBackwards {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    },
    #[error("the assessment needs at least one control in scope")]
    NoControls,
}

/// What an assessment is about: its name, its audit period (the
/// observation window, `[start, end]`) and the controls in scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssessmentDefinition {
    pub name: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub controls: Vec<ControlId>,
}

impl AssessmentDefinition {
    /// Checks the definition; controls are deduplicated in catalogue order.
    pub fn new(
        name: &str,
        period_start: DateTime<Utc>,
        period_end: DateTime<Utc>,
        controls: &[ControlId],
    ) -> Result<Self, AssessmentError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(AssessmentError::NoName);
        }
        if period_end <= period_start {
            return Err(AssessmentError::PeriodBackwards {
                start: period_start,
                end: period_end,
            });
        }
        let controls: Vec<ControlId> = ControlId::ALL
            .iter()
            .copied()
            .filter(|c| controls.contains(c))
            .collect();
        if controls.is_empty() {
            return Err(AssessmentError::NoControls);
        }
        Ok(AssessmentDefinition {
            name: name.to_string(),
            period_start,
            period_end,
            controls,
        })
    }
}

/// SplitMix64: a tiny generator whose every output is fixed by its seed
/// and written out here, so an auditor can redo a draw with any tool.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0), by rejection so that none is favoured.
    fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next();
            if x < zone {
                return x % n;
            }
        }
    }
}

/// Draws `size` items of a population reproducibly: the population is
/// sorted (so its order as read does not matter), then a Fisher–Yates
/// shuffle driven by SplitMix64 from `seed` picks the first `size`. The
/// answer is in draw order; the whole population when `size` exceeds it.
pub fn draw_sample<T: Ord + Clone>(population: &[T], size: usize, seed: u64) -> Vec<T> {
    let mut items: Vec<T> = population.to_vec();
    items.sort();
    items.dedup();
    let take = size.min(items.len());
    let mut rng = SplitMix64(seed);
    for i in 0..take {
        let j = i + rng.below((items.len() - i) as u64) as usize;
        items.swap(i, j);
    }
    items.truncate(take);
    items
}

/// The evidence of an invitation's state at `now`.
pub fn invitation_state(
    expires_at: DateTime<Utc>,
    revoked: bool,
    now: DateTime<Utc>,
) -> InvitationState {
    if revoked {
        InvitationState::Revoked
    } else if now >= expires_at {
        InvitationState::Expired
    } else {
        InvitationState::Active
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_draw_is_fixed_by_its_seed_not_by_the_population_order() {
        let population: Vec<u32> = (0..100).collect();
        let a = draw_sample(&population, 10, 42);
        let mut reversed = population.clone();
        reversed.reverse();
        assert_eq!(a, draw_sample(&reversed, 10, 42));
        assert_ne!(a, draw_sample(&population, 10, 43));
        let mut unique = a.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10, "no item is drawn twice");
        assert_eq!(draw_sample(&population, 500, 1).len(), 100);
        assert!(draw_sample::<u32>(&[], 5, 1).is_empty());
        // The generator's first outputs for seed 0, as published with SplitMix64.
        let mut rng = SplitMix64(0);
        assert_eq!(rng.next(), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn definitions_are_checked() {
        let start = Utc::now();
        let end = start + Duration::days(90);
        assert_eq!(
            AssessmentDefinition::new("x", end, start, &[ControlId::Cc61]),
            Err(AssessmentError::PeriodBackwards {
                start: end,
                end: start
            })
        );
        assert_eq!(
            AssessmentDefinition::new(" ", start, end, &[ControlId::Cc61]),
            Err(AssessmentError::NoName)
        );
        assert_eq!(
            AssessmentDefinition::new("x", start, end, &[]),
            Err(AssessmentError::NoControls)
        );
        let d = AssessmentDefinition::new(
            "SOC 2",
            start,
            end,
            &[ControlId::Cc71, ControlId::Cc61, ControlId::Cc71],
        )
        .unwrap();
        assert_eq!(d.controls, vec![ControlId::Cc61, ControlId::Cc71]);
    }

    #[test]
    fn invitations_expire_and_revoke() {
        let now = Utc::now();
        assert_eq!(
            invitation_state(now + Duration::days(1), false, now),
            InvitationState::Active
        );
        assert_eq!(invitation_state(now, false, now), InvitationState::Expired);
        assert_eq!(
            invitation_state(now + Duration::days(1), true, now),
            InvitationState::Revoked
        );
    }
}
