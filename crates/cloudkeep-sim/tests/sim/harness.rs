//! The shared test kit's simulator, and talking to it as a client would.

use cloudkeep_sim::Faults;
use cloudkeep_testkit::{SimOptions, TestSim};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

pub struct Sim {
    pub test: TestSim,
    /// Trusts the simulator's CA and follows no redirect (tests read them).
    pub http: reqwest::Client,
    pub scenario: Value,
}

pub struct Options {
    pub throttle: bool,
    pub faults: Faults,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            throttle: false,
            faults: Faults::default(),
            seed: 7,
        }
    }
}

pub async fn start() -> Sim {
    start_with(Options::default()).await
}

pub async fn start_with(options: Options) -> Sim {
    let test = TestSim::start_with(SimOptions {
        seed: options.seed,
        throttle: options.throttle,
        faults: options.faults,
        ..SimOptions::default()
    })
    .await;
    let http = test
        .client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    Sim {
        scenario: test.scenario.raw.clone(),
        http,
        test,
    }
}

/// A principal's credentials from the scenario.
pub struct Principal {
    pub client_id: String,
    pub client_secret: String,
    pub object_id: String,
}

impl Sim {
    pub fn url(&self) -> &str {
        &self.test.url
    }

    pub fn tenant(&self) -> &Value {
        &self.scenario["tenants"][0]
    }

    pub fn tenant_id(&self) -> String {
        self.tenant()["tenant_id"]
            .as_str()
            .expect("tenant id")
            .to_string()
    }

    pub fn subscriptions(&self) -> Vec<String> {
        self.tenant()["subscriptions"]
            .as_array()
            .expect("subscriptions")
            .iter()
            .map(|s| s["subscription_id"].as_str().expect("id").to_string())
            .collect()
    }

    pub fn sp(&self, key: &str) -> Principal {
        let p = self.tenant()["service_principals"]
            .as_array()
            .expect("principals")
            .iter()
            .find(|p| p["key"] == key)
            .unwrap_or_else(|| panic!("no principal {key}"));
        Principal {
            client_id: p["client_id"].as_str().expect("client id").into(),
            client_secret: p["client_secret"].as_str().expect("secret").into(),
            object_id: p["object_id"].as_str().expect("oid").into(),
        }
    }

    pub fn user(&self, key: &str) -> Value {
        self.tenant()["users"]
            .as_array()
            .expect("users")
            .iter()
            .find(|u| u["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no user {key}"))
    }

    pub async fn control_get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.url()))
            .send()
            .await
            .expect("control call");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.expect("json")
    }

    pub async fn control(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.url()))
            .json(&body)
            .send()
            .await
            .expect("control call");
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Posts to the token endpoint; answers status and body.
    pub async fn token_request(&self, tenant: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/{tenant}/oauth2/v2.0/token", self.url()))
            .form(form)
            .send()
            .await
            .expect("token call");
        let status = r.status();
        (status, r.json().await.expect("json"))
    }

    pub async fn token_for(&self, p: &Principal) -> String {
        let tenant = self.tenant_id();
        let (status, body) = self
            .token_request(
                &tenant,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &p.client_id),
                    ("client_secret", &p.client_secret),
                    ("scope", "https://management.azure.com/.default"),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().expect("token").to_string()
    }

    pub async fn token(&self, key: &str) -> String {
        self.token_for(&self.sp(key)).await
    }

    /// An ARM call with a bearer token; `path_and_query` is relative to the URL.
    pub async fn arm(
        &self,
        token: &str,
        method: Method,
        path_and_query: &str,
        body: Option<Value>,
    ) -> Resp {
        let url = if path_and_query.starts_with("https://") {
            path_and_query.to_string()
        } else {
            format!("{}{path_and_query}", self.url())
        };
        let mut req = self.http.request(method, url).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("arm call");
        Resp::from(r).await
    }

    pub async fn get(&self, token: &str, path_and_query: &str) -> Resp {
        self.arm(token, Method::GET, path_and_query, None).await
    }

    /// Follows `nextLink` from a GET, gathering every `value` item.
    pub async fn get_all(&self, token: &str, path_and_query: &str) -> (usize, Vec<Value>) {
        let mut items = Vec::new();
        let mut pages = 0;
        let mut next = Some(path_and_query.to_string());
        while let Some(link) = next.take() {
            let r = self.get(token, &link).await;
            assert_eq!(r.status, StatusCode::OK, "{link}: {}", r.body);
            pages += 1;
            items.extend(r.body["value"].as_array().cloned().unwrap_or_default());
            next = r.body["nextLink"].as_str().map(str::to_string);
        }
        (pages, items)
    }

    pub async fn requests_since(&self, seq: u64) -> Vec<Value> {
        self.control_get(&format!("/_sim/requests?since={seq}"))
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn last_seq(&self) -> u64 {
        self.requests_since(0)
            .await
            .last()
            .and_then(|e| e["seq"].as_u64())
            .unwrap_or(0)
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    async fn from(r: reqwest::Response) -> Resp {
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(json!({ "raw": text }))
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A number not used before in this process.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// PKCE verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    use base64::Engine;
    use sha2::Digest;
    let verifier = format!(
        "verifier-{}-abcdefghijklmnopqrstuvwxyz0123456789",
        uuid_like()
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub const REDIRECT: &str = "https://cloudkeep.example/api/v1/connections/consent/callback";

impl Sim {
    pub fn app(&self) -> (String, String) {
        let a = &self.scenario["application"];
        (
            a["client_id"].as_str().expect("app id").into(),
            a["client_secret"].as_str().expect("app secret").into(),
        )
    }

    /// Runs `/authorize` silently for a user; answers the redirect's query.
    pub async fn authorize(
        &self,
        upn: &str,
        challenge: &str,
        state: &str,
    ) -> Vec<(String, String)> {
        let (client_id, _) = self.app();
        let r = self
            .http
            .get(format!(
                "{}/organizations/oauth2/v2.0/authorize",
                self.url()
            ))
            .query(&[
                ("client_id", client_id.as_str()),
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                (
                    "scope",
                    "https://management.azure.com/user_impersonation offline_access openid",
                ),
                ("state", state),
                ("code_challenge", challenge),
                ("code_challenge_method", "S256"),
                ("login_hint", upn),
                ("prompt", "none"),
            ])
            .send()
            .await
            .expect("authorize");
        assert_eq!(r.status(), StatusCode::FOUND);
        let location = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        assert!(location.starts_with(REDIRECT), "{location}");
        let query = location.split_once('?').map(|(_, q)| q).unwrap_or("");
        url_pairs(query)
    }

    /// A delegated ARM token for a scenario user, through the code flow.
    pub async fn user_token(&self, key: &str) -> String {
        self.consent().await;
        let upn = self.user(key)["upn"].as_str().expect("upn").to_string();
        let (verifier, challenge) = pkce();
        let params = self.authorize(&upn, &challenge, "s1").await;
        let code = params
            .iter()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.clone())
            .expect("code");
        let (client_id, secret) = self.app();
        let (status, body) = self
            .token_request(
                "organizations",
                &[
                    ("grant_type", "authorization_code"),
                    ("client_id", &client_id),
                    ("client_secret", &secret),
                    ("code", &code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", &verifier),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().expect("token").to_string()
    }
}

pub fn url_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

/// The claims of a JWT, unverified.
pub fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("payload");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64");
    serde_json::from_slice(&raw).expect("claims json")
}

impl Sim {
    /// Consents to cloudkeep's application in the tenant, as its Owner does.
    pub async fn consent(&self) {
        let (client_id, _) = self.app();
        let upn = self.user("partial-owner")["upn"]
            .as_str()
            .expect("upn")
            .to_string();
        let r = self
            .http
            .get(format!("{}/{}/adminconsent", self.url(), self.tenant_id()))
            .query(&[
                ("client_id", client_id.as_str()),
                ("redirect_uri", REDIRECT),
                ("state", "c"),
                ("login_hint", upn.as_str()),
                ("prompt", "none"),
            ])
            .send()
            .await
            .expect("consent");
        let location = r.headers()["location"]
            .to_str()
            .expect("location")
            .to_string();
        assert!(location.contains("admin_consent=True"), "{location}");
    }
}

impl Sim {
    /// A client that reaches `host` (such as `{vault}.vault.azure.net`) at
    /// the simulator, as a `--resolve` would: the URL keeps the host name.
    pub fn client_for(&self, host: &str) -> reqwest::Client {
        let addr: std::net::SocketAddr = self
            .url()
            .trim_start_matches("https://")
            .parse()
            .expect("socket address");
        self.test
            .client_builder()
            .resolve(host, addr)
            .build()
            .expect("client")
    }

    /// The simulator's port, for URLs with another host name.
    pub fn port(&self) -> u16 {
        self.url()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    /// A client-credentials token for `scope` (Graph, Key Vault, ARM).
    pub async fn token_scoped(&self, key: &str, scope: &str) -> String {
        let p = self.sp(key);
        let (status, body) = self
            .token_request(
                &self.tenant_id(),
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &p.client_id),
                    ("client_secret", &p.client_secret),
                    ("scope", scope),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().expect("token").to_string()
    }

    /// A GET on a vault's data plane (`path_and_query` after the host).
    pub async fn vault_get(&self, vault: &str, token: Option<&str>, path_and_query: &str) -> Resp {
        let host = format!("{vault}.vault.azure.net");
        let url = if path_and_query.starts_with("https://") {
            // A data-plane nextLink names port 443: reach the simulator's.
            path_and_query.replace(":443/", &format!(":{}/", self.port()))
        } else {
            format!("https://{host}:{}{path_and_query}", self.port())
        };
        let mut req = self.client_for(&host).get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Resp::from(req.send().await.expect("vault call")).await
    }
}
