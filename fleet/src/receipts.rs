//! The fleet's receipt index: one row per receipt of every proxy's log (log, seq, id, time,
//! kind, job, operation, vault, item, decision, status), so `clawverify query --state` answers
//! for the whole fleet from one place, whichever machine each log lives on.
//!
//! Each proxy copies its own log here after its receipts are durable, resuming after the
//! highest seq the index holds for its log. A row is a pointer, not evidence: the receipt in
//! the log, bundled and verified, is what proves.

use std::time::Duration;

use tokio_postgres::types::ToSql;

use crate::{Fleet, FleetError};

/// Inserts one batch of one log's receipts (arrays, one element per receipt). A row already
/// there with the same id (a batch sent again after a lost answer) is kept. A row there with
/// another id is kept too, and returned with that id: another log writes under this origin.
/// (Inserted rows are returned as well, with the id just sent.)
pub(crate) const INSERT: &str = "\
    INSERT INTO claw_receipts \
        (log, seq, id, ts_ms, kind, job, op, vault, vault_name, item, allow, rule, status) \
    SELECT $1::text, r.* FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::text[], \
        $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::boolean[], \
        $12::text[], $13::int[]) AS r \
    ON CONFLICT (log, seq) DO UPDATE SET id = claw_receipts.id \
        WHERE claw_receipts.id <> EXCLUDED.id \
    RETURNING seq, id";

/// Rows dropped per statement when a log is forgotten, so no statement holds a pooled
/// connection (shared with budget takes) for long.
const FORGET_CHUNK: i64 = 5000;

/// How long a query over the whole index may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// One receipt as the index holds it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Indexed {
    /// Its log's origin.
    pub log: String,
    /// Its seq in that log.
    pub seq: u64,
    /// Its id.
    pub id: String,
    /// Its time, ms since the epoch.
    pub ts_ms: i64,
    /// Its kind (`call`, `tunnel_open`, …).
    pub kind: String,
    /// Its job.
    pub job: String,
    /// Its operation.
    pub op: Option<String>,
    /// Its vault id.
    pub vault: Option<String>,
    /// Its vault's name.
    pub vault_name: Option<String>,
    /// Its item.
    pub item: Option<String>,
    /// Its decision.
    pub allow: Option<bool>,
    /// The deciding rule.
    pub rule: Option<String>,
    /// The upstream status.
    pub status: Option<u16>,
}

/// What to look for (every given field must match).
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// The job.
    pub job: Option<String>,
    /// The operation (`read_item`, …).
    pub op: Option<String>,
    /// The item id.
    pub item: Option<String>,
    /// The vault, by id or by name.
    pub vault: Option<String>,
    /// Allowed (`true`) or denied (`false`).
    pub allow: Option<bool>,
    /// Not before (ms since the epoch).
    pub since_ms: Option<i64>,
    /// Not after (ms since the epoch).
    pub until_ms: Option<i64>,
}

impl Fleet {
    /// Adds receipts of `log` to the index (idempotent per seq).
    pub async fn index_receipts(&self, log: &str, rows: &[Indexed]) -> Result<(), FleetError> {
        if rows.is_empty() {
            return Ok(());
        }
        let seqs: Vec<i64> = rows.iter().map(|r| seq_sql(r.seq)).collect();
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let ts: Vec<i64> = rows.iter().map(|r| r.ts_ms).collect();
        let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
        let jobs: Vec<&str> = rows.iter().map(|r| r.job.as_str()).collect();
        let ops: Vec<Option<&str>> = rows.iter().map(|r| r.op.as_deref()).collect();
        let vaults: Vec<Option<&str>> = rows.iter().map(|r| r.vault.as_deref()).collect();
        let vault_names: Vec<Option<&str>> = rows.iter().map(|r| r.vault_name.as_deref()).collect();
        let items: Vec<Option<&str>> = rows.iter().map(|r| r.item.as_deref()).collect();
        let allows: Vec<Option<bool>> = rows.iter().map(|r| r.allow).collect();
        let rules: Vec<Option<&str>> = rows.iter().map(|r| r.rule.as_deref()).collect();
        let statuses: Vec<Option<i32>> = rows.iter().map(|r| r.status.map(i32::from)).collect();
        let params: [&(dyn ToSql + Sync); 13] = [
            &log,
            &seqs,
            &ids,
            &ts,
            &kinds,
            &jobs,
            &ops,
            &vaults,
            &vault_names,
            &items,
            &allows,
            &rules,
            &statuses,
        ];
        let conn = self.pool.get().await?;
        let returned = crate::within(conn.client.query(&conn.index, &params)).await?;
        let sent: std::collections::HashMap<i64, &str> = seqs.iter().copied().zip(ids).collect();
        let clash = returned
            .iter()
            .map(|row| (row.get::<_, i64>(0), row.get::<_, &str>(1)));
        if let Some((seq, _)) = clash
            .into_iter()
            .find(|(seq, id)| sent.get(seq).is_some_and(|sent| sent != id))
        {
            return Err(FleetError::Conflict(format!(
                "the receipt index holds another receipt at {log} seq {seq}: two proxies \
                 write under this origin; give each its own `instance`"
            )));
        }
        Ok(())
    }

    /// The last receipt of `log` the index holds: its seq and id.
    pub async fn indexed_tail(&self, log: &str) -> Result<Option<(u64, String)>, FleetError> {
        let conn = self.pool.get().await?;
        let row = crate::within(conn.client.query_opt(
            "SELECT seq, id FROM claw_receipts WHERE log = $1 ORDER BY seq DESC LIMIT 1",
            &[&log],
        ))
        .await?;
        Ok(row.map(|row| (row.get::<_, i64>(0) as u64, row.get(1))))
    }

    /// Drops every row of `log` (its log was replaced: the rows point at receipts that are gone).
    pub async fn forget_log(&self, log: &str) -> Result<u64, FleetError> {
        let mut gone = 0;
        loop {
            let conn = self.pool.get().await?;
            let chunk = crate::within(conn.client.execute(
                "DELETE FROM claw_receipts WHERE ctid IN \
                 (SELECT ctid FROM claw_receipts WHERE log = $1 LIMIT $2)",
                &[&log, &FORGET_CHUNK],
            ))
            .await?;
            gone += chunk;
            if chunk < FORGET_CHUNK as u64 {
                return Ok(gone);
            }
        }
    }

    /// The receipts matching `filter`, by log then seq, and how many the index holds.
    pub async fn query_receipts(&self, filter: &Filter) -> Result<(Vec<Indexed>, u64), FleetError> {
        let conn = self.pool.get().await?;
        let params: [&(dyn ToSql + Sync); 7] = [
            &filter.job,
            &filter.op,
            &filter.item,
            &filter.vault,
            &filter.allow,
            &filter.since_ms,
            &filter.until_ms,
        ];
        let query = async {
            let rows = conn
                .client
                .query(
                    "SELECT log, seq, id, ts_ms, kind, job, op, vault, vault_name, item, allow, \
                     rule, status FROM claw_receipts \
                     WHERE ($1::text IS NULL OR job = $1) AND ($2::text IS NULL OR op = $2) \
                     AND ($3::text IS NULL OR item = $3) \
                     AND ($4::text IS NULL OR vault = $4 OR vault_name = $4) \
                     AND ($5::boolean IS NULL OR allow = $5) \
                     AND ($6::bigint IS NULL OR ts_ms >= $6) \
                     AND ($7::bigint IS NULL OR ts_ms <= $7) \
                     ORDER BY log, seq",
                    &params,
                )
                .await?;
            let total = conn
                .client
                .query_one("SELECT count(*) FROM claw_receipts", &[])
                .await?;
            Ok::<_, tokio_postgres::Error>((rows, total.get::<_, i64>(0)))
        };
        let (rows, total) = tokio::time::timeout(QUERY_TIMEOUT, query)
            .await
            .map_err(|_| FleetError::Timeout(QUERY_TIMEOUT))??;
        let found = rows
            .iter()
            .map(|row| Indexed {
                log: row.get(0),
                seq: row.get::<_, i64>(1) as u64,
                id: row.get(2),
                ts_ms: row.get(3),
                kind: row.get(4),
                job: row.get(5),
                op: row.get(6),
                vault: row.get(7),
                vault_name: row.get(8),
                item: row.get(9),
                allow: row.get(10),
                rule: row.get(11),
                status: row
                    .get::<_, Option<i32>>(12)
                    .and_then(|s| u16::try_from(s).ok()),
            })
            .collect();
        Ok((found, total as u64))
    }
}

/// A seq as PostgreSQL's `bigint` (a log never holds 2^63 receipts).
fn seq_sql(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}
