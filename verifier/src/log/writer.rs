//! The writer task: group commit, pipelined syncs, poisoning, checkpoints, start-up recovery.

use std::collections::VecDeque;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use claw_policy::keys::Purpose;
use claw_policy::trust::TrustStore;
use ed25519_dalek::SigningKey;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant as TokioInstant;

use super::reader::{Chain, ReadError, Receipts};
use super::segment::{segment_name, segment_path};
use super::sink::{Sink, Storage};
use super::{Appended, Draft, JobClose, LogConfig, LogError, LogMetrics, Rekey, SignedCheckpoint};
use crate::checkpoint::{self, Checkpoint};
use crate::merkle::CompactRange;
use crate::receipt::{
    self, AuditKey, IdGenerator, Kind, LOG_JOB, Presigner, Receipt, Recovery, RotatedKey, Rotation,
    format_ts,
};

type Reply<T> = oneshot::Sender<Result<T, LogError>>;

enum Command {
    Append(Box<Draft>, Reply<Appended>),
    Close(Box<JobClose>, Reply<Appended>),
    Rotate(Box<Rekey>, Reply<Appended>),
    Checkpoint(Reply<SignedCheckpoint>),
    Shutdown(Reply<()>),
}

struct Shared {
    poisoned: AtomicBool,
    reason: OnceLock<String>,
    metrics: LogMetrics,
    /// The log's size (receipts) up to which every line is durable.
    durable: watch::Sender<u64>,
}

impl Shared {
    fn poison(&self, reason: String) -> LogError {
        tracing::error!(%reason, "receipt log poisoned");
        let _ = self.reason.set(reason);
        self.poisoned.store(true, Ordering::SeqCst);
        self.error()
    }

    fn error(&self) -> LogError {
        LogError::Poisoned(self.reason.get().cloned().unwrap_or_default())
    }
}

/// Opens logs.
#[derive(Debug)]
pub struct LogWriter;

impl LogWriter {
    /// Verifies and recovers the log in `config.dir`, then starts its writer task.
    ///
    /// Fails when the directory cannot be written, the log is damaged, or the latest
    /// checkpoint is not a prefix of the log.
    pub async fn open(config: LogConfig) -> Result<(LogHandle, JoinHandle<()>), LogError> {
        let timeout = config.timeout;
        let cfg = config.clone();
        let opened = tokio::time::timeout(
            // Start-up reads the whole log: allow it more than one I/O wait.
            timeout.saturating_mul(30),
            tokio::task::spawn_blocking(move || State::open(&cfg)),
        )
        .await
        .map_err(|_| LogError::Timeout(timeout.saturating_mul(30)))?
        .map_err(|e| LogError::Io {
            path: config.dir.display().to_string(),
            message: format!("start-up task failed: {e}"),
        })??;
        let Opened {
            mut state,
            torn,
            unrecorded,
            last_checkpoint,
        } = opened;
        let shared = Arc::new(Shared {
            poisoned: AtomicBool::new(false),
            reason: OnceLock::new(),
            metrics: LogMetrics::default(),
            durable: watch::Sender::new(0),
        });
        let mut tuning = Tuning {
            lanes: config.sync_lanes.max(1),
            max_batch: config.max_batch.max(1),
            interval: config.checkpoint_interval,
            timeout,
            last_checkpoint,
        };
        if torn.is_some() || !unrecorded.is_empty() {
            for rotation in &unrecorded {
                tracing::warn!(
                    log = %state.origin,
                    key = rotation.key.as_str(),
                    old = %rotation.old,
                    new = %rotation.new,
                    "the key changed without a key_rotation receipt; recording it now"
                );
            }
            // Record the cut and the key changes before anything else is accepted; durable
            // like any receipt.
            let startup_io = tokio::task::spawn_blocking(move || {
                let prepared = state.prepare_startup(torn, unrecorded);
                if let Some(Err(e)) = prepared.results.iter().find(|r| r.is_err()) {
                    return Err(io::Error::other(format!("start-up receipt: {e}")));
                }
                let mut lane = state.write(None, &prepared)?;
                lane.sink.sync()?;
                let signed = state.signer().checkpoint(state.chain.range.clone())?;
                Ok::<_, io::Error>((state, signed))
            });
            let (back, signed) = tokio::time::timeout(timeout, startup_io)
                .await
                .map_err(|_| LogError::Timeout(timeout))?
                .map_err(|e| io_failure(&config.dir, &e.to_string()))?
                .map_err(|e| io_failure(&config.dir, &e.to_string()))?;
            state = back;
            tuning.last_checkpoint = Some(signed);
        }
        shared.durable.send_replace(state.chain.range.size());
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let handle = LogHandle {
            tx,
            shared: shared.clone(),
            timeout,
            origin: config.origin().into(),
            dir: config.dir.clone().into(),
            audit: Arc::new(RwLock::new(Arc::new(config.audit_key.clone()))),
        };
        let task = tokio::spawn(run(state, rx, shared, tuning));
        Ok((handle, task))
    }
}

/// A cheap, cloneable handle on the writer.
#[derive(Clone)]
pub struct LogHandle {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    timeout: Duration,
    origin: Arc<str>,
    dir: Arc<Path>,
    /// Replaced when an audit key rotation is durable.
    audit: Arc<RwLock<Arc<AuditKey>>>,
}

impl std::fmt::Debug for LogHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogHandle")
            .field("origin", &self.origin)
            .field("poisoned", &self.is_poisoned())
            .finish_non_exhaustive()
    }
}

impl LogHandle {
    /// Appends a receipt; resolves once it is signed, written and fdatasync'd (or fails:
    /// then the caller must not forward, or must withhold the answer and say 503).
    pub async fn append(&self, draft: Draft) -> Result<Appended, LogError> {
        self.call(|reply| Command::Append(Box::new(draft), reply))
            .await
    }

    /// Writes the job's `job_close` receipt (its `count` and last link assigned by the log)
    /// and then signs a checkpoint covering it. A job closes once per log: later receipts
    /// and closes of it fail with [`LogError::JobClosed`].
    pub async fn close_job(&self, close: JobClose) -> Result<Appended, LogError> {
        let appended = self
            .call(|reply| Command::Close(Box::new(close), reply))
            .await?;
        self.checkpoint().await?;
        Ok(appended)
    }

    /// Records a key rotation with a `key_rotation` receipt and puts the new key in use, then
    /// signs a checkpoint. A new proxy key signs everything after the receipt (which the old
    /// key signs); a new audit key keys [`LogHandle::audit`] once the receipt is durable.
    pub async fn rotate(&self, rekey: Rekey) -> Result<Appended, LogError> {
        let audit = match &rekey {
            Rekey::Audit(key) => Some(key.clone()),
            _ => None,
        };
        let appended = self
            .call(|reply| Command::Rotate(Box::new(rekey), reply))
            .await?;
        if let Some(key) = audit {
            *self.audit.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(key);
        }
        self.checkpoint().await?;
        Ok(appended)
    }

    /// Signs a checkpoint of every acknowledged receipt now (or returns the latest if nothing
    /// was acknowledged since).
    pub async fn checkpoint(&self) -> Result<SignedCheckpoint, LogError> {
        self.call(Command::Checkpoint).await
    }

    /// Stops accepting appends, finishes what is queued, signs a final checkpoint and ends
    /// the writer task.
    pub async fn shutdown(&self) -> Result<(), LogError> {
        self.call(Command::Shutdown).await
    }

    /// Whether a write or sync failed or stalled (then every append fails until restart).
    pub fn is_poisoned(&self) -> bool {
        self.shared.poisoned.load(Ordering::SeqCst)
    }

    /// Batch sizes, fsync latency and counts.
    pub fn metrics(&self) -> &LogMetrics {
        &self.shared.metrics
    }

    /// The log's origin, `clawproxy/<proxy id>`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The directory of the log's segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's durable size: every receipt with a lower seq is written and synced. Changes
    /// after each batch's fdatasync, so a follower (the fleet's receipt index) reads only
    /// lines a crash cannot take back.
    pub fn durable(&self) -> watch::Receiver<u64> {
        self.shared.durable.subscribe()
    }

    /// The audit key in use, for `blake3k:` body hashes in drafts.
    pub fn audit(&self) -> Arc<AuditKey> {
        self.audit.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, LogError> {
        if self.is_poisoned() {
            return Err(self.shared.error());
        }
        // The writer bounds each of its stages by `timeout` and fails its waiters itself (and
        // poisons) when one overruns; the caller's own bound is looser so that the writer's
        // verdict normally arrives first, and is only the backstop against a dead task.
        let deadline = TokioInstant::now() + self.timeout + self.timeout / 2;
        let (reply, rx) = oneshot::channel();
        match tokio::time::timeout_at(deadline, self.tx.send(command(reply))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(LogError::Closed),
            Err(_) => return Err(LogError::Timeout(self.timeout)),
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(if self.is_poisoned() {
                self.shared.error()
            } else {
                LogError::Closed
            }),
            Err(_) => Err(LogError::Timeout(self.timeout)),
        }
    }
}

struct Tuning {
    lanes: usize,
    max_batch: usize,
    interval: Duration,
    timeout: Duration,
    last_checkpoint: Option<SignedCheckpoint>,
}

/// A segment handle of its own (own open file description), used for one write + one sync.
struct Lane {
    sink: Box<dyn Sink>,
    segment: u64,
}

/// The chain and the current segment: moved into blocking tasks, one stage at a time.
struct State {
    dir: PathBuf,
    origin: String,
    kid: String,
    /// Signs receipts; its nonces are computed ahead on their own thread.
    key: Presigner,
    /// Kid of the audit key in use (the old side of its next rotation).
    audit_kid: String,
    chain: Chain,
    ids: IdGenerator,
    segment_first: u64,
    segment_size: u64,
    segment_limit: u64,
    storage: Arc<dyn Storage>,
    /// Held (flock) while the writer lives: one writer per log, across processes.
    _lock: fs::File,
}

/// One entry of a batch.
enum Item {
    Draft(Box<Draft>),
    Close(JobClose),
    Rotate(Rekey),
}

/// One batch, signed and serialised.
struct Prepared {
    bytes: Vec<u8>,
    first_seq: u64,
    results: Vec<Result<Appended, LogError>>,
    /// The signing key changed during the batch.
    rekeyed: bool,
}

/// A verified log, ready for its writer task.
struct Opened {
    state: State,
    /// A torn tail that was cut, for a `recovery` receipt.
    torn: Option<Recovery>,
    /// Keys replaced without a `key_rotation` receipt, to record now.
    unrecorded: Vec<Rotation>,
    last_checkpoint: Option<SignedCheckpoint>,
}

/// The proxy and audit keys a log was last used with, read back at start-up, so that a key
/// replaced without a `key_rotation` receipt (a running proxy refused the change, or the file
/// was replaced by hand) is recorded before anything else is appended.
#[derive(Default)]
struct KeysInUse {
    /// The last receipt read: its signer, or the `new` key of its proxy rotation.
    last: Option<receipt::CheckedReceipt>,
    audit: Option<String>,
}

impl KeysInUse {
    fn observe(&mut self, r: receipt::CheckedReceipt) {
        match &r.rotation {
            Some(rotation) if rotation.key == RotatedKey::Audit => {
                self.audit = Some(rotation.new.clone());
            }
            // Only the first body hash names the key the log began with: later ones may come
            // from drafts keyed just before a recorded rotation.
            _ if self.audit.is_none() => self.audit = r.audit_kid().map(str::to_owned),
            _ => {}
        }
        self.last = Some(r);
    }

    /// The rotations a log now signed by `kid`, with body hashes keyed by `audit_kid`, lacks.
    fn unrecorded(&self, kid: &str, audit_kid: &str) -> Vec<Rotation> {
        let proxy = self.last.as_ref().map(|r| match &r.rotation {
            Some(rotation) if rotation.key == RotatedKey::Proxy => rotation.new.as_str(),
            _ => r.proxy.as_str(),
        });
        [
            (RotatedKey::Proxy, proxy, kid),
            (RotatedKey::Audit, self.audit.as_deref(), audit_kid),
        ]
        .into_iter()
        .filter_map(|(key, old, new)| {
            let old = old.filter(|old| *old != new)?;
            Some(Rotation {
                key,
                old: old.to_owned(),
                new: new.to_owned(),
            })
        })
        .collect()
    }
}

impl State {
    /// Start-up: verify, cut a torn tail, check the latest checkpoint is a prefix.
    fn open(config: &LogConfig) -> Result<Opened, LogError> {
        let dir = &config.dir;
        fs::create_dir_all(dir).map_err(|e| io_failure(dir, &e.to_string()))?;
        let lock = lock_log(dir)?;
        let verifying = config.signing_key.verifying_key();
        let mut trust = TrustStore::default();
        for key in config.retired_keys.iter().chain([&verifying]) {
            trust.add(Purpose::Proxy, &config.proxy_id, *key);
        }
        let origin = config.origin();
        let latest = read_latest_checkpoint(dir, &origin, &trust)?;
        cut_torn_history(dir)?;
        let mut receipts = Receipts::new(dir, &trust, false).map_err(|e| damaged(dir, &e))?;
        let mut prefix_root = latest.as_ref().filter(|c| c.size == 0).map(|c| c.root);
        let mut torn = None;
        let mut keys = KeysInUse::default();
        loop {
            if let Some(cp) = &latest
                && receipts.chain_state().size() == cp.size
            {
                prefix_root = Some(receipts.chain_state().range.root());
            }
            match receipts.next() {
                None => break,
                Some(Ok(r)) => keys.observe(r),
                Some(Err(ReadError::Torn { .. })) => {
                    torn = receipts.torn.clone();
                    break;
                }
                Some(Err(e @ (ReadError::Receipt { .. } | ReadError::Chain { .. }))) => {
                    // A bad last "line" made only of NUL bytes is a torn tail too (a crash
                    // after the size grew but before the data reached the disk).
                    match zero_tail(&e, dir) {
                        Some(cut) => {
                            torn = Some(cut);
                            break;
                        }
                        None => return Err(damaged(dir, &e)),
                    }
                }
                Some(Err(e)) => return Err(damaged(dir, &e)),
            }
        }
        let chain = receipts.into_chain();
        if let Some(cp) = &latest
            && prefix_root != Some(cp.root)
        {
            return Err(LogError::Damaged {
                file: dir.join("checkpoint").display().to_string(),
                seq: format!(", seq {}", cp.size),
                message: format!(
                    "the latest checkpoint (size {}) is not a prefix of the log (size {})",
                    cp.size,
                    chain.size()
                ),
                data_dir: data_dir_of(dir),
            });
        }
        let recovery = match torn {
            Some((path, offset, bytes)) => Some(cut_tail(&path, offset, bytes)?),
            None => None,
        };
        let segments =
            super::segment::list_segments(dir).map_err(|e| io_failure(dir, &e.to_string()))?;
        let (segment_first, segment_size) = match segments.last() {
            Some((first, path)) => (
                *first,
                fs::metadata(path)
                    .map_err(|e| io_failure(path, &e.to_string()))?
                    .len(),
            ),
            None => (0, 0),
        };
        let kid = claw_policy::keys::kid(&verifying);
        let unrecorded = keys.unrecorded(&kid, config.audit_key.kid());
        let state = State {
            dir: dir.clone(),
            origin,
            kid,
            key: Presigner::new(config.signing_key.clone()),
            audit_kid: config.audit_key.kid().to_owned(),
            chain,
            ids: IdGenerator::new(),
            segment_first,
            segment_size,
            segment_limit: config.segment_bytes.max(1),
            storage: config.storage.clone(),
            _lock: lock,
        };
        // Refuse to start on a log we cannot write: open the segment now. And sync it: lines a
        // crashed process left in the page cache were never acknowledged, but from here on
        // they count as durable (followers copy them), so they must reach the disk first.
        state
            .open_lane(state.segment_first)
            .and_then(|mut lane| lane.sink.sync())
            .map_err(|e| io_failure(&segment_path(dir, state.segment_first), &e.to_string()))?;
        let last_checkpoint = latest.map(|cp| SignedCheckpoint {
            size: cp.size,
            root: cp.root,
            note: String::new(),
        });
        Ok(Opened {
            state,
            torn: recovery,
            unrecorded,
            last_checkpoint,
        })
    }

    fn open_lane(&self, first: u64) -> io::Result<Lane> {
        let path = segment_path(&self.dir, first);
        let created = !path.exists();
        let sink = self.storage.open(&path)?;
        if created {
            self.storage.sync_dir(&self.dir)?;
        }
        Ok(Lane {
            sink,
            segment: first,
        })
    }

    fn now() -> (u64, String) {
        let now = time::OffsetDateTime::now_utc();
        let ms = (now.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
        (ms, format_ts(now))
    }

    /// Assigns, checks, signs and serialises a batch.
    fn prepare(&mut self, items: Vec<Item>) -> Prepared {
        let (ms, now) = Self::now();
        let ts = if now < self.chain.last_ts {
            self.chain.last_ts.clone()
        } else {
            now
        };
        let first_seq = self.chain.size();
        let mut bytes = Vec::with_capacity(items.len() * 700);
        let mut results = Vec::with_capacity(items.len());
        let mut rekeyed = false;
        for item in items {
            let receipt = match item {
                Item::Draft(d)
                    if matches!(d.kind, Kind::JobClose | Kind::Recovery | Kind::KeyRotation) =>
                {
                    results.push(Err(LogError::Draft(format!(
                        "{} receipts are written by the log itself",
                        d.kind.as_str()
                    ))));
                    continue;
                }
                Item::Draft(d) => self.assign(*d, &ts, ms),
                Item::Rotate(rekey) => {
                    let result = self.rotate(rekey, &ts, ms, &mut bytes);
                    rekeyed |= result.is_ok();
                    results.push(result);
                    continue;
                }
                Item::Close(close) => {
                    let mut draft = Draft::new(Kind::JobClose, close.job);
                    draft.cst = close.cst;
                    draft.wpc = close.wpc;
                    let mut r = self.assign(draft, &ts, ms);
                    r.count = Some(r.job_seq);
                    r.closed = Some(close.closed);
                    r.logs = close.logs.map(|mut logs| {
                        logs.push(self.origin.clone());
                        logs.sort();
                        logs.dedup();
                        logs
                    });
                    r
                }
            };
            results.push(self.seal(receipt, &mut bytes));
        }
        Prepared {
            bytes,
            first_seq,
            results,
            rekeyed,
        }
    }

    /// Seals a `key_rotation` receipt under the key in use, then puts the new key in use.
    fn rotate(
        &mut self,
        rekey: Rekey,
        ts: &str,
        ms: u64,
        bytes: &mut Vec<u8>,
    ) -> Result<Appended, LogError> {
        let (rotation, next_key) = match rekey {
            Rekey::Proxy(key) => {
                let new = claw_policy::keys::kid(&key.verifying_key());
                let rotation = Rotation {
                    key: RotatedKey::Proxy,
                    old: self.kid.clone(),
                    new,
                };
                (rotation, Some(key))
            }
            Rekey::Audit(key) => {
                let rotation = Rotation {
                    key: RotatedKey::Audit,
                    old: self.audit_kid.clone(),
                    new: key.kid().to_owned(),
                };
                (rotation, None)
            }
            Rekey::Recorded(rotation) => (rotation, None),
        };
        let mut r = self.assign(Draft::new(Kind::KeyRotation, LOG_JOB), ts, ms);
        let key = rotation.key;
        let new = rotation.new.clone();
        r.rotation = Some(rotation);
        let appended = self.seal(r, bytes)?;
        match key {
            RotatedKey::Proxy => {
                if let Some(next) = next_key {
                    self.key = Presigner::new(next);
                    self.kid = new;
                }
            }
            RotatedKey::Audit => self.audit_kid = new,
            RotatedKey::Issuer | RotatedKey::Policy | RotatedKey::Ca => {}
        }
        Ok(appended)
    }

    /// The log's own start-up receipts: the `recovery` of a cut tail, then a `key_rotation`
    /// for each key replaced without one (signed by the new key: the old one is gone).
    fn prepare_startup(&mut self, torn: Option<Recovery>, unrecorded: Vec<Rotation>) -> Prepared {
        let (ms, ts) = Self::now();
        let ts = ts.max(self.chain.last_ts.clone());
        let first_seq = self.chain.size();
        let mut bytes = Vec::new();
        let mut results = Vec::new();
        if let Some(torn) = torn {
            let mut r = self.assign(Draft::new(Kind::Recovery, LOG_JOB), &ts, ms);
            r.recovery = Some(torn);
            results.push(self.seal(r, &mut bytes));
        }
        for rotation in unrecorded {
            results.push(self.rotate(Rekey::Recorded(rotation), &ts, ms, &mut bytes));
        }
        Prepared {
            bytes,
            first_seq,
            results,
            rekeyed: false,
        }
    }

    fn assign(&mut self, d: Draft, ts: &str, ms: u64) -> Receipt {
        let (job_seq, job_prev, _) = self.chain.job_link(&d.job);
        Receipt {
            v: 1,
            kind: d.kind,
            id: self.ids.next(ms),
            log: self.origin.clone(),
            seq: self.chain.size(),
            prev: self.chain.prev().to_owned(),
            ts: ts.to_owned(),
            proxy: self.kid.clone(),
            job_seq,
            job_prev: job_prev.to_owned(),
            job: d.job,
            rid: d.rid,
            client: d.client,
            cst: d.cst,
            wpc: d.wpc,
            req: d.req,
            op: d.op,
            decision: d.decision,
            resp: d.resp,
            duration_ms: d.duration_ms,
            tunnel: d.tunnel,
            count: None,
            closed: None,
            recovery: None,
            rotation: None,
            logs: None,
            sig: String::new(),
        }
    }

    /// Checks the assigned receipt, signs it and appends its line to the batch.
    fn seal(&mut self, mut r: Receipt, bytes: &mut Vec<u8>) -> Result<Appended, LogError> {
        if self.chain.job_link(&r.job).2 {
            return Err(LogError::JobClosed(r.job));
        }
        r.check_shape()
            .map_err(|e| LogError::Draft(e.to_string()))?;
        r.sign(&self.key);
        let checked = receipt::CheckedReceipt::signed_here(r);
        bytes.extend_from_slice(checked.leaf());
        bytes.push(b'\n');
        self.chain.push(checked.receipt(), checked.leaf_hash());
        Ok(Appended {
            id: checked.receipt().id.clone(),
            seq: checked.receipt().seq,
            job_seq: checked.receipt().job_seq,
            leaf: checked.leaf_hash(),
        })
    }

    /// Writes a batch with one `write_all`, rolling to a new segment first when the batch
    /// would grow the current one past the limit.
    fn write(&mut self, lane: Option<Lane>, batch: &Prepared) -> io::Result<Lane> {
        if self.segment_size > 0
            && self.segment_size + batch.bytes.len() as u64 > self.segment_limit
        {
            self.segment_first = batch.first_seq;
            self.segment_size = 0;
        }
        let mut lane = match lane {
            Some(lane) if lane.segment == self.segment_first => lane,
            _ => self.open_lane(self.segment_first)?,
        };
        lane.sink.write_all(&batch.bytes)?;
        self.segment_size += batch.bytes.len() as u64;
        Ok(lane)
    }

    fn signer(&self) -> Arc<Signer> {
        Arc::new(Signer {
            dir: self.dir.clone(),
            origin: self.origin.clone(),
            key: self.key.key().clone(),
        })
    }
}

/// What a checkpoint needs, apart from the chain (so it can run beside a batch write).
struct Signer {
    dir: PathBuf,
    origin: String,
    key: SigningKey,
}

impl Signer {
    /// Signs and stores a checkpoint of `range` (the acknowledged prefix): the history line
    /// first (appended, fdatasync'd), then the latest note (temporary file, fsync, rename,
    /// directory fsync), so the latest is always in the history.
    fn checkpoint(&self, range: CompactRange) -> io::Result<SignedCheckpoint> {
        let size = range.size();
        let root = range.root();
        let note = sign_tree_head(&self.origin, size, root, &self.key);
        let record = claw_policy::canonical::to_jcs_of(&super::CheckpointRecord {
            note: note.clone(),
            size,
        })
        .map_err(io::Error::other)?;
        let mut history = super::sink::open_append(&self.dir.join("checkpoints"))?;
        io::Write::write_all(&mut history, &[record.as_slice(), b"\n"].concat())?;
        history.sync_data()?;
        claw_policy::registry::write_atomic(&self.dir.join("checkpoint"), note.as_bytes())?;
        Ok(SignedCheckpoint { size, root, note })
    }
}

/// The one place that signs a tree head (the checkpoint module's API).
fn sign_tree_head(origin: &str, size: u64, root: crate::merkle::Hash, key: &SigningKey) -> String {
    checkpoint::sign_checkpoint(&Checkpoint::new(origin, size, root), origin, key)
}

/// Takes the log's lock (`lock`, flock'd for the writer's life), so that two processes never
/// append to one log: their chains would fork and both would be damaged.
fn lock_log(dir: &Path) -> Result<fs::File, LogError> {
    let path = dir.join("lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_failure(&path, &e.to_string()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(LogError::Busy(dir.display().to_string())),
        Err(fs::TryLockError::Error(e)) => Err(io_failure(&path, &e.to_string())),
    }
}

fn read_latest_checkpoint(
    dir: &Path,
    origin: &str,
    trust: &TrustStore,
) -> Result<Option<Checkpoint>, LogError> {
    let path = dir.join("checkpoint");
    let note = match fs::read_to_string(&path) {
        Ok(note) => note,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_failure(&path, &e.to_string())),
    };
    checkpoint::open_checkpoint(&note, &super::note_verifiers(trust, origin))
        .map(Some)
        .map_err(|e| LogError::Damaged {
            file: path.display().to_string(),
            seq: String::new(),
            message: format!("the latest checkpoint does not verify: {e}"),
            data_dir: data_dir_of(dir),
        })
}

/// When a bad line of the last segment and everything after it are NUL bytes or newlines:
/// the torn tail to cut.
fn zero_tail(error: &ReadError, dir: &Path) -> Option<(PathBuf, u64, u64)> {
    let (ReadError::Receipt { file, line, .. } | ReadError::Chain { file, line, .. }) = error
    else {
        return None;
    };
    let segments = super::segment::list_segments(dir).ok()?;
    let (_, last) = segments.last()?;
    if last.display().to_string() != *file {
        return None;
    }
    let bytes = fs::read(last).ok()?;
    let mut offset = 0usize;
    for _ in 1..*line {
        offset += bytes[offset..].iter().position(|b| *b == b'\n')? + 1;
    }
    let tail = &bytes[offset..];
    tail.iter()
        .all(|b| *b == 0 || *b == b'\n')
        .then(|| (last.clone(), offset as u64, tail.len() as u64))
}

/// Cuts an incomplete last record of the checkpoint history: an append cut short by a crash
/// or a full disk. Its note never became the latest checkpoint (that is written only after the
/// history line is synced), so nothing is lost; left in place, the next record would be
/// appended after it and the history would no longer parse.
fn cut_torn_history(dir: &Path) -> Result<(), LogError> {
    /// A record is well under 1 KiB; an incomplete one longer than this is damage.
    const WINDOW: u64 = 64 * 1024;
    let path = dir.join("checkpoints");
    let fail = |e: io::Error| io_failure(&path, &e.to_string());
    let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(fail(e)),
    };
    let len = file.metadata().map_err(fail)?.len();
    let start = len.saturating_sub(WINDOW);
    let mut tail = Vec::with_capacity((len - start) as usize);
    file.seek(SeekFrom::Start(start)).map_err(fail)?;
    file.read_to_end(&mut tail).map_err(fail)?;
    if tail.is_empty() || tail.ends_with(b"\n") {
        return Ok(());
    }
    let keep = match tail.iter().rposition(|b| *b == b'\n') {
        Some(p) => start + p as u64 + 1,
        None if start == 0 => 0,
        None => {
            return Err(LogError::Damaged {
                file: path.display().to_string(),
                seq: String::new(),
                message: format!("the checkpoint history ends in a line over {WINDOW} bytes"),
                data_dir: data_dir_of(dir),
            });
        }
    };
    file.set_len(keep).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    tracing::warn!(file = %path.display(), offset = keep, bytes = len - keep, "cut an incomplete checkpoint history record");
    Ok(())
}

/// Cuts a never-acknowledged tail and says what was cut.
fn cut_tail(path: &Path, offset: u64, bytes: u64) -> Result<Recovery, LogError> {
    let fail = |e: io::Error| io_failure(path, &e.to_string());
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(fail)?;
    let mut cut = Vec::with_capacity(bytes as usize);
    file.seek(SeekFrom::Start(offset)).map_err(fail)?;
    file.read_to_end(&mut cut).map_err(fail)?;
    file.set_len(offset).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    tracing::warn!(file = %path.display(), offset, bytes = cut.len(), "cut a torn receipt log tail");
    Ok(Recovery {
        segment: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| segment_name(0)),
        offset,
        bytes: cut.len() as u64,
        hash: format!("sha256:{}", receipt::hex(&Sha256::digest(&cut))),
    })
}

fn data_dir_of(dir: &Path) -> String {
    dir.parent()
        .and_then(Path::parent)
        .map_or_else(|| ".".to_owned(), |p| p.display().to_string())
}

fn damaged(dir: &Path, e: &ReadError) -> LogError {
    let file = match e {
        ReadError::Io { file, .. }
        | ReadError::Receipt { file, .. }
        | ReadError::Chain { file, .. }
        | ReadError::Segment { file, .. }
        | ReadError::Torn { file, .. } => file.clone(),
    };
    LogError::Damaged {
        file,
        seq: e.seq().map(|s| format!(", seq {s}")).unwrap_or_default(),
        message: e.to_string(),
        data_dir: data_dir_of(dir),
    }
}

fn io_failure(path: &Path, message: &str) -> LogError {
    LogError::Io {
        path: path.display().to_string(),
        message: message.to_owned(),
    }
}

/// A batch whose sync is in flight.
struct Inflight {
    sync: JoinHandle<(Lane, io::Result<()>, Duration)>,
    deadline: TokioInstant,
    waiters: Vec<(Reply<Appended>, Appended)>,
    range: CompactRange,
}

type WriteDone = (State, Prepared, io::Result<Option<Lane>>, CompactRange);

/// The batch being signed and written (stage 1), which holds the chain state meanwhile.
struct Writing {
    job: JoinHandle<WriteDone>,
    deadline: TokioInstant,
    replies: Vec<Reply<Appended>>,
}

/// The checkpoint being written.
struct Checkpointing {
    job: JoinHandle<io::Result<SignedCheckpoint>>,
    deadline: TokioInstant,
}

enum Event {
    Written(Box<Result<WriteDone, tokio::task::JoinError>>),
    WriteStalled,
    Synced(Result<(Lane, io::Result<()>, Duration), tokio::task::JoinError>),
    SyncStalled,
    Checkpointed(Result<io::Result<SignedCheckpoint>, tokio::task::JoinError>),
    CheckpointStalled,
    Command(Option<Command>),
    Tick,
}

async fn bounded<T>(
    job: Option<(&mut JoinHandle<T>, TokioInstant)>,
) -> Option<Result<T, tokio::task::JoinError>> {
    match job {
        Some((handle, deadline)) => tokio::time::timeout_at(deadline, handle).await.ok(),
        None => std::future::pending().await,
    }
}

/// The writer task: a small state machine over four kinds of work in flight — receiving
/// commands, one batch being signed and written, up to `lanes` syncs, one checkpoint — so a
/// finished sync is acknowledged while the next batch is still being signed.
async fn run(
    state: State,
    mut rx: mpsc::Receiver<Command>,
    shared: Arc<Shared>,
    mut tuning: Tuning,
) {
    let mut signer = state.signer();
    let mut durable = state.chain.range.clone();
    let mut state = Some(state);
    let mut writing: Option<Writing> = None;
    let mut inflight: VecDeque<Inflight> = VecDeque::new();
    let mut checkpointing: Option<Checkpointing> = None;
    let mut free: Vec<Lane> = Vec::new();
    let mut lanes = 0usize;
    let mut next_tick = TokioInstant::now() + tuning.interval;
    let mut receiving = true;
    let mut shutdown: Vec<Reply<()>> = Vec::new();
    // Checkpoint requests waiting for the next checkpoint to finish.
    let mut checkpoint_waiters: Vec<Reply<SignedCheckpoint>> = Vec::new();
    let mut checkpoint_wanted = false;
    let mut final_checkpoint_done = false;
    loop {
        let poisoned = shared.poisoned.load(Ordering::SeqCst);
        // Start a checkpoint when one is wanted, none runs, and the state is sane.
        if checkpoint_wanted && checkpointing.is_none() {
            checkpoint_wanted = false;
            if poisoned {
                for reply in checkpoint_waiters.drain(..) {
                    let _ = reply.send(Err(shared.error()));
                }
            } else if let Some(latest) = tuning
                .last_checkpoint
                .clone()
                .filter(|c| c.size == durable.size() && !c.note.is_empty())
            {
                for reply in checkpoint_waiters.drain(..) {
                    let _ = reply.send(Ok(latest.clone()));
                }
            } else {
                let signer = signer.clone();
                let range = durable.clone();
                checkpointing = Some(Checkpointing {
                    job: tokio::task::spawn_blocking(move || signer.checkpoint(range)),
                    deadline: TokioInstant::now() + tuning.timeout,
                });
            }
        }
        let idle = writing.is_none() && inflight.is_empty() && checkpointing.is_none();
        if !receiving && idle {
            if final_checkpoint_done || poisoned {
                break;
            }
            // Drained: one last checkpoint of everything acknowledged.
            final_checkpoint_done = true;
            let behind = tuning
                .last_checkpoint
                .as_ref()
                .is_none_or(|c| c.size != durable.size());
            checkpoint_wanted = behind && durable.size() > 0;
            continue;
        }
        let lane_free = !free.is_empty() || lanes < tuning.lanes;
        let can_take = receiving && (poisoned || (writing.is_none() && lane_free));
        let event = tokio::select! {
            biased;
            done = bounded(inflight.front_mut().map(|f| (&mut f.sync, f.deadline))),
                if !inflight.is_empty() => done.map_or(Event::SyncStalled, Event::Synced),
            done = bounded(writing.as_mut().map(|w| (&mut w.job, w.deadline))),
                if writing.is_some() => done.map_or(Event::WriteStalled, |d| Event::Written(Box::new(d))),
            done = bounded(checkpointing.as_mut().map(|c| (&mut c.job, c.deadline))),
                if checkpointing.is_some() => done.map_or(Event::CheckpointStalled, Event::Checkpointed),
            command = rx.recv(), if can_take => Event::Command(command),
            () = tokio::time::sleep_until(next_tick) => Event::Tick,
        };
        match event {
            Event::Synced(done) => {
                let Some(batch) = inflight.pop_front() else {
                    continue;
                };
                match done {
                    Ok((lane, Ok(()), took)) if !shared.poisoned.load(Ordering::SeqCst) => {
                        let m = &shared.metrics;
                        m.fsync_seconds.observe(took.as_secs_f64());
                        m.batch_size.observe(batch.waiters.len() as f64);
                        m.batches.fetch_add(1, Ordering::Relaxed);
                        m.receipts
                            .fetch_add(batch.waiters.len() as u64, Ordering::Relaxed);
                        durable = batch.range;
                        shared.durable.send_replace(durable.size());
                        for (reply, appended) in batch.waiters {
                            let _ = reply.send(Ok(appended));
                        }
                        free.push(lane);
                    }
                    Ok((_, Ok(()), _)) => fail(batch.waiters, &shared.error()),
                    Ok((_, Err(e), _)) => {
                        let error = shared.poison(format!("fdatasync failed: {e}"));
                        fail(batch.waiters, &error);
                        fail_all(&mut inflight, &error);
                    }
                    Err(e) => {
                        let error = shared.poison(format!("sync task failed: {e}"));
                        fail(batch.waiters, &error);
                        fail_all(&mut inflight, &error);
                    }
                }
            }
            Event::SyncStalled => {
                let error =
                    shared.poison(format!("fdatasync stalled for over {:?}", tuning.timeout));
                if let Some(batch) = inflight.pop_front() {
                    fail(batch.waiters, &LogError::Timeout(tuning.timeout));
                }
                fail_all(&mut inflight, &error);
            }
            Event::Written(done) => {
                let Some(w) = writing.take() else { continue };
                match *done {
                    Ok((st, prepared, written, range)) => {
                        if prepared.rekeyed {
                            signer = st.signer();
                        }
                        state = Some(st);
                        let mut waiters = Vec::new();
                        for (reply, result) in w.replies.into_iter().zip(prepared.results) {
                            match result {
                                Ok(appended) => waiters.push((reply, appended)),
                                Err(e) => {
                                    let _ = reply.send(Err(e));
                                }
                            }
                        }
                        match written {
                            _ if shared.poisoned.load(Ordering::SeqCst) => {
                                fail(waiters, &shared.error());
                            }
                            // Every draft was refused: nothing was written, nothing to sync.
                            Ok(Some(lane)) if waiters.is_empty() => free.push(lane),
                            Ok(Some(mut lane)) => {
                                let sync = tokio::task::spawn_blocking(move || {
                                    let started = Instant::now();
                                    let result = lane.sink.sync();
                                    (lane, result, started.elapsed())
                                });
                                inflight.push_back(Inflight {
                                    sync,
                                    deadline: TokioInstant::now() + tuning.timeout,
                                    waiters,
                                    range,
                                });
                            }
                            Ok(None) => lanes = lanes.saturating_sub(1),
                            Err(e) => {
                                let error = shared.poison(format!("write failed: {e}"));
                                fail(waiters, &error);
                                fail_all(&mut inflight, &error);
                            }
                        }
                    }
                    Err(e) => {
                        let error = shared.poison(format!("write task failed: {e}"));
                        fail_replies(w.replies, &error);
                    }
                }
            }
            Event::WriteStalled => {
                shared.poison(format!("write stalled for over {:?}", tuning.timeout));
                if let Some(w) = writing.take() {
                    fail_replies(w.replies, &LogError::Timeout(tuning.timeout));
                }
                fail_all(&mut inflight, &shared.error());
            }
            Event::Checkpointed(done) => {
                checkpointing = None;
                let result = match done {
                    Ok(Ok(signed)) => {
                        shared.metrics.checkpoints.fetch_add(1, Ordering::Relaxed);
                        tuning.last_checkpoint = Some(signed.clone());
                        Ok(signed)
                    }
                    Ok(Err(e)) => Err(shared.poison(format!("checkpoint write failed: {e}"))),
                    Err(e) => Err(shared.poison(format!("checkpoint task failed: {e}"))),
                };
                for reply in checkpoint_waiters.drain(..) {
                    let _ = reply.send(result.clone());
                }
            }
            Event::CheckpointStalled => {
                checkpointing = None;
                let error = shared.poison(format!(
                    "checkpoint write stalled for over {:?}",
                    tuning.timeout
                ));
                for reply in checkpoint_waiters.drain(..) {
                    let _ = reply.send(Err(error.clone()));
                }
            }
            Event::Tick => {
                next_tick = TokioInstant::now() + tuning.interval;
                let behind = tuning
                    .last_checkpoint
                    .as_ref()
                    .is_none_or(|c| c.size != durable.size());
                if behind && durable.size() > 0 && !shared.poisoned.load(Ordering::SeqCst) {
                    checkpoint_wanted = true;
                }
            }
            Event::Command(None) => receiving = false,
            Event::Command(Some(first)) => {
                let mut drafts = Vec::new();
                let mut replies = Vec::new();
                let mut command = Some(first);
                while let Some(c) = command.take() {
                    match c {
                        Command::Append(d, reply) => {
                            drafts.push(Item::Draft(d));
                            replies.push(reply);
                        }
                        Command::Close(close, reply) => {
                            drafts.push(Item::Close(*close));
                            replies.push(reply);
                        }
                        Command::Rotate(rekey, reply) => {
                            drafts.push(Item::Rotate(*rekey));
                            replies.push(reply);
                        }
                        Command::Checkpoint(reply) => {
                            // Covers everything acknowledged when it runs.
                            checkpoint_waiters.push(reply);
                            checkpoint_wanted = true;
                        }
                        Command::Shutdown(reply) => {
                            shutdown.push(reply);
                            rx.close();
                        }
                    }
                    if drafts.len() < tuning.max_batch {
                        command = rx.try_recv().ok();
                    }
                }
                if drafts.is_empty() {
                    continue;
                }
                if shared.poisoned.load(Ordering::SeqCst) {
                    fail_replies(replies, &shared.error());
                    continue;
                }
                let Some(mut st) = state.take() else {
                    fail_replies(replies, &shared.poison("the writer lost its state".into()));
                    continue;
                };
                let lane = free.pop();
                if lane.is_none() {
                    lanes += 1;
                }
                writing = Some(Writing {
                    job: tokio::task::spawn_blocking(move || {
                        let prepared = st.prepare(drafts);
                        let written = if prepared.bytes.is_empty() {
                            Ok(lane)
                        } else {
                            st.write(lane, &prepared).map(Some)
                        };
                        let range = st.chain.range.clone();
                        (st, prepared, written, range)
                    }),
                    deadline: TokioInstant::now() + tuning.timeout,
                    replies,
                });
            }
        }
    }
    // Answer whoever asked for the shutdown.
    let result = if shared.poisoned.load(Ordering::SeqCst) {
        Err(shared.error())
    } else {
        Ok(())
    };
    for reply in shutdown {
        let _ = reply.send(result.clone());
    }
    for reply in checkpoint_waiters {
        let _ = reply.send(Err(LogError::Closed));
    }
}

fn fail(waiters: Vec<(Reply<Appended>, Appended)>, error: &LogError) {
    for (reply, _) in waiters {
        let _ = reply.send(Err(error.clone()));
    }
}

fn fail_replies(replies: Vec<Reply<Appended>>, error: &LogError) {
    for reply in replies {
        let _ = reply.send(Err(error.clone()));
    }
}

fn fail_all(inflight: &mut VecDeque<Inflight>, error: &LogError) {
    for batch in inflight.drain(..) {
        fail(batch.waiters, error);
    }
}
