//! Helpers for the end-to-end suites: a whole stack on loopback (connect-sim, a data dir with a
//! published contract and a minted token, the proxy in-process), a raw HTTP client and a
//! recording upstream.

pub mod postgres;
pub mod raw;
pub mod recorder;
pub mod schemas;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use claw_policy::contract::Contract;
use claw_policy::datadir::DataDir;
use claw_policy::envelope::Envelope;
use claw_policy::keys::{self, Purpose};
use claw_policy::registry::Registry;
use claw_policy::trust::TrustStore;
use claw_proxy::config::Config;
use claw_proxy::run::Running;
use claw_tokens::mint::{MintRequest, mint};
use claw_verifier::receipt::Receipt;

/// The seed contract.
pub const SEED: &[u8] = include_bytes!("../../examples/policies/1password-readonly-agent.json");

/// The token connect-sim expects; the proxy injects it.
pub const SIM_TOKEN: &str = "sim-connect-token-for-tests";

/// Where the upstream is.
pub enum Upstream {
    /// connect-sim with demo data.
    Sim,
    /// Any HTTP server (e.g. a [`recorder::Recorder`]).
    At(SocketAddr),
}

/// A running stack.
pub struct Stack {
    _tmp: tempfile::TempDir,
    /// The data dir.
    pub dir: DataDir,
    /// The running proxy.
    pub proxy: Running,
    /// The upstream's address.
    pub upstream: SocketAddr,
}

impl Stack {
    /// Starts connect-sim (or uses `upstream`), inits a data dir, publishes `contract`.
    pub async fn start(contract: &[u8], upstream: Upstream) -> Self {
        Self::start_with(contract, upstream, "").await
    }

    /// Like [`Stack::start`], with `limits` (TOML lines such as `upstream_timeout_ms = 300`)
    /// under the config's `[limits]`.
    pub async fn start_with(contract: &[u8], upstream: Upstream, limits: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = DataDir::new(tmp.path().join("claw"));
        claw_proxy::init::init(&dir, false).expect("init");
        publish(&dir, contract);
        let upstream = match upstream {
            Upstream::At(addr) => addr,
            Upstream::Sim => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let sim =
                    connect_sim::Sim::new(SIM_TOKEN, connect_sim::store::Store::demo()).unwrap();
                tokio::spawn(connect_sim::serve(listener, sim));
                addr
            }
        };
        let text = format!(
            "listen = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n[[upstream]]\nhost = \"connect.1password.com\"\nintegration = \"onepassword\"\nurl = \"http://{upstream}\"\ntoken_env = \"OP_CONNECT_TOKEN\"\n[log]\ncheckpoint_interval_ms = 100\n[limits]\n{limits}\n"
        );
        let config = Config::from_toml(&text, Path::new("test.toml")).expect("config");
        let env = |name: &str| (name == "OP_CONNECT_TOKEN").then(|| SIM_TOKEN.to_owned());
        let proxy = claw_proxy::run::start(&dir, config, &env)
            .await
            .expect("proxy starts");
        Self {
            _tmp: tmp,
            dir,
            proxy,
            upstream,
        }
    }

    /// A token for `job` under the contract named `policy`, lasting `ttl` seconds.
    pub fn mint(&self, policy: &str, job: &str, ttl: Option<u64>) -> String {
        let request = MintRequest {
            policy: policy.into(),
            job: job.into(),
            agent: "test-agent".into(),
            ttl,
            ..MintRequest::default()
        };
        mint(&self.dir, &request, claw_tokens::now())
            .expect("mint")
            .token
    }

    /// The proxy's listen address.
    pub fn addr(&self) -> SocketAddr {
        self.proxy.listen
    }

    /// Every receipt in the proxy's log, verified.
    pub fn receipts(&self) -> Vec<Receipt> {
        log_receipts(&self.dir)
    }

    /// The receipt with this id.
    pub fn receipt(&self, id: &str) -> Receipt {
        self.receipts()
            .into_iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("no receipt {id}"))
    }

    /// The data dir's CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.ca_cert()
    }
}

/// The proxy's receipt log directory in a data dir.
pub fn log_dir(dir: &DataDir) -> PathBuf {
    let trust = TrustStore::load(&dir.trust()).unwrap();
    let id = &trust.by_purpose(Purpose::Proxy).next().unwrap().name;
    dir.receipts().join(id)
}

/// Every receipt in a data dir's proxy log, verified (also after the proxy stopped).
pub fn log_receipts(dir: &DataDir) -> Vec<Receipt> {
    let key = keys::read_signing_key(&dir.signing_key(Purpose::Proxy)).unwrap();
    claw_verifier::log::read_log(&log_dir(dir), &key.verifying_key()).unwrap()
}

/// Waits until `done` holds, for effects the proxy produces in the background (checkpoints, the
/// job closer). The 30 s bound is a safety net for a stuck test, not a performance assertion.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Publishes a contract into a data dir; returns its hash.
pub fn publish(dir: &DataDir, contract: &[u8]) -> String {
    let contract = Contract::from_slice(contract).expect("contract");
    let key = keys::read_signing_key(&dir.signing_key(Purpose::Policy)).unwrap();
    let trust = TrustStore::load(&dir.trust()).unwrap();
    Registry::new(dir.policies())
        .publish(&Envelope::sign(&contract, &key), &trust)
        .unwrap()
        .hash
}

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// A loopback port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}
