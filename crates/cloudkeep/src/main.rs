//! The `cloudkeep` binary: a thin command-line front over the crates.

mod bench;
mod client;
mod commands;
mod config;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use cloudkeep_sim::{CostHeaders, Faults, Preset, SimConfig, Simulator};

#[derive(Parser)]
#[command(
    name = "cloudkeep",
    version,
    about = "Azure spend, inventory and tags, and security evidence in one place."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the store and key file are: a config file, or a demo's data folder.
#[derive(Args, Clone)]
struct ConfigArgs {
    /// A TOML configuration file (see the README); CLOUDKEEP_* variables override it.
    #[arg(long, env = "CLOUDKEEP_CONFIG")]
    config: Option<PathBuf>,
    /// Use the store and key file in this folder (e.g. a `cloudkeep demo --data-dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    fn load(&self) -> Result<config::Config> {
        config::Config::load(self.config.as_deref(), self.data_dir.as_deref())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server.
    Serve(ConfigArgs),
    /// Start the Azure simulator and the server on an embedded store, with a demo organisation connected.
    Demo {
        /// Where the demo keeps its store, key file and simulator CA.
        #[arg(long, default_value = "./cloudkeep-demo")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// Write {url, api_token, owner_email, password, sim_url, ca} here once everything is up.
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Operator commands on the store.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Connections to Azure tenants, through the API.
    #[command(subcommand)]
    Connections(client::ConnectionsCommand),
    /// Subscriptions' sync levels, through the API.
    #[command(subcommand)]
    Subscriptions(client::SubscriptionsCommand),
    /// Sync runs, through the API.
    #[command(subcommand)]
    Sync(client::SyncCommand),
    /// The inventory, through the API.
    #[command(subcommand)]
    Resources(client::ResourcesCommand),
    /// Tag edits and conflicts, through the API.
    #[command(subcommand)]
    Tags(client::TagsCommand),
    /// Security evidence, through the API.
    #[command(subcommand)]
    Evidence(client::evidence::EvidenceCommand),
    /// SOC 2 controls and their coverage, through the API.
    Controls(client::evidence::ControlsArgs),
    /// Alerts (evidence staleness, budgets, spend anomalies), through the API.
    Alerts(client::evidence::AlertsArgs),
    /// Assessments: audit periods of evidence, approval, exports (CSV, JSON, OSCAL, zip).
    #[command(subcommand)]
    Assessments(client::assessments::AssessmentsCommand),
    /// Spend by time and up to two groupings (a table with bars, or --json);
    /// `spend export` streams FOCUS 1.2 CSV. Through the API.
    Spend(client::spend::SpendArgs),
    /// Budgets: a monthly amount with thresholds on spend and on the
    /// month-end forecast (crossings alert); `budgets forecast`. Through the API.
    #[command(subcommand)]
    Budgets(client::budgets::BudgetsCommand),
    /// Tag coverage of spend by the required keys (a table, or --json);
    /// `coverage required-tags`, `coverage untagged`, `coverage fix`. Through the API.
    Coverage(client::coverage::CoverageArgs),
    /// Spend anomalies and new usage with the resource behind each (a table,
    /// or --json); `--movers` for the top movers week or month over the one before.
    Anomalies(client::anomalies::AnomaliesArgs),
    /// Run the Azure simulator (Entra ID and ARM over HTTPS).
    Sim(SimArgs),
    /// Benchmarks that print figures: the simulator, an inventory sync, a tag write-back.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an organisation and its owner; prints a one-time password and an API token.
    CreateOrg {
        #[arg(long)]
        name: String,
        /// The owner's email.
        #[arg(long)]
        owner: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Re-wrap every organisation's data key under a new master key.
    RotateMasterKey(ConfigArgs),
    /// Seal new audit events with a new audit key (older keys are kept).
    RotateAuditKey(ConfigArgs),
    /// Seal, once, the audit chains written wholly before this installation
    /// had audit keys (each is verified first; broken ones are named and
    /// left unsealed).
    SealAudit(ConfigArgs),
    /// Re-encrypt one organisation's credentials under a new data key.
    RotateDataKey {
        #[arg(long)]
        org: cloudkeep_domain::OrgId,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit hash chains; exits non-zero at the first changed, removed or reordered event.
    Verify {
        #[arg(long)]
        org: Option<cloudkeep_domain::OrgId>,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PresetName {
    Demo,
    Large,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Throttle {
    Azure,
    Off,
}

#[derive(Args)]
struct SimArgs {
    /// Size of the simulated estate.
    #[arg(long, value_enum, default_value = "demo")]
    preset: PresetName,
    /// Seed of the generated data: the same seed gives the same estate.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Where to write the simulator's CA certificate (ca.pem).
    #[arg(long)]
    cert_dir: Option<PathBuf>,
    /// Azure's throttling, or none.
    #[arg(long, value_enum, default_value = "azure")]
    throttle: Throttle,
    /// Injected faults, e.g. "500=0.05,429=0.05,latency=100ms,drop=0.01".
    #[arg(long, default_value = "")]
    faults: String,
    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, default_value_t = 3599)]
    token_lifetime: u64,
    /// Cost Management's throttling headers: query units (qpu) or entity
    /// and tenant request counts (entity); switchable at run time.
    #[arg(long, value_enum, default_value = "qpu")]
    cost_headers: CostHeadersArg,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CostHeadersArg {
    Qpu,
    Entity,
}

impl SimArgs {
    fn config(&self) -> Result<SimConfig> {
        let cert_dir = match &self.cert_dir {
            Some(d) => d.clone(),
            None => std::env::temp_dir().join(format!("cloudkeep-sim-{}", std::process::id())),
        };
        Ok(SimConfig {
            preset: match self.preset {
                PresetName::Demo => Preset::DEMO,
                PresetName::Large => Preset::LARGE,
            },
            seed: self.seed,
            cert_dir,
            throttle: self.throttle == Throttle::Azure,
            faults: Faults {
                cost_headers: match self.cost_headers {
                    CostHeadersArg::Qpu => CostHeaders::Qpu,
                    CostHeadersArg::Entity => CostHeaders::Entity,
                },
                ..Faults::parse(&self.faults).context("--faults")?
            },
            token_lifetime_secs: self.token_lifetime,
        })
    }
}

fn init_logging(json: bool, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLOUDKEEP_LOG")
        .unwrap_or_else(|_| default.into());
    // Colours only for a person at a terminal: never codes in a file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// glibc malloc's settings this binary runs with, unless the operator set
/// them: see `limit_malloc_arenas`.
const MALLOC_SETTINGS: &[(&str, &str)] = &[
    // The arenas malloc may make.
    ("MALLOC_ARENA_MAX", "4"),
    // Blocks from 128 KiB up (a page of a listing, a multi-row insert's
    // values) are mapped on their own and given back when freed, always.
    ("MALLOC_MMAP_THRESHOLD_", "131072"),
];

/// glibc's malloc gives each thread that allocates an arena of its own, up
/// to eight per core, and each arena keeps what was freed in it. With
/// tokio's workers and a thread per SQLite connection, a first sync of
/// 100,000 resources peaked 8 MiB higher for it (`cloudkeep bench
/// inventory`); four arenas are as fast on the two cores this is sized
/// for (two were a tenth slower, syncs and pages alike). And glibc raises
/// its threshold for mapping a large block on its own each time such a
/// block is freed, after which large blocks come from the arenas and stay
/// there: the same first sync peaked anywhere from 61 to 67 MiB from run
/// to run. With the threshold fixed, 60-62 MiB and as fast; the heaviest
/// pages on `large` (`bench web`) were 5-15% slower, far within their
/// targets. glibc reads
/// these only as a process starts, and setting them from inside
/// (`mallopt`) is `unsafe`, which the workspace forbids: so the binary
/// runs itself again with them set (the same process, by `exec`), before
/// any thread exists. If that cannot be done it runs as it is.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        let unset: Vec<_> = MALLOC_SETTINGS
            .iter()
            .filter(|(name, _)| std::env::var_os(name).is_none())
            .collect();
        if unset.is_empty() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
        // Only returns if the program could not be started.
        let _ = std::process::Command::new(exe)
            .arg0(arg0)
            .args(args)
            .envs(unset.iter().map(|(name, value)| (name, value)))
            .exec();
    }
}

fn main() -> Result<()> {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Syncs work on threads of their own at a lower priority (`serve` and
    // `demo`), so people's reads keep the CPU while a large tenant syncs;
    // the other commands start no such threads.
    let (sync_runtime, background) = match cli.command {
        Command::Serve(_) | Command::Demo { .. } => {
            let (rt, background) = cloudkeep_sync::Background::runtime(2)?;
            (Some(rt), background)
        }
        _ => (None, cloudkeep_sync::Background::inline()),
    };
    let done = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => {
                let config = args.load()?;
                init_logging(config.log_json, "info");
                commands::serve(config, background).await
            }
            Command::Demo {
                data_dir,
                port,
                ready_file,
            } => {
                init_logging(false, "warn");
                commands::demo(commands::DemoArgs {
                    data_dir,
                    port,
                    ready_file,
                    background,
                })
                .await
            }
            Command::Admin(cmd) => {
                init_logging(false, "warn");
                match cmd {
                    AdminCommand::CreateOrg {
                        name,
                        owner,
                        json,
                        config,
                    } => commands::admin_create_org(config.load()?, &name, &owner, json).await,
                    AdminCommand::RotateMasterKey(config) => {
                        commands::rotate_master_key(config.load()?).await
                    }
                    AdminCommand::RotateAuditKey(config) => {
                        commands::rotate_audit_key(config.load()?)
                    }
                    AdminCommand::SealAudit(config) => commands::seal_audit(config.load()?).await,
                    AdminCommand::RotateDataKey { org, config } => {
                        commands::rotate_data_key(config.load()?, org).await
                    }
                }
            }
            Command::Audit(AuditCommand::Verify { org, config }) => {
                init_logging(false, "warn");
                commands::audit_verify(config.load()?, org).await
            }
            Command::Connections(cmd) => {
                init_logging(false, "warn");
                client::connections(cmd).await
            }
            Command::Subscriptions(cmd) => {
                init_logging(false, "warn");
                client::subscriptions(cmd).await
            }
            Command::Sync(cmd) => {
                init_logging(false, "warn");
                client::sync(cmd).await
            }
            Command::Resources(cmd) => {
                init_logging(false, "warn");
                client::resources(cmd).await
            }
            Command::Tags(cmd) => {
                init_logging(false, "warn");
                client::tags(cmd).await
            }
            Command::Evidence(cmd) => {
                init_logging(false, "warn");
                client::evidence::evidence(cmd).await
            }
            Command::Controls(args) => {
                init_logging(false, "warn");
                client::evidence::controls(args).await
            }
            Command::Alerts(args) => {
                init_logging(false, "warn");
                client::evidence::alerts(args).await
            }
            Command::Assessments(cmd) => {
                init_logging(false, "warn");
                client::assessments::assessments(cmd).await
            }
            Command::Spend(args) => {
                init_logging(false, "warn");
                client::spend::spend(args).await
            }
            Command::Budgets(cmd) => {
                init_logging(false, "warn");
                client::budgets::budgets(cmd).await
            }
            Command::Coverage(args) => {
                init_logging(false, "warn");
                client::coverage::coverage(args).await
            }
            Command::Anomalies(args) => {
                init_logging(false, "warn");
                client::anomalies::anomalies(args).await
            }
            Command::Sim(args) => {
                init_logging(false, "warn");
                run_sim(args).await
            }
            Command::Bench(cmd) => {
                init_logging(false, "warn");
                bench::run(cmd).await
            }
        }
    });
    // Outside the async code, where a runtime may be dropped: the runs
    // left stop at once (the sweeper marks them interrupted).
    if let Some(rt) = sync_runtime {
        rt.shutdown_background();
    }
    done
}

async fn run_sim(args: SimArgs) -> Result<()> {
    let config = args.config()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is the port in use? Use --listen 127.0.0.1:0 for a free port",
                args.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let sim = Simulator::new(config)?;
    let line = serde_json::json!({ "url": format!("https://{addr}"), "ca": sim.ca_path() });
    println!("{line}");
    if addr.port() == 0 {
        bail!("the listener has no port");
    }
    sim.run(listener, shutdown_signal()).await;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
