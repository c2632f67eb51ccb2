//! Receipt v1: one signed JSON object per event, the leaves of the log's Merkle tree.
//!
//! # Format
//!
//! Every receipt carries `v` (1), `kind`, `id`, `log`, `seq`, `prev`, `ts`, `proxy`, `job`,
//! `job_seq`, `job_prev` and `sig`. The other fields depend on the kind (see [`Kind`] and
//! `schemas/receipt.schema.json`, which says the same in `if`/`then` rules). Optional fields are
//! omitted, never `null`.
//!
//! | field | meaning |
//! |---|---|
//! | `v` | format version, always 1 |
//! | `kind` | `request`, `call`, `tunnel_open`, `tunnel_close`, `job_close`, `recovery`, `key_rotation` |
//! | `id` | 26-character ULID (Crockford base32: 48-bit milliseconds, 80 bits monotonic random); sorts by time; sent to the agent as `X-Clawproxy-Receipt` |
//! | `log` | log origin `clawproxy/<proxy id>` (the trust.json name of the proxy key) |
//! | `seq` | leaf index in this log, from 0, no gap |
//! | `prev` | `sha256:<hex>` leaf hash of receipt `seq − 1`; [`GENESIS`] for seq 0 |
//! | `ts` | UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`, exactly 3 fraction digits, non-decreasing with `seq` |
//! | `proxy` | kid (RFC 7638 thumbprint) of the proxy key that signed |
//! | `job` | the token's job id; [`ANONYMOUS_JOB`] for requests that never authenticated, [`LOG_JOB`] for the log's own events |
//! | `job_seq`, `job_prev` | the same chain restricted to this job within this log |
//! | `rid` | pairs the receipts of one exchange (a mutating op's `request` with its `call`, a `tunnel_open` with its `tunnel_close`): an id the proxy chose, the same in both |
//! | `client` | the agent's socket address as the proxy saw it |
//! | `cst` | `{jti, scope}` of the token (never the token itself) |
//! | `wpc` | the pinned contract hash `blake3:<hex>` |
//! | `req` | `{method, scheme, host, port, path, query?, body_hash?}`: what was checked and forwarded |
//! | `op` | `{integration, name, vault?, vault_name?, item?, item_title?, category?, withheld?}`; `withheld` counts list entries removed from the answer |
//! | `decision` | `{allow, rule, reason}` |
//! | `resp` | `{status, bytes, body_hash, released}`: the upstream answer (absent when nothing was forwarded); `released` says whether the agent got it |
//! | `duration_ms` | milliseconds from the request head to the receipt draft |
//! | `tunnel` | `tunnel_close` only: `{to_upstream, to_client}` bytes through the tunnel |
//! | `count` | `job_close` only: how many receipts of the job precede it in this log (= its `job_seq`) |
//! | `closed` | `job_close` only: `expired` or `revoked` |
//! | `recovery` | `recovery` only: `{segment, offset, bytes, hash}` of a torn, never-acknowledged tail that was cut at start |
//! | `rotation` | `key_rotation` only: `{key, old, new}`, which key (`issuer`, `proxy`, `policy`, `audit`, `ca`) was replaced and the key ids; a proxy key's rotation is signed by the old key, the receipts after it by the new; a change the log finds at start-up (a proxy or audit key replaced with no receipt) is recorded then, signed by the new key |
//! | `sig` | standard base64 Ed25519 signature, see below |
//!
//! # Signature and leaf
//!
//! `sig` = Ed25519 over `PAE("application/vnd.clawproxy.receipt.v1+json", JCS(receipt − sig))`
//! ([`claw_policy::dsse::pae`]), so a receipt signature can never pass for a contract's. The
//! Merkle leaf is `JCS(receipt including sig)` and its hash is [`merkle::leaf_hash`]
//! (`SHA-256(0x00 ‖ leaf)`). [`verify_leaf`] checks the signature with `verify_strict` under a
//! key trusted for the proxy purpose, then parses exactly the bytes it verified, and refuses a
//! leaf that is not the canonical form of what it parsed. The log writer signs with a
//! [`Presigner`], whose nonces are computed ahead of time; its signatures are ordinary
//! Ed25519 signatures, so verifiers need not know.
//!
//! Bodies never appear, only keyed BLAKE3 hashes (`blake3k:<audit kid>:<hex>`, see
//! [`AuditKey`]), so a bundle cannot be used to confirm a guessed secret.

mod audit;
mod id;
mod presign;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
pub use claw_policy::approval::Outcome as ApprovalOutcome;
use claw_policy::canonical;
pub use claw_policy::contract::Enforcement;
use claw_policy::dsse::pae;
use claw_policy::keys::Purpose;
use claw_policy::trust::TrustStore;
use ed25519_dalek::{Signature, Signer};
use serde::{Deserialize, Serialize};

pub use audit::{AuditKey, audit_hash};
pub use id::{IdGenerator, format_ts, ts_millis};
pub use presign::Presigner;

use crate::merkle::{self, Hash};

/// The DSSE payload type of receipts.
pub const RECEIPT_PAYLOAD_TYPE: &str = "application/vnd.clawproxy.receipt.v1+json";

/// `prev`/`job_prev` of the first receipt of a log or of a job.
pub const GENESIS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// The job of requests that never authenticated (no token, bad token): outside the token job
/// id alphabet `[A-Za-z0-9._-]`, so no token can claim it.
pub const ANONYMOUS_JOB: &str = "@anonymous";

/// The job of the log's own events (`recovery`, `key_rotation`).
pub const LOG_JOB: &str = "@log";

/// What happened.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Kind {
    /// Durable before a mutating request is forwarded; its `call` repeats its id as `rid`.
    Request,
    /// One per call (allowed, denied or failed), durable before the answer is released.
    Call,
    /// Durable before an opaque tunnel opens.
    TunnelOpen,
    /// When an opaque tunnel closes, with bytes each way.
    TunnelClose,
    /// The job's token expired or was revoked; `count` receipts of the job precede it.
    JobClose,
    /// A torn, never-acknowledged last line was cut at start.
    Recovery,
    /// A key was rotated (`clawproxy rotate`): which, the old and the new key id.
    KeyRotation,
}

impl Kind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Call => "call",
            Kind::TunnelOpen => "tunnel_open",
            Kind::TunnelClose => "tunnel_close",
            Kind::JobClose => "job_close",
            Kind::Recovery => "recovery",
            Kind::KeyRotation => "key_rotation",
        }
    }
}

/// The token a call was made with (its id and scope hash, never the token).
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Cst {
    /// Token id.
    pub jti: String,
    /// Hash of the effective scope.
    pub scope: String,
}

/// The request as checked and forwarded.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Req {
    /// Keyed hash of the request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_hash: Option<String>,
    /// Host the agent named.
    pub host: String,
    /// Method.
    pub method: String,
    /// Normalised path (what was checked is what was sent).
    pub path: String,
    /// Port the agent named.
    pub port: u16,
    /// Query string, without `?`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// `http` or `https`.
    pub scheme: String,
}

/// The classified operation.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Op {
    /// Item category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// `onepassword`, or `none` for hosts without request rules.
    pub integration: String,
    /// Item id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// Item title, when an item allow-list by title decided the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_title: Option<String>,
    /// Operation name (`read_item`, `unknown`, `egress`, …).
    pub name: String,
    /// Vault id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
    /// Vault name, when it was resolved for the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_name: Option<String>,
    /// Entries withheld from a filtered list answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withheld: Option<u64>,
}

/// The decision and the rule that made it.
#[derive(Clone, Debug, Default, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    /// Whether the call was allowed.
    pub allow: bool,
    /// The person's decision, when a contract `approvals` rule held the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// `audit` on every decision made under an audit-only contract; absent when enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
    /// A plain sentence.
    pub reason: String,
    /// Stable rule identifier.
    pub rule: String,
    /// Under an audit-only contract: `rule` would have denied, and the call passed anyway.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub would_deny: bool,
}

impl Decision {
    /// Whether this is an audit-only pass of a call the contract would have denied.
    pub fn shadowed(&self) -> bool {
        self.would_deny && self.allow
    }
}

/// How a held request ended: who decided and when (a timeout names nobody).
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// When it was decided (`ts` format).
    pub at: String,
    /// The approver (absent on a timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The approval id (`apr_…`) shown to approvers.
    pub id: String,
    /// `approved`, `denied` or `timeout`.
    pub outcome: ApprovalOutcome,
}

/// The upstream answer.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Resp {
    /// Keyed hash of the upstream body.
    pub body_hash: String,
    /// Upstream body length in bytes (before filtering).
    pub bytes: u64,
    /// Whether the agent got the answer.
    pub released: bool,
    /// Upstream status.
    pub status: u16,
}

/// Bytes through an opaque tunnel.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tunnel {
    /// Target host → agent.
    pub to_client: u64,
    /// Agent (downstream) → target host (upstream).
    pub to_upstream: u64,
}

/// Why a job was closed.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Closed {
    /// The token's `exp` passed.
    Expired,
    /// The token's `jti` or job was revoked.
    Revoked,
}

/// What a `recovery` receipt records about the tail it cut.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Recovery {
    /// Bytes cut.
    pub bytes: u64,
    /// `sha256:<hex>` of the bytes cut.
    pub hash: String,
    /// Where the cut began (the new length of the segment).
    pub offset: u64,
    /// The segment file name.
    pub segment: String,
}

/// Which key a `key_rotation` receipt is about.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RotatedKey {
    /// The audit key that keys body hashes (kid: 16 hex).
    Audit,
    /// The interception CA (kid: `sha256:<hex>` of its SubjectPublicKeyInfo).
    Ca,
    /// The token issuer's signing key (kid: RFC 7638 thumbprint).
    Issuer,
    /// The contract signing key (kid: RFC 7638 thumbprint).
    Policy,
    /// The log's own signing key (kid: RFC 7638 thumbprint).
    Proxy,
}

impl RotatedKey {
    /// The wire (and command-line) name.
    pub fn as_str(self) -> &'static str {
        match self {
            RotatedKey::Audit => "audit",
            RotatedKey::Ca => "ca",
            RotatedKey::Issuer => "issuer",
            RotatedKey::Policy => "policy",
            RotatedKey::Proxy => "proxy",
        }
    }

    /// The trust.json purpose of an Ed25519 signing key (`None`: the audit key and the CA,
    /// which trust.json does not hold).
    pub fn purpose(self) -> Option<Purpose> {
        match self {
            RotatedKey::Issuer => Some(Purpose::Issuer),
            RotatedKey::Proxy => Some(Purpose::Proxy),
            RotatedKey::Policy => Some(Purpose::Policy),
            RotatedKey::Audit | RotatedKey::Ca => None,
        }
    }

    /// Whether `kid` is spelled as this key's ids are.
    pub fn is_kid(self, kid: &str) -> bool {
        match self {
            RotatedKey::Audit => is_lower_hex(kid, 16),
            RotatedKey::Ca => is_hex_hash(kid, "sha256:"),
            RotatedKey::Issuer | RotatedKey::Policy | RotatedKey::Proxy => {
                kid.len() == 43
                    && kid
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }
        }
    }
}

/// What a `key_rotation` receipt records: from here on `new` is in use instead of `old`.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// Which key.
    pub key: RotatedKey,
    /// The key id now in use.
    pub new: String,
    /// The key id it replaced.
    pub old: String,
}

/// A receipt (raw: use [`verify_leaf`] to get a [`CheckedReceipt`] from bytes).
///
/// The fields of this and every nested type are declared in RFC 8785 key order (ASCII names,
/// so UTF-16 order is byte order): serialising with serde_json then yields the JCS bytes
/// directly, ten times faster than a generic canonicaliser on the writer's hot path. A test
/// checks the two agree on every kind and on hostile strings.
#[derive(Clone, Debug, Deserialize, Eq, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// The agent's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// Why the job closed (`job_close`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Closed>,
    /// Receipts of the job before this one in this log (`job_close`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cst: Option<Cst>,
    /// The decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Milliseconds from the request head to the receipt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Sortable unique id (ULID).
    pub id: String,
    /// The job.
    pub job: String,
    /// Leaf hash of the job's previous receipt in this log.
    pub job_prev: String,
    /// Index among the job's receipts in this log.
    pub job_seq: u64,
    /// What happened.
    pub kind: Kind,
    /// Log origin: `clawproxy/<proxy id>`, or `clawproxy/<proxy id>/<instance>` when several
    /// proxies share one identity (fleet mode).
    pub log: String,
    /// Every log that served the job, as the fleet's shared state knew them when this log
    /// closed it (`job_close` in fleet mode; sorted, this log among them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logs: Option<Vec<String>>,
    /// The operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op: Option<Op>,
    /// Previous leaf hash in the log.
    pub prev: String,
    /// Kid of the proxy key that signed.
    pub proxy: String,
    /// What was cut (`recovery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Recovery>,
    /// The request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub req: Option<Req>,
    /// The upstream answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp: Option<Resp>,
    /// Pairs a `request` with its `call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    /// Which key was rotated (`key_rotation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
    /// Leaf index in the log.
    pub seq: u64,
    /// Signature, standard base64; empty (and then omitted) while unsigned.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sig: String,
    /// UTC time, millisecond precision.
    pub ts: String,
    /// Tunnel bytes (`tunnel_close`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<Tunnel>,
    /// Format version: 1.
    pub v: u32,
    /// The pinned contract hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wpc: Option<String>,
}

/// Why a receipt was refused.
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiptError {
    /// Not a well-formed receipt (JSON, duplicate key, unknown field, wrong type).
    #[error("malformed receipt at {pointer:?}: {message}")]
    Malformed {
        /// JSON pointer of the offending field (empty: the document).
        pointer: String,
        /// What is wrong.
        message: String,
    },
    /// The bytes are not the canonical (JCS) form of the receipt.
    #[error("receipt is not in canonical (RFC 8785) form")]
    NotCanonical,
    /// No key with this kid is trusted for the proxy purpose.
    #[error("receipt signed by untrusted proxy key {kid:?}")]
    UntrustedKey {
        /// The receipt's `proxy`.
        kid: String,
    },
    /// The signature does not verify.
    #[error("receipt signature does not verify")]
    Signature,
    /// The receipt names a log other than the one its key belongs to.
    #[error("receipt claims log {found:?} but its key belongs to {expected:?} (or its instances)")]
    WrongLog {
        /// The receipt's `log`.
        found: String,
        /// `clawproxy/<trusted name of the key>`.
        expected: String,
    },
    /// A field is missing or present against the rules of the receipt's kind.
    #[error("{kind} receipt: {message}")]
    Shape {
        /// The kind.
        kind: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Receipt {
    /// The bytes that are signed: `JCS(receipt − sig)`.
    pub fn signing_bytes(&self) -> Vec<u8> {
        if self.sig.is_empty() {
            jcs(self)
        } else {
            let mut unsigned = self.clone();
            unsigned.sig.clear();
            jcs(&unsigned)
        }
    }

    /// Signs in place (replacing any signature), with a [`SigningKey`](ed25519_dalek::SigningKey) or a [`Presigner`].
    pub fn sign(&mut self, key: &impl Signer<Signature>) {
        self.sig.clear();
        let message = pae(RECEIPT_PAYLOAD_TYPE, &jcs(self));
        self.sig = STANDARD.encode(key.sign(&message).to_bytes());
    }

    /// The leaf: `JCS(receipt including sig)`.
    pub fn leaf(&self) -> Vec<u8> {
        jcs(self)
    }

    /// The Merkle leaf hash of [`Receipt::leaf`].
    pub fn leaf_hash(&self) -> Hash {
        merkle::leaf_hash(&self.leaf())
    }

    /// Its keyed body hashes: the request's, then the answer's.
    pub fn body_hashes(&self) -> impl Iterator<Item = &str> {
        let request = self.req.as_ref().and_then(|r| r.body_hash.as_deref());
        let answer = self.resp.as_ref().map(|r| r.body_hash.as_str());
        request.into_iter().chain(answer)
    }

    /// The kid of the audit key its body hashes were made with, if it has any.
    pub fn audit_kid(&self) -> Option<&str> {
        self.body_hashes()
            .find_map(|hash| hash.strip_prefix("blake3k:")?.split(':').next())
    }

    /// Checks the fields against the rules of the receipt's kind (module docs).
    pub fn check_shape(&self) -> Result<(), ReceiptError> {
        let kind = self.kind.as_str();
        let fail = |message: String| Err(ReceiptError::Shape { kind, message });
        if self.v != 1 {
            return fail(format!("unsupported version {}", self.v));
        }
        if !is_link(&self.prev) || !is_link(&self.job_prev) {
            return fail("prev and job_prev must be sha256:<64 hex>".into());
        }
        if !id::is_ulid(&self.id) {
            return fail(format!("id {:?} is not a ULID", self.id));
        }
        if !id::is_ts(&self.ts) {
            return fail(format!(
                "ts {:?} is not UTC with 3 fraction digits",
                self.ts
            ));
        }
        if self.job_seq > self.seq {
            return fail("job_seq exceeds seq".into());
        }
        if let Some(wpc) = &self.wpc
            && !is_hex_hash(wpc, "blake3:")
        {
            return fail(format!("wpc {wpc:?} is not blake3:<64 hex>"));
        }
        for hash in self.body_hashes() {
            if !is_keyed_hash(hash) {
                return fail(format!("{hash:?} is not blake3k:<16 hex>:<64 hex>"));
            }
        }
        let empty = [
            self.rid.as_deref(),
            self.client.as_deref(),
            self.cst.as_ref().map(|c| c.jti.as_str()),
            self.cst.as_ref().map(|c| c.scope.as_str()),
        ];
        if empty.into_iter().flatten().any(str::is_empty) {
            return fail("rid, client, cst.jti and cst.scope may not be empty".into());
        }
        let present = [
            ("rid", self.rid.is_some()),
            ("client", self.client.is_some()),
            ("cst", self.cst.is_some()),
            ("wpc", self.wpc.is_some()),
            ("req", self.req.is_some()),
            ("op", self.op.is_some()),
            ("decision", self.decision.is_some()),
            ("resp", self.resp.is_some()),
            ("duration_ms", self.duration_ms.is_some()),
            ("tunnel", self.tunnel.is_some()),
            ("count", self.count.is_some()),
            ("closed", self.closed.is_some()),
            ("recovery", self.recovery.is_some()),
            ("rotation", self.rotation.is_some()),
            ("logs", self.logs.is_some()),
        ];
        if let Some(d) = &self.decision
            && d.would_deny
            && !(d.allow && d.enforcement.is_some())
        {
            return fail(
                "would_deny marks an audit-only pass: allow true, enforcement audit".into(),
            );
        }
        if let Some(d) = &self.decision
            && let Some(approval) = &d.approval
        {
            let consistent = match approval.outcome {
                ApprovalOutcome::Approved => d.allow && approval.by.is_some(),
                ApprovalOutcome::Denied => !d.allow && approval.by.is_some(),
                ApprovalOutcome::Timeout => !d.allow && approval.by.is_none(),
            };
            if !consistent || (!d.allow && d.rule != "approvals") {
                return fail(
                    "approval: approved allows and names its approver; denied and timeout \
                     refuse by rule approvals, and only a timeout names nobody"
                        .into(),
                );
            }
            if ts_millis(&approval.at).is_none() || approval.id.is_empty() {
                return fail("approval.at is not a timestamp or approval.id is empty".into());
            }
        }
        let rule = rule_of(self.kind);
        for (name, is_present) in present {
            if rule.required.contains(&name) && !is_present {
                return fail(format!("{name} is required"));
            }
            if !rule.required.contains(&name) && !rule.optional.contains(&name) && is_present {
                return fail(format!("{name} is not allowed"));
            }
        }
        match self.kind {
            Kind::Recovery => {
                if self.job != LOG_JOB {
                    return fail(format!("job must be {LOG_JOB:?}"));
                }
                let cut = self.recovery.as_ref();
                if cut.is_some_and(|c| {
                    crate::log::parse_segment_name(&c.segment).is_none() || !is_link(&c.hash)
                }) {
                    return fail("recovery names no segment or has a malformed hash".into());
                }
            }
            Kind::KeyRotation => {
                if self.job != LOG_JOB {
                    return fail(format!("job must be {LOG_JOB:?}"));
                }
                if let Some(r) = &self.rotation
                    && (!r.key.is_kid(&r.old) || !r.key.is_kid(&r.new) || r.old == r.new)
                {
                    return fail(format!(
                        "rotation of the {} key names malformed or equal key ids",
                        r.key.as_str()
                    ));
                }
            }
            Kind::JobClose => {
                if !is_token_job(&self.job) {
                    return fail(format!("job {:?} is not a token job id", self.job));
                }
                if self.count != Some(self.job_seq) {
                    return fail("count must equal job_seq".into());
                }
                if let Some(logs) = &self.logs {
                    let sorted = logs.windows(2).all(|w| w[0] < w[1]);
                    if !sorted || !logs.contains(&self.log) || !logs.iter().all(|l| is_origin(l)) {
                        return fail(
                            "logs lists log origins, sorted and unique, this log among them".into(),
                        );
                    }
                }
            }
            _ => {
                let authenticated = self.cst.is_some() || self.wpc.is_some();
                if self.job == ANONYMOUS_JOB {
                    if authenticated {
                        return fail("an anonymous receipt carries no cst or wpc".into());
                    }
                } else if !is_token_job(&self.job) {
                    return fail(format!("job {:?} is not a token job id", self.job));
                } else if self.cst.is_none() || self.wpc.is_none() {
                    return fail("cst and wpc are required for a job's receipt".into());
                }
            }
        }
        Ok(())
    }
}

/// A receipt whose signature, canonical form and shape were checked.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct CheckedReceipt {
    receipt: Receipt,
    leaf: Vec<u8>,
    leaf_hash: Hash,
}

impl CheckedReceipt {
    /// The receipt.
    pub fn receipt(&self) -> &Receipt {
        &self.receipt
    }

    /// Its leaf bytes (exactly what was verified).
    pub fn leaf(&self) -> &[u8] {
        &self.leaf
    }

    /// Its Merkle leaf hash.
    pub fn leaf_hash(&self) -> Hash {
        self.leaf_hash
    }

    /// The receipt, dropping the bytes.
    pub fn into_receipt(self) -> Receipt {
        self.receipt
    }

    /// A receipt this process just signed (its leaf computed once, never re-verified).
    pub(crate) fn signed_here(receipt: Receipt) -> Self {
        let leaf = receipt.leaf();
        let leaf_hash = merkle::leaf_hash(&leaf);
        Self {
            receipt,
            leaf,
            leaf_hash,
        }
    }
}

impl std::ops::Deref for CheckedReceipt {
    type Target = Receipt;

    fn deref(&self) -> &Receipt {
        &self.receipt
    }
}

/// Verifies one leaf: strict signature under a key `trust` holds for the proxy purpose (by the
/// receipt's `proxy` kid), then parses the very bytes that were verified, and refuses a leaf
/// that is not canonical, names another log than its key's, or breaks its kind's rules.
pub fn verify_leaf(leaf: &[u8], trust: &TrustStore) -> Result<CheckedReceipt, ReceiptError> {
    let malformed = |pointer: &str, message: String| ReceiptError::Malformed {
        pointer: pointer.to_owned(),
        message,
    };
    let mut value = canonical::parse_strict(leaf).map_err(|e| malformed("", e.to_string()))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| malformed("", "a receipt is a JSON object".into()))?;
    let sig_text = match object.remove("sig") {
        Some(serde_json::Value::String(s)) => s,
        Some(_) => return Err(malformed("/sig", "must be a string".into())),
        None => return Err(malformed("/sig", "missing".into())),
    };
    let kid = object
        .get("proxy")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| malformed("/proxy", "missing or not a string".into()))?
        .to_owned();
    let signed = canonical::to_jcs(&value).map_err(|e| malformed("", e.to_string()))?;
    let trusted = trust
        .key(&kid, Purpose::Proxy)
        .ok_or(ReceiptError::UntrustedKey { kid })?;
    let raw = STANDARD
        .decode(&sig_text)
        .map_err(|_| ReceiptError::Signature)?;
    let sig = Signature::from_slice(&raw).map_err(|_| ReceiptError::Signature)?;
    trusted
        .key
        .verify_strict(&pae(RECEIPT_PAYLOAD_TYPE, &signed), &sig)
        .map_err(|_| ReceiptError::Signature)?;
    // Parse exactly the bytes the signature covers (DSSE: verify, then parse the same bytes).
    let mut receipt: Receipt =
        canonical::from_slice_strict(&signed).map_err(|e| malformed(&e.pointer, e.message))?;
    if !receipt.sig.is_empty() {
        return Err(ReceiptError::NotCanonical);
    }
    receipt.sig = sig_text;
    // One encoding per receipt: the leaf is exactly JCS of what was parsed, so two readers can
    // never disagree on the leaf hash and no ignored byte hides in the line.
    let again = jcs(&receipt);
    if again != leaf {
        return Err(ReceiptError::NotCanonical);
    }
    if !is_origin_of(&receipt.log, &trusted.name) {
        return Err(ReceiptError::WrongLog {
            found: receipt.log,
            expected: origin(&trusted.name),
        });
    }
    receipt.check_shape()?;
    let leaf_hash = merkle::leaf_hash(&again);
    Ok(CheckedReceipt {
        receipt,
        leaf: again,
        leaf_hash,
    })
}

/// Parses a leaf without checking its signature (canonical form and shape still checked).
///
/// For readers that do not decide on signatures: the writer's start-up scan of segments
/// before the tail (bound by the hash chain to the tail, whose signatures it checks), the
/// bundler and the query index (`clawverify verify` checks every signature itself).
pub(crate) fn parse_leaf_unverified(leaf: &[u8]) -> Result<CheckedReceipt, ReceiptError> {
    // Plain parsing is enough here: a line with a duplicate key, an unknown field or any other
    // spelling than the canonical one cannot re-serialise to the same bytes (checked below).
    let receipt: Receipt = serde_json::from_slice(leaf).map_err(|e| ReceiptError::Malformed {
        pointer: String::new(),
        message: e.to_string(),
    })?;
    if receipt.sig.is_empty() {
        return Err(ReceiptError::Signature);
    }
    if jcs(&receipt) != leaf {
        return Err(ReceiptError::NotCanonical);
    }
    receipt.check_shape()?;
    Ok(CheckedReceipt {
        leaf_hash: merkle::leaf_hash(leaf),
        leaf: leaf.to_vec(),
        receipt,
    })
}

/// The log origin of a proxy id: `clawproxy/<proxy id>`.
pub fn origin(proxy_id: &str) -> String {
    format!("clawproxy/{proxy_id}")
}

/// The log origin of one of several proxies sharing the identity `proxy_id` (fleet mode):
/// `clawproxy/<proxy id>/<instance>`; without an instance, [`origin`].
pub fn instance_origin(proxy_id: &str, instance: Option<&str>) -> String {
    match instance {
        Some(instance) => format!("clawproxy/{proxy_id}/{instance}"),
        None => origin(proxy_id),
    }
}

/// Whether `log` is an origin of the proxy named `proxy_id`: its own or one of its instances'.
pub fn is_origin_of(log: &str, proxy_id: &str) -> bool {
    let Some(rest) = log
        .strip_prefix("clawproxy/")
        .and_then(|rest| rest.strip_prefix(proxy_id))
    else {
        return false;
    };
    rest.is_empty() || rest.strip_prefix('/').is_some_and(is_instance_name)
}

/// Whether `log` has the shape of a log origin: `clawproxy/<id>` or `clawproxy/<id>/<instance>`.
pub fn is_origin(log: &str) -> bool {
    let Some(rest) = log.strip_prefix("clawproxy/") else {
        return false;
    };
    let (id, instance) = rest
        .split_once('/')
        .map_or((rest, None), |(a, b)| (a, Some(b)));
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b'+')
        && instance.is_none_or(is_instance_name)
}

/// An instance name: 1 to 63 of `a-z 0-9 -`, starting with a letter or digit (a host name
/// label, so a container's host name serves).
pub fn is_instance_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `sha256:<hex>` of a leaf hash, the form of `prev` and `job_prev`.
pub fn link(hash: &Hash) -> String {
    format!("sha256:{}", hex(hash))
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// Whether `job` is a token job id (`[A-Za-z0-9._-]{1,128}`, as `clawscope mint` enforces).
pub fn is_token_job(job: &str) -> bool {
    (1..=128).contains(&job.len())
        && job
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

fn is_link(text: &str) -> bool {
    is_hex_hash(text, "sha256:")
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn is_hex_hash(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix)
        .is_some_and(|h| is_lower_hex(h, 64))
}

/// `blake3k:<16 hex>:<64 hex>`.
pub(crate) fn is_keyed_hash(text: &str) -> bool {
    text.strip_prefix("blake3k:")
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(kid, hash)| is_lower_hex(kid, 16) && is_lower_hex(hash, 64))
}

/// Which optional fields each kind must or may carry.
struct Rule {
    required: &'static [&'static str],
    optional: &'static [&'static str],
}

fn rule_of(kind: Kind) -> Rule {
    const PROXY: &[&str] = &["client", "req", "op", "decision", "duration_ms"];
    match kind {
        Kind::Request => Rule {
            required: &["rid", "client", "req", "op", "decision", "duration_ms"],
            optional: &["cst", "wpc"],
        },
        Kind::Call => Rule {
            required: PROXY,
            optional: &["rid", "cst", "wpc", "resp"],
        },
        Kind::TunnelOpen => Rule {
            required: PROXY,
            optional: &["rid", "cst", "wpc"],
        },
        Kind::TunnelClose => Rule {
            required: &["client", "req", "op", "decision", "duration_ms", "tunnel"],
            optional: &["rid", "cst", "wpc"],
        },
        Kind::JobClose => Rule {
            required: &["count", "closed"],
            optional: &["cst", "wpc", "logs"],
        },
        Kind::Recovery => Rule {
            required: &["recovery"],
            optional: &[],
        },
        Kind::KeyRotation => Rule {
            required: &["rotation"],
            optional: &[],
        },
    }
}

/// JCS of a receipt: serde_json's compact output, which is RFC 8785 for these types.
///
/// Why it is: keys are emitted in declaration order, which is sorted (see [`Receipt`]);
/// values are strings, booleans and integers below 2^53 (parsing refuses larger), which
/// serde_json writes as JCS does (same escapes: `\"`, `\\`, `\b \f \n \r \t`, other controls
/// as lowercase `\u00xx`, nothing else escaped); no whitespace. `jcs_matches_rfc8785` checks it.
fn jcs<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these types cannot fail: no maps with non-string keys, no floats, no I/O.
    serde_json::to_vec(value).expect("receipt types always serialise")
}

#[cfg(test)]
mod tests;
