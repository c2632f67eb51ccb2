//! `clawproxy`: the enforcing forward proxy. See `clawproxy --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use claw_policy::datadir::DataDir;
use claw_proxy::config::{Config, Overrides, StateUrl};
use claw_verifier::receipt::RotatedKey;

/// The enforcing forward proxy for AI agents that handle secrets.
///
/// Agents set HTTP_PROXY/HTTPS_PROXY to this proxy with their job token as the password; each
/// request is checked against the token's signed Work Policy Contract, sent upstream with the
/// real credential injected, and receipted in a signed, durable log.
///
/// Quickstart:
///   clawproxy demo                              # everything end to end on loopback
///
/// By hand:
///   clawproxy init --data-dir .claw             # keys, CA, trust.json, clawproxy.toml
///   clawcontrols publish examples/policies/1password-readonly-agent.json
///   OP_CONNECT_TOKEN=… clawproxy run
///
/// Exit codes: 0 ok, 1 failure while running, 2 usage or configuration error.
#[derive(Debug, Parser)]
#[command(name = "clawproxy", version, verbatim_doc_comment)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a data dir: signing keys (0600), interception CA, trust.json, clawproxy.toml.
    ///
    /// Example: clawproxy init --data-dir /var/lib/claw
    Init {
        #[command(flatten)]
        data: DataDirArg,
        /// Replace an existing data dir's keys and config.
        #[arg(long)]
        force: bool,
    },
    /// Run the proxy until SIGTERM or Ctrl-C.
    ///
    /// Example: OP_CONNECT_TOKEN=$(cat connect.token) clawproxy run --listen 127.0.0.1:3128
    Run {
        #[command(flatten)]
        data: DataDirArg,
        /// Config file. Defaults to <data dir>/clawproxy.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override `listen` from the config.
        #[arg(long)]
        listen: Option<String>,
        /// Override `admin` from the config.
        #[arg(long)]
        admin: Option<String>,
        /// Fleet mode: share revocations and rate-limit budgets with other proxies through
        /// PostgreSQL (overrides `state` from the config).
        ///
        /// Example: --state postgres://claw@10.0.0.5:5432/claw
        #[arg(long, env = "CLAW_STATE", hide_env_values = true)]
        state: Option<String>,
        /// Fleet mode: this proxy's name among the proxies sharing the state (overrides
        /// `instance` from the config). Its receipts go to its own log,
        /// clawproxy/<proxy id>/<instance>.
        ///
        /// Example: --instance proxy-a
        #[arg(long, env = "CLAW_INSTANCE")]
        instance: Option<String>,
    },
    /// Replace one key while the proxy runs (or not), and record it in the receipt log.
    ///
    /// The new key is written (0600) and its public half added to trust.json beside the old
    /// one, so tokens, contracts and receipts signed before stay verifiable. Each proxy running
    /// on the data dir puts the new key in use at once, without dropping connections, and
    /// records a key_rotation receipt (a proxy key's rotation is signed by the old key); with
    /// no proxy running, this command records it in the log itself.
    ///
    ///   issuer  tokens minted from now on carry the new kid; earlier ones stay valid until
    ///           they expire (revoke them to cut them off)
    ///   proxy   receipts and checkpoints after the rotation; the proxy id does not change
    ///   policy  contracts signed from now on; earlier ones still verify
    ///   audit   body hashes from now on; the old key stays as keys/audit-<kid>.key for
    ///           `clawverify audit-hash --kid`
    ///   ca      leaves of connections made from now on: give agents the new keys/ca.pem
    ///
    /// Example: clawproxy rotate issuer --data-dir /var/lib/claw
    #[command(verbatim_doc_comment)]
    Rotate {
        /// Which key.
        #[arg(value_enum)]
        key: KeyArg,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// Load and check the config, then exit (0 valid, 2 invalid).
    ///
    /// Example: clawproxy check-config --data-dir .claw
    CheckConfig {
        #[command(flatten)]
        data: DataDirArg,
        /// Config file. Defaults to <data dir>/clawproxy.toml.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// The quickstart: init, publish, mint, run an agent through the proxy, verify.
    ///
    /// Without --data-dir it works in a fresh temporary directory and prints its path.
    Demo {
        /// Data dir for the demo (must not be initialised yet).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// The keys `rotate` replaces.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum KeyArg {
    Issuer,
    Proxy,
    Policy,
    Audit,
    Ca,
}

impl KeyArg {
    fn rotated(self) -> RotatedKey {
        match self {
            KeyArg::Issuer => RotatedKey::Issuer,
            KeyArg::Proxy => RotatedKey::Proxy,
            KeyArg::Policy => RotatedKey::Policy,
            KeyArg::Audit => RotatedKey::Audit,
            KeyArg::Ca => RotatedKey::Ca,
        }
    }
}

#[derive(Debug, clap::Args)]
struct DataDirArg {
    /// The data dir (keys, policies, receipts, state).
    #[arg(long, env = "CLAW_HOME", default_value = ".claw")]
    data_dir: PathBuf,
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("clawproxy: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Init { data, force } => {
            let dir = DataDir::new(&data.data_dir);
            let done = claw_proxy::init::init(&dir, force)?;
            println!(
                "initialised {} (proxy id {})",
                dir.root().display(),
                done.keys.proxy_id
            );
            println!();
            println!("next steps:");
            println!(
                "  clawcontrols publish examples/policies/1password-readonly-agent.json --data-dir {}",
                dir.root().display()
            );
            println!(
                "  clawscope mint --policy 1password-readonly-agent --job job-1 --agent my-agent --data-dir {}",
                dir.root().display()
            );
            println!(
                "  OP_CONNECT_TOKEN=… clawproxy run --data-dir {}",
                dir.root().display()
            );
            println!(
                "  agents trust {} and use HTTPS_PROXY=http://job-1:$TOKEN@127.0.0.1:3128",
                dir.ca_cert().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { data, config } => {
            let path = config.unwrap_or_else(|| DataDir::new(&data.data_dir).config());
            let config = Config::load(&path)?;
            println!(
                "{}: ok (listen {}, admin {}, {} upstream(s))",
                path.display(),
                config.listen,
                config.admin,
                config.upstream.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            data,
            config,
            listen,
            admin,
            state,
            instance,
        } => {
            let dir = DataDir::new(&data.data_dir);
            let path = config.unwrap_or_else(|| dir.config());
            let overrides = Overrides {
                listen,
                admin,
                state: state.map(StateUrl::new),
                instance,
            };
            let config = Config::load(&path)?.with_overrides(overrides, &path)?;
            init_tracing();
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let env = |name: &str| std::env::var(name).ok();
                let running = claw_proxy::run::start(&dir, config, &env).await?;
                // Handlers first: a SIGTERM sent as soon as the line below is read must drain,
                // not kill.
                let signals = Signals::install();
                println!(
                    "clawproxy listening on {} (admin {})",
                    running.listen, running.admin
                );
                signals.wait(&running.proxy).await;
                eprintln!("clawproxy: shutting down (draining, final checkpoint)");
                running.shutdown().await;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Rotate { key, data } => {
            let dir = DataDir::new(&data.data_dir);
            let key = key.rotated();
            let runtime = tokio::runtime::Runtime::new()?;
            let done = runtime.block_on(claw_proxy::rotate::rotate(&dir, key))?;
            let r = &done.rotation;
            println!("rotated the {} key: {} -> {}", key.as_str(), r.old, r.new);
            for recorded in &done.recorded {
                println!(
                    "  key_rotation receipt {} (seq {}) in {}{}",
                    recorded.id,
                    recorded.seq,
                    recorded.log,
                    if done.live {
                        ", by the running proxy, which uses the new key now"
                    } else {
                        " (no proxy running: the new key is used from its next start)"
                    }
                );
            }
            match key {
                RotatedKey::Ca => println!(
                    "  agents must now trust {} (the old CA signs no new connection)",
                    dir.ca_cert().display()
                ),
                RotatedKey::Audit => println!(
                    "  the old key is kept as {} (clawverify audit-hash --kid {})",
                    dir.retired_audit_key(&r.old).display(),
                    r.old
                ),
                _ => println!(
                    "  {} keeps the old public key: what it signed stays verifiable",
                    dir.trust().display()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo { data_dir } => {
            claw_proxy::demo::run(data_dir, &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Structured logs on stderr: `CLAW_LOG` takes an EnvFilter (default `info`),
/// `CLAW_LOG_FORMAT=json` switches to JSON lines; colours only on a terminal (a log file or
/// journald gets plain text).
fn init_tracing() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CLAW_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("CLAW_LOG_FORMAT").as_deref() == Ok("json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init();
    }
}

/// The signals `run` answers, registered before it says it is listening.
struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            term: signal(SignalKind::terminate()).expect("SIGTERM handler"),
            hup: signal(SignalKind::hangup()).expect("SIGHUP handler"),
        }
    }

    /// Waits for SIGTERM or Ctrl-C; SIGHUP meanwhile reloads the upstream tokens, the admin
    /// token and trust.json from their files.
    async fn wait(mut self, proxy: &claw_proxy::stack::Proxy) {
        loop {
            tokio::select! {
                _ = self.term.recv() => return,
                _ = tokio::signal::ctrl_c() => return,
                _ = self.hup.recv() => {
                    proxy.reload_tokens();
                    proxy.reload_admin_token();
                    match proxy.auth.reload() {
                        Ok(()) => tracing::info!("trust.json reloaded"),
                        Err(error) => tracing::warn!(error = %format!("{error:#}"), "trust.json reload failed; keeping the current trust"),
                    }
                }
            }
        }
    }
}
