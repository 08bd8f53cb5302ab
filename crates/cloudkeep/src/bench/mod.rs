//! `cloudkeep bench`: benchmarks that print figures (they are commands, not
//! timed tests). Each starts the simulator as a child process, so that the
//! peak memory of each side is its own:
//!
//! - `sim`: how fast the simulator serves resource lists and cost queries;
//! - `inventory`: a full inventory sync of the `large` preset, then one with
//!   nothing changed, through `cloudkeep_sync::sync_connection`;
//! - `writeback`: tag edits written back under Azure's throttling, against
//!   the minimum the simulator's token buckets allow;
//! - `api`: the resource list API over the `large` preset, filtered in SQL,
//!   first and deep pages, on SQLite and PostgreSQL;
//! - `evidence`: an evidence sync of the `large` preset, then one with
//!   nothing changed (which must add no evidence row);
//! - `web`: every page of the web UI on the `demo` and `large` presets;
//! - `flood`: authenticated reads while wrong passwords flood the sign-in;
//! - `load`: 64 connections on the commonest reads, alone and during syncs;
//! - `spend`: a throttled backfill against the query-unit minimum, an
//!   ingest of 10 million rows against a bulk load, and three analyses
//!   against DuckDB;
//! - `anomalies`: spikes injected into the `large` preset's 13 months,
//!   detection time and memory, recall and incidents where nothing was injected.

mod anomalies;
mod api;
mod evidence;
mod flood;
mod inventory;
mod load;
mod sim;
mod spend;
mod web;
mod writeback;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use cloudkeep_azure::{AzureClient, AzureConfig};
use cloudkeep_domain::crypto::LocalKeyFile;
use cloudkeep_domain::{ConnectionId, SecretString, SyncLevel};
use cloudkeep_domain::{RunStatus, SyncTrigger};
use cloudkeep_store::{NewConnection, NewSubscription, OrgScope, Store, SyncRun};
use cloudkeep_sync::SyncDeps;
use serde_json::Value;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The simulator alone: pages and rows per second it serves, and its peak memory.
    Sim(sim::SimBenchArgs),
    /// A full inventory sync of the `large` preset with throttling off, then one with nothing changed.
    Inventory(inventory::InventoryArgs),
    /// Tag edits written back under Azure's throttling, against the minimum its buckets allow.
    Writeback(writeback::WritebackArgs),
    /// The resource list API over the `large` preset: p50 and p95 of filtered, first and deep pages.
    Api(api::ApiArgs),
    /// An evidence sync of the `large` preset with throttling off, then one with nothing changed.
    Evidence(evidence::EvidenceArgs),
    /// 64 connections on each of the commonest reads over the `large` preset, alone and during syncs.
    Load(load::LoadArgs),
    /// Authenticated reads while 64 connections post wrong passwords, against the reads alone.
    Flood(flood::FloodArgs),
    /// Every page of the web UI on the `demo` and `large` presets: p50, p95 and size.
    Web(web::WebArgs),
    /// Spend: a throttled backfill against the query-unit minimum; 10 million rows ingested
    /// against a bulk load; three analyses against DuckDB (and PostgreSQL).
    Spend(spend::SpendArgs),
    /// Anomalies: spikes injected through the simulator, detection over every day;
    /// time, memory, recall and incidents where nothing was injected.
    Anomalies(anomalies::AnomaliesArgs),
}

pub async fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Sim(args) => sim::run(args).await,
        BenchCommand::Inventory(args) => inventory::run(args).await,
        BenchCommand::Writeback(args) => writeback::run(args).await,
        BenchCommand::Api(args) => api::run(args).await,
        BenchCommand::Evidence(args) => evidence::run(args).await,
        BenchCommand::Web(args) => web::run(args).await,
        BenchCommand::Flood(args) => flood::run(args).await,
        BenchCommand::Load(args) => load::run(args).await,
        BenchCommand::Spend(args) => spend::run(args).await,
        BenchCommand::Anomalies(args) => anomalies::run(args).await,
    }
}

/// `cloudkeep sim` running as a child process, with an HTTP client that
/// trusts its CA. Killed, and its certificates removed, on drop.
struct SimChild {
    child: Child,
    cert_dir: PathBuf,
    url: String,
    ca_pem: String,
    http: reqwest::Client,
    scenario: Value,
}

impl Drop for SimChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.cert_dir);
    }
}

impl SimChild {
    /// Starts `cloudkeep sim` on a free port and waits for its ready line.
    async fn start(preset: &str, seed: u64, throttle: &str) -> Result<SimChild> {
        let cert_dir = bench_dir("sim");
        let started = Instant::now();
        let mut child = Command::new(std::env::current_exe()?)
            .args(["sim", "--preset", preset, "--seed", &seed.to_string()])
            .args([
                "--listen",
                "127.0.0.1:0",
                "--throttle",
                throttle,
                "--cert-dir",
            ])
            .arg(&cert_dir)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the simulator")?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        // Owned from here, so an early return still stops the child.
        let mut sim = SimChild {
            child,
            cert_dir,
            url: String::new(),
            ca_pem: String::new(),
            http: reqwest::Client::new(),
            scenario: Value::Null,
        };
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let ready: Value = serde_json::from_str(&line).context("the simulator's ready line")?;
        sim.url = ready["url"]
            .as_str()
            .ok_or_else(|| anyhow!("no url in the ready line"))?
            .to_string();
        let ca = ready["ca"]
            .as_str()
            .ok_or_else(|| anyhow!("no ca in the ready line"))?;
        sim.ca_pem = std::fs::read_to_string(ca).with_context(|| format!("reading {ca}"))?;
        sim.http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(sim.ca_pem.as_bytes())?)
            .build()?;
        sim.scenario = sim.control_get("/_sim/scenario").await?;
        println!(
            "simulator ({preset} preset, throttle {throttle}) ready in {:.2}s",
            started.elapsed().as_secs_f64()
        );
        Ok(sim)
    }

    async fn control_get(&self, path: &str) -> Result<Value> {
        let response = self.http.get(format!("{}{path}", self.url)).send().await?;
        let status = response.status();
        if !status.is_success() {
            bail!("{path} answered {status}");
        }
        Ok(response.json().await?)
    }

    /// Peak resident memory of the simulator process.
    fn peak_rss_kib(&self) -> Option<u64> {
        vm_hwm_kib(&format!("/proc/{}/status", self.child.id()))
    }

    /// CPU time the simulator process has used so far, every thread's.
    fn cpu_secs(&self) -> Option<f64> {
        cpu_secs(&format!("/proc/{}/stat", self.child.id()))
    }

    fn tenant(&self) -> &Value {
        &self.scenario["tenants"][0]
    }

    fn tenant_id(&self) -> Result<&str> {
        self.tenant()["tenant_id"]
            .as_str()
            .ok_or_else(|| anyhow!("the scenario has no tenant"))
    }

    /// A service principal of the scenario's tenant, by key (`collector`, ...).
    fn principal(&self, key: &str) -> Result<&Value> {
        self.tenant()["service_principals"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["key"] == key))
            .ok_or_else(|| anyhow!("the scenario has no '{key}' principal"))
    }

    fn subscription_ids(&self) -> Vec<String> {
        self.tenant()["subscriptions"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s["subscription_id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A bearer header for ARM calls made by the benchmark itself, as `key`.
    async fn bearer(&self, key: &str) -> Result<String> {
        let p = self.principal(key)?;
        let field = |name: &str| p[name].as_str().unwrap_or_default().to_string();
        let token: Value = self
            .http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.url,
                self.tenant_id()?
            ))
            .form(&[
                ("grant_type", "client_credentials".to_string()),
                ("client_id", field("client_id")),
                ("client_secret", field("client_secret")),
                ("scope", "https://management.azure.com/.default".into()),
            ])
            .send()
            .await?
            .json()
            .await?;
        let access = token["access_token"]
            .as_str()
            .ok_or_else(|| anyhow!("no token for '{key}': {token}"))?;
        Ok(format!("Bearer {access}"))
    }

    /// The simulator's request log after `seq`.
    async fn requests_since(&self, seq: u64) -> Result<Vec<Value>> {
        match self
            .control_get(&format!("/_sim/requests?since={seq}"))
            .await?
        {
            Value::Array(entries) => Ok(entries),
            other => bail!("the request log is not a list: {other}"),
        }
    }

    /// The sequence number of the last logged request.
    async fn last_seq(&self) -> Result<u64> {
        Ok(self
            .requests_since(0)
            .await?
            .last()
            .and_then(|e| e["seq"].as_u64())
            .unwrap_or(0))
    }
}

/// A fresh folder for one benchmark's files, under the temporary directory.
fn bench_dir(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("cloudkeep-bench-{what}-{}", std::process::id()))
}

/// `VmHWM` (peak resident memory) in KiB from a `/proc/.../status` file.
fn vm_hwm_kib(status_file: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time (user and system, every thread's) in seconds from a
/// `/proc/.../stat` file. Its clock ticks are Linux's `USER_HZ`, which the
/// kernel fixes at 100 for what it shows to user space.
fn cpu_secs(stat_file: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(stat_file).ok()?;
    // The command name, in parentheses, may hold spaces: fields count from
    // after it, where `utime` and `stime` are the 12th and 13th.
    let mut fields = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// "met" or "NOT met", for a target line.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// A fresh SQLite store with one organisation and one connection to the
/// simulator's tenant as its `collector` principal, over the first
/// `subscriptions` subscriptions at `level`: what a sync benchmark syncs.
struct SyncSetup {
    deps: SyncDeps,
    scope: OrgScope,
    connection: ConnectionId,
    /// The organisation owner's API token.
    api_token: SecretString,
    /// The owner's email and password, to sign in to the pages.
    owner_email: String,
    owner_password: SecretString,
    dir: PathBuf,
    /// The collectors a sync runs (all when `None`).
    only: Option<&'static [&'static str]>,
}

impl Drop for SyncSetup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl SyncSetup {
    async fn new(sim: &SimChild, subscriptions: usize, level: SyncLevel) -> Result<SyncSetup> {
        Self::on(sim, subscriptions, level, None).await
    }

    /// The same, on the store at `store_url` (a fresh SQLite file when none).
    async fn on(
        sim: &SimChild,
        subscriptions: usize,
        level: SyncLevel,
        store_url: Option<&str>,
    ) -> Result<SyncSetup> {
        let dir = bench_dir("store");
        let _ = std::fs::remove_dir_all(&dir);
        let url = match store_url {
            Some(u) => u.to_string(),
            None => format!("sqlite://{}", dir.join("cloudkeep.db").display()),
        };
        let store = Store::open(&url)
            .await
            .context("opening the benchmark's store")?;
        let keys = LocalKeyFile::open_or_create(&dir.join("master.key"))?;
        let org = crate::commands::create_org(&store, "Bench", "owner@bench.cloudkeep.dev").await?;
        let scope = store.operator_scope(org.org_id).await?;

        let collector = sim.principal("collector")?;
        let text = |v: &Value, name: &str| -> Result<String> {
            v[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("the scenario has no {name}"))
        };
        let connection = ConnectionId::new();
        let credential = store
            .seal_credential(
                &scope,
                &keys,
                connection,
                &SecretString::new(text(collector, "client_secret")?),
            )
            .await?;
        let subs = sim
            .subscription_ids()
            .into_iter()
            .take(subscriptions)
            .map(|azure_id| NewSubscription {
                display_name: azure_id.clone(),
                azure_id,
                sync_level: level,
                permissions: Default::default(),
            })
            .collect();
        store
            .create_connection(
                &scope,
                NewConnection {
                    id: connection,
                    name: "Simulated tenant".into(),
                    tenant_id: sim.tenant_id()?.to_string(),
                    client_id: text(collector, "client_id")?,
                    principal_id: text(collector, "object_id")?,
                    credential: cloudkeep_store::ConnectionCredential::ClientSecret(credential),
                    cadence_secs: 86_400,
                    stale_after_secs: 172_800,
                    subscriptions: subs,
                    actor: "system:bench".into(),
                },
            )
            .await?;
        let azure = AzureClient::new(AzureConfig {
            authority_host: sim.url.clone(),
            arm_endpoint: sim.url.clone(),
            extra_ca_pem: Some(sim.ca_pem.clone()),
            ..AzureConfig::default()
        })?;
        Ok(SyncSetup {
            deps: SyncDeps {
                store,
                azure,
                keys: Arc::new(keys),
                operator: None,
                // The benchmarks of a sync's own speed run it alone, at
                // the default priority; `bench load` runs it as `serve` does.
                background: cloudkeep_sync::Background::inline(),
            },
            scope,
            connection,
            api_token: org.api_token,
            owner_email: org.owner_email,
            owner_password: org.password,
            dir,
            only: None,
        })
    }

    /// A token of the connection's principal, as a sync gets one.
    async fn token(&self, sim: &SimChild) -> Result<cloudkeep_azure::AccessToken> {
        let p = sim.principal("collector")?;
        let field = |name: &str| p[name].as_str().unwrap_or_default().to_string();
        Ok(self
            .deps
            .azure
            .client_credentials_token(
                sim.tenant_id()?,
                &field("client_id"),
                &SecretString::new(field("client_secret")),
            )
            .await?)
    }

    /// Serves the synced store with the web UI on a free port, until the
    /// answer is dropped.
    async fn serve_pages(&self) -> Result<Served> {
        let state = cloudkeep_server::AppState::new(
            self.deps.store.clone(),
            self.deps.keys.clone(),
            self.deps.azure.clone(),
            cloudkeep_server::ServerSettings::default(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let router = cloudkeep_web::app(state.clone());
        tokio::spawn(cloudkeep_server::serve(
            listener,
            state,
            router,
            None,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok(Served { url, _stop: stop })
    }

    /// Signs the owner in through the sign-in form, as a person does;
    /// answers the session cookie (`name=value`).
    async fn sign_in(&self, url: &str) -> Result<String> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let form = http.get(format!("{url}/login")).send().await?;
        let login_cookie = first_cookie(&form, "")?;
        let page = form.text().await?;
        let marker = "name=\"_login\" value=\"";
        let from = page.find(marker).context("the sign-in form's token")? + marker.len();
        let token = &page[from..from + page[from..].find('"').context("the token's end")?];
        let signed_in = http
            .post(format!("{url}/login"))
            .header("cookie", login_cookie)
            .form(&[
                ("email", self.owner_email.as_str()),
                ("password", self.owner_password.expose()),
                ("_login", token),
                ("next", "/"),
            ])
            .send()
            .await?;
        if signed_in.status() != reqwest::StatusCode::SEE_OTHER {
            bail!("signing in answered {}", signed_in.status());
        }
        first_cookie(&signed_in, cloudkeep_server::SESSION_COOKIE)
    }

    /// The same, its syncs running only these collectors.
    /// Backfills only the last `months` months of spend (the benchmarks
    /// that load reads need the preset's data, not its whole history:
    /// 13 months of `large` is 32 million cost rows).
    async fn spend_months(&self, months: u32) -> Result<()> {
        let today = self.deps.store.now().date_naive();
        let this_month = cloudkeep_domain::spend::month_start(today);
        let position = cloudkeep_store::Backfill {
            start_month: cloudkeep_domain::spend::months_before(today, months.max(1) - 1),
            next_month: Some(this_month),
            months_done: 0,
            months_total: months.max(1),
            pulled_through: None,
        };
        for sub in self.deps.store.subscriptions(&self.scope).await? {
            self.deps
                .store
                .set_spend_backfill(&self.scope, &sub, &position)
                .await?;
        }
        Ok(())
    }

    /// Syncs work where `background` says.
    fn working_in(mut self, background: cloudkeep_sync::Background) -> SyncSetup {
        self.deps.background = background;
        self
    }

    fn only(mut self, collectors: &'static [&'static str]) -> SyncSetup {
        self.only = Some(collectors);
        self
    }

    /// One sync through the real code path; answers the run and its wall time.
    async fn sync(&self) -> Result<(SyncRun, Duration)> {
        let started = Instant::now();
        let collectors = match self.only {
            Some(names) => cloudkeep_sync::collectors::named(names),
            None => cloudkeep_sync::collectors::all(),
        };
        let run = cloudkeep_sync::sync_connection_with(
            &self.deps,
            &self.scope,
            self.connection,
            SyncTrigger::Manual,
            "system:bench",
            collectors,
        )
        .await?;
        let wall = started.elapsed();
        if run.status != RunStatus::Succeeded {
            let why: Vec<&str> = run
                .report
                .errors
                .iter()
                .map(|e| e.message.as_str())
                .collect();
            bail!("the sync {}: {}", run.status, why.join("; "));
        }
        Ok((run, wall))
    }
}

/// The web UI served for a benchmark; dropping it stops the server.
struct Served {
    url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The first cookie an answer sets whose name starts with `prefix`, as
/// `name=value`.
fn first_cookie(answer: &reqwest::Response, prefix: &str) -> Result<String> {
    answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|c| c.starts_with(prefix))
        .find_map(|c| c.split(';').next().map(str::to_string))
        .with_context(|| format!("the answer sets no cookie {prefix}…"))
}

/// Sums one collector's count over every subscription of a run.
fn total(run: &SyncRun, step: &str, count: &str) -> u64 {
    run.report.total(step, count)
}

/// Requests of a log slice by kind: `(token, ARM reads, ARM writes)`.
fn request_mix(log: &[Value]) -> (usize, usize, usize) {
    let token = log
        .iter()
        .filter(|e| e["path"].as_str().is_some_and(|p| p.ends_with("/token")))
        .count();
    let writes = log
        .iter()
        .filter(|e| matches!(e["method"].as_str(), Some("PATCH" | "PUT" | "DELETE")))
        .count();
    (token, log.len() - token - writes, writes)
}

/// Follows `nextLink`s from `first` with `bearer`, handing each page to
/// `on_page`; answers the number of pages. A 429 waits its `Retry-After`.
async fn follow(
    http: &reqwest::Client,
    bearer: &str,
    method: reqwest::Method,
    first: String,
    body: Option<&Value>,
    mut on_page: impl FnMut(&Value),
) -> Result<usize> {
    let mut pages = 0;
    let mut next = Some(first);
    while let Some(link) = next.take() {
        let mut request = http
            .request(method.clone(), &link)
            .header("authorization", bearer);
        if let Some(b) = body {
            request = request.json(b);
        }
        let response = request.send().await?;
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            let wait = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            next = Some(link);
            continue;
        }
        let page: Value = response.json().await?;
        if !status.is_success() {
            bail!("{link} answered {status}: {page}");
        }
        pages += 1;
        on_page(&page);
        next = page["nextLink"]
            .as_str()
            .or_else(|| page["properties"]["nextLink"].as_str())
            .map(str::to_string);
    }
    Ok(pages)
}

/// What a spend projection's build made, in a line.
fn projection_built(built: &cloudkeep_store::SpendColumnStats) -> String {
    format!(
        "columnar projection of {} rows built in {} ({:.1} MiB, {:.1} bytes a row)",
        built.rows,
        built
            .built_in
            .map(|t| format!("{:.1}s", t.as_secs_f64()))
            .unwrap_or_else(|| "- (built already)".into()),
        built.bytes as f64 / (1024.0 * 1024.0),
        built.bytes as f64 / built.rows.max(1) as f64
    )
}
