//! Spend: cost rows at day × resource × meter, named as FOCUS 1.2 names
//! them, and the analyses over them.
//!
//! This module is the spend engine's one interface: the collector writes a
//! subscription's period through `record_spend_pull`, and the API reads
//! through `spend_analysis`, `spend_reconciliation` and `spend_export_page`,
//! all with typed inputs and answers. SQLite (embedded) and PostgreSQL
//! serve it with the same SQL; a columnar server would implement these
//! same methods over its own tables (see ARCHITECTURE.md).
//!
//! The fact table (`spend_costs`) is narrow: the day as a number, integer
//! keys of its resource and meter (stable hashes, so a row is keyed
//! without a lookup) and the two costs; the dimensions live in small tables
//! joined by key, and a resource's tags are copied from the inventory at
//! each collection (so they follow the subscription's sync level).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use cloudkeep_domain::OrgId;
use cloudkeep_domain::spend::{
    SpendDimension, SpendFilter, SpendGranularity, SpendGroup, SpendMetric, bucket_start,
    day_number, from_day_number, region_name, service_category,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::Row;
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::connections::SubscriptionRecord;
use crate::sql::{Arg, Sql, bulk_insert_with};
use crate::{OrgScope, Result, Store, StoreError, within};

#[path = "spend_columns.rs"]
mod columns;

pub(crate) use columns::SpendColumns;
pub use columns::{DEFAULT_SPEND_COLUMN_ROWS, SpendColumnStats};

/// The trailing window re-pulled at every sync unless a connection says
/// otherwise: Azure restates the last few days.
pub const DEFAULT_TRAILING_DAYS: u32 = 5;
/// Months a first sync backfills (this month and the twelve before).
pub const BACKFILL_MONTHS: u32 = 13;

/// What FOCUS calls the charge of a cost row.
pub const USAGE: &str = "Usage";
pub const PURCHASE: &str = "Purchase";
pub const ADJUSTMENT: &str = "Adjustment";
/// The charge type (`x_ChargeType`) of a reconciliation row.
pub const RECONCILIATION: &str = "Reconciliation";

/// A meter with its service and charge, as a cost row refers to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeterInfo {
    /// Azure's meter name (FOCUS `SkuMeter`).
    pub meter: String,
    /// FOCUS `ServiceName`; `None` for a reconciliation row.
    pub service_name: Option<String>,
    /// FOCUS `ChargeCategory`: `Usage`, `Purchase`, `Adjustment`.
    pub charge_category: String,
    /// FOCUS `PricingCategory` (`Standard`, `Committed`), when known.
    pub pricing_category: Option<String>,
    /// FOCUS `CommitmentDiscountStatus` (`Used`, `Unused`), for commitment rows.
    pub commitment_status: Option<String>,
    /// Azure's `ChargeType` (`Usage`, `Purchase`, `UnusedReservation`, ...).
    pub charge_type: String,
}

impl MeterInfo {
    fn key(&self) -> i64 {
        stable_key(&[
            &self.meter,
            self.service_name.as_deref().unwrap_or("\u{0}"),
            &self.charge_category,
            self.pricing_category.as_deref().unwrap_or(""),
            self.commitment_status.as_deref().unwrap_or(""),
            &self.charge_type,
        ])
    }

    /// The row that makes a day's stored rows add up to Azure's total.
    pub fn reconciliation() -> MeterInfo {
        MeterInfo {
            meter: "Reconciliation with the subscription's daily total".into(),
            service_name: None,
            charge_category: ADJUSTMENT.into(),
            pricing_category: None,
            commitment_status: None,
            charge_type: RECONCILIATION.into(),
        }
    }
}

/// One cost line as Azure answered it: a day, a resource (lower-cased
/// ARM id; `None` for a charge with no resource) and a meter.
#[derive(Debug, Clone, PartialEq)]
pub struct CostLine {
    pub day: NaiveDate,
    pub resource_id: Option<String>,
    pub meter: MeterInfo,
    pub billed: f64,
    pub effective: f64,
}

/// Azure's ungrouped total of one day.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayTotal {
    pub day: NaiveDate,
    pub billed: f64,
    pub effective: f64,
}

/// One period of one subscription as Azure answered it: it replaces
/// whatever was stored for those days.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendPull {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// `USD`, `EUR`, ...
    pub currency: String,
    pub lines: Vec<CostLine>,
    pub totals: Vec<DayTotal>,
}

/// What storing a pull did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PullCounts {
    pub rows: u64,
    pub days: u64,
    /// Days that needed a reconciliation row.
    pub reconciled: u64,
    /// Whether the pull held what its period already held: nothing but
    /// the time it was pulled and the backfill's position was written.
    pub unchanged: bool,
}

/// Where a subscription's backfill stands. Months are pulled newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backfill {
    /// The oldest month to pull (its 1st).
    pub start_month: NaiveDate,
    /// The next month to pull (its 1st); `None` once the backfill is done.
    pub next_month: Option<NaiveDate>,
    pub months_done: u32,
    pub months_total: u32,
    /// The latest day pulled.
    pub pulled_through: Option<NaiveDate>,
}

/// Azure's total and the stored rows' sum for one subscription and day.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendDay {
    pub subscription: String,
    pub day: NaiveDate,
    pub currency: String,
    pub billed_total: f64,
    pub effective_total: f64,
    /// What the grouped rows summed to before reconciliation.
    pub billed_rows: f64,
    pub effective_rows: f64,
}

/// An analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendQuery {
    pub metric: SpendMetric,
    pub granularity: SpendGranularity,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub groups: Vec<SpendGroup>,
    pub filters: Vec<SpendFilter>,
    /// Groups answered by name; the rest are summed as "other".
    pub top: usize,
}

/// One group's series.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendSeries {
    /// One value per grouping (`None`: the cost has none, e.g. untagged).
    pub key: Vec<Option<String>>,
    /// Whether this is the sum of the groups beyond the top N.
    pub other: bool,
    pub total: f64,
    /// (bucket start, cost), for buckets with cost.
    pub points: Vec<(NaiveDate, f64)>,
}

/// An analysis' answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SpendAnswer {
    pub currencies: Vec<String>,
    pub total: f64,
    /// Every bucket's total, in order.
    pub buckets: Vec<(NaiveDate, f64)>,
    /// Largest first; "other" last.
    pub series: Vec<SpendSeries>,
}

/// One FOCUS row of an export.
#[derive(Debug, Clone, PartialEq)]
pub struct FocusRow {
    pub day: NaiveDate,
    pub resource_key: i64,
    pub meter_key: i64,
    pub billed: f64,
    pub effective: f64,
    pub currency: String,
    pub sub_account_id: String,
    pub sub_account_name: String,
    pub resource_id: Option<String>,
    pub resource_name: Option<String>,
    pub resource_type: Option<String>,
    pub region_id: Option<String>,
    pub resource_group: Option<String>,
    pub meter: MeterInfo,
    pub service_category: String,
    /// As Azure has them (keys in their case).
    pub tags: BTreeMap<String, String>,
}

/// Where an export page starts: after this (day, resource, meter).
pub type ExportCursor = (NaiveDate, i64, i64);

/// A group's key, its total and its cost per bucket.
type Ranked = (Vec<Option<String>>, f64, BTreeMap<i64, f64>);

/// A 63-bit key from text parts: stable across processes and backends.
fn stable_key(parts: &[&str]) -> i64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0x1f]);
    }
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(b) & (i64::MAX as u64)) as i64
}

/// The key of a resource of a subscription (`None`: its charges with no resource).
pub fn resource_key(subscription: &str, resource_id: Option<&str>) -> i64 {
    stable_key(&[
        &subscription.to_ascii_lowercase(),
        &resource_id.unwrap_or("").to_ascii_lowercase(),
    ])
}

/// The key the store gives a meter.
pub fn meter_key(m: &MeterInfo) -> i64 {
    m.key()
}

/// What an ARM id says of itself: name, type and resource group.
fn parse_arm_id(id: &str) -> (Option<String>, Option<String>, Option<String>) {
    let segs: Vec<&str> = id.trim_matches('/').split('/').collect();
    let at = |name: &str| {
        segs.iter()
            .position(|s| s.eq_ignore_ascii_case(name))
            .and_then(|i| segs.get(i + 1))
            .map(|s| s.to_string())
    };
    let rg = at("resourceGroups");
    let provider = segs
        .iter()
        .rposition(|s| s.eq_ignore_ascii_case("providers"));
    let (name, kind) = match provider {
        Some(p) if segs.len() > p + 2 => {
            let rest = &segs[p + 1..];
            let mut kind = rest[0].to_string();
            let mut i = 1;
            while i + 1 < rest.len() {
                kind.push('/');
                kind.push_str(rest[i]);
                i += 2;
            }
            (rest.last().map(|s| s.to_string()), Some(kind))
        }
        _ => (segs.last().map(|s| s.to_string()), None),
    };
    (name, kind, rg)
}

struct ResourceDim {
    key: i64,
    resource_id: Option<String>,
    name: Option<String>,
    resource_type: Option<String>,
    region: Option<String>,
    resource_group: Option<String>,
}

/// SHA-256 (hex) over what a pull writes: its period, currency and
/// subscription name, its resources, meters, cost rows and day totals, in
/// their maps' order. (A digest that differs only rewrites rows that were
/// the same.)
fn pull_digest<'a>(
    (from, to, currency, sub_name): (i64, i64, &str, &str),
    resources: &BTreeMap<i64, ResourceDim>,
    meters: impl Iterator<Item = &'a i64>,
    rows: &BTreeMap<(i64, i64, i64), (f64, f64)>,
    days: &[(i64, DayTotal, f64, f64)],
) -> String {
    let mut h = Sha256::new();
    let text = |h: &mut Sha256, t: Option<&str>| match t {
        Some(t) => {
            h.update((t.len() as u64).to_le_bytes());
            h.update(t.as_bytes());
        }
        None => h.update(u64::MAX.to_le_bytes()),
    };
    for n in [from, to] {
        h.update(n.to_le_bytes());
    }
    text(&mut h, Some(currency));
    text(&mut h, Some(sub_name));
    h.update((resources.len() as u64).to_le_bytes());
    for r in resources.values() {
        h.update(r.key.to_le_bytes());
        for t in [
            &r.resource_id,
            &r.name,
            &r.resource_type,
            &r.region,
            &r.resource_group,
        ] {
            text(&mut h, t.as_deref());
        }
    }
    let meters: Vec<&i64> = meters.collect();
    h.update((meters.len() as u64).to_le_bytes());
    for k in meters {
        h.update(k.to_le_bytes());
    }
    h.update((rows.len() as u64).to_le_bytes());
    for ((d, rk, mk), (b, e)) in rows {
        for n in [*d, *rk, *mk] {
            h.update(n.to_le_bytes());
        }
        h.update(b.to_bits().to_le_bytes());
        h.update(e.to_bits().to_le_bytes());
    }
    h.update((days.len() as u64).to_le_bytes());
    for (d, t, b, e) in days {
        h.update(d.to_le_bytes());
        for x in [t.billed, t.effective, *b, *e] {
            h.update(x.to_bits().to_le_bytes());
        }
    }
    hex::encode(h.finalize())
}

fn f(row: &sqlx::any::AnyRow, i: usize) -> Result<f64> {
    Ok(row.try_get::<Option<f64>, _>(i)?.unwrap_or(0.0))
}

/// A difference smaller than this (a millionth of the currency) is float
/// noise, not a charge.
const NOISE: f64 = 5e-7;

impl Store {
    /// A subscription's backfill position, if it has begun.
    pub async fn spend_backfill(
        &self,
        scope: &OrgScope,
        sub: &SubscriptionRecord,
    ) -> Result<Option<Backfill>> {
        let row = sqlx::query(
            "SELECT start_month, next_month, months_done, months_total, pulled_through FROM spend_backfill \
             WHERE org_id = $1 AND subscription_id = $2",
        )
        .bind(scope.id())
        .bind(sub.id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Backfill {
                start_month: from_day_number(r.try_get(0)?),
                next_month: r.try_get::<Option<i64>, _>(1)?.map(from_day_number),
                months_done: r.try_get::<i64, _>(2)? as u32,
                months_total: r.try_get::<i64, _>(3)? as u32,
                pulled_through: r.try_get::<Option<i64>, _>(4)?.map(from_day_number),
            })
        })
        .transpose()
    }

    /// Stores one period of a subscription: its rows replace the stored
    /// ones of those days (so a restated day is never counted twice), each
    /// day's difference from Azure's total is kept as a reconciliation row,
    /// and the backfill's new position is written in the same transaction
    /// (so an interrupted backfill resumes after the last month stored).
    pub async fn record_spend_pull(
        &self,
        scope: &OrgScope,
        sub: &SubscriptionRecord,
        pull: &SpendPull,
        position: &Backfill,
    ) -> Result<PullCounts> {
        self.write_pull(scope, sub, pull, Some(position)).await
    }

    /// Loads a pull's rows as they are, in one transaction: no replacement
    /// of stored days, no totals or reconciliation, no position. The
    /// baseline `cloudkeep bench spend` measures the ingest against.
    pub async fn spend_bulk_load(
        &self,
        scope: &OrgScope,
        sub: &SubscriptionRecord,
        pull: &SpendPull,
    ) -> Result<PullCounts> {
        self.write_pull(scope, sub, pull, None).await
    }

    async fn write_pull(
        &self,
        scope: &OrgScope,
        sub: &SubscriptionRecord,
        pull: &SpendPull,
        position: Option<&Backfill>,
    ) -> Result<PullCounts> {
        let replace = position.is_some();
        if pull.from > pull.to {
            return Err(StoreError::Invalid(format!(
                "a spend period from {} to {}",
                pull.from, pull.to
            )));
        }
        let sub_id = sub.azure_id.to_ascii_lowercase();
        // What the inventory knows of the resources (outside the write lock).
        let known: HashMap<String, (String, String, String, String)> = sqlx::query(
            "SELECT azure_id, name, resource_type, location, resource_group FROM resources \
             WHERE org_id = $1 AND subscription_id = $2",
        )
        .bind(scope.id())
        .bind(sub.id.to_string())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>(0)?,
                (r.try_get(1)?, r.try_get(2)?, r.try_get(3)?, r.try_get(4)?),
            ))
        })
        .collect::<Result<_>>()?;

        let mut resources: BTreeMap<i64, ResourceDim> = BTreeMap::new();
        let mut meters: BTreeMap<i64, MeterInfo> = BTreeMap::new();
        let mut rows: BTreeMap<(i64, i64, i64), (f64, f64)> = BTreeMap::new();
        let mut day_sums: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
        let mut dim_of = |id: Option<&str>| -> i64 {
            let key = resource_key(&sub_id, id);
            resources.entry(key).or_insert_with(|| {
                let Some(id) = id else {
                    return ResourceDim {
                        key,
                        resource_id: None,
                        name: None,
                        resource_type: None,
                        region: None,
                        resource_group: None,
                    };
                };
                let lower = id.to_ascii_lowercase();
                let (name, kind, rg) = parse_arm_id(&lower);
                match known.get(&lower) {
                    Some((n, t, l, g)) => ResourceDim {
                        key,
                        resource_id: Some(lower),
                        name: Some(n.clone()),
                        resource_type: Some(t.to_ascii_lowercase()),
                        region: Some(l.to_ascii_lowercase()).filter(|l| !l.is_empty()),
                        resource_group: Some(g.to_ascii_lowercase()),
                    },
                    None => ResourceDim {
                        key,
                        resource_id: Some(lower),
                        name,
                        resource_type: kind,
                        region: None,
                        resource_group: rg,
                    },
                }
            });
            key
        };
        for line in &pull.lines {
            if line.day < pull.from || line.day > pull.to {
                continue;
            }
            let rk = dim_of(line.resource_id.as_deref().filter(|s| !s.is_empty()));
            let mk = line.meter.key();
            meters.entry(mk).or_insert_with(|| line.meter.clone());
            let d = day_number(line.day);
            let slot = rows.entry((d, rk, mk)).or_insert((0.0, 0.0));
            slot.0 += line.billed;
            slot.1 += line.effective;
            let sum = day_sums.entry(d).or_insert((0.0, 0.0));
            sum.0 += line.billed;
            sum.1 += line.effective;
        }
        // Each day's difference from Azure's total, as its own row.
        let mut counts = PullCounts::default();
        // (The no-resource row is made only when needed: an empty pull
        // writes no dimension.)
        let none_key = resource_key(&sub_id, None);
        let rec = MeterInfo::reconciliation();
        let rec_key = rec.key();
        let mut days = Vec::new();
        for t in &pull.totals {
            if t.day < pull.from || t.day > pull.to {
                continue;
            }
            let d = day_number(t.day);
            let (b, e) = day_sums.get(&d).copied().unwrap_or((0.0, 0.0));
            let (db, de) = (t.billed - b, t.effective - e);
            if db.abs() >= NOISE || de.abs() >= NOISE {
                meters.entry(rec_key).or_insert_with(|| rec.clone());
                dim_of(None);
                rows.insert((d, none_key, rec_key), (db, de));
                counts.reconciled += 1;
            }
            days.push((d, *t, b, e));
        }
        counts.rows = rows.len() as u64;
        counts.days = days.len() as u64;

        let (from, to) = (day_number(pull.from), day_number(pull.to));
        let now = self.now_ms();
        let org = scope.id();
        // What the pull would store, as a digest: replacing the rows with
        // the same ones would move the revision and invalidate every
        // analysis kept under it for nothing.
        let digest = replace.then(|| {
            pull_digest(
                (from, to, &pull.currency, &sub.display_name),
                &resources,
                meters.keys(),
                &rows,
                &days,
            )
        });
        let mut tx = self.begin_write().await?;
        if let (Some(digest), Some(position)) = (&digest, position) {
            if self
                .stored_pull_digest(&mut tx, scope, sub, (from, to))
                .await?
                .as_ref()
                == Some(digest)
            {
                within(async {
                    // Azure answered the same again, now.
                    sqlx::query(
                        "UPDATE spend_days SET pulled_at = $5 WHERE org_id = $1 AND SubAccountId = $2 \
                         AND day >= $3 AND day <= $4",
                    )
                    .bind(&org)
                    .bind(&sub_id)
                    .bind(from)
                    .bind(to)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    self.write_backfill(&mut tx, scope, sub, position).await
                })
                .await?;
                tx.commit().await?;
                return Ok(PullCounts {
                    unchanged: true,
                    ..counts
                });
            }
        }
        let patch = within(async {
            // First: on PostgreSQL this locks the revision until the
            // commit, so the projection patched below is the state before.
            // The token tells readers this pull's revision from any other
            // write's that reaches the same number (if this one fails).
            let writer = (Uuid::now_v7().as_u64_pair().1 >> 1) as i64;
            let (rev, previous) =
                crate::revisions::bump_spend(&mut tx, scope, Some(writer)).await?;
            let resource_rows: Vec<Vec<Arg>> = resources
                .values()
                .map(|r| {
                    vec![
                        org.clone().into(),
                        r.key.into(),
                        sub_id.clone().into(),
                        sub.display_name.clone().into(),
                        r.resource_id.clone().into(),
                        r.name.clone().into(),
                        r.resource_type.clone().into(),
                        r.region.clone().into(),
                        r.resource_group.clone().into(),
                        pull.currency.clone().into(),
                    ]
                })
                .collect();
            bulk_insert_with(
                &mut tx,
                self.backend,
                "spend_resources",
                &[
                    "org_id",
                    "resource_key",
                    "SubAccountId",
                    "SubAccountName",
                    "ResourceId",
                    "ResourceName",
                    "ResourceType",
                    "RegionId",
                    "x_ResourceGroupName",
                    "BillingCurrency",
                ],
                resource_rows,
                " ON CONFLICT (org_id, resource_key) DO UPDATE SET SubAccountName = excluded.SubAccountName, \
                 ResourceName = excluded.ResourceName, ResourceType = excluded.ResourceType, \
                 RegionId = COALESCE(excluded.RegionId, spend_resources.RegionId), \
                 x_ResourceGroupName = excluded.x_ResourceGroupName, BillingCurrency = excluded.BillingCurrency",
            )
            .await?;
            let meter_rows: Vec<Vec<Arg>> = meters
                .iter()
                .map(|(k, m)| {
                    vec![
                        org.clone().into(),
                        (*k).into(),
                        m.meter.clone().into(),
                        m.service_name.clone().into(),
                        service_category(m.service_name.as_deref().unwrap_or("")).into(),
                        m.charge_category.clone().into(),
                        m.pricing_category.clone().into(),
                        m.commitment_status.clone().into(),
                        m.charge_type.clone().into(),
                    ]
                })
                .collect();
            bulk_insert_with(
                &mut tx,
                self.backend,
                "spend_meters",
                &[
                    "org_id",
                    "meter_key",
                    "SkuMeter",
                    "ServiceName",
                    "ServiceCategory",
                    "ChargeCategory",
                    "PricingCategory",
                    "CommitmentDiscountStatus",
                    "x_ChargeType",
                ],
                meter_rows,
                " ON CONFLICT (org_id, meter_key) DO NOTHING",
            )
            .await?;
            if replace {
                sqlx::query(
                    "DELETE FROM spend_costs WHERE org_id = $1 AND day >= $2 AND day <= $3 AND resource_key IN \
                     (SELECT resource_key FROM spend_resources WHERE org_id = $1 AND SubAccountId = $4)",
                )
                .bind(&org)
                .bind(from)
                .bind(to)
                .bind(&sub_id)
                .execute(&mut *tx)
                .await?;
            }
            let cost_rows: Vec<Vec<Arg>> = rows
                .iter()
                .map(|((d, rk, mk), (b, e))| {
                    vec![
                        org.clone().into(),
                        (*d).into(),
                        (*rk).into(),
                        (*mk).into(),
                        Arg::Real(*b),
                        Arg::Real(*e),
                    ]
                })
                .collect();
            bulk_insert_with(
                &mut tx,
                self.backend,
                "spend_costs",
                &[
                    "org_id",
                    "day",
                    "resource_key",
                    "meter_key",
                    "BilledCost",
                    "EffectiveCost",
                ],
                cost_rows,
                "",
            )
            .await?;
            self.write_pull_digest(&mut tx, scope, sub, (from, to), digest.as_deref())
                .await?;
            let Some(position) = position else {
                return Ok(None);
            };
            let written = rows.iter().map(|((d, rk, mk), (b, e))| (*d, *rk, *mk, *b, *e));
            let patch = self
                .patch_spend_columns(
                    &mut tx,
                    scope,
                    (rev, writer, previous),
                    (&sub_id, from, to),
                    written.collect(),
                )
                .await?;
            sqlx::query(
                "DELETE FROM spend_days WHERE org_id = $1 AND SubAccountId = $2 AND day >= $3 AND day <= $4",
            )
            .bind(&org)
            .bind(&sub_id)
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?;
            let day_rows: Vec<Vec<Arg>> = days
                .iter()
                .map(|(d, t, b, e)| {
                    vec![
                        org.clone().into(),
                        sub_id.clone().into(),
                        (*d).into(),
                        Arg::Real(t.billed),
                        Arg::Real(t.effective),
                        Arg::Real(*b),
                        Arg::Real(*e),
                        pull.currency.clone().into(),
                        now.into(),
                    ]
                })
                .collect();
            bulk_insert_with(
                &mut tx,
                self.backend,
                "spend_days",
                &[
                    "org_id",
                    "SubAccountId",
                    "day",
                    "billed_total",
                    "effective_total",
                    "billed_rows",
                    "effective_rows",
                    "BillingCurrency",
                    "pulled_at",
                ],
                day_rows,
                "",
            )
            .await?;
            self.write_backfill(&mut tx, scope, sub, position).await?;
            Ok(patch)
        })
        .await?;
        tx.commit().await?;
        if let Some(patch) = patch {
            patch.keep();
        }
        Ok(counts)
    }

    async fn write_backfill(
        &self,
        tx: &mut crate::Tx,
        scope: &OrgScope,
        sub: &SubscriptionRecord,
        b: &Backfill,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO spend_backfill (org_id, subscription_id, start_month, next_month, months_done, months_total, pulled_through, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (org_id, subscription_id) DO UPDATE SET \
             start_month = $3, next_month = $4, months_done = $5, months_total = $6, pulled_through = $7, updated_at = $8",
        )
        .bind(scope.id())
        .bind(sub.id.to_string())
        .bind(day_number(b.start_month))
        .bind(b.next_month.map(day_number))
        .bind(i64::from(b.months_done))
        .bind(i64::from(b.months_total))
        .bind(b.pulled_through.map(day_number))
        .bind(self.now_ms())
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// The digest of what the last pull of exactly this period wrote, if
    /// no write of an overlapping period came after it (read in the
    /// writing transaction: none comes between).
    async fn stored_pull_digest(
        &self,
        tx: &mut crate::Tx,
        scope: &OrgScope,
        sub: &SubscriptionRecord,
        (from, to): (i64, i64),
    ) -> Result<Option<String>> {
        Ok(sqlx::query(
            "SELECT digest FROM spend_pull_digests WHERE org_id = $1 AND subscription_id = $2 \
             AND day_from = $3 AND day_to = $4",
        )
        .bind(scope.id())
        .bind(sub.id.to_string())
        .bind(from)
        .bind(to)
        .fetch_optional(&mut **tx)
        .await?
        .map(|r| r.try_get::<String, _>(0))
        .transpose()?)
    }

    /// After a write of a period's rows: the digests of the periods it
    /// overlaps no longer describe what is stored; the period's own, when
    /// given, does.
    async fn write_pull_digest(
        &self,
        tx: &mut crate::Tx,
        scope: &OrgScope,
        sub: &SubscriptionRecord,
        (from, to): (i64, i64),
        digest: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM spend_pull_digests WHERE org_id = $1 AND subscription_id = $2 \
             AND day_from <= $4 AND day_to >= $3",
        )
        .bind(scope.id())
        .bind(sub.id.to_string())
        .bind(from)
        .bind(to)
        .execute(&mut **tx)
        .await?;
        if let Some(digest) = digest {
            sqlx::query(
                "INSERT INTO spend_pull_digests (org_id, subscription_id, day_from, day_to, digest) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(scope.id())
            .bind(sub.id.to_string())
            .bind(from)
            .bind(to)
            .bind(digest)
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Removes every spend row of the organisation (the benchmark's reset
    /// between its bulk load and its ingest).
    pub async fn spend_clear(&self, scope: &OrgScope) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for table in [
            "spend_costs",
            "spend_days",
            "spend_resource_tags",
            "spend_resources",
            "spend_meters",
            "spend_backfill",
            "spend_pull_digests",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE org_id = $1"))
                .bind(scope.id())
                .execute(&mut *tx)
                .await?;
        }
        bump_spend_rev(&mut tx, scope).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a backfill position alone (a month Azure had nothing for).
    pub async fn set_spend_backfill(
        &self,
        scope: &OrgScope,
        sub: &SubscriptionRecord,
        position: &Backfill,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        self.write_backfill(&mut tx, scope, sub, position).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Copies the subscription's resources' tags from the inventory onto
    /// its cost rows' resources: at a level that reads no tags the
    /// inventory has none, so neither do the cost rows.
    pub async fn refresh_spend_tags(
        &self,
        scope: &OrgScope,
        sub: &SubscriptionRecord,
    ) -> Result<u64> {
        let sub_id = sub.azure_id.to_ascii_lowercase();
        let mut tx = self.begin_write().await?;
        // Unchanged (the usual case at a sync): nothing written, and the
        // revision stays, so what is kept for it stays good.
        let read = |rows: Vec<sqlx::any::AnyRow>| -> Result<Vec<(i64, String, String, String)>> {
            let mut rows = rows
                .iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?)))
                .collect::<Result<Vec<_>>>()?;
            rows.sort_unstable();
            Ok(rows)
        };
        let stored = read(
            sqlx::query(
                "SELECT resource_key, key_lower, tag_key, tag_value FROM spend_resource_tags \
                 WHERE org_id = $1 AND resource_key IN \
                 (SELECT resource_key FROM spend_resources WHERE org_id = $1 AND SubAccountId = $2)",
            )
            .bind(scope.id())
            .bind(&sub_id)
            .fetch_all(&mut *tx)
            .await?,
        )?;
        let wanted = read(
            sqlx::query(
                "SELECT sr.resource_key, t.key_lower, t.tag_key, t.tag_value FROM spend_resources sr \
                 JOIN resources r ON r.org_id = sr.org_id AND r.subscription_id = $3 AND r.azure_id = sr.ResourceId \
                 JOIN resource_tags t ON t.org_id = r.org_id AND t.resource_id = r.resource_id \
                 WHERE sr.org_id = $1 AND sr.SubAccountId = $2",
            )
            .bind(scope.id())
            .bind(&sub_id)
            .bind(sub.id.to_string())
            .fetch_all(&mut *tx)
            .await?,
        )?;
        if stored == wanted {
            return Ok(wanted.len() as u64);
        }
        sqlx::query(
            "DELETE FROM spend_resource_tags WHERE org_id = $1 AND resource_key IN \
             (SELECT resource_key FROM spend_resources WHERE org_id = $1 AND SubAccountId = $2)",
        )
        .bind(scope.id())
        .bind(&sub_id)
        .execute(&mut *tx)
        .await?;
        let added = wanted.len() as u64;
        let rows: Vec<Vec<Arg>> = wanted
            .into_iter()
            .map(|(key, lower, tag_key, value)| {
                vec![
                    scope.id().into(),
                    key.into(),
                    lower.into(),
                    tag_key.into(),
                    value.into(),
                ]
            })
            .collect();
        bulk_insert_with(
            &mut tx,
            self.backend,
            "spend_resource_tags",
            &[
                "org_id",
                "resource_key",
                "key_lower",
                "tag_key",
                "tag_value",
            ],
            rows,
            "",
        )
        .await?;
        bump_spend_rev(&mut tx, scope).await?;
        tx.commit().await?;
        Ok(added)
    }

    /// A connection's trailing window in days.
    pub async fn spend_trailing_days(
        &self,
        scope: &OrgScope,
        connection: cloudkeep_domain::ConnectionId,
    ) -> Result<u32> {
        let row = sqlx::query(
            "SELECT trailing_days FROM spend_settings WHERE org_id = $1 AND connection_id = $2",
        )
        .bind(scope.id())
        .bind(connection.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>(0)? as u32,
            None => DEFAULT_TRAILING_DAYS,
        })
    }

    /// Sets a connection's trailing window (1 to 31 days), audited.
    pub async fn set_spend_trailing_days(
        &self,
        scope: &OrgScope,
        connection: cloudkeep_domain::ConnectionId,
        days: u32,
        actor: &str,
    ) -> Result<u32> {
        if !(1..=31).contains(&days) {
            return Err(StoreError::Invalid(format!(
                "the trailing window is 1 to 31 days, not {days}"
            )));
        }
        let conn = self.connection(scope, connection).await?;
        let before = self.spend_trailing_days(scope, conn.id).await?;
        let entry = AuditEntry::new(
            actor,
            "spend_settings.changed",
            format!("connection:{}", conn.id),
            json!({"trailing_days": {"from": before, "to": days}}),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            sqlx::query(
                "INSERT INTO spend_settings (org_id, connection_id, trailing_days) VALUES ($1, $2, $3) \
                 ON CONFLICT (org_id, connection_id) DO UPDATE SET trailing_days = $3",
            )
            .bind(scope.id())
            .bind(conn.id.to_string())
            .bind(i64::from(days))
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        Ok(days)
    }

    /// The organisation's tag key aliases: alias → key, both lower case.
    pub async fn spend_tag_aliases(&self, scope: &OrgScope) -> Result<BTreeMap<String, String>> {
        sqlx::query(
            "SELECT alias_lower, key_lower FROM spend_tag_aliases WHERE org_id = $1 ORDER BY alias_lower",
        )
        .bind(scope.id())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
    }

    /// Replaces the organisation's tag key aliases, audited. An alias may
    /// not be a key others point to (no chains).
    pub async fn set_spend_tag_aliases(
        &self,
        scope: &OrgScope,
        aliases: &BTreeMap<String, String>,
        actor: &str,
    ) -> Result<BTreeMap<String, String>> {
        let clean: BTreeMap<String, String> = aliases
            .iter()
            .map(|(a, k)| (a.trim().to_lowercase(), k.trim().to_lowercase()))
            .filter(|(a, k)| a != k)
            .collect();
        for (a, k) in &clean {
            if a.is_empty() || k.is_empty() || a.chars().count() > 512 || k.chars().count() > 512 {
                return Err(StoreError::Invalid(
                    "a tag alias and its key are 1 to 512 characters".into(),
                ));
            }
            if clean.contains_key(k) {
                return Err(StoreError::Invalid(format!(
                    "'{k}' is both an alias and the key '{a}' points to; point every alias at the key itself"
                )));
            }
        }
        let entry = AuditEntry::new(
            actor,
            "spend_tag_aliases.changed",
            "spend_tag_aliases",
            json!({ "aliases": clean }),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            sqlx::query("DELETE FROM spend_tag_aliases WHERE org_id = $1")
                .bind(scope.id())
                .execute(&mut **tx)
                .await?;
            for (a, k) in &clean {
                sqlx::query(
                    "INSERT INTO spend_tag_aliases (org_id, alias_lower, key_lower) VALUES ($1, $2, $3)",
                )
                .bind(scope.id())
                .bind(a)
                .bind(k)
                .execute(&mut **tx)
                .await?;
            }
            bump_spend_rev(&mut tx, scope).await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        Ok(clean)
    }

    /// Azure's daily totals next to the stored rows' sums, per subscription
    /// and day, for a period (and one subscription, if named).
    pub async fn spend_reconciliation(
        &self,
        scope: &OrgScope,
        from: NaiveDate,
        to: NaiveDate,
        subscription: Option<&str>,
    ) -> Result<Vec<SpendDay>> {
        let mut sql = Sql::new(
            "SELECT SubAccountId, day, BillingCurrency, billed_total, effective_total, billed_rows, effective_rows \
             FROM spend_days WHERE org_id = ",
        );
        let p = sql.arg(scope.id());
        sql.push(&p);
        let (a, b) = (sql.arg_int(day_number(from)), sql.arg_int(day_number(to)));
        sql.push(&format!(" AND day >= {a} AND day <= {b}"));
        if let Some(s) = subscription {
            let p = sql.arg(s.to_ascii_lowercase());
            sql.push(&format!(" AND SubAccountId = {p}"));
        }
        sql.push(" ORDER BY SubAccountId, day");
        sql.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(SpendDay {
                    subscription: r.try_get(0)?,
                    day: from_day_number(r.try_get(1)?),
                    currency: r.try_get(2)?,
                    billed_total: f(r, 3)?,
                    effective_total: f(r, 4)?,
                    billed_rows: f(r, 5)?,
                    effective_rows: f(r, 6)?,
                })
            })
            .collect()
    }

    /// Stored cost per subscription and day (every row, reconciliation
    /// included): what the tests hold against Azure's totals.
    pub async fn spend_daily_totals(
        &self,
        scope: &OrgScope,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<(String, NaiveDate, f64, f64)>> {
        sqlx::query(
            "SELECT r.SubAccountId, c.day, SUM(c.BilledCost), SUM(c.EffectiveCost) FROM spend_costs c \
             JOIN spend_resources r ON r.org_id = c.org_id AND r.resource_key = c.resource_key \
             WHERE c.org_id = $1 AND c.day >= $2 AND c.day <= $3 GROUP BY r.SubAccountId, c.day \
             ORDER BY r.SubAccountId, c.day",
        )
        .bind(scope.id())
        .bind(day_number(from))
        .bind(day_number(to))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                from_day_number(r.try_get(1)?),
                f(r, 2)?,
                f(r, 3)?,
            ))
        })
        .collect()
    }

    /// The tag keys (lower case) a grouping or filter on `key` matches:
    /// the key, what it is an alias of, and every alias of that.
    fn tag_keys(aliases: &BTreeMap<String, String>, key: &str) -> Vec<String> {
        let canonical = aliases.get(key).cloned().unwrap_or_else(|| key.to_string());
        let mut keys: BTreeSet<String> = aliases
            .iter()
            .filter(|(_, k)| **k == canonical)
            .map(|(a, _)| a.clone())
            .collect();
        keys.insert(canonical);
        keys.into_iter().collect()
    }

    /// An analysis: the metric per bucket and group over a period, the top
    /// groups by name and the rest as "other", scoped by the organisation.
    pub async fn spend_analysis(&self, scope: &OrgScope, q: &SpendQuery) -> Result<SpendAnswer> {
        // The revision is read before the rows: an answer kept under it
        // holds at least what it stood for, and a write after it moves it.
        let rev = self.spend_revision_to_answer(scope).await?;
        let key = format!("{}|{q:?}", scope.id());
        if let Some(kept) = self.spend_cache.get(&key, rev.rev) {
            return Ok(kept);
        }
        // One reader answers a question at a time; the others wait for its
        // answer (after a write, every reader of the dashboard misses at
        // once: one computes instead of all of them).
        let _turn = self.spend_cache.turns.take(&key).await;
        if let Some(kept) = self.spend_cache.get(&key, rev.rev) {
            return Ok(kept);
        }
        // The columnar projection when it stands for this revision; SQL
        // otherwise (and the projection is rebuilt in the background).
        let answer = match self.spend_columns_answer(scope, rev, q).await? {
            Some(a) => a,
            None => self.run_spend_analysis(scope, q).await?,
        };
        self.spend_cache.keep(key, rev.rev, &answer);
        Ok(answer)
    }

    async fn run_spend_analysis(&self, scope: &OrgScope, q: &SpendQuery) -> Result<SpendAnswer> {
        let aliases = self.spend_tag_aliases(scope).await?;
        let metric = match q.metric {
            SpendMetric::Billed => "c.BilledCost",
            SpendMetric::Effective => "c.EffectiveCost",
        };
        let mut sql = Sql::new("");
        let org = sql.arg(scope.id());
        let (from, to) = (day_number(q.from), day_number(q.to));
        let mut joins = String::new();
        let (mut need_r, mut need_m) = (false, false);
        let mut dim_expr = |d: SpendDimension| -> &'static str {
            match d {
                SpendDimension::Subscription => {
                    need_r = true;
                    "r.SubAccountId"
                }
                SpendDimension::ResourceGroup => {
                    need_r = true;
                    "r.x_ResourceGroupName"
                }
                SpendDimension::Service => {
                    need_m = true;
                    "m.ServiceName"
                }
                SpendDimension::ServiceCategory => {
                    need_m = true;
                    "m.ServiceCategory"
                }
                SpendDimension::Region => {
                    need_r = true;
                    "r.RegionId"
                }
                SpendDimension::ResourceType => {
                    need_r = true;
                    "r.ResourceType"
                }
                SpendDimension::Resource => {
                    need_r = true;
                    "r.ResourceId"
                }
                SpendDimension::ChargeCategory => {
                    need_m = true;
                    "m.ChargeCategory"
                }
            }
        };
        let mut group_exprs = Vec::new();
        for (i, g) in q.groups.iter().enumerate() {
            match g {
                SpendGroup::Dimension(d) => group_exprs.push(dim_expr(*d).to_string()),
                SpendGroup::Tag(k) => {
                    let keys: Vec<String> = Self::tag_keys(&aliases, k)
                        .into_iter()
                        .map(|k| sql.arg(k))
                        .collect();
                    joins.push_str(&format!(
                        " LEFT JOIN (SELECT resource_key, MIN(tag_value) AS v FROM spend_resource_tags \
                         WHERE org_id = {org} AND key_lower IN ({}) GROUP BY resource_key) t{i} \
                         ON t{i}.resource_key = c.resource_key",
                        keys.join(", ")
                    ));
                    group_exprs.push(format!("t{i}.v"));
                }
            }
        }
        let mut conds = Vec::new();
        let mut by_dim: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
        for flt in &q.filters {
            match flt {
                SpendFilter::Is(d, v) => {
                    let e = dim_expr(*d);
                    let p = sql.arg(v.to_lowercase());
                    by_dim.entry(e).or_default().push(p);
                }
                SpendFilter::HasTag(k, value) => {
                    let keys: Vec<String> = Self::tag_keys(&aliases, k)
                        .into_iter()
                        .map(|k| sql.arg(k))
                        .collect();
                    let mut c = format!(
                        "EXISTS (SELECT 1 FROM spend_resource_tags ft WHERE ft.org_id = c.org_id \
                         AND ft.resource_key = c.resource_key AND ft.key_lower IN ({})",
                        keys.join(", ")
                    );
                    if let Some(v) = value {
                        let p = sql.arg(v.to_lowercase());
                        c.push_str(&format!(" AND lower(ft.tag_value) = {p}"));
                    }
                    c.push(')');
                    conds.push(c);
                }
                SpendFilter::LacksTag(k) => {
                    let keys: Vec<String> = Self::tag_keys(&aliases, k)
                        .into_iter()
                        .map(|k| sql.arg(k))
                        .collect();
                    conds.push(format!(
                        "NOT EXISTS (SELECT 1 FROM spend_resource_tags ft WHERE ft.org_id = c.org_id \
                         AND ft.resource_key = c.resource_key AND ft.key_lower IN ({}))",
                        keys.join(", ")
                    ));
                }
            }
        }
        for (e, ps) in by_dim {
            conds.push(format!("lower({e}) IN ({})", ps.join(", ")));
        }
        // The bucket, computed in SQL so that only buckets × groups come back.
        let bucket = match q.granularity {
            SpendGranularity::Day => "c.day".to_string(),
            // Day 0 (1970-01-01) was a Thursday: Monday is 3 days before.
            SpendGranularity::Week => "(c.day - ((c.day + 3) % 7))".to_string(),
            SpendGranularity::Month => {
                let mut case = String::from("CASE");
                let mut m = bucket_start(q.from, SpendGranularity::Month);
                let mut starts = Vec::new();
                while m <= q.to {
                    starts.push(m);
                    m = cloudkeep_domain::spend::month_end(m) + chrono::Duration::days(1);
                }
                for (i, s) in starts.iter().enumerate().rev() {
                    if i == 0 {
                        break;
                    }
                    let p = sql.arg_int(day_number(*s));
                    case.push_str(&format!(" WHEN c.day >= {p} THEN {p}"));
                }
                let p0 = sql.arg_int(day_number(starts[0]));
                if starts.len() == 1 {
                    // One month: CASE needs a WHEN, so the bucket is a constant.
                    p0
                } else {
                    case.push_str(&format!(" ELSE {p0} END"));
                    case
                }
            }
        };
        let (pf, pt) = (sql.arg_int(from), sql.arg_int(to));
        if need_r {
            joins.insert_str(
                0,
                " JOIN spend_resources r ON r.org_id = c.org_id AND r.resource_key = c.resource_key",
            );
        }
        if need_m {
            joins.insert_str(
                0,
                " JOIN spend_meters m ON m.org_id = c.org_id AND m.meter_key = c.meter_key",
            );
        }
        let mut select = format!("SELECT {bucket} AS b");
        for (i, e) in group_exprs.iter().enumerate() {
            select.push_str(&format!(", {e} AS g{i}"));
        }
        select.push_str(&format!(
            ", SUM({metric}) AS cost FROM spend_costs c{joins}"
        ));
        select.push_str(&format!(
            " WHERE c.org_id = {org} AND c.day >= {pf} AND c.day <= {pt}"
        ));
        for c in &conds {
            select.push_str(" AND ");
            select.push_str(c);
        }
        select.push_str(" GROUP BY b");
        for i in 0..group_exprs.len() {
            select.push_str(&format!(", g{i}"));
        }
        sql.push(&select);

        let rows = sql.fetch_all(&self.pool).await?;
        let mut groups: HashMap<Vec<Option<String>>, BTreeMap<i64, f64>> = HashMap::new();
        let mut buckets: BTreeMap<i64, f64> = BTreeMap::new();
        for r in &rows {
            let b: i64 = r.try_get(0)?;
            let mut key = Vec::with_capacity(group_exprs.len());
            for i in 0..group_exprs.len() {
                key.push(r.try_get::<Option<String>, _>(i + 1)?);
            }
            let cost = f(r, group_exprs.len() + 1)?;
            *groups.entry(key).or_default().entry(b).or_insert(0.0) += cost;
            *buckets.entry(b).or_insert(0.0) += cost;
        }
        let mut ranked: Vec<Ranked> = groups
            .into_iter()
            .map(|(k, pts)| (k, pts.values().sum(), pts))
            .collect();
        ranked.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then_with(|| a.0.cmp(&b.0)));
        let top = if q.groups.is_empty() {
            ranked.len()
        } else {
            q.top.max(1)
        };
        let rest = if ranked.len() > top {
            ranked.split_off(top)
        } else {
            Vec::new()
        };
        let points = |m: &BTreeMap<i64, f64>| -> Vec<(NaiveDate, f64)> {
            m.iter().map(|(b, c)| (from_day_number(*b), *c)).collect()
        };
        let mut series: Vec<SpendSeries> = ranked
            .iter()
            .map(|(k, t, m)| SpendSeries {
                key: k.clone(),
                other: false,
                total: *t,
                points: points(m),
            })
            .collect();
        if !rest.is_empty() {
            let mut m = BTreeMap::new();
            let mut total = 0.0;
            for (_, t, pts) in &rest {
                total += t;
                for (b, c) in pts {
                    *m.entry(*b).or_insert(0.0) += c;
                }
            }
            series.push(SpendSeries {
                key: vec![None; q.groups.len()],
                other: true,
                total,
                points: points(&m),
            });
        }
        let currencies = sqlx::query(
            "SELECT DISTINCT BillingCurrency FROM spend_resources WHERE org_id = $1 ORDER BY 1",
        )
        .bind(scope.id())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(SpendAnswer {
            currencies,
            total: buckets.values().sum(),
            buckets: points(&buckets),
            series,
        })
    }

    /// One page of FOCUS rows of a period, in (day, resource, meter) order,
    /// after a cursor: an export reads page after page, so its memory does
    /// not grow with the period.
    pub async fn spend_export_page(
        &self,
        scope: &OrgScope,
        from: NaiveDate,
        to: NaiveDate,
        after: Option<ExportCursor>,
        limit: usize,
    ) -> Result<Vec<FocusRow>> {
        let mut sql = Sql::new(
            "SELECT c.day, c.resource_key, c.meter_key, c.BilledCost, c.EffectiveCost, r.BillingCurrency, \
             r.SubAccountId, r.SubAccountName, r.ResourceId, r.ResourceName, r.ResourceType, r.RegionId, \
             r.x_ResourceGroupName, m.SkuMeter, m.ServiceName, m.ServiceCategory, m.ChargeCategory, \
             m.PricingCategory, m.CommitmentDiscountStatus, m.x_ChargeType FROM spend_costs c \
             JOIN spend_resources r ON r.org_id = c.org_id AND r.resource_key = c.resource_key \
             JOIN spend_meters m ON m.org_id = c.org_id AND m.meter_key = c.meter_key WHERE c.org_id = ",
        );
        let org = sql.arg(scope.id());
        sql.push(&org);
        let (a, b) = (sql.arg_int(day_number(from)), sql.arg_int(day_number(to)));
        sql.push(&format!(" AND c.day >= {a} AND c.day <= {b}"));
        if let Some((d, rk, mk)) = after {
            let (d, rk, mk) = (sql.arg_int(day_number(d)), sql.arg_int(rk), sql.arg_int(mk));
            sql.push(&format!(
                " AND (c.day > {d} OR (c.day = {d} AND (c.resource_key > {rk} OR (c.resource_key = {rk} AND c.meter_key > {mk}))))"
            ));
        }
        let l = sql.arg_int(limit as i64);
        sql.push(&format!(
            " ORDER BY c.day, c.resource_key, c.meter_key LIMIT {l}"
        ));
        let rows = sql.fetch_all(&self.pool).await?;
        let mut out: Vec<FocusRow> = rows
            .iter()
            .map(|r| {
                Ok(FocusRow {
                    day: from_day_number(r.try_get(0)?),
                    resource_key: r.try_get(1)?,
                    meter_key: r.try_get(2)?,
                    billed: f(r, 3)?,
                    effective: f(r, 4)?,
                    currency: r.try_get(5)?,
                    sub_account_id: r.try_get(6)?,
                    sub_account_name: r.try_get(7)?,
                    resource_id: r.try_get(8)?,
                    resource_name: r.try_get(9)?,
                    resource_type: r.try_get(10)?,
                    region_id: r.try_get(11)?,
                    resource_group: r.try_get(12)?,
                    meter: MeterInfo {
                        meter: r.try_get(13)?,
                        service_name: r.try_get(14)?,
                        charge_category: r.try_get(16)?,
                        pricing_category: r.try_get(17)?,
                        commitment_status: r.try_get(18)?,
                        charge_type: r.try_get(19)?,
                    },
                    service_category: r.try_get(15)?,
                    tags: BTreeMap::new(),
                })
            })
            .collect::<Result<_>>()?;
        // The page's resources' tags, in one query.
        let keys: BTreeSet<i64> = out.iter().map(|r| r.resource_key).collect();
        if !keys.is_empty() {
            let mut sql = Sql::new(
                "SELECT resource_key, tag_key, tag_value FROM spend_resource_tags WHERE org_id = ",
            );
            let org = sql.arg(scope.id());
            sql.push(&org);
            let ps: Vec<String> = keys.iter().map(|k| sql.arg_int(*k)).collect();
            sql.push(&format!(" AND resource_key IN ({})", ps.join(", ")));
            let mut tags: HashMap<i64, BTreeMap<String, String>> = HashMap::new();
            for r in sql.fetch_all(&self.pool).await? {
                tags.entry(r.try_get(0)?)
                    .or_default()
                    .insert(r.try_get(1)?, r.try_get(2)?);
            }
            for row in &mut out {
                if let Some(t) = tags.get(&row.resource_key) {
                    row.tags = t.clone();
                }
            }
        }
        Ok(out)
    }
}

/// FOCUS's `RegionName` for a row's region.
pub fn region_display(region_id: Option<&str>) -> Option<String> {
    region_id.map(region_name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_arm_ids() {
        let (n, t, g) = parse_arm_id(
            "/subscriptions/s/resourcegroups/rg1/providers/microsoft.sql/servers/a/databases/b",
        );
        assert_eq!(n.as_deref(), Some("b"));
        assert_eq!(t.as_deref(), Some("microsoft.sql/servers/databases"));
        assert_eq!(g.as_deref(), Some("rg1"));
        assert_ne!(resource_key("S", None), resource_key("S", Some("/x")));
        assert_eq!(resource_key("S", Some("/X")), resource_key("s", Some("/x")));
    }
}

/// Moves the organisation's spend revision, in the writing transaction
/// (see `SpendCache`).
pub(crate) async fn bump_spend_rev(tx: &mut crate::Tx, scope: &OrgScope) -> Result<i64> {
    crate::revisions::bump(tx, scope, crate::revisions::Revision::Spend).await
}

/// Analyses answered before, per organisation and query, with the spend
/// revision they were read at. The dashboard and the summary ask the same
/// few questions on every load while the rows change once a sync; the
/// revision lives in the database, so an answer is reused only while no
/// instance has written spend since.
#[derive(Debug, Default)]
pub(crate) struct SpendCache {
    entries: std::sync::Mutex<HashMap<String, (i64, SpendAnswer)>>,
    /// The latest day with cost on or before a day, per organisation and
    /// day (every forecast asks it first).
    latest_days: std::sync::Mutex<HashMap<(OrgId, NaiveDate), KeptDay>>,
    /// Per question, the turn to compute it.
    turns: crate::turns::Turns<String>,
}

/// A latest day with cost, and the revision it was read at.
type KeptDay = (i64, Option<NaiveDate>);

/// Bounds on what is kept: this many answers (then it starts over: a cache
/// that fills is one whose questions vary too much to help), each at most
/// this many series.
const CACHE_ANSWERS: usize = 256;
const CACHE_SERIES: usize = 200;

impl SpendCache {
    fn get(&self, key: &str, rev: i64) -> Option<SpendAnswer> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| *at == rev)
            .map(|(_, a)| a.clone())
    }

    fn keep(&self, key: String, rev: i64, answer: &SpendAnswer) {
        if answer.series.len() > CACHE_SERIES {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_ANSWERS && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (rev, answer.clone()));
    }

    pub(crate) fn latest_day(
        &self,
        org: OrgId,
        day: NaiveDate,
        rev: i64,
    ) -> Option<Option<NaiveDate>> {
        let days = self.latest_days.lock().unwrap_or_else(|e| e.into_inner());
        days.get(&(org, day))
            .filter(|(at, _)| *at == rev)
            .map(|(_, d)| *d)
    }

    pub(crate) fn keep_latest_day(
        &self,
        org: OrgId,
        day: NaiveDate,
        rev: i64,
        latest: Option<NaiveDate>,
    ) {
        let mut days = self.latest_days.lock().unwrap_or_else(|e| e.into_inner());
        if days.len() >= CACHE_ANSWERS && !days.contains_key(&(org, day)) {
            days.clear();
        }
        days.insert((org, day), (rev, latest));
    }
}
