//! CST claims: all required, no others.

use serde::{Deserialize, Serialize};

/// Every claim a CST must carry.
pub const REQUIRED: [&str; 10] = [
    "iss", "sub", "aud", "iat", "nbf", "exp", "jti", "job", "wpc", "scope",
];

/// The claims of a job-scoped token.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// The issuer's name (its trust.json entry).
    pub iss: String,
    /// The agent.
    pub sub: String,
    /// The proxy id: exactly one audience.
    pub aud: String,
    /// Issued at (seconds since the epoch).
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expires at.
    pub exp: u64,
    /// Token id: 128 random bits, base64url.
    pub jti: String,
    /// The job this token is for (the proxy's Basic-auth user).
    pub job: String,
    /// The pinned contract hash (`blake3:…`).
    pub wpc: String,
    /// Hash of the effective scope (`blake3:…`).
    pub scope: String,
}

/// A job id is a proxy user name: `[A-Za-z0-9._-]{1,128}`, so no `:` can split Basic auth.
pub fn is_job(job: &str) -> bool {
    (1..=128).contains(&job.len())
        && job
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A token id as mint makes it: unpadded base64url of at least 16 random bytes.
pub fn is_jti(jti: &str) -> bool {
    use base64::Engine;
    // 22 characters is the shortest unpadded encoding of 16 bytes; 256 bounds the decode.
    (22..=256).contains(&jti.len())
        && base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(jti)
            .is_ok_and(|bytes| bytes.len() >= 16)
}

/// `blake3:` and 64 lowercase hex digits (a contract or scope hash).
pub fn is_blake3(hash: &str) -> bool {
    hash.strip_prefix("blake3:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}
