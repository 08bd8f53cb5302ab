//! The wire types of budgets and forecasts.

use chrono::NaiveDate;
use cloudkeep_domain::spend::SpendMetric;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::SpendPoint;

fn default_metric() -> SpendMetric {
    SpendMetric::Billed
}

/// A budget as it is made or replaced.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetRequest {
    /// 1 to 200 characters.
    pub name: String,
    /// Per calendar month (UTC), in the billing currency; above 0.
    pub amount: f64,
    /// `billed` (the default) or `effective` (amortised).
    #[serde(default = "default_metric")]
    pub metric: SpendMetric,
    /// The scope: none is the whole organisation; otherwise
    /// `subscription=<id>`, `resource_group=<name>`, `tag:<key>=<value>`,
    /// `tag:<key>` or `!tag:<key>` (all must hold).
    #[serde(default)]
    pub filters: Vec<String>,
    /// Percentages of the amount that spend this month may cross (for
    /// example 80 and 100); each above 0 and at most 1000.
    #[serde(default)]
    pub actual_thresholds: Vec<f64>,
    /// Percentages of the amount that the month-end forecast may cross.
    #[serde(default)]
    pub forecast_thresholds: Vec<f64>,
}

/// A month's forecast: actual cost through `as_of`, then for each
/// remaining day the median of the same weekday over the four weeks to
/// `as_of` (usage only: one-time purchases are left out).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ForecastView {
    pub metric: SpendMetric,
    pub currency: String,
    /// The month's first day.
    pub month: NaiveDate,
    /// The last day with cost counted as actual.
    pub as_of: NaiveDate,
    pub month_to_date: f64,
    pub month_end: f64,
    /// Cost per day of the month so far.
    pub actual: Vec<SpendPoint>,
    /// The expected cost of each remaining day.
    pub forecast: Vec<SpendPoint>,
}

/// Where a budget stands this month.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BudgetStatusView {
    pub month: NaiveDate,
    pub currency: String,
    pub actual: f64,
    pub actual_pct: f64,
    pub forecast: f64,
    pub forecast_pct: f64,
    /// The thresholds (percentages) spend this month has reached.
    pub actual_crossed: Vec<f64>,
    /// The thresholds the forecast has reached.
    pub forecast_crossed: Vec<f64>,
    pub as_of: NaiveDate,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BudgetView {
    pub id: uuid::Uuid,
    pub name: String,
    pub amount: f64,
    pub metric: SpendMetric,
    pub filters: Vec<String>,
    pub actual_thresholds: Vec<f64>,
    pub forecast_thresholds: Vec<f64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub created_by: String,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub status: BudgetStatusView,
}

/// One budget with its month day by day.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BudgetDetail {
    #[serde(flatten)]
    pub budget: BudgetView,
    pub days: ForecastView,
}
