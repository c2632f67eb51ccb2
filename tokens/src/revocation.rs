//! Revocations in `<data dir>/state/revocations.json`, by token id and by job.
//!
//! Writers take an exclusive lock (`revocations.lock`) and replace the file atomically
//! (temporary file, fsync, rename), so concurrent `clawscope revoke`s lose nothing and readers
//! never see half a file. Readers (the proxy asks on every request) `stat` the file and read it
//! again only when it was replaced, so a revocation takes effect on the next request without a
//! read per request. An unreadable or corrupt file fails closed: every token is refused.
//!
//! Entries are pruned, at the next write, once no token they could match can still be valid:
//! a `jti` at its token's `exp` + 30 s leeway when the caller knows `exp`, otherwise (and for
//! jobs) at the revocation time + the longest lifetime any contract allows (86400 s) + 30 s.
//! While a job's entry is kept, `mint` refuses new tokens for that job id.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::token::{MAX_LEEWAY_SECS, Revocations, TokenError};

/// The longest any contract lets a token live (`max_ttl_seconds` ≤ 86400 in the WPC schema).
const MAX_TTL_SECS: u64 = 86_400;

/// The revocation list, in the state dir.
pub const FILE: &str = "revocations.json";

/// Writers serialise on this file's lock.
const LOCK_FILE: &str = "revocations.lock";

/// Until when a revocation made at `now` must be kept: its token's `exp` + leeway when known;
/// otherwise (and for a job, whose tokens were all issued by now) now + the longest lifetime
/// any token can have + leeway.
pub fn keep_until(exp: Option<u64>, now: u64) -> u64 {
    exp.unwrap_or(now.saturating_add(MAX_TTL_SECS))
        .saturating_add(MAX_LEEWAY_SECS)
}

/// One revocation.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// When it was revoked (seconds since the epoch).
    pub at: u64,
    /// Why, as given.
    pub reason: String,
    /// Kept until then (seconds since the epoch).
    pub prune_after: u64,
}

/// The revocation file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationList {
    /// Revoked token ids.
    pub jti: BTreeMap<String, Entry>,
    /// Revoked jobs.
    pub job: BTreeMap<String, Entry>,
}

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
#[error("revocations {path}: {message}")]
pub struct StoreError {
    path: PathBuf,
    message: String,
}

/// What identifies one version of the file without reading it. Writers replace the file by
/// rename, so a new version is a new inode; length, mtime and ctime guard against inode reuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    inode: (u64, u64),
    #[cfg(unix)]
    changed: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        use std::os::unix::fs::MetadataExt;
        Self {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            inode: (meta.dev(), meta.ino()),
            #[cfg(unix)]
            changed: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

#[derive(Debug, Default)]
struct Cached {
    /// `None` until loaded, `Some(None)` when the file did not exist.
    stamp: Option<Option<Stamp>>,
    list: Arc<RevocationList>,
}

/// The data dir's revocation store.
///
/// Cheap to ask on every request: one `stat` per call, and the file is read again only when
/// it was replaced.
#[derive(Debug)]
pub struct RevocationStore {
    path: PathBuf,
    cache: Mutex<Cached>,
}

impl RevocationStore {
    /// The store in `state_dir` (created on first revocation).
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            path: state_dir.into().join(FILE),
            cache: Mutex::new(Cached::default()),
        }
    }

    /// The file this store reads and writes.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Revokes a token id. `exp`, when known, bounds how long the entry is kept (until
    /// `exp` + 30 s); otherwise it is kept for the longest lifetime any token can have.
    pub fn revoke_jti(
        &self,
        jti: &str,
        exp: Option<u64>,
        reason: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let prune_after = keep_until(exp, now);
        self.update(now, |list| {
            list.jti.insert(
                jti.to_owned(),
                Entry {
                    at: now,
                    reason: reason.to_owned(),
                    prune_after,
                },
            );
        })
    }

    /// Revokes every token of a job (and refuses new ones for it while the entry is kept).
    pub fn revoke_job(&self, job: &str, reason: &str, now: u64) -> Result<(), StoreError> {
        let prune_after = keep_until(None, now);
        self.update(now, |list| {
            list.job.insert(
                job.to_owned(),
                Entry {
                    at: now,
                    reason: reason.to_owned(),
                    prune_after,
                },
            );
        })
    }

    /// The current list (reloaded if the file changed).
    pub fn list(&self) -> Result<RevocationList, StoreError> {
        self.with(|list| RevocationList::clone(list))
    }

    /// The current list, shared (reloaded if the file changed).
    pub fn snapshot(&self) -> Result<Arc<RevocationList>, StoreError> {
        self.with(Arc::clone)
    }

    /// The revocation of `jti`, else of `job`, if either is revoked.
    pub fn revocation(&self, jti: &str, job: &str) -> Result<Option<Entry>, StoreError> {
        self.with(|list| list.jti.get(jti).or_else(|| list.job.get(job)).cloned())
    }

    /// When `jti` or `job` was revoked, if it was.
    pub fn revoked_at(&self, jti: &str, job: &str) -> Result<Option<u64>, StoreError> {
        Ok(self.revocation(jti, job)?.map(|e| e.at))
    }

    /// Whether a job is revoked.
    pub fn job_revoked(&self, job: &str) -> Result<bool, StoreError> {
        self.with(|list| list.job.contains_key(job))
    }

    /// Runs `f` on the current list without copying it.
    fn with<T>(&self, f: impl FnOnce(&Arc<RevocationList>) -> T) -> Result<T, StoreError> {
        let mut cache = self.locked();
        let stamp = match std::fs::metadata(&self.path) {
            Ok(meta) => Some(Stamp::of(&meta)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.error(e.to_string())),
        };
        if cache.stamp != Some(stamp) {
            // On error the old stamp stays, so the next call reads again (and fails closed
            // again) rather than trusting a stale list.
            cache.list = Arc::new(self.read()?);
            cache.stamp = Some(stamp);
        }
        Ok(f(&cache.list))
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, Cached> {
        // The cache holds no invariant a panicking holder could break.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> Result<RevocationList, StoreError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => claw_policy::canonical::from_slice_strict(&bytes)
                .map_err(|e| self.error(e.to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RevocationList::default()),
            Err(e) => Err(self.error(e.to_string())),
        }
    }

    fn update(&self, now: u64, change: impl FnOnce(&mut RevocationList)) -> Result<(), StoreError> {
        let dir = self.path.parent().map(PathBuf::from).unwrap_or_default();
        std::fs::create_dir_all(&dir).map_err(|e| self.error(e.to_string()))?;
        // The lock lives in its own file: the data file is replaced by rename, and a lock on
        // a replaced inode would exclude nobody.
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(|e| self.error(e.to_string()))?;
        File::lock(&lock).map_err(|e| self.error(e.to_string()))?;
        let mut list = self.read()?;
        change(&mut list);
        list.jti.retain(|_, e| e.prune_after > now);
        list.job.retain(|_, e| e.prune_after > now);
        // Maps of strings and integers always serialise.
        let text = serde_json::to_string_pretty(&list).expect("revocations serialise");
        claw_policy::registry::write_atomic(&self.path, text.as_bytes())
            .map_err(|e| self.error(e.to_string()))
        // The lock is released when `lock` is dropped, after the rename.
    }

    fn error(&self, message: String) -> StoreError {
        StoreError {
            path: self.path.clone(),
            message,
        }
    }
}

impl Revocations for RevocationStore {
    fn check(&self, jti: &str, job: &str) -> Result<(), TokenError> {
        // An unreadable revocation list fails closed: no token is accepted.
        self.with(|list| {
            if list.jti.contains_key(jti) {
                Err(TokenError::Revoked(jti.to_owned()))
            } else if list.job.contains_key(job) {
                Err(TokenError::JobRevoked(job.to_owned()))
            } else {
                Ok(())
            }
        })
        .map_err(|_| TokenError::RevocationsUnavailable)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_take_effect_for_other_readers_and_prune() {
        let tmp = tempfile::tempdir().unwrap();
        let reader = RevocationStore::new(tmp.path());
        let writer = RevocationStore::new(tmp.path());
        assert!(reader.check("j1", "job-a").is_ok());
        writer.revoke_jti("j1", Some(1_000), "leaked", 500).unwrap();
        assert_eq!(
            reader.check("j1", "job-a"),
            Err(TokenError::Revoked("j1".into()))
        );
        writer.revoke_job("job-b", "done", 500).unwrap();
        assert_eq!(
            reader.check("j2", "job-b"),
            Err(TokenError::JobRevoked("job-b".into()))
        );
        // Far in the future both are pruned at the next write.
        writer.revoke_job("job-c", "x", 1_000_000).unwrap();
        let list = reader.list().unwrap();
        assert!(list.jti.is_empty() && !list.job.contains_key("job-b"));
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().to_owned();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let store = RevocationStore::new(&path);
                    for j in 0..10 {
                        store
                            .revoke_jti(&format!("t{i}-{j}"), None, "r", 100)
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(RevocationStore::new(&path).list().unwrap().jti.len(), 80);
    }

    #[test]
    fn a_same_length_replacement_is_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let reader = RevocationStore::new(tmp.path());
        let writer = RevocationStore::new(tmp.path());
        writer.revoke_job("job-a", "r", 100).unwrap();
        assert!(reader.job_revoked("job-a").unwrap());
        // Same length, same second: only the new inode tells the versions apart.
        let text = std::fs::read_to_string(reader.path())
            .unwrap()
            .replace("job-a", "job-b");
        claw_policy::registry::write_atomic(reader.path(), text.as_bytes()).unwrap();
        assert!(!reader.job_revoked("job-a").unwrap());
        assert_eq!(
            reader.check("j", "job-b"),
            Err(TokenError::JobRevoked("job-b".into()))
        );
    }

    #[test]
    fn a_known_exp_bounds_the_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let store = RevocationStore::new(tmp.path());
        store.revoke_jti("t1", Some(1_000), "r", 500).unwrap();
        store.revoke_jti("t2", None, "r", 500).unwrap();
        let list = store.list().unwrap();
        assert_eq!(list.jti["t1"].prune_after, 1_030);
        assert_eq!(list.jti["t2"].prune_after, 500 + 86_400 + 30);
        // Still kept at exp + leeway − 1, gone after.
        store.revoke_job("x", "r", 1_029).unwrap();
        assert!(store.list().unwrap().jti.contains_key("t1"));
        store.revoke_job("y", "r", 1_030).unwrap();
        let list = store.list().unwrap();
        assert!(!list.jti.contains_key("t1") && list.jti.contains_key("t2"));
    }

    #[test]
    fn a_corrupt_list_fails_closed() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("revocations.json"), "{not json").unwrap();
        let store = RevocationStore::new(tmp.path());
        assert_eq!(
            store.check("j", "job"),
            Err(TokenError::RevocationsUnavailable)
        );
    }
}
