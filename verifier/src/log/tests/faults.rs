//! The fault matrix: a failed write, a failed fsync, a stalled disk. Waiters get errors, nothing
//! is acknowledged before its fsync, the writer is poisoned and never retries, nothing hangs.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use claw_policy::keys;

use super::*;

const OK: u8 = 0;
const FAIL_WRITE: u8 = 1;
const FAIL_SYNC: u8 = 2;
const STALL_SYNC: u8 = 3;
const SLOW_SYNC: u8 = 4;

/// A file storage whose sinks fail or stall on command, and which counts synced bytes.
#[derive(Default)]
struct Faulty {
    mode: Arc<AtomicU8>,
    written: Arc<AtomicU64>,
    synced: Arc<AtomicU64>,
    syncs: Arc<AtomicU64>,
    released: Arc<AtomicBool>,
}

struct FaultySink {
    file: std::fs::File,
    mode: Arc<AtomicU8>,
    written: Arc<AtomicU64>,
    synced: Arc<AtomicU64>,
    syncs: Arc<AtomicU64>,
    released: Arc<AtomicBool>,
}

impl Storage for Faulty {
    fn open(&self, path: &Path) -> io::Result<Box<dyn Sink>> {
        Ok(Box::new(FaultySink {
            file: super::super::sink::open_append(path)?,
            mode: self.mode.clone(),
            written: self.written.clone(),
            synced: self.synced.clone(),
            syncs: self.syncs.clone(),
            released: self.released.clone(),
        }))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FileStorage.sync_dir(dir)
    }
}

impl Sink for FaultySink {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.mode.load(Ordering::SeqCst) == FAIL_WRITE {
            return Err(io::Error::other("injected EIO on write"));
        }
        io::Write::write_all(&mut self.file, bytes)?;
        self.written.fetch_add(bytes.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        // Everything written before this sync started is what it makes durable.
        let covered = self.written.load(Ordering::SeqCst);
        match self.mode.load(Ordering::SeqCst) {
            FAIL_SYNC => return Err(io::Error::other("injected fsync failure")),
            STALL_SYNC => {
                // A disk that does not answer until the test is over.
                while !self.released.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            SLOW_SYNC => std::thread::sleep(Duration::from_millis(5)),
            _ => {}
        }
        self.file.sync_data()?;
        self.synced.fetch_max(covered, Ordering::SeqCst);
        self.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn open_faulty(tmp: &Path) -> (LogHandle, Faulty, SigningKey, LogConfig) {
    let key = keys::generate();
    let faulty = Faulty::default();
    let mut cfg = config(tmp, &key);
    cfg.timeout = Duration::from_millis(400);
    cfg.storage = Arc::new(Faulty {
        mode: faulty.mode.clone(),
        written: faulty.written.clone(),
        synced: faulty.synced.clone(),
        syncs: faulty.syncs.clone(),
        released: faulty.released.clone(),
    });
    let (log, _task) = LogWriter::open(cfg.clone()).await.unwrap();
    log.append(call("j")).await.unwrap();
    (log, faulty, key, cfg)
}

async fn burst(log: &LogHandle, n: usize) -> Vec<Result<Appended, LogError>> {
    let mut handles = Vec::new();
    for _ in 0..n {
        let log = log.clone();
        handles.push(tokio::spawn(async move { log.append(call("j")).await }));
    }
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_failed_write_or_fsync_poisons_the_writer_for_good() {
    for mode in [FAIL_WRITE, FAIL_SYNC] {
        let tmp = tempfile::tempdir().unwrap();
        let (log, faulty, _key, _cfg) = open_faulty(tmp.path()).await;
        faulty.mode.store(mode, Ordering::SeqCst);
        let results = burst(&log, 16).await;
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(LogError::Poisoned(_)))),
            "mode {mode}: {results:?}"
        );
        assert!(log.is_poisoned());
        // The disk recovers; the writer does not retry or resume.
        faulty.mode.store(OK, Ordering::SeqCst);
        let syncs = faulty.syncs.load(Ordering::SeqCst);
        assert!(matches!(
            log.append(call("j")).await,
            Err(LogError::Poisoned(_))
        ));
        assert!(matches!(log.checkpoint().await, Err(LogError::Poisoned(_))));
        assert!(matches!(
            log.close_job(JobClose::new("j", Closed::Expired)).await,
            Err(LogError::Poisoned(_))
        ));
        assert_eq!(faulty.syncs.load(Ordering::SeqCst), syncs, "no retry");
        assert!(log.metrics().receipts.load(Ordering::Relaxed) == 1);
    }
}

#[tokio::test]
async fn a_stalled_disk_gives_timeouts_not_a_hang() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, faulty, _key, _cfg) = open_faulty(tmp.path()).await;
    faulty.mode.store(STALL_SYNC, Ordering::SeqCst);
    let results = burst(&log, 8).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(LogError::Timeout(_) | LogError::Poisoned(_)))),
        "{results:?}"
    );
    assert!(
        log.is_poisoned(),
        "a stall poisons: later data could land behind our back"
    );
    assert!(matches!(
        log.append(call("j")).await,
        Err(LogError::Poisoned(_))
    ));
    faulty.released.store(true, Ordering::SeqCst);
}

#[tokio::test]
async fn nothing_is_acknowledged_before_its_fsync() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, faulty, key, cfg) = open_faulty(tmp.path()).await;
    faulty.mode.store(SLOW_SYNC, Ordering::SeqCst);
    let synced = faulty.synced.clone();
    let mut handles = Vec::new();
    for _ in 0..16 {
        let log = log.clone();
        let synced = synced.clone();
        handles.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..10 {
                let a = log.append(call("j")).await.unwrap();
                seen.push((a.seq, synced.load(Ordering::SeqCst)));
            }
            seen
        }));
    }
    let mut seen = Vec::new();
    for h in handles {
        seen.extend(h.await.unwrap());
    }
    log.shutdown().await.unwrap();
    // Byte offset where each receipt's line ends.
    let mut ends = Vec::new();
    let mut end = 0u64;
    for r in read_all(&cfg.dir, &key) {
        end += r.leaf().len() as u64 + 1;
        ends.push(end);
    }
    for (seq, synced_at_ack) in seen {
        assert!(
            synced_at_ack >= ends[seq as usize],
            "seq {seq} acknowledged with {synced_at_ack} bytes synced, its line ends at {}",
            ends[seq as usize]
        );
    }
}

#[tokio::test]
async fn an_unwritable_log_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    // `receipts` is a file, so `receipts/<proxy id>` cannot be created.
    let receipts = tmp.path().join("receipts");
    std::fs::write(&receipts, b"not a directory").unwrap();
    match LogWriter::open(config(&receipts, &key)).await {
        Err(LogError::Io { path, .. }) => assert!(path.contains("receipts"), "{path}"),
        other => panic!("expected an I/O refusal, got {:?}", other.map(|_| ())),
    }
    // A storage that cannot open the segment.
    struct Refuse;
    impl Storage for Refuse {
        fn open(&self, _: &Path) -> io::Result<Box<dyn Sink>> {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only file system",
            ))
        }
        fn sync_dir(&self, _: &Path) -> io::Result<()> {
            Ok(())
        }
    }
    let mut cfg = config(tmp.path(), &key);
    cfg.storage = Arc::new(Refuse);
    assert!(matches!(
        LogWriter::open(cfg).await,
        Err(LogError::Io { .. })
    ));
}
