//! ARM's request throttling (token buckets per subscription and principal)
//! and Cost Management's query processing units per tenant.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Read,
    Write,
    Delete,
}

/// A token bucket's size and refill rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketLimits {
    pub capacity: f64,
    pub per_second: f64,
}

/// ARM's read bucket per subscription and principal.
pub const ARM_READS: BucketLimits = BucketLimits {
    capacity: 250.0,
    per_second: 25.0,
};
/// ARM's write bucket (deletes included) per subscription and principal.
pub const ARM_WRITES: BucketLimits = BucketLimits {
    capacity: 200.0,
    per_second: 10.0,
};

impl Kind {
    fn limits(self) -> (f64, f64) {
        let b = match self {
            Kind::Read => ARM_READS,
            Kind::Write | Kind::Delete => ARM_WRITES,
        };
        (b.capacity, b.per_second)
    }

    pub fn header(self, tenant_level: bool) -> &'static str {
        match (self, tenant_level) {
            (Kind::Read, false) => "x-ms-ratelimit-remaining-subscription-reads",
            (Kind::Write, false) => "x-ms-ratelimit-remaining-subscription-writes",
            (Kind::Delete, false) => "x-ms-ratelimit-remaining-subscription-deletes",
            (Kind::Read, true) => "x-ms-ratelimit-remaining-tenant-reads",
            (Kind::Write, true) => "x-ms-ratelimit-remaining-tenant-writes",
            (Kind::Delete, true) => "x-ms-ratelimit-remaining-tenant-deletes",
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Write => "write",
            Kind::Delete => "delete",
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    capacity: f64,
    rate: f64,
    last: Instant,
}

impl Bucket {
    fn new(capacity: f64, rate: f64, now: Instant) -> Self {
        Bucket {
            tokens: capacity,
            capacity,
            rate,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.last = now;
    }

    /// Seconds until one token is available.
    fn wait(&self) -> f64 {
        ((1.0 - self.tokens) / self.rate).max(0.0)
    }
}

/// The outcome of a throttled call's check.
#[derive(Debug, Clone, Copy)]
pub enum Decision {
    Allowed { remaining: u64 },
    Throttled { retry_after_secs: u64 },
}

#[derive(Debug, Default)]
pub struct Throttle {
    buckets: Mutex<HashMap<(String, String, Kind), Bucket>>,
    qpu: Mutex<HashMap<String, VecDeque<(Instant, u32)>>>,
    graph: Mutex<HashMap<String, VecDeque<Instant>>>,
    /// Cost Management's request windows (entity family), by key.
    cost_requests: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Cost Management's entity family: requests per scope (the "entity") and
/// per tenant in a sliding minute. Recorded real answers show 29 and 199
/// left after one query with a 60 s retry-after, hence 30 and 200 a minute.
pub const COST_ENTITY_LIMIT: usize = 30;
pub const COST_TENANT_LIMIT: usize = 200;
const COST_WINDOW: Duration = Duration::from_secs(60);

/// What the entity family reports on an allowed query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostRequests {
    pub entity_remaining: usize,
    pub tenant_remaining: usize,
    pub entity_reset_secs: u64,
    pub tenant_reset_secs: u64,
}

/// Resource Graph: queries per user per window.
const GRAPH_QUOTA: usize = 15;
const GRAPH_WINDOW: Duration = Duration::from_secs(5);

/// Subscription-wide limits are this many times a single principal's.
pub const ALL_PRINCIPALS_FACTOR: f64 = 15.0;

/// Cost Management: QPU allowed per window, per tenant.
const QPU_WINDOWS: &[(Duration, u32)] = &[
    (Duration::from_secs(10), 12),
    (Duration::from_secs(60), 60),
    (Duration::from_secs(3600), 600),
];

impl Throttle {
    /// Takes one token for `principal` at `scope_key` (a subscription id, or
    /// `tenant:{id}` for tenant-level calls), and from the scope's shared bucket.
    pub fn take(&self, scope_key: &str, principal: &str, kind: Kind) -> Decision {
        let now = Instant::now();
        let (cap, rate) = kind.limits();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let own_key = (
            scope_key.to_ascii_lowercase(),
            principal.to_ascii_lowercase(),
            kind,
        );
        let shared_key = (scope_key.to_ascii_lowercase(), String::new(), kind);
        for key in [&own_key, &shared_key] {
            let shared = key.1.is_empty();
            let factor = if shared { ALL_PRINCIPALS_FACTOR } else { 1.0 };
            let b = buckets
                .entry(key.clone())
                .or_insert_with(|| Bucket::new(cap * factor, rate * factor, now));
            b.refill(now);
        }
        let own_tokens = buckets.get(&own_key).map(|b| b.tokens).unwrap_or(0.0);
        let shared_tokens = buckets.get(&shared_key).map(|b| b.tokens).unwrap_or(0.0);
        if own_tokens < 1.0 || shared_tokens < 1.0 {
            let wait = [&own_key, &shared_key]
                .iter()
                .filter_map(|k| buckets.get(*k))
                .map(Bucket::wait)
                .fold(0.0, f64::max);
            return Decision::Throttled {
                retry_after_secs: wait.ceil().max(1.0) as u64,
            };
        }
        for key in [&own_key, &shared_key] {
            if let Some(b) = buckets.get_mut(key) {
                b.tokens -= 1.0;
            }
        }
        let remaining = buckets
            .get(&own_key)
            .map(|b| b.tokens.floor() as u64)
            .unwrap_or(0);
        Decision::Allowed { remaining }
    }

    /// Charges `units` QPU to a tenant, or says how long to wait.
    /// On success answers (consumed, remaining in the tightest window).
    pub fn take_qpu(&self, tenant: &str, units: u32) -> Result<(u32, u32), u64> {
        let now = Instant::now();
        let mut all = self.qpu.lock().unwrap_or_else(|e| e.into_inner());
        let log = all.entry(tenant.to_ascii_lowercase()).or_default();
        while log
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(3600))
        {
            log.pop_front();
        }
        let mut remaining = u32::MAX;
        for &(window, limit) in QPU_WINDOWS {
            let used: u32 = log
                .iter()
                .filter(|(t, _)| now.duration_since(*t) <= window)
                .map(|(_, u)| u)
                .sum();
            if used + units > limit {
                // Wait until enough of this window's charges have aged out.
                let mut freed = 0;
                let mut wait = window;
                for (t, u) in log.iter().filter(|(t, _)| now.duration_since(*t) <= window) {
                    freed += u;
                    if used - freed + units <= limit {
                        wait = window.saturating_sub(now.duration_since(*t));
                        break;
                    }
                }
                return Err(wait.as_secs().max(1));
            }
            remaining = remaining.min(limit - used - units);
        }
        log.push_back((now, units));
        Ok((units, remaining))
    }

    /// Counts a Resource Graph query for a user: on success answers the
    /// queries left and the seconds until the window resets; otherwise the
    /// seconds to wait.
    pub fn take_graph(&self, user: &str) -> Result<(usize, u64), u64> {
        let now = Instant::now();
        let mut all = self.graph.lock().unwrap_or_else(|e| e.into_inner());
        let window = all.entry(user.to_ascii_lowercase()).or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= GRAPH_WINDOW)
        {
            window.pop_front();
        }
        let resets = |oldest: Option<&Instant>| {
            oldest
                .map(|t| {
                    GRAPH_WINDOW
                        .saturating_sub(now.duration_since(*t))
                        .as_secs()
                        .max(1)
                })
                .unwrap_or(GRAPH_WINDOW.as_secs())
        };
        if window.len() >= GRAPH_QUOTA {
            return Err(resets(window.front()));
        }
        window.push_back(now);
        Ok((GRAPH_QUOTA - window.len(), resets(window.front())))
    }

    /// Counts a Cost Management request for a scope and tenant; on refusal
    /// answers which window is full (`"entity"` or `"tenant"`) and the wait.
    pub fn take_cost_request(
        &self,
        scope: &str,
        tenant: &str,
    ) -> Result<CostRequests, (&'static str, u64)> {
        let now = Instant::now();
        let mut all = self.cost_requests.lock().unwrap_or_else(|e| e.into_inner());
        let keys = [
            (
                format!("entity:{}", scope.to_ascii_lowercase()),
                COST_ENTITY_LIMIT,
                "entity",
            ),
            (
                format!("tenant:{}", tenant.to_ascii_lowercase()),
                COST_TENANT_LIMIT,
                "tenant",
            ),
        ];
        let reset = |w: &VecDeque<Instant>| {
            w.front()
                .map(|t| {
                    COST_WINDOW
                        .saturating_sub(now.duration_since(*t))
                        .as_secs()
                        .max(1)
                })
                .unwrap_or(COST_WINDOW.as_secs())
        };
        for (key, limit, which) in &keys {
            let w = all.entry(key.clone()).or_default();
            while w
                .front()
                .is_some_and(|t| now.duration_since(*t) >= COST_WINDOW)
            {
                w.pop_front();
            }
            if w.len() >= *limit {
                return Err((which, reset(w)));
            }
        }
        let mut left = [(0, 0); 2];
        for (i, (key, limit, _)) in keys.iter().enumerate() {
            let w = all.entry(key.clone()).or_default();
            w.push_back(now);
            left[i] = (limit - w.len(), reset(w));
        }
        Ok(CostRequests {
            entity_remaining: left[0].0,
            tenant_remaining: left[1].0,
            entity_reset_secs: left[0].1,
            tenant_reset_secs: left[1].1,
        })
    }

    pub fn reset(&self) {
        self.cost_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.graph.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        self.qpu.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_bucket_holds_250() {
        let t = Throttle::default();
        for i in 0..250 {
            assert!(
                matches!(t.take("s", "p", Kind::Read), Decision::Allowed { .. }),
                "call {i}"
            );
        }
        assert!(matches!(
            t.take("s", "p", Kind::Read),
            Decision::Throttled {
                retry_after_secs: 1
            }
        ));
        // Another principal has its own bucket.
        assert!(matches!(
            t.take("s", "q", Kind::Read),
            Decision::Allowed { remaining: 249 }
        ));
    }

    #[test]
    fn qpu_windows() {
        let t = Throttle::default();
        assert_eq!(t.take_qpu("t", 6), Ok((6, 6)));
        assert_eq!(t.take_qpu("t", 6), Ok((6, 0)));
        let wait = t.take_qpu("t", 1).expect_err("throttled");
        assert!((1..=10).contains(&wait));
    }
}
