//! `cloudkeep bench flood`: authenticated reads (`GET /api/v1/connections`)
//! while 64 unauthenticated connections post wrong passwords, against the
//! same reads alone, through the real server on a fresh SQLite store.
//!
//! Two floods: from one address with the limits as deployed (the address
//! is soon made to wait, so most attempts are refused before any password
//! work), and with the per-address limit off and a new email each time
//! (as a flood from many addresses would be), where every attempt costs a
//! password check and only the bounded pool keeps it from the reads.
//! Target: the reads keep at least 80% of their throughput in both.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use cloudkeep_azure::{AzureClient, AzureConfig};
use cloudkeep_domain::crypto::LocalKeyFile;
use cloudkeep_server::{AppState, ServerSettings};
use cloudkeep_store::Store;
use serde_json::json;

use super::{bench_dir, verdict};

const FLOODERS: usize = 64;
const READERS: usize = 4;

#[derive(Args)]
pub struct FloodArgs {
    /// Seconds each phase lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
}

/// Reads per second and their p99 over one phase.
struct Reads {
    per_sec: f64,
    p99: Duration,
}

pub async fn run(args: FloodArgs) -> Result<()> {
    let phase = Duration::from_secs(args.seconds);
    let dir = bench_dir("flood");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let store = Store::open(&format!("sqlite://{}", dir.join("cloudkeep.db").display()))
        .await
        .context("opening the benchmark's store")?;
    let keys = Arc::new(LocalKeyFile::open_or_create(&dir.join("master.key"))?);
    let org = crate::commands::create_org(&store, "Bench", "owner@bench.cloudkeep.dev").await?;
    let token = org.api_token.expose().to_string();
    println!(
        "GET /api/v1/connections from {READERS} clients, {FLOODERS} connections posting wrong passwords, {}s a phase",
        args.seconds
    );
    println!(
        "  {:<44} {:>10} {:>10} {:>12} {:>10}",
        "phase", "reads/s", "p99 ms", "sign-ins/s", "refused"
    );
    let mut ratios = Vec::new();
    let mut baseline = None;
    for (name, by_address, flood) in [
        ("reads alone", true, false),
        ("flood from one address, limits on", true, true),
        ("flood of new emails, address limit off", false, true),
    ] {
        let state = AppState::new(
            store.clone(),
            keys.clone(),
            AzureClient::new(AzureConfig::default())?,
            ServerSettings {
                limit_sign_ins_by_address: by_address,
                ..ServerSettings::default()
            },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(cloudkeep_server::run(listener, state, None, async move {
            let _ = stopped.await;
        }));
        let done = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let mut flooders = Vec::new();
        if flood {
            for i in 0..FLOODERS {
                let (url, done, attempts, refused) =
                    (url.clone(), done.clone(), attempts.clone(), refused.clone());
                flooders.push(tokio::spawn(async move {
                    // One connection each, as the flood that was measured.
                    let http = reqwest::Client::builder()
                        .pool_max_idle_per_host(1)
                        .build()
                        .expect("client");
                    let mut n = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        n += 1;
                        let email = if by_address {
                            format!("owner{}@bench.cloudkeep.dev", i % 4)
                        } else {
                            format!("guess-{i}-{n}@bench.cloudkeep.dev")
                        };
                        let answer = http
                            .post(format!("{url}/api/v1/auth/login"))
                            .json(&json!({"email": email, "password": "not the password"}))
                            .send()
                            .await;
                        attempts.fetch_add(1, Ordering::Relaxed);
                        if answer.is_ok_and(|r| r.status() == 429) {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
            // Let the flood reach its pace first.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let started_attempts = attempts.load(Ordering::Relaxed);
        let reads = read(&url, &token, phase).await?;
        let sign_ins =
            (attempts.load(Ordering::Relaxed) - started_attempts) as f64 / phase.as_secs_f64();
        done.store(true, Ordering::Relaxed);
        for f in flooders {
            let _ = f.await;
        }
        let _ = stop.send(());
        let _ = server.await;
        println!(
            "  {name:<44} {:>10.0} {:>10.1} {:>12.0} {:>10}",
            reads.per_sec,
            reads.p99.as_secs_f64() * 1000.0,
            sign_ins,
            refused.load(Ordering::Relaxed)
        );
        match baseline {
            None => baseline = Some(reads.per_sec),
            Some(b) => ratios.push((name, reads.per_sec / b)),
        }
    }
    println!("  target (2 cores): the reads keep at least 80% of their throughput during a flood");
    for (name, ratio) in ratios {
        println!(
            "  {name}: {:.0}% of the reads alone: {}",
            ratio * 100.0,
            verdict(ratio >= 0.8)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `READERS` clients reading as fast as answers come, for `phase`.
async fn read(url: &str, token: &str, phase: Duration) -> Result<Reads> {
    let until = Instant::now() + phase;
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let (url, token) = (url.to_string(), token.to_string());
        readers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut took = Vec::new();
            while Instant::now() < until {
                let started = Instant::now();
                let r = http
                    .get(format!("{url}/api/v1/connections"))
                    .bearer_auth(&token)
                    .send()
                    .await?;
                anyhow::ensure!(r.status().is_success(), "a read answered {}", r.status());
                r.bytes().await?;
                took.push(started.elapsed());
            }
            Ok::<_, anyhow::Error>(took)
        }));
    }
    let mut all = Vec::new();
    for r in readers {
        all.extend(r.await??);
    }
    all.sort();
    let p99 = all
        .get((all.len() * 99).div_ceil(100).saturating_sub(1))
        .copied()
        .unwrap_or_default();
    Ok(Reads {
        per_sec: all.len() as f64 / phase.as_secs_f64(),
        p99,
    })
}
