//! Log tests: round trips, recovery, tampering, fault injection, concurrency, crashes.

mod crash;
mod faults;
mod rotate;
mod tail;

use std::path::Path;
use std::time::Duration;

use claw_policy::keys::{self, Purpose};
use claw_policy::trust::TrustStore;
use ed25519_dalek::SigningKey;

use super::*;
use crate::receipt::{ANONYMOUS_JOB, Closed, Cst, Decision, Kind, Op, Req};

pub(crate) const PROXY_ID: &str = "p0test01";

pub(crate) fn config(receipts: &Path, key: &SigningKey) -> LogConfig {
    let mut config = LogConfig::new(receipts, PROXY_ID, key.clone(), AuditKey::new([5; 32]));
    config.checkpoint_interval = Duration::from_millis(50);
    config.timeout = Duration::from_millis(1500);
    config
}

pub(crate) fn trust(key: &SigningKey) -> TrustStore {
    let mut trust = TrustStore::default();
    trust.add(Purpose::Proxy, PROXY_ID, key.verifying_key());
    trust
}

pub(crate) fn call(job: &str) -> Draft {
    let mut d = Draft::new(Kind::Call, job);
    d.client = Some("127.0.0.1:40000".into());
    d.cst = Some(Cst {
        jti: "jti".into(),
        scope: "blake3:00".into(),
    });
    d.wpc = Some(format!("blake3:{}", "cd".repeat(32)));
    d.req = Some(Req {
        method: "GET".into(),
        scheme: "https".into(),
        host: "connect.1password.com".into(),
        port: 443,
        path: "/v1/vaults/V/items/I".into(),
        ..Req::default()
    });
    d.op = Some(Op {
        integration: "onepassword".into(),
        name: "read_item".into(),
        vault: Some("V".into()),
        item: Some("I".into()),
        ..Op::default()
    });
    d.decision = Some(Decision {
        allow: true,
        rule: "allowed_operations".into(),
        reason: "read_item is allowed".into(),
        ..Decision::default()
    });
    d.duration_ms = Some(3);
    d
}

pub(super) fn read_all(dir: &Path, key: &SigningKey) -> Vec<crate::receipt::CheckedReceipt> {
    LogReader::new(dir, trust(key))
        .receipts()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[tokio::test]
async fn appends_are_contiguous_chained_signed_and_checkpointed() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let cfg = config(tmp.path(), &key);
    let (log, task) = LogWriter::open(cfg.clone()).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..64 {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            log.append(call(if i % 2 == 0 { "a" } else { "b" }))
                .await
                .unwrap()
        }));
    }
    let mut appended = Vec::new();
    for h in handles {
        appended.push(h.await.unwrap());
    }
    let mut seqs: Vec<u64> = appended.iter().map(|a| a.seq).collect();
    seqs.sort();
    assert_eq!(seqs, (0..64).collect::<Vec<_>>());
    let cp = log.checkpoint().await.unwrap();
    assert_eq!(cp.size, 64);
    log.shutdown().await.unwrap();
    task.await.unwrap();

    let receipts = read_all(&cfg.dir, &key);
    assert_eq!(receipts.len(), 64);
    for a in &appended {
        let r = &receipts[a.seq as usize];
        assert_eq!((r.id.as_str(), r.leaf_hash()), (a.id.as_str(), a.leaf));
    }
    let a: Vec<u64> = receipts
        .iter()
        .filter(|r| r.job == "a")
        .map(|r| r.job_seq)
        .collect();
    assert_eq!(a, (0..32).collect::<Vec<_>>());
    let mut ids: Vec<&str> = receipts.iter().map(|r| r.id.as_str()).collect();
    let in_order = ids.clone();
    ids.sort();
    assert_eq!(ids, in_order, "ids sort like seq");
    let reader = LogReader::new(&cfg.dir, trust(&key));
    let (latest, _) = reader.latest_checkpoint().unwrap().unwrap();
    assert_eq!(latest.size, 64);
    let leaves: Vec<crate::merkle::Hash> = receipts.iter().map(|r| r.leaf_hash()).collect();
    assert_eq!(latest.root, crate::merkle::root(&leaves));
    let history = reader.checkpoints().unwrap();
    assert_eq!(history.last().map(|c| c.size), Some(64));
    let only_a: Vec<u64> = reader.job("a").unwrap().map(|r| r.unwrap().seq).collect();
    assert_eq!(only_a.len(), 32);
    let summary = reader.summary().unwrap();
    assert_eq!(summary.jobs["b"].seqs.len(), 32);
    assert_eq!(summary.range.root(), latest.root);
}

#[tokio::test]
async fn instances_sharing_a_key_keep_logs_of_their_own_and_close_with_every_log() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let a = config(tmp.path(), &key).for_instance("a");
    let b = config(tmp.path(), &key).for_instance("proxy-b");
    let (log_a, _task) = LogWriter::open(a.clone()).await.unwrap();
    let (log_b, _task) = LogWriter::open(b.clone()).await.unwrap();
    assert_eq!(log_b.origin(), format!("clawproxy/{PROXY_ID}/proxy-b"));
    log_a.append(call("j1")).await.unwrap();
    log_b.append(call("j1")).await.unwrap();
    let mut close = JobClose::new("j1", Closed::Revoked);
    close.logs = Some(vec![log_a.origin().to_owned()]);
    log_b.close_job(close).await.unwrap();
    log_a.shutdown().await.unwrap();
    log_b.shutdown().await.unwrap();

    // Each log starts its own chain, under its own origin, signed by the shared key.
    let in_b = read_all(&b.dir, &key);
    assert_eq!(in_b[0].receipt().seq, 0);
    assert_eq!(in_b[0].receipt().log, log_b.origin());
    // The close lists every log that served the job, its own included, sorted.
    let logs = in_b[1].receipt().logs.clone().unwrap();
    assert_eq!(logs, [log_a.origin(), log_b.origin()]);
    let reader = LogReader::new(&b.dir, trust(&key));
    let (cp, _) = reader.latest_checkpoint().unwrap().unwrap();
    assert_eq!((cp.origin.as_str(), cp.size), (log_b.origin(), 2));
    assert_eq!(reader.checkpoints().unwrap().last().unwrap().size, 2);
    // One log's history may not hold another's checkpoint, though the same key signed both.
    let foreign = std::fs::read_to_string(a.dir.join("checkpoints")).unwrap();
    let mut history = std::fs::OpenOptions::new()
        .append(true)
        .open(b.dir.join("checkpoints"))
        .unwrap();
    std::io::Write::write_all(&mut history, foreign.lines().last().unwrap().as_bytes()).unwrap();
    std::io::Write::write_all(&mut history, b"\n").unwrap();
    let err = reader.checkpoints().unwrap_err().to_string();
    assert!(err.contains("among another log's"), "{err}");

    // Found beside a log of the proxy's own; a directory that is no instance name is not a log.
    std::fs::create_dir_all(tmp.path().join(PROXY_ID).join("Not_An_Instance")).unwrap();
    let found: Vec<(String, String)> = log_dirs(tmp.path())
        .unwrap()
        .into_iter()
        .map(|l| (l.name, l.origin))
        .collect();
    let named = |name: &str| (name.to_owned(), format!("clawproxy/{name}"));
    assert_eq!(
        found,
        [
            named(PROXY_ID),
            named(&format!("{PROXY_ID}/a")),
            named(&format!("{PROXY_ID}/proxy-b")),
        ]
    );
    assert_eq!(log_dirs(&tmp.path().join("absent")).unwrap(), []);
}

#[tokio::test]
async fn close_job_writes_count_and_checkpoint_and_refuses_later_receipts() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let cfg = config(tmp.path(), &key);
    let (log, _task) = LogWriter::open(cfg.clone()).await.unwrap();
    for _ in 0..3 {
        log.append(call("j1")).await.unwrap();
    }
    log.append(call("j2")).await.unwrap();
    let mut close = JobClose::new("j1", Closed::Revoked);
    close.cst = call("j1").cst;
    close.wpc = call("j1").wpc;
    let closed = log.close_job(close).await.unwrap();
    assert_eq!((closed.seq, closed.job_seq), (4, 3));
    assert_eq!(log.checkpoint().await.unwrap().size, 5);
    assert_eq!(
        log.append(call("j1")).await,
        Err(LogError::JobClosed("j1".into()))
    );
    assert!(matches!(
        log.close_job(JobClose::new("j1", Closed::Expired)).await,
        Err(LogError::JobClosed(_))
    ));
    // Drafts the log writes itself, or that break the kind rules, are refused without harm.
    assert!(matches!(
        log.append(Draft::new(Kind::JobClose, "j2")).await,
        Err(LogError::Draft(_))
    ));
    let mut anonymous = call(ANONYMOUS_JOB);
    assert!(matches!(
        log.append(anonymous.clone()).await,
        Err(LogError::Draft(_))
    ));
    anonymous.cst = None;
    anonymous.wpc = None;
    log.append(anonymous).await.unwrap();
    assert!(!log.is_poisoned());
    log.shutdown().await.unwrap();
    let receipts = read_all(&cfg.dir, &key);
    let close = &receipts[4];
    assert_eq!(close.kind, Kind::JobClose);
    assert_eq!(close.count, Some(3));
    assert_eq!(
        (close.closed, close.cst.clone()),
        (Some(Closed::Revoked), call("j1").cst)
    );
    assert_eq!(
        close.job_prev,
        crate::receipt::link(&receipts[2].leaf_hash())
    );
    // The state survives a restart: j1 stays closed.
    let (log, _task) = LogWriter::open(cfg).await.unwrap();
    assert!(matches!(
        log.append(call("j1")).await,
        Err(LogError::JobClosed(_))
    ));
    assert_eq!(log.append(call("j2")).await.unwrap().job_seq, 1);
}

#[tokio::test]
async fn restart_cuts_a_checkpoint_record_cut_short() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let cfg = config(tmp.path(), &key);
    {
        let (log, task) = LogWriter::open(cfg.clone()).await.unwrap();
        log.append(call("j")).await.unwrap();
        log.shutdown().await.unwrap();
        task.await.unwrap();
    }
    // A history append cut short (a crash, or a full disk, mid-write).
    let history = cfg.dir.join("checkpoints");
    let whole = std::fs::read(&history).unwrap();
    assert!(whole.ends_with(b"\n"));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&history)
        .unwrap();
    std::io::Write::write_all(&mut file, &whole[..whole.len() / 2]).unwrap();
    drop(file);
    assert!(LogReader::new(&cfg.dir, trust(&key)).checkpoints().is_err());

    // The restart cuts it, and the next record starts on a line of its own.
    let (log, task) = LogWriter::open(cfg.clone()).await.unwrap();
    assert_eq!(std::fs::read(&history).unwrap(), whole);
    log.append(call("j")).await.unwrap();
    assert_eq!(log.checkpoint().await.unwrap().size, 2);
    log.shutdown().await.unwrap();
    task.await.unwrap();
    let sizes: Vec<u64> = LogReader::new(&cfg.dir, trust(&key))
        .checkpoints()
        .unwrap()
        .iter()
        .map(|c| c.size)
        .collect();
    assert_eq!(sizes, [1, 2]);
    assert_eq!(
        read_all(&cfg.dir, &key).len(),
        2,
        "no recovery receipt: no leaf was cut"
    );
}

#[tokio::test]
async fn restart_continues_the_chain_and_cuts_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let cfg = config(tmp.path(), &key);
    {
        let (log, task) = LogWriter::open(cfg.clone()).await.unwrap();
        for _ in 0..3 {
            log.append(call("j")).await.unwrap();
        }
        log.shutdown().await.unwrap();
        task.await.unwrap();
    }
    let segment = segment_path(&cfg.dir, 0);
    let clean_len = std::fs::metadata(&segment).unwrap().len();
    let torn = b"{\"v\":1,\"kind\":\"ca";
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    std::io::Write::write_all(&mut file, torn).unwrap();
    drop(file);
    // A reader reports the incomplete line; it does not guess.
    let reader = LogReader::new(&cfg.dir, trust(&key));
    let last = reader.receipts().unwrap().last().unwrap();
    assert!(
        matches!(last, Err(ReadError::Torn { bytes: 17, .. })),
        "{last:?}"
    );

    let (log, task) = LogWriter::open(cfg.clone()).await.unwrap();
    let next = log.append(call("j")).await.unwrap();
    assert_eq!(
        (next.seq, next.job_seq),
        (4, 3),
        "3 receipts, 1 recovery, then this"
    );
    log.shutdown().await.unwrap();
    task.await.unwrap();
    let receipts = read_all(&cfg.dir, &key);
    assert_eq!(receipts[3].kind, Kind::Recovery);
    let recovery = receipts[3].recovery.clone().unwrap();
    assert_eq!((recovery.offset, recovery.bytes), (clean_len, 17));
    use sha2::Digest;
    assert_eq!(
        recovery.hash,
        format!(
            "sha256:{}",
            crate::receipt::hex(&sha2::Sha256::digest(torn))
        )
    );
}

#[tokio::test]
async fn a_zero_filled_tail_is_cut_like_a_torn_line() {
    // After a power loss the file size can grow before the data lands: NUL bytes at the end.
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let cfg = config(tmp.path(), &key);
    let (log, task) = LogWriter::open(cfg.clone()).await.unwrap();
    log.append(call("j")).await.unwrap();
    log.shutdown().await.unwrap();
    task.await.unwrap();
    let segment = segment_path(&cfg.dir, 0);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    std::io::Write::write_all(&mut file, &[0u8; 300]).unwrap();
    std::io::Write::write_all(&mut file, b"\n\0\0").unwrap();
    drop(file);
    let (log, task) = LogWriter::open(cfg.clone()).await.unwrap();
    assert_eq!(log.append(call("j")).await.unwrap().seq, 2);
    log.shutdown().await.unwrap();
    task.await.unwrap();
    let receipts = read_all(&cfg.dir, &key);
    assert_eq!(receipts[1].recovery.as_ref().map(|r| r.bytes), Some(303));
    // NUL bytes followed by a valid-looking line are not a torn tail: refused.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap();
    let first = std::fs::read_to_string(&segment).unwrap();
    std::io::Write::write_all(&mut file, b"\0\0\n").unwrap();
    std::io::Write::write_all(&mut file, first.lines().next().unwrap().as_bytes()).unwrap();
    std::io::Write::write_all(&mut file, b"\n").unwrap();
    drop(file);
    assert!(matches!(
        LogWriter::open(cfg).await,
        Err(LogError::Damaged { .. })
    ));
}

#[tokio::test]
async fn segments_roll_at_the_size_limit_and_read_back_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let mut cfg = config(tmp.path(), &key);
    cfg.segment_bytes = 2000;
    let (log, task) = LogWriter::open(cfg.clone()).await.unwrap();
    for i in 0..20 {
        log.append(call(&format!("j{}", i % 3))).await.unwrap();
    }
    log.shutdown().await.unwrap();
    task.await.unwrap();
    let segments = super::segment::list_segments(&cfg.dir).unwrap();
    assert!(segments.len() >= 5, "{segments:?}");
    assert_eq!(segments[0].0, 0);
    assert_eq!(read_all(&cfg.dir, &key).len(), 20);
    let (log, _task) = LogWriter::open(cfg.clone()).await.unwrap();
    assert_eq!(log.append(call("j0")).await.unwrap().seq, 20);
}

/// Writes `n` receipts and returns the segment's lines.
async fn written(cfg: &LogConfig, n: usize) -> Vec<String> {
    let (log, task) = LogWriter::open(cfg.clone()).await.unwrap();
    for i in 0..n {
        log.append(call(if i % 2 == 0 { "a" } else { "b" }))
            .await
            .unwrap();
    }
    log.shutdown().await.unwrap();
    task.await.unwrap();
    std::fs::read_to_string(segment_path(&cfg.dir, 0))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn tampering_is_named_by_the_reader_and_refuses_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let cfg = config(tmp.path(), &key);
    let lines = written(&cfg, 5).await;
    let segment = segment_path(&cfg.dir, 0);
    let original = format!("{}\n", lines.join("\n"));
    let with = |lines: Vec<String>| format!("{}\n", lines.join("\n"));
    let flipped = {
        let mut l = lines.clone();
        l[1] = l[1].replacen("read_item", "read_itex", 1);
        l
    };
    let dropped = {
        let mut l = lines.clone();
        l.remove(2);
        l
    };
    let reordered = {
        let mut l = lines.clone();
        l.swap(1, 2);
        l
    };
    let duplicated = {
        let mut l = lines.clone();
        l.insert(2, l[1].clone());
        l
    };
    type Case = (&'static str, String, fn(&ReadError) -> bool);
    let cases: Vec<Case> = vec![
        ("flip", with(flipped), |e| {
            matches!(
                e,
                ReadError::Receipt {
                    seq: 1,
                    source: crate::receipt::ReceiptError::Signature,
                    ..
                }
            )
        }),
        (
            "drop",
            with(dropped),
            |e| matches!(e, ReadError::Chain { seq: 2, message, .. } if message.contains("found seq 3")),
        ),
        (
            "reorder",
            with(reordered),
            |e| matches!(e, ReadError::Chain { seq: 1, message, .. } if message.contains("found seq 2")),
        ),
        (
            "duplicate",
            with(duplicated),
            |e| matches!(e, ReadError::Chain { seq: 2, message, .. } if message.contains("found seq 1")),
        ),
    ];
    for (name, text, expected) in cases {
        std::fs::write(&segment, &text).unwrap();
        let error = LogReader::new(&cfg.dir, trust(&key))
            .receipts()
            .unwrap()
            .find_map(Result::err)
            .unwrap_or_else(|| panic!("{name}: no error"));
        assert!(expected(&error), "{name}: {error:?}");
        match LogWriter::open(cfg.clone()).await {
            Err(e @ LogError::Damaged { .. }) => {
                let text = e.to_string();
                assert!(text.contains("seg-00000000000000000000.jsonl"), "{text}");
                assert!(text.contains("clawverify query"), "{text}");
            }
            other => panic!("{name}: expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
    // Another key's log is refused too.
    std::fs::write(&segment, &original).unwrap();
    assert!(matches!(
        LogWriter::open(config(tmp.path(), &keys::generate())).await,
        Err(LogError::Damaged { .. })
    ));
    // A damaged middle line is never "recovered" as a torn tail, even with a newline after.
    let mut l = lines.clone();
    l[4] = l[4][..l[4].len() / 2].to_owned();
    std::fs::write(&segment, with(l)).unwrap();
    assert!(matches!(
        LogWriter::open(cfg.clone()).await,
        Err(LogError::Damaged { .. })
    ));
    // Truncating acknowledged receipts behind a checkpoint's back is refused.
    std::fs::write(&segment, with(lines[..3].to_vec())).unwrap();
    match LogWriter::open(cfg.clone()).await {
        Err(LogError::Damaged { message, .. }) => {
            assert!(message.contains("not a prefix"), "{message}")
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn concurrent_appenders_get_contiguous_seqs_with_group_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let key = keys::generate();
    let cfg = config(tmp.path(), &key);
    let (log, task) = LogWriter::open(cfg.clone()).await.unwrap();
    let tasks = 32;
    let each = 20;
    let mut handles = Vec::new();
    for t in 0..tasks {
        let log = log.clone();
        handles.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for _ in 0..each {
                seqs.push(log.append(call(&format!("job{t}"))).await.unwrap().seq);
            }
            seqs
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        let seqs = h.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        all.extend(seqs);
    }
    all.sort();
    assert_eq!(all, (0..(tasks * each) as u64).collect::<Vec<_>>());
    let ratio = log.metrics().fsyncs_per_receipt();
    eprintln!(
        "{} receipts, {} fsyncs: {ratio:.3} fsyncs per receipt",
        tasks * each,
        log.metrics()
            .batches
            .load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(ratio < 0.5, "group commit: {ratio} fsyncs per receipt");
    log.shutdown().await.unwrap();
    task.await.unwrap();
    let receipts = read_all(&cfg.dir, &key);
    for t in 0..tasks {
        let job = format!("job{t}");
        let seqs: Vec<u64> = receipts
            .iter()
            .filter(|r| r.job == job)
            .map(|r| r.job_seq)
            .collect();
        assert_eq!(seqs, (0..each as u64).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn from_data_dir_uses_the_init_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dd = claw_policy::datadir::DataDir::new(tmp.path());
    let init = claw_policy::datadir::init_keys(&dd, false).unwrap();
    let cfg = LogConfig::from_data_dir(&dd).unwrap();
    assert_eq!(cfg.proxy_id, init.proxy_id);
    assert_eq!(cfg.dir, dd.receipts().join(&init.proxy_id));
    let (log, _task) = LogWriter::open(cfg.clone()).await.unwrap();
    log.append(call("j")).await.unwrap();
    log.shutdown().await.unwrap();
    let trust = claw_policy::trust::TrustStore::load(&dd.trust()).unwrap();
    let receipts: Vec<_> = LogReader::new(&cfg.dir, trust)
        .receipts()
        .unwrap()
        .collect();
    assert_eq!(receipts.len(), 1);
    assert_eq!(
        receipts[0].as_ref().unwrap().log,
        format!("clawproxy/{}", init.proxy_id)
    );
}
