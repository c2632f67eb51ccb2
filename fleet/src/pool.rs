//! A fixed set of connections, handed out round-robin.
//!
//! A `tokio_postgres::Client` pipelines concurrent queries on one connection, so callers share
//! connections instead of checking them out; a few are enough to keep one slow statement from
//! queueing everything behind it. A slot whose connection broke (server restarted, network
//! cut) is reopened by the next caller that lands on it, so the pool recovers by itself once
//! the server is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Mutex;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls, Statement};
use tracing::debug;

use crate::{FleetError, QUERY_TIMEOUT, within};

/// One open connection and the statements prepared on it.
pub(crate) struct Conn {
    pub(crate) client: Client,
    /// `budget::TAKE`.
    pub(crate) take: Statement,
    /// `revocations::SINCE`.
    pub(crate) since: Statement,
    /// `jobs::SERVE`.
    pub(crate) serve: Statement,
    /// `jobs::LOGS`.
    pub(crate) logs: Statement,
    /// `receipts::INSERT`.
    pub(crate) index: Statement,
}

impl Conn {
    async fn open(config: &Config) -> Result<Self, FleetError> {
        let (client, connection) = within(config.connect(NoTls)).await?;
        tokio::spawn(async move {
            // The task ends when the client is dropped or the connection breaks; the slot
            // sees `is_closed` and reopens.
            if let Err(error) = connection.await {
                debug!(%error, "PostgreSQL connection ended");
            }
        });
        let take = within(client.prepare(crate::budget::TAKE)).await?;
        let since = within(client.prepare(crate::revocations::SINCE)).await?;
        let serve = within(client.prepare(crate::jobs::SERVE)).await?;
        let logs = within(client.prepare(crate::jobs::LOGS)).await?;
        let index = within(client.prepare(crate::receipts::INSERT)).await?;
        Ok(Self {
            client,
            take,
            since,
            serve,
            logs,
            index,
        })
    }
}

/// The connections of one proxy.
pub(crate) struct Pool {
    config: Config,
    slots: Vec<Mutex<Option<Arc<Conn>>>>,
    next: AtomicUsize,
}

impl Pool {
    /// A pool of `size` connections to `config`, opened on first use.
    pub(crate) fn new(config: Config, size: usize) -> Self {
        Self {
            config,
            slots: (0..size.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// An open connection, reopening the slot's if it broke.
    pub(crate) async fn get(&self) -> Result<Arc<Conn>, FleetError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        // Callers that land on a broken slot wait for one reopen instead of each opening
        // their own; the open itself is bounded by QUERY_TIMEOUT.
        let mut slot = self.slots[i].lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.client.is_closed()) {
            return Ok(conn.clone());
        }
        *slot = None;
        let conn = Arc::new(
            tokio::time::timeout(QUERY_TIMEOUT * 2, Conn::open(&self.config))
                .await
                .map_err(|_| FleetError::Timeout(QUERY_TIMEOUT * 2))??,
        );
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// `host:port/db`, without user or password.
    pub(crate) fn server(&self) -> String {
        server(&self.config)
    }
}

/// `host:port/db` of a config, for messages.
pub(crate) fn server(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("");
    format!("{host}:{port}/{db}")
}
