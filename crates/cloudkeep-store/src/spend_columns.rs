//! An in-memory columnar projection of one organisation's spend facts,
//! read by the analyses while it stands for the organisation's current
//! spend revision.
//!
//! The facts are held as a few dense columns: per row, the index of its
//! (resource, meter) pair and the two costs, in segments of a few days
//! whose rows are sorted by day (a period is a slice per day, no search
//! of rows); the dimensions are vectors indexed by those integers, every
//! string once. An analysis computes per resource and per meter whether
//! it passes the filters and its group values (integers), per pair its
//! group, then scans the period's rows adding each cost into its group's
//! slot of the bucket: strings are touched only for the groups answered.
//!
//! It is a cache of the database, never a source: each projection records
//! the revision it was read at (the revision lives in the database, moved
//! by every spend write in its transaction, so several instances stay
//! right), and an analysis reads it only when the revision it read equals
//! the projection's. Otherwise the analysis answers through SQL and a
//! rebuild is started in the background, one at a time per organisation.
//! A build reads the revision before and after its reads and keeps what
//! it read only when the two are equal: no write committed in between, so
//! everything read is that revision's.
//!
//! A pull this instance writes patches the projection instead (a sync
//! writes one per subscription, and a rebuild per pull would never catch
//! up): in the pull's transaction, after its writes, the projection at the
//! revision just before is copied with the subscription's dimensions read
//! back and the period's rows replaced (segments are shared, only those
//! the period touches are rebuilt), and staged under a token the pull
//! writes with the revision (migration 0019). A reader that reads the new
//! revision with that token takes the staged projection (the pull has
//! committed), without waiting for the pull's task to keep it; a pull that
//! failed is never taken for another write that reached the same number.
//! The next pull patches the staged one when its revision's previous
//! writer is that token. Another instance's projection is rebuilt as before.
//!
//! The same semantics as the SQL path (`Store::run_spend_analysis`):
//! `lower()` is the database's own (read with the values: SQLite's lowers
//! ASCII only), the minimum of a tag's aliased values is the database's
//! order (tag values are ranked by an `ORDER BY` of the database), and
//! rows without a dimension row are left out exactly where the SQL's
//! inner joins leave them out.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use cloudkeep_domain::OrgId;
use cloudkeep_domain::spend::{
    SpendDimension, SpendFilter, SpendGranularity, SpendGroup, SpendMetric, day_number,
    from_day_number, month_start,
};
use sqlx::Row;

use super::{SpendAnswer, SpendQuery, SpendSeries, USAGE};
use crate::anomalies::{FirstDays, UsageSeries};
use crate::revisions::SpendRev;
use crate::turns::Turns;
use crate::{OrgScope, Result, Store, StoreError};

/// Rows held by all projections together unless configured otherwise
/// (about 800 MB at 20 bytes a row, so the 32 million of the `large`
/// preset's 13 months fit); an organisation that would not fit is
/// answered by SQL only.
pub const DEFAULT_SPEND_COLUMN_ROWS: u64 = 40_000_000;

/// No value (SQL's NULL), or a row left out.
const NONE: u32 = u32::MAX;
/// Days per segment: one query each while building.
const SEGMENT_DAYS: i64 = 8;
/// An analysis scanning more rows than this runs on a blocking thread.
const BLOCKING_ROWS: usize = 1_000_000;
/// Builds a forced read tries before giving up on a moving revision.
const ATTEMPTS: usize = 5;

/// What a projection holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpendColumnStats {
    /// The spend revision it stands for.
    pub rev: i64,
    pub rows: u64,
    /// Its memory, estimated from its vectors' sizes.
    pub bytes: u64,
    /// How long building it took, when this call built it.
    pub built_in: Option<Duration>,
}

/// The projections of all organisations, shared by a store's clones.
#[derive(Debug)]
pub(crate) struct SpendColumns {
    cap: AtomicU64,
    orgs: Mutex<HashMap<OrgId, Slot>>,
    /// One build of an organisation's projection at a time, in the
    /// background or asked for (`spend_columns_warm`).
    builds: Turns<OrgId>,
    /// Builds this store has run, for the tests' accounting.
    built: AtomicU64,
}

impl Default for SpendColumns {
    fn default() -> Self {
        SpendColumns {
            cap: AtomicU64::new(DEFAULT_SPEND_COLUMN_ROWS),
            orgs: Mutex::default(),
            builds: Turns::default(),
            built: AtomicU64::new(0),
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    ready: Option<Arc<OrgColumns>>,
    building: bool,
    /// A revision whose rows did not fit: not tried again until it moves.
    refused: Option<i64>,
    /// The projection patched by a pull of this instance, with the pull's
    /// token: it stands for its revision once the pull commits, which a
    /// reader knows by reading that revision with that token (no other
    /// write, even one reaching the same number after this one failed,
    /// carries it).
    staged: Option<(i64, Arc<OrgColumns>)>,
}

impl Slot {
    /// The projection when it stands for `rev`.
    fn ready_at(&self, rev: i64) -> Option<Arc<OrgColumns>> {
        self.ready.clone().filter(|c| c.rev == rev)
    }

    /// Whether `rev` (or a later revision) did not fit.
    fn refused_at(&self, rev: i64) -> bool {
        self.refused.is_some_and(|r| r >= rev)
    }
}

impl SpendColumns {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<OrgId, Slot>> {
        self.orgs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cap(&self) -> u64 {
        self.cap.load(Ordering::Relaxed)
    }

    /// Rows the other organisations' projections hold.
    fn held_by_others(&self, org: OrgId) -> u64 {
        self.lock()
            .iter()
            .filter(|(o, _)| **o != org)
            .filter_map(|(_, s)| s.ready.as_ref())
            .map(|c| c.rows)
            .sum()
    }

    /// Keeps a projection unless it would pass the cap (then its revision
    /// is refused) or a newer one is kept already.
    fn install(&self, org: OrgId, cols: OrgColumns) -> Option<Arc<OrgColumns>> {
        let cap = self.cap();
        let mut orgs = self.lock();
        let others: u64 = orgs
            .iter()
            .filter(|(o, _)| **o != org)
            .filter_map(|(_, s)| s.ready.as_ref())
            .map(|c| c.rows)
            .sum();
        let slot = orgs.entry(org).or_default();
        if others + cols.rows > cap {
            slot.refused = Some(cols.rev);
            return None;
        }
        if let Some(newer) = slot.ready.as_ref().filter(|r| r.rev >= cols.rev) {
            return Some(newer.clone());
        }
        let cols = Arc::new(cols);
        slot.ready = Some(cols.clone());
        Some(cols)
    }
}

/// A patched projection staged by a writing transaction: `keep` after
/// the commit makes it the organisation's projection; dropped otherwise
/// (before the transaction lets its lock go), it is unstaged.
pub(crate) struct Patch {
    columns: Arc<SpendColumns>,
    org: OrgId,
    writer: i64,
    kept: bool,
}

impl Patch {
    /// After the commit: the patched projection stands for its revision
    /// (a reader may have made it so already).
    pub(crate) fn keep(mut self) {
        self.kept = true;
        let mut orgs = self.columns.lock();
        if let Some(slot) = orgs.get_mut(&self.org)
            && let Some((_, staged)) = slot.staged.take_if(|(w, _)| *w == self.writer)
            && slot.ready.as_ref().is_none_or(|r| r.rev < staged.rev)
        {
            slot.ready = Some(staged);
        }
    }
}

impl Drop for Patch {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if let Some(slot) = self.columns.lock().get_mut(&self.org) {
            slot.staged.take_if(|(w, _)| *w == self.writer);
        }
    }
}

/// Clears an organisation's "building" mark however its build ends.
struct Building(Arc<SpendColumns>, OrgId);

impl Drop for Building {
    fn drop(&mut self) {
        if let Some(slot) = self.0.lock().get_mut(&self.1) {
            slot.building = false;
        }
    }
}

/// A resource as the analyses see it.
#[derive(Debug, Clone)]
struct ResourceCols {
    /// Whether `spend_resources` has its row (the SQL joins it).
    known: bool,
    /// Value ids of SubAccountId, x_ResourceGroupName, RegionId,
    /// ResourceType, ResourceId, then SubAccountName and BillingCurrency
    /// (read by the usage series, never grouped or filtered on).
    dims: [u32; 7],
    /// (tag key id, tag value id).
    tags: Vec<(u32, u32)>,
}

/// A meter as the analyses see it.
#[derive(Debug, Clone)]
struct MeterCols {
    known: bool,
    /// Value ids of ServiceName, ServiceCategory, ChargeCategory.
    dims: [u32; 3],
}

/// Rows of a few days, sorted by day.
#[derive(Debug)]
struct Segment {
    first_day: i64,
    /// Row offset of each day from `first_day`, and the end: day `k`'s rows
    /// are `starts[k]..starts[k + 1]`.
    starts: Vec<u32>,
    /// Index into `OrgColumns::lines`.
    line: Vec<u32>,
    billed: Vec<f64>,
    effective: Vec<f64>,
}

impl Segment {
    fn last_day(&self) -> i64 {
        self.first_day + self.starts.len() as i64 - 2
    }

    /// The segment of days `first..=last` holding `rows` (day, line,
    /// billed, effective), in any order.
    fn of(first: i64, last: i64, mut rows: Vec<(i64, u32, f64, f64)>) -> Segment {
        rows.sort_unstable_by_key(|r| r.0);
        let days = (last - first + 1) as usize;
        Segment {
            first_day: first,
            starts: (0..=days)
                .map(|k| rows.partition_point(|r| r.0 < first + k as i64) as u32)
                .collect(),
            line: rows.iter().map(|r| r.1).collect(),
            billed: rows.iter().map(|r| r.2).collect(),
            effective: rows.iter().map(|r| r.3).collect(),
        }
    }

    /// Its rows as (day, line, billed, effective).
    fn rows(&self) -> impl Iterator<Item = (i64, u32, f64, f64)> + '_ {
        (0..self.starts.len() - 1).flat_map(move |k| {
            let (a, e) = (self.starts[k] as usize, self.starts[k + 1] as usize);
            (a..e).map(move |j| {
                (
                    self.first_day + k as i64,
                    self.line[j],
                    self.billed[j],
                    self.effective[j],
                )
            })
        })
    }
}

/// Strings each kept once, with the database's `lower()` of each.
#[derive(Debug, Default, Clone)]
struct Dict {
    ids: HashMap<String, u32>,
    values: Vec<String>,
    lowers: Vec<String>,
}

impl Dict {
    fn id(&mut self, value: Option<String>, lower: Option<String>) -> u32 {
        let Some(value) = value else {
            return NONE;
        };
        if let Some(id) = self.ids.get(&value) {
            return *id;
        }
        let id = self.values.len() as u32;
        self.lowers.push(lower.unwrap_or_else(|| value.clone()));
        self.values.push(value.clone());
        self.ids.insert(value, id);
        id
    }

    fn bytes(&self) -> u64 {
        self.values
            .iter()
            .chain(&self.lowers)
            .map(|s| s.len() as u64 * 2 + 24)
            .sum()
    }
}

/// One organisation's projection at one revision. What a patch may
/// change is behind `Arc`s, so a patched copy shares what it left alone.
#[derive(Debug, Clone)]
pub(crate) struct OrgColumns {
    rev: i64,
    rows: u64,
    currencies: Vec<String>,
    aliases: BTreeMap<String, String>,
    /// The dimensions' values.
    dims: Arc<Dict>,
    /// Tag keys (lower case) by id (a pull changes no tag: a patched copy
    /// shares the tags' dictionaries).
    tag_keys: Arc<HashMap<String, u32>>,
    /// Tag values, ids in the database's order (a smaller id is a smaller value).
    tag_values: Arc<Dict>,
    resources: Arc<Vec<ResourceCols>>,
    meters: Arc<Vec<MeterCols>>,
    /// (resource, meter) of each line.
    lines: Arc<Vec<(u32, u32)>>,
    /// Each key's index, for patches.
    keys: Arc<Keys>,
    segments: Vec<Arc<Segment>>,
}

/// The database's keys of the resources, meters and lines by index.
#[derive(Debug, Default, Clone)]
struct Keys {
    resources: HashMap<i64, u32>,
    meters: HashMap<i64, u32>,
    lines: HashMap<(u32, u32), u32>,
}

/// Where a dimension's value is read.
#[derive(Debug, Clone, Copy)]
enum Side {
    Resource(usize),
    Meter(usize),
}

fn side(d: SpendDimension) -> Side {
    match d {
        SpendDimension::Subscription => Side::Resource(0),
        SpendDimension::ResourceGroup => Side::Resource(1),
        SpendDimension::Region => Side::Resource(2),
        SpendDimension::ResourceType => Side::Resource(3),
        SpendDimension::Resource => Side::Resource(4),
        SpendDimension::Service => Side::Meter(0),
        SpendDimension::ServiceCategory => Side::Meter(1),
        SpendDimension::ChargeCategory => Side::Meter(2),
    }
}

/// A grouping, compiled.
enum By {
    Dim(Side),
    /// The tag key ids it matches.
    Tag(Vec<u32>),
}

impl OrgColumns {
    fn bytes(&self) -> u64 {
        let segs: u64 = self
            .segments
            .iter()
            .map(|s| (s.starts.len() * 4 + s.line.len() * 20) as u64 + 120)
            .sum();
        let tags: usize = self.resources.iter().map(|r| r.tags.len() * 8).sum();
        segs + self.lines.len() as u64 * 8
            + (self.resources.len() * std::mem::size_of::<ResourceCols>() + tags) as u64
            + (self.meters.len() * std::mem::size_of::<MeterCols>()) as u64
            + self.dims.bytes()
            + self.tag_values.bytes()
    }

    fn stats(&self, built_in: Option<Duration>) -> SpendColumnStats {
        SpendColumnStats {
            rev: self.rev,
            rows: self.rows,
            bytes: self.bytes(),
            built_in,
        }
    }

    /// Rows of a period.
    fn rows_in(&self, from: i64, to: i64) -> usize {
        self.segments
            .iter()
            .filter(|s| s.first_day <= to && s.last_day() >= from)
            .map(|s| {
                let a = (from.max(s.first_day) - s.first_day) as usize;
                let b = (to.min(s.last_day()) - s.first_day) as usize + 1;
                (s.starts[b] - s.starts[a]) as usize
            })
            .sum()
    }

    /// The tag key ids a grouping or filter on `key` matches (through the aliases).
    fn key_ids(&self, key: &str) -> Vec<u32> {
        Store::tag_keys(&self.aliases, key)
            .iter()
            .filter_map(|k| self.tag_keys.get(k).copied())
            .collect()
    }

    fn key_str(&self, by: &By, v: u32) -> Option<&str> {
        if v == NONE {
            return None;
        }
        Some(match by {
            By::Dim(_) => &self.dims.values[v as usize],
            By::Tag(_) => &self.tag_values.values[v as usize],
        })
    }

    /// The analysis, as `Store::run_spend_analysis` answers it.
    fn answer(&self, q: &SpendQuery) -> SpendAnswer {
        let (mut need_r, mut need_m) = (false, false);
        let mut note = |s: Side| match s {
            Side::Resource(_) => need_r = true,
            Side::Meter(_) => need_m = true,
        };
        let groups: Vec<By> = q
            .groups
            .iter()
            .map(|g| match g {
                SpendGroup::Dimension(d) => {
                    note(side(*d));
                    By::Dim(side(*d))
                }
                SpendGroup::Tag(k) => By::Tag(self.key_ids(k)),
            })
            .collect();
        // `Is` filters: values of one dimension are alternatives.
        let mut is: BTreeMap<&'static str, (Side, Vec<String>)> = BTreeMap::new();
        let mut has: Vec<(Vec<u32>, Option<String>)> = Vec::new();
        let mut lacks: Vec<Vec<u32>> = Vec::new();
        for flt in &q.filters {
            match flt {
                SpendFilter::Is(d, v) => {
                    let s = side(*d);
                    note(s);
                    is.entry(d.as_str())
                        .or_insert_with(|| (s, Vec::new()))
                        .1
                        .push(v.to_lowercase());
                }
                SpendFilter::HasTag(k, v) => {
                    has.push((self.key_ids(k), v.as_ref().map(|v| v.to_lowercase())))
                }
                SpendFilter::LacksTag(k) => lacks.push(self.key_ids(k)),
            }
        }
        let matches = |dims: &[u32], i: usize, vals: &[String]| {
            let v = dims[i];
            v != NONE && vals.iter().any(|x| *x == self.dims.lowers[v as usize])
        };
        // Per resource: whether it passes, and its group values.
        let mut r_ok = Vec::with_capacity(self.resources.len());
        let mut r_val = Vec::with_capacity(self.resources.len());
        for r in self.resources.iter() {
            let ok = (!need_r || r.known)
                && is.values().all(|(s, vals)| match s {
                    Side::Resource(i) => matches(&r.dims, *i, vals),
                    Side::Meter(_) => true,
                })
                && has.iter().all(|(keys, val)| {
                    r.tags.iter().any(|(k, v)| {
                        keys.contains(k)
                            && val
                                .as_ref()
                                .is_none_or(|x| *x == self.tag_values.lowers[*v as usize])
                    })
                })
                && lacks
                    .iter()
                    .all(|keys| !r.tags.iter().any(|(k, _)| keys.contains(k)));
            r_ok.push(ok);
            let mut vals = [NONE; 2];
            for (slot, by) in groups.iter().enumerate() {
                vals[slot] = match by {
                    By::Dim(Side::Resource(i)) => r.dims[*i],
                    By::Dim(Side::Meter(_)) => NONE,
                    // MIN(tag_value): ids follow the database's order.
                    By::Tag(keys) => r
                        .tags
                        .iter()
                        .filter(|(k, _)| keys.contains(k))
                        .map(|(_, v)| *v)
                        .min()
                        .unwrap_or(NONE),
                };
            }
            r_val.push(vals);
        }
        let mut m_ok = Vec::with_capacity(self.meters.len());
        for m in self.meters.iter() {
            m_ok.push(
                (!need_m || m.known)
                    && is.values().all(|(s, vals)| match s {
                        Side::Meter(i) => matches(&m.dims, *i, vals),
                        Side::Resource(_) => true,
                    }),
            );
        }
        // Per line: its group (dense ids), or NONE when left out.
        let mut ids: HashMap<[u32; 2], u32> = HashMap::new();
        let mut keys: Vec<[u32; 2]> = Vec::new();
        let line_group: Vec<u32> = self
            .lines
            .iter()
            .map(|(r, m)| {
                let (r, m) = (*r as usize, *m as usize);
                if !r_ok[r] || !m_ok[m] {
                    return NONE;
                }
                let mut k = r_val[r];
                for (slot, by) in groups.iter().enumerate() {
                    if let By::Dim(Side::Meter(i)) = by {
                        k[slot] = self.meters[m].dims[*i];
                    }
                }
                *ids.entry(k).or_insert_with(|| {
                    keys.push(k);
                    keys.len() as u32 - 1
                })
            })
            .collect();

        // The scan: each bucket's rows into their groups' slots.
        let (from, to) = (day_number(q.from), day_number(q.to));
        let bucket_of = |d: i64| match q.granularity {
            SpendGranularity::Day => d,
            // Day 0 (1970-01-01) was a Thursday: Monday is 3 days before.
            SpendGranularity::Week => d - ((d + 3) % 7),
            SpendGranularity::Month => day_number(month_start(from_day_number(d))),
        };
        let n = keys.len();
        let mut acc = vec![0.0f64; n];
        let mut hit = vec![false; n];
        let mut touched: Vec<u32> = Vec::new();
        let mut points: Vec<Vec<(i64, f64)>> = vec![Vec::new(); n];
        let mut buckets: BTreeMap<i64, f64> = BTreeMap::new();
        let mut flush = |b: i64,
                         acc: &mut [f64],
                         hit: &mut [bool],
                         touched: &mut Vec<u32>,
                         points: &mut [Vec<(i64, f64)>]| {
            for g in touched.drain(..) {
                let g = g as usize;
                points[g].push((b, acc[g]));
                *buckets.entry(b).or_insert(0.0) += acc[g];
                acc[g] = 0.0;
                hit[g] = false;
            }
        };
        let mut current: Option<i64> = None;
        for s in &self.segments {
            if s.last_day() < from || s.first_day > to {
                continue;
            }
            let costs = match q.metric {
                SpendMetric::Billed => &s.billed,
                SpendMetric::Effective => &s.effective,
            };
            for d in from.max(s.first_day)..=to.min(s.last_day()) {
                let b = bucket_of(d);
                if current != Some(b) {
                    if let Some(prev) = current {
                        flush(prev, &mut acc, &mut hit, &mut touched, &mut points);
                    }
                    current = Some(b);
                }
                let k = (d - s.first_day) as usize;
                let (a, e) = (s.starts[k] as usize, s.starts[k + 1] as usize);
                for (l, c) in s.line[a..e].iter().zip(&costs[a..e]) {
                    let g = line_group[*l as usize];
                    if g == NONE {
                        continue;
                    }
                    let gi = g as usize;
                    if !hit[gi] {
                        hit[gi] = true;
                        touched.push(g);
                    }
                    acc[gi] += c;
                }
            }
        }
        if let Some(prev) = current {
            flush(prev, &mut acc, &mut hit, &mut touched, &mut points);
        }

        // Ranking, as the SQL path ranks: by |total|, then by key.
        let totals: Vec<f64> = points
            .iter()
            .map(|p| p.iter().map(|(_, c)| c).sum())
            .collect();
        let mut order: Vec<usize> = (0..n).filter(|g| !points[*g].is_empty()).collect();
        let key_of = |g: usize| -> Vec<Option<&str>> {
            groups
                .iter()
                .enumerate()
                .map(|(slot, by)| self.key_str(by, keys[g][slot]))
                .collect()
        };
        order.sort_by(|a, b| {
            totals[*b]
                .abs()
                .total_cmp(&totals[*a].abs())
                .then_with(|| key_of(*a).cmp(&key_of(*b)))
        });
        let top = if q.groups.is_empty() {
            order.len()
        } else {
            q.top.max(1)
        };
        let rest = if order.len() > top {
            order.split_off(top)
        } else {
            Vec::new()
        };
        let dated = |p: &mut dyn Iterator<Item = (i64, f64)>| -> Vec<(chrono::NaiveDate, f64)> {
            p.map(|(b, c)| (from_day_number(b), c)).collect()
        };
        let mut series: Vec<SpendSeries> = order
            .iter()
            .map(|g| SpendSeries {
                key: key_of(*g)
                    .into_iter()
                    .map(|k| k.map(str::to_string))
                    .collect(),
                other: false,
                total: totals[*g],
                points: dated(&mut points[*g].iter().copied()),
            })
            .collect();
        if !rest.is_empty() {
            let mut m: BTreeMap<i64, f64> = BTreeMap::new();
            let mut total = 0.0;
            for g in &rest {
                total += totals[*g];
                for (b, c) in &points[*g] {
                    *m.entry(*b).or_insert(0.0) += c;
                }
            }
            series.push(SpendSeries {
                key: vec![None; q.groups.len()],
                other: true,
                total,
                points: dated(&mut m.into_iter()),
            });
        }
        SpendAnswer {
            currencies: self.currencies.clone(),
            total: buckets.values().sum(),
            buckets: dated(&mut buckets.into_iter()),
            series,
        }
    }
}

impl OrgColumns {
    /// A dimension value, as stored.
    fn value(&self, id: u32) -> Option<&str> {
        (id != NONE).then(|| self.dims.values[id as usize].as_str())
    }

    /// One subscription × service's daily usage cost, as
    /// `Store::usage_series` reads it through SQL for one series: the
    /// series starts at `from` when it had usage cost before (a positive
    /// row), else at its first day of positive cost; it ends at the
    /// subscription's last day of usage cost over every service (later
    /// days are not pulled yet). `sub` is lower case, compared as stored.
    fn usage_series_of(&self, sub: &str, service: &str, from: i64, to: i64) -> Option<UsageSeries> {
        // Per line: 0 left out, 1 the subscription's usage of another
        // service, 2 this series (the SQL's inner joins and conditions).
        let class: Vec<u8> = self
            .lines
            .iter()
            .map(|(r, m)| {
                let (r, m) = (&self.resources[*r as usize], &self.meters[*m as usize]);
                let usage = r.known
                    && m.known
                    && self.value(r.dims[0]) == Some(sub)
                    && self.value(m.dims[2]) == Some(USAGE)
                    && m.dims[0] != NONE;
                match (usage, self.value(m.dims[0]) == Some(service)) {
                    (false, _) => 0,
                    (true, false) => 1,
                    (true, true) => 2,
                }
            })
            .collect();
        let days = (to - from + 1).max(0) as usize;
        let mut sums = vec![0.0f64; days];
        let mut present = vec![false; days];
        let (mut last, mut before) = (None::<i64>, false);
        let (mut name, mut currency) = (NONE, NONE);
        for s in &self.segments {
            if s.first_day > to {
                break;
            }
            for d in s.first_day..=s.last_day().min(to) {
                let k = (d - s.first_day) as usize;
                let (a, e) = (s.starts[k] as usize, s.starts[k + 1] as usize);
                let rows = s.line[a..e].iter().zip(&s.effective[a..e]);
                if d < from {
                    before = before
                        || rows
                            .clone()
                            .any(|(l, c)| class[*l as usize] == 2 && *c > 0.0);
                    continue;
                }
                for (l, c) in rows {
                    match class[*l as usize] {
                        0 => continue,
                        2 => {
                            let i = (d - from) as usize;
                            sums[i] += c;
                            present[i] = true;
                            let r = &self.resources[self.lines[*l as usize].0 as usize];
                            name = min_value(self, name, r.dims[5]);
                            currency = min_value(self, currency, r.dims[6]);
                        }
                        _ => {}
                    }
                    last = Some(last.map_or(d, |x| x.max(d)));
                }
            }
        }
        if !present.contains(&true) {
            return None;
        }
        let start = if before {
            from
        } else {
            (0..days)
                .find(|i| present[*i] && sums[*i] > 0.0)
                .map_or(from, |i| from + i as i64)
        };
        let mut values: Vec<f64> = sums[(start - from) as usize..].to_vec();
        if let Some(l) = last {
            values.truncate((l - start + 1).max(0) as usize);
        }
        Some(UsageSeries {
            subscription: sub.to_string(),
            subscription_name: self.value(name).unwrap_or_default().to_string(),
            service: service.to_string(),
            currency: self.value(currency).unwrap_or_default().to_string(),
            start: from_day_number(start),
            values,
        })
    }
}

impl OrgColumns {
    /// Whether a line is usage cost the anomaly reviews read: its resource
    /// and meter have their rows (the SQL's inner joins) and the meter's
    /// charge is usage.
    fn usage_line(&self, (r, m): (u32, u32)) -> Option<(&ResourceCols, &MeterCols)> {
        let (r, m) = (&self.resources[r as usize], &self.meters[m as usize]);
        (r.known && m.known && self.value(m.dims[2]) == Some(USAGE)).then_some((r, m))
    }

    /// Every subscription × service's daily usage cost, as
    /// `Store::usage_series` reads them all through SQL: a series for each
    /// pair with rows in the period, dense from the later of `from` and its
    /// first day of positive cost ever (a positive row), to its
    /// subscription's last day of usage cost in the period.
    fn usage_series_all(&self, from: i64, to: i64) -> Vec<UsageSeries> {
        let mut ids: HashMap<(u32, u32), u32> = HashMap::new();
        let mut keys: Vec<(u32, u32)> = Vec::new();
        let series: Vec<u32> = self
            .lines
            .iter()
            .map(|line| match self.usage_line(*line) {
                Some((r, m)) if m.dims[0] != NONE && r.dims[0] != NONE => {
                    *ids.entry((r.dims[0], m.dims[0])).or_insert_with(|| {
                        keys.push((r.dims[0], m.dims[0]));
                        keys.len() as u32 - 1
                    })
                }
                _ => NONE,
            })
            .collect();
        let n = keys.len();
        let days = (to - from + 1).max(0) as usize;
        let mut sums = vec![0.0f64; n * days];
        let mut first = vec![i64::MAX; n];
        let mut seen = vec![false; n];
        let (mut names, mut currencies) = (vec![NONE; n], vec![NONE; n]);
        let mut last: HashMap<u32, i64> = HashMap::new();
        for s in &self.segments {
            for d in s.first_day..=s.last_day() {
                let k = (d - s.first_day) as usize;
                let (a, e) = (s.starts[k] as usize, s.starts[k + 1] as usize);
                for (l, c) in s.line[a..e].iter().zip(&s.effective[a..e]) {
                    let g = series[*l as usize];
                    if g == NONE {
                        continue;
                    }
                    let g = g as usize;
                    if *c > 0.0 && d < first[g] {
                        first[g] = d;
                    }
                    if d < from || d > to {
                        continue;
                    }
                    sums[g * days + (d - from) as usize] += c;
                    seen[g] = true;
                    let r = &self.resources[self.lines[*l as usize].0 as usize];
                    names[g] = min_value(self, names[g], r.dims[5]);
                    currencies[g] = min_value(self, currencies[g], r.dims[6]);
                    let e = last.entry(keys[g].0).or_insert(d);
                    *e = (*e).max(d);
                }
            }
        }
        let text = |id: u32| self.value(id).unwrap_or_default().to_string();
        let mut out: Vec<UsageSeries> = (0..n)
            .filter(|g| seen[*g])
            .map(|g| {
                let start = if first[g] == i64::MAX { from } else { first[g] }.clamp(from, to);
                let mut values = sums[g * days + (start - from) as usize..(g + 1) * days].to_vec();
                if let Some(l) = last.get(&keys[g].0) {
                    values.truncate((l - start + 1).max(0) as usize);
                }
                UsageSeries {
                    subscription: text(keys[g].0),
                    subscription_name: text(names[g]),
                    service: text(keys[g].1),
                    currency: text(currencies[g]),
                    start: from_day_number(start),
                    values,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.subscription, &a.service).cmp(&(&b.subscription, &b.service)));
        out
    }

    /// A subscription's usage rows of a service (or a region) from `from`
    /// to `to`, as `Store::contributor_rows` reads them through SQL:
    /// (resource key, meter key, day, effective cost). `sub` is lower
    /// case, compared as stored.
    fn contributor_rows(
        &self,
        sub: &str,
        by_region: bool,
        subject: &str,
        from: i64,
        to: i64,
    ) -> Vec<(i64, i64, i64, f64)> {
        let matching: Vec<bool> = self
            .lines
            .iter()
            .map(|line| {
                self.usage_line(*line).is_some_and(|(r, m)| {
                    let on = if by_region { r.dims[2] } else { m.dims[0] };
                    self.value(r.dims[0]) == Some(sub) && self.value(on) == Some(subject)
                })
            })
            .collect();
        if !matching.contains(&true) {
            return Vec::new();
        }
        let mut resource_keys = vec![0; self.resources.len()];
        for (key, i) in &self.keys.resources {
            resource_keys[*i as usize] = *key;
        }
        let mut meter_keys = vec![0; self.meters.len()];
        for (key, i) in &self.keys.meters {
            meter_keys[*i as usize] = *key;
        }
        let mut out = Vec::new();
        for s in &self.segments {
            if s.first_day > to || s.last_day() < from {
                continue;
            }
            for d in s.first_day.max(from)..=s.last_day().min(to) {
                let k = (d - s.first_day) as usize;
                let (a, e) = (s.starts[k] as usize, s.starts[k + 1] as usize);
                for (l, c) in s.line[a..e].iter().zip(&s.effective[a..e]) {
                    if matching[*l as usize] {
                        let (r, m) = self.lines[*l as usize];
                        out.push((resource_keys[r as usize], meter_keys[m as usize], d, *c));
                    }
                }
            }
        }
        out
    }

    /// (subscription, service or region) → (first day of a positive usage
    /// row, the smallest subscription name among those rows), as
    /// `Store::first_usage_days` reads it through SQL.
    fn first_usage_days(&self, by_region: bool) -> FirstDays {
        let mut ids: HashMap<(u32, u32), u32> = HashMap::new();
        let mut keys: Vec<(u32, u32)> = Vec::new();
        let group: Vec<u32> = self
            .lines
            .iter()
            .map(|line| {
                let Some((r, m)) = self.usage_line(*line) else {
                    return NONE;
                };
                let subject = if by_region { r.dims[2] } else { m.dims[0] };
                if subject == NONE || r.dims[0] == NONE {
                    return NONE;
                }
                *ids.entry((r.dims[0], subject)).or_insert_with(|| {
                    keys.push((r.dims[0], subject));
                    keys.len() as u32 - 1
                })
            })
            .collect();
        let mut first = vec![(i64::MAX, NONE); keys.len()];
        for s in &self.segments {
            for d in s.first_day..=s.last_day() {
                let k = (d - s.first_day) as usize;
                let (a, e) = (s.starts[k] as usize, s.starts[k + 1] as usize);
                for (l, c) in s.line[a..e].iter().zip(&s.effective[a..e]) {
                    let g = group[*l as usize];
                    if g == NONE || *c <= 0.0 {
                        continue;
                    }
                    let f = &mut first[g as usize];
                    f.0 = f.0.min(d);
                    let r = &self.resources[self.lines[*l as usize].0 as usize];
                    f.1 = min_value(self, f.1, r.dims[5]);
                }
            }
        }
        let text = |id: u32| self.value(id).unwrap_or_default().to_string();
        keys.iter()
            .zip(first)
            .filter(|(_, (d, _))| *d != i64::MAX)
            .map(|((sub, subject), (d, name))| ((text(*sub), text(*subject)), (d, text(name))))
            .collect()
    }
}

/// What one pull wrote, as its transaction reads it back.
pub(crate) struct PullDelta {
    /// `SubAccountId` as stored.
    sub: String,
    from: i64,
    to: i64,
    /// Every `spend_resources` row of the subscription.
    resources: Vec<(i64, [Value; 7])>,
    /// Every `spend_meters` row of the organisation.
    meters: Vec<(i64, [Value; 3])>,
    /// (day, resource key, meter key, billed, effective): the period's rows.
    rows: Vec<(i64, i64, i64, f64, f64)>,
}

/// A value's id, added when new (the dictionary is copied only then).
fn intern(dict: &mut Arc<Dict>, (value, lower): &Value) -> u32 {
    match value {
        None => NONE,
        Some(v) => match dict.ids.get(v) {
            Some(id) => *id,
            None => Arc::make_mut(dict).id(Some(v.clone()), lower.clone()),
        },
    }
}

impl OrgColumns {
    /// This projection with a pull applied, standing for `rev`, as the
    /// pull's statements change the tables: its subscription's resources
    /// and the meters upserted, then the subscription's rows of the
    /// period replaced. `None` if the pull names a resource the read-back
    /// lacks (a build answers instead).
    fn patched(&self, rev: i64, delta: &PullDelta) -> Option<OrgColumns> {
        let mut next = self.clone();
        next.rev = rev;
        let mut resources_changed = false;
        for (key, values) in &delta.resources {
            let dims = values.each_ref().map(|v| intern(&mut next.dims, v));
            match next.keys.resources.get(key).copied() {
                Some(i) => {
                    let r = &next.resources[i as usize];
                    if !r.known || r.dims != dims {
                        let r = &mut Arc::make_mut(&mut next.resources)[i as usize];
                        r.known = true;
                        r.dims = dims;
                        resources_changed = true;
                    }
                }
                None => {
                    let i = next.resources.len() as u32;
                    Arc::make_mut(&mut next.resources).push(ResourceCols {
                        known: true,
                        dims,
                        tags: Vec::new(),
                    });
                    Arc::make_mut(&mut next.keys).resources.insert(*key, i);
                    resources_changed = true;
                }
            }
        }
        for (key, values) in &delta.meters {
            let dims = values.each_ref().map(|v| intern(&mut next.dims, v));
            match next.keys.meters.get(key).copied() {
                // Meters are written once (`DO NOTHING`), never changed.
                Some(i) if next.meters[i as usize].known => {}
                Some(i) => {
                    Arc::make_mut(&mut next.meters)[i as usize] = MeterCols { known: true, dims };
                }
                None => {
                    let i = next.meters.len() as u32;
                    Arc::make_mut(&mut next.meters).push(MeterCols { known: true, dims });
                    Arc::make_mut(&mut next.keys).meters.insert(*key, i);
                }
            }
        }
        if resources_changed {
            // SELECT DISTINCT BillingCurrency ... ORDER BY 1: currency
            // codes are ASCII, ordered alike by every collation.
            let codes: std::collections::BTreeSet<&str> = next
                .resources
                .iter()
                .filter(|r| r.known)
                .filter_map(|r| next.value(r.dims[6]))
                .collect();
            next.currencies = codes.into_iter().map(str::to_string).collect();
        }

        // The new rows by line.
        let mut fresh: Vec<(i64, u32, f64, f64)> = Vec::with_capacity(delta.rows.len());
        for (day, rk, mk, billed, effective) in &delta.rows {
            let r = *next.keys.resources.get(rk)?;
            let m = match next.keys.meters.get(mk) {
                Some(m) => *m,
                None => {
                    let m = next.meters.len() as u32;
                    Arc::make_mut(&mut next.meters).push(MeterCols {
                        known: false,
                        dims: [NONE; 3],
                    });
                    Arc::make_mut(&mut next.keys).meters.insert(*mk, m);
                    m
                }
            };
            let line = match next.keys.lines.get(&(r, m)) {
                Some(l) => *l,
                None => {
                    let l = next.lines.len() as u32;
                    Arc::make_mut(&mut next.lines).push((r, m));
                    Arc::make_mut(&mut next.keys).lines.insert((r, m), l);
                    l
                }
            };
            fresh.push((*day, line, *billed, *effective));
        }
        fresh.sort_unstable_by_key(|r| r.0);

        // The DELETE: rows of the period whose resource is the subscription's.
        let sub = next.dims.ids.get(&delta.sub).copied();
        let replaced = |line: u32| {
            let r = &next.resources[next.lines[line as usize].0 as usize];
            r.known && Some(r.dims[0]) == sub
        };
        let (from, to) = (delta.from, delta.to);
        let within = |a: i64, b: i64| {
            let lo = fresh.partition_point(|r| r.0 < a);
            let hi = fresh.partition_point(|r| r.0 <= b);
            &fresh[lo..hi]
        };
        let mut segments = Vec::with_capacity(next.segments.len() + 1);
        let mut covered: Vec<(i64, i64)> = Vec::new();
        for seg in &next.segments {
            let (first, last) = (seg.first_day, seg.last_day());
            if last < from || first > to {
                segments.push(seg.clone());
                continue;
            }
            covered.push((first.max(from), last.min(to)));
            let mut rows: Vec<(i64, u32, f64, f64)> = seg
                .rows()
                .filter(|(d, l, _, _)| *d < from || *d > to || !replaced(*l))
                .collect();
            rows.extend_from_slice(within(first.max(from), last.min(to)));
            segments.push(Arc::new(Segment::of(first, last, rows)));
        }
        // Days of the period no segment holds: new segments of at most
        // `SEGMENT_DAYS`, where there are rows.
        let mut day = from;
        while day <= to {
            if let Some((_, end)) = covered.iter().find(|(a, b)| *a <= day && day <= *b) {
                day = end + 1;
                continue;
            }
            let next_covered = covered
                .iter()
                .map(|(a, _)| *a)
                .filter(|a| *a > day)
                .min()
                .unwrap_or(to + 1);
            let end = (day + SEGMENT_DAYS - 1).min(to).min(next_covered - 1);
            let rows = within(day, end);
            if !rows.is_empty() {
                segments.push(Arc::new(Segment::of(day, end, rows.to_vec())));
            }
            day = end + 1;
        }
        segments.sort_by_key(|s| s.first_day);
        next.rows = segments.iter().map(|s| s.line.len() as u64).sum();
        next.segments = segments;
        Some(next)
    }
}

/// The smaller of two values by their text (SQL's MIN, NULL ignored).
fn min_value(cols: &OrgColumns, a: u32, b: u32) -> u32 {
    match (cols.value(a), cols.value(b)) {
        (None, _) => b,
        (_, None) => a,
        (Some(x), Some(y)) if y < x => b,
        _ => a,
    }
}

/// What a build found.
enum Load {
    Built(Box<OrgColumns>),
    /// More rows than the budget, at this revision.
    TooLarge(i64),
    /// A write committed while reading: what was read is not one revision's.
    Moved,
}

fn text(row: &sqlx::any::AnyRow, i: usize) -> Result<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(i)?)
}

/// A resource's key and dimensions (`ResourceCols::dims`), each with the
/// database's `lower()`.
const RESOURCE_COLUMNS: &str = "resource_key, SubAccountId, lower(SubAccountId), x_ResourceGroupName, \
     lower(x_ResourceGroupName), RegionId, lower(RegionId), ResourceType, lower(ResourceType), \
     ResourceId, lower(ResourceId), SubAccountName, SubAccountName, BillingCurrency, BillingCurrency";
/// A meter's key and dimensions (`MeterCols::dims`), each with its `lower()`.
const METER_COLUMNS: &str = "meter_key, ServiceName, lower(ServiceName), ServiceCategory, \
     lower(ServiceCategory), ChargeCategory, lower(ChargeCategory)";

/// A dimension value and its lower case, as read.
type Value = (Option<String>, Option<String>);

/// A row of `RESOURCE_COLUMNS` (N = 7) or `METER_COLUMNS` (N = 3).
fn dimension_row<const N: usize>(row: &sqlx::any::AnyRow) -> Result<(i64, [Value; N])> {
    let mut values: [Value; N] = std::array::from_fn(|_| (None, None));
    for (i, v) in values.iter_mut().enumerate() {
        *v = (text(row, 1 + 2 * i)?, text(row, 2 + 2 * i)?);
    }
    Ok((row.try_get(0)?, values))
}

impl SpendColumns {
    /// The projection at the revision before `rev`, which a pull holding
    /// the revision's lock patches: the one standing, or the one staged by
    /// the pull that moved it there (`previous`: its token is the
    /// revision's previous writer, so it committed; its task may not have
    /// kept it yet).
    fn patch_base(&self, org: OrgId, rev: i64, previous: Option<i64>) -> Option<Arc<OrgColumns>> {
        let orgs = self.lock();
        let slot = orgs.get(&org)?;
        let staged = slot
            .staged
            .as_ref()
            .filter(|(w, _)| Some(*w) == previous)
            .map(|(_, c)| c);
        slot.ready
            .iter()
            .chain(staged)
            .find(|c| c.rev == rev - 1)
            .cloned()
    }

    /// Stages a patched projection under its pull's token (unless it would
    /// pass the cap).
    fn stage(self: &Arc<Self>, org: OrgId, writer: i64, cols: OrgColumns) -> Option<Patch> {
        if self.held_by_others(org) + cols.rows > self.cap() {
            return None;
        }
        self.lock().entry(org).or_default().staged = Some((writer, Arc::new(cols)));
        Some(Patch {
            columns: self.clone(),
            org,
            writer,
            kept: false,
        })
    }
}

impl Store {
    /// In a pull's transaction, after its writes, which moved the spend
    /// revision to `rev`: the projection patched with what the pull wrote,
    /// staged, to keep once the transaction commits (`Patch::keep`); `None`
    /// when no projection stands for the revision before.
    pub(super) async fn patch_spend_columns(
        &self,
        tx: &mut crate::Tx,
        scope: &OrgScope,
        (rev, writer, previous): (i64, i64, Option<i64>),
        (sub, from, to): (&str, i64, i64),
        rows: Vec<(i64, i64, i64, f64, f64)>,
    ) -> Result<Option<Patch>> {
        let Some(base) = self.spend_columns.patch_base(scope.org(), rev, previous) else {
            return Ok(None);
        };
        let org = scope.id();
        let resources = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM spend_resources WHERE org_id = $1 AND SubAccountId = $2"
        ))
        .bind(&org)
        .bind(sub)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(dimension_row::<7>)
        .collect::<Result<Vec<_>>>()?;
        let meters = sqlx::query(&format!(
            "SELECT {METER_COLUMNS} FROM spend_meters WHERE org_id = $1"
        ))
        .bind(&org)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(dimension_row::<3>)
        .collect::<Result<Vec<_>>>()?;
        let delta = PullDelta {
            sub: sub.to_string(),
            from,
            to,
            resources,
            meters,
            rows,
        };
        let many = base.rows as usize > BLOCKING_ROWS;
        let patched = blocking_when(many, move || base.patched(rev, &delta)).await?;
        Ok(patched.and_then(|cols| self.spend_columns.stage(scope.org(), writer, cols)))
    }

    /// The same store with its spend projections bounded to `rows` rows
    /// in total (0: analyses always answer through SQL).
    pub fn with_spend_column_rows(self, rows: u64) -> Store {
        self.spend_columns.cap.store(rows, Ordering::Relaxed);
        self
    }

    /// An analysis answered through SQL, as when no projection stands for
    /// the current revision (no kept answers either): for tests and the
    /// benchmark.
    pub async fn spend_analysis_sql(
        &self,
        scope: &OrgScope,
        q: &SpendQuery,
    ) -> Result<SpendAnswer> {
        self.run_spend_analysis(scope, q).await
    }

    /// An analysis answered by the projection, built first if none stands
    /// for the current revision (no kept answers): for tests and the
    /// benchmark. Refused when the rows exceed the projections' bound.
    pub async fn spend_analysis_columns(
        &self,
        scope: &OrgScope,
        q: &SpendQuery,
    ) -> Result<SpendAnswer> {
        let (cols, _) = self.warm_spend_columns(scope).await?;
        answer(cols, q.clone()).await
    }

    /// Builds the organisation's projection now unless one stands for the
    /// current revision; answers what it holds.
    pub async fn spend_columns_warm(&self, scope: &OrgScope) -> Result<SpendColumnStats> {
        Ok(self.warm_spend_columns(scope).await?.1)
    }

    /// How many projection builds this store has run (read the rows), of
    /// any organisation.
    pub fn spend_columns_builds(&self) -> u64 {
        self.spend_columns.built.load(Ordering::Relaxed)
    }

    /// The revision the organisation's projection stands for, if it has one.
    pub fn spend_columns_revision(&self, scope: &OrgScope) -> Option<i64> {
        self.spend_columns
            .lock()
            .get(&scope.org())
            .and_then(|s| s.ready.as_ref())
            .map(|c| c.rev)
    }

    async fn warm_spend_columns(
        &self,
        scope: &OrgScope,
    ) -> Result<(Arc<OrgColumns>, SpendColumnStats)> {
        for _ in 0..ATTEMPTS {
            let rev = self.spend_revision(scope).await?.rev;
            let ready = self
                .spend_columns
                .lock()
                .get(&scope.org())
                .and_then(|s| s.ready_at(rev));
            if let Some(cols) = ready {
                let stats = cols.stats(None);
                return Ok((cols, stats));
            }
            // A revision that did not fit is not read again (the review
            // after every sync asks).
            let refused = || {
                self.spend_columns
                    .lock()
                    .get(&scope.org())
                    .is_some_and(|s| s.refused_at(rev))
            };
            let too_large = || {
                StoreError::State(match self.spend_columns.cap() {
                    0 => "the spend projection is turned off (its bound is 0 rows)".into(),
                    cap => format!(
                        "the organisation's spend rows exceed the projections' bound of {cap} rows"
                    ),
                })
            };
            if refused() || self.spend_columns.cap() == 0 {
                return Err(too_large());
            }
            let started = Instant::now();
            if let Some(cols) = self.build_spend_columns(scope).await? {
                let stats = cols.stats(Some(started.elapsed()));
                return Ok((cols, stats));
            }
            if refused() {
                return Err(too_large());
            }
        }
        Err(StoreError::State(
            "spend was written during every build of its projection".into(),
        ))
    }

    /// The analysis from the projection when it stands for `rev`; else
    /// `None` (see `spend_columns_at`).
    pub(super) async fn spend_columns_answer(
        &self,
        scope: &OrgScope,
        rev: SpendRev,
        q: &SpendQuery,
    ) -> Result<Option<SpendAnswer>> {
        match self.spend_columns_at(scope, rev) {
            Some(cols) => answer(cols, q.clone()).await.map(Some),
            None => Ok(None),
        }
    }

    /// One subscription × service's usage series from the projection when
    /// it stands for `rev`; else `None` (see `spend_columns_at`).
    pub(crate) async fn spend_columns_usage_series(
        &self,
        scope: &OrgScope,
        rev: SpendRev,
        (sub, service): (&str, &str),
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Option<Option<UsageSeries>>> {
        let Some(cols) = self.spend_columns_at(scope, rev) else {
            return Ok(None);
        };
        let many = cols.rows as usize > BLOCKING_ROWS;
        let (sub, service) = (sub.to_string(), service.to_string());
        let run = move || cols.usage_series_of(&sub, &service, day_number(from), day_number(to));
        blocking_when(many, run).await.map(Some)
    }

    /// A subscription's usage rows of a service (or a region, `by_region`)
    /// from the projection when it stands for `rev`; else `None` (see
    /// `spend_columns_at`).
    pub(crate) async fn spend_columns_contributor_rows(
        &self,
        scope: &OrgScope,
        rev: SpendRev,
        (sub, by_region, subject): (&str, bool, &str),
        from: i64,
        to: i64,
    ) -> Result<Option<Vec<(i64, i64, i64, f64)>>> {
        let Some(cols) = self.spend_columns_at(scope, rev) else {
            return Ok(None);
        };
        let many = cols.rows as usize > BLOCKING_ROWS;
        let (sub, subject) = (sub.to_string(), subject.to_string());
        let run = move || cols.contributor_rows(&sub, by_region, &subject, from, to);
        blocking_when(many, run).await.map(Some)
    }

    /// Every subscription × service's usage series from the projection
    /// when it stands for `rev`; else `None` (see `spend_columns_at`).
    pub(crate) async fn spend_columns_usage_all(
        &self,
        scope: &OrgScope,
        rev: SpendRev,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Option<Vec<UsageSeries>>> {
        let Some(cols) = self.spend_columns_at(scope, rev) else {
            return Ok(None);
        };
        let many = cols.rows as usize > BLOCKING_ROWS;
        let run = move || cols.usage_series_all(day_number(from), day_number(to));
        blocking_when(many, run).await.map(Some)
    }

    /// The first usage days by service and by region from the projection
    /// when it stands for `rev`; else `None` (see `spend_columns_at`).
    pub(crate) async fn spend_columns_first_usage(
        &self,
        scope: &OrgScope,
        rev: SpendRev,
    ) -> Result<Option<(FirstDays, FirstDays)>> {
        let Some(cols) = self.spend_columns_at(scope, rev) else {
            return Ok(None);
        };
        let many = cols.rows as usize > BLOCKING_ROWS;
        let run = move || (cols.first_usage_days(false), cols.first_usage_days(true));
        blocking_when(many, run).await.map(Some)
    }

    /// The projection when it stands for `rev` (a staged patch for `rev`
    /// does: the reader read `rev`, so its write has committed); else
    /// `None`, and a build starts in the background unless one runs (or
    /// this revision did not fit).
    fn spend_columns_at(&self, scope: &OrgScope, rev: SpendRev) -> Option<Arc<OrgColumns>> {
        let org = scope.org();
        let ready = {
            let mut orgs = self.spend_columns.lock();
            let slot = orgs.entry(org).or_default();
            let committed =
                |(w, c): &mut (i64, Arc<OrgColumns>)| c.rev == rev.rev && Some(*w) == rev.writer;
            if let Some((_, staged)) = slot.staged.take_if(committed) {
                slot.ready = Some(staged);
            }
            match &slot.ready {
                Some(c) if c.rev == rev.rev => Some(c.clone()),
                // The caller read the revision before the projection's
                // build did: SQL answers it, nothing to rebuild.
                Some(c) if c.rev > rev.rev => return None,
                _ => {
                    let start = !slot.building
                        && !slot.refused_at(rev.rev)
                        && self.spend_columns.cap() > 0
                        && tokio::runtime::Handle::try_current().is_ok();
                    if start {
                        slot.building = true;
                        // Stale: it answers nothing again; free it for the new one.
                        slot.ready = None;
                    } else {
                        return None;
                    }
                    None
                }
            }
        };
        if ready.is_some() {
            return ready;
        }
        let store = self.clone();
        let scope = scope.clone();
        tokio::spawn(async move {
            let _mark = Building(store.spend_columns.clone(), scope.org());
            let started = Instant::now();
            match store.build_spend_columns(&scope).await {
                Ok(Some(c)) => tracing::info!(
                    org = %scope.org(),
                    rev = c.rev,
                    rows = c.rows,
                    ms = started.elapsed().as_millis() as u64,
                    "spend projection built"
                ),
                Ok(None) => {}
                Err(e) => tracing::warn!(org = %scope.org(), "spend projection not built: {e}"),
            }
        });
        None
    }

    /// Reads and keeps the organisation's projection; `None` when it did
    /// not fit or a write moved the revision meanwhile.
    async fn build_spend_columns(&self, scope: &OrgScope) -> Result<Option<Arc<OrgColumns>>> {
        let columns = &self.spend_columns;
        // A review asking while a background build runs waits for it and
        // takes what it built, instead of reading every row a second time
        // beside it (on `large`, 663 MiB and 200 s each).
        let _turn = columns.builds.take(&scope.org()).await;
        // Read after the turn: what the build before this one kept or
        // refused is for the revision it read.
        let rev = self.spend_revision(scope).await?;
        if let Some(slot) = columns.lock().get(&scope.org()) {
            if let Some(ready) = slot.ready_at(rev.rev) {
                return Ok(Some(ready));
            }
            if slot.refused_at(rev.rev) {
                return Ok(None);
            }
        }
        columns.built.fetch_add(1, Ordering::Relaxed);
        let budget = columns
            .cap()
            .saturating_sub(columns.held_by_others(scope.org()));
        match self.load_spend_columns(scope, rev, budget).await? {
            Load::Built(cols) => Ok(columns.install(scope.org(), *cols)),
            Load::TooLarge(rev) => {
                columns.lock().entry(scope.org()).or_default().refused = Some(rev);
                Ok(None)
            }
            Load::Moved => Ok(None),
        }
    }

    /// Reads the organisation's projection as of `rev`: `Moved` if a write
    /// moved the revision while it read.
    async fn load_spend_columns(
        &self,
        scope: &OrgScope,
        rev: SpendRev,
        budget: u64,
    ) -> Result<Load> {
        let org = scope.id();
        let aliases = self.spend_tag_aliases(scope).await?;
        let currencies = sqlx::query(
            "SELECT DISTINCT BillingCurrency FROM spend_resources WHERE org_id = $1 ORDER BY 1",
        )
        .bind(&org)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>(0))
        .collect::<std::result::Result<Vec<_>, _>>()?;

        let mut dims = Dict::default();
        let mut resources: Vec<ResourceCols> = Vec::new();
        let mut resource_ids: HashMap<i64, u32> = HashMap::new();
        for r in sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM spend_resources WHERE org_id = $1"
        ))
        .bind(&org)
        .fetch_all(&self.pool)
        .await?
        {
            let (key, values) = dimension_row::<7>(&r)?;
            resource_ids.insert(key, resources.len() as u32);
            resources.push(ResourceCols {
                known: true,
                dims: values.map(|(v, l)| dims.id(v, l)),
                tags: Vec::new(),
            });
        }
        let mut meters: Vec<MeterCols> = Vec::new();
        let mut meter_ids: HashMap<i64, u32> = HashMap::new();
        for r in sqlx::query(&format!(
            "SELECT {METER_COLUMNS} FROM spend_meters WHERE org_id = $1"
        ))
        .bind(&org)
        .fetch_all(&self.pool)
        .await?
        {
            let (key, values) = dimension_row::<3>(&r)?;
            meter_ids.insert(key, meters.len() as u32);
            meters.push(MeterCols {
                known: true,
                dims: values.map(|(v, l)| dims.id(v, l)),
            });
        }
        fn resource_of(
            key: i64,
            ids: &mut HashMap<i64, u32>,
            resources: &mut Vec<ResourceCols>,
        ) -> u32 {
            *ids.entry(key).or_insert_with(|| {
                resources.push(ResourceCols {
                    known: false,
                    dims: [NONE; 7],
                    tags: Vec::new(),
                });
                resources.len() as u32 - 1
            })
        }
        // Tag values in the database's order, so that the smallest id is
        // what MIN(tag_value) answers.
        let mut tag_keys: HashMap<String, u32> = HashMap::new();
        let mut tag_values = Dict::default();
        for r in sqlx::query(
            "SELECT resource_key, key_lower, tag_value, lower(tag_value) FROM spend_resource_tags \
             WHERE org_id = $1 ORDER BY tag_value",
        )
        .bind(&org)
        .fetch_all(&self.pool)
        .await?
        {
            let ri = resource_of(r.try_get(0)?, &mut resource_ids, &mut resources);
            let key: String = r.try_get(1)?;
            let next = tag_keys.len() as u32;
            let k = *tag_keys.entry(key).or_insert(next);
            let v = tag_values.id(text(&r, 2)?, text(&r, 3)?);
            resources[ri as usize].tags.push((k, v));
        }
        for r in &mut resources {
            r.tags.shrink_to_fit();
        }

        let span = sqlx::query("SELECT MIN(day), MAX(day) FROM spend_costs WHERE org_id = $1")
            .bind(&org)
            .fetch_one(&self.pool)
            .await?;
        let (first, last): (Option<i64>, Option<i64>) = (span.try_get(0)?, span.try_get(1)?);
        let mut lines: Vec<(u32, u32)> = Vec::new();
        let mut line_ids: HashMap<(u32, u32), u32> = HashMap::new();
        let mut segments = Vec::new();
        let mut rows = 0u64;
        if let (Some(first), Some(last)) = (first, last) {
            let mut start = first;
            while start <= last {
                let end = (start + SEGMENT_DAYS - 1).min(last);
                let fetched = sqlx::query(
                    "SELECT day, resource_key, meter_key, BilledCost, EffectiveCost FROM spend_costs \
                     WHERE org_id = $1 AND day >= $2 AND day <= $3",
                )
                .bind(&org)
                .bind(start)
                .bind(end)
                .fetch_all(&self.pool)
                .await?;
                rows += fetched.len() as u64;
                if rows > budget {
                    return Ok(Load::TooLarge(rev.rev));
                }
                let mut seg: Vec<(i64, u32, f64, f64)> = Vec::with_capacity(fetched.len());
                for r in &fetched {
                    let ri = resource_of(r.try_get(1)?, &mut resource_ids, &mut resources);
                    let mk: i64 = r.try_get(2)?;
                    let mi = *meter_ids.entry(mk).or_insert_with(|| {
                        meters.push(MeterCols {
                            known: false,
                            dims: [NONE; 3],
                        });
                        meters.len() as u32 - 1
                    });
                    let li = *line_ids.entry((ri, mi)).or_insert_with(|| {
                        lines.push((ri, mi));
                        lines.len() as u32 - 1
                    });
                    seg.push((r.try_get(0)?, li, r.try_get(3)?, r.try_get(4)?));
                }
                drop(fetched);
                segments.push(Arc::new(Segment::of(start, end, seg)));
                start = end + 1;
            }
        }
        if self.spend_revision(scope).await? != rev {
            return Ok(Load::Moved);
        }
        lines.shrink_to_fit();
        Ok(Load::Built(Box::new(OrgColumns {
            rev: rev.rev,
            rows,
            currencies,
            aliases,
            dims: Arc::new(dims),
            tag_keys: Arc::new(tag_keys),
            tag_values: Arc::new(tag_values),
            resources: Arc::new(resources),
            meters: Arc::new(meters),
            lines: Arc::new(lines),
            keys: Arc::new(Keys {
                resources: resource_ids,
                meters: meter_ids,
                lines: line_ids,
            }),
            segments,
        })))
    }
}

/// Answers from a projection, on a blocking thread when the period's
/// rows are many (the scan is CPU work that would hold a runtime thread).
async fn answer(cols: Arc<OrgColumns>, q: SpendQuery) -> Result<SpendAnswer> {
    let many = cols.rows_in(day_number(q.from), day_number(q.to)) > BLOCKING_ROWS;
    blocking_when(many, move || cols.answer(&q)).await
}

/// `work` here, or on a blocking thread when it scans many rows (CPU work
/// that would hold a runtime thread).
async fn blocking_when<T: Send + 'static>(
    many: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    if !many {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Corrupt(format!("a spend analysis stopped: {e}")))
}
