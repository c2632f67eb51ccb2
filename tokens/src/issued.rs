//! The tokens this data dir minted, kept for proof bundles.
//!
//! A bundle must carry the job's token so a reviewer can check its signature, lifetime and
//! binding, and receipts carry only the `jti`. Mint therefore keeps each token in
//! `<data dir>/state/tokens/<jti>.jwt` (mode 0600, like the keys beside it). This stores no new
//! power: the issuer key in the same data dir can mint any token. `clawverify bundle` reads
//! a token back only once it expired or was revoked (unless told otherwise).

use std::path::{Path, PathBuf};

use claw_policy::keys::{self, KeyError};

use crate::claims::{Claims, is_jti};
use crate::token;

/// The record of issued tokens in `<state dir>/tokens`.
#[derive(Clone, Debug)]
pub struct IssuedTokens {
    dir: PathBuf,
}

impl IssuedTokens {
    /// The record in `<state dir>/tokens`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: state_dir.into().join("tokens"),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps a freshly minted token under its `jti`.
    pub fn put(&self, token: &str, claims: &Claims) -> Result<(), KeyError> {
        let path = self.path(&claims.jti).ok_or_else(|| KeyError::Malformed {
            path: self.dir.clone(),
            message: format!("jti {:?} cannot name a file", claims.jti),
        })?;
        std::fs::create_dir_all(&self.dir).map_err(|source| KeyError::Io {
            path: self.dir.clone(),
            source,
        })?;
        keys::write_secret(&path, token.as_bytes(), false)
    }

    /// The token with this `jti`, if this data dir minted it.
    pub fn get(&self, jti: &str) -> Result<Option<String>, KeyError> {
        let Some(path) = self.path(jti) else {
            return Ok(None);
        };
        if !path.exists() {
            return Ok(None);
        }
        let bytes = keys::read_secret(&path)?;
        Ok(std::str::from_utf8(&bytes).ok().map(str::to_owned))
    }

    /// Every kept token of `job`, with its (unverified) claims, oldest `iat` first.
    pub fn for_job(&self, job: &str) -> Result<Vec<(String, Claims)>, KeyError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(KeyError::Io {
                    path: self.dir.clone(),
                    source,
                });
            }
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(jti) = name.to_str().and_then(|n| n.strip_suffix(".jwt")) else {
                continue;
            };
            let Some(token) = self.get(jti)? else {
                continue;
            };
            let Ok((_, claims)) = token::dangerous_decode_unverified(&token) else {
                continue;
            };
            if let Ok(claims) = token::parse_claims(claims)
                && claims.job == job
            {
                out.push((token, claims));
            }
        }
        out.sort_by_key(|(_, c)| c.iat);
        Ok(out)
    }

    /// `<dir>/<jti>.jwt`, for a jti in the form mint makes (base64url: no path characters).
    fn path(&self, jti: &str) -> Option<PathBuf> {
        is_jti(jti).then(|| self.dir.join(format!("{jti}.jwt")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(jti: &str, job: &str, iat: u64) -> Claims {
        Claims {
            iss: "issuer".into(),
            sub: "agent".into(),
            aud: "p1".into(),
            iat,
            nbf: iat,
            exp: iat + 60,
            jti: jti.into(),
            job: job.into(),
            wpc: format!("blake3:{}", "a".repeat(64)),
            scope: format!("blake3:{}", "b".repeat(64)),
        }
    }

    #[test]
    fn kept_tokens_are_private_and_found_by_job() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let store = IssuedTokens::new(tmp.path());
        let key = keys::generate();
        let a = claims("AAAAAAAAAAAAAAAAAAAAAA", "job-1", 20);
        let b = claims("BBBBBBBBBBBBBBBBBBBBBA", "job-2", 10);
        let c = claims("CCCCCCCCCCCCCCCCCCCCCA", "job-1", 10);
        for cl in [&a, &b, &c] {
            store.put(&token::encode(cl, &key), cl).unwrap();
        }
        let path = store.dir().join("AAAAAAAAAAAAAAAAAAAAAA.jwt");
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let found: Vec<_> = store
            .for_job("job-1")
            .unwrap()
            .into_iter()
            .map(|(_, c)| c.jti)
            .collect();
        assert_eq!(found, ["CCCCCCCCCCCCCCCCCCCCCA", "AAAAAAAAAAAAAAAAAAAAAA"]);
        assert!(
            store.put(&token::encode(&a, &key), &a).is_err(),
            "never replaced"
        );
    }

    #[test]
    fn a_path_like_jti_names_no_file() {
        let tmp = tempfile::tempdir().unwrap();
        let store = IssuedTokens::new(tmp.path());
        assert_eq!(store.get("../../keys/issuer").unwrap(), None);
        let mut bad = claims("AAAAAAAAAAAAAAAAAAAAAA", "job", 1);
        bad.jti = "../x".into();
        assert!(store.put("t", &bad).is_err());
    }
}
