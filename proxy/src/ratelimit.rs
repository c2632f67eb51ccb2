//! Per-job request budgets from the contract's `rate_limits`: two token buckets per job and
//! class (reads, writes), one refilled per second (sized by `burst`), one per hour. A request
//! is admitted only when both have a token, and then takes one from each.
//!
//! A lone proxy keeps its buckets in memory ([`RateLimiter`]; a restart refills them). A
//! fleet keeps them in PostgreSQL ([`claw_fleet::Fleet::take`]), so a job's budget is spent
//! once across every proxy; both size buckets with [`buckets`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use claw_fleet::{Fleet, FleetError};
use claw_policy::contract::Rate;

/// Where budgets are kept.
pub enum Budgets {
    /// In this proxy's memory.
    Local(RateLimiter),
    /// In the fleet's database, shared with every proxy using it.
    Fleet(Fleet),
}

impl Budgets {
    /// Takes one request of `class` from `job`'s budget under `rate`: `Ok(Err(wait))` when
    /// there is no room; `Err` when a fleet's budget cannot be reached (the caller refuses).
    pub async fn admit(
        &self,
        job: &str,
        class: Class,
        rate: &Rate,
    ) -> Result<Result<(), Duration>, FleetError> {
        match self {
            Budgets::Local(limiter) => Ok(limiter.admit(job, class, rate, Instant::now())),
            Budgets::Fleet(fleet) => {
                // Classes hold no ':', so the key is unambiguous whatever the job id.
                let key = format!("{}:{job}", class.as_str());
                let wait = fleet.take(&key, &buckets(rate)).await?;
                Ok(if wait.is_zero() { Ok(()) } else { Err(wait) })
            }
        }
    }
}

/// The buckets a rate asks for: per second (holding `burst`, default the rate) and per hour.
pub fn buckets(rate: &Rate) -> Vec<claw_fleet::Bucket> {
    let mut buckets = Vec::new();
    if let Some(per_second) = rate.per_second {
        buckets.push(claw_fleet::Bucket {
            capacity: f64::from(rate.burst.unwrap_or(per_second)),
            per_second: f64::from(per_second),
        });
    }
    if let Some(per_hour) = rate.per_hour {
        buckets.push(claw_fleet::Bucket {
            capacity: f64::from(per_hour),
            per_second: f64::from(per_hour) / 3600.0,
        });
    }
    buckets
}

/// Reads or writes: counted apart, as 1Password's own limits are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Operations that change nothing.
    Reads,
    /// `create_item`, `update_item`, `patch_item`, `delete_item`.
    Writes,
}

impl Class {
    /// The contract's name for the class.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Reads => "reads",
            Class::Writes => "writes",
        }
    }
}

/// Budgets of every job seen.
#[derive(Debug, Default)]
pub struct RateLimiter {
    jobs: Mutex<HashMap<(String, Class), Budget>>,
}

/// Jobs idle this long are forgotten when the map grows (their buckets would be full anyway).
const FORGET_AFTER: Duration = Duration::from_secs(3600);
const PRUNE_ABOVE: usize = 10_000;

impl RateLimiter {
    /// Takes one request of `class` from `job`'s budget under `rate`, or says how long to wait.
    pub fn admit(
        &self,
        job: &str,
        class: Class,
        rate: &Rate,
        now: Instant,
    ) -> Result<(), Duration> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.len() > PRUNE_ABOVE {
            jobs.retain(|_, b| now.duration_since(b.used) < FORGET_AFTER);
        }
        let budget = jobs
            .entry((job.to_owned(), class))
            .or_insert_with(|| Budget::new(rate, now));
        if budget.rate != *rate {
            // A new contract version for the job: start from its full budget.
            *budget = Budget::new(rate, now);
        }
        budget.take(now)
    }
}

#[derive(Debug)]
struct Budget {
    rate: Rate,
    buckets: Vec<Bucket>,
    used: Instant,
}

impl Budget {
    fn new(rate: &Rate, now: Instant) -> Self {
        Self {
            rate: *rate,
            buckets: buckets(rate)
                .into_iter()
                .map(|size| Bucket::new(size, now))
                .collect(),
            used: now,
        }
    }

    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.used = now;
        let wait = self
            .buckets
            .iter_mut()
            .map(|b| b.wait(now))
            .max()
            .unwrap_or_default();
        if !wait.is_zero() {
            return Err(wait);
        }
        for bucket in &mut self.buckets {
            bucket.tokens -= 1.0;
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Bucket {
    capacity: f64,
    per_second: f64,
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn new(size: claw_fleet::Bucket, now: Instant) -> Self {
        Self {
            capacity: size.capacity,
            per_second: size.per_second,
            tokens: size.capacity,
            refilled: now,
        }
    }

    /// Refills up to `now`; how long until a token is there (zero when one is).
    fn wait(&mut self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.capacity);
        self.refilled = now;
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / self.per_second)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(per_second: Option<u32>, burst: Option<u32>, per_hour: Option<u32>) -> Rate {
        Rate {
            per_second,
            burst,
            per_hour,
        }
    }

    #[test]
    fn a_burst_is_admitted_then_the_rate_applies() {
        let limiter = RateLimiter::default();
        let r = rate(Some(2), Some(3), None);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.admit("j", Class::Reads, &r, t0), Ok(()));
        }
        let wait = limiter.admit("j", Class::Reads, &r, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Half a second later one token is back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.admit("j", Class::Reads, &r, t1), Ok(()));
        assert!(limiter.admit("j", Class::Reads, &r, t1).is_err());
    }

    #[test]
    fn jobs_classes_and_the_hourly_budget_are_apart() {
        let limiter = RateLimiter::default();
        let hourly = rate(Some(100), None, Some(2));
        let t0 = Instant::now();
        assert!(limiter.admit("a", Class::Reads, &hourly, t0).is_ok());
        assert!(limiter.admit("a", Class::Reads, &hourly, t0).is_ok());
        // The hour's budget is spent; the next token is half an hour away.
        let wait = limiter.admit("a", Class::Reads, &hourly, t0).unwrap_err();
        assert_eq!(wait.as_secs(), 1800);
        // Another job, and the same job's writes, have their own budgets.
        assert!(limiter.admit("b", Class::Reads, &hourly, t0).is_ok());
        assert!(limiter.admit("a", Class::Writes, &hourly, t0).is_ok());
        // A refused request takes nothing: the per-second bucket still has its tokens.
        let t1 = t0 + Duration::from_secs(1800);
        assert!(limiter.admit("a", Class::Reads, &hourly, t1).is_ok());
    }

    #[test]
    fn a_changed_rate_starts_a_fresh_budget() {
        let limiter = RateLimiter::default();
        let t0 = Instant::now();
        let one = rate(Some(1), None, None);
        assert!(limiter.admit("j", Class::Writes, &one, t0).is_ok());
        assert!(limiter.admit("j", Class::Writes, &one, t0).is_err());
        let two = rate(Some(2), None, None);
        assert!(limiter.admit("j", Class::Writes, &two, t0).is_ok());
    }
}
