//! Spend anomalies: the daily usage series the detector reads (a
//! subscription × service's usage cost per day), the first days of cost per
//! subscription on each service and in each region (new usage), the
//! incidents found and the resources and meters that explain them, and the
//! top movers period over period.
//!
//! The detection itself is the domain's (`cloudkeep_domain::anomaly`); the
//! sync engine's `anomalies::review` runs it and stores what it found here.
//! Usage is FOCUS `EffectiveCost` on `ChargeCategory = 'Usage'` rows: a
//! reservation's usage counts where it is used, and purchases and
//! adjustments (one-off by nature) are no anomaly.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
pub use cloudkeep_domain::anomaly::ContributorKind;
use cloudkeep_domain::anomaly::{
    Direction, IncidentKind, MoverDimension, MoverPeriod, contribution,
};
use cloudkeep_domain::spend::{
    SpendGranularity, SpendGroup, SpendMetric, day_number, from_day_number,
};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::page::{Cursor, Page, PageRequest};
use crate::spend::USAGE;
use crate::sql::{Arg, Sql, bulk_insert};
use crate::{Backend, OrgScope, Result, SpendQuery, Store, StoreError, parse, time};

/// One subscription × service's daily usage cost, dense from `start` (a
/// day with no cost is 0).
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSeries {
    /// Lower-cased Azure subscription id (FOCUS `SubAccountId`).
    pub subscription: String,
    pub subscription_name: String,
    pub service: String,
    pub currency: String,
    pub start: NaiveDate,
    pub values: Vec<f64>,
}

/// The first day a subscription had usage cost on a service or in a region.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstUsage {
    /// `NewService` or `NewRegion`.
    pub kind: IncidentKind,
    pub subscription: String,
    pub subscription_name: String,
    /// The service or the region.
    pub subject: String,
    pub first_day: NaiveDate,
    /// The subscription's own first day of usage cost.
    pub subscription_first_day: NaiveDate,
    pub currency: String,
}

/// A resource or meter with its part of an incident's change.
#[derive(Debug, Clone, PartialEq)]
pub struct Contributor {
    pub kind: ContributorKind,
    /// The ARM id (lower case; empty for charges with no resource) or the meter's name.
    pub item: String,
    /// The resource's name, when known.
    pub name: Option<String>,
    /// Its cost on the incident's days, expected and actual.
    pub expected: f64,
    pub actual: f64,
    /// Its change as a share of the incident's change.
    pub share: f64,
}

impl Contributor {
    pub fn delta(&self) -> f64 {
        self.actual - self.expected
    }
}

/// An incident as the detector found it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewIncident {
    pub kind: IncidentKind,
    pub subscription: String,
    pub subscription_name: String,
    /// The service (anomaly, new service) or the region (new region).
    pub subject: String,
    pub direction: Direction,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    /// Sums over the incident's days.
    pub expected: f64,
    pub actual: f64,
    /// The largest |z| with its sign; `None` for new usage.
    pub max_z: Option<f64>,
    /// A later day was back in range (an anomaly), or the usage is no longer new.
    pub ended: bool,
    pub currency: String,
    /// Resources first, then meters; each ranked by share of the change.
    pub contributors: Vec<Contributor>,
}

/// A stored incident.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub id: Uuid,
    pub kind: IncidentKind,
    pub subscription: String,
    pub subscription_name: String,
    pub subject: String,
    pub direction: Direction,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    pub expected: f64,
    pub actual: f64,
    pub max_z: Option<f64>,
    pub ended: bool,
    pub currency: String,
    pub contributors: Vec<Contributor>,
    pub detected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Incident {
    pub fn delta(&self) -> f64 {
        self.actual - self.expected
    }

    /// The service, unless this is a new region.
    pub fn service(&self) -> Option<&str> {
        (self.kind != IncidentKind::NewRegion).then_some(self.subject.as_str())
    }

    /// The region of a new region.
    pub fn region(&self) -> Option<&str> {
        (self.kind == IncidentKind::NewRegion).then_some(self.subject.as_str())
    }

    /// The resources that explain it, largest share first.
    pub fn resources(&self) -> impl Iterator<Item = &Contributor> {
        self.contributors
            .iter()
            .filter(|c| c.kind == ContributorKind::Resource)
    }
}

/// Which incidents to list.
#[derive(Debug, Clone, Default)]
pub struct IncidentFilter {
    /// An Azure subscription id (any case).
    pub subscription: Option<String>,
    pub kind: Option<IncidentKind>,
    /// Incidents with a day in this period (both included).
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    /// Ended incidents only (`true`) or open ones only (`false`).
    pub ended: Option<bool>,
    /// Incidents of this service (an anomaly or a new service; exact name).
    pub service: Option<String>,
}

/// One group's cost this period and the one before.
#[derive(Debug, Clone, PartialEq)]
pub struct Mover {
    /// The group's value (`None`: cost with none, e.g. no resource group).
    pub key: Option<String>,
    pub current: f64,
    pub previous: f64,
}

impl Mover {
    pub fn change(&self) -> f64 {
        self.current - self.previous
    }

    /// The change as a share of the previous period; `None` from nothing.
    pub fn change_ratio(&self) -> Option<f64> {
        (self.previous.abs() > 1e-9).then(|| self.change() / self.previous)
    }
}

/// The movers of a period.
#[derive(Debug, Clone, PartialEq)]
pub struct Movers {
    pub current: (NaiveDate, NaiveDate),
    pub previous: (NaiveDate, NaiveDate),
    pub currencies: Vec<String>,
    /// Largest absolute change first.
    pub movers: Vec<Mover>,
}

/// An incident's stable id: the same incident found again has the same id.
pub fn incident_id(
    kind: IncidentKind,
    subscription: &str,
    subject: &str,
    first: NaiveDate,
) -> Uuid {
    let mut h = Sha256::new();
    for p in [
        kind.as_str(),
        &subscription.to_ascii_lowercase(),
        &subject.to_ascii_lowercase(),
        &first.to_string(),
    ] {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

fn f(row: &AnyRow, i: usize) -> Result<f64> {
    Ok(row.try_get::<Option<f64>, _>(i)?.unwrap_or(0.0))
}

const INCIDENT_COLUMNS: &str = "incident_id, kind, subscription, subscription_name, subject, direction, first_day, last_day, \
     expected, actual, max_z, ended, currency, detected_at, updated_at";

fn incident(row: &AnyRow) -> Result<Incident> {
    Ok(Incident {
        id: parse(row, "incident_id")?,
        kind: parse(row, "kind")?,
        subscription: row.try_get("subscription")?,
        subscription_name: row.try_get("subscription_name")?,
        subject: row.try_get("subject")?,
        direction: parse(row, "direction")?,
        first_day: from_day_number(row.try_get("first_day")?),
        last_day: from_day_number(row.try_get("last_day")?),
        expected: row.try_get("expected")?,
        actual: row.try_get("actual")?,
        max_z: row.try_get("max_z")?,
        ended: row.try_get::<i64, _>("ended")? != 0,
        currency: row.try_get("currency")?,
        contributors: Vec::new(),
        detected_at: time(row.try_get("detected_at")?),
        updated_at: time(row.try_get("updated_at")?),
    })
}

/// (subscription, service or region) → (its first day of usage cost,
/// the subscription's name).
pub(crate) type FirstDays = HashMap<(String, String), (i64, String)>;

/// Days a contributor's expected cost looks back (4 weeks).
const LOOKBACK: i64 = 28;
/// Contributors kept per kind.
const CONTRIBUTORS: usize = 5;

/// A usage row of a contributor's read: its day and cost, its resource's
/// id and name, its meter.
struct ContributorRow {
    day: i64,
    cost: f64,
    resource: Option<String>,
    name: Option<String>,
    meter: String,
}

impl Store {
    /// Daily usage cost per subscription × service from `from` to `to`,
    /// each series dense from the later of `from` and its first day of cost
    /// ever (so days before a service was used are no history).
    pub async fn spend_usage_series(
        &self,
        scope: &OrgScope,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<UsageSeries>> {
        // The projection when it stands for the current revision: the
        // review after a sync reads every series and every first day,
        // which through SQL is the whole history's rows twice.
        let rev = self.spend_revision_to_answer(scope).await?;
        if let Some(all) = self.spend_columns_usage_all(scope, rev, from, to).await? {
            return Ok(all);
        }
        self.usage_series(scope, from, to, None).await
    }

    /// One subscription × service's series as `spend_usage_series` answers
    /// it (an incident's page), reading that series' rows only.
    pub async fn spend_usage_series_of(
        &self,
        scope: &OrgScope,
        from: NaiveDate,
        to: NaiveDate,
        subscription: &str,
        service: &str,
    ) -> Result<Option<UsageSeries>> {
        let sub = subscription.to_ascii_lowercase();
        // The projection answers when it stands for the current revision
        // (a scan of integers instead of three joins over the history).
        let rev = self.spend_revision_to_answer(scope).await?;
        if let Some(series) = self
            .spend_columns_usage_series(scope, rev, (&sub, service), from, to)
            .await?
        {
            return Ok(series);
        }
        Ok(self
            .usage_series(scope, from, to, Some((&sub, service)))
            .await?
            .into_iter()
            .next())
    }

    async fn usage_series(
        &self,
        scope: &OrgScope,
        from: NaiveDate,
        to: NaiveDate,
        only: Option<(&str, &str)>,
    ) -> Result<Vec<UsageSeries>> {
        // One series needs only to know whether it had cost before the
        // window (then it starts with it) or else its first day in it: not
        // a scan of the whole history, as every series' first day is.
        let (mut firsts, before) = match only {
            None => (self.first_usage_days(scope, "m.ServiceName").await?, false),
            Some((sub, service)) => (
                HashMap::new(),
                self.usage_before(scope, sub, service, day_number(from))
                    .await?,
            ),
        };
        let one = if only.is_some() {
            " AND r.SubAccountId = $5 AND m.ServiceName = $6"
        } else {
            ""
        };
        let sql = format!(
            "SELECT r.SubAccountId, m.ServiceName, c.day, SUM(c.EffectiveCost), MIN(r.SubAccountName), MIN(r.BillingCurrency) \
             FROM spend_costs c \
             JOIN spend_resources r ON r.org_id = c.org_id AND r.resource_key = c.resource_key \
             JOIN spend_meters m ON m.org_id = c.org_id AND m.meter_key = c.meter_key \
             WHERE c.org_id = $1 AND c.day >= $2 AND c.day <= $3 AND m.ChargeCategory = $4 AND m.ServiceName IS NOT NULL{one} \
             GROUP BY r.SubAccountId, m.ServiceName, c.day"
        );
        let rows = sqlx::query(&sql)
            .bind(scope.id())
            .bind(day_number(from))
            .bind(day_number(to))
            .bind(USAGE);
        let rows = match only {
            Some((sub, service)) => rows.bind(sub.to_string()).bind(service.to_string()),
            None => rows,
        }
        .fetch_all(&self.pool)
        .await?;
        let (lo, hi) = (day_number(from), day_number(to));
        if let Some((sub, service)) = only {
            let first = if before {
                Some(lo)
            } else {
                let mut first = None;
                for r in &rows {
                    if f(r, 3)? > 0.0 {
                        let day: i64 = r.try_get(2)?;
                        first = Some(first.map_or(day, |d: i64| d.min(day)));
                    }
                }
                first
            };
            if let Some(d) = first {
                firsts.insert((sub.to_string(), service.to_string()), (d, String::new()));
            }
        }
        let mut out: BTreeMap<(String, String), UsageSeries> = BTreeMap::new();
        for r in &rows {
            let (sub, service): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            let day: i64 = r.try_get(2)?;
            let key = (sub.clone(), service.clone());
            let start = firsts
                .get(&key)
                .map(|(d, _)| *d)
                .unwrap_or(lo)
                .clamp(lo, hi);
            let s = out.entry(key).or_insert_with(|| UsageSeries {
                subscription: sub,
                subscription_name: String::new(),
                service,
                currency: String::new(),
                start: from_day_number(start),
                values: vec![0.0; (hi - start + 1) as usize],
            });
            if s.subscription_name.is_empty() {
                s.subscription_name = r.try_get(4)?;
                s.currency = r.try_get(5)?;
            }
            if day >= start {
                s.values[(day - start) as usize] += f(r, 3)?;
            }
        }
        // A subscription's days after its last day of cost are not pulled
        // yet (Azure lags), not a drop to nothing.
        let mut last: HashMap<String, i64> = HashMap::new();
        for r in &rows {
            let e = last.entry(r.try_get(0)?).or_insert(i64::MIN);
            *e = (*e).max(r.try_get(2)?);
        }
        if let Some((sub, _)) = only {
            // Its subscription's last day over every service, as above.
            let latest: Option<i64> = sqlx::query(
                "SELECT MAX(c.day) FROM spend_costs c \
                 JOIN spend_resources r ON r.org_id = c.org_id AND r.resource_key = c.resource_key \
                 JOIN spend_meters m ON m.org_id = c.org_id AND m.meter_key = c.meter_key \
                 WHERE c.org_id = $1 AND c.day >= $2 AND c.day <= $3 AND m.ChargeCategory = $4 \
                 AND m.ServiceName IS NOT NULL AND r.SubAccountId = $5",
            )
            .bind(scope.id())
            .bind(day_number(from))
            .bind(day_number(to))
            .bind(USAGE)
            .bind(sub.to_string())
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
            if let Some(l) = latest {
                last.insert(sub.to_string(), l);
            }
        }
        Ok(out
            .into_values()
            .map(|mut s| {
                if let Some(l) = last.get(&s.subscription) {
                    let keep = (l - day_number(s.start) + 1).max(0) as usize;
                    s.values.truncate(keep);
                }
                s
            })
            .collect())
    }

    /// Whether a subscription × service had usage cost before `day`.
    async fn usage_before(
        &self,
        scope: &OrgScope,
        sub: &str,
        service: &str,
        day: i64,
    ) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT 1 FROM spend_costs c \
             JOIN spend_resources r ON r.org_id = c.org_id AND r.resource_key = c.resource_key \
             JOIN spend_meters m ON m.org_id = c.org_id AND m.meter_key = c.meter_key \
             WHERE c.org_id = $1 AND c.day < $2 AND m.ChargeCategory = $3 AND c.EffectiveCost > 0 \
             AND r.SubAccountId = $4 AND m.ServiceName = $5 LIMIT 1",
        )
        .bind(scope.id())
        .bind(day)
        .bind(USAGE)
        .bind(sub.to_string())
        .bind(service.to_string())
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// (subscription, subject) → (first day of usage cost, subscription name).
    async fn first_usage_days(&self, scope: &OrgScope, subject: &str) -> Result<FirstDays> {
        let sql = format!(
            "SELECT r.SubAccountId, {subject}, MIN(c.day), MIN(r.SubAccountName) FROM spend_costs c \
             JOIN spend_resources r ON r.org_id = c.org_id AND r.resource_key = c.resource_key \
             JOIN spend_meters m ON m.org_id = c.org_id AND m.meter_key = c.meter_key \
             WHERE c.org_id = $1 AND m.ChargeCategory = $2 AND {subject} IS NOT NULL AND c.EffectiveCost > 0 \
             GROUP BY r.SubAccountId, {subject}"
        );
        let rows = sqlx::query(&sql)
            .bind(scope.id())
            .bind(USAGE)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    (r.try_get(0)?, r.try_get(1)?),
                    (r.try_get(2)?, r.try_get(3)?),
                ))
            })
            .collect()
    }

    /// The first day of usage cost of every subscription on each service
    /// and in each region, with the subscription's own first day.
    pub async fn spend_first_usage(&self, scope: &OrgScope) -> Result<Vec<FirstUsage>> {
        let rev = self.spend_revision_to_answer(scope).await?;
        let (services, regions) = match self.spend_columns_first_usage(scope, rev).await? {
            Some(both) => both,
            None => (
                self.first_usage_days(scope, "m.ServiceName").await?,
                self.first_usage_days(scope, "r.RegionId").await?,
            ),
        };
        let currency: HashMap<String, String> = sqlx::query(
            "SELECT SubAccountId, MIN(BillingCurrency) FROM spend_resources WHERE org_id = $1 GROUP BY SubAccountId",
        )
        .bind(scope.id())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_>>()?;
        let mut sub_first: HashMap<&str, i64> = HashMap::new();
        for ((sub, _), (d, _)) in &services {
            let e = sub_first.entry(sub.as_str()).or_insert(*d);
            *e = (*e).min(*d);
        }
        let mut out = Vec::new();
        for (kind, map) in [
            (IncidentKind::NewService, &services),
            (IncidentKind::NewRegion, &regions),
        ] {
            for ((sub, subject), (d, name)) in map {
                out.push(FirstUsage {
                    kind,
                    subscription: sub.clone(),
                    subscription_name: name.clone(),
                    subject: subject.clone(),
                    first_day: from_day_number(*d),
                    subscription_first_day: from_day_number(
                        sub_first.get(sub.as_str()).copied().unwrap_or(*d),
                    ),
                    currency: currency.get(sub).cloned().unwrap_or_else(|| "USD".into()),
                });
            }
        }
        out.sort_by(|a, b| {
            (a.first_day, &a.subscription, &a.subject).cmp(&(
                b.first_day,
                &b.subscription,
                &b.subject,
            ))
        });
        Ok(out)
    }

    /// The resources and meters of a subscription's service (or region)
    /// that explain a change from `first` to `last`: each one's cost on
    /// those days less the median of its same weekday over the 4 weeks
    /// before, ranked by share of `total_delta` (largest in its direction
    /// first), the top few of each kind.
    pub async fn spend_contributors(
        &self,
        scope: &OrgScope,
        kind: IncidentKind,
        subscription: &str,
        subject: &str,
        (first, last): (NaiveDate, NaiveDate),
        total_delta: f64,
    ) -> Result<Vec<Contributor>> {
        let mut all = self
            .spend_contributors_of(
                scope,
                kind,
                subscription,
                subject,
                &[(first, last, total_delta)],
            )
            .await?;
        Ok(all.pop().unwrap_or_default())
    }

    /// The same for several changes of one series (first day, last day,
    /// total change) in one read of its rows: a review of every day asks
    /// for hundreds, and one query per change would read the period's
    /// rows of every subscription each time.
    pub async fn spend_contributors_of(
        &self,
        scope: &OrgScope,
        kind: IncidentKind,
        subscription: &str,
        subject: &str,
        spans: &[(NaiveDate, NaiveDate, f64)],
    ) -> Result<Vec<Vec<Contributor>>> {
        let (Some(first), Some(last)) = (
            spans.iter().map(|s| s.0).min(),
            spans.iter().map(|s| s.1).max(),
        ) else {
            return Ok(Vec::new());
        };
        let start = first - chrono::Duration::days(LOOKBACK);
        let by_region = kind == IncidentKind::NewRegion;
        let sub = subscription.to_ascii_lowercase();
        let (from, to) = (day_number(start), day_number(last));
        // The projection when it stands for the current revision: through
        // SQL each row is another lookup (on the whole of `large`, 0.2 s a
        // series for five weeks, 4 s for a year), and a review of every day
        // asks for hundreds.
        let rev = self.spend_revision_to_answer(scope).await?;
        let rows = match self
            .spend_columns_contributor_rows(scope, rev, (&sub, by_region, subject), from, to)
            .await?
        {
            Some(rows) => self.name_contributor_rows(scope, &sub, rows).await?,
            None => {
                self.contributor_rows(scope, (&sub, by_region, subject), from, to)
                    .await?
            }
        };
        let len = (last - start).num_days() as usize + 1;
        // (kind, item) → (name, dense series from `start`).
        let mut series: BTreeMap<(u8, String), (Option<String>, Vec<f64>)> = BTreeMap::new();
        for ContributorRow {
            day,
            cost,
            resource,
            name,
            meter,
        } in rows
        {
            let i = (day - from) as usize;
            for (k, item, name) in [
                (
                    ContributorKind::Resource,
                    resource.unwrap_or_default(),
                    name,
                ),
                (ContributorKind::Meter, meter, None),
            ] {
                let e = series
                    .entry((k as u8, item))
                    .or_insert_with(|| (name, vec![0.0; len]));
                e.1[i] += cost;
            }
        }
        let mut answers = Vec::with_capacity(spans.len());
        for &(first, last, total_delta) in spans {
            let sign = if total_delta < 0.0 { -1.0 } else { 1.0 };
            let mut ranked: BTreeMap<u8, Vec<Contributor>> = BTreeMap::new();
            for ((k, item), (name, values)) in &series {
                let k = if *k == ContributorKind::Resource as u8 {
                    ContributorKind::Resource
                } else {
                    ContributorKind::Meter
                };
                let (expected, actual) = if kind == IncidentKind::Anomaly {
                    contribution(start, values, first, last)
                } else {
                    // New usage: everything on those days is new.
                    (0.0, contribution(start, values, first, last).1)
                };
                if sign * (actual - expected) <= 0.0 {
                    continue;
                }
                ranked.entry(k as u8).or_default().push(Contributor {
                    kind: k,
                    item: item.clone(),
                    name: name.clone(),
                    expected,
                    actual,
                    share: if total_delta.abs() > 1e-9 {
                        (actual - expected) / total_delta
                    } else {
                        0.0
                    },
                });
            }
            let mut out = Vec::new();
            for (_, mut list) in ranked {
                list.sort_by(|a, b| {
                    (sign * b.delta())
                        .total_cmp(&(sign * a.delta()))
                        .then_with(|| a.item.cmp(&b.item))
                });
                list.truncate(CONTRIBUTORS);
                out.extend(list);
            }
            answers.push(out);
        }
        Ok(answers)
    }

    /// A subscription's usage rows of a service (or a region) from `from`
    /// to `to` through SQL, with their names.
    async fn contributor_rows(
        &self,
        scope: &OrgScope,
        (sub, by_region, subject): (&str, bool, &str),
        from: i64,
        to: i64,
    ) -> Result<Vec<ContributorRow>> {
        let on = if by_region {
            "r.RegionId"
        } else {
            "m.ServiceName"
        };
        // From the subscription's resources to their rows of those days
        // (SQLite's CROSS JOIN keeps that order), not every subscription's
        // rows of those days: on the whole of `large`, 0.2 s for five weeks
        // against 4.5 s. Without statistics (a new database) SQLite would
        // read the covering key by days instead, for every resource.
        let by_resource = match self.backend {
            Backend::Sqlite => "INDEXED BY spend_costs_resource",
            Backend::Postgres => "",
        };
        let rows = sqlx::query(&format!(
            "SELECT c.day, c.EffectiveCost, r.ResourceId, r.ResourceName, m.SkuMeter \
             FROM spend_resources r \
             CROSS JOIN spend_costs c {by_resource} \
             JOIN spend_meters m ON m.org_id = c.org_id AND m.meter_key = c.meter_key \
             WHERE r.org_id = $1 AND r.SubAccountId = $5 AND {on} = $6 \
             AND c.org_id = r.org_id AND c.resource_key = r.resource_key AND c.day >= $2 AND c.day <= $3 \
             AND m.ChargeCategory = $4"
        ))
        .bind(scope.id())
        .bind(from)
        .bind(to)
        .bind(USAGE)
        .bind(sub)
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ContributorRow {
                    day: r.try_get(0)?,
                    cost: f(r, 1)?,
                    resource: r.try_get(2)?,
                    name: r.try_get(3)?,
                    meter: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// The projection's rows of a subscription (resource key, meter key,
    /// day, cost) with their names, read from the dimensions' tables.
    async fn name_contributor_rows(
        &self,
        scope: &OrgScope,
        sub: &str,
        rows: Vec<(i64, i64, i64, f64)>,
    ) -> Result<Vec<ContributorRow>> {
        let mut resources: HashMap<i64, (Option<String>, Option<String>)> = HashMap::new();
        for r in sqlx::query(
            "SELECT resource_key, ResourceId, ResourceName FROM spend_resources WHERE org_id = $1 AND SubAccountId = $2",
        )
        .bind(scope.id())
        .bind(sub)
        .fetch_all(&self.pool)
        .await?
        {
            resources.insert(r.try_get(0)?, (r.try_get(1)?, r.try_get(2)?));
        }
        let mut meters: HashMap<i64, String> = HashMap::new();
        for r in sqlx::query("SELECT meter_key, SkuMeter FROM spend_meters WHERE org_id = $1")
            .bind(scope.id())
            .fetch_all(&self.pool)
            .await?
        {
            meters.insert(r.try_get(0)?, r.try_get(1)?);
        }
        Ok(rows
            .into_iter()
            // A key the tables lack was written after the projection's
            // revision: SQL's inner joins would not have read its row.
            .filter_map(|(resource, meter, day, cost)| {
                let (resource, name) = resources.get(&resource)?.clone();
                Some(ContributorRow {
                    day,
                    cost,
                    resource,
                    name,
                    meter: meters.get(&meter)?.clone(),
                })
            })
            .collect())
    }

    /// Stores an incident: a new one is added, one found again (same kind,
    /// subscription, subject and first day) updated in place. Answers it,
    /// and whether it is new.
    pub async fn record_incident(
        &self,
        scope: &OrgScope,
        new: &NewIncident,
    ) -> Result<(Incident, bool)> {
        let id = incident_id(new.kind, &new.subscription, &new.subject, new.first_day);
        let now = self.now_ms();
        let mut tx = self.begin_write().await?;
        let existed =
            sqlx::query("SELECT 1 FROM spend_incidents WHERE org_id = $1 AND incident_id = $2")
                .bind(scope.id())
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await?
                .is_some();
        sqlx::query(
            "INSERT INTO spend_incidents (org_id, incident_id, kind, subscription, subscription_name, subject, direction, \
             first_day, last_day, expected, actual, max_z, ended, currency, detected_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) \
             ON CONFLICT (org_id, incident_id) DO UPDATE SET subscription_name = $5, direction = $7, last_day = $9, \
             expected = $10, actual = $11, max_z = $12, ended = $13, currency = $14, updated_at = $15",
        )
        .bind(scope.id())
        .bind(id.to_string())
        .bind(new.kind.as_str())
        .bind(new.subscription.to_ascii_lowercase())
        .bind(&new.subscription_name)
        .bind(&new.subject)
        .bind(new.direction.as_str())
        .bind(day_number(new.first_day))
        .bind(day_number(new.last_day))
        .bind(new.expected)
        .bind(new.actual)
        .bind(new.max_z)
        .bind(i64::from(new.ended))
        .bind(&new.currency)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM spend_incident_contributors WHERE org_id = $1 AND incident_id = $2",
        )
        .bind(scope.id())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
        let mut rank: HashMap<ContributorKind, i64> = HashMap::new();
        let rows: Vec<Vec<Arg>> = new
            .contributors
            .iter()
            .map(|c| {
                let n = rank.entry(c.kind).or_insert(0);
                *n += 1;
                vec![
                    scope.id().into(),
                    id.to_string().into(),
                    c.kind.as_str().into(),
                    (*n).into(),
                    c.item.clone().into(),
                    c.name.clone().into(),
                    Arg::Real(c.expected),
                    Arg::Real(c.actual),
                    Arg::Real(c.share),
                ]
            })
            .collect();
        bulk_insert(
            &mut tx,
            self.backend,
            "spend_incident_contributors",
            &[
                "org_id",
                "incident_id",
                "kind",
                "rank",
                "item",
                "name",
                "expected",
                "actual",
                "share",
            ],
            rows,
        )
        .await?;
        tx.commit().await?;
        Ok((self.incident(scope, id).await?, !existed))
    }

    /// One incident with its contributors.
    pub async fn incident(&self, scope: &OrgScope, id: Uuid) -> Result<Incident> {
        let row = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM spend_incidents WHERE org_id = $1 AND incident_id = $2"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "incident" })?;
        let mut items = vec![incident(&row)?];
        self.attach_contributors(scope, &mut items).await?;
        Ok(items.remove(0))
    }

    /// The incidents not ended yet, of a kind.
    pub async fn open_incidents(
        &self,
        scope: &OrgScope,
        kind: IncidentKind,
    ) -> Result<Vec<Incident>> {
        let rows = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM spend_incidents WHERE org_id = $1 AND kind = $2 AND ended = 0 \
             ORDER BY first_day, incident_id"
        ))
        .bind(scope.id())
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows.iter().map(incident).collect::<Result<Vec<_>>>()?;
        self.attach_contributors(scope, &mut items).await?;
        Ok(items)
    }

    async fn attach_contributors(&self, scope: &OrgScope, items: &mut [Incident]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut sql = Sql::new(
            "SELECT incident_id, kind, item, name, expected, actual, share FROM spend_incident_contributors WHERE org_id = ",
        );
        let org = sql.arg(scope.id());
        sql.push(&org);
        let ids: Vec<String> = items.iter().map(|i| sql.arg(i.id.to_string())).collect();
        sql.push(&format!(
            " AND incident_id IN ({}) ORDER BY incident_id, kind DESC, rank",
            ids.join(", ")
        ));
        let mut by: HashMap<String, Vec<Contributor>> = HashMap::new();
        for r in sql.fetch_all(&self.pool).await? {
            let kind: ContributorKind = parse(&r, "kind")?;
            by.entry(r.try_get(0)?).or_default().push(Contributor {
                kind,
                item: r.try_get(2)?,
                name: r.try_get(3)?,
                expected: f(&r, 4)?,
                actual: f(&r, 5)?,
                share: f(&r, 6)?,
            });
        }
        for i in items {
            i.contributors = by.remove(&i.id.to_string()).unwrap_or_default();
        }
        Ok(())
    }

    /// Incidents, latest first day first, filtered and paged in SQL.
    pub async fn incidents(
        &self,
        scope: &OrgScope,
        filter: &IncidentFilter,
        page: &PageRequest,
    ) -> Result<Page<Incident>> {
        let (before, after_id) = page.time_and_id(i64::MAX)?;
        let rows = sqlx::query(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM spend_incidents WHERE org_id = $1 AND ($2 = '' OR subscription = $2) \
             AND ($3 = '' OR kind = $3) AND last_day >= $4 AND first_day <= $5 \
             AND (first_day < $6 OR (first_day = $6 AND incident_id > $7)) \
             AND ($9 < 0 OR ended = $9) AND ($10 = '' OR (kind <> 'new_region' AND subject = $10)) \
             ORDER BY first_day DESC, incident_id LIMIT $8"
        ))
        .bind(scope.id())
        .bind(
            filter
                .subscription
                .as_deref()
                .unwrap_or("")
                .to_ascii_lowercase(),
        )
        .bind(filter.kind.map(|k| k.as_str()).unwrap_or(""))
        .bind(filter.from.map(day_number).unwrap_or(i64::MIN))
        .bind(filter.to.map(day_number).unwrap_or(i64::MAX))
        .bind(before)
        .bind(after_id)
        .bind(page.fetch())
        .bind(filter.ended.map(i64::from).unwrap_or(-1))
        .bind(filter.service.as_deref().unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows.iter().map(incident).collect::<Result<Vec<_>>>()?;
        let page = Page::from_rows(std::mem::take(&mut items), page, |i| {
            Cursor::of(&[&day_number(i.first_day).to_string(), &i.id.to_string()])
        });
        let mut items = page.items;
        self.attach_contributors(scope, &mut items).await?;
        Ok(Page {
            items,
            next: page.next,
        })
    }

    /// How many of the organisation's incidents are open (not ended).
    pub async fn open_incident_count(&self, scope: &OrgScope) -> Result<u64> {
        let n: i64 =
            sqlx::query("SELECT COUNT(*) FROM spend_incidents WHERE org_id = $1 AND ended = 0")
                .bind(scope.id())
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?;
        Ok(n as u64)
    }

    /// Top movers: cost by `by` over the `period` ending on `to` against
    /// the as many days before, largest absolute change first, `top` of them.
    pub async fn spend_movers(
        &self,
        scope: &OrgScope,
        period: MoverPeriod,
        by: MoverDimension,
        to: NaiveDate,
        top: usize,
    ) -> Result<Movers> {
        let n = period.days();
        let current = (to - chrono::Duration::days(n - 1), to);
        let previous = (
            current.0 - chrono::Duration::days(n),
            current.0 - chrono::Duration::days(1),
        );
        let totals = |(from, to): (NaiveDate, NaiveDate)| async move {
            let q = SpendQuery {
                metric: SpendMetric::Effective,
                granularity: SpendGranularity::Month,
                from,
                to,
                groups: vec![SpendGroup::Dimension(by.dimension())],
                filters: Vec::new(),
                top: usize::MAX,
            };
            self.spend_analysis(scope, &q).await
        };
        let now = totals(current).await?;
        let before = totals(previous).await?;
        let mut all: BTreeMap<Option<String>, Mover> = BTreeMap::new();
        for (answer, is_now) in [(&now, true), (&before, false)] {
            for s in &answer.series {
                let key = s.key.first().cloned().flatten();
                let m = all.entry(key.clone()).or_insert(Mover {
                    key,
                    current: 0.0,
                    previous: 0.0,
                });
                if is_now {
                    m.current += s.total;
                } else {
                    m.previous += s.total;
                }
            }
        }
        let mut movers: Vec<Mover> = all.into_values().collect();
        movers.sort_by(|a, b| {
            b.change()
                .abs()
                .total_cmp(&a.change().abs())
                .then_with(|| a.key.cmp(&b.key))
        });
        movers.truncate(top.max(1));
        let mut currencies = now.currencies.clone();
        currencies.extend(before.currencies.iter().cloned());
        currencies.sort();
        currencies.dedup();
        Ok(Movers {
            current,
            previous,
            currencies,
            movers,
        })
    }
}
