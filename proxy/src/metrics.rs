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

    /// Writes the series with `labels` (e.g. `op="read_item"`); the caller writes the
    /// `# HELP`/`# TYPE` lines once per metric.
    fn render(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0;
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let total = self.total.load(Ordering::Relaxed);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels},le=\"+Inf\"}} {total}\n{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {total}"
        );
    }
}

/// Every metric the proxy exports.
#[derive(Debug)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// Time from request head to answer, by operation (operations are a closed vocabulary, so
    /// the label set stays small).
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Open CONNECT tunnels.
    pub open_tunnels: AtomicI64,
    /// Token verifications answered from the cache.
    pub token_cache_hits: AtomicU64,
    /// Token verifications that had to check a signature.
    pub token_cache_misses: AtomicU64,
    /// Held requests by how they ended (`approved`, `denied`, `timeout`).
    approvals: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests waiting for a person now.
    approvals_pending: AtomicI64,
}

/// Counts one held request while it lives (see [`Metrics::approval_pending`]).
pub struct Pending<'a>(&'a AtomicI64);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Mutex::new(BTreeMap::new()),
            latency: Mutex::new(BTreeMap::new()),
            open_tunnels: AtomicI64::new(0),
            token_cache_hits: AtomicU64::new(0),
            token_cache_misses: AtomicU64::new(0),
            approvals: Mutex::new(BTreeMap::new()),
            approvals_pending: AtomicI64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one request by decision (`allow`/`would_deny`/`deny`/`error`) and operation.
    pub fn request(&self, decision: &'static str, op: &str) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((decision, op.to_owned())).or_default() += 1;
    }

    /// Counts one answered request and records its latency under its operation.
    pub fn answered(&self, decision: &'static str, op: &str, started: std::time::Instant) {
        self.request(decision, op);
        let seconds = started.elapsed().as_secs_f64();
        let mut latency = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        match latency.get(op) {
            Some(histogram) => histogram.observe(seconds),
            None => {
                let histogram = Histogram::new(LATENCY_BUCKETS);
                histogram.observe(seconds);
                latency.insert(op.to_owned(), histogram);
            }
        }
    }

    /// One more request waits for approval, until the guard drops.
    pub fn approval_pending(&self) -> Pending<'_> {
        self.approvals_pending.fetch_add(1, Ordering::Relaxed);
        Pending(&self.approvals_pending)
    }

    /// Counts one decided approval by its outcome.
    pub fn approval(&self, outcome: &'static str) {
        let mut approvals = self.approvals.lock().unwrap_or_else(|e| e.into_inner());
        *approvals.entry(outcome).or_default() += 1;
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
        let name = "clawproxy_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from request head to the answer (after its receipt is durable), by operation.\n# TYPE {name} histogram"
        );
        for (op, histogram) in self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            histogram.render(name, &format!("op=\"{op}\""), &mut out);
        }
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
        let _ = writeln!(
            out,
            "# HELP clawproxy_approvals_pending Requests waiting for an approver.\n# TYPE clawproxy_approvals_pending gauge\nclawproxy_approvals_pending {}\n# HELP clawproxy_approvals_total Held requests by outcome.\n# TYPE clawproxy_approvals_total counter",
            self.approvals_pending.load(Ordering::Relaxed)
        );
        for (outcome, n) in self
            .approvals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "clawproxy_approvals_total{{outcome=\"{outcome}\"}} {n}"
            );
        }
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
        let now = std::time::Instant::now();
        metrics.answered("allow", "read_item", now);
        metrics.answered(
            "allow",
            "read_item",
            now - std::time::Duration::from_millis(200),
        );
        metrics.answered("deny", "delete_item", now);
        metrics.request("deny", "proxy_auth");
        let text = metrics.render("");
        assert!(text.contains("clawproxy_requests_total{decision=\"allow\",op=\"read_item\"} 2"));
        assert!(text.contains("clawproxy_requests_total{decision=\"deny\",op=\"delete_item\"} 1"));
        assert!(text.contains("clawproxy_requests_total{decision=\"deny\",op=\"proxy_auth\"} 1"));
        // One series per operation; the 200 ms read lands above 0.1 s and within 0.25 s.
        let read = "clawproxy_request_duration_seconds_bucket{op=\"read_item\",";
        assert!(text.contains(&format!("{read}le=\"0.1\"}} 1")), "{text}");
        assert!(text.contains(&format!("{read}le=\"0.25\"}} 2")), "{text}");
        assert!(text.contains("clawproxy_request_duration_seconds_count{op=\"read_item\"} 2"));
        assert!(text.contains("clawproxy_request_duration_seconds_count{op=\"delete_item\"} 1"));
        assert!(
            !text.contains("op=\"proxy_auth\",le="),
            "no latency without a start time"
        );
        assert_eq!(
            text.matches("# TYPE clawproxy_request_duration_seconds histogram")
                .count(),
            1
        );
    }

    #[test]
    fn pending_approvals_are_counted_while_held() {
        let metrics = Metrics::default();
        let held = metrics.approval_pending();
        assert!(metrics.render("").contains("clawproxy_approvals_pending 1"));
        drop(held);
        metrics.approval("timeout");
        let text = metrics.render("");
        assert!(text.contains("clawproxy_approvals_pending 0"), "{text}");
        assert!(
            text.contains("clawproxy_approvals_total{outcome=\"timeout\"} 1"),
            "{text}"
        );
    }
}
