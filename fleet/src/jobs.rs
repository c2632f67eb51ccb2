//! Which logs served each job. In a fleet a job's receipts spread over the logs of every
//! proxy the balancer sent it to; the `job_close` each of them writes lists all of those logs,
//! so a bundle that leaves one out cannot pass as complete.

use crate::{Fleet, FleetError, within};

/// Records that `log` serves `job` (idempotent).
pub(crate) const SERVE: &str =
    "INSERT INTO claw_job_logs (job, log) VALUES ($1, $2) ON CONFLICT DO NOTHING";

/// The logs that served a job, sorted.
pub(crate) const LOGS: &str = "SELECT log FROM claw_job_logs WHERE job = $1 ORDER BY log";

impl Fleet {
    /// Records that `log` serves `job`. Call it before the job's first receipt in that log:
    /// a log the shared state does not know of would be missing from the job's close.
    pub async fn serve_job(&self, job: &str, log: &str) -> Result<(), FleetError> {
        let conn = self.pool.get().await?;
        within(conn.client.execute(&conn.serve, &[&job, &log])).await?;
        Ok(())
    }

    /// The logs that served `job`, sorted.
    pub async fn job_logs(&self, job: &str) -> Result<Vec<String>, FleetError> {
        let conn = self.pool.get().await?;
        let rows = within(conn.client.query(&conn.logs, &[&job])).await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }
}
