//! Tag coverage: an organisation's required tag keys, how much of its
//! usage cost (and how many of its resources with cost) carry them, the
//! untagged spend ranked by cost with a suggested value per missing key,
//! and the tags of resource groups and subscriptions those suggestions
//! come from.
//!
//! Coverage reads the spend tables: a resource's tags are those copied onto
//! its cost rows at the last spend collection (`spend_resource_tags`), so
//! coverage and the spend analyses agree, and both follow the sync level.
//! Keys match through the organisation's aliases (`spend_tag_aliases`).
//! Figures are computed in SQL, the same text on both backends.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::NaiveDate;
use cloudkeep_domain::SubscriptionId;
use cloudkeep_domain::spend::{SpendDimension, day_number, from_day_number};
use serde_json::json;
use sqlx::Row;
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::connections::SubscriptionRecord;
use crate::inventory::Tags;
use crate::sql::{Arg, Sql, bulk_insert};
use crate::{Backend, OrgScope, Result, Store, StoreError, Tx, parse, within};

/// The most required keys an organisation may list: each is a column of
/// every coverage query.
pub const MAX_REQUIRED_KEYS: usize = 50;

/// The dimensions coverage can be broken down by.
pub const COVERAGE_DIMENSIONS: [SpendDimension; 3] = [
    SpendDimension::Subscription,
    SpendDimension::ResourceGroup,
    SpendDimension::Service,
];

/// Which usage cost a coverage question is about (values compare without
/// case; `None` is every value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CoverageScope {
    /// The Azure subscription id.
    pub subscription: Option<String>,
    pub resource_group: Option<String>,
    /// FOCUS `ServiceName`.
    pub service: Option<String>,
}

/// A coverage question.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageQuery {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub scope: CoverageScope,
    /// The required keys (or aliases of them) to answer for; empty: every
    /// required key. "Overall" means all of these present.
    pub keys: Vec<String>,
    /// A breakdown by one of `COVERAGE_DIMENSIONS`.
    pub by: Option<SpendDimension>,
}

/// What carries a key (or all of them): cost and resources.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Covered {
    pub cost: f64,
    pub resources: u64,
}

/// Coverage of one set of usage cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CoverageFigures {
    /// All usage cost in scope (the cost-weighted denominator).
    pub cost: f64,
    /// Resources with usage cost in scope (the count denominator).
    pub resources: u64,
    /// Cost and resources carrying every key asked.
    pub all: Covered,
    /// Per key, in `TagCoverageReport::keys` order.
    pub keys: Vec<Covered>,
}

/// One value of the breakdown's dimension (`None`: cost without one).
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageGroup {
    pub key: Option<String>,
    pub figures: CoverageFigures,
}

/// One day's cost-weighted coverage.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageDay {
    pub day: NaiveDate,
    pub cost: f64,
    /// Cost carrying every key asked.
    pub all: f64,
    /// Cost carrying each key, in `TagCoverageReport::keys` order.
    pub keys: Vec<f64>,
}

/// A coverage answer.
#[derive(Debug, Clone, PartialEq)]
pub struct TagCoverageReport {
    /// The required keys answered for, in the organisation's order.
    pub keys: Vec<String>,
    pub currencies: Vec<String>,
    pub total: CoverageFigures,
    /// The breakdown, largest cost first; empty without one.
    pub groups: Vec<CoverageGroup>,
    /// Every day of the period with usage cost.
    pub daily: Vec<CoverageDay>,
}

/// Which untagged resources to rank.
#[derive(Debug, Clone, PartialEq)]
pub struct UntaggedQuery {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub scope: CoverageScope,
    /// Resources missing any of these (required keys or aliases); empty:
    /// any required key.
    pub keys: Vec<String>,
    /// Only these resources (ARM ids, any case); empty: any.
    pub resources: Vec<String>,
    /// The most resources answered.
    pub top: usize,
}

/// Where a suggested value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuggestionSource {
    /// The resource group carries the key.
    ResourceGroup,
    /// The subscription carries the key.
    Subscription,
    /// More than half of the resource's siblings in its resource group
    /// that carry the key have this value.
    Siblings,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion {
    pub value: String,
    pub source: SuggestionSource,
}

/// A required key a resource lacks, with a value to give it if one is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingTag {
    pub key: String,
    pub suggestion: Option<Suggestion>,
}

/// A resource with usage cost that lacks required keys.
#[derive(Debug, Clone, PartialEq)]
pub struct UntaggedResource {
    /// The ARM id, lower case (as cost rows carry it).
    pub arm_id: String,
    pub name: Option<String>,
    /// cloudkeep's resource, when the inventory holds it live.
    pub resource: Option<Uuid>,
    /// cloudkeep's subscription, when live.
    pub subscription: Option<SubscriptionId>,
    /// The Azure subscription id.
    pub subscription_id: String,
    pub subscription_name: String,
    pub resource_group: Option<String>,
    /// Usage cost over the period.
    pub cost: f64,
    pub missing: Vec<MissingTag>,
}

/// Untagged spend, ranked by cost.
#[derive(Debug, Clone, PartialEq)]
pub struct UntaggedList {
    /// The required keys looked for.
    pub keys: Vec<String>,
    pub currencies: Vec<String>,
    /// Every matching resource, beyond the top N too.
    pub resources: u64,
    pub cost: f64,
    /// The top N, largest cost first.
    pub items: Vec<UntaggedResource>,
}

/// The tags of a subscription and of its resource groups, as Azure has them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScopeTags {
    pub subscription: Tags,
    /// Resource group name → its tags.
    pub resource_groups: BTreeMap<String, Tags>,
}

fn f(row: &sqlx::any::AnyRow, i: usize) -> Result<f64> {
    Ok(row.try_get::<Option<f64>, _>(i)?.unwrap_or(0.0))
}

fn n(row: &sqlx::any::AnyRow, i: usize) -> Result<u64> {
    Ok(row.try_get::<Option<i64>, _>(i)?.unwrap_or(0).max(0) as u64)
}

/// The tag keys (lower case) that count as `key`: the key, what it is an
/// alias of, and every alias of that, the canonical key first.
fn matching_keys(aliases: &BTreeMap<String, String>, key: &str) -> Vec<String> {
    let canonical = aliases.get(key).cloned().unwrap_or_else(|| key.to_string());
    let mut out = vec![canonical.clone()];
    out.extend(
        aliases
            .iter()
            .filter(|(a, k)| **k == canonical && **a != canonical)
            .map(|(a, _)| a.clone()),
    );
    out
}

/// The required keys a question asks for: every one when it names none; a
/// key named must be required or an alias of a required key (otherwise
/// `Invalid`, naming what is allowed).
pub fn resolve_required_keys(
    required: &[String],
    aliases: &BTreeMap<String, String>,
    asked: &[String],
) -> Result<Vec<String>> {
    if asked.is_empty() {
        return Ok(required.to_vec());
    }
    let mut wanted = BTreeSet::new();
    for raw in asked {
        let k = raw.trim().to_lowercase();
        let found = if required.contains(&k) {
            Some(k.clone())
        } else {
            aliases.get(&k).filter(|c| required.contains(c)).cloned()
        };
        match found {
            Some(k) => {
                wanted.insert(k);
            }
            None => {
                let allowed = if required.is_empty() {
                    "none are set (PUT /api/v1/settings/required-tags)".to_string()
                } else {
                    let mut names = required.join(", ");
                    let alias_names: Vec<&str> = aliases
                        .iter()
                        .filter(|(_, c)| required.contains(c))
                        .map(|(a, _)| a.as_str())
                        .collect();
                    if !alias_names.is_empty() {
                        names.push_str(&format!(" (or their aliases: {})", alias_names.join(", ")));
                    }
                    names
                };
                return Err(StoreError::Invalid(format!(
                    "'{}' is not a required tag key or an alias of one; allowed: {allowed}",
                    raw.trim()
                )));
            }
        }
    }
    // In the organisation's order.
    Ok(required
        .iter()
        .filter(|k| wanted.contains(*k))
        .cloned()
        .collect())
}

fn dimension_expr(d: SpendDimension) -> Result<&'static str> {
    match d {
        SpendDimension::Subscription => Ok("r.SubAccountId"),
        SpendDimension::ResourceGroup => Ok("r.x_ResourceGroupName"),
        SpendDimension::Service => Ok("m.ServiceName"),
        other => Err(StoreError::Invalid(format!(
            "coverage cannot be broken down by '{other}'; allowed: subscription, resource_group, service"
        ))),
    }
}

/// The parts every coverage query shares: usage cost of the org in the
/// period and scope, each row with its resource and meter, and per
/// resource a 0/1 flag for each key set (`f.h0`, `f.h1`, ...).
struct Base {
    sql: Sql,
    /// `FROM ... WHERE ...` (no GROUP BY).
    from_where: String,
    /// SQL conditions: the resource carries key set i.
    has: Vec<String>,
    /// The resource carries every key set.
    all: String,
}

fn base(
    org: &str,
    from: NaiveDate,
    to: NaiveDate,
    scope: &CoverageScope,
    key_sets: &[Vec<String>],
) -> Base {
    let mut sql = Sql::new("");
    let o = sql.arg(org);
    let mut joins = String::from(
        " FROM spend_costs c \
         JOIN spend_meters m ON m.org_id = c.org_id AND m.meter_key = c.meter_key \
         JOIN spend_resources r ON r.org_id = c.org_id AND r.resource_key = c.resource_key",
    );
    let mut has = Vec::new();
    if !key_sets.is_empty() {
        let mut cols = Vec::new();
        let mut every = Vec::new();
        for (i, keys) in key_sets.iter().enumerate() {
            let ps: Vec<String> = keys.iter().map(|k| sql.arg(k.clone())).collect();
            cols.push(format!(
                "MAX(CASE WHEN key_lower IN ({}) THEN 1 ELSE 0 END) AS h{i}",
                ps.join(", ")
            ));
            every.extend(ps);
            has.push(format!("COALESCE(f.h{i}, 0) = 1"));
        }
        // One pass over the tags of the keys asked, by the key index.
        joins.push_str(&format!(
            " LEFT JOIN (SELECT resource_key, {} FROM spend_resource_tags WHERE org_id = {o} \
             AND key_lower IN ({}) GROUP BY resource_key) f ON f.resource_key = c.resource_key",
            cols.join(", "),
            every.join(", ")
        ));
    }
    let all = if has.is_empty() {
        // No key asked: every resource carries all of none.
        "1 = 1".to_string()
    } else {
        has.join(" AND ")
    };
    let (pf, pt) = (sql.arg_int(day_number(from)), sql.arg_int(day_number(to)));
    let usage = sql.arg(crate::spend::USAGE);
    let mut where_ = format!(
        " WHERE c.org_id = {o} AND c.day >= {pf} AND c.day <= {pt} AND m.ChargeCategory = {usage}"
    );
    for (expr, value) in [
        ("r.SubAccountId", &scope.subscription),
        ("r.x_ResourceGroupName", &scope.resource_group),
        ("m.ServiceName", &scope.service),
    ] {
        if let Some(v) = value {
            let p = sql.arg(v.trim().to_lowercase());
            where_.push_str(&format!(" AND lower({expr}) = {p}"));
        }
    }
    Base {
        sql,
        from_where: format!("{joins}{where_}"),
        has,
        all,
    }
}

/// The figures' columns: cost, cost with all, cost per key, resources,
/// resources with all, resources per key.
fn figure_columns(b: &Base) -> String {
    let cost = |cond: &str| format!("SUM(CASE WHEN {cond} THEN c.BilledCost ELSE 0.0 END)");
    let count = |cond: &str| {
        format!(
            "COUNT(DISTINCT CASE WHEN r.ResourceId IS NOT NULL AND {cond} THEN c.resource_key END)"
        )
    };
    let mut cols = vec!["SUM(c.BilledCost)".to_string(), cost(&b.all)];
    cols.extend(b.has.iter().map(|h| cost(h)));
    cols.push(count("1 = 1"));
    cols.push(count(&b.all));
    cols.extend(b.has.iter().map(|h| count(h)));
    cols.join(", ")
}

fn figures(row: &sqlx::any::AnyRow, at: usize, keys: usize) -> Result<CoverageFigures> {
    let costs = at;
    let counts = at + 2 + keys;
    Ok(CoverageFigures {
        cost: f(row, costs)?,
        resources: n(row, counts)?,
        all: Covered {
            cost: f(row, costs + 1)?,
            resources: n(row, counts + 1)?,
        },
        keys: (0..keys)
            .map(|i| {
                Ok(Covered {
                    cost: f(row, costs + 2 + i)?,
                    resources: n(row, counts + 2 + i)?,
                })
            })
            .collect::<Result<_>>()?,
    })
}

fn check_period(from: NaiveDate, to: NaiveDate) -> Result<()> {
    cloudkeep_domain::spend::check_period(from, to).map_err(|e| StoreError::Invalid(e.to_string()))
}

impl Store {
    /// The organisation's required tag keys, in its order.
    pub async fn required_tag_keys(&self, scope: &OrgScope) -> Result<Vec<String>> {
        sqlx::query(
            "SELECT key_lower FROM required_tag_keys WHERE org_id = $1 ORDER BY key_order, key_lower",
        )
        .bind(scope.id())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok(r.try_get(0)?))
        .collect()
    }

    /// Replaces the organisation's required tag keys (lower-cased, 1 to
    /// 512 characters, at most 50, none twice), audited.
    pub async fn set_required_tag_keys(
        &self,
        scope: &OrgScope,
        keys: &[String],
        actor: &str,
    ) -> Result<Vec<String>> {
        if keys.len() > MAX_REQUIRED_KEYS {
            return Err(StoreError::Invalid(format!(
                "at most {MAX_REQUIRED_KEYS} required tag keys, not {}",
                keys.len()
            )));
        }
        let mut clean: Vec<String> = Vec::with_capacity(keys.len());
        for raw in keys {
            let k = raw.trim().to_lowercase();
            if k.is_empty() || k.chars().count() > 512 {
                return Err(StoreError::Invalid(format!(
                    "a required tag key is 1 to 512 characters, not '{}'",
                    raw.trim()
                )));
            }
            if clean.contains(&k) {
                return Err(StoreError::Invalid(format!(
                    "'{k}' is listed twice (tag keys compare without case); list each key once"
                )));
            }
            clean.push(k);
        }
        let before = self.required_tag_keys(scope).await?;
        let entry = AuditEntry::new(
            actor,
            "required_tags.changed",
            "required_tags",
            json!({"keys": {"from": before, "to": clean}}),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            sqlx::query("DELETE FROM required_tag_keys WHERE org_id = $1")
                .bind(scope.id())
                .execute(&mut **tx)
                .await?;
            let rows: Vec<Vec<Arg>> = clean
                .iter()
                .enumerate()
                .map(|(i, k)| vec![scope.id().into(), k.clone().into(), (i as i64).into()])
                .collect();
            bulk_insert(
                &mut tx,
                self.backend,
                "required_tag_keys",
                &["org_id", "key_lower", "key_order"],
                rows,
            )
            .await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        Ok(clean)
    }

    /// The stored tags of a subscription and its resource groups (none
    /// while its level does not read tags). Group names are lower case.
    pub async fn scope_tags(&self, scope: &OrgScope, sub: SubscriptionId) -> Result<ScopeTags> {
        let rows = sqlx::query(
            "SELECT st.resource_group, st.tag_key, st.tag_value FROM scope_tags st \
             JOIN subscriptions s ON s.org_id = st.org_id AND s.subscription_id = st.subscription_id \
             WHERE st.org_id = $1 AND st.subscription_id = $2 AND s.sync_level IN ('read_tags_only', 'read_write_tags') \
             ORDER BY st.resource_group, st.key_lower",
        )
        .bind(scope.id())
        .bind(sub.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut out = ScopeTags::default();
        for r in &rows {
            let group: String = r.try_get(0)?;
            let (k, v): (String, String) = (r.try_get(1)?, r.try_get(2)?);
            if group.is_empty() {
                out.subscription.insert(k, v);
            } else {
                out.resource_groups.entry(group).or_default().insert(k, v);
            }
        }
        Ok(out)
    }

    /// Coverage of the required keys over a period: cost-weighted (usage
    /// cost on resources carrying a key ÷ all usage cost in scope) and by
    /// resource count (resources with usage cost), overall (every key
    /// asked) and per key, broken down by one dimension when asked, and
    /// day by day (cost-weighted).
    pub async fn required_tag_coverage(
        &self,
        scope: &OrgScope,
        q: &CoverageQuery,
    ) -> Result<TagCoverageReport> {
        check_period(q.from, q.to)?;
        let group = q.by.map(dimension_expr).transpose()?;
        let required = self.required_tag_keys(scope).await?;
        let aliases = self.spend_tag_aliases(scope).await?;
        let keys = resolve_required_keys(&required, &aliases, &q.keys)?;
        let key_sets: Vec<Vec<String>> = keys.iter().map(|k| matching_keys(&aliases, k)).collect();
        let org = scope.id();

        let total = {
            let mut b = base(&org, q.from, q.to, &q.scope, &key_sets);
            let text = format!("SELECT {}{}", figure_columns(&b), b.from_where);
            b.sql.push(&text);
            let rows = b.sql.fetch_all(&self.pool).await?;
            match rows.first() {
                Some(r) => figures(r, 0, keys.len())?,
                None => CoverageFigures {
                    keys: vec![Covered::default(); keys.len()],
                    ..Default::default()
                },
            }
        };

        let mut groups = Vec::new();
        if let Some(expr) = group {
            let mut b = base(&org, q.from, q.to, &q.scope, &key_sets);
            let text = format!(
                "SELECT {expr} AS g, {}{} GROUP BY {expr}",
                figure_columns(&b),
                b.from_where
            );
            b.sql.push(&text);
            for r in b.sql.fetch_all(&self.pool).await? {
                groups.push(CoverageGroup {
                    key: r.try_get::<Option<String>, _>(0)?,
                    figures: figures(&r, 1, keys.len())?,
                });
            }
            groups.sort_by(|a, b| {
                b.figures
                    .cost
                    .total_cmp(&a.figures.cost)
                    .then_with(|| a.key.cmp(&b.key))
            });
        }

        let mut daily = Vec::new();
        {
            let mut b = base(&org, q.from, q.to, &q.scope, &key_sets);
            let mut cols = vec![
                "SUM(c.BilledCost)".to_string(),
                format!("SUM(CASE WHEN {} THEN c.BilledCost ELSE 0.0 END)", b.all),
            ];
            cols.extend(
                b.has
                    .iter()
                    .map(|h| format!("SUM(CASE WHEN {h} THEN c.BilledCost ELSE 0.0 END)")),
            );
            let text = format!(
                "SELECT c.day, {}{} GROUP BY c.day ORDER BY c.day",
                cols.join(", "),
                b.from_where
            );
            b.sql.push(&text);
            for r in b.sql.fetch_all(&self.pool).await? {
                daily.push(CoverageDay {
                    day: from_day_number(r.try_get(0)?),
                    cost: f(&r, 1)?,
                    all: f(&r, 2)?,
                    keys: (0..keys.len())
                        .map(|i| f(&r, 3 + i))
                        .collect::<Result<_>>()?,
                });
            }
        }

        Ok(TagCoverageReport {
            keys,
            currencies: self.spend_currencies(scope).await?,
            total,
            groups,
            daily,
        })
    }

    async fn spend_currencies(&self, scope: &OrgScope) -> Result<Vec<String>> {
        sqlx::query(
            "SELECT DISTINCT BillingCurrency FROM spend_resources WHERE org_id = $1 ORDER BY 1",
        )
        .bind(scope.id())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok(r.try_get::<String, _>(0)?))
        .collect()
    }

    /// Resources with usage cost over a period that lack required keys,
    /// largest cost first, each missing key with a suggested value: the
    /// resource group's tag, else the subscription's, else the value a
    /// strict majority of its siblings (in its resource group) carrying
    /// the key have, else none.
    pub async fn untagged_spend(
        &self,
        scope: &OrgScope,
        q: &UntaggedQuery,
    ) -> Result<UntaggedList> {
        check_period(q.from, q.to)?;
        let required = self.required_tag_keys(scope).await?;
        let aliases = self.spend_tag_aliases(scope).await?;
        let keys = resolve_required_keys(&required, &aliases, &q.keys)?;
        let currencies = self.spend_currencies(scope).await?;
        if keys.is_empty() {
            // Nothing is required: nothing is missing.
            return Ok(UntaggedList {
                keys,
                currencies,
                resources: 0,
                cost: 0.0,
                items: Vec::new(),
            });
        }
        let key_sets: Vec<Vec<String>> = keys.iter().map(|k| matching_keys(&aliases, k)).collect();
        let org = scope.id();
        // One row per resource lacking a key: its figures and flags.
        let build = |totals: bool| {
            let mut b = base(&org, q.from, q.to, &q.scope, &key_sets);
            let mut conds = format!(" AND r.ResourceId IS NOT NULL AND NOT ({})", b.all);
            if !q.resources.is_empty() {
                let ps: Vec<String> = q
                    .resources
                    .iter()
                    .map(|id| b.sql.arg(id.trim().to_ascii_lowercase()))
                    .collect();
                conds.push_str(&format!(" AND r.ResourceId IN ({})", ps.join(", ")));
            }
            let flags: Vec<String> = (0..key_sets.len())
                .map(|i| format!("MAX(COALESCE(f.h{i}, 0)) AS h{i}"))
                .collect();
            let inner = format!(
                "SELECT r.ResourceId AS rid, MAX(r.ResourceName) AS name, MAX(r.SubAccountId) AS sub, \
                 MAX(r.SubAccountName) AS sub_name, MAX(r.x_ResourceGroupName) AS rg, SUM(c.BilledCost) AS cost, {}{}{} \
                 GROUP BY r.ResourceId",
                flags.join(", "),
                b.from_where,
                conds
            );
            let text = if totals {
                format!("SELECT COUNT(*), SUM(x.cost) FROM ({inner}) x")
            } else {
                let top = b.sql.arg_int(q.top.clamp(1, 10_000) as i64);
                format!("{inner} ORDER BY cost DESC, rid LIMIT {top}")
            };
            b.sql.push(&text);
            b.sql
        };
        let totals = build(true).fetch_all(&self.pool).await?;
        let (resources, cost) = match totals.first() {
            Some(r) => (n(r, 0)?, f(r, 1)?),
            None => (0, 0.0),
        };
        let rows = build(false).fetch_all(&self.pool).await?;
        let subs = self.subscriptions(scope).await?;
        let live_sub = |azure: &str| {
            subs.iter()
                .find(|s| s.is_live() && s.azure_id.eq_ignore_ascii_case(azure))
        };
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let arm_id: String = r.try_get(0)?;
            let sub_azure: String = r.try_get(2)?;
            let missing = (0..keys.len())
                .filter_map(|i| match n(r, 6 + i) {
                    Ok(1) => None,
                    Ok(_) => Some(Ok(MissingTag {
                        key: keys[i].clone(),
                        suggestion: None,
                    })),
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<_>>>()?;
            items.push(UntaggedResource {
                arm_id,
                name: r.try_get(1)?,
                resource: None,
                subscription: live_sub(&sub_azure).map(|s| s.id),
                subscription_name: r.try_get(3)?,
                subscription_id: sub_azure,
                resource_group: r.try_get::<Option<String>, _>(4)?,
                cost: f(r, 5)?,
                missing,
            });
        }
        self.resolve_inventory(scope, &mut items).await?;
        self.suggest(scope, &aliases, &mut items).await?;
        Ok(UntaggedList {
            keys,
            currencies,
            resources,
            cost,
            items,
        })
    }

    /// Each item's live inventory resource, where there is one.
    async fn resolve_inventory(
        &self,
        scope: &OrgScope,
        items: &mut [UntaggedResource],
    ) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut sql = Sql::new(
            "SELECT r.resource_id, r.subscription_id, r.azure_id FROM resources r \
             JOIN subscriptions s ON s.org_id = r.org_id AND s.subscription_id = r.subscription_id \
             AND s.detached_at IS NULL WHERE r.deleted_at IS NULL AND r.org_id = ",
        );
        let o = sql.arg(scope.id());
        sql.push(&o);
        let ps: Vec<String> = items.iter().map(|i| sql.arg(i.arm_id.clone())).collect();
        sql.push(&format!(" AND r.azure_id IN ({})", ps.join(", ")));
        let mut found: HashMap<String, (Uuid, SubscriptionId)> = HashMap::new();
        for r in sql.fetch_all(&self.pool).await? {
            found.insert(
                r.try_get("azure_id")?,
                (parse(&r, "resource_id")?, parse(&r, "subscription_id")?),
            );
        }
        for item in items.iter_mut() {
            if let Some((id, sub)) = found.get(&item.arm_id) {
                item.resource = Some(*id);
                item.subscription = Some(*sub);
            }
        }
        Ok(())
    }

    /// Fills each missing key's suggestion: resource group, subscription,
    /// then siblings' strict majority.
    async fn suggest(
        &self,
        scope: &OrgScope,
        aliases: &BTreeMap<String, String>,
        items: &mut [UntaggedResource],
    ) -> Result<()> {
        let subs: BTreeSet<String> = items
            .iter()
            .filter_map(|i| i.subscription.map(|s| s.to_string()))
            .collect();
        if subs.is_empty() {
            return Ok(());
        }
        let groups: BTreeSet<String> = items
            .iter()
            .filter_map(|i| i.resource_group.as_ref().map(|g| g.to_lowercase()))
            .collect();
        let wanted: BTreeSet<String> = items
            .iter()
            .flat_map(|i| i.missing.iter())
            .flat_map(|m| matching_keys(aliases, &m.key))
            .collect();

        // (subscription, group or "") → key_lower → value.
        let mut scoped: HashMap<(String, String), HashMap<String, String>> = HashMap::new();
        {
            let mut sql = Sql::new(
                "SELECT st.subscription_id, st.resource_group, st.key_lower, st.tag_value FROM scope_tags st \
                 JOIN subscriptions s ON s.org_id = st.org_id AND s.subscription_id = st.subscription_id \
                 AND s.sync_level IN ('read_tags_only', 'read_write_tags') WHERE st.org_id = ",
            );
            let o = sql.arg(scope.id());
            sql.push(&o);
            let ps: Vec<String> = subs.iter().map(|s| sql.arg(s.clone())).collect();
            sql.push(&format!(" AND st.subscription_id IN ({})", ps.join(", ")));
            let ks: Vec<String> = wanted.iter().map(|k| sql.arg(k.clone())).collect();
            sql.push(&format!(" AND st.key_lower IN ({})", ks.join(", ")));
            for r in sql.fetch_all(&self.pool).await? {
                scoped
                    .entry((r.try_get(0)?, r.try_get(1)?))
                    .or_default()
                    .insert(r.try_get(2)?, r.try_get(3)?);
            }
        }

        // (subscription, group) → resource → key_lower → value, for siblings.
        type Siblings = HashMap<String, HashMap<String, String>>;
        let mut siblings: HashMap<(String, String), Siblings> = HashMap::new();
        if !groups.is_empty() {
            let mut sql = Sql::new(
                "SELECT r.subscription_id, lower(r.resource_group), r.azure_id, t.key_lower, t.tag_value \
                 FROM resources r JOIN resource_tags t ON t.org_id = r.org_id AND t.resource_id = r.resource_id \
                 WHERE r.deleted_at IS NULL AND r.org_id = ",
            );
            let o = sql.arg(scope.id());
            sql.push(&o);
            let ps: Vec<String> = subs.iter().map(|s| sql.arg(s.clone())).collect();
            sql.push(&format!(" AND r.subscription_id IN ({})", ps.join(", ")));
            let gs: Vec<String> = groups.iter().map(|g| sql.arg(g.clone())).collect();
            sql.push(&format!(
                " AND lower(r.resource_group) IN ({})",
                gs.join(", ")
            ));
            let ks: Vec<String> = wanted.iter().map(|k| sql.arg(k.clone())).collect();
            sql.push(&format!(" AND t.key_lower IN ({})", ks.join(", ")));
            for r in sql.fetch_all(&self.pool).await? {
                siblings
                    .entry((r.try_get(0)?, r.try_get(1)?))
                    .or_default()
                    .entry(r.try_get(2)?)
                    .or_default()
                    .insert(r.try_get(3)?, r.try_get(4)?);
            }
        }

        // The first of the matching keys with a non-empty value.
        let value_of = |tags: &HashMap<String, String>, keys: &[String]| -> Option<String> {
            keys.iter()
                .filter_map(|k| tags.get(k))
                .find(|v| !v.trim().is_empty())
                .cloned()
        };
        for item in items.iter_mut() {
            let Some(sub) = item.subscription.map(|s| s.to_string()) else {
                continue;
            };
            let group = item
                .resource_group
                .clone()
                .unwrap_or_default()
                .to_lowercase();
            for m in item.missing.iter_mut() {
                let keys = matching_keys(aliases, &m.key);
                let from_scope = |g: &str| {
                    scoped
                        .get(&(sub.clone(), g.to_string()))
                        .and_then(|t| value_of(t, &keys))
                };
                m.suggestion = if let Some(v) = from_scope(&group).filter(|_| !group.is_empty()) {
                    Some(Suggestion {
                        value: v,
                        source: SuggestionSource::ResourceGroup,
                    })
                } else if let Some(v) = from_scope("") {
                    Some(Suggestion {
                        value: v,
                        source: SuggestionSource::Subscription,
                    })
                } else {
                    siblings
                        .get(&(sub.clone(), group.clone()))
                        .and_then(|res| majority(res, &item.arm_id, &keys))
                        .map(|value| Suggestion {
                            value,
                            source: SuggestionSource::Siblings,
                        })
                };
            }
        }
        Ok(())
    }
}

/// The value more than half of the siblings carrying the key have, if any
/// (the resource itself is not its own sibling).
fn majority(
    resources: &HashMap<String, HashMap<String, String>>,
    itself: &str,
    keys: &[String],
) -> Option<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut carrying = 0;
    for (id, tags) in resources {
        if id == itself {
            continue;
        }
        if let Some(v) = keys
            .iter()
            .filter_map(|k| tags.get(k))
            .find(|v| !v.trim().is_empty())
        {
            carrying += 1;
            *counts.entry(v.clone()).or_insert(0) += 1;
        }
    }
    counts
        .into_iter()
        .find(|(_, c)| c * 2 > carrying)
        .map(|(v, _)| v)
}

/// A subscription's scope tags as stored: (group, key_lower) → (tag_key,
/// tag_value), the subscription's own under the group "". Azure compares
/// group names and keys without case, so one row per group and key.
type ScopeTagRows = BTreeMap<(String, String), (String, String)>;

/// The rows `scope_tags` holds for what Azure answered: none below the
/// levels that read tags.
fn scope_tag_rows(sub: &SubscriptionRecord, tags: Option<&ScopeTags>) -> ScopeTagRows {
    let mut wanted = ScopeTagRows::new();
    if let Some(t) = tags.filter(|_| sub.sync_level.reads_tags()) {
        let groups = std::iter::once(("", &t.subscription))
            .chain(t.resource_groups.iter().map(|(g, t)| (g.as_str(), t)));
        for (group, tags) in groups {
            for (k, v) in tags {
                wanted
                    .entry((group.to_lowercase(), k.to_lowercase()))
                    .or_insert_with(|| (k.clone(), v.clone()));
            }
        }
    }
    wanted
}

async fn stored_scope_tags<'e>(
    db: impl sqlx::Executor<'e, Database = sqlx::Any>,
    scope: &OrgScope,
    sub: &SubscriptionRecord,
) -> Result<ScopeTagRows> {
    sqlx::query(
        "SELECT resource_group, key_lower, tag_key, tag_value FROM scope_tags \
         WHERE org_id = $1 AND subscription_id = $2",
    )
    .bind(scope.id())
    .bind(sub.id.to_string())
    .fetch_all(db)
    .await?
    .iter()
    .map(|r| {
        Ok((
            (r.try_get(0)?, r.try_get(1)?),
            (r.try_get(2)?, r.try_get(3)?),
        ))
    })
    .collect()
}

async fn write_scope_tags(
    tx: &mut Tx,
    backend: Backend,
    scope: &OrgScope,
    sub: &SubscriptionRecord,
    wanted: ScopeTagRows,
) -> Result<()> {
    let (org, sub_id) = (scope.id(), sub.id.to_string());
    sqlx::query("DELETE FROM scope_tags WHERE org_id = $1 AND subscription_id = $2")
        .bind(&org)
        .bind(&sub_id)
        .execute(&mut **tx)
        .await?;
    let rows: Vec<Vec<Arg>> = wanted
        .into_iter()
        .map(|((group, key_lower), (k, v))| {
            vec![
                org.clone().into(),
                sub_id.clone().into(),
                group.into(),
                key_lower.into(),
                k.into(),
                v.into(),
            ]
        })
        .collect();
    bulk_insert(
        tx,
        backend,
        "scope_tags",
        &[
            "org_id",
            "subscription_id",
            "resource_group",
            "key_lower",
            "tag_key",
            "tag_value",
        ],
        rows,
    )
    .await
}

/// Replaces a subscription's scope tags in the caller's write
/// transaction (an inventory pass, `InventoryWrite::scope_tags`), unless
/// they are the stored ones. `None`, or a level below those that read
/// tags, keeps none.
pub(crate) async fn replace_scope_tags(
    tx: &mut Tx,
    backend: Backend,
    scope: &OrgScope,
    sub: &SubscriptionRecord,
    tags: Option<&ScopeTags>,
) -> Result<()> {
    let wanted = scope_tag_rows(sub, tags);
    if stored_scope_tags(&mut **tx, scope, sub).await? != wanted {
        write_scope_tags(tx, backend, scope, sub, wanted).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_resolve_through_aliases_and_name_what_is_allowed() {
        let required = vec!["env".to_string(), "owner".to_string()];
        let aliases = BTreeMap::from([("environment".to_string(), "env".to_string())]);
        assert_eq!(
            resolve_required_keys(&required, &aliases, &[]).ok(),
            Some(required.clone())
        );
        assert_eq!(
            resolve_required_keys(&required, &aliases, &["Environment".into()]).ok(),
            Some(vec!["env".to_string()])
        );
        let e =
            resolve_required_keys(&required, &aliases, &["colour".into()]).expect_err("unknown");
        assert!(
            e.to_string()
                .contains("allowed: env, owner (or their aliases: environment)"),
            "{e}"
        );
        assert_eq!(
            matching_keys(&aliases, "environment"),
            vec!["env".to_string(), "environment".to_string()]
        );
    }

    #[test]
    fn a_majority_is_strict() {
        let keys = vec!["owner".to_string()];
        let res = |pairs: &[(&str, &str)]| -> HashMap<String, HashMap<String, String>> {
            pairs
                .iter()
                .map(|(id, v)| {
                    (
                        id.to_string(),
                        HashMap::from([("owner".to_string(), v.to_string())]),
                    )
                })
                .collect()
        };
        assert_eq!(
            majority(&res(&[("a", "x"), ("b", "x"), ("c", "y")]), "z", &keys),
            Some("x".into())
        );
        assert_eq!(majority(&res(&[("a", "x"), ("b", "y")]), "z", &keys), None);
        assert_eq!(
            majority(&res(&[("z", "x"), ("b", "y")]), "z", &keys),
            Some("y".into())
        );
        assert_eq!(majority(&res(&[]), "z", &keys), None);
    }
}
