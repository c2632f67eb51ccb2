//! Graceful shutdown. Every connection, interception and tunnel task holds a [`Watcher`]; on
//! SIGTERM the accept loop stops, [`Drain::drain`] raises the signal, idle keep-alive connections
//! close, requests in flight finish (with their receipts), tunnels end with a `tunnel_close`
//! receipt, and only then does the log write its final checkpoint.

use std::time::Duration;

use tokio::sync::watch;

/// The shutdown signal and the count of tasks still holding a watcher.
#[derive(Debug)]
pub struct Drain(watch::Sender<bool>);

/// One task's view of the signal; dropping it tells [`Drain::drain`] the task is done.
#[derive(Debug)]
pub struct Watcher(watch::Receiver<bool>);

impl Default for Drain {
    fn default() -> Self {
        Self(watch::channel(false).0)
    }
}

impl Drain {
    /// A watcher for a task that must finish before shutdown completes.
    pub fn watcher(&self) -> Watcher {
        Watcher(self.0.subscribe())
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Raises the signal and waits until every watcher is gone or `grace` has passed. Returns
    /// how many tasks were still running (their receipts then fail closed: the agent gets 503).
    pub async fn drain(&self, grace: Duration) -> usize {
        self.0.send_replace(true);
        let _ = tokio::time::timeout(grace, self.0.closed()).await;
        self.0.receiver_count()
    }
}

impl Watcher {
    /// Resolves once shutdown has begun.
    pub async fn draining(&mut self) {
        // An error means the Drain is gone, which only happens at shutdown.
        let _ = self.0.wait_for(|draining| *draining).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn drain_waits_for_watchers_and_reports_stragglers() {
        let drain = Drain::default();
        assert_eq!(drain.drain(Duration::from_millis(10)).await, 0);

        let drain = Drain::default();
        let mut quick = drain.watcher();
        let task = tokio::spawn(async move {
            quick.draining().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
        let _stuck = drain.watcher();
        assert!(!drain.is_draining());
        assert_eq!(drain.drain(Duration::from_millis(500)).await, 1);
        assert!(drain.is_draining());
        task.await.unwrap();
    }
}
