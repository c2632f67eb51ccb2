//! `connect-sim`: a 1Password Connect-compatible server with demo data.
//!
//! Run with `cargo run -p connect-sim -- --listen 127.0.0.1:8080 --token dev-token`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use connect_sim::store::Store;

/// A 1Password Connect-compatible server for demos and tests (in-memory; writes are lost on
/// exit). Without --data it serves demo data: a vault named vault_agent_secrets_prod with a
/// DATABASE, an API_CREDENTIAL, a LOGIN and a SECURE_NOTE item (with a file), and vault_other.
///
/// Example: connect-sim --listen 127.0.0.1:8080 --token dev-token
#[derive(Debug, Parser)]
#[command(name = "connect-sim", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
    /// The bearer token clients must send (env OP_SIM_TOKEN).
    #[arg(long, env = "OP_SIM_TOKEN")]
    token: String,
    /// Data file: {"vaults":[{<Vault>, "items":[<FullItem>…], "files":{"<id>":"<base64>"}}]}.
    #[arg(long)]
    data: Option<PathBuf>,
    /// A second token that may only use --restricted-vaults (others answer 403).
    #[arg(long, requires = "restricted_vaults")]
    restricted_token: Option<String>,
    /// Vault ids the restricted token may use (comma-separated).
    #[arg(long, value_delimiter = ',')]
    restricted_vaults: Option<Vec<String>>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.token.trim().is_empty() {
        eprintln!("connect-sim: error: --token must not be empty");
        return ExitCode::from(2);
    }
    let store = match &cli.data {
        Some(path) => Store::from_file(path),
        None => Ok(Store::demo()),
    };
    let store = match store {
        Ok(store) => store,
        Err(error) => {
            eprintln!("connect-sim: error: {error}");
            return ExitCode::from(2);
        }
    };
    let restricted = cli.restricted_token.zip(cli.restricted_vaults);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result: std::io::Result<()> = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&cli.listen).await?;
        println!("connect-sim listening on http://{}", listener.local_addr()?);
        axum::serve(
            listener,
            connect_sim::app_with(cli.token, restricted, store),
        )
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("connect-sim: error: {error}");
            ExitCode::from(1)
        }
    }
}
