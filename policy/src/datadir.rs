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
