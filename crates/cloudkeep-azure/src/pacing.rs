//! Pacing by Azure's remaining-quota headers, before Azure says 429.
//!
//! ARM answers every call with how many requests of its kind the caller has
//! left in its bucket for the subscription (`x-ms-ratelimit-remaining-subscription-
//! reads`, `-writes`, `-deletes`). When that runs low, the next call of the
//! kind waits long enough for the bucket to refill a token, so a long sync
//! settles at ARM's refill rate instead of running into throttling.
//!
//! Cost Management charges queries in query processing units (QPU) per
//! tenant, in sliding windows (12 per 10 s, 60 per minute, 600 per hour),
//! and says what it charged and what is left
//! (`x-ms-ratelimit-microsoft.costmanagement-qpu-consumed`, `-qpu-remaining`).
//! Once a tenant's answers carry those headers, its queries go through a
//! ledger of what was charged when: a query is sent only when it fits every
//! window, and a remaining count lower than the ledger expects (another
//! client of the same tenant) is booked as a charge of its own. Queries of
//! one tenant are reserved in order, so concurrent ones space out too. A
//! wait longer than the caller's bound is not slept: it is reported.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};

/// Below this many requests left, calls are spaced out.
const LOW_WATER: f64 = 25.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Read,
    Write,
    Delete,
}

impl Kind {
    fn of(method: &Method) -> Kind {
        match *method {
            Method::GET | Method::HEAD => Kind::Read,
            Method::DELETE => Kind::Delete,
            // Queries are POSTed but throttled as reads.
            Method::POST => Kind::Read,
            _ => Kind::Write,
        }
    }

    /// ARM's refill rate per second for the kind.
    fn refill(self) -> f64 {
        match self {
            Kind::Read => 25.0,
            Kind::Write | Kind::Delete => 10.0,
        }
    }

    fn header(self) -> &'static str {
        match self {
            Kind::Read => "x-ms-ratelimit-remaining-subscription-reads",
            Kind::Write => "x-ms-ratelimit-remaining-subscription-writes",
            Kind::Delete => "x-ms-ratelimit-remaining-subscription-deletes",
        }
    }
}

/// One of ARM's buckets: (subscription, principal, kind), lower-cased.
type Bucket = (String, String, Kind);

#[derive(Debug, Default)]
pub(crate) struct Pacer {
    /// (subscription, principal, kind) → (requests left when last seen,
    /// when): ARM's buckets are per subscription and principal, so two
    /// connections reading one subscription do not slow each other.
    seen: Mutex<HashMap<Bucket, (f64, Instant)>>,
    /// Tenant (lower-case) → its Cost Management ledger, once Azure has
    /// sent QPU headers for it.
    qpu: Mutex<HashMap<String, Ledger>>,
    /// Cost Management's other family (requests per scope and per tenant
    /// in a sliding window): `entity:{tenant}|{subscription}` or
    /// `tenant:{tenant}` → when a request may be sent again, set when an
    /// answer said none are left.
    cost_requests: Mutex<HashMap<String, Instant>>,
}

fn subscription_of(url: &Url) -> Option<String> {
    let mut segs = url.path_segments()?;
    while let Some(s) = segs.next() {
        if s.eq_ignore_ascii_case("subscriptions") {
            return segs.next().map(str::to_ascii_lowercase);
        }
    }
    None
}

impl Pacer {
    /// How long to wait before `principal`'s call, from what ARM last said.
    pub(crate) fn delay(&self, method: &Method, url: &Url, principal: &str) -> Duration {
        let Some(sub) = subscription_of(url) else {
            return Duration::ZERO;
        };
        let key = (sub, principal.to_ascii_lowercase(), Kind::of(method));
        let kind = key.2;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let Some((left, at)) = seen.get(&key).copied() else {
            return Duration::ZERO;
        };
        // What the bucket holds now, counting the refill since.
        let now_left = left + at.elapsed().as_secs_f64() * kind.refill();
        if now_left >= LOW_WATER {
            return Duration::ZERO;
        }
        // Space calls so the refill keeps up: at half the low-water mark a
        // call waits one refill interval, emptier buckets longer, and an
        // empty one at least until a token is back. The bucket settles
        // around half the mark instead of running dry.
        let interval = 1.0 / kind.refill();
        let wait =
            ((LOW_WATER - now_left) / LOW_WATER * 2.0 * interval).max((1.0 - now_left) * interval);
        // Spend the token now, so concurrent calls space out too.
        seen.insert(key, (now_left - 1.0, Instant::now()));
        Duration::from_secs_f64(wait.min(30.0))
    }

    /// Records what an answer to `principal` said is left.
    pub(crate) fn observe(&self, method: &Method, url: &Url, principal: &str, headers: &HeaderMap) {
        let (Some(sub), kind) = (subscription_of(url), Kind::of(method)) else {
            return;
        };
        let Some(left) = headers
            .get(kind.header())
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
        else {
            return;
        };
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(
            (sub, principal.to_ascii_lowercase(), kind),
            (left, Instant::now()),
        );
    }
}

/// Cost Management's QPU windows per tenant: (window, units allowed in it).
const QPU_WINDOWS: [(Duration, f64); 3] = [
    (Duration::from_secs(10), 12.0),
    (Duration::from_secs(60), 60.0),
    (Duration::from_secs(3600), 600.0),
];
/// Added to a computed wait: Azure books a charge when the query arrives,
/// a little after the client does, and counts a charge at the window's
/// very edge as still in it.
const QPU_MARGIN: Duration = Duration::from_millis(250);

const QPU_CONSUMED: &str = "x-ms-ratelimit-microsoft.costmanagement-qpu-consumed";
const QPU_REMAINING: &str = "x-ms-ratelimit-microsoft.costmanagement-qpu-remaining";
const QPU_RETRY_AFTER: &str = "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after";
const ENTITY_REQUESTS: &str = "x-ms-ratelimit-microsoft.costmanagement-entity-requests";
const ENTITY_RESET: &str = "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after";
const TENANT_REQUESTS: &str = "x-ms-ratelimit-microsoft.costmanagement-tenant-requests";
const TENANT_RESET: &str = "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after";
/// Added to a window's reset: Azure says it in whole seconds, rounded down.
const RESET_MARGIN: Duration = Duration::from_millis(1000);

/// What one tenant has been charged, and until when it is refused.
#[derive(Debug, Default)]
struct Ledger {
    /// (when, units) in time order, bookings of queries not yet answered
    /// included.
    charges: VecDeque<(Instant, f64)>,
    /// Set by a 429: nothing is sent before it.
    blocked_until: Option<Instant>,
}

impl Ledger {
    fn used(&self, window: Duration, at: Instant) -> f64 {
        self.charges
            .iter()
            .filter(|(t, _)| *t <= at && at.duration_since(*t) < window)
            .map(|(_, u)| u)
            .sum()
    }

    /// The least any window has left at `at`.
    fn remaining(&self, at: Instant) -> f64 {
        QPU_WINDOWS
            .iter()
            .map(|(w, limit)| limit - self.used(*w, at))
            .fold(f64::INFINITY, f64::min)
    }

    /// The earliest moment, not before `now`, a block, or an earlier
    /// booking (so bookings stay in order), at which `units` more fit
    /// every window. Usage only falls as time passes (nothing is booked
    /// after that point), so the latest of the windows' answers is right
    /// for all of them.
    fn earliest(&self, units: f64, now: Instant) -> Instant {
        let start = [self.blocked_until, self.charges.back().map(|(t, _)| *t)]
            .into_iter()
            .flatten()
            .fold(now, Instant::max);
        let mut at = start;
        // Units are fractions (a month of days is one), so sums carry
        // rounding; a hair over the limit still fits.
        let fits = |used: f64, units: f64, limit: f64| used + units <= limit + 1e-9;
        for (window, limit) in QPU_WINDOWS {
            // A query larger than a window never fits; wait for it to empty.
            let units = units.min(limit);
            let mut used = self.used(window, start);
            if fits(used, units, limit) {
                continue;
            }
            let in_window: Vec<&(Instant, f64)> = self
                .charges
                .iter()
                .filter(|(t, _)| start.duration_since(*t) < window)
                .collect();
            let freed = in_window.iter().find(|(_, u)| {
                used -= u;
                fits(used, units, limit)
            });
            // Whatever is charged, the window is empty once its last charge leaves it.
            let until = freed
                .or(in_window.last())
                .map(|(t, _)| *t + window + QPU_MARGIN);
            if let Some(until) = until {
                at = at.max(until);
            }
        }
        at
    }

    fn book(&mut self, at: Instant, units: f64) {
        let i = self.charges.partition_point(|(t, _)| *t <= at);
        self.charges.insert(i, (at, units));
    }

    fn unbook(&mut self, at: Instant, units: f64) {
        if let Some(i) = self
            .charges
            .iter()
            .position(|(t, u)| *t == at && *u == units)
        {
            self.charges.remove(i);
        }
    }

    fn prune(&mut self, now: Instant) {
        let longest = QPU_WINDOWS[QPU_WINDOWS.len() - 1].0 + QPU_MARGIN;
        while self
            .charges
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > longest)
        {
            self.charges.pop_front();
        }
    }
}

/// A number in a header; for a list such as `QueryResource=11, Tenant=40`
/// the smallest, which is the one that binds.
fn header_number(headers: &HeaderMap, name: &str) -> Option<f64> {
    headers
        .get(name)?
        .to_str()
        .ok()?
        .split([',', ';'])
        .filter_map(|part| {
            let value = part.rsplit('=').next().unwrap_or(part).trim();
            value.parse::<f64>().ok().filter(|n| n.is_finite())
        })
        .reduce(f64::min)
}

/// A cost query's place in its tenant's ledger, from before it is sent
/// until its answer is settled. Dropped unsettled (the caller gave up while
/// it waited, or no answer came), it takes its booking back; had Azure
/// charged the query anyway, the next answer's remaining count books it.
pub(crate) struct QpuBooking<'a> {
    pacer: &'a Pacer,
    tenant: String,
    booked: Option<(Instant, f64)>,
}

impl Drop for QpuBooking<'_> {
    fn drop(&mut self) {
        if let Some((at, units)) = self.booked.take() {
            if let Some(ledger) = self.pacer.ledgers().get_mut(&self.tenant) {
                ledger.unbook(at, units);
            }
        }
    }
}

impl QpuBooking<'_> {
    /// Books what the answer says the query cost (Azure's word, else what
    /// was booked: an answer without the header may still have been
    /// charged), a remaining count below the ledger's as someone else's
    /// charge, and a 429's wait as a block on the tenant.
    pub(crate) fn settle(self, status: StatusCode, headers: &HeaderMap) {
        self.settle_at(status, headers, Instant::now());
    }

    fn settle_at(mut self, status: StatusCode, headers: &HeaderMap, now: Instant) {
        let consumed = header_number(headers, QPU_CONSUMED);
        let remaining = header_number(headers, QPU_REMAINING);
        let retry = header_number(headers, QPU_RETRY_AFTER).filter(|s| *s >= 0.0);
        let booked = self.booked.take();
        let mut all = self.pacer.ledgers();
        let speaks_qpu = consumed.is_some() || remaining.is_some() || retry.is_some();
        if !speaks_qpu && !all.contains_key(&self.tenant) {
            return;
        }
        let ledger = all.entry(self.tenant.clone()).or_default();
        ledger.prune(now);
        if let Some((at, units)) = booked {
            ledger.unbook(at, units);
        }
        let charged = consumed.or(booked.map(|(_, u)| u)).unwrap_or(0.0);
        if charged > 0.0 {
            ledger.book(now, charged);
        }
        if let Some(left) = remaining {
            let expected = ledger.remaining(now);
            if left < expected {
                ledger.book(now, expected - left);
            }
        }
        if let (StatusCode::TOO_MANY_REQUESTS, Some(secs)) = (status, retry) {
            let until = now + Duration::from_secs_f64(secs.min(86_400.0));
            ledger.blocked_until = Some(ledger.blocked_until.map_or(until, |b| b.max(until)));
        }
    }
}

impl Pacer {
    fn cost_request_keys(tenant: &str, url: &Url) -> [String; 2] {
        let tenant = tenant.trim().to_ascii_lowercase();
        let scope = subscription_of(url).unwrap_or_default();
        [
            format!("entity:{tenant}|{scope}"),
            format!("tenant:{tenant}"),
        ]
    }

    /// How long a cost request to `url` waits for Cost Management's request
    /// windows (the family of recorded real answers), from what the last
    /// answers said was left.
    pub(crate) fn cost_request_wait(&self, tenant: &str, url: &Url) -> Duration {
        let now = Instant::now();
        let blocked = self.cost_requests.lock().unwrap_or_else(|e| e.into_inner());
        Self::cost_request_keys(tenant, url)
            .iter()
            .filter_map(|k| blocked.get(k))
            .map(|until| until.saturating_duration_since(now))
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Records what a cost answer said of the request windows: a window
    /// with no request left is waited out (until its reset) before the next
    /// request of its scope or tenant, so the client never runs into its 429.
    pub(crate) fn observe_cost_requests(&self, tenant: &str, url: &Url, headers: &HeaderMap) {
        let now = Instant::now();
        let keys = Self::cost_request_keys(tenant, url);
        let mut blocked = self.cost_requests.lock().unwrap_or_else(|e| e.into_inner());
        blocked.retain(|_, until| *until > now);
        for (key, left, reset) in [
            (&keys[0], ENTITY_REQUESTS, ENTITY_RESET),
            (&keys[1], TENANT_REQUESTS, TENANT_RESET),
        ] {
            let (Some(left), Some(reset)) =
                (header_number(headers, left), header_number(headers, reset))
            else {
                continue;
            };
            if left < 1.0 {
                let until = now + Duration::from_secs_f64(reset.clamp(0.0, 3600.0)) + RESET_MARGIN;
                let slot = blocked.entry(key.clone()).or_insert(until);
                *slot = (*slot).max(until);
            }
        }
    }

    fn ledgers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ledger>> {
        self.qpu.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Books a cost query of `units` QPU for `tenant` and says how long to
    /// wait before sending it; `Err` with the wait when it is longer than
    /// `bound` (nothing is booked then). Following a `nextLink` is free
    /// (`units` 0) but still waits out a block.
    pub(crate) fn book_qpu(
        &self,
        tenant: &str,
        units: u32,
        bound: Duration,
    ) -> Result<(Duration, QpuBooking<'_>), Duration> {
        self.book_qpu_at(tenant, units, bound, Instant::now())
    }

    fn book_qpu_at(
        &self,
        tenant: &str,
        units: u32,
        bound: Duration,
        now: Instant,
    ) -> Result<(Duration, QpuBooking<'_>), Duration> {
        let tenant = tenant.trim().to_ascii_lowercase();
        let units = f64::from(units);
        let mut all = self.ledgers();
        let mut booked = None;
        let mut wait = Duration::ZERO;
        if let Some(ledger) = all.get_mut(&tenant) {
            ledger.prune(now);
            let at = if units > 0.0 {
                ledger.earliest(units, now)
            } else {
                ledger.blocked_until.map_or(now, |b| b.max(now))
            };
            wait = at.duration_since(now);
            if wait > bound {
                return Err(wait);
            }
            if units > 0.0 {
                ledger.book(at, units);
                booked = Some((at, units));
            }
        }
        drop(all);
        Ok((
            wait,
            QpuBooking {
                pacer: self,
                tenant,
                booked,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_only_when_the_bucket_runs_low() {
        let p = Pacer::default();
        let url = Url::parse("https://arm/subscriptions/ABC/resources").expect("url");
        assert_eq!(
            p.delay(&Method::GET, &url, "p1"),
            Duration::ZERO,
            "nothing known yet"
        );
        let mut h = HeaderMap::new();
        h.insert(
            "x-ms-ratelimit-remaining-subscription-reads",
            "200".parse().expect("value"),
        );
        p.observe(&Method::GET, &url, "p1", &h);
        assert_eq!(p.delay(&Method::GET, &url, "p1"), Duration::ZERO);
        h.insert(
            "x-ms-ratelimit-remaining-subscription-reads",
            "0".parse().expect("value"),
        );
        p.observe(&Method::GET, &url, "p1", &h);
        let wait = p.delay(&Method::GET, &url, "p1");
        assert!(
            wait > Duration::from_millis(30) && wait < Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(
            p.delay(&Method::PATCH, &url, "p1"),
            Duration::ZERO,
            "writes have their own bucket"
        );
        let other = Url::parse("https://arm/subscriptions/def/resources").expect("url");
        assert_eq!(
            p.delay(&Method::GET, &other, "p1"),
            Duration::ZERO,
            "and so does each subscription"
        );
        assert_eq!(
            p.delay(&Method::GET, &url, "P2"),
            Duration::ZERO,
            "and each principal: ARM's buckets are per subscription and principal"
        );
        assert!(
            p.delay(&Method::GET, &url, "P1") > Duration::ZERO,
            "ids compare without case"
        );
    }

    const BOUND: Duration = Duration::from_secs(3600);

    #[test]
    fn waits_out_a_spent_request_window_of_its_scope_or_tenant() {
        let p = Pacer::default();
        let a = Url::parse("https://arm/subscriptions/A/providers/Microsoft.CostManagement/query")
            .expect("url");
        let b = Url::parse("https://arm/subscriptions/B/providers/Microsoft.CostManagement/query")
            .expect("url");
        let answer = |entity: &str, tenant: &str| {
            let mut h = HeaderMap::new();
            for (k, v) in [
                (ENTITY_REQUESTS, entity),
                (ENTITY_RESET, "20"),
                (TENANT_REQUESTS, tenant),
                (TENANT_RESET, "40"),
            ] {
                h.insert(k, v.parse().expect("value"));
            }
            h
        };
        p.observe_cost_requests("T", &a, &answer("5", "100"));
        assert_eq!(
            p.cost_request_wait("t", &a),
            Duration::ZERO,
            "requests left"
        );
        p.observe_cost_requests("T", &a, &answer("0", "100"));
        let wait = p.cost_request_wait("t", &a);
        assert!(
            wait > Duration::from_secs(20) && wait <= Duration::from_secs(21),
            "{wait:?}"
        );
        assert_eq!(
            p.cost_request_wait("t", &b),
            Duration::ZERO,
            "another scope"
        );
        p.observe_cost_requests("T", &b, &answer("3", "0"));
        assert!(
            p.cost_request_wait("t", &b) > Duration::from_secs(40),
            "the tenant's window"
        );
        assert!(p.cost_request_wait("t", &a) > Duration::from_secs(40));
        assert_eq!(
            p.cost_request_wait("other", &a),
            Duration::ZERO,
            "another tenant"
        );
    }

    fn qpu_headers(consumed: u32, remaining: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(QPU_CONSUMED, consumed.to_string().parse().expect("value"));
        if let Some(r) = remaining {
            h.insert(QPU_REMAINING, r.parse().expect("value"));
        }
        h
    }

    /// Books and settles one query of `units` at `at` as Azure would answer
    /// it (with `remaining` as it says), and answers the wait it was given.
    fn query(
        p: &Pacer,
        tenant: &str,
        units: u32,
        at: Instant,
        remaining: Option<&str>,
    ) -> Duration {
        let (wait, booking) = p
            .book_qpu_at(tenant, units, BOUND, at)
            .expect("within the bound");
        booking.settle_at(StatusCode::OK, &qpu_headers(units, remaining), at + wait);
        wait
    }

    #[test]
    fn paces_cost_queries_by_the_tenant_s_windows() {
        let p = Pacer::default();
        let t0 = Instant::now();
        // Until Azure speaks of query units, nothing is paced or booked.
        let (wait, booking) = p.book_qpu_at("T", 1, BOUND, t0).expect("free");
        assert_eq!((wait, booking.booked), (Duration::ZERO, None));
        booking.settle_at(StatusCode::OK, &HeaderMap::new(), t0);
        assert!(p.ledgers().is_empty());
        // The first answer with the headers starts the ledger: 11 more fit
        // in the 10-second window, the next waits for the first to leave it.
        assert_eq!(
            query(&p, "T", 1, t0, Some("QueryResource=11, Tenant=11")),
            Duration::ZERO
        );
        for i in 1..12 {
            assert_eq!(
                query(&p, "t", 1, t0 + Duration::from_millis(i), None),
                Duration::ZERO,
                "{i}"
            );
        }
        let wait = query(&p, "t", 1, t0 + Duration::from_millis(20), None);
        assert!(
            wait >= Duration::from_secs(10) - Duration::from_millis(20)
                && wait <= Duration::from_secs(11),
            "{wait:?}"
        );
        // Another tenant has its own units.
        assert_eq!(query(&p, "u", 1, t0, Some("11")), Duration::ZERO);
    }

    #[test]
    fn books_in_order_so_concurrent_queries_space_out() {
        let p = Pacer::default();
        let t0 = Instant::now();
        query(&p, "t", 12, t0, Some("QueryResource=0"));
        // Two queries asked at once while the window is full, which do not
        // fit in one window together: the second is booked a window after
        // the first, not beside it.
        let (first, a) = p.book_qpu_at("t", 8, BOUND, t0).expect("a");
        let (second, b) = p.book_qpu_at("t", 8, BOUND, t0).expect("b");
        assert!(first >= Duration::from_secs(10), "{first:?}");
        assert!(
            second >= first + Duration::from_secs(10),
            "{first:?} {second:?}"
        );
        // Given up while waiting: its booking is taken back.
        drop(b);
        drop(a);
        let (again, _c) = p.book_qpu_at("t", 8, BOUND, t0).expect("c");
        assert_eq!(again, first);
    }

    #[test]
    fn reports_a_wait_beyond_the_bound_without_booking_it() {
        let p = Pacer::default();
        let t0 = Instant::now();
        query(&p, "t", 12, t0, Some("0"));
        let bound = Duration::from_secs(1);
        let wait = p.book_qpu_at("t", 1, bound, t0).err().expect("too long");
        assert!(wait > bound && wait <= Duration::from_secs(11), "{wait:?}");
        assert_eq!(
            p.book_qpu_at("t", 1, bound, t0).err(),
            Some(wait),
            "nothing was booked"
        );
    }

    #[test]
    fn counts_what_others_spent_and_honours_a_429() {
        let p = Pacer::default();
        let t0 = Instant::now();
        // Azure says 2 are left after a 1-unit query: someone else spent 9.
        query(&p, "t", 1, t0, Some("QueryResource=2, Tenant=40"));
        let (wait, _) = p.book_qpu_at("t", 3, BOUND, t0).expect("booked");
        assert!(wait >= Duration::from_secs(10), "{wait:?}");

        let p = Pacer::default();
        query(&p, "t", 1, t0, Some("11"));
        let (_, booking) = p.book_qpu_at("t", 1, BOUND, t0).expect("booked");
        let mut h = qpu_headers(0, None);
        h.insert(QPU_RETRY_AFTER, "7".parse().expect("value"));
        booking.settle_at(StatusCode::TOO_MANY_REQUESTS, &h, t0);
        // Refused, so not charged; but nothing goes out before the 7 s,
        // not even a free next page.
        let ledger_units: f64 = p.ledgers()["t"].charges.iter().map(|(_, u)| u).sum();
        assert_eq!(ledger_units, 1.0);
        let (wait, _) = p.book_qpu_at("t", 0, BOUND, t0).expect("booked");
        assert_eq!(wait, Duration::from_secs(7));
        assert_eq!(
            header_number(&qpu_headers(3, None), QPU_CONSUMED),
            Some(3.0)
        );
    }
}
