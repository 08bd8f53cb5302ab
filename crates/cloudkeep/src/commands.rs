//! The commands behind the CLI: serve, demo, admin and audit.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use cloudkeep_azure::AzureClient;
use cloudkeep_domain::crypto::{KeyProvider, LocalKeyFile};
use cloudkeep_domain::password::{hash_password, random_password};
use cloudkeep_domain::{OrgId, SecretString};
use cloudkeep_server::{AppState, ServerSettings};
use cloudkeep_store::{NewOrganisation, Store};
use cloudkeep_sync::Background;
use serde_json::json;

use crate::config::Config;

/// Opens the store (sealing its audit chain with the audit key file) and
/// the master key file the configuration names.
async fn open(config: &Config) -> Result<(Store, LocalKeyFile)> {
    let chain_keys = LocalKeyFile::open_or_create(&config.audit_key_file)?;
    let store = Store::open(&config.store_url)
        .await
        .with_context(|| {
            format!(
                "opening the store at {}",
                cloudkeep_store::redact_url(&config.store_url)
            )
        })?
        .with_chain_keys(Arc::new(chain_keys))
        .with_spend_column_rows(config.spend_column_rows);
    let keys = LocalKeyFile::open_or_create(&config.key_file)?;
    Ok((store, keys))
}

/// Adds a new audit key in front of the audit key file: new events are
/// sealed with it; the old keys stay, since older events are sealed with
/// them. Restart every `serve` afterwards (a running one keeps the keys it
/// read).
pub fn rotate_audit_key(config: Config) -> Result<()> {
    let mut keys = LocalKeyFile::open_or_create(&config.audit_key_file)?;
    let id = keys.begin_rotation()?;
    println!(
        "audit key rotated: new events are sealed with {id}; {} older keys kept for the events sealed with them",
        keys.key_ids().len() - 1
    );
    Ok(())
}

/// Seals the chains written before the installation had audit keys; fails
/// (after sealing the rest) if any of them did not verify.
pub async fn seal_audit(config: Config) -> Result<()> {
    let (store, _) = open(&config).await?;
    let report = store.seal_audit_chains("operator:seal-audit").await?;
    for org in &report.sealed {
        println!("organisation {org}: sealed (its events before audit keys verified)");
    }
    for (org, problem) in &report.refused {
        println!("organisation {org}: NOT sealed: {problem}");
    }
    if report.sealed.is_empty() && report.refused.is_empty() {
        println!("every audit chain is already sealed");
    }
    if !report.refused.is_empty() {
        bail!(
            "{} organisation(s) not sealed: their chains were changed before audit keys",
            report.refused.len()
        );
    }
    Ok(())
}

async fn state(config: &Config, background: Background) -> Result<AppState> {
    let (store, keys) = open(config).await?;
    let azure = AzureClient::new(config.azure()?)?;
    let settings = ServerSettings {
        secure_cookies: config.secure_cookies,
        limit_sign_ins_by_address: config.limit_sign_ins_by_address,
        operator: config.operator.clone(),
        public_url: Some(config.public_url.clone()),
        webhooks: config.webhooks(),
        background,
        ..ServerSettings::default()
    };
    Ok(AppState::new(store, Arc::new(keys), azure, settings))
}

/// Starts the scheduler in the background (unless configured off); the
/// returned sender stops it after its current pass.
fn spawn_scheduler(
    config: &Config,
    state: &AppState,
) -> Option<(
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
)> {
    if !config.scheduler {
        return None;
    }
    let deps = state.sync_deps();
    let settings = cloudkeep_sync::scheduler::SchedulerConfig {
        poll: config.scheduler_poll,
        lease: config.scheduler_lease,
        webhooks: config.webhooks(),
        ..Default::default()
    };
    let scheduler = cloudkeep_sync::scheduler::Scheduler::new(deps, settings);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(scheduler.run_until(async move {
        let _ = stopped.await;
    }));
    Some((stop, task))
}

async fn stop_scheduler(
    handle: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
) {
    if let Some((stop, task)) = handle {
        let _ = stop.send(());
        let _ = task.await;
    }
}

pub async fn serve(config: Config, background: Background) -> Result<()> {
    let state = state(&config, background).await?;
    let scheduler = spawn_scheduler(&config, &state);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is it in use? Set CLOUDKEEP_LISTEN or server.listen",
                config.listen
            )
        })?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    tracing::info!(url = %format!("{scheme}://{}", listener.local_addr()?), "cloudkeep serving");
    let router = cloudkeep_web::app(state.clone());
    cloudkeep_server::serve(
        listener,
        state,
        router,
        config.tls.clone(),
        crate::shutdown_signal(),
    )
    .await?;
    stop_scheduler(scheduler).await;
    Ok(())
}

/// A new organisation with its owner: one-time password and API token.
pub struct Bootstrap {
    pub org_id: OrgId,
    pub owner_email: String,
    pub password: SecretString,
    pub api_token: SecretString,
}

pub async fn create_org(store: &Store, name: &str, owner: &str) -> Result<Bootstrap> {
    let password = random_password();
    let (scope, _, user) = store
        .create_organisation(NewOrganisation {
            name: name.into(),
            owner_email: owner.into(),
            owner_name: owner.split('@').next().unwrap_or(owner).into(),
            owner_password_hash: hash_password(&password)?,
            actor: "system:cli".into(),
        })
        .await?;
    let (_, api_token) = store
        .create_api_token(
            &scope,
            user.id,
            "created with the organisation",
            None,
            "system:cli",
        )
        .await?;
    Ok(Bootstrap {
        org_id: scope.org(),
        owner_email: user.email,
        password,
        api_token,
    })
}

pub async fn admin_create_org(
    config: Config,
    name: &str,
    owner: &str,
    as_json: bool,
) -> Result<()> {
    let (store, _) = open(&config).await?;
    let b = create_org(&store, name, owner).await?;
    if as_json {
        println!(
            "{}",
            json!({"org_id": b.org_id, "owner_email": b.owner_email, "password": b.password.expose(), "api_token": b.api_token.expose()})
        );
    } else {
        println!("organisation {} created", b.org_id);
        println!("owner:      {}", b.owner_email);
        println!(
            "password:   {}   (shown once; change it after signing in)",
            b.password.expose()
        );
        println!("API token:  {}   (shown once)", b.api_token.expose());
    }
    Ok(())
}

pub async fn rotate_master_key(config: Config) -> Result<()> {
    let (store, mut keys) = open(&config).await?;
    // More than one key in the file means an earlier rotation was interrupted: finish it.
    if keys.key_ids().len() == 1 {
        keys.begin_rotation()?;
    }
    let mut rewrapped = 0;
    for scope in store.operator_scopes().await? {
        rewrapped += store.rewrap_data_keys(&scope, &keys, "system:cli").await?;
    }
    let left = store
        .data_keys_wrapped_by_others(&keys.current_key_id())
        .await?;
    if left > 0 {
        bail!("{left} data keys are still wrapped by an old master key; run the command again");
    }
    keys.retire_old_keys()?;
    println!(
        "master key rotated to {}: {rewrapped} data keys re-wrapped",
        keys.current_key_id()
    );
    Ok(())
}

pub async fn rotate_data_key(config: Config, org: OrgId) -> Result<()> {
    let (store, keys) = open(&config).await?;
    let scope = store.operator_scope(org).await?;
    let n = store.rotate_data_key(&scope, &keys, "system:cli").await?;
    println!("data key of organisation {org} rotated: {n} credentials re-encrypted");
    Ok(())
}

/// Verifies the audit chains; `Err` (a non-zero exit) when any is broken.
pub async fn audit_verify(config: Config, org: Option<OrgId>) -> Result<()> {
    let (store, _) = open(&config).await?;
    let scopes = match org {
        Some(o) => vec![store.operator_scope(o).await?],
        None => store.operator_scopes().await?,
    };
    let mut broken = 0;
    for scope in &scopes {
        match store.verify_audit(scope).await? {
            Ok(n) => println!("organisation {}: {n} events, chain intact", scope.org()),
            Err(problem) => {
                broken += 1;
                println!("organisation {}: BROKEN: {problem}", scope.org());
            }
        }
    }
    if broken > 0 {
        bail!("{broken} of {} audit chains are broken", scopes.len());
    }
    Ok(())
}

pub struct DemoArgs {
    pub data_dir: PathBuf,
    pub port: u16,
    pub ready_file: Option<PathBuf>,
    /// Where the demo's syncs work.
    pub background: Background,
}

const DEMO_OWNER: &str = "owner@demo.cloudkeep.dev";

pub async fn demo(args: DemoArgs) -> Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let sim = cloudkeep_sim::spawn(cloudkeep_sim::SimConfig {
        cert_dir: args.data_dir.join("sim"),
        ..Default::default()
    })
    .await?;
    let scenario = scenario(&sim).await?;
    let mut config = Config::load(None, Some(&args.data_dir))?;
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}: choose another port with --port"))?;
    config.listening_on(listener.local_addr()?);
    config.azure_authority = sim.url.clone();
    config.azure_arm = sim.url.clone();
    config.azure_ca_file = Some(sim.ca_path.clone());
    // The simulator's cloudkeep application stands for the operator's, so
    // connecting by consent works in the demo.
    let app = &scenario["application"];
    config.operator = Some(cloudkeep_domain::OperatorApp {
        client_id: text(app, "client_id")?,
        client_secret: SecretString::new(text(app, "client_secret")?),
        partner_id: None,
    });
    // Webhook receivers of a demo run beside it.
    config.webhooks_allow_private = true;
    let state = state(&config, args.background.clone()).await?;
    let store = state.store.clone();
    let url = config.public_url.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(cloudkeep_server::serve(
        listener,
        state.clone(),
        cloudkeep_web::app(state.clone()),
        None,
        async move {
            let _ = stopped.await;
        },
    ));

    // The demo organisation: created once; a re-run gets a fresh password and token.
    let (password, api_token) = match store.find_login(DEMO_OWNER).await? {
        None => {
            let b = create_org(&store, "Demo", DEMO_OWNER).await?;
            (b.password, b.api_token)
        }
        Some(existing) => {
            let scope = store.operator_scope(existing.org()).await?;
            let user = existing.user_id();
            let password = random_password();
            store
                .set_password(&scope, user, &hash_password(&password)?, "system:demo")
                .await?;
            let (_, token) = store
                .create_api_token(&scope, user, "demo", None, "system:demo")
                .await?;
            (password, token)
        }
    };
    connect_simulator(&url, &scenario, &api_token).await?;
    // The scheduler starts after the first sync (which it would otherwise
    // race): staleness alerts, webhook deliveries, the next syncs.
    let scheduler = spawn_scheduler(&config, &state);
    let coverage = demo_coverage(&url, &api_token).await?;
    let spend = demo_spend(&url, &api_token).await?;
    let budget = demo_budget(&url, &scenario, &api_token).await?;
    let consent_user = scenario["tenants"][0]["users"]
        .as_array()
        .and_then(|users| users.iter().find(|u| u["key"] == "partial-owner"));

    println!("cloudkeep demo is running");
    println!("  open:      {url}/   (the dashboard)");
    println!("  sign in:   {DEMO_OWNER} / {}", password.expose());
    println!("  API:       {url}/api/v1   (OpenAPI: {url}/api/v1/openapi.json)");
    println!("  API token: {}", api_token.expose());
    println!("  simulator: {} (CA {})", sim.url, sim.ca_path.display());
    if let Some(user) = consent_user {
        println!(
            "  consent:   signed in, Connections → Connect by consent ({url}/connections/new); the simulator's Azure Owner is {} / {}",
            user["upn"].as_str().unwrap_or_default(),
            user["password"].as_str().unwrap_or_default()
        );
    }
    println!(
        "  try:       curl -H 'Authorization: Bearer {}' {url}/api/v1/connections",
        api_token.expose()
    );
    println!("{coverage}");
    println!("{spend}");
    println!("{budget}");
    println!(
        "  evidence:  cloudkeep evidence list --url {url} --token {} (and `cloudkeep controls CC6.1`, `cloudkeep alerts`)",
        api_token.expose()
    );
    if let Some(path) = &args.ready_file {
        let ready = json!({
            "url": url, "api_token": api_token.expose(), "owner_email": DEMO_OWNER,
            "password": password.expose(), "sim_url": sim.url, "ca": sim.ca_path,
        });
        write_private(path, &ready.to_string())?;
    }
    crate::shutdown_signal().await;
    stop_scheduler(scheduler).await;
    let _ = stop.send(());
    let _ = server.await;
    sim.stop().await;
    Ok(())
}

/// The demo's SOC 2 coverage after its first sync, a line per control.
async fn demo_coverage(url: &str, token: &SecretString) -> Result<String> {
    let controls: cloudkeep_server::Page<cloudkeep_server::wire::ControlView> =
        reqwest::Client::new()
            .get(format!("{url}/api/v1/controls"))
            .bearer_auth(token.expose())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
    let percent = |v: Option<f64>| v.map_or_else(|| "-".into(), |f| format!("{:.0}%", f * 100.0));
    let mut lines =
        vec!["  coverage:  SOC 2 controls from the evidence just collected".to_string()];
    for c in &controls.items {
        lines.push(format!(
            "             {} {}: {} (evidence coverage {}, pass rate {}; {} passing, {} failing, {} not collected)",
            c.id,
            c.title,
            c.coverage.state,
            percent(c.coverage.evidence_coverage),
            percent(c.coverage.pass_rate),
            c.coverage.passing,
            c.coverage.failing,
            c.coverage.not_collected
        ));
    }
    Ok(lines.join("\n"))
}

/// The demo's budget, made once: on the first subscription (where the
/// simulator's demo spike is), at nine tenths of its month-end forecast,
/// so the forecast threshold is crossed and alerts.
async fn demo_budget(
    url: &str,
    scenario: &serde_json::Value,
    token: &SecretString,
) -> Result<String> {
    use cloudkeep_server::wire::{BudgetView, ForecastView};
    let api = reqwest::Client::new();
    let get = |path: String| {
        api.get(format!("{url}{path}"))
            .bearer_auth(token.expose())
            .send()
    };
    let existing: cloudkeep_server::Page<BudgetView> = get("/api/v1/budgets".into())
        .await?
        .error_for_status()?
        .json()
        .await?;
    let budget = match existing.items.into_iter().next() {
        Some(b) => b,
        None => {
            let sub = scenario["tenants"][0]["subscriptions"][0]["subscription_id"]
                .as_str()
                .ok_or_else(|| anyhow!("the simulator has no subscription"))?;
            let filter = format!("subscription={sub}");
            let forecast: ForecastView = get(format!(
                "/api/v1/spend/forecast?filter={}",
                crate::client::url_escape(&filter)
            ))
            .await?
            .error_for_status()?
            .json()
            .await?;
            let amount = (forecast.month_end * 0.9).round().max(1.0);
            let detail: cloudkeep_server::wire::BudgetDetail = api
                .post(format!("{url}/api/v1/budgets"))
                .bearer_auth(token.expose())
                .json(&json!({
                    "name": "Platform subscription", "amount": amount, "filters": [filter],
                    "actual_thresholds": [80, 100], "forecast_thresholds": [100],
                }))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            detail.budget
        }
    };
    let s = &budget.status;
    Ok(format!(
        "  budget:    '{}' {:.2} {} a month: {:.0}% spent, {:.0}% forecast; try `cloudkeep budgets list` and `cloudkeep alerts --kind budget_forecast`",
        budget.name, budget.amount, s.currency, s.actual_pct, s.forecast_pct
    ))
}

/// The 90 days of spend the first sync collected, by month.
async fn demo_spend(url: &str, token: &SecretString) -> Result<String> {
    let today = chrono::Utc::now().date_naive();
    let from = today - chrono::Duration::days(89);
    let view: cloudkeep_server::wire::SpendView = reqwest::Client::new()
        .get(format!(
            "{url}/api/v1/spend?from={from}&to={today}&granularity=month"
        ))
        .bearer_auth(token.expose())
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let months: Vec<String> = view
        .totals
        .iter()
        .map(|p| format!("{} {:.2}", p.start.format("%Y-%m"), p.cost))
        .collect();
    Ok(format!(
        "  spend:     {:.2} {} over the last 90 days ({}); try `cloudkeep spend --url {url} --token {} --group-by service`",
        view.total,
        view.currency,
        months.join(", "),
        token.expose()
    ))
}

/// The simulator's scenario: its tenants, principals and application.
async fn scenario(sim: &cloudkeep_sim::RunningSim) -> Result<serde_json::Value> {
    let sim_http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(sim.ca_pem.as_bytes())?)
        .build()?;
    Ok(sim_http
        .get(format!("{}/_sim/scenario", sim.url))
        .send()
        .await?
        .json()
        .await?)
}

fn text(v: &serde_json::Value, key: &str) -> Result<String> {
    v[key]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the simulator's scenario has no '{key}'"))
}

/// Connects the simulator's tenant through the API, as a user would.
async fn connect_simulator(
    url: &str,
    scenario: &serde_json::Value,
    token: &SecretString,
) -> Result<()> {
    let tenant = &scenario["tenants"][0];
    let tenant_id = tenant["tenant_id"]
        .as_str()
        .ok_or_else(|| anyhow!("the simulator has no tenant"))?;
    let collector = tenant["service_principals"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["key"] == "collector"))
        .ok_or_else(|| anyhow!("the simulator has no collector principal"))?;
    let api = reqwest::Client::new();
    let existing: serde_json::Value = api
        .get(format!("{url}/api/v1/connections"))
        .bearer_auth(token.expose())
        .send()
        .await?
        .json()
        .await?;
    let connected = existing
        .as_array()
        .and_then(|list| {
            list.iter()
                .find(|c| c["tenant_id"] == tenant_id && c["deleted_at"].is_null())
        })
        .and_then(|c| c["id"].as_str().map(str::to_string));
    let id = match connected {
        Some(id) => id,
        None => {
            let response = api
                .post(format!("{url}/api/v1/connections"))
                .bearer_auth(token.expose())
                .json(&json!({
                    "name": format!("{} (simulated)", tenant["display_name"].as_str().unwrap_or("Contoso")),
                    "tenant_id": tenant_id,
                    "client_id": collector["client_id"],
                    "client_secret": collector["client_secret"],
                }))
                .send()
                .await?;
            if !response.status().is_success() {
                bail!(
                    "connecting the simulated tenant failed: {} {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                );
            }
            let created: serde_json::Value = response.json().await?;
            created["id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("the new connection has no id"))?
        }
    };
    // And sync it, so the demo shows an inventory from the start.
    let run: serde_json::Value = api
        .post(format!("{url}/api/v1/connections/{id}/sync"))
        .bearer_auth(token.expose())
        .send()
        .await?
        .json()
        .await?;
    if run["status"] != "succeeded" {
        bail!("the demo's first sync did not succeed: {run}");
    }
    Ok(())
}

/// Writes a file only its owner can read (it holds credentials).
/// Writes a file only its owner can read, whole or not at all: to a new
/// temporary file, then renamed over `path`, so a reader waiting for it
/// never sees half of it.
fn write_private(path: &Path, content: &str) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("partial");
    // A new file, so the mode applies (an old one may be readable by others).
    let _ = std::fs::remove_file(&tmp);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(content.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
