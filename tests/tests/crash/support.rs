//! What both suites share: the binaries, child processes, a data dir made with the command
//! lines, a blocking HTTP client, and the checks of a log after the fact.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use claw_policy::keys::Purpose;
use claw_policy::trust::TrustStore;
use claw_verifier::log::LogReader;
use claw_verifier::merkle::Tree;
use claw_verifier::receipt::{Kind, Receipt};
use connect_sim::demo::{DEMO_DB_ITEM_ID, DEMO_VAULT_ID};

/// The token connect-sim expects; the proxy injects it.
pub(crate) const SIM_TOKEN: &str = "sim-connect-token-for-crash-tests";
/// The seed contract's name.
pub(crate) const POLICY: &str = "1password-readonly-agent";
/// Safety net for a child that should have printed its address (never an assertion on speed).
const START_LIMIT: Duration = Duration::from_secs(120);

/// The directory holding up-to-date `clawproxy`, `clawcontrols`, `clawscope`, `clawverify` and
/// `connect-sim`: `CLAW_BIN_DIR`, or this test's own profile directory after `cargo build`.
pub(crate) fn bins() -> &'static Path {
    static BINS: OnceLock<PathBuf> = OnceLock::new();
    BINS.get_or_init(|| {
        if let Some(dir) = std::env::var_os("CLAW_BIN_DIR") {
            return PathBuf::from(dir);
        }
        // target/<profile>/deps/crash-<hash>: build into the same target dir and profile, so the
        // binaries match the sources this test was built from.
        let exe = std::env::current_exe().expect("the test executable");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from target/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("a target dir");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a profile dir name")
            .to_owned();
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace root");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(workspace)
            .args(["build", "--quiet", "--locked", "--bins"])
            .args(["-p", "claw-proxy", "-p", "claw-policy", "-p", "claw-tokens"])
            .args(["-p", "claw-verifier", "-p", "connect-sim"])
            .arg("--target-dir")
            .arg(target_dir);
        // Without what cargo sets for a test process: build scripts (ring's) rerun when those
        // change, so leaving them would rebuild ring, rustls and the proxy here and again in
        // the next ordinary build.
        for (key, _) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            const PREFIXES: [&str; 5] = [
                "CARGO_MANIFEST_",
                "CARGO_PKG_",
                "CARGO_CFG_",
                "CARGO_FEATURE_",
                "CARGO_BIN_",
            ];
            let leaked = PREFIXES.iter().any(|prefix| key.starts_with(prefix))
                || matches!(
                    key,
                    "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                        | "OUT_DIR"
                );
            if leaked {
                build.env_remove(key);
            }
        }
        match profile.as_str() {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        let started = Instant::now();
        let out = build.output().expect("running cargo build");
        assert!(
            out.status.success(),
            "cargo build of the binaries failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!(
            "binaries in {} (cargo build took {:.1?})",
            profile_dir.display(),
            started.elapsed()
        );
        profile_dir
    })
}

/// Runs a command line to completion; panics with its output unless it exits 0.
pub(crate) fn run_ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs one of the binaries to completion.
pub(crate) fn run(program: &str, args: &[&str]) -> Output {
    Command::new(bins().join(program))
        .args(args)
        .env("CLAW_LOG", "warn")
        .env_remove("CLAW_HOME")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

/// A child process, `kill -9`ed if still running when dropped.
pub(crate) struct Proc {
    child: Child,
    name: String,
    stderr: PathBuf,
}

impl Proc {
    /// Starts `program` with its stderr appended to `stderr`, and waits (bounded by a safety
    /// net) for the stdout line starting with `ready`; returns the rest of that line.
    pub(crate) fn start(
        program: &str,
        args: &[&str],
        envs: &[(&str, &str)],
        stderr: &Path,
        ready: &str,
    ) -> (Self, String) {
        let mut command = Command::new(bins().join(program));
        command.args(args);
        Self::spawn(program, command, envs, stderr, ready)
    }

    /// [`Proc::start`] for any command (e.g. one of ours under `ip netns exec`), named `program`.
    pub(crate) fn spawn(
        program: &str,
        mut command: Command,
        envs: &[(&str, &str)],
        stderr: &Path,
        ready: &str,
    ) -> (Self, String) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(stderr)
            .expect("a stderr file");
        let mut child = command
            .envs(envs.iter().copied())
            .env_remove("CLAW_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {program}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let proc = Self {
            child,
            name: program.to_owned(),
            stderr: stderr.to_owned(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let ready = ready.to_owned();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut found = None;
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix(&ready) {
                    found = Some(rest.to_owned());
                    break;
                }
            }
            let _ = tx.send(found);
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        match rx.recv_timeout(START_LIMIT) {
            Ok(Some(rest)) => (proc, rest),
            Ok(None) => panic!(
                "{program} exited before it was ready:\n{}",
                proc.stderr_text()
            ),
            Err(_) => panic!(
                "{program} was not ready within {START_LIMIT:?}:\n{}",
                proc.stderr_text()
            ),
        }
    }

    /// SIGKILL, then reap.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM (a graceful stop: drain, final checkpoint), then waits for the exit, bounded by
    /// a safety net after which it is killed and the test fails.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + START_LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the child") {
                return status;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!(
                    "{} did not exit within {START_LIMIT:?} of SIGTERM:\n{}",
                    self.name,
                    self.stderr_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub(crate) fn alive(&mut self) -> bool {
        self.child
            .try_wait()
            .expect("waiting for the child")
            .is_none()
    }

    /// Sends the signal `name` (`TERM`, `HUP`, …).
    pub(crate) fn signal(&self, name: &str) {
        let pid = self.pid().to_string();
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -{name} {pid} failed");
    }

    /// What the child wrote on stderr so far (its last 8 KiB).
    pub(crate) fn stderr_text(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let start = text.len().saturating_sub(8192);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts connect-sim with its demo data on a free loopback port.
pub(crate) fn start_sim(work: &Path) -> (Proc, SocketAddr) {
    let (proc, rest) = Proc::start(
        "connect-sim",
        &["--listen", "127.0.0.1:0", "--token", SIM_TOKEN],
        &[("CLAW_LOG", "warn")],
        &work.join("connect-sim.stderr"),
        "connect-sim listening on http://",
    );
    let addr = rest.trim().parse().expect("connect-sim's address");
    (proc, addr)
}

/// A running `clawproxy run` and its addresses.
pub(crate) struct Proxy {
    pub(crate) proc: Proc,
    pub(crate) listen: SocketAddr,
    pub(crate) admin: SocketAddr,
}

/// `clawproxy run --data-dir <data>` on free loopback ports; returns once it listens (the log
/// has been verified and recovered by then).
pub(crate) fn start_proxy(data: &Path, stderr: &Path) -> Proxy {
    start_proxy_with(data, stderr, &[])
}

/// [`start_proxy`] with more arguments for `clawproxy run` (e.g. `--state <url>`).
pub(crate) fn start_proxy_with(data: &Path, stderr: &Path, more: &[&str]) -> Proxy {
    start_proxy_env(data, stderr, more, &[])
}

/// [`start_proxy_with`] with more environment variables (e.g. `LD_PRELOAD`).
pub(crate) fn start_proxy_env(
    data: &Path,
    stderr: &Path,
    more: &[&str],
    env: &[(&str, &str)],
) -> Proxy {
    start_proxy_in(&[], data, stderr, more, env)
}

/// [`start_proxy_env`] under a command `prefix` (e.g. `ip netns exec <ns>`).
pub(crate) fn start_proxy_in(
    prefix: &[&str],
    data: &Path,
    stderr: &Path,
    more: &[&str],
    env: &[(&str, &str)],
) -> Proxy {
    let binary = bins().join("clawproxy");
    let mut command = match prefix.split_first() {
        Some((first, rest)) => {
            let mut command = Command::new(first);
            command.args(rest).arg(&binary);
            command
        }
        None => Command::new(&binary),
    };
    command.args(["run", "--data-dir"]).arg(data).args(more);
    let (proc, rest) = Proc::spawn(
        "clawproxy",
        command,
        &[
            &[("OP_CONNECT_TOKEN", SIM_TOKEN), ("CLAW_LOG", "warn")],
            env,
        ]
        .concat(),
        stderr,
        "clawproxy listening on ",
    );
    // `<listen> (admin <admin>)`
    let (listen, admin) = rest
        .split_once(" (admin ")
        .unwrap_or_else(|| panic!("unexpected listening line: {rest}"));
    Proxy {
        proc,
        listen: listen.parse().expect("the listen address"),
        admin: admin
            .trim_end_matches(')')
            .parse()
            .expect("the admin address"),
    }
}

/// A data dir made with the command lines: `clawproxy init`, `clawcontrols publish` of the
/// seed contract, a config pointing at `sim`, and a token for `job` from `clawscope mint`.
pub(crate) fn prepare(data: &Path, sim: SocketAddr, job: &str) -> String {
    let dir = data.to_str().expect("a UTF-8 path");
    run_ok("clawproxy", &["init", "--data-dir", dir]);
    let seed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/policies/1password-readonly-agent.json")
        .canonicalize()
        .expect("the seed contract");
    run_ok(
        "clawcontrols",
        &["publish", seed.to_str().unwrap(), "--data-dir", dir],
    );
    // Small segments, so restarts also land around segment rolls; frequent checkpoints.
    let config = format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         [[upstream]]\nhost = \"connect.1password.com\"\nintegration = \"onepassword\"\n\
         url = \"http://{sim}\"\ntoken_env = \"OP_CONNECT_TOKEN\"\n\
         [limits]\ndrain_timeout_ms = 2000\n\
         [log]\nsegment_bytes = 65536\ncheckpoint_interval_ms = 100\n"
    );
    std::fs::write(data.join("clawproxy.toml"), config).expect("writing the config");
    run_ok("clawproxy", &["check-config", "--data-dir", dir]);
    mint(data, POLICY, job, "crash-agent")
}

/// `clawscope mint` of a 900 s token for `job` under the published contract `policy`.
pub(crate) fn mint(data: &Path, policy: &str, job: &str, agent: &str) -> String {
    let args = [
        "mint",
        "--policy",
        policy,
        "--job",
        job,
        "--agent",
        agent,
        "--ttl",
        "900",
        "--data-dir",
        data.to_str().expect("a UTF-8 path"),
    ];
    run_ok("clawscope", &args).trim().to_owned()
}

/// A keep-alive read of the DATABASE item the seed contract allows, as `job`.
pub(crate) fn read_db_item(job: &str, token: &str, close: bool) -> Vec<u8> {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{job}:{token}"));
    format!(
        "GET http://connect.1password.com/v1/vaults/{DEMO_VAULT_ID}/items/{DEMO_DB_ITEM_ID} HTTP/1.1\r\nHost: connect.1password.com\r\nProxy-Authorization: Basic {auth}\r\nAuthorization: Bearer agent-placeholder\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes()
}

/// One response as a client saw it.
#[derive(Clone, Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// Lowercase names.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Whether the whole `Content-Length` body arrived.
    pub(crate) complete: bool,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.text()))
    }
}

/// Reads one response. `None` when the connection ended (or stayed silent past its read
/// timeout) before a whole head arrived; a head whose body was cut off is returned with
/// `complete: false`.
pub(crate) fn read_response(stream: &mut TcpStream) -> Option<Response> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = buf[end + 4..].to_vec();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut complete = false;
    if let Some(length) = length {
        while body.len() < length {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => body.extend_from_slice(&chunk[..n]),
            }
        }
        complete = body.len() >= length;
        body.truncate(length);
    }
    Some(Response {
        status,
        headers,
        body,
        complete,
    })
}

/// Connects with a safety-net read timeout.
pub(crate) fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Sends `request` on a fresh connection and reads one response.
pub(crate) fn send(addr: SocketAddr, request: &[u8]) -> Option<Response> {
    let mut stream = connect(addr).ok()?;
    stream.write_all(request).ok()?;
    read_response(&mut stream)
}

/// `GET <path>` on the admin listener.
pub(crate) fn admin_get(admin: SocketAddr, path: &str) -> Response {
    send(
        admin,
        format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap_or_else(|| panic!("no answer from the admin listener for {path}"))
}

/// A cut a restart must make and record: the segment, where the cut starts, how many bytes.
pub(crate) type Cut = (String, u64, u64);

/// The last segment of the data dir's log.
pub(crate) fn last_segment(data: &Path) -> Option<PathBuf> {
    let dir = log_dir(data);
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(claw_verifier::log::parse_segment_name)
                .is_some()
        })
        .collect();
    segments.sort();
    segments.pop()
}

/// The incomplete last line of the last segment (a write cut short), if there is one.
pub(crate) fn torn_tail(data: &Path) -> Option<Cut> {
    let path = last_segment(data)?;
    let bytes = std::fs::read(&path).expect("reading the last segment");
    if bytes.is_empty() || bytes.last() == Some(&b'\n') {
        return None;
    }
    let offset = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    Some((
        file_name(&path),
        offset as u64,
        (bytes.len() - offset) as u64,
    ))
}

pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned()
}

/// `receipts/<proxy id>` of a data dir.
pub(crate) fn log_dir(data: &Path) -> PathBuf {
    let trust = TrustStore::load(&data.join("trust.json")).expect("trust.json");
    let id = &trust
        .by_purpose(Purpose::Proxy)
        .next()
        .expect("a proxy key")
        .name;
    data.join("receipts").join(id)
}

/// What a log holds, read back after the proxy stopped.
pub(crate) struct LogContents {
    pub(crate) receipts: Vec<Receipt>,
}

impl LogContents {
    /// The ids, each once.
    pub(crate) fn ids(&self) -> BTreeSet<&str> {
        self.receipts.iter().map(|r| r.id.as_str()).collect()
    }

    /// The cuts the recovery receipts record, sorted.
    pub(crate) fn recoveries(&self) -> Vec<Cut> {
        let mut cuts: Vec<Cut> = self
            .receipts
            .iter()
            .filter(|r| r.kind == Kind::Recovery)
            .map(|r| {
                let cut = r
                    .recovery
                    .clone()
                    .expect("a recovery receipt says what it cut");
                assert!(cut.hash.starts_with("sha256:"), "{cut:?}");
                (cut.segment, cut.offset, cut.bytes)
            })
            .collect();
        cuts.sort();
        cuts
    }

    /// The receipt an agent was given for a 200: an allowed, released read of the DATABASE
    /// item by `job`.
    pub(crate) fn check_released(&self, id: &str, job: &str) {
        let r = self
            .receipts
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| {
                panic!("an agent got 200 with receipt {id}, which is not in the log")
            });
        assert_eq!(r.kind, Kind::Call, "{id}");
        assert_eq!(r.job, job, "{id}");
        assert!(r.decision.as_ref().is_some_and(|d| d.allow), "{id}");
        let resp = r.resp.as_ref().expect("the upstream answer is recorded");
        assert!(resp.released && resp.status == 200, "{id}: {resp:?}");
        let op = r.op.as_ref().expect("the operation");
        assert_eq!(op.name, "read_item", "{id}");
        assert_eq!(op.item.as_deref(), Some(DEMO_DB_ITEM_ID), "{id}");
    }
}

/// Reads the data dir's log with the data dir's trust.json: every receipt verified and
/// chained (a torn line anywhere fails), ids unique, the checkpoint history verified and each
/// checkpoint's root that of the log's prefix, and the latest checkpoint covering the whole
/// log (the proxy stopped gracefully last).
pub(crate) fn read_log(data: &Path) -> LogContents {
    read_log_at(data, &log_dir(data))
}

/// [`read_log`] of the log in `dir` (a fleet instance's log), under `data`'s trust.
pub(crate) fn read_log_at(data: &Path, dir: &Path) -> LogContents {
    let trust = TrustStore::load(&data.join("trust.json")).expect("trust.json");
    let reader = LogReader::new(dir, trust);
    let mut tree = Tree::new();
    let receipts: Vec<Receipt> = reader
        .receipts()
        .expect("the log opens")
        .map(|r| {
            let checked = r.unwrap_or_else(|e| panic!("the log does not verify: {e}"));
            tree.push(checked.leaf_hash());
            checked.into_receipt()
        })
        .collect();
    let ids: BTreeSet<&str> = receipts.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), receipts.len(), "receipt ids are unique");
    let history = reader
        .checkpoints()
        .unwrap_or_else(|e| panic!("the checkpoint history does not verify: {e}"));
    assert!(!history.is_empty(), "checkpoints were signed");
    for cp in &history {
        assert_eq!(
            Ok(cp.root),
            tree.root_at(cp.size),
            "the checkpoint of size {} matches the log",
            cp.size
        );
    }
    let (latest, _) = reader
        .latest_checkpoint()
        .expect("the latest checkpoint verifies")
        .expect("a latest checkpoint");
    assert_eq!(
        latest.size,
        receipts.len() as u64,
        "the final checkpoint covers the whole log"
    );
    assert_eq!(Ok(latest.root), tree.root_at(latest.size));
    LogContents { receipts }
}

/// `clawverify bundle --job <job> --include-live-token` then `clawverify verify` against the
/// data dir's trust.json: both must exit 0. Returns the bundle's path.
pub(crate) fn bundle_and_verify(data: &Path, job: &str, out: &Path) -> PathBuf {
    let dir = data.to_str().expect("a UTF-8 path");
    let bundle = out.join(format!("{job}.bundle.json"));
    let bundle_path = bundle.to_str().expect("a UTF-8 path");
    run_ok(
        "clawverify",
        &[
            "bundle",
            "--job",
            job,
            "-o",
            bundle_path,
            "--include-live-token",
            "--data-dir",
            dir,
        ],
    );
    let trust = data.join("trust.json");
    let report = run_ok(
        "clawverify",
        &[
            "verify",
            bundle_path,
            "--trust",
            trust.to_str().unwrap(),
            "--data-dir",
            dir,
        ],
    );
    eprintln!("clawverify verify: {}", report.lines().next().unwrap_or(""));
    bundle
}

/// Appends bytes to a file (a torn tail made on purpose, as a crash mid-write leaves one).
pub(crate) fn append(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .expect("opening the segment");
    file.write_all(bytes).expect("appending");
    file.sync_all().expect("syncing");
}

/// The last complete line of a file, if any.
pub(crate) fn last_line(path: &Path) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path).ok()?.read_to_end(&mut bytes).ok()?;
    let body = bytes.strip_suffix(b"\n")?;
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |p| p + 1);
    Some(body[start..].to_vec())
}

/// SplitMix64: a tiny seeded generator, so a failing run can be repeated.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `lo..hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}
