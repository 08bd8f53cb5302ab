//! The wire types of spend: analyses, the summary, reconciliation, tag
//! aliases and a connection's spend settings.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use cloudkeep_domain::spend::{SpendGranularity, SpendMetric};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One point of a series: the bucket's first day and its cost.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpendPoint {
    pub start: NaiveDate,
    pub cost: f64,
}

/// One group's cost over the period.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpendSeriesView {
    /// One value per `group_by`, in order; null where the cost has none
    /// (an untagged resource, a charge with no resource).
    pub key: Vec<Option<String>>,
    /// The sum of every group beyond the top N.
    pub other: bool,
    pub total: f64,
    pub points: Vec<SpendPoint>,
}

/// An analysis of cost.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpendView {
    pub metric: SpendMetric,
    pub granularity: SpendGranularity,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// The groupings, as asked (`service`, `tag:env`, ...).
    pub group_by: Vec<String>,
    /// The billing currency; when subscriptions bill in several, every one
    /// (and totals add them as they are).
    pub currency: String,
    pub currencies: Vec<String>,
    pub total: f64,
    /// Every bucket's total.
    pub totals: Vec<SpendPoint>,
    /// The top groups, largest first, then "other".
    pub series: Vec<SpendSeriesView>,
}

/// A group's cost this month so far against the same days of last month.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpendMover {
    /// Null for cost with none (a charge with no resource group).
    pub key: Option<String>,
    pub current: f64,
    pub previous: f64,
    pub change: f64,
}

/// Month to date, last month, the same days of last month, and the top movers.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpendSummary {
    pub metric: SpendMetric,
    pub currency: String,
    /// Today (the store's clock, UTC).
    pub today: NaiveDate,
    pub month_to_date: f64,
    pub last_month: f64,
    /// The 1st of last month to the same day of the month as today.
    pub last_month_same_days: f64,
    pub movers_by_service: Vec<SpendMover>,
    pub movers_by_resource_group: Vec<SpendMover>,
}

/// Azure's total of one subscription and day against the stored rows.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpendDayView {
    pub subscription: String,
    pub day: NaiveDate,
    pub currency: String,
    /// Azure's ungrouped daily totals.
    pub billed_total: f64,
    pub effective_total: f64,
    /// What the rows grouped by resource and meter summed to.
    pub billed_rows: f64,
    pub effective_rows: f64,
    /// Kept as a reconciliation row (ChargeCategory Adjustment) of that day.
    pub billed_difference: f64,
    pub effective_difference: f64,
}

/// The organisation's tag key aliases: alias → key (lower case).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TagAliases {
    pub aliases: BTreeMap<String, String>,
}

/// What one alias stands for.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TagAliasKey {
    /// The tag key the alias stands for (matched in any case).
    pub key: String,
}

/// A connection's spend settings.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SpendSettingsView {
    /// Days re-pulled at every sync (1 to 31; 5 by default).
    pub trailing_days: u32,
}
