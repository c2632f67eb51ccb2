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
