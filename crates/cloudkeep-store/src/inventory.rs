//! Resources as observed in Azure, their tags (queryable in SQL through
//! `resource_tags`) and tag history.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use cloudkeep_domain::report::Counts;
use cloudkeep_domain::{ConnectionId, SubscriptionId};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::connections::SubscriptionRecord;
use crate::coverage::{ScopeTags, replace_scope_tags};
use crate::inventory_digest::{Digest, Digests, Entry, Fields};
use crate::page::{Cursor, Page, PageRequest, bad_cursor};
use crate::sql::{Arg, Sql, bulk_insert};
use crate::{OrgScope, Result, Store, StoreError, Tx, parse, time};

pub type Tags = BTreeMap<String, String>;

/// A resource as a sync saw it.
#[derive(Debug, Clone)]
pub struct ObservedResource {
    pub arm_id: String,
    pub name: String,
    pub resource_type: String,
    pub location: String,
    pub resource_group: String,
    pub tags: Tags,
    pub created: Option<DateTime<Utc>>,
    pub changed: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceRecord {
    pub id: Uuid,
    pub connection_id: ConnectionId,
    pub subscription_id: SubscriptionId,
    pub arm_id: String,
    pub name: String,
    pub resource_type: String,
    pub location: String,
    pub resource_group: String,
    /// `None` when the subscription's sync level does not read tags.
    pub tags: Option<Tags>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TagChange {
    pub observed_at: DateTime<Utc>,
    pub old: Tags,
    pub new: Tags,
}

/// What one inventory pass changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InventoryCounts {
    pub seen: u64,
    pub added: u64,
    pub deleted: u64,
    pub tag_changes: u64,
    /// Azure's listing was read a second time before a mass deletion.
    pub relisted: u64,
}

impl From<InventoryCounts> for Counts {
    fn from(c: InventoryCounts) -> Counts {
        let counts = Counts::new()
            .with("seen", c.seen)
            .with("added", c.added)
            .with("deleted", c.deleted)
            .with("tag_changes", c.tag_changes);
        if c.relisted > 0 {
            counts.with("relisted", c.relisted)
        } else {
            counts
        }
    }
}

/// How `record_inventory` writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct InventoryWrite<'a> {
    /// Tags are read at the subscription's level: store and compare them.
    pub tags_read: bool,
    /// The caller read the listing twice and both agree: apply it even if
    /// it deletes most of the subscription.
    pub deletions_confirmed: bool,
    /// The tags of the subscription and its resource groups, read with
    /// the listing: they replace the stored ones in the same transaction
    /// (one turn at the write lock per subscription). `None` keeps the
    /// stored ones (they could not be read).
    /// Without `tags_read` the stored ones are dropped either way.
    pub scope_tags: Option<&'a ScopeTags>,
}

/// Live resources and their tags, counted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TagCoverage {
    pub resources: u64,
    /// Resources whose subscription's level reads tags.
    pub tags_read: u64,
    /// Of those, resources with at least one tag.
    pub tagged: u64,
    /// The most used tag keys and how many resources carry each.
    pub keys: Vec<(String, u64)>,
}

/// Which resources to list. Names compare as Azure compares them (any case).
#[derive(Debug, Clone, Default)]
pub struct ResourceFilter {
    pub subscription: Option<SubscriptionId>,
    /// A connection's resources, with those of subscriptions it no longer
    /// holds (a revoked connection's history). Without it, only
    /// subscriptions held by a live connection are listed.
    pub connection: Option<ConnectionId>,
    pub resource_group: Option<String>,
    pub resource_type: Option<String>,
    pub location: Option<String>,
    pub name_contains: Option<String>,
    /// Has a tag with this name (any value).
    pub has_tag: Option<String>,
    /// Has this tag with this value.
    pub tag: Option<(String, String)>,
    /// Lacks a tag with this name.
    pub missing_tag: Option<String>,
    pub include_deleted: bool,
}

/// A listing would mark more than half of a subscription's resources deleted.
const MASS_DELETION_SHARE: f64 = 0.5;
/// ...and more than this many.
const MASS_DELETION_MIN: u64 = 20;

/// A stored resource, as `record_inventory` compares it with Azure's.
struct Known {
    id: String,
    arm_id: String,
    name: String,
    resource_type: String,
    location: String,
    resource_group: String,
    tags: Option<String>,
    deleted: bool,
    azure_changed: Option<i64>,
}

impl Known {
    fn from_row(r: &AnyRow) -> Result<Known> {
        Ok(Known {
            id: r.try_get("resource_id")?,
            arm_id: r.try_get("arm_id")?,
            name: r.try_get("name")?,
            resource_type: r.try_get("resource_type")?,
            location: r.try_get("location")?,
            resource_group: r.try_get("resource_group")?,
            tags: r.try_get("tags")?,
            deleted: r.try_get::<Option<i64>, _>("deleted_at")?.is_some(),
            azure_changed: r.try_get("azure_changed")?,
        })
    }

    fn same_as(&self, o: &ObservedResource, changed_at: Option<i64>) -> bool {
        !self.deleted
            && self.arm_id == o.arm_id
            && self.name == o.name
            && self.resource_type == o.resource_type
            && self.location == o.location
            && self.resource_group == o.resource_group
            && self.azure_changed == changed_at
    }
}

pub(crate) fn tags_json(t: &Tags) -> String {
    serde_json::to_string(t).unwrap_or_else(|_| "{}".into())
}

pub(crate) fn parse_tags(raw: &str) -> Result<Tags> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(format!("tags: {e}")))
}

/// The columns `record_inventory` inserts, in its rows' order.
const RESOURCE_INSERT: &[&str] = &[
    "org_id",
    "connection_id",
    "subscription_id",
    "first_seen",
    "last_seen",
    "resource_id",
    "azure_id",
    "arm_id",
    "name",
    "resource_type",
    "location",
    "resource_group",
    "tags",
    "azure_created",
    "azure_changed",
];

const RESOURCE_COLUMNS: &str = "r.resource_id, r.connection_id, r.subscription_id, r.arm_id, r.name, r.resource_type, r.location, \
     r.resource_group, r.tags, r.first_seen, r.last_seen, r.deleted_at";

/// The organisation's subscriptions as resource reads need them: whether
/// live, and when last listed; and what the inventory reads are kept by
/// (`InventoryCache`).
struct SubscriptionTimes {
    subs: HashMap<SubscriptionId, (bool, Option<i64>)>,
    /// Every subscription's id, detachment and revision: what the
    /// inventory's answers are kept by (a listing that changed nothing
    /// leaves it; a kept page's `last_seen` is brought up to date on reading).
    content: String,
}

impl SubscriptionTimes {
    fn live(&self) -> Vec<SubscriptionId> {
        self.subs
            .iter()
            .filter(|(_, (live, _))| *live)
            .map(|(id, _)| *id)
            .collect()
    }

    /// A live resource was last seen when its subscription was last listed.
    fn last_seen(&self, sub: SubscriptionId, stored: i64, deleted: bool) -> i64 {
        match self.subs.get(&sub) {
            Some((_, Some(listed))) if !deleted => stored.max(*listed),
            _ => stored,
        }
    }
}

/// A resource row (`RESOURCE_COLUMNS`).
fn resource(row: &AnyRow, subs: &SubscriptionTimes) -> Result<ResourceRecord> {
    let tags: Option<String> = row.try_get("tags")?;
    let deleted_at = row.try_get::<Option<i64>, _>("deleted_at")?;
    let subscription_id = parse(row, "subscription_id")?;
    let last_seen = subs.last_seen(
        subscription_id,
        row.try_get("last_seen")?,
        deleted_at.is_some(),
    );
    Ok(ResourceRecord {
        id: parse(row, "resource_id")?,
        connection_id: parse(row, "connection_id")?,
        subscription_id,
        arm_id: row.try_get("arm_id")?,
        name: row.try_get("name")?,
        resource_type: row.try_get("resource_type")?,
        location: row.try_get("location")?,
        resource_group: row.try_get("resource_group")?,
        tags: tags.as_deref().map(parse_tags).transpose()?,
        first_seen: time(row.try_get("first_seen")?),
        last_seen: time(last_seen),
        deleted_at: deleted_at.map(time),
    })
}

/// Inventory reads answered before (resource pages, tag coverage), per
/// organisation and question, with the revision of the organisation's
/// subscriptions they were read at: every subscription's id, detachment
/// and `resources_rev`, which every change to its resources
/// or their tags moves in its transaction (`claim_rev`, `bump_rev`). The
/// revision is read from the database before each answer, so an answer is
/// reused only while no instance has changed the inventory since; the list
/// and the dashboard ask the same few questions between syncs.
#[derive(Debug, Default)]
pub(crate) struct InventoryCache {
    entries: std::sync::Mutex<HashMap<String, (String, Kept)>>,
    /// What inventory passes compare listings with.
    digests: Digests,
    /// Per question, the turn to compute it (see `turns`).
    turns: crate::turns::Turns<String>,
}

#[derive(Debug, Clone)]
enum Kept {
    Resources(Page<ResourceRecord>),
    TagCoverage(TagCoverage),
}

/// Bounds on what is kept: this many answers (then it starts over, as the
/// spend cache does), and pages of at most this many rows (a list's page,
/// not a bulk edit's walk through every resource).
const CACHE_ANSWERS: usize = 256;
const CACHE_PAGE_ROWS: usize = 200;

impl InventoryCache {
    fn get(&self, key: &str, revision: &str) -> Option<Kept> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at == revision)
            .map(|(_, kept)| kept.clone())
    }

    fn keep(&self, key: String, revision: String, answer: Kept) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_ANSWERS && !entries.contains_key(&key) {
            entries.clear();
        }
        entries.insert(key, (revision, answer));
    }
}

/// The start of a resource query selecting `columns`: through the tag
/// table when the filter names a tag and value (its index finds them),
/// else the resources; with the column its keyset pages by.
fn resources_from(scope: &OrgScope, filter: &ResourceFilter, columns: &str) -> (Sql, &'static str) {
    match &filter.tag {
        Some((k, v)) => {
            let mut sql = Sql::new(&format!(
                "SELECT {columns} FROM resource_tags d \
                 JOIN resources r ON r.org_id = d.org_id AND r.resource_id = d.resource_id WHERE d.org_id = "
            ));
            let p = sql.arg(scope.id());
            let pk = sql.arg(k.to_lowercase());
            let pv = sql.arg(v.clone());
            sql.push(&format!(
                "{p} AND d.key_lower = {pk} AND d.tag_value = {pv} AND r.org_id = {p}"
            ));
            (sql, "d.resource_id")
        }
        None => {
            let mut sql = Sql::new(&format!(
                "SELECT {columns} FROM resources r WHERE r.org_id = "
            ));
            let p = sql.arg(scope.id());
            sql.push(&p);
            (sql, "r.resource_id")
        }
    }
}

/// Escapes `LIKE` wildcards in a user's text.
fn like_contains(text: &str) -> String {
    let escaped = text
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

impl ResourceFilter {
    /// The filter's conditions on `r` (resources). Without a connection,
    /// only the `live` subscriptions' resources.
    fn push_conditions(&self, sql: &mut Sql, live: &[SubscriptionId]) {
        match self.connection {
            Some(c) => {
                let p = sql.arg(c.to_string());
                sql.push(&format!(" AND r.connection_id = {p}"));
            }
            None => {
                let ps: Vec<String> = live.iter().map(|s| sql.arg(s.to_string())).collect();
                sql.push(&format!(" AND r.subscription_id IN ({})", ps.join(", ")));
            }
        }
        if let Some(s) = self.subscription {
            let p = sql.arg(s.to_string());
            sql.push(&format!(" AND r.subscription_id = {p}"));
        }
        for (column, value) in [
            ("resource_group", &self.resource_group),
            ("resource_type", &self.resource_type),
            ("location", &self.location),
        ] {
            if let Some(v) = value {
                let p = sql.arg(v.to_lowercase());
                sql.push(&format!(" AND lower(r.{column}) = {p}"));
            }
        }
        if let Some(n) = &self.name_contains {
            let p = sql.arg(like_contains(n));
            sql.push(&format!(" AND lower(r.name) LIKE {p} ESCAPE '\\'"));
        }
        let tag_exists = "EXISTS (SELECT 1 FROM resource_tags t WHERE t.org_id = r.org_id AND t.resource_id = r.resource_id AND t.key_lower = ";
        if let Some(k) = &self.has_tag {
            let p = sql.arg(k.to_lowercase());
            sql.push(&format!(" AND {tag_exists}{p})"));
        }
        // A tag k=v filter drives the query from the tag index instead
        // (see `Store::resources`).
        if let Some(k) = &self.missing_tag {
            let p = sql.arg(k.to_lowercase());
            // A resource whose tags are not read (NULL) lacks nothing we know of.
            sql.push(&format!(" AND r.tags IS NOT NULL AND NOT {tag_exists}{p})"));
        }
        if !self.include_deleted {
            sql.push(" AND r.deleted_at IS NULL");
        }
    }
}

impl Store {
    /// Records one subscription's inventory from a sync: new resources,
    /// changed tags (with history), and resources gone from Azure. Without
    /// `tags_read`, tags are neither stored nor compared.
    ///
    /// One transaction of a few statements per subscription: new rows and
    /// their tags go in multi-row inserts, only rows that changed are
    /// updated, and the resources seen again get their `last_seen` from the
    /// subscription's `inventory_at`, so an unchanged estate writes no row
    /// per resource.
    ///
    /// A listing that would mark more than half of the subscription's live
    /// resources deleted (and more than 20) is refused with `MassDeletion`
    /// unless `deletions_confirmed`: an empty answer from Azure is read
    /// again before it empties the inventory.
    pub async fn record_inventory(
        &self,
        scope: &OrgScope,
        subscription: &SubscriptionRecord,
        run_id: Uuid,
        observed: &[ObservedResource],
        write: InventoryWrite<'_>,
    ) -> Result<InventoryCounts> {
        let now = self.now_ms();
        // Diffed outside the write lock, so SQLite's one writer is held
        // only to apply the change, while other subscriptions diff beside
        // it; applied if nothing changed the subscription's resources since
        // (its `resources_rev`), otherwise diffed again under the lock.
        let digests = &self.inventory_cache.digests;
        let mut conn = self.pool.acquire().await?;
        let plan = plan_inventory(&mut conn, digests, scope, subscription, observed, write).await?;
        drop(conn);
        let mut tx = self.begin_relaxed_write().await?;
        // The subscription's revision once this commits.
        let (mut plan, rev) =
            if claim_rev(&mut tx, scope, subscription.id, Some(&plan), now).await? {
                let rev = plan.rev + i64::from(plan.changes());
                (plan, rev)
            } else {
                let plan =
                    plan_inventory(&mut tx, digests, scope, subscription, observed, write).await?;
                claim_rev(&mut tx, scope, subscription.id, None, now).await?;
                let rev = plan.rev + 1;
                (plan, rev)
            };
        let next = plan.next.take();
        // The new rows' values are made under the lock, one subscription's
        // at a time: made before it (measured, when they were copies), the
        // subscriptions waiting for the lock each held theirs, and the first
        // sync's peak memory went from 58 to 64-69 MiB for a tenth of its
        // time. They borrow their text from the plan and its listing.
        let keys = RowKeys::of(&plan, scope, subscription);
        let rows = NewRows::of(&plan, &keys, now);
        let counts = plan.counts;
        self.apply_inventory(&mut tx, scope, run_id, &plan, rows, now)
            .await?;
        if write.scope_tags.is_some() || !write.tags_read {
            let tags = write.scope_tags.filter(|_| write.tags_read);
            replace_scope_tags(&mut tx, self.backend, scope, subscription, tags).await?;
        }
        self.commit_relaxed(tx).await?;
        if let Some(next) = next {
            digests.keep(scope.id().as_str(), subscription.id, rev, next);
        }
        Ok(counts)
    }

    /// Writes an inventory plan (in the caller's write transaction).
    async fn apply_inventory(
        &self,
        tx: &mut Tx,
        scope: &OrgScope,
        run_id: Uuid,
        plan: &InventoryPlan<'_>,
        new_rows: NewRows<'_>,
        now: i64,
    ) -> Result<()> {
        for c in &plan.changed {
            if let (true, Some(new), Some(old)) = (c.tags_changed, &c.tags, &c.old_tags) {
                add_history(tx, scope, &c.id, now, old, new, &run_id.to_string()).await?;
            }
            if c.tags_changed {
                let parsed = c.tags.as_ref().map(|_| &c.observed.tags);
                replace_tag_rows(tx, self, scope, &c.id, parsed).await?;
            }
            let o = c.observed;
            sqlx::query(
                "UPDATE resources SET arm_id = $3, name = $4, resource_type = $5, location = $6, resource_group = $7, tags = $8, \
                 last_seen = $9, deleted_at = NULL, azure_changed = $10 WHERE org_id = $1 AND resource_id = $2",
            )
            .bind(scope.id())
            .bind(&c.id)
            .bind(&o.arm_id)
            .bind(&o.name)
            .bind(&o.resource_type)
            .bind(&o.location)
            .bind(&o.resource_group)
            .bind(c.tags.clone())
            .bind(now)
            .bind(o.changed.map(|t| t.timestamp_millis()))
            .execute(&mut **tx)
            .await?;
        }
        let NewRows { resources, tags } = new_rows;
        bulk_insert(tx, self.backend(), "resources", RESOURCE_INSERT, resources).await?;
        insert_tag_rows(tx, self, tags).await?;
        // The ones gone were last seen at the subscription's previous listing.
        let previous = plan.previous.unwrap_or(now);
        for chunk in plan.gone.chunks(500) {
            let mut sql = Sql::new("UPDATE resources SET deleted_at = ");
            let p = sql.arg_int(now);
            sql.push(&p);
            let p = sql.arg_int(previous);
            sql.push(&format!(
                ", last_seen = CASE WHEN last_seen < {p} THEN {p} ELSE last_seen END WHERE org_id = "
            ));
            let p = sql.arg(scope.id());
            sql.push(&p);
            sql.push(" AND resource_id IN (");
            for (i, id) in chunk.iter().enumerate() {
                let p = sql.arg(id.clone());
                sql.push(&if i == 0 { p } else { format!(", {p}") });
            }
            sql.push(")");
            sql.execute(tx).await?;
        }
        Ok(())
    }

    /// The organisation's subscriptions: live or not, and when last listed;
    /// with their revisions, the key the inventory's answers are kept by.
    async fn subscription_times(&self, scope: &OrgScope) -> Result<SubscriptionTimes> {
        // One row, not one a subscription: every resource page and the tag
        // coverage ask this first, and on SQLite each row is a hand-off
        // from sqlx's worker thread.
        let row = sqlx::query(
            "SELECT string_agg(subscription_id || ':' || COALESCE(CAST(detached_at AS TEXT), '') || ':' \
             || COALESCE(CAST(inventory_at AS TEXT), '') || ':' || CAST(resources_rev AS TEXT), ';' \
             ORDER BY subscription_id) AS subs FROM subscriptions WHERE org_id = $1",
        )
        .bind(scope.id())
        .fetch_one(&self.pool)
        .await?;
        let all: Option<String> = row.try_get("subs")?;
        let all = all.unwrap_or_default();
        let mut subs = HashMap::new();
        let mut content = String::with_capacity(all.len());
        let bad = || StoreError::Corrupt(format!("subscription times: {all:?}"));
        for one in all.split(';').filter(|s| !s.is_empty()) {
            let mut parts = one.split(':');
            let mut next = || parts.next().ok_or_else(bad);
            let (id, detached, listed, rev) = (next()?, next()?, next()?, next()?);
            let id: SubscriptionId = id.parse().map_err(|_| bad())?;
            let listed = (!listed.is_empty())
                .then(|| listed.parse::<i64>())
                .transpose()
                .map_err(|_| bad())?;
            use std::fmt::Write;
            let _ = write!(content, "{id}:{detached}:{rev};");
            subs.insert(id, (detached.is_empty(), listed));
        }
        Ok(SubscriptionTimes { subs, content })
    }

    /// Resources matching a filter, ordered by id, a page at a time.
    ///
    /// One table drives each query, walked in id order so a page stops
    /// early: the resources' primary key, or with a `tag=k=v` filter the
    /// tag index (whose entries for one key and value are in resource id
    /// order). The live subscriptions are named in the query rather than
    /// joined, which keeps both backends' planners on those orders.
    pub async fn resources(
        &self,
        scope: &OrgScope,
        filter: &ResourceFilter,
        page: &PageRequest,
    ) -> Result<Page<ResourceRecord>> {
        let subs = self.subscription_times(scope).await?;
        let live = subs.live();
        if filter.connection.is_none() && live.is_empty() {
            return Ok(Page {
                items: Vec::new(),
                next: None,
            });
        }
        let key = (page.limit <= CACHE_PAGE_ROWS)
            .then(|| format!("{}|resources|{filter:?}|{page:?}", scope.id()));
        if let Some(Kept::Resources(mut p)) = key
            .as_ref()
            .and_then(|k| self.inventory_cache.get(k, &subs.content))
        {
            // Kept across listings that changed nothing: a live resource
            // was last seen at its subscription's latest listing (listings
            // only move forward).
            for r in &mut p.items {
                let seen = subs.last_seen(
                    r.subscription_id,
                    r.last_seen.timestamp_millis(),
                    r.deleted_at.is_some(),
                );
                r.last_seen = time(seen);
            }
            return Ok(p);
        }
        let (mut sql, order) = resources_from(scope, filter, RESOURCE_COLUMNS);
        if let Some(after) = &page.after {
            let id: Uuid = after.as_str().parse().map_err(|_| bad_cursor())?;
            let p = sql.arg(id.to_string());
            sql.push(&format!(" AND {order} > {p}"));
        }
        filter.push_conditions(&mut sql, &live);
        let p = sql.arg_int(page.fetch());
        sql.push(&format!(" ORDER BY {order} LIMIT {p}"));
        let rows = sql.fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(|r| resource(r, &subs))
            .collect::<Result<Vec<_>>>()?;
        let answer = Page::from_rows(items, page, |r| Cursor::of(&[&r.id.to_string()]));
        if let Some(key) = key {
            self.inventory_cache
                .keep(key, subs.content, Kept::Resources(answer.clone()));
        }
        Ok(answer)
    }

    /// How many resources match a filter (a bulk edit's reach), counted in
    /// SQL as `resources` selects them.
    pub async fn resource_count(&self, scope: &OrgScope, filter: &ResourceFilter) -> Result<u64> {
        let subs = self.subscription_times(scope).await?;
        let live = subs.live();
        if filter.connection.is_none() && live.is_empty() {
            return Ok(0);
        }
        let (mut sql, _) = resources_from(scope, filter, "count(*) AS n");
        filter.push_conditions(&mut sql, &live);
        let n: i64 = sql
            .fetch_all(&self.pool)
            .await?
            .first()
            .map(|r| r.try_get("n"))
            .transpose()?
            .unwrap_or(0);
        Ok(n.max(0) as u64)
    }

    /// How many live resources carry tags, and the `top_keys` most used
    /// tag keys.
    pub async fn tag_coverage(&self, scope: &OrgScope, top_keys: usize) -> Result<TagCoverage> {
        let mut c = self.tag_coverage_all_keys(scope).await?;
        c.keys.truncate(top_keys);
        Ok(c)
    }

    /// Computes the tag coverage of the inventory as it stands and keeps
    /// it, so the next page that shows it answers at once.
    pub async fn warm_tag_coverage(&self, scope: &OrgScope) -> Result<()> {
        self.tag_coverage_all_keys(scope).await.map(drop)
    }

    /// The same with every key, kept for the inventory's content: on a
    /// large tenant this is a tenth of a second or more of grouping (0.12
    /// s on 100,000 resources), so one reader computes it while the
    /// others wait for its answer, and every caller's top keys are cut
    /// from it.
    async fn tag_coverage_all_keys(&self, scope: &OrgScope) -> Result<TagCoverage> {
        let subs = self.subscription_times(scope).await?;
        let live = subs.live();
        if live.is_empty() {
            return Ok(TagCoverage::default());
        }
        let key = format!("{}|tag_coverage", scope.id());
        if let Some(Kept::TagCoverage(c)) = self.inventory_cache.get(&key, &subs.content) {
            return Ok(c);
        }
        let _turn = self.inventory_cache.turns.take(&key).await;
        if let Some(Kept::TagCoverage(c)) = self.inventory_cache.get(&key, &subs.content) {
            return Ok(c);
        }
        let mut sql = Sql::new(
            "SELECT count(*) AS resources, \
             sum(CASE WHEN r.tags IS NOT NULL THEN 1 ELSE 0 END) AS read, \
             sum(CASE WHEN r.tags IS NOT NULL AND r.tags <> '{}' THEN 1 ELSE 0 END) AS tagged \
             FROM resources r WHERE r.deleted_at IS NULL AND r.org_id = ",
        );
        let p = sql.arg(scope.id());
        sql.push(&p);
        ResourceFilter::default().push_conditions(&mut sql, &live);
        let rows = sql.fetch_all(&self.pool).await?;
        let count = |name: &str| -> Result<u64> {
            Ok(rows
                .first()
                .map(|r| r.try_get::<Option<i64>, _>(name))
                .transpose()?
                .flatten()
                .unwrap_or(0)
                .max(0) as u64)
        };
        // From the live resources to their tags (SQLite's CROSS JOIN keeps
        // that order): one pass over the resources in their stored order,
        // whose tags lie in the same order. The tags by key first and each
        // one's resource looked up was 4x slower on 100,000 resources (0.48
        // s against 0.12 s in `sqlite3`; 0.53 s of a first sync's run).
        let mut keys = Sql::new(
            "SELECT min(d.tag_key) AS tag_key, count(*) AS n FROM resources r \
             CROSS JOIN resource_tags d \
             WHERE d.org_id = r.org_id AND d.resource_id = r.resource_id \
             AND r.deleted_at IS NULL AND r.org_id = ",
        );
        let p = keys.arg(scope.id());
        keys.push(&format!("{p} AND d.org_id = {p}"));
        ResourceFilter::default().push_conditions(&mut keys, &live);
        keys.push(" GROUP BY d.key_lower ORDER BY count(*) DESC, d.key_lower");
        let keys = keys
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    r.try_get("tag_key")?,
                    r.try_get::<i64, _>("n")?.max(0) as u64,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let answer = TagCoverage {
            resources: count("resources")?,
            tags_read: count("read")?,
            tagged: count("tagged")?,
            keys,
        };
        self.inventory_cache
            .keep(key, subs.content, Kept::TagCoverage(answer.clone()));
        Ok(answer)
    }

    /// Every resource matching a filter (bulk tag edits), read a page at a time.
    pub async fn all_resources(
        &self,
        scope: &OrgScope,
        filter: &ResourceFilter,
    ) -> Result<Vec<ResourceRecord>> {
        let mut out = Vec::new();
        let mut req = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let page = self.resources(scope, filter, &req).await?;
            out.extend(page.items);
            match page.next {
                Some(next) => req.after = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// The live inventory resources with these ARM ids (any case), by
    /// lower-cased ARM id: spend names resources by ARM id, pages link to
    /// the inventory's.
    pub async fn live_resource_ids(
        &self,
        scope: &OrgScope,
        arm_ids: &[String],
    ) -> Result<HashMap<String, Uuid>> {
        if arm_ids.is_empty() {
            return Ok(HashMap::new());
        }
        let mut sql = Sql::new(
            "SELECT r.resource_id, r.azure_id FROM resources r \
             JOIN subscriptions s ON s.org_id = r.org_id AND s.subscription_id = r.subscription_id \
             AND s.detached_at IS NULL WHERE r.deleted_at IS NULL AND r.org_id = ",
        );
        let o = sql.arg(scope.id());
        sql.push(&o);
        let ps: Vec<String> = arm_ids
            .iter()
            .map(|a| sql.arg(a.to_ascii_lowercase()))
            .collect();
        sql.push(&format!(" AND r.azure_id IN ({})", ps.join(", ")));
        let mut found = HashMap::new();
        for r in sql.fetch_all(&self.pool).await? {
            found.insert(r.try_get("azure_id")?, parse(&r, "resource_id")?);
        }
        Ok(found)
    }

    pub async fn resource(
        &self,
        scope: &OrgScope,
        id: Uuid,
    ) -> Result<(ResourceRecord, Vec<TagChange>)> {
        let row = sqlx::query(&format!(
            "SELECT {RESOURCE_COLUMNS} FROM resources r WHERE r.org_id = $1 AND r.resource_id = $2"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "resource" })?;
        let history = sqlx::query("SELECT observed_at, old_tags, new_tags FROM tag_history WHERE org_id = $1 AND resource_id = $2 ORDER BY seq")
            .bind(scope.id())
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|h| {
                Ok(TagChange {
                    observed_at: time(h.try_get("observed_at")?),
                    old: parse_tags(&h.try_get::<String, _>("old_tags")?)?,
                    new: parse_tags(&h.try_get::<String, _>("new_tags")?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let subs = self.subscription_times(scope).await?;
        Ok((resource(&row, &subs)?, history))
    }

    /// Records tags just written to Azure as observed, with history.
    pub async fn observe_tags(&self, scope: &OrgScope, resource: Uuid, tags: &Tags) -> Result<()> {
        let now = self.now_ms();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT tags, subscription_id FROM resources WHERE org_id = $1 AND resource_id = $2",
        )
        .bind(scope.id())
        .bind(resource.to_string())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound { what: "resource" })?;
        let old: Option<String> = row.try_get("tags")?;
        bump_rev(
            &mut tx,
            scope,
            &row.try_get::<String, _>("subscription_id")?,
        )
        .await?;
        let new = tags_json(tags);
        let id = resource.to_string();
        if let Some(old) = old.filter(|o| parse_tags(o).ok().as_ref() != Some(tags)) {
            add_history(&mut tx, scope, &id, now, &old, &new, "write-back").await?;
        }
        replace_tag_rows(&mut tx, self, scope, &id, Some(tags)).await?;
        sqlx::query("UPDATE resources SET tags = $3 WHERE org_id = $1 AND resource_id = $2")
            .bind(scope.id())
            .bind(&id)
            .bind(&new)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// What an inventory pass will write, decided by comparing Azure's listing
/// with the stored rows of revision `rev`.
struct InventoryPlan<'a> {
    rev: i64,
    /// When the subscription was last listed before this pass.
    previous: Option<i64>,
    tags_read: bool,
    counts: InventoryCounts,
    /// In ARM id order (see `NewRows`).
    new: Vec<NewResource<'a>>,
    changed: Vec<Change<'a>>,
    /// Ids of resources gone from Azure.
    gone: Vec<String>,
    /// The subscription's digest once this plan is written, if one could
    /// be made (see `inventory_digest`).
    next: Option<Digest>,
}

impl InventoryPlan<'_> {
    fn changes(&self) -> bool {
        !(self.new.is_empty() && self.changed.is_empty() && self.gone.is_empty())
    }
}

struct NewResource<'a> {
    /// The lower-case ARM id (`azure_id`).
    key: String,
    observed: &'a ObservedResource,
    /// The tags' JSON, when read.
    tags: Option<String>,
    /// Time-ordered, given in ARM id order: new rows append to the primary
    /// key's, the ARM id index's and the tag table's b-trees instead of
    /// landing on random pages.
    id: Uuid,
}

struct Change<'a> {
    id: String,
    observed: &'a ObservedResource,
    tags: Option<String>,
    old_tags: Option<String>,
    tags_changed: bool,
}

/// The text of a plan's new rows that is not in the plan: the ids, as
/// the rows (`NewRows`) borrow them.
struct RowKeys {
    org: String,
    connection: String,
    subscription: String,
    /// The new resources' ids, in the plan's order.
    ids: Vec<String>,
}

impl RowKeys {
    fn of(
        plan: &InventoryPlan<'_>,
        scope: &OrgScope,
        subscription: &SubscriptionRecord,
    ) -> RowKeys {
        RowKeys {
            org: scope.id(),
            connection: subscription.connection_id.to_string(),
            subscription: subscription.id.to_string(),
            ids: plan.new.iter().map(|n| n.id.to_string()).collect(),
        }
    }
}

/// The values of a plan's new resource rows and their tag rows, borrowed
/// from the plan, its listing and its keys.
struct NewRows<'a> {
    resources: Vec<Vec<Arg<'a>>>,
    tags: Vec<Vec<Arg<'a>>>,
}

impl<'a> NewRows<'a> {
    fn of(plan: &'a InventoryPlan<'_>, keys: &'a RowKeys, now: i64) -> NewRows<'a> {
        let resources = plan
            .new
            .iter()
            .zip(&keys.ids)
            .map(|(n, id)| {
                let o = n.observed;
                vec![
                    keys.org.as_str().into(),
                    keys.connection.as_str().into(),
                    keys.subscription.as_str().into(),
                    now.into(),
                    now.into(),
                    id.as_str().into(),
                    n.key.as_str().into(),
                    o.arm_id.as_str().into(),
                    o.name.as_str().into(),
                    o.resource_type.as_str().into(),
                    o.location.as_str().into(),
                    o.resource_group.as_str().into(),
                    Arg::Text(n.tags.as_deref().map(Cow::Borrowed)),
                    o.created.map(|t| t.timestamp_millis()).into(),
                    o.changed.map(|t| t.timestamp_millis()).into(),
                ]
            })
            .collect();
        let tags = if plan.tags_read {
            tag_values(
                &keys.org,
                plan.new
                    .iter()
                    .zip(&keys.ids)
                    .flat_map(|(n, id)| tag_rows(id, &n.observed.tags)),
            )
        } else {
            Vec::new()
        };
        NewRows { resources, tags }
    }
}

/// One resource of a listing, with what the diff compares it by.
struct Listed<'a> {
    key: String,
    observed: &'a ObservedResource,
    tags: Option<String>,
    id_hash: u64,
    fields_hash: u64,
}

/// A listing without repeats (Azure may list a resource twice across
/// pages), hashed; and whether its ids' hashes are distinct.
fn listed<'a>(
    digests: &Digests,
    observed: &'a [ObservedResource],
    tags_read: bool,
) -> (Vec<Listed<'a>>, bool) {
    let mut out = Vec::with_capacity(observed.len());
    let mut keys = HashSet::with_capacity(observed.len());
    let mut hashes = HashSet::with_capacity(observed.len());
    let mut distinct = true;
    for o in observed {
        let key = o.arm_id.to_ascii_lowercase();
        if !keys.insert(key.clone()) {
            continue;
        }
        let id_hash = digests.id_hash(&key);
        // Two ids with one hash cost the digest, never a resource.
        distinct &= hashes.insert(id_hash);
        let tags = tags_read.then(|| tags_json(&o.tags));
        let fields_hash = digests.fields_hash(&observed_fields(o, tags.as_deref()));
        out.push(Listed {
            key,
            observed: o,
            tags,
            id_hash,
            fields_hash,
        });
    }
    (out, distinct)
}

fn observed_fields<'a>(o: &'a ObservedResource, tags: Option<&'a str>) -> Fields<'a> {
    Fields {
        arm_id: &o.arm_id,
        name: &o.name,
        resource_type: &o.resource_type,
        location: &o.location,
        resource_group: &o.resource_group,
        tags,
        changed: o.changed.map(|t| t.timestamp_millis()),
    }
}

fn known_fields(k: &Known) -> Fields<'_> {
    Fields {
        arm_id: &k.arm_id,
        name: &k.name,
        resource_type: &k.resource_type,
        location: &k.location,
        resource_group: &k.resource_group,
        tags: k.tags.as_deref(),
        changed: k.azure_changed,
    }
}

const KNOWN_COLUMNS: &str = "resource_id, azure_id, arm_id, name, resource_type, location, resource_group, tags, deleted_at, azure_changed";

/// Compares a listing with the stored resources (on `conn`, a pooled
/// connection or the write transaction): through the subscription's digest
/// when one is kept at its revision, reading only the rows whose hashes
/// differ; otherwise through every row, making the digest.
async fn plan_inventory<'a>(
    conn: &mut sqlx::AnyConnection,
    digests: &Digests,
    scope: &OrgScope,
    subscription: &SubscriptionRecord,
    observed: &'a [ObservedResource],
    write: InventoryWrite<'_>,
) -> Result<InventoryPlan<'a>> {
    let sub = sqlx::query(
        "SELECT inventory_at, resources_rev FROM subscriptions WHERE org_id = $1 AND subscription_id = $2",
    )
    .bind(scope.id())
    .bind(subscription.id.to_string())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(StoreError::NotFound {
        what: "subscription",
    })?;
    let previous: Option<i64> = sub.try_get("inventory_at")?;
    let rev: i64 = sub.try_get("resources_rev")?;
    let (listing, distinct) = listed(digests, observed, write.tags_read);
    let kept = digests
        .take(scope.id().as_str(), subscription.id, rev)
        .filter(|_| distinct);
    let by_digest = match kept {
        Some(digest) => {
            // Only the resources whose hashes differ are read.
            let suspects: Vec<&str> = listing
                .iter()
                .filter(|l| {
                    digest
                        .get(l.id_hash)
                        .is_some_and(|e| e.deleted || e.fields != l.fields_hash)
                })
                .map(|l| l.key.as_str())
                .collect();
            let known = known_rows(conn, scope, subscription, Some(&suspects)).await?;
            // A suspect not stored is a new resource whose id shares a
            // stored one's hash: read every row instead.
            suspects
                .iter()
                .all(|k| known.contains_key(*k))
                .then_some((digest, known))
        }
        None => None,
    };
    let (base, known, by_digest) = match by_digest {
        Some((digest, known)) => (Some(digest), known, true),
        None => {
            let known = known_rows(conn, scope, subscription, None).await?;
            let base = distinct.then(|| digest_of(digests, &known)).flatten();
            (base, known, false)
        }
    };

    let mut counts = InventoryCounts::default();
    // What the listing holds: by id hash through the digest (whose ids
    // are distinct), by id otherwise.
    let mut seen_hashes = HashSet::new();
    let mut seen_keys = HashSet::new();
    let mut new = Vec::new();
    let mut changed = Vec::new();
    let mut changed_hashes = Vec::new();
    for l in listing {
        if by_digest {
            seen_hashes.insert(l.id_hash);
        } else {
            seen_keys.insert(l.key.clone());
        }
        counts.seen += 1;
        let k = if by_digest {
            match base.as_ref().and_then(|d| d.get(l.id_hash)) {
                None => None,
                Some(e) if !e.deleted && e.fields == l.fields_hash => continue,
                Some(_) => known.get(&l.key),
            }
        } else {
            known.get(&l.key)
        };
        let Some(k) = k else {
            new.push(l);
            continue;
        };
        let o = l.observed;
        let tags_changed = match (&l.tags, &k.tags) {
            (Some(new), Some(old)) => new != old && parse_tags(old)? != o.tags,
            (None, None) => false,
            _ => true,
        };
        let changed_at = o.changed.map(|t| t.timestamp_millis());
        if !tags_changed && k.same_as(o, changed_at) {
            continue; // seen again: `inventory_at` says when
        }
        if tags_changed && l.tags.is_some() && k.tags.is_some() {
            counts.tag_changes += 1;
        }
        changed_hashes.push((l.id_hash, l.fields_hash));
        changed.push(Change {
            id: k.id.clone(),
            observed: o,
            tags: l.tags,
            old_tags: k.tags.clone(),
            tags_changed,
        });
    }
    let (gone, live): (Vec<(String, u64)>, u64) = match base.as_ref().filter(|_| by_digest) {
        Some(d) => (
            d.iter()
                .filter(|(h, e)| !e.deleted && !seen_hashes.contains(h))
                .map(|(h, e)| (e.id.to_string(), h))
                .collect(),
            d.iter().filter(|(_, e)| !e.deleted).count() as u64,
        ),
        None => (
            known
                .iter()
                .filter(|(key, k)| !k.deleted && !seen_keys.contains(*key))
                .map(|(key, k)| (k.id.clone(), digests.id_hash(key)))
                .collect(),
            known.values().filter(|k| !k.deleted).count() as u64,
        ),
    };
    counts.deleted = gone.len() as u64;
    counts.added = new.len() as u64;
    if !write.deletions_confirmed
        && counts.deleted > MASS_DELETION_MIN
        && counts.deleted as f64 > live as f64 * MASS_DELETION_SHARE
    {
        return Err(StoreError::MassDeletion {
            would_delete: counts.deleted,
            live,
        });
    }
    new.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    let new: Vec<(NewResource<'a>, u64, u64)> = new
        .into_iter()
        .map(|l| {
            let n = NewResource {
                key: l.key,
                observed: l.observed,
                tags: l.tags,
                id: Uuid::now_v7(),
            };
            (n, l.id_hash, l.fields_hash)
        })
        .collect();
    let next = base.map(|mut d| {
        for (h, f) in &changed_hashes {
            if let Some(e) = d.get_mut(*h) {
                e.fields = *f;
                e.deleted = false;
            }
        }
        for (_, h) in &gone {
            if let Some(e) = d.get_mut(*h) {
                e.deleted = true;
            }
        }
        d.add(new.iter().map(|(n, h, f)| {
            let entry = Entry {
                id: n.id,
                fields: *f,
                deleted: false,
            };
            (*h, entry)
        }));
        d
    });
    Ok(InventoryPlan {
        rev,
        previous,
        tags_read: write.tags_read,
        counts,
        new: new.into_iter().map(|(n, _, _)| n).collect(),
        changed,
        gone: gone.into_iter().map(|(id, _)| id).collect(),
        next,
    })
}

/// The subscription's stored resources by lower-case ARM id: all of them,
/// or those of `only`.
async fn known_rows(
    conn: &mut sqlx::AnyConnection,
    scope: &OrgScope,
    subscription: &SubscriptionRecord,
    only: Option<&[&str]>,
) -> Result<HashMap<String, Known>> {
    let sub = subscription.id.to_string();
    let rows =
        match only {
            None => sqlx::query(&format!(
                "SELECT {KNOWN_COLUMNS} FROM resources WHERE org_id = $1 AND subscription_id = $2"
            ))
            .bind(scope.id())
            .bind(&sub)
            .fetch_all(&mut *conn)
            .await?,
            Some(keys) => {
                let mut rows = Vec::new();
                for chunk in keys.chunks(500) {
                    let mut sql = Sql::new(&format!(
                        "SELECT {KNOWN_COLUMNS} FROM resources WHERE org_id = "
                    ));
                    let p = sql.arg(scope.id().as_str());
                    sql.push(&p);
                    let p = sql.arg(sub.as_str());
                    sql.push(&format!(" AND subscription_id = {p} AND azure_id IN ("));
                    for (i, key) in chunk.iter().enumerate() {
                        let p = sql.arg(*key);
                        sql.push(&if i == 0 { p } else { format!(", {p}") });
                    }
                    sql.push(")");
                    rows.extend(sql.fetch_all(&mut *conn).await?);
                }
                rows
            }
        };
    let mut known = HashMap::with_capacity(rows.len());
    for r in &rows {
        known.insert(r.try_get("azure_id")?, Known::from_row(r)?);
    }
    Ok(known)
}

/// The digest of stored rows; `None` if two ids share a hash or an id is
/// not a UUID as cloudkeep writes them.
fn digest_of(digests: &Digests, known: &HashMap<String, Known>) -> Option<Digest> {
    let mut entries = Vec::with_capacity(known.len());
    for (key, k) in known {
        let id = Uuid::parse_str(&k.id)
            .ok()
            .filter(|u| u.to_string() == k.id)?;
        let entry = Entry {
            id,
            fields: digests.fields_hash(&known_fields(k)),
            deleted: k.deleted,
        };
        entries.push((digests.id_hash(key), entry));
    }
    Digest::of(entries)
}

/// Records when a subscription was listed and, when the pass changes its
/// resources, moves them to their next revision: only if still at the
/// revision `planned` was diffed against when given (answers whether it
/// still was), else from whatever it is (and moved, changed or not). An
/// unchanged listing leaves the revision, so what is kept for it (the tag
/// coverage) stays good.
async fn claim_rev(
    tx: &mut Tx,
    scope: &OrgScope,
    subscription: SubscriptionId,
    planned: Option<&InventoryPlan<'_>>,
    now: i64,
) -> Result<bool> {
    let changes = planned.is_none_or(InventoryPlan::changes);
    let done = sqlx::query(
        "UPDATE subscriptions SET resources_rev = resources_rev + $5, inventory_at = $3 \
         WHERE org_id = $1 AND subscription_id = $2 AND ($4 < 0 OR resources_rev = $4)",
    )
    .bind(scope.id())
    .bind(subscription.to_string())
    .bind(now)
    .bind(planned.map_or(-1, |p| p.rev))
    .bind(i64::from(changes))
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Moves a subscription's resources to their next revision (any change to
/// them outside an inventory pass), so a pass diffed before it is diffed
/// again.
pub(crate) async fn bump_rev(tx: &mut Tx, scope: &OrgScope, subscription: &str) -> Result<()> {
    sqlx::query(
        "UPDATE subscriptions SET resources_rev = resources_rev + 1 WHERE org_id = $1 AND subscription_id = $2",
    )
    .bind(scope.id())
    .bind(subscription)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn add_history(
    tx: &mut Tx,
    scope: &OrgScope,
    resource: &str,
    at: i64,
    old: &str,
    new: &str,
    run: &str,
) -> Result<()> {
    let next: i64 = sqlx::query(
        "SELECT COALESCE(MAX(seq), 0) + 1 AS n FROM tag_history WHERE org_id = $1 AND resource_id = $2",
    )
    .bind(scope.id())
    .bind(resource)
    .fetch_one(&mut **tx)
    .await?
    .try_get("n")?;
    sqlx::query(
        "INSERT INTO tag_history (org_id, resource_id, seq, observed_at, old_tags, new_tags, run_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(scope.id())
    .bind(resource)
    .bind(next)
    .bind(at)
    .bind(old)
    .bind(new)
    .bind(run)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A resource's tag rows: (resource id, lower-case key, key, value). Azure
/// names are case-insensitive, so of two keys differing in case only the
/// first is queryable (Azure itself keeps one).
fn tag_rows<'a>(
    resource: &'a str,
    tags: &'a Tags,
) -> impl Iterator<Item = (&'a str, String, &'a str, &'a str)> + 'a {
    let mut keys = HashSet::new();
    tags.iter().filter_map(move |(k, v)| {
        let lower = k.to_lowercase();
        keys.insert(lower.clone())
            .then_some((resource, lower, k.as_str(), v.as_str()))
    })
}

/// Tag rows' values, in `insert_tag_rows`' column order.
fn tag_values<'a>(
    org: &'a str,
    rows: impl Iterator<Item = (&'a str, String, &'a str, &'a str)>,
) -> Vec<Vec<Arg<'a>>> {
    rows.map(|(resource, lower, key, value)| {
        vec![
            org.into(),
            resource.into(),
            lower.into(),
            key.into(),
            value.into(),
        ]
    })
    .collect()
}

async fn insert_tag_rows(tx: &mut Tx, store: &Store, rows: Vec<Vec<Arg<'_>>>) -> Result<()> {
    let columns = ["org_id", "resource_id", "key_lower", "tag_key", "tag_value"];
    bulk_insert(tx, store.backend(), "resource_tags", &columns, rows).await
}

/// Replaces a resource's tag rows (none when `tags` is `None`).
async fn replace_tag_rows(
    tx: &mut Tx,
    store: &Store,
    scope: &OrgScope,
    resource: &str,
    tags: Option<&Tags>,
) -> Result<()> {
    sqlx::query("DELETE FROM resource_tags WHERE org_id = $1 AND resource_id = $2")
        .bind(scope.id())
        .bind(resource)
        .execute(&mut **tx)
        .await?;
    if let Some(tags) = tags {
        let org = scope.id();
        insert_tag_rows(tx, store, tag_values(&org, tag_rows(resource, tags))).await?;
    }
    Ok(())
}
