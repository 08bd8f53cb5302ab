//! Budgets apart from any store or HTTP: what a budget is (a scope as spend
//! filters, a monthly amount, thresholds on actual spend and on the
//! month-end forecast), the checks that name what is allowed, the
//! forecast (month to date plus, for each remaining day, the median of the
//! same weekday over the last four weeks), and which thresholds a figure
//! has crossed.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, NaiveDate};

use crate::spend::{SpendDimension, SpendFilter, SpendInputError, SpendMetric, month_end};

/// The most a budget may be (in its currency): beyond it, a typo.
pub const MAX_AMOUNT: f64 = 1e12;
/// A threshold above this percentage (10×) is refused: it never fires in
/// practice, so it is most likely a mistake.
pub const MAX_THRESHOLD_PCT: f64 = 1000.0;
/// Thresholds per kind.
pub const MAX_THRESHOLDS: usize = 10;
/// Filters in a budget's scope.
pub const MAX_FILTERS: usize = 10;

/// What a budget watches and when it speaks up.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetDefinition {
    pub name: String,
    /// Per calendar month (UTC), in the billing currency.
    pub amount: f64,
    pub metric: SpendMetric,
    /// The scope: no filter is the whole organisation; otherwise spend
    /// filters (`subscription=<id>`, `resource_group=<name>`,
    /// `tag:<key>=<value>`, ...), as an analysis takes them.
    pub filters: Vec<SpendFilter>,
    /// Percentages of the amount that month-to-date spend may cross.
    pub actual_thresholds: Vec<f64>,
    /// Percentages of the amount that the month-end forecast may cross.
    pub forecast_thresholds: Vec<f64>,
}

/// What is wrong with a budget; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BudgetError {
    #[error("a budget's name is 1 to 200 characters")]
    Name,
    #[error("the amount must be a number above 0 and at most {MAX_AMOUNT} (got {0})")]
    Amount(f64),
    #[error(
        "a threshold is a percentage of the amount above 0 and at most {MAX_THRESHOLD_PCT} (10×) (got {0})"
    )]
    Threshold(f64),
    #[error("at most {MAX_THRESHOLDS} thresholds of each kind (got {0})")]
    TooManyThresholds(usize),
    #[error("a budget needs at least one threshold, on actual spend or on the forecast")]
    NoThreshold,
    #[error("at most {MAX_FILTERS} filters (got {0})")]
    TooManyFilters(usize),
    #[error(
        "a budget is scoped by subscription, resource_group or a tag; '{0}' filters by something else"
    )]
    Scope(String),
    #[error(transparent)]
    Filter(#[from] SpendInputError),
}

impl BudgetDefinition {
    /// Checks the definition, sorting and de-duplicating its thresholds.
    pub fn checked(mut self) -> Result<Self, BudgetError> {
        self.name = self.name.trim().to_string();
        if self.name.is_empty() || self.name.chars().count() > 200 {
            return Err(BudgetError::Name);
        }
        if !(self.amount.is_finite() && self.amount > 0.0 && self.amount <= MAX_AMOUNT) {
            return Err(BudgetError::Amount(self.amount));
        }
        for list in [&mut self.actual_thresholds, &mut self.forecast_thresholds] {
            if list.len() > MAX_THRESHOLDS {
                return Err(BudgetError::TooManyThresholds(list.len()));
            }
            if let Some(bad) = list
                .iter()
                .find(|t| !(t.is_finite() && **t > 0.0 && **t <= MAX_THRESHOLD_PCT))
            {
                return Err(BudgetError::Threshold(*bad));
            }
            list.sort_by(f64::total_cmp);
            list.dedup();
        }
        if self.actual_thresholds.is_empty() && self.forecast_thresholds.is_empty() {
            return Err(BudgetError::NoThreshold);
        }
        if self.filters.len() > MAX_FILTERS {
            return Err(BudgetError::TooManyFilters(self.filters.len()));
        }
        for f in &self.filters {
            let allowed = match f {
                SpendFilter::Is(d, _) => {
                    matches!(
                        d,
                        SpendDimension::Subscription | SpendDimension::ResourceGroup
                    )
                }
                SpendFilter::HasTag(..) | SpendFilter::LacksTag(_) => true,
            };
            if !allowed {
                return Err(BudgetError::Scope(filter_text(f)));
            }
        }
        Ok(self)
    }
}

/// A filter as it is written (`subscription=...`, `tag:env=prod`, `!tag:owner`).
pub fn filter_text(f: &SpendFilter) -> String {
    match f {
        SpendFilter::Is(d, v) => format!("{d}={v}"),
        SpendFilter::HasTag(k, Some(v)) => format!("tag:{k}={v}"),
        SpendFilter::HasTag(k, None) => format!("tag:{k}"),
        SpendFilter::LacksTag(k) => format!("!tag:{k}"),
    }
}

/// The median of a few values (0 for none).
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// A month-end forecast, and how it was reached.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// The last day with cost counted as actual.
    pub as_of: NaiveDate,
    pub month_end: NaiveDate,
    pub month_to_date: f64,
    /// Month to date plus the expected cost of every remaining day.
    pub month_end_total: f64,
    /// The expected cost of each remaining day (as_of + 1 ..= month_end).
    pub remaining: Vec<(NaiveDate, f64)>,
}

/// The month-end forecast: `month_to_date` (cost from the month's first
/// day through `as_of`, everything included) plus, for each remaining
/// day, the median of the same weekday over the four weeks ending at
/// `as_of`, read from `usage` (daily usage cost, one-time purchases left
/// out; a day absent is a day without cost).
/// `month` is any day of the month forecast; `as_of` may fall before
/// its first day (no cost of the month yet), when every day is forecast.
pub fn forecast(
    month: NaiveDate,
    as_of: NaiveDate,
    month_to_date: f64,
    usage: &BTreeMap<NaiveDate, f64>,
) -> Forecast {
    let end = month_end(month);
    let window_start = as_of - Duration::days(27);
    let mut by_weekday: [Vec<f64>; 7] = Default::default();
    let mut d = window_start;
    while d <= as_of {
        by_weekday[d.weekday().num_days_from_monday() as usize]
            .push(usage.get(&d).copied().unwrap_or(0.0));
        d += Duration::days(1);
    }
    let medians: Vec<f64> = by_weekday.iter_mut().map(|v| median(v)).collect();
    let mut remaining = Vec::new();
    let mut d = as_of + Duration::days(1);
    while d <= end {
        remaining.push((d, medians[d.weekday().num_days_from_monday() as usize]));
        d += Duration::days(1);
    }
    let rest: f64 = remaining.iter().map(|(_, c)| c).sum();
    Forecast {
        as_of,
        month_end: end,
        month_to_date,
        month_end_total: month_to_date + rest,
        remaining,
    }
}

/// The thresholds (percentages) a figure has reached against an amount.
pub fn crossed(amount: f64, figure: f64, thresholds: &[f64]) -> Vec<f64> {
    if amount <= 0.0 {
        return Vec::new();
    }
    let pct = figure / amount * 100.0;
    // A cent of float noise must not decide a crossing.
    thresholds
        .iter()
        .copied()
        .filter(|t| pct + 1e-9 >= *t)
        .collect()
}

/// A threshold as an alert scope names it (`80`, `112.5`).
pub fn threshold_label(t: f64) -> String {
    if t.fract() == 0.0 {
        format!("{t:.0}")
    } else {
        format!("{t}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    fn def() -> BudgetDefinition {
        BudgetDefinition {
            name: " Platform ".into(),
            amount: 1000.0,
            metric: SpendMetric::Billed,
            filters: vec!["subscription=abc".parse().expect("filter")],
            actual_thresholds: vec![100.0, 80.0, 80.0],
            forecast_thresholds: vec![100.0],
        }
    }

    #[test]
    fn a_definition_is_checked_and_its_thresholds_sorted() {
        let ok = def().checked().expect("valid");
        assert_eq!(ok.name, "Platform");
        assert_eq!(ok.actual_thresholds, vec![80.0, 100.0]);
        let bad = |f: fn(&mut BudgetDefinition)| {
            let mut b = def();
            f(&mut b);
            b.checked().expect_err("invalid").to_string()
        };
        assert!(bad(|b| b.amount = -5.0).contains("above 0"));
        assert!(bad(|b| b.amount = f64::NAN).contains("above 0"));
        assert!(bad(|b| b.actual_thresholds = vec![1500.0]).contains("10×"));
        assert!(bad(|b| b.actual_thresholds = vec![0.0]).contains("above 0"));
        assert!(
            bad(|b| {
                b.actual_thresholds.clear();
                b.forecast_thresholds.clear()
            })
            .contains("at least one threshold")
        );
        assert!(bad(|b| b.name = "  ".into()).contains("1 to 200"));
        assert!(
            bad(|b| b.filters = vec!["region=westeurope".parse().expect("f")])
                .contains("'region=westeurope'")
        );
    }

    #[test]
    fn the_forecast_adds_the_weekday_medians_of_the_last_four_weeks() {
        // Weekdays cost 10, weekends 2, over the four weeks to Tue 2026-12-15;
        // one Monday was 100 (a one-off the median ignores).
        let as_of = d("2026-12-15");
        let mut usage = BTreeMap::new();
        let mut day = as_of - Duration::days(27);
        while day <= as_of {
            let weekend = day.weekday().num_days_from_monday() >= 5;
            usage.insert(day, if weekend { 2.0 } else { 10.0 });
            day += Duration::days(1);
        }
        usage.insert(d("2026-12-07"), 100.0);
        let f = forecast(as_of, as_of, 150.0, &usage);
        assert_eq!(f.month_end, d("2026-12-31"));
        assert_eq!(f.remaining.len(), 16);
        // Dec 16..31: 12 weekdays and 4 weekend days.
        assert!((f.month_end_total - (150.0 + 12.0 * 10.0 + 4.0 * 2.0)).abs() < 1e-9);
        // The last day of a month has nothing left to forecast.
        let f = forecast(as_of, d("2026-12-31"), 42.0, &usage);
        assert!(f.remaining.is_empty());
        assert_eq!(f.month_end_total, 42.0);
        // Nothing of January yet: all 31 days are forecast.
        let f = forecast(d("2027-01-01"), d("2026-12-31"), 0.0, &usage);
        assert_eq!(f.remaining.len(), 31);
        assert_eq!(f.month_end, d("2027-01-31"));
    }

    #[test]
    fn crossings_and_labels() {
        assert_eq!(crossed(1000.0, 850.0, &[80.0, 100.0]), vec![80.0]);
        assert_eq!(crossed(1000.0, 1000.0, &[80.0, 100.0]), vec![80.0, 100.0]);
        assert!(crossed(1000.0, 10.0, &[80.0]).is_empty());
        assert_eq!(threshold_label(80.0), "80");
        assert_eq!(threshold_label(112.5), "112.5");
        assert_eq!(median(&mut [3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
