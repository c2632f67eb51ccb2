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
//! A slow disk is the unmodified proxy with `slowdisk.c` preloaded, which delays every
//! `fsync`/`fdatasync` by what a control file says, re-read while it waits. Slow syncs only
//! slow answers down (group commit takes more receipts per sync) and nothing is refused; a
//! sync that outlives the log's 10 s stage limit poisons the log like a failed one.
//!
//! The full disk needs root (to mount the tmpfs), the slow one a C compiler (`cc`) for the
//! shim; without them a test prints `skipped: …` and passes.

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

/// A data dir (on a fresh tmpfs, or under a slow-disk shim), connect-sim, and a token for
/// `JOB`. Fields drop in order: connect-sim, then the tmpfs (unmounted), then the work dir.
struct Disk {
    _sim: Proc,
    tmpfs: Option<Tmpfs>,
    data: PathBuf,
    stderr: PathBuf,
    request: Vec<u8>,
    /// The proxy's extra environment (the preloaded shim and its control file).
    env: Vec<(&'static str, String)>,
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
        Some(Self::with(work, Some(tmpfs), data, Vec::new()))
    }

    /// `None`, after saying why, when the shim cannot be built here.
    fn slow(test: &str) -> Option<Self> {
        let work = tempfile::tempdir().unwrap();
        let shim = match SlowDisk::build(work.path()) {
            Ok(shim) => shim,
            Err(e) => {
                eprintln!("skipped: disk::{test}: {e}");
                return None;
            }
        };
        let data = work.path().join("claw");
        let env = vec![
            (
                "LD_PRELOAD",
                shim.to_str().expect("a UTF-8 path").to_owned(),
            ),
            (
                "CLAW_SLOW_DISK",
                SlowDisk::control(work.path())
                    .to_str()
                    .expect("a UTF-8 path")
                    .to_owned(),
            ),
        ];
        Some(Self::with(work, None, data, env))
    }

    fn with(
        work: tempfile::TempDir,
        tmpfs: Option<Tmpfs>,
        data: PathBuf,
        env: Vec<(&'static str, String)>,
    ) -> Self {
        let (sim_proc, sim) = support::start_sim(work.path());
        let token = support::prepare(&data, sim, JOB);
        Self {
            _sim: sim_proc,
            tmpfs,
            data,
            stderr: work.path().join("clawproxy.stderr"),
            request: support::read_db_item(JOB, &token, true),
            env,
            work,
        }
    }

    /// The tmpfs's mount point.
    fn mount(&self) -> &Path {
        &self.tmpfs.as_ref().expect("a disk on a tmpfs").0
    }

    /// Slows every sync of the proxy down to `ms` (0: the fault clears).
    fn sync_delay(&self, ms: u64) {
        std::fs::write(SlowDisk::control(self.work.path()), ms.to_string()).unwrap();
    }

    fn start(&self) -> Proxy {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        support::start_proxy_env(&self.data, &self.stderr, &[], &env)
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
    let (filler, size) = fill(disk.mount());
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
    let (filler, _) = fill(disk.mount());
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

/// The slow-disk shim (`slowdisk.c`), compiled for the test.
struct SlowDisk;

impl SlowDisk {
    /// Compiles the shim into `work`; returns the library's path.
    fn build(work: &Path) -> Result<PathBuf, String> {
        let source = work.join("slowdisk.c");
        let library = work.join("libslowdisk.so");
        std::fs::write(&source, include_str!("slowdisk.c")).map_err(|e| e.to_string())?;
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&library)
            .arg(&source)
            .arg("-ldl")
            .output()
            .map_err(|e| format!("running cc for the slow-disk shim: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cc could not build the slow-disk shim ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        std::fs::write(Self::control(work), "0").map_err(|e| e.to_string())?;
        Ok(library)
    }

    /// The file the shim reads its delay from.
    fn control(work: &Path) -> PathBuf {
        work.join("slow-disk-ms")
    }
}

/// A sample of the log's metrics: receipts made durable, group commits (one fdatasync
/// each), and fdatasyncs slower than 128 ms.
#[derive(Debug, Clone, Copy)]
struct Syncs {
    receipts: u64,
    commits: u64,
    slow: u64,
}

impl Syncs {
    fn sample(proxy: &Proxy) -> Self {
        let metrics = support::admin_get(proxy.admin, "/metrics").text();
        let value = |name: &str| -> u64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {name} in:\n{metrics}")) as u64
        };
        let syncs = value("clawproxy_fsync_seconds_count");
        Self {
            receipts: value("clawproxy_receipt_batch_size_sum"),
            commits: value("clawproxy_receipt_batch_size_count"),
            slow: syncs - value("clawproxy_fsync_seconds_bucket{le=\"0.128\"}"),
        }
    }
}

#[test]
fn a_slow_disk_slows_answers_down_and_loses_none() {
    let Some(disk) = Disk::slow("a_slow_disk_slows_answers_down_and_loses_none") else {
        return;
    };
    let mut proxy = disk.start();
    let mut released: Vec<String> = Vec::new();
    disk.ok(&proxy, &mut released);
    let before = Syncs::sample(&proxy);

    // Every sync now takes 200 ms. Eight agents read at once, four times each: every answer
    // is a 200 with its receipt, later than it would be, and the receipts that queue behind a
    // slow sync share the next one.
    disk.sync_delay(200);
    let answers: Vec<Response> = std::thread::scope(|scope| {
        let agents: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| (0..4).map(|_| disk.call(&proxy)).collect::<Vec<_>>()))
            .collect();
        agents
            .into_iter()
            .flat_map(|a| a.join().expect("an agent thread"))
            .collect()
    });
    for answer in &answers {
        assert_eq!(answer.status, 200, "{}", answer.text());
        assert!(answer.complete);
        released.push(
            answer
                .header("x-clawproxy-receipt")
                .expect("a receipt id")
                .to_owned(),
        );
    }
    let during = Syncs::sample(&proxy);
    let receipts = during.receipts - before.receipts;
    let commits = during.commits - before.commits;
    assert!(receipts >= 32, "{before:?} → {during:?}");
    assert!(
        commits < receipts,
        "receipts waiting on a slow sync share the next one: {before:?} → {during:?}"
    );
    assert!(
        during.slow > before.slow,
        "the fsync histogram shows the slow syncs"
    );
    let ready = support::admin_get(proxy.admin, "/readyz");
    assert_eq!(
        ready.status,
        200,
        "a slow disk is not a failed one: {}",
        ready.text()
    );

    // The fault clears: answers as before, the log never poisoned.
    disk.sync_delay(0);
    for _ in 0..3 {
        disk.ok(&proxy, &mut released);
    }
    assert!(
        support::admin_get(proxy.admin, "/metrics")
            .text()
            .contains("clawproxy_receipt_log_poisoned 0")
    );
    let status = proxy.proc.terminate();
    assert!(status.success(), "{status}:\n{}", proxy.proc.stderr_text());
    drop(proxy);

    let log = disk.recover(&mut released);
    eprintln!(
        "slow disk (200 ms per sync): {receipts} receipts in {commits} syncs under 8 agents; \
         {} receipts checked among {} in the log; bundle verified",
        released.len(),
        log.receipts.len()
    );
}

#[test]
fn a_stalled_disk_fails_closed_until_a_restart() {
    let Some(disk) = Disk::slow("a_stalled_disk_fails_closed_until_a_restart") else {
        return;
    };
    let mut proxy = disk.start();
    let mut released: Vec<String> = Vec::new();
    let first = disk.ok(&proxy, &mut released);
    let secrets = secrets(&first);

    // The disk stops answering: the sync under the next receipt outlives the log's 10 s stage
    // limit, so the call is refused and the log poisoned, as for a failed sync.
    disk.sync_delay(3_600_000);
    fails_closed(&disk.call(&proxy), &secrets);
    poisoned(&proxy);

    // The disk comes back (the stalled sync completes): still poisoned, still nothing released.
    disk.sync_delay(0);
    for _ in 0..3 {
        fails_closed(&disk.call(&proxy), &secrets);
    }
    poisoned(&proxy);
    let stopped = proxy.proc.terminate();
    drop(proxy);

    let log = disk.recover(&mut released);
    eprintln!(
        "stalled disk: refused after the stage limit; the poisoned proxy stopped with \
         {stopped}; {} receipts checked among {} in the log; bundle verified",
        released.len(),
        log.receipts.len()
    );
}
