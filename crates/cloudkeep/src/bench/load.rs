//! `cloudkeep bench load`: 64 concurrent connections for a while on each of
//! the reads people and tools make most (the resource list, the
//! connections, the control coverage, the dashboard page, and the spend
//! summary when the server has it) over the `large` preset, synced with
//! every collector; then the same while a sync of the whole preset runs.
//! Prints requests/s, p50, p99, errors and the process's memory, against
//! the targets on 2 cores: p99 under 100 ms and at least 1,000 requests/s
//! for each read, no error.
//!
//! Client and server share the process (and the two cores): the figures
//! are what the server manages while also being its own load generator.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use cloudkeep_domain::SyncLevel;
use reqwest::StatusCode;

use super::{SimChild, SyncSetup, mib, verdict, vm_hwm_kib};

const CONNECTIONS: usize = 64;
const P99_TARGET: Duration = Duration::from_millis(100);
const RATE_TARGET: f64 = 1000.0;

#[derive(Args)]
pub struct LoadArgs {
    #[arg(long, default_value = "large")]
    preset: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds each read is loaded for.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Months of spend backfilled: the product's 13 by default; on `large`
    /// that is 32 million cost rows and hours of set-up, so fewer there.
    #[arg(long, default_value_t = 13)]
    spend_months: u32,
}

/// One read's figures.
struct Figures {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
    errors: u64,
    /// The process's resident memory at the end of the read's load.
    memory_mib: f64,
}

/// Each read loaded in turn.
async fn load_all(
    url: &str,
    reads: &[(&str, Auth)],
    phase: Duration,
) -> Result<Vec<(String, Figures)>> {
    let mut out = Vec::new();
    for (path, auth) in reads {
        out.push((path.to_string(), load(url, path, auth, phase).await?));
    }
    Ok(out)
}

pub async fn run(args: LoadArgs) -> Result<()> {
    let sim = SimChild::start(&args.preset, args.seed, "off").await?;
    let subscriptions = sim.subscription_ids().len();
    // Syncs work as `serve` runs them: on threads of their own at a lower
    // priority.
    let (sync_runtime, background) = cloudkeep_sync::Background::runtime(2)?;
    let setup = SyncSetup::new(&sim, subscriptions, SyncLevel::ReadWriteTags)
        .await?
        .working_in(background);
    setup.spend_months(args.spend_months).await?;
    let (run, wall) = setup.sync().await?;
    println!(
        "{}: {subscriptions} subscriptions synced in {:.1}s (every collector; {} resources, {} cost rows over {} month(s) of spend); {CONNECTIONS} connections, {}s a read",
        args.preset,
        wall.as_secs_f64(),
        run.report.total("inventory", "seen"),
        run.report.total("spend", "rows"),
        args.spend_months,
        args.seconds
    );
    let served = setup.serve_pages().await?;
    let url = served.url.clone();
    let session = setup.sign_in(&url).await?;
    let token = setup.api_token.expose().to_string();
    let mut reads: Vec<(&str, Auth)> = vec![
        ("/api/v1/resources?limit=100", Auth::Token(token.clone())),
        ("/api/v1/connections", Auth::Token(token.clone())),
        ("/api/v1/controls", Auth::Token(token.clone())),
        ("/", Auth::Session(session)),
    ];
    // The spend summary, where the server answers it.
    let probe = reqwest::Client::new()
        .get(format!("{url}/api/v1/spend/summary"))
        .bearer_auth(&token)
        .send()
        .await?;
    if probe.status() == StatusCode::OK {
        reads.insert(2, ("/api/v1/spend/summary", Auth::Token(token.clone())));
    } else {
        println!("(no spend summary on this server: {})", probe.status());
    }
    let phase = Duration::from_secs(args.seconds);
    let mut worst = (f64::MAX, Duration::ZERO, 0u64);
    for during_sync in [false, true] {
        let figures = if during_sync {
            // Full syncs of the preset, one after another, for as long as
            // the reads are loaded.
            let done = std::sync::atomic::AtomicBool::new(false);
            let syncs = async {
                let mut n = 0u32;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    setup.sync().await?;
                    n += 1;
                }
                Ok::<_, anyhow::Error>(n)
            };
            let reads = async {
                let f = load_all(&url, &reads, phase).await;
                done.store(true, std::sync::atomic::Ordering::Relaxed);
                f
            };
            let (syncs, figures) = tokio::join!(syncs, reads);
            println!("  while syncs of the whole preset run ({} ran):", syncs?);
            figures?
        } else {
            println!("  alone:");
            load_all(&url, &reads, phase).await?
        };
        println!(
            "  {:<32} {:>10} {:>8} {:>8} {:>7} {:>11}",
            "read", "requests/s", "p50 ms", "p99 ms", "errors", "memory MiB"
        );
        for (path, f) in figures {
            println!(
                "  {path:<32} {:>10.0} {:>8.1} {:>8.1} {:>7} {:>11.1}",
                f.per_sec,
                ms(f.p50),
                ms(f.p99),
                f.errors,
                f.memory_mib
            );
            worst = (
                worst.0.min(f.per_sec),
                worst.1.max(f.p99),
                worst.2 + f.errors,
            );
        }
    }
    println!(
        "  targets (2 cores): p99 under {} ms, at least {RATE_TARGET:.0} requests/s for each read, no error",
        P99_TARGET.as_millis()
    );
    println!(
        "  slowest p99 {:.1} ms: {}; lowest rate {:.0}/s: {}; errors {}: {}; peak memory {:.1} MiB",
        ms(worst.1),
        verdict(worst.1 < P99_TARGET),
        worst.0,
        verdict(worst.0 >= RATE_TARGET),
        worst.2,
        verdict(worst.2 == 0),
        vm_hwm_kib("/proc/self/status").map(mib).unwrap_or(0.0)
    );
    drop(served);
    drop(setup);
    sync_runtime.shutdown_background();
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How a read authenticates: an API token, or a browser's session cookie.
#[derive(Clone)]
enum Auth {
    Token(String),
    Session(String),
}

/// `CONNECTIONS` clients reading `path` back to back for `phase`.
async fn load(url: &str, path: &str, auth: &Auth, phase: Duration) -> Result<Figures> {
    let until = Instant::now() + phase;
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let (target, auth, errors) = (format!("{url}{path}"), auth.clone(), errors.clone());
        clients.push(tokio::spawn(async move {
            // One connection each.
            let http = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client");
            let mut took = Vec::new();
            while Instant::now() < until {
                let started = Instant::now();
                let request = match &auth {
                    Auth::Token(t) => http.get(&target).bearer_auth(t),
                    Auth::Session(c) => http.get(&target).header("cookie", c),
                };
                let ok = match request.send().await {
                    Ok(r) => r.status() == StatusCode::OK && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    took.push(started.elapsed());
                } else {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            took
        }));
    }
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await?);
    }
    all.sort();
    let at = |q: usize| {
        all.get((all.len() * q).div_ceil(100).saturating_sub(1))
            .copied()
            .unwrap_or_default()
    };
    Ok(Figures {
        per_sec: all.len() as f64 / phase.as_secs_f64(),
        p50: at(50),
        p99: at(99),
        errors: errors.load(std::sync::atomic::Ordering::Relaxed),
        memory_mib: vm_rss_kib().map(mib).unwrap_or(0.0),
    })
}

/// The process's resident memory now.
fn vm_rss_kib() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .ok()
}
