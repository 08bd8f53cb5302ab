//! `cloudkeep bench writeback`: tag edits written back to the simulator with
//! Azure's throttling on, through the sync that writes them; wall time
//! against the minimum the simulator's token buckets allow, the share of
//! requests answered 429, and edits lost or applied twice, checked from the
//! simulator's request log, its live tags and the store.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use cloudkeep_domain::TagEditState;
use cloudkeep_domain::{SyncLevel, tags};
use cloudkeep_sim::{ALL_PRINCIPALS_FACTOR, ARM_READS, ARM_WRITES, BucketLimits};
use cloudkeep_store::{AuditFilter, NewTagEdit, PageRequest, ResourceFilter, TagEditFilter, Tags};
use serde_json::Value;
use uuid::Uuid;

use super::{SimChild, SyncSetup, follow, request_mix, total, verdict};

/// Targets of the sync-engine issue.
const RATIO_TARGET: f64 = 1.2;
const THROTTLED_SHARE_TARGET: f64 = 0.01;
/// The tag every benchmark edit sets.
const KEY: &str = "cloudkeep-bench";
/// The store lists at most this many edits at once, and the check reads them all.
const MAX_EDITS: usize = 10_000;
const TAGS_SUFFIX: &str = "/providers/microsoft.resources/tags/default";

#[derive(Args)]
pub struct WritebackArgs {
    #[arg(long, default_value = "large")]
    preset: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Subscriptions written to (the first N of the preset).
    #[arg(long, default_value_t = 20)]
    subscriptions: usize,
    /// Tag edits, spread evenly over the subscriptions, one resource each (at most 10,000).
    #[arg(long, default_value_t = 10_000)]
    edits: usize,
}

/// One edit as created, and what Azure must show once it is applied.
struct Planned {
    edit: Uuid,
    resource: Uuid,
    /// The resource's ARM id, lower-cased.
    arm_key: String,
    set: Tags,
    remove: Vec<String>,
    /// PATCHes it needs: a Merge, and a Delete when it removes a tag.
    patches: usize,
}

impl Planned {
    fn shows_in(&self, tags: &Tags) -> bool {
        self.set.iter().all(|(k, v)| tags::get(tags, k) == Some(v))
            && self.remove.iter().all(|k| tags::get(tags, k).is_none())
    }
}

pub async fn run(args: WritebackArgs) -> Result<()> {
    if args.edits == 0 || args.edits > MAX_EDITS {
        bail!("--edits is 1 to {MAX_EDITS}");
    }
    let sim = SimChild::start(&args.preset, args.seed, "azure").await?;
    let subscriptions = args.subscriptions.min(sim.subscription_ids().len());
    // Inventory and write-back only: evidence reads would spend the
    // buckets this benchmark measures against.
    let setup = SyncSetup::new(&sim, subscriptions, SyncLevel::ReadTagsOnly)
        .await?
        .only(&["inventory"]);
    let (store, scope) = (&setup.deps.store, &setup.scope);
    println!(
        "write-back of {} tag edits across {subscriptions} subscriptions (throttle azure)",
        args.edits
    );

    // The inventory the edits are based on, then the subscriptions opened to write-back.
    let (_, wall) = setup.sync().await?;
    let synced = Instant::now();
    let subs = store
        .connection(scope, setup.connection)
        .await?
        .subscriptions;
    for sub in &subs {
        store
            .set_sync_level(scope, sub.id, SyncLevel::ReadWriteTags, "system:bench")
            .await?;
    }
    let t = Instant::now();
    let planned = create_edits(&setup, args.edits).await?;
    println!(
        "setup: first sync {:.2}s; {subscriptions} subscriptions set to read_write_tags; {} edits created in {:.2}s ({} also remove a tag)",
        wall.as_secs_f64(),
        planned.len(),
        t.elapsed().as_secs_f64(),
        planned.iter().filter(|p| !p.remove.is_empty()).count()
    );

    // Start with full buckets: wait out the refill of what the setup used.
    let before = sim.requests_since(0).await?;
    let refill = per_subscription(&before)
        .values()
        .map(|&(reads, writes)| {
            (reads as f64 / ARM_READS.per_second).max(writes as f64 / ARM_WRITES.per_second)
        })
        .fold(0.0, f64::max);
    tokio::time::sleep(Duration::from_secs_f64(refill).saturating_sub(synced.elapsed())).await;
    let seq = before.last().and_then(|e| e["seq"].as_u64()).unwrap_or(0);

    let (run, wall) = setup.sync().await?;
    let log = sim.requests_since(seq).await?;
    let secs = wall.as_secs_f64();
    println!(
        "write-back sync: {secs:.2}s wall; applied {}, conflicts {}, failed {}",
        total(&run, "write_back", "applied"),
        total(&run, "write_back", "conflicts"),
        total(&run, "write_back", "failed"),
    );

    // The minimum the buckets allow for the requests this run needed.
    let needed = per_subscription(&log);
    let (busiest, &(reads, writes)) = needed
        .iter()
        .max_by(|a, b| {
            minimum(a.1.0, a.1.1)
                .total_cmp(&minimum(b.1.0, b.1.1))
                .then(b.0.cmp(a.0))
        })
        .ok_or_else(|| anyhow::anyhow!("the write-back made no ARM request"))?;
    let floor = minimum(reads, writes);
    let tag_reads = log
        .iter()
        .filter(|e| {
            e["method"] == "GET" && path_key(e).ends_with(TAGS_SUFFIX) && e["status"] != 429
        })
        .count();
    let lists = log
        .iter()
        .filter(|e| {
            e["method"] == "GET" && path_key(e).ends_with("/resources") && e["status"] != 429
        })
        .count();
    let patches_planned: usize = planned.iter().map(|p| p.patches).sum();
    let n = planned.len() as f64;
    println!(
        "minimum the simulator's buckets allow: {floor:.2}s, computed so:\n\
         \x20 ARM throttles per subscription and principal (crates/cloudkeep-sim/src/throttle.rs): reads {} at once then {}/s, \
         writes {} at once then {}/s (the subscription-wide buckets are {ALL_PRINCIPALS_FACTOR} times larger, so one principal never meets them);\n\
         \x20 this write-back needed, per edit, {:.2} reads (the live tags before the three-way merge) and {:.2} writes \
         (a PATCH Merge, plus a PATCH Delete for the edits that remove a tag), and the sync's inventory {:.1} list pages per subscription;\n\
         \x20 a subscription needing R reads and W writes takes at least max((R - {})/{}, (W - {})/{}) s from full buckets; \
         subscriptions have their own buckets, so the run's minimum is its busiest subscription's:\n\
         \x20 {busiest}: R = {reads}, W = {writes}: max({:.2}, {:.2}) = {floor:.2}s",
        ARM_READS.capacity,
        ARM_READS.per_second,
        ARM_WRITES.capacity,
        ARM_WRITES.per_second,
        tag_reads as f64 / n,
        patches_planned as f64 / n,
        lists as f64 / needed.len().max(1) as f64,
        ARM_READS.capacity,
        ARM_READS.per_second,
        ARM_WRITES.capacity,
        ARM_WRITES.per_second,
        over(reads, ARM_READS),
        over(writes, ARM_WRITES),
    );

    let (token, arm_reads, arm_writes) = request_mix(&log);
    let throttled = log.iter().filter(|e| e["status"] == 429).count();
    let share = throttled as f64 / log.len().max(1) as f64;

    let check = verify(&sim, &setup, &planned, &log).await?;
    let ratio = secs / floor.max(f64::EPSILON);
    println!(
        "requests: {} ({token} token, {arm_reads} ARM reads, {arm_writes} ARM writes), {throttled} answered 429",
        log.len()
    );
    println!(
        "edits: {} planned; applied in the store {}, shown by Azure's live tags {}, by the store's tags {}; \
         resources with exactly the expected PATCHes {} ({} PATCHes planned, {} answered 2xx, {} answered 429)",
        planned.len(),
        check.applied_in_store,
        check.live,
        check.stored,
        check.exact_patches,
        patches_planned,
        check.patches_ok,
        check.patches_throttled,
    );
    println!("targets:");
    println!(
        "  wall {secs:.2}s = {ratio:.2} x the minimum {floor:.2}s, target within {RATIO_TARGET}x: {}",
        verdict(ratio <= RATIO_TARGET)
    );
    println!(
        "  429s {throttled} of {} requests = {:.2}%, target under {}%: {}",
        log.len(),
        share * 100.0,
        THROTTLED_SHARE_TARGET * 100.0,
        verdict(share < THROTTLED_SHARE_TARGET)
    );
    println!(
        "  edits lost {}, applied twice {}, target 0: {}",
        check.lost,
        check.twice,
        verdict(check.lost == 0 && check.twice == 0)
    );
    Ok(())
}

/// Creates the edits through the store, as the API does for a filter: one
/// call per subscription, each edit based on the tags the store holds.
async fn create_edits(setup: &SyncSetup, count: usize) -> Result<Vec<Planned>> {
    let (store, scope) = (&setup.deps.store, &setup.scope);
    let subs = store
        .connection(scope, setup.connection)
        .await?
        .subscriptions;
    let mut by_sub: HashMap<_, Vec<_>> = HashMap::new();
    for r in store
        .all_resources(scope, &ResourceFilter::default())
        .await?
    {
        by_sub.entry(r.subscription_id).or_default().push(r);
    }
    let mut planned = Vec::new();
    for (i, sub) in subs.iter().enumerate() {
        let wanted = count / subs.len() + usize::from(i < count % subs.len());
        let mut resources = by_sub.remove(&sub.id).unwrap_or_default();
        // The same resources every run, for comparable figures.
        resources.sort_by(|a, b| a.arm_id.cmp(&b.arm_id));
        if resources.len() < wanted {
            bail!(
                "subscription {} has {} resources, fewer than the {wanted} edits meant for it",
                sub.azure_id,
                resources.len()
            );
        }
        let mut edits = Vec::new();
        let mut arm_keys = HashMap::new();
        for r in resources.into_iter().take(wanted) {
            arm_keys.insert(r.id, r.arm_id.to_ascii_lowercase());
            let k = planned.len() + edits.len();
            let set = Tags::from([(KEY.to_string(), format!("edit-{k}"))]);
            let base = r.tags.clone().unwrap_or_default();
            // One edit in five also removes a tag the resource has, so Delete PATCHes are measured too.
            let remove: Vec<String> = base
                .keys()
                .filter(|_| k % 5 == 0)
                .find(|name| tags::check_edit(&set, &[name.to_string()], &r.resource_type).is_ok())
                .cloned()
                .into_iter()
                .collect();
            tags::check_edit(&set, &remove, &r.resource_type)?;
            tags::check_count(&tags::apply(&base, &set, &remove))?;
            edits.push(NewTagEdit {
                resource_id: r.id,
                subscription_id: r.subscription_id,
                set,
                remove,
                base,
                state: TagEditState::Pending,
                reason: None,
            });
        }
        for e in store.create_tag_edits(scope, edits, "system:bench").await? {
            planned.push(Planned {
                edit: e.id,
                resource: e.resource_id,
                arm_key: arm_keys.remove(&e.resource_id).unwrap_or_default(),
                patches: 1 + usize::from(!e.remove.is_empty()),
                set: e.set,
                remove: e.remove,
            });
        }
    }
    Ok(planned)
}

/// What the checks after the write-back found.
struct Check {
    applied_in_store: usize,
    live: usize,
    stored: usize,
    exact_patches: usize,
    patches_ok: usize,
    patches_throttled: usize,
    lost: usize,
    twice: usize,
}

/// Checks every edit from three sides: the request log (each resource got
/// exactly its PATCHes), Azure's live tags (listed as another principal, so
/// the write-back's buckets are not touched) and the store (the edit is
/// `applied`, once, and the stored tags show it).
async fn verify(
    sim: &SimChild,
    setup: &SyncSetup,
    planned: &[Planned],
    log: &[Value],
) -> Result<Check> {
    let (store, scope) = (&setup.deps.store, &setup.scope);
    let mut patched: HashMap<String, usize> = HashMap::new();
    let mut patches_throttled = 0;
    for e in log.iter().filter(|e| e["method"] == "PATCH") {
        match e["status"].as_u64() {
            Some(200..=299) => {
                let key = path_key(e);
                let resource = key.strip_suffix(TAGS_SUFFIX).unwrap_or(&key).to_string();
                *patched.entry(resource).or_default() += 1;
            }
            Some(429) => patches_throttled += 1,
            _ => {}
        }
    }
    let patches_ok = patched.values().sum();
    let exact = |p: &Planned| patched.get(&p.arm_key).copied().unwrap_or(0) == p.patches;
    let exact_patches = planned.iter().filter(|p| exact(p)).count();
    let unplanned = patched
        .keys()
        .filter(|k| !planned.iter().any(|p| &p.arm_key == *k))
        .count();

    // Azure's live tags, every resource of every subscription written to.
    let bearer = sim.bearer("reader-only").await?;
    let mut live: HashMap<String, Tags> = HashMap::new();
    for sub in store
        .connection(scope, setup.connection)
        .await?
        .subscriptions
    {
        let first = format!(
            "{}/subscriptions/{}/resources?api-version=2025-04-01&$top=1000",
            sim.url, sub.azure_id
        );
        follow(
            &sim.http,
            &bearer,
            reqwest::Method::GET,
            first,
            None,
            |page| {
                for item in page["value"].as_array().into_iter().flatten() {
                    let id = item["id"].as_str().unwrap_or_default().to_ascii_lowercase();
                    live.insert(id, tags_of(&item["tags"]));
                }
            },
        )
        .await?;
    }
    let in_azure = |p: &Planned| live.get(&p.arm_key).is_some_and(|t| p.shows_in(t));

    // The store: each edit applied, once in the audit log, and its tags as observed.
    let mut applied = std::collections::HashSet::new();
    let mut req = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let filter = TagEditFilter {
            state: Some(TagEditState::Applied),
            ..TagEditFilter::default()
        };
        let page = store.tag_edits(scope, &filter, &req).await?;
        applied.extend(page.items.iter().map(|e| e.id));
        match page.next {
            Some(next) => req.after = Some(next),
            None => break,
        }
    }
    let stored: HashMap<Uuid, Tags> = store
        .all_resources(scope, &ResourceFilter::default())
        .await?
        .into_iter()
        .map(|r| (r.id, r.tags.unwrap_or_default()))
        .collect();
    let in_store = |p: &Planned| stored.get(&p.resource).is_some_and(|t| p.shows_in(t));
    let mut audited: HashMap<String, usize> = HashMap::new();
    let mut req = PageRequest::first(PageRequest::MAX_LIMIT);
    let filter = AuditFilter {
        action: Some("tag_edit.applied".into()),
        ..AuditFilter::default()
    };
    loop {
        let page = store.audit_events(scope, &filter, &req).await?;
        for e in &page.items {
            *audited.entry(e.target.clone()).or_default() += 1;
        }
        match page.next {
            Some(next) => req.after = Some(next),
            None => break,
        }
    }

    let ok = |p: &Planned| applied.contains(&p.edit) && in_azure(p) && in_store(p);
    let audited_twice = audited.values().filter(|&&n| n > 1).count();
    let patched_twice = planned
        .iter()
        .filter(|p| patched.get(&p.arm_key).copied().unwrap_or(0) > p.patches)
        .count();
    Ok(Check {
        applied_in_store: planned.iter().filter(|p| applied.contains(&p.edit)).count(),
        live: planned.iter().filter(|p| in_azure(p)).count(),
        stored: planned.iter().filter(|p| in_store(p)).count(),
        exact_patches,
        patches_ok,
        patches_throttled,
        lost: planned.iter().filter(|p| !ok(p)).count(),
        twice: patched_twice + unplanned + audited_twice,
    })
}

/// Non-throttled ARM requests per subscription: (reads, writes). A 429
/// takes no token, so it is not counted.
fn per_subscription(log: &[Value]) -> HashMap<String, (u64, u64)> {
    let mut out: HashMap<String, (u64, u64)> = HashMap::new();
    for e in log.iter().filter(|e| e["status"] != 429) {
        let path = path_key(e);
        let Some(sub) = path
            .strip_prefix("/subscriptions/")
            .and_then(|rest| rest.split('/').next())
        else {
            continue;
        };
        let counts = out.entry(sub.to_string()).or_default();
        match e["method"].as_str() {
            Some("PATCH" | "PUT" | "DELETE") => counts.1 += 1,
            _ => counts.0 += 1,
        }
    }
    out
}

/// Seconds beyond a full bucket's burst that `n` requests need at its refill rate.
fn over(n: u64, bucket: BucketLimits) -> f64 {
    ((n as f64 - bucket.capacity) / bucket.per_second).max(0.0)
}

/// Seconds one subscription needs at least, from full buckets.
fn minimum(reads: u64, writes: u64) -> f64 {
    over(reads, ARM_READS).max(over(writes, ARM_WRITES))
}

/// A log entry's path, percent-decoded and lower-cased, to compare with ARM ids.
fn path_key(entry: &Value) -> String {
    let raw = entry["path"].as_str().unwrap_or_default().as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (raw[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

/// Tags as a list carries them (an object of strings, or nothing).
fn tags_of(v: &Value) -> Tags {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}
