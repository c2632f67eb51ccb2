//! Ed25519 key files and key ids.
//!
//! Private keys are PKCS#8 PEM files created with mode 0600; reading one that group or others
//! may read is refused, because a key others could have copied no longer proves anything.
//! A key id (`kid`) is the RFC 7638 JWK thumbprint of the public key, so the same key has the
//! same id in `trust.json`, in a JWKS and in every signature that names it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// What a key signs. A key trusted for one purpose is never accepted for another.
#[derive(Clone, Copy, Debug, Deserialize, Eq, Hash, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// Signs job-scoped tokens (clawscope).
    Issuer,
    /// Signs receipts and checkpoints (clawproxy's log).
    Proxy,
    /// Signs Work Policy Contract envelopes (clawcontrols).
    Policy,
}

impl Purpose {
    /// Every purpose, in the order `init` creates keys.
    pub const ALL: [Purpose; 3] = [Purpose::Issuer, Purpose::Proxy, Purpose::Policy];

    /// The lowercase name used in files and `trust.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Issuer => "issuer",
            Purpose::Proxy => "proxy",
            Purpose::Policy => "policy",
        }
    }
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file exists and overwriting was not asked for.
    #[error("{path}: already exists (use --force to replace it)")]
    Exists {
        /// The key file.
        path: PathBuf,
    },
    /// Group or others may read the private key.
    #[error("{path}: private key is readable by others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The contents are not a key of the expected form.
    #[error("{path}: {message}")]
    Malformed {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Generates a fresh Ed25519 signing key from the operating system's RNG.
pub fn generate() -> SigningKey {
    SigningKey::generate(&mut rand_core::OsRng)
}

/// RFC 7638 JWK thumbprint of an Ed25519 public key, base64url without padding.
pub fn kid(key: &VerifyingKey) -> String {
    let x = URL_SAFE_NO_PAD.encode(key.as_bytes());
    // Members in lexicographic order, no whitespace: RFC 7638 §3.2.
    let jwk = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(jwk.as_bytes()))
}

/// Writes `key` as PKCS#8 PEM with mode 0600. Refuses to replace a file unless `overwrite`.
pub fn write_signing_key(path: &Path, key: &SigningKey, overwrite: bool) -> Result<(), KeyError> {
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| malformed(path, e.to_string()))?;
    write_secret(path, pem.as_bytes(), overwrite)
}

/// Reads a PKCS#8 PEM Ed25519 key, refusing a file that group or others may read.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, KeyError> {
    let bytes = read_secret(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| malformed(path, "not PEM text".into()))?;
    SigningKey::from_pkcs8_pem(text)
        .map_err(|e| malformed(path, format!("not a PKCS#8 Ed25519 private key: {e}")))
}

/// Writes secret bytes with mode 0600, atomically (temporary file, fsync, rename).
pub fn write_secret(path: &Path, bytes: &[u8], overwrite: bool) -> Result<(), KeyError> {
    if !overwrite && path.exists() {
        return Err(KeyError::Exists {
            path: path.to_owned(),
        });
    }
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, path).map_err(io)
}

/// Reads secret bytes, refusing a file that group or others may read.
pub fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_owned(),
            mode,
        });
    }
    fs::read(path).map(Zeroizing::new).map_err(io)
}

/// Reads a file that must hold exactly 32 secret bytes (e.g. the audit key).
pub fn read_secret_32(path: &Path) -> Result<Zeroizing<[u8; 32]>, KeyError> {
    let bytes = read_secret(path)?;
    let array: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| malformed(path, format!("expected 32 bytes, found {}", bytes.len())))?;
    Ok(Zeroizing::new(array))
}

fn malformed(path: &Path, message: String) -> KeyError {
    KeyError::Malformed {
        path: path.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            .unwrap();
        let key = VerifyingKey::from_bytes(&x.try_into().unwrap()).unwrap();
        assert_eq!(kid(&key), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn key_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        let key = generate();
        write_signing_key(&path, &key, false).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_signing_key(&path).unwrap().to_bytes(), key.to_bytes());
        assert!(matches!(
            write_signing_key(&path, &key, false),
            Err(KeyError::Exists { .. })
        ));
    }

    #[test]
    fn readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pem");
        write_signing_key(&path, &generate(), false).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_signing_key(&path).unwrap_err();
        assert!(
            matches!(err, KeyError::Permissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"));
    }
}
