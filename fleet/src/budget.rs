//! Rate-limit budgets shared by the fleet: token buckets in one row per budget, taken by
//! the `claw_take` function (see [`crate::schema`]) in a single statement.

use std::time::Duration;

use crate::{Fleet, FleetError, within};

/// `claw_take(key, caps, rates)`: seconds to wait, 0 when a token was taken from every bucket.
pub(crate) const TAKE: &str = "SELECT claw_take($1, $2, $3)";

/// One bucket of a budget: it holds up to `capacity` tokens and gains `per_second`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bucket {
    /// The most tokens it holds (the burst).
    pub capacity: f64,
    /// Tokens added per second.
    pub per_second: f64,
}

impl Fleet {
    /// Takes one token from every bucket of the budget `key`, or says how long until each has
    /// one. Buckets are created full; a change of sizes starts the budget over, full.
    pub async fn take(&self, key: &str, buckets: &[Bucket]) -> Result<Duration, FleetError> {
        let caps: Vec<f64> = buckets.iter().map(|b| b.capacity).collect();
        let rates: Vec<f64> = buckets.iter().map(|b| b.per_second).collect();
        let conn = self.pool.get().await?;
        let row = within(conn.client.query_one(&conn.take, &[&key, &caps, &rates])).await?;
        let wait: f64 = row.get(0);
        // A finite, non-negative number of seconds from our own function; clamp anyway.
        Ok(Duration::try_from_secs_f64(wait).unwrap_or(Duration::from_secs(3600)))
    }
}
