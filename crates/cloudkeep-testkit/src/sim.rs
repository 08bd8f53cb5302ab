//! The simulator on a free port, a client that trusts its CA, its scenario
//! (typed where tests read it) and its control API.

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use cloudkeep_azure::{AzureClient, AzureConfig};
use cloudkeep_domain::SecretString;
use cloudkeep_sim::{Faults, Preset, RunningSim, SimConfig};

/// How a test's simulator is set up. `Default`: the demo preset, seed 11,
/// Azure's throttling off, no faults.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub preset: Preset,
    pub seed: u64,
    pub throttle: bool,
    pub faults: Faults,
    pub token_lifetime_secs: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            preset: Preset::DEMO,
            seed: 11,
            throttle: false,
            faults: Faults::default(),
            token_lifetime_secs: 3599,
        }
    }
}

/// A service principal of the scenario.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Principal {
    /// Principals the tests do not name have none.
    pub key: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    pub object_id: String,
    #[serde(default)]
    pub display_name: String,
}

impl Principal {
    pub fn secret(&self) -> SecretString {
        SecretString::new(self.client_secret.clone())
    }
}

/// A user of the scenario (for the consent flow's sign-in).
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// Users without a role in the tests' stories have none.
    pub key: Option<String>,
    pub upn: String,
    pub object_id: String,
    pub password: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Subscription {
    pub subscription_id: String,
    pub display_name: String,
    #[serde(default)]
    pub resource_count: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tenant {
    pub tenant_id: String,
    #[serde(default)]
    pub default_domain: String,
    pub service_principals: Vec<Principal>,
    #[serde(default)]
    pub users: Vec<User>,
    pub subscriptions: Vec<Subscription>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Application {
    pub client_id: String,
    pub client_secret: String,
}

/// `GET /_sim/scenario`, typed where tests read it; `raw` has the rest.
#[derive(Debug, Clone, Deserialize)]
pub struct Scenario {
    pub tenants: Vec<Tenant>,
    pub application: Application,
    #[serde(skip)]
    pub raw: Value,
}

impl Scenario {
    /// The customer's tenant (the first).
    pub fn tenant(&self) -> &Tenant {
        &self.tenants[0]
    }

    /// A service principal of the customer's tenant by its key
    /// (`collector`, `reader-only`, ...).
    pub fn sp(&self, key: &str) -> &Principal {
        self.tenant()
            .service_principals
            .iter()
            .find(|p| p.key.as_deref() == Some(key))
            .unwrap_or_else(|| panic!("the scenario has no principal '{key}'"))
    }

    pub fn user(&self, key: &str) -> &User {
        self.tenant()
            .users
            .iter()
            .find(|u| u.key.as_deref() == Some(key))
            .unwrap_or_else(|| panic!("the scenario has no user '{key}'"))
    }

    /// The customer's Azure subscription ids, in the scenario's order.
    pub fn subscription_ids(&self) -> Vec<String> {
        self.tenant()
            .subscriptions
            .iter()
            .map(|s| s.subscription_id.clone())
            .collect()
    }
}

/// A simulator running in this process for one test.
pub struct TestSim {
    pub url: String,
    pub ca_path: std::path::PathBuf,
    pub ca_pem: String,
    /// Trusts the simulator's CA.
    pub http: reqwest::Client,
    pub scenario: Scenario,
    running: Option<RunningSim>,
    _dir: tempfile::TempDir,
}

impl TestSim {
    pub async fn start() -> TestSim {
        Self::start_with(SimOptions::default()).await
    }

    pub async fn start_with(o: SimOptions) -> TestSim {
        let dir = tempfile::tempdir().expect("temp dir");
        let running = cloudkeep_sim::spawn(SimConfig {
            preset: o.preset,
            seed: o.seed,
            cert_dir: dir.path().join("sim"),
            throttle: o.throttle,
            faults: o.faults,
            token_lifetime_secs: o.token_lifetime_secs,
        })
        .await
        .expect("simulator");
        let http = trusting(running.ca_pem.as_bytes());
        let raw: Value = http
            .get(format!("{}/_sim/scenario", running.url))
            .send()
            .await
            .expect("scenario")
            .json()
            .await
            .expect("scenario json");
        // (`scenario_now` re-reads it; this first read types it.)
        let mut scenario: Scenario =
            serde_json::from_value(raw.clone()).expect("the scenario's shape");
        scenario.raw = raw;
        TestSim {
            url: running.url.clone(),
            ca_path: running.ca_path.clone(),
            ca_pem: running.ca_pem.clone(),
            http,
            scenario,
            running: Some(running),
            _dir: dir,
        }
    }

    /// Stops serving (connections then fail as with an outage).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    /// A client builder that trusts the simulator's CA, for clients that
    /// need more (no redirects, a host name resolved to the simulator).
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().add_root_certificate(
            reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("ca"),
        )
    }

    /// An Azure client pointed at the simulator, trusting its CA.
    pub fn azure(&self) -> AzureClient {
        AzureClient::new(AzureConfig {
            authority_host: self.url.clone(),
            arm_endpoint: self.url.clone(),
            extra_ca_pem: Some(self.ca_pem.clone()),
            timeout: std::time::Duration::from_secs(10),
        })
        .expect("azure client")
    }

    /// A control call (`/_sim/...`); answers its status and body.
    pub async fn control(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("control call");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A control call that must succeed.
    pub async fn control_ok(&self, method: Method, path: &str, body: Value) -> Value {
        let (status, answer) = self.control(method, path, Some(body)).await;
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    /// The scenario as it stands now (control calls change it), as JSON.
    pub async fn scenario_now(&self) -> Value {
        let (status, scenario) = self.control(Method::GET, "/_sim/scenario", None).await;
        assert!(status.is_success(), "scenario: {status}");
        scenario
    }

    /// Replaces the fault settings (`{}` clears them).
    pub async fn faults(&self, faults: Value) {
        self.control_ok(Method::PUT, "/_sim/faults", faults).await;
    }

    /// The request log after `since` (0: all of it).
    pub async fn requests(&self, since: u64) -> Vec<Value> {
        let (status, log) = self
            .control(Method::GET, &format!("/_sim/requests?since={since}"), None)
            .await;
        assert!(status.is_success(), "request log: {status}");
        log.as_array().cloned().unwrap_or_default()
    }

    /// The sequence number of the last logged request.
    /// A resource's tags as Azure answers them now (read over ARM with the
    /// `collector` principal, as a portal would show them).
    pub async fn tags(&self, arm_id: &str) -> Value {
        let p = self.scenario.sp("collector");
        let token: Value = self
            .http
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.url,
                self.scenario.tenant().tenant_id
            ))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", p.client_id.as_str()),
                ("client_secret", p.client_secret.as_str()),
                ("scope", "https://management.azure.com/.default"),
            ])
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        let r: Value = self
            .http
            .get(format!(
                "{}{arm_id}/providers/Microsoft.Resources/tags/default?api-version=2025-04-01",
                self.url
            ))
            .bearer_auth(token["access_token"].as_str().expect("token"))
            .send()
            .await
            .expect("tags")
            .json()
            .await
            .expect("json");
        r["properties"]["tags"].clone()
    }

    pub async fn last_seq(&self) -> u64 {
        self.requests(0)
            .await
            .last()
            .and_then(|e| e["seq"].as_u64())
            .unwrap_or(0)
    }
}

/// A client that trusts the simulator's CA.
pub fn trusting(ca_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).expect("ca"))
        .build()
        .expect("client")
}
