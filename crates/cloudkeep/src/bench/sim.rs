//! `cloudkeep bench sim`: how fast the simulator serves resource lists and
//! cost queries at scale, and its peak memory.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};

use super::{SimChild, follow, mib};

#[derive(Args)]
pub struct SimBenchArgs {
    /// Preset to measure.
    #[arg(long, default_value = "large")]
    preset: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many subscriptions' resources to list in full.
    #[arg(long, default_value_t = 10)]
    subscriptions: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

pub async fn run(args: SimBenchArgs) -> Result<()> {
    let sim = SimChild::start(&args.preset, args.seed, "off").await?;
    let bearer = sim.bearer("collector").await?;
    let (http, url) = (sim.http.clone(), sim.url.clone());

    // Resource lists: every resource of N subscriptions, 1000 per page.
    let chosen: Vec<String> = sim
        .subscription_ids()
        .into_iter()
        .take(args.subscriptions)
        .collect();
    let t = Instant::now();
    let (pages, rows) = fan_out(&chosen, args.concurrency, |sub| {
        let (http, url, bearer) = (http.clone(), url.clone(), bearer.clone());
        async move {
            let first = format!("{url}/subscriptions/{sub}/resources?api-version=2025-04-01&$expand=createdTime,changedTime&$top=1000");
            count_rows(&http, &bearer, reqwest::Method::GET, first, None, "value").await
        }
    })
    .await?;
    report("resource list", pages, rows, t.elapsed().as_secs_f64());

    // Cost: one month, daily, by resource id, for the same subscriptions.
    let today = sim.scenario["today"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let month_ago = minus_days(&today, 30);
    let body = json!({
        "type": "ActualCost", "timeframe": "Custom",
        "timePeriod": {"from": format!("{month_ago}T00:00:00Z"), "to": format!("{today}T23:59:59Z")},
        "dataset": {"granularity": "Daily",
            "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
            "grouping": [{"type": "Dimension", "name": "ResourceId"}]}
    });
    let cost = Cost {
        sim: &sim,
        bearer: &bearer,
        subscriptions: &chosen,
        concurrency: args.concurrency,
    };
    cost.measure("cost query (30 days, daily, by resource)", body)
        .await?;

    // Cost: a year, monthly, by service, over the whole history of each subscription.
    let year = json!({
        "type": "AmortizedCost", "timeframe": "Custom",
        "timePeriod": {"from": format!("{}T00:00:00Z", minus_days(&today, 364)), "to": format!("{today}T23:59:59Z")},
        "dataset": {"granularity": "Monthly",
            "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
            "grouping": [{"type": "Dimension", "name": "ServiceName"}]}
    });
    cost.measure("cost query (12 months, monthly, by service)", year)
        .await?;

    match sim.peak_rss_kib() {
        Some(kib) => println!("simulator peak memory (VmHWM): {:.1} MiB", mib(kib)),
        None => println!("simulator peak memory: unavailable (no /proc)"),
    }
    Ok(())
}

/// Cost queries over the chosen subscriptions, `concurrency` at a time.
struct Cost<'a> {
    sim: &'a SimChild,
    bearer: &'a str,
    subscriptions: &'a [String],
    concurrency: usize,
}

impl Cost<'_> {
    /// Runs `body` on every subscription and reports the pages and rows.
    async fn measure(&self, what: &str, body: Value) -> Result<()> {
        let t = Instant::now();
        let (pages, rows) = fan_out(self.subscriptions, self.concurrency, |sub| {
            let (http, url, bearer, body) = (
                self.sim.http.clone(),
                self.sim.url.clone(),
                self.bearer.to_string(),
                body.clone(),
            );
            async move {
                let first = format!("{url}/subscriptions/{sub}/providers/Microsoft.CostManagement/query?api-version=2025-03-01");
                count_rows(&http, &bearer, reqwest::Method::POST, first, Some(body), "properties.rows").await
            }
        })
        .await?;
        report(what, pages, rows, t.elapsed().as_secs_f64());
        Ok(())
    }
}

fn report(what: &str, pages: usize, rows: usize, secs: f64) {
    println!(
        "{what}: {pages} pages, {rows} rows in {secs:.2}s = {:.1} pages/s, {:.0} rows/s",
        pages as f64 / secs,
        rows as f64 / secs
    );
}

fn minus_days(date: &str, days: i64) -> String {
    chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map(|d| (d - chrono::Duration::days(days)).to_string())
        .unwrap_or_else(|_| date.to_string())
}

async fn fan_out<F, Fut>(items: &[String], concurrency: usize, job: F) -> Result<(usize, usize)>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(usize, usize)>> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    let mut queue = items.iter().cloned();
    let (mut pages, mut rows) = (0, 0);
    for item in queue.by_ref().take(concurrency.max(1)) {
        set.spawn(job(item));
    }
    while let Some(done) = set.join_next().await {
        let (p, r) = done??;
        pages += p;
        rows += r;
        if let Some(item) = queue.next() {
            set.spawn(job(item));
        }
    }
    Ok((pages, rows))
}

/// Pages and items of a paged answer, items found at the dotted path `items_at`.
async fn count_rows(
    http: &reqwest::Client,
    bearer: &str,
    method: reqwest::Method,
    first: String,
    body: Option<Value>,
    items_at: &str,
) -> Result<(usize, usize)> {
    let mut rows = 0;
    let pages = follow(http, bearer, method, first, body.as_ref(), |page| {
        let items = items_at.split('.').fold(page, |v, k| &v[k]);
        rows += items.as_array().map(Vec::len).unwrap_or(0);
    })
    .await?;
    Ok((pages, rows))
}
