//! `clawproxy demo`: the quickstart on the embedded default, end to end on loopback.
//!
//! A fresh data dir, the seed contract published, connect-sim and the proxy on free loopback
//! ports, a job token, and the example curl agent (`examples/agents/agent.sh`, embedded) run by
//! `bash` as a separate process, configured only by environment variables, making allowed and
//! denied calls through the proxy (where `bash` or `curl` is missing, the demo makes the same
//! calls in-process). Then the agent's receipts are checked against the contract, the token
//! revoked, the job closed, its proof bundle built and verified offline, and the reviewer's page
//! written. Everything it started, the agent included, stops when it returns, also on an error.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use claw_policy::contract::Contract;
use claw_policy::datadir::DataDir;
use claw_policy::envelope::Envelope;
use claw_policy::keys::{self, Purpose};
use claw_policy::registry::Registry;
use claw_policy::trust::TrustStore;
use claw_tokens::mint::{MintRequest, mint};
use claw_verifier::receipt::{Kind, Receipt};
use connect_sim::demo::{DEMO_DB_ITEM_ID, DEMO_LOGIN_ITEM_ID, DEMO_VAULT_ID};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;

/// The seed contract, verbatim.
pub const SEED_CONTRACT: &str =
    include_str!("../../examples/policies/1password-readonly-agent.json");

const JOB: &str = "demo-job";

/// The example curl agent, run by `bash` as the demo's agent.
const AGENT_SH: &str = include_str!("../../examples/agents/agent.sh");

/// How long the agent may run before it is killed (it needs well under a second).
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// The agent's `OP_CONNECT_TOKEN`: the proxy drops it and injects the real one.
const PLACEHOLDER: &str = "placeholder-the-proxy-injects-the-real-one";

/// A host the contract's `network_egress` does not list: the proxy refuses it before any lookup
/// or connection, so nothing leaves the machine.
const OUTSIDE_URL: &str = "http://example.org/";

/// One of the agent's calls (agent.sh's four checks, in its order) and the status the contract
/// gives it.
struct Call {
    what: &'static str,
    method: &'static str,
    url: String,
    status: u16,
    /// To a host outside `network_egress`: refused with nothing forwarded.
    outside: bool,
}

fn agent_calls() -> [Call; 4] {
    let item =
        |id: &str| format!("http://connect.1password.com/v1/vaults/{DEMO_VAULT_ID}/items/{id}");
    [
        Call {
            what: "read the DATABASE item",
            method: "GET",
            url: item(DEMO_DB_ITEM_ID),
            status: 200,
            outside: false,
        },
        Call {
            what: "read the LOGIN item",
            method: "GET",
            url: item(DEMO_LOGIN_ITEM_ID),
            status: 403,
            outside: false,
        },
        Call {
            what: "delete an item",
            method: "DELETE",
            url: item(DEMO_DB_ITEM_ID),
            status: 403,
            outside: false,
        },
        Call {
            what: "reach a host outside the contract",
            method: "GET",
            url: OUTSIDE_URL.into(),
            status: 403,
            outside: true,
        },
    ]
}

/// Runs the demo in `data_dir` (a fresh temporary directory when `None`), telling the story on
/// `out`.
pub fn run(data_dir: Option<PathBuf>, out: &mut dyn Write) -> anyhow::Result<()> {
    run_with_path(data_dir, std::env::var_os("PATH"), out)
}

/// [`run`], with `path` (a `PATH` value) where the agent's `bash` and `curl` are looked for, and
/// the agent's `PATH`. Without both there, the agent's calls are made in-process.
pub fn run_with_path(
    data_dir: Option<PathBuf>,
    path: Option<OsString>,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let root = match data_dir {
        Some(dir) => dir,
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("clawproxy-demo-")
                .tempdir()?;
            // Kept: the story ends by pointing at its files.
            tmp.keep().join("claw")
        }
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(story(&root, path.as_deref(), out))
}

async fn story(root: &Path, path: Option<&OsStr>, out: &mut dyn Write) -> anyhow::Result<()> {
    let dir = DataDir::new(root);
    writeln!(out, "clawproxy demo in {}\n", root.display())?;

    let init = crate::init::init(&dir, false)?;
    writeln!(
        out,
        "1. init        keys (0600), interception CA, trust.json; proxy id {}",
        init.keys.proxy_id
    )?;

    let contract =
        Contract::from_slice(SEED_CONTRACT.as_bytes()).context("the embedded seed contract")?;
    let trust = TrustStore::load(&dir.trust())?;
    let key = keys::read_signing_key(&dir.signing_key(Purpose::Policy))?;
    let published =
        Registry::new(dir.policies()).publish(&Envelope::sign(&contract, &key), &trust)?;
    writeln!(
        out,
        "2. publish     {} v{} is valid, signed and active\n              {}",
        published.name, published.version, published.hash
    )?;

    let sim_token = random_token();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim_addr = listener.local_addr()?;
    let sim = connect_sim::Sim::new(sim_token.clone(), connect_sim::store::Store::demo())?;
    let sim = tokio::spawn(connect_sim::serve(listener, sim));
    writeln!(
        out,
        "3. connect     connect-sim (a Connect-compatible server) on {sim_addr}"
    )?;

    let config = format!(
        "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[[upstream]]\nhost = \"connect.1password.com\"\nintegration = \"onepassword\"\nurl = \"http://{sim_addr}\"\ntoken_env = \"OP_CONNECT_TOKEN\"\n"
    );
    std::fs::write(dir.config(), &config)?;
    let config = Config::load(&dir.config())?;
    let env = |name: &str| (name == "OP_CONNECT_TOKEN").then(|| sim_token.clone());
    let proxy = crate::run::start(&dir, config, &env).await?;
    writeln!(
        out,
        "4. proxy       clawproxy on {} (admin {}); it alone holds the Connect token",
        proxy.listen, proxy.admin
    )?;

    let request = MintRequest {
        policy: published.name.clone(),
        job: JOB.into(),
        agent: "demo-agent".into(),
        ttl: Some(300),
        ..MintRequest::default()
    };
    let minted = mint(&dir, &request, claw_tokens::now())?;
    writeln!(
        out,
        "5. mint        job token for {JOB}, 300 s, pinned to {}",
        minted.claims.wpc
    )?;
    writeln!(
        out,
        "              the agent's only credential: HTTP(S)_PROXY=http://{JOB}:<token>@{}\n",
        proxy.listen
    )?;

    let calls = agent_calls();
    let mut files = Vec::new();
    let agent = match agent_shell(path) {
        Ok(bash) => {
            writeln!(
                out,
                "6. agent       examples/agents/agent.sh (curl), run by {} as a separate process; its\n              environment: PATH, HTTP(S)_PROXY as above, OP_CONNECT_HOST, OP_VAULT,\n              OP_CONNECT_TOKEN (a placeholder), AGENT_ALLOWED_ITEM (DATABASE), AGENT_DENIED_ITEM\n              (LOGIN), AGENT_OUTSIDE_URL={OUTSIDE_URL}, CURL_CA_BUNDLE",
                bash.display()
            )?;
            let (script, output) = (root.join("agent.sh"), root.join("agent.out"));
            let env = agent_env(&dir, proxy.listen, &minted.token);
            let run = run_agent(&bash, &script, path.unwrap_or_default(), &env, &output).await?;
            files.extend([("agent", script), ("its output", output)]);
            run
        }
        Err(missing) => {
            writeln!(
                out,
                "6. agent       {missing} not found: the agent's calls are made in-process"
            )?;
            in_process(proxy.listen, &minted.token, &calls).await?
        }
    };
    let mut surprises = agent.tell(out, calls.len())?;

    let log_dir = dir.receipts().join(&init.keys.proxy_id);
    let proxy_key = keys::read_signing_key(&dir.signing_key(Purpose::Proxy))?;
    let receipts: Vec<Receipt> =
        claw_verifier::log::read_log(&log_dir, &proxy_key.verifying_key())?
            .into_iter()
            .filter(|r| r.job == JOB && r.kind == Kind::Call)
            .collect();
    let tally = tell_receipts(out, &receipts, &calls)?;
    surprises += tally.surprises;
    if receipts.is_empty() {
        // Nothing to bundle: say why rather than that the bundle is empty.
        bail!("none of the agent's calls reached the proxy");
    }

    claw_tokens::revocation::RevocationStore::new(dir.state()).revoke_job(
        JOB,
        "demo finished",
        claw_tokens::now(),
    )?;
    let status = call(proxy.listen, &minted.token, "GET", &calls[0].url).await?;
    writeln!(
        out,
        "\n7. revoke      clawscope revoke --job {JOB}: the next call is refused ({status})"
    )?;
    proxy.proxy.close_ended_jobs().await;

    // Shutdown signs a last checkpoint, so it covers the job_close.
    proxy.shutdown().await;
    sim.abort();

    let bundle_path = root.join(format!("{JOB}.bundle.json"));
    let options = claw_verifier::bundle::BuildOptions {
        job: JOB.into(),
        include_live_token: false,
        now: claw_tokens::now(),
    };
    let mut bytes = Vec::new();
    let built = claw_verifier::bundle::build(&dir, &options, &mut bytes)?;
    std::fs::write(&bundle_path, &bytes)?;
    writeln!(
        out,
        "8. bundle      clawverify bundle --job {JOB}: {} receipts, the revoked token, the contract,\n              a signed checkpoint and an inclusion proof for every receipt",
        built.receipts
    )?;

    let verification = claw_verifier::verify::verify(&bytes, &trust);
    let report = claw_verifier::verify::report(&verification);
    let report_path = root.join(format!("{JOB}.report.json"));
    std::fs::write(&report_path, serde_json::to_vec_pretty(&report)?)?;
    let page_path = root.join(format!("{JOB}.html"));
    std::fs::write(&page_path, claw_verifier::view::render(&report))?;
    let counts = |status| {
        verification
            .checks
            .iter()
            .filter(|c| c.status == status)
            .count()
    };
    use claw_verifier::verify::Status;
    writeln!(
        out,
        "9. verify      clawverify verify against trust.json alone: {} ({}),\n              {} checks passed, {} skipped, {} failed",
        if verification.passed() {
            "PASS"
        } else {
            "FAIL"
        },
        verification.tier.as_str(),
        counts(Status::Pass),
        counts(Status::Skip),
        counts(Status::Fail)
    )?;
    // The report's own tally of the job's calls, from the bundle alone, against the log's.
    let by_decision = &report["counts"]["by_decision"];
    let count = |label: &str| by_decision[label].as_u64().unwrap_or(0) as usize;
    let (report_allowed, report_refused) = (count("allow"), count("deny"));
    let mark = if (report_allowed, report_refused) == (tally.allowed, tally.refused) {
        "as the log says"
    } else {
        surprises += 1;
        "BAD: not as the log says"
    };
    writeln!(
        out,
        "              the report counts {report_allowed} allowed and {report_refused} refused calls, {mark}"
    )?;
    let closed = built.closed;
    writeln!(
        out,
        "\nfiles: bundle     {}\n       report     {}\n       page       {} (open it in a browser)\n       receipts   {}\n       contracts  {}",
        bundle_path.display(),
        report_path.display(),
        page_path.display(),
        log_dir.display(),
        dir.policies().display()
    )?;
    for (what, file) in &files {
        writeln!(out, "       {what:<10} {}", file.display())?;
    }
    writeln!(
        out,
        "\nagain by hand: clawverify verify {} --trust {}",
        bundle_path.display(),
        dir.trust().display()
    )?;
    if !verification.passed() {
        bail!(
            "the demo's own bundle failed verification: {:?}",
            verification.failed()
        );
    }
    if surprises > 0 {
        bail!("{surprises} check(s) of the agent's calls did not end as the contract says");
    }
    if !closed {
        bail!("the revoked job has no job_close receipt");
    }
    Ok(())
}

/// How the agent's calls went: its output, one check a line (`…: ok  …` or `…: BAD …`).
struct AgentRun {
    lines: Vec<String>,
    /// How it ended.
    ended: String,
    /// Whether it ended on its own, successfully.
    clean: bool,
}

impl AgentRun {
    /// Tells the agent's lines and whether all `checks` came out as expected; returns 1 when
    /// not, else 0.
    fn tell(&self, out: &mut dyn Write, checks: usize) -> std::io::Result<usize> {
        for line in &self.lines {
            writeln!(out, "   {line}")?;
        }
        let as_expected = self.lines.iter().filter(|l| l.contains(": ok  ")).count();
        let bad = self.lines.iter().any(|l| l.contains(": BAD "));
        let fine = self.clean && !bad && as_expected == checks;
        writeln!(
            out,
            "   {} {}: {as_expected} of {checks} checks as expected",
            if fine { "ok " } else { "BAD" },
            self.ended,
        )?;
        Ok(usize::from(!fine))
    }
}

/// What the job's call receipts say.
struct Tally {
    allowed: usize,
    refused: usize,
    /// Calls whose receipt is missing or says otherwise than the contract, plus one when the
    /// job has more or fewer call receipts than calls.
    surprises: usize,
}

/// Tells, for each of `calls`, its receipt among the job's call `receipts` (matched by method,
/// host and path) and whether it decided as the contract says; then the job's tally.
fn tell_receipts(
    out: &mut dyn Write,
    receipts: &[Receipt],
    calls: &[Call],
) -> std::io::Result<Tally> {
    writeln!(
        out,
        "\n              the proxy's receipts of these calls, each written before its answer:"
    )?;
    let mut surprises = 0;
    for call in calls {
        let (host, path) = host_and_path(&call.url);
        let receipt = receipts.iter().find(|r| {
            r.req
                .as_ref()
                .is_some_and(|q| q.method == call.method && q.host == host && q.path == path)
        });
        let Some((receipt, decision)) = receipt.and_then(|r| r.decision.as_ref().map(|d| (r, d)))
        else {
            surprises += 1;
            writeln!(out, "   BAD {:<36} no receipt", call.what)?;
            continue;
        };
        // Refused by network_egress with no upstream answer: no lookup, no connection.
        let kept_in =
            !decision.allow && decision.rule == "network_egress" && receipt.resp.is_none();
        let expected = decision.allow == (call.status == 200) && (!call.outside || kept_in);
        if !expected {
            surprises += 1;
        }
        writeln!(
            out,
            "   {} {:<36} {:<12} receipt {}",
            if expected { "ok " } else { "BAD" },
            call.what,
            if decision.allow { "allowed" } else { "refused" },
            receipt.id
        )?;
        if !decision.allow {
            let outcome = match &receipt.resp {
                None if kept_in => {
                    "refused before any lookup or connection: nothing left the machine"
                }
                None => "nothing was forwarded",
                Some(resp) if !resp.released => "Connect's answer was withheld from the agent",
                Some(_) => "Connect's answer was released",
            };
            writeln!(
                out,
                "              rule {}: {}\n              {outcome}",
                decision.rule, decision.reason
            )?;
        }
    }
    let allowed = receipts
        .iter()
        .filter(|r| r.decision.as_ref().is_some_and(|d| d.allow))
        .count();
    let refused = receipts.len() - allowed;
    let complete = receipts.len() == calls.len();
    if !complete {
        surprises += 1;
    }
    writeln!(
        out,
        "   {} {} calls receipted for {JOB}: {allowed} allowed, {refused} refused",
        if complete { "ok " } else { "BAD" },
        receipts.len()
    )?;
    Ok(Tally {
        allowed,
        refused,
        surprises,
    })
}

/// `bash` on `path` when `curl` is there too; else the name of the one missing.
fn agent_shell(path: Option<&OsStr>) -> Result<PathBuf, &'static str> {
    let find = |name: &str| {
        path.into_iter()
            .flat_map(std::env::split_paths)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(name))
            .find(|file| {
                std::fs::metadata(file)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    };
    match (find("curl"), find("bash")) {
        (None, _) => Err("curl"),
        (Some(_), None) => Err("bash"),
        (Some(_), Some(bash)) => Ok(bash),
    }
}

/// The agent: `bash` leading a process group of its own, with the curls it started. When
/// dropped while still running (on a timeout, or on any error of the demo meanwhile), the whole
/// group is killed; then `bash` is reaped.
struct Reaped {
    child: std::process::Child,
    bash: PathBuf,
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // No signal API without unsafe code: bash's own `kill` ends the group (the leader
            // is not reaped yet, so its id cannot name another group).
            let _ = Command::new(&self.bash)
                .arg("-c")
                .arg(format!("kill -KILL -- -{}", self.child.id()))
                .env_clear()
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The agent's environment (besides `PATH`), as examples/agents/README.md lists it: the proxy
/// with the job token, for plain and TLS URLs, in both cases (curl reads `http_proxy` only in
/// lowercase), and no `NO_PROXY`.
fn agent_env(dir: &DataDir, proxy: SocketAddr, token: &str) -> Vec<(&'static str, String)> {
    let proxy_url = format!("http://{JOB}:{token}@{proxy}");
    let mut env: Vec<(&str, String)> = ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]
        .into_iter()
        .map(|name| (name, proxy_url.clone()))
        .collect();
    env.extend([
        ("OP_CONNECT_HOST", "http://connect.1password.com".into()),
        ("OP_CONNECT_TOKEN", PLACEHOLDER.into()),
        ("OP_VAULT", DEMO_VAULT_ID.into()),
        ("AGENT_ALLOWED_ITEM", DEMO_DB_ITEM_ID.into()),
        ("AGENT_DENIED_ITEM", DEMO_LOGIN_ITEM_ID.into()),
        ("AGENT_OUTSIDE_URL", OUTSIDE_URL.into()),
        ("CURL_CA_BUNDLE", dir.ca_cert().display().to_string()),
    ]);
    env
}

/// Writes agent.sh to `script` and runs `bash script` with only `PATH` and `env` in its
/// environment and its output in `output`; kills it, curls included, after [`AGENT_TIMEOUT`]
/// or when the demo fails meanwhile.
async fn run_agent(
    bash: &Path,
    script: &Path,
    path: &OsStr,
    env: &[(&str, String)],
    output: &Path,
) -> anyhow::Result<AgentRun> {
    std::fs::write(script, AGENT_SH)?;
    let file = std::fs::File::create(output)?;
    let mut command = Command::new(bash);
    command
        .arg(script)
        .env_clear()
        .env("PATH", path)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0);
    if let Some(dir) = script.parent() {
        command.current_dir(dir);
    }
    let started = Instant::now();
    let mut agent = Reaped {
        child: command
            .spawn()
            .with_context(|| format!("starting {}", bash.display()))?,
        bash: bash.to_owned(),
    };
    let pid = agent.child.id();
    let status = loop {
        if let Some(status) = agent.child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() >= AGENT_TIMEOUT {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    drop(agent);
    let took = started.elapsed().as_secs_f64();
    let (ended, clean) = match status {
        Some(status) => (
            format!(
                "the agent (process {pid}) {} after {took:.1} s",
                exit(status)
            ),
            status.success(),
        ),
        None => (
            format!("the agent (process {pid}) was killed after {took:.0} s"),
            false,
        ),
    };
    let lines = std::fs::read_to_string(output)?
        .lines()
        .map(str::to_owned)
        .collect();
    Ok(AgentRun {
        lines,
        ended,
        clean,
    })
}

fn exit(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exited {code}"),
        None => format!("ended: {status}"),
    }
}

/// The agent's calls made by the demo itself (where `bash` or `curl` is missing), told in
/// agent.sh's words.
async fn in_process(proxy: SocketAddr, token: &str, calls: &[Call]) -> anyhow::Result<AgentRun> {
    let mut lines = Vec::new();
    for c in calls {
        let status = call(proxy, token, c.method, &c.url).await?;
        lines.push(if status == c.status {
            format!("in-process agent: ok  {}: {status}", c.what)
        } else {
            format!(
                "in-process agent: BAD {}: {status} (expected {})",
                c.what, c.status
            )
        });
    }
    Ok(AgentRun {
        lines,
        ended: "the demo's own calls".into(),
        clean: true,
    })
}

/// `http://host/path` split into host and path.
fn host_and_path(url: &str) -> (&str, &str) {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    }
}

/// One request through the proxy as the demo job, as an agent would make it: its status.
async fn call(proxy: SocketAddr, token: &str, method: &str, url: &str) -> anyhow::Result<u16> {
    let (host, _) = host_and_path(url);
    let auth = STANDARD.encode(format!("{JOB}:{token}"));
    let request = format!(
        "{method} {url} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: Basic {auth}\r\nAuthorization: Bearer {PLACEHOLDER}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(proxy).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(status)
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
