//! The fleet's receipt index in PostgreSQL: each proxy copies its own log into it
//! ([`follow`]), and `clawverify query --state` answers from it ([`query`]) for every proxy of
//! the fleet, wherever their logs live.
//!
//! A proxy copies only durable receipts (below [`LogHandle::durable`]), in batches gathered
//! over a quarter of a second, after the highest seq the index holds for its log. So a
//! restart or an outage of the server leaves a gap that the next pass fills, and never a row
//! for a receipt a crash took back. A log replaced under the index (a new data dir under the
//! same origin) is noticed by its chain, and its rows are dropped and copied again.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use claw_fleet::receipts::Indexed;
use claw_fleet::{Fleet, FleetError};
use tracing::{info, warn};

use super::{Answer, Filter, Hit, format_ms};
use crate::log::LogHandle;
use crate::log::tail::{self, Cursor, TailError};
use crate::receipt::{Receipt, ts_millis};

/// Receipts per insert.
const BATCH: usize = 2048;
/// Wait after a failed pass before the next.
const RETRY: Duration = Duration::from_secs(1);
/// Wait after catching up before looking again, so a busy log is copied in batches of many
/// group commits rather than one insert per commit.
const GATHER: Duration = Duration::from_millis(250);
/// How long the last pass at shutdown may take.
const FINAL_PASS: Duration = Duration::from_secs(5);

/// Answers `filter` from the fleet's index.
pub async fn query(fleet: &Fleet, filter: &Filter) -> Result<Answer, FleetError> {
    let (rows, total) = fleet.query_receipts(filter).await?;
    Ok(Answer {
        matches: rows.into_iter().map(hit).collect(),
        scanned: total,
    })
}

/// Copies `log`'s receipts into the fleet's index as they become durable, until `stop`
/// resolves; then copies what is left (bounded by a few seconds) and returns.
pub async fn follow(fleet: Fleet, log: LogHandle, stop: impl Future<Output = ()>) {
    let mut follower = Follower {
        fleet,
        origin: log.origin().to_owned(),
        dir: log.dir().to_owned(),
        cursor: None,
        failing: false,
    };
    let mut durable = log.durable();
    tokio::pin!(stop);
    loop {
        let until = *durable.borrow_and_update();
        match follower.pass(until).await {
            Ok(true) => {
                // A long catch-up still stops when asked; the final pass copies what it can.
                tokio::select! {
                    biased;
                    () = &mut stop => break,
                    () = std::future::ready(()) => {}
                }
            }
            Ok(false) => {
                tokio::select! {
                    () = tokio::time::sleep(GATHER) => {}
                    () = &mut stop => break,
                }
                tokio::select! {
                    changed = durable.changed() => if changed.is_err() { break },
                    () = &mut stop => break,
                }
            }
            Err(()) => {
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    () = &mut stop => break,
                }
            }
        }
    }
    let until = *durable.borrow();
    let _ = tokio::time::timeout(FINAL_PASS, async {
        while let Ok(true) = follower.pass(until).await {}
    })
    .await;
}

struct Follower {
    fleet: Fleet,
    origin: String,
    dir: PathBuf,
    /// Where the index stands in the log; None until asked (at start and after a failure).
    cursor: Option<Cursor>,
    /// Whether the last pass failed (so a failure is logged once, and the recovery too).
    failing: bool,
}

#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error(transparent)]
    Tail(#[from] TailError),
    #[error("reading the log: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Follower {
    /// Copies the next batch below `until`: Ok(true) when there may be more.
    async fn pass(&mut self, until: u64) -> Result<bool, ()> {
        match self.copy(until).await {
            Ok(more) => {
                if std::mem::take(&mut self.failing) {
                    info!(log = %self.origin, "receipt index: copying again");
                }
                Ok(more)
            }
            Err(error) => {
                // Ask the index where it stands again: the batch may or may not have landed.
                self.cursor = None;
                if !std::mem::replace(&mut self.failing, true) {
                    warn!(log = %self.origin, %error, "receipt index: copy failed; retrying every second");
                }
                Err(())
            }
        }
    }

    async fn copy(&mut self, until: u64) -> Result<bool, PassError> {
        let mut cursor = match self.cursor.take() {
            Some(cursor) => cursor,
            None => self.resume().await?,
        };
        if cursor.next >= until {
            self.cursor = Some(cursor);
            return Ok(false);
        }
        let dir = self.dir.clone();
        let (cursor, read) = tokio::task::spawn_blocking(move || {
            let read = tail::read(&dir, &mut cursor, until, BATCH);
            (cursor, read)
        })
        .await?;
        let rows: Vec<Indexed> = read?.iter().map(|r| row(r)).collect();
        self.fleet.index_receipts(&self.origin, &rows).await?;
        let more = rows.len() == BATCH;
        self.cursor = Some(cursor);
        Ok(more)
    }

    /// Where to continue: after the last receipt the index holds, or from the start when it
    /// holds none or holds another log under this origin (whose rows are then dropped).
    async fn resume(&self) -> Result<Cursor, PassError> {
        let Some((seq, id)) = self.fleet.indexed_tail(&self.origin).await? else {
            return Ok(Cursor::default());
        };
        let dir = self.dir.clone();
        match tokio::task::spawn_blocking(move || tail::after(&dir, seq, &id)).await? {
            Ok(cursor) => Ok(cursor),
            Err(TailError::Diverged { .. }) => {
                let dropped = self.fleet.forget_log(&self.origin).await?;
                warn!(
                    log = %self.origin,
                    dropped,
                    "receipt index: the index held another log under this origin; copying this one afresh"
                );
                Ok(Cursor::default())
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// A receipt's index row.
fn row(r: &Receipt) -> Indexed {
    let op = r.op.as_ref();
    Indexed {
        log: r.log.clone(),
        seq: r.seq,
        id: r.id.clone(),
        ts_ms: ts_millis(&r.ts).unwrap_or(0),
        kind: r.kind.as_str().to_owned(),
        job: r.job.clone(),
        op: op.map(|o| o.name.clone()),
        vault: op.and_then(|o| o.vault.clone()),
        vault_name: op.and_then(|o| o.vault_name.clone()),
        item: op.and_then(|o| o.item.clone()),
        allow: r.decision.as_ref().map(|d| d.allow),
        rule: r.decision.as_ref().map(|d| d.rule.clone()),
        status: r.resp.as_ref().map(|p| p.status),
    }
}

fn hit(r: Indexed) -> Hit {
    Hit {
        ts: format_ms(r.ts_ms),
        log: r.log,
        seq: r.seq,
        id: r.id,
        kind: r.kind,
        job: r.job,
        op: r.op,
        vault: r.vault,
        vault_name: r.vault_name,
        item: r.item,
        decision: r.allow.map(|a| if a { "allow" } else { "deny" }.to_owned()),
        rule: r.rule,
        status: r.status,
    }
}
