//! Webhook deliveries: which URLs may receive them, and one attempt at a
//! delivery the scheduler claimed (a job of kind `webhook`), signed with
//! HMAC-SHA256 over a timestamp and the body.
//!
//! **Invariant:** a delivery goes only to a public address over HTTPS
//! unless the operator allows private networks (`allow_private`): the URL
//! is checked when the webhook is made, and again at every attempt after
//! its host is resolved, and the connection is pinned to the address that
//! was checked (no second lookup an attacker's DNS could answer
//! differently). Redirects are not followed.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use cloudkeep_domain::crypto::KeyProvider;
use cloudkeep_domain::evidence::DeliveryState;
use cloudkeep_store::{
    AttemptOutcome, DELIVERY_ATTEMPTS, DeliveryAttempt, Job, OrgScope, Store, StoreError,
};
use reqwest::Url;

/// Where deliveries may go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookPolicy {
    /// Allow loopback, private, link-local and other non-public addresses
    /// (and plain HTTP to them), for receivers on the operator's network.
    pub allow_private: bool,
}

/// How long a receiver has to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The header with the signature: `t=<unix seconds>,v1=<hex HMAC>`.
pub const SIGNATURE_HEADER: &str = "x-cloudkeep-signature";

/// Whether an address is one the public internet routes to.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                // Carrier-grade NAT (100.64/10) and the benchmark range (198.18/15).
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local (fc00::/7) and link-local (fe80::/10).
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                // Documentation (2001:db8::/32).
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}

/// Host names that never name a public address.
fn private_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost"
        || h.ends_with(".localhost")
        || h.ends_with(".local")
        || h.ends_with(".internal")
        || h.ends_with(".home.arpa")
}

/// Checks a webhook URL against the policy (before any lookup): HTTPS, a
/// host, no credentials in it, and no private address or name unless
/// allowed (then plain HTTP is allowed too). Answers the parsed URL, or
/// what is wrong with it.
pub fn check_url(raw: &str, policy: WebhookPolicy) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("'{raw}' is not a URL ({e})"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "a webhook URL may not carry credentials: the signature proves the sender".into(),
        );
    }
    let host = url
        .host_str()
        .ok_or_else(|| format!("'{raw}' has no host"))?;
    let private = match url.host() {
        Some(url::Host::Ipv4(ip)) => !is_public(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => !is_public(IpAddr::V6(ip)),
        _ => private_name(host),
    };
    if private && !policy.allow_private {
        return Err(format!(
            "{host} is a loopback, private or local address: webhooks go to public HTTPS receivers (an operator can allow private networks with webhooks.allow_private)"
        ));
    }
    match url.scheme() {
        "https" => {}
        "http" if policy.allow_private && private => {}
        other => {
            return Err(format!(
                "webhooks are delivered over HTTPS, not {other}: use an https:// URL"
            ));
        }
    }
    Ok(url)
}

/// The address to connect to: the host's addresses, each checked against
/// the policy (any private one refuses the URL: a name must not resolve
/// to an internal address).
async fn resolve(url: &Url, policy: WebhookPolicy) -> Result<SocketAddr, String> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
        Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
        _ => tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?
            .collect(),
    };
    if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
        if !policy.allow_private {
            return Err(format!(
                "{host} resolves to {}, a non-public address: refused",
                bad.ip()
            ));
        }
    }
    addrs
        .first()
        .copied()
        .ok_or_else(|| format!("{host} has no address"))
}

/// `t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{timestamp}.{body}").as_bytes());
    format!("t={timestamp},v1={}", hex::encode(tag.as_ref()))
}

/// The wait before attempt `n + 1` after `n` failed: 1, 2, 4, 8, 16 minutes.
pub fn backoff(failed_attempts: i64) -> chrono::Duration {
    chrono::Duration::minutes(1 << (failed_attempts - 1).clamp(0, 10))
}

/// What an attempt at a claimed delivery job came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivered {
    /// Nothing to send (delivered already, failed, or its webhook deleted).
    Nothing,
    /// Sent and acknowledged (2xx).
    Done,
    /// Try again at this time.
    RetryAt(DateTime<Utc>),
    /// Given up, with why.
    GaveUp(String),
}

/// One attempt at the delivery a `webhook` job carries: signs its body
/// afresh, posts it to the pinned address, and logs the attempt.
pub async fn attempt(
    store: &Store,
    keys: &dyn KeyProvider,
    scope: &OrgScope,
    job: &Job,
    policy: WebhookPolicy,
) -> Result<Delivered, StoreError> {
    let (delivery, hook) = store.delivery_of_job(scope, job).await?;
    let Some(hook) = hook.filter(|_| delivery.state == DeliveryState::Pending) else {
        return Ok(Delivered::Nothing);
    };
    let n = delivery.attempts + 1;
    let started = Instant::now();
    let at = store.now();
    let sent: Result<u16, String> = async {
        let url = check_url(&hook.url, policy)?;
        let addr = resolve(&url, policy).await?;
        let secret = store
            .open_webhook_secret(scope, keys, hook.id)
            .await
            .map_err(|e| format!("the webhook's secret cannot be opened: {e}"))?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .resolve(url.host_str().unwrap_or_default(), addr)
            .build()
            .map_err(|e| format!("no HTTP client: {e}"))?;
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", "cloudkeep-webhooks")
            .header("x-cloudkeep-event", &delivery.event)
            .header("x-cloudkeep-delivery", delivery.id.to_string())
            .header(
                SIGNATURE_HEADER,
                signature(secret.expose(), at.timestamp(), &delivery.payload),
            )
            .body(delivery.payload.clone())
            .send()
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        Ok(response.status().as_u16())
    }
    .await;
    let (status, error) = match &sent {
        Ok(s) if (200..300).contains(s) => (Some(*s), None),
        Ok(s) => (Some(*s), Some(format!("the receiver answered {s}"))),
        Err(e) => (None, Some(e.clone())),
    };
    let refused = matches!(&sent, Err(e) if e.contains("refused") || e.contains("webhooks"));
    let outcome = match (&error, refused) {
        (None, _) => AttemptOutcome::Delivered,
        (Some(_), false) if n < DELIVERY_ATTEMPTS => AttemptOutcome::Retry(at + backoff(n)),
        _ => AttemptOutcome::GiveUp,
    };
    let log = DeliveryAttempt {
        attempt: n,
        at,
        status,
        error: error.clone(),
        duration_ms: started.elapsed().as_millis() as i64,
    };
    store
        .record_delivery_attempt(scope, delivery.id, &log, &outcome)
        .await?;
    Ok(match outcome {
        AttemptOutcome::Delivered => Delivered::Done,
        AttemptOutcome::Retry(t) => Delivered::RetryAt(t),
        AttemptOutcome::GiveUp => Delivered::GaveUp(error.unwrap_or_default()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_refused_unless_allowed() {
        let strict = WebhookPolicy::default();
        let open = WebhookPolicy {
            allow_private: true,
        };
        // (url, strict allows it, open allows it)
        let cases = [
            ("https://hooks.example.com/x", true, true),
            ("http://hooks.example.com/x", false, false),
            ("https://127.0.0.1:8443/x", false, true),
            ("http://127.0.0.1:9000/x", false, true),
            ("https://10.1.2.3/x", false, true),
            ("https://169.254.169.254/latest", false, true),
            ("https://[::1]/x", false, true),
            ("https://[fd00::1]/x", false, true),
            ("https://[::ffff:192.168.0.1]/x", false, true),
            ("https://localhost/x", false, true),
            ("https://svc.internal/x", false, true),
            ("https://100.64.0.1/x", false, true),
            ("https://user:pw@hooks.example.com/x", false, false),
            ("ftp://hooks.example.com/x", false, false),
            ("not a url", false, false),
        ];
        for (url, strict_ok, open_ok) in cases {
            assert_eq!(check_url(url, strict).is_ok(), strict_ok, "{url} (strict)");
            assert_eq!(check_url(url, open).is_ok(), open_ok, "{url} (open)");
        }
        assert!(is_public("8.8.8.8".parse().expect("ip")));
        assert!(!is_public("0.0.0.0".parse().expect("ip")));
    }

    #[test]
    fn signatures_are_hmac_sha256_over_timestamp_and_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            signature("whsec_test", 1_700_000_000, r#"{"a":1}"#),
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
        assert_eq!(backoff(1), chrono::Duration::minutes(1));
        assert_eq!(backoff(5), chrono::Duration::minutes(16));
    }
}
