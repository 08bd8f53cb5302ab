//! Request counters and latencies in Prometheus' text format.
//!
//! A handful of counters do not justify a metrics framework: a map under a
//! mutex, rendered on `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// (method, route, status)
type Key = (String, String, u16);
/// (count, seconds)
type Tally = (u64, f64);

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<Key, Tally>>,
}

impl Metrics {
    pub fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map
            .entry((method.to_string(), route.to_string(), status))
            .or_insert((0, 0.0));
        entry.0 += 1;
        entry.1 += seconds;
    }

    pub fn render(&self) -> String {
        let map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        out.push_str("# HELP cloudkeep_http_requests_total HTTP requests served.\n# TYPE cloudkeep_http_requests_total counter\n");
        for ((method, route, status), (count, _)) in map.iter() {
            let _ = writeln!(
                out,
                "cloudkeep_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP cloudkeep_http_request_seconds_sum Time spent serving HTTP requests.\n# TYPE cloudkeep_http_request_seconds_sum counter\n");
        for ((method, route, status), (_, secs)) in map.iter() {
            let _ = writeln!(
                out,
                "cloudkeep_http_request_seconds_sum{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {secs:.6}"
            );
        }
        out
    }
}
