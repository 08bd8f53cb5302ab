//! What the binary's tests share: `cloudkeep` as a child process, the
//! simulator beside it, the API and the simulator's request log, and waiting
//! on a condition with a generous deadline instead of on a clock.

use std::future::Future;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cloudkeep_sim::{RunningSim, SimConfig};
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

/// Polls `check` until it answers `Ok`, and panics with its last `Err` if
/// that takes longer than `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "{what}: not so after {within:?}; last seen: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The simulator in this process (throttling off), with a client that
/// trusts its CA and the scenario it was generated with.
pub struct Sim {
    pub url: String,
    pub ca_path: std::path::PathBuf,
    pub http: reqwest::Client,
    pub scenario: Value,
    _running: RunningSim,
}

impl Sim {
    pub async fn start(dir: &Path) -> Sim {
        let running = cloudkeep_sim::spawn(SimConfig {
            cert_dir: dir.join("sim"),
            throttle: false,
            ..Default::default()
        })
        .await
        .expect("sim");
        let http = sim_client(running.ca_pem.as_bytes());
        let scenario = scenario(&http, &running.url).await;
        Sim {
            url: running.url.clone(),
            ca_path: running.ca_path.clone(),
            http,
            scenario,
            _running: running,
        }
    }

    pub fn tenant(&self) -> &Value {
        &self.scenario["tenants"][0]
    }

    pub fn principal(&self, key: &str) -> Value {
        principal(&self.scenario, key)
    }

    /// Replaces the fault settings (`{}` clears them).
    pub async fn faults(&self, faults: Value) {
        let r = self
            .http
            .put(format!("{}/_sim/faults", self.url))
            .json(&faults)
            .send()
            .await
            .expect("faults");
        assert!(r.status().is_success(), "{faults}: {}", r.status());
    }

    /// The request log after `since` (0: all of it).
    pub async fn requests(&self, since: u64) -> Vec<Value> {
        self.http
            .get(format!("{}/_sim/requests?since={since}", self.url))
            .send()
            .await
            .expect("log")
            .json()
            .await
            .expect("json")
    }

    /// The request log's last sequence number, to read what comes after it.
    pub async fn last_seq(&self) -> u64 {
        self.requests(0)
            .await
            .last()
            .and_then(|e| e["seq"].as_u64())
            .unwrap_or(0)
    }
}

/// An HTTP client that trusts a simulator's CA.
pub fn sim_client(ca_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).expect("ca"))
        .build()
        .expect("client")
}

/// A simulator's scenario: its tenants, subscriptions and credentials.
pub async fn scenario(http: &reqwest::Client, url: &str) -> Value {
    http.get(format!("{url}/_sim/scenario"))
        .send()
        .await
        .expect("scenario")
        .json()
        .await
        .expect("json")
}

/// The first tenant's service principal with this key (`collector`,
/// `reader-only`).
pub fn principal(scenario: &Value, key: &str) -> Value {
    scenario["tenants"][0]["service_principals"]
        .as_array()
        .expect("sps")
        .iter()
        .find(|p| p["key"] == key)
        .cloned()
        .expect("principal")
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
