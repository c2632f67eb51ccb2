//! A 1Password Connect-compatible server for demos and tests.
//!
//! Run with `cargo run -p connect-sim -- --listen 127.0.0.1:8080 --token dev-token`.
//!
//! The official SDKs are the judges of faithfulness (`tests/sdk/` drives this server with the
//! Python SDK 2.1.1 and the JS SDK 1.4.2): routes, JSON shapes, filters, errors and headers
//! follow connect-api.md. `1Password-Connect-Version` is on every response; errors are
//! `{"status","message"}` JSON; one trailing slash is answered directly; SCIM `eq`/`co`/`or`
//! filters take `+` or `%20` for spaces. Writes live in memory. Without `--data` it serves
//! built-in demo data with fixed ids ([`demo`]).
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use connect_sim::{Sim, store::Store};
//! let sim = Sim::new("dev-token", Store::demo()).expect("a non-empty token");
//! let running = connect_sim::spawn(sim).await?; // 127.0.0.1, a free port
//! println!("OP_CONNECT_HOST={}", running.url());
//! # Ok(()) }
//! ```
//!
//! # Decisions
//!
//! Where connect-api.md is silent this server guesses; each guess is written where it is made
//! and listed here:
//! - tokens are opaque strings compared in constant time, not JWTs; a second, *restricted*
//!   token ([`Sim::restricted`]) may only use some vaults, the rest answer 403;
//! - 404 for any unknown vault, item or file id, malformed or not; an unknown route is 404 and
//!   a known route with another method 405, both as JSON;
//! - filter values compare case-sensitively; a filter with only spaces or an empty `filter=`
//!   lists everything;
//! - create ignores a client-sent `id` and `files`; PUT and PATCH keep `id`, `createdAt`,
//!   `lastEditedBy` and `files` from the stored item and bump `version` by one;
//! - generated values default to 32 characters from letters, digits and symbols, and the
//!   field's `generate` is answered `false` with an `entropy` in bits;
//! - activity is newest first, records item and vault reads and writes (403s as `DENY`), and
//!   keeps the latest 10 000 entries;
//! - inline file content is refused (413) above [`DEFAULT_MAX_INLINE_BYTES`] unless changed.

#![forbid(unsafe_code)]

pub mod demo;
pub mod error;
pub mod filter;
pub mod model;
mod routes;
pub mod store;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

pub use routes::app;
use store::Store;
pub use tls::{TlsError, tls_config};

/// The version this server claims (the Go SDK needs ≥ 1.3.0 for files).
pub const CONNECT_VERSION: &str = "1.8.1";

/// The default limit for inline file content, like the real server's
/// `OP_MAX_INLINE_FILE_SIZE_KB` default of 100 KB.
pub const DEFAULT_MAX_INLINE_BYTES: usize = 100 * 1024;

/// A bearer token; `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([redacted])")
    }
}

impl Token {
    /// Constant-time comparison (the length is not secret: real tokens have a fixed shape).
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        let ours = self.0.as_bytes();
        ours.len() == presented.len()
            && ours
                .iter()
                .zip(presented)
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    }
}

/// Why a server could not be configured.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A token is empty or only whitespace.
    #[error("the {0} token must not be empty")]
    EmptyToken(&'static str),
    /// A restricted vault id is not a Connect id.
    #[error("restricted vault {0:?} is not a Connect id (26 chars of [a-z0-9])")]
    BadVaultId(String),
}

/// The server: its tokens, limits and data. Build one, then [`app`], [`serve`] or [`spawn`].
#[derive(Debug)]
pub struct Sim {
    pub(crate) token: Token,
    pub(crate) restricted: Option<(Token, Vec<String>)>,
    pub(crate) max_inline_bytes: usize,
    pub(crate) store: Store,
}

impl Sim {
    /// A server answering `token` with full access to `store`. Refuses an empty token.
    pub fn new(token: impl Into<String>, store: Store) -> Result<Self, ConfigError> {
        let token = token.into();
        if token.trim().is_empty() {
            return Err(ConfigError::EmptyToken("bearer"));
        }
        Ok(Self {
            token: Token(token),
            restricted: None,
            max_inline_bytes: DEFAULT_MAX_INLINE_BYTES,
            store,
        })
    }

    /// Adds a second token that may use only `vaults` (ids); other vaults answer 403
    /// `Authorization: token does not have access to vault`, and listing shows only these.
    pub fn restricted(
        mut self,
        token: impl Into<String>,
        vaults: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, ConfigError> {
        let token = token.into();
        if token.trim().is_empty() {
            return Err(ConfigError::EmptyToken("restricted"));
        }
        let vaults: Vec<String> = vaults.into_iter().map(Into::into).collect();
        if let Some(bad) = vaults.iter().find(|v| !store::is_id(v)) {
            return Err(ConfigError::BadVaultId(bad.clone()));
        }
        self.restricted = Some((Token(token), vaults));
        Ok(self)
    }

    /// Files larger than `bytes` are refused with 413 when asked for inline. Defaults to
    /// [`DEFAULT_MAX_INLINE_BYTES`].
    pub fn max_inline_bytes(mut self, bytes: usize) -> Self {
        self.max_inline_bytes = bytes;
        self
    }
}

/// Serves `sim` over plain HTTP on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, sim: Sim) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(sim).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// Serves `sim` over HTTPS (HTTP/1.1) on `listener` until the future is dropped.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    sim: Sim,
    config: Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    tls::serve(listener, app(sim), config).await
}

/// A server running on a background task; dropping it stops the server.
#[derive(Debug)]
pub struct Running {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the value for `OP_CONNECT_HOST`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts `sim` on 127.0.0.1 at a free port, for tests in this and other crates.
pub async fn spawn(sim: Sim) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        if let Err(error) = serve(listener, sim).await {
            tracing::error!(%error, "connect-sim stopped");
        }
    });
    Ok(Running { addr, task })
}
