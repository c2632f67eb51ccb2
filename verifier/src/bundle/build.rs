//! `clawverify bundle`: gather one job's evidence from a data dir into a proof bundle.
//!
//! One streaming pass per log: every line is read in order and chained (the verifier checks
//! every signature later), the job's receipts are written out as they are met, exactly their
//! leaf bytes, and the log's tree is kept as hashes (64 bytes per leaf) to prove inclusion
//! against the latest checkpoint afterwards. Memory grows with the log's leaf count, never
//! with the size of the job's receipts.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::PathBuf;

use claw_policy::datadir::DataDir;
use claw_policy::envelope::Envelope;
use claw_policy::keys::{self, Purpose};
use claw_policy::registry::Registry;
use claw_policy::trust::TrustStore;
use claw_tokens::issued::IssuedTokens;
use claw_tokens::revocation::RevocationStore;
use claw_tokens::scope::{ScopeStore, scope_hash};
use claw_tokens::snapshot::{SignedSnapshot, Snapshot};
use claw_tokens::{Claims, token};
use serde_json::json;

use super::{BUNDLE_TYPE, Consistency, Inclusion, encode_hash};
use crate::checkpoint;
use crate::log::{CheckpointRecord, LogDir, LogReader, ReadError};
use crate::merkle::Tree;
use crate::receipt;

/// How to bundle.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The job.
    pub job: String,
    /// Include the token even while it is live (it is a bearer credential).
    pub include_live_token: bool,
    /// The time to judge the token's liveness at (seconds since the epoch).
    pub now: u64,
}

/// Why the token may go into a bundle.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum TokenState {
    /// Past `exp`.
    Expired,
    /// Its `jti` or its job is revoked.
    Revoked,
    /// Still live, included because the caller insisted.
    Live,
}

/// What a bundle holds.
#[derive(Clone, Debug)]
pub struct Built {
    /// Receipts written.
    pub receipts: u64,
    /// Logs they came from.
    pub logs: usize,
    /// Whether every log's part of the job ends with a `job_close`.
    pub closed: bool,
    /// The token's state at bundling time.
    pub token: TokenState,
    /// The token's `jti`.
    pub jti: String,
    /// Whether the issuer's signed revocation snapshot is in (the issuer key is in the data
    /// dir).
    pub revocations: bool,
}

/// Why no bundle was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The data dir could not be read as needed.
    #[error("{0}")]
    DataDir(String),
    /// A log could not be read (damaged, tampered or unreadable).
    #[error("log {dir}: {source}")]
    Log {
        /// The log directory.
        dir: PathBuf,
        /// What went wrong.
        source: ReadError,
    },
    /// Nothing of this job is in any log.
    #[error("no receipts of job {job:?} in {dir}; check the job id (`clawverify query --job …`)")]
    NoReceipts {
        /// The job.
        job: String,
        /// The receipts directory.
        dir: PathBuf,
    },
    /// A `job_close` says other logs served the job too, and they are not here.
    #[error(
        "job {job:?} was also served by {} (its job_close says so) and {} does not hold that \
         log: copy it there as receipts/<proxy id>/<instance> (or bundle where every proxy \
         writes its log) and run bundle again",
        missing.join(", "),
        dir.display()
    )]
    MissingLogs {
        /// The job.
        job: String,
        /// The origins of the absent logs.
        missing: Vec<String>,
        /// The receipts directory.
        dir: PathBuf,
    },
    /// The token is still a usable credential.
    #[error(
        "the token of job {job:?} is live for {seconds} more seconds and a bundle would leak it; \
         revoke it first (`clawscope revoke --job {job}`) or pass --include-live-token"
    )]
    LiveToken {
        /// The job.
        job: String,
        /// Seconds until it expires.
        seconds: u64,
    },
    /// No usable token of this job is on record.
    #[error("{0}")]
    Token(String),
    /// The latest checkpoint does not cover the job yet, or disagrees with the log.
    #[error("log {origin}: {message}")]
    Checkpoint {
        /// The log's origin.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// Writing the bundle failed.
    #[error("writing the bundle: {0}")]
    Io(#[from] io::Error),
}

/// One log's part of the job.
struct LogPart {
    origin: String,
    tree: Tree,
    seqs: Vec<u64>,
    closed: bool,
    note: String,
    size: u64,
    first_cover: Option<CheckpointRecord>,
}

/// Writes the bundle of `options.job` from `dir` to `out`.
///
/// Nothing is written when the token is live (and not forced); other failures are found while
/// streaming, so `out` may hold a partial bundle after an error (the CLI writes to a temporary
/// file and renames it only on success).
pub fn build(
    dir: &DataDir,
    options: &BuildOptions,
    out: &mut dyn Write,
) -> Result<Built, BuildError> {
    let job = options.job.as_str();
    let trust = TrustStore::load(&dir.trust()).map_err(|e| BuildError::DataDir(e.to_string()))?;
    let issued = IssuedTokens::new(dir.state())
        .for_job(job)
        .map_err(|e| BuildError::DataDir(e.to_string()))?;
    let revocations = RevocationStore::new(dir.state());
    let mut states = Vec::with_capacity(issued.len());
    for (_, claims) in &issued {
        states.push(token_state(&revocations, claims, options)?);
    }
    let issued_jtis: Vec<String> = issued.iter().map(|(_, c)| c.jti.clone()).collect();
    let snapshot = revocation_snapshot(dir, &revocations, job, &issued_jtis, options.now)?;

    let mut out = io::BufWriter::with_capacity(1 << 20, out);
    write!(
        out,
        "{{\"type\":\"{BUNDLE_TYPE}\",\"job\":{},\"receipts\":[",
        json!(job)
    )?;
    let mut parts = Vec::new();
    let mut jtis = BTreeSet::new();
    let mut wpcs = BTreeSet::new();
    let mut proxy_kids = BTreeSet::new();
    let mut listed = BTreeSet::new();
    let mut written = 0u64;
    let logs = crate::log::log_dirs(&dir.receipts())
        .map_err(|e| BuildError::DataDir(format!("{}: {e}", dir.receipts().display())))?;
    for log in &logs {
        let Some(part) = scan_log(log, &trust, job, |r, leaf| {
            if written > 0 {
                out.write_all(b",")?;
            }
            out.write_all(leaf)?;
            written += 1;
            if let Some(cst) = &r.cst {
                jtis.insert(cst.jti.clone());
            }
            if let Some(wpc) = &r.wpc {
                wpcs.insert(wpc.clone());
            }
            proxy_kids.insert(r.proxy.clone());
            listed.extend(r.logs.iter().flatten().cloned());
            Ok(())
        })?
        else {
            continue;
        };
        parts.push(part);
    }
    if parts.is_empty() {
        return Err(BuildError::NoReceipts {
            job: job.to_owned(),
            dir: dir.receipts(),
        });
    }
    let missing: Vec<String> = listed
        .into_iter()
        .filter(|origin| !parts.iter().any(|p| &p.origin == origin))
        .collect();
    if !missing.is_empty() {
        return Err(BuildError::MissingLogs {
            job: job.to_owned(),
            missing,
            dir: dir.receipts(),
        });
    }

    let (token, claims, state) = pick_token(job, issued, states, &jtis)?;
    wpcs.insert(claims.wpc.clone());
    let registry = Registry::new(dir.policies());
    let mut policies: Vec<Envelope> = Vec::with_capacity(wpcs.len());
    for wpc in &wpcs {
        let envelope = registry
            .envelope(wpc)
            .map_err(|e| BuildError::DataDir(format!("contract {wpc}: {e}")))?;
        policies.push(envelope);
    }
    let mut key_hints: BTreeSet<String> = proxy_kids;
    if let Ok(decoded) = token::decode(&token) {
        key_hints.insert(decoded.kid);
    }
    key_hints.extend(
        policies
            .iter()
            .flat_map(|p| p.signatures.iter().map(|s| s.kid.clone())),
    );
    let scope = effective_scope(dir, &claims, &policies)?;

    write!(out, "],\"token\":{}", json!(token))?;
    if let Some(snapshot) = &snapshot {
        out.write_all(b",\"revocations\":")?;
        serde_json::to_writer(&mut out, snapshot).map_err(io::Error::other)?;
    }
    out.write_all(b",\"policies\":")?;
    serde_json::to_writer(&mut out, &policies).map_err(io::Error::other)?;
    if let Some(scope) = scope {
        out.write_all(b",\"scope\":")?;
        serde_json::to_writer(&mut out, &scope).map_err(io::Error::other)?;
    }
    out.write_all(b",\"logs\":[")?;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write_log_proof(&mut out, part)?;
    }
    write!(out, "],\"key_hints\":{}}}", json!(key_hints))?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(Built {
        receipts: written,
        logs: parts.len(),
        closed: parts.iter().all(|p| p.closed),
        token: state,
        jti: claims.jti,
        revocations: snapshot.is_some(),
    })
}

/// Streams one log, handing the job's receipts to `emit`; `None` when the job is not in it.
fn scan_log(
    log: &LogDir,
    trust: &TrustStore,
    job: &str,
    mut emit: impl FnMut(&receipt::Receipt, &[u8]) -> io::Result<()>,
) -> Result<Option<LogPart>, BuildError> {
    let log_error = |source| BuildError::Log {
        dir: log.dir.clone(),
        source,
    };
    let origin = log.origin.clone();
    let reader = LogReader::new(&log.dir, trust.clone());
    let mut tree = Tree::new();
    let mut seqs = Vec::new();
    let mut closed = false;
    for item in reader.chained().map_err(log_error)? {
        let checked = match item {
            Ok(checked) => checked,
            // A line being written right now was never acknowledged: the log ends before it.
            Err(ReadError::Torn { .. }) => break,
            Err(e) => return Err(log_error(e)),
        };
        tree.push(checked.leaf_hash());
        let r = checked.receipt();
        if r.job == job {
            seqs.push(r.seq);
            closed = r.kind == receipt::Kind::JobClose;
            emit(r, checked.leaf())?;
        }
    }
    if seqs.is_empty() {
        return Ok(None);
    }
    let checkpoint_error = |message: String| BuildError::Checkpoint {
        origin: origin.clone(),
        message,
    };
    let (cp, note) = reader
        .latest_checkpoint()
        .map_err(log_error)?
        .ok_or_else(|| checkpoint_error("no checkpoint yet".into()))?;
    if cp.origin != origin {
        return Err(checkpoint_error(format!(
            "the log's checkpoint names {:?}; a log directory may not be moved or renamed",
            cp.origin
        )));
    }
    let last = *seqs.last().expect("not empty");
    if cp.size <= last {
        return Err(checkpoint_error(format!(
            "the latest checkpoint (size {}) does not cover the job's receipt {last} yet; the \
             proxy signs one at least every second while receipts arrive: retry",
            cp.size
        )));
    }
    let root = tree
        .root_at(cp.size)
        .map_err(|e| checkpoint_error(format!("checkpoint beyond the log: {e}")))?;
    if root != cp.root {
        return Err(checkpoint_error(format!(
            "the checkpoint's root for size {} is not the root of the log on disk (damaged or \
             tampered)",
            cp.size
        )));
    }
    let first = seqs[0];
    let first_cover = reader
        .checkpoint_history()
        .map_err(log_error)?
        .into_iter()
        .find(|record| record.size > first && record.size < cp.size);
    Ok(Some(LogPart {
        origin,
        tree,
        seqs,
        closed,
        note,
        size: cp.size,
        first_cover,
    }))
}

fn write_log_proof(out: &mut impl Write, part: &LogPart) -> Result<(), BuildError> {
    let proof_error = |e: crate::merkle::ProofError| BuildError::Checkpoint {
        origin: part.origin.clone(),
        message: e.to_string(),
    };
    write!(
        out,
        "{{\"origin\":{},\"checkpoint\":{},\"inclusion\":[",
        json!(part.origin),
        json!(part.note)
    )?;
    for (i, &seq) in part.seqs.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        let hashes: Vec<String> = part
            .tree
            .inclusion_proof(seq, part.size)
            .map_err(proof_error)?
            .iter()
            .map(encode_hash)
            .collect();
        serde_json::to_writer(&mut *out, &Inclusion { seq, hashes }).map_err(io::Error::other)?;
    }
    out.write_all(b"],\"consistency\":")?;
    let mut consistency = Vec::new();
    if let Some(older) = &part.first_cover
        && checkpoint::parse_checkpoint(&older.note).is_ok_and(|(c, _)| c.size == older.size)
    {
        let hashes = part
            .tree
            .consistency_proof(older.size, part.size)
            .map_err(proof_error)?
            .iter()
            .map(encode_hash)
            .collect();
        consistency.push(Consistency {
            from: older.size,
            to: part.size,
            checkpoint: older.note.clone(),
            hashes,
        });
    }
    serde_json::to_writer(&mut *out, &consistency).map_err(io::Error::other)?;
    out.write_all(b"}")?;
    Ok(())
}

/// The issuer's signed word on the job's revocations, read now; `None` where the data dir
/// holds no issuer key (a reviewer's copy), since only the issuer may speak for revocations.
fn revocation_snapshot(
    dir: &DataDir,
    revocations: &RevocationStore,
    job: &str,
    jtis: &[String],
    now: u64,
) -> Result<Option<SignedSnapshot>, BuildError> {
    let path = dir.signing_key(Purpose::Issuer);
    if !path.exists() {
        return Ok(None);
    }
    let key = keys::read_signing_key(&path).map_err(|e| BuildError::DataDir(e.to_string()))?;
    let list = revocations
        .list()
        .map_err(|e| BuildError::DataDir(e.to_string()))?;
    Ok(Some(Snapshot::of(&list, job, jtis, now).sign(&key)))
}

fn token_state(
    revocations: &RevocationStore,
    claims: &Claims,
    options: &BuildOptions,
) -> Result<TokenState, BuildError> {
    let revoked = revocations
        .revoked_at(&claims.jti, &claims.job)
        .map_err(|e| BuildError::DataDir(e.to_string()))?;
    if revoked.is_some() {
        Ok(TokenState::Revoked)
    } else if options.now >= claims.exp {
        Ok(TokenState::Expired)
    } else if options.include_live_token {
        Ok(TokenState::Live)
    } else {
        Err(BuildError::LiveToken {
            job: claims.job.clone(),
            seconds: claims.exp - options.now,
        })
    }
}

/// The one token the receipts name (or the job's latest, when no receipt names one).
fn pick_token(
    job: &str,
    issued: Vec<(String, Claims)>,
    states: Vec<TokenState>,
    jtis: &BTreeSet<String>,
) -> Result<(String, Claims, TokenState), BuildError> {
    if jtis.len() > 1 {
        return Err(BuildError::Token(format!(
            "job {job:?} used {} tokens ({}); a bundle proves one token's job: mint one token \
             per job",
            jtis.len(),
            jtis.iter().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let found = issued
        .into_iter()
        .zip(states)
        .rfind(|((_, claims), _)| jtis.is_empty() || jtis.contains(&claims.jti));
    found
        .map(|((token, claims), state)| (token, claims, state))
        .ok_or_else(|| {
            BuildError::Token(format!(
                "the token of job {job:?} is not on record in this data dir (state/tokens); \
                 bundle where it was minted"
            ))
        })
}

/// The narrowed scope the token's `scope` claim names, if it is not the contract's own.
fn effective_scope(
    dir: &DataDir,
    claims: &Claims,
    policies: &[Envelope],
) -> Result<Option<claw_policy::contract::ToolScope>, BuildError> {
    let contract = policies
        .iter()
        .find(|p| p.hash == claims.wpc)
        .and_then(|p| p.check_hash().ok());
    if contract.is_some_and(|c| scope_hash(&c.document().tool_scope) == claims.scope) {
        return Ok(None);
    }
    ScopeStore::new(dir.state())
        .get(&claims.scope)
        .map(Some)
        .map_err(|e| BuildError::DataDir(e.to_string()))
}
