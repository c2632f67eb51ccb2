//! Crash consistency: the writer runs in a child process (this test binary re-invoked) that
//! prints each acknowledged seq; the parent `kill -9`s it mid-stream, restarts it, and at the
//! end proves every acknowledged receipt is present, unchanged, on an intact chain, with a
//! `recovery` receipt wherever a torn line was cut.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::*;
use crate::receipt::{Kind, hex};

const ENV_DIR: &str = "CLAW_LOG_CRASH_CHILD_DIR";
const ENV_KEY: &str = "CLAW_LOG_CRASH_CHILD_KEY";
const ROUNDS: usize = 5;
/// Extra rounds allowed while no kill has landed mid-write yet (so the torn-tail recovery is
/// exercised in practically every run; the unit tests cover it deterministically).
const MAX_ROUNDS: usize = 15;

/// Writes each batch with two `write` calls and a pause between, so a kill often lands
/// mid-batch and leaves a torn line, as a crash inside one large write can.
struct SplitStorage;

struct SplitSink(std::fs::File);

impl Storage for SplitStorage {
    fn open(&self, path: &Path) -> std::io::Result<Box<dyn Sink>> {
        Ok(Box::new(SplitSink(super::super::sink::open_append(path)?)))
    }

    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        FileStorage.sync_dir(dir)
    }
}

impl Sink for SplitSink {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let half = bytes.len() / 2;
        self.0.write_all(&bytes[..half])?;
        std::thread::sleep(std::time::Duration::from_millis(3));
        self.0.write_all(&bytes[half..])
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.0.sync_data()
    }
}

/// The child: append forever from 16 tasks, printing `ACK <seq> <leaf hex>` after each ack.
#[test]
fn crash_child() {
    let (Ok(dir), Ok(seed)) = (std::env::var(ENV_DIR), std::env::var(ENV_KEY)) else {
        return; // Only runs when the parent re-invokes this binary.
    };
    let seed: [u8; 32] = hex_decode(&seed).try_into().unwrap();
    let key = SigningKey::from_bytes(&seed);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let mut cfg = config(Path::new(&dir), &key);
        cfg.segment_bytes = 64 * 1024;
        cfg.timeout = std::time::Duration::from_secs(30);
        cfg.storage = Arc::new(SplitStorage);
        let (log, _task) = LogWriter::open(cfg).await.expect("the child opens the log");
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        println!("READY");
        let mut handles = Vec::new();
        for t in 0..16 {
            let log = log.clone();
            let out = out.clone();
            handles.push(tokio::spawn(async move {
                while let Ok(a) = log.append(call(&format!("job{t}"))).await {
                    let mut out = out.lock().unwrap();
                    writeln!(out, "ACK {} {}", a.seq, hex(&a.leaf)).unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
    });
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The incomplete last line of the last segment, if any: `(segment, offset, bytes, hash)`.
fn torn_tail(dir: &Path) -> Option<(String, u64, u64, String)> {
    use sha2::Digest;
    let segments = super::super::segment::list_segments(dir).unwrap();
    let (_, path): &(u64, PathBuf) = segments.last()?;
    let bytes = std::fs::read(path).unwrap();
    if bytes.is_empty() || bytes.last() == Some(&b'\n') {
        return None;
    }
    let offset = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    let cut = &bytes[offset..];
    Some((
        path.file_name().unwrap().to_string_lossy().into_owned(),
        offset as u64,
        cut.len() as u64,
        format!("sha256:{}", hex(&sha2::Sha256::digest(cut))),
    ))
}

#[test]
fn kill_9_mid_stream_loses_no_acknowledged_receipt() {
    let tmp = tempfile::tempdir().unwrap();
    let key = claw_policy::keys::generate();
    let dir = tmp.path().join(PROXY_ID);
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut torn = Vec::new();
    let mut rounds = 0;
    for round in 0..MAX_ROUNDS {
        if round >= ROUNDS && !torn.is_empty() {
            break;
        }
        rounds += 1;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "log::tests::crash::crash_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ENV_DIR, tmp.path())
            .env(ENV_KEY, hex(key.as_bytes()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        // Kill after a varying number of acknowledgements, mid-stream.
        let target = 150 + 70 * (round % ROUNDS);
        let mut seen = 0;
        for line in lines.by_ref() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (seq, leaf) = rest.split_once(' ').unwrap();
                acked.insert(seq.parse().unwrap(), leaf.to_owned());
                seen += 1;
                if seen >= target {
                    break;
                }
            }
        }
        assert!(seen >= target, "round {round}: the child stopped early");
        // Land the kill at varying points of the write/sync cycle (not only right after an
        // acknowledgement, when no write is in progress).
        std::thread::sleep(std::time::Duration::from_micros(
            1_300 * (round % ROUNDS) as u64,
        ));
        child.kill().unwrap(); // SIGKILL
        // Acks already printed before the kill landed are acknowledged too.
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (seq, leaf) = rest.split_once(' ').unwrap();
                acked.insert(seq.parse().unwrap(), leaf.to_owned());
            }
        }
        child.wait().unwrap();
        torn.extend(torn_tail(&dir));
    }
    // A last restart recovers the last kill's tail; then read everything back.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (log, task) = LogWriter::open(config(tmp.path(), &key)).await.unwrap();
        log.shutdown().await.unwrap();
        task.await.unwrap();
    });
    let receipts = read_all(&dir, &key);
    for (seq, leaf) in &acked {
        let r = receipts
            .get(*seq as usize)
            .unwrap_or_else(|| panic!("acknowledged seq {seq} is missing"));
        assert_eq!(&hex(&r.leaf_hash()), leaf, "acknowledged seq {seq} changed");
    }
    let recoveries: Vec<_> = receipts
        .iter()
        .filter(|r| r.kind == Kind::Recovery)
        .map(|r| {
            let cut = r.recovery.clone().unwrap();
            (cut.segment, cut.offset, cut.bytes, cut.hash)
        })
        .collect();
    assert_eq!(
        recoveries, torn,
        "one recovery receipt per torn tail, naming what was cut"
    );
    let torn_rounds = torn.len();
    eprintln!(
        "{rounds} kills: {} acknowledged, {} in the log, {torn_rounds} torn tails cut and recorded",
        acked.len(),
        receipts.len()
    );
    // The checkpoints survived too, all consistent with the log.
    let reader = LogReader::new(&dir, trust(&key));
    let leaves: Vec<crate::merkle::Hash> = receipts.iter().map(|r| r.leaf_hash()).collect();
    for cp in reader.checkpoints().unwrap() {
        assert_eq!(cp.root, crate::merkle::root(&leaves[..cp.size as usize]));
    }
}
