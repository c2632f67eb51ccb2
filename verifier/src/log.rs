//! The durable receipt log: one writer task with group commit, and a verifying reader.
//!
//! On disk (`receipts/<proxy id>/`): `seg-<first seq, 20 digits>.jsonl` segments holding one
//! leaf (JCS of a signed receipt) per line, `checkpoint` (the latest signed C2SP note) and
//! `checkpoints` (every note, one JSON line each, append-only).
//!
//! The writer drains its queue, assigns `seq`/`prev`/`job_seq`/`job_prev`, signs, makes one
//! write and one `fdatasync` for the whole batch, and only then answers every waiter. After any
//! write or sync error it is poisoned: that batch and every later append fail, nothing is
//! retried (the page cache may have dropped the data), and [`LogHandle::is_poisoned`] says so.
//! Every wait is bounded, so a stalled disk yields an error, never a hang. At start the existing
//! log is verified; a torn last line (never acknowledged) is cut and a `recovery` receipt
//! records it; any other damage refuses the start.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::{self, Checkpoint};
use crate::merkle::{CompactRange, Hash};
use crate::receipt::{GENESIS, Kind, Receipt, Recovery, link};

/// What the proxy hands the writer: a receipt without the fields the log assigns
/// (`v`, `id`, `log`, `seq`, `prev`, `ts`, `proxy`, `job_seq`, `job_prev`, `sig`).
pub type Draft = Receipt;

/// The log's settings.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// `receipts/<proxy id>`.
    pub dir: PathBuf,
    /// The proxy id (origin `clawproxy/<id>`).
    pub proxy_id: String,
    /// Roll to a new segment past this size.
    pub segment_bytes: u64,
    /// Checkpoint at least this often while receipts arrive.
    pub checkpoint_interval: Duration,
    /// Most receipts per batch.
    pub max_batch: usize,
    /// Longest an append waits for its acknowledgement.
    pub ack_timeout: Duration,
}

impl LogConfig {
    /// Defaults for a proxy id under a receipts dir.
    pub fn new(receipts: &Path, proxy_id: &str) -> Self {
        Self {
            dir: receipts.join(proxy_id),
            proxy_id: proxy_id.to_owned(),
            segment_bytes: 64 * 1024 * 1024,
            checkpoint_interval: Duration::from_secs(1),
            max_batch: 1024,
            ack_timeout: Duration::from_secs(10),
        }
    }

    /// `clawproxy/<proxy id>`.
    pub fn origin(&self) -> String {
        format!("clawproxy/{}", self.proxy_id)
    }
}

/// Why the log could not open or append.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A write or sync failed; the writer is poisoned until restart.
    #[error("receipt log poisoned after an I/O error: {0}")]
    Poisoned(String),
    /// No acknowledgement in time.
    #[error("receipt log did not acknowledge in time")]
    Timeout,
    /// The writer has stopped.
    #[error("receipt log is closed")]
    Closed,
    /// The existing log is damaged.
    #[error("{file}: {message} (inspect with: clawverify query --json)")]
    Damaged {
        /// The segment.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// The directory cannot be used.
    #[error("{0}")]
    Io(String),
}

/// Where an appended receipt landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Its id.
    pub id: String,
    /// Its leaf index.
    pub seq: u64,
    /// Its leaf hash.
    pub leaf: Hash,
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct LogMetrics {
    /// Receipts written.
    pub receipts: AtomicU64,
    /// Batches (= fdatasyncs).
    pub batches: AtomicU64,
    /// Total fdatasync time, microseconds.
    pub sync_micros: AtomicU64,
    /// Largest batch seen.
    pub max_batch: AtomicU64,
}

enum Command {
    Append(Box<Draft>, oneshot::Sender<Result<Appended, LogError>>),
    Checkpoint(oneshot::Sender<Result<(), LogError>>),
}

/// A cheap, cloneable handle on the writer.
#[derive(Clone)]
pub struct LogHandle {
    tx: mpsc::Sender<Command>,
    poisoned: Arc<AtomicBool>,
    /// Counters for metrics.
    pub metrics: Arc<LogMetrics>,
    ack_timeout: Duration,
    origin: String,
}

impl LogHandle {
    /// Appends a receipt; resolves once it is signed and fsync'd.
    pub async fn append(&self, draft: Draft) -> Result<Appended, LogError> {
        if self.is_poisoned() {
            return Err(LogError::Poisoned("earlier failure".into()));
        }
        let (tx, rx) = oneshot::channel();
        let sent = tokio::time::timeout(
            self.ack_timeout,
            self.tx.send(Command::Append(Box::new(draft), tx)),
        )
        .await;
        match sent {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(LogError::Closed),
            Err(_) => return Err(LogError::Timeout),
        }
        match tokio::time::timeout(self.ack_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(LogError::Closed),
            Err(_) => Err(LogError::Timeout),
        }
    }

    /// Signs a checkpoint now (e.g. at `job_close`).
    pub async fn checkpoint(&self) -> Result<(), LogError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Checkpoint(tx))
            .await
            .map_err(|_| LogError::Closed)?;
        tokio::time::timeout(self.ack_timeout, rx)
            .await
            .map_err(|_| LogError::Timeout)?
            .map_err(|_| LogError::Closed)?
    }

    /// Whether a write or sync failed.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// The log's origin.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// Where bytes go: a file, or a fault-injecting stand-in in tests.
pub trait Sink: Send + 'static {
    /// Appends all bytes.
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()>;
    /// `fdatasync`.
    fn sync(&mut self) -> std::io::Result<()>;
}

impl Sink for File {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        Write::write_all(self, bytes)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }
}

/// Opens a sink for a segment path.
pub type SinkFactory = Box<dyn Fn(&Path) -> std::io::Result<Box<dyn Sink>> + Send>;

fn file_sink(path: &Path) -> std::io::Result<Box<dyn Sink>> {
    Ok(Box::new(
        OpenOptions::new().create(true).append(true).open(path)?,
    ))
}

struct JobState {
    next: u64,
    last: String,
}

struct Writer {
    config: LogConfig,
    key: SigningKey,
    kid: String,
    origin: String,
    range: CompactRange,
    prev: String,
    jobs: HashMap<String, JobState>,
    sink: Box<dyn Sink>,
    segment_size: u64,
    open_sink: SinkFactory,
    last_ts: String,
    last_checkpoint_size: u64,
    id_counter: u64,
}

/// Opens (verifying and recovering) the log and starts its writer task.
pub async fn open(
    config: LogConfig,
    key: SigningKey,
) -> Result<(LogHandle, tokio::task::JoinHandle<()>), LogError> {
    open_with(config, key, Box::new(file_sink)).await
}

/// [`open`] with a custom sink (fault injection in tests).
pub async fn open_with(
    config: LogConfig,
    key: SigningKey,
    open_sink: SinkFactory,
) -> Result<(LogHandle, tokio::task::JoinHandle<()>), LogError> {
    let io = |e: std::io::Error| LogError::Io(format!("{}: {e}", config.dir.display()));
    fs::create_dir_all(&config.dir).map_err(io)?;
    let scanned = scan(&config.dir, &key.verifying_key(), true)?;
    let origin = config.origin();
    let (segment_path, segment_size) = match scanned.segments.last() {
        Some(path) => (path.clone(), fs::metadata(path).map_err(io)?.len()),
        None => (segment_name(&config.dir, 0), 0),
    };
    let new_segment = !segment_path.exists();
    let sink = open_sink(&segment_path).map_err(io)?;
    if new_segment {
        File::open(&config.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    let mut writer = Writer {
        kid: claw_policy::keys::kid(&key.verifying_key()),
        key,
        origin: origin.clone(),
        range: scanned.range,
        prev: scanned.prev,
        jobs: scanned.jobs,
        sink,
        segment_size,
        open_sink,
        last_ts: scanned.last_ts,
        last_checkpoint_size: u64::MAX,
        id_counter: 0,
        config: config.clone(),
    };
    let poisoned = Arc::new(AtomicBool::new(false));
    let metrics = Arc::new(LogMetrics::default());
    if let Some(torn) = scanned.torn {
        let mut recovery = draft(Kind::Recovery, "(log)");
        recovery.recovery = Some(torn);
        writer
            .commit(vec![recovery], &metrics)
            .map_err(LogError::Poisoned)?;
        writer.write_checkpoint().map_err(LogError::Io)?;
    }
    let (tx, rx) = mpsc::channel(4096);
    let task = tokio::spawn(run(writer, rx, poisoned.clone(), metrics.clone()));
    Ok((
        LogHandle {
            tx,
            poisoned,
            metrics,
            ack_timeout: config.ack_timeout,
            origin,
        },
        task,
    ))
}

/// A blank draft of `kind` for `job` (the proxy fills in the rest).
pub fn draft(kind: Kind, job: &str) -> Draft {
    Receipt {
        v: 1,
        kind,
        id: String::new(),
        log: String::new(),
        seq: 0,
        prev: String::new(),
        ts: String::new(),
        proxy: String::new(),
        job: job.to_owned(),
        job_seq: 0,
        job_prev: String::new(),
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
        count: None,
        recovery: None,
        sig: String::new(),
    }
}

async fn run(
    mut writer: Writer,
    mut rx: mpsc::Receiver<Command>,
    poisoned: Arc<AtomicBool>,
    metrics: Arc<LogMetrics>,
) {
    let interval = writer.config.checkpoint_interval;
    let max_batch = writer.config.max_batch;
    let mut last_checkpoint = Instant::now();
    loop {
        let first = match tokio::time::timeout(interval, rx.recv()).await {
            Ok(Some(command)) => Some(command),
            Ok(None) => break,
            Err(_) => None,
        };
        let mut appends = Vec::new();
        let mut checkpoint_waiters = Vec::new();
        if let Some(command) = first {
            sort(command, &mut appends, &mut checkpoint_waiters);
            while appends.len() < max_batch {
                match rx.try_recv() {
                    Ok(command) => sort(command, &mut appends, &mut checkpoint_waiters),
                    Err(_) => break,
                }
            }
        }
        if !appends.is_empty() {
            if poisoned.load(Ordering::SeqCst) {
                for (_, tx) in appends {
                    let _ = tx.send(Err(LogError::Poisoned("earlier failure".into())));
                }
            } else {
                let (drafts, waiters): (Vec<Draft>, Vec<_>) =
                    appends.into_iter().map(|(d, tx)| (*d, tx)).unzip();
                let counters = metrics.clone();
                let (back, result) = tokio::task::spawn_blocking(move || {
                    let result = writer.commit(drafts, &counters);
                    (writer, result)
                })
                .await
                .expect("the log writer does not panic");
                writer = back;
                match result {
                    Ok(appended) => {
                        for (tx, a) in waiters.into_iter().zip(appended) {
                            let _ = tx.send(Ok(a));
                        }
                    }
                    Err(error) => {
                        poisoned.store(true, Ordering::SeqCst);
                        tracing::error!(%error, "receipt log poisoned");
                        for tx in waiters {
                            let _ = tx.send(Err(LogError::Poisoned(error.clone())));
                        }
                    }
                }
            }
        }
        let due = last_checkpoint.elapsed() >= interval
            && writer.range.size() != writer.last_checkpoint_size;
        if (due || !checkpoint_waiters.is_empty()) && !poisoned.load(Ordering::SeqCst) {
            let result = writer.write_checkpoint().map_err(LogError::Io);
            last_checkpoint = Instant::now();
            for tx in checkpoint_waiters {
                let _ = tx.send(result.clone());
            }
        } else {
            for tx in checkpoint_waiters {
                let _ = tx.send(Err(LogError::Poisoned(
                    "no checkpoint after a failure".into(),
                )));
            }
        }
    }
    // Shutdown: every handle dropped; sign a final checkpoint.
    if !poisoned.load(Ordering::SeqCst) && writer.range.size() != writer.last_checkpoint_size {
        let _ = writer.write_checkpoint();
    }
}

type AppendWaiter = (Box<Draft>, oneshot::Sender<Result<Appended, LogError>>);

fn sort(
    command: Command,
    appends: &mut Vec<AppendWaiter>,
    checkpoints: &mut Vec<oneshot::Sender<Result<(), LogError>>>,
) {
    match command {
        Command::Append(d, tx) => appends.push((d, tx)),
        Command::Checkpoint(tx) => checkpoints.push(tx),
    }
}

impl Writer {
    /// Assigns, signs, writes and syncs one batch.
    fn commit(
        &mut self,
        drafts: Vec<Draft>,
        metrics: &Arc<LogMetrics>,
    ) -> Result<Vec<Appended>, String> {
        let mut bytes = Vec::new();
        let mut out = Vec::with_capacity(drafts.len());
        let saved = (self.range.clone(), self.prev.clone(), self.last_ts.clone());
        let mut job_updates: Vec<(String, JobState)> = Vec::new();
        for mut r in drafts {
            r.v = 1;
            r.id = self.next_id();
            r.log = self.origin.clone();
            r.seq = self.range.size();
            r.prev = self.prev.clone();
            r.ts = self.timestamp();
            r.proxy = self.kid.clone();
            let job = job_updates
                .iter()
                .rev()
                .find(|(j, _)| *j == r.job)
                .map(|(_, s)| (s.next, s.last.clone()))
                .or_else(|| self.jobs.get(&r.job).map(|s| (s.next, s.last.clone())))
                .unwrap_or((0, GENESIS.to_owned()));
            r.job_seq = job.0;
            r.job_prev = job.1;
            if r.kind == Kind::JobClose {
                r.count = Some(r.job_seq);
            }
            r.sign(&self.key);
            let leaf = r.leaf();
            let hash = crate::merkle::leaf_hash(&leaf);
            self.range.append(hash);
            self.prev = link(&hash);
            job_updates.push((
                r.job.clone(),
                JobState {
                    next: r.job_seq + 1,
                    last: link(&hash),
                },
            ));
            bytes.extend_from_slice(&leaf);
            bytes.push(b'\n');
            out.push(Appended {
                id: r.id.clone(),
                seq: r.seq,
                leaf: hash,
            });
        }
        if self.segment_size > 0
            && self.segment_size + bytes.len() as u64 > self.config.segment_bytes
            && let Err(e) = self.roll(out[0].seq)
        {
            (self.range, self.prev, self.last_ts) = saved;
            return Err(e);
        }
        let started = Instant::now();
        let written = self.sink.append(&bytes).and_then(|()| self.sink.sync());
        if let Err(e) = written {
            (self.range, self.prev, self.last_ts) = saved;
            return Err(e.to_string());
        }
        metrics
            .sync_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        metrics.batches.fetch_add(1, Ordering::Relaxed);
        metrics
            .receipts
            .fetch_add(out.len() as u64, Ordering::Relaxed);
        metrics
            .max_batch
            .fetch_max(out.len() as u64, Ordering::Relaxed);
        self.segment_size += bytes.len() as u64;
        for (job, state) in job_updates {
            self.jobs.insert(job, state);
        }
        Ok(out)
    }

    fn roll(&mut self, first_seq: u64) -> Result<(), String> {
        let path = segment_name(&self.config.dir, first_seq);
        self.sink = (self.open_sink)(&path).map_err(|e| e.to_string())?;
        File::open(&self.config.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| e.to_string())?;
        self.segment_size = 0;
        Ok(())
    }

    fn write_checkpoint(&mut self) -> Result<(), String> {
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size: self.range.size(),
            root: self.range.root(),
        };
        let note = checkpoint::sign_checkpoint(&checkpoint, &self.key);
        claw_policy::registry::write_atomic(&self.config.dir.join("checkpoint"), note.as_bytes())
            .map_err(|e| e.to_string())?;
        let line = serde_json::json!({ "size": checkpoint.size, "note": note }).to_string();
        let mut history = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.config.dir.join("checkpoints"))
            .map_err(|e| e.to_string())?;
        history
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| history.sync_data())
            .map_err(|e| e.to_string())?;
        self.last_checkpoint_size = checkpoint.size;
        Ok(())
    }

    /// A sortable id: 48-bit milliseconds, then a per-process counter and random bits.
    fn next_id(&mut self) -> String {
        self.id_counter += 1;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut random = [0u8; 6];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut random);
        format!(
            "{millis:012x}{:08x}{}",
            self.id_counter as u32,
            crate::receipt::hex(&random)
        )
    }

    /// Now, never earlier than the last receipt (receipt times are non-decreasing per log).
    fn timestamp(&mut self) -> String {
        let now = time::OffsetDateTime::now_utc();
        let ts = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.millisecond()
        );
        if ts < self.last_ts {
            return self.last_ts.clone();
        }
        self.last_ts = ts.clone();
        ts
    }
}

fn segment_name(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("seg-{first_seq:020}.jsonl"))
}

/// What a scan of the log found.
pub struct Scanned {
    /// Segment files in order.
    pub segments: Vec<PathBuf>,
    range: CompactRange,
    prev: String,
    jobs: HashMap<String, JobState>,
    last_ts: String,
    torn: Option<Recovery>,
}

/// Verifies every segment; with `repair`, cuts a torn last line and reports it.
fn scan(dir: &Path, key: &VerifyingKey, repair: bool) -> Result<Scanned, LogError> {
    let segments = segments(dir).map_err(|e| LogError::Io(e.to_string()))?;
    let mut out = Scanned {
        segments: segments.clone(),
        range: CompactRange::new(),
        prev: GENESIS.to_owned(),
        jobs: HashMap::new(),
        last_ts: String::new(),
        torn: None,
    };
    for (i, path) in segments.iter().enumerate() {
        let last_segment = i + 1 == segments.len();
        let bytes = fs::read(path).map_err(|e| LogError::Io(e.to_string()))?;
        let name = path.display().to_string();
        let damaged = |message: String| LogError::Damaged {
            file: name.clone(),
            message,
        };
        let mut offset = 0usize;
        while offset < bytes.len() {
            let end = bytes[offset..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|p| offset + p);
            let line = &bytes[offset..end.unwrap_or(bytes.len())];
            let parsed = Receipt::from_leaf(line)
                .ok()
                .filter(|r| r.verify(key).is_ok());
            match (parsed, end) {
                (Some(r), Some(end)) => {
                    if r.seq != out.range.size() || r.prev != out.prev {
                        return Err(damaged(format!(
                            "chain broken at seq {} (expected seq {})",
                            r.seq,
                            out.range.size()
                        )));
                    }
                    let hash = r.leaf_hash();
                    out.range.append(hash);
                    out.prev = link(&hash);
                    out.last_ts = r.ts.clone();
                    out.jobs.insert(
                        r.job.clone(),
                        JobState {
                            next: r.job_seq + 1,
                            last: link(&hash),
                        },
                    );
                    offset = end + 1;
                }
                // The last line of the last segment, unterminated or unreadable: never acknowledged.
                (_, end) if last_segment && end.is_none_or(|e| e + 1 == bytes.len()) && repair => {
                    let cut = &bytes[offset..];
                    out.torn = Some(Recovery {
                        segment: path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        bytes: cut.len() as u64,
                        hash: format!("sha256:{}", crate::receipt::hex(&Sha256::digest(cut))),
                    });
                    let file = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| LogError::Io(e.to_string()))?;
                    file.set_len(offset as u64)
                        .and_then(|()| file.sync_all())
                        .map_err(|e| LogError::Io(e.to_string()))?;
                    break;
                }
                _ => {
                    return Err(damaged(format!(
                        "unreadable or badly signed receipt at seq {}",
                        out.range.size()
                    )));
                }
            }
        }
    }
    Ok(out)
}

fn segments(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("seg-") && n.ends_with(".jsonl"))
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    out.sort();
    Ok(out)
}

/// Reads and verifies a whole log: every receipt in order, checked against `key`.
pub fn read_log(dir: &Path, key: &VerifyingKey) -> Result<Vec<Receipt>, LogError> {
    scan(dir, key, false)?;
    let mut receipts = Vec::new();
    for path in segments(dir).map_err(|e| LogError::Io(e.to_string()))? {
        let file = File::open(&path).map_err(|e| LogError::Io(e.to_string()))?;
        for line in BufReader::new(file).lines() {
            let line = line.map_err(|e| LogError::Io(e.to_string()))?;
            receipts.push(
                Receipt::from_leaf(line.as_bytes()).map_err(|e| LogError::Damaged {
                    file: path.display().to_string(),
                    message: e.to_string(),
                })?,
            );
        }
    }
    Ok(receipts)
}

/// Every checkpoint note the log signed, oldest first.
pub fn read_checkpoints(dir: &Path) -> Result<Vec<(u64, String)>, LogError> {
    let text = match fs::read_to_string(dir.join("checkpoints")) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LogError::Io(e.to_string())),
    };
    text.lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| LogError::Io(e.to_string()))?;
            Ok((
                v["size"].as_u64().unwrap_or(0),
                v["note"].as_str().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests;
