//! Prometheus metrics, rendered as text on the admin listener.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// A cumulative histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    total: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    /// Records one observation in seconds.
    pub fn observe(&self, seconds: f64) {
        if let Some(i) = self.bounds.iter().position(|b| seconds <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let total = self.total.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {total}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {total}");
    }
}

/// Every metric the proxy exports.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// End-to-end request latency.
    pub latency: Histogram,
    /// Open CONNECT tunnels.
    pub open_tunnels: AtomicI64,
    /// Token verifications answered from the cache.
    pub token_cache_hits: AtomicU64,
    /// Token verifications that had to check a signature.
    pub token_cache_misses: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::new(BTreeMap::new()),
            latency: Histogram::new(LATENCY_BUCKETS),
            open_tunnels: AtomicI64::new(0),
            token_cache_hits: AtomicU64::new(0),
            token_cache_misses: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one request by decision (`allow`/`deny`/`error`) and operation.
    pub fn request(&self, decision: &'static str, op: &str) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((decision, op.to_owned())).or_default() += 1;
    }

    /// Prometheus text exposition; `extra` is appended (e.g. the log writer's metrics).
    pub fn render(&self, extra: &str) -> String {
        let mut out = String::new();
        out.push_str("# HELP clawproxy_requests_total Requests by decision and operation.\n");
        out.push_str("# TYPE clawproxy_requests_total counter\n");
        for ((decision, op), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "clawproxy_requests_total{{decision=\"{decision}\",op=\"{op}\"}} {n}"
            );
        }
        self.latency.render(
            "clawproxy_request_duration_seconds",
            "Time from request head to response release.",
            &mut out,
        );
        let _ = writeln!(
            out,
            "# HELP clawproxy_open_tunnels Open CONNECT tunnels.\n# TYPE clawproxy_open_tunnels gauge\nclawproxy_open_tunnels {}",
            self.open_tunnels.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP clawproxy_token_cache_total Token verifications by cache result.\n# TYPE clawproxy_token_cache_total counter\nclawproxy_token_cache_total{{result=\"hit\"}} {}\nclawproxy_token_cache_total{{result=\"miss\"}} {}",
            self.token_cache_hits.load(Ordering::Relaxed),
            self.token_cache_misses.load(Ordering::Relaxed)
        );
        out.push_str(extra);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let metrics = Metrics::default();
        metrics.request("allow", "read_item");
        metrics.request("allow", "read_item");
        metrics.request("deny", "delete_item");
        metrics.latency.observe(0.0007);
        metrics.latency.observe(0.2);
        let text = metrics.render("");
        assert!(text.contains("clawproxy_requests_total{decision=\"allow\",op=\"read_item\"} 2"));
        assert!(text.contains("clawproxy_requests_total{decision=\"deny\",op=\"delete_item\"} 1"));
        assert!(text.contains("clawproxy_request_duration_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("clawproxy_request_duration_seconds_bucket{le=\"0.25\"} 2"));
        assert!(text.contains("clawproxy_request_duration_seconds_count 2"));
    }
}
