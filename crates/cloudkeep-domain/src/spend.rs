//! Spend, apart from any store or HTTP: what an analysis may ask for
//! (metric, granularity, dimensions, tag groupings and filters, with the
//! errors that name what is allowed), and FOCUS's closed vocabularies that
//! cloudkeep fills from Azure's names (service categories, region names).

use chrono::{Datelike, Duration, NaiveDate};

use crate::names::names;

names! {
    /// Which cost: FOCUS `BilledCost` (Azure's actual cost) or
    /// `EffectiveCost` (amortised: reservations spread over their term).
    pub enum SpendMetric("metric") {
        Billed = "billed",
        Effective = "effective",
    }
}

names! {
    /// The time bucket of a series.
    pub enum SpendGranularity("granularity") {
        Day = "day",
        /// Weeks start on Monday.
        Week = "week",
        Month = "month",
    }
}

names! {
    /// What cost can be grouped and filtered by (besides `tag:<key>`).
    pub enum SpendDimension("dimension") {
        /// The Azure subscription (FOCUS `SubAccountId`).
        Subscription = "subscription",
        ResourceGroup = "resource_group",
        /// FOCUS `ServiceName`.
        Service = "service",
        /// FOCUS `ServiceCategory`.
        ServiceCategory = "service_category",
        /// FOCUS `RegionId`.
        Region = "region",
        ResourceType = "resource_type",
        /// FOCUS `ResourceId`.
        Resource = "resource",
        /// FOCUS `ChargeCategory`: Usage, Purchase, Tax, Credit, Adjustment.
        ChargeCategory = "charge_category",
    }
}

/// A grouping: a dimension, or a tag key (matched through the
/// organisation's aliases).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpendGroup {
    Dimension(SpendDimension),
    /// The tag key, lower case.
    Tag(String),
}

/// What is wrong with an analysis; the message names what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpendInputError {
    #[error(
        "'{0}' is not a dimension; group and filter by one of: {dims}, or tag:<key>",
        dims = SpendDimension::expected()
    )]
    UnknownDimension(String),
    #[error("group by at most two dimensions (got {0})")]
    TooManyGroups(usize),
    #[error("the period starts ({from}) after it ends ({to})")]
    InvertedPeriod { from: NaiveDate, to: NaiveDate },
    #[error("the period is {days} days; at most {MAX_PERIOD_DAYS} days may be asked at once")]
    PeriodTooLong { days: i64 },
    #[error("{0} is outside the years cost can have: 2000 to 2100")]
    OutOfRange(NaiveDate),
    #[error(
        "'{0}' is not a filter; use <dimension>=<value>, tag:<key>=<value>, tag:<key> (has the tag) or !tag:<key> (lacks it)"
    )]
    MalformedFilter(String),
    #[error("'{0}' is not a tag key: tag:<key> needs a key of 1 to 512 characters")]
    MalformedTag(String),
}

/// The longest period one analysis reads (the backfill's 13 months and a bit).
pub const MAX_PERIOD_DAYS: i64 = 400;

impl std::str::FromStr for SpendGroup {
    type Err = SpendInputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(key) = s.strip_prefix("tag:") {
            return tag_key(key).map(SpendGroup::Tag);
        }
        s.parse::<SpendDimension>()
            .map(SpendGroup::Dimension)
            .map_err(|_| SpendInputError::UnknownDimension(s.to_string()))
    }
}

impl std::fmt::Display for SpendGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpendGroup::Dimension(d) => f.write_str(d.as_str()),
            SpendGroup::Tag(k) => write!(f, "tag:{k}"),
        }
    }
}

fn tag_key(key: &str) -> Result<String, SpendInputError> {
    let k = key.trim();
    if k.is_empty() || k.chars().count() > 512 {
        return Err(SpendInputError::MalformedTag(key.to_string()));
    }
    Ok(k.to_lowercase())
}

/// Which costs an analysis counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendFilter {
    /// The dimension has this value (values compare without case).
    Is(SpendDimension, String),
    /// The resource carries the tag key, with this value if given.
    HasTag(String, Option<String>),
    /// The resource lacks the tag key (or the cost has no resource).
    LacksTag(String),
}

impl std::str::FromStr for SpendFilter {
    type Err = SpendInputError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let raw = s.trim();
        let malformed = || SpendInputError::MalformedFilter(raw.to_string());
        if let Some(key) = raw.strip_prefix("!tag:") {
            if key.contains('=') {
                return Err(malformed());
            }
            return tag_key(key).map(SpendFilter::LacksTag);
        }
        if let Some(rest) = raw.strip_prefix("tag:") {
            return Ok(match rest.split_once('=') {
                Some((k, v)) => SpendFilter::HasTag(tag_key(k)?, Some(v.to_string())),
                None => SpendFilter::HasTag(tag_key(rest)?, None),
            });
        }
        let (dim, value) = raw.split_once('=').ok_or_else(malformed)?;
        let dim = dim
            .trim()
            .parse::<SpendDimension>()
            .map_err(|_| SpendInputError::UnknownDimension(dim.trim().to_string()))?;
        if value.is_empty() {
            return Err(malformed());
        }
        Ok(SpendFilter::Is(dim, value.to_string()))
    }
}

/// Checks a period (both days included).
pub fn check_period(from: NaiveDate, to: NaiveDate) -> Result<(), SpendInputError> {
    for d in [from, to] {
        if !(2000..=2100).contains(&d.year()) {
            return Err(SpendInputError::OutOfRange(d));
        }
    }
    if from > to {
        return Err(SpendInputError::InvertedPeriod { from, to });
    }
    let days = (to - from).num_days() + 1;
    if days > MAX_PERIOD_DAYS {
        return Err(SpendInputError::PeriodTooLong { days });
    }
    Ok(())
}

/// Checks groupings: at most two.
pub fn check_groups(groups: &[SpendGroup]) -> Result<(), SpendInputError> {
    if groups.len() > 2 {
        return Err(SpendInputError::TooManyGroups(groups.len()));
    }
    Ok(())
}

/// The first day of a day's bucket.
pub fn bucket_start(day: NaiveDate, granularity: SpendGranularity) -> NaiveDate {
    match granularity {
        SpendGranularity::Day => day,
        SpendGranularity::Week => {
            day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
        }
        SpendGranularity::Month => month_start(day),
    }
}

pub fn month_start(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

/// The first day of the month `n` months before `day`'s.
pub fn months_before(day: NaiveDate, n: u32) -> NaiveDate {
    month_start(day)
        .checked_sub_months(chrono::Months::new(n))
        .unwrap_or(day)
}

/// The last day of `day`'s month.
pub fn month_end(day: NaiveDate) -> NaiveDate {
    month_start(day)
        .checked_add_months(chrono::Months::new(1))
        .map(|d| d - Duration::days(1))
        .unwrap_or(day)
}

/// Days since 1970-01-01: how cost rows store their day.
pub fn day_number(day: NaiveDate) -> i64 {
    (day - NaiveDate::default()).num_days()
}

pub fn from_day_number(n: i64) -> NaiveDate {
    NaiveDate::default() + Duration::days(n)
}

/// FOCUS's `ServiceCategory` for an Azure service name (FOCUS 1.2's
/// allowed values; "Other" for what is not listed here).
pub fn service_category(service_name: &str) -> &'static str {
    let s = service_name.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| s.contains(w));
    if has(&[
        "virtual machine",
        "kubernetes",
        "app service",
        "functions",
        "batch",
        "container",
    ]) {
        "Compute"
    } else if has(&["storage", "backup", "disk"]) {
        "Storage"
    } else if has(&["sql", "cosmos", "redis", "database", "mysql", "postgres"]) {
        "Databases"
    } else if has(&[
        "network",
        "bandwidth",
        "load balancer",
        "dns",
        "front door",
        "gateway",
        "ip address",
    ]) {
        "Networking"
    } else if has(&[
        "log analytics",
        "monitor",
        "insights",
        "automation",
        "advisor",
    ]) {
        "Management and Governance"
    } else if has(&["key vault", "defender", "sentinel", "security"]) {
        "Security"
    } else if has(&["machine learning", "cognitive", "openai", "ai "]) {
        "AI and Machine Learning"
    } else if has(&[
        "synapse",
        "data factory",
        "databricks",
        "event hubs",
        "stream analytics",
    ]) {
        "Analytics"
    } else {
        "Other"
    }
}

/// FOCUS's `RegionName` for an Azure region id (`westeurope` → "West
/// Europe"): the display names of the common regions, else the id.
pub fn region_name(region_id: &str) -> String {
    const NAMES: &[(&str, &str)] = &[
        ("westeurope", "West Europe"),
        ("northeurope", "North Europe"),
        ("eastus", "East US"),
        ("eastus2", "East US 2"),
        ("westus", "West US"),
        ("westus2", "West US 2"),
        ("westus3", "West US 3"),
        ("centralus", "Central US"),
        ("southcentralus", "South Central US"),
        ("northcentralus", "North Central US"),
        ("uksouth", "UK South"),
        ("ukwest", "UK West"),
        ("francecentral", "France Central"),
        ("germanywestcentral", "Germany West Central"),
        ("swedencentral", "Sweden Central"),
        ("switzerlandnorth", "Switzerland North"),
        ("norwayeast", "Norway East"),
        ("japaneast", "Japan East"),
        ("australiaeast", "Australia East"),
        ("southeastasia", "Southeast Asia"),
        ("eastasia", "East Asia"),
        ("canadacentral", "Canada Central"),
        ("brazilsouth", "Brazil South"),
        ("centralindia", "Central India"),
        ("global", "Global"),
    ];
    NAMES
        .iter()
        .find(|(id, _)| id.eq_ignore_ascii_case(region_id))
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| region_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn parses_groups_and_filters_and_names_what_is_allowed() {
        assert_eq!(
            "tag:Env".parse::<SpendGroup>(),
            Ok(SpendGroup::Tag("env".into()))
        );
        assert_eq!(
            "service".parse::<SpendGroup>(),
            Ok(SpendGroup::Dimension(SpendDimension::Service))
        );
        let e = "colour".parse::<SpendGroup>().expect_err("unknown");
        assert!(e.to_string().contains("resource_group"), "{e}");
        assert!("tag:".parse::<SpendGroup>().is_err());
        assert_eq!(
            "tag:env=prod".parse::<SpendFilter>(),
            Ok(SpendFilter::HasTag("env".into(), Some("prod".into())))
        );
        assert_eq!(
            "!tag:Owner".parse::<SpendFilter>(),
            Ok(SpendFilter::LacksTag("owner".into()))
        );
        assert_eq!(
            "region=westeurope".parse::<SpendFilter>(),
            Ok(SpendFilter::Is(SpendDimension::Region, "westeurope".into()))
        );
        for bad in ["region", "!tag:a=b", "nope=1", "service="] {
            assert!(bad.parse::<SpendFilter>().is_err(), "{bad}");
        }
        assert!(check_period(d("2026-02-01"), d("2026-01-01")).is_err());
        assert!(check_period(d("2024-01-01"), d("2026-01-01")).is_err());
        assert!(check_period(d("2026-01-01"), d("2026-01-01")).is_ok());
        assert!(check_period(d("9999-12-30"), d("9999-12-31")).is_err());
    }

    #[test]
    fn buckets_and_months() {
        assert_eq!(
            bucket_start(d("2026-12-03"), SpendGranularity::Week),
            d("2026-11-30")
        );
        assert_eq!(
            bucket_start(d("2026-12-03"), SpendGranularity::Month),
            d("2026-12-01")
        );
        assert_eq!(months_before(d("2026-12-03"), 12), d("2025-12-01"));
        assert_eq!(month_end(d("2026-02-10")), d("2026-02-28"));
        assert_eq!(
            from_day_number(day_number(d("2026-12-03"))),
            d("2026-12-03")
        );
        assert_eq!(service_category("Virtual Machines"), "Compute");
        assert_eq!(service_category("Azure Cosmos DB"), "Databases");
        assert_eq!(region_name("westeurope"), "West Europe");
    }
}
