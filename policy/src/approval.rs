//! Held requests and the decisions people make about them, as files under `state/approvals/`.
//!
//! The proxy writes `<id>.request.json` when a contract's `approvals` rule holds a request, and
//! waits. `clawcontrols approve|deny <id> --as NAME` writes `<id>.decision.json`; when nobody
//! does before the deadline, the proxy writes a `timeout` decision itself. A decision file is
//! created exclusively (written aside, then hard-linked into place), so the first decision
//! stands and no later one can replace it: each approval is single-use. It stays after the
//! request file is removed, so a late `approve` finds it and is refused.
//!
//! In fleet mode the same happens in the fleet's PostgreSQL instead ([`SharedApprovals`]), so
//! an approver can decide a request whichever proxy holds it; [`ApprovalStore`] is either.
//!
//! A decision carries the held request's [`HeldRequest::binding`]: the hash of the job, method,
//! host, normalised path, query and body hash. The proxy compares it with the request it holds
//! in memory, so a request file edited on disk cannot lend its approval to another request.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::datadir::DataDir;

mod shared;

pub use shared::SharedApprovals;

/// One held request, as approvers see it. Never holds a body, only its keyed hash.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HeldRequest {
    /// `apr_` and 32 hex digits.
    pub id: String,
    /// The job whose request it is.
    pub job: String,
    /// The contract hash the job's token pins.
    pub wpc: String,
    /// Index of the contract's `approvals` rule that holds it.
    pub rule: usize,
    /// Who may decide.
    pub approvers: Vec<String>,
    /// The classified operation.
    pub operation: String,
    /// HTTP method.
    pub method: String,
    /// The host the agent named.
    pub host: String,
    /// The normalised path that would be forwarded.
    pub path: String,
    /// The query, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// Keyed hash of the request body, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_hash: Option<String>,
    /// Vault id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<String>,
    /// Vault name, when resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_name: Option<String>,
    /// Item id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    /// Item title, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_title: Option<String>,
    /// Item category, when a write body sets it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// When the proxy started holding it (Unix milliseconds).
    pub requested_ms: u64,
    /// When it is refused if nobody decides (Unix milliseconds).
    pub expires_ms: u64,
}

impl HeldRequest {
    /// How approvers' tools list it (`clawcontrols approvals --json`, the admin API's
    /// `GET /approvals`): its fields and the seconds left until `expires_ms`.
    pub fn listing(&self, now_ms: u64) -> serde_json::Value {
        let mut row = serde_json::to_value(self).expect("a held request serialises");
        row["expires_in_seconds"] = self.expires_ms.saturating_sub(now_ms).div_ceil(1000).into();
        row
    }

    /// `blake3:<hex>` of what the approval is for: job, method, host, path, query and body hash.
    pub fn binding(&self) -> String {
        let value = serde_json::json!({
            "id": self.id,
            "job": self.job,
            "method": self.method,
            "host": self.host,
            "path": self.path,
            "query": self.query,
            "body_hash": self.body_hash,
        });
        crate::contract::hash_value(&value).expect("plain strings canonicalise")
    }

    /// `by`'s decision on this request at `now_ms`: refused unless `by` is one of its
    /// approvers and its deadline has not passed.
    pub fn decision(
        &self,
        by: &str,
        approve: bool,
        reason: Option<String>,
        now_ms: u64,
    ) -> Result<Verdict, ApprovalError> {
        if !self.approvers.iter().any(|a| a == by) {
            return Err(ApprovalError::NotApprover {
                id: self.id.clone(),
                name: by.to_owned(),
                approvers: self.approvers.clone(),
            });
        }
        if self.expires_ms <= now_ms {
            return Err(ApprovalError::Expired(self.id.clone()));
        }
        Ok(Verdict {
            id: self.id.clone(),
            binding: self.binding(),
            outcome: if approve {
                Outcome::Approved
            } else {
                Outcome::Denied
            },
            by: Some(by.to_owned()),
            reason,
            at_ms: now_ms,
        })
    }

    /// The decision its deadline makes: refused, by nobody.
    pub fn timeout(&self, now_ms: u64) -> Verdict {
        Verdict {
            id: self.id.clone(),
            binding: self.binding(),
            outcome: Outcome::Timeout,
            by: None,
            reason: None,
            at_ms: now_ms,
        }
    }
}

/// How a held request ended.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// An approver let it through.
    Approved,
    /// An approver refused it.
    Denied,
    /// Nobody decided before the deadline; refused.
    Timeout,
}

impl Outcome {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::Denied => "denied",
            Outcome::Timeout => "timeout",
        }
    }
}

/// A decision about one held request.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// The held request's id.
    pub id: String,
    /// The held request's [`HeldRequest::binding`].
    pub binding: String,
    /// What was decided.
    pub outcome: Outcome,
    /// The approver (absent on a timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The approver's note, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When (Unix milliseconds).
    pub at_ms: u64,
}

/// Why an approval operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    /// Not an id the proxy hands out.
    #[error("{0:?} is not an approval id (apr_ and 32 hex digits)")]
    BadId(String),
    /// No such held request (never held, or already ended).
    #[error("no request {0} is waiting for approval (list them with `clawcontrols approvals`)")]
    Unknown(String),
    /// Its deadline passed.
    #[error("request {0} timed out; it was refused")]
    Expired(String),
    /// Someone decided first.
    #[error("request {id} was already decided: {outcome}{by}", outcome = .0.outcome.as_str(), id = .0.id, by = .0.by.as_deref().map(|b| format!(" by {b}")).unwrap_or_default())]
    Decided(Box<Verdict>),
    /// The name is not one of the rule's approvers.
    #[error("{name:?} may not decide request {id}; its approvers are: {}", approvers.join(", "))]
    NotApprover {
        /// The held request.
        id: String,
        /// The name given.
        name: String,
        /// The names that may decide.
        approvers: Vec<String>,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The fleet's shared state could not be reached or answered wrongly.
    #[error("the fleet's state: {0}")]
    State(String),
    /// A file is not what this module writes.
    #[error("{path}: not an approval file: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The approvals directory of a data dir.
#[derive(Clone, Debug)]
pub struct Approvals {
    dir: PathBuf,
}

impl Approvals {
    /// `state/approvals/` in `dir` (created on first write).
    pub fn new(dir: &DataDir) -> Self {
        Self {
            dir: dir.state().join("approvals"),
        }
    }

    /// A fresh approval id: `apr_` and 128 random bits in hex.
    pub fn new_id() -> String {
        use rand_core::RngCore;
        let mut bytes = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("apr_{hex}")
    }

    /// Records a held request so approvers can see it.
    pub fn hold(&self, held: &HeldRequest) -> Result<(), ApprovalError> {
        check_id(&held.id)?;
        self.ensure_dir()?;
        let path = self.request_path(&held.id);
        let bytes = serde_json::to_vec_pretty(held).expect("a held request serialises");
        write_private(&path, &bytes, false)
    }

    /// The held requests nobody has decided yet whose deadline is after `now_ms`, oldest first.
    pub fn pending(&self, now_ms: u64) -> Result<Vec<HeldRequest>, ApprovalError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ApprovalError::Io {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".request.json")) else {
                continue;
            };
            if check_id(id).is_err() || self.decision_path(id).exists() {
                continue;
            }
            // Ended between the listing and the read: not pending.
            let held = match self.get(id) {
                Ok(held) => held,
                Err(ApprovalError::Unknown(_)) => continue,
                Err(e) => return Err(e),
            };
            if held.expires_ms > now_ms {
                out.push(held);
            }
        }
        out.sort_by(|a, b| (a.requested_ms, &a.id).cmp(&(b.requested_ms, &b.id)));
        Ok(out)
    }

    /// The held request `id`.
    pub fn get(&self, id: &str) -> Result<HeldRequest, ApprovalError> {
        check_id(id)?;
        read_record(
            &self.request_path(id),
            id,
            |held: &HeldRequest| &held.id,
            "holds",
        )?
        .ok_or_else(|| ApprovalError::Unknown(id.to_owned()))
    }

    /// An approver's decision. Refused unless `id` is held, undecided and not expired, and `by`
    /// is one of its approvers.
    pub fn decide(
        &self,
        id: &str,
        by: &str,
        approve: bool,
        reason: Option<String>,
        now_ms: u64,
    ) -> Result<Verdict, ApprovalError> {
        let held = match self.get(id) {
            Ok(held) => held,
            Err(ApprovalError::Unknown(id)) => {
                return Err(match self.verdict(&id)? {
                    Some(verdict) => ApprovalError::Decided(Box::new(verdict)),
                    None => ApprovalError::Unknown(id),
                });
            }
            Err(e) => return Err(e),
        };
        self.settle(held.decision(by, approve, reason, now_ms)?)
    }

    /// Ends `held` at its deadline: writes a `timeout` decision, unless an approver decided
    /// first, and returns the decision that stands.
    pub fn expire(&self, held: &HeldRequest, now_ms: u64) -> Result<Verdict, ApprovalError> {
        match self.settle(held.timeout(now_ms)) {
            Ok(verdict) => Ok(verdict),
            Err(ApprovalError::Decided(first)) => Ok(*first),
            Err(e) => Err(e),
        }
    }

    /// The decision about `id`, if one was made.
    pub fn verdict(&self, id: &str) -> Result<Option<Verdict>, ApprovalError> {
        check_id(id)?;
        read_record(
            &self.decision_path(id),
            id,
            |verdict: &Verdict| &verdict.id,
            "decides",
        )
    }

    /// Forgets the held request (its decision file stays, so it cannot be decided again).
    pub fn release(&self, id: &str) {
        if check_id(id).is_ok() {
            let _ = fs::remove_file(self.request_path(id));
        }
    }

    /// Writes `verdict` unless a decision exists; returns it, or `Decided` with the first one.
    fn settle(&self, verdict: Verdict) -> Result<Verdict, ApprovalError> {
        self.ensure_dir()?;
        let path = self.decision_path(&verdict.id);
        let bytes = serde_json::to_vec_pretty(&verdict).expect("a verdict serialises");
        match write_private(&path, &bytes, true) {
            Ok(()) => Ok(verdict),
            Err(ApprovalError::Io { source, .. })
                if source.kind() == io::ErrorKind::AlreadyExists =>
            {
                match self.verdict(&verdict.id)? {
                    Some(first) => Err(ApprovalError::Decided(Box::new(first))),
                    None => Err(ApprovalError::Unknown(verdict.id)),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn ensure_dir(&self) -> Result<(), ApprovalError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| ApprovalError::Io {
                path: self.dir.clone(),
                source,
            })
    }

    fn request_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.request.json"))
    }

    fn decision_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.decision.json"))
    }
}

/// Where held requests and decisions live: the data dir, or the fleet's shared state.
#[derive(Clone, Debug)]
pub enum ApprovalStore {
    /// `state/approvals/` of one proxy's data dir.
    Dir(Approvals),
    /// The fleet's PostgreSQL.
    Fleet(SharedApprovals),
}

impl ApprovalStore {
    /// Records a held request so approvers can see it.
    pub async fn hold(&self, held: &HeldRequest) -> Result<(), ApprovalError> {
        match self {
            Self::Dir(store) => store.hold(held),
            Self::Fleet(store) => store.hold(held).await,
        }
    }

    /// The held requests nobody has decided yet whose deadline is after `now_ms`, oldest first.
    pub async fn pending(&self, now_ms: u64) -> Result<Vec<HeldRequest>, ApprovalError> {
        match self {
            Self::Dir(store) => store.pending(now_ms),
            Self::Fleet(store) => store.pending(now_ms).await,
        }
    }

    /// The held request `id`.
    pub async fn get(&self, id: &str) -> Result<HeldRequest, ApprovalError> {
        match self {
            Self::Dir(store) => store.get(id),
            Self::Fleet(store) => store.get(id).await,
        }
    }

    /// An approver's decision (see [`Approvals::decide`]).
    pub async fn decide(
        &self,
        id: &str,
        by: &str,
        approve: bool,
        reason: Option<String>,
        now_ms: u64,
    ) -> Result<Verdict, ApprovalError> {
        match self {
            Self::Dir(store) => store.decide(id, by, approve, reason, now_ms),
            Self::Fleet(store) => store.decide(id, by, approve, reason, now_ms).await,
        }
    }

    /// Ends `held` at its deadline (see [`Approvals::expire`]).
    pub async fn expire(&self, held: &HeldRequest, now_ms: u64) -> Result<Verdict, ApprovalError> {
        match self {
            Self::Dir(store) => store.expire(held, now_ms),
            Self::Fleet(store) => store.expire(held, now_ms).await,
        }
    }

    /// The decision about `id`, if one was made.
    pub async fn verdict(&self, id: &str) -> Result<Option<Verdict>, ApprovalError> {
        match self {
            Self::Dir(store) => store.verdict(id),
            Self::Fleet(store) => store.verdict(id).await,
        }
    }

    /// Forgets the held request; its decision stays, so it cannot be decided again.
    pub async fn release(&self, id: &str) {
        match self {
            Self::Dir(store) => store.release(id),
            Self::Fleet(store) => store.release(id).await,
        }
    }
}

/// Reads the JSON record of request `id` at `path` (None if there is none), refusing one
/// that is not a `T` or is about another request (`what` it does with the id, for the error).
fn read_record<T: serde::de::DeserializeOwned>(
    path: &Path,
    id: &str,
    id_of: impl Fn(&T) -> &str,
    what: &str,
) -> Result<Option<T>, ApprovalError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ApprovalError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let corrupt = |message| ApprovalError::Corrupt {
        path: path.to_owned(),
        message,
    };
    let record: T = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if id_of(&record) != id {
        return Err(corrupt(format!("it {what} request {}", id_of(&record))));
    }
    Ok(Some(record))
}

/// Ids are the only part of a path a command line names: nothing but `apr_` and hex.
fn check_id(id: &str) -> Result<(), ApprovalError> {
    let hex = id.strip_prefix("apr_").unwrap_or_default();
    if hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        Ok(())
    } else {
        Err(ApprovalError::BadId(id.to_owned()))
    }
}

/// Writes `bytes` to `path` (mode 0600, fsync'd) through a temporary file: renamed over it, or,
/// when `exclusive`, hard-linked so that an existing file is never replaced (`AlreadyExists`).
fn write_private(path: &Path, bytes: &[u8], exclusive: bool) -> Result<(), ApprovalError> {
    let io = |source| ApprovalError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension(format!("tmp{}.{}", std::process::id(), rand_suffix()));
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    let placed = written.and_then(|()| {
        if exclusive {
            fs::hard_link(&tmp, path)
        } else {
            fs::rename(&tmp, path)
        }
    });
    let _ = fs::remove_file(&tmp);
    placed.map_err(io)?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

fn rand_suffix() -> u32 {
    rand_core::RngCore::next_u32(&mut rand_core::OsRng)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(dir: &Approvals, expires_ms: u64) -> HeldRequest {
        let held = HeldRequest {
            id: Approvals::new_id(),
            job: "job-1".into(),
            wpc: "blake3:00".into(),
            rule: 0,
            approvers: vec!["alice".into(), "bob".into()],
            operation: "read_item".into(),
            method: "GET".into(),
            host: "connect.example".into(),
            path: "/v1/vaults/v/items/i".into(),
            query: None,
            body_hash: None,
            vault: Some("v".into()),
            vault_name: None,
            item: Some("i".into()),
            item_title: None,
            category: None,
            requested_ms: 1_000,
            expires_ms,
        };
        dir.hold(&held).unwrap();
        held
    }

    fn store() -> (tempfile::TempDir, Approvals) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Approvals::new(&DataDir::new(tmp.path()));
        (tmp, store)
    }

    #[test]
    fn the_first_decision_stands_and_is_single_use() {
        let (_tmp, store) = store();
        let a = held(&store, 10_000);
        assert_eq!(store.pending(2_000).unwrap(), std::slice::from_ref(&a));
        let v = store.decide(&a.id, "alice", true, None, 2_000).unwrap();
        assert_eq!(v.outcome, Outcome::Approved);
        assert_eq!(v.binding, a.binding());
        assert_eq!(store.verdict(&a.id).unwrap(), Some(v.clone()));
        assert!(store.pending(2_000).unwrap().is_empty(), "decided");
        // A second approver, or the proxy's timeout, cannot replace it.
        assert!(matches!(
            store.decide(&a.id, "bob", false, None, 2_500),
            Err(ApprovalError::Decided(first)) if first.by.as_deref() == Some("alice")
        ));
        assert_eq!(store.expire(&a, 20_000).unwrap(), v);
        // Released: the decision still blocks a late approval.
        store.release(&a.id);
        assert!(matches!(
            store.decide(&a.id, "bob", true, None, 3_000),
            Err(ApprovalError::Decided(_))
        ));
    }

    #[test]
    fn only_listed_approvers_decide_and_only_before_the_deadline() {
        let (_tmp, store) = store();
        let a = held(&store, 10_000);
        let err = store
            .decide(&a.id, "mallory", true, None, 2_000)
            .unwrap_err();
        assert!(err.to_string().contains("alice, bob"), "{err}");
        assert!(matches!(
            store.decide(&a.id, "alice", true, None, 10_000),
            Err(ApprovalError::Expired(_))
        ));
        assert!(store.pending(10_000).unwrap().is_empty(), "expired");
        let v = store.expire(&a, 10_000).unwrap();
        assert_eq!((v.outcome, v.by), (Outcome::Timeout, None));
    }

    #[test]
    fn ids_are_checked_before_any_path_is_built() {
        let (_tmp, store) = store();
        for id in [
            "../../keys/policy",
            "apr_",
            "apr_0123456789abcdef0123456789ABCDEF",
            "apr_0123456789abcdef0123456789abcdef/..",
            "",
        ] {
            assert!(
                matches!(store.get(id), Err(ApprovalError::BadId(_))),
                "{id}"
            );
            assert!(matches!(
                store.decide(id, "alice", true, None, 0),
                Err(ApprovalError::BadId(_))
            ));
        }
        assert!(matches!(
            store.decide(&Approvals::new_id(), "alice", true, None, 0),
            Err(ApprovalError::Unknown(_))
        ));
    }

    #[test]
    fn the_binding_covers_what_would_be_forwarded() {
        let (_tmp, store) = store();
        let a = held(&store, 10_000);
        for change in [
            |h: &mut HeldRequest| h.path.push('x'),
            |h: &mut HeldRequest| h.method = "DELETE".into(),
            |h: &mut HeldRequest| h.body_hash = Some("blake3k:x".into()),
            |h: &mut HeldRequest| h.query = Some("a=b".into()),
            |h: &mut HeldRequest| h.job = "job-2".into(),
            |h: &mut HeldRequest| h.host = "other".into(),
        ] {
            let mut b = a.clone();
            change(&mut b);
            assert_ne!(a.binding(), b.binding());
        }
    }

    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_tmp, store) = store();
        let a = held(&store, 10_000);
        store
            .decide(&a.id, "bob", false, Some("no".into()), 1)
            .unwrap();
        for path in [store.request_path(&a.id), store.decision_path(&a.id)] {
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        }
        let names: Vec<_> = fs::read_dir(&store.dir).unwrap().flatten().collect();
        assert_eq!(names.len(), 2, "no temporary files left");
    }
}
