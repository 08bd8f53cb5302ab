//! `cloudkeep bench evidence`: an evidence sync of the `large` preset
//! (throttling off) into a fresh store through the real code path
//! (`cloudkeep_sync::sync_connection_with` and the four evidence
//! collectors), then a second one with nothing changed, then a full sync
//! (the inventory too) for the whole. Prints each sync's wall time, its
//! requests, the evidence rows stored, and this process's peak memory; the
//! second sync must add no evidence row, and says how many it added.

use std::time::Duration;

use anyhow::{Result, bail};
use clap::Args;
use cloudkeep_domain::SyncLevel;
use cloudkeep_store::{EvidenceFilter, SyncRun};
use serde_json::Value;

use super::{SimChild, SyncSetup, mib, request_mix, total, vm_hwm_kib};

/// The evidence collectors, by the names their steps have.
const COLLECTORS: [&str; 4] = cloudkeep_sync::collectors::EVIDENCE;

#[derive(Args)]
pub struct EvidenceArgs {
    #[arg(long, default_value = "large")]
    preset: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many of the preset's subscriptions to sync (default: all).
    #[arg(long)]
    subscriptions: Option<usize>,
}

/// Whether a logged request is one of the evidence collectors' reads.
fn evidence_read(entry: &Value) -> bool {
    let path = entry["path"].as_str().unwrap_or_default();
    [
        "/providers/Microsoft.Authorization/",
        "/providers/Microsoft.Security/",
        "/providers/Microsoft.Storage/storageAccounts",
        "/providers/Microsoft.KeyVault/vaults",
    ]
    .iter()
    .any(|p| path.contains(p))
}

async fn rows(setup: &SyncSetup) -> Result<(u64, u64)> {
    let store = &setup.deps.store;
    let all = store
        .evidence_count(
            &setup.scope,
            &EvidenceFilter {
                connection: Some(setup.connection),
                ..Default::default()
            },
        )
        .await?;
    let current = store
        .evidence_count(
            &setup.scope,
            &EvidenceFilter {
                connection: Some(setup.connection),
                current_only: true,
                ..Default::default()
            },
        )
        .await?;
    Ok((all, current))
}

/// Prints one sync's figures; answers the log's last sequence number.
async fn report(
    sim: &SimChild,
    setup: &SyncSetup,
    what: &str,
    run: &SyncRun,
    wall: Duration,
    since: u64,
) -> Result<u64> {
    let log = sim.requests_since(since).await?;
    let (token, reads, writes) = request_mix(&log);
    let evidence_reads = log.iter().filter(|e| evidence_read(e)).count();
    let (all, current) = rows(setup).await?;
    let per: Vec<String> = COLLECTORS
        .iter()
        .map(|c| {
            format!(
                "{c} {} observed/{} opened",
                total(run, c, "observed"),
                total(run, c, "opened")
            )
        })
        .collect();
    println!(
        "{what}: {:.2}s wall, {} requests ({token} token, {reads} ARM reads of which {evidence_reads} the evidence collectors', {writes} writes); \
         evidence rows stored {all} ({current} current); {}",
        wall.as_secs_f64(),
        log.len(),
        per.join(", "),
    );
    Ok(log.last().and_then(|e| e["seq"].as_u64()).unwrap_or(since))
}

pub async fn run(args: EvidenceArgs) -> Result<()> {
    let sim = SimChild::start(&args.preset, args.seed, "off").await?;
    let subscriptions = args
        .subscriptions
        .unwrap_or(usize::MAX)
        .min(sim.subscription_ids().len());
    println!(
        "evidence sync of {subscriptions} subscriptions into a fresh SQLite store (throttle off; the four evidence collectors)"
    );
    let mut setup = SyncSetup::new(&sim, subscriptions, SyncLevel::ReadWriteTags)
        .await?
        .only(&COLLECTORS);
    let seq = sim.last_seq().await?;
    let (first, wall) = setup.sync().await?;
    let peak_first = vm_hwm_kib("/proc/self/status");
    let seq = report(&sim, &setup, "first sync", &first, wall, seq).await?;
    let (rows_first, _) = rows(&setup).await?;
    let observed: u64 = COLLECTORS
        .iter()
        .map(|c| total(&first, c, "observed"))
        .sum();
    if rows_first != observed {
        bail!("the first sync stored {rows_first} evidence rows for {observed} observations");
    }

    let (second, wall_again) = setup.sync().await?;
    let peak = vm_hwm_kib("/proc/self/status");
    let seq = report(
        &sim,
        &setup,
        "second sync, nothing changed",
        &second,
        wall_again,
        seq,
    )
    .await?;
    let (rows_second, _) = rows(&setup).await?;
    let opened: u64 = COLLECTORS.iter().map(|c| total(&second, c, "opened")).sum();
    println!(
        "  the second sync added {} evidence rows ({rows_first} before, {rows_second} after; {opened} intervals opened)",
        rows_second - rows_first
    );
    if rows_second != rows_first || opened != 0 {
        bail!("the second sync added evidence where nothing had changed");
    }
    match (peak_first, peak) {
        (Some(first), Some(both)) => println!(
            "  peak memory of this (syncing) process, VmHWM: {:.1} MiB after the first sync, {:.1} MiB after both",
            mib(first),
            mib(both)
        ),
        _ => println!("  peak memory: unavailable (no /proc)"),
    }

    // For the whole: a sync of every collector, the inventory too (its
    // first listing of the estate), on the same store.
    setup.only = None;
    let (full, wall_full) = setup.sync().await?;
    report(
        &sim,
        &setup,
        "a full sync (the inventory's first too)",
        &full,
        wall_full,
        seq,
    )
    .await?;
    if let Some(kib) = sim.peak_rss_kib() {
        println!(
            "  (the simulator, a separate process: peak {:.1} MiB)",
            mib(kib)
        );
    }
    Ok(())
}
