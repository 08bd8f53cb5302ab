//! The wire types of spend anomalies: incidents with their contributors,
//! and top movers.

use chrono::{DateTime, NaiveDate, Utc};
use cloudkeep_domain::anomaly::{
    ContributorKind, Direction, IncidentKind, MoverDimension, MoverPeriod,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A resource or meter with its part of an incident's change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContributorView {
    pub kind: ContributorKind,
    /// The resource's ARM id (lower case; empty for charges with no
    /// resource) or the meter's name.
    pub item: String,
    pub name: Option<String>,
    /// Its cost on the incident's days: expected (the median of the same
    /// weekday over the 4 weeks before) and actual.
    pub expected: f64,
    pub actual: f64,
    pub delta: f64,
    /// Its change as a share of the incident's change.
    pub share: f64,
}

/// An incident: consecutive anomalous days of a subscription's service, or
/// its first cost on a service or in a region.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct IncidentView {
    pub id: Uuid,
    pub kind: IncidentKind,
    /// The Azure subscription id (lower case) and its name.
    pub subscription: String,
    pub subscription_name: String,
    /// The service (an anomaly, a new service).
    pub service: Option<String>,
    /// The region (a new region).
    pub region: Option<String>,
    pub direction: Direction,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    /// Usage cost (EffectiveCost) over its days: expected, actual, and the difference.
    pub expected: f64,
    pub actual: f64,
    pub delta: f64,
    /// The largest z of its days (an anomaly).
    pub max_z: Option<f64>,
    /// A later day was back in range (or the usage is no longer new).
    pub ended: bool,
    pub currency: String,
    /// Resources, then meters, each largest share first.
    pub contributors: Vec<ContributorView>,
    pub detected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&cloudkeep_store::Incident> for IncidentView {
    fn from(i: &cloudkeep_store::Incident) -> Self {
        IncidentView {
            id: i.id,
            kind: i.kind,
            subscription: i.subscription.clone(),
            subscription_name: i.subscription_name.clone(),
            service: i.service().map(str::to_string),
            region: i.region().map(str::to_string),
            direction: i.direction,
            first_day: i.first_day,
            last_day: i.last_day,
            expected: i.expected,
            actual: i.actual,
            delta: i.delta(),
            max_z: i.max_z,
            ended: i.ended,
            currency: i.currency.clone(),
            contributors: i
                .contributors
                .iter()
                .map(|c| ContributorView {
                    kind: c.kind,
                    item: c.item.clone(),
                    name: c.name.clone(),
                    expected: c.expected,
                    actual: c.actual,
                    delta: c.delta(),
                    share: c.share,
                })
                .collect(),
            detected_at: i.detected_at,
            updated_at: i.updated_at,
        }
    }
}

/// A group's usage cost this period against the period before.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MoverView {
    /// Null for cost with none (a charge with no resource group or resource).
    pub key: Option<String>,
    pub current: f64,
    pub previous: f64,
    pub change: f64,
    /// The change as a share of the previous period; null from nothing.
    pub change_ratio: Option<f64>,
}

/// Top movers period over period (EffectiveCost, every charge).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MoversView {
    pub period: MoverPeriod,
    pub by: MoverDimension,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub previous_from: NaiveDate,
    pub previous_to: NaiveDate,
    pub currency: String,
    /// Largest absolute change first.
    pub movers: Vec<MoverView>,
}
