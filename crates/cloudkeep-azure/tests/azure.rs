//! End-to-end tests of the Azure client against the simulator over HTTPS:
//! tokens and Entra's refusals, subscriptions, role assignments, retries
//! through injected faults, throttling, and paging through empty pages;
//! `reads` covers the typed reads (cost, Defender, storage, Key Vault,
//! role definitions, tenants, Resource Graph) and streaming, `qpu` the
//! pacing of cost queries by the tenant's query units.

#[path = "azure/qpu.rs"]
mod qpu;
#[path = "azure/reads.rs"]
mod reads;

use std::collections::BTreeSet;
use std::time::Duration;

use cloudkeep_azure::{AzureClient, AzureConfig, AzureError, CredentialErrorKind};
use cloudkeep_domain::SecretString;
use harness::Sim;
use serde_json::{Value, json};

mod harness {
    //! The shared test kit's simulator, with an `AzureClient` trusting its
    //! CA and helpers for the scenario's principals.

    use cloudkeep_azure::{AccessToken, AzureClient, AzureConfig};
    use cloudkeep_domain::SecretString;
    use cloudkeep_testkit::{SimOptions, TestSim};
    use reqwest::Method;
    use serde_json::Value;
    use std::time::Duration;

    pub struct Sim {
        pub test: TestSim,
        pub scenario: Value,
        pub client: AzureClient,
    }

    /// A service principal's credentials from the scenario.
    pub struct Principal {
        pub client_id: String,
        pub secret: SecretString,
        pub object_id: String,
    }

    pub async fn start() -> Sim {
        start_with(false).await
    }

    /// A simulator with a fixed seed (so fault draws repeat), no faults,
    /// and Azure's throttling on or off.
    pub async fn start_with(throttle: bool) -> Sim {
        let test = TestSim::start_with(SimOptions {
            throttle,
            ..SimOptions::default()
        })
        .await;
        Sim {
            client: test.azure(),
            scenario: test.scenario.raw.clone(),
            test,
        }
    }

    pub fn config(url: &str, ca: Option<String>) -> AzureConfig {
        AzureConfig {
            authority_host: url.to_string(),
            arm_endpoint: url.to_string(),
            extra_ca_pem: ca,
            timeout: Duration::from_secs(10),
        }
    }

    impl Sim {
        pub fn tenant(&self) -> &Value {
            &self.scenario["tenants"][0]
        }

        pub fn tenant_id(&self) -> String {
            self.test.scenario.tenant().tenant_id.clone()
        }

        pub fn subscription_ids(&self) -> Vec<String> {
            self.test.scenario.subscription_ids()
        }

        pub fn sp(&self, key: &str) -> Principal {
            let p = self.test.scenario.sp(key);
            Principal {
                client_id: p.client_id.clone(),
                secret: p.secret(),
                object_id: p.object_id.clone(),
            }
        }

        /// A token for a scenario service principal, through the client.
        pub async fn token(&self, key: &str) -> AccessToken {
            let p = self.sp(key);
            self.client
                .client_credentials_token(&self.tenant_id(), &p.client_id, &p.secret)
                .await
                .unwrap_or_else(|e| panic!("token for {key}: {e}"))
        }

        pub async fn control(&self, method: Method, path: &str, body: Value) -> Value {
            self.test.control_ok(method, path, body).await
        }

        pub async fn set_faults(&self, faults: Value) {
            self.test.faults(faults).await;
        }

        /// The request log after `seq`: `[{seq, method, path, query, principal, status}]`.
        pub async fn requests_since(&self, seq: u64) -> Vec<Value> {
            self.test.requests(seq).await
        }

        /// An ARM answer exactly as the simulator sends it, to compare the
        /// typed reads with.
        pub async fn raw_get(&self, token: &AccessToken, path: &str, api_version: &str) -> Value {
            let r = self
                .test
                .http
                .get(format!("{}{path}", self.test.url))
                .query(&[("api-version", api_version)])
                .bearer_auth(token.token.expose())
                .send()
                .await
                .expect("raw ARM call");
            let status = r.status();
            let body: Value = r.json().await.expect("raw ARM json");
            assert!(status.is_success(), "{path}: {status} {body}");
            body
        }

        /// Every role assignment `principal` (a scenario key) holds, as the
        /// scenario lists them: (role name, scope).
        pub fn roles_of(&self, key: &str) -> Vec<(String, String)> {
            self.tenant()["service_principals"]
                .as_array()
                .expect("principals")
                .iter()
                .find(|p| p["key"] == key)
                .and_then(|p| p["roles"].as_array())
                .expect("roles")
                .iter()
                .map(|r| {
                    (
                        r["role"].as_str().expect("role").to_string(),
                        r["scope"].as_str().expect("scope").to_string(),
                    )
                })
                .collect()
        }

        pub async fn last_seq(&self) -> u64 {
            self.test.last_seq().await
        }
    }
}

const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
const TAG_CONTRIBUTOR: &str = "4a9ae827-6dc8-4573-8ac7-8239d42aa03f";
const SECURITY_READER: &str = "39bc4728-0917-49c7-9d2c-d95423bc2eb4";
const COST_MANAGEMENT_READER: &str = "72fafb9e-0641-4937-9268-a91bfd8191a3";
const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";

fn sorted(ids: impl IntoIterator<Item = String>) -> Vec<String> {
    ids.into_iter()
        .map(|s| s.to_ascii_lowercase())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

async fn expect_credential_error(
    sim: &Sim,
    tenant: &str,
    client_id: &str,
    secret: &str,
) -> (CredentialErrorKind, Option<u32>, String) {
    let err = sim
        .client
        .client_credentials_token(tenant, client_id, &SecretString::new(secret))
        .await
        .expect_err("the credential is refused");
    let text = err.to_string();
    match err {
        AzureError::Credential { kind, code, .. } => (kind, code, text),
        other => panic!("expected a credential error, got {other:?}"),
    }
}

/// The entries of a request log on ARM's `/subscriptions` list.
fn subscription_calls(log: &[Value]) -> Vec<&Value> {
    log.iter()
        .filter(|e| e["path"] == "/subscriptions")
        .collect()
}

/// Every failed entry (`status` 0 is a dropped connection) is followed by
/// another attempt at the same path and query.
fn assert_retried(log: &[Value], failed: u64) -> usize {
    let mut seen = 0;
    for (i, e) in log.iter().enumerate() {
        if e["status"].as_u64() != Some(failed) {
            continue;
        }
        seen += 1;
        assert!(
            log[i + 1..]
                .iter()
                .any(|later| later["path"] == e["path"] && later["query"] == e["query"]),
            "a {failed} on {} was not retried",
            e["path"]
        );
    }
    seen
}

#[tokio::test]
async fn issues_a_token_with_the_principal_s_object_id() {
    let sim = harness::start().await;
    let collector = sim.sp("collector");
    let token = sim.token("collector").await;
    assert_eq!(token.object_id, collector.object_id);
    assert_eq!(token.tenant_id, sim.tenant_id());
    let left = token.expires_at - chrono::Utc::now();
    assert!(
        left.num_seconds() > 3500 && left.num_seconds() <= 3599,
        "{left}"
    );
    assert!(!token.token.expose().is_empty());
    let shown = format!("{token:?}");
    assert!(!shown.contains(token.token.expose()), "{shown}");
}

#[tokio::test]
async fn names_each_credential_refusal() {
    let sim = harness::start().await;
    let tenant = sim.tenant_id();
    let collector = sim.sp("collector");

    let (kind, code, text) =
        expect_credential_error(&sim, &tenant, &collector.client_id, "not-the-secret").await;
    assert_eq!(
        (kind, code),
        (CredentialErrorKind::WrongSecret, Some(7000215))
    );
    assert_eq!(
        text,
        "the client secret is wrong (AADSTS7000215): paste the secret's value, not its id"
    );

    let (kind, code, _) = expect_credential_error(
        &sim,
        &tenant,
        "0b6f2b1e-9a4c-4d6e-8f1a-2c3d4e5f6a7b",
        "whatever",
    )
    .await;
    assert_eq!(
        (kind, code),
        (CredentialErrorKind::UnknownApplication, Some(700016))
    );

    let (kind, code, _) = expect_credential_error(
        &sim,
        "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a",
        &collector.client_id,
        collector.secret.expose(),
    )
    .await;
    assert_eq!(
        (kind, code),
        (CredentialErrorKind::UnknownTenant, Some(90002))
    );

    let (kind, code, _) = expect_credential_error(&sim, "", &collector.client_id, "x").await;
    assert_eq!((kind, code), (CredentialErrorKind::UnknownTenant, None));
}

#[tokio::test]
async fn reports_an_expired_secret() {
    let sim = harness::start().await;
    let collector = sim.sp("collector");
    sim.control(
        reqwest::Method::POST,
        "/_sim/secrets/expire",
        json!({"client_id": collector.client_id}),
    )
    .await;
    let (kind, code, text) = expect_credential_error(
        &sim,
        &sim.tenant_id(),
        &collector.client_id,
        collector.secret.expose(),
    )
    .await;
    assert_eq!(
        (kind, code),
        (CredentialErrorKind::ExpiredSecret, Some(7000222))
    );
    assert!(text.contains("expired"), "{text}");
}

#[tokio::test]
async fn lists_the_subscriptions_a_principal_sees() {
    let sim = harness::start().await;
    let token = sim.token("collector").await;
    let subs = sim
        .client
        .subscriptions(&token)
        .await
        .expect("subscriptions");
    assert_eq!(
        sorted(subs.iter().map(|s| s.subscription_id.clone())),
        sorted(sim.subscription_ids())
    );
    for s in &subs {
        let expected = sim.tenant()["subscriptions"]
            .as_array()
            .expect("subscriptions")
            .iter()
            .find(|e| e["subscription_id"] == s.subscription_id.as_str())
            .expect("in the scenario");
        assert_eq!(
            s.display_name,
            expected["display_name"].as_str().expect("name")
        );
        assert_eq!(s.tenant_id, sim.tenant_id());
        assert_eq!(s.state, "Enabled");
    }

    let none = sim.token("no-access").await;
    assert!(
        sim.client
            .subscriptions(&none)
            .await
            .expect("empty")
            .is_empty()
    );
}

#[tokio::test]
async fn lists_role_assignments_at_a_subscription() {
    let sim = harness::start().await;
    let collector = sim.sp("collector");
    let token = sim.token("collector").await;
    for sub in sim.subscription_ids() {
        let roles = sim
            .client
            .role_assignments(&token, &sub, &collector.object_id)
            .await
            .expect("role assignments");
        let ids: BTreeSet<&str> = roles
            .iter()
            .map(|r| r.role_definition_id.as_str())
            .collect();
        for role in [
            READER,
            TAG_CONTRIBUTOR,
            SECURITY_READER,
            COST_MANAGEMENT_READER,
        ] {
            assert!(ids.contains(role), "{sub}: {role} missing from {roles:?}");
        }
        for r in &roles {
            assert!(
                r.scope == "/"
                    || r.scope
                        .eq_ignore_ascii_case(&format!("/subscriptions/{sub}")),
                "{r:?}"
            );
        }
    }

    let reader = sim.sp("reader-only");
    let token = sim.token("reader-only").await;
    for sub in sim.subscription_ids() {
        let roles = sim
            .client
            .role_assignments(&token, &sub, &reader.object_id)
            .await
            .expect("role assignments");
        let ids: Vec<&str> = roles
            .iter()
            .map(|r| r.role_definition_id.as_str())
            .collect();
        assert_eq!(ids, vec![READER], "{sub}");
    }
}

#[tokio::test]
async fn maps_arm_refusals() {
    let sim = harness::start().await;
    let sub = sim.subscription_ids()[0].clone();

    let none = sim.sp("no-access");
    let token = sim.token("no-access").await;
    let err = sim
        .client
        .role_assignments(&token, &sub, &none.object_id)
        .await
        .expect_err("no access");
    match &err {
        AzureError::Forbidden { code, message } => {
            assert_eq!(code, "AuthorizationFailed");
            assert!(
                message.contains("Microsoft.Authorization/roleAssignments/read"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }

    let mut bogus = sim.token("collector").await;
    bogus.token = SecretString::new("not-a-token");
    match sim.client.subscriptions(&bogus).await {
        Err(AzureError::Unauthorized { code, .. }) => {
            assert!(code.contains("Authentication"), "{code}")
        }
        other => panic!("{other:?}"),
    }

    let collector = sim.sp("collector");
    let token = sim.token("collector").await;
    match sim
        .client
        .role_assignments(
            &token,
            "11111111-2222-3333-4444-555555555555",
            &collector.object_id,
        )
        .await
    {
        Err(AzureError::NotFound { code, .. }) => assert_eq!(code, "SubscriptionNotFound"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn keeps_only_assignments_at_or_above_the_subscription_across_pages() {
    let sim = harness::start().await;
    let collector = sim.sp("collector");
    let sub = sim.subscription_ids()[0].clone();
    // More than one page (ARM's 500) of assignments below the subscription,
    // then two that apply at it, which land on the last page.
    for i in 0..520 {
        sim.control(
            reqwest::Method::POST,
            "/_sim/role-assignments",
            json!({
                "principal_id": collector.object_id,
                "role": "Reader",
                "scope": format!("/subscriptions/{sub}/resourceGroups/rg-page-{i}"),
            }),
        )
        .await;
    }
    for (role, scope) in [
        ("Contributor", format!("/subscriptions/{sub}")),
        ("Reader", "/".to_string()),
    ] {
        sim.control(
            reqwest::Method::POST,
            "/_sim/role-assignments",
            json!({"principal_id": collector.object_id, "role": role, "scope": scope}),
        )
        .await;
    }
    let token = sim.token("collector").await;
    let seq = sim.last_seq().await;
    let roles = sim
        .client
        .role_assignments(&token, &sub, &collector.object_id)
        .await
        .expect("role assignments");
    let pages = sim.requests_since(seq).await;
    assert!(pages.len() >= 2, "one page only: {pages:?}");
    assert!(
        roles.iter().all(|r| !r.scope.contains("resourceGroups")),
        "{roles:?}"
    );
    let has = |role: &str, scope: &str| {
        roles
            .iter()
            .any(|r| r.role_definition_id == role && r.scope.eq_ignore_ascii_case(scope))
    };
    assert!(has(READER, &format!("/subscriptions/{sub}")), "{roles:?}");
    assert!(
        has(CONTRIBUTOR, &format!("/subscriptions/{sub}")),
        "{roles:?}"
    );
    assert!(has(READER, "/"), "{roles:?}");
}

#[tokio::test]
async fn retries_through_server_errors() {
    let sim = harness::start().await;
    sim.set_faults(json!({"rate_500": 0.3})).await;
    let seq = sim.last_seq().await;
    let token = sim.token("collector").await;
    let expected = sorted(sim.subscription_ids());
    for _ in 0..10 {
        let subs = sim
            .client
            .subscriptions(&token)
            .await
            .expect("retried to success");
        assert_eq!(
            sorted(subs.into_iter().map(|s| s.subscription_id)),
            expected
        );
    }
    let log = sim.requests_since(seq).await;
    let retried = assert_retried(&log, 500);
    assert!(retried > 0, "no 500 was injected: {log:?}");
    let calls = subscription_calls(&log);
    assert_eq!(calls.iter().filter(|e| e["status"] == 200).count(), 10);
}

#[tokio::test]
async fn retries_through_dropped_connections_and_truncated_bodies() {
    let sim = harness::start().await;
    let token = sim.token("collector").await;
    let expected = sorted(sim.subscription_ids());
    for faults in [json!({"rate_drop": 0.3}), json!({"rate_truncate": 0.3})] {
        sim.set_faults(faults.clone()).await;
        let seq = sim.last_seq().await;
        for _ in 0..10 {
            let subs = sim
                .client
                .subscriptions(&token)
                .await
                .unwrap_or_else(|e| panic!("{faults}: {e}"));
            assert_eq!(
                sorted(subs.into_iter().map(|s| s.subscription_id)),
                expected
            );
        }
        let log = sim.requests_since(seq).await;
        let calls = subscription_calls(&log);
        // A truncated answer is logged with its status (200) before it is
        // cut, so count attempts: more than one per list means retries.
        assert!(calls.len() > 10, "{faults}: no fault hit: {log:?}");
        if faults["rate_drop"].is_number() {
            assert!(
                assert_retried(&log, 0) > 0,
                "no dropped connection: {log:?}"
            );
        }
    }
}

#[tokio::test]
async fn gives_up_on_a_persistent_server_error() {
    let sim = harness::start().await;
    let token = sim.token("collector").await;
    sim.set_faults(json!({"rate_500": 1.0})).await;
    let seq = sim.last_seq().await;
    match sim.client.subscriptions(&token).await {
        Err(e @ AzureError::Service { status: 500, .. }) => {
            let AzureError::Service { code, .. } = &e else {
                unreachable!()
            };
            assert_eq!(code, "InternalServerError");
            assert!(e.to_string().contains("HTTP 500"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    let log = sim.requests_since(seq).await;
    assert_eq!(
        subscription_calls(&log).len(),
        5,
        "one try and four retries: {log:?}"
    );

    let collector = sim.sp("collector");
    match sim
        .client
        .client_credentials_token(&sim.tenant_id(), &collector.client_id, &collector.secret)
        .await
    {
        Err(AzureError::Service { status: 500, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn reports_persistent_throttling_with_retry_after() {
    let sim = harness::start().await;
    let token = sim.token("collector").await;
    sim.set_faults(json!({"rate_429": 1.0})).await;
    let seq = sim.last_seq().await;
    let started = std::time::Instant::now();
    // Throttling is retried for as long as its waits fit the bound, not a
    // number of times: three waits of the 2 s asked fit in 7 s, a fourth not.
    let client = sim
        .client
        .clone()
        .with_max_throttle_wait(Duration::from_secs(7));
    match client.subscriptions(&token).await {
        Err(e @ AzureError::Throttled { .. }) => {
            let AzureError::Throttled { retry_after } = e else {
                unreachable!()
            };
            assert_eq!(retry_after, Duration::from_secs(2));
        }
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    let log = sim.requests_since(seq).await;
    assert_eq!(subscription_calls(&log).len(), 4);
}

#[tokio::test]
async fn a_streak_of_429s_that_fits_the_bound_is_waited_out() {
    let sim = harness::start().await;
    let token = sim.token("collector").await;
    // Six 429s in a row, each asking for 300 ms: more than the retries
    // allowed for other failures, well within the bound.
    sim.set_faults(json!({"burst_429": 6, "retry_after_ms": 300}))
        .await;
    let seq = sim.last_seq().await;
    let subs = sim
        .client
        .subscriptions(&token)
        .await
        .expect("subscriptions");
    assert_eq!(
        sorted(subs.into_iter().map(|s| s.subscription_id)),
        sorted(sim.subscription_ids())
    );
    let log = sim.requests_since(seq).await;
    let calls = subscription_calls(&log);
    assert_eq!(calls.len(), 7, "{calls:?}");
    assert!(calls[..6].iter().all(|e| e["status"] == 429), "{calls:?}");
}

#[tokio::test]
async fn follows_next_links_through_empty_pages() {
    let sim = harness::start().await;
    let collector = sim.sp("collector");
    let token = sim.token("collector").await;
    sim.set_faults(json!({"rate_empty_page": 0.5})).await;
    let seq = sim.last_seq().await;
    let expected = sorted(sim.subscription_ids());
    for _ in 0..5 {
        let subs = sim
            .client
            .subscriptions(&token)
            .await
            .expect("subscriptions");
        assert_eq!(
            sorted(subs.into_iter().map(|s| s.subscription_id)),
            expected
        );
    }
    let log = sim.requests_since(seq).await;
    let calls = subscription_calls(&log);
    assert!(calls.len() > 5, "no empty page was served: {log:?}");
    assert!(
        calls
            .iter()
            .any(|e| e["query"].as_str().unwrap_or("").contains("$skiptoken")),
        "{calls:?}"
    );

    let sub = sim.subscription_ids()[0].clone();
    for _ in 0..5 {
        let roles = sim
            .client
            .role_assignments(&token, &sub, &collector.object_id)
            .await
            .expect("role assignments");
        let ids: BTreeSet<&str> = roles
            .iter()
            .map(|r| r.role_definition_id.as_str())
            .collect();
        for role in [
            READER,
            TAG_CONTRIBUTOR,
            SECURITY_READER,
            COST_MANAGEMENT_READER,
        ] {
            assert!(ids.contains(role), "{role} missing from {roles:?}");
        }
    }
}

#[tokio::test]
async fn fails_cleanly_when_azure_is_unreachable_or_untrusted() {
    let sim = harness::start().await;
    let collector = sim.sp("collector");

    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let client = AzureClient::new(harness::config(
        &format!("https://127.0.0.1:{closed}"),
        None,
    ))
    .expect("client");
    match client
        .client_credentials_token(&sim.tenant_id(), &collector.client_id, &collector.secret)
        .await
    {
        Err(AzureError::Transport(text)) => assert!(!text.is_empty()),
        other => panic!("{other:?}"),
    }

    // The simulator without its CA: the certificate is not trusted.
    let untrusting = AzureClient::new(harness::config(&sim.test.url, None)).expect("client");
    match untrusting
        .client_credentials_token(&sim.tenant_id(), &collector.client_id, &collector.secret)
        .await
    {
        Err(AzureError::Transport(text)) => {
            assert!(text.to_ascii_lowercase().contains("certificate"), "{text}")
        }
        other => panic!("{other:?}"),
    }

    assert!(matches!(
        AzureClient::new(AzureConfig {
            arm_endpoint: "http://127.0.0.1:1".into(),
            ..AzureConfig::default()
        }),
        Err(AzureError::Transport(_))
    ));
}

/// With Azure's throttling on, a burst of reads past the bucket's size is
/// paced by the remaining-quota headers and never answered 429.
#[tokio::test]
async fn reads_are_paced_before_arm_throttles() {
    let sim = cloudkeep_testkit::TestSim::start_with(cloudkeep_testkit::SimOptions {
        throttle: true,
        seed: 3,
        ..Default::default()
    })
    .await;
    let client = sim.azure();
    let sp = sim.scenario.sp("collector");
    let token = client
        .client_credentials_token(
            &sim.scenario.tenant().tenant_id,
            &sp.client_id,
            &sp.secret(),
        )
        .await
        .expect("token");
    let sub = sim.scenario.subscription_ids()[0].clone();
    let sub = sub.as_str();
    for _ in 0..300 {
        client
            .role_assignments(&token, sub, &token.object_id)
            .await
            .expect("read");
    }
    let log = sim.requests(0).await;
    let throttled = log.iter().filter(|e| e["status"] == 429).count();
    assert!(log.len() > 300);
    assert_eq!(throttled, 0, "paced below ARM's limit");
}
