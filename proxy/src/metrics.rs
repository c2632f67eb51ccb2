//! Prometheus metrics, rendered as text on the admin listener.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use claw_verifier::verify::{BURST_DENIALS, BURST_WINDOW_MS};
use tracing::{info, warn};

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
    /// Per-job state of the anomaly signals (denial bursts, first item reads).
    signals: Mutex<Signals>,
    /// Denial bursts: `BURST_DENIALS` denials of one job within `BURST_WINDOW_MS`.
    denial_bursts: AtomicU64,
    /// Released reads of an item its job had not read before through this proxy.
    first_item_access: AtomicU64,
}

/// Jobs tracked at once by the anomaly signals; a job is forgotten when its token ends
/// ([`Metrics::forget`]). Past this, an arbitrary job's state is dropped to make room.
const MAX_JOBS: usize = 10_000;
/// Items remembered per job for `clawproxy_first_item_access_total`. A job that read more
/// distinct items has every further unremembered item counted (and logged) on each read:
/// an over-count, never a read that goes unnoticed.
const MAX_ITEMS_PER_JOB: usize = 4_096;

/// Per-job anomaly state, bounded: at most `BURST_DENIALS` timestamps and
/// `MAX_ITEMS_PER_JOB` item ids per job, at most `MAX_JOBS` jobs.
#[derive(Debug, Default)]
struct Signals {
    denials: HashMap<String, Denials>,
    items: HashMap<String, HashSet<String>>,
}

/// A job's recent denials (newest last) and whether they already counted as a burst.
#[derive(Debug, Default)]
struct Denials {
    times: VecDeque<Instant>,
    in_burst: bool,
}

/// The entry of `job` in `map`, making room when `MAX_JOBS` are tracked.
fn job_entry<'a, V: Default>(map: &'a mut HashMap<String, V>, job: &str) -> &'a mut V {
    if !map.contains_key(job)
        && map.len() >= MAX_JOBS
        && let Some(evicted) = map.keys().next().cloned()
    {
        map.remove(&evicted);
    }
    map.entry(job.to_owned()).or_default()
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
            signals: Mutex::new(Signals::default()),
            denial_bursts: AtomicU64::new(0),
            first_item_access: AtomicU64::new(0),
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

    /// Notes a denied call of `job` at `now` (next to `answered("deny", …)`). When the job
    /// reaches `BURST_DENIALS` denials within `BURST_WINDOW_MS` (the verifier's
    /// `denial_burst`), counts one burst; the job counts again only after its window has
    /// emptied below the threshold. Returns whether this denial started a burst.
    pub fn denied(&self, job: &str, now: Instant) -> bool {
        let window = Duration::from_millis(BURST_WINDOW_MS.unsigned_abs());
        let mut signals = self.signals.lock().unwrap_or_else(|e| e.into_inner());
        let state = job_entry(&mut signals.denials, job);
        while state
            .times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            state.times.pop_front();
        }
        if state.times.len() < BURST_DENIALS {
            state.in_burst = false;
        }
        state.times.push_back(now);
        if state.times.len() > BURST_DENIALS {
            state.times.pop_front();
        }
        if state.times.len() < BURST_DENIALS || state.in_burst {
            return false;
        }
        state.in_burst = true;
        drop(signals);
        self.denial_bursts.fetch_add(1, Ordering::Relaxed);
        warn!(
            job,
            denials = BURST_DENIALS,
            "denial burst: {BURST_DENIALS} denials within {} s; the agent keeps trying what its contract refuses",
            BURST_WINDOW_MS / 1000
        );
        true
    }

    /// Notes an allowed call of `job` whose answer (`status`) was released: a successful
    /// `read_item`, `read_file` or `read_file_content` naming an item the job has not read
    /// before through this proxy counts as a first access. Returns whether it did.
    pub fn released(&self, job: &str, op: &str, item: Option<&str>, status: u16) -> bool {
        let Some(item) = item else { return false };
        if !(200..300).contains(&status)
            || !matches!(op, "read_item" | "read_file" | "read_file_content")
        {
            return false;
        }
        let mut signals = self.signals.lock().unwrap_or_else(|e| e.into_inner());
        let items = job_entry(&mut signals.items, job);
        if items.contains(item) {
            return false;
        }
        if items.len() < MAX_ITEMS_PER_JOB {
            items.insert(item.to_owned());
        }
        drop(signals);
        self.first_item_access.fetch_add(1, Ordering::Relaxed);
        // The item id only: never its title or body.
        info!(job, item, "first read of item {item} by job {job}");
        true
    }

    /// Forgets a job's anomaly state (its token ended).
    pub fn forget(&self, job: &str) {
        let mut signals = self.signals.lock().unwrap_or_else(|e| e.into_inner());
        signals.denials.remove(job);
        signals.items.remove(job);
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
        let _ = writeln!(
            out,
            "# HELP clawproxy_denial_bursts_total Times a job reached {BURST_DENIALS} denials within {} s.\n# TYPE clawproxy_denial_bursts_total counter\nclawproxy_denial_bursts_total {}\n# HELP clawproxy_first_item_access_total Released reads of an item its job had not read before.\n# TYPE clawproxy_first_item_access_total counter\nclawproxy_first_item_access_total {}",
            BURST_WINDOW_MS / 1000,
            self.denial_bursts.load(Ordering::Relaxed),
            self.first_item_access.load(Ordering::Relaxed)
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

    fn series(metrics: &Metrics, name: &str) -> u64 {
        let text = metrics.render("");
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"));
        line[name.len() + 1..].parse().unwrap()
    }

    #[test]
    fn a_denial_burst_counts_once_until_its_window_empties() {
        let metrics = Metrics::default();
        let window = Duration::from_millis(BURST_WINDOW_MS.unsigned_abs());
        let second = Duration::from_secs(1);
        let t0 = Instant::now();
        // One short of the threshold: no burst; another job's denials do not add up.
        for i in 0..BURST_DENIALS - 1 {
            assert!(!metrics.denied("job-1", t0 + second * i as u32));
            assert!(!metrics.denied("job-2", t0 + second * i as u32));
        }
        assert_eq!(series(&metrics, "clawproxy_denial_bursts_total"), 0);
        // The threshold reached: one burst.
        let reached = t0 + second * (BURST_DENIALS as u32 - 1);
        assert!(metrics.denied("job-1", reached));
        assert_eq!(series(&metrics, "clawproxy_denial_bursts_total"), 1);
        // More denials while the window stays full: still one.
        for i in 1..=5 {
            assert!(!metrics.denied("job-1", reached + second * i));
        }
        assert_eq!(series(&metrics, "clawproxy_denial_bursts_total"), 1);
        // The window empties; a new burst, reached at the window's very edge, counts again.
        let later = t0 + window * 3;
        for i in 0..BURST_DENIALS - 1 {
            assert!(!metrics.denied("job-1", later + second * i as u32));
        }
        assert!(metrics.denied("job-1", later + window));
        assert_eq!(series(&metrics, "clawproxy_denial_bursts_total"), 2);
        // Spread out wider than the window: never a burst.
        let spread = Duration::from_millis(BURST_WINDOW_MS.unsigned_abs() + 1);
        for i in 0..3 * BURST_DENIALS as u32 {
            assert!(!metrics.denied("job-3", later + window * 3 + spread * i));
        }
        assert_eq!(series(&metrics, "clawproxy_denial_bursts_total"), 2);
        // Bounded: no more timestamps per job than the threshold.
        let signals = metrics.signals.lock().unwrap();
        assert!(
            signals
                .denials
                .values()
                .all(|d| d.times.len() <= BURST_DENIALS)
        );
    }

    #[test]
    fn a_burst_is_forgotten_with_its_job() {
        let metrics = Metrics::default();
        let t0 = Instant::now();
        for _ in 0..BURST_DENIALS {
            metrics.denied("job-1", t0);
        }
        // Still inside its burst, the job would not count again; forgotten, it starts over.
        metrics.forget("job-1");
        assert!(
            !metrics
                .signals
                .lock()
                .unwrap()
                .denials
                .contains_key("job-1")
        );
        let counted: Vec<bool> = (0..BURST_DENIALS)
            .map(|_| metrics.denied("job-1", t0))
            .collect();
        assert_eq!(counted.last(), Some(&true), "{counted:?}");
        assert_eq!(series(&metrics, "clawproxy_denial_bursts_total"), 2);
    }

    #[test]
    fn the_first_released_read_of_an_item_counts_once_per_job() {
        let metrics = Metrics::default();
        let first = "clawproxy_first_item_access_total";
        assert_eq!(series(&metrics, first), 0);
        // Not reads of an item: a write, a failed read, a read naming no item.
        assert!(!metrics.released("job-1", "update_item", Some("A"), 200));
        assert!(!metrics.released("job-1", "read_item", Some("A"), 404));
        assert!(!metrics.released("job-1", "list_items", None, 200));
        assert_eq!(series(&metrics, first), 0);
        assert!(metrics.released("job-1", "read_item", Some("A"), 200));
        assert!(!metrics.released("job-1", "read_item", Some("A"), 200));
        assert!(!metrics.released("job-1", "read_file_content", Some("A"), 200));
        assert_eq!(series(&metrics, first), 1);
        // Another job, or another item: counts again.
        assert!(metrics.released("job-2", "read_item", Some("A"), 200));
        assert!(metrics.released("job-1", "read_file", Some("B"), 200));
        assert_eq!(series(&metrics, first), 3);
        // A forgotten job starts over.
        metrics.forget("job-1");
        assert!(metrics.released("job-1", "read_item", Some("A"), 200));
        assert_eq!(series(&metrics, first), 4);
    }

    #[test]
    fn item_memory_is_bounded_per_job() {
        let metrics = Metrics::default();
        for i in 0..MAX_ITEMS_PER_JOB + 10 {
            assert!(metrics.released("job-1", "read_item", Some(&format!("i{i}")), 200));
        }
        let signals = metrics.signals.lock().unwrap();
        assert_eq!(signals.items["job-1"].len(), MAX_ITEMS_PER_JOB);
    }

    #[test]
    fn job_memory_is_bounded() {
        let metrics = Metrics::default();
        let now = Instant::now();
        for i in 0..MAX_JOBS + 10 {
            metrics.denied(&format!("job-{i}"), now);
            metrics.released(&format!("job-{i}"), "read_item", Some("A"), 200);
        }
        let signals = metrics.signals.lock().unwrap();
        assert_eq!(signals.denials.len(), MAX_JOBS);
        assert_eq!(signals.items.len(), MAX_JOBS);
        assert!(signals.items.contains_key(&format!("job-{}", MAX_JOBS + 9)));
    }
}
