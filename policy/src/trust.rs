//! `trust.json`: the public keys a verifier trusts, by key id and purpose.
//!
//! ```json
//! { "version": 1,
//!   "keys": [ { "kid": "<RFC 7638 thumbprint>", "purpose": "issuer|proxy|policy",
//!               "alg": "Ed25519", "public_key": "<base64>", "name": "<who>" } ],
//!   "witnesses": [ "<name>+<hex key id>+<base64(0x04 ‖ key)>" ],  // optional
//!   "witness_threshold": 1 }                                       // optional
//! ```
//!
//! `witnesses` are C2SP cosignature verifier keys (`c2sp.org/tlog-cosignature`): when some
//! are named, `clawverify verify` asks that at least `witness_threshold` (default 1) of them
//! cosigned every log's checkpoint in a bundle (`log.witness`). They are kept as written here
//! and parsed by the verifier, which owns the note format.
//!
//! `name` says who holds the key: the token issuer's `iss` for an issuer key, the proxy id
//! (token `aud`, log origin `clawproxy/<id>`) for a proxy key, and a label for a policy key.
//! On load every entry's `kid` must equal the thumbprint of its key and no key may be a
//! small-order ("weak") point, so a trust file cannot smuggle in a key that verifies anything.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::canonical::{self, FieldError};
use crate::keys::{self, Purpose};

/// The only signature algorithm trust entries may name.
pub const ED25519: &str = "Ed25519";

/// The on-disk form of `trust.json`.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustFile {
    /// Format version; always 1.
    pub version: u32,
    /// Trusted public keys.
    pub keys: Vec<TrustEntry>,
    /// Witnesses' cosignature verifier keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub witnesses: Vec<String>,
    /// How many witnesses must cosign each checkpoint (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witness_threshold: Option<usize>,
}

/// One trusted public key.
#[derive(Clone, Debug, Deserialize, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustEntry {
    /// RFC 7638 thumbprint of the key.
    pub kid: String,
    /// What the key may sign.
    pub purpose: Purpose,
    /// Always `Ed25519`.
    pub alg: String,
    /// The 32-byte public key, standard base64.
    pub public_key: String,
    /// Who holds the key (issuer name, proxy id, or a label).
    pub name: String,
}

/// A checked trusted key.
#[derive(Clone, Debug)]
pub struct TrustedKey {
    /// Its key id.
    pub kid: String,
    /// What it may sign.
    pub purpose: Purpose,
    /// Who holds it.
    pub name: String,
    /// The key.
    pub key: VerifyingKey,
}

/// Why a trust file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The trust file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid trust document.
    #[error("trust file {field}")]
    Format {
        /// Where and what.
        #[from]
        field: FieldError,
    },
    /// An entry is unusable.
    #[error("trust file /keys/{index}: {message}")]
    Entry {
        /// Index of the entry in `keys`.
        index: usize,
        /// What is wrong.
        message: String,
    },
}

/// The set of keys a verifier trusts.
#[derive(Clone, Debug, Default)]
pub struct TrustStore {
    keys: Vec<TrustedKey>,
    witnesses: Vec<String>,
    witness_threshold: Option<usize>,
}

impl TrustStore {
    /// Loads and checks a `trust.json` file.
    pub fn load(path: &Path) -> Result<Self, TrustError> {
        let bytes = std::fs::read(path).map_err(|source| TrustError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&bytes)
    }

    /// Parses and checks a trust document.
    pub fn from_json(bytes: &[u8]) -> Result<Self, TrustError> {
        let file: TrustFile = canonical::from_slice_strict(bytes)?;
        Self::from_file(file)
    }

    /// Checks a parsed trust document.
    pub fn from_file(file: TrustFile) -> Result<Self, TrustError> {
        if file.version != 1 {
            return Err(TrustError::Format {
                field: FieldError {
                    pointer: "/version".into(),
                    message: format!("unsupported version {}, expected 1", file.version),
                },
            });
        }
        let mut keys: Vec<TrustedKey> = Vec::with_capacity(file.keys.len());
        for (index, entry) in file.keys.into_iter().enumerate() {
            let bad = |message: String| TrustError::Entry { index, message };
            if entry.alg != ED25519 {
                return Err(bad(format!("alg {:?} is not Ed25519", entry.alg)));
            }
            let raw = STANDARD
                .decode(&entry.public_key)
                .map_err(|e| bad(format!("public_key is not base64: {e}")))?;
            let raw: [u8; 32] = raw
                .try_into()
                .map_err(|_| bad("public_key is not 32 bytes".into()))?;
            let key = VerifyingKey::from_bytes(&raw)
                .map_err(|_| bad("public_key is not an Ed25519 point".into()))?;
            if key.is_weak() {
                return Err(bad("public_key is a small-order (weak) point".into()));
            }
            if keys::kid(&key) != entry.kid {
                return Err(bad(format!(
                    "kid {:?} is not the key's thumbprint",
                    entry.kid
                )));
            }
            if keys.iter().any(|k| k.kid == entry.kid) {
                return Err(bad(format!("kid {:?} is listed twice", entry.kid)));
            }
            keys.push(TrustedKey {
                kid: entry.kid,
                purpose: entry.purpose,
                name: entry.name,
                key,
            });
        }
        let threshold_ok = file
            .witness_threshold
            .is_none_or(|k| (1..=file.witnesses.len()).contains(&k));
        if !threshold_ok {
            return Err(TrustError::Format {
                field: FieldError {
                    pointer: "/witness_threshold".into(),
                    message: format!(
                        "must be between 1 and the number of witnesses ({})",
                        file.witnesses.len()
                    ),
                },
            });
        }
        Ok(Self {
            keys,
            witnesses: file.witnesses,
            witness_threshold: file.witness_threshold,
        })
    }

    /// The witnesses' cosignature verifier keys, as written.
    pub fn witnesses(&self) -> &[String] {
        &self.witnesses
    }

    /// How many witnesses must cosign each checkpoint.
    pub fn witness_threshold(&self) -> usize {
        self.witness_threshold.unwrap_or(1)
    }

    /// The key with this id, only if it is trusted for `purpose`.
    pub fn key(&self, kid: &str, purpose: Purpose) -> Option<&TrustedKey> {
        self.keys
            .iter()
            .find(|k| k.kid == kid && k.purpose == purpose)
    }

    /// Every key trusted for `purpose`.
    pub fn by_purpose(&self, purpose: Purpose) -> impl Iterator<Item = &TrustedKey> {
        self.keys.iter().filter(move |k| k.purpose == purpose)
    }

    /// The proxy ids: the distinct names of the proxy keys, sorted. A proxy whose key was
    /// rotated has several keys under one name.
    pub fn proxy_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self
            .by_purpose(Purpose::Proxy)
            .map(|k| k.name.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Every trusted key.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// Adds a key (used by `init` and tests).
    pub fn add(&mut self, purpose: Purpose, name: &str, key: VerifyingKey) {
        self.keys.push(TrustedKey {
            kid: keys::kid(&key),
            purpose,
            name: name.to_owned(),
            key,
        });
    }

    /// The on-disk form.
    pub fn to_file(&self) -> TrustFile {
        TrustFile {
            version: 1,
            keys: self
                .keys
                .iter()
                .map(|k| TrustEntry {
                    kid: k.kid.clone(),
                    purpose: k.purpose,
                    alg: ED25519.to_owned(),
                    public_key: STANDARD.encode(k.key.as_bytes()),
                    name: k.name.clone(),
                })
                .collect(),
            witnesses: self.witnesses.clone(),
            witness_threshold: self.witness_threshold,
        }
    }

    /// Pretty JSON of the on-disk form.
    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(&self.to_file()).expect("trust file serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (TrustStore, String) {
        let mut store = TrustStore::default();
        let key = keys::generate().verifying_key();
        store.add(Purpose::Issuer, "clawscope", key);
        (store, keys::kid(&key))
    }

    #[test]
    fn round_trips_and_matches_by_purpose() {
        let (store, kid) = store();
        let again = TrustStore::from_json(store.to_json_pretty().as_bytes()).unwrap();
        assert!(again.key(&kid, Purpose::Issuer).is_some());
        assert!(again.key(&kid, Purpose::Proxy).is_none());
        assert!(again.key("other", Purpose::Issuer).is_none());
    }

    #[test]
    fn proxy_ids_name_each_proxy_once_however_many_keys_it_had() {
        let (mut store, _) = store();
        assert!(store.proxy_ids().is_empty());
        for name in ["p2", "p1", "p2"] {
            store.add(Purpose::Proxy, name, keys::generate().verifying_key());
        }
        assert_eq!(store.proxy_ids(), ["p1", "p2"]);
    }

    #[test]
    fn wrong_kid_is_refused() {
        let (store, _) = store();
        let mut file = store.to_file();
        file.keys[0].kid = "not-the-thumbprint".into();
        let err = TrustStore::from_file(file).unwrap_err();
        assert!(err.to_string().contains("thumbprint"), "{err}");
    }

    #[test]
    fn weak_key_is_refused() {
        let (store, _) = store();
        let mut file = store.to_file();
        // The identity point: small order, verifies forged signatures under non-strict checks.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        file.keys[0].public_key = STANDARD.encode(identity);
        let err = TrustStore::from_file(file).unwrap_err();
        assert!(err.to_string().contains("weak"), "{err}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = TrustStore::from_json(br#"{"version":1,"keys":[],"extra":1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
