//! `cloudkeep bench web`: every page of the web UI through the real server,
//! signed in as the organisation's owner, on the `demo` preset and on the
//! `large` one (each synced with every collector first): the first load,
//! p50 and p95 of 20 loads a page and its size, against the targets (p95 under 100 ms on the
//! demo, under 300 ms on `large`, every page under 200 KB).
//!
//! The time is what the client waits on loopback for the whole page, so it
//! is the server's time plus a negligible transfer.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use cloudkeep_domain::SyncLevel;
use reqwest::{StatusCode, redirect};
use serde_json::{Value, json};

use super::{SimChild, SyncSetup, verdict};

const RUNS: usize = 20;
const SIZE_TARGET: usize = 200 * 1024;

#[derive(Args)]
pub struct WebArgs {
    /// The presets to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "demo,large")]
    presets: Vec<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Subscriptions synced on `large` (all 50 by default). Each holds
    /// about 650,000 cost rows over its 13 months.
    #[arg(long)]
    large_subscriptions: Option<usize>,
    /// Months of spend backfilled: the product's 13 by default. On all of
    /// `large` that is 32 million cost rows: a backfill of about 25
    /// minutes, then an anomaly review of every day of a few minutes.
    #[arg(long, default_value_t = 13)]
    spend_months: u32,
}

/// The p95 target on a preset.
fn p95_target(preset: &str) -> Duration {
    if preset == "demo" {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(300)
    }
}

pub async fn run(args: WebArgs) -> Result<()> {
    for preset in &args.presets {
        let limit = (preset == "large")
            .then_some(args.large_subscriptions)
            .flatten();
        measure(preset, args.seed, limit, args.spend_months).await?;
    }
    Ok(())
}

async fn measure(preset: &str, seed: u64, limit: Option<usize>, spend_months: u32) -> Result<()> {
    let sim = SimChild::start(preset, seed, "off").await?;
    let all = sim.subscription_ids().len();
    let subscriptions = limit.unwrap_or(all).clamp(1, all);
    let setup = SyncSetup::new(&sim, subscriptions, SyncLevel::ReadWriteTags).await?;
    setup.spend_months(spend_months).await?;
    let (run, wall) = setup.sync().await?;
    println!(
        "{preset}: {subscriptions} of {all} subscriptions synced in {:.2}s (every collector; {} resources, {} cost rows over {spend_months} month(s) of spend)",
        wall.as_secs_f64(),
        run.report.total("inventory", "seen"),
        run.report.total("spend", "rows"),
    );
    // A server builds an organisation's spend projection at its first
    // analysis and answers through SQL meanwhile; the pages are timed
    // once it stands, as they are served from then on.
    let built = setup.deps.store.spend_columns_warm(&setup.scope).await?;
    println!("{preset}: {}", super::projection_built(&built));
    let served = setup.serve_pages().await?;
    let browser = Browser {
        http: reqwest::Client::builder()
            .redirect(redirect::Policy::none())
            .build()?,
        url: served.url.clone(),
        session: setup.sign_in(&served.url).await?,
        api_token: setup.api_token.expose().to_string(),
    };
    let pages = browser.pages(&setup).await?;

    let target = p95_target(preset);
    println!(
        "  {:<56} {:>8} {:>8} {:>8} {:>9}",
        "page", "first ms", "p50 ms", "p95 ms", "size KB"
    );
    let mut slowest = (String::new(), Duration::ZERO);
    let mut largest = (String::new(), 0usize);
    for path in &pages {
        let Timing {
            first,
            p50,
            p95,
            size,
        } = browser.time(path).await?;
        println!(
            "  {path:<56} {:>8.1} {:>8.1} {:>8.1} {:>9.1}",
            ms(first),
            ms(p50),
            ms(p95),
            size as f64 / 1024.0
        );
        if p95 > slowest.1 {
            slowest = (path.clone(), p95);
        }
        if size > largest.1 {
            largest = (path.clone(), size);
        }
    }
    println!(
        "  targets (2 cores): p95 under {} ms on {preset}, every page under {} KB",
        target.as_millis(),
        SIZE_TARGET / 1024
    );
    println!(
        "  slowest p95: {:.1} ms ({}): {}",
        ms(slowest.1),
        slowest.0,
        verdict(slowest.1 < target)
    );
    println!(
        "  largest page: {:.1} KB ({}): {}",
        largest.1 as f64 / 1024.0,
        largest.0,
        verdict(largest.1 < SIZE_TARGET)
    );
    drop(served);
    Ok(())
}

/// A page's loads: the first (its own answers not kept yet, though pages
/// loaded before may have kept some it reads), p50 and p95 of all, and its
/// size in bytes.
struct Timing {
    first: Duration,
    p50: Duration,
    p95: Duration,
    size: usize,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A signed-in browser without scripts: its session cookie, no redirects
/// followed.
struct Browser {
    http: reqwest::Client,
    url: String,
    session: String,
    api_token: String,
}

impl Browser {
    /// Every page a person reads (the GET routes), with the ids of real rows.
    async fn pages(&self, setup: &SyncSetup) -> Result<Vec<String>> {
        let first = |v: Value, what: &str| -> Result<String> {
            v["items"][0]["id"]
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("the store lists no {what}"))
        };
        let resource = first(self.api("/api/v1/resources?limit=1").await?, "resource")?;
        let evidence = first(self.api("/api/v1/evidence?limit=1").await?, "evidence")?;
        let run = first(self.api("/api/v1/sync-runs?limit=1").await?, "sync run")?;
        let connection = setup.connection.to_string();
        // An assessment of the last 30 days with its evidence attached, and
        // a budget, as an organisation that uses them has.
        let now = chrono::Utc::now();
        let assessment = self
            .api_post(
                "/api/v1/assessments",
                json!({"name": "bench", "period_start": (now - chrono::Duration::days(30)).to_rfc3339(),
                       "period_end": now.to_rfc3339(), "controls": ["CC6.1", "CC6.6", "CC7.1"]}),
            )
            .await?["id"]
            .as_str()
            .context("an assessment id")?
            .to_string();
        self.api_post(
            &format!("/api/v1/assessments/{assessment}/evidence"),
            json!({"all_in_scope": true}),
        )
        .await?;
        let budget = self
            .api_post(
                "/api/v1/budgets",
                json!({"name": "bench", "amount": 1000.0, "actual_thresholds": [80, 100], "forecast_thresholds": [100]}),
            )
            .await?["id"]
            .as_str()
            .context("a budget id")?
            .to_string();
        let anomaly = self.api("/api/v1/spend/anomalies?limit=1").await?["items"][0]["id"]
            .as_str()
            .map(str::to_string);
        let mut pages = Vec::new();
        for (method, pattern) in cloudkeep_web::pages::ROUTES {
            if *method != "GET" || pattern.contains("/consent/") {
                continue;
            }
            let id = match pattern.split('/').nth(1) {
                Some("resources") => resource.as_str(),
                Some("evidence") => &evidence,
                Some("sync-runs") => &run,
                Some("connections") => &connection,
                Some("controls") => "CC6.1",
                Some("assessments") => &assessment,
                Some("budgets") => &budget,
                Some("anomalies") if pattern.contains("{id}") => match &anomaly {
                    Some(id) => id,
                    None => {
                        println!("  (no anomaly incident in this data: {pattern} not measured)");
                        continue;
                    }
                },
                _ => "",
            };
            pages.push(pattern.replace("{id}", id));
        }
        // The lists as a person narrows them.
        pages.push("/resources?missing_tag=owner".into());
        pages.push("/evidence?result=fail".into());
        Ok(pages)
    }

    async fn api_post(&self, path: &str, body: Value) -> Result<Value> {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.api_token)
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let answer: Value = r.json().await?;
        if !status.is_success() {
            bail!("POST {path} answered {status}: {answer}");
        }
        Ok(answer)
    }

    async fn api(&self, path: &str) -> Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.api_token)
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        if !status.is_success() {
            bail!("{path} answered {status}: {body}");
        }
        Ok(body)
    }

    /// `RUNS` loads of a page.
    async fn time(&self, path: &str) -> Result<Timing> {
        let mut took = Vec::with_capacity(RUNS);
        let mut size = 0;
        for _ in 0..RUNS {
            let started = Instant::now();
            let r = self
                .http
                .get(format!("{}{path}", self.url))
                .header("cookie", &self.session)
                .send()
                .await?;
            let status = r.status();
            let body = r.bytes().await?;
            took.push(started.elapsed());
            if status != StatusCode::OK {
                bail!("{path} answered {status}");
            }
            size = body.len();
        }
        let first = took[0];
        took.sort();
        Ok(Timing {
            first,
            p50: took[RUNS / 2],
            p95: took[(RUNS * 95).div_ceil(100) - 1],
            size,
        })
    }
}
