//! The local contract registry in `<data dir>/policies/`.
//!
//! Envelopes are content-addressed (`<hex of the blake3 hash>.json`, never rewritten) and
//! `index.json` records each name's versions and which one is active. Publishing verifies the
//! envelope against trusted policy keys, writes the envelope and then the index, each through a
//! temporary file, fsync and rename, under an exclusive lock: a crash or a concurrent
//! publisher can leave at most an unreferenced envelope file, never a half-written index.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::canonical::{self, FieldError};
use crate::contract::Contract;
use crate::envelope::{Envelope, EnvelopeError};
use crate::trust::TrustStore;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Reading or writing the registry failed.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No contract with that name or hash.
    #[error("no published contract named or hashed {0:?} (see `clawcontrols list`)")]
    NotFound(String),
    /// A stored file is not what the registry wrote.
    #[error("{path}: corrupt registry file: {message}")]
    Corrupt {
        /// The file involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The envelope failed verification.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

/// `index.json`: names, versions and the active version of each.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// Always 1.
    pub version: u32,
    /// By contract name.
    pub contracts: BTreeMap<String, NameEntry>,
}

/// The versions of one contract name.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NameEntry {
    /// Hash of the active version.
    pub active: String,
    /// Every version, oldest first.
    pub versions: Vec<Version>,
}

/// One published version.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// 1, 2, … per name.
    pub version: u32,
    /// The envelope's hash.
    pub hash: String,
    /// RFC 3339 UTC time of publication.
    pub published_at: String,
}

/// Where a hash stands in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Its contract name.
    pub name: String,
    /// The latest version number under which it was published.
    pub version: u32,
    /// Whether it is the active version of its name.
    pub active: bool,
}

/// The result of a publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    /// The contract name.
    pub name: String,
    /// The hash now active.
    pub hash: String,
    /// Its version number.
    pub version: u32,
    /// False when this hash was already the active version (nothing changed).
    pub changed: bool,
}

impl Index {
    /// Where `hash` stands, if it was ever published.
    pub fn status(&self, hash: &str) -> Option<Status> {
        self.contracts.iter().find_map(|(name, entry)| {
            let version = entry.versions.iter().rev().find(|v| v.hash == hash)?;
            Some(Status {
                name: name.clone(),
                version: version.version,
                active: entry.active == hash,
            })
        })
    }

    /// The hash published just before `hash` under the same name, if any.
    pub fn previous(&self, hash: &str) -> Option<&str> {
        self.contracts.values().find_map(|entry| {
            let at = entry.versions.iter().rposition(|v| v.hash == hash)?;
            entry.versions[..at]
                .iter()
                .rev()
                .find(|v| v.hash != hash)
                .map(|v| v.hash.as_str())
        })
    }
}

/// A registry directory.
#[derive(Clone, Debug)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// The registry in `dir` (created on first publish).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The registry's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads the index (empty if nothing was published yet).
    pub fn index(&self) -> Result<Index, RegistryError> {
        let path = self.dir.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => canonical::from_slice_strict(&bytes).map_err(|e: FieldError| {
                RegistryError::Corrupt {
                    path,
                    message: e.to_string(),
                }
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Index {
                version: 1,
                contracts: BTreeMap::new(),
            }),
            Err(source) => Err(RegistryError::Io { path, source }),
        }
    }

    /// Verifies `envelope` against trusted policy keys, stores it and makes it active.
    pub fn publish(
        &self,
        envelope: &Envelope,
        trust: &TrustStore,
    ) -> Result<Published, RegistryError> {
        let contract = envelope.verify(trust)?;
        fs::create_dir_all(&self.dir).map_err(|source| self.io(&self.dir, source))?;
        let _lock = self.lock()?;
        let path = self.envelope_path(contract.hash());
        if !path.exists() {
            self.write_atomic(&path, envelope.to_json_pretty().as_bytes())?;
        }
        let mut index = self.index()?;
        let name = contract.name().to_owned();
        if let Some(entry) = index.contracts.get(&name)
            && entry.active == contract.hash()
        {
            let version = entry.versions.last().map_or(1, |v| v.version);
            return Ok(Published {
                name,
                hash: contract.hash().to_owned(),
                version,
                changed: false,
            });
        }
        let entry = index.contracts.entry(name.clone()).or_insert(NameEntry {
            active: String::new(),
            versions: Vec::new(),
        });
        let version = entry.versions.last().map_or(1, |v| v.version + 1);
        entry.versions.push(Version {
            version,
            hash: contract.hash().to_owned(),
            published_at: now_rfc3339(),
        });
        entry.active = contract.hash().to_owned();
        let text = serde_json::to_string_pretty(&index).expect("index serialises");
        self.write_atomic(&self.dir.join("index.json"), text.as_bytes())?;
        Ok(Published {
            name,
            hash: contract.hash().to_owned(),
            version,
            changed: true,
        })
    }

    /// The stored envelope with this hash, checked to match it.
    pub fn envelope(&self, hash: &str) -> Result<Envelope, RegistryError> {
        let path = self.envelope_path(hash);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::NotFound(hash.to_owned()));
            }
            Err(source) => return Err(self.io(&path, source)),
        };
        let envelope = Envelope::from_slice(&bytes)?;
        if envelope.hash != hash {
            return Err(RegistryError::Corrupt {
                path,
                message: format!("holds {} instead", envelope.hash),
            });
        }
        Ok(envelope)
    }

    /// Resolves a contract name (its active version) or a hash to its envelope and hash.
    pub fn resolve(&self, name_or_hash: &str) -> Result<(Envelope, Status), RegistryError> {
        let index = self.index()?;
        let hash = match index.contracts.get(name_or_hash) {
            Some(entry) => entry.active.clone(),
            None => name_or_hash.to_owned(),
        };
        let status = index
            .status(&hash)
            .ok_or_else(|| RegistryError::NotFound(name_or_hash.to_owned()))?;
        Ok((self.envelope(&hash)?, status))
    }

    /// Resolves and verifies against trusted policy keys in one step.
    pub fn load(
        &self,
        name_or_hash: &str,
        trust: &TrustStore,
    ) -> Result<(Contract, Status), RegistryError> {
        let (envelope, status) = self.resolve(name_or_hash)?;
        Ok((envelope.verify(trust)?, status))
    }

    fn envelope_path(&self, hash: &str) -> PathBuf {
        // Only the hex part names the file, so a hash string can never reach outside the dir.
        let hex: String = hash
            .strip_prefix("blake3:")
            .unwrap_or(hash)
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect();
        self.dir.join(format!("{hex}.json"))
    }

    fn lock(&self) -> Result<File, RegistryError> {
        let path = self.dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| self.io(&path, source))?;
        file.lock().map_err(|source| self.io(&path, source))?;
        Ok(file)
    }

    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
        write_atomic(path, bytes).map_err(|source| self.io(path, source))
    }

    fn io(&self, path: &Path, source: std::io::Error) -> RegistryError {
        RegistryError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Writes `bytes` to `path` through a temporary file, fsync, rename and a directory fsync.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// The current UTC time as RFC 3339 with second precision.
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    now.format(&time::format_description::well_known::Rfc3339)
        .expect("UTC time formats")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{self, Purpose};

    const SEED: &[u8] = include_bytes!("../../examples/policies/1password-readonly-agent.json");

    fn setup() -> (
        tempfile::TempDir,
        Registry,
        TrustStore,
        ed25519_dalek::SigningKey,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let key = keys::generate();
        let mut trust = TrustStore::default();
        trust.add(Purpose::Policy, "policy", key.verifying_key());
        let registry = Registry::new(dir.path().join("policies"));
        (dir, registry, trust, key)
    }

    #[test]
    fn publish_versions_and_supersedes() {
        let (_dir, registry, trust, key) = setup();
        let v1 = Contract::from_slice(SEED).unwrap();
        let p1 = registry
            .publish(&Envelope::sign(&v1, &key), &trust)
            .unwrap();
        assert_eq!((p1.version, p1.changed), (1, true));
        let again = registry
            .publish(&Envelope::sign(&v1, &key), &trust)
            .unwrap();
        assert_eq!((again.version, again.changed), (1, false));

        let text = std::str::from_utf8(SEED).unwrap().replace("900", "300");
        let v2 = Contract::from_slice(text.as_bytes()).unwrap();
        let p2 = registry
            .publish(&Envelope::sign(&v2, &key), &trust)
            .unwrap();
        assert_eq!(p2.version, 2);

        let (_, status) = registry.resolve("1password-readonly-agent").unwrap();
        assert_eq!(status.version, 2);
        let (_, old) = registry.resolve(v1.hash()).unwrap();
        assert!(!old.active, "the old hash stays readable but is not active");
        assert_eq!(
            registry.index().unwrap().previous(v2.hash()),
            Some(v1.hash())
        );
    }

    #[test]
    fn untrusted_envelope_is_not_published() {
        let (_dir, registry, _trust, key) = setup();
        let contract = Contract::from_slice(SEED).unwrap();
        let err = registry
            .publish(&Envelope::sign(&contract, &key), &TrustStore::default())
            .unwrap_err();
        assert!(matches!(
            err,
            RegistryError::Envelope(EnvelopeError::Untrusted { .. })
        ));
        assert!(
            !registry.dir().join("index.json").exists(),
            "no partial write"
        );
    }

    #[test]
    fn unknown_and_path_like_hashes_are_not_found() {
        let (_dir, registry, trust, key) = setup();
        let contract = Contract::from_slice(SEED).unwrap();
        registry
            .publish(&Envelope::sign(&contract, &key), &trust)
            .unwrap();
        for query in ["nope", "blake3:00", "../../etc/passwd"] {
            assert!(matches!(
                registry.resolve(query),
                Err(RegistryError::NotFound(_))
            ));
        }
    }
}
