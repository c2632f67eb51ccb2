//! Revocations shared by the fleet, and the feed each proxy answers from.
//!
//! `clawscope revoke --state …` writes a row; every proxy's [`RevocationFeed`] asks for rows
//! newer than the last it saw every [`POLL`] and keeps them in memory, so the check on each
//! request costs a hash lookup, not a round trip. Rows are numbered from one counter row
//! inside the writing statement, so numbers follow commit order and "newer than n" misses
//! nothing. A feed that has not heard from the server for [`STALE_AFTER`] is stale: the proxy
//! then refuses every token until it hears again (fail closed).

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::{Fleet, FleetError, within};

/// How often a proxy asks for new revocations.
pub const POLL: Duration = Duration::from_millis(200);

/// How long a feed may go without an answer before every token is refused.
pub const STALE_AFTER: Duration = Duration::from_secs(2);

/// Rows newer than `$1`, in order.
pub(crate) const SINCE: &str = "SELECT seq, kind, subject, prune_after FROM claw_revocations \
                                WHERE seq > $1 ORDER BY seq";

/// Records a revocation (a repeat keeps the first reason and the later `prune_after`).
const REVOKE: &str = "WITH s AS (UPDATE claw_revocation_seq SET n = n + 1 RETURNING n) \
     INSERT INTO claw_revocations (kind, subject, seq, reason, revoked_at, prune_after) \
     SELECT $1, $2, s.n, $3, $4, $5 FROM s \
     ON CONFLICT (kind, subject) DO UPDATE \
     SET seq = EXCLUDED.seq, prune_after = greatest(claw_revocations.prune_after, EXCLUDED.prune_after)";

/// Forgets rows no token can match any more.
const PRUNE: &str = "DELETE FROM claw_revocations WHERE prune_after <= $1";

/// What a revocation names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Revoked {
    /// One token, by its `jti`.
    Jti,
    /// Every token of a job.
    Job,
}

impl Revoked {
    fn as_str(self) -> &'static str {
        match self {
            Revoked::Jti => "jti",
            Revoked::Job => "job",
        }
    }
}

impl Fleet {
    /// Revokes `subject` for the whole fleet. Entries are kept (and matched) until
    /// `prune_after`, seconds since the epoch.
    pub async fn revoke(
        &self,
        kind: Revoked,
        subject: &str,
        reason: &str,
        now: u64,
        prune_after: u64,
    ) -> Result<(), FleetError> {
        let conn = self.pool.get().await?;
        let (now, prune_after) = (seconds(now), seconds(prune_after));
        within(conn.client.execute(PRUNE, &[&now])).await?;
        within(conn.client.execute(
            REVOKE,
            &[&kind.as_str(), &subject, &reason, &now, &prune_after],
        ))
        .await?;
        Ok(())
    }
}

impl Fleet {
    /// Whether `subject` is revoked for the whole fleet at `now` (a direct read, for tools;
    /// proxies answer from their [`RevocationFeed`]).
    pub async fn is_revoked(
        &self,
        kind: Revoked,
        subject: &str,
        now: u64,
    ) -> Result<bool, FleetError> {
        let conn = self.pool.get().await?;
        let row = within(conn.client.query_opt(
            "SELECT 1 FROM claw_revocations WHERE kind = $1 AND subject = $2 AND prune_after > $3",
            &[&kind.as_str(), &subject, &seconds(now)],
        ))
        .await?;
        Ok(row.is_some())
    }
}

fn seconds(epoch: u64) -> i64 {
    i64::try_from(epoch).unwrap_or(i64::MAX)
}

/// The feed could not confirm the revocation list recently; no token may pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the fleet's revocation list has not been confirmed for {} ms", .0.as_millis())]
pub struct Stale(pub Duration);

#[derive(Debug, Default)]
struct Seen {
    /// `(kind, subject)` → prune_after.
    entries: HashMap<(Revoked, String), u64>,
    cursor: i64,
    /// When the server last answered.
    confirmed: Option<Instant>,
}

impl Seen {
    fn current(&self) -> Result<(), Stale> {
        let age = self.confirmed.map_or(Duration::MAX, |at| at.elapsed());
        if age > STALE_AFTER {
            return Err(Stale(age.min(Duration::from_secs(86_400))));
        }
        Ok(())
    }
}

/// One proxy's in-memory copy of the fleet's revocations.
#[derive(Debug, Default)]
pub struct RevocationFeed {
    seen: RwLock<Seen>,
}

impl RevocationFeed {
    /// A feed filled once from `fleet` and then kept current by a background task, which
    /// ends when the last `Arc` is dropped.
    pub async fn start(fleet: Fleet) -> Result<Arc<Self>, FleetError> {
        let feed = Arc::new(Self::default());
        feed.poll(&fleet).await?;
        tokio::spawn(follow(Arc::downgrade(&feed), fleet));
        Ok(feed)
    }

    /// Which revocation, if any, matches `jti` or `job` at `now` (seconds since the epoch),
    /// or [`Stale`] when the list is not known to be current.
    pub fn check(&self, jti: &str, job: &str, now: u64) -> Result<Option<Revoked>, Stale> {
        let seen = self.seen.read().unwrap_or_else(|e| e.into_inner());
        seen.current()?;
        let live = |kind: Revoked, subject: &str| {
            seen.entries
                .get(&(kind, subject.to_owned()))
                .is_some_and(|&until| until > now)
        };
        Ok(if live(Revoked::Jti, jti) {
            Some(Revoked::Jti)
        } else if live(Revoked::Job, job) {
            Some(Revoked::Job)
        } else {
            None
        })
    }

    /// [`Stale`] when the list has not been confirmed within [`STALE_AFTER`] (for readiness).
    pub fn current(&self) -> Result<(), Stale> {
        self.seen
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .current()
    }

    /// Asks the server for rows newer than the last seen.
    pub async fn poll(&self, fleet: &Fleet) -> Result<(), FleetError> {
        let cursor = self.seen.read().unwrap_or_else(|e| e.into_inner()).cursor;
        let conn = fleet.pool.get().await?;
        let rows = within(conn.client.query(&conn.since, &[&cursor])).await?;
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        for row in rows {
            let kind = match row.get::<_, &str>(1) {
                "jti" => Revoked::Jti,
                _ => Revoked::Job,
            };
            let prune_after = u64::try_from(row.get::<_, i64>(3)).unwrap_or(0);
            seen.entries.insert((kind, row.get(2)), prune_after);
            seen.cursor = seen.cursor.max(row.get(0));
        }
        // Entries no token can match any more are dropped, as the server drops their rows.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        seen.entries.retain(|_, until| *until > now);
        seen.confirmed = Some(Instant::now());
        Ok(())
    }
}

async fn follow(feed: Weak<RevocationFeed>, fleet: Fleet) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let Some(feed) = feed.upgrade() else { return };
        match feed.poll(&fleet).await {
            Ok(()) => failing = false,
            Err(error) if !failing => {
                failing = true;
                warn!(%error, "cannot read the fleet's revocations; tokens are refused once the list is {} s old", STALE_AFTER.as_secs());
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feed_never_confirmed_is_stale_and_a_confirmed_one_answers() {
        let feed = RevocationFeed::default();
        assert!(feed.check("j", "job", 0).is_err());
        {
            let mut seen = feed.seen.write().unwrap();
            seen.confirmed = Some(Instant::now());
            seen.entries.insert((Revoked::Jti, "t1".into()), 100);
            seen.entries.insert((Revoked::Job, "job-a".into()), 100);
        }
        assert_eq!(feed.check("t1", "job-b", 50), Ok(Some(Revoked::Jti)));
        assert_eq!(feed.check("t2", "job-a", 50), Ok(Some(Revoked::Job)));
        assert_eq!(feed.check("t2", "job-b", 50), Ok(None));
        // Past prune_after no token can match: the entry no longer counts.
        assert_eq!(feed.check("t1", "job-a", 100), Ok(None));
    }
}
