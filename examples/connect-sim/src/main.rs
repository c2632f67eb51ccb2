//! `connect-sim`: a 1Password Connect-compatible server with demo data.
//!
//! Run with `cargo run -p connect-sim -- --listen 127.0.0.1:8080 --token dev-token`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use connect_sim::store::Store;
use connect_sim::{DEFAULT_MAX_INLINE_BYTES, Sim, demo};

/// A 1Password Connect-compatible server for demos and tests. Data lives in memory; writes are
/// lost on exit. Without --data it serves demo data: a vault named vault_agent_secrets_prod
/// (id ytrfte14kw1uex5txaore1emkz) with a DATABASE (prod-db), an API_CREDENTIAL (stripe-api),
/// a LOGIN (admin-login) and a SECURE_NOTE (runbook, one file), and a vault named vault_other.
///
/// It prints `connect-sim listening on http(s)://ADDR` on stdout once the port is bound.
/// Logs go to stderr (level from CLAW_LOG, default info) and never contain tokens.
///
/// Example:
///   connect-sim --listen 127.0.0.1:8080 --token dev-token \
///     --restricted-token narrow --restricted-vaults o7h3rv4u1tv4u1tv4u1tv4u1tv
///
/// Exit codes: 0 stopped cleanly, 1 the server failed, 2 usage or input error.
#[derive(Debug, Parser)]
#[command(name = "connect-sim", version, verbatim_doc_comment)]
struct Cli {
    /// Address to listen on (use port 0 for any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The bearer token clients must send (OP_CONNECT_TOKEN for the SDKs); must not be empty.
    #[arg(long, env = "CONNECT_SIM_TOKEN", hide_env_values = true)]
    token: String,
    /// Data file instead of the demo data:
    /// {"vaults":[{<Vault fields>, "items":[<FullItem>…], "files":{"<fileId>":"<base64>"}}]}
    #[arg(long)]
    data: Option<PathBuf>,
    /// A second token that may use only --restricted-vaults; other vaults answer 403.
    #[arg(long, requires = "restricted_vaults", hide_env_values = true)]
    restricted_token: Option<String>,
    /// Vault ids the restricted token may use (comma-separated).
    #[arg(long, value_delimiter = ',', requires = "restricted_token")]
    restricted_vaults: Vec<String>,
    /// Largest file, in KiB, answered inline with ?inline_files=true (else 413).
    #[arg(long, env = "OP_MAX_INLINE_FILE_SIZE_KB", default_value_t = DEFAULT_MAX_INLINE_BYTES / 1024)]
    max_inline_file_size_kb: usize,
    /// PEM certificate chain: serve HTTPS instead of HTTP (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("connect-sim: error: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs to stderr: level from `CLAW_LOG` (an EnvFilter, default `info`), JSON lines when
/// `CLAW_LOG_FORMAT=json`, colours only on a terminal.
fn init_logs() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLAW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if std::env::var("CLAW_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// Input errors (exit 2) are reported here; server failures are returned (exit 1).
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let usage = |error: &dyn std::fmt::Display| {
        eprintln!("connect-sim: error: {error}");
        Ok(ExitCode::from(2))
    };
    let store = match &cli.data {
        Some(path) => match Store::from_file(path) {
            Ok(store) => store,
            Err(error) => return usage(&error),
        },
        None => Store::demo(),
    };
    let vaults = store.vaults();
    let mut sim = match Sim::new(cli.token, store) {
        Ok(sim) => sim.max_inline_bytes(cli.max_inline_file_size_kb.saturating_mul(1024)),
        Err(error) => return usage(&error),
    };
    if let Some(token) = cli.restricted_token {
        sim = match sim.restricted(token, cli.restricted_vaults) {
            Ok(sim) => sim,
            Err(error) => return usage(&error),
        };
    }
    let tls = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => match connect_sim::tls_config(cert, key) {
            Ok(config) => Some(config),
            Err(error) => return usage(&error),
        },
        _ => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cli.listen)
            .await
            .with_context(|| format!("binding {}", cli.listen))?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        for (id, name) in &vaults {
            tracing::info!(vault.id = %id, vault.name = %name, "serving vault");
        }
        if cli.data.is_none() {
            tracing::info!(vault.id = %demo::DEMO_VAULT_ID, "demo data (OP_VAULT)");
        }
        println!("connect-sim listening on {scheme}://{addr}");
        let served = match tls {
            Some(config) => connect_sim::serve_tls(listener, sim, config).await,
            None => connect_sim::serve(listener, sim).await,
        };
        served.context("serving")?;
        Ok(ExitCode::SUCCESS)
    })
}
