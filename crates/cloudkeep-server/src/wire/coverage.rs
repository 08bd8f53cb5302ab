//! The wire types of tag coverage: the required keys, coverage, untagged
//! spend with suggested values, and the fix that turns them into tag edits.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::TagEditView;

/// The organisation's required tag keys (lower case, in its order; at
/// most 50, each 1 to 512 characters). Keys match through the tag aliases.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequiredTags {
    pub keys: Vec<String>,
}

/// What carries a key (or every key): cost, resources, and their shares
/// (null when there is nothing to share: no cost or no resource).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CoveredView {
    pub cost: f64,
    /// `cost` ÷ all usage cost in scope, 0 to 1.
    pub cost_share: Option<f64>,
    pub resources: u64,
    /// `resources` ÷ resources with usage cost in scope, 0 to 1.
    pub resource_share: Option<f64>,
}

/// One required key's coverage.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyCoverageView {
    pub key: String,
    #[serde(flatten)]
    pub covered: CoveredView,
}

/// Coverage of a set of usage cost.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CoverageFiguresView {
    /// All usage cost (ChargeCategory `Usage`) in scope.
    pub cost: f64,
    /// Resources with usage cost in scope.
    pub resources: u64,
    /// Every key asked present.
    pub overall: CoveredView,
    pub keys: Vec<KeyCoverageView>,
}

/// One value of the breakdown (null: cost without one).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CoverageGroupView {
    pub key: Option<String>,
    #[serde(flatten)]
    pub figures: CoverageFiguresView,
}

/// One day's cost-weighted coverage.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CoverageDayView {
    pub day: NaiveDate,
    pub cost: f64,
    /// The share of the day's usage cost carrying every key asked.
    pub overall: Option<f64>,
    /// Per key, the share of the day's usage cost carrying it.
    pub keys: BTreeMap<String, Option<f64>>,
}

/// Tag coverage over a period.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RequiredTagCoverage {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Costs are BilledCost in this currency (several: every one, added as they are).
    pub currency: String,
    /// The organisation's required keys.
    pub required_keys: Vec<String>,
    /// The keys answered for (`key` filters, or every required key).
    pub keys: Vec<String>,
    /// The breakdown's dimension, if asked.
    pub by: Option<String>,
    pub total: CoverageFiguresView,
    /// The breakdown, largest cost first.
    pub groups: Vec<CoverageGroupView>,
    /// Day by day, cost-weighted.
    pub daily: Vec<CoverageDayView>,
}

/// Where a suggested value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionSourceView {
    /// The resource's group carries the key.
    ResourceGroup,
    /// Its subscription carries the key.
    Subscription,
    /// More than half of its siblings in the group that carry the key agree.
    Siblings,
}

impl From<cloudkeep_store::SuggestionSource> for SuggestionSourceView {
    fn from(s: cloudkeep_store::SuggestionSource) -> Self {
        match s {
            cloudkeep_store::SuggestionSource::ResourceGroup => SuggestionSourceView::ResourceGroup,
            cloudkeep_store::SuggestionSource::Subscription => SuggestionSourceView::Subscription,
            cloudkeep_store::SuggestionSource::Siblings => SuggestionSourceView::Siblings,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SuggestionView {
    pub value: String,
    pub source: SuggestionSourceView,
}

/// A required key the resource lacks.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MissingTagView {
    pub key: String,
    /// None found.
    pub suggestion: Option<SuggestionView>,
}

/// A resource with usage cost lacking required keys.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UntaggedResourceView {
    /// cloudkeep's resource (null when the inventory does not hold it live).
    pub resource_id: Option<Uuid>,
    /// The ARM id, lower case.
    pub arm_id: String,
    pub name: Option<String>,
    /// The Azure subscription id.
    pub subscription: String,
    pub subscription_name: String,
    pub resource_group: Option<String>,
    /// Usage cost over the period.
    pub cost: f64,
    pub missing: Vec<MissingTagView>,
}

impl From<&cloudkeep_store::UntaggedResource> for UntaggedResourceView {
    fn from(r: &cloudkeep_store::UntaggedResource) -> Self {
        UntaggedResourceView {
            resource_id: r.resource,
            arm_id: r.arm_id.clone(),
            name: r.name.clone(),
            subscription: r.subscription_id.clone(),
            subscription_name: r.subscription_name.clone(),
            resource_group: r.resource_group.clone(),
            cost: r.cost,
            missing: r
                .missing
                .iter()
                .map(|m| MissingTagView {
                    key: m.key.clone(),
                    suggestion: m.suggestion.as_ref().map(|s| SuggestionView {
                        value: s.value.clone(),
                        source: s.source.into(),
                    }),
                })
                .collect(),
        }
    }
}

/// Untagged spend, ranked by cost.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UntaggedView {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub currency: String,
    /// The required keys looked for.
    pub keys: Vec<String>,
    /// Every matching resource (beyond `top` too) and their usage cost.
    pub resources: u64,
    pub cost: f64,
    /// The top resources, largest cost first.
    pub items: Vec<UntaggedResourceView>,
}

/// Tag edits from a coverage query: the resources it ranks (or those
/// named), each given its missing keys' values.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CoverageFixRequest {
    /// One Azure subscription id.
    pub subscription: Option<String>,
    pub resource_group: Option<String>,
    /// A FOCUS ServiceName.
    pub service: Option<String>,
    /// The missing keys to fix (required keys or their aliases); default
    /// every required key.
    #[serde(default)]
    pub keys: Vec<String>,
    /// The first day (default: 29 days before `to`).
    pub from: Option<NaiveDate>,
    /// The last day (default: today, UTC).
    pub to: Option<NaiveDate>,
    /// The top resources by cost, 1 to 1000...
    pub top: Option<u32>,
    /// ...or these resources (cloudkeep's ids), if they lack a key.
    #[serde(default)]
    pub resource_ids: Vec<Uuid>,
    /// Give each missing key its suggested value.
    #[serde(default)]
    pub use_suggested: bool,
    /// Values by key (a required key or an alias), over suggestions.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

/// Where a fixed value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FixValueSource {
    /// The request's `values`.
    Given,
    ResourceGroup,
    Subscription,
    Siblings,
}

impl From<SuggestionSourceView> for FixValueSource {
    fn from(s: SuggestionSourceView) -> Self {
        match s {
            SuggestionSourceView::ResourceGroup => FixValueSource::ResourceGroup,
            SuggestionSourceView::Subscription => FixValueSource::Subscription,
            SuggestionSourceView::Siblings => FixValueSource::Siblings,
        }
    }
}

/// One resource's edit and where each value came from.
#[derive(Debug, Serialize, ToSchema)]
pub struct FixedResource {
    pub resource_id: Uuid,
    pub name: Option<String>,
    /// Usage cost over the period.
    pub cost: f64,
    /// Key → where its value came from.
    pub sources: BTreeMap<String, FixValueSource>,
    /// The tag edit made (pending: written back at the next sync; local
    /// at read_tags_only).
    pub edit: TagEditView,
}

/// A resource (or one key of it) the fix left alone, and why.
#[derive(Debug, Serialize, ToSchema)]
pub struct FixSkipped {
    /// cloudkeep's resource, when the inventory holds it.
    pub resource_id: Option<Uuid>,
    pub arm_id: String,
    /// The key left missing; null when the whole resource was skipped.
    pub key: Option<String>,
    pub reason: String,
}

/// What a fix did.
#[derive(Debug, Serialize, ToSchema)]
pub struct CoverageFixResult {
    pub created: Vec<FixedResource>,
    pub skipped: Vec<FixSkipped>,
}
