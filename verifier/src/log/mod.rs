//! The durable receipt log: one writer task with group commit, and a verifying reader.
//!
//! # On disk
//!
//! `receipts/<proxy id>/` holds `seg-<first seq, 20 digits>.jsonl` segments with one leaf (the
//! JCS bytes of a signed receipt) per line, `checkpoint` (the latest signed C2SP note, replaced
//! atomically: write a temporary file, fsync, rename, fsync the directory) and `checkpoints`
//! (every note as a JCS line `{"note":…,"size":…}`, append-only, for consistency proofs).
//!
//! # Writing ([`LogWriter`])
//!
//! One tokio task owns the log and reads a bounded queue of `(draft, reply)`. Each round it
//! drains the queue (up to [`LogConfig::max_batch`]), assigns `seq`/`prev`/`job_seq`/`job_prev`,
//! signs, extends the Merkle tree, makes ONE `write_all` of all lines and ONE `fdatasync`, and
//! only then answers every waiter with `(id, seq, leaf hash)`. While one batch syncs the next is
//! signed and written, and up to [`LogConfig::sync_lanes`] syncs may overlap, each on its own
//! open file description (Linux reports a write-back error once per open file description, so
//! sharing one between concurrent syncs could hide an error from one of them). Batches are
//! acknowledged strictly in order, and a batch is answered only when its own sync and every
//! earlier one succeeded.
//!
//! After ANY write or sync error, or a stage that outlives [`LogConfig::timeout`], the writer is
//! poisoned: that batch, every batch in flight and every later append get an error and nothing
//! is retried — after a failed `fsync` Linux may have dropped the dirty pages, so a retry could
//! report success for data that is gone (PostgreSQL's "fsyncgate"). [`LogHandle::is_poisoned`]
//! says so; the proxy answers 503 until it is restarted. Every wait is bounded, so a stalled
//! disk yields [`LogError::Timeout`], never a hang.
//!
//! Checkpoints cover only acknowledged (synced) receipts, so a checkpoint never names a leaf a
//! crash could lose; they are signed at least every [`LogConfig::checkpoint_interval`] while
//! receipts arrive, on demand ([`LogHandle::checkpoint`], [`LogHandle::close_job`]) and at
//! shutdown.
//!
//! # Starting
//!
//! [`LogWriter::open`] reads the whole log: the hash chain of every line, the signatures of the
//! last segment (earlier lines are bound to it by the chain), and the latest checkpoint, which
//! must be a prefix of the log. A torn last line (a crash mid-write; it was never acknowledged
//! because acknowledgements follow the sync) is cut and a `recovery` receipt records its offset,
//! length and hash. Anything else — a bad signature, a gap, a reorder, a line after a torn one —
//! refuses the start with the file, the seq and the command to inspect it. An incomplete last
//! record of `checkpoints` (an append cut short by a crash or a full disk; its note never
//! became the latest) is cut too, so the next record starts on a line of its own.
//!
//! # Decisions
//!
//! - No `tree` file: the compact range is rebuilt from the segments at start (one SHA-256 per
//!   line, plus signature checks on the last segment), so there is no second copy of the tree
//!   that could disagree with the leaves.
//! - Drafts that break the kind rules, and receipts for a job after its `job_close`, are
//!   refused one by one ([`LogError::Draft`], [`LogError::JobClosed`]); they never poison.
//! - The job chain state of every job seen stays in memory for the writer's life (about
//!   100 bytes a job), so a closed job can never be reopened in the same log.
//! - A torn tail is only ever the *last* line of the *last* segment (or a run of NUL bytes
//!   there): a bad line with a good line after it is damage, never "recovered", because
//!   cutting it would destroy evidence.

mod reader;
mod segment;
mod sink;
pub mod tail;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use claw_policy::datadir::DataDir;
use claw_policy::keys::Purpose;
use ed25519_dalek::{SigningKey, VerifyingKey};

pub use reader::{
    CheckpointRecord, JobSummary, LogReader, LogSummary, ReadError, Receipts, note_verifiers,
    read_checkpoint_history, read_log,
};
pub(crate) use segment::list_segments;
pub use segment::{parse_segment_name, segment_name, segment_path};
pub use sink::{FileSink, FileStorage, Sink, Storage};
pub use writer::{LogHandle, LogWriter};

use crate::merkle::Hash;
use crate::receipt::{AuditKey, Closed, Cst, Decision, Kind, Op, Req, Resp, Rotation, Tunnel};

/// The log's settings. Build with [`LogConfig::new`] or [`LogConfig::from_data_dir`], then
/// adjust the public tuning fields.
#[derive(Clone)]
pub struct LogConfig {
    /// `receipts/<proxy id>`, or `receipts/<proxy id>/<instance>`.
    pub dir: PathBuf,
    /// The proxy id: the trust.json name of the proxy key; origin `clawproxy/<proxy id>`.
    pub proxy_id: String,
    /// Which of several proxies sharing the identity this is (fleet mode): its log is
    /// `clawproxy/<proxy id>/<instance>`. Set with [`LogConfig::for_instance`].
    pub instance: Option<String>,
    /// The proxy key: signs receipts and checkpoints.
    pub signing_key: SigningKey,
    /// Proxy keys that signed this log before a rotation (their public halves): the log's
    /// start-up check accepts receipts and checkpoints they signed.
    pub retired_keys: Vec<VerifyingKey>,
    /// The audit key, for the proxy's keyed body hashes ([`LogHandle::audit`]).
    pub audit_key: AuditKey,
    /// Roll to a new segment when a batch would grow the current one past this. Defaults to
    /// 64 MiB.
    pub segment_bytes: u64,
    /// Sign a checkpoint at least this often while receipts arrive. Defaults to 1 s.
    pub checkpoint_interval: Duration,
    /// Most receipts per batch (one write, one fdatasync). Defaults to 1024.
    pub max_batch: usize,
    /// Capacity of the writer's queue; senders wait (bounded by `timeout`) when it is full.
    /// Defaults to 8192.
    pub queue: usize,
    /// Bound on each stage of the writer (a batch's write, its sync, a checkpoint): a stage
    /// that overruns poisons the writer and fails its waiters. Callers of [`LogHandle`] wait
    /// at most 1.5 × this for an answer. Defaults to 10 s.
    pub timeout: Duration,
    /// Most fdatasyncs in flight at once (1: strictly one after another). Defaults to 2.
    pub sync_lanes: usize,
    /// Where segment bytes go. Defaults to [`FileStorage`]; tests inject faults here.
    pub storage: Arc<dyn Storage>,
}

impl LogConfig {
    /// Defaults for `proxy_id`'s log under the data dir's `receipts` directory.
    pub fn new(
        receipts: &Path,
        proxy_id: &str,
        signing_key: SigningKey,
        audit_key: AuditKey,
    ) -> Self {
        Self {
            dir: receipts.join(proxy_id),
            proxy_id: proxy_id.to_owned(),
            instance: None,
            signing_key,
            retired_keys: Vec::new(),
            audit_key,
            segment_bytes: 64 * 1024 * 1024,
            checkpoint_interval: Duration::from_secs(1),
            max_batch: 1024,
            queue: 8192,
            timeout: Duration::from_secs(10),
            sync_lanes: 2,
            storage: Arc::new(FileStorage),
        }
    }

    /// Reads the proxy key, the audit key and the proxy id (the proxy key's name in
    /// `trust.json`) from a data dir written by `clawproxy init`.
    pub fn from_data_dir(data_dir: &DataDir) -> Result<Self, LogError> {
        let key_error = |e: claw_policy::keys::KeyError| LogError::Key(e.to_string());
        let signing_key =
            claw_policy::keys::read_signing_key(&data_dir.signing_key(Purpose::Proxy))
                .map_err(key_error)?;
        let audit_key = AuditKey::load(&data_dir.audit_key()).map_err(key_error)?;
        let trust = claw_policy::trust::TrustStore::load(&data_dir.trust())
            .map_err(|e| LogError::Key(e.to_string()))?;
        let kid = claw_policy::keys::kid(&signing_key.verifying_key());
        let proxy_id = trust
            .key(&kid, Purpose::Proxy)
            .map(|k| k.name.clone())
            .ok_or_else(|| {
                LogError::Key(format!(
                    "{}: the proxy key {kid} is not listed for purpose proxy; run `clawproxy init`",
                    data_dir.trust().display()
                ))
            })?;
        let retired_keys = trust
            .by_purpose(Purpose::Proxy)
            .filter(|k| k.name == proxy_id && k.kid != kid)
            .map(|k| k.key)
            .collect();
        Ok(Self {
            retired_keys,
            ..Self::new(&data_dir.receipts(), &proxy_id, signing_key, audit_key)
        })
    }

    /// Makes this the log of one instance among proxies sharing the identity: origin
    /// `clawproxy/<proxy id>/<instance>`, directory `receipts/<proxy id>/<instance>`. The
    /// caller checks the name with [`crate::receipt::is_instance_name`].
    pub fn for_instance(mut self, instance: &str) -> Self {
        self.dir = self.dir.join(instance);
        self.instance = Some(instance.to_owned());
        self
    }

    /// `clawproxy/<proxy id>`, or `clawproxy/<proxy id>/<instance>`.
    pub fn origin(&self) -> String {
        crate::receipt::instance_origin(&self.proxy_id, self.instance.as_deref())
    }
}

impl std::fmt::Debug for LogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogConfig")
            .field("dir", &self.dir)
            .field("proxy_id", &self.proxy_id)
            .field("instance", &self.instance)
            .field("signing_key", &"[redacted]")
            .field("retired_keys", &self.retired_keys.len())
            .field("audit_key", &self.audit_key)
            .field("segment_bytes", &self.segment_bytes)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("max_batch", &self.max_batch)
            .field("queue", &self.queue)
            .field("timeout", &self.timeout)
            .field("sync_lanes", &self.sync_lanes)
            .finish_non_exhaustive()
    }
}

/// A log under a data dir's `receipts/` directory.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct LogDir {
    /// Its directory.
    pub dir: PathBuf,
    /// Its path under `receipts/`: `<proxy id>` or `<proxy id>/<instance>`.
    pub name: String,
    /// `clawproxy/<name>`.
    pub origin: String,
}

/// Every log under `receipts`, sorted by origin: `receipts/<proxy id>` (one per proxy key)
/// and, for proxies sharing an identity in a fleet, `receipts/<proxy id>/<instance>`.
pub fn log_dirs(receipts: &Path) -> std::io::Result<Vec<LogDir>> {
    let mut logs = Vec::new();
    for (id, dir) in subdirs(receipts)? {
        for (instance, dir) in subdirs(&dir)? {
            if crate::receipt::is_instance_name(&instance) {
                logs.push(LogDir {
                    origin: crate::receipt::instance_origin(&id, Some(&instance)),
                    name: format!("{id}/{instance}"),
                    dir,
                });
            }
        }
        logs.push(LogDir {
            origin: crate::receipt::origin(&id),
            name: id,
            dir,
        });
    }
    logs.sort_by(|a, b| a.origin.cmp(&b.origin));
    Ok(logs)
}

/// The directories in `dir` with UTF-8 names (none when `dir` does not exist).
fn subdirs(dir: &Path) -> std::io::Result<Vec<(String, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.is_dir()
            && let Some(name) = path.file_name().and_then(|n| n.to_str())
        {
            out.push((name.to_owned(), path.clone()));
        }
    }
    Ok(out)
}

/// What the proxy hands the writer: a receipt without the fields the log assigns (`v`, `id`,
/// `log`, `seq`, `prev`, `ts`, `proxy`, `job_seq`, `job_prev`, `sig`).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Draft {
    /// `request`, `call`, `tunnel_open` or `tunnel_close` (the log writes the others itself).
    pub kind: Kind,
    /// The token's job, or [`crate::receipt::ANONYMOUS_JOB`].
    pub job: String,
    /// Pairs a `request` with its `call`.
    pub rid: Option<String>,
    /// The agent's address.
    pub client: Option<String>,
    /// The token's id and scope.
    pub cst: Option<Cst>,
    /// The pinned contract hash.
    pub wpc: Option<String>,
    /// The request.
    pub req: Option<Req>,
    /// The operation.
    pub op: Option<Op>,
    /// The decision.
    pub decision: Option<Decision>,
    /// The upstream answer.
    pub resp: Option<Resp>,
    /// Milliseconds since the request head.
    pub duration_ms: Option<u64>,
    /// Tunnel bytes (`tunnel_close`).
    pub tunnel: Option<Tunnel>,
}

impl Draft {
    /// An empty draft of `kind` for `job`; fill in the rest.
    pub fn new(kind: Kind, job: impl Into<String>) -> Self {
        Self {
            kind,
            job: job.into(),
            rid: None,
            client: None,
            cst: None,
            wpc: None,
            req: None,
            op: None,
            decision: None,
            resp: None,
            duration_ms: None,
            tunnel: None,
        }
    }
}

/// A job's end, for [`LogHandle::close_job`]: the log assigns `count` and the chain links.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct JobClose {
    /// The job.
    pub job: String,
    /// Why it closed.
    pub closed: Closed,
    /// The token's id and scope, when known (lets a verifier bind the close to the token).
    pub cst: Option<Cst>,
    /// The token's pinned contract hash, when known.
    pub wpc: Option<String>,
    /// Fleet mode: the other logs that served the job, from the shared state (the writer
    /// adds its own and sorts them).
    pub logs: Option<Vec<String>>,
}

impl JobClose {
    /// A close of `job` without token details.
    pub fn new(job: impl Into<String>, closed: Closed) -> Self {
        Self {
            job: job.into(),
            closed,
            cst: None,
            wpc: None,
            logs: None,
        }
    }
}

/// A key change the log records with a `key_rotation` receipt ([`LogHandle::rotate`]).
pub enum Rekey {
    /// The log's own signing key: the rotation receipt is signed by the old key, every
    /// receipt and checkpoint after it by this one. Its public key must be in trust.json
    /// under the proxy id, or what the log writes next would not verify.
    Proxy(SigningKey),
    /// The audit key: body hashes after the rotation receipt use this one.
    Audit(AuditKey),
    /// A key the log does not hold (issuer, policy, CA): recorded only.
    Recorded(Rotation),
}

impl std::fmt::Debug for Rekey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rekey::Proxy(key) => f
                .debug_tuple("Proxy")
                .field(&claw_policy::keys::kid(&key.verifying_key()))
                .finish(),
            Rekey::Audit(key) => f.debug_tuple("Audit").field(&key.kid()).finish(),
            Rekey::Recorded(rotation) => f.debug_tuple("Recorded").field(rotation).finish(),
        }
    }
}

/// Where an appended receipt landed (it is durable).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Appended {
    /// Its id (for `X-Clawproxy-Receipt`).
    pub id: String,
    /// Its leaf index.
    pub seq: u64,
    /// Its index among its job's receipts.
    pub job_seq: u64,
    /// Its leaf hash.
    pub leaf: Hash,
}

/// A signed checkpoint.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SignedCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The note text.
    pub note: String,
}

/// Why the log could not open, append or checkpoint.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A write or sync failed (or stalled) earlier; nothing is written until restart.
    #[error("receipt log is poisoned after an I/O failure ({0}); restart the proxy")]
    Poisoned(String),
    /// No acknowledgement in time.
    #[error("receipt log did not answer within {0:?}")]
    Timeout(Duration),
    /// The writer has stopped.
    #[error("receipt log is closed")]
    Closed,
    /// The draft breaks the receipt rules (a bug in the caller; the log is unaffected).
    #[error("invalid receipt draft: {0}")]
    Draft(String),
    /// The job already has a `job_close` in this log.
    #[error("job {0:?} is closed in this log")]
    JobClosed(String),
    /// The existing log is damaged; the proxy must not start on it.
    #[error(
        "receipt log damaged: {message} (file {file}{seq}); the proxy refuses to start on a \
         broken log; inspect it with `clawverify query --data-dir {data_dir} --json` and keep \
         the damaged segment as evidence"
    )]
    Damaged {
        /// The file.
        file: String,
        /// `, seq N` when known.
        seq: String,
        /// What is wrong.
        message: String,
        /// The data dir (for the inspect command).
        data_dir: String,
    },
    /// The log directory or a file in it cannot be used.
    #[error("receipt log {path}: {message}")]
    Io {
        /// The path.
        path: String,
        /// What failed.
        message: String,
    },
    /// A key is missing or unusable.
    #[error("receipt log key: {0}")]
    Key(String),
    /// Another process holds the log's lock.
    #[error(
        "receipt log {0} is in use by another process (a running clawproxy?); one log has one \
         writer"
    )]
    Busy(String),
}

/// Fixed-bucket histogram (Prometheus-style cumulative export is the caller's).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micro
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// `(upper bound, observations in this bucket)`; the last bound is `+Inf`.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        self.bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect()
    }

    /// Sum of observations.
    pub fn sum(&self) -> f64 {
        self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// Counters for metrics (`/metrics`) and the load report.
#[derive(Debug)]
pub struct LogMetrics {
    /// Receipts made durable.
    pub receipts: AtomicU64,
    /// Batches written (one write, one fdatasync each).
    pub batches: AtomicU64,
    /// Checkpoints signed.
    pub checkpoints: AtomicU64,
    /// Receipts per batch.
    pub batch_size: Histogram,
    /// Seconds per data fdatasync.
    pub fsync_seconds: Histogram,
}

impl Default for LogMetrics {
    fn default() -> Self {
        const SIZES: &[f64] = &[
            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
        ];
        const SECONDS: &[f64] = &[
            0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0,
            5.0,
        ];
        Self {
            receipts: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            batch_size: Histogram::new(SIZES),
            fsync_seconds: Histogram::new(SECONDS),
        }
    }
}

impl LogMetrics {
    /// Data fdatasyncs per durable receipt (1.0 without group commit; lower is better).
    pub fn fsyncs_per_receipt(&self) -> f64 {
        let receipts = self.receipts.load(Ordering::Relaxed);
        if receipts == 0 {
            return 0.0;
        }
        self.batches.load(Ordering::Relaxed) as f64 / receipts as f64
    }
}

#[cfg(test)]
pub(crate) mod tests;
