//! `clawproxy demo`: the quickstart on the embedded default, end to end on loopback.
//!
//! In one process: a fresh data dir, the seed contract published, connect-sim and the proxy on
//! free loopback ports, a job token, an agent making allowed and denied calls through the proxy,
//! the token revoked, the job closed, its proof bundle built and verified offline, and the
//! reviewer's page written. Everything it started stops
//! when it returns.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;

/// The seed contract, verbatim.
pub const SEED_CONTRACT: &str =
    include_str!("../../examples/policies/1password-readonly-agent.json");

const JOB: &str = "demo-job";

/// Runs the demo in `data_dir` (a fresh temporary directory when `None`), telling the story on
/// `out`.
pub fn run(data_dir: Option<PathBuf>, out: &mut dyn Write) -> anyhow::Result<()> {
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
    runtime.block_on(story(&root, out))
}

async fn story(root: &Path, out: &mut dyn Write) -> anyhow::Result<()> {
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
        "              the agent gets HTTP(S)_PROXY=http://{JOB}:<token>@{} and nothing else\n",
        proxy.listen
    )?;

    writeln!(
        out,
        "6. agent       calls through the proxy (OP_CONNECT_TOKEN is a placeholder):"
    )?;
    let vault = connect_sim::demo::DEMO_VAULT_ID;
    let item = |id: &str| format!("http://connect.1password.com/v1/vaults/{vault}/items/{id}");
    let calls = [
        (
            "read the DATABASE item",
            "GET",
            item(connect_sim::demo::DEMO_DB_ITEM_ID),
            200,
        ),
        (
            "read the LOGIN item",
            "GET",
            item(connect_sim::demo::DEMO_LOGIN_ITEM_ID),
            403,
        ),
        (
            "delete an item",
            "DELETE",
            item(connect_sim::demo::DEMO_DB_ITEM_ID),
            403,
        ),
        (
            "reach a host outside the contract",
            "GET",
            "http://example.org/".into(),
            403,
        ),
    ];
    let mut surprises = 0;
    for (what, method, url, expected) in &calls {
        let (status, receipt, message) = call(proxy.listen, &minted.token, method, url).await?;
        let verdict = if status == 200 {
            "allowed".to_owned()
        } else {
            format!("refused {status}")
        };
        let mark = if status == *expected {
            "ok "
        } else {
            surprises += 1;
            "BAD"
        };
        writeln!(out, "   {mark} {what:<36} {verdict:<12} receipt {receipt}")?;
        if !message.is_empty() {
            writeln!(out, "              {message}")?;
        }
    }

    claw_tokens::revocation::RevocationStore::new(dir.state()).revoke_job(
        JOB,
        "demo finished",
        claw_tokens::now(),
    )?;
    let (status, _, _) = call(proxy.listen, &minted.token, "GET", &calls[0].2).await?;
    writeln!(
        out,
        "\n7. revoke      clawscope revoke --job {JOB}: the next call is refused ({status})"
    )?;
    proxy.proxy.close_ended_jobs().await;

    let log_dir = dir.receipts().join(&init.keys.proxy_id);
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
    if surprises > 0 || !closed {
        bail!("{surprises} call(s) did not end as the contract says");
    }
    Ok(())
}

/// One request through the proxy as the demo job: (status, receipt id, message).
async fn call(
    proxy: SocketAddr,
    token: &str,
    method: &str,
    url: &str,
) -> anyhow::Result<(u16, String, String)> {
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default();
    let auth = STANDARD.encode(format!("{JOB}:{token}"));
    let request = format!(
        "{method} {url} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: Basic {auth}\r\nAuthorization: Bearer placeholder\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(proxy).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response)).await??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let receipt = head
        .lines()
        .find_map(|l| l.strip_prefix("x-clawproxy-receipt: "))
        .unwrap_or("-")
        .to_owned();
    let message = serde_json::from_str::<serde_json::Value>(body.trim())
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
        .unwrap_or_default();
    Ok((status, receipt, message))
}

fn random_token() -> String {
    let mut bytes = [0u8; 24];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}
