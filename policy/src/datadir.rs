//! The embedded default: every file of a deployment lives under one data dir.
//!
//! The directory comes from `--data-dir`, else `CLAW_HOME`, else `./.claw`. The layout is
//! described in DESIGN.md ("The embedded default: one data dir"); this type is the one place
//! that knows the file names.

use std::path::{Path, PathBuf};

use crate::keys::Purpose;

/// The environment variable naming the data dir.
pub const ENV: &str = "CLAW_HOME";

/// The data dir when neither `--data-dir` nor `CLAW_HOME` is given.
pub const DEFAULT: &str = ".claw";

/// Paths inside one data dir.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// A data dir rooted at `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `clawproxy.toml`, the proxy's config.
    pub fn config(&self) -> PathBuf {
        self.root.join("clawproxy.toml")
    }

    /// `keys/`, private keys and the interception CA.
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// `keys/<purpose>.pem`, the Ed25519 private key for `purpose`.
    pub fn signing_key(&self, purpose: Purpose) -> PathBuf {
        self.keys().join(format!("{}.pem", purpose.as_str()))
    }

    /// `keys/audit.key`, 32 bytes keying body hashes.
    pub fn audit_key(&self) -> PathBuf {
        self.keys().join("audit.key")
    }

    /// `keys/audit-<kid>.key`, an audit key retired by `clawproxy rotate audit`: kept so the
    /// body hashes of receipts made before the rotation can still be tested.
    pub fn retired_audit_key(&self, kid: &str) -> PathBuf {
        self.keys().join(format!("audit-{kid}.key"))
    }

    /// `keys/ca.pem`, the interception CA certificate (public; agents trust it).
    pub fn ca_cert(&self) -> PathBuf {
        self.keys().join("ca.pem")
    }

    /// `keys/ca.key`, the interception CA private key.
    pub fn ca_key(&self) -> PathBuf {
        self.keys().join("ca.key")
    }

    /// `policies/`, the contract registry.
    pub fn policies(&self) -> PathBuf {
        self.root.join("policies")
    }

    /// `receipts/`, one log per proxy key.
    pub fn receipts(&self) -> PathBuf {
        self.root.join("receipts")
    }

    /// `state/`, revocations and job bindings.
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    /// `trust.json`, the public keys a verifier trusts.
    pub fn trust(&self) -> PathBuf {
        self.root.join("trust.json")
    }
}

/// The issuer name (`iss`) written for the token key at init.
pub const ISSUER_NAME: &str = "clawscope";

/// What [`init_keys`] created.
#[derive(Clone, Debug)]
pub struct InitKeys {
    /// The proxy id: token `aud`, log origin `clawproxy/<id>`.
    pub proxy_id: String,
    /// Key ids by purpose.
    pub kids: Vec<(Purpose, String)>,
}

/// Creates the signing keys (issuer, proxy, policy), the audit key and `trust.json`.
///
/// Refuses to replace any existing key unless `force`. The proxy id is `p` followed by eight
/// hex digits of the SHA-256 of the proxy key, so two data dirs never share a log origin.
pub fn init_keys(dir: &DataDir, force: bool) -> Result<InitKeys, crate::keys::KeyError> {
    use crate::keys::{self, KeyError};
    use sha2::{Digest, Sha256};
    use std::os::unix::fs::DirBuilderExt;

    let io = |path: PathBuf| move |source| KeyError::Io { path, source };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir.keys())
        .map_err(io(dir.keys()))?;
    for path in Purpose::ALL
        .iter()
        .map(|p| dir.signing_key(*p))
        .chain([dir.audit_key(), dir.trust()])
    {
        if !force && path.exists() {
            return Err(KeyError::Exists { path });
        }
    }
    let mut trust = crate::trust::TrustStore::default();
    let mut kids = Vec::new();
    let mut proxy_id = String::new();
    for purpose in Purpose::ALL {
        let key = keys::generate();
        keys::write_signing_key(&dir.signing_key(purpose), &key, force)?;
        let public = key.verifying_key();
        let name = match purpose {
            Purpose::Issuer => ISSUER_NAME.to_owned(),
            Purpose::Proxy => {
                let digest = Sha256::digest(public.as_bytes());
                proxy_id = format!(
                    "p{:02x}{:02x}{:02x}{:02x}",
                    digest[0], digest[1], digest[2], digest[3]
                );
                proxy_id.clone()
            }
            Purpose::Policy => "policy".to_owned(),
        };
        trust.add(purpose, &name, public);
        kids.push((purpose, keys::kid(&public)));
    }
    let mut audit = zeroize::Zeroizing::new([0u8; 32]);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, audit.as_mut());
    keys::write_secret(&dir.audit_key(), audit.as_ref(), force)?;
    crate::registry::write_atomic(&dir.trust(), trust.to_json_pretty().as_bytes())
        .map_err(io(dir.trust()))?;
    Ok(InitKeys { proxy_id, kids })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{self, KeyError};

    #[test]
    fn init_keys_writes_private_keys_and_trust() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path());
        let init = init_keys(&dir, false).unwrap();
        let trust = crate::trust::TrustStore::load(&dir.trust()).unwrap();
        for (purpose, kid) in &init.kids {
            let key = keys::read_signing_key(&dir.signing_key(*purpose)).unwrap();
            assert_eq!(&keys::kid(&key.verifying_key()), kid);
            assert!(trust.key(kid, *purpose).is_some());
        }
        let proxy = trust.by_purpose(Purpose::Proxy).next().unwrap();
        assert_eq!(proxy.name, init.proxy_id);
        assert_eq!(keys::read_secret_32(&dir.audit_key()).unwrap().len(), 32);
        assert!(matches!(
            init_keys(&dir, false),
            Err(KeyError::Exists { .. })
        ));
        assert!(init_keys(&dir, true).is_ok());
    }
}
