//! `cloudkeep bench inventory`: a full inventory sync of the `large` preset
//! (throttling off) into a fresh store, then a second sync with nothing
//! changed; wall time, requests, resources/s and this process's peak
//! memory, against the floor: the time merely to list the same resources
//! from the simulator, measured in the same run. Beside it, the storing
//! floor: SQLite alone copying the first sync's rows into an empty store.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Args;
use cloudkeep_domain::SyncLevel;
use cloudkeep_store::SyncRun;
use futures_util::StreamExt;

use super::{SimChild, SyncSetup, cpu_secs, mib, request_mix, total, verdict, vm_hwm_kib};

/// Targets, on 2 cores: each sync against the listing floor, and memory.
const FIRST_SYNC_TARGET: f64 = 2.5;
const UNCHANGED_SYNC_TARGET: f64 = 1.5;
const PEAK_MEMORY_TARGET_MIB: f64 = 64.0;

#[derive(Args)]
pub struct InventoryArgs {
    #[arg(long, default_value = "large")]
    preset: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many of the preset's subscriptions to sync (default: all).
    #[arg(long)]
    subscriptions: Option<usize>,
}

pub async fn run(args: InventoryArgs) -> Result<()> {
    let sim = SimChild::start(&args.preset, args.seed, "off").await?;
    let subscriptions = args
        .subscriptions
        .unwrap_or(usize::MAX)
        .min(sim.subscription_ids().len());
    // The level a collector with Tag Contributor starts at: tags are read,
    // and the (empty) write-back runs too.
    // The inventory alone: the evidence collectors have their own benchmark.
    let setup = SyncSetup::new(&sim, subscriptions, SyncLevel::ReadWriteTags)
        .await?
        .only(&["inventory"]);
    println!(
        "inventory sync of {subscriptions} subscriptions into a fresh SQLite store (throttle off)"
    );

    let listing = listing_floor(&sim, &setup, subscriptions).await?;
    let floor = listing.wall;
    let peak_floor = vm_hwm_kib("/proc/self/status");
    let seq = sim.last_seq().await?;
    let (first, wall) = setup.sync().await?;
    let peak_first = vm_hwm_kib("/proc/self/status");
    let seq = report(&sim, "first sync", &first, wall, seq).await?;
    if total(&first, "inventory", "added") != total(&first, "inventory", "seen") {
        bail!("the first sync into an empty store did not add every resource it saw");
    }

    let (second, wall_again) = setup.sync().await?;
    let peak = vm_hwm_kib("/proc/self/status");
    report(
        &sim,
        "second sync, nothing changed",
        &second,
        wall_again,
        seq,
    )
    .await?;
    let changed = ["added", "deleted", "tag_changes"]
        .iter()
        .map(|c| total(&second, "inventory", c))
        .sum::<u64>();
    if changed != 0 {
        bail!("the second sync changed {changed} things where nothing had: {second:?}");
    }

    let (storing, storing_cpu) = storing_floor(&setup).await?;

    let ratio = |d: Duration| d.as_secs_f64() / floor.as_secs_f64();
    println!(
        "targets (2 cores), against the listing floor of {:.2}s:",
        floor.as_secs_f64()
    );
    println!(
        "  first sync {:.2}s = {:.2}x the floor, target within {FIRST_SYNC_TARGET}x: {}",
        wall.as_secs_f64(),
        ratio(wall),
        verdict(ratio(wall) <= FIRST_SYNC_TARGET)
    );
    println!(
        "  second sync {:.2}s = {:.2}x the floor, target within {UNCHANGED_SYNC_TARGET}x: {}",
        wall_again.as_secs_f64(),
        ratio(wall_again),
        verdict(ratio(wall_again) <= UNCHANGED_SYNC_TARGET)
    );
    let both = floor + storing;
    println!(
        "  (the two floors together, listing {:.2}s + storing {:.2}s = {:.2}s: the first sync is {:.2}x that)",
        floor.as_secs_f64(),
        storing.as_secs_f64(),
        both.as_secs_f64(),
        wall.as_secs_f64() / both.as_secs_f64()
    );
    budget(floor, listing.cpu, storing_cpu);
    match (peak_floor, peak_first, peak) {
        (Some(floor), Some(first), Some(both)) => println!(
            "  peak memory of this (syncing) process, VmHWM: {:.1} MiB after listing alone, {:.1} MiB after the first sync, {:.1} MiB after both, target under {PEAK_MEMORY_TARGET_MIB} MiB: {}",
            mib(floor),
            mib(first),
            mib(both),
            verdict(mib(both) < PEAK_MEMORY_TARGET_MIB)
        ),
        _ => println!("  peak memory: unavailable (no /proc)"),
    }
    if let Some(kib) = sim.peak_rss_kib() {
        println!(
            "  (the simulator, a separate process: peak {:.1} MiB)",
            mib(kib)
        );
    }
    Ok(())
}

/// Prints one sync's figures; answers the log's last sequence number.
async fn report(
    sim: &SimChild,
    what: &str,
    run: &SyncRun,
    wall: Duration,
    since: u64,
) -> Result<u64> {
    let log = sim.requests_since(since).await?;
    let (token, reads, writes) = request_mix(&log);
    let seen = total(run, "inventory", "seen");
    let secs = wall.as_secs_f64();
    println!(
        "{what}: {secs:.2}s wall, {} requests to the simulator ({token} token, {reads} ARM reads, {writes} writes), \
         {seen} resources = {:.0} resources/s; added {}, tag changes {}, deleted {}",
        log.len(),
        seen as f64 / secs,
        total(run, "inventory", "added"),
        total(run, "inventory", "tag_changes"),
        total(run, "inventory", "deleted"),
    );
    Ok(log.last().and_then(|e| e["seq"].as_u64()).unwrap_or(since))
}

/// The floor: listing every resource of the subscriptions through the same
/// Azure client, as many subscriptions at once as a sync collects, storing
/// nothing. What a sync costs beyond it is the store's.
async fn listing_floor(sim: &SimChild, setup: &SyncSetup, subscriptions: usize) -> Result<Listing> {
    let token = setup.token(sim).await?;
    let azure = &setup.deps.azure;
    let ids: Vec<String> = sim
        .subscription_ids()
        .into_iter()
        .take(subscriptions)
        .collect();
    let cpu_before = listing_cpu(sim);
    let started = Instant::now();
    let listed: Vec<usize> = futures_util::stream::iter(ids.iter())
        .map(|sub| {
            let token = &token;
            async move { azure.resources(token, sub).await.map(|r| r.len()) }
        })
        .buffer_unordered(cloudkeep_sync::COLLECT_CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()?;
    let wall = started.elapsed();
    let cpu = cpu_before
        .zip(listing_cpu(sim))
        .map(|((sim_0, own_0), (sim_1, own_1))| (sim_1 - sim_0, own_1 - own_0));
    let n: usize = listed.iter().sum();
    println!(
        "listing floor: {:.2}s to list {n} resources of {} subscriptions, {} at a time, storing nothing = {:.0} resources/s",
        wall.as_secs_f64(),
        ids.len(),
        cloudkeep_sync::COLLECT_CONCURRENCY,
        n as f64 / wall.as_secs_f64()
    );
    Ok(Listing { wall, cpu })
}

/// The listing floor: its wall time, and the CPU time it took, in seconds,
/// as (the simulator's, this process's).
struct Listing {
    wall: Duration,
    cpu: Option<(f64, f64)>,
}

/// CPU time so far of the simulator and of this process.
fn listing_cpu(sim: &SimChild) -> Option<(f64, f64)> {
    sim.cpu_secs().zip(cpu_secs("/proc/self/stat"))
}

/// Whether the first sync's target leaves the store the CPU it needs: of
/// the cores' time in 2.5x the floor, the listing takes what it took in
/// the floor (the simulator serves it on the same cores), and the rest is
/// all a store path has, against what SQLite alone took to store.
fn budget(floor: Duration, listing: Option<(f64, f64)>, storing: Option<f64>) {
    let (Some((sim, own)), Some(storing)) = (listing, storing) else {
        println!("  (CPU time unavailable: no /proc)");
        return;
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let budget = FIRST_SYNC_TARGET * floor.as_secs_f64() * cores;
    let left = budget - sim - own;
    let share = if left > 0.0 {
        format!("{:.0}% of that", 100.0 * storing / left)
    } else {
        "with nothing left for it".into()
    };
    println!(
        "  (CPU within the first sync's target: {budget:.2} core-s on {cores} cores; listing takes {:.2} (simulator {sim:.2}, this process {own:.2}), \
         leaving {left:.2} for storing; SQLite alone took {storing:.2} to store, {share})",
        sim + own,
    );
}

/// The storing floor: SQLite alone writing the rows the first sync stored
/// into an empty store of the same schema and settings, a transaction per
/// subscription as the sync commits them, in the order it wrote them.
/// Copied inside SQLite (`INSERT ... SELECT` from the synced file,
/// attached), so no client's work is in it: what any store path of this
/// schema pays at least, whoever drives it.
/// Answers the wall time and this process's CPU time for it.
async fn storing_floor(setup: &SyncSetup) -> Result<(Duration, Option<f64>)> {
    use sqlx::Connection;
    let synced = setup.dir.join("cloudkeep.db");
    let empty = setup.dir.join("storing-floor.db");
    // The schema, as a store makes it.
    cloudkeep_store::Store::open(&format!("sqlite://{}", empty.display()))
        .await?
        .close()
        .await;
    let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", empty.display())).await?;
    // The inventory writer's settings (`Store::open`'s relaxed writer):
    // its checkpoints run beside it, so here they are timed apart.
    for pragma in [
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = NORMAL",
        "PRAGMA wal_autocheckpoint = 0",
        "PRAGMA cache_size = -8000",
        "PRAGMA temp_store = MEMORY",
        "PRAGMA foreign_keys = ON",
    ] {
        sqlx::query(pragma).execute(&mut c).await?;
    }
    sqlx::query("ATTACH DATABASE $1 AS synced")
        .bind(synced.display().to_string())
        .execute(&mut c)
        .await?;
    sqlx::query("INSERT INTO organisations SELECT * FROM synced.organisations")
        .execute(&mut c)
        .await?;
    let subscriptions: Vec<(String, String)> = sqlx::query_as(
        "SELECT org_id, subscription_id FROM synced.resources GROUP BY org_id, subscription_id ORDER BY min(rowid)",
    )
    .fetch_all(&mut c)
    .await?;
    // The source's pages are read once before timing, so its reads come
    // from memory as the sync's listing did.
    sqlx::query("SELECT count(*) FROM synced.resources JOIN synced.resource_tags USING (org_id, resource_id)")
        .fetch_one(&mut c)
        .await?;
    let (mut resources, mut tags) = (0u64, 0u64);
    let cpu_before = cpu_secs("/proc/self/stat");
    let started = Instant::now();
    for (org, sub) in &subscriptions {
        let mut tx = c.begin_with("BEGIN IMMEDIATE").await?;
        resources += sqlx::query(
            "INSERT INTO resources SELECT * FROM synced.resources \
             WHERE org_id = $1 AND subscription_id = $2 ORDER BY rowid",
        )
        .bind(org)
        .bind(sub)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tags += sqlx::query(
            "INSERT INTO resource_tags SELECT t.* FROM synced.resources r \
             CROSS JOIN synced.resource_tags t \
             WHERE t.org_id = r.org_id AND t.resource_id = r.resource_id \
             AND r.org_id = $1 AND r.subscription_id = $2 ORDER BY r.rowid, t.key_lower",
        )
        .bind(org)
        .bind(sub)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
    }
    let writes = started.elapsed();
    let started = Instant::now();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut c)
        .await?;
    let checkpoint = started.elapsed();
    let cpu = cpu_before
        .zip(cpu_secs("/proc/self/stat"))
        .map(|(before, after)| after - before);
    c.close().await?;
    println!(
        "storing floor: {:.2}s for SQLite alone to write the first sync's {resources} resources and {tags} tag rows into an empty store \
         ({:.2}s in {} transactions, then {:.2}s copying the log into the file, which the store does beside its writer)",
        (writes + checkpoint).as_secs_f64(),
        writes.as_secs_f64(),
        subscriptions.len(),
        checkpoint.as_secs_f64(),
    );
    Ok((writes + checkpoint, cpu))
}
