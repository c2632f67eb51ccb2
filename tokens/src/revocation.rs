//! Revocations in `<data dir>/state/revocations.json`, by token id and by job.
//!
//! Writers take an exclusive lock and rewrite the file atomically; readers (the proxy asks on
//! every request) reload only when the file's length or modification time changed, so a
//! revocation takes effect on the next request without a read per request. Entries are pruned
//! once no token they could match can still be valid: a `jti` after its token's `exp` plus
//! leeway, a job after the longest token lifetime a contract may allow.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::token::{MAX_LEEWAY_SECS, Revocations, TokenError};

/// The longest any contract lets a token live (`max_ttl_seconds` ≤ 86400).
const MAX_TTL_SECS: u64 = 86_400;

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

/// The data dir's revocation store.
#[derive(Debug)]
pub struct RevocationStore {
    path: PathBuf,
    cache: Mutex<(Option<(u64, SystemTime)>, RevocationList)>,
}

impl RevocationStore {
    /// The store in `state_dir` (created on first revocation).
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            path: state_dir.into().join("revocations.json"),
            cache: Mutex::new((None, RevocationList::default())),
        }
    }

    /// Revokes a token id; `exp`, when known, bounds how long the entry is kept.
    pub fn revoke_jti(
        &self,
        jti: &str,
        exp: Option<u64>,
        reason: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let prune_after = exp.unwrap_or(now + MAX_TTL_SECS) + MAX_LEEWAY_SECS;
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

    /// Revokes every token of a job.
    pub fn revoke_job(&self, job: &str, reason: &str, now: u64) -> Result<(), StoreError> {
        let prune_after = now + MAX_TTL_SECS + MAX_LEEWAY_SECS;
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
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
        if stamp != cache.0 || stamp.is_none() {
            cache.1 = self.read()?;
            cache.0 = stamp;
        }
        Ok(cache.1.clone())
    }

    /// When `jti` or `job` was revoked, if it was.
    pub fn revoked_at(&self, jti: &str, job: &str) -> Result<Option<u64>, StoreError> {
        let list = self.list()?;
        Ok(list
            .jti
            .get(jti)
            .or_else(|| list.job.get(job))
            .map(|e| e.at))
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
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("revocations.lock"))
            .map_err(|e| self.error(e.to_string()))?;
        File::lock(&lock).map_err(|e| self.error(e.to_string()))?;
        let mut list = self.read()?;
        change(&mut list);
        list.jti.retain(|_, e| e.prune_after > now);
        list.job.retain(|_, e| e.prune_after > now);
        let text = serde_json::to_string_pretty(&list).expect("revocations serialise");
        claw_policy::registry::write_atomic(&self.path, text.as_bytes())
            .map_err(|e| self.error(e.to_string()))
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
        // An unreadable revocation list fails closed: every token counts as revoked.
        let list = self
            .list()
            .map_err(|_| TokenError::Revoked(jti.to_owned()))?;
        if list.jti.contains_key(jti) {
            return Err(TokenError::Revoked(jti.to_owned()));
        }
        if list.job.contains_key(job) {
            return Err(TokenError::JobRevoked(job.to_owned()));
        }
        Ok(())
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
    fn a_corrupt_list_fails_closed() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("revocations.json"), "{not json").unwrap();
        let store = RevocationStore::new(tmp.path());
        assert!(store.check("j", "job").is_err());
    }
}
