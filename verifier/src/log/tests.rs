use std::sync::Mutex;

use super::*;
use crate::receipt::Decision;

fn config(dir: &Path) -> LogConfig {
    let mut config = LogConfig::new(dir, "p0test01");
    config.checkpoint_interval = Duration::from_millis(50);
    config.ack_timeout = Duration::from_millis(500);
    config
}

fn call(job: &str) -> Draft {
    let mut d = draft(Kind::Call, job);
    d.decision = Some(Decision {
        allow: true,
        rule: "allowed_operations".into(),
        reason: "ok".into(),
    });
    d
}

#[tokio::test]
async fn appends_are_contiguous_chained_and_checkpointed() {
    let tmp = tempfile::tempdir().unwrap();
    let key = claw_policy::keys::generate();
    let cfg = config(tmp.path());
    let (log, task) = open(cfg.clone(), key.clone()).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..64 {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            log.append(call(if i % 2 == 0 { "a" } else { "b" }))
                .await
                .unwrap()
        }));
    }
    let mut seqs: Vec<u64> = Vec::new();
    for h in handles {
        seqs.push(h.await.unwrap().seq);
    }
    seqs.sort();
    assert_eq!(seqs, (0..64).collect::<Vec<_>>());
    log.checkpoint().await.unwrap();
    let batches = log.metrics.batches.load(Ordering::Relaxed);
    assert!(
        batches < 64,
        "group commit: {batches} fsyncs for 64 receipts"
    );
    drop(log);
    task.await.unwrap();

    let receipts = read_log(&cfg.dir, &key.verifying_key()).unwrap();
    assert_eq!(receipts.len(), 64);
    let a: Vec<u64> = receipts
        .iter()
        .filter(|r| r.job == "a")
        .map(|r| r.job_seq)
        .collect();
    assert_eq!(a, (0..32).collect::<Vec<_>>());
    let note = std::fs::read_to_string(cfg.dir.join("checkpoint")).unwrap();
    let verifier = checkpoint::NoteVerifier {
        name: cfg.origin(),
        key: key.verifying_key(),
    };
    let cp = checkpoint::open_checkpoint(&note, &[verifier]).unwrap();
    assert_eq!(cp.size, 64);
    let leaves: Vec<Hash> = receipts.iter().map(Receipt::leaf_hash).collect();
    assert_eq!(cp.root, crate::merkle::root(&leaves));
}

#[tokio::test]
async fn restart_continues_the_chain_and_cuts_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let key = claw_policy::keys::generate();
    let cfg = config(tmp.path());
    {
        let (log, task) = open(cfg.clone(), key.clone()).await.unwrap();
        for _ in 0..3 {
            log.append(call("j")).await.unwrap();
        }
        drop(log);
        task.await.unwrap();
    }
    // A crash mid-write leaves half a line.
    let segment = segment_name(&cfg.dir, 0);
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    Write::write_all(&mut file, b"{\"v\":1,\"kind\":\"ca").unwrap();
    drop(file);
    let (log, task) = open(cfg.clone(), key.clone()).await.unwrap();
    let next = log.append(call("j")).await.unwrap();
    assert_eq!(next.seq, 4, "3 receipts, 1 recovery, then this");
    drop(log);
    task.await.unwrap();
    let receipts = read_log(&cfg.dir, &key.verifying_key()).unwrap();
    assert_eq!(receipts[3].kind, Kind::Recovery);
    assert_eq!(receipts[3].recovery.as_ref().unwrap().bytes, 17);
    assert_eq!(receipts[4].job_seq, 3);
}

#[tokio::test]
async fn a_damaged_log_refuses_to_start() {
    let tmp = tempfile::tempdir().unwrap();
    let key = claw_policy::keys::generate();
    let cfg = config(tmp.path());
    {
        let (log, task) = open(cfg.clone(), key.clone()).await.unwrap();
        for _ in 0..3 {
            log.append(call("j")).await.unwrap();
        }
        drop(log);
        task.await.unwrap();
    }
    let segment = segment_name(&cfg.dir, 0);
    let text = std::fs::read_to_string(&segment).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // Drop the middle line: the chain breaks.
    std::fs::write(&segment, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
    match open(cfg.clone(), key.clone()).await {
        Err(LogError::Damaged { message, .. }) => {
            assert!(message.contains("chain broken"), "{message}")
        }
        other => panic!("expected damage, got {:?}", other.map(|_| ())),
    }
    // A flipped byte in a middle line: bad signature.
    let flipped = lines[1].replacen("\"job\":\"j\"", "\"job\":\"k\"", 1);
    std::fs::write(
        &segment,
        format!("{}\n{}\n{}\n", lines[0], flipped, lines[2]),
    )
    .unwrap();
    assert!(matches!(
        open(cfg.clone(), key.clone()).await,
        Err(LogError::Damaged { .. })
    ));
    // Another key's log.
    std::fs::write(&segment, text).unwrap();
    assert!(matches!(
        open(cfg, claw_policy::keys::generate()).await,
        Err(LogError::Damaged { .. })
    ));
}

/// A sink that fails or stalls on command.
struct Faulty {
    inner: File,
    mode: Arc<Mutex<&'static str>>,
}

impl Sink for Faulty {
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match *self.mode.lock().unwrap() {
            "write" => Err(std::io::Error::other("injected EIO on write")),
            "stall" => {
                std::thread::sleep(Duration::from_secs(2));
                Write::write_all(&mut self.inner, bytes)
            }
            _ => Write::write_all(&mut self.inner, bytes),
        }
    }

    fn sync(&mut self) -> std::io::Result<()> {
        match *self.mode.lock().unwrap() {
            "sync" => Err(std::io::Error::other("injected fsync failure")),
            _ => self.inner.sync_data(),
        }
    }
}

async fn faulty(mode: &'static str) -> (tempfile::TempDir, LogHandle, Arc<Mutex<&'static str>>) {
    let tmp = tempfile::tempdir().unwrap();
    let switch = Arc::new(Mutex::new("ok"));
    let s = switch.clone();
    let factory: SinkFactory = Box::new(move |path| {
        Ok(Box::new(Faulty {
            inner: OpenOptions::new().create(true).append(true).open(path)?,
            mode: s.clone(),
        }) as Box<dyn Sink>)
    });
    let (log, _task) = open_with(config(tmp.path()), claw_policy::keys::generate(), factory)
        .await
        .unwrap();
    log.append(call("j")).await.unwrap();
    *switch.lock().unwrap() = mode;
    (tmp, log, switch)
}

#[tokio::test]
async fn write_and_sync_failures_poison_the_writer() {
    for mode in ["write", "sync"] {
        let (_tmp, log, switch) = faulty(mode).await;
        assert!(
            matches!(log.append(call("j")).await, Err(LogError::Poisoned(_))),
            "{mode}"
        );
        assert!(log.is_poisoned());
        // Even once the disk recovers, nothing more is acknowledged.
        *switch.lock().unwrap() = "ok";
        assert!(matches!(
            log.append(call("j")).await,
            Err(LogError::Poisoned(_))
        ));
    }
}

#[tokio::test]
async fn a_stalled_disk_times_out_instead_of_hanging() {
    let (_tmp, log, _switch) = faulty("stall").await;
    let started = Instant::now();
    assert_eq!(log.append(call("j")).await, Err(LogError::Timeout));
    assert!(started.elapsed() < Duration::from_secs(2));
}
