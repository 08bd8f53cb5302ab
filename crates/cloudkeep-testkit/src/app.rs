//! The server on a free port with the simulator and a fresh SQLite store:
//! `spawn_app`, then organisations with tokens, members, and calls.

use std::sync::Arc;

use cloudkeep_domain::crypto::LocalKeyFile;
use cloudkeep_domain::password::hash_password;
use cloudkeep_domain::{Clock, OperatorApp, Role, SecretString};
use cloudkeep_server::{AppState, ServerSettings};
use cloudkeep_store::{NewOrganisation, NewUser, OrgScope, Store};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::sim::{SimOptions, TestSim};

/// The Microsoft Partner Network id the test server links.
pub const PARTNER_ID: &str = "4567890";

/// Webhooks may go to loopback receivers, as the tests' do.
pub const LOOPBACK_WEBHOOKS: cloudkeep_sync::webhooks::WebhookPolicy =
    cloudkeep_sync::webhooks::WebhookPolicy {
        allow_private: true,
    };

/// The password every test organisation's owner has.
pub const OWNER_PASSWORD: &str = "correct horse battery";

#[derive(Default)]
pub struct AppOptions {
    pub sim: SimOptions,
    /// The clock the store (and so the sync engine) reads; the real one by default.
    pub clock: Option<Arc<dyn Clock>>,
    /// Pages served beside the API (the web UI's `cloudkeep_web::pages`).
    pub pages: Option<fn() -> axum::Router<AppState>>,
}

pub struct App {
    pub url: String,
    pub store: Store,
    pub sim: TestSim,
    pub http: reqwest::Client,
    pub keys: Arc<LocalKeyFile>,
    /// The file of the keys that seal the audit chain (what an auditor is
    /// given to verify an export offline).
    pub audit_key_file: std::path::PathBuf,
    pub state: AppState,
    /// Holds the store and the key file until the test ends.
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
    pub scope: OrgScope,
}

pub async fn spawn_app() -> App {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions) -> App {
    let dir = tempfile::tempdir().expect("dir");
    let sim = TestSim::start_with(options.sim).await;
    let mut store = Store::open(&format!(
        "sqlite://{}",
        dir.path().join("cloudkeep.db").display()
    ))
    .await
    .expect("store")
    // The audit chain is sealed, as `serve` seals it.
    .with_chain_keys(Arc::new(
        LocalKeyFile::open_or_create(&dir.path().join("audit.key")).expect("audit keys"),
    ));
    if let Some(clock) = options.clock {
        store = store.with_clock(clock);
    }
    let keys =
        Arc::new(LocalKeyFile::open_or_create(&dir.path().join("master.key")).expect("keys"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    // The simulator's cloudkeep application is the operator's, as in the demo.
    let operator = OperatorApp {
        client_id: sim.scenario.application.client_id.clone(),
        client_secret: SecretString::new(sim.scenario.application.client_secret.clone()),
        partner_id: Some(PARTNER_ID.into()),
    };
    let state = AppState::new(
        store.clone(),
        keys.clone(),
        sim.azure(),
        ServerSettings {
            operator: Some(operator),
            public_url: Some(url.clone()),
            // Tests' webhook receivers listen on loopback.
            webhooks: LOOPBACK_WEBHOOKS,
            ..ServerSettings::default()
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let router = match options.pages {
        Some(pages) => cloudkeep_server::app_with(state.clone(), pages()),
        None => cloudkeep_server::app(state.clone()),
    };
    tokio::spawn(cloudkeep_server::serve(
        listener,
        state.clone(),
        router,
        None,
        async move {
            let _ = stopped.await;
        },
    ));
    App {
        url,
        store,
        sim,
        http: reqwest::Client::new(),
        keys,
        audit_key_file: dir.path().join("audit.key"),
        state,
        _dir: dir,
        stop: Some(stop),
    }
}

impl App {
    /// A new organisation with an owner and an API token.
    pub async fn org(&self, name: &str) -> Org {
        let email = format!("owner-{}@{name}.example.com", uuid::Uuid::new_v4().simple());
        let (scope, _, owner) = self
            .store
            .create_organisation(NewOrganisation {
                name: name.into(),
                owner_email: email.clone(),
                owner_name: "Owner".into(),
                owner_password_hash: hash_password(&SecretString::new(OWNER_PASSWORD))
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
            scope,
        }
    }

    /// A token for a new user of `org` with `role`.
    pub async fn member(&self, org: &Org, role: Role) -> String {
        let user = self
            .store
            .create_user(
                &org.scope,
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
            .create_api_token(&org.scope, user.id, "member", None, "system:test")
            .await
            .expect("token");
        token.expose().to_string()
    }

    /// A new user of `org` with `role` who signs in with `OWNER_PASSWORD`;
    /// answers their email.
    pub async fn person(&self, org: &Org, role: Role) -> String {
        let email = format!("{role}-{}@example.com", uuid::Uuid::new_v4().simple());
        self.store
            .create_user(
                &org.scope,
                NewUser {
                    email: email.clone(),
                    name: format!("A {role}"),
                    role,
                    password_hash: Some(
                        hash_password(&SecretString::new(OWNER_PASSWORD)).expect("hash"),
                    ),
                },
                "system:test",
            )
            .await
            .expect("user");
        email
    }

    /// An API call with a token; answers the status and the JSON body (or
    /// `{"raw": text}` when the body is not JSON).
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

    /// A call that must answer `expected`; answers the body.
    pub async fn expect(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        expected: StatusCode,
    ) -> Value {
        let (status, answer) = self.call(token, method.clone(), path, body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        answer
    }

    /// The items of every page of a list.
    pub async fn list(&self, token: &str, path: &str) -> Vec<Value> {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page_path = match &after {
                Some(a) => format!("{path}{sep}limit=1000&after={a}"),
                None => format!("{path}{sep}limit=1000"),
            };
            let page = self
                .expect(token, Method::GET, &page_path, None, StatusCode::OK)
                .await;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => return items,
            }
        }
    }

    /// The body that connects the simulated tenant with principal `key`.
    pub fn connect_body(&self, key: &str) -> Value {
        let p = self.sim.scenario.sp(key);
        json!({"name": "Contoso", "tenant_id": self.sim.scenario.tenant().tenant_id,
               "client_id": p.client_id, "client_secret": p.client_secret})
    }

    /// Connects the simulated tenant with principal `key`; answers the connection.
    pub async fn connect(&self, org: &Org, key: &str) -> Value {
        self.expect(
            &org.token,
            Method::POST,
            "/api/v1/connections",
            Some(self.connect_body(key)),
            StatusCode::CREATED,
        )
        .await
    }

    /// A scheduler of this app's store and Azure (on the store's clock),
    /// sending webhooks to loopback receivers: tests tick it.
    pub fn scheduler(&self) -> cloudkeep_sync::scheduler::Scheduler {
        cloudkeep_sync::scheduler::Scheduler::new(
            self.state.sync_deps(),
            cloudkeep_sync::scheduler::SchedulerConfig {
                webhooks: LOOPBACK_WEBHOOKS,
                ..Default::default()
            },
        )
    }

    /// Runs a sync of a connection and waits for its end; answers the run.
    pub async fn sync(&self, org: &Org, connection: &str) -> Value {
        self.expect(
            &org.token,
            Method::POST,
            &format!("/api/v1/connections/{connection}/sync"),
            None,
            StatusCode::OK,
        )
        .await
    }

    pub fn subscription_ids(&self) -> Vec<String> {
        self.sim.scenario.subscription_ids()
    }
}
