//! Pacing by ARM's remaining-quota headers, before ARM says 429.
//!
//! ARM answers every call with how many requests of its kind the caller has
//! left in the subscription's bucket (`x-ms-ratelimit-remaining-subscription-
//! reads`, `-writes`, `-deletes`). When that runs low, the next call of the
//! kind waits long enough for the bucket to refill a token, so a long sync
//! settles at ARM's refill rate instead of running into throttling.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{Method, Url};

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

#[derive(Debug, Default)]
pub(crate) struct Pacer {
    /// (subscription, kind) → (requests left when last seen, when).
    seen: Mutex<HashMap<(String, Kind), (f64, Instant)>>,
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
    /// How long to wait before this call, from what ARM last said.
    pub(crate) fn delay(&self, method: &Method, url: &Url) -> Duration {
        let Some(sub) = subscription_of(url) else {
            return Duration::ZERO;
        };
        let kind = Kind::of(method);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let Some((left, at)) = seen.get(&(sub.clone(), kind)).copied() else {
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
        seen.insert((sub, kind), (now_left - 1.0, Instant::now()));
        Duration::from_secs_f64(wait.min(30.0))
    }

    /// Records what an answer said is left.
    pub(crate) fn observe(&self, method: &Method, url: &Url, headers: &HeaderMap) {
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
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((sub, kind), (left, Instant::now()));
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
            p.delay(&Method::GET, &url),
            Duration::ZERO,
            "nothing known yet"
        );
        let mut h = HeaderMap::new();
        h.insert(
            "x-ms-ratelimit-remaining-subscription-reads",
            "200".parse().expect("value"),
        );
        p.observe(&Method::GET, &url, &h);
        assert_eq!(p.delay(&Method::GET, &url), Duration::ZERO);
        h.insert(
            "x-ms-ratelimit-remaining-subscription-reads",
            "0".parse().expect("value"),
        );
        p.observe(&Method::GET, &url, &h);
        let wait = p.delay(&Method::GET, &url);
        assert!(
            wait > Duration::from_millis(30) && wait < Duration::from_secs(1),
            "{wait:?}"
        );
        assert_eq!(
            p.delay(&Method::PATCH, &url),
            Duration::ZERO,
            "writes have their own bucket"
        );
        let other = Url::parse("https://arm/subscriptions/def/resources").expect("url");
        assert_eq!(
            p.delay(&Method::GET, &other),
            Duration::ZERO,
            "and so does each subscription"
        );
    }
}
