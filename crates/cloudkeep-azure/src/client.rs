//! The client's configuration and shared HTTP machinery: the reqwest client
//! (rustls, an optional extra CA, HTTPS only), URL building, retries with
//! jittered exponential backoff and `Retry-After`, pacing (ARM's buckets,
//! Cost Management's query units), the bound on any throttling wait, and
//! the check that a `nextLink` stays on the Resource Manager endpoint.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use crate::error::AzureError;
use crate::token::AccessToken;

/// Where Azure is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct AzureConfig {
    /// Entra ID authority host, e.g. "https://login.microsoftonline.com" (the simulator's URL in tests).
    pub authority_host: String,
    /// ARM endpoint, e.g. "https://management.azure.com".
    pub arm_endpoint: String,
    /// An extra CA (PEM) to trust, for the simulator.
    pub extra_ca_pem: Option<String>,
    /// Limit for one HTTP attempt, from sending the request to the end of
    /// the body (retries each get their own).
    pub timeout: Duration,
}

impl Default for AzureConfig {
    fn default() -> Self {
        AzureConfig {
            authority_host: "https://login.microsoftonline.com".to_string(),
            arm_endpoint: "https://management.azure.com".to_string(),
            extra_ca_pem: None,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Retries after the first attempt, for failures other than throttling
/// (5xx, a dropped connection, a truncated body). A 429 is retried for as
/// long as the waits it asks for fit the client's bound instead.
pub(crate) const MAX_RETRIES: u32 = 4;
/// The first backoff; it doubles with each retry.
const BASE_BACKOFF: Duration = Duration::from_millis(200);
/// The longest backoff between retries.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// The longest throttling wait slept by default (a 429's `Retry-After`, or
/// pacing by Cost Management's query units, whose minute window can ask
/// for most of a minute); a longer one is reported as `Throttled`.
pub const DEFAULT_MAX_THROTTLE_WAIT: Duration = Duration::from_secs(60);

/// A client for Entra ID and Azure Resource Manager. Cheap to clone (the
/// connection pool and the pacing state are shared).
#[derive(Clone)]
pub struct AzureClient {
    inner: Arc<Inner>,
    max_throttle_wait: Duration,
}

/// How one request is sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy<'a> {
    /// Retries after the first attempt; 0 for a request that must not be
    /// repeated (an authorisation code is redeemable once).
    pub max_retries: u32,
    /// The Cost Management query units it is charged, and to which tenant.
    pub qpu: Option<QpuCharge<'a>>,
    /// Whose bucket it draws from (the token's object id): ARM paces per
    /// subscription and principal.
    pub principal: &'a str,
}

impl Default for Policy<'_> {
    fn default() -> Self {
        Policy {
            max_retries: MAX_RETRIES,
            qpu: None,
            principal: "",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct QpuCharge<'a> {
    /// The token's tenant: Cost Management counts units per tenant.
    pub tenant: &'a str,
    pub units: u32,
}

struct Inner {
    http: reqwest::Client,
    authority: Url,
    arm: Url,
    pacer: crate::pacing::Pacer,
}

impl fmt::Debug for AzureClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureClient")
            .field("authority", &self.inner.authority.as_str())
            .field("arm", &self.inner.arm.as_str())
            .finish_non_exhaustive()
    }
}

/// A complete HTTP answer: status, headers and the whole body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Why one attempt failed before an HTTP answer was complete.
enum Failure {
    /// Worth another attempt (connection, TLS, timeout, truncated body).
    Retryable(String),
    /// Not (the request could not even be built).
    Fatal(String),
}

fn endpoint(name: &str, value: &str) -> Result<Url, AzureError> {
    let bad = |why: &str| {
        AzureError::Transport(format!(
            "the {name} '{value}' is not usable ({why}); it must be an https URL such as https://management.azure.com"
        ))
    };
    let url = Url::parse(value.trim()).map_err(|e| bad(&e.to_string()))?;
    if url.scheme() != "https" {
        return Err(bad("not https"));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(bad("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("it has a query or fragment"));
    }
    Ok(url)
}

/// The error and its sources, joined: reqwest's own text alone ("error
/// sending request") does not say what happened.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

fn classify(e: reqwest::Error) -> Failure {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the answer was cut short"
    } else {
        "request failed"
    };
    let text = format!("{kind}: {}", error_chain(&e));
    if e.is_builder() {
        Failure::Fatal(text)
    } else {
        Failure::Retryable(text)
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504)
}

/// The wait a response asks for: the longest of `Retry-After` (seconds or
/// an HTTP date) and Cost Management's own retry-after headers.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::trim)
    };
    let seconds = |v: &str| -> Option<Duration> {
        let secs: f64 = v.parse().ok()?;
        (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
    };
    let standard = text("retry-after").and_then(|v| {
        seconds(v).or_else(|| {
            let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
            let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
            Some(wait.to_std().unwrap_or(Duration::ZERO))
        })
    });
    // Cost Management may name a longer wait in its own headers than in
    // `Retry-After`; the longest is the one that is honoured.
    [
        "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after",
        "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after",
        "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after",
        "x-ms-ratelimit-microsoft.costmanagement-client-retry-after",
    ]
    .into_iter()
    .filter_map(|name| text(name).and_then(seconds))
    .chain(standard)
    .max()
}

/// The jittered exponential backoff before retry `retry` (0-based):
/// 200 ms, 400 ms, 800 ms, ... each ±20%, at most `MAX_WAIT`.
pub(crate) fn backoff(retry: u32) -> Duration {
    let base = BASE_BACKOFF.saturating_mul(1u32 << retry.min(16));
    let jitter = 0.8 + 0.4 * rand::random::<f64>();
    base.mul_f64(jitter).min(MAX_WAIT)
}

impl AzureClient {
    pub fn new(config: AzureConfig) -> Result<Self, AzureError> {
        let authority = endpoint("authority host", &config.authority_host)?;
        let arm = endpoint("ARM endpoint", &config.arm_endpoint)?;
        let mut builder = reqwest::Client::builder()
            .https_only(true)
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("cloudkeep/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = config.extra_ca_pem.as_deref() {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| {
                AzureError::Transport(format!(
                    "the extra CA is not a PEM certificate: {}",
                    error_chain(&e)
                ))
            })?;
            if certs.is_empty() {
                return Err(AzureError::Transport(
                    "the extra CA holds no PEM certificate".to_string(),
                ));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| {
            AzureError::Transport(format!(
                "could not set up the HTTP client: {}",
                error_chain(&e)
            ))
        })?;
        Ok(AzureClient {
            inner: Arc::new(Inner {
                http,
                authority,
                arm,
                pacer: crate::pacing::Pacer::default(),
            }),
            max_throttle_wait: DEFAULT_MAX_THROTTLE_WAIT,
        })
    }

    /// This client (sharing connections and pacing) with another bound on
    /// throttling waits: a 429 asking for longer, or pacing that would
    /// have to wait longer, fails at once with `AzureError::Throttled`
    /// naming the wait, instead of sleeping through it; retries' backoff
    /// stays within it too. An interactive caller keeps the default
    /// (`DEFAULT_MAX_THROTTLE_WAIT`); a sync passes what is left of its run.
    pub fn with_max_throttle_wait(mut self, wait: Duration) -> Self {
        self.max_throttle_wait = wait;
        self
    }

    fn url(base: &Url, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, AzureError> {
        let mut url = base.clone();
        url.path_segments_mut()
            .map_err(|()| AzureError::Transport(format!("'{base}' cannot take a path")))?
            .pop_if_empty()
            .extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// A URL on the authority host; each segment is percent-encoded.
    pub(crate) fn authority_url(&self, segments: &[&str]) -> Result<Url, AzureError> {
        Self::url(&self.inner.authority, segments, &[])
    }

    /// A URL on the ARM endpoint; each segment is percent-encoded.
    pub(crate) fn arm_url(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Url, AzureError> {
        Self::url(&self.inner.arm, segments, query)
    }

    /// `/subscriptions/{s}/providers/{path...}?api-version=..`, where the
    /// path starts with the provider (`Microsoft.Storage`, `storageAccounts`).
    pub(crate) fn provider_url(
        &self,
        subscription_id: &str,
        path: &[&str],
        api_version: &str,
    ) -> Result<Url, AzureError> {
        let mut segments = vec!["subscriptions", subscription_id.trim(), "providers"];
        segments.extend(path);
        self.arm_url(&segments, &[("api-version", api_version)])
    }

    /// A URL under an ARM scope given as a path (`/subscriptions/{s}`, a
    /// resource id, `/` for the tenant), then `tail`; the scope's segments
    /// are kept as given, with empty ones dropped.
    pub(crate) fn scope_url(
        &self,
        scope: &str,
        tail: &[&str],
        query: &[(&str, &str)],
    ) -> Result<Url, AzureError> {
        let mut segments: Vec<&str> = scope.split('/').filter(|s| !s.is_empty()).collect();
        segments.extend(tail);
        self.arm_url(&segments, query)
    }

    /// A `nextLink` to follow verbatim, provided it stays on the ARM
    /// endpoint: the bearer token goes with it.
    pub(crate) fn next_link(&self, link: &str) -> Result<Url, AzureError> {
        let url = Url::options()
            .base_url(Some(&self.inner.arm))
            .parse(link.trim())
            .map_err(|e| {
                AzureError::Malformed(format!("the nextLink '{link}' is not a URL: {e}"))
            })?;
        if url.origin() != self.inner.arm.origin() {
            return Err(AzureError::Malformed(format!(
                "the nextLink '{link}' leaves the Resource Manager endpoint {}",
                self.inner.arm
            )));
        }
        Ok(url)
    }

    /// Sends a request, retrying 500, 502, 503, 504, connection failures,
    /// timeouts and truncated bodies up to `MAX_RETRIES` times, and 429s
    /// for as long as the waits they ask for (`Retry-After`, at least the
    /// backoff) add up to no more than the client's bound: a sync's bound is
    /// what is left of its hour, so a run whose waits fit finishes.
    /// Answers the last complete response (which may be a 5xx); a 429 whose
    /// wait would go beyond the bound is `Throttled`. `build` makes a fresh
    /// request per attempt.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &Url,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Answer, AzureError> {
        self.send_with(method, url, Policy::default(), build).await
    }

    /// `send` with `token` as its bearer, paced in that principal's buckets.
    pub(crate) async fn send_as(
        &self,
        token: &AccessToken,
        method: Method,
        url: &Url,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Answer, AzureError> {
        let policy = Policy {
            principal: &token.object_id,
            ..Policy::default()
        };
        self.send_with(method, url, policy, |r| {
            build(r.bearer_auth(token.token.expose()))
        })
        .await
    }

    /// `send` under a `Policy`: its retries, and the query units it is
    /// charged (paced per tenant before it is sent).
    pub(crate) async fn send_with(
        &self,
        method: Method,
        url: &Url,
        policy: Policy<'_>,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Answer, AzureError> {
        let bound = self.max_throttle_wait;
        let mut retry = 0u32;
        // Retries of other failures than throttling, and the throttling
        // waits slept so far for this request.
        let mut failures = 0u32;
        let mut throttled_for = Duration::ZERO;
        loop {
            let mut pause = self.inner.pacer.delay(&method, url, policy.principal);
            let booking = match policy.qpu {
                Some(charge) => {
                    pause = pause.max(self.inner.pacer.cost_request_wait(charge.tenant, url));
                    match self
                        .inner
                        .pacer
                        .book_qpu(charge.tenant, charge.units, bound)
                    {
                        Ok((wait, booking)) => {
                            pause = pause.max(wait);
                            Some(booking)
                        }
                        Err(wait) => {
                            tracing::warn!(
                                tenant = charge.tenant,
                                wait_ms = wait.as_millis() as u64,
                                bound_ms = bound.as_millis() as u64,
                                "cost query units exhausted for longer than the bound"
                            );
                            return Err(AzureError::Throttled { retry_after: wait });
                        }
                    }
                }
                None => None,
            };
            if !pause.is_zero() {
                tracing::debug!(
                    wait_ms = pause.as_millis() as u64,
                    qpu = booking.is_some(),
                    "pacing by Azure's remaining quota"
                );
                if pause > bound {
                    // The bucket would refill only after the caller's bound.
                    return Err(AzureError::Throttled { retry_after: pause });
                }
                tokio::time::sleep(pause).await;
            }
            let request = build(self.inner.http.request(method.clone(), url.clone()));
            let outcome = attempt(request).await;
            if let Ok(answer) = &outcome {
                self.inner
                    .pacer
                    .observe(&method, url, policy.principal, &answer.headers);
                if let Some(booking) = booking {
                    booking.settle(answer.status, &answer.headers);
                }
                if let Some(charge) = &policy.qpu {
                    self.inner
                        .pacer
                        .observe_cost_requests(charge.tenant, url, &answer.headers);
                }
            }
            let wait = match outcome {
                Ok(answer) if !is_retryable_status(answer.status) => {
                    tracing::debug!(%method, url = %url.path(), status = answer.status.as_u16(), retry, "azure answered");
                    return Ok(answer);
                }
                Ok(answer) => {
                    let asked = retry_after(&answer.headers);
                    let throttled = answer.status == StatusCode::TOO_MANY_REQUESTS;
                    if throttled && (bound.is_zero() || asked.is_some_and(|a| a > bound)) {
                        // Sleeping through it would hold the caller for
                        // longer than it allowed; retrying sooner would be
                        // refused again.
                        let long = asked.unwrap_or_else(|| backoff(retry));
                        tracing::warn!(%method, url = %url.path(), wait_ms = long.as_millis() as u64, bound_ms = bound.as_millis() as u64, "azure asks for a wait beyond the bound");
                        return Err(AzureError::Throttled { retry_after: long });
                    }
                    let wait = match asked {
                        Some(asked) => asked.max(backoff(retry)),
                        None => backoff(retry),
                    };
                    if throttled {
                        // Bounded by time, not by a count: Azure says how
                        // long, and the caller how long it can give.
                        if policy.max_retries == 0 || throttled_for + wait > bound {
                            tracing::warn!(%method, url = %url.path(), retries = retry, waited_ms = throttled_for.as_millis() as u64, wait_ms = wait.as_millis() as u64, bound_ms = bound.as_millis() as u64, "azure still throttling beyond the bound");
                            return Err(AzureError::Throttled { retry_after: wait });
                        }
                        throttled_for += wait;
                    } else {
                        if failures >= policy.max_retries {
                            tracing::warn!(%method, url = %url.path(), status = answer.status.as_u16(), retries = retry, "azure still failing after retries");
                            return Ok(answer);
                        }
                        failures += 1;
                    }
                    let wait = wait.min(bound);
                    tracing::info!(%method, url = %url.path(), status = answer.status.as_u16(), retry = retry + 1, wait_ms = wait.as_millis() as u64, "retrying azure call");
                    wait
                }
                Err(Failure::Fatal(text)) => return Err(AzureError::Transport(text)),
                Err(Failure::Retryable(text)) => {
                    if failures >= policy.max_retries {
                        tracing::warn!(%method, url = %url.path(), error = %text, retries = retry, "azure unreachable after retries");
                        return Err(AzureError::Transport(text));
                    }
                    failures += 1;
                    let wait = backoff(failures - 1);
                    tracing::info!(%method, url = %url.path(), error = %text, retry = retry + 1, wait_ms = wait.as_millis() as u64, "retrying azure call");
                    wait
                }
            };
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }
}

/// One attempt: the response and its whole body.
async fn attempt(request: reqwest::RequestBuilder) -> Result<Answer, Failure> {
    let response = request.send().await.map_err(classify)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(classify)?;
    Ok(Answer {
        status,
        headers,
        body: body.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> AzureClient {
        AzureClient::new(AzureConfig {
            arm_endpoint: "https://arm.example:8443/".into(),
            ..AzureConfig::default()
        })
        .expect("client")
    }

    #[test]
    fn rejects_unusable_endpoints() {
        for bad in ["http://management.azure.com", "not a url", "https://x/?a=b"] {
            let r = AzureClient::new(AzureConfig {
                arm_endpoint: bad.into(),
                ..AzureConfig::default()
            });
            assert!(matches!(r, Err(AzureError::Transport(_))), "{bad}");
        }
        let r = AzureClient::new(AzureConfig {
            extra_ca_pem: Some("not a certificate".into()),
            ..AzureConfig::default()
        });
        assert!(matches!(r, Err(AzureError::Transport(_))));
    }

    #[test]
    fn builds_urls_with_encoded_segments() {
        let c = client();
        let url = c
            .arm_url(
                &["subscriptions", "a/b c"],
                &[
                    ("api-version", "2022-12-01"),
                    ("$filter", "principalId eq 'x'"),
                ],
            )
            .expect("url");
        assert_eq!(
            url.as_str(),
            "https://arm.example:8443/subscriptions/a%2Fb%20c?api-version=2022-12-01&%24filter=principalId+eq+%27x%27"
        );
    }

    #[test]
    fn follows_next_links_only_on_the_arm_endpoint() {
        let c = client();
        let ok = c
            .next_link(
                "https://ARM.example:8443/subscriptions?api-version=2022-12-01&%24skiptoken=abc",
            )
            .expect("same origin");
        assert_eq!(ok.query(), Some("api-version=2022-12-01&%24skiptoken=abc"));
        assert!(c.next_link("/subscriptions?x=1").is_ok());
        for bad in [
            "https://evil.example/subscriptions",
            "https://arm.example/subscriptions",
            "http://arm.example:8443/subscriptions",
        ] {
            assert!(
                matches!(c.next_link(bad), Err(AzureError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn reads_retry_after() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
        h.insert(
            "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after",
            HeaderValue::from_static("7"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    }

    #[test]
    fn backs_off_exponentially_with_jitter() {
        for retry in 0..4 {
            let expected = 200.0 * f64::from(1u32 << retry);
            for _ in 0..50 {
                let ms = backoff(retry).as_secs_f64() * 1000.0;
                assert!(
                    ms >= expected * 0.8 - 1.0 && ms <= expected * 1.2 + 1.0,
                    "{retry}: {ms}"
                );
            }
        }
        assert_eq!(backoff(40), MAX_WAIT);
    }
}
