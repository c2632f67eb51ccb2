//! A 1Password Connect-compatible server for demos and tests.
//!
//! Run with `cargo run -p connect-sim -- --listen 127.0.0.1:8080 --token dev-token`.
//!
//! The official SDKs are the judges of faithfulness: routes, JSON shapes, filters, errors and
//! headers follow the real API (`1Password-Connect-Version` on every response, errors as
//! `{"status","message"}`, trailing slashes answered directly, SCIM `eq`/`co`/`or` filters with
//! `+` or `%20`). Writes live in memory. Without `--data` it serves built-in demo data with fixed
//! ids ([`demo`]).

pub mod demo;
pub mod model;
mod routes;
pub mod store;

use std::sync::Arc;

pub use routes::app_with;
use store::Store;

/// The version this server claims (the Go SDK needs ≥ 1.3.0 for files).
pub const CONNECT_VERSION: &str = "1.8.1";

/// Serves `store` on `listener` with bearer `token` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    token: String,
    store: Store,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        routes::app(Arc::new(routes::State::new(token, store))),
    )
    .await
}
