//! `clawproxy run`: load and check everything, bind, serve, and shut down cleanly.

use std::sync::Arc;

use anyhow::Context;
use claw_fleet::{Fleet, RevocationFeed};
use claw_policy::approval::{ApprovalStore, Approvals, SharedApprovals};
use claw_policy::datadir::DataDir;
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::auth::Auth;
use crate::config::Config;
use crate::intercept::Interceptor;
use crate::ratelimit::{Budgets, RateLimiter};
use crate::receipt::Evidence;
use crate::stack::{Proxy, Shared};

/// A running proxy's bound addresses and its stop switch.
pub struct Running {
    /// The proxy listener.
    pub listen: std::net::SocketAddr,
    /// The admin listener.
    pub admin: std::net::SocketAddr,
    /// The proxy, for tests and the demo.
    pub proxy: Arc<Proxy>,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets the log flush and sign a final checkpoint, and waits.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }
}

/// Loads the config and data dir and starts serving on the configured (or overridden)
/// addresses. Everything that can be wrong is checked before a port binds.
pub async fn start(
    dir: &DataDir,
    config: Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Running> {
    let mut auth = Auth::new(dir).context("loading keys, trust and revocations")?;
    let fleet = match &config.state {
        None => None,
        Some(url) => {
            let fleet = Fleet::connect(url.expose())
                .await
                .context("connecting to the fleet's state (config key `state`)")?;
            let feed = RevocationFeed::start(fleet.clone())
                .await
                .context("reading the fleet's revocations")?;
            info!(server = %fleet.server(), "fleet mode: revocations, rate limits and approvals shared");
            if config.instance.is_none() {
                warn!(
                    "fleet mode without `instance`: this proxy logs as clawproxy/<proxy id>, \
                     like any other proxy of the fleet without one, and its receipts stay out \
                     of the fleet's receipt index; give each proxy its own `instance` \
                     (--instance) so a job's logs can be told apart, bundled and queried"
                );
            }
            auth = auth.with_fleet(feed)?;
            Some(fleet)
        }
    };
    let budgets = match &fleet {
        None => Budgets::Local(RateLimiter::default()),
        Some(fleet) => Budgets::Fleet(fleet.clone()),
    };
    let interceptor = Interceptor::load(dir).context("loading the interception CA")?;
    let evidence = Evidence::open(dir, &config)
        .await
        .context("opening the receipt log")?;
    let listener = TcpListener::bind(config.listen_addr())
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let admin_listener = TcpListener::bind(config.admin_addr())
        .await
        .with_context(|| format!("binding admin {}", config.admin))?;
    let listen = listener.local_addr()?;
    let admin = admin_listener.local_addr()?;
    let index_fleet = fleet.clone();
    let proxy = Arc::new(Proxy::new(
        config,
        auth,
        interceptor,
        evidence,
        env,
        vec![listen, admin],
        Shared {
            approvals: match &fleet {
                None => ApprovalStore::Dir(Approvals::new(dir)),
                Some(fleet) => ApprovalStore::Fleet(SharedApprovals::new(fleet.clone())),
            },
            budgets,
            fleet,
        },
    )?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // Fleet mode: the receipts go into the fleet's index too, for `clawverify query --state`.
    let (stop_index, index_stopped) = tokio::sync::oneshot::channel::<()>();
    // Only a named instance: proxies sharing one origin would claim each other's rows.
    let indexer = index_fleet
        .filter(|_| proxy.config.instance.is_some())
        .map(|fleet| {
            tokio::spawn(claw_verifier::query::fleet::follow(
                fleet,
                proxy.evidence.log().clone(),
                async {
                    let _ = index_stopped.await;
                },
            ))
        });
    let admin_task = tokio::spawn(crate::admin::serve(proxy.clone(), admin_listener));
    // Without the socket the proxy still serves; `clawproxy rotate` then says to restart it.
    let control_task = match crate::control::bind(proxy.evidence.log().dir()) {
        Ok(listener) => Some(tokio::spawn(crate::control::serve(proxy.clone(), listener))),
        Err(error) => {
            warn!(%error, "no control socket: `clawproxy rotate` cannot reach this proxy");
            None
        }
    };
    let closer = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                proxy.close_ended_jobs().await;
            }
        })
    };
    let serving = proxy.clone();
    let done = tokio::spawn(async move {
        crate::listen::serve(serving.clone(), listener, async {
            let _ = stopped.await;
        })
        .await;
        let grace = serving.config.limits.drain_timeout();
        let left = serving.drain.drain(grace).await;
        if left > 0 {
            warn!(
                connections = left,
                ?grace,
                "drain timed out; their receipts now fail closed"
            );
        }
        admin_task.abort();
        if let Some(control) = control_task {
            control.abort();
            let _ = std::fs::remove_file(serving.evidence.log().dir().join(crate::control::SOCKET));
        }
        closer.abort();
        serving.evidence.shutdown().await;
        let _ = stop_index.send(());
        if let Some(indexer) = indexer {
            let _ = indexer.await;
        }
    });
    if proxy.admin_approvals_on() && !admin.ip().is_loopback() {
        warn!(
            %admin,
            "the admin approval routes are on and the admin address is not loopback: their \
             bearer token crosses the network in clear; put TLS in front or bind 127.0.0.1"
        );
    }
    info!(%listen, %admin, "clawproxy listening");
    Ok(Running {
        listen,
        admin,
        proxy,
        stop,
        done,
    })
}
