//! Injected faults: error rates, latency, dropped connections, truncated
//! bodies, token lifetime, bursts of 429s and a role removed mid-run, set at
//! start (`--faults`) or at run time. With a `seed`, which request is faulted
//! is a function of the seed and the request (its method, path, query and
//! how many times it was made before), so a run's faults are reproducible
//! whatever order concurrent requests arrive in.

use serde::{Deserialize, Serialize};

use crate::SimError;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    pub rate_500: f64,
    pub rate_503: f64,
    pub rate_429: f64,
    pub latency_ms: u64,
    /// Only calls whose path contains this (case-insensitive) get the
    /// latency; every call when unset. Lets a test slow one subscription.
    pub latency_path: Option<String>,
    pub rate_drop: f64,
    pub rate_truncate: f64,
    /// Share of list pages answered empty but with a `nextLink` (at most 0.9).
    pub rate_empty_page: f64,
    /// The next this many listings (a list's first page) of a path
    /// containing `empty_listings_path` answer as Azure sometimes does: an
    /// empty page with a `nextLink`, then an empty last page.
    pub empty_listings: u32,
    pub empty_listings_path: Option<String>,
    /// Share of tag writes answered 202 with a `Location` to poll.
    pub rate_async_tags: f64,
    /// Lifetime of tokens issued from now on; `None` keeps the configured one.
    pub token_lifetime_secs: Option<u64>,
    /// Which of Cost Management's two header families answers (and throttles)
    /// queries. It lives here, with the other run-time switches, so that
    /// `PUT /_sim/faults`, `/_sim/reset` and `--faults` treat it alike.
    pub cost_headers: CostHeaders,
    /// Seeds the fault draws per request (see the module doc); `None`
    /// draws from the simulator's one seeded stream, in arrival order.
    pub seed: Option<u64>,
    /// The `Retry-After` of injected 429s and 503s, in milliseconds (2 s
    /// when unset); sent in seconds, with a fraction below a whole second.
    pub retry_after_ms: Option<u64>,
    /// The next this many ARM calls answer 429 with `Retry-After`, whatever
    /// the rates (a streak, as a busy subscription answers).
    pub burst_429: u32,
    /// A role assignment removed part-way through a run.
    pub remove_roles: Option<RoleRemoval>,
}

/// Roles taken from a principal after `after` more calls under `scope`
/// (paths that start with it), as an administrator would remove them in
/// the portal while a sync runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleRemoval {
    pub after: u64,
    pub principal_id: String,
    /// Assignments at this scope exactly (a subscription: `/subscriptions/{id}`).
    pub scope: String,
    /// Role names or ids.
    pub roles: Vec<String>,
}

/// The `Retry-After` of injected throttling when none is set.
pub const DEFAULT_RETRY_AFTER_MS: u64 = 2000;

/// Cost Management's throttling headers: query units (`-qpu-*`, the
/// documented family) or entity and tenant request counts (`-entity-*`,
/// `-tenant-*`, seen in recorded real answers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CostHeaders {
    #[default]
    Qpu,
    Entity,
}

impl CostHeaders {
    pub fn parse(s: &str) -> Option<CostHeaders> {
        match s.to_ascii_lowercase().as_str() {
            "qpu" => Some(CostHeaders::Qpu),
            "entity" => Some(CostHeaders::Entity),
            _ => None,
        }
    }
}

/// What to do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    None,
    Status500,
    Status503,
    Status429,
    Drop,
    Truncate,
}

impl Faults {
    /// Parses `500=0.05,503=0.05,429=0.05,latency=200ms,latency-path=/subscriptions/x,drop=0.01,truncate=0.01,token-lifetime=60s,seed=7,retry-after=30s,429-burst=5`.
    /// (A role removal names a principal: `PUT /_sim/faults` only.)
    pub fn parse(spec: &str) -> Result<Faults, SimError> {
        let mut f = Faults::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = item
                .split_once('=')
                .ok_or_else(|| SimError::Faults(format!("'{item}' is not KEY=VALUE")))?;
            let rate = || -> Result<f64, SimError> {
                let r: f64 = v
                    .parse()
                    .map_err(|_| SimError::Faults(format!("'{v}' in '{item}' is not a number")))?;
                if !(0.0..=1.0).contains(&r) {
                    return Err(SimError::Faults(format!(
                        "'{item}': a rate is between 0 and 1"
                    )));
                }
                Ok(r)
            };
            match k {
                "500" => f.rate_500 = rate()?,
                "503" => f.rate_503 = rate()?,
                "429" => f.rate_429 = rate()?,
                "drop" => f.rate_drop = rate()?,
                "truncate" => f.rate_truncate = rate()?,
                "empty-page" => f.rate_empty_page = rate()?,
                "empty-listings" => {
                    f.empty_listings = v.parse().map_err(|_| {
                        SimError::Faults(format!("'{item}': empty-listings is a count"))
                    })?
                }
                "empty-listings-path" => f.empty_listings_path = Some(v.to_string()),
                "async-tags" => f.rate_async_tags = rate()?,
                "latency" => f.latency_ms = parse_duration(v, "ms", item)?,
                "latency-path" => f.latency_path = Some(v.to_string()),
                "token-lifetime" => f.token_lifetime_secs = Some(parse_duration(v, "s", item)?),
                "seed" => {
                    f.seed = Some(
                        v.parse()
                            .map_err(|_| SimError::Faults(format!("'{item}': seed is a number")))?,
                    )
                }
                "retry-after" => f.retry_after_ms = Some(parse_duration(v, "ms", item)?),
                "429-burst" => {
                    f.burst_429 = v
                        .parse()
                        .map_err(|_| SimError::Faults(format!("'{item}': 429-burst is a count")))?
                }
                "cost-headers" => {
                    f.cost_headers = CostHeaders::parse(v).ok_or_else(|| {
                        SimError::Faults(format!("'{item}': cost-headers is qpu or entity"))
                    })?
                }
                _ => {
                    return Err(SimError::Faults(format!(
                        "unknown fault '{k}'; known: 500, 503, 429, latency, latency-path, drop, truncate, empty-page, empty-listings, empty-listings-path, async-tags, token-lifetime, cost-headers, seed, retry-after, 429-burst"
                    )));
                }
            }
        }
        f.validate()?;
        Ok(f)
    }

    /// Whether a call to `path` is slowed.
    pub fn slows(&self, path: &str) -> bool {
        self.latency_ms > 0
            && self
                .latency_path
                .as_deref()
                .is_none_or(|p| path.to_ascii_lowercase().contains(&p.to_ascii_lowercase()))
    }

    /// The `Retry-After` header's value for injected throttling: whole
    /// seconds as Azure sends them, or a fraction for a test's short waits.
    pub fn retry_after_header(&self) -> String {
        let ms = self.retry_after_ms.unwrap_or(DEFAULT_RETRY_AFTER_MS);
        if ms % 1000 == 0 {
            (ms / 1000).to_string()
        } else {
            format!("{:.3}", ms as f64 / 1000.0)
        }
    }

    /// The uniform draw in [0, 1) for the `occurrence`th (0-based) call of
    /// `key` (method, path and query) under `seed`.
    pub fn keyed_draw(seed: u64, key: &str, occurrence: u64) -> f64 {
        use rand::{Rng, SeedableRng};
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        (seed, key, occurrence).hash(&mut h);
        rand_chacha::ChaCha8Rng::seed_from_u64(h.finish()).random::<f64>()
    }

    pub fn validate(&self) -> Result<(), SimError> {
        let total =
            self.rate_500 + self.rate_503 + self.rate_429 + self.rate_drop + self.rate_truncate;
        if total > 1.0 {
            return Err(SimError::Faults(format!(
                "the rates add up to {total}, more than 1"
            )));
        }
        for r in [
            self.rate_500,
            self.rate_503,
            self.rate_429,
            self.rate_drop,
            self.rate_truncate,
        ] {
            if !(0.0..=1.0).contains(&r) {
                return Err(SimError::Faults("a rate is between 0 and 1".into()));
            }
        }
        Ok(())
    }

    /// Chooses the fault for a request from a uniform draw in [0, 1).
    pub fn pick(&self, draw: f64) -> Fault {
        let mut edge = 0.0;
        for (rate, fault) in [
            (self.rate_500, Fault::Status500),
            (self.rate_503, Fault::Status503),
            (self.rate_429, Fault::Status429),
            (self.rate_drop, Fault::Drop),
            (self.rate_truncate, Fault::Truncate),
        ] {
            edge += rate;
            if draw < edge {
                return fault;
            }
        }
        Fault::None
    }
}

/// `200ms`, `2s`, `1m` or a bare number in `unit`.
fn parse_duration(v: &str, unit: &str, item: &str) -> Result<u64, SimError> {
    let bad = || {
        SimError::Faults(format!(
            "'{item}': expected a duration such as 200ms, 5s or 2m"
        ))
    };
    let (num, factor_ms) = if let Some(n) = v.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000)
    } else {
        (v, if unit == "ms" { 1 } else { 1000 })
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = n * factor_ms;
    Ok(if unit == "ms" { ms } else { ms / 1000 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_spec() {
        let f = Faults::parse(
            "500=0.05, 429=0.1,latency=200ms,token-lifetime=2m,seed=7,retry-after=250ms,429-burst=3",
        )
        .expect("parses");
        assert_eq!(
            (f.seed, f.retry_after_ms, f.burst_429),
            (Some(7), Some(250), 3)
        );
        assert_eq!(f.retry_after_header(), "0.250");
        assert_eq!(Faults::default().retry_after_header(), "2");
        assert_eq!(f.rate_500, 0.05);
        assert_eq!(f.rate_429, 0.1);
        assert_eq!(f.latency_ms, 200);
        assert_eq!(f.token_lifetime_secs, Some(120));
        assert_eq!(f.pick(0.01), Fault::Status500);
        assert_eq!(f.pick(0.06), Fault::Status429);
        assert_eq!(f.pick(0.5), Fault::None);
    }

    #[test]
    fn keyed_draws_depend_on_the_seed_and_the_call_only() {
        let a = Faults::keyed_draw(1, "GET /x", 0);
        assert_eq!(a, Faults::keyed_draw(1, "GET /x", 0));
        assert!((0.0..1.0).contains(&a));
        assert_ne!(a, Faults::keyed_draw(2, "GET /x", 0));
        assert_ne!(a, Faults::keyed_draw(1, "GET /x", 1));
    }

    #[test]
    fn rejects_bad_specs() {
        for bad in ["500", "500=2", "bogus=1", "latency=fast", "500=0.6,503=0.6"] {
            assert!(Faults::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
