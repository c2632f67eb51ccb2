//! What the proxy records about each call, handed to the verifier's log writer.
//!
//! Fail closed: [`Evidence::record`] resolves only once the receipt is signed and fsync'd; any
//! error means the caller must not forward (pre-forward receipts) or must withhold the response
//! and answer 503 (call receipts).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use claw_policy::approval::Verdict;
use claw_policy::datadir::DataDir;
use claw_verifier::log::{self, JobClose, LogConfig, LogHandle, LogWriter};
use claw_verifier::receipt;

use crate::auth::Identity;
use crate::config::Config;

/// The kinds of receipt the proxy writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Durable before a mutating request is forwarded.
    Request,
    /// One per call, durable before the response is released.
    Call,
    /// Durable before an opaque tunnel is opened.
    TunnelOpen,
    /// When an opaque tunnel closes.
    TunnelClose,
}

/// The request as the proxy saw it (after normalisation: what was checked is what was sent).
#[derive(Clone, Debug, Default)]
pub struct Req {
    /// Method.
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// The host the agent named.
    pub host: String,
    /// The port the agent named.
    pub port: u16,
    /// The normalised path (or the raw one when it could not be normalised).
    pub path: String,
    /// The query, if any.
    pub query: Option<String>,
    /// Keyed hash of the request body, if there was one.
    pub body: Option<Vec<u8>>,
}

/// The classified operation.
#[derive(Clone, Debug, Default)]
pub struct Op {
    /// `onepassword`, or `none` for hosts without request rules.
    pub integration: String,
    /// Operation name (`read_item`, `unknown`, `egress`, …).
    pub name: String,
    /// Vault id.
    pub vault: Option<String>,
    /// Vault name, when the contract needed it resolved.
    pub vault_name: Option<String>,
    /// Item id.
    pub item: Option<String>,
    /// Item title, when an item list by title needed it.
    pub item_title: Option<String>,
    /// Item category, when known.
    pub category: Option<String>,
    /// Entries withheld from a list response.
    pub withheld: Option<u64>,
}

/// The decision and the rule that made it.
#[derive(Clone, Debug)]
pub struct Decided {
    /// Whether the call was allowed.
    pub allow: bool,
    /// Stable rule identifier.
    pub rule: String,
    /// A plain sentence.
    pub reason: String,
    /// Under an audit-only contract: `rule` would have denied, and the call passed anyway.
    pub would_deny: bool,
    /// The decision about a request a contract `approvals` rule held.
    pub approval: Option<Verdict>,
}

/// What came back from upstream.
#[derive(Clone, Debug)]
pub struct Resp {
    /// Upstream status.
    pub status: u16,
    /// Upstream body bytes (before filtering).
    pub body: Vec<u8>,
    /// Whether the agent got the response.
    pub released: bool,
}

/// One receipt to record.
#[derive(Clone, Debug)]
pub struct Draft {
    /// What kind.
    pub kind: Kind,
    /// The agent's address.
    pub client: SocketAddr,
    /// The request.
    pub req: Req,
    /// The operation.
    pub op: Op,
    /// The decision.
    pub decision: Decided,
    /// The upstream response, if one was received.
    pub resp: Option<Resp>,
    /// Milliseconds since the request head arrived.
    pub duration_ms: u64,
    /// Pairs a `request` receipt with its `call`.
    pub rid: Option<String>,
    /// Tunnel bytes (agent → upstream, upstream → agent).
    pub tunnel_bytes: Option<(u64, u64)>,
}

/// A receipt that is durable.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The receipt id (sent to the agent as `X-Clawproxy-Receipt`).
    pub id: String,
}

/// The receipt could not be made durable.
#[derive(Debug, thiserror::Error)]
#[error("receipt not recorded: {0}")]
pub struct NotRecorded(pub String);

/// The proxy's handle on its log (which holds the audit key in use).
pub struct Evidence {
    log: LogHandle,
}

impl Evidence {
    /// Opens (verifying and recovering) this proxy's log in the data dir.
    pub async fn open(dir: &DataDir, config: &Config) -> anyhow::Result<Self> {
        let mut log_config = LogConfig::from_data_dir(dir).context("opening the receipt log")?;
        if let Some(instance) = &config.instance {
            log_config = log_config.for_instance(instance);
        }
        log_config.segment_bytes = config.log.segment_bytes;
        log_config.checkpoint_interval = Duration::from_millis(config.log.checkpoint_interval_ms);
        let (log, _task) = LogWriter::open(log_config).await?;
        Ok(Self { log })
    }

    /// Records a receipt for `identity` (None: the request never authenticated).
    pub async fn record(
        &self,
        identity: Option<&Identity>,
        draft: Draft,
    ) -> Result<Recorded, NotRecorded> {
        let kind = match draft.kind {
            Kind::Request => receipt::Kind::Request,
            Kind::Call => receipt::Kind::Call,
            Kind::TunnelOpen => receipt::Kind::TunnelOpen,
            Kind::TunnelClose => receipt::Kind::TunnelClose,
        };
        // Receipts of requests that never authenticated go under the reserved job.
        let job = identity.map_or(receipt::ANONYMOUS_JOB, |i| i.job());
        let mut r = log::Draft::new(kind, job);
        r.rid = draft.rid;
        r.client = Some(draft.client.ip().to_string());
        if let Some(identity) = identity {
            r.cst = Some(receipt::Cst {
                jti: identity.claims.jti.clone(),
                scope: identity.claims.scope.clone(),
            });
            r.wpc = Some(identity.claims.wpc.clone());
        }
        let audit = self.log.audit();
        r.req = Some(receipt::Req {
            method: draft.req.method,
            scheme: draft.req.scheme,
            host: draft.req.host,
            port: draft.req.port,
            path: draft.req.path,
            query: draft.req.query,
            body_hash: draft.req.body.as_deref().map(|b| audit.hash(b)),
        });
        r.op = Some(receipt::Op {
            integration: draft.op.integration,
            name: draft.op.name,
            vault: draft.op.vault,
            vault_name: draft.op.vault_name,
            item: draft.op.item,
            item_title: draft.op.item_title,
            category: draft.op.category,
            withheld: draft.op.withheld,
        });
        r.decision = Some(receipt::Decision {
            allow: draft.decision.allow,
            rule: draft.decision.rule,
            reason: draft.decision.reason,
            would_deny: draft.decision.would_deny,
            approval: draft.decision.approval.map(|v| receipt::Approval {
                at: ts_of(v.at_ms),
                by: v.by,
                id: v.id,
                outcome: v.outcome,
            }),
            enforcement: identity
                .filter(|i| i.contract.document().audit_only())
                .map(|_| receipt::Enforcement::Audit),
        });
        r.resp = draft.resp.map(|resp| receipt::Resp {
            status: resp.status,
            bytes: resp.body.len() as u64,
            body_hash: audit.hash(&resp.body),
            released: resp.released,
        });
        r.duration_ms = Some(draft.duration_ms);
        r.tunnel = draft
            .tunnel_bytes
            .map(|(to_upstream, to_client)| receipt::Tunnel {
                to_upstream,
                to_client,
            });
        self.log
            .append(r)
            .await
            .map(|a| Recorded { id: a.id })
            .map_err(|e| NotRecorded(e.to_string()))
    }

    /// Writes the `job_close` receipt of a job whose token expired or was revoked, then a
    /// checkpoint that covers it.
    pub async fn close_job(
        &self,
        claims: &claw_tokens::Claims,
        reason: &str,
        logs: Option<Vec<String>>,
    ) -> Result<(), NotRecorded> {
        let closed = if reason.contains("revoked") {
            receipt::Closed::Revoked
        } else {
            receipt::Closed::Expired
        };
        let mut close = JobClose::new(claims.job.clone(), closed);
        close.cst = Some(receipt::Cst {
            jti: claims.jti.clone(),
            scope: claims.scope.clone(),
        });
        close.wpc = Some(claims.wpc.clone());
        close.logs = logs;
        // Writes job_close, then a checkpoint covering it. Already closed in this log: done.
        match self.log.close_job(close).await {
            Ok(_) | Err(log::LogError::JobClosed(_)) => Ok(()),
            Err(e) => Err(NotRecorded(e.to_string())),
        }
    }

    /// This proxy's log origin.
    pub fn origin(&self) -> &str {
        self.log.origin()
    }

    /// The receipt log.
    pub fn log(&self) -> &LogHandle {
        &self.log
    }

    /// The keyed hash of a body, as receipts record it.
    pub fn body_hash(&self, body: &[u8]) -> String {
        self.log.audit().hash(body)
    }

    /// Whether the log stopped taking receipts after an I/O error.
    pub fn is_poisoned(&self) -> bool {
        self.log.is_poisoned()
    }

    /// Drains the log and signs a final checkpoint.
    pub async fn shutdown(&self) {
        let _ = self.log.shutdown().await;
    }

    /// The log's counters as Prometheus text.
    pub fn metrics(&self) -> String {
        use std::fmt::Write;
        let m = self.log.metrics();
        let mut out = String::new();
        let _ = write!(
            out,
            "# HELP clawproxy_receipts_total Receipts made durable.\n# TYPE clawproxy_receipts_total counter\nclawproxy_receipts_total {}\n\
             # HELP clawproxy_receipt_checkpoints_total Checkpoints signed.\n# TYPE clawproxy_receipt_checkpoints_total counter\nclawproxy_receipt_checkpoints_total {}\n\
             # HELP clawproxy_receipt_log_poisoned 1 after a write or fsync error.\n# TYPE clawproxy_receipt_log_poisoned gauge\nclawproxy_receipt_log_poisoned {}\n",
            m.receipts.load(Ordering::Relaxed),
            m.checkpoints.load(Ordering::Relaxed),
            u8::from(self.is_poisoned())
        );
        for (name, help, histogram) in [
            (
                "clawproxy_receipt_batch_size",
                "Receipts per group commit (one fdatasync each).",
                &m.batch_size,
            ),
            (
                "clawproxy_fsync_seconds",
                "Latency of one receipt-log fdatasync.",
                &m.fsync_seconds,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            let mut cumulative = 0;
            for (bound, count) in histogram.buckets() {
                cumulative += count;
                let le = if bound.is_infinite() {
                    "+Inf".to_owned()
                } else {
                    bound.to_string()
                };
                let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(
                out,
                "{name}_sum {}\n{name}_count {}",
                histogram.sum(),
                histogram.count()
            );
        }
        out
    }
}

/// Unix milliseconds in the receipts' `ts` format.
fn ts_of(ms: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    receipt::format_ts(at)
}
