//! A simulator of the Entra ID and Azure Resource Manager operations that
//! cloudkeep uses, speaking Azure's wire format over HTTPS.
//!
//! See `docs/simulator.md` for the contract (scenario, control API, faults,
//! throttling). This crate depends on nothing else of cloudkeep's: it stands
//! in for Azure, so it must not share code with the client it tests.

mod arm;
mod control;
mod entra;
mod faults;
mod log;
mod msgraph;
pub mod roles;
mod server;
mod state;
mod throttle;
mod tls;
mod token;
mod vault;
pub mod world;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use faults::{CostHeaders, Faults, RoleRemoval};
/// ARM's bucket sizes, for benchmarks that compare against them.
pub use throttle::{ALL_PRINCIPALS_FACTOR, ARM_READS, ARM_WRITES, BucketLimits};
pub use world::Preset;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("could not create the simulator's certificates: {0}")]
    Tls(String),
    #[error("could not write {0}: {1}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("invalid fault specification: {0}")]
    Faults(String),
}

/// How the simulator is set up; `Default` is the demo preset with Azure's
/// throttling and no faults.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub preset: Preset,
    pub seed: u64,
    /// Where `ca.pem` is written.
    pub cert_dir: PathBuf,
    /// Azure's throttling (token buckets, QPU) on or off.
    pub throttle: bool,
    /// Faults and the other settings switchable at run time, among them
    /// Cost Management's header family (`faults.cost_headers`: `Qpu` or
    /// `Entity`), kept here rather than in a field of its own so that
    /// `PUT /_sim/faults` and `/_sim/reset` treat it like the others.
    pub faults: Faults,
    /// Lifetime of issued access tokens, in seconds.
    pub token_lifetime_secs: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            preset: Preset::DEMO,
            seed: 1,
            cert_dir: std::env::temp_dir().join("cloudkeep-sim"),
            throttle: true,
            faults: Faults::default(),
            token_lifetime_secs: 3599,
        }
    }
}

/// A simulator ready to serve: its world generated, its certificates made.
pub struct Simulator {
    state: Arc<state::SimState>,
    tls: tls::Tls,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        let tls = tls::setup(&config.cert_dir)?;
        let state = Arc::new(state::SimState::new(config)?);
        Ok(Simulator { state, tls })
    }

    /// Path of the CA certificate clients must trust.
    pub fn ca_path(&self) -> &std::path::Path {
        &self.tls.ca_path
    }

    pub fn ca_pem(&self) -> &str {
        &self.tls.ca_pem
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        server::serve(self.state, self.tls.server_config, listener, shutdown).await;
    }
}

/// A simulator running in the background, for tests and the demo.
pub struct RunningSim {
    pub url: String,
    pub ca_path: PathBuf,
    pub ca_pem: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSim {
    /// Stops serving and waits for open connections to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts a simulator on a free loopback port.
pub async fn spawn(config: SimConfig) -> Result<RunningSim, SimError> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| SimError::Io(PathBuf::from("127.0.0.1:0"), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| SimError::Io(PathBuf::from("127.0.0.1:0"), e))?;
    let sim = Simulator::new(config)?;
    let ca_path = sim.ca_path().to_path_buf();
    let ca_pem = sim.ca_pem().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(sim.run(listener, async move {
        let _ = stopped.await;
    }));
    Ok(RunningSim {
        url: format!("https://{addr}"),
        ca_path,
        ca_pem,
        stop: Some(stop),
        task,
    })
}

/// All routes: the control API, Entra ID, and by host name or path Key
/// Vault's data plane, Microsoft Graph, or ARM.
fn routes(state: Arc<state::SimState>) -> axum::Router {
    axum::Router::new()
        .nest("/_sim", control::routes())
        .merge(entra::routes())
        .fallback(by_host)
        .with_state(state)
}

/// `{vault}.vault.azure.net` is the vault's data plane; `graph.microsoft.com`
/// and `/v1.0/`, `/beta/` paths are Graph; everything else is ARM.
async fn by_host(
    st: axum::extract::State<Arc<state::SimState>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let host = server::request_host(req.headers(), req.uri());
    if let Some(vault) = host.strip_suffix(".vault.azure.net") {
        let vault = vault.to_string();
        return vault::dispatch(st, vault, req).await;
    }
    let path = req.uri().path();
    let graph_path = ["/v1.0", "/beta"].iter().any(|p| {
        path.get(..p.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(p))
            && matches!(path.as_bytes().get(p.len()), None | Some(b'/'))
    });
    if host.eq_ignore_ascii_case("graph.microsoft.com") || graph_path {
        return msgraph::dispatch(st, req).await;
    }
    arm::dispatch(st, req).await
}
