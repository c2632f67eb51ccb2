//! State that several `clawproxy` instances share through PostgreSQL ("fleet mode").
//!
//! One proxy keeps revocations in its data dir and rate-limit budgets in memory. Behind a load
//! balancer, several proxies must agree on both: a token revoked through any of them is refused
//! by all within a second, and a job's budget is spent once, not once per proxy. [`Fleet`] is
//! that shared state:
//!
//! - [`pool`]: a fixed set of connections with their statements prepared, each reopened when
//!   it breaks; every call has a deadline.
//! - [`schema`]: the tables and the budget function, applied in order under an advisory lock
//!   and recorded by version, so any number of proxies can start at once.
//! - [`revocations`]: revocations by token id and by job, and the [`RevocationFeed`] that each
//!   proxy polls into memory and answers from on every request.
//! - [`budget`]: token buckets taken atomically by one statement, on the database's clock.
//! - [`jobs`]: which proxies' logs served each job, for the job's close and its bundle.
//! - [`approvals`]: held requests and the first decision on each, for every proxy and approver.
//! - [`receipts`]: an index of every proxy's receipts, for queries across the fleet.
//!
//! An unreachable or failing server is an error here; the proxy turns it into a refusal.

pub mod approvals;
pub mod budget;
pub mod jobs;
mod pool;
pub mod receipts;
pub mod revocations;
pub mod schema;

use std::time::Duration;

pub use budget::Bucket;
pub use revocations::{RevocationFeed, Revoked, Stale};

use pool::Pool;

/// How long one statement may take before the caller is told the state is unavailable.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// How many connections each proxy keeps (queries are pipelined on each).
const POOL_SIZE: usize = 4;

/// Why the shared state could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The connection string is not a PostgreSQL URL.
    #[error("state {0}")]
    Url(String),
    /// The server refused or failed a statement, or the connection broke.
    #[error("PostgreSQL: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// The server did not answer in time.
    #[error("PostgreSQL did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The database holds a newer schema than this build knows.
    #[error("schema: {0}")]
    Schema(String),
    /// The shared state contradicts this proxy (another proxy claims what is this one's).
    #[error("{0}")]
    Conflict(String),
}

/// The shared state of a fleet of proxies: cheap to clone, safe to share.
#[derive(Clone)]
pub struct Fleet {
    pool: std::sync::Arc<Pool>,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: show only where the state lives.
        f.debug_struct("Fleet")
            .field("server", &self.pool.server())
            .finish()
    }
}

impl Fleet {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/db`), brings the schema up
    /// to date, and opens one connection to prove the server answers.
    pub async fn connect(url: &str) -> Result<Self, FleetError> {
        let config = parse_url(url)?;
        schema::migrate(&config).await?;
        let pool = Pool::new(config, POOL_SIZE);
        pool.get().await?;
        Ok(Self {
            pool: std::sync::Arc::new(pool),
        })
    }

    /// Where the state lives (`host:port/db`), for logs: never the password.
    pub fn server(&self) -> String {
        self.pool.server()
    }
}

/// Parses a state URL, refusing anything but PostgreSQL.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, FleetError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(FleetError::Url(
            "must be a postgres://user@host:port/db URL".into(),
        ));
    }
    url.parse()
        .map_err(|e: tokio_postgres::Error| FleetError::Url(format!("is not usable: {e}")))
}

/// Runs `call` with [`QUERY_TIMEOUT`].
async fn within<T>(
    call: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, FleetError> {
    match tokio::time::timeout(QUERY_TIMEOUT, call).await {
        Ok(result) => result.map_err(FleetError::from),
        Err(_) => Err(FleetError::Timeout(QUERY_TIMEOUT)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_postgres_urls_are_accepted() {
        assert!(parse_url("postgres://claw@127.0.0.1:5432/claw").is_ok());
        assert!(parse_url("postgresql://claw@localhost/claw").is_ok());
        for bad in ["mysql://x@y/z", "127.0.0.1:5432", "", "postgres://[::1"] {
            assert!(matches!(parse_url(bad), Err(FleetError::Url(_))), "{bad}");
        }
    }

    #[test]
    fn errors_never_show_the_password() {
        let err = parse_url("postgres://claw:hunter2@[::1/claw").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
