//! `cloudkeep bench api`: the `large` preset synced (100,000 resources),
//! then `GET /api/v1/resources` through the real server, unfiltered, by
//! type, by tag k=v and by missing tag, the first page and a deep one:
//! p50 and p95 of each, on SQLite and (with `--postgres`) PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use cloudkeep_domain::SyncLevel;
use cloudkeep_server::{AppState, ServerSettings};
use serde_json::Value;

use super::{SimChild, SyncSetup, verdict};
use crate::client::url_escape as esc;

/// p95 target on SQLite, for every case.
const P95_TARGET: Duration = Duration::from_millis(50);
const RUNS: usize = 20;

#[derive(Args)]
pub struct ApiArgs {
    #[arg(long, default_value = "large")]
    preset: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also measure on this PostgreSQL database (a fresh schema is made in it).
    #[arg(long, env = "CLOUDKEEP_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
}

pub async fn run(args: ApiArgs) -> Result<()> {
    let sim = SimChild::start(&args.preset, args.seed, "off").await?;
    let subscriptions = sim.subscription_ids().len();
    println!("GET /api/v1/resources over {subscriptions} subscriptions, {RUNS} calls a case");
    let sqlite = measure(&sim, subscriptions, None).await?;
    println!(
        "targets (2 cores): p95 under {} ms for every case on SQLite",
        P95_TARGET.as_millis()
    );
    let slowest = sqlite.iter().map(|(_, p95)| *p95).max().unwrap_or_default();
    println!(
        "  slowest p95 on SQLite: {:.1} ms: {}",
        ms(slowest),
        verdict(slowest < P95_TARGET)
    );
    if let Some(base) = &args.postgres {
        let schema = format!("bench_api_{}", std::process::id());
        admin(base, &format!("CREATE SCHEMA {schema}")).await?;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
        let measured = measure(&sim, subscriptions, Some(&url)).await;
        admin(base, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await?;
        measured?;
    } else {
        println!(
            "(PostgreSQL: pass --postgres URL or set CLOUDKEEP_BENCH_POSTGRES_URL to measure it too)"
        );
    }
    Ok(())
}

async fn admin(base: &str, sql: &str) -> Result<()> {
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(base)
        .await
        .context("PostgreSQL")?;
    sqlx::query(sql).execute(&mut c).await?;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Syncs into the store, serves it, and times each case; answers each
/// case's name and p95.
async fn measure(
    sim: &SimChild,
    subscriptions: usize,
    store_url: Option<&str>,
) -> Result<Vec<(String, Duration)>> {
    let setup = SyncSetup::on(sim, subscriptions, SyncLevel::ReadWriteTags, store_url)
        .await?
        .only(&["inventory"]);
    let backend = if store_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let (_, wall) = setup.sync().await?;
    println!("{backend}: synced in {:.2}s", wall.as_secs_f64());
    let state = AppState::new(
        setup.deps.store.clone(),
        setup.deps.keys.clone(),
        setup.deps.azure.clone(),
        ServerSettings::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cloudkeep_server::run(listener, state, None, async move {
        let _ = stopped.await;
    }));
    let api = Api {
        http: reqwest::Client::new(),
        url,
        token: Arc::from(setup.api_token.expose()),
    };
    // Filters from the data itself: the commonest type's rarest sibling, a
    // tag pair, and a key some resources lack.
    let sample = api.get("/api/v1/resources?limit=1000").await?;
    let items = sample["items"].as_array().cloned().unwrap_or_default();
    let Some(first) = items.first() else {
        bail!("the synced store lists no resources");
    };
    let rtype = first["type"].as_str().unwrap_or_default().to_string();
    let (key, value) = items
        .iter()
        .filter_map(|r| r["tags"].as_object())
        .flat_map(|t| t.iter())
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .next()
        .context("no tagged resource")?;
    let cases = [
        ("unfiltered", String::new()),
        ("by type", format!("type={}", esc(&rtype))),
        ("by tag k=v", format!("tag={}={}", esc(&key), esc(&value))),
        ("by missing tag", format!("missing_tag={}", esc(&key))),
    ];
    let mut results = Vec::new();
    println!(
        "  {:<16} {:>8} {:>10} {:>10}",
        "case", "page", "p50 ms", "p95 ms"
    );
    for (name, query) in &cases {
        let base = format!("/api/v1/resources?limit=100&{query}");
        // The deep page: halfway through the filtered list.
        let deep = api.page_at_half(&base).await?;
        for (page, path) in [("first", base.clone()), ("deep", deep)] {
            let (p50, p95) = api.time(&path).await?;
            println!("  {name:<16} {page:>8} {:>10.1} {:>10.1}", ms(p50), ms(p95));
            results.push((format!("{name} {page}"), p95));
        }
    }
    let _ = stop.send(());
    let _ = server.await;
    Ok(results)
}

struct Api {
    http: reqwest::Client,
    url: String,
    token: Arc<str>,
}

impl Api {
    async fn get(&self, path: &str) -> Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&*self.token)
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        if !status.is_success() {
            bail!("{path} answered {status}: {body}");
        }
        Ok(body)
    }

    /// The path of the page halfway through a list (walked once, untimed).
    async fn page_at_half(&self, first: &str) -> Result<String> {
        let mut cursors = Vec::new();
        let mut path = first.to_string();
        loop {
            let page = self.get(&path).await?;
            match page["next"].as_str() {
                Some(next) => {
                    cursors.push(next.to_string());
                    path = format!("{first}&after={}", esc(next));
                }
                None => break,
            }
        }
        Ok(match cursors.get(cursors.len() / 2) {
            Some(c) => format!("{first}&after={}", esc(c)),
            None => first.to_string(),
        })
    }

    /// p50 and p95 of `RUNS` calls.
    async fn time(&self, path: &str) -> Result<(Duration, Duration)> {
        let mut took = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let started = Instant::now();
            self.get(path).await?;
            took.push(started.elapsed());
        }
        took.sort();
        Ok((took[RUNS / 2], took[(RUNS * 95).div_ceil(100) - 1]))
    }
}
