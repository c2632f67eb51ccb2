//! A full disk under the receipt log. The data dir lives on a small tmpfs; once a filler file
//! takes the last page, the proxy cannot make a receipt durable, so it answers 503 in the
//! Connect error shape and releases nothing, `/readyz` says the log is poisoned, and it stays
//! poisoned (no retry) even after the space comes back. Restarted on the same data dir, it
//! cuts and records any torn tail, serves again, and every 200 the agent saw has its receipt
//! in a log that verifies.
//!
//! The disk can fill under a receipt write (`a_full_disk_fails_closed_until_a_restart`) or
//! under a checkpoint (`a_checkpoint_cut_short_by_a_full_disk_is_repaired_at_restart`).
//!
//! Needs root (to mount the tmpfs); otherwise it prints `skipped: …` and passes.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{self, Cut, Proc, Proxy, Response};

const JOB: &str = "disk-job";
const ENOSPC: i32 = 28;

/// A tmpfs mounted for the test's life.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Self(path.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Still busy (a child not yet reaped): detach it now, gone once unused.
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|uids| uids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Writes a filler file until the file system refuses with ENOSPC; returns its size.
fn fill(dir: &Path) -> (PathBuf, u64) {
    let path = dir.join("filler");
    let mut file = File::create(&path).expect("creating the filler");
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => size += n as u64,
            Err(e) if e.raw_os_error() == Some(ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    // Full indeed: not one more page.
    let probe = dir.join("probe");
    let full = File::create(&probe).and_then(|mut f| f.write_all(&[1; 4096]).and(f.sync_all()));
    let _ = std::fs::remove_file(&probe);
    assert_eq!(
        full.map_err(|e| e.raw_os_error()),
        Err(Some(ENOSPC)),
        "the file system is full"
    );
    (path, size)
}

/// The secret values of the item (its fields' values), to prove none leaks in a refusal.
fn secrets(item: &Response) -> Vec<String> {
    item.json()["fields"]
        .as_array()
        .expect("the item has fields")
        .iter()
        .filter_map(|f| f["value"].as_str())
        .filter(|v| v.len() >= 4)
        .map(str::to_owned)
        .collect()
}

/// 503 in the Connect error shape, no receipt cited, nothing of the item.
fn fails_closed(response: &Response, secrets: &[String]) {
    assert_eq!(response.status, 503, "{}", response.text());
    let body = response.json();
    let keys: BTreeSet<&str> = body
        .as_object()
        .expect("a JSON object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, BTreeSet::from(["message", "status"]), "{body}");
    assert_eq!(body["status"], 503, "{body}");
    assert!(body["message"].is_string(), "{body}");
    assert_eq!(
        response.header("x-clawproxy-receipt"),
        None,
        "a 503 for a receipt that could not be written cites none"
    );
    let text = response.text();
    assert!(!text.contains("DATABASE"), "{text}");
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret in a refusal: {text}"
        );
    }
}

fn poisoned(proxy: &Proxy) {
    let ready = support::admin_get(proxy.admin, "/readyz");
    assert_eq!(ready.status, 503, "{}", ready.text());
    assert!(ready.text().contains("poisoned"), "{}", ready.text());
    let metrics = support::admin_get(proxy.admin, "/metrics").text();
    assert!(
        metrics.contains("clawproxy_receipt_log_poisoned 1"),
        "{metrics}"
    );
}

fn page_size() -> u64 {
    Command::new("getconf")
        .arg("PAGESIZE")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

/// Bytes left in the last page of a file of `len` bytes (tmpfs allocates whole pages).
fn room(len: u64, page: u64) -> u64 {
    (page - len % page) % page
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Waits (bounded by a safety net) until `done` holds.
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A data dir on a fresh tmpfs, connect-sim, and a token for `JOB`. Fields drop in order:
/// connect-sim, then the tmpfs (unmounted), then the work dir.
struct Disk {
    _sim: Proc,
    tmpfs: Tmpfs,
    data: PathBuf,
    stderr: PathBuf,
    request: Vec<u8>,
    work: tempfile::TempDir,
}

impl Disk {
    /// `None`, after saying why, when no tmpfs can be mounted here.
    fn new(test: &str) -> Option<Self> {
        if !is_root() {
            eprintln!("skipped: disk::{test}: mounting a tmpfs needs root");
            return None;
        }
        let work = tempfile::tempdir().unwrap();
        let tmpfs = match Tmpfs::mount(&work.path().join("tmpfs"), "4m") {
            Ok(tmpfs) => tmpfs,
            Err(e) => {
                eprintln!("skipped: disk::{test}: {e}");
                return None;
            }
        };
        let data = tmpfs.0.join("claw");
        let (sim_proc, sim) = support::start_sim(work.path());
        let token = support::prepare(&data, sim, JOB);
        Some(Self {
            _sim: sim_proc,
            tmpfs,
            data,
            stderr: work.path().join("clawproxy.stderr"),
            request: support::read_db_item(JOB, &token, true),
            work,
        })
    }

    fn start(&self) -> Proxy {
        support::start_proxy(&self.data, &self.stderr)
    }

    /// One read of the item on a fresh connection.
    fn call(&self, proxy: &Proxy) -> Response {
        support::send(proxy.listen, &self.request)
            .unwrap_or_else(|| panic!("no answer from the proxy:\n{}", proxy.proc.stderr_text()))
    }

    /// One read that must succeed; its receipt id joins `released`.
    fn ok(&self, proxy: &Proxy, released: &mut Vec<String>) -> Response {
        let response = self.call(proxy);
        assert_eq!(response.status, 200, "{}", response.text());
        assert!(response.complete);
        released.push(
            response
                .header("x-clawproxy-receipt")
                .expect("a receipt id")
                .to_owned(),
        );
        response
    }

    /// Restarts the (stopped) proxy on the same data dir: any torn tail is cut and recorded,
    /// it is ready and serves again; then stops it and checks the log (every receipt in
    /// `released` present, the checkpoint history readable) and the job's bundle.
    fn recover(&self, released: &mut Vec<String>) -> support::LogContents {
        let expected: Vec<Cut> = support::torn_tail(&self.data).into_iter().collect();
        let mut proxy = self.start();
        let ready = support::admin_get(proxy.admin, "/readyz");
        assert_eq!(ready.status, 200, "{}", ready.text());
        for _ in 0..3 {
            self.ok(&proxy, released);
        }
        let status = proxy.proc.terminate();
        assert!(status.success(), "{status}:\n{}", proxy.proc.stderr_text());
        let log = support::read_log(&self.data);
        for id in released.iter() {
            log.check_released(id, JOB);
        }
        assert_eq!(log.recoveries(), expected, "one recovery per torn tail");
        support::bundle_and_verify(&self.data, JOB, self.work.path());
        log
    }
}

#[test]
fn a_full_disk_fails_closed_until_a_restart() {
    let Some(disk) = Disk::new("a_full_disk_fails_closed_until_a_restart") else {
        return;
    };
    let proxy = disk.start();
    // Every receipt id the agent got with a 200.
    let mut released: Vec<String> = Vec::new();
    let first = disk.ok(&proxy, &mut released);
    let secrets = secrets(&first);
    assert!(!secrets.is_empty(), "{}", first.text());

    // The disk fills. A call or two may still fit in the page the segment already holds; then
    // the first receipt that cannot be written turns into a 503.
    let (filler, size) = fill(&disk.tmpfs.0);
    let mut refused = None;
    let mut squeezed = 0;
    for _ in 0..256 {
        let response = disk.call(&proxy);
        if response.status != 200 {
            refused = Some(response);
            break;
        }
        released.push(
            response
                .header("x-clawproxy-receipt")
                .expect("a receipt id")
                .to_owned(),
        );
        squeezed += 1;
    }
    let refused = refused.expect("the proxy still answers 200 on a full disk");
    fails_closed(&refused, &secrets);
    poisoned(&proxy);

    // Poisoned until restart: with the space back, still no receipt, so still nothing released.
    std::fs::remove_file(&filler).unwrap();
    for _ in 0..3 {
        fails_closed(&disk.call(&proxy), &secrets);
    }
    poisoned(&proxy);
    let mut proxy = proxy;
    let stopped = proxy.proc.terminate();
    drop(proxy);

    let log = disk.recover(&mut released);
    // Receipts of calls the agent was refused: whole lines of a batch written in part before
    // ENOSPC survive, claiming a release that never happened (the safe side).
    let given: BTreeSet<&str> = released.iter().map(String::as_str).collect();
    let unseen: Vec<&str> = log
        .receipts
        .iter()
        .filter(|r| r.kind == claw_verifier::receipt::Kind::Call && !given.contains(r.id.as_str()))
        .map(|r| r.id.as_str())
        .collect();
    eprintln!(
        "full disk under a receipt: filler {size} bytes; {squeezed} calls still fit before the \
         first 503; the poisoned proxy stopped with {stopped}; {} recovery receipt(s); {} \
         receipts checked among {} in the log; call receipts no agent saw: {unseen:?}; bundle \
         verified",
        log.recoveries().len(),
        released.len(),
        log.receipts.len()
    );
}

#[test]
fn a_checkpoint_cut_short_by_a_full_disk_is_repaired_at_restart() {
    let Some(disk) = Disk::new("a_checkpoint_cut_short_by_a_full_disk_is_repaired_at_restart")
    else {
        return;
    };
    let page = page_size();
    let mut proxy = disk.start();
    let mut released: Vec<String> = Vec::new();
    let log = support::log_dir(&disk.data);
    let history = log.join("checkpoints");
    let checkpoint = log.join("checkpoint");
    // Receipts in the segments (all lines whole: no write is failing yet).
    let receipts = || -> u64 {
        std::fs::read_dir(&log)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| support::file_name(p).starts_with("seg-"))
            .map(|p| {
                std::fs::read(p)
                    .unwrap()
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count() as u64
            })
            .sum()
    };
    let covered = || -> u64 {
        std::fs::read_to_string(&checkpoint)
            .ok()
            .and_then(|note| note.lines().nth(1).and_then(|n| n.parse().ok()))
            .unwrap_or(0)
    };

    // One call at a time, each followed by its checkpoint, until the history's last page has
    // less room than one more record while the segment's last page still holds a receipt.
    let mut steps = 0;
    let secrets = loop {
        steps += 1;
        assert!(steps <= 400, "the page layout never came up");
        let response = disk.ok(&proxy, &mut released);
        eventually("a checkpoint covers every receipt", || {
            covered() == receipts()
        });
        let record = support::last_line(&history)
            .expect("a history record")
            .len() as u64
            + 1;
        let segment = support::last_segment(&disk.data).expect("a segment");
        let line = support::last_line(&segment).expect("a receipt").len() as u64 + 1;
        let history_room = room(len(&history), page);
        let segment_room = room(len(&segment), page);
        if history_room > 0
            && history_room + 16 < record
            && segment_room >= line + 256
            && len(&segment) + line + 256 <= 65536
        {
            break secrets(&response);
        }
    };
    let (filler, _) = fill(&disk.tmpfs.0);
    // This receipt still fits in its page; the checkpoint that follows it does not.
    disk.ok(&proxy, &mut released);
    eventually("the log is poisoned", || {
        support::admin_get(proxy.admin, "/readyz").status == 503
    });
    poisoned(&proxy);
    let torn = std::fs::read(&history).unwrap();
    assert!(
        !torn.ends_with(b"\n"),
        "the checkpoint record was cut short by the full disk"
    );
    fails_closed(&disk.call(&proxy), &secrets);
    std::fs::remove_file(&filler).unwrap();
    proxy.proc.terminate();
    drop(proxy);

    let log = disk.recover(&mut released);
    eprintln!(
        "full disk under a checkpoint: {steps} calls to reach the layout; the history record \
         was cut at byte {}; {} receipts checked among {} in the log; history readable, \
         bundle verified",
        torn.len(),
        released.len(),
        log.receipts.len()
    );
}
