//! What the binary's tests share: `cloudkeep` as a child process, the
//! simulator beside it, the API and the simulator's request log, and waiting
//! on a condition with a generous deadline instead of on a clock.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_cloudkeep");

/// A child process, killed (SIGKILL, as a crash would) and reaped when
/// dropped, so that a failing test leaves none behind.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Killed {
    pub fn spawn(command: &mut Command) -> Killed {
        Killed(command.spawn().expect("start cloudkeep"))
    }

    /// The process id, which also starts the scheduler's worker id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

/// Runs `cloudkeep ARGS` to the end: (success, stdout, stderr).
pub fn run(args: &[&str]) -> (bool, String, String) {
    output(Command::new(BIN).args(args))
}

fn output(command: &mut Command) -> (bool, String, String) {
    let out = command.output().expect("run cloudkeep");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The API's command-line clients (`connections`, `resources`, ...) against
/// `url` with `token`; `secret` goes in `CLOUDKEEP_CLIENT_SECRET`.
pub fn cli(url: &str, token: &str, args: &[&str], secret: Option<&str>) -> (bool, String, String) {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env("CLOUDKEEP_URL", url)
        .env("CLOUDKEEP_TOKEN", token)
        .env_remove("CLOUDKEEP_CLIENT_SECRET");
    if let Some(s) = secret {
        command.env("CLOUDKEEP_CLIENT_SECRET", s);
    }
    output(&mut command)
}

/// `admin create-org --json` on the store `config` names (`--data-dir DIR`
/// or `--config FILE`): `{org_id, owner_email, password, api_token}`.
pub fn create_org(name: &str, owner: &str, config: &[&str]) -> Value {
    let mut args = vec![
        "admin",
        "create-org",
        "--name",
        name,
        "--owner",
        owner,
        "--json",
    ];
    args.extend_from_slice(config);
    let (ok, out, err) = run(&args);
    assert!(ok, "{err}");
    serde_json::from_str(out.trim()).expect("one JSON object")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `cloudkeep serve` on `port` against the simulator, with the store
/// `config` names and its output discarded; callers add variables.
pub fn serve(sim: &Sim, port: u16, config: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .args(config)
        .env("CLOUDKEEP_LISTEN", format!("127.0.0.1:{port}"))
        .env("CLOUDKEEP_AZURE_AUTHORITY", &sim.url)
        .env("CLOUDKEEP_AZURE_ARM", &sim.url)
        .env("CLOUDKEEP_AZURE_CA_FILE", &sim.ca_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// A `cloudkeep serve` process on a port of its own, against the simulator,
/// with the store `config` names: started (and waited on until it answers),
/// SIGKILLed as a crash would, and started again on the same port and store.
/// Killed when dropped.
pub struct Serve<'a> {
    pub url: String,
    port: u16,
    sim: &'a Sim,
    config: Vec<String>,
    env: Vec<(String, String)>,
    process: Option<Killed>,
}

impl<'a> Serve<'a> {
    /// Not started yet; with the scheduler as configured.
    pub fn new(sim: &'a Sim, config: &[&str]) -> Serve<'a> {
        let port = free_port();
        Serve {
            url: format!("http://127.0.0.1:{port}"),
            port,
            sim,
            config: config.iter().map(|c| c.to_string()).collect(),
            env: Vec::new(),
            process: None,
        }
    }

    /// With the scheduler on, polling each second, and a lease of three
    /// seconds, so that a killed process's job is taken over within a test.
    pub fn scheduled(sim: &'a Sim, config: &[&str]) -> Serve<'a> {
        Serve::new(sim, config)
            .env("CLOUDKEEP_SCHEDULER", "on")
            .env("CLOUDKEEP_SCHEDULER_POLL_SECS", "1")
            .env("CLOUDKEEP_SCHEDULER_LEASE_SECS", "3")
    }

    /// With an environment variable set (at the next start).
    pub fn env(mut self, key: &str, value: &str) -> Serve<'a> {
        self.set_env(key, value);
        self
    }

    /// Sets an environment variable for the next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    /// Starts the process (killing a running one first) and waits until it answers.
    pub async fn start(&mut self) {
        self.spawn();
        wait_until_up(&self.url).await;
    }

    /// Starts the process without waiting for it (a caller starting several
    /// waits on each with `up`).
    pub fn spawn(&mut self) {
        self.kill();
        let config: Vec<&str> = self.config.iter().map(String::as_str).collect();
        let mut command = serve(self.sim, self.port, &config);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        self.process = Some(Killed::spawn(&mut command));
    }

    /// Waits until the process answers.
    pub async fn up(&self) {
        wait_until_up(&self.url).await;
    }

    /// SIGKILLs the process (if running) and reaps it.
    pub fn kill(&mut self) {
        self.process = None;
    }

    /// The running process's id, which also starts its scheduler's worker ids.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Killed::pid)
    }
}

pub async fn wait_until_up(url: &str) {
    eventually(Duration::from_secs(30), &format!("{url} up"), || async {
        match reqwest::get(format!("{url}/healthz")).await {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => Err(r.status().to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

pub use cloudkeep_testkit::{TestSim as Sim, eventually};

/// The customer tenant of a simulator's scenario, as JSON.
pub fn tenant(sim: &Sim) -> &Value {
    &sim.scenario.raw["tenants"][0]
}

/// A service principal of the scenario, as JSON (`collector`, `reader-only`).
pub fn principal(sim: &Sim, key: &str) -> Value {
    serde_json::to_value(sim.scenario.sp(key)).expect("principal")
}

/// The API as one organisation's API token sees it.
#[derive(Clone)]
pub struct Api {
    pub url: String,
    pub token: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(url: &str, token: &str) -> Api {
        Api {
            url: url.into(),
            token: token.into(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("get");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json")
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .expect("post")
    }

    /// Connects the simulated tenant with service principal `sp` (from
    /// [`Sim::principal`]); answers the created connection.
    pub async fn connect(&self, name: &str, tenant: &Value, sp: &Value) -> Value {
        let body = json!({"name": name, "tenant_id": tenant["tenant_id"], "client_id": sp["client_id"], "client_secret": sp["client_secret"]});
        let r = self.post("/api/v1/connections", &body).await;
        assert_eq!(r.status().as_u16(), 201, "connect {name}");
        r.json().await.expect("json")
    }
}
