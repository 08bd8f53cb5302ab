//! Starts the simulator and the server (SQLite in a temp dir), and makes
//! organisations with API tokens.

use std::sync::Arc;

use cloudkeep_azure::{AzureClient, AzureConfig};
use cloudkeep_domain::crypto::LocalKeyFile;
use cloudkeep_domain::password::hash_password;
use cloudkeep_domain::{OperatorApp, Role, SecretString};
use cloudkeep_server::{AppState, ServerSettings};
use cloudkeep_sim::{Preset, RunningSim, SimConfig};
use cloudkeep_store::{NewOrganisation, NewUser, Store};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The Microsoft Partner Network id the test server links.
pub const PARTNER_ID: &str = "4567890";

pub struct App {
    pub url: String,
    pub store: Store,
    pub sim: RunningSim,
    pub sim_http: reqwest::Client,
    pub http: reqwest::Client,
    pub scenario: Value,
    /// Holds the store and the simulator's CA until the test ends.
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for App {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// An organisation's owner, with an API token.
pub struct Org {
    pub token: String,
    pub org_id: String,
    pub owner_email: String,
}

pub async fn spawn_app() -> App {
    let dir = tempfile::tempdir().expect("dir");
    let sim = cloudkeep_sim::spawn(SimConfig {
        preset: Preset::DEMO,
        seed: 11,
        cert_dir: dir.path().join("sim"),
        throttle: false,
        ..Default::default()
    })
    .await
    .expect("simulator");
    let store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("cloudkeep.db").display()
    ))
    .await
    .expect("store");
    let keys = LocalKeyFile::open_or_create(&dir.path().join("master.key")).expect("keys");
    let azure = AzureClient::new(AzureConfig {
        authority_host: sim.url.clone(),
        arm_endpoint: sim.url.clone(),
        extra_ca_pem: Some(sim.ca_pem.clone()),
        timeout: std::time::Duration::from_secs(10),
    })
    .expect("azure client");
    let sim_http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(sim.ca_pem.as_bytes()).expect("ca"))
        .build()
        .expect("client");
    let scenario: Value = sim_http
        .get(format!("{}/_sim/scenario", sim.url))
        .send()
        .await
        .expect("scenario")
        .json()
        .await
        .expect("json");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    // The simulator's cloudkeep application is the operator's, as in the demo.
    let operator = OperatorApp {
        client_id: scenario["application"]["client_id"]
            .as_str()
            .expect("app")
            .into(),
        client_secret: SecretString::new(
            scenario["application"]["client_secret"]
                .as_str()
                .expect("secret"),
        ),
        partner_id: Some(PARTNER_ID.into()),
    };
    let state = AppState::new(
        store.clone(),
        Arc::new(keys),
        azure,
        ServerSettings {
            operator: Some(operator),
            public_url: Some(url.clone()),
            ..ServerSettings::default()
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(cloudkeep_server::run(listener, state, None, async move {
        let _ = stopped.await;
    }));
    App {
        url,
        store,
        sim,
        sim_http,
        http: reqwest::Client::new(),
        scenario,
        _dir: dir,
        stop: Some(stop),
    }
}

impl App {
    pub async fn org(&self, name: &str) -> Org {
        let email = format!("owner-{}@{name}.example.com", uuid::Uuid::new_v4().simple());
        let (scope, _, owner) = self
            .store
            .create_organisation(NewOrganisation {
                name: name.into(),
                owner_email: email.clone(),
                owner_name: "Owner".into(),
                owner_password_hash: hash_password(&SecretString::new("correct horse battery"))
                    .expect("hash"),
                actor: "system:test".into(),
            })
            .await
            .expect("org");
        let (_, token) = self
            .store
            .create_api_token(&scope, owner.id, "test", None, "system:test")
            .await
            .expect("token");
        Org {
            token: token.expose().to_string(),
            org_id: scope.org().to_string(),
            owner_email: email,
        }
    }

    /// A token for a new user of `org` with `role`.
    pub async fn member(&self, org: &Org, role: Role) -> String {
        let auth = self
            .store
            .authenticate_token(&SecretString::new(org.token.clone()))
            .await
            .expect("auth")
            .expect("valid");
        let user = self
            .store
            .create_user(
                &auth.scope,
                NewUser {
                    email: format!("{role}-{}@example.com", uuid::Uuid::new_v4().simple()),
                    name: role.to_string(),
                    role,
                    password_hash: None,
                },
                "system:test",
            )
            .await
            .expect("user");
        let (_, token) = self
            .store
            .create_api_token(&auth.scope, user.id, "member", None, "system:test")
            .await
            .expect("token");
        token.expose().to_string()
    }

    pub fn tenant(&self) -> &Value {
        &self.scenario["tenants"][0]
    }

    pub fn sp(&self, key: &str) -> Value {
        self.tenant()["service_principals"]
            .as_array()
            .expect("sps")
            .iter()
            .find(|p| p["key"] == key)
            .cloned()
            .expect("principal")
    }

    pub async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("call");
        let status = r.status();
        let text = r.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(json!({ "raw": text })),
        )
    }

    pub fn connect_body(&self, key: &str) -> Value {
        let p = self.sp(key);
        json!({"name": "Contoso", "tenant_id": self.tenant()["tenant_id"], "client_id": p["client_id"], "client_secret": p["client_secret"]})
    }

    pub async fn connect(&self, org: &Org, key: &str) -> Value {
        let (status, body) = self
            .call(
                &org.token,
                Method::POST,
                "/api/v1/connections",
                Some(self.connect_body(key)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    pub async fn sim_control(&self, method: Method, path: &str, body: Value) {
        let r = self
            .sim_http
            .request(method, format!("{}{path}", self.sim.url))
            .json(&body)
            .send()
            .await
            .expect("control");
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
}

impl App {
    pub async fn sim_requests(&self, since: u64) -> Vec<Value> {
        self.sim_http
            .get(format!("{}/_sim/requests?since={since}", self.sim.url))
            .send()
            .await
            .expect("log")
            .json::<Vec<Value>>()
            .await
            .expect("json")
    }

    pub async fn sim_last_seq(&self) -> u64 {
        self.sim_requests(0)
            .await
            .last()
            .and_then(|e| e["seq"].as_u64())
            .unwrap_or(0)
    }

    pub fn subscription_ids(&self) -> Vec<String> {
        self.tenant()["subscriptions"]
            .as_array()
            .expect("subs")
            .iter()
            .map(|s| s["subscription_id"].as_str().expect("id").to_string())
            .collect()
    }
}
