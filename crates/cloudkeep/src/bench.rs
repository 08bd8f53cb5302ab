//! `cloudkeep sim bench`: how fast the simulator serves resource lists and
//! cost queries at scale, and its peak memory. The simulator runs as a child
//! process so that its memory is measured alone.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use clap::Args;
use serde_json::{Value, json};

#[derive(Args)]
pub struct BenchArgs {
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

struct SimChild {
    child: Child,
}

impl Drop for SimChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SimChild {
    /// Peak resident memory of the simulator process, from /proc.
    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }
}

pub async fn run(args: BenchArgs) -> Result<()> {
    let cert_dir = std::env::temp_dir().join(format!("cloudkeep-bench-{}", std::process::id()));
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "sim",
            "--preset",
            &args.preset,
            "--seed",
            &args.seed.to_string(),
            "--listen",
            "127.0.0.1:0",
            "--throttle",
            "off",
            "--cert-dir",
        ])
        .arg(&cert_dir)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the simulator")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let sim = SimChild { child };
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let ready: Value = serde_json::from_str(&line).context("the simulator's ready line")?;
    let url = ready["url"]
        .as_str()
        .ok_or_else(|| anyhow!("no url"))?
        .to_string();
    let ca = std::fs::read(ready["ca"].as_str().ok_or_else(|| anyhow!("no ca"))?)?;
    println!(
        "simulator ({} preset) ready in {:.2}s",
        args.preset,
        started.elapsed().as_secs_f64()
    );

    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .build()?;
    let scenario: Value = http
        .get(format!("{url}/_sim/scenario"))
        .send()
        .await?
        .json()
        .await?;
    let tenant = &scenario["tenants"][0];
    let tid = tenant["tenant_id"].as_str().unwrap_or_default();
    let collector = tenant["service_principals"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["key"] == "collector"))
        .ok_or_else(|| anyhow!("no collector principal"))?;
    let token: Value = http
        .post(format!("{url}/{tid}/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_id",
                collector["client_id"].as_str().unwrap_or_default(),
            ),
            (
                "client_secret",
                collector["client_secret"].as_str().unwrap_or_default(),
            ),
            ("scope", "https://management.azure.com/.default"),
        ])
        .send()
        .await?
        .json()
        .await?;
    let bearer = format!(
        "Bearer {}",
        token["access_token"].as_str().unwrap_or_default()
    );
    let subs: Vec<String> = tenant["subscriptions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s["subscription_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();

    // Resource lists: every resource of N subscriptions, 1000 per page.
    let chosen: Vec<String> = subs.iter().take(args.subscriptions).cloned().collect();
    let t = Instant::now();
    let (pages, rows) = fan_out(&chosen, args.concurrency, |sub| {
        let (http, url, bearer) = (http.clone(), url.clone(), bearer.clone());
        async move {
            let first = format!("{url}/subscriptions/{sub}/resources?api-version=2025-04-01&$expand=createdTime,changedTime&$top=1000");
            follow(&http, &bearer, reqwest::Method::GET, first, None, "value").await
        }
    })
    .await?;
    report("resource list", pages, rows, t.elapsed().as_secs_f64());

    // Cost: one month, daily, by resource id, for the same subscriptions.
    let today = scenario["today"].as_str().unwrap_or_default().to_string();
    let month_ago = minus_days(&today, 30);
    let body = json!({
        "type": "ActualCost", "timeframe": "Custom",
        "timePeriod": {"from": format!("{month_ago}T00:00:00Z"), "to": format!("{today}T23:59:59Z")},
        "dataset": {"granularity": "Daily",
            "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
            "grouping": [{"type": "Dimension", "name": "ResourceId"}]}
    });
    let t = Instant::now();
    let (pages, rows) = fan_out(&chosen, args.concurrency, |sub| {
        let (http, url, bearer, body) = (http.clone(), url.clone(), bearer.clone(), body.clone());
        async move {
            let first = format!("{url}/subscriptions/{sub}/providers/Microsoft.CostManagement/query?api-version=2025-03-01");
            follow(&http, &bearer, reqwest::Method::POST, first, Some(body), "properties.rows").await
        }
    })
    .await?;
    report(
        "cost query (30 days, daily, by resource)",
        pages,
        rows,
        t.elapsed().as_secs_f64(),
    );

    // Cost: a year, monthly, by service, over the whole history of each subscription.
    let year = json!({
        "type": "AmortizedCost", "timeframe": "Custom",
        "timePeriod": {"from": format!("{}T00:00:00Z", minus_days(&today, 364)), "to": format!("{today}T23:59:59Z")},
        "dataset": {"granularity": "Monthly",
            "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
            "grouping": [{"type": "Dimension", "name": "ServiceName"}]}
    });
    let t = Instant::now();
    let (pages, rows) = fan_out(&chosen, args.concurrency, |sub| {
        let (http, url, bearer, body) = (http.clone(), url.clone(), bearer.clone(), year.clone());
        async move {
            let first = format!("{url}/subscriptions/{sub}/providers/Microsoft.CostManagement/query?api-version=2025-03-01");
            follow(&http, &bearer, reqwest::Method::POST, first, Some(body), "properties.rows").await
        }
    })
    .await?;
    report(
        "cost query (12 months, monthly, by service)",
        pages,
        rows,
        t.elapsed().as_secs_f64(),
    );

    match sim.peak_rss_kib() {
        Some(kib) => println!(
            "simulator peak memory (VmHWM): {:.1} MiB",
            kib as f64 / 1024.0
        ),
        None => println!("simulator peak memory: unavailable (no /proc)"),
    }
    let _ = std::fs::remove_dir_all(&cert_dir);
    Ok(())
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

/// Follows `nextLink`s from `first`, counting pages and items.
async fn follow(
    http: &reqwest::Client,
    bearer: &str,
    method: reqwest::Method,
    first: String,
    body: Option<Value>,
    items_at: &str,
) -> Result<(usize, usize)> {
    let (mut pages, mut rows) = (0, 0);
    let mut next = Some(first);
    while let Some(link) = next.take() {
        let mut req = http
            .request(method.clone(), &link)
            .header("authorization", bearer);
        if let Some(b) = &body {
            req = req.json(b);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let page: Value = resp.json().await?;
        if !status.is_success() {
            return Err(anyhow!("{link} answered {status}: {page}"));
        }
        let items = items_at.split('.').fold(&page, |v, k| &v[k]);
        pages += 1;
        rows += items.as_array().map(Vec::len).unwrap_or(0);
        let link = page["nextLink"]
            .as_str()
            .or_else(|| page["properties"]["nextLink"].as_str());
        next = link.map(str::to_string);
    }
    Ok((pages, rows))
}
